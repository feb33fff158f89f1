#!/usr/bin/env bash
# B7: CONNECTIONS (10,000) keep-alive connections held for SECS (60) at a low request
# rate (RATE, 500 req/s over all of them: each connection asks every CONNECTIONS/RATE
# seconds) on an authenticated route (GET /v1/me: key auth, tenant). Reports errors
# (must be 0), the connections open at once, latency, and the server's RSS before,
# during (every 10 s) and after.
#   cargo build --release -p tessera
#   bench/connections.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
CONNECTIONS="${CONNECTIONS:-10000}"
SECS="${SECS:-60}"
RATE="${RATE:-500}"
ADMIN=bench-admin-key-0123456789
# Both the server and the load tool hold one descriptor per connection: raise the
# soft limit as far as the hard one allows.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNECTIONS + 512)) ]; then
  echo "the open-file limit ($(ulimit -n)) is below $((CONNECTIONS + 512)); lower CONNECTIONS or raise the hard limit" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
u=http://127.0.0.1:18801
TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false \
  "$T/tessera" serve --listen 127.0.0.1:18801 --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
wait_http "$u/healthz"
tenant=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"conns"}' | json '["id"]')
key=$(curl -s "$u/admin/v1/tenants/$tenant/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"conns","role":"developer"}' | json '["key"]')
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
"$T/tessera" loadtest --url "$u/v1/me" --connections "$CONNECTIONS" --rate "$RATE" --duration "${SECS}s" \
  -H "Authorization: Bearer $key" --json-out "$work/b7.json" >"$work/lt.out" 2>&1 &
lt=$!
during=()
for _ in $(seq 1 $((SECS / 10))); do sleep 10; during+=("$(rss)"); done
wait "$lt"
after=$(rss)
grep -E "connections open at once" "$work/lt.out" || true
python3 - "$work/b7.json" "$before" "$after" "$CONNECTIONS" "$RATE" "$SECS" "${during[@]}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["phases"][0]
before, after, n, rate, secs = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
during = [int(x) for x in sys.argv[7:]]
l = r["latency_ms"]
print(f"B7: {n} keep-alive connections for {secs} s at {rate} req/s: {r['completed']} requests, "
      f"{r['errors']} errors, statuses {r['statuses']}, connections open at once {r['concurrency']}")
print(f"latency p50 {l['p50']:.2f} ms, p99 {l['p99']:.2f} ms, max {l['max']:.1f} ms")
print(f"server RSS before {before/1024:.0f} MiB, during " + ", ".join(f"{d/1024:.0f}" for d in during) + f" MiB, after {after/1024:.0f} MiB")
PY
