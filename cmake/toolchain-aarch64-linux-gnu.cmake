# Cross build for AArch64 Linux on an x86-64 Debian machine (scripts/cross-aarch64.sh).
#
#   compiler  Debian's gcc-aarch64-linux-gnu, with libc6-dev-arm64-cross (its
#             headers and libraries live in /usr/aarch64-linux-gnu)
#   SLEEF     Debian's libsleef3:arm64 + libsleef-dev:arm64 unpacked (dpkg -x) into
#             a build-local sysroot, MHA_AARCH64_SYSROOT (default <build>/sysroot):
#             pkg-config looks there only, never at the machine's x86-64 SLEEF
#   tests     CMAKE_CROSSCOMPILING_EMULATOR runs every test through
#             qemu-aarch64 -L /usr/aarch64-linux-gnu, so plain ctest works
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
#
# Only C: the benchmarks (C++, Google Benchmark) are built natively.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(MHA_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${MHA_CROSS_TRIPLE}-gcc)

# The build-local arm64 sysroot holding SLEEF. The toolchain file is read again
# inside try_compile projects, where CMAKE_BINARY_DIR is elsewhere: the path is
# a cache entry, handed on to them.
if(NOT MHA_AARCH64_SYSROOT)
  set(MHA_AARCH64_SYSROOT "${CMAKE_BINARY_DIR}/sysroot" CACHE PATH
      "arm64 sysroot with SLEEF (dpkg -x of libsleef3:arm64 and libsleef-dev:arm64)")
endif()
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES MHA_AARCH64_SYSROOT)

# Libraries, headers and packages from the cross roots only; programs
# (pkg-config, python) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${MHA_CROSS_TRIPLE} ${MHA_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config: the sysroot's .pc files only (PKG_CONFIG_LIBDIR replaces the
# default search path, so the x86-64 sleef.pc is never seen), with its paths
# prefixed by the sysroot.
set(ENV{PKG_CONFIG_LIBDIR} "${MHA_AARCH64_SYSROOT}/usr/lib/${MHA_CROSS_TRIPLE}/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${MHA_AARCH64_SYSROOT}")
unset(ENV{PKG_CONFIG_PATH})

# Debian puts sleef.h in the multiarch directory /usr/include/aarch64-linux-gnu,
# which a native gcc searches by itself and sleef.pc does not name.
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES "${MHA_AARCH64_SYSROOT}/usr/include/${MHA_CROSS_TRIPLE}")

# Tests run under user-mode qemu; -L lets it find the arm64 dynamic loader and
# libc. libsleef.so.3 is found through the executables' build RPATH (an
# absolute path into the sysroot, which qemu reads from the host file system).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${MHA_CROSS_TRIPLE})
