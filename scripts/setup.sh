#!/usr/bin/env bash
# Installs the Debian packages mha needs when they are missing (root, or sudo).
# Usage: scripts/setup.sh [--cross] [--fuzz] [--tsan] [--memcheck]
#   --cross    adds the AArch64 cross toolchain and qemu
#   --fuzz     adds clang, its sanitizer/libFuzzer runtimes and libomp (scripts/fuzz.sh)
#   --tsan     adds clang, its sanitizer runtimes and libomp (scripts/test.sh --tsan)
#   --memcheck adds valgrind (scripts/test.sh --memcheck)
set -euo pipefail
# llvm-16: llvm-mca-16, for the predicted-speed guard (bench/mca.py, CTest mca-guard);
# libpthreadpool-dev: XNNPACK's thread pool, for the threadpool-pthreadpool example;
# openmpi-bin, libopenmpi-dev: Open MPI, for libmha_mpi and its tests (-DMHA_MPI=ON)
pkgs=(cmake make gcc g++ pkg-config python3 libsleef-dev libbenchmark-dev libopenblas-dev gnuplot-nox
      llvm-16 libpthreadpool-dev openmpi-bin libopenmpi-dev)
for arg in "$@"; do
  case "$arg" in
    --cross) pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev libomp-dev) ;;
    --tsan) pkgs+=(clang libclang-rt-14-dev libomp-dev) ;;
    --memcheck) pkgs+=(valgrind) ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done
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
