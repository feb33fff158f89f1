//! The OpenAPI document against the real server: a validating parser
//! (`openapi-spec-validator`) reads it, then an OpenAPI-driven fuzzer
//! (schemathesis: examples, coverage, fuzzing and stateful phases over the
//! document's links, every check but one) drives the server as the platform
//! admin and as a tenant key. Any server error or check failure fails the
//! test. `positive_data_acceptance` is left off: it expects every
//! schema-valid request to succeed, and some are refused for reasons a
//! schema cannot state (see the README, "API checks").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::path::Path;

use crate::common;

use common::{Backend, Options, Server};

fn python() -> Option<String> {
    tessera_store::conformance::service_url("TESSERA_TEST_PYTHON")
}

/// Runs `program` in `cwd` (schemathesis keeps a cache in its working directory).
fn run(program: &str, args: &[&str], cwd: &std::path::Path) -> (bool, String) {
    let out =
        std::process::Command::new(program).args(args).current_dir(cwd).output().unwrap_or_else(
            |e| panic!("cannot run {program}: {e}; .ci/run installs it in the test venv"),
        );
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Starts a server, validates its document, and fuzzes it with the
/// platform admin's key (`as_tenant` false) or a tenant admin's.
async fn fuzz(as_tenant: bool) {
    let Some(py) = python() else { return };
    let bin = Path::new(&py).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let key = match as_tenant {
        true => s.tenant_with_key("fuzz", "tenant_admin").await.1,
        false => s.admin_key.clone(),
    };
    let doc = s.api.http.get(format!("{}/openapi.json", s.url)).send().await.unwrap();
    let doc = doc.text().await.unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, doc).unwrap();
    let doc_path = doc_path.display().to_string();

    let (ok, text) = run(&py, &["-m", "openapi_spec_validator", &doc_path], dir.path());
    assert!(ok, "the OpenAPI document does not validate:\n{text}");

    let schemathesis = bin.join("schemathesis").display().to_string();
    let url = s.url.clone();
    let cwd = dir.path().to_owned();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        let auth = format!("Authorization: Bearer {key}");
        run(
            &schemathesis,
            &[
                "--no-color",
                "run",
                &doc_path,
                "--url",
                &url,
                "-H",
                &auth,
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                // A tail never ends; it has tests of its own (events.rs).
                "--exclude-path",
                "/v1/events/stream",
                "--max-examples",
                "20",
                "--seed",
                "1",
                "--workers",
                "1",
            ],
            &cwd,
        )
    })
    .await
    .unwrap();
    let who = if as_tenant { "a tenant key" } else { "the platform admin" };
    assert!(ok, "schemathesis as {who} found problems:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_the_platform_admin() {
    fuzz(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_tenant_key() {
    fuzz(true).await;
}
