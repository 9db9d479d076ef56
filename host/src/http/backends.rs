//! `/backends/<name>/...`: inbound requests from gateways, handed to the
//! named backend's component.
//!
//! The request is handled in a task of its own, so a gateway that hangs up
//! does not cancel a message half-way through routing; the gateway gets an
//! answer within the backend's call timeout or a 504.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use super::api::ApiError;
use super::scope::Inbound;
use crate::router::{InboundError, InboundRequest};

/// Headers a backend may not set: the server frames the body itself.
const FRAMING_HEADERS: [&str; 4] = ["content-length", "transfer-encoding", "connection", "keep-alive"];

pub(super) async fn inbound(
    Inbound(tenant): Inbound,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Result<Response, ApiError> {
    let name = params.into_iter().find(|(k, _)| k == "backend").map(|(_, v)| v).unwrap_or_default();
    let (parts, body) = request.into_parts();
    let body = read_body(body).await?;
    let prefix = format!("/backends/{name}");
    let path = parts.uri.path().strip_prefix(&prefix).unwrap_or("/");
    let request = InboundRequest {
        method: parts.method.as_str().to_owned(),
        path: if path.is_empty() { "/".to_owned() } else { path.to_owned() },
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    };

    let router = tenant.router().clone();
    let backend = name.clone();
    let task = tokio::spawn(async move { router.handle_http(&backend, request).await });
    let inbound_timeout = tenant.config().limits.backend.call_timeout;
    let answer = match tokio::time::timeout(inbound_timeout, task).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(join)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backend_failed",
                format!("backend `{name}` stopped while handling the request: {join}"),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "backend `{name}` did not answer within {} ms; the request may still be processed",
                    inbound_timeout.as_millis()
                ),
            ));
        }
    };
    match answer {
        Ok(response) => Ok(to_response(&name, response)),
        Err(InboundError::NoSuchBackend(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no backend is named `{name}`")))
        }
        Err(err @ InboundError::Failed { .. }) => {
            tracing::warn!(backend = %name, %err, "an inbound request failed");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "backend_failed", err.to_string()))
        }
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, super::MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {} bytes", super::MAX_BODY_BYTES),
        )
    })
}

/// The backend's answer as an HTTP response; what the backend got wrong
/// (a status outside 100–599, a malformed header) is logged and repaired.
fn to_response(backend: &str, answer: crate::router::InboundResponse) -> Response {
    let status = match StatusCode::from_u16(answer.status) {
        Ok(status) if (100..600).contains(&answer.status) => status,
        _ => {
            tracing::warn!(backend, status = answer.status, "a backend answered with an invalid status; sending 500");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if FRAMING_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(backend, header = %name, "a backend answered with a malformed header; dropped"),
        }
    }
    response
}
