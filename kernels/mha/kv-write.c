/*
 * The cache writers (include/mha.h, "KV caches"): mha_kv_cache_write (B
 * entries at one length), mha_kv_cache_write_varlen (a serving step's packed
 * rows per sequence) and mha_kv_cache_write_slots (vLLM's slot_mapping), and
 * mha_kv_cache_store, the layer's cache output. Every row is rounded by the
 * kernel set's narrowing (bitwise kv-convert.h's scalar rounding); the
 * serving writers rotate K rows first when given a rotary (rotary.c).
 */
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-quant-i8.h"
#include "mha/internal.h"

/* The address of token t of entry b, head g, in K (is_v = 0) or V (checked). */
static void* mha_kv_cache_row(const mha_kv_cache* c, int is_v, int64_t b, int64_t g, int64_t t) {
  const mha_strides* s = is_v ? &c->v_strides : &c->k_strides;
  const int64_t at = c->block_size != 0 ? mha_kv_paged_offset(c, s, b, g, t) : b * s->batch + g * s->head + t * s->row;
  return (char*)(is_v ? c->v : c->k) + (size_t)at * mha_dtype_size(c->dtype);
}

/* Token t of entry b, head g, of K (is_v = 0) or V = src[0..n) rounded to the
 * cache's dtype: the kernel set's narrowing (bitwise kv-convert.h's scalar
 * rounding), or int8 quantized with the row's scale (kv-quant-i8.h). */
static void mha_kv_store_row(const mha_kernels* kr, const mha_kv_cache* c, int is_v, int64_t b, int64_t g, int64_t t,
                             const float* src, int64_t n) {
  void* dst = mha_kv_cache_row(c, is_v, b, g, t);
  if (c->dtype == MHA_DTYPE_INT8) {
    *mha_kv_scale_ptr(c, is_v, b, g, t) = mha_i8_quantize_row((size_t)n, src, dst);
  } else {
    mha_narrow_row(kr, c->dtype, (size_t)n, src, dst);
  }
}

/* Checks the new rows' sizes, pointers and views: n0 × Hkv × T rows of D
 * (k_new) and Dv (v_new) floats; *nk, *nv their spans in bytes. */
static mha_status mha_kv_new_rows_check(const char* fn, int64_t n0, int64_t Hkv, int64_t T, int64_t D, int64_t Dv,
                                        const float* k_new, const mha_strides* ks, const float* v_new,
                                        const mha_strides* vs, size_t* nk, size_t* nv) {
  const struct { const char* name; int64_t value; } sizes[] = {{"Hkv", Hkv}, {"D", D}, {"Dv", Dv}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: %s = %lld, must be >= 1", fn, sizes[i].name,
                       (long long)sizes[i].value);
    }
  }
  if (k_new == NULL || v_new == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, k_new == NULL ? "k_new" : "v_new");
  }
  mha_status st;
  if ((st = mha_check_view(fn, "k_new", n0, Hkv, T, D, ks, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "v_new", n0, Hkv, T, Dv, vs, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_view_span(fn, "k_new", n0, Hkv, T, D, ks, nk)) != MHA_STATUS_SUCCESS ||
      (st = mha_view_span(fn, "v_new", n0, Hkv, T, Dv, vs, nv)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  return MHA_STATUS_SUCCESS;
}

/* The cache (and an int8 cache's scales) is the output: disjoint from every
 * input (the new rows, the positions or slots, the table, the rotary). */
static mha_status mha_kv_write_disjoint(const char* fn, const mha_kv_cache* cache, int64_t B, int64_t Hkv,
                                        size_t kb, size_t vb,
                                        const float* k_new, size_t nk, const float* v_new, size_t nv,
                                        const char* index_name, const void* index, size_t index_bytes,
                                        const char* index2_name, const void* index2, size_t index2_bytes,
                                        const mha_rotary* rot, size_t rot_table, size_t rot_rows) {
  const size_t ntable = cache->block_size != 0 ? (size_t)(B * cache->max_blocks) * sizeof(int32_t) : 0;
  const mha_span in[] = {{"k_new", k_new, nk},
                         {"v_new", v_new, nv},
                         {index_name, index, index_bytes},
                         {index2_name, index2, index2_bytes},
                         {"cache->block_table", cache->block_table, ntable},
                         {"rotary->cos", rot != NULL ? rot->cos : NULL, rot_table},
                         {"rotary->sin", rot != NULL ? rot->sin : NULL, rot_table},
                         {"rotary->positions", rot != NULL ? rot->positions : NULL, rot_rows * sizeof(int32_t)}};
  const size_t ns = mha_kv_cache_scale_bytes(cache, B, Hkv);
  const mha_span outs[] = {{"cache->k", cache->k, kb},
                           {"cache->v", cache->v, vb},
                           {"cache->k_scales", cache->k_scales, ns},
                           {"cache->v_scales", cache->v_scales, ns}};
  return mha_check_spans_disjoint(fn, outs, 4, in, 8);
}

/* A serving writer's rotary: read and checked for rows of D (rot NULL when
 * there is none), and a row of D floats to rotate into. */
static mha_status mha_kv_write_rotary(const char* fn, const mha_rotary* caller, int64_t D, mha_rotary* r,
                                      const mha_rotary** rot, size_t* table) {
  *rot = NULL;
  *table = 0;
  if (caller == NULL) return MHA_STATUS_SUCCESS;
  mha_status st = mha_rotary_read(fn, caller, D, r, table);
  if (st == MHA_STATUS_SUCCESS) *rot = r;
  return st;
}

static mha_status mha_kv_row_buffer(const char* fn, const mha_rotary* rot, int64_t D, float** buf) {
  *buf = NULL;
  if (rot == NULL) return MHA_STATUS_SUCCESS;
  *buf = malloc((size_t)D * sizeof(float));
  if (*buf == NULL) {
    return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate a row of %lld floats", fn, (long long)D);
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_kv_cache_write(const mha_kv_cache* caller_cache, int64_t B, int64_t Hkv, int64_t T, int64_t D,
                              int64_t Dv, const int32_t* pos, const float* k_new, mha_strides k_new_strides,
                              const float* v_new, mha_strides v_new_strides) {
  static const char fn[] = "mha_kv_cache_write";
  mha_kv_cache cc;
  const mha_status read = mha_kv_cache_read(fn, caller_cache, &cc);
  if (read != MHA_STATUS_SUCCESS) return read;
  const mha_kv_cache* cache = &cc;
  if (B < 1 || T < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: %s = %lld, must be >= 1", fn, B < 1 ? "B" : "T",
                     (long long)(B < 1 ? B : T));
  }
  mha_status st;
  size_t kb, vb, nk, nv;
  if ((st = mha_kv_new_rows_check(fn, B, Hkv, T, D, Dv, k_new, &k_new_strides, v_new, &v_new_strides, &nk, &nv)) !=
      MHA_STATUS_SUCCESS) {
    return st;
  }
  if (pos == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: pos is NULL", fn);
  const mha_kernels* kr;
  if ((st = mha_kv_cache_check(fn, cache, B, Hkv, D, Dv, pos, NULL, T, &kb, &vb)) != MHA_STATUS_SUCCESS ||
      (st = mha_kv_write_disjoint(fn, cache, B, Hkv, kb, vb, k_new, nk, v_new, nv, "pos", pos, (size_t)B * sizeof(int32_t),
                                  NULL, NULL, 0, NULL, 0, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_kernels_active(&kr)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  mha_kv_cache_store(kr, cache, 0, B, Hkv, T, D, Dv, pos, k_new, &k_new_strides, v_new, &v_new_strides);
  return MHA_STATUS_SUCCESS;
}

void mha_kv_cache_store(const mha_kernels* kr, const mha_kv_cache* cache, int64_t b0, int64_t nb, int64_t Hkv,
                        int64_t T, int64_t D, int64_t Dv, const int32_t* pos, const float* k_new,
                        const mha_strides* ks, const float* v_new, const mha_strides* vs) {
  for (int64_t i = 0; i < nb; i++) {
    const int64_t b = b0 + i, first = pos != NULL ? pos[b] : 0;
    for (int64_t g = 0; g < Hkv; g++) {
      for (int64_t t = 0; t < T; t++) {
        mha_kv_store_row(kr, cache, 0, b, g, first + t,
                         k_new + i * ks->batch + g * ks->head + t * ks->row, D);
        mha_kv_store_row(kr, cache, 1, b, g, first + t,
                         v_new + i * vs->batch + g * vs->head + t * vs->row, Dv);
      }
    }
  }
}

/* Row i of the packed new rows (head g) into token t of entry b; K rotated
 * at position at into buf first when rot is set. */
static void mha_kv_store_token(const mha_kernels* kr, const mha_kv_cache* cache, int64_t b, int64_t t, int64_t Hkv,
                               int64_t D, int64_t Dv, int64_t i, const float* k_new, const mha_strides* ks,
                               const float* v_new, const mha_strides* vs, const mha_rotary* rot, int64_t at,
                               float* buf) {
  for (int64_t g = 0; g < Hkv; g++) {
    const float* krow = k_new + g * ks->head + i * ks->row;
    if (rot != NULL) {
      mha_rotary_row(rot, at, (size_t)D, krow, buf, 1, 1.0f);
      krow = buf;
    }
    mha_kv_store_row(kr, cache, 0, b, g, t, krow, D);
    mha_kv_store_row(kr, cache, 1, b, g, t, v_new + g * vs->head + i * vs->row, Dv);
  }
}

mha_status mha_kv_cache_write_varlen(const mha_kv_cache* caller_cache, int64_t B, int64_t Hkv, int64_t D, int64_t Dv,
                                     const int32_t* cu_seqlens, const int32_t* pos, const float* k_new,
                                     mha_strides k_new_strides, const float* v_new, mha_strides v_new_strides,
                                     const mha_rotary* rotary) {
  static const char fn[] = "mha_kv_cache_write_varlen";
  mha_kv_cache cc;
  mha_status st = mha_kv_cache_read(fn, caller_cache, &cc);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kv_cache* cache = &cc;
  if (B < 1) return mha_error(MHA_STATUS_INVALID_SIZE, "%s: B = %lld, must be >= 1", fn, (long long)B);
  if ((uint64_t)B >= (uint64_t)(SIZE_MAX / sizeof(int32_t))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: cu_seqlens [B + 1] overflows (B = %lld)", fn, (long long)B);
  }
  if (cu_seqlens == NULL || pos == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, cu_seqlens == NULL ? "cu_seqlens" : "pos");
  }
  if (cu_seqlens[0] != 0) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: cu_seqlens[0] = %d, must be 0", fn, (int)cu_seqlens[0]);
  }
  for (int64_t b = 0; b < B; b++) {
    if (cu_seqlens[b + 1] < cu_seqlens[b]) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: cu_seqlens gives sequence %lld a negative length", fn,
                       (long long)b);
    }
  }
  const int64_t total = cu_seqlens[B];
  size_t kb, vb, nk = 0, nv = 0;
  /* the packed rows: [total, Hkv, D] through the strides' head and row
   * (batch unused); no rows at all is a call that writes nothing */
  mha_strides ks = k_new_strides, vs = v_new_strides;
  ks.batch = vs.batch = 0;
  if ((st = mha_kv_new_rows_check(fn, 1, Hkv, total > 0 ? total : 1, D, Dv, k_new, &ks, v_new, &vs, &nk, &nv)) !=
          MHA_STATUS_SUCCESS ||
      (st = mha_kv_cache_check(fn, cache, B, Hkv, D, Dv, NULL, NULL, 0, &kb, &vb)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  for (int64_t b = 0; b < B; b++) {
    if ((st = mha_kv_cache_check_range(fn, cache, b, pos[b], (int64_t)cu_seqlens[b + 1] - cu_seqlens[b])) !=
        MHA_STATUS_SUCCESS) {
      return st;
    }
  }
  mha_rotary r;
  const mha_rotary* rot;
  size_t rot_table;
  if ((st = mha_kv_write_rotary(fn, rotary, D, &r, &rot, &rot_table)) != MHA_STATUS_SUCCESS) return st;
  const mha_kernels* kr;
  if ((st = mha_kv_write_disjoint(fn, cache, B, Hkv, kb, vb, k_new, nk, v_new, nv, "cu_seqlens", cu_seqlens,
                                  (size_t)(B + 1) * sizeof(int32_t), "pos", pos, (size_t)B * sizeof(int32_t), rot,
                                  rot_table, rot != NULL && rot->positions != NULL ? (size_t)total : 0)) !=
          MHA_STATUS_SUCCESS ||
      (st = mha_kernels_active(&kr)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  /* row i of sequence b is at pos[b] + (i − cu_seqlens[b]), or the caller's */
  for (int64_t b = 0; rot != NULL && b < B; b++) {
    for (int64_t i = cu_seqlens[b]; i < cu_seqlens[b + 1]; i++) {
      const int64_t at = rot->positions != NULL ? rot->positions[i] : pos[b] + (i - cu_seqlens[b]);
      if ((st = mha_rotary_check_pos(fn, rot, "row", i, at)) != MHA_STATUS_SUCCESS) return st;
    }
  }
  float* buf;
  if ((st = mha_kv_row_buffer(fn, rot, D, &buf)) != MHA_STATUS_SUCCESS) return st;
  for (int64_t b = 0; b < B; b++) {
    for (int64_t i = cu_seqlens[b]; i < cu_seqlens[b + 1]; i++) {
      const int64_t t = pos[b] + (i - cu_seqlens[b]);
      const int64_t at = rot != NULL && rot->positions != NULL ? rot->positions[i] : t;
      mha_kv_store_token(kr, cache, b, t, Hkv, D, Dv, i, k_new, &ks, v_new, &vs, rot, at, buf);
    }
  }
  free(buf);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_kv_cache_write_slots(const mha_kv_cache* caller_cache, int64_t n_tokens, int64_t Hkv, int64_t D,
                                    int64_t Dv, const int32_t* slot_mapping, const float* k_new,
                                    mha_strides k_new_strides, const float* v_new, mha_strides v_new_strides,
                                    const mha_rotary* rotary) {
  static const char fn[] = "mha_kv_cache_write_slots";
  mha_kv_cache cc;
  mha_status st = mha_kv_cache_read(fn, caller_cache, &cc);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kv_cache* cache = &cc;
  if (n_tokens < 1) return mha_error(MHA_STATUS_INVALID_SIZE, "%s: n_tokens = %lld, must be >= 1", fn, (long long)n_tokens);
  if ((uint64_t)n_tokens > (uint64_t)(SIZE_MAX / sizeof(int32_t))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: slot_mapping [n_tokens] overflows", fn);
  }
  if (slot_mapping == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: slot_mapping is NULL", fn);
  if (cache->block_size == 0) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: slots address a paged cache (cache->block_size = 0); use mha_kv_cache_write_varlen", fn);
  }
  mha_strides ks = k_new_strides, vs = v_new_strides;
  ks.batch = vs.batch = 0;
  size_t kb, vb, nk, nv;
  /* the table is not read: B = 1 for the checks of the pools */
  if ((st = mha_kv_new_rows_check(fn, 1, Hkv, n_tokens, D, Dv, k_new, &ks, v_new, &vs, &nk, &nv)) !=
          MHA_STATUS_SUCCESS ||
      (st = mha_kv_cache_check(fn, cache, 1, Hkv, D, Dv, NULL, NULL, 0, &kb, &vb)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  int64_t slots;
  if (!mha_mul_i64(cache->num_blocks, cache->block_size, &slots)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: num_blocks · block_size overflows", fn);
  }
  for (int64_t i = 0; i < n_tokens; i++) {
    if (slot_mapping[i] >= slots) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                       "%s: slot_mapping[%lld] = %d is past the pools' %lld slots (num_blocks · block_size)", fn,
                       (long long)i, (int)slot_mapping[i], (long long)slots);
    }
  }
  mha_rotary r;
  const mha_rotary* rot;
  size_t rot_table;
  if ((st = mha_kv_write_rotary(fn, rotary, D, &r, &rot, &rot_table)) != MHA_STATUS_SUCCESS) return st;
  if (rot != NULL && rot->positions == NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: a slot does not tell a token's position: rotary->positions [n_tokens] is needed", fn);
  }
  /* the table is not an input here: B = 0 rows of it */
  const mha_kernels* kr;
  if ((st = mha_kv_write_disjoint(fn, cache, 0, Hkv, kb, vb, k_new, nk, v_new, nv, "slot_mapping", slot_mapping,
                                  (size_t)n_tokens * sizeof(int32_t), NULL, NULL, 0, rot, rot_table,
                                  rot != NULL ? (size_t)n_tokens : 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_kernels_active(&kr)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  for (int64_t i = 0; rot != NULL && i < n_tokens; i++) {
    if (slot_mapping[i] >= 0 && (st = mha_rotary_check_pos(fn, rot, "token", i, rot->positions[i])) !=
                                    MHA_STATUS_SUCCESS) {
      return st;
    }
  }
  float* buf;
  if ((st = mha_kv_row_buffer(fn, rot, D, &buf)) != MHA_STATUS_SUCCESS) return st;
  /* a slot is block · block_size + row: through a one-entry table of that block */
  for (int64_t i = 0; i < n_tokens; i++) {
    if (slot_mapping[i] < 0) continue; /* padding (vLLM's PAD_SLOT_ID) */
    const int32_t blk = (int32_t)(slot_mapping[i] / cache->block_size);
    mha_kv_cache one = *cache;
    one.block_table = &blk;
    one.max_blocks = 1;
    mha_kv_store_token(kr, &one, 0, slot_mapping[i] % cache->block_size, Hkv, D, Dv, i, k_new, &ks, v_new, &vs,
                       rot, rot != NULL ? rot->positions[i] : 0, buf);
  }
  free(buf);
  return MHA_STATUS_SUCCESS;
}
