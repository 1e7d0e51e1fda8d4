/* Score modifiers of one row: the portable reference (compiled with
 * -fno-tree-vectorize). Contract: config/kernels.h. */
#include <math.h>
#include <stddef.h>

#include "f32-scoremod/f32-scoremod.h"

void mha_f32_scoremod__scalar(size_t n, float* x, float scale, float cap, float slope, float d0) {
  const float inv_cap = cap > 0.0f ? 1.0f / cap : 0.0f;
  for (size_t j = 0; j < n; j++) {
    float s = x[j] * scale;
    if (cap > 0.0f) s = cap * tanhf(s * inv_cap);
    if (slope != 0.0f) s = fmaf(slope, d0 + (float)j, s);
    x[j] = s;
  }
}
