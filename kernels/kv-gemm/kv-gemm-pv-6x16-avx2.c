/* The P·V kernels of AVX2 (kv-gemm-pv-x86.h's driver): tiles of up to 4×16
 * by the 6×16 GEMM micro-kernel's own core (f32-gemm/f32-gemm-6x16-avx2.h)
 * and wide decode tiles of 1×64, 2×48, 3×32, 4×24 (MR·NV <= 12 accumulators
 * of the 16 ymm; half as wide for a narrower tail), row p read from brows[p]
 * or b + p·ldb, 16-bit values widened exactly as they are loaded: bitwise mha_f32_gemm_ukernel_6x16__avx2 on the widened
 * rows packed together. Used for decode (few rows); prefill widens V into
 * the fp32 tile the GEMM reads. Compiled with -mavx2 -mfma -mf16c. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "f32-gemm/f32-gemm-6x16-avx2.h"
#include "kv-gemm/kv-gemm.h"

typedef __m256 mha_pv_vec;
/* one row at a time: 1×64 wide tiles (2 per row at D 128), the row's other
 * passes from L1; groups of 2 or 4 rows (2×48, 4×24 tiles) were 1.1–1.2×
 * slower from DRAM and in cache on Zen 4 */
enum { MHA_PV_LANES = 8, MHA_PV_NR = 16, MHA_PV_PRELOAD = 0, MHA_PV_GROUP = 1 };
enum { MHA_PV_NV1 = 8, MHA_PV_NV2 = 6, MHA_PV_NV3 = 4, MHA_PV_NV4 = 3 };

static inline __attribute__((always_inline)) mha_pv_vec mha_pv_zero(void) { return _mm256_setzero_ps(); }

static inline __attribute__((always_inline)) mha_pv_vec mha_pv_load(const int BT, const void* p) {
  return mha_avx2_load8(BT, p);
}

static inline __attribute__((always_inline)) mha_pv_vec mha_pv_fma(float a, mha_pv_vec b, mha_pv_vec acc) {
  return _mm256_fmadd_ps(_mm256_set1_ps(a), b, acc);
}

static inline __attribute__((always_inline)) void mha_pv_add_store(float* c, mha_pv_vec acc) {
  _mm256_storeu_ps(c, _mm256_add_ps(acc, _mm256_loadu_ps(c)));
}

static inline __attribute__((always_inline)) void mha_pv_rows(const size_t M, const int BT, const int PAGED,
                                                             size_t n, size_t k, const float* a, size_t lda,
                                                             const void* b, size_t ldb, const void* brows,
                                                             size_t j0, float* c, size_t ldc) {
  mha_gemm_rows_avx2(M, 0, BT, PAGED, n, k, a, lda, PAGED ? NULL : mha_kv_at(BT, b, j0), ldb, brows, j0, c, ldc, 1);
}

#include "kv-gemm/kv-gemm-pv-x86.h"

void mha_f32_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const float* b, size_t ldb, const float* const* brows, float* c, size_t ldc) {
  mha_gemm_pv(MHA_KV_F32, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_f16_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv(MHA_KV_F16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}

void mha_bf16_gemm_pv_ukernel_6x16__avx2(size_t m, size_t n, size_t k, const float* a, size_t lda,
    const uint16_t* b, size_t ldb, const uint16_t* const* brows, float* c, size_t ldc) {
  mha_gemm_pv(MHA_KV_BF16, m, n, k, a, lda, b, ldb, brows, c, ldc);
}
