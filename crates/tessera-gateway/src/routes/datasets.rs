//! Datasets over HTTP (L2): `POST /v1/datasets?name=NAME` takes the file as
//! the raw body (`text/csv`, `application/x-ndjson` or
//! `application/vnd.apache.parquet`), streamed to a temporary file, read
//! whole (a malformed row fails the upload, naming its line and column) and
//! stored content-addressed as the name's next version; lists, reads and
//! previews follow. The plan's `dataset_max_mb` bounds an upload.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::dataset::{Dataset, NewDataset};
use tessera_core::ids::validate_name;
use tessera_core::role::Operation;
use tessera_training::dataset::{Format, Inspection, ParseError, inspect};
use tokio::io::AsyncWriteExt as _;
use utoipa::{IntoParams, ToSchema};

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The dataset's name; uploading a name again adds a version.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
}

/// Streams `body` into a temporary file, at most `limit` bytes.
async fn spool(body: Body, limit: u64) -> Result<(std::fs::File, u64), ApiError> {
    let file = tempfile::tempfile()
        .map_err(|e| ApiError::Internal(format!("no temporary file for the upload: {e}")))?;
    let mut out = tokio::fs::File::from_std(
        file.try_clone().map_err(|e| ApiError::Internal(format!("temporary file: {e}")))?,
    );
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid("body", format!("the upload broke off: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::TooLarge {
                message: format!("the dataset is over this plan's limit of {} MiB", limit / MIB),
                param: Some("body".into()),
            });
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("writing the upload: {e}")))?;
    }
    out.flush().await.map_err(|e| ApiError::Internal(format!("writing the upload: {e}")))?;
    Ok((file, size))
}

fn parse_failed(e: ParseError) -> ApiError {
    let param = e.column.map_or_else(|| "body".to_owned(), |c| format!("body.{c}"));
    ApiError::Invalid {
        message: format!("the dataset cannot be read: {}", e.message),
        param: Some(param),
    }
}

/// Upload a dataset: the file is the body, its content type names its format.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", params(UploadParams),
    request_body(content = Vec<u8>, description = "the file: CSV with a header row, JSON Lines (an object per line) or Parquet",
        content_type = "text/csv"),
    responses((status = 201, body = Dataset), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody)))]
pub async fn upload(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    let ctx = auth.tenant(Operation::DatasetsWrite)?;
    validate_name("name", &p.name)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = Format::of_content_type(ct).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "a dataset is text/csv, application/x-ndjson or application/vnd.apache.parquet, got {ct:?}"
        ))
    })?;
    let plan = &s.tenants().get(s.store(), &ctx).await?.plan;
    let cap = s.max_artifact_bytes() as u64;
    let limit = plan.dataset_max_mb.map_or(cap, |mb| mb.saturating_mul(MIB).min(cap));
    let (file, size) = spool(body, limit).await?;
    // Reading every row is CPU work: off the async executor. Nothing is
    // stored unless the whole file reads.
    let (Inspection { schema, preview }, bytes) = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let mut file = file;
        file.rewind().map_err(|e| ApiError::Internal(format!("reading the upload: {e}")))?;
        let copy =
            file.try_clone().map_err(|e| ApiError::Internal(format!("reading the upload: {e}")))?;
        let inspection = inspect(format, copy).map_err(parse_failed)?;
        let mut bytes = Vec::with_capacity(size as usize);
        file.rewind()
            .and_then(|()| file.read_to_end(&mut bytes))
            .map_err(|e| ApiError::Internal(format!("reading the upload: {e}")))?;
        Ok::<_, ApiError>((inspection, bytes))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the dataset reader failed to run: {e}")))??;
    let (sha256, size) = s.artifacts().put(bytes).await?;
    let columns =
        serde_json::to_value(&schema.columns).map_err(|e| ApiError::Internal(e.to_string()))?;
    let new = NewDataset {
        name: &p.name,
        format: format.as_str(),
        sha256: &sha256,
        size,
        rows: schema.rows,
        schema: &columns,
        preview: &preview,
    };
    let d = s.store().create_dataset(&ctx, &new, &auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// The tenant's datasets, every version, by name and version.
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets",
    responses((status = 200, body = List<Dataset>)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<Dataset>>, ApiError> {
    let ctx = auth.tenant(Operation::DatasetsRead)?;
    Ok(Json(List::of(s.store().list_datasets(&ctx).await?)))
}

/// One dataset version: its schema (column types, nulls, ranges, value counts).
#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "dataset id (ds_...)")),
    responses((status = 200, body = Dataset), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Dataset>, ApiError> {
    let ctx = auth.tenant(Operation::DatasetsRead)?;
    Ok(Json(s.store().get_dataset(&ctx, &id).await?))
}

/// A dataset's first rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
}

/// The first rows of a dataset version, as objects.
#[utoipa::path(get, path = "/v1/datasets/{id}/preview", tag = "datasets",
    params(("id" = String, Path, description = "dataset id (ds_...)")),
    responses((status = 200, body = Preview), (status = 404, body = ErrorBody)))]
pub async fn preview(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Preview>, ApiError> {
    let ctx = auth.tenant(Operation::DatasetsRead)?;
    let d = s.store().get_dataset(&ctx, &id).await?;
    let columns = d
        .schema
        .as_array()
        .map(|cols| cols.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(Json(Preview { columns, rows: d.preview }))
}
