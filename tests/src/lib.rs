//! Helpers for rapidwasm's integration tests: a host on a temporary sled
//! store, loaded with real components, whose router events are recorded.

use std::path::Path;
use std::sync::{Arc, Mutex};

pub mod gateway;
pub mod guests;
pub mod system;

use rapidwasm::config::Config;
use rapidwasm::messages::{Connection, Fields, IncomingMessage};
use rapidwasm::router::{Observer, PhaseResult, RouterEvent};
use rapidwasm::store::StoreError;
use rapidwasm::{Host, StartError};

/// Records every router event.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<RouterEvent>>,
}

impl Observer for Recorder {
    fn event(&self, event: &RouterEvent) {
        self.events.lock().expect("recorder lock").push(event.clone());
    }
}

impl Recorder {
    /// Everything recorded so far.
    pub fn events(&self) -> Vec<RouterEvent> {
        self.events.lock().expect("recorder lock").clone()
    }

    /// Forget what was recorded.
    pub fn clear(&self) {
        self.events.lock().expect("recorder lock").clear();
    }

    /// `app.phase` for each phase call on message `id`, in order (failed
    /// calls are suffixed with `!`).
    pub fn phases_of(&self, id: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RouterEvent::Phase { message_id, app, phase, result } if message_id == id => {
                    let mark = if matches!(result, PhaseResult::Failed(_)) { "!" } else { "" };
                    Some(format!("{app}.{phase}{mark}"))
                }
                _ => None,
            })
            .collect()
    }

    /// How app `name`'s `handle` phase ended on message `id`, if it ran.
    pub fn handle_of(&self, id: &str, name: &str) -> Option<PhaseResult> {
        self.events().into_iter().find_map(|e| match e {
            RouterEvent::Phase { message_id, app, phase, result }
                if message_id == id && app == name && phase == rapidwasm::router::Phase::Handle =>
            {
                Some(result)
            }
            _ => None,
        })
    }

    /// The message ids of every `Received` event, in order.
    pub fn received_ids(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RouterEvent::Received { message_id, .. } => Some(message_id),
                _ => None,
            })
            .collect()
    }

    /// The message ids of every `Sent` event, in order.
    pub fn sent_ids(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RouterEvent::Sent { message_id, .. } => Some(message_id),
                _ => None,
            })
            .collect()
    }

    /// Every `Sent` event as (backend, identities, text, failed).
    pub fn sends(&self) -> Vec<(String, Vec<String>, String, Vec<String>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                RouterEvent::Sent { backend, identities, text, failed, .. } => {
                    Some((backend, identities, text, failed))
                }
                _ => None,
            })
            .collect()
    }
}

/// A host on a temporary data directory.
pub struct TestHost {
    /// The host.
    pub host: Host,
    /// Its recorded events.
    pub recorder: Arc<Recorder>,
    /// The data directory (kept alive with the host).
    pub dir: Arc<tempfile::TempDir>,
    /// The configuration text it was started from.
    pub toml: String,
}

/// The TOML of a host on `data_dir` with `body` (apps, backends, ...).
pub fn config_text(data_dir: &Path, body: &str) -> String {
    format!("data_dir = {:?}\n{body}", data_dir.display().to_string())
}

impl TestHost {
    /// Start a host from configuration `body` on a fresh data directory.
    pub async fn start(body: &str) -> anyhow::Result<TestHost> {
        let dir = Arc::new(tempfile::tempdir()?);
        Self::start_in(dir, body).await
    }

    /// Start a host from `body` on an existing data directory.
    pub async fn start_in(dir: Arc<tempfile::TempDir>, body: &str) -> anyhow::Result<TestHost> {
        let toml = config_text(dir.path(), body);
        let config = Config::parse(&toml, "test.toml", dir.path(), None)?;
        let recorder = Arc::new(Recorder::default());
        // A host stopped a moment ago may still be letting go of the
        // database (its journal thread ends after its last user).
        let mut tries = 0;
        let host = loop {
            match Host::start(config.clone(), vec![recorder.clone() as Arc<dyn Observer>]).await {
                Err(StartError::Store(StoreError::Locked { .. })) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                }
                started => break started?,
            }
        };
        Ok(TestHost { host, recorder, dir, toml })
    }

    /// Receive `text` from `identity` on backend `console`.
    pub async fn receive(&self, identity: &str, text: &str) -> IncomingMessage {
        self.host.router().receive(text, Connection::new("console", identity), Fields::new()).await.expect("receive")
    }

    /// The texts the console backend `backend` recorded, as (identity, text),
    /// in the order it was asked to send them.
    pub fn outbox(&self, backend: &str) -> Vec<(String, String)> {
        self.host
            .store()
            .plugin_scan(backend, "outbox/", None, 10_000)
            .expect("scan outbox")
            .into_iter()
            .map(|(_, line)| {
                let line = String::from_utf8(line).expect("utf-8 outbox");
                let mut parts = line.splitn(3, '\t');
                let _id = parts.next();
                let identity = parts.next().unwrap_or_default().to_owned();
                let text = parts.next().unwrap_or_default().to_owned();
                (identity, text)
            })
            .collect()
    }

    /// Stop the host, keeping its data directory for a restart.
    pub fn stop(self) -> Arc<tempfile::TempDir> {
        self.host.shutdown().expect("flush store");
        self.dir
    }
}

/// A host's HTTP server on a free loopback port; stops when dropped.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestHost {
    /// Serve this host's routes (API, pages, `/backends/...`) on loopback.
    pub async fn serve(&self) -> Served {
        self.serve_on(0).await
    }

    /// [`serve`](Self::serve) on loopback port `port` (0: any free one).
    pub async fn serve_on(&self, port: u16) -> Served {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let listener = rapidwasm::http::bind(addr).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let site = rapidwasm::http::Site::for_host(&self.host);
        tokio::spawn(rapidwasm::http::serve(listener, site, async move {
            let _ = stopped.await;
        }));
        Served { base, _stop: stop }
    }
}

/// A backend `name` from built-in plugin `plugin`, allowed to reach
/// `allowed_hosts`, with `settings` (TOML inline table body).
pub fn backend(name: &str, plugin: &str, allowed_hosts: &[&str], settings: &str) -> String {
    format!(
        "[backends.{name}]\nplugin = \"builtin:{plugin}\"\nallowed_hosts = {allowed_hosts:?}\nsettings = {{ {settings} }}\n"
    )
}

/// A console backend called `name` with `settings` (TOML inline table body).
pub fn console(name: &str, settings: &str) -> String {
    format!("[backends.{name}]\nplugin = \"builtin:console\"\nsettings = {{ {settings} }}\n")
}

/// An app `name` from built-in plugin `plugin` with `settings`.
pub fn app(name: &str, plugin: &str, settings: &str) -> String {
    format!("[[apps]]\nname = \"{name}\"\nplugin = \"builtin:{plugin}\"\nsettings = {{ {settings} }}\n")
}

/// `body` (apps, backends and `[limits]`, as the helpers above write them)
/// moved into tenant `tenant`'s table, with `header` (its `api_keys`, ...)
/// on top.
pub fn in_tenant(tenant: &str, header: &str, body: &str) -> String {
    let body = body
        .replace("[[apps]]", &format!("[[tenants.{tenant}.apps]]"))
        .replace("[apps.", &format!("[tenants.{tenant}.apps."))
        .replace("[backends.", &format!("[tenants.{tenant}.backends."))
        .replace("[limits]", &format!("[tenants.{tenant}.limits]"));
    format!("[tenants.{tenant}]\n{header}\n{body}")
}

/// Twilio's webhook signature, computed independently of the plugin: the
/// Base64 HMAC-SHA1 of the URL followed by the sorted parameters.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The median of `values` (not empty).
pub fn median(mut values: Vec<std::time::Duration>) -> std::time::Duration {
    values.sort();
    values[values.len() / 2]
}

/// Call `check` every 20 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T>(within: std::time::Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
