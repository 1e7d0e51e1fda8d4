/* Overflow-checked size arithmetic, view validation and thread resolution. */

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
  size_t bytes;
  return mha_view_span(fn, what, n0, n1, n2, width, s, &bytes);
}

mha_status mha_view_span(const char* fn, const char* what, int64_t n0, int64_t n1, int64_t n2,
                         int64_t width, const mha_strides* s, size_t* bytes) {
  int64_t a, b, c, end;
  if (!mha_mul_i64(n0 - 1, s->batch, &a) || !mha_mul_i64(n1 - 1, s->head, &b) ||
      !mha_mul_i64(n2 - 1, s->row, &c) || !mha_add_i64(a, b, &end) ||
      !mha_add_i64(end, c, &end) || !mha_add_i64(end, width, &end) ||
      !mha_mul_i64(end, (int64_t)sizeof(float), &a) || (uint64_t)a > (uint64_t)SIZE_MAX) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the extent of %s overflows", fn, what);
  }
  *bytes = (size_t)a;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_check_view_injective(const char* fn, const char* what, int64_t n0, int64_t n1,
                                    int64_t n2, int64_t width, const mha_strides* s) {
  /* the dimensions of size > 1, innermost (smallest stride) first; each
   * stride must step over everything the inner dimensions span */
  typedef struct { int64_t n, stride; const char* name; } mha_dim;
  mha_dim dims[3] = {
      {n0, s->batch, "batch"}, {n1, s->head, "head"}, {n2, s->row, "row"}};
  for (int i = 1; i < 3; i++) { /* insertion sort by stride, stable */
    for (int j = i; j > 0 && dims[j].stride < dims[j - 1].stride; j--) {
      const mha_dim t = dims[j];
      dims[j] = dims[j - 1];
      dims[j - 1] = t;
    }
  }
  int64_t span = width; /* elements covered by the inner dimensions */
  for (int i = 0; i < 3; i++) {
    if (dims[i].n <= 1) continue;
    if (dims[i].stride < span) {
      return mha_error(MHA_STATUS_INVALID_STRIDE,
                       "%s: %s strides {%lld, %lld, %lld} make its elements overlap (the %s "
                       "stride %lld is shorter than the %lld elements inside it); an output "
                       "may use stride 0 only on a dimension of size 1",
                       fn, what, (long long)s->batch, (long long)s->head, (long long)s->row,
                       dims[i].name, (long long)dims[i].stride, (long long)span);
    }
    /* the view's extent was checked, so this fits */
    span = dims[i].stride * (dims[i].n - 1) + span;
  }
  return MHA_STATUS_SUCCESS;
}

static mha_status mha_check_disjoint(const char* fn, mha_span a, mha_span b) {
  if (a.p == NULL || b.p == NULL || a.bytes == 0 || b.bytes == 0) return MHA_STATUS_SUCCESS;
  const uintptr_t a0 = (uintptr_t)a.p, b0 = (uintptr_t)b.p;
  if (a0 < b0 + b.bytes && b0 < a0 + a.bytes) {
    return mha_error(MHA_STATUS_INVALID_STRIDE,
                     "%s: %s overlaps %s (the memory they address must be disjoint)", fn, a.name,
                     b.name);
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_check_outputs_disjoint(const char* fn, mha_span out, mha_span weights,
                                      const mha_span* inputs, size_t n) {
  const mha_span outs[] = {out, weights};
  return mha_check_spans_disjoint(fn, outs, 2, inputs, n);
}

mha_status mha_check_spans_disjoint(const char* fn, const mha_span* outs, size_t n_out,
                                    const mha_span* ins, size_t n_in) {
  mha_status st;
  for (size_t o = 0; o < n_out; o++) {
    for (size_t i = 0; i < n_in; i++) {
      if ((st = mha_check_disjoint(fn, outs[o], ins[i])) != MHA_STATUS_SUCCESS) return st;
    }
    for (size_t o2 = o + 1; o2 < n_out; o2++) {
      if ((st = mha_check_disjoint(fn, outs[o], outs[o2])) != MHA_STATUS_SUCCESS) return st;
    }
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_io_dtype_check(const char* fn, mha_dtype dtype) {
  if (dtype == MHA_DTYPE_F32 || dtype == MHA_DTYPE_F16 || dtype == MHA_DTYPE_BF16) return MHA_STATUS_SUCCESS;
  return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: dtype = %d, must be MHA_DTYPE_F32, MHA_DTYPE_F16 or MHA_DTYPE_BF16",
                   fn, (int)dtype);
}
