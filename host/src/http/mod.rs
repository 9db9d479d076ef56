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
//! | `POST /admin/v1/plugins` | load a new app or backend while the host runs |
//! | `DELETE /admin/v1/plugins/<name>` | unload an app or backend while the host runs |
//! | `POST /admin/v1/plugins/<name>/swap` | replace a plugin's component while the host runs |
//! | `GET /admin/v1/tenants` | every tenant, its plugins and limits (bearer `admin_token`) |
//!
//! Every route but `/`, `/tester`, the OpenAPI file and the tenant list is
//! the default tenant's; another tenant's are the same under `/t/<tenant>`
//! (`/t/acme/api/v1/send`, `/t/acme/backends/kannel/...`). A tenant with API
//! keys answers its `/api/v1` only to `Authorization: Bearer KEY`, and a
//! tenant over its `calls_per_second` answers 429 with `Retry-After`
//! (see [`scope`]).
//!
//! Request bodies are limited to [`MAX_BODY_BYTES`]; errors of the host's
//! own are JSON objects `{"error": {"code": ..., "message": ...}}` with
//! stable codes. What a backend answers is up to the backend.

mod admin;
mod api;
mod backends;
mod journal;
mod page;
mod scope;
mod tester;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router as HttpRouter;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post};

pub use self::admin::{LoadRequest, SwapRequest, TenantInfo};
pub use self::api::{
    ApiConnection, ApiResponse, ErrorBody, ErrorDetail, MAX_IDEMPOTENCY_KEY, ReceiveRequest, ReceiveResponse,
    SendRequest, SendResponse,
};
pub use self::journal::{MessageStatus, RequeueRequest, message_status};
use crate::config::DEFAULT_TENANT;
use crate::tenant::Tenant;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI description of the JSON API, as served at
/// `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// What the HTTP server serves: the host's tenants, and what it needs of
/// the configuration.
#[derive(Clone)]
pub struct Site {
    /// Every tenant, by name.
    tenants: Arc<BTreeMap<String, Arc<Tenant>>>,
    /// The default tenant's backend the `/tester` page talks to, if one is
    /// configured.
    pub tester_backend: Option<String>,
    /// The admin API's bearer token; `None` turns the API off.
    pub admin_token: Option<String>,
}

impl Site {
    /// The site of a running host: its tenants, and the admin API when the
    /// configuration sets `admin_token`.
    pub fn for_host(host: &crate::Host) -> Self {
        Site {
            tenants: Arc::new(host.tenants().iter().map(|t| (t.name().to_owned(), t.clone())).collect()),
            tester_backend: host.config().tester_backend().map(str::to_owned),
            admin_token: host.config().admin_token.clone(),
        }
    }

    /// The tenant called `name`.
    pub fn tenant(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(name)
    }

    /// The default tenant.
    fn default_tenant(&self) -> Option<&Arc<Tenant>> {
        self.tenants.get(DEFAULT_TENANT)
    }
}

/// The routes every tenant has, at `/t/<tenant>` and (the default tenant)
/// at the root.
fn tenant_routes() -> HttpRouter<Site> {
    HttpRouter::new()
        .route("/api/v1/receive", post(api::receive))
        .route("/api/v1/send", post(api::send))
        .route("/api/v1/connections", get(api::connections))
        .route("/api/v1/messages/{id}", get(journal::message))
        .route("/api/v1/dead-letters", get(journal::dead_letters))
        .route("/api/v1/dead-letters/requeue", post(journal::requeue))
        .route("/admin/v1/plugins", get(admin::plugins).post(admin::load))
        .route("/admin/v1/plugins/{name}", delete(admin::unload))
        .route("/admin/v1/plugins/{name}/swap", post(admin::swap))
        .route("/backends/{backend}", any(backends::inbound))
        .route("/backends/{backend}/", any(backends::inbound))
        .route("/backends/{backend}/{*rest}", any(backends::inbound))
}

/// The HTTP routes of `site`.
pub fn routes(site: Site) -> HttpRouter {
    HttpRouter::new()
        .route("/", get(page::landing))
        .route("/tester", get(tester::page))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/admin/v1/tenants", get(admin::tenants))
        .merge(tenant_routes())
        .nest("/t/{tenant}", tenant_routes())
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
