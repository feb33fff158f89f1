//! A per-replica cache of each tenant with its plan, so the request path does
//! not read the database for them. Entries live for the key cache TTL (so a
//! change reaches every replica within it) and are evicted at once on this
//! replica when tenants or plans change (see `invalidate.rs`). With the
//! database down, a stale entry is served rather than failing the request.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::auth::TenantCtx;
use tessera_core::ids::TenantId;
use tessera_core::tenant::{Plan, Tenant};
use tessera_store::MetadataStore;

use crate::inference::ServeError;
use crate::readthrough::{Policy, ReadThrough};

/// A tenant and the plan it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    pub tenant: Tenant,
    pub plan: Plan,
}

pub struct TenantCache {
    entries: ReadThrough<TenantId, Arc<TenantInfo>>,
}

impl TenantCache {
    pub fn new(ttl: Duration) -> Self {
        Self { entries: ReadThrough::new(Policy::ttl(ttl)) }
    }

    pub async fn get(
        &self,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
    ) -> Result<Arc<TenantInfo>, ServeError> {
        self.entries
            .get(ctx.tenant_id(), || async {
                let tenant = store.get_tenant(ctx).await?;
                let plan = store.get_plan(&tenant.plan).await?;
                Ok(Arc::new(TenantInfo { tenant, plan }))
            })
            .await
    }

    pub fn evict(&self, id: &TenantId) {
        self.entries.remove(id);
    }

    /// Forgets everything (after a plan changes).
    pub fn clear(&self) {
        self.entries.clear();
    }
}
