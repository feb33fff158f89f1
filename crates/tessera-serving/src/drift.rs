//! Drift (O3): a model version's inputs and predictions in a current
//! window compared with a reference, column by column, by Evidently's
//! default test for the column's type and the reference's size (or in
//! NannyML's mode: the reference cut into chunks, an alert when the
//! current value leaves the chunks' mean +- 3 standard deviations).
//!
//! The current side is the version's prediction records: the predicted
//! labels or values always, the input rows when the tenant keeps inputs
//! (`store_inputs`; tabular routes record the first rows of each request).
//! The reference is the training dataset of the version (read through its
//! job's spec, encoded by the same layout the artifact records), or the
//! version's own records in a fixed time range.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tessera_core::auth::TenantCtx;
use tessera_core::model::{Model, ModelVersion};
use tessera_core::time::Timestamp;
use tessera_events::{Filter, Position, Topic};
use tessera_store::ModelView;
use tessera_training::drift::{self, Column, DriftMethod};
use tessera_training::prepare::InputColumn;
use utoipa::ToSchema;

use crate::Services;
use crate::inference::ServeError;
use crate::predictions::TYPE;

/// Records read for one side at most.
const MAX_RECORDS: usize = 20_000;
/// Reference rows used at most (a training set is sampled evenly beyond).
const MAX_REFERENCE: usize = 20_000;
/// Chunks the reference is cut into in NannyML's mode.
const CHUNKS: usize = 10;
/// Values on each side before a column is judged.
const MIN_VALUES: usize = 10;
/// Texts per side embedded for a text model's input drift, at most.
const MAX_TEXTS: usize = 500;
/// The ROC AUC above which a domain classifier's telling reference and
/// current embeddings apart is drift (Evidently's default, 0.55).
const DOMAIN_AUC_THRESHOLD: f64 = 0.55;

/// What the reference is.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// The dataset the version was trained on.
    Training,
    /// The version's own predictions in `[from, to)`.
    Window { from: Timestamp, to: Timestamp },
}

/// How a column's drift is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DriftMode)]
pub enum Mode {
    /// Evidently's default test per column and its threshold.
    Evidently,
    /// NannyML: the distance's reference chunks give the bounds.
    Nannyml,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub version: Option<i64>,
    pub window: Duration,
    pub reference: Reference,
    pub mode: Mode,
}

/// One column's verdict.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DriftColumn)]
pub struct ColumnReport {
    pub name: String,
    /// `input` or `prediction`.
    pub source: &'static str,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// `ks`, `chi_square`, `z_test` (p-values), `wasserstein` (normalized),
    /// `jensen_shannon` (distances).
    pub method: &'static str,
    /// `None` when either side has too few values to judge.
    pub value: Option<f64>,
    /// For p-values drift is `value <= threshold` (KS) or `<`; for
    /// distances `value >=` (Evidently) or `>` the upper bound (NannyML).
    pub threshold: Option<f64>,
    pub drifted: Option<bool>,
    pub reference_values: usize,
    pub current_values: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DriftSide)]
pub struct Side {
    /// `training` (with `dataset`) or `window`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Rows (records' input rows, or dataset rows) and predictions read.
    pub rows: usize,
    pub predictions: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DriftSummary)]
pub struct Summary {
    pub columns: usize,
    pub drifted_columns: usize,
    pub share: f64,
    /// The share at which the dataset drifts (Evidently's 0.5).
    pub drift_share: f64,
    pub drifted: bool,
}

/// `GET /v1/models/{name}/drift`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DriftReport)]
pub struct Report {
    /// `model.drift`.
    pub object: &'static str,
    pub model: String,
    pub version: Option<i64>,
    pub mode: Mode,
    pub reference: Side,
    pub current: Side,
    pub columns: Vec<ColumnReport>,
    /// Over the columns that could be judged; absent when none could.
    pub dataset_drift: Option<Summary>,
    /// Why some columns are missing (inputs not kept, no records).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What one side holds: input columns by name, and the predictions.
#[derive(Default)]
struct Sample {
    columns: BTreeMap<String, Column>,
    labels: Vec<String>,
    values: Vec<f64>,
    rows: usize,
    /// Input texts (text models; recorded only when the tenant keeps inputs).
    texts: Vec<String>,
}

impl Sample {
    fn push(&mut self, name: &str, v: Cell) {
        let col = self.columns.entry(name.to_owned()).or_insert_with(|| match v {
            Cell::Number(_) => Column::Numeric(Vec::new()),
            Cell::Category(_) => Column::Categorical(Vec::new()),
        });
        match (col, v) {
            (Column::Numeric(c), Cell::Number(x)) => c.push(x),
            (Column::Categorical(c), Cell::Category(x)) => c.push(x),
            _ => {}
        }
    }

    /// One encoded row, read back through the layout.
    fn push_row(&mut self, layout: &[InputColumn], row: &[f64]) {
        self.rows += 1;
        if layout.is_empty() {
            for (i, x) in row.iter().enumerate() {
                self.push(&format!("features[{i}]"), Cell::Number(*x));
            }
            return;
        }
        let mut at = 0;
        for col in layout {
            match col {
                InputColumn::Numeric { name } => {
                    if let Some(x) = row.get(at) {
                        self.push(name, Cell::Number(*x));
                    }
                    at += 1;
                }
                InputColumn::Categorical { name, categories } => {
                    let block = row.get(at..at + categories.len()).unwrap_or_default();
                    let hot = block.iter().position(|x| *x > 0.5);
                    let category = hot.map_or("(other)".to_owned(), |i| categories[i].clone());
                    self.push(name, Cell::Category(category));
                    at += categories.len();
                }
            }
        }
    }

    fn predicted(&mut self, v: &Value) {
        match v {
            Value::String(l) => self.labels.push(l.clone()),
            Value::Number(n) => self.values.extend(n.as_f64()),
            _ => {}
        }
    }
}

enum Cell {
    Number(f64),
    Category(String),
}

fn kind(c: &Column) -> &'static str {
    match c {
        Column::Numeric(_) => "numeric",
        Column::Categorical(_) => "categorical",
    }
}

fn len(c: &Column) -> usize {
    match c {
        Column::Numeric(v) => v.len(),
        Column::Categorical(v) => v.len(),
    }
}

fn method_name(m: DriftMethod) -> &'static str {
    match m {
        DriftMethod::KolmogorovSmirnov => "ks",
        DriftMethod::ChiSquare => "chi_square",
        DriftMethod::ProportionZ => "z_test",
        DriftMethod::WassersteinNormalized => "wasserstein",
        DriftMethod::JensenShannon => "jensen_shannon",
    }
}

/// NannyML's distance for a column: Wasserstein (normalized) or
/// Jensen-Shannon (base 2).
fn distance(reference: &Column, current: &Column) -> Option<f64> {
    match (reference, current) {
        (Column::Numeric(r), Column::Numeric(c)) => drift::wasserstein_normalized(r, c).ok(),
        (Column::Categorical(r), Column::Categorical(c)) => {
            let aligned =
                drift::align_counts(&drift::count_categories(r), &drift::count_categories(c));
            drift::jensen_shannon(&aligned.reference, &aligned.current, Some(2.0)).ok()
        }
        _ => None,
    }
}

fn slice(c: &Column, part: std::ops::Range<usize>) -> Column {
    match c {
        Column::Numeric(v) => Column::Numeric(v[part].to_vec()),
        Column::Categorical(v) => Column::Categorical(v[part].to_vec()),
    }
}

/// One column judged in `mode`.
fn judge(
    name: &str,
    source: &'static str,
    reference: &Column,
    current: &Column,
    mode: Mode,
) -> ColumnReport {
    let mut out = ColumnReport {
        name: name.to_owned(),
        source,
        kind: kind(reference),
        method: "",
        value: None,
        threshold: None,
        drifted: None,
        reference_values: len(reference),
        current_values: len(current),
    };
    if out.reference_values < MIN_VALUES.max(CHUNKS) || out.current_values < MIN_VALUES {
        out.method = match reference {
            Column::Numeric(_) if mode == Mode::Nannyml => "wasserstein",
            Column::Categorical(_) if mode == Mode::Nannyml => "jensen_shannon",
            _ => "",
        };
        return out;
    }
    match mode {
        Mode::Evidently => {
            if let Ok(d) = drift::column_drift(reference, current) {
                out.method = method_name(d.method);
                out.value = Some(d.value);
                out.threshold = Some(d.threshold);
                out.drifted = Some(d.drifted);
            }
        }
        Mode::Nannyml => {
            out.method = match reference {
                Column::Numeric(_) => "wasserstein",
                Column::Categorical(_) => "jensen_shannon",
            };
            let n = out.reference_values;
            let (size, longer) = (n / CHUNKS, n % CHUNKS);
            let mut start = 0;
            let mut chunk_values = Vec::with_capacity(CHUNKS);
            for k in 0..CHUNKS {
                let end = start + size + usize::from(k < longer);
                chunk_values.extend(distance(reference, &slice(reference, start..end)));
                start = end;
            }
            let bounds = drift::reference_bounds(&chunk_values, drift::NANNYML_STD_MULTIPLIER);
            if let (Some(v), Ok(b)) = (distance(reference, current), bounds) {
                out.value = Some(v);
                out.threshold = Some(b.upper);
                out.drifted = Some(b.exceeds_upper(v));
            }
        }
    }
    out
}

/// The artifact's input layout (empty when it records none) and the
/// embedding model a text head reads through.
async fn layout(s: &Services, version: &ModelVersion) -> (Vec<InputColumn>, Option<String>) {
    let Ok(bytes) = s.artifacts().get(&version.sha256).await else { return (Vec::new(), None) };
    let head = serde_json::from_slice::<Value>(&bytes).unwrap_or_default();
    let layout = head.get("inputs").cloned().and_then(|v| serde_json::from_value(v).ok());
    let base = head.get("base_model").and_then(Value::as_str).map(str::to_owned);
    (layout.unwrap_or_default(), base)
}

/// At most [`MAX_TEXTS`] of `texts`, evenly spaced.
fn spread(texts: &[String]) -> Vec<String> {
    let step = texts.len().div_ceil(MAX_TEXTS).max(1);
    texts.iter().step_by(step).cloned().collect()
}

async fn embed(s: &Services, base: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, ServeError> {
    let engine = s
        .models()
        .get(base)
        .await
        .map_err(|e| ServeError::ModelNotReady(format!("base model {base:?}: {e}")))?;
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let e = crate::inference::backend::embed(s.breakers(), &engine, chunk.to_vec()).await?;
        out.extend(e.vectors);
    }
    Ok(out)
}

/// A vector and its side (0: reference, 1: current).
type Labelled<'a> = (&'a [f32], usize);

/// A text model's input drift by Evidently's default for embeddings (its
/// `model` method): a classifier (logistic regression) learns to tell the
/// reference's vectors from the current ones on one half of each, seeded;
/// the value is its ROC AUC on the other half, and above 0.55 the inputs
/// drift (0.5: it cannot tell them apart).
fn embedding_drift(reference: &[Vec<f32>], current: &[Vec<f32>]) -> ColumnReport {
    use tessera_training::linear::{Matrix, Settings, fit_classifier};
    let mut out = ColumnReport {
        name: "embedding".into(),
        source: "input",
        kind: "embedding",
        method: "domain_classifier",
        value: None,
        threshold: Some(DOMAIN_AUC_THRESHOLD),
        drifted: None,
        reference_values: reference.len(),
        current_values: current.len(),
    };
    let dims = reference.first().map_or(0, Vec::len);
    if reference.len() < MIN_VALUES || current.len() < MIN_VALUES || dims == 0 {
        return out;
    }
    // Each side split in halves by a seeded permutation: train and test
    // hold both sides in their proportions.
    let (mut train, mut test): (Vec<Labelled<'_>>, Vec<Labelled<'_>>) = (Vec::new(), Vec::new());
    for (label, rows) in [(0usize, reference), (1, current)] {
        let order = tessera_training::rng::Rng(42 + label as u64).permutation(rows.len());
        for (n, &i) in order.iter().enumerate() {
            let row = (rows[i].as_slice(), label);
            if n % 2 == 0 { train.push(row) } else { test.push(row) }
        }
    }
    let matrix = |rows: &[Labelled<'_>]| {
        let data: Vec<f32> = rows.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        Matrix::new(rows.len(), dims, data)
    };
    let (xt, xs) = (matrix(&train), matrix(&test));
    let (lt, ls): (Vec<usize>, Vec<usize>) =
        (train.iter().map(|r| r.1).collect(), test.iter().map(|r| r.1).collect());
    let settings = Settings { l2_grid: vec![0.1], max_epochs: 200, ..Settings::default() };
    // The training half is its own validation set: the test half stays unseen.
    let Ok(f) = fit_classifier(&xt, &lt, &xt, &lt, 2, &settings, &mut |_, _, _, _| true) else {
        return out;
    };
    let scores: Vec<f32> = (0..xs.rows)
        .map(|i| {
            let z = |c: usize| {
                f.bias[c] + f.weights[c].iter().zip(xs.row(i)).map(|(a, v)| a * v).sum::<f32>()
            };
            z(1) - z(0)
        })
        .collect();
    let positive: Vec<bool> = ls.iter().map(|l| *l == 1).collect();
    out.value = tessera_training::validate::roc_auc(&positive, &scores);
    out.drifted = out.value.map(|auc| auc > DOMAIN_AUC_THRESHOLD);
    out
}

/// The model's records in `[from, to]`: by version, how many answered;
/// and the sample of `version` (empty when `None`).
async fn records(
    s: &Services,
    ctx: &TenantCtx,
    model: &str,
    version: Option<i64>,
    layout: &[InputColumn],
    from: Timestamp,
    to: Timestamp,
) -> Result<(BTreeMap<i64, usize>, Sample), ServeError> {
    let filter = Filter { event_type: Some(TYPE.into()), until: Some(to), ..Filter::default() };
    let mut at = Position::Time(from);
    let (mut by_version, mut sample, mut read) = (BTreeMap::new(), Sample::default(), 0);
    loop {
        let page = s
            .events()
            .read(ctx.tenant_id(), Topic::Predictions, at, &filter, 1000)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))?;
        read += page.records.len();
        for r in &page.records {
            let p = &r.properties;
            if p.get("model").and_then(Value::as_str) != Some(model)
                || p.get("tier").and_then(Value::as_str) == Some("shadow")
                || p.get("cache").and_then(Value::as_str) == Some("hit")
            {
                continue;
            }
            let Some(v) = p
                .get("version")
                .and_then(Value::as_str)
                .and_then(|v| v.rsplit_once('@').map_or(v, |(_, n)| n).parse::<i64>().ok())
            else {
                continue;
            };
            *by_version.entry(v).or_insert(0) += 1;
            if version != Some(v) {
                continue;
            }
            let predicted =
                p.get("output").and_then(|o| o.get("predicted")).and_then(Value::as_array);
            for x in predicted.into_iter().flatten() {
                sample.predicted(x);
            }
            if let Some(t) = p.get("input").and_then(Value::as_str) {
                sample.texts.push(t.to_owned());
            }
            for row in p.get("rows").and_then(Value::as_array).into_iter().flatten() {
                let row: Vec<f64> =
                    row.as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
                sample.push_row(layout, &row);
            }
        }
        if page.end || read >= MAX_RECORDS {
            break;
        }
        at = Position::Offset(page.next);
    }
    Ok((by_version, sample))
}

/// The training set of `version`, encoded as the model reads it.
async fn training_sample(
    s: &Services,
    ctx: &TenantCtx,
    model: &Model,
    version: i64,
) -> Result<(String, Sample), ServeError> {
    let job = s.store().training_job_for_version(ctx, &model.name, version).await?;
    let Some(job) = job else {
        return Err(ServeError::Conflict(format!(
            "version {version} of {} was not trained here, so it has no training set to compare with; \
             give reference_from and reference_to (a time range of its own predictions)",
            model.name
        )));
    };
    let spec = &job.spec;
    let (_, prepared) = crate::validation::read_dataset(
        s,
        ctx,
        &spec.dataset,
        &spec.label,
        spec.text.as_deref(),
        spec.features.as_deref(),
        None,
    )
    .await
    .map_err(|e| ServeError::Conflict(format!("the training set of version {version}: {e}")))?;
    let mut sample = Sample::default();
    let n = prepared.labels.len();
    // Evenly spaced rows beyond the bound.
    let step = n.div_ceil(MAX_REFERENCE).max(1);
    if let Some(m) = &prepared.features {
        for i in (0..m.rows).step_by(step) {
            let row: Vec<f64> = m.row(i).iter().map(|x| f64::from(*x)).collect();
            sample.push_row(&prepared.layout, &row);
        }
    }
    sample.texts = prepared.texts.iter().step_by(step).cloned().collect();
    let regression = spec.task == "regression";
    for label in prepared.labels.iter().step_by(step) {
        match label {
            Value::Number(n) if regression => sample.values.extend(n.as_f64()),
            Value::String(l) => sample.labels.push(l.clone()),
            other => sample.labels.push(other.to_string()),
        }
    }
    Ok((spec.dataset.clone(), sample))
}

/// The drift report of `model` (the tenant's own, or one it may use).
pub async fn report(
    s: &Services,
    ctx: &TenantCtx,
    view: ModelView<'_>,
    model: &Model,
    q: &Query,
    now: Timestamp,
) -> Result<Report, ServeError> {
    let versions = s.store().list_model_versions(view, model).await?;
    let since = now.plus_millis(-i64::try_from(q.window.as_millis()).unwrap_or(i64::MAX));
    // The version asked for, else the one that answered most in the window.
    let (by_version, _) = records(s, ctx, &model.name, None, &[], since, now).await?;
    let version = q.version.or_else(|| by_version.iter().max_by_key(|(_, n)| **n).map(|(v, _)| *v));
    let mut notes = Vec::new();
    let Some(version) = version else {
        notes.push(format!("no recorded predictions of {} in the window", model.name));
        return Ok(Report {
            object: "model.drift",
            model: model.name.clone(),
            version: None,
            mode: q.mode,
            reference: side("none", None, None, None, &Sample::default()),
            current: side("window", None, Some(since), Some(now), &Sample::default()),
            columns: Vec::new(),
            dataset_drift: None,
            notes,
        });
    };
    let Some(v) = versions.iter().find(|v| v.version == version) else {
        return Err(ServeError::invalid(
            "version",
            format!("model {} has no version {version}", model.name),
        ));
    };
    let (layout, base) = layout(s, v).await;
    let base = base.or_else(|| model.base_model.clone());
    let (_, current) = records(s, ctx, &model.name, Some(version), &layout, since, now).await?;
    let (reference, ref_side) = match &q.reference {
        Reference::Training => {
            let (dataset, sample) = training_sample(s, ctx, model, version).await?;
            let side = side("training", Some(dataset), None, None, &sample);
            (sample, side)
        }
        Reference::Window { from, to } => {
            let (_, sample) =
                records(s, ctx, &model.name, Some(version), &layout, *from, *to).await?;
            let side = side("window", None, Some(*from), Some(*to), &sample);
            (sample, side)
        }
    };
    let mut columns = Vec::new();
    for (name, r) in &reference.columns {
        match current.columns.get(name) {
            Some(c) => columns.push(judge(name, "input", r, c, q.mode)),
            None => columns.push(judge(name, "input", r, &empty_like(r), q.mode)),
        }
    }
    if !reference.columns.is_empty() && current.rows == 0 {
        notes.push(
            "no input rows in the window: inputs are recorded only for tenants that keep them (store_inputs), on tabular routes"
                .into(),
        );
    }
    match &base {
        Some(base) if layout.is_empty() => {
            let (r, c) = (spread(&reference.texts), spread(&current.texts));
            if c.is_empty() {
                notes.push(
                    "no input texts in the window: texts are recorded only for tenants that keep inputs (store_inputs)"
                        .into(),
                );
            }
            if r.len() >= MIN_VALUES && c.len() >= MIN_VALUES {
                let (r, c) = (embed(s, base, &r).await?, embed(s, base, &c).await?);
                columns.push(embedding_drift(&r, &c));
            } else {
                columns.push(embedding_drift(&[], &[]));
            }
        }
        _ if reference.columns.is_empty() && layout.is_empty() && current.rows == 0 => {
            notes.push(
                "input drift needs numeric input rows; this version's inputs are not tabular"
                    .into(),
            );
        }
        _ => {}
    }
    if !reference.labels.is_empty() || !current.labels.is_empty() {
        let (r, c) = (
            Column::Categorical(reference.labels.clone()),
            Column::Categorical(current.labels.clone()),
        );
        columns.push(judge("prediction", "prediction", &r, &c, q.mode));
    } else if !reference.values.is_empty() || !current.values.is_empty() {
        let (r, c) =
            (Column::Numeric(reference.values.clone()), Column::Numeric(current.values.clone()));
        columns.push(judge("prediction", "prediction", &r, &c, q.mode));
    }
    let dataset_drift = summary(&columns);
    Ok(Report {
        object: "model.drift",
        model: model.name.clone(),
        version: Some(version),
        mode: q.mode,
        reference: ref_side,
        current: side("window", None, Some(since), Some(now), &current),
        columns,
        dataset_drift,
        notes,
    })
}

/// `GET /v1/features/views/{name}/drift`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ViewDriftReport)]
pub struct ViewReport {
    /// `feature_view.drift`.
    pub object: &'static str,
    pub view: String,
    pub mode: Mode,
    pub reference: Side,
    pub current: Side,
    pub columns: Vec<ColumnReport>,
    pub dataset_drift: Option<Summary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A feature view's rows in `[from, to]` (by event time), as columns of its schema.
async fn view_sample(
    s: &Services,
    ctx: &TenantCtx,
    view: &str,
    schema: &[tessera_core::features::Field],
    from: Timestamp,
    to: Timestamp,
) -> Result<Sample, ServeError> {
    use tessera_core::features::Dtype;
    let rows = s
        .feature_stores()
        .offline
        .scan_window(ctx.tenant_id(), view, from.millis(), to.millis(), MAX_REFERENCE)
        .await
        .map_err(|e| ServeError::Unavailable(e.to_string()))?;
    let mut sample = Sample::default();
    for r in &rows {
        sample.rows += 1;
        for f in schema {
            let cell = match (f.dtype, r.values.get(&f.name)) {
                (Dtype::Int64 | Dtype::Float64, Some(v)) => v.as_f64().map(Cell::Number),
                (Dtype::String, Some(Value::String(t))) => Some(Cell::Category(t.clone())),
                (Dtype::Bool, Some(Value::Bool(b))) => Some(Cell::Category(b.to_string())),
                _ => None,
            };
            if let Some(c) = cell {
                sample.push(&f.name, c);
            }
        }
    }
    Ok(sample)
}

/// The drift of a feature view's values: the rows written for the window
/// against the window before it (or a fixed range), column by column.
pub async fn view_report(
    s: &Services,
    ctx: &TenantCtx,
    name: &str,
    window: Duration,
    reference: Option<(Timestamp, Timestamp)>,
    mode: Mode,
    now: Timestamp,
) -> Result<ViewReport, ServeError> {
    let catalog = s.feature_catalogs().get(s.store(), ctx).await?;
    let Some(view) = catalog.views.get(name) else {
        return Err(ServeError::NotFound(format!("feature view {name:?} not found")));
    };
    let schema = &view.spec.schema;
    let span = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let since = now.plus_millis(-span);
    let (from, to) = reference.unwrap_or((since.plus_millis(-span), since.plus_millis(-1)));
    let current = view_sample(s, ctx, name, schema, since, now).await?;
    let past = view_sample(s, ctx, name, schema, from, to).await?;
    let mut notes = Vec::new();
    if past.rows == 0 {
        notes.push("no rows in the reference range".into());
    }
    let columns: Vec<ColumnReport> = past
        .columns
        .iter()
        .map(|(n, r)| match current.columns.get(n) {
            Some(c) => judge(n, "feature", r, c, mode),
            None => judge(n, "feature", r, &empty_like(r), mode),
        })
        .collect();
    let dataset_drift = summary(&columns);
    Ok(ViewReport {
        object: "feature_view.drift",
        view: name.to_owned(),
        mode,
        reference: side("window", None, Some(from), Some(to), &past),
        current: side("window", None, Some(since), Some(now), &current),
        columns,
        dataset_drift,
        notes,
    })
}

/// The share of judged columns that drift, by Evidently's 0.5.
fn summary(columns: &[ColumnReport]) -> Option<Summary> {
    let judged: Vec<bool> = columns.iter().filter_map(|c| c.drifted).collect();
    (!judged.is_empty()).then(|| {
        let drifted = judged.iter().filter(|d| **d).count();
        let share = drifted as f64 / judged.len() as f64;
        Summary {
            columns: judged.len(),
            drifted_columns: drifted,
            share,
            drift_share: drift::DEFAULT_DRIFT_SHARE,
            drifted: share >= drift::DEFAULT_DRIFT_SHARE,
        }
    })
}

fn empty_like(c: &Column) -> Column {
    match c {
        Column::Numeric(_) => Column::Numeric(Vec::new()),
        Column::Categorical(_) => Column::Categorical(Vec::new()),
    }
}

fn side(
    kind: &'static str,
    dataset: Option<String>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    s: &Sample,
) -> Side {
    Side { kind, dataset, from, to, rows: s.rows, predictions: s.labels.len() + s.values.len() }
}

#[cfg(test)]
mod tests;
