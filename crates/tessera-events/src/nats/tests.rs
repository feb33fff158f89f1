//! The NATS log: the conformance suite against the machine's server (each
//! test under a prefix of its own) and what only JetStream does.
use super::*;
use crate::conformance::{Harness, event, event_log_conformance};

/// A NATS log under a prefix of its own, so each test has its own streams;
/// `None` (skip) when no NATS is configured for tests.
struct Nats {
    log: NatsLog,
    cfg: NatsConfig,
}

impl Nats {
    async fn new() -> Option<Self> {
        Self::with(Retention::default()).await
    }

    async fn with(retention: Retention) -> Option<Self> {
        let url = match std::env::var("TESSERA_TEST_NATS_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                assert!(
                    std::env::var("TESSERA_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "TESSERA_TEST_NATS_URL is not set but TESSERA_REQUIRE_SERVICES=1"
                );
                return None;
            }
        };
        let mut cfg = NatsConfig::new(url);
        cfg.prefix = format!("tt{}", tessera_core::ids::random_lower(10));
        cfg.retention = retention;
        let log = NatsLog::connect(cfg.clone()).await.unwrap();
        Some(Self { log, cfg })
    }
}

#[async_trait]
impl Harness for Nats {
    fn log(&self) -> &dyn EventLog {
        &self.log
    }

    async fn reopen(&self) -> Box<dyn EventLog> {
        Box::new(NatsLog::connect(self.cfg.clone()).await.unwrap())
    }

    /// Deletes the test's streams.
    async fn finish(self) {
        let prefix = format!("{}_", self.cfg.prefix.to_ascii_uppercase());
        let mut names = self.log.js.stream_names();
        let mut mine = Vec::new();
        while let Some(Ok(n)) = names.next().await {
            if n.starts_with(&prefix) {
                mine.push(n);
            }
        }
        for n in mine {
            let _ = self.log.js.delete_stream(n).await;
        }
    }
}

event_log_conformance!(Nats::new().await);

#[tokio::test]
async fn the_stream_carries_the_retention_and_a_readable_layout() {
    let retention = Retention {
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 20,
        dedupe_window: Duration::from_secs(7200),
    };
    let Some(h) = Nats::with(retention).await else { return };
    let t = TenantId::generate();
    h.log.append(&t, Topic::Events, vec![event(Some("e1"), "click", "u1", 1)]).await.unwrap();
    let mut stream = h.log.js.get_stream(h.log.stream_name(&t)).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.max_bytes, 1 << 20);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(3600), "at most the max age");
    assert_eq!(info.config.subjects, [format!("{}.{}.>", h.cfg.prefix, t.as_str())]);
    // Any NATS client can read it: the payload is the event as JSON.
    let raw = stream.get_raw_message(1).await.unwrap();
    assert_eq!(raw.subject.as_str(), format!("{}.{}.events", h.cfg.prefix, t.as_str()));
    let body: serde_json::Value = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!((body["id"].as_str(), body["type"].as_str()), (Some("e1"), Some("click")));
    h.finish().await;
}

#[tokio::test]
async fn a_batch_that_fails_part_way_is_rolled_back() {
    let Some(h) = Nats::new().await else { return };
    let t = TenantId::generate();
    // A stream that takes two messages and refuses the third.
    let mut cfg = h.log.stream_config(&t);
    cfg.max_messages = 2;
    cfg.discard = DiscardPolicy::New;
    h.log.js.create_stream(cfg).await.unwrap();
    h.log.streams.lock().unwrap().insert(t.clone());
    let batch: Vec<_> = (1..=3).map(|n| event(None, "click", "u1", n)).collect();
    let err = h.log.append(&t, Topic::Events, batch).await.unwrap_err();
    assert!(matches!(err, LogError::Unavailable(_)), "{err}");
    let page =
        h.log.read(&t, Topic::Events, Position::Offset(1), &Filter::default(), 10).await.unwrap();
    assert!(page.records.is_empty(), "{page:?}");
    h.finish().await;
}

/// Two replicas run the same group: each record is handled by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_group_share_its_records() {
    use crate::runtime::{Consumer, ConsumerConfig, Handler};
    use std::sync::Arc;

    /// Each handled offset, and which replica handled it.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(u64, usize)>>);
    struct Replica(Arc<Seen>, usize);
    #[async_trait]
    impl Handler for Replica {
        async fn handle(&self, _: &TenantId, _: Topic, records: &[Record]) -> Result<(), String> {
            self.0.0.lock().unwrap().extend(records.iter().map(|r| (r.offset, self.1)));
            Ok(())
        }
    }
    let Some(h) = Nats::new().await else { return };
    let t = TenantId::generate();
    let batch: Vec<_> = (0..400).map(|n| event(None, "click", "u1", n)).collect();
    h.log.append(&t, Topic::Events, batch).await.unwrap();
    let seen = Arc::new(Seen::default());
    let mut cfg = ConsumerConfig::new("features", &[Topic::Events]);
    cfg.batch = 20;
    cfg.idle_wait = Duration::from_millis(50);
    let a: Arc<dyn EventLog> = Arc::new(NatsLog::connect(h.cfg.clone()).await.unwrap());
    let b: Arc<dyn EventLog> = Arc::new(NatsLog::connect(h.cfg.clone()).await.unwrap());
    let ca = Consumer::new(a, cfg.clone(), Arc::new(Replica(seen.clone(), 0))).unwrap();
    let cb = Consumer::new(b, cfg, Arc::new(Replica(seen.clone(), 1))).unwrap();
    let done = async {
        while seen.0.lock().unwrap().len() < 400 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = ca.run() => unreachable!(),
        () = cb.run() => unreachable!(),
        () = done => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("only {} handled", seen.0.lock().unwrap().len()),
    }
    let got = seen.0.lock().unwrap().clone();
    let offsets: std::collections::BTreeSet<u64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!((got.len(), offsets.len()), (400, 400), "each record once");
    let by_b = got.iter().filter(|(_, r)| *r == 1).count();
    assert!(by_b > 0 && by_b < 400, "both replicas took part: b handled {by_b}");
    h.finish().await;
}

/// Appends together past the cap on acks in flight: each waits for its
/// own acks, none waits forever, all are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_past_the_ack_cap_all_complete() {
    let Some(mut h) = Nats::new().await else { return };
    h.cfg.max_acks_in_flight = 100;
    let log = NatsLog::connect(h.cfg.clone()).await.unwrap();
    let t = TenantId::generate();
    let appends = (0..8).map(|b| {
        let batch: Vec<_> = (0..500).map(|n| event(None, "click", "u1", b * 1000 + n)).collect();
        log.append(&t, Topic::Events, batch)
    });
    let done =
        tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(appends))
            .await
            .expect("no append waits forever");
    assert!(done.iter().all(Result::is_ok), "{:?}", done.iter().find(|r| r.is_err()));
    assert_eq!(log.next_offset(&t).await.unwrap(), 4001);
    h.finish().await;
}

/// A consumer pauses while NATS is away and goes on by itself when it
/// returns: everything appended before and after is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_pauses_through_an_outage_and_resumes() {
    use crate::runtime::{Consumer, ConsumerConfig, Handler};
    use std::sync::Arc;

    struct Count(Mutex<std::collections::BTreeSet<u64>>);
    #[async_trait]
    impl Handler for Count {
        async fn handle(&self, _: &TenantId, _: Topic, records: &[Record]) -> Result<(), String> {
            self.0.lock().unwrap().extend(records.iter().map(|r| r.offset));
            Ok(())
        }
    }
    if Nats::new().await.is_none() {
        return;
    }
    let mut nats = crate::testkit::OwnNats::start();
    let mut cfg = NatsConfig::new(nats.url());
    cfg.timeout = Duration::from_millis(500);
    let log: Arc<dyn EventLog> = Arc::new(NatsLog::connect(cfg).await.unwrap());
    let t = TenantId::generate();
    log.append(&t, Topic::Events, (0..5).map(|n| event(None, "click", "u1", n)).collect())
        .await
        .unwrap();
    let seen = Arc::new(Count(Mutex::default()));
    let mut ccfg = ConsumerConfig::new("features", &[Topic::Events]);
    ccfg.sweep = Duration::from_millis(100);
    ccfg.idle_wait = Duration::from_millis(50);
    let consumer = Consumer::new(log.clone(), ccfg, seen.clone()).unwrap();
    let until = |n: usize| {
        let seen = seen.clone();
        async move {
            while seen.0.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let run = consumer.run();
    tokio::pin!(run);
    tokio::select! {
        () = &mut run => unreachable!(),
        () = until(5) => {}
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!("not consumed before the outage"),
    }
    nats.down();
    let during = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(log.append(&t, Topic::Events, vec![event(None, "click", "u1", 9)]).await.is_err());
    };
    tokio::select! {
        () = &mut run => unreachable!(),
        () = during => {}
    }
    nats.up();
    let after = async {
        loop {
            if log
                .append(&t, Topic::Events, vec![event(Some("after"), "click", "u1", 10)])
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        until(6).await;
    };
    tokio::select! {
        () = &mut run => unreachable!(),
        () = after => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("did not resume: {:?}", seen.0.lock().unwrap()),
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_within_the_timeout() {
    let mut cfg = NatsConfig::new("nats://127.0.0.1:1");
    cfg.timeout = Duration::from_millis(500);
    let log = NatsLog::connect(cfg).await.unwrap();
    let started = std::time::Instant::now();
    let err =
        log.append(&TenantId::generate(), Topic::Events, vec![event(None, "click", "u1", 1)]).await;
    assert!(matches!(err, Err(LogError::Unavailable(_))), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
