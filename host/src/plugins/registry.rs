//! The running plugins, by name, and their hot swap.
//!
//! Each app and backend sits in a [`Slot`]: the router holds the slot, and
//! every call takes the version current when it starts (an `Arc` clone), so
//! a call already running finishes on the old version while new calls use
//! the new one. A swap first loads the new component completely — compile
//! (or reuse the compiled cache), check it fits the world it replaces,
//! configure a first instance — and only then swaps the `Arc` in with one
//! atomic exchange ([`arc_swap`]): no call waits for the swap, and the swap
//! waits for no call, even one whose thread the scheduler has put aside.
//! The old version is dropped when its last call ends. A swap that fails
//! validation changes nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::cache::sha256_hex;
use super::{HostContext, PluginEngine, PluginError, PluginKind, PluginSpec, WasmApp, WasmBackend};
use crate::messages::{Fields, IncomingMessage, OutgoingMessage};
use crate::router::{
    App, Backend, BoxFuture, InboundRequest, InboundResponse, Phase, PhaseOutcome, PhaseSet, PluginFailure, SendError,
};
use crate::store::now_ms;
use crate::sync::lock;

/// A plugin whose version can be replaced while calls run.
pub struct Slot<T> {
    name: String,
    current: ArcSwap<T>,
    /// The running version's phases (apps; empty for backends), kept
    /// beside the version: the router asks for every phase of every message.
    phases: AtomicU8,
}

impl<T> Slot<T> {
    fn new(name: String, first: T, phases: PhaseSet) -> Self {
        Slot { name, current: ArcSwap::from_pointee(first), phases: AtomicU8::new(phases.bits()) }
    }

    /// The version new calls use.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Put `next` in place; returns how long the exchange took and how
    /// many calls the old version was still running.
    fn replace(&self, next: T, phases: PhaseSet) -> (Duration, usize) {
        let next = Arc::new(next);
        let started = Instant::now();
        self.phases.store(phases.bits(), Ordering::Release);
        let old = self.current.swap(next);
        let stall = started.elapsed();
        // Our own reference aside, every other one is a call in flight.
        (stall, Arc::strong_count(&old) - 1)
    }
}

impl App for Slot<WasmApp> {
    fn name(&self) -> &str {
        &self.name
    }

    fn phases(&self) -> PhaseSet {
        PhaseSet::from_bits(self.phases.load(Ordering::Acquire))
    }

    fn incoming<'a>(
        &'a self,
        phase: Phase,
        msg: &'a IncomingMessage,
        depth: u32,
    ) -> BoxFuture<'a, Result<PhaseOutcome, PluginFailure>> {
        let version = self.current();
        Box::pin(async move { version.incoming(phase, msg, depth).await })
    }

    fn outgoing<'a>(&'a self, msg: &'a OutgoingMessage, depth: u32) -> BoxFuture<'a, Result<bool, PluginFailure>> {
        let version = self.current();
        Box::pin(async move { version.outgoing(msg, depth).await })
    }
}

impl Backend for Slot<WasmBackend> {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(
        &'a self,
        msg: &'a OutgoingMessage,
        identities: &'a [String],
        context: &'a Fields,
        depth: u32,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        let version = self.current();
        Box::pin(async move { version.send(msg, identities, context, depth).await })
    }

    fn handle_http(&self, request: InboundRequest) -> BoxFuture<'_, Result<InboundResponse, PluginFailure>> {
        let version = self.current();
        Box::pin(async move { version.handle_http(request).await })
    }
}

/// What the registry tells about one plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// Its configured name.
    pub name: String,
    /// `app` or `backend`.
    pub kind: String,
    /// Where the running version came from (`builtin:NAME` or a path).
    pub source: String,
    /// The SHA-256 of the running version's component, in hex.
    pub sha256: String,
    /// 1 for the version loaded at start, one more for each swap.
    pub version: u64,
    /// When the running version was put in place (ms since the epoch).
    pub loaded_on: u64,
    /// Calls that failed since the last one that succeeded.
    #[serde(default)]
    pub failures_in_a_row: u32,
    /// Until when its breaker pauses it (ms since the epoch), if it does.
    #[serde(default)]
    pub paused_until: Option<u64>,
    /// Calls of this version that failed or were refused: traps, deadlines,
    /// fuel, memory, every instance busy.
    #[serde(default)]
    pub failures: u64,
    /// Why the last of them failed.
    #[serde(default)]
    pub last_failure: Option<String>,
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwapReport {
    /// The plugin, after the swap.
    pub plugin: PluginInfo,
    /// Time to load and check the new version (µs); calls ran meanwhile.
    pub load_us: u64,
    /// Time the exchange of versions took (ns): the swap's stall. No call
    /// waits for it; calls starting meanwhile take one version or the other.
    pub stall_ns: u64,
    /// Calls still running on the old version, which it finishes.
    pub draining_calls: usize,
}

/// Why a swap, load or unload was refused.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No plugin has that name.
    #[error("no app or backend is named `{0}`")]
    NoSuchPlugin(String),
    /// A plugin of that name is already loaded (swap it instead).
    #[error("an app or backend named `{0}` is already loaded; swap it instead")]
    AlreadyLoaded(String),
    /// The name cannot be used.
    #[error("{0}")]
    BadName(String),
    /// The new version did not load; the old one keeps serving.
    #[error("{0}; the running version keeps serving")]
    Load(#[from] PluginError),
}

enum Running {
    App(Arc<Slot<WasmApp>>),
    Backend(Arc<Slot<WasmBackend>>),
}

struct Entry {
    running: Running,
    spec: PluginSpec,
    info: PluginInfo,
}

/// Every running plugin, by name.
pub struct PluginRegistry {
    engine: PluginEngine,
    host: HostContext,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// One swap at a time per registry.
    swapping: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry").finish_non_exhaustive()
    }
}

impl PluginRegistry {
    /// An empty registry loading with `engine` for plugins reaching `host`.
    pub fn new(engine: PluginEngine, host: HostContext) -> Self {
        PluginRegistry { engine, host, entries: Mutex::new(BTreeMap::new()), swapping: tokio::sync::Mutex::new(()) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        lock(&self.entries)
    }

    fn new_info(spec: &PluginSpec, kind: PluginKind, source: &str, bytes: &[u8], version: u64) -> PluginInfo {
        PluginInfo {
            name: spec.name.clone(),
            kind: kind.to_string(),
            source: source.to_owned(),
            sha256: sha256_hex(bytes),
            version,
            loaded_on: now_ms(),
            failures_in_a_row: 0,
            paused_until: None,
            failures: 0,
            last_failure: None,
        }
    }

    /// Load app `spec` from `bytes` (which came from `source`); returns the
    /// slot the router calls.
    pub async fn load_app(&self, bytes: &[u8], source: &str, spec: PluginSpec) -> Result<Arc<dyn App>, PluginError> {
        let app = WasmApp::load(&self.engine, bytes, spec.clone(), self.host.clone()).await?;
        let phases = app.phases();
        let slot = Arc::new(Slot::new(spec.name.clone(), app, phases));
        let info = Self::new_info(&spec, PluginKind::App, source, bytes, 1);
        self.entries().insert(spec.name.clone(), Entry { running: Running::App(slot.clone()), spec, info });
        Ok(slot)
    }

    /// Load backend `spec` from `bytes`; returns the slot the router calls.
    pub async fn load_backend(
        &self,
        bytes: &[u8],
        source: &str,
        spec: PluginSpec,
    ) -> Result<Arc<dyn Backend>, PluginError> {
        let backend = WasmBackend::load(&self.engine, bytes, spec.clone(), self.host.clone()).await?;
        let slot = Arc::new(Slot::new(spec.name.clone(), backend, PhaseSet::default()));
        let info = Self::new_info(&spec, PluginKind::Backend, source, bytes, 1);
        self.entries().insert(spec.name.clone(), Entry { running: Running::Backend(slot.clone()), spec, info });
        Ok(slot)
    }

    /// Whether a plugin called `name` is loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.entries().contains_key(name)
    }

    /// Forget plugin `name` (the caller has taken it out of the router);
    /// calls still running finish on it. Returns what it was.
    pub fn unload(&self, name: &str) -> Result<PluginInfo, SwapError> {
        let entry = self.entries().remove(name).ok_or_else(|| SwapError::NoSuchPlugin(name.to_owned()))?;
        tracing::info!(plugin = name, kind = entry.info.kind, "plugin unloaded");
        Ok(entry.info)
    }

    /// What the registry tells about plugin `name`.
    pub fn info(&self, name: &str) -> Option<PluginInfo> {
        self.list().into_iter().find(|p| p.name == name)
    }

    /// Every plugin, by name, with its breaker's state.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.entries()
            .values()
            .map(|e| {
                let health = match &e.running {
                    Running::App(slot) => slot.current().health(),
                    Running::Backend(slot) => slot.current().health(),
                };
                PluginInfo {
                    failures_in_a_row: health.failures_in_a_row,
                    paused_until: health.paused_until,
                    failures: health.failures,
                    last_failure: health.last_failure,
                    ..e.info.clone()
                }
            })
            .collect()
    }

    /// Replace plugin `name`'s component with `bytes` (from `source`), with
    /// new `settings` if given. The new version must fit the same world;
    /// until it has loaded and been configured, the old one serves.
    pub async fn swap(
        &self,
        name: &str,
        bytes: &[u8],
        source: &str,
        settings: Option<Fields>,
    ) -> Result<SwapReport, SwapError> {
        let _one_at_a_time = self.swapping.lock().await;
        let (mut spec, kind, version) = {
            let entries = self.entries();
            let entry = entries.get(name).ok_or_else(|| SwapError::NoSuchPlugin(name.to_owned()))?;
            let kind = match entry.running {
                Running::App(_) => PluginKind::App,
                Running::Backend(_) => PluginKind::Backend,
            };
            (entry.spec.clone(), kind, entry.info.version)
        };
        if let Some(mut settings) = settings {
            // The host's own settings stay.
            for key in ["backend_name", "project_name", "default_response"] {
                if let Some(value) = spec.settings.get(key) {
                    settings.entry(key.to_owned()).or_insert_with(|| value.clone());
                }
            }
            spec.settings = settings;
        }
        let started = Instant::now();
        let loaded = match kind {
            PluginKind::App => Loaded::App(WasmApp::load(&self.engine, bytes, spec.clone(), self.host.clone()).await?),
            PluginKind::Backend => {
                Loaded::Backend(WasmBackend::load(&self.engine, bytes, spec.clone(), self.host.clone()).await?)
            }
        };
        let load_us = started.elapsed().as_micros() as u64;
        let mut entries = self.entries();
        let entry = entries.get_mut(name).ok_or_else(|| SwapError::NoSuchPlugin(name.to_owned()))?;
        let (stall, draining_calls) = match (&entry.running, loaded) {
            (Running::App(slot), Loaded::App(next)) => {
                let phases = next.phases();
                slot.replace(next, phases)
            }
            (Running::Backend(slot), Loaded::Backend(next)) => slot.replace(next, PhaseSet::default()),
            _ => return Err(SwapError::NoSuchPlugin(name.to_owned())),
        };
        entry.spec = spec;
        entry.info = Self::new_info(&entry.spec, kind, source, bytes, version + 1);
        tracing::info!(
            plugin = name,
            source,
            version = version + 1,
            load_us,
            stall_ns = stall.as_nanos() as u64,
            draining_calls,
            "plugin swapped"
        );
        Ok(SwapReport { plugin: entry.info.clone(), load_us, stall_ns: stall.as_nanos() as u64, draining_calls })
    }
}

enum Loaded {
    App(WasmApp),
    Backend(WasmBackend),
}
