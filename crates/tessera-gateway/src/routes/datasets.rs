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
use tessera_core::auth::TenantCtx;
use tessera_core::dataset::{Dataset, NewDataset};
use tessera_core::ids::validate_name;
use tessera_core::role::Operation;
use tessera_training::dataset::{Format, Inspection, ParseError, inspect};
use tokio::io::AsyncWriteExt as _;
use utoipa::{IntoParams, ToSchema};

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
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

/// The formats an upload may name.
const FORMATS: &str = "text/csv, application/x-ndjson or application/vnd.apache.parquet";

/// A file part's format: its content type, else its file name's extension.
fn part_format(content_type: Option<&str>, file_name: Option<&str>) -> Option<Format> {
    content_type.and_then(Format::of_content_type).or_else(|| {
        let ext = file_name?.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    })
}

/// Streams the file part of a `multipart/form-data` body (the first part
/// with a file name, or the part named `file`) to a temporary file.
async fn spool_multipart(
    body: Body,
    boundary: String,
    limit: u64,
) -> Result<(Format, std::fs::File, u64), ApiError> {
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let broken =
        |e: multer::Error| ApiError::invalid("body", format!("the form cannot be read: {e}"));
    while let Some(mut field) = form.next_field().await.map_err(broken)? {
        if field.file_name().is_none() && field.name() != Some("file") {
            continue;
        }
        let format = part_format(field.content_type().map(|m| m.essence_str()), field.file_name())
            .ok_or_else(|| {
                ApiError::UnsupportedMediaType(format!(
                    "the file part is {FORMATS} (by its content type or its name's extension)"
                ))
            })?;
        let file = tempfile::tempfile()
            .map_err(|e| ApiError::Internal(format!("no temporary file for the upload: {e}")))?;
        let mut out = tokio::fs::File::from_std(
            file.try_clone().map_err(|e| ApiError::Internal(format!("temporary file: {e}")))?,
        );
        let mut size = 0u64;
        while let Some(chunk) = field.chunk().await.map_err(broken)? {
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::TooLarge {
                    message: format!(
                        "the dataset is over this plan's limit of {} MiB",
                        limit / MIB
                    ),
                    param: Some("body".into()),
                });
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| ApiError::Internal(format!("writing the upload: {e}")))?;
        }
        out.flush().await.map_err(|e| ApiError::Internal(format!("writing the upload: {e}")))?;
        return Ok((format, file, size));
    }
    Err(ApiError::invalid(
        "body",
        "the form has no file part (a part with a file name, or named `file`)",
    ))
}

/// The largest upload the tenant's plan allows.
async fn upload_limit(s: &AppState, ctx: &TenantCtx) -> Result<u64, ApiError> {
    let plan = &s.tenants().get(s.store(), ctx).await?.plan;
    let cap = s.max_artifact_bytes() as u64;
    Ok(plan.dataset_max_mb.map_or(cap, |mb| mb.saturating_mul(MIB).min(cap)))
}

/// Reads a spooled file whole (a malformed row refuses it, naming its line
/// and column) and stores it as the next version of dataset `name`.
async fn store_file(
    s: &AppState,
    ctx: &TenantCtx,
    auth: &Authed,
    name: &str,
    format: Format,
    file: std::fs::File,
    size: u64,
) -> Result<Dataset, ApiError> {
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
        name,
        format: format.as_str(),
        sha256: &sha256,
        size,
        rows: schema.rows,
        schema: &columns,
        preview: &preview,
    };
    Ok(s.store().create_dataset(ctx, &new, &auth.actor()).await?)
}

/// Upload a dataset: the file is the body, its content type names its
/// format; or a `multipart/form-data` form whose file part is the dataset.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", params(UploadParams),
    request_body(content = Vec<u8>, description = "the file: CSV with a header row, JSON Lines (an object per line) or Parquet; or a multipart form with the file as its part",
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
    let limit = upload_limit(&s, &ctx).await?;
    let (format, file, size) = if ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(ct).map_err(|e| {
            ApiError::invalid("content-type", format!("a multipart upload needs its boundary: {e}"))
        })?;
        spool_multipart(body, boundary, limit).await?
    } else {
        let format = Format::of_content_type(ct).ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "a dataset is {FORMATS} (or a multipart/form-data form with the file), got {ct:?}"
            ))
        })?;
        let (file, size) = spool(body, limit).await?;
        (format, file, size)
    };
    let d = store_file(&s, &ctx, &auth, &p.name, format, file, size).await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// Make a dataset from a point-in-time training set: the body is a
/// `POST /v1/features/historical` request, and its answer is stored as the
/// next version of dataset `name` (as Parquet, keeping the column types).
#[utoipa::path(post, path = "/v1/datasets/from-features", tag = "datasets", params(UploadParams),
    request_body = tessera_features::serve::HistoricalRequest,
    responses((status = 201, body = Dataset), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn from_features(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UploadParams>,
    ApiJson(req): ApiJson<tessera_features::serve::HistoricalRequest>,
) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    let ctx = auth.tenant(Operation::DatasetsWrite)?;
    auth.tenant(Operation::FeaturesRead)?;
    validate_name("name", &p.name)?;
    let catalog = s.feature_catalogs().get(s.store(), &ctx).await?;
    let offline = &*s.feature_stores().offline;
    let table =
        tessera_features::serve::historical(&catalog, offline, ctx.tenant_id(), &req).await?;
    let limit = upload_limit(&s, &ctx).await?;
    let (file, size) = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let bytes =
            tessera_features::parquet_out::to_parquet(&table).map_err(ApiError::Internal)?;
        let mut f = tempfile::tempfile()
            .map_err(|e| ApiError::Internal(format!("no temporary file for the dataset: {e}")))?;
        f.write_all(&bytes).map_err(|e| ApiError::Internal(format!("writing the dataset: {e}")))?;
        Ok::<_, ApiError>((f, bytes.len() as u64))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the Parquet writer failed to run: {e}")))??;
    if size > limit {
        return Err(ApiError::TooLarge {
            message: format!(
                "the training set is over this plan's dataset limit of {} MiB",
                limit / MIB
            ),
            param: Some("entity_df".into()),
        });
    }
    let d = store_file(&s, &ctx, &auth, &p.name, Format::Parquet, file, size).await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// Stores `rows` as the next version of dataset `name`, as JSON Lines
/// (checked like an upload: within the plan's limit, read back whole).
pub(crate) async fn store_rows(
    s: &AppState,
    ctx: &TenantCtx,
    auth: &Authed,
    name: &str,
    rows: &[serde_json::Map<String, serde_json::Value>],
) -> Result<Dataset, ApiError> {
    validate_name("name", name)?;
    let mut bytes = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut bytes, r).map_err(|e| ApiError::Internal(e.to_string()))?;
        bytes.push(b'\n');
    }
    let limit = upload_limit(s, ctx).await?;
    if bytes.len() as u64 > limit {
        return Err(ApiError::TooLarge {
            message: format!("the dataset is over this plan's limit of {} MiB", limit / MIB),
            param: None,
        });
    }
    let size = bytes.len() as u64;
    let file = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut f = tempfile::tempfile()
            .map_err(|e| ApiError::Internal(format!("no temporary file for the dataset: {e}")))?;
        f.write_all(&bytes).map_err(|e| ApiError::Internal(format!("writing the dataset: {e}")))?;
        Ok::<_, ApiError>(f)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the dataset writer failed to run: {e}")))??;
    store_file(s, ctx, auth, name, Format::Jsonl, file, size).await
}

/// Body of `PATCH /v1/datasets/{id}/schema`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaEdit {
    /// Column name -> the type a job reads it as: a number column as
    /// `string` (then it is a category), an `int64` as `float64`.
    #[schema(value_type = Object)]
    pub columns: std::collections::BTreeMap<String, String>,
}

/// Edit how a dataset version's columns are read before training: a
/// numeric column (a zip code, a rating) read as categories, an integer as
/// a float. The file is unchanged; the edit is audited.
#[utoipa::path(patch, path = "/v1/datasets/{id}/schema", tag = "datasets", request_body = SchemaEdit,
    params(("id" = String, Path, description = "dataset id (ds_...)")),
    responses((status = 200, body = Dataset), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn edit_schema(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Dataset>, ApiError> {
    let ctx = auth.tenant(Operation::DatasetsWrite)?;
    let d = s.store().get_dataset(&ctx, &id).await?;
    let edit: SchemaEdit = super::deployments::read_json(&s, body).await?;
    if edit.columns.is_empty() {
        return Err(ApiError::invalid("columns", "name at least one column to retype"));
    }
    let mut schema = d.schema.clone();
    let cols = schema
        .as_array_mut()
        .ok_or_else(|| ApiError::Internal(format!("dataset {id} has no column list")))?;
    for (name, to) in &edit.columns {
        let param = format!("columns.{name}");
        let Some(col) = cols.iter_mut().find(|c| c["name"] == name.as_str()) else {
            return Err(ApiError::invalid(param, format!("the dataset has no column {name:?}")));
        };
        let from = col["dtype"].as_str().unwrap_or("").to_owned();
        // The inferred type stays on record beside the one a job reads.
        let inferred =
            col.get("inferred_dtype").and_then(Value::as_str).unwrap_or(&from).to_owned();
        let allowed = to == &inferred
            || matches!(
                (inferred.as_str(), to.as_str()),
                ("int64" | "float64" | "bool", "string") | ("int64", "float64")
            );
        if !allowed {
            return Err(ApiError::invalid(
                param,
                format!(
                    "column {name:?} was read as {inferred}; it can be read as string (categories){}, not {to}",
                    if inferred == "int64" { " or float64" } else { "" }
                ),
            ));
        }
        col["dtype"] = Value::from(to.clone());
        if *to == inferred {
            if let Some(o) = col.as_object_mut() {
                o.remove("inferred_dtype");
            }
        } else {
            col["inferred_dtype"] = Value::from(inferred);
        }
    }
    Ok(Json(s.store().update_dataset_schema(&ctx, &id, &schema, &auth.actor()).await?))
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
