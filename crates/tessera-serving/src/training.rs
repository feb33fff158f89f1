//! The training job runner (L2): each replica takes queued jobs from the
//! store one at a time (a claim no other replica can make), reads the
//! dataset from its artifact, embeds a text column through the engine's
//! batcher (vectors cached by content hash), fits on a blocking thread,
//! scores the holdout and stores the head as the model's next version.
//! Progress goes to the store every half second, which is also where a
//! cancel is seen; a replica that stops leaves its job to be marked failed
//! by the others once it has been quiet for [`STALE`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera_core::audit::AuditActor;
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::ids::TenantId;
use tessera_core::model::{Model, NewModel};
use tessera_core::time::Timestamp;
use tessera_core::training::{DEFAULT_BASE_MODEL, Job, JobSpec, JobStatus, Progress};
use tessera_store::{JobUpdate, KeyOwner, ModelScope, ModelView, StoreError};
use tessera_training::linear::{self, FitError, Matrix, Settings};
use tessera_training::prepare::{classes, targets};
use tessera_training::{metrics, mlp};
use tokio::sync::Notify;

use crate::Services;
use crate::inference::backend;
use crate::validation::{self, EvalInputs, EvalSet};

/// A running job not updated for this long lost its replica.
pub const STALE: Duration = Duration::from_secs(120);
/// Texts per embedding call.
const EMBED_BATCH: usize = 64;

/// Why a job failed, as its `error` says.
type Failure = String;

pub struct Trainer {
    wake: Notify,
    /// Embeddings by (base model, text) digest, shared by jobs.
    vectors: moka::sync::Cache<String, Arc<[f32]>>,
    owner: String,
}

impl Default for Trainer {
    fn default() -> Self {
        Self {
            wake: Notify::new(),
            vectors: moka::sync::Cache::builder()
                .weigher(|_, v: &Arc<[f32]>| u32::try_from(v.len() * 4 + 64).unwrap_or(u32::MAX))
                .max_capacity(128 * 1024 * 1024)
                .build(),
            owner: format!("replica-{}", tessera_core::ids::random_lower(10)),
        }
    }
}

impl Trainer {
    /// A job was queued: look now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The runner's loop; one job at a time per replica.
pub async fn run(s: Services, sys: SystemCtx) {
    // An embedded store has one server: a job still running is one its
    // previous run left (killed or crashed), marked failed at once.
    if s.store().backend() == "sqlite" {
        match s.store().fail_stale_training_jobs(&sys, Timestamp::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                jobs = n,
                "training jobs cut off by the last stop were marked failed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not look for training jobs cut off by the last stop")
            }
        }
    }
    let mut last_sweep: Option<Instant> = None;
    loop {
        if last_sweep.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
            let before =
                Timestamp::from_millis(Timestamp::now().millis() - STALE.as_millis() as i64);
            match s.store().fail_stale_training_jobs(&sys, before).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    jobs = n,
                    "training jobs whose replica stopped were marked failed"
                ),
                Err(e) => tracing::warn!(error = %e, "could not look for stale training jobs"),
            }
            last_sweep = Some(Instant::now());
        }
        match s.store().claim_training_job(&sys, &s.trainer().owner).await {
            Ok(Some((tenant, job))) => {
                let id = job.id.clone();
                tracing::info!(job = %id, tenant = %tenant, "training job started");
                let outcome = run_job(&s, &sys, tenant, job).await;
                finish(&s, &sys, &id, outcome).await;
            }
            Ok(None) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), s.trainer().wake.notified()).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a training job");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// What a job that ran to its end made.
struct Made {
    model: String,
    version: i64,
    metrics: Value,
}

async fn finish(s: &Services, sys: &SystemCtx, id: &str, outcome: Result<Made, Failure>) {
    let done = Progress { phase: "done".into(), fraction: 1.0, ..Progress::default() };
    let update = match &outcome {
        Ok(m) => JobUpdate {
            status: JobStatus::Succeeded,
            progress: &done,
            model: Some(&m.model),
            version: Some(m.version),
            metrics: Some(&m.metrics),
            error: None,
        },
        Err(e) => JobUpdate {
            status: JobStatus::Failed,
            progress: &done,
            model: None,
            version: None,
            metrics: None,
            error: Some(e),
        },
    };
    match s.store().update_training_job(sys, id, &update).await {
        Ok(true) => tracing::info!(job = %id, ok = outcome.is_ok(), "training job finished"),
        // Cancelled meanwhile: it stays cancelled (a version it made stays too).
        Ok(false) => tracing::info!(job = %id, "training job ended after it was cancelled"),
        Err(e) => {
            tracing::warn!(job = %id, error = %e, "could not record the end of a training job")
        }
    }
}

/// Reports progress while `work` runs; a report the store refuses means
/// the job was cancelled, and `cancel` is raised.
struct Reporter {
    progress: Mutex<Progress>,
    cancel: AtomicBool,
    started: Instant,
}

impl Reporter {
    fn set(&self, p: Progress) {
        let mut p = p;
        let elapsed = self.started.elapsed().as_secs_f64();
        if p.fraction > 0.02 {
            p.eta_secs = Some((elapsed / p.fraction - elapsed).max(0.0));
        }
        *self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = p;
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

async fn report_until<T>(
    s: &Services,
    sys: &SystemCtx,
    id: &str,
    r: &Reporter,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let p = r.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                let u = JobUpdate { status: JobStatus::Running, progress: &p, model: None, version: None, metrics: None, error: None };
                if let Ok(false) = s.store().update_training_job(sys, id, &u).await {
                    r.cancel.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn run_job(
    s: &Services,
    sys: &SystemCtx,
    tenant: TenantId,
    job: Job,
) -> Result<Made, Failure> {
    let ctx = sys.tenant(tenant);
    let reporter = Arc::new(Reporter {
        progress: Mutex::new(Progress { phase: "reading".into(), ..Progress::default() }),
        cancel: AtomicBool::new(false),
        started: Instant::now(),
    });
    let work = train(s, &ctx, &job, reporter.clone());
    report_until(s, sys, &job.id, &reporter, work).await
}

fn store_err(e: StoreError) -> Failure {
    e.to_string()
}

async fn train(
    s: &Services,
    ctx: &TenantCtx,
    job: &Job,
    r: Arc<Reporter>,
) -> Result<Made, Failure> {
    let spec = &job.spec;
    let (dataset, prepared) = validation::read_dataset(
        s,
        ctx,
        &spec.dataset,
        &spec.label,
        spec.text.as_deref(),
        spec.features.as_deref(),
        spec.protected_attribute.as_deref(),
    )
    .await?;
    let n = prepared.labels.len();
    // The inputs: a text column's embeddings, or the feature columns.
    let (x, base, base_version) = match &spec.text {
        Some(_) => {
            let base = spec.base_model.clone().unwrap_or_else(|| DEFAULT_BASE_MODEL.to_owned());
            let (x, version) = embed_all(s, &base, &prepared.texts, &r).await?;
            (x, Some(base), Some(version))
        }
        None => (prepared.features.clone().ok_or("no feature values were read")?, None, None),
    };
    let skipped = prepared.skipped;
    let (train_idx, hold_idx) = metrics::split(n, spec.holdout, spec.seed);
    let (train_rows, hold_rows) = (train_idx.len(), hold_idx.len());
    if hold_idx.len() < 10 || train_idx.len() < 10 {
        return Err(format!(
            "{n} usable rows leave {} for training and {} held out; at least 10 each",
            train_idx.len(),
            hold_idx.len()
        ));
    }
    // Early stopping watches a slice of the training rows, never the holdout.
    let (fit_pos, val_pos) = metrics::split(train_idx.len(), 0.1, spec.seed.wrapping_add(1));
    let fit_idx: Vec<usize> = fit_pos.iter().map(|&i| train_idx[i]).collect();
    let val_idx: Vec<usize> = val_pos.iter().map(|&i| train_idx[i]).collect();
    let settings = settings(spec);
    r.set(Progress { phase: "training".into(), fraction: 0.6, ..Progress::default() });
    let started = Instant::now();
    // The holdout as the served version reads it, for its report.
    let hold_labels: Vec<Value> = hold_idx.iter().map(|&i| prepared.labels[i].clone()).collect();
    let hold_inputs = match &spec.text {
        Some(_) => EvalInputs::Texts(hold_idx.iter().map(|&i| prepared.texts[i].clone()).collect()),
        None => EvalInputs::Rows(x.take(&hold_idx)),
    };
    let hold_groups =
        prepared.groups.as_ref().map(|g| hold_idx.iter().map(|&i| g[i].clone()).collect());
    let (labels, task, r2) = (prepared.labels, spec.task.clone(), r.clone());
    let balanced = spec.class_weight.is_some();
    let hidden = spec.hidden_units();
    let seed = spec.seed;
    let (fitted, names, metrics_json, expected) = tokio::task::spawn_blocking(move || {
        let splits = Splits { fit: &fit_idx, val: &val_idx, hold: &hold_idx };
        fit_and_score(&x, &labels, &task, &splits, settings, balanced, hidden, seed, &r2)
    })
    .await
    .map_err(|e| format!("the trainer failed to run: {e}"))??;
    let training_secs = started.elapsed().as_secs_f64();
    r.set(Progress { phase: "storing".into(), fraction: 0.95, ..Progress::default() });
    let mut head = match &fitted {
        Head::Linear(f) => {
            json!({"format": "tessera.linear.v1", "weights": f.weights, "bias": f.bias})
        }
        Head::Mlp(f) => json!({"format": "tessera.mlp.v1", "weights": f.w2, "bias": f.b2,
                               "hidden": [{"weights": f.w1, "bias": f.b1}]}),
    };
    head["task"] = json!(spec.task);
    head["labels"] = json!(names);
    head["base_model"] = json!(base);
    if !prepared.layout.is_empty() {
        head["inputs"] = json!(prepared.layout);
    }
    let artifact = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
    tessera_engine::check_artifact("linear", &artifact).map_err(|e| e.to_string())?;
    let (sha, size) = s.artifacts().put(artifact).await.map_err(store_err)?;
    let actor = AuditActor { key_id: job.created_by.clone(), request_id: Some(job.id.clone()) };
    let model = model_for(s, ctx, spec, base.as_deref(), &actor).await?;
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let v = s
        .store()
        .add_model_version(KeyOwner::Tenant(ctx), &model, &sha, size, None, &actor)
        .await
        .map_err(store_err)?;
    let mut metrics = metrics_json;
    let (l2, epochs) = match &fitted {
        Head::Linear(f) => (f.l2, f.epochs),
        Head::Mlp(f) => (f.l2, f.epochs),
    };
    metrics["l2"] = json!(l2);
    metrics["epochs"] = json!(epochs);
    metrics["rows"] =
        json!({"used": n, "skipped": skipped, "training": train_rows, "holdout": hold_rows});
    metrics["training_seconds"] = json!(training_secs);
    metrics["seconds"] = json!(r.started.elapsed().as_secs_f64());
    metrics["dataset"] = json!({"id": dataset.id, "name": dataset.name, "version": dataset.version, "sha256": dataset.sha256});
    metrics["trainer"] = json!(match (&fitted, spec.task.as_str()) {
        (Head::Linear(_), "classification") => {
            "multinomial logistic regression (Adam, early stopping, L2 and epochs by 5-fold cross-validation up to 10,000 rows, refit on all training rows)"
                .to_owned()
        }
        (Head::Linear(_), _) => {
            "least-squares regression (Adam, early stopping, L2 and epochs by 5-fold cross-validation up to 10,000 rows, refit on all training rows)".to_owned()
        }
        (Head::Mlp(f), _) => format!(
            "MLP, one hidden ReLU layer of {} units (Adam on mini-batches, early stopping, L2 by validation loss)",
            f.b1.len()
        ),
    });
    if let (Some(b), Some(v)) = (&base, &base_version) {
        metrics["base_model"] = json!({"name": b, "version": v});
    }
    // The report: the stored version through the serving path, on the holdout.
    r.set(Progress { phase: "validating".into(), fraction: 0.97, ..Progress::default() });
    let thresholds = s
        .tenants()
        .get(s.store(), ctx)
        .await
        .map_err(|e| e.to_string())?
        .tenant
        .gate_thresholds
        .clone();
    let set = EvalSet {
        inputs: hold_inputs,
        labels: hold_labels,
        groups: spec.protected_attribute.clone().zip(hold_groups),
        seed: spec.seed,
        dataset: Some(
            json!({"id": dataset.id, "name": dataset.name, "version": dataset.version, "sha256": dataset.sha256, "rows": "holdout"}),
        ),
        expected: Some(expected),
    };
    let validating = Instant::now();
    let report = validation::validate(s, &model, &v, set, &thresholds).await?;
    metrics["validation_seconds"] = json!(validating.elapsed().as_secs_f64());
    s.store()
        .put_version_report(KeyOwner::Tenant(ctx), &model, v.version, &report, &actor)
        .await
        .map_err(store_err)?;
    let failing: Vec<&str> = report.failing().iter().map(|c| c.name.as_str()).collect();
    metrics["report"] = json!({"passed": report.passed, "failing": failing});
    Ok(Made { model: model.name, version: v.version, metrics })
}

fn settings(spec: &JobSpec) -> Settings {
    let mut s = Settings::default();
    if spec.hidden_units().is_some() {
        // An MLP learns more slowly and overfits sooner than a linear head.
        s = Settings {
            l2_grid: vec![1e-4, 1e-3, 1e-2],
            max_epochs: 200,
            patience: 10,
            learning_rate: 0.003,
            class_weights: None,
        };
    }
    if let Some(h) = &spec.hyperparameters {
        if let Some(l2) = &h.l2 {
            s.l2_grid = l2.clone();
        }
        s.max_epochs = h.max_epochs.unwrap_or(s.max_epochs);
        s.patience = h.patience.unwrap_or(s.patience);
        s.learning_rate = h.learning_rate.unwrap_or(s.learning_rate);
    }
    s
}

/// What a trainer fitted.
enum Head {
    Linear(linear::Fitted),
    Mlp(mlp::MlpFitted),
}

/// A fitted head, its class names (classification), its holdout metrics
/// and what it predicts for each holdout row (class index or value).
type Fit = (Head, Option<Vec<String>>, Value, Vec<f32>);

/// Row indices: fitted on, watched for early stopping, held out.
struct Splits<'a> {
    fit: &'a [usize],
    val: &'a [usize],
    hold: &'a [usize],
}

/// Folds of the L2 search.
const FOLDS: usize = 5;
/// Above this many training rows one validation slice chooses L2 (at that
/// size its estimate is steady, and folds would cost five times the fits).
const FOLD_MAX_ROWS: usize = 10_000;

/// One linear fit: (rows, their labels, validation rows, their labels,
/// settings, progress); `linear::fit_classifier` or `fit_regressor`.
type LinearFit<'a, T> = dyn FnMut(
        &Matrix,
        &[T],
        &Matrix,
        &[T],
        &Settings,
        &mut linear::OnEpoch<'_>,
    ) -> Result<linear::Fitted, FitError>
    + 'a;

/// A linear head on `x` (the training rows) and their labels `y`: L2 and
/// epochs chosen by [`FOLDS`]-fold cross-validation (one slice of a tenth
/// above [`FOLD_MAX_ROWS`]), each grid value fitted once per fold and
/// stopped early on it, the lowest mean validation loss winning with the
/// mean of its epochs; then refit on every row with that L2 for that many
/// epochs.
fn fit_linear<T: Copy>(
    x: &Matrix,
    y: &[T],
    settings: &Settings,
    seed: u64,
    on_epoch: &mut linear::OnEpoch<'_>,
    on_refit: &mut linear::OnEpoch<'_>,
    fit: &mut LinearFit<'_, T>,
) -> Result<linear::Fitted, FitError> {
    let folds = if x.rows > FOLD_MAX_ROWS {
        vec![metrics::split(x.rows, 0.1, seed.wrapping_add(1))]
    } else {
        metrics::folds(x.rows, FOLDS, seed.wrapping_add(1))
    };
    let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<T>>();
    let grid = if settings.l2_grid.is_empty() { vec![0.0] } else { settings.l2_grid.clone() };
    let of = grid.len() * folds.len();
    let mut best: Option<(f32, f32, usize)> = None;
    for (gi, &l2) in grid.iter().enumerate() {
        let one = Settings { l2_grid: vec![l2], ..settings.clone() };
        let (mut loss, mut epochs) = (0.0f32, 0usize);
        for (fi, (rest, fold)) in folds.iter().enumerate() {
            let cand = gi * folds.len() + fi;
            let (xt, xv) = (x.take(rest), x.take(fold));
            let f = fit(&xt, &pick(rest), &xv, &pick(fold), &one, &mut |_, _, e, l| {
                on_epoch(cand, of, e, l)
            })?;
            loss += f.validation_loss;
            epochs += f.epochs;
        }
        let (loss, epochs) = (loss / folds.len() as f32, epochs.div_ceil(folds.len()));
        if best.is_none_or(|b| loss < b.0) {
            best = Some((loss, l2, epochs));
        }
    }
    let (loss, l2, epochs) = best.ok_or_else(|| FitError::Invalid("no candidate".into()))?;
    let epochs = epochs.max(1);
    let once = Settings {
        l2_grid: vec![l2],
        max_epochs: epochs,
        patience: epochs + 1,
        ..settings.clone()
    };
    // Validated on its own rows: the last epoch is the best, no early stop.
    let mut f = fit(x, y, x, y, &once, on_refit)?;
    (f.epochs, f.validation_loss) = (epochs, loss);
    Ok(f)
}

/// Fits on the fit rows, stops early on the validation rows (choosing L2
/// and the epochs), refits a linear head on all the training rows, scores
/// the holdout; classification with its class names.
#[expect(clippy::too_many_arguments, reason = "the data, the splits and the job's settings")]
fn fit_and_score(
    x: &Matrix,
    labels: &[Value],
    task: &str,
    splits: &Splits<'_>,
    mut settings: Settings,
    balanced: bool,
    hidden: Option<usize>,
    seed: u64,
    r: &Reporter,
) -> Result<Fit, Failure> {
    let (fit_idx, val_idx, hold_idx) = (splits.fit, splits.val, splits.hold);
    let (xf, xv, xh) = (x.take(fit_idx), x.take(val_idx), x.take(hold_idx));
    let max = settings.max_epochs.max(1);
    let mut on_epoch = |cand: usize, of: usize, epoch: usize, loss: f32| {
        let within = (cand as f64 + epoch as f64 / max as f64) / of.max(1) as f64;
        r.set(Progress {
            phase: "training".into(),
            fraction: 0.6 + 0.35 * within.min(1.0),
            epoch: Some(epoch),
            loss: Some(loss),
            eta_secs: None,
        });
        !r.cancelled()
    };
    let mut on_refit = |_: usize, _: usize, epoch: usize, loss: f32| {
        r.set(Progress {
            phase: "refitting".into(),
            fraction: 0.95,
            epoch: Some(epoch),
            loss: Some(loss),
            eta_secs: None,
        });
        !r.cancelled()
    };
    let fit_err = |e: FitError| e.to_string();
    if task == "classification" {
        let (y, names) = classes(labels)?;
        let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<_>>();
        let (yf, yv, yh) = (pick(fit_idx), pick(val_idx), pick(hold_idx));
        if balanced {
            settings.class_weights = Some(linear::balanced_weights(&yf, names.len()));
        }
        let (f, predicted) = match hidden {
            None => {
                let k = names.len();
                let all = [fit_idx, val_idx].concat();
                let f = fit_linear(
                    &x.take(&all),
                    &pick(&all),
                    &settings,
                    seed,
                    &mut on_epoch,
                    &mut on_refit,
                    &mut |xt, yt, xv, yv, s, cb| linear::fit_classifier(xt, yt, xv, yv, k, s, cb),
                )
                .map_err(fit_err)?;
                let p = linear::predict_classes(&f, &xh);
                (Head::Linear(f), p)
            }
            Some(h) => {
                let k = names.len();
                let cw = settings.class_weights.clone();
                let t = mlp::Target::Classes { labels: &yf, classes: k, weights: cw.as_deref() };
                let tv = mlp::Target::Classes { labels: &yv, classes: k, weights: None };
                let f = mlp::fit_mlp(&xf, t, &xv, tv, h, &settings, seed, &mut on_epoch)
                    .map_err(fit_err)?;
                let p = mlp::predict_classes(&f, &xh);
                (Head::Mlp(f), p)
            }
        };
        let m = metrics::classification(&names, &yh, &predicted);
        let m = serde_json::to_value(m).map_err(|e| e.to_string())?;
        let expected = predicted.iter().map(|&c| c as f32).collect();
        Ok((f, Some(names), json!({"holdout": m}), expected))
    } else {
        let y = targets(labels)?;
        let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<_>>();
        let (yf, yv, yh) = (pick(fit_idx), pick(val_idx), pick(hold_idx));
        let (f, predicted) = match hidden {
            None => {
                let all = [fit_idx, val_idx].concat();
                let f = fit_linear(
                    &x.take(&all),
                    &pick(&all),
                    &settings,
                    seed,
                    &mut on_epoch,
                    &mut on_refit,
                    &mut |xt, yt, xv, yv, s, cb| linear::fit_regressor(xt, yt, xv, yv, s, cb),
                )
                .map_err(fit_err)?;
                let p = linear::predict_values(&f, &xh);
                (Head::Linear(f), p)
            }
            Some(h) => {
                let (t, tv) = (mlp::Target::Values(&yf), mlp::Target::Values(&yv));
                let f = mlp::fit_mlp(&xf, t, &xv, tv, h, &settings, seed, &mut on_epoch)
                    .map_err(fit_err)?;
                let p = mlp::predict_values(&f, &xh);
                (Head::Mlp(f), p)
            }
        };
        let m = metrics::regression(&yh, &predicted);
        let m = serde_json::to_value(m).map_err(|e| e.to_string())?;
        Ok((f, None, json!({"holdout": m}), predicted))
    }
}

/// Every text's embedding by `base`, in batches through the batcher;
/// vectors seen before come from the cache.
async fn embed_all(
    s: &Services,
    base: &str,
    texts: &[String],
    r: &Reporter,
) -> Result<(Matrix, String), Failure> {
    use sha2::Digest as _;
    let engine = s.models().get(base).await.map_err(|e| format!("base model {base:?}: {e}"))?;
    let key = |t: &str| {
        let mut h = sha2::Sha256::new();
        h.update(base.as_bytes());
        h.update([0]);
        h.update(t.as_bytes());
        hex::encode(h.finalize())
    };
    let cache = &s.trainer().vectors;
    let mut rows: Vec<Option<Arc<[f32]>>> = texts.iter().map(|t| cache.get(&key(t))).collect();
    let missing: Vec<usize> = (0..texts.len()).filter(|&i| rows[i].is_none()).collect();
    for (done, chunk) in missing.chunks(EMBED_BATCH).enumerate() {
        if r.cancelled() {
            return Err("training was cancelled".into());
        }
        let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
        let out = backend::embed(s.breakers(), &engine, batch)
            .await
            .map_err(|e| format!("embedding failed: {e}"))?;
        for (&i, v) in chunk.iter().zip(out.vectors) {
            let v: Arc<[f32]> = v.into();
            cache.insert(key(&texts[i]), v.clone());
            rows[i] = Some(v);
        }
        let fraction =
            ((done + 1) * EMBED_BATCH).min(missing.len()) as f64 / missing.len().max(1) as f64;
        r.set(Progress {
            phase: "embedding".into(),
            fraction: 0.05 + 0.55 * fraction,
            ..Progress::default()
        });
    }
    let dim = engine.dim;
    let mut data = Vec::with_capacity(texts.len() * dim);
    for v in rows.into_iter().flatten() {
        data.extend_from_slice(&v);
    }
    Ok((Matrix::new(texts.len(), dim, data), engine.version.clone()))
}

/// The tenant's model the job versions: created on first use; one that
/// exists must be a linear model of the same task and base.
async fn model_for(
    s: &Services,
    ctx: &TenantCtx,
    spec: &JobSpec,
    base: Option<&str>,
    actor: &AuditActor,
) -> Result<Model, Failure> {
    let view = ModelView::Tenant { ctx, segment: None };
    match s.store().resolve_model(view, &spec.model).await {
        Ok(m) if m.tenant_id.as_ref() == Some(ctx.tenant_id()) => {
            if m.runtime != "linear" || m.task != spec.task || m.base_model.as_deref() != base {
                return Err(format!(
                    "model {:?} is a {} {} model over {}; this job makes a linear {} model over {}",
                    m.name,
                    m.runtime,
                    m.task,
                    m.base_model.as_deref().unwrap_or("numbers"),
                    spec.task,
                    base.unwrap_or("numbers")
                ));
            }
            Ok(m)
        }
        Ok(_) | Err(StoreError::NotFound { .. }) => {
            let new = NewModel {
                name: spec.model.clone(),
                task: spec.task.clone(),
                runtime: "linear".into(),
                base_model: base.map(str::to_owned),
                segment: None,
                scope: None,
                config: None,
            };
            s.store()
                .create_model(ModelScope::Tenant(ctx), &new, None, actor)
                .await
                .map_err(store_err)
        }
        Err(e) => Err(store_err(e)),
    }
}
