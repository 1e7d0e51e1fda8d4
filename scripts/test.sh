#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole CTest suite.
# Usage: scripts/test.sh                 (Release build in build/)
#        scripts/test.sh --sanitize      (ASan + UBSan build in build-asan/)
#        scripts/test.sh --tsan          (ThreadSanitizer: clang 14 + libomp, build-tsan/)
#        scripts/test.sh --memcheck      (valgrind memcheck over a gcc build, build-memcheck/)
#        scripts/test.sh --aarch64       (scripts/cross-aarch64.sh: AArch64 cross build under qemu)
#        scripts/test.sh --amx-emulate   (x86-64: the amx_bf16 set on tests/amx/'s C model of the AMX
#                                         instructions, ASan + UBSan, build-amx-emulate/; the set runs
#                                         where the CPU has AVX512-BF16)
# MHA_BUILD_DIR=<dir> builds elsewhere (a second checkout's tree, a CI cache).
#
# --tsan: gcc's TSan reports false races inside libgomp, so this build uses
#   clang with LLVM's libomp; TSAN_OPTIONS ignores the uninstrumented runtime
#   and stops at the first report. Tests labelled no-tsan are left out (the
#   reason is beside each label in tests/CMakeLists.txt).
# --memcheck: every test runs under valgrind (ctest -T memcheck); an error or
#   a definite leak fails it (libgomp's thread pool shows as "possibly lost").
#   valgrind cannot run AVX-512 and hides it, so this covers the AVX2 and
#   scalar paths. Tests labelled no-memcheck (too slow under valgrind) and
#   the benchmarks are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
setup=()
ctest_args=(--output-on-failure --no-tests=error)
case "$mode" in
  "")
    dir=build
    flags=(-DCMAKE_BUILD_TYPE=Release -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=ON)
    ;;
  --sanitize)
    dir=build-asan
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMHA_SANITIZE=address,undefined -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=OFF)
    ;;
  --tsan)
    setup=(--tsan)
    dir=build-tsan
    flags=(-DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMHA_SANITIZE=thread -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=OFF)
    export TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1"
    ctest_args+=(-LE no-tsan)
    ;;
  --memcheck)
    setup=(--memcheck)
    dir=build-memcheck
    flags=(-DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=OFF)
    ctest_args+=(-T memcheck -LE "no-memcheck|bench"
                 --overwrite "MemoryCheckCommandOptions=--error-exitcode=1 --errors-for-leak-kinds=definite --leak-check=full")
    ;;
  --aarch64)
    exec bash scripts/cross-aarch64.sh
    ;;
  --amx-emulate)
    # -DMHA_AMX=ON with the instructions on the C model: the whole suite, the
    # amx_bf16 set the default where the CPU has AVX512-BF16 (it is the
    # set's only run on a CPU without AMX); such a build refuses to install,
    # so the install and README tests are left out
    if [[ "$(uname -m)" != x86_64 ]]; then
      echo "test.sh --amx-emulate: x86-64 only"
      exit 0
    fi
    # under ASan + UBSan: the model reads and writes a tile's rows where the
    # kernel points it, so a tile load past A or a store past C is reported
    dir=build-amx-emulate
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMHA_SANITIZE=address,undefined -DMHA_AMX=ON -DMHA_AMX_EMULATE=ON
           -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=OFF)
    ctest_args+=(-LE "install|docs")
    ;;
  *)
    echo "usage: scripts/test.sh [--sanitize | --tsan | --memcheck | --aarch64 | --amx-emulate]" >&2
    exit 2
    ;;
esac
bash scripts/setup.sh "${setup[@]}"
if [[ -z "$mode" ]]; then
  # .venv-py/ (git-ignored): every python/requirements-*.txt, for the CTest test python-front
  bash scripts/setup-python.sh
fi
if [[ "$mode" == --memcheck ]]; then
  ctest_args+=(--overwrite "MemoryCheckCommand=$(command -v valgrind)")
fi
if [[ -z "$mode" ]]; then
  # libmha_mpi and its tests (mpi-test at 1, 2, 4 ranks, the mpi-ring example)
  # when an MPI is installed (scripts/setup.sh installs Open MPI)
  if command -v mpiexec >/dev/null && command -v mpicc >/dev/null; then
    flags+=(-DMHA_MPI=ON)
  else
    echo "test.sh: no MPI (mpiexec, mpicc: Debian's openmpi-bin, libopenmpi-dev): the MPI tests are skipped"
    flags+=(-DMHA_MPI=OFF)
  fi
fi
dir=${MHA_BUILD_DIR:-$dir}
jobs=$(nproc)
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$jobs"
ctest --test-dir "$dir" "${ctest_args[@]}" -j "$jobs"
