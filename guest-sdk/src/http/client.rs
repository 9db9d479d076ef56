//! Outbound HTTP over `wasi:http/outgoing-handler`, blocking, with
//! timeouts on every request.
//!
//! ```no_run
//! use rapidwasm_guest::http::client::Request;
//! let response = Request::get("http://127.0.0.1:13013/cgi-bin/sendsms?to=123&text=hi").send()?;
//! if !response.is_success() {
//!     return Err(format!("the gateway answered {}", response.status).into());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

/// How long a request may take when it sets no timeout of its own: to
/// connect, to the first byte of the answer, and between later bytes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read; the rest is refused.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why an outbound request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not `http://` or `https://` with a host.
    InvalidUrl(String),
    /// The host refused the destination: it is not in the backend's
    /// `allowed_hosts`.
    Denied(String),
    /// The request timed out.
    Timeout(String),
    /// The answer's body is larger than [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// The gateway answered, with a status that is not 2xx
    /// ([`Request::send_ok`]).
    Status {
        /// The status code.
        status: u16,
        /// The start of the body.
        excerpt: String,
    },
    /// Anything else: connection refused, DNS, protocol errors.
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::InvalidUrl(url) => write!(f, "invalid URL `{url}`: it needs http:// or https:// and a host"),
            HttpError::Denied(host) => write!(f, "the host refused a request to {host}: not in allowed_hosts"),
            HttpError::Timeout(what) => write!(f, "timed out: {what}"),
            HttpError::TooLarge => write!(f, "the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
            HttpError::Status { status, excerpt } => write!(f, "answered {status}: {excerpt}"),
            HttpError::Failed(reason) => write!(f, "request failed: {reason}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// An answer: the same type a backend gives inbound requests.
pub use super::HttpResponse as Response;

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Duration,
}

impl Request {
    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    /// A `POST` to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    fn new(method: Method, url: impl Into<String>) -> Self {
        Request { method, url: url.into(), headers: Vec::new(), body: Vec::new(), timeout: DEFAULT_TIMEOUT }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// HTTP Basic authentication.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        self.header("authorization", super::basic_auth(user, password))
    }

    /// A body with its content type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form<'a>(self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.body("application/x-www-form-urlencoded", super::encode_form(pairs))
    }

    /// Set the timeouts (connect, first byte, between bytes); the default
    /// is [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Send it, and count an answer that is not 2xx as an error.
    pub fn send_ok(self) -> Result<Response, HttpError> {
        let response = self.send()?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(HttpError::Status { status: response.status, excerpt: response.body_excerpt() })
        }
    }

    /// Send it and read the whole answer, whatever its status.
    pub fn send(self) -> Result<Response, HttpError> {
        let target = Target::parse(&self.url)?;
        let headers = Fields::from_list(&self.headers).map_err(|e| HttpError::Failed(format!("bad header: {e:?}")))?;
        if !self.body.is_empty() {
            let length = self.body.len().to_string().into_bytes();
            headers.append("content-length", &length).map_err(|e| HttpError::Failed(format!("{e:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let invalid = |_| HttpError::InvalidUrl(self.url.clone());
        request.set_method(&self.method).map_err(|()| HttpError::Failed("bad method".into()))?;
        request.set_scheme(Some(&target.scheme)).map_err(invalid)?;
        request.set_authority(Some(&target.authority)).map_err(invalid)?;
        request.set_path_with_query(Some(&target.path_and_query)).map_err(invalid)?;

        let options = RequestOptions::new();
        let nanos = u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX);
        // A host may not support a timeout; the request then runs without it.
        let _ = options.set_connect_timeout(Some(nanos));
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));

        let body = request.body().map_err(|()| HttpError::Failed("request body taken twice".into()))?;
        let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| error(e, &target.authority))?;
        {
            let stream = body.write().map_err(|()| HttpError::Failed("request body stream taken twice".into()))?;
            for chunk in self.body.chunks(4096) {
                stream.blocking_write_and_flush(chunk).map_err(|e| stream_error(e, &pending, &target.authority))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|e| error(e, &target.authority))?;

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(e))) => return Err(error(e, &target.authority)),
            Some(Err(())) | None => return Err(HttpError::Failed("the response was lost".into())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|()| HttpError::Failed("response body taken twice".into()))?;
        let stream = incoming.stream().map_err(|()| HttpError::Failed("response stream taken twice".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_RESPONSE_BYTES {
                        return Err(HttpError::TooLarge);
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(HttpError::Failed(format!("reading the answer: {}", e.to_debug_string())));
                }
            }
        }
        Ok(Response { status, headers, body })
    }
}

/// A URL split as `wasi:http` wants it.
struct Target {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HttpError> {
        let invalid = || HttpError::InvalidUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid());
        }
        let path_and_query = rest[end..].split('#').next().unwrap_or_default();
        let path_and_query = match path_and_query.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if path_and_query.is_empty() => "/".to_owned(),
            None => path_and_query.to_owned(),
        };
        Ok(Target { scheme, authority: authority.to_owned(), path_and_query })
    }
}

fn error(code: ErrorCode, authority: &str) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied(authority.to_owned()),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            HttpError::Timeout(format!("{authority}: {code:?}"))
        }
        other => HttpError::Failed(format!("{authority}: {other:?}")),
    }
}

fn stream_error(err: StreamError, pending: &wasip2::http::types::FutureIncomingResponse, authority: &str) -> HttpError {
    // A refused request shows first as a closed body stream; its reason
    // is in the pending response.
    pending.subscribe().block();
    if let Some(Ok(Err(code))) = pending.get() {
        return error(code, authority);
    }
    match err {
        StreamError::Closed => HttpError::Failed(format!("{authority}: the connection closed while sending")),
        StreamError::LastOperationFailed(e) => HttpError::Failed(format!("{authority}: {}", e.to_debug_string())),
    }
}
