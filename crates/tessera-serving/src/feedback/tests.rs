use std::sync::Arc;

use serde_json::json;
use tessera_core::audit::AuditActor;
use tessera_core::auth::SystemCtx;
use tessera_core::ids::prediction_id_at;
use tessera_core::tenant::NewTenant;
use tessera_events::NewEvent;
use tessera_events::embedded::EmbeddedLog;
use tessera_store::sqlite::SqliteStore;

use super::*;

struct Fixture {
    dir: std::path::PathBuf,
    log: Arc<EmbeddedLog>,
    store: SqliteStore,
    /// The log's clock: when it stores what is appended.
    clock: tessera_core::time::Clock,
    now: Timestamp,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The log's clock starts an hour before `now`.
async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("tessera-feedback-{}", TenantId::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = Timestamp::now();
    let clock = tessera_core::time::Clock::manual(Timestamp::from_millis(now.millis() - 3_600_000));
    let log = EmbeddedLog::open(
        &dir.join("events.db"),
        tessera_events::Retention::default(),
        clock.clone(),
    )
    .await
    .unwrap();
    let store = SqliteStore::open(&dir.join("meta.db")).await.unwrap();
    store.ensure_default_plans(&SystemCtx::bootstrap()).await.unwrap();
    Fixture { dir, log: Arc::new(log), store, clock, now }
}

async fn tenant(f: &Fixture, name: &str) -> TenantCtx {
    let actor = AuditActor { key_id: None, request_id: None };
    let t = f
        .store
        .create_tenant(
            &SystemCtx::bootstrap(),
            &NewTenant { name: name.into(), ..Default::default() },
            &actor,
        )
        .await
        .unwrap();
    SystemCtx::bootstrap().tenant(t.id)
}

/// A prediction record as the pipeline writes it, made at `ms`.
fn record(ms: i64, version: &str, predicted: Value) -> (String, NewEvent) {
    let id = prediction_id_at(ms);
    let e = NewEvent {
        id: Some(id.clone()),
        event_type: "prediction".into(),
        entity: [("prediction_id".to_owned(), id.clone())].into(),
        ts: Timestamp::from_millis(ms),
        properties: json!({
            "model": "sentiment",
            "version": format!("sentiment@{version}"),
            "input": "great food",
            "output": {"predicted": [predicted]},
        })
        .as_object()
        .cloned()
        .unwrap(),
    };
    (id, e)
}

fn label(id: &str, l: &str) -> Item {
    Item { prediction_id: id.into(), truth: Truth::Label(l.into()), index: 0, ts: None }
}

/// Appends `events` as the writer would: `after` ms past the first one's
/// time (the log's clock moves there, never back).
async fn append(f: &Fixture, ctx: &TenantCtx, events: Vec<NewEvent>, after: i64) {
    let at = events[0].ts.millis() + after;
    let by = at - f.clock.now().millis();
    f.clock.advance(Duration::from_millis(u64::try_from(by).expect("appends in time order")));
    f.log.append(ctx.tenant_id(), Topic::Predictions, events).await.unwrap();
}

#[tokio::test]
async fn joins_known_ids_and_reports_the_rest_per_item() {
    let f = fixture().await;
    let (a, b) = (tenant(&f, "a").await, tenant(&f, "b").await);
    let now = f.now;
    let (p1, e1) = record(now.millis() - 2_000, "1", json!("pos"));
    let (p2, e2) = record(now.millis() - 1_000, "2", json!("neg"));
    let (other, e3) = record(now.millis() - 1_500, "1", json!("pos"));
    append(&f, &a, vec![e1, e2], 100).await;
    append(&f, &b, vec![e3], 600).await;
    let fb = Feedback::new(Duration::from_secs(3600));
    let old = prediction_id_at(now.millis() - 7_200_000);
    let items = [
        label(&p1, "pos"),
        label(&p2, "pos"),
        label(&other, "pos"),
        label("prd_nonsense", "pos"),
        label(&old, "pos"),
    ];
    let got = fb.submit(&*f.log, &f.store, &a, &items, now).await.unwrap();
    use Status::*;
    assert_eq!(got, [Joined, Joined, Unknown, Unknown, TooLate]);
    // Two ids a second apart: one read of the log found both.
    assert_eq!(fb.reads.get(), 1);

    let rows = f.store.list_feedback(&a, "sentiment", None, Timestamp::from_millis(0), 10).await;
    let rows = rows.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].prediction_id, p1);
    assert_eq!(rows[0].version, "1");
    assert_eq!(rows[0].predicted, Some(Predicted::Label("pos".into())));
    assert_eq!(rows[0].input.as_deref(), Some("great food"));
    assert_eq!(rows[1].predicted_at, Timestamp::from_millis(now.millis() - 1_000));
    // The other tenant's prediction was not joined for anyone.
    let theirs = f.store.list_feedback(&b, "sentiment", None, Timestamp::from_millis(0), 10);
    assert!(theirs.await.unwrap().is_empty());
}

#[tokio::test]
async fn a_second_truth_replaces_the_first_and_quality_counts_it_once() {
    let f = fixture().await;
    let a = tenant(&f, "a").await;
    let now = f.now;
    let (p1, e1) = record(now.millis() - 500, "3", json!("pos"));
    append(&f, &a, vec![e1], 100).await;
    let fb = Feedback::new(Duration::from_secs(3600));
    let first = fb.submit(&*f.log, &f.store, &a, &[label(&p1, "neg")], now).await.unwrap();
    assert_eq!(first, [Status::Joined]);
    let items = [label(&p1, "neg"), label(&p1, "pos")];
    let again = fb.submit(&*f.log, &f.store, &a, &items, now).await.unwrap();
    assert_eq!(again, [Status::Updated, Status::Updated]);
    let groups = f.store.feedback_quality(&a, "sentiment", None, Timestamp::from_millis(0));
    let q = tessera_core::feedback::quality(&groups.await.unwrap());
    let c = q[0].classification.as_ref().unwrap();
    assert_eq!((q[0].version.as_str(), c.samples, c.accuracy), ("3", 1, 1.0));
}

/// Ids far apart in time are separate reads, each bounded to its window:
/// an id whose record is not there costs a read, not a scan of the log.
#[tokio::test]
async fn ids_far_apart_are_found_by_separate_bounded_reads() {
    let f = fixture().await;
    let a = tenant(&f, "a").await;
    let now = f.now;
    let (p1, e1) = record(now.millis() - 600_000, "1", json!(0.5));
    let (p2, e2) = record(now.millis() - 100, "1", json!(1.5));
    append(&f, &a, vec![e1], 100).await;
    append(&f, &a, vec![e2], 100).await;
    let fb = Feedback::new(Duration::from_secs(3600));
    let missing = prediction_id_at(now.millis() - 300_000);
    let items = [
        Item { prediction_id: p1, truth: Truth::Value(1.0), index: 0, ts: None },
        Item { prediction_id: missing, truth: Truth::Value(1.0), index: 0, ts: None },
        Item { prediction_id: p2, truth: Truth::Value(3.5), index: 0, ts: None },
    ];
    let got = fb.submit(&*f.log, &f.store, &a, &items, now).await.unwrap();
    assert_eq!(got, [Status::Joined, Status::Unknown, Status::Joined]);
    assert_eq!(fb.reads.get(), 3);
    let groups = f.store.feedback_quality(&a, "sentiment", Some("1"), Timestamp::from_millis(0));
    let q = tessera_core::feedback::quality(&groups.await.unwrap());
    let r = q[0].regression.as_ref().unwrap();
    // Errors 0.5 and 2.0.
    assert_eq!((r.samples, r.mae), (2, 1.25));
    assert!((r.rmse - ((0.25 + 4.0) / 2.0f64).sqrt()).abs() < 1e-12);
}

/// A shadow's record, keyed by the prediction it mirrored, made at `ms`.
fn shadow_record(of: &str, ms: i64, version: &str, predicted: Value) -> NewEvent {
    let (_, mut e) = record(ms, version, predicted);
    e.entity = [("prediction_id".to_owned(), of.to_owned())].into();
    e.properties.insert("tier".into(), json!("shadow"));
    e.properties.insert("shadow_of".into(), json!(of));
    e
}

/// Feedback on a prediction also judges its shadows' answers, as their
/// own versions; the answer counts only the items sent. Alone (a keyed
/// read) or in a group (a window read), shadows are found.
#[tokio::test]
async fn shadows_of_a_prediction_take_its_truth_under_their_versions() {
    let f = fixture().await;
    let a = tenant(&f, "a").await;
    let now = f.now;
    let (p1, e1) = record(now.millis() - 60_000, "1", json!("pos"));
    let s1 = shadow_record(&p1, now.millis() - 59_990, "2", json!("neg"));
    let (p2, e2) = record(now.millis() - 5_000, "1", json!("neg"));
    let (p3, e3) = record(now.millis() - 4_900, "1", json!("pos"));
    let s2 = shadow_record(&p2, now.millis() - 4_800, "2", json!("neg"));
    let s3 = shadow_record(&p3, now.millis() - 4_700, "2", json!("neg"));
    append(&f, &a, vec![e1, s1], 100).await;
    append(&f, &a, vec![e2, e3, s2, s3], 400).await;
    let fb = Feedback::new(Duration::from_secs(3600));
    let items = [label(&p1, "pos"), label(&p2, "neg"), label(&p3, "neg")];
    let got = fb.submit(&*f.log, &f.store, &a, &items, now).await.unwrap();
    assert_eq!(got, [Status::Joined; 3]);
    assert_eq!(fb.reads.get(), 2);
    let groups = f.store.feedback_quality(&a, "sentiment", None, Timestamp::from_millis(0));
    let q = tessera_core::feedback::quality(&groups.await.unwrap());
    let accuracy: Vec<(&str, u64, f64)> = q
        .iter()
        .map(|v| {
            let c = v.classification.as_ref().unwrap();
            (v.version.as_str(), c.samples, c.accuracy)
        })
        .collect();
    // Version 1 said pos, neg, pos (2 of 3 right); its shadow said neg
    // each time (2 of 3 right, the other two).
    assert_eq!(accuracy.len(), 2);
    assert_eq!((accuracy[0].0, accuracy[0].1), ("1", 3));
    assert_eq!((accuracy[1].0, accuracy[1].1), ("2", 3));
    assert!((accuracy[0].2 - 2.0 / 3.0).abs() < 1e-12 && (accuracy[1].2 - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn prediction_ids_give_their_time() {
    let id = prediction_id_at(1_700_000_000_123);
    assert_eq!(id_time(&id), Some(1_700_000_000_123));
    assert_eq!(id_time("prd_xyz"), None);
    assert_eq!(id_time(&id.replace("prd_", "evt_")), None);
}
