//! RapidSMS's `contrib.messagelog`: records every incoming message (its raw
//! text, in the parse phase) and every outgoing message, through the host's
//! storage.
//!
//! Entries are stored under `log/<time>-<I|O>-<message id>` as one JSON
//! object: `direction`, `backend`, `identity`, `contact` (the linked
//! contact's id, if any), `date` (milliseconds since the Unix epoch), `text`.
//! As in RapidSMS only the first connection is logged, and filtered messages
//! are never logged.

use rapidwasm_guest::{App, Connection, IncomingMessage, OutgoingMessage, contact_of, log, storage};
use serde::Serialize;

/// The message log app.
#[derive(Default)]
pub struct MessageLog;

/// One log entry, as stored (fields in alphabetical order).
#[derive(Serialize)]
struct Entry<'a> {
    backend: &'a str,
    contact: Option<String>,
    date: u64,
    direction: &'a str,
    identity: &'a str,
    text: &'a str,
}

fn record(direction: &str, id: &str, connection: Option<&Connection>, text: &str) {
    let Some(connection) = connection else {
        log::error(&format!("message {id} has no connection; not logged"));
        return;
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let entry = Entry {
        backend: &connection.backend,
        contact: contact_of(connection).ok().flatten().map(|c| c.id),
        date: now.as_millis() as u64,
        direction,
        identity: &connection.identity,
        text,
    };
    let key = format!("log/{:024}-{direction}-{id}", now.as_nanos());
    let stored = serde_json::to_vec(&entry)
        .map_err(|e| format!("{e}"))
        .and_then(|value| storage::set(&key, &value).map_err(|e| format!("{e:?}")));
    if let Err(err) = stored {
        log::error(&format!("could not log message {id}: {err}"));
    }
}

rapidwasm_guest::app! {
    impl App for MessageLog {
        fn parse(&self, msg: &IncomingMessage) {
            record("I", &msg.id, msg.connections.first(), &msg.raw_text);
        }

        fn outgoing(&self, msg: &OutgoingMessage) -> bool {
            record("O", &msg.id, msg.connections.first(), &msg.text);
            true
        }
    }
}
