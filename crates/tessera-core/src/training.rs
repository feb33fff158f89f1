//! Training jobs (L2) as a tenant asks for them and as the store keeps
//! them: the spec (dataset, task, label, inputs, the model it makes a
//! version of, the split and the trainer's settings), the status a job
//! moves through, its progress and its result.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::validate_name;
use crate::time::Timestamp;

/// The embedding model a text job uses when it names none.
pub const DEFAULT_BASE_MODEL: &str = "all-minilm-l6-v2";

/// Trainer settings a job may override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    /// L2 strengths to try, chosen by validation loss (default 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    /// Epochs without a better validation loss before stopping (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Adam's step size (default 0.05; 0.003 for an MLP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f32>,
    /// Units of the MLP's hidden layer (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_units: Option<usize>,
}

fn default_holdout() -> f64 {
    0.2
}

/// Body of `POST /v1/training-jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The dataset version's id (`ds_...`).
    pub dataset: String,
    /// `classification` or `regression`.
    pub task: String,
    /// The column to predict.
    pub label: String,
    /// A text column: the inputs are its embeddings by `base_model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Feature columns: numeric ones (int64, float64, bool) standardized,
    /// others (at most 50 distinct values) one-hot; the artifact records the layout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// The model the job creates, or adds a version to.
    pub model: String,
    /// The embedding model of a text job (default `all-minilm-l6-v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
    /// Share of rows held out for the metrics (default 0.2).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Seeds the split: the same seed, the same model.
    #[serde(default)]
    pub seed: u64,
    /// `balanced`: weigh classes inversely to their frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<Hyperparameters>,
    /// `linear` (default: logistic or least-squares regression) or `mlp`
    /// (one hidden ReLU layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<String>,
    /// A column whose groups the fairness check of the report compares (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_attribute: Option<String>,
}

/// Hidden units of an MLP when the job gives none.
pub const DEFAULT_HIDDEN_UNITS: usize = 64;

impl JobSpec {
    /// The MLP's hidden units, or `None` for a linear head.
    pub fn hidden_units(&self) -> Option<usize> {
        (self.trainer.as_deref() == Some("mlp")).then(|| {
            self.hyperparameters
                .as_ref()
                .and_then(|h| h.hidden_units)
                .unwrap_or(DEFAULT_HIDDEN_UNITS)
        })
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        let bad = |p: &str, m: String| Err(ValidationError::new(p, m));
        if let Some(t) = &self.trainer
            && !matches!(t.as_str(), "linear" | "mlp")
        {
            return bad("trainer", format!("trainer must be linear or mlp, got {t:?}"));
        }
        if let Some(h) = self.hyperparameters.as_ref().and_then(|h| h.hidden_units) {
            if self.trainer.as_deref() != Some("mlp") {
                return bad(
                    "hyperparameters.hidden_units",
                    "hidden_units applies to trainer mlp".into(),
                );
            }
            if !(1..=1024).contains(&h) {
                return bad(
                    "hyperparameters.hidden_units",
                    format!("hidden_units is 1 to 1024, got {h}"),
                );
            }
        }
        if !matches!(self.task.as_str(), "classification" | "regression") {
            return bad(
                "task",
                format!("task must be classification or regression, got {:?}", self.task),
            );
        }
        validate_name("model", &self.model)?;
        if let Some(b) = &self.base_model {
            validate_name("base_model", b)?;
        }
        match (&self.text, &self.features) {
            (Some(_), Some(_)) => return bad("features", "give text or features, not both".into()),
            (None, None) => {
                return bad(
                    "text",
                    "name the inputs: a text column, or numeric feature columns".into(),
                );
            }
            (None, Some(f)) if f.is_empty() => {
                return bad("features", "name at least one feature column".into());
            }
            (Some(t), _) if *t == self.label => {
                return bad("text", "the text column is the label".into());
            }
            (_, Some(f)) if f.contains(&self.label) => {
                return bad("features", format!("the label {:?} cannot be a feature", self.label));
            }
            _ => {}
        }
        if self.base_model.is_some() && self.text.is_none() {
            return bad("base_model", "base_model applies to a text column".into());
        }
        if !(self.holdout > 0.0 && self.holdout <= 0.5) {
            return bad(
                "holdout",
                format!("holdout must be above 0 and at most 0.5, got {}", self.holdout),
            );
        }
        if let Some(w) = &self.class_weight
            && (w != "balanced" || self.task != "classification")
        {
            return bad(
                "class_weight",
                format!("class_weight is balanced, for classification; got {w:?}"),
            );
        }
        if let Some(h) = &self.hyperparameters {
            if h.l2
                .as_ref()
                .is_some_and(|g| g.is_empty() || g.iter().any(|v| !v.is_finite() || *v < 0.0))
            {
                return bad(
                    "hyperparameters.l2",
                    "l2 is a non-empty list of non-negative numbers".into(),
                );
            }
            if h.max_epochs.is_some_and(|e| e == 0 || e > 100_000) {
                return bad("hyperparameters.max_epochs", "max_epochs is 1 to 100000".into());
            }
            if h.learning_rate.is_some_and(|r| !r.is_finite() || r <= 0.0 || r > 10.0) {
                return bad(
                    "hyperparameters.learning_rate",
                    "learning_rate is above 0 and at most 10".into(),
                );
            }
        }
        Ok(())
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// How far a running job is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// `reading`, `embedding`, `training`, `evaluating`, `storing`.
    pub phase: String,
    /// Of the whole job, 0 to 1.
    pub fraction: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f32>,
    /// Seconds left, estimated from the pace so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_secs: Option<f64>,
}

/// A training job as `GET /v1/training-jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// `job_...`
    pub id: String,
    pub status: JobStatus,
    pub spec: JobSpec,
    pub progress: Progress,
    /// The model and version it made, once succeeded.
    pub model: Option<String>,
    pub version: Option<i64>,
    /// Holdout metrics, the chosen L2 and epochs, once succeeded.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Value>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: Option<String>,
}

pub fn new_job_id() -> String {
    format!("job_{}", crate::ids::random_lower(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<JobSpec, String> {
        let s: JobSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| format!("{}: {}", e.param.unwrap_or_default(), e.message))?;
        Ok(s)
    }

    #[test]
    fn a_spec_is_checked() {
        let ok = spec(serde_json::json!({"dataset": "ds_a", "task": "classification", "label": "y", "text": "t", "model": "m"})).unwrap();
        assert_eq!((ok.holdout, ok.seed), (0.2, 0));
        for (bad, param) in [
            (
                serde_json::json!({"dataset": "ds_a", "task": "ranking", "label": "y", "text": "t", "model": "m"}),
                "task",
            ),
            (
                serde_json::json!({"dataset": "ds_a", "task": "regression", "label": "y", "model": "m"}),
                "text",
            ),
            (
                serde_json::json!({"dataset": "ds_a", "task": "regression", "label": "y", "features": ["y"], "model": "m"}),
                "features",
            ),
            (
                serde_json::json!({"dataset": "ds_a", "task": "regression", "label": "y", "text": "t", "model": "m", "holdout": 0.9}),
                "holdout",
            ),
            (
                serde_json::json!({"dataset": "ds_a", "task": "regression", "label": "y", "text": "t", "model": "m", "class_weight": "balanced"}),
                "class_weight",
            ),
        ] {
            let e = spec(bad).unwrap_err();
            assert!(e.starts_with(param), "{e}");
        }
        assert!(spec(serde_json::json!({"dataset": "ds_a", "task": "regression", "label": "y", "text": "t", "model": "m", "epochs": 3})).is_err());
    }
}
