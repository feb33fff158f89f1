//! Alerts (O4): the controller that evaluates due rules and the webhook
//! deliveries of their transitions.
//!
//! Every replica runs the controller; a due rule is claimed with a lease in
//! the store, so one replica evaluates it at a time. An evaluation measures
//! the rule's metric for each subject (the model; for platform rules, each
//! tenant), steps the rule's state ([`AlertRule::step`]) and writes it with
//! the firing and resolved events. Each event is delivered to the rule's
//! webhook in the background, signed, retried with exponential backoff up
//! to a bound; the outcome is added to the rule's events. Evaluation never
//! waits for a delivery.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hmac::{Hmac, Mac};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tessera_core::alert::{AlertEvent, AlertRule, AlertSpec, Metric, Op, Severity};
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use tessera_events::EventLog;
use tessera_store::{KeyOwner, MetadataStore, ModelView, StoreError};

use crate::Services;
use crate::inference::ServeError;
use crate::rollouts::{Traffic, each_record};

/// How long a claimed rule stays this replica's while it evaluates.
const LEASE: Duration = Duration::from_secs(10);
/// How often the controller looks for due rules.
const TICK: Duration = Duration::from_millis(250);
/// Delivery attempts per event, and the first wait between them (doubled each time).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// One delivery attempt's time limit.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The header carrying a delivery's signature.
pub const SIGNATURE: &str = "x-tessera-signature";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FiringLabels {
    /// The tenant, or `platform` for platform rules.
    tenant: String,
    severity: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    /// `delivered` or `failed`.
    outcome: String,
}

/// This replica's alert controller: its lease owner name, the webhook
/// client and the metrics.
pub struct Alerts {
    owner: String,
    http: reqwest::Client,
    every: Duration,
    firing: Family<FiringLabels, Gauge>,
    deliveries: Family<DeliveryLabels, Counter>,
    evaluations: Counter,
}

impl Alerts {
    pub fn new(every: Duration) -> Self {
        Self {
            owner: format!("replica-{}", tessera_core::ids::random_lower(10)),
            http: reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).build().unwrap_or_default(),
            every,
            firing: Family::default(),
            deliveries: Family::default(),
            evaluations: Counter::default(),
        }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tessera_alerts_firing",
            "Alert instances firing now, by tenant (platform: platform rules) and severity; every replica reads them from the store.",
            self.firing.clone(),
        );
        r.register(
            "tessera_alert_deliveries",
            "Webhook notifications of alerts, by outcome after retries (delivered, failed).",
            self.deliveries.clone(),
        );
        r.register(
            "tessera_alert_evaluations",
            "Alert rule evaluations made by this replica.",
            self.evaluations.clone(),
        );
    }

    /// The time between two evaluations of a rule.
    pub fn every(&self) -> Duration {
        self.every
    }
}

/// The built-in platform rules: each tenant's spend against its plan's
/// monthly budget, at the soft threshold and at the budget.
fn builtin(now: Timestamp) -> Vec<AlertRule> {
    let rule = |id: &str, name: &str, threshold: f64, severity: Severity| {
        let spec = AlertSpec {
            name: name.into(),
            metric: Metric::BudgetUsed,
            model: None,
            op: Op::AtLeast,
            threshold,
            for_: "0s".into(),
            window: "5m".into(),
            severity,
            min_samples: 0,
            webhook_url: None,
        };
        AlertRule { id: id.into(), builtin: true, ..new_rule(None, spec, now) }
    };
    vec![
        rule(
            "alr_builtin_budget_soft",
            "budget-soft",
            crate::inference::BUDGET_SOFT,
            Severity::Warning,
        ),
        rule("alr_builtin_budget_spent", "budget-spent", 1.0, Severity::Critical),
    ]
}

/// Creates the built-in platform rules that are missing (at start-up,
/// before the server listens, like the default plans).
pub async fn ensure_builtin(store: &dyn MetadataStore, sys: &SystemCtx) -> Result<(), StoreError> {
    let actor =
        tessera_core::audit::AuditActor { key_id: Some("system:alerts".into()), request_id: None };
    for rule in builtin(Timestamp::now()) {
        match store.create_alert_rule(KeyOwner::Platform(sys), &rule, &actor).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The controller's loop on this replica, until shutdown.
pub async fn run(s: Services, sys: SystemCtx) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counted = std::time::Instant::now();
    loop {
        every.tick().await;
        if let Err(e) = tick(&s, &sys, Timestamp::now()).await {
            tracing::warn!(error = %e, "could not claim due alert rules");
        }
        if counted.elapsed() >= Duration::from_secs(1) {
            counted = std::time::Instant::now();
            refresh_firing(&s, &sys).await;
        }
    }
}

/// `tessera_alerts_firing` from the store, so every replica shows all.
async fn refresh_firing(s: &Services, sys: &SystemCtx) {
    let Ok(rows) = s.store().firing_alerts(sys).await else { return };
    let a = s.alerts();
    a.firing.clear();
    for (tenant, severity, n) in rows {
        let tenant = tenant.map_or_else(|| "platform".to_owned(), |t| t.as_str().to_owned());
        a.firing
            .get_or_create(&FiringLabels { tenant, severity })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Each tenant's traffic by model, per window start, read once per pass.
type Windows = HashMap<(TenantId, i64), HashMap<String, Traffic>>;

/// What an evaluation reads: the store and the log, and the server's
/// services when there is one (drift needs its artifacts and models;
/// budgets read its tenant cache). A benchmark runs the controller on a
/// store and a log alone.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub store: &'a dyn MetadataStore,
    pub log: &'a dyn EventLog,
    pub services: Option<&'a Services>,
}

/// Evaluates the rules due at `now` this replica can claim; how many it
/// wrote and the transitions to notify.
pub async fn evaluate_due(
    src: Sources<'_>,
    a: &Alerts,
    sys: &SystemCtx,
    now: Timestamp,
) -> Result<(usize, Vec<(AlertRule, AlertEvent)>), StoreError> {
    let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
    let due = src.store.claim_alert_rules(sys, &a.owner, now, lease).await?;
    let (mut written, mut notify) = (0, Vec::new());
    let mut windows = Windows::new();
    for mut rule in due {
        a.evaluations.inc();
        let timing = match rule.spec.validate() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(rule = %rule.id, error = %e.message, "a stored alert rule no longer validates");
                continue;
            }
        };
        let values = measure(src, &mut windows, sys, &rule, timing.window, now).await;
        let events = rule.step(&values, timing.for_, now);
        rule.last_evaluated_at = Some(now);
        rule.next_evaluation_at =
            now.plus_millis(i64::try_from(a.every.as_millis()).unwrap_or(i64::MAX));
        match src.store.save_alert_rule(sys, &rule, &events, &a.owner).await {
            Ok(true) => {
                written += 1;
                for e in events {
                    log_transition(&rule, &e);
                    notify.push((rule.clone(), e));
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(rule = %rule.id, error = %e, "could not write an alert rule's state")
            }
        }
    }
    Ok((written, notify))
}

/// One controller pass on the server: evaluations, then each transition
/// delivered in the background.
pub async fn tick(s: &Services, sys: &SystemCtx, now: Timestamp) -> Result<usize, StoreError> {
    let src = Sources { store: s.store(), log: &**s.events(), services: Some(s) };
    let (written, notify) = evaluate_due(src, s.alerts(), sys, now).await?;
    for (rule, e) in notify {
        if rule.spec.webhook_url.is_some() {
            let (s2, sys) = (s.clone(), sys.clone());
            s.tasks().spawn(async move { deliver(&s2, &sys, &rule, &e).await });
        }
    }
    Ok(written)
}

fn log_transition(rule: &AlertRule, e: &AlertEvent) {
    let tenant = rule.tenant_id.as_ref().map_or("platform", TenantId::as_str);
    let value = e.value.unwrap_or(f64::NAN);
    if e.kind == "firing" {
        tracing::warn!(target: "tessera::alert", rule = %rule.id, name = %rule.spec.name, tenant, subject = %e.subject,
            metric = rule.spec.metric.as_str(), value, threshold = rule.spec.threshold,
            severity = rule.spec.severity.as_str(), "alert firing");
    } else {
        tracing::info!(target: "tessera::alert", rule = %rule.id, name = %rule.spec.name, tenant, subject = %e.subject,
            metric = rule.spec.metric.as_str(), value, "alert resolved");
    }
}

/// Each subject's value now (`None`: no data).
async fn measure(
    src: Sources<'_>,
    windows: &mut Windows,
    sys: &SystemCtx,
    rule: &AlertRule,
    window: Duration,
    now: Timestamp,
) -> BTreeMap<String, Option<f64>> {
    let tenants: Vec<TenantId> = match &rule.tenant_id {
        Some(t) => vec![t.clone()],
        None => match src.store.list_tenants(sys).await {
            Ok(ts) => ts.into_iter().map(|t| t.id).collect(),
            Err(e) => {
                tracing::warn!(rule = %rule.id, error = %e, "could not list tenants for a platform rule");
                return BTreeMap::new();
            }
        },
    };
    let mut out = BTreeMap::new();
    for tenant in tenants {
        let ctx = sys.tenant(tenant.clone());
        let subject = match (&rule.tenant_id, &rule.spec.model) {
            (Some(_), Some(m)) => m.clone(),
            _ => tenant.as_str().to_owned(),
        };
        let value = match value(src, windows, sys, &ctx, &rule.spec, window, now).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(rule = %rule.id, tenant = %tenant, error = %e, "no value for an alert rule");
                None
            }
        };
        out.insert(subject, value);
    }
    out
}

/// The rule's metric for one tenant over `window` ending `now`.
async fn value(
    src: Sources<'_>,
    windows: &mut Windows,
    sys: &SystemCtx,
    ctx: &TenantCtx,
    spec: &AlertSpec,
    window: Duration,
    now: Timestamp,
) -> Result<Option<f64>, ServeError> {
    let since = now.plus_millis(-i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    let model = spec.model.as_deref().unwrap_or_default();
    match spec.metric {
        Metric::LatencyP99Ms | Metric::ErrorRate => {
            // One read of the tenant's window serves all its rules of that window.
            let key = (ctx.tenant_id().clone(), since.millis());
            if !windows.contains_key(&key) {
                let mut by_model: HashMap<String, Traffic> = HashMap::new();
                each_record(src.log, ctx.tenant_id(), None, since, now, |kind, p, m, _, shadow| {
                    if !shadow {
                        by_model.entry(m.to_owned()).or_default().add(kind, p);
                    }
                })
                .await?;
                windows.insert(key.clone(), by_model);
            }
            let Some(t) = windows.get_mut(&key).and_then(|w| w.get_mut(model)) else {
                return Ok(None);
            };
            let attempts = t.answers + t.errors;
            if attempts == 0 || attempts < spec.min_samples {
                return Ok(None);
            }
            Ok(match spec.metric {
                Metric::ErrorRate => Some(t.errors as f64 / attempts as f64),
                _ => t.p99(),
            })
        }
        Metric::Accuracy => {
            let groups = src.store.feedback_quality(ctx, model, None, since).await?;
            let (mut right, mut n) = (0.0, 0u64);
            for v in tessera_core::feedback::quality(&groups) {
                if let Some(c) = v.classification {
                    right += c.accuracy * c.samples as f64;
                    n += c.samples;
                }
            }
            Ok((n > 0 && n >= spec.min_samples).then(|| right / n as f64))
        }
        Metric::DriftShare => {
            let Some(s) = src.services else { return Ok(None) };
            let info = s.tenants().get(s.store(), ctx).await?;
            let view = ModelView::Tenant { ctx, segment: info.tenant.segment.as_deref() };
            let m = s.store().resolve_model(view, model).await?;
            let q = crate::drift::Query {
                version: None,
                window,
                reference: crate::drift::Reference::Training,
                mode: crate::drift::Mode::Evidently,
            };
            let r = crate::drift::report(s, ctx, view, &m, &q, now).await?;
            Ok(r.dataset_drift.map(|d| d.share))
        }
        Metric::BreakerOpen => {
            let Some(s) = src.services else { return Ok(None) };
            let info = s.tenants().get(s.store(), ctx).await?;
            let view = ModelView::Tenant { ctx, segment: info.tenant.segment.as_deref() };
            let m = s.store().resolve_model(view, model).await?;
            // Local versions' breakers are `<model id>@<version>`, remote
            // ones end with `(<model id>)`.
            let (local, remote) = (format!("{}@", m.id), format!("({})", m.id));
            let open = s
                .breakers()
                .views()
                .into_iter()
                .filter(|b| b.backend.starts_with(&local) || b.backend.ends_with(&remote))
                .filter(|b| b.state == tessera_core::breaker::BreakerState::Open)
                .count();
            Ok(Some(open as f64))
        }
        Metric::ConsumerLag => {
            let lag = src
                .log
                .lag(crate::stream_features::GROUP, ctx.tenant_id(), tessera_events::Topic::Events)
                .await
                .map_err(|e| ServeError::Unavailable(e.to_string()))?;
            Ok(Some(lag.total() as f64))
        }
        Metric::BudgetUsed => {
            let budget = match src.services {
                Some(s) => s.tenants().get(s.store(), ctx).await?.plan.monthly_budget_usd,
                None => {
                    let t = src.store.get_tenant(ctx).await?;
                    src.store.get_plan(&t.plan).await?.monthly_budget_usd
                }
            };
            let Some(budget) = budget.filter(|b| *b > 0.0) else {
                return Ok(None);
            };
            let month = now.month_start().millis();
            let spent = src.store.spend_since(sys, ctx.tenant_id(), month).await?;
            Ok(Some(spent as f64 / 1e6 / budget))
        }
    }
}

/// The signature header of `body` sent at `t` (seconds since the epoch):
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a webhook receives.
pub fn payload(rule: &AlertRule, e: &AlertEvent) -> Value {
    json!({
        "type": format!("alert.{}", e.kind),
        "rule": {"id": rule.id, "name": rule.spec.name, "metric": rule.spec.metric, "model": rule.spec.model,
                 "op": rule.spec.op, "threshold": rule.spec.threshold, "severity": rule.spec.severity},
        "tenant_id": rule.tenant_id,
        "subject": e.subject,
        "status": e.kind,
        "value": e.value,
        "at": e.at,
    })
}

/// Delivers one event with retries, then adds the outcome to the rule's events.
async fn deliver(s: &Services, sys: &SystemCtx, rule: &AlertRule, e: &AlertEvent) {
    let Some(url) = &rule.spec.webhook_url else { return };
    let body = payload(rule, e).to_string().into_bytes();
    let http = &s.alerts().http;
    let mut wait = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let t = Timestamp::now().millis() / 1000;
        let sent = http
            .post(url)
            .header("content-type", "application/json")
            .header(SIGNATURE, sign(&rule.secret, t, &body))
            .header("x-tessera-delivery-attempt", attempt.to_string())
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                s.alerts()
                    .deliveries
                    .get_or_create(&DeliveryLabels { outcome: "delivered".into() })
                    .inc();
                let detail =
                    format!("{} {} after {attempt} attempt(s)", e.kind, r.status().as_u16());
                record(s, sys, rule, e, "delivered", detail).await;
                return;
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(err) => {
                last = if err.is_timeout() { "timed out".into() } else { "no connection".into() }
            }
        }
        tracing::info!(target: "tessera::alert", rule = %rule.id, attempt, error = %last, "alert webhook delivery failed");
        if attempt < ATTEMPTS {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = s.tasks().cancelled() => break,
            }
            wait *= 2;
        }
    }
    s.alerts().deliveries.get_or_create(&DeliveryLabels { outcome: "failed".into() }).inc();
    tracing::warn!(target: "tessera::alert", rule = %rule.id, error = %last, "alert webhook gave up");
    record(s, sys, rule, e, "delivery_failed", format!("{}: {last} ({ATTEMPTS} attempts)", e.kind))
        .await;
}

async fn record(
    s: &Services,
    sys: &SystemCtx,
    rule: &AlertRule,
    e: &AlertEvent,
    kind: &str,
    detail: String,
) {
    let event = AlertEvent {
        at: Timestamp::now(),
        kind: kind.into(),
        subject: e.subject.clone(),
        value: e.value,
        detail: Some(detail),
    };
    if let Err(err) = s.store().append_alert_events(sys, rule, &[event]).await {
        tracing::warn!(rule = %rule.id, error = %err, "could not record an alert delivery");
    }
}

/// Creates a rule for `owner` from `spec`: a fresh id and signing secret.
pub fn new_rule(tenant: Option<TenantId>, spec: AlertSpec, now: Timestamp) -> AlertRule {
    let secret = tessera_core::alert::new_secret();
    AlertRule {
        id: tessera_core::alert::new_alert_id(),
        tenant_id: tenant,
        spec,
        builtin: false,
        instances: BTreeMap::new(),
        last_evaluated_at: None,
        next_evaluation_at: now,
        created_at: now,
        secret_hint: tessera_core::alert::hint(&secret),
        secret,
        revision: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_over_time_dot_body() {
        // RFC 4231 test case 2 key and data, split as "<t>.<body>".
        let sig = sign("Jefe", 1_700_000_000, b"{}");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(sig, format!("t=1700000000,v1={}", hex::encode(mac.finalize().into_bytes())));
        // A known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_ne!(sign("Jefe", 1_700_000_001, b"{}"), sig);
    }
}
