#!/usr/bin/env bash
# The install test (CTest install-test): install a built tree into a fresh
# prefix, check what lands there (the license included), then build tests/install/consumer, a project
# outside the tree, against it four ways and run each program:
#   find_package(mha): mha::mha (libmha.so) and mha::mha_static (libmha.a)
#   pkg-config mha:    `cc $(pkg-config --cflags --libs mha)` (libmha.so) and
#                      the --static libs with libmha.a
# With libmha_mpi built (<mpi> 1): its files installed, and tests/install/consumer-mpi
# built with find_package(mha COMPONENTS mpi) and run (one rank, a singleton).
# Usage: run.sh <build> <source> <work> <version> <libdir> <cmake> <cc> <pkg-config> <docdir> <mpi>
#   <libdir>: CMAKE_INSTALL_LIBDIR, relative to the prefix (lib, lib/x86_64-linux-gnu)
#   <docdir>: CMAKE_INSTALL_DOCDIR, relative to the prefix (share/doc/mha), where LICENSE goes
#   <mpi>:    1 when the build has libmha_mpi, else 0
# Any missing file, failed build, wrong link or wrong result fails it.
set -euo pipefail
if (($# != 10)); then
  echo "usage: $0 <build> <source> <work> <version> <libdir> <cmake> <cc> <pkg-config> <docdir> <mpi>" >&2
  exit 2
fi
build=$1 source=$2 work=$3 version=$4 libdir_rel=$5 cmake=$6 cc=$7 pkgconfig=$8 docdir_rel=$9 mpi=${10}
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
# the ABI version in the SONAME: the major, or 0.<minor> before 1.0
abi=$major
[[ $major == 0 ]] && abi=0.$minor
prefix=$work/prefix
libdir=$prefix/$libdir_rel
# the programs must find libmha.so.<abi> in the prefix by their RPATH, never
# in the build tree, and run with the kernel set they pick
unset LD_LIBRARY_PATH MHA_ISA

fail() { echo "install-test: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

rm -rf "$work"
mkdir -p "$work"

step "cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "install"; }

step "installed files"
for f in include/mha.h "$libdir_rel/libmha.a" "$libdir_rel/libmha.so.$version" \
         "$libdir_rel/cmake/mha/mhaConfig.cmake" "$libdir_rel/cmake/mha/mhaConfigVersion.cmake" \
         "$libdir_rel/cmake/mha/mhaTargets.cmake" "$libdir_rel/pkgconfig/mha.pc"; do
  [[ -f $prefix/$f && ! -L $prefix/$f ]] || fail "$prefix/$f missing"
done
# the license: the text of the checkout's LICENSE in <docdir> (GNUInstallDirs'
# CMAKE_INSTALL_DOCDIR, share/doc/mha), named by mha.pc and the CMake package
license=$prefix/$docdir_rel/LICENSE
[[ -f $license ]] || fail "$license missing"
cmp -s "$license" "$source/LICENSE" || fail "$license differs from $source/LICENSE"
grep -q '^License: MIT$' "$libdir/pkgconfig/mha.pc" || fail "mha.pc has no 'License: MIT'"
echo "license: ${license#"$prefix"/} ($(head -n 1 "$license"))"
[[ $(readlink "$libdir/libmha.so.$abi") == "libmha.so.$version" ]] || fail "libmha.so.$abi is not a link to libmha.so.$version"
[[ $(readlink "$libdir/libmha.so") == "libmha.so.$abi" ]] || fail "libmha.so is not a link to libmha.so.$abi"
soname=$(LC_ALL=C readelf -d "$libdir/libmha.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[[ $soname == "libmha.so.$abi" ]] || fail "SONAME is '$soname', not libmha.so.$abi"
echo "SONAME $soname; $(ls "$libdir" | tr '\n' ' ')"

# checks that a program runs, and that libmha.so comes from the prefix (shared)
# or is not needed at all (static)
run_consumer() { # <program> shared|static
  local exe=$1 kind=$2 needed loaded
  needed=$(LC_ALL=C readelf -d "$exe" | grep -c "(NEEDED).*\[libmha\.so\.${abi/./\\.}\]" || true)
  if [[ $kind == shared ]]; then
    ((needed == 1)) || fail "$exe does not need libmha.so.$abi"
    loaded=$(ldd "$exe" | sed -n "s/^[[:space:]]*libmha\.so\.${abi/./\\.} => \([^ ]*\) .*/\1/p")
    [[ -n $loaded && $(realpath "$loaded") == $(realpath "$libdir/libmha.so.$version") ]] ||
      { ldd "$exe"; fail "$exe does not load $libdir/libmha.so.$abi"; }
  else
    ((needed == 0)) || fail "$exe needs libmha.so, but links libmha.a"
  fi
  echo "-- ${exe#"$work"/} ($kind)"
  "$exe" || fail "$exe"
}

step "find_package(mha) (CMAKE_PREFIX_PATH=$prefix)"
"$cmake" -S "$source/tests/install/consumer" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" -DMHA_EXPECTED_PREFIX="$prefix" \
  -DMHA_EXPECTED_VERSION="$version" -DMHA_EXPECTED_LICENSE_FILE="$license" >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "consumer configure"; }
grep -- "-- mha " "$work/cmake.log" || fail "consumer configure did not report mha"
"$cmake" --build "$work/cmake" -j 2 >"$work/cmake-build.log" 2>&1 ||
  { cat "$work/cmake-build.log"; fail "consumer build (find_package)"; }
run_consumer "$work/cmake/consumer_shared" shared
run_consumer "$work/cmake/consumer_static" static

step "pkg-config mha (PKG_CONFIG_PATH=$libdir/pkgconfig)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
[[ $("$pkgconfig" --modversion mha) == "$version" ]] || fail "pkg-config --modversion mha"
cflags=$("$pkgconfig" --cflags mha)
libs=$("$pkgconfig" --libs mha)
static_libs=$("$pkgconfig" --libs --static mha)
pc_libdir=$("$pkgconfig" --variable=libdir mha)
[[ $(realpath "$pc_libdir") == $(realpath "$libdir") ]] || fail "mha.pc's libdir $pc_libdir is not $libdir"
pc_license=$("$pkgconfig" --variable=licensefile mha)
[[ -f $pc_license && $(realpath "$pc_license") == $(realpath "$license") ]] ||
  fail "mha.pc's licensefile '$pc_license' is not $license"
echo "cflags: $cflags"
echo "libs: $libs"
echo "libs --static: $static_libs"
mkdir -p "$work/pc"
# shellcheck disable=SC2086  # the flags are words
"$cc" -O2 -o "$work/pc/consumer_shared" "$source/tests/install/consumer/consumer.c" $cflags $libs \
  -Wl,-rpath,"$pc_libdir" -lm || fail "consumer build (pkg-config, shared)"
run_consumer "$work/pc/consumer_shared" shared
# the same with libmha.a in place of -lmha (-l:libmha.a, GNU ld), and Libs.private
static_libs_a=$(sed -E 's/(^| )-lmha( |$)/\1-l:libmha.a\2/' <<<"$static_libs")
[[ $static_libs_a == *-l:libmha.a* ]] || fail "no -lmha in '$static_libs'"
# shellcheck disable=SC2086
"$cc" -O2 -o "$work/pc/consumer_static" "$source/tests/install/consumer/consumer.c" $cflags \
  $static_libs_a || fail "consumer build (pkg-config, static)"
run_consumer "$work/pc/consumer_static" static

if [[ $mpi == 1 ]]; then
  step "libmha_mpi: find_package(mha COMPONENTS mpi)"
  for f in include/mha_mpi.h "$libdir_rel/libmha_mpi.a" "$libdir_rel/cmake/mha/mhaMpiTargets.cmake"; do
    [[ -f $prefix/$f ]] || fail "$prefix/$f missing"
  done
  "$cmake" -S "$source/tests/install/consumer-mpi" -B "$work/cmake-mpi" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" -DMHA_EXPECTED_VERSION="$version" \
    >"$work/cmake-mpi.log" 2>&1 || { cat "$work/cmake-mpi.log"; fail "consumer-mpi configure"; }
  grep -- "-- mha .* with mpi" "$work/cmake-mpi.log" || fail "consumer-mpi configure did not report mha with mpi"
  "$cmake" --build "$work/cmake-mpi" >"$work/cmake-mpi-build.log" 2>&1 ||
    { cat "$work/cmake-mpi-build.log"; fail "consumer-mpi build"; }
  "$work/cmake-mpi/consumer_mpi" || fail "consumer_mpi"
fi

rm -rf "$work"
echo "install-test: OK"
