#!/usr/bin/env bash
# The subproject test (CTest subproject-test): tests/install/subproject, a
# parent project that embeds this source tree with add_subdirectory, is
# configured (it fails when mha adds tests, benchmarks or examples there),
# built (its program links mha::mha, so mha's static library is built: one
# job, as the machine is shared with the rest of the suite) and its own test
# run: the parent's one test, and none of mha's.
# Usage: subproject.sh <source> <work> <cmake> <ctest> <cc>
set -euo pipefail
if (($# != 5)); then
  echo "usage: $0 <source> <work> <cmake> <ctest> <cc>" >&2
  exit 2
fi
source=$1 work=$2 cmake=$3 ctest=$4 cc=$5
unset MHA_ISA
fail() { echo "subproject-test: FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
echo "== configure tests/install/subproject (add_subdirectory of $source)"
"$cmake" -S "$source/tests/install/subproject" -B "$work" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DMHA_SOURCE_DIR="$source" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "configure"; }
grep -- "-- mha .* as a subproject" "$work/configure.log" || fail "the parent did not report mha"
echo "== build the parent's program (mha's static library with it)"
"$cmake" --build "$work" --target app -j 1 >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "build"; }
echo "== the parent's tests"
"$ctest" --test-dir "$work" -N >"$work/tests.log" || { cat "$work/tests.log"; fail "ctest -N"; }
grep -q "Total Tests: 1$" "$work/tests.log" || { cat "$work/tests.log"; fail "the parent has tests other than its own"; }
"$ctest" --test-dir "$work" --output-on-failure || fail "the parent's test"
rm -rf "$work"
echo "subproject-test: OK"
