//! Bad configuration and bad plugins are refused with a clear error.

use std::io::Write;

use rapidwasm_tests::{TestHost, app, console};

async fn start_error(body: &str) -> String {
    match TestHost::start(body).await {
        Ok(_) => panic!("the host started with:\n{body}"),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_component_is_refused() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"not wasm at all").expect("write");
    let body = format!("[[apps]]\nname = \"junk\"\nplugin = {:?}\n", file.path().display().to_string());
    let err = start_error(&body).await;
    assert!(err.starts_with("plugin `junk` is not a valid WebAssembly component"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_loaded_as_an_app_does_not_fit_the_world() {
    let err = start_error(&app("wrong", "console", "")).await;
    assert!(err.starts_with("plugin `wrong` does not fit the app world"), "{err}");
    let err = start_error(&console("c", "").replace("builtin:console", "builtin:echo")).await;
    assert!(err.starts_with("plugin `c` does not fit the backend world"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_a_plugin_refuses_are_reported_with_its_words() {
    let err = start_error(&app("p", "probe", r#"filter = "maybe""#)).await;
    assert_eq!(err, "plugin `p` refused its settings: setting `filter` must be true or false, not `maybe`");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_errors_name_the_key() {
    let err = start_error("[[apps]]\nname = \"x\"\nplugin = \"builtin:nosuch\"\n").await;
    assert!(err.contains("`apps[0].plugin`: no built-in plugin \"nosuch\""), "{err}");
    let err = start_error("[limits]\nmemory_mib = 0\n").await;
    assert!(err.contains("`limits.memory_mib`: 0 is outside 1..=4096"), "{err}");
    let err = start_error("[backends.b]\nplugin = \"builtin:console\"\ncolour = 1\n").await;
    assert!(err.contains("unknown field `colour`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_uses_the_network_is_refused() {
    let err = start_error(&app("fetcher", "fetcher", "")).await;
    assert!(err.starts_with("plugin `fetcher` does not fit the app world"), "{err}");
    assert!(err.contains("component imports instance `wasi:http/"), "{err}");
    assert!(err.ends_with("(apps have no network access: only backends may use wasi:http)"), "{err}");
}
