//! R3 on PostgreSQL: the database going away answers 503 (never 401), keys
//! verified recently keep working, and service recovers by itself. Also:
//! a revocation on one replica reaches another within 5 seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to PostgreSQL that can be cut (dropping every open connection)
/// and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cut_rx) = watch::channel(0u64);
        let up2 = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let target = target.clone();
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update(); // only cuts after this connection opened count
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

/// `host:port` of a postgres URL, and the URL with them replaced by `new`.
fn split_host(url: &str, new: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth, rest) =
        rest.rsplit_once('@').map(|(a, r)| (format!("{a}@"), r)).unwrap_or((String::new(), rest));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = &rest[..end];
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:5432") };
    (host, format!("{scheme}://{auth}{new}{}", &rest[end..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_and_heals() {
    let Some(Backend::Postgres(url)) = Backend::postgres().await else { return };
    let (target, _) = split_host(&url, "");
    let proxy = Proxy::start(target).await;
    let (_, proxied) = split_host(&url, &format!("127.0.0.1:{}", proxy.port));
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(&Backend::Postgres(proxied), dir.path())
        .env("TESSERA__AUTH__KEY_CACHE_TTL_MS", "300");
    let s = Server::start(opts).await;
    let (tenant, used, _) = s.tenant_with_key("acme", "tenant_admin").await;
    let (unused, _) = s.key_for(&tenant, "developer").await;
    assert_eq!(s.api.get("/v1/me", &used).await.status, StatusCode::OK);

    proxy.set_up(false);
    tokio::time::sleep(Duration::from_millis(400)).await; // past the cache TTL
    let r = s.api.get("/v1/me", &unused).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
        "{r:?}"
    );
    assert!(r.headers.contains_key("retry-after"));
    // Degraded, as documented: a recently verified key and its tenant are served from cache...
    let r = s.api.get("/v1/me", &used).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // ...and a read that needs the database is a 503.
    let r = s.api.get("/v1/keys", &used).await;
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a known key is authenticated, then the read fails: {r:?}"
    );
    let r = s.api.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.api.call(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    let r =
        s.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "during-outage"}))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);

    proxy.set_up(true);
    let start = Instant::now();
    loop {
        let r = s.api.get("/v1/me", &unused).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "did not recover: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.api.call(Method::GET, "/readyz", None, None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_another_replica_within_five_seconds() {
    let Some(backend) = Backend::postgres().await else { return };
    let admin = "replicated-admin-key-for-tests";
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r1 = Server::start(Options::new(&backend, d1.path()).env("TESSERA_ADMIN_KEY", admin)).await;
    let r2 = Server::start(Options::new(&backend, d2.path()).env("TESSERA_ADMIN_KEY", admin)).await;
    let (tenant, key, key_id) = r1.tenant_with_key("acme", "developer").await;
    assert_eq!(r1.api.get("/v1/me", &key).await.status, StatusCode::OK);
    assert_eq!(r2.api.get("/v1/me", &key).await.status, StatusCode::OK);
    let rev =
        r1.admin(Method::DELETE, &format!("/admin/v1/tenants/{tenant}/keys/{key_id}"), None).await;
    assert_eq!(rev.status, StatusCode::OK);
    let start = Instant::now();
    assert_eq!(
        r1.api.get("/v1/me", &key).await.status,
        StatusCode::UNAUTHORIZED,
        "revoking replica rejects at once"
    );
    loop {
        if r2.api.get("/v1/me", &key).await.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "replica 2 still accepts a revoked key after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL away during serving: inference goes on from the per-replica
/// caches, usage records wait in the metering queue and are all written once
/// the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_goes_on_through_a_database_outage_and_no_usage_is_lost() {
    let Some(Backend::Postgres(url)) = Backend::postgres().await else { return };
    let up = tessera_standin::Standin::start(Default::default()).await.unwrap();
    let (target, _) = split_host(&url, "");
    let proxy = Proxy::start(target).await;
    let (_, proxied) = split_host(&url, &format!("127.0.0.1:{}", proxy.port));
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(&Backend::Postgres(proxied), dir.path())
        .env("TESSERA__AUTH__KEY_CACHE_TTL_MS", "300");
    let s = Server::start(opts).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let r = s
        .api
        .call(Method::POST, "/v1/models", Some(&key), Some(json!({"name": "llm", "task": "chat",
            "runtime": "openai-compatible", "config": {"base_url": up.url, "upstream_model": "gpt"}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let hello = json!({"model": "llm", "messages": [{"role": "user", "content": "hi"}]});
    let mut ids = Vec::new();
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());

    proxy.set_up(false);
    tokio::time::sleep(Duration::from_millis(400)).await; // every cache entry is past its TTL
    for i in 0..10 {
        let r =
            s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "request {i} with the database away: {r:?}");
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // a flush fails meanwhile
    proxy.set_up(true);

    let start = Instant::now();
    loop {
        let r = s.api.get("/v1/usage/records", &key).await;
        let got: Vec<String> = r.body["data"]
            .as_array()
            .map(|a| a.iter().map(|x| x["request_id"].as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default();
        if ids.iter().all(|id| got.contains(id)) {
            assert_eq!(got.len(), ids.len(), "each record once");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "usage lost: {got:?} vs {ids:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        !m.contains("tessera_usage_write_errors_total 0"),
        "a write failed and was retried: {m}"
    );
}
