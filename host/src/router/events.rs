//! What the router did, reported to [`Observer`]s and to the log.
//!
//! The CLI prints these events; tests collect them to check phase order.

use super::Phase;
use crate::messages::Connection;

/// How an app's phase call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseResult {
    /// It returned this value (false for phases that return nothing).
    Returned(bool),
    /// It failed (trap, timeout, ...); it counts as having returned nothing.
    Failed(String),
}

/// One thing the router did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// A message arrived.
    Received {
        /// The message's id.
        message_id: String,
        /// Where from.
        connection: Connection,
        /// Its text.
        text: String,
    },
    /// An app ran a phase on a message.
    Phase {
        /// The message's id.
        message_id: String,
        /// The app's name.
        app: String,
        /// Which phase.
        phase: Phase,
        /// How it ended.
        result: PhaseResult,
    },
    /// An app's `filter` dropped the message.
    Filtered {
        /// The message's id.
        message_id: String,
        /// The app that dropped it.
        app: String,
    },
    /// An app's `outgoing` cancelled a send.
    Cancelled {
        /// The outgoing message's id.
        message_id: String,
        /// The app that cancelled it.
        app: String,
    },
    /// A backend was asked to send a message.
    Sent {
        /// The outgoing message's id.
        message_id: String,
        /// The backend's name.
        backend: String,
        /// The identities it was asked to send to.
        identities: Vec<String>,
        /// The text sent.
        text: String,
        /// The identities it reported failed.
        failed: Vec<String>,
        /// Its error message, if it reported one.
        error: Option<String>,
    },
    /// Connections named a backend that is not configured; dropped.
    NoSuchBackend {
        /// The outgoing message's id.
        message_id: String,
        /// The unknown backend.
        backend: String,
        /// The identities that were not sent.
        identities: Vec<String>,
    },
}

/// Receives every [`RouterEvent`], synchronously, as it happens.
pub trait Observer: Send + Sync {
    /// Called once per event.
    fn event(&self, event: &RouterEvent);
}

/// Log an event at a level fitting it.
pub(super) fn log(event: &RouterEvent) {
    match event {
        RouterEvent::Received { message_id, connection, text } => {
            tracing::debug!(%message_id, %connection, text, "received")
        }
        RouterEvent::Phase { message_id, app, phase, result: PhaseResult::Failed(error) } => {
            tracing::error!(%message_id, app, %phase, error, "app failed; treated as returning nothing")
        }
        RouterEvent::Phase { message_id, app, phase, result: PhaseResult::Returned(value) } => {
            tracing::trace!(%message_id, app, %phase, value, "phase ran")
        }
        RouterEvent::Filtered { message_id, app } => tracing::debug!(%message_id, app, "filtered"),
        RouterEvent::Cancelled { message_id, app } => tracing::debug!(%message_id, app, "send cancelled"),
        RouterEvent::Sent { message_id, backend, identities, error: Some(error), failed, .. } => {
            tracing::error!(%message_id, backend, ?identities, ?failed, error, "backend failed to send")
        }
        RouterEvent::Sent { message_id, backend, identities, .. } => {
            tracing::debug!(%message_id, backend, ?identities, "sent")
        }
        RouterEvent::NoSuchBackend { message_id, backend, identities } => {
            tracing::error!(%message_id, backend, ?identities, "router is not configured with this backend; not sent")
        }
    }
}
