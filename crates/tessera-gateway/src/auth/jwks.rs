//! A cached JSON Web Key Set from an OIDC provider. Keys are refetched every
//! five minutes, and early when a token names an unknown `kid` (at most once
//! every ten seconds, so bogus tokens cannot hammer the provider).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tessera_core::auth::AuthError;
use tokio::sync::Mutex;

use crate::error::ApiError;

const MAX_AGE: Duration = Duration::from_secs(300);
const MIN_REFRESH_GAP: Duration = Duration::from_secs(10);

pub(super) struct JwksCache {
    url: String,
    client: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

impl JwksCache {
    pub(super) fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { url, client, state: Mutex::new(State::default()) }
    }

    pub(super) async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, ApiError> {
        let mut st = self.state.lock().await;
        let age = st.fetched.map(|t| t.elapsed());
        let found = st.set.as_ref().and_then(|s| find(s, kid, alg));
        let refresh = match (&found, age) {
            (_, None) => true,
            (Some(_), Some(a)) => a > MAX_AGE,
            (None, Some(a)) => a > MIN_REFRESH_GAP,
        };
        if refresh {
            match self.fetch().await {
                Ok(set) => {
                    st.set = Some(set);
                    st.fetched = Some(Instant::now());
                }
                // A stale set still verifies tokens while the provider is down.
                Err(e) if found.is_some() => {
                    tracing::warn!(url = %self.url, error = %e, "jwks refresh failed")
                }
                Err(e) => return Err(e),
            }
        }
        let jwk = st.set.as_ref().and_then(|s| find(s, kid, alg)).ok_or_else(|| {
            AuthError::InvalidToken(format!("no {alg:?} key with kid {kid:?} in the jwks"))
        })?;
        DecodingKey::from_jwk(&jwk)
            .map_err(|e| AuthError::InvalidToken(format!("unusable jwk: {e}")).into())
    }

    async fn fetch(&self) -> Result<JwkSet, ApiError> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| ApiError::UpstreamUnavailable(format!("jwks {}: {e}", self.url)))?;
        if !resp.status().is_success() {
            return Err(ApiError::UpstreamUnavailable(format!(
                "jwks {} answered {}",
                self.url,
                resp.status()
            )));
        }
        resp.json::<JwkSet>().await.map_err(|e| {
            ApiError::UpstreamUnavailable(format!("jwks {} is not a key set: {e}", self.url))
        })
    }
}

fn find(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<jsonwebtoken::jwk::Jwk> {
    let family_matches = |j: &jsonwebtoken::jwk::Jwk| {
        use jsonwebtoken::jwk::AlgorithmParameters as P;
        matches!(
            (&j.algorithm, alg),
            (P::RSA(_), Algorithm::RS256) | (P::EllipticCurve(_), Algorithm::ES256)
        )
    };
    set.keys
        .iter()
        .filter(|j| family_matches(j))
        .find(|j| kid.is_none() || j.common.key_id.as_deref() == kid)
        .cloned()
}
