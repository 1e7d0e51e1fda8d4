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

mha_status mha_split_heads_f32(int64_t B, int64_t T, int64_t H, int64_t D, const float* x,
                               float* out) {
  mha_status st = mha_heads_check("mha_split_heads_f32", B, T, H, D, x, out);
  if (st != MHA_STATUS_SUCCESS) return st;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t t = 0; t < T; t++)
        memcpy(out + ((b * H + h) * T + t) * D, x + ((b * T + t) * H + h) * D, (size_t)D * sizeof(float));
  return MHA_STATUS_SUCCESS;
}

mha_status mha_combine_heads_f32(int64_t B, int64_t T, int64_t H, int64_t D, const float* x,
                                 float* out) {
  mha_status st = mha_heads_check("mha_combine_heads_f32", B, T, H, D, x, out);
  if (st != MHA_STATUS_SUCCESS) return st;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t t = 0; t < T; t++)
        memcpy(out + ((b * T + t) * H + h) * D, x + ((b * H + h) * T + t) * D, (size_t)D * sizeof(float));
  return MHA_STATUS_SUCCESS;
}
