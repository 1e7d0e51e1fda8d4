/*
 * The BF16 matrix form of a bf16 call (Q, K, V and out bf16) on a set with a
 * BF16 unit (kr->bf16_gemm; the neon_bf16 and avx512_bf16 sets): the scores are products of
 * the bf16 Q and K rows accumulated in fp32 by the unit, times scale·log2(e)
 * (or the modifier's scale) in fp32 afterwards; the probabilities P are
 * rounded to bf16 (to nearest even) for P·V, whose products the unit
 * accumulates in fp32 and adds to the fp32 output rows. The online softmax,
 * its running max and sum, the rescale and the division stay fp32 (the
 * sum is over the unrounded P). Q rotated in the call is rounded to bf16
 * once, after the rotation.
 *
 * Operands are packed into the unit's layout (kernels/bf16-gemm/bf16-gemm.h):
 * Q per item and P per key block in the item's scratch; K and V per key block
 * once per call by the pre-pass (mha_bf16_pack_kv_part, in the Kᵀ pre-pass's
 * workspace) where several query blocks share them, else (a decode step, the
 * careful rerun) per item in its scratch. They are
 * multiplied in the set's tiles (bf16_mr rows × bf16_nr columns): A's row i
 * at element i·4·kq, B's block from row j at j·4·kq, in every layout. Each
 * row's scores and P·V terms are the same instructions in the same order
 * whatever rows share its item and whichever form (decode or prefill) the
 * call takes, so the bits do not depend on the threads, the batch or the
 * key ranges' merge (itself fp32, as every set's).
 */
#include <string.h>

#include "mha/attention-plan.h"

void mha_bf16_pack_q(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc) {
  const mha_attention_desc* d = p->d;
  const size_t R = (size_t)(p->G * pos.mq), D = (size_t)d->D;
  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
    const uint16_t* q = (const uint16_t*)p->q + (pos.b * d->q.batch + row.h * d->q.head + row.i * d->q.row);
    if (p->rot != NULL) {
      /* widened, rotated (unscaled) in place, rounded to bf16 once */
      mha_widen_row(p->kr, MHA_DTYPE_BF16, q, 1.0f, D, sc->vclean);
      mha_rotary_row(p->rot, mha_rot_at(p, pos.b, row.i), D, sc->vclean, sc->vclean, 1, 1.0f);
      uint16_t* staged = sc->bf16.qs + r * D;
      p->kr->narrow_bf16(D, sc->vclean, staged);
      q = staged;
    }
    sc->bf16.rows16[r] = q;
  }
  p->kr->bf16_pack_a(R, D, sc->bf16.rows16, sc->bf16.qb);
}

/* The pre-pass's block of a key block (K at its start, V after it): the
 * K rows rounded up to NR keys, and V's Dv columns rounded up to NR, ⌈nk/4⌉
 * quads of keys deep */
static size_t mha_bf16_k_elems(const mha_kernels* kr, size_t D, size_t nk) {
  const size_t NR = (size_t)kr->bf16_nr;
  return (nk + NR - 1) / NR * NR * ((D + 3) / 4 * 4);
}

size_t mha_bf16_kv_block_floats(const mha_kernels* kr, size_t D, size_t Dv, size_t nk, int* bad) {
  const size_t NR = (size_t)kr->bf16_nr;
  size_t u16 = 0; /* K's rows and V's columns, each rounded up to NR; checked */
  mha_count(&u16, nk / NR * NR + NR, D + 4, bad);
  mha_count(&u16, Dv / NR * NR + NR, nk + 4, bad);
  return u16 / 2 + 16 + 1; /* + 16: V starts at a multiple of 32 values */
}

static uint16_t* mha_bf16_kv_v(const mha_attn_plan* p, uint16_t* blk) {
  const size_t k = mha_bf16_k_elems(p->kr, (size_t)p->d->D, (size_t)p->nk);
  return blk + (k + 31) / 32 * 32;
}

/* The keys of block kb of (b, g): [j0, j0 + n), n up to the entry's kv_end;
 * 0 for a block wholly past it (a kv_len shorter than the call's Tk: the
 * pre-pass visits every block of Tk) */
static size_t mha_bf16_block_keys(const mha_attn_plan* p, int64_t b, int64_t kb, int64_t* j0) {
  const int64_t kv_end = mha_kv_end(p, b);
  *j0 = kb * p->nk;
  if (kv_end <= *j0) return 0;
  return (size_t)(kv_end - *j0 < p->nk ? kv_end - *j0 : p->nk);
}

void mha_bf16_pack_kv_part(const mha_attn_plan* p, int64_t unit) {
  const mha_attention_desc* d = p->d;
  const int64_t blk = unit / MHA_KT_PARTS, part = unit % MHA_KT_PARTS;
  if (part > 1) return;
  const int64_t kb = blk % p->nkb, g = (blk / p->nkb) % d->Hkv, b = blk / (p->nkb * d->Hkv);
  int64_t j0;
  const size_t nk = mha_bf16_block_keys(p, b, kb, &j0);
  if (nk == 0) return; /* past the entry's kv_len: no item reads this block */
  const mha_kernels* kr = p->kr;
  const size_t NR = (size_t)kr->bf16_nr, D = (size_t)d->D, Dv = (size_t)d->Dv;
  uint16_t* out = (uint16_t*)mha_kt_block(p, b, g, kb);
  /* row pointers on the stack: NR (K) at a time, or the block's keys (V;
   * the plan takes the pre-pass only for nk <= MHA_BF16_PREPASS_KEYS) */
  const uint16_t* rows[MHA_BF16_PREPASS_KEYS] = {0};
  if (part == 0) {
    const size_t nr = (nk + NR - 1) / NR * NR, kq = (D + 3) / 4;
    for (size_t j = 0; j < nr; j += NR) {
      for (size_t r = 0; r < NR; r++) rows[r] = j + r < nk ? mha_kv_row(p, 0, b, g, j0 + (int64_t)(j + r)) : p->kv_zero;
      kr->bf16_pack_b(NR, D, rows, out + j * 4 * kq);
    }
    return;
  }
  /* V: the rows of 4·⌈nk/4⌉ keys (zero past nk), packed whole: a V block's
   * columns as B's rows */
  const size_t k4 = (nk + 3) / 4 * 4;
  for (size_t j = 0; j < k4; j++) rows[j] = j < nk ? mha_kv_row(p, 1, b, g, j0 + (int64_t)j) : p->kv_zero;
  kr->bf16_pack_b_cols(k4, Dv, rows, mha_bf16_kv_v(p, out));
}

void mha_bf16_scores(const mha_attn_plan* p, const mha_scratch* sc, size_t R, int64_t b, int64_t g, int64_t j0,
                     size_t nk) {
  const mha_kernels* kr = p->kr;
  const size_t D = (size_t)p->d->D, NK = (size_t)p->nk, kq = (D + 3) / 4;
  const size_t MR = (size_t)kr->bf16_mr, NR = (size_t)kr->bf16_nr, nr = (nk + NR - 1) / NR * NR;
  const uint16_t* kb;
  if (p->kv_zero != NULL && j0 % p->nk == 0) {
    /* the pre-pass's block (j0 a block start, as the flash loop's are): its
     * keys past nk give scores in columns no tile stores */
    kb = (const uint16_t*)mha_kt_block(p, b, g, j0 / p->nk);
  } else {
    for (size_t j = 0; j < nr; j++) {
      sc->bf16.rows16[j] = j < nk ? mha_kv_row(p, 0, b, g, j0 + (int64_t)j) : sc->bf16.zero;
    }
    kr->bf16_pack_b(nr, D, sc->bf16.rows16, sc->bf16.kb);
    kb = sc->bf16.kb;
  }
  for (size_t j = 0; j < nk; j += NR) {
    const size_t n = nk - j < NR ? nk - j : NR;
    for (size_t i = 0; i < R; i += MR) {
      const size_t m = R - i < MR ? R - i : MR;
      kr->bf16_gemm(m, n, kq, sc->bf16.qb + i * 4 * kq, kb + j * 4 * kq, p->qscale, sc->s + i * NK + j, NK, 0);
    }
  }
}

/* 1 if the bf16 row x[0..n) holds a NaN or an infinity (exponent all ones) */
static int mha_bf16_any_nonfinite(const uint16_t* x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) bad |= (uint32_t)((x[i] & 0x7f80u) == 0x7f80u);
  return bad != 0;
}

int mha_bf16_pv(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t R, int64_t j0, size_t nk,
                int careful, int p_packed) {
  const mha_kernels* kr = p->kr;
  const size_t Dv = (size_t)p->d->Dv, NK = (size_t)p->nk, kq = (nk + 3) / 4;
  const size_t MR = (size_t)kr->bf16_mr, NR = (size_t)kr->bf16_nr;
  if (!p_packed) { /* else the softmax step packed P (bf16_softmax_tile_pack) */
    for (size_t r = 0; r < R; r++) sc->bf16.rows32[r] = sc->s + r * NK;
    kr->bf16_pack_a_f32(R, nk, sc->bf16.rows32, sc->bf16.pb);
  }
  int64_t jb;
  if (p->kv_zero != NULL && !careful && mha_bf16_block_keys(p, pos.b, j0 / p->nk, &jb) == nk && jb == j0) {
    /* the pre-pass's V block, packed from the same rows as the item would
     * pack (all the block's keys: not a causal diagonal or window edge,
     * which the item packs itself) */
    const uint16_t* vb = mha_bf16_kv_v(p, (uint16_t*)mha_kt_block(p, pos.b, pos.g, j0 / p->nk));
    for (size_t c = 0; c < Dv; c += NR) {
      const size_t n = Dv - c < NR ? Dv - c : NR;
      for (size_t i = 0; i < R; i += MR) {
        const size_t m = R - i < MR ? R - i : MR;
        kr->bf16_gemm(m, n, kq, sc->bf16.pb + i * 4 * kq, vb + c * 4 * kq, 1.0f, sc->o + i * Dv + c, Dv, 1);
      }
    }
    return 0;
  }
  /* V's rows; when careful, a row with a non-finite value is left out (its
   * terms are added alone by the caller, mha_attention_pv) */
  int any_bad = 0;
  for (size_t j = 0; j < 4 * kq; j++) {
    const uint16_t* row = sc->bf16.zero;
    if (j < nk) {
      row = mha_kv_row(p, 1, pos.b, pos.g, j0 + (int64_t)j);
      sc->bad[j] = (unsigned char)(careful && mha_bf16_any_nonfinite(row, Dv));
      if (sc->bad[j]) row = sc->bf16.zero;
      any_bad |= sc->bad[j];
    }
    sc->bf16.rows16[j] = row;
  }
  kr->bf16_pack_b_cols(4 * kq, Dv, sc->bf16.rows16, sc->bf16.vb);
  for (size_t c = 0; c < Dv; c += NR) {
    const size_t n = Dv - c < NR ? Dv - c : NR;
    for (size_t i = 0; i < R; i += MR) {
      const size_t m = R - i < MR ? R - i : MR;
      kr->bf16_gemm(m, n, kq, sc->bf16.pb + i * 4 * kq, sc->bf16.vb + c * 4 * kq, 1.0f, sc->o + i * Dv + c, Dv, 1);
    }
  }
  return any_bad;
}
