//! The Redis online store, laid out as Feast lays out its Redis store: one
//! hash per entity key (`<prefix>:<tenant>:<entity key>`), a field per
//! feature (`<view>:<feature>`, the value as JSON) and per view its
//! timestamps (`_ts:<view>`, `_created:<view>`, epoch milliseconds). A write
//! is one Lua script, so a batch lands whole or not at all and the newer row
//! wins per key. Every call is bounded by the timeout: an unreachable Redis
//! answers `Unavailable`, never a hang.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use serde_json::{Map, Value};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use tokio::sync::Mutex;

use crate::{EntityKey, OnlineError, OnlineStore, Row, Write};

const WRITE: &str = r"
local view = ARGV[1]
local keep = tonumber(ARGV[2])
local nf = tonumber(ARGV[3])
local stored = 0
local i = 4 + nf
for k = 1, #KEYS do
  local ts = tonumber(ARGV[i])
  local cr = tonumber(ARGV[i + 1])
  local old = redis.call('HMGET', KEYS[k], '_ts:' .. view, '_created:' .. view)
  local ots = tonumber(old[1])
  local ocr = tonumber(old[2]) or 0
  if (not ots) or ts > ots or (ts == ots and cr >= ocr) then
    local args = {'_ts:' .. view, ARGV[i], '_created:' .. view, ARGV[i + 1]}
    for f = 1, nf do
      args[#args + 1] = view .. ':' .. ARGV[3 + f]
      args[#args + 1] = ARGV[i + 1 + f]
    end
    redis.call('HSET', KEYS[k], unpack(args))
    stored = stored + 1
  end
  if keep > 0 then redis.call('PEXPIRE', KEYS[k], keep) else redis.call('PERSIST', KEYS[k]) end
  i = i + 2 + nf
end
return stored
";

/// A connection to Redis made on first use (so the server starts while
/// Redis is away), every call bounded by the timeout.
pub(crate) struct Link {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
}

impl Link {
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self, OnlineError> {
        Ok(Self {
            client: redis::Client::open(url)
                .map_err(|e| OnlineError::Internal(format!("redis_url: {e}")))?,
            conn: Mutex::new(None),
            timeout,
        })
    }

    /// Runs `f` on the connection within the timeout.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T, OnlineError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        tokio::time::timeout(self.timeout, async {
            let conn = {
                let mut slot = self.conn.lock().await;
                match &*slot {
                    Some(c) => c.clone(),
                    None => {
                        let c = ConnectionManager::new(self.client.clone())
                            .await
                            .map_err(unavailable)?;
                        *slot = Some(c.clone());
                        c
                    }
                }
            };
            f(conn).await.map_err(unavailable)
        })
        .await
        .map_err(|_| {
            OnlineError::Unavailable(format!("redis did not answer within {:?}", self.timeout))
        })?
    }
}

pub struct RedisOnline {
    link: Link,
    prefix: String,
    script: redis::Script,
}

fn unavailable(e: impl std::fmt::Display) -> OnlineError {
    OnlineError::Unavailable(e.to_string())
}

impl RedisOnline {
    /// A store on `url` whose keys start with `prefix` (`tessera:fs` in the server).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, OnlineError> {
        Ok(Self {
            link: Link::new(url, timeout)?,
            prefix: prefix.to_owned(),
            script: redis::Script::new(WRITE),
        })
    }

    fn key(&self, tenant: &TenantId, key: &EntityKey) -> String {
        format!("{}:{}:{}", self.prefix, tenant.as_str(), key.as_str())
    }
}

fn millis(v: &Option<String>) -> Option<i64> {
    v.as_deref().and_then(|s| s.parse().ok())
}

#[async_trait]
impl OnlineStore for RedisOnline {
    async fn write(&self, tenant: &TenantId, w: Write<'_>) -> Result<u64, OnlineError> {
        let Some((_, first)) = w.rows.first() else { return Ok(0) };
        let features: Vec<String> = first.values.keys().cloned().collect();
        let mut inv = self.script.prepare_invoke();
        inv.arg(w.view).arg(w.keep.map_or(0, |k| k.as_millis().max(1) as u64)).arg(features.len());
        for f in &features {
            inv.arg(f);
        }
        for (key, row) in &w.rows {
            inv.key(self.key(tenant, key)).arg(row.event_ts.millis()).arg(row.created.millis());
            for f in &features {
                let v = row.values.get(f).unwrap_or(&Value::Null);
                inv.arg(v.to_string());
            }
        }
        self.link.call(|mut c| async move { inv.invoke_async::<u64>(&mut c).await }).await
    }

    async fn read(
        &self,
        tenant: &TenantId,
        view: &str,
        features: &[String],
        keys: &[EntityKey],
    ) -> Result<Vec<Option<Row>>, OnlineError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut fields = vec![format!("_ts:{view}"), format!("_created:{view}")];
        fields.extend(features.iter().map(|f| format!("{view}:{f}")));
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("HMGET").arg(self.key(tenant, k)).arg(&fields);
        }
        let answers: Vec<Vec<Option<String>>> =
            self.link.call(|mut c| async move { pipe.query_async(&mut c).await }).await?;
        answers
            .into_iter()
            .map(|a| {
                let Some(ts) = a.first().and_then(millis) else { return Ok(None) };
                let created = a.get(1).and_then(millis).unwrap_or(ts);
                let mut values = Map::new();
                for (f, v) in features.iter().zip(a.iter().skip(2)) {
                    if let Some(v) = v {
                        let v: Value = serde_json::from_str(v).map_err(|e| {
                            OnlineError::Internal(format!("stored value of {f}: {e}"))
                        })?;
                        values.insert(f.clone(), v);
                    }
                }
                Ok(Some(Row {
                    values,
                    event_ts: Timestamp::from_millis(ts),
                    created: Timestamp::from_millis(created),
                }))
            })
            .collect()
    }

    async fn drop_view(&self, tenant: &TenantId, view: &str) -> Result<(), OnlineError> {
        let pattern = format!("{}:{}:*", self.prefix, tenant.as_str());
        let own = |f: &str| {
            f.strip_prefix(view).is_some_and(|rest| rest.starts_with(':'))
                || f == format!("_ts:{view}")
                || f == format!("_created:{view}")
        };
        let mut cursor = 0u64;
        loop {
            let p = pattern.clone();
            let (next, keys): (u64, Vec<String>) = self
                .link
                .call(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(p)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for key in keys {
                let k = key.clone();
                let fields: Vec<String> = self
                    .link
                    .call(
                        |mut c| async move { redis::cmd("HKEYS").arg(k).query_async(&mut c).await },
                    )
                    .await?;
                let gone: Vec<String> = fields.into_iter().filter(|f| own(f)).collect();
                if !gone.is_empty() {
                    self.link
                        .call(|mut c| async move {
                            redis::cmd("HDEL").arg(key).arg(gone).query_async::<u64>(&mut c).await
                        })
                        .await?;
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}
