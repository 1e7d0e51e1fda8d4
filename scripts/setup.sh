#!/usr/bin/env bash
# Installs the Debian packages mha needs when they are missing (root, or sudo).
# Usage: scripts/setup.sh [--cross]   (--cross adds the AArch64 cross toolchain and qemu)
set -euo pipefail
pkgs=(cmake make gcc g++ pkg-config python3 libsleef-dev libbenchmark-dev libopenblas-dev gnuplot-nox)
if [[ "${1:-}" == "--cross" ]]; then
  pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
