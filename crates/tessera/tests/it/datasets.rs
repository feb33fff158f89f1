//! Datasets (L2) through the real binary: the UCI sentiment set uploaded as
//! CSV, as JSON Lines and as Parquet written by pandas, its schema and label
//! distribution read back; malformed files refused by line and column with
//! nothing stored; content types, the plan's size limit, roles; on SQLite
//! and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "datasets-admin-key-0123456789";

async fn upload(
    s: &Server,
    key: &str,
    name: &str,
    content_type: &str,
    body: Vec<u8>,
) -> common::Resp {
    let r = s
        .api
        .http
        .post(format!("{}/v1/datasets?name={name}", s.url))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    common::Resp { status, body: r.json().await.unwrap_or(Value::Null), headers }
}

fn column<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {d}"))
}

async fn datasets(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&backend, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN)).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let rows = common::data::sentiment();
    assert_eq!(rows.len(), 3000);

    // CSV: the schema, the label distribution, the preview.
    let csv = common::data::to_csv(&["text", "label"], &rows);
    let r = upload(&s, &key, "sentiment", "text/csv", csv.clone().into_bytes()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        (&r.body["name"], &r.body["version"], &r.body["rows"]),
        (&json!("sentiment"), &json!(1), &json!(3000))
    );
    assert_eq!(column(&r.body, "text")["dtype"], "string");
    let label = column(&r.body, "label");
    assert_eq!(
        (&label["dtype"], &label["values"]),
        (&json!("int64"), &json!({"0": 1500, "1": 1500})),
        "{label}"
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["format"], "csv");
    let got = s.api.get(&format!("/v1/datasets/{id}"), &key).await;
    assert_eq!(got.body, r.body);
    let preview = s.api.get(&format!("/v1/datasets/{id}/preview"), &key).await;
    assert_eq!(preview.body["columns"], json!(["text", "label"]));
    assert_eq!(preview.body["rows"].as_array().unwrap().len(), 20);
    assert_eq!(preview.body["rows"][0]["text"], rows[0].0.as_str());

    // The same rows as JSON Lines: the name's next version, the same schema.
    let jsonl: String =
        rows.iter().map(|(t, l)| format!("{}\n", json!({"text": t, "label": l}))).collect();
    let r = upload(&s, &key, "sentiment", "application/x-ndjson", jsonl.into_bytes()).await;
    assert_eq!(
        (r.status, &r.body["version"], &r.body["rows"]),
        (StatusCode::CREATED, &json!(2), &json!(3000)),
        "{r:?}"
    );
    assert_eq!(column(&r.body, "label")["values"], json!({"0": 1500, "1": 1500}));

    // Parquet as pandas writes it (Snappy, pyarrow).
    if let Some(py) = tessera_store::conformance::service_url("TESSERA_TEST_PYTHON") {
        let (csv_path, pq_path) = (dir.path().join("s.csv"), dir.path().join("s.parquet"));
        std::fs::write(&csv_path, &csv).unwrap();
        let script = "import sys, pandas as pd; pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2])";
        let out = std::process::Command::new(&py)
            .args(["-c", script, csv_path.to_str().unwrap(), pq_path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&pq_path).unwrap();
        let r = upload(&s, &key, "sentiment-pq", "application/vnd.apache.parquet", bytes).await;
        assert_eq!((r.status, &r.body["rows"]), (StatusCode::CREATED, &json!(3000)), "{r:?}");
        assert_eq!(column(&r.body, "label")["values"], json!({"0": 1500, "1": 1500}), "{r:?}");
        assert_eq!(column(&r.body, "text")["dtype"], "string");
    }

    // A malformed row is named by line, and nothing of the file is stored.
    let before = s.api.get("/v1/datasets", &key).await.body["data"].as_array().unwrap().len();
    let bad = "text,label\n\"fine\",1\n\"also fine\",0\n\"a stray\",1,extra\n";
    let r = upload(&s, &key, "broken", "text/csv", bad.into()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("line 4") && msg.contains("3 fields where the header has 2"), "{msg}");
    let r = upload(
        &s,
        &key,
        "broken",
        "application/x-ndjson",
        b"{\"a\": 1}\n{\"a\": {\"b\": 2}}\n".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("body.a")),
        "{r:?}"
    );
    let r = upload(&s, &key, "empty", "text/csv", b"text,label\n".to_vec()).await;
    assert!(r.body["error"]["message"].as_str().unwrap().contains("no rows"), "{r:?}");
    let r = upload(&s, &key, "x", "application/json", b"[]".to_vec()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r:?}");
    let r = upload(&s, &key, "bad%20name", "text/csv", csv.clone().into_bytes()).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name")),
        "{r:?}"
    );
    // Refused before its body was read: the connection is not reused.
    assert_eq!(r.headers["connection"], "close", "{r:?}");
    let after = s.api.get("/v1/datasets", &key).await.body["data"].as_array().unwrap().len();
    assert_eq!(before, after, "nothing stored from files that failed");

    // The plan bounds an upload; a service key neither uploads nor reads.
    let p = s
        .admin(Method::POST, "/admin/v1/plans", Some(json!({"name": "tiny", "dataset_max_mb": 1})))
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{p:?}");
    let (tiny, tiny_key, _) = s.tenant_on_plan("tiny-co", "tiny", "developer").await;
    let big = csv.repeat(8);
    assert!(big.len() > 1024 * 1024);
    let r = upload(&s, &tiny_key, "big", "text/csv", big.into_bytes()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    let r = upload(&s, &tiny_key, "small", "text/csv", csv.clone().into_bytes()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let (service, _) = s.key_for(&tiny, "service").await;
    let r = upload(&s, &service, "small", "text/csv", csv.into_bytes()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(s.api.get("/v1/datasets", &service).await.status, StatusCode::FORBIDDEN);
    // Another tenant's dataset is not found, its list is its own.
    assert_eq!(
        s.api.get(&format!("/v1/datasets/{id}"), &tiny_key).await.status,
        StatusCode::NOT_FOUND
    );
    let theirs = s.api.get("/v1/datasets", &tiny_key).await;
    assert_eq!(theirs.body["data"].as_array().unwrap().len(), 1, "{theirs:?}");
    let audit = s.admin(Method::GET, &format!("/admin/v1/audit?tenant={tiny}"), None).await;
    assert!(audit.body.to_string().contains("dataset.create"), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_on_sqlite() {
    datasets(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_on_postgres() {
    let Some(pg) = Backend::postgres().await else { return };
    datasets(pg).await;
}

/// A multipart form upload (the file part by its content type or its
/// name), and a schema edit: a number column read as categories, the
/// inferred type kept on record; edits that cannot hold are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_and_schema_edits() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let mut csv = String::from("zip,city,price\n");
    for i in 0..60 {
        csv.push_str(&format!("{},c{},{}.5\n", 94100 + i % 5, i % 3, i));
    }
    let form = |part_headers: &str, bytes: &str| {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\n{part_headers}\r\n\r\n{bytes}\r\n--XyZ--\r\n")
            .into_bytes()
    };
    let ct = "multipart/form-data; boundary=XyZ";
    let by_name =
        form("Content-Disposition: form-data; name=\"upload\"; filename=\"homes.csv\"", &csv);
    let r = upload(&s, &key, "homes", ct, by_name).await;
    assert_eq!((r.status, r.body["rows"].as_u64()), (StatusCode::CREATED, Some(60)), "{r:?}");
    let by_type = form(
        "Content-Disposition: form-data; name=\"file\"; filename=\"data\"\r\nContent-Type: text/csv",
        &csv,
    );
    let r2 = upload(&s, &key, "homes", ct, by_type).await;
    assert_eq!((r2.status, r2.body["version"].as_u64()), (StatusCode::CREATED, Some(2)), "{r2:?}");
    let unknown =
        form("Content-Disposition: form-data; name=\"file\"; filename=\"homes.xls\"", &csv);
    assert_eq!(
        upload(&s, &key, "homes", ct, unknown).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let no_file =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\n".to_vec();
    let r = upload(&s, &key, "homes", ct, no_file).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("body")),
        "{r:?}"
    );
    let broken =
        form("Content-Disposition: form-data; name=\"file\"; filename=\"bad.csv\"", "a,b\n1,2,3\n");
    let r = upload(&s, &key, "homes", ct, broken).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    let id = r2.body["id"].as_str().unwrap().to_owned();
    assert_eq!(column(&r2.body, "zip")["dtype"], "int64");
    let path = format!("/v1/datasets/{id}/schema");
    let e = s
        .api
        .call(Method::PATCH, &path, Some(&key), Some(json!({"columns": {"zip": "string"}})))
        .await;
    assert_eq!(e.status, StatusCode::OK, "{e:?}");
    assert_eq!(
        (&column(&e.body, "zip")["dtype"], &column(&e.body, "zip")["inferred_dtype"]),
        (&json!("string"), &json!("int64"))
    );
    // A job now reads zip as five categories.
    let spec = json!({"dataset": id, "task": "regression", "label": "price", "features": ["zip", "city"], "model": "homes"});
    let j = s.api.call(Method::POST, "/v1/training-jobs", Some(&key), Some(spec)).await;
    assert_eq!(j.status, StatusCode::ACCEPTED, "{j:?}");
    for (body, param) in [
        (json!({"columns": {"city": "float64"}}), "columns.city"),
        (json!({"columns": {"nope": "string"}}), "columns.nope"),
        (json!({"columns": {}}), "columns"),
    ] {
        let r = s.api.call(Method::PATCH, &path, Some(&key), Some(body)).await;
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{r:?}"
        );
    }
    // Back to what was inferred.
    let e = s
        .api
        .call(Method::PATCH, &path, Some(&key), Some(json!({"columns": {"zip": "int64"}})))
        .await;
    assert_eq!(
        (column(&e.body, "zip")["dtype"].as_str(), column(&e.body, "zip").get("inferred_dtype")),
        (Some("int64"), None),
        "{e:?}"
    );
    let other = s
        .api
        .call(
            Method::PATCH,
            "/v1/datasets/ds_nope/schema",
            Some(&key),
            Some(json!({"columns": {"zip": "string"}})),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}
