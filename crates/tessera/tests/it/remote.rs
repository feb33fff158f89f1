//! Remote OpenAI-compatible models (G8) against the stand-in provider that
//! the test starts itself: registration and versions, chat and embeddings,
//! streaming, traffic splits, fallbacks (remote to remote, remote to local),
//! retries, breakers, shadows, and every upstream fault the issue names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_standin::Standin;

const SECRET: &str = "sk-standin-secret-4242";

async fn standin() -> Standin {
    Standin::start(tessera_standin::Options { api_key: Some(SECRET.into()), ..Default::default() })
        .await
        .unwrap()
}

fn server_opts(backend: &Backend, dir: &std::path::Path) -> Options {
    Options::new(backend, dir)
        .env("STANDIN_KEY", SECRET)
        .env("TESSERA__BREAKER__CONSECUTIVE_FAILURES", "4")
        .env("TESSERA__BREAKER__COOL_DOWN_MS", "60000")
}

/// Registers a remote model in the caller's tenant.
async fn remote(s: &Server, key: &str, name: &str, task: &str, config: Value) -> common::Resp {
    s.api.remote_model(key, name, task, config).await
}

fn cfg(up: &Standin, upstream_model: &str) -> Value {
    json!({"base_url": up.url, "api_key": "env:STANDIN_KEY", "upstream_model": upstream_model})
}

async fn chat(s: &Server, key: &str, body: Value) -> common::Resp {
    s.api.chat(key, body).await
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]})
}

/// A streamed answer read to its end: the SSE `data:` payloads.
async fn stream(
    s: &Server,
    key: &str,
    mut body: Value,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<String>) {
    body["stream"] = json!(true);
    let r = s
        .api
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap_or_default();
    let events =
        text.split("\n\n").filter_map(|e| e.strip_prefix("data: ").map(str::to_owned)).collect();
    (status, headers, events)
}

async fn remote_models(backend: Backend) {
    let up = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(server_opts(&backend, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;

    // A literal secret is refused: only references are stored.
    let bad = remote(&s, &key, "llm", "chat", json!({"base_url": up.url, "api_key": SECRET})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    assert_eq!(bad.body["error"]["param"], "config.api_key");
    let no_cfg = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "llm", "task": "chat", "runtime": "openai-compatible"})),
        )
        .await;
    assert_eq!(no_cfg.status, StatusCode::BAD_REQUEST, "{no_cfg:?}");

    // Version 1 exists at once.
    let r = remote(&s, &key, "llm", "chat", cfg(&up, "alpha")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let m = s.api.get("/v1/models/llm", &key).await;
    assert_eq!(m.body["versions"].as_array().unwrap().len(), 1, "{m:?}");

    let r = chat(&s, &key, hello("llm")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["model"], "llm");
    assert!(r.body["choices"][0]["message"]["content"].as_str().unwrap().contains("alpha"));
    assert!(r.body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.headers["x-tessera-model"], "llm");
    assert_eq!(r.headers["x-tessera-model-version"], "llm@1");
    assert_eq!(r.headers["x-tessera-tier"], "tenant");
    assert!(r.headers.contains_key("x-tessera-overhead-ms"));
    // The credential reached the upstream and is nowhere in the database.
    assert_eq!(up.stats.last_auth().as_deref(), Some(format!("Bearer {SECRET}").as_str()));
    drop(s.api.get("/v1/audit", &key).await);
    let files: Vec<_> = walk(dir.path());
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "secret found in {f:?}"
        );
    }

    // Another tenant does not see it.
    let hidden = chat(&s, &other, hello("llm")).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{hidden:?}");

    // Version 2 takes another upstream model; a 50/50 sticky split by user.
    let v2 = s
        .api
        .http
        .post(format!("{}/v1/models/llm/versions", s.url))
        .bearer_auth(&key)
        .json(&json!({"config": cfg(&up, "beta")}))
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), StatusCode::CREATED);
    let bad_v = s
        .api
        .http
        .post(format!("{}/v1/models/llm/versions", s.url))
        .bearer_auth(&key)
        .json(&json!({"config": {"base_url": "nope"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_v.status(), StatusCode::BAD_REQUEST);
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/llm",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let mut seen = std::collections::HashMap::new();
    for u in 0..40 {
        let mut body = hello("llm");
        body["user"] = json!(format!("user-{u}"));
        let a = chat(&s, &key, body.clone()).await;
        let b = chat(&s, &key, body).await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        let va = a.headers["x-tessera-model-version"].to_str().unwrap().to_owned();
        assert_eq!(va, b.headers["x-tessera-model-version"].to_str().unwrap(), "sticky per user");
        *seen.entry(va).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both variants serve: {seen:?}");
    assert!(up.stats.hits("beta") > 0);

    // Streaming: events as they come, [DONE] last, usage only when asked for.
    let (status, headers, events) = stream(&s, &key, hello("llm")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert!(text.starts_with("Hello from"), "{text:?}");
    assert!(events.iter().all(|e| !e.contains("\"usage\"")), "usage not asked for: {events:?}");
    let mut with_usage = hello("llm");
    with_usage["stream_options"] = json!({"include_usage": true});
    let (_, _, events) = stream(&s, &key, with_usage).await;
    assert!(events.iter().any(|e| e.contains("\"usage\"")), "{events:?}");

    // Remote embeddings.
    let e = remote(&s, &key, "remote-emb", "embedding", cfg(&up, "emb")).await;
    assert_eq!(e.status, StatusCode::CREATED, "{e:?}");
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(&key),
            Some(json!({"model": "remote-emb", "input": ["a b", "c"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["model"], "remote-emb");
    assert_eq!(r.headers["x-tessera-model-version"], "remote-emb@1");
    // The wrong route for a task is a clear 400.
    let wrong = chat(&s, &key, hello("remote-emb")).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");

    // Platform and segment remote models, by scope.
    let p = s
        .admin(
            Method::POST,
            "/admin/v1/models",
            Some(json!({"name": "shared-llm", "task": "chat",
            "runtime": "openai-compatible", "scope": "platform", "config": cfg(&up, "shared")})),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{p:?}");
    assert_eq!(p.body["owner"], "platform");
    let sg = s
        .admin(
            Method::POST,
            "/admin/v1/models",
            Some(json!({"name": "seg-llm", "task": "chat",
            "runtime": "openai-compatible", "scope": "segment:retail", "config": cfg(&up, "seg")})),
        )
        .await;
    assert_eq!(sg.status, StatusCode::CREATED, "{sg:?}");
    assert_eq!(
        (sg.body["owner"].as_str(), sg.body["segment"].as_str()),
        (Some("segment"), Some("retail"))
    );
    let bad_scope = s
        .admin(
            Method::POST,
            "/admin/v1/models",
            Some(json!({"name": "x", "task": "chat",
            "runtime": "openai-compatible", "scope": "tenant:acme", "config": cfg(&up, "x")})),
        )
        .await;
    assert_eq!(bad_scope.status, StatusCode::BAD_REQUEST, "{bad_scope:?}");
    let shared = chat(&s, &other, hello("shared-llm")).await;
    assert_eq!(shared.status, StatusCode::OK, "{shared:?}");
    assert_eq!(shared.headers["x-tessera-tier"], "platform");
    // A tenant cannot register with a scope.
    let scoped = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "y", "task": "chat",
            "runtime": "openai-compatible", "scope": "platform", "config": cfg(&up, "y")})),
        )
        .await;
    assert_eq!(scoped.status, StatusCode::BAD_REQUEST, "{scoped:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

on_both_backends!(remote_models);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_are_clear_counted_and_never_leak() {
    let up = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(server_opts(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let with = |model: &str, extra: Value| {
        let mut c = cfg(&up, model);
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = [
        ("slow", with("slow-3000", json!({"first_byte_timeout_ms": 300, "max_retries": 0}))),
        ("five-hundred", with("fail-500", json!({"max_retries": 2}))),
        ("flaky", with("flaky-1", json!({}))),
        ("limited", with("ratelimit", json!({"max_retries": 0}))),
        ("malformed", with("malformed", json!({}))),
        ("rejected", with("fail-400", json!({}))),
        ("refused", json!({"base_url": "http://127.0.0.1:9/v1", "max_retries": 0})),
        ("cut", with("cut-3", json!({}))),
        ("dripping", with("drip-200", json!({}))),
        ("down", with("fail-503", json!({"max_retries": 0}))),
        ("backup", with("backup", json!({}))),
    ];
    for (name, c) in &cases {
        let r = remote(&s, &key, name, "chat", c.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {r:?}");
    }

    // Too slow: 504 after the first-byte timeout, not after the upstream's 3 s.
    let t = Instant::now();
    let r = chat(&s, &key, hello("slow")).await;
    assert_eq!((r.status, r.code()), (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(2500), "{:?}", t.elapsed());

    // 5xx: retried up to max_retries, then 502 naming the model.
    let r = chat(&s, &key, hello("five-hundred")).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("five-hundred@1"), "{r:?}");
    assert_eq!(up.stats.hits("fail-500"), 3, "one call and two retries");

    // A failure that goes away: the retry answers.
    let r = chat(&s, &key, hello("flaky")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(up.stats.hits("flaky-1"), 2);

    // 429 from the upstream: 429 with retry-after to the client.
    let r = chat(&s, &key, hello("limited")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"),
        "{r:?}"
    );
    assert!(r.headers.contains_key("retry-after"));

    // Malformed JSON: 502, not retried.
    let r = chat(&s, &key, hello("malformed")).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{r:?}");
    assert_eq!(up.stats.hits("malformed"), 1);

    // The upstream rejects the request: its status and message, no retry.
    let r = chat(&s, &key, hello("rejected")).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "upstream_rejected"), "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("told to fail with 400"));
    assert_eq!(up.stats.hits("fail-400"), 1);

    // Nothing listening.
    let r = chat(&s, &key, hello("refused")).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{r:?}");

    // A plain answer cut mid-body.
    let r = chat(&s, &key, hello("cut")).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{r:?}");
    // A stream cut mid-way: the events so far, then an error event, no [DONE].
    let (status, _, events) = stream(&s, &key, hello("cut")).await;
    assert_eq!(status, StatusCode::OK, "{events:?} {}", s.log());
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events[3].contains("upstream_error"), "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // A client that leaves mid-stream closes the upstream stream too.
    let mut body = hello("dripping");
    body["stream"] = json!(true);
    let mut r = s
        .api
        .http
        .post(format!("{}/v1/chat/completions", s.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.chunk().await.unwrap().is_some());
    assert_eq!(up.stats.open_streams(), 1);
    drop(r);
    let gone = async {
        while up.stats.open_streams() != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the upstream stream is closed");

    // Failures open the breaker: 503 naming it, with retry-after, and listed.
    for _ in 0..4 {
        let r = chat(&s, &key, hello("down")).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{r:?}");
    }
    let hits = up.stats.hits("fail-503");
    let r = chat(&s, &key, hello("down")).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
        "{r:?}"
    );
    assert!(r.body["error"]["message"].as_str().unwrap().contains("down@1"), "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(up.stats.hits("fail-503"), hits, "an open breaker sends nothing upstream");
    let b = s.admin(Method::GET, "/admin/v1/breakers", None).await;
    let open: Vec<&Value> = b.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["backend"].as_str().unwrap().starts_with("down@1"))
        .collect();
    assert_eq!(open.len(), 1, "{b:?}");
    assert_eq!(open[0]["state"], "open");

    // With a fallback, the same failure is answered by the next model.
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/down",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "fallbacks": ["backup"]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let r = chat(&s, &key, hello("down")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["x-tessera-model"], "backup");
    assert_eq!(r.body["model"], "backup");
    let (status, headers, events) = stream(&s, &key, hello("down")).await;
    assert_eq!((status, headers["x-tessera-model"].to_str().unwrap()), (StatusCode::OK, "backup"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // A malformed stream_options is the client's problem, not a crash.
    let mut odd = hello("backup");
    odd["stream_options"] = json!("x");
    let (status, _, events) = stream(&s, &key, odd).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Every fault is counted.
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    for kind in
        ["timeout", "status_5xx", "rate_limited", "malformed", "rejected", "connect", "stream_cut"]
    {
        assert!(
            m.contains(&format!("tessera_upstream_failures_total{{kind=\"{kind}\"}}")),
            "{kind} in\n{m}"
        );
    }
    assert!(m.contains("tessera_upstream_retries_total{outcome=\"made\"}"));
    common::assert_families_are_grouped(&m);
    assert!(s.log().lines().all(|l| !l.contains(SECRET)), "the secret is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_shadow_never_slows_the_primary() {
    let up = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(server_opts(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    assert_eq!(
        remote(&s, &key, "llm", "chat", cfg(&up, "primary")).await.status,
        StatusCode::CREATED
    );
    let v2 = s
        .api
        .http
        .post(format!("{}/v1/models/llm/versions", s.url))
        .bearer_auth(&key)
        .json(&json!({"config": cfg(&up, "hang")}))
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), StatusCode::CREATED);
    let d = s
        .api
        .call(Method::PUT, "/v1/deployments/llm", Some(&key), Some(json!({
            "targets": [{"version": 1, "weight": 100}], "shadow": [{"version": 2, "percent": 100}]})))
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    // More requests than there are shadow slots: the primary answers every
    // time at once, the shadows hang upstream, and the excess is dropped.
    let t = Instant::now();
    for i in 0..80 {
        let r = chat(&s, &key, hello("llm")).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {r:?}");
        assert_eq!(r.headers["x-tessera-model-version"], "llm@1");
        let (_, _, events) = stream(&s, &key, hello("llm")).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(up.stats.hits("hang") >= 1);
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    let dropped = m
        .lines()
        .find_map(|l| l.strip_prefix("tessera_shadow_requests_total{outcome=\"dropped\"} "))
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(dropped > 0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_model_stands_in_for_a_failing_remote_one() {
    let up = standin().await;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        server_opts(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let mut c = cfg(&up, "fail-503");
    c["max_retries"] = json!(0);
    assert_eq!(remote(&s, &key, "emb", "embedding", c).await.status, StatusCode::CREATED);
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/emb",
            Some(&key),
            Some(json!({
            "targets": [{"version": 1, "weight": 100}], "fallbacks": ["all-minilm-l6-v2"]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(&key),
            Some(json!({"model": "emb", "input": "hello world"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["x-tessera-model"], "all-minilm-l6-v2");
    assert_eq!(r.headers["x-tessera-tier"], "platform");
    assert_eq!(r.body["model"], "all-minilm-l6-v2");
    assert_eq!(r.body["data"][0]["embedding"].as_array().unwrap().len(), 384);
    assert_eq!(up.stats.hits("fail-503"), 1, "the remote was tried first");
    // Without the fallback the failure is the client's answer.
    let d = s.api.call(Method::DELETE, "/v1/deployments/emb", Some(&key), None).await;
    assert!(d.status.is_success(), "{d:?}");
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(&key),
            Some(json!({"model": "emb", "input": "hello world"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_GATEWAY, "upstream_error"), "{r:?}");
}
