#!/usr/bin/env bash
# The fuzzing command: installs clang and its runtimes when missing, builds the
# libFuzzer harnesses (tests/fuzz/) with ASan + UBSan in build-fuzz/, replays
# the checked-in corpus (CTest), then fuzzes each harness for a bounded time
# from a copy of that corpus. Exits non-zero on any finding.
#
# Usage: scripts/fuzz.sh [seconds per harness]      (default 60)
#
# Each harness runs in build-fuzz/fuzz-run/<harness>/: its corpus/ grows there
# from run to run (the checked-in seeds are copied in, never written to), and
# a finding leaves crash-*, leak-*, timeout-* or oom-* beside it. Replay one,
# with the decoded case printed, by
#   MHA_FUZZ_VERBOSE=1 build-fuzz/tests/fuzz/fuzz-<harness> <file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
dir=build-fuzz
harnesses=(attention layer kv-cache varlen rotary)

bash scripts/setup.sh --fuzz
CC=clang cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMHA_FUZZ=ON \
  -DMHA_SANITIZE=address,undefined -DMHA_BUILD_TESTS=OFF -DMHA_BUILD_BENCH=OFF \
  -DMHA_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$dir" -j 2

# the library must be able to report OUT_OF_MEMORY rather than die in ASan's
# allocator; UBSan reports come with a stack; the kernel set is each call's
# own choice (desc.isa), not the shell's
export ASAN_OPTIONS=allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1
export OMP_NUM_THREADS=2
unset MHA_ISA

status=0
echo "== replaying the checked-in corpus"
ctest --test-dir "$dir/tests/fuzz" --output-on-failure --no-tests=error || status=1

limits="-max_len=512 -timeout=10 -rss_limit_mb=4096"
summary=()
for h in "${harnesses[@]}"; do
  run="$dir/fuzz-run/$h"
  mkdir -p "$run/corpus"
  cp tests/fuzz/corpus/"$h"/* "$run/corpus/"
  echo "== fuzz-$h for ${seconds} s (log: $run/fuzz.log)"
  # libFuzzer stops by itself after max_total_time; the outer timeout only
  # guards against a hang outside its control
  result=ok
  # shellcheck disable=SC2086
  if ! (cd "$run" && timeout $((seconds + 300)) "../../tests/fuzz/fuzz-$h" corpus \
          -max_total_time="$seconds" $limits -print_final_stats=1) >"$run/fuzz.log" 2>&1; then
    status=1
    result=FINDING
    echo "fuzz-$h: FINDING"
    grep -E "mha-fuzz finding|  case:|runtime error|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|SUMMARY|Test unit written" \
      "$run/fuzz.log" | head -20 || true
  fi
  # the final status line (executions, coverage) and the execution count
  grep -E "^#[0-9]+" "$run/fuzz.log" | tail -n 1 || true
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "$run/fuzz.log" || true
  # the whole time, or a stop: libFuzzer's "Done N runs in S second(s)"
  ran=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$run/fuzz.log" | tail -n 1)
  if [[ "$result" == ok && ( -z "$ran" || "$ran" -lt "$seconds" ) ]]; then
    status=1
    result="STOPPED EARLY"
    echo "fuzz-$h: ran ${ran:-?} s of $seconds"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/fuzz.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/fuzz.log" | tail -n 1)
  last=$(grep -E "^#[0-9]+" "$run/fuzz.log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  summary+=("$(printf "%-10s %7s %11s %7s %6s %7s %7s  %s" "$h" "${ran:-?}" "${execs:-?}" "${rate:-?}" \
                 "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

echo "== fuzz summary: $seconds s per harness ($limits), $(lscpu | sed -n 's/^Model name: *//p' | head -n 1)"
printf "%-10s %7s %11s %7s %6s %7s %7s  %s\n" harness seconds executions exec/s cov ft corpus result
printf "%s\n" "${summary[@]}"

if ((status != 0)); then
  echo "fuzz: FAILED (see above and build-fuzz/fuzz-run/*/fuzz.log)"
fi
exit $status
