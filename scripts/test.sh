#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole CTest suite.
# Usage: scripts/test.sh                 (Release build in build/)
#        scripts/test.sh --sanitize      (ASan + UBSan build in build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir=build
flags=(-DCMAKE_BUILD_TYPE=Release -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=ON)
if [[ "${1:-}" == "--sanitize" ]]; then
  dir=build-asan
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMHA_SANITIZE=address,undefined -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=OFF)
fi
jobs=$(nproc)
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$jobs"
ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs"
