//! The embedded event log: a SQLite file of its own in the data dir (WAL,
//! `synchronous = FULL`: an acknowledged append survives kill -9), apart
//! from the metadata database so event traffic never queues behind control
//! plane writes. Memory stays bounded: records live on disk; in memory are
//! only each tenant's next offset and the consumer cursors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use tessera_core::ids::TenantId;
use tessera_core::time::{Clock, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

mod blocks;
mod writer;
use writer::{AppendReq, Batch, Stored, write_loop};

use crate::{
    Ack, Appended, Compaction, Delivery, Encoded, EventLog, Filter, Lag, LogError, NewEvent, Page,
    Position, Record, Retention, Topic, check_group, check_sizes,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    entity TEXT NOT NULL,
    ts INTEGER NOT NULL,
    ingested INTEGER NOT NULL,
    properties TEXT NOT NULL,
    size INTEGER NOT NULL,
    tombstoned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS events_by_id ON events (tenant, id);
CREATE INDEX IF NOT EXISTS events_by_time ON events (tenant, ingested);
CREATE TABLE IF NOT EXISTS heads (
    tenant TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    last_ingested INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL,
    tenant TEXT NOT NULL,
    topic TEXT NOT NULL,
    committed INTEGER NOT NULL,
    PRIMARY KEY (grp, tenant, topic)
) WITHOUT ROWID;
";

pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// For everything but appends (those go through the writer task).
    writer: SqlitePool,
    reader: SqlitePool,
    retention: Retention,
    clock: Clock,
    heads: Arc<Heads>,
    appends: mpsc::Sender<AppendReq>,
    cursors: Mutex<HashMap<CursorKey, Cursor>>,
}

/// What the writer moves and waiters watch.
#[derive(Default)]
struct Heads {
    /// Per tenant: the next offset, so waiters wake when it moves.
    next: Mutex<HashMap<TenantId, watch::Sender<u64>>>,
    /// Counts appends to any tenant, for [`EventLog::wait_any`].
    any: watch::Sender<u64>,
}

impl Heads {
    fn get(&self, tenant: &TenantId) -> Option<watch::Sender<u64>> {
        self.next.lock().unwrap_or_else(PoisonError::into_inner).get(tenant).cloned()
    }

    fn advance(&self, tenant: &TenantId, next: u64) {
        let mut heads = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let h = heads.entry(tenant.clone()).or_insert_with(|| watch::Sender::new(next));
        h.send_if_modified(|v| {
            let moved = next > *v;
            *v = (*v).max(next);
            moved
        });
        drop(heads);
        self.any.send_modify(|n| *n += 1);
    }
}

type CursorKey = (String, TenantId, Topic);

/// A group's place in one tenant's topic. `committed` is durable; `handed`
/// is how far deliveries went; `outstanding` are the deliveries not yet
/// committed (first offset -> last offset, committed?).
struct Cursor {
    committed: u64,
    handed: u64,
    outstanding: BTreeMap<u64, (u64, bool)>,
}

impl EmbeddedLog {
    /// Hands an append to the writer and waits for its commit.
    async fn submit(
        &self,
        tenant: &TenantId,
        topic: Topic,
        batch: Batch,
    ) -> Result<Stored, LogError> {
        let (reply, answer) = oneshot::channel();
        let req = AppendReq { tenant: tenant.clone(), topic, batch, reply };
        self.inner.appends.send(req).await.map_err(|_| internal("the event log writer stopped"))?;
        answer.await.map_err(|_| internal("the event log writer stopped"))?
    }

    /// Opens or creates the log at `path`.
    pub async fn open(path: &Path, retention: Retention, clock: Clock) -> Result<Self, LogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                LogError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(internal)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // Space freed by retention and compaction goes back to the file system.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone().auto_vacuum(SqliteAutoVacuum::Incremental))
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await.map_err(internal)?;
        sqlx::raw_sql(blocks::SCHEMA).execute(&writer).await.map_err(internal)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await
            .map_err(internal)?;
        let heads = Arc::new(Heads::default());
        let (appends, rx) = mpsc::channel(1024);
        #[expect(
            clippy::disallowed_methods,
            reason = "the writer lives as long as the log: it ends when the last handle to the log is dropped"
        )]
        tokio::spawn(write_loop(writer.clone(), clock.clone(), heads.clone(), rx));
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                reader,
                retention,
                clock,
                heads,
                appends,
                cursors: Mutex::default(),
            }),
        })
    }
}

fn internal(e: impl std::fmt::Display) -> LogError {
    LogError::Internal(e.to_string())
}

fn record(row: &SqliteRow) -> Result<Record, LogError> {
    let topic: String = row.try_get("topic").map_err(internal)?;
    let entity: String = row.try_get("entity").map_err(internal)?;
    let properties: String = row.try_get("properties").map_err(internal)?;
    Ok(Record {
        offset: row.try_get::<i64, _>("seq").map_err(internal)? as u64,
        topic: Topic::parse(&topic).ok_or_else(|| internal(format!("unknown topic {topic:?}")))?,
        id: row.try_get("id").map_err(internal)?,
        event_type: row.try_get("type").map_err(internal)?,
        entity: serde_json::from_str(&entity).map_err(internal)?,
        ts: Timestamp::from_millis(row.try_get("ts").map_err(internal)?),
        ingested_at: Timestamp::from_millis(row.try_get("ingested").map_err(internal)?),
        properties: serde_json::from_str(&properties).map_err(internal)?,
    })
}

const SELECT: &str = "SELECT seq, topic, id, type, entity, ts, ingested, properties FROM events";

impl Inner {
    fn head(&self, tenant: &TenantId) -> Option<watch::Sender<u64>> {
        self.heads.get(tenant)
    }

    async fn next_offset(&self, tenant: &TenantId) -> Result<u64, LogError> {
        if let Some(h) = self.head(tenant) {
            return Ok(*h.borrow());
        }
        let next: Option<i64> = sqlx::query_scalar("SELECT next_seq FROM heads WHERE tenant = ?")
            .bind(tenant.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(internal)?;
        let next = next.map_or(1, |n| n as u64);
        let mut heads = self.heads.next.lock().unwrap_or_else(PoisonError::into_inner);
        // An append may have set it meanwhile; that value is newer.
        Ok(*heads.entry(tenant.clone()).or_insert_with(|| watch::Sender::new(next)).borrow())
    }

    /// The group's durable offset on the tenant's topic (0: nothing committed).
    async fn committed(
        &self,
        group: &str,
        tenant: &TenantId,
        topic: Topic,
    ) -> Result<u64, LogError> {
        let c: Option<i64> = sqlx::query_scalar(
            "SELECT committed FROM consumer_offsets WHERE grp = ? AND tenant = ? AND topic = ?",
        )
        .bind(group)
        .bind(tenant.as_str())
        .bind(topic.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(internal)?;
        Ok(c.map_or(0, |c| c as u64))
    }

    async fn read(
        &self,
        tenant: &TenantId,
        topic: Topic,
        from: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page, LogError> {
        let head = self.next_offset(tenant).await?;
        let limit = limit.clamp(1, 10_000);
        if blocks::packed(topic) {
            return blocks::read(&self.reader, tenant, topic, from, filter, limit, head).await;
        }
        let mut sql = format!("{SELECT} WHERE tenant = ? AND topic = ? AND tombstoned = 0");
        sql.push_str(match from {
            Position::Offset(_) => " AND seq >= ?",
            Position::Time(_) => " AND ingested >= ?",
        });
        if filter.event_type.is_some() {
            sql.push_str(" AND type = ?");
        }
        if filter.until.is_some() {
            sql.push_str(" AND ingested <= ?");
        }
        if filter.entity.is_some() {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(events.entity) j WHERE j.key = ? AND j.value = ?)",
            );
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        let mut q =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(topic.as_str());
        q = match from {
            Position::Offset(o) => q.bind(o.min(i64::MAX as u64) as i64),
            Position::Time(t) => q.bind(t.millis()),
        };
        if let Some(t) = &filter.event_type {
            q = q.bind(t);
        }
        if let Some(u) = filter.until {
            q = q.bind(u.millis());
        }
        if let Some((k, v)) = &filter.entity {
            q = q.bind(k).bind(v);
        }
        let rows = q.bind(limit as i64 + 1).fetch_all(&self.reader).await.map_err(internal)?;
        let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        let end = records.len() <= limit;
        records.truncate(limit);
        let next = match (records.last(), end) {
            (Some(r), false) => r.offset + 1,
            // Everything up to the head was looked at (and what came since).
            (last, _) => from.after_reading_to(head).max(last.map_or(0, |r| r.offset + 1)),
        };
        Ok(Page { records, next, end })
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(
        &self,
        tenant: &TenantId,
        topic: Topic,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let batch = if blocks::packed(topic) {
            Batch::Packed(blocks::pack(&events, self.inner.clock.now())?)
        } else {
            check_sizes(&events)?;
            Batch::Rows(events)
        };
        match self.submit(tenant, topic, batch).await? {
            Stored::Events(out) => Ok(out),
            Stored::Offsets(_) => Err(internal("the writer answered an append with offsets")),
        }
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
        let stored = if blocks::packed(topic) {
            let bodies = batch.array();
            self.submit(tenant, topic, Batch::Encoded { bodies, count: batch.len() }).await?
        } else {
            // A row per event, as the topic is kept: decoded once here.
            let events = batch.decode()?;
            self.submit(tenant, topic, Batch::Rows(events)).await?
        };
        Ok(match stored {
            Stored::Offsets(range) => range.collect(),
            Stored::Events(out) => out.into_iter().map(|a| a.offset).collect(),
        })
    }

    async fn read(
        &self,
        tenant: &TenantId,
        topic: Topic,
        from: Position,
        filter: &Filter,
        limit: usize,
    ) -> Result<Page, LogError> {
        self.inner.read(tenant, topic, from, filter, limit).await
    }

    async fn next_offset(&self, tenant: &TenantId) -> Result<u64, LogError> {
        self.inner.next_offset(tenant).await
    }

    async fn wait_for(&self, tenant: &TenantId, offset: u64, wait: Duration) {
        if self.inner.next_offset(tenant).await.is_err() {
            return;
        }
        let Some(head) = self.inner.head(tenant) else { return };
        let mut rx = head.subscribe();
        // Both ends are answers: the record came, or the wait is over (the
        // caller reads again either way).
        let _ = tokio::time::timeout(wait, rx.wait_for(|next| *next > offset)).await;
    }

    async fn wait_any(&self, wait: Duration) {
        let mut rx = self.inner.heads.any.subscribe();
        // An append, or the wait over: the caller looks again either way.
        let _ = tokio::time::timeout(wait, rx.changed()).await;
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
        let inner = &self.inner;
        let key: CursorKey = (group.to_owned(), tenant.clone(), topic);
        let known = inner.cursors.lock().unwrap_or_else(PoisonError::into_inner).contains_key(&key);
        if !known {
            let committed = inner.committed(group, tenant, topic).await?;
            inner
                .cursors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_insert(Cursor { committed, handed: committed, outstanding: BTreeMap::new() });
        }
        let handed = |inner: &Inner| {
            inner
                .cursors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .map_or(0, |c| c.handed)
        };
        let mut page = inner
            .read(tenant, topic, Position::Offset(handed(inner) + 1), &Filter::default(), max)
            .await?;
        if page.records.is_empty() && !wait.is_zero() {
            self.wait_for(tenant, page.next.max(handed(inner) + 1), wait).await;
            page = inner
                .read(tenant, topic, Position::Offset(handed(inner) + 1), &Filter::default(), max)
                .await?;
        }
        // Claim the records: another fetch of the group gets what follows.
        let mut cursors = inner.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(c) = cursors.get_mut(&key) else {
            return Err(internal("cursor vanished"));
        };
        page.records.retain(|r| r.offset > c.handed);
        let (Some(first), Some(last)) = (page.records.first(), page.records.last()) else {
            return Ok(Delivery { records: Vec::new(), ack: Box::new(Nothing) });
        };
        let (first, last) = (first.offset, last.offset);
        c.outstanding.insert(first, (last, false));
        c.handed = last;
        drop(cursors);
        let ack = EmbeddedAck { inner: self.inner.clone(), key, first, done: false };
        Ok(Delivery { records: page.records, ack: Box::new(ack) })
    }

    async fn lag(&self, group: &str, tenant: &TenantId, topic: Topic) -> Result<Lag, LogError> {
        check_group(group)?;
        let inner = &self.inner;
        let key: CursorKey = (group.to_owned(), tenant.clone(), topic);
        let cursor = inner
            .cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .map(|c| (c.committed, c.handed));
        let (committed, handed) = match cursor {
            Some(c) => c,
            None => {
                let c = inner.committed(group, tenant, topic).await?;
                (c, c)
            }
        };
        let count = async |from: u64, to: Option<u64>| {
            if blocks::packed(topic) {
                return blocks::count(&inner.reader, tenant, topic, from, to).await;
            }
            let sql =
                "SELECT COUNT(*) FROM events WHERE tenant = ? AND topic = ? AND tombstoned = 0
                       AND seq > ? AND seq <= ?";
            let n = sqlx::query_scalar::<_, i64>(sql)
                .bind(tenant.as_str())
                .bind(topic.as_str())
                .bind(from as i64)
                .bind(to.map_or(i64::MAX, |t| t as i64))
                .fetch_one(&inner.reader)
                .await
                .map_err(internal)?;
            Ok::<_, LogError>(n as u64)
        };
        let pending = count(handed, None).await?;
        let in_flight = count(committed, Some(handed)).await?;
        Ok(Lag { pending, in_flight })
    }

    async fn tenants(&self) -> Result<Vec<TenantId>, LogError> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT tenant FROM heads ORDER BY tenant")
            .fetch_all(&self.inner.reader)
            .await
            .map_err(internal)?;
        Ok(rows.into_iter().map(TenantId::from_stored).collect())
    }

    async fn tombstone(&self, tenant: &TenantId, key: &str, value: &str) -> Result<u64, LogError> {
        let mut tx = self.inner.writer.begin_with("BEGIN IMMEDIATE").await.map_err(internal)?;
        let done = sqlx::query(
            "UPDATE events SET tombstoned = 1 WHERE tenant = ? AND tombstoned = 0
             AND EXISTS (SELECT 1 FROM json_each(events.entity) j WHERE j.key = ? AND j.value = ?)",
        )
        .bind(tenant.as_str())
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        // Packed rows are rewritten without the subject's records at once.
        let packed = blocks::tombstone(&mut tx, tenant, key, value).await?;
        tx.commit().await.map_err(internal)?;
        Ok(done.rows_affected() + packed)
    }

    async fn compact(&self) -> Result<Compaction, LogError> {
        let inner = &self.inner;
        let r = inner.retention;
        let cutoff =
            inner.clock.now().millis() - i64::try_from(r.max_age.as_millis()).unwrap_or(i64::MAX);
        let mut tx = inner.writer.begin_with("BEGIN IMMEDIATE").await.map_err(internal)?;
        let expired = sqlx::query("DELETE FROM events WHERE ingested < ?")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(internal)?
            .rows_affected()
            + blocks::expire(&mut tx, cutoff).await?;
        let tombstoned = sqlx::query("DELETE FROM events WHERE tombstoned = 1")
            .execute(&mut *tx)
            .await
            .map_err(internal)?
            .rows_affected();
        let over: Vec<String> = sqlx::query_scalar(
            "SELECT tenant FROM (SELECT tenant, size FROM events UNION ALL SELECT tenant, size FROM blocks)
             GROUP BY tenant HAVING SUM(size) > ?",
        )
                .bind(r.max_bytes.min(i64::MAX as u64) as i64)
                .fetch_all(&mut *tx)
                .await
                .map_err(internal)?;
        let mut over_size = 0;
        for tenant in over {
            // The newest record that no longer fits: it and all before it go.
            let cut: Option<i64> = sqlx::query_scalar(
                "SELECT seq FROM (SELECT seq, SUM(size) OVER (ORDER BY seq DESC) AS kept
                 FROM (SELECT seq, size FROM events WHERE tenant = ?1
                       UNION ALL SELECT last_seq AS seq, size FROM blocks WHERE tenant = ?1))
                 WHERE kept > ?2 ORDER BY seq DESC LIMIT 1",
            )
            .bind(&tenant)
            .bind(r.max_bytes.min(i64::MAX as u64) as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
            if let Some(cut) = cut {
                over_size += sqlx::query("DELETE FROM events WHERE tenant = ? AND seq <= ?")
                    .bind(&tenant)
                    .bind(cut)
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?
                    .rows_affected()
                    + blocks::drop_through(&mut tx, &tenant, cut).await?;
            }
        }
        tx.commit().await.map_err(internal)?;
        sqlx::query("PRAGMA incremental_vacuum").execute(&inner.writer).await.map_err(internal)?;
        Ok(Compaction { expired, over_size, tombstoned })
    }
}

/// An empty delivery commits nothing.
struct Nothing;

#[async_trait]
impl Ack for Nothing {
    async fn commit(self: Box<Self>) -> Result<(), LogError> {
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), LogError> {
        Ok(())
    }
}

struct EmbeddedAck {
    inner: Arc<Inner>,
    key: CursorKey,
    first: u64,
    done: bool,
}

#[async_trait]
impl Ack for EmbeddedAck {
    async fn commit(mut self: Box<Self>) -> Result<(), LogError> {
        // The durable offset moves over the committed prefix of deliveries only,
        // so a later delivery committed first cannot skip an earlier one.
        let advanced = {
            let mut cursors = self.inner.cursors.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(c) = cursors.get_mut(&self.key) else { return Ok(()) };
            if let Some(slot) = c.outstanding.get_mut(&self.first) {
                slot.1 = true;
            }
            let before = c.committed;
            while let Some(entry) = c.outstanding.first_entry() {
                if !entry.get().1 {
                    break;
                }
                c.committed = entry.remove().0;
            }
            (c.committed > before).then_some(c.committed)
        };
        self.done = true;
        let Some(committed) = advanced else { return Ok(()) };
        let (group, tenant, topic) = &self.key;
        sqlx::query(
            "INSERT INTO consumer_offsets (grp, tenant, topic, committed) VALUES (?, ?, ?, ?)
             ON CONFLICT (grp, tenant, topic) DO UPDATE SET committed = MAX(committed, excluded.committed)",
        )
        .bind(group)
        .bind(tenant.as_str())
        .bind(topic.as_str())
        .bind(committed as i64)
        .execute(&self.inner.writer)
        .await
        .map_err(internal)?;
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), LogError> {
        // Dropping it rewinds the group.
        Ok(())
    }
}

impl Drop for EmbeddedAck {
    /// A delivery dropped without its commit is handed out again: the group
    /// rewinds to its committed offset (at-least-once, like an expired ack
    /// wait on JetStream).
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut cursors = self.inner.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cursors.get_mut(&self.key) {
            c.outstanding.clear();
            c.handed = c.committed;
        }
    }
}

#[cfg(test)]
mod tests;
