/*
 * Rotary embeddings (include/mha.h, "Rotary embeddings"): the rotation of
 * one head's row, which the cache calls' query packing (attention-rows.c)
 * and the serving writers (kv-cache.c) share, the checks of an mha_rotary
 * and its positions, the table from θ and the stand-alone apply.
 *
 * One rotation for every path, in plain C: each product is rounded to fp32
 * before the difference or sum. This file is built for the baseline ISA
 * (no FMA on x86-64) and in ISO C mode (-std=c11, so GCC contracts nothing
 * on AArch64 either; clang contracts only within one expression, and each
 * product here is its own statement): a rotation has the same bits wherever
 * it runs, so Q rotated in a call equals Q rotated by mha_rotary_apply_f32.
 */
#include <math.h>
#include <string.h>

#include "mha/internal.h"

void mha_rotary_row(const mha_rotary* r, int64_t pos, size_t D, const float* x, float* y, size_t y_step,
                    float scale) {
  const size_t half = (size_t)r->dim / 2;
  const float* c = r->cos + (size_t)pos * half;
  const float* s = r->sin + (size_t)pos * half;
  const int gptj = r->style == MHA_ROTARY_GPTJ;
  for (size_t i = 0; i < half; i++) {
    const size_t a = gptj ? 2 * i : i, b = gptj ? 2 * i + 1 : i + half;
    const float xa = x[a], xb = x[b];
    const float ac = xa * c[i];
    const float bs = xb * s[i];
    const float bc = xb * c[i];
    const float as = xa * s[i];
    const float ya = ac - bs;
    const float yb = bc + as;
    y[a * y_step] = ya * scale;
    y[b * y_step] = yb * scale;
  }
  for (size_t d = 2 * half; d < D; d++) y[d * y_step] = x[d] * scale;
}

mha_status mha_rotary_read(const char* fn, const mha_rotary* src, int64_t D, mha_rotary* r, size_t* table_bytes) {
  mha_status st = mha_rotary_struct_read(fn, src, r);
  if (st != MHA_STATUS_SUCCESS) return st;
  if (r->style != MHA_ROTARY_NEOX && r->style != MHA_ROTARY_GPTJ) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: rotary->style = %d, must be MHA_ROTARY_NEOX or MHA_ROTARY_GPTJ",
                     fn, (int)r->style);
  }
  if (r->dim < 2 || r->dim % 2 != 0 || r->dim > D) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: rotary->dim = %lld, must be even and in [2, D = %lld]", fn,
                     (long long)r->dim, (long long)D);
  }
  if (r->n_positions < 1) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: rotary->n_positions = %lld, must be >= 1", fn,
                     (long long)r->n_positions);
  }
  if (r->cos == NULL || r->sin == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: rotary->%s is NULL", fn, r->cos == NULL ? "cos" : "sin");
  }
  int64_t n;
  if (!mha_mul_i64(r->n_positions, r->dim / 2, &n) || (uint64_t)n > (uint64_t)(SIZE_MAX / sizeof(float))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the rotary table [n_positions = %lld, dim/2 = %lld] overflows",
                     fn, (long long)r->n_positions, (long long)(r->dim / 2));
  }
  *table_bytes = (size_t)n * sizeof(float);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_rotary_check_pos(const char* fn, const mha_rotary* r, const char* what, int64_t row, int64_t pos) {
  if (pos < 0 || pos >= r->n_positions) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: the rotary position of %s %lld is %lld, outside the table's [0, %lld)%s", fn, what,
                     (long long)row, (long long)pos, (long long)r->n_positions,
                     r->positions == NULL && pos < 0 ? " (fewer keys than queries: pass rotary->positions)" : "");
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_rotary_refuse(const char* fn, const mha_attention_desc* d) {
  if (d->rotary == NULL) return MHA_STATUS_SUCCESS;
  return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                   "%s: desc->rotary is set, but only the cache calls (mha_attention_kv_f32, "
                   "mha_attention_varlen_kv_f32) apply one: rotate Q and K with mha_rotary_apply_f32",
                   fn);
}

void mha_rotary_init_sized(mha_rotary* caller, size_t size, mha_rotary_style style, int64_t dim, const float* cos,
                           const float* sin, int64_t n_positions) {
  mha_rotary r;
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.style = style;
  r.dim = dim;
  r.cos = cos;
  r.sin = sin;
  r.n_positions = n_positions;
  mha_struct_init(caller, size, &r, sizeof r);
}

mha_status mha_rotary_table_f32(int64_t dim, int64_t n_positions, double theta, double position_scale,
                                const float* inv_freq, double attn_factor, float* cos_out, float* sin_out) {
  static const char fn[] = "mha_rotary_table_f32";
  mha_error_clear();
  if (cos_out == NULL || sin_out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, cos_out == NULL ? "cos" : "sin");
  }
  if (dim < 2 || dim % 2 != 0) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: dim = %lld, must be even and >= 2", fn, (long long)dim);
  }
  if (n_positions < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: n_positions = %lld, must be >= 1", fn, (long long)n_positions);
  }
  if (inv_freq == NULL && !(isfinite(theta) && theta > 0.0)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: theta = %g, must be finite and > 0", fn, theta);
  }
  if (!isfinite(position_scale) || !isfinite(attn_factor)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: position_scale = %g and attn_factor = %g must be finite", fn,
                     position_scale, attn_factor);
  }
  const int64_t half = dim / 2;
  int64_t n;
  if (!mha_mul_i64(n_positions, half, &n) || (uint64_t)n > (uint64_t)(SIZE_MAX / sizeof(float))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: [n_positions = %lld, dim/2 = %lld] overflows", fn,
                     (long long)n_positions, (long long)half);
  }
  for (int64_t i = 0; inv_freq != NULL && i < half; i++) {
    if (!isfinite(inv_freq[i])) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: inv_freq[%lld] = %g, must be finite", fn, (long long)i,
                       (double)inv_freq[i]);
    }
  }
  const size_t bytes = (size_t)n * sizeof(float);
  const mha_span outs[] = {{"cos", cos_out, bytes}};
  const mha_span ins[] = {{"sin", sin_out, bytes}, {"inv_freq", inv_freq, inv_freq ? (size_t)half * sizeof(float) : 0}};
  mha_status st = mha_check_spans_disjoint(fn, outs, 1, ins, 2);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_span outs2[] = {{"sin", sin_out, bytes}};
  if ((st = mha_check_spans_disjoint(fn, outs2, 1, ins + 1, 1)) != MHA_STATUS_SUCCESS) return st;
  for (int64_t i = 0; i < half; i++) {
    const double f = inv_freq != NULL ? (double)inv_freq[i] : pow(theta, -2.0 * (double)i / (double)dim);
    for (int64_t p = 0; p < n_positions; p++) {
      const double angle = ((double)p * position_scale) * f;
      cos_out[p * half + i] = (float)(attn_factor * cos(angle));
      sin_out[p * half + i] = (float)(attn_factor * sin(angle));
    }
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_rotary_apply_f32(const mha_rotary* caller, int64_t n, int64_t H, int64_t D, const float* x,
                                mha_strides xs, float* y, mha_strides ys) {
  static const char fn[] = "mha_rotary_apply_f32";
  mha_error_clear();
  if (caller == NULL || x == NULL || y == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     caller == NULL ? "rotary" : x == NULL ? "x" : "y");
  }
  if (n < 1 || H < 1 || D < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: n = %lld, H = %lld, D = %lld, each must be >= 1", fn,
                     (long long)n, (long long)H, (long long)D);
  }
  mha_rotary r;
  size_t table;
  mha_status st = mha_rotary_read(fn, caller, D, &r, &table);
  if (st != MHA_STATUS_SUCCESS) return st;
  xs.batch = ys.batch = 0;
  size_t nx, ny;
  if ((st = mha_check_view(fn, "x", 1, H, n, D, &xs, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "y", 1, H, n, D, &ys, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view_injective(fn, "y", 1, H, n, D, &ys)) != MHA_STATUS_SUCCESS ||
      (st = mha_view_span(fn, "x", 1, H, n, D, &xs, &nx)) != MHA_STATUS_SUCCESS ||
      (st = mha_view_span(fn, "y", 1, H, n, D, &ys, &ny)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if ((uint64_t)n > (uint64_t)(SIZE_MAX / sizeof(int32_t))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: positions [n = %lld] overflows", fn, (long long)n);
  }
  const int in_place = y == x && ys.head == xs.head && ys.row == xs.row;
  const mha_span outs[] = {{"y", y, ny}};
  const mha_span ins[] = {{"x", in_place ? NULL : x, nx},
                          {"rotary->cos", r.cos, table},
                          {"rotary->sin", r.sin, table},
                          {"rotary->positions", r.positions, r.positions ? (size_t)n * sizeof(int32_t) : 0}};
  if ((st = mha_check_spans_disjoint(fn, outs, 1, ins, 4)) != MHA_STATUS_SUCCESS) return st;
  for (int64_t i = 0; i < n; i++) {
    const int64_t pos = r.positions != NULL ? r.positions[i] : i;
    if ((st = mha_rotary_check_pos(fn, &r, "row", i, pos)) != MHA_STATUS_SUCCESS) return st;
  }
  for (int64_t i = 0; i < n; i++) {
    const int64_t pos = r.positions != NULL ? r.positions[i] : i;
    for (int64_t h = 0; h < H; h++) {
      mha_rotary_row(&r, pos, (size_t)D, x + i * xs.row + h * xs.head, y + i * ys.row + h * ys.head, 1, 1.0f);
    }
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_rotary_check_queries(const char* fn, const mha_rotary* r, int64_t B, const int32_t* cu_q, int64_t Tq,
                                    const int32_t* ends, int64_t Tk) {
  for (int64_t b = 0; b < B; b++) {
    const int64_t first = cu_q != NULL ? cu_q[b] : b * Tq, len = cu_q != NULL ? cu_q[b + 1] - cu_q[b] : Tq;
    const int64_t end = ends != NULL ? ends[b] : Tk;
    mha_status st;
    if (r->positions != NULL) {
      for (int64_t i = 0; i < len; i++) {
        if ((st = mha_rotary_check_pos(fn, r, "query row", first + i, r->positions[first + i])) !=
            MHA_STATUS_SUCCESS) {
          return st;
        }
      }
    } else if (len > 0) { /* natural: end − len .. end − 1, so the first and the last decide */
      if ((st = mha_rotary_check_pos(fn, r, "query row", first, end - len)) != MHA_STATUS_SUCCESS ||
          (st = mha_rotary_check_pos(fn, r, "query row", first + len - 1, end - 1)) != MHA_STATUS_SUCCESS) {
        return st;
      }
    }
  }
  return MHA_STATUS_SUCCESS;
}
