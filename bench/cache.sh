#!/usr/bin/env bash
# B2: cache-hit throughput through the whole gateway path (auth, tenant,
# admission, model resolution, cache key, L1 hit, metering) as a ratio to a
# bare axum handler (the stand-in's GET /v1/models: static JSON), same load
# tool (hey), same machine, one run. Then the admission step's cost: the same
# cache-hit request at a fixed rate for a tenant without limits, with limits
# in process, and with limits in Redis. And the cost of prediction records: the
# same cache-hit load for a tenant whose records are all kept (the default) and
# one that keeps none (prediction_sample_rate 0), interleaved, best of two each.
#   bench/cache.sh   (needs: release build of tessera and tessera-standin, hey, redis on :6379)
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
SECS="${SECONDS_PER_RUN:-10}"
CONC="${CONCURRENCY:-32}"
RATE="${RATE:-2000}"
REDIS="${REDIS_URL:-redis://127.0.0.1:6379}"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
wait_http() { for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

"$T/tessera-standin" --listen 127.0.0.1:18600 2>/dev/null &
wait_http http://127.0.0.1:18600/v1/models

start_tessera() { # port extra-args...; prints nothing, sets keys
  local port=$1; shift
  TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false \
    "$T/tessera" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$port" "$@" >"$work/t-$port.log" 2>&1 &
  eval "pid_$port=$!"
  wait_http "http://127.0.0.1:$port/healthz"
  local u="http://127.0.0.1:$port"
  curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"open"}'
  curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
    -d '{"name":"metered","rpm":100000000,"tpm":1000000000,"concurrency":100000,"monthly_budget_usd":1000000}'
  for plan in open metered; do
    local t k
    t=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
      -d "{\"name\":\"$plan\",\"plan\":\"$plan\"}" | json '["id"]')
    k=$(curl -s "$u/admin/v1/tenants/$t/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
      -d '{"name":"b","role":"developer","scopes":{"rpm":100000000,"tpm":1000000000}}' | json '["key"]')
    curl -s -o /dev/null "$u/v1/models" -H "authorization: Bearer $k" -H 'content-type: application/json' \
      -d '{"name":"emb","task":"embedding","runtime":"openai-compatible","config":{"base_url":"http://127.0.0.1:18600/v1"}}'
    eval "key_$plan=$k"
  done
}
body="$work/body.json"
echo '{"model":"emb","input":"The quick brown fox jumps over the lazy dog."}' >"$body"
hey_rps() { # url [hey args...]
  local url=$1; shift
  hey -z "${SECS}s" -c "$CONC" "$@" "$url" >"$work/hey.out"
  local rps ok
  rps=$(grep 'Requests/sec' "$work/hey.out" | awk '{print $2}')
  ok=$(grep -E '^\s+\[200\]' "$work/hey.out" | awk '{print $2}')
  echo "$rps ${ok:-0}"
}
fixed_rate() { # port key name
  "$T/tessera" loadtest --url "http://127.0.0.1:$1/v1/embeddings" --method POST -H 'Content-Type: application/json' \
    -H "Authorization: Bearer $2" --body "$(cat "$body")" --rate "$RATE" --duration "${SECS}s" --json-out "$work/$3.json" >/dev/null 2>&1
  python3 -c "import json;p=json.load(open('$work/$3.json'))['phases'][0];l=p['latency_ms'];print(f\"{l['p50']:.3f} {l['p99']:.3f} {p['errors']}\")"
}

start_tessera 18601
quiet_tenant=$(curl -s "http://127.0.0.1:18601/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"quiet","plan":"open","prediction_sample_rate":0.0}' | json '["id"]')
# The same key scopes as the "open" tenant's key, so the two differ only in their records.
key_quiet=$(curl -s "http://127.0.0.1:18601/admin/v1/tenants/$quiet_tenant/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"b","role":"developer","scopes":{"rpm":100000000,"tpm":1000000000}}' | json '["key"]')
curl -s -o /dev/null "http://127.0.0.1:18601/v1/models" -H "authorization: Bearer $key_quiet" -H 'content-type: application/json' \
  -d '{"name":"emb","task":"embedding","runtime":"openai-compatible","config":{"base_url":"http://127.0.0.1:18600/v1"}}'
warm() { for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$1/v1/embeddings" -H "authorization: Bearer $2" -H 'content-type: application/json' -d @"$body"; done; }
warm 18601 "$key_open"; warm 18601 "$key_metered"
read -r bare_rps bare_ok < <(hey_rps http://127.0.0.1:18600/v1/models)
read -r hit_rps hit_ok < <(hey_rps http://127.0.0.1:18601/v1/embeddings -m POST -T application/json -D "$body" -H "Authorization: Bearer $key_open")
read -r hitm_rps hitm_ok < <(hey_rps http://127.0.0.1:18601/v1/embeddings -m POST -T application/json -D "$body" -H "Authorization: Bearer $key_metered")
read -r o50 o99 oerr < <(fixed_rate 18601 "$key_open" open)
read -r m50 m99 merr < <(fixed_rate 18601 "$key_metered" metered)
warm 18601 "$key_quiet"
# Records on and off in interleaved pairs (order alternating, so drift on this
# shared machine falls on both), each run's req/s and the server's CPU per answer;
# the medians, and the median of the pairs' ratios.
PAIRS="${PAIRS:-6}"
PAIR_SECS="${PAIR_SECS:-4}"
cpu() { awk '{print $14 + $15}' "/proc/$pid_18601/stat"; }
one_run() { # key -> "req/s cpu-ms-per-1000-answers"
  local before after
  before=$(cpu)
  hey -z "${PAIR_SECS}s" -c "$CONC" -m POST -T application/json -D "$body" -H "Authorization: Bearer $1" \
    http://127.0.0.1:18601/v1/embeddings >"$work/pair.out"
  after=$(cpu)
  local rps ok
  rps=$(grep 'Requests/sec' "$work/pair.out" | awk '{print $2}')
  ok=$(grep -E '^\s+\[200\]' "$work/pair.out" | awk '{print $2}')
  echo "$rps $(( (after - before) * 10 * 1000 * 1000 / ${ok:-1} ))"
}
pairs=""
for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) = 1 ]; then
    read -r on_rps on_cpu < <(one_run "$key_open"); read -r off_rps off_cpu < <(one_run "$key_quiet")
  else
    read -r off_rps off_cpu < <(one_run "$key_quiet"); read -r on_rps on_cpu < <(one_run "$key_open")
  fi
  pairs="$pairs $on_rps,$off_rps,$on_cpu,$off_cpu"
done
recorded=$(curl -s http://127.0.0.1:18601/metrics | grep '^tessera_prediction_records_written_total' | awk '{print $2}')
dropped=$(curl -s http://127.0.0.1:18601/metrics | grep '^tessera_prediction_records_dropped_total' | awk '{print $2}')
hits=$(curl -s http://127.0.0.1:18601/metrics | grep 'tessera_cache_requests_total{outcome="hit_l1"}' | awk '{print $2}')

start_tessera 18602 --redis-url "$REDIS"
warm 18602 "$key_metered"
read -r r50 r99 rerr < <(fixed_rate 18602 "$key_metered" redis)

python3 - "$bare_rps" "$hit_rps" "$hitm_rps" "$bare_ok" "$hit_ok" "$hitm_ok" "$hits" "$o50" "$o99" "$m50" "$m99" "$r50" "$r99" "$oerr" "$merr" "$rerr" "$RATE" "$CONC" "$pairs" "$recorded" "$dropped" <<'PY'
import sys
a = sys.argv[1:]
bare, hit, hitm = float(a[0]), float(a[1]), float(a[2])
print(f"B2 (hey -c {a[17]}, same run): bare axum handler {bare:.0f} req/s; Tessera cache hit {hit:.0f} req/s "
      f"({hit / bare:.2f}x), with every limit and budget in process {hitm:.0f} req/s ({hitm / bare:.2f}x); "
      f"200s: {a[3]} / {a[4]} / {a[5]}; L1 hits counted {a[6]}")
o50, o99, m50, m99, r50, r99 = map(float, a[7:13])
print(f"admission at {a[16]} req/s (cache-hit path), p50 / p99 ms: no limits {o50:.3f} / {o99:.3f}; "
      f"limits in process {m50:.3f} / {m99:.3f} (+{m50 - o50:.3f} / +{m99 - o99:.3f}); "
      f"limits in Redis {r50:.3f} / {r99:.3f} (+{r50 - o50:.3f} / +{r99 - o99:.3f}); errors {a[13]} / {a[14]} / {a[15]}")
from statistics import median
pairs = [tuple(map(float, p.split(","))) for p in a[18].split()]
on, off = median(p[0] for p in pairs), median(p[1] for p in pairs)
cost = median(1 - p[0] / p[1] for p in pairs)
con, coff = median(p[2] for p in pairs) / 1000, median(p[3] for p in pairs) / 1000
print(f"prediction records on the cache-hit path ({len(pairs)} interleaved pairs): every answer recorded "
      f"{on:.0f} req/s, none {off:.0f} req/s (median of the pairs' costs: {cost * 100:.1f}% throughput); "
      f"server CPU per 1,000 answers {con:.1f} / {coff:.1f} ms (+{(con / coff - 1) * 100:.1f}%); "
      f"pairs (on, off req/s): {', '.join(f'{p[0]:.0f}/{p[1]:.0f}' for p in pairs)}; "
      f"records written {a[19]}, dropped {a[20]}")
PY
