/* y[0..n) = x[0..n) widened exactly from f16 or bf16 to fp32: 8 values per
 * step (F16C vcvtph2ps; bf16 zero-extended and shifted left by 16), the tail
 * (1-7 values) loaded as 32-bit pairs and stored masked, so nothing past
 * x[n-1] is read or past y[n-1] written. Compiled with -mavx2 -mfma -mf16c. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"
#include "kv-gemm/kv-load-avx2.h"

static inline __attribute__((always_inline)) void mha_widen_avx2(const int BT, size_t n,
                                                                 const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, mha_avx2_load8(BT, x + i));
  if (i < n) {
    const size_t r = n - i;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), lanes);
    _mm256_maskstore_ps(y + i, mask, mha_avx2_widen8(BT, mha_avx2_load_u16_part(x + i, r)));
  }
}

void mha_f16_widen__avx2(size_t n, const uint16_t* x, float* y) {
  mha_widen_avx2(MHA_KV_F16, n, x, y);
}

void mha_bf16_widen__avx2(size_t n, const uint16_t* x, float* y) {
  mha_widen_avx2(MHA_KV_BF16, n, x, y);
}
