//! Registered models served end to end: a scikit-learn ONNX classifier (made
//! by `scripts/make_onnx_fixture.py`), linear heads over numbers and over the
//! default model's embeddings of text, corrupt and invalid artifacts, the
//! memory budget, and another tenant's models staying out of reach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const IRIS: &[u8] = include_bytes!("../../../tessera-engine/tests/fixtures/iris_logreg.onnx");

fn expected() -> Value {
    serde_json::from_str(include_str!("../../../tessera-engine/tests/fixtures/iris_expected.json"))
        .unwrap()
}

async fn upload(s: &Server, key: &str, path: &str, bytes: Vec<u8>) -> common::Resp {
    s.api.upload(path, key, bytes).await
}

async fn register(
    s: &Server,
    key: &str,
    name: &str,
    task: &str,
    runtime: &str,
    base: Option<&str>,
) {
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(key),
            Some(json!({"name": name, "task": task, "runtime": runtime, "base_model": base})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_classifier_and_linear_heads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;
    let exp = expected();

    // A scikit-learn classifier exported to ONNX.
    register(&s, &key, "iris", "classification", "onnx", None).await;
    // Nothing to serve until a version is uploaded: not found (not a 503,
    // which says "retry", when only an upload helps).
    let no_version = s.api.get("/v2/models/iris", &key).await;
    assert_eq!(
        (no_version.status, no_version.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert!(no_version.body["error"].as_str().unwrap().contains("no versions yet"));
    assert_eq!(
        upload(&s, &key, "/v1/models/iris/versions", IRIS.to_vec()).await.status,
        StatusCode::CREATED
    );
    // A route that cannot serve the model refuses it before loading it.
    let wrong = s.api.embed(&key, json!({"model": "iris", "input": "hello"})).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
    let index = s.api.call(Method::POST, "/v2/repository/index", Some(&key), None).await;
    let iris = index.body.as_array().unwrap().iter().find(|m| m["name"] == "iris").unwrap().clone();
    assert_eq!(
        (iris["state"].as_str(), iris["reason"].as_str()),
        (Some("UNAVAILABLE"), Some("not loaded")),
        "{iris}"
    );
    let meta = s.api.get("/v2/models/iris", &key).await;
    assert_eq!(meta.status, StatusCode::OK, "{meta:?}");
    assert_eq!(meta.body["inputs"], json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]));
    let out_names: Vec<&str> = meta.body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(out_names, ["label", "probabilities"]);
    assert_eq!(meta.body["versions"], json!(["1"]));

    let rows = exp["rows"].clone();
    let r = s
        .api
        .call(Method::POST, "/v2/models/iris/infer", Some(&key), Some(json!({"inputs": [{"name": "X", "shape": [4, 4], "datatype": "FP32", "data": rows}]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (
            r.headers["x-tessera-model"].to_str().unwrap(),
            r.headers["x-tessera-tier"].to_str().unwrap()
        ),
        ("iris", "tenant")
    );
    let outs = r.body["outputs"].as_array().unwrap();
    let label = outs.iter().find(|o| o["name"] == "label").unwrap();
    assert_eq!((label["datatype"].as_str(), &label["data"]), (Some("INT64"), &exp["labels"]));
    let probs = floats(&outs.iter().find(|o| o["name"] == "probabilities").unwrap()["data"]);
    let want: Vec<f64> = exp["probabilities"].as_array().unwrap().iter().flat_map(floats).collect();
    for (a, b) in probs.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{probs:?} vs {want:?}");
    }
    // Output selection, wrong shapes and types are clear errors.
    let r = s
        .api
        .call(Method::POST, "/v2/models/iris/infer", Some(&key), Some(json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "label"}]})))
        .await;
    assert_eq!(r.body["outputs"].as_array().unwrap().len(), 1);
    for bad in [
        json!({"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
        json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}),
        json!({"inputs": [{"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
        json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
    ] {
        let r =
            s.api.call(Method::POST, "/v2/models/iris/infer", Some(&key), Some(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {r:?}");
    }
    // KServe v1 on the same model.
    let r = s
        .api
        .call(Method::POST, "/v1/models/iris:predict", Some(&key), Some(json!({"instances": rows})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["predictions"][2]["label"], exp["labels"][2]);
    let ragged = s
        .api
        .call(
            Method::POST,
            "/v1/models/iris:predict",
            Some(&key),
            Some(json!({"instances": [[1, 2, 3], [4, 5, 6, 7, 8]]})),
        )
        .await;
    assert_eq!(ragged.status, StatusCode::BAD_REQUEST, "{ragged:?}");
    // Another tenant does not see it.
    assert_eq!(s.api.get("/v2/models/iris", &other).await.status, StatusCode::NOT_FOUND);
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/iris:predict",
            Some(&other),
            Some(json!({"instances": rows})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A linear head over the default model's embeddings of text.
    register(&s, &key, "sentiment", "classification", "linear", Some("all-minilm-l6-v2")).await;
    let w: Vec<Vec<f32>> = (0..2)
        .map(|c| (0..384).map(|i| if (i + c) % 2 == 0 { 0.05 } else { -0.05 }).collect())
        .collect();
    let head = json!({"format": "tessera.linear.v1", "task": "classification", "weights": w, "bias": [0.1, -0.1], "labels": ["negative", "positive"], "base_model": "all-minilm-l6-v2"});
    assert_eq!(
        upload(&s, &key, "/v1/models/sentiment/versions", serde_json::to_vec(&head).unwrap())
            .await
            .status,
        StatusCode::CREATED
    );
    let meta = s.api.get("/v2/models/sentiment", &key).await;
    assert_eq!(meta.body["inputs"][0]["datatype"], "BYTES", "{meta:?}");
    let r = s
        .api
        .call(Method::POST, "/v2/models/sentiment/infer", Some(&key), Some(json!({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great product", "terrible service"]}]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let p = floats(&r.body["outputs"][0]["data"]);
    assert_eq!(p.len(), 4);
    assert!((p[0] + p[1] - 1.0).abs() < 1e-5 && (p[2] + p[3] - 1.0).abs() < 1e-5);
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/sentiment:predict",
            Some(&key),
            Some(json!({"instances": ["great product"]})),
        )
        .await;
    let label = r.body["predictions"][0]["label"].as_str().unwrap();
    assert!(label == "negative" || label == "positive", "{r:?}");

    // A regression head over numbers.
    register(&s, &key, "price", "regression", "linear", None).await;
    let head = json!({"format": "tessera.linear.v1", "task": "regression", "weights": [[2.0, 1.0]], "bias": [0.5]});
    upload(&s, &key, "/v1/models/price/versions", serde_json::to_vec(&head).unwrap()).await;
    let r = s
        .api
        .call(Method::POST, "/v2/models/price/infer", Some(&key), Some(json!({"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [[1, 1], [0, 2]]}]})))
        .await;
    assert_eq!(r.body["outputs"][0]["data"], json!([3.5, 2.5]), "{r:?}");
    // A new version serves at once: the resolution cache is dropped on upload.
    let head = json!({"format": "tessera.linear.v1", "task": "regression", "weights": [[2.0, 1.0]], "bias": [10.5]});
    upload(&s, &key, "/v1/models/price/versions", serde_json::to_vec(&head).unwrap()).await;
    let r = s
        .api
        .call(Method::POST, "/v2/models/price/infer", Some(&key), Some(json!({"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [[1, 1], [0, 2]]}]})))
        .await;
    assert_eq!(
        (r.body["model_version"].as_str(), &r.body["outputs"][0]["data"]),
        (Some("2"), &json!([13.5, 12.5])),
        "{r:?}"
    );

    // Several models loaded: their metrics still group by family.
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.matches("tessera_engine_queue_depth{").count() >= 3, "{m}");
    common::assert_families_are_grouped(&m);

    // A file that is not ONNX is refused at upload, naming what is wrong; one
    // that ONNX Runtime cannot load, and a corrupt artifact, at load.
    register(&s, &key, "broken", "classification", "onnx", None).await;
    let bad = upload(&s, &key, "/v1/models/broken/versions", b"not an onnx file".to_vec()).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    assert!(bad.body["error"]["message"].as_str().unwrap().contains("ONNX"), "{bad:?}");
    let v = upload(&s, &key, "/v1/models/broken/versions", common::unloadable_onnx()).await;
    let r = s.api.get("/v2/models/broken", &key).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("model_not_ready")),
        "{r:?}"
    );
    assert!(r.body["error"].as_str().unwrap().contains("ONNX"), "{r:?}");
    let sha = v.body["sha256"].as_str().unwrap().to_owned();
    register(&s, &key, "tampered", "classification", "onnx", None).await;
    let t = upload(&s, &key, "/v1/models/tampered/versions", common::tiny_onnx("tampered")).await;
    let tsha = t.body["sha256"].as_str().unwrap().to_owned();
    let path = dir.path().join("artifacts").join("sha256").join(&tsha[..2]).join(&tsha);
    std::fs::write(&path, IRIS).unwrap();
    let r = s.api.get("/v2/models/tampered", &key).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(r.body["error"].as_str().unwrap().contains("corrupt"), "{r:?} ({sha})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_unloads_the_least_recently_used_model() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path()).env("TESSERA__ENGINE__MODEL_MEMORY_MB", "1"),
    )
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    // Two heads of about 0.7 MB each: only one fits in 1 MB.
    let big = |bias: f32| {
        let head = json!({"format": "tessera.linear.v1", "task": "regression", "weights": [vec![0.001f32; 120_000]], "bias": [bias]});
        serde_json::to_vec(&head).unwrap()
    };
    for (name, bias) in [("a", 1.0), ("b", 2.0)] {
        register(&s, &key, name, "regression", "linear", None).await;
        upload(&s, &key, &format!("/v1/models/{name}/versions"), big(bias)).await;
    }
    let run = |name: &'static str| {
        let api = s.api.clone();
        let key = key.clone();
        async move {
            let x = vec![0.0f32; 120_000];
            api.call(Method::POST, &format!("/v2/models/{name}/infer"), Some(&key), Some(json!({"inputs": [{"name": "features", "shape": [1, 120000], "datatype": "FP32", "data": x}]})))
                .await
        }
    };
    let loaded = |text: &str, name: &str| {
        text.lines().any(|l| l.starts_with("tessera_engine_queue_depth") && l.contains(name))
    };
    let metrics = || async {
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap()
    };
    let models = s.api.get("/v1/models", &key).await.body;
    let id = |n: &str| {
        models["data"].as_array().unwrap().iter().find(|m| m["name"] == n).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (id("a"), id("b"));

    assert_eq!(run("a").await.body["outputs"][0]["data"], json!([1.0]));
    assert!(loaded(&metrics().await, &a));
    assert_eq!(run("b").await.body["outputs"][0]["data"], json!([2.0]));
    let m = metrics().await;
    assert!(loaded(&m, &b) && !loaded(&m, &a), "a should have been unloaded:\n{m}");
    // Using a again reloads it and unloads b.
    assert_eq!(run("a").await.body["outputs"][0]["data"], json!([1.0]));
    let m = metrics().await;
    assert!(loaded(&m, &a) && !loaded(&m, &b), "{m}");
}
