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
use crate::plugins::{PluginInfo, SwapError, SwapReport};
use crate::tenant::same_secret;

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
            TenantInfo {
                name: tenant.name().to_owned(),
                prefix: if tenant.name() == crate::config::DEFAULT_TENANT {
                    "/".to_owned()
                } else {
                    format!("/t/{}/", tenant.name())
                },
                apps: tenant.router().app_names().into_iter().map(str::to_owned).collect(),
                backends: tenant.router().backend_names().into_iter().map(str::to_owned).collect(),
                api_keys: config.api_keys.len(),
                max_message_bytes: limits.max_message_bytes,
                calls_per_second: limits.calls_per_second,
                call_timeout_ms: limits.app.call_timeout.as_millis() as u64,
                memory_mib: (limits.app.memory_bytes >> 20) as u64,
                fuel: limits.app.fuel,
                paused_plugins: tenant
                    .registry()
                    .list()
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
    let refused = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin_refused", message);
    if !request.plugin.starts_with("builtin:") && !std::path::Path::new(&request.plugin).is_absolute() {
        return Err(refused(format!("{:?} is neither builtin:NAME nor an absolute path", request.plugin)));
    }
    let source = crate::config::plugin_source(&request.plugin, std::path::Path::new("/")).map_err(refused)?;
    let bytes = crate::source_bytes(&name, &source).map_err(|e| refused(e.to_string()))?;
    // Loading compiles on this task; run it off the request's own so a
    // client that hangs up does not cancel a swap half-way.
    let label = source.to_string();
    let registry = tenant.registry().clone();
    let swapped = tokio::spawn(async move { registry.swap(&name, &bytes, &label, request.settings).await }).await;
    match swapped {
        Ok(Ok(report)) => Ok(Json(report)),
        Ok(Err(err @ SwapError::NoSuchPlugin(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string()))
        }
        Ok(Err(err @ SwapError::Load(_))) => Err(refused(err.to_string())),
        Err(join) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", join.to_string())),
    }
}
