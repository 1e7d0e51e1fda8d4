/* Score modifiers of one row: AArch64 Advanced SIMD, SLEEF's
 * Sleef_tanhf4_u35advsimd for the soft-cap; the 1-3 floats of the tail go
 * through the scalar formula. Contract: config/kernels.h. */
#include <arm_neon.h>
#include <math.h>
#include <sleef.h>
#include <stddef.h>

#include "f32-scoremod/f32-scoremod.h"

void mha_f32_scoremod__neon(size_t n, float* x, float scale, float cap, float slope, float d0) {
  const float inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
  const float32x4_t vscale = vdupq_n_f32(scale), vcap = vdupq_n_f32(cap);
  const float32x4_t vinv = vdupq_n_f32(inv_cap), vslope = vdupq_n_f32(slope);
  static const float lanes[4] = {0.0f, 1.0f, 2.0f, 3.0f};
  float32x4_t vd = vaddq_f32(vdupq_n_f32(d0), vld1q_f32(lanes));
  const float32x4_t four = vdupq_n_f32(4.0f);
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    float32x4_t s = vmulq_f32(vld1q_f32(x + j), vscale);
    if (cap > 0.0f) s = vmulq_f32(vcap, Sleef_tanhf4_u35advsimd(vmulq_f32(s, vinv)));
    if (slope != 0.0f) s = vfmaq_f32(s, vslope, vd);
    vst1q_f32(x + j, s);
    vd = vaddq_f32(vd, four);
  }
  for (; j < n; j++) {
    float s = x[j] * scale;
    if (cap > 0.0f) s = cap * tanhf(s * inv_cap);
    if (slope != 0.0f) s = fmaf(slope, d0 + (float)j, s);
    x[j] = s;
  }
}
