//! Events as clients send them (`POST /v1/events`), checked one by one into
//! [`NewEvent`]s: a batch with any bad event is refused whole, with the
//! event's index and the field.

use std::collections::BTreeMap;

use serde::Deserialize;
use tessera_core::time::Timestamp;

use crate::NewEvent;

/// One event of a batch, as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Makes retries idempotent: an id already stored (and still retained)
    /// is not stored again. 1-128 visible ASCII characters.
    #[schema(min_length = 1, max_length = 128)]
    pub id: Option<String>,
    /// The event's type, e.g. `page_view`.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub event_type: String,
    /// Who it is about: join keys and their values (strings or integers),
    /// e.g. `{"customer_id": "c1"}`.
    #[schema(value_type = Object)]
    pub entity: BTreeMap<String, serde_json::Value>,
    /// When it happened (RFC 3339); default: when it arrives.
    #[schema(format = DateTime)]
    pub ts: Option<String>,
    /// Anything else, as a JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// What the ingestion API takes per request and per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    pub max_events: usize,
    pub max_event_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self { max_events: 1000, max_event_bytes: 64 << 10 }
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// An event is malformed: its index, the field, what is wrong.
    #[error("events[{index}].{field}: {message}")]
    Invalid { index: usize, field: String, message: String },
    /// Too many events, or an event too large.
    #[error("{0}")]
    TooLarge(String),
}

impl IngestError {
    /// `events[3].type`, for the error's `param`.
    pub fn param(&self) -> String {
        match self {
            IngestError::Invalid { index, field, .. } => format!("events[{index}].{field}"),
            IngestError::TooLarge(_) => "events".into(),
        }
    }
}

fn name_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks every event of a batch; nothing is returned unless all pass.
pub fn check_batch(
    events: Vec<EventIn>,
    limits: IngestLimits,
    now: Timestamp,
) -> Result<Vec<NewEvent>, IngestError> {
    if events.is_empty() {
        return Err(IngestError::Invalid {
            index: 0,
            field: "type".into(),
            message: "a batch needs at least one event".into(),
        });
    }
    if events.len() > limits.max_events {
        return Err(IngestError::TooLarge(format!(
            "{} events in one request, over the limit of {}",
            events.len(),
            limits.max_events
        )));
    }
    events.into_iter().enumerate().map(|(i, e)| check_event(i, e, limits, now)).collect()
}

fn check_event(
    index: usize,
    e: EventIn,
    limits: IngestLimits,
    now: Timestamp,
) -> Result<NewEvent, IngestError> {
    let bad =
        |field: &str, message: String| IngestError::Invalid { index, field: field.into(), message };
    if let Some(id) = &e.id {
        let ok = (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(bad("id", format!("id {id:?} must be 1-128 visible ASCII characters")));
        }
    }
    if !name_ok(&e.event_type) {
        return Err(bad(
            "type",
            format!(
                "type {:?} must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit",
                e.event_type
            ),
        ));
    }
    if e.entity.is_empty() || e.entity.len() > 8 {
        return Err(bad("entity", format!("entity must have 1-8 keys, got {}", e.entity.len())));
    }
    let mut entity = BTreeMap::new();
    for (k, v) in e.entity {
        if !name_ok(&k) {
            return Err(bad(
                "entity",
                format!("entity key {k:?} must be a name (1-64 of [A-Za-z0-9._-])"),
            ));
        }
        let value = match v {
            serde_json::Value::String(s) if (1..=256).contains(&s.len()) => s,
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            other => {
                return Err(bad(
                    &format!("entity.{k}"),
                    format!("must be a string of 1-256 characters or an integer, got {other}"),
                ));
            }
        };
        entity.insert(k, value);
    }
    let ts = match &e.ts {
        Some(t) => Timestamp::parse_rfc3339("ts", t).map_err(|err| bad("ts", err.to_string()))?,
        None => now,
    };
    let event =
        NewEvent { id: e.id, event_type: e.event_type, entity, ts, properties: e.properties };
    let size = serde_json::to_vec(&event).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > limits.max_event_bytes {
        return Err(IngestError::TooLarge(format!(
            "event {index} takes {size} bytes, over the limit of {}",
            limits.max_event_bytes
        )));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> EventIn {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_good_batch_passes_with_defaults_filled_in() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let out = check_batch(
            vec![
                parse(json!({"type": "page_view", "entity": {"customer_id": "c1"}})),
                parse(json!({"id": "e-2", "type": "buy", "entity": {"user": 42}, "ts": "2026-01-01T00:00:00Z",
                    "properties": {"amount": 9.5}})),
            ],
            IngestLimits::default(),
            now,
        )
        .unwrap();
        assert_eq!(out[0].ts, now);
        assert_eq!(out[1].entity["user"], "42");
        assert_eq!(out[1].properties["amount"], json!(9.5));
    }

    #[test]
    fn the_first_bad_event_is_named_by_index_and_field() {
        let now = Timestamp::now();
        let batch = |bad: serde_json::Value| {
            check_batch(
                vec![parse(json!({"type": "ok", "entity": {"u": "1"}})), parse(bad)],
                IngestLimits::default(),
                now,
            )
            .unwrap_err()
        };
        assert_eq!(
            batch(json!({"type": "no spaces", "entity": {"u": "1"}})).param(),
            "events[1].type"
        );
        assert_eq!(batch(json!({"type": "t", "entity": {}})).param(), "events[1].entity");
        assert_eq!(batch(json!({"type": "t", "entity": {"u": 1.5}})).param(), "events[1].entity.u");
        assert_eq!(
            batch(json!({"type": "t", "entity": {"u": "1"}, "ts": "yesterday"})).param(),
            "events[1].ts"
        );
        assert_eq!(
            batch(json!({"id": "has space", "type": "t", "entity": {"u": "1"}})).param(),
            "events[1].id"
        );
        assert!(
            serde_json::from_value::<EventIn>(json!({"type": "t", "entity": {}, "extra": 1}))
                .is_err()
        );
    }

    #[test]
    fn limits_refuse_big_batches_and_big_events() {
        let now = Timestamp::now();
        let limits = IngestLimits { max_events: 2, max_event_bytes: 200 };
        let e = || parse(json!({"type": "t", "entity": {"u": "1"}}));
        assert!(matches!(
            check_batch(vec![e(), e(), e()], limits, now),
            Err(IngestError::TooLarge(_))
        ));
        let big =
            parse(json!({"type": "t", "entity": {"u": "1"}, "properties": {"x": "y".repeat(300)}}));
        let err = check_batch(vec![e(), big], limits, now).unwrap_err();
        assert!(matches!(&err, IngestError::TooLarge(m) if m.contains("event 1")), "{err}");
        assert!(check_batch(vec![], limits, now).is_err());
    }
}
