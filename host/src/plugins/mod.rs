//! WebAssembly plugins: apps and backends as components.
//!
//! One [`PluginEngine`] per process holds the wasmtime `Engine` and two
//! `Linker`s built once with the host functions of `wit/messaging.wit` and an
//! empty, deny-all WASI (no files, environment, sockets; stdout discarded).
//! The backends' linker adds `wasi:http` for outbound requests, limited to
//! each backend's [`AllowedHosts`]; apps get no network at all.
//! Each loaded component gets an `InstancePre`; instances are created from it
//! on demand and kept in a small pool per plugin.
//!
//! Isolation: every call runs under an epoch deadline and a memory limit. A
//! call that traps, runs out of time or fails in any way poisons its store
//! (wasmtime refuses to re-enter it), so that instance is dropped and the
//! next call gets a fresh one. The router sees such a failure as a
//! [`PluginFailure`](crate::router::PluginFailure).
//!
//! [`WasmApp`] and [`WasmBackend`] implement the router's
//! [`App`](crate::router::App) and [`Backend`](crate::router::Backend)
//! traits; the router never touches wasmtime types.

mod app;
mod backend;
pub mod bindings;
mod breaker;
mod cache;
mod convert;
mod engine;
mod grants;
mod instance;
mod limits;
mod outbound;
mod pool;
pub mod registry;
mod state;

use std::sync::Arc;
use std::time::Duration;

pub use self::app::WasmApp;
pub use self::backend::WasmBackend;
pub use self::breaker::Health;
pub(crate) use self::cache::sha256_hex;
pub use self::engine::PluginEngine;
pub use self::grants::{DirGrant, Grants};
pub use self::limits::MemoryLimitExceeded;
pub use self::outbound::AllowedHosts;
pub use self::registry::{PluginInfo, PluginRegistry, SwapError, SwapReport};
use crate::messages::Fields;
use crate::router::RouterLink;
use crate::store::Store;

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a single call (one phase, one send) may run.
    pub call_timeout: Duration,
    /// Most linear memory one instance may use, in bytes, summed over all of
    /// its memories.
    pub memory_bytes: usize,
    /// Most calls into the plugin running at once (instances in use); a
    /// call beyond it waits for one, up to its call timeout. Calls made
    /// from inside routing (nested in another plugin call) are not counted.
    pub max_instances: usize,
    /// WebAssembly fuel (about one unit per instruction) one call may burn,
    /// on top of its deadline; `None` meters nothing. Plugins with fuel run
    /// on a metered engine, a little slower.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { call_timeout: Duration::from_secs(1), memory_bytes: 64 << 20, max_instances: 32, fuel: None }
    }
}

/// Which world a plugin must implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// The `app-plugin` world.
    App,
    /// The `backend-plugin` world.
    Backend,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::App => "app",
            PluginKind::Backend => "backend",
        })
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a valid WebAssembly component.
    #[error("plugin `{plugin}` is not a valid WebAssembly component: {reason}")]
    Compile {
        /// The plugin's configured name.
        plugin: String,
        /// The compiler's message.
        reason: String,
    },
    /// The component imports something the host does not provide, or does
    /// not export what its world requires.
    #[error("plugin `{plugin}` does not fit the {kind} world: {reason}")]
    WrongWorld {
        /// The plugin's configured name.
        plugin: String,
        /// The world it was loaded as.
        kind: PluginKind,
        /// What does not fit.
        reason: String,
    },
    /// The plugin's `configure` refused its settings.
    #[error("plugin `{plugin}` refused its settings: {reason}")]
    Configure {
        /// The plugin's configured name.
        plugin: String,
        /// The plugin's message.
        reason: String,
    },
    /// The plugin trapped or failed while being set up.
    #[error("plugin `{plugin}` failed while starting: {reason}")]
    Start {
        /// The plugin's configured name.
        plugin: String,
        /// What happened.
        reason: String,
    },
}

/// What a plugin instance needs from the host: the router to call back and
/// the store for its private data.
#[derive(Clone)]
pub struct HostContext {
    /// The router, connected once it exists.
    pub router: RouterLink,
    /// The store behind the plugin's `storage` interface.
    pub store: Arc<dyn Store>,
    /// Longest text the plugin may respond, send or receive, in bytes.
    pub max_text_bytes: usize,
}

/// How to set up one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The configured name; also the namespace of its storage.
    pub name: String,
    /// The settings handed to its `configure`.
    pub settings: Fields,
    /// The call limits.
    pub limits: Limits,
    /// Where a backend may send HTTP requests (apps have no network).
    pub allowed_hosts: AllowedHosts,
    /// Files, environment and sockets the operator grants it.
    pub grants: Grants,
    /// Where compiled components are kept between runs; `None` keeps them
    /// in memory only.
    pub compile_cache: Option<std::path::PathBuf>,
}
