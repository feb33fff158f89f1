//! Alerts (O4): rules on a tenant's models (or, for operators, on every
//! tenant), the state each rule keeps per subject, and the pure step from
//! one evaluation's values to the transitions that notify. A condition must
//! hold for the rule's `for` before the alert fires; it resolves the first
//! evaluation it no longer holds; while firing it notifies nothing more.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::time::Timestamp;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AlertMetric)]
pub enum Metric {
    /// The model's 99th-percentile latency over the window, in ms.
    LatencyP99Ms,
    /// Failed answers over all answers of the model in the window.
    ErrorRate,
    /// Online accuracy from feedback given in the window.
    Accuracy,
    /// Share of the model's columns (inputs and predictions) that drift
    /// from its training set in the window (Evidently's defaults).
    DriftShare,
    /// Spend this month over the plan's monthly budget (per tenant).
    BudgetUsed,
    /// Circuit breakers of the model's versions open on the evaluating
    /// replica (each replica keeps its own breakers).
    BreakerOpen,
    /// Events of the tenant not yet processed by the stream feature
    /// pipeline (consumer group `features`): handed out or pending.
    ConsumerLag,
}

impl Metric {
    /// Whether the metric is about one model (`model` is required).
    pub fn per_model(self) -> bool {
        !matches!(self, Metric::BudgetUsed | Metric::ConsumerLag)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::LatencyP99Ms => "latency_p99_ms",
            Metric::ErrorRate => "error_rate",
            Metric::Accuracy => "accuracy",
            Metric::DriftShare => "drift_share",
            Metric::BudgetUsed => "budget_used",
            Metric::ConsumerLag => "consumer_lag",
            Metric::BreakerOpen => "breaker_open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = AlertOp)]
pub enum Op {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::AtLeast => value >= threshold,
            Op::Below => value < threshold,
            Op::AtMost => value <= threshold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AlertSeverity)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

fn default_for() -> String {
    "0s".into()
}

fn default_window() -> String {
    "5m".into()
}

fn default_min_samples() -> u64 {
    20
}

/// Body of `POST /v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    #[schema(value_type = crate::ids::Name)]
    pub name: String,
    pub metric: Metric,
    /// The model watched (required for every metric but `budget_used`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub op: Op,
    pub threshold: f64,
    /// How long the condition holds before the alert fires (`0s`, `5m`).
    #[serde(default = "default_for", rename = "for")]
    pub for_: String,
    /// The traffic each evaluation judges, ending now (default `5m`).
    #[serde(default = "default_window")]
    pub window: String,
    pub severity: Severity,
    /// Labelled samples (accuracy) or answers (latency, errors) below which
    /// a window is no data: the alert's state stays as it was (default 20).
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// Where firing and resolved notifications are POSTed, signed with the
    /// rule's secret (`x-tessera-signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

/// A spec's durations, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub for_: Duration,
    pub window: Duration,
}

impl AlertSpec {
    pub fn validate(&self) -> Result<Timing, ValidationError> {
        crate::ids::validate_name("name", &self.name)?;
        match (&self.model, self.metric.per_model()) {
            (None, true) => {
                return Err(ValidationError::new(
                    "model",
                    format!("metric {} is about a model: name it", self.metric.as_str()),
                ));
            }
            (Some(m), true) => crate::ids::validate_name("model", m)?,
            (Some(_), false) => {
                return Err(ValidationError::new(
                    "model",
                    format!("metric {} is about the tenant, not a model", self.metric.as_str()),
                ));
            }
            (None, false) => {}
        }
        if !self.threshold.is_finite() {
            return Err(ValidationError::new("threshold", "the threshold is a finite number"));
        }
        let parse = |param: &str, s: &str, max: Duration| {
            let d =
                crate::features::parse_duration(s).map_err(|e| ValidationError::new(param, e))?;
            if d > max {
                return Err(ValidationError::new(
                    param,
                    format!("{param} is at most {}s", max.as_secs()),
                ));
            }
            Ok(d)
        };
        let for_ = parse("for", &self.for_, Duration::from_secs(7 * 86_400))?;
        let window = parse("window", &self.window, Duration::from_secs(7 * 86_400))?;
        if window < Duration::from_secs(1) {
            return Err(ValidationError::new("window", "the window is at least 1s"));
        }
        if let Some(url) = &self.webhook_url {
            let ok =
                (url.starts_with("http://") || url.starts_with("https://")) && url.len() <= 2048;
            if !ok {
                return Err(ValidationError::new("webhook_url", "an http:// or https:// URL"));
            }
        }
        if self.min_samples > 1_000_000 {
            return Err(ValidationError::new("min_samples", "at most 1000000"));
        }
        Ok(Timing { for_, window })
    }
}

/// Where one subject (a model, or a tenant for platform rules) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AlertStatus)]
pub enum Status {
    Ok,
    /// The condition holds, not yet for `for`.
    Pending,
    Firing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = AlertInstance)]
pub struct Instance {
    pub status: Status,
    /// When the status began.
    pub since: Timestamp,
    /// The last value measured (`None`: no data then).
    pub value: Option<f64>,
}

/// A rule as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertRule {
    pub id: String,
    /// The tenant it belongs to; absent for a platform rule (every tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub tenant_id: Option<crate::ids::TenantId>,
    pub spec: AlertSpec,
    /// Built in (a platform rule the server keeps).
    #[serde(default)]
    pub builtin: bool,
    /// By subject: the model (or, for platform rules, the tenant).
    pub instances: BTreeMap<String, Instance>,
    pub last_evaluated_at: Option<Timestamp>,
    pub next_evaluation_at: Timestamp,
    pub created_at: Timestamp,
    /// The last characters of the signing secret.
    pub secret_hint: String,
    #[serde(skip)]
    pub secret: String,
    #[serde(skip)]
    pub revision: i64,
}

/// A notification to send, or that was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertEvent {
    pub at: Timestamp,
    /// `firing`, `resolved`, `delivered`, `delivery_failed`.
    pub kind: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub fn new_alert_id() -> String {
    format!("alr_{}", crate::ids::random_lower(16))
}

/// A signing secret for a rule's webhook.
pub fn new_secret() -> String {
    format!("whsec_{}", crate::ids::random_lower(32))
}

pub fn hint(secret: &str) -> String {
    format!("...{}", &secret[secret.len().saturating_sub(4)..])
}

impl AlertRule {
    /// One evaluation: each subject's value (`None`: no data) moves its
    /// instance; the transitions that notify come back, in subject order.
    pub fn step(
        &mut self,
        values: &BTreeMap<String, Option<f64>>,
        for_: Duration,
        now: Timestamp,
    ) -> Vec<AlertEvent> {
        let hold = i64::try_from(for_.as_millis()).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for (subject, value) in values {
            let inst = self.instances.entry(subject.clone()).or_insert(Instance {
                status: Status::Ok,
                since: now,
                value: None,
            });
            let Some(v) = *value else {
                // No data: the state stands.
                inst.value = None;
                continue;
            };
            inst.value = Some(v);
            let holds = self.spec.op.holds(v, self.spec.threshold);
            let event = |kind: &str| AlertEvent {
                at: now,
                kind: kind.into(),
                subject: subject.clone(),
                value: Some(v),
                detail: None,
            };
            match (inst.status, holds) {
                (Status::Ok, true) => {
                    inst.since = now;
                    if hold == 0 {
                        inst.status = Status::Firing;
                        out.push(event("firing"));
                    } else {
                        inst.status = Status::Pending;
                    }
                }
                (Status::Pending, true) if now.millis() - inst.since.millis() >= hold => {
                    inst.status = Status::Firing;
                    inst.since = now;
                    out.push(event("firing"));
                }
                (Status::Pending, false) => {
                    inst.status = Status::Ok;
                    inst.since = now;
                }
                (Status::Firing, false) => {
                    inst.status = Status::Ok;
                    inst.since = now;
                    out.push(event("resolved"));
                }
                _ => {}
            }
        }
        out
    }

    pub fn firing(&self) -> usize {
        self.instances.values().filter(|i| i.status == Status::Firing).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<AlertSpec, String> {
        let s: AlertSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| format!("{}: {}", e.param.unwrap_or_default(), e.message))?;
        Ok(s)
    }

    fn rule(v: serde_json::Value) -> AlertRule {
        AlertRule {
            id: "alr_x".into(),
            tenant_id: None,
            spec: spec(v).unwrap(),
            builtin: false,
            instances: BTreeMap::new(),
            last_evaluated_at: None,
            next_evaluation_at: Timestamp::from_millis(0),
            created_at: Timestamp::from_millis(0),
            secret_hint: String::new(),
            secret: String::new(),
            revision: 0,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    fn values(v: Option<f64>) -> BTreeMap<String, Option<f64>> {
        [("m".to_owned(), v)].into()
    }

    #[test]
    fn specs_need_a_model_for_model_metrics_and_sane_values() {
        let ok = spec(serde_json::json!({"name": "slow", "metric": "latency_p99_ms", "model": "m",
            "op": ">", "threshold": 200, "for": "5m", "severity": "warning"}))
        .unwrap();
        assert_eq!(ok.validate().unwrap().for_, Duration::from_secs(300));
        for (bad, want) in [
            (
                serde_json::json!({"name": "a", "metric": "accuracy", "op": "<", "threshold": 0.8, "severity": "critical"}),
                "model",
            ),
            (
                serde_json::json!({"name": "a", "metric": "budget_used", "model": "m", "op": ">=", "threshold": 0.8, "severity": "info"}),
                "model",
            ),
            (
                serde_json::json!({"name": "a", "metric": "accuracy", "model": "m", "op": "=", "threshold": 0.8, "severity": "info"}),
                "unknown variant",
            ),
            (
                serde_json::json!({"name": "a", "metric": "accuracy", "model": "m", "op": "<", "threshold": 0.8, "severity": "info", "for": "soon"}),
                "for",
            ),
            (
                serde_json::json!({"name": "a", "metric": "accuracy", "model": "m", "op": "<", "threshold": 0.8, "severity": "info", "webhook_url": "ftp://x"}),
                "webhook_url",
            ),
            (
                serde_json::json!({"name": "a", "metric": "latency", "model": "m", "op": "<", "threshold": 0.8, "severity": "info"}),
                "latency",
            ),
        ] {
            let e = spec(bad.clone()).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn fires_after_holding_for_its_duration_once_and_resolves() {
        let mut r = rule(serde_json::json!({"name": "acc", "metric": "accuracy", "model": "m",
            "op": "<", "threshold": 0.8, "for": "60s", "severity": "critical"}));
        let hold = Duration::from_secs(60);
        assert!(r.step(&values(Some(0.9)), hold, at(0)).is_empty());
        assert!(r.step(&values(Some(0.7)), hold, at(10)).is_empty());
        assert_eq!(r.instances["m"].status, Status::Pending);
        // No data keeps the state; the clock keeps running from the start.
        assert!(r.step(&values(None), hold, at(40)).is_empty());
        let fired = r.step(&values(Some(0.6)), hold, at(70));
        assert_eq!(fired.len(), 1);
        assert_eq!((fired[0].kind.as_str(), fired[0].value), ("firing", Some(0.6)));
        // Deduplicated while firing.
        assert!(r.step(&values(Some(0.5)), hold, at(80)).is_empty());
        assert_eq!(r.firing(), 1);
        let resolved = r.step(&values(Some(0.95)), hold, at(90));
        assert_eq!(resolved[0].kind, "resolved");
        assert_eq!(r.firing(), 0);
        // A blip shorter than `for` never fires.
        assert!(r.step(&values(Some(0.1)), hold, at(100)).is_empty());
        assert!(r.step(&values(Some(0.9)), hold, at(120)).is_empty());
        assert_eq!(r.instances["m"].status, Status::Ok);
    }

    #[test]
    fn zero_for_fires_at_once_per_subject() {
        let mut r = rule(serde_json::json!({"name": "budget", "metric": "budget_used",
            "op": ">=", "threshold": 0.8, "severity": "warning"}));
        let v: BTreeMap<String, Option<f64>> =
            [("ten_a".to_owned(), Some(0.9)), ("ten_b".to_owned(), Some(0.1))].into();
        let fired = r.step(&v, Duration::ZERO, at(0));
        assert_eq!(fired.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), ["ten_a"]);
        assert_eq!(hint("whsec_abcdef"), "...cdef");
    }
}
