#!/usr/bin/env bash
# The test command: unit, property and integration tests (real sockets, real HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
