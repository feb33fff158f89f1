//! Scale-out: two `tessera serve` processes on one PostgreSQL and one Redis
//! behave as one service. Limits and the L2 cache have their own
//! two-process tests (`limits.rs`, `cache.rs`); this one checks that key
//! revocation and deployment changes made on one replica reach the other
//! within 5 seconds, that a model uploaded through one is served by the
//! other, and that usage from both lands once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tessera_standin::Standin;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behave_as_one_service() {
    let up = Standin::start(Default::default()).await.unwrap();
    let Some(common::Pair { a, b, dirs: _dirs, .. }) =
        common::Pair::start("scale-admin-key-0123456789").await
    else {
        return;
    };
    let (tenant, key, _) = a.tenant_with_key("acme", "developer").await;
    let (other_key, other_id) = a.key_for(&tenant, "developer").await;
    let r = a
        .api
        .call(Method::POST, "/v1/models", Some(&key), Some(json!({"name": "llm", "task": "chat",
            "runtime": "openai-compatible", "config": {"base_url": up.url, "upstream_model": "alpha"}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v2 = a
        .api
        .http
        .post(format!("{}/v1/models/llm/versions", a.url))
        .bearer_auth(&key)
        .json(&json!({"config": {"base_url": up.url, "upstream_model": "beta"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), StatusCode::CREATED);
    let hello = json!({"model": "llm", "messages": [{"role": "user", "content": "hi"}]});
    let version = |s: &Server| {
        let api = s.api.clone();
        let (key, hello) = (key.clone(), hello.clone());
        async move {
            let r = api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello)).await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            r.headers["x-tessera-model-version"].to_str().unwrap().to_owned()
        }
    };
    // Both replicas serve the model registered through a (its config lives in the database).
    assert_eq!(version(&b).await, "llm@2");

    // A deployment change on a reaches b within 5 seconds.
    let d = a
        .api
        .call(
            Method::PUT,
            "/v1/deployments/llm",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let start = Instant::now();
    while version(&b).await != "llm@1" {
        assert!(start.elapsed() < Duration::from_secs(5), "deployment change did not reach b");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A key revoked on a stops working on b within 5 seconds.
    assert_eq!(b.api.get("/v1/me", &other_key).await.status, StatusCode::OK);
    let r =
        a.admin(Method::DELETE, &format!("/admin/v1/tenants/{tenant}/keys/{other_id}"), None).await;
    assert!(r.status.is_success(), "{r:?}");
    let start = Instant::now();
    while b.api.get("/v1/me", &other_key).await.status != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < Duration::from_secs(5), "revocation did not reach b");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Usage from both replicas lands once each.
    let mut ids = Vec::new();
    for s in [&a, &b, &a, &b] {
        let r =
            s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello.clone())).await;
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    let start = Instant::now();
    loop {
        let r = b.api.get("/v1/usage/records", &key).await;
        let got: Vec<&str> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["request_id"].as_str().unwrap())
            .collect();
        if ids.iter().all(|id| got.contains(&id.as_str())) {
            let mut unique = got.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), got.len(), "no record twice");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "usage missing: {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
