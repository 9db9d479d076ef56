//! Backends as components: [`WasmBackend`] implements the router's
//! [`Backend`].

use super::bindings::backend::exports::rapidwasm::messaging::backend as wit;
use super::convert::{fields_to_wit, to_wit_message};
use super::instance::{BackendWorld, Plugin};
use super::{HostContext, PluginEngine, PluginError, PluginSpec};
use crate::messages::{Fields, OutgoingMessage};
use crate::router::{Backend, BoxFuture, InboundRequest, InboundResponse, PluginFailure, SendError};

/// A backend loaded from a WebAssembly component.
pub struct WasmBackend {
    plugin: Plugin<BackendWorld>,
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
        let (plugin, instance) = Plugin::<BackendWorld>::load(engine, bytes, spec, host).await?;
        plugin.give_back(instance);
        Ok(WasmBackend { plugin })
    }

    /// Its breaker's state.
    pub fn health(&self) -> super::Health {
        self.plugin.health()
    }

    async fn run_send(
        &self,
        msg: &OutgoingMessage,
        identities: &[String],
        context: &Fields,
        depth: u32,
    ) -> Result<(), SendError> {
        let failed = |message: String| SendError { message, failed_identities: Vec::new() };
        let mut instance = self.plugin.checkout(depth).await.map_err(|f| failed(f.describe()))?;
        let result = instance
            .bindings
            .rapidwasm_messaging_backend()
            .call_send(&mut instance.store, &to_wit_message(&msg.base), identities, &fields_to_wit(context))
            .await;
        match result {
            Ok(sent) => {
                self.plugin.give_back(instance);
                sent.map_err(|e| SendError { message: e.message, failed_identities: e.failed_identities })
            }
            Err(err) => Err(failed(format!("backend failed: {}", self.plugin.failed(&err)))),
        }
    }
}

impl WasmBackend {
    async fn run_http(&self, request: InboundRequest) -> Result<InboundResponse, PluginFailure> {
        let mut instance = self.plugin.checkout(0).await.map_err(|f| PluginFailure(f.describe()))?;
        let request = wit::HttpRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        let result =
            instance.bindings.rapidwasm_messaging_backend().call_handle_http(&mut instance.store, &request).await;
        match result {
            Ok(response) => {
                self.plugin.give_back(instance);
                Ok(InboundResponse { status: response.status, headers: response.headers, body: response.body })
            }
            Err(err) => Err(PluginFailure(self.plugin.failed(&err))),
        }
    }
}

impl Backend for WasmBackend {
    fn name(&self) -> &str {
        &self.plugin.name
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

    fn handle_http(&self, request: InboundRequest) -> BoxFuture<'_, Result<InboundResponse, PluginFailure>> {
        Box::pin(self.run_http(request))
    }
}
