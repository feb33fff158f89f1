//! Alerts (O4): a tenant's rules at `/v1/alerts`, the platform's (every
//! tenant, the built-in budget rules among them) at `/admin/v1/alerts`.
//! A rule's state per subject shows with it; its events (firing, resolved,
//! each webhook delivery) with `GET .../{id}`. The controller that
//! evaluates them lives in `tessera-serving/src/alerts.rs`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use tessera_core::alert::{AlertEvent, AlertRule, AlertSpec};
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_store::{KeyOwner, ModelView};
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::List;
use crate::state::AppState;

/// A new rule, with its webhook signing secret (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedRule {
    #[serde(flatten)]
    pub rule: AlertRule,
    /// Verify a delivery: `x-tessera-signature` is `t=<unix s>,v1=<hex>`,
    /// where hex is HMAC-SHA256 with this secret over `"<t>.<raw body>"`.
    pub secret: String,
}

/// A rule with its latest events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleWithEvents {
    #[serde(flatten)]
    pub rule: AlertRule,
    pub events: Vec<AlertEvent>,
}

fn check(spec: &AlertSpec) -> Result<(), ApiError> {
    spec.validate()
        .map(|_| ())
        .map_err(|e| ApiError::invalid(e.param.unwrap_or_default(), e.message))
}

async fn create_in(
    s: &AppState,
    owner: KeyOwner<'_>,
    tenant: Option<tessera_core::ids::TenantId>,
    spec: AlertSpec,
    auth: &Authed,
) -> Result<(StatusCode, Json<CreatedRule>), ApiError> {
    check(&spec)?;
    let rule = tessera_serving::alerts::new_rule(tenant, spec, Timestamp::now());
    s.store().create_alert_rule(owner, &rule, &auth.actor()).await?;
    let secret = rule.secret.clone();
    Ok((StatusCode::CREATED, Json(CreatedRule { rule, secret })))
}

async fn with_events(
    s: &AppState,
    owner: KeyOwner<'_>,
    id: &str,
) -> Result<Json<RuleWithEvents>, ApiError> {
    let rule = s.store().get_alert_rule(owner, id).await?;
    let events = s.store().list_alert_events(owner, id, 100).await?;
    Ok(Json(RuleWithEvents { rule, events }))
}

/// Create an alert rule on one of your models (or on your budget): the
/// metric, the condition, how long it must hold, the severity, and a
/// webhook for firing and resolved notifications (signed; retried with
/// backoff). The answer carries the signing secret, once.
#[utoipa::path(post, path = "/v1/alerts", tag = "monitoring", request_body = AlertSpec,
    responses((status = 201, body = CreatedRule), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(spec): ApiJson<AlertSpec>,
) -> Result<(StatusCode, Json<CreatedRule>), ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    check(&spec)?;
    if let Some(model) = &spec.model {
        // A model the tenant can use; another tenant's is not found.
        let segment = s.tenants().get(s.store(), &ctx).await?.tenant.segment.clone();
        let view = ModelView::Tenant { ctx: &ctx, segment: segment.as_deref() };
        s.store().resolve_model(view, model).await?;
    }
    let tenant = Some(ctx.tenant_id().clone());
    create_in(&s, KeyOwner::Tenant(&ctx), tenant, spec, &auth).await
}

/// Your alert rules, each with its state per subject (`ok`, `pending`, `firing`).
#[utoipa::path(get, path = "/v1/alerts", tag = "monitoring",
    responses((status = 200, body = inline(List<AlertRule>))))]
pub async fn list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<AlertRule>>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    Ok(Json(List::of(s.store().list_alert_rules(KeyOwner::Tenant(&ctx)).await?)))
}

/// An alert rule with its state and its latest events (transitions and deliveries).
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "monitoring",
    params(("id" = String, Path, description = "alert rule id (alr_...)")),
    responses((status = 200, body = RuleWithEvents), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<RuleWithEvents>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    with_events(&s, KeyOwner::Tenant(&ctx), &id).await
}

/// Remove an alert rule and its events.
#[utoipa::path(delete, path = "/v1/alerts/{id}", tag = "monitoring",
    params(("id" = String, Path, description = "alert rule id (alr_...)")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    s.store().delete_alert_rule(KeyOwner::Tenant(&ctx), &id, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a platform alert rule, evaluated for every tenant (a model rule
/// names a model every tenant can use).
#[utoipa::path(post, path = "/admin/v1/alerts", tag = "monitoring", request_body = AlertSpec,
    responses((status = 201, body = CreatedRule), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(spec): ApiJson<AlertSpec>,
) -> Result<(StatusCode, Json<CreatedRule>), ApiError> {
    let sys = auth.system()?;
    create_in(&s, KeyOwner::Platform(&sys), None, spec, &auth).await
}

/// The platform's alert rules (the built-in budget rules among them), each
/// with its state per tenant.
#[utoipa::path(get, path = "/admin/v1/alerts", tag = "monitoring",
    responses((status = 200, body = inline(List<AlertRule>)), (status = 403, body = ErrorBody)))]
pub async fn admin_list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<AlertRule>>, ApiError> {
    let sys = auth.system()?;
    Ok(Json(List::of(s.store().list_alert_rules(KeyOwner::Platform(&sys)).await?)))
}

/// A platform alert rule with its state and latest events.
#[utoipa::path(get, path = "/admin/v1/alerts/{id}", tag = "monitoring",
    params(("id" = String, Path, description = "alert rule id (alr_...)")),
    responses((status = 200, body = RuleWithEvents), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<RuleWithEvents>, ApiError> {
    let sys = auth.system()?;
    with_events(&s, KeyOwner::Platform(&sys), &id).await
}

/// Remove a platform alert rule (a built-in one comes back at the next start).
#[utoipa::path(delete, path = "/admin/v1/alerts/{id}", tag = "monitoring",
    params(("id" = String, Path, description = "alert rule id (alr_...)")),
    responses((status = 204, description = "removed"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_delete(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sys = auth.system()?;
    s.store().delete_alert_rule(KeyOwner::Platform(&sys), &id, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
