#!/usr/bin/env bash
# Runs every benchmark that an issue sets a target for, RUNS times each
# (default 3), and prints the figures the targets are about. Needs the local
# PostgreSQL for the BENCH_DB=postgres rows. Takes about five minutes.
#   bench/targets.sh            # all of them
#   RUNS=1 bench/targets.sh     # one pass
#   BENCH_BIN=/tmp/old bench/targets.sh   # the builds in /tmp/old (see run.sh)
#   BENCH_ARGS="--endpoint-rate-limit 65535 --endpoint-breaker" bench/targets.sh
#                               # with the delivery controls in the path
set -uo pipefail
cd "$(dirname "$0")/.."
[ -n "${BENCH_BIN:-}" ] || cargo build --release -q -p switchyard -p switchyard-bench || exit 1
runs=${RUNS:-3}
run() {
  local label=$1
  shift
  for i in $(seq "$runs"); do
    echo "== $label (run $i)"
    # shellcheck disable=SC2086 # BENCH_ARGS is split into flags on purpose
    env "$@" ${BENCH_ARGS:-} 2>&1 | grep -E "^(accept_rate|accepted|accept_latency|delivered|latency_ms|lost|server_peak_rss)" | sed 's/^/   /'
  done
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run "SQLite K=1: >= 10,000 msg/s, peak RSS <= 100 MiB, 0 lost" bench/run.sh -n 30000 -c 64 -k 1
run "SQLite K=10: >= 20,000 deliveries/s, peak RSS <= 100 MiB" bench/run.sh -n 10000 -c 64 -k 10
run "SQLite at 5,000 msg/s: p99 send->arrival <= 50 ms" bench/run.sh -n 25000 -c 64 -k 1 --rate 5000
run "SQLite ingest (Stripe, 2 KiB, 2 destinations): >= 8,000 events/s" bench/run.sh --ingest -n 30000 -c 64 -k 2 --payload-bytes 2048
run "SQLite ingest at 4,000/s: p99 accept latency <= 20 ms" bench/run.sh --ingest -n 20000 -c 64 -k 2 --payload-bytes 2048 --rate 4000
run "PostgreSQL K=1: >= 5,000 msg/s" BENCH_DB=postgres bench/run.sh -n 20000 -c 64 -k 1
run "PostgreSQL K=10: >= 10,000 deliveries/s" BENCH_DB=postgres bench/run.sh -n 10000 -c 64 -k 10
run "PostgreSQL at 2,000 msg/s: p99 send->arrival <= 100 ms" BENCH_DB=postgres bench/run.sh -n 20000 -c 64 -k 1 --rate 2000
run "PostgreSQL ingest: >= 4,000 events/s" BENCH_DB=postgres bench/run.sh --ingest -n 30000 -c 64 -k 2 --payload-bytes 2048
run "PostgreSQL ingest at 2,000/s: p99 accept latency <= 20 ms" BENCH_DB=postgres bench/run.sh --ingest -n 20000 -c 64 -k 2 --payload-bytes 2048 --rate 2000
run "PostgreSQL, 3 nodes, K=1 (reported)" BENCH_DB=postgres BENCH_NODES=3 bench/run.sh -n 20000 -c 64 -k 1
run "PostgreSQL, 3 nodes, K=10 (reported)" BENCH_DB=postgres BENCH_NODES=3 bench/run.sh -n 10000 -c 64 -k 10
run "PostgreSQL, 3 nodes, at 2,000 msg/s (reported)" BENCH_DB=postgres BENCH_NODES=3 bench/run.sh -n 20000 -c 64 -k 1 --rate 2000
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
