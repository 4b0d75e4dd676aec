#!/usr/bin/env bash
# Compatibility suites: the official @fal-ai/client (pinned in tests/compat/package-lock.json)
# against fal-proxy in mock mode, in Node and in headless Chromium (Debian's package).
#
#   scripts/compat.sh            installs what is missing, builds the proxy, runs both suites
#
# Environment: FAL_PROXY_BIN (use this binary, skip the cargo build), CHROMIUM_BIN
# (default /usr/bin/chromium; installed with apt-get when it is the default and missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

chromium_bin=${CHROMIUM_BIN:-/usr/bin/chromium}
if [[ ! -x "$chromium_bin" ]]; then
  if [[ "$chromium_bin" != /usr/bin/chromium ]]; then
    echo "compat: CHROMIUM_BIN=$chromium_bin is not an executable" >&2
    exit 1
  fi
  echo "compat: installing chromium (Debian package)"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
"$chromium_bin" --version

echo "compat: npm ci (tests/compat)"
(cd tests/compat && timeout 300 npm ci --no-audit --no-fund)

if [[ -z ${FAL_PROXY_BIN:-} ]]; then
  echo "compat: cargo build"
  cargo build --locked --bin fal-proxy
  FAL_PROXY_BIN="$root/target/debug/fal-proxy"
else
  FAL_PROXY_BIN=$(realpath "$FAL_PROXY_BIN")
fi
export FAL_PROXY_BIN CHROMIUM_BIN="$chromium_bin"

echo "compat: node --test (Node suite, browser suite)"
cd tests/compat
# Each test has its own timeout; the outer bound catches anything that would hang the runner.
timeout --kill-after=10 240 node --test --test-reporter=spec node.test.mjs browser.test.mjs playground.test.mjs
