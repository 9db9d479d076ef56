//! The Vumi backend, wire-compatible with RapidSMS's `VumiBackend` and
//! Vumi's `RapidSMSRelay`.
//!
//! **Inbound** (`POST /backends/<name>/`): a Vumi message as JSON. Required:
//! `message_id`, `to_addr`, `from_addr` (the sender), `transport_name`,
//! `transport_type`; optional: `content` (`null` is empty), `in_reply_to`,
//! `session_event`, `group`. Other keys are ignored. The message's fields
//! are these values (stripped, `null` as empty) plus `external_id` =
//! `message_id`, as in RapidSMS. Answers 200 with an empty body, or 400
//! naming the field at fault. With `inbound_user` and `inbound_pass` set,
//! requests must carry that HTTP Basic authentication (401 otherwise).
//!
//! **Outbound**: `POST sendsms_url` with JSON
//! `{…sendsms_params, "content", "to_addr": [identities], "session_event": null,
//! "metadata": {"rapidsms_msg_id": id}}`, plus `in_reply_to` (the original's
//! `external_id`) when replying to one identity, and HTTP Basic
//! authentication when `sendsms_user` and `sendsms_pass` are set. 4xx and
//! 5xx answers fail the send, as in RapidSMS.
//!
//! Settings: `sendsms_url` (required), `sendsms_params.*`, `sendsms_user`,
//! `sendsms_pass`, `inbound_user`, `inbound_pass`, `timeout_ms` (default 10000).

use std::time::Duration;

use rapidwasm_guest::http::client::Request;
use rapidwasm_guest::http::{basic_auth, same_secret};
use rapidwasm_guest::{Backend, Connection, HttpRequest, HttpResponse, Message, SendError, Settings, log, receive};
use serde_json::{Map, Value};

/// The Vumi fields RapidSMS reads, and whether each is required.
const FIELDS: [(&str, bool); 9] = [
    ("message_id", true),
    ("to_addr", true),
    ("from_addr", true),
    ("in_reply_to", false),
    ("session_event", false),
    ("content", false),
    ("transport_name", true),
    ("transport_type", true),
    ("group", false),
];

/// The Vumi backend.
#[derive(Default)]
pub struct Vumi {
    name: String,
    sendsms_url: String,
    params: Vec<(String, String)>,
    auth: Option<(String, String)>,
    inbound_auth: Option<String>,
    timeout: Duration,
}

impl Backend for Vumi {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        self.name = settings.backend_name()?;
        self.sendsms_url = settings.get("sendsms_url").ok_or("setting `sendsms_url` is required")?.to_owned();
        self.params = settings.prefixed("sendsms_params.");
        self.auth = match (settings.get("sendsms_user"), settings.get("sendsms_pass")) {
            (Some(user), Some(pass)) => Some((user.to_owned(), pass.to_owned())),
            _ => None,
        };
        self.inbound_auth = match (settings.get("inbound_user"), settings.get("inbound_pass")) {
            (Some(user), Some(pass)) => Some(basic_auth(user, pass)),
            (None, None) => None,
            _ => return Err("set both `inbound_user` and `inbound_pass`, or neither".to_owned()),
        };
        self.timeout = Duration::from_millis(settings.get_u64("timeout_ms")?.unwrap_or(10_000));
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], context: &[(String, String)]) -> Result<(), SendError> {
        let body = payload(&self.params, message, identities, context).to_string();
        let mut request = Request::post(&self.sendsms_url).timeout(self.timeout).body("application/json", body);
        if let Some((user, pass)) = &self.auth {
            request = request.basic_auth(user, pass);
        }
        let response = request.send().map_err(|e| SendError::all(e.to_string()))?;
        if response.status >= 400 {
            return Err(SendError::all(format!("Vumi answered {}: {}", response.status, response.body_excerpt())));
        }
        Ok(())
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        if request.path != "/" {
            return HttpResponse::text(404, "unknown path: Vumi posts to the backend's own URL");
        }
        if request.method != "POST" {
            return HttpResponse::text(405, "Vumi sends POST requests").with_header("allow", "POST");
        }
        if let Some(expected) = &self.inbound_auth
            && !request.header("authorization").is_some_and(|given| same_secret(given.trim(), expected))
        {
            return HttpResponse::text(401, "authentication required")
                .with_header("www-authenticate", "Basic realm=\"rapidwasm\"");
        }
        let fields = match parse(&request.body) {
            Ok(fields) => fields,
            Err(why) => return HttpResponse::text(400, format!("form failed to validate: {why}")),
        };
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let connection = Connection { backend: self.name.clone(), identity: get("from_addr") };
        match receive(&get("content"), &connection, &fields) {
            Ok(_) => HttpResponse::empty(200),
            Err(e) => {
                log::error(&format!("cannot route a message from {}: {e:?}", connection.identity));
                HttpResponse::text(500, format!("the message could not be routed: {e:?}"))
            }
        }
    }
}

/// The message's fields from a Vumi JSON body, checked as `VumiForm` does.
fn parse(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let object = value.as_object().ok_or("the body is not a JSON object")?;
    let mut fields = Vec::new();
    for (name, required) in FIELDS {
        let text = match object.get(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(other @ (Value::Number(_) | Value::Bool(_))) => other.to_string(),
            Some(_) => return Err(format!("`{name}` must be a string")),
        };
        if required && text.is_empty() {
            return Err(format!("`{name}` is required"));
        }
        fields.push((name.to_owned(), text));
    }
    let message_id = fields[0].1.clone();
    fields.push(("external_id".to_owned(), message_id));
    Ok(fields)
}

/// The JSON RapidSMS's `VumiBackend.prepare_request` posts.
fn payload(
    params: &[(String, String)],
    message: &Message,
    identities: &[String],
    context: &[(String, String)],
) -> Value {
    let mut body: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    body.insert("content".into(), Value::String(message.text.clone()));
    body.insert("to_addr".into(), Value::Array(identities.iter().cloned().map(Value::String).collect()));
    body.insert("session_event".into(), Value::Null);
    body.insert("metadata".into(), serde_json::json!({ "rapidsms_msg_id": message.id }));
    let context_value = |key: &str| context.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    if identities.len() == 1
        && let Some(external_id) = context_value("external_id")
    {
        body.insert("in_reply_to".into(), Value::String(external_id));
    }
    for key in ["endpoint", "from_addr"] {
        if let Some(value) = context_value(key) {
            body.insert(key.into(), Value::String(value));
        }
    }
    Value::Object(body)
}

rapidwasm_guest::backend!(Vumi);
