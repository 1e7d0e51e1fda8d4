/*
 * The attention core: mha_attention_f32() on contiguous [B, H, T, D]
 * tensors, timed, with a workspace of mha_attention_workspace_size() bytes
 * first touched in setup (as an engine keeps one: the timed call allocates
 * nothing and takes no page faults). The _scalar twin forces MHA_ISA_SCALAR around each call
 * (the core takes the kernel set in use at call time) and restores the one
 * that was in use. The _pool twin runs on the reference pthread pool
 * (examples/threadpool/pthread-pool.c) instead of OpenMP: the pool is made in
 * setup with the row's thread count (desc.threadpool, so the workspace query
 * counts its workers) and destroyed at teardown.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "threadpool/pthread-pool.h"

typedef struct mha_bench_core_state {
  mha_attention_desc desc;
  const float *q, *k, *v;
  float* out;
  void* workspace;
  float *slopes, *sinks; /* [H] when the shape asks for ALiBi / sinks */
  int32_t* kv_len;       /* [B] with mixed lengths */
  int scalar;
  mha_isa prev;
  tpool* pool; /* the _pool twin's */
  mha_threadpool tp;
} mha_bench_core_state;

static void mha_bench_core_teardown(void* p) {
  mha_bench_core_state* st = p;
  if (st == NULL) return;
  free(st->out);
  free(st->workspace);
  free(st->slopes);
  free(st->sinks);
  free(st->kv_len);
  tpool_destroy(st->pool);
  free(st);
}

static int mha_bench_core_make(const mha_bench_data* d, int threads, int scalar, int pool, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_core_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  st->out = malloc(d->out_len * sizeof(float));
  if (st->out == NULL) {
    free(st);
    return mha_bench_fail("out of memory");
  }
  mha_attention_desc_init(&st->desc, s->B, s->H, s->Hkv, s->Tq, s->Tk, s->D, s->D);
  st->desc.mask.causal = s->causal;
  if (s->window > 0) {
    st->desc.mask.window = 1;
    st->desc.mask.window_left = s->window - 1;
    st->desc.mask.window_right = 0;
  }
  st->desc.mask.softcap = s->softcap;
  if (s->alibi || s->sinks) {
    st->slopes = malloc((size_t)s->H * sizeof(float));
    st->sinks = malloc((size_t)s->H * sizeof(float));
    if (st->slopes == NULL || st->sinks == NULL) {
      mha_bench_core_teardown(st);
      return mha_bench_fail("out of memory");
    }
    for (int64_t h = 0; h < s->H; h++) {
      st->slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)s->H); /* ALiBi's geometric slopes */
      st->sinks[h] = 0.25f * (float)(h % 5);                      /* learned-looking logits */
    }
    if (s->alibi) st->desc.mask.alibi_slopes = st->slopes;
    if (s->sinks) st->desc.mask.sinks = st->sinks;
  }
  if (s->mixed) {
    if ((st->kv_len = malloc((size_t)s->B * sizeof(int32_t))) == NULL) {
      mha_bench_core_teardown(st);
      return mha_bench_fail("out of memory");
    }
    for (int64_t b = 0; b < s->B; b++) st->kv_len[b] = (int32_t)mha_bench_kv_len(s, b);
    st->desc.mask.kv_len = st->kv_len;
    st->desc.mask.align = MHA_ALIGN_KV_END;
  }
  st->desc.num_threads = threads;
  st->q = d->q;
  st->k = d->k;
  st->v = d->v;
  st->scalar = scalar;
  if (scalar) st->desc.isa = MHA_ISA_SCALAR; /* the workspace is sized for the kernel set */
  if (pool) { /* before the workspace query: it counts the pool's workers */
    if ((st->pool = tpool_create(threads)) == NULL) {
      mha_bench_core_teardown(st);
      return mha_bench_fail("tpool_create(%d) failed", threads);
    }
    st->tp = tpool_threadpool(st->pool);
    st->desc.threadpool = &st->tp;
  }
  size_t bytes = 0;
  mha_status ws_status = mha_attention_workspace_size(&st->desc, 0, &bytes);
  if (ws_status != MHA_STATUS_SUCCESS || (st->workspace = malloc(bytes)) == NULL) {
    mha_bench_core_teardown(st);
    return mha_bench_fail("core workspace (%zu bytes): %s", bytes, mha_last_error());
  }
  memset(st->workspace, 0, bytes);
  st->desc.workspace = st->workspace;
  st->desc.workspace_size = bytes;
  if (scalar) {
    mha_status status = mha_get_isa(&st->prev);
    if (status != MHA_STATUS_SUCCESS) {
      mha_bench_core_teardown(st);
      return mha_bench_fail("mha_get_isa: %s: %s", mha_status_string(status), mha_last_error());
    }
  }
  *out = st;
  return 0;
}

static int mha_bench_core_setup(const mha_bench_data* d, int threads, void** out) {
  return mha_bench_core_make(d, threads, 0, 0, out);
}

static int mha_bench_core_setup_scalar(const mha_bench_data* d, int threads, void** out) {
  return mha_bench_core_make(d, threads, 1, 0, out);
}

static int mha_bench_core_setup_pool(const mha_bench_data* d, int threads, void** out) {
  return mha_bench_core_make(d, threads, 0, 1, out);
}

static int mha_bench_core_run(void* p) {
  mha_bench_core_state* st = p;
  if (st->scalar) mha_set_isa(MHA_ISA_SCALAR);
  const mha_status status = mha_attention_f32(&st->desc, st->q, st->k, st->v, st->out, NULL);
  if (st->scalar) mha_set_isa(st->prev);
  if (status != MHA_STATUS_SUCCESS) {
    return mha_bench_fail("mha_attention_f32: %s: %s", mha_status_string(status), mha_last_error());
  }
  return 0;
}

static const float* mha_bench_core_output(const void* p) {
  return ((const mha_bench_core_state*)p)->out;
}

static const char* mha_bench_scalar_label(void) { return "scalar"; }

static const char* mha_bench_pool_label(void) {
  static char buf[300];
  snprintf(buf, sizeof buf, "%s, pthread pool", mha_bench_active_isa());
  return buf;
}

const mha_bench_impl mha_bench_core = {
    "mha", MHA_BENCH_CORE, mha_bench_core_setup, mha_bench_core_run,
    mha_bench_core_output, mha_bench_core_teardown, mha_bench_active_isa};

const mha_bench_impl mha_bench_core_scalar = {
    "mha_scalar", MHA_BENCH_CORE, mha_bench_core_setup_scalar, mha_bench_core_run,
    mha_bench_core_output, mha_bench_core_teardown, mha_bench_scalar_label};

const mha_bench_impl mha_bench_core_pool = {
    "mha_pool", MHA_BENCH_CORE, mha_bench_core_setup_pool, mha_bench_core_run,
    mha_bench_core_output, mha_bench_core_teardown, mha_bench_pool_label};
