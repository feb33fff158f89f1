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

use std::sync::Arc;
use std::time::Duration;

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
use tessera_serving::readthrough::{Lookup, Policy, ReadThrough};
use tessera_serving::tenant_cache::TenantCache;

/// Entries beyond this are dropped wholesale (a flood of random key ids
/// must not grow memory without bound).
const KEY_CACHE_CAPACITY: usize = 100_000;

/// With the database down, a cached key is trusted for at most this long
/// after it was last read; older entries fail closed with 503.
const MAX_STALE: Duration = Duration::from_secs(300);

pub struct Authenticator {
    store: Arc<dyn MetadataStore>,
    admin_key: Option<ConfiguredAdminKey>,
    /// Verified key records (`None`: no such key), read through: a revocation
    /// on this replica while a read is in flight wins.
    keys: ReadThrough<KeyId, Option<KeyRecord>>,
    tenants: Arc<TenantCache>,
    jwt: Option<(JwtConfig, Option<DecodingKey>, Option<jwks::JwksCache>)>,
    metrics: Arc<Metrics>,
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
            keys: ReadThrough::new(Policy {
                stale_for: MAX_STALE,
                capacity: KEY_CACHE_CAPACITY,
                ..Policy::ttl(ttl)
            }),
            tenants,
            jwt,
            metrics,
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

    async fn key_record(&self, id: &KeyId) -> Result<Option<KeyRecord>, ApiError> {
        if let Lookup::Fresh(record) = self.keys.lookup(id) {
            self.metrics.auth_cache(true);
            return Ok(record);
        }
        self.metrics.auth_cache(false);
        // One read per key at a time; with the database down a record read
        // in the last five minutes still serves, older ones fail closed (503).
        self.keys.get(id, || self.store.key_for_auth(id)).await.map_err(|e| match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            e => e.into(),
        })
    }

    /// Forgets a key at once (after revocation on this replica).
    pub fn evict_key(&self, id: &KeyId) {
        self.keys.remove(id);
    }

    /// Forgets every cached key and token check of a tenant (after deletion).
    pub fn evict_tenant(&self, tenant: &TenantId) {
        self.keys
            .retain(|_, record| record.as_ref().and_then(|r| r.tenant_id.as_ref()) != Some(tenant));
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
