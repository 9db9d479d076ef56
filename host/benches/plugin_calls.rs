//! Micro figures: what one plugin call, one fresh instance and one routed
//! message cost, through the real components.
//!
//! ```sh
//! cargo bench -p rapidwasm --bench plugin_calls
//! ```

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rapidwasm::Host;
use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields, IncomingMessage};
use rapidwasm::plugins::{AllowedHosts, Grants, HostContext, Limits, PluginEngine, PluginSpec, WasmApp};
use rapidwasm::router::{App, Phase, RouterLink};
use rapidwasm::store::SledStore;

/// The same allocator as the `rapidwasm` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn spec(name: &str) -> PluginSpec {
    PluginSpec {
        name: name.to_owned(),
        settings: Fields::new(),
        limits: Limits::default(),
        allowed_hosts: AllowedHosts::none(),
        grants: Grants::default(),
        compile_cache: None,
    }
}

fn plugin_calls(c: &mut Criterion) {
    rapidwasm::process::tune_memory().expect("small pages");
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(SledStore::open(&dir.path().join("micro")).expect("a sled store"));
    let host = HostContext { router: RouterLink::new(), store, max_text_bytes: 64 * 1024 };
    let engine = PluginEngine::shared().expect("the engine");
    let echo = rapidwasm_builtin_plugins::get("echo").expect("the echo plugin");
    let app = runtime.block_on(WasmApp::load(&engine, echo, spec("echo"), host.clone())).expect("echo loads");
    let msg = IncomingMessage::new("echo hello", Connection::new("console", "1"));

    c.bench_function("phase call: echo's handle, warm instance", |b| {
        b.to_async(&runtime).iter(|| async {
            let outcome = app.incoming(Phase::Handle, &msg, 0).await.expect("handled");
            assert!(outcome.returned);
        })
    });
    c.bench_function("phase call: echo's handle, not exported phase skipped", |b| {
        b.iter(|| app.phases().contains(Phase::Filter));
    });
    c.bench_function("instantiate and configure: echo, compiled component cached", |b| {
        b.to_async(&runtime).iter(|| async {
            WasmApp::load(&engine, echo, spec("echo"), host.clone()).await.expect("echo loads");
        })
    });

    let config = Config::parse(
        &format!(
            "data_dir = {:?}\n{}\n[backends.console]\nplugin = \"builtin:console\"\n",
            dir.path().join("route").display().to_string(),
            include_str!("../../bench/apps/rapidsms.toml")
        ),
        "bench",
        dir.path(),
        None,
    )
    .expect("a valid configuration");
    let host = runtime.block_on(Host::start(config, Vec::new())).expect("the host starts");
    let router = host.router().clone();
    let from = Connection::new("console", "bench");
    c.bench_function("route one message: messagelog, echo, default; reply via console", |b| {
        b.to_async(&runtime).iter(|| async {
            let msg = router.receive("echo hi", from.clone(), Fields::new()).await.expect("routed");
            assert_eq!(msg.sent.len(), 1);
        })
    });
}

criterion_group!(benches, plugin_calls);
criterion_main!(benches);
