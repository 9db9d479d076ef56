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

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::wal::Batch;

/// A key's versions, oldest first: (LSN, value; `None` for removed).
type Versions = Vec<(u64, Option<sled::IVec>)>;

/// The newest of `versions` written at or before LSN `upto`.
fn newest(versions: &Versions, upto: u64) -> Option<Option<sled::IVec>> {
    versions.iter().rev().find(|(lsn, _)| *lsn <= upto).map(|(_, value)| value.clone())
}

/// One tree's keys with versions in memory.
type TreeKeys = BTreeMap<Vec<u8>, Versions>;

/// The keys of one tree that an application through an LSN writes.
pub(crate) struct Due {
    /// The tree.
    pub(crate) tree: sled::Tree,
    /// Every key a batch at or before the LSN wrote, sorted, each once.
    pub(crate) keys: Vec<Vec<u8>>,
}

/// Every version of every journal key written and not yet applied to sled.
#[derive(Default)]
pub(crate) struct Memtable {
    trees: HashMap<sled::IVec, TreeKeys>,
    /// Batches not yet applied, in LSN order: their tree and keys.
    batches: VecDeque<(u64, sled::Tree, Vec<Vec<u8>>)>,
    /// Versions held.
    versions: usize,
}

impl Memtable {
    /// Hold the writes of `batch`, LSN `lsn`, to `tree`.
    pub(crate) fn insert(&mut self, tree: &sled::Tree, lsn: u64, batch: &Batch) {
        let name = tree.name();
        let held = self.trees.entry(name).or_default();
        let mut keys = Vec::with_capacity(batch.ops().len());
        for (key, value) in batch.ops() {
            let version = (lsn, value.clone());
            match held.get_mut(key.as_slice()) {
                Some(versions) => versions.push(version),
                None => {
                    held.insert(key.clone(), vec![version]);
                }
            }
            keys.push(key.clone());
        }
        self.versions += keys.len();
        self.batches.push_back((lsn, tree.clone(), keys));
    }

    /// How many versions are held.
    pub(crate) fn len(&self) -> usize {
        self.versions
    }

    /// The newest value, written at or before LSN `upto`, of `key` in tree
    /// `tree`, if the memtable holds one (`Some(None)`: removed).
    pub(crate) fn get(&self, tree: &[u8], key: &[u8], upto: u64) -> Option<Option<sled::IVec>> {
        let versions = self.trees.get(tree)?.get(key)?;
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
        for (key, versions) in held.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
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

    /// Take the batches at or before `through` off the list of batches
    /// to apply, and hand over each one's tree and keys. This only moves
    /// them, so the lock is held briefly; the caller groups and sorts them
    /// with [`Due::group`], then reads their values a part at a time with
    /// [`latest`](Memtable::latest), writes them to sled and
    /// [`forget`](Memtable::forget)s them.
    pub(crate) fn due(&mut self, through: u64) -> Vec<(sled::Tree, Vec<Vec<u8>>)> {
        let end = self.batches.partition_point(|(lsn, _, _)| *lsn <= through);
        self.batches.drain(..end).map(|(_, tree, keys)| (tree, keys)).collect()
    }

    /// The latest version at or before `through` of each of `keys` of
    /// `tree`: what sled must hold to equal the journal as of `through`
    /// (`None` for a key the memtable no longer holds).
    pub(crate) fn latest(&self, tree: &sled::Tree, keys: &[Vec<u8>], through: u64) -> Vec<Option<Option<sled::IVec>>> {
        let held = self.trees.get(&tree.name());
        keys.iter().map(|key| newest(held?.get(key)?, through)).collect()
    }

    /// Drop the versions at or before `through` of `keys` of `tree`, now
    /// applied to sled. Callers forget a [`Due`] a part at a time, letting
    /// go of the memtable's lock between parts: what is forgotten is in
    /// sled already, so readers see the same values either way.
    pub(crate) fn forget(&mut self, tree: &sled::Tree, keys: &[Vec<u8>], through: u64) {
        let name = tree.name();
        let Some(held) = self.trees.get_mut(&name) else { return };
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

impl Due {
    /// The batches [`Memtable::due`] handed over, per tree, with their
    /// keys sorted (sled is written in key order) and each once.
    pub(crate) fn group(batches: Vec<(sled::Tree, Vec<Vec<u8>>)>) -> Vec<Due> {
        let mut trees: HashMap<sled::IVec, Due> = HashMap::new();
        for (tree, keys) in batches {
            trees.entry(tree.name()).or_insert_with(|| Due { tree, keys: Vec::new() }).keys.extend(keys);
        }
        let mut due: Vec<Due> = trees.into_values().collect();
        for part in &mut due {
            part.keys.sort_unstable();
            part.keys.dedup();
        }
        due
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
        assert_eq!(memtable.len(), 8);
        assert_eq!(memtable.get(b"journal", b"m/1", u64::MAX).as_ref().map(text), Some(Some("later".into())));
        assert_eq!(memtable.get(b"journal", b"m/1", 2).as_ref().map(text), Some(Some("routed".into())));
        assert_eq!(memtable.get(b"journal", b"i/1", u64::MAX), Some(None), "removed");
        assert_eq!(memtable.get(b"journal", b"t/1", 2), None, "written after LSN 2");
        assert_eq!(memtable.get(b"journal", b"x", u64::MAX), None, "not held");

        let due = Due::group(memtable.due(3));
        assert_eq!(due.len(), 1);
        assert!(memtable.due(3).is_empty(), "the batches were handed over");
        let values = memtable.latest(&due[0].tree, &due[0].keys, 3);
        let writes: Vec<(String, Option<String>)> = due[0]
            .keys
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
        memtable.forget(&due[0].tree, &due[0].keys[..2], 3);
        assert_eq!(memtable.len(), 4, "forgotten a part at a time");
        memtable.forget(&due[0].tree, &due[0].keys[2..], 3);
        assert_eq!(memtable.len(), 1, "only the write after LSN 3 is left");
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
