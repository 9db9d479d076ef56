//! Persistence of RapidSMS's models — backends, contacts, connections — and
//! of each plugin's private key/value data.
//!
//! [`Store`] is deliberately small so another engine can implement it; the
//! shipped implementation is [`SledStore`]. Plugins never see a `Store`:
//! they reach it only through the host functions in
//! [`plugins`](crate::plugins), which namespace every key by plugin.

pub mod conformance;
mod framing;
mod hot;
pub mod journal;
mod memtable;
mod pages;
mod round;
mod sled_store;
mod wal;
mod write_behind;

use serde::{Deserialize, Serialize};

pub use self::sled_store::SledStore;
use crate::messages::{Connection, Contact};

/// A stored connection (RapidSMS's `Connection` model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The backend and identity; unique together.
    pub connection: Connection,
    /// The id of the linked contact, if any.
    pub contact_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_on: u64,
    /// Milliseconds since the Unix epoch.
    pub modified_on: u64,
}

/// A stored backend (RapidSMS's `Backend` model: a name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRecord {
    /// The backend's unique name.
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_on: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (I/O, corruption, ...).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored record could not be decoded.
    #[error("corrupt record under key {key:?}: {reason}")]
    Corrupt {
        /// The key of the record.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An argument was not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A referenced record does not exist.
    #[error("no {what} {id:?}")]
    NotFound {
        /// The kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The data directory is held by another process (a running host).
    #[error("the data directory {path} is in use by another rapidwasm process")]
    Locked {
        /// The data directory.
        path: String,
    },
}

/// Storage of backends, contacts, connections and plugin data.
///
/// Implementations must be safe to share between threads. Every method is a
/// short, synchronous operation.
pub trait Store: Send + Sync + 'static {
    /// The backend called `name`, created if missing.
    fn ensure_backend(&self, name: &str) -> Result<BackendRecord, StoreError>;

    /// Every stored backend, by name.
    fn backends(&self) -> Result<Vec<BackendRecord>, StoreError>;

    /// The connections for `identities` on `backend`, in the same order
    /// (duplicates allowed); missing backends and connections are created
    /// (RapidSMS's `lookup_connections`).
    fn lookup_connections(&self, backend: &str, identities: &[String]) -> Result<Vec<ConnectionRecord>, StoreError>;

    /// The stored connection, without creating it.
    fn connection(&self, connection: &Connection) -> Result<Option<ConnectionRecord>, StoreError>;

    /// A new contact with a fresh id.
    fn create_contact(&self, name: &str, language: &str) -> Result<Contact, StoreError>;

    /// The contact with this id.
    fn contact(&self, id: &str) -> Result<Option<Contact>, StoreError>;

    /// Link `connection` (created if missing) to a contact, or unlink it with
    /// `None`.
    fn link_contact(&self, connection: &Connection, contact_id: Option<&str>) -> Result<ConnectionRecord, StoreError>;

    /// A plugin's value under `key`.
    fn plugin_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Set a plugin's value under `key`.
    fn plugin_set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Remove a plugin's `key`.
    fn plugin_delete(&self, plugin: &str, key: &str) -> Result<(), StoreError>;

    /// Up to `limit` of a plugin's entries whose key starts with `prefix`, in
    /// key order, beginning after `start_after`.
    fn plugin_scan(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Make everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Wait until every write accepted so far (plugin data, and the
    /// durable router's journal) is in the underlying engine, readable by
    /// anyone, though not necessarily on disk. A store that
    /// writes through has nothing to wait for. (Benchmarks call it so that
    /// their figures include work a store does behind its writers.)
    fn settle(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Longest backend name, identity or plugin key accepted (bytes).
pub const MAX_NAME_LEN: usize = 1024;

/// Check a backend name, identity, plugin name or key: not empty, not too
/// long, no NUL (the key separator).
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), StoreError> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.len() > MAX_NAME_LEN {
        format!("is {} bytes long; the limit is {MAX_NAME_LEN}", value.len())
    } else if value.contains('\0') {
        "must not contain NUL characters".to_owned()
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid { what, reason })
}
