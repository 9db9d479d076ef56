//! Which tenant a request is for, and whether it may reach it.
//!
//! Every tenant's routes are served twice: at `/t/<tenant>/...`, and for the
//! default tenant also without the prefix. The extractors here resolve the
//! tenant from the path and apply its rules:
//!
//! - [`Api`]: `/api/v1/...` needs one of the tenant's API keys
//!   (`Authorization: Bearer KEY` or `X-Api-Key: KEY`) when it has any, and
//!   counts against its `calls_per_second`;
//! - [`Inbound`]: a gateway's `/backends/...` request counts against the
//!   rate (gateways authenticate to their backend, as the backend decides);
//! - [`Scope`]: the tenant alone, for the admin API, which has its own token.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::Site;
use super::api::ApiError;
use crate::config::DEFAULT_TENANT;
use crate::tenant::Tenant;

/// The tenant named by the path, or the default tenant.
pub(super) struct Scope(pub Arc<Tenant>);

/// A tenant's API request: key checked, rate counted.
pub(super) struct Api(pub Arc<Tenant>);

/// A gateway's request to a tenant's backend: rate counted.
pub(super) struct Inbound(pub Arc<Tenant>);

impl FromRequestParts<Site> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, site: &Site) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, site).await.ok();
        let name = params
            .as_ref()
            .and_then(|params| params.iter().find(|(key, _)| *key == "tenant").map(|(_, value)| value.to_owned()))
            .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
        match site.tenant(&name) {
            Some(tenant) => Ok(Scope(tenant.clone())),
            None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no tenant is named `{name}`"))),
        }
    }
}

/// Refuse a request over the tenant's rate with 429 and `Retry-After`.
fn admit(tenant: &Tenant) -> Result<(), ApiError> {
    tenant.admit().map_err(|wait| {
        tracing::debug!(tenant = tenant.name(), "request refused: over calls_per_second");
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "tenant `{}` accepts {} requests per second; try again in {} ms",
                tenant.name(),
                tenant.config().limits.calls_per_second.unwrap_or_default(),
                wait.as_millis().max(1)
            ),
        )
        .retry_after(wait)
    })
}

impl FromRequestParts<Site> for Api {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, site: &Site) -> Result<Self, ApiError> {
        let Scope(tenant) = Scope::from_request_parts(parts, site).await?;
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let key = header("authorization").and_then(|v| v.strip_prefix("Bearer ")).or_else(|| header("x-api-key"));
        if !tenant.accepts_key(key.map(str::trim)) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("send one of tenant `{}`'s API keys as `Authorization: Bearer KEY`", tenant.name()),
            ));
        }
        admit(&tenant)?;
        Ok(Api(tenant))
    }
}

impl FromRequestParts<Site> for Inbound {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, site: &Site) -> Result<Self, ApiError> {
        let Scope(tenant) = Scope::from_request_parts(parts, site).await?;
        admit(&tenant)?;
        Ok(Inbound(tenant))
    }
}
