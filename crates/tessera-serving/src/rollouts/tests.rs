use std::sync::Arc;

use serde_json::json;
use tessera_core::feedback::{JoinedFeedback, Predicted, Truth};
use tessera_core::governance::{Check, Comparison, GateThresholds, Report};
use tessera_core::ids::{TenantId, prediction_id_at};
use tessera_core::model::NewModel;
use tessera_core::rollout::DeploymentChange;
use tessera_core::tenant::NewTenant;
use tessera_events::NewEvent;
use tessera_events::embedded::EmbeddedLog;
use tessera_store::KeyOwner;
use tessera_store::sqlite::SqliteStore;

use super::*;

struct Fixture {
    dir: std::path::PathBuf,
    log: Arc<EmbeddedLog>,
    store: SqliteStore,
    /// The log's clock: when it stores what is appended.
    clock: tessera_core::time::Clock,
    ctx: TenantCtx,
    model: Model,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn actor() -> AuditActor {
    AuditActor { key_id: Some("k1".into()), request_id: None }
}

fn report(accuracy: f64) -> Report {
    let t = GateThresholds::default();
    Report::new(
        vec![Check::new("accuracy", Some(accuracy), t.accuracy, Comparison::AtLeast)],
        json!({}),
        t,
        None,
    )
}

/// A tenant's classifier `m` with versions 1 (passed), 2 (passed), 3
/// (failed its gate) and 4 (never validated), serving version 1.
async fn fixture(deployment: Option<&str>) -> Fixture {
    let dir = std::env::temp_dir().join(format!("tessera-rollouts-{}", TenantId::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = tessera_core::time::Clock::manual(Timestamp::from_millis(1_800_000_000_000));
    let log = EmbeddedLog::open(
        &dir.join("events.db"),
        tessera_events::Retention::default(),
        clock.clone(),
    )
    .await
    .unwrap();
    let store = SqliteStore::open(&dir.join("meta.db")).await.unwrap();
    let sys = SystemCtx::bootstrap();
    store.ensure_default_plans(&sys).await.unwrap();
    let t = store
        .create_tenant(&sys, &NewTenant { name: "acme".into(), ..Default::default() }, &actor())
        .await
        .unwrap();
    let ctx = sys.tenant(t.id);
    let new = NewModel {
        name: "m".into(),
        task: "classification".into(),
        runtime: "linear".into(),
        base_model: None,
        segment: None,
        scope: None,
        config: None,
    };
    let scope = tessera_store::ModelScope::Tenant(&ctx);
    let model = store.create_model(scope, &new, Some(("a1", 1)), &actor()).await.unwrap();
    for sha in ["a2", "a3", "a4"] {
        store
            .add_model_version(KeyOwner::Tenant(&ctx), &model, sha, 1, None, &actor())
            .await
            .unwrap();
    }
    for (v, acc) in [(1, 0.9), (2, 0.9), (3, 0.1)] {
        store
            .put_version_report(KeyOwner::Tenant(&ctx), &model, v, &report(acc), &actor())
            .await
            .unwrap();
    }
    if let Some(d) = deployment {
        store.put_deployment(KeyOwner::Tenant(&ctx), &model, d, &actor()).await.unwrap();
    }
    Fixture { dir, log: Arc::new(log), store, clock, ctx, model }
}

fn spec(candidate: i64, steps: serde_json::Value, checks: serde_json::Value) -> RolloutSpec {
    serde_json::from_value(json!({"model": "m", "candidate": candidate, "steps": steps,
        "interval": "10s", "checks": checks, "failures_before_rollback": 2}))
    .unwrap()
}

/// `n` answers of `version` at the log's clock (shadows when `shadow`),
/// with `latency_ms` and the label `predicted`.
async fn traffic(
    f: &Fixture,
    version: i64,
    shadow: bool,
    n: usize,
    latency: f64,
    predicted: &str,
) -> Vec<String> {
    let now = f.clock.now();
    let mut ids = Vec::new();
    let events = (0..n)
        .map(|i| {
            let id = prediction_id_at(now.millis() + i as i64);
            ids.push(id.clone());
            let mut p = json!({"model": "m", "version": format!("m@{version}"), "tier": "tenant",
                "latency_ms": latency, "cache": "miss", "output": {"predicted": [predicted]}});
            if shadow {
                p["tier"] = json!("shadow");
                p["shadow_of"] = json!("prd_x");
                p["same_output"] = json!(predicted == "pos");
            }
            NewEvent {
                id: Some(id.clone()),
                event_type: TYPE.into(),
                entity: [("prediction_id".to_owned(), id)].into(),
                ts: now,
                properties: p.as_object().cloned().unwrap(),
            }
        })
        .collect();
    f.log.append(f.ctx.tenant_id(), Topic::Predictions, events).await.unwrap();
    ids
}

async fn failures(f: &Fixture, version: i64, n: usize) {
    let now = f.clock.now();
    let events = (0..n)
        .map(|i| NewEvent {
            id: Some(prediction_id_at(now.millis() + i as i64)),
            event_type: ERROR_TYPE.into(),
            entity: Default::default(),
            ts: now,
            properties: json!({"model": "m", "version": format!("m@{version}"), "tier": "tenant",
                "error": "model m took longer than 100 ms"})
            .as_object()
            .cloned()
            .unwrap(),
        })
        .collect();
    f.log.append(f.ctx.tenant_id(), Topic::Predictions, events).await.unwrap();
}

/// Feedback on `ids` of `version`: the first `right` of them correct.
async fn feedback(f: &Fixture, version: i64, ids: &[String], right: usize) {
    let now = f.clock.now();
    let rows: Vec<JoinedFeedback> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| JoinedFeedback {
            prediction_id: id.clone(),
            model: "m".into(),
            version: version.to_string(),
            predicted: Some(Predicted::Label("pos".into())),
            truth: Truth::Label(if i < right { "pos" } else { "neg" }.into()),
            predicted_at: now,
            received_at: now,
            input: None,
            entity: None,
        })
        .collect();
    f.store.put_feedback(&f.ctx, &rows).await.unwrap();
}

async fn deployment(f: &Fixture) -> Option<Deployment> {
    let view = ModelView::Tenant { ctx: &f.ctx, segment: None };
    let spec = f.store.get_deployment(view, &f.model).await.unwrap();
    spec.map(|s| serde_json::from_str(&s).unwrap())
}

async fn step(f: &Fixture, c: &Controller) -> Rollout {
    f.clock.advance(Duration::from_secs(10));
    let n = c.tick(&f.store, &*f.log, &SystemCtx::bootstrap(), f.clock.now()).await.unwrap();
    assert_eq!(n, 1, "one rollout evaluated");
    let all = f.store.list_rollouts(&f.ctx, None).await.unwrap();
    all.into_iter().next().unwrap()
}

async fn begin(
    f: &Fixture,
    candidate: i64,
    steps: serde_json::Value,
    checks: serde_json::Value,
) -> Result<Rollout, ServeError> {
    let spec = spec(candidate, steps, checks);
    start(&f.store, &f.ctx, &f.model, &spec, &actor(), f.clock.now()).await
}

const BASELINE: &str = r#"{"targets":[{"version":1,"weight":100}],"fallbacks":["backup"]}"#;

#[tokio::test]
async fn a_candidate_must_exist_and_have_passed_its_gate() {
    let f = fixture(Some(BASELINE)).await;
    let failed = begin(&f, 3, json!([5, 100]), json!({}));
    match failed.await.unwrap_err() {
        ServeError::GateFailed { failing, .. } => assert_eq!(failing[0].name, "accuracy"),
        e => panic!("{e:?}"),
    }
    let unvalidated = begin(&f, 4, json!([5, 100]), json!({}));
    assert!(
        matches!(unvalidated.await.unwrap_err(), ServeError::Conflict(m) if m.contains("never validated"))
    );
    let missing = begin(&f, 9, json!([5, 100]), json!({}));
    assert!(
        matches!(missing.await.unwrap_err(), ServeError::Invalid { param: Some(p), .. } if p == "candidate")
    );
    let serving = begin(&f, 1, json!([5, 100]), json!({}));
    assert!(
        matches!(serving.await.unwrap_err(), ServeError::Conflict(m) if m.contains("already takes"))
    );
    // A split deployment is not a starting point.
    let split = r#"{"targets":[{"version":1,"weight":50},{"version":2,"weight":50}]}"#;
    f.store.put_deployment(KeyOwner::Tenant(&f.ctx), &f.model, split, &actor()).await.unwrap();
    let e = begin(&f, 2, json!([5, 100]), json!({}));
    assert!(matches!(e.await.unwrap_err(), ServeError::Conflict(m) if m.contains("2 ways")));
}

/// A good candidate: shadow answers agree and are right, then its live
/// share holds; each step moves the weights, the last promotes it.
#[tokio::test]
async fn a_good_candidate_advances_step_by_step_and_is_promoted() {
    let f = fixture(Some(BASELINE)).await;
    let c = Controller::default();
    let checks = json!({"error_rate_max": 0.05, "p99_ms_max": 200, "accuracy_min": 0.8,
        "min_samples": 20, "agreement_min": 0.9, "drift_max": 0.2});
    let r = begin(&f, 2, json!(["shadow", 50, 100]), checks).await.unwrap();
    assert_eq!(r.primary, VersionSel::Number(1));
    let d = deployment(&f).await.unwrap();
    assert_eq!((d.targets.len(), d.shadow.len(), d.fallbacks.len()), (1, 1, 1));

    // No traffic yet: waiting, nothing moves.
    let r = step(&f, &c).await;
    assert_eq!((r.step, r.failures), (0, 0));
    assert_eq!(r.history.last().unwrap().event, "waiting");

    traffic(&f, 1, false, 40, 20.0, "pos").await;
    let shadows = traffic(&f, 2, true, 40, 30.0, "pos").await;
    feedback(&f, 2, &shadows[..25], 24).await;
    let r = step(&f, &c).await;
    assert_eq!(r.step, 1, "{:?}", r.history.last());
    let d = deployment(&f).await.unwrap();
    assert_eq!(d.targets.iter().map(|t| t.weight).collect::<Vec<_>>(), [50, 50]);
    assert!(d.shadow.is_empty());

    traffic(&f, 1, false, 40, 20.0, "pos").await;
    let live = traffic(&f, 2, false, 40, 25.0, "pos").await;
    feedback(&f, 2, &live[..20], 19).await;
    let r = step(&f, &c).await;
    assert_eq!(r.step, 2);
    let checks: Vec<(&str, Option<bool>)> = r
        .history
        .iter()
        .rev()
        .nth(1)
        .unwrap()
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.passed))
        .collect();
    assert_eq!(
        checks,
        [
            ("requests", Some(true)),
            ("error_rate", Some(true)),
            ("p99_ms", Some(true)),
            ("accuracy", Some(true)),
            ("drift", Some(true))
        ]
    );

    traffic(&f, 1, false, 40, 20.0, "pos").await;
    let live = traffic(&f, 2, false, 40, 25.0, "pos").await;
    feedback(&f, 2, &live[..20], 20).await;
    let r = step(&f, &c).await;
    assert_eq!(r.state, RolloutState::Promoted);
    let view = ModelView::Tenant { ctx: &f.ctx, segment: None };
    let aliases = f.store.list_aliases(view, &f.model).await.unwrap();
    assert_eq!(
        aliases.iter().map(|a| (a.alias.as_str(), a.version)).collect::<Vec<_>>(),
        [("champion", 2)]
    );
    let d = deployment(&f).await.unwrap();
    assert_eq!(d.targets.len(), 1);
    assert_eq!((d.targets[0].version.clone(), d.fallbacks.len()), (VersionSel::Number(2), 1));
    // Done: nothing more to claim.
    f.clock.advance(Duration::from_secs(60));
    assert_eq!(c.tick(&f.store, &*f.log, &SystemCtx::bootstrap(), f.clock.now()).await.unwrap(), 0);
}

/// A bad candidate: right in shadow, then its live answers are wrong and
/// fail; two failures in a row put the baseline back.
#[tokio::test]
async fn a_bad_candidate_rolls_back_after_failures_in_a_row() {
    let f = fixture(None).await;
    let c = Controller::default();
    let checks = json!({"error_rate_max": 0.1, "accuracy_min": 0.8, "min_samples": 10});
    let r = begin(&f, 2, json!([10, 100]), checks).await.unwrap();
    // No deployment before: the primary is what live traffic goes to, the
    // newest other version that did not fail its gate (4, never validated).
    assert_eq!(r.primary, VersionSel::Number(4));
    assert_eq!(deployment(&f).await.unwrap().targets[1].weight, 10);

    let live = traffic(&f, 2, false, 20, 25.0, "pos").await;
    feedback(&f, 2, &live, 5).await;
    let r = step(&f, &c).await;
    assert_eq!((r.failures, r.state), (1, RolloutState::Running));
    let failed = r.last_checks.iter().find(|c| c.name == "accuracy").unwrap();
    assert_eq!((failed.value, failed.passed, failed.samples), (Some(0.25), Some(false), 20));

    // Errors now, too.
    traffic(&f, 2, false, 5, 25.0, "pos").await;
    failures(&f, 2, 5).await;
    let r = step(&f, &c).await;
    assert_eq!(r.state, RolloutState::RolledBack);
    let rate = r.last_checks.iter().find(|c| c.name == "error_rate").unwrap();
    assert_eq!(rate.value, Some(0.5));
    // No deployment before: all traffic pinned to the primary, so the
    // newest version (which may be the candidate) does not take it.
    let d = deployment(&f).await.unwrap();
    assert_eq!((d.targets.len(), &d.targets[0].version), (1, &VersionSel::Number(4)));
    let events: Vec<&str> = r.history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(events, ["started", "failed", "failed", "rolled_back"]);
    let audit = f
        .store
        .list_audit(
            tessera_store::AuditScope::Tenant(&f.ctx),
            tessera_store::AuditQuery { since: None, limit: 100 },
        )
        .await
        .unwrap();
    let actions: Vec<&str> =
        audit.iter().map(|e| e.action.as_str()).filter(|a| a.starts_with("rollout.")).collect();
    assert_eq!(actions.iter().filter(|a| **a == "rollout.check_failed").count(), 2, "{actions:?}");
    assert!(actions.contains(&"rollout.rollback") && actions.contains(&"rollout.start"));
}

/// One replica evaluates a due rollout; a paused one is not evaluated,
/// and a pause written meanwhile wins over the controller's step.
#[tokio::test]
async fn one_replica_evaluates_and_a_pause_stops_the_controller() {
    let f = fixture(Some(BASELINE)).await;
    let (a, b) = (Controller::default(), Controller::default());
    let r = begin(&f, 2, json!([50, 100]), json!({})).await.unwrap();
    traffic(&f, 2, false, 10, 25.0, "pos").await;
    f.clock.advance(Duration::from_secs(10));
    let now = f.clock.now();
    let sys = SystemCtx::bootstrap();
    // Both look at once: the store gives the lease to one.
    let (x, y) =
        tokio::join!(a.tick(&f.store, &*f.log, &sys, now), b.tick(&f.store, &*f.log, &sys, now));
    assert_eq!(x.unwrap() + y.unwrap(), 1);
    let r2 = f.store.get_rollout(&f.ctx, &r.id).await.unwrap();
    assert_eq!(r2.step, 1);

    let paused = control(&f.store, &f.ctx, &r.id, "pause", &actor()).await.unwrap();
    assert_eq!(paused.state, RolloutState::Paused);
    f.clock.advance(Duration::from_secs(60));
    assert_eq!(a.tick(&f.store, &*f.log, &sys, f.clock.now()).await.unwrap(), 0);
    let e = control(&f.store, &f.ctx, &r.id, "pause", &actor()).await.unwrap_err();
    assert!(matches!(e, ServeError::Conflict(_)));
    let aborted = control(&f.store, &f.ctx, &r.id, "abort", &actor()).await.unwrap();
    assert_eq!(aborted.state, RolloutState::Aborted);
    let d = deployment(&f).await.unwrap();
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        serde_json::to_value(serde_json::from_str::<Deployment>(BASELINE).unwrap()).unwrap()
    );
    // A write made on what the controller read before the pause is refused.
    let stale = r2.evaluate(Vec::new(), f.clock.now());
    assert_ne!(stale.deployment, DeploymentChange::Keep);
    assert!(!f.store.save_rollout(&f.ctx, &stale, None, &actor()).await.unwrap());
}
