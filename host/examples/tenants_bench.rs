//! Throughput with 1, 10 and 100 tenants in one host: each tenant runs
//! RapidSMS's echo workload (messagelog, echo, default; replies through its
//! own console backend, a sled write each) on trees of its own; 64
//! concurrent senders are spread over the tenants.
//!
//! ```sh
//! cargo run --release -p rapidwasm --example tenants_bench -- [MESSAGES] [RUNS] [TENANTS,...]
//! ```
//!
//! Prints, per tenant count, the median messages per second over RUNS
//! (after one unmeasured run) and its ratio to the first count's. The
//! hosts for every count run side by side and take turns, run by run.

use std::time::Instant;

mod common;

use common::{median, number_arg, percentile, settle};
use rapidwasm::Host;
use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields};

const SENDERS: usize = 64;

/// A host with `tenants` tenants (the default one and `tenants - 1` more),
/// each with the echo workload.
fn config(dir: &std::path::Path, tenants: usize) -> anyhow::Result<Config> {
    let apps = include_str!("../../bench/apps/rapidsms.toml");
    let console = "[backends.console]\nplugin = \"builtin:console\"\n";
    let mut text = format!("data_dir = {:?}\n{apps}\n{console}", dir.display().to_string());
    for t in 1..tenants {
        text.push_str(&format!("[tenants.t{t}]\napi_keys = [\"bench-key-{t:012}\"]\n"));
        text.push_str(&apps.replace("[[apps]]", &format!("[[tenants.t{t}.apps]]")));
        text.push_str(&console.replace("[backends.", &format!("[tenants.t{t}.backends.")));
    }
    Ok(Config::parse(&text, "bench", dir, None)?)
}

/// One host under measurement, and what its runs measured.
struct Bench {
    tenants: usize,
    host: Host,
    routers: Vec<rapidwasm::router::Router>,
    start_ms: u128,
    rates: Vec<f64>,
    p99s: Vec<f64>,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(tenants: usize) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        let host = Host::start(config(dir.path(), tenants)?, Vec::new()).await?;
        let start_ms = started.elapsed().as_millis();
        let routers: Vec<_> = host.tenants().iter().map(|t| t.router().clone()).collect();
        for router in &routers {
            for i in 0..20 {
                router.receive(format!("echo warm {i}"), Connection::new("console", "warm"), Fields::new()).await?;
            }
        }
        Ok(Bench { tenants, host, routers, start_ms, rates: Vec::new(), p99s: Vec::new(), _dir: dir })
    }

    /// `messages` from [`SENDERS`] concurrent senders spread over the
    /// tenants; kept unless `measured` is false.
    async fn run(&mut self, messages: usize, measured: bool) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut handles = Vec::new();
        for s in 0..SENDERS {
            let router = self.routers[s % self.routers.len()].clone();
            let from = Connection::new("console", format!("bench{s}"));
            handles.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..messages / SENDERS {
                    let sent = Instant::now();
                    let msg = router.receive(format!("echo {i}"), from.clone(), Fields::new()).await?;
                    latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                    anyhow::ensure!(msg.sent.len() == 1, "echo {i} was not answered");
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for handle in handles {
            latencies.extend(handle.await??);
        }
        settle(self.host.store()).await?;
        if measured {
            self.rates.push((messages / SENDERS * SENDERS) as f64 / start.elapsed().as_secs_f64());
            latencies.sort_by(f64::total_cmp);
            self.p99s.push(percentile(&latencies, 99));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rapidwasm::process::tune_memory()?;
    let mut args = std::env::args().skip(1);
    let messages = number_arg(&mut args, 4000)?;
    let runs = number_arg(&mut args, 3)?;
    let counts: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 10, 100],
    };
    let mut benches = Vec::new();
    for &tenants in &counts {
        benches.push(Bench::start(tenants).await?);
    }
    // The hosts take turns, run by run, so that a stretch of a slower
    // machine (this VM has them, minutes long) weighs on every count alike
    // rather than on whichever ran then. One unmeasured run each first: it
    // fills each plugin's instance pool to the concurrency it meets, as a
    // host serving for a while has.
    for run in 0..=runs {
        for bench in &mut benches {
            bench.run(messages, run > 0).await?;
        }
    }
    let mut first = None;
    for bench in benches {
        let rate = median(bench.rates);
        let base = *first.get_or_insert(rate);
        println!(
            "{} tenant{}: median {rate:.0} messages/s, p99 {:.0} µs ({:.2}x of {} tenant{}; started in {} ms)",
            bench.tenants,
            if bench.tenants == 1 { "" } else { "s" },
            median(bench.p99s),
            rate / base,
            counts[0],
            if counts[0] == 1 { "" } else { "s" },
            bench.start_ms,
        );
        bench.host.shutdown()?;
    }
    Ok(())
}
