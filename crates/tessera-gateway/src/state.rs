//! Shared state of the HTTP app.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::config::{JwtConfig, Secret};
use tessera_core::model::{Deployment, Model};
use tessera_engine::pool::ModelPool;
use tessera_store::{MetadataStore, ModelView};

use crate::inference::ServeError;
use tessera_store::artifacts::ArtifactStore;

use crate::auth::Authenticator;
use crate::breaker::{BreakerConfig, Breakers};
use crate::cache::ResponseCache;
use crate::limits::Limiter;
use crate::metering::Meter;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::registry_cache::RegistryCache;
use crate::tenant_cache::TenantCache;
use crate::upstream::Upstreams;

/// What the gateway needs from the configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub max_body_bytes: usize,
    pub key_cache_ttl: Duration,
    pub jwt: Option<JwtConfig>,
    pub admin_key: Option<Secret>,
    /// Largest model artifact upload, in bytes.
    pub max_artifact_bytes: usize,
    pub breaker: BreakerConfig,
    /// Redis for limits shared by every replica; in process without it.
    pub redis_url: Option<String>,
    /// Longest wait for one Redis call before this replica decides alone.
    pub redis_timeout: Duration,
    /// Bytes of answers the in-process cache keeps.
    pub cache_max_bytes: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: tessera_core::config::DEFAULT_MAX_BODY_BYTES,
            key_cache_ttl: Duration::from_secs(2),
            jwt: None,
            admin_key: None,
            max_artifact_bytes: 512 * 1024 * 1024,
            breaker: BreakerConfig::default(),
            redis_url: None,
            redis_timeout: Duration::from_millis(100),
            cache_max_bytes: 256 << 20,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn MetadataStore>,
    auth: Arc<Authenticator>,
    tenants: Arc<TenantCache>,
    metrics: Arc<Metrics>,
    models: Arc<ModelPool>,
    artifacts: Arc<dyn ArtifactStore>,
    breakers: Breakers,
    upstreams: Upstreams,
    limiter: Arc<Limiter>,
    cache: ResponseCache,
    meter: Arc<Meter>,
    registry: Arc<RegistryCache>,
    shadow_slots: Arc<tokio::sync::Semaphore>,
    /// One request at a time starts loading a model from its artifact.
    loads: crate::flight::Flights,
    tasks: crate::tasks::Tasks,
    max_body_bytes: usize,
    max_artifact_bytes: usize,
}

impl AppState {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        cfg: GatewayConfig,
        models: Arc<ModelPool>,
    ) -> Self {
        // Every cache below hears about the changes written through this store.
        let changes = Arc::new(crate::invalidate::Changes::default());
        let store: Arc<dyn MetadataStore> =
            Arc::new(crate::invalidate::InvalidatingStore::new(store, changes.clone()));
        let metrics = Arc::new(Metrics::default());
        let tenants = Arc::new(TenantCache::new(cfg.key_cache_ttl));
        let auth = Arc::new(Authenticator::new(
            store.clone(),
            cfg.admin_key.as_ref().map(Secret::expose),
            cfg.key_cache_ttl,
            cfg.jwt,
            tenants.clone(),
            metrics.clone(),
        ));
        // The URL was validated with the configuration; a client that cannot
        // be built leaves limits in process and the cache in L1.
        let redis = cfg.redis_url.as_deref().and_then(|url| {
            RedisLink::open(url, cfg.redis_timeout)
                .map_err(|e| tracing::error!(error = %e, "redis unusable; limits in process, cache L1 only"))
                .ok()
                .map(Arc::new)
        });
        let tasks = crate::tasks::Tasks::default();
        let limiter = Limiter::new(redis.clone(), tasks.clone());
        limiter.start_heartbeat();
        let meter = Meter::start(store.clone());
        let registry = Arc::new(RegistryCache::new(cfg.key_cache_ttl));
        subscribe(&changes, &auth, &tenants, &registry, &meter);
        Self {
            inner: Arc::new(Inner {
                store,
                auth,
                tenants,
                metrics,
                models,
                artifacts,
                breakers: Breakers::new(cfg.breaker),
                upstreams: Upstreams::default(),
                limiter,
                cache: ResponseCache::new(cfg.cache_max_bytes, redis, tasks.clone()),
                meter,
                registry,
                shadow_slots: Arc::new(tokio::sync::Semaphore::new(64)),
                loads: Default::default(),
                tasks,
                max_body_bytes: cfg.max_body_bytes,
                max_artifact_bytes: cfg.max_artifact_bytes,
            }),
        }
    }

    pub fn store(&self) -> &dyn MetadataStore {
        &*self.inner.store
    }
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }
    /// Tenants with their plans, cached per replica.
    pub fn tenants(&self) -> &TenantCache {
        &self.inner.tenants
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    /// Loaded models and their batchers.
    pub fn models(&self) -> &Arc<ModelPool> {
        &self.inner.models
    }
    /// Single flight for starting model loads: one request per pool key
    /// reads the artifact and starts the load; the others wait, then find it
    /// loading or loaded.
    pub fn model_loads(&self) -> &crate::flight::Flights {
        &self.inner.loads
    }

    /// A model's deployment, cached per replica for the cache TTL (so a
    /// change reaches every replica within it); `None` when it has none.
    pub async fn deployment(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Option<Arc<Deployment>>, ServeError> {
        self.inner.registry.deployment(self.store(), view, model).await
    }

    /// What shadow traffic runs on: its slots (beyond them shadows are
    /// dropped and counted), its counters, the task owner.
    pub fn shadows(&self) -> crate::inference::shadow::Shadows {
        crate::inference::shadow::Shadows {
            slots: self.inner.shadow_slots.clone(),
            metrics: self.inner.metrics.clone(),
            tasks: self.inner.tasks.clone(),
        }
    }

    /// The owner of background tasks: stopped and awaited on shutdown.
    pub fn tasks(&self) -> &crate::tasks::Tasks {
        &self.inner.tasks
    }

    /// Model resolution for inference, cached per replica.
    pub fn registry(&self) -> &RegistryCache {
        &self.inner.registry
    }

    /// Usage metering: the queue to the batched writer, and prices.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.inner.meter
    }

    /// The two-level response cache.
    pub fn cache(&self) -> &ResponseCache {
        &self.inner.cache
    }

    /// Admission: rate, token and concurrency limits.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.inner.limiter
    }

    /// Clients, configs, retry budget and counters for remote providers.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    /// Circuit breakers of this replica's backends.
    pub fn breakers(&self) -> &Breakers {
        &self.inner.breakers
    }

    pub fn artifacts(&self) -> &dyn ArtifactStore {
        &*self.inner.artifacts
    }
    pub fn max_artifact_bytes(&self) -> usize {
        self.inner.max_artifact_bytes
    }
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
}

/// Drops each per-replica cache's entries that a change makes wrong. The
/// caches are held weakly: they hold the store, which holds this.
fn subscribe(
    changes: &crate::invalidate::Changes,
    auth: &Arc<Authenticator>,
    tenants: &Arc<TenantCache>,
    registry: &Arc<RegistryCache>,
    meter: &Arc<Meter>,
) {
    use crate::invalidate::Change;
    let (auth, tenants) = (Arc::downgrade(auth), Arc::downgrade(tenants));
    let (registry, meter) = (Arc::downgrade(registry), Arc::downgrade(meter));
    changes.subscribe(move |change| match change {
        Change::Plan => {
            if let Some(t) = tenants.upgrade() {
                t.clear();
            }
        }
        Change::Tenant(id) => {
            if let Some(a) = auth.upgrade() {
                // Keys and the tenant's own entry.
                a.evict_tenant(id);
            }
        }
        Change::Key(id) => {
            if let Some(a) = auth.upgrade() {
                a.evict_key(id);
            }
        }
        Change::Registry => {
            if let Some(r) = registry.upgrade() {
                r.clear();
            }
        }
        Change::Deployment(model_id) => {
            if let Some(r) = registry.upgrade() {
                r.forget_deployment(model_id);
            }
        }
        Change::Prices => {
            if let Some(m) = meter.upgrade() {
                m.prices_changed();
            }
        }
    });
}
