//! A hot swap under load: senders route RapidSMS's echo workload without
//! pause while the console backend is swapped again and again (a new
//! version each time, from the compiled cache).
//!
//! ```sh
//! cargo run --release -p rapidwasm --example swap_bench -- [SWAPS] [SENDERS]
//! ```
//!
//! Prints the median and largest time each swap's exchange of versions
//! took (the stall; no call waits for it), the median load time of the
//! new version (calls run on meanwhile), and message latency with and
//! without swapping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{median, number_arg, percentile};
use rapidwasm::Host;
use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields};
use rapidwasm::router::Router;

/// Route messages until `stop`; returns each one's latency in µs.
async fn load(router: Router, sender: usize, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<f64>> {
    let from = Connection::new("console", format!("bench{sender}"));
    let mut latencies = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let msg = router.receive(format!("echo {i}"), from.clone(), Fields::new()).await?;
        latencies.push(sent.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(msg.sent.len() == 1, "echo {i} was not answered");
        i += 1;
    }
    Ok(latencies)
}

/// Run `senders` while `during` runs; their sorted latencies.
async fn measure(
    router: &Router,
    senders: usize,
    during: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Vec<f64>> {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..senders).map(|s| tokio::spawn(load(router.clone(), s, stop.clone()))).collect();
    during.await?;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rapidwasm::process::tune_memory()?;
    let mut args = std::env::args().skip(1);
    let swaps = number_arg(&mut args, 100)?;
    let senders = number_arg(&mut args, 4)?;
    let dir = tempfile::tempdir()?;
    let text = format!(
        "data_dir = {:?}\n{}\n[backends.console]\nplugin = \"builtin:console\"\n",
        dir.path().display().to_string(),
        include_str!("../../bench/apps/rapidsms.toml")
    );
    let host = Host::start(Config::parse(&text, "bench", dir.path(), None)?, Vec::new()).await?;
    let router = host.router().clone();
    let registry = host.registry().clone();
    let console = rapidwasm_builtin_plugins::get("console").ok_or_else(|| anyhow::anyhow!("no console plugin"))?;
    for i in 0..200 {
        router.receive(format!("echo warm {i}"), Connection::new("console", "warm"), Fields::new()).await?;
    }

    let pause = Duration::from_millis(20);
    let quiet = measure(&router, senders, async {
        tokio::time::sleep(pause * swaps as u32).await;
        Ok(())
    })
    .await?;
    let mut stalls = Vec::new();
    let mut loads = Vec::new();
    let swapping = measure(&router, senders, async {
        for n in 0..swaps {
            tokio::time::sleep(pause).await;
            // New settings each time: a new version of the same component.
            let settings = Fields::from([("fail_identities".to_owned(), format!("nobody{n}"))]);
            let report = registry.swap("console", console, "builtin:console", Some(settings)).await?;
            stalls.push(report.stall_ns as f64 / 1000.0);
            loads.push(report.load_us as f64 / 1000.0);
        }
        Ok(())
    })
    .await?;

    let largest = stalls.iter().copied().fold(0.0, f64::max);
    println!(
        "{swaps} swaps under load from {senders} senders: stall (the exchange) median {:.2} µs, largest {largest:.2} µs; \
         loading the new version median {:.2} ms (calls ran on)",
        median(stalls),
        median(loads)
    );
    println!(
        "latency while swapping: p50 {:.0} µs, p99 {:.0} µs over {} messages; without: p50 {:.0} µs, p99 {:.0} µs over {}",
        percentile(&swapping, 50),
        percentile(&swapping, 99),
        swapping.len(),
        percentile(&quiet, 50),
        percentile(&quiet, 99),
        quiet.len()
    );
    host.shutdown()?;
    Ok(())
}
