/* y[0..n) = x[0..n) · scale, int8 to fp32 (an int8 cache row, MHA_DTYPE_INT8):
 * each value converted exactly and multiplied once, the reference rounding.
 * Compiled with -fno-tree-vectorize: it stays scalar code. */
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-gemm.h"

void mha_i8_dequant__scalar(size_t n, const int8_t* x, float scale, float* y) {
  for (size_t i = 0; i < n; i++) y[i] = (float)x[i] * scale;
}
