//! API keys (T2): tenant keys minted by platform admins
//! (`/admin/v1/tenants/{id}/keys`) or by a tenant's own admins (`/v1/keys`),
//! and platform keys (`/admin/v1/keys`). The full key appears only in the
//! creation answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::apikey::{CreatedKey, KeyView, NewKey, mint};
use tessera_core::audit::AuditActor;
use tessera_core::auth::Principal;
use tessera_core::ids::KeyId;
use tessera_core::role::{Operation, Role};
use tessera_core::time::Timestamp;
use tessera_store::{KeyOwner, MetadataStore};

use super::List;
use super::tenants::tenant_path;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Mints and stores a key for `owner` on behalf of `creator`, who may not
/// grant a role or scopes beyond its own.
pub async fn create_key(
    store: &dyn MetadataStore,
    owner: KeyOwner<'_>,
    creator: &Principal,
    mut req: NewKey,
    actor: &AuditActor,
) -> Result<CreatedKey, ApiError> {
    let now = Timestamp::now();
    req.validate(now)?;
    let tenant_id = match owner {
        KeyOwner::Tenant(ctx) if req.role == Role::PlatformAdmin => {
            return Err(ApiError::invalid(
                "role",
                format!(
                    "a key of tenant {} cannot have role platform_admin; platform keys are created with POST /admin/v1/keys",
                    ctx.tenant_id()
                ),
            ));
        }
        KeyOwner::Tenant(ctx) => Some(ctx.tenant_id().clone()),
        KeyOwner::Platform(_) if req.role != Role::PlatformAdmin => {
            return Err(ApiError::invalid(
                "role",
                format!("platform keys must have role platform_admin, got {}", req.role),
            ));
        }
        KeyOwner::Platform(_) => None,
    };
    if !creator.role().can_grant(req.role) {
        return Err(ApiError::Forbidden(format!(
            "role {} may not create a key with role {}",
            creator.role(),
            req.role
        )));
    }
    match &req.scopes {
        Some(scopes) if !scopes.is_within(creator.scopes()) => {
            return Err(ApiError::Forbidden(
                "the requested scopes exceed the creating key's own".into(),
            ));
        }
        Some(_) => {}
        None => req.scopes = Some(creator.scopes().clone()),
    }
    let minted = mint(tenant_id, req, Some(creator.actor().to_owned()), now);
    store.insert_key(owner, &minted.record, actor).await?;
    Ok(CreatedKey { view: minted.record.view(), key: minted.plaintext })
}

/// Revokes a key; it stops working here at once (the store announces the
/// change to the key cache) and on other replicas within the key cache TTL.
pub async fn revoke_key(
    store: &dyn MetadataStore,
    owner: KeyOwner<'_>,
    key_id: &str,
    actor: &AuditActor,
) -> Result<KeyView, ApiError> {
    let id = KeyId::parse(key_id)
        .map_err(|_| ApiError::NotFound(format!("key {key_id:?} not found")))?;
    let rec = store.revoke_key(owner, &id, actor).await?;
    Ok(rec.view())
}

async fn list_keys(
    store: &dyn MetadataStore,
    owner: KeyOwner<'_>,
) -> Result<List<KeyView>, ApiError> {
    Ok(List::of(store.list_keys(owner).await?.iter().map(|k| k.view()).collect()))
}

/// Create a key for a tenant.
#[utoipa::path(post, path = "/admin/v1/tenants/{id}/keys", tag = "keys", request_body = NewKey,
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_create(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let sys = auth.system()?;
    let ctx = tenant_path(&sys, &id)?;
    let k =
        create_key(s.store(), KeyOwner::Tenant(&ctx), &auth.principal, body, &auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// List a tenant's keys (never their secrets).
#[utoipa::path(get, path = "/admin/v1/tenants/{id}/keys", tag = "keys",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = List<KeyView>), (status = 404, body = ErrorBody)))]
pub async fn admin_list(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<List<KeyView>>, ApiError> {
    let sys = auth.system()?;
    let ctx = tenant_path(&sys, &id)?;
    Ok(Json(list_keys(s.store(), KeyOwner::Tenant(&ctx)).await?))
}

/// Revoke a tenant's key.
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}/keys/{key_id}", tag = "keys",
    params(("id" = String, Path, description = "tenant id"), ("key_id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn admin_revoke(
    State(s): State<AppState>,
    auth: Authed,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let sys = auth.system()?;
    let ctx = tenant_path(&sys, &id)?;
    Ok(Json(revoke_key(s.store(), KeyOwner::Tenant(&ctx), &key_id, &auth.actor()).await?))
}

/// Create a platform admin key.
#[utoipa::path(post, path = "/admin/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody)))]
pub async fn platform_create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let sys = auth.system()?;
    let k = create_key(s.store(), KeyOwner::Platform(&sys), &auth.principal, body, &auth.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// List platform keys.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys", responses((status = 200, body = List<KeyView>)))]
pub async fn platform_list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<KeyView>>, ApiError> {
    let sys = auth.system()?;
    Ok(Json(list_keys(s.store(), KeyOwner::Platform(&sys)).await?))
}

/// Revoke a platform key.
#[utoipa::path(delete, path = "/admin/v1/keys/{key_id}", tag = "keys",
    params(("key_id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorBody)))]
pub async fn platform_revoke(
    State(s): State<AppState>,
    auth: Authed,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let sys = auth.system()?;
    Ok(Json(revoke_key(s.store(), KeyOwner::Platform(&sys), &key_id, &auth.actor()).await?))
}

/// Create a key in the caller's own tenant (tenant_admin; never above its own role).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn tenant_create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let ctx = auth.tenant(Operation::KeysWrite)?;
    let k =
        create_key(s.store(), KeyOwner::Tenant(&ctx), &auth.principal, body, &auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// List the caller's tenant's keys.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, body = List<KeyView>), (status = 403, body = ErrorBody)))]
pub async fn tenant_list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<KeyView>>, ApiError> {
    let ctx = auth.tenant(Operation::KeysRead)?;
    Ok(Json(list_keys(s.store(), KeyOwner::Tenant(&ctx)).await?))
}

/// Revoke a key of the caller's tenant.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tenant_revoke(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let ctx = auth.tenant(Operation::KeysWrite)?;
    Ok(Json(revoke_key(s.store(), KeyOwner::Tenant(&ctx), &id, &auth.actor()).await?))
}
