#!/usr/bin/env bash
# The amx_bf16 set's checks on a machine with AMX, in one prepared run (the
# set is built only with -DMHA_AMX=ON until these have passed: README, "AMX").
#
#   scripts/device-amx.sh prepare [--openvino]  here (x86-64, the project's packages installed): a
#                                       Release build with -DMHA_AMX=ON into build-amx/ (tests and
#                                       mha_bench), and the shared libraries its programs load that
#                                       a bare machine may lack (SLEEF, libgomp, Google Benchmark)
#                                       copied into build-amx/devlibs/
#   scripts/device-amx.sh run [OUT]     there: no compiler needed. Prints the CPU; fails unless
#                                       the amx_bf16 set is available (CPUID, XCR0, the kernel's
#                                       grant); runs the CTest suite with the default set (amx_bf16:
#                                       attention-bf16-test and layer-bf16-test run both BF16 sets),
#                                       then the bf16 rows of mha_bench --full at 2 and all threads
#                                       with amx_bf16, then with avx512_bf16 (each against its own
#                                       unit's probe); logs in OUT (default out/device-amx). Under
#                                       the device tool's 10 minutes a command: expected about 3 for the
#                                       tests on 16 cores, at most 6 for the benchmarks
#
#   scripts/device-amx.sh peers [OUT]   there: bench/peers.py --bf16 (PyTorch, ONNX Runtime; and
#                                       OpenVINO where importable) on libmha.so, with OpenVINO from
#                                       wheels in .whl/ (prepare --openvino downloads them: 59 MB,
#                                       too much to travel beside build-amx/ within 64 MiB, so a
#                                       second call carries build-amx-lib/ — libmha.so and
#                                       devlibs/, 4 MB — and .whl/ instead)
#
# The device tool (../.library/device) runs them as, with build-amx carried:
#   bash scripts/device-amx.sh run "$OUT"
# then, with build-amx-lib and .whl carried (both git-ignored: .whl/ by
# .git/info/exclude):
#   bash scripts/device-amx.sh peers "$OUT"
# The tests' pass/fail lines come first (about 2 minutes on 16 cores), the
# benchmarks after: a run cut short still says whether the set is correct.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
build=${MHA_DEVICE_BUILD:-build-amx} # another build dir: the script itself on an emulated build

case "$mode" in
  prepare)
    set -e
    bash scripts/setup.sh
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMHA_AMX=ON -DMHA_BUILD_TESTS=ON -DMHA_BUILD_BENCH=ON \
      -DMHA_BUILD_EXAMPLES=OFF >/dev/null
    cmake --build "$build" -j "$(nproc)"
    mkdir -p "$build/devlibs"
    # what the programs load from outside the build (not libc, libm, libstdc++)
    for f in "$build"/tests/*-test "$build"/bench/mha_bench "$build"/libmha.so; do
      [[ -x "$f" || "$f" == *.so ]] || continue
      ldd "$f" | awk '/=> \// {print $3}'
    done | sort -u | grep -E 'libsleef|libgomp|libbenchmark' | while read -r lib; do
      cp -L "$lib" "$build/devlibs/"
    done
    ls "$build/devlibs"
    # CTest's files hold this checkout's absolute path: `run` rewrites them to its own
    echo "$PWD" >"$build/devroot.txt"
    # the object files stay here (27 → 18 MB to carry)
    rm -rf "$build"/CMakeFiles "$build"/*/CMakeFiles "$build"/*/*/CMakeFiles
    rm -rf build-amx-lib && mkdir -p build-amx-lib
    cp -L "$build/libmha.so" build-amx-lib/libmha.so
    cp "$build"/devlibs/* build-amx-lib/
    if [[ "${2:-}" == --openvino ]]; then
      grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl openvino==2026.4.1 openvino-telemetry
    fi
    du -sh "$build" build-amx-lib
    ;;
  run)
    out=${2:-out/device-amx}
    mkdir -p "$out"
    export LD_LIBRARY_PATH="$PWD/$build/devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    {
      echo "== cpu"
      grep -m1 'model name' /proc/cpuinfo
      grep -m1 -E '^(cpu family|model)\s' /proc/cpuinfo
      grep -m1 -o -w -E 'amx_tile|amx_bf16|amx_fp16|avx512_bf16|avx512_fp16' /proc/cpuinfo | sort -u | tr '\n' ' '
      grep -o -w -E 'amx_tile|amx_bf16|amx_fp16|avx512_bf16|avx512_fp16' /proc/cpuinfo | sort -u | tr '\n' ' '
      echo
      echo "cores: $(nproc); kernel: $(uname -r)"
    } 2>&1 | tee "$out/cpu.txt"
    if ! MHA_ISA=amx_bf16 "$build/tests/isa-env-test" amx_bf16 >"$out/isa-env.txt" 2>&1; then
      cat "$out/isa-env.txt"
      echo "device-amx: the amx_bf16 set is not available here (above): nothing else run"
      exit 1
    fi
    fails=0
    here=$(cat "$build/devroot.txt" 2>/dev/null || true)
    if command -v ctest >/dev/null && [[ -f "$build/CTestTestfile.cmake" && -n "$here" ]]; then
      # the suite (default set amx_bf16), less what needs this checkout's venvs, an
      # install prefix, the README's peers or llvm-mca
      if [[ "$here" != "$PWD" ]]; then
        find "$build" -name CTestTestfile.cmake -exec sed -i "s|$here|$PWD|g" {} +
      fi
      echo "== tests: ctest, the default set amx_bf16" | tee "$out/tests.txt"
      ctest --test-dir "$build" -j "$(nproc)" --output-on-failure --timeout 300 \
        -LE 'install|docs|python|perf-model|bench|mpi' -E 'minilm' 2>&1 | tee -a "$out/tests.txt"
      fails=${PIPESTATUS[0]}
    else
      echo "== tests: each program (no ctest here), the default set amx_bf16" | tee "$out/tests.txt"
      for t in "$build"/tests/*-test; do
        [[ -x "$t" ]] || continue
        name=$(basename "$t")
        args=()
        case "$name" in
          isa-env-test | mpi-test) continue ;;
          size-boundary-test) args=(large) ;;
        esac
        start=$SECONDS
        (cd "$build/tests" && timeout 600 "./$name" "${args[@]}") >"$out/$name.log" 2>&1
        rc=$?
        status=PASS
        if [[ $rc -eq 77 ]]; then status=SKIP; elif [[ $rc -ne 0 ]]; then status="FAIL (rc $rc)"; fails=$((fails + 1)); fi
        echo "$status $name ($((SECONDS - start)) s): $(tail -1 "$out/$name.log")" | tee -a "$out/tests.txt"
      done
    fi
    echo "== tests: exit status $fails (0: all passed)" | tee -a "$out/tests.txt"
    echo "== mha_bench, bf16 rows, amx_bf16 then avx512_bf16" | tee "$out/bench.txt"
    for isa in amx_bf16 avx512_bf16; do
      echo "-- $isa" | tee -a "$out/bench.txt"
      MHA_ISA=$isa timeout 170 "$build/bench/mha_bench" --full --benchmark_filter='dtype:2/threads:(2|16)/' \
        --benchmark_min_time=0.1 --benchmark_repetitions=3 2>&1 | grep -E '^(probe/dp|attn16|layer16)|ERROR' |
        tee -a "$out/bench.txt"
    done
    exit $((fails > 0))
    ;;
  peers)
    out=${2:-out/device-amx}
    mkdir -p "$out"
    export LD_LIBRARY_PATH="$PWD/build-amx-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if compgen -G '.whl/*.whl' >/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    grep -m1 'model name' /proc/cpuinfo | tee "$out/peers-ov.txt"
    PYTHONUNBUFFERED=1 timeout 540 python3 bench/peers.py --lib build-amx-lib/libmha.so --bf16 \
      --threads "2,$(nproc)" --rounds 1 --json "$out/peers-ov.json" 2>&1 | tee -a "$out/peers-ov.txt"
    ;;
  *)
    echo "usage: scripts/device-amx.sh prepare [--openvino] | run [OUT] | peers [OUT]" >&2
    exit 2
    ;;
esac
