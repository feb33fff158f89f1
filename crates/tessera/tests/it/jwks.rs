//! JWT bearer tokens: RS256 and ES256 against a JWKS served by a small server
//! the test starts, and HS256 with a configured secret. Claims map to tenant
//! and role; signature, exp, nbf, iss and aud are checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::get;
use common::{Backend, Options, Server};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RSA_PEM: &[u8] = include_bytes!("../fixtures/rsa_private.pem");
const EC_PEM: &[u8] = include_bytes!("../fixtures/ec_private.pem");
const JWKS: &str = include_str!("../fixtures/jwks.json");
pub(crate) const ISS: &str = "https://idp.test";
pub(crate) const AUD: &str = "tessera-api";

/// Serves the fixture JWKS; answers 503 while `down` is set.
pub(crate) async fn jwks_server(down: Arc<AtomicBool>) -> String {
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let down = down.clone();
            async move {
                if down.load(Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, String::new())
                } else {
                    (StatusCode::OK, JWKS.to_owned())
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/.well-known/jwks.json")
}

pub(crate) fn now() -> i64 {
    tessera_core::time::Timestamp::now().millis() / 1000
}

pub(crate) fn token(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PEM).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PEM).unwrap(),
        _ => EncodingKey::from_secret(b"a-development-hs256-secret"),
    };
    encode(&header, claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_from_a_jwks_and_a_shared_secret() {
    let down = Arc::new(AtomicBool::new(false));
    let jwks_url = jwks_server(down.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA__AUTH__JWKS_URL", &jwks_url)
        .env("TESSERA__AUTH__JWT_ISSUER", ISS)
        .env("TESSERA__AUTH__JWT_AUDIENCE", AUD)
        .env("TESSERA__AUTH__JWT_HS256_SECRET", "env:TEST_JWT_SECRET")
        .env("TEST_JWT_SECRET", "a-development-hs256-secret");
    let s = Server::start(opts).await;
    let (tenant, _, _) = s.tenant_with_key("acme", "viewer").await;
    let claims = |extra: Value| {
        let mut c = json!({"sub": "user-7", "tenant_id": tenant, "role": "developer", "iss": ISS, "aud": AUD, "exp": now() + 300});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    };

    for (alg, kid) in [
        (Algorithm::RS256, Some("rsa-1")),
        (Algorithm::ES256, Some("ec-1")),
        (Algorithm::HS256, None),
    ] {
        let r = s.api.get("/v1/me", &token(alg, kid, &claims(json!({})))).await;
        assert_eq!(r.status, StatusCode::OK, "{alg:?}: {r:?}");
        assert_eq!(r.body["tenant"]["id"], tenant.as_str());
        assert_eq!(r.body["key"]["auth_method"], "jwt");
        assert_eq!(r.body["key"]["id"], "jwt:user-7");
        assert_eq!(r.body["key"]["role"], "developer");
    }
    // A token's role is enforced like a key's.
    let viewer = token(Algorithm::RS256, Some("rsa-1"), &claims(json!({"role": "viewer"})));
    let r = s
        .api
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(&viewer),
            Some(json!({"name": "x", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let rejected = [
        ("expired", token(Algorithm::RS256, Some("rsa-1"), &claims(json!({"exp": now() - 120})))),
        (
            "not yet valid",
            token(Algorithm::RS256, Some("rsa-1"), &claims(json!({"nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            token(Algorithm::RS256, Some("rsa-1"), &claims(json!({"iss": "https://evil"}))),
        ),
        ("wrong audience", token(Algorithm::ES256, Some("ec-1"), &claims(json!({"aud": "other"})))),
        ("unknown kid", token(Algorithm::RS256, Some("rsa-9"), &claims(json!({})))),
        (
            "unknown tenant",
            token(
                Algorithm::RS256,
                Some("rsa-1"),
                &claims(json!({"tenant_id": "ten_doesnotexist00"})),
            ),
        ),
        (
            "platform role",
            token(Algorithm::RS256, Some("rsa-1"), &claims(json!({"role": "platform_admin"}))),
        ),
        (
            "no tenant claim",
            token(
                Algorithm::HS256,
                None,
                &json!({"role": "viewer", "iss": ISS, "aud": AUD, "exp": now() + 60}),
            ),
        ),
    ];
    for (why, tok) in rejected {
        let r = s.api.get("/v1/me", &tok).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "invalid_api_key"),
            "{why}: {r:?}"
        );
    }
    // A signature made with another key fails even with a known kid.
    let good = token(Algorithm::RS256, Some("rsa-1"), &claims(json!({})));
    let forged = format!("{}.{}", good.rsplit_once('.').unwrap().0, "c2lnbmF0dXJl");
    assert_eq!(s.api.get("/v1/me", &forged).await.status, StatusCode::UNAUTHORIZED);

    // The identity provider going down: cached keys still verify tokens,
    // and a key that was never fetched is a 503, not a 401.
    down.store(true, Ordering::SeqCst);
    assert_eq!(s.api.get("/v1/me", &good).await.status, StatusCode::OK);
    drop(s);
    let opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA__AUTH__JWKS_URL", &jwks_url)
        .env("TESSERA__AUTH__JWT_ISSUER", ISS)
        .env("TESSERA__AUTH__JWT_AUDIENCE", AUD);
    let s = Server::start(opts).await;
    let r = s.api.get("/v1/me", &good).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
        "{r:?}"
    );
    down.store(false, Ordering::SeqCst);
    assert_eq!(s.api.get("/v1/me", &good).await.status, StatusCode::OK);
}
