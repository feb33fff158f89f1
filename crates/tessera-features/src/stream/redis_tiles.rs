//! The Redis tile store, for replicas sharing Redis: a hash per tile
//! (`<prefix>:<tenant>:<view>:<agg>:<key>:<tile>`: events, n, sum, sum_sq,
//! min, max) with the set of offsets it counted beside it. One Lua script
//! applies a batch, so replicas adding to the same tile never lose an update
//! and a redelivered event is counted once. Tiles expire once no window can
//! read them.

use super::*;
use crate::redis_store::Link;

const APPLY: &str = r"
local lateness = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local na = tonumber(ARGV[3])
local ne = tonumber(ARGV[4])
local added, dup, late = 0, 0, 0
local i = 5
for e = 1, ne do
  local off = ARGV[i]
  local ts = tonumber(ARGV[i + 1])
  local ingested = tonumber(ARGV[i + 2])
  i = i + 3
  if redis.call('SISMEMBER', ARGV[i] .. ':seen', off) == 1 then
dup = dup + 1
i = i + 2 * na
  elseif ts < ingested - lateness then
late = late + 1
i = i + 2 * na
  else
local counted = false
for a = 1, na do
  local tk = ARGV[i]
  local v = ARGV[i + 1]
  i = i + 2
  if redis.call('SADD', tk .. ':seen', off) == 1 then
    counted = true
    redis.call('HINCRBY', tk, 'events', 1)
    if v ~= '' then
      local x = tonumber(v)
      redis.call('HINCRBY', tk, 'n', 1)
      redis.call('HINCRBYFLOAT', tk, 'sum', v)
      redis.call('HINCRBYFLOAT', tk, 'sum_sq', string.format('%.17g', x * x))
      local mn = tonumber(redis.call('HGET', tk, 'min') or '')
      if (not mn) or x < mn then redis.call('HSET', tk, 'min', v) end
      local mx = tonumber(redis.call('HGET', tk, 'max') or '')
      if (not mx) or x > mx then redis.call('HSET', tk, 'max', v) end
    end
    redis.call('PEXPIRE', tk, keep)
    redis.call('PEXPIRE', tk .. ':seen', keep)
  end
end
if counted then added = added + 1 else dup = dup + 1 end
  end
end
return {added, dup, late}
";

pub struct RedisTiles {
    link: Link,
    prefix: String,
    script: redis::Script,
}

impl RedisTiles {
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, OnlineError> {
        Ok(Self {
            link: Link::new(url, timeout)?,
            prefix: prefix.to_owned(),
            script: redis::Script::new(APPLY),
        })
    }

    fn tile_key(
        &self,
        tenant: &TenantId,
        view: &str,
        agg: usize,
        key: &EntityKey,
        tile: i64,
    ) -> String {
        format!("{}:{}:{view}:{agg}:{}:{tile}", self.prefix, tenant.as_str(), key.as_str())
    }
}

#[async_trait]
impl TileStore for RedisTiles {
    async fn apply(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        events: &[TileEvent],
    ) -> Result<Applied, OnlineError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(spec.lateness)
            // Tiles outlive their last window by an hour of wall time.
            .arg(spec.keep() + 3_600_000)
            .arg(spec.windowings.len())
            .arg(events.len());
        for e in events {
            inv.arg(e.offset).arg(e.ts).arg(e.ingested);
            for (i, w) in spec.windowings.iter().enumerate() {
                inv.arg(self.tile_key(tenant, &spec.view, i, &e.key, w.tile(e.ts)));
                inv.arg(
                    e.values[i]
                        .filter(|v| v.is_finite())
                        .map_or(String::new(), |v| format!("{v:?}")),
                );
            }
        }
        let (added, duplicates, late): (u64, u64, u64) =
            self.link.call(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        Ok(Applied { added, duplicates, late })
    }

    async fn merged(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        agg: usize,
        wants: &[(EntityKey, i64, i64)],
    ) -> Result<Vec<Partial>, OnlineError> {
        let Some(w) = spec.windowings.get(agg) else {
            return Ok(vec![Partial::default(); wants.len()]);
        };
        let mut pipe = redis::pipe();
        let mut counts = Vec::with_capacity(wants.len());
        for (key, from, to) in wants {
            let mut tile = *from;
            let mut n = 0;
            while tile < *to {
                pipe.cmd("HMGET")
                    .arg(self.tile_key(tenant, &spec.view, agg, key, tile))
                    .arg(&["events", "n", "sum", "sum_sq", "min", "max"]);
                tile += w.slide;
                n += 1;
            }
            counts.push(n);
        }
        let tiles: Vec<Vec<Option<String>>> =
            self.link.call(|mut c| async move { pipe.query_async(&mut c).await }).await?;
        let mut tiles = tiles.into_iter();
        Ok(counts
            .into_iter()
            .map(|n| {
                let mut out = Partial::default();
                for t in tiles.by_ref().take(n) {
                    let num = |i: usize| {
                        t.get(i).and_then(|v| v.as_deref()).and_then(|v| v.parse::<f64>().ok())
                    };
                    let Some(events) = num(0) else { continue };
                    out.merge(&Partial {
                        events: events as u64,
                        n: num(1).unwrap_or(0.0) as u64,
                        sum: num(2).unwrap_or(0.0),
                        sum_sq: num(3).unwrap_or(0.0),
                        min: num(4),
                        max: num(5),
                    });
                }
                out
            })
            .collect())
    }
}
