//! A backend's send lane: its queued transmissions, one queue per
//! connection.
//!
//! A connection has at most one transmission in flight, and its head
//! leaves before anything queued after it, so responses to one phone keep
//! their order even across retries. A head waiting for a retry holds up
//! only its own connection. Up to `send_concurrency` sends run at once,
//! and up to [`RECORDING`] times as many more may have returned with their
//! outcome not yet on disk (so a crash repeats at most five times
//! `send_concurrency` sends);
//! heads of different connections that belong to the same message are sent
//! in one backend call, as RapidSMS groups identities per backend.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use super::outgoing_from_record;
use crate::router::{Backend, Router, RouterEvent, RouterInner};
use crate::store::journal::{Attempt, Queued};
use crate::store::now_ms;
use crate::sync::lock;

/// Sends whose outcome waits for the journal's next fsync, per send in
/// flight. Measured: with 1 (16 by default) the lanes sent 7,900-8,700
/// msg/s and a group commit carried 7 writes; with 4, 10,900-11,100 msg/s
/// and 12 writes, so a send's fsync wait no longer limits the lane.
const RECORDING: usize = 4;

/// Most heads taken from the ready list in one round.
const ROUND: usize = 64;

#[derive(Default)]
struct LaneState {
    /// Each connection's queued transmissions, by identity, in order.
    queues: HashMap<String, VecDeque<Queued>>,
    /// Identities whose head is due and not in flight.
    ready: VecDeque<String>,
    /// Identities with a send in flight.
    busy: HashSet<String>,
}

pub(super) struct Lane {
    backend: Arc<dyn Backend>,
    state: Mutex<LaneState>,
    wake: Notify,
    permits: Arc<Semaphore>,
    /// Sends returned whose outcome is on its way to disk.
    recording: Arc<Semaphore>,
    concurrency: u32,
    /// Set when the backend is unloaded: the worker starts no more sends.
    stopped: AtomicBool,
}

impl Lane {
    pub(super) fn new(backend: Arc<dyn Backend>, concurrency: usize) -> Arc<Self> {
        Arc::new(Lane {
            backend,
            state: Mutex::new(LaneState::default()),
            wake: Notify::new(),
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            recording: Arc::new(Semaphore::new(RECORDING * concurrency.max(1))),
            concurrency: concurrency.max(1) as u32,
            stopped: AtomicBool::new(false),
        })
    }

    /// Start no more sends (the backend was unloaded or replaced).
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Wait up to `within` for the sends in flight to finish and their
    /// outcomes to be recorded; false if some are still running.
    pub(super) async fn drained(&self, within: Duration) -> bool {
        let all = self.recording.acquire_many(RECORDING as u32 * self.concurrency);
        matches!(tokio::time::timeout(within, all).await, Ok(Ok(_)))
    }

    /// Add queued transmissions, each behind its connection's others. They
    /// become ready together, so those of one message go in one call.
    pub(super) fn push(self: &Arc<Self>, items: Vec<Queued>) {
        let mut state = lock(&self.state);
        for item in items {
            let identity = item.key.connection.identity.clone();
            let not_before = item.not_before;
            let queue = state.queues.entry(identity.clone()).or_default();
            queue.push_back(item);
            let first = queue.len() == 1;
            if first && !state.busy.contains(&identity) {
                self.schedule(&mut state, identity, not_before);
            }
        }
    }

    /// Make `identity` ready at `not_before` (ms since the epoch).
    fn schedule(self: &Arc<Self>, state: &mut LaneState, identity: String, not_before: u64) {
        let now = now_ms();
        if not_before <= now {
            state.ready.push_back(identity);
            self.wake.notify_one();
            return;
        }
        let lane = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(not_before - now)).await;
            if let Some(lane) = lane.upgrade() {
                lock(&lane.state).ready.push_back(identity);
                lane.wake.notify_one();
            }
        });
    }

    /// Take the due heads, at most [`ROUND`], marking their connections busy.
    fn take_ready(&self) -> Vec<Queued> {
        let mut state = lock(&self.state);
        let mut taken = Vec::new();
        while taken.len() < ROUND {
            let Some(identity) = state.ready.pop_front() else { break };
            if state.busy.contains(&identity) {
                continue;
            }
            let Some(head) = state.queues.get(&identity).and_then(|q| q.front()).cloned() else { continue };
            state.busy.insert(identity);
            taken.push(head);
        }
        taken
    }

    /// The lane's worker: send due heads until the router is gone.
    pub(super) async fn run(self: Arc<Self>, router: Weak<RouterInner>) {
        loop {
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let taken = self.take_ready();
            if taken.is_empty() {
                self.wake.notified().await;
                if router.strong_count() == 0 {
                    return;
                }
                continue;
            }
            // Heads of the same message go in one call.
            let mut groups: Vec<Vec<Queued>> = Vec::new();
            for item in taken {
                match groups.iter_mut().find(|g| g[0].key.message_id == item.key.message_id) {
                    Some(group) => group.push(item),
                    None => groups.push(vec![item]),
                }
            }
            for group in groups {
                let Ok(recording) = self.recording.clone().acquire_owned().await else { return };
                let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
                let (lane, router) = (self.clone(), router.clone());
                tokio::spawn(async move {
                    let Some(inner) = router.upgrade() else { return };
                    let router = Router { inner };
                    let outcomes = lane.send(&router, &group).await;
                    // The permit bounds calls to the backend; waiting for the
                    // outcome's fsync holds only a place among those being
                    // recorded. The connections stay busy until it is
                    // recorded, so their order holds.
                    drop(permit);
                    lane.record(&router, &group, &outcomes).await;
                    drop(recording);
                    lane.finish(group, outcomes);
                });
            }
        }
    }

    /// Send one group; the outcome of each of its transmissions.
    async fn send(&self, router: &Router, group: &[Queued]) -> Vec<Attempt> {
        let message_id = &group[0].key.message_id;
        let identities: Vec<String> = group.iter().map(|q| q.key.connection.identity.clone()).collect();
        let Some(journal) = router.journal() else { return Vec::new() };
        let policy = router.retry_policy();
        let record = match &group[0].message {
            Some(message) => Ok(Some(message.clone())),
            None => journal.message(message_id).map(|found| found.map(Arc::new)),
        };
        let result = match record {
            Ok(Some(record)) => {
                let connections = group.iter().map(|q| q.key.connection.clone()).collect();
                let msg = outgoing_from_record(&record, connections);
                let context = msg.extra_backend_context();
                let result = self.backend.send(&msg, &identities, &context, record.depth).await;
                let (failed, error) = match &result {
                    Ok(()) => (Vec::new(), None),
                    Err(err) if err.failed_identities.is_empty() => (identities.clone(), Some(err.message.clone())),
                    Err(err) => (err.failed_identities.clone(), Some(err.message.clone())),
                };
                router.emit(RouterEvent::Sent {
                    message_id: message_id.clone(),
                    backend: self.backend.name().to_owned(),
                    identities: identities.clone(),
                    text: record.text.clone(),
                    failed: failed.clone(),
                    error: error.clone(),
                });
                error.map(|e| (failed, e))
            }
            Ok(None) => Some((identities.clone(), "the message's record is missing from the journal".to_owned())),
            Err(err) => Some((identities.clone(), format!("cannot read the message: {err}"))),
        };
        let outcomes: Vec<Attempt> = group
            .iter()
            .map(|item| match &result {
                Some((failed, error)) if failed.contains(&item.key.connection.identity) => {
                    let attempts = item.attempts + 1;
                    if attempts >= policy.max_attempts {
                        tracing::error!(
                            %message_id,
                            connection = %item.key.connection,
                            attempts,
                            error,
                            "giving up: the transmission is now a dead letter"
                        );
                        Attempt::Dead { error: error.clone() }
                    } else {
                        let delay = policy.delay(attempts);
                        tracing::warn!(
                            %message_id,
                            connection = %item.key.connection,
                            attempts,
                            error,
                            retry_in_ms = delay.as_millis() as u64,
                            "send failed; will retry"
                        );
                        Attempt::Retry { error: error.clone(), at: now_ms() + delay.as_millis() as u64 }
                    }
                }
                _ => Attempt::Sent,
            })
            .collect();
        outcomes
    }

    /// Record how the send of `group` went.
    async fn record(&self, router: &Router, group: &[Queued], outcomes: &[Attempt]) {
        let Some(journal) = router.journal() else { return };
        let changes = group.iter().map(|q| q.key.clone()).zip(outcomes.iter().cloned()).collect();
        if let Err(err) = journal.record_attempts(changes).await {
            let message_id = &group[0].key.message_id;
            tracing::error!(%message_id, %err, "cannot record the send's outcome; it may be sent again after a restart");
        }
    }

    /// Move each connection of `group` past its head (or keep the head for
    /// its retry) and schedule what is next.
    fn finish(self: &Arc<Self>, group: Vec<Queued>, outcomes: Vec<Attempt>) {
        let mut state = lock(&self.state);
        for (item, outcome) in group.into_iter().zip(outcomes.into_iter().map(Some).chain(std::iter::repeat(None))) {
            let identity = item.key.connection.identity.clone();
            state.busy.remove(&identity);
            let Some(queue) = state.queues.get_mut(&identity) else { continue };
            match outcome {
                Some(Attempt::Retry { at, .. }) => {
                    if let Some(head) = queue.front_mut() {
                        head.attempts += 1;
                        head.not_before = at;
                    }
                }
                // No outcome: the router went away; leave it for the next start.
                None => return,
                Some(_) => {
                    queue.pop_front();
                }
            }
            match queue.front().map(|head| head.not_before) {
                Some(not_before) => self.schedule(&mut state, identity, not_before),
                None => {
                    state.queues.remove(&identity);
                }
            }
        }
    }
}
