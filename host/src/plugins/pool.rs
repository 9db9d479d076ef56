//! Instances of one plugin: creation with limits, deadlines, and a small
//! pool of idle instances. An instance that failed is never put back.

use std::sync::{Arc, Mutex};

use wasmtime::{Store, Trap};

use super::engine::{EPOCH_TICK, PluginEngine};
use super::limits::MemoryLimitExceeded;
use super::state::PluginState;
use super::{HostContext, Limits, PluginSpec};

/// Most idle instances kept per plugin, whatever its `max_instances`.
const MAX_IDLE: usize = 32;

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
    /// How many it keeps: as many as may run at once (`max_instances`), up
    /// to [`MAX_IDLE`], so a burst that used them all does not throw
    /// instances away only to build them again (a fresh linear memory is
    /// mapped and zeroed each time).
    keep: usize,
}

impl<B> Pool<B> {
    pub fn new(max_instances: usize) -> Self {
        Pool { idle: Mutex::new(Vec::new()), keep: max_instances.clamp(1, MAX_IDLE) }
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Instance<B>> {
        self.idle.lock().ok()?.pop()
    }

    /// Keep a healthy instance for the next call.
    pub fn give_back(&self, mut instance: Instance<B>) {
        instance.permit = None;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.keep
        {
            idle.push(instance);
        }
    }
}

/// A fresh store for plugin `spec`, with its memory limiter installed and
/// the WASI its grants allow.
pub(super) fn new_store(
    engine: &PluginEngine,
    name: &Arc<str>,
    host: &HostContext,
    spec: &PluginSpec,
) -> Result<Store<PluginState>, String> {
    let limits = spec.limits;
    let state =
        PluginState::new(name.clone(), host.clone(), limits.memory_bytes, spec.allowed_hosts.clone(), &spec.grants)?;
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|state| &mut state.limiter);
    Ok(store)
}

/// Set the deadline (and, on a metered engine, the fuel) of the next call
/// into `store`.
pub(super) fn arm(store: &mut Store<PluginState>, limits: Limits) {
    let ticks = limits.call_timeout.as_millis().div_ceil(EPOCH_TICK.as_millis()) as u64;
    // One tick more: the current tick may be about to end.
    store.set_epoch_deadline(ticks.max(1) + 1);
    if let Some(fuel) = limits.fuel {
        // Only a metered engine counts fuel; elsewhere this fails harmlessly.
        let _ = store.set_fuel(fuel);
    }
}

/// A one-line account of why a call failed: the cause, without the wasm
/// backtrace.
pub(super) fn describe(err: &wasmtime::Error, limits: Limits) -> String {
    if let Some(exceeded) = err.downcast_ref::<MemoryLimitExceeded>() {
        return exceeded.to_string();
    }
    let text = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return format!("timed out after {} ms", limits.call_timeout.as_millis()),
        Some(Trap::OutOfFuel) => {
            return format!("ran out of fuel after {} units", limits.fuel.unwrap_or_default());
        }
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
