//! The cost of the control loop (issue 13's "controller cost"): the time
//! one rollout evaluation and one alert rule evaluation take, with many
//! tenants and models, on the embedded store and log (or PostgreSQL with
//! `--database-url`). Run by `bench/controllers.sh`, not by the tests.
//!
//! Set-up: `--tenants` tenants with `--models` classifiers each; every model
//! has a baseline and a validated candidate under a running rollout (steps
//! 5, 100; error rate, p99 and accuracy checks), two alert rules (p99 and
//! accuracy), `--records` prediction records in the log (a tenth from the
//! candidate) and 30 labelled predictions; plus the two built-in platform
//! budget rules, each over every tenant. Then every rollout and every rule
//! is evaluated once, as the controllers do, and timed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tessera_core::alert::AlertSpec;
use tessera_core::audit::AuditActor;
use tessera_core::auth::SystemCtx;
use tessera_core::feedback::{JoinedFeedback, Predicted, Truth};
use tessera_core::governance::{Check, Comparison, GateThresholds, Report};
use tessera_core::ids::prediction_id_at;
use tessera_core::model::NewModel;
use tessera_core::rollout::RolloutSpec;
use tessera_core::tenant::NewTenant;
use tessera_core::time::{Clock, Timestamp};
use tessera_events::{EventLog, NewEvent, Topic};
use tessera_serving::alerts::{Alerts, Sources, evaluate_due, new_rule};
use tessera_store::{KeyOwner, MetadataStore, ModelScope};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
}

fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (tenants, models, records) =
        (arg("--tenants", 1000), arg("--models", 5), arg("--records", 200));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetadataStore> = match text_arg("--database-url") {
        Some(url) => {
            let url = tessera_core::config::DatabaseUrl::parse(&url).unwrap();
            tessera_store::open(&url).await.unwrap()
        }
        None => Arc::new(
            tessera_store::sqlite::SqliteStore::open(&dir.path().join("meta.db")).await.unwrap(),
        ),
    };
    let log = tessera_events::embedded::EmbeddedLog::open(
        &dir.path().join("events.db"),
        tessera_events::Retention::default(),
        Clock::system(),
    )
    .await
    .unwrap();
    let sys = SystemCtx::bootstrap();
    let actor = AuditActor { key_id: Some("bench".into()), request_id: None };
    store.ensure_default_plans(&sys).await.unwrap();
    let t = GateThresholds::default();
    let passed = Report::new(
        vec![Check::new("accuracy", Some(0.95), t.accuracy, Comparison::AtLeast)],
        json!({}),
        t,
        None,
    );
    let started = Instant::now();
    let mut last_print = Instant::now();
    for ti in 0..tenants {
        let name = format!("bench-{ti}-{}", tessera_core::ids::random_lower(6));
        let tenant = store
            .create_tenant(&sys, &NewTenant { name, ..Default::default() }, &actor)
            .await
            .unwrap();
        let ctx = sys.tenant(tenant.id);
        let now = Timestamp::now();
        let mut events = Vec::new();
        let mut labelled = Vec::new();
        for mi in 0..models {
            let new = NewModel {
                name: format!("m{mi}"),
                task: "classification".into(),
                runtime: "linear".into(),
                base_model: None,
                segment: None,
                scope: None,
                config: None,
            };
            let model = store
                .create_model(ModelScope::Tenant(&ctx), &new, Some(("a", 1)), &actor)
                .await
                .unwrap();
            store
                .add_model_version(KeyOwner::Tenant(&ctx), &model, "b", 1, None, &actor)
                .await
                .unwrap();
            store
                .put_version_report(KeyOwner::Tenant(&ctx), &model, 2, &passed, &actor)
                .await
                .unwrap();
            let spec: RolloutSpec = serde_json::from_value(json!({"model": model.name, "candidate": 2,
                "steps": [5, 100], "interval": "1s",
                "checks": {"error_rate_max": 0.01, "p99_ms_max": 200, "accuracy_min": 0.8, "min_samples": 20}}))
            .unwrap();
            tessera_serving::rollouts::start(&*store, &ctx, &model, &spec, &actor, now)
                .await
                .unwrap();
            for (metric, op, threshold) in [("latency_p99_ms", ">", 200.0), ("accuracy", "<", 0.8)]
            {
                let spec: AlertSpec =
                    serde_json::from_value(json!({"name": format!("{metric}-{mi}"),
                    "metric": metric, "model": model.name, "op": op, "threshold": threshold,
                    "window": "5m", "severity": "warning", "min_samples": 10}))
                    .unwrap();
                let rule = new_rule(Some(ctx.tenant_id().clone()), spec, now);
                store.create_alert_rule(KeyOwner::Tenant(&ctx), &rule, &actor).await.unwrap();
            }
            for ri in 0..records {
                let id = prediction_id_at(now.millis() + (mi * records + ri) as i64);
                let version = if ri % 10 == 0 { 2 } else { 1 };
                if version == 2 && labelled.len() < (mi + 1) * 30 {
                    labelled.push(JoinedFeedback {
                        prediction_id: id.clone(),
                        model: model.name.clone(),
                        version: "2".into(),
                        predicted: Some(Predicted::Label("pos".into())),
                        truth: Truth::Label(if ri % 200 == 0 { "neg" } else { "pos" }.into()),
                        predicted_at: now,
                        received_at: now,
                        input: None,
                        entity: None,
                    });
                }
                events.push(NewEvent {
                    id: Some(id.clone()),
                    event_type: "prediction".into(),
                    entity: [("prediction_id".to_owned(), id)].into(),
                    ts: now,
                    properties:
                        json!({"model": model.name, "version": format!("{}@{version}", model.name),
                        "tier": "tenant", "latency_ms": 5.0 + (ri % 50) as f64, "cache": "miss",
                        "output": {"predicted": [if ri % 3 == 0 { "pos" } else { "neg" }]}})
                        .as_object()
                        .cloned()
                        .unwrap(),
                });
            }
        }
        for chunk in events.chunks(1000) {
            log.append(ctx.tenant_id(), Topic::Predictions, chunk.to_vec()).await.unwrap();
        }
        store.put_feedback(&ctx, &labelled).await.unwrap();
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "set-up: {}/{tenants} tenants, {:.0}s",
                ti + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // The built-in platform rules, as a server creates them at start.
    for (name, threshold) in [("budget-soft", 0.8), ("budget-spent", 1.0)] {
        let spec: AlertSpec = serde_json::from_value(json!({"name": name, "metric": "budget_used",
            "op": ">=", "threshold": threshold, "severity": "warning", "min_samples": 0}))
        .unwrap();
        let rule = new_rule(None, spec, Timestamp::now());
        store.create_alert_rule(KeyOwner::Platform(&sys), &rule, &actor).await.unwrap();
    }
    eprintln!(
        "set-up: {tenants} tenants x {models} models, {} records, in {:.0}s",
        tenants * models * records,
        started.elapsed().as_secs_f64()
    );

    // Every rollout evaluated once (they are due a second after the start).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let controller = tessera_serving::rollouts::Controller::default();
    let now = Timestamp::now();
    let t0 = Instant::now();
    let mut evaluated = 0;
    let mut ticks = Vec::new();
    loop {
        let t = Instant::now();
        let n = controller.tick(&*store, &log, &sys, now).await.unwrap();
        if n == 0 {
            break;
        }
        ticks.push(t.elapsed().as_secs_f64() / n as f64);
        evaluated += n;
    }
    let rollout_secs = t0.elapsed().as_secs_f64();
    let rollouts = store
        .list_rollouts(&sys.tenant(store.list_tenants(&sys).await.unwrap()[0].id.clone()), None)
        .await
        .unwrap();
    let advanced = rollouts.iter().filter(|r| r.step == 1).count();

    // Every alert rule evaluated once.
    let alerts = Alerts::new(Duration::from_secs(15));
    let src = Sources { store: &*store, log: &log, services: None };
    let now = Timestamp::now();
    let t1 = Instant::now();
    let mut rules = 0;
    let mut fired = 0;
    loop {
        let (n, notify) = evaluate_due(src, &alerts, &sys, now).await.unwrap();
        if n == 0 {
            break;
        }
        rules += n;
        fired += notify.len();
    }
    let alert_secs = t1.elapsed().as_secs_f64();
    ticks.sort_by(f64::total_cmp);
    println!("controller cost: {tenants} tenants x {models} models, {records} records per model");
    println!(
        "rollouts: {evaluated} evaluated in {rollout_secs:.2}s = {:.2} ms per rollout (per-batch p50 {:.2} ms, p99 {:.2} ms); first tenant: {advanced} of {} advanced",
        rollout_secs * 1e3 / evaluated.max(1) as f64,
        percentile(&ticks, 0.5) * 1e3,
        percentile(&ticks, 0.99) * 1e3,
        rollouts.len()
    );
    println!(
        "alerts: {rules} rules evaluated in {alert_secs:.2}s = {:.2} ms per rule ({fired} fired; 2 of them platform rules over {tenants} tenants each)",
        alert_secs * 1e3 / rules.max(1) as f64
    );
}
