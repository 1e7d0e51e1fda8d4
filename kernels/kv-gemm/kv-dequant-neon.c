/* y[0..n) = x[0..n) · scale, int8 to fp32: 8 values per step (SXTL twice,
 * SCVTF exact, one FMUL: the scalar kernel's rounding), the tail one value at
 * a time, so nothing past x[n-1] is read or past y[n-1] written. */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"

void mha_i8_dequant__neon(size_t n, const int8_t* x, float scale, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int16x8_t h = vmovl_s8(vld1_s8(x + i));
    vst1q_f32(y + i, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))), scale));
    vst1q_f32(y + i + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(h))), scale));
  }
  for (; i < n; i++) y[i] = (float)x[i] * scale;
}
