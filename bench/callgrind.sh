#!/usr/bin/env bash
# Instruction counts of fal-proxy under one scenario, with callgrind: starts the fake upstream and
# the release fal-proxy (same configs as run.sh) under `valgrind --tool=callgrind`, submits once,
# drives the scenario with wrk (1 thread, CONNS connections, default 8) for DURATION seconds, stops the proxy
# and writes bench/results/callgrind-<scenario>-<timestamp>/: cg.out, wrk.txt and the
# inclusive / self summaries. Instruction counts do not depend on the machine's noise; divide by
# the request count after subtracting a short run's (start-up is ~40 million instructions).
#
#   bench/callgrind.sh S1|S2|S3|S4 [DURATION]
# CONNS=256 compares a point's instructions per request across connection counts;
# CALLGRIND_OPTS=--cache-sim=yes adds simulated cache misses (D1mr, DLmr, ...) to the counts.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$BENCH/.." && pwd)
S=${1:-S1}; D=${2:-10}
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
BIN=${BENCH_BIN:-$ROOT/target/release/fal-proxy}
RUN=$BENCH/results/callgrind-$S${CONNS:+-c$CONNS}-$(date -u +%Y%m%dT%H%M%SZ)
. "$BENCH/lib/single.sh"
single_prepare
VG=""
trap '[ -n "$VG" ] && kill "$VG" 2>/dev/null; kill "$(cat "$RUN/fake/nginx.pid")" 2>/dev/null; true' EXIT INT TERM
FAL_KEY=bench-fal-key valgrind --tool=callgrind ${CALLGRIND_OPTS:-} --callgrind-out-file="$RUN/cg.out" \
  "$BIN" --config "$RUN/fal-proxy.toml" 2> "$RUN/valgrind.log" &
VG=$!
for _ in $(seq 1 300); do curl -sf http://127.0.0.1:8093/readyz > /dev/null && break; sleep 0.2; done
single_scenario "$S"
timeout $((D + 30)) wrk -t1 -c"${CONNS:-8}" -d"${D}s" -s "$BENCH/lib/req.lua" http://127.0.0.1:8093/api/fal/proxy > "$RUN/wrk.txt"
kill -TERM "$VG"; wait "$VG" || true; VG=""
callgrind_annotate --inclusive=yes "$RUN/cg.out" > "$RUN/annotate.txt" 2>/dev/null || true
sed -n 1,120p "$RUN/annotate.txt" > "$RUN/inclusive.txt"
callgrind_annotate "$RUN/cg.out" > "$RUN/annotate.txt" 2>/dev/null || true
sed -n 1,80p "$RUN/annotate.txt" > "$RUN/self.txt"; rm -f "$RUN/annotate.txt"
echo "$(grep -o 'requests=[0-9]*' "$RUN/wrk.txt") $(grep -m1 'PROGRAM TOTALS' "$RUN/self.txt")"
echo "$RUN"
