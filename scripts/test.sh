#!/usr/bin/env bash
# The test command (README): unit, property and integration tests over real sockets, then the
# official fal client through the proxy in Node and in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
scripts/compat.sh
