/* decode-paged-f16: generation from a paged fp16 KV cache, the way serving
 * engines (vLLM, OpenVINO, IPEX) store it.
 *
 * K and V live in pools of fixed-size blocks, [NUM_BLOCKS, Hkv, BLOCK, D]
 * of IEEE half values; each sequence owns a row of the block table listing
 * its blocks, handed out in any order as it grows. A step
 *   1. appends the new token's K/V rows with mha_kv_cache_write (fp32 in,
 *      rounded to fp16 in place, at position len[b] of sequence b),
 *   2. attends the new query rows to the first len[b] + 1 tokens of each
 *      sequence (mask.kv_len, aligned per sequence with MHA_ALIGN_KV_END),
 *      reading the blocks through the table: the cache is never copied or
 *      converted as a whole; 16-bit values are widened in registers.
 * The two sequences have different lengths (a 5-token and a 19-token
 * prompt), and grouped-query heads (H = 8 query heads over Hkv = 2).
 *
 * Checks, each step:
 *   - the same values in a contiguous fp16 cache give the same bits (the
 *     layout never changes a result);
 *   - against fp32 K/V (the values before rounding to fp16) the output
 *     agrees within 2e-3: fp16 keeps 11 significant bits.
 * The program exits 1 if a check fails. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mha.h"

enum { B = 2, H = 8, HKV = 2, D = 64, BLOCK = 16, MAX_BLOCKS = 4, TMAX = BLOCK * MAX_BLOCKS };
enum { NUM_BLOCKS = 12, STEPS = 24 };

/* a deterministic value in [-1, 1) standing in for a token's projections */
static float token_value(unsigned tensor, int b, int head, int pos, int d) {
  unsigned x = (unsigned)((((tensor * B + b) * H + head) * TMAX + pos) * D + d);
  x = (x + 0x9E3779B9u) * 0x85EBCA6Bu;
  x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; x ^= x >> 16;
  return (float)(x >> 8) / 8388608.0f - 1.0f;
}

static int failed(const char* what, mha_status st) {
  if (st == MHA_STATUS_SUCCESS) return 0;
  fprintf(stderr, "%s: %s: %s\n", what, mha_status_string(st), mha_last_error());
  return 1;
}

int main(void) {
  /* the paged pools and a contiguous twin, fp16 bits */
  static uint16_t k_pool[NUM_BLOCKS * BLOCK * HKV * D], v_pool[NUM_BLOCKS * BLOCK * HKV * D];
  static uint16_t k_flat[B * HKV * TMAX * D], v_flat[B * HKV * TMAX * D];
  static float k32[B * HKV * TMAX * D], v32[B * HKV * TMAX * D]; /* fp32: the accuracy check */
  static float q[B * H * D], out[B * H * D], out_flat[B * H * D], out32[B * H * D];
  static float k_new[B * HKV * D], v_new[B * HKV * D];
  /* blocks handed out out of order, as after other requests came and went */
  const int32_t table[B * MAX_BLOCKS] = {7, 2, 10, 4, 0, 9, 5, 11};
  int32_t len[B] = {5, 19}, kv_len[B];

  mha_kv_cache paged, flat, full;
  mha_kv_cache_init_paged(&paged, MHA_DTYPE_F16, k_pool, v_pool, NUM_BLOCKS, BLOCK, HKV, D, D, table, MAX_BLOCKS);
  mha_kv_cache_init(&flat, MHA_DTYPE_F16, k_flat, v_flat, HKV, TMAX, D, D);
  mha_kv_cache_init(&full, MHA_DTYPE_F32, k32, v32, HKV, TMAX, D, D);
  const mha_kv_cache* caches[3] = {&paged, &flat, &full};

  /* the prompts, in one write: 19 tokens at positions 0 .. 18 of both
   * sequences; the first one's length is 5, so its rows 5 .. 18 are never
   * read (and the steps below write its next tokens over them) */
  {
    enum { P = 19 };
    static float kp[B * HKV * P * D], vp[B * HKV * P * D];
    for (int b = 0; b < B; b++)
      for (int g = 0; g < HKV; g++)
        for (int t = 0; t < P; t++)
          for (int d = 0; d < D; d++) {
            kp[((b * HKV + g) * P + t) * D + d] = token_value(1, b, g, t, d);
            vp[((b * HKV + g) * P + t) * D + d] = token_value(2, b, g, t, d);
          }
    const int32_t at[B] = {0, 0};
    const mha_strides rows = mha_strides_bhtd(HKV, P, D);
    for (int c = 0; c < 3; c++) {
      if (failed("mha_kv_cache_write", mha_kv_cache_write(caches[c], B, HKV, P, D, D, at, kp, rows, vp, rows))) {
        return 1;
      }
    }
  }

  double worst = 0.0;
  int bad = 0;
  for (int step = 0; step < STEPS; step++) {
    /* 1. append each sequence's new token at position len[b] */
    for (int b = 0; b < B; b++)
      for (int g = 0; g < HKV; g++)
        for (int d = 0; d < D; d++) {
          k_new[(b * HKV + g) * D + d] = token_value(1, b, g, len[b], d);
          v_new[(b * HKV + g) * D + d] = token_value(2, b, g, len[b], d);
        }
    const mha_strides rows = mha_strides_bhtd(HKV, 1, D);
    for (int c = 0; c < 3; c++) {
      if (failed("mha_kv_cache_write",
                 mha_kv_cache_write(caches[c], B, HKV, 1, D, D, len, k_new, rows, v_new, rows))) {
        return 1;
      }
    }
    for (int b = 0; b < B; b++) kv_len[b] = ++len[b];

    /* 2. one query row per head, against each sequence's tokens so far */
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int d = 0; d < D; d++) q[(b * H + h) * D + d] = token_value(0, b, h, len[b] - 1, d);
    mha_attention_desc desc;
    mha_attention_desc_init(&desc, B, H, HKV, 1, TMAX, D, D);
    desc.mask.kv_len = kv_len;
    desc.mask.causal = 1;
    desc.mask.align = MHA_ALIGN_KV_END; /* the query is each sequence's last token */
    float* outs[3] = {out, out_flat, out32};
    for (int c = 0; c < 3; c++) {
      for (int i = 0; i < B * H * D; i++) outs[c][i] = NAN;
      if (failed("mha_attention_kv_f32", mha_attention_kv_f32(&desc, q, caches[c], outs[c], NULL))) return 1;
    }

    /* 3. the checks */
    if (memcmp(out, out_flat, sizeof out) != 0) {
      fprintf(stderr, "step %d: the paged and the contiguous fp16 caches disagree\n", step);
      bad = 1;
    }
    for (int i = 0; i < B * H * D; i++) {
      const double e = fabs((double)out[i] - (double)out32[i]);
      if (!(e <= 2e-3)) bad = 1;
      if (e > worst || e != e) worst = e;
    }
  }
  printf("decode-paged-f16: %d steps, lengths %d and %d, blocks of %d tokens, fp16 K/V\n", STEPS, len[0], len[1],
         BLOCK);
  printf("  paged == contiguous fp16: %s; largest difference from fp32 K/V: %.2e (bound 2e-3)\n",
         bad ? "NO" : "bitwise", worst);
  return bad;
}
