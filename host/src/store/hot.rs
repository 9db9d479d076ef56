//! Hot records kept decoded in memory: the connections and backends that
//! every routed message looks up (RapidSMS's `lookup_connections`, and the
//! message log's `contact_of`).
//!
//! Each lookup read sled and decoded JSON: 9% of the in-process router's
//! CPU. A [`RecordCache`] answers from memory once a record has been seen.
//! Every write of a cached tree goes through [`RecordCache::write`], which
//! holds the cache's lock while it writes sled, and a miss loads under the
//! same lock, so the cache never holds an older record than sled.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::StoreError;
use crate::sync::lock;

/// Most records one cache holds; past that it starts again empty.
const MAX_RECORDS: usize = 100_000;

/// Decoded records of sled trees, by tree name and key. One per database,
/// shared by every tenant's store.
pub(crate) struct RecordCache<T> {
    records: Mutex<HashMap<Vec<u8>, T>>,
}

impl<T> Default for RecordCache<T> {
    fn default() -> Self {
        RecordCache { records: Mutex::default() }
    }
}

/// The cache's key for `key` of `tree`: tree names hold no NUL.
fn cache_key(tree: &sled::Tree, key: &[u8]) -> Vec<u8> {
    let name = tree.name();
    let mut full = Vec::with_capacity(name.len() + 1 + key.len());
    full.extend_from_slice(&name);
    full.push(0);
    full.extend_from_slice(key);
    full
}

impl<T: Clone> RecordCache<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, T>> {
        lock(&self.records)
    }

    /// The record under `key` of `tree`: from memory, or else from `load`
    /// (kept when it finds one).
    pub(crate) fn get_or_load(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        load: impl FnOnce() -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let full = cache_key(tree, key);
        let mut records = self.lock();
        if let Some(record) = records.get(&full) {
            return Ok(Some(record.clone()));
        }
        let loaded = load()?;
        if let Some(record) = &loaded {
            keep(&mut records, full, record.clone());
        }
        Ok(loaded)
    }

    /// The record under `key` of `tree`: from memory, or else from
    /// `create` (which reads it from sled, or writes it there if it is
    /// missing), and kept.
    pub(crate) fn get_or_create(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        create: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let full = cache_key(tree, key);
        let mut records = self.lock();
        if let Some(record) = records.get(&full) {
            return Ok(record.clone());
        }
        let record = create()?;
        keep(&mut records, full, record.clone());
        Ok(record)
    }

    /// Write the record under `key` of `tree` with `write` (which returns
    /// what sled holds afterwards), and keep that.
    pub(crate) fn write(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        write: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let full = cache_key(tree, key);
        let mut records = self.lock();
        // Forget first: if the write fails, sled may or may not hold it.
        records.remove(&full);
        let stored = write()?;
        keep(&mut records, full, stored.clone());
        Ok(stored)
    }
}

fn keep<T>(records: &mut HashMap<Vec<u8>, T>, key: Vec<u8>, record: T) {
    if records.len() >= MAX_RECORDS {
        records.clear();
    }
    records.insert(key, record);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_once_and_keeps_what_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path()).open().expect("open sled");
        let (a, b) = (db.open_tree("a").expect("tree"), db.open_tree("b").expect("tree"));
        let cache = RecordCache::<String>::default();
        let mut loads = 0;
        for _ in 0..3 {
            let found = cache
                .get_or_load(&a, b"k", || {
                    loads += 1;
                    Ok(Some("from sled".to_owned()))
                })
                .expect("load");
            assert_eq!(found.as_deref(), Some("from sled"));
        }
        assert_eq!(loads, 1, "a record is loaded once");
        assert_eq!(cache.get_or_load(&b, b"k", || Ok(None)).expect("load"), None, "trees are apart");
        assert_eq!(cache.get_or_load(&b, b"k", || Ok(Some("b's".to_owned()))).expect("load").as_deref(), Some("b's"));

        let created = cache.get_or_create(&b, b"new", || Ok("created".to_owned())).expect("create");
        assert_eq!(created, "created");
        let again = cache.get_or_create(&b, b"new", || panic!("created twice")).expect("cached");
        assert_eq!(again, "created", "a created record is kept");

        cache.write(&a, b"k", || Ok("written".to_owned())).expect("write");
        assert_eq!(cache.get_or_load(&a, b"k", || Ok(None)).expect("cached").as_deref(), Some("written"));
        let failed = cache.write(&a, b"k", || Err(StoreError::Engine("disk full".into())));
        assert!(failed.is_err());
        assert_eq!(
            cache.get_or_load(&a, b"k", || Ok(Some("reloaded".to_owned()))).expect("load").as_deref(),
            Some("reloaded"),
            "a failed write is not kept"
        );
    }
}
