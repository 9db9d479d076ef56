//! Routing throughput through real components: each message passes the
//! apps and its response a backend: `memory` (keeps it in the instance's
//! memory; the issue's "in-memory backend") unless `--backend console`
//! (stores each reply in sled) or another built-in backend is named.
//!
//! ```sh
//! cargo run --release -p rapidwasm --example receive_bench -- [--durable] [--senders N] [--backend NAME] [MESSAGES] [RUNS] [APPS.toml]
//! ```
//!
//! Prints the median over RUNS of: microseconds per message routed one at a
//! time, and messages per second with N (default 64) routed concurrently,
//! then the latency of an open-loop load at half of that rate.
//!
//! With `--durable` the router is the durable one: every message and its
//! response are committed to the journal (fsync, grouped), and a run's time
//! includes sending everything it queued and applying the journal to sled.
//! Either way a run's time includes applying the plugins' storage writes to
//! sled (they are written behind).
//!
//! `APPS.toml` holds `[[apps]]` tables that replace the default app list
//! (`echo` alone); messages are "echo N" and must be answered with "N".
//! `bench/apps/rapidsms.toml` is RapidSMS's echo workload (messagelog, echo,
//! default); putting a Python or JavaScript app in front of `echo` measures
//! what its calls cost.

use std::time::Instant;

mod common;

use common::{median, number_arg, percentile, settle, take_flag, take_option};
use rapidwasm::Host;
use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields};

const APPS: &str = r#"
[[apps]]
name = "echo"
plugin = "builtin:echo"
"#;

/// How long a run may take to send what it queued (durable router).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rapidwasm::process::tune_memory()?;
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    let durable = take_flag(&mut all, "--durable");
    let senders = take_option(&mut all, "--senders")?.map(|n| n.parse()).transpose()?.unwrap_or(64);
    let backend = take_option(&mut all, "--backend")?.unwrap_or_else(|| "memory".to_owned());
    let mut args = all.into_iter();
    let messages = number_arg(&mut args, 2000)?;
    let runs = number_arg(&mut args, 5)?;
    let apps = match args.next() {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?,
        None => APPS.to_owned(),
    };
    let dir = tempfile::tempdir()?;
    let router_kind = if durable { "[router]\nkind = \"durable\"\n" } else { "" };
    let config = Config::parse(
        &format!(
            "data_dir = {:?}\n{router_kind}{apps}\n[backends.{backend}]\nplugin = \"builtin:{backend}\"\n",
            dir.path().display().to_string()
        ),
        "bench",
        dir.path(),
        None,
    )?;
    let host = Host::start(config, Vec::new()).await?;
    let router = host.router().clone();
    let from = Connection::new(backend.as_str(), "bench");

    for i in 0..200 {
        router.receive(format!("echo warm {i}"), from.clone(), Fields::new()).await?;
    }

    let mut sequential = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut concurrent = Vec::new();
    let mut grouping = Vec::new();
    let mut per_message = Vec::new();
    let mut half_p50 = Vec::new();
    let mut half_p99 = Vec::new();
    let tasks = senders;
    for _ in 0..runs {
        let start = Instant::now();
        let mut latencies = Vec::with_capacity(messages);
        for i in 0..messages {
            let sent = Instant::now();
            let msg = router.receive(format!("echo {i}"), from.clone(), Fields::new()).await?;
            latencies.push(sent.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(msg.sent.len() == 1 && msg.sent[0].text == i.to_string(), "echo {i} was not answered");
        }
        anyhow::ensure!(router.drain(DRAIN).await == (0, 0), "the durable router did not drain");
        settle(host.store()).await?;
        sequential.push(start.elapsed().as_secs_f64() * 1e6 / messages as f64);
        latencies.sort_by(f64::total_cmp);
        p50.push(percentile(&latencies, 50));
        p99.push(percentile(&latencies, 99));

        let before = router.journal().map(|j| j.stats());
        let start = Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let router = router.clone();
            let from = Connection::new(backend.as_str(), format!("bench{t}"));
            handles.push(tokio::spawn(async move {
                for i in 0..messages / tasks {
                    router.receive(format!("echo {i}"), from.clone(), Fields::new()).await?;
                }
                anyhow::Ok(())
            }));
        }
        for handle in handles {
            handle.await??;
        }
        anyhow::ensure!(router.drain(DRAIN).await == (0, 0), "the durable router did not drain");
        settle(host.store()).await?;
        let peak = (messages / tasks * tasks) as f64 / start.elapsed().as_secs_f64();
        concurrent.push(peak);
        if let (Some(before), Some(after)) = (before, router.journal().map(|j| j.stats())) {
            let writes = (after.writes - before.writes) as f64;
            grouping.push(writes / (after.flushes - before.flushes).max(1) as f64);
            per_message.push(writes / (messages / tasks * tasks) as f64);
        }

        // Open loop at half of that peak: messages leave on schedule
        // whether or not earlier ones are done (Tokio's timer ticks in
        // 1 ms, so they leave in small bursts), each on its own task.
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs_f64(2.0 / peak));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut handles = Vec::with_capacity(messages);
        for i in 0..messages {
            ticker.tick().await;
            let router = router.clone();
            let from = Connection::new(backend.as_str(), format!("paced{}", i % tasks));
            handles.push(tokio::spawn(async move {
                let sent = Instant::now();
                router.receive(format!("echo {i}"), from, Fields::new()).await?;
                anyhow::Ok(sent.elapsed().as_secs_f64() * 1e6)
            }));
        }
        let mut latencies = Vec::with_capacity(messages);
        for handle in handles {
            latencies.push(handle.await??);
        }
        latencies.sort_by(f64::total_cmp);
        half_p50.push(percentile(&latencies, 50));
        half_p99.push(percentile(&latencies, 99));
        anyhow::ensure!(router.drain(DRAIN).await == (0, 0), "the durable router did not drain");
    }

    println!("messages per run: {messages}, runs: {runs}");
    println!(
        "one at a time: median {:.1} µs per message (receive + echo + response + {backend} send)",
        median(sequential)
    );
    println!("latency one at a time: p50 {:.1} µs, p99 {:.1} µs (medians over runs)", median(p50), median(p99));
    println!("{tasks} concurrent senders: median {:.0} messages/s", median(concurrent));
    println!(
        "at half of that peak, open loop: p50 {:.1} µs, p99 {:.1} µs (medians over runs)",
        median(half_p50),
        median(half_p99)
    );
    if !grouping.is_empty() {
        println!(
            "durable, concurrent: median {:.1} journal writes per fsync, {:.2} per message",
            median(grouping),
            median(per_message)
        );
    }
    host.shutdown()?;
    Ok(())
}
