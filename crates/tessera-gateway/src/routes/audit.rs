//! The audit log over HTTP (T5): a tenant's own entries, every entry for
//! platform admins, and chain verification.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use tessera_core::audit::{AuditEntry, VerifyReport};
use tessera_core::ids::TenantId;
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_store::{AuditQuery, AuditScope, verify_audit_chain};
use utoipa::IntoParams;

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this tenant's entries (admin route only).
    pub tenant: Option<String>,
    /// Only entries at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// At most this many entries, newest first (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl AuditParams {
    fn query(&self) -> Result<AuditQuery, ApiError> {
        let since =
            self.since.as_deref().map(|s| Timestamp::parse_rfc3339("since", s)).transpose()?;
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}, got {limit}"),
            ));
        }
        Ok(AuditQuery { since, limit })
    }
}

/// Audit entries of every tenant and the platform, newest first.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = List<AuditEntry>), (status = 400, body = ErrorBody)))]
pub async fn admin_list(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<List<AuditEntry>>, ApiError> {
    let sys = auth.system()?;
    let q = p.query()?;
    let tenant = p
        .tenant
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("tenant", e.message))?;
    Ok(Json(List::of(s.store().list_audit(AuditScope::System(&sys, tenant.as_ref()), q).await?)))
}

/// Walks the hash chain and reports the first broken link.
#[utoipa::path(get, path = "/admin/v1/audit/verify", tag = "audit", responses((status = 200, body = VerifyReport)))]
pub async fn verify(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<VerifyReport>, ApiError> {
    let sys = auth.system()?;
    Ok(Json(verify_audit_chain(s.store(), &sys).await?))
}

/// The caller's tenant's audit entries, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, body = List<AuditEntry>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn tenant_list(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<List<AuditEntry>>, ApiError> {
    let ctx = auth.tenant(Operation::AuditRead)?;
    if p.tenant.is_some() {
        return Err(ApiError::invalid("tenant", "tenant is only accepted on /admin/v1/audit"));
    }
    let q = p.query()?;
    Ok(Json(List::of(s.store().list_audit(AuditScope::Tenant(&ctx), q).await?)))
}
