//! Backends: RapidSMS's `BackendBase`, delivering outgoing messages.

use crate::host::Message;
use crate::http::{HttpRequest, HttpResponse};
use crate::settings::Settings;

#[cfg(feature = "backend")]
pub use crate::bindings::backend::rapidwasm::messaging::delivery::DeliveryStatus;

/// Tell the host what a gateway reported about outgoing message
/// `message_id` (the id [`Backend::send`] was given) to `identity`. Returns
/// false when the host knows no such transmission: it has logged that, and
/// the gateway should still get a success answer so it stops retrying.
///
/// Statuses never move backwards on the host, so pass every report on as
/// it comes, however late or repeated.
#[cfg(feature = "backend")]
pub fn report_delivery(
    message_id: &str,
    identity: &str,
    status: DeliveryStatus,
    detail: &str,
) -> Result<bool, crate::host::HostError> {
    crate::bindings::backend::rapidwasm::messaging::delivery::report(message_id, identity, status, detail)
}

/// Why a send failed, for all or some identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// What went wrong, for the host's log.
    pub message: String,
    /// The identities that were not sent; empty means all of them.
    pub failed_identities: Vec<String>,
}

impl SendError {
    /// Every identity failed.
    pub fn all(message: impl Into<String>) -> Self {
        SendError { message: message.into(), failed_identities: Vec::new() }
    }

    /// Only `failed_identities` failed; the others were sent.
    pub fn some(message: impl Into<String>, failed_identities: Vec<String>) -> Self {
        SendError { message: message.into(), failed_identities }
    }

    /// Send to each identity on its own with `send_one`, for gateways that
    /// take one recipient per request. The error, if any, names exactly the
    /// identities that failed, each with its reason.
    pub fn for_each(
        identities: &[String],
        mut send_one: impl FnMut(&str) -> Result<(), String>,
    ) -> Result<(), SendError> {
        let mut failed = Vec::new();
        let mut reasons = Vec::new();
        for identity in identities {
            if let Err(why) = send_one(identity) {
                failed.push(identity.clone());
                reasons.push(format!("{identity}: {why}"));
            }
        }
        match failed.len() {
            0 => Ok(()),
            n if n == identities.len() => Err(SendError::all(reasons.join("; "))),
            _ => Err(SendError::some(reasons.join("; "), failed)),
        }
    }
}

/// A RapidSMS backend. Export it with [`backend!`](crate::backend).
///
/// Created with `Default::default()`, then [`configure`](Backend::configure)d
/// once per fresh instance.
pub trait Backend: Default {
    /// Read settings from the host's configuration. An error refuses the
    /// configuration.
    fn configure(&mut self, settings: &Settings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }

    /// Send `message` to `identities`, all of them on this backend.
    /// `context` is the message's `extra_backend_context()`
    /// (`in_response_to`, `external_id`).
    fn send(&self, message: &Message, identities: &[String], context: &[(String, String)]) -> Result<(), SendError>;

    /// Handle an inbound request from a gateway, sent to
    /// `/backends/<name>/...`: parse it, call [`receive`](crate::receive)
    /// for each message and answer as the gateway expects. The default
    /// answers 404: the backend takes no inbound requests.
    fn handle_http(&self, request: &HttpRequest) -> HttpResponse {
        let _ = request;
        HttpResponse::not_found()
    }
}
