/*
 * The 16-bit core: mha_attention() with Q, K, V and out in f16 or bf16 (the
 * shape's kv_dtype), on contiguous [B, H, T, D] tensors, timed, with a
 * workspace of mha_attention_workspace_size() bytes first touched in setup.
 * bench-data.c rounds Q, K and V to the type, so the fp32 twin (the core on
 * the same values) and mha's reference hold what the 16-bit tensors hold;
 * the output is widened for the check, outside the timed call.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct mha_bench_core16_state {
  mha_attention_desc desc;
  mha_dtype dtype;
  uint16_t *q, *k, *v, *out;
  float* outf;
  size_t out_len;
  void* workspace;
} mha_bench_core16_state;

static void mha_bench_core16_teardown(void* p) {
  mha_bench_core16_state* st = p;
  if (st == NULL) return;
  free(st->q);
  free(st->k);
  free(st->v);
  free(st->out);
  free(st->outf);
  free(st->workspace);
  free(st);
}

static int mha_bench_core16_setup(const mha_bench_data* d, int threads, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_core16_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  st->dtype = (mha_dtype)s->kv_dtype;
  const size_t nq = (size_t)(s->B * s->H * s->Tq * s->D), nk = (size_t)(s->B * s->Hkv * s->Tk * s->D);
  st->q = mha_bench_narrow16(d->q, nq, st->dtype);
  st->k = mha_bench_narrow16(d->k, nk, st->dtype);
  st->v = mha_bench_narrow16(d->v, nk, st->dtype);
  st->out_len = d->out_len;
  st->out = malloc(d->out_len * sizeof(uint16_t));
  st->outf = malloc(d->out_len * sizeof(float));
  if (st->q == NULL || st->k == NULL || st->v == NULL || st->out == NULL || st->outf == NULL) {
    mha_bench_core16_teardown(st);
    return mha_bench_fail("out of memory for the 16-bit tensors of %s", s->preset);
  }
  mha_attention_desc_init(&st->desc, s->B, s->H, s->Hkv, s->Tq, s->Tk, s->D, s->D);
  st->desc.mask.causal = s->causal;
  st->desc.num_threads = threads;
  size_t bytes = 0;
  mha_status rc = mha_attention_workspace_size(&st->desc, 0, &bytes);
  if (rc == MHA_STATUS_SUCCESS) {
    st->workspace = malloc(bytes);
    if (st->workspace == NULL) rc = MHA_STATUS_OUT_OF_MEMORY;
  }
  if (rc != MHA_STATUS_SUCCESS) {
    mha_bench_core16_teardown(st);
    return mha_bench_fail("workspace of %s: %s", s->preset, mha_status_string(rc));
  }
  memset(st->workspace, 0, bytes); /* first touch here, not in the timed call */
  st->desc.workspace = st->workspace;
  st->desc.workspace_size = bytes;
  *out = st;
  return 0;
}

static int mha_bench_core16_run(void* p) {
  mha_bench_core16_state* st = p;
  const mha_status rc = mha_attention(&st->desc, st->dtype, st->q, st->k, st->v, st->out, NULL);
  return rc == MHA_STATUS_SUCCESS ? 0 : mha_bench_fail("mha_attention: %s", mha_last_error());
}

static const float* mha_bench_core16_output(const void* p) {
  const mha_bench_core16_state* st = p;
  mha_bench_widen16(st->out, st->out_len, st->dtype, st->outf);
  return st->outf;
}

const mha_bench_impl mha_bench_core_16 = {
    "mha_16", MHA_BENCH_CORE, mha_bench_core16_setup, mha_bench_core16_run,
    mha_bench_core16_output, mha_bench_core16_teardown, mha_bench_active_isa};
