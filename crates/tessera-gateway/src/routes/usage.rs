//! Usage and prices (G7): a tenant's totals and records (`/v1/usage`), every
//! tenant's (`/admin/v1/usage`), as JSON or CSV for billing; the price table
//! (`/admin/v1/prices`). Records reach the database within about a second
//! (the metering flush interval).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_core::ids::TenantId;
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_core::usage::{GroupBy, Price, UsageGroup, UsageRecord};
use tessera_store::UsageScope;
use utoipa::IntoParams;

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

const MAX_RECORDS: u32 = 100_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// From this RFC 3339 time (default: the start of this month, UTC).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Until this RFC 3339 time, exclusive (default: now).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `model` (default), `day` or `key`; on the admin route also `tenant`.
    pub group_by: Option<GroupBy>,
    /// `json` (default) or `csv`.
    #[param(pattern = "^(json|csv)$")]
    pub format: Option<String>,
    /// Admin route: one tenant only.
    pub tenant: Option<String>,
    /// Records route: at most this many (default and maximum 100000).
    #[param(minimum = 1, maximum = 100000)]
    pub limit: Option<u32>,
}

struct Window {
    from: i64,
    to: i64,
    csv: bool,
}

impl UsageParams {
    fn window(&self) -> Result<Window, ApiError> {
        let now = Timestamp::now();
        let from = match &self.from {
            Some(f) => Timestamp::parse_rfc3339("from", f)?.millis(),
            None => now.month_start().millis(),
        };
        let to = match &self.to {
            Some(t) => Timestamp::parse_rfc3339("to", t)?.millis(),
            None => now.millis() + 1,
        };
        if to <= from {
            return Err(ApiError::invalid("to", "to must be after from"));
        }
        // Checked on every route, so a bad limit is never silently ignored.
        limit(self.limit)?;
        let csv = match self.format.as_deref() {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "format",
                    format!("format {other:?} must be json or csv"),
                ));
            }
        };
        Ok(Window { from, to, csv })
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_response(text: String, name: &str) -> Response {
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

fn totals_answer(groups: Vec<UsageGroup>, csv: bool) -> Response {
    if !csv {
        return Json(List::of(groups)).into_response();
    }
    let mut out =
        String::from("group,requests,prompt_tokens,completion_tokens,cache_hits,errors,cost_usd\n");
    for g in groups {
        out.push_str(&format!(
            "{},{},{},{},{},{},{:.6}\n",
            csv_field(&g.group),
            g.requests,
            g.prompt_tokens,
            g.completion_tokens,
            g.cache_hits,
            g.errors,
            g.cost_usd
        ));
    }
    csv_response(out, "usage")
}

fn records_answer(records: Vec<UsageRecord>, csv: bool) -> Response {
    if !csv {
        return Json(List::of(records)).into_response();
    }
    let mut out = String::from(
        "request_id,time,tenant_id,key_id,model,version,tier,route,prompt_tokens,completion_tokens,compute_us,cache,status,cost_usd\n",
    );
    for r in records {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{:.6}\n",
            csv_field(&r.request_id),
            Timestamp::from_millis(r.ts_ms).to_rfc3339(),
            r.tenant_id,
            csv_field(&r.key_id),
            csv_field(&r.model),
            csv_field(&r.version),
            r.tier,
            csv_field(&r.route),
            r.prompt_tokens,
            r.completion_tokens,
            r.compute_us,
            r.cache,
            r.status,
            r.cost_micros as f64 / 1e6
        ));
    }
    csv_response(out, "usage-records")
}

/// The caller's usage totals.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, description = "as JSON, or CSV with format=csv", content((List<UsageGroup> = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody)))]
pub async fn tenant_totals(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Response, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    if p.tenant.is_some() || p.group_by == Some(GroupBy::Tenant) {
        return Err(ApiError::invalid("tenant", "a tenant sees its own usage only"));
    }
    let w = p.window()?;
    let g = s
        .store()
        .usage_totals(UsageScope::Tenant(&ctx), w.from, w.to, p.group_by.unwrap_or(GroupBy::Model))
        .await?;
    Ok(totals_answer(g, w.csv))
}

/// The caller's usage records, oldest first (for billing export).
#[utoipa::path(get, path = "/v1/usage/records", tag = "usage", params(UsageParams),
    responses((status = 200, description = "as JSON, or CSV with format=csv", content((List<UsageRecord> = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody)))]
pub async fn tenant_records(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Response, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    if p.tenant.is_some() {
        return Err(ApiError::invalid("tenant", "a tenant sees its own usage only"));
    }
    let w = p.window()?;
    let limit = limit(p.limit)?;
    let r = s.store().list_usage(UsageScope::Tenant(&ctx), w.from, w.to, limit).await?;
    Ok(records_answer(r, w.csv))
}

fn limit(l: Option<u32>) -> Result<u32, ApiError> {
    let l = l.unwrap_or(MAX_RECORDS);
    if !(1..=MAX_RECORDS).contains(&l) {
        return Err(ApiError::invalid("limit", format!("limit must be 1-{MAX_RECORDS}, got {l}")));
    }
    Ok(l)
}

/// Usage totals across tenants.
#[utoipa::path(get, path = "/admin/v1/usage", tag = "usage", params(UsageParams),
    responses((status = 200, description = "as JSON, or CSV with format=csv", content((List<UsageGroup> = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody)))]
pub async fn admin_totals(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Response, ApiError> {
    let sys = auth.system()?;
    let w = p.window()?;
    let tenant = p.tenant.clone().map(TenantId::from_stored);
    let g = s
        .store()
        .usage_totals(
            UsageScope::System(&sys, tenant.as_ref()),
            w.from,
            w.to,
            p.group_by.unwrap_or(GroupBy::Tenant),
        )
        .await?;
    Ok(totals_answer(g, w.csv))
}

/// Usage records across tenants, oldest first.
#[utoipa::path(get, path = "/admin/v1/usage/records", tag = "usage", params(UsageParams),
    responses((status = 200, description = "as JSON, or CSV with format=csv", content((List<UsageRecord> = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody)))]
pub async fn admin_records(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UsageParams>,
) -> Result<Response, ApiError> {
    let sys = auth.system()?;
    let w = p.window()?;
    let tenant = p.tenant.clone().map(TenantId::from_stored);
    let r = s
        .store()
        .list_usage(UsageScope::System(&sys, tenant.as_ref()), w.from, w.to, limit(p.limit)?)
        .await?;
    Ok(records_answer(r, w.csv))
}

/// The price table.
#[utoipa::path(get, path = "/admin/v1/prices", tag = "usage", responses((status = 200, body = List<Price>)))]
pub async fn list_prices(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<Price>>, ApiError> {
    auth.system()?;
    Ok(Json(List::of(s.store().list_prices().await?)))
}

/// Set a model's price (for one plan, or `*` for any).
#[utoipa::path(put, path = "/admin/v1/prices", tag = "usage", request_body = Price,
    responses((status = 200, body = Price), (status = 400, body = ErrorBody)))]
pub async fn put_price(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(p): ApiJson<Price>,
) -> Result<Json<Price>, ApiError> {
    let sys = auth.system()?;
    p.validate()?;
    s.store().put_price(&sys, &p, &auth.actor()).await?;
    Ok(Json(p))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PriceParams {
    /// The plan of the price to remove (default `*`).
    pub plan: Option<String>,
}

/// Remove a model's price.
#[utoipa::path(delete, path = "/admin/v1/prices/{model}", tag = "usage",
    params(("model" = String, Path, description = "model name"), PriceParams),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn delete_price(
    State(s): State<AppState>,
    auth: Authed,
    Path(model): Path<String>,
    ApiQuery(p): ApiQuery<PriceParams>,
) -> Result<StatusCode, ApiError> {
    let sys = auth.system()?;
    s.store().delete_price(&sys, &model, p.plan.as_deref().unwrap_or("*"), &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
