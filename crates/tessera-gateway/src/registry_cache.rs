//! A per-replica cache of model resolution for the inference path: a
//! tenant's model name -> the registry entry that serves it and its versions.
//! Entries live for the cache TTL (so registry changes reach every replica
//! within it) and are dropped at once on this replica by the routes that
//! change the registry, so inference does no database round trip per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tessera_core::auth::TenantCtx;
use tessera_core::model::{Model, ModelVersion};
use tessera_store::{MetadataStore, ModelView};

use crate::error::ApiError;

const CAPACITY: usize = 100_000;

/// A name resolved for a tenant, with the model's versions.
#[derive(Debug)]
pub struct Resolved {
    pub model: Model,
    pub versions: Vec<ModelVersion>,
}

type Key = (String, Option<String>, String);

pub struct RegistryCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Arc<Resolved>, Instant)>>,
    flights: crate::flight::Flights,
}

impl RegistryCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()), flights: Default::default() }
    }

    /// Resolves `name` for the tenant (tenant -> segment -> platform).
    pub async fn resolve(
        &self,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
        segment: Option<&str>,
        name: &str,
    ) -> Result<Arc<Resolved>, ApiError> {
        let key = (ctx.tenant_id().to_string(), segment.map(str::to_owned), name.to_owned());
        if let Some(r) = self.fresh(&key) {
            return Ok(r);
        }
        let _flight = self
            .flights
            .enter(&format!("{}\u{0}{}\u{0}{name}", key.0, segment.unwrap_or("")))
            .await;
        if let Some(r) = self.fresh(&key) {
            return Ok(r);
        }
        let view = ModelView::Tenant { ctx, segment };
        let loaded = async {
            let model = store.resolve_model(view, name).await?;
            let versions = store.list_model_versions(view, &model).await?;
            Ok::<_, tessera_store::StoreError>(Resolved { model, versions })
        };
        let resolved = match loaded.await {
            Ok(r) => Arc::new(r),
            // The database is down: what this replica last knew still serves.
            Err(tessera_store::StoreError::Unavailable(m)) => {
                return self.stale(&key).ok_or(ApiError::Unavailable(m));
            }
            Err(e) => return Err(e.into()),
        };
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, (resolved.clone(), Instant::now()));
        }
        Ok(resolved)
    }

    fn stale(&self, key: &Key) -> Option<Arc<Resolved>> {
        let map = self.entries.lock().ok()?;
        map.get(key).map(|(r, _)| r.clone())
    }

    fn fresh(&self, key: &Key) -> Option<Arc<Resolved>> {
        let map = self.entries.lock().ok()?;
        let (r, at) = map.get(key)?;
        (at.elapsed() < self.ttl).then(|| r.clone())
    }

    /// Forgets everything (after a registry change on this replica).
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }
}
