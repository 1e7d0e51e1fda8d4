# The library's sources, and the compile flags of each ISA's files.

set(MHA_SOURCES
  kernels/config/isa-select.c
  kernels/config/table-scalar.c
  kernels/f32-gemm/f32-gemm-4x8-scalar.c
  kernels/f32-gemm/f32-gemm-nt-1x1-scalar.c
  kernels/f32-scoremod/f32-scoremod-scalar.c
  kernels/f32-softmax/f32-softmax-online-scalar.c
  kernels/kv-gemm/kv-gemm-nt-1x1-scalar.c
  kernels/kv-gemm/kv-gemm-pv-4x8-scalar.c
  kernels/kv-gemm/kv-narrow-scalar.c
  kernels/kv-gemm/kv-dequant-scalar.c
  kernels/kv-gemm/kv-widen-scalar.c
  kernels/mha/abi.c
  kernels/mha/attention.c
  kernels/mha/attention-check.c
  kernels/mha/attention-decode.c
  kernels/mha/attention-item.c
  kernels/mha/attention-bf16.c
  kernels/mha/attention-plan.c
  kernels/mha/attention-rows.c
  kernels/mha/attention-run.c
  kernels/mha/attention-weights.c
  kernels/mha/checks.c
  kernels/mha/error.c
  kernels/mha/gemm.c
  kernels/mha/gemm-bf16.c
  kernels/mha/heads.c
  kernels/mha/kv-cache.c
  kernels/mha/kv-write.c
  kernels/mha/layer-bf16.c
  kernels/mha/layer-create.c
  kernels/mha/layer-forward.c
  kernels/mha/merge.c
  kernels/mha/parallel.c
  kernels/mha/rotary.c
  kernels/mha/varlen.c
  kernels/mha/varlen-kv.c)

# The scalar kernels are the reference: keep the compiler from vectorizing them.
set_source_files_properties(
  kernels/f32-gemm/f32-gemm-4x8-scalar.c
  kernels/f32-gemm/f32-gemm-nt-1x1-scalar.c
  kernels/f32-scoremod/f32-scoremod-scalar.c
  kernels/f32-softmax/f32-softmax-online-scalar.c
  kernels/kv-gemm/kv-gemm-nt-1x1-scalar.c
  kernels/kv-gemm/kv-gemm-pv-4x8-scalar.c
  kernels/kv-gemm/kv-narrow-scalar.c
  kernels/kv-gemm/kv-dequant-scalar.c
  kernels/kv-gemm/kv-widen-scalar.c
  PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")

set(MHA_ISA_DEFINES "")
set(MHA_SIMD_LIBS "")

if(MHA_ARCH STREQUAL "x86")
  # SLEEF's vector exp for the SIMD softmax (Debian libsleef-dev: pkg-config only).
  pkg_check_modules(SLEEF REQUIRED IMPORTED_TARGET sleef)
  set(MHA_AVX2_SOURCES
    kernels/config/table-avx2.c
    kernels/f32-gemm/f32-gemm-6x16-avx2.c
    kernels/f32-gemm/f32-gemm-nt-4x1-avx2.c
    kernels/f32-scoremod/f32-scoremod-avx2.c
    kernels/f32-softmax/f32-softmax-online-avx2.c
    kernels/f32-softmax/f32-softmax-online-tile-t-avx2.c
    kernels/kv-gemm/kv-gemm-nt-4x1-avx2.c
    kernels/kv-gemm/kv-gemm-pv-6x16-avx2.c
    kernels/kv-gemm/kv-narrow-avx2.c
    kernels/kv-gemm/kv-dequant-avx2.c
    kernels/kv-gemm/kv-widen-avx2.c)
  set(MHA_AVX512F_SOURCES
    kernels/config/table-avx512f.c
    kernels/f32-gemm/f32-gemm-12x32-avx512f.c
    kernels/f32-gemm/f32-gemm-nt-4x1-avx512f.c
    kernels/f32-scoremod/f32-scoremod-avx512f.c
    kernels/f32-softmax/f32-softmax-online-avx512f.c
    kernels/f32-softmax/f32-softmax-online-tile-t-avx512f.c
    kernels/kv-gemm/kv-gemm-nt-4x1-avx512f.c
    kernels/kv-gemm/kv-gemm-pv-12x32-avx512f.c
    kernels/kv-gemm/kv-narrow-avx512f.c
    kernels/kv-gemm/kv-dequant-avx512f.c
    kernels/kv-gemm/kv-widen-avx512f.c)
  # F16C (vcvtph2ps, vcvtps2ph) widens f16 K/V rows and rounds fp32 to f16; every AVX2 CPU
  # has it (isa-select.c checks it)
  set_source_files_properties(${MHA_AVX2_SOURCES} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  set_source_files_properties(${MHA_AVX512F_SOURCES} PROPERTIES COMPILE_OPTIONS "-mavx512f;-mfma")
  # AVX512-BF16 (vdpbf16ps) and AVX512BW (16-bit shuffles, masks): run where isa-select.c
  # finds both; the table itself is plain C over the AVX-512F one
  set(MHA_AVX512_BF16_SOURCES
    kernels/bf16-gemm/bf16-gemm-dp-12x32-avx512bf16.c
    kernels/bf16-gemm/bf16-pack-avx512bw.c
    kernels/f32-softmax/f32-softmax-online-tile-pack-avx512bf16.c)
  set_source_files_properties(${MHA_AVX512_BF16_SOURCES} PROPERTIES COMPILE_OPTIONS
    "-mavx512f;-mavx512bw;-mavx512vl;-mavx512bf16;-mfma")
  list(APPEND MHA_SOURCES ${MHA_AVX2_SOURCES} ${MHA_AVX512F_SOURCES} ${MHA_AVX512_BF16_SOURCES}
    kernels/config/table-avx512-bf16.c)
  list(APPEND MHA_ISA_DEFINES MHA_ENABLE_X86)
  list(APPEND MHA_SIMD_LIBS PkgConfig::SLEEF)
  # AMX-BF16 (-DMHA_AMX=ON): the amx_bf16 set. The instructions are inline
  # assembly (kernels/bf16-gemm/amx-ops.h), so the file takes the AVX512-BF16
  # flags of its epilogue only. MHA_AMX_EMULATE (tests only) runs them on the
  # C model of tests/amx/ instead.
  if(MHA_AMX)
    set(MHA_AMX_SOURCES kernels/bf16-gemm/bf16-gemm-amx-32x32-amxbf16.c)
    set_source_files_properties(${MHA_AMX_SOURCES} PROPERTIES COMPILE_OPTIONS
      "-mavx512f;-mavx512bw;-mavx512vl;-mavx512bf16;-mfma")
    list(APPEND MHA_SOURCES ${MHA_AMX_SOURCES} kernels/config/table-amx-bf16.c)
    list(APPEND MHA_ISA_DEFINES MHA_ENABLE_AMX)
    if(MHA_AMX_EMULATE)
      list(APPEND MHA_SOURCES tests/amx/amx-emulate.c)
      list(APPEND MHA_ISA_DEFINES MHA_AMX_EMULATE)
      set(MHA_AMX_EMULATE_INCLUDE ${CMAKE_CURRENT_SOURCE_DIR}/tests/amx)
    endif()
  endif()
endif()

if(MHA_ARCH STREQUAL "arm64")
  # Advanced SIMD is part of the AArch64 base ISA: no extra flags. SLEEF's
  # Sleef_expf4_u10advsimd for the softmax (Debian libsleef-dev:arm64, by
  # pkg-config; the cross build points pkg-config at its own arm64 sysroot,
  # cmake/toolchain-aarch64-linux-gnu.cmake).
  pkg_check_modules(SLEEF REQUIRED IMPORTED_TARGET sleef)
  list(APPEND MHA_SOURCES
    kernels/config/table-neon.c
    kernels/f32-gemm/f32-gemm-8x12-neon.c
    kernels/f32-gemm/f32-gemm-nt-4x4-neon.c
    kernels/f32-scoremod/f32-scoremod-neon.c
    kernels/f32-softmax/f32-softmax-online-neon.c
    kernels/f32-softmax/f32-softmax-online-tile-pack-neon.c
    kernels/kv-gemm/kv-gemm-nt-4x4-neon.c
    kernels/kv-gemm/kv-gemm-pv-8x12-neon.c
    kernels/kv-gemm/kv-narrow-neon.c
    kernels/kv-gemm/kv-dequant-neon.c
    kernels/kv-gemm/kv-widen-neon.c
    kernels/config/table-neon-bf16.c
    kernels/bf16-gemm/bf16-pack-neon.c
    kernels/bf16-gemm/bf16-gemm-mmla-8x8-neonbf16.c)
  # BFMMLA (FEAT_BF16, Armv8.6; optional from Armv8.2): this file only, run
  # where isa-select.c finds HWCAP2_BF16
  set_source_files_properties(kernels/bf16-gemm/bf16-gemm-mmla-8x8-neonbf16.c PROPERTIES
    COMPILE_OPTIONS "-march=armv8.2-a+bf16")
  list(APPEND MHA_ISA_DEFINES MHA_ENABLE_NEON)
  list(APPEND MHA_SIMD_LIBS PkgConfig::SLEEF)
endif()
