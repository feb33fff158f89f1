//! Event type schemas (F4): each tenant's JSON Schemas for the `properties`
//! of its event types, compiled once and read through per replica (dropped
//! here at once when they change, elsewhere within the cache TTL). Ingestion
//! checks every event of a batch against its type's schema before anything
//! is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::auth::TenantCtx;
use tessera_core::ids::TenantId;
use tessera_events::NewEvent;
use tessera_events::ingest::IngestError;
use tessera_store::MetadataStore;

use crate::inference::ServeError;
use crate::readthrough::{Policy, ReadThrough};

type Compiled = Arc<HashMap<String, Arc<jsonschema::Validator>>>;

pub struct EventSchemas {
    entries: ReadThrough<TenantId, Compiled>,
}

/// Compiles a schema, or says what is wrong with it.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("schema is not a valid JSON Schema: {e}"))
}

/// Why a batch failed its schemas, or the schemas could not be read.
#[derive(Debug)]
pub enum SchemaCheck {
    Refused(IngestError),
    Unavailable(ServeError),
}

impl EventSchemas {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: ReadThrough::new(Policy::ttl(ttl)) }
    }

    /// Checks each event whose type has a schema; the first that fails is
    /// named by its index and the failing field.
    pub async fn check(
        &self,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
        events: &[NewEvent],
    ) -> Result<(), SchemaCheck> {
        let schemas = self
            .entries
            .get(ctx.tenant_id(), || async {
                let types = store.list_event_types(ctx).await?;
                let mut out = HashMap::new();
                for t in types {
                    // A stored schema compiled when it was put; one that no
                    // longer does (a newer validator) is skipped, not fatal.
                    match compile(&t.schema) {
                        Ok(v) => {
                            out.insert(t.name, Arc::new(v));
                        }
                        Err(e) => tracing::warn!(event_type = %t.name, error = %e, "stored schema skipped"),
                    }
                }
                Ok::<_, ServeError>(Arc::new(out))
            })
            .await
            .map_err(SchemaCheck::Unavailable)?;
        if schemas.is_empty() {
            return Ok(());
        }
        for (index, e) in events.iter().enumerate() {
            let Some(v) = schemas.get(&e.event_type) else { continue };
            let props = serde_json::Value::Object(e.properties.clone());
            if let Some(err) = v.iter_errors(&props).next() {
                let path = err.instance_path().to_string();
                let mut field = format!("properties{}", path.replace('/', "."));
                // A missing or an unexpected property is named itself.
                match err.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        if let Some(p) = property.as_str() {
                            field = format!("{field}.{p}");
                        }
                    }
                    jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                        if let Some(p) = unexpected.first() {
                            field = format!("{field}.{p}");
                        }
                    }
                    _ => {}
                }
                return Err(SchemaCheck::Refused(IngestError::Invalid {
                    index,
                    field,
                    message: format!("does not match the {} schema: {err}", e.event_type),
                }));
            }
        }
        Ok(())
    }

    pub fn evict(&self, tenant: &TenantId) {
        self.entries.remove(tenant);
    }
}
