#!/usr/bin/env bash
# Limiter memory under identity rotation (issue 3, point 6): drives 1,000,000 requests, each from a
# distinct anonymous client (X-Forwarded-For from a trusted loopback peer), through a release
# fal-proxy, sampling its RSS every second; reports the idle RSS before, the peak RSS while the
# clients arrive, and the RSS after the idle keys are pruned (the proxy prunes every 10 s).
# With -R 2 (default) a second, disjoint million follows, to show the memory is reused rather
# than growing with the number of identities ever seen.
#
#   bench/anon-clients.sh [-n CLIENTS] [-R ROUNDS] [-c CONNECTIONS] [--no-build]
#
# Writes bench/results/anon-<timestamp>/{rss.tsv,summary.txt}.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
N=1000000; ROUNDS=2; CONNS=64; BUILD=1; PORT=8090
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;; -R) ROUNDS=$2; shift 2 ;; -c) CONNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;; *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
BIN=$ROOT/target/release/fal-proxy
if [ "$BUILD" = 1 ]; then
  for attempt in 1 2 3 4 5; do
    (cd "$ROOT" && cargo build --release --locked --bin fal-proxy) && break
    [ "$attempt" = 5 ] && exit 1; echo "build failed: retrying in 60 s" >&2; sleep 60
  done
fi
RUN=$BENCH/results/anon-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"
cat > "$RUN/fal-proxy.toml" <<TOML
listen = "127.0.0.1:$PORT"
[fal]
queue_url = "http://127.0.0.1:9"
run_url = "http://127.0.0.1:9"
rest_url = "http://127.0.0.1:9"
[auth]
anonymous = true
[network]
trusted_proxies = ["127.0.0.0/8"]
[server]
max_concurrent_requests = 30000
[log]
level = "warn"
[store]
backend = "memory"
TOML
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null; true' EXIT INT TERM
read -r PID ms < <(FAL_KEY=bench-fal-key python3 "$BENCH/lib/startup.py" "http://127.0.0.1:$PORT/readyz" \
  "$RUN/fal-proxy.log" -- "$BIN" --config "$RUN/fal-proxy.toml")
echo "fal-proxy pid $PID ready in $ms ms"
rss() { awk '/VmRSS/{print $2}' /proc/"$PID"/status; }
sleep 3
IDLE=$(rss)
T0=$(date +%s)
( while kill -0 "$PID" 2>/dev/null; do echo -e "$(( $(date +%s) - T0 ))\t$(rss)"; sleep 1; done ) > "$RUN/rss.tsv" &
SAMPLER=$!
per_thread=$((N / 2))
summary="idle_rss_kb=$IDLE startup_ms=$ms"
for round in $(seq 1 "$ROUNDS"); do
  start=$(( $(date +%s) - T0 ))
  : > "$RUN/done-$round"
  ANON_DONE_FILE="$RUN/done-$round" ANON_PER_THREAD=$per_thread ANON_OFFSET=$(( (round - 1) * 8388608 )) \
    timeout 600 wrk -t2 -c"$CONNS" -d600s --timeout 10s -s "$BENCH/lib/anon.lua" "http://127.0.0.1:$PORT/v1/me" \
    > "$RUN/wrk-$round.txt" &
  WRK=$!
  while kill -0 "$WRK" 2>/dev/null && [ "$(wc -l < "$RUN/done-$round")" -lt 2 ]; do sleep 0.2; done
  kill -INT "$WRK" 2>/dev/null || true; wait "$WRK" || true
  out=$(tail -1 "$RUN/wrk-$round.txt")
  end=$(( $(date +%s) - T0 ))
  echo "round $round: $out (t=${start}..${end}s)"
  # Idle keys are pruned every 10 s once their GCRA state is back to fresh (~0.5 s for one
  # anonymous poll): wait 25 s, then read the RSS.
  sleep 25
  after=$(rss)
  peak=$(awk -v s="$start" -v e="$end" '$1>=s && $1<=e+2 && $2>m {m=$2} END{print m+0}' "$RUN/rss.tsv")
  summary="$summary round${round}_peak_rss_kb=$peak round${round}_after_prune_rss_kb=$after round${round}_wrk=[$out]"
  echo "round $round: peak RSS $((peak / 1024)) MB, after pruning $((after / 1024)) MB"
done
HWM=$(awk '/VmHWM/{print $2}' /proc/"$PID"/status)
summary="$summary vmhwm_kb=$HWM"
echo "$summary" | tee "$RUN/summary.txt"
echo "idle RSS $((IDLE / 1024)) MB; lifetime peak (VmHWM) $((HWM / 1024)) MB; samples in $RUN/rss.tsv"
