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
    clock.advance(Duration::from_secs(1800));
    log.append(&old, Topic::Events, vec![event(None, "click", "u1", 3)]).await.unwrap();
    let many: Vec<_> = (0..40).map(|n| event(None, "click", "u2", n)).collect();
    log.append(&big, Topic::Events, many).await.unwrap();
    clock.advance(Duration::from_secs(1801));

    let done = log.compact().await.unwrap();
    assert_eq!(done.expired, 2, "{done:?}");
    assert!(done.over_size > 0, "{done:?}");
    let kept =
        log.read(&old, Topic::Events, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert_eq!(kept.records.iter().map(|r| r.offset).collect::<Vec<_>>(), [3]);
    // The id of an expired event may come again.
    let again =
        log.append(&old, Topic::Events, vec![event(Some("a"), "click", "u1", 1)]).await.unwrap();
    assert_eq!((again[0].offset, again[0].duplicate), (4, false), "offsets go on, never reused");

    let rest =
        log.read(&big, Topic::Events, Position::Offset(1), &Filter::default(), 100).await.unwrap();
    assert!(!rest.records.is_empty() && rest.records.len() < 40, "{}", rest.records.len());
    assert_eq!(rest.records.last().unwrap().offset, 40, "the newest stay");
    let bytes: i64 = sqlx::query_scalar("SELECT SUM(size) FROM events WHERE tenant = ?")
        .bind(big.as_str())
        .fetch_one(&log.inner.reader)
        .await
        .unwrap();
    assert!(bytes <= 2_000, "{bytes}");
}
