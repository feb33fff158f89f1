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
