//! The host's HTTP server: pages for people, the JSON API for programs and
//! the gateways' inbound URLs.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /` | the landing page |
//! | `GET /tester` | the message tester page |
//! | `GET /api/v1/openapi.json` | the API's OpenAPI description |
//! | `POST /api/v1/receive` | route an incoming message, answer with its responses |
//! | `POST /api/v1/send` | send a message (`Idempotency-Key` header: at most once) |
//! | `GET /api/v1/messages/{id}` | a message, its status and its transmissions (durable router) |
//! | `GET /api/v1/dead-letters?limit=N` | transmissions whose retries ran out (durable router) |
//! | `POST /api/v1/dead-letters/requeue` | put one back in the outbox (durable router) |
//! | `GET /api/v1/connections?backend=B&identity=I` | look connections up (creating them) |
//! | any `/backends/<name>/...` | handed to backend `<name>`'s component |
//! | `GET /admin/v1/plugins` | the running plugins (bearer `admin_token`) |
//! | `POST /admin/v1/plugins/<name>/swap` | replace a plugin's component while the host runs |
//!
//! Request bodies are limited to [`MAX_BODY_BYTES`]; errors of the host's
//! own are JSON objects `{"error": {"code": ..., "message": ...}}` with
//! stable codes. What a backend answers is up to the backend.

mod admin;
mod api;
mod backends;
mod journal;
mod page;
mod tester;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router as HttpRouter;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{any, get, post};

pub use self::admin::{Admin, SwapRequest};
pub use self::api::{
    ApiConnection, ApiResponse, ErrorBody, ErrorDetail, MAX_IDEMPOTENCY_KEY, ReceiveRequest, ReceiveResponse,
    SendRequest, SendResponse,
};
pub use self::journal::{MessageStatus, RequeueRequest, message_status};
use crate::config::Config;
use crate::router::Router;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI description of the JSON API, as served at
/// `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// What the HTTP server serves: the router, and what it needs of the
/// configuration.
#[derive(Clone)]
pub struct Site {
    /// The router behind every route.
    pub router: Router,
    /// The backend the `/tester` page talks to, if one is configured.
    pub tester_backend: Option<String>,
    /// How long a gateway waits for a backend's answer.
    pub inbound_timeout: Duration,
    /// The admin API's plugins and token; `None` turns it off.
    pub admin: Option<Admin>,
}

impl Site {
    /// The site of `router` configured by `config`, without the admin API.
    pub fn new(router: Router, config: &Config) -> Self {
        Site {
            router,
            tester_backend: config.tester_backend().map(str::to_owned),
            inbound_timeout: config.backend_limits.call_timeout,
            admin: None,
        }
    }

    /// The site of a running host: its router, and the admin API when the
    /// configuration sets `admin_token`.
    pub fn for_host(host: &crate::Host) -> Self {
        let mut site = Site::new(host.router().clone(), host.config());
        site.admin = host.config().admin_token.clone().map(|token| Admin { registry: host.registry().clone(), token });
        site
    }
}

impl FromRef<Site> for Router {
    fn from_ref(site: &Site) -> Router {
        site.router.clone()
    }
}

/// The HTTP routes of `site`.
pub fn routes(site: Site) -> HttpRouter {
    HttpRouter::new()
        .route("/", get(page::landing))
        .route("/tester", get(tester::page))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/receive", post(api::receive))
        .route("/api/v1/send", post(api::send))
        .route("/api/v1/connections", get(api::connections))
        .route("/api/v1/messages/{id}", get(journal::message))
        .route("/api/v1/dead-letters", get(journal::dead_letters))
        .route("/api/v1/dead-letters/requeue", post(journal::requeue))
        .route("/admin/v1/plugins", get(admin::plugins))
        .route("/admin/v1/plugins/{name}/swap", post(admin::swap))
        .route("/backends/{backend}", any(backends::inbound))
        .route("/backends/{backend}/", any(backends::inbound))
        .route("/backends/{backend}/{*rest}", any(backends::inbound))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(site)
}

/// Serve `site` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    site: Site,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes(site)).with_graceful_shutdown(shutdown).await
}

/// Bind `addr`, with an error that names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
