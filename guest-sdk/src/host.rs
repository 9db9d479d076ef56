//! Calls into the host: RapidSMS's `rapidsms.router` functions, logging and
//! the plugin's private storage.

pub use crate::bindings::imports::rapidwasm::messaging::types::{Connection, Contact, HostError, Message};
use crate::bindings::imports::rapidwasm::messaging::{log as wit_log, router, storage as wit_storage};

/// Metadata carried by a message: ordered key/value pairs.
pub type Fields = Vec<(String, String)>;

/// `rapidsms.router.receive`: route `text` as if it came from `connection`.
/// Returns the new incoming message's id once routing has finished.
pub fn receive(text: &str, connection: &Connection, fields: &[(String, String)]) -> Result<String, HostError> {
    router::receive(text, connection, fields)
}

/// `rapidsms.router.send`: send `text` to `connections`. Returns the outgoing
/// message's id.
pub fn send(text: &str, connections: &[Connection], fields: &[(String, String)]) -> Result<String, HostError> {
    router::send(text, connections, fields)
}

/// `rapidsms.router.lookup_connections`: the connections for `identities` on
/// `backend`, in order, created where missing.
pub fn lookup_connections<S: AsRef<str>>(backend: &str, identities: &[S]) -> Result<Vec<Connection>, HostError> {
    let identities: Vec<String> = identities.iter().map(|s| s.as_ref().to_owned()).collect();
    router::lookup_connections(backend, &identities)
}

/// The contact linked to `connection`, if any.
pub fn contact_of(connection: &Connection) -> Result<Option<Contact>, HostError> {
    router::contact_of(connection)
}

/// Create a contact called `name` (speaking `language`, empty when unknown)
/// and link `connection` to it: RapidSMS's registration.
pub fn register_contact(connection: &Connection, name: &str, language: &str) -> Result<Contact, HostError> {
    router::register_contact(connection, name, language)
}

/// Logging into the host's log; each line is tagged with the plugin's name.
pub mod log {
    use super::wit_log::{self, Level};

    /// Log at `trace` level.
    pub fn trace(message: &str) {
        wit_log::log(Level::Trace, message)
    }
    /// Log at `debug` level.
    pub fn debug(message: &str) {
        wit_log::log(Level::Debug, message)
    }
    /// Log at `info` level.
    pub fn info(message: &str) {
        wit_log::log(Level::Info, message)
    }
    /// Log at `warn` level.
    pub fn warn(message: &str) {
        wit_log::log(Level::Warn, message)
    }
    /// Log at `error` level.
    pub fn error(message: &str) {
        wit_log::log(Level::Error, message)
    }
}

/// The plugin's private key/value store, kept by the host.
pub mod storage {
    use super::{HostError, wit_storage};

    /// The value stored under `key`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
        wit_storage::get(key)
    }
    /// Store `value` under `key`, replacing any previous value.
    pub fn set(key: &str, value: &[u8]) -> Result<(), HostError> {
        wit_storage::set(key, value)
    }
    /// Remove `key`.
    pub fn delete(key: &str) -> Result<(), HostError> {
        wit_storage::delete(key)
    }
    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// beginning after `start_after`.
    pub fn scan(prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        wit_storage::scan(prefix, start_after, limit)
    }
}
