//! Each tenant's feature store catalog (entities, views, services), read
//! through per replica: dropped here at once when a definition changes,
//! elsewhere within the cache TTL. Online reads and pushes use it; the
//! definition routes check changes against a fresh read instead.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::auth::TenantCtx;
use tessera_core::ids::TenantId;
use tessera_features::Catalog;
use tessera_store::{MetadataStore, StoreError};

use crate::inference::ServeError;
use crate::readthrough::{Policy, ReadThrough};

pub struct FeatureCatalogs {
    entries: ReadThrough<TenantId, Arc<Catalog>>,
}

impl FeatureCatalogs {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: ReadThrough::new(Policy::ttl(ttl)) }
    }

    /// The tenant's catalog as cached.
    pub async fn get(
        &self,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
    ) -> Result<Arc<Catalog>, ServeError> {
        self.entries
            .get(ctx.tenant_id(), || async {
                Ok::<_, ServeError>(Arc::new(Self::fresh(store, ctx).await?))
            })
            .await
    }

    /// The tenant's catalog as stored now.
    pub async fn fresh(store: &dyn MetadataStore, ctx: &TenantCtx) -> Result<Catalog, StoreError> {
        Ok(Catalog::from_stored(&store.list_feature_defs(ctx, None).await?))
    }

    pub fn evict(&self, tenant: &TenantId) {
        self.entries.remove(tenant);
    }
}
