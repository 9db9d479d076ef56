//! Apps as components: [`WasmApp`] implements the router's [`App`].

use super::bindings::app::exports::rapidwasm::messaging::app::PhaseSet as WitPhases;
use super::convert::to_wit_message;
use super::instance::{AppWorld, Plugin};
use super::pool::arm;
use super::state::Frame;
use super::{HostContext, PluginEngine, PluginError, PluginSpec};
use crate::messages::{IncomingMessage, OutgoingMessage};
use crate::router::{App, BoxFuture, Phase, PhaseOutcome, PhaseSet, PluginFailure};

/// An app loaded from a WebAssembly component.
pub struct WasmApp {
    plugin: Plugin<AppWorld>,
    phases: PhaseSet,
}

impl WasmApp {
    /// Compile `bytes` (or reuse an identical compiled component), check it
    /// fits the `app-plugin` world, configure a first instance and ask it
    /// which phases it implements.
    pub async fn load(
        engine: &PluginEngine,
        bytes: &[u8],
        spec: PluginSpec,
        host: HostContext,
    ) -> Result<Self, PluginError> {
        let (plugin, mut instance) = Plugin::<AppWorld>::load(engine, bytes, spec, host).await?;
        arm(&mut instance.store, plugin.spec.limits);
        let flags = instance
            .bindings
            .rapidwasm_messaging_app()
            .call_phases(&mut instance.store)
            .await
            .map_err(|e| PluginError::Start { plugin: plugin.spec.name.clone(), reason: plugin.describe(&e) })?;
        plugin.give_back(instance);
        Ok(WasmApp { plugin, phases: phase_set(flags) })
    }

    async fn run_incoming(
        &self,
        phase: Phase,
        msg: &IncomingMessage,
        depth: u32,
    ) -> Result<PhaseOutcome, PluginFailure> {
        let mut instance = self.plugin.checkout(depth).await.map_err(|f| PluginFailure(f.describe()))?;
        instance.store.data_mut().frame = Some(Frame { reply_to: msg.reply_target(), ..Frame::default() });
        let message = to_wit_message(&msg.base);
        let guest = instance.bindings.rapidwasm_messaging_app();
        let store = &mut instance.store;
        let result = match phase {
            Phase::Filter => guest.call_filter(store, &message).await,
            Phase::Parse => guest.call_parse(store, &message).await.map(|()| false),
            Phase::Handle => guest.call_handle(store, &message).await,
            Phase::Default => guest.call_default(store, &message).await,
            Phase::Cleanup => guest.call_cleanup(store, &message).await.map(|()| false),
            Phase::Outgoing => return Err(PluginFailure("outgoing is not an incoming phase".into())),
        };
        let frame = instance.store.data_mut().frame.take().unwrap_or_default();
        match result {
            Ok(returned) => {
                self.plugin.give_back(instance);
                Ok(PhaseOutcome { returned, responses: frame.responses, fields: frame.fields })
            }
            Err(err) => Err(PluginFailure(self.plugin.failed(&err))),
        }
    }

    async fn run_outgoing(&self, msg: &OutgoingMessage, depth: u32) -> Result<bool, PluginFailure> {
        let mut instance = self.plugin.checkout(depth).await.map_err(|f| PluginFailure(f.describe()))?;
        let message = to_wit_message(&msg.base);
        let result = instance.bindings.rapidwasm_messaging_app().call_outgoing(&mut instance.store, &message).await;
        match result {
            Ok(keep) => {
                self.plugin.give_back(instance);
                Ok(keep)
            }
            Err(err) => Err(PluginFailure(self.plugin.failed(&err))),
        }
    }
}

fn phase_set(flags: WitPhases) -> PhaseSet {
    let pairs = [
        (WitPhases::FILTER, Phase::Filter),
        (WitPhases::PARSE, Phase::Parse),
        (WitPhases::HANDLE, Phase::Handle),
        (WitPhases::DEFAULT, Phase::Default),
        (WitPhases::CLEANUP, Phase::Cleanup),
        (WitPhases::OUTGOING, Phase::Outgoing),
    ];
    let phases: Vec<Phase> = pairs.into_iter().filter(|(flag, _)| (flags & *flag) == *flag).map(|(_, p)| p).collect();
    PhaseSet::of(&phases)
}

impl WasmApp {
    /// Its breaker's state.
    pub fn health(&self) -> super::Health {
        self.plugin.health()
    }
}

impl App for WasmApp {
    fn name(&self) -> &str {
        &self.plugin.name
    }

    fn phases(&self) -> PhaseSet {
        self.phases
    }

    fn incoming<'a>(
        &'a self,
        phase: Phase,
        msg: &'a IncomingMessage,
        depth: u32,
    ) -> BoxFuture<'a, Result<PhaseOutcome, PluginFailure>> {
        Box::pin(self.run_incoming(phase, msg, depth))
    }

    fn outgoing<'a>(&'a self, msg: &'a OutgoingMessage, depth: u32) -> BoxFuture<'a, Result<bool, PluginFailure>> {
        Box::pin(self.run_outgoing(msg, depth))
    }
}
