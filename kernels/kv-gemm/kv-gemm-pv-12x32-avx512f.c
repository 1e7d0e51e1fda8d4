/* The P·V kernels of AVX-512F (kv-gemm-pv-x86.h's driver): tiles of
 * up to 4×32 by the 12×32 GEMM micro-kernel's own core
 * (f32-gemm/f32-gemm-12x32-avx512f.h) and wide decode tiles of 1×128 and
 * 2×128 (rows in pairs; 64-column halves for a narrower tail: whole rows in
 * address order), row p read from brows[p] or b + p·ldb, and 16-bit values widened exactly as they are loaded: bitwise
 * mha_f32_gemm_ukernel_12x32__avx512f on the widened rows packed together.
 * Used for decode (few rows); prefill widens V into the fp32 tile the GEMM
 * reads. Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "f32-gemm/f32-gemm-12x32-avx512f.h"
#include "kv-gemm/kv-gemm.h"

typedef __m512 mha_pv_vec;
enum { MHA_PV_LANES = 16, MHA_PV_NR = 32, MHA_PV_PRELOAD = 1, MHA_PV_GROUP = 2 };
enum { MHA_PV_NV1 = 8, MHA_PV_NV2 = 8, MHA_PV_NV3 = 4, MHA_PV_NV4 = 4 };

static inline __attribute__((always_inline)) mha_pv_vec mha_pv_zero(void) { return _mm512_setzero_ps(); }

static inline __attribute__((always_inline)) mha_pv_vec mha_pv_load(const int BT, const void* p) {
  return mha_avx512f_load16(BT, p);
}

static inline __attribute__((always_inline)) mha_pv_vec mha_pv_fma(float a, mha_pv_vec b, mha_pv_vec acc) {
  return _mm512_fmadd_ps(_mm512_set1_ps(a), b, acc);
}

static inline __attribute__((always_inline)) void mha_pv_add_store(float* c, mha_pv_vec acc) {
  _mm512_storeu_ps(c, _mm512_add_ps(acc, _mm512_loadu_ps(c)));
}

static inline __attribute__((always_inline)) void mha_pv_rows(const size_t M, const int BT, const int PAGED,
                                                             size_t n, size_t k, const float* a, size_t lda,
                                                             const void* b, size_t ldb, const void* brows,
                                                             size_t j0, float* c, size_t ldc) {
  mha_gemm_rows_avx512f(M, 0, BT, PAGED, n, k, a, lda, PAGED ? NULL : mha_kv_at(BT, b, j0), ldb, brows, j0, c, ldc, 1);
}

#include "kv-gemm/kv-gemm-pv-x86.h"

void mha_f32_gemm_pv_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc) {
  mha_gemm_pv(MHA_KV_F32, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_f16_gemm_pv_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv(MHA_KV_F16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_bf16_gemm_pv_ukernel_12x32__avx512f(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv(MHA_KV_BF16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}
