/* quickstart: one causal self-attention layer (d_model 64, 4 heads) on the
 * best kernel set, checked against mha's scalar reference path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "mha.h"

static float frand(unsigned* s) { *s = *s * 1664525u + 1013904223u; return (float)(*s >> 8) / 8388608.0f - 1.0f; }

int main(void) {
  enum { B = 2, T = 16, DM = 64, H = 4 };
  static float x[B * T * DM], wq[DM * DM], wk[DM * DM], wv[DM * DM], wo[DM * DM];
  static float out[B * T * DM], ref[B * T * DM];
  unsigned seed = 42;
  for (int i = 0; i < B * T * DM; i++) x[i] = frand(&seed);
  for (int i = 0; i < DM * DM; i++) {
    wq[i] = frand(&seed) * 0.2f; wk[i] = frand(&seed) * 0.2f;
    wv[i] = frand(&seed) * 0.2f; wo[i] = frand(&seed) * 0.2f;
  }

  /* the layer: Y = X·W weights [in, out], H heads of width DM / H */
  mha_layer_desc desc = {.d_model = DM, .H = H, .w_q = wq, .w_k = wk, .w_v = wv, .w_o = wo};
  mha_layer_args args;
  mha_layer_args_init(&args);
  args.B = B;
  args.Tq = T;             /* x_k = NULL: self-attention */
  args.x_q = x;
  args.out = out;
  args.mask.causal = 1;

  mha_isa isa;
  mha_status st = mha_get_isa(&isa);
  if (st != MHA_STATUS_SUCCESS) { fprintf(stderr, "%s\n", mha_last_error()); return 1; }
  mha_layer* layer;
  if ((st = mha_layer_create(&desc, &layer)) != MHA_STATUS_SUCCESS ||
      (st = mha_layer_forward(layer, &args)) != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "mha: %s: %s\n", mha_status_string(st), mha_last_error());
    return 1;
  }
  mha_layer_destroy(layer);

  /* the same layer on the scalar reference path */
  mha_set_isa(MHA_ISA_SCALAR);
  args.out = ref;
  if ((st = mha_layer_forward_once(&desc, &args)) != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "mha: %s: %s\n", mha_status_string(st), mha_last_error());
    return 1;
  }
  double max_err = 0.0;
  for (int i = 0; i < B * T * DM; i++) {
    /* not fmax: a NaN must count as an error (and aarch64 gcc 12.2 -O3 has an
     * internal compiler error on the vectorized fmax reduction) */
    const double err = fabs((double)out[i] - ref[i]);
    if (!(err <= max_err)) max_err = err;
    if (err != err) break; /* a NaN: keep it, it fails the check */
  }
  printf("mha quickstart: B=%d T=%d d_model=%d H=%d causal, isa=%s\n", B, T, DM, H, mha_isa_name(isa));
  printf("out[0][0][0..3] = %.6f %.6f %.6f %.6f\n", out[0], out[1], out[2], out[3]);
  printf("max |%s - scalar| = %.3g -> %s\n", mha_isa_name(isa), max_err, max_err < 1e-4 ? "OK" : "MISMATCH");
  return max_err < 1e-4 ? 0 : 1;
}
