/*
 * The attention core's public entry points (include/mha.h): mha_attention_f32,
 * mha_attention (16-bit Q, K, V and out), the workspace query, the
 * descriptor's initializer and the stride helpers.
 * The plan and the stages are in attention-*.c (see attention-plan.h).
 */
#include <string.h>

#include "mha/internal.h"

void mha_attention_desc_init_sized(mha_attention_desc* caller, size_t size, int64_t B, int64_t H, int64_t Hkv,
                                   int64_t Tq, int64_t Tk, int64_t D, int64_t Dv) {
  mha_attention_desc d;
  memset(&d, 0, sizeof d);
  d.B = B;
  d.H = H;
  d.Hkv = Hkv;
  d.Tq = Tq;
  d.Tk = Tk;
  d.D = D;
  d.Dv = Dv;
  d.q = mha_strides_bhtd(H, Tq, D);
  d.k = mha_strides_bhtd(Hkv, Tk, D);
  d.v = mha_strides_bhtd(Hkv, Tk, Dv);
  d.out = mha_strides_bhtd(H, Tq, Dv);
  mha_struct_init(caller, size, &d, sizeof d);
}

/* a·b, or INT64_MAX when it overflows: the helpers never fail, and the
 * validation of the call refuses such a stride (its view's extent overflows) */
static int64_t mha_mul_sat(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

mha_strides mha_strides_bhtd(int64_t H, int64_t T, int64_t width) {
  mha_strides s = {mha_mul_sat(mha_mul_sat(H, T), width), mha_mul_sat(T, width), width};
  return s;
}

mha_strides mha_strides_bthd(int64_t H, int64_t T, int64_t width) {
  mha_strides s = {mha_mul_sat(mha_mul_sat(T, H), width), width, mha_mul_sat(H, width)};
  return s;
}

/* mha_attention_f32 and mha_attention: q, k, v and out hold elements of dtype. */
static mha_status mha_core_call(const char* fn, const mha_attention_desc* caller, mha_dtype dtype, const void* q,
                                const void* k, const void* v, void* out, float* weights) {
  mha_attention_desc d;
  mha_status st = mha_desc_read(fn, caller, &d);
  if (st != MHA_STATUS_SUCCESS || (st = mha_rotary_refuse(fn, &d)) != MHA_STATUS_SUCCESS) return st;
  const mha_attention_desc* desc = &d;
  st = mha_attention_validate(fn, desc, q, k, v, out, weights != NULL);
  if (st != MHA_STATUS_SUCCESS) return st;
  if ((st = mha_attention_check_overlap(fn, desc, mha_dtype_size(dtype), q, k, v, out, weights, NULL, 0)) !=
      MHA_STATUS_SUCCESS) {
    return st;
  }
  mha_call c;
  st = mha_call_plan(fn, "mha_attention_workspace_size", desc, weights != NULL, NULL, &c);
  if (st != MHA_STATUS_SUCCESS || (st = mha_attention_check_heads(fn, desc)) != MHA_STATUS_SUCCESS) return st;
  /* 16-bit K and V: a contiguous cache over desc's views */
  const mha_kv_cache cache = mha_kv_cache_over_views(dtype, k, v, d.k, d.v, d.Tk);
  const int fp32 = dtype == MHA_DTYPE_F32;
  const mha_team team = mha_call_team(&c, desc);
  st = mha_attention_run(c.kr, desc, q, fp32 ? k : NULL, fp32 ? v : NULL, fp32 ? NULL : &cache, dtype, out,
                         weights, team, c.ws);
  mha_trace_end(team.tracer);
  return st;
}

mha_status mha_attention_f32(const mha_attention_desc* desc, const float* q, const float* k, const float* v,
                             float* out, float* weights) {
  return mha_core_call("mha_attention_f32", desc, MHA_DTYPE_F32, q, k, v, out, weights);
}

mha_status mha_attention(const mha_attention_desc* desc, mha_dtype dtype, const void* q, const void* k,
                         const void* v, void* out, float* weights) {
  static const char fn[] = "mha_attention";
  const mha_status st = mha_io_dtype_check(fn, dtype);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_core_call(fn, desc, dtype, q, k, v, out, weights);
}

mha_status mha_attention_workspace_size(const mha_attention_desc* caller, int with_weights,
                                        size_t* bytes) {
  static const char fn[] = "mha_attention_workspace_size";
  if (bytes == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: bytes is NULL", fn);
  mha_attention_desc d;
  mha_status st = mha_desc_read(fn, caller, &d);
  if (st != MHA_STATUS_SUCCESS || (st = mha_rotary_refuse(fn, &d)) != MHA_STATUS_SUCCESS) return st;
  const mha_attention_desc* desc = &d;
  /* the sizes and views are checked as in the call; pointers do not matter here */
  static const float any = 0.0f;
  st = mha_attention_validate(fn, desc, &any, &any, &any, &any, with_weights != 0);
  if (st != MHA_STATUS_SUCCESS) return st;
  mha_call c;
  if ((st = mha_call_plan(fn, NULL, desc, with_weights != 0, NULL, &c)) != MHA_STATUS_SUCCESS) return st;
  *bytes = c.floats * sizeof(float) + 64; /* + room to align a caller's buffer */
  return MHA_STATUS_SUCCESS;
}
