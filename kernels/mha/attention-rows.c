/*
 * An item's rows: the packed Kᵀ pre-pass, the scores of a key block, each
 * row's aligned position and visible keys (kv_len, causal, window), the
 * query packing, the per-thread scratch and a row's logits made ready for
 * the softmax step (soft-cap, ALiBi).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* The pre-pass: Kᵀ of one quarter of a key block (unit = block · 4 + part),
 * into the block's [D × nk]; keys past kv_len left out. */
void mha_pack_kt_part(const mha_attn_plan* p, int64_t unit) {
  if (p->kv_zero != NULL) {
    mha_bf16_pack_kv_part(p, unit); /* the BF16 form's K and V (attention-bf16.c) */
    return;
  }
  const mha_attention_desc* d = p->d;
  const int64_t blk = unit / MHA_KT_PARTS, part = unit % MHA_KT_PARTS;
  const int64_t kb = blk % p->nkb, g = (blk / p->nkb) % d->Hkv, b = blk / (p->nkb * d->Hkv);
  const int64_t kv_end = mha_kv_end(p, b);
  const int64_t j0 = kb * p->nk;
  const int64_t nk = kv_end - j0 < p->nk ? kv_end - j0 : p->nk;
  const int64_t per = (p->nk + MHA_KT_PARTS - 1) / MHA_KT_PARTS;
  const int64_t ja = part * per, jb = ja + per < nk ? ja + per : nk;
  float* kt = mha_kt_block(p, b, g, kb);
  for (int64_t j = ja; j < jb; j++) {
    const void* src = mha_kv_row(p, 0, b, g, j0 + j);
    if (p->dt == MHA_DTYPE_F32) {
      const float* krow = src;
      for (int64_t dd = 0; dd < d->D; dd++) kt[dd * p->nk + j] = krow[dd];
      continue;
    }
    /* a 16-bit row: widened in pieces of 64, then transposed */
    float buf[64];
    const float scale = mha_kv_scale(p, 0, b, g, j0 + j);
    for (int64_t d0 = 0; d0 < d->D; d0 += 64) {
      const size_t n = (size_t)(d->D - d0 < 64 ? d->D - d0 : 64);
      mha_kv_widen(p, (const char*)src + (size_t)d0 * p->esz, scale, n, buf);
      for (size_t dd = 0; dd < n; dd++) kt[((size_t)d0 + dd) * (size_t)p->nk + (size_t)j] = buf[dd];
    }
  }
}

/* S[R × nk] (sc->s, row stride nk_max) = Qp · K[j0 .. j0+nk)ᵀ (Qp: sc->qp);
 * or, with st (the tiled form on a set with gemm_at, p->qt), its transpose
 * Sᵀ[nk × R] (row stride R) = K·Qᵀ: the query rows in the lanes, for the
 * transposed step. An int8 cache's K rows are dequantized (a few at a time)
 * into sc->vclean for the fp32 dot products. The BF16 form: attention-bf16.c. */
void mha_scores(const mha_attn_plan* p, const mha_scratch* sc, size_t R, int64_t b, int64_t g, int64_t j0,
                size_t nk, int st) {
  if (p->bf16_form) {
    mha_bf16_scores(p, sc, R, b, g, j0, nk);
    return;
  }
  const float* qp = sc->qp;
  float* s = sc->s;
  float* tile = sc->vclean;
  const mha_attention_desc* d = p->d;
  const size_t D = (size_t)d->D, NK = (size_t)p->nk;
  if (p->use_nt) {
    /* dot products with the K rows in place, a run of back-to-back rows at
     * a time (one block of a paged cache): every score is computed alone */
    const size_t ldk = (size_t)p->ks->row;
    for (size_t j = 0; j < nk;) {
      const size_t n = mha_kv_run(p, j0 + (int64_t)j, nk - j);
      const void* krows = mha_kv_row(p, 0, b, g, j0 + (int64_t)j);
      if (p->dt == MHA_DTYPE_INT8) {
        /* the rows dequantized into the tile (as many as fit), then the fp32
         * kernel: every score alone, so the bits are the fp32 path's */
        const size_t fit = (size_t)p->nk * (size_t)d->Dv / D; /* the tile holds max(nk·Dv, D) */
        const size_t per = fit < 1 ? 1 : fit;
        for (size_t r0 = 0; r0 < n; r0 += per) {
          const size_t m = n - r0 < per ? n - r0 : per;
          for (size_t r = 0; r < m; r++) {
            const int64_t jj = j0 + (int64_t)(j + r0 + r);
            p->kr->dequant_i8(D, (const int8_t*)krows + (r0 + r) * ldk, mha_kv_scale(p, 0, b, g, jj), tile + r * D);
          }
          p->kr->gemm_nt(R, m, D, qp, D, tile, D, s + j + r0, NK);
        }
        j += n;
        continue;
      }
      switch (p->dt) {
        case MHA_DTYPE_F16: p->kr->gemm_nt_f16(R, n, D, qp, D, krows, ldk, s + j, NK); break;
        case MHA_DTYPE_BF16: p->kr->gemm_nt_bf16(R, n, D, qp, D, krows, ldk, s + j, NK); break;
        default: p->kr->gemm_nt(R, n, D, qp, D, krows, ldk, s + j, NK); break;
      }
      j += n;
    }
  } else {
    const float* kt = mha_kt_block(p, b, g, j0 / p->nk);
    if (st) {
      mha_gemm_tiles(p->kr, 1, nk, R, D, kt, NK, qp, R, s, R, 0);
    } else {
      mha_gemm_tiles(p->kr, p->qt, R, nk, D, qp, p->qt ? R : D, kt, NK, s, NK, 0);
    }
  }
}

/* The aligned position i' of query row i of batch entry b (mha_align). */
int64_t mha_aligned_pos(const mha_attn_plan* p, int64_t b, int64_t i) {
  const mha_attention_desc* d = p->d;
  switch (d->mask.align) {
    case MHA_ALIGN_TOP_LEFT: return i;
    case MHA_ALIGN_OFFSET: return i + d->mask.offset;
    case MHA_ALIGN_KV_END: return i + mha_kv_end(p, b) - d->Tq;
    default: return i + d->Tk - d->Tq;
  }
}

/* The keys [lo, hi) query row i of batch entry b sees before the additive
 * mask: kv_len, causal and the window each cut an interval. An empty row gets
 * [0, 0). Positions lie in (−2^61, 2^61 + 2^60) (MHA_POS_LIMIT), so nothing
 * overflows. */
static void mha_row_interval(const mha_attn_plan* p, int64_t b, int64_t i, int64_t* lo,
                             int64_t* hi) {
  const mha_attention_desc* d = p->d;
  const int64_t ip = mha_aligned_pos(p, b, i);
  int64_t a = 0, e = mha_kv_end(p, b);
  if (d->mask.causal && ip + 1 < e) e = ip + 1;
  if (d->mask.window) {
    const int64_t left = d->mask.window_left < MHA_WINDOW_LIMIT ? d->mask.window_left : MHA_WINDOW_LIMIT;
    const int64_t right = d->mask.window_right < MHA_WINDOW_LIMIT ? d->mask.window_right : MHA_WINDOW_LIMIT;
    if (ip - left > a) a = ip - left;
    if (ip + right + 1 < e) e = ip + right + 1;
  }
  if (e <= a) a = e = 0;
  *lo = a;
  *hi = e;
}

/* Packs an item's query rows into sc->qp, [R × D] or transposed [D × R]
 * (p->qt; the BF16 form packs them as bf16 instead: mha_bf16_pack_q), and
 * sets the keys [lo[r], lim[r]) each row sees. Returns the largest lim,
 * the end of the keys any row of the item sees, and in *first the start of
 * the first key block any row sees (key blocks outside every row's keys are
 * never visited). A 16-bit Q row is widened (exactly) into
 * sc->vclean first, free before the flash loop. */
int64_t mha_item_setup(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc, int64_t* first) {
  const int64_t b = pos.b, g = pos.g, q0 = pos.q0, mq = pos.mq;
  float* qp = sc->qp;
  int64_t *lo = sc->lo, *lim = sc->lim;
  const mha_attention_desc* d = p->d;
  const size_t R = (size_t)(p->G * mq), D = (size_t)d->D;
  int64_t max_lim = 0, min_lo = INT64_MAX;
  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, g, q0, mq, r);
    mha_row_interval(p, b, row.i, &lo[r], &lim[r]);
    if (lim[r] > max_lim) max_lim = lim[r];
    if (lim[r] > lo[r] && lo[r] < min_lo) min_lo = lo[r];
    if (p->bf16_form) continue; /* Q is packed as bf16 below, not as fp32 qp */
    const int64_t at_q = b * d->q.batch + row.h * d->q.head + row.i * d->q.row;
    const float* src = sc->vclean;
    if (p->io_dt == MHA_DTYPE_F32) {
      src = (const float*)p->q + at_q;
    } else {
      /* a 16-bit Q row widened as it is packed: then the fp32 path on its values */
      mha_widen_row(p->kr, p->io_dt, (const uint16_t*)p->q + at_q, 1.0f, D, sc->vclean);
    }
    if (p->rot != NULL) {
      /* rotated on the way in, at the row's position (checked by the call) */
      mha_rotary_row(p->rot, mha_rot_at(p, b, row.i), D, src, p->qt ? qp + r : qp + r * D, p->qt ? R : 1, p->qscale);
    } else if (p->qt) {
      for (size_t c = 0; c < D; c++) qp[c * R + r] = src[c] * p->qscale;
    } else {
      for (size_t c = 0; c < D; c++) qp[r * D + c] = src[c] * p->qscale;
    }
  }
  *first = max_lim == 0 ? 0 : min_lo / p->nk * p->nk;
  if (p->bf16_form) mha_bf16_pack_q(p, pos, sc);
  return max_lim;
}

mha_scratch mha_scratch_of(const mha_attn_plan* p, float* base) {
  const size_t rows = (size_t)p->rows;
  mha_scratch sc;
  sc.qp = base;                                              /* [rows × D]  */
  sc.s = sc.qp + mha_round16(rows * (size_t)p->d->D);        /* [rows × nk] */
  sc.o = sc.s + mha_round16(rows * (size_t)p->nk);           /* [rows × Dv] */
  sc.m = sc.o + mha_round16(rows * (size_t)p->d->Dv);
  sc.l = sc.m + mha_round16(rows);
  sc.alpha = sc.l + mha_round16(rows);
  sc.lo = (int64_t*)(sc.alpha + mha_round16(rows));
  sc.lim = sc.lo + rows;
  sc.acc = sc.alpha + mha_round16(rows) + mha_round16(2 * rows * sizeof(int64_t) / sizeof(float));
  sc.vclean = sc.acc + mha_round16((size_t)p->d->Dv);
  const size_t vn = (size_t)p->nk * (size_t)p->d->Dv < (size_t)p->d->D ? (size_t)p->d->D
                                                                         : (size_t)p->nk * (size_t)p->d->Dv;
  sc.vrows = (const void**)(sc.vclean + mha_round16(vn));
  sc.bad = (unsigned char*)(sc.vclean + mha_round16(vn) + mha_round16((size_t)p->nk * sizeof(void*) / sizeof(float)));
  memset(&sc.bf16, 0, sizeof sc.bf16);
  if (p->kr->bf16_gemm != NULL) {
    /* after the parts above (mha_attn_plan_make counts these) */
    const mha_bf16_sizes z = mha_bf16_sizes_of(p);
    float* at = (float*)sc.bad + mha_round16((size_t)p->nk / sizeof(float) + 1);
    sc.bf16.qb = (uint16_t*)at;
    at += mha_round16(z.qb / 2);
    sc.bf16.kb = (uint16_t*)at;
    at += mha_round16(z.kb / 2);
    sc.bf16.pb = (uint16_t*)at;
    at += mha_round16(z.pb / 2);
    sc.bf16.vb = (uint16_t*)at;
    at += mha_round16(z.vb / 2);
    sc.bf16.qs = (uint16_t*)at;
    at += mha_round16((z.qs + 1) / 2);
    memset(at, 0, z.zero * sizeof(float));
    sc.bf16.zero = (const uint16_t*)at;
    at += mha_round16(z.zero);
    sc.bf16.rows16 = (const uint16_t**)at;
    at += mha_round16(z.ptrs16 * sizeof(void*) / sizeof(float));
    sc.bf16.rows32 = (const float**)at;
  }
  return sc;
}

/* Row r's logits of key block j0 (S row `srow`, nk keys), ready for the
 * softmax step: returns the visible prefix n_valid, sets *add (the row's
 * additive mask from key j0, or NULL), *nlo (the keys before the row's window:
 * the caller starts after them and never reads them) and *step_scale (the
 * scale the step still applies: 1 once the modifiers ran here on keys
 * [nlo, n_valid)). */
size_t mha_row_prepare(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos,
                              size_t r, int64_t j0, size_t nk, float* srow, const float** add,
                              size_t* nlo, float* step_scale) {
  const mha_attention_desc* d = p->d;
  const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
  const size_t nv = mha_row_keys(p, pos.b, row, sc->lim[r], j0, nk, add);
  const int64_t before = sc->lo[r] - j0;
  *nlo = before <= 0 ? 0 : before >= (int64_t)nv ? nv : (size_t)before;
  *step_scale = 1.0f; /* Q holds scale·log2(e) */
  if (nv == 0 || !p->modify) return nv;
  const float slope = d->mask.alibi_slopes ? d->mask.alibi_slopes[row.h] : 0.0f;
  const int64_t ip = mha_aligned_pos(p, pos.b, row.i);
  p->kr->scoremod(nv - *nlo, srow + *nlo, p->scale, d->mask.softcap, slope,
                  (float)(j0 + (int64_t)*nlo - ip));
  *step_scale = MHA_LOG2E_F;
  return nv;
}
