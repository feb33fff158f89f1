//! The response cache (G5): hits and misses, per tenant, Cache-Control,
//! purge, chat only when the deployment says so, the cached answer as the
//! first fallback, and L2 shared by two replicas through Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::Duration;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_standin::Standin;

async fn emb_model(s: &Server, key: &str, up: &Standin, name: &str) {
    let config = json!({"base_url": up.url, "upstream_model": name, "max_retries": 0});
    let r = s.api.remote_model(key, name, "embedding", config).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

/// Embeds with optional Cache-Control; returns the answer and x-tessera-cache.
async fn embed(
    s: &Server,
    key: &str,
    model: &str,
    input: &str,
    cc: Option<&str>,
) -> (Value, String) {
    let mut rb = s
        .api
        .http
        .post(format!("{}/v1/embeddings", s.url))
        .bearer_auth(key)
        .json(&json!({"model": model, "input": input}));
    if let Some(cc) = cc {
        rb = rb.header("cache-control", cc);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cache = r.headers()["x-tessera-cache"].to_str().unwrap().to_owned();
    assert_eq!(r.headers()["x-tessera-model"], model);
    (r.json().await.unwrap(), cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_misses_tenants_cache_control_purge_and_stale_fallback() {
    let up = Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, a, _) = s.tenant_with_key("acme", "developer").await;
    let (_, b, _) = s.tenant_with_key("globex", "developer").await;
    emb_model(&s, &a, &up, "emb").await;
    emb_model(&s, &b, &up, "emb").await;

    let (first, c1) = embed(&s, &a, "emb", "hello", None).await;
    let (second, c2) = embed(&s, &a, "emb", "hello", None).await;
    assert_eq!((c1.as_str(), c2.as_str()), ("miss", "hit"));
    assert_eq!(first, second);
    assert_eq!(up.stats.hits("emb"), 1, "the hit never reached the provider");
    // Another tenant, same model name and input: its own entry.
    assert_eq!(embed(&s, &b, "emb", "hello", None).await.1, "miss");
    assert_eq!(up.stats.hits("emb"), 2);
    // The end-user field does not change the answer, so it shares the entry.
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(&a),
            Some(json!({"model": "emb", "input": "hello", "user": "u-9"})),
        )
        .await;
    assert_eq!(r.headers["x-tessera-cache"], "hit");
    // no-cache: fresh from the model (and stored); no-store: around the cache.
    assert_eq!(embed(&s, &a, "emb", "hello", Some("no-cache")).await.1, "miss");
    assert_eq!(embed(&s, &a, "emb", "hello", Some("no-store")).await.1, "bypass");
    assert_eq!(up.stats.hits("emb"), 4);
    // A purge forgets the tenant's entries of the model, not the other tenant's.
    let p = s.api.call(Method::DELETE, "/v1/cache?model=emb", Some(&a), None).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT, "{p:?}");
    assert_eq!(embed(&s, &a, "emb", "hello", None).await.1, "miss");
    assert_eq!(embed(&s, &b, "emb", "hello", None).await.1, "hit");
    let p = s.api.call(Method::DELETE, "/v1/cache?model=nope", Some(&a), None).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);

    // A short TTL: the entry goes stale, then answers when the provider fails.
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/emb",
            Some(&a),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "cache_ttl_ms": 200})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let (fresh, c) = embed(&s, &a, "emb", "fallback please", None).await;
    assert_eq!(c, "miss");
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.stats.set_down(true);
    let (stale, c) = embed(&s, &a, "emb", "fallback please", None).await;
    assert_eq!(c, "stale", "the cached answer is the first fallback");
    assert_eq!(stale["data"], fresh["data"]);
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(&a),
            Some(json!({"model": "emb", "input": "never seen"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "nothing cached to fall back on: {r:?}");
    up.stats.set_down(false);

    // Chat: not cached unless the deployment says so.
    let r = s
        .api
        .call(Method::POST, "/v1/models", Some(&a), Some(json!({"name": "llm", "task": "chat",
            "runtime": "openai-compatible", "config": {"base_url": up.url, "upstream_model": "gpt"}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let hello = json!({"model": "llm", "messages": [{"role": "user", "content": "hi"}]});
    let c = |r: &common::Resp| r.headers["x-tessera-cache"].to_str().unwrap().to_owned();
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&a), Some(hello.clone())).await;
    assert_eq!(c(&r), "bypass");
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/llm",
            Some(&a),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "cache_chat": true})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let r1 = s.api.call(Method::POST, "/v1/chat/completions", Some(&a), Some(hello.clone())).await;
    let r2 = s.api.call(Method::POST, "/v1/chat/completions", Some(&a), Some(hello)).await;
    assert_eq!((c(&r1).as_str(), c(&r2).as_str()), ("miss", "hit"));
    assert_eq!(r1.body, r2.body);

    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tessera_cache_requests_total{outcome=\"stale_fallback\"} 1"), "{m}");
    common::assert_families_are_grouped(&m);

    // Shadows mirror what the primary answered, never a stale cached answer
    // (chat once tested "the model's name is the one asked for", which a
    // cached answer passes too).
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/llm/versions",
            Some(&a),
            Some(json!({"config": {"base_url": up.url, "upstream_model": "gpt-next"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/llm",
            Some(&a),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "cache_chat": true,
                "cache_ttl_ms": 200, "shadow": [{"version": 2, "percent": 100}]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let shadows = || async {
        let m = s.api.metrics().await;
        m.lines()
            .filter(|l| l.starts_with("tessera_shadow_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let ask = json!({"model": "llm", "messages": [{"role": "user", "content": "shadow me"}]});
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&a), Some(ask.clone())).await;
    assert_eq!(c(&r), "miss", "{r:?}");
    let mut mirrored = 0;
    for _ in 0..100 {
        mirrored = shadows().await;
        if mirrored == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mirrored, 1, "the primary's answer was mirrored once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.stats.set_down(true);
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&a), Some(ask)).await;
    assert_eq!(c(&r), "stale", "{r:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shadows().await, 1, "a stale answer was mirrored");
    up.stats.set_down(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_l2_and_purges() {
    let up = Standin::start(Default::default()).await.unwrap();
    let Some(common::Pair { a, b, dirs: _dirs, .. }) =
        common::Pair::start("replica-admin-key-0123456789").await
    else {
        return;
    };
    let (_, key, _) = a.tenant_with_key("acme", "developer").await;
    emb_model(&a, &key, &up, "emb").await;
    assert_eq!(embed(&a, &key, "emb", "shared", None).await.1, "miss");
    // The L2 write is in the background: give it a moment.
    let mut seen = String::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = embed(&b, &key, "emb", "shared", None).await.1;
        if seen == "hit" {
            break;
        }
    }
    assert_eq!(seen, "hit", "replica b answers from replica a's entry");
    // A purge on a reaches b within about a second.
    let p = a.api.call(Method::DELETE, "/v1/cache?model=emb", Some(&key), None).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(embed(&b, &key, "emb", "shared", None).await.1, "miss");
}
