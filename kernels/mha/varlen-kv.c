/*
 * A packed variable-length batch over a K/V cache (mha_attention_varlen_kv_f32):
 * the serving step's call. Sequence b's queries are packed rows, its keys
 * the first seqused_k[b] tokens of cache entry b, contiguous or paged, fp32
 * or 16-bit. The checks are the varlen call's (varlen.c) and the cache's
 * (kv-cache.c); the schedule is varlen.c's, one plan per sequence bound to
 * its entry of the cache, so a one-token decode costs a decode and a prefill
 * chunk a prefill, and each sequence gets the bits of its own cache call.
 */
#include <string.h>

#include "mha/internal.h"

/* The checks of both entry points: desc, the lengths, the views of q and
 * out over total_q rows, the cache over the keys each sequence reads. Fills
 * *d (desc read by the growth rule, k and v views replaced), *cc (the cache,
 * likewise) and the spans of the cache's pools in *kb, *vb. */
static mha_status mha_varlen_kv_check(const char* fn, const mha_attention_desc* caller, const int32_t* cu_q,
                                      const int32_t* used_k, const mha_kv_cache* caller_cache,
                                      const void* q, const void* out, mha_attention_desc* d,
                                      mha_attention_desc* flat, mha_kv_cache* cc, size_t* kb, size_t* vb,
                                      mha_rotary* rot, size_t* rot_table) {
  mha_status st = mha_kv_cache_read(fn, caller_cache, cc);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_varlen_batch batch = {cu_q, NULL, used_k, cc, fn, MHA_DTYPE_F32};
  mha_attention_desc read;
  if ((st = mha_varlen_read(fn, caller, &batch, &read, flat)) != MHA_STATUS_SUCCESS) return st;
  *d = mha_kv_desc(&read);
  *flat = mha_kv_desc(flat);
  static const float any = 0.0f;
  if ((st = mha_attention_validate(fn, flat, q, &any, &any, out, 0)) != MHA_STATUS_SUCCESS) return st;
  /* sequence b reads tokens [0, seqused_k[b]) of entry b: the table slots
   * that cover them, and no more, must be valid */
  if ((st = mha_kv_cache_check(fn, cc, d->B, d->Hkv, d->D, d->Dv, NULL, used_k, d->Tk, kb, vb)) !=
      MHA_STATUS_SUCCESS) {
    return st;
  }
  memset(rot, 0, sizeof *rot);
  *rot_table = 0;
  if (d->rotary != NULL) {
    if ((st = mha_rotary_read(fn, d->rotary, d->D, rot, rot_table)) != MHA_STATUS_SUCCESS) return st;
    d->rotary = flat->rotary = rot;
  }
  return MHA_STATUS_SUCCESS;
}

/* mha_attention_varlen_kv_f32 and mha_attention_varlen_kv: q and out hold elements of io_dt. */
static mha_status mha_varlen_kv_call(const char* fn, const mha_attention_desc* caller, mha_dtype io_dt,
                                     const int32_t* cu_seqlens_q, const int32_t* seqused_k, const void* q,
                                     const mha_kv_cache* caller_cache, void* out) {
  mha_attention_desc d, flat;
  mha_kv_cache cc;
  mha_rotary rot;
  size_t kb, vb, rot_table;
  mha_status st = mha_varlen_kv_check(fn, caller, cu_seqlens_q, seqused_k, caller_cache, q, out, &d, &flat, &cc,
                                      &kb, &vb, &rot, &rot_table);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kv_cache* cache = &cc;
  /* the lengths, the cache and its table are inputs like the rest: no
   * output may overwrite them */
  const size_t ncu = (size_t)(d.B + 1) * sizeof(int32_t), nused = (size_t)d.B * sizeof(int32_t);
  const size_t ntable = cache->block_size != 0 ? (size_t)(d.B * cache->max_blocks) * sizeof(int32_t) : 0;
  const size_t npos = rot.positions != NULL ? (size_t)cu_seqlens_q[d.B] * sizeof(int32_t) : 0;
  const size_t nscale = mha_kv_cache_scale_bytes(cache, d.B, d.Hkv);
  const mha_span inputs[] = {{"cu_seqlens_q", cu_seqlens_q, ncu}, {"seqused_k", seqused_k, nused},
                             {"cache->k", cache->k, kb},          {"cache->v", cache->v, vb},
                             {"cache->block_table", cache->block_table, ntable},
                             {"rotary->cos", rot.cos, rot_table}, {"rotary->sin", rot.sin, rot_table},
                             {"rotary->positions", rot.positions, npos},
                             {"cache->k_scales", cache->k_scales, nscale},
                             {"cache->v_scales", cache->v_scales, nscale}};
  /* no query rows: q, out and lse address nothing (the flat view's one row
   * is a stand-in for the checks of the strides), so they overlap nothing */
  const int no_q = cu_seqlens_q[d.B] == 0;
  mha_attention_desc spans = flat;
  if (no_q) spans.lse = NULL;
  if ((st = mha_attention_check_overlap(fn, &spans, mha_dtype_size(io_dt), no_q ? NULL : q, NULL, NULL,
                                        no_q ? NULL : out, NULL, inputs, 10)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  const mha_varlen_batch batch = {cu_seqlens_q, NULL, seqused_k, cache, fn, io_dt};
  mha_call c;
  st = mha_call_plan(fn, "mha_attention_varlen_kv_workspace_size", &d, 0, &batch, &c);
  if (st != MHA_STATUS_SUCCESS || (st = mha_attention_check_heads(fn, &d)) != MHA_STATUS_SUCCESS) return st;
  if (d.rotary != NULL && (st = mha_rotary_check_queries(fn, &rot, d.B, cu_seqlens_q, 0, seqused_k, 0)) !=
                              MHA_STATUS_SUCCESS) {
    return st;
  }
  const mha_team team = mha_call_team(&c, &d);
  st = mha_attention_varlen_run(c.kr, &d, &batch, q, NULL, NULL, out, team, c.ws);
  mha_trace_end(team.tracer);
  return st;
}

mha_status mha_attention_varlen_kv_f32(const mha_attention_desc* desc, const int32_t* cu_seqlens_q,
                                       const int32_t* seqused_k, const float* q, const mha_kv_cache* cache,
                                       float* out) {
  return mha_varlen_kv_call("mha_attention_varlen_kv_f32", desc, MHA_DTYPE_F32, cu_seqlens_q, seqused_k, q, cache,
                            out);
}

mha_status mha_attention_varlen_kv(const mha_attention_desc* desc, mha_dtype dtype, const int32_t* cu_seqlens_q,
                                   const int32_t* seqused_k, const void* q, const mha_kv_cache* cache, void* out) {
  static const char fn[] = "mha_attention_varlen_kv";
  const mha_status st = mha_io_dtype_check(fn, dtype);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_varlen_kv_call(fn, desc, dtype, cu_seqlens_q, seqused_k, q, cache, out);
}

mha_status mha_attention_varlen_kv_workspace_size(const mha_attention_desc* caller, const int32_t* cu_seqlens_q,
                                                  const int32_t* seqused_k, const mha_kv_cache* caller_cache,
                                                  size_t* bytes) {
  static const char fn[] = "mha_attention_varlen_kv_workspace_size";
  if (bytes == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: bytes is NULL", fn);
  mha_attention_desc d, flat;
  mha_kv_cache cc;
  mha_rotary rot;
  size_t kb, vb, rot_table;
  static const float any = 0.0f;
  mha_status st = mha_varlen_kv_check(fn, caller, cu_seqlens_q, seqused_k, caller_cache, &any, (float*)&any, &d,
                                      &flat, &cc, &kb, &vb, &rot, &rot_table);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_varlen_batch batch = {cu_seqlens_q, NULL, seqused_k, &cc, fn, MHA_DTYPE_F32};
  mha_call c;
  if ((st = mha_call_plan(fn, NULL, &d, 0, &batch, &c)) != MHA_STATUS_SUCCESS) return st;
  *bytes = c.floats * sizeof(float) + 64;
  return MHA_STATUS_SUCCESS;
}
