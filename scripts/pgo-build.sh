#!/usr/bin/env bash
# Profile-guided release build of fal-proxy: the build the container image ships and the
# benchmark measures.
#
#   scripts/pgo-build.sh [--install]
#
# 1. Builds an instrumented release binary (rustc -Cprofile-generate) in target/pgo/gen.
# 2. Trains it: the benchmark's fake fal (nginx with bench/fake-fal/nginx.conf, cleartext
#    HTTP/1.1 and h2c) on 127.0.0.1, the proxy in front of it with client auth, validation and
#    ownership checks on, and wrk sending the calls a frontend makes: status polls (32 and 256
#    connections), submits, a ~4 MB submit with two images, a ~3 MB result, a few refused calls,
#    and polls from a client that speaks HTTP/2. Three passes: the default SQLite store, the
#    memory store, and fal's side over HTTP/2 (as fal is reached in production). About a
#    minute.
# 3. Merges the profile (llvm-profdata of rustc's own LLVM version) and builds the optimized
#    binary in target/pgo/use. Its path is the last line printed.
#
# Why: a status poll spends more time waiting on instruction-cache misses than on instructions
# (the path runs through axum, tokio, hyper's types and the allocator); the profile lets LLVM lay
# out the hot code together and inline along the paths taken. bench/README.md has the numbers.
#
# Needs: cargo, nginx with the echo module, wrk, python3, curl, and llvm-profdata matching
# `rustc -vV`'s LLVM major version. --install installs the missing ones with apt-get (Debian;
# llvm-22 for rustc 1.95 is in bookworm-security). The instrumented binary writes its profile
# when it exits, which it does on SIGTERM.
#
# Environment: PGO_DIR (default target/pgo), PGO_FAKE_PORT (39400; the h2c port is one above),
# PGO_PORT (39410), RUSTFLAGS (kept, and extended).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
OUT=${PGO_DIR:-$ROOT/target/pgo}
FAKE_PORT=${PGO_FAKE_PORT:-39400}
H2_PORT=$((FAKE_PORT + 1))
PORT=${PGO_PORT:-39410}
INSTALL=0
case "${1:-}" in
  --install) INSTALL=1 ;;
  "") ;;
  -h|--help) sed -n 2,28p "$0"; exit 0 ;;
  *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
esac
log() { echo "== pgo: $*" >&2; }

# ---------------------------------------------------------------- tools
major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[ -n "$major" ] || { echo "cannot read rustc's LLVM version from rustc -vV" >&2; exit 1; }
find_profdata() {
  local p
  for p in "llvm-profdata-$major" "/usr/lib/llvm-$major/bin/llvm-profdata" llvm-profdata; do
    command -v "$p" >/dev/null 2>&1 || continue
    # A profile is read only by the LLVM version that wrote it, or a later one.
    "$p" merge --version 2>/dev/null | grep -q "LLVM version $major\." && { command -v "$p"; return; }
  done
  return 1
}
. "$BENCH/lib/tools.sh"
NEED=()
find_profdata >/dev/null || NEED+=("llvm-$major")
fake_fal_missing
command -v python3 >/dev/null || NEED+=(python3)
command -v curl >/dev/null || NEED+=(curl)
if [ ${#NEED[@]} -gt 0 ]; then
  if [ "$INSTALL" = 0 ]; then
    echo "missing: ${NEED[*]} (Debian packages); run with --install to apt-get them" >&2
    exit 1
  fi
  log "installing ${NEED[*]}"
  apt_install "${NEED[@]}" >/dev/null
fi
PROFDATA=$(find_profdata) || { echo "no llvm-profdata for LLVM $major after installing" >&2; exit 1; }

# An explicit --target keeps RUSTFLAGS (and so the instrumentation) off build scripts and proc
# macros, which would otherwise write their own profiles into the training's.
HOST=$(rustc -vV | sed -n 's/^host: //p')

# ---------------------------------------------------------------- instrumented build
rm -rf "$OUT/raw" "$OUT/work"
mkdir -p "$OUT/raw" "$OUT/work"/{fake/tmp,data}
log "instrumented build (LLVM $major)"
(cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$OUT/raw" \
  cargo build --release --locked --bin fal-proxy --target "$HOST" --target-dir "$OUT/gen")
BIN=$OUT/gen/$HOST/release/fal-proxy

# ---------------------------------------------------------------- training
W=$OUT/work
PROXY_PID=""
cleanup() {
  [ -n "$PROXY_PID" ] && kill -9 "$PROXY_PID" 2>/dev/null
  [ -f "$W/fake/nginx.pid" ] && kill "$(cat "$W/fake/nginx.pid")" 2>/dev/null
  true
}
trap cleanup EXIT
wait_ready() {
  for _ in $(seq 1 400); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && return 0
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "the instrumented proxy did not become ready; its log:" >&2; cat "$W/proxy.log" >&2; exit 1
}

python3 "$BENCH/fake-fal/gen.py" "$W/fake" > /dev/null
sed -e "s|listen 127.0.0.1:9000 backlog=8192;|listen 127.0.0.1:$FAKE_PORT; listen 127.0.0.1:$H2_PORT http2;|" \
  "$BENCH/fake-fal/nginx.conf" > "$W/fake/nginx.conf"
grep -q "listen 127.0.0.1:$H2_PORT http2" "$W/fake/nginx.conf" \
  || { echo "bench/fake-fal/nginx.conf no longer has the listen line this script rewrites" >&2; exit 1; }
nginx -p "$W/fake" -c "$W/fake/nginx.conf" -e "$W/fake/error.log"

# The benchmark's configuration (client auth, validation, generous limits), per pass.
. "$BENCH/lib/conf.sh"
client_key "$BIN" pgo "$W/keygen.txt"
config() { # STORE UPSTREAM_PORT H2
  fal_proxy_conf "127.0.0.1:$PORT" "http://127.0.0.1:$2" pgo \
    | sed -e "s|^backend = \"memory\"|backend = \"$1\"\ndata_dir = \"$W/data\"|" \
      -e "s|^\[fal\]|[fal]\nhttp2_prior_knowledge = $3|" > "$W/fal-proxy.toml"
}
Q=https://queue.fal.run/fal-ai/nano-banana-pro
URL=http://127.0.0.1:$PORT/api/fal/proxy
load() { # METHOD TARGET CONNECTIONS SECONDS [BODY]
  BENCH_METHOD=$1 BENCH_TARGET=$2 BENCH_AUTH="Bearer $KEY" BENCH_BODY=${5:-} BENCH_OUT=$W/wrk.txt \
    BENCH_MIN_BYTES=$([ "$1 ${2##*/}" = "GET $RID" ] && echo 1) \
    wrk -t2 -c"$3" -d"$4"s -s "$BENCH/lib/req.lua" "$URL" > /dev/null
  grep -q 'err_status=0 ' "$W/wrk.txt" && ! grep -q '^requests=0 ' "$W/wrk.txt" \
    || { echo "training load $1 $2 failed: $(cat "$W/wrk.txt")" >&2; exit 1; }
}
pass() { # STORE UPSTREAM_PORT H2 SECONDS
  config "$1" "$2" "$3"
  FAL_KEY=bench-fal-key "$BIN" --config "$W/fal-proxy.toml" > "$W/proxy.log" 2>&1 &
  PROXY_PID=$!
  wait_ready
  curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -H "x-fal-target-url: $Q/edit" --data-binary @"$W/fake/bodies/s2.json" "$URL" > "$W/submit.json"
  RID=$(grep -o '"request_id":"[0-9a-f]*"' "$W/submit.json" | cut -d'"' -f4)
  [ -n "$RID" ] || { echo "training submit failed: $(cat "$W/submit.json")" >&2; exit 1; }
  load GET "$Q/requests/$RID/status" 32 "$4"
  load GET "$Q/requests/$RID/status" 256 "$4"
  load POST "$Q/edit" 32 "$4" "$W/fake/bodies/s2.json"
  load POST "$Q/edit" 8 2 "$W/fake/bodies/s3.json"
  load GET "$Q/requests/$RID" 8 2
  # Refused calls (no key, a target outside the allow-list, an invalid body), and status polls
  # from clients speaking HTTP/2 (cleartext, prior knowledge; one call per connection, as
  # Debian 12's curl fails to reuse such a connection).
  for _ in $(seq 1 50); do
    curl -s -o /dev/null -H "x-fal-target-url: $Q/requests/$RID/status" "$URL"
    curl -s -o /dev/null -H "Authorization: Bearer $KEY" -H "x-fal-target-url: https://example.com/x" "$URL"
    curl -s -o /dev/null -X POST -H "Authorization: Bearer $KEY" -H "x-fal-target-url: $Q/edit" \
      -H 'content-type: application/json' --data '{"prompt":""}' "$URL"
  done
  for _ in $(seq 1 100); do
    code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' \
      -H "Authorization: Bearer $KEY" -H "x-fal-target-url: $Q/requests/$RID/status" "$URL")
    [ "$code" = 200 ] || { echo "training poll over HTTP/2 answered $code" >&2; exit 1; }
  done
  # The profile is written as the process exits.
  kill -TERM "$PROXY_PID"
  wait "$PROXY_PID" || true
  PROXY_PID=""
}
log "training: SQLite store"
pass sqlite "$FAKE_PORT" false 5
log "training: memory store"
pass memory "$FAKE_PORT" false 3
log "training: fal over HTTP/2"
pass memory "$H2_PORT" true 3
cleanup
trap - EXIT

# ---------------------------------------------------------------- optimized build
"$PROFDATA" merge -o "$OUT/fal-proxy.profdata" "$OUT/raw"
log "optimized build"
(cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$OUT/fal-proxy.profdata" \
  cargo build --release --locked --bin fal-proxy --target "$HOST" --target-dir "$OUT/use")
mkdir -p "$OUT/use/release"
# A rename, so that a copy still running (a benchmark's) keeps its file.
cp "$OUT/use/$HOST/release/fal-proxy" "$OUT/use/release/fal-proxy.new"
mv -f "$OUT/use/release/fal-proxy.new" "$OUT/use/release/fal-proxy"
echo "$OUT/use/release/fal-proxy"
