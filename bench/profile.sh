#!/usr/bin/env bash
# CPU profile of fal-proxy under one scenario: starts the fake upstream and a release fal-proxy
# (same configs as run.sh), submits once, drives the scenario with wrk for DURATION seconds while
# `perf record` samples the proxy, and prints the top symbols (self time) to
# bench/results/profile-<scenario>-<timestamp>/report.txt.
#
#   bench/profile.sh S1|S2|S3|S4 [CONNECTIONS] [DURATION]
# PERF_CALLGRAPH=dwarf gives call chains through Rust code built without frame pointers.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$BENCH/.." && pwd)
S=${1:-S1}; C=${2:-32}; D=${3:-10}
command -v perf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf; }
BIN=${BENCH_BIN:-$ROOT/target/release/fal-proxy}
RUN=$BENCH/results/profile-$S-c$C-$(date -u +%Y%m%dT%H%M%SZ)
ulimit -n 19500
. "$BENCH/lib/single.sh"
single_prepare
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; kill "$(cat "$RUN/fake/nginx.pid")" 2>/dev/null; true' EXIT INT TERM
read -r PID ms < <(FAL_KEY=bench-fal-key python3 "$BENCH/lib/startup.py" "http://127.0.0.1:8093/readyz" \
  "$RUN/fal-proxy.log" -- "$BIN" --config "$RUN/fal-proxy.toml")
single_scenario "$S"
timeout 30 wrk -t2 -c"$C" -d2s -s "$BENCH/lib/req.lua" http://127.0.0.1:8093/api/fal/proxy > /dev/null
timeout $((D + 30)) wrk -t2 -c"$C" -d"$((D + 1))s" -s "$BENCH/lib/req.lua" http://127.0.0.1:8093/api/fal/proxy > "$RUN/wrk.txt" &
W=$!
perf record -F 499 --call-graph "${PERF_CALLGRAPH:-fp}" -p "$PID" -o "$RUN/perf.data" -- sleep "$D" 2> "$RUN/perf-record.log"
wait $W
perf report -i "$RUN/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -v '^$' | grep '%' | head -60 > "$RUN/report.txt" || true
perf report -i "$RUN/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -10 > "$RUN/dso.txt" || true
echo "profile: $RUN"; cat "$RUN/wrk.txt" | tail -1; cat "$RUN/dso.txt"; head -40 "$RUN/report.txt"
