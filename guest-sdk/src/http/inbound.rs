//! Inbound requests and their answers.

use crate::bindings::imports::rapidwasm::messaging::types::Fields;

/// One request a gateway sent to `/backends/<name>/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, upper-case.
    pub method: String,
    /// The path below `/backends/<name>`, starting with `/`.
    pub path: String,
    /// The raw query string, without the `?`.
    pub query: String,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, already bounded by the host.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The query's name/value pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        super::decode_form(self.query.as_bytes())
    }

    /// The body's pairs when it is a form (`application/x-www-form-urlencoded`).
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        super::decode_form(&self.body)
    }

    /// Whether the body is declared as a form.
    pub fn is_form(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
    }
}

/// An HTTP answer: what a backend answers an inbound request with, and
/// what the outbound client returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An answer with status `status` and no body.
    pub fn empty(status: u16) -> Self {
        HttpResponse { status, headers: Vec::new(), body: Vec::new() }
    }

    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        HttpResponse::empty(status).with_header("content-type", "text/plain; charset=utf-8").with_body(body.into())
    }

    /// An `application/json` answer; `body` must already be JSON.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        HttpResponse::empty(status).with_header("content-type", "application/json").with_body(body.into())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced), cut to 200 characters,
    /// for error messages.
    pub fn body_excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().take(200).collect()
    }

    /// The answer of a backend that takes no inbound requests.
    pub fn not_found() -> Self {
        HttpResponse::text(404, "this backend takes no inbound HTTP requests")
    }

    /// Add a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replace the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

#[doc(hidden)]
impl HttpRequest {
    /// Build from the WIT record's parts (used by the export macro).
    pub fn from_parts(method: String, path: String, query: String, headers: Fields, body: Vec<u8>) -> Self {
        HttpRequest { method, path, query, headers, body }
    }
}
