#!/usr/bin/env bash
# Installs what building and testing Podium needs on Debian/Ubuntu, skipping what is there.
# Safe to run again. Needs root (or sudo).
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)
# Test images are built from Debian's static busybox.
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
# Image tests run a local registry (the CNCF distribution server) with htpasswd auth.
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  # kubectl comes from Debian's kubernetes-client where the kubectl package is not known.
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; then
    need=("${need[@]/kubectl/kubernetes-client}")
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "deps: cargo is in $HOME/.cargo/bin; add it to PATH"
  else
    echo "deps: installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
fi
