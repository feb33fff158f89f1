//! The model registry's domain (L1): models owned by a tenant, a segment or
//! the platform, with numbered versions whose artifacts are content-addressed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::{TenantId, validate_name};
use crate::time::Timestamp;

/// Who provides a model. A name resolves tenant -> segment -> platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelOwner {
    Tenant,
    Segment,
    Platform,
}

impl ModelOwner {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelOwner::Tenant => "tenant",
            ModelOwner::Segment => "segment",
            ModelOwner::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<ModelOwner> {
        [ModelOwner::Tenant, ModelOwner::Segment, ModelOwner::Platform]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// What a model computes.
pub const TASKS: &[&str] = &["embedding", "classification", "regression", "custom"];
/// How it runs: `bert` (sentence encoder directory), `onnx` (an ONNX file),
/// `linear` (a linear head over features or over a base model's embeddings).
pub const RUNTIMES: &[&str] = &["bert", "onnx", "linear"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// `mdl_...`
    pub id: String,
    pub name: String,
    pub owner: ModelOwner,
    #[schema(value_type = Option<String>)]
    pub tenant_id: Option<TenantId>,
    pub segment: Option<String>,
    pub task: String,
    pub runtime: String,
    pub base_model: Option<String>,
    pub created_at: Timestamp,
}

/// Body of a model registration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    pub name: String,
    pub task: String,
    pub runtime: String,
    #[serde(default)]
    pub base_model: Option<String>,
    /// Admin registrations only: make it a segment model instead of a platform model.
    #[serde(default)]
    pub segment: Option<String>,
}

impl NewModel {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        if !TASKS.contains(&self.task.as_str()) {
            return Err(ValidationError::new(
                "task",
                format!("task {:?} must be one of {}", self.task, TASKS.join(", ")),
            ));
        }
        if !RUNTIMES.contains(&self.runtime.as_str()) {
            return Err(ValidationError::new(
                "runtime",
                format!("runtime {:?} must be one of {}", self.runtime, RUNTIMES.join(", ")),
            ));
        }
        if let Some(b) = &self.base_model {
            validate_name("base_model", b)?;
        }
        if let Some(s) = &self.segment {
            validate_name("segment", s)?;
        }
        Ok(())
    }
}

/// One immutable version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelVersion {
    pub model_id: String,
    pub version: i64,
    /// Hex sha256 of the artifact.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size: i64,
    pub created_at: Timestamp,
}

pub fn new_model_id() -> String {
    format!("mdl_{}", crate::ids::random_lower(16))
}

/// Where a model name's traffic goes (G3): weighted versions, mirrored
/// shadow versions, fallback models, a timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub targets: Vec<DeploymentTarget>,
    #[serde(default)]
    pub shadow: Vec<ShadowTarget>,
    /// Model names tried in order when the primary fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Tenant-specific rules applied to a classifier's answer.
    #[serde(default)]
    pub post: Option<PostRules>,
}

/// Post-processing of a classifier's answer: only allowed labels compete,
/// a label below `min_score` is withheld, and labels can be renamed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostRules {
    #[serde(default)]
    pub allowed_labels: Option<Vec<String>>,
    #[serde(default)]
    pub min_score: Option<f32>,
    #[serde(default)]
    pub rename_labels: std::collections::BTreeMap<String, String>,
}

impl PostRules {
    /// The label and its score for one row of class probabilities, or `None`
    /// for the label when no allowed label reaches `min_score`.
    pub fn apply(&self, labels: &[String], probabilities: &[f32]) -> (Option<String>, f32) {
        let best = labels
            .iter()
            .zip(probabilities)
            .filter(|(l, _)| self.allowed_labels.as_ref().is_none_or(|a| a.contains(l)))
            .fold(None::<(&String, f32)>, |acc, (l, p)| match acc {
                Some((_, bp)) if bp >= *p => acc,
                _ => Some((l, *p)),
            });
        match best {
            Some((label, score)) if self.min_score.is_none_or(|m| score >= m) => (
                Some(self.rename_labels.get(label).cloned().unwrap_or_else(|| label.clone())),
                score,
            ),
            Some((_, score)) => (None, score),
            None => (None, 0.0),
        }
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(m) = self.min_score
            && !(0.0..=1.0).contains(&m)
        {
            return Err(ValidationError::new(
                "post.min_score",
                format!("min_score must be between 0 and 1, got {m}"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentTarget {
    pub version: i64,
    /// Share of traffic in percent; the weights sum to 100.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowTarget {
    pub version: i64,
    /// Share of requests mirrored to this version, in percent.
    pub percent: u32,
}

impl Deployment {
    /// Checks the weights, percentages and that every version exists.
    pub fn validate(&self, versions: &[i64]) -> Result<(), ValidationError> {
        if self.targets.is_empty() {
            return Err(ValidationError::new("targets", "a deployment needs at least one target"));
        }
        let sum: u32 = self.targets.iter().map(|t| t.weight).sum();
        if sum != 100 {
            return Err(ValidationError::new(
                "targets",
                format!("target weights must sum to 100, got {sum}"),
            ));
        }
        for v in self.targets.iter().map(|t| t.version).chain(self.shadow.iter().map(|s| s.version))
        {
            if !versions.contains(&v) {
                return Err(ValidationError::new("targets", format!("version {v} does not exist")));
            }
        }
        if let Some(s) = self.shadow.iter().find(|s| s.percent == 0 || s.percent > 100) {
            return Err(ValidationError::new(
                "shadow",
                format!("shadow percent must be 1-100, got {}", s.percent),
            ));
        }
        for f in &self.fallbacks {
            crate::ids::validate_name("fallbacks", f)?;
        }
        if let Some(t) = self.timeout_ms
            && !(1..=600_000).contains(&t)
        {
            return Err(ValidationError::new(
                "timeout_ms",
                format!("timeout_ms must be 1-600000, got {t}"),
            ));
        }
        if let Some(p) = &self.post {
            p.validate()?;
        }
        Ok(())
    }

    /// The version for a caller: a stable hash of (deployment, user) picks a
    /// bucket 0-99, and the targets' weights divide the buckets, so one user
    /// keeps one variant while the weights stay.
    pub fn pick(&self, deployment: &str, user: &str) -> i64 {
        let bucket = (stable_hash(&[deployment, user]) % 100) as u32;
        let mut acc = 0;
        for t in &self.targets {
            acc += t.weight;
            if bucket < acc {
                return t.version;
            }
        }
        self.targets.last().map_or(1, |t| t.version)
    }

    /// Shadow versions this request is mirrored to.
    pub fn shadows_for(&self, deployment: &str, user: &str) -> Vec<i64> {
        self.shadow
            .iter()
            .filter(|s| {
                (stable_hash(&[deployment, user, "shadow", &s.version.to_string()]) % 100)
                    < u64::from(s.percent)
            })
            .map(|s| s.version)
            .collect()
    }
}

/// FNV-1a over the parts, separated; stable across processes and versions.
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(weights: &[(i64, u32)]) -> Deployment {
        Deployment {
            targets: weights
                .iter()
                .map(|(v, w)| DeploymentTarget { version: *v, weight: *w })
                .collect(),
            shadow: vec![],
            fallbacks: vec![],
            timeout_ms: None,
            post: None,
        }
    }

    #[test]
    fn post_rules_filter_threshold_and_rename() {
        let labels: Vec<String> =
            ["billing", "bug", "spam"].iter().map(|s| s.to_string()).collect();
        let p = [0.2, 0.3, 0.5];
        assert_eq!(PostRules::default().apply(&labels, &p), (Some("spam".into()), 0.5));
        let allowed = PostRules {
            allowed_labels: Some(vec!["billing".into(), "bug".into()]),
            ..Default::default()
        };
        assert_eq!(allowed.apply(&labels, &p), (Some("bug".into()), 0.3));
        let strict = PostRules { min_score: Some(0.6), ..Default::default() };
        assert_eq!(strict.apply(&labels, &p), (None, 0.5));
        let mut rename = PostRules::default();
        rename.rename_labels.insert("spam".into(), "junk".into());
        assert_eq!(rename.apply(&labels, &p).0.as_deref(), Some("junk"));
        assert!(PostRules { min_score: Some(1.5), ..Default::default() }.validate().is_err());
    }

    #[test]
    fn weights_must_sum_to_100_over_existing_versions() {
        assert!(dep(&[(1, 90), (2, 10)]).validate(&[1, 2]).is_ok());
        assert_eq!(
            dep(&[(1, 90), (2, 20)]).validate(&[1, 2]).unwrap_err().param.as_deref(),
            Some("targets")
        );
        assert!(dep(&[(1, 50), (3, 50)]).validate(&[1, 2]).is_err());
        assert!(dep(&[]).validate(&[1]).is_err());
    }

    #[test]
    fn picks_are_sticky_and_follow_the_weights() {
        let d = dep(&[(1, 90), (2, 10)]);
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let v2 = users.iter().filter(|u| d.pick("m", u) == 2).count();
        assert!((140..=260).contains(&v2), "about 10% should get version 2, got {v2} of 2000");
        for u in &users[..50] {
            assert_eq!(d.pick("m", u), d.pick("m", u));
        }
        assert!(users.iter().all(|u| dep(&[(7, 100)]).pick("m", u) == 7));
    }

    #[test]
    fn shadow_share_is_about_its_percent() {
        let mut d = dep(&[(1, 100)]);
        d.shadow = vec![ShadowTarget { version: 2, percent: 50 }];
        let n = (0..1000).filter(|i| !d.shadows_for("m", &format!("r{i}")).is_empty()).count();
        assert!((400..=600).contains(&n), "{n}");
    }
}
