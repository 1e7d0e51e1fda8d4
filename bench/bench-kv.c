/*
 * The attention core over a K/V cache: mha_attention_kv_f32() with K and V
 * in the shape's element type (fp32, f16, bf16), contiguous or paged.
 *
 * The cache is filled in setup through mha_kv_cache_write (as an engine
 * appends), from the shape's K and V, which bench-data.c already rounded to
 * the type: the output is then bitwise the fp32 core's on the same values,
 * and the check against mha's reference is exact. A paged cache's blocks are
 * shuffled over a pool with a spare block per entry, as blocks end up after
 * requests come and go; the table is [B, ⌈Tk / page⌉].
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct mha_bench_kv_state {
  mha_attention_desc desc;
  mha_kv_cache cache;
  const float* q;
  float* out;
  void *k, *v, *workspace;
  int32_t *table, *kv_len;
} mha_bench_kv_state;

static void mha_bench_kv_teardown(void* p) {
  mha_bench_kv_state* st = p;
  if (st == NULL) return;
  free(st->out);
  free(st->k);
  free(st->v);
  free(st->workspace);
  free(st->table);
  free(st->kv_len);
  free(st);
}

/* a fixed-seed permutation of 0 .. n−1 (xorshift, Fisher–Yates) */
static void mha_bench_shuffle(int32_t* a, int64_t n) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int64_t i = 0; i < n; i++) a[i] = (int32_t)i;
  for (int64_t i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const int64_t j = (int64_t)(x % (uint64_t)(i + 1));
    const int32_t t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

static int mha_bench_kv_setup(const mha_bench_data* d, int threads, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_kv_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  const size_t esz = s->kv_dtype == MHA_DTYPE_F32 ? 4 : 2;
  int64_t rows, blocks = 0, per = 0; /* rows of each [.., Hkv, .., D] buffer */
  if (s->page > 0) {
    per = (s->Tk + s->page - 1) / s->page;
    blocks = s->B * (per + 1);
    rows = blocks * s->page;
  } else {
    rows = s->B * s->Tk;
  }
  const size_t elems = (size_t)rows * (size_t)s->Hkv * (size_t)s->D;
  st->out = malloc(d->out_len * sizeof(float));
  st->k = malloc(elems * esz);
  st->v = malloc(elems * esz);
  st->kv_len = malloc((size_t)s->B * sizeof(int32_t));
  int32_t* pos = calloc((size_t)s->B, sizeof(int32_t));
  if (s->page > 0) st->table = malloc((size_t)(s->B * per) * sizeof(int32_t));
  int32_t* perm = s->page > 0 ? malloc((size_t)blocks * sizeof(int32_t)) : NULL;
  if (st->out == NULL || st->k == NULL || st->v == NULL || st->kv_len == NULL || pos == NULL ||
      (s->page > 0 && (st->table == NULL || perm == NULL))) {
    free(pos);
    free(perm);
    mha_bench_kv_teardown(st);
    return mha_bench_fail("out of memory for the cache of %s", s->preset);
  }
  if (s->page > 0) {
    mha_bench_shuffle(perm, blocks);
    for (int64_t i = 0; i < s->B * per; i++) st->table[i] = perm[i];
    mha_kv_cache_init_paged(&st->cache, (mha_dtype)s->kv_dtype, st->k, st->v, blocks, s->page, s->Hkv, s->D,
                            s->D, st->table, per);
  } else {
    mha_kv_cache_init(&st->cache, (mha_dtype)s->kv_dtype, st->k, st->v, s->Hkv, s->Tk, s->D, s->D);
  }
  free(perm);
  /* first touch by the threads that will read it, then the values */
  memset(st->k, 0, elems * esz);
  memset(st->v, 0, elems * esz);
  const mha_strides in = mha_strides_bhtd(s->Hkv, s->Tk, s->D);
  mha_status status = mha_kv_cache_write(&st->cache, s->B, s->Hkv, s->Tk, s->D, s->D, pos, d->k, in, d->v, in);
  free(pos);
  if (status != MHA_STATUS_SUCCESS) {
    mha_bench_kv_teardown(st);
    return mha_bench_fail("mha_kv_cache_write: %s: %s", mha_status_string(status), mha_last_error());
  }
  mha_attention_desc_init(&st->desc, s->B, s->H, s->Hkv, s->Tq, s->Tk, s->D, s->D);
  st->desc.mask.causal = s->causal;
  if (s->mixed) {
    for (int64_t b = 0; b < s->B; b++) st->kv_len[b] = (int32_t)mha_bench_kv_len(s, b);
    st->desc.mask.kv_len = st->kv_len;
    st->desc.mask.align = MHA_ALIGN_KV_END;
  }
  st->desc.num_threads = threads;
  st->q = d->q;
  size_t bytes = 0;
  status = mha_attention_kv_workspace_size(&st->desc, &st->cache, 0, &bytes);
  if (status != MHA_STATUS_SUCCESS || (st->workspace = malloc(bytes)) == NULL) {
    mha_bench_kv_teardown(st);
    return mha_bench_fail("kv workspace (%zu bytes): %s", bytes, mha_last_error());
  }
  memset(st->workspace, 0, bytes);
  st->desc.workspace = st->workspace;
  st->desc.workspace_size = bytes;
  *out = st;
  return 0;
}

static int mha_bench_kv_run(void* p) {
  mha_bench_kv_state* st = p;
  const mha_status status = mha_attention_kv_f32(&st->desc, st->q, &st->cache, st->out, NULL);
  if (status != MHA_STATUS_SUCCESS) {
    return mha_bench_fail("mha_attention_kv_f32: %s: %s", mha_status_string(status), mha_last_error());
  }
  return 0;
}

static const float* mha_bench_kv_output(const void* p) { return ((const mha_bench_kv_state*)p)->out; }

const mha_bench_impl mha_bench_core_kv = {
    "mha_kv", MHA_BENCH_CORE, mha_bench_kv_setup, mha_bench_kv_run,
    mha_bench_kv_output, mha_bench_kv_teardown, mha_bench_active_isa};
