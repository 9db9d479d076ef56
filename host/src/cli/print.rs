//! Printing router events for people.

use rapidwasm::router::{Observer, PhaseResult, RouterEvent};

/// Where the printer writes.
enum Sink {
    Stdout,
    Log,
}

/// An observer that describes each router event in one line.
pub struct Printer {
    sink: Sink,
}

impl Printer {
    /// Print to standard output (one-shot commands).
    pub fn stdout() -> Self {
        Printer { sink: Sink::Stdout }
    }

    /// Print to the log at info level (the server).
    pub fn log() -> Self {
        Printer { sink: Sink::Log }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// One line describing `event`, or `None` for events not worth a line.
pub fn describe(event: &RouterEvent) -> Option<String> {
    Some(match event {
        RouterEvent::Received { message_id, connection, text } => {
            format!("received {text:?} from {connection} [message {}]", short(message_id))
        }
        RouterEvent::Phase { app, phase, result: PhaseResult::Returned(value), .. } if phase.returns_value() => {
            format!("  {phase:<8} {app:<12} -> {value}")
        }
        RouterEvent::Phase { app, phase, result: PhaseResult::Returned(_), .. } => {
            format!("  {phase:<8} {app:<12} ran")
        }
        RouterEvent::Phase { app, phase, result: PhaseResult::Failed(error), .. } => {
            format!("  {phase:<8} {app:<12} FAILED: {error}")
        }
        RouterEvent::Filtered { app, .. } => format!("  dropped by {app}'s filter"),
        RouterEvent::Cancelled { app, .. } => format!("  send cancelled by {app}'s outgoing phase"),
        RouterEvent::Sent { message_id, backend, identities, text, failed, error } => {
            let mut line =
                format!("sent {text:?} to {} via {backend} [message {}]", identities.join(", "), short(message_id));
            if let Some(error) = error {
                line.push_str(&format!(" FAILED for {}: {error}", failed.join(", ")));
            }
            line
        }
        RouterEvent::NoSuchBackend { backend, identities, .. } => {
            format!("not sent to {}: no backend {backend:?} is configured", identities.join(", "))
        }
    })
}

impl Observer for Printer {
    fn event(&self, event: &RouterEvent) {
        let Some(line) = describe(event) else { return };
        match self.sink {
            Sink::Stdout => println!("{line}"),
            Sink::Log => tracing::info!("{line}"),
        }
    }
}
