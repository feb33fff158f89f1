//! What a model version reads from the feature store (the seed's
//! tenant-aware model server): the features it takes, in the order it takes
//! them, frozen from a feature service when the version is uploaded, the
//! join keys an inference request names, and what to do when a feature is
//! missing or stale.
//!
//! Frozen, because a version is immutable: editing the service later (a
//! feature added, reordered) must not change what an already deployed
//! version is fed. A new version binds the service as it is then.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What happens to a feature that is not found, null, or older than its
/// view's TTL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Refuse the request: 422 naming the feature and the entity row.
    #[default]
    Fail,
    /// Feed the declared default (0 for a number without one).
    Default,
}

impl OnMissing {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fail" => Some(OnMissing::Fail),
            "default" => Some(OnMissing::Default),
            _ => None,
        }
    }
}

/// A model version's features, as `GET /v1/models/{name}/versions` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureBinding {
    /// The feature service the version was bound to.
    pub service: String,
    /// `view:feature`, in the order the model's input takes them; a
    /// `float64_list` feature gives as many numbers as it holds.
    pub features: Vec<String>,
    /// The join keys an inference request gives in its `entity`.
    pub entity: Vec<String>,
    pub on_missing: OnMissing,
    /// Under `on_missing: default`: a feature's value when it is missing (a
    /// number, or a list of numbers for a `float64_list` feature).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub defaults: BTreeMap<String, Value>,
}

impl FeatureBinding {
    /// What a missing feature is fed: its default under `on_missing:
    /// default` (0 for a number without one); `None` under `fail`.
    pub fn default_for(&self, feature: &str) -> Option<Value> {
        match self.on_missing {
            OnMissing::Fail => None,
            OnMissing::Default => {
                Some(self.defaults.get(feature).cloned().unwrap_or(Value::from(0)))
            }
        }
    }
}
