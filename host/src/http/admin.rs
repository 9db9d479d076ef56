//! The admin API (`/admin/v1/...`, and `/t/<tenant>/admin/v1/...` for
//! another tenant's plugins): list tenants and running plugins, and swap a
//! plugin while the host runs. Every request needs `Authorization: Bearer
//! TOKEN` with the configuration's `admin_token` (the operator's, not a
//! tenant's API key); without one configured the API is off.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::Site;
use super::api::ApiError;
use super::scope::Scope;
use crate::messages::Fields;
use crate::plugins::{AllowedHosts, PluginInfo, PluginKind, SwapError, SwapReport};
use crate::tenant::{Load, same_secret};

/// One tenant, as `GET /admin/v1/tenants` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Its name (`default` for the top-level configuration).
    pub name: String,
    /// Where its routes are (`/` or `/t/NAME/`).
    pub prefix: String,
    /// Its apps, in phase order.
    pub apps: Vec<String>,
    /// Its backends.
    pub backends: Vec<String>,
    /// How many API keys open its API (0: open).
    pub api_keys: usize,
    /// Its `max_message_bytes`.
    pub max_message_bytes: usize,
    /// Its `calls_per_second`, if limited.
    pub calls_per_second: Option<u32>,
    /// Its apps' call timeout, in ms.
    pub call_timeout_ms: u64,
    /// Its memory limit per instance, in MiB.
    pub memory_mib: u64,
    /// Its fuel per call, if metered.
    pub fuel: Option<u64>,
    /// Its plugins that are paused by their breaker now.
    pub paused_plugins: Vec<String>,
    /// Failed or refused plugin calls of its running plugin versions.
    pub plugin_failures: u64,
}

/// `POST /admin/v1/plugins/{name}/swap`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// `builtin:NAME` or an absolute path to a `.wasm` component on the
    /// host's machine.
    pub plugin: String,
    /// New settings for its `configure`; the current ones when absent.
    #[serde(default)]
    pub settings: Option<Fields>,
}

fn authorize(site: &Site, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &site.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set `admin_token` in the configuration",
        ));
    };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if same_secret(given.trim(), token) => Ok(()),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send `Authorization: Bearer <admin_token>`")),
    }
}

pub(super) async fn tenants(State(site): State<Site>, headers: HeaderMap) -> Result<Json<Vec<TenantInfo>>, ApiError> {
    authorize(&site, &headers)?;
    let now = crate::store::now_ms();
    let list = site
        .tenants
        .values()
        .map(|tenant| {
            let config = tenant.config();
            let limits = &config.limits;
            let plugins = tenant.registry().list();
            TenantInfo {
                name: tenant.name().to_owned(),
                prefix: if tenant.name() == crate::config::DEFAULT_TENANT {
                    "/".to_owned()
                } else {
                    format!("/t/{}/", tenant.name())
                },
                apps: tenant.router().app_names(),
                backends: tenant.router().backend_names(),
                api_keys: config.api_keys.len(),
                max_message_bytes: limits.max_message_bytes,
                calls_per_second: limits.calls_per_second,
                call_timeout_ms: limits.app.call_timeout.as_millis() as u64,
                memory_mib: (limits.app.memory_bytes >> 20) as u64,
                fuel: limits.app.fuel,
                plugin_failures: plugins.iter().map(|p| p.failures).sum(),
                paused_plugins: plugins
                    .into_iter()
                    .filter(|p| p.paused_until.is_some_and(|until| until > now))
                    .map(|p| p.name)
                    .collect(),
            }
        })
        .collect();
    Ok(Json(list))
}

pub(super) async fn plugins(
    State(site): State<Site>,
    Scope(tenant): Scope,
    headers: HeaderMap,
) -> Result<Json<Vec<PluginInfo>>, ApiError> {
    authorize(&site, &headers)?;
    Ok(Json(tenant.registry().list()))
}

fn refused(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_refused", message)
}

impl From<SwapError> for ApiError {
    fn from(err: SwapError) -> Self {
        match err {
            SwapError::NoSuchPlugin(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string()),
            SwapError::AlreadyLoaded(_) => ApiError::new(StatusCode::CONFLICT, "already_loaded", err.to_string()),
            SwapError::Load(_) | SwapError::BadName(_) => refused(err.to_string()),
        }
    }
}

/// The component `plugin` (`builtin:NAME` or an absolute path on the
/// host's machine) names, with its label for the plugin list.
fn component(name: &str, plugin: &str) -> Result<(String, Vec<u8>), ApiError> {
    if !plugin.starts_with("builtin:") && !std::path::Path::new(plugin).is_absolute() {
        return Err(refused(format!("{plugin:?} is neither builtin:NAME nor an absolute path")));
    }
    let source = crate::config::plugin_source(plugin, std::path::Path::new("/")).map_err(refused)?;
    let bytes = crate::source_bytes(name, &source).map_err(|e| refused(e.to_string()))?;
    Ok((source.to_string(), bytes.into_owned()))
}

/// Run `work` on a task of its own, so a client that hangs up does not
/// cancel a swap, load or unload half-way.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, SwapError>> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::spawn(work).await {
        Ok(done) => Ok(done?),
        Err(join) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", join.to_string())),
    }
}

pub(super) async fn swap(
    State(site): State<Site>,
    Scope(tenant): Scope,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
    body: Result<Json<SwapRequest>, JsonRejection>,
) -> Result<Json<SwapReport>, ApiError> {
    authorize(&site, &headers)?;
    let name = params.get("name").cloned().unwrap_or_default();
    let Json(request) = body?;
    let (label, bytes) = component(&name, &request.plugin)?;
    let registry = tenant.registry().clone();
    let report = detached(async move { registry.swap(&name, &bytes, &label, request.settings).await }).await?;
    Ok(Json(report))
}

/// `POST /admin/v1/plugins`: load a new app or backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Its name, unique in the tenant.
    pub name: String,
    /// `app` or `backend`.
    pub kind: String,
    /// `builtin:NAME` or an absolute path to a `.wasm` component on the
    /// host's machine.
    pub plugin: String,
    /// The settings for its `configure`.
    #[serde(default)]
    pub settings: Fields,
    /// Where a backend may send HTTP requests.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// An app's place in the phases (0: first); last when absent.
    #[serde(default)]
    pub position: Option<usize>,
}

pub(super) async fn load(
    State(site): State<Site>,
    Scope(tenant): Scope,
    headers: HeaderMap,
    body: Result<Json<LoadRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<PluginInfo>), ApiError> {
    authorize(&site, &headers)?;
    let Json(request) = body?;
    let kind = match request.kind.as_str() {
        "app" => PluginKind::App,
        "backend" => PluginKind::Backend,
        other => return Err(refused(format!("`kind` is {other:?}: use \"app\" or \"backend\""))),
    };
    if kind == PluginKind::App && (!request.allowed_hosts.is_empty()) {
        return Err(refused("`allowed_hosts` is for backends: apps have no network".into()));
    }
    let allowed_hosts = AllowedHosts::parse(&request.allowed_hosts).map_err(refused)?;
    let (source, bytes) = component(&request.name, &request.plugin)?;
    let load = Load {
        name: request.name,
        kind,
        source,
        bytes,
        settings: request.settings,
        allowed_hosts,
        position: request.position,
    };
    let info = detached(async move { tenant.load(load).await }).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn unload(
    State(site): State<Site>,
    Scope(tenant): Scope,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<PluginInfo>, ApiError> {
    authorize(&site, &headers)?;
    let name = params.get("name").cloned().unwrap_or_default();
    Ok(Json(detached(async move { tenant.unload(&name).await }).await?))
}
