//! The admin CLI against a running server: tenants, keys, audit; `--help`
//! everywhere; JSON output; clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{BIN, Backend, Options, Server};
use reqwest::StatusCode;
use serde_json::Value;

fn tessera(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("TESSERA_URL", &s.url)
        .env("TESSERA_KEY", &s.admin_key)
        .env_remove("TESSERA_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = tessera(s, &a);
    assert!(ok, "{args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no json ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;

    let t =
        json(&s, &["tenants", "create", "--name", "acme", "--plan", "pro", "--segment", "retail"]);
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!((t["plan"].as_str(), t["segment"].as_str()), (Some("pro"), Some("retail")));
    let (ok, table, _) = tessera(&s, &["tenants", "list"]);
    assert!(
        ok && table.contains("acme") && table.contains(&id) && table.starts_with("ID"),
        "{table}"
    );
    assert_eq!(json(&s, &["tenants", "get", &id])["name"], "acme");

    let k = json(
        &s,
        &[
            "keys",
            "create",
            "--tenant",
            &id,
            "--name",
            "ci",
            "--role",
            "developer",
            "--scopes",
            r#"{"operations": ["tenant.read"]}"#,
        ],
    );
    let key = k["key"].as_str().unwrap().to_owned();
    let key_id = k["id"].as_str().unwrap().to_owned();
    assert_eq!(s.api.get("/v1/me", &key).await.status, StatusCode::OK);
    let (ok, out, _) =
        tessera(&s, &["keys", "create", "--tenant", &id, "--name", "second", "--role", "viewer"]);
    assert!(ok && out.contains("shown once"), "{out}");
    let listed = json(&s, &["keys", "list", "--tenant", &id]);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&key), "keys list shows a secret");
    let (ok, out, _) = tessera(&s, &["keys", "revoke", "--tenant", &id, &key_id]);
    assert!(ok && out.contains(&key_id), "{out}");
    assert_eq!(s.api.get("/v1/me", &key).await.status, StatusCode::UNAUTHORIZED);

    let platform = json(&s, &["keys", "list"]);
    assert_eq!(platform["data"][0]["role"], "platform_admin");
    let (ok, out, err) = tessera(&s, &["audit", "verify"]);
    assert!(ok && out.contains("audit chain ok"), "{out}{err}");
    let audit = json(&s, &["audit", "list", "--tenant", &id, "--limit", "2"]);
    assert_eq!(audit["data"][0]["action"], "key.revoke");

    let (ok, _, _) = tessera(&s, &["tenants", "delete", &id]);
    assert!(ok);
    let (ok, _, err) = tessera(&s, &["tenants", "get", &id]);
    assert!(!ok && err.contains("404") && err.contains("not_found"), "{err}");

    // Errors are one clear line; a bad key says so.
    let out = std::process::Command::new(BIN)
        .args(["tenants", "list", "--url", &s.url, "--key", "tsk_wrong"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("invalid_api_key"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["tenants", "list", "--url", "http://127.0.0.1:9", "--key", "k"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["tenants"],
        &["tenants", "create"],
        &["tenants", "list"],
        &["tenants", "get"],
        &["tenants", "delete"],
        &["keys"],
        &["keys", "create"],
        &["keys", "list"],
        &["keys", "revoke"],
        &["audit"],
        &["audit", "verify"],
        &["audit", "list"],
        &["openapi"],
        &["models"],
        &["models", "fetch"],
        &["loadtest"],
    ];
    for c in commands {
        let out = std::process::Command::new(BIN).args(*c).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Usage:"), "{c:?} --help: {text}");
    }
}

#[test]
fn openapi_command_prints_the_document() {
    let out = std::process::Command::new(BIN).arg("openapi").output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["paths"]["/v1/me"]["get"].is_object());
}
