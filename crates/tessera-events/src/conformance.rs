//! The suite every [`EventLog`] passes: [`event_log_conformance!`] expands one
//! test per check for an implementation's harness.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use crate::{EventLog, Filter, NewEvent, Page, Position, Topic};

/// A fresh log, and the same storage opened again as after a restart.
#[async_trait]
pub(crate) trait Harness: Send + Sync {
    fn log(&self) -> &dyn EventLog;
    async fn reopen(&self) -> Box<dyn EventLog>;
    async fn finish(self);
}

pub(crate) fn event(id: Option<&str>, ty: &str, user: &str, n: i64) -> NewEvent {
    NewEvent {
        id: id.map(str::to_owned),
        event_type: ty.into(),
        entity: BTreeMap::from([("user_id".to_owned(), user.to_owned())]),
        ts: Timestamp::from_millis(1_700_000_000_000 + n),
        properties: json!({"n": n, "page": "/home"}).as_object().unwrap().clone(),
    }
}

/// The topic that is not `topic` (records there must not show in `topic`).
fn other(topic: Topic) -> Topic {
    match topic {
        Topic::Events => Topic::Predictions,
        Topic::Predictions => Topic::Events,
    }
}

fn tenant() -> TenantId {
    TenantId::generate()
}

pub(crate) async fn append_then_read(h: &impl Harness) {
    for topic in Topic::ALL {
        append_then_read_on(h, topic).await;
    }
}

async fn append_then_read_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    assert_eq!(log.next_offset(&t).await.unwrap(), 1, "an empty log starts at 1");
    let batch = vec![
        event(None, "click", "u1", 1),
        event(None, "view", "u2", 2),
        event(Some("e3"), "click", "u1", 3),
    ];
    let out = log.append(&t, topic, batch.clone()).await.unwrap();
    assert_eq!(out.iter().map(|a| a.offset).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(out.iter().all(|a| !a.duplicate));
    assert!(out[0].id.starts_with("evt_"), "the log names events that came without an id");
    assert_eq!(out[2].id, "e3");
    assert_eq!(log.next_offset(&t).await.unwrap(), 4);

    let page = log.read(&t, topic, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert!(page.end);
    assert_eq!(page.next, 4);
    assert_eq!(page.records.len(), 3);
    for (r, (e, a)) in page.records.iter().zip(batch.iter().zip(&out)) {
        assert_eq!((r.offset, &r.id, r.topic), (a.offset, &a.id, topic));
        assert_eq!(
            (&r.event_type, &r.entity, r.ts, &r.properties),
            (&e.event_type, &e.entity, e.ts, &e.properties)
        );
    }
    assert!(page.records.windows(2).all(|w| w[0].ingested_at <= w[1].ingested_at));

    // Paging.
    let first = log.read(&t, topic, Position::Offset(1), &Filter::default(), 2).await.unwrap();
    assert_eq!(first.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
    assert!(!first.end);
    let rest =
        log.read(&t, topic, Position::Offset(first.next), &Filter::default(), 2).await.unwrap();
    assert_eq!(rest.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [3]);
    assert!(rest.end);
    assert_eq!(rest.next, 4);
    let past = log.read(&t, topic, Position::Offset(4), &Filter::default(), 2).await.unwrap();
    assert!(past.records.is_empty() && past.end && past.next == 4, "{past:?}");

    // Another instance over the same storage sees it all (durable).
    let again = h.reopen().await;
    let page2 = again.read(&t, topic, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(page2.records, page.records);
    assert_eq!(again.next_offset(&t).await.unwrap(), 4);
}

pub(crate) async fn topics_share_offsets_but_not_records(h: &impl Harness) {
    let log = h.log();
    let t = tenant();
    log.append(&t, Topic::Events, vec![event(None, "click", "u1", 1)]).await.unwrap();
    let p =
        log.append(&t, Topic::Predictions, vec![event(None, "prediction", "u1", 2)]).await.unwrap();
    log.append(&t, Topic::Events, vec![event(None, "click", "u1", 3)]).await.unwrap();
    assert_eq!(p[0].offset, 2);
    let ev =
        log.read(&t, Topic::Events, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(ev.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 3]);
    let pr = log
        .read(&t, Topic::Predictions, Position::Offset(1), &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(
        pr.records.iter().map(|r| (r.offset, r.topic)).collect::<Vec<_>>(),
        [(2, Topic::Predictions)]
    );
}

pub(crate) async fn ids_make_appends_idempotent(h: &impl Harness) {
    let log = h.log();
    let t = tenant();
    let a = log.append(&t, Topic::Events, vec![event(Some("a"), "click", "u1", 1)]).await.unwrap();
    let again = log
        .append(
            &t,
            Topic::Events,
            vec![event(Some("a"), "click", "u1", 1), event(Some("b"), "click", "u1", 2)],
        )
        .await
        .unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (a[0].offset, true));
    assert!(!again[1].duplicate);
    let twice = log
        .append(
            &t,
            Topic::Events,
            vec![event(Some("c"), "click", "u1", 3), event(Some("c"), "click", "u1", 3)],
        )
        .await
        .unwrap();
    assert_eq!(twice[1].offset, twice[0].offset, "a repeat inside one batch is stored once");
    assert!(twice[1].duplicate);
    let all =
        log.read(&t, Topic::Events, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(all.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);

    // Ids are a tenant's own: another tenant's "a" is another event.
    let other = tenant();
    let o =
        log.append(&other, Topic::Events, vec![event(Some("a"), "click", "u9", 9)]).await.unwrap();
    assert!(!o[0].duplicate);

    // On every topic a repeat inside one batch is stored once.
    let p = log
        .append(
            &t,
            Topic::Predictions,
            vec![event(Some("p"), "prediction", "u1", 4), event(Some("p"), "prediction", "u1", 4)],
        )
        .await
        .unwrap();
    assert_eq!((p[1].offset, p[1].duplicate), (p[0].offset, true));
    let page = log
        .read(&t, Topic::Predictions, Position::Offset(1), &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1);
}

pub(crate) async fn tenants_never_see_each_other(h: &impl Harness) {
    for topic in Topic::ALL {
        tenants_never_see_each_other_on(h, topic).await;
    }
}

async fn tenants_never_see_each_other_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let (a, b) = (tenant(), tenant());
    log.append(&a, topic, vec![event(None, "click", "ua", 1), event(None, "click", "ua", 2)])
        .await
        .unwrap();
    log.append(&b, topic, vec![event(None, "click", "ub", 3)]).await.unwrap();
    let rb = log.read(&b, topic, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(rb.records.len(), 1);
    assert_eq!(rb.records[0].entity["user_id"], "ub");
    assert_eq!(rb.records[0].offset, 1, "offsets are per tenant");
    let d = log.fetch("isolation", &b, topic, 10, Duration::ZERO).await.unwrap();
    assert!(d.records.iter().all(|r| r.entity["user_id"] == "ub"), "{:?}", d.records);
    let tenants = log.tenants().await.unwrap();
    assert!(tenants.contains(&a) && tenants.contains(&b));
}

pub(crate) async fn filters_by_type_entity_and_time(h: &impl Harness) {
    for topic in Topic::ALL {
        filters_by_type_entity_and_time_on(h, topic).await;
    }
}

async fn filters_by_type_entity_and_time_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    log.append(&t, topic, vec![event(None, "click", "u1", 1), event(None, "view", "u1", 2)])
        .await
        .unwrap();
    // Times have millisecond precision: keep the batches in different ones.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before_second = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    log.append(&t, topic, vec![event(None, "click", "u2", 3), event(None, "click", "u1", 4)])
        .await
        .unwrap();

    let clicks = Filter { event_type: Some("click".into()), ..Filter::default() };
    let page = log.read(&t, topic, Position::Offset(1), &clicks, 10).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 3, 4]);
    let u1 = Filter {
        event_type: Some("click".into()),
        entity: Some(("user_id".into(), "u1".into())),
        ..Filter::default()
    };
    let page = log.read(&t, topic, Position::Offset(1), &u1, 1).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1]);
    assert!(!page.end);
    let page = log.read(&t, topic, Position::Offset(page.next), &u1, 10).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [4]);
    assert!(page.end);

    let since =
        log.read(&t, topic, Position::Time(before_second), &Filter::default(), 10).await.unwrap();
    let offsets: Vec<u64> = since.records.iter().map(|r| r.offset).collect();
    let times: Vec<_> = since.records.iter().map(|r| r.ingested_at).collect();
    assert!(
        offsets.ends_with(&[3, 4]) && !offsets.contains(&1),
        "{offsets:?} {times:?} since {before_second:?}"
    );

    // `until` ends a read at the records stored after it, alone and with
    // an entity filter (which the embedded log answers by searching bodies).
    let until = Filter { until: Some(before_second), ..Filter::default() };
    let early = log.read(&t, topic, Position::Offset(1), &until, 10).await.unwrap();
    assert_eq!(early.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
    assert!(early.end, "a read past `until` is at its end");
    let u1_early = Filter { until: Some(before_second), ..u1.clone() };
    let page = log.read(&t, topic, Position::Time(before_second), &u1_early, 10).await.unwrap();
    assert!(page.records.is_empty() && page.end, "{:?}", page.records);
    let page = log.read(&t, topic, Position::Offset(1), &u1_early, 10).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1]);
}

pub(crate) async fn oversized_batch_writes_nothing(h: &impl Harness) {
    for topic in Topic::ALL {
        oversized_batch_writes_nothing_on(h, topic).await;
    }
}

async fn oversized_batch_writes_nothing_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    log.append(&t, topic, vec![event(None, "click", "u1", 1)]).await.unwrap();
    let mut big = event(None, "click", "u1", 2);
    big.properties.insert("blob".into(), json!("x".repeat(crate::MAX_EVENT_BYTES)));
    let err =
        log.append(&t, topic, vec![event(Some("ok"), "click", "u1", 3), big]).await.unwrap_err();
    assert!(matches!(err, crate::LogError::Invalid(ref m) if m.contains("event 1")), "{err}");
    let page = log.read(&t, topic, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(page.records.len(), 1, "nothing of the refused batch is stored");
}

pub(crate) async fn encoded_batches_read_back_as_events(h: &impl Harness) {
    for topic in Topic::ALL {
        encoded_batches_read_back_as_events_on(h, topic).await;
    }
}

#[derive(serde::Serialize)]
struct Props<'a> {
    model: &'a str,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
}

async fn encoded_batches_read_back_as_events_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    log.append(&t, topic, vec![event(None, "click", "u1", 1)]).await.unwrap();
    let ts = Timestamp::from_millis(1_700_000_000_123);
    let mut batch = crate::Encoded::new();
    let quoted = "said \"hi\"\n";
    batch
        .push(
            "prd_1",
            "prediction",
            [("prediction_id", "prd_1"), ("user", quoted), ("user", "not kept")],
            ts,
            &Props { model: "m", score: 0.25, input: Some(quoted) },
        )
        .unwrap();
    batch
        .push(
            "prd_2",
            "prediction",
            [("prediction_id", "prd_2")],
            ts,
            &Props { model: "m", score: 1.0, input: None },
        )
        .unwrap();
    // Refused events leave the batch as it was.
    let err = batch.push("bad", "prediction", [], ts, &json!([1, 2])).unwrap_err();
    assert!(matches!(err, crate::LogError::Invalid(ref m) if m.contains("object")), "{err}");
    let blob = json!({"blob": "x".repeat(crate::MAX_EVENT_BYTES)});
    let err = batch.push("big", "prediction", [], ts, &blob).unwrap_err();
    assert!(matches!(err, crate::LogError::Invalid(ref m) if m.contains("event 2")), "{err}");
    assert_eq!(batch.len(), 2);

    let offsets = log.append_encoded(&t, topic, &batch).await.unwrap();
    assert_eq!(offsets, [2, 3]);
    assert_eq!(log.next_offset(&t).await.unwrap(), 4);
    let page = log.read(&t, topic, Position::Offset(2), &Filter::default(), 10).await.unwrap();
    let got: Vec<_> = page
        .records
        .iter()
        .map(|r| (r.offset, r.id.as_str(), r.event_type.as_str(), r.topic, r.ts))
        .collect();
    assert_eq!(got, [(2, "prd_1", "prediction", topic, ts), (3, "prd_2", "prediction", topic, ts)]);
    let first = &page.records[0];
    assert_eq!(
        first.entity,
        BTreeMap::from([
            ("prediction_id".to_owned(), "prd_1".to_owned()),
            ("user".to_owned(), quoted.to_owned())
        ]),
        "a key given twice keeps its first value"
    );
    assert_eq!(
        serde_json::Value::Object(first.properties.clone()),
        json!({"model": "m", "score": 0.25, "input": quoted})
    );
    assert_eq!(page.records[1].properties.get("input"), None);
    // Found by entity like any event, and empty batches store nothing.
    let by = Filter { entity: Some(("prediction_id".into(), "prd_2".into())), ..Filter::default() };
    let found = log.read(&t, topic, Position::Offset(1), &by, 10).await.unwrap();
    assert_eq!(found.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [3]);
    assert!(log.append_encoded(&t, topic, &crate::Encoded::new()).await.unwrap().is_empty());
    assert_eq!(log.next_offset(&t).await.unwrap(), 4);
}

pub(crate) async fn concurrent_appends_get_distinct_offsets(h: &impl Harness) {
    for topic in Topic::ALL {
        concurrent_appends_get_distinct_offsets_on(h, topic).await;
    }
}

async fn concurrent_appends_get_distinct_offsets_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    let appends = (0..16).map(|b| {
        let batch: Vec<_> =
            (0..50).map(|n| event(Some(&format!("b{b}-{n}")), "click", "u1", n)).collect();
        log.append(&t, topic, batch)
    });
    let done = futures_util::future::join_all(appends).await;
    let mut offsets: Vec<u64> =
        done.into_iter().flat_map(|r| r.unwrap()).map(|a| a.offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=800).collect::<Vec<u64>>());
    assert_eq!(log.next_offset(&t).await.unwrap(), 801);
}

pub(crate) async fn consumer_groups_deliver_at_least_once(h: &impl Harness) {
    for topic in Topic::ALL {
        consumer_groups_deliver_at_least_once_on(h, topic).await;
    }
}

async fn consumer_groups_deliver_at_least_once_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    let batch: Vec<_> = (1..=5).map(|n| event(None, "click", "u1", n)).collect();
    log.append(&t, topic, batch).await.unwrap();
    log.append(&t, other(topic), vec![event(None, "prediction", "u1", 6)]).await.unwrap();

    let first = log.fetch("features", &t, topic, 2, Duration::ZERO).await.unwrap();
    assert_eq!(first.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
    let second = log.fetch("features", &t, topic, 2, Duration::ZERO).await.unwrap();
    assert_eq!(
        second.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [3, 4],
        "handed out once"
    );
    let lag = log.lag("features", &t, topic).await.unwrap();
    assert_eq!((lag.pending, lag.in_flight), (1, 4));
    first.commit().await.unwrap();
    second.commit().await.unwrap();
    let lag = log.lag("features", &t, topic).await.unwrap();
    assert_eq!((lag.pending, lag.in_flight), (1, 0));

    // Another group has its own place.
    let other = log.fetch("drift", &t, topic, 10, Duration::ZERO).await.unwrap();
    assert_eq!(other.records.len(), 5);
    other.commit().await.unwrap();

    // A released delivery comes back.
    let third = log.fetch("features", &t, topic, 10, Duration::ZERO).await.unwrap();
    assert_eq!(third.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [5]);
    third.release().await.unwrap();
    let again = log.fetch("features", &t, topic, 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        again.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [5],
        "redelivered after release"
    );
    again.release().await.unwrap();

    // After a restart the group resumes after its last commit: 5 was never committed.
    let restarted = h.reopen().await;
    let resumed =
        restarted.fetch("features", &t, topic, 10, Duration::from_secs(10)).await.unwrap();
    assert_eq!(resumed.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [5]);
    resumed.commit().await.unwrap();
    let lag = restarted.lag("features", &t, topic).await.unwrap();
    assert_eq!(lag.total(), 0);
    let empty = restarted.fetch("features", &t, topic, 10, Duration::ZERO).await.unwrap();
    assert!(empty.records.is_empty());

    assert!(log.fetch("Bad Name", &t, topic, 1, Duration::ZERO).await.is_err());
}

pub(crate) async fn waiting_wakes_on_append(h: &impl Harness) {
    for topic in Topic::ALL {
        waiting_wakes_on_append_on(h, topic).await;
    }
}

async fn waiting_wakes_on_append_on(h: &impl Harness, topic: Topic) {
    let log = h.log();
    let t = tenant();
    log.append(&t, topic, vec![event(None, "click", "u1", 1)]).await.unwrap();
    let started = tokio::time::Instant::now();
    let wait = log.fetch("tail", &t, topic, 10, Duration::ZERO);
    let first = wait.await.unwrap();
    first.commit().await.unwrap();
    let (delivered, ()) =
        tokio::join!(log.fetch("tail", &t, topic, 10, Duration::from_secs(20)), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            log.append(&t, topic, vec![event(None, "click", "u1", 2)]).await.unwrap();
        });
    let delivered = delivered.unwrap();
    assert_eq!(delivered.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [2]);
    assert!(started.elapsed() < Duration::from_secs(10), "woke on the append, not the timeout");
    let (_, ()) = tokio::join!(log.wait_for(&t, 3, Duration::from_secs(20)), async {
        log.append(&t, topic, vec![event(None, "click", "u1", 3)]).await.unwrap();
    });
    assert!(started.elapsed() < Duration::from_secs(10));
}

pub(crate) async fn tombstones_hide_a_subject(h: &impl Harness) {
    let log = h.log();
    let t = tenant();
    let batch = vec![
        event(None, "click", "gone", 1),
        event(None, "click", "stays", 2),
        event(None, "view", "gone", 3),
    ];
    log.append(&t, Topic::Events, batch).await.unwrap();
    let predictions = vec![
        event(None, "prediction", "stays", 4),
        event(None, "prediction", "gone", 5),
        event(None, "prediction", "stays", 6),
        event(None, "prediction", "gone", 7),
    ];
    log.append(&t, Topic::Predictions, predictions).await.unwrap();
    assert_eq!(log.tombstone(&t, "user_id", "gone").await.unwrap(), 4);
    let offsets = |page: &Page| page.records.iter().map(|r| r.offset).collect::<Vec<_>>();
    for (topic, kept) in [(Topic::Events, vec![2]), (Topic::Predictions, vec![4, 6])] {
        let page = log.read(&t, topic, Position::Offset(1), &Filter::default(), 10).await.unwrap();
        assert!(page.records.iter().all(|r| r.entity["user_id"] == "stays"), "{page:?}");
        assert_eq!(offsets(&page), kept, "the others keep their offsets");
        assert_eq!(log.lag("gdpr", &t, topic).await.unwrap().pending, kept.len() as u64);
        let gone = Filter { entity: Some(("user_id".into(), "gone".into())), ..Filter::default() };
        let page = log.read(&t, topic, Position::Offset(1), &gone, 10).await.unwrap();
        assert!(page.records.is_empty(), "{page:?}");
    }
    log.compact().await.unwrap();
    let page =
        log.read(&t, Topic::Events, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(page.records.len(), 1);
    let d = log.fetch("gdpr", &t, Topic::Events, 10, Duration::ZERO).await.unwrap();
    assert_eq!(d.records.len(), 1);
    let d = log.fetch("gdpr", &t, Topic::Predictions, 10, Duration::ZERO).await.unwrap();
    assert_eq!(offsets(&Page { records: d.records.clone(), next: 0, end: true }), [4, 6]);
    let next = log.append(&t, Topic::Events, vec![event(None, "click", "stays", 8)]).await.unwrap();
    assert_eq!(next[0].offset, 8, "offsets are not reused");
}

macro_rules! event_log_conformance {
    ($make:expr) => {
        event_log_conformance!(@ $make; append_then_read, topics_share_offsets_but_not_records,
            ids_make_appends_idempotent, tenants_never_see_each_other, filters_by_type_entity_and_time,
            oversized_batch_writes_nothing, encoded_batches_read_back_as_events,
            concurrent_appends_get_distinct_offsets,
            consumer_groups_deliver_at_least_once,
            waiting_wakes_on_append, tombstones_hide_a_subject);
    };
    (@ $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(h) = $make {
                    $crate::conformance::$check(&h).await;
                    $crate::conformance::Harness::finish(h).await;
                }
            }
        )*
    };
}
pub(crate) use event_log_conformance;
