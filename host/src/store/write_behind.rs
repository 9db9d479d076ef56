//! Plugin data written behind: a plugin's `storage::set` or `delete`
//! returns once the write is held in memory, and one writer thread applies
//! what is held to sled, packed into [`Pages`], while plugins go on.
//!
//! Plugins write at the right edge of their key space (the message log
//! keys its entries by time). Routing threads writing there side by side
//! kept retrying each other's copies of the same sled nodes; one writer
//! applying whole rounds in key order does not collide with itself, and
//! rewrites each page a round touches once.
//!
//! - **Reads** look at the held writes first, then at sled. A write leaves
//!   memory only after sled has it, so a read never goes back in time: a
//!   plugin always reads what it wrote.
//! - **Rounds.** The writer takes everything held (each key once, at its
//!   latest value) and applies it page by page. After a crash, each key holds
//!   a value it had; the writes of the round in flight may be applied in
//!   part, as writes straight to sled could be.
//! - **Rounds gather.** Woken by a first write after it had nothing to
//!   do, the writer waits up to [`GATHER`] for more before it takes a round
//!   (unless [`GATHER_KEYS`] are held already, or someone waits for the
//!   writes to settle), and only a writer that has nothing to do is woken:
//!   rounds of a few keys each cost a wake-up per round, taken from the
//!   plugins' own threads.
//! - **Bounded.** At most [`MAX_HELD`] keys are held; a plugin that writes
//!   beyond waits for the writer to take them.
//! - **Failure.** If sled refuses a round, every later read or write of
//!   plugin data gets that error, as the data in memory and in sled no
//!   longer agree. A restart reopens sled.
//! - **Durability** is sled's, as before: [`WriteBehind::flush`] applies
//!   what is held and then flushes sled; otherwise sled writes to disk every
//!   500 ms.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use sled::IVec;

use super::StoreError;
use super::pages::{Lows, Pages, Writes};
use crate::sync::lock;

/// Most keys held in memory at once, across every tree.
pub(crate) const MAX_HELD: usize = 65_536;

/// How long the writer waits for more writes before it takes a round.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// Held keys that make a round worth taking at once.
const GATHER_KEYS: usize = 1024;

/// One map's writes not yet in sled.
struct TreeWrites {
    pages: Pages,
    /// Writes not yet taken by the writer.
    held: Writes,
    /// Writes the writer is applying now.
    applying: Arc<Writes>,
}

impl TreeWrites {
    /// The newest write of `key` held or being applied.
    fn get(&self, key: &[u8]) -> Option<&Option<IVec>> {
        self.held.get(key).or_else(|| self.applying.get(key))
    }
}

#[derive(Default)]
struct State {
    /// By tree name.
    trees: HashMap<IVec, TreeWrites>,
    /// Keys held, over every tree.
    held: usize,
    /// Rounds the writer has taken, and applied.
    taken: u64,
    applied: u64,
    /// Why sled refused a round, once it has.
    failed: Option<String>,
    stopping: bool,
    /// The writer waits for work and must be woken for it.
    idle: bool,
    /// Someone waits for the writes held to reach sled: take them now.
    urgent: bool,
    /// Tests hold the writer back to see writes while they are held.
    paused: bool,
}

impl State {
    fn check(&self) -> Result<(), StoreError> {
        match &self.failed {
            Some(why) => Err(StoreError::Engine(format!("plugin data could not be written to sled: {why}"))),
            None => Ok(()),
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when there is something to take, or the writer must stop.
    work: Condvar,
    /// Signalled when the writer has taken or applied a round.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// The writer of one sled database's plugin data, and the writes it holds.
/// Dropping it applies what is held and stops the writer.
pub(crate) struct WriteBehind {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl WriteBehind {
    /// Start the writer thread.
    pub(crate) fn start() -> Result<Self, StoreError> {
        let shared = Arc::new(Shared { state: Mutex::default(), work: Condvar::new(), progress: Condvar::new() });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("plugin-data".into())
                .spawn(move || write(&shared))
                .map_err(|e| StoreError::Engine(format!("cannot start the plugin data writer: {e}")))?
        };
        Ok(WriteBehind { shared, writer: Some(writer) })
    }

    /// Hold `value` (`None`: remove) for `key` of `pages`.
    pub(crate) fn put(&self, pages: &Pages, key: IVec, value: Option<IVec>) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        while state.held >= MAX_HELD && state.failed.is_none() {
            state = self.shared.progress.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.check()?;
        let writes = state.trees.entry(pages.name()).or_insert_with(|| TreeWrites {
            pages: pages.clone(),
            held: Writes::new(),
            applying: Arc::default(),
        });
        if writes.held.insert(key, value).is_none() {
            state.held += 1;
        }
        if state.idle {
            state.idle = false;
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// `key` of `pages`: from the writes held, or else from sled.
    pub(crate) fn get(&self, pages: &Pages, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        {
            let state = self.shared.lock();
            state.check()?;
            if let Some(value) = state.trees.get(&pages.name()).and_then(|w| w.get(key)) {
                return Ok(value.clone());
            }
        }
        pages.get(key)
    }

    /// Up to `limit` entries of `pages` from key `start` on whose keys
    /// start with `prefix`, in key order: the writes held laid over sled.
    pub(crate) fn scan(
        &self,
        pages: &Pages,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(IVec, IVec)>, StoreError> {
        // The held writes up to the `limit`-th live one: no key after it
        // can be in the answer, whether it is held or in sled.
        let mut held: Vec<(IVec, Option<IVec>)> = Vec::new();
        {
            let state = self.shared.lock();
            state.check()?;
            if let Some(writes) = state.trees.get(&pages.name()) {
                let newer = writes.held.range::<[u8], _>((Bound::Included(start), Bound::Unbounded));
                let older = writes.applying.range::<[u8], _>((Bound::Included(start), Bound::Unbounded));
                let mut live = 0;
                for (key, value) in merge_by_key(newer, older).take_while(|(k, _)| k.starts_with(prefix)) {
                    live += usize::from(value.is_some());
                    held.push((key.clone(), value.clone()));
                    if live == limit {
                        break;
                    }
                }
            }
        }
        let mut held = held.into_iter().peekable();
        let mut found = Vec::new();
        let mut stored = pages.entries_from(start)?;
        let mut next_stored = || -> Result<Option<(IVec, IVec)>, StoreError> {
            match stored.next().transpose()? {
                Some((key, value)) if key.starts_with(prefix) => Ok(Some((key, value))),
                _ => Ok(None),
            }
        };
        let mut from_sled = next_stored()?;
        while found.len() < limit {
            let take_held = match (held.peek(), &from_sled) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((h, _)), Some((s, _))) => h <= s,
            };
            if take_held {
                let Some((key, value)) = held.next() else { break };
                if from_sled.as_ref().is_some_and(|(s, _)| *s == key) {
                    from_sled = next_stored()?;
                }
                if let Some(value) = value {
                    found.push((key, value));
                }
            } else if let Some(entry) = from_sled.take() {
                found.push(entry);
                from_sled = next_stored()?;
            }
        }
        Ok(found)
    }

    /// Wait until every write held now is in sled (not necessarily on
    /// disk).
    pub(crate) fn settle(&self) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        let target = state.taken + u64::from(state.held > 0);
        if state.held > 0 {
            state.urgent = true;
            self.shared.work.notify_one();
        }
        while state.applied < target && state.failed.is_none() {
            state = self.shared.progress.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.check()
    }

    /// Apply every write held now to sled, then flush sled to disk.
    pub(crate) fn flush(&self, db: &sled::Db) -> Result<(), StoreError> {
        self.settle()?;
        db.flush().map_err(super::sled_store::engine)?;
        Ok(())
    }
}

#[cfg(test)]
impl WriteBehind {
    /// Hold the writer back (`true`) or let it go on.
    fn pause(&self, paused: bool) {
        self.shared.lock().paused = paused;
        self.shared.work.notify_one();
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_one();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the plugin data writer panicked; writes it held are lost");
        }
    }
}

/// Entries of two key-ordered iterators in key order; on equal keys, only
/// `newer`'s.
fn merge_by_key<'a>(
    newer: impl Iterator<Item = (&'a IVec, &'a Option<IVec>)>,
    older: impl Iterator<Item = (&'a IVec, &'a Option<IVec>)>,
) -> impl Iterator<Item = (&'a IVec, &'a Option<IVec>)> {
    let mut newer = newer.peekable();
    let mut older = older.peekable();
    std::iter::from_fn(move || match (newer.peek(), older.peek()) {
        (Some((n, _)), Some((o, _))) if o < n => older.next(),
        (Some((n, _)), Some((o, _))) if o == n => {
            older.next();
            newer.next()
        }
        (Some(_), _) => newer.next(),
        (None, _) => older.next(),
    })
}

/// The writer thread: take what is held, apply it, until told to stop with
/// nothing held.
fn write(shared: &Shared) {
    // Each map's pages, as this writer found and wrote them.
    let mut lows: HashMap<IVec, Lows> = HashMap::new();
    let mut state = shared.lock();
    loop {
        while (state.held == 0 || state.paused) && !state.stopping {
            state.idle = true;
            state = shared.work.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if state.held == 0 {
            return;
        }
        if state.held < GATHER_KEYS && !state.urgent && !state.stopping {
            state = shared.work.wait_timeout(state, GATHER).unwrap_or_else(PoisonError::into_inner).0;
            if state.paused && !state.stopping {
                continue;
            }
        }
        state.urgent = false;
        let mut round = Vec::new();
        for writes in state.trees.values_mut() {
            if !writes.held.is_empty() {
                writes.applying = Arc::new(std::mem::take(&mut writes.held));
                round.push((writes.pages.clone(), writes.applying.clone()));
            }
        }
        state.held = 0;
        state.taken += 1;
        shared.progress.notify_all();
        drop(state);

        // Page by page: an atomic `apply_batch` would write sled's log
        // buffer out twice per round and stop every other sled reader and
        // writer while it runs.
        let result =
            round.iter().try_for_each(|(pages, writes)| pages.apply(writes, lows.entry(pages.name()).or_default()));

        state = shared.lock();
        for (pages, _) in &round {
            if let Some(writes) = state.trees.get_mut(&pages.name()) {
                writes.applying = Arc::default();
            }
        }
        if let Err(err) = result {
            tracing::error!(%err, "sled refused plugin data; plugin storage is unavailable until a restart");
            state.failed = Some(err.to_string());
        }
        state.applied += 1;
        shared.progress.notify_all();
        if state.failed.is_some() && state.stopping {
            return;
        }
        // The round's writes are ours alone now: free them (thousands of
        // keys and values) without holding up the plugins that write.
        drop(state);
        drop(round);
        state = shared.lock();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn open() -> (tempfile::TempDir, sled::Db, Pages) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path()).open().expect("open sled");
        let tree = db.open_tree("t").expect("tree");
        (dir, db, Pages::new(tree))
    }

    /// What sled holds, without the writes held.
    fn stored(pages: &Pages) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let entries = pages.entries_from(b"").expect("scan");
        entries.map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec()))).collect::<Result<_, _>>().expect("entries")
    }

    fn keys(entries: &[(IVec, IVec)]) -> Vec<String> {
        entries.iter().map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))).collect()
    }

    #[test]
    fn reads_see_held_writes_over_sled_and_flush_applies_them() {
        let (_dir, db, pages) = open();
        let before = [("p/a", "old"), ("p/b", "gone soon"), ("p/d", "sled's"), ("q/a", "other prefix")];
        pages
            .apply(&before.iter().map(|(k, v)| (IVec::from(*k), Some(IVec::from(*v)))).collect(), &mut Lows::default())
            .expect("apply");
        let behind = WriteBehind::start().expect("start");
        behind.pause(true);
        behind.put(&pages, IVec::from("p/a"), Some(IVec::from("new"))).expect("put");
        behind.put(&pages, IVec::from("p/b"), None).expect("put");
        behind.put(&pages, IVec::from("p/c"), Some(IVec::from("held"))).expect("put");

        assert_eq!(behind.get(&pages, b"p/a").expect("get").as_deref(), Some(&b"new"[..]));
        assert_eq!(behind.get(&pages, b"p/b").expect("get"), None);
        let all = behind.scan(&pages, b"p/", b"p/", 10).expect("scan");
        assert_eq!(keys(&all), ["p/a=new", "p/c=held", "p/d=sled's"]);
        let two = behind.scan(&pages, b"p/", b"p/", 2).expect("scan");
        assert_eq!(keys(&two), ["p/a=new", "p/c=held"]);
        let after_a = behind.scan(&pages, b"p/a\0", b"p/", 10).expect("scan");
        assert_eq!(keys(&after_a), ["p/c=held", "p/d=sled's"]);

        assert_eq!(pages.get(b"p/a").expect("get").as_deref(), Some(&b"old"[..]), "still held");
        behind.pause(false);
        behind.flush(&db).expect("flush");
        assert_eq!(pages.get(b"p/a").expect("get").as_deref(), Some(&b"new"[..]));
        assert_eq!(pages.get(b"p/b").expect("get"), None);
        assert_eq!(pages.get(b"p/c").expect("get").as_deref(), Some(&b"held"[..]));
        assert_eq!(keys(&behind.scan(&pages, b"p/", b"p/", 10).expect("scan")), keys(&all));
    }

    #[test]
    fn reads_agree_with_a_plain_map_whatever_the_writer_has_applied() {
        let (_dir, db, pages) = open();
        let behind = WriteBehind::start().expect("start");
        let mut model = BTreeMap::<Vec<u8>, Vec<u8>>::new();
        let mut rng = fastrand::Rng::with_seed(7);
        let key =
            |rng: &mut fastrand::Rng| format!("{}/{:02}", ["a", "ab", "b"][rng.usize(..3)], rng.u8(..40)).into_bytes();
        for step in 0..3000 {
            // Pause and resume now and then, so reads meet writes held,
            // being applied and in sled.
            if step % 97 == 0 {
                behind.pause(rng.bool());
            }
            let k = key(&mut rng);
            if rng.u8(..4) == 0 {
                behind.put(&pages, IVec::from(k.as_slice()), None).expect("remove");
                model.remove(&k);
            } else {
                let v = format!("{step}").into_bytes();
                behind.put(&pages, IVec::from(k.as_slice()), Some(IVec::from(v.as_slice()))).expect("set");
                model.insert(k, v);
            }
            let probe = key(&mut rng);
            assert_eq!(behind.get(&pages, &probe).expect("get").map(|v| v.to_vec()), model.get(&probe).cloned());
            let prefix: &[u8] = [&b"a"[..], b"ab/", b"b/", b""][rng.usize(..4)];
            let start = if rng.bool() { probe.clone() } else { prefix.to_vec() };
            let start = start.max(prefix.to_vec());
            let limit = rng.usize(1..12);
            let expected: Vec<(Vec<u8>, Vec<u8>)> = model
                .range(start.clone()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let scanned: Vec<(Vec<u8>, Vec<u8>)> = behind
                .scan(&pages, &start, prefix, limit)
                .expect("scan")
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            assert_eq!(scanned, expected, "step {step}: scan from {start:?} under {prefix:?}, limit {limit}");
        }
        behind.pause(false);
        behind.flush(&db).expect("flush");
        assert_eq!(stored(&pages), model, "sled ends up holding exactly the writes");
    }

    #[test]
    fn a_write_reaches_sled_on_its_own_after_the_writer_was_idle() {
        let (_dir, _db, pages) = open();
        let behind = WriteBehind::start().expect("start");
        for (i, key) in ["p/first", "p/second"].into_iter().enumerate() {
            // Each write finds the writer idle (the first never ran).
            behind.put(&pages, key.into(), Some("v".into())).expect("put");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while pages.get(key.as_bytes()).expect("get").is_none() {
                assert!(std::time::Instant::now() < deadline, "write {i} never reached sled");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let rounds = behind.shared.lock().applied;
        assert_eq!(rounds, 2, "one round each, taken without a settle or flush");
    }

    #[test]
    fn dropping_applies_what_is_held_and_many_writers_lose_nothing() {
        let (_dir, _db, pages) = open();
        let behind = Arc::new(WriteBehind::start().expect("start"));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (behind, pages) = (behind.clone(), pages.clone());
                std::thread::spawn(move || {
                    for i in 0..(MAX_HELD / 2) {
                        let key = IVec::from(format!("k/{t}/{i:06}").as_bytes());
                        behind.put(&pages, key.clone(), Some(key)).expect("put");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread");
        }
        drop(Arc::into_inner(behind).expect("one owner left"));
        let stored = stored(&pages);
        assert_eq!(stored.len(), 4 * (MAX_HELD / 2), "every write reached sled");
        assert_eq!(stored.get(&b"k/3/000007"[..]).map(Vec::as_slice), Some(&b"k/3/000007"[..]));
    }
}
