//! R2: kill -9 while keys are being created loses no acknowledged key. Every
//! key whose creation got a 201 before the kill must work after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, Options, Server};
use reqwest::StatusCode;
use serde_json::json;

async fn kill9_loses_no_acknowledged_key(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&backend, dir.path())).await;
    let (tenant, _, _) = s.tenant_with_key("acme", "viewer").await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4 {
        let api = s.api.clone();
        let admin = s.admin_key.clone();
        let acked = acked.clone();
        let path = format!("/admin/v1/tenants/{tenant}/keys");
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!({"name": format!("w{w}-{i}"), "role": "viewer"});
                let req =
                    api.http.post(format!("{}{path}", api.url)).bearer_auth(&admin).json(&body);
                let Ok(resp) = req.send().await else { break };
                if resp.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else { break };
                acked.lock().unwrap().push(v["key"].as_str().unwrap().to_owned());
            }
        }));
    }
    // Let the writers get going, then pull the plug mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 150 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.kill9().await;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150, "only {} keys were created before the kill", acked.len());

    let s = Server::start(Options::new(&backend, dir.path())).await;
    for key in &acked {
        let r = s.api.get("/v1/me", key).await;
        assert_eq!(r.status, StatusCode::OK, "acknowledged key lost after kill -9: {r:?}");
    }
    let verify = s.admin(reqwest::Method::GET, "/admin/v1/audit/verify", None).await;
    assert_eq!(verify.body["ok"], true, "audit chain after crash: {verify:?}");
}

on_both_backends!(kill9_loses_no_acknowledged_key);
