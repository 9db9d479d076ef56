//! An in-memory backend, RapidSMS's test `MockBackend`: it accepts every
//! message and keeps the most recent ones in the instance's own memory.
//! Nothing is written to storage, so it measures routing without a
//! gateway's or a disk's cost, and tests can look at what was sent.
//!
//! Settings: `keep` — how many recent sends each instance keeps (default
//! 1000, at most 100,000); older ones are dropped.
//!
//! `GET /backends/<name>/messages` answers, as JSON, what the instance that
//! takes the request has seen: `{"sent": N, "kept": [{"id", "identities",
//! "text"}, …]}` (oldest first). The host may run several instances of a
//! backend at once (`max_instances`) and each keeps its own; what any of
//! them keeps is lost when the instance is dropped.

use std::cell::RefCell;
use std::collections::VecDeque;

use rapidwasm_guest::{Backend, HttpRequest, HttpResponse, Message, SendError, Settings};

/// Sends kept per instance unless `keep` says otherwise.
const DEFAULT_KEEP: usize = 1000;
/// The largest `keep` accepted.
const MAX_KEEP: usize = 100_000;

/// One send, as kept.
struct Sent {
    id: String,
    identities: Vec<String>,
    text: String,
}

/// What one instance has seen.
#[derive(Default)]
struct Seen {
    sent: u64,
    kept: VecDeque<Sent>,
}

/// The in-memory backend.
pub struct Memory {
    keep: usize,
    seen: RefCell<Seen>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory { keep: DEFAULT_KEEP, seen: RefCell::default() }
    }
}

impl Backend for Memory {
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        if let Some(keep) = settings.get("keep") {
            let keep: usize = keep.trim().parse().map_err(|_| format!("keep must be a whole number, not {keep:?}"))?;
            if keep > MAX_KEEP {
                return Err(format!("keep may be at most {MAX_KEEP}, not {keep}"));
            }
            self.keep = keep;
        }
        Ok(())
    }

    fn send(&self, message: &Message, identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        let mut seen = self.seen.borrow_mut();
        seen.sent += 1;
        if self.keep == 0 {
            return Ok(());
        }
        if seen.kept.len() == self.keep {
            seen.kept.pop_front();
        }
        seen.kept.push_back(Sent {
            id: message.id.clone(),
            identities: identities.to_vec(),
            text: message.text.clone(),
        });
        Ok(())
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        if request.path != "/messages" {
            return HttpResponse::text(404, "unknown path: use /messages");
        }
        if request.method != "GET" {
            return HttpResponse::text(405, "use GET").with_header("allow", "GET");
        }
        let seen = self.seen.borrow();
        let kept: Vec<_> = seen
            .kept
            .iter()
            .map(|s| serde_json::json!({"id": s.id, "identities": s.identities, "text": s.text}))
            .collect();
        HttpResponse::json(200, serde_json::json!({"sent": seen.sent, "kept": kept}).to_string())
    }
}

rapidwasm_guest::backend!(Memory);
