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
pub const TASKS: &[&str] = &["embedding", "classification", "regression", "chat", "custom"];
/// How it runs: `bert` (sentence encoder directory), `onnx` (an ONNX file),
/// `linear` (a linear head over features or over a base model's embeddings),
/// `openai-compatible` (a remote provider; each version is a [`RemoteConfig`]).
pub const RUNTIMES: &[&str] = &["bert", "onnx", "linear", REMOTE_RUNTIME];
/// The runtime of models served by a remote OpenAI-compatible provider.
pub const REMOTE_RUNTIME: &str = "openai-compatible";

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

/// The tasks a model can have (see [`TASKS`]); documentation only.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum TaskName {
    Embedding,
    Classification,
    Regression,
    Chat,
    Custom,
}

/// The runtimes a model can run on (see [`RUNTIMES`]); documentation only.
#[derive(utoipa::ToSchema)]
pub enum RuntimeName {
    #[schema(rename = "bert")]
    Bert,
    #[schema(rename = "onnx")]
    Onnx,
    #[schema(rename = "linear")]
    Linear,
    #[schema(rename = "openai-compatible")]
    OpenaiCompatible,
}

/// Body of a model registration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    #[schema(value_type = TaskName)]
    pub task: String,
    #[schema(value_type = RuntimeName)]
    pub runtime: String,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub base_model: Option<String>,
    /// Admin registrations only: make it a segment model instead of a platform model.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub segment: Option<String>,
    /// Admin registrations only: `platform` or `segment:<name>`.
    #[serde(default)]
    #[schema(pattern = "^(platform|segment:[A-Za-z0-9][A-Za-z0-9._-]{0,63})$")]
    pub scope: Option<String>,
    /// A remote model's first version (runtime `openai-compatible`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

/// Where an admin registration puts a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    Platform,
    Segment(String),
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
        match (self.runtime == REMOTE_RUNTIME, &self.config) {
            (true, None) => {
                return Err(ValidationError::new(
                    "config",
                    "an openai-compatible model needs a config with its base_url",
                ));
            }
            (true, Some(c)) => {
                RemoteConfig::from_json(c)?;
            }
            (false, Some(_)) => {
                return Err(ValidationError::new(
                    "config",
                    format!(
                        "config is for openai-compatible models; a {} model takes its versions as uploads",
                        self.runtime
                    ),
                ));
            }
            (false, None) => {}
        }
        Ok(())
    }

    /// The admin scope: `scope` (`platform` or `segment:<name>`), or the older
    /// `segment` field; both at once must agree.
    pub fn admin_scope(&self) -> Result<AdminScope, ValidationError> {
        let from_scope = match self.scope.as_deref() {
            None => None,
            Some("platform") => Some(AdminScope::Platform),
            Some(s) => match s.strip_prefix("segment:") {
                Some(seg) => {
                    validate_name("scope", seg)?;
                    Some(AdminScope::Segment(seg.to_owned()))
                }
                None => {
                    return Err(ValidationError::new(
                        "scope",
                        format!("scope {s:?} must be \"platform\" or \"segment:<name>\""),
                    ));
                }
            },
        };
        let from_segment = self.segment.clone().map(AdminScope::Segment);
        match (from_scope, from_segment) {
            (Some(a), Some(b)) if a != b => {
                Err(ValidationError::new("scope", "scope and segment disagree; send only scope"))
            }
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => Ok(AdminScope::Platform),
        }
    }
}

/// One version of a remote (`openai-compatible`) model: where to call, with
/// which credential, which upstream model, and how long to wait. The
/// credential is a reference (`env:NAME` or `file:/path`), never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// e.g. `https://api.openai.com/v1`; the gateway appends `/chat/completions`.
    pub base_url: String,
    /// `env:NAME` or `file:/path/to/secret`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The model name sent upstream; defaults to the registered name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Until the upstream's response headers arrive.
    #[serde(default = "default_first_byte_ms")]
    pub first_byte_timeout_ms: u64,
    /// The whole call, a stream included.
    #[serde(default = "default_total_ms")]
    pub total_timeout_ms: u64,
    /// Retries of one request after a failure that is safe to retry.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

fn default_connect_ms() -> u64 {
    2_000
}
fn default_first_byte_ms() -> u64 {
    30_000
}
fn default_total_ms() -> u64 {
    120_000
}
fn default_retries() -> u32 {
    2
}

/// Where a remote credential lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
}

impl RemoteConfig {
    pub fn from_json(v: &serde_json::Value) -> Result<RemoteConfig, ValidationError> {
        let c: RemoteConfig = serde_json::from_value(v.clone())
            .map_err(|e| ValidationError::new("config", format!("invalid config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        let url = self.base_url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.len() <= "https://".len()
        {
            return Err(ValidationError::new(
                "config.base_url",
                format!("base_url {:?} must be an http:// or https:// URL", self.base_url),
            ));
        }
        if let Some(k) = &self.api_key {
            Self::parse_secret(k)?;
        }
        if let Some(m) = &self.upstream_model
            && (m.is_empty() || m.len() > 256)
        {
            return Err(ValidationError::new(
                "config.upstream_model",
                "upstream_model must be 1-256 characters",
            ));
        }
        for (name, v, max) in [
            ("config.connect_timeout_ms", self.connect_timeout_ms, 60_000),
            ("config.first_byte_timeout_ms", self.first_byte_timeout_ms, 600_000),
            ("config.total_timeout_ms", self.total_timeout_ms, 3_600_000),
        ] {
            if !(1..=max).contains(&v) {
                return Err(ValidationError::new(name, format!("{name} must be 1-{max}, got {v}")));
            }
        }
        if self.max_retries > 5 {
            return Err(ValidationError::new(
                "config.max_retries",
                format!("max_retries must be 0-5, got {}", self.max_retries),
            ));
        }
        Ok(())
    }

    /// The credential reference, parsed. A literal secret is refused so that
    /// it never lands in the database or the audit log.
    pub fn parse_secret(s: &str) -> Result<SecretRef, ValidationError> {
        if let Some(name) = s.strip_prefix("env:")
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Ok(SecretRef::Env(name.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:")
            && path.starts_with('/')
        {
            return Ok(SecretRef::File(path.to_owned()));
        }
        Err(ValidationError::new(
            "config.api_key",
            "api_key must be a reference, env:NAME or file:/absolute/path; the secret itself is never stored",
        ))
    }

    pub fn secret(&self) -> Option<SecretRef> {
        self.api_key.as_deref().and_then(|k| Self::parse_secret(k).ok())
    }

    /// The stored form of a version: canonical JSON with the defaults filled in.
    pub fn to_artifact(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
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
    /// The features the version reads from the feature store, if it reads any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<crate::model_features::FeatureBinding>,
    /// Where the version stands at its gate; absent: never validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::governance::Gate>,
}

pub fn new_model_id() -> String {
    format!("mdl_{}", crate::ids::random_lower(16))
}

/// Where a model name's traffic goes (G3): weighted versions, mirrored
/// shadow versions, fallback models, a timeout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    #[schema(min_items = 1)]
    pub targets: Vec<DeploymentTarget>,
    #[serde(default)]
    pub shadow: Vec<ShadowTarget>,
    /// Model names tried in order when the primary fails.
    #[serde(default)]
    #[schema(value_type = Vec<crate::ids::Name>)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Tenant-specific rules applied to a classifier's answer.
    #[serde(default)]
    pub post: Option<PostRules>,
    /// Requests per minute to this model, from all its callers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute to this model, from all its callers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// How long a cached answer stays fresh (0: do not cache); 300000 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_ms: Option<u64>,
    /// Cache chat completions too (embeddings and predictions always are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_chat: Option<bool>,
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

/// A version as a deployment names it: a number, or an alias followed at
/// each request (`"champion"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VersionSel {
    Number(i64),
    Alias(String),
}

impl VersionSel {
    /// The version it names now, given the model's aliases.
    pub fn resolve(&self, alias: impl Fn(&str) -> Option<i64>) -> Option<i64> {
        match self {
            VersionSel::Number(v) => Some(*v),
            VersionSel::Alias(a) => alias(a),
        }
    }
}

impl std::fmt::Display for VersionSel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionSel::Number(v) => write!(f, "{v}"),
            VersionSel::Alias(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentTarget {
    /// A version number, or an alias (`"champion"`) followed as it moves.
    pub version: VersionSel,
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
    /// Checks the weights, percentages and that every version and alias exists.
    pub fn validate(&self, versions: &[i64], aliases: &[&str]) -> Result<(), ValidationError> {
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
        for t in &self.targets {
            let known = match &t.version {
                VersionSel::Number(v) => versions.contains(v),
                VersionSel::Alias(a) => aliases.contains(&a.as_str()),
            };
            if !known {
                let what = match &t.version {
                    VersionSel::Number(v) => format!("version {v}"),
                    VersionSel::Alias(a) => format!("alias {a:?}"),
                };
                return Err(ValidationError::new("targets", format!("{what} does not exist")));
            }
        }
        for v in self.shadow.iter().map(|s| s.version) {
            if !versions.contains(&v) {
                return Err(ValidationError::new("shadow", format!("version {v} does not exist")));
            }
        }
        if let Some(s) = self.shadow.iter().find(|s| s.percent == 0 || s.percent > 100) {
            return Err(ValidationError::new(
                "shadow",
                format!("shadow percent must be 1-100, got {}", s.percent),
            ));
        }
        for f in &self.fallbacks {
            // `model`, `model@3` or `model@alias`.
            let (model, selector) = crate::governance::split_selector(f);
            crate::ids::validate_name("fallbacks", model)?;
            if let Some(sel) = selector {
                crate::ids::validate_name("fallbacks", sel)?;
            }
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
        if let Some(t) = self.cache_ttl_ms
            && t > 86_400_000
        {
            return Err(ValidationError::new(
                "cache_ttl_ms",
                format!("cache_ttl_ms must be at most 86400000 (a day), got {t}"),
            ));
        }
        for (name, v) in [("rpm", self.rpm), ("tpm", self.tpm)] {
            if v == Some(0) {
                return Err(ValidationError::new(name, format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }

    /// The version for a caller: a stable hash of (deployment, user) picks a
    /// bucket 0-99, and the targets' weights divide the buckets, so one user
    /// keeps one variant while the weights stay.
    pub fn pick(&self, deployment: &str, user: &str) -> &VersionSel {
        const FIRST: VersionSel = VersionSel::Number(1);
        let bucket = (stable_hash(&[deployment, user]) % 100) as u32;
        let mut acc = 0;
        for t in &self.targets {
            acc += t.weight;
            if bucket < acc {
                return &t.version;
            }
        }
        self.targets.last().map_or(&FIRST, |t| &t.version)
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
                .map(|(v, w)| DeploymentTarget { version: VersionSel::Number(*v), weight: *w })
                .collect(),
            ..Deployment::default()
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
        assert!(dep(&[(1, 90), (2, 10)]).validate(&[1, 2], &[]).is_ok());
        assert_eq!(
            dep(&[(1, 90), (2, 20)]).validate(&[1, 2], &[]).unwrap_err().param.as_deref(),
            Some("targets")
        );
        assert!(dep(&[(1, 50), (3, 50)]).validate(&[1, 2], &[]).is_err());
        assert!(dep(&[]).validate(&[1], &[]).is_err());
        let mut aliased = dep(&[(1, 100)]);
        aliased.targets[0].version = VersionSel::Alias("champion".into());
        assert!(aliased.validate(&[1], &["champion"]).is_ok());
        assert!(aliased.validate(&[1], &["challenger"]).is_err());
        let parsed: DeploymentTarget =
            serde_json::from_str(r#"{"version": "champion", "weight": 100}"#).unwrap();
        assert_eq!(parsed.version, VersionSel::Alias("champion".into()));
        let parsed: DeploymentTarget =
            serde_json::from_str(r#"{"version": 2, "weight": 100}"#).unwrap();
        assert_eq!(parsed.version, VersionSel::Number(2));
        aliased.fallbacks = vec!["other@champion".into()];
        assert!(aliased.validate(&[1], &["champion"]).is_ok());
        aliased.fallbacks = vec!["other@bad alias".into()];
        assert!(aliased.validate(&[1], &["champion"]).is_err());
    }

    #[test]
    fn picks_are_sticky_and_follow_the_weights() {
        let d = dep(&[(1, 90), (2, 10)]);
        let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let v2 = users.iter().filter(|u| *d.pick("m", u) == VersionSel::Number(2)).count();
        assert!((140..=260).contains(&v2), "about 10% should get version 2, got {v2} of 2000");
        for u in &users[..50] {
            assert_eq!(d.pick("m", u), d.pick("m", u));
        }
        assert!(users.iter().all(|u| *dep(&[(7, 100)]).pick("m", u) == VersionSel::Number(7)));
    }

    #[test]
    fn remote_config_takes_references_never_secrets() {
        let ok =
            serde_json::json!({"base_url": "http://127.0.0.1:9/v1", "api_key": "env:OPENAI_KEY"});
        let c = RemoteConfig::from_json(&ok).unwrap();
        assert_eq!(c.secret(), Some(SecretRef::Env("OPENAI_KEY".into())));
        assert_eq!(c.max_retries, 2);
        let literal = serde_json::json!({"base_url": "http://x/v1", "api_key": "sk-abc123"});
        assert_eq!(
            RemoteConfig::from_json(&literal).unwrap_err().param.as_deref(),
            Some("config.api_key")
        );
        let file = serde_json::json!({"base_url": "https://x/v1", "api_key": "file:/run/key"});
        assert_eq!(
            RemoteConfig::from_json(&file).unwrap().secret(),
            Some(SecretRef::File("/run/key".into()))
        );
        assert!(RemoteConfig::from_json(&serde_json::json!({"base_url": "ftp://x"})).is_err());
        assert!(
            RemoteConfig::from_json(&serde_json::json!({"base_url": "http://x", "extra": 1}))
                .is_err()
        );
        let slow = serde_json::json!({"base_url": "http://x", "total_timeout_ms": 0});
        assert!(RemoteConfig::from_json(&slow).is_err());
    }

    #[test]
    fn admin_scope_forms() {
        let m = |scope: Option<&str>, segment: Option<&str>| NewModel {
            name: "m".into(),
            task: "chat".into(),
            runtime: REMOTE_RUNTIME.into(),
            base_model: None,
            segment: segment.map(str::to_owned),
            scope: scope.map(str::to_owned),
            config: None,
        };
        assert_eq!(m(None, None).admin_scope().unwrap(), AdminScope::Platform);
        assert_eq!(m(Some("platform"), None).admin_scope().unwrap(), AdminScope::Platform);
        assert_eq!(
            m(Some("segment:retail"), None).admin_scope().unwrap(),
            AdminScope::Segment("retail".into())
        );
        assert_eq!(
            m(None, Some("retail")).admin_scope().unwrap(),
            AdminScope::Segment("retail".into())
        );
        assert!(m(Some("segment:retail"), Some("banks")).admin_scope().is_err());
        assert!(m(Some("tenant"), None).admin_scope().is_err());
        assert!(m(None, None).validate().is_err(), "a remote model needs a config");
    }

    #[test]
    fn shadow_share_is_about_its_percent() {
        let mut d = dep(&[(1, 100)]);
        d.shadow = vec![ShadowTarget { version: 2, percent: 50 }];
        let n = (0..1000).filter(|i| !d.shadows_for("m", &format!("r{i}")).is_empty()).count();
        assert!((400..=600).contains(&n), "{n}");
    }
}
