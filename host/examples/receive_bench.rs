//! Routing throughput through real components: each message passes the
//! `echo` app and its response the `console` backend (which stores it in
//! sled).
//!
//! ```sh
//! cargo run --release -p rapidwasm --example receive_bench -- [MESSAGES] [RUNS] [APPS.toml]
//! ```
//!
//! Prints the median over RUNS of: microseconds per message routed one at a
//! time, and messages per second with several routed concurrently.
//!
//! `APPS.toml` holds more `[[apps]]` tables, placed before `echo`: every
//! message then also passes their `handle` (which must not handle "echo …"),
//! so the difference to a run without them is what their calls cost — for
//! example a Python or JavaScript app's.

use std::time::Instant;

use rapidwasm::Host;
use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields};

const CONFIG: &str = r#"
[[apps]]
name = "echo"
plugin = "builtin:echo"

[backends.console]
plugin = "builtin:console"
"#;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let extra = match args.next() {
        Some(path) => std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {path}: {e}"))?,
        None => String::new(),
    };
    let dir = tempfile::tempdir()?;
    let config = Config::parse(
        &format!("data_dir = {:?}\n{extra}\n{CONFIG}", dir.path().display().to_string()),
        "bench",
        dir.path(),
        None,
    )?;
    let host = Host::start(config, Vec::new()).await?;
    let router = host.router().clone();
    let from = Connection::new("console", "bench");

    for i in 0..200 {
        router.receive(format!("echo warm {i}"), from.clone(), Fields::new()).await?;
    }

    let mut sequential = Vec::new();
    let mut concurrent = Vec::new();
    let tasks = 8;
    for _ in 0..runs {
        let start = Instant::now();
        for i in 0..messages {
            let msg = router.receive(format!("echo {i}"), from.clone(), Fields::new()).await?;
            assert_eq!(msg.sent.len(), 1);
        }
        sequential.push(start.elapsed().as_secs_f64() * 1e6 / messages as f64);

        let start = Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let router = router.clone();
            let from = Connection::new("console", format!("bench{t}"));
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
        concurrent.push((messages / tasks * tasks) as f64 / start.elapsed().as_secs_f64());
    }

    println!("messages per run: {messages}, runs: {runs}");
    println!(
        "one at a time: median {:.1} µs per message (receive + echo + response + console send)",
        median(sequential)
    );
    println!("{tasks} concurrent senders: median {:.0} messages/s", median(concurrent));
    host.shutdown()?;
    Ok(())
}
