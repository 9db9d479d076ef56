//! Backends as components: [`WasmBackend`] implements the router's
//! [`Backend`].

use std::sync::Arc;

use super::bindings::backend::{BackendPlugin, BackendPluginPre};
use super::convert::{fields_to_wit, to_wit_message};
use super::pool::{Instance, Pool, arm, describe, new_store};
use super::{HostContext, PluginEngine, PluginError, PluginKind, PluginSpec};
use crate::messages::{Fields, OutgoingMessage};
use crate::router::{Backend, BoxFuture, SendError};

/// A backend loaded from a WebAssembly component.
pub struct WasmBackend {
    name: Arc<str>,
    spec: PluginSpec,
    engine: PluginEngine,
    pre: BackendPluginPre<super::state::PluginState>,
    host: HostContext,
    pool: Pool<BackendPlugin>,
}

impl WasmBackend {
    /// Compile `bytes` (or reuse an identical compiled component), check it
    /// fits the `backend-plugin` world and configure a first instance.
    pub async fn load(
        engine: &PluginEngine,
        bytes: &[u8],
        spec: PluginSpec,
        host: HostContext,
    ) -> Result<Self, PluginError> {
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            plugin: spec.name.clone(),
            kind: PluginKind::Backend,
            reason: format!("{e:#}"),
        };
        let component = engine.compile(&spec.name, bytes)?;
        let pre = engine.linker().instantiate_pre(&component).map_err(wrong_world)?;
        let pre = BackendPluginPre::new(pre).map_err(wrong_world)?;
        let backend = WasmBackend {
            name: Arc::from(spec.name.as_str()),
            engine: engine.clone(),
            pre,
            host,
            pool: Pool::new(),
            spec,
        };
        let instance = backend.instantiate().await.map_err(|(configure, reason)| {
            let plugin = backend.spec.name.clone();
            if configure { PluginError::Configure { plugin, reason } } else { PluginError::Start { plugin, reason } }
        })?;
        backend.pool.give_back(instance);
        Ok(backend)
    }

    /// A fresh, configured instance; on failure whether `configure` refused
    /// and why.
    async fn instantiate(&self) -> Result<Instance<BackendPlugin>, (bool, String)> {
        let limits = self.spec.limits;
        let mut store = new_store(&self.engine, &self.name, &self.host, limits);
        arm(&mut store, limits);
        let bindings = self.pre.instantiate_async(&mut store).await.map_err(|e| (false, describe(&e, limits)))?;
        arm(&mut store, limits);
        bindings
            .rapidwasm_messaging_backend()
            .call_configure(&mut store, &fields_to_wit(&self.spec.settings))
            .await
            .map_err(|e| (false, describe(&e, limits)))?
            .map_err(|reason| (true, reason))?;
        Ok(Instance { store, bindings })
    }

    async fn run_send(
        &self,
        msg: &OutgoingMessage,
        identities: &[String],
        context: &Fields,
        depth: u32,
    ) -> Result<(), SendError> {
        let failed = |message: String| SendError { message, failed_identities: Vec::new() };
        let mut instance = match self.pool.take() {
            Some(instance) => instance,
            None => self.instantiate().await.map_err(|(_, why)| failed(format!("backend failed to start: {why}")))?,
        };
        instance.store.data_mut().depth = depth;
        arm(&mut instance.store, self.spec.limits);
        let result = instance
            .bindings
            .rapidwasm_messaging_backend()
            .call_send(&mut instance.store, &to_wit_message(&msg.base), identities, &fields_to_wit(context))
            .await;
        match result {
            Ok(sent) => {
                self.pool.give_back(instance);
                sent.map_err(|e| SendError { message: e.message, failed_identities: e.failed_identities })
            }
            // The instance is dropped: a failed store must not be re-entered.
            Err(err) => Err(failed(format!("backend failed: {}", describe(&err, self.spec.limits)))),
        }
    }
}

impl Backend for WasmBackend {
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
        Box::pin(self.run_send(msg, identities, context, depth))
    }
}
