//! The shared wasmtime `Engine` and `Linker`, and component compilation.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::state::PluginState;
use super::{PluginError, PluginKind, bindings, cache};

/// How often the epoch advances; call deadlines are counted in these ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process's wasmtime engine, its linker and a cache of compiled
/// components. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    apps: Linker<PluginState>,
    backends: Linker<PluginState>,
    compiled: Mutex<HashMap<u64, Component>>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine").finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// A new engine with epoch interruption, its ticker thread and a linker
    /// holding the host functions and a deny-all WASI.
    pub fn new() -> anyhow::Result<Self> {
        Self::build(false)
    }

    /// Like [`new`](Self::new), and counting fuel: plugins whose
    /// [`Limits::fuel`](super::Limits::fuel) is set need this engine.
    pub fn metered() -> anyhow::Result<Self> {
        Self::build(true)
    }

    fn build(fuel: bool) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true).consume_fuel(fuel);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        let base = || -> wasmtime::Result<Linker<PluginState>> {
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            bindings::imports::Imports::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
            Ok(linker)
        };
        let apps = base().map_err(anyhow::Error::from)?;
        let mut backends = base().map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut backends).map_err(anyhow::Error::from)?;
        bindings::backend_imports::BackendImports::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut backends,
            |s| s,
        )
        .map_err(anyhow::Error::from)?;

        spawn_epoch_ticker(&engine);
        let inner = EngineInner { engine, apps, backends, compiled: Mutex::new(HashMap::new()) };
        Ok(PluginEngine { inner: Arc::new(inner) })
    }

    /// One engine shared by everything in this process that does not bring
    /// its own (compiled components are shared too).
    pub fn shared() -> anyhow::Result<Self> {
        static SHARED: std::sync::OnceLock<PluginEngine> = std::sync::OnceLock::new();
        if let Some(engine) = SHARED.get() {
            return Ok(engine.clone());
        }
        let engine = PluginEngine::new()?;
        Ok(SHARED.get_or_init(|| engine).clone())
    }

    /// The process's shared [`metered`](Self::metered) engine.
    pub fn shared_metered() -> anyhow::Result<Self> {
        static SHARED: std::sync::OnceLock<PluginEngine> = std::sync::OnceLock::new();
        if let Some(engine) = SHARED.get() {
            return Ok(engine.clone());
        }
        let engine = PluginEngine::metered()?;
        Ok(SHARED.get_or_init(|| engine).clone())
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker for plugins of `kind`: backends also get `wasi:http`.
    pub(super) fn linker(&self, kind: PluginKind) -> &Linker<PluginState> {
        match kind {
            PluginKind::App => &self.inner.apps,
            PluginKind::Backend => &self.inner.backends,
        }
    }

    /// Compile `bytes`, or reuse the component compiled from identical
    /// bytes: in memory, else in the on-disk cache `disk` when there is one
    /// (see [`cache`](super::cache)).
    pub(super) fn compile(&self, plugin: &str, bytes: &[u8], disk: Option<&Path>) -> Result<Component, PluginError> {
        let key = {
            let mut hasher = std::hash::DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        };
        if let Some(component) = self.cached(key) {
            return Ok(component);
        }
        let file = disk.map(|dir| cache::path_for(dir, &self.inner.engine, bytes));
        let component = match file.as_deref().and_then(|file| cache::load(&self.inner.engine, file)) {
            Some(component) => component,
            None => {
                let started = std::time::Instant::now();
                let component = Component::from_binary(&self.inner.engine, bytes)
                    .map_err(|e| PluginError::Compile { plugin: plugin.to_owned(), reason: format!("{e:#}") })?;
                tracing::debug!(plugin, ms = started.elapsed().as_millis() as u64, "compiled");
                if let Some(file) = &file {
                    cache::store(&component, file);
                }
                component
            }
        };
        if let Ok(mut cache) = self.inner.compiled.lock() {
            cache.insert(key, component.clone());
        }
        Ok(component)
    }

    fn cached(&self, key: u64) -> Option<Component> {
        self.inner.compiled.lock().ok().and_then(|cache| cache.get(&key).cloned())
    }
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new().name("rapidwasm-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        }
    });
    if let Err(err) = spawned {
        tracing::error!(%err, "cannot start the epoch ticker: plugin calls will have no deadline");
    }
}
