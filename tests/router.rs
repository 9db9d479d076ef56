//! The router's phase rules (RapidSMS's BlockingRouter), driven through real
//! components: two `probe` apps, A1 and A2, as in RapidSMS's own probe.

use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::RouterEvent;
use rapidwasm_tests::{TestHost, app, console};

fn two_probes(a1: &str, a2: &str) -> String {
    format!("{}{}{}", app("A1", "probe", a1), app("A2", "probe", a2), console("console", ""))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_phase_runs_for_every_app_in_order() {
    let t = TestHost::start(&two_probes("", "")).await.expect("start");
    let msg = t.receive("1", "hello").await;
    assert_eq!(
        t.recorder.phases_of(&msg.id),
        [
            "A1.filter",
            "A2.filter",
            "A1.parse",
            "A2.parse",
            "A1.handle",
            "A2.handle",
            "A1.default",
            "A2.default",
            "A1.cleanup",
            "A2.cleanup"
        ]
    );
    assert!(!msg.handled);
    assert!(msg.sent.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_true_stops_everything_but_queued_responses_are_sent() {
    let t = TestHost::start(&two_probes(r#"filter = "true", respond = "filter:early""#, "")).await.expect("start");
    let msg = t.receive("1", "spam").await;
    assert_eq!(t.recorder.phases_of(&msg.id), ["A1.filter"]);
    assert!(t.recorder.events().iter().any(|e| matches!(e, RouterEvent::Filtered { app, .. } if app == "A1")));
    assert_eq!(t.outbox("console"), [("1".to_owned(), "early".to_owned())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn handle_true_skips_later_handles_and_default_but_not_cleanup() {
    let t = TestHost::start(&two_probes(r#"handle = "true""#, "")).await.expect("start");
    let msg = t.receive("1", "hello").await;
    assert!(msg.handled);
    assert_eq!(
        t.recorder.phases_of(&msg.id),
        ["A1.filter", "A2.filter", "A1.parse", "A2.parse", "A1.handle", "A1.cleanup", "A2.cleanup"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_true_skips_later_defaults_and_cleanup_still_runs() {
    let t = TestHost::start(&two_probes(r#"default = "true""#, "")).await.expect("start");
    let msg = t.receive("1", "hello").await;
    let phases = t.recorder.phases_of(&msg.id);
    assert_eq!(phases[6..], ["A1.default", "A1.cleanup", "A2.cleanup"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_are_sent_after_all_phases_in_the_order_queued() {
    let t =
        TestHost::start(&two_probes(r#"respond = "filter:one|cleanup:four""#, r#"respond = "parse:two|handle:three""#))
            .await
            .expect("start");
    let msg = t.receive("7", "x").await;
    let texts: Vec<_> = msg.sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    let outbox: Vec<_> = t.outbox("console").into_iter().map(|(_, text)| text).collect();
    assert_eq!(outbox, ["one", "two", "three", "four"]);
    // Nothing is sent before the last incoming phase has run.
    let events = t.recorder.events();
    let last_cleanup = events
        .iter()
        .rposition(|e| matches!(e, RouterEvent::Phase { phase, .. } if phase.name() == "cleanup"))
        .expect("cleanup ran");
    let first_send = events.iter().position(|e| matches!(e, RouterEvent::Sent { .. })).expect("sent");
    assert!(first_send > last_cleanup);
    // Every response links back to the message.
    assert!(msg.sent.iter().all(|m| m.in_response_to.as_deref() == Some(msg.id.as_str())));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_response_passes_the_outgoing_phase_in_reverse_app_order() {
    let t = TestHost::start(&two_probes(r#"respond = "handle:a|handle:b""#, "")).await.expect("start");
    let msg = t.receive("1", "x").await;
    assert_eq!(msg.sent.len(), 2);
    for out in &msg.sent {
        assert_eq!(t.recorder.phases_of(&out.id), ["A2.outgoing", "A1.outgoing"]);
        assert!(out.processed);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outgoing_false_cancels_the_send() {
    let t = TestHost::start(&two_probes(r#"respond = "handle:a""#, r#"outgoing = "false""#)).await.expect("start");
    let msg = t.receive("1", "x").await;
    let out = &msg.sent[0];
    assert!(!out.processed);
    assert_eq!(t.recorder.phases_of(&out.id), ["A2.outgoing"], "A1 never sees a cancelled message");
    assert!(t.recorder.events().iter().any(|e| matches!(e, RouterEvent::Cancelled { app, .. } if app == "A2")));
    assert!(t.recorder.sends().is_empty());
    assert!(t.outbox("console").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_split_per_backend_and_each_backend_called_once() {
    let body = format!(
        "{}{}{}{}",
        app("A1", "probe", r#"respond = "handle:hi", respond_to = "c1:1,c2:2,c1:3,nope:9""#),
        console("console", ""),
        console("c1", ""),
        console("c2", ""),
    );
    let t = TestHost::start(&body).await.expect("start");
    t.receive("0", "x").await;
    let mut sends = t.recorder.sends();
    sends.sort();
    assert_eq!(
        sends,
        [
            ("c1".to_owned(), vec!["1".to_owned(), "3".to_owned()], "hi".to_owned(), vec![]),
            ("c2".to_owned(), vec!["2".to_owned()], "hi".to_owned(), vec![]),
        ]
    );
    assert_eq!(t.outbox("c1"), [("1".to_owned(), "hi".to_owned()), ("3".to_owned(), "hi".to_owned())]);
    assert_eq!(t.outbox("c2"), [("2".to_owned(), "hi".to_owned())]);
    assert!(t.recorder.events().iter().any(
        |e| matches!(e, RouterEvent::NoSuchBackend { backend, identities, .. } if backend == "nope" && identities == &["9"])
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_reports_which_identities_failed() {
    let t = TestHost::start(&console("console", r#"fail_identities = "2""#)).await.expect("start");
    let router = t.host.router();
    let to = router.lookup_connections("console", &["1".into(), "2".into(), "3".into()]).expect("lookup");
    router.send("hello", to, Fields::new()).await.expect("send");
    let sends = t.recorder.sends();
    assert_eq!(sends.len(), 1, "one call for the backend");
    assert_eq!(sends[0].1, ["1", "2", "3"]);
    assert_eq!(sends[0].3, ["2"]);
    let delivered: Vec<_> = t.outbox("console").into_iter().map(|(id, _)| id).collect();
    assert_eq!(delivered, ["1", "3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_set_in_parse_are_seen_by_later_apps() {
    let t = TestHost::start(&two_probes(r#"set_field = "lang=fr""#, r#"respond = "handle:{fields}""#))
        .await
        .expect("start");
    let msg = t
        .host
        .router()
        .receive("x", Connection::new("console", "1"), [("src".to_owned(), "sms".to_owned())].into())
        .await
        .expect("receive");
    assert_eq!(msg.fields.get("lang").map(String::as_str), Some("fr"));
    assert_eq!(msg.sent[0].text, "lang=fr,src=sms");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phase_an_app_leaves_out_is_never_called() {
    let body = format!("{}{}", app("echo", "echo", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    let msg = t.receive("1", "echo hi").await;
    assert_eq!(t.recorder.phases_of(&msg.id), ["echo.handle"]);
    assert!(t.recorder.phases_of(&msg.sent[0].id).is_empty(), "echo has no outgoing phase");
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_can_send_through_the_router() {
    let body = format!("{}{}", app("A1", "probe", r#"send = "console:42,console:43""#), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    t.receive("1", "ping").await;
    assert_eq!(
        t.outbox("console"),
        [("42".to_owned(), "sent:ping".to_owned()), ("43".to_owned(), "sent:ping".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_loops_between_plugins_are_cut_at_the_depth_limit() {
    let body = format!(
        "[limits]\nmax_depth = 3\n{}{}",
        app("A1", "probe", r#"receive_from = "console:1""#),
        console("console", "")
    );
    let t = TestHost::start(&body).await.expect("start");
    t.receive("1", "again").await;
    let results: Vec<String> = t
        .host
        .store()
        .plugin_scan("A1", "receive-result/", None, 100)
        .expect("scan")
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .collect();
    // Depths 0..=3 are routed; the call from depth 3 is refused.
    assert_eq!(results.len(), 4, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.starts_with("err:") && r.contains("TooDeep(3)")).count(), 1, "{results:?}");
}
