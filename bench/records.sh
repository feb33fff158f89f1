#!/usr/bin/env bash
# The cache-hit path (B2's request) for one tenant whose prediction_sample_rate is
# $RATE (default 1.0): req/s with hey -c 32 for 12 s, and with PERF=1 a perf profile
# of the server in /tmp/perf.data (perf report -i /tmp/perf.data --sort comm,symbol).
# With QPS=N the load is held at N req/s instead, and the script also prints the
# server's CPU time per 1,000 answers (steadier than req/s on a shared machine).
#   RATE=0.1 bench/records.sh; RATE=0 bench/records.sh; QPS=8000 RATE=1 bench/records.sh
#   (needs: release build of tessera and tessera-standin, hey)
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}/release"
ADMIN=bench-admin-key-0123456789
work=$(mktemp -d -p /var/tmp)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
"$T/tessera-standin" --listen 127.0.0.1:18600 2>/dev/null &
sleep 0.5
TESSERA_LOG=warn TESSERA_ADMIN_KEY=$ADMIN TESSERA__ENGINE__LOAD_DEFAULT_MODEL=false "$T/tessera" serve --listen 127.0.0.1:18611 --data-dir "$work/d" > "$work/log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18611/healthz && break; sleep 0.1; done
u=http://127.0.0.1:18611
curl -s -o /dev/null "$u/admin/v1/plans" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"open"}'
t=$(curl -s "$u/admin/v1/tenants" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d "{\"name\":\"p\",\"plan\":\"open\",\"prediction_sample_rate\":${RATE:-1.0}}" | json '["id"]')
k=$(curl -s "$u/admin/v1/tenants/$t/keys" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' -d '{"name":"b","role":"developer"}' | json '["key"]')
curl -s -o /dev/null "$u/v1/models" -H "authorization: Bearer $k" -H 'content-type: application/json' -d '{"name":"emb","task":"embedding","runtime":"openai-compatible","config":{"base_url":"http://127.0.0.1:18600/v1"}}'
echo '{"model":"emb","input":"The quick brown fox jumps over the lazy dog."}' > "$work/body.json"
curl -s -o /dev/null "$u/v1/embeddings" -H "authorization: Bearer $k" -H 'content-type: application/json' -d @"$work/body.json"
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
before=$(cpu)
hey -z 12s -c 32 ${QPS:+-q $((QPS / 32))} -m POST -T application/json -D "$work/body.json" -H "Authorization: Bearer $k" "$u/v1/embeddings" > "$work/hey.out" &
if [ "${PERF:-0}" = 1 ]; then
  sleep 2
  perf record -F ${PERF_HZ:-499} ${PERF_CG:--g} -p $PID -o /tmp/perf.data -- sleep 8 2>/dev/null >/dev/null
fi
wait %3 2>/dev/null || true
grep 'Requests/sec' "$work/hey.out"
if [ -n "${QPS:-}" ]; then
  ticks=$(( $(cpu) - before )); answers=$(grep -E '^\s+\[200\]' "$work/hey.out" | awk '{print $2}')
  echo "server CPU per 1000 answers: $(python3 -c "print(round($ticks * 10 * 1000 / $answers, 1))") ms ($answers answers)"
fi
