//! The model registry over HTTP: tenant, segment and platform models, name
//! resolution, versions with content-addressed artifacts, roles, isolation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn upload(s: &Server, key: &str, path: &str, bytes: Vec<u8>) -> common::Resp {
    s.api.upload(path, key, bytes).await
}

fn names(v: &Value) -> Vec<(String, String)> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), m["owner"].as_str().unwrap().to_owned()))
        .collect()
}

async fn registry(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&backend, dir.path()).env("TESSERA__MAX_ARTIFACT_BYTES", "4096"),
    )
    .await;
    let (a, a_dev, _) = s.tenant_with_key("acme", "developer").await;
    let (_, b_dev, _) = s.tenant_with_key("globex", "developer").await;
    s.admin(Method::PATCH, &format!("/admin/v1/tenants/{a}"), Some(json!({"segment": "retail"})))
        .await;

    // The default model is a platform model everyone sees.
    let listed = s.api.get("/v1/models", &a_dev).await;
    assert_eq!(names(&listed.body), vec![("all-minilm-l6-v2".to_owned(), "platform".to_owned())]);

    // Tenants register their own models.
    let body = json!({"name": "ticket-clf", "task": "classification", "runtime": "onnx"});
    let m = s.api.call(Method::POST, "/v1/models", Some(&a_dev), Some(body.clone())).await;
    assert_eq!(m.status, StatusCode::CREATED, "{m:?}");
    assert_eq!(
        (m.body["owner"].as_str(), m.body["tenant_id"].as_str()),
        (Some("tenant"), Some(a.as_str()))
    );
    let dup = s.api.call(Method::POST, "/v1/models", Some(&a_dev), Some(body.clone())).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    // Same name in another tenant is fine and separate.
    assert_eq!(
        s.api.call(Method::POST, "/v1/models", Some(&b_dev), Some(body)).await.status,
        StatusCode::CREATED
    );
    let bad = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&a_dev),
            Some(json!({"name": "x", "task": "dance", "runtime": "onnx"})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("task"))
    );
    let seg = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&a_dev),
            Some(json!({"name": "x", "task": "custom", "runtime": "onnx", "segment": "retail"})),
        )
        .await;
    assert_eq!(seg.status, StatusCode::BAD_REQUEST);

    // Versions: content-addressed, numbered, verified.
    let artifact = common::tiny_onnx("v1");
    let v1 = upload(&s, &a_dev, "/v1/models/ticket-clf/versions", artifact.clone()).await;
    assert_eq!(v1.status, StatusCode::CREATED, "{v1:?}");
    let sha = tessera_store::artifacts::sha256_hex(&artifact);
    assert_eq!(
        (v1.body["version"].as_i64(), v1.body["sha256"].as_str(), v1.body["size"].as_i64()),
        (Some(1), Some(sha.as_str()), Some(artifact.len() as i64))
    );
    assert!(dir.path().join("artifacts").join("sha256").join(&sha[..2]).join(&sha).is_file());
    let v2 = upload(&s, &a_dev, "/v1/models/ticket-clf/versions", common::tiny_onnx("v2")).await;
    assert_eq!(v2.body["version"], 2);
    let got = s.api.get("/v1/models/ticket-clf", &a_dev).await;
    assert_eq!(got.body["versions"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.api.get("/v1/models/ticket-clf/versions", &a_dev).await.body["data"][1]["version"],
        2
    );
    let b_versions = s.api.get("/v1/models/ticket-clf/versions", &b_dev).await;
    assert_eq!(
        b_versions.body["data"].as_array().unwrap().len(),
        0,
        "b sees its own model of that name"
    );
    let big = upload(&s, &a_dev, "/v1/models/ticket-clf/versions", vec![7u8; 5000]).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    let empty = upload(&s, &a_dev, "/v1/models/ticket-clf/versions", Vec::new()).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    // Tenants cannot version platform models.
    let plat = upload(&s, &a_dev, "/v1/models/all-minilm-l6-v2/versions", b"x".to_vec()).await;
    assert_eq!(plat.status, StatusCode::NOT_FOUND, "{plat:?}");

    // Segment models reach only tenants of the segment.
    let sm = s.admin(Method::POST, "/admin/v1/models", Some(json!({"name": "retail-recs", "task": "custom", "runtime": "onnx", "segment": "retail"}))).await;
    assert_eq!((sm.status, sm.body["owner"].as_str()), (StatusCode::CREATED, Some("segment")));
    let sm_id = sm.body["id"].as_str().unwrap();
    let up = upload(
        &s,
        &s.admin_key,
        &format!("/admin/v1/models/{sm_id}/versions"),
        common::tiny_onnx("seg"),
    )
    .await;
    assert_eq!(up.body["version"], 1);
    assert_eq!(s.api.get("/v1/models/retail-recs", &a_dev).await.status, StatusCode::OK);
    assert_eq!(s.api.get("/v1/models/retail-recs", &b_dev).await.status, StatusCode::NOT_FOUND);
    let a_names = names(&s.api.get("/v1/models", &a_dev).await.body);
    assert!(a_names.contains(&("retail-recs".into(), "segment".into())), "{a_names:?}");
    assert!(
        !names(&s.api.get("/v1/models", &b_dev).await.body).iter().any(|(n, _)| n == "retail-recs")
    );
    let all = s.admin(Method::GET, "/admin/v1/models", None).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 4);
    let versions = s.admin(Method::GET, &format!("/admin/v1/models/{sm_id}/versions"), None).await;
    assert_eq!(versions.body["data"].as_array().unwrap().len(), 1);

    // Roles: viewers read, services neither read nor write the registry.
    let (viewer, _) = s.key_for(&a, "viewer").await;
    let (service, _) = s.key_for(&a, "service").await;
    assert_eq!(s.api.get("/v1/models", &viewer).await.status, StatusCode::OK);
    assert_eq!(
        upload(&s, &viewer, "/v1/models/ticket-clf/versions", common::tiny_onnx("x")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.api.get("/v1/models", &service).await.status, StatusCode::FORBIDDEN);

    // Every registry change is audited.
    let audit = s.admin(Method::GET, &format!("/admin/v1/audit?tenant={a}"), None).await;
    let actions: Vec<_> = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(actions.iter().filter(|a| *a == "model_version.create").count() == 2, "{actions:?}");
    assert!(actions.contains(&"model.create".to_owned()));
}

on_both_backends!(registry);
