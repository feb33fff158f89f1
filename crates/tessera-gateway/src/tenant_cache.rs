//! A per-replica cache of each tenant with its plan, so the request path does
//! not read the database for them. Entries live for the key cache TTL (so a
//! change reaches every replica within it) and are evicted at once on this
//! replica by the routes that change tenants or plans. With the database down,
//! a stale entry is served rather than failing the request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tessera_core::auth::TenantCtx;
use tessera_core::ids::TenantId;
use tessera_core::tenant::{Plan, Tenant};
use tessera_store::{MetadataStore, StoreError};

use crate::error::ApiError;
use crate::flight::Flights;

const CAPACITY: usize = 100_000;

/// A tenant and the plan it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    pub tenant: Tenant,
    pub plan: Plan,
}

pub struct TenantCache {
    ttl: Duration,
    entries: RwLock<HashMap<TenantId, (Arc<TenantInfo>, Instant)>>,
    flights: Flights,
}

impl TenantCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()), flights: Flights::default() }
    }

    /// A fresh entry, else the stale one (if any) as the error side.
    fn cached(&self, id: &TenantId) -> Result<Arc<TenantInfo>, Option<Arc<TenantInfo>>> {
        match self.entries.read() {
            Ok(map) => match map.get(id) {
                Some((info, at)) if at.elapsed() < self.ttl => Ok(info.clone()),
                Some((info, _)) => Err(Some(info.clone())),
                None => Err(None),
            },
            Err(_) => Err(None),
        }
    }

    pub async fn get(
        &self,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
    ) -> Result<Arc<TenantInfo>, ApiError> {
        if let Ok(info) = self.cached(ctx.tenant_id()) {
            return Ok(info);
        }
        let _flight = self.flights.enter(ctx.tenant_id().as_str()).await;
        let stale = match self.cached(ctx.tenant_id()) {
            Ok(info) => return Ok(info),
            Err(stale) => stale,
        };
        let loaded = async {
            let tenant = store.get_tenant(ctx).await?;
            let plan = store.get_plan(&tenant.plan).await?;
            Ok::<_, StoreError>(TenantInfo { tenant, plan })
        };
        match loaded.await {
            Ok(info) => {
                let info = Arc::new(info);
                if let Ok(mut map) = self.entries.write() {
                    if map.len() >= CAPACITY {
                        map.clear();
                    }
                    map.insert(ctx.tenant_id().clone(), (info.clone(), Instant::now()));
                }
                Ok(info)
            }
            Err(StoreError::Unavailable(m)) => stale.ok_or(ApiError::Unavailable(m)),
            Err(e) => {
                self.evict(ctx.tenant_id());
                Err(e.into())
            }
        }
    }

    pub fn evict(&self, id: &TenantId) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(id);
        }
    }

    /// Forgets everything (after a plan changes).
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.write() {
            map.clear();
        }
    }
}
