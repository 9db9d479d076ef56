//! The example apps behave as RapidSMS's contrib apps do.

use rapidwasm_tests::{TestHost, app, console};

const DEFAULT_TEXT: &str = "Sorry, RapidSMS could not understand your message.";

async fn standard() -> TestHost {
    let body = format!(
        "{}{}{}{}{}",
        app("messagelog", "messagelog", ""),
        app("echo", "echo", ""),
        app("ping", "ping", ""),
        app("default", "default", ""),
        console("console", "")
    );
    TestHost::start(&body).await.expect("start")
}

async fn replies(t: &TestHost, text: &str) -> Vec<String> {
    let msg = t.receive("555", text).await;
    msg.sent.iter().map(|m| m.text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_answers_with_the_text_after_the_keyword() {
    let t = standard().await;
    assert_eq!(replies(&t, "echo hello").await, ["hello"]);
    assert_eq!(replies(&t, "ECHO Hello There").await, ["Hello There"]);
    assert_eq!(replies(&t, "  echo   spaced out  ").await, ["spaced out  "], "trailing spaces are kept");
    assert_eq!(replies(&t, "echo").await, ["To echo some text, send: ECHO <ANYTHING>"]);
    assert_eq!(replies(&t, "Echo   ").await, ["To echo some text, send: ECHO <ANYTHING>"]);
    assert_eq!(replies(&t, "echo ñandú ✓").await, ["ñandú ✓"], "non-ASCII text is intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_is_exact_and_case_sensitive() {
    let t = standard().await;
    assert_eq!(replies(&t, "ping").await, ["pong"]);
    assert_eq!(replies(&t, "Ping").await, [DEFAULT_TEXT]);
    assert_eq!(replies(&t, "ping ").await, [DEFAULT_TEXT]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unhandled_messages_get_the_default_response_as_an_error_message() {
    let t = standard().await;
    let msg = t.receive("555", "what is this").await;
    assert_eq!(msg.sent.len(), 1);
    assert_eq!(msg.sent[0].text, DEFAULT_TEXT);
    assert!(msg.sent[0].is_error(), "the default response is an ErrorMessage");
    let handled = t.receive("555", "echo x").await;
    assert!(handled.sent.iter().all(|m| !m.is_error()));
    assert_eq!(t.outbox("console").last().map(|(_, text)| text.as_str()), Some("x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn default_response_and_project_name_are_configurable_or_off() {
    let body = format!("project_name = \"Clinic\"\n{}{}", app("default", "default", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    assert_eq!(replies(&t, "??").await, ["Sorry, Clinic could not understand your message."]);

    let body = format!("{}{}", app("default", "default", r#"default_response = "Try HELP""#), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    assert_eq!(replies(&t, "??").await, ["Try HELP"]);

    let body = format!("default_response = \"\"\n{}{}", app("default", "default", ""), console("console", ""));
    let t = TestHost::start(&body).await.expect("start");
    assert!(replies(&t, "??").await.is_empty(), "an empty default response sends nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn messagelog_records_incoming_raw_text_and_outgoing_messages() {
    let t = standard().await;
    t.receive("555", "echo logged").await;
    let entries: Vec<String> = t
        .host
        .store()
        .plugin_scan("messagelog", "log/", None, 100)
        .expect("scan")
        .into_iter()
        .map(|(_, v)| String::from_utf8(v).expect("utf-8"))
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries[0].contains(r#""direction":"I""#) && entries[0].contains(r#""text":"echo logged""#), "{entries:?}");
    assert!(entries[1].contains(r#""direction":"O""#) && entries[1].contains(r#""text":"logged""#), "{entries:?}");
    assert!(entries[0].contains(r#""identity":"555""#) && entries[0].contains(r#""backend":"console""#));
}
