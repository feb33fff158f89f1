//! Real clients, unchanged, against the running binary: the official `openai`
//! Python package. The Python comes from `TESSERA_TEST_PYTHON` (set by
//! `scripts/test` when the test venv exists); without it the test skips, and
//! with `TESSERA_REQUIRE_SERVICES=1` it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};

fn python() -> Option<String> {
    tessera_store::conformance::service_url("TESSERA_TEST_PYTHON")
}

fn run_script(python: &str, script: &str, args: &[&str]) {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python).arg(&path).args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_works_unchanged() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let py2 = py.clone();
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run_script(&py2, "openai_embeddings.py", &[&url, &key]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tritonclient_python_package_works_unchanged() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    // Wait for the model so the readiness checks see it loaded.
    let body = serde_json::json!({"model": "all-minilm-l6-v2", "input": "warm"});
    let warm = s.api.call(reqwest::Method::POST, "/v1/embeddings", Some(&key), Some(body)).await;
    assert_eq!(warm.status, reqwest::StatusCode::OK, "{warm:?}");
    let host = s.url.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || run_script(&py, "triton_client.py", &[&host, &key]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_streams_chat_unchanged() {
    let Some(py) = python() else { return };
    let up = tessera_standin::Standin::start(tessera_standin::Options::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    for (name, upstream) in
        [("support-llm", "gpt-standin"), ("cut-llm", "cut-4"), ("limited-llm", "ratelimit")]
    {
        let body = serde_json::json!({"name": name, "task": "chat", "runtime": "openai-compatible",
            "config": {"base_url": up.url, "upstream_model": upstream, "max_retries": 0}});
        let r = s.api.call(reqwest::Method::POST, "/v1/models", Some(&key), Some(body)).await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED, "{r:?}");
    }
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run_script(&py, "openai_chat.py", &[&url, &key]))
        .await
        .unwrap();
}
