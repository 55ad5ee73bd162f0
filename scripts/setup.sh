#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine to a running single-node Podium:
# installs what is missing, builds the release binary, starts `podium server` on the
# embedded store (data in /var/lib/podium, API on port 6443) and creates an example pod.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p podium
BIN="${CARGO_TARGET_DIR:-target}/release/podium"
DATA=${PODIUM_DATA_DIR:-/var/lib/podium}
mkdir -p "$DATA"
if [ -f "$DATA/server.pid" ] && kill -0 "$(cat "$DATA/server.pid")" 2>/dev/null; then
  echo "podium server already running (pid $(cat "$DATA/server.pid"))"
else
  nohup "$BIN" server --data-dir "$DATA" >"$DATA/server.log" 2>&1 &
  echo $! >"$DATA/server.pid"
fi
export KUBECONFIG="$DATA/kubeconfig.yaml"
for _ in $(seq 1 100); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.1
done
kubectl apply -f examples/pod.yaml
kubectl get pods -o wide
echo
echo "Podium is running (log: $DATA/server.log). Use it with:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  kubectl get nodes,pods"
echo "Stop it with: kill \$(cat $DATA/server.pid)"
