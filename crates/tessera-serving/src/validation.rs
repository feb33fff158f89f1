//! Validation reports (L3): a model version run through the serving path
//! (its verified artifact loaded into the pool, text embedded by the base
//! model's batcher, the head's batcher) on labelled rows, and the checks the
//! tenant's thresholds ask for: holdout quality, latency p50/p99 of one-row
//! requests, robustness under small perturbations, fairness across a
//! protected attribute's groups, and the artifact itself (checksum, size,
//! loads and answers as the trainer predicted).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tessera_core::auth::TenantCtx;
use tessera_core::dataset::Dataset;
use tessera_core::governance::{Check, Comparison, GateThresholds, Report};
use tessera_core::model::{Model, ModelVersion};
use tessera_engine::pool::{EmbeddingModel, TensorModel};
use tessera_engine::tensor::{Tensor, TensorData};
use tessera_training::dataset::Format;
use tessera_training::linear::Matrix;
use tessera_training::metrics;
use tessera_training::prepare::{Inputs, Prepared, features_of, prepare};
use tessera_training::validate::{fairness, percentile, perturb_numbers, perturb_text, roc_auc};

use crate::Services;
use crate::inference::{backend, load_tensor};

/// Rows per batched call.
const BATCH: usize = 64;
/// One-row requests timed for the latency check.
const LATENCY_SAMPLES: usize = 200;
/// Groups smaller than this are left out of the fairness comparison.
const MIN_GROUP: u64 = 10;
/// Noise for numbers, in standard deviations of each column.
const NOISE: f64 = 0.05;

/// What a version reads.
pub enum EvalInputs {
    Texts(Vec<String>),
    Rows(Matrix),
}

impl EvalInputs {
    fn len(&self) -> usize {
        match self {
            EvalInputs::Texts(t) => t.len(),
            EvalInputs::Rows(m) => m.rows,
        }
    }
}

/// Labelled rows to validate on.
pub struct EvalSet {
    pub inputs: EvalInputs,
    pub labels: Vec<Value>,
    /// Each row's group under the protected attribute.
    pub groups: Option<(String, Vec<String>)>,
    pub seed: u64,
    /// Which dataset the rows came from (for the report).
    pub dataset: Option<Value>,
    /// What the trainer predicted for these rows (class index or value):
    /// the served version must agree.
    pub expected: Option<Vec<f32>>,
}

/// A version ready to run, with its base embedding model for text.
struct Runner {
    head: Arc<TensorModel>,
    base: Option<Arc<EmbeddingModel>>,
    input: String,
}

/// A row's answer: class probabilities, or a value.
enum Answer {
    Classes(Vec<Vec<f32>>),
    Values(Vec<f32>),
}

impl Runner {
    async fn run(
        &self,
        s: &Services,
        inputs: &EvalInputs,
        rows: &[usize],
    ) -> Result<Answer, String> {
        let out = match (inputs, &self.base) {
            (EvalInputs::Texts(t), Some(base)) => {
                let texts = rows.iter().map(|&i| t[i].clone()).collect();
                backend::infer_texts(s.breakers(), &self.head, base, texts).await
            }
            (EvalInputs::Rows(m), None) => {
                let data: Vec<f32> = rows.iter().flat_map(|&i| m.row(i).to_vec()).collect();
                let t = Tensor::f32(vec![rows.len() as i64, m.cols as i64], data)
                    .map_err(|e| e.to_string())?;
                backend::infer(s.breakers(), &self.head, vec![(self.input.clone(), t)]).await
            }
            (EvalInputs::Texts(_), None) => {
                return Err("the version reads numbers; the rows given are text".into());
            }
            (EvalInputs::Rows(_), Some(_)) => {
                return Err("the version reads text; the rows given are numbers".into());
            }
        }
        .map_err(|e| e.to_string())?;
        let first = |names: &[&str]| {
            out.iter()
                .find(|(n, _)| names.contains(&n.as_str()))
                .or_else(|| out.first())
                .map(|(_, t)| t.clone())
                .ok_or_else(|| "the version answered no outputs".to_owned())
        };
        if self.head.labels.is_some() {
            let t = first(&["probabilities"])?;
            let TensorData::F32(p) = t.data else {
                return Err("class probabilities are not FP32".into());
            };
            let k = t.shape.get(1).copied().unwrap_or(1).max(1) as usize;
            Ok(Answer::Classes(p.chunks(k).map(<[f32]>::to_vec).collect()))
        } else {
            let t = first(&["prediction"])?;
            let TensorData::F32(p) = t.data else { return Err("predictions are not FP32".into()) };
            let k = t.shape.get(1).copied().unwrap_or(1).max(1) as usize;
            Ok(Answer::Values(p.chunks(k).map(|r| r[0]).collect()))
        }
    }

    async fn run_all(&self, s: &Services, inputs: &EvalInputs) -> Result<Answer, String> {
        let idx: Vec<usize> = (0..inputs.len()).collect();
        let mut classes = Vec::new();
        let mut values = Vec::new();
        for chunk in idx.chunks(BATCH) {
            match self.run(s, inputs, chunk).await? {
                Answer::Classes(c) => classes.extend(c),
                Answer::Values(v) => values.extend(v),
            }
        }
        Ok(if self.head.labels.is_some() {
            Answer::Classes(classes)
        } else {
            Answer::Values(values)
        })
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
        .0
}

fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Validates `version` of `model` on `set` against `thresholds`.
pub async fn validate(
    s: &Services,
    model: &Model,
    version: &ModelVersion,
    set: EvalSet,
    thresholds: &GateThresholds,
) -> Result<Report, String> {
    if set.inputs.len() == 0 || set.inputs.len() != set.labels.len() {
        return Err("validation needs labelled rows".into());
    }
    let mut checks = Vec::new();
    let mut m = json!({});
    // The artifact: read back by its digest (which checks it), its size,
    // and whether it parses as the model's runtime.
    let artifact = async {
        let bytes = s.artifacts().get(&version.sha256).await.map_err(|e| e.to_string())?;
        if i64::try_from(bytes.len()).ok() != Some(version.size) {
            return Err(format!("{} bytes stored, {} recorded", bytes.len(), version.size));
        }
        tessera_engine::check_artifact(&model.runtime, &bytes).map_err(|e| e.to_string())?;
        Ok::<usize, String>(bytes.len())
    }
    .await;
    let loaded = match &artifact {
        Ok(_) => load(s, model, version).await,
        Err(e) => Err(e.clone()),
    };
    let runner = match loaded {
        Ok(r) => r,
        Err(e) => {
            checks.push(
                Check::new("artifact", Some(0.0), 1.0, Comparison::AtLeast).with_detail(e.clone()),
            );
            m["artifact"] = json!({"ok": false, "error": e});
            return Ok(Report::new(checks, m, thresholds.clone(), set.dataset));
        }
    };
    let answers = runner.run_all(s, &set.inputs).await?;
    let classification = matches!(answers, Answer::Classes(_));
    // Quality on the rows, and what the trainer expected.
    let mut agreement = None;
    let clean_score;
    match &answers {
        Answer::Classes(p) => {
            let names = runner.head.labels.clone().unwrap_or_default();
            let truth: Vec<usize> = set
                .labels
                .iter()
                .map(|l| names.iter().position(|n| *n == label_text(l)).unwrap_or(usize::MAX))
                .collect();
            let unknown = truth.iter().filter(|t| **t == usize::MAX).count();
            if unknown > 0 {
                return Err(format!(
                    "{unknown} rows have labels the model does not know (it knows {})",
                    names.join(", ")
                ));
            }
            let predicted: Vec<usize> = p.iter().map(|r| argmax(r)).collect();
            let cm = metrics::classification(&names, &truth, &predicted);
            clean_score = cm.accuracy;
            checks.push(Check::new(
                "accuracy",
                Some(cm.accuracy),
                thresholds.accuracy,
                Comparison::AtLeast,
            ));
            m["holdout"] = serde_json::to_value(&cm).map_err(|e| e.to_string())?;
            if names.len() == 2 {
                let pos: Vec<bool> = truth.iter().map(|t| *t == 1).collect();
                let scores: Vec<f32> = p.iter().map(|r| r[1]).collect();
                m["holdout"]["roc_auc"] = json!(roc_auc(&pos, &scores));
            }
            if let Some(e) = &set.expected {
                let same = predicted.iter().zip(e).filter(|(a, b)| **a as f32 == **b).count();
                agreement = Some(same as f64 / predicted.len() as f64);
            }
            if let Some((attribute, groups)) = &set.groups {
                fairness_check(
                    &mut checks,
                    &mut m,
                    thresholds,
                    attribute,
                    groups,
                    &truth,
                    &predicted,
                    &names,
                );
            }
        }
        Answer::Values(v) => {
            let truth: Vec<f32> = set
                .labels
                .iter()
                .map(|l| {
                    l.as_f64().map(|x| x as f32).ok_or_else(|| format!("label {l} is not a number"))
                })
                .collect::<Result<_, _>>()?;
            let r = metrics::regression(&truth, v);
            clean_score = r.r2;
            checks.push(Check::new("r2", Some(r.r2), thresholds.r2, Comparison::AtLeast));
            m["holdout"] = serde_json::to_value(&r).map_err(|e| e.to_string())?;
            if let Some(e) = &set.expected {
                let same = v
                    .iter()
                    .zip(e)
                    .filter(|(a, b)| (**a - **b).abs() <= 1e-3 * b.abs().max(1.0))
                    .count();
                agreement = Some(same as f64 / v.len() as f64);
            }
        }
    }
    // Latency: one-row requests, one at a time, as a caller would send them.
    let n = set.inputs.len();
    let step = (n / LATENCY_SAMPLES).max(1);
    let mut times = Vec::new();
    for i in (0..n).step_by(step).take(LATENCY_SAMPLES) {
        let t = Instant::now();
        runner.run(s, &set.inputs, &[i]).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    checks.push(Check::new("latency_p99_ms", p99, thresholds.latency_p99_ms, Comparison::AtMost));
    m["latency"] = json!({"requests": times.len(), "p50_ms": p50, "p99_ms": p99, "path": "pool, batchers, one row per request"});
    // Robustness: the same rows, slightly disturbed.
    let perturbed = match &set.inputs {
        EvalInputs::Texts(t) => EvalInputs::Texts(
            t.iter()
                .enumerate()
                .map(|(i, x)| perturb_text(x, set.seed.wrapping_add(i as u64)))
                .collect(),
        ),
        EvalInputs::Rows(x) => EvalInputs::Rows(perturb_numbers(x, NOISE, set.seed)),
    };
    let disturbed = runner.run_all(s, &perturbed).await?;
    let (score, kind) = match (&disturbed, &answers) {
        (Answer::Classes(p), Answer::Classes(clean)) => {
            let names = runner.head.labels.clone().unwrap_or_default();
            let right = p
                .iter()
                .zip(&set.labels)
                .filter(|(r, l)| names.get(argmax(r)).is_some_and(|n| *n == label_text(l)))
                .count();
            let flipped = p.iter().zip(clean).filter(|(a, b)| argmax(a) != argmax(b)).count();
            m["robustness"] =
                json!({"accuracy": right as f64 / n as f64, "changed_predictions": flipped});
            (right as f64 / n as f64, "accuracy")
        }
        (Answer::Values(v), _) => {
            let truth: Vec<f32> =
                set.labels.iter().filter_map(|l| l.as_f64().map(|x| x as f32)).collect();
            let r = metrics::regression(&truth, v);
            m["robustness"] = json!({"r2": r.r2});
            (r.r2, "r2")
        }
        _ => return Err("the version answered differently shaped outputs".into()),
    };
    let ratio = if clean_score > 0.0 { Some((score / clean_score).min(1.0)) } else { None };
    m["robustness"]["perturbation"] = json!(match &set.inputs {
        EvalInputs::Texts(_) => "typos (swapped letters) and casing in about one word in five",
        EvalInputs::Rows(_) => "Gaussian noise of 0.05 standard deviations on numeric columns",
    });
    checks.push(
        Check::new("robustness", ratio, thresholds.robustness, Comparison::AtLeast)
            .with_detail(format!("{kind} under perturbation over clean {kind}")),
    );
    // The artifact answers as it was trained to.
    let size = artifact.unwrap_or(0);
    let agrees = agreement.is_none_or(|a| a >= 0.99);
    let mut c =
        Check::new("artifact", Some(if agrees { 1.0 } else { 0.0 }), 1.0, Comparison::AtLeast);
    c = c.with_detail(match agreement {
        Some(a) => {
            format!("sha256 checked, {size} bytes, loads, {:.1}% of answers as trained", a * 100.0)
        }
        None => format!("sha256 checked, {size} bytes, loads and answers"),
    });
    checks.push(c);
    m["artifact"] = json!({"ok": agrees, "sha256": version.sha256, "bytes": size, "agreement_with_trainer": agreement});
    m["task"] = json!(if classification { "classification" } else { "regression" });
    Ok(Report::new(checks, m, thresholds.clone(), set.dataset))
}

#[expect(clippy::too_many_arguments, reason = "the report's parts and the rows")]
fn fairness_check(
    checks: &mut Vec<Check>,
    m: &mut Value,
    thresholds: &GateThresholds,
    attribute: &str,
    groups: &[String],
    truth: &[usize],
    predicted: &[usize],
    names: &[String],
) {
    // Binary: the second class (sorted) is the favourable outcome; more
    // classes: each against the rest, the worst counts.
    let positives: Vec<usize> = if names.len() == 2 { vec![1] } else { (0..names.len()).collect() };
    let results: Vec<_> = positives
        .iter()
        .filter_map(|&p| fairness(groups, truth, predicted, p, &names[p], MIN_GROUP))
        .collect();
    let worst = results.iter().min_by(|a, b| a.disparate_impact.total_cmp(&b.disparate_impact));
    let check = Check::new(
        "disparate_impact",
        worst.map(|f| f.disparate_impact),
        thresholds.disparate_impact,
        Comparison::AtLeast,
    );
    checks.push(match worst {
        Some(f) => check.with_detail(format!(
            "{attribute}: {} selected at {:.3} of the rate of {} for {:?}",
            f.least_selected, f.disparate_impact, f.most_selected, f.positive
        )),
        None => check.with_detail(format!(
            "{attribute}: fewer than two groups of at least {MIN_GROUP} rows to compare"
        )),
    });
    m["fairness"] = json!({"attribute": attribute, "results": results});
}

/// A tenant's dataset read as a job's columns: its label, a text column or
/// feature columns (typed by the dataset's schema), the protected attribute.
pub async fn read_dataset(
    s: &Services,
    ctx: &TenantCtx,
    id: &str,
    label: &str,
    text: Option<&str>,
    features: Option<&[String]>,
    protected: Option<&str>,
) -> Result<(Dataset, Prepared), String> {
    let dataset = s.store().get_dataset(ctx, id).await.map_err(|e| e.to_string())?;
    let format = Format::parse(&dataset.format).ok_or_else(|| {
        format!("dataset format {:?} is not one this server reads", dataset.format)
    })?;
    let bytes = s.artifacts().get(&dataset.sha256).await.map_err(|e| e.to_string())?;
    let columns = features_of(&dataset.schema, features.unwrap_or_default())?;
    let (label, text, protected) =
        (label.to_owned(), text.map(str::to_owned), protected.map(str::to_owned));
    let prepared = tokio::task::spawn_blocking(move || {
        use std::io::{Seek as _, Write as _};
        let mut f = tempfile::tempfile().map_err(|e| e.to_string())?;
        f.write_all(&bytes).and_then(|()| f.rewind()).map_err(|e| e.to_string())?;
        let inputs = match &text {
            Some(t) => Inputs::Text(t),
            None if !columns.is_empty() => Inputs::Features(&columns),
            None => return Err("name the inputs: a text column or feature columns".to_owned()),
        };
        prepare(format, f, &label, inputs, protected.as_deref()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("the dataset reader failed to run: {e}"))??;
    Ok((dataset, prepared))
}

/// The version loaded, with its base model if it reads text.
async fn load(s: &Services, model: &Model, version: &ModelVersion) -> Result<Runner, String> {
    let head = load_tensor(s, model, version).await.map_err(|e| e.to_string())?;
    let base_name = head.base_model.clone().or_else(|| model.base_model.clone());
    let base = match base_name {
        Some(b) => Some(s.models().get(&b).await.map_err(|e| format!("base model {b:?}: {e}"))?),
        None => None,
    };
    let input = head.inputs.first().map(|i| i.name.clone()).unwrap_or_else(|| "features".into());
    Ok(Runner { head, base, input })
}
