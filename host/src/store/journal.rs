//! The durable router's journal: messages, their transmissions, the inbox
//! (accepted, not yet routed) and the outbox (queued, not yet sent), kept in
//! one sled tree.
//!
//! Every write goes through one committer thread. It runs the writes it has
//! been handed in order, each producing one atomic batch for the journal's
//! write-ahead log (the private `store::wal`), and hands them as a group to
//! the sync thread, which makes the whole group durable with a single
//! `fdatasync` before answering any of its writes: a *group commit*. Durable
//! writes reach sled later, in batches (the private `store::memtable`). A
//! lone message pays one fsync; a hundred concurrent ones share one, and the
//! committer runs the next group while one syncs. Because the committer is
//! the only writer, a write's read-modify-write (a status that must not move
//! backwards, a deduplication key) needs no further locking.
//!
//! Keys (one tree per tenant: `journal` for the default tenant,
//! `tenant:NAME:journal` for the others):
//!
//! | key | value |
//! |---|---|
//! | `m/<message id>` | [`MessageRecord`], with an outgoing message's [`TransmissionRecord`]s |
//! | `t/<message id> NUL <backend> NUL <identity>` | written by earlier versions: a [`TransmissionRecord`] |
//! | `i/<seq>` | id of an accepted incoming message not yet routed |
//! | `o/<seq>` | a transmission still to send, by its key (`t/...`) |
//! | `d/<transmission key>` | a dead letter: retries exhausted |
//! | `x/<backend> NUL <external id>` | the message a gateway's id was accepted as |
//! | `k/<client key>` | the message a client's idempotency key was sent as |
//!
//! `<seq>` is a big-endian number from sled's id generator, so the inbox and
//! the outbox iterate in the order things were accepted.
//!
//! An outgoing message's transmissions live in its record, so queueing a
//! message and recording how its sends went rewrite one record, and the
//! checkpoint writes one key into sled per message (each sled insert costs
//! about as much as routing a message). Earlier versions kept each
//! transmission under a `t/` key of its own; those are still read, and the
//! first write to such a message moves them into its record.
//!
//! **Records.** A message with its transmissions is stored as the byte
//! [`BINARY_RECORD`] followed by the record in
//! [postcard](https://docs.rs/postcard): its fields in declaration order,
//! strings with their length, enums by variant number. It is a third the
//! size of the same record in JSON and several times quicker to write and
//! read, and every record is written to the log, held in the memtable and
//! written into sled. postcard does not name fields, so a change to the
//! records' fields or variants needs a new format byte (a test pins the
//! bytes of this one). Records written as JSON by earlier versions (they
//! start with `{`) are still read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use serde::{Deserialize, Serialize};

use super::sled_store::engine;
use super::wal::{Batch, Log, Txn, View, Wal, Written};
use super::{StoreError, now_ms};
use crate::messages::{Connection, Fields, MessageClass};
use crate::sync::recv_soon;

/// Whether a message came in or goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from a backend.
    Incoming,
    /// Sent through backends.
    Outgoing,
}

/// Where one transmission (a message to one connection) stands.
///
/// A status only moves forward: `queued` → `sent` → `delivered` or
/// `failed`. Reports that would move it backwards are ignored, so late,
/// duplicated or reordered delivery reports do no harm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be handed to the backend (first try or a retry).
    Queued,
    /// The backend accepted it.
    Sent,
    /// The gateway reported it delivered.
    Delivered,
    /// The gateway reported it failed, or every retry failed.
    Failed,
}

impl Status {
    fn rank(self) -> u8 {
        match self {
            Status::Queued => 0,
            Status::Sent => 1,
            Status::Delivered | Status::Failed => 2,
        }
    }

    /// The status's name, as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }
}

/// A stored message, incoming or outgoing (RapidSMS's `db.Message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The message's id.
    pub id: String,
    /// In or out.
    pub direction: Direction,
    /// The text.
    pub text: String,
    /// Where it came from or goes to.
    pub connections: Vec<Connection>,
    /// Its fields.
    pub fields: Fields,
    /// The message it answers.
    pub in_response_to: Option<String>,
    /// The answered message's `external_id`, for backends.
    pub external_id: Option<String>,
    /// Ordinary or error message.
    pub class: MessageClass,
    /// Milliseconds since the Unix epoch.
    pub created_on: u64,
    /// Incoming: when routing finished.
    pub routed_on: Option<u64>,
    /// Incoming: an app's `handle` took it.
    pub handled: bool,
    /// Incoming: the ids of the responses it produced, in order.
    pub responses: Vec<String>,
    /// How deeply routing was nested in plugins' calls when it was made
    /// (the loop guard carries across the queue).
    #[serde(default)]
    pub depth: u32,
}

/// One message to one connection, and how its delivery went (RapidSMS's
/// `db.Transmission`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransmissionRecord {
    /// The outgoing message.
    pub message_id: String,
    /// Where it goes.
    pub connection: Connection,
    /// Where it stands.
    pub status: Status,
    /// Sends tried so far.
    pub attempts: u32,
    /// When the next try is due (ms since the epoch), while queued.
    pub next_attempt_on: Option<u64>,
    /// The last error the backend or the gateway reported.
    pub error: Option<String>,
    /// Retries ran out: an operator may re-queue it.
    pub dead_letter: bool,
    /// Its place in the outbox while queued.
    pub seq: Option<u64>,
    /// When it was queued (ms since the epoch).
    pub queued_on: u64,
    /// When the backend accepted it.
    pub sent_on: Option<u64>,
    /// When the gateway reported it delivered.
    pub delivered_on: Option<u64>,
    /// When it failed for good.
    pub failed_on: Option<u64>,
}

impl TransmissionRecord {
    /// Its key.
    pub fn key(&self) -> TransmissionKey {
        TransmissionKey { message_id: self.message_id.clone(), connection: self.connection.clone() }
    }
}

/// Names one transmission: a message id and a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransmissionKey {
    /// The outgoing message.
    pub message_id: String,
    /// Where it goes.
    pub connection: Connection,
}

impl TransmissionKey {
    fn bytes(&self) -> Vec<u8> {
        let mut key = message_transmissions_prefix(&self.message_id);
        key.extend_from_slice(self.connection.backend.as_bytes());
        key.push(0);
        key.extend_from_slice(self.connection.identity.as_bytes());
        key
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(b"t/")?;
        let mut parts = rest.splitn(3, |b| *b == 0);
        let message_id = std::str::from_utf8(parts.next()?).ok()?;
        let backend = std::str::from_utf8(parts.next()?).ok()?;
        let identity = std::str::from_utf8(parts.next()?).ok()?;
        Some(TransmissionKey { message_id: message_id.to_owned(), connection: Connection::new(backend, identity) })
    }
}

/// An outgoing message about to be queued, with the connections it goes to.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The message.
    pub record: MessageRecord,
    /// Its connections; one that cannot be sent at all carries the reason
    /// and is stored as a dead letter at once.
    pub transmissions: Vec<(Connection, Option<String>)>,
}

/// A transmission waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Which one.
    pub key: TransmissionKey,
    /// Its place in the outbox.
    pub seq: u64,
    /// Sends tried so far.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub not_before: u64,
    /// The message, when the write that queued it had it at hand, so that
    /// its lane need not read it back; `None` (read it from the journal)
    /// for what is found in the outbox or re-queued.
    pub message: Option<Arc<MessageRecord>>,
}

/// What accepting an incoming message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// It is stored and waits in the inbox at `seq`.
    New {
        /// Its place in the inbox.
        seq: u64,
    },
    /// The gateway sent it before: it was accepted as `message_id`.
    Duplicate {
        /// The earlier message.
        message_id: String,
    },
}

/// The outcome of one try at sending a transmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The backend took it.
    Sent,
    /// It failed and is tried again at `at` (ms since the epoch).
    Retry {
        /// What went wrong.
        error: String,
        /// When to try again.
        at: u64,
    },
    /// It failed and no try is left: a dead letter.
    Dead {
        /// What went wrong.
        error: String,
    },
}

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&sled::Db, &mut Wal) -> Finish + Send>;

/// Most writes one group commit takes before it flushes.
const MAX_GROUP: usize = 4096;

/// How long the committer looks for the next write before it sleeps (see
/// [`recv_soon`]). Under load the next write comes within microseconds.
/// Measured with `receive_bench --durable` in alternating pairs: looking
/// for 50 µs instead of not at all routed more messages per second in 17
/// of 22 (medians +3.8% and +5.2% in two sets), with the open-loop p99
/// unchanged; 20 µs beat 50 µs in 7 of 8 pairs (+1.8%, less system time)
/// and 10 µs in 6 of 8, and 150 µs lost to 50 µs in 7 of 8. Looking in
/// the sync thread too raised the p99.
const WRITE_PATIENCE: std::time::Duration = std::time::Duration::from_micros(20);

/// The journal. Cheap to clone; clones share the committer.
#[derive(Clone)]
pub struct Journal {
    tree: sled::Tree,
    committer: Committer,
}

/// The one thread that writes every journal of a database (each tenant has
/// its own journal tree), so one fsync carries the writes of all of them.
#[derive(Clone)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
    stats: Arc<Counters>,
    /// How readers see the journals: writes not yet in sled first.
    view: View,
}

impl Committer {
    /// Start the committer thread of `db`, logging to directory `log`;
    /// what the log holds from before is replayed into sled first.
    pub(crate) fn start(db: &sled::Db, log: &std::path::Path) -> Result<Self, StoreError> {
        let (mut wal, mut synced, replayed) = Wal::open(db, log)?;
        if replayed.applied > 0 || replayed.torn {
            tracing::info!(
                applied = replayed.applied,
                already_held = replayed.skipped,
                torn_tail = replayed.torn,
                "journal log replayed"
            );
        }
        let view = wal.view();
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (groups, to_sync) = mpsc::channel::<Group>();
        let db = db.clone();
        let stats = Arc::new(Counters::default());
        let counters = stats.clone();
        let thread = |name: &str| std::thread::Builder::new().name(name.into());
        let failed = |e| StoreError::Engine(format!("cannot start the journal's threads: {e}"));
        thread("journal-commit").spawn(move || commit_loop(&db, &mut wal, &receiver, &groups)).map_err(failed)?;
        thread("journal-sync").spawn(move || sync_loop(&mut synced, &to_sync, &counters)).map_err(failed)?;
        Ok(Committer { jobs, stats, view })
    }

    /// Wait until sled holds every journal write durable so far.
    pub(crate) fn settle(&self) -> Result<(), StoreError> {
        self.view.settle()
    }
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    flushes: AtomicU64,
}

/// How the journal's group commit has gone so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Atomic writes made durable.
    pub writes: u64,
    /// Flushes (fsyncs) that made them durable.
    pub flushes: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").finish_non_exhaustive()
    }
}

fn message_key(id: &str) -> Vec<u8> {
    [b"m/", id.as_bytes()].concat()
}

fn message_transmissions_prefix(id: &str) -> Vec<u8> {
    [b"t/", id.as_bytes(), b"\0"].concat()
}

fn seq_key(prefix: &[u8; 2], seq: u64) -> Vec<u8> {
    [&prefix[..], &seq.to_be_bytes()].concat()
}

fn dead_key(key: &TransmissionKey) -> Vec<u8> {
    [b"d/".as_slice(), &key.bytes()].concat()
}

fn external_key(backend: &str, external_id: &str) -> Vec<u8> {
    [b"x/", backend.as_bytes(), b"\0", external_id.as_bytes()].concat()
}

fn client_key(key: &str) -> Vec<u8> {
    [b"k/", key.as_bytes()].concat()
}

/// The first byte of a journal record in the binary format (see the module
/// documentation): the format's version.
const BINARY_RECORD: u8 = 1;

/// What the journal keeps under `m/<id>`: a message and, if it is outgoing,
/// its transmissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    record: MessageRecord,
    transmissions: Vec<TransmissionRecord>,
}

impl Stored {
    fn new(record: MessageRecord) -> Self {
        Stored { record, transmissions: Vec::new() }
    }

    /// Its transmission to `connection`.
    fn transmission(&mut self, connection: &Connection) -> Option<&mut TransmissionRecord> {
        self.transmissions.iter_mut().find(|t| t.connection == *connection)
    }

    /// The stored form of message `key`: binary, or (written by an earlier
    /// version) a JSON [`MessageRecord`] without transmissions.
    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        match bytes.first() {
            Some(b'{') => Ok(Stored::new(decode(key, bytes)?)),
            _ => decode(key, bytes),
        }
    }
}

/// A journal record as stored: [`BINARY_RECORD`], then postcard.
fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    // Records are a few hundred bytes: one allocation, not a growth per field.
    let mut bytes = Vec::with_capacity(512);
    bytes.push(BINARY_RECORD);
    postcard::to_extend(record, bytes).map_err(|e| StoreError::Engine(format!("cannot encode a journal record: {e}")))
}

/// A journal record read back, binary or (written by an earlier version)
/// JSON; `key` names it in the error.
fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason };
    match bytes.split_first() {
        Some((&BINARY_RECORD, record)) => postcard::from_bytes(record).map_err(|e| corrupt(e.to_string())),
        Some((b'{', _)) => serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string())),
        _ => Err(corrupt("not a journal record in a known format".into())),
    }
}

/// The error for a transmission that is not stored.
fn missing(key: &TransmissionKey) -> StoreError {
    StoreError::NotFound { what: "transmission", id: format!("{} to {}", key.message_id, key.connection) }
}

/// The message id under `key`, as a write sees it.
fn id_at(txn: &Txn<'_>, key: &[u8]) -> Result<Option<String>, StoreError> {
    Ok(txn.get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// Add `staged`'s message and transmissions to `batch`; return the queued ones.
fn stage(db: &sled::Db, batch: &mut Batch, staged: Staged, now: u64) -> Result<Vec<Queued>, StoreError> {
    let mut queued = Vec::new();
    let mut stored = Stored::new(staged.record);
    for (connection, refusal) in staged.transmissions {
        let key = TransmissionKey { message_id: stored.record.id.clone(), connection: connection.clone() };
        let mut record = TransmissionRecord {
            message_id: key.message_id.clone(),
            connection: connection.clone(),
            status: Status::Queued,
            attempts: 0,
            next_attempt_on: Some(now),
            error: None,
            dead_letter: false,
            seq: None,
            queued_on: now,
            sent_on: None,
            delivered_on: None,
            failed_on: None,
        };
        match refusal {
            Some(error) => {
                record.status = Status::Failed;
                record.error = Some(error);
                record.dead_letter = true;
                record.failed_on = Some(now);
                record.next_attempt_on = None;
                batch.insert(dead_key(&key), &[][..]);
            }
            None => {
                let seq = db.generate_id().map_err(engine)?;
                record.seq = Some(seq);
                batch.insert(seq_key(b"o/", seq), key.bytes());
                queued.push(Queued { key, seq, attempts: 0, not_before: now, message: None });
            }
        }
        stored.transmissions.push(record);
    }
    batch.insert(message_key(&stored.record.id), encode(&stored)?);
    // Encoded: the record itself can go to the lanes, one copy for all.
    if !queued.is_empty() {
        let message = Arc::new(stored.record);
        for item in &mut queued {
            item.message = Some(message.clone());
        }
    }
    Ok(queued)
}

/// Message `id` as a write sees it, ready to be changed and written back.
/// Transmissions an earlier version kept under keys of their own are moved
/// into it: `batch` removes those keys.
fn load(txn: &Txn<'_>, id: &str, batch: &mut Batch) -> Result<Option<Stored>, StoreError> {
    let key = message_key(id);
    let Some(mut stored) = txn.get(&key)?.map(|bytes| Stored::decode(&key, &bytes)).transpose()? else {
        return Ok(None);
    };
    if stored.transmissions.is_empty() {
        for (key, value) in txn.scan_prefix(&message_transmissions_prefix(id))? {
            stored.transmissions.push(decode(&key, &value)?);
            batch.remove(key);
        }
    }
    Ok(Some(stored))
}

impl Journal {
    /// The journal in `db`'s tree `tree`, written by `committer`.
    pub(crate) fn open(db: &sled::Db, tree: &str, committer: Committer) -> Result<Self, StoreError> {
        let tree = db.open_tree(tree).map_err(engine)?;
        Ok(Journal { tree, committer })
    }

    /// Writes and log syncs so far: their ratio is how many writes one fsync
    /// carries on average.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            writes: self.committer.stats.writes.load(Ordering::Relaxed),
            flushes: self.committer.stats.flushes.load(Ordering::Relaxed),
        }
    }

    /// Run `work` on the committer thread and answer once it is durable.
    async fn commit<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(work).await
    }

    /// Hand `work` to the committer now; the returned future answers once
    /// it is durable. Writes handed over one after the other are applied,
    /// and made durable, in that order.
    fn submit<T, F>(&self, work: F) -> impl Future<Output = Result<T, StoreError>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Txn<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let tree = self.tree.clone();
        let job: Job = Box::new(move |db, wal| {
            let result = work(&mut Txn::new(db, &tree, wal));
            Box::new(move |flushed: Result<(), String>| {
                let result = match flushed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Engine(format!("cannot make the journal durable: {e}"))),
                };
                let _ = answer.send(result);
            })
        });
        let gone = || StoreError::Engine("the journal's committer has stopped".into());
        let handed = self.committer.jobs.send(job).map_err(|_| gone());
        async move {
            handed?;
            answered.await.map_err(|_| gone())?
        }
    }

    /// Store an incoming message and put it in the inbox, unless its backend
    /// already accepted a message with the same non-empty `external_id`
    /// field (a gateway's redelivery).
    pub async fn accept_incoming(&self, record: MessageRecord) -> Result<Accepted, StoreError> {
        self.commit(move |txn| {
            let dedup = match (record.connections.first(), record.fields.get("external_id")) {
                (Some(c), Some(external)) if !external.is_empty() => Some(external_key(&c.backend, external)),
                _ => None,
            };
            if let Some(key) = &dedup
                && let Some(message_id) = id_at(txn, key)?
                && txn.get(&message_key(&message_id))?.is_some()
            {
                return Ok(Accepted::Duplicate { message_id });
            }
            let seq = txn.db.generate_id().map_err(engine)?;
            let mut batch = Batch::default();
            batch.insert(seq_key(b"i/", seq), record.id.as_bytes());
            if let Some(key) = dedup {
                batch.insert(key, record.id.as_bytes());
            }
            batch.insert(message_key(&record.id), encode(&Stored::new(record))?);
            txn.apply(batch)?;
            Ok(Accepted::New { seq })
        })
        .await
    }

    /// Record that incoming message `routed` (taken from inbox place `seq`,
    /// if it was stored before routing) has been routed, and queue its
    /// responses, all in one atomic write. The write is handed to the
    /// committer at once; the future answers when it is durable, so a
    /// caller may route its next message meanwhile.
    pub fn finish_incoming(
        &self,
        seq: Option<u64>,
        routed: MessageRecord,
        responses: Vec<Staged>,
    ) -> impl Future<Output = Result<Vec<Queued>, StoreError>> + Send + 'static {
        self.submit(move |txn| {
            let now = now_ms();
            let mut batch = Batch::default();
            let mut queued = Vec::new();
            for staged in responses {
                queued.extend(stage(txn.db, &mut batch, staged, now)?);
            }
            batch.insert(message_key(&routed.id), encode(&Stored::new(routed))?);
            if let Some(seq) = seq {
                batch.remove(seq_key(b"i/", seq));
            }
            txn.apply(batch)?;
            Ok(queued)
        })
    }

    /// Queue an outgoing message. With a `client` key that was used before,
    /// nothing is queued and the earlier message's id is returned instead.
    pub async fn queue_outgoing(
        &self,
        staged: Staged,
        client: Option<String>,
    ) -> Result<Result<Vec<Queued>, String>, StoreError> {
        self.commit(move |txn| {
            if let Some(key) = &client
                && let Some(earlier) = id_at(txn, &client_key(key))?
            {
                return Ok(Err(earlier));
            }
            let mut batch = Batch::default();
            if let Some(key) = &client {
                batch.insert(client_key(key), staged.record.id.as_bytes());
            }
            let queued = stage(txn.db, &mut batch, staged, now_ms())?;
            txn.apply(batch)?;
            Ok(Ok(queued))
        })
        .await
    }

    /// Record the outcome of send attempts; returns the updated records.
    pub async fn record_attempts(
        &self,
        outcomes: Vec<(TransmissionKey, Attempt)>,
    ) -> Result<Vec<TransmissionRecord>, StoreError> {
        self.commit(move |txn| {
            let now = now_ms();
            let mut batch = Batch::default();
            let mut updated = Vec::with_capacity(outcomes.len());
            // Each message is read once and written once, however many of
            // its transmissions the outcomes name.
            let mut messages: Vec<Stored> = Vec::new();
            for (key, attempt) in outcomes {
                let index = match messages.iter().position(|m| m.record.id == key.message_id) {
                    Some(index) => index,
                    None => {
                        messages.push(load(txn, &key.message_id, &mut batch)?.ok_or_else(|| missing(&key))?);
                        messages.len() - 1
                    }
                };
                let record = messages[index].transmission(&key.connection).ok_or_else(|| missing(&key))?;
                record.attempts += 1;
                let done = match attempt {
                    Attempt::Sent => {
                        record.sent_on.get_or_insert(now);
                        if record.status.rank() < Status::Sent.rank() {
                            record.status = Status::Sent;
                        }
                        record.error = None;
                        true
                    }
                    Attempt::Retry { error, at } => {
                        record.error = Some(error);
                        record.next_attempt_on = Some(at);
                        false
                    }
                    Attempt::Dead { error } => {
                        record.error = Some(error);
                        if record.status.rank() < Status::Failed.rank() {
                            record.status = Status::Failed;
                            record.failed_on = Some(now);
                        }
                        record.dead_letter = true;
                        batch.insert(dead_key(&key), &[][..]);
                        true
                    }
                };
                if done {
                    if let Some(seq) = record.seq.take() {
                        batch.remove(seq_key(b"o/", seq));
                    }
                    record.next_attempt_on = None;
                }
                updated.push(record.clone());
            }
            for stored in &messages {
                batch.insert(message_key(&stored.record.id), encode(stored)?);
            }
            txn.apply(batch)?;
            Ok(updated)
        })
        .await
    }

    /// Apply a gateway's report on a transmission. `None` when no such
    /// transmission exists. A report that would move the status backwards
    /// is kept as the error text only.
    pub async fn report(
        &self,
        key: TransmissionKey,
        status: Status,
        detail: String,
    ) -> Result<Option<TransmissionRecord>, StoreError> {
        self.commit(move |txn| {
            let mut batch = Batch::default();
            let Some(mut stored) = load(txn, &key.message_id, &mut batch)? else { return Ok(None) };
            let Some(record) = stored.transmission(&key.connection) else { return Ok(None) };
            let now = now_ms();
            if status.rank() > record.status.rank() {
                record.status = status;
                match status {
                    Status::Delivered => record.delivered_on = Some(now),
                    Status::Failed => record.failed_on = Some(now),
                    Status::Sent => {
                        record.sent_on.get_or_insert(now);
                    }
                    Status::Queued => {}
                }
            }
            if status == Status::Failed && !detail.is_empty() {
                record.error = Some(detail);
            }
            let record = record.clone();
            batch.insert(message_key(&key.message_id), encode(&stored)?);
            txn.apply(batch)?;
            Ok(Some(record))
        })
        .await
    }

    /// Put a dead letter back in the outbox, with its tries reset.
    pub async fn requeue(&self, key: TransmissionKey) -> Result<Queued, StoreError> {
        self.commit(move |txn| {
            let not_found = || StoreError::NotFound {
                what: "dead letter",
                id: format!("{} to {}", key.message_id, key.connection),
            };
            let mut batch = Batch::default();
            let mut stored = load(txn, &key.message_id, &mut batch)?.ok_or_else(not_found)?;
            let record = stored.transmission(&key.connection).filter(|r| r.dead_letter).ok_or_else(not_found)?;
            let now = now_ms();
            let seq = txn.db.generate_id().map_err(engine)?;
            record.dead_letter = false;
            record.status = Status::Queued;
            record.attempts = 0;
            record.failed_on = None;
            record.seq = Some(seq);
            record.next_attempt_on = Some(now);
            batch.remove(dead_key(&key));
            batch.insert(seq_key(b"o/", seq), key.bytes());
            batch.insert(message_key(&key.message_id), encode(&stored)?);
            txn.apply(batch)?;
            Ok(Queued { key, seq, attempts: 0, not_before: now, message: None })
        })
        .await
    }

    /// Message `id` as stored.
    fn stored(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let key = message_key(id);
        self.committer.view.get(&self.tree, &key)?.map(|bytes| Stored::decode(&key, &bytes)).transpose()
    }

    /// Every key under `prefix`, in order, with its value.
    fn scan(&self, prefix: &[u8]) -> Result<std::collections::BTreeMap<Vec<u8>, sled::IVec>, StoreError> {
        self.committer.view.scan_prefix(&self.tree, prefix)
    }

    /// The message with this id.
    pub fn message(&self, id: &str) -> Result<Option<MessageRecord>, StoreError> {
        Ok(self.stored(id)?.map(|stored| stored.record))
    }

    /// The transmissions of message `id`.
    pub fn transmissions(&self, id: &str) -> Result<Vec<TransmissionRecord>, StoreError> {
        match self.stored(id)? {
            Some(stored) if !stored.transmissions.is_empty() => Ok(stored.transmissions),
            // None, or kept under keys of their own by an earlier version.
            _ => self.scan(&message_transmissions_prefix(id))?.iter().map(|(key, value)| decode(key, value)).collect(),
        }
    }

    /// The transmission with this key.
    pub fn transmission(&self, key: &TransmissionKey) -> Result<Option<TransmissionRecord>, StoreError> {
        Ok(self.transmissions(&key.message_id)?.into_iter().find(|t| t.connection == key.connection))
    }

    /// Up to `limit` dead letters, oldest message id first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<TransmissionRecord>, StoreError> {
        let mut found = Vec::new();
        for key in self.scan(b"d/")?.keys().take(limit) {
            let Some(key) = TransmissionKey::parse(&key[2..]) else {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    reason: "not a transmission's key".into(),
                });
            };
            if let Some(record) = self.transmission(&key)? {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// The incoming messages accepted but not yet routed, oldest first.
    pub fn inbox(&self) -> Result<Vec<(u64, MessageRecord)>, StoreError> {
        let mut found = Vec::new();
        for (key, id) in self.scan(b"i/")? {
            let seq = seq_of(&key)?;
            let id = String::from_utf8_lossy(&id).into_owned();
            match self.message(&id)? {
                Some(record) => found.push((seq, record)),
                None => tracing::warn!(message_id = %id, "the inbox names a message that is not stored; skipped"),
            }
        }
        Ok(found)
    }

    /// The transmissions still to send, in the order they were queued.
    pub fn outbox(&self) -> Result<Vec<Queued>, StoreError> {
        let mut found = Vec::new();
        for (key, tx) in self.scan(b"o/")? {
            let seq = seq_of(&key)?;
            let Some(tx_key) = TransmissionKey::parse(&tx) else {
                return Err(StoreError::Corrupt { key: format!("o/{seq}"), reason: "not a transmission key".into() });
            };
            if let Some(record) = self.transmission(&tx_key)? {
                let not_before = record.next_attempt_on.unwrap_or(0);
                found.push(Queued { key: tx_key, seq, attempts: record.attempts, not_before, message: None });
            }
        }
        Ok(found)
    }

    /// How many messages wait in the inbox and transmissions in the outbox.
    pub fn backlog(&self) -> Result<(usize, usize), StoreError> {
        Ok((self.scan(b"i/")?.len(), self.scan(b"o/")?.len()))
    }
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key.get(2..10).and_then(|b| b.try_into().ok()).ok_or_else(|| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: "not a sequence key".into(),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Writes the committer ran, on their way to disk, and who waits for them.
struct Group {
    written: Written,
    finishing: Vec<Finish>,
}

/// The committer: run every waiting job and hand them, as one group, to
/// the sync thread; then go on with the next jobs while that group syncs.
fn commit_loop(db: &sled::Db, wal: &mut Wal, jobs: &mpsc::Receiver<Job>, groups: &mpsc::Sender<Group>) {
    while let Ok(first) = recv_soon(jobs, WRITE_PATIENCE) {
        let mut finishing = vec![first(db, wal)];
        while finishing.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => finishing.push(job(db, wal)),
                Err(_) => break,
            }
        }
        if groups.send(Group { written: wal.take(), finishing }).is_err() {
            return;
        }
    }
}

/// The sync thread: take every group waiting, make them durable with one
/// sync, answer them all.
fn sync_loop(log: &mut Log, groups: &mpsc::Receiver<Group>, counters: &Counters) {
    while let Ok(first) = groups.recv() {
        let mut waiting = vec![first];
        while let Ok(group) = groups.try_recv() {
            waiting.push(group);
        }
        let (written, finishing): (Vec<Written>, Vec<Vec<Finish>>) =
            waiting.into_iter().map(|g| (g.written, g.finishing)).unzip();
        let synced = log.sync(&written).map_err(|e| e.to_string());
        let finishing: Vec<Finish> = finishing.into_iter().flatten().collect();
        counters.writes.fetch_add(finishing.len() as u64, Ordering::Relaxed);
        counters.flushes.fetch_add(1, Ordering::Relaxed);
        for finish in finishing {
            finish(synced.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, direction: Direction, external: Option<&str>) -> MessageRecord {
        let mut fields = Fields::new();
        if let Some(e) = external {
            fields.insert("external_id".into(), e.into());
        }
        MessageRecord {
            id: id.into(),
            direction,
            text: "hi".into(),
            connections: vec![Connection::new("sms", "1")],
            fields,
            in_response_to: None,
            external_id: None,
            class: MessageClass::Outgoing,
            created_on: 1,
            routed_on: None,
            handled: false,
            responses: Vec::new(),
            depth: 0,
        }
    }

    fn json<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).expect("json")
    }

    fn open() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path()).open().expect("open");
        let committer = Committer::start(&db, &dir.path().join("wal")).expect("committer");
        (dir, Journal::open(&db, "journal", committer).expect("journal"))
    }

    #[test]
    fn records_are_binary_and_records_written_as_json_are_still_read() {
        let record = record("a", Direction::Incoming, Some("gw-1"));
        let binary = encode(&record).expect("encode");
        assert_eq!(binary[0], BINARY_RECORD);
        let json = serde_json::to_vec(&record).expect("json");
        assert!(binary.len() * 2 < json.len(), "{} bytes, as JSON {}", binary.len(), json.len());
        assert_eq!(decode::<MessageRecord>(b"m/a", &binary).expect("binary"), record);
        assert_eq!(decode::<MessageRecord>(b"m/a", &json).expect("json"), record);
        // A JSON record of an earlier version, without the later `depth`.
        let old = br#"{"id":"a","direction":"incoming","text":"hi","connections":[{"backend":"sms","identity":"1"}],
            "fields":{"external_id":"gw-1"},"in_response_to":null,"external_id":null,"class":"outgoing",
            "created_on":1,"routed_on":null,"handled":false,"responses":[]}"#;
        assert_eq!(decode::<MessageRecord>(b"m/a", old).expect("old json"), record);
        for bad in [&b""[..], b"\x02junk", &binary[..binary.len() - 1]] {
            let err = decode::<MessageRecord>(b"m/a", bad).expect_err("not a record");
            assert!(matches!(&err, StoreError::Corrupt { key, .. } if key == "m/a"), "{err:?}");
        }
    }

    #[test]
    fn the_binary_format_is_pinned() {
        // postcard names no fields: if this changes, records stored by
        // earlier versions would be misread. Give the new layout a new
        // format byte (and keep reading this one) instead.
        let record = TransmissionRecord {
            message_id: "m".into(),
            connection: Connection::new("sms", "1"),
            status: Status::Sent,
            attempts: 2,
            next_attempt_on: None,
            error: Some("e".into()),
            dead_letter: false,
            seq: Some(300),
            queued_on: 5,
            sent_on: Some(6),
            delivered_on: None,
            failed_on: None,
        };
        let bytes = encode(&record).expect("encode");
        assert_eq!(bytes, [1, 1, b'm', 3, b's', b'm', b's', 1, b'1', 1, 2, 0, 1, 1, b'e', 0, 1, 172, 2, 5, 1, 6, 0, 0]);
        assert_eq!(decode::<TransmissionRecord>(b"t/m", &bytes).expect("decode"), record);
    }

    #[test]
    fn a_message_is_stored_with_its_transmissions() {
        let transmission = |identity: &str| TransmissionRecord {
            message_id: "a".into(),
            connection: Connection::new("sms", identity),
            status: Status::Queued,
            attempts: 0,
            next_attempt_on: Some(1),
            error: None,
            dead_letter: false,
            seq: Some(1),
            queued_on: 1,
            sent_on: None,
            delivered_on: None,
            failed_on: None,
        };
        let stored = Stored {
            record: record("a", Direction::Outgoing, None),
            transmissions: vec![transmission("1"), transmission("2")],
        };
        let bytes = encode(&stored).expect("encode");
        let parts = [
            &encode(&stored.record).expect("record")[..],
            &[2],
            &encode(&stored.transmissions[0]).expect("first")[1..],
            &encode(&stored.transmissions[1]).expect("second")[1..],
        ]
        .concat();
        assert_eq!(bytes, parts, "the record, then its transmissions, counted");
        assert_eq!(Stored::decode(b"m/a", &bytes).expect("decode"), stored);
        let json = serde_json::to_vec(&stored.record).expect("json");
        assert_eq!(Stored::decode(b"m/a", &json).expect("decode"), Stored::new(stored.record));
    }

    #[tokio::test]
    async fn transmissions_kept_by_an_earlier_version_are_read_and_moved_into_their_message() {
        let (dir, journal) = open();
        // What an earlier version left: JSON records, a key per transmission.
        let tree = &journal.tree;
        tree.insert(message_key("m"), json(&record("m", Direction::Outgoing, None))).expect("insert");
        let mut queued = Vec::new();
        for (identity, seq) in [("1", 7u64), ("2", 8)] {
            let key = TransmissionKey { message_id: "m".into(), connection: Connection::new("sms", identity) };
            let record = TransmissionRecord {
                message_id: "m".into(),
                connection: key.connection.clone(),
                status: Status::Queued,
                attempts: 0,
                next_attempt_on: Some(1),
                error: None,
                dead_letter: false,
                seq: Some(seq),
                queued_on: 1,
                sent_on: None,
                delivered_on: None,
                failed_on: None,
            };
            tree.insert(key.bytes(), json(&record)).expect("insert");
            tree.insert(seq_key(b"o/", seq), key.bytes()).expect("insert");
            queued.push(key);
        }
        assert_eq!(journal.transmissions("m").expect("read").len(), 2);
        assert_eq!(journal.outbox().expect("outbox").len(), 2);
        assert_eq!(journal.transmission(&queued[1]).expect("read").map(|t| t.seq), Some(Some(8)));

        let updated = journal.record_attempts(vec![(queued[0].clone(), Attempt::Sent)]).await.expect("record");
        assert_eq!(updated[0].status, Status::Sent);
        assert!(journal.scan(b"t/").expect("scan").is_empty(), "moved into the message's record");
        let now = journal.transmissions("m").expect("read");
        assert_eq!(now.iter().map(|t| t.status).collect::<Vec<_>>(), [Status::Sent, Status::Queued]);
        assert_eq!(journal.outbox().expect("outbox").len(), 1);
        let reported = journal.report(queued[1].clone(), Status::Delivered, String::new()).await.expect("report");
        assert_eq!(reported.map(|t| t.status), Some(Status::Delivered));
        drop(dir);
    }

    #[tokio::test]
    async fn redelivered_messages_are_accepted_once() {
        let (_dir, journal) = open();
        let first = journal.accept_incoming(record("a", Direction::Incoming, Some("gw-1"))).await.expect("accept");
        assert!(matches!(first, Accepted::New { .. }));
        let again = journal.accept_incoming(record("b", Direction::Incoming, Some("gw-1"))).await.expect("accept");
        assert_eq!(again, Accepted::Duplicate { message_id: "a".into() });
        let other = journal.accept_incoming(record("c", Direction::Incoming, None)).await.expect("accept");
        assert!(matches!(other, Accepted::New { .. }));
        assert_eq!(journal.inbox().expect("inbox").len(), 2);
    }

    #[tokio::test]
    async fn routing_takes_a_message_out_of_the_inbox() {
        let (_dir, journal) = open();
        let Accepted::New { seq } =
            journal.accept_incoming(record("a", Direction::Incoming, None)).await.expect("accept")
        else {
            panic!("a new message")
        };
        let mut routed = record("a", Direction::Incoming, None);
        routed.routed_on = Some(100);
        journal.finish_incoming(Some(seq), routed, Vec::new()).await.expect("finish");
        let stored = journal.message("a").expect("read").expect("stored");
        assert_eq!((stored.created_on, stored.routed_on), (1, Some(100)));
        assert!(journal.inbox().expect("inbox").is_empty());
        // A message routed before it was stored is stored once, routed.
        journal.finish_incoming(None, record("b", Direction::Incoming, None), Vec::new()).await.expect("finish");
        assert!(journal.message("b").expect("read").is_some());
        assert!(journal.inbox().expect("inbox").is_empty());
    }

    #[tokio::test]
    async fn queued_transmissions_carry_their_message_and_the_outbox_reads_it_back() {
        let (_dir, journal) = open();
        let staged = Staged {
            record: record("m", Direction::Outgoing, None),
            transmissions: vec![(Connection::new("sms", "1"), None), (Connection::new("sms", "2"), None)],
        };
        let queued = journal.queue_outgoing(staged, None).await.expect("queue").expect("new");
        let stored = journal.message("m").expect("read").expect("stored");
        let (first, second) = (queued[0].message.as_ref().expect("first"), queued[1].message.as_ref().expect("second"));
        assert_eq!(**first, stored, "the lane gets the message as stored");
        assert!(Arc::ptr_eq(first, second), "a message's transmissions share one copy");
        let outbox = journal.outbox().expect("outbox");
        assert_eq!(outbox.len(), 2);
        assert!(outbox.iter().all(|q| q.message.is_none()), "what is found in the outbox is read when sent");
    }

    #[tokio::test]
    async fn statuses_never_move_backwards() {
        let (_dir, journal) = open();
        let staged = Staged {
            record: record("m", Direction::Outgoing, None),
            transmissions: vec![(Connection::new("sms", "1"), None)],
        };
        let queued = journal.queue_outgoing(staged, None).await.expect("queue").expect("new");
        let key = queued[0].key.clone();
        // The report overtakes the send's own record.
        let reported = journal.report(key.clone(), Status::Delivered, String::new()).await.expect("report");
        assert_eq!(reported.map(|r| r.status), Some(Status::Delivered));
        let after = journal.record_attempts(vec![(key.clone(), Attempt::Sent)]).await.expect("sent");
        assert_eq!(after[0].status, Status::Delivered);
        let late = journal.report(key.clone(), Status::Sent, String::new()).await.expect("report");
        assert_eq!(late.map(|r| r.status), Some(Status::Delivered));
        assert!(journal.outbox().expect("outbox").is_empty());
        let unknown = TransmissionKey { message_id: "nope".into(), connection: Connection::new("sms", "1") };
        assert_eq!(journal.report(unknown, Status::Delivered, String::new()).await.expect("report"), None);
    }

    #[tokio::test]
    async fn dead_letters_can_be_requeued_and_client_keys_dedupe() {
        let (_dir, journal) = open();
        let staged = Staged {
            record: record("m", Direction::Outgoing, None),
            transmissions: vec![(Connection::new("sms", "1"), None)],
        };
        let queued = journal.queue_outgoing(staged.clone(), Some("k1".into())).await.expect("queue").expect("new");
        assert_eq!(journal.queue_outgoing(staged, Some("k1".into())).await.expect("queue"), Err("m".into()));
        let key = queued[0].key.clone();
        journal.record_attempts(vec![(key.clone(), Attempt::Dead { error: "down".into() })]).await.expect("dead");
        let dead = journal.dead_letters(10).expect("dead letters");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].status, Status::Failed);
        assert!(journal.outbox().expect("outbox").is_empty());
        let requeued = journal.requeue(key.clone()).await.expect("requeue");
        assert_eq!(journal.outbox().expect("outbox"), vec![requeued]);
        assert!(journal.dead_letters(10).expect("dead letters").is_empty());
        assert!(journal.requeue(key).await.is_err(), "only dead letters are re-queued");
    }
}
