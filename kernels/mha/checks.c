/* Overflow-checked size arithmetic, view validation and thread resolution. */
#include <omp.h>

#include "mha/internal.h"

int mha_mul_i64(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

int mha_add_i64(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

mha_status mha_check_view(const char* fn, const char* what, int64_t n0, int64_t n1, int64_t n2,
                          int64_t width, const mha_strides* s, int allow_broadcast) {
  if (s->batch < 0 || s->head < 0 || s->row < 0) {
    return mha_error(MHA_STATUS_INVALID_STRIDE,
                     "%s: %s strides {%lld, %lld, %lld} must be >= 0", fn, what,
                     (long long)s->batch, (long long)s->head, (long long)s->row);
  }
  if (n2 > 1 && s->row < width && !(allow_broadcast && s->row == 0)) {
    return mha_error(MHA_STATUS_INVALID_STRIDE,
                     "%s: %s row stride %lld is shorter than its row (%lld)", fn, what,
                     (long long)s->row, (long long)width);
  }
  int64_t a, b, c, end;
  if (!mha_mul_i64(n0 - 1, s->batch, &a) || !mha_mul_i64(n1 - 1, s->head, &b) ||
      !mha_mul_i64(n2 - 1, s->row, &c) || !mha_add_i64(a, b, &end) ||
      !mha_add_i64(end, c, &end) || !mha_add_i64(end, width, &end) ||
      !mha_mul_i64(end, (int64_t)sizeof(float), &a) || (uint64_t)a > (uint64_t)SIZE_MAX) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the extent of %s overflows", fn, what);
  }
  return MHA_STATUS_SUCCESS;
}

int mha_resolve_threads(int requested) {
  if (requested > 0) return requested;
  if (omp_in_parallel()) return 1;
  int n = omp_get_max_threads();
  return n > 0 ? n : 1;
}
