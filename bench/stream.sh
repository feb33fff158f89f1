#!/usr/bin/env bash
# Streaming features (F3): events/s through the aggregation pipeline (100,000 purchase
# events of 1,000 customers sent in batches of 1,000, timed until every customer's
# online window counts them all) and end-to-end freshness (one event appended, then
# polled on /v1/features/online until its window shows it: p50/p99 of 200), on the
# embedded stores. The client is Python (urllib): its own time is in the freshness figure.
#   bench/stream.sh   (needs: release build of tessera, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false TESSERA__EVENTS__MAX_BATCH=1000 \
  "$T/tessera" serve --listen 127.0.0.1:18811 --data-dir "$work/data" >"$work/t.log" 2>&1 &
wait_http http://127.0.0.1:18811/healthz
python3 - "$ADMIN" <<'PY'
import json, sys, time, urllib.request, datetime
u, admin = "http://127.0.0.1:18811", sys.argv[1]
def call(method, path, body, key):
    req = urllib.request.Request(u + path, method=method, data=json.dumps(body).encode(),
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")
call("POST", "/admin/v1/plans", {"name": "open"}, admin)
t = call("POST", "/admin/v1/tenants", {"name": "stream", "plan": "open"}, admin)["id"]
key = call("POST", f"/admin/v1/tenants/{t}/keys", {"name": "b", "role": "developer"}, admin)["key"]
call("PUT", "/v1/features/entities/customer", {"join_keys": ["customer_id"]}, key)
call("PUT", "/v1/features/views/live", {"entities": ["customer"], "source": {"stream": {
    "event_type": "purchase", "allowed_lateness": "1h", "aggregations": [
        {"column": "total", "function": "sum", "window": "1h", "slide": "1m", "name": "spend"},
        {"function": "count", "window": "1h", "slide": "1m", "name": "orders"}]}}}, key)
now = datetime.datetime.now(datetime.timezone.utc)
ts = now.isoformat()
n, customers = 100_000, 1_000
started = time.perf_counter()
for i in range(0, n, 1000):
    call("POST", "/v1/events", {"events": [{"type": "purchase", "entity": {"customer_id": f"c{j % customers}"},
          "ts": ts, "properties": {"total": 1.0}} for j in range(i, i + 1000)]}, key)
sent = time.perf_counter() - started
ids = [f"c{j}" for j in range(customers)]
while True:
    r = call("POST", "/v1/features/online", {"entities": {"customer_id": ids}, "features": ["live:orders"]}, key)
    if all(v == n // customers for v in r["results"][1]["values"]):
        break
    time.sleep(0.05)
done = time.perf_counter() - started
print(f"{n} events: sent in {sent:.1f} s; every window complete after {done:.1f} s: {n / done:,.0f} events/s through the pipeline")
lat = []
for k in range(200):
    before = call("POST", "/v1/features/online", {"entities": {"customer_id": ["c7"]}, "features": ["live:orders"]}, key)["results"][1]["values"][0]
    t0 = time.perf_counter()
    call("POST", "/v1/events", {"events": [{"type": "purchase", "entity": {"customer_id": "c7"},
          "ts": datetime.datetime.now(datetime.timezone.utc).isoformat(), "properties": {"total": 1.0}}]}, key)
    while call("POST", "/v1/features/online", {"entities": {"customer_id": ["c7"]}, "features": ["live:orders"]}, key)["results"][1]["values"][0] == before:
        pass
    lat.append((time.perf_counter() - t0) * 1000)
lat.sort()
print(f"freshness (append -> online), 200 events: p50 {lat[100]:.1f} ms, p99 {lat[197]:.1f} ms, max {lat[-1]:.1f} ms")
PY
