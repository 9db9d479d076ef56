//! A stand-in gateway: a real HTTP server on loopback that records every
//! request and answers with a fixed status and body, for checking what
//! backends send.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request the gateway received: the host's own request type.
pub type Recorded = rapidwasm::router::InboundRequest;

/// The query's pairs, decoded as UTF-8.
pub fn query_pairs(request: &Recorded) -> Vec<(String, String)> {
    url_pairs(request.query.as_bytes())
}

/// The body's pairs, when it is a form.
pub fn form_pairs(request: &Recorded) -> Vec<(String, String)> {
    url_pairs(&request.body)
}

fn url_pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The value of `name` in `pairs`.
pub fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// How the gateway answers; changeable while it runs.
#[derive(Default)]
struct Behaviour {
    status: AtomicU16,
    /// Answer this many more requests with `failure` instead.
    fail_next: AtomicUsize,
    failure: AtomicU16,
    /// Wait this long (ms) after recording a request before answering.
    delay_ms: AtomicU64,
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    behaviour: Arc<Behaviour>,
    body: &'static str,
}

/// The gateway; stops when dropped.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    behaviour: Arc<Behaviour>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
    /// Listen on a free loopback port, answering every request with
    /// `status` and `body`.
    pub async fn start(status: u16, body: &'static str) -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let addr = listener.local_addr().expect("gateway address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Behaviour { status: AtomicU16::new(status), ..Behaviour::default() });
        let peers = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared { requests: requests.clone(), peers: peers.clone(), behaviour: behaviour.clone(), body };
        let app =
            axum::Router::new().fallback(record).with_state(shared).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Gateway { addr, requests, peers, behaviour, _stop: stop }
    }

    /// Answer every later request with `status`.
    pub fn set_status(&self, status: u16) {
        self.behaviour.status.store(status, Ordering::SeqCst);
    }

    /// Answer the next `count` requests with `status`, then as before.
    pub fn fail_next(&self, count: usize, status: u16) {
        self.behaviour.failure.store(status, Ordering::SeqCst);
        self.behaviour.fail_next.store(count, Ordering::SeqCst);
    }

    /// Hold each answer back this long after recording the request.
    pub fn set_delay(&self, delay: Duration) {
        self.behaviour.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// `host:port`, for `allowed_hosts`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("gateway lock").clone()
    }

    /// The client address of each request so far, in order: requests on
    /// one kept-alive connection share it.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("gateway lock").clone()
    }
}

async fn record(
    State(shared): State<Shared>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    };
    shared.requests.lock().expect("gateway lock").push(recorded);
    shared.peers.lock().expect("gateway lock").push(peer);
    let behaviour = &shared.behaviour;
    let delay = behaviour.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = behaviour.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if failing { &behaviour.failure } else { &behaviour.status };
    (StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), shared.body)
}
