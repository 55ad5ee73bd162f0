#!/usr/bin/env bash
# The benchmarks (not tests): builds podium and podium-bench in release mode, then runs
# podium-bench. Extra arguments go to podium-bench.
#   scripts/bench.sh [args]          API scenarios against a server it starts in a
#                                    temporary data dir (e.g. --json, --repeats 5,
#                                    --only create,list)
#   scripts/bench.sh images [args]   the image pull benchmark (issue 3): a local
#                                    docker-registry, a ~50 MB 5-layer image, podium vs
#                                    podman and skopeo+umoci (e.g. --image-repeats 7,
#                                    --image-peers podman, --json)
#   scripts/bench.sh pods [args]     the pod benchmark (issue 5), as root: a server with
#                                    its agent and a cached busybox image, podium vs
#                                    `podman kube play` (start-up, teardown, burst,
#                                    density, per-phase timings, targets; e.g.
#                                    --startup-pods 50, --burst-pods 100,
#                                    --density-pods 250, --pod-peers none, --json)
# See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target="${CARGO_TARGET_DIR:-$PWD/target}"
CARGO_TARGET_DIR="$target" cargo build --release -p podium -p podium-bench
if [[ "${1:-}" == images ]]; then
    shift
    for tool in /usr/bin/docker-registry /bin/busybox; do
        [[ -x "$tool" ]] || { echo "$tool missing: apt-get install docker-registry busybox-static" >&2; exit 1; }
    done
    for tool in podman skopeo umoci; do
        command -v "$tool" >/dev/null || echo "note: $tool not installed (apt-get install podman skopeo umoci); that peer is skipped" >&2
    done
    set -- --only images "$@"
elif [[ "${1:-}" == pods ]]; then
    shift
    [[ -x /bin/busybox ]] || { echo "/bin/busybox missing: apt-get install busybox-static" >&2; exit 1; }
    [[ "$(id -u)" == 0 ]] || { echo "the pod benchmark runs pods: run it as root" >&2; exit 1; }
    command -v podman >/dev/null || echo "note: podman not installed (apt-get install podman); that peer is skipped" >&2
    set -- --only pods "$@"
fi
exec "$target/release/podium-bench" --podium-bin "$target/release/podium" "$@"
