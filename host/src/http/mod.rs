//! The host's HTTP server: a landing page and the JSON API for programs.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /` | the landing page |
//! | `POST /api/v1/receive` | route an incoming message, answer with its responses |
//! | `POST /api/v1/send` | send a message |
//! | `GET /api/v1/connections?backend=B&identity=I` | look connections up (creating them) |
//!
//! Request bodies are limited to [`MAX_BODY_BYTES`]; errors are JSON
//! objects `{"error": {"code": ..., "message": ...}}` with stable codes.

mod api;
mod page;

use std::net::SocketAddr;

use axum::Router as HttpRouter;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use self::api::{
    ApiConnection, ApiResponse, ErrorBody, ErrorDetail, ReceiveRequest, ReceiveResponse, SendRequest, SendResponse,
};
use crate::router::Router;

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The HTTP routes over `router`.
pub fn routes(router: Router) -> HttpRouter {
    HttpRouter::new()
        .route("/", get(page::landing))
        .route("/api/v1/receive", post(api::receive))
        .route("/api/v1/send", post(api::send))
        .route("/api/v1/connections", get(api::connections))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(router)
}

/// Serve `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes(router)).with_graceful_shutdown(shutdown).await
}

/// Bind `addr`, with an error that names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
