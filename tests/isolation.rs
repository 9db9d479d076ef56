//! A failing app never takes the router or other apps down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rapidwasm::router::{Phase, PhaseResult, RouterEvent};
use rapidwasm_tests::{TestHost, app, console};

const DEFAULT_TEXT: &str = "Sorry, RapidSMS could not understand your message.";

fn failure_of(t: &TestHost, message_id: &str, app_name: &str) -> Option<String> {
    t.recorder.events().into_iter().find_map(|e| match e {
        RouterEvent::Phase { message_id: m, app, result: PhaseResult::Failed(why), .. }
            if m == message_id && app == app_name =>
        {
            Some(why)
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_traps_in_handle_is_skipped_and_works_again_next_time() {
    let body = format!(
        "{}{}{}{}",
        app("trapper", "probe", r#"trap_text = "boom", respond = "handle:trapper saw {text}""#),
        app("echo", "echo", ""),
        app("default", "default", ""),
        console("console", "")
    );
    let t = TestHost::start(&body).await.expect("start");

    let msg = t.receive("9", "boom").await;
    let why = failure_of(&t, &msg.id, "trapper").expect("the trap is reported");
    assert_eq!(why, "wasm trap: wasm `unreachable` instruction executed", "a panic aborts: one line, no backtrace");
    assert!(t.recorder.phases_of(&msg.id).contains(&"trapper.handle!".to_owned()));
    let texts: Vec<_> = msg.sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, [DEFAULT_TEXT], "the message still gets the default response");

    // The next message gets a fresh instance of the trapping app.
    let msg = t.receive("9", "calm").await;
    assert_eq!(failure_of(&t, &msg.id, "trapper"), None);
    let texts: Vec<_> = msg.sent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["trapper saw calm", DEFAULT_TEXT]);

    // Other apps were never disturbed.
    let msg = t.receive("9", "echo still here").await;
    assert_eq!(msg.sent.last().map(|m| m.text.as_str()), Some("still here"));
}

/// Run app `bad` (a probe with `settings`, under `limits`) before the
/// default app and send it `trigger`. Check that only `bad` failed: the
/// message still gets the default response, and a fresh instance serves the
/// next message. Returns how the call failed.
async fn fails_alone(limits: &str, settings: &str, trigger: &str) -> String {
    let body = format!(
        "[limits]\n{limits}\n{}{}{}",
        app("bad", "probe", settings),
        app("default", "default", ""),
        console("console", "")
    );
    let t = TestHost::start(&body).await.expect("start");
    let msg = t.receive("9", trigger).await;
    let why = failure_of(&t, &msg.id, "bad").expect("the failure is reported");
    assert_eq!(msg.sent.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), [DEFAULT_TEXT]);
    let msg = t.receive("9", "fine").await;
    assert_eq!(failure_of(&t, &msg.id, "bad"), None, "a fresh instance serves the next message");
    why
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_loops_is_stopped_by_its_deadline() {
    let why = fails_alone("call_timeout_ms = 300", r#"loop_text = "spin""#, "spin").await;
    assert_eq!(why, "timed out after 300 ms");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_exceeds_its_memory_limit_fails_alone() {
    // Growing to 256 MiB under a 32 MiB limit fails the call.
    let why = fails_alone("memory_mib = 32", r#"hog_text = "eat""#, "eat").await;
    assert!(why.starts_with("exceeded its memory limit of 33554432 bytes"), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_in_outgoing_is_logged_and_the_message_still_sent() {
    let body = format!(
        "{}{}",
        app("A1", "probe", r#"respond = "handle:bad", trap_in = "outgoing", trap_text = "bad""#),
        console("console", "")
    );
    let t = TestHost::start(&body).await.expect("start");
    let msg = t.receive("9", "x").await;
    let out = &msg.sent[0];
    assert!(failure_of(&t, &out.id, "A1").is_some());
    assert_eq!(t.outbox("console"), [("9".to_owned(), "bad".to_owned())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_messages_are_all_routed() {
    let body = format!("{}{}", app("echo", "echo", ""), console("console", ""));
    let t = std::sync::Arc::new(TestHost::start(&body).await.expect("start"));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move { t.receive(&format!("p{i}"), &format!("echo n{i}")).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let msg = task.await.expect("task");
        assert_eq!(msg.sent[0].text, format!("n{i}"));
    }
    assert_eq!(t.outbox("console").len(), 50);
}

/// The outgoing-phase results of app `name`, in order.
fn outgoing_results(t: &TestHost, name: &str) -> Vec<PhaseResult> {
    t.recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RouterEvent::Phase { app, phase: Phase::Outgoing, result, .. } if app == name => Some(result),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_runs_at_most_max_instances_calls_at_once() {
    let body = format!(
        "[[apps]]\nname = \"hostile\"\nplugin = \"builtin:hostile\"\nmax_instances = 1\ncall_timeout_ms = 500\n\
         [[apps]]\nname = \"probe\"\nplugin = \"builtin:probe\"\nmax_instances = 1\n\
         settings = {{ send = \"console:5\" }}\n{}",
        console("console", "")
    );
    let t = Arc::new(TestHost::start(&body).await.expect("start"));

    // One message holds the hostile app's only instance for 500 ms; a
    // second message waits for it, then goes through.
    let looping = {
        let t = t.clone();
        tokio::spawn(async move { t.receive("1", "loop").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let msg = t.receive("2", "hello").await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "the second call waited for the only instance: {waited:?}");
    assert_eq!(failure_of(&t, &msg.id, "hostile"), None, "then it ran");
    let looped = looping.await.expect("the looping message");
    assert!(failure_of(&t, &looped.id, "hostile").is_some_and(|why| why.contains("timed out")));

    // A call nested in another call of the same plugin (the probe's send
    // runs its own outgoing phase) is not held up by the cap.
    let outgoing: Vec<PhaseResult> = outgoing_results(&t, "probe");
    assert!(outgoing.iter().all(|r| *r == PhaseResult::Returned(true)), "{outgoing:?}");
    assert!(t.outbox("console").contains(&("5".to_owned(), "sent:hello".to_owned())));
}
