//! A stand-in gateway: a real HTTP server on loopback that records every
//! request and answers with a fixed status and body, for checking what
//! backends send.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Recorded>>>,
    status: StatusCode,
    body: &'static str,
}

/// The gateway; stops when dropped.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
    /// Listen on a free loopback port, answering every request with
    /// `status` and `body`.
    pub async fn start(status: u16, body: &'static str) -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the gateway");
        let addr = listener.local_addr().expect("gateway address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared =
            Shared { requests: requests.clone(), status: StatusCode::from_u16(status).expect("a status"), body };
        let app = axum::Router::new().fallback(record).with_state(shared);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Gateway { addr, requests, _stop: stop }
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
}

async fn record(
    State(shared): State<Shared>,
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
    (shared.status, shared.body)
}
