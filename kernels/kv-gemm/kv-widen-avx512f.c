/* y[0..n) = x[0..n) widened exactly from f16 or bf16 to fp32: 16 values per
 * step (vcvtph2ps; bf16 zero-extended and shifted left by 16), the tail
 * (1-15 values) loaded as 32-bit pairs (no AVX512BW) and stored masked, so
 * nothing past x[n-1] is read or past y[n-1] written.
 * Compiled with -mavx512f -mfma. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"
#include "kv-gemm/kv-load-avx512f.h"

static inline __attribute__((always_inline)) void mha_widen_avx512f(const int BT, size_t n,
                                                                    const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, mha_avx512f_load16(BT, x + i));
  if (i < n) {
    const size_t r = n - i;
    _mm512_mask_storeu_ps(y + i, (__mmask16)((1u << r) - 1u),
                          mha_avx512f_widen16(BT, mha_avx512f_load_u16_part(x + i, r)));
  }
}

void mha_f16_widen__avx512f(size_t n, const uint16_t* x, float* y) {
  mha_widen_avx512f(MHA_KV_F16, n, x, y);
}

void mha_bf16_widen__avx512f(size_t n, const uint16_t* x, float* y) {
  mha_widen_avx512f(MHA_KV_BF16, n, x, y);
}
