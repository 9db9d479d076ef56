//! One application of the journal's memtable to sled, which whoever waits
//! for it helps with.
//!
//! The checkpoint thread applies the memtable in the background, on one
//! thread, so that routing keeps the other processors. But when a caller
//! of [`Store::settle`](crate::store::Store::settle) waits for sled to
//! catch up, a round of thousands of keys on one thread left the other
//! processors idle: measured under load, a third of a benchmark's window
//! was that tail. So a [`Round`] is cut into parts of [`AT_ONCE`] keys of
//! one tree, and parts are *taken*: the checkpoint thread takes them one
//! after another, and a settling caller, instead of sleeping, takes them
//! too. Parts hold disjoint keys, so they can be written to sled in any
//! order; the trees' LSNs are written only once every part is in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use super::StoreError;
use super::memtable::{Due, Memtable};
use super::wal::write;
use crate::sync::lock;

/// Keys written to sled between two takings of the memtable's lock. The
/// committer needs that lock for every write, so it is held for about this
/// many keys' lookups at a time, never for a whole round's sled writes.
pub(crate) const AT_ONCE: usize = 64;

/// An application of the memtable to sled through one LSN, in parts.
pub(crate) struct Round {
    through: u64,
    /// At most [`AT_ONCE`] keys of one tree each, applied together.
    parts: Vec<Due>,
    /// Every tree with a part, once.
    trees: Vec<sled::Tree>,
    /// The next part to take.
    next: AtomicUsize,
    /// Parts written (or failed), and the first failure.
    finished: Mutex<(usize, Option<StoreError>)>,
    all_finished: Condvar,
}

impl Round {
    /// Gather what applying `memtable` through `through` writes, a part
    /// at a time: the memtable holds its keys in order, and its lock is
    /// let go between parts.
    pub(crate) fn start(memtable: &Mutex<Memtable>, through: u64) -> Round {
        let held = lock(memtable).trees();
        let mut parts = Vec::new();
        let mut trees = Vec::new();
        for tree in held {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let keys = lock(memtable).due(&tree, after.as_deref(), through, AT_ONCE);
                let Some(last) = keys.last() else { break };
                after = Some(last.clone());
                parts.push(Due { tree: tree.clone(), keys });
            }
            if after.is_some() {
                trees.push(tree);
            }
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

    /// Take parts and write them to sled until none is left to take. Once
    /// a part has failed, the parts taken after it are counted but not
    /// written: the journal takes no more writes then, and its log is
    /// replayed at the next start.
    pub(crate) fn help(&self, memtable: &Mutex<Memtable>) {
        while let Some(part) = self.parts.get(self.next.fetch_add(1, Ordering::AcqRel)) {
            let failed = lock(&self.finished).1.is_some();
            let outcome = if failed { Ok(()) } else { self.apply(memtable, part) };
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
    fn apply(&self, memtable: &Mutex<Memtable>, part: &Due) -> Result<(), StoreError> {
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
        let later = db.open_tree("later").expect("tree");
        lock(&memtable).insert(&later, 3, &Batch::of(&[("m/0000", Some("after the round"))]));

        let round = Round::start(&memtable, 2);
        assert_eq!(round.trees().len(), 2, "a tree written only after the round is not in it");
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
        assert_eq!(lock(&memtable).len(), 2, "only the writes after the round are held");
        assert!(later.is_empty());
    }
}
