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
  if (d->num_threads < 0) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: num_threads = %d, must be >= 0", fn,
                     d->num_threads);
  }
  mha_status st;
  if ((st = mha_check_view(fn, "q", d->B, d->H, d->Tq, d->D, &d->q, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "k", d->B, d->Hkv, d->Tk, d->D, &d->k, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "v", d->B, d->Hkv, d->Tk, d->Dv, &d->v, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out, 0)) != MHA_STATUS_SUCCESS) {
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
  if (with_weights) {
    int64_t n;
    if (!mha_mul_i64(d->B, d->H, &n) || !mha_mul_i64(n, d->Tq, &n) || !mha_mul_i64(n, d->Tk, &n) ||
        !mha_mul_i64(n, (int64_t)sizeof(float), &n) || (uint64_t)n > (uint64_t)SIZE_MAX) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: weights [B, H, Tq, Tk] overflows", fn);
    }
  }
  return MHA_STATUS_SUCCESS;
}

/* The schedule of one call: a function of the shape and the kernels only. */
typedef struct mha_attn_plan {
  const mha_kernels* kr;
  const mha_attention_desc* d;
  const float *q, *k, *v;
  float *out, *weights;
  float scale;
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
  size_t scratch;    /* floats of scratch per thread */
  size_t scratch_n, kt_n, part_n; /* floats of the three workspace parts */
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

/* The packed Kᵀ of key block kb of (b, g). */
static float* mha_kt_block(const mha_attn_plan* p, int64_t b, int64_t g, int64_t kb) {
  return p->kt + (size_t)(((b * p->d->Hkv + g) * p->nkb + kb) * p->d->D * p->nk);
}

/* The pre-pass: Kᵀ of one key block, [D × nk], keys past kv_len left out. */
static void mha_pack_kt_block(const mha_attn_plan* p, int64_t blk) {
  const mha_attention_desc* d = p->d;
  const int64_t kb = blk % p->nkb, g = (blk / p->nkb) % d->Hkv, b = blk / (p->nkb * d->Hkv);
  const int64_t kv_end = d->mask.kv_len ? d->mask.kv_len[b] : d->Tk;
  const int64_t j0 = kb * p->nk;
  const int64_t nk = kv_end - j0 < p->nk ? kv_end - j0 : p->nk;
  float* kt = mha_kt_block(p, b, g, kb);
  const float* kbase = p->k + b * d->k.batch + g * d->k.head + j0 * d->k.row;
  for (int64_t j = 0; j < nk; j++) {
    const float* krow = kbase + j * d->k.row;
    for (int64_t dd = 0; dd < d->D; dd++) kt[dd * p->nk + j] = krow[dd];
  }
}

/* S[R × nk] (row stride nk_max) = Qp · K[j0 .. j0+nk)ᵀ */
static void mha_scores(const mha_attn_plan* p, size_t R, int64_t b, int64_t g, int64_t j0,
                       size_t nk, const float* qp, float* s) {
  const mha_attention_desc* d = p->d;
  const size_t D = (size_t)d->D, NK = (size_t)p->nk;
  if (p->use_nt) {
    const float* krows = p->k + b * d->k.batch + g * d->k.head + j0 * d->k.row;
    p->kr->gemm_nt(R, nk, D, qp, D, krows, (size_t)d->k.row, s, NK);
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

/* One (item, key range): the flash loop over the range's key blocks. */
static void mha_attention_item(const mha_attn_plan* p, int64_t item, int64_t split,
                               float* scratch) {
  const mha_attention_desc* d = p->d;
  const mha_kernels* kr = p->kr;
  const int64_t qb = item % p->nqb;
  const int64_t g = (item / p->nqb) % d->Hkv;
  const int64_t b = item / (p->nqb * d->Hkv);
  const int64_t q0 = qb * p->mq;
  const int64_t mq = d->Tq - q0 < p->mq ? d->Tq - q0 : p->mq;
  const size_t R = (size_t)(p->G * mq);
  const size_t D = (size_t)d->D, Dv = (size_t)d->Dv, NK = (size_t)p->nk;

  float* qp = scratch;                           /* [rows × D]  */
  float* s = qp + mha_round16((size_t)p->rows * D);  /* [rows × nk] */
  float* o = s + mha_round16((size_t)p->rows * NK);  /* [rows × Dv] */
  float* m = o + mha_round16((size_t)p->rows * Dv);
  float* l = m + mha_round16((size_t)p->rows);
  int64_t* lim = (int64_t*)(l + mha_round16((size_t)p->rows));

  /* pack the group's query rows; row r = (head h = g·G + r / mq, query i = q0 + r % mq);
   * lim[r]: the row sees keys [0, lim[r]) (causal and kv_len are both prefixes) */
  const int64_t kv_end = d->mask.kv_len ? d->mask.kv_len[b] : d->Tk;
  int64_t max_lim = 0;
  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, g, q0, mq, r);
    memcpy(qp + r * D, p->q + b * d->q.batch + row.h * d->q.head + row.i * d->q.row, D * sizeof(float));
    int64_t li = kv_end;
    if (d->mask.causal && row.i + d->Tk - d->Tq + 1 < li) li = row.i + d->Tk - d->Tq + 1;
    lim[r] = li < 0 ? 0 : li;
    if (lim[r] > max_lim) max_lim = lim[r];
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }
  memset(o, 0, R * Dv * sizeof(float));

  /* key blocks hidden from every row of the item are never touched */
  const int64_t k_begin = split * p->split_len;
  const int64_t k_end = k_begin + p->split_len < max_lim ? k_begin + p->split_len : max_lim;
  const float* vbase = p->v + b * d->v.batch + g * d->v.head;
  for (int64_t j0 = k_begin; j0 < k_end; j0 += p->nk) {
    const size_t nk = (size_t)(k_end - j0 < p->nk ? k_end - j0 : p->nk);
    mha_scores(p, R, b, g, j0, nk, qp, s);
    for (size_t r = 0; r < R; r++) {
      const float* add;
      const size_t nv = mha_row_keys(p, b, mha_item_row(p, g, q0, mq, r), lim[r], j0, nk, &add);
      const float alpha = kr->softmax_online_row(nk, nv, s + r * NK, p->scale, add, &m[r], &l[r]);
      if (alpha != 1.0f) kr->vscale(Dv, o + r * Dv, alpha);
    }
    mha_gemm_tiles(kr, R, Dv, nk, s, NK, vbase + j0 * d->v.row, (size_t)d->v.row, o, Dv, 1);
  }

  if (p->nsplit > 1) {
    /* a partial result: the merge (mha_attention_merge) finishes the rows */
    float* part = p->partial + (size_t)((item * p->nsplit + split) * p->rows) * (Dv + 2);
    for (size_t r = 0; r < R; r++) {
      memcpy(part + r * (Dv + 2), o + r * Dv, Dv * sizeof(float));
      part[r * (Dv + 2) + Dv] = m[r];
      part[r * (Dv + 2) + Dv + 1] = l[r];
    }
    return;
  }

  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, g, q0, mq, r);
    /* a row with no visible key has l = 0 and outputs zeros; a NaN l stays NaN */
    const float inv = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
    float* dst = p->out + b * d->out.batch + row.h * d->out.head + row.i * d->out.row;
    memcpy(dst, o + r * Dv, Dv * sizeof(float));
    kr->vscale(Dv, dst, inv);
  }

  if (p->weights == NULL) return;
  /* the inspection pass: recompute the scores and write the final probabilities */
  const int64_t Tk = d->Tk;
  for (size_t r = 0; r < R; r++) {
    const mha_row row = mha_item_row(p, g, q0, mq, r);
    memset(p->weights + ((b * d->H + row.h) * d->Tq + row.i) * Tk, 0, (size_t)Tk * sizeof(float));
  }
  for (int64_t j0 = 0; j0 < max_lim; j0 += p->nk) {
    const size_t nk = (size_t)(max_lim - j0 < p->nk ? max_lim - j0 : p->nk);
    mha_scores(p, R, b, g, j0, nk, qp, s);
    for (size_t r = 0; r < R; r++) {
      const mha_row qrow = mha_item_row(p, g, q0, mq, r);
      const float* add;
      const size_t nv = mha_row_keys(p, b, qrow, lim[r], j0, nk, &add);
      if (nv == 0 || l[r] == 0.0f) continue;
      float* row = s + r * NK;
      /* as the row step: an additive -inf hides its key, even from a NaN score */
      for (size_t j = 0; j < nv; j++) {
        row[j] = add == NULL ? row[j] * p->scale : add[j] == -INFINITY ? -INFINITY : row[j] * p->scale + add[j];
      }
      kr->vexp_scale(nv, row, m[r], 1.0f / l[r]);
      if (add != NULL) { /* a hidden key's weight is 0, also in a NaN row (0 · NaN) */
        for (size_t j = 0; j < nv; j++) row[j] = add[j] == -INFINITY ? 0.0f : row[j];
      }
      memcpy(p->weights + ((b * d->H + qrow.h) * d->Tq + qrow.i) * Tk + j0, row, nv * sizeof(float));
    }
  }
}

/* Decode: merges the key ranges of one item (log-sum-exp) and writes out.
 *   M = max_s m_s,  L = Σ_s l_s·e^(m_s − M),  out = Σ_s O_s·e^(m_s − M) / L
 * in a fixed order of s; a range that saw no key has m_s = −inf and adds 0. */
static void mha_attention_merge(const mha_attn_plan* p, int64_t item, float* acc) {
  const mha_attention_desc* d = p->d;
  const int64_t g = (item / p->nqb) % d->Hkv, b = item / (p->nqb * d->Hkv);
  const int64_t q0 = (item % p->nqb) * p->mq;
  const int64_t mq = d->Tq - q0 < p->mq ? d->Tq - q0 : p->mq;
  const size_t Dv = (size_t)d->Dv, stride = Dv + 2;
  for (int64_t r = 0; r < p->G * mq; r++) {
    const float* part = p->partial + (size_t)(item * p->nsplit * p->rows + r) * stride;
    const size_t split_stride = (size_t)p->rows * stride;
    float M = -INFINITY;
    for (int64_t sp = 0; sp < p->nsplit; sp++) {
      const float ms = part[sp * split_stride + Dv];
      if (ms > M) M = ms;
    }
    float L = 0.0f;
    memset(acc, 0, Dv * sizeof(float));
    for (int64_t sp = 0; sp < p->nsplit; sp++) {
      const float* ps = part + sp * split_stride;
      const float f = ps[Dv] == -INFINITY ? 0.0f : expf(ps[Dv] - M);
      L += ps[Dv + 1] * f;
      for (size_t c = 0; c < Dv; c++) acc[c] += ps[c] * f;
    }
    const mha_row row = mha_item_row(p, g, q0, mq, (size_t)r);
    float* dst = p->out + b * d->out.batch + row.h * d->out.head + row.i * d->out.row;
    const float inv = L == 0.0f ? 0.0f : 1.0f / L;
    for (size_t c = 0; c < Dv; c++) dst[c] = acc[c] * inv;
  }
}

/* Fills the schedule of one call and counts its workspace (floats): per-thread
 * scratch, the packed Kᵀ blocks (prefill form), the decode partials. */
static mha_status mha_attn_plan_make(mha_attn_plan* p, const mha_kernels* kr,
                                     const mha_attention_desc* d, int with_weights, int* nthreads,
                                     size_t* ws_floats) {
  static const char fn[] = "mha_attention_f32";
  memset(p, 0, sizeof *p);
  p->kr = kr;
  p->d = d;
  p->scale = d->scale != 0.0f ? d->scale : (float)(1.0 / sqrt((double)d->D));
  p->G = d->H / d->Hkv;
  p->mq = (int64_t)kr->attn_mq / p->G;
  if (p->mq < 1) p->mq = 1;
  if (p->mq > d->Tq) p->mq = d->Tq;
  p->nqb = (d->Tq + p->mq - 1) / p->mq;
  p->nk = (int64_t)kr->attn_nk;
  p->nkb = (d->Tk + p->nk - 1) / p->nk;
  p->rows = p->G * p->mq;
  p->use_nt = p->rows < (int64_t)kr->gemm_mr;

  int64_t items;
  if (!mha_mul_i64(d->B, d->Hkv, &items) || !mha_mul_i64(items, p->nqb, &items)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: work item count overflows", fn);
  }
  p->items = items;
  /* decode: few items, one query block each: split the keys into ranges so
   * that about 64 units of work exist (enough for any thread count we meet),
   * each of at least 4 key blocks. Depends on the shape only. */
  p->nsplit = 1;
  p->split_len = p->nkb * p->nk;
  if (p->use_nt && p->nqb == 1 && !with_weights && items < 64) {
    int64_t ns = (64 + items - 1) / items;
    const int64_t max_ns = (d->Tk + 4 * p->nk - 1) / (4 * p->nk);
    if (ns > max_ns) ns = max_ns;
    if (ns > 1) {
      p->split_len = ((d->Tk + ns - 1) / ns + p->nk - 1) / p->nk * p->nk;
      p->nsplit = (d->Tk + p->split_len - 1) / p->split_len;
    }
  }

  const size_t rows = (size_t)p->rows, D = (size_t)d->D, Dv = (size_t)d->Dv, NK = (size_t)p->nk;
  /* the validation bounded every view's extent, so these sums fit size_t */
  p->scratch = mha_round16(rows * D) + mha_round16(rows * NK) + mha_round16(rows * Dv) +
               2 * mha_round16(rows) + mha_round16(rows * sizeof(int64_t) / sizeof(float)) +
               mha_round16(Dv);
  const int64_t units = items * p->nsplit;
  if (*nthreads > units) *nthreads = (int)units;
  if (*nthreads < 1) *nthreads = 1;
  size_t total;
  int bad = __builtin_mul_overflow(p->scratch, (size_t)*nthreads, &p->scratch_n);
  if (!p->use_nt) {
    bad |= __builtin_mul_overflow((size_t)(d->B * d->Hkv * p->nkb), D * NK, &p->kt_n);
  }
  if (p->nsplit > 1) p->part_n = (size_t)units * rows * (Dv + 2);
  bad |= __builtin_add_overflow(p->scratch_n, p->kt_n, &total);
  bad |= __builtin_add_overflow(total, p->part_n, &total);
  if (bad || total > (SIZE_MAX - 128) / sizeof(float)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: workspace size overflows", fn);
  }
  *ws_floats = total;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_workspace_floats(const mha_kernels* kr, const mha_attention_desc* d,
                                          int with_weights, int nthreads, size_t* floats) {
  mha_attn_plan p;
  return mha_attn_plan_make(&p, kr, d, with_weights, &nthreads, floats);
}

/* A caller's workspace, aligned up to 64 bytes, if it holds `floats`; else NULL. */
float* mha_workspace_take(void* ws, size_t ws_bytes, size_t floats) {
  if (ws == NULL) return NULL;
  const size_t pad = (64 - (uintptr_t)ws % 64) % 64;
  if (ws_bytes < pad || (ws_bytes - pad) / sizeof(float) < floats) return NULL;
  return (float*)((char*)ws + pad);
}

mha_status mha_attention_run(const mha_kernels* kr, const mha_attention_desc* d, const float* q,
                             const float* k, const float* v, float* out, float* weights,
                             int nthreads, float* workspace) {
  static const char fn[] = "mha_attention_f32";
  mha_attn_plan p;
  size_t total = 0;
  mha_status st = mha_attn_plan_make(&p, kr, d, weights != NULL, &nthreads, &total);
  if (st != MHA_STATUS_SUCCESS) return st;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.weights = weights;
  float* ws = workspace;
  if (ws == NULL) {
    ws = aligned_alloc(64, (total * sizeof(float) + 63) & ~(size_t)63);
    if (ws == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace", fn,
                       total * sizeof(float));
    }
  }
  float* scratch = ws;
  p.kt = p.kt_n ? ws + p.scratch_n : NULL;
  p.partial = p.part_n ? ws + p.scratch_n + p.kt_n : NULL;
  const int64_t items = p.items, units = items * p.nsplit;
  const size_t Dv = (size_t)d->Dv;

#pragma omp parallel num_threads(nthreads)
  {
    float* mine = scratch + (size_t)omp_get_thread_num() * p.scratch;
    if (p.kt != NULL) {
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < d->B * d->Hkv * p.nkb; blk++) mha_pack_kt_block(&p, blk);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; u++) mha_attention_item(&p, u / p.nsplit, u % p.nsplit, mine);
    if (p.nsplit > 1) {
#pragma omp for schedule(static)
      for (int64_t item = 0; item < items; item++) {
        mha_attention_merge(&p, item, mine + p.scratch - mha_round16(Dv));
      }
    }
  }
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

mha_strides mha_strides_bhtd(int64_t H, int64_t T, int64_t width) {
  mha_strides s = {H * T * width, T * width, width};
  return s;
}

mha_strides mha_strides_bthd(int64_t H, int64_t T, int64_t width) {
  mha_strides s = {T * H * width, width, H * width};
  return s;
}

mha_status mha_attention_f32(const mha_attention_desc* desc, const float* q, const float* k,
                             const float* v, float* out, float* weights) {
  static const char fn[] = "mha_attention_f32";
  mha_status st = mha_attention_validate(fn, desc, q, k, v, out, weights != NULL);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kernels* kr;
  if ((st = mha_kernels_active(&kr)) != MHA_STATUS_SUCCESS) return st;
  const int nthreads = mha_resolve_threads(desc->num_threads);
  float* ws = NULL;
  if (desc->workspace != NULL) {
    size_t floats;
    st = mha_attention_workspace_floats(kr, desc, weights != NULL, nthreads, &floats);
    if (st != MHA_STATUS_SUCCESS) return st;
    ws = mha_workspace_take(desc->workspace, desc->workspace_size, floats);
    if (ws == NULL) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                       "%s: workspace_size %zu is smaller than mha_attention_workspace_size() (%zu)", fn,
                       desc->workspace_size, floats * sizeof(float) + 64);
    }
  }
  return mha_attention_run(kr, desc, q, k, v, out, weights, nthreads, ws);
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
  if ((st = mha_kernels_active(&kr)) != MHA_STATUS_SUCCESS) return st;
  size_t floats;
  st = mha_attention_workspace_floats(kr, desc, with_weights != 0,
                                      mha_resolve_threads(desc->num_threads), &floats);
  if (st != MHA_STATUS_SUCCESS) return st;
  *bytes = floats * sizeof(float) + 64; /* + room to align a caller's buffer */
  return MHA_STATUS_SUCCESS;
}
