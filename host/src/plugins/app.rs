//! Apps as components: [`WasmApp`] implements the router's [`App`].

use std::sync::Arc;

use super::bindings::app::{AppPlugin, AppPluginPre, exports::rapidwasm::messaging::app::PhaseSet as WitPhases};
use super::convert::{fields_to_wit, to_wit_message};
use super::pool::{Instance, Pool, arm, describe, new_store};
use super::state::Frame;
use super::{HostContext, PluginEngine, PluginError, PluginKind, PluginSpec};
use crate::messages::{IncomingMessage, OutgoingMessage};
use crate::router::{App, BoxFuture, Phase, PhaseOutcome, PhaseSet, PluginFailure};

/// An app loaded from a WebAssembly component.
pub struct WasmApp {
    name: Arc<str>,
    spec: PluginSpec,
    engine: PluginEngine,
    pre: AppPluginPre<super::state::PluginState>,
    host: HostContext,
    phases: PhaseSet,
    pool: Pool<AppPlugin>,
}

/// Why a fresh instance could not be made.
enum StartFailure {
    Configure(String),
    Failed(String),
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
        let wrong_world = |e: wasmtime::Error| PluginError::WrongWorld {
            plugin: spec.name.clone(),
            kind: PluginKind::App,
            reason: format!("{e:#}"),
        };
        let component = engine.compile(&spec.name, bytes)?;
        let pre = engine.linker().instantiate_pre(&component).map_err(wrong_world)?;
        let pre = AppPluginPre::new(pre).map_err(wrong_world)?;
        let mut app = WasmApp {
            name: Arc::from(spec.name.as_str()),
            engine: engine.clone(),
            pre,
            host,
            phases: PhaseSet::default(),
            pool: Pool::new(),
            spec,
        };
        let mut instance = app.instantiate().await.map_err(|failure| match failure {
            StartFailure::Configure(reason) => PluginError::Configure { plugin: app.spec.name.clone(), reason },
            StartFailure::Failed(reason) => PluginError::Start { plugin: app.spec.name.clone(), reason },
        })?;
        arm(&mut instance.store, app.spec.limits);
        let flags =
            instance.bindings.rapidwasm_messaging_app().call_phases(&mut instance.store).await.map_err(|e| {
                PluginError::Start { plugin: app.spec.name.clone(), reason: describe(&e, app.spec.limits) }
            })?;
        app.phases = phase_set(flags);
        app.pool.give_back(instance);
        Ok(app)
    }

    async fn instantiate(&self) -> Result<Instance<AppPlugin>, StartFailure> {
        let limits = self.spec.limits;
        let mut store = new_store(&self.engine, &self.name, &self.host, limits);
        arm(&mut store, limits);
        let bindings =
            self.pre.instantiate_async(&mut store).await.map_err(|e| StartFailure::Failed(describe(&e, limits)))?;
        arm(&mut store, limits);
        bindings
            .rapidwasm_messaging_app()
            .call_configure(&mut store, &fields_to_wit(&self.spec.settings))
            .await
            .map_err(|e| StartFailure::Failed(describe(&e, limits)))?
            .map_err(StartFailure::Configure)?;
        Ok(Instance { store, bindings })
    }

    async fn checkout(&self) -> Result<Instance<AppPlugin>, PluginFailure> {
        if let Some(instance) = self.pool.take() {
            return Ok(instance);
        }
        self.instantiate().await.map_err(|failure| match failure {
            StartFailure::Configure(reason) => {
                PluginFailure(format!("a fresh instance refused its settings: {reason}"))
            }
            StartFailure::Failed(reason) => PluginFailure(format!("a fresh instance failed to start: {reason}")),
        })
    }

    async fn run_incoming(
        &self,
        phase: Phase,
        msg: &IncomingMessage,
        depth: u32,
    ) -> Result<PhaseOutcome, PluginFailure> {
        let mut instance = self.checkout().await?;
        let state = instance.store.data_mut();
        state.depth = depth;
        state.frame = Some(Frame { reply_to: msg.reply_target(), ..Frame::default() });
        arm(&mut instance.store, self.spec.limits);
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
                self.pool.give_back(instance);
                Ok(PhaseOutcome { returned, responses: frame.responses, fields: frame.fields })
            }
            // The instance is dropped: a failed store must not be re-entered.
            Err(err) => Err(PluginFailure(describe(&err, self.spec.limits))),
        }
    }

    async fn run_outgoing(&self, msg: &OutgoingMessage, depth: u32) -> Result<bool, PluginFailure> {
        let mut instance = self.checkout().await?;
        instance.store.data_mut().depth = depth;
        arm(&mut instance.store, self.spec.limits);
        let message = to_wit_message(&msg.base);
        let result = instance.bindings.rapidwasm_messaging_app().call_outgoing(&mut instance.store, &message).await;
        match result {
            Ok(keep) => {
                self.pool.give_back(instance);
                Ok(keep)
            }
            Err(err) => Err(PluginFailure(describe(&err, self.spec.limits))),
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

impl App for WasmApp {
    fn name(&self) -> &str {
        &self.name
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
