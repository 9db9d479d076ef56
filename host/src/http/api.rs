//! The JSON API (`/api/v1/...`).

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::scope::Api;
use crate::messages::{Connection, Fields, MessageClass};
use crate::router::{RouterError, Submitted};
use crate::store::StoreError;

/// A connection as the API spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConnection {
    /// The backend's name.
    pub backend: String,
    /// The identity on it.
    pub identity: String,
}

impl From<&Connection> for ApiConnection {
    fn from(c: &Connection) -> Self {
        ApiConnection { backend: c.backend.clone(), identity: c.identity.clone() }
    }
}

/// `POST /api/v1/receive`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// The message's text.
    pub text: String,
    /// The backend it arrived on.
    pub backend: String,
    /// Who sent it.
    pub identity: String,
    /// Its fields.
    #[serde(default)]
    pub fields: Fields,
}

/// One response an incoming message produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiResponse {
    /// The outgoing message's id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// Where it went.
    pub connections: Vec<ApiConnection>,
    /// `outgoing` or `error`.
    pub class: MessageClass,
    /// false when an app's outgoing phase cancelled it.
    pub processed: bool,
}

/// The answer to `POST /api/v1/receive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveResponse {
    /// The incoming message's id.
    pub message_id: String,
    /// Whether an app handled it.
    pub handled: bool,
    /// The responses, in the order they were sent (under the durable
    /// router: queued to be sent).
    pub responses: Vec<ApiResponse>,
    /// The gateway delivered this message before (same backend and
    /// `external_id` field): it was not routed again, and `message_id` is
    /// the first delivery's.
    #[serde(default)]
    pub duplicate: bool,
}

/// `POST /api/v1/send`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The text.
    pub text: String,
    /// The recipients.
    pub connections: Vec<ApiConnection>,
    /// Its fields.
    #[serde(default)]
    pub fields: Fields,
}

/// The answer to `POST /api/v1/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// The outgoing message's id.
    pub message_id: String,
    /// false when an app's outgoing phase cancelled it.
    pub processed: bool,
    /// The `Idempotency-Key` was used before: nothing was sent, and
    /// `message_id` is the earlier message's.
    #[serde(default)]
    pub duplicate: bool,
}

/// The query of `GET /api/v1/connections`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    backend: String,
    identity: String,
}

/// An error's body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable: `invalid_json`, `invalid_request`, `payload_too_large`,
    /// `unsupported_media_type`, `not_found`, `method_not_allowed`,
    /// `storage_error`, `unavailable`, `backend_failed`, `timeout`,
    /// `not_durable`, `duplicate`, `message_too_large`, `unauthorized`,
    /// `rate_limited`, `admin_disabled`, `plugin_refused`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// An API error: status, code and message.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// Tell the client when to try again (`Retry-After`, whole seconds).
    pub(super) fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match &rejection {
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            JsonRejection::MissingJsonContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body is larger than {} bytes", super::MAX_BODY_BYTES),
                );
            }
            _ => (rejection.status(), "invalid_request"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", rejection.body_text())
    }
}

impl From<RouterError> for ApiError {
    fn from(err: RouterError) -> Self {
        match err {
            RouterError::Store(StoreError::Invalid { .. }) | RouterError::TooDeep(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", err.to_string())
            }
            RouterError::Store(StoreError::NotFound { .. }) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string())
            }
            RouterError::Store(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", err.to_string()),
            RouterError::Gone => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", err.to_string()),
            RouterError::NotDurable => ApiError::new(StatusCode::CONFLICT, "not_durable", err.to_string()),
            RouterError::Duplicate(_) => ApiError::new(StatusCode::CONFLICT, "duplicate", err.to_string()),
            RouterError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", err.to_string())
            }
        }
    }
}

pub(super) async fn receive(
    Api(tenant): Api,
    body: Result<Json<ReceiveRequest>, JsonRejection>,
) -> Result<Json<ReceiveResponse>, ApiError> {
    let Json(request) = body?;
    let router = tenant.router();
    let connection = Connection::new(request.backend, request.identity);
    let msg = match router.receive_submitted(request.text, connection, request.fields).await? {
        Submitted::New(msg) => msg,
        Submitted::Duplicate(message_id) => {
            return Ok(Json(ReceiveResponse { message_id, handled: false, responses: Vec::new(), duplicate: true }));
        }
    };
    let responses = msg
        .sent
        .iter()
        .map(|out| ApiResponse {
            id: out.id.clone(),
            text: out.text.clone(),
            connections: out.connections.iter().map(ApiConnection::from).collect(),
            class: out.class,
            processed: out.processed,
        })
        .collect();
    Ok(Json(ReceiveResponse { message_id: msg.base.id, handled: msg.base.handled, responses, duplicate: false }))
}

/// Longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub(super) async fn send(
    Api(tenant): Api,
    headers: HeaderMap,
    body: Result<Json<SendRequest>, JsonRejection>,
) -> Result<Json<SendResponse>, ApiError> {
    let client_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Some(key.to_owned()),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                ));
            }
        },
    };
    let Json(request) = body?;
    if request.connections.is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "`connections` is empty"));
    }
    // Recipients are looked up (and created) as RapidSMS's views do.
    let router = tenant.router();
    let mut connections = Vec::with_capacity(request.connections.len());
    for c in &request.connections {
        connections.extend(router.lookup_connections(&c.backend, std::slice::from_ref(&c.identity))?);
    }
    Ok(Json(match router.send_keyed(request.text, connections, request.fields, client_key).await? {
        Submitted::New(msg) => {
            SendResponse { message_id: msg.base.id, processed: msg.base.processed, duplicate: false }
        }
        Submitted::Duplicate(message_id) => SendResponse { message_id, processed: true, duplicate: true },
    }))
}

pub(super) async fn connections(
    Api(tenant): Api,
    query: Result<Query<LookupQuery>, QueryRejection>,
) -> Result<Json<Vec<ApiConnection>>, ApiError> {
    let Query(query) = query?;
    let found = tenant.router().lookup_connections(&query.backend, &[query.identity])?;
    Ok(Json(found.iter().map(ApiConnection::from).collect()))
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], super::OPENAPI)
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this resource does not accept that method")
}
