#!/usr/bin/env bash
# Starts a release switchyard on a fresh data dir, runs switchyard-bench
# against it with the given arguments, then stops it.
#   bench/run.sh -n 30000 -c 64 -k 1 --baseline
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p switchyard -p switchyard-bench
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$data"' EXIT
SWITCHYARD_LISTEN=127.0.0.1:8071 SWITCHYARD_DATA_DIR="$data" SWITCHYARD_ADMIN_TOKEN=bench-token \
  SWITCHYARD_ALLOWED_NETWORKS=127.0.0.0/8 RUST_LOG=warn target/release/switchyard serve >/dev/null &
pid=$!
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:8071/api/v1/health >/dev/null && break
  sleep 0.1
done
target/release/switchyard-bench --url http://127.0.0.1:8071 --token bench-token --server-pid "$pid" "$@"
