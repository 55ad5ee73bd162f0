#!/usr/bin/env bash
# The whole test suite: unit and store conformance tests (cargo), then the end-to-end
# suite that drives a real `podium server` with kubectl and the Python client.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -p podium
cargo test --workspace
export PODIUM_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/podium"
scripts/e2e.sh "$@"
