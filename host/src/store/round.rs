//! One application of the journal's memtable to sled, which whoever waits
//! for it helps with.
//!
//! The checkpoint thread applies the memtable on one thread, at normal
//! priority, so that it keeps up while routing keeps the other processors.
//! But a round of thousands of keys on one thread left processors idle: the
//! last third of a benchmark's window was that round alone, and under load
//! a tenth of the processors' time went unused. So a [`Round`] is cut into
//! parts of [`AT_ONCE`] keys of one tree, and parts are *taken*:
//!
//! - the checkpoint thread takes them one after another;
//! - the *helper* thread, at the lowest priority (it runs only when nothing
//!   else wants a processor), takes them too;
//! - a caller of [`Store::settle`](crate::store::Store::settle), waiting
//!   for sled to catch up, takes them rather than sleep.
//!
//! Parts hold disjoint keys, so they can be written to sled in any order;
//! the trees' LSNs are written only once every part is in. The round under
//! way is on a [`Rounds`] board for the others to find.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use super::StoreError;
use super::memtable::{Due, Memtable};
use super::wal::{lock, write};

/// Keys written to sled between two takings of the memtable's lock. The
/// committer needs that lock for every write, so it is held for about this
/// many keys' lookups at a time, never for a whole round's sled writes.
pub(crate) const AT_ONCE: usize = 64;

/// Where the round under way is published, for helpers to find.
#[derive(Default)]
pub(crate) struct Rounds {
    /// The round under way, and whether the journal is closed.
    slot: Mutex<(Option<Arc<Round>>, bool)>,
    posted: Condvar,
}

impl Rounds {
    /// Put `round` on the board and wake the helper.
    pub(crate) fn publish(&self, round: Arc<Round>) {
        lock(&self.slot).0 = Some(round);
        self.posted.notify_all();
    }

    /// Take the finished round off the board.
    pub(crate) fn clear(&self) {
        lock(&self.slot).0 = None;
    }

    /// The round under way, if any.
    pub(crate) fn current(&self) -> Option<Arc<Round>> {
        lock(&self.slot).0.clone()
    }

    /// The journal is gone: the helper ends.
    pub(crate) fn close(&self) {
        lock(&self.slot).1 = true;
        self.posted.notify_all();
    }

    /// Wait for a round other than `helped`; `None` once closed.
    fn next(&self, helped: &Weak<Round>) -> Option<Arc<Round>> {
        let mut slot = lock(&self.slot);
        loop {
            if slot.1 {
                return None;
            }
            if let Some(round) = slot.0.as_ref().filter(|round| !std::ptr::eq(Arc::as_ptr(round), helped.as_ptr())) {
                return Some(round.clone());
            }
            slot = self.posted.wait(slot).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Start the helper thread: at the lowest priority, it writes parts of
/// every round published on `rounds` until they are closed.
pub(crate) fn start_helper(
    rounds: Arc<Rounds>,
    memtable: Arc<Mutex<Memtable>>,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("journal-help".into())
        .spawn(move || {
            // Best effort: at normal priority it would still be correct,
            // only in routing's way.
            #[cfg(unix)]
            let _ = rustix::process::nice(19);
            let mut helped = Weak::new();
            while let Some(round) = rounds.next(&helped) {
                round.help(&memtable);
                helped = Arc::downgrade(&round);
            }
        })
        .map_err(|e| StoreError::Engine(format!("cannot start the journal's helper thread: {e}")))
}

/// Some keys of one tree, applied together.
struct Part {
    tree: sled::Tree,
    keys: Vec<Vec<u8>>,
}

/// An application of the memtable to sled through one LSN, in parts.
pub(crate) struct Round {
    through: u64,
    parts: Vec<Part>,
    /// Every tree with a part, once.
    trees: Vec<sled::Tree>,
    /// The next part to take.
    next: AtomicUsize,
    /// Parts written (or failed), and the first failure.
    finished: Mutex<(usize, Option<StoreError>)>,
    all_finished: Condvar,
}

impl Round {
    /// Take the batches at or before `through` off `memtable`, to apply
    /// them. The lock is held only to hand them over.
    pub(crate) fn start(memtable: &Mutex<Memtable>, through: u64) -> Round {
        let due = lock(memtable).due(through);
        let mut parts = Vec::new();
        let mut trees = Vec::new();
        for Due { tree, keys } in Due::group(due) {
            let mut keys = keys.into_iter().peekable();
            while keys.peek().is_some() {
                parts.push(Part { tree: tree.clone(), keys: keys.by_ref().take(AT_ONCE).collect() });
            }
            trees.push(tree);
        }
        Round {
            through,
            parts,
            trees,
            next: AtomicUsize::new(0),
            finished: Mutex::new((0, None)),
            all_finished: Condvar::new(),
        }
    }

    /// Every tree the round writes to.
    pub(crate) fn trees(&self) -> &[sled::Tree] {
        &self.trees
    }

    /// Take parts and write them to sled until none is left to take.
    pub(crate) fn help(&self, memtable: &Mutex<Memtable>) {
        while let Some(part) = self.parts.get(self.next.fetch_add(1, Ordering::AcqRel)) {
            let outcome = self.apply(memtable, part);
            let mut finished = lock(&self.finished);
            finished.0 += 1;
            if let Err(err) = outcome {
                finished.1.get_or_insert(err);
            }
            if finished.0 == self.parts.len() {
                self.all_finished.notify_all();
            }
            drop(finished);
            // A round is tens of milliseconds of sled inserts. Without a
            // pause, a routing thread or the committer woken meanwhile
            // waited for the scheduler to preempt this thread (milliseconds
            // on a busy machine); between parts, whoever is waiting runs.
            std::thread::yield_now();
        }
    }

    /// Wait until every part is written, parts others took included; the
    /// first failure, if any.
    pub(crate) fn wait(&self) -> Result<(), StoreError> {
        let mut finished = lock(&self.finished);
        while finished.0 < self.parts.len() {
            finished = self.all_finished.wait(finished).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        finished.1.take().map_or(Ok(()), Err)
    }

    /// Read the part's values as of the round's LSN, write them to sled,
    /// then drop them from the memtable: what is forgotten is in sled
    /// already, so readers see the same values either way.
    fn apply(&self, memtable: &Mutex<Memtable>, part: &Part) -> Result<(), StoreError> {
        let values = lock(memtable).latest(&part.tree, &part.keys, self.through);
        for (key, value) in part.keys.iter().zip(&values) {
            if let Some(value) = value {
                write(&part.tree, key, value.as_ref())?;
            }
        }
        lock(memtable).forget(&part.tree, &part.keys, self.through);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::wal::Batch;

    #[test]
    fn parts_taken_by_several_threads_leave_sled_as_of_the_round() {
        let db = sled::Config::new().temporary(true).open().expect("open");
        let (journal, other) = (db.open_tree("journal").expect("tree"), db.open_tree("other").expect("tree"));
        let memtable = Mutex::new(Memtable::default());
        let keys = AT_ONCE * 5 + 3;
        for i in 0..keys {
            let (key, value) = (format!("m/{i:04}"), format!("v{i}"));
            let mut table = lock(&memtable);
            table.insert(&journal, 1, &Batch::of(&[(key.as_str(), Some(value.as_str()))]));
            table.insert(&other, 1, &Batch::of(&[(key.as_str(), Some("other"))]));
        }
        lock(&memtable).insert(&journal, 2, &Batch::of(&[("m/0000", None), ("m/0001", Some("second"))]));
        lock(&memtable).insert(&journal, 3, &Batch::of(&[("m/0002", Some("after the round"))]));

        let round = Round::start(&memtable, 2);
        assert_eq!(round.trees().len(), 2);
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| round.help(&memtable));
            }
            round.help(&memtable);
        });
        round.wait().expect("every part written");

        let get = |tree: &sled::Tree, key: &str| tree.get(key).expect("get").map(|v| v.to_vec());
        assert_eq!(get(&journal, "m/0000"), None, "removed at LSN 2");
        assert_eq!(get(&journal, "m/0001"), Some(b"second".to_vec()));
        assert_eq!(get(&journal, "m/0002"), Some(b"v2".to_vec()), "as of LSN 2");
        assert_eq!(get(&journal, &format!("m/{:04}", keys - 1)), Some(format!("v{}", keys - 1).into_bytes()));
        assert_eq!(other.len(), keys, "the other tree's parts too");
        assert_eq!(journal.len(), keys - 1);
        assert_eq!(lock(&memtable).len(), 1, "only the write after the round is held");
    }

    #[test]
    fn the_helper_applies_a_published_round_alone_and_ends_when_closed() {
        let db = sled::Config::new().temporary(true).open().expect("open");
        let tree = db.open_tree("journal").expect("tree");
        let memtable = Arc::new(Mutex::new(Memtable::default()));
        for i in 0..AT_ONCE * 3 {
            let key = format!("m/{i:04}");
            lock(&memtable).insert(&tree, 1, &Batch::of(&[(key.as_str(), Some("v"))]));
        }
        let rounds = Arc::new(Rounds::default());
        let helper = start_helper(rounds.clone(), memtable.clone()).expect("helper");
        let round = Arc::new(Round::start(&memtable, 1));
        rounds.publish(round.clone());
        // Nobody else takes a part: waiting ends only if the helper wrote them all.
        round.wait().expect("every part written");
        rounds.clear();
        assert_eq!(tree.len(), AT_ONCE * 3);
        assert_eq!(lock(&memtable).len(), 0);
        rounds.close();
        helper.join().expect("the helper ends once closed");
    }
}
