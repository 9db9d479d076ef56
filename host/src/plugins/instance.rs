//! What apps and backends share: linking a component to its world,
//! creating configured instances under limits, and pooling them.

use std::future::Future;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::{app, backend, imports::rapidwasm::messaging::types::Fields as WitFields};
use super::breaker::{Breaker, Health};
use super::convert::fields_to_wit;
use super::pool::{Instance, Pool, arm, describe, new_store};
use super::state::PluginState;
use super::{HostContext, PluginEngine, PluginError, PluginKind, PluginSpec};

/// A plugin world's generated bindings, as [`Plugin`] needs them.
pub(super) trait World: Send + Sync + 'static {
    /// The world's `…Pre` type.
    type Pre: Send + Sync;
    /// An instance's exports.
    type Bindings: Send;
    /// Which world this is.
    const KIND: PluginKind;

    /// Check the exports of a linked component.
    fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre>;

    /// Instantiate into `store`.
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send;

    /// Call the instance's `configure`.
    fn configure(
        bindings: &Self::Bindings,
        store: &mut Store<PluginState>,
        settings: &WitFields,
    ) -> impl Future<Output = wasmtime::Result<Result<(), String>>> + Send;
}

/// Implement [`World`] for a world's generated bindings.
macro_rules! world {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $module:ident :: $pre:ident, $bindings:ident, $exports:ident) => {
        $(#[$doc])*
        pub(super) struct $name;

        impl World for $name {
            type Pre = $module::$pre<PluginState>;
            type Bindings = $module::$bindings;
            const KIND: PluginKind = $kind;

            fn pre(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
                $module::$pre::new(pre)
            }

            async fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Bindings> {
                pre.instantiate_async(store).await
            }

            async fn configure(
                bindings: &Self::Bindings,
                store: &mut Store<PluginState>,
                settings: &WitFields,
            ) -> wasmtime::Result<Result<(), String>> {
                bindings.$exports().call_configure(store, settings).await
            }
        }
    };
}

world!(
    /// The `app-plugin` world.
    AppWorld, PluginKind::App, app::AppPluginPre, AppPlugin, rapidwasm_messaging_app
);
world!(
    /// The `backend-plugin` world.
    BackendWorld, PluginKind::Backend, backend::BackendPluginPre, BackendPlugin, rapidwasm_messaging_backend
);

/// Why a fresh instance could not be made.
pub(super) enum StartFailure {
    /// Its `configure` refused the settings.
    Configure(String),
    /// It trapped or failed while starting.
    Failed(String),
    /// The plugin is paused by its breaker.
    Paused(String),
    /// Every instance the plugin may run is in use.
    Busy(String),
}

impl StartFailure {
    fn into_plugin_error(self, plugin: &str) -> PluginError {
        let plugin = plugin.to_owned();
        match self {
            StartFailure::Configure(reason) => PluginError::Configure { plugin, reason },
            StartFailure::Failed(reason) | StartFailure::Paused(reason) | StartFailure::Busy(reason) => {
                PluginError::Start { plugin, reason }
            }
        }
    }

    /// A one-line account for a call that needed a fresh instance.
    pub fn describe(&self) -> String {
        match self {
            StartFailure::Configure(reason) => format!("a fresh instance refused its settings: {reason}"),
            StartFailure::Failed(reason) => format!("a fresh instance failed to start: {reason}"),
            StartFailure::Paused(reason) | StartFailure::Busy(reason) => reason.clone(),
        }
    }
}

/// One loaded component of world `W`, with its pool of instances.
pub(super) struct Plugin<W: World> {
    pub name: Arc<str>,
    pub spec: PluginSpec,
    engine: PluginEngine,
    pre: W::Pre,
    host: HostContext,
    settings: WitFields,
    pool: Pool<W::Bindings>,
    breaker: Breaker,
    /// One permit per call in flight, at most `limits.max_instances`.
    in_use: Arc<tokio::sync::Semaphore>,
}

impl<W: World> Plugin<W> {
    /// Compile `bytes` (or reuse an identical compiled component), check it
    /// fits world `W`, and configure a first instance. The instance is
    /// returned for the caller's first use; give it back with [`Self::give_back`].
    pub async fn load(
        engine: &PluginEngine,
        bytes: &[u8],
        spec: PluginSpec,
        host: HostContext,
    ) -> Result<(Self, Instance<W::Bindings>), PluginError> {
        let wrong_world = |e: wasmtime::Error| {
            let mut reason = format!("{e:#}");
            if W::KIND == PluginKind::App && reason.contains("wasi:http") {
                reason.push_str(" (apps have no network access: only backends may use wasi:http)");
            }
            PluginError::WrongWorld { plugin: spec.name.clone(), kind: W::KIND, reason }
        };
        let component = engine.compile(&spec.name, bytes, spec.compile_cache.as_deref())?;
        let pre = engine.linker(W::KIND).instantiate_pre(&component).map_err(wrong_world)?;
        let pre = W::pre(pre).map_err(wrong_world)?;
        let plugin = Plugin {
            name: Arc::from(spec.name.as_str()),
            settings: fields_to_wit(&spec.settings),
            engine: engine.clone(),
            pre,
            host,
            pool: Pool::new(spec.limits.max_instances),
            breaker: Breaker::default(),
            in_use: Arc::new(tokio::sync::Semaphore::new(spec.limits.max_instances.max(1))),
            spec,
        };
        let instance = plugin.instantiate().await.map_err(|f| f.into_plugin_error(&plugin.spec.name))?;
        Ok((plugin, instance))
    }

    /// A fresh, configured instance.
    async fn instantiate(&self) -> Result<Instance<W::Bindings>, StartFailure> {
        let limits = self.spec.limits;
        let mut store = new_store(&self.engine, &self.name, &self.host, &self.spec).map_err(StartFailure::Failed)?;
        arm(&mut store, limits);
        let bindings =
            W::instantiate(&self.pre, &mut store).await.map_err(|e| StartFailure::Failed(describe(&e, limits)))?;
        arm(&mut store, limits);
        W::configure(&bindings, &mut store, &self.settings)
            .await
            .map_err(|e| StartFailure::Failed(describe(&e, limits)))?
            .map_err(StartFailure::Configure)?;
        Ok(Instance { store, bindings, permit: None })
    }

    /// An idle instance, or a fresh one, prepared for a call at routing
    /// depth `depth` (its deadline is armed).
    pub async fn checkout(&self, depth: u32) -> Result<Instance<W::Bindings>, StartFailure> {
        self.breaker.check().map_err(StartFailure::Paused)?;
        // Calls made from inside routing (depth > 0) are not counted: they
        // run while their caller holds an instance, and waiting for that
        // caller's own place would deadlock.
        let limits = self.spec.limits;
        let permit = if depth == 0 {
            // A free place is taken at once; only a wait needs a timer.
            let waited = match self.in_use.clone().try_acquire_owned() {
                Ok(permit) => Ok(Ok(permit)),
                Err(_) => tokio::time::timeout(limits.call_timeout, self.in_use.clone().acquire_owned()).await,
            };
            match waited {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    let why = format!(
                        "all {} of its instances stayed busy for {} ms",
                        limits.max_instances,
                        limits.call_timeout.as_millis()
                    );
                    // Counted, but not held against the plugin's health:
                    // it is the load, not the plugin, that is too much.
                    self.breaker.counted(&why);
                    return Err(StartFailure::Busy(why));
                }
            }
        } else {
            None
        };
        let mut instance = match self.pool.take() {
            Some(instance) => instance,
            None => match self.instantiate().await {
                Ok(instance) => instance,
                Err(failure) => {
                    self.breaker.failed(&self.name, &failure.describe());
                    return Err(failure);
                }
            },
        };
        instance.permit = permit;
        instance.store.data_mut().depth = depth;
        arm(&mut instance.store, self.spec.limits);
        Ok(instance)
    }

    /// Keep an instance whose call succeeded. (One whose call failed is
    /// simply dropped: a failed store must not be re-entered.)
    pub fn give_back(&self, instance: Instance<W::Bindings>) {
        self.breaker.succeeded();
        self.pool.give_back(instance);
    }

    /// A one-line account of a failed call, counted by the plugin's breaker.
    pub fn failed(&self, err: &wasmtime::Error) -> String {
        let why = describe(err, self.spec.limits);
        self.breaker.failed(&self.name, &why);
        why
    }

    /// A one-line account of a failure while loading (not counted).
    pub fn describe(&self, err: &wasmtime::Error) -> String {
        describe(err, self.spec.limits)
    }

    /// The breaker's state.
    pub fn health(&self) -> Health {
        self.breaker.health()
    }
}
