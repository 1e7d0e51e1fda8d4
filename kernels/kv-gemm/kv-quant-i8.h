/*
 * The int8 K/V format (MHA_DTYPE_INT8, include/mha.h "int8 caches"): one row
 * of n fp32 values quantized symmetrically with one fp32 scale, in portable
 * C11 (the writers' reference; every kernel set stores through it, so the
 * bytes are the same everywhere):
 *
 *   amax = max |x[i]|;  v[i] = x[i] · 127 / amax (in double);
 *   q[i] = v[i] rounded to nearest, ties to even (|v| <= 127, so q in [−127, 127]);
 *   scale = amax / 127 rounded to fp32;
 *
 * amax = 0: scale 0, q 0. A NaN or infinity in the row: scale NaN, q 0 (the
 * whole row reads NaN). Reading: (float)q · scale, one rounding
 * (kv-dequant-*.c). Error: |(float)q · scale − x| <= amax · (1/254 + 2^−22)
 * for a normal amax (half a step, plus the roundings of scale and of the
 * product); with a subnormal scale the step is the subnormal spacing.
 * The rounding to an integer is exact in any rounding mode; v itself is
 * computed in the caller's mode (the default, to nearest, gives the
 * documented bytes).
 */
#ifndef MHA_KERNELS_KV_QUANT_I8_H
#define MHA_KERNELS_KV_QUANT_I8_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* q[0..n) and the returned scale of row x[0..n). */
static inline float mha_i8_quantize_row(size_t n, const float* x, int8_t* q) {
  float amax = 0.0f;
  int finite = 1;
  for (size_t i = 0; i < n; i++) {
    const float a = fabsf(x[i]);
    if (!(a <= 3.40282347e38f)) finite = 0; /* NaN or infinity */
    else if (a > amax) amax = a;
  }
  if (!finite || amax == 0.0f) {
    for (size_t i = 0; i < n; i++) q[i] = 0;
    return finite ? 0.0f : NAN;
  }
  const double k = 127.0 / (double)amax;
  for (size_t i = 0; i < n; i++) {
    const double v = (double)x[i] * k;
    double t = floor(v);
    const double frac = v - t; /* exact */
    if (frac > 0.5 || (frac == 0.5 && fmod(t, 2.0) != 0.0)) t += 1.0;
    if (t > 127.0) t = 127.0;
    if (t < -127.0) t = -127.0;
    q[i] = (int8_t)t;
  }
  return (float)((double)amax / 127.0);
}

#endif
