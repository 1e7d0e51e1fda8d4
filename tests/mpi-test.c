/*
 * libmha_mpi (include/mha_mpi.h) at the rank count mpiexec starts it with
 * (CTest: 1, 2 and 4 ranks). Every rank builds the same whole problem from
 * one fixed seed, takes its part, and checks its rows.
 *
 *   1. Ring attention, contiguous and balanced splits, causal and not, GQA,
 *      odd chunk lengths, and window + ALiBi + soft-cap + sinks: out and lse
 *      against the double oracle on the whole sequence, within the core's
 *      derived bound plus the merges' rounding (8 ulps of max|v| per merged
 *      part, 4 of |lse|); a second run bitwise the first.
 *   2. Sequence-parallel decode, uneven key counts per rank, causal +
 *      variants: against the oracle; every rank's out bitwise the same; over
 *      each rank's paged bf16 cache bitwise the views' call on its values.
 *   3. The tensor-parallel layer: IN_OUT with GQA, biases and a causal
 *      mask; nn.MultiheadAttention's packed in_proj (OUT_IN) over a cross
 *      input with kv_len; separate K and V inputs, Dv != D, an additive
 *      mask; against the layer oracle within its derived bound (any order of
 *      the output projection's sum is within it), every rank bitwise rank
 *      0's, a second run bitwise the first; the same layer from pre-sliced
 *      weights (MHA_MPI_WEIGHTS_SLICED) bitwise the whole weights' out;
 *      16-bit x and out (f16, bf16) bitwise round(the fp32 forward on the
 *      widened inputs).
 *   4. Errors, on every rank alike and without a hang: the last rank's H
 *      differs (INVALID_SHAPE), its q is NULL (NULL_POINTER everywhere), a
 *      kv_len (INVALID_ARGUMENT), heads not divisible by the ranks, the
 *      layer without W_o, bf16 weights given whole on the last rank, an
 *      unknown args->dtype; out untouched.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mha.h"
#include "kv-gemm/kv-convert.h"
#include "layer-problem.h"
#include "mha_mpi.h"
#include "oracle.h"
#include "tester.h"
#include "variant-tolerance.h"

static int g_rank, g_size;

/* The same values on every rank: a hash of the index in [-1, 1). */
static void fill_same(float* x, size_t n, uint64_t salt) {
  for (size_t i = 0; i < n; i++) {
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull + salt;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    x[i] = (float)((double)(z >> 11) * 0x1p-52 - 1.0);
  }
}

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

typedef struct whole {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  float *q, *k, *v, *slopes, *sinks;
  int causal, variants;
} whole;

static void whole_make(whole* w, int64_t B, int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                       int causal, int variants, uint64_t salt) {
  memset(w, 0, sizeof *w);
  w->B = B, w->H = H, w->Hkv = Hkv, w->Tq = Tq, w->Tk = Tk, w->D = D, w->Dv = Dv;
  w->causal = causal, w->variants = variants;
  w->q = tester_alloc((size_t)(B * H * Tq * D) * sizeof(float));
  w->k = tester_alloc((size_t)(B * Hkv * Tk * D) * sizeof(float));
  w->v = tester_alloc((size_t)(B * Hkv * Tk * Dv) * sizeof(float));
  fill_same(w->q, (size_t)(B * H * Tq * D), salt);
  fill_same(w->k, (size_t)(B * Hkv * Tk * D), salt + 1);
  fill_same(w->v, (size_t)(B * Hkv * Tk * Dv), salt + 2);
  if (variants) {
    w->slopes = tester_alloc((size_t)H * sizeof(float));
    w->sinks = tester_alloc((size_t)H * sizeof(float));
    for (int64_t h = 0; h < H; h++) w->slopes[h] = 0.03125f * (float)(h + 1), w->sinks[h] = 0.5f - 0.25f * (float)h;
  }
}

static void whole_free(whole* w) { free(w->q), free(w->k), free(w->v), free(w->slopes), free(w->sinks); }

static void set_mask(const whole* w, mha_mask* m) {
  m->causal = w->causal;
  if (w->variants) {
    m->window = 1;
    m->window_left = 23;
    m->window_right = w->causal ? 0 : 5;
    m->alibi_slopes = w->slopes;
    m->softcap = 20.0f;
    m->sinks = w->sinks;
  }
}

/* The oracle of the whole problem (bhtd views, bottom-right), with its bounds */
static variant_expected whole_expected(const whole* w, double** vmax) {
  const size_t nq = (size_t)(w->B * w->H * w->Tq * w->D), nk = (size_t)(w->B * w->Hkv * w->Tk * w->D);
  const size_t nv = (size_t)(w->B * w->Hkv * w->Tk * w->Dv);
  double *qd = tolerance_alloc(nq), *kd = tolerance_alloc(nk), *vd = tolerance_alloc(nv);
  for (size_t i = 0; i < nq; i++) qd[i] = w->q[i];
  for (size_t i = 0; i < nk; i++) kd[i] = w->k[i];
  *vmax = tolerance_alloc((size_t)w->Dv);
  for (size_t i = 0; i < nv; i++) {
    vd[i] = w->v[i];
    if (fabs(vd[i]) > (*vmax)[i % (size_t)w->Dv]) (*vmax)[i % (size_t)w->Dv] = fabs(vd[i]);
  }
  oracle_attention_problem op;
  memset(&op, 0, sizeof op);
  op.B = w->B, op.H = w->H, op.Hkv = w->Hkv, op.Tq = w->Tq, op.Tk = w->Tk, op.D = w->D, op.Dv = w->Dv;
  op.q = qd, op.k = kd, op.v = vd;
  op.q_strides = (oracle_strides){w->H * w->Tq * w->D, w->Tq * w->D, w->D};
  op.k_strides = (oracle_strides){w->Hkv * w->Tk * w->D, w->Tk * w->D, w->D};
  op.v_strides = (oracle_strides){w->Hkv * w->Tk * w->Dv, w->Tk * w->Dv, w->Dv};
  op.scale = 1.0 / sqrt((double)w->D);
  op.causal = w->causal;
  if (w->variants) {
    op.var.window = 1;
    op.var.window_left = 23;
    op.var.window_right = w->causal ? 0 : 5;
    op.var.alibi_slopes = w->slopes;
    op.var.softcap = 20.0;
    op.var.sinks = w->sinks;
  }
  variant_expected e = variant_expected_compute(&op, NULL, (size_t)(w->B * w->H * w->Tq * w->Dv), 0,
                                                (size_t)(w->B * w->H * w->Tq));
  free(qd), free(kd), free(vd);
  return e;
}

/* Rows [g0, g0 + n) of a [B, heads, T, width] tensor into rows [l0, l0 + n) of a [B, heads, Tl, width] one. */
static void take_rows(const float* src, int64_t B, int64_t heads, int64_t T, int64_t width, int64_t g0, int64_t n,
                      float* dst, int64_t Tl, int64_t l0) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < heads; h++)
      memcpy(dst + ((b * heads + h) * Tl + l0) * width, src + ((b * heads + h) * T + g0) * width,
             (size_t)(n * width) * sizeof(float));
}

/* ---- 1. ring attention ---- */

static void check_ring(tester* t, mha_mpi_split split, int causal, int variants) {
  enum { B = 2, H = 4, HKV = 2, D = 16, DV = 24, C = 19 }; /* chunks of 19 rows: odd */
  const int64_t Tl = 2 * C, T = Tl * g_size;
  tester_context(t, "ring, %d ranks, %s split, causal %d, variants %d", g_size,
                 split == MHA_MPI_SPLIT_BALANCED ? "balanced" : "contiguous", causal, variants);
  whole w;
  whole_make(&w, B, H, HKV, T, T, D, DV, causal, variants, 11);
  /* this rank's rows: (global start, local start, length) */
  int64_t segs[2][3];
  int nseg;
  if (split == MHA_MPI_SPLIT_BALANCED) {
    nseg = 2;
    segs[0][0] = (int64_t)g_rank * C, segs[0][1] = 0, segs[0][2] = C;
    segs[1][0] = (int64_t)(2 * g_size - 1 - g_rank) * C, segs[1][1] = C, segs[1][2] = C;
  } else {
    nseg = 1;
    segs[0][0] = (int64_t)g_rank * Tl, segs[0][1] = 0, segs[0][2] = Tl;
  }
  float* q = tester_alloc((size_t)(B * H * Tl * D) * sizeof(float));
  float* k = tester_alloc((size_t)(B * HKV * Tl * D) * sizeof(float));
  float* v = tester_alloc((size_t)(B * HKV * Tl * DV) * sizeof(float));
  for (int s = 0; s < nseg; s++) {
    take_rows(w.q, B, H, T, D, segs[s][0], segs[s][2], q, Tl, segs[s][1]);
    take_rows(w.k, B, HKV, T, D, segs[s][0], segs[s][2], k, Tl, segs[s][1]);
    take_rows(w.v, B, HKV, T, DV, segs[s][0], segs[s][2], v, Tl, segs[s][1]);
  }
  const size_t nout = (size_t)(B * H * Tl * DV), nlse = (size_t)(B * H * Tl);
  float *out = tester_alloc(nout * sizeof(float)), *out2 = tester_alloc(nout * sizeof(float));
  float *lse = tester_alloc(nlse * sizeof(float)), *lse2 = tester_alloc(nlse * sizeof(float));
  tester_poison(out, nout), tester_poison(lse, nlse), tester_poison(out2, nout), tester_poison(lse2, nlse);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, Tl, Tl, D, DV);
  set_mask(&w, &d.mask);
  d.num_threads = 1;
  d.lse = lse;
  if (check_ok(t, mha_mpi_ring_attention_f32(MPI_COMM_WORLD, split, &d, q, k, v, out), "ring")) {
    double* vmax;
    variant_expected e = whole_expected(&w, &vmax);
    float* got = tester_alloc(nout * sizeof(float));
    double *want = tolerance_alloc(nout), *tol = tolerance_alloc(nout);
    double *wl = tolerance_alloc(nlse), *tl = tolerance_alloc(nlse);
    const double eps = 0x1p-23, parts = (double)(2 * g_size);
    size_t n = 0, m = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        for (int s = 0; s < nseg; s++)
          for (int64_t i = 0; i < segs[s][2]; i++) {
            const size_t grow = (size_t)((b * H + h) * T + segs[s][0] + i);
            const size_t lrow = (size_t)((b * H + h) * Tl + segs[s][1] + i);
            for (int64_t c = 0; c < DV; c++, n++) {
              got[n] = out[lrow * DV + (size_t)c];
              want[n] = e.out[grow * DV + (size_t)c];
              tol[n] = e.out_tol[grow * DV + (size_t)c] + parts * 8.0 * eps * vmax[c];
            }
            wl[m] = e.lse[grow];
            tl[m] = e.lse_tol[grow] + parts * 4.0 * eps * fabs(e.lse[grow]);
            m++;
            (void)lrow;
          }
    tester_check_close(t, "out against the oracle", n, got, want, tol);
    /* lse in the same row order as got */
    float* gl = tester_alloc(nlse * sizeof(float));
    m = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        for (int s = 0; s < nseg; s++)
          for (int64_t i = 0; i < segs[s][2]; i++) gl[m++] = lse[(size_t)((b * H + h) * Tl + segs[s][1] + i)];
    tester_check_close(t, "lse against the oracle", m, gl, wl, tl);
    free(gl), free(got), free(want), free(tol), free(wl), free(tl), free(vmax);
    variant_expected_free(&e);
    d.lse = lse2;
    if (check_ok(t, mha_mpi_ring_attention_f32(MPI_COMM_WORLD, split, &d, q, k, v, out2), "ring, again")) {
      tester_check(t, memcmp(out, out2, nout * sizeof(float)) == 0 && memcmp(lse, lse2, nlse * sizeof(float)) == 0,
                   "a second run: bitwise the first");
    }
  }
  free(q), free(k), free(v), free(out), free(out2), free(lse), free(lse2);
  whole_free(&w);
}

/* ---- 2. sequence-parallel decode ---- */

static void check_decode(tester* t, int causal, int variants) {
  enum { B = 2, H = 8, HKV = 2, D = 32, DV = 16, TQ = 3 };
  tester_context(t, "decode, %d ranks, causal %d, variants %d", g_size, causal, variants);
  int64_t total = 0, k0 = 0;
  for (int r = 0; r < g_size; r++) {
    if (r == g_rank) k0 = total;
    total += 10 + 7 * r; /* uneven parts */
  }
  const int64_t Tk = 10 + 7 * g_rank;
  whole w;
  whole_make(&w, B, H, HKV, TQ, total, D, DV, causal, variants, 23);
  float* k = tester_alloc((size_t)(B * HKV * Tk * D) * sizeof(float));
  float* v = tester_alloc((size_t)(B * HKV * Tk * DV) * sizeof(float));
  take_rows(w.k, B, HKV, total, D, k0, Tk, k, Tk, 0);
  take_rows(w.v, B, HKV, total, DV, k0, Tk, v, Tk, 0);
  const size_t nout = (size_t)(B * H * TQ * DV), nlse = (size_t)(B * H * TQ);
  float *out = tester_alloc(nout * sizeof(float)), *lse = tester_alloc(nlse * sizeof(float));
  tester_poison(out, nout), tester_poison(lse, nlse);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, TQ, Tk, D, DV);
  set_mask(&w, &d.mask);
  d.num_threads = 1;
  d.lse = lse;
  if (check_ok(t, mha_mpi_decode_f32(MPI_COMM_WORLD, &d, w.q, k, v, out), "decode")) {
    double* vmax;
    variant_expected e = whole_expected(&w, &vmax);
    double* tol = tolerance_alloc(nout);
    double* tl = tolerance_alloc(nlse);
    const double eps = 0x1p-23;
    for (size_t i = 0; i < nout; i++) tol[i] = e.out_tol[i] + (double)g_size * 8.0 * eps * vmax[i % DV];
    for (size_t i = 0; i < nlse; i++) tl[i] = e.lse_tol[i] + (double)g_size * 4.0 * eps * fabs(e.lse[i]);
    tester_check_close(t, "out against the oracle", nout, out, e.out, tol);
    tester_check_close(t, "lse against the oracle", nlse, lse, e.lse, tl);
    /* every rank the same bits: rank 0's out, broadcast, against each */
    float* root = tester_alloc(nout * sizeof(float));
    memcpy(root, out, nout * sizeof(float));
    MPI_Bcast(root, (int)nout, MPI_FLOAT, 0, MPI_COMM_WORLD);
    tester_check(t, memcmp(root, out, nout * sizeof(float)) == 0, "out bitwise rank 0's");
    free(root), free(tol), free(tl), free(vmax);
    variant_expected_free(&e);
  }
  /* over each rank's bf16 cache, paged in blocks of 16 (reversed table):
   * bitwise the views' call on the cache's values widened */
  enum { PAGE = 16 };
  const int64_t nb = (Tk + PAGE - 1) / PAGE;
  uint16_t* kc = tester_alloc((size_t)(B * nb * PAGE * HKV * D) * 2);
  uint16_t* vc = tester_alloc((size_t)(B * nb * PAGE * HKV * DV) * 2);
  int32_t* table = tester_alloc((size_t)(B * nb) * sizeof(int32_t));
  for (int64_t i = 0; i < B * nb; i++) table[i] = (int32_t)(B * nb - 1 - i);
  mha_kv_cache c;
  mha_kv_cache_init_paged(&c, MHA_DTYPE_BF16, kc, vc, B * nb, PAGE, HKV, D, DV, table, nb);
  const int32_t pos[B] = {0, 0};
  float* kw = tester_alloc((size_t)(B * HKV * Tk * D) * sizeof(float));
  float* vw = tester_alloc((size_t)(B * HKV * Tk * DV) * sizeof(float));
  for (size_t i = 0; i < (size_t)(B * HKV * Tk * D); i++) kw[i] = mha_bf16_to_f32(mha_f32_to_bf16(k[i]));
  for (size_t i = 0; i < (size_t)(B * HKV * Tk * DV); i++) vw[i] = mha_bf16_to_f32(mha_f32_to_bf16(v[i]));
  float* o2 = tester_alloc(nout * sizeof(float));
  tester_poison(out, nout), tester_poison(o2, nout);
  d.lse = NULL;
  if (check_ok(t, mha_kv_cache_write(&c, B, HKV, Tk, D, DV, pos, k, mha_strides_bhtd(HKV, Tk, D), v,
                                     mha_strides_bhtd(HKV, Tk, DV)), "fill the cache") &&
      check_ok(t, mha_mpi_decode_f32(MPI_COMM_WORLD, &d, w.q, kw, vw, out), "decode, widened views") &&
      check_ok(t, mha_mpi_decode_kv_f32(MPI_COMM_WORLD, &d, w.q, &c, o2), "decode over the caches")) {
    tester_check(t, memcmp(out, o2, nout * sizeof(float)) == 0, "the caches' decode bitwise the widened views'");
  }
  free(kc), free(vc), free(table), free(kw), free(vw), free(o2);
  free(k), free(v), free(out), free(lse);
  whole_free(&w);
}

/* ---- 3. the tensor-parallel layer ---- */

/* Columns [c0, c0 + n) of a [rows, ld] matrix, as a new [rows, n] one. */
static float* columns(const float* w, int64_t rows, int64_t ld, int64_t c0, int64_t n) {
  float* s = tester_alloc((size_t)(rows * n) * sizeof(float));
  for (int64_t r = 0; r < rows; r++) memcpy(s + r * n, w + r * ld + c0, (size_t)n * sizeof(float));
  return s;
}

/* The same layer created from this rank's slice (MHA_MPI_WEIGHTS_SLICED,
 * sliced here from the whole weights): bitwise the whole-weights layer's out. */
static void check_layer_sliced(tester* t, layer_problem* p, const mha_layer_args* a, const float* whole_out) {
  const mha_layer_desc* d = &p->desc;
  const int64_t hl = d->H / g_size, gl = p->Hkv / g_size, q0 = g_rank * hl, g0 = g_rank * gl;
  const int64_t D = p->D, Dv = p->Dv, dm = d->d_model, dkv = p->d_kv;
  mha_layer_desc s = *d;
  s.H = hl, s.Hkv = gl, s.D = D, s.Dv = Dv;
  float* own[4] = {NULL, NULL, NULL, NULL};
  if (d->layout == MHA_WEIGHTS_OUT_IN) {
    s.w_q = d->w_q + q0 * D * dm, s.w_k = d->w_k + g0 * D * dkv, s.w_v = d->w_v + g0 * Dv * dkv;
    s.w_o = own[3] = columns(d->w_o, dm, d->H * Dv, q0 * Dv, hl * Dv);
  } else {
    s.w_q = own[0] = columns(d->w_q, dm, d->H * D, q0 * D, hl * D);
    s.w_k = own[1] = columns(d->w_k, dkv, p->Hkv * D, g0 * D, gl * D);
    s.w_v = own[2] = columns(d->w_v, dkv, p->Hkv * Dv, g0 * Dv, gl * Dv);
    s.w_o = d->w_o + q0 * Dv * dm;
  }
  if (d->b_q) s.b_q = d->b_q + q0 * D, s.b_k = d->b_k + g0 * D, s.b_v = d->b_v + g0 * Dv;
  mha_mpi_layer* L = NULL;
  if (check_ok(t, mha_mpi_layer_create(MPI_COMM_WORLD, &s, MHA_MPI_WEIGHTS_SLICED, &L), "create, sliced")) {
    tester_poison(p->out, p->out_size);
    if (check_ok(t, mha_mpi_layer_forward(L, a), "forward, sliced")) {
      tester_check(t, memcmp(whole_out, p->out, p->out_size * sizeof(float)) == 0,
                   "pre-sliced weights: bitwise the whole weights' out");
    }
  }
  mha_mpi_layer_destroy(L);
  for (int i = 0; i < 4; i++) free(own[i]);
}

/* 16-bit x and out (args->dtype): bitwise round(the fp32 forward on the
 * widened inputs), on every rank. p's inputs are rounded in place. */
static void check_layer_16(tester* t, const mha_mpi_layer* L, layer_problem* p, const mha_layer_args* a0) {
  const mha_dtype dt = p->c.causal ? MHA_DTYPE_BF16 : MHA_DTYPE_F16;
  const size_t nq = (size_t)(p->c.B * p->c.Tq * p->c.d_model), nk = (size_t)(p->c.B * p->Tk * p->d_kv);
  uint16_t* q16 = layer_round16(dt, p->x_q, nq);
  uint16_t* k16 = layer_round16(dt, p->x_k, nk);
  uint16_t* v16 = layer_round16(dt, p->x_v, nk);
  uint16_t* out16 = tester_alloc(p->out_size * 2);
  memset(out16, 0xff, p->out_size * 2);
  mha_layer_args a = *a0;
  if (check_ok(t, mha_mpi_layer_forward(L, &a), "forward on the widened inputs")) {
    a.dtype = dt;
    a.x_q = (const float*)q16, a.x_k = (const float*)k16, a.x_v = (const float*)v16;
    a.out = (float*)out16;
    if (check_ok(t, mha_mpi_layer_forward(L, &a), dt == MHA_DTYPE_F16 ? "f16 forward" : "bf16 forward")) {
      int same = 1;
      for (size_t i = 0; i < p->out_size; i++) {
        same &= out16[i] == (dt == MHA_DTYPE_F16 ? mha_f32_to_f16(p->out[i]) : mha_f32_to_bf16(p->out[i]));
      }
      tester_check(t, same, "16-bit x and out: bitwise round(the fp32 forward on the widened inputs)");
    }
  }
  free(q16), free(k16), free(v16), free(out16);
}

static void check_layer(tester* t, const char* what, const layer_case* c) {
  tester_context(t, "layer, %d ranks: %s", g_size, what);
  layer_problem p;
  layer_problem_build(t, c, &p);
  mha_mpi_layer* L = NULL;
  if (check_ok(t, mha_mpi_layer_create(MPI_COMM_WORLD, &p.desc, MHA_MPI_WEIGHTS_WHOLE, &L), "create")) {
    mha_layer_args a = p.args;
    a.num_threads = 1;
    if (check_ok(t, mha_mpi_layer_forward(L, &a), "forward")) {
      double *want = tolerance_alloc(p.out_size), *tol = tolerance_alloc(p.out_size);
      layer_problem_expect(&p, want, tol, NULL, NULL);
      tester_check_close(t, "out against the layer oracle", p.out_size, p.out, want, tol);
      float* root = tester_alloc(p.out_size * sizeof(float));
      memcpy(root, p.out, p.out_size * sizeof(float));
      MPI_Bcast(root, (int)p.out_size, MPI_FLOAT, 0, MPI_COMM_WORLD);
      tester_check(t, memcmp(root, p.out, p.out_size * sizeof(float)) == 0, "out bitwise rank 0's");
      tester_poison(p.out, p.out_size);
      if (check_ok(t, mha_mpi_layer_forward(L, &a), "forward, again")) {
        tester_check(t, memcmp(root, p.out, p.out_size * sizeof(float)) == 0, "a second run bitwise the first");
      }
      if (!c->packed) check_layer_sliced(t, &p, &a, root);
      check_layer_16(t, L, &p, &a);
      free(root), free(want), free(tol);
    }
  }
  mha_mpi_layer_destroy(L);
  layer_problem_free(&p);
}

static void check_layers(tester* t) {
  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = 2, c.Tq = 13, c.d_model = 48, c.H = 8, c.Hkv = 4, c.layout = MHA_WEIGHTS_IN_OUT, c.biases = 1, c.causal = 1;
  c.threads = 1;
  check_layer(t, "IN_OUT, GQA 8/4, biases, causal", &c);
  c.layout = MHA_WEIGHTS_OUT_IN;
  check_layer(t, "OUT_IN (nn.Linear), GQA 8/4, biases, causal", &c);
  memset(&c, 0, sizeof c);
  c.B = 3, c.Tq = 7, c.Tk = 11, c.d_model = 32, c.H = 4, c.layout = MHA_WEIGHTS_OUT_IN, c.packed = 1, c.biases = 1;
  c.cross = 1, c.kv_len = 1, c.threads = 1;
  check_layer(t, "packed in_proj (OUT_IN), cross, kv_len", &c);
  c.layout = MHA_WEIGHTS_IN_OUT; /* in_proj is OUT_IN whatever the layout; W_o follows the layout */
  check_layer(t, "packed in_proj with an IN_OUT W_o", &c);
  memset(&c, 0, sizeof c);
  c.B = 1, c.Tq = 9, c.Tk = 17, c.d_model = 24, c.d_kv = 20, c.H = 8, c.Hkv = 4, c.D = 8, c.Dv = 12;
  c.layout = MHA_WEIGHTS_IN_OUT, c.cross = 1, c.separate_v = 1, c.additive = 1, c.threads = 1;
  check_layer(t, "IN_OUT, separate K and V inputs, Dv != D, additive mask", &c);
}

/* ---- 4. errors ---- */

static void check_errors(tester* t) {
  enum { B = 1, H = 4, HKV = 2, T = 8, D = 8 };
  tester_context(t, "errors, %d ranks", g_size);
  const int last = g_rank == g_size - 1;
  float q[B * H * T * D], k[B * HKV * T * D], v[B * HKV * T * D], out[B * H * T * D], before[B * H * T * D];
  fill_same(q, sizeof q / sizeof q[0], 1);
  fill_same(k, sizeof k / sizeof k[0], 2);
  fill_same(v, sizeof v / sizeof v[0], 3);
  tester_poison(out, sizeof out / sizeof out[0]);
  memcpy(before, out, sizeof out);
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, T, T, D, D);
  d.num_threads = 1;
  if (g_size > 1) {
    mha_attention_desc bad = d;
    if (last) mha_attention_desc_init(&bad, B, 2, HKV, T, T, D, D); /* H 2 on the last rank */
    bad.num_threads = 1;
    tester_stale_error();
    tester_check_failure(t, "ring, the last rank's H differs",
                         mha_mpi_ring_attention_f32(MPI_COMM_WORLD, MHA_MPI_SPLIT_CONTIGUOUS, &bad, q, k, v, out),
                         MHA_STATUS_INVALID_SHAPE, "H");
    tester_stale_error();
    tester_check_failure(t, "decode, the last rank's H differs",
                         mha_mpi_decode_f32(MPI_COMM_WORLD, &bad, q, k, v, out), MHA_STATUS_INVALID_SHAPE, "H");
  }
  tester_stale_error();
  tester_check_failure(t, "ring, the last rank's q is NULL",
                       mha_mpi_ring_attention_f32(MPI_COMM_WORLD, MHA_MPI_SPLIT_BALANCED, &d, last ? NULL : q, k, v,
                                                  out),
                       MHA_STATUS_NULL_POINTER, NULL);
  const int32_t kv_len[B] = {T};
  mha_attention_desc kl = d;
  kl.mask.kv_len = kv_len;
  tester_stale_error();
  tester_check_failure(t, "decode with kv_len", mha_mpi_decode_f32(MPI_COMM_WORLD, &kl, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "kv_len");
  tester_stale_error();
  tester_check_failure(t, "ring, an unknown split",
                       mha_mpi_ring_attention_f32(MPI_COMM_WORLD, (mha_mpi_split)7, &d, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "split");
  tester_check(t, memcmp(out, before, sizeof out) == 0, "out untouched by every refused call");

  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = 1, c.Tq = 4, c.d_model = 24, c.H = 3 * g_size + 1, c.D = 4, c.layout = MHA_WEIGHTS_IN_OUT, c.threads = 1;
  layer_problem p;
  mha_mpi_layer* L = (mha_mpi_layer*)&p; /* must become NULL */
  if (g_size > 1) {
    layer_problem_build(t, &c, &p);
    tester_stale_error();
    tester_check_failure(t, "layer, H not a multiple of the ranks", mha_mpi_layer_create(MPI_COMM_WORLD, &p.desc, MHA_MPI_WEIGHTS_WHOLE, &L),
                         MHA_STATUS_INVALID_SHAPE, "ranks");
    tester_check(t, L == NULL, "a refused layer is NULL");
    layer_problem_free(&p);
  }
  c.H = g_size, c.no_w_o = 1;
  layer_problem_build(t, &c, &p);
  L = (mha_mpi_layer*)&p;
  tester_stale_error();
  tester_check_failure(t, "layer without W_o", mha_mpi_layer_create(MPI_COMM_WORLD, &p.desc, MHA_MPI_WEIGHTS_WHOLE, &L),
                       MHA_STATUS_INVALID_ARGUMENT, "w_o");
  tester_check(t, L == NULL, "a refused layer is NULL");
  layer_problem_free(&p);

  /* 16-bit weights given whole (sliced as fp32 only), on the last rank alone:
   * every rank refuses; then an unknown args->dtype */
  c.no_w_o = 0;
  layer_problem_build(t, &c, &p);
  mha_layer_desc d16 = p.desc;
  if (last) d16.dtype = MHA_DTYPE_BF16;
  L = (mha_mpi_layer*)&p;
  tester_stale_error();
  tester_check_failure(t, "layer, the last rank's weights bf16 and whole",
                       mha_mpi_layer_create(MPI_COMM_WORLD, &d16, MHA_MPI_WEIGHTS_WHOLE, &L),
                       MHA_STATUS_INVALID_ARGUMENT, last ? "dtype" : "rank");
  tester_check(t, L == NULL, "a refused layer is NULL");
  if (check_ok(t, mha_mpi_layer_create(MPI_COMM_WORLD, &p.desc, MHA_MPI_WEIGHTS_WHOLE, &L), "create")) {
    mha_layer_args a = p.args;
    a.dtype = (mha_dtype)7;
    tester_poison(p.out, p.out_size);
    float* untouched = tester_alloc(p.out_size * sizeof(float));
    memcpy(untouched, p.out, p.out_size * sizeof(float));
    tester_stale_error();
    tester_check_failure(t, "layer forward, dtype 7", mha_mpi_layer_forward(L, &a), MHA_STATUS_INVALID_ARGUMENT,
                         "dtype");
    tester_check(t, memcmp(untouched, p.out, p.out_size * sizeof(float)) == 0, "out untouched by the refusal");
    free(untouched);
  }
  mha_mpi_layer_destroy(L);
  layer_problem_free(&p);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  tester t;
  char name[64];
  snprintf(name, sizeof name, "mpi-test[rank %d/%d]", g_rank, g_size);
  tester_init(&t, name);
  for (int split = 0; split <= 1; split++) {
    check_ring(&t, (mha_mpi_split)split, 1, 0);
    check_ring(&t, (mha_mpi_split)split, 0, 0);
    check_ring(&t, (mha_mpi_split)split, 1, 1);
  }
  check_ring(&t, MHA_MPI_SPLIT_CONTIGUOUS, 0, 1);
  check_decode(&t, 1, 0);
  check_decode(&t, 0, 0);
  check_decode(&t, 1, 1);
  check_layers(&t);
  check_errors(&t);
  const int rc = tester_finish(&t);
  MPI_Finalize();
  return rc;
}
