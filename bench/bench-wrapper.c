/*
 * The textbook wrapper layout, for the heads study: H independent
 * single-head attentions (H mha layers with H = 1, head width d_model / H,
 * w_o NULL) run one after another, their outputs concatenated, then the
 * output projection. Same weights as the fused layer (head h's rows of the
 * nn.Linear-layout w_q, and of w_k / w_v for its K/V head), so the output is
 * checked against the fused layer's.
 *
 * The output projection uses mha's own projection GEMM (the internal
 * mha_pack_w / mha_gemm_f32 of kernels/mha/internal.h: the public API has no
 * GEMM), so fused and wrapper differ only in the layout of the work.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "mha/internal.h"

typedef struct mha_bench_wrapper_state {
  int64_t B, T, H, Dh, d_model;
  int threads;
  mha_layer** heads;   /* [H] */
  float* head_out;     /* [H][B·T·Dh] */
  float* cat;          /* [B·T, H·Dh] */
  float* out;          /* [B·T, d_model] */
  const float* x;
  int causal;
  const mha_kernels* kr;
  mha_packed_w wo;
} mha_bench_wrapper_state;

static void mha_bench_wrapper_teardown(void* p) {
  mha_bench_wrapper_state* st = p;
  if (st == NULL) return;
  if (st->heads != NULL) {
    for (int64_t h = 0; h < st->H; h++) mha_layer_destroy(st->heads[h]);
  }
  free(st->heads);
  mha_packed_w_free(&st->wo);
  free(st->head_out);
  free(st->cat);
  free(st->out);
  free(st);
}

static int mha_bench_wrapper_setup(const mha_bench_data* d, int threads, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_wrapper_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  st->B = s->B;
  st->T = s->Tq;
  st->H = s->H;
  st->Dh = s->D;
  st->d_model = s->d_model;
  st->threads = threads;
  st->x = d->x;
  st->causal = s->causal;
  const size_t rows = (size_t)(s->B * s->Tq), hd = (size_t)(s->H * s->D);
  st->heads = calloc((size_t)s->H, sizeof *st->heads);
  st->head_out = malloc(rows * hd * sizeof(float));
  st->cat = malloc(rows * hd * sizeof(float));
  st->out = malloc(d->out_len * sizeof(float));
  if (!st->heads || !st->head_out || !st->cat || !st->out) {
    mha_bench_wrapper_teardown(st);
    return mha_bench_fail("out of memory");
  }
  mha_status status;
  const int64_t G = s->H / s->Hkv, dm = s->d_model, Dh = s->D;
  for (int64_t h = 0; h < s->H; h++) {
    const int64_t g = h / G; /* the K/V head of query head h */
    mha_layer_desc desc = {.d_model = dm, .H = 1, .Hkv = 1, .D = Dh, .Dv = Dh,
                           .layout = MHA_WEIGHTS_OUT_IN,
                           .w_q = d->w_q + h * Dh * dm, .w_k = d->w_k + g * Dh * dm,
                           .w_v = d->w_v + g * Dh * dm, .w_o = NULL};
    if ((status = mha_layer_create(&desc, &st->heads[h])) != MHA_STATUS_SUCCESS) goto fail;
  }
  if ((status = mha_kernels_active(&st->kr)) != MHA_STATUS_SUCCESS) goto fail;
  /* w_o is [d_model, H·Dh] (out, in): element (in k, out n) at w_o[n·H·Dh + k] */
  status = mha_pack_w(st->kr, s->H * Dh, dm, d->w_o, MHA_DTYPE_F32, 1, s->H * Dh, &st->wo);
  if (status != MHA_STATUS_SUCCESS) goto fail;
  *out = st;
  return 0;
fail:
  mha_bench_fail("wrapper setup: %s: %s", mha_status_string(status), mha_last_error());
  mha_bench_wrapper_teardown(st);
  return -1;
}

static int mha_bench_wrapper_run(void* p) {
  mha_bench_wrapper_state* st = p;
  const int64_t rows = st->B * st->T, Dh = st->Dh, H = st->H;
  for (int64_t h = 0; h < H; h++) {
    mha_layer_args args;
    mha_layer_args_init(&args);
    args.B = st->B;
    args.Tq = st->T;
    args.x_q = st->x;
    args.out = st->head_out + h * rows * Dh;
    args.mask.causal = st->causal;
    args.num_threads = st->threads;
    const mha_status status = mha_layer_forward(st->heads[h], &args);
    if (status != MHA_STATUS_SUCCESS) {
      return mha_bench_fail("mha_layer_forward (head %lld): %s: %s", (long long)h,
                            mha_status_string(status), mha_last_error());
    }
  }
  /* concatenate: cat[r, h·Dh + c] = head h's out[r, c] */
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t h = 0; h < H; h++) {
      memcpy(st->cat + r * H * Dh + h * Dh, st->head_out + (h * rows + r) * Dh,
             (size_t)Dh * sizeof(float));
    }
  }
  mha_gemm_f32(st->kr, rows, st->cat, H * Dh, &st->wo, NULL, st->out, st->d_model, (mha_team){NULL, st->threads, NULL});
  return 0;
}

static const float* mha_bench_wrapper_output(const void* p) {
  return ((const mha_bench_wrapper_state*)p)->out;
}

const mha_bench_impl mha_bench_wrapper = {
    "mha_wrapper", MHA_BENCH_LAYER, mha_bench_wrapper_setup, mha_bench_wrapper_run,
    mha_bench_wrapper_output, mha_bench_wrapper_teardown, mha_bench_active_isa};
