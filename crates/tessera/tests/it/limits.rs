//! Limits (G6): exact under 64 concurrent clients, in process and through
//! Redis across two replicas; tokens reserved and settled; concurrency
//! released when a stream ends; key and model limits; Redis stopped and
//! started again under load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Api, Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_standin::Standin;

/// The minute-long rate window the wall clock is in now.
fn rate_window() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60
}

/// Rate windows are minutes of the server's wall clock, which this
/// black-box test cannot move (the limiter's own tests move an injected
/// clock). A burst here takes well under a second, so it only waits when a
/// window ends within 3 s (about one run in twenty, for at most 3 s); the
/// caller checks with [`same_window`] that its burst stayed inside.
async fn away_from_a_window_edge() -> u64 {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    if secs % 60 >= 57 {
        tokio::time::sleep(Duration::from_millis((60 - secs % 60) * 1000 + 50)).await;
    }
    rate_window()
}

fn same_window(started: u64) {
    assert_eq!(
        rate_window(),
        started,
        "the burst crossed a rate window edge; it must take under 3 s"
    );
}

async fn setup(s: &Server, up: &Standin, plan: Value) -> String {
    let p = s.admin(Method::POST, "/admin/v1/plans", Some(plan.clone())).await;
    assert!(matches!(p.status.as_u16(), 201 | 409), "{p:?}");
    let (_, key, _) = s.tenant_on_plan("acme", plan["name"].as_str().unwrap(), "developer").await;
    for (name, upstream) in [("llm", "gpt"), ("slow", "slow-600")] {
        let r = s
            .api
            .call(Method::POST, "/v1/models", Some(&key), Some(json!({"name": name, "task": "chat",
                "runtime": "openai-compatible", "config": {"base_url": up.url, "upstream_model": upstream}})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    }
    key
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
}

/// `clients` concurrent clients send `each` requests each, spread over
/// `apis`; returns the count by status.
async fn hammer(
    apis: &[Api],
    key: &str,
    clients: usize,
    each: usize,
) -> std::collections::BTreeMap<u16, usize> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = apis[c % apis.len()].clone();
        let key = key.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..each {
                let r = api
                    .call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm")))
                    .await;
                assert!(matches!(r.status.as_u16(), 200 | 429), "{r:?}");
                if r.status == StatusCode::TOO_MANY_REQUESTS {
                    assert_eq!(r.code(), "rate_limit_exceeded", "{r:?}");
                    assert!(r.headers.contains_key("retry-after"));
                    assert_eq!(r.headers["x-ratelimit-remaining-requests"], "0", "{r:?}");
                }
                out.push(r.status.as_u16());
            }
            out
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        for code in t.await.unwrap() {
            *counts.entry(code).or_insert(0) += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_gets_through_in_process() {
    let up = Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let key = setup(&s, &up, json!({"name": "tight", "rpm": 50})).await;
    let window = away_from_a_window_edge().await;
    let counts = hammer(std::slice::from_ref(&s.api), &key, 64, 3).await;
    same_window(window);
    assert_eq!(counts.get(&200), Some(&50), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&142), "{counts:?}");
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        m.contains("tessera_ratelimit_rejected_total{limit=\"tenant\",dim=\"requests\"} 142"),
        "{m}"
    );
    assert!(m.contains("tessera_limits_global 0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_and_redis_hold_one_limit() {
    let up = Standin::start(Default::default()).await.unwrap();
    let admin = "replica-admin-key-0123456789";
    let Some(common::Pair { a, b, dirs: _dirs, .. }) = common::Pair::start(admin).await else {
        return;
    };
    let key = setup(&a, &up, json!({"name": "shared", "rpm": 60})).await;
    let window = away_from_a_window_edge().await;
    let counts = hammer(&[a.api.clone(), b.api.clone()], &key, 64, 3).await;
    same_window(window);
    assert_eq!(counts.get(&200), Some(&60), "the limit holds across both replicas: {counts:?}");
    let m =
        b.api.http.get(format!("{}/metrics", b.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tessera_limits_global 1"), "{m}");
    assert!(m.contains("tessera_limits_fallback_total 0"), "decided through redis only: {m}");

    // Concurrency across replicas: a stream open on a holds the tenant's one slot on b too.
    let p = a
        .admin(Method::POST, "/admin/v1/plans", Some(json!({"name": "single", "concurrency": 1})))
        .await;
    assert_eq!(p.status, StatusCode::CREATED);
    let (tenant, _, _) = {
        let me = a.api.get("/v1/me", &key).await;
        (me.body["tenant"]["id"].as_str().unwrap().to_owned(), (), ())
    };
    let r = a
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"plan": "single"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await; // the plan change reaches both caches
    let mut stream = hello("slow");
    stream["stream"] = json!(true);
    let api = a.api.clone();
    let k2 = key.clone();
    let open = tokio::spawn(async move {
        api.call(Method::POST, "/v1/chat/completions", Some(&k2), Some(stream)).await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = b.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    assert_eq!(open.await.unwrap().status, StatusCode::OK);
    let start = Instant::now();
    loop {
        let r =
            b.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm"))).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "the slot is released: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_settle_concurrency_releases_and_key_and_model_limits_apply() {
    let up = Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let key = setup(&s, &up, json!({"name": "metered", "tpm": 1000, "concurrency": 1})).await;
    let window = away_from_a_window_edge().await;
    // Each request reserves about 600 tokens (max_tokens) and settles to a
    // few dozen: one after another, many fit in 1,000.
    let mut body = hello("llm");
    body["max_tokens"] = json!(600);
    let mut remaining = Vec::new();
    for i in 0..8 {
        let r =
            s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {r:?}");
        remaining.push(
            r.headers["x-ratelimit-remaining-tokens"].to_str().unwrap().parse::<u64>().unwrap(),
        );
        // Settlement is immediate in process.
    }
    assert!(remaining[7] > 200, "settled, not reserved: {remaining:?}");
    // A request whose reservation cannot fit is refused by the token limit.
    let mut big = hello("llm");
    big["max_tokens"] = json!(5000);
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(big)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"),
        "{r:?}"
    );
    assert!(r.body["error"]["message"].as_str().unwrap().contains("tokens per minute"), "{r:?}");
    same_window(window);

    // Concurrency 1: a second request while a stream is open is refused;
    // after the stream ends it is admitted.
    let mut stream = hello("slow");
    stream["stream"] = json!(true);
    let api = s.api.clone();
    let k2 = key.clone();
    let open = tokio::spawn(async move {
        api.call(Method::POST, "/v1/chat/completions", Some(&k2), Some(stream)).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("concurrent"), "{r:?}");
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(open.await.unwrap().status, StatusCode::OK);
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm"))).await;
    assert_eq!(r.status, StatusCode::OK, "released after the stream: {r:?}");

    // A key's own limit.
    let (_, k3) = {
        let me = s.api.get("/v1/me", &key).await;
        let tenant = me.body["tenant"]["id"].as_str().unwrap().to_owned();
        let k = s
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/keys"),
                Some(json!({"name": "capped", "role": "developer", "scopes": {"rpm": 2}})),
            )
            .await;
        assert_eq!(k.status, StatusCode::CREATED, "{k:?}");
        (tenant, k.body["key"].as_str().unwrap().to_owned())
    };
    for _ in 0..2 {
        assert_eq!(
            s.api
                .call(Method::POST, "/v1/chat/completions", Some(&k3), Some(hello("llm")))
                .await
                .status,
            StatusCode::OK
        );
    }
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&k3), Some(hello("llm"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("key requests per minute limit (2)"),
        "{r:?}"
    );
    assert_eq!(r.headers["x-ratelimit-limit-requests"], "2");

    // A model's own limit, from its deployment.
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/slow",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}], "rpm": 1})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let first =
        s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("slow"))).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("slow"))).await;
    assert!(
        r.body["error"]["message"].as_str().unwrap_or("").contains("model requests per minute"),
        "{r:?}"
    );
}

/// A Redis of the test's own, so stopping it disturbs nobody else.
struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let r = OwnRedis { port, dir: tempfile::tempdir().ok()? };
        r.up().then_some(r)
    }

    fn up(&self) -> bool {
        let ok = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while ok && Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn down(&self) {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .status();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
    }
}

async fn metric(s: &Server, name: &str) -> f64 {
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_goes_on_while_redis_is_down_and_global_limits_come_back() {
    if tessera_store::conformance::service_url("TESSERA_TEST_REDIS_URL").is_none() {
        return;
    }
    let redis = OwnRedis::start().expect("redis-server starts");
    let up = Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(&Backend::Sqlite, dir.path());
    opts.args = vec!["--redis-url".into(), format!("redis://127.0.0.1:{}", redis.port)];
    let s = Server::start(opts).await;
    let key = setup(&s, &up, json!({"name": "roomy", "rpm": 100000})).await;
    let ok = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm"))).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(metric(&s, "tessera_limits_global").await, 1.0);

    redis.down();
    // Requests keep being served; none waits much longer than the Redis timeout.
    let mut slowest = Duration::ZERO;
    for i in 0..40 {
        let t = Instant::now();
        let r =
            s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm"))).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, StatusCode::OK, "request {i} with redis down: {r:?}");
    }
    assert!(slowest < Duration::from_millis(500), "slowest {slowest:?}");
    assert!(metric(&s, "tessera_limits_fallback_total").await > 0.0);
    assert_eq!(metric(&s, "tessera_limits_global").await, 0.0);

    assert!(redis.up(), "redis starts again");
    let back = async {
        loop {
            let _ = s
                .api
                .call(Method::POST, "/v1/chat/completions", Some(&key), Some(hello("llm")))
                .await;
            if metric(&s, "tessera_limits_global").await == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), back)
        .await
        .expect("global limits come back by themselves");
    // L2 caching is back too: a new answer lands in this Redis.
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "emb", "task": "embedding",
            "runtime": "openai-compatible", "config": {"base_url": up.url}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/embeddings",
            Some(&key),
            Some(json!({"model": "emb", "input": "after the outage"})),
        )
        .await;
    assert_eq!(r.headers["x-tessera-cache"], "miss");
    let stored = async {
        loop {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "--scan", "--pattern", "tessera:cache:*"])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), stored).await.expect("the answer reaches L2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_budget_alerts_stops_and_survives_a_restart() {
    let up = Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA_ADMIN_KEY", "budget-admin-key-0123456789")
    };
    let s = Server::start(opts()).await;
    let key = setup(&s, &up, json!({"name": "capped", "monthly_budget_usd": 0.03})).await;
    let p = s
        .admin(
            Method::PUT,
            "/admin/v1/prices",
            Some(json!({"model": "llm", "prompt_per_1k_usd": 1.0, "completion_per_1k_usd": 2.0})),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    let mut body = hello("llm");
    body["max_tokens"] = json!(10);
    // About $0.028 reserved (over 80% of the budget: the soft alert), $0.018 spent.
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(body.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // The next reservation does not fit: hard stop.
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(body.clone())).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYMENT_REQUIRED, "budget_exceeded"), "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    let m =
        s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("tessera_budget_alerts_total 1"), "{m}");
    assert!(s.log().contains("soft threshold of its monthly budget"));
    // The spend is in the usage records, so a restarted replica still stops.
    assert!(s.terminate().await.success());
    let s = Server::start(opts()).await;
    let r = s.api.call(Method::POST, "/v1/chat/completions", Some(&key), Some(body)).await;
    assert_eq!((r.status, r.code()), (StatusCode::PAYMENT_REQUIRED, "budget_exceeded"), "{r:?}");
}
