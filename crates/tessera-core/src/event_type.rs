//! Event types (F4): a tenant may give an event type a JSON Schema for its
//! `properties`; ingestion then refuses a batch with an event that does not
//! match, naming the event and the field.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::validate_name;
use crate::time::Timestamp;

/// A tenant's schema for one event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventType {
    #[serde(rename = "type")]
    pub name: String,
    /// A JSON Schema (draft 2020-12 unless `$schema` says otherwise) for the
    /// events' `properties`.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
    pub updated_at: Timestamp,
}

/// Body of `PUT /v1/event-types/{type}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEventType {
    /// A JSON Schema for the events' `properties`, e.g.
    /// `{"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}, "additionalProperties": false}`.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

/// Checks an event type's name (as event `type`s are checked on ingestion).
pub fn validate_event_type(name: &str) -> Result<(), ValidationError> {
    validate_name("type", name)
}
