//! Authentication: turns a bearer credential into a [`Principal`].
//!
//! API keys are verified against a per-replica cache so the database is not
//! read on every request: a verified record is trusted for `key_cache_ttl`
//! (at most 5 s, so a revocation reaches every replica within that), and a
//! revocation on this replica evicts at once. When the database is down an entry read in
//! the last five minutes is still served (nothing can be revoked meanwhile),
//! and any other key gets 503, never 401.

mod extract;
mod jwks;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use extract::{Authed, OPEN_ROUTES, authenticate_request};
use jsonwebtoken::DecodingKey;
use tessera_core::apikey::{KeyRecord, parse_key_id};
use tessera_core::auth::{AuthError, ConfiguredAdminKey, Principal, verify_api_key};
use tessera_core::config::JwtConfig;
use tessera_core::ids::{KeyId, TenantId};
use tessera_core::jwt::{self, TokenKind};
use tessera_core::time::Timestamp;
use tessera_store::{MetadataStore, StoreError};

use crate::error::ApiError;
use crate::metrics::Metrics;
use tessera_serving::tenant_cache::TenantCache;

/// Entries beyond this are dropped wholesale (a flood of random key ids
/// must not grow memory without bound).
const KEY_CACHE_CAPACITY: usize = 100_000;

/// With the database down, a cached key is trusted for at most this long
/// after it was last read; older entries fail closed with 503.
const MAX_STALE: Duration = Duration::from_secs(300);

struct CachedKey {
    record: Option<KeyRecord>,
    fetched: Instant,
}

pub struct Authenticator {
    store: Arc<dyn MetadataStore>,
    admin_key: Option<ConfiguredAdminKey>,
    ttl: Duration,
    keys: RwLock<HashMap<KeyId, CachedKey>>,
    /// When keys were last evicted on this replica (revocations).
    evicted: RwLock<HashMap<KeyId, Instant>>,
    tenants: Arc<TenantCache>,
    jwt: Option<(JwtConfig, Option<DecodingKey>, Option<jwks::JwksCache>)>,
    metrics: Arc<Metrics>,
    flights: tessera_serving::flight::Flights,
}

impl Authenticator {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        admin_key: Option<&str>,
        ttl: Duration,
        jwt: Option<JwtConfig>,
        tenants: Arc<TenantCache>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let jwt = jwt.map(|cfg| {
            let hs =
                cfg.hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.expose().as_bytes()));
            let jwks = cfg.jwks_url.clone().map(jwks::JwksCache::new);
            (cfg, hs, jwks)
        });
        Self {
            store,
            admin_key: admin_key.map(ConfiguredAdminKey::new),
            ttl,
            keys: RwLock::new(HashMap::new()),
            evicted: RwLock::new(HashMap::new()),
            tenants,
            jwt,
            metrics,
            flights: Default::default(),
        }
    }

    /// Verifies a bearer credential: the configured admin key, a `tsk_` key,
    /// or (when configured) a JWT.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, ApiError> {
        if let Some(p) = self.admin_key.as_ref().and_then(|k| k.verify(bearer)) {
            return Ok(p);
        }
        if let Some(id) = parse_key_id(bearer) {
            let record = self.key_record(&id).await?;
            return Ok(verify_api_key(bearer, record.as_ref(), Timestamp::now())?);
        }
        if let Some(jwt_cfg) = &self.jwt
            && jwt::looks_like_jwt(bearer)
        {
            return self.authenticate_jwt(bearer, jwt_cfg).await;
        }
        Err(AuthError::InvalidKey.into())
    }

    /// A fresh cached record, else the stale one (if any) as the error side.
    #[allow(clippy::type_complexity)]
    fn cached_key(
        &self,
        id: &KeyId,
    ) -> Result<Result<Option<KeyRecord>, Option<(Option<KeyRecord>, Instant)>>, ApiError> {
        let keys = self.keys.read().map_err(|_| poisoned())?;
        Ok(match keys.get(id) {
            Some(c) if c.fetched.elapsed() < self.ttl => Ok(c.record.clone()),
            Some(c) => Err(Some((c.record.clone(), c.fetched))),
            None => Err(None),
        })
    }

    async fn key_record(&self, id: &KeyId) -> Result<Option<KeyRecord>, ApiError> {
        if let Ok(record) = self.cached_key(id)? {
            self.metrics.auth_cache(true);
            return Ok(record);
        }
        // One read per key at a time; the others wait and find it cached.
        let _flight = self.flights.enter(id.as_str()).await;
        let stale = match self.cached_key(id)? {
            Ok(record) => {
                self.metrics.auth_cache(true);
                return Ok(record);
            }
            Err(stale) => stale,
        };
        self.metrics.auth_cache(false);
        let asked = Instant::now();
        match self.store.key_for_auth(id).await {
            Ok(record) => {
                // A revocation on this replica while the read was in flight wins:
                // the possibly older record is not cached.
                let evicted_since = self
                    .evicted
                    .read()
                    .map_err(|_| poisoned())?
                    .get(id)
                    .is_some_and(|at| *at >= asked);
                if evicted_since {
                    return Ok(record);
                }
                let mut keys = self.keys.write().map_err(|_| poisoned())?;
                if keys.len() >= KEY_CACHE_CAPACITY {
                    keys.clear();
                }
                keys.insert(
                    id.clone(),
                    CachedKey { record: record.clone(), fetched: Instant::now() },
                );
                Ok(record)
            }
            Err(StoreError::Unavailable(m)) => match stale {
                Some((record, fetched)) if fetched.elapsed() < MAX_STALE => {
                    tracing::warn!(key = %id, error = %m, "database unavailable; using cached key");
                    Ok(record)
                }
                _ => Err(ApiError::Unavailable(m)),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets a key at once (after revocation on this replica).
    pub fn evict_key(&self, id: &KeyId) {
        if let Ok(mut evicted) = self.evicted.write() {
            // Only lookups in flight right now can race; old marks are useless.
            evicted.retain(|_, at| at.elapsed() < Duration::from_secs(60));
            evicted.insert(id.clone(), Instant::now());
        }
        if let Ok(mut keys) = self.keys.write() {
            keys.remove(id);
        }
    }

    /// Forgets every cached key and token check of a tenant (after deletion).
    pub fn evict_tenant(&self, tenant: &TenantId) {
        if let Ok(mut keys) = self.keys.write() {
            keys.retain(|_, c| {
                c.record.as_ref().and_then(|r| r.tenant_id.as_ref()) != Some(tenant)
            });
        }
        self.tenants.evict(tenant);
    }

    async fn authenticate_jwt(
        &self,
        token: &str,
        (cfg, hs, jwks): &(JwtConfig, Option<DecodingKey>, Option<jwks::JwksCache>),
    ) -> Result<Principal, ApiError> {
        let principal = match jwt::token_kind(token)? {
            TokenKind::Hs256 => {
                let key = hs.as_ref().ok_or_else(|| {
                    AuthError::InvalidToken(
                        "HS256 tokens are not accepted: no secret configured".into(),
                    )
                })?;
                jwt::verify(token, jsonwebtoken::Algorithm::HS256, key, &cfg.rules)?
            }
            TokenKind::Asymmetric { alg, kid } => {
                let jwks = jwks.as_ref().ok_or_else(|| {
                    AuthError::InvalidToken(format!(
                        "{alg:?} tokens are not accepted: no jwks_url configured"
                    ))
                })?;
                let key = jwks.key_for(kid.as_deref(), alg).await?;
                jwt::verify(token, alg, &key, &cfg.rules)?
            }
        };
        // A token names its tenant; that tenant must exist (and not have been deleted).
        if let Some(tenant) = principal.tenant_id() {
            self.require_tenant(tenant).await?;
        }
        Ok(principal)
    }

    async fn require_tenant(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let ctx = tessera_core::auth::SystemCtx::bootstrap().tenant(tenant.clone());
        match self.tenants.get(&*self.store, &ctx).await {
            Ok(_) => Ok(()),
            Err(tessera_serving::inference::ServeError::NotFound(_)) => {
                Err(AuthError::InvalidToken(format!("tenant {tenant} does not exist")).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn poisoned() -> ApiError {
    ApiError::Internal("auth cache lock poisoned".into())
}
