//! The generic HTTP backend: RapidSMS's `GenericHttpBackendView` inbound,
//! plus the outbound half RapidSMS dropped (its old `RapidHttpBackend`).
//!
//! **Inbound** (`GET` or `POST /backends/<name>/`): the sender and text as
//! query parameters (GET) or a form body (POST), named `identity` and
//! `text` unless `identity_name`/`text_name` say otherwise. Both are
//! stripped and required. With `id_name` set, that parameter (optional) is
//! the gateway's own message id: it becomes the `external_id` field, so a
//! gateway's retry of the same message is routed once. Answers `200 OK`
//! with body `OK`, or 400 `form failed to validate: …`; other methods get
//! 405.
//!
//! **Outbound**: one request per identity to `outbound_url`, a template in
//! which `{identity}`, `{text}` and `{id}` are replaced by their
//! percent-encoded values. With `outbound_method = "POST"` the request
//! carries `outbound_body` (the same placeholders, default
//! `identity={identity}&text={text}`) as `outbound_content_type` (default
//! `application/x-www-form-urlencoded`). 2xx is success; a send to several
//! identities reports exactly those that failed.
//!
//! Settings: `identity_name`, `text_name`, `id_name`, `outbound_url`,
//! `outbound_method` (`GET`, the default, or `POST`), `outbound_body`,
//! `outbound_content_type`, `timeout_ms` (default 10000).

use std::time::Duration;

use rapidwasm_guest::http::client::Request;
use rapidwasm_guest::http::encode_form;
use rapidwasm_guest::{Backend, Connection, HttpRequest, HttpResponse, Message, SendError, Settings, log, receive};

/// The generic HTTP backend.
#[derive(Default)]
pub struct GenericHttp {
    name: String,
    identity_name: String,
    text_name: String,
    id_name: Option<String>,
    outbound: Option<Outbound>,
    timeout: Duration,
}

/// Where and how messages are sent.
struct Outbound {
    url: String,
    post: Option<(String, String)>,
}

impl Backend for GenericHttp {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        self.name = settings.backend_name()?;
        self.identity_name = settings.get_or("identity_name", "identity").to_owned();
        self.text_name = settings.get_or("text_name", "text").to_owned();
        self.id_name = settings.get("id_name").filter(|n| !n.is_empty()).map(str::to_owned);
        self.timeout = Duration::from_millis(settings.get_u64("timeout_ms")?.unwrap_or(10_000));
        self.outbound = match settings.get("outbound_url").filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let post = match settings.get_or("outbound_method", "GET").to_ascii_uppercase().as_str() {
                    "GET" => None,
                    "POST" => Some((
                        settings.get_or("outbound_body", "identity={identity}&text={text}").to_owned(),
                        settings.get_or("outbound_content_type", "application/x-www-form-urlencoded").to_owned(),
                    )),
                    other => return Err(format!("setting `outbound_method` must be GET or POST, not `{other}`")),
                };
                Some(Outbound { url: url.to_owned(), post })
            }
        };
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        let outbound = self
            .outbound
            .as_ref()
            .ok_or_else(|| SendError::all("this backend has no `outbound_url`, so it cannot send"))?;
        SendError::for_each(identities, |identity| {
            let url = fill(&outbound.url, identity, message, Escape::Form);
            let request = match &outbound.post {
                None => Request::get(url),
                Some((body, content_type)) => {
                    let escape = if content_type.contains("json") { Escape::Json } else { Escape::Form };
                    Request::post(url).body(content_type, fill(body, identity, message, escape))
                }
            };
            request.timeout(self.timeout).send_ok().map(drop).map_err(|e| {
                log::warn(&format!("sending {} to {identity} failed: {e}", message.id));
                e.to_string()
            })
        })
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        if request.path != "/" {
            return HttpResponse::text(404, "unknown path: send to the backend's own URL");
        }
        let pairs = match request.method.as_str() {
            "GET" => request.query_pairs(),
            "POST" => request.form_pairs(),
            _ => return HttpResponse::text(405, "use GET or POST").with_header("allow", "GET, POST"),
        };
        let value = |name: &str| {
            pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty())
        };
        let (Some(identity), Some(text)) = (value(&self.identity_name), value(&self.text_name)) else {
            return HttpResponse::text(
                400,
                format!("form failed to validate: `{}` and `{}` are required", self.identity_name, self.text_name),
            );
        };
        let connection = Connection { backend: self.name.clone(), identity };
        let fields: Vec<(String, String)> =
            self.id_name.as_deref().and_then(value).map(|id| ("external_id".to_owned(), id)).into_iter().collect();
        match receive(&text, &connection, &fields) {
            Ok(_) => HttpResponse::text(200, "OK"),
            Err(e) => HttpResponse::text(500, format!("the message could not be routed: {e:?}")),
        }
    }
}

/// How values are escaped into a template.
#[derive(Debug, Clone, Copy)]
enum Escape {
    /// Percent-encoded, for URLs and form bodies.
    Form,
    /// As the inside of a JSON string.
    Json,
}

/// `template` with `{identity}`, `{text}` and `{id}` replaced by their
/// escaped values.
fn fill(template: &str, identity: &str, message: &Message, escape: Escape) -> String {
    let escaped = |value: &str| match escape {
        Escape::Form => encode_form([("", value)]).trim_start_matches('=').to_owned(),
        Escape::Json => json_escape(value),
    };
    template
        .replace("{identity}", &escaped(identity))
        .replace("{text}", &escaped(&message.text))
        .replace("{id}", &escaped(&message.id))
}

/// `value` escaped for the inside of a JSON string.
fn json_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_values_are_escaped() {
        assert_eq!(super::json_escape("a \"b\" \\ \n\u{1}"), "a \\\"b\\\" \\\\ \\n\\u0001");
    }
}

rapidwasm_guest::backend!(GenericHttp);
