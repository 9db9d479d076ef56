//! The durable router: RapidSMS's `DatabaseRouter`, with nothing lost.
//!
//! - **Inbound.** [`Router::submit`] (what a backend's `router.receive`
//!   calls) stores the message and its place in the inbox, and returns only
//!   once that is on disk; the backend then answers its gateway. A gateway's
//!   redelivery (same backend, same non-empty `external_id` field) is
//!   recognised and not routed again. A caller that waits for the routing
//!   outcome anyway ([`Router::receive`], the HTTP API) of a message without
//!   an `external_id` is not answered before that outcome is on disk, so its
//!   message is stored once, with the outcome: one write instead of two.
//! - **Routing.** Workers take the inbox in order, one worker per
//!   connection (messages from one phone are routed in the order they came),
//!   run the phases and the outgoing phase of each response, then store the
//!   routing outcome, the responses and their transmissions in one atomic
//!   write that also takes the message out of the inbox.
//! - **Sending.** Each backend has a [`lanes`] worker. A connection's
//!   transmissions leave one at a time, in the order they were queued; a
//!   failed one is retried with exponential backoff and jitter, and after
//!   the last try becomes a dead letter an operator can re-queue. Other
//!   connections and other backends go on meanwhile.
//! - **Recovery.** On start, [`Router::recover`] routes what is in the inbox
//!   and sends what is in the outbox.
//!
//! Writes are group-committed by the [`Journal`]: concurrent messages share
//! one fsync.

mod lanes;

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use self::lanes::Lane;
use super::{Router, RouterError, RouterInner, check_text};
use crate::messages::{Connection, IncomingMessage, MessageBase, OutgoingMessage};
use crate::store::journal::{
    Accepted, Direction, Journal, MessageRecord, Queued, Staged, Status, TransmissionKey, TransmissionRecord,
};
use crate::store::{StoreError, now_ms};
use crate::sync::lock;

/// How failed sends are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; then the transmission is a dead letter.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles for each one after.
    pub initial_delay: Duration,
    /// The longest wait between two tries.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 8, initial_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed tries: doubling from
    /// `initial_delay`, capped at `max_delay`, then scaled by a random factor
    /// between 0.5 and 1 so that retries of many messages spread out.
    pub fn delay(&self, attempts: u32) -> Duration {
        let doubled = self.initial_delay.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        doubled.min(self.max_delay).mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Settings of the durable router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableOptions {
    /// Routing workers; messages of one connection always go to the same one.
    pub workers: usize,
    /// Sends in flight at once per backend.
    pub send_concurrency: usize,
    /// How failed sends are retried.
    pub retry: RetryPolicy,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions { workers: 16, send_concurrency: 16, retry: RetryPolicy::default() }
    }
}

/// A message accepted by a call, or recognised as one accepted before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted<T> {
    /// Accepted now.
    New(T),
    /// The same message was accepted before, under this id.
    Duplicate(String),
}

/// A message waiting to be routed.
struct InboxItem {
    /// Its place in the stored inbox; `None` when it was not stored first
    /// (its caller waits for the outcome, stored once, after routing).
    seq: Option<u64>,
    /// When it was accepted (ms since the epoch).
    accepted_on: u64,
    msg: IncomingMessage,
    depth: u32,
}

/// The durable parts of a router.
pub(super) struct Durable {
    journal: Journal,
    workers: Vec<mpsc::UnboundedSender<InboxItem>>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Result<IncomingMessage, RouterError>>>>,
    options: DurableOptions,
}

impl Durable {
    /// Start the workers of the router behind `router`, whose backends are
    /// `backends`.
    pub(super) fn start(
        journal: Journal,
        options: DurableOptions,
        backends: &HashMap<String, Arc<dyn super::Backend>>,
        router: &Weak<RouterInner>,
    ) -> Self {
        let workers = (0..options.workers.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(route_inbox(router.clone(), receiver));
                sender
            })
            .collect();
        let lanes = backends
            .iter()
            .map(|(name, backend)| {
                let lane = Lane::new(backend.clone(), options.send_concurrency);
                tokio::spawn(lane.clone().run(router.clone()));
                (name.clone(), lane)
            })
            .collect();
        Durable { journal, workers, lanes: Mutex::new(lanes), waiters: Mutex::new(HashMap::new()), options }
    }

    /// Start a lane for `backend` (loaded while the router runs), and hand
    /// it what the outbox holds for a backend of its name.
    pub(super) fn add_lane(&self, backend: Arc<dyn super::Backend>, router: &Weak<RouterInner>) {
        let name = backend.name().to_owned();
        let lane = Lane::new(backend, self.options.send_concurrency);
        tokio::spawn(lane.clone().run(router.clone()));
        if let Some(old) = lock(&self.lanes).insert(name.clone(), lane.clone()) {
            old.stop();
        }
        match self.journal.outbox() {
            Ok(outbox) => {
                let waiting: Vec<Queued> = outbox.into_iter().filter(|q| q.key.connection.backend == name).collect();
                if !waiting.is_empty() {
                    tracing::info!(
                        backend = name,
                        transmissions = waiting.len(),
                        "sending what waited for this backend"
                    );
                    lane.push(waiting);
                }
            }
            Err(err) => {
                tracing::error!(backend = name, %err, "cannot read the outbox; its transmissions wait for the next start")
            }
        }
    }

    /// Stop backend `name`'s lane, waiting up to `within` for its sends in
    /// flight; what it still queues stays in the outbox.
    pub(super) async fn remove_lane(&self, name: &str, within: Duration) {
        let Some(lane) = lock(&self.lanes).remove(name) else { return };
        lane.stop();
        if !lane.drained(within).await {
            tracing::warn!(backend = name, "sends still in flight after the backend was unloaded");
        }
    }

    fn enqueue_incoming(&self, item: InboxItem) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        item.msg.connections[0].hash(&mut hasher);
        let worker = &self.workers[(hasher.finish() % self.workers.len() as u64) as usize];
        if let Err(refused) = worker.send(item) {
            let item = refused.0;
            // Whoever waits for it is told the router is gone.
            lock(&self.waiters).remove(&item.msg.id);
            match item.seq {
                Some(_) => tracing::error!(
                    message_id = %item.msg.id,
                    "the routing workers have stopped; the message stays in the inbox for the next start"
                ),
                None => {
                    tracing::error!(message_id = %item.msg.id, "the routing workers have stopped; the message is refused")
                }
            }
        }
    }

    fn enqueue_outgoing(&self, queued: Vec<Queued>) {
        let mut by_backend: HashMap<String, Vec<Queued>> = HashMap::new();
        for item in queued {
            by_backend.entry(item.key.connection.backend.clone()).or_default().push(item);
        }
        let lanes = lock(&self.lanes);
        for (backend, items) in by_backend {
            match lanes.get(&backend) {
                Some(lane) => lane.push(items),
                None => tracing::warn!(
                    backend,
                    transmissions = items.len(),
                    "no such backend is configured; the transmissions stay queued until one is"
                ),
            }
        }
    }
}

/// Routing outcomes a worker has handed to the journal and not yet seen
/// made durable; past this many it waits before routing more.
const PIPELINE: usize = 64;

/// A message routed, its outcome on its way to disk.
struct Routed {
    msg: IncomingMessage,
    /// It was in the stored inbox before routing.
    inboxed: bool,
    sent: Vec<OutgoingMessage>,
    stored: Pin<Box<dyn Future<Output = Result<Vec<Queued>, StoreError>> + Send>>,
}

/// A worker: route the inbox items it is given, one after the other.
///
/// The worker does not wait for each outcome to reach the disk before
/// routing the next message: it hands the outcome to the journal (which
/// writes in the order it is handed writes) and goes on, while a companion
/// task waits for each outcome in the same order, then queues its
/// responses for sending and answers whoever waits for the message. So one
/// fsync carries the outcomes of many messages of one worker, and a
/// connection's messages still reach the send lanes in order.
async fn route_inbox(router: Weak<RouterInner>, mut items: mpsc::UnboundedReceiver<InboxItem>) {
    let (routed, mut durable) = mpsc::channel::<Routed>(PIPELINE);
    let finisher = router.clone();
    tokio::spawn(async move {
        while let Some(done) = durable.recv().await {
            let outcome = done.stored.await;
            let Some(inner) = finisher.upgrade() else { return };
            Router { inner }.finish_routed(done.msg, done.inboxed, done.sent, outcome);
        }
    });
    while let Some(item) = items.recv().await {
        let Some(inner) = router.upgrade() else { return };
        let Some(done) = (Router { inner }).route_accepted(item).await else { continue };
        if routed.send(done).await.is_err() {
            return;
        }
    }
}

fn incoming_record(msg: &IncomingMessage, depth: u32, accepted_on: u64) -> MessageRecord {
    MessageRecord {
        id: msg.id.clone(),
        direction: Direction::Incoming,
        text: msg.raw_text.clone(),
        connections: msg.connections.clone(),
        fields: msg.fields.clone(),
        in_response_to: None,
        external_id: None,
        class: Default::default(),
        created_on: accepted_on,
        routed_on: None,
        handled: false,
        responses: Vec::new(),
        depth,
    }
}

fn outgoing_record(msg: &OutgoingMessage, depth: u32) -> MessageRecord {
    MessageRecord {
        id: msg.id.clone(),
        direction: Direction::Outgoing,
        text: msg.text.clone(),
        connections: msg.connections.clone(),
        fields: msg.fields.clone(),
        in_response_to: msg.in_response_to.clone(),
        external_id: msg.external_id.clone(),
        class: msg.class,
        created_on: now_ms(),
        routed_on: None,
        handled: false,
        responses: Vec::new(),
        depth,
    }
}

/// The outgoing message `record` describes, to `connections`.
pub(super) fn outgoing_from_record(record: &MessageRecord, connections: Vec<Connection>) -> OutgoingMessage {
    OutgoingMessage {
        base: MessageBase {
            id: record.id.clone(),
            text: record.text.clone(),
            raw_text: record.text.clone(),
            connections,
            fields: record.fields.clone(),
            in_response_to: record.in_response_to.clone(),
            handled: false,
            processed: true,
        },
        class: record.class,
        sent_at: std::time::UNIX_EPOCH + Duration::from_millis(record.created_on),
        external_id: record.external_id.clone(),
    }
}

impl Router {
    pub(super) fn durable(&self) -> Option<&Durable> {
        self.inner.durable.get()
    }

    /// The journal of a durable router.
    pub fn journal(&self) -> Option<&Journal> {
        self.durable().map(|d| &d.journal)
    }

    /// What a backend's `router.receive` does: under the durable router,
    /// store the message and return its id once it is on disk (routing
    /// follows); a gateway's redelivery returns the first message's id.
    /// Under the blocking router, route it at once.
    pub async fn submit(
        &self,
        text: String,
        connection: Connection,
        fields: crate::messages::Fields,
        depth: u32,
    ) -> Result<String, RouterError> {
        if self.durable().is_none() {
            return Ok(self.receive_now(text, connection, fields, depth).await?.base.id);
        }
        match self.accept(text, connection, fields, depth, false).await? {
            Submitted::New((id, _)) | Submitted::Duplicate(id) => Ok(id),
        }
    }

    /// Receive a message and wait until it has been routed; a redelivery of
    /// a message accepted before answers [`Submitted::Duplicate`].
    pub async fn receive_submitted(
        &self,
        text: String,
        connection: Connection,
        fields: crate::messages::Fields,
    ) -> Result<Submitted<IncomingMessage>, RouterError> {
        if self.durable().is_none() {
            return Ok(Submitted::New(self.receive_now(text, connection, fields, 0).await?));
        }
        match self.accept(text, connection, fields, 0, true).await? {
            Submitted::Duplicate(id) => Ok(Submitted::Duplicate(id)),
            Submitted::New((_, Some(routed))) => routed.await.map_err(|_| RouterError::Gone)?.map(Submitted::New),
            Submitted::New((_, None)) => Err(RouterError::Gone),
        }
    }

    /// Store an incoming message and hand it to its routing worker.
    #[allow(clippy::type_complexity)]
    async fn accept(
        &self,
        text: String,
        connection: Connection,
        fields: crate::messages::Fields,
        depth: u32,
        wait: bool,
    ) -> Result<Submitted<(String, Option<oneshot::Receiver<Result<IncomingMessage, RouterError>>>)>, RouterError> {
        self.check_depth(depth)?;
        check_text(&text, self.inner.options.max_text_bytes)?;
        let durable = self.durable().ok_or(RouterError::Gone)?;
        self.lookup_connections(&connection.backend, std::slice::from_ref(&connection.identity))?;
        let mut msg = IncomingMessage::new(text, connection);
        msg.fields = fields;
        let accepted_on = now_ms();
        let redelivery_key = msg.fields.get("external_id").is_some_and(|e| !e.is_empty());
        let seq = if wait && !redelivery_key {
            None
        } else {
            match durable.journal.accept_incoming(incoming_record(&msg, depth, accepted_on)).await? {
                Accepted::New { seq } => Some(seq),
                Accepted::Duplicate { message_id } => {
                    tracing::info!(%message_id, connection = %msg.connections[0], "redelivered by the gateway; routed once already");
                    return Ok(Submitted::Duplicate(message_id));
                }
            }
        };
        let routed = wait.then(|| {
            let (sender, receiver) = oneshot::channel();
            lock(&durable.waiters).insert(msg.id.clone(), sender);
            receiver
        });
        let id = msg.id.clone();
        durable.enqueue_incoming(InboxItem { seq, accepted_on, msg, depth });
        Ok(Submitted::New((id, routed)))
    }

    /// Route an accepted message, store the outcome and queue its responses.
    async fn route_accepted(&self, item: InboxItem) -> Option<Routed> {
        let durable = self.durable()?;
        let InboxItem { seq, accepted_on, mut msg, depth } = item;
        self.route_phases(&mut msg, depth).await;
        let mut staged = Vec::new();
        let mut sent = Vec::with_capacity(msg.responses.len());
        for response in &msg.responses {
            let mut out = response.to_outgoing();
            if self.outgoing_phase(&mut out, depth).await {
                staged.push(self.stage(&out, depth));
            }
            sent.push(out);
        }
        let mut routed = incoming_record(&msg, depth, accepted_on);
        routed.routed_on = Some(now_ms());
        routed.handled = msg.handled;
        routed.responses = staged.iter().map(|s| s.record.id.clone()).collect();
        let stored = Box::pin(durable.journal.finish_incoming(seq, routed, staged));
        Some(Routed { msg, inboxed: seq.is_some(), sent, stored })
    }

    /// The routing outcome of `msg` is durable (or could not be stored):
    /// send its responses, and answer whoever waits for it. A message that
    /// was not `inboxed` first and could not be stored is answered with the
    /// error: nothing of it is kept.
    fn finish_routed(
        &self,
        mut msg: IncomingMessage,
        inboxed: bool,
        sent: Vec<OutgoingMessage>,
        stored: Result<Vec<Queued>, StoreError>,
    ) {
        let Some(durable) = self.durable() else { return };
        let waiter = lock(&durable.waiters).remove(&msg.id);
        msg.sent = sent;
        let answer = match stored {
            Ok(queued) => {
                durable.enqueue_outgoing(queued);
                Ok(msg)
            }
            Err(err) if inboxed => {
                tracing::error!(
                    message_id = %msg.id,
                    %err,
                    "cannot store the routing outcome; the message stays in the inbox and is routed again at the next start"
                );
                Ok(msg)
            }
            Err(err) => {
                tracing::error!(message_id = %msg.id, %err, "cannot store the routing outcome; the caller is told");
                Err(RouterError::Store(err))
            }
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(answer);
        }
    }

    /// The transmissions of `msg`: one per distinct connection; those on a
    /// backend that is not configured fail at once.
    fn stage(&self, msg: &OutgoingMessage, depth: u32) -> Staged {
        let roster = self.roster();
        let mut seen = std::collections::HashSet::new();
        let transmissions = msg
            .connections
            .iter()
            .filter(|c| seen.insert(*c))
            .map(|c| {
                let refusal = (!roster.backends.contains_key(&c.backend))
                    .then(|| format!("no backend named `{}` is configured", c.backend));
                (c.clone(), refusal)
            })
            .collect();
        Staged { record: outgoing_record(msg, depth), transmissions }
    }

    /// Queue `msg` (its outgoing phase passed) under the durable router.
    /// With a `client_key` used before, nothing is queued.
    pub(super) async fn queue_durably(
        &self,
        msg: &OutgoingMessage,
        depth: u32,
        client_key: Option<String>,
    ) -> Result<Submitted<()>, RouterError> {
        let durable = self.durable().ok_or(RouterError::Gone)?;
        match durable.journal.queue_outgoing(self.stage(msg, depth), client_key).await? {
            Ok(queued) => {
                durable.enqueue_outgoing(queued);
                Ok(Submitted::New(()))
            }
            Err(earlier) => Ok(Submitted::Duplicate(earlier)),
        }
    }

    /// Route what was accepted but not routed, and send what was queued but
    /// not sent, before the last stop. Returns how many of each.
    pub async fn recover(&self) -> Result<(usize, usize), RouterError> {
        let Some(durable) = self.durable() else { return Ok((0, 0)) };
        let inbox = durable.journal.inbox()?;
        let outbox = durable.journal.outbox()?;
        let counts = (inbox.len(), outbox.len());
        for (seq, record) in inbox {
            let Some(connection) = record.connections.first().cloned() else { continue };
            let mut msg = IncomingMessage::new(record.text.clone(), connection);
            msg.base.id = record.id;
            msg.fields = record.fields;
            durable.enqueue_incoming(InboxItem {
                seq: Some(seq),
                accepted_on: record.created_on,
                msg,
                depth: record.depth,
            });
        }
        durable.enqueue_outgoing(outbox);
        if counts != (0, 0) {
            tracing::info!(inbox = counts.0, outbox = counts.1, "resuming messages left from the last run");
        }
        Ok(counts)
    }

    /// A gateway's delivery report on message `message_id` to `identity`
    /// on `backend`. Returns false (and logs) when no such transmission is
    /// known, or when the router is not durable.
    pub async fn report_delivery(
        &self,
        backend: &str,
        message_id: &str,
        identity: &str,
        status: Status,
        detail: String,
    ) -> Result<bool, RouterError> {
        let Some(durable) = self.durable() else {
            tracing::debug!(backend, message_id, "delivery report ignored: the blocking router keeps no statuses");
            return Ok(false);
        };
        let key = TransmissionKey { message_id: message_id.to_owned(), connection: Connection::new(backend, identity) };
        match durable.journal.report(key, status, detail).await? {
            Some(record) => {
                tracing::debug!(backend, message_id, identity, status = record.status.name(), "delivery report");
                Ok(true)
            }
            None => {
                tracing::warn!(backend, message_id, identity, "delivery report for an unknown transmission; ignored");
                Ok(false)
            }
        }
    }

    /// Up to `limit` dead letters (transmissions whose retries ran out).
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<TransmissionRecord>, RouterError> {
        let durable = self.durable().ok_or(RouterError::NotDurable)?;
        Ok(durable.journal.dead_letters(limit)?)
    }

    /// Put a dead letter back in the outbox.
    pub async fn requeue(&self, key: TransmissionKey) -> Result<(), RouterError> {
        let durable = self.durable().ok_or(RouterError::NotDurable)?;
        let queued = durable.journal.requeue(key).await?;
        durable.enqueue_outgoing(vec![queued]);
        Ok(())
    }

    /// The stored message `id` and its transmissions.
    pub fn message_record(&self, id: &str) -> Result<Option<(MessageRecord, Vec<TransmissionRecord>)>, RouterError> {
        let durable = self.durable().ok_or(RouterError::NotDurable)?;
        let Some(record) = durable.journal.message(id)? else { return Ok(None) };
        let transmissions = durable.journal.transmissions(id)?;
        Ok(Some((record, transmissions)))
    }

    /// Wait until the inbox and the outbox are empty, or `timeout` passes;
    /// returns how many messages and transmissions are left. If the journal
    /// cannot be read, the wait goes on until the timeout, which logs why
    /// and returns `usize::MAX` for both.
    pub async fn drain(&self, timeout: Duration) -> (usize, usize) {
        let Some(durable) = self.durable() else { return (0, 0) };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let out_of_time = tokio::time::Instant::now() >= deadline;
            match durable.journal.backlog() {
                Ok(left) if left == (0, 0) || out_of_time => return left,
                Err(err) if out_of_time => {
                    tracing::error!(%err, "cannot read the journal's backlog");
                    return (usize::MAX, usize::MAX);
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(super) fn retry_policy(&self) -> RetryPolicy {
        self.durable().map(|d| d.options.retry).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for _ in 0..100 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
            let third = policy.delay(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
            let late = policy.delay(30);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000), "{late:?}");
        }
    }
}
