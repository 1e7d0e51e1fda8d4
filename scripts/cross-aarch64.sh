#!/usr/bin/env bash
# The AArch64 build and test suite on an x86-64 Debian machine, under qemu.
# Usage: scripts/cross-aarch64.sh        (build in build-aarch64/, MHA_BUILD_DIR=<dir> elsewhere)
#
#  1. scripts/setup.sh --cross: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user
#     (and the native packages).
#  2. SLEEF for arm64 into a build-local sysroot, <build>/sysroot, once:
#     `apt-get update` + `apt-get download libsleef3:arm64 libsleef-dev:arm64` with a
#     private apt state (its own sources list, package lists, cache and an empty
#     dpkg status, all under <build>/apt-arm64), then `dpkg -x`. The machine's
#     apt configuration, lists and dpkg database are not touched (no
#     `dpkg --add-architecture`). The sources list names Debian's archive,
#     MHA_DEBIAN_MIRROR (default http://deb.debian.org/debian), the release of
#     this machine (VERSION_CODENAME of /etc/os-release), main, arch=arm64,
#     checked against /usr/share/keyrings/debian-archive-keyring.gpg.
#  3. cmake with cmake/toolchain-aarch64-linux-gnu.cmake (C only, no benchmarks),
#     build, and the whole CTest suite, each test under qemu-aarch64.
#     Emulated timings mean nothing. Four tests too slow or too large for qemu
#     (label no-emulation, reasons in tests/CMakeLists.txt) are left out; they
#     run natively, on x86-64 and on a real AArch64 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --cross

dir=${MHA_BUILD_DIR:-build-aarch64}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
sysroot=$dir/sysroot
triple=aarch64-linux-gnu

if [[ ! -f $sysroot/usr/lib/$triple/pkgconfig/sleef.pc ]]; then
  apt_dir=$dir/apt-arm64
  mirror=${MHA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  rm -rf "$apt_dir"
  mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,sources.list.d,debs}
  : >"$apt_dir/status"
  echo "deb [arch=arm64 signed-by=$keyring] $mirror $codename main" >"$apt_dir/sources.list"
  apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
            -o Dir::Etc::SourceList="$apt_dir/sources.list"
            -o Dir::Etc::SourceParts="$apt_dir/sources.list.d"
            -o Dir::State::Lists="$apt_dir/lists"
            -o Dir::State::status="$apt_dir/status"
            -o Dir::Cache="$apt_dir/cache")
  # as root, apt downloads as the _apt user, who cannot write into the build tree
  if [[ $(id -u) -eq 0 ]]; then apt_opts+=(-o APT::Sandbox::User=root); fi
  echo "cross-aarch64: fetching SLEEF arm64 ($mirror $codename) into $sysroot"
  apt-get -qq "${apt_opts[@]}" update
  (cd "$apt_dir/debs" && apt-get -qq "${apt_opts[@]}" download libsleef3:arm64 libsleef-dev:arm64)
  rm -rf "$sysroot"
  for deb in "$apt_dir"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
  rm -rf "$apt_dir/lists" "$apt_dir/cache"
fi

jobs=$(nproc)
cmake -S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-aarch64-linux-gnu.cmake" \
  -DMHA_AARCH64_SYSROOT="$sysroot" -DCMAKE_BUILD_TYPE=Release -DMHA_BUILD_TESTS=ON \
  -DMHA_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j "$jobs"
# tests labelled no-emulation are left out (the reasons: tests/CMakeLists.txt)
ctest --test-dir "$dir" --output-on-failure --no-tests=error -LE no-emulation -j "$jobs"
