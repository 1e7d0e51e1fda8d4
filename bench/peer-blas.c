/*
 * The BLAS peer: what a user writes with cblas_sgemm.
 *   layer: Q = X·W_qᵀ, K = X·W_kᵀ, V = X·W_vᵀ (three sgemm calls), then per
 *          (batch, head) over OpenMP: S = scale·Q_h·K_gᵀ (sgemm), a plain
 *          three-pass softmax per row (max, exp and sum, normalize), O_h = P·V_g
 *          (sgemm) into the concatenation, then out = cat·W_oᵀ (sgemm).
 *   core:  the per-head part alone.
 * The heads loop takes 256 query rows at a time (bounded scratch, and under
 * the causal mask only the keys the block can see: the lower triangle is not
 * computed) — the usual user-level trick, nothing fused.
 *
 * Threads: Debian's default libopenblas0 is the pthread flavour (see
 * bench/README.md). Its own threads serve the big projection GEMMs
 * (openblas_set_num_threads(threads)); inside the OpenMP heads loop it is
 * set to 1 so each OpenMP thread runs its small GEMMs single-threaded
 * instead of oversubscribing the cores.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#if defined(MHA_BENCH_HAVE_BLAS)
#include <cblas.h>

#if defined(MHA_BENCH_OPENBLAS)
static void mha_bench_blas_threads(int n) { openblas_set_num_threads(n); }
#else
static void mha_bench_blas_threads(int n) { (void)n; }
#endif

enum { MHA_BENCH_BLAS_ROWS = 256 }; /* query rows per block of the heads loop */

typedef struct mha_bench_blas_state {
  mha_bench_shape s;
  int threads;
  float scale;
  const float *x, *w_q, *w_k, *w_v, *w_o; /* layer */
  const float *q, *k, *v;                 /* core */
  float *Q, *K, *V, *cat;                 /* layer: projections and concatenation */
  float* out;
  float* scores; /* [threads][ROWS × Tk] */
} mha_bench_blas_state;

const char* mha_bench_blas_info(void) {
  static char buf[256];
#if defined(MHA_BENCH_OPENBLAS)
  const int par = openblas_get_parallel();
  snprintf(buf, sizeof buf, "%s (%s; core %s)", openblas_get_config(),
           par == 0 ? "sequential" : par == 1 ? "pthread" : par == 2 ? "openmp" : "unknown",
           openblas_get_corename());
#else
  snprintf(buf, sizeof buf, "a CBLAS found by find_package(BLAS)");
#endif
  return buf;
}

static const char* mha_bench_blas_label(void) {
#if defined(MHA_BENCH_OPENBLAS)
  const int par = openblas_get_parallel();
  return par == 0 ? "openblas-serial" : par == 1 ? "openblas-pthread" : "openblas-openmp";
#else
  return "cblas";
#endif
}

static void mha_bench_blas_teardown(void* p) {
  mha_bench_blas_state* st = p;
  if (st == NULL) return;
  free(st->Q);
  free(st->K);
  free(st->V);
  free(st->cat);
  free(st->out);
  free(st->scores);
  free(st);
}

static int mha_bench_blas_setup(const mha_bench_data* d, int threads, void** out) {
  const mha_bench_shape* s = &d->s;
  *out = NULL;
  mha_bench_blas_state* st = calloc(1, sizeof *st);
  if (st == NULL) return mha_bench_fail("out of memory");
  st->s = *s;
  st->threads = threads;
  st->scale = 1.0f / sqrtf((float)s->D);
  st->x = d->x;
  st->w_q = d->w_q;
  st->w_k = d->w_k;
  st->w_v = d->w_v;
  st->w_o = d->w_o;
  st->q = d->q;
  st->k = d->k;
  st->v = d->v;
  int ok = 1;
  if (s->kind == MHA_BENCH_LAYER) {
    const size_t rows = (size_t)(s->B * s->Tq);
    st->Q = malloc(rows * (size_t)(s->H * s->D) * sizeof(float));
    st->K = malloc(rows * (size_t)(s->Hkv * s->D) * sizeof(float));
    st->V = malloc(rows * (size_t)(s->Hkv * s->D) * sizeof(float));
    st->cat = malloc(rows * (size_t)(s->H * s->D) * sizeof(float));
    ok = st->Q && st->K && st->V && st->cat;
  }
  st->out = malloc(d->out_len * sizeof(float));
  st->scores = malloc((size_t)threads * MHA_BENCH_BLAS_ROWS * (size_t)s->Tk * sizeof(float));
  if (!ok || st->out == NULL || st->scores == NULL) {
    mha_bench_blas_teardown(st);
    return mha_bench_fail("out of memory");
  }
  *out = st;
  return 0;
}

/* One (batch, head): q, k, v, o are the head's first rows, with row strides. */
static void mha_bench_blas_head(const mha_bench_blas_state* st, const float* q, int64_t ldq,
                                const float* k, int64_t ldk, const float* v, int64_t ldv, float* o,
                                int64_t ldo, float* s) {
  const int64_t Tq = st->s.Tq, Tk = st->s.Tk, D = st->s.D, shift = Tk - Tq;
  for (int64_t i0 = 0; i0 < Tq; i0 += MHA_BENCH_BLAS_ROWS) {
    const int64_t m = Tq - i0 < MHA_BENCH_BLAS_ROWS ? Tq - i0 : MHA_BENCH_BLAS_ROWS;
    /* keys any row of the block sees */
    int64_t lim = st->s.causal ? i0 + m + shift : Tk;
    lim = lim > Tk ? Tk : lim;
    if (lim <= 0) {
      for (int64_t i = 0; i < m; i++) memset(o + (i0 + i) * ldo, 0, (size_t)D * sizeof(float));
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)lim, (int)D, st->scale,
                q + i0 * ldq, (int)ldq, k, (int)ldk, 0.0f, s, (int)lim);
    for (int64_t i = 0; i < m; i++) {
      float* row = s + i * lim;
      int64_t n = st->s.causal ? i0 + i + 1 + shift : Tk;
      n = n < 0 ? 0 : n > lim ? lim : n;
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
      float sum = 0.0f;
      for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
      }
      const float inv = n > 0 ? 1.0f / sum : 0.0f;
      for (int64_t j = 0; j < n; j++) row[j] *= inv;
      for (int64_t j = n; j < lim; j++) row[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)D, (int)lim, 1.0f, s,
                (int)lim, v, (int)ldv, 0.0f, o + i0 * ldo, (int)ldo);
  }
}

/* Every (batch, head) over OpenMP, BLAS single-threaded inside. */
static void mha_bench_blas_heads(const mha_bench_blas_state* st, int layer) {
  const int64_t B = st->s.B, H = st->s.H, Hkv = st->s.Hkv, Tq = st->s.Tq, Tk = st->s.Tk;
  const int64_t D = st->s.D, G = H / Hkv;
  mha_bench_blas_threads(1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(st->threads)
  for (int64_t bh = 0; bh < B * H; bh++) {
    const int64_t b = bh / H, h = bh % H, g = h / G;
    float* s = st->scores + (size_t)omp_get_thread_num() * MHA_BENCH_BLAS_ROWS * (size_t)Tk;
    if (layer) { /* heads are column blocks of [B·T, H·D] and [B·T, Hkv·D] */
      mha_bench_blas_head(st, st->Q + b * Tq * H * D + h * D, H * D,
                          st->K + b * Tk * Hkv * D + g * D, Hkv * D,
                          st->V + b * Tk * Hkv * D + g * D, Hkv * D,
                          st->cat + b * Tq * H * D + h * D, H * D, s);
    } else { /* contiguous [B, H, T, D] */
      mha_bench_blas_head(st, st->q + (b * H + h) * Tq * D, D, st->k + (b * Hkv + g) * Tk * D, D,
                          st->v + (b * Hkv + g) * Tk * D, D, st->out + (b * H + h) * Tq * D, D, s);
    }
  }
  mha_bench_blas_threads(st->threads);
}

static int mha_bench_blas_layer_run(void* p) {
  mha_bench_blas_state* st = p;
  const int M = (int)(st->s.B * st->s.Tq), dm = (int)st->s.d_model;
  const int nq = (int)(st->s.H * st->s.D), nkv = (int)(st->s.Hkv * st->s.D);
  mha_bench_blas_threads(st->threads);
  /* W in nn.Linear layout [out, in]: Y = X·Wᵀ */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nq, dm, 1.0f, st->x, dm, st->w_q, dm,
              0.0f, st->Q, nq);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nkv, dm, 1.0f, st->x, dm, st->w_k, dm,
              0.0f, st->K, nkv);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nkv, dm, 1.0f, st->x, dm, st->w_v, dm,
              0.0f, st->V, nkv);
  mha_bench_blas_heads(st, 1);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, dm, nq, 1.0f, st->cat, nq, st->w_o, nq,
              0.0f, st->out, dm);
  return 0;
}

static int mha_bench_blas_core_run(void* p) {
  mha_bench_blas_heads(p, 0);
  return 0;
}

static const float* mha_bench_blas_output(const void* p) {
  return ((const mha_bench_blas_state*)p)->out;
}

const mha_bench_impl mha_bench_blas_layer = {
    "blas", MHA_BENCH_LAYER, mha_bench_blas_setup, mha_bench_blas_layer_run,
    mha_bench_blas_output, mha_bench_blas_teardown, mha_bench_blas_label};

const mha_bench_impl mha_bench_blas_core = {
    "blas", MHA_BENCH_CORE, mha_bench_blas_setup, mha_bench_blas_core_run,
    mha_bench_blas_output, mha_bench_blas_teardown, mha_bench_blas_label};

#else /* built without BLAS: the peer is absent (name NULL) */

const char* mha_bench_blas_info(void) { return "none (no BLAS found at configure time)"; }
const mha_bench_impl mha_bench_blas_layer = {NULL, MHA_BENCH_LAYER, NULL, NULL, NULL, NULL, NULL};
const mha_bench_impl mha_bench_blas_core = {NULL, MHA_BENCH_CORE, NULL, NULL, NULL, NULL, NULL};

#endif
