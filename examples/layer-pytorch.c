/* layer-pytorch: an mha layer built from the weights of a PyTorch
 *
 *   attn = nn.MultiheadAttention(embed_dim=E, num_heads=H, batch_first=True)
 *   out, _ = attn(x, x, x, key_padding_mask=pad)
 *
 * with PyTorch's tensors as they are in its state_dict (no transposing):
 *   in_proj_weight  [3E, E]  rows 0..E-1 project q, E..2E-1 k, 2E..3E-1 v,
 *                            each [out, in] like nn.Linear.weight
 *   in_proj_bias    [3E]
 *   out_proj.weight [E, E]   [out, in]: mha's MHA_WEIGHTS_OUT_IN layout
 *   out_proj.bias   [E]
 * The weights here are deterministic pseudo-random numbers in place of a
 * checkpoint's. PyTorch's key_padding_mask [B, T] (True = padding) with the
 * padding at the end of each sequence is mha's kv_len[b] = the number of real
 * tokens: keys j >= kv_len[b] are hidden from every query row (the padded
 * query rows are still computed, as in PyTorch).
 *
 * The result is checked against a straightforward implementation of the same
 * layer (double accumulation); the program prints the largest difference and
 * exits 1 if it exceeds 1e-4. */
#include <math.h>
#include <stdio.h>

#include "mha.h"

enum { B = 3, T = 12, E = 64, H = 8, D = E / H };

/* A small deterministic generator: uniform in [-1, 1). */
static float frand(unsigned* s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)(*s >> 8) / 8388608.0f - 1.0f;
}

/* What nn.MultiheadAttention computes, one (b, t) row at a time, in double. */
static void naive_layer(const float* x, const float* in_w, const float* in_b, const float* out_w,
                        const float* out_b, const int32_t* kv_len, double* out) {
  static double qkv[B][T][3 * E]; /* x · in_proj_weightᵀ + in_proj_bias */
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int r = 0; r < 3 * E; r++) {
        double acc = in_b[r];
        for (int i = 0; i < E; i++) acc += (double)in_w[r * E + i] * x[(b * T + t) * E + i];
        qkv[b][t][r] = acc;
      }
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      double ctx[E]; /* the heads side by side, before out_proj */
      for (int h = 0; h < H; h++) {
        const double* q = &qkv[b][t][h * D];
        double p[T], m = -INFINITY, sum = 0.0;
        for (int j = 0; j < kv_len[b]; j++) {
          const double* k = &qkv[b][j][E + h * D];
          double s = 0.0;
          for (int d = 0; d < D; d++) s += q[d] * k[d];
          p[j] = s / sqrt((double)D);
          if (p[j] > m) m = p[j];
        }
        for (int j = 0; j < kv_len[b]; j++) sum += (p[j] = exp(p[j] - m));
        for (int d = 0; d < D; d++) {
          double acc = 0.0;
          for (int j = 0; j < kv_len[b]; j++) acc += p[j] / sum * qkv[b][j][2 * E + h * D + d];
          ctx[h * D + d] = acc;
        }
      }
      for (int o = 0; o < E; o++) { /* ctx · out_proj.weightᵀ + out_proj.bias */
        double acc = out_b[o];
        for (int c = 0; c < E; c++) acc += (double)out_w[o * E + c] * ctx[c];
        out[(b * T + t) * E + o] = acc;
      }
    }
}

int main(void) {
  static float in_proj_weight[3 * E * E], in_proj_bias[3 * E], out_proj_weight[E * E],
      out_proj_bias[E], x[B * T * E], out[B * T * E];
  static double ref[B * T * E];
  const int32_t kv_len[B] = {T, 9, 4}; /* entry 1 has 3 padding tokens, entry 2 has 8 */

  /* The "checkpoint": weights of the scale nn.MultiheadAttention starts with. */
  unsigned seed = 2024;
  const float w_scale = 1.0f / sqrtf((float)E);
  for (int i = 0; i < 3 * E * E; i++) in_proj_weight[i] = w_scale * frand(&seed);
  for (int i = 0; i < 3 * E; i++) in_proj_bias[i] = 0.1f * frand(&seed);
  for (int i = 0; i < E * E; i++) out_proj_weight[i] = w_scale * frand(&seed);
  for (int i = 0; i < E; i++) out_proj_bias[i] = 0.1f * frand(&seed);
  for (int i = 0; i < B * T * E; i++) x[i] = frand(&seed);

  /* The plan: in_proj_weight is always [3E, E] OUT_IN; `layout` says how w_o
   * (out_proj.weight) is stored. D = E / H, Hkv = H: PyTorch's layout. */
  mha_layer_desc desc = {0};
  desc.d_model = E;
  desc.H = H;
  desc.layout = MHA_WEIGHTS_OUT_IN;
  desc.in_proj_weight = in_proj_weight;
  desc.in_proj_bias = in_proj_bias;
  desc.w_o = out_proj_weight;
  desc.b_o = out_proj_bias;
  mha_layer* layer = NULL;
  mha_status st = mha_layer_create(&desc, &layer); /* packs the weights once */
  if (st != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "mha_layer_create: %s: %s\n", mha_status_string(st), mha_last_error());
    return 1;
  }

  /* One forward: self-attention (x_k = NULL), the key-padding mask as kv_len. */
  mha_layer_args args;
  mha_layer_args_init(&args);
  args.B = B;
  args.Tq = T;
  args.x_q = x;           /* [B, T, E], batch_first */
  args.out = out;         /* [B, T, E] */
  args.mask.kv_len = kv_len;
  st = mha_layer_forward(layer, &args);
  mha_layer_destroy(layer); /* the plan could serve many more forwards */
  if (st != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "mha_layer_forward: %s: %s\n", mha_status_string(st), mha_last_error());
    return 1;
  }

  naive_layer(x, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, kv_len, ref);
  double max_err = 0.0;
  for (int i = 0; i < B * T * E; i++) {
    const double err = fabs(out[i] - ref[i]);
    if (!(err <= max_err)) max_err = err;
    if (err != err) break; /* a NaN: keep it, it fails the check */
  }
  const double tol = 1e-4;
  printf("layer-pytorch: B=%d T=%d E=%d H=%d, kv_len {%d, %d, %d}\n", B, T, E, H, kv_len[0],
         kv_len[1], kv_len[2]);
  printf("max |mha - naive| = %.3g (tolerance %g) -> %s\n", max_err, tol,
         max_err <= tol ? "OK" : "MISMATCH");
  return max_err <= tol ? 0 : 1;
}
