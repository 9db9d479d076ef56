//! # rapidwasm: RapidSMS's messaging core as a WebAssembly plugin host
//!
//! The host owns the [`router`], the [`messages`] and a sled-backed
//! [`store`] of backends, contacts and connections. Apps (message handlers)
//! and backends (gateways) are WebAssembly components loaded at run time by
//! [`plugins`]; they reach the host only through the WIT interface in
//! `wit/messaging.wit`.
//!
//! The library mirrors RapidSMS's messaging API:
//!
//! | RapidSMS | rapidwasm |
//! |---|---|
//! | `rapidsms.router.receive(text, connection, **kwargs)` | [`Router::receive`](router::Router::receive) |
//! | `rapidsms.router.send(text, connections, **kwargs)` | [`Router::send`](router::Router::send) |
//! | `rapidsms.router.lookup_connections(backend, identities)` | [`Router::lookup_connections`](router::Router::lookup_connections) |
//! | `IncomingMessage.respond(text, **kwargs)` | [`IncomingMessage::respond`](messages::IncomingMessage::respond) |
//! | `OutgoingMessage.send()` | [`OutgoingMessage::send`](messages::OutgoingMessage::send) |
//! | `OutgoingMessage.extra_backend_context()` | [`OutgoingMessage::extra_backend_context`](messages::OutgoingMessage::extra_backend_context) |
//! | `ErrorMessage` | [`ErrorMessage`](messages::ErrorMessage) |
//!
//! A [`Host`] puts it together from a [`Config`](config::Config):
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use rapidwasm::{Host, config::Config, messages::{Connection, Fields}};
//!
//! let host = Host::start(Config::builtin()?, Vec::new()).await?;
//! let msg = host.router().receive("echo hi", Connection::new("console", "123"), Fields::new()).await?;
//! assert_eq!(msg.sent[0].text, "hi");
//! host.shutdown()?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
mod host;
pub mod http;
pub mod messages;
pub mod plugins;
pub mod process;
pub mod router;
pub mod scaffold;
pub mod store;
mod sync;
pub mod tenant;
pub mod watch;

pub use host::{Host, StartError, source_bytes};
