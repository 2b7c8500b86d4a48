#!/usr/bin/env bash
# Starts release switchyard node(s) on a fresh database, runs switchyard-bench
# against them with the given arguments, then stops them.
#   bench/run.sh -n 30000 -c 64 -k 1 --baseline          # SQLite, one node
#   BENCH_DB=postgres bench/run.sh -n 20000 -k 1          # PostgreSQL, one node
#   BENCH_DB=postgres BENCH_NODES=3 bench/run.sh -n 20000 # three nodes, producers spread
# BENCH_PG_URL picks the PostgreSQL server (default the local one); a scratch
# database is created for the run and dropped afterwards. BENCH_BIN names a
# directory holding other `switchyard` and `switchyard-bench` builds (to compare
# two versions side by side); then nothing is built.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BENCH_BIN:-target/release}
[ -n "${BENCH_BIN:-}" ] || cargo build --release -q -p switchyard -p switchyard-bench
db=${BENCH_DB:-sqlite}
nodes=${BENCH_NODES:-1}
pg_admin=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
scratch="switchyard_bench_$$"
pids=()
dirs=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for d in "${dirs[@]}"; do rm -rf "$d"; done
  if [ "$db" = postgres ]; then psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $scratch WITH (FORCE)" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
env_db=()
if [ "$db" = postgres ]; then
  psql "$pg_admin" -qc "CREATE DATABASE $scratch" >/dev/null
  env_db=(SWITCHYARD_DATABASE_URL="${pg_admin%/*}/$scratch")
elif [ "$nodes" != 1 ]; then
  echo "several nodes need BENCH_DB=postgres" >&2
  exit 2
fi
urls=()
for i in $(seq 0 $((nodes - 1))); do
  port=$((8071 + i))
  data=$(mktemp -d)
  dirs+=("$data")
  env "${env_db[@]}" SWITCHYARD_LISTEN=127.0.0.1:$port SWITCHYARD_DATA_DIR="$data" SWITCHYARD_ADMIN_TOKEN=bench-token \
    SWITCHYARD_ALLOWED_NETWORKS=127.0.0.0/8 RUST_LOG=warn "$bin/switchyard" serve >/dev/null &
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null && break
    sleep 0.1
  done
done
# Wait until every node holds its fair share of the partitions and no
# hand-over is still draining.
if [ "$nodes" != 1 ]; then
  for _ in $(seq 300); do
    balanced=$(curl -sf -H 'authorization: Bearer bench-token' "${urls[0]}/api/v1/cluster" | python3 -c "
import json, sys
c = json.load(sys.stdin)
live = [n for n in c['nodes'] if n['live']]
fair = -(-256 // $nodes)
print(int(len(live) == $nodes and all(0 < n['partitionCount'] <= fair for n in live) and sum(n['partitionCount'] for n in live) == 256))")
    [ "$balanced" = 1 ] && break
    sleep 0.2
  done
fi
url_list=$(IFS=,; echo "${urls[*]}")
pid_list=$(IFS=,; echo "${pids[*]}")
echo "database=$db nodes=$nodes"
"$bin/switchyard-bench" --url "$url_list" --token bench-token --server-pid "$pid_list" "$@"
