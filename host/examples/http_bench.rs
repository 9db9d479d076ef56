//! Inbound over HTTP, end to end on loopback: concurrent clients send
//! "echo N" to the generic `http` backend's URL, as a gateway would; the
//! messagelog, echo and default apps route it; the echo reply leaves through
//! the same backend's outbound URL to a sink on loopback.
//!
//! ```sh
//! cargo run --release -p rapidwasm --example http_bench -- [MESSAGES] [CLIENTS] [RUNS]
//! ```
//!
//! Prints, as medians over RUNS: messages per second, and the p50 and p99 of
//! the time from request to the gateway's answer (which comes after the
//! reply has been handed to the outbound gateway).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

mod common;

use common::{median, number_arg, percentile, settle};
use rapidwasm::Host;
use rapidwasm::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rapidwasm::process::tune_memory()?;
    let mut args = std::env::args().skip(1);
    let messages = number_arg(&mut args, 4000)?;
    let clients = number_arg(&mut args, 16)?;
    let runs = number_arg(&mut args, 3)?;

    // The outbound gateway: counts what it is sent.
    let delivered = Arc::new(AtomicUsize::new(0));
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    let counter = delivered.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            "queued"
        }
    });
    tokio::spawn(async move { axum::serve(sink, app).await });

    let dir = tempfile::tempdir()?;
    let apps = include_str!("../../bench/apps/rapidsms.toml");
    let toml = format!(
        "data_dir = {:?}\n{apps}\n[backends.http]\nplugin = \"builtin:http\"\nallowed_hosts = [\"{sink_addr}\"]\n\
         settings = {{ outbound_url = \"http://{sink_addr}/send?to={{identity}}&text={{text}}\" }}\n",
        dir.path().display().to_string()
    );
    let config = Config::parse(&toml, "bench", dir.path(), None)?;
    let host = Host::start(config, Vec::new()).await?;
    let listener = rapidwasm::http::bind("127.0.0.1:0".parse()?).await?;
    let base = format!("http://{}/backends/http/", listener.local_addr()?);
    let site = rapidwasm::http::Site::for_host(&host);
    tokio::spawn(rapidwasm::http::serve(listener, site, std::future::pending()));

    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let send = |client: reqwest::Client, url: String| async move {
        let response = client.get(url).send().await?;
        anyhow::ensure!(response.status().is_success(), "answered {}", response.status());
        anyhow::Ok(())
    };
    for i in 0..200 {
        send(client.clone(), format!("{base}?identity=warm&text=echo+{i}")).await?;
    }

    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let before = delivered.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, base) = (client.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in 0..messages / clients {
                    let sent = Instant::now();
                    send(client.clone(), format!("{base}?identity=r{run}c{c}&text=echo+{i}")).await?;
                    latencies.push(sent.elapsed().as_secs_f64() * 1e6);
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        settle(host.store()).await?;
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            delivered.load(Ordering::Relaxed) - before == latencies.len(),
            "every message's reply reached the outbound gateway"
        );
        latencies.sort_by(f64::total_cmp);
        rates.push(latencies.len() as f64 / elapsed);
        p50s.push(percentile(&latencies, 50));
        p99s.push(percentile(&latencies, 99));
    }

    println!("messages per run: {}, clients: {clients}, runs: {runs}", messages / clients * clients);
    println!(
        "inbound HTTP → apps → outbound HTTP: median {:.0} messages/s, p50 {:.0} µs, p99 {:.0} µs",
        median(rates),
        median(p50s),
        median(p99s)
    );
    host.shutdown()?;
    Ok(())
}
