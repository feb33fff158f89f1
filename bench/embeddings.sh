#!/usr/bin/env bash
# B3 / B4: /v1/embeddings over HTTP against in-process Python peers, same
# machine, same model, one intra-op thread each, in one run.
#   bench/embeddings.sh            (needs: release build, hey, a Python with
#                                   onnxruntime + sentence-transformers: PYTHON=...)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release/tessera"
PYTHON="${PYTHON:-python3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-15}"
CACHE="${TESSERA_HOME:-$HOME/.cache/tessera}/models"
"$BIN" models fetch >/dev/null
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start_server() { # port extra-env...; sets $key and $pid
  local port=$1; shift
  env TESSERA_LOG=warn TESSERA_ADMIN_KEY=bench-admin-key-0123456789 "$@" \
    "$BIN" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$port" >"$work/out-$port" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  local t k
  # A plan without limits: the benchmark measures the engine, not admission.
  curl -s -o /dev/null "127.0.0.1:$port/admin/v1/plans" -H "authorization: Bearer bench-admin-key-0123456789" \
      -H 'content-type: application/json' -d '{"name":"bench"}'
  t=$(curl -s "127.0.0.1:$port/admin/v1/tenants" -H "authorization: Bearer bench-admin-key-0123456789" \
      -H 'content-type: application/json' -d '{"name":"bench","plan":"bench"}' | "$PYTHON" -c 'import sys,json;print(json.load(sys.stdin)["id"])')
  k=$(curl -s "127.0.0.1:$port/admin/v1/tenants/$t/keys" -H "authorization: Bearer bench-admin-key-0123456789" \
      -H 'content-type: application/json' -d '{"name":"b","role":"service"}' | "$PYTHON" -c 'import sys,json;print(json.load(sys.stdin)["key"])')
  key=$k
}

body="$work/body.json"
echo '{"model":"all-minilm-l6-v2","input":"The quick brown fox jumps over the lazy dog near the quiet river."}' >"$body"
warm() { for _ in $(seq 1 50); do curl -s -o /dev/null "127.0.0.1:$1/v1/embeddings" -H "authorization: Bearer $2" -H 'content-type: application/json' -d @"$body"; done; }
load() { # port key concurrency
  hey -z "${SECONDS_PER_RUN}s" -c "$3" -m POST -T application/json -D "$body" -H "Authorization: Bearer $2" \
    "http://127.0.0.1:$1/v1/embeddings" >"$work/hey-$1-$3"
  local rps p50 p99 ok
  rps=$(grep 'Requests/sec' "$work/hey-$1-$3" | awk '{print $2}')
  p50=$(grep ' 50% in' "$work/hey-$1-$3" | awk '{print $3*1000}')
  p99=$(grep ' 99% in' "$work/hey-$1-$3" | awk '{print $3*1000}')
  ok=$(grep '\[200\]' "$work/hey-$1-$3" | awk '{print $2}')
  echo "$rps $p50 $p99 ${ok:-0}"
}

start_server 18301
warm 18301 "$key"
read -r b_rps b_p50 b_p99 b_ok < <(load 18301 "$key" 32)
read -r s_rps s_p50 s_p99 s_ok < <(load 18301 "$key" 1)
kill "$pid"; wait "$pid" 2>/dev/null || true

start_server 18302 TESSERA__ENGINE__MAX_BATCH_SIZE=1
warm 18302 "$key"
read -r n_rps n_p50 n_p99 n_ok < <(load 18302 "$key" 32)
kill "$pid"; wait "$pid" 2>/dev/null || true

onnx=$(ls "$CACHE"/onnx/bert-*.onnx | head -1)
peers=$("$PYTHON" bench/python_peers.py "$CACHE/all-minilm-l6-v2" "$onnx" "$SECONDS_PER_RUN")

"$PYTHON" - "$peers" <<PY
import json, sys
p = json.loads(sys.argv[1])
best32 = max(p["onnxruntime batch 32"], p["sentence-transformers batch 32"])
print("| what | sentences/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
print(f"| tessera /v1/embeddings, 32 clients, dynamic batching | {float('$b_rps'):.0f} | $b_p50 | $b_p99 |")
print(f"| tessera /v1/embeddings, 32 clients, batching off (max_batch_size=1) | {float('$n_rps'):.0f} | $n_p50 | $n_p99 |")
print(f"| tessera /v1/embeddings, 1 client (B4) | {float('$s_rps'):.0f} | $s_p50 | $s_p99 |")
for k, v in p.items():
    print(f"| python {k} (in-process) | {v:.0f} | | |")
print()
print(f"B3 ratio vs best Python peer at batch 32: {float('$b_rps') / best32:.2f}x")
print(f"batching on / off: {float('$b_rps') / float('$n_rps'):.2f}x")
print(f"200 answers: batched $b_ok, unbatched $n_ok, single $s_ok")
PY
