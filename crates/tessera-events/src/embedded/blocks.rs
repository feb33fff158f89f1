//! The embedded log's packed topic (`predictions`): one row per append, the
//! batch's bodies in one JSON array.
//!
//! The pipeline leaves a record per inference. A row per record, with its
//! indexes, cost the cache-hit path a third of its throughput on two cores;
//! a row per batch is one B-tree insert for up to a thousand records. The
//! records of a row have consecutive offsets (`first_seq ..= last_seq`), so
//! lag and paging need no decoding. Reads with a filter skip the rows whose
//! bytes cannot hold a match (`instr` on the JSON), then decode and check.
//! A tombstone rewrites the rows it touches at once, split where records go,
//! so the rows stay consecutive. Ids are not looked up against earlier
//! appends (the pipeline's prediction ids are unique by construction; a
//! retried append whose answer was lost may store a record twice, which
//! at-least-once consumers take anyway); repeats inside one batch are stored
//! once.

use std::collections::HashMap;

use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use super::internal;
use crate::{
    Appended, Body, BodyRef, Filter, LogError, MAX_EVENT_BYTES, NewEvent, Page, Position, Topic,
    event_id,
};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS blocks (
    tenant TEXT NOT NULL,
    topic TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    ingested INTEGER NOT NULL,
    size INTEGER NOT NULL,
    bodies BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS blocks_by_seq ON blocks (tenant, last_seq);
CREATE INDEX IF NOT EXISTS blocks_by_time ON blocks (tenant, ingested);
";

/// Whether the topic is stored a row per append.
pub(super) fn packed(topic: Topic) -> bool {
    topic == Topic::Predictions
}

/// A batch encoded for its row, before it has offsets.
pub(super) struct Packed {
    bodies: Vec<u8>,
    /// Per event of the batch: its id, which stored body it is, and whether
    /// it repeats an earlier one of the batch.
    events: Vec<(String, usize, bool)>,
    stored: usize,
}

/// Encodes the batch once (the size check is this encoding's length).
pub(super) fn pack(events: &[NewEvent], now: Timestamp) -> Result<Packed, LogError> {
    let mut bodies = Vec::with_capacity(events.len() * 384 + 2);
    bodies.push(b'[');
    let mut slots: HashMap<String, usize> = HashMap::with_capacity(events.len());
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let id = event_id(e, now);
        if let Some(&slot) = slots.get(&id) {
            out.push((id, slot, true));
            continue;
        }
        let slot = slots.len();
        if slot > 0 {
            bodies.push(b',');
        }
        let start = bodies.len();
        let body = BodyRef {
            id: &id,
            event_type: &e.event_type,
            entity: &e.entity,
            ts: e.ts,
            properties: &e.properties,
        };
        serde_json::to_writer(&mut bodies, &body).map_err(internal)?;
        let size = bodies.len() - start;
        if size > MAX_EVENT_BYTES {
            return Err(LogError::Invalid(format!(
                "event {i} takes {size} bytes, over the log's limit of {MAX_EVENT_BYTES}"
            )));
        }
        slots.insert(id.clone(), slot);
        out.push((id, slot, false));
    }
    bodies.push(b']');
    Ok(Packed { bodies, events: out, stored: slots.len() })
}

/// Stores a packed batch at `next`; returns the answers and the new next offset.
pub(super) async fn append(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    topic: Topic,
    p: &Packed,
    next: i64,
    now: i64,
) -> Result<(Vec<Appended>, i64), LogError> {
    let last = next + p.stored as i64 - 1;
    insert(tx, tenant, topic.as_str(), next, last, now, &p.bodies).await?;
    let out = p
        .events
        .iter()
        .map(|(id, slot, duplicate)| Appended {
            offset: (next + *slot as i64) as u64,
            id: id.clone(),
            duplicate: *duplicate,
        })
        .collect();
    Ok((out, last + 1))
}

/// Stores an encoded batch's array at `next`; returns the new next offset.
pub(super) async fn append_encoded(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    topic: Topic,
    bodies: &[u8],
    count: usize,
    next: i64,
    now: i64,
) -> Result<i64, LogError> {
    let last = next + count as i64 - 1;
    insert(tx, tenant, topic.as_str(), next, last, now, bodies).await?;
    Ok(last + 1)
}

async fn insert(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    topic: &str,
    first: i64,
    last: i64,
    ingested: i64,
    bodies: &[u8],
) -> Result<(), LogError> {
    sqlx::query(
        "INSERT INTO blocks (tenant, topic, first_seq, last_seq, ingested, size, bodies)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant.as_str())
    .bind(topic)
    .bind(first)
    .bind(last)
    .bind(ingested)
    .bind(bodies.len() as i64)
    .bind(bodies)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(())
}

/// Rows fetched per query while reading.
const ROWS: usize = 8;
/// Rows one read looks at before it answers with what it found (a filter
/// that matches little must not scan the whole log in one request).
const MAX_ROWS: usize = 256;

/// Byte strings a row must contain to hold a match of `filter`: its JSON is
/// written by [`pack`], so `"type":"x"` and `"key":"value"` appear verbatim.
fn needles(filter: &Filter) -> Vec<Vec<u8>> {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(t) = &filter.event_type {
        out.push(format!("\"type\":{}", json(t)).into_bytes());
    }
    if let Some((k, v)) = &filter.entity {
        out.push(format!("{}:{}", json(k), json(v)).into_bytes());
    }
    out
}

/// The records of one row.
fn decode(bodies: &[u8]) -> Result<Vec<Body>, LogError> {
    serde_json::from_slice(bodies).map_err(internal)
}

pub(super) async fn read(
    pool: &SqlitePool,
    tenant: &TenantId,
    topic: Topic,
    from: Position,
    filter: &Filter,
    limit: usize,
    head: u64,
) -> Result<Page, LogError> {
    let needles = needles(filter);
    let mut records = Vec::new();
    // The last offset of the last row looked at.
    let mut after: Option<i64> = None;
    let mut looked = 0;
    loop {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT first_seq, ingested, last_seq, bodies FROM blocks WHERE tenant = ",
        );
        q.push_bind(tenant.as_str()).push(" AND topic = ").push_bind(topic.as_str());
        match (after, from) {
            (Some(a), _) => q.push(" AND last_seq > ").push_bind(a),
            (None, Position::Offset(o)) => {
                q.push(" AND last_seq >= ").push_bind(o.min(i64::MAX as u64) as i64)
            }
            (None, Position::Time(t)) => q.push(" AND ingested >= ").push_bind(t.millis()),
        };
        if let Some(u) = filter.until {
            q.push(" AND ingested <= ").push_bind(u.millis());
        }
        for n in &needles {
            q.push(" AND instr(bodies, ").push_bind(n.clone()).push(") > 0");
        }
        q.push(" ORDER BY last_seq LIMIT ").push_bind(ROWS as i64);
        let rows = q.build().fetch_all(pool).await.map_err(internal)?;
        let exhausted = rows.len() < ROWS;
        for row in &rows {
            let first = row.try_get::<i64, _>("first_seq").map_err(internal)? as u64;
            let ingested = Timestamp::from_millis(row.try_get("ingested").map_err(internal)?);
            after = Some(row.try_get("last_seq").map_err(internal)?);
            looked += 1;
            let bodies: &[u8] = row.try_get("bodies").map_err(internal)?;
            for (i, body) in decode(bodies)?.into_iter().enumerate() {
                let offset = first + i as u64;
                if matches!(from, Position::Offset(o) if offset < o) {
                    continue;
                }
                let r = body.into_record(offset, topic, ingested);
                if !filter.matches(&r) {
                    continue;
                }
                records.push(r);
                if records.len() > limit {
                    records.truncate(limit);
                    let next = records.last().map_or(1, |r| r.offset + 1);
                    return Ok(Page { records, next, end: false });
                }
            }
        }
        let looked_to = after.map_or(0, |a| a as u64 + 1);
        if exhausted {
            // Everything up to the head was looked at (and whatever came since).
            let next = from.after_reading_to(head).max(looked_to);
            return Ok(Page { records, next, end: true });
        }
        if looked >= MAX_ROWS {
            return Ok(Page { records, next: looked_to, end: false });
        }
    }
}

/// How many records lie in `(after, to]` (to: `None` for no end).
pub(super) async fn count(
    pool: &SqlitePool,
    tenant: &TenantId,
    topic: Topic,
    after: u64,
    to: Option<u64>,
) -> Result<u64, LogError> {
    let lo = after as i64 + 1;
    let hi = to.map_or(i64::MAX, |t| t as i64);
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(MIN(last_seq, ?) - MAX(first_seq, ?) + 1), 0) FROM blocks
         WHERE tenant = ? AND topic = ? AND last_seq >= ? AND first_seq <= ?",
    )
    .bind(hi)
    .bind(lo)
    .bind(tenant.as_str())
    .bind(topic.as_str())
    .bind(lo)
    .bind(hi)
    .fetch_one(pool)
    .await
    .map_err(internal)?;
    Ok(n.max(0) as u64)
}

/// Removes the tenant's records whose entity has `key` = `value`, rewriting
/// the rows that held them; returns how many went.
pub(super) async fn tombstone(
    tx: &mut SqliteConnection,
    tenant: &TenantId,
    key: &str,
    value: &str,
) -> Result<u64, LogError> {
    let needle = needles(&Filter { entity: Some((key.into(), value.into())), ..Filter::default() })
        .remove(0);
    // Rows written by this rewrite come after `last`: they are not looked at again.
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(rowid) FROM blocks WHERE tenant = ?")
        .bind(tenant.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?;
    let Some(last) = last else { return Ok(0) };
    let mut removed = 0;
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT rowid, topic, first_seq, ingested, bodies FROM blocks
             WHERE tenant = ? AND rowid > ? AND rowid <= ? AND instr(bodies, ?) > 0
             ORDER BY rowid LIMIT 16",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(last)
        .bind(&needle)
        .fetch_all(&mut *tx)
        .await
        .map_err(internal)?;
        if rows.is_empty() {
            return Ok(removed);
        }
        for row in rows {
            let rowid: i64 = row.try_get("rowid").map_err(internal)?;
            after = rowid;
            let topic: String = row.try_get("topic").map_err(internal)?;
            let first: i64 = row.try_get("first_seq").map_err(internal)?;
            let ingested: i64 = row.try_get("ingested").map_err(internal)?;
            let bodies = decode(row.try_get("bodies").map_err(internal)?)?;
            let gone = |b: &Body| b.entity.get(key).is_some_and(|v| v == value);
            if !bodies.iter().any(gone) {
                continue;
            }
            sqlx::query("DELETE FROM blocks WHERE rowid = ?")
                .bind(rowid)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
            // What stays, in runs of consecutive offsets, a row each.
            let mut run: Vec<&Body> = Vec::new();
            let mut run_first = first;
            for (i, body) in bodies.iter().enumerate() {
                let offset = first + i as i64;
                if gone(body) {
                    removed += 1;
                    if !run.is_empty() {
                        let bytes = serde_json::to_vec(&run).map_err(internal)?;
                        insert(tx, tenant, &topic, run_first, offset - 1, ingested, &bytes).await?;
                    }
                    run.clear();
                    run_first = offset + 1;
                } else {
                    run.push(body);
                }
            }
            if !run.is_empty() {
                let bytes = serde_json::to_vec(&run).map_err(internal)?;
                let end = first + bodies.len() as i64 - 1;
                insert(tx, tenant, &topic, run_first, end, ingested, &bytes).await?;
            }
        }
    }
}

/// Removes rows ingested before `cutoff`; returns how many records went.
pub(super) async fn expire(tx: &mut SqliteConnection, cutoff: i64) -> Result<u64, LogError> {
    let gone: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM blocks WHERE ingested < ? RETURNING last_seq - first_seq + 1",
    )
    .bind(cutoff)
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(gone.into_iter().sum::<i64>() as u64)
}

/// Removes the tenant's rows whose records all lie at or before `cut`;
/// returns how many records went.
pub(super) async fn drop_through(
    tx: &mut SqliteConnection,
    tenant: &str,
    cut: i64,
) -> Result<u64, LogError> {
    let gone: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM blocks WHERE tenant = ? AND last_seq <= ? RETURNING last_seq - first_seq + 1",
    )
    .bind(tenant)
    .bind(cut)
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(gone.into_iter().sum::<i64>() as u64)
}
