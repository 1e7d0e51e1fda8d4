/* y[0..n) = x[0..n) widened exactly from f16 or bf16 to fp32: 4 values per
 * step (FCVTL; bf16 USHLL #16), the tail (1-3 values) loaded and stored lane
 * by lane, so nothing past x[n-1] is read or past y[n-1] written. */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "config/neon-parts.h"
#include "kv-gemm/kv-gemm.h"
#include "kv-gemm/kv-load-neon.h"

static inline __attribute__((always_inline)) void mha_widen_neon(const int BT, size_t n,
                                                                 const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, mha_neon_load4(BT, x + i));
  if (i < n) mha_neon_store_part(y + i, mha_neon_load_part4(BT, x + i, n - i), n - i);
}

void mha_f16_widen__neon(size_t n, const uint16_t* x, float* y) {
  mha_widen_neon(MHA_KV_F16, n, x, y);
}

void mha_bf16_widen__neon(size_t n, const uint16_t* x, float* y) {
  mha_widen_neon(MHA_KV_BF16, n, x, y);
}
