//! Usage metering (G7): every inference request leaves one priced record,
//! written in batches; tenants read their own totals and records (JSON and
//! CSV), the platform reads everyone's and edits prices; a clean shutdown
//! flushes what is queued.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::Duration;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_standin::Standin;

const ADMIN: &str = "usage-admin-key-0123456789";

fn opts(backend: &Backend, dir: &std::path::Path) -> Options {
    Options::new(backend, dir).env("TESSERA_ADMIN_KEY", ADMIN)
}

async fn chat(s: &Server, key: &str, stream: bool) -> common::Resp {
    let body = json!({"model": "llm", "stream": stream, "messages": [{"role": "user", "content": "one two three"}]});
    s.api.call(Method::POST, "/v1/chat/completions", Some(key), Some(body)).await
}

async fn usage_metering(backend: Backend) {
    let up = Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(opts(&backend, dir.path())).await;
    let (a_id, a, _) = s.tenant_with_key("acme", "developer").await;
    let (_, b, _) = s.tenant_with_key("globex", "developer").await;
    for (key, name) in [(&a, "llm"), (&b, "llm")] {
        let r = s
            .api
            .call(Method::POST, "/v1/models", Some(key), Some(json!({"name": name, "task": "chat",
                "runtime": "openai-compatible", "config": {"base_url": up.url, "upstream_model": "gpt"}})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // Prices: $1 per 1k prompt tokens, $2 per 1k completion tokens.
    let p = s
        .admin(
            Method::PUT,
            "/admin/v1/prices",
            Some(json!({"model": "llm", "prompt_per_1k_usd": 1.0, "completion_per_1k_usd": 2.0})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p:?}");
    let bad = s
        .admin(
            Method::PUT,
            "/admin/v1/prices",
            Some(json!({"model": "llm", "per_request_usd": -1})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.api
            .call(Method::PUT, "/admin/v1/prices", Some(&a), Some(json!({"model": "llm"})))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let first = chat(&s, &a, false).await;
    assert_eq!(first.status, StatusCode::OK);
    let (p_tok, c_tok) = (
        first.body["usage"]["prompt_tokens"].as_u64().unwrap(),
        first.body["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(chat(&s, &a, true).await.status, StatusCode::OK);
    assert_eq!(chat(&s, &b, false).await.status, StatusCode::OK);
    // A failed request is recorded too.
    let missing = s
        .api
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(&a),
            Some(json!({"model": "llm", "messages": [], "stream": false})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);

    // Records land within the flush interval.
    let mut totals = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        totals = s.api.get("/v1/usage?group_by=model", &a).await.body;
        if totals["data"][0]["requests"].as_i64() == Some(3) {
            break;
        }
    }
    let g = &totals["data"][0];
    assert_eq!((g["group"].as_str(), g["requests"].as_i64()), (Some("llm"), Some(3)), "{totals}");
    assert_eq!(g["errors"].as_i64(), Some(1), "the refused request is recorded: {totals}");
    assert_eq!(g["prompt_tokens"].as_u64(), Some(2 * p_tok), "the stream's usage counts: {totals}");
    assert_eq!(g["completion_tokens"].as_u64(), Some(2 * c_tok));
    let expected = 2.0 * (p_tok as f64 * 1.0 + c_tok as f64 * 2.0) / 1000.0;
    assert!((g["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-6, "{totals} vs {expected}");

    let records = s.api.get("/v1/usage/records", &a).await;
    let rows = records.body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{records:?}");
    assert!(rows.iter().all(|r| r["tenant_id"] == a_id.as_str()));
    let ok: Vec<&Value> = rows.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(ok.len(), 2);
    assert!(ok.iter().all(|r| r["version"] == "llm@1" && r["tier"] == "tenant"), "{records:?}");
    let ids: Vec<&str> = rows.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&first.headers["x-request-id"].to_str().unwrap()));

    // CSV for billing.
    let csv = s
        .api
        .http
        .get(format!("{}/v1/usage?format=csv&group_by=day", s.url))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("group,requests,prompt_tokens"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
    let bad = s.api.get("/v1/usage?format=xml", &a).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = s.api.get("/v1/usage?from=yesterday", &a).await;
    assert_eq!(bad.body["error"]["param"], "from");

    // Tenants see their own only; the platform sees everyone.
    let theirs = s.api.get("/v1/usage/records", &b).await;
    assert_eq!(theirs.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(s.api.get("/v1/usage?tenant=x", &b).await.status, StatusCode::BAD_REQUEST);
    let all = s.admin(Method::GET, "/admin/v1/usage", None).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2, "{all:?}");
    let one = s.admin(Method::GET, &format!("/admin/v1/usage/records?tenant={a_id}"), None).await;
    assert_eq!(one.body["data"].as_array().unwrap().len(), 3);
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tessera_usage_dropped_total 0"), "{m}");

    // A clean shutdown writes what is still queued.
    assert_eq!(chat(&s, &a, false).await.status, StatusCode::OK);
    assert!(s.terminate().await.success());
    let s = Server::start(opts(&backend, dir.path())).await;
    let records = s.api.get("/v1/usage/records", &a).await;
    assert_eq!(records.body["data"].as_array().unwrap().len(), 4, "{records:?}");
    let p = s.admin(Method::DELETE, "/admin/v1/prices/llm", None).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
    assert!(
        s.admin(Method::GET, "/admin/v1/prices", None).await.body["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

on_both_backends!(usage_metering);
