//! The assembled host: a [`Config`] turned into a store, loaded plugins and
//! a [`Router`].

use std::sync::Arc;

use crate::config::{Config, PluginConfig, PluginSource};
use crate::plugins::{HostContext, PluginEngine, PluginError, PluginRegistry, PluginSpec};
use crate::router::{App, Backend, Durability, Observer, Router, RouterLink, RouterOptions};
use crate::store::journal::Journal;
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
    /// The durable router was configured without a journal.
    #[error("the configuration asks for the durable router, but no journal was given")]
    NoJournal,
    /// What the last run left could not be read back.
    #[error("cannot resume the messages left from the last run: {0}")]
    Recover(String),
}

/// A running host: store, plugins and router.
pub struct Host {
    router: Router,
    store: Arc<dyn Store>,
    config: Config,
    registry: Arc<PluginRegistry>,
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
        let sled = SledStore::open(&config.data_dir)?;
        let journal = match config.durable {
            Some(_) => Some(sled.journal()?),
            None => None,
        };
        Self::start_with_store(config, Arc::new(sled), journal, observers).await
    }

    /// Like [`start`](Self::start), on a store (and, for the durable router,
    /// a journal) you opened.
    pub async fn start_with_store(
        config: Config,
        store: Arc<dyn Store>,
        journal: Option<Journal>,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Host, StartError> {
        let engine = PluginEngine::shared().map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let link = RouterLink::new();
        let host = HostContext { router: link.clone(), store: store.clone() };

        let registry = Arc::new(PluginRegistry::new(engine, host));
        let mut apps: Vec<Arc<dyn App>> = Vec::new();
        for app in &config.apps {
            let bytes = component_bytes(app)?;
            apps.push(registry.load_app(&bytes, &app.source.to_string(), spec(app, &config)).await?);
        }
        let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
        for backend in &config.backends {
            store.ensure_backend(&backend.name)?;
            let bytes = component_bytes(backend)?;
            backends.push(registry.load_backend(&bytes, &backend.source.to_string(), spec(backend, &config)).await?);
        }

        let durable = match (config.durable, journal) {
            (Some(options), Some(journal)) => Some(Durability { journal, options }),
            (Some(_), None) => return Err(StartError::NoJournal),
            (None, _) => None,
        };
        let options = RouterOptions { max_depth: config.max_depth, durable };
        let router = Router::new(apps, backends, store.clone(), observers, options, &link);
        router.recover().await.map_err(|e| StartError::Recover(e.to_string()))?;
        Ok(Host { router, store, config, registry })
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The running plugins, for listing and hot swap.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Give the durable router up to `timeout` to route and send what it
    /// holds; returns how many messages and transmissions are still waiting
    /// (they are resumed at the next start).
    pub async fn drain(&self, timeout: std::time::Duration) -> (usize, usize) {
        let left = self.router.drain(timeout).await;
        if left != (0, 0) {
            tracing::warn!(
                inbox = left.0,
                outbox = left.1,
                "stopping with messages still waiting; they are resumed at the next start"
            );
        }
        left
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
    source_bytes(&plugin.name, &plugin.source)
}

/// The component bytes of plugin `name` from `source`.
pub fn source_bytes(name: &str, source: &PluginSource) -> Result<std::borrow::Cow<'static, [u8]>, StartError> {
    match source {
        PluginSource::Builtin(builtin) => match rapidwasm_builtin_plugins::get(builtin) {
            Some(bytes) => Ok(bytes.into()),
            None => Err(StartError::Read {
                plugin: name.to_owned(),
                path: format!("builtin:{builtin}"),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such built-in plugin"),
            }),
        },
        PluginSource::File(path) => std::fs::read(path).map(Into::into).map_err(|source| StartError::Read {
            plugin: name.to_owned(),
            path: path.display().to_string(),
            source,
        }),
    }
}
