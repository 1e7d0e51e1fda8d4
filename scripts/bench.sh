#!/usr/bin/env bash
# The benchmark suite: installs what is missing, builds Release in build/,
# runs, prints the table, writes the JSON and the plots under out/bench/.
# Usage: scripts/bench.sh            quick mode (about two minutes on 2 cores)
#        scripts/bench.sh --full     every preset at its real size, every thread count
#        scripts/bench.sh --smoke    CI: tiny shapes, every preset and peer once
#        scripts/bench.sh [mode] --peers   also PyTorch, ONNX Runtime and OpenVINO on the real
#            presets, at 1 thread and at all threads (installs them from PyPI into
#            .venv-peers/, git-ignored: torch pulls about 2.8 GB of wheels, 5.3 GB on disk;
#            onnxruntime, openvino, onnx, numpy a few hundred MB)
# After the benchmarks, the trace timelines: build/bench/mha_trace_dump (a layer and a decode
# step, quiet and with CPU 0 busy; --tiny in smoke mode) writes out/bench/trace-*.json and
# scripts/plot_trace.py draws trace-*.png.
# Anything after the mode goes to the benchmark binary, e.g.
#        scripts/bench.sh --full --benchmark_filter='^(gpt2|heads)/'
# Exits nonzero if any benchmark reported an error (a failed call, or a peer
# whose output does not match mha's). No timing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick
peers=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick | --full | --smoke) mode=${1#--}; shift ;;
    --peers) peers=1; shift ;;
    *) break ;;
  esac
done

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMHA_BUILD_BENCH=ON >/dev/null
cmake --build build -j "$(nproc)" --target mha_bench mha_trace_dump mha_shared
if [[ ! -x build/bench/mha_bench ]]; then
  echo "bench: build/bench/mha_bench was not built (is libbenchmark-dev installed?)" >&2
  exit 1
fi

out=out/bench
mkdir -p "$out"
json=$out/$mode.json
flags=()
if [[ $mode == smoke ]]; then flags+=(--benchmark_min_time=0.01); fi

rc=0
./build/bench/mha_bench "--$mode" "${flags[@]}" --benchmark_out="$json" "$@" 2>&1 | tee "$out/$mode.txt" || rc=$?

# Every benchmark's status, from the JSON (the binary's exit status says the same).
errors=$(/usr/bin/python3 - "$json" <<'EOF'
import json, sys
try:
    runs = json.load(open(sys.argv[1]))["benchmarks"]
except (OSError, ValueError, KeyError) as e:
    print(f"cannot read {sys.argv[1]}: {e}")
    sys.exit(0)
for r in runs:
    if r.get("error_occurred"):
        print(f"{r['name']}: {r.get('error_message', '')}")
EOF
)
if [[ -n $errors ]]; then
  echo "bench: benchmarks reported errors:" >&2
  echo "$errors" >&2
  rc=1
fi

peers_json=""
if ((peers)); then
  bash scripts/setup-peers.sh
  peers_json=$out/$mode-peers.json
  # the peers' own BLAS/OpenMP must not inherit this machine's OpenBLAS workarounds
  # the bf16 rows (mha_bf16 beside PyTorch's bf16 and OpenVINO's default) where the CPU
  # has a bf16 unit: there bf16 is what the engines run
  bf16_rows=()
  if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then bf16_rows=(--bf16); fi
  if ! env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv-peers/bin/python bench/peers.py \
      --lib build/libmha.so --threads "1,$(nproc)" --probe-json "$json" --json "$peers_json" \
      --rounds 3 "${bf16_rows[@]}"; then
    echo "bench: the peers reported errors (see above)" >&2
    rc=1
  fi
fi
# the plots after the peers: with --peers, the speed-up chart against each one
if /usr/bin/python3 scripts/plot_bench.py "$json" "$out/$mode" ${peers_json:+--peers "$peers_json"}; then
  plots=$(ls "$out/$mode"-*.png 2>/dev/null | tr '\n' ' ')
else
  plots="(plotting failed)"
  rc=1
fi
/usr/bin/python3 bench/summary.py "$json" ${peers_json:+--peers "$peers_json"} --md "$out/$mode-summary.md" || rc=1

# The trace timelines: one traced call per run, as JSON, then a PNG per JSON (smoke: the
# tiny twins, still plotted so CI covers both). Old ones go first: they would read as this run's.
rm -f "$out"/trace-*.json "$out"/trace-*.png
tiny=()
if [[ $mode == smoke ]]; then tiny=(--tiny); fi
if ! ./build/bench/mha_trace_dump "${tiny[@]}" "$out"; then
  traces="(the trace dump failed)"
  rc=1
elif /usr/bin/python3 scripts/plot_trace.py "$out"/trace-*.json; then
  traces=$(ls "$out"/trace-*.json "$out"/trace-*.png 2>/dev/null | tr '\n' ' ')
else
  traces="(plotting the traces failed)"
  rc=1
fi

echo
echo "bench ($mode): summary $out/$mode-summary.md"
echo "bench ($mode): table $out/$mode.txt"
echo "bench ($mode): JSON  $json"
echo "bench ($mode): plots $plots"
echo "bench ($mode): traces $traces"
exit $rc
