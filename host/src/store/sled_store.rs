//! [`Store`] on sled: one tree per kind of record, JSON values.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::hot::RecordCache;
use super::journal::{Committer, Journal};
use super::pages::Pages;
use super::write_behind::WriteBehind;

use super::{BackendRecord, ConnectionRecord, Store, StoreError, check_name, now_ms};
use crate::messages::{Connection, Contact, generate_id};
use crate::sync::lock;

/// A [`Store`] in a sled database directory: the default tenant's trees,
/// or with [`tenant`](SledStore::tenant), another tenant's.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// What every tenant's store of this database shares.
    shared: Arc<PerDatabase>,
    /// Prefix of this tenant's tree names (empty for the default tenant).
    prefix: String,
    backends: sled::Tree,
    connections: sled::Tree,
    contacts: sled::Tree,
    /// Plugin data, packed into pages (tree `plugin-pages`).
    plugin_data: Pages,
}

/// One per database, shared by every tenant's store.
struct PerDatabase {
    /// The journals' write-ahead log directory (`wal` in the database's).
    log: PathBuf,
    /// The journals' committer, started by the first journal opened.
    committer: Mutex<Option<Committer>>,
    /// The writer of plugin data.
    behind: WriteBehind,
    /// Held while a tenant's plugin data is moved into pages.
    adopting: Mutex<()>,
    /// Connections and backends, decoded.
    hot_connections: RecordCache<ConnectionRecord>,
    hot_backends: RecordCache<BackendRecord>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

/// A sled error as a store error.
pub(super) fn engine(err: sled::Error) -> StoreError {
    StoreError::Engine(err.to_string())
}

/// A record as stored: JSON.
pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Engine(format!("cannot encode a record: {e}")))
}

/// A stored record read back; `key` names it in the error.
pub(super) fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason: e.to_string() })
}

/// `a NUL b`: NUL cannot occur in names, so keys of different pairs never
/// collide and every key of `a` shares the prefix `a NUL`.
fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + b.len() + 1);
    key.extend_from_slice(a.as_bytes());
    key.push(0);
    key.extend_from_slice(b.as_bytes());
    key
}

impl SledStore {
    /// Open (or create) the database in directory `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(path).open().map_err(|err| match err {
            // sled wraps the failed `flock` in an error of its own kind.
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked { path: path.display().to_string() }
            }
            other => StoreError::Engine(format!("cannot open {}: {other}", path.display())),
        })?;
        let shared = PerDatabase {
            log: path.join("wal"),
            committer: Mutex::default(),
            behind: WriteBehind::start()?,
            adopting: Mutex::default(),
            hot_connections: RecordCache::default(),
            hot_backends: RecordCache::default(),
        };
        Self::with_prefix(db, Arc::new(shared), String::new())
    }

    fn with_prefix(db: sled::Db, shared: Arc<PerDatabase>, prefix: String) -> Result<Self, StoreError> {
        let tree = |name: &str| db.open_tree(format!("{prefix}{name}")).map_err(engine);
        let unpaged = format!("{prefix}plugin-data");
        let store = SledStore {
            backends: tree("backends")?,
            connections: tree("connections")?,
            contacts: tree("contacts")?,
            plugin_data: Pages::new(tree("plugin-pages")?),
            db,
            shared,
            prefix,
        };
        store.adopt_unpaged_plugin_data(&unpaged)?;
        Ok(store)
    }

    /// Move plugin data stored by versions before pages (one sled key per
    /// entry, in tree `old`) into pages, then drop `old`. Pages are flushed
    /// to disk before `old` is dropped, so a crash in between only means
    /// doing it again: nothing has written plugin data since.
    fn adopt_unpaged_plugin_data(&self, old: &str) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.shared.adopting);
        if !self.db.tree_names().iter().any(|name| name == old.as_bytes()) {
            return Ok(());
        }
        let tree = self.db.open_tree(old).map_err(engine)?;
        let mut moved = 0usize;
        for entry in tree.iter() {
            let (key, value) = entry.map_err(engine)?;
            self.shared.behind.put(&self.plugin_data, key, Some(value))?;
            moved += 1;
        }
        self.shared.behind.flush(&self.db)?;
        drop(tree);
        self.db.drop_tree(old).map_err(engine)?;
        self.db.flush().map_err(engine)?;
        tracing::info!(entries = moved, tree = old, "moved plugin data into pages");
        Ok(())
    }

    /// The store of tenant `name`, in the same database: trees of its own
    /// (`tenant:NAME:connections`, ...), so nothing of one tenant is
    /// reachable through another's store. The default tenant's is `self`.
    pub fn tenant(&self, name: &str) -> Result<SledStore, StoreError> {
        if name == crate::config::DEFAULT_TENANT {
            return Ok(self.clone());
        }
        check_name("tenant name", name)?;
        Self::with_prefix(self.db.clone(), self.shared.clone(), format!("tenant:{name}:"))
    }

    /// This tenant's durable router journal. Every journal of the database
    /// shares one committer thread, so one fsync serves all tenants.
    pub fn journal(&self) -> Result<Journal, StoreError> {
        let committer = {
            let mut slot = lock(&self.shared.committer);
            match &*slot {
                Some(committer) => committer.clone(),
                None => slot.insert(Committer::start(&self.db, &self.shared.log)?).clone(),
            }
        };
        Journal::open(&self.db, &format!("{}journal", self.prefix), committer)
    }

    /// Insert `value` under `key` unless the key exists; either way return
    /// what is stored now.
    fn get_or_insert<T>(&self, tree: &sled::Tree, key: &[u8], value: T) -> Result<T, StoreError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        if let Some(existing) = tree.get(key).map_err(engine)? {
            return decode(key, &existing);
        }
        let bytes = encode(&value)?;
        match tree.compare_and_swap(key, None as Option<&[u8]>, Some(bytes)).map_err(engine)? {
            Ok(()) => Ok(value),
            Err(race) => match race.current {
                Some(current) => decode(key, &current),
                None => Err(StoreError::Engine("a record vanished while it was being created".into())),
            },
        }
    }

    fn get_or_create_connection(&self, connection: &Connection, now: u64) -> Result<ConnectionRecord, StoreError> {
        let key = pair_key(&connection.backend, &connection.identity);
        self.shared.hot_connections.get_or_create(&self.connections, &key, || {
            let record = ConnectionRecord {
                connection: connection.clone(),
                contact_id: None,
                created_on: now,
                modified_on: now,
            };
            self.get_or_insert(&self.connections, &key, record)
        })
    }
}

impl Store for SledStore {
    fn ensure_backend(&self, name: &str) -> Result<BackendRecord, StoreError> {
        check_name("backend name", name)?;
        self.shared.hot_backends.get_or_create(&self.backends, name.as_bytes(), || {
            let record = BackendRecord { name: name.to_owned(), created_on: now_ms() };
            self.get_or_insert(&self.backends, name.as_bytes(), record)
        })
    }

    fn backends(&self) -> Result<Vec<BackendRecord>, StoreError> {
        self.backends
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(engine)?;
                decode(&key, &value)
            })
            .collect()
    }

    fn lookup_connections(&self, backend: &str, identities: &[String]) -> Result<Vec<ConnectionRecord>, StoreError> {
        check_name("backend name", backend)?;
        for identity in identities {
            check_name("identity", identity)?;
        }
        self.ensure_backend(backend)?;
        let now = now_ms();
        identities
            .iter()
            .map(|identity| self.get_or_create_connection(&Connection::new(backend, identity.as_str()), now))
            .collect()
    }

    fn connection(&self, connection: &Connection) -> Result<Option<ConnectionRecord>, StoreError> {
        let key = pair_key(&connection.backend, &connection.identity);
        self.shared.hot_connections.get_or_load(&self.connections, &key, || {
            match self.connections.get(&key).map_err(engine)? {
                Some(bytes) => decode(&key, &bytes).map(Some),
                None => Ok(None),
            }
        })
    }

    fn create_contact(&self, name: &str, language: &str) -> Result<Contact, StoreError> {
        if name.chars().count() > 100 {
            return Err(StoreError::Invalid { what: "contact name", reason: "is longer than 100 characters".into() });
        }
        if language.chars().count() > 6 {
            return Err(StoreError::Invalid {
                what: "language",
                reason: format!("{language:?} is longer than 6 characters"),
            });
        }
        let contact = Contact { id: generate_id(), name: name.to_owned(), language: language.to_owned() };
        self.contacts.insert(contact.id.as_bytes(), encode(&contact)?).map_err(engine)?;
        Ok(contact)
    }

    fn contact(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        match self.contacts.get(id.as_bytes()).map_err(engine)? {
            Some(bytes) => decode(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn link_contact(&self, connection: &Connection, contact_id: Option<&str>) -> Result<ConnectionRecord, StoreError> {
        if let Some(id) = contact_id
            && self.contact(id)?.is_none()
        {
            return Err(StoreError::NotFound { what: "contact", id: id.to_owned() });
        }
        let mut record =
            self.lookup_connections(&connection.backend, std::slice::from_ref(&connection.identity))?.remove(0);
        record.contact_id = contact_id.map(str::to_owned);
        record.modified_on = now_ms();
        let key = pair_key(&connection.backend, &connection.identity);
        self.shared.hot_connections.write(&self.connections, &key, || {
            self.connections.insert(key.as_slice(), encode(&record)?).map_err(engine)?;
            Ok(record)
        })
    }

    fn plugin_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_name("plugin key", key)?;
        Ok(self.shared.behind.get(&self.plugin_data, &pair_key(plugin, key))?.map(|v| v.to_vec()))
    }

    fn plugin_set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_name("plugin key", key)?;
        self.shared.behind.put(&self.plugin_data, pair_key(plugin, key).into(), Some(value.into()))
    }

    fn plugin_delete(&self, plugin: &str, key: &str) -> Result<(), StoreError> {
        check_name("plugin key", key)?;
        self.shared.behind.put(&self.plugin_data, pair_key(plugin, key).into(), None)
    }

    fn plugin_scan(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let namespace_len = plugin.len() + 1;
        let full_prefix = pair_key(plugin, prefix);
        let start = match start_after {
            // The smallest key after `start_after`: itself followed by NUL.
            Some(after) => {
                let mut k = pair_key(plugin, after);
                k.push(0);
                k.max(full_prefix.clone())
            }
            None => full_prefix.clone(),
        };
        let entries = self.shared.behind.scan(&self.plugin_data, &start, &full_prefix, limit)?;
        Ok(entries
            .into_iter()
            .map(|(key, value)| (String::from_utf8_lossy(&key[namespace_len..]).into_owned(), value.to_vec()))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.shared.behind.flush(&self.db)
    }

    fn settle(&self) -> Result<(), StoreError> {
        let committer = lock(&self.shared.committer).clone();
        if let Some(committer) = committer {
            committer.settle()?;
        }
        self.shared.behind.settle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("open store");
        (dir, store)
    }

    #[test]
    fn passes_the_store_conformance_suite() {
        let (_dir, store) = open();
        crate::store::conformance::check(&store);
        crate::store::conformance::check(&store.tenant("acme").expect("tenant"));
    }

    #[test]
    fn tenants_have_trees_of_their_own() {
        let (_dir, store) = open();
        let acme = store.tenant("acme").expect("acme");
        let globex = store.tenant("globex").expect("globex");
        acme.plugin_set("echo", "k", b"acme's").expect("set");
        acme.lookup_connections("sms", &["1".into()]).expect("lookup");
        let contact = acme.create_contact("Asha", "sw").expect("contact");
        assert_eq!(globex.plugin_get("echo", "k").expect("get"), None);
        assert_eq!(store.plugin_get("echo", "k").expect("get"), None);
        assert!(globex.backends().expect("backends").is_empty());
        assert!(globex.contact(&contact.id).expect("contact").is_none());
        assert_eq!(
            store.tenant("acme").expect("again").plugin_get("echo", "k").expect("get"),
            Some(b"acme's".to_vec())
        );
        assert!(store.tenant("a\0b").is_err(), "tenant names are checked");
    }

    /// Open the store at `path` again once sled lets go of its lock file:
    /// when its own threads are done with the last writes, a moment after
    /// the drop (as `TestHost` waits for a host stopped a moment ago).
    fn reopen(path: &Path) -> SledStore {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match SledStore::open(path) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                reopened => break reopened.expect("reopen"),
            }
        }
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let before = {
            let store = SledStore::open(dir.path()).expect("open");
            let records = store.lookup_connections("sms", &["1".into()]).expect("lookup");
            store.plugin_set("p", "k", b"v").expect("set");
            store.flush().expect("flush");
            // Held in memory when the store is dropped: applied on the way out.
            store.plugin_set("p", "unflushed", b"w").expect("set");
            records
        };
        let store = reopen(dir.path());
        assert_eq!(store.lookup_connections("sms", &["1".into()]).expect("lookup"), before);
        assert_eq!(store.plugin_get("p", "k").expect("get").as_deref(), Some(&b"v"[..]));
        assert_eq!(store.plugin_get("p", "unflushed").expect("get").as_deref(), Some(&b"w"[..]));
    }

    #[test]
    fn plugin_data_of_earlier_versions_is_moved_into_pages() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            // One sled key per entry, as versions before pages stored it.
            let db = sled::Config::new().path(dir.path()).open().expect("open sled");
            let old = db.open_tree("plugin-data").expect("tree");
            for i in 0..300 {
                old.insert(pair_key("log", &format!("log/{i:04}")), format!("entry {i}").as_bytes()).expect("insert");
            }
            old.insert(pair_key("other", "k"), "v").expect("insert");
            let acme = db.open_tree("tenant:acme:plugin-data").expect("tree");
            acme.insert(pair_key("echo", "k"), "acme's").expect("insert");
            db.flush().expect("flush");
        }
        let store = reopen(dir.path());
        assert_eq!(store.plugin_get("log", "log/0123").expect("get").as_deref(), Some(&b"entry 123"[..]));
        let logged = store.plugin_scan("log", "log/", None, 1000).expect("scan");
        assert_eq!(logged.len(), 300);
        assert_eq!(logged[299], ("log/0299".to_owned(), b"entry 299".to_vec()));
        assert_eq!(store.plugin_get("other", "k").expect("get").as_deref(), Some(&b"v"[..]));
        let acme = store.tenant("acme").expect("tenant");
        assert_eq!(acme.plugin_get("echo", "k").expect("get").as_deref(), Some(&b"acme's"[..]));
        let trees = store.db.tree_names();
        for name in ["plugin-data", "tenant:acme:plugin-data"] {
            assert!(!trees.iter().any(|t| t == name.as_bytes()), "{name} dropped");
        }
        let pages = store.db.open_tree("plugin-pages").expect("tree").len();
        assert!(pages < 300 / 8, "301 entries in {pages} pages");

        // Written after the move, a value is not overwritten by a second one.
        store.plugin_set("other", "k", b"new").expect("set");
        drop((acme, store));
        let store = reopen(dir.path());
        assert_eq!(store.plugin_get("other", "k").expect("get").as_deref(), Some(&b"new"[..]));
        store.tenant("acme").expect("tenant");
        let trees = store.db.tree_names();
        assert!(!trees.iter().any(|t| t.ends_with(b"plugin-data")), "no tree of the old layout is made again");
    }
}
