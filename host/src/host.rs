//! The assembled host: a [`Config`] turned into a store and its tenants,
//! each with loaded plugins and a [`Router`].

use std::sync::Arc;

use crate::config::{Config, PluginSource};
use crate::plugins::{PluginError, PluginRegistry};
use crate::router::{Observer, Router};
use crate::store::{SledStore, Store, StoreError};
use crate::tenant::Tenant;

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

/// A running host: its tenants, each with store, plugins and router.
pub struct Host {
    tenants: Vec<Arc<Tenant>>,
    config: Config,
    sled: SledStore,
    /// The plugin file watcher (`watch_plugins`), stopped with the host.
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("tenants", &self.tenants).finish_non_exhaustive()
    }
}

impl Host {
    /// Open the store in `config.data_dir` and start every tenant, reporting
    /// router events to `observers`.
    pub async fn start(config: Config, observers: Vec<Arc<dyn Observer>>) -> Result<Host, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StoreError::Engine(format!("cannot create the data directory {}: {e}", config.data_dir.display()))
        })?;
        let sled = SledStore::open(&config.data_dir)?;
        let mut tenants = Vec::with_capacity(config.tenants.len());
        for tenant in &config.tenants {
            let store = sled.tenant(&tenant.name)?;
            let journal = match config.durable {
                Some(_) => Some(store.journal()?),
                None => None,
            };
            let started = Tenant::start(&config, tenant, Arc::new(store), journal, observers.clone()).await?;
            tenants.push(Arc::new(started));
        }
        let watcher = config.watch_plugins.then(|| tokio::spawn(crate::watch::watch(tenants.clone())));
        Ok(Host { tenants, config, sled, watcher })
    }

    /// The default tenant (the configuration's top-level apps and backends).
    pub fn default_tenant(&self) -> &Arc<Tenant> {
        &self.tenants[0]
    }

    /// The tenant called `name`.
    pub fn tenant(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.iter().find(|t| t.name() == name)
    }

    /// Every tenant, the default one first.
    pub fn tenants(&self) -> &[Arc<Tenant>] {
        &self.tenants
    }

    /// The default tenant's router.
    pub fn router(&self) -> &Router {
        self.default_tenant().router()
    }

    /// The default tenant's running plugins, for listing and hot swap.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        self.default_tenant().registry()
    }

    /// The default tenant's store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.default_tenant().store()
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Give every tenant's durable router up to `timeout` to route and send
    /// what it holds; returns how many messages and transmissions are still
    /// waiting (they are resumed at the next start).
    pub async fn drain(&self, timeout: std::time::Duration) -> (usize, usize) {
        let mut drains = tokio::task::JoinSet::new();
        for tenant in &self.tenants {
            let router = tenant.router().clone();
            drains.spawn(async move { router.drain(timeout).await });
        }
        let mut left = (0, 0);
        while let Some(Ok((inbox, outbox))) = drains.join_next().await {
            left = (left.0 + inbox, left.1 + outbox);
        }
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
        self.sled.flush()
    }
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
