/* y[0..n) = x[0..n) rounded to f16 or bf16 (to nearest, ties to even): the
 * reference conversions of kv-convert.h, one value at a time. Integer
 * operations only, so no floating-point mode (FTZ/DAZ, FPCR) changes a bit.
 * Compiled with -fno-tree-vectorize: it stays scalar code. */
#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-convert.h"
#include "kv-gemm/kv-gemm.h"

void mha_f16_narrow__scalar(size_t n, const float* x, uint16_t* y) {
  for (size_t i = 0; i < n; i++) y[i] = mha_f32_to_f16(x[i]);
}

void mha_bf16_narrow__scalar(size_t n, const float* x, uint16_t* y) {
  for (size_t i = 0; i < n; i++) y[i] = mha_f32_to_bf16(x[i]);
}
