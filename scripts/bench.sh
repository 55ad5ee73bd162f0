#!/usr/bin/env bash
# The API benchmark (not a test): builds podium and podium-bench in release mode, then runs
# podium-bench with its default settings against a server it starts in a temporary data
# dir. Extra arguments go to podium-bench (e.g. --json, --repeats 5, --only create,list).
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target="${CARGO_TARGET_DIR:-$PWD/target}"
CARGO_TARGET_DIR="$target" cargo build --release -p podium -p podium-bench
exec "$target/release/podium-bench" --podium-bin "$target/release/podium" "$@"
