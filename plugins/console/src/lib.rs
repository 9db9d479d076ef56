//! A loopback backend: instead of reaching a phone it records every message
//! it is asked to send, in its storage and in the host's log.
//!
//! Each send is stored under `outbox/<time>-<message id>-<identity>` as
//! `<message id>\t<identity>\t<text>` (one entry per identity).
//! Setting `fail_identities` (comma-separated) makes sends to those
//! identities fail, for trying out failure handling.

use rapidwasm_guest::{Backend, Message, SendError, Settings, log, storage};

/// The console backend.
#[derive(Default)]
pub struct Console {
    fail_identities: Vec<String>,
}

impl Backend for Console {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        self.fail_identities = settings
            .get("fail_identities")
            .map(|list| list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        let mut failed = Vec::new();
        for identity in identities {
            if self.fail_identities.contains(identity) {
                failed.push(identity.clone());
                continue;
            }
            record(message, identity).map_err(|why| SendError::all(format!("cannot record the message: {why}")))?;
            log::info(&format!("to {identity}: {}", message.text));
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(SendError::some(format!("refused by fail_identities: {}", failed.join(", ")), failed))
        }
    }
}

/// Store one outbox entry. The key starts with the wall-clock time, so a
/// scan of `outbox/` lists entries in the order they were sent.
fn record(message: &Message, identity: &str) -> Result<(), String> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_nanos();
    let key = format!("outbox/{nanos:024}-{}-{identity}", message.id);
    let line = format!("{}\t{identity}\t{}", message.id, message.text);
    storage::set(&key, line.as_bytes()).map_err(|e| format!("{e:?}"))
}

rapidwasm_guest::backend!(Console);
