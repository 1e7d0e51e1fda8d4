/*
 * K/V caches as engines store them: fp32, f16 or bf16 elements, contiguous or
 * paged through a block table (include/mha.h, "KV caches"). The checks and
 * the attention entry point over a cache; the writers are kv-write.c.
 *
 * The attention itself is the core's (kernels/mha/attention.c): its plan
 * reads K and V rows through the cache (mha_kv_row), widens 16-bit values in
 * the kernels' registers (kernels/kv-gemm/) and so gives bitwise the fp32
 * core's result on the widened values, whatever the layout.
 */
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "mha/internal.h"

enum { MHA_PAGE_MIN = 16, MHA_PAGE_MAX = 256 };

/* A contiguous cache's fields, in this library's layout. */
static mha_kv_cache mha_kv_cache_contiguous(mha_dtype dtype, void* k, void* v, int64_t Hkv, int64_t capacity,
                                            int64_t D, int64_t Dv) {
  mha_kv_cache c;
  memset(&c, 0, sizeof c);
  c.dtype = dtype;
  c.k = k;
  c.v = v;
  c.k_strides = mha_strides_bhtd(Hkv, capacity, D);
  c.v_strides = mha_strides_bhtd(Hkv, capacity, Dv);
  c.scale_strides = mha_strides_bhtd(Hkv, capacity, 1);
  c.capacity = capacity;
  return c;
}

void mha_kv_cache_init_sized(mha_kv_cache* caller, size_t size, mha_dtype dtype, void* k, void* v, int64_t Hkv,
                             int64_t capacity, int64_t D, int64_t Dv) {
  const mha_kv_cache c = mha_kv_cache_contiguous(dtype, k, v, Hkv, capacity, D, Dv);
  mha_struct_init(caller, size, &c, sizeof c);
}

void mha_kv_cache_init_paged_sized(mha_kv_cache* caller, size_t size, mha_dtype dtype, void* k_pool,
                                   void* v_pool, int64_t num_blocks, int64_t block_size, int64_t Hkv, int64_t D,
                                   int64_t Dv, const int32_t* block_table, int64_t max_blocks) {
  /* [num_blocks, Hkv, block_size, width]: the bhtd strides with "batch" = block */
  mha_kv_cache c = mha_kv_cache_contiguous(dtype, k_pool, v_pool, Hkv, block_size, D, Dv);
  c.capacity = 0;
  c.block_size = block_size;
  c.num_blocks = num_blocks;
  c.block_table = block_table;
  c.max_blocks = max_blocks;
  mha_struct_init(caller, size, &c, sizeof c);
}

/* The cache's own checks for B entries of Hkv heads of D (K) and Dv (V)
 * wide rows, of which entry b uses tokens [first[b], first[b] + T) (first
 * NULL: from 0), or [0, lens[b]) when lens is non-NULL (lens[b] <= T). */
mha_status mha_kv_cache_check(const char* fn, const mha_kv_cache* c, int64_t B, int64_t Hkv,
                                     int64_t D, int64_t Dv, const int32_t* first, const int32_t* lens,
                                     int64_t T, size_t* k_bytes, size_t* v_bytes) {
  if (c == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: cache is NULL", fn);
  if (c->k == NULL || c->v == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: cache->%s is NULL", fn, c->k == NULL ? "k" : "v");
  }
  if ((int)c->dtype < MHA_DTYPE_F32 || (int)c->dtype > MHA_DTYPE_INT8) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: cache->dtype = %d is not an mha_dtype", fn,
                     (int)c->dtype);
  }
  const int64_t bs = c->block_size;
  if (bs != 0 && (bs < MHA_PAGE_MIN || bs > MHA_PAGE_MAX || (bs & (bs - 1)) != 0)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: cache->block_size = %lld, must be 0 (contiguous) or a power of two in [16, 256]",
                     fn, (long long)bs);
  }
  int64_t n0, rows, limit;
  if (bs == 0) {
    if (c->capacity < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: cache->capacity = %lld, must be >= 1", fn,
                       (long long)c->capacity);
    }
    n0 = B;
    rows = c->capacity;
    limit = c->capacity;
  } else {
    if (c->num_blocks < 1 || c->max_blocks < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: cache->%s = %lld, must be >= 1", fn,
                       c->num_blocks < 1 ? "num_blocks" : "max_blocks",
                       (long long)(c->num_blocks < 1 ? c->num_blocks : c->max_blocks));
    }
    if (c->block_table == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: cache->block_table is NULL", fn);
    int64_t slots;
    if (!mha_mul_i64(c->max_blocks, bs, &limit) || !mha_mul_i64(B, c->max_blocks, &slots) ||
        (uint64_t)slots > (uint64_t)(SIZE_MAX / sizeof(int32_t))) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the block table [B, max_blocks] overflows", fn);
    }
    n0 = c->num_blocks;
    rows = bs;
  }
  mha_status st;
  size_t kb, vb;
  if ((st = mha_check_view(fn, "cache->k", n0, Hkv, rows, D, &c->k_strides, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "cache->v", n0, Hkv, rows, Dv, &c->v_strides, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_view_span(fn, "cache->k", n0, Hkv, rows, D, &c->k_strides, &kb)) != MHA_STATUS_SUCCESS ||
      (st = mha_view_span(fn, "cache->v", n0, Hkv, rows, Dv, &c->v_strides, &vb)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if (c->dtype == MHA_DTYPE_INT8) {
    if (c->k_scales == NULL || c->v_scales == NULL) {
      return mha_error(MHA_STATUS_NULL_POINTER, "%s: cache->%s is NULL (an int8 cache needs its scales)", fn,
                       c->k_scales == NULL ? "k_scales" : "v_scales");
    }
    if ((st = mha_check_view(fn, "cache->scale_strides", n0, Hkv, rows, 1, &c->scale_strides, 0)) !=
        MHA_STATUS_SUCCESS) {
      return st;
    }
  }
  /* the spans were counted in floats */
  *k_bytes = kb / sizeof(float) * mha_dtype_size(c->dtype);
  *v_bytes = vb / sizeof(float) * mha_dtype_size(c->dtype);
  if (T > limit) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: %lld tokens per entry, past the %lld the cache holds",
                     fn, (long long)T, (long long)limit);
  }
  /* per entry: its positions, and the table slots of a paged cache; a
   * contiguous cache read from token 0 has nothing per entry to check, so B
   * (which may be large for a valid descriptor) costs nothing there */
  const int64_t entries = bs == 0 && first == NULL ? 0 : B;
  for (int64_t b = 0; b < entries; b++) {
    /* entry b reads [0, lens[b]) (lens[b] <= T, validated), or uses [first[b], first[b] + T) */
    const int64_t start = first != NULL ? first[b] : 0, n = lens != NULL && first == NULL ? lens[b] : T;
    if ((st = mha_kv_cache_check_range(fn, c, b, start, n)) != MHA_STATUS_SUCCESS) return st;
  }
  return MHA_STATUS_SUCCESS;
}

size_t mha_kv_cache_scale_bytes(const mha_kv_cache* c, int64_t B, int64_t Hkv) {
  if (c->dtype != MHA_DTYPE_INT8) return 0;
  size_t bytes = 0;
  const int64_t n0 = c->block_size != 0 ? c->num_blocks : B, rows = c->block_size != 0 ? c->block_size : c->capacity;
  /* checked by mha_kv_cache_check: cannot fail */
  (void)mha_view_span("", "", n0, Hkv, rows, 1, &c->scale_strides, &bytes);
  return bytes;
}

/* The tokens a cache holds per entry: capacity, or max_blocks·block_size
 * (the product checked by mha_kv_cache_check). */
static int64_t mha_kv_cache_limit(const mha_kv_cache* c) {
  return c->block_size == 0 ? c->capacity : c->max_blocks * c->block_size;
}

mha_status mha_kv_cache_check_range(const char* fn, const mha_kv_cache* c, int64_t b, int64_t start, int64_t n) {
  const int64_t limit = mha_kv_cache_limit(c), bs = c->block_size;
  if (start < 0 || n < 0 || n > limit || start > limit - n) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: entry %lld uses cache tokens [%lld, %lld + %lld): outside [0, %lld)", fn, (long long)b,
                     (long long)start, (long long)start, (long long)n, (long long)limit);
  }
  if (bs == 0 || n == 0) return MHA_STATUS_SUCCESS;
  for (int64_t s = start / bs; s <= (start + n - 1) / bs; s++) {
    const int32_t blk = c->block_table[b * c->max_blocks + s];
    if (blk < 0 || blk >= c->num_blocks) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                       "%s: cache->block_table[%lld][%lld] = %d is outside [0, num_blocks = %lld)", fn,
                       (long long)b, (long long)s, (int)blk, (long long)c->num_blocks);
    }
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_kv_cache_validate(const char* fn, const mha_attention_desc* d, const mha_kv_cache* c,
                                 size_t* k_bytes, size_t* v_bytes) {
  /* entry b reads tokens [0, kv_len[b]) (validated <= Tk), or [0, Tk) */
  return mha_kv_cache_check(fn, c, d->B, d->Hkv, d->D, d->Dv, NULL, d->mask.kv_len, d->Tk, k_bytes, v_bytes);
}

mha_attention_desc mha_kv_desc(const mha_attention_desc* desc) {
  mha_attention_desc d = *desc;
  const mha_strides kr = {0, 0, d.D}, vr = {0, 0, d.Dv};
  d.k = kr;
  d.v = vr;
  return d;
}

/* A cache call's desc and cache, read by the growth rule (mha.h, "ABI"):
 * *d is desc with k and v views the cache's layout replaces (mha_kv_desc). */
static mha_status mha_kv_call_read(const char* fn, const mha_attention_desc* desc, const mha_kv_cache* cache,
                                   mha_attention_desc* d, mha_kv_cache* cc) {
  mha_attention_desc read;
  mha_status st;
  if ((st = mha_desc_read(fn, desc, &read)) != MHA_STATUS_SUCCESS ||
      (st = mha_kv_cache_read(fn, cache, cc)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  *d = mha_kv_desc(&read);
  return MHA_STATUS_SUCCESS;
}

/* mha_attention_kv_f32 and mha_attention_kv: q and out hold elements of io_dt. */
static mha_status mha_kv_call(const char* fn, const mha_attention_desc* desc, mha_dtype io_dt, const void* q,
                              const mha_kv_cache* caller_cache, void* out, float* weights) {
  mha_attention_desc d;
  mha_kv_cache cc;
  mha_status st = mha_kv_call_read(fn, desc, caller_cache, &d, &cc);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kv_cache* cache = &cc;
  static const float any = 0.0f;
  st = mha_attention_validate(fn, &d, q, &any, &any, out, weights != NULL);
  if (st != MHA_STATUS_SUCCESS) return st;
  size_t kb, vb, rot_table = 0;
  if ((st = mha_kv_cache_validate(fn, &d, cache, &kb, &vb)) != MHA_STATUS_SUCCESS) return st;
  mha_rotary rot;
  memset(&rot, 0, sizeof rot);
  if (d.rotary != NULL) {
    if ((st = mha_rotary_read(fn, d.rotary, d.D, &rot, &rot_table)) != MHA_STATUS_SUCCESS) return st;
    d.rotary = &rot;
  }
  /* the core's rule (without desc's k and v), the cache and its table, the
   * rotary's table and positions as inputs */
  const size_t ntable = cache->block_size != 0 ? (size_t)(d.B * cache->max_blocks) * sizeof(int32_t) : 0;
  const size_t npos = rot.positions != NULL ? (size_t)(d.B * d.Tq) * sizeof(int32_t) : 0;
  const size_t nscale = mha_kv_cache_scale_bytes(cache, d.B, d.Hkv);
  const mha_span cache_spans[] = {{"cache->k", cache->k, kb},
                                  {"cache->v", cache->v, vb},
                                  {"cache->block_table", cache->block_table, ntable},
                                  {"rotary->cos", rot.cos, rot_table},
                                  {"rotary->sin", rot.sin, rot_table},
                                  {"rotary->positions", rot.positions, npos},
                                  {"cache->k_scales", cache->k_scales, nscale},
                                  {"cache->v_scales", cache->v_scales, nscale}};
  if ((st = mha_attention_check_overlap(fn, &d, mha_dtype_size(io_dt), q, NULL, NULL, out, weights, cache_spans, 8)) !=
      MHA_STATUS_SUCCESS) {
    return st;
  }
  mha_call c;
  st = mha_call_plan(fn, "mha_attention_kv_workspace_size", &d, weights != NULL, NULL, &c);
  if (st != MHA_STATUS_SUCCESS || (st = mha_attention_check_heads(fn, &d)) != MHA_STATUS_SUCCESS) return st;
  if (d.rotary != NULL &&
      (st = mha_rotary_check_queries(fn, &rot, d.B, NULL, d.Tq, d.mask.kv_len, d.Tk)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  const mha_team team = mha_call_team(&c, &d);
  st = mha_attention_run(c.kr, &d, q, NULL, NULL, cache, io_dt, out, weights, team, c.ws);
  mha_trace_end(team.tracer);
  return st;
}

mha_status mha_attention_kv_f32(const mha_attention_desc* desc, const float* q, const mha_kv_cache* cache,
                                float* out, float* weights) {
  return mha_kv_call("mha_attention_kv_f32", desc, MHA_DTYPE_F32, q, cache, out, weights);
}

mha_status mha_attention_kv(const mha_attention_desc* desc, mha_dtype dtype, const void* q, const mha_kv_cache* cache,
                            void* out, float* weights) {
  static const char fn[] = "mha_attention_kv";
  const mha_status st = mha_io_dtype_check(fn, dtype);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_kv_call(fn, desc, dtype, q, cache, out, weights);
}

mha_status mha_attention_kv_workspace_size(const mha_attention_desc* desc, const mha_kv_cache* caller_cache,
                                           int with_weights, size_t* bytes) {
  static const char fn[] = "mha_attention_kv_workspace_size";
  if (bytes == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: bytes is NULL", fn);
  mha_attention_desc d;
  mha_kv_cache cc;
  mha_status st = mha_kv_call_read(fn, desc, caller_cache, &d, &cc);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kv_cache* cache = &cc;
  static const float any = 0.0f;
  st = mha_attention_validate(fn, &d, &any, &any, &any, &any, with_weights != 0);
  if (st != MHA_STATUS_SUCCESS) return st;
  size_t kb, vb, rot_table;
  if ((st = mha_kv_cache_validate(fn, &d, cache, &kb, &vb)) != MHA_STATUS_SUCCESS) return st;
  mha_rotary rot;
  if (d.rotary != NULL && (st = mha_rotary_read(fn, d.rotary, d.D, &rot, &rot_table)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  mha_call c;
  if ((st = mha_call_plan(fn, NULL, &d, with_weights != 0, NULL, &c)) != MHA_STATUS_SUCCESS) return st;
  *bytes = c.floats * sizeof(float) + 64;
  return MHA_STATUS_SUCCESS;
}
