#!/usr/bin/env bash
# fal-proxy benchmark: the same workload through four targets, side by side on this machine.
#
#   bench/run.sh [-s S1,S2,S3,S4,S5] [-t direct,nginx,official,fal-proxy] [-r REPS] [-d SECONDS]
#                [-w WARMUP_SECONDS] [-n S5_STREAMS] [-H S5_HOLD_SECONDS] [--no-build] [--no-install]
#                [--no-pgo] [--h2c | --h1 | --tls]
#
# Defaults: all scenarios, all targets, 3 repetitions, 10 s per point, 2 s warm-up,
# S5 with 10,000 streams held 30 s. Quick run: bench/run.sh -s S1 -r 1 -d 3 -w 1
#
# Installs what it needs (apt: nginx-light libnginx-mod-http-echo wrk, openssl for TLS; npm: bench/official from its lockfile), builds
# fal-proxy as the container image does (scripts/pgo-build.sh: a profile-guided release build;
# --no-pgo: a plain `cargo build --release`), starts everything on 127.0.0.1, runs each load point with the targets
# interleaved (rep 1: A B C D, rep 2: A B C D, ...), restarts the proxy targets whenever the
# scenario changes (each scenario starts from fresh processes), and writes raw data plus a markdown table to
# bench/results/<timestamp>/. Everything it starts is stopped on exit.
#
# How each target reaches the fake fal in S1-S4 (S5 is the same in every mode):
# --tls (the default): the fake answers over TLS (127.0.0.1:9443, a certificate from a CA made
#   for the run), as fal answers only over TLS, and every target reaches it as it would reach
#   fal: nginx and the official proxy over HTTP/1.1 with TLS, fal-proxy over HTTP/2 chosen by
#   ALPN, `direct` (wrk) over HTTP/1.1 with TLS. Over TLS nginx (the fake) cannot `sendfile`,
#   so a status answer leaves it as one record on either protocol: how the fake writes
#   cleartext, which costs it more per poll on one leg than the other, decides no verdict
#   (bench/README.md, item 26).
# --h2c: cleartext, each target speaking what it speaks to fal: fal-proxy HTTP/2 (prior
#   knowledge, the fake's second listener on 127.0.0.1:9001), nginx, the official proxy and
#   `direct` HTTP/1.1 on 127.0.0.1:9000 (nginx cannot proxy to an HTTP/2 upstream; Node's fetch
#   speaks HTTP/1.1). The default of session 17.
# --h1: everything, fal-proxy too, over cleartext HTTP/1.1 on 127.0.0.1:9000 (the default until
#   session 17; a path fal-proxy takes only if fal stops offering HTTP/2).
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
SCENARIOS=S1,S2,S3,S4,S5
TARGETS=direct,nginx,official,fal-proxy
REPS=3
DUR=10
WARM=2
S5_STREAMS=10000
S5_HOLD=30
BUILD=1
INSTALL=1
PGO=1
MODE=tls
MODE_SET=
while [ $# -gt 0 ]; do
  case "$1" in
    -s) SCENARIOS=$2; shift 2 ;;
    -t) TARGETS=$2; shift 2 ;;
    -r) REPS=$2; shift 2 ;;
    -d) DUR=$2; shift 2 ;;
    -w) WARM=$2; shift 2 ;;
    -n) S5_STREAMS=$2; shift 2 ;;
    -H) S5_HOLD=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    --no-pgo) PGO=0; shift ;;
    --h2c|--h1|--tls)
      [ -z "$MODE_SET" ] || { echo "--h2c, --h1 and --tls exclude each other" >&2; exit 2; }
      MODE=${1#--}; MODE_SET=1; shift ;;
    -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

FAL_KEY=bench-fal-key
FAKE=127.0.0.1:9000
FAKE_TLS=127.0.0.1:9443
FAKE_H2C=127.0.0.1:9001
S5_UP=127.0.0.1:9100
declare -A PORT=([direct]=9000 [nginx]=8081 [official]=8082 [fal-proxy]=8083)
S5_PORT=8084

# ---------------------------------------------------------------- install and build
if [ "$INSTALL" = 1 ]; then
  . "$BENCH/lib/tools.sh"
  NEED=()
  fake_fal_missing
  [ "$MODE" != tls ] || command -v openssl >/dev/null || NEED+=(openssl)
  [ ${#NEED[@]} -eq 0 ] || apt_install "${NEED[@]}"
  if [ ! -d "$BENCH/official/node_modules/@fal-ai/server-proxy" ]; then
    (cd "$BENCH/official" && npm ci --no-audit --no-fund)
  fi
fi
if [ "$PGO" = 1 ]; then
  BIN=${BENCH_BIN:-$ROOT/target/pgo/use/release/fal-proxy}
  BUILD_CMD=(scripts/pgo-build.sh); [ "$INSTALL" = 1 ] && BUILD_CMD+=(--install)
else
  BIN=${BENCH_BIN:-$ROOT/target/release/fal-proxy}
  BUILD_CMD=(cargo build --release --locked --bin fal-proxy)
fi
if [ "$BUILD" = 1 ]; then
  for attempt in 1 2 3 4 5; do
    if (cd "$ROOT" && "${BUILD_CMD[@]}"); then break; fi
    [ "$attempt" = 5 ] && { echo "build failed" >&2; exit 1; }
    echo "build failed (someone else's file in progress?): retrying in 60 s" >&2; sleep 60
  done
fi
[ -x "$BIN" ] || { echo "no $BIN" >&2; exit 1; }

# ---------------------------------------------------------------- run directory
RUN=$BENCH/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"/{fake/tmp,nginx-proxy/tmp,logs,raw}
echo "results: $RUN"
{
  echo "command: bench/run.sh -s $SCENARIOS -t $TARGETS -r $REPS -d $DUR -w $WARM -n $S5_STREAMS -H $S5_HOLD --$MODE"
  if [ "$MODE" = tls ]; then
    echo "upstream (S1-S4): TLS on $FAKE_TLS (fal-proxy: HTTP/2 by ALPN; the others: HTTP/1.1)"
  elif [ "$MODE" = h2c ]; then
    echo "upstream (S1-S4): cleartext (fal-proxy: HTTP/2, prior knowledge, on $FAKE_H2C; the others: HTTP/1.1 on $FAKE)"
  else
    echo "upstream (S1-S4): cleartext HTTP/1.1 on $FAKE"
  fi
  echo "date: $(date -u +%FT%TZ)"
  # Result folders are output, not source: this run's own would always count.
  echo "git: $(cd "$ROOT" && git rev-parse --short HEAD) ($(cd "$ROOT" && git status --porcelain -- . ':(exclude)bench/results' | wc -l) files modified in the tree)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) x $(nproc)"
  echo "mem: $(free -m | awk '/Mem:/{print $2}') MiB"
  echo "kernel: $(uname -r)"
  echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2)  wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')  node: $(node --version)"
  kind=$([ "$PGO" = 1 ] && echo profile-guided || echo plain); [ -n "${BENCH_BIN:-}" ] && kind="BENCH_BIN"
  echo "fal-proxy binary: $BIN ($kind build), $(stat -c %y "$BIN" | cut -d. -f1), $(stat -c %s "$BIN") bytes"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RUN/machine.txt"
cat "$RUN/machine.txt"
python3 "$BENCH/fake-fal/gen.py" "$RUN/fake" > "$RUN/logs/gen.txt"
. "$BENCH/lib/conf.sh"
FAKE_CONF=$BENCH/fake-fal/nginx.conf
FAKE_URL=http://$FAKE
FP_FAKE_URL=  # fal-proxy's upstream when it differs from the others' (--h2c)
TLS_ENV=()  # for the targets' processes: trust the run's CA
if [ "$MODE" = tls ]; then
  . "$BENCH/lib/tls.sh"
  mkdir -p "$RUN/tls"
  make_fake_cert "$RUN/tls"
  FAKE_CONF=$RUN/fake/nginx.conf
  sed -e "s|listen 127.0.0.1:9000 backlog=8192;|&\n        listen $FAKE_TLS ssl http2 backlog=8192;\n        ssl_certificate $RUN/tls/fake.pem;\n        ssl_certificate_key $RUN/tls/fake.key;|" \
    "$BENCH/fake-fal/nginx.conf" > "$FAKE_CONF"
  grep -q "listen $FAKE_TLS ssl" "$FAKE_CONF" \
    || { echo "bench/fake-fal/nginx.conf no longer has the listen line --tls extends" >&2; exit 1; }
  FAKE_URL=https://$FAKE_TLS
  # fal-proxy (rustls-platform-verifier) reads SSL_CERT_FILE, Node NODE_EXTRA_CA_CERTS, curl
  # CURL_CA_BUNDLE.
  TLS_ENV=(SSL_CERT_FILE="$RUN/tls/ca.pem" NODE_EXTRA_CA_CERTS="$RUN/tls/ca.pem" CURL_CA_BUNDLE="$RUN/tls/ca.pem")
elif [ "$MODE" = h2c ]; then
  FAKE_CONF=$RUN/fake/nginx.conf
  fake_conf_h2c "$FAKE_CONF" "$FAKE_H2C"
  FP_FAKE_URL=http://$FAKE_H2C
fi

ulimit -n 19500

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$RUN/fake/nginx.pid" "$RUN/nginx-proxy/nginx.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_http() { # URL [max seconds]
  for _ in $(seq 1 $((${2:-20} * 20))); do
    curl -s -o /dev/null "$1" && return 0; sleep 0.05
  done
  echo "timeout waiting for $1" >&2; return 1
}
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }

# ---------------------------------------------------------------- client key
client_key "$BIN" bench "$RUN/logs/keygen.txt"
CLIENT_KEY=$KEY

# ---------------------------------------------------------------- start the servers
nginx -p "$RUN/fake" -c "$FAKE_CONF" -e "$RUN/fake/error.log"
sleep 0.3
FAKE_PIDS=$(pgrep -P "$(cat "$RUN/fake/nginx.pid")" | paste -sd,)
declare -A TPIDS=([direct]="")

if has "$TARGETS" nginx; then
  sed -e "s|@LISTEN@|127.0.0.1:${PORT[nginx]}|" -e "s|@UPSTREAM@|${FAKE_URL#*://}|" \
    -e "s|@FAL_KEY@|$FAL_KEY|" -e "s|@CLIENT_KEY@|$CLIENT_KEY|g" "$BENCH/nginx-proxy.conf" > "$RUN/nginx-proxy/nginx.conf"
  if [ "$MODE" = tls ]; then
    # As nginx would reach fal: TLS to the upstream, its certificate verified (once per
    # kept-alive connection), sessions reused when it reconnects.
    sed -i -e "s|proxy_pass http://fal_queue\$fal_uri;|proxy_pass https://fal_queue\$fal_uri;\n            proxy_ssl_verify on;\n            proxy_ssl_trusted_certificate $RUN/tls/ca.pem;\n            proxy_ssl_name localhost;\n            proxy_ssl_session_reuse on;|" \
      "$RUN/nginx-proxy/nginx.conf"
    grep -q "proxy_pass https://fal_queue" "$RUN/nginx-proxy/nginx.conf" \
      || { echo "bench/nginx-proxy.conf no longer has the proxy_pass line --tls rewrites" >&2; exit 1; }
  fi
fi
if has "$TARGETS" fal-proxy; then
  fal_proxy_conf "127.0.0.1:${PORT[fal-proxy]}" "${FP_FAKE_URL:-$FAKE_URL}" bench > "$RUN/fal-proxy.toml"
  [ "$MODE" != h2c ] || prior_knowledge "$RUN/fal-proxy.toml"
fi
gone() { for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.02; done; done; }
start_fal_proxy() { # prints "pid start-up-ms"
  env "${TLS_ENV[@]}" FAL_KEY=$FAL_KEY python3 "$BENCH/lib/startup.py" "http://127.0.0.1:${PORT[fal-proxy]}/readyz" \
    "$RUN/logs/fal-proxy.log" -- "$BIN" --config "$RUN/fal-proxy.toml"
}
# Starts the proxy targets. Every scenario starts from fresh processes, for all targets alike, so
# what one scenario leaves behind (fal-proxy's in-memory job records, any allocator's cached
# memory) does not count against the next. Each target runs in a session of its own (nginx by
# daemonizing, the others by setsid): with autogroup scheduling a session is a scheduling group,
# and a target in this script's session would share wrk's.
start_targets() {
  if has "$TARGETS" nginx; then
    nginx -p "$RUN/nginx-proxy" -c "$RUN/nginx-proxy/nginx.conf" -e "$RUN/nginx-proxy/error.log"
    sleep 0.3
    TPIDS[nginx]=$(pgrep -P "$(cat "$RUN/nginx-proxy/nginx.pid")" | paste -sd,)
  fi
  if has "$TARGETS" official; then
    (cd "$BENCH/official" && PORT=${PORT[official]} FAL_KEY=$FAL_KEY FAL_FAKE_URL=$FAKE_URL \
       exec env "${TLS_ENV[@]}" setsid node --require ./redirect.js server.js) >> "$RUN/logs/official.log" 2>&1 &
    PIDS+=($!); TPIDS[official]=$!
    wait_http "http://127.0.0.1:${PORT[official]}/" 30
  fi
  if has "$TARGETS" fal-proxy && [ -z "${TPIDS[fal-proxy]:-}" ]; then
    local pid ms
    read -r pid ms < <(start_fal_proxy)
    PIDS+=("$pid"); TPIDS[fal-proxy]=$pid
  fi
}
stop_targets() {
  if has "$TARGETS" nginx; then
    local master; master=$(cat "$RUN/nginx-proxy/nginx.pid")
    kill "$master"; gone "$master"
  fi
  for t in official fal-proxy; do
    if has "$TARGETS" $t; then kill "${TPIDS[$t]}" 2>/dev/null || true; gone "${TPIDS[$t]}"; TPIDS[$t]=""; fi
  done
}
STARTUP_MS=""; IDLE_RSS_KB=""
if has "$TARGETS" fal-proxy; then
  # Start-up to ready, 5 times (each a fresh process); the last one stays up as the target.
  for i in 1 2 3 4 5; do
    read -r pid ms < <(start_fal_proxy)
    PIDS+=("$pid"); STARTUP_MS="$STARTUP_MS $ms"
    if [ "$i" -lt 5 ]; then kill "$pid"; gone "$pid"; fi
  done
  TPIDS[fal-proxy]=$pid
fi
start_targets
sleep 2
{
  echo "fal_proxy_startup_ms:$STARTUP_MS"
  for t in nginx official fal-proxy; do
    has "$TARGETS" $t && echo "idle_rss_kb $t $(rss_kb ${TPIDS[$t]//,/ })"
  done
} > "$RUN/idle.txt"
cat "$RUN/idle.txt"

# ---------------------------------------------------------------- scenarios S1-S4
# Per target: base URL, Authorization value, target-URL prefix ("" = direct, path in the URL).
Q=https://queue.fal.run/fal-ai/nano-banana-pro
base_url() { if [ "$1" = direct ]; then echo "$FAKE_URL"; else echo "http://127.0.0.1:${PORT[$1]}/api/fal/proxy"; fi; }
auth_of() {
  case "$1" in
    direct) echo "Key $FAL_KEY" ;;
    # The official proxy passes a client's Authorization through to fal (the fake would answer
    # 401), so its clients send none and it uses FAL_KEY: its default, unauthenticated mode.
    official) echo "" ;;
    *) echo "Bearer $CLIENT_KEY" ;;
  esac
}
# Submit once through each target, so that S1/S4 read a job this client owns (again after
# every restart: fal-proxy's memory store starts empty).
declare -A RID
submit_once() {
  local t out a
  for t in ${TARGETS//,/ }; do
    if [ "$t" = direct ]; then
      out=$(env "${TLS_ENV[@]}" curl -s -XPOST -H "Authorization: Key $FAL_KEY" -H 'content-type: application/json' \
        --data-binary @"$RUN/fake/bodies/s2.json" "$FAKE_URL/fal-ai/nano-banana-pro/edit")
    else
      a=$(auth_of "$t")
      out=$(curl -s -XPOST ${a:+-H "Authorization: $a"} -H 'content-type: application/json' \
        -H "x-fal-target-url: $Q/edit" --data-binary @"$RUN/fake/bodies/s2.json" "$(base_url "$t")")
    fi
    RID[$t]=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request_id"])') \
      || { echo "submit through $t failed: $out" >&2; exit 1; }
  done
}
submit_once

# Scenario points: name scenario connections
POINTS=()
has "$SCENARIOS" S1 && POINTS+=("S1 32" "S1 256")
has "$SCENARIOS" S2 && POINTS+=("S2 32" "S2 256")
has "$SCENARIOS" S3 && POINTS+=("S3 8" "S3 32")
has "$SCENARIOS" S4 && POINTS+=("S4 8" "S4 32")

run_point() { # target scenario connections rep
  local t=$1 s=$2 c=$3 rep=$4 method=GET body="" path min=""
  case $s in
    S1) path="requests/${RID[$t]}/status" ;;
    S2) path=edit; method=POST; body=$RUN/fake/bodies/s2.json ;;
    S3) path=edit; method=POST; body=$RUN/fake/bodies/s3.json ;;
    # 3 MB answers: checked by size, not handed to Lua (bench/lib/req.lua, BENCH_MIN_BYTES).
    S4) path="requests/${RID[$t]}"; min=$(stat -c %s "$RUN/fake/www/result.json") ;;
  esac
  local url target
  if [ "$t" = direct ]; then url="$FAKE_URL/fal-ai/nano-banana-pro/$path"; target="";
  else url=$(base_url "$t"); target="$Q/$path"; fi
  local env=(BENCH_METHOD=$method BENCH_TARGET="$target" BENCH_AUTH="$(auth_of "$t")" BENCH_BODY="$body" BENCH_MIN_BYTES="$min")
  local wrkargs=(-t2 -c"$c" --timeout 30s --latency -s "$BENCH/lib/req.lua" "$url")
  env "${env[@]}" BENCH_OUT=/dev/null timeout $((WARM + 30)) wrk -d"${WARM}s" "${wrkargs[@]}" > /dev/null 2>&1 || true
  local out="$RUN/raw/$s-c$c-$t-r$rep.txt"
  env "${env[@]}" timeout $((DUR + 60)) python3 "$BENCH/lib/measure.py" --pids "${TPIDS[$t]}" --fake-pids "$FAKE_PIDS" \
    --out "$out" -- wrk -d"${DUR}s" "${wrkargs[@]}" > /dev/null || true
  printf '%s c=%s %-9s rep %s: %s\n' "$s" "$c" "$t" "$rep" "$(cut -d' ' -f1,4,6 "$out" 2>/dev/null) $(grep -o 'codes=[^ ]*\|err_status=[^ ]*\| cpu_ms=[^ ]*\|fake_cpu_ms=[^ ]*' "$out" | paste -sd' ')"
}
FRESH=${POINTS[0]%% *}  # the scenario the running targets are fresh for
for rep in $(seq 1 "$REPS"); do
  for pt in "${POINTS[@]}"; do
    read -r s c <<< "$pt"
    if [ "$s" != "$FRESH" ]; then
      stop_targets; start_targets; submit_once; FRESH=$s
    fi
    for t in ${TARGETS//,/ }; do run_point "$t" "$s" "$c" "$rep"; done
  done
done
echo "loadavg after S1-S4: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RUN/machine.txt"

# ---------------------------------------------------------------- S5: status streams
if has "$SCENARIOS" S5; then
  (cd "$BENCH/fake-fal" && PORT=9100 FAL_KEY=$FAL_KEY INTERVAL_MS=3000 exec node slow-sse.js) > "$RUN/logs/slow-sse.log" 2>&1 &
  PIDS+=($!); SSE_PID=$!
  fal_proxy_conf "127.0.0.1:$S5_PORT" "http://$S5_UP" bench > "$RUN/fal-proxy-s5.toml"
  # The slow upstream speaks h2c (as fal speaks h2 over TLS): streams share its connections.
  prior_knowledge "$RUN/fal-proxy-s5.toml"
  read -r S5_PID ms < <(FAL_KEY=$FAL_KEY python3 "$BENCH/lib/startup.py" "http://127.0.0.1:$S5_PORT/readyz" \
    "$RUN/logs/fal-proxy-s5.log" -- "$BIN" --config "$RUN/fal-proxy-s5.toml")
  PIDS+=("$S5_PID")
  sleep 1
  idle=$(rss_kb "$S5_PID")
  # The client multiplexes its streams over 20 h2c connections to the proxy (fal-proxy serves
  # h2c with prior knowledge); the proxy's upstream streams share h2c connections to the fake.
  H2=1 SESSIONS=20 BENCH_AUTH="Bearer $CLIENT_KEY" node "$BENCH/lib/s5-client.js" \
    "http://127.0.0.1:$S5_PORT/api/fal/proxy" "$S5_STREAMS" "$S5_HOLD" "$RUN/raw/S5-fal-proxy.json" \
    > "$RUN/logs/s5-client.log" 2>&1 &
  CL=$!; PIDS+=("$CL")
  peak=0; fds=0
  : > "$RUN/raw/S5-fal-proxy-rss.tsv"
  while kill -0 "$CL" 2>/dev/null; do
    r=$(rss_kb "$S5_PID"); f=$(ls /proc/"$S5_PID"/fd 2>/dev/null | wc -l)
    [ "$r" -gt "$peak" ] && peak=$r; [ "$f" -gt "$fds" ] && fds=$f
    echo -e "$(date +%s)\t$r\t$f" >> "$RUN/raw/S5-fal-proxy-rss.tsv"
    sleep 1
  done
  hwm=$(awk '/VmHWM/{print $2}' /proc/"$S5_PID"/status)
  echo "idle_rss_kb=$idle peak_rss_kb=$(( hwm > peak ? hwm : peak )) peak_fds=$fds cpu_ticks=$(awk '{print $14+$15}' /proc/$S5_PID/stat)" \
    > "$RUN/raw/S5-fal-proxy-proc.txt"
  cat "$RUN/logs/s5-client.log" "$RUN/raw/S5-fal-proxy-proc.txt"
fi

python3 "$BENCH/lib/report.py" "$RUN" > "$RUN/table.md"
cat "$RUN/table.md"
