/* Online softmax step over one row of a score tile, in base 2, and vector
 * helpers: AArch64 Advanced SIMD with SLEEF's Sleef_exp2f4_u10advsimd.
 * Contract: config/kernels.h. */
#include <arm_neon.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>

#include "config/neon-parts.h"
#include "f32-softmax/f32-softmax.h"

/* all-ones in lanes 0..r-1 */
static inline uint32x4_t mha_sm_lanes_below(size_t r) {
  static const uint32_t lanes[4] = {0, 1, 2, 3};
  return vcltq_u32(vld1q_u32(lanes), vdupq_n_u32((uint32_t)r));
}

/* s[from, n) ← 0: full vectors, then the 1-3 floats left. */
static void mha_zero_tail_neon(float* s, size_t from, size_t n) {
  const float32x4_t zero = vdupq_n_f32(0.0f);
  size_t j = from;
  for (; j + 4 <= n; j += 4) vst1q_f32(s + j, zero);
  if (j < n) mha_neon_store_part(s + j, zero, n - j);
}

/* Scale and mask one vector of scores: x·scale, then + add·log2(e), where an
 * additive -inf hides its key even from a NaN score. */
static inline __attribute__((always_inline)) float32x4_t mha_scale_add4(float32x4_t x,
                                                                       float32x4_t vscale,
                                                                       const float32x4_t* a) {
  x = vmulq_f32(x, vscale);
  if (a != NULL) {
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    x = vbslq_f32(vceqq_f32(*a, ninf), ninf, vfmaq_f32(x, *a, vdupq_n_f32(MHA_LOG2E_F)));
  }
  return x;
}

/* Full 4-key vectors use plain loads and stores; the tail of n_valid (and
 * of n) is loaded and stored lane by lane, once per row. */
float mha_f32_softmax_online_row__neon(size_t n, size_t n_valid, float* s, float scale,
                                       const float* add, float* m, float* l) {
  const float32x4_t vscale = vdupq_n_f32(scale);
  const float32x4_t ninf = vdupq_n_f32(-INFINITY);
  const int apply = scale != 1.0f || add != NULL; /* else s is read, never rewritten, in the first pass */
  float32x4_t vmax = ninf;
  uint32x4_t nan_acc = vdupq_n_u32(0); /* NaN lanes collect here (x != x) */
  size_t j = 0;
  for (; j + 4 <= n_valid; j += 4) {
    float32x4_t a;
    if (add != NULL) a = vld1q_f32(add + j);
    float32x4_t x = vld1q_f32(s + j);
    if (apply) {
      x = mha_scale_add4(x, vscale, add != NULL ? &a : NULL);
      vst1q_f32(s + j, x);
    }
    nan_acc = vorrq_u32(nan_acc, vmvnq_u32(vceqq_f32(x, x)));
    vmax = vmaxnmq_f32(vmax, x); /* maxNum: a NaN lane keeps vmax (never NaN itself) */
  }
  if (j < n_valid) {
    const size_t r = n_valid - j;
    float32x4_t a;
    if (add != NULL) a = mha_neon_load_part(add + j, r);
    float32x4_t x = mha_scale_add4(mha_neon_load_part(s + j, r), vscale, add != NULL ? &a : NULL);
    mha_neon_store_part(s + j, x, r);
    x = vbslq_f32(mha_sm_lanes_below(r), x, ninf); /* lanes past the tail: -inf */
    nan_acc = vorrq_u32(nan_acc, vmvnq_u32(vceqq_f32(x, x)));
    vmax = vmaxnmq_f32(vmax, x);
  }
  const int nan_seen = vmaxvq_u32(nan_acc) != 0;
  const float mx = vmaxnmvq_f32(vmax);
  const float m_old = *m;
  const float m_new = mx > m_old ? mx : m_old;
  if (m_new == -INFINITY && !nan_seen) {
    /* nothing visible yet: all probabilities 0, the accumulator is untouched */
    mha_zero_tail_neon(s, 0, n);
    return 1.0f;
  }
  const float32x4_t vm = vdupq_n_f32(m_new);
  const float32x4_t zero = vdupq_n_f32(0.0f);
  float32x4_t vsum = zero;
  for (j = 0; j + 4 <= n_valid; j += 4) {
    const float32x4_t p = Sleef_exp2f4_u10advsimd(vsubq_f32(vld1q_f32(s + j), vm));
    vst1q_f32(s + j, p);
    vsum = vaddq_f32(vsum, p);
  }
  if (j < n_valid) {
    const size_t r = n_valid - j;
    const float32x4_t p = Sleef_exp2f4_u10advsimd(vsubq_f32(mha_neon_load_part(s + j, r), vm));
    mha_neon_store_part(s + j, p, r);
    vsum = vaddq_f32(vsum, vbslq_f32(mha_sm_lanes_below(r), p, zero));
  }
  mha_zero_tail_neon(s, n_valid, n);
  /* exp2(-inf) = 0 on the first visible block; a NaN score makes p, l and so
   * the output NaN; no scalar exp2 while the running max stays */
  return mha_row_finish(m_old, m_new, vaddvq_f32(vsum), m, l);
}

/* The step for whole rows of a tile (config/kernels.h): the row step on
 * each row, which is what the contract asks bit for bit; NEON's keeps
 * no tile form of its own. */
void mha_f32_softmax_online_tile__neon(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                        float* alpha) {
  mha_softmax_tile_by_rows(mha_f32_softmax_online_row__neon, rows, n, s, lds, m, l, alpha);
}

void mha_f32_vscale__neon(size_t n, float* x, float alpha) {
  const float32x4_t va = vdupq_n_f32(alpha);
  size_t j = 0;
  for (; j + 4 <= n; j += 4) vst1q_f32(x + j, vmulq_f32(vld1q_f32(x + j), va));
  if (j < n) mha_neon_store_part(x + j, vmulq_f32(mha_neon_load_part(x + j, n - j), va), n - j);
}

void mha_f32_vexp2_scale__neon(size_t n, float* x, float c, float alpha) {
  const float32x4_t va = vdupq_n_f32(alpha), vc = vdupq_n_f32(c);
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const float32x4_t e = Sleef_exp2f4_u10advsimd(vsubq_f32(vld1q_f32(x + j), vc));
    vst1q_f32(x + j, vmulq_f32(e, va));
  }
  if (j < n) {
    const size_t r = n - j;
    const float32x4_t e = Sleef_exp2f4_u10advsimd(vsubq_f32(mha_neon_load_part(x + j, r), vc));
    mha_neon_store_part(x + j, vmulq_f32(e, va), r);
  }
}
