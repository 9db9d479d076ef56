//! Tenants: namespaces sharing one process, each with its own apps,
//! backends, data, limits and API keys.
//!
//! A tenant is a whole RapidSMS project: its own [`Router`] over its own
//! plugins, on its own sled trees. Its plugins reach the host only through
//! their tenant's router and store, so whatever a plugin asks —
//! `lookup_connections` on another tenant's backend name, `send` through it,
//! `storage` keys — it can only touch its own tenant's data: the names of
//! other tenants' backends mean nothing in its namespace.
//!
//! What the tenants share is the process: the wasmtime engine (and its
//! compiled components), the sled database file (not its trees), the
//! journal's committer thread and the HTTP server. Limits keep one tenant
//! from starving the others: per-call deadlines, fuel and memory, instance
//! caps, a message size, and a rate of requests per second.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, PluginConfig, TenantConfig, host_settings};
use crate::host::{StartError, source_bytes};
use crate::messages::Fields;
use crate::plugins::{
    AllowedHosts, Grants, HostContext, PluginEngine, PluginInfo, PluginKind, PluginRegistry, PluginSpec, SwapError,
};
use crate::router::{App, Backend, Durability, Observer, Router, RouterLink, RouterOptions};
use crate::store::Store;
use crate::store::journal::Journal;
use crate::sync::lock;

/// One running tenant.
pub struct Tenant {
    config: TenantConfig,
    defaults: LoadDefaults,
    router: Router,
    store: Arc<dyn Store>,
    registry: Arc<PluginRegistry>,
    rate: Option<RateLimit>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("name", &self.config.name).field("router", &self.router).finish_non_exhaustive()
    }
}

impl Tenant {
    /// Load tenant `tenant`'s plugins (with the process-wide settings of
    /// `config`) on `store`, and start its router; a durable router needs
    /// `journal` and resumes what it holds.
    pub(crate) async fn start(
        config: &Config,
        tenant: &TenantConfig,
        store: Arc<dyn Store>,
        journal: Option<Journal>,
        observers: Vec<Arc<dyn Observer>>,
    ) -> Result<Tenant, StartError> {
        let engine =
            if tenant.limits.app.fuel.is_some() { PluginEngine::shared_metered() } else { PluginEngine::shared() }
                .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let link = RouterLink::new();
        let host =
            HostContext { router: link.clone(), store: store.clone(), max_text_bytes: tenant.limits.max_message_bytes };

        let registry = Arc::new(PluginRegistry::new(engine, host));
        let mut apps: Vec<Arc<dyn App>> = Vec::new();
        for app in &tenant.apps {
            let bytes = source_bytes(&app.name, &app.source)?;
            apps.push(registry.load_app(&bytes, &app.source.to_string(), spec(app, config)).await?);
        }
        let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
        for backend in &tenant.backends {
            store.ensure_backend(&backend.name)?;
            let bytes = source_bytes(&backend.name, &backend.source)?;
            backends.push(registry.load_backend(&bytes, &backend.source.to_string(), spec(backend, config)).await?);
        }

        let durable = match (config.durable, journal) {
            (Some(options), Some(journal)) => Some(Durability { journal, options }),
            (Some(_), None) => return Err(StartError::NoJournal),
            (None, _) => None,
        };
        let options =
            RouterOptions { max_depth: config.max_depth, durable, max_text_bytes: tenant.limits.max_message_bytes };
        let router = Router::new(apps, backends, store.clone(), observers, options, &link);
        router.recover().await.map_err(|e| StartError::Recover(format!("tenant `{}`: {e}", tenant.name)))?;
        Ok(Tenant {
            defaults: LoadDefaults {
                compile_cache: config.compile_cache.clone(),
                project_name: config.project_name.clone(),
                default_response: config.default_response.clone(),
            },
            rate: tenant.limits.calls_per_second.map(RateLimit::new),
            config: tenant.clone(),
            router,
            store,
            registry,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its configuration.
    pub fn config(&self) -> &TenantConfig {
        &self.config
    }

    /// Its router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Its running plugins, for listing and hot swap.
    pub fn registry(&self) -> &Arc<PluginRegistry> {
        &self.registry
    }

    /// Its store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Load a new app or backend while the tenant runs: it is compiled,
    /// checked against its world and configured first, then added to the
    /// router (an app at `load.position` in the phases, else last). It runs
    /// with the tenant's limits and no grants; it lasts until the host
    /// stops (put it in the configuration to keep it).
    pub async fn load(&self, load: Load) -> Result<PluginInfo, SwapError> {
        crate::config::check_plugin_name(&load.name).map_err(SwapError::BadName)?;
        if self.registry.contains(&load.name) {
            return Err(SwapError::AlreadyLoaded(load.name));
        }
        let limits = &self.config.limits;
        let defaults = &self.defaults;
        let settings =
            host_settings(load.kind, &load.name, load.settings, &defaults.project_name, &defaults.default_response);
        let spec = |limits, allowed_hosts, settings| PluginSpec {
            name: load.name.clone(),
            settings,
            limits,
            allowed_hosts,
            grants: Grants::default(),
            compile_cache: Some(self.defaults.compile_cache.clone()),
        };
        match load.kind {
            PluginKind::App => {
                let spec = spec(limits.app, AllowedHosts::none(), settings);
                let app = self.registry.load_app(&load.bytes, &load.source, spec).await?;
                self.router.add_app(app, load.position);
            }
            PluginKind::Backend => {
                self.store.ensure_backend(&load.name).map_err(|e| SwapError::BadName(e.to_string()))?;
                let spec = spec(limits.backend, load.allowed_hosts, settings);
                let backend = self.registry.load_backend(&load.bytes, &load.source, spec).await?;
                self.router.add_backend(backend);
            }
        }
        tracing::info!(tenant = self.name(), plugin = load.name, kind = %load.kind, source = load.source, "plugin loaded");
        self.registry.info(&load.name).ok_or(SwapError::NoSuchPlugin(load.name))
    }

    /// Take app or backend `name` out of the tenant while it runs. Calls
    /// already running finish; a backend's sends in flight are waited for
    /// (up to its call timeout), and what it still had queued stays in the
    /// outbox until a backend of that name is loaded again.
    pub async fn unload(&self, name: &str) -> Result<PluginInfo, SwapError> {
        let info = self.registry.info(name).ok_or_else(|| SwapError::NoSuchPlugin(name.to_owned()))?;
        if info.kind == PluginKind::App.to_string() {
            self.router.remove_app(name);
        } else {
            self.router.remove_backend(name, self.config.limits.backend.call_timeout).await;
        }
        self.registry.unload(name)
    }

    /// Whether `key` is one of its API keys (compared in time independent
    /// of where keys differ). A tenant without keys accepts every request.
    pub fn accepts_key(&self, key: Option<&str>) -> bool {
        if self.config.api_keys.is_empty() {
            return true;
        }
        key.is_some_and(|key| self.config.api_keys.iter().any(|k| same_secret(key, k)))
    }

    /// Count one request against its `calls_per_second`; `Err` says how
    /// long to wait before the next one would be accepted.
    pub fn admit(&self) -> Result<(), Duration> {
        match &self.rate {
            Some(rate) => rate.take(),
            None => Ok(()),
        }
    }
}

/// A plugin to load into a running tenant.
#[derive(Debug, Clone)]
pub struct Load {
    /// Its name, unique in the tenant.
    pub name: String,
    /// App or backend.
    pub kind: PluginKind,
    /// Where the component came from (`builtin:NAME` or a path), for the
    /// plugin list.
    pub source: String,
    /// The component.
    pub bytes: Vec<u8>,
    /// The settings for its `configure`.
    pub settings: Fields,
    /// Where a backend may send HTTP requests.
    pub allowed_hosts: AllowedHosts,
    /// An app's place in the phases (0: first); `None`: last.
    pub position: Option<usize>,
}

/// What plugins loaded at run time get from the configuration.
#[derive(Debug, Clone)]
struct LoadDefaults {
    compile_cache: std::path::PathBuf,
    project_name: String,
    default_response: String,
}

/// Compare secrets in time independent of where they differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The settings a plugin is loaded with.
pub(crate) fn spec(plugin: &PluginConfig, config: &Config) -> PluginSpec {
    PluginSpec {
        name: plugin.name.clone(),
        settings: plugin.settings.clone(),
        limits: plugin.limits,
        allowed_hosts: plugin.allowed_hosts.clone(),
        grants: plugin.grants.clone(),
        compile_cache: Some(config.compile_cache.clone()),
    }
}

/// A token bucket: `rate` requests per second, bursts of up to `rate`.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        RateLimit { rate, state: Mutex::new((rate, Instant::now())) }
    }

    fn take(&self) -> Result<(), Duration> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills() {
        let limit = RateLimit::new(5);
        for _ in 0..5 {
            assert!(limit.take().is_ok());
        }
        let wait = limit.take().expect_err("the sixth at once is refused");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        std::thread::sleep(Duration::from_millis(210));
        assert!(limit.take().is_ok(), "a token came back after 1/5 s");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abcdef", "abcdef"));
        assert!(!same_secret("abcdef", "abcdeg"));
        assert!(!same_secret("abc", "abcdef"));
    }
}
