//! Feedback (L5): `POST /v1/feedback` joins ground truth to recorded
//! predictions, `GET /v1/models/{name}/quality` reads the online quality per
//! version, `POST /v1/datasets/from-feedback` turns labelled predictions
//! into a training dataset.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::dataset::Dataset;
use tessera_core::features::parse_duration;
use tessera_core::feedback::{JoinedFeedback, Predicted, Truth, VersionQuality, quality};
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_serving::feedback::{Item, MAX_ITEMS, Status};
use tessera_store::ModelView;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::datasets::{UploadParams, store_rows};
use crate::state::AppState;

/// How far ahead of this replica's clock a feedback's `ts` may be.
const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Rows one dataset made from feedback holds at most.
const MAX_DATASET_ROWS: usize = 200_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// 1 to 1000 items.
    #[schema(min_items = 1, max_items = 1000)]
    pub feedback: Vec<FeedbackIn>,
}

/// Ground truth for one prediction: exactly one of `label`, `value`, `score`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackIn {
    /// The `x-tessera-prediction-id` of the answer.
    pub prediction_id: String,
    /// A classifier's true class (a string; a number or boolean is taken as its text).
    #[schema(value_type = Option<String>)]
    pub label: Option<Value>,
    /// A regressor's true value.
    pub value: Option<f64>,
    /// A rating of the answer (e.g. 1 for a thumbs up, 0 for down).
    pub score: Option<f64>,
    /// Which answer of a request with several (instances, rows) it is about; default 0.
    pub index: Option<usize>,
    /// When the truth became known (RFC 3339); default: now.
    pub ts: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackAnswer {
    /// `feedback.batch`.
    pub object: &'static str,
    pub joined: usize,
    pub updated: usize,
    pub unknown: usize,
    pub too_late: usize,
    /// One per item, in the order sent.
    pub results: Vec<FeedbackResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResult {
    pub prediction_id: String,
    /// `joined`, `updated` (a truth given before is replaced), `unknown`
    /// (no recorded prediction of yours has the id) or `too_late` (older
    /// than the feedback horizon).
    #[schema(value_type = String)]
    pub status: Status,
}

fn item(i: usize, f: FeedbackIn, now: Timestamp) -> Result<Item, ApiError> {
    let param = |field: &str| format!("feedback[{i}].{field}");
    let truth = match (f.label, f.value, f.score) {
        (Some(l), None, None) => Truth::Label(match l {
            Value::String(s) if !s.is_empty() => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ApiError::invalid(param("label"), "a label is a non-empty string"));
            }
        }),
        (None, Some(v), None) if v.is_finite() => Truth::Value(v),
        (None, None, Some(v)) if v.is_finite() => Truth::Score(v),
        (None, Some(_), None) => return Err(ApiError::invalid(param("value"), "not a number")),
        (None, None, Some(_)) => return Err(ApiError::invalid(param("score"), "not a number")),
        _ => {
            return Err(ApiError::invalid(
                format!("feedback[{i}]"),
                "give exactly one of label, value or score",
            ));
        }
    };
    if let Some(ts) = f.ts
        && ts.millis() > now.millis() + CLOCK_SKEW.as_millis() as i64
    {
        return Err(ApiError::invalid(param("ts"), "ts is in the future"));
    }
    if f.prediction_id.is_empty() || f.prediction_id.len() > 128 {
        return Err(ApiError::invalid(param("prediction_id"), "a prediction id is 1-128 bytes"));
    }
    Ok(Item { prediction_id: f.prediction_id, truth, index: f.index.unwrap_or(0), ts: f.ts })
}

/// Join ground truth to recorded predictions. An unknown id (mistyped,
/// another tenant's, or not sampled) or one past the horizon is reported
/// per item; a malformed item refuses the batch, naming it.
#[utoipa::path(post, path = "/v1/feedback", tag = "feedback", request_body = FeedbackRequest,
    responses((status = 200, body = FeedbackAnswer), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn submit(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<FeedbackRequest>,
) -> Result<Json<FeedbackAnswer>, ApiError> {
    let ctx = auth.tenant(Operation::FeedbackWrite)?;
    if body.feedback.is_empty() {
        return Err(ApiError::invalid("feedback", "send at least one item"));
    }
    if body.feedback.len() > MAX_ITEMS {
        return Err(ApiError::TooLarge {
            param: Some("feedback".into()),
            message: format!("at most {MAX_ITEMS} items per request, got {}", body.feedback.len()),
        });
    }
    let now = Timestamp::now();
    let items = body
        .feedback
        .into_iter()
        .enumerate()
        .map(|(i, f)| item(i, f, now))
        .collect::<Result<Vec<_>, _>>()?;
    let statuses = s.feedback().submit(&**s.events(), s.store(), &ctx, &items, now).await?;
    let count = |want: Status| statuses.iter().filter(|s| **s == want).count();
    Ok(Json(FeedbackAnswer {
        object: "feedback.batch",
        joined: count(Status::Joined),
        updated: count(Status::Updated),
        unknown: count(Status::Unknown),
        too_late: count(Status::TooLate),
        results: items
            .into_iter()
            .zip(&statuses)
            .map(|(i, s)| FeedbackResult { prediction_id: i.prediction_id, status: *s })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QualityParams {
    /// The window, ending now, by when feedback was given: "15m", "1h" (default), "7d".
    pub window: Option<String>,
    /// Only this version (its number).
    pub version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QualityAnswer {
    /// `model.quality`.
    pub object: &'static str,
    pub model: String,
    pub window: String,
    /// The window's start.
    pub since: Timestamp,
    /// Versions with feedback in the window, by number.
    pub versions: Vec<VersionQuality>,
}

/// The window a caller named, up to the feedback horizon.
fn window(s: &AppState, w: Option<&str>) -> Result<(String, Duration), ApiError> {
    let text = w.unwrap_or("1h");
    let d = parse_duration(text).map_err(|e| ApiError::invalid("window", e))?;
    let horizon = s.feedback().horizon();
    if d.is_zero() || d > horizon {
        return Err(ApiError::invalid(
            "window",
            format!(
                "the window is more than zero and at most the feedback horizon ({} h)",
                horizon.as_secs() / 3600
            ),
        ));
    }
    Ok((text.to_owned(), d))
}

fn since(d: Duration) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().millis() - d.as_millis() as i64)
}

/// A model the caller can use (its own, its segment's or the platform's):
/// feedback rows are the tenant's own either way.
async fn visible_model(
    s: &AppState,
    auth: &Authed,
    name: &str,
    op: Operation,
) -> Result<tessera_core::auth::TenantCtx, ApiError> {
    let ctx = auth.tenant(op)?;
    let segment = s.tenants().get(s.store(), &ctx).await?.tenant.segment.clone();
    let view = ModelView::Tenant { ctx: &ctx, segment: segment.as_deref() };
    s.store().resolve_model(view, name).await?;
    Ok(ctx)
}

/// Online quality per version over a window: accuracy, macro-F1 and recall
/// per class for classifiers, MAE and RMSE for regressors, the mean score,
/// each with its number of labelled samples.
#[utoipa::path(get, path = "/v1/models/{name}/quality", tag = "feedback",
    params(("name" = String, Path, description = "model name"), QualityParams),
    responses((status = 200, body = QualityAnswer), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn model_quality(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    ApiQuery(p): ApiQuery<QualityParams>,
) -> Result<Json<QualityAnswer>, ApiError> {
    let ctx = visible_model(&s, &auth, &name, Operation::ModelsRead).await?;
    let (text, d) = window(&s, p.window.as_deref())?;
    let since = since(d);
    let groups = s.store().feedback_quality(&ctx, &name, p.version.as_deref(), since).await?;
    Ok(Json(QualityAnswer {
        object: "model.quality",
        model: name,
        window: text,
        since,
        versions: quality(&groups),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromFeedback {
    pub model: String,
    /// Only this version's predictions (its number).
    pub version: Option<String>,
    /// Feedback given within this window, ending now (default: the horizon).
    pub window: Option<String>,
}

/// One labelled prediction as a dataset row: its input (the text, or the
/// entity's join keys), the truth under `label` / `value` / `score`, and
/// what the model answered under `predicted`.
fn dataset_row(f: JoinedFeedback) -> Option<Map<String, Value>> {
    let mut row = Map::new();
    match (f.input, f.entity) {
        (Some(text), _) => {
            row.insert("text".into(), Value::from(text));
        }
        (None, Some(entity)) => row.extend(entity),
        (None, None) => return None,
    }
    let (column, truth) = match f.truth {
        Truth::Label(l) => ("label", Value::from(l)),
        Truth::Value(v) => ("value", Value::from(v)),
        Truth::Score(v) => ("score", Value::from(v)),
    };
    row.insert(column.into(), truth);
    row.insert(
        "predicted".into(),
        match f.predicted {
            Some(Predicted::Label(l)) => Value::from(l),
            Some(Predicted::Value(v)) => Value::from(v),
            None => Value::Null,
        },
    );
    row.insert("version".into(), Value::from(f.version));
    row.insert("prediction_id".into(), Value::from(f.prediction_id));
    row.insert("predicted_at".into(), serde_json::to_value(f.predicted_at).unwrap_or_default());
    Some(row)
}

/// Make a dataset from labelled predictions (JSON Lines): each joined
/// feedback whose prediction kept its input (`store_inputs`) or named an
/// entity becomes a row, stored as the next version of dataset `name`.
#[utoipa::path(post, path = "/v1/datasets/from-feedback", tag = "datasets", params(UploadParams),
    request_body = FromFeedback,
    responses((status = 201, body = Dataset), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn to_dataset(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<UploadParams>,
    ApiJson(req): ApiJson<FromFeedback>,
) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    let ctx = visible_model(&s, &auth, &req.model, Operation::DatasetsWrite).await?;
    let (_, d) = match req.window.as_deref() {
        Some(w) => window(&s, Some(w))?,
        None => (String::new(), s.feedback().horizon()),
    };
    let joined = s
        .store()
        .list_feedback(&ctx, &req.model, req.version.as_deref(), since(d), MAX_DATASET_ROWS)
        .await?;
    let labelled = joined.len();
    let rows: Vec<Map<String, Value>> = joined.into_iter().filter_map(dataset_row).collect();
    if rows.is_empty() {
        let why = if labelled == 0 {
            format!("model {:?} has no feedback in the window", req.model)
        } else {
            format!(
                "none of the {labelled} labelled predictions kept its input: set the tenant's store_inputs to keep texts"
            )
        };
        return Err(ApiError::Unprocessable {
            code: "no_labelled_inputs",
            param: Some("model".into()),
            message: why,
        });
    }
    let d = store_rows(&s, &ctx, &auth, &p.name, &rows).await?;
    Ok((StatusCode::CREATED, Json(d)))
}
