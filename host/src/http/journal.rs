//! The durable router's records over HTTP: a message's status and its
//! transmissions, and the dead letters an operator re-queues.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::scope::Api;
use crate::messages::Connection;
use crate::store::journal::{Direction, MessageRecord, Status, TransmissionKey, TransmissionRecord};

/// The answer to `GET /api/v1/messages/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatus {
    /// The stored message.
    pub message: MessageRecord,
    /// One word for the whole message, as RapidSMS's `Message.status`:
    /// incoming `queued` or `received`; outgoing `failed` if any
    /// transmission failed, else `queued` if any is queued, else `sent` if
    /// any is not yet delivered, else `delivered`.
    pub status: String,
    /// Its transmissions (outgoing messages only).
    pub transmissions: Vec<TransmissionRecord>,
}

/// The status word of a message with these transmissions.
pub fn message_status(message: &MessageRecord, transmissions: &[TransmissionRecord]) -> &'static str {
    let any = |status: Status| transmissions.iter().any(|t| t.status == status);
    match message.direction {
        Direction::Incoming if message.routed_on.is_some() => "received",
        Direction::Incoming => "queued",
        Direction::Outgoing if any(Status::Failed) => "failed",
        Direction::Outgoing if any(Status::Queued) => "queued",
        Direction::Outgoing if any(Status::Sent) => "sent",
        Direction::Outgoing if transmissions.is_empty() => "failed",
        Direction::Outgoing => "delivered",
    }
}

/// The query of `GET /api/v1/dead-letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /api/v1/dead-letters/requeue`: which transmission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequeueRequest {
    /// The outgoing message.
    pub message_id: String,
    /// Its backend.
    pub backend: String,
    /// The identity it goes to.
    pub identity: String,
}

pub(super) async fn message(
    Api(tenant): Api,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Result<Json<MessageStatus>, ApiError> {
    let id = params.get("id").cloned().unwrap_or_default();
    match tenant.router().message_record(&id)? {
        Some((message, transmissions)) => {
            let status = message_status(&message, &transmissions).to_owned();
            Ok(Json(MessageStatus { message, status, transmissions }))
        }
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no message has the id {id:?}"))),
    }
}

pub(super) async fn dead_letters(
    Api(tenant): Api,
    query: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<Vec<TransmissionRecord>>, ApiError> {
    let Query(query) = query?;
    Ok(Json(tenant.router().dead_letters(query.limit.unwrap_or(100).min(1000))?))
}

pub(super) async fn requeue(
    Api(tenant): Api,
    body: Result<Json<RequeueRequest>, JsonRejection>,
) -> Result<Json<TransmissionRecord>, ApiError> {
    let Json(request) = body?;
    let router = tenant.router();
    let key = TransmissionKey {
        message_id: request.message_id,
        connection: Connection::new(request.backend, request.identity),
    };
    router.requeue(key.clone()).await?;
    let journal = router.journal().ok_or(crate::router::RouterError::NotDurable)?;
    let record = journal.transmission(&key).map_err(crate::router::RouterError::from)?;
    record.map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "the transmission vanished"))
}
