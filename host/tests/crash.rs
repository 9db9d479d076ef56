//! Crash safety, with real processes: the host (`rapidwasm serve`, durable
//! router) takes a flood of inbound messages over HTTP, is killed with
//! SIGKILL half-way, restarted, and drains. Every message that got a 2xx must
//! be answered through a real HTTP listener; duplicates are counted.
//!
//! The client behaves like a gateway: a message whose request failed (no
//! 2xx) is sent again after the restart with the same provider id, which the
//! host recognises, so nothing is routed twice because of it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rapidwasm");
/// Messages pushed in all.
const MESSAGES: usize = 10_000;
/// Concurrent client connections.
const CLIENTS: usize = 32;
/// Kill the host once this many messages were acknowledged.
const KILL_AFTER: usize = 4_000;
/// Sends in flight per backend (`router.send_concurrency`). A kill can
/// duplicate those, and up to four times as many that returned but whose
/// outcome was not yet on disk, since a send is recorded only after the
/// gateway answered.
const SEND_CONCURRENCY: usize = 16;

/// The answers the host sent, counted by text.
#[derive(Default)]
struct Received {
    counts: Mutex<HashMap<String, usize>>,
}

async fn recorder() -> (SocketAddr, Arc<Received>) {
    let received = Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the recorder");
    let addr = listener.local_addr().expect("address");
    let shared = received.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let shared = shared.clone();
        async move {
            let query = uri.query().unwrap_or_default();
            let text = query.split('&').find_map(|pair| pair.strip_prefix("text=")).unwrap_or_default().to_owned();
            *shared.counts.lock().expect("lock").entry(text).or_default() += 1;
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn start_host(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("host log");
    Command::new(BIN)
        .args(["--config", &config.display().to_string(), "serve"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start rapidwasm serve")
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the host did not start listening on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Push messages `todo` from `CLIENTS` tasks; each acknowledged one goes in
/// `acked`. Stops early (leaving the rest) when `stop` is set.
async fn push(base: &str, todo: Vec<usize>, acked: &Arc<Mutex<HashSet<usize>>>, stop: &Arc<AtomicBool>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let todo = Arc::new(todo);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, next, todo, acked, stop) =
            (client.clone(), next.clone(), todo.clone(), acked.clone(), stop.clone());
        let url = format!("{base}/backends/http/");
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let Some(&n) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else { break };
                let form = [
                    ("identity", format!("{}", 1000 + n % 500)),
                    ("text", format!("echo m{n}")),
                    ("mid", format!("gw-{n}")),
                ];
                if let Ok(response) = client.post(&url).form(&form).send().await
                    && response.status().is_success()
                {
                    acked.lock().expect("lock").insert(n);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_when_the_host_is_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (sink, received) = recorder().await;
    let port = free_port();
    let config = dir.path().join("rapidwasm.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
listen = "127.0.0.1:{port}"

[router]
kind = "durable"
send_concurrency = {SEND_CONCURRENCY}
retry_initial_ms = 50
retry_max_ms = 1000
max_attempts = 1000

[[apps]]
name = "echo"
plugin = "builtin:echo"

[backends.http]
plugin = "builtin:http"
allowed_hosts = ["{sink}"]
settings = {{ id_name = "mid", outbound_url = "http://{sink}/out?to={{identity}}&text={{text}}" }}
"#
        ),
    )
    .expect("write config");
    let log = dir.path().join("host.log");
    let base = format!("http://127.0.0.1:{port}");

    let mut host = start_host(&config, &log);
    wait_for_port(port).await;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let pushing = {
        let (base, acked, stop) = (base.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move { push(&base, (0..MESSAGES).collect(), &acked, &stop).await })
    };
    while acked.lock().expect("lock").len() < KILL_AFTER && !pushing.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill().expect("SIGKILL the host");
    let _ = host.wait();
    let killed_at = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = pushing.await;
    let acked_at_kill = acked.lock().expect("lock").len();
    let answered_at_kill: usize = received.counts.lock().expect("lock").len();

    // Restart; the client sends again what got no 2xx (a gateway retrying).
    let mut host = start_host(&config, &log);
    wait_for_port(port).await;
    let rest: Vec<usize> = {
        let acked = acked.lock().expect("lock");
        (0..MESSAGES).filter(|n| !acked.contains(n)).collect()
    };
    let resent = rest.len();
    push(&base, rest, &acked, &Arc::new(AtomicBool::new(false))).await;
    let acked: HashSet<usize> = acked.lock().expect("lock").clone();

    // Let it drain: every acknowledged message answered.
    let deadline = Instant::now() + Duration::from_secs(300);
    let missing = loop {
        let counts = received.counts.lock().expect("lock").clone();
        let missing: Vec<usize> = acked.iter().copied().filter(|n| !counts.contains_key(&format!("m{n}"))).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = started.elapsed();
    let _ = host.kill();
    let _ = host.wait();

    let counts = received.counts.lock().expect("lock").clone();
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    let strays = counts.keys().filter(|t| !t.starts_with('m')).count();
    println!(
        "crash test: {MESSAGES} messages, {CLIENTS} clients; SIGKILL after {:.2?} with {acked_at_kill} acknowledged and \
         {answered_at_kill} answered; {resent} re-sent after the restart; {} acknowledged in all; lost {}; \
         duplicates {duplicates}; everything answered after {:.2?}",
        killed_at,
        acked.len(),
        missing.len(),
        total
    );
    assert_eq!(acked.len(), MESSAGES, "every message was acknowledged in the end");
    assert!(
        missing.is_empty(),
        "acknowledged but never answered: {} (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(strays, 0, "only echo answers: {counts:?}");
    assert!(
        duplicates <= 5 * SEND_CONCURRENCY,
        "{duplicates} duplicates; at most the {SEND_CONCURRENCY} sends in flight at the kill, and four times as many being recorded, may repeat"
    );
}
