/* y[0..n) = x[0..n) widened exactly from f16 or bf16 to fp32: the reference
 * conversions of kv-convert.h, one value at a time.
 * Compiled with -fno-tree-vectorize: it stays scalar code. */
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-convert.h"
#include "kv-gemm/kv-gemm.h"

void mha_f16_widen__scalar(size_t n, const uint16_t* x, float* y) {
  for (size_t i = 0; i < n; i++) y[i] = mha_f16_to_f32(x[i]);
}

void mha_bf16_widen__scalar(size_t n, const uint16_t* x, float* y) {
  for (size_t i = 0; i < n; i++) y[i] = mha_bf16_to_f32(x[i]);
}
