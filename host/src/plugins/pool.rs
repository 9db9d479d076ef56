//! Instances of one plugin: creation with limits, deadlines, and a small
//! pool of idle instances. An instance that failed is never put back.

use std::sync::{Arc, Mutex};

use wasmtime::{Store, Trap};

use super::engine::{EPOCH_TICK, PluginEngine};
use super::limits::MemoryLimitExceeded;
use super::outbound::AllowedHosts;
use super::state::PluginState;
use super::{HostContext, Limits};

/// Idle instances kept per plugin; more may run at once, the rest are dropped.
const MAX_IDLE: usize = 8;

/// A live instance: its store and its exports, and while it is in use,
/// its place among the plugin's `max_instances`.
pub(super) struct Instance<B> {
    pub store: Store<PluginState>,
    pub bindings: B,
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Idle instances of one plugin.
pub(super) struct Pool<B> {
    idle: Mutex<Vec<Instance<B>>>,
}

impl<B> Pool<B> {
    pub fn new() -> Self {
        Pool { idle: Mutex::new(Vec::new()) }
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Instance<B>> {
        self.idle.lock().ok()?.pop()
    }

    /// Keep a healthy instance for the next call.
    pub fn give_back(&self, mut instance: Instance<B>) {
        instance.permit = None;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(instance);
        }
    }
}

/// A fresh store for plugin `name`, with its memory limiter installed.
pub(super) fn new_store(
    engine: &PluginEngine,
    name: &Arc<str>,
    host: &HostContext,
    limits: Limits,
    allowed: &AllowedHosts,
) -> Store<PluginState> {
    let state = PluginState::new(name.clone(), host.clone(), limits.memory_bytes, allowed.clone());
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|state| &mut state.limiter);
    store
}

/// Set the deadline of the next call into `store`.
pub(super) fn arm(store: &mut Store<PluginState>, limits: Limits) {
    let ticks = limits.call_timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64;
    // One tick more: the current tick may be about to end.
    store.set_epoch_deadline(ticks.max(1) + 1);
}

/// A one-line account of why a call failed: the cause, without the wasm
/// backtrace.
pub(super) fn describe(err: &wasmtime::Error, limits: Limits) -> String {
    if let Some(exceeded) = err.downcast_ref::<MemoryLimitExceeded>() {
        return exceeded.to_string();
    }
    let text = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return format!("timed out after {} ms", limits.call_timeout.as_millis()),
        Some(trap) => trap.to_string(),
        None => {
            let causes: Vec<String> = err
                .chain()
                .map(|cause| cause.to_string())
                .filter(|cause| !cause.starts_with("error while executing at wasm backtrace"))
                .collect();
            causes.join(": ").replace('\n', " ")
        }
    };
    match text.char_indices().nth(1000) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
