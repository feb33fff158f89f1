//! The event log (SPEC F4): every tenant's events in order, durable, with
//! consumer groups for Tessera's background work (features, feedback, drift).
//!
//! One trait, [`EventLog`], two implementations that pass one conformance
//! suite: [`embedded::EmbeddedLog`] (a SQLite file in the data dir, the
//! default) and [`nats::NatsLog`] (NATS JetStream, one stream per tenant).
//!
//! The contract both keep:
//! - **Offsets** are per tenant, start at 1, only grow and are never reused
//!   (also after retention removes old records). Topics share a tenant's
//!   offsets, so a topic's offsets increase but need not be contiguous.
//! - **Append** takes a batch for one topic: all of it is stored or none of it
//!   is. An event id seen before (and still retained) is not stored again;
//!   the answer gives the first copy's offset and says `duplicate`.
//! - **Time** reads go by ingestion time (the log's own clock), which grows
//!   with the offset.
//! - **Consumer groups** get at-least-once delivery: a batch handed out and
//!   not committed is handed out again (after a restart, or when its
//!   [`Delivery`] is dropped).
//! - **Tombstones** hide records of a data subject at once; compaction
//!   removes them from disk.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

pub mod embedded;
pub mod ingest;
pub mod nats;
pub mod runtime;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

#[cfg(test)]
mod conformance;

/// A channel of a tenant's log.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Events a tenant's product sends (`POST /v1/events`).
    Events,
    /// One record per inference, written by the pipeline.
    Predictions,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Events, Topic::Predictions];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Events => "events",
            Topic::Predictions => "predictions",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// An event to append. `id` is the caller's (for idempotent retries) or one
/// the log makes (`evt_...`, time-sortable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity: BTreeMap<String, String>,
    /// When the event happened, by the sender's account.
    pub ts: Timestamp,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// Its place in the tenant's log: grows with every event, never reused.
    pub offset: u64,
    pub topic: Topic,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity: BTreeMap<String, String>,
    /// When it happened, by the sender's account.
    pub ts: Timestamp,
    /// When the log stored it.
    pub ingested_at: Timestamp,
    #[schema(value_type = Object)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// What became of one appended event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub offset: u64,
    pub id: String,
    /// The id was stored before; `offset` is the first copy's.
    pub duplicate: bool,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The first record at or after this offset.
    Offset(u64),
    /// The first record ingested at or after this time.
    Time(Timestamp),
}

impl Position {
    /// Where the next read starts when this one looked at everything up to
    /// `head` (the log's next offset) and found nothing past it.
    pub(crate) fn after_reading_to(self, head: u64) -> u64 {
        match self {
            Position::Offset(o) => o.max(head),
            Position::Time(_) => head,
        }
    }
}

/// Which records a read returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub event_type: Option<String>,
    /// An entity key and the value it must have.
    pub entity: Option<(String, String)>,
    /// Only records the log stored at or before this time; a read ends
    /// (`end: true`) at the first record stored after it.
    pub until: Option<Timestamp>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        self.event_type.as_ref().is_none_or(|t| *t == r.event_type)
            && self.entity.as_ref().is_none_or(|(k, v)| r.entity.get(k) == Some(v))
            && self.until.is_none_or(|u| r.ingested_at <= u)
    }
}

/// One page of a read: the records, where the next read starts, and whether
/// this read reached the end of the log (so a tail waits before reading on).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    pub next: u64,
    pub end: bool,
}

/// Records handed to a consumer group, to commit once their effect is durable.
pub struct Delivery {
    pub records: Vec<Record>,
    pub(crate) ack: Box<dyn Ack>,
}

impl Delivery {
    /// Marks every record of the delivery as handled by the group.
    pub async fn commit(self) -> Result<(), LogError> {
        self.ack.commit().await
    }

    /// Gives the records back undone (a handler failed): the group gets them
    /// again. Dropping a delivery does the same, on JetStream once its ack
    /// wait passes.
    pub async fn release(self) -> Result<(), LogError> {
        self.ack.release().await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("records", &self.records.len()).finish()
    }
}

/// How an implementation commits a delivery.
#[async_trait]
pub(crate) trait Ack: Send + Sync {
    async fn commit(self: Box<Self>) -> Result<(), LogError>;
    async fn release(self: Box<Self>) -> Result<(), LogError>;
}

/// The largest event the log takes (JetStream's default message limit), as
/// stored: id, type, entity and properties as JSON.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Refuses a batch with an event over [`MAX_EVENT_BYTES`] before anything is
/// written.
pub(crate) fn check_sizes(events: &[NewEvent]) -> Result<(), LogError> {
    /// Counts what would be written, without keeping it.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    for (i, e) in events.iter().enumerate() {
        let mut count = Count(0);
        let size = serde_json::to_writer(&mut count, e).map(|()| count.0).unwrap_or(usize::MAX);
        if size > MAX_EVENT_BYTES {
            return Err(LogError::Invalid(format!(
                "event {i} takes {size} bytes, over the log's limit of {MAX_EVENT_BYTES}"
            )));
        }
    }
    Ok(())
}

/// A batch encoded as the log stores it, for Tessera's own high-rate topic
/// (a prediction record per inference): each body written once, straight
/// from the caller's types into one buffer, with no JSON map and no string
/// per field on the way. The caller's ids must be unique: they are not
/// looked up against earlier appends (JetStream still drops a repeat inside
/// its duplicate window), and a batch may not repeat one.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// `[` then the bodies separated by `,` (the packed row, less its `]`).
    buf: Vec<u8>,
    /// The ids, one after another.
    ids: String,
    /// Per event: where its body ends in `buf`, where its id ends in `ids`.
    ends: Vec<(usize, usize)>,
}

impl Encoded {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of the bodies so far.
    pub fn bytes(&self) -> usize {
        self.buf.len().saturating_sub(self.ends.len())
    }

    /// Adds an event: `entity` as key/value pairs (a key given twice keeps
    /// its first value), `properties` as anything that serializes to a JSON
    /// object. An event over [`MAX_EVENT_BYTES`], or properties that are not
    /// an object, are refused and leave the batch as it was.
    pub fn push<'a>(
        &mut self,
        id: &str,
        event_type: &str,
        entity: impl IntoIterator<Item = (&'a str, &'a str)>,
        ts: Timestamp,
        properties: &impl Serialize,
    ) -> Result<(), LogError> {
        let before = self.buf.len();
        let r = self.write_body(id, event_type, entity, ts, properties);
        let size = self.buf.len() - before;
        let r = r.and_then(|()| {
            if size > MAX_EVENT_BYTES {
                Err(LogError::Invalid(format!(
                    "event {} takes {size} bytes, over the log's limit of {MAX_EVENT_BYTES}",
                    self.len()
                )))
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) => {
                self.ids.push_str(id);
                self.ends.push((self.buf.len(), self.ids.len()));
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(before);
                Err(e)
            }
        }
    }

    fn write_body<'a>(
        &mut self,
        id: &str,
        event_type: &str,
        entity: impl IntoIterator<Item = (&'a str, &'a str)>,
        ts: Timestamp,
        properties: &impl Serialize,
    ) -> Result<(), LogError> {
        let b = &mut self.buf;
        b.push(if b.is_empty() { b'[' } else { b',' });
        let json = |e: serde_json::Error| LogError::Internal(e.to_string());
        b.extend_from_slice(b"{\"id\":");
        serde_json::to_writer(&mut *b, id).map_err(json)?;
        b.extend_from_slice(b",\"type\":");
        serde_json::to_writer(&mut *b, event_type).map_err(json)?;
        b.extend_from_slice(b",\"entity\":{");
        let mut keys: Vec<&str> = Vec::new();
        for (k, v) in entity {
            if keys.contains(&k) {
                continue;
            }
            if !keys.is_empty() {
                b.push(b',');
            }
            keys.push(k);
            serde_json::to_writer(&mut *b, k).map_err(json)?;
            b.push(b':');
            serde_json::to_writer(&mut *b, v).map_err(json)?;
        }
        b.extend_from_slice(b"},\"ts\":");
        serde_json::to_writer(&mut *b, &ts).map_err(json)?;
        b.extend_from_slice(b",\"properties\":");
        let start = b.len();
        serde_json::to_writer(&mut *b, properties).map_err(json)?;
        if b.get(start) != Some(&b'{') {
            return Err(LogError::Invalid("an event's properties must be a JSON object".into()));
        }
        b.push(b'}');
        Ok(())
    }

    /// Each event's id and body (the JSON a JetStream message carries).
    pub(crate) fn events(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut body_start = 1;
        let mut id_start = 0;
        self.ends.iter().map(move |&(body_end, id_end)| {
            let out = (&self.ids[id_start..id_end], &self.buf[body_start..body_end]);
            // The next body starts after its `,`.
            body_start = body_end + 1;
            id_start = id_end;
            out
        })
    }

    /// The events back as [`NewEvent`]s, for a topic kept a row per event.
    pub(crate) fn decode(&self) -> Result<Vec<NewEvent>, LogError> {
        self.events()
            .map(|(_, body)| {
                let b: Body = serde_json::from_slice(body).map_err(|e| {
                    LogError::Internal(format!("an encoded event does not decode: {e}"))
                })?;
                Ok(NewEvent {
                    id: Some(b.id),
                    event_type: b.event_type,
                    entity: b.entity,
                    ts: b.ts,
                    properties: b.properties,
                })
            })
            .collect()
    }

    /// The bodies as one JSON array.
    pub(crate) fn array(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 2);
        if self.buf.is_empty() {
            out.push(b'[');
        }
        out.extend_from_slice(&self.buf);
        out.push(b']');
        out
    }
}

/// Limits on what the log keeps, applied per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records older than this (by ingestion time) are removed.
    pub max_age: Duration,
    /// When a tenant's records take more bytes than this, the oldest go.
    pub max_bytes: u64,
    /// How long an event id is remembered for deduplication. The embedded
    /// log remembers ids as long as it keeps the record; JetStream keeps
    /// them in memory, so there it is this window (at most `max_age`).
    pub dedupe_window: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            dedupe_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// A group's progress on one tenant's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Records not yet handed out.
    pub pending: u64,
    /// Records handed out and not committed.
    pub in_flight: u64,
}

impl Lag {
    pub fn total(self) -> u64 {
        self.pending + self.in_flight
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The backing service does not answer (or not in time); nothing was stored.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A request the log cannot take (a bad group name, an event too large).
    #[error("{0}")]
    Invalid(String),
    #[error("event log: {0}")]
    Internal(String),
}

/// A tenant's events: append, read, consume, forget.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores the batch, all of it or nothing; one [`Appended`] per event, in order.
    async fn append(
        &self,
        tenant: &TenantId,
        topic: Topic,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LogError>;

    /// Stores an encoded batch, all of it or nothing; its offsets, in order.
    async fn append_encoded(
        &self,
        tenant: &TenantId,
        topic: Topic,
        batch: &Encoded,
    ) -> Result<Vec<u64>, LogError>;

    /// Up to `limit` matching records from `from` on, in offset order.
    async fn read(
        &self,
        tenant: &TenantId,
        topic: Topic,
        from: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page, LogError>;

    /// The offset the next appended record will get (1 for an empty log).
    async fn next_offset(&self, tenant: &TenantId) -> Result<u64, LogError>;

    /// Waits until the tenant's log holds a record at or after `offset`, or
    /// `wait` passes. Tails and consumers sleep here instead of polling.
    async fn wait_for(&self, tenant: &TenantId, offset: u64, wait: Duration);

    /// Waits until any tenant's log gets a record, or `wait` passes.
    async fn wait_any(&self, wait: Duration);

    /// Hands up to `max` records the group has not committed to one caller,
    /// waiting up to `wait` for the first. Groups are named
    /// `[a-z0-9_-]{1,64}`; a group starts at the beginning of the log.
    async fn fetch(
        &self,
        group: &str,
        tenant: &TenantId,
        topic: Topic,
        max: usize,
        wait: Duration,
    ) -> Result<Delivery, LogError>;

    async fn lag(&self, group: &str, tenant: &TenantId, topic: Topic) -> Result<Lag, LogError>;

    /// Tenants that have a log.
    async fn tenants(&self) -> Result<Vec<TenantId>, LogError>;

    /// Hides every record of the tenant whose entity has `key` = `value`
    /// (a data subject's deletion); returns how many. Reads and deliveries
    /// never return them again; [`EventLog::compact`] frees their space.
    async fn tombstone(&self, tenant: &TenantId, key: &str, value: &str) -> Result<u64, LogError>;

    /// Applies [`Retention`] and removes tombstoned records for good.
    async fn compact(&self) -> Result<Compaction, LogError>;
}

/// What one [`EventLog::compact`] pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compaction {
    pub expired: u64,
    pub over_size: u64,
    pub tombstoned: u64,
}

/// Checks a consumer group name.
pub fn check_group(group: &str) -> Result<(), LogError> {
    let ok = (1..=64).contains(&group.len())
        && group
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LogError::Invalid(format!("consumer group {group:?} must be 1-64 of [a-z0-9_-]")))
    }
}

/// The id an event is stored under.
pub(crate) fn event_id(e: &NewEvent, now: Timestamp) -> String {
    match &e.id {
        Some(id) => id.clone(),
        None => tessera_core::ids::time_sortable_id("evt_", now.millis()),
    }
}

/// The stored form of an event's body, shared by both implementations (and
/// what a reader of the JetStream stream sees as the message payload).
#[derive(Serialize, Deserialize)]
pub(crate) struct Body {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub entity: BTreeMap<String, String>,
    pub ts: Timestamp,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// [`Body`] borrowed from an event, to write it without copying.
#[derive(Serialize)]
pub(crate) struct BodyRef<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub entity: &'a BTreeMap<String, String>,
    pub ts: Timestamp,
    pub properties: &'a serde_json::Map<String, serde_json::Value>,
}

impl Body {
    pub(crate) fn into_record(self, offset: u64, topic: Topic, ingested_at: Timestamp) -> Record {
        Record {
            offset,
            topic,
            id: self.id,
            event_type: self.event_type,
            entity: self.entity,
            ts: self.ts,
            ingested_at,
            properties: self.properties,
        }
    }
}
