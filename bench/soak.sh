#!/usr/bin/env bash
# R6: a soak, not run in CI. SOAK_MINUTES (20) of mixed traffic at about half the
# knee: embeddings of distinct sentences (the model), embeddings of one sentence
# (cache hits), chat to the stand-in provider, and KServe predictions of a linear
# head over the default model; then OVERLOAD_SECS (60) of the embedding share at
# twice the knee. Reports the server's RSS every minute (the slope must be flat within
# noise), 5xx counts (must be 0), that overload is answered 429 with retry-after, and
# the p99 of admitted requests during the overload.
#   cargo build --release -p tessera -p tessera-standin
#   bench/soak.sh                  # KNEE (req/s of the embedding route) is measured first
#   KNEE=200 SOAK_MINUTES=20 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
MINUTES="${SOAK_MINUTES:-20}"
OVERLOAD_SECS="${OVERLOAD_SECS:-60}"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
wait_http() { for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }
u=http://127.0.0.1:18701

"$T/tessera-standin" --listen 127.0.0.1:18700 --delay-ms 5 2>/dev/null &
wait_http http://127.0.0.1:18700/v1/models
TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_WAIT_MS=120000 \
  "$T/tessera" serve --listen 127.0.0.1:18701 --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
wait_http "$u/healthz"
curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"open"}'
tenant=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"soak","plan":"open"}' | json '["id"]')
key=$(curl -s "$u/admin/v1/tenants/$tenant/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"soak","role":"developer"}' | json '["key"]')
auth="Authorization: Bearer $key"
curl -s -o /dev/null "$u/v1/models" -H "$auth" -H 'content-type: application/json' \
  -d '{"name":"llm","task":"chat","runtime":"openai-compatible","config":{"base_url":"http://127.0.0.1:18700/v1","max_retries":0}}'
curl -s -o /dev/null "$u/v1/models" -H "$auth" -H 'content-type: application/json' \
  -d '{"name":"triage","task":"classification","runtime":"linear","base_model":"all-minilm-l6-v2"}'
python3 -c "
import json
print(json.dumps({'format':'tessera.linear.v1','task':'classification','labels':['billing','bug'],
  'weights':[[0.01*((i*7+j)%5-2) for i in range(384)] for j in range(2)],'bias':[0.0,0.1]}))" >"$work/head.json"
curl -s -o /dev/null "$u/v1/models/triage/versions" -H "$auth" --data-binary @"$work/head.json"
# The default model must be loaded before the load starts.
for _ in $(seq 1 600); do
  curl -s -o /dev/null -w '%{http_code}' "$u/v1/embeddings" -H "$auth" -H 'content-type: application/json' \
    -d '{"model":"all-minilm-l6-v2","input":"warm up"}' | grep -q 200 && break
  sleep 0.5
done

# Bodies: distinct sentences for the model, one for the cache, a chat, a prediction.
python3 - "$work" <<'PY'
import json, random, sys
w = sys.argv[1]
random.seed(6)
words = "account billing card cancel charge delivery email error invoice login order password payment refund shipping subscription support ticket update upgrade".split()
with open(f"{w}/distinct.txt", "w") as f:
    for i in range(2000):
        s = " ".join(random.choice(words) for _ in range(random.randint(8, 20)))
        f.write(json.dumps({"model": "all-minilm-l6-v2", "input": f"{s} {i}"}) + "\n")
json.dump({"model": "all-minilm-l6-v2", "input": "where is my refund"}, open(f"{w}/cached.json", "w"))
json.dump({"model": "llm", "messages": [{"role": "user", "content": "hello"}]}, open(f"{w}/chat.json", "w"))
json.dump({"instances": ["my card was charged twice"]}, open(f"{w}/predict.json", "w"))
PY

lt() { # name url rate secs body-args...
  local name=$1 url=$2 rate=$3 secs=$4; shift 4
  "$T/tessera" loadtest --url "$url" --method POST -H 'Content-Type: application/json' -H "$auth" \
    --rate "$rate" --duration "${secs}s" --json-out "$work/$name.json" "$@" >/dev/null 2>&1
}
if [ -z "${KNEE:-}" ]; then
  "$T/tessera" loadtest --url "$u/v1/embeddings" --method POST -H 'Content-Type: application/json' -H "$auth" \
    -H 'Cache-Control: no-store' --bodies-file "$work/distinct.txt" --rate 50 --duration 10s \
    --phases breakdown --p99-bound-ms 500 --json-out "$work/knee.json" >/dev/null 2>&1
  KNEE=$(python3 -c "import json;k=json.load(open('$work/knee.json'))['knee'];print(int(k['rate']) if k else 50)")
fi
half=$((KNEE / 2))
echo "R6: knee of the embedding route ${KNEE} req/s; soak at ${half} req/s of model work for ${MINUTES} min, plus cache hits, chat and predictions"

rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "minute,rss_kib" >"$work/rss.csv"
echo "0,$(rss)" >>"$work/rss.csv"
secs=$((MINUTES * 60))
# Only the load generators are waited for (the server and the stand-in run on).
loads=()
lt soak-model "$u/v1/embeddings" "$half" "$secs" -H 'Cache-Control: no-store' --bodies-file "$work/distinct.txt" & loads+=($!)
lt soak-cache "$u/v1/embeddings" 200 "$secs" --body "$(cat "$work/cached.json")" & loads+=($!)
lt soak-chat "$u/v1/chat/completions" 50 "$secs" --body "$(cat "$work/chat.json")" & loads+=($!)
lt soak-predict "$u/v1/models/triage:predict" 20 "$secs" -H 'Cache-Control: no-store' --body "$(cat "$work/predict.json")" & loads+=($!)
for m in $(seq 1 "$MINUTES"); do
  sleep 60
  echo "$m,$(rss)" >>"$work/rss.csv"
  echo "minute $m: RSS $(rss) KiB"
done
wait "${loads[@]}"
# Overload: twice the knee on the model; cache hits keep going beside it.
loads=()
lt overload "$u/v1/embeddings" $((KNEE * 2)) "$OVERLOAD_SECS" -H 'Cache-Control: no-store' --bodies-file "$work/distinct.txt" & loads+=($!)
lt overload-cache "$u/v1/embeddings" 200 "$OVERLOAD_SECS" --body "$(cat "$work/cached.json")" & loads+=($!)
# A refused request's retry-after, sampled in the middle of the overload.
sleep $((OVERLOAD_SECS / 2))
ra=""
for i in $(seq 1 20); do
  ra=$(curl -s -o /dev/null -D - "$u/v1/embeddings" -H "$auth" -H 'content-type: application/json' -H 'Cache-Control: no-store' \
    -d "$(sed -n "${i}p" "$work/distinct.txt")" | grep -i '^retry-after' || true)
  [ -n "$ra" ] && break
done
wait "${loads[@]}"
echo "$(rss)" >"$work/rss-end"

python3 - "$work" "$KNEE" <<'PY'
import csv, json, os, sys
w, knee = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{w}/rss.csv")))
xs = [int(r["minute"]) for r in rows]; ys = [int(r["rss_kib"]) / 1024 for r in rows]
n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1)
print("RSS MiB by minute: " + ", ".join(f"{y:.0f}" for y in ys))
print(f"RSS slope over the soak: {slope:+.2f} MiB/min (first {ys[0]:.0f}, last {ys[-1]:.0f})")
def phase(name):
    p = f"{w}/{name}.json"
    return json.load(open(p))["phases"][0] if os.path.exists(p) else None
five = 0
for name in ["soak-model", "soak-cache", "soak-chat", "soak-predict", "overload", "overload-cache"]:
    p = phase(name)
    if not p:
        print(f"{name}: no report"); continue
    st = p["statuses"]
    five += sum(v for k, v in st.items() if k.startswith("5"))
    print(f"{name}: {p['completed']} requests, {p['rps']:.0f} req/s, statuses {st}, p50 {p['latency_ms']['p50']:.1f} ms, p99 {p['latency_ms']['p99']:.1f} ms")
print(f"5xx in all phases: {five}")
o = phase("overload")
if o:
    print(f"overload at {2*knee} req/s: {o['statuses'].get('429', 0)} answered 429, {o['statuses'].get('200', 0)} admitted, p99 of admitted {o['ok_p99_ms']:.1f} ms")
PY
echo "a refused request's retry-after during overload (if one was refused): ${ra:-none seen}"
