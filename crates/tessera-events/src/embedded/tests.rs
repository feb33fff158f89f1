//! The embedded log: the conformance suite and what only it does (retention
//! by age and size under a manual clock).
use super::*;
use crate::conformance::{Harness, event, event_log_conformance};

struct Embedded {
    log: EmbeddedLog,
    dir: tempfile::TempDir,
}

impl Embedded {
    async fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let log =
            EmbeddedLog::open(&dir.path().join("events.db"), Retention::default(), Clock::system())
                .await
                .unwrap();
        Some(Self { log, dir })
    }
}

#[async_trait]
impl Harness for Embedded {
    fn log(&self) -> &dyn EventLog {
        &self.log
    }

    async fn reopen(&self) -> Box<dyn EventLog> {
        let path = self.dir.path().join("events.db");
        Box::new(EmbeddedLog::open(&path, Retention::default(), Clock::system()).await.unwrap())
    }

    async fn finish(self) {}
}

event_log_conformance!(Embedded::new().await);

#[tokio::test]
async fn retention_removes_by_age_and_by_size_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(Timestamp::from_millis(1_800_000_000_000));
    let retention = Retention {
        max_age: Duration::from_secs(3600),
        max_bytes: 2_000,
        dedupe_window: Duration::ZERO,
    };
    let log = EmbeddedLog::open(&dir.path().join("e.db"), retention, clock.clone()).await.unwrap();
    let (old, big) = (TenantId::generate(), TenantId::generate());
    log.append(
        &old,
        Topic::Events,
        vec![event(Some("a"), "click", "u1", 1), event(None, "click", "u1", 2)],
    )
    .await
    .unwrap();
    let packed: Vec<_> = (0..3).map(|n| event(None, "prediction", "u1", n)).collect();
    log.append(&old, Topic::Predictions, packed).await.unwrap();
    clock.advance(Duration::from_secs(1800));
    log.append(&old, Topic::Events, vec![event(None, "click", "u1", 3)]).await.unwrap();
    let many: Vec<_> = (0..40).map(|n| event(None, "click", "u2", n)).collect();
    log.append(&big, Topic::Events, many).await.unwrap();
    let packed: Vec<_> = (0..5).map(|n| event(None, "prediction", "u2", n)).collect();
    log.append(&big, Topic::Predictions, packed).await.unwrap();
    clock.advance(Duration::from_secs(1801));

    let done = log.compact().await.unwrap();
    assert_eq!(done.expired, 5, "two events and three packed predictions: {done:?}");
    assert!(done.over_size > 0, "{done:?}");
    let kept =
        log.read(&old, Topic::Events, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(kept.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [6]);
    // The id of an expired event may come again.
    let again =
        log.append(&old, Topic::Events, vec![event(Some("a"), "click", "u1", 1)]).await.unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (7, false), "offsets go on, never reused");

    let rest =
        log.read(&big, Topic::Events, Position::Offset(1), &Filter::default(), 100).await.unwrap();
    assert!(!rest.records.is_empty() && rest.records.len() < 40, "{}", rest.records.len());
    assert_eq!(rest.records.last().unwrap().offset, 40, "the newest stay");
    let newest = log
        .read(&big, Topic::Predictions, Position::Offset(1), &Filter::default(), 100)
        .await
        .unwrap();
    assert_eq!(newest.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [41, 42, 43, 44, 45]);
    let bytes: i64 = sqlx::query_scalar(
        "SELECT SUM(size) FROM (SELECT tenant, size FROM events UNION ALL SELECT tenant, size FROM blocks)
         WHERE tenant = ?",
    )
    .bind(big.as_str())
        .fetch_one(&log.inner.reader)
        .await
        .unwrap();
    assert!(bytes <= 2_000, "{bytes}");
}

/// Packed rows: pages cross rows, and a filter the row bytes cannot decide
/// scans a bounded number of rows per read, then hands on where it stopped.
#[tokio::test]
async fn packed_reads_page_across_rows_and_bound_their_scan() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(&dir.path().join("e.db"), Retention::default(), Clock::system())
        .await
        .unwrap();
    let t = TenantId::generate();
    for b in 0..300 {
        let mut batch =
            vec![event(None, "prediction", "other", b), event(None, "prediction", "other", b)];
        // Bytes that look like the subject's entity, in the properties only.
        batch[0].properties.insert("user_id".into(), serde_json::json!("wanted"));
        if b == 299 {
            batch[1].entity.insert("user_id".into(), "wanted".into());
        }
        log.append(&t, Topic::Predictions, batch).await.unwrap();
    }
    let all = Filter::default();
    let page = log.read(&t, Topic::Predictions, Position::Offset(5), &all, 7).await.unwrap();
    assert_eq!(
        page.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (5..12).collect::<Vec<_>>()
    );
    assert_eq!((page.next, page.end), (12, false));

    let wanted = Filter { entity: Some(("user_id".into(), "wanted".into())), ..Filter::default() };
    let first = log.read(&t, Topic::Predictions, Position::Offset(1), &wanted, 10).await.unwrap();
    assert!(first.records.is_empty() && !first.end, "{first:?}");
    assert!(first.next > 1 && first.next < 600, "{}", first.next);
    let rest =
        log.read(&t, Topic::Predictions, Position::Offset(first.next), &wanted, 10).await.unwrap();
    assert_eq!(rest.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [600]);
    assert!(rest.end);
    assert_eq!(rest.next, 601);
    let lag = log.lag("g", &t, Topic::Predictions).await.unwrap();
    assert_eq!(lag.pending, 600);
}
