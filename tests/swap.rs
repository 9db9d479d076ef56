//! Hot swap: a backend replaced 100 times under a constant stream of
//! messages loses and repeats nothing; a swap is validated first and the
//! admin API that triggers it is guarded.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rapidwasm::messages::{Connection, Fields};
use rapidwasm_tests::{TestHost, app, console};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SENDERS: usize = 4;
const SWAPS: usize = 100;

/// Every reply the `out` backend recorded, whichever version sent it.
fn recorded(t: &TestHost) -> Vec<String> {
    let entries = t.host.store().plugin_scan("out", "", None, 1_000_000).expect("scan");
    entries
        .into_iter()
        .filter_map(|(key, value)| {
            let value = String::from_utf8_lossy(&value).into_owned();
            if key.starts_with("outbox/") {
                // console: "<id>\t<identity>\t<text>"
                value.splitn(3, '\t').nth(2).map(str::to_owned)
            } else if key.starts_with("conversation/") {
                // tester: a JSON entry per message, in and out.
                let entry: Value = serde_json::from_str(&value).expect("a tester entry");
                (entry["direction"] == "out").then(|| entry["text"].as_str().unwrap_or_default().to_owned())
            } else {
                None
            }
        })
        .collect()
}

fn percentile(sorted: &[f64], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
}

/// Route a constant stream from `SENDERS` tasks until `stop`; returns the
/// texts answered and each message's latency (µs).
async fn stream(t: &TestHost, stop: Arc<AtomicBool>, tag: &'static str) -> (Vec<String>, Vec<f64>) {
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let router = t.host.router().clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut texts, mut latencies) = (Vec::new(), Vec::new());
            let from = Connection::new("out", format!("{sender}"));
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let text = format!("{tag}-{sender}-{i}");
                let started = Instant::now();
                let msg = router.receive(format!("echo {text}"), from.clone(), Fields::new()).await.expect("receive");
                latencies.push(started.elapsed().as_secs_f64() * 1e6);
                assert_eq!(msg.sent.len(), 1, "{text} answered once");
                texts.push(text);
                i += 1;
            }
            (texts, latencies)
        }));
    }
    let (mut texts, mut latencies) = (Vec::new(), Vec::new());
    for task in tasks {
        let (t, l) = task.await.expect("sender");
        texts.extend(t);
        latencies.extend(l);
    }
    latencies.sort_by(f64::total_cmp);
    (texts, latencies)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_swapped_100_times_under_load_loses_and_repeats_nothing() {
    let t = TestHost::start(&format!("{}{}", app("echo", "echo", ""), console("out", ""))).await.expect("start");
    let registry = t.host.registry().clone();

    // The same stream without swaps, for comparison.
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            stop.store(true, Ordering::SeqCst);
        })
    };
    let (_, baseline) = stream(&t, stop, "quiet").await;
    quiet.await.expect("timer");

    // Swap between two different components (console, tester) 100 times.
    let stop = Arc::new(AtomicBool::new(false));
    let swapping = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut reports = Vec::new();
            for k in 0..SWAPS {
                let plugin = if k % 2 == 0 { "tester" } else { "console" };
                let bytes = rapidwasm_builtin_plugins::get(plugin).expect("built in");
                let swapped = registry.swap("out", bytes, &format!("builtin:{plugin}"), None).await;
                match swapped {
                    Ok(report) => reports.push(report),
                    Err(err) => {
                        stop.store(true, Ordering::SeqCst);
                        return Err(format!("swap {k} to {plugin}: {err}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.store(true, Ordering::SeqCst);
            Ok(reports)
        })
    };
    let (texts, during) = stream(&t, stop, "swap").await;
    let reports = swapping.await.expect("the swapping task").expect("every swap");
    let versions: Vec<u64> = reports.iter().map(|r| r.plugin.version).collect();
    assert_eq!(versions, (2..SWAPS as u64 + 2).collect::<Vec<_>>());

    let answered: Vec<String> = recorded(&t).into_iter().filter(|r| r.starts_with("swap-")).collect();
    let unique: HashSet<&String> = answered.iter().collect();
    let sent: HashSet<&String> = texts.iter().collect();
    assert_eq!(unique.len(), answered.len(), "no reply was sent twice");
    assert_eq!(unique, sent, "every message's reply was sent, by one version or the other");

    let mut stalls: Vec<f64> = reports.iter().map(|r| r.stall_ns as f64 / 1000.0).collect();
    stalls.sort_by(f64::total_cmp);
    let mut loads: Vec<f64> = reports.iter().map(|r| r.load_us as f64 / 1000.0).collect();
    loads.sort_by(f64::total_cmp);
    let draining: usize = reports.iter().map(|r| r.draining_calls).sum();
    println!(
        "hot swap: {SWAPS} swaps under {} messages from {SENDERS} senders; lost 0, repeated 0; \
         stall (the exchange) per swap: median {:.2} µs, max {:.2} µs; load per swap median {:.1} ms; \
         {draining} calls finished on an old version; latency p50/p99 {:.0}/{:.0} µs while swapping vs {:.0}/{:.0} µs without",
        texts.len(),
        percentile(&stalls, 50),
        stalls[stalls.len() - 1],
        percentile(&loads, 50),
        percentile(&during, 50),
        percentile(&during, 99),
        percentile(&baseline, 50),
        percentile(&baseline, 99),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swaps_are_checked_first_and_the_admin_api_is_guarded() {
    let token = "swap-test-token-0123456789";
    let body = format!("admin_token = \"{token}\"\n{}{}", app("echo", "echo", ""), console("out", ""));
    let t = TestHost::start(&body).await.expect("start");
    let s = t.serve().await;
    let client = reqwest::Client::new();
    let list = format!("{}/admin/v1/plugins", s.base);
    let swap = |name: &str| format!("{}/admin/v1/plugins/{name}/swap", s.base);

    assert_eq!(client.get(&list).send().await.expect("list").status(), StatusCode::UNAUTHORIZED);
    let wrong = client.get(&list).bearer_auth("swap-test-token-012345678X").send().await.expect("list");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let plugins: Value = client.get(&list).bearer_auth(token).send().await.expect("list").json().await.expect("JSON");
    assert_eq!(plugins[1]["name"], "out");
    assert_eq!((plugins[1]["kind"].as_str(), plugins[1]["version"].as_u64()), (Some("backend"), Some(1)));
    assert_eq!(plugins[1]["sha256"].as_str().map(str::len), Some(64));

    let post = |url: String, body: Value| client.post(url).bearer_auth(token).json(&body).send();
    // An app does not fit a backend's world: refused, the old one serves.
    let refused = post(swap("out"), json!({"plugin": "builtin:echo"})).await.expect("swap");
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = refused.json().await.expect("JSON");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("does not fit the backend world") && message.contains("keeps serving"), "{message}");
    let from = |identity: &str| Connection::new("out", identity);
    t.host.router().receive("echo still here", from("1"), Fields::new()).await.expect("receive");
    assert!(t.outbox("out").contains(&("1".to_owned(), "still here".to_owned())));
    let relative = post(swap("out"), json!({"plugin": "relative/out.wasm"})).await.expect("swap");
    assert_eq!(relative.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let garbage = t.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").expect("write");
    let broken = post(swap("out"), json!({"plugin": garbage.display().to_string()})).await.expect("swap");
    assert_eq!(broken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let missing = post(swap("nope"), json!({"plugin": "builtin:console"})).await.expect("swap");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // New settings take effect with the new version.
    let swapped = post(swap("out"), json!({"plugin": "builtin:console", "settings": {"fail_identities": "9"}}))
        .await
        .expect("swap");
    assert_eq!(swapped.status(), StatusCode::OK);
    let report: Value = swapped.json().await.expect("JSON");
    assert_eq!(report["plugin"]["version"], 2);
    t.host.router().receive("echo refused now", from("9"), Fields::new()).await.expect("receive");
    let failure = t.recorder.sends().into_iter().last().expect("a send");
    assert_eq!(failure.3, ["9"], "the new settings fail identity 9");

    // An app swapped for one with other phases is called in those phases.
    let before = t.host.router().receive("echo one", from("1"), Fields::new()).await.expect("receive");
    assert_eq!(t.recorder.phases_of(&before.id), ["echo.handle"]);
    let swapped = post(swap("echo"), json!({"plugin": "builtin:messagelog"})).await.expect("swap");
    assert_eq!(swapped.status(), StatusCode::OK);
    let after = t.host.router().receive("echo two", from("1"), Fields::new()).await.expect("receive");
    assert_eq!(t.recorder.phases_of(&after.id), ["echo.parse"], "messagelog's parse, and no handle");

    // Without a token configured, the admin API is off.
    let plain = TestHost::start(&console("out", "")).await.expect("start");
    let p = plain.serve().await;
    let off = client.get(format!("{}/admin/v1/plugins", p.base)).bearer_auth(token).send().await.expect("list");
    assert_eq!(off.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_loaded_and_unloaded_while_the_host_runs() {
    let gateway = rapidwasm_tests::gateway::Gateway::start(503, "down").await;
    let token = "load-unload-token-0123";
    let body = format!(
        "admin_token = \"{token}\"\n[router]\nkind = \"durable\"\nretry_initial_ms = 200\nretry_max_ms = 400\n{}{}{}",
        app("echo", "echo", ""),
        app("default", "default", ""),
        console("console", ""),
    );
    let t = TestHost::start(&body).await.expect("start");
    let served = t.serve().await;
    let client = reqwest::Client::new();
    let plugins = format!("{}/admin/v1/plugins", served.base);
    let answer = async |text: &str| -> Vec<String> {
        let body = json!({"text": text, "backend": "console", "identity": "5"});
        let reply: Value = client
            .post(format!("{}/api/v1/receive", served.base))
            .json(&body)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        reply["responses"]
            .as_array()
            .expect("responses")
            .iter()
            .map(|r| r["text"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let load =
        async |request: Value| client.post(&plugins).bearer_auth(token).json(&request).send().await.expect("post");

    // An app, first in the phases.
    assert_eq!(answer("ping").await, ["Sorry, RapidSMS could not understand your message."]);
    let response = load(json!({"name": "ping", "kind": "app", "plugin": "builtin:ping", "position": 0})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(t.host.router().app_names(), ["ping", "echo", "default"]);
    assert_eq!(answer("ping").await, ["pong"]);
    let again = load(json!({"name": "ping", "kind": "app", "plugin": "builtin:ping"})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let robot = load(json!({"name": "robot", "kind": "robot", "plugin": "builtin:ping"})).await;
    assert_eq!(robot.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let wrong = load(json!({"name": "pinger", "kind": "backend", "plugin": "builtin:ping"})).await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY, "an app does not fit the backend world");
    assert!(!t.host.registry().contains("pinger"), "nothing is left of a refused load");

    // A backend: its sends fail while the gateway is down, so they wait in
    // the outbox; unloaded, they stay there; loaded again, they are sent.
    let settings = json!({"outbound_url": format!("{}/send?to={{identity}}&text={{text}}", gateway.url())});
    let sms = json!({"name": "sms", "kind": "backend", "plugin": "builtin:http", "settings": settings, "allowed_hosts": [gateway.host()]});
    assert_eq!(load(sms.clone()).await.status(), StatusCode::CREATED);
    let sent: Value = client
        .post(format!("{}/api/v1/send", served.base))
        .json(&json!({"text": "kept", "connections": [{"backend": "sms", "identity": "9"}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let id = sent["message_id"].as_str().expect("id").to_owned();
    rapidwasm_tests::eventually(Duration::from_secs(5), async || (!gateway.requests().is_empty()).then_some(()))
        .await
        .expect("the backend tried");
    let response = client.delete(format!("{plugins}/sms")).bearer_auth(token).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(t.host.router().backend_names(), ["console"]);
    let tries = gateway.requests().len();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(gateway.requests().len(), tries, "an unloaded backend sends nothing");
    let (record, _) = t.host.router().message_record(&id).expect("read").expect("stored");
    assert_eq!(record.text, "kept");
    gateway.set_status(200);
    assert_eq!(load(sms).await.status(), StatusCode::CREATED);
    let delivered = rapidwasm_tests::eventually(Duration::from_secs(5), async || {
        let requests = gateway.requests();
        let last = requests.last()?;
        let pairs = rapidwasm_tests::gateway::query_pairs(last);
        (rapidwasm_tests::gateway::value(&pairs, "text") == Some("kept") && tries < requests.len()).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "the message that waited was sent by the backend loaded again");

    // Unloading an app takes it out of the phases; unknown names are 404.
    let response = client.delete(format!("{plugins}/ping")).bearer_auth(token).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(answer("ping").await, ["Sorry, RapidSMS could not understand your message."]);
    let response = client.delete(format!("{plugins}/ping")).bearer_auth(token).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client.delete(format!("{plugins}/echo")).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_is_swapped_when_its_file_changes() {
    let files = tempfile::tempdir().expect("temp dir");
    let file = files.path().join("greeter.wasm");
    let component = |name: &str| rapidwasm_builtin_plugins::get(name).expect("a built-in plugin").to_vec();
    std::fs::write(&file, component("echo")).expect("write");
    let body = format!(
        "watch_plugins = true\n[[apps]]\nname = \"greeter\"\nplugin = {:?}\n{}{}",
        file.display().to_string(),
        app("default", "default", ""),
        console("console", "")
    );
    let t = TestHost::start(&body).await.expect("start");
    let greeter = |t: &TestHost| t.host.registry().list().into_iter().find(|p| p.name == "greeter").expect("listed");
    assert_eq!(t.receive("1", "echo hi").await.sent[0].text, "hi");

    // A new component in the file: swapped in, checked first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&file, component("ping")).expect("write");
    let swapped =
        rapidwasm_tests::eventually(Duration::from_secs(10), async || (greeter(&t).version == 2).then_some(())).await;
    assert!(swapped.is_some(), "the changed file was swapped in: {:?}", greeter(&t));
    assert_eq!(t.receive("1", "ping").await.sent[0].text, "pong");

    // Garbage in the file: refused, the running version keeps serving.
    std::fs::write(&file, b"not a component").expect("write");
    tokio::time::sleep(rapidwasm::watch::INTERVAL * 4).await;
    assert_eq!(greeter(&t).version, 2);
    assert_eq!(t.receive("1", "ping").await.sent[0].text, "pong");
}
