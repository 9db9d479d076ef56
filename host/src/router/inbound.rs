//! Inbound HTTP for backends: what a gateway sent to
//! `/backends/<name>/...`, handed to that backend.
//!
//! The router only passes requests through; parsing the provider's format
//! and calling [`Router::receive`](super::Router::receive) is the
//! backend's work, as RapidSMS's backend views do it.

use super::{BoxFuture, PluginFailure};

/// One inbound request, already bounded in size by the HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRequest {
    /// The method, upper-case.
    pub method: String,
    /// The path below `/backends/<name>`, starting with `/`.
    pub path: String,
    /// The raw query string, without the `?`.
    pub query: String,
    /// The headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl InboundRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A backend's answer to an inbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundResponse {
    /// The status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl InboundResponse {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        InboundResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }
}

/// Why an inbound request found no answer from a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// No backend has that name.
    #[error("no backend is named `{0}`")]
    NoSuchBackend(String),
    /// The backend failed while handling the request.
    #[error("backend `{backend}` failed while handling the request: {failure}")]
    Failed {
        /// The backend's name.
        backend: String,
        /// What happened.
        failure: PluginFailure,
    },
}

/// What a backend that takes inbound requests implements; the default
/// answers 404.
pub(super) fn not_accepted<'a>() -> BoxFuture<'a, Result<InboundResponse, PluginFailure>> {
    Box::pin(async { Ok(InboundResponse::text(404, "this backend takes no inbound HTTP requests")) })
}
