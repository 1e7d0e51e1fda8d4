/* decode-loop: generation with a KV cache, the way an inference engine calls
 * the attention core.
 *
 * The cache holds the keys and values of every token so far in two buffers
 * allocated once, K and V [B, Hkv, TMAX, D]. A step
 *   1. appends the K/V rows of its n new tokens at positions t0 .. t0+n-1,
 *   2. attends the n new queries to the first t = t0 + n rows of the cache,
 *      passed as a strided view (row stride D, head stride TMAX·D): nothing
 *      is copied, and the rows past t are never read,
 *   3. with the causal mask, which mha aligns bottom-right: query row i
 *      (position t0 + i) sees keys 0 .. t0 + i, so Tq = n < Tk = t needs no
 *      offset argument.
 * Grouped-query attention: H = 8 query heads share Hkv = 2 K/V heads
 * (query head h reads K/V head h / (H / Hkv)); the cache holds Hkv heads only.
 *
 * The steps: a 6-token prompt (prefill, Tq = Tk = 6), then one token per step,
 * with every fourth step taking 3 tokens (as when checking speculated tokens).
 * Each step is checked against recomputing attention from scratch over the
 * whole sequence (Tq = Tk = t, causal): its last n rows must agree within
 * 1e-5. The two calls may split the keys differently, so the last bits can
 * differ. The program exits 1 if a step does not agree.
 *
 * An engine that must not allocate per step would also pass desc.workspace
 * (sized with mha_attention_workspace_size()). */
#include <math.h>
#include <stdio.h>

#include "mha.h"

enum { B = 2, H = 8, HKV = 2, D = 16, TMAX = 32, PROMPT = 6 };
enum { QUERY, KEY, VALUE };

/* The q, k or v vector of token `pos` in head `head` of batch entry b: a
 * deterministic hash in [-1, 1), standing in for the token's projections, so
 * the check below can regenerate the whole sequence. */
static float token_value(unsigned tensor, int b, int head, int pos, int d) {
  unsigned x = (unsigned)((((tensor * B + b) * H + head) * TMAX + pos) * D + d);
  x = (x + 0x9E3779B9u) * 0x85EBCA6Bu;
  x ^= x >> 16; x *= 0x7FEB352Du; x ^= x >> 15; x *= 0x846CA68Bu; x ^= x >> 16;
  return (float)(x >> 8) / 8388608.0f - 1.0f;
}

static int failed(mha_status st) {
  if (st == MHA_STATUS_SUCCESS) return 0;
  fprintf(stderr, "mha_attention_f32: %s: %s\n", mha_status_string(st), mha_last_error());
  return 1;
}

int main(void) {
  /* the KV cache, allocated once for TMAX tokens */
  static float k_cache[B * HKV * TMAX * D], v_cache[B * HKV * TMAX * D];
  const mha_strides cache = {HKV * TMAX * D, TMAX * D, D}; /* batch, head, row */
  /* one step's queries and outputs, [B, H, n, D] */
  static float q[B * H * TMAX * D], out[B * H * TMAX * D];
  /* the check: the whole sequence, contiguous [B, heads, t, D] */
  static float full_q[B * H * TMAX * D], full_k[B * HKV * TMAX * D], full_v[B * HKV * TMAX * D],
      full_out[B * H * TMAX * D];
  const double tol = 1e-5;
  double max_err = 0.0;
  int bad = 0;

  int t0 = 0; /* tokens in the cache */
  for (int step = 0; t0 < TMAX; step++) {
    int n = step == 0 ? PROMPT : (step % 4 == 3 ? 3 : 1);
    if (n > TMAX - t0) n = TMAX - t0;
    const int t = t0 + n;

    /* 1. append the new tokens' keys and values */
    for (int b = 0; b < B; b++)
      for (int g = 0; g < HKV; g++)
        for (int i = t0; i < t; i++)
          for (int d = 0; d < D; d++) {
            k_cache[b * cache.batch + g * cache.head + i * cache.row + d] = token_value(KEY, b, g, i, d);
            v_cache[b * cache.batch + g * cache.head + i * cache.row + d] = token_value(VALUE, b, g, i, d);
          }
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < n; i++)
          for (int d = 0; d < D; d++) q[((b * H + h) * n + i) * D + d] = token_value(QUERY, b, h, t0 + i, d);

    /* 2-3. n queries against the t cached keys, bottom-right causal */
    mha_attention_desc desc;
    mha_attention_desc_init(&desc, B, H, HKV, /*Tq=*/n, /*Tk=*/t, D, D); /* q, out: [B, H, n, D] */
    desc.k = cache; /* the cache's first t rows: a view */
    desc.v = cache;
    desc.mask.causal = 1;
    if (failed(mha_attention_f32(&desc, q, k_cache, v_cache, out, NULL))) return 1;

    /* the check: attention over the whole sequence, from scratch */
    for (int b = 0; b < B; b++)
      for (int i = 0; i < t; i++)
        for (int d = 0; d < D; d++) {
          for (int h = 0; h < H; h++) full_q[((b * H + h) * t + i) * D + d] = token_value(QUERY, b, h, i, d);
          for (int g = 0; g < HKV; g++) {
            full_k[((b * HKV + g) * t + i) * D + d] = token_value(KEY, b, g, i, d);
            full_v[((b * HKV + g) * t + i) * D + d] = token_value(VALUE, b, g, i, d);
          }
        }
    mha_attention_desc_init(&desc, B, H, HKV, t, t, D, D);
    desc.mask.causal = 1;
    if (failed(mha_attention_f32(&desc, full_q, full_k, full_v, full_out, NULL))) return 1;
    double step_err = 0.0;
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < n; i++)
          for (int d = 0; d < D; d++) {
            const double err = fabs((double)out[((b * H + h) * n + i) * D + d] -
                                    full_out[((b * H + h) * t + t0 + i) * D + d]);
            if (err > step_err) step_err = err;
            if (!(err <= tol)) bad++; /* NaN included */
          }
    printf("step %2d: %d new token%s, t = %2d, max |cached - recomputed| = %.3g\n", step, n,
           n == 1 ? " " : "s", t, step_err);
    if (step_err > max_err) max_err = step_err;
    t0 = t;
  }
  printf("decode-loop: B=%d H=%d Hkv=%d D=%d, %d tokens: max difference %.3g (tolerance %g) -> %s\n",
         B, H, HKV, D, TMAX, max_err, tol, bad == 0 ? "OK" : "MISMATCH");
  return bad == 0 ? 0 : 1;
}
