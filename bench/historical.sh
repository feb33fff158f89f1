#!/usr/bin/env bash
# Historical retrieval (F2): a point-in-time training set of 100,000 entity rows over an
# offline log of 1,000,000 feature rows (10,000 drivers, 3 features, a 2 h TTL), through
# POST /v1/features/historical on the embedded store, beside pandas' merge_asof on the
# same data in the same run (the feature rows pushed 10,000 at a time first; that load is
# timed too).
#   bench/historical.sh   (needs: release build of tessera, the test venv with pandas)
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
PY="${TESSERA_TEST_PYTHON:-$HOME/.cache/tessera/test-venv/bin/python}"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false TESSERA__MAX_BODY_BYTES=268435456 \
  "$T/tessera" serve --listen 127.0.0.1:18801 --data-dir "$work/data" >"$work/t.log" 2>&1 &
wait_http http://127.0.0.1:18801/healthz
"$PY" - "$ADMIN" <<'PY'
import json, sys, time, random, urllib.request
import pandas as pd
u, admin = "http://127.0.0.1:18801", sys.argv[1]
def call(method, path, body, key):
    req = urllib.request.Request(u + path, method=method, data=json.dumps(body).encode(),
                                 headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")
call("POST", "/admin/v1/plans", {"name": "open"}, admin)
t = call("POST", "/admin/v1/tenants", {"name": "hist", "plan": "open"}, admin)["id"]
key = call("POST", f"/admin/v1/tenants/{t}/keys", {"name": "b", "role": "developer"}, admin)["key"]
call("PUT", "/v1/features/entities/driver", {"join_keys": ["driver_id"], "value_type": "int64"}, key)
call("PUT", "/v1/features/views/stats", {"entities": ["driver"], "ttl": "2h", "source": {"push": {}},
     "schema": [{"name": "trips", "dtype": "int64"}, {"name": "rate", "dtype": "float64"},
                {"name": "rating", "dtype": "float64"}]}, key)
rng = random.Random(7)
base = 1_700_000_000_000
n, drivers, q = 1_000_000, 10_000, 100_000
feat = pd.DataFrame({"driver_id": [rng.randrange(drivers) for _ in range(n)],
                     "ts": [base + rng.randrange(7 * 86_400_000) for _ in range(n)]})
feat["trips"] = [rng.randrange(100) for _ in range(n)]
feat["rate"] = [rng.random() for _ in range(n)]
feat["rating"] = [rng.random() * 5 for _ in range(n)]
started = time.perf_counter()
for i in range(0, n, 10_000):
    part = feat.iloc[i:i + 10_000]
    call("POST", "/v1/features/push", {"push_source_name": "stats", "to": "offline", "df": {
        "driver_id": part.driver_id.tolist(), "event_timestamp": part.ts.tolist(),
        "trips": part.trips.tolist(), "rate": part.rate.tolist(), "rating": part.rating.tolist()}}, key)
load = time.perf_counter() - started
ents = pd.DataFrame({"driver_id": [rng.randrange(drivers) for _ in range(q)],
                     "ts": [base + rng.randrange(7 * 86_400_000) for _ in range(q)],
                     "label": [rng.randrange(2) for _ in range(q)]})
body = {"entity_df": {"driver_id": ents.driver_id.tolist(), "event_timestamp": ents.ts.tolist(),
                      "label": ents.label.tolist()},
        "features": ["stats:trips", "stats:rate", "stats:rating"]}
started = time.perf_counter()
out = call("POST", "/v1/features/historical", body, key)
tessera = time.perf_counter() - started
started = time.perf_counter()
a = ents.sort_values("ts").reset_index()
b = feat.sort_values("ts")
joined = pd.merge_asof(a, b, on="ts", by="driver_id", tolerance=2 * 3_600_000, direction="backward")
joined = joined.sort_values("index")
pandas = time.perf_counter() - started
# The same answers: Tessera's rows are in entity order, pandas' sorted back to it.
ours = [r[3] for r in out["rows"]]
theirs = [None if pd.isna(v) else int(v) for v in joined.trips]
mismatch = sum(1 for x, y in zip(ours, theirs) if x != y)
print(f"pushed {n} offline rows in {load:.1f} s ({n / load:,.0f} rows/s)")
print(f"historical, {q} entity rows: tessera {tessera:.2f} s ({q / tessera:,.0f} rows/s), "
      f"pandas merge_asof {pandas:.2f} s ({q / pandas:,.0f} rows/s); ratio {pandas / tessera:.2f}x; "
      f"rows that differ: {mismatch} (ties of equal event time may pick another row)")
PY
