//! Models that read features (F1 with the pipeline): a version bound to a
//! feature service at upload, inference requests that name an entity on
//! KServe v1 and OIP, the missing-feature policies (422 naming the feature,
//! or declared defaults), the answer cache keyed by the feature values (a
//! push invalidates the entity's cached answers), the entity on the
//! prediction record, and the same on two replicas over Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_core::time::Timestamp;

const ADMIN: &str = "feature-models-admin-key-0123456789";

async fn call(s: &Server, key: &str, method: Method, path: &str, body: Value) -> common::Resp {
    s.api.call(method, path, Some(key), Some(body)).await
}

/// A customer entity, a push view and two services: one over numbers, one
/// with a string feature a model cannot read.
async fn define(s: &Server, key: &str) {
    let defs = [
        ("/v1/features/entities/customer", json!({"join_keys": ["customer_id"]})),
        (
            "/v1/features/views/stats",
            json!({"entities": ["customer"], "ttl": "1h", "source": {"push": {}},
                "schema": [{"name": "spend", "dtype": "float64"}, {"name": "orders", "dtype": "int64"},
                           {"name": "tier", "dtype": "string"}]}),
        ),
        ("/v1/features/services/churn_v1", json!({"features": ["stats:spend", "stats:orders"]})),
        ("/v1/features/services/texty", json!({"features": ["stats:tier"]})),
    ];
    for (path, body) in defs {
        let r = call(s, key, Method::PUT, path, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {r:?}");
    }
}

async fn push(s: &Server, key: &str, who: &str, spend: f64, orders: i64) {
    let at = Timestamp::now().to_rfc3339();
    let body = json!({"push_source_name": "stats", "df": {"customer_id": who, "event_timestamp": at,
        "spend": spend, "orders": orders, "tier": "gold"}});
    let r = call(s, key, Method::POST, "/v1/features/push", body).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

/// `2 * spend + orders + 0.5`.
fn head(weights: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"format": "tessera.linear.v1", "task": "regression",
        "weights": weights, "bias": [0.5]}))
    .unwrap()
}

async fn predict(s: &Server, key: &str, entity: Value) -> common::Resp {
    let body = json!({"parameters": {"entity": entity}});
    call(s, key, Method::POST, "/v1/models/churn:predict", body).await
}

fn value(r: &common::Resp) -> f64 {
    r.body["predictions"][0]["prediction"][0].as_f64().unwrap_or_else(|| panic!("{r:?}"))
}

fn cache(r: &common::Resp) -> &str {
    r.headers["x-tessera-cache"].to_str().unwrap()
}

/// Everything a tenant does with a model that reads features, writing
/// through `a` and reading through `b` (the same server when embedded).
async fn scenario(a: &Server, b: &Server, key: &str) {
    define(a, key).await;
    let r = call(
        a,
        key,
        Method::POST,
        "/v1/models",
        json!({"name": "churn", "task": "regression", "runtime": "linear"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");

    // The binding is checked at upload: a string feature, a width that does
    // not match the head, an unknown service.
    let up = |q: &str, bytes: Vec<u8>| {
        let path = format!("/v1/models/churn/versions{q}");
        async move { a.api.upload(&path, key, bytes).await }
    };
    let r = up("?feature_service=texty", head(json!([[1.0]]))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("\"stats:tier\""), "{r:?}");
    let r = up("?feature_service=churn_v1", head(json!([[1.0, 1.0, 1.0]]))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("takes 3 values"), "{r:?}");
    let r = up("?feature_service=nope", head(json!([[1.0]]))).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("feature_service"))
    );
    let r = up("?on_missing=default", head(json!([[1.0]]))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    let r = up("?feature_service=churn_v1", head(json!([[2.0, 1.0]]))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        r.body["features"],
        json!({"service": "churn_v1", "features": ["stats:spend", "stats:orders"],
               "entity": ["customer_id"], "on_missing": "fail"})
    );
    // The service can change later; the version reads what it was bound to.
    let r = call(
        a,
        key,
        Method::PUT,
        "/v1/features/services/churn_v1",
        json!({"features": ["stats:orders"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // An entity without features is a 422 naming the feature and the entity.
    let r = predict(b, key, json!({"customer_id": "c1"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "features_missing"),
        "{r:?}"
    );
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"stats:spend\"")
            && msg.contains("customer_id=\"c1\"")
            && msg.contains("not found"),
        "{msg}"
    );

    // Features pushed: the model reads them; the answer is cached per value.
    push(a, key, "c1", 1.5, 3).await;
    let r = predict(b, key, json!({"customer_id": "c1"})).await;
    assert_eq!((r.status, value(&r), cache(&r)), (StatusCode::OK, 6.5, "miss"), "{r:?}");
    let prediction_id = r.headers["x-tessera-prediction-id"].to_str().unwrap().to_owned();
    let r = predict(b, key, json!({"customer_id": "c1"})).await;
    assert_eq!((value(&r), cache(&r)), (6.5, "hit"), "{r:?}");
    // A push changes the entity's features: its cached answer is not served.
    push(a, key, "c1", 2.0, 3).await;
    let r = predict(b, key, json!({"customer_id": "c1"})).await;
    assert_eq!((value(&r), cache(&r)), (7.5, "miss"), "{r:?}");

    // Several entities as a column, on KServe and on OIP.
    push(a, key, "c2", 0.0, 1).await;
    let r = predict(b, key, json!({"customer_id": ["c1", "c2"]})).await;
    let preds: Vec<f64> = r.body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prediction"][0].as_f64().unwrap())
        .collect();
    assert_eq!(preds, [7.5, 1.5], "{r:?}");
    let oip = json!({"parameters": {"entity": {"customer_id": ["c2", "c1"]}}, "inputs": []});
    let r = call(b, key, Method::POST, "/v2/models/churn/infer", oip).await;
    assert_eq!(
        (r.status, &r.body["outputs"][0]["data"]),
        (StatusCode::OK, &json!([1.5, 7.5])),
        "{r:?}"
    );
    assert_eq!(r.body["outputs"][0]["shape"], json!([2, 1]), "{r:?}");

    // Bad requests: instances and an entity at once, a join key missing.
    let both = json!({"instances": [[1.0, 2.0]], "parameters": {"entity": {"customer_id": "c1"}}});
    let r = call(b, key, Method::POST, "/v1/models/churn:predict", both).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = predict(b, key, json!({"user": "c1"})).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("entity")),
        "{r:?}"
    );
    // The version still takes its inputs directly.
    let direct = json!({"instances": [[1.0, 1.0]]});
    let r = call(b, key, Method::POST, "/v1/models/churn:predict", direct).await;
    assert_eq!(value(&r), 3.5, "{r:?}");

    // A version that defaults missing features: an unknown customer reads
    // the declared default for spend and 0 for orders.
    let r = up(
        "?feature_service=churn_v1&on_missing=default&defaults=%7B%22stats%3Aorders%22%3A4%7D",
        head(json!([[5.0]])),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "the service now has one feature: {r:?}");
    assert_eq!(r.body["features"]["features"], json!(["stats:orders"]));
    // (The other replica reads the registry through a cache of a few seconds.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = predict(b, key, json!({"customer_id": "c9"})).await;
        if r.headers.get("x-tessera-model-version").is_some_and(|v| v == "churn@2") {
            break r;
        }
        assert!(Instant::now() < deadline, "version 2 never served: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((r.status, value(&r)), (StatusCode::OK, 20.5), "{r:?}");
    let r = predict(b, key, json!({"customer_id": "c2"})).await;
    assert_eq!(value(&r), 5.5, "{r:?}");

    // A model that reads no features refuses an entity.
    let r = call(
        a,
        key,
        Method::POST,
        "/v1/models",
        json!({"name": "plain", "task": "regression", "runtime": "linear"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        a.api.upload("/v1/models/plain/versions", key, head(json!([[1.0]]))).await.status,
        StatusCode::CREATED
    );
    let r = call(
        b,
        key,
        Method::POST,
        "/v1/models/plain:predict",
        json!({"parameters": {"entity": {"customer_id": "c1"}}}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("entity")),
        "{r:?}"
    );

    // The prediction record is keyed by the entity too.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let r = b
            .api
            .get(&format!("/v1/events?topic=predictions&entity=prediction_id:{prediction_id}"), key)
            .await;
        if let Some(e) = r.body["data"].as_array().and_then(|d| d.first()) {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no prediction record: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rec["entity"]["customer_id"], "c1", "{rec}");
    assert_eq!(rec["properties"]["entity"], json!({"customer_id": "c1"}), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_read_features_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    scenario(&s, &s, &key).await;
    // Another tenant's service cannot be bound, nor its values read.
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;
    let r = call(
        &s,
        &other,
        Method::POST,
        "/v1/models",
        json!({"name": "churn", "task": "regression", "runtime": "linear"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = s
        .api
        .upload("/v1/models/churn/versions?feature_service=churn_v1", &other, head(json!([[1.0]])))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("unknown feature service"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_read_features_on_two_replicas_over_redis() {
    let Some(common::Pair { a, b, dirs: _dirs, .. }) = common::Pair::start(ADMIN).await else {
        return;
    };
    let (_, key, _) = a.tenant_with_key("acme", "developer").await;
    scenario(&a, &b, &key).await;
}
