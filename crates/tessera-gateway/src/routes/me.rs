//! `GET /v1/me`: the caller's tenant, plan and credential.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tessera_core::auth::{AuthMethod, Principal, TenantCtx};
use tessera_core::role::{Operation, Role, Scopes};
use tessera_core::tenant::{Plan, Tenant};
use tessera_store::MetadataStore;
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use tessera_serving::tenant_cache::TenantCache;

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub tenant: Tenant,
    pub plan: Plan,
    pub key: Credential,
}

/// The credential the request was made with.
#[derive(Debug, Serialize, ToSchema)]
pub struct Credential {
    /// Key id, or `jwt:<subject>` for a token.
    pub id: String,
    pub role: Role,
    pub scopes: Scopes,
    /// `api_key` or `jwt`.
    pub auth_method: &'static str,
}

pub async fn whoami(
    store: &dyn MetadataStore,
    tenants: &TenantCache,
    ctx: &TenantCtx,
    p: &Principal,
) -> Result<Me, ApiError> {
    let info = tenants.get(store, ctx).await?;
    let (tenant, plan) = (info.tenant.clone(), info.plan.clone());
    let auth_method = match p.method() {
        AuthMethod::ApiKey | AuthMethod::ConfiguredAdminKey => "api_key",
        AuthMethod::Jwt => "jwt",
    };
    let key = Credential {
        id: p.actor().to_owned(),
        role: p.role(),
        scopes: p.scopes().clone(),
        auth_method,
    };
    Ok(Me { tenant, plan, key })
}

/// Who am I: tenant, plan and key.
#[utoipa::path(get, path = "/v1/me", tag = "tenant",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn me(State(s): State<AppState>, auth: Authed) -> Result<Json<Me>, ApiError> {
    let ctx = auth.tenant(Operation::TenantRead)?;
    Ok(Json(whoami(s.store(), s.tenants(), &ctx, &auth.principal).await?))
}
