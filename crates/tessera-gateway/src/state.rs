//! Shared state of the HTTP app: the serving layer's [`Services`] (which
//! `AppState` dereferences to, so handlers call `s.tenants()`, `s.cache()`
//! and the like directly) plus what only the edge needs: authentication,
//! request metrics and body limits.

use std::ops::Deref;
use std::sync::Arc;

use tessera_core::config::{JwtConfig, Secret};
use tessera_engine::pool::ModelPool;
use tessera_serving::invalidate::Change;
use tessera_serving::{Services, ServingConfig};
use tessera_store::MetadataStore;
use tessera_store::artifacts::ArtifactStore;

use crate::auth::Authenticator;
use crate::metrics::Metrics;

/// What the gateway needs from the configuration: its own settings and the
/// serving layer's.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub max_body_bytes: usize,
    pub jwt: Option<JwtConfig>,
    pub admin_key: Option<Secret>,
    /// Largest model artifact upload, in bytes.
    pub max_artifact_bytes: usize,
    /// Caches, breakers, Redis; its `cache_ttl` is also the key cache's TTL.
    pub serving: ServingConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: tessera_core::config::DEFAULT_MAX_BODY_BYTES,
            jwt: None,
            admin_key: None,
            max_artifact_bytes: 512 * 1024 * 1024,
            serving: ServingConfig::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    services: Services,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    max_body_bytes: usize,
    max_artifact_bytes: usize,
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.inner.services
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        cfg: GatewayConfig,
        models: Arc<ModelPool>,
        events: Arc<dyn tessera_events::EventLog>,
        features: tessera_features::Stores,
    ) -> Self {
        let key_cache_ttl = cfg.serving.cache_ttl;
        // The process's one metrics registry: the edge's metrics first.
        let metrics = Arc::new(Metrics::default());
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let services =
            Services::new(store, artifacts, cfg.serving, models, events, features, registry);
        let auth = Arc::new(Authenticator::new(
            services.store_arc(),
            cfg.admin_key.as_ref().map(Secret::expose),
            key_cache_ttl,
            cfg.jwt,
            services.tenants().clone(),
            metrics.clone(),
        ));
        // Revoked keys and deleted tenants leave the key cache at once.
        let weak = Arc::downgrade(&auth);
        services.changes().subscribe(move |change| {
            let Some(auth) = weak.upgrade() else { return };
            match change {
                Change::Key(id) => auth.evict_key(id),
                Change::Tenant(id) => auth.evict_tenant(id),
                Change::Plan
                | Change::Registry
                | Change::Deployment(_)
                | Change::Prices
                | Change::EventTypes(_)
                | Change::Features(_) => {}
            }
        });
        Self {
            inner: Arc::new(Inner {
                services,
                auth,
                metrics,
                max_body_bytes: cfg.max_body_bytes,
                max_artifact_bytes: cfg.max_artifact_bytes,
            }),
        }
    }

    /// The serving layer.
    pub fn services(&self) -> &Services {
        &self.inner.services
    }
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }
    /// Request metrics of the HTTP edge.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
    pub fn max_artifact_bytes(&self) -> usize {
        self.inner.max_artifact_bytes
    }
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
}
