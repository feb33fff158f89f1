//! Per-replica caches of the registry for the inference path: a tenant's
//! model name -> the registry entry that serves it and its versions, and a
//! model's deployment. Entries live for the cache TTL (so registry changes
//! reach every replica within it) and are dropped at once on this replica
//! when the registry changes (see `invalidate.rs`), so inference does no
//! database round trip per request. With the database down, what this
//! replica last read still serves.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::auth::TenantCtx;
use tessera_core::governance::Alias;
use tessera_core::model::{Deployment, Model, ModelVersion};
use tessera_store::{MetadataStore, ModelView};

use crate::inference::ServeError;
use crate::readthrough::{Policy, ReadThrough};

/// A name resolved for a tenant, with the model's versions.
#[derive(Debug)]
pub struct Resolved {
    pub model: Model,
    pub versions: Vec<ModelVersion>,
    pub aliases: Vec<Alias>,
}

impl Resolved {
    /// The version an alias points at.
    pub fn alias(&self, alias: &str) -> Option<i64> {
        self.aliases.iter().find(|a| a.alias == alias).map(|a| a.version)
    }
}

/// (tenant, segment, model name)
type Key = (String, Option<String>, String);

pub struct RegistryCache {
    names: ReadThrough<Key, Arc<Resolved>>,
    /// Deployments by model id; `None`: the model has none.
    deployments: ReadThrough<String, Option<Arc<Deployment>>>,
}

impl RegistryCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            names: ReadThrough::new(Policy::ttl(ttl)),
            deployments: ReadThrough::new(Policy::ttl(ttl)),
        }
    }

    /// Resolves `name` for the tenant (tenant -> segment -> platform).
    pub async fn resolve(
        &self,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
        segment: Option<&str>,
        name: &str,
    ) -> Result<Arc<Resolved>, ServeError> {
        let key = (ctx.tenant_id().to_string(), segment.map(str::to_owned), name.to_owned());
        self.names
            .get(&key, || async {
                let view = ModelView::Tenant { ctx, segment };
                let model = store.resolve_model(view, name).await?;
                let versions = store.list_model_versions(view, &model).await?;
                let aliases = store.list_aliases(view, &model).await?;
                Ok(Arc::new(Resolved { model, versions, aliases }))
            })
            .await
    }

    /// A model's deployment, `None` when it has none.
    pub async fn deployment(
        &self,
        store: &dyn MetadataStore,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Option<Arc<Deployment>>, ServeError> {
        self.deployments
            .get(&model.id, || async {
                match store.get_deployment(view, model).await? {
                    Some(spec) => serde_json::from_str::<Deployment>(&spec)
                        .map(|d| Some(Arc::new(d)))
                        .map_err(|e| {
                            ServeError::Internal(format!(
                                "stored deployment of {} does not parse: {e}",
                                model.id
                            ))
                        }),
                    None => Ok(None),
                }
            })
            .await
    }

    /// Forgets every resolved name (after a registry change on this replica).
    pub fn clear(&self) {
        self.names.clear();
    }

    /// Forgets a model's deployment (after a change on this replica).
    pub fn forget_deployment(&self, model_id: &str) {
        self.deployments.remove(&model_id.to_owned());
    }
}
