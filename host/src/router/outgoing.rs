//! The outgoing phase and delivery to backends (RapidSMS's
//! `process_outgoing` and `backend_preparation`).

use std::collections::BTreeMap;

use super::{PhaseResult, Router, RouterEvent};
use crate::messages::{Connection, OutgoingMessage};

/// The identities of `connections` grouped by backend name, each group in
/// the order the connections came (RapidSMS's `group_outgoing_identities`).
pub fn group_by_backend(connections: &[Connection]) -> BTreeMap<&str, Vec<String>> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for connection in connections {
        groups.entry(connection.backend.as_str()).or_default().push(connection.identity.clone());
    }
    groups
}

impl Router {
    /// Run the outgoing phase (apps in reverse order) and, unless an app
    /// cancelled, hand the message to its backends, one call per backend.
    pub(crate) async fn send_outgoing(&self, msg: &mut OutgoingMessage, depth: u32) {
        if self.outgoing_phase(msg, depth).await {
            self.deliver(msg, depth).await;
        }
    }

    /// Run the outgoing phase (apps in reverse order): false when an app
    /// cancelled the send; otherwise the message is marked processed.
    pub(crate) async fn outgoing_phase(&self, msg: &mut OutgoingMessage, depth: u32) -> bool {
        let roster = self.roster();
        for app in roster.apps.iter().rev() {
            if !app.phases().contains(super::Phase::Outgoing) {
                continue;
            }
            let result = match app.outgoing(msg, depth).await {
                Ok(keep) => PhaseResult::Returned(keep),
                // RapidSMS logs an error in `outgoing` and sends anyway.
                Err(failure) => PhaseResult::Failed(failure.0),
            };
            tokio::task::consume_budget().await;
            let cancelled = result == PhaseResult::Returned(false);
            self.emit(RouterEvent::Phase {
                message_id: msg.id.clone(),
                app: app.name().to_owned(),
                phase: super::Phase::Outgoing,
                result,
            });
            if cancelled {
                self.emit(RouterEvent::Cancelled { message_id: msg.id.clone(), app: app.name().to_owned() });
                return false;
            }
        }
        msg.processed = true;
        true
    }

    /// Hand `msg` to its backends at once, one call per backend.
    async fn deliver(&self, msg: &OutgoingMessage, depth: u32) {
        let context = msg.extra_backend_context();
        let roster = self.roster();
        for (backend_name, identities) in group_by_backend(&msg.connections) {
            let Some(backend) = roster.backends.get(backend_name) else {
                self.emit(RouterEvent::NoSuchBackend {
                    message_id: msg.id.clone(),
                    backend: backend_name.to_owned(),
                    identities,
                });
                continue;
            };
            let sent = backend.send(msg, &identities, &context, depth).await;
            tokio::task::consume_budget().await;
            let (failed, error) = match sent {
                Ok(()) => (Vec::new(), None),
                Err(err) if err.failed_identities.is_empty() => (identities.clone(), Some(err.message)),
                Err(err) => (err.failed_identities, Some(err.message)),
            };
            self.emit(RouterEvent::Sent {
                message_id: msg.id.clone(),
                backend: backend_name.to_owned(),
                identities,
                text: msg.text.clone(),
                failed,
                error,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_order_within_a_backend() {
        let conns = vec![
            Connection::new("b", "1"),
            Connection::new("a", "2"),
            Connection::new("b", "3"),
            Connection::new("b", "1"),
        ];
        let groups = group_by_backend(&conns);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups["b"], ["1", "3", "1"]);
        assert_eq!(groups["a"], ["2"]);
    }
}
