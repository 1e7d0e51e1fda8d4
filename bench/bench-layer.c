/*
 * The full layer: mha_layer_create() once in setup (packs the weights) and a
 * workspace of mha_layer_workspace_size() bytes, first touched there (as an
 * engine keeps one: the timed call allocates nothing and takes no page
 * faults), mha_layer_forward() timed. The _scalar twin makes its plan with
 * MHA_ISA_SCALAR forced; a plan keeps the kernel set it was packed for, so
 * the forced ISA is restored right after create.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct mha_bench_layer_state {
  mha_layer* layer;
  mha_layer_args args;
  float* out;
  void* workspace;
} mha_bench_layer_state;

static void mha_bench_layer_teardown(void* p) {
  mha_bench_layer_state* st = p;
  if (st == NULL) return;
  mha_layer_destroy(st->layer);
  free(st->out);
  free(st->workspace);
  free(st);
}

static int mha_bench_layer_make(const mha_bench_data* d, int threads, int scalar, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_layer_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  st->out = malloc(d->out_len * sizeof(float));
  if (st->out == NULL) {
    free(st);
    return mha_bench_fail("out of memory");
  }
  mha_layer_desc desc = {.d_model = s->d_model, .H = s->H, .Hkv = s->Hkv,
                         .layout = MHA_WEIGHTS_OUT_IN,
                         .w_q = d->w_q, .w_k = d->w_k, .w_v = d->w_v, .w_o = d->w_o};
  mha_isa prev = MHA_ISA_SCALAR;
  mha_status st_isa = MHA_STATUS_SUCCESS;
  if (scalar) {
    if ((st_isa = mha_get_isa(&prev)) == MHA_STATUS_SUCCESS) st_isa = mha_set_isa(MHA_ISA_SCALAR);
  }
  mha_status status = st_isa != MHA_STATUS_SUCCESS ? st_isa : mha_layer_create(&desc, &st->layer);
  if (status != MHA_STATUS_SUCCESS) {
    mha_bench_fail("mha_layer_create: %s: %s", mha_status_string(status), mha_last_error());
  }
  if (scalar && st_isa == MHA_STATUS_SUCCESS) mha_set_isa(prev);
  if (status != MHA_STATUS_SUCCESS) {
    mha_bench_layer_teardown(st);
    return -1;
  }
  mha_layer_args_init(&st->args);
  st->args.B = s->B;
  st->args.Tq = s->Tq; /* x_k = NULL: self-attention, Tk = Tq */
  st->args.x_q = d->x;
  st->args.out = st->out;
  st->args.mask.causal = s->causal;
  st->args.num_threads = threads;
  size_t bytes = 0;
  status = mha_layer_workspace_size(st->layer, &st->args, &bytes);
  if (status != MHA_STATUS_SUCCESS || (st->workspace = malloc(bytes)) == NULL) {
    mha_bench_layer_teardown(st);
    return mha_bench_fail("layer workspace (%zu bytes): %s", bytes, mha_last_error());
  }
  memset(st->workspace, 0, bytes);
  st->args.workspace = st->workspace;
  st->args.workspace_size = bytes;
  *out = st;
  return 0;
}

static int mha_bench_layer_setup(const mha_bench_data* d, int threads, void** out) {
  return mha_bench_layer_make(d, threads, 0, out);
}

static int mha_bench_layer_setup_scalar(const mha_bench_data* d, int threads, void** out) {
  return mha_bench_layer_make(d, threads, 1, out);
}

static int mha_bench_layer_run(void* p) {
  mha_bench_layer_state* st = p;
  const mha_status status = mha_layer_forward(st->layer, &st->args);
  if (status != MHA_STATUS_SUCCESS) {
    return mha_bench_fail("mha_layer_forward: %s: %s", mha_status_string(status), mha_last_error());
  }
  return 0;
}

static const float* mha_bench_layer_output(const void* p) {
  return ((const mha_bench_layer_state*)p)->out;
}

static const char* mha_bench_scalar_label(void) { return "scalar"; }

const mha_bench_impl mha_bench_layer = {
    "mha", MHA_BENCH_LAYER, mha_bench_layer_setup, mha_bench_layer_run,
    mha_bench_layer_output, mha_bench_layer_teardown, mha_bench_active_isa};

const mha_bench_impl mha_bench_layer_scalar = {
    "mha_scalar", MHA_BENCH_LAYER, mha_bench_layer_setup_scalar, mha_bench_layer_run,
    mha_bench_layer_output, mha_bench_layer_teardown, mha_bench_scalar_label};
