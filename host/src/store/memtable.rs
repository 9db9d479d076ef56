//! Journal writes held in memory until they are applied to sled, many at
//! once.
//!
//! A message's journal keys live briefly: its inbox and outbox places are
//! inserted and removed, its transmission is written when queued and again
//! when sent, within milliseconds. Writing each of those to sled as it
//! happens cost more than routing the message. So the [`Memtable`] keeps
//! every version of every key written since the last application, and the
//! log's sync thread applies them *through* an LSN `L` now and then: for
//! each key, only its latest version at or before `L` (what sled must hold
//! to equal the journal as of `L`), and nothing for a key that was inserted
//! and removed. Versions after `L` (writes not yet durable) stay.
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
struct TreeKeys {
    tree: sled::Tree,
    keys: BTreeMap<Vec<u8>, Versions>,
}

/// What to write to one tree to apply the memtable through an LSN.
pub(crate) struct Due {
    /// The tree.
    pub(crate) tree: sled::Tree,
    /// Each key's latest version at or before the LSN.
    pub(crate) writes: Vec<(Vec<u8>, Option<sled::IVec>)>,
}

/// Every version of every journal key written and not yet applied to sled.
#[derive(Default)]
pub(crate) struct Memtable {
    trees: HashMap<sled::IVec, TreeKeys>,
    /// Batches not yet applied, in LSN order: their tree and keys.
    batches: VecDeque<(u64, sled::IVec, Vec<Vec<u8>>)>,
    /// Versions held.
    versions: usize,
}

impl Memtable {
    /// Hold the writes of `batch`, LSN `lsn`, to `tree`.
    pub(crate) fn insert(&mut self, tree: &sled::Tree, lsn: u64, batch: &Batch) {
        let name = tree.name();
        let held =
            self.trees.entry(name.clone()).or_insert_with(|| TreeKeys { tree: tree.clone(), keys: BTreeMap::new() });
        let mut keys = Vec::with_capacity(batch.ops().len());
        for (key, value) in batch.ops() {
            held.keys.entry(key.clone()).or_default().push((lsn, value.as_deref().map(sled::IVec::from)));
            keys.push(key.clone());
        }
        self.versions += keys.len();
        self.batches.push_back((lsn, name, keys));
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

    /// What to write to sled so that it holds the journal as of `through`:
    /// every key a batch at or before `through` wrote, at its latest
    /// version up to `through`. Those batches are no longer listed; call
    /// [`forget`](Memtable::forget) once the writes are done.
    pub(crate) fn due(&mut self, through: u64) -> Vec<Due> {
        let mut touched: HashMap<sled::IVec, Vec<Vec<u8>>> = HashMap::new();
        while self.batches.front().is_some_and(|(lsn, _, _)| *lsn <= through) {
            if let Some((_, tree, keys)) = self.batches.pop_front() {
                touched.entry(tree).or_default().extend(keys);
            }
        }
        let mut due = Vec::with_capacity(touched.len());
        for (name, mut keys) in touched {
            let Some(held) = self.trees.get(&name) else { continue };
            keys.sort();
            keys.dedup();
            let writes = keys
                .into_iter()
                .filter_map(|key| {
                    let versions = held.keys.get(&key)?;
                    let (_, value) = versions.iter().rev().find(|(lsn, _)| *lsn <= through)?;
                    let value = value.clone();
                    Some((key, value))
                })
                .collect();
            due.push(Due { tree: held.tree.clone(), writes });
        }
        due
    }

    /// Drop the versions at or before `through` of `keys` (some of the
    /// writes of a [`Due`] of `tree`, now applied). Callers may forget a
    /// `Due` a part at a time, letting go of the memtable's lock between
    /// parts: what is forgotten is in sled already, so readers see the same
    /// values either way.
    pub(crate) fn forget(&mut self, tree: &sled::Tree, keys: &[(Vec<u8>, Option<sled::IVec>)], through: u64) {
        let name = tree.name();
        let Some(held) = self.trees.get_mut(&name) else { return };
        for (key, _) in keys {
            let Some(versions) = held.keys.get_mut(key) else { continue };
            let before = versions.len();
            versions.retain(|(lsn, _)| *lsn > through);
            self.versions -= before - versions.len();
            if versions.is_empty() {
                held.keys.remove(key);
            }
        }
        if held.keys.is_empty() {
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
        assert_eq!(memtable.len(), 8);
        assert_eq!(memtable.get(b"journal", b"m/1", u64::MAX).as_ref().map(text), Some(Some("later".into())));
        assert_eq!(memtable.get(b"journal", b"m/1", 2).as_ref().map(text), Some(Some("routed".into())));
        assert_eq!(memtable.get(b"journal", b"i/1", u64::MAX), Some(None), "removed");
        assert_eq!(memtable.get(b"journal", b"t/1", 2), None, "written after LSN 2");
        assert_eq!(memtable.get(b"journal", b"x", u64::MAX), None, "not held");

        let due = memtable.due(3);
        assert_eq!(due.len(), 1);
        let writes: Vec<(String, Option<String>)> =
            due[0].writes.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), text(v))).collect();
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
        memtable.forget(&due[0].tree, &due[0].writes, 3);
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
