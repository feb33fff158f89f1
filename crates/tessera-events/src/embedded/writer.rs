//! The embedded log's one writer: appends waiting together share one
//! transaction (a savepoint each) and one fsync, and are answered after the
//! commit.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::sqlite::SqlitePool;
use tessera_core::ids::TenantId;
use tessera_core::time::{Clock, Timestamp};
use tokio::sync::{mpsc, oneshot};

use super::blocks::{self, Packed};
use super::{Heads, internal};
use crate::{Appended, LogError, NewEvent, Topic, event_id};

/// One append waiting for the writer.
pub(super) struct AppendReq {
    pub(super) tenant: TenantId,
    pub(super) topic: Topic,
    pub(super) batch: Batch,
    pub(super) reply: oneshot::Sender<Result<Stored, LogError>>,
}

/// What an append stores: a row per event, or one row for the batch.
pub(super) enum Batch {
    Rows(Vec<NewEvent>),
    Packed(Packed),
    /// An [`crate::Encoded`] batch: its JSON array and how many events it holds.
    Encoded {
        bodies: Vec<u8>,
        count: usize,
    },
}

/// What an append answers: per event, or the offsets of an encoded batch.
pub(super) enum Stored {
    Events(Vec<Appended>),
    Offsets(std::ops::Range<u64>),
}

/// Appends waiting together share one transaction (and one fsync).
const GROUP: usize = 64;
/// Rows per INSERT, ids per lookup (SQLite allows 32766 parameters).
const CHUNK: usize = 500;

/// The one writer: it takes every append waiting, runs each in a savepoint
/// of one transaction (a failing append leaves nothing; the others go on),
/// commits once, and only then answers them. It ends with the log.
pub(super) async fn write_loop(
    pool: SqlitePool,
    clock: Clock,
    heads: Arc<Heads>,
    mut rx: mpsc::Receiver<AppendReq>,
) {
    let mut group = Vec::with_capacity(GROUP);
    while rx.recv_many(&mut group, GROUP).await > 0 {
        let results = commit_group(&pool, &clock, &group).await;
        for (req, result) in group.drain(..).zip(results) {
            let answer = result.map(|(out, next)| {
                heads.advance(&req.tenant, next);
                out
            });
            let _ = req.reply.send(answer);
        }
    }
}

async fn commit_group(
    pool: &SqlitePool,
    clock: &Clock,
    group: &[AppendReq],
) -> Vec<Result<(Stored, u64), LogError>> {
    let all_fail = |e: &sqlx::Error| group.iter().map(|_| Err(internal(e))).collect();
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return all_fail(&e),
    };
    let mut results = Vec::with_capacity(group.len());
    for req in group {
        if let Err(e) = sqlx::query("SAVEPOINT append").execute(&mut *tx).await {
            return all_fail(&e);
        }
        let r = append_in(&mut tx, clock, &req.tenant, req.topic, &req.batch).await;
        let end = if r.is_ok() { "RELEASE append" } else { "ROLLBACK TO append; RELEASE append" };
        if let Err(e) = sqlx::raw_sql(end).execute(&mut *tx).await {
            return all_fail(&e);
        }
        results.push(r);
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => all_fail(&e),
    }
}

/// One append inside the writer's transaction.
async fn append_in(
    tx: &mut sqlx::SqliteConnection,
    clock: &Clock,
    tenant: &TenantId,
    topic: Topic,
    batch: &Batch,
) -> Result<(Stored, u64), LogError> {
    let head: Option<(i64, i64)> =
        sqlx::query_as("SELECT next_seq, last_ingested FROM heads WHERE tenant = ?")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
    let (next, last) = head.unwrap_or((1, 0));
    // Ingestion time never goes back, so time reads agree with offsets.
    let now = clock.now().millis().max(last);
    let (out, next) = match batch {
        Batch::Rows(events) => {
            let (out, next) = append_rows(tx, tenant, topic, events, next, now).await?;
            (Stored::Events(out), next)
        }
        Batch::Packed(p) => {
            let (out, next) = blocks::append(tx, tenant, topic, p, next, now).await?;
            (Stored::Events(out), next)
        }
        Batch::Encoded { bodies, count } => {
            let end = blocks::append_encoded(tx, tenant, topic, bodies, *count, next, now).await?;
            (Stored::Offsets(next as u64..end as u64), end)
        }
    };
    sqlx::query(
        "INSERT INTO heads (tenant, next_seq, last_ingested) VALUES (?, ?, ?)
         ON CONFLICT (tenant) DO UPDATE SET next_seq = excluded.next_seq, last_ingested = excluded.last_ingested",
    )
    .bind(tenant.as_str())
    .bind(next)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    Ok((out, next as u64))
}

/// A row per event, each id looked up first; returns the answers and the
/// new next offset.
async fn append_rows(
    tx: &mut sqlx::SqliteConnection,
    tenant: &TenantId,
    topic: Topic,
    events: &[NewEvent],
    mut next: i64,
    now: i64,
) -> Result<(Vec<Appended>, i64), LogError> {
    let ids: Vec<String> =
        events.iter().map(|e| event_id(e, Timestamp::from_millis(now))).collect();
    // Ids stored before, and repeats inside this batch, are not stored again.
    let mut seen: HashMap<String, i64> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let mut q = sqlx::QueryBuilder::new("SELECT id, seq FROM events WHERE tenant = ");
        q.push_bind(tenant.as_str()).push(" AND id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        q.push(")");
        let rows: Vec<(String, i64)> =
            q.build_query_as().fetch_all(&mut *tx).await.map_err(internal)?;
        seen.extend(rows);
    }
    let mut out = Vec::with_capacity(events.len());
    let mut rows = Vec::new();
    for (e, id) in events.iter().zip(&ids) {
        if let Some(seq) = seen.get(id.as_str()) {
            out.push(Appended { offset: *seq as u64, id: id.clone(), duplicate: true });
            continue;
        }
        let entity = serde_json::to_string(&e.entity).map_err(internal)?;
        let properties = serde_json::to_string(&e.properties).map_err(internal)?;
        let size = (id.len() + e.event_type.len() + entity.len() + properties.len() + 32) as i64;
        seen.insert(id.clone(), next);
        out.push(Appended { offset: next as u64, id: id.clone(), duplicate: false });
        rows.push((next, id, e, entity, properties, size));
        next += 1;
    }
    for chunk in rows.chunks(CHUNK) {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO events (tenant, seq, topic, id, type, entity, ts, ingested, properties, size) ",
        );
        q.push_values(chunk, |mut b, (seq, id, e, entity, properties, size)| {
            b.push_bind(tenant.as_str())
                .push_bind(*seq)
                .push_bind(topic.as_str())
                .push_bind(id.as_str())
                .push_bind(e.event_type.as_str())
                .push_bind(entity.as_str())
                .push_bind(e.ts.millis())
                .push_bind(now)
                .push_bind(properties.as_str())
                .push_bind(*size);
        });
        q.build().execute(&mut *tx).await.map_err(internal)?;
    }
    Ok((out, next))
}
