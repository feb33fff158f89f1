//! Tenant isolation (T4, R1): walks every route the OpenAPI document lists
//! with tenant A's admin key and tenant B's ids. Admin routes answer 403,
//! tenant routes with another tenant's ids answer 404, list routes show none
//! of B's data, and B is unchanged afterwards. New routes are walked
//! automatically because the walk reads the server's own OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The routes the server itself lets through without a credential.
const OPEN: &[&str] = tessera_gateway::auth::OPEN_ROUTES;

/// Tenant B's objects, named in the paths the walk fills in.
struct Theirs<'a> {
    tenant: &'a str,
    key: &'a str,
    model: &'a str,
    dataset: &'a str,
    job: &'a str,
    rollout: &'a str,
    alert: &'a str,
}

fn fill(path: &str, b: &Theirs<'_>) -> String {
    let (b_tenant, b_key, b_model) = (b.tenant, b.key, b.model);
    let segs: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        if seg.starts_with('{') {
            let prev = if i > 0 { segs[i - 1] } else { "" };
            out.push(match prev {
                "tenants" => b_tenant,
                "keys" => b_key,
                "plans" => "free",
                "models" if path.starts_with("/admin/") => "mdl_notmine",
                "models" => b_model,
                "deployments" if path.starts_with("/admin/") => "mdl_notmine",
                "deployments" => b_model,
                "event-types" => "b-private-type",
                "features" => "views",
                "datasets" => b.dataset,
                "training-jobs" => b.job,
                "rollouts" => b.rollout,
                "alerts" if path.starts_with("/admin/") => "alr_notmine",
                "alerts" => b.alert,
                "aliases" => "champion",
                "versions" => "1",
                "{kind}" | "views" => "b_private",
                _ => b_tenant,
            });
        } else {
            out.push(seg);
        }
    }
    out.join("/")
}

fn body_for(method: &Method, path: &str) -> Option<Value> {
    if *method == Method::GET || *method == Method::DELETE {
        return None;
    }
    Some(if path.ends_with("/keys") {
        json!({"name": "intruder", "role": "viewer"})
    } else {
        json!({"name": "intruder"})
    })
}

/// What a streaming route sends in its first second (it must answer 200).
async fn first_second(s: &Server, path: &str, key: &str) -> String {
    let mut r = s.api.http.get(format!("{}{path}", s.url)).bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, r.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

async fn cross_tenant_walk(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&backend, dir.path())).await;
    let (_a, a_key, _) = s.tenant_with_key("tenant-a", "tenant_admin").await;
    let (b, b_key, b_key_id) = s.tenant_with_key("tenant-b", "tenant_admin").await;
    let m = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&b_key),
            Some(json!({"name": "b-private-model", "task": "custom", "runtime": "onnx"})),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{m:?}");
    let b_model_id = m.body["id"].as_str().unwrap().to_owned();
    // B's events name B's tenant id, so a leak of any of them shows.
    let ev = s
        .api
        .call(
            Method::POST,
            "/v1/events",
            Some(&b_key),
            Some(json!({"events": [{"type": "secret", "entity": {"owner": b}, "properties": {"model": b_model_id}}]})),
        )
        .await;
    assert_eq!(ev.status, StatusCode::ACCEPTED, "{ev:?}");
    let b_schema = json!({"schema": {"type": "object", "description": b}});
    let et = s
        .api
        .call(Method::PUT, "/v1/event-types/b-private-type", Some(&b_key), Some(b_schema.clone()))
        .await;
    assert_eq!(et.status, StatusCode::OK, "{et:?}");
    // B's feature view, with a value naming B's tenant id.
    for (path, body) in [
        ("/v1/features/entities/b_owner", json!({"join_keys": ["owner"]})),
        (
            "/v1/features/views/b_private",
            json!({"entities": ["b_owner"], "source": {"push": {}},
            "schema": [{"name": "secret", "dtype": "string"}]}),
        ),
    ] {
        let r = s.api.call(Method::PUT, path, Some(&b_key), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    }
    let push = json!({"push_source_name": "b_private", "df": {"owner": [b], "event_timestamp": ["2026-01-01T00:00:00Z"], "secret": [b]}});
    let r = s.api.call(Method::POST, "/v1/features/push", Some(&b_key), Some(push)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // B's dataset, its rows naming B's tenant id.
    let ds = s
        .api
        .http
        .post(format!("{}/v1/datasets?name=b-private-data", s.url))
        .bearer_auth(&b_key)
        .header("content-type", "text/csv")
        .body(format!(
            "owner,secret,x,y\n{}",
            (0..60).map(|i| format!("{b},{b},{i},{}\n", 2 * i)).collect::<String>()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ds.status(), StatusCode::CREATED);
    let b_dataset = ds.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // B's training job (numbers: it runs at once, and makes B's model).
    let job = json!({"dataset": b_dataset, "task": "regression", "label": "y", "features": ["x"], "model": "b-job-model"});
    let job = s.api.call(Method::POST, "/v1/training-jobs", Some(&b_key), Some(job)).await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{job:?}");
    let b_job = job.body["id"].as_str().unwrap().to_owned();
    // B's rollout of a second version of that model.
    let done = |id: String| {
        let (s, b_key) = (&s, &b_key);
        async move {
            for _ in 0..600 {
                let j = s.api.get(&format!("/v1/training-jobs/{id}"), b_key).await.body;
                if j["status"] == "succeeded" {
                    return;
                }
                assert!(j["status"] != "failed", "{j}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("B's training job {id} did not finish");
        }
    };
    done(b_job.clone()).await;
    let again = json!({"dataset": b_dataset, "task": "regression", "label": "y", "features": ["x"], "model": "b-job-model"});
    let again = s.api.call(Method::POST, "/v1/training-jobs", Some(&b_key), Some(again)).await;
    done(again.body["id"].as_str().unwrap().to_owned()).await;
    let rollout =
        json!({"model": "b-job-model", "candidate": 2, "steps": [50, 100], "interval": "1h"});
    let rollout = s.api.call(Method::POST, "/v1/rollouts", Some(&b_key), Some(rollout)).await;
    assert_eq!(rollout.status, StatusCode::CREATED, "{rollout:?}");
    let b_rollout = rollout.body["id"].as_str().unwrap().to_owned();
    // B's alert rule.
    let rule = json!({"name": "b-budget", "metric": "budget_used", "op": ">=", "threshold": 0.5, "severity": "info"});
    let rule = s.api.call(Method::POST, "/v1/alerts", Some(&b_key), Some(rule)).await;
    assert_eq!(rule.status, StatusCode::CREATED, "{rule:?}");
    let b_alert = rule.body["id"].as_str().unwrap().to_owned();
    let b_before = s.api.get("/v1/me", &b_key).await.body;

    let spec = s.api.get("/openapi.json", &a_key).await.body;
    let mut walked = 0;
    let mut walked_tenant_params = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if OPEN.contains(&path.as_str()) {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let theirs = Theirs {
                tenant: &b,
                key: &b_key_id,
                model: "b-private-model",
                dataset: &b_dataset,
                job: &b_job,
                rollout: &b_rollout,
                alert: &b_alert,
            };
            let url = fill(path, &theirs);
            if path.ends_with("/stream") {
                // A tail stays open: read what it sends in its first second.
                let text = first_second(&s, &format!("{url}?from=1"), &a_key).await;
                assert!(!text.contains(&b) && !text.contains(&b_model_id), "{url} leaked: {text}");
                walked += 1;
                continue;
            }
            let r = s.api.call(m.clone(), &url, Some(&a_key), body_for(&m, path)).await;
            walked += 1;
            let text = r.body.to_string();
            if r.status == StatusCode::NOT_FOUND {
                // A 404 may echo the name that was asked for, and nothing else.
                let code = r
                    .body
                    .pointer("/error/code")
                    .or_else(|| r.body.get("code"))
                    .and_then(Value::as_str);
                assert_eq!(code, Some("not_found"), "{m} {url}: {text}");
                assert!(!text.contains(&b) && !text.contains(&b_model_id), "{m} {url}: {text}");
            } else {
                assert!(
                    !text.contains(&b) && !text.contains(&b_key_id) && !text.contains(&b_model_id),
                    "{m} {url} leaked tenant B's data: {text}"
                );
            }
            assert!(r.status.as_u16() < 500, "{m} {url}: {r:?}");
            if path.starts_with("/admin/") {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {url} let a tenant key in: {r:?}");
            } else if path == "/v1/features/{kind}" {
                // A's own (empty) list of views.
                assert_eq!(r.status, StatusCode::OK, "{m} {url}: {r:?}");
            } else if path.starts_with("/v1/features/") && m == Method::PUT {
                // A's own view of that name: the walk's body is refused.
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {url}: {r:?}");
            } else if path.starts_with("/v1/event-types/") && m == Method::PUT {
                // A PUT names A's own event type: the walk's body is refused,
                // and B's type of that name stays as it was (checked below).
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{m} {url}: {r:?}");
            } else if path.contains('{') {
                walked_tenant_params += 1;
                assert_eq!(
                    r.status,
                    StatusCode::NOT_FOUND,
                    "{m} {url} must not find B's object: {r:?}"
                );
            } else {
                assert!(
                    r.status.is_success() || r.status == StatusCode::BAD_REQUEST,
                    "{m} {url}: {r:?}"
                );
            }
        }
    }
    assert!(walked >= 20, "the walk covered only {walked} routes");
    assert!(walked_tenant_params >= 1, "no tenant route with ids was walked");

    // B is untouched: its key works, its tenant and key list are as before.
    let b_after = s.api.get("/v1/me", &b_key).await;
    assert_eq!(b_after.status, StatusCode::OK);
    assert_eq!(b_after.body, b_before);
    let keys = s.api.get("/v1/keys", &b_key).await.body;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    assert!(keys["data"][0]["revoked_at"].is_null());
    let models = s.api.get("/v1/models/b-private-model/versions", &b_key).await;
    assert_eq!(
        (models.status, models.body["data"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let r = s.api.get(&format!("/v1/rollouts/{b_rollout}"), &b_key).await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("running")), "{r:?}");
    assert_eq!(r.body["history"].as_array().map(Vec::len), Some(1), "{r:?}");
    let r = s.api.get(&format!("/v1/alerts/{b_alert}"), &b_key).await;
    assert_eq!(
        (r.status, r.body["spec"]["name"].as_str()),
        (StatusCode::OK, Some("b-budget")),
        "{r:?}"
    );
    let et = s.api.get("/v1/event-types/b-private-type", &b_key).await;
    assert_eq!((et.status, &et.body["schema"]), (StatusCode::OK, &b_schema["schema"]), "{et:?}");
    // Guessing B's view name reaches nothing, and B's value is as it was.
    let guess = json!({"entities": {"owner": [b]}, "features": ["b_private:secret"]});
    let r =
        s.api.call(Method::POST, "/v1/features/online", Some(&a_key), Some(guess.clone())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(!r.body.to_string().contains(&b), "{r:?}");
    let r = s.api.call(Method::POST, "/v1/features/online", Some(&b_key), Some(guess)).await;
    assert_eq!(r.body["results"][1]["values"], json!([b]), "{r:?}");
    let audit = s.api.get("/v1/audit", &b_key).await.body;
    for e in audit["data"].as_array().unwrap() {
        assert_eq!(e["tenant_id"], b.as_str(), "B's audit shows a foreign entry: {e}");
    }
}

/// The same walk with B's key against A's ids would be symmetric; instead
/// check that a tenant's own lists never include another tenant's rows.
async fn lists_are_tenant_scoped(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&backend, dir.path())).await;
    let (a, a_key, _) = s.tenant_with_key("tenant-a", "tenant_admin").await;
    let (b, b_key, _) = s.tenant_with_key("tenant-b", "tenant_admin").await;
    for _ in 0..3 {
        s.key_for(&b, "viewer").await;
    }
    let a_keys = s.api.get("/v1/keys", &a_key).await.body;
    assert_eq!(a_keys["data"].as_array().unwrap().len(), 1);
    assert!(a_keys["data"].as_array().unwrap().iter().all(|k| k["tenant_id"] == a.as_str()));
    let b_keys = s.api.get("/v1/keys", &b_key).await.body;
    assert_eq!(b_keys["data"].as_array().unwrap().len(), 4);
    let a_audit = s.api.get("/v1/audit", &a_key).await.body;
    assert!(!a_audit["data"].as_array().unwrap().is_empty());
    assert!(a_audit["data"].as_array().unwrap().iter().all(|e| e["tenant_id"] == a.as_str()));
    let smuggled = s.api.get(&format!("/v1/audit?tenant={b}"), &a_key).await;
    assert_eq!(smuggled.status, StatusCode::BAD_REQUEST);
}

on_both_backends!(cross_tenant_walk, lists_are_tenant_scoped);
