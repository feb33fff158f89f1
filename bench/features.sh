#!/usr/bin/env bash
# B5: online read of 10 features x 1 entity (POST /v1/features/online), held at 1,000
# and 5,000 req/s by hey for 10 s each (one connection per 1,000 req/s: hey's workers
# tick together, so more connections at a lower rate each measure hey's bursts, not
# the server), p50/p99 and errors; on the embedded online store and on Redis; then
# the most req/s at 32 connections.
#   bench/features.sh   (needs: release build of tessera, hey, redis on :6379)
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
SECS="${SECONDS_PER_RUN:-10}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379}"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

python3 - "$work" <<'PY'
import json, sys, datetime
d = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc).isoformat()
feats = [f"f{i}" for i in range(10)]
json.dump({"entities": ["customer"], "ttl": "24h", "source": {"push": {}},
           "schema": [{"name": f, "dtype": "float64"} for f in feats]}, open(f"{d}/view.json", "w"))
df = {"customer_id": [f"c{i}" for i in range(1000)], "event_timestamp": [now] * 1000}
for j, f in enumerate(feats):
    df[f] = [i * 0.5 + j for i in range(1000)]
json.dump({"push_source_name": "stats", "df": df}, open(f"{d}/push.json", "w"))
json.dump({"entities": {"customer_id": ["c42"]}, "features": [f"stats:{f}" for f in feats]},
          open(f"{d}/read.json", "w"))
PY

run() { # label port extra-args...
  local label=$1 port=$2; shift 2
  TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false \
    "$T/tessera" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$port" "$@" >"$work/t-$port.log" 2>&1 &
  wait_http "http://127.0.0.1:$port/healthz"
  local u="http://127.0.0.1:$port" t k
  curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"open"}'
  t=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d "{\"name\":\"b5-$port\",\"plan\":\"open\"}" | json '["id"]')
  k=$(curl -s "$u/admin/v1/tenants/$t/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"b","role":"developer"}' | json '["key"]')
  curl -sf -o /dev/null -X PUT "$u/v1/features/entities/customer" -H "authorization: Bearer $k" -H 'content-type: application/json' -d '{"join_keys":["customer_id"]}'
  curl -sf -o /dev/null -X PUT "$u/v1/features/views/stats" -H "authorization: Bearer $k" -H 'content-type: application/json' -d @"$work/view.json"
  curl -sf -o /dev/null "$u/v1/features/push" -H "authorization: Bearer $k" -H 'content-type: application/json' -d @"$work/push.json"
  curl -sf "$u/v1/features/online" -H "authorization: Bearer $k" -H 'content-type: application/json' -d @"$work/read.json" | python3 -c "import sys,json; r=json.load(sys.stdin); assert r['results'][1]['statuses']==['PRESENT'], r"
  # PAUSE=1: print the URL, key and work dir and wait, for measuring by hand.
  if [ "${PAUSE:-0}" = 1 ]; then echo "$u $k $work"; sleep 1000; fi
  # Warm up, then the fixed rates (hey -q is per connection).
  hey -z 2s -c 16 -m POST -T application/json -D "$work/read.json" -H "Authorization: Bearer $k" "$u/v1/features/online" >/dev/null
  for rate in 1000 5000; do
    hey -z "${SECS}s" -c $((rate / 1000)) -q 1000 -m POST -T application/json -D "$work/read.json" -H "Authorization: Bearer $k" "$u/v1/features/online" > "$work/hey.out"
    echo "$label at $rate req/s: $(grep 'Requests/sec' "$work/hey.out" | awk '{print $2}') req/s, p50 $(grep '50%' "$work/hey.out" | awk '{print $3*1000}') ms, p99 $(grep '99%' "$work/hey.out" | awk '{print $3*1000}') ms, non-200: $(grep -E '^\s+\[[0-9]+\]' "$work/hey.out" | grep -v '\[200\]' | awk '{s+=$2} END {print s+0}')"
  done
  hey -z "${SECS}s" -c 32 -m POST -T application/json -D "$work/read.json" -H "Authorization: Bearer $k" "$u/v1/features/online" > "$work/hey.out"
  echo "$label most: $(grep 'Requests/sec' "$work/hey.out" | awk '{print $2}') req/s, p99 $(grep '99%' "$work/hey.out" | awk '{print $3*1000}') ms"
  kill %1 2>/dev/null || kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
}

run embedded 18701
[ "${ONLY_EMBEDDED:-0}" = 1 ] && exit 0
run redis 18702 --redis-url "$REDIS"
