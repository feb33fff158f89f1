#!/usr/bin/env bash
# B5's peer: Feast's Python feature server (`feast serve`, 2 workers: the machine's cores)
# over Feast's Redis online store, with the same 10 float features of 1,000 customers as
# bench/features.sh, read the same way (10 features x 1 entity): p50/p99 at 1,000 req/s,
# then the most req/s at 32 connections. Run beside bench/features.sh in the same session.
#   bench/feast_peer.sh   (needs: the test venv with feast[redis] (pip install "feast[redis]==0.67.*"), hey, redis on :6379)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TESSERA_TEST_VENV:-$HOME/.cache/tessera/test-venv}"
SECS="${SECONDS_PER_RUN:-10}"
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/repo/data"
cat > "$work/repo/feature_store.yaml" <<YAML
project: b5_peer
registry: $work/repo/data/registry.db
provider: local
online_store:
  type: redis
  connection_string: "127.0.0.1:6379,db=3"
offline_store:
  type: file
entity_key_serialization_version: 3
YAML
"$VENV/bin/python" - "$work" <<'PY'
import json, sys, datetime
import pandas as pd
from datetime import timedelta
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_source import PushMode
from feast.types import Float64
work = sys.argv[1]
feats = [f"f{i}" for i in range(10)]
now = datetime.datetime.now(datetime.timezone.utc)
df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(1000)], "event_timestamp": [now] * 1000})
for j, f in enumerate(feats):
    df[f] = [i * 0.5 + j for i in range(1000)]
df.to_parquet(f"{work}/repo/data/stats.parquet")
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
batch = FileSource(name="stats_file", path=f"{work}/repo/data/stats.parquet", timestamp_field="event_timestamp")
stats = FeatureView(name="stats", entities=[customer], ttl=timedelta(hours=24),
                    schema=[Field(name=f, dtype=Float64) for f in feats], online=True,
                    source=PushSource(name="stats_push", batch_source=batch))
store = FeatureStore(repo_path=f"{work}/repo")
store.apply([customer, stats])
store.push("stats_push", df, to=PushMode.ONLINE)
json.dump({"entities": {"customer_id": ["c42"]}, "features": [f"stats:{f}" for f in feats]},
          open(f"{work}/read.json", "w"))
got = store.get_online_features(features=[f"stats:{f}" for f in feats], entity_rows=[{"customer_id": "c42"}]).to_dict()
assert got["f0"] == [21.0], got
PY
(cd "$work/repo" && exec "$VENV/bin/feast" serve -p 18901 -w 2 --no-access-log >"$work/feast.log" 2>&1) &
for _ in $(seq 1 300); do curl -sf -o /dev/null -X POST http://127.0.0.1:18901/get-online-features -H 'content-type: application/json' -d @"$work/read.json" && break; sleep 0.2; done
curl -sf -X POST http://127.0.0.1:18901/get-online-features -H 'content-type: application/json' -d @"$work/read.json" | head -c 300 || { echo "feast serve did not answer:"; tail -20 "$work/feast.log"; exit 1; }; echo
hey -z 2s -c 8 -m POST -T application/json -D "$work/read.json" http://127.0.0.1:18901/get-online-features >/dev/null
hey -z "${SECS}s" -c 1 -q 1000 -m POST -T application/json -D "$work/read.json" http://127.0.0.1:18901/get-online-features > "$work/hey.out"
echo "feast serve at 1000 req/s: $(grep 'Requests/sec' "$work/hey.out" | awk '{print $2}') req/s, p50 $(grep '50%' "$work/hey.out" | awk '{print $3*1000}') ms, p99 $(grep '99%' "$work/hey.out" | awk '{print $3*1000}') ms"
hey -z "${SECS}s" -c 32 -m POST -T application/json -D "$work/read.json" http://127.0.0.1:18901/get-online-features > "$work/hey.out"
echo "feast serve most: $(grep 'Requests/sec' "$work/hey.out" | awk '{print $2}') req/s, p99 $(grep '99%' "$work/hey.out" | awk '{print $3*1000}') ms, non-200: $(grep -E '^\s+\[[0-9]+\]' "$work/hey.out" | grep -v '\[200\]' | awk '{s+=$2} END {print s+0}')"
