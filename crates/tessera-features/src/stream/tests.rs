//! Tile stores (one suite for both) and a stream view end to end.

use std::time::Duration;

use serde_json::json;
use tessera_core::features::{Definition, EntitySpec};

use super::*;
use crate::OnlineStore as _;

fn spec() -> TileSpec {
    TileSpec {
        view: "spend".into(),
        windowings: vec![
            Windowing { window: 300_000, slide: 30_000 },
            Windowing { window: 60_000, slide: 60_000 },
        ],
        lateness: 60_000,
    }
}

fn ev(key: &str, offset: u64, ts: i64, v: Option<f64>) -> TileEvent {
    TileEvent {
        key: EntityKey::of(vec![("customer_id", key.into())]),
        offset,
        ts,
        // It reached the log a second after it happened.
        ingested: ts + 1_000,
        values: vec![v, v],
    }
}

async fn tiles_count_once_and_leave_late_events_out(store: &dyn TileStore) {
    let t = TenantId::generate();
    let s = spec();
    let batch = vec![
        ev("c1", 1, 1_000_000, Some(2.0)),
        ev("c1", 2, 1_010_000, Some(4.0)),
        ev("c2", 3, 1_020_000, None),
    ];
    let a = store.apply(&t, &s, &batch).await.unwrap();
    assert_eq!(a, Applied { added: 3, duplicates: 0, late: 0 });
    let again = store.apply(&t, &s, &batch).await.unwrap();
    assert_eq!(again, Applied { added: 0, duplicates: 3, late: 0 }, "a redelivery counts nothing");
    let k1 = &batch[0].key;
    let p = store.merged(&t, &s, 0, &[(k1.clone(), 750_000, 1_050_000)]).await.unwrap()[0];
    assert_eq!((p.events, p.n, p.sum, p.min, p.max), (2, 2, 6.0, Some(2.0), Some(4.0)));
    // One that reached the log two minutes after it happened is late.
    let late = store
        .apply(
            &t,
            &s,
            &[
                TileEvent { ingested: 950_000 + 120_000, ..ev("c1", 4, 950_000, Some(100.0)) },
                ev("c1", 5, 990_000, Some(1.0)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(late, Applied { added: 1, duplicates: 0, late: 1 });
    let p = store.merged(&t, &s, 0, &[(k1.clone(), 750_000, 1_050_000)]).await.unwrap()[0];
    assert_eq!((p.events, p.sum, p.min), (3, 7.0, Some(1.0)));
    // Many keys at once, each over its own range.
    let k2 = &batch[2].key;
    let nobody = EntityKey::of(vec![("customer_id", "nobody".into())]);
    let many = store
        .merged(
            &t,
            &s,
            0,
            &[
                (k2.clone(), 1_020_000, 1_050_000),
                (nobody, 0, 2_000_000),
                (k1.clone(), 990_000, 1_020_000),
            ],
        )
        .await
        .unwrap();
    assert_eq!(many.iter().map(|p| p.events).collect::<Vec<_>>(), [1, 0, 3]);
    // Another tenant's tiles are its own.
    let other =
        store.merged(&TenantId::generate(), &s, 0, &[(k1.clone(), 0, 2_000_000)]).await.unwrap()[0];
    assert_eq!(other, Partial::default());
}

/// Two writers at once (two replicas) add up.
async fn concurrent_applies_add_up(store: std::sync::Arc<dyn TileStore>) {
    let t = TenantId::generate();
    let s = spec();
    let part = |from: u64| -> Vec<TileEvent> {
        (from..from + 200).map(|o| ev("c1", o, 1_000_000 + o as i64, Some(1.0))).collect()
    };
    let (a, b) = (part(0), part(200));
    let (ra, rb) = tokio::join!(store.apply(&t, &s, &a), store.apply(&t, &s, &b));
    assert_eq!(ra.unwrap().added + rb.unwrap().added, 400);
    let key = &a[0].key;
    let w = s.windowings[0];
    let end = w.tile(1_000_399) + w.slide;
    let p = store.merged(&t, &s, 0, &[(key.clone(), end - w.window, end)]).await.unwrap()[0];
    assert_eq!(p.events, 400);
}

async fn embedded() -> (tempfile::TempDir, crate::embedded::EmbeddedOnline, embedded::EmbeddedTiles)
{
    let dir = tempfile::tempdir().unwrap();
    let online = crate::embedded::EmbeddedOnline::open(&dir.path().join("f.db")).await.unwrap();
    let tiles = embedded::EmbeddedTiles::new(online.writer()).await.unwrap();
    (dir, online, tiles)
}

fn redis() -> Option<redis_tiles::RedisTiles> {
    let url = crate::conformance::redis_url()?;
    Some(redis_tiles::RedisTiles::new(&url, "tessera-test:tiles", Duration::from_secs(2)).unwrap())
}

#[tokio::test]
async fn embedded_tiles() {
    let (_d, _o, tiles) = embedded().await;
    tiles_count_once_and_leave_late_events_out(&tiles).await;
    concurrent_applies_add_up(std::sync::Arc::new(tiles)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tiles() {
    let Some(tiles) = redis() else { return };
    tiles_count_once_and_leave_late_events_out(&tiles).await;
    concurrent_applies_add_up(std::sync::Arc::new(tiles)).await;
}

fn def<S>(spec: S) -> Definition<S> {
    let at = Timestamp::from_millis(0);
    Definition { name: String::new(), version: 1, spec, created_at: at, updated_at: at }
}

/// A stream view end to end: events in, window values online; a replay
/// of the same events leaves the same values.
#[tokio::test]
async fn a_stream_view_writes_its_window_values_online() {
    let (_d, online, tiles) = embedded().await;
    let offline = crate::offline::SqliteOffline::new(online.writer()).await.unwrap();
    let online = std::sync::Arc::new(online);
    let stores = crate::Stores {
        online: online.clone(),
        tiles: std::sync::Arc::new(tiles),
        offline: std::sync::Arc::new(offline),
        monitor: std::sync::Arc::default(),
    };
    let mut catalog = Catalog::default();
    catalog.entities.insert(
        "customer".into(),
        def(serde_json::from_value::<EntitySpec>(json!({"join_keys": ["customer_id"]})).unwrap()),
    );
    let view: ViewSpec =
        serde_json::from_value(json!({"entities": ["customer"], "source": {"stream": {
        "event_type": "purchase", "aggregations": [
            {"column": "total", "function": "sum", "window": "5m", "slide": "30s"},
            {"function": "count", "window": "5m", "slide": "30s"}]}}}))
        .unwrap();
    let view = tessera_core::features::validate_view(
        "spend",
        &view,
        &catalog.entities.iter().map(|(k, d)| (k.clone(), d.spec.clone())).collect(),
    )
    .unwrap();
    catalog.views.insert("spend".into(), def(view));
    let entity =
        |c: &str| std::collections::BTreeMap::from([("customer_id".to_owned(), c.to_owned())]);
    let (e1, e2) = (entity("c1"), entity("c2"));
    let props = |v: f64| json!({"total": v}).as_object().unwrap().clone();
    let (p1, p2, p3) = (props(10.0), props(5.0), props(1.0));
    let events = vec![
        Event {
            offset: 1,
            event_type: "purchase",
            entity: &e1,
            ts: Timestamp::from_millis(1_000_000),
            ingested: Timestamp::from_millis(1_000_000 + 1_000),
            properties: &p1,
        },
        Event {
            offset: 2,
            event_type: "click",
            entity: &e1,
            ts: Timestamp::from_millis(1_001_000),
            ingested: Timestamp::from_millis(1_001_000 + 1_000),
            properties: &p1,
        },
        Event {
            offset: 3,
            event_type: "purchase",
            entity: &e1,
            ts: Timestamp::from_millis(1_200_000),
            ingested: Timestamp::from_millis(1_200_000 + 1_000),
            properties: &p2,
        },
        Event {
            offset: 4,
            event_type: "purchase",
            entity: &e2,
            ts: Timestamp::from_millis(1_250_000),
            ingested: Timestamp::from_millis(1_250_000 + 1_000),
            properties: &p3,
        },
    ];
    let t = TenantId::generate();
    let now = Timestamp::now();
    let done = process(&catalog, &stores, &t, &events, now).await.unwrap();
    assert_eq!(done, vec![("spend".to_owned(), Applied { added: 3, duplicates: 0, late: 0 })]);
    let read = async || {
        let keys = [
            EntityKey::of(vec![("customer_id", "c1".into())]),
            EntityKey::of(vec![("customer_id", "c2".into())]),
        ];
        let f = vec!["total_sum_5m".to_owned(), "count_5m".to_owned()];
        online.read(&t, "spend", &f, &keys).await.unwrap()
    };
    let rows = read().await;
    let c1 = rows[0].as_ref().unwrap();
    // c1's newest event (1,200,000) ends its window at 1,230,000: both purchases are in it.
    assert_eq!((&c1.values["total_sum_5m"], &c1.values["count_5m"]), (&json!(15.0), &json!(2)));
    assert_eq!(c1.event_ts, Timestamp::from_millis(1_200_000));
    assert_eq!(rows[1].as_ref().unwrap().values["count_5m"], json!(1));
    let replay = process(&catalog, &stores, &t, &events, now).await.unwrap();
    assert_eq!(replay[0].1, Applied { added: 0, duplicates: 3, late: 0 });
    assert_eq!(read().await, rows, "a replay changes nothing");
    let c1 = EntityKey::of(vec![("customer_id", "c1".into())]);
    let logged = stores.offline.scan(&t, "spend", &[c1], i64::MIN, i64::MAX).await.unwrap();
    assert!(
        logged.iter().any(|r| r.values["total_sum_5m"] == json!(15.0)),
        "window values reach the offline log: {logged:?}"
    );
}
