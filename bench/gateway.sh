#!/usr/bin/env bash
# B1: gateway overhead on POST /v1/chat/completions, Tessera beside LiteLLM
# proxy, both in front of the same stand-in provider with a fixed delay, load
# from `tessera loadtest` (open loop), all on this machine in one run.
# Overhead = a gateway's latency minus the stand-in's own, called directly,
# at the same offered rate.
#   bench/gateway.sh   (needs: release build of tessera and tessera-standin;
#                       LITELLM=path/to/litellm from `pip install 'litellm[proxy]'`)
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
LITELLM="${LITELLM:-litellm}"
DELAY_MS="${DELAY_MS:-5}"
SECS="${SECONDS_PER_RUN:-10}"
RATES="${RATES:-1000 5000}"
ADMIN=bench-admin-key-0123456789
export STANDIN_KEY=standin-bench-key
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT

wait_http() { for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }

"$T/tessera-standin" --listen 127.0.0.1:18400 --delay-ms "$DELAY_MS" --api-key "$STANDIN_KEY" 2>"$work/standin.log" &
TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN "$T/tessera" serve --listen 127.0.0.1:18401 \
  --data-dir "$work/data" >"$work/tessera.log" 2>&1 &
cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: bench-llm
    litellm_params:
      model: openai/gpt-bench
      api_base: http://127.0.0.1:18400/v1
      api_key: os.environ/STANDIN_KEY
litellm_settings:
  num_retries: 0
  set_verbose: false
general_settings:
  master_key: sk-bench-master
YAML
"$LITELLM" --config "$work/litellm.yaml" --host 127.0.0.1 --port 18402 --num_workers 2 >"$work/litellm.log" 2>&1 &
wait_http http://127.0.0.1:18401/healthz
# A plan without limits: B1 measures the path, not a limit being hit.
curl -s -o /dev/null 127.0.0.1:18401/admin/v1/plans -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench"}'
tenant=$(curl -s 127.0.0.1:18401/admin/v1/tenants -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench","plan":"bench"}' | json '["id"]')
key=$(curl -s "127.0.0.1:18401/admin/v1/tenants/$tenant/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"b","role":"developer"}' | json '["key"]')
curl -sf -o /dev/null 127.0.0.1:18401/v1/models -H "authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"name":"bench-llm","task":"chat","runtime":"openai-compatible","config":{"base_url":"http://127.0.0.1:18400/v1","api_key":"env:STANDIN_KEY","upstream_model":"gpt-bench","max_retries":0}}'
for _ in $(seq 1 1200); do
  curl -sf -o /dev/null http://127.0.0.1:18402/health/liveliness && break; sleep 0.1
done

body='{"model":"bench-llm","messages":[{"role":"user","content":"request {{counter}}: say hello"}]}'
run() { # name url auth rate
  "$T/tessera" loadtest --url "$2" --method POST -H 'Content-Type: application/json' -H "Authorization: Bearer $3" \
    --body "$body" --rate "$4" --duration "${SECS}s" --timeout 10s --json-out "$work/$1-$4.json" >/dev/null 2>&1
}
knee() { # name url auth start
  "$T/tessera" loadtest --url "$2" --method POST -H 'Content-Type: application/json' -H "Authorization: Bearer $3" \
    --body "$body" --rate "$4" --duration "${SECS}s" --phases breakdown --p99-bound-ms 200 --max-error-rate 0.01 \
    --timeout 10s --json-out "$work/$1-knee.json" >/dev/null 2>&1
}
# Warm-up: connections, caches, LiteLLM's first-call imports.
for u in "http://127.0.0.1:18401/v1/chat/completions $key" "http://127.0.0.1:18402/v1/chat/completions sk-bench-master"; do
  set -- $u; "$T/tessera" loadtest --url "$1" --method POST -H 'Content-Type: application/json' -H "Authorization: Bearer $2" \
    --body "$body" --concurrency 4 --duration 3s >/dev/null 2>&1
done

knee litellm http://127.0.0.1:18402/v1/chat/completions sk-bench-master 25
lrate=$(python3 -c "import json;k=json.load(open('$work/litellm-knee.json'))['knee'];print(int(k['rate']) if k else 25)")
for r in $lrate $RATES; do
  run direct http://127.0.0.1:18400/v1/chat/completions "$STANDIN_KEY" "$r"
  run tessera http://127.0.0.1:18401/v1/chat/completions "$key" "$r"
done
run litellm http://127.0.0.1:18402/v1/chat/completions sk-bench-master "$lrate"
knee tessera http://127.0.0.1:18401/v1/chat/completions "$key" 2000

python3 - "$work" "$lrate" "$RATES" "$DELAY_MS" <<'PY'
import json, os, sys
work, lrate, rates, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4]
def load(name):
    p = os.path.join(work, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
def row(gw, rate):
    g, d = load(f"{gw}-{rate}"), load(f"direct-{rate}")
    if not g or not d:
        return None
    gp, dp = g["phases"][0], d["phases"][0]
    return {
        "rate": rate, "achieved": round(gp["rps"]), "errors": gp["errors"],
        "p50": gp["latency_ms"]["p50"], "p99": gp["latency_ms"]["p99"],
        "over_p50": gp["latency_ms"]["p50"] - dp["latency_ms"]["p50"],
        "over_p99": gp["latency_ms"]["p99"] - dp["latency_ms"]["p99"],
        "direct_p50": dp["latency_ms"]["p50"], "direct_p99": dp["latency_ms"]["p99"],
    }
print(f"B1: stand-in delay {delay} ms; overhead = gateway minus direct at the same offered rate")
print("| gateway | offered req/s | achieved | errors | p50 ms | p99 ms | overhead p50 ms | overhead p99 ms |")
print("|---|---|---|---|---|---|---|---|")
out = {}
for r in [lrate] + [int(r) for r in rates]:
    d = load(f"direct-{r}")
    if d:
        dp = d["phases"][0]
        print(f"| (stand-in, direct) | {r} | {round(dp['rps'])} | {dp['errors']} | {dp['latency_ms']['p50']:.2f} | {dp['latency_ms']['p99']:.2f} | - | - |")
for gw, rs in [("litellm", [lrate]), ("tessera", [lrate] + [int(r) for r in rates])]:
    for r in rs:
        x = row(gw, r)
        if x:
            out[(gw, r)] = x
            print(f"| {gw} | {r} | {x['achieved']} | {x['errors']} | {x['p50']:.2f} | {x['p99']:.2f} | {x['over_p50']:.2f} | {x['over_p99']:.2f} |")
for gw in ["litellm", "tessera"]:
    k = load(f"{gw}-knee")
    if k and k.get("knee"):
        print(f"{gw} highest sustained rate (p99 <= 200 ms, errors <= 1%): {k['knee']['rate']:.0f} req/s, p99 {k['knee']['p99_ms']:.1f} ms")
l, t = out.get(("litellm", lrate)), out.get(("tessera", lrate))
if l and t:
    ratio = max(l["over_p99"], 0.001) / max(t["over_p99"], 0.001)
    print(f"at {lrate} req/s (LiteLLM's highest sustained): p99 overhead LiteLLM {l['over_p99']:.2f} ms vs Tessera {t['over_p99']:.2f} ms -> {ratio:.0f}x lower")
PY
