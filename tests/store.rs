//! The sled store behind the router: lookup creates connections, and data
//! survives a restart of the host.

use rapidwasm::messages::Connection;
use rapidwasm_tests::{TestHost, app, console};

#[tokio::test(flavor = "multi_thread")]
async fn lookup_creates_connections_that_are_found_again_after_a_restart() {
    let body = format!("{}{}", app("echo", "echo", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    let identities = vec!["111".to_owned(), "222".to_owned()];
    let created = t.host.router().lookup_connections("other-backend", &identities).expect("lookup");
    assert_eq!(created, [Connection::new("other-backend", "111"), Connection::new("other-backend", "222")]);
    let ann = t.host.store().create_contact("Ann", "fr").expect("contact");
    t.host.store().link_contact(&created[0], Some(&ann.id)).expect("link");
    let before = t.host.store().lookup_connections("other-backend", &identities).expect("records");
    t.receive("333", "echo remember me").await;
    let dir = t.stop();

    let t = TestHost::start_in(dir, &body).await.expect("restart");
    let after = t.host.store().lookup_connections("other-backend", &identities).expect("records");
    assert_eq!(before, after, "same records, same creation times");
    assert_eq!(t.host.router().contact_of(&created[0]).expect("contact"), Some(ann));
    assert_eq!(t.host.router().contact_of(&created[1]).expect("contact"), None);
    let backends: Vec<String> = t.host.store().backends().expect("backends").into_iter().map(|b| b.name).collect();
    assert_eq!(backends, ["console", "other-backend"]);
    // The inbound connection was recorded, and the console backend's data survived.
    assert!(t.host.store().connection(&Connection::new("console", "333")).expect("get").is_some());
    assert_eq!(t.outbox("console"), [("333".to_owned(), "remember me".to_owned())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_host_on_the_same_data_directory_is_refused_clearly() {
    let t = TestHost::start(&console("console", "")).await.expect("start");
    let Err(err) = TestHost::start_in(t.dir.clone(), &console("console", "")).await else {
        panic!("a second host opened a data directory in use");
    };
    let text = format!("{err:#}");
    assert!(text.contains("in use by another rapidwasm process"), "{text}");
}
