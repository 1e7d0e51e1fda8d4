/* A program outside mha's tree, built against an installed libmha
 * (tests/install/run.sh): causal grouped-query attention on a small problem,
 * checked against a naive double-precision loop. Exits 1 on a mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <mha.h>

enum { B = 2, H = 4, HKV = 2, T = 9, D = 8 };

static float frand(unsigned* s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)(*s >> 8) / 8388608.0f - 1.0f;
}

int main(void) {
  static float q[B * H * T * D], k[B * HKV * T * D], v[B * HKV * T * D], out[B * H * T * D];
  unsigned seed = 7;
  for (int i = 0; i < B * H * T * D; i++) q[i] = frand(&seed);
  for (int i = 0; i < B * HKV * T * D; i++) { k[i] = frand(&seed); v[i] = frand(&seed); }

  mha_attention_desc desc;
  mha_attention_desc_init(&desc, B, H, HKV, T, T, D, D); /* contiguous [B, H, T, D] views */
  desc.mask.causal = 1;
  mha_status st = mha_attention_f32(&desc, q, k, v, out, NULL);
  if (st != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "consumer: %s: %s\n", mha_status_string(st), mha_last_error());
    return 1;
  }

  double max_err = 0.0;
  int bad = 0; /* values off by more than the tolerance, NaN included */
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int g = h / (H / HKV);
      const float* kh = k + (b * HKV + g) * T * D;
      const float* vh = v + (b * HKV + g) * T * D;
      for (int i = 0; i < T; i++) {
        const float* qi = q + ((b * H + h) * T + i) * D;
        double s[T], m = -INFINITY, sum = 0.0;
        for (int j = 0; j <= i; j++) {
          s[j] = 0.0;
          for (int d = 0; d < D; d++) s[j] += (double)qi[d] * kh[j * D + d];
          s[j] /= sqrt((double)D);
          if (s[j] > m) m = s[j];
        }
        for (int j = 0; j <= i; j++) sum += (s[j] = exp(s[j] - m));
        for (int d = 0; d < D; d++) {
          double o = 0.0;
          for (int j = 0; j <= i; j++) o += s[j] / sum * vh[j * D + d];
          const double err = fabs(o - out[((b * H + h) * T + i) * D + d]);
          if (err > max_err) max_err = err;
          if (!(err <= 1e-5)) bad++;
        }
      }
    }
  mha_isa isa = MHA_ISA_SCALAR;
  mha_get_isa(&isa);
  printf("consumer: mha %d.%d.%d, isa %s, max |mha - naive| = %.3g, %d values off\n",
         MHA_VERSION_MAJOR, MHA_VERSION_MINOR, MHA_VERSION_PATCH, mha_isa_name(isa), max_err, bad);
  return bad == 0 ? 0 : 1;
}
