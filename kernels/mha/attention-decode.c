/*
 * Decode: one query block per head splits its keys into ranges that run as
 * units of their own; the unit that finishes an item's last range merges
 * the ranges by log-sum-exp in a fixed order and writes the output rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* Decode: merges the key ranges of one item (log-sum-exp) and writes out.
 *   M = max_s m_s,  L = Σ_s l_s·2^(m_s − M),  out = Σ_s O_s·2^(m_s − M) / L
 * (m and l in base 2, as the flash loop keeps them)
 * in a fixed order of s; a range that saw no key has m_s = −inf and adds 0.
 * With weights, the inspection pass then runs with the merged (M, L). */
void mha_attention_merge(const mha_attn_plan* p, int64_t item, float* scratch) {
  const mha_attention_desc* d = p->d;
  const mha_item_pos pos = mha_item_pos_of(p, item);
  const mha_scratch sc = mha_scratch_of(p, scratch);
  const size_t Dv = (size_t)d->Dv, R = (size_t)(p->G * pos.mq);
  for (size_t r = 0; r < R; r++) {
    float M = -INFINITY;
    for (int64_t sp = 0; sp < p->nsplit; sp++) {
      const float ms = mha_partial_row(p, item, sp, r)[Dv];
      if (ms > M) M = ms;
    }
    float L = 0.0f;
    memset(sc.acc, 0, Dv * sizeof(float));
    for (int64_t sp = 0; sp < p->nsplit; sp++) {
      const float* ps = mha_partial_row(p, item, sp, r);
      const float f = ps[Dv] == -INFINITY ? 0.0f : exp2f(ps[Dv] - M);
      L += ps[Dv + 1] * f;
      for (size_t c = 0; c < Dv; c++) sc.acc[c] += ps[c] * f;
    }
    const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
    const float inv = L == 0.0f ? 0.0f : 1.0f / L;
    mha_put_out_row(p, pos.b, row.h, row.i, sc.acc, inv);
    mha_put_lse(p, pos.b, row.h, row.i, M, L, mha_head_sink(p->d, row.h));
    sc.m[r] = M;
    sc.l[r] = L;
  }
  if (p->weights != NULL) {
    int64_t first;
    const int64_t max_lim = mha_item_setup(p, pos, &sc, &first);
    mha_attention_weights(p, pos, &sc, first, max_lim);
  }
}
