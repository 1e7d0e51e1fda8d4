/*
 * The attention core: validation and the portable flash loop.
 *
 * Work item = (batch b, K/V head g, query block). The query rows of all
 * G = H / Hkv heads that share K/V head g are packed side by side, so each
 * key/value block is read once per group, not once per query head. For each
 * key block: S = Qp·Kᵀ (GEMM micro-kernel), the online softmax step per row
 * (scale, mask, running max and sum, p = exp(s − m)), O = alpha·O + P·V.
 * Key blocks that the causal mask or kv_len hide from every row of the item
 * are never touched. Splits depend on the shape only, never on the thread
 * count, so results are bitwise identical for any number of threads.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "mha/internal.h"

/* Bound of |mask.offset|. With T < 2^61 (any view that fits memory), an
 * aligned position i' lies in (−2^61, 2^61 + 2^60) for every alignment. */
#define MHA_POS_LIMIT ((int64_t)1 << 60)
/* Clamp of the window's reach: a side of 2^62 reaches past every key from any
 * i' (i' − 2^62 < 0 and i' + 2^62 > 2^61 > Tk), and i' ± (2^62 + 1) cannot
 * overflow. A clamp of 2^60 would not do: with offset −(2^60 − 1) a window of
 * INT64_MAX on the right would end at key i + 1. */
#define MHA_WINDOW_LIMIT ((int64_t)1 << 62)

int64_t mha_weights_slots(const mha_attention_desc* d) {
  switch (d->weights_mode) {
    case MHA_WEIGHTS_HEAD_MEAN: return 1;
    case MHA_WEIGHTS_SELECTED: return d->weights_nheads;
    default: return d->H;
  }
}

mha_status mha_attention_validate(const char* fn, const mha_attention_desc* d, const float* q,
                                  const float* k, const float* v, const float* out,
                                  int with_weights) {
  if (d == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: desc is NULL", fn);
  if (q == NULL || k == NULL || v == NULL || out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     q == NULL ? "q" : k == NULL ? "k" : v == NULL ? "v" : "out");
  }
  const struct { const char* name; int64_t value; } sizes[] = {
      {"B", d->B}, {"H", d->H}, {"Hkv", d->Hkv}, {"Tq", d->Tq},
      {"Tk", d->Tk}, {"D", d->D}, {"Dv", d->Dv}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: %s = %lld, must be >= 1", fn, sizes[i].name,
                       (long long)sizes[i].value);
    }
  }
  if (d->H % d->Hkv != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: H (%lld) is not a multiple of Hkv (%lld)", fn,
                     (long long)d->H, (long long)d->Hkv);
  }
  if (!isfinite(d->scale)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: scale is not finite", fn);
  }
  if (d->mask.causal != 0 && d->mask.causal != 1) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.causal = %d, must be 0 or 1", fn,
                     d->mask.causal);
  }
  const mha_mask* mk = &d->mask;
  if ((int)mk->align < MHA_ALIGN_BOTTOM_RIGHT || (int)mk->align > MHA_ALIGN_KV_END) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.align = %d is not an mha_align", fn,
                     (int)mk->align);
  }
  if (mk->align == MHA_ALIGN_OFFSET && (mk->offset >= MHA_POS_LIMIT || mk->offset <= -MHA_POS_LIMIT)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.offset = %lld, must be within ±2^60", fn,
                     (long long)mk->offset);
  }
  if (mk->window != 0 && mk->window != 1) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.window = %d, must be 0 or 1", fn,
                     mk->window);
  }
  if (mk->window && (mk->window_left < 0 || mk->window_right < 0)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: mask.window_left = %lld, window_right = %lld: both must be >= 0", fn,
                     (long long)mk->window_left, (long long)mk->window_right);
  }
  if (!(mk->softcap >= 0.0f) || !isfinite(mk->softcap)) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.softcap must be 0 (off) or finite and > 0",
                     fn);
  }
  /* slopes and sinks: one documented rule, checked (O(H)) */
  for (int64_t h = 0; mk->alibi_slopes != NULL && h < d->H; h++) {
    if (!isfinite(mk->alibi_slopes[h])) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.alibi_slopes[%lld] = %g, must be finite", fn,
                       (long long)h, (double)mk->alibi_slopes[h]);
    }
  }
  for (int64_t h = 0; mk->sinks != NULL && h < d->H; h++) {
    if (isnan(mk->sinks[h]) || mk->sinks[h] == INFINITY) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                       "%s: mask.sinks[%lld] = %g, must be finite or -inf (no sink)", fn, (long long)h,
                       (double)mk->sinks[h]);
    }
  }
  if (d->num_threads < 0) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: num_threads = %d, must be >= 0", fn,
                     d->num_threads);
  }
  mha_status st;
  if ((st = mha_check_view(fn, "q", d->B, d->H, d->Tq, d->D, &d->q, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "k", d->B, d->Hkv, d->Tk, d->D, &d->k, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "v", d->B, d->Hkv, d->Tk, d->Dv, &d->v, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view_injective(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if (d->mask.additive != NULL) {
    st = mha_check_view(fn, "mask.additive", d->B, d->H, d->Tq, d->Tk, &d->mask.additive_strides, 1);
    if (st != MHA_STATUS_SUCCESS) return st;
  }
  if (d->mask.kv_len != NULL) {
    for (int64_t b = 0; b < d->B; b++) {
      if (d->mask.kv_len[b] < 0 || d->mask.kv_len[b] > d->Tk) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: mask.kv_len[%lld] = %d is outside [0, Tk = %lld]", fn, (long long)b,
                         (int)d->mask.kv_len[b], (long long)d->Tk);
      }
    }
  }
  if ((int)d->weights_mode < MHA_WEIGHTS_PER_HEAD || (int)d->weights_mode > MHA_WEIGHTS_SELECTED) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: weights_mode = %d is not an mha_weights_mode",
                     fn, (int)d->weights_mode);
  }
  if (with_weights && d->weights_mode == MHA_WEIGHTS_SELECTED) {
    if (d->weights_heads == NULL) {
      return mha_error(MHA_STATUS_NULL_POINTER, "%s: weights_heads is NULL (MHA_WEIGHTS_SELECTED)", fn);
    }
    if (d->weights_nheads < 1) {
      return mha_error(MHA_STATUS_INVALID_SIZE, "%s: weights_nheads = %lld, must be >= 1", fn,
                       (long long)d->weights_nheads);
    }
    for (int64_t k = 0; k < d->weights_nheads; k++) {
      if (d->weights_heads[k] < 0 || d->weights_heads[k] >= d->H) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: weights_heads[%lld] = %d is outside [0, H = %lld)", fn, (long long)k,
                         (int)d->weights_heads[k], (long long)d->H);
      }
    }
  }
  if (with_weights) {
    int64_t n;
    if (!mha_mul_i64(d->B, mha_weights_slots(d), &n) || !mha_mul_i64(n, d->Tq, &n) || !mha_mul_i64(n, d->Tk, &n) ||
        !mha_mul_i64(n, (int64_t)sizeof(float), &n) || (uint64_t)n > (uint64_t)SIZE_MAX) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the weights output [B, H, Tq, Tk] overflows", fn);
    }
  }
  return MHA_STATUS_SUCCESS;
}

/* The schedule of one call: a function of the shape and the kernels only. */
typedef struct mha_attn_plan {
  const mha_kernels* kr;
  const mha_attention_desc* d;
  const float* q;
  const void *k, *v; /* fp32 views, or a cache's buffers or pools (dt) */
  float *out, *weights;
  /* where K and V rows are: desc's views (fp32), or a cache (mha_kv_cache) */
  const mha_strides *ks, *vs; /* element strides; paged: batch = block to block */
  const mha_kv_cache* cache;  /* or NULL: desc's fp32 views */
  mha_dtype dt;               /* of K and V */
  size_t esz;                 /* bytes per K/V element */
  int64_t page;               /* paged: tokens per block (a power of two); 0: contiguous */
  int v_in_place;             /* fp32 contiguous V: the P·V GEMM reads it where it is */
  float scale;
  int modify;        /* a score modifier (soft-cap, ALiBi) runs before each softmax step */
  int64_t G;         /* query heads per K/V head */
  int64_t mq;        /* query rows per head in one item */
  int64_t nqb;       /* query blocks per head */
  int64_t nk;        /* keys per block */
  int64_t nkb;       /* key blocks per head: ⌈Tk / nk⌉ */
  int64_t rows;      /* G·mq: rows of the packed query tile */
  int use_nt;        /* few rows: scores as dot products with K in place */
  float* kt;         /* else: Kᵀ per key block, packed once, [B][Hkv][nkb][D][nk] */
  int64_t nsplit;    /* key ranges per item (decode); 1 otherwise */
  int64_t split_len; /* keys per range, a multiple of nk */
  float* partial;    /* nsplit > 1: per (item, range, row) O [Dv], m, l */
  int64_t items;     /* B·Hkv·nqb */
  int64_t units;     /* items·nsplit */
  int64_t kt_blocks; /* B·Hkv·nkb key blocks of packed Kᵀ; 0 in the nt form */
  size_t scratch;    /* floats of scratch per thread */
  int32_t* done;     /* nsplit > 1: per item, the ranges finished so far */
  /* lse element (b, h, i) at d->lse[b·lse_batch + h·lse_head + i·lse_row]:
   * [B, H, Tq], or [total_q, H] for one sequence of a packed batch */
  int64_t lse_batch, lse_head, lse_row;
  float* ml;         /* head-mean weights: every row's final (m, l), [B][H][Tq][2] */
  /* chosen heads' weights: the slots of head h are slot_first[h],
   * slot_next[that], ... (−1 ends), so a row finds its slots in O(1 + its
   * own), never by a scan of the list */
  int64_t *slot_first, *slot_next;
  /* floats of the workspace parts shared by the threads: Kᵀ, the decode
   * partials and counters, the head-mean (m, l), the slot lists; and their sum */
  size_t kt_n, part_n, done_n, ml_n, slot_n, shared_n;
} mha_attn_plan;

static size_t mha_round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* C[M×N] (+)= A[M×K]·B[K×N], all row-major with the given strides, tiled
 * over the micro-kernel. */
static void mha_gemm_tiles(const mha_kernels* kr, size_t M, size_t N, size_t K, const float* a,
                           size_t lda, const float* b, size_t ldb, float* c, size_t ldc,
                           int accumulate) {
  for (size_t j = 0; j < N; j += kr->gemm_nr) {
    const size_t n = N - j < kr->gemm_nr ? N - j : kr->gemm_nr;
    for (size_t i = 0; i < M; i += kr->gemm_mr) {
      const size_t m = M - i < kr->gemm_mr ? M - i : kr->gemm_mr;
      kr->gemm(m, n, K, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, accumulate);
    }
  }
}

/* The keys batch entry b has: kv_len or Tk. */
static int64_t mha_kv_end(const mha_attn_plan* p, int64_t b) {
  return p->d->mask.kv_len ? p->d->mask.kv_len[b] : p->d->Tk;
}

/* Row j of K (is_v = 0) or V (1) of K/V head g of entry b: in a contiguous
 * view or cache, or through the block table of a paged one. */
static const void* mha_kv_row(const mha_attn_plan* p, int is_v, int64_t b, int64_t g, int64_t j) {
  const mha_strides* s = is_v ? p->vs : p->ks;
  int64_t at;
  if (p->page != 0) {
    at = mha_kv_paged_offset(p->cache, s, b, g, j);
  } else {
    at = b * s->batch + g * s->head + j * s->row;
  }
  return (const char*)(is_v ? p->v : p->k) + (size_t)at * p->esz;
}

/* Of the rows j .. j + n, how many lie back to back from row j (one block of
 * a paged cache; all of them in a contiguous one). */
static size_t mha_kv_run(const mha_attn_plan* p, int64_t j, size_t n) {
  if (p->page == 0) return n;
  const size_t left = (size_t)(p->page - (j & (p->page - 1)));
  return left < n ? left : n;
}

/* y[0..n) = row x widened to fp32 (x: n elements of the plan's K/V type). */
static void mha_kv_widen(const mha_attn_plan* p, const void* x, size_t n, float* y) {
  switch (p->dt) {
    case MHA_DTYPE_F16: p->kr->widen_f16(n, (const uint16_t*)x, y); break;
    case MHA_DTYPE_BF16: p->kr->widen_bf16(n, (const uint16_t*)x, y); break;
    default: memcpy(y, x, n * sizeof(float)); break;
  }
}

/* The output row of (b, h, i). */
static float* mha_out_row(const mha_attn_plan* p, int64_t b, int64_t h, int64_t i) {
  const mha_strides* s = &p->d->out;
  return p->out + b * s->batch + h * s->head + i * s->row;
}

/* Writes row (b, h, i)'s log-sum-exp when an lse output is asked for. */
static void mha_put_lse(const mha_attn_plan* p, int64_t b, int64_t h, int64_t i, float value) {
  if (p->d->lse == NULL) return;
  p->d->lse[b * p->lse_batch + h * p->lse_head + i * p->lse_row] = value;
}

/* The packed Kᵀ of key block kb of (b, g). */
static float* mha_kt_block(const mha_attn_plan* p, int64_t b, int64_t g, int64_t kb) {
  return p->kt + (size_t)(((b * p->d->Hkv + g) * p->nkb + kb) * p->d->D * p->nk);
}

/* Packing units per key block: quarters of its keys, so that a B = 1
 * prefill has enough units for many threads. */
enum { MHA_KT_PARTS = 4 };

/* The pre-pass: Kᵀ of one quarter of a key block (unit = block · 4 + part),
 * into the block's [D × nk]; keys past kv_len left out. */
static void mha_pack_kt_part(const mha_attn_plan* p, int64_t unit) {
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
    for (int64_t d0 = 0; d0 < d->D; d0 += 64) {
      const size_t n = (size_t)(d->D - d0 < 64 ? d->D - d0 : 64);
      mha_kv_widen(p, (const char*)src + (size_t)d0 * p->esz, n, buf);
      for (size_t dd = 0; dd < n; dd++) kt[((size_t)d0 + dd) * (size_t)p->nk + (size_t)j] = buf[dd];
    }
  }
}

/* S[R × nk] (row stride nk_max) = Qp · K[j0 .. j0+nk)ᵀ */
static void mha_scores(const mha_attn_plan* p, size_t R, int64_t b, int64_t g, int64_t j0,
                       size_t nk, const float* qp, float* s) {
  const mha_attention_desc* d = p->d;
  const size_t D = (size_t)d->D, NK = (size_t)p->nk;
  if (p->use_nt) {
    /* dot products with the K rows in place, a run of back-to-back rows at
     * a time (one block of a paged cache): every score is computed alone */
    const size_t ldk = (size_t)p->ks->row;
    for (size_t j = 0; j < nk;) {
      const size_t n = mha_kv_run(p, j0 + (int64_t)j, nk - j);
      const void* krows = mha_kv_row(p, 0, b, g, j0 + (int64_t)j);
      switch (p->dt) {
        case MHA_DTYPE_F16: p->kr->gemm_nt_f16(R, n, D, qp, D, krows, ldk, s + j, NK); break;
        case MHA_DTYPE_BF16: p->kr->gemm_nt_bf16(R, n, D, qp, D, krows, ldk, s + j, NK); break;
        default: p->kr->gemm_nt(R, n, D, qp, D, krows, ldk, s + j, NK); break;
      }
      j += n;
    }
  } else {
    mha_gemm_tiles(p->kr, R, nk, D, qp, D, mha_kt_block(p, b, g, j0 / p->nk), NK, s, NK, 0);
  }
}

/* Row r of an item packs query row i = q0 + r % mq of head h = g·G + r / mq. */
typedef struct mha_row {
  int64_t h, i;
} mha_row;

static mha_row mha_item_row(const mha_attn_plan* p, int64_t g, int64_t q0, int64_t mq, size_t r) {
  mha_row row = {g * p->G + (int64_t)r / mq, q0 + (int64_t)r % mq};
  return row;
}

/* Of the keys [j0, j0 + nk), how many row (b, row) sees (a prefix: keys
 * [0, lim) are visible), and its additive mask from key j0 (NULL if none). */
static size_t mha_row_keys(const mha_attn_plan* p, int64_t b, mha_row row, int64_t lim, int64_t j0,
                           size_t nk, const float** add) {
  const mha_attention_desc* d = p->d;
  *add = NULL;
  if (d->mask.additive != NULL) {
    const mha_strides* ms = &d->mask.additive_strides;
    *add = d->mask.additive + b * ms->batch + row.h * ms->head + row.i * ms->row + j0;
  }
  const int64_t nv = lim - j0;
  return nv < 0 ? 0 : nv > (int64_t)nk ? nk : (size_t)nv;
}

/* The item's coordinates: batch entry, K/V head, first query row, rows per head. */
typedef struct mha_item_pos {
  int64_t b, g, q0, mq;
} mha_item_pos;

static mha_item_pos mha_item_pos_of(const mha_attn_plan* p, int64_t item) {
  mha_item_pos pos;
  pos.q0 = (item % p->nqb) * p->mq;
  pos.g = (item / p->nqb) % p->d->Hkv;
  pos.b = item / (p->nqb * p->d->Hkv);
  pos.mq = p->d->Tq - pos.q0 < p->mq ? p->d->Tq - pos.q0 : p->mq;
  return pos;
}

/* The aligned position i' of query row i of batch entry b (mha_align). */
static int64_t mha_aligned_pos(const mha_attn_plan* p, int64_t b, int64_t i) {
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

/* Packs an item's query rows into qp [R × D] and sets the keys [lo[r],
 * lim[r]) each row sees. Returns the largest lim, the end of the keys any row
 * of the item sees, and in *first the start of the first key block any row
 * sees (key blocks outside every row's keys are never visited). */
static int64_t mha_item_setup(const mha_attn_plan* p, mha_item_pos pos, float* qp, int64_t* lo,
                              int64_t* lim, int64_t* first) {
  const int64_t b = pos.b, g = pos.g, q0 = pos.q0, mq = pos.mq;
  const mha_attention_desc* d = p->d;
  const size_t R = (size_t)(p->G * mq), D = (size_t)d->D;
  int64_t max_lim = 0, min_lo = INT64_MAX;
  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, g, q0, mq, r);
    memcpy(qp + r * D, p->q + b * d->q.batch + row.h * d->q.head + row.i * d->q.row, D * sizeof(float));
    mha_row_interval(p, b, row.i, &lo[r], &lim[r]);
    if (lim[r] > max_lim) max_lim = lim[r];
    if (lim[r] > lo[r] && lo[r] < min_lo) min_lo = lo[r];
  }
  *first = max_lim == 0 ? 0 : min_lo / p->nk * p->nk;
  return max_lim;
}

/* The per-thread scratch of an item: query rows, a score tile, the output
 * accumulator, the running max and sum, the row limits, a merge row. */
typedef struct mha_scratch {
  float *qp, *s, *o, *m, *l, *acc;
  int64_t *lo, *lim; /* row r sees keys [lo[r], lim[r]) (before the additive mask) */
  float* vclean; /* [nk × Dv]: a V block in fp32 (widened, gathered, or with its
                    non-finite rows zeroed) for the P·V GEMM */
  const void** vrows; /* [nk]: the V rows of a key block (the pointer form of P·V) */
  unsigned char* bad; /* [nk]: key j's V row holds a NaN or an infinity */
} mha_scratch;

static mha_scratch mha_scratch_of(const mha_attn_plan* p, float* base) {
  const size_t rows = (size_t)p->rows;
  mha_scratch sc;
  sc.qp = base;                                              /* [rows × D]  */
  sc.s = sc.qp + mha_round16(rows * (size_t)p->d->D);        /* [rows × nk] */
  sc.o = sc.s + mha_round16(rows * (size_t)p->nk);           /* [rows × Dv] */
  sc.m = sc.o + mha_round16(rows * (size_t)p->d->Dv);
  sc.l = sc.m + mha_round16(rows);
  sc.lo = (int64_t*)(sc.l + mha_round16(rows));
  sc.lim = sc.lo + rows;
  sc.acc = sc.l + mha_round16(rows) + mha_round16(2 * rows * sizeof(int64_t) / sizeof(float));
  sc.vclean = sc.acc + mha_round16((size_t)p->d->Dv);
  sc.vrows = (const void**)(sc.vclean + mha_round16((size_t)p->nk * (size_t)p->d->Dv));
  sc.bad = (unsigned char*)(sc.vclean + mha_round16((size_t)p->nk * (size_t)p->d->Dv) +
                            mha_round16((size_t)p->nk * sizeof(void*) / sizeof(float)));
  return sc;
}

/* Row r's logits of key block j0 (S row `srow`, nk keys), ready for the
 * softmax step: returns the visible prefix n_valid, sets *add (the row's
 * additive mask from key j0, or NULL), *nlo (the keys before the row's window:
 * the caller starts after them and never reads them) and *step_scale (the
 * scale the step still applies: 1 once the modifiers ran here on keys
 * [nlo, n_valid)). */
static size_t mha_row_prepare(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos,
                              size_t r, int64_t j0, size_t nk, float* srow, const float** add,
                              size_t* nlo, float* step_scale) {
  const mha_attention_desc* d = p->d;
  const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
  const size_t nv = mha_row_keys(p, pos.b, row, sc->lim[r], j0, nk, add);
  const int64_t before = sc->lo[r] - j0;
  *nlo = before <= 0 ? 0 : before >= (int64_t)nv ? nv : (size_t)before;
  *step_scale = p->scale;
  if (nv == 0 || (!p->modify && *nlo == 0)) return nv;
  const float slope = d->mask.alibi_slopes ? d->mask.alibi_slopes[row.h] : 0.0f;
  const int64_t ip = mha_aligned_pos(p, pos.b, row.i);
  p->kr->scoremod(nv - *nlo, srow + *nlo, p->scale, d->mask.softcap, slope,
                  (float)(j0 + (int64_t)*nlo - ip));
  *step_scale = 1.0f;
  return nv;
}

/* The inspection pass of one item: recompute the scores and write the final
 * probabilities exp(s − m[r]) / l[r] of every row (zeros where hidden). */
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
static void mha_weights_slots_index(const mha_attn_plan* p) {
  const mha_attention_desc* d = p->d;
  for (int64_t h = 0; h < d->H; h++) p->slot_first[h] = -1;
  for (int64_t k = d->weights_nheads - 1; k >= 0; k--) { /* backwards: each list in slot order */
    const int64_t h = d->weights_heads[k];
    p->slot_next[k] = p->slot_first[h];
    p->slot_first[h] = k;
  }
}

/* Row r's final probabilities of key block j0 into srow (after mha_scores):
 * exp(s − m[r]) / l[r], 0 on hidden keys. Returns the keys it covers (the
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
    srow[j] = add == NULL ? srow[j] * sc_step : add[j] == -INFINITY ? -INFINITY : srow[j] * sc_step + add[j];
  }
  p->kr->vexp_scale(nv - nlo, srow + nlo, sc->m[r], 1.0f / sc->l[r]);
  /* a hidden key's weight is 0, also in a NaN row (0 · NaN) */
  for (size_t j = 0; j < nlo; j++) srow[j] = 0.0f;
  if (add != NULL) {
    for (size_t j = nlo; j < nv; j++) srow[j] = add[j] == -INFINITY ? 0.0f : srow[j];
  }
  return nv;
}

static void mha_attention_weights(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc,
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
    mha_scores(p, R, pos.b, pos.g, j0, nk, sc->qp, sc->s);
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
static void mha_attention_weights_mean(const mha_attn_plan* p, int64_t unit, float* scratch) {
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
    const int64_t max_lim = mha_item_setup(p, pos, sc.qp, sc.lo, sc.lim, &first);
    for (size_t r = 0; r < R; r++) {
      const mha_row row = mha_item_row(p, g, pos.q0, pos.mq, r);
      const float* ml = p->ml + ((b * d->H + row.h) * d->Tq + row.i) * 2;
      sc.m[r] = ml[0];
      sc.l[r] = ml[1];
    }
    /* rows in head order within the group: r = (h − g·G)·mq + (i − q0) */
    for (int64_t j0 = first; j0 < max_lim; j0 += p->nk) {
      const size_t nk = (size_t)(max_lim - j0 < p->nk ? max_lim - j0 : p->nk);
      mha_scores(p, R, b, g, j0, nk, sc.qp, sc.s);
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

/* The partial (O [Dv], m, l) of row r of key range `split` of an item. */
static float* mha_partial_row(const mha_attn_plan* p, int64_t item, int64_t split, size_t r) {
  return p->partial + ((size_t)(item * p->nsplit + split) * (size_t)p->rows + r) * (size_t)(p->d->Dv + 2);
}

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

/* O += P·V over one key block (keys j0 .. j0 + nk of (b, g)).
 *
 * Where V is read: an fp32 contiguous V goes into the GEMM where it is. A
 * 16-bit or paged V goes, in the dot-product form (decode: each V row is used
 * by few query rows, so the bytes read are the cost), through the pointer
 * kernels (gemm_pv_*), which widen in registers; in the tiled form (prefill:
 * each V block is used by a whole query block) it is widened or gathered into
 * the fp32 tile vclean first, as a GEMM packs its B panel: nk·Dv conversions
 * for G·mq·nk·Dv FMAs. Every form runs per element the GEMM's operations in
 * the GEMM's order, so all give the same bits for the same (widened) values.
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
                             int64_t j0, size_t nk, int careful) {
  const mha_kernels* kr = p->kr;
  const size_t Dv = (size_t)p->d->Dv, NK = (size_t)p->nk;
  if (!careful && p->v_in_place) {
    const float* vblk = mha_kv_row(p, 1, pos.b, pos.g, j0);
    mha_gemm_tiles(kr, R, Dv, nk, sc->s, NK, vblk, (size_t)p->vs->row, sc->o, Dv, 1);
    return;
  }
  if (!careful && p->use_nt) {
    const size_t step = (size_t)p->vs->row * p->esz;
    for (size_t j = 0; j < nk;) { /* a run of back-to-back rows at a time */
      const size_t run = mha_kv_run(p, j0 + (int64_t)j, nk - j);
      const char* row = mha_kv_row(p, 1, pos.b, pos.g, j0 + (int64_t)j);
      for (size_t r = 0; r < run; r++, row += step) sc->vrows[j + r] = row;
      j += run;
    }
    switch (p->dt) {
      case MHA_DTYPE_F16: kr->gemm_pv_f16(R, Dv, nk, sc->s, NK, (const uint16_t* const*)sc->vrows, sc->o, Dv); break;
      case MHA_DTYPE_BF16: kr->gemm_pv_bf16(R, Dv, nk, sc->s, NK, (const uint16_t* const*)sc->vrows, sc->o, Dv); break;
      default: kr->gemm_pv_f32(R, Dv, nk, sc->s, NK, (const float* const*)sc->vrows, sc->o, Dv); break;
    }
    return;
  }
  /* the fp32 tile: V rows widened or gathered, non-finite rows zeroed when careful */
  int any_bad = 0;
  for (size_t j = 0; j < nk; j++) {
    float* row = sc->vclean + j * Dv;
    mha_kv_widen(p, mha_kv_row(p, 1, pos.b, pos.g, j0 + (int64_t)j), Dv, row);
    sc->bad[j] = (unsigned char)(careful && mha_any_nonfinite(row, Dv));
    if (sc->bad[j]) memset(row, 0, Dv * sizeof(float));
    any_bad |= sc->bad[j];
  }
  mha_gemm_tiles(kr, R, Dv, nk, sc->s, NK, sc->vclean, Dv, sc->o, Dv, 1);
  if (!any_bad) return;
  for (size_t j = 0; j < nk; j++) {
    if (!sc->bad[j]) continue;
    float* vrow = sc->acc; /* the row again, as it is (acc is free in the flash loop) */
    mha_kv_widen(p, mha_kv_row(p, 1, pos.b, pos.g, j0 + (int64_t)j), Dv, vrow);
    for (size_t r = 0; r < R; r++) {
      if (mha_key_hidden(p, sc, pos, r, j0, j)) continue;
      const float pj = sc->s[r * NK + j];
      for (size_t c = 0; c < Dv; c++) sc->o[r * Dv + c] += pj * vrow[c];
    }
  }
}

/* Prefetches the K and V rows of keys [j0, j0 + n) of (b, g) into the
 * caches (the dot-product form reads them in place: decode). Through a paged
 * cache's table the next block is at an address no hardware prefetcher can
 * guess; in a contiguous one this runs ahead of the streams the prefetchers
 * would find. */
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
 * sink, m = sink, l = 1 (the sink's term exp(sink − m), with no value row). */
static void mha_item_flash(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t R,
                           int64_t k_begin, int64_t k_end, int with_sink, int careful) {
  const mha_attention_desc* d = p->d;
  const mha_kernels* kr = p->kr;
  const size_t Dv = (size_t)d->Dv, NK = (size_t)p->nk;
  for (size_t r = 0; r < R; r++) {
    const float sink = with_sink ? d->mask.sinks[mha_item_row(p, pos.g, pos.q0, pos.mq, r).h] : -INFINITY;
    sc->m[r] = sink;
    sc->l[r] = sink == -INFINITY ? 0.0f : 1.0f;
  }
  memset(sc->o, 0, R * Dv * sizeof(float));
  for (int64_t j0 = k_begin; j0 < k_end; j0 += p->nk) {
    const size_t nk = (size_t)(k_end - j0 < p->nk ? k_end - j0 : p->nk);
    if (p->use_nt && j0 + p->nk < k_end) {
      const int64_t j1 = j0 + p->nk;
      mha_kv_prefetch(p, pos.b, pos.g, j1, (size_t)(k_end - j1 < p->nk ? k_end - j1 : p->nk));
    }
    mha_scores(p, R, pos.b, pos.g, j0, nk, sc->qp, sc->s);
    for (size_t r = 0; r < R; r++) {
      const float* add;
      size_t nlo;
      float step_scale;
      float* srow = sc->s + r * NK;
      const size_t nv = mha_row_prepare(p, sc, pos, r, j0, nk, srow, &add, &nlo, &step_scale);
      /* the step starts after the keys before the row's window: their mask
       * entries are never read, so a NaN or +inf there cannot reach the row
       * (-inf + NaN is NaN), as for the keys after lim */
      const float alpha = kr->softmax_online_row(nk - nlo, nv - nlo, srow + nlo, step_scale,
                                                 add != NULL ? add + nlo : NULL, &sc->m[r], &sc->l[r]);
      for (size_t j = 0; j < nlo; j++) srow[j] = 0.0f;
      if (alpha != 1.0f) kr->vscale(Dv, sc->o + r * Dv, alpha);
    }
    mha_attention_pv(p, sc, pos, R, j0, nk, careful);
  }
}

static void mha_attention_merge(const mha_attn_plan* p, int64_t item, float* scratch);

/* A row's log-sum-exp from its running (m, l): −inf for a row that saw
 * nothing (l = 0), NaN for a NaN row. */
static float mha_lse(float m, float l) { return l == 0.0f ? -INFINITY : m + logf(l); }

/* One (item, key range): the flash loop over the range's key blocks. */
static void mha_attention_item(const mha_attn_plan* p, int64_t item, int64_t split, float* scratch) {
  const mha_attention_desc* d = p->d;
  const mha_kernels* kr = p->kr;
  const mha_item_pos pos = mha_item_pos_of(p, item);
  const size_t R = (size_t)(p->G * pos.mq);
  const size_t Dv = (size_t)d->Dv;
  const mha_scratch sc = mha_scratch_of(p, scratch);

  int64_t first;
  const int64_t max_lim = mha_item_setup(p, pos, sc.qp, sc.lo, sc.lim, &first);
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
    float* dst = mha_out_row(p, pos.b, row.h, row.i);
    memcpy(dst, sc.o + r * Dv, Dv * sizeof(float));
    kr->vscale(Dv, dst, inv);
    mha_put_lse(p, pos.b, row.h, row.i, mha_lse(sc.m[r], sc.l[r]));
  }
  if (p->weights != NULL) mha_attention_weights(p, pos, &sc, first, max_lim);
}

/* Decode: merges the key ranges of one item (log-sum-exp) and writes out.
 *   M = max_s m_s,  L = Σ_s l_s·e^(m_s − M),  out = Σ_s O_s·e^(m_s − M) / L
 * in a fixed order of s; a range that saw no key has m_s = −inf and adds 0.
 * With weights, the inspection pass then runs with the merged (M, L). */
static void mha_attention_merge(const mha_attn_plan* p, int64_t item, float* scratch) {
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
      const float f = ps[Dv] == -INFINITY ? 0.0f : expf(ps[Dv] - M);
      L += ps[Dv + 1] * f;
      for (size_t c = 0; c < Dv; c++) sc.acc[c] += ps[c] * f;
    }
    const mha_row row = mha_item_row(p, pos.g, pos.q0, pos.mq, r);
    float* dst = mha_out_row(p, pos.b, row.h, row.i);
    const float inv = L == 0.0f ? 0.0f : 1.0f / L;
    for (size_t c = 0; c < Dv; c++) dst[c] = sc.acc[c] * inv;
    mha_put_lse(p, pos.b, row.h, row.i, mha_lse(M, L));
    sc.m[r] = M;
    sc.l[r] = L;
  }
  if (p->weights != NULL) {
    int64_t first;
    const int64_t max_lim = mha_item_setup(p, pos, sc.qp, sc.lo, sc.lim, &first);
    mha_attention_weights(p, pos, &sc, first, max_lim);
  }
}

/* Checked size_t arithmetic for the workspace count: *acc += a·b, bad |= overflow. */
static void mha_count(size_t* acc, size_t a, size_t b, int* bad) {
  size_t t;
  *bad |= __builtin_mul_overflow(a, b, &t);
  *bad |= __builtin_add_overflow(*acc, t, acc);
}

/* Decode key ranges: enough that one entry's Hkv heads make MHA_DECODE_UNITS
 * units (4 per thread at 64 threads), at most MHA_DECODE_MAX_RANGES, each of at
 * least MHA_DECODE_MIN_BLOCKS key blocks (128 keys). Over 4096 keys: 32 ranges
 * at Hkv 8, 8 at Hkv 32 (32 there cost 6% in per-range overhead). A function
 * of Hkv, Tk and the key block only: never of B or the thread count, so an
 * entry's bits do not depend on its batch. */
enum { MHA_DECODE_MIN_BLOCKS = 2, MHA_DECODE_MAX_RANGES = 64, MHA_DECODE_UNITS = 256 };

/* Units of work each thread should have to choose from (dynamic schedule). */
enum { MHA_ATTN_UNITS_PER_THREAD = 4 };

/* Fills the schedule of one call (B entries of desc's shape) and counts its
 * workspace: p->scratch floats per thread, and p->shared_n floats that the
 * threads share (the packed Kᵀ blocks of the prefill form, the decode
 * partials, the weights passes' state). want_items: how many work items the
 * threads would like (query blocks shrink towards it; no result changes).
 * Every product is overflow-checked. */
static mha_status mha_attn_plan_make(mha_attn_plan* p, const mha_kernels* kr, const mha_attention_desc* d,
                                     int with_weights, int64_t want_items) {
  static const char fn[] = "mha_attention_f32";
  memset(p, 0, sizeof *p);
  p->kr = kr;
  p->d = d;
  p->scale = d->scale != 0.0f ? d->scale : (float)(1.0 / sqrt((double)d->D));
  p->modify = d->mask.softcap > 0.0f || d->mask.alibi_slopes != NULL;
  p->G = d->H / d->Hkv;
  p->nk = (int64_t)kr->attn_nk;
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
   * softmax and P·V are computed alone): with few items for the threads (a
   * B = 1 prefill), smaller query blocks, down to one MR tile of rows. */
  p->mq = mq0;
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

  const size_t rows = (size_t)p->rows, D = (size_t)d->D, Dv = (size_t)d->Dv, NK = (size_t)p->nk;
  int bad = 0;
  size_t scratch = 0;
  mha_count(&scratch, rows, D, &bad);
  mha_count(&scratch, rows, NK, &bad);
  mha_count(&scratch, rows, Dv, &bad);
  mha_count(&scratch, rows, 2 + 2 * sizeof(int64_t) / sizeof(float), &bad);
  mha_count(&scratch, Dv, 1, &bad);
  mha_count(&scratch, NK, Dv, &bad);
  mha_count(&scratch, NK, sizeof(void*) / sizeof(float), &bad);
  mha_count(&scratch, NK / sizeof(float) + 1, 1, &bad);
  mha_count(&scratch, 16, 11, &bad); /* ten parts, each rounded up to 16 floats */
  p->scratch = scratch & ~(size_t)15;
  if (p->kt_blocks > 0) {
    size_t blk = 0;
    mha_count(&blk, D, NK, &bad);
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
static int mha_attn_threads(int nthreads, int64_t units) {
  if (nthreads > units) nthreads = (int)units;
  return nthreads < 1 ? 1 : nthreads;
}

/* floats = scratch · threads + shared, checked. */
static mha_status mha_attn_total(size_t scratch, int threads, size_t shared, size_t* floats) {
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
  mha_status st = mha_attn_plan_make(&p, kr, d, 0, (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads);
  if (st != MHA_STATUS_SUCCESS) return st;
  *pack_units = p.kt_blocks * MHA_KT_PARTS;
  *units = p.units;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_workspace_floats(const mha_kernels* kr, const mha_attention_desc* d,
                                          int with_weights, int nthreads, size_t* floats) {
  mha_attn_plan p;
  mha_status st = mha_attn_plan_make(&p, kr, d, with_weights, (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_attn_total(p.scratch, mha_attn_threads(nthreads, p.units), p.shared_n, floats);
}

/* A caller's workspace, aligned up to 64 bytes, if it has the size that
 * *_workspace_size() reports (floats + 64 bytes, whatever its alignment);
 * else NULL. */
float* mha_workspace_take(void* ws, size_t ws_bytes, size_t floats) {
  if (ws == NULL || ws_bytes / sizeof(float) < floats + 64 / sizeof(float)) return NULL;
  const size_t pad = (64 - (uintptr_t)ws % 64) % 64;
  return (float*)((char*)ws + pad);
}

mha_status mha_attention_caller_workspace(const char* fn, const char* size_fn, const mha_kernels* kr,
                                          const mha_attention_desc* d, int with_weights, int nthreads,
                                          float** ws) {
  *ws = NULL;
  if (d->workspace == NULL) return MHA_STATUS_SUCCESS;
  size_t floats;
  mha_status st = mha_attention_workspace_floats(kr, d, with_weights, nthreads, &floats);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_workspace_check(fn, size_fn, d->workspace, d->workspace_size, floats, ws);
}

mha_status mha_workspace_check(const char* fn, const char* size_fn, void* workspace, size_t bytes,
                               size_t floats, float** ws) {
  *ws = mha_workspace_take(workspace, bytes, floats);
  if (*ws == NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: workspace_size %zu is smaller than %s() (%zu)", fn,
                     bytes, size_fn, floats * sizeof(float) + 64);
  }
  return MHA_STATUS_SUCCESS;
}

/* Binds a plan to its buffers and carves its shared parts from *shared
 * (advanced past them); zeroes the decode counters and builds the slot lists. */
static void mha_attn_plan_bind(mha_attn_plan* p, const float* q, const float* k, const float* v,
                               const mha_kv_cache* cache, float* out, float* weights, float** shared) {
  const mha_attention_desc* d = p->d;
  p->q = q;
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
  p->out = out;
  p->weights = weights;
  float* at = *shared;
  p->kt = p->kt_n ? at : NULL;
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

/* The parallel stages of n bound plans, as one unit space each: the Kᵀ
 * packing, then the (item, key range) units, then the head-mean weights
 * passes. Unit u of a stage belongs to the plan i with first[i] <= u <
 * first[i + 1]. scratch: nthreads parts of `stride` floats. */
typedef struct mha_attn_stages {
  const mha_attn_plan* plans;
  int64_t n;
  const int64_t *pack_first, *unit_first, *mean_first; /* [n + 1] each */
} mha_attn_stages;

/* The plan that unit u of a stage belongs to: first[i] <= u < first[i + 1]. */
static int64_t mha_attn_plan_of(const int64_t* first, int64_t n, int64_t u) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (first[mid] <= u) lo = mid; else hi = mid - 1;
  }
  return lo;
}

static void mha_attn_pack_unit(const mha_attn_stages* s, int64_t u) {
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(s->pack_first, s->n, u);
  mha_pack_kt_part(&s->plans[i], u - s->pack_first[i]);
}

static void mha_attn_item_unit(const mha_attn_stages* s, int64_t u, float* scratch) {
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(s->unit_first, s->n, u);
  const mha_attn_plan* p = &s->plans[i];
  const int64_t v = u - s->unit_first[i];
  mha_attention_item(p, v / p->nsplit, v % p->nsplit, scratch);
}

static void mha_attn_mean_unit(const mha_attn_stages* s, int64_t u, float* scratch) {
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(s->mean_first, s->n, u);
  mha_attention_weights_mean(&s->plans[i], u - s->mean_first[i], scratch);
}

static void mha_attn_execute(const mha_attn_stages* s, int nthreads, float* scratch, size_t stride) {
  const int64_t n = s->n, pack = s->pack_first[n], units = s->unit_first[n], mean = s->mean_first[n];
  /* One thread opens no parallel region: the OpenMP runtime allocates its
   * team there and exits the process if that fails. The loops are the same. */
  if (nthreads == 1) {
    for (int64_t u = 0; u < pack; u++) mha_attn_pack_unit(s, u);
    for (int64_t u = 0; u < units; u++) mha_attn_item_unit(s, u, scratch);
    for (int64_t u = 0; u < mean; u++) mha_attn_mean_unit(s, u, scratch);
    return;
  }
#pragma omp parallel num_threads(nthreads)
  {
    float* mine = scratch + (size_t)omp_get_thread_num() * stride;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < pack; u++) mha_attn_pack_unit(s, u);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; u++) mha_attn_item_unit(s, u, mine);
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < mean; u++) mha_attn_mean_unit(s, u, mine);
  }
}

/* The head-mean weights pass's units of a bound plan: one per (b, query block). */
static int64_t mha_attn_mean_units(const mha_attn_plan* p) {
  return p->weights != NULL && p->d->weights_mode == MHA_WEIGHTS_HEAD_MEAN ? p->d->B * p->nqb : 0;
}

mha_status mha_attention_run(const mha_kernels* kr, const mha_attention_desc* d, const float* q,
                             const float* k, const float* v, const mha_kv_cache* cache, float* out,
                             float* weights, int nthreads, float* workspace) {
  static const char fn[] = "mha_attention_f32";
  mha_attn_plan p;
  mha_status st = mha_attn_plan_make(&p, kr, d, weights != NULL, (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads);
  if (st != MHA_STATUS_SUCCESS) return st;
  nthreads = mha_attn_threads(nthreads, p.units);
  size_t total = 0;
  if ((st = mha_attn_total(p.scratch, nthreads, p.shared_n, &total)) != MHA_STATUS_SUCCESS) return st;
  float* ws = workspace;
  if (ws == NULL) {
    ws = aligned_alloc(64, (total * sizeof(float) + 63) & ~(size_t)63);
    if (ws == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace", fn,
                       total * sizeof(float));
    }
  }
  float* shared = ws + p.scratch * (size_t)nthreads;
  mha_attn_plan_bind(&p, q, k, v, cache, out, weights, &shared);
  const int64_t pack_first[2] = {0, p.kt_blocks * MHA_KT_PARTS}, unit_first[2] = {0, p.units},
                mean_first[2] = {0, mha_attn_mean_units(&p)};
  const mha_attn_stages stages = {&p, 1, pack_first, unit_first, mean_first};
  mha_attn_execute(&stages, nthreads, ws, p.scratch);
  if (workspace == NULL) free(ws);
  return MHA_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* Packed variable-length batches: one plan per sequence                    */
/* ------------------------------------------------------------------------ */

/* Sequence b of a packed batch as a call of its own: B = 1, Tq = len_q, Tk =
 * len_k (a sequence without keys: Tk = 1 with kv_len {0}, so its rows see
 * nothing), its views at its rows of the packed tensors, lse [len_q, H]
 * rows of the packed [total_q, H]. The plan of this desc is the plan of the
 * sequence called alone, so its bits are that call's. */
static const int32_t mha_no_keys = 0;

static void mha_varlen_seq_desc(const mha_attention_desc* d, const int32_t* cu_q, const int32_t* cu_k,
                                int64_t b, mha_attention_desc* s) {
  *s = *d;
  const int64_t len_k = (int64_t)cu_k[b + 1] - cu_k[b];
  s->B = 1;
  s->Tq = (int64_t)cu_q[b + 1] - cu_q[b];
  s->Tk = len_k > 0 ? len_k : 1;
  s->mask.kv_len = len_k > 0 ? NULL : &mha_no_keys;
  s->q.batch = s->k.batch = s->v.batch = s->out.batch = 0;
  if (d->lse != NULL) s->lse = d->lse + (int64_t)cu_q[b] * d->H;
  s->workspace = NULL;
  s->workspace_size = 0;
}

/* The items a sequence of len_q rows should aim for: its share of want. */
static int64_t mha_varlen_want(int64_t want, int64_t len_q, int64_t total_q) {
  const double w = (double)want * (double)len_q / (double)total_q;
  return w < 1.0 ? 1 : (int64_t)ceil(w);
}

/* The layout of a varlen call's workspace: per-thread scratch, then every
 * sequence's shared parts, then the plans, their descs and the unit tables. */
typedef struct mha_varlen_layout {
  int64_t nseq;      /* sequences with query rows */
  size_t scratch;    /* floats per thread: the largest plan's */
  size_t shared;     /* floats of all plans' shared parts */
  int64_t units;     /* work units of all plans */
  int threads;
  size_t meta;       /* floats of plans, descs and the three [nseq + 1] tables */
  size_t total;
} mha_varlen_layout;

static size_t mha_floats_for_bytes(size_t bytes) { return mha_round16((bytes + sizeof(float) - 1) / sizeof(float)); }

/* A pass over the sequences making each plan (not kept): the sizes. */
static mha_status mha_varlen_layout_of(const mha_kernels* kr, const mha_attention_desc* d, const int32_t* cu_q,
                                       const int32_t* cu_k, int nthreads, mha_varlen_layout* l) {
  memset(l, 0, sizeof *l);
  const int64_t total_q = cu_q[d->B], want = (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads;
  int bad = 0;
  for (int64_t b = 0; b < d->B; b++) {
    if (cu_q[b + 1] == cu_q[b]) continue;
    mha_attention_desc s;
    mha_attn_plan p;
    mha_varlen_seq_desc(d, cu_q, cu_k, b, &s);
    mha_status st = mha_attn_plan_make(&p, kr, &s, 0, mha_varlen_want(want, s.Tq, total_q));
    if (st != MHA_STATUS_SUCCESS) return st;
    l->nseq++;
    if (p.scratch > l->scratch) l->scratch = p.scratch;
    mha_count(&l->shared, p.shared_n, 1, &bad);
    bad |= !mha_add_i64(l->units, p.units, &l->units);
  }
  l->threads = mha_attn_threads(nthreads, l->units);
  mha_count(&l->meta, (size_t)l->nseq, mha_floats_for_bytes(sizeof(mha_attn_plan)), &bad);
  mha_count(&l->meta, (size_t)l->nseq, mha_floats_for_bytes(sizeof(mha_attention_desc)), &bad);
  mha_count(&l->meta, (size_t)l->nseq + 1, 3 * sizeof(int64_t) / sizeof(float), &bad);
  l->meta = mha_round16(l->meta);
  mha_count(&l->total, l->scratch, (size_t)l->threads, &bad);
  mha_count(&l->total, l->shared, 1, &bad);
  mha_count(&l->total, l->meta, 1, &bad);
  if (bad || l->total > (SIZE_MAX - 128) / sizeof(float)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "mha_attention_varlen_f32: the workspace size overflows");
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_varlen_floats(const mha_kernels* kr, const mha_attention_desc* d, const int32_t* cu_q,
                                       const int32_t* cu_k, int nthreads, size_t* floats) {
  mha_varlen_layout l;
  mha_status st = mha_varlen_layout_of(kr, d, cu_q, cu_k, nthreads, &l);
  if (st == MHA_STATUS_SUCCESS) *floats = l.total;
  return st;
}

mha_status mha_attention_varlen_run(const mha_kernels* kr, const mha_attention_desc* d, const int32_t* cu_q,
                                    const int32_t* cu_k, const float* q, const float* k, const float* v,
                                    float* out, int nthreads, float* workspace) {
  static const char fn[] = "mha_attention_varlen_f32";
  mha_varlen_layout l;
  mha_status st = mha_varlen_layout_of(kr, d, cu_q, cu_k, nthreads, &l);
  if (st != MHA_STATUS_SUCCESS || l.nseq == 0) return st;
  float* ws = workspace;
  if (ws == NULL) {
    ws = aligned_alloc(64, (l.total * sizeof(float) + 63) & ~(size_t)63);
    if (ws == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace", fn,
                       l.total * sizeof(float));
    }
  }
  float* shared = ws + l.scratch * (size_t)l.threads;
  char* meta = (char*)(shared + l.shared);
  mha_attn_plan* plans = (mha_attn_plan*)meta;
  mha_attention_desc* descs = (mha_attention_desc*)(meta + (size_t)l.nseq * mha_floats_for_bytes(sizeof(mha_attn_plan)) * sizeof(float));
  int64_t* pack_first = (int64_t*)((char*)descs + (size_t)l.nseq * mha_floats_for_bytes(sizeof(mha_attention_desc)) * sizeof(float));
  int64_t* unit_first = pack_first + l.nseq + 1;
  int64_t* mean_first = unit_first + l.nseq + 1;
  const int64_t total_q = cu_q[d->B], want = (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads;
  int64_t i = 0;
  pack_first[0] = unit_first[0] = mean_first[0] = 0;
  for (int64_t b = 0; b < d->B; b++) {
    if (cu_q[b + 1] == cu_q[b]) continue;
    mha_attention_desc* s = &descs[i];
    mha_attn_plan* p = &plans[i];
    mha_varlen_seq_desc(d, cu_q, cu_k, b, s);
    (void)mha_attn_plan_make(p, kr, s, 0, mha_varlen_want(want, s->Tq, total_q)); /* it passed above */
    p->lse_batch = 0; /* lse [total_q, H] */
    p->lse_head = 1;
    p->lse_row = d->H;
    mha_attn_plan_bind(p, q + (int64_t)cu_q[b] * d->q.row, k + (int64_t)cu_k[b] * d->k.row,
                       v + (int64_t)cu_k[b] * d->v.row, NULL, out + (int64_t)cu_q[b] * d->out.row, NULL, &shared);
    pack_first[i + 1] = pack_first[i] + p->kt_blocks * MHA_KT_PARTS;
    unit_first[i + 1] = unit_first[i] + p->units;
    mean_first[i + 1] = 0;
    i++;
  }
  const mha_attn_stages stages = {plans, l.nseq, pack_first, unit_first, mean_first};
  mha_attn_execute(&stages, l.threads, ws, l.scratch);
  if (workspace == NULL) free(ws);
  return MHA_STATUS_SUCCESS;
}

void mha_attention_desc_init(mha_attention_desc* d, int64_t B, int64_t H, int64_t Hkv, int64_t Tq,
                             int64_t Tk, int64_t D, int64_t Dv) {
  if (d == NULL) return;
  memset(d, 0, sizeof *d);
  d->B = B;
  d->H = H;
  d->Hkv = Hkv;
  d->Tq = Tq;
  d->Tk = Tk;
  d->D = D;
  d->Dv = Dv;
  d->q = mha_strides_bhtd(H, Tq, D);
  d->k = mha_strides_bhtd(Hkv, Tk, D);
  d->v = mha_strides_bhtd(Hkv, Tk, Dv);
  d->out = mha_strides_bhtd(H, Tq, Dv);
}

/* a·b, or INT64_MAX when it overflows: the helpers never fail, and the
 * validation of the call refuses such a stride (its view's extent overflows) */
static int64_t mha_mul_sat(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

mha_strides mha_strides_bhtd(int64_t H, int64_t T, int64_t width) {
  mha_strides s = {mha_mul_sat(mha_mul_sat(H, T), width), mha_mul_sat(T, width), width};
  return s;
}

mha_strides mha_strides_bthd(int64_t H, int64_t T, int64_t width) {
  mha_strides s = {mha_mul_sat(mha_mul_sat(T, H), width), width, mha_mul_sat(H, width)};
  return s;
}

/* The overlap rule (mha.h, "Strided views"): every work item reads its
 * inputs while others write, so any overlap of what a call writes with
 * anything else it touches is a race and wrong results, or worse (an index
 * array overwritten mid-call). The test is on the byte ranges the views
 * address, so interleaved but disjoint views are refused too. */
mha_status mha_attention_check_overlap(const char* fn, const mha_attention_desc* d, const float* q,
                                       const float* k, const float* v, const float* out,
                                       const float* weights, const mha_span* more_in, size_t n_more_in) {
  size_t nq, nk = 0, nv = 0, nout, nadd = 0, nw = 0;
  mha_status st;
  if ((st = mha_view_span(fn, "q", d->B, d->H, d->Tq, d->D, &d->q, &nq)) != MHA_STATUS_SUCCESS ||
      (k != NULL && (st = mha_view_span(fn, "k", d->B, d->Hkv, d->Tk, d->D, &d->k, &nk)) != MHA_STATUS_SUCCESS) ||
      (v != NULL && (st = mha_view_span(fn, "v", d->B, d->Hkv, d->Tk, d->Dv, &d->v, &nv)) != MHA_STATUS_SUCCESS) ||
      (st = mha_view_span(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out, &nout)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if (d->mask.additive != NULL &&
      (st = mha_view_span(fn, "mask.additive", d->B, d->H, d->Tq, d->Tk, &d->mask.additive_strides,
                          &nadd)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  /* the products below were checked by mha_attention_validate */
  if (weights != NULL) nw = (size_t)(d->B * mha_weights_slots(d) * d->Tq * d->Tk) * sizeof(float);
  const size_t nheads = weights != NULL && d->weights_mode == MHA_WEIGHTS_SELECTED
                            ? (size_t)d->weights_nheads * sizeof(int32_t) : 0;
  const size_t nlen = d->mask.kv_len != NULL ? (size_t)d->B * sizeof(int32_t) : 0;
  const size_t nhead = (size_t)d->H * sizeof(float);
  const size_t nlse = d->lse != NULL ? (size_t)(d->B * d->H * d->Tq) * sizeof(float) : 0;
  enum { MAX_MORE = 4 };
  if (n_more_in > MAX_MORE) n_more_in = MAX_MORE; /* internal callers pass at most 3 */
  mha_span in[8 + MAX_MORE] = {{"q", q, nq}, {"k", k, nk}, {"v", v, nv},
                               {"mask.additive", d->mask.additive, nadd},
                               {"mask.kv_len", d->mask.kv_len, nlen},
                               {"mask.alibi_slopes", d->mask.alibi_slopes, nhead},
                               {"mask.sinks", d->mask.sinks, nhead},
                               {"weights_heads", d->weights_heads, nheads}};
  for (size_t i = 0; i < n_more_in; i++) in[8 + i] = more_in[i];
  const mha_span outs[] = {{"out", out, nout}, {"weights", weights, nw}, {"lse", d->lse, nlse},
                           {"workspace", d->workspace, d->workspace != NULL ? d->workspace_size : 0}};
  return mha_check_spans_disjoint(fn, outs, sizeof outs / sizeof outs[0], in, 8 + n_more_in);
}

mha_status mha_attention_f32(const mha_attention_desc* desc, const float* q, const float* k,
                             const float* v, float* out, float* weights) {
  static const char fn[] = "mha_attention_f32";
  mha_status st = mha_attention_validate(fn, desc, q, k, v, out, weights != NULL);
  if (st != MHA_STATUS_SUCCESS) return st;
  if ((st = mha_attention_check_overlap(fn, desc, q, k, v, out, weights, NULL, 0)) != MHA_STATUS_SUCCESS) return st;
  const mha_kernels* kr;
  if ((st = mha_kernels_resolve(fn, desc->isa, &kr)) != MHA_STATUS_SUCCESS) return st;
  const int nthreads = mha_resolve_threads(desc->num_threads);
  float* ws;
  st = mha_attention_caller_workspace(fn, "mha_attention_workspace_size", kr, desc, weights != NULL, nthreads, &ws);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_attention_run(kr, desc, q, k, v, NULL, out, weights, nthreads, ws);
}

mha_status mha_attention_workspace_size(const mha_attention_desc* desc, int with_weights,
                                        size_t* bytes) {
  static const char fn[] = "mha_attention_workspace_size";
  if (bytes == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: bytes is NULL", fn);
  /* the sizes and views are checked as in the call; pointers do not matter here */
  static const float any = 0.0f;
  mha_status st = mha_attention_validate(fn, desc, &any, &any, &any, &any, with_weights != 0);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kernels* kr;
  if ((st = mha_kernels_resolve(fn, desc->isa, &kr)) != MHA_STATUS_SUCCESS) return st;
  size_t floats;
  st = mha_attention_workspace_floats(kr, desc, with_weights != 0, mha_resolve_threads(desc->num_threads), &floats);
  if (st != MHA_STATUS_SUCCESS) return st;
  *bytes = floats * sizeof(float) + 64; /* + room to align a caller's buffer */
  return MHA_STATUS_SUCCESS;
}
