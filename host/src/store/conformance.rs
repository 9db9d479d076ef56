//! The behaviour every [`Store`] must have, as one function another engine
//! can run against its own implementation:
//!
//! ```ignore
//! rapidwasm::store::conformance::check(&MyStore::open(dir)?);
//! ```
//!
//! It panics with a message naming the broken rule. Run it on an empty store.

use super::{MAX_NAME_LEN, Store, StoreError};
use crate::messages::Connection;

/// Check every rule on `store`, which must be empty.
pub fn check(store: &dyn Store) {
    lookup_creates_then_finds_in_order_with_duplicates(store);
    contacts_link_to_connections(store);
    plugin_data_is_namespaced_and_scanned_in_order(store);
    bad_names_are_refused(store);
}

fn lookup_creates_then_finds_in_order_with_duplicates(store: &dyn Store) {
    let ids = vec!["2".to_owned(), "1".to_owned(), "2".to_owned()];
    let first = store.lookup_connections("sms", &ids).expect("lookup");
    let got: Vec<_> = first.iter().map(|r| r.connection.identity.as_str()).collect();
    assert_eq!(got, ["2", "1", "2"], "lookup returns connections in the order asked, duplicates included");
    assert_eq!(first[0], first[2], "one record per (backend, identity)");
    let again = store.lookup_connections("sms", &ids).expect("lookup");
    assert_eq!(first, again, "a second lookup finds the same records");
    let backends: Vec<_> = store.backends().expect("backends").into_iter().map(|b| b.name).collect();
    assert_eq!(backends, ["sms"], "lookup creates the backend once");
    assert!(store.connection(&Connection::new("sms", "1")).expect("get").is_some());
    assert!(store.connection(&Connection::new("sms", "3")).expect("get").is_none(), "connection() creates nothing");
}

fn contacts_link_to_connections(store: &dyn Store) {
    let conn = Connection::new("sms", "555");
    let ann = store.create_contact("Ann", "fr").expect("contact");
    assert_eq!(ann.id.len(), 32);
    let linked = store.link_contact(&conn, Some(&ann.id)).expect("link");
    assert_eq!(linked.contact_id.as_deref(), Some(ann.id.as_str()));
    assert_eq!(store.connection(&conn).expect("get"), Some(linked), "the link is stored");
    assert_eq!(store.contact(&ann.id).expect("get"), Some(ann));
    let unlinked = store.link_contact(&conn, None).expect("unlink");
    assert_eq!(unlinked.contact_id, None);
    assert!(matches!(store.link_contact(&conn, Some("nope")), Err(StoreError::NotFound { .. })));
    assert!(matches!(store.create_contact("B", "toolong7"), Err(StoreError::Invalid { .. })), "language ≤ 6 chars");
}

fn plugin_data_is_namespaced_and_scanned_in_order(store: &dyn Store) {
    for key in ["log/2", "log/1", "log/3", "other"] {
        store.plugin_set("a", key, key.as_bytes()).expect("set");
    }
    store.plugin_set("ab", "log/0", b"x").expect("set");
    let keys = |after| -> Vec<String> {
        store.plugin_scan("a", "log/", after, 10).expect("scan").into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(keys(None), ["log/1", "log/2", "log/3"], "scan is in key order, within the prefix");
    assert_eq!(keys(Some("log/1")), ["log/2", "log/3"], "scan starts after start_after");
    assert_eq!(store.plugin_scan("a", "", None, 2).expect("scan").len(), 2, "scan honours the limit");
    assert_eq!(store.plugin_get("ab", "log/1").expect("get"), None, "plugins do not see each other's keys");
    assert_eq!(store.plugin_get("a", "log/2").expect("get").as_deref(), Some(&b"log/2"[..]));
    store.plugin_delete("a", "other").expect("delete");
    assert_eq!(store.plugin_get("a", "other").expect("get"), None);
}

fn bad_names_are_refused(store: &dyn Store) {
    let refused = |backend: &str, identity: &str| {
        matches!(store.lookup_connections(backend, &[identity.to_owned()]), Err(StoreError::Invalid { .. }))
    };
    assert!(refused("", "1"), "empty backend name");
    assert!(refused("sms", ""), "empty identity");
    assert!(refused("sms", "a\0b"), "NUL in an identity");
    assert!(refused("sms", &"x".repeat(MAX_NAME_LEN + 1)), "overlong identity");
    assert!(matches!(store.plugin_set("a", "", b""), Err(StoreError::Invalid { .. })), "empty plugin key");
}
