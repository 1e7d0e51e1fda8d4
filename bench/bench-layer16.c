/*
 * The layer in a 16-bit type: mha_layer_create() from f16 / bf16 weights
 * (mha_layer_desc.dtype) once in setup, mha_layer_forward() with x and out
 * in that type (mha_layer_args.dtype) timed, with a workspace of
 * mha_layer_workspace_size() bytes as the fp32 row. On a set with a BF16
 * unit (neon_bf16, avx512_bf16) the bf16 row is the layer's BF16 form; elsewhere both
 * rows widen to the fp32 kernels. The shape's inputs and weights hold values
 * of the type (bench-data.c rounds them), so the fp32 row of the same preset
 * computes on the same values: the two rows' ratio is the type's cost.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct mha_bench_layer16_state {
  mha_dtype dtype;
  mha_layer* layer;
  mha_layer_args args;
  uint16_t *x, *w[4], *out;
  float* outf;
  size_t out_len;
  void* workspace;
} mha_bench_layer16_state;

static void mha_bench_layer16_teardown(void* p) {
  mha_bench_layer16_state* st = p;
  if (st == NULL) return;
  mha_layer_destroy(st->layer);
  free(st->x);
  for (int i = 0; i < 4; i++) free(st->w[i]);
  free(st->out);
  free(st->outf);
  free(st->workspace);
  free(st);
}

static int mha_bench_layer16_setup(const mha_bench_data* d, int threads, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_layer16_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  const size_t dm = (size_t)s->d_model, qd = (size_t)(s->H * s->D), kd = (size_t)(s->Hkv * s->D);
  st->dtype = (mha_dtype)s->kv_dtype;
  st->out_len = d->out_len;
  st->x = mha_bench_narrow16(d->x, (size_t)(s->B * s->Tq) * dm, st->dtype);
  st->w[0] = mha_bench_narrow16(d->w_q, qd * dm, st->dtype);
  st->w[1] = mha_bench_narrow16(d->w_k, kd * dm, st->dtype);
  st->w[2] = mha_bench_narrow16(d->w_v, kd * dm, st->dtype);
  st->w[3] = mha_bench_narrow16(d->w_o, dm * qd, st->dtype);
  st->out = malloc(st->out_len * sizeof *st->out);
  st->outf = malloc(st->out_len * sizeof *st->outf);
  if (!st->x || !st->w[0] || !st->w[1] || !st->w[2] || !st->w[3] || !st->out || !st->outf) {
    mha_bench_layer16_teardown(st);
    return mha_bench_fail("out of memory");
  }
  mha_layer_desc desc;
  mha_layer_desc_init(&desc);
  desc.d_model = s->d_model, desc.H = s->H, desc.Hkv = s->Hkv, desc.layout = MHA_WEIGHTS_OUT_IN;
  desc.w_q = (const float*)st->w[0], desc.w_k = (const float*)st->w[1];
  desc.w_v = (const float*)st->w[2], desc.w_o = (const float*)st->w[3];
  desc.dtype = st->dtype;
  mha_status status = mha_layer_create(&desc, &st->layer);
  if (status != MHA_STATUS_SUCCESS) {
    mha_bench_layer16_teardown(st);
    return mha_bench_fail("mha_layer_create: %s: %s", mha_status_string(status), mha_last_error());
  }
  mha_layer_args_init(&st->args);
  st->args.B = s->B;
  st->args.Tq = s->Tq; /* self-attention */
  st->args.x_q = (const float*)st->x;
  st->args.out = (float*)st->out;
  st->args.mask.causal = s->causal;
  st->args.num_threads = threads;
  st->args.dtype = st->dtype;
  size_t bytes = 0;
  status = mha_layer_workspace_size(st->layer, &st->args, &bytes);
  if (status != MHA_STATUS_SUCCESS || (st->workspace = malloc(bytes)) == NULL) {
    mha_bench_layer16_teardown(st);
    return mha_bench_fail("layer workspace (%zu bytes): %s", bytes, mha_last_error());
  }
  memset(st->workspace, 0, bytes); /* first touch here, not in the timed call */
  st->args.workspace = st->workspace;
  st->args.workspace_size = bytes;
  *out = st;
  return 0;
}

static int mha_bench_layer16_run(void* p) {
  mha_bench_layer16_state* st = p;
  const mha_status status = mha_layer_forward(st->layer, &st->args);
  return status == MHA_STATUS_SUCCESS ? 0 : mha_bench_fail("mha_layer_forward: %s", mha_last_error());
}

static const float* mha_bench_layer16_output(const void* p) {
  const mha_bench_layer16_state* st = p;
  mha_bench_widen16(st->out, st->out_len, st->dtype, st->outf);
  return st->outf;
}

const mha_bench_impl mha_bench_layer_16 = {
    "mha_16", MHA_BENCH_LAYER, mha_bench_layer16_setup, mha_bench_layer16_run,
    mha_bench_layer16_output, mha_bench_layer16_teardown, mha_bench_active_isa};
