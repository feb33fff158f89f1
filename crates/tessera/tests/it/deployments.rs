//! Deployments: weighted, sticky traffic splits over a model's versions,
//! validated, audited, and invisible to other tenants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::collections::HashMap;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn upload(s: &Server, key: &str, path: &str, bytes: Vec<u8>) -> StatusCode {
    s.api.upload(path, key, bytes).await.status
}

async fn predict(s: &Server, key: &str, user: &str) -> (i64, String) {
    let r = s
        .api
        .http
        .post(format!("{}/v1/models/price:predict", s.url))
        .bearer_auth(key)
        .header("x-tessera-user", user)
        // Each call reaches the model (the answer cache is tested on its own).
        .header("cache-control", "no-store")
        .json(&json!({"instances": [[0.0]]}))
        .send()
        .await
        .unwrap();
    let version = r.headers()["x-tessera-model-version"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    (body["predictions"][0]["prediction"][0].as_f64().unwrap() as i64, version)
}

async fn deployments(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&backend, dir.path())).await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "price", "task": "regression", "runtime": "linear"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    for bias in [1.0, 2.0] {
        let head = json!({"format": "tessera.linear.v1", "task": "regression", "weights": [[1.0]], "bias": [bias]});
        assert_eq!(
            upload(&s, &key, "/v1/models/price/versions", serde_json::to_vec(&head).unwrap()).await,
            StatusCode::CREATED
        );
    }
    // Without a deployment the latest version serves.
    assert_eq!(predict(&s, &key, "anyone").await.0, 2);

    let put = |body: Value| {
        let api = s.api.clone();
        let key = key.clone();
        async move { api.call(Method::PUT, "/v1/deployments/price", Some(&key), Some(body)).await }
    };
    for (bad, param) in [
        (
            json!({"targets": [{"version": 1, "weight": 50}, {"version": 2, "weight": 40}]}),
            "targets",
        ),
        (
            json!({"targets": [{"version": 1, "weight": 50}, {"version": 9, "weight": 50}]}),
            "targets",
        ),
        (json!({"targets": [{"version": 1, "weight": 100}], "timeout_ms": 0}), "timeout_ms"),
        (
            json!({"targets": [{"version": 1, "weight": 100}], "shadow": [{"version": 2, "percent": 0}]}),
            "shadow",
        ),
    ] {
        let r = put(bad.clone()).await;
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{bad}"
        );
    }
    let spec = json!({"targets": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}], "timeout_ms": 5000});
    let r = put(spec.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(s.api.get("/v1/deployments/price", &key).await.body["targets"], spec["targets"]);

    // Sticky: each user keeps one version; across users both serve.
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for i in 0..40 {
        let user = format!("user-{i}");
        let (first, version) = predict(&s, &key, &user).await;
        assert_eq!(predict(&s, &key, &user).await.0, first, "{user} switched versions");
        assert!(version.ends_with(&format!("@{first}")), "{version} vs {first}");
        *seen.entry(first).or_default() += 1;
    }
    assert!(
        seen.get(&1).is_some_and(|n| *n > 5) && seen.get(&2).is_some_and(|n| *n > 5),
        "{seen:?}"
    );

    // All traffic to version 1.
    put(json!({"targets": [{"version": 1, "weight": 100}]})).await;
    for i in 0..10 {
        assert_eq!(predict(&s, &key, &format!("user-{i}")).await.0, 1);
    }

    // Other tenants cannot see or change it; the change is audited; delete restores the latest.
    assert_eq!(s.api.get("/v1/deployments/price", &other).await.status, StatusCode::NOT_FOUND);
    let r = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/price",
            Some(&other),
            Some(json!({"targets": [{"version": 1, "weight": 100}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let audit = s.admin(Method::GET, &format!("/admin/v1/audit?tenant={tenant}"), None).await;
    assert!(audit.body["data"].as_array().unwrap().iter().any(|e| e["action"] == "deployment.put"));
    assert_eq!(
        s.api.call(Method::DELETE, "/v1/deployments/price", Some(&key), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.api.get("/v1/deployments/price", &key).await.status, StatusCode::NOT_FOUND);
    assert_eq!(predict(&s, &key, "user-1").await.0, 2);

    // Shadow: every request is mirrored to version 1; answers still come from version 2.
    put(json!({"targets": [{"version": 2, "weight": 100}], "shadow": [{"version": 1, "percent": 100}]})).await;
    let infer = |model: &'static str| {
        let api = s.api.clone();
        let key = key.clone();
        async move {
            let body = json!({"inputs": [{"name": "features", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]});
            api.call(Method::POST, &format!("/v2/models/{model}/infer"), Some(&key), Some(body))
                .await
        }
    };
    for i in 0..5 {
        let r = infer("price").await;
        assert_eq!(r.body["outputs"][0]["data"], json!([2.0]), "{r:?}");
        // KServe :predict is mirrored too.
        assert_eq!(predict(&s, &key, &format!("shadowed-{i}")).await.0, 2);
    }
    let mut mirrored = 0;
    for _ in 0..50 {
        let m = s
            .api
            .http
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        mirrored = m
            .lines()
            .find(|l| l.starts_with("tessera_shadow_requests_total{outcome=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        if mirrored >= 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(mirrored >= 10, "shadow requests counted (5 infer, 5 predict): {mirrored}");

    // Fallback: a model whose only version cannot load hands over to the next in its list.
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "broken", "task": "regression", "runtime": "onnx"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        upload(&s, &key, "/v1/models/broken/versions", common::unloadable_onnx()).await,
        StatusCode::CREATED
    );
    let r = infer("broken").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "no fallback yet: {r:?}");
    let r = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/broken",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "fallbacks": ["price"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = infer("broken").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["x-tessera-model"], "price");
    assert_eq!(r.body["outputs"][0]["data"], json!([2.0]));
    // The version reported is the fallback's, in the header and the body
    // (it was once the requested name with the fallback's version).
    assert_eq!(r.headers["x-tessera-model-version"], "price@2", "{r:?}");
    assert_eq!(r.body["model_version"], "2");
    let prediction = r.headers["x-tessera-prediction-id"].to_str().unwrap().to_owned();
    assert!(prediction.starts_with("prd_"), "{prediction}");
    // The same fallback on KServe v1.
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/broken:predict",
            Some(&key),
            Some(json!({"instances": [[0.0]]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.headers["x-tessera-model"], "price");
    assert_eq!(r.body["predictions"][0]["prediction"], json!([2.0]));
    assert_eq!(r.headers["x-tessera-model-version"], "price@2", "{r:?}");

    // A fallback is vetted for the task on every protocol: a classifier's
    // request is never answered by a regression model.
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "broken-classifier", "task": "classification", "runtime": "onnx"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        upload(&s, &key, "/v1/models/broken-classifier/versions", common::unloadable_onnx()).await,
        StatusCode::CREATED
    );
    let r = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/broken-classifier",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "fallbacks": ["price"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = infer("broken-classifier").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "a regression model answered: {r:?}");
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/broken-classifier:predict",
            Some(&key),
            Some(json!({"instances": [[0.0]]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "a regression model answered: {r:?}");

    // The repository index reports tenant models as they serve: price is
    // loaded at the version its deployment sends traffic to.
    let r = s.api.call(Method::POST, "/v2/repository/index", Some(&key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let price = r.body.as_array().unwrap().iter().find(|m| m["name"] == "price").unwrap().clone();
    assert_eq!(price["state"], "READY", "{price}");
    assert_eq!(price["version"], "2", "{price}");
    let broken = r.body.as_array().unwrap().iter().find(|m| m["name"] == "broken").unwrap().clone();
    assert_eq!(broken["state"], "UNAVAILABLE", "{broken}");

    // Post-processing rules on a classifier: allowed labels, renames, a score floor.
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "triage", "task": "classification", "runtime": "linear"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let head = json!({"format": "tessera.linear.v1", "task": "classification", "weights": [[0.0], [0.0], [0.0]],
        "bias": [0.0, 2f64.ln(), 7f64.ln()], "labels": ["billing", "bug", "spam"]});
    upload(&s, &key, "/v1/models/triage/versions", serde_json::to_vec(&head).unwrap()).await;
    let ask = || {
        let api = s.api.clone();
        let key = key.clone();
        async move {
            api.call(
                Method::POST,
                "/v1/models/triage:predict",
                Some(&key),
                Some(json!({"instances": [[1.0]]})),
            )
            .await
        }
    };
    assert_eq!(ask().await.body["predictions"][0]["label"], "spam");
    let rules = |post: Value| {
        let api = s.api.clone();
        let key = key.clone();
        async move {
            api.call(
                Method::PUT,
                "/v1/deployments/triage",
                Some(&key),
                Some(json!({"targets": [{"version": 1, "weight": 100}], "post": post})),
            )
            .await
        }
    };
    let r = rules(
        json!({"allowed_labels": ["billing", "bug"], "rename_labels": {"bug": "engineering"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let p = ask().await.body["predictions"][0].clone();
    assert_eq!(p["label"], "engineering", "{p}");
    assert!((p["score"].as_f64().unwrap() - 0.2).abs() < 1e-5, "{p}");
    // The same rules on /v2: `label` and `score` outputs beside the model's own.
    let v2 = |outputs: Option<Value>| {
        let api = s.api.clone();
        let key = key.clone();
        async move {
            let mut body = json!({"inputs": [{"name": "features", "shape": [2, 1], "datatype": "FP32", "data": [1.0, 1.0]}]});
            if let Some(o) = outputs {
                body["outputs"] = o;
            }
            api.call(Method::POST, "/v2/models/triage/infer", Some(&key), Some(body)).await
        }
    };
    let r = v2(None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let out = |r: &common::Resp, n: &str| {
        r.body["outputs"].as_array().unwrap().iter().find(|o| o["name"] == n).cloned()
    };
    let label = out(&r, "label").expect("a label output");
    assert_eq!(
        (label["datatype"].as_str(), &label["data"]),
        (Some("BYTES"), &json!(["engineering", "engineering"]))
    );
    assert!((out(&r, "score").unwrap()["data"][0].as_f64().unwrap() - 0.2).abs() < 1e-5, "{r:?}");
    assert!(out(&r, "probabilities").is_some());
    let only = v2(Some(json!([{"name": "label"}]))).await;
    assert_eq!(only.body["outputs"].as_array().unwrap().len(), 1, "{only:?}");
    assert_eq!(out(&only, "label").unwrap()["data"][0], "engineering");
    rules(json!({"allowed_labels": ["billing", "bug"], "min_score": 0.5})).await;
    assert!(ask().await.body["predictions"][0]["label"].is_null());
    assert_eq!(
        out(&v2(None).await, "label").unwrap()["data"],
        json!(["", ""]),
        "withheld labels are empty"
    );
    let r = rules(json!({"min_score": 2.0})).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("post.min_score"))
    );
}

on_both_backends!(deployments);
