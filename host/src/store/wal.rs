//! The journal's write-ahead log: what makes a journal write durable.
//!
//! sled makes writes durable with `flush`, and makes a `Batch` atomic by
//! sealing and writing its log buffer around it (two writes by its I/O
//! threads per batch). Measured under load, that cost more CPU than routing
//! the messages: 45 KB written and 44 context switches per message. So the
//! journal does what databases do: every atomic write ([`Batch`]) is
//! appended to a log file of our own, one `fdatasync` of that file makes a
//! whole group of writes durable, and only after that are they applied to
//! sled, key by key, a few thousand at a time (see
//! [`memtable`](super::memtable)). sled is flushed only at a *checkpoint*,
//! when a log segment is full, after which the segment is kept as the
//! next [`SPARE`] (or deleted when a spare is ready already).
//!
//! Until its group is durable a write is visible only to the journal's
//! later writes (through [`Txn`]), never to readers of sled: what anyone
//! reads from the journal is on disk.
//!
//! **Recovery.** On start the remaining segments are replayed into sled in
//! order. A batch's last key written to sled is its log sequence number
//! (LSN), under [`LSN_KEY`] of its tree, so a tree knows which batches it
//! holds whole: replay applies the later ones (a batch cut short by a crash
//! is applied again, whole), and a tree never goes back to an older state.
//!
//! **Format.** A segment is `NNNNNNNNNNNNNNNNNNNN.wal` in the log
//! directory, a sequence of frames `len: u32 LE | crc32: u32 LE | payload`.
//! A payload is `lsn: u64 LE | tree: u16 LE length + bytes | ops: u32 LE`,
//! then per op `1 | key | value` (insert) or `0 | key` (remove), keys and
//! values as `u32 LE` length + bytes. Every write to a segment ends with
//! an *end mark*, eight zero bytes, which the next write overwrites; a
//! reused segment's first eight bytes are zeroed before it is used again.
//! Replay reads a segment's frames up to the first of:
//!
//! * eight zero bytes where a frame would start: the end mark, or the
//!   unwritten rest of a zero-filled segment. The segment ends cleanly.
//! * a whole frame whose LSN does not follow the one before it (LSNs go up
//!   by one from write to write, across segments too): what is left of
//!   the segment's earlier use. It ends cleanly too.
//! * a frame cut short or failing its checksum: a write torn by a crash.
//!   Nothing after it can be trusted, so it ends the replay.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use super::StoreError;
use super::framing::{self, Reader};
use super::memtable::Memtable;
use super::round::Round;
use super::sled_store::engine;
use crate::sync::lock;

/// Where each journal tree keeps the LSN of the last batch it holds. The
/// journal's own keys all start with a letter and `/`, so none collide.
pub(crate) const LSN_KEY: &[u8] = b"_/lsn";

/// A segment this large is closed and checkpointed.
const SEGMENT_BYTES: u64 = 16 << 20;

/// The next segment, ready ahead of time: overwriting blocks that exist
/// lets `fdatasync` skip writing the inode (appending changes the file's
/// size, which costs a second write per sync). It is the last segment a
/// checkpoint let go, with its first eight bytes zeroed; or, when there
/// is none (the first start, or at open for the first segment when the
/// last run left none), a file of zeros written by the checkpoint thread.
/// Writing 16 MiB of zeros while the log syncs held a sync up for up to
/// 8 ms on the development VM, where reusing a segment writes 8 bytes.
const SPARE: &str = "spare";

/// A frame header of zeros: where nothing, or nothing more, was written.
const END_MARK: [u8; 8] = [0; 8];

/// One atomic write to one tree: inserts and removals, applied in order.
///
/// Values are [`sled::IVec`]s from the start: the memtable holds the same
/// bytes and hands them to sled without copying them again.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    ops: Vec<(Vec<u8>, Option<sled::IVec>)>,
}

impl Batch {
    /// Set `key` to `value`.
    pub(crate) fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<sled::IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    /// Remove `key`.
    pub(crate) fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    /// Its writes, in order.
    pub(crate) fn ops(&self) -> &[(Vec<u8>, Option<sled::IVec>)] {
        &self.ops
    }

    /// A batch of text keys and values (`None`: remove), for tests.
    #[cfg(test)]
    pub(crate) fn of(ops: &[(&str, Option<&str>)]) -> Batch {
        let mut batch = Batch::default();
        for (key, value) in ops {
            match value {
                Some(v) => batch.insert(key.as_bytes(), v.as_bytes()),
                None => batch.remove(key.as_bytes()),
            }
        }
        batch
    }

    /// Write the batch to sled key by key, then its LSN.
    fn apply(&self, tree: &sled::Tree, lsn: u64) -> Result<(), StoreError> {
        for (key, value) in &self.ops {
            write(tree, key, value.as_ref())?;
        }
        set_tree_lsn(tree, lsn)
    }

    fn encode(&self, lsn: u64, tree: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&(tree.len() as u16).to_le_bytes());
        out.extend_from_slice(tree);
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        for (key, value) in &self.ops {
            out.push(u8::from(value.is_some()));
            framing::put(out, key);
            if let Some(value) = value {
                framing::put(out, value);
            }
        }
        let payload = &out[start + 8..];
        let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Set `key` of `tree` to `value`, or remove it (`None`).
pub(super) fn write(tree: &sled::Tree, key: &[u8], value: Option<&sled::IVec>) -> Result<(), StoreError> {
    match value {
        Some(value) => tree.insert(key, value.clone()),
        None => tree.remove(key),
    }
    .map(drop)
    .map_err(engine)
}

/// A decoded log record.
struct Record {
    lsn: u64,
    tree: Vec<u8>,
    batch: Batch,
}

/// One record from a frame's payload, which must hold nothing else.
fn read_record(payload: &[u8]) -> Option<Record> {
    let mut r = Reader::new(payload);
    let lsn = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let tree_len = u16::from_le_bytes(r.take(2)?.try_into().ok()?) as usize;
    let tree = r.take(tree_len)?.to_vec();
    let count = r.u32()?;
    let mut batch = Batch::default();
    for _ in 0..count {
        let insert = r.take(1)?[0] == 1;
        let key = r.field()?.to_vec();
        batch.ops.push((key, if insert { Some(sled::IVec::from(r.field()?)) } else { None }));
    }
    r.is_empty().then_some(Record { lsn, tree, batch })
}

/// The whole frames at the start of `data` that continue the log after
/// LSN `after` (any LSN for the first frame when `None`), decoded, and
/// whether the data ended cleanly after them (false: a torn or corrupt
/// frame followed). See the module documentation.
fn records(data: &[u8], mut after: Option<u64>) -> (Vec<Record>, bool) {
    let mut found = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(header) = rest.get(..8) else { return (found, false) };
        if header == END_MARK {
            // An end mark, or the zeroed part of a prepared segment.
            return (found, true);
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = rest.get(8..8 + len) else { return (found, false) };
        if crc32fast::hash(payload) != crc {
            return (found, false);
        }
        let Some(record) = read_record(payload) else { return (found, false) };
        if after.is_some_and(|last| record.lsn != last + 1) {
            // A frame from the segment's earlier use.
            return (found, true);
        }
        after = Some(record.lsn);
        found.push(record);
        rest = &rest[8 + len..];
    }
    (found, true)
}

fn io_error(what: &str, path: &Path, err: std::io::Error) -> StoreError {
    StoreError::Engine(format!("cannot {what} {}: {err}", path.display()))
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("read the log directory", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io_error("read the log directory", dir, e))?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("sync the log directory", dir, e))
}

/// Record that `tree` holds every batch through `lsn`: written after the
/// batches' keys, so a crash in between leaves the older LSN and replay
/// applies them again.
fn set_tree_lsn(tree: &sled::Tree, lsn: u64) -> Result<(), StoreError> {
    tree.insert(LSN_KEY, &lsn.to_be_bytes()).map(drop).map_err(engine)
}

fn tree_lsn(tree: &sled::Tree) -> Result<u64, StoreError> {
    Ok(tree.get(LSN_KEY).map_err(engine)?.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
}

/// Apply the memtable to sled once it holds this many versions.
const APPLY_VERSIONS: usize = 8192;

/// What the two sides of the log, and the journal's readers, share.
#[derive(Default)]
struct Shared {
    /// Writes not yet applied to sled; everyone reads them first.
    memtable: Mutex<Memtable>,
    /// Set when a sync or an application to sled failed: what the file or
    /// sled holds after that is unknown, so the log takes no more writes
    /// until the host restarts (and replays it).
    broken: Mutex<Option<String>>,
    /// Whether a [`SPARE`] segment is ready. Held while the file is
    /// renamed: the checkpoint thread makes the spare, the sync thread
    /// takes it.
    spare: Mutex<bool>,
    /// The checkpoint thread has been asked to apply the memtable.
    applying: AtomicBool,
    /// The application under way, for a settling caller to help with.
    round: Mutex<Option<Arc<Round>>>,
    /// The LSN of the last durable write: readers see no later one.
    synced: AtomicU64,
    /// sled holds every write through this LSN (the memtable was applied
    /// through it).
    applied: AtomicU64,
    /// Chores for the checkpoint thread, from the [`Log`] and from
    /// [`View::settle`]; let go when the `Log` is dropped, so that the
    /// thread ends.
    chores: Mutex<Option<mpsc::Sender<Chore>>>,
}

impl Shared {
    fn broken(&self) -> Result<(), StoreError> {
        match &*lock(&self.broken) {
            Some(reason) => Err(StoreError::Engine(reason.clone())),
            None => Ok(()),
        }
    }

    /// Hand `chore` to the checkpoint thread; false if it has stopped.
    fn chore(&self, chore: Chore) -> bool {
        lock(&self.chores).as_ref().is_some_and(|chores| chores.send(chore).is_ok())
    }

    /// Take no more writes, because of `err`; the error to answer with.
    fn fail(&self, err: &StoreError) -> StoreError {
        let reason = format!("{err}; the journal takes no more writes until the host restarts");
        *lock(&self.broken) = Some(reason.clone());
        StoreError::Engine(reason)
    }
}

/// How the journal's readers see a tree: the memtable over sled, durable
/// writes only (or, for the journal's own writes, every write).
#[derive(Clone)]
pub(crate) struct View {
    shared: Arc<Shared>,
    /// Sees writes not yet durable too.
    everything: bool,
}

impl View {
    fn upto(&self) -> u64 {
        if self.everything { u64::MAX } else { self.shared.synced.load(Ordering::Acquire) }
    }

    /// The newest value of `key` in `tree`.
    pub(crate) fn get(&self, tree: &sled::Tree, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        if let Some(value) = lock(&self.shared.memtable).get(&tree.name(), key, self.upto()) {
            return Ok(value);
        }
        tree.get(key).map_err(engine)
    }

    /// Wait until sled holds every write that was durable when called,
    /// asking the checkpoint thread to apply the memtable now rather than
    /// once it is full, and writing parts of the application under way
    /// meanwhile (see [`round`](super::round)) rather than sleeping.
    /// Benchmarks call it (through [`Store::settle`]) so that their figures
    /// include that work.
    ///
    /// [`Store::settle`]: crate::store::Store::settle
    pub(crate) fn settle(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        let target = shared.synced.load(Ordering::Acquire);
        loop {
            shared.broken()?;
            if shared.applied.load(Ordering::Acquire) >= target || lock(&shared.memtable).len() == 0 {
                return Ok(());
            }
            if !shared.applying.swap(true, Ordering::AcqRel) {
                let through = shared.synced.load(Ordering::Acquire);
                if !shared.chore(Chore::Apply(through)) {
                    shared.applying.store(false, Ordering::Release);
                    return Err(StoreError::Engine("the journal's checkpoint thread has stopped".into()));
                }
            }
            let round = lock(&shared.round).clone();
            match round {
                Some(round) => round.help(&shared.memtable),
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        }
    }

    /// Every key of `tree` starting with `prefix`, in order, with its
    /// newest value.
    pub(crate) fn scan_prefix(
        &self,
        tree: &sled::Tree,
        prefix: &[u8],
    ) -> Result<BTreeMap<Vec<u8>, sled::IVec>, StoreError> {
        let mut found = BTreeMap::new();
        for item in tree.scan_prefix(prefix) {
            let (key, value) = item.map_err(engine)?;
            found.insert(key.to_vec(), value);
        }
        lock(&self.shared.memtable).overlay_prefix(&tree.name(), prefix, self.upto(), &mut found);
        Ok(found)
    }
}

/// The writing side of the log, owned by the journal's committer thread:
/// it numbers and encodes writes, and lets later writes read them.
pub(crate) struct Wal {
    next_lsn: u64,
    shared: Arc<Shared>,
    /// What the committer's reads see: every write, durable or not.
    everything: View,
    pending: Written,
}

/// Writes encoded and not yet durable, on their way to [`Log::sync`].
#[derive(Default)]
pub(crate) struct Written {
    frames: Vec<u8>,
    /// The LSN of the last of them.
    last_lsn: u64,
}

/// The durable side of the log, owned by the journal's sync thread: it
/// appends what the committer wrote, syncs it, and now and then applies
/// what is durable to sled.
pub(crate) struct Log {
    dir: PathBuf,
    file: File,
    segment: u64,
    written: u64,
    /// Close the segment once this much is written ([`SEGMENT_BYTES`]).
    segment_bytes: u64,
    shared: Arc<Shared>,
}

/// What the checkpoint thread is asked to do, in order.
enum Chore {
    /// Apply the memtable to sled through this LSN.
    Apply(u64),
    /// Flush sled, then let go of the segments up to this one (see
    /// [`checkpoint`]).
    Checkpoint(u64),
    /// Zero-fill a [`SPARE`] segment, unless one is ready.
    Spare,
}

/// One journal write in progress on the committer thread. Its reads see
/// every earlier write, durable or not; its [`apply`](Txn::apply) is
/// durable once its group is synced.
pub(crate) struct Txn<'a> {
    /// The database (for its id generator).
    pub(crate) db: &'a sled::Db,
    tree: &'a sled::Tree,
    wal: &'a mut Wal,
}

impl<'a> Txn<'a> {
    /// A write to `tree` through `wal`.
    pub(crate) fn new(db: &'a sled::Db, tree: &'a sled::Tree, wal: &'a mut Wal) -> Self {
        Txn { db, tree, wal }
    }

    /// The value of `key` after every earlier write.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.wal.everything.get(self.tree, key)
    }

    /// Every key starting with `prefix`, in order, with its value after
    /// every earlier write.
    pub(crate) fn scan_prefix(&self, prefix: &[u8]) -> Result<BTreeMap<Vec<u8>, sled::IVec>, StoreError> {
        self.wal.everything.scan_prefix(self.tree, prefix)
    }

    /// Log `batch`; it is durable once its group is synced.
    pub(crate) fn apply(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.wal.append(self.tree, batch)
    }
}

/// What recovery found in the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Batches applied to sled because sled did not hold them yet.
    pub(crate) applied: usize,
    /// Batches sled already held.
    pub(crate) skipped: usize,
    /// Whether the log ended in a torn or corrupt frame.
    pub(crate) torn: bool,
}

impl Wal {
    /// Open the log in `dir` for `db`: replay what it holds into sled,
    /// checkpoint, and start a fresh segment.
    pub(crate) fn open(db: &sled::Db, dir: &Path) -> Result<(Wal, Log, Replayed), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("create the log directory", dir, e))?;
        let old = segments(dir)?;
        let mut replayed = Replayed::default();
        let mut lsns: HashMap<Vec<u8>, (sled::Tree, u64)> = HashMap::new();
        let mut last_lsn = 0;
        let mut previous = None;
        for (_, path) in &old {
            let data = std::fs::read(path).map_err(|e| io_error("read", path, e))?;
            let (found, clean) = records(&data, previous);
            previous = found.last().map(|record| record.lsn).or(previous);
            for record in found {
                if !lsns.contains_key(&record.tree) {
                    let tree = db.open_tree(&record.tree).map_err(engine)?;
                    let lsn = tree_lsn(&tree)?;
                    lsns.insert(record.tree.clone(), (tree, lsn));
                }
                let Some((tree, held)) = lsns.get_mut(&record.tree) else { continue };
                if record.lsn > *held {
                    record.batch.apply(tree, record.lsn)?;
                    *held = record.lsn;
                    replayed.applied += 1;
                } else {
                    replayed.skipped += 1;
                }
                last_lsn = last_lsn.max(record.lsn);
            }
            if !clean {
                // Only the newest segment can end in a torn write; what
                // follows a damaged frame cannot be trusted to apply.
                replayed.torn = true;
                break;
            }
        }
        for name in db.tree_names() {
            let tree = db.open_tree(&name).map_err(engine)?;
            last_lsn = last_lsn.max(tree_lsn(&tree)?);
        }
        db.flush().map_err(engine)?;
        let mut spare = dir.join(SPARE).exists();
        for (_, path) in old.iter().rev() {
            spare |= let_go(path, dir, !spare)?;
        }
        let segment = old.last().map_or(1, |(n, _)| n + 1);
        let shared = Arc::new(Shared {
            synced: AtomicU64::new(last_lsn),
            applied: AtomicU64::new(last_lsn),
            ..Shared::default()
        });
        // The first segment is a spare too: the one the last run left, its
        // last segment, or one zero-filled now (before the checkpoint
        // thread starts making the next). Appending to it instead cost
        // every fsync until the first checkpoint a second write, the
        // inode's.
        let zeroed = spare || spare_ready(dir, "first");
        let first = create_segment(dir, segment, zeroed)?;
        let chores = start_checkpoints(db.clone(), dir.to_owned(), shared.clone())?;
        *lock(&shared.chores) = Some(chores);
        let log = Log {
            dir: dir.to_owned(),
            file: first,
            segment,
            written: 0,
            segment_bytes: SEGMENT_BYTES,
            shared: shared.clone(),
        };
        let everything = View { shared: shared.clone(), everything: true };
        let wal = Wal { next_lsn: last_lsn + 1, shared, everything, pending: Written::default() };
        Ok((wal, log, replayed))
    }

    /// How the journal's readers see its trees: what is durable.
    pub(crate) fn view(&self) -> View {
        View { shared: self.shared.clone(), everything: false }
    }

    fn append(&mut self, tree: &sled::Tree, batch: Batch) -> Result<(), StoreError> {
        self.shared.broken()?;
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        batch.encode(lsn, &tree.name(), &mut self.pending.frames);
        self.pending.last_lsn = lsn;
        lock(&self.shared.memtable).insert(tree, lsn, &batch);
        Ok(())
    }

    /// The writes made since the last call, for [`Log::sync`].
    pub(crate) fn take(&mut self) -> Written {
        std::mem::take(&mut self.pending)
    }
}

impl Log {
    /// Make `written` durable (one write and one `fdatasync`); have what
    /// is durable applied to sled when the memtable is full; close the
    /// segment when it is full.
    pub(crate) fn sync(&mut self, written: &[Written]) -> Result<(), StoreError> {
        self.shared.broken()?;
        if written.iter().all(|w| w.frames.is_empty()) {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.segment);
        let mut outcome = self.file.seek(SeekFrom::Start(self.written)).map(drop);
        for part in written {
            outcome = outcome.and_then(|()| self.file.write_all(&part.frames));
            self.written += part.frames.len() as u64;
        }
        // The end mark: whatever a reused segment holds after it is not
        // read. The next write starts over it.
        let outcome = outcome.and_then(|()| self.file.write_all(&END_MARK)).map_err(|e| io_error("write to", &path, e));
        if let Err(err) = outcome.and_then(|()| self.file.sync_data().map_err(|e| io_error("sync", &path, e))) {
            return Err(self.shared.fail(&err));
        }
        let synced = written.iter().map(|w| w.last_lsn).fold(self.shared.synced.load(Ordering::Acquire), u64::max);
        self.shared.synced.store(synced, Ordering::Release);
        if self.written >= self.segment_bytes {
            self.close_segment(synced);
        } else if lock(&self.shared.memtable).len() >= APPLY_VERSIONS
            && !self.shared.applying.swap(true, Ordering::AcqRel)
        {
            let _ = self.shared.chore(Chore::Apply(synced));
        }
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        lock(&self.shared.chores).take();
    }
}

impl Log {
    /// Go on in a new segment; the checkpoint thread applies everything
    /// through `synced`, closed segment included, then flushes sled and
    /// keeps the segment as the next spare (or deletes it). The group is
    /// durable whatever happens here: if the next segment cannot be made,
    /// this one keeps growing.
    fn close_segment(&mut self, synced: u64) {
        let mut ready = lock(&self.shared.spare);
        let spare = std::mem::take(&mut *ready);
        let created = create_segment(&self.dir, self.segment + 1, spare);
        drop(ready);
        let file = match created {
            Ok(file) => file,
            Err(err) => {
                tracing::error!(%err, "cannot start the next log segment; the current one goes on");
                if spare {
                    let _ = self.shared.chore(Chore::Spare);
                }
                return;
            }
        };
        self.file = file;
        self.shared.applying.store(true, Ordering::Release);
        let _ = self.shared.chore(Chore::Apply(synced));
        let _ = self.shared.chore(Chore::Checkpoint(self.segment));
        if spare {
            let _ = self.shared.chore(Chore::Spare);
        }
        self.segment += 1;
        self.written = 0;
    }
}

/// Apply every write through LSN `through` (all durable) to sled: per key
/// its latest version up to there, then each tree's LSN. The round is
/// published in [`Shared`] while it runs, so that a caller of
/// [`View::settle`] waiting for it writes parts of it too.
fn apply_through(shared: &Shared, through: u64) -> Result<(), StoreError> {
    let round = Arc::new(Round::start(&shared.memtable, through));
    *lock(&shared.round) = Some(round.clone());
    round.help(&shared.memtable);
    let outcome = round.wait();
    lock(&shared.round).take();
    outcome?;
    for tree in round.trees() {
        set_tree_lsn(tree, through)?;
    }
    shared.applied.fetch_max(through, Ordering::AcqRel);
    Ok(())
}

fn create_segment(dir: &Path, number: u64, spare: bool) -> Result<File, StoreError> {
    let path = segment_path(dir, number);
    if spare {
        let from = dir.join(SPARE);
        std::fs::rename(&from, &path).map_err(|e| io_error("rename", &from, e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error("create", &path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The checkpoint thread: it applies the memtable to sled (off the sync
/// thread, so syncs go on meanwhile); once that covers a closed segment and
/// sled is flushed, every batch of the segment is in sled's own durable
/// state, so the segment can go (to be reused as the [`SPARE`]). It also
/// zero-fills a spare ahead of time when there is none to reuse.
fn start_checkpoints(db: sled::Db, dir: PathBuf, shared: Arc<Shared>) -> Result<mpsc::Sender<Chore>, StoreError> {
    let (chores, receiver) = mpsc::channel::<Chore>();
    let _ = chores.send(Chore::Spare);
    std::thread::Builder::new()
        .name("journal-ckpt".into())
        .spawn(move || {
            while let Ok(chore) = receiver.recv() {
                match chore {
                    Chore::Apply(through) => {
                        if let Err(err) = apply_through(&shared, through) {
                            let err = shared.fail(&err);
                            tracing::error!(%err, "cannot apply the journal to sled");
                        }
                        shared.applying.store(false, Ordering::Release);
                    }
                    // A journal that failed keeps its whole log for the replay.
                    Chore::Checkpoint(_) if shared.broken().is_err() => {}
                    Chore::Checkpoint(upto) => {
                        if let Err(err) = checkpoint(&db, &dir, upto, &shared) {
                            tracing::error!(%err, "journal checkpoint failed; the log is kept and replayed at the next start");
                        }
                    }
                    Chore::Spare => {
                        if !*lock(&shared.spare) && spare_ready(&dir, "next") {
                            *lock(&shared.spare) = true;
                        }
                    }
                }
            }
        })
        .map_err(|e| StoreError::Engine(format!("cannot start the journal's checkpoint thread: {e}")))?;
    Ok(chores)
}

/// Flush sled, then let go of the segments through `upto`: the newest
/// becomes the spare if none is ready, the others are deleted.
fn checkpoint(db: &sled::Db, dir: &Path, upto: u64, shared: &Shared) -> Result<(), StoreError> {
    db.flush().map_err(engine)?;
    let mut done: Vec<(u64, PathBuf)> = segments(dir)?.into_iter().filter(|(number, _)| *number <= upto).collect();
    if let Some((_, newest)) = done.pop() {
        let mut ready = lock(&shared.spare);
        *ready |= let_go(&newest, dir, !*ready)?;
    }
    for (_, path) in done {
        remove_segment(&path)?;
    }
    sync_dir(dir)
}

/// Let go of `segment`, which sled holds all of: make it the [`SPARE`]
/// when `keep`, else (or if that fails) delete it. Whether it became the
/// spare. The caller syncs the directory.
fn let_go(segment: &Path, dir: &Path, keep: bool) -> Result<bool, StoreError> {
    if keep {
        match reuse_as_spare(segment, dir) {
            Ok(()) => return Ok(true),
            Err(err) => tracing::warn!(%err, "cannot keep a log segment as the next one; it is deleted"),
        }
    }
    remove_segment(segment)?;
    Ok(false)
}

/// Make `segment`, which sled holds all of, the [`SPARE`]: zero its first
/// frame header (so that, used again, it reads as empty until written),
/// then rename it. The caller syncs the directory.
fn reuse_as_spare(segment: &Path, dir: &Path) -> Result<(), StoreError> {
    let mut file = OpenOptions::new().write(true).open(segment).map_err(|e| io_error("open", segment, e))?;
    file.write_all(&END_MARK).map_err(|e| io_error("write to", segment, e))?;
    file.sync_data().map_err(|e| io_error("sync", segment, e))?;
    let spare = dir.join(SPARE);
    std::fs::rename(segment, &spare).map_err(|e| io_error("rename", segment, e))
}

/// Delete a segment sled holds all of; one already gone is fine.
fn remove_segment(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("remove", path, e)),
        _ => Ok(()),
    }
}

/// [`prepare_spare`], or warn that the `which` (first or next) segment
/// will be appended to instead: whether a spare is ready.
fn spare_ready(dir: &Path, which: &str) -> bool {
    prepare_spare(dir)
        .inspect_err(|err| tracing::warn!(%err, "cannot zero-fill the {which} log segment; it will be appended to"))
        .is_ok()
}

/// Write [`SPARE`]: [`SEGMENT_BYTES`] of zeros, on disk.
fn prepare_spare(dir: &Path) -> Result<(), StoreError> {
    let temporary = dir.join("spare.tmp");
    let mut file = File::create(&temporary).map_err(|e| io_error("create", &temporary, e))?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
        file.write_all(&zeros).map_err(|e| io_error("write", &temporary, e))?;
    }
    file.sync_all().map_err(|e| io_error("sync", &temporary, e))?;
    let spare = dir.join(SPARE);
    std::fs::rename(&temporary, &spare).map_err(|e| io_error("rename", &temporary, e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::round::AT_ONCE;

    /// A new database with a `journal` tree, and its log.
    fn fresh() -> (tempfile::TempDir, sled::Db, sled::Tree, Wal, Log) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path().join("db")).open().expect("open");
        let tree = db.open_tree("journal").expect("tree");
        let (wal, log, _) = Wal::open(&db, &dir.path().join("wal")).expect("open log");
        (dir, db, tree, wal, log)
    }

    fn value(tree: &sled::Tree, key: &str) -> Option<String> {
        tree.get(key).expect("read").map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_dropped() {
        let mut out = Vec::new();
        Batch::of(&[("a", Some("1")), ("b", None)]).encode(7, b"journal", &mut out);
        let first = out.len();
        Batch::of(&[("c", Some(""))]).encode(8, b"tenant:x:journal", &mut out);
        let (found, clean) = records(&out, None);
        assert!(clean);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].lsn, found[0].tree.as_slice()), (7, b"journal".as_slice()));
        assert_eq!(found[0].batch.ops, vec![(b"a".to_vec(), Some(sled::IVec::from("1"))), (b"b".to_vec(), None)]);
        assert_eq!((found[1].lsn, found[1].tree.as_slice()), (8, b"tenant:x:journal".as_slice()));
        for cut in 1..out.len() {
            let (found, clean) = records(&out[..cut], None);
            assert_eq!(clean, cut == first, "cut at {cut}");
            assert_eq!(found.len(), usize::from(cut >= first), "cut at {cut}");
        }
        let mut zeroed = out.clone();
        zeroed.extend_from_slice(&[0; 4096]);
        assert_eq!(records(&zeroed, None).0.len(), 2, "a zero-filled tail is unwritten space");
        assert!(records(&zeroed, None).1);
        let mut flipped = out.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let (found, clean) = records(&flipped, None);
        assert_eq!((found.len(), clean), (1, false), "a corrupt frame ends the replay");
    }

    #[test]
    fn replay_restores_what_sled_lost_and_never_goes_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("wal");
        // What a crash leaves: sled holds batch 1 only (its LSN says so),
        // the log holds batches 1 and 2.
        {
            let db = sled::Config::new().path(dir.path().join("db")).open().expect("open");
            let tree = db.open_tree("journal").expect("tree");
            Batch::of(&[("m/1", Some("accepted")), ("i/1", Some("1"))]).apply(&tree, 1).expect("apply");
            db.flush().expect("flush");
            std::fs::create_dir_all(&log).expect("log dir");
            let mut frames = Vec::new();
            Batch::of(&[("m/1", Some("accepted")), ("i/1", Some("1"))]).encode(1, b"journal", &mut frames);
            Batch::of(&[("m/1", Some("routed")), ("i/1", None)]).encode(2, b"journal", &mut frames);
            std::fs::write(segment_path(&log, 3), &frames).expect("write log");
        }
        let db = sled::Config::new().path(dir.path().join("db")).open().expect("reopen");
        let (mut wal, mut synced, replayed) = Wal::open(&db, &log).expect("replay");
        assert_eq!(replayed, Replayed { applied: 1, skipped: 1, torn: false });
        let tree = db.open_tree("journal").expect("tree");
        assert_eq!(value(&tree, "m/1").as_deref(), Some("routed"));
        assert_eq!(value(&tree, "i/1"), None);
        assert_eq!(segments(&log).expect("segments").iter().map(|s| s.0).collect::<Vec<_>>(), vec![4]);
        // New writes continue the LSNs, and a later replay of them is a no-op
        // because sled holds them.
        let mut txn = Txn::new(&db, &tree, &mut wal);
        txn.apply(Batch::of(&[("m/2", Some("x")), ("m/1", None)])).expect("apply");
        assert_eq!(txn.get(b"m/2").expect("read").as_deref(), Some(b"x".as_slice()), "later writes see it");
        assert_eq!(txn.get(b"m/1").expect("read"), None);
        let view = wal.view();
        synced.sync(&[wal.take()]).expect("sync");
        assert_eq!(view.get(&tree, b"m/2").expect("read").as_deref(), Some(b"x".as_slice()), "readers see it");
        assert_eq!(view.scan_prefix(&tree, b"m/").expect("scan").len(), 1, "m/1 is gone, m/2 is there");
        assert_eq!(value(&tree, "m/2"), None, "sled gets it later, with others");
        // The host stops before sled got it: the log brings it back.
        drop((wal, synced));
        let (mut wal, mut synced, again) = Wal::open(&db, &log).expect("replay again");
        assert_eq!(again, Replayed { applied: 1, skipped: 0, torn: false });
        assert_eq!(value(&tree, "m/2").as_deref(), Some("x"));
        assert_eq!(value(&tree, "m/1"), None);
        assert_eq!(tree_lsn(&tree).expect("lsn"), 3);
        // Applied while running: sled holds it, with the tree's LSN.
        Txn::new(&db, &tree, &mut wal).apply(Batch::of(&[("m/3", Some("y"))])).expect("apply");
        synced.sync(&[wal.take()]).expect("sync");
        apply_through(&synced.shared, synced.shared.synced.load(Ordering::Acquire)).expect("apply");
        assert_eq!(value(&tree, "m/3").as_deref(), Some("y"));
        assert_eq!(tree_lsn(&tree).expect("lsn"), 4);
        assert_eq!(lock(&wal.shared.memtable).len(), 0, "applied writes leave the memtable");
        drop((wal, synced));
        let (_, _, last) = Wal::open(&db, &log).expect("replay");
        assert_eq!(last, Replayed { applied: 0, skipped: 1, torn: false });
    }

    #[test]
    fn an_application_in_parts_leaves_sled_as_of_its_lsn_and_later_writes_held() {
        let (_dir, db, tree, mut wal, mut synced) = fresh();
        // Several parts' worth of keys: each message key written with an
        // outbox key that is removed again before the application's LSN;
        // every other message key changed after it.
        let keys = AT_ONCE * 3 + 5;
        for i in 0..keys {
            let mut txn = Txn::new(&db, &tree, &mut wal);
            txn.apply(Batch::of(&[(&format!("m/{i:04}"), Some("first")), (&format!("o/{i:04}"), Some("queued"))]))
                .expect("apply");
            txn.apply(Batch::of(&[(&format!("o/{i:04}"), None)])).expect("apply");
        }
        synced.sync(&[wal.take()]).expect("sync");
        let through = synced.shared.synced.load(Ordering::Acquire);
        for i in (0..keys).step_by(2) {
            Txn::new(&db, &tree, &mut wal).apply(Batch::of(&[(&format!("m/{i:04}"), Some("later"))])).expect("apply");
        }
        apply_through(&synced.shared, through).expect("apply");
        for i in 0..keys {
            assert_eq!(value(&tree, &format!("m/{i:04}")).as_deref(), Some("first"), "key {i} as of the LSN");
            assert_eq!(value(&tree, &format!("o/{i:04}")), None, "key {i} was removed before the LSN");
        }
        assert_eq!(tree_lsn(&tree).expect("lsn"), through);
        let memtable = lock(&synced.shared.memtable);
        assert_eq!(memtable.len(), keys.div_ceil(2), "only the writes after the LSN are held");
        let left = memtable.trees().iter().map(|tree| memtable.due(tree, None, through, 1).len()).sum::<usize>();
        assert_eq!(left, 0, "nothing through the LSN is left to apply");
        assert_eq!(memtable.get(b"journal", b"m/0000", u64::MAX).flatten().as_deref(), Some(b"later".as_slice()));
        assert_eq!(memtable.get(b"journal", b"m/0001", u64::MAX), None, "read from sled");
    }

    #[test]
    fn settling_applies_what_is_durable_without_waiting_for_a_full_memtable() {
        let (_dir, db, tree, mut wal, mut synced) = fresh();
        let view = wal.view();
        view.settle().expect("nothing to settle");
        Txn::new(&db, &tree, &mut wal).apply(Batch::of(&[("m/1", Some("durable"))])).expect("apply");
        synced.sync(&[wal.take()]).expect("sync");
        Txn::new(&db, &tree, &mut wal).apply(Batch::of(&[("m/2", Some("not yet"))])).expect("apply");
        assert_eq!(value(&tree, "m/1"), None, "far fewer than APPLY_VERSIONS: held in the memtable");
        view.settle().expect("settle");
        assert_eq!(value(&tree, "m/1").as_deref(), Some("durable"));
        assert_eq!(value(&tree, "m/2"), None, "a write not yet durable stays out of sled");
        assert_eq!(lock(&wal.shared.memtable).len(), 1);
        // With the log gone, a settle with something durable to apply says
        // why it cannot (the write after the sync, as if it had been synced).
        drop(synced);
        view.shared.synced.fetch_add(1, Ordering::AcqRel);
        let err = view.settle().expect_err("the checkpoint thread is gone");
        assert!(err.to_string().contains("checkpoint thread has stopped"), "{err}");
    }

    #[test]
    fn full_segments_are_checkpointed_and_reused_as_the_next_spare() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("wal");
        let db = sled::Config::new().path(dir.path().join("db")).open().expect("open");
        let tree = db.open_tree("journal").expect("tree");
        let (mut wal, mut synced, _) = Wal::open(&db, &log).expect("open log");
        synced.segment_bytes = 4096;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let wait_until = |what: &str, done: &dyn Fn() -> bool| {
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what} never happened");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        wait_until("the spare's preparation", &|| *lock(&synced.shared.spare));
        let first = synced.segment;
        let size = |number: u64| std::fs::metadata(segment_path(&log, number)).expect("segment").len();
        assert_eq!(size(first), SEGMENT_BYTES, "the first segment is zero-filled too");
        let mut write = |key: &str, value: &str| {
            Txn::new(&db, &tree, &mut wal).apply(Batch::of(&[(key, Some(value))])).expect("apply");
            synced.sync(&[wal.take()]).expect("sync");
            synced.segment
        };
        let (old, new, newest) = ("v".repeat(200), "w".repeat(200), "x".repeat(200));
        let mut i = 0;
        while write(&format!("m/{i}"), &old) == first {
            i += 1;
        }
        assert_eq!(size(first + 1), SEGMENT_BYTES, "the second segment is the zero-filled spare");

        // The full segment, once in sled, is kept as the next spare: its
        // frames are still there, behind a zeroed first header.
        wait_until("the first segment's checkpoint", &|| {
            segments(&log).expect("segments").first().map(|s| s.0) != Some(first)
        });
        let spare = std::fs::read(log.join(SPARE)).expect("a spare");
        assert_eq!(spare.len() as u64, SEGMENT_BYTES);
        assert_eq!(spare[..8], END_MARK, "its first header is zeroed");
        assert!(spare[8..16] != END_MARK, "it is the used segment, not new zeros");

        // The log goes on in it; what it held before is never replayed.
        let mut j = 0;
        while write(&format!("m/{j}"), &new) == first + 1 {
            j += 1;
        }
        assert!(j > 3, "the second segment took several writes ({j})");
        assert_eq!(size(first + 2), SEGMENT_BYTES, "the third segment is the first one, reused");
        for k in 0..3 {
            write(&format!("m/{k}"), &newest);
        }
        // The checkpoint thread lets go of the second segment; a log opened
        // while it did would find it gone (one process opens it at a time).
        wait_until("the second segment's checkpoint", &|| {
            segments(&log).expect("segments").first().map(|s| s.0) == Some(first + 2)
        });
        // A crash loses sled's copy of the newest writes: replay brings them
        // back, and the reused segment's old frames after them stay unread.
        drop((wal, synced));
        tree.remove("m/0").expect("remove");
        tree.insert(LSN_KEY, &1u64.to_be_bytes()).expect("rewind the LSN");
        let (_, reopened, replayed) = Wal::open(&db, &log).expect("replay");
        assert!(!replayed.torn && replayed.applied > 0, "{replayed:?}");
        for k in 0..3 {
            assert_eq!(value(&tree, &format!("m/{k}")).as_deref(), Some(newest.as_str()), "m/{k}");
        }
        assert_eq!(value(&tree, "m/3").as_deref(), Some(new.as_str()));
        assert_eq!(size(reopened.segment), SEGMENT_BYTES, "the spare the last run left, or its last segment");
    }

    #[test]
    fn frames_left_from_a_segments_earlier_use_end_it_cleanly() {
        let frame = |lsn: u64, value: &str| {
            let mut out = Vec::new();
            Batch::of(&[("k", Some(value))]).encode(lsn, b"journal", &mut out);
            out
        };
        let earlier = [frame(1, "old-1"), frame(2, "old-2"), frame(3, "old-3")].concat();
        let lsns = |(found, clean): (Vec<Record>, bool)| (found.iter().map(|r| r.lsn).collect::<Vec<_>>(), clean);

        // Reused after LSN 6 and written once, with no end mark after it
        // (a crash between the two): frames 2 and 3 are the earlier use's.
        let mut reused = earlier.clone();
        let new = frame(7, "new-7");
        reused[..new.len()].copy_from_slice(&new);
        assert_eq!(lsns(records(&reused, Some(6))), (vec![7], true));
        assert_eq!(lsns(records(&reused, None)), (vec![7], true), "the first segment replayed, too");

        // Reused and not yet written: its zeroed first header ends it.
        let mut zeroed = earlier.clone();
        zeroed[..8].copy_from_slice(&END_MARK);
        assert_eq!(lsns(records(&zeroed, Some(6))), (vec![], true));

        // A frame that does not follow the last one ends a segment, however
        // it got there; one that does continues it.
        assert_eq!(lsns(records(&earlier, Some(0))), (vec![1, 2, 3], true));
        assert_eq!(lsns(records(&earlier, Some(5))), (vec![], true));
    }
}
