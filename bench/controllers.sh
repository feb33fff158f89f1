#!/usr/bin/env bash
# Controller cost (issue 13): one evaluation of every rollout and every alert
# rule with TENANTS x MODELS models (default 1000 x 5), on the embedded store
# and log, or on PostgreSQL with DATABASE_URL. Prints ms per rollout and per rule.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
cargo build --release --quiet -p tessera-serving --example controller_bench
args=(--tenants "${TENANTS:-1000}" --models "${MODELS:-5}" --records "${RECORDS:-200}")
if [ -n "${DATABASE_URL:-}" ]; then args+=(--database-url "$DATABASE_URL"); fi
TESSERA_LOG=warn "$CARGO_TARGET_DIR/release/examples/controller_bench" "${args[@]}"
