//! The admin API (`/admin/v1/...`): list the running plugins and swap one
//! while the host runs. Every request needs `Authorization: Bearer TOKEN`
//! with the configuration's `admin_token`; without one configured the API
//! is off.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::Site;
use super::api::ApiError;
use crate::messages::Fields;
use crate::plugins::{PluginInfo, PluginRegistry, SwapError, SwapReport};

/// What the admin API needs: the plugins and the token that guards them.
#[derive(Clone)]
pub struct Admin {
    /// The running plugins.
    pub registry: Arc<PluginRegistry>,
    /// The bearer token every request must carry.
    pub token: String,
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

/// Compare in time independent of where the strings differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn authorize<'a>(site: &'a Site, headers: &HeaderMap) -> Result<&'a Admin, ApiError> {
    let Some(admin) = &site.admin else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set `admin_token` in the configuration",
        ));
    };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_secret(token.trim(), &admin.token) => Ok(admin),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send `Authorization: Bearer <admin_token>`")),
    }
}

pub(super) async fn plugins(State(site): State<Site>, headers: HeaderMap) -> Result<Json<Vec<PluginInfo>>, ApiError> {
    let admin = authorize(&site, &headers)?;
    Ok(Json(admin.registry.list()))
}

pub(super) async fn swap(
    State(site): State<Site>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<SwapRequest>, JsonRejection>,
) -> Result<Json<SwapReport>, ApiError> {
    let admin = authorize(&site, &headers)?.clone();
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
    let swapped = tokio::spawn(async move { admin.registry.swap(&name, &bytes, &label, request.settings).await }).await;
    match swapped {
        Ok(Ok(report)) => Ok(Json(report)),
        Ok(Err(err @ SwapError::NoSuchPlugin(_))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", err.to_string()))
        }
        Ok(Err(err @ SwapError::Load(_))) => Err(refused(err.to_string())),
        Err(join) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "swap_failed", join.to_string())),
    }
}
