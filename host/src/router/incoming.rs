//! The incoming phases (RapidSMS's `process_incoming`).

use super::{Phase, PhaseResult, Router, RouterEvent};
use crate::messages::IncomingMessage;

impl Router {
    /// Run every incoming phase on `msg`, then send its responses.
    pub(super) async fn receive_incoming(&self, mut msg: IncomingMessage, depth: u32) -> IncomingMessage {
        self.route_phases(&mut msg, depth).await;
        let mut sent = Vec::with_capacity(msg.responses.len());
        for response in &msg.responses {
            let mut out = response.to_outgoing();
            self.send_outgoing(&mut out, depth).await;
            sent.push(out);
        }
        msg.sent = sent;
        msg
    }

    /// Run the incoming phases on `msg` (the `Received` event first).
    pub(super) async fn route_phases(&self, msg: &mut IncomingMessage, depth: u32) {
        self.emit(RouterEvent::Received {
            message_id: msg.id.clone(),
            connection: msg.connections[0].clone(),
            text: msg.text.clone(),
        });
        let roster = self.roster();
        for phase in Phase::INCOMING {
            if phase == Phase::Default && msg.handled {
                continue;
            }
            for app in &roster.apps {
                if !app.phases().contains(phase) {
                    continue;
                }
                let result = match app.incoming(phase, msg, depth).await {
                    Ok(outcome) => {
                        msg.responses.extend(outcome.responses);
                        msg.fields.extend(outcome.fields);
                        PhaseResult::Returned(outcome.returned)
                    }
                    Err(failure) => PhaseResult::Failed(failure.0),
                };
                // Plugin calls run on this task without yielding; let
                // other tasks (timers, swaps, other messages) have a turn.
                tokio::task::consume_budget().await;
                let returned_true = result == PhaseResult::Returned(true);
                self.emit(RouterEvent::Phase { message_id: msg.id.clone(), app: app.name().to_owned(), phase, result });
                if !returned_true {
                    continue;
                }
                match phase {
                    Phase::Filter => {
                        self.emit(RouterEvent::Filtered { message_id: msg.id.clone(), app: app.name().to_owned() });
                        return;
                    }
                    Phase::Handle => {
                        msg.handled = true;
                        break;
                    }
                    Phase::Default => break,
                    _ => {}
                }
            }
        }
    }
}
