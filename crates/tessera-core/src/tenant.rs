//! Tenants, the plans they are on, and the segments they belong to (T1).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::{TenantId, validate_name};
use crate::time::Timestamp;

/// A customer of the SaaS builder: the unit of isolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    #[schema(value_type = String, example = "ten_0123456789abcdef")]
    pub id: TenantId,
    pub name: String,
    pub plan: String,
    pub segment: Option<String>,
    pub created_at: Timestamp,
    /// The share of inferences (0.0-1.0) that leave a prediction record.
    pub prediction_sample_rate: f64,
    /// Whether prediction records keep the input text (it may be personal data).
    pub store_inputs: bool,
    /// What the tenant's model versions must meet to take live traffic.
    #[serde(default)]
    pub gate_thresholds: crate::governance::GateThresholds,
}

/// Body of `POST /admin/v1/tenants`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Plan name; `free` when absent.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub plan: Option<String>,
    /// Segment the tenant belongs to (for segment-level models and defaults).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub segment: Option<String>,
    /// The share of inferences that leave a prediction record (default 1.0).
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub prediction_sample_rate: Option<f64>,
    /// Keep input text in prediction records (default false).
    #[serde(default)]
    pub store_inputs: Option<bool>,
}

fn validate_rate(rate: Option<f64>) -> Result<(), ValidationError> {
    match rate {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(ValidationError::new(
            "prediction_sample_rate",
            format!("prediction_sample_rate must be between 0 and 1, got {r}"),
        )),
        _ => Ok(()),
    }
}

impl NewTenant {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        validate_rate(self.prediction_sample_rate)?;
        if let Some(plan) = &self.plan {
            validate_name("plan", plan)?;
        }
        if let Some(segment) = &self.segment {
            validate_name("segment", segment)?;
        }
        Ok(())
    }
}

/// Body of `PATCH /admin/v1/tenants/{id}`; absent fields stay as they are,
/// `"segment": null` clears the segment.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub plan: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<crate::ids::Name>)]
    pub segment: Option<Option<String>>,
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub prediction_sample_rate: Option<f64>,
    #[serde(default)]
    pub store_inputs: Option<bool>,
    /// Replaces the gate thresholds (absent fields take their defaults).
    #[serde(default)]
    pub gate_thresholds: Option<crate::governance::GateThresholds>,
}

impl TenantPatch {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_rate(self.prediction_sample_rate)?;
        if let Some(t) = &self.gate_thresholds {
            t.validate()?;
        }
        if let Some(name) = &self.name {
            validate_name("name", name)?;
        }
        if let Some(plan) = &self.plan {
            validate_name("plan", plan)?;
        }
        if let Some(Some(segment)) = &self.segment {
            validate_name("segment", segment)?;
        }
        Ok(())
    }
}

/// A pricing tier: limits and allowed models. `null` limits mean unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Concurrent requests.
    #[serde(default)]
    pub concurrency: Option<u64>,
    #[serde(default)]
    pub monthly_budget_usd: Option<f64>,
    /// Model names the plan may use; `null` for all.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::ids::Name>>)]
    pub models: Option<Vec<String>>,
    /// Events per minute a tenant may send (`POST /v1/events`).
    #[serde(default)]
    pub events_per_minute: Option<u64>,
    /// Largest dataset upload, in MiB (`POST /v1/datasets`); the server's
    /// `max_artifact_bytes` caps it in any case.
    #[serde(default)]
    pub dataset_max_mb: Option<u64>,
    /// Training jobs a tenant may have running at once; more wait in the queue.
    #[serde(default)]
    pub training_jobs: Option<u64>,
}

impl Plan {
    /// The plans every fresh store starts with.
    pub fn defaults() -> Vec<Plan> {
        vec![
            Plan {
                name: "free".into(),
                rpm: Some(60),
                tpm: Some(100_000),
                concurrency: Some(4),
                monthly_budget_usd: Some(5.0),
                models: None,
                events_per_minute: Some(6_000),
                dataset_max_mb: Some(16),
                training_jobs: Some(1),
            },
            Plan {
                name: "pro".into(),
                rpm: Some(3_000),
                tpm: Some(5_000_000),
                concurrency: Some(64),
                monthly_budget_usd: Some(1_000.0),
                models: None,
                events_per_minute: Some(600_000),
                dataset_max_mb: Some(512),
                training_jobs: Some(4),
            },
        ]
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        validate_budget(self.monthly_budget_usd)?;
        for (param, v) in [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("concurrency", self.concurrency),
            ("events_per_minute", self.events_per_minute),
            ("dataset_max_mb", self.dataset_max_mb),
            ("training_jobs", self.training_jobs),
        ] {
            validate_limit(param, v)?;
        }
        validate_models(self.models.as_deref())
    }

    pub fn apply(&mut self, patch: PlanPatch) {
        if let Some(v) = patch.rpm {
            self.rpm = v;
        }
        if let Some(v) = patch.tpm {
            self.tpm = v;
        }
        if let Some(v) = patch.concurrency {
            self.concurrency = v;
        }
        if let Some(v) = patch.monthly_budget_usd {
            self.monthly_budget_usd = v;
        }
        if let Some(v) = patch.models {
            self.models = v;
        }
        if let Some(v) = patch.events_per_minute {
            self.events_per_minute = v;
        }
        if let Some(v) = patch.dataset_max_mb {
            self.dataset_max_mb = v;
        }
        if let Some(v) = patch.training_jobs {
            self.training_jobs = v;
        }
    }
}

/// Limits are stored as signed 64-bit integers.
fn validate_limit(param: &str, v: Option<u64>) -> Result<(), ValidationError> {
    match v {
        Some(n) if n > i64::MAX as u64 => Err(ValidationError::new(
            param,
            format!("{param} must be at most {}, got {n}", i64::MAX),
        )),
        _ => Ok(()),
    }
}

fn validate_budget(budget: Option<f64>) -> Result<(), ValidationError> {
    match budget {
        Some(b) if !b.is_finite() || b < 0.0 => Err(ValidationError::new(
            "monthly_budget_usd",
            format!("monthly_budget_usd must be a non-negative number, got {b}"),
        )),
        _ => Ok(()),
    }
}

fn validate_models(models: Option<&[String]>) -> Result<(), ValidationError> {
    for m in models.unwrap_or_default() {
        validate_name("models", m)?;
    }
    Ok(())
}

/// Body of `PATCH /admin/v1/plans/{name}`; `null` sets a limit to unlimited.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub concurrency: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<f64>)]
    pub monthly_budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<crate::ids::Name>>)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub events_per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub dataset_max_mb: Option<Option<u64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>)]
    pub training_jobs: Option<Option<u64>>,
}

impl PlanPatch {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_budget(self.monthly_budget_usd.flatten())?;
        for (param, v) in [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("concurrency", self.concurrency),
            ("events_per_minute", self.events_per_minute),
            ("dataset_max_mb", self.dataset_max_mb),
            ("training_jobs", self.training_jobs),
        ] {
            validate_limit(param, v.flatten())?;
        }
        validate_models(self.models.as_ref().and_then(|m| m.as_deref()))
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_distinguishes_null_from_absent() {
        let p: PlanPatch = serde_json::from_str(r#"{"rpm": null}"#).unwrap();
        assert_eq!(p.rpm, Some(None));
        assert_eq!(p.tpm, None);
        let mut plan = Plan::defaults().remove(0);
        plan.apply(p);
        assert_eq!(plan.rpm, None);
        assert_eq!(plan.tpm, Some(100_000));
    }

    #[test]
    fn negative_budget_is_rejected() {
        let mut plan = Plan::defaults().remove(0);
        plan.monthly_budget_usd = Some(-1.0);
        assert_eq!(plan.validate().unwrap_err().param.as_deref(), Some("monthly_budget_usd"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<NewTenant>(r#"{"name": "a", "colour": "red"}"#).is_err());
    }
}
