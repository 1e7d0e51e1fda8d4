/*
 * The plan of a call: the query block, the form of the scores, the decode
 * key ranges and the work units (functions of one entry's shape and the
 * kernels, never of B or the thread count where they change bits), and the
 * workspace it needs: per-thread scratch and the parts the threads share.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* Decode key ranges: enough that one entry's Hkv heads make MHA_DECODE_UNITS
 * units (4 per thread at 64 threads), at most MHA_DECODE_MAX_RANGES, each of at
 * least MHA_DECODE_MIN_BLOCKS key blocks (128 keys). Over 4096 keys: 32 ranges
 * at Hkv 8, 8 at Hkv 32 (32 there cost 6% in per-range overhead). A function
 * of Hkv, Tk and the key block only: never of B or the thread count, so an
 * entry's bits do not depend on its batch. */
enum { MHA_DECODE_MIN_BLOCKS = 2, MHA_DECODE_MAX_RANGES = 64, MHA_DECODE_UNITS = 256 };

/* Fills the schedule of one call (B entries of desc's shape) and counts its
 * workspace: p->scratch floats per thread, and p->shared_n floats that the
 * threads share (the packed Kᵀ blocks of the prefill form, the decode
 * partials, the weights passes' state). want_items: how many work items the
 * threads would like (query blocks shrink towards it; no result changes).
 * Every product is overflow-checked. */
mha_status mha_attn_plan_make(mha_attn_plan* p, const mha_kernels* kr, const mha_attention_desc* d,
                                     int with_weights, int64_t want_items, int bf16_form) {
  static const char fn[] = "mha_attention_f32";
  memset(p, 0, sizeof *p);
  p->kr = kr;
  p->d = d;
  p->scale = d->scale != 0.0f ? d->scale : (float)(1.0 / sqrt((double)d->D));
  /* The softmax runs in base 2 (config/kernels.h): plain calls fold
   * scale·log2(e) into Q as it is packed, so the scores come out of the GEMM
   * ready for the step. A soft-cap or ALiBi needs the scaled scores in
   * natural units: Q stays as it is, the modifier applies the scale and the
   * step then multiplies by log2(e); so does a scale whose product with
   * log2(e) would overflow. */
  p->qscale = (float)((double)p->scale * MHA_LOG2E);
  p->modify = d->mask.softcap > 0.0f || d->mask.alibi_slopes != NULL || !isfinite(p->qscale);
  if (p->modify) p->qscale = 1.0f;
  p->rot = d->rotary;
  p->rot_pos = d->rotary != NULL ? d->rotary->positions : NULL;
  p->G = d->H / d->Hkv;
  /* the BF16 form's key block: its softmax step and P·V take more keys a
   * block for the same per-row costs (config/kernels.h) */
  p->nk = bf16_form && kr->bf16_nk > 0 ? (int64_t)kr->bf16_nk : (int64_t)kr->attn_nk;
  p->nkb = d->Tk / p->nk + (d->Tk % p->nk != 0);
  const int64_t mr = (int64_t)kr->gemm_mr;

  /* The decisions that change bits are functions of one entry's shape (and
   * the kernels) only: the nominal query block mq0 = attn_mq / G rows per
   * head (at most Tq), the form of the scores, the key split. */
  int64_t mq0 = (int64_t)kr->attn_mq / p->G;
  if (mq0 < 1) mq0 = 1;
  if (mq0 > d->Tq) mq0 = d->Tq;
  const int64_t nqb0 = d->Tq / mq0 + (d->Tq % mq0 != 0);
  const int64_t rows0 = p->G * mq0; /* G·mq0 <= max(G, attn_mq) */
  /* Kᵀ is packed once per call only when its blocks are reused by several
   * query blocks (and those hold at least MR rows); with one query block per
   * head (decode: Tq·G rows) every key block is used once, so the scores are
   * dot products with K read in place: a decode step never copies its K cache. */
  p->use_nt = nqb0 == 1 || rows0 < mr;
  p->qt = !p->use_nt && kr->gemm_at != NULL;
  /* one query block per head (decode, short prefill): split the keys into
   * ranges of a fixed number of key blocks, so that few items still make
   * many units */
  p->nsplit = 1;
  if (!mha_mul_i64(p->nkb, p->nk, &p->split_len)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: Tk rounded up to whole key blocks overflows", fn);
  }
  if (nqb0 == 1) {
    /* ranges: enough for MHA_DECODE_UNITS units over the entry's Hkv heads,
     * at most MHA_DECODE_MAX_RANGES, each at least MHA_DECODE_MIN_BLOCKS */
    int64_t ranges = (MHA_DECODE_UNITS + d->Hkv - 1) / d->Hkv;
    if (ranges > MHA_DECODE_MAX_RANGES) ranges = MHA_DECODE_MAX_RANGES;
    int64_t per = (p->nkb + ranges - 1) / ranges;
    if (per < MHA_DECODE_MIN_BLOCKS) per = MHA_DECODE_MIN_BLOCKS;
    p->nsplit = (p->nkb + per - 1) / per;
    if (!mha_mul_i64(per, p->nk, &p->split_len)) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the key range length overflows", fn);
    }
  }

  /* How rows are grouped into items changes no result (every row's scores,
   * softmax and P·V are computed alone): a head with several query blocks
   * starts from the table's item rows (a multiple of the nominal block: more
   * rows per Kᵀ and V block brought into L1, and items of a multiple of NR
   * rows for the transposed tiles) unless a window gives rows
   * of one item different key ranges. Causal items are tall too: they
   * compute more of the diagonal's hidden scores (at T 1024, 9% instead of
   * 5%), which the transposed tiles repay (Emerald Rapids, 1 thread, T 4096:
   * causal 1.03x at D 64, 1.06x at D 128; AVX2 unchanged, 0.996x). With
   * few items for the threads (a B = 1 prefill) it takes smaller query
   * blocks, down to one MR tile of rows. */
  p->mq = mq0;
  if (nqb0 > 1 && kr->attn_item_rows > kr->attn_mq && !d->mask.window) {
    const int64_t factor = (int64_t)(kr->attn_item_rows / kr->attn_mq);
    p->mq = mq0 <= d->Tq / factor ? mq0 * factor : d->Tq;
  }
  const int64_t want = want_items;
  for (;;) {
    int64_t items;
    p->nqb = d->Tq / p->mq + (d->Tq % p->mq != 0);
    if (!mha_mul_i64(d->B, d->Hkv, &items) || !mha_mul_i64(items, p->nqb, &items)) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the work item count B·Hkv·⌈Tq/mq⌉ overflows", fn);
    }
    p->items = items;
    const int64_t half = (p->mq + 1) / 2;
    if (items >= want / p->nsplit || p->mq == 1 || (!p->use_nt && p->G * half < mr)) break;
    p->mq = half;
  }
  p->rows = p->G * p->mq;

  int64_t units, kt_blocks, units_pack;
  if (!mha_mul_i64(p->items, p->nsplit, &units) ||
      (!p->use_nt && (!mha_mul_i64(d->B, d->Hkv, &kt_blocks) || !mha_mul_i64(kt_blocks, p->nkb, &kt_blocks) ||
                       !mha_mul_i64(kt_blocks, MHA_KT_PARTS, &units_pack)))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the work unit count overflows", fn);
  }
  p->units = units;
  p->kt_blocks = p->use_nt ? 0 : kt_blocks;
  /* the call's work for the size rule (parallel.h), an upper bound in
   * doubles (no overflow): the two GEMMs' FLOPs over every (row, key), and
   * 2 per byte of Q, out, K and V (the masks and the weights left out) */
  const double dw = (double)(d->D + d->Dv), rows_q = (double)d->B * (double)d->H * (double)d->Tq;
  p->work = rows_q * (double)d->Tk * 2.0 * dw + 2.0 * 4.0 * (rows_q + (double)d->B * (double)d->Hkv * (double)d->Tk) * dw;

  const size_t rows = (size_t)p->rows, D = (size_t)d->D, Dv = (size_t)d->Dv, NK = (size_t)p->nk;
  int bad = 0;
  size_t scratch = 0;
  mha_count(&scratch, rows, D, &bad);
  mha_count(&scratch, rows, NK, &bad);
  mha_count(&scratch, rows, Dv, &bad);
  mha_count(&scratch, rows, 3 + 2 * sizeof(int64_t) / sizeof(float), &bad); /* m, l, alpha, lo, lim */
  mha_count(&scratch, Dv, 1, &bad);
  size_t vclean = 0; /* nk × Dv, and at least D (a dequantized K row) */
  bad |= __builtin_mul_overflow(NK, Dv, &vclean);
  mha_count(&scratch, vclean < D ? D : vclean, 1, &bad);
  mha_count(&scratch, NK, sizeof(void*) / sizeof(float), &bad);
  mha_count(&scratch, NK / sizeof(float) + 1, 1, &bad);
  mha_count(&scratch, 16, 12, &bad); /* eleven parts, each rounded up to 16 floats */
  if (kr->bf16_gemm != NULL) {
    /* the BF16 form's parts (mha_scratch_of), whether or not a call takes
     * the form: the plan is made before it knows the types. The sizes are
     * counted here checked, then computed plainly by mha_bf16_sizes_of. */
    const size_t NR = (size_t)kr->bf16_nr;
    const size_t rows2 = rows + 1, nk8 = NK + NR, D4 = D + 4, nk4 = NK + 4, Dv8 = Dv + NR;
    size_t u16 = 0;
    mha_count(&u16, rows2, D4, &bad);
    mha_count(&u16, nk8, D4, &bad);
    mha_count(&u16, rows2, nk4, &bad);
    mha_count(&u16, Dv8, nk4, &bad);
    mha_count(&u16, rows, D, &bad);
    mha_count(&scratch, u16 / 2 + 1, 1, &bad);
    mha_count(&scratch, D > Dv ? D : Dv, 1, &bad);
    mha_count(&scratch, rows + nk8 + rows, sizeof(void*) / sizeof(float), &bad);
    mha_count(&scratch, 16, 8, &bad); /* eight parts, each rounded up to 16 floats */
  }
  p->scratch = scratch & ~(size_t)15;
  if (p->kt_blocks > 0) {
    size_t blk = 0;
    mha_count(&blk, D, NK, &bad);
    if (kr->bf16_gemm != NULL) {
      /* the BF16 form's K and V of a block, whether or not a call takes the
       * form (the plan is made before it knows the types), and a zero row */
      const size_t kv = mha_bf16_kv_block_floats(kr, D, Dv, NK, &bad);
      if (kv > blk) blk = kv;
      blk = mha_round16(blk); /* every block 64-byte aligned (its V part too) */
      mha_count(&p->kt_n, (D > Dv ? D : Dv) / 2 + 1, 1, &bad);
    }
    p->kt_blk = blk;
    mha_count(&p->kt_n, (size_t)p->kt_blocks, blk, &bad);
  }
  if (p->nsplit > 1) {
    size_t row = 0;
    mha_count(&row, rows, Dv + 2, &bad);
    mha_count(&p->part_n, (size_t)units, row, &bad);
    p->done_n = mha_round16((size_t)p->items); /* one int32 per item */
  }
  if (d->weights_mode == MHA_WEIGHTS_HEAD_MEAN) {
    size_t bh = 0;
    mha_count(&bh, (size_t)d->B, (size_t)d->H, &bad);
    mha_count(&p->ml_n, bh, (size_t)d->Tq * 2, &bad); /* < out's B·H·Tq·Dv + ... */
  }
  if (with_weights && d->weights_mode == MHA_WEIGHTS_SELECTED) {
    /* int64 slot lists: H heads and weights_nheads slots (validated >= 1) */
    mha_count(&p->slot_n, (size_t)d->H + (size_t)d->weights_nheads, sizeof(int64_t) / sizeof(float), &bad);
    p->slot_n = mha_round16(p->slot_n);
  }
  p->kt_n = mha_round16(p->kt_n);
  p->part_n = mha_round16(p->part_n);
  p->ml_n = mha_round16(p->ml_n);
  mha_count(&p->shared_n, p->kt_n, 1, &bad);
  mha_count(&p->shared_n, p->part_n, 1, &bad);
  mha_count(&p->shared_n, p->done_n, 1, &bad);
  mha_count(&p->shared_n, p->ml_n, 1, &bad);
  mha_count(&p->shared_n, p->slot_n, 1, &bad);
  if (bad || p->shared_n > (SIZE_MAX - 128) / sizeof(float)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the workspace size overflows", fn);
  }
  /* lse [B, H, Tq] */
  p->lse_batch = d->H * d->Tq;
  p->lse_head = d->Tq;
  p->lse_row = 1;
  return MHA_STATUS_SUCCESS;
}

/* The threads that share `units` units (at most one per unit, at least 1). */
int mha_attn_threads(int nthreads, int64_t units, double work) {
  if (nthreads > units) nthreads = (int)units;
  return mha_workers_for(nthreads, work);
}

/* floats = scratch · threads + shared, checked. */
mha_status mha_attn_total(size_t scratch, int threads, size_t shared, size_t* floats) {
  int bad = 0;
  size_t total = 0;
  mha_count(&total, scratch, (size_t)threads, &bad);
  mha_count(&total, shared, 1, &bad);
  if (bad || total > (SIZE_MAX - 128) / sizeof(float)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "mha_attention_f32: the workspace size overflows");
  }
  *floats = total;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_work_units(const mha_kernels* kr, const mha_attention_desc* d, int nthreads,
                                    int64_t* pack_units, int64_t* units) {
  mha_attn_plan p;
  mha_status st = mha_attn_plan_make(&p, kr, d, 0, (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads, 0);
  if (st != MHA_STATUS_SUCCESS) return st;
  *pack_units = p.kt_blocks * MHA_KT_PARTS;
  *units = p.units;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_workspace_floats(const mha_kernels* kr, const mha_attention_desc* d,
                                          int with_weights, int nthreads, size_t* floats) {
  /* one size for every call of the desc: the plain plan's, or on a set with
   * a BF16 unit the larger of it and the BF16 form's (its own key block) */
  *floats = 0;
  for (int bf16 = 0; bf16 <= (kr->bf16_gemm != NULL); bf16++) {
    mha_attn_plan p;
    size_t n = 0;
    mha_status st = mha_attn_plan_make(&p, kr, d, with_weights, (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads, bf16);
    if (st == MHA_STATUS_SUCCESS) st = mha_attn_total(p.scratch, mha_attn_threads(nthreads, p.units, p.work), p.shared_n, &n);
    if (st != MHA_STATUS_SUCCESS) return st;
    if (n > *floats) *floats = n;
  }
  return MHA_STATUS_SUCCESS;
}

/* A caller's workspace, aligned up to 64 bytes, if it has the size that
 * *_workspace_size() reports (floats + 64 bytes, whatever its alignment);
 * else NULL. */
float* mha_workspace_take(void* ws, size_t ws_bytes, size_t floats) {
  if (ws == NULL || ws_bytes / sizeof(float) < floats + 64 / sizeof(float)) return NULL;
  const size_t pad = (64 - (uintptr_t)ws % 64) % 64;
  return (float*)((char*)ws + pad);
}

/* The one "plan a call" step of the core's entry points (mha_attention_f32,
 * mha_attention_kv_f32, mha_attention_varlen_f32 and their size queries;
 * the layer plans its chunks' core calls with mha_attention_workspace_floats
 * inside its own workspace): the kernels, the threads, the workspace count,
 * and the caller's workspace, taken when size_fn is non-NULL. */
mha_status mha_call_plan(const char* fn, const char* size_fn, const mha_attention_desc* d, int with_weights,
                         const mha_varlen_batch* batch, mha_call* c) {
  memset(c, 0, sizeof *c);
  mha_status st = mha_kernels_resolve(fn, d->isa, &c->kr);
  if (st != MHA_STATUS_SUCCESS) return st;
  c->nthreads = mha_resolve_workers(d->num_threads, d->threadpool);
  st = batch != NULL ? mha_attention_varlen_floats(c->kr, d, batch, c->nthreads, &c->floats)
                    : mha_attention_workspace_floats(c->kr, d, with_weights, c->nthreads, &c->floats);
  if (st != MHA_STATUS_SUCCESS || size_fn == NULL || d->workspace == NULL) return st;
  c->ws = mha_workspace_take(d->workspace, d->workspace_size, c->floats);
  if (c->ws == NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: workspace_size %zu is smaller than %s() (%zu)", fn,
                     d->workspace_size, size_fn, c->floats * sizeof(float) + 64);
  }
  return MHA_STATUS_SUCCESS;
}

mha_team mha_call_team(mha_call* c, const mha_attention_desc* d) {
  const mha_team team = {d->threadpool, c->nthreads, mha_trace_begin(&c->tracer, d->trace)};
  return team;
}

/* Binds a plan to its buffers and carves its shared parts from *shared
 * (advanced past them); zeroes the decode counters and builds the slot lists. */
void mha_attn_plan_bind(mha_attn_plan* p, const void* q, mha_dtype io_dt, const float* k, const float* v,
                        const mha_kv_cache* cache, void* out, float* weights, float** shared) {
  const mha_attention_desc* d = p->d;
  p->q = q;
  p->io_dt = io_dt;
  p->cache = cache;
  if (cache != NULL) {
    p->k = cache->k;
    p->v = cache->v;
    p->ks = &cache->k_strides;
    p->vs = &cache->v_strides;
    p->dt = cache->dtype;
    p->page = cache->block_size;
  } else {
    p->k = k;
    p->v = v;
    p->ks = &d->k;
    p->vs = &d->v;
    p->dt = MHA_DTYPE_F32;
  }
  p->esz = mha_dtype_size(p->dt);
  p->v_in_place = p->dt == MHA_DTYPE_F32 && p->page == 0;
  p->bf16_form = mha_bf16_form_of(p->kr, io_dt, p->dt);
  p->out = out;
  p->weights = weights;
  float* at = *shared;
  p->kt = p->kt_n ? at : NULL;
  p->kv_zero = NULL;
  if (p->bf16_form && p->kt != NULL && p->nk <= MHA_BF16_PREPASS_KEYS && p->kr->bf16_nr <= MHA_BF16_PREPASS_KEYS) {
    /* the pre-pass packs K and V blocks in the set's B layout once per call
     * (attention-bf16.c); its padding rows read this zero row, written here,
     * before the stages */
    uint16_t* zero = (uint16_t*)(p->kt + (size_t)p->kt_blocks * p->kt_blk);
    memset(zero, 0, (size_t)(p->d->D > p->d->Dv ? p->d->D : p->d->Dv) * sizeof(uint16_t));
    p->kv_zero = zero;
  }
  at += p->kt_n;
  p->partial = p->part_n ? at : NULL;
  at += p->part_n;
  p->done = p->done_n ? (int32_t*)at : NULL;
  at += p->done_n;
  p->ml = p->ml_n ? at : NULL;
  at += p->ml_n;
  p->slot_first = p->slot_n ? (int64_t*)at : NULL;
  p->slot_next = p->slot_n ? p->slot_first + d->H : NULL;
  at += p->slot_n;
  *shared = at;
  if (p->done != NULL) memset(p->done, 0, p->done_n * sizeof(int32_t));
  if (p->slot_first != NULL && weights != NULL) mha_weights_slots_index(p);
}

void mha_put_out_row(const mha_attn_plan* p, int64_t b, int64_t h, int64_t i, float* o, float inv) {
  const size_t Dv = (size_t)p->d->Dv;
  p->kr->vscale(Dv, o, inv);
  mha_narrow_row(p->kr, p->io_dt, Dv, o, (char*)p->out + (size_t)mha_out_at(p, b, h, i) * mha_dtype_size(p->io_dt));
}
