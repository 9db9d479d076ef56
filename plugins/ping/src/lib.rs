//! RapidSMS's `contrib.echo` ping handler: exactly `ping` answers `pong`.

use rapidwasm_guest::{Handler, IncomingMessage, log};

/// Answers the exact, case-sensitive text `ping` with `pong`.
#[derive(Default)]
pub struct PingHandler;

impl Handler for PingHandler {
    fn dispatch(&self, msg: &IncomingMessage) -> bool {
        if msg.text != "ping" {
            return false;
        }
        if let Err(err) = msg.respond("pong") {
            log::error(&format!("could not respond: {err:?}"));
        }
        true
    }
}

rapidwasm_guest::handlers_app!(PingHandler);
