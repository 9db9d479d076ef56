//! A test backend that misbehaves on request, for the host's isolation
//! tests (the backend counterpart of `probe`).
//!
//! Inbound: a request to `/trap` traps, `/loop` loops forever, `/status/N`
//! answers with status N, anything else answers 200 `ok`. Outbound: a
//! message whose text is `trap` traps, `loop` loops; others succeed.

use rapidwasm_guest::{Backend, HttpRequest, HttpResponse, Message, SendError};

/// The misbehaving backend.
#[derive(Default)]
pub struct ProbeBackend;

impl Backend for ProbeBackend {
    fn send(&self, message: &Message, _identities: &[String], _context: &[(String, String)]) -> Result<(), SendError> {
        misbehave(&message.text);
        Ok(())
    }

    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        let path = request.path.trim_start_matches('/');
        misbehave(path);
        match path.strip_prefix("status/").and_then(|s| s.parse().ok()) {
            Some(status) => HttpResponse::text(status, "as asked").with_header("x-probe", "yes"),
            None => HttpResponse::text(200, "ok"),
        }
    }
}

fn misbehave(what: &str) {
    match what {
        "trap" => panic!("probe-backend was asked to trap"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        _ => {}
    }
}

rapidwasm_guest::backend!(ProbeBackend);
