//! The hostile-plugin suite: a real component (`plugins/hostile`) attacks
//! the host in every way an app can, one attack per message. Each must be
//! contained: the attack is stopped or refused, the other apps answer the
//! same message, the next message works, and a well-behaved conversation's
//! latency during the attacks is measured against its normal figure.

use std::time::{Duration, Instant};

use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::PhaseResult;
use rapidwasm_tests::{TestHost, app, console, median};

/// The hostile app first, then a well-behaved one (echo) and default.
fn config() -> String {
    format!(
        "[limits]\ncall_timeout_ms = 200\nmemory_mib = 32\n{}{}{}{}",
        app("hostile", "hostile", ""),
        app("echo", "echo", ""),
        app("default", "default", ""),
        console("console", "")
    )
}

async fn timed(t: &TestHost, identity: &str, text: &str) -> Duration {
    let started = Instant::now();
    let msg = t.receive(identity, text).await;
    let took = started.elapsed();
    assert_eq!(msg.sent.last().map(|m| m.text.as_str()), Some(text.trim_start_matches("echo ")), "{text} answered");
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attack_is_contained_and_the_others_keep_working() {
    let t = TestHost::start(&config()).await.expect("start");

    // Normal latency of a well-behaved conversation.
    let mut normal = Vec::new();
    for i in 0..50 {
        normal.push(timed(&t, "100", &format!("echo calm {i}")).await);
    }

    let attacks = ["loop", "bomb", "recurse", "trap", "flood", "huge", "files", "env", "socket"];
    let mut during = Vec::new();
    for attack in attacks {
        // The attack and a well-behaved message run side by side.
        let calm = {
            let router = t.host.router().clone();
            tokio::spawn(async move {
                let started = Instant::now();
                router
                    .receive(format!("echo during {attack}"), Connection::new("console", "100"), Fields::new())
                    .await
                    .expect("receive");
                started.elapsed()
            })
        };
        let msg = t.receive("666", attack).await;
        during.push(calm.await.expect("calm"));
        let texts: Vec<&str> = msg.sent.iter().map(|m| m.text.as_str()).collect();
        let handle = t.recorder.handle_of(&msg.id, "hostile");
        match attack {
            // Stopped: a failed call, and the other apps answered.
            "loop" | "bomb" | "recurse" | "trap" => {
                let Some(PhaseResult::Failed(why)) = handle else { panic!("{attack} was not stopped: {handle:?}") };
                let expected: &[&str] = match attack {
                    "loop" => &["timed out after 200 ms"],
                    "bomb" => &["exceeded its memory limit"],
                    // Rust keeps its stack in linear memory: running off
                    // its start traps as an out-of-bounds access; the
                    // engine's own stack limit traps as a stack overflow.
                    "recurse" => &["stack overflow", "out of bounds memory access"],
                    _ => &["unreachable", "hostile app trapped on purpose"],
                };
                assert!(expected.iter().any(|e| why.contains(e)), "{attack}: {why}");
                assert_eq!(texts, ["Sorry, RapidSMS could not understand your message."], "{attack}: default answered");
            }
            // Refused by the host: at most 100 responses, 64 KiB each.
            "flood" => {
                // The 101st response (and the app's report) are refused.
                assert_eq!(msg.sent.len(), 100, "no more than 100 responses");
                assert_eq!(texts[99], "flood 99");
            }
            "huge" => assert!(texts[0].starts_with("denied: huge:") && texts[0].contains("65536"), "{texts:?}"),
            // Nothing to reach: no files, no environment, no sockets.
            "files" | "env" | "socket" => {
                assert!(!texts.is_empty() && texts.iter().all(|t| t.starts_with("denied: ")), "{attack}: {texts:?}");
            }
            _ => unreachable!(),
        }
        // The next message works, through the same apps.
        timed(&t, "666", "echo after").await;
    }

    let (normal, during) = (median(normal), median(during));
    println!(
        "hostile suite: {} attacks contained; a well-behaved message took median {:.2?} normally and {:.2?} \
         while an attack ran beside it ({:.1}x)",
        attacks.len(),
        normal,
        during,
        during.as_secs_f64() / normal.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_keeps_failing_is_paused_then_tried_again() {
    let t = TestHost::start(&config()).await.expect("start");
    let hostile = |t: &TestHost| {
        t.host.registry().list().into_iter().find(|p| p.name == "hostile").expect("the hostile app is listed")
    };
    let failure = |t: &TestHost, id: &str| match t.recorder.handle_of(id, "hostile") {
        Some(PhaseResult::Failed(why)) => why,
        other => panic!("hostile did not fail: {other:?}"),
    };
    for _ in 0..5 {
        let msg = t.receive("13", "trap").await;
        assert!(failure(&t, &msg.id).contains("unreachable"), "a panic traps");
        assert_eq!(msg.sent.len(), 1, "the default app answers");
    }
    let listed = hostile(&t);
    assert_eq!(listed.failures_in_a_row, 5);
    assert!(listed.paused_until.is_some(), "paused: {listed:?}");

    // Paused: it is not even called, and the message goes on past it.
    let msg = t.receive("13", "echo meanwhile").await;
    assert!(failure(&t, &msg.id).contains("paused after failing 5 calls in a row"));
    assert_eq!(msg.sent[0].text, "meanwhile");

    // After the pause one call is tried; it works, and all is forgiven.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let msg = t.receive("13", "echo later").await;
    assert_eq!(t.recorder.handle_of(&msg.id, "hostile"), Some(PhaseResult::Returned(false)));
    let listed = hostile(&t);
    assert_eq!((listed.failures_in_a_row, listed.paused_until), (0, None));
}
