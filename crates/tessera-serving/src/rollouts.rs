//! Rollouts (L4): starting one (the candidate vetted, the deployment it
//! starts from and the primary it shares traffic with), a person's pause,
//! resume and abort, and the controller that evaluates due rollouts.
//!
//! Every replica runs the controller; a due rollout is claimed with a lease
//! in the store, so one replica evaluates it at a time and another takes
//! over when the lease runs out. An evaluation measures the candidate's own
//! traffic since the last one from the prediction records (its shadow
//! answers in the shadow step, its live answers after), its labelled
//! predictions since the step began from the feedback table, and writes
//! the decision ([`Rollout::evaluate`]) with its deployment change in one
//! transaction, if nobody wrote the rollout meanwhile.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tessera_core::audit::AuditActor;
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::governance::Gate;
use tessera_core::model::{Deployment, Model, VersionSel};
use tessera_core::rollout::{
    CHAMPION, CheckValue, Rollout, RolloutSpec, RolloutState, RolloutWrite, Step, check,
    new_rollout_id,
};
use tessera_core::time::Timestamp;
use tessera_events::{EventLog, Filter, Position, Topic};
use tessera_store::{MetadataStore, ModelView, StoreError};
use tessera_training::drift;

use crate::inference::ServeError;
use crate::inference::resolve::gate_refusal;
use crate::predictions::{ERROR_TYPE, TYPE};

/// How long a claimed rollout stays this replica's while it evaluates
/// (the write hands it back; a replica that dies holding it delays the
/// next evaluation by at most this). Correctness does not rest on it: a
/// write on a revision another replica moved on is refused.
const LEASE: Duration = Duration::from_secs(3);
/// How often the controller looks for due rollouts.
const TICK: Duration = Duration::from_secs(1);
/// Prediction records read per evaluation at most (a sample beyond).
const MAX_RECORDS: usize = 50_000;
/// Predictions on each side before drift is judged.
const MIN_DRIFT_SAMPLES: usize = 30;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `advanced`, `promoted`, `failed`, `rolled_back`, `waiting`, `passed`, `error`, `lost`.
    outcome: String,
}

/// The controller of this replica: its lease owner name and its counters.
pub struct Controller {
    owner: String,
    evaluations: Family<OutcomeLabels, Counter>,
    seconds: Histogram,
}

impl Default for Controller {
    fn default() -> Self {
        Self {
            owner: format!("replica-{}", tessera_core::ids::random_lower(10)),
            evaluations: Family::default(),
            seconds: Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        }
    }
}

impl Controller {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tessera_rollout_evaluations",
            "Rollout evaluations by this replica, by what they led to.",
            self.evaluations.clone(),
        );
        r.register(
            "tessera_rollout_evaluation_seconds",
            "Time one rollout evaluation took (measuring and writing).",
            self.seconds.clone(),
        );
    }

    fn count(&self, outcome: &str) {
        self.evaluations.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    /// Evaluates every rollout due at `now` this replica can claim; how
    /// many it wrote.
    pub async fn tick(
        &self,
        store: &dyn MetadataStore,
        log: &dyn EventLog,
        sys: &SystemCtx,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let due = store.claim_rollouts(sys, &self.owner, now, lease).await?;
        let mut written = 0;
        for (tenant, r) in due {
            let started = Instant::now();
            let ctx = sys.tenant(tenant);
            let id = r.id.clone();
            let mut write = match measure(store, log, &ctx, &r, now).await {
                Ok(checks) => r.evaluate(checks, now),
                Err(e) => {
                    // Not the candidate's fault: logged, judged next time.
                    tracing::warn!(rollout = %id, error = %e, "could not measure a rollout");
                    self.count("error");
                    errored(r, &e, now)
                }
            };
            // What this evaluation added, at its end, is signed by this replica.
            for h in write.rollout.history.iter_mut().rev() {
                if h.at != now || h.by.is_some() {
                    break;
                }
                h.by = Some(self.owner.clone());
            }
            let outcome = write.rollout.history.last().map_or("passed", |h| h.event.as_str());
            let outcome = outcome.to_owned();
            match store.save_rollout(&ctx, &write, Some(&self.owner), &controller_actor()).await {
                Ok(true) => {
                    written += 1;
                    self.count(&outcome);
                    if outcome != "waiting" && outcome != "passed" {
                        tracing::info!(rollout = %id, model = %write.rollout.model,
                            step = %write.rollout.current().label(), outcome = %outcome, "rollout");
                    }
                }
                // Paused, aborted or taken over meanwhile: their write stands.
                Ok(false) => self.count("lost"),
                Err(e) => {
                    tracing::warn!(rollout = %id, error = %e, "could not write a rollout step")
                }
            }
            self.seconds.observe(started.elapsed().as_secs_f64());
        }
        Ok(written)
    }
}

/// A measurement that failed: noted in the history, evaluated again next
/// interval, no failure counted.
fn errored(mut r: Rollout, e: &ServeError, now: Timestamp) -> RolloutWrite {
    r.next_evaluation_at = now.plus_millis(r.interval_ms);
    let step = r.current().label();
    r.log(tessera_core::rollout::HistoryEntry {
        at: now,
        event: "error".into(),
        step,
        checks: Vec::new(),
        detail: Some(format!("could not measure: {e}")),
        by: None,
    });
    RolloutWrite {
        rollout: r,
        deployment: tessera_core::rollout::DeploymentChange::Keep,
        promote: false,
        audit: Vec::new(),
    }
}

fn controller_actor() -> AuditActor {
    AuditActor { key_id: Some("system:rollouts".into()), request_id: None }
}

/// The controller's loop on this replica, until shutdown.
pub async fn run(s: crate::Services, sys: SystemCtx) {
    tracing::info!(owner = %s.rollouts().owner(), "rollout controller started");
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = s.rollouts().tick(s.store(), &**s.events(), &sys, Timestamp::now()).await {
            tracing::warn!(error = %e, "could not claim due rollouts");
        }
    }
}

/// Starts a rollout of `model` (the tenant's own): the candidate must
/// exist and have passed its gate (or been let through by an admin); the
/// deployment it starts from has one target, which becomes the primary (or,
/// with none, `champion`, else the newest other version that may serve).
pub async fn start(
    store: &dyn MetadataStore,
    ctx: &TenantCtx,
    model: &Model,
    spec: &RolloutSpec,
    actor: &AuditActor,
    now: Timestamp,
) -> Result<Rollout, ServeError> {
    let interval =
        spec.validate().map_err(|e| ServeError::Invalid { message: e.message, param: e.param })?;
    if model.tenant_id.as_ref() != Some(ctx.tenant_id()) {
        return Err(ServeError::NotFound(format!("model {} not found", model.name)));
    }
    let view = ModelView::Tenant { ctx, segment: None };
    let versions = store.list_model_versions(view, model).await?;
    let aliases = store.list_aliases(view, model).await?;
    let alias = |a: &str| aliases.iter().find(|x| x.alias == a).map(|x| x.version);
    let candidate = spec.candidate.resolve(alias).ok_or_else(|| {
        ServeError::invalid(
            "candidate",
            format!("model {} has no alias {}", model.name, spec.candidate),
        )
    })?;
    let Some(version) = versions.iter().find(|v| v.version == candidate) else {
        return Err(ServeError::invalid(
            "candidate",
            format!("model {} has no version {candidate}", model.name),
        ));
    };
    match version.gate {
        Some(Gate::Passed | Gate::Overridden) => {}
        Some(Gate::Failed) => return Err(gate_refusal(store, view, model, candidate).await),
        None => {
            return Err(ServeError::Conflict(format!(
                "version {candidate} of {} was never validated; a rollout needs a candidate that passed its gate \
                 (POST /v1/models/{}/versions/{candidate}/validate)",
                model.name, model.name
            )));
        }
    }
    let baseline = store.get_deployment(view, model).await?;
    let primary = match baseline.as_deref().map(serde_json::from_str::<Deployment>) {
        Some(Ok(d)) => match d.targets.as_slice() {
            [only] => only.version.clone(),
            more => {
                return Err(ServeError::Conflict(format!(
                    "the deployment of {} splits traffic {} ways; a rollout starts from one target",
                    model.name,
                    more.len()
                )));
            }
        },
        Some(Err(e)) => return Err(ServeError::Internal(format!("stored deployment: {e}"))),
        None => match alias(CHAMPION) {
            Some(_) => VersionSel::Alias(CHAMPION.into()),
            None => versions
                .iter()
                .rev()
                .find(|v| v.version != candidate && Gate::allows_traffic(v.gate))
                .map(|v| VersionSel::Number(v.version))
                .ok_or_else(|| {
                    ServeError::Conflict(format!(
                        "model {} has no other version to roll out from",
                        model.name
                    ))
                })?,
        },
    };
    if primary.resolve(alias) == Some(candidate) {
        return Err(ServeError::Conflict(format!(
            "version {candidate} already takes all of {}'s traffic",
            model.name
        )));
    }
    let rollout = Rollout {
        id: new_rollout_id(),
        model: model.name.clone(),
        model_id: model.id.clone(),
        candidate,
        primary,
        steps: spec.steps.clone(),
        interval: spec.interval.clone(),
        interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
        checks: spec.checks.clone(),
        failures_before_rollback: spec.failures_before_rollback,
        state: RolloutState::Running,
        step: 0,
        failures: 0,
        step_started_at: now,
        evaluated_at: now,
        next_evaluation_at: now,
        last_checks: Vec::new(),
        history: Vec::new(),
        baseline,
        created_at: now,
        updated_at: now,
        created_by: actor.key_id.clone(),
        revision: 1,
    };
    let write = rollout.start(now);
    store.create_rollout(ctx, &write, actor).await?;
    Ok(write.rollout)
}

/// A person's `pause`, `resume` or `abort`, written over the controller's
/// latest state (read again if the controller wrote meanwhile).
pub async fn control(
    store: &dyn MetadataStore,
    ctx: &TenantCtx,
    id: &str,
    action: &str,
    actor: &AuditActor,
) -> Result<Rollout, ServeError> {
    for _ in 0..5 {
        let r = store.get_rollout(ctx, id).await?;
        let write = r.control(action, Timestamp::now()).map_err(ServeError::Conflict)?;
        if store.save_rollout(ctx, &write, None, actor).await? {
            return store.get_rollout(ctx, id).await.map_err(ServeError::from);
        }
    }
    Err(ServeError::Unavailable(format!("rollout {id} kept changing; try again")))
}

/// What a version's records in a window show.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) answers: u64,
    pub(crate) errors: u64,
    latencies: Vec<f64>,
    same: u64,
    compared: u64,
    labels: Vec<String>,
    values: Vec<f64>,
}

impl Traffic {
    pub(crate) fn add(&mut self, event_type: &str, p: &serde_json::Map<String, Value>) {
        if event_type == ERROR_TYPE {
            self.errors += 1;
            return;
        }
        self.answers += 1;
        if p.get("cache").and_then(Value::as_str) != Some("hit")
            && let Some(ms) = p.get("latency_ms").and_then(Value::as_f64)
        {
            self.latencies.push(ms);
        }
        if let Some(same) = p.get("same_output").and_then(Value::as_bool) {
            self.compared += 1;
            self.same += u64::from(same);
        }
        let predicted = p.get("output").and_then(|o| o.get("predicted")).and_then(Value::as_array);
        for v in predicted.into_iter().flatten() {
            match v {
                Value::String(l) => self.labels.push(l.clone()),
                Value::Number(n) => self.values.extend(n.as_f64()),
                _ => {}
            }
        }
    }

    pub(crate) fn p99(&mut self) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort_by(f64::total_cmp);
        // Nearest rank.
        let rank = (0.99 * self.latencies.len() as f64).ceil() as usize;
        Some(self.latencies[rank.clamp(1, self.latencies.len()) - 1])
    }
}

/// Calls `each(type, properties, model, version, shadow)` for the
/// tenant's answer and failure records (of `model`, or of every model)
/// stored in `[from, to]` (at most [`MAX_RECORDS`]).
pub(crate) async fn each_record(
    log: &dyn EventLog,
    tenant: &tessera_core::ids::TenantId,
    model: Option<&str>,
    from: Timestamp,
    to: Timestamp,
    mut each: impl FnMut(&str, &serde_json::Map<String, Value>, &str, Option<i64>, bool),
) -> Result<(), ServeError> {
    let filter = Filter { until: Some(to), ..Filter::default() };
    let mut at = Position::Time(from);
    let mut read = 0;
    loop {
        let page = log
            .read(tenant, Topic::Predictions, at, &filter, 1000)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))?;
        read += page.records.len();
        for rec in &page.records {
            let p = &rec.properties;
            let Some(m) = p.get("model").and_then(Value::as_str) else { continue };
            if (rec.event_type != TYPE && rec.event_type != ERROR_TYPE)
                || model.is_some_and(|want| want != m)
            {
                continue;
            }
            let shadow = p.get("tier").and_then(Value::as_str) == Some("shadow");
            each(&rec.event_type, p, m, version_of(p), shadow);
        }
        if page.end || read >= MAX_RECORDS {
            return Ok(());
        }
        at = Position::Offset(page.next);
    }
}

/// The number after the `@` of a record's `model@version`.
fn version_of(p: &serde_json::Map<String, Value>) -> Option<i64> {
    let v = p.get("version")?.as_str()?;
    v.rsplit_once('@').map_or(v, |(_, n)| n).parse().ok()
}

/// The candidate's checks at `now`: its traffic since the last evaluation
/// (shadow answers in the shadow step, live answers after) and its
/// labelled predictions since the step began.
pub async fn measure(
    store: &dyn MetadataStore,
    log: &dyn EventLog,
    ctx: &TenantCtx,
    r: &Rollout,
    now: Timestamp,
) -> Result<Vec<CheckValue>, ServeError> {
    let shadow_step = r.current() == Step::Shadow;
    let primary = match &r.primary {
        VersionSel::Number(v) => Some(*v),
        VersionSel::Alias(a) => {
            let view = ModelView::Tenant { ctx, segment: None };
            let model = store.resolve_model(view, &r.model).await?;
            let aliases = store.list_aliases(view, &model).await?;
            aliases.iter().find(|x| &x.alias == a).map(|x| x.version)
        }
    };
    let (mut cand, mut prim) = (Traffic::default(), Traffic::default());
    each_record(
        log,
        ctx.tenant_id(),
        Some(&r.model),
        r.evaluated_at,
        now,
        |kind, p, _, version, shadow| {
            if version == Some(r.candidate) && shadow == shadow_step {
                cand.add(kind, p);
            } else if version.is_some() && version == primary && !shadow {
                prim.add(kind, p);
            }
        },
    )
    .await?;
    let c = &r.checks;
    let attempts = cand.answers + cand.errors;
    let mut checks =
        vec![check("requests", (attempts > 0).then_some(attempts as f64), 1.0, false, attempts)];
    if let Some(max) = c.error_rate_max {
        let rate = (attempts > 0).then(|| cand.errors as f64 / attempts as f64);
        checks.push(check("error_rate", rate, max, true, attempts));
    }
    if let Some(max) = c.p99_ms_max {
        let n = cand.latencies.len() as u64;
        checks.push(check("p99_ms", cand.p99(), max, true, n));
    }
    if shadow_step && let Some(min) = c.agreement_min {
        let share = (cand.compared > 0).then(|| cand.same as f64 / cand.compared as f64);
        checks.push(check("agreement", share, min, false, cand.compared));
    }
    if c.accuracy_min.is_some() || c.mae_max.is_some() {
        let version = r.candidate.to_string();
        let groups =
            store.feedback_quality(ctx, &r.model, Some(&version), r.step_started_at).await?;
        let q = tessera_core::feedback::quality(&groups);
        let q = q.iter().find(|v| v.version == version);
        if let Some(min) = c.accuracy_min {
            let cls = q.and_then(|v| v.classification.as_ref());
            let n = cls.map_or(0, |x| x.samples);
            let value = cls.filter(|x| x.samples >= c.min_samples).map(|x| x.accuracy);
            checks.push(check("accuracy", value, min, false, n));
        }
        if let Some(max) = c.mae_max {
            let reg = q.and_then(|v| v.regression.as_ref());
            let n = reg.map_or(0, |x| x.samples);
            let value = reg.filter(|x| x.samples >= c.min_samples).map(|x| x.mae);
            checks.push(check("mae", value, max, true, n));
        }
    }
    if let Some(max) = c.drift_max {
        let (value, n) = prediction_drift(&cand, &prim);
        checks.push(check("drift", value, max, true, n));
    }
    Ok(checks)
}

/// How far the candidate's predictions are from the primary's: the
/// Jensen-Shannon distance (base 2) of their labels, or the normalized
/// Wasserstein distance of their values; `None` with too few of either.
fn prediction_drift(cand: &Traffic, prim: &Traffic) -> (Option<f64>, u64) {
    let n = (cand.labels.len() + cand.values.len()) as u64;
    if cand.labels.len() >= MIN_DRIFT_SAMPLES && prim.labels.len() >= MIN_DRIFT_SAMPLES {
        let count = |v: &[String]| -> BTreeMap<String, u64> { drift::count_categories(v) };
        let aligned = drift::align_counts(&count(&prim.labels), &count(&cand.labels));
        let js = drift::jensen_shannon(&aligned.reference, &aligned.current, Some(2.0)).ok();
        return (js, n);
    }
    if cand.values.len() >= MIN_DRIFT_SAMPLES && prim.values.len() >= MIN_DRIFT_SAMPLES {
        return (drift::wasserstein_normalized(&prim.values, &cand.values).ok(), n);
    }
    (None, n)
}

#[cfg(test)]
mod tests;
