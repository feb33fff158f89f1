//! The feature store (F1, F2): definitions
//! (`PUT|GET|DELETE /v1/features/{entities|views|services}/{name}` and their
//! lists), online reads (`POST /v1/features/online`) and pushes
//! (`POST /v1/features/push`) in Feast's feature-server shapes. Feast's own
//! paths answer too under `/v1/features` (`/get-online-features`, `/push`,
//! `/write-to-online-store`), so Feast's `remote` online store can point
//! `path` at `<tessera>/v1/features`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::Value;
use tessera_core::features::{Definition, Kind, StoredDefinition};
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_features::OnlineError;
use tessera_features::catalog::CatalogError;
use tessera_features::parquet_out::to_parquet;
use tessera_features::serve::{
    self, FeatureError, HistoricalRequest, OnlineRequest, OnlineResponse, PushRequest, Table,
};
use tessera_serving::feature_catalogs::FeatureCatalogs;
use tessera_store::FeatureDefWrite;

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

impl From<FeatureError> for ApiError {
    fn from(e: FeatureError) -> Self {
        match e {
            FeatureError::Invalid(v) => v.into(),
            FeatureError::Store(OnlineError::Unavailable(m)) => ApiError::Unavailable(m),
            FeatureError::Store(OnlineError::Internal(m)) => ApiError::Internal(m),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(v) => v.into(),
            CatalogError::Conflict(m) => ApiError::Conflict(m),
        }
    }
}

/// The kind a path segment names.
fn kind(segment: &str) -> Result<Kind, ApiError> {
    match segment {
        "entities" => Ok(Kind::Entity),
        "views" => Ok(Kind::View),
        "services" => Ok(Kind::Service),
        other => Err(ApiError::NotFound(format!(
            "no such definitions {other:?}: entities, views or services"
        ))),
    }
}

/// A stored definition as the routes answer it.
fn shown(d: StoredDefinition) -> Definition<Value> {
    Definition {
        name: d.name,
        version: d.version,
        spec: d.spec,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Entity => "entity",
        Kind::View => "feature view",
        Kind::Service => "feature service",
    }
}

/// Create or change a definition. A change that would leave stored rows
/// unreadable (new entities, a feature's new type) or break a service is
/// refused with 409; the version grows by one on every change.
#[utoipa::path(put, path = "/v1/features/{kind}/{name}", tag = "features",
    request_body(content = Object, description = "an EntitySpec, ViewSpec or ServiceSpec, as `kind` says"),
    params(("kind" = String, Path, description = "entities, views or services"),
           ("name" = String, Path, description = "the definition's name")),
    responses((status = 201, body = Definition<Object>, description = "created"),
              (status = 200, body = Definition<Object>, description = "changed (or unchanged)"),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put(
    State(s): State<AppState>,
    auth: Authed,
    Path((segment, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Definition<Value>>), ApiError> {
    let ctx = auth.tenant(Operation::FeaturesAdmin)?;
    let kind = kind(&segment)?;
    let catalog = FeatureCatalogs::fresh(s.store(), &ctx).await?;
    let spec = catalog.check_put(kind, &name, &body)?;
    let expected = catalog.version(kind, &name);
    let write = FeatureDefWrite { kind, name: &name, spec: &spec, expected };
    let d = s.store().put_feature_def(&ctx, &write, &auth.actor()).await?;
    let status = if expected.is_none() { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(shown(d))))
}

/// One definition.
#[utoipa::path(get, path = "/v1/features/{kind}/{name}", tag = "features",
    params(("kind" = String, Path, description = "entities, views or services"),
           ("name" = String, Path, description = "the definition's name")),
    responses((status = 200, body = Definition<Object>), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path((segment, name)): Path<(String, String)>,
) -> Result<Json<Definition<Value>>, ApiError> {
    let ctx = auth.tenant(Operation::FeaturesRead)?;
    let kind = kind(&segment)?;
    let found =
        s.store().list_feature_defs(&ctx, Some(kind)).await?.into_iter().find(|d| d.name == name);
    found
        .map(|d| Json(shown(d)))
        .ok_or_else(|| ApiError::NotFound(format!("{} {name:?} not found", what(kind))))
}

/// The tenant's definitions of one kind, by name.
#[utoipa::path(get, path = "/v1/features/{kind}", tag = "features",
    params(("kind" = String, Path, description = "entities, views or services")),
    responses((status = 200, body = List<Definition<Object>>)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Authed,
    Path(segment): Path<String>,
) -> Result<Json<List<Definition<Value>>>, ApiError> {
    let ctx = auth.tenant(Operation::FeaturesRead)?;
    let kind = kind(&segment)?;
    let defs = s.store().list_feature_defs(&ctx, Some(kind)).await?;
    Ok(Json(List::of(defs.into_iter().map(shown).collect())))
}

/// Delete a definition nothing uses (409 names what does). A view's online
/// values go with it.
#[utoipa::path(delete, path = "/v1/features/{kind}/{name}", tag = "features",
    params(("kind" = String, Path, description = "entities, views or services"),
           ("name" = String, Path, description = "the definition's name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Authed,
    Path((segment, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ctx = auth.tenant(Operation::FeaturesAdmin)?;
    let kind = kind(&segment)?;
    let catalog = FeatureCatalogs::fresh(s.store(), &ctx).await?;
    if catalog.version(kind, &name).is_none() {
        return Err(ApiError::NotFound(format!("{} {name:?} not found", what(kind))));
    }
    catalog.check_delete(kind, &name)?;
    s.store().delete_feature_def(&ctx, kind, &name, &auth.actor()).await?;
    if kind == Kind::View {
        s.online().drop_view(ctx.tenant_id(), &name).await.map_err(FeatureError::from)?;
        let offline = &s.feature_stores().offline;
        offline.drop_view(ctx.tenant_id(), &name).await.map_err(FeatureError::from)?;
        s.feature_stores().monitor.forget(ctx.tenant_id(), &name);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Online features for entity rows, in Feast's `get-online-features` shape:
/// the entity columns first, then a column per feature with `values`,
/// `statuses` (PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE) and
/// `event_timestamps`.
#[utoipa::path(post, path = "/v1/features/online", tag = "features", request_body = OnlineRequest,
    responses((status = 200, body = OnlineResponse), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn online(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(req): ApiJson<OnlineRequest>,
) -> Result<Json<OnlineResponse>, ApiError> {
    let ctx = auth.tenant(Operation::FeaturesRead)?;
    let catalog = s.feature_catalogs().get(s.store(), &ctx).await?;
    let out = serve::online(&catalog, s.online(), ctx.tenant_id(), &req, Timestamp::now()).await?;
    Ok(Json(out))
}

/// Feast's path for [`online`] (`/get-online-features`).
#[utoipa::path(post, path = "/v1/features/get-online-features", tag = "features", request_body = OnlineRequest,
    responses((status = 200, body = OnlineResponse), (status = 400, body = ErrorBody)))]
pub async fn feast_online(
    s: State<AppState>,
    auth: Authed,
    req: ApiJson<OnlineRequest>,
) -> Result<Json<OnlineResponse>, ApiError> {
    online(s, auth, req).await
}

/// Write rows of a push view, in Feast's `push` shape (`df` as columns):
/// every cell is checked first, then the batch is written whole. Answers
/// `null`, as Feast's server does.
#[utoipa::path(post, path = "/v1/features/push", tag = "features", request_body = PushRequest,
    responses((status = 200, description = "written (`null`)"), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn push(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(req): ApiJson<PushRequest>,
) -> Result<Json<Value>, ApiError> {
    let ctx = auth.tenant(Operation::FeaturesWrite)?;
    // Read fresh, not through the cache: a view just defined on another
    // replica takes pushes at once (pushes are writes; reads use the cache).
    let catalog = FeatureCatalogs::fresh(s.store(), &ctx).await?;
    serve::push(&catalog, s.feature_stores(), ctx.tenant_id(), &req, Timestamp::now()).await?;
    Ok(Json(Value::Null))
}

/// The output of a training set.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoricalQuery {
    /// `json` (the default), `csv` or `parquet`.
    #[serde(default)]
    pub format: Option<String>,
}

/// A point-in-time training set: each entity row (with its
/// `event_timestamp` and pass-through columns such as labels) joined to the
/// newest feature rows at or before its time (within each view's TTL),
/// ties to the later write; no match leaves nulls and keeps the row.
#[utoipa::path(post, path = "/v1/features/historical", tag = "features", request_body = HistoricalRequest,
    params(HistoricalQuery),
    responses((status = 200, body = Table, description = "JSON; CSV with `format=csv`; a Parquet file with `format=parquet`"),
              (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn historical(
    State(s): State<AppState>,
    auth: Authed,
    Query(q): Query<HistoricalQuery>,
    ApiJson(req): ApiJson<HistoricalRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let ctx = auth.tenant(Operation::FeaturesRead)?;
    let format = q.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "parquet") {
        return Err(ApiError::invalid(
            "format",
            format!("format {format:?}: json, csv or parquet"),
        ));
    }
    let catalog = s.feature_catalogs().get(s.store(), &ctx).await?;
    let offline = &*s.feature_stores().offline;
    let table = serve::historical(&catalog, offline, ctx.tenant_id(), &req).await?;
    let content_type = axum::http::header::CONTENT_TYPE;
    Ok(match format {
        "csv" => ([(content_type, "text/csv; charset=utf-8")], streamed_csv(table)).into_response(),
        "parquet" => {
            // Encoding a large table is CPU work: off the async executor.
            let bytes = tokio::task::spawn_blocking(move || to_parquet(&table))
                .await
                .map_err(|e| ApiError::Internal(format!("the Parquet writer failed to run: {e}")))?
                .map_err(ApiError::Internal)?;
            ([(content_type, "application/vnd.apache.parquet")], bytes).into_response()
        }
        _ => ([(content_type, "application/json")], streamed_json(table)).into_response(),
    })
}

/// Rows per chunk of a streamed training set.
const CHUNK_ROWS: usize = 4096;

/// A table's CSV as a body written chunk by chunk (a large set is never
/// held twice, as rows and as one text).
fn streamed_csv(table: serve::Table) -> axum::body::Body {
    let table = std::sync::Arc::new(table);
    let header = serve::csv_header(&table);
    let n = table.rows.len();
    let chunks = (0..n.div_ceil(CHUNK_ROWS)).map(move |c| {
        let rows = &table.rows[c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(n)];
        Ok::<_, std::convert::Infallible>(serve::csv_rows(rows))
    });
    let all = std::iter::once(Ok(header)).chain(chunks);
    axum::body::Body::from_stream(futures_util::stream::iter(all))
}

/// A table's JSON (`{"columns": [...], "rows": [[...], ...]}`, as the
/// table serializes) as a body written chunk by chunk.
fn streamed_json(table: serve::Table) -> axum::body::Body {
    let table = std::sync::Arc::new(table);
    let head = format!(
        "{{\"columns\":{},\"rows\":[",
        serde_json::to_string(&table.columns).unwrap_or_else(|_| "[]".into())
    );
    let n = table.rows.len();
    let chunks = (0..n.div_ceil(CHUNK_ROWS)).map(move |c| {
        let mut out = String::new();
        for i in c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(n) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(&table.rows[i]).unwrap_or_else(|_| "[]".into()));
        }
        Ok::<_, std::convert::Infallible>(out)
    });
    let all = std::iter::once(Ok(head)).chain(chunks).chain(std::iter::once(Ok("]}".to_owned())));
    axum::body::Body::from_stream(futures_util::stream::iter(all))
}

/// Feast's `write-to-online-store` (`feature_view_name` and `df`): a push.
#[utoipa::path(post, path = "/v1/features/write-to-online-store", tag = "features", request_body = PushRequest,
    responses((status = 200, description = "written (`null`)"), (status = 400, body = ErrorBody)))]
pub async fn feast_write(
    s: State<AppState>,
    auth: Authed,
    req: ApiJson<PushRequest>,
) -> Result<Json<Value>, ApiError> {
    push(s, auth, req).await
}
