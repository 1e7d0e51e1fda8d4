/*
 * The flash loop of one (item, key range): per key block the scores, the
 * online softmax step per row and O += P·V; a NaN- and infinity-safe rerun
 * for V rows a row cannot see; the output rows and lse, or the decode
 * partials.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* Is key j0 + j hidden from row r (outside its [lo, lim), or an additive -inf)? */
static int mha_key_hidden(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t r,
                          int64_t j0, size_t j) {
  if (j0 + (int64_t)j >= sc->lim[r] || j0 + (int64_t)j < sc->lo[r]) return 1;
  const float* add;
  (void)mha_row_keys(p, pos.b, mha_item_row(p, pos.g, pos.q0, pos.mq, r), sc->lim[r], j0, j + 1, &add);
  return add != NULL && add[j] == -INFINITY;
}

/* 1 if x[0..n) holds a NaN or an infinity (exponent bits all ones): integer
 * tests, which the compiler vectorizes without -ffast-math. */
static int mha_any_nonfinite(const float* x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    bad |= (uint32_t)((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

/* The terms of the keys whose V rows the careful GEMM left out (sc->bad),
 * each row that sees such a key adding them alone */
static void mha_attention_pv_bad(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t R,
                                 int64_t j0, size_t nk) {
  const size_t Dv = (size_t)p->d->Dv, NK = (size_t)p->nk;
  for (size_t j = 0; j < nk; j++) {
    if (!sc->bad[j]) continue;
    float* vrow = sc->acc; /* the row again, as it is (acc is free in the flash loop) */
    const int64_t jj = j0 + (int64_t)j;
    mha_kv_widen(p, mha_kv_row(p, 1, pos.b, pos.g, jj), mha_kv_scale(p, 1, pos.b, pos.g, jj), Dv, vrow);
    for (size_t r = 0; r < R; r++) {
      if (mha_key_hidden(p, sc, pos, r, j0, j)) continue;
      const float pj = sc->s[r * NK + j];
      for (size_t c = 0; c < Dv; c++) sc->o[r * Dv + c] += pj * vrow[c];
    }
  }
}

/* O += P·V over one key block (keys j0 .. j0 + nk of (b, g)).
 *
 * Where V is read: in the dot-product form (decode: each V row is used by
 * few query rows, so the bytes read are the cost) through the P·V kernels
 * (gemm_pv_*), which widen in registers and read whole rows in address order:
 * strided rows when the cache is contiguous (any type), row pointers when it
 * is paged. In the tiled form (prefill: each V block is used by a whole query
 * block) an fp32 contiguous V goes into the GEMM where it is; a 16-bit or
 * paged one is widened or gathered into the fp32 tile vclean first, as a GEMM
 * packs its B panel: nk·Dv conversions for G·mq·nk·Dv FMAs. Every form runs
 * per element the GEMM's operations in the GEMM's order, so all give the same
 * bits for the same (widened) values.
 *
 * A hidden key has p = 0, but 0 · NaN = NaN: a NaN or infinity in the V row
 * of a key that a row cannot see would reach that row through the GEMM. The
 * plain GEMM runs first (mha_attention_item); only when a row of the item
 * ends non-finite is the item run again "carefully": every V row with a
 * non-finite value is zeroed in the fp32 tile for the GEMM, and each row
 * that sees such a key adds its term separately. Which keys are treated so
 * depends on V alone, never on which rows share the item, so every row gets
 * the same bits however rows are grouped (threads, B); a row that sees no
 * such key gets the plain GEMM's bits. */
static void mha_attention_pv(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t R,
                             int64_t j0, size_t nk, int careful, int pt, int p_packed) {
  const mha_kernels* kr = p->kr;
  const size_t Dv = (size_t)p->d->Dv, NK = (size_t)p->nk;
  if (p->bf16_form) {
    /* bf16(P)·V on the BF16 unit, in every form (attention-bf16.c) */
    if (mha_bf16_pv(p, sc, pos, R, j0, nk, careful, p_packed)) mha_attention_pv_bad(p, sc, pos, R, j0, nk);
    return;
  }
  /* an fp32 contiguous V in place: prefill, and decode on the sets whose
   * P·V kernels do not stream it (kr->decode_streams = 0) */
  if (!careful && p->v_in_place && (!p->use_nt || !kr->decode_streams)) {
    const float* vblk = mha_kv_row(p, 1, pos.b, pos.g, j0);
    mha_gemm_tiles(kr, pt, R, Dv, nk, sc->s, pt ? R : NK, vblk, (size_t)p->vs->row, sc->o, Dv, 1);
    return;
  }
  if (!careful && p->use_nt && p->dt != MHA_DTYPE_INT8) {
    const void* vblk = mha_kv_row(p, 1, pos.b, pos.g, j0);
    const size_t ldv = (size_t)p->vs->row;
    const void* const* vrows = NULL;
    /* a paged cache: row pointers, a run of back-to-back rows at a time,
     * unless the block lies in one page (then its rows are strided too) */
    if (p->page != 0 && mha_kv_run(p, j0, nk) < nk) {
      const size_t step = ldv * p->esz;
      for (size_t j = 0; j < nk;) {
        const size_t run = mha_kv_run(p, j0 + (int64_t)j, nk - j);
        const char* row = mha_kv_row(p, 1, pos.b, pos.g, j0 + (int64_t)j);
        for (size_t r = 0; r < run; r++, row += step) sc->vrows[j + r] = row;
        j += run;
      }
      vrows = sc->vrows;
    }
    switch (p->dt) {
      case MHA_DTYPE_F16:
        kr->gemm_pv_f16(R, Dv, nk, sc->s, NK, vblk, ldv, (const uint16_t* const*)vrows, sc->o, Dv);
        break;
      case MHA_DTYPE_BF16:
        kr->gemm_pv_bf16(R, Dv, nk, sc->s, NK, vblk, ldv, (const uint16_t* const*)vrows, sc->o, Dv);
        break;
      default: kr->gemm_pv_f32(R, Dv, nk, sc->s, NK, vblk, ldv, (const float* const*)vrows, sc->o, Dv); break;
    }
    return;
  }
  /* the fp32 tile: V rows widened or gathered, non-finite rows zeroed when careful */
  int any_bad = 0;
  for (size_t j = 0; j < nk; j++) {
    float* row = sc->vclean + j * Dv;
    const int64_t jj = j0 + (int64_t)j;
    mha_kv_widen(p, mha_kv_row(p, 1, pos.b, pos.g, jj), mha_kv_scale(p, 1, pos.b, pos.g, jj), Dv, row);
    sc->bad[j] = (unsigned char)(careful && mha_any_nonfinite(row, Dv));
    if (sc->bad[j]) memset(row, 0, Dv * sizeof(float));
    any_bad |= sc->bad[j];
  }
  mha_gemm_tiles(kr, pt, R, Dv, nk, sc->s, pt ? R : NK, sc->vclean, Dv, sc->o, Dv, 1);
  if (any_bad) mha_attention_pv_bad(p, sc, pos, R, j0, nk);
}

/* Prefetches the K and V rows of keys [j0, j0 + n) of (b, g) into the
 * caches, for a cache read in place (decode) on a set whose kernels do not
 * read rows whole in address order (kr->decode_streams = 0). The streaming
 * sets leave it to the hardware prefetchers, paged caches included: on Zen 4
 * this burst made decode from DRAM 1.2–1.3× slower over a contiguous cache,
 * 1.4× over blocks of 128 tokens, and changed nothing over blocks of 16–32
 * (a block of one head's rows spans 4–8 KiB, and the prefetchers restart at
 * every 4 KiB page anyway). */
static void mha_kv_prefetch(const mha_attn_plan* p, int64_t b, int64_t g, int64_t j0, size_t n) {
  const size_t kbytes = (size_t)p->d->D * p->esz, vbytes = (size_t)p->d->Dv * p->esz;
  const size_t kstep = (size_t)p->ks->row * p->esz, vstep = (size_t)p->vs->row * p->esz;
  for (size_t j = 0; j < n;) {
    const size_t run = mha_kv_run(p, j0 + (int64_t)j, n - j);
    const char* k = mha_kv_row(p, 0, b, g, j0 + (int64_t)j);
    const char* v = mha_kv_row(p, 1, b, g, j0 + (int64_t)j);
    for (size_t r = 0; r < run; r++, k += kstep, v += vstep) {
      for (size_t c = 0; c < kbytes; c += 64) __builtin_prefetch(k + c, 0, 3);
      for (size_t c = 0; c < vbytes; c += 64) __builtin_prefetch(v + c, 0, 3);
    }
    j += run;
  }
}

/* The flash loop of one (item, key range) over keys [k_begin, k_end), from a
 * fresh (m, l, O): m = −inf, l = 0, or, in the first range of a head with a
 * sink, m = sink·log2(e), l = 1 (the sink's term 2^(sink·log2(e) − m), with
 * no value row). m and l are in base 2 (config/kernels.h). */
static void mha_item_flash(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t R,
                           int64_t k_begin, int64_t k_end, int with_sink, int careful) {
  const mha_attention_desc* d = p->d;
  const mha_kernels* kr = p->kr;
  const size_t Dv = (size_t)d->Dv, NK = (size_t)p->nk;
  /* a row that sees the whole block with nothing to apply (no modifier, no
   * additive mask) goes straight to the step: the same call the general
   * path would make for it; when every row of the item does, one tile step
   * runs for them all (bitwise the row steps: config/kernels.h) */
  const int plain = !p->modify && d->mask.additive == NULL;
  /* key blocks every row sees whole may take the transposed form (scores
   * Sᵀ = K·Qᵀ, the step with the rows in the lanes, P·V with P as a
   * transposed A): per row bitwise the untransposed form (config/kernels.h),
   * so which form a block takes never shows in a result. Items of a multiple
   * of NR rows only: Sᵀ's columns are the rows, and on AVX-512 a 48-row item
   * leaves a panel of 16 that loads as much as it computes (0.98x the
   * untransposed form, causal, Emerald Rapids). Not in the careful rerun,
   * whose V fix-up reads P by rows. */
  const int tile_t = !careful && p->qt && !p->bf16_form && kr->softmax_online_tile_t != NULL &&
                     R % kr->gemm_nr == 0 && NK <= MHA_TILE_T_MAX_KEYS;
  int64_t all_lo = INT64_MIN, all_lim = INT64_MAX; /* the keys every row sees */
  for (size_t r = 0; r < R; r++) {
    const float sink = with_sink ? mha_head_sink(d, mha_item_row(p, pos.g, pos.q0, pos.mq, r).h) : -INFINITY;
    sc->m[r] = sink * MHA_LOG2E_F;
    sc->l[r] = sink == -INFINITY ? 0.0f : 1.0f;
    if (sc->lo[r] > all_lo) all_lo = sc->lo[r];
    if (sc->lim[r] < all_lim) all_lim = sc->lim[r];
  }
  memset(sc->o, 0, R * Dv * sizeof(float));
  for (int64_t j0 = k_begin; j0 < k_end; j0 += p->nk) {
    const size_t nk = (size_t)(k_end - j0 < p->nk ? k_end - j0 : p->nk);
    if (p->use_nt && !kr->decode_streams && j0 + p->nk < k_end) {
      const int64_t j1 = j0 + p->nk;
      mha_kv_prefetch(p, pos.b, pos.g, j1, (size_t)(k_end - j1 < p->nk ? k_end - j1 : p->nk));
    }
    const int whole = plain && all_lo <= j0 && j0 + (int64_t)nk <= all_lim;
    const int pt = whole && tile_t && nk % 16 == 0; /* P transposed in sc->s */
    /* the BF16 form's P packed by the step itself (not in the careful
     * rerun, whose V fix-up reads the fp32 P) */
    const int p_packed = whole && !careful && p->bf16_form && kr->bf16_softmax_tile_pack != NULL;
    mha_scores(p, sc, R, pos.b, pos.g, j0, nk, pt);
    if (pt) {
      kr->softmax_online_tile_t(R, nk, sc->s, R, sc->m, sc->l, sc->alpha);
    } else if (p_packed) {
      kr->bf16_softmax_tile_pack(R, nk, sc->s, NK, sc->m, sc->l, sc->alpha, sc->bf16.pb);
    } else if (whole) {
      kr->softmax_online_tile(R, nk, sc->s, NK, sc->m, sc->l, sc->alpha);
    } else {
      for (size_t r = 0; r < R; r++) {
        float* srow = sc->s + r * NK;
        if (plain && sc->lo[r] <= j0 && j0 + (int64_t)nk <= sc->lim[r]) {
          sc->alpha[r] = kr->softmax_online_row(nk, nk, srow, 1.0f, NULL, &sc->m[r], &sc->l[r]);
          continue;
        }
        const float* add;
        size_t nlo;
        float step_scale;
        const size_t nv = mha_row_prepare(p, sc, pos, r, j0, nk, srow, &add, &nlo, &step_scale);
        /* the step starts after the keys before the row's window: their mask
         * entries are never read, so a NaN or +inf there cannot reach the row
         * (-inf + NaN is NaN), as for the keys after lim */
        sc->alpha[r] = kr->softmax_online_row(nk - nlo, nv - nlo, srow + nlo, step_scale,
                                              add != NULL ? add + nlo : NULL, &sc->m[r], &sc->l[r]);
        for (size_t j = 0; j < nlo; j++) srow[j] = 0.0f;
      }
    }
    for (size_t r = 0; r < R; r++) {
      if (sc->alpha[r] != 1.0f) kr->vscale(Dv, sc->o + r * Dv, sc->alpha[r]);
    }
    mha_attention_pv(p, sc, pos, R, j0, nk, careful, pt, p_packed);
  }
}

/* One (item, key range): the flash loop over the range's key blocks. */
void mha_attention_item(const mha_attn_plan* p, int64_t item, int64_t split, float* scratch) {
  const mha_attention_desc* d = p->d;
  const mha_item_pos pos = mha_item_pos_of(p, item);
  const size_t R = (size_t)(p->G * pos.mq);
  const size_t Dv = (size_t)d->Dv;
  const mha_scratch sc = mha_scratch_of(p, scratch);

  int64_t first;
  const int64_t max_lim = mha_item_setup(p, pos, &sc, &first);
  /* key blocks hidden from every row of the item are never touched */
  int64_t k_begin = split * p->split_len;
  const int64_t k_end = k_begin + p->split_len < max_lim ? k_begin + p->split_len : max_lim;
  if (k_begin < first) k_begin = first;
  const int with_sink = d->mask.sinks != NULL && split == 0;
  mha_item_flash(p, &sc, pos, R, k_begin, k_end, with_sink, 0);
  /* a non-finite row may hold a NaN from a V row it cannot see: run again
   * with the guard (mha_attention_pv); rare, and free when nothing is */
  if (mha_any_nonfinite(sc.o, R * Dv)) mha_item_flash(p, &sc, pos, R, k_begin, k_end, with_sink, 1);

  if (p->nsplit > 1) {
    /* a partial result; whichever thread finishes an item's last range
     * merges the item (mha_attention_merge, in a fixed order of ranges), so
     * the merge is no stage of its own that few items would starve */
    for (size_t r = 0; r < R; r++) {
      float* part = mha_partial_row(p, item, split, r);
      memcpy(part, sc.o + r * Dv, Dv * sizeof(float));
      part[Dv] = sc.m[r];
      part[Dv + 1] = sc.l[r];
    }
    if (__atomic_add_fetch(&p->done[item], 1, __ATOMIC_ACQ_REL) == (int32_t)p->nsplit) {
      mha_attention_merge(p, item, scratch);
    }
    return;
  }

  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
    /* a row with no visible key has l = 0 and outputs zeros; a NaN l stays NaN */
    const float inv = sc.l[r] == 0.0f ? 0.0f : 1.0f / sc.l[r];
    mha_put_out_row(p, pos.b, row.h, row.i, sc.o + r * Dv, inv);
    /* one key range (split 0): the row's sink is in its (m, l) */
    mha_put_lse(p, pos.b, row.h, row.i, sc.m[r], sc.l[r], mha_head_sink(d, row.h));
  }
  if (p->weights != NULL) mha_attention_weights(p, pos, &sc, first, max_lim);
}
