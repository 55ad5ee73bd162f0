#!/usr/bin/env bash
# End-to-end suite: drives a real `podium server` with the real kubectl and the Python
# `kubernetes` client. One venv per client version is created (or reused) under
# ${PODIUM_CACHE:-/var/cache/podium-test}, keyed by a hash of its requirements file.
# The whole suite runs with the 37.x client; the Python-client file runs again with 32.x.
# Extra arguments are passed to pytest (e.g. `scripts/e2e.sh -k watch -x`); pytest runs in
# tests/e2e. PODIUM_BIN selects the binary (else a debug build is made); PYTHON the interpreter.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
e2e="$root/tests/e2e"
cache="${PODIUM_CACHE:-/var/cache/podium-test}"
python="${PYTHON:-python3}"

# The binary under test: PODIUM_BIN, else a debug build into CARGO_TARGET_DIR.
if [[ -z "${PODIUM_BIN:-}" ]]; then
    target="${CARGO_TARGET_DIR:-$root/target}"
    if [[ "${PODIUM_E2E_SKIP_BUILD:-}" != 1 ]]; then
        (cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q -p podium)
    fi
    export PODIUM_BIN="$target/debug/podium"
fi
[[ -x "$PODIUM_BIN" ]] || { echo "e2e: no podium binary at $PODIUM_BIN" >&2; exit 1; }

# venv_for REQUIREMENTS_FILE -> prints the venv's directory, creating it if needed.
venv_for() {
    local req="$1" key dir
    key="$(cat "$req" <("$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
    dir="$cache/venv-$(basename "$req" .txt)-$key"
    # .complete marks a finished install: a half-built venv (interrupted run) is redone.
    if [[ ! -e "$dir/.complete" ]]; then
        echo "e2e: creating $dir" >&2
        rm -rf "$dir"
        mkdir -p "$cache"
        "$python" -m venv "$dir" >&2
        "$dir/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
        touch "$dir/.complete"
    fi
    echo "$dir"
}

v37="$(venv_for "$e2e/requirements-37.txt")"
v32="$(venv_for "$e2e/requirements-32.txt")"

status=0
cd "$e2e"
echo "e2e: full suite with $("$v37/bin/python" -c 'import kubernetes; print("kubernetes", kubernetes.__version__)')"
"$v37/bin/python" -m pytest -p no:cacheprovider "$@" . || status=1
echo "e2e: Python client with $("$v32/bin/python" -c 'import kubernetes; print("kubernetes", kubernetes.__version__)')"
rc=0
"$v32/bin/python" -m pytest -p no:cacheprovider "$@" test_python_client.py || rc=$?
# Exit 5 (nothing collected) is fine when the caller's -k/-m selected nothing here.
if [[ $rc -ne 0 && ! ( $rc -eq 5 && $# -gt 0 ) ]]; then status=1; fi
exit "$status"
