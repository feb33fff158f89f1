//! The suite every [`OnlineStore`] passes, with a harness per implementation.

use serde_json::{Map, Value, json};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use crate::{EntityKey, OnlineStore, Row, Write};

/// The machine's Redis (`TESSERA_TEST_REDIS_URL`); none without it, unless
/// services are required (then a missing URL fails the test).
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("TESSERA_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("TESSERA_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("TESSERA_REQUIRE_SERVICES=1 but TESSERA_TEST_REDIS_URL is not set")
        }
        Err(_) => None,
    }
}

/// Test rows expire on their own (Redis is shared by every run).
const KEEP: Option<std::time::Duration> = Some(std::time::Duration::from_secs(600));

fn key(c: &str) -> EntityKey {
    EntityKey::of(vec![("customer_id", c.to_owned())])
}

fn row(spend: f64, tier: &str, ts: i64, created: i64) -> Row {
    let mut values = Map::new();
    values.insert("spend".into(), json!(spend));
    values.insert("tier".into(), json!(tier));
    values.insert("n".into(), Value::Null);
    Row { values, event_ts: Timestamp::from_millis(ts), created: Timestamp::from_millis(created) }
}

fn features(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) async fn write_then_read(
    store: &dyn OnlineStore,
    reopened: impl AsyncFnOnce() -> Box<dyn OnlineStore>,
) {
    let t = TenantId::generate();
    let rows = vec![
        (key("c1"), row(10.5, "gold", 1_000, 1_000)),
        (key("c2"), row(3.0, "basic", 2_000, 2_000)),
    ];
    let n = store.write(&t, Write { view: "stats", rows, keep: KEEP }).await.unwrap();
    assert_eq!(n, 2);
    let got = store
        .read(&t, "stats", &features(&["tier", "n"]), &[key("c2"), key("nobody"), key("c1")])
        .await
        .unwrap();
    let c2 = got[0].as_ref().unwrap();
    assert_eq!(c2.values.get("tier"), Some(&json!("basic")));
    assert_eq!(c2.values.get("n"), Some(&Value::Null), "a null value is kept as null");
    assert!(!c2.values.contains_key("spend"), "only the features asked for");
    assert_eq!(c2.event_ts, Timestamp::from_millis(2_000));
    assert!(got[1].is_none(), "no row for an unknown key");
    assert_eq!(got[2].as_ref().unwrap().values.get("tier"), Some(&json!("gold")));
    let again = reopened().await;
    let got = again.read(&t, "stats", &features(&["spend"]), &[key("c1")]).await.unwrap();
    assert_eq!(got[0].as_ref().unwrap().values.get("spend"), Some(&json!(10.5)), "durable");
}

async fn tier_of(store: &dyn OnlineStore, t: &TenantId) -> Value {
    let got = store.read(t, "stats", &features(&["tier"]), &[key("c1")]).await.unwrap();
    got[0].as_ref().unwrap().values["tier"].clone()
}

pub(crate) async fn the_newer_row_wins(store: &dyn OnlineStore) {
    let t = TenantId::generate();
    let w = |r: Row| Write { view: "stats", rows: vec![(key("c1"), r)], keep: KEEP };
    store.write(&t, w(row(2.0, "new", 2_000, 2_000))).await.unwrap();
    let stored = store.write(&t, w(row(1.0, "old", 1_000, 3_000))).await.unwrap();
    assert_eq!(stored, 0, "an older event does not replace a newer one");
    assert_eq!(tier_of(store, &t).await, json!("new"));
    store.write(&t, w(row(2.5, "rewritten", 2_000, 2_500))).await.unwrap();
    assert_eq!(
        tier_of(store, &t).await,
        json!("rewritten"),
        "same event time: the later write wins"
    );
    store.write(&t, w(row(3.0, "newest", 3_000, 1))).await.unwrap();
    assert_eq!(tier_of(store, &t).await, json!("newest"));
}

pub(crate) async fn tenants_and_views_are_apart(store: &dyn OnlineStore) {
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let rows = vec![(key("c1"), row(1.0, "a", 1_000, 1_000))];
    store.write(&a, Write { view: "stats", rows: rows.clone(), keep: KEEP }).await.unwrap();
    store.write(&a, Write { view: "other", rows, keep: KEEP }).await.unwrap();
    let f = features(&["tier"]);
    assert!(
        store.read(&b, "stats", &f, &[key("c1")]).await.unwrap()[0].is_none(),
        "another tenant's row"
    );
    store.drop_view(&a, "stats").await.unwrap();
    assert!(store.read(&a, "stats", &f, &[key("c1")]).await.unwrap()[0].is_none(), "dropped");
    assert!(
        store.read(&a, "other", &f, &[key("c1")]).await.unwrap()[0].is_some(),
        "the other view stays"
    );
}

pub(crate) async fn a_large_batch_lands_whole(store: &dyn OnlineStore) {
    let t = TenantId::generate();
    let rows: Vec<_> =
        (0..1_200).map(|i| (key(&format!("c{i}")), row(i as f64, "x", 1_000, 1_000))).collect();
    let keys: Vec<EntityKey> = rows.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(store.write(&t, Write { view: "stats", rows, keep: KEEP }).await.unwrap(), 1_200);
    let got = store.read(&t, "stats", &features(&["spend"]), &keys).await.unwrap();
    assert!(
        got.iter().enumerate().all(|(i, r)| r.as_ref().unwrap().values["spend"] == json!(i as f64))
    );
}

mod embedded {
    use super::*;
    use crate::embedded::EmbeddedOnline;

    async fn open(dir: &std::path::Path) -> EmbeddedOnline {
        EmbeddedOnline::open(&dir.join("features.db")).await.unwrap()
    }

    #[tokio::test]
    async fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        super::write_then_read(&store, async || {
            Box::new(open(dir.path()).await) as Box<dyn OnlineStore>
        })
        .await;
    }

    #[tokio::test]
    async fn the_newer_row_wins() {
        let dir = tempfile::tempdir().unwrap();
        super::the_newer_row_wins(&open(dir.path()).await).await;
    }

    #[tokio::test]
    async fn tenants_and_views_are_apart() {
        let dir = tempfile::tempdir().unwrap();
        super::tenants_and_views_are_apart(&open(dir.path()).await).await;
    }

    #[tokio::test]
    async fn a_large_batch_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        super::a_large_batch_lands_whole(&open(dir.path()).await).await;
    }
}

mod redis {
    use std::time::Duration;

    use super::*;
    use crate::redis_store::RedisOnline;

    /// The machine's Redis (`TESSERA_TEST_REDIS_URL`); skipped without it
    /// unless services are required.
    fn store() -> Option<RedisOnline> {
        let url = super::redis_url()?;
        Some(RedisOnline::new(&url, "tessera-test:fs", Duration::from_secs(2)).unwrap())
    }

    #[tokio::test]
    async fn write_then_read() {
        let Some(s) = store() else { return };
        super::write_then_read(&s, async || Box::new(store().unwrap()) as Box<dyn OnlineStore>)
            .await;
    }

    #[tokio::test]
    async fn the_newer_row_wins() {
        let Some(s) = store() else { return };
        super::the_newer_row_wins(&s).await;
    }

    #[tokio::test]
    async fn tenants_and_views_are_apart() {
        let Some(s) = store() else { return };
        super::tenants_and_views_are_apart(&s).await;
    }

    #[tokio::test]
    async fn a_large_batch_lands_whole() {
        let Some(s) = store() else { return };
        super::a_large_batch_lands_whole(&s).await;
    }

    /// An unreachable Redis answers unavailable within the timeout.
    #[tokio::test]
    async fn an_unreachable_redis_fails_fast() {
        let s = RedisOnline::new("redis://127.0.0.1:1", "x", Duration::from_millis(300)).unwrap();
        let started = std::time::Instant::now();
        let r = s.read(&TenantId::generate(), "v", &features(&["a"]), &[key("c")]).await;
        assert!(matches!(r, Err(crate::OnlineError::Unavailable(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// The embedded store's cache never answers with a row a write replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(clippy::disallowed_methods, reason = "a reader beside the writes, awaited by the test")]
async fn the_embedded_cache_follows_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        crate::embedded::EmbeddedOnline::open(&dir.path().join("f.db")).await.unwrap(),
    );
    let t = TenantId::generate();
    let f = features(&["spend"]);
    assert!(
        store.read(&t, "stats", &f, &[key("c1")]).await.unwrap()[0].is_none(),
        "a miss is cached too"
    );
    let reader = {
        let (store, t, f) = (store.clone(), t.clone(), f.clone());
        tokio::spawn(async move {
            for _ in 0..2_000 {
                store.read(&t, "stats", &f, &[key("c1")]).await.unwrap();
            }
        })
    };
    for i in 1..=200 {
        let w =
            Write { view: "stats", rows: vec![(key("c1"), row(i as f64, "x", i, i))], keep: KEEP };
        store.write(&t, w).await.unwrap();
        let got = store.read(&t, "stats", &f, &[key("c1")]).await.unwrap();
        assert_eq!(got[0].as_ref().unwrap().values["spend"], json!(i as f64), "after write {i}");
    }
    reader.await.unwrap();
    store.drop_view(&t, "stats").await.unwrap();
    assert!(store.read(&t, "stats", &f, &[key("c1")]).await.unwrap()[0].is_none());
}
