//! The data of each plugin instance's store, and the host functions plugins
//! import (`router`, `incoming`, `log`, `storage`).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::backend_imports::rapidwasm::messaging::delivery;
use super::bindings::imports::rapidwasm::messaging::{incoming, log, router, storage, types};
use super::convert::{fields_from_wit, from_wit_connection, to_wit_connection, to_wit_contact};
use super::limits::InstanceLimiter;
use super::outbound::{AllowedHosts, OutboundPolicy};
use super::{Grants, HostContext};
use crate::messages::{MessageClass, ReplyTarget, RespondOptions, ResponseContext};
use crate::router::RouterError;
use crate::store::StoreError;
use crate::store::journal::Status;

use types::HostError;

/// Largest value a plugin may store under one key.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most entries one `storage.scan` returns.
pub const MAX_SCAN: u32 = 1000;
/// Longest log line kept from a plugin; longer ones are cut.
pub const MAX_LOG_BYTES: usize = 4096;
/// Most responses one phase call may queue.
pub const MAX_RESPONSES_PER_CALL: usize = 100;

/// The incoming message a phase call is processing, and what the app asked
/// the host to do with it.
#[derive(Debug, Default)]
pub(super) struct Frame {
    /// Who responses go to by default.
    pub reply_to: ReplyTarget,
    /// Responses queued during the call.
    pub responses: Vec<ResponseContext>,
    /// Fields set during the call.
    pub fields: Vec<(String, String)>,
}

/// What each plugin store holds.
pub struct PluginState {
    plugin: Arc<str>,
    host: HostContext,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    table: ResourceTable,
    pub(super) limiter: InstanceLimiter,
    /// How deeply the current call is nested in routing.
    pub(super) depth: u32,
    /// The incoming message of the current phase call, if any.
    pub(super) frame: Option<Frame>,
}

impl PluginState {
    /// The state of a new instance of `plugin`, with the WASI its `grants`
    /// allow (deny-all without any).
    pub(super) fn new(
        plugin: Arc<str>,
        host: HostContext,
        memory_bytes: usize,
        allowed: AllowedHosts,
        grants: &Grants,
    ) -> Result<Self, String> {
        Ok(PluginState {
            outbound: OutboundPolicy { plugin: plugin.clone(), allowed },
            plugin,
            host,
            // Deny-all unless granted: no preopens, no environment, no
            // arguments, stdin closed, stdout/stderr discarded, no sockets.
            wasi: grants.wasi()?,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter: InstanceLimiter::new(memory_bytes),
            depth: 0,
            frame: None,
        })
    }

    fn queue(&mut self, text: String, options: incoming::RespondOptions, class: MessageClass) -> Result<(), HostError> {
        crate::router::check_text(&text, self.host.max_text_bytes).map_err(router_error)?;
        let frame = self.frame.as_mut().ok_or(HostError::NoCurrentMessage)?;
        if frame.responses.len() >= MAX_RESPONSES_PER_CALL {
            return Err(HostError::InvalidArgument(format!(
                "a phase call may queue at most {MAX_RESPONSES_PER_CALL} responses"
            )));
        }
        let connections = match options.connections {
            Some(list) => Some(list.into_iter().map(from_wit_connection).collect::<Result<Vec<_>, _>>()?),
            None => None,
        };
        let options = RespondOptions {
            connections,
            in_response_to: options.in_response_to,
            fields: fields_from_wit(options.fields),
        };
        frame.responses.push(frame.reply_to.response(text, options, class));
        Ok(())
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

fn router_error(err: RouterError) -> HostError {
    match err {
        RouterError::TooDeep(limit) => HostError::TooDeep(limit),
        RouterError::Store(err) => store_error(err),
        RouterError::Gone => HostError::Storage("the router has shut down".into()),
        err @ (RouterError::NotDurable | RouterError::Duplicate(_) | RouterError::TooLarge { .. }) => {
            HostError::InvalidArgument(err.to_string())
        }
    }
}

fn store_error(err: StoreError) -> HostError {
    match err {
        StoreError::Invalid { what, reason } => HostError::InvalidArgument(format!("{what} {reason}")),
        other => HostError::Storage(other.to_string()),
    }
}

impl types::Host for PluginState {}

impl PluginState {
    /// The router, for a call made from this plugin one level deeper.
    fn router(&self) -> Result<(crate::router::Router, u32), HostError> {
        Ok((self.host.router.router().map_err(router_error)?, self.depth + 1))
    }
}

impl router::Host for PluginState {
    async fn receive(
        &mut self,
        text: String,
        connection: types::Connection,
        fields: types::Fields,
    ) -> wasmtime::Result<Result<String, HostError>> {
        // Nothing borrowed from the store is held across the await.
        let route = self.router();
        let routed = async move {
            let connection = from_wit_connection(connection)?;
            let (router, depth) = route?;
            router.submit(text, connection, fields_from_wit(fields), depth).await.map_err(router_error)
        };
        Ok(routed.await)
    }

    async fn send(
        &mut self,
        text: String,
        connections: Vec<types::Connection>,
        fields: types::Fields,
    ) -> wasmtime::Result<Result<String, HostError>> {
        let route = self.router();
        let routed = async move {
            let connections = connections.into_iter().map(from_wit_connection).collect::<Result<Vec<_>, _>>()?;
            let (router, depth) = route?;
            let msg = router.send_at_depth(text, connections, fields_from_wit(fields), depth).await;
            Ok(msg.map_err(router_error)?.base.id)
        };
        Ok(routed.await)
    }

    fn lookup_connections(
        &mut self,
        backend: String,
        identities: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<types::Connection>, HostError>> {
        let found = self.host.store.lookup_connections(&backend, &identities).map_err(store_error);
        Ok(found.map(|records| records.into_iter().map(|r| to_wit_connection(&r.connection)).collect()))
    }

    fn contact_of(
        &mut self,
        connection: types::Connection,
    ) -> wasmtime::Result<Result<Option<types::Contact>, HostError>> {
        let found = || {
            let connection = from_wit_connection(connection)?;
            let (router, _) = self.router()?;
            let contact = router.contact_of(&connection).map_err(router_error)?;
            Ok(contact.as_ref().map(to_wit_contact))
        };
        Ok(found())
    }

    fn register_contact(
        &mut self,
        connection: types::Connection,
        name: String,
        language: String,
    ) -> wasmtime::Result<Result<types::Contact, HostError>> {
        let registered = || {
            let connection = from_wit_connection(connection)?;
            let (router, _) = self.router()?;
            let contact = router.register_contact(&connection, &name, &language).map_err(router_error)?;
            Ok(to_wit_contact(&contact))
        };
        Ok(registered())
    }
}

impl delivery::Host for PluginState {
    async fn report(
        &mut self,
        message_id: String,
        identity: String,
        status: delivery::DeliveryStatus,
        detail: String,
    ) -> wasmtime::Result<Result<bool, HostError>> {
        let status = match status {
            delivery::DeliveryStatus::Sent => Status::Sent,
            delivery::DeliveryStatus::Delivered => Status::Delivered,
            delivery::DeliveryStatus::Failed => Status::Failed,
        };
        // A backend reports on its own transmissions only.
        let backend = self.plugin.clone();
        let route = self.router();
        let reported = async move {
            let (router, _) = route?;
            let detail = cut(&detail, MAX_LOG_BYTES).to_owned();
            router.report_delivery(&backend, &message_id, &identity, status, detail).await.map_err(router_error)
        };
        Ok(reported.await)
    }
}

impl incoming::Host for PluginState {
    fn respond(&mut self, text: String, options: incoming::RespondOptions) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.queue(text, options, MessageClass::Outgoing))
    }

    fn error(&mut self, text: String, options: incoming::RespondOptions) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.queue(text, options, MessageClass::Error))
    }

    fn set_field(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), HostError>> {
        let Some(frame) = self.frame.as_mut() else {
            return Ok(Err(HostError::NoCurrentMessage));
        };
        frame.fields.push((key, value));
        Ok(Ok(()))
    }
}

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let message = cut(&message, MAX_LOG_BYTES);
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "rapidwasm::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "rapidwasm::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "rapidwasm::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "rapidwasm::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "rapidwasm::plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl storage::Host for PluginState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, HostError>> {
        Ok(self.host.store.plugin_get(&self.plugin, &key).map_err(store_error))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), HostError>> {
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(HostError::InvalidArgument(format!(
                "value of {} bytes is larger than the limit of {MAX_VALUE_BYTES}",
                value.len()
            ))));
        }
        Ok(self.host.store.plugin_set(&self.plugin, &key, &value).map_err(store_error))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.host.store.plugin_delete(&self.plugin, &key).map_err(store_error))
    }

    fn scan(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<(String, Vec<u8>)>, HostError>> {
        let limit = limit.min(MAX_SCAN) as usize;
        Ok(self.host.store.plugin_scan(&self.plugin, &prefix, start_after.as_deref(), limit).map_err(store_error))
    }
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut("hello", 3), "hel");
    }
}
