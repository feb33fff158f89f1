//! Governance (L1 aliases, L3 gates): a version's validation report, the
//! thresholds a tenant's versions are held to, the gate state the serving
//! path reads, and the aliases that point at versions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::validate_name;
use crate::time::Timestamp;

/// Where a version stands at its gate. A version with no report (uploaded
/// and never validated) has no gate state and is not held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    Passed,
    Failed,
    /// Failed, then let through by a platform admin with a reason.
    Overridden,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Passed => "passed",
            Gate::Failed => "failed",
            Gate::Overridden => "overridden",
        }
    }

    pub fn parse(s: &str) -> Option<Gate> {
        [Gate::Passed, Gate::Failed, Gate::Overridden].into_iter().find(|g| g.as_str() == s)
    }

    /// Whether the version may take live traffic.
    pub fn allows_traffic(gate: Option<Gate>) -> bool {
        gate != Some(Gate::Failed)
    }
}

fn d_accuracy() -> f64 {
    0.85
}
fn d_latency() -> f64 {
    200.0
}
fn d_di() -> f64 {
    0.8
}
fn d_robustness() -> f64 {
    0.9
}
fn d_r2() -> f64 {
    0.0
}

/// The thresholds a tenant's versions must meet (defaults from the seed's
/// deployment criteria).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateThresholds {
    /// Holdout accuracy of a classifier, at least (0.85).
    #[serde(default = "d_accuracy")]
    pub accuracy: f64,
    /// p99 latency through the serving path in milliseconds, at most (200).
    #[serde(default = "d_latency")]
    pub latency_p99_ms: f64,
    /// Lowest group selection rate over the highest, at least (0.8: the four-fifths rule).
    #[serde(default = "d_di")]
    pub disparate_impact: f64,
    /// Score under small input perturbations over the clean score, at least (0.9).
    #[serde(default = "d_robustness")]
    pub robustness: f64,
    /// Holdout R² of a regressor, at least (0: better than the mean).
    #[serde(default = "d_r2")]
    pub r2: f64,
}

impl Default for GateThresholds {
    fn default() -> Self {
        Self {
            accuracy: d_accuracy(),
            latency_p99_ms: d_latency(),
            disparate_impact: d_di(),
            robustness: d_robustness(),
            r2: d_r2(),
        }
    }
}

impl GateThresholds {
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (name, v, lo, hi) in [
            ("gate_thresholds.accuracy", self.accuracy, 0.0, 1.0),
            ("gate_thresholds.disparate_impact", self.disparate_impact, 0.0, 1.0),
            ("gate_thresholds.robustness", self.robustness, 0.0, 1.0),
            ("gate_thresholds.r2", self.r2, -1e9, 1.0),
            ("gate_thresholds.latency_p99_ms", self.latency_p99_ms, 0.0, 600_000.0),
        ] {
            if !v.is_finite() || v < lo || v > hi {
                return Err(ValidationError::new(
                    name,
                    format!("{name} must be between {lo} and {hi}, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// How a check compares its value with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Comparison {
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `accuracy`, `r2`, `latency_p99_ms`, `robustness`, `disparate_impact`, `artifact`.
    pub name: String,
    /// What was measured; `null` when it could not be (then the check fails).
    pub value: Option<f64>,
    pub threshold: f64,
    pub comparison: Comparison,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    pub fn new(name: &str, value: Option<f64>, threshold: f64, comparison: Comparison) -> Check {
        let passed = value.is_some_and(|v| match comparison {
            Comparison::AtLeast => v >= threshold,
            Comparison::AtMost => v <= threshold,
        });
        Check { name: name.into(), value, threshold, comparison, passed, detail: None }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Check {
        self.detail = Some(detail.into());
        self
    }
}

/// A platform admin's decision to let a failing version through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Override {
    pub reason: String,
    /// The key that decided.
    pub by: Option<String>,
    pub at: Timestamp,
}

/// A version's validation report, as
/// `GET /v1/models/{name}/versions/{v}/report` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// Every check passed.
    pub passed: bool,
    pub checks: Vec<Check>,
    /// The measurements behind the checks: holdout metrics, latency,
    /// robustness, fairness per group, the artifact.
    #[schema(value_type = Object)]
    pub metrics: Value,
    pub thresholds: GateThresholds,
    /// The dataset the version was validated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub dataset: Option<Value>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#override: Option<Override>,
}

impl Report {
    pub fn new(
        checks: Vec<Check>,
        metrics: Value,
        thresholds: GateThresholds,
        dataset: Option<Value>,
    ) -> Report {
        Report {
            passed: checks.iter().all(|c| c.passed),
            checks,
            metrics,
            thresholds,
            dataset,
            created_at: Timestamp::now(),
            r#override: None,
        }
    }

    pub fn gate(&self) -> Gate {
        match (self.passed, &self.r#override) {
            (true, _) => Gate::Passed,
            (false, Some(_)) => Gate::Overridden,
            (false, None) => Gate::Failed,
        }
    }

    pub fn failing(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed).collect()
    }

    /// The report as a person reads it (`tessera models report`).
    pub fn summary(&self, model: &str, version: i64) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let verdict = match self.gate() {
            Gate::Passed => "PASSED",
            Gate::Failed => "FAILED",
            Gate::Overridden => "FAILED (overridden)",
        };
        let _ = writeln!(out, "{model}@{version}: {verdict}");
        for c in &self.checks {
            let value = c.value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
            let op = match c.comparison {
                Comparison::AtLeast => ">=",
                Comparison::AtMost => "<=",
            };
            let mark = if c.passed { "ok  " } else { "FAIL" };
            let _ =
                write!(out, "  {mark} {:<18} {value:>10}  (needs {op} {})", c.name, c.threshold);
            if let Some(d) = &c.detail {
                let _ = write!(out, "  {d}");
            }
            out.push('\n');
        }
        if let Some(o) = &self.r#override {
            let _ = writeln!(
                out,
                "  overridden by {} at {}: {}",
                o.by.as_deref().unwrap_or("an admin"),
                o.at.to_rfc3339(),
                o.reason
            );
        }
        out
    }
}

/// A named, mutable pointer to a version (`champion`, `challenger`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alias {
    pub alias: String,
    pub version: i64,
    pub updated_at: Timestamp,
    /// The key that last moved it.
    pub updated_by: Option<String>,
}

/// Body of `PUT /v1/models/{name}/aliases/{alias}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    pub version: i64,
}

/// Body of `POST /admin/v1/models/{id}/versions/{v}/gate-override`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// Why the version may serve although it failed its gate (kept in the report and the audit log).
    pub reason: String,
}

/// An alias is a name that is not a number (numbers are versions).
pub fn validate_alias(alias: &str) -> Result<(), ValidationError> {
    validate_name("alias", alias)?;
    if alias.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValidationError::new(
            "alias",
            format!("alias {alias:?} is a number; numbers name versions"),
        ));
    }
    Ok(())
}

/// `model@selector` split: the model name and what follows the `@`.
pub fn split_selector(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((m, s)) if !m.is_empty() && !s.is_empty() => (m, Some(s)),
        _ => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_compare_both_ways_and_a_missing_value_fails() {
        assert!(Check::new("accuracy", Some(0.9), 0.85, Comparison::AtLeast).passed);
        assert!(!Check::new("accuracy", Some(0.8), 0.85, Comparison::AtLeast).passed);
        assert!(Check::new("latency_p99_ms", Some(12.0), 200.0, Comparison::AtMost).passed);
        assert!(!Check::new("latency_p99_ms", Some(250.0), 200.0, Comparison::AtMost).passed);
        assert!(!Check::new("disparate_impact", None, 0.8, Comparison::AtLeast).passed);
    }

    #[test]
    fn a_report_gates_and_an_override_lets_it_through() {
        let t = GateThresholds::default();
        let ok = Report::new(
            vec![Check::new("accuracy", Some(0.9), t.accuracy, Comparison::AtLeast)],
            Value::Null,
            t.clone(),
            None,
        );
        assert_eq!(ok.gate(), Gate::Passed);
        let mut bad = Report::new(
            vec![
                Check::new("accuracy", Some(0.9), t.accuracy, Comparison::AtLeast),
                Check::new("disparate_impact", Some(0.3), t.disparate_impact, Comparison::AtLeast),
            ],
            Value::Null,
            t,
            None,
        );
        assert_eq!(bad.gate(), Gate::Failed);
        assert_eq!(bad.failing().len(), 1);
        assert!(bad.summary("m", 2).contains("FAIL disparate_impact"), "{}", bad.summary("m", 2));
        bad.r#override =
            Some(Override { reason: "audited".into(), by: None, at: Timestamp::now() });
        assert_eq!(bad.gate(), Gate::Overridden);
        assert!(Gate::allows_traffic(Some(Gate::Overridden)));
        assert!(!Gate::allows_traffic(Some(Gate::Failed)));
        assert!(Gate::allows_traffic(None));
    }

    #[test]
    fn aliases_and_selectors() {
        assert!(validate_alias("champion").is_ok());
        assert!(validate_alias("12").is_err());
        assert!(validate_alias("a b").is_err());
        assert_eq!(split_selector("m@champion"), ("m", Some("champion")));
        assert_eq!(split_selector("m"), ("m", None));
        assert_eq!(split_selector("@x"), ("@x", None));
        let t: GateThresholds = serde_json::from_str(r#"{"accuracy": 0.7}"#).unwrap();
        assert_eq!((t.accuracy, t.latency_p99_ms), (0.7, 200.0));
        assert!(GateThresholds { accuracy: 1.5, ..t }.validate().is_err());
    }
}
