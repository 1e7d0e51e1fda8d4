/*
 * The weights output (include/mha.h, mha_weights_mode): per head and chosen
 * heads with each item, after its flash loop, from its final (m, l); the
 * head mean as a pass of its own per query block, heads summed in order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* The weights output's slot s of row (b, i): [B][slots][Tq][Tk]. */
static float* mha_weights_row(const mha_attn_plan* p, int64_t b, int64_t slot, int64_t i) {
  const mha_attention_desc* d = p->d;
  return p->weights + ((b * mha_weights_slots(d) + slot) * d->Tq + i) * d->Tk;
}

/* The first weights slot of head h (per head: h; chosen: the first k with
 * weights_heads[k] == h), or −1 when it has none. */
static int64_t mha_weights_slot_first(const mha_attn_plan* p, int64_t h) {
  return p->d->weights_mode == MHA_WEIGHTS_PER_HEAD ? h : p->slot_first[h];
}

/* The next slot of the same head after slot k, or −1 (a head may be chosen
 * more than once). */
static int64_t mha_weights_slot_next(const mha_attn_plan* p, int64_t k) {
  return p->d->weights_mode == MHA_WEIGHTS_PER_HEAD ? -1 : p->slot_next[k];
}

/* Builds the chosen heads' slot lists (MHA_WEIGHTS_SELECTED): O(H + n). */
void mha_weights_slots_index(const mha_attn_plan* p) {
  const mha_attention_desc* d = p->d;
  for (int64_t h = 0; h < d->H; h++) p->slot_first[h] = -1;
  for (int64_t k = d->weights_nheads - 1; k >= 0; k--) { /* backwards: each list in slot order */
    const int64_t h = d->weights_heads[k];
    p->slot_next[k] = p->slot_first[h];
    p->slot_first[h] = k;
  }
}

/* Row r's final probabilities of key block j0 into srow (after mha_scores):
 * 2^(s − m[r]) / l[r] (base 2, as the flash loop), 0 on hidden keys. Returns the keys it covers (the
 * visible prefix; the rest of the block is 0), or 0 if the row sees none. */
static size_t mha_row_weights(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos,
                              size_t r, int64_t j0, size_t nk, float* srow) {
  const float* add;
  size_t nlo;
  float sc_step;
  const size_t nv = mha_row_prepare(p, sc, pos, r, j0, nk, srow, &add, &nlo, &sc_step);
  if (nv == 0 || sc->l[r] == 0.0f) return 0;
  /* as the row step, from the row's first key: an additive -inf hides its key,
   * even from a NaN score */
  for (size_t j = nlo; j < nv; j++) {
    srow[j] = add == NULL ? srow[j] * sc_step
              : add[j] == -INFINITY ? -INFINITY
                                    : fmaf(add[j], MHA_LOG2E_F, srow[j] * sc_step);
  }
  p->kr->vexp2_scale(nv - nlo, srow + nlo, sc->m[r], 1.0f / sc->l[r]);
  /* a hidden key's weight is 0, also in a NaN row (0 · NaN) */
  for (size_t j = 0; j < nlo; j++) srow[j] = 0.0f;
  if (add != NULL) {
    for (size_t j = nlo; j < nv; j++) srow[j] = add[j] == -INFINITY ? 0.0f : srow[j];
  }
  return nv;
}

/* The inspection pass of one item: recompute the scores and write the final
 * probabilities 2^(s − m[r]) / l[r] of every row (zeros where hidden). */
void mha_attention_weights(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc,
                                  int64_t first, int64_t max_lim) {
  const mha_attention_desc* d = p->d;
  const size_t R = (size_t)(p->G * pos.mq), NK = (size_t)p->nk;
  const int64_t Tk = d->Tk;
  if (d->weights_mode == MHA_WEIGHTS_HEAD_MEAN) {
    /* the mean is a pass of its own over all heads (mha_attention_weights_mean):
     * keep each row's (m, l) for it */
    for (size_t r = 0; r < R; r++) {
      const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
      float* ml = p->ml + ((pos.b * d->H + row.h) * d->Tq + row.i) * 2;
      ml[0] = sc->m[r];
      ml[1] = sc->l[r];
    }
    return;
  }
  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
    for (int64_t k = mha_weights_slot_first(p, row.h); k >= 0; k = mha_weights_slot_next(p, k)) {
      memset(mha_weights_row(p, pos.b, k, row.i), 0, (size_t)Tk * sizeof(float));
    }
  }
  for (int64_t j0 = first; j0 < max_lim; j0 += p->nk) {
    const size_t nk = (size_t)(max_lim - j0 < p->nk ? max_lim - j0 : p->nk);
    mha_scores(p, sc, R, pos.b, pos.g, j0, nk, 0);
    for (size_t r = 0; r < R; r++) {
      const mha_row qrow = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
      const int64_t first_slot = mha_weights_slot_first(p, qrow.h);
      if (first_slot < 0) continue; /* never computed */
      float* srow = sc->s + r * NK;
      const size_t nv = mha_row_weights(p, sc, pos, r, j0, nk, srow);
      if (nv == 0) continue;
      for (int64_t k = first_slot; k >= 0; k = mha_weights_slot_next(p, k)) {
        memcpy(mha_weights_row(p, pos.b, k, qrow.i) + j0, srow, nv * sizeof(float));
      }
    }
  }
}

/* The head-mean weights of query block qb of batch entry b (one unit of the
 * mean pass): Σ_h P_h / H over rows [q0, q0 + mq), heads summed in order
 * h = 0 .. H−1 (K/V heads in order, then the query heads of each group), so
 * every element's sum has the same order for any thread count and batch. */
void mha_attention_weights_mean(const mha_attn_plan* p, int64_t unit, float* scratch) {
  const mha_attention_desc* d = p->d;
  const mha_scratch sc = mha_scratch_of(p, scratch);
  const int64_t qb = unit % p->nqb, b = unit / p->nqb, Tk = d->Tk;
  const size_t NK = (size_t)p->nk;
  mha_item_pos pos = mha_item_pos_of(p, (b * d->Hkv) * p->nqb + qb);
  for (int64_t i = pos.q0; i < pos.q0 + pos.mq; i++) {
    memset(mha_weights_row(p, b, 0, i), 0, (size_t)Tk * sizeof(float));
  }
  for (int64_t g = 0; g < d->Hkv; g++) {
    pos.g = g;
    const size_t R = (size_t)(p->G * pos.mq);
    int64_t first;
    const int64_t max_lim = mha_item_setup(p, pos, &sc, &first);
    for (size_t r = 0; r < R; r++) {
      const mha_row row = mha_item_row(p, g, pos.q0, pos.mq, r);
      const float* ml = p->ml + ((b * d->H + row.h) * d->Tq + row.i) * 2;
      sc.m[r] = ml[0];
      sc.l[r] = ml[1];
    }
    /* rows in head order within the group: r = (h − g·G)·mq + (i − q0) */
    for (int64_t j0 = first; j0 < max_lim; j0 += p->nk) {
      const size_t nk = (size_t)(max_lim - j0 < p->nk ? max_lim - j0 : p->nk);
      mha_scores(p, &sc, R, b, g, j0, nk, 0);
      for (size_t r = 0; r < R; r++) {
        float* srow = sc.s + r * NK;
        const size_t nv = mha_row_weights(p, &sc, pos, r, j0, nk, srow);
        float* dst = mha_weights_row(p, b, 0, mha_item_row(p, g, pos.q0, pos.mq, r).i) + j0;
        for (size_t j = 0; j < nv; j++) dst[j] += srow[j];
      }
    }
  }
  const float inv_h = 1.0f / (float)d->H;
  for (int64_t i = pos.q0; i < pos.q0 + pos.mq; i++) p->kr->vscale((size_t)Tk, mha_weights_row(p, b, 0, i), inv_h);
}
