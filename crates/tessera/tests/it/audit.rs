//! The audit log end to end: entries for every mutation, the verify route and
//! the offline `tessera audit verify`, which both find an edited or deleted row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{BIN, Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn tamper(database_url: &str, sql: &str) {
    if let Some(path) = database_url.strip_prefix("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

fn offline_verify(database_url: &str) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--database-url", database_url])
        .env_remove("TESSERA_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

async fn audit_chain(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&backend, dir.path())).await;
    let (tenant, admin, _) = s.tenant_with_key("acme", "tenant_admin").await;
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/keys",
            Some(&admin),
            Some(json!({"name": "ci", "role": "service"})),
        )
        .await;
    let key_id = r.body["id"].as_str().unwrap().to_owned();
    s.api.call(Method::DELETE, &format!("/v1/keys/{key_id}"), Some(&admin), None).await;
    s.admin(Method::PATCH, &format!("/admin/v1/tenants/{tenant}"), Some(json!({"plan": "pro"})))
        .await;

    let mine = s.api.get("/v1/audit", &admin).await.body;
    let entries = mine["data"].as_array().unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["tenant.update", "key.revoke", "key.create", "key.create", "tenant.create"]
    );
    let revoke = &entries[1];
    assert_eq!(revoke["target"], key_id.as_str());
    assert!(revoke["actor_key_id"].as_str().unwrap().starts_with("key_"));
    assert!(revoke["request_id"].as_str().unwrap().starts_with("req_"));
    for e in entries {
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    }
    let all = s.admin(Method::GET, &format!("/admin/v1/audit?tenant={tenant}&limit=2"), None).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 2);
    let bad = s.admin(Method::GET, "/admin/v1/audit?limit=0", None).await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    let bad = s.admin(Method::GET, "/admin/v1/audit?since=yesterday", None).await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("since"))
    );

    let ok = s.admin(Method::GET, "/admin/v1/audit/verify", None).await;
    assert_eq!(ok.body["ok"], true, "{ok:?}");
    let (passed, out) = offline_verify(&s.database_url);
    assert!(passed, "{out}");
    assert!(out.contains("audit chain ok"), "{out}");

    // Edit one row: both the route and the command find it.
    tamper(&s.database_url, "UPDATE audit_log SET actor_key_id = 'key_innocent' WHERE id = 4")
        .await;
    let broken = s.admin(Method::GET, "/admin/v1/audit/verify", None).await;
    assert_eq!(
        (broken.body["ok"].as_bool(), broken.body["first_broken"]["id"].as_i64()),
        (Some(false), Some(4)),
        "{broken:?}"
    );
    let (passed, out) = offline_verify(&s.database_url);
    assert!(!passed && out.contains("entry 4"), "{out}");

    // Delete the newest row instead: the chain head gives it away.
    tamper(&s.database_url, "UPDATE audit_log SET actor_key_id = NULL WHERE id = 4").await;
    let restored = s.admin(Method::GET, "/admin/v1/audit/verify", None).await;
    let tail = restored.body["checked"].as_i64().unwrap_or(0);
    let last = s.admin(Method::GET, "/admin/v1/audit?limit=1", None).await.body["data"][0]["id"]
        .as_i64()
        .unwrap();
    tamper(&s.database_url, &format!("DELETE FROM audit_log WHERE id = {last}")).await;
    let (passed, out) = offline_verify(&s.database_url);
    assert!(!passed, "deleting the newest entry went unnoticed: {out} (checked {tail})");
}

on_both_backends!(audit_chain);
