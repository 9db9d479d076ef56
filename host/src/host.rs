//! The assembled host: a [`Config`] turned into a store, loaded plugins and
//! a [`Router`].

use std::sync::Arc;

use crate::config::{Config, PluginConfig, PluginSource};
use crate::plugins::{HostContext, PluginEngine, PluginError, PluginSpec, WasmApp, WasmBackend};
use crate::router::{App, Backend, Observer, Router, RouterLink, RouterOptions};
use crate::store::{SledStore, Store, StoreError};

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A plugin's file could not be read.
    #[error("cannot read the component of plugin `{plugin}` at {path}: {source}")]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The WebAssembly engine could not be created.
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
}

/// A running host: store, plugins and router.
pub struct Host {
    router: Router,
    store: Arc<dyn Store>,
    config: Config,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("router", &self.router).finish_non_exhaustive()
    }
}

impl Host {
    /// Open the store in `config.data_dir` and load every plugin, reporting
    /// router events to `observers`.
    pub async fn start(config: Config, observers: Vec<Arc<dyn Observer>>) -> Result<Host, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StoreError::Engine(format!("cannot create the data directory {}: {e}", config.data_dir.display()))
        })?;
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&config.data_dir)?);
        Self::start_with_store(config, store, observers).await
    }

    /// Like [`start`](Self::start), on a store you opened.
    pub async fn start_with_store(
        config: Config,
        store: Arc<dyn Store>,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Host, StartError> {
        let engine = PluginEngine::shared().map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let link = RouterLink::new();
        let host = HostContext { router: link.clone(), store: store.clone() };

        let mut apps: Vec<Arc<dyn App>> = Vec::new();
        for app in &config.apps {
            let bytes = component_bytes(app)?;
            let spec = spec(app, &config);
            apps.push(Arc::new(WasmApp::load(&engine, &bytes, spec, host.clone()).await?));
        }
        let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
        for backend in &config.backends {
            store.ensure_backend(&backend.name)?;
            let bytes = component_bytes(backend)?;
            let spec = spec(backend, &config);
            backends.push(Arc::new(WasmBackend::load(&engine, &bytes, spec, host.clone()).await?));
        }

        let options = RouterOptions { max_depth: config.max_depth };
        let router = Router::new(apps, backends, store.clone(), observers, options, &link);
        Ok(Host { router, store, config })
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Flush the store and stop. Dropping the host also closes the store,
    /// without reporting errors.
    pub fn shutdown(self) -> Result<(), StoreError> {
        self.store.flush()
    }
}

fn spec(plugin: &PluginConfig, config: &Config) -> PluginSpec {
    PluginSpec {
        name: plugin.name.clone(),
        settings: plugin.settings.clone(),
        limits: plugin.limits,
        allowed_hosts: plugin.allowed_hosts.clone(),
        compile_cache: Some(config.compile_cache.clone()),
    }
}

fn component_bytes(plugin: &PluginConfig) -> Result<std::borrow::Cow<'static, [u8]>, StartError> {
    match &plugin.source {
        PluginSource::Builtin(name) => match rapidwasm_builtin_plugins::get(name) {
            Some(bytes) => Ok(bytes.into()),
            None => Err(StartError::Read {
                plugin: plugin.name.clone(),
                path: format!("builtin:{name}"),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such built-in plugin"),
            }),
        },
        PluginSource::File(path) => std::fs::read(path).map(Into::into).map_err(|source| StartError::Read {
            plugin: plugin.name.clone(),
            path: path.display().to_string(),
            source,
        }),
    }
}
