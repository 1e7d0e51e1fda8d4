/*
 * Merging partial attention results of disjoint key ranges by their
 * log-sum-exp (mha_merge_f32): chunked prefill, a shared prefix attended once
 * for many requests, sequence-parallel attention.
 */
#include <math.h>
#include <string.h>

#include "mha/internal.h"

mha_status mha_merge_f32(int64_t parts, int64_t rows, int64_t Dv, const float* const* outs,
                         const float* const* lses, float* out, float* lse) {
  static const char fn[] = "mha_merge_f32";
  if (outs == NULL || lses == NULL || out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     outs == NULL ? "outs" : lses == NULL ? "lses" : "out");
  }
  const struct { const char* name; int64_t value; } sizes[] = {
      {"parts", parts}, {"rows", rows}, {"Dv", Dv}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: %s = %lld, must be >= 1", fn, sizes[i].name,
                       (long long)sizes[i].value);
    }
  }
  int64_t n;
  if (!mha_mul_i64(rows, Dv, &n) || !mha_mul_i64(n, (int64_t)sizeof(float), &n) ||
      (uint64_t)n > (uint64_t)SIZE_MAX) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: rows·Dv overflows", fn);
  }
  for (int64_t p = 0; p < parts; p++) {
    if (outs[p] == NULL || lses[p] == NULL) {
      return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s[%lld] is NULL", fn,
                       outs[p] == NULL ? "outs" : "lses", (long long)p);
    }
  }
  /* What the call writes (out, lse) is disjoint from what it reads and from
   * each other, except that out may be outs[0] itself and lse lses[0]
   * itself: row r of part 0 is read before row r of out (lse) is written,
   * and no other row is touched meanwhile. Every pointer is checked, O(parts). */
  const size_t nrow = (size_t)n, nlse = (size_t)rows * sizeof(float);
  const mha_span written[] = {{"out", out, nrow}, {"lse", lse, lse != NULL ? nlse : 0}};
  if (mha_check_spans_disjoint(fn, written, 2, NULL, 0) != MHA_STATUS_SUCCESS) return MHA_STATUS_INVALID_STRIDE;
  for (int64_t p = 0; p < parts; p++) {
    const mha_span read[] = {{"outs[p]", outs[p], nrow}, {"lses[p]", lses[p], nlse}};
    for (int w = 0; w < 2; w++) {
      for (int i = 0; i < 2; i++) {
        if (p == 0 && w == i && written[w].p == read[i].p) continue; /* in place on part 0 */
        if (mha_check_spans_disjoint(fn, &written[w], 1, &read[i], 1) != MHA_STATUS_SUCCESS) {
          return mha_error(MHA_STATUS_INVALID_STRIDE,
                           "%s: %s overlaps %s[%lld] (only outs[0] itself may be out, lses[0] itself lse)", fn,
                           written[w].name, i == 0 ? "outs" : "lses", (long long)p);
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; r++) {
    float M = -INFINITY;
    int nan = 0;
    for (int64_t p = 0; p < parts; p++) {
      const float x = lses[p][r];
      nan |= isnan(x);
      if (x > M) M = x;
    }
    float* dst = out + r * Dv;
    if (nan || M == INFINITY) {
      for (int64_t c = 0; c < Dv; c++) dst[c] = NAN;
      if (lse != NULL) lse[r] = NAN;
      continue;
    }
    if (M == -INFINITY) {
      memset(dst, 0, (size_t)Dv * sizeof(float));
      if (lse != NULL) lse[r] = -INFINITY;
      continue;
    }
    float L = 0.0f;
    for (int64_t p = 0; p < parts; p++) {
      if (lses[p][r] != -INFINITY) L += expf(lses[p][r] - M);
    }
    /* part by part, part 0 first, so that out == outs[0] reads each element
     * before writing it; each element sums its parts in the order given */
    for (int64_t p = 0; p < parts; p++) {
      const float w = lses[p][r] == -INFINITY ? 0.0f : expf(lses[p][r] - M) / L;
      const float* src = outs[p] + r * Dv;
      if (p == 0) {
        for (int64_t c = 0; c < Dv; c++) dst[c] = w == 0.0f ? 0.0f : w * src[c];
      } else if (w != 0.0f) {
        for (int64_t c = 0; c < Dv; c++) dst[c] += w * src[c];
      }
    }
    if (lse != NULL) lse[r] = M + logf(L);
  }
  return MHA_STATUS_SUCCESS;
}
