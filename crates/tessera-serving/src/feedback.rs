//! Feedback (L5): ground truth joined to the prediction records the
//! pipeline wrote, kept in the store per prediction, and the counters it
//! adds to `/metrics`.
//!
//! A prediction id carries its creation time, and its record reaches the
//! log within a writer linger of it, so a record is found by reading the
//! tenant's `predictions` topic over a short window from that time: ids
//! close in time share one read. The log is the tenant's own, so another
//! tenant's id is simply not found.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tessera_core::auth::TenantCtx;
use tessera_core::feedback::{JoinedFeedback, Predicted, Truth};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use tessera_events::{EventLog, Filter, LogError, Position, Record, Topic};
use tessera_store::MetadataStore;

use crate::inference::ServeError;

/// Feedback items per request.
pub const MAX_ITEMS: usize = 1000;

/// How long after its id's time a record may reach the log and still be
/// found (the writer's linger and a few retries).
const SLACK: Duration = Duration::from_secs(30);

/// How long after a prediction its shadows' records are looked for.
const SHADOW_WAIT: Duration = Duration::from_secs(10);

/// How far a record's log time may be before its id's time: the clocks of
/// the replica that made the id and of the log (a NATS server) differ.
const SKEW: Duration = Duration::from_secs(5);

/// One feedback as the caller sent it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub prediction_id: String,
    pub truth: Truth,
    /// Which of the request's answers it is about (0 for single answers).
    pub index: usize,
    /// When the truth was known; `None`: now.
    pub ts: Option<Timestamp>,
}

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Joined to its prediction for the first time.
    Joined,
    /// Joined again: this truth replaces the prediction's earlier one.
    Updated,
    /// No recorded prediction of this tenant has the id (a mistyped id,
    /// another tenant's, or a prediction its sample did not record).
    Unknown,
    /// The prediction is older than the feedback horizon.
    TooLate,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Joined => "joined",
            Status::Updated => "updated",
            Status::Unknown => "unknown",
            Status::TooLate => "too_late",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JoinLabels {
    tenant: String,
    model: String,
    version: String,
    /// `correct` / `wrong` (labels), `unjudged` (no predicted label),
    /// `value`, `score`.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    tenant: String,
    model: String,
    version: String,
}

/// The feedback service: joins and its counters.
pub struct Feedback {
    horizon: Duration,
    items: Family<ItemLabels, Counter>,
    joined: Family<JoinLabels, Counter>,
    abs_error: Family<VersionLabels, Counter<f64>>,
    squared_error: Family<VersionLabels, Counter<f64>>,
    reads: Counter,
}

impl Feedback {
    /// Feedback is taken for predictions up to `horizon` old.
    pub fn new(horizon: Duration) -> Self {
        Self {
            horizon,
            items: Family::default(),
            joined: Family::default(),
            abs_error: Family::default(),
            squared_error: Family::default(),
            reads: Counter::default(),
        }
    }

    pub fn horizon(&self) -> Duration {
        self.horizon
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tessera_feedback_items",
            "Feedback items received, by what became of them (joined, updated, unknown, too_late).",
            self.items.clone(),
        );
        r.register(
            "tessera_feedback_joined",
            "Feedback joined to predictions, per model version and outcome: correct and wrong for classifiers (accuracy = correct / (correct + wrong)), value for regressors, score for ratings.",
            self.joined.clone(),
        );
        r.register(
            "tessera_feedback_absolute_error",
            "Sum of |predicted - true| over a regressor's joined feedback (MAE = this / the value outcome's count).",
            self.abs_error.clone(),
        );
        r.register(
            "tessera_feedback_squared_error",
            "Sum of (predicted - true)^2 over a regressor's joined feedback.",
            self.squared_error.clone(),
        );
        r.register(
            "tessera_feedback_log_reads",
            "Reads of the predictions topic made to find the records feedback is about.",
            self.reads.clone(),
        );
    }

    /// Joins `items` to their prediction records and stores what joined;
    /// one status per item, in order.
    pub async fn submit(
        &self,
        log: &dyn EventLog,
        store: &dyn MetadataStore,
        ctx: &TenantCtx,
        items: &[Item],
        now: Timestamp,
    ) -> Result<Vec<Status>, ServeError> {
        let oldest = now.millis() - self.horizon.as_millis() as i64;
        let mut statuses = vec![Status::Unknown; items.len()];
        let mut wanted: Vec<(i64, &str)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match id_time(&item.prediction_id) {
                Some(t) if t < oldest => statuses[i] = Status::TooLate,
                // A prediction cannot be newer than now (with the clocks' skew).
                Some(t) if t <= now.millis() + SKEW.as_millis() as i64 => {
                    wanted.push((t, &item.prediction_id));
                }
                _ => {}
            }
        }
        let found = self.find(log, ctx.tenant_id(), wanted).await.map_err(log_error)?;
        let mut rows = Vec::new();
        let mut placed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(r) = found.primary.get(item.prediction_id.as_str()) {
                rows.push(joined(r, item, now));
                placed.push(i);
            }
        }
        // The shadows of a joined prediction take the same truth, under
        // their own ids and versions (a candidate's accuracy in shadow).
        let mut shadow_rows = Vec::new();
        for item in items {
            for r in found.shadows.get(item.prediction_id.as_str()).into_iter().flatten() {
                let mut row = joined(r, item, now);
                row.prediction_id = r.id.clone();
                shadow_rows.push(row);
            }
        }
        // A batch naming one prediction twice: the last item's truth stands.
        let primaries = rows.len();
        rows.extend(shadow_rows);
        let mut fresh = store.put_feedback(ctx, &rows).await?;
        for row in &rows[primaries..] {
            self.count(ctx.tenant_id(), row);
        }
        rows.truncate(primaries);
        fresh.truncate(primaries);
        let mut seen = std::collections::HashSet::new();
        for ((i, row), fresh) in placed.iter().zip(&rows).zip(fresh) {
            let first = seen.insert(row.prediction_id.as_str());
            statuses[*i] = if fresh && first { Status::Joined } else { Status::Updated };
            self.count(ctx.tenant_id(), row);
        }
        for s in &statuses {
            self.items.get_or_create(&ItemLabels { status: s.as_str().to_owned() }).inc();
        }
        Ok(statuses)
    }

    fn count(&self, tenant: &TenantId, f: &JoinedFeedback) {
        let outcome = match (&f.truth, &f.predicted) {
            (Truth::Label(t), Some(Predicted::Label(p))) if t == p => "correct",
            (Truth::Label(_), Some(Predicted::Label(_))) => "wrong",
            (Truth::Label(_), _) => "unjudged",
            (Truth::Value(_), _) => "value",
            (Truth::Score(_), _) => "score",
        };
        let version = VersionLabels {
            tenant: tenant.as_str().to_owned(),
            model: f.model.clone(),
            version: f.version.clone(),
        };
        if let (Truth::Value(t), Some(Predicted::Value(p))) = (&f.truth, &f.predicted) {
            self.abs_error.get_or_create(&version).inc_by((p - t).abs());
            self.squared_error.get_or_create(&version).inc_by((p - t) * (p - t));
        }
        let labels = JoinLabels {
            tenant: version.tenant,
            model: version.model,
            version: version.version,
            outcome: outcome.to_owned(),
        };
        self.joined.get_or_create(&labels).inc();
    }

    /// The records of the `wanted` prediction ids (with their times) that
    /// the tenant's log holds, by id, and their shadows' records. Ids
    /// within [`SLACK`] of each other share a read; a lone id is looked up
    /// by its key (which its shadows' records share).
    async fn find<'a>(
        &self,
        log: &dyn EventLog,
        tenant: &TenantId,
        mut wanted: Vec<(i64, &'a str)>,
    ) -> Result<Found<'a>, LogError> {
        wanted.sort_unstable();
        let slack = SLACK.as_millis() as i64;
        let mut found = Found::default();
        let mut rest = wanted.as_slice();
        while let Some(&(first, _)) = rest.first() {
            let mut n = 1;
            while n < rest.len() && rest[n].0 - rest[n - 1].0 <= slack {
                n += 1;
            }
            let (group, after) = rest.split_at(n);
            rest = after;
            let last = group[n - 1].0;
            let mut filter = Filter {
                event_type: Some("prediction".into()),
                until: Some(Timestamp::from_millis(last + slack)),
                ..Filter::default()
            };
            if let [(_, id)] = group {
                filter.entity = Some(("prediction_id".into(), (*id).to_owned()));
            }
            let ids: HashMap<&str, &'a str> = group.iter().map(|(_, id)| (*id, *id)).collect();
            let mut left = ids.len();
            // Once every record is found, shadows are read for a while more.
            let mut done_by: Option<i64> = None;
            let mut from = Position::Time(Timestamp::from_millis(first - SKEW.as_millis() as i64));
            loop {
                self.reads.inc();
                let page = log.read(tenant, Topic::Predictions, from, &filter, 1000).await?;
                let mut past = false;
                for r in page.records {
                    if done_by.is_some_and(|t| r.ts.millis() > t) {
                        past = true;
                        break;
                    }
                    let of = r.properties.get("shadow_of").and_then(Value::as_str);
                    if let Some(id) = of.and_then(|of| ids.get(of)) {
                        found.shadows.entry(*id).or_default().push(r);
                    } else if let Some(id) = ids.get(r.id.as_str()) {
                        if found.primary.insert(*id, r).is_none() {
                            left -= 1;
                        }
                        if left == 0 {
                            done_by = Some(last + SHADOW_WAIT.as_millis() as i64);
                        }
                    }
                }
                if page.end || past {
                    break;
                }
                from = Position::Offset(page.next);
            }
        }
        Ok(found)
    }
}

/// What [`Feedback::find`] found: records by prediction id, and the
/// shadows' records by the prediction id they mirrored.
#[derive(Default)]
struct Found<'a> {
    primary: HashMap<&'a str, Record>,
    shadows: HashMap<&'a str, Vec<Record>>,
}

fn log_error(e: LogError) -> ServeError {
    match e {
        LogError::Unavailable(m) => ServeError::Unavailable(m),
        LogError::Invalid(m) | LogError::Internal(m) => ServeError::Internal(m),
    }
}

/// A prediction id's creation time in ms (`prd_` and 12 hex digits of it,
/// then 16 of the unique part); `None` for anything else.
pub fn id_time(id: &str) -> Option<i64> {
    let rest = id.strip_prefix("prd_")?;
    if rest.len() != 28 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(&rest[..12], 16).ok()
}

/// The stored row for `item`, from its prediction's record.
fn joined(r: &Record, item: &Item, now: Timestamp) -> JoinedFeedback {
    let p = &r.properties;
    let text = |k: &str| p.get(k).and_then(Value::as_str);
    let model = text("model").unwrap_or_default().to_owned();
    let version = text("version")
        .map(|v| v.rsplit_once('@').map_or(v, |(_, n)| n))
        .unwrap_or_default()
        .to_owned();
    let answer = p.get("output").and_then(|o| o.get("predicted")).and_then(|a| a.get(item.index));
    JoinedFeedback {
        prediction_id: item.prediction_id.clone(),
        model,
        version,
        predicted: answer.and_then(|a| predicted(a, &item.truth)),
        truth: item.truth.clone(),
        predicted_at: r.ts,
        received_at: item.ts.unwrap_or(now),
        input: text("input").map(str::to_owned),
        entity: p.get("entity").and_then(Value::as_object).cloned(),
    }
}

/// A recorded answer as the truth's kind compares it: a class index is a
/// label for a label truth; a numeric label is a value for a value truth.
fn predicted(answer: &Value, truth: &Truth) -> Option<Predicted> {
    match (answer, truth) {
        (Value::String(s), Truth::Label(_)) => Some(Predicted::Label(s.clone())),
        (Value::Number(n), Truth::Label(_)) => Some(Predicted::Label(n.to_string())),
        (Value::Number(n), _) => n.as_f64().map(Predicted::Value),
        (Value::String(s), _) => s.parse().ok().map(Predicted::Value),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
