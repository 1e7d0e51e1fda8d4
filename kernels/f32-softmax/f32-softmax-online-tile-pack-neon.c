/* The tile step of the online softmax fused with P's packing for the BF16
 * form on neon_bf16 (contract: config/kernels.h, bf16_softmax_tile_pack).
 * Two rows at a time, as A's layout pairs them (bf16-gemm.h: pair p holds,
 * per quad q of keys, row 2p's four values then row 2p+1's): per row the
 * row step's first pass (the max, whether a NaN was seen), then per quad of
 * keys both rows' 2^(s − m') by SLEEF's Sleef_exp2f4_u10advsimd, each added
 * to its row's sum, rounded to bf16 (mha_neon_f32_to_bf16x4) and stored as
 * the pair's quad. Against the tile step and bf16_pack_a_f32 one after the
 * other, s − m' and P are never stored in fp32 and read back. Per row the
 * row step's operations in its order (mha_f32_softmax_online_row__neon with
 * n_valid = n, scale 1, no mask) and the packing's rounding: the same bits.
 * Rows of a multiple of 4 keys (every block of the BF16 form but a call's
 * last); other rows take the two steps. Plain NEON: the rounding is
 * integer arithmetic, as the packing's. */
#include <arm_neon.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>
#include <stdint.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/neon-parts.h"
#include "f32-softmax/f32-softmax.h"

/* The row step's first pass over n keys (n a multiple of 4): the new max of
 * the row, and whether it stays without a visible key (then P is 0 and m, l
 * are left as they are, as the row step leaves them). */
static inline __attribute__((always_inline)) float mha_pair_row_max(const float* s, size_t n, float m_old,
                                                                    int* dead) {
  float32x4_t vmax = vdupq_n_f32(-INFINITY);
  uint32x4_t nan_acc = vdupq_n_u32(0); /* NaN lanes collect here (x != x) */
  for (size_t j = 0; j < n; j += 4) {
    const float32x4_t x = vld1q_f32(s + j);
    nan_acc = vorrq_u32(nan_acc, vmvnq_u32(vceqq_f32(x, x)));
    vmax = vmaxnmq_f32(vmax, x); /* maxNum: a NaN lane keeps vmax */
  }
  const int nan_seen = vmaxvq_u32(nan_acc) != 0;
  const float mx = vmaxnmvq_f32(vmax);
  const float m_new = mx > m_old ? mx : m_old;
  *dead = m_new == -INFINITY && !nan_seen;
  return m_new;
}

void mha_f32_softmax_online_tile_pack__neon(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                            float* alpha, uint16_t* pb) {
  if (n % 4 != 0) {
    /* the two steps (a tail on every row: not the BF16 form's blocks) */
    mha_f32_softmax_online_tile__neon(rows, n, s, lds, m, l, alpha);
    for (size_t r = 0; r < rows; r += 2) {
      const float* pair[2] = {s + r * lds, s + (r + 1) * lds};
      mha_bf16_pack_rows_f32__neon(r + 1 < rows ? 2 : 1, n, pair, pb + r * 4 * ((n + 3) / 4));
    }
    return;
  }
  const size_t ldp = 2 * n; /* a pair's values: 8 per quad of keys */
  const float32x4_t zero = vdupq_n_f32(0.0f);
  for (size_t r = 0; r < rows; r += 2) {
    const int two = r + 1 < rows;
    const float* s0 = s + r * lds;
    const float* s1 = two ? s + (r + 1) * lds : s0;
    uint16_t* out = pb + (r / 2) * ldp;
    int dead0, dead1 = 1;
    const float m_old0 = m[r], m_old1 = two ? m[r + 1] : 0.0f;
    const float m_new0 = mha_pair_row_max(s0, n, m_old0, &dead0);
    const float m_new1 = two ? mha_pair_row_max(s1, n, m_old1, &dead1) : 0.0f;
    const float32x4_t vm0 = vdupq_n_f32(m_new0), vm1 = vdupq_n_f32(m_new1);
    float32x4_t vsum0 = zero, vsum1 = zero;
    for (size_t j = 0; j < n; j += 4, out += 8) {
      uint16x4_t h0 = vdup_n_u16(0), h1 = vdup_n_u16(0);
      if (!dead0) {
        const float32x4_t p = Sleef_exp2f4_u10advsimd(vsubq_f32(vld1q_f32(s0 + j), vm0));
        vsum0 = vaddq_f32(vsum0, p);
        h0 = mha_neon_f32_to_bf16x4(p);
      }
      if (!dead1) {
        const float32x4_t p = Sleef_exp2f4_u10advsimd(vsubq_f32(vld1q_f32(s1 + j), vm1));
        vsum1 = vaddq_f32(vsum1, p);
        h1 = mha_neon_f32_to_bf16x4(p);
      }
      vst1q_u16(out, vcombine_u16(h0, h1));
    }
    /* a dead row: alpha 1, m and l untouched (the row step's early return) */
    alpha[r] = dead0 ? 1.0f : mha_row_finish(m_old0, m_new0, vaddvq_f32(vsum0), &m[r], &l[r]);
    if (two) alpha[r + 1] = dead1 ? 1.0f : mha_row_finish(m_old1, m_new1, vaddvq_f32(vsum1), &m[r + 1], &l[r + 1]);
  }
}
