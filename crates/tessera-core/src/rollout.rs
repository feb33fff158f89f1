//! Rollouts (L4): a candidate version brought from shadow traffic to all of
//! a model's traffic in steps, Flagger-style, while its checks hold on its
//! own traffic; rolled back by itself after `failures_before_rollback`
//! failed evaluations in a row, promoted (the `champion` alias moved) when
//! the last step holds. This module is the pure part: the spec a tenant
//! sends, the state the store keeps, the deployment each step writes, and
//! the decision an evaluation leads to. No IO, no clock of its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::model::{Deployment, DeploymentTarget, ShadowTarget, VersionSel};
use crate::time::Timestamp;

/// The alias a promotion moves.
pub const CHAMPION: &str = "champion";
/// History entries a rollout keeps (the oldest evaluations go first;
/// transitions are always kept).
pub const HISTORY_LIMIT: usize = 500;
/// Evaluation intervals allowed.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// One step: the candidate mirrored (`"shadow"`), or its share of live
/// traffic in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Shadow,
    Weight(u32),
}

impl Step {
    pub fn label(self) -> String {
        match self {
            Step::Shadow => "shadow".into(),
            Step::Weight(w) => format!("{w}%"),
        }
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Step::Shadow => s.serialize_str("shadow"),
            Step::Weight(w) => s.serialize_u32(*w),
        }
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "shadow" => Ok(Step::Shadow),
            Raw::Number(n) if (1..=100).contains(&n) => Ok(Step::Weight(n as u32)),
            Raw::Number(n) => {
                Err(serde::de::Error::custom(format!("a step's weight is 1-100, got {n}")))
            }
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "a step is \"shadow\" or a weight in percent, got {t:?}"
            ))),
        }
    }
}

fn default_steps() -> Vec<Step> {
    vec![Step::Shadow, Step::Weight(5), Step::Weight(25), Step::Weight(50), Step::Weight(100)]
}

fn default_interval() -> String {
    "1m".into()
}

fn default_failures() -> u32 {
    3
}

fn default_min_samples() -> u64 {
    50
}

/// What the candidate's own traffic must show at each step. A check left
/// out is not made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RolloutChecks)]
pub struct Checks {
    /// Failed answers over all answers in the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_max: Option<f64>,
    /// The 99th percentile of the candidate's latency in the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms_max: Option<f64>,
    /// Online accuracy (feedback joined to the candidate's predictions
    /// during the step); judged once `min_samples` are labelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_min: Option<f64>,
    /// Online mean absolute error of a regressor, like `accuracy_min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae_max: Option<f64>,
    /// Labelled samples before accuracy or MAE is judged (default 50).
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// How far the candidate's predictions may drift from the primary's
    /// over the step: Jensen-Shannon distance (base 2) of the labels, or
    /// normalized Wasserstein distance of the values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_max: Option<f64>,
    /// In the shadow step: the share of answers equal to the primary's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_min: Option<f64>,
}

impl Default for Checks {
    fn default() -> Checks {
        Checks {
            error_rate_max: None,
            p99_ms_max: None,
            accuracy_min: None,
            mae_max: None,
            min_samples: default_min_samples(),
            drift_max: None,
            agreement_min: None,
        }
    }
}

/// Body of `POST /v1/rollouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    #[schema(value_type = crate::ids::Name)]
    pub model: String,
    /// A version number, or an alias (read once, at the start).
    pub candidate: VersionSel,
    /// Default `["shadow", 5, 25, 50, 100]`.
    #[serde(default = "default_steps")]
    #[schema(value_type = Vec<serde_json::Value>, example = json!(["shadow", 5, 25, 50, 100]))]
    pub steps: Vec<Step>,
    /// How long each evaluation's traffic runs (`30s`, `1m`, ...; 1s-24h).
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default)]
    pub checks: Checks,
    /// Failed evaluations in a row that roll back (default 3).
    #[serde(default = "default_failures")]
    pub failures_before_rollback: u32,
}

impl RolloutSpec {
    /// Checks the spec; answers the interval.
    pub fn validate(&self) -> Result<Duration, ValidationError> {
        crate::ids::validate_name("model", &self.model)?;
        if self.steps.is_empty() || self.steps.len() > 20 {
            return Err(ValidationError::new("steps", "a rollout has 1-20 steps"));
        }
        let mut last = 0;
        for (i, s) in self.steps.iter().enumerate() {
            match *s {
                Step::Shadow if i > 0 => {
                    return Err(ValidationError::new(
                        format!("steps[{i}]"),
                        "\"shadow\" can only be the first step",
                    ));
                }
                Step::Shadow => {}
                Step::Weight(w) if w <= last => {
                    return Err(ValidationError::new(
                        format!("steps[{i}]"),
                        format!("weights must increase, got {w} after {last}"),
                    ));
                }
                Step::Weight(w) => last = w,
            }
        }
        let interval = crate::features::parse_duration(&self.interval)
            .map_err(|e| ValidationError::new("interval", e))?;
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            return Err(ValidationError::new("interval", "the interval is 1s to 24h"));
        }
        if !(1..=100).contains(&self.failures_before_rollback) {
            return Err(ValidationError::new("failures_before_rollback", "must be 1-100"));
        }
        let c = &self.checks;
        for (name, v, max) in [
            ("checks.error_rate_max", c.error_rate_max, 1.0),
            ("checks.p99_ms_max", c.p99_ms_max, 600_000.0),
            ("checks.accuracy_min", c.accuracy_min, 1.0),
            ("checks.mae_max", c.mae_max, 1e12),
            ("checks.drift_max", c.drift_max, 1e6),
            ("checks.agreement_min", c.agreement_min, 1.0),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=max).contains(&v))
            {
                return Err(ValidationError::new(name, format!("must be 0-{max}, got {v}")));
            }
        }
        if !(1..=1_000_000).contains(&c.min_samples) {
            return Err(ValidationError::new("checks.min_samples", "must be 1-1000000"));
        }
        Ok(interval)
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Running,
    Paused,
    /// The candidate took all traffic and `champion` moved to it.
    Promoted,
    /// Its checks failed too often; the previous deployment is back.
    RolledBack,
    /// Stopped by a person; the previous deployment is back.
    Aborted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Promoted => "promoted",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<RolloutState> {
        [
            RolloutState::Running,
            RolloutState::Paused,
            RolloutState::Promoted,
            RolloutState::RolledBack,
            RolloutState::Aborted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Running or paused: it holds the model's deployment.
    pub fn is_active(self) -> bool {
        matches!(self, RolloutState::Running | RolloutState::Paused)
    }
}

/// One check's value at an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = RolloutCheckValue)]
pub struct CheckValue {
    pub name: String,
    /// `None`: not enough data to judge.
    pub value: Option<f64>,
    pub threshold: f64,
    /// `<=` or `>=`.
    pub op: String,
    /// `None` when there was no data.
    pub passed: Option<bool>,
    /// The traffic or samples the value was measured on.
    pub samples: u64,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = RolloutHistoryEntry)]
pub struct HistoryEntry {
    pub at: Timestamp,
    /// `started`, `advanced`, `passed`, `failed`, `waiting`, `rolled_back`,
    /// `promoted`, `paused`, `resumed`, `aborted`, `error`.
    pub event: String,
    /// The step it happened at (its label: `shadow`, `25%`).
    pub step: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The replica whose controller wrote it (absent: a person's action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl HistoryEntry {
    fn is_transition(&self) -> bool {
        !matches!(self.event.as_str(), "passed" | "failed" | "waiting" | "error")
    }
}

/// A rollout as the store keeps it and `GET /v1/rollouts/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: String,
    pub model: String,
    #[serde(skip)]
    pub model_id: String,
    /// The candidate's version number.
    pub candidate: i64,
    /// What the primary share of traffic goes to (the deployment's target
    /// before the rollout, or `champion`).
    pub primary: VersionSel,
    #[schema(value_type = Vec<serde_json::Value>, example = json!(["shadow", 5, 25, 50, 100]))]
    pub steps: Vec<Step>,
    pub interval: String,
    #[serde(skip)]
    pub interval_ms: i64,
    pub checks: Checks,
    pub failures_before_rollback: u32,
    pub state: RolloutState,
    /// Index into `steps`.
    pub step: usize,
    /// Failed evaluations in a row.
    pub failures: u32,
    pub step_started_at: Timestamp,
    /// The last evaluation (or the step's start).
    pub evaluated_at: Timestamp,
    /// When the controller evaluates next.
    pub next_evaluation_at: Timestamp,
    /// The last evaluation's checks.
    pub last_checks: Vec<CheckValue>,
    pub history: Vec<HistoryEntry>,
    /// The deployment before the rollout (restored by a rollback), as JSON.
    #[serde(skip)]
    pub baseline: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: Option<String>,
    /// Bumped by every write; a write naming an older one is refused.
    #[serde(skip)]
    pub revision: i64,
}

pub fn new_rollout_id() -> String {
    format!("rol_{}", crate::ids::random_lower(16))
}

/// What a step change writes besides the rollout itself, in the same
/// transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentChange {
    Keep,
    Put(Deployment),
}

/// A rollout write: the new state, what the model's deployment becomes,
/// whether `champion` moves, and the audit actions it records.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutWrite {
    pub rollout: Rollout,
    pub deployment: DeploymentChange,
    /// Moves `champion` to the candidate.
    pub promote: bool,
    /// Audit actions (`rollout.step`, `rollout.rollback`, ...).
    pub audit: Vec<&'static str>,
}

impl Rollout {
    pub fn current(&self) -> Step {
        self.steps[self.step.min(self.steps.len() - 1)]
    }

    fn baseline_deployment(&self) -> Deployment {
        self.baseline.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default()
    }

    /// The deployment step `step` runs on: the baseline's settings with
    /// the primary and the candidate in the step's shares.
    pub fn deployment_at(&self, step: Step) -> Deployment {
        let mut d = self.baseline_deployment();
        let candidate = VersionSel::Number(self.candidate);
        d.shadow.retain(|s| s.version != self.candidate);
        d.targets = match step {
            Step::Shadow => {
                d.shadow.push(ShadowTarget { version: self.candidate, percent: 100 });
                vec![DeploymentTarget { version: self.primary.clone(), weight: 100 }]
            }
            Step::Weight(100) => vec![DeploymentTarget { version: candidate, weight: 100 }],
            Step::Weight(w) => vec![
                DeploymentTarget { version: self.primary.clone(), weight: 100 - w },
                DeploymentTarget { version: candidate, weight: w },
            ],
        };
        d
    }

    /// The deployment after promotion: all traffic to `champion` (now the
    /// candidate) when the primary was `champion`, else to the candidate.
    pub fn promoted_deployment(&self) -> Deployment {
        let mut d = self.baseline_deployment();
        d.shadow.retain(|s| s.version != self.candidate);
        let version = match &self.primary {
            VersionSel::Alias(a) if a == CHAMPION => self.primary.clone(),
            _ => VersionSel::Number(self.candidate),
        };
        d.targets = vec![DeploymentTarget { version, weight: 100 }];
        d
    }

    /// The deployment a rollback or an abort writes: the baseline, or,
    /// for a model that had none, all traffic pinned to the primary (with
    /// no deployment the newest version would serve, often the candidate).
    fn restore(&self) -> DeploymentChange {
        let mut d = self.baseline_deployment();
        if d.targets.is_empty() {
            d.targets = vec![DeploymentTarget { version: self.primary.clone(), weight: 100 }];
        }
        DeploymentChange::Put(d)
    }

    /// Appends to the history, dropping the oldest evaluations past
    /// [`HISTORY_LIMIT`].
    pub fn log(&mut self, entry: HistoryEntry) {
        self.history.push(entry);
        while self.history.len() > HISTORY_LIMIT {
            match self.history.iter().position(|e| !e.is_transition()) {
                Some(i) => self.history.remove(i),
                None => self.history.remove(0),
            };
        }
    }

    fn entry(
        &self,
        at: Timestamp,
        event: &str,
        checks: Vec<CheckValue>,
        detail: Option<String>,
    ) -> HistoryEntry {
        HistoryEntry {
            at,
            event: event.into(),
            step: self.current().label(),
            checks,
            detail,
            by: None,
        }
    }

    /// The write that starts the rollout at its first step.
    pub fn start(mut self, now: Timestamp) -> RolloutWrite {
        self.state = RolloutState::Running;
        self.step = 0;
        self.step_started_at = now;
        self.evaluated_at = now;
        self.next_evaluation_at = now.plus_millis(self.interval_ms);
        let first = self.current();
        let entry =
            self.entry(now, "started", Vec::new(), Some(format!("candidate {}", self.candidate)));
        self.log(entry);
        let deployment = DeploymentChange::Put(self.deployment_at(first));
        RolloutWrite { rollout: self, deployment, promote: false, audit: vec!["rollout.start"] }
    }

    /// What an evaluation at `now` with `checks` leads to.
    pub fn evaluate(mut self, checks: Vec<CheckValue>, now: Timestamp) -> RolloutWrite {
        self.evaluated_at = now;
        self.next_evaluation_at = now.plus_millis(self.interval_ms);
        self.last_checks = checks.clone();
        let failed: Vec<&str> =
            checks.iter().filter(|c| c.passed == Some(false)).map(|c| c.name.as_str()).collect();
        let missing: Vec<&str> =
            checks.iter().filter(|c| c.passed.is_none()).map(|c| c.name.as_str()).collect();
        if !failed.is_empty() {
            self.failures += 1;
            let detail = format!(
                "{} failed ({} of {} in a row)",
                failed.join(", "),
                self.failures,
                self.failures_before_rollback
            );
            let entry = self.entry(now, "failed", checks, Some(detail));
            self.log(entry);
            if self.failures >= self.failures_before_rollback {
                self.state = RolloutState::RolledBack;
                let entry =
                    self.entry(now, "rolled_back", Vec::new(), Some("checks failed".into()));
                self.log(entry);
                let deployment = self.restore();
                return RolloutWrite {
                    rollout: self,
                    deployment,
                    promote: false,
                    audit: vec!["rollout.check_failed", "rollout.rollback"],
                };
            }
            return RolloutWrite {
                rollout: self,
                deployment: DeploymentChange::Keep,
                promote: false,
                audit: vec!["rollout.check_failed"],
            };
        }
        if !missing.is_empty() {
            let detail = format!("waiting for data: {}", missing.join(", "));
            let entry = self.entry(now, "waiting", checks, Some(detail));
            self.log(entry);
            return RolloutWrite {
                rollout: self,
                deployment: DeploymentChange::Keep,
                promote: false,
                audit: Vec::new(),
            };
        }
        self.failures = 0;
        let entry = self.entry(now, "passed", checks, None);
        self.log(entry);
        if self.step + 1 >= self.steps.len() {
            self.state = RolloutState::Promoted;
            let entry = self.entry(
                now,
                "promoted",
                Vec::new(),
                Some(format!("{CHAMPION} -> {}", self.candidate)),
            );
            self.log(entry);
            let deployment = DeploymentChange::Put(self.promoted_deployment());
            return RolloutWrite {
                rollout: self,
                deployment,
                promote: true,
                audit: vec!["rollout.promote"],
            };
        }
        self.step += 1;
        self.step_started_at = now;
        self.last_checks = Vec::new();
        let next = self.current();
        let entry = self.entry(now, "advanced", Vec::new(), None);
        self.log(entry);
        let deployment = DeploymentChange::Put(self.deployment_at(next));
        RolloutWrite { rollout: self, deployment, promote: false, audit: vec!["rollout.step"] }
    }

    /// A person's `pause`, `resume` or `abort`; a conflict message when the
    /// state does not allow it.
    pub fn control(mut self, action: &str, now: Timestamp) -> Result<RolloutWrite, String> {
        let (state, event, audit, deployment) = match (action, self.state) {
            ("pause", RolloutState::Running) => {
                (RolloutState::Paused, "paused", "rollout.pause", DeploymentChange::Keep)
            }
            ("resume", RolloutState::Paused) => {
                (RolloutState::Running, "resumed", "rollout.resume", DeploymentChange::Keep)
            }
            ("abort", s) if s.is_active() => {
                (RolloutState::Aborted, "aborted", "rollout.abort", self.restore())
            }
            (a, s) => {
                return Err(format!("rollout {} is {}; it cannot {a}", self.id, s.as_str()));
            }
        };
        self.state = state;
        if state == RolloutState::Running {
            // The paused time is not judged: the next evaluation sees only
            // traffic after the resume.
            self.evaluated_at = now;
            self.next_evaluation_at = now.plus_millis(self.interval_ms);
        }
        let entry = self.entry(now, event, Vec::new(), None);
        self.log(entry);
        Ok(RolloutWrite { rollout: self, deployment, promote: false, audit: vec![audit] })
    }
}

/// Judges one check: `None` value is missing data.
pub fn check(
    name: &str,
    value: Option<f64>,
    threshold: f64,
    at_most: bool,
    samples: u64,
) -> CheckValue {
    let passed = value.map(|v| if at_most { v <= threshold } else { v >= threshold });
    CheckValue {
        name: name.into(),
        value,
        threshold,
        op: if at_most { "<=" } else { ">=" }.into(),
        passed,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Result<RolloutSpec, String> {
        let s: RolloutSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        s.validate().map_err(|e| format!("{}: {}", e.param.unwrap_or_default(), e.message))?;
        Ok(s)
    }

    fn rollout(steps: Vec<Step>, baseline: Option<&str>, primary: VersionSel) -> Rollout {
        let t = Timestamp::from_millis(0);
        Rollout {
            id: "rol_x".into(),
            model: "m".into(),
            model_id: "mid".into(),
            candidate: 2,
            primary,
            steps,
            interval: "1m".into(),
            interval_ms: 60_000,
            checks: Checks::default(),
            failures_before_rollback: 2,
            state: RolloutState::Running,
            step: 0,
            failures: 0,
            step_started_at: t,
            evaluated_at: t,
            next_evaluation_at: t,
            last_checks: Vec::new(),
            history: Vec::new(),
            baseline: baseline.map(str::to_owned),
            created_at: t,
            updated_at: t,
            created_by: None,
            revision: 0,
        }
    }

    fn pass() -> Vec<CheckValue> {
        vec![check("error_rate", Some(0.0), 0.01, true, 100)]
    }

    fn fail() -> Vec<CheckValue> {
        vec![check("accuracy", Some(0.5), 0.85, false, 100)]
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    #[test]
    fn specs_take_defaults_and_refuse_bad_steps_and_values() {
        let s = spec(serde_json::json!({"model": "m", "candidate": 2})).unwrap();
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.failures_before_rollback, 3);
        assert_eq!(s.checks.min_samples, 50);
        let s = spec(serde_json::json!({"model": "m", "candidate": "challenger",
            "steps": ["shadow", 10, 100], "interval": "2s",
            "checks": {"error_rate_max": 0.01, "accuracy_min": 0.85, "min_samples": 20}}))
        .unwrap();
        assert_eq!(s.candidate, VersionSel::Alias("challenger".into()));
        assert_eq!(s.validate().unwrap(), Duration::from_secs(2));
        for (bad, field) in [
            (serde_json::json!({"model": "m", "candidate": 2, "steps": [5, "shadow"]}), "steps[1]"),
            (serde_json::json!({"model": "m", "candidate": 2, "steps": [50, 25]}), "steps[1]"),
            (serde_json::json!({"model": "m", "candidate": 2, "steps": [0]}), "weight is 1-100"),
            (serde_json::json!({"model": "m", "candidate": 2, "steps": ["half"]}), "half"),
            (serde_json::json!({"model": "m", "candidate": 2, "interval": "10ms"}), "interval"),
            (serde_json::json!({"model": "m", "candidate": 2, "interval": "soon"}), "interval"),
            (
                serde_json::json!({"model": "m", "candidate": 2, "checks": {"accuracy_min": 1.5}}),
                "checks.accuracy_min",
            ),
            (
                serde_json::json!({"model": "m", "candidate": 2, "checks": {"latency": 1}}),
                "latency",
            ),
            (
                serde_json::json!({"model": "m", "candidate": 2, "failures_before_rollback": 0}),
                "failures_before_rollback",
            ),
        ] {
            let e = spec(bad.clone()).unwrap_err();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn steps_split_between_primary_and_candidate_over_the_baseline() {
        let base = r#"{"targets":[{"version":"champion","weight":100}],"shadow":[{"version":7,"percent":10}],"fallbacks":["backup"],"timeout_ms":500}"#;
        let r = rollout(default_steps(), Some(base), VersionSel::Alias(CHAMPION.into()));
        let d = r.deployment_at(Step::Shadow);
        assert_eq!(d.targets, vec![DeploymentTarget { version: r.primary.clone(), weight: 100 }]);
        assert_eq!(d.shadow.len(), 2);
        assert_eq!(d.shadow[1], ShadowTarget { version: 2, percent: 100 });
        assert_eq!(d.fallbacks, vec!["backup".to_owned()]);
        assert_eq!(d.timeout_ms, Some(500));
        let d = r.deployment_at(Step::Weight(25));
        assert_eq!(d.targets[0].weight, 75);
        assert_eq!(d.targets[1], DeploymentTarget { version: VersionSel::Number(2), weight: 25 });
        assert_eq!(d.shadow, vec![ShadowTarget { version: 7, percent: 10 }]);
        let d = r.deployment_at(Step::Weight(100));
        assert_eq!(
            d.targets,
            vec![DeploymentTarget { version: VersionSel::Number(2), weight: 100 }]
        );
        // Promoted with champion as the primary: all traffic follows the alias.
        assert_eq!(r.promoted_deployment().targets[0].version, VersionSel::Alias(CHAMPION.into()));
        let pinned = rollout(default_steps(), None, VersionSel::Number(1));
        assert_eq!(pinned.promoted_deployment().targets[0].version, VersionSel::Number(2));
        let pin = vec![DeploymentTarget { version: VersionSel::Number(1), weight: 100 }];
        assert!(matches!(pinned.restore(), DeploymentChange::Put(d) if d.targets == pin));
    }

    #[test]
    fn passing_checks_advance_and_the_last_step_promotes() {
        let r = rollout(
            vec![Step::Shadow, Step::Weight(50), Step::Weight(100)],
            None,
            VersionSel::Number(1),
        );
        let w = r.start(at(0));
        assert_eq!(w.audit, vec!["rollout.start"]);
        assert!(matches!(&w.deployment, DeploymentChange::Put(d) if d.shadow.len() == 1));
        assert_eq!(w.rollout.next_evaluation_at, at(60));
        let w = w.rollout.evaluate(pass(), at(60));
        assert_eq!((w.rollout.step, w.audit.clone()), (1, vec!["rollout.step"]));
        assert!(matches!(&w.deployment, DeploymentChange::Put(d) if d.targets[1].weight == 50));
        let w = w.rollout.evaluate(pass(), at(120));
        assert_eq!(w.rollout.step, 2);
        let w = w.rollout.evaluate(pass(), at(180));
        assert_eq!(w.rollout.state, RolloutState::Promoted);
        assert!(w.promote);
        assert_eq!(w.audit, vec!["rollout.promote"]);
        let events: Vec<&str> = w.rollout.history.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            events,
            ["started", "passed", "advanced", "passed", "advanced", "passed", "promoted"]
        );
    }

    #[test]
    fn failures_in_a_row_roll_back_missing_data_waits_and_a_pass_resets() {
        let base = r#"{"targets":[{"version":1,"weight":100}]}"#;
        let r = rollout(default_steps(), Some(base), VersionSel::Number(1)).start(at(0)).rollout;
        let w = r.evaluate(fail(), at(60));
        assert_eq!((w.rollout.failures, w.rollout.state), (1, RolloutState::Running));
        assert_eq!(w.deployment, DeploymentChange::Keep);
        // No data: neither a failure nor a pass.
        let missing = vec![check("accuracy", None, 0.85, false, 3)];
        let w = w.rollout.evaluate(missing, at(120));
        assert_eq!((w.rollout.failures, w.rollout.step), (1, 0));
        assert!(w.audit.is_empty());
        // A pass resets the count.
        let w = w.rollout.evaluate(pass(), at(180));
        assert_eq!((w.rollout.failures, w.rollout.step), (0, 1));
        let w = w.rollout.evaluate(fail(), at(240));
        let w = w.rollout.evaluate(fail(), at(300));
        assert_eq!(w.rollout.state, RolloutState::RolledBack);
        assert_eq!(w.audit, vec!["rollout.check_failed", "rollout.rollback"]);
        match &w.deployment {
            DeploymentChange::Put(d) => {
                assert_eq!(
                    d.targets,
                    vec![DeploymentTarget { version: VersionSel::Number(1), weight: 100 }]
                );
                assert!(d.shadow.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn people_pause_resume_and_abort_only_from_states_that_allow_it() {
        let r = rollout(default_steps(), None, VersionSel::Number(1)).start(at(0)).rollout;
        let w = r.control("pause", at(10)).unwrap();
        assert_eq!(w.rollout.state, RolloutState::Paused);
        let e = w.rollout.clone().control("pause", at(11)).unwrap_err();
        assert!(e.contains("paused"), "{e}");
        let w = w.rollout.control("resume", at(100)).unwrap();
        assert_eq!(w.rollout.next_evaluation_at, at(160));
        assert_eq!(w.rollout.evaluated_at, at(100));
        let w = w.rollout.control("abort", at(120)).unwrap();
        assert_eq!(w.rollout.state, RolloutState::Aborted);
        assert!(matches!(&w.deployment, DeploymentChange::Put(d) if d.targets.len() == 1));
        assert!(w.rollout.control("resume", at(130)).is_err());
    }

    #[test]
    fn history_keeps_transitions_and_drops_old_evaluations() {
        let mut r = rollout(default_steps(), None, VersionSel::Number(1)).start(at(0)).rollout;
        for i in 0..(HISTORY_LIMIT as i64 + 50) {
            r = r.evaluate(vec![check("accuracy", None, 0.8, false, 0)], at(i)).rollout;
        }
        assert_eq!(r.history.len(), HISTORY_LIMIT);
        assert_eq!(r.history[0].event, "started");
    }

    #[test]
    fn steps_round_trip_as_json() {
        let steps: Vec<Step> = serde_json::from_str(r#"["shadow", 5, 100]"#).unwrap();
        assert_eq!(steps, vec![Step::Shadow, Step::Weight(5), Step::Weight(100)]);
        assert_eq!(serde_json::to_string(&steps).unwrap(), r#"["shadow",5,100]"#);
        assert_eq!(RolloutState::parse("rolled_back"), Some(RolloutState::RolledBack));
    }
}
