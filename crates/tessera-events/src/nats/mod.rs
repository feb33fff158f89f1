//! The event log on NATS JetStream (the scale-out shape).
//!
//! Layout a reader can follow with any NATS client: one stream per tenant,
//! `<PREFIX>_<tenant id>` (prefix upper-cased, `TESSERA` by default), holding
//! the subjects `<prefix>.<tenant id>.<topic>`; one message per event, its
//! payload the event as JSON, its `Nats-Msg-Id` the event id. The stream's
//! sequence is the offset; its limits are the [`Retention`] (max age, max
//! bytes, discard old; duplicate window for ids). A consumer group is a
//! durable pull consumer `<group>-<topic>` with explicit acks, so N replicas
//! sharing a group each get different records.
//!
//! An append publishes the batch pipelined and waits for every ack. If any
//! fails, the ones stored are deleted again before the error is answered,
//! so a failed batch leaves nothing behind (a replica killed mid-batch can
//! leave part of it: the client got no answer and retries, and event ids
//! make the retry store each event once). A failure while the connection
//! breaks is an unknown outcome, as with any JetStream publish whose ack
//! never came: the client library sends what it had in flight again when
//! it reconnects, so such a batch can land after its 503. Retries with ids
//! are exact; without ids they may store an event twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures_util::StreamExt as _;
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use crate::{
    Ack, Appended, Body, Compaction, Delivery, Encoded, EventLog, Filter, Lag, LogError, NewEvent,
    Page, Position, Record, Retention, Topic, check_group, check_sizes, event_id,
};

/// How the NATS log connects and names things.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub url: String,
    /// Subject prefix; streams are named after it upper-cased.
    pub prefix: String,
    /// Every call to NATS answers within this, or fails as unavailable.
    pub timeout: Duration,
    /// How long a delivery may stay uncommitted before JetStream hands it out again.
    pub ack_wait: Duration,
    /// Publishes of the whole process waiting for their acks, at most.
    pub max_acks_in_flight: usize,
    pub retention: Retention,
}

impl NatsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "tessera".into(),
            timeout: Duration::from_secs(2),
            ack_wait: Duration::from_secs(30),
            max_acks_in_flight: 20_000,
            retention: Retention::default(),
        }
    }
}

pub struct NatsLog {
    client: async_nats::Client,
    js: Context,
    cfg: NatsConfig,
    /// Tenants whose stream this process has created or updated.
    streams: Mutex<HashSet<TenantId>>,
    consumers:
        Mutex<HashMap<(String, TenantId, Topic), jetstream::consumer::Consumer<pull::Config>>>,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl NatsLog {
    /// Connects to `cfg.url`. The server need not be up yet: the client keeps
    /// trying, and calls fail as unavailable until it answers.
    pub async fn connect(cfg: NatsConfig) -> Result<Self, LogError> {
        let valid = cfg.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if cfg.prefix.is_empty() || !valid {
            return Err(LogError::Invalid(format!(
                "nats subject prefix {:?} must be letters, digits and '_'",
                cfg.prefix
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .name("tessera")
            .retry_on_initial_connect()
            .connection_timeout(cfg.timeout)
            .request_timeout(Some(cfg.timeout))
            .connect(cfg.url.as_str())
            .await
            .map_err(unavailable)?;
        let js =
            jetstream::context::ContextBuilder::new().timeout(cfg.timeout).build(client.clone());
        Ok(Self { client, js, cfg, streams: Mutex::default(), consumers: Mutex::default() })
    }

    /// Waits up to the timeout for the connection. While disconnected the
    /// client would buffer publishes and send them on reconnect, so a batch
    /// answered 503 could land after all: nothing is published then.
    async fn connected(&self) -> Result<(), LogError> {
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        while self.client.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() >= deadline {
                return Err(LogError::Unavailable(format!(
                    "not connected to NATS at {}",
                    self.cfg.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    fn stream_name(&self, tenant: &TenantId) -> String {
        format!("{}_{}", self.cfg.prefix.to_ascii_uppercase(), tenant.as_str())
    }

    fn subject(&self, tenant: &TenantId, topic: Topic) -> String {
        format!("{}.{}.{}", self.cfg.prefix, tenant.as_str(), topic.as_str())
    }

    fn stream_config(&self, tenant: &TenantId) -> stream::Config {
        let r = self.cfg.retention;
        stream::Config {
            name: self.stream_name(tenant),
            subjects: vec![format!("{}.{}.>", self.cfg.prefix, tenant.as_str())],
            max_age: r.max_age,
            max_bytes: r.max_bytes.min(i64::MAX as u64) as i64,
            discard: DiscardPolicy::Old,
            duplicate_window: r.dedupe_window.min(r.max_age),
            storage: StorageType::File,
            allow_direct: true,
            description: Some(format!("Tessera events of tenant {tenant}")),
            ..Default::default()
        }
    }

    /// The tenant's stream, created (or brought to the configured limits)
    /// the first time this process writes to it.
    async fn ensure_stream(&self, tenant: &TenantId) -> Result<(), LogError> {
        if self.streams.lock().unwrap_or_else(PoisonError::into_inner).contains(tenant) {
            return Ok(());
        }
        self.js.create_or_update_stream(self.stream_config(tenant)).await.map_err(unavailable)?;
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).insert(tenant.clone());
        Ok(())
    }

    /// The tenant's stream if it exists.
    async fn stream(&self, tenant: &TenantId) -> Result<Option<stream::Stream>, LogError> {
        match self.js.get_stream(self.stream_name(tenant)).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(unavailable(e)),
            },
        }
    }

    async fn group_consumer(
        &self,
        group: &str,
        tenant: &TenantId,
        topic: Topic,
    ) -> Result<Option<jetstream::consumer::Consumer<pull::Config>>, LogError> {
        let key = (group.to_owned(), tenant.clone(), topic);
        if let Some(c) = self.consumers.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(Some(c.clone()));
        }
        let Some(stream) = self.stream(tenant).await? else { return Ok(None) };
        let name = format!("{group}-{}", topic.as_str());
        let c = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.cfg.ack_wait,
                    filter_subject: self.subject(tenant, topic),
                    deliver_policy: DeliverPolicy::All,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        self.consumers.lock().unwrap_or_else(PoisonError::into_inner).insert(key, c.clone());
        Ok(Some(c))
    }

    /// Publishes the messages (id, payload) pipelined and waits for every
    /// ack; on a failure deletes the ones stored before answering it.
    async fn publish(
        &self,
        tenant: &TenantId,
        topic: Topic,
        messages: Vec<(String, bytes::Bytes)>,
    ) -> Result<Vec<Appended>, LogError> {
        self.connected().await?;
        self.ensure_stream(tenant).await?;
        let subject = self.subject(tenant, topic);
        let stream = self.stream_name(tenant);
        let started = tokio::time::Instant::now();
        let mut acks = Acks::default();
        'events: for (id, payload) in messages {
            // Publishes are pipelined under the client's cap on acks in flight.
            // At the cap this append first waits for its own acks, so appends
            // running together can never hold every permit and wait forever.
            let ack = loop {
                let publish = jetstream::message::PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(&id)
                    .expected_stream(&stream);
                match self.js.send_publish(subject.clone(), publish).await {
                    Ok(ack) => break ack,
                    Err(e) if e.kind() == PublishErrorKind::MaxAckPending => {
                        if !acks.pending.is_empty() {
                            acks.settle().await;
                        } else if started.elapsed() > self.cfg.timeout {
                            acks.failure.get_or_insert(unavailable("too many publishes in flight"));
                            break 'events;
                        } else {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    Err(e) => {
                        acks.failure.get_or_insert(unavailable(e));
                        break 'events;
                    }
                }
            };
            acks.pending.push((ack, id));
            if acks.pending.len() >= ACK_WINDOW {
                acks.settle().await;
            }
            if acks.failure.is_some() {
                break;
            }
        }
        acks.settle().await;
        if let Some(e) = acks.failure {
            self.rollback(tenant, &acks.stored).await;
            return Err(e);
        }
        Ok(acks.out)
    }

    async fn rollback(&self, tenant: &TenantId, stored: &[u64]) {
        let Ok(Some(stream)) = self.stream(tenant).await else { return };
        for seq in stored {
            if let Err(e) = stream.delete_message(*seq).await {
                tracing::warn!(tenant = %tenant, seq, error = %e, "could not roll back a partly stored batch");
            }
        }
    }
}

fn decode(msg: &jetstream::Message) -> Result<Record, LogError> {
    let info = msg.info().map_err(|e| LogError::Internal(e.to_string()))?;
    let topic = msg
        .subject
        .rsplit('.')
        .next()
        .and_then(Topic::parse)
        .ok_or_else(|| LogError::Internal(format!("unknown subject {}", msg.subject)))?;
    let body: Body = serde_json::from_slice(&msg.payload).map_err(|e| {
        LogError::Internal(format!("undecodable event at {}: {e}", info.stream_sequence))
    })?;
    let ingested =
        Timestamp::from_millis((info.published.unix_timestamp_nanos() / 1_000_000) as i64);
    Ok(body.into_record(info.stream_sequence, topic, ingested))
}

#[async_trait]
impl EventLog for NatsLog {
    async fn append(
        &self,
        tenant: &TenantId,
        topic: Topic,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        check_sizes(&events)?;
        let now = Timestamp::now();
        let mut messages = Vec::with_capacity(events.len());
        for e in events {
            let id = event_id(&e, now);
            let body = Body {
                id: id.clone(),
                event_type: e.event_type,
                entity: e.entity,
                ts: e.ts,
                properties: e.properties,
            };
            let payload =
                serde_json::to_vec(&body).map_err(|e| LogError::Internal(e.to_string()))?;
            messages.push((id, bytes::Bytes::from(payload)));
        }
        self.publish(tenant, topic, messages).await
    }

    async fn append_encoded(
        &self,
        tenant: &TenantId,
        topic: Topic,
        batch: &Encoded,
    ) -> Result<Vec<u64>, LogError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let messages = batch
            .events()
            .map(|(id, body)| (id.to_owned(), bytes::Bytes::copy_from_slice(body)))
            .collect();
        let out = self.publish(tenant, topic, messages).await?;
        Ok(out.into_iter().map(|a| a.offset).collect())
    }

    async fn read(
        &self,
        tenant: &TenantId,
        topic: Topic,
        from: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page, LogError> {
        let limit = limit.clamp(1, 10_000);
        let Some(stream) = self.stream(tenant).await? else {
            let next = from.after_reading_to(1);
            return Ok(Page { records: Vec::new(), next, end: true });
        };
        let head = stream.cached_info().state.last_sequence + 1;
        let deliver_policy = match from {
            Position::Offset(o) => DeliverPolicy::ByStartSequence { start_sequence: o.max(1) },
            Position::Time(t) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(t.millis()) * 1_000_000,
                )
                .map_err(|e| LogError::Invalid(e.to_string()))?,
            },
        };
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy,
                ack_policy: AckPolicy::None,
                filter_subject: self.subject(tenant, topic),
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        // Filters are applied here, so a read looks at a bounded number of
        // records and says where it stopped.
        let scan_budget = limit.max(1000) * 4;
        let mut records = Vec::new();
        let mut scanned = 0;
        let mut last_seen = None;
        let mut end = false;
        let mut full = false;
        let mut past = false;
        while scanned < scan_budget {
            let want = (limit - records.len()).max(64).min(scan_budget - scanned);
            let mut batch =
                consumer.fetch().max_messages(want).messages().await.map_err(unavailable)?;
            let mut got = 0;
            while let Some(msg) = batch.next().await {
                let r = decode(&msg.map_err(unavailable)?)?;
                got += 1;
                if filter.until.is_some_and(|u| r.ingested_at > u) {
                    // Stored in order: nothing after this one is wanted.
                    past = true;
                    break;
                }
                last_seen = Some(r.offset);
                if filter.matches(&r) {
                    records.push(r);
                    if records.len() == limit {
                        full = true;
                        break;
                    }
                }
            }
            scanned += got;
            if past {
                end = true;
                break;
            }
            if full {
                end = last_seen.is_some_and(|s| s + 1 >= head);
                break;
            }
            if got < want {
                end = true;
                break;
            }
        }
        // A consumer left behind (NATS went away just now) expires by itself
        // after its inactive threshold; the read's answer does not depend on it.
        if let Err(e) = stream.delete_consumer(&consumer.cached_info().name).await {
            tracing::debug!(error = %e, "read consumer left to expire");
        }
        let next = match last_seen {
            Some(s) => s + 1,
            None => from.after_reading_to(head),
        };
        let next = if end { next.max(head) } else { next };
        Ok(Page { records, next, end })
    }

    async fn next_offset(&self, tenant: &TenantId) -> Result<u64, LogError> {
        Ok(match self.stream(tenant).await? {
            Some(s) => s.cached_info().state.last_sequence + 1,
            None => 1,
        })
    }

    async fn wait_for(&self, tenant: &TenantId, offset: u64, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribe first, then look: an append between the two still wakes us.
        let sub = self.client.subscribe(format!("{}.{}.>", self.cfg.prefix, tenant.as_str())).await;
        match self.next_offset(tenant).await {
            Ok(next) if next > offset => return,
            Ok(_) => {}
            // NATS is away: wait out the time rather than spin.
            Err(_) => {
                tokio::time::sleep_until(deadline).await;
                return;
            }
        }
        match sub {
            Ok(mut sub) => {
                // A message, or the wait over: the caller reads again either way.
                let _ = tokio::time::timeout_at(deadline, sub.next()).await;
                // Dropping the subscriber unsubscribes too; this just says so at once.
                let _ = sub.unsubscribe().await;
            }
            Err(_) => tokio::time::sleep_until(deadline).await,
        }
    }

    async fn wait_any(&self, wait: Duration) {
        match self.client.subscribe(format!("{}.*.>", self.cfg.prefix)).await {
            Ok(mut sub) => {
                let _ = tokio::time::timeout(wait, sub.next()).await;
                let _ = sub.unsubscribe().await;
            }
            Err(_) => tokio::time::sleep(wait).await,
        }
    }

    async fn fetch(
        &self,
        group: &str,
        tenant: &TenantId,
        topic: Topic,
        max: usize,
        wait: Duration,
    ) -> Result<Delivery, LogError> {
        check_group(group)?;
        let max = max.clamp(1, 10_000);
        let Some(consumer) = self.group_consumer(group, tenant, topic).await? else {
            self.wait_for(tenant, 1, wait).await;
            return Ok(Delivery { records: Vec::new(), ack: Box::new(NatsAck(Vec::new())) });
        };
        let mut records = Vec::new();
        let mut ackers = Vec::new();
        let take = async |records: &mut Vec<Record>, ackers: &mut Vec<_>| {
            let mut batch =
                consumer.fetch().max_messages(max).messages().await.map_err(unavailable)?;
            while let Some(msg) = batch.next().await {
                let msg = msg.map_err(unavailable)?;
                let r = decode(&msg)?;
                let (_, acker) = msg.split();
                records.push(r);
                ackers.push(acker);
            }
            Ok::<_, LogError>(())
        };
        take(&mut records, &mut ackers).await?;
        if records.is_empty() && !wait.is_zero() {
            let next = self.next_offset(tenant).await?;
            self.wait_for(tenant, next, wait).await;
            // The stream may hold the record a moment before the consumer hands
            // it out: look a few times (the wake may also have been another
            // topic's record, so not for long).
            for _ in 0..5 {
                take(&mut records, &mut ackers).await?;
                if !records.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(Delivery { records, ack: Box::new(NatsAck(ackers)) })
    }

    async fn lag(&self, group: &str, tenant: &TenantId, topic: Topic) -> Result<Lag, LogError> {
        check_group(group)?;
        let Some(mut consumer) = self.group_consumer(group, tenant, topic).await? else {
            return Ok(Lag::default());
        };
        let info = consumer.info().await.map_err(unavailable)?;
        Ok(Lag { pending: info.num_pending, in_flight: info.num_ack_pending as u64 })
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, LogError> {
        let prefix = format!("{}_", self.cfg.prefix.to_ascii_uppercase());
        let mut names = self.js.stream_names();
        let mut out = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(unavailable)?;
            if let Some(t) = name.strip_prefix(&prefix).and_then(|t| TenantId::parse(t).ok()) {
                out.push(t);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn tombstone(&self, tenant: &TenantId, key: &str, value: &str) -> Result<u64, LogError> {
        // JetStream deletes (and erases) at once; there is nothing left to compact.
        let Some(stream) = self.stream(tenant).await? else { return Ok(0) };
        let filter =
            Filter { entity: Some((key.to_owned(), value.to_owned())), ..Filter::default() };
        let mut deleted = 0;
        for topic in Topic::ALL {
            let mut from = Position::Offset(1);
            loop {
                let page = self.read(tenant, topic, from, &filter, 1000).await?;
                for r in &page.records {
                    if stream.delete_message(r.offset).await.map_err(unavailable)? {
                        deleted += 1;
                    }
                }
                if page.end {
                    break;
                }
                from = Position::Offset(page.next);
            }
        }
        Ok(deleted)
    }

    async fn compact(&self) -> Result<Compaction, LogError> {
        // The stream limits carry the retention; JetStream enforces them itself.
        Ok(Compaction::default())
    }
}

/// Publishes one append keeps unacknowledged at most.
const ACK_WINDOW: usize = 256;

/// The acks an append waits for, and what they said.
#[derive(Default)]
struct Acks {
    pending: Vec<(jetstream::context::PublishAckFuture, String)>,
    out: Vec<Appended>,
    /// Sequences stored by this append (not duplicates): what a rollback deletes.
    stored: Vec<u64>,
    failure: Option<LogError>,
}

impl Acks {
    async fn settle(&mut self) {
        for (ack, id) in self.pending.drain(..) {
            match ack.await {
                Ok(a) => {
                    if !a.duplicate {
                        self.stored.push(a.sequence);
                    }
                    self.out.push(Appended { offset: a.sequence, id, duplicate: a.duplicate });
                }
                Err(e) => {
                    self.failure.get_or_insert(unavailable(e));
                }
            }
        }
    }
}

struct NatsAck(Vec<jetstream::message::Acker>);

#[async_trait]
impl Ack for NatsAck {
    async fn commit(self: Box<Self>) -> Result<(), LogError> {
        let Some((last, rest)) = self.0.split_last() else { return Ok(()) };
        for a in rest {
            a.ack().await.map_err(unavailable)?;
        }
        // The server takes a connection's acks in order: once the last one is
        // confirmed, all are.
        last.double_ack().await.map_err(unavailable)
    }

    async fn release(self: Box<Self>) -> Result<(), LogError> {
        let Some((last, rest)) = self.0.split_last() else { return Ok(()) };
        for a in rest {
            a.ack_with(AckKind::Nak(None)).await.map_err(unavailable)?;
        }
        last.double_ack_with(AckKind::Nak(None)).await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests;
