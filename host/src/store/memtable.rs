//! Journal writes held in memory until they are applied to sled, many at
//! once.
//!
//! A message's journal keys live briefly: its inbox and outbox places are
//! inserted and removed, its transmission is written when queued and again
//! when sent, within milliseconds. Writing each of those to sled as it
//! happens cost more than routing the message. So the [`Memtable`] keeps
//! every version of every key written since the last application, and the
//! log's checkpoint thread applies them *through* an LSN `L` now and then
//! (see [`round`](super::round)): for each key, only its latest version at
//! or before `L` (what sled must hold to equal the journal as of `L`).
//! Versions after `L` (writes not yet durable) stay.
//!
//! Everyone who reads the journal reads the memtable first, then sled:
//! the journal's own writes every version, other readers only the durable
//! ones.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::wal::Batch;

/// A key's versions, oldest first: (LSN, value; `None` for removed).
type Versions = Vec<(u64, Option<sled::IVec>)>;

/// The newest of `versions` written at or before LSN `upto`.
fn newest(versions: &Versions, upto: u64) -> Option<Option<sled::IVec>> {
    versions.iter().rev().find(|(lsn, _)| *lsn <= upto).map(|(_, value)| value.clone())
}

/// One tree's keys with versions in memory, in key order.
type TreeKeys = BTreeMap<Vec<u8>, Versions>;

/// Some keys of one tree that an application through an LSN writes.
pub(crate) struct Due {
    /// The tree.
    pub(crate) tree: sled::Tree,
    /// Keys a batch at or before the LSN wrote, sorted, each once.
    pub(crate) keys: Vec<Vec<u8>>,
}

/// One tree's held keys, and the tree to apply them to.
struct Held {
    tree: sled::Tree,
    keys: TreeKeys,
}

/// Every version of every journal key written and not yet applied to sled.
#[derive(Default)]
pub(crate) struct Memtable {
    trees: HashMap<sled::IVec, Held>,
    /// Versions held.
    versions: usize,
}

impl Memtable {
    /// Hold the writes of `batch`, LSN `lsn`, to `tree`.
    pub(crate) fn insert(&mut self, tree: &sled::Tree, lsn: u64, batch: &Batch) {
        let held = &mut self
            .trees
            .entry(tree.name())
            .or_insert_with(|| Held { tree: tree.clone(), keys: TreeKeys::new() })
            .keys;
        for (key, value) in batch.ops() {
            let version = (lsn, value.clone());
            match held.get_mut(key.as_slice()) {
                Some(versions) => versions.push(version),
                None => {
                    held.insert(key.clone(), vec![version]);
                }
            }
        }
        self.versions += batch.ops().len();
    }

    /// How many versions are held.
    pub(crate) fn len(&self) -> usize {
        self.versions
    }

    /// The newest value, written at or before LSN `upto`, of `key` in tree
    /// `tree`, if the memtable holds one (`Some(None)`: removed).
    pub(crate) fn get(&self, tree: &[u8], key: &[u8], upto: u64) -> Option<Option<sled::IVec>> {
        let versions = self.trees.get(tree)?.keys.get(key)?;
        newest(versions, upto)
    }

    /// Lay the newest values, written at or before LSN `upto`, of tree
    /// `tree`'s keys starting with `prefix` over `found` (what sled holds
    /// under that prefix).
    pub(crate) fn overlay_prefix(
        &self,
        tree: &[u8],
        prefix: &[u8],
        upto: u64,
        found: &mut BTreeMap<Vec<u8>, sled::IVec>,
    ) {
        let Some(held) = self.trees.get(tree) else { return };
        for (key, versions) in held.keys.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            match newest(versions, upto) {
                Some(Some(value)) => {
                    found.insert(key.clone(), value);
                }
                Some(None) => {
                    found.remove(key);
                }
                None => {}
            }
        }
    }

    /// Every tree with keys held.
    pub(crate) fn trees(&self) -> Vec<sled::Tree> {
        self.trees.values().map(|held| held.tree.clone()).collect()
    }

    /// Up to `limit` keys of `tree`, in key order and after `after` (from
    /// the first if `None`), that a batch at or before `through` wrote: a
    /// stretch of what an application through `through` writes. The keys
    /// are held in order already, so a round gathers its keys a stretch
    /// at a time, letting go of the lock (which every journal write takes)
    /// between stretches, and sorts nothing. The caller reads their values
    /// a part at a time with [`latest`](Memtable::latest), writes them to
    /// sled and [`forget`](Memtable::forget)s them.
    pub(crate) fn due(&self, tree: &sled::Tree, after: Option<&[u8]>, through: u64, limit: usize) -> Vec<Vec<u8>> {
        let Some(held) = self.trees.get(&tree.name()) else { return Vec::new() };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        held.keys
            .range::<[u8], _>((from, Bound::Unbounded))
            .filter(|(_, versions)| versions.first().is_some_and(|(lsn, _)| *lsn <= through))
            .take(limit)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The latest version at or before `through` of each of `keys` of
    /// `tree`: what sled must hold to equal the journal as of `through`
    /// (`None` for a key the memtable no longer holds).
    pub(crate) fn latest(&self, tree: &sled::Tree, keys: &[Vec<u8>], through: u64) -> Vec<Option<Option<sled::IVec>>> {
        let held = self.trees.get(&tree.name());
        keys.iter().map(|key| newest(held?.keys.get(key)?, through)).collect()
    }

    /// Drop the versions at or before `through` of `keys` of `tree`, now
    /// applied to sled. Callers forget a [`Due`] a part at a time, letting
    /// go of the memtable's lock between parts: what is forgotten is in
    /// sled already, so readers see the same values either way.
    pub(crate) fn forget(&mut self, tree: &sled::Tree, keys: &[Vec<u8>], through: u64) {
        let name = tree.name();
        let Some(Held { keys: held, .. }) = self.trees.get_mut(&name) else { return };
        for key in keys {
            let Some(versions) = held.get_mut(key) else { continue };
            let before = versions.len();
            versions.retain(|(lsn, _)| *lsn > through);
            self.versions -= before - versions.len();
            if versions.is_empty() {
                held.remove(key);
            }
        }
        if held.is_empty() {
            self.trees.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &Option<sled::IVec>) -> Option<String> {
        value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn applies_each_key_once_at_its_latest_version_up_to_the_lsn() {
        let db = sled::Config::new().temporary(true).open().expect("open");
        let tree = db.open_tree("journal").expect("tree");
        let mut memtable = Memtable::default();
        memtable.insert(&tree, 1, &Batch::of(&[("m/1", Some("accepted")), ("i/1", Some("1"))]));
        memtable.insert(&tree, 2, &Batch::of(&[("m/1", Some("routed")), ("i/1", None), ("o/1", Some("t"))]));
        memtable.insert(&tree, 3, &Batch::of(&[("o/1", None), ("t/1", Some("sent"))]));
        memtable.insert(&tree, 4, &Batch::of(&[("m/1", Some("later"))]));
        memtable.insert(&tree, 5, &Batch::of(&[("a/1", Some("only after the LSN"))]));
        assert_eq!(memtable.len(), 9);
        assert_eq!(memtable.get(b"journal", b"m/1", u64::MAX).as_ref().map(text), Some(Some("later".into())));
        assert_eq!(memtable.get(b"journal", b"m/1", 2).as_ref().map(text), Some(Some("routed".into())));
        assert_eq!(memtable.get(b"journal", b"i/1", u64::MAX), Some(None), "removed");
        assert_eq!(memtable.get(b"journal", b"t/1", 2), None, "written after LSN 2");
        assert_eq!(memtable.get(b"journal", b"x", u64::MAX), None, "not held");

        assert_eq!(memtable.trees().len(), 1);
        let names = |keys: &[Vec<u8>]| keys.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>();
        let first = memtable.due(&tree, None, 3, 2);
        assert_eq!(names(&first), ["i/1", "m/1"], "in key order, a stretch at a time; a/1 came later");
        let rest = memtable.due(&tree, first.last().map(Vec::as_slice), 3, 10);
        assert_eq!(names(&rest), ["o/1", "t/1"]);
        let keys = [first, rest].concat();
        let values = memtable.latest(&tree, &keys, 3);
        let writes: Vec<(String, Option<String>)> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), text(v.as_ref().expect("held"))))
            .collect();
        assert_eq!(
            writes,
            vec![
                ("i/1".into(), None),
                ("m/1".into(), Some("routed".into())),
                ("o/1".into(), None),
                ("t/1".into(), Some("sent".into())),
            ],
            "the state as of LSN 3, one write per key"
        );
        memtable.forget(&tree, &keys[..2], 3);
        assert_eq!(memtable.len(), 5, "forgotten a part at a time");
        memtable.forget(&tree, &keys[2..], 3);
        assert_eq!(memtable.len(), 2, "only the writes after LSN 3 are left");
        assert!(memtable.due(&tree, None, 3, 10).is_empty(), "nothing through LSN 3 is left to apply");
        assert_eq!(memtable.get(b"journal", b"m/1", u64::MAX).as_ref().map(text), Some(Some("later".into())));
        assert_eq!(memtable.get(b"journal", b"t/1", u64::MAX), None);

        let mut found = BTreeMap::new();
        found.insert(b"m/0".to_vec(), sled::IVec::from("old"));
        found.insert(b"m/1".to_vec(), sled::IVec::from("routed"));
        memtable.overlay_prefix(b"journal", b"m/", 3, &mut found);
        assert_eq!(found.get(b"m/1".as_slice()).map(|v| v.to_vec()), Some(b"routed".to_vec()), "as of LSN 3");
        memtable.overlay_prefix(b"journal", b"m/", u64::MAX, &mut found);
        assert_eq!(found.get(b"m/1".as_slice()).map(|v| v.to_vec()), Some(b"later".to_vec()));
        assert_eq!(found.len(), 2);
    }
}
