#!/usr/bin/env bash
# F4 ingestion and lag, one run on this machine:
# - POST /v1/events over HTTP (hey, 8 clients) in batches of 100 and 1,000 events:
#   events/s and p99 per batch, on the embedded log and on NATS JetStream;
# - beside them, the raw references: the same events published straight to JetStream
#   by a Rust client (one message each, pipelined, every ack awaited per batch; the
#   events_bench example) and Redis Streams XADD (redis-benchmark, pipelined);
# - end-to-end lag: one event at a time, from POST /v1/events to the SSE tail, p50/p99.
#   bench/events.sh   (needs: hey, redis-benchmark, NATS on :4222, redis on :6379)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tessera --bin tessera --example events_bench
T="${CARGO_TARGET_DIR:-target}/release"
SECS="${SECONDS_PER_RUN:-10}"
CONC="${CONCURRENCY:-8}"
NATS="${NATS_URL:-nats://127.0.0.1:4222}"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

python3 - "$work" <<'PY'
import json, sys
def ev(i):
    return {"type": "page_view", "entity": {"customer_id": f"c{i % 1000}"},
            "properties": {"path": "/products/42", "referrer": "search", "n": i}}
for n in (100, 1000):
    json.dump({"events": [ev(i) for i in range(n)]}, open(f"{sys.argv[1]}/body{n}.json", "w"))
PY

start_tessera() { # port extra-args...; sets key
  local port=$1; shift
  TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false \
    TESSERA__EVENTS__MAX_BATCH=1000 \
    "$T/tessera" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$port" "$@" >"$work/t-$port.log" 2>&1 &
  wait_http "http://127.0.0.1:$port/healthz"
  local u="http://127.0.0.1:$port" t
  curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"open"}'
  t=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"bench","plan":"open"}' | json '["id"]')
  key=$(curl -s "$u/admin/v1/tenants/$t/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"b","role":"developer"}' | json '["key"]')
}
ingest() { # port batch -> "events_per_sec p99_ms non_202"
  hey -z "${SECS}s" -c "$CONC" -m POST -T application/json -D "$work/body$2.json" \
    -H "Authorization: Bearer $key" "http://127.0.0.1:$1/v1/events" >"$work/hey.out"
  local rps p99 ok total
  rps=$(grep 'Requests/sec' "$work/hey.out" | awk '{print $2}')
  p99=$(grep '99% in' "$work/hey.out" | awk '{print $3 * 1000}')
  ok=$(grep -E '^\s+\[202\]' "$work/hey.out" | awk '{print $2}')
  total=$(grep -E '^\s+\[[0-9]+\]' "$work/hey.out" | awk '{s+=$2} END {print s}')
  echo "$(python3 -c "print(f'{$rps * $2:.0f}')") $p99 $(( ${total:-0} - ${ok:-0} ))"
}

start_tessera 18701
read -r e100 e100p ebad100 < <(ingest 18701 100)
read -r e1000 e1000p ebad1000 < <(ingest 18701 1000)
read -r elag50 elag99 elagn < <("$T/examples/events_bench" lag http://127.0.0.1:18701 "$key" "$SECS")

start_tessera 18702 --nats-url "$NATS"
read -r n100 n100p nbad100 < <(ingest 18702 100)
read -r n1000 n1000p nbad1000 < <(ingest 18702 1000)
read -r nlag50 nlag99 nlagn < <("$T/examples/events_bench" lag http://127.0.0.1:18702 "$key" "$SECS")

read -r j100 j100p < <("$T/examples/events_bench" jetstream "$NATS" 100 "$SECS" "$CONC")
read -r j1000 j1000p < <("$T/examples/events_bench" jetstream "$NATS" 1000 "$SECS" "$CONC")

payload=$(python3 -c 'import json;print(json.dumps({"type":"page_view","entity":{"customer_id":"c1"},"properties":{"path":"/products/42","referrer":"search","n":1}}))')
stream="tessera-bench-$$"
xadd=$(redis-benchmark -q -n 500000 -c "$CONC" -P 100 XADD "$stream" '*' event "$payload" | grep -oE '[0-9.]+ requests per second' | awk '{print $1}')
redis-cli DEL "$stream" >/dev/null

python3 - "$e100" "$e100p" "$e1000" "$e1000p" "$n100" "$n100p" "$n1000" "$n1000p" "$j100" "$j100p" "$j1000" "$j1000p" \
  "$xadd" "$elag50" "$elag99" "$elagn" "$nlag50" "$nlag99" "$nlagn" "$ebad100" "$ebad1000" "$nbad100" "$nbad1000" "$CONC" <<'PY'
import sys
a = sys.argv[1:]
f = lambda i: float(a[i])
print(f"ingestion over HTTP (hey -c {a[23]}, events/s, p99 per batch):")
print(f"  batch 100:   embedded {f(0):,.0f} ({f(1):.1f} ms)   NATS {f(4):,.0f} ({f(5):.1f} ms)   raw JetStream {f(8):,.0f} ({f(9):.1f} ms)")
print(f"  batch 1000:  embedded {f(2):,.0f} ({f(3):.1f} ms)   NATS {f(6):,.0f} ({f(7):.1f} ms)   raw JetStream {f(10):,.0f} ({f(11):.1f} ms)")
print(f"  Tessera on NATS / raw JetStream: {f(4) / f(8):.2f}x (100), {f(6) / f(10):.2f}x (1000); "
      f"embedded / raw JetStream: {f(0) / f(8):.2f}x (100), {f(2) / f(10):.2f}x (1000)")
print(f"  Redis Streams XADD (redis-benchmark -P 100): {f(12):,.0f} events/s")
print(f"end-to-end lag POST -> SSE tail: embedded p50 {f(13):.2f} ms p99 {f(14):.2f} ms ({a[15]} events); "
      f"NATS p50 {f(16):.2f} ms p99 {f(17):.2f} ms ({a[18]} events)")
print(f"non-202 answers: {a[19]} {a[20]} {a[21]} {a[22]}")
PY
