//! Tenants, plans, keys and roles over HTTP against the real binary, on
//! SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn start(backend: &Backend) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Options::new(backend, dir.path())).await;
    (server, dir)
}

async fn tenants_and_plans(backend: Backend) {
    let (s, _dir) = start(&backend).await;
    let plans = s.admin(Method::GET, "/admin/v1/plans", None).await;
    let names: Vec<_> = plans.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["free", "pro"]);

    let created = s
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "acme", "segment": "retail"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["plan"], "free");
    assert_eq!(created.body["segment"], "retail");
    let id = created.body["id"].as_str().unwrap();
    assert!(id.starts_with("ten_"));

    let dup = s.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "acme"}))).await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "conflict"));
    let bad = s
        .admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "x", "plan": "gold"})))
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plan"))
    );
    let bad = s.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "has space"}))).await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let bad = s.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": 7}))).await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    let bad = s
        .admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "y", "colour": "red"})))
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("colour"))
    );

    // Move to another plan, clear the segment.
    let moved = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(json!({"plan": "pro", "segment": null})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
    assert_eq!((moved.body["plan"].as_str(), moved.body["segment"].is_null()), (Some("pro"), true));
    let got = s.admin(Method::GET, &format!("/admin/v1/tenants/{id}"), None).await;
    assert_eq!(got.body, moved.body);

    // Plans: create, patch (null = unlimited), validation.
    let plan = json!({"name": "team", "rpm": 100, "tpm": 1000, "concurrency": 8, "monthly_budget_usd": 50.0, "models": ["all-minilm-l6-v2"], "events_per_minute": 600, "dataset_max_mb": 64, "training_jobs": 2});
    let p = s.admin(Method::POST, "/admin/v1/plans", Some(plan.clone())).await;
    assert_eq!(p.status, StatusCode::CREATED, "{p:?}");
    assert_eq!(p.body, plan);
    let p = s
        .admin(Method::PATCH, "/admin/v1/plans/team", Some(json!({"rpm": null, "models": null})))
        .await;
    assert_eq!((p.body["rpm"].is_null(), p.body["tpm"].as_u64()), (true, Some(1000)));
    let p = s
        .admin(
            Method::POST,
            "/admin/v1/plans",
            Some(json!({"name": "neg", "monthly_budget_usd": -1})),
        )
        .await;
    assert_eq!(p.body["error"]["param"], "monthly_budget_usd");
    assert_eq!(
        s.admin(Method::GET, "/admin/v1/plans/nope", None).await.status,
        StatusCode::NOT_FOUND
    );
    let moved = s
        .admin(Method::PATCH, &format!("/admin/v1/tenants/{id}"), Some(json!({"plan": "team"})))
        .await;
    assert_eq!(moved.body["plan"], "team");

    let list = s.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let del = s.admin(Method::DELETE, &format!("/admin/v1/tenants/{id}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = s.admin(Method::GET, &format!("/admin/v1/tenants/{id}"), None).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "not_found"));
    let malformed = s.admin(Method::GET, "/admin/v1/tenants/not-an-id", None).await;
    assert_eq!(malformed.status, StatusCode::NOT_FOUND);
}

async fn key_lifecycle(backend: Backend) {
    let (s, _dir) = start(&backend).await;
    let (tenant, key, key_id) = s.tenant_with_key("acme", "developer").await;
    assert!(key.starts_with("tsk_"));
    let me = s.api.get("/v1/me", &key).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.body["tenant"]["id"], tenant.as_str());
    assert_eq!(me.body["plan"]["name"], "unlimited");
    assert_eq!(me.body["key"]["id"], key_id.as_str());
    assert_eq!(me.body["key"]["role"], "developer");

    // Listing never shows secrets or hashes.
    let listed = s.admin(Method::GET, &format!("/admin/v1/tenants/{tenant}/keys"), None).await;
    let text = listed.body.to_string();
    assert!(!text.contains(&key[key.len() - 32..]), "secret leaked: {text}");
    assert!(
        listed.body["data"][0].get("key").is_none() && listed.body["data"][0].get("hash").is_none()
    );
    assert_eq!(listed.body["data"][0]["prefix"], key[..16].to_owned());

    // Wrong, malformed and missing keys are 401 invalid_api_key.
    let mut wrong = key.clone();
    wrong.replace_range(key.len() - 4.., "AAAA");
    for k in [wrong.as_str(), "tsk_nope", "garbage"] {
        let r = s.api.get("/v1/me", k).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_api_key"), "{k}");
    }
    let r = s.api.call(Method::GET, "/v1/me", None, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_api_key"));

    // Revocation takes effect at once on this replica.
    let rev =
        s.admin(Method::DELETE, &format!("/admin/v1/tenants/{tenant}/keys/{key_id}"), None).await;
    assert_eq!(rev.status, StatusCode::OK, "{rev:?}");
    assert!(rev.body["revoked_at"].is_string());
    let r = s.api.get("/v1/me", &key).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_api_key"));

    // Expiry is enforced.
    let soon = time_in(1_500);
    let k = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            Some(json!({"name": "short", "role": "viewer", "expires_at": soon})),
        )
        .await;
    assert_eq!(k.status, StatusCode::CREATED, "{k:?}");
    let short = k.body["key"].as_str().unwrap();
    assert_eq!(s.api.get("/v1/me", short).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let r = s.api.get("/v1/me", short).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("expired"));
    let past = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            Some(json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (past.status, past.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("expires_at"))
    );

    // Deleting the tenant stops its keys at once.
    let (key2, _) = s.key_for(&tenant, "viewer").await;
    assert_eq!(s.api.get("/v1/me", &key2).await.status, StatusCode::OK);
    s.admin(Method::DELETE, &format!("/admin/v1/tenants/{tenant}"), None).await;
    assert_eq!(s.api.get("/v1/me", &key2).await.status, StatusCode::UNAUTHORIZED);
}

fn time_in(ms: i64) -> String {
    tessera_core::time::Timestamp::now().plus_millis(ms).to_rfc3339()
}

/// The permission table, row by row where it matters.
async fn roles(backend: Backend) {
    let (s, _dir) = start(&backend).await;
    let (tenant, admin, _) = s.tenant_with_key("acme", "tenant_admin").await;
    let (viewer, _) = s.key_for(&tenant, "viewer").await;
    let (service, _) = s.key_for(&tenant, "service").await;
    let (developer, _) = s.key_for(&tenant, "developer").await;
    let new_key = |role: &str| json!({"name": "n", "role": role});
    let post = |key: String, body: serde_json::Value| {
        let api = s.api.clone();
        async move { api.call(Method::POST, "/v1/keys", Some(&key), Some(body)).await }
    };

    // tenant_admin manages keys in its tenant, up to its own role.
    let r = post(admin.clone(), new_key("developer")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.body["tenant_id"], tenant.as_str());
    assert_eq!(post(admin.clone(), new_key("tenant_admin")).await.status, StatusCode::CREATED);
    let r = post(admin.clone(), new_key("platform_admin")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(s.api.get("/v1/keys", &admin).await.status, StatusCode::OK);
    assert_eq!(s.api.get("/v1/audit", &admin).await.status, StatusCode::OK);

    // viewer: reads itself and the audit log, cannot create or list keys.
    for (key, role) in [(&viewer, "viewer"), (&service, "service"), (&developer, "developer")] {
        let r = post(key.clone(), new_key("viewer")).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "permission_denied"),
            "{role} created a key"
        );
        let r = s.api.get("/v1/keys", key).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} listed keys");
        assert_eq!(s.api.get("/v1/me", key).await.status, StatusCode::OK, "{role} reads itself");
        let r = s.api.get("/admin/v1/tenants", key).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role} reached the admin api");
    }
    assert_eq!(s.api.get("/v1/audit", &viewer).await.status, StatusCode::OK);
    assert_eq!(s.api.get("/v1/audit", &service).await.status, StatusCode::FORBIDDEN);
    assert_eq!(s.api.get("/admin/v1/tenants", &admin).await.status, StatusCode::FORBIDDEN);

    // Scopes narrow a role, and a key cannot mint a broader one.
    let scoped = post(admin.clone(), json!({"name": "s", "role": "tenant_admin", "scopes": {"operations": ["tenant.read", "keys.write"]}})).await;
    assert_eq!(scoped.status, StatusCode::CREATED, "{scoped:?}");
    let scoped = scoped.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        s.api.get("/v1/keys", &scoped).await.status,
        StatusCode::FORBIDDEN,
        "keys.read not in scope"
    );
    let broader = post(
        scoped.clone(),
        json!({"name": "b", "role": "viewer", "scopes": {"operations": ["audit.read"]}}),
    )
    .await;
    assert_eq!(broader.status, StatusCode::FORBIDDEN, "{broader:?}");
    let inherited = post(scoped.clone(), new_key("viewer")).await;
    assert_eq!(inherited.status, StatusCode::CREATED);
    assert_eq!(inherited.body["scopes"]["operations"], json!(["tenant.read", "keys.write"]));
    let bad_scope = post(
        admin.clone(),
        json!({"name": "b", "role": "viewer", "scopes": {"operations": ["fly"]}}),
    )
    .await;
    assert_eq!(bad_scope.status, StatusCode::BAD_REQUEST);

    // The platform admin has no tenant: /v1 tenant routes are refused, not guessed.
    let r = s.api.get("/v1/me", &s.admin_key).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Platform keys must be platform_admin; tenant keys never are.
    let r = s.admin(Method::POST, "/admin/v1/keys", Some(new_key("viewer"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.admin(Method::POST, "/admin/v1/keys", Some(new_key("platform_admin"))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let second_admin = r.body["key"].as_str().unwrap();
    assert_eq!(s.api.get("/admin/v1/tenants", second_admin).await.status, StatusCode::OK);
    let r = s
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{tenant}/keys"),
            Some(new_key("platform_admin")),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("role"))
    );
}

on_both_backends!(tenants_and_plans, key_lifecycle, roles);
