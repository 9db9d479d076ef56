//! The message tester's backend (RapidSMS's `httptester` with its
//! `DatabaseBackend`): it keeps both sides of every conversation so the
//! host's `/tester` page can show them.
//!
//! | request | what it does |
//! |---|---|
//! | `POST /backends/<name>/messages` `{"identity", "text"}` | keep the message, then route it as if phone `identity` sent it |
//! | `GET /backends/<name>/messages?identity=I&after=KEY` | the conversation with `I` (oldest first, at most 500; after `KEY` when given) |
//! | `DELETE /backends/<name>/messages?identity=I` | forget the conversation with `I` |
//!
//! The POST also accepts a form body. As in RapidSMS, an identity must be
//! digits only; the text may be empty. Messages sent to the backend are
//! kept as replies.

use rapidwasm_guest::http::decode_form;
use rapidwasm_guest::{
    Backend, Connection, HttpRequest, HttpResponse, Message, SendError, Settings, log, receive, storage,
};
use serde::{Deserialize, Serialize};

/// Most messages one listing returns.
const PAGE: u32 = 500;
/// Longest identity accepted.
const MAX_IDENTITY: usize = 32;

/// One kept message.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// Its storage key, for `after`.
    key: String,
    /// `in` (from the phone) or `out` (a reply).
    direction: String,
    text: String,
    /// The message id, for replies.
    id: String,
    /// When it was kept, in milliseconds since 1970.
    at_ms: u64,
}

/// A message typed on the page.
#[derive(Debug, Deserialize)]
struct Typed {
    identity: String,
    #[serde(default)]
    text: String,
}

/// The tester backend.
#[derive(Default)]
pub struct Tester {
    name: String,
}

impl Backend for Tester {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        self.name = settings.backend_name()?;
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        for identity in identities {
            keep(identity, "out", &message.text, &message.id).map_err(SendError::all)?;
        }
        Ok(())
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        if request.path != "/messages" {
            return HttpResponse::text(404, "unknown path: use /messages");
        }
        match request.method.as_str() {
            "POST" => self.typed(request),
            "GET" => list(request),
            "DELETE" => clear(request),
            _ => HttpResponse::text(405, "use GET, POST or DELETE").with_header("allow", "GET, POST, DELETE"),
        }
    }
}

impl Tester {
    /// A message typed as a phone: keep it, then route it.
    fn typed(&self, request: &HttpRequest) -> HttpResponse {
        let typed = if request.is_form() {
            let pairs = request.form_pairs();
            let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            Typed { identity: value("identity").unwrap_or_default(), text: value("text").unwrap_or_default() }
        } else {
            match serde_json::from_slice::<Typed>(&request.body) {
                Ok(typed) => typed,
                Err(e) => return HttpResponse::text(400, format!("expected JSON {{\"identity\", \"text\"}}: {e}")),
            }
        };
        let identity = match check_identity(typed.identity.trim()) {
            Ok(identity) => identity,
            Err(response) => return response,
        };
        if let Err(why) = keep(&identity, "in", &typed.text, "") {
            return HttpResponse::text(500, why);
        }
        let connection = Connection { backend: self.name.clone(), identity };
        match receive(&typed.text, &connection, &[]) {
            Ok(id) => HttpResponse::json(200, serde_json::json!({ "message_id": id }).to_string()),
            Err(e) => HttpResponse::text(500, format!("the message could not be routed: {e:?}")),
        }
    }
}

/// The conversation with `identity`, oldest first.
fn list(request: &HttpRequest) -> HttpResponse {
    let query = decode_form(request.query.as_bytes());
    let value = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let identity = match check_identity(value("identity").unwrap_or_default().trim()) {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let after = value("after");
    match storage::scan(&prefix(&identity), after.as_deref(), PAGE) {
        Ok(entries) => {
            let list: Vec<Entry> =
                entries.into_iter().filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok()).collect();
            match serde_json::to_string(&list) {
                Ok(body) => HttpResponse::json(200, body),
                Err(e) => HttpResponse::text(500, e.to_string()),
            }
        }
        Err(e) => HttpResponse::text(500, format!("cannot read the conversation: {e:?}")),
    }
}

/// Forget the conversation with `identity`.
fn clear(request: &HttpRequest) -> HttpResponse {
    let query = request.query_pairs();
    let identity = query.iter().find(|(k, _)| k == "identity").map(|(_, v)| v.trim()).unwrap_or_default();
    let identity = match check_identity(identity) {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    loop {
        let batch = match storage::scan(&prefix(&identity), None, PAGE) {
            Ok(batch) => batch,
            Err(e) => return HttpResponse::text(500, format!("cannot clear the conversation: {e:?}")),
        };
        if batch.is_empty() {
            return HttpResponse::empty(204);
        }
        for (key, _) in batch {
            if let Err(e) = storage::delete(&key) {
                return HttpResponse::text(500, format!("cannot clear the conversation: {e:?}"));
            }
        }
    }
}

/// RapidSMS's rule: an identity is digits only.
fn check_identity(identity: &str) -> Result<String, HttpResponse> {
    if identity.is_empty() || identity.len() > MAX_IDENTITY || !identity.chars().all(|c| c.is_ascii_digit()) {
        return Err(HttpResponse::text(400, format!("the phone number must be 1 to {MAX_IDENTITY} digits")));
    }
    Ok(identity.to_owned())
}

fn prefix(identity: &str) -> String {
    format!("conversation/{identity}/")
}

/// Keep one message of the conversation with `identity`.
fn keep(identity: &str, direction: &str, text: &str, id: &str) -> Result<(), String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    // Nanoseconds and a counter keep keys unique and in order.
    let key = format!("{}{:024}-{:06}", prefix(identity), now.as_nanos(), next_sequence());
    let entry = Entry {
        key: key.clone(),
        direction: direction.to_owned(),
        text: text.to_owned(),
        id: id.to_owned(),
        at_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
    };
    let bytes = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
    storage::set(&key, &bytes).map_err(|e| {
        log::error(&format!("cannot keep a message for {identity}: {e:?}"));
        format!("cannot keep the message: {e:?}")
    })
}

fn next_sequence() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000
}

rapidwasm_guest::backend!(Tester);
