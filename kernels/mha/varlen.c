/*
 * Packed variable-length batches (mha_attention_varlen_f32): the checks of
 * the offsets and the packed views. The schedule is one plan per sequence,
 * the plan of that sequence called alone (attention.c,
 * mha_attention_varlen_run): time and workspace follow the real rows and
 * keys, and desc's Tq and Tk are bounds only.
 */
#include <string.h>

#include "mha/internal.h"

/* Checks desc and the offsets, and fills *flat: the packed tensors as one
 * batch entry of total_q query rows and total_k keys (batch strides 0), the
 * shape the views, masks and overlaps are checked on. */
static mha_status mha_varlen_check(const char* fn, const mha_attention_desc* d, const int32_t* cu_q,
                                   const int32_t* cu_k, mha_attention_desc* flat) {
  if (d == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: desc is NULL", fn);
  if (cu_q == NULL || cu_k == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     cu_q == NULL ? "cu_seqlens_q" : "cu_seqlens_k");
  }
  if (d->B < 1 || d->Tq < 1 || d->Tk < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: B, Tq and Tk must be >= 1 (B = %lld, Tq = %lld, Tk = %lld)",
                     fn, (long long)d->B, (long long)d->Tq, (long long)d->Tk);
  }
  if ((uint64_t)d->B >= (uint64_t)(SIZE_MAX / sizeof(int32_t))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: cu_seqlens [B + 1] overflows (B = %lld)", fn, (long long)d->B);
  }
  if (d->mask.kv_len != NULL || d->mask.additive != NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: mask.%s must be NULL (the lengths come from cu_seqlens; no additive mask)",
                     fn, d->mask.kv_len != NULL ? "kv_len" : "additive");
  }
  const struct { const char* name; const int32_t* cu; int64_t max; } offs[] = {
      {"cu_seqlens_q", cu_q, d->Tq}, {"cu_seqlens_k", cu_k, d->Tk}};
  for (int w = 0; w < 2; w++) {
    if (offs[w].cu[0] != 0) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: %s[0] = %d, must be 0", fn, offs[w].name,
                       (int)offs[w].cu[0]);
    }
    for (int64_t b = 0; b < d->B; b++) {
      const int64_t len = (int64_t)offs[w].cu[b + 1] - offs[w].cu[b];
      if (len < 0 || len > offs[w].max) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: %s gives sequence %lld the length %lld, outside [0, %s = %lld]", fn,
                         offs[w].name, (long long)b, (long long)len, w == 0 ? "Tq" : "Tk",
                         (long long)offs[w].max);
      }
    }
  }
  *flat = *d;
  flat->B = 1;
  flat->Tq = cu_q[d->B] > 0 ? cu_q[d->B] : 1;
  flat->Tk = cu_k[d->B] > 0 ? cu_k[d->B] : 1;
  flat->q.batch = flat->k.batch = flat->v.batch = flat->out.batch = 0;
  /* the flat call checks the views over the packed rows, the variants'
   * fields, the sizes and H % Hkv; lse is [total_q, H] there too */
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_varlen_f32(const mha_attention_desc* desc, const int32_t* cu_seqlens_q,
                                    const int32_t* cu_seqlens_k, const float* q, const float* k,
                                    const float* v, float* out) {
  static const char fn[] = "mha_attention_varlen_f32";
  mha_attention_desc flat;
  mha_status st = mha_varlen_check(fn, desc, cu_seqlens_q, cu_seqlens_k, &flat);
  if (st != MHA_STATUS_SUCCESS) return st;
  /* the offsets are inputs like the rest: no output may overwrite them */
  const size_t ncu = (size_t)(desc->B + 1) * sizeof(int32_t);
  const mha_span offsets[] = {{"cu_seqlens_q", cu_seqlens_q, ncu}, {"cu_seqlens_k", cu_seqlens_k, ncu}};
  if ((st = mha_attention_validate(fn, &flat, q, k, v, out, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_attention_check_overlap(fn, &flat, q, k, v, out, NULL, offsets, 2)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  const mha_kernels* kr;
  if ((st = mha_kernels_resolve(fn, desc->isa, &kr)) != MHA_STATUS_SUCCESS) return st;
  const int nthreads = mha_resolve_threads(desc->num_threads);
  float* ws = NULL;
  if (desc->workspace != NULL) {
    size_t floats;
    st = mha_attention_varlen_floats(kr, desc, cu_seqlens_q, cu_seqlens_k, nthreads, &floats);
    if (st != MHA_STATUS_SUCCESS ||
        (st = mha_workspace_check(fn, "mha_attention_varlen_workspace_size", desc->workspace,
                                  desc->workspace_size, floats, &ws)) != MHA_STATUS_SUCCESS) {
      return st;
    }
  }
  return mha_attention_varlen_run(kr, desc, cu_seqlens_q, cu_seqlens_k, q, k, v, out, nthreads, ws);
}

mha_status mha_attention_varlen_workspace_size(const mha_attention_desc* desc,
                                               const int32_t* cu_seqlens_q,
                                               const int32_t* cu_seqlens_k, size_t* bytes) {
  static const char fn[] = "mha_attention_varlen_workspace_size";
  if (bytes == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: bytes is NULL", fn);
  mha_attention_desc flat;
  mha_status st = mha_varlen_check(fn, desc, cu_seqlens_q, cu_seqlens_k, &flat);
  if (st != MHA_STATUS_SUCCESS) return st;
  static const float any = 0.0f;
  if ((st = mha_attention_validate(fn, &flat, &any, &any, &any, &any, 0)) != MHA_STATUS_SUCCESS) return st;
  const mha_kernels* kr;
  if ((st = mha_kernels_resolve(fn, desc->isa, &kr)) != MHA_STATUS_SUCCESS) return st;
  size_t floats;
  st = mha_attention_varlen_floats(kr, desc, cu_seqlens_q, cu_seqlens_k, mha_resolve_threads(desc->num_threads),
                                   &floats);
  if (st != MHA_STATUS_SUCCESS) return st;
  *bytes = floats * sizeof(float) + 64;
  return MHA_STATUS_SUCCESS;
}
