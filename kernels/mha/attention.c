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
                                  const float* k, const float* v, const float* out) {
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
  if ((st = mha_check_view(fn, "q", d->B, d->H, d->Tq, d->D, &d->q)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "k", d->B, d->Hkv, d->Tk, d->D, &d->k)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "v", d->B, d->Hkv, d->Tk, d->Dv, &d->v)) != MHA_STATUS_SUCCESS ||
      (st = mha_check_view(fn, "out", d->B, d->H, d->Tq, d->Dv, &d->out)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if (d->mask.additive != NULL) {
    st = mha_check_view(fn, "mask.additive", d->B, d->H, d->Tq, d->Tk, &d->mask.additive_strides);
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
  return MHA_STATUS_SUCCESS;
}

/* The block sizes of one call: a function of the shape and kernels only. */
typedef struct mha_attn_plan {
  const mha_kernels* kr;
  const mha_attention_desc* d;
  const float *q, *k, *v;
  float *out, *weights;
  float scale;
  int64_t G;      /* query heads per K/V head */
  int64_t mq;     /* query rows per head in one item */
  int64_t nqb;    /* query blocks per head */
  int64_t nk;     /* keys per block */
  int64_t rows;   /* G·mq: rows of the packed query tile */
  size_t scratch; /* floats of scratch per thread */
} mha_attn_plan;

/* Scratch layout per thread (floats): Qp [rows×D] | Kt [D×nk] | S [rows×nk] |
 * O [rows×Dv] | m [rows] | l [rows] | lim [rows]; each part 16-float aligned. */
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

/* Kt[D×nk] (row stride ldk) ← transpose of the key rows K[j0 .. j0+nk). */
static void mha_pack_kt(size_t nk, size_t D, const float* kbase, int64_t krow, float* kt,
                        size_t ldkt) {
  for (size_t j = 0; j < nk; j++) {
    const float* kr = kbase + (int64_t)j * krow;
    for (size_t dd = 0; dd < D; dd++) kt[dd * ldkt + j] = kr[dd];
  }
}

static void mha_attention_item(const mha_attn_plan* p, int64_t item, float* scratch) {
  const mha_attention_desc* d = p->d;
  const mha_kernels* kr = p->kr;
  const int64_t qb = item % p->nqb;
  const int64_t g = (item / p->nqb) % d->Hkv;
  const int64_t b = item / (p->nqb * d->Hkv);
  const int64_t q0 = qb * p->mq;
  const int64_t mq = d->Tq - q0 < p->mq ? d->Tq - q0 : p->mq;
  const size_t R = (size_t)(p->G * mq);
  const size_t D = (size_t)d->D, Dv = (size_t)d->Dv, NK = (size_t)p->nk;

  float* qp = scratch;
  float* kt = qp + mha_round16((size_t)p->rows * D);
  float* s = kt + mha_round16(D * NK);
  float* o = s + mha_round16((size_t)p->rows * NK);
  float* m = o + mha_round16((size_t)p->rows * Dv);
  float* l = m + mha_round16((size_t)p->rows);
  int64_t* lim = (int64_t*)(l + mha_round16((size_t)p->rows));

  /* pack the group's query rows; row r = (head h = g·G + r / mq, query i = q0 + r % mq) */
  const int64_t kv_end = d->mask.kv_len ? d->mask.kv_len[b] : d->Tk;
  int64_t max_lim = 0;
  for (size_t r = 0; r < R; r++) {
    const int64_t h = g * p->G + (int64_t)r / mq;
    const int64_t i = q0 + (int64_t)r % mq;
    memcpy(qp + r * D, p->q + b * d->q.batch + h * d->q.head + i * d->q.row, D * sizeof(float));
    int64_t li = kv_end;
    if (d->mask.causal && i + d->Tk - d->Tq + 1 < li) li = i + d->Tk - d->Tq + 1;
    lim[r] = li < 0 ? 0 : li;
    if (lim[r] > max_lim) max_lim = lim[r];
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }
  memset(o, 0, R * Dv * sizeof(float));

  const float* kbase = p->k + b * d->k.batch + g * d->k.head;
  const float* vbase = p->v + b * d->v.batch + g * d->v.head;
  for (int64_t j0 = 0; j0 < max_lim; j0 += p->nk) {
    const size_t nk = (size_t)(max_lim - j0 < p->nk ? max_lim - j0 : p->nk);
    mha_pack_kt(nk, D, kbase + j0 * d->k.row, d->k.row, kt, NK);
    mha_gemm_tiles(kr, R, nk, D, qp, D, kt, NK, s, NK, 0);
    for (size_t r = 0; r < R; r++) {
      const int64_t h = g * p->G + (int64_t)r / mq;
      const int64_t i = q0 + (int64_t)r % mq;
      int64_t nv = lim[r] - j0;
      nv = nv < 0 ? 0 : nv > (int64_t)nk ? (int64_t)nk : nv;
      const float* add = NULL;
      if (d->mask.additive != NULL) {
        const mha_strides* ms = &d->mask.additive_strides;
        add = d->mask.additive + b * ms->batch + h * ms->head + i * ms->row + j0;
      }
      const float alpha = kr->softmax_online_row(nk, (size_t)nv, s + r * NK, p->scale, add, &m[r],
                                                 &l[r]);
      if (alpha != 1.0f) kr->vscale(Dv, o + r * Dv, alpha);
    }
    mha_gemm_tiles(kr, R, Dv, nk, s, NK, vbase + j0 * d->v.row, (size_t)d->v.row, o, Dv, 1);
  }

  for (size_t r = 0; r < R; r++) {
    const int64_t h = g * p->G + (int64_t)r / mq;
    const int64_t i = q0 + (int64_t)r % mq;
    /* a row with no visible key has l = 0 and outputs zeros; a NaN l stays NaN */
    const float inv = l[r] == 0.0f ? 0.0f : 1.0f / l[r];
    float* dst = p->out + b * d->out.batch + h * d->out.head + i * d->out.row;
    memcpy(dst, o + r * Dv, Dv * sizeof(float));
    kr->vscale(Dv, dst, inv);
  }

  if (p->weights == NULL) return;
  /* the inspection pass: recompute the scores and write the final probabilities */
  const int64_t Tk = d->Tk;
  for (size_t r = 0; r < R; r++) {
    const int64_t h = g * p->G + (int64_t)r / mq;
    const int64_t i = q0 + (int64_t)r % mq;
    memset(p->weights + ((b * d->H + h) * d->Tq + i) * Tk, 0, (size_t)Tk * sizeof(float));
  }
  for (int64_t j0 = 0; j0 < max_lim; j0 += p->nk) {
    const size_t nk = (size_t)(max_lim - j0 < p->nk ? max_lim - j0 : p->nk);
    mha_pack_kt(nk, D, kbase + j0 * d->k.row, d->k.row, kt, NK);
    mha_gemm_tiles(kr, R, nk, D, qp, D, kt, NK, s, NK, 0);
    for (size_t r = 0; r < R; r++) {
      const int64_t h = g * p->G + (int64_t)r / mq;
      const int64_t i = q0 + (int64_t)r % mq;
      int64_t nv = lim[r] - j0;
      nv = nv < 0 ? 0 : nv > (int64_t)nk ? (int64_t)nk : nv;
      if (nv == 0 || l[r] == 0.0f) continue;
      float* row = s + r * NK;
      const float* add = NULL;
      if (d->mask.additive != NULL) {
        const mha_strides* ms = &d->mask.additive_strides;
        add = d->mask.additive + b * ms->batch + h * ms->head + i * ms->row + j0;
      }
      for (int64_t j = 0; j < nv; j++) row[j] = add ? row[j] * p->scale + add[j] : row[j] * p->scale;
      kr->vexp_scale((size_t)nv, row, m[r], 1.0f / l[r]);
      memcpy(p->weights + ((b * d->H + h) * d->Tq + i) * Tk + j0, row, (size_t)nv * sizeof(float));
    }
  }
}

mha_status mha_attention_run(const mha_kernels* kr, const mha_attention_desc* d, const float* q,
                             const float* k, const float* v, float* out, float* weights,
                             int nthreads) {
  mha_attn_plan p;
  p.kr = kr;
  p.d = d;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.weights = weights;
  p.scale = d->scale != 0.0f ? d->scale : (float)(1.0 / sqrt((double)d->D));
  p.G = d->H / d->Hkv;
  p.mq = (int64_t)kr->attn_mq / p.G;
  if (p.mq < 1) p.mq = 1;
  if (p.mq > d->Tq) p.mq = d->Tq;
  p.nqb = (d->Tq + p.mq - 1) / p.mq;
  p.nk = (int64_t)kr->attn_nk;
  p.rows = p.G * p.mq;

  int64_t items;
  if (!mha_mul_i64(d->B, d->Hkv, &items) || !mha_mul_i64(items, p.nqb, &items)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "mha_attention_f32: work item count overflows");
  }
  const size_t rows = (size_t)p.rows, D = (size_t)d->D, Dv = (size_t)d->Dv, NK = (size_t)p.nk;
  /* sizes were checked by the validation: each view's extent fits size_t */
  p.scratch = mha_round16(rows * D) + mha_round16(D * NK) + mha_round16(rows * NK) +
              mha_round16(rows * Dv) + 2 * mha_round16(rows) +
              mha_round16(rows * sizeof(int64_t) / sizeof(float));
  if (nthreads > items) nthreads = (int)items;
  if (nthreads < 1) nthreads = 1;
  size_t total;
  if (__builtin_mul_overflow(p.scratch, (size_t)nthreads * sizeof(float), &total)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "mha_attention_f32: scratch size overflows");
  }
  float* scratch = aligned_alloc(64, (total + 63) & ~(size_t)63);
  if (scratch == NULL) {
    return mha_error(MHA_STATUS_OUT_OF_MEMORY, "mha_attention_f32: cannot allocate %zu bytes of scratch",
                     total);
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t item = 0; item < items; item++) {
    mha_attention_item(&p, item, scratch + (size_t)omp_get_thread_num() * p.scratch);
  }
  free(scratch);
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
  mha_status st = mha_attention_validate(fn, desc, q, k, v, out);
  if (st != MHA_STATUS_SUCCESS) return st;
  if (weights != NULL) {
    int64_t n;
    if (!mha_mul_i64(desc->B, desc->H, &n) || !mha_mul_i64(n, desc->Tq, &n) ||
        !mha_mul_i64(n, desc->Tk, &n) || !mha_mul_i64(n, (int64_t)sizeof(float), &n) ||
        (uint64_t)n > (uint64_t)SIZE_MAX) {
      return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: weights [B, H, Tq, Tk] overflows", fn);
    }
  }
  const mha_kernels* kr;
  if ((st = mha_kernels_active(&kr)) != MHA_STATUS_SUCCESS) return st;
  return mha_attention_run(kr, desc, q, k, v, out, weights, mha_resolve_threads(desc->num_threads));
}
