/* The textbook steps as helpers: split heads and combine heads (copies). */
#include <string.h>

#include "mha/internal.h"

static mha_status mha_heads_check(const char* fn, int64_t B, int64_t T, int64_t H, int64_t D,
                                  const float* x, const float* out) {
  if (x == NULL || out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, x == NULL ? "x" : "out");
  }
  if (B < 1 || T < 1 || H < 1 || D < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: B, T, H and D must be >= 1", fn);
  }
  int64_t n;
  if (!mha_mul_i64(B, T, &n) || !mha_mul_i64(n, H, &n) || !mha_mul_i64(n, D, &n) ||
      !mha_mul_i64(n, (int64_t)sizeof(float), &n) || (uint64_t)n > (uint64_t)SIZE_MAX) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: B·T·H·D overflows", fn);
  }
  return MHA_STATUS_SUCCESS;
}

/* out[b][j][i][:] = x[b][i][j][:] for x [B, n1, n2, D]: the middle two
 * dimensions swapped. Split heads is (n1, n2) = (T, H), combine (H, T). */
static void mha_swap_middle(int64_t B, int64_t n1, int64_t n2, int64_t D, const float* x, float* out) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < n2; j++)
      for (int64_t i = 0; i < n1; i++)
        memcpy(out + ((b * n2 + j) * n1 + i) * D, x + ((b * n1 + i) * n2 + j) * D, (size_t)D * sizeof(float));
}

/* Checks, then copies x [B, n1, n2, D] to out [B, n2, n1, D]. */
static mha_status mha_heads_copy(const char* fn, int64_t B, int64_t n1, int64_t n2, int64_t D, const float* x,
                                 float* out) {
  mha_status st = mha_heads_check(fn, B, n1, n2, D, x, out); /* symmetric in n1, n2 */
  if (st == MHA_STATUS_SUCCESS) mha_swap_middle(B, n1, n2, D, x, out);
  return st;
}

mha_status mha_split_heads_f32(int64_t B, int64_t T, int64_t H, int64_t D, const float* x, float* out) {
  return mha_heads_copy("mha_split_heads_f32", B, T, H, D, x, out);
}

mha_status mha_combine_heads_f32(int64_t B, int64_t T, int64_t H, int64_t D, const float* x, float* out) {
  return mha_heads_copy("mha_combine_heads_f32", B, H, T, D, x, out);
}
