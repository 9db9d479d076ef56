//! The durable router: statuses, retries and dead letters, order per
//! connection, delivery reports, idempotency and recovery after a restart,
//! with real components, a real sled store and real HTTP on loopback.

use std::time::Duration;

use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::RouterError;
use rapidwasm::store::SledStore;
use rapidwasm::store::journal::{Direction, MessageRecord, Staged};
use rapidwasm_tests::gateway::{Gateway, query_pairs, value};
use rapidwasm_tests::{TestHost, app, backend, console, eventually, twilio_signature};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The durable router with quick retries: 3 tries, 20 ms then 40 ms apart
/// (before jitter).
const DURABLE: &str = "[router]\nkind = \"durable\"\nretry_initial_ms = 20\nretry_max_ms = 200\nmax_attempts = 3\n";

const WAIT: Duration = Duration::from_secs(15);

async fn get_json(url: &str) -> (StatusCode, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_json(url: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new().post(url).json(body).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The generic `http` backend, sending each message to `gateway`'s `/send`.
fn http_to(gateway: &Gateway) -> String {
    let settings = format!("outbound_url = \"{}/send?to={{identity}}&text={{text}}\"", gateway.url());
    backend("http", "http", &[&gateway.host()], &settings)
}

/// The message's status record, once its status word is `want`.
async fn wait_status(base: &str, id: &str, want: &str) -> Value {
    let url = format!("{base}/api/v1/messages/{id}");
    let mut last = Value::Null;
    let found = eventually(WAIT, async || {
        let (_, body) = get_json(&url).await;
        last = body.clone();
        (body["status"] == want).then_some(body)
    })
    .await;
    found.unwrap_or_else(|| panic!("message {id} never became {want}: {last}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_and_their_transmissions_are_stored_with_statuses() {
    let body =
        format!("{DURABLE}{}{}{}", app("echo", "echo", ""), app("default", "default", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    let s = t.serve().await;

    let (status, answer) = post_json(
        &format!("{}/api/v1/receive", s.base),
        &json!({"text": "echo hi", "backend": "console", "identity": "1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let incoming = answer["message_id"].as_str().expect("id").to_owned();
    let outgoing = answer["responses"][0]["id"].as_str().expect("a response").to_owned();
    assert_eq!(answer["responses"][0]["text"], "hi");

    assert_eq!(t.host.drain(WAIT).await, (0, 0), "inbox and outbox drain");
    let (status, stored) = get_json(&format!("{}/api/v1/messages/{incoming}", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["status"], "received");
    assert_eq!(stored["message"]["direction"], "incoming");
    assert_eq!(stored["message"]["handled"], true);
    assert_eq!(stored["message"]["responses"], json!([outgoing]));

    let sent = wait_status(&s.base, &outgoing, "sent").await;
    assert_eq!(sent["message"]["in_response_to"], incoming.as_str());
    let tx = &sent["transmissions"][0];
    assert_eq!((tx["connection"]["identity"].as_str(), tx["status"].as_str()), (Some("1"), Some("sent")));
    assert_eq!(tx["attempts"], 1);
    assert!(tx["sent_on"].as_u64().is_some());
    assert_eq!(t.outbox("console"), [("1".to_owned(), "hi".to_owned())]);

    let (status, missing) = get_json(&format!("{}/api/v1/messages/nope", s.base)).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_callers_message_is_stored_once_with_its_outcome() {
    let t = TestHost::start(&format!("{DURABLE}{}{}", app("echo", "echo", ""), console("console", "")))
        .await
        .expect("start");
    let router = t.host.router();
    let journal = router.journal().expect("the durable router's journal").clone();
    let writes = || journal.stats().writes;
    let phone = Connection::new("console", "1");

    let before = writes();
    let msg = router.receive("echo one", phone.clone(), Fields::new()).await.expect("receive");
    let (record, _) = router.message_record(&msg.id).expect("read").expect("on disk when receive returns");
    assert!(record.handled && record.routed_on.is_some_and(|routed| routed >= record.created_on), "{record:?}");
    assert_eq!(record.responses.len(), 1);
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    // The journal's counters move just after a write becomes visible.
    let counted = eventually(WAIT, async || (writes() - before >= 2).then_some(())).await;
    assert!(counted.is_some());
    assert_eq!(writes() - before, 2, "the message with its routing outcome, then the send's outcome");

    // A gateway's external_id: stored before routing, so that a
    // redelivery is recognised.
    let mut fields = Fields::new();
    fields.insert("external_id".into(), "gw-7".into());
    let before = writes();
    let first = router.receive("echo two", phone.clone(), fields.clone()).await.expect("receive");
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    let counted = eventually(WAIT, async || (writes() - before >= 3).then_some(())).await;
    assert!(counted.is_some());
    assert_eq!(writes() - before, 3, "accepted, routed, sent");
    let again = router.receive("echo two", phone, fields).await;
    assert!(matches!(&again, Err(RouterError::Duplicate(id)) if *id == first.id), "{again:?}");
    assert_eq!(t.outbox("console").len(), 2, "each message answered once");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sends_are_retried_then_dead_lettered_and_requeued() {
    let gateway = Gateway::start(503, "down for maintenance").await;
    let http = http_to(&gateway);
    let t = TestHost::start(&format!("{DURABLE}{http}{}", console("console", ""))).await.expect("start");
    let s = t.serve().await;
    let send_url = format!("{}/api/v1/send", s.base);
    let send = async |text: &str, backend: &str, identity: &str| {
        let body = json!({"text": text, "connections": [{"backend": backend, "identity": identity}]});
        post_json(&send_url, &body).await
    };

    let (status, answer) = send("hello", "http", "5").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = answer["message_id"].as_str().expect("id").to_owned();
    // Another backend is not held up by the failing one.
    send("meanwhile", "console", "6").await;

    let dead = eventually(WAIT, async || {
        let (_, list) = get_json(&format!("{}/api/v1/dead-letters", s.base)).await;
        list.as_array().filter(|l| !l.is_empty()).cloned()
    })
    .await
    .expect("a dead letter");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message_id"], id.as_str());
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["status"], "failed");
    assert!(dead[0]["error"].as_str().expect("error").contains("503"), "{}", dead[0]);
    assert_eq!(gateway.requests().len(), 3, "three tries, then no more");
    assert!(t.outbox("console").contains(&("6".to_owned(), "meanwhile".to_owned())));
    let failed = wait_status(&s.base, &id, "failed").await;
    assert_eq!(failed["transmissions"][0]["dead_letter"], true);

    // The gateway is back: the operator re-queues the dead letter.
    gateway.set_status(200);
    let requeue = json!({"message_id": id, "backend": "http", "identity": "5"});
    let (status, record) = post_json(&format!("{}/api/v1/dead-letters/requeue", s.base), &requeue).await;
    assert_eq!(status, StatusCode::OK, "{record}");
    let sent = wait_status(&s.base, &id, "sent").await;
    assert_eq!(sent["transmissions"][0]["dead_letter"], false);
    assert_eq!(gateway.requests().len(), 4);
    let (_, list) = get_json(&format!("{}/api/v1/dead-letters", s.base)).await;
    assert_eq!(list, json!([]));
    let (status, again) = post_json(&format!("{}/api/v1/dead-letters/requeue", s.base), &requeue).await;
    assert_eq!((status, again["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_to_one_identity_keep_their_order_across_retries() {
    let gateway = Gateway::start(200, "ok").await;
    let http = http_to(&gateway);
    let router = "[router]\nkind = \"durable\"\nretry_initial_ms = 30\nretry_max_ms = 100\nmax_attempts = 10\n";
    let t = TestHost::start(&format!("{router}{http}")).await.expect("start");
    gateway.fail_next(3, 500);
    let router = t.host.router();
    for text in ["m1", "m2", "m3", "m4"] {
        router.send(text, vec![Connection::new("http", "9")], Fields::new()).await.expect("send");
    }
    router.send("other", vec![Connection::new("http", "10")], Fields::new()).await.expect("send");
    assert_eq!(t.host.drain(WAIT).await, (0, 0));

    let to_nine: Vec<String> = gateway
        .requests()
        .iter()
        .map(query_pairs)
        .filter(|q| value(q, "to") == Some("9"))
        .map(|q| value(&q, "text").unwrap_or_default().to_owned())
        .collect();
    let first = |t: &str| to_nine.iter().position(|x| x == t).expect("sent");
    let last = |t: &str| to_nine.iter().rposition(|x| x == t).expect("sent");
    assert!(to_nine.iter().filter(|t| *t == "m1").count() >= 2, "m1 was retried: {to_nine:?}");
    for (before, after) in [("m1", "m2"), ("m2", "m3"), ("m3", "m4")] {
        assert!(last(before) < first(after), "{before} left before {after}: {to_nine:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_reports_move_statuses_forward_only() {
    let gateway = Gateway::start(202, "0: Accepted for delivery").await;
    let kannel = backend(
        "kannel",
        "kannel",
        &[&gateway.host()],
        &format!(
            "sendsms_url = \"{}/cgi-bin/sendsms\", delivery_report_url = \"http://127.0.0.1:8080\"",
            gateway.url()
        ),
    );
    let twilio = backend(
        "twilio",
        "twilio",
        &[&gateway.host()],
        &format!(
            "account_sid = \"AC1\", auth_token = \"tok\", from = \"+1500\", api_url = \"{}/2010-04-01\", \
             status_callback = \"http://127.0.0.1:8080/backends/twilio/status\"",
            gateway.url()
        ),
    );
    let t = TestHost::start(&format!("{DURABLE}{kannel}{twilio}")).await.expect("start");
    let s = t.serve().await;
    let router = t.host.router();

    // Kannel's report comes back before its answer to sendsms does.
    gateway.set_delay(Duration::from_millis(600));
    let msg = router.send("hello", vec![Connection::new("kannel", "77")], Fields::new()).await.expect("send");
    eventually(WAIT, async || (!gateway.requests().is_empty()).then_some(())).await.expect("sendsms called");
    let query = query_pairs(&gateway.requests()[0]);
    let report = value(&query, "dlr-url")
        .expect("a dlr-url")
        .replace("http://127.0.0.1:8080", &s.base)
        .replace("%A", "Delivered")
        .replace("%i", "fake")
        .replace("%I", "c0ffee00-0000-4000-8000-000000000001")
        .replace("%t", "2026-11-27");
    let delivered = reqwest::get(report.replace("%d", "1")).await.expect("report");
    assert_eq!(delivered.status(), StatusCode::OK);
    let status = wait_status(&s.base, &msg.id, "delivered").await;
    assert!(status["transmissions"][0]["sent_on"].is_null(), "reported before the send was recorded");
    gateway.set_delay(Duration::ZERO);
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    // The send's own record, then a late "taken by the SMSC", change nothing.
    let late = reqwest::get(report.replace("%d", "8")).await.expect("report");
    assert_eq!(late.status(), StatusCode::OK);
    let status = wait_status(&s.base, &msg.id, "delivered").await;
    let tx = &status["transmissions"][0];
    assert!(tx["sent_on"].as_u64().is_some() && tx["delivered_on"].as_u64().is_some(), "{tx}");
    // A report on an unknown message is answered, not an error storm.
    let stranger = report.replace(&msg.id, "0123456789abcdef0123456789abcdef").replace("%d", "2");
    assert_eq!(reqwest::get(stranger).await.expect("report").status(), StatusCode::OK);

    // Twilio's status callback names the transmission in its URL.
    let msg = router.send("hi", vec![Connection::new("twilio", "+1555")], Fields::new()).await.expect("send");
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    let rest = gateway.requests().into_iter().find(|r| r.path.ends_with("Messages.json")).expect("REST call");
    let form = rapidwasm_tests::gateway::form_pairs(&rest);
    let callback = value(&form, "StatusCallback").expect("callback").replace("http://127.0.0.1:8080", &s.base);
    let params = [("MessageSid", "SM9"), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")];
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    // Without `webhook_url`, the backend checks the URL it was reached at.
    let response = reqwest::Client::new()
        .post(&callback)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", twilio_signature("tok", &callback, &params))
        .body(body)
        .send()
        .await
        .expect("callback");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let failed = wait_status(&s.base, &msg.id, "failed").await;
    assert_eq!(failed["transmissions"][0]["error"], "Twilio undelivered, error 30003");
    assert_eq!(failed["transmissions"][0]["dead_letter"], false, "the gateway's failure is not a dead letter");
}

#[tokio::test(flavor = "multi_thread")]
async fn redeliveries_and_repeated_sends_are_processed_once() {
    let gateway = Gateway::start(200, "ok").await;
    let http = backend(
        "http",
        "http",
        &[&gateway.host()],
        &format!("id_name = \"mid\", outbound_url = \"{}/out?to={{identity}}&text={{text}}\"", gateway.url()),
    );
    let t = TestHost::start(&format!("{DURABLE}{}{http}", app("echo", "echo", ""))).await.expect("start");
    let s = t.serve().await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .post(format!("{}/backends/http/", s.base))
            .form(&[("identity", "3"), ("text", "echo once"), ("mid", "gw-1")])
            .send()
            .await
            .expect("inbound");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    assert_eq!(gateway.requests().len(), 1, "the gateway's retries were routed once");

    let send = |key: &'static str| {
        client
            .post(format!("{}/api/v1/send", s.base))
            .header("idempotency-key", key)
            .json(&json!({"text": "keyed", "connections": [{"backend": "http", "identity": "4"}]}))
            .send()
    };
    let first: Value = send("order-17").await.expect("send").json().await.expect("JSON");
    let again: Value = send("order-17").await.expect("send").json().await.expect("JSON");
    assert_eq!((first["duplicate"].as_bool(), again["duplicate"].as_bool()), (Some(false), Some(true)));
    assert_eq!(first["message_id"], again["message_id"]);
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    assert_eq!(gateway.requests().len(), 2, "one send for one key");
    let long = "k".repeat(rapidwasm::http::MAX_IDEMPOTENCY_KEY + 1);
    let response = client
        .post(format!("{}/api/v1/send", s.base))
        .header("idempotency-key", long)
        .json(&json!({"text": "x", "connections": [{"backend": "http", "identity": "4"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The blocking router keeps nothing, and says so.
    let blocking = TestHost::start(&console("console", "")).await.expect("start");
    let b = blocking.serve().await;
    let response = client
        .post(format!("{}/api/v1/send", b.base))
        .header("idempotency-key", "k")
        .json(&json!({"text": "x", "connections": [{"backend": "console", "identity": "4"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let (status, body) = get_json(&format!("{}/api/v1/messages/abc", b.base)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_durable")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_routes_the_inbox_and_sends_the_outbox() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let record = |id: &str, direction, text: &str, identity: &str| MessageRecord {
        id: id.to_owned(),
        direction,
        text: text.to_owned(),
        connections: vec![Connection::new("console", identity)],
        fields: Fields::new(),
        in_response_to: None,
        external_id: None,
        class: Default::default(),
        created_on: 1,
        routed_on: None,
        handled: false,
        responses: Vec::new(),
        depth: 0,
    };
    {
        // What a host killed mid-way leaves: an accepted message not yet
        // routed, and a queued transmission not yet sent.
        let store = SledStore::open(dir.path()).expect("open");
        let journal = store.journal().expect("journal");
        let incoming = record(&"a".repeat(32), Direction::Incoming, "echo left in the inbox", "7");
        journal.accept_incoming(incoming).await.expect("accept");
        let outgoing = record(&"b".repeat(32), Direction::Outgoing, "left in the outbox", "8");
        let staged = Staged { transmissions: vec![(Connection::new("console", "8"), None)], record: outgoing };
        journal.queue_outgoing(staged, None).await.expect("queue").expect("a new message");
    }
    let body = format!("{DURABLE}{}{}", app("echo", "echo", ""), console("console", ""));
    let t = TestHost::start_in(dir, &body).await.expect("restart");
    assert_eq!(t.host.drain(WAIT).await, (0, 0));
    let mut sent = t.outbox("console");
    sent.sort();
    assert_eq!(
        sent,
        [("7".to_owned(), "left in the inbox".to_owned()), ("8".to_owned(), "left in the outbox".to_owned())]
    );
    let routed = t.host.router().message_record(&"a".repeat(32)).expect("read").expect("stored");
    assert!(routed.0.routed_on.is_some() && routed.0.responses.len() == 1);
}
