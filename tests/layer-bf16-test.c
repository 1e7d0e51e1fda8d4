/*
 * The layer's BF16 form (include/mha.h, "The layer's BF16 form"; kernels/mha/
 * layer-bf16.c, gemm-bf16.c): a plan made from bf16 weights on a set with a
 * BF16 unit, forwards with bf16 x and out. On every such set this build and
 * CPU run (neon_bf16: AArch64 with FEAT_BF16, CI runs it under qemu;
 * avx512_bf16: x86-64 with AVX512-BF16, where the CPU has it);
 * elsewhere the test is skipped (exit 77), saying why.
 *
 *   1. The GEMM (white box): C = A·W + b exact on small integers (every sum
 *      exact in fp32, so any order gives it) for M, K, N around the tiles
 *      (8×8 Arm, 12×32 x86: 1, 7, 8, 9, 12, 13, 64, 65, 97, 130 rows; K 1,
 *      4, 5, 67; N 1, 7, 8, 9, 31, 33, 65, 300; and past the K chunk of x86,
 *      bf16_kc 768: M 1, 13, 97 × K 769, 1536, 1541 × N 33, 300),
 *      weights given as fp32 and as bf16, with and without a bias, 1-3
 *      workers; nothing written outside the M×N block of C (ldc > N). Rows
 *      of random values alone (one call over K) = the same rows of a 97-row
 *      call (blocks of 12 taking K in chunks) bit for bit, K 1541 and 3076.
 *   2. Accuracy: out against the double layer oracle on the bf16 inputs and
 *      weights, within the fp32 forward's derived bound with Q, K, V and the
 *      concatenation each perturbed by 2^-8 relative, plus the core's BF16
 *      term (2^-8·max|v|) and half an ulp of out; the attention weights
 *      within the same bound's weights part. Self-attention (GQA, biases,
 *      causal, weights), cross with separate K and V inputs (kv_len,
 *      Dv != D, OUT_IN), packed in_proj with an additive mask, no W_o. The
 *      plan is in the BF16 form, and its out is not the widening path's
 *      (neon, avx512f) — a silent fallback fails here.
 *   3. Bits: the same for 1-3 threads, the caller's workspace and the
 *      caller's pool (with a trace, which holds the four GEMMs' tiles and the
 *      attention units); an entry alone and inside its batch; out with and
 *      without the weights; a bf16
 *      K/V cache output leaves out unchanged and holds K and V within the
 *      projections' bound plus their rounding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/kernels.h"
#include "kv-gemm/kv-convert.h"
#include "layer-problem.h"
#include "mha.h"
#include "mha/layer-plan.h"
#include "tester.h"
#include "tolerance.h"

enum { GUARD = 16 };

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

static uint16_t poison16(void) { return 0x7fa5; }

/* ---- 1. the GEMM ---- */

/* One GEMM case: C exact on small integers (every product and partial sum
 * an integer below 2^24, so any order of the sums gives the one answer),
 * for 1-3 workers, nothing written past N, the bf16 copy C rounded. */
static void check_gemm_case(tester* t, const mha_kernels* kr, int64_t M, int64_t K, int64_t N, int64_t lda,
                            int variant) {
  const int64_t ldc = N + 3;
  const int with_bias = variant & 1;
  const mha_dtype wdt = variant & 2 ? MHA_DTYPE_BF16 : MHA_DTYPE_F32;
  tester_context(t, "%s: gemm M %lld K %lld N %lld, lda %lld, %s weights%s", kr->name, (long long)M, (long long)K,
                 (long long)N, (long long)lda, wdt == MHA_DTYPE_BF16 ? "bf16" : "fp32", with_bias ? ", bias" : "");
  uint16_t* a = tester_alloc((size_t)(M * lda) * 2);
  float* w = tester_alloc((size_t)(K * N) * sizeof(float));
  uint16_t* w16 = tester_alloc((size_t)(K * N) * 2);
  float* bias = tester_alloc((size_t)N * sizeof(float));
  double* want = tester_alloc((size_t)(M * N) * sizeof(double));
  for (int64_t i = 0; i < M * lda; i++) a[i] = mha_f32_to_bf16((float)(tester_below(t, 17) - 8));
  for (int64_t i = 0; i < K * N; i++) {
    w[i] = (float)(tester_below(t, 17) - 8);
    w16[i] = mha_f32_to_bf16(w[i]);
  }
  for (int64_t j = 0; j < N; j++) bias[j] = (float)(tester_below(t, 33) - 16);
  for (int64_t i = 0; i < M; i++) {
    for (int64_t j = 0; j < N; j++) {
      double sum = with_bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < K; k++) sum += (double)mha_bf16_to_f32(a[i * lda + k]) * w[k * N + j];
      want[i * N + j] = sum;
    }
  }
  mha_packed_bf16 pw;
  uint16_t* ap = tester_alloc(mha_gemm_bf16_pack_elems(M, K) * 2);
  float* c = tester_alloc((size_t)(M * ldc) * sizeof(float));
  uint16_t* c16 = tester_alloc((size_t)(M * ldc) * 2);
  uint16_t* only16 = tester_alloc((size_t)(M * ldc) * 2);
  if (check_ok(t, mha_packed_bf16_alloc(kr, K, N, &pw), "alloc")) {
    /* IN_OUT: element (k, n) at k·N + n */
    if (check_ok(t, mha_packed_bf16_fill(kr, &pw, wdt == MHA_DTYPE_BF16 ? (const void*)w16 : (const void*)w, wdt,
                                         N, 1),
                 "fill")) {
      for (int workers = 1; workers <= 3; workers++) {
        tester_poison(c, (size_t)(M * ldc));
        for (int64_t i = 0; i < M * ldc; i++) c16[i] = poison16();
        const mha_team team = {NULL, workers, NULL};
        const uint16_t* ax = mha_gemm_bf16_pack(kr, M, a, lda, K, ap, team);
        mha_gemm_bf16_packed(kr, M, ax, &pw, with_bias ? bias : NULL, c, ldc, c16, team);
        int exact = 1, outside = 1, rounded = 1;
        for (int64_t i = 0; i < M; i++) {
          for (int64_t j = 0; j < ldc; j++) {
            const float got = c[i * ldc + j];
            if (j >= N) {
              outside &= isnan(got) && c16[i * ldc + j] == poison16();
              continue;
            }
            rounded &= c16[i * ldc + j] == mha_f32_to_bf16(got);
            exact &= (double)got == want[i * N + j];
          }
        }
        tester_check(t, exact, "%d workers: C exact", workers);
        tester_check(t, outside, "%d workers: nothing written past N (C and its bf16 copy)", workers);
        tester_check(t, rounded, "%d workers: the bf16 copy is C rounded (mha_f32_to_bf16)", workers);
        /* without an fp32 C (c NULL): the same bf16 C, nothing past N */
        for (int64_t i = 0; i < M * ldc; i++) only16[i] = poison16();
        mha_gemm_bf16_packed(kr, M, ax, &pw, with_bias ? bias : NULL, NULL, ldc, only16, team);
        tester_check(t, memcmp(only16, c16, (size_t)(M * ldc) * 2) == 0,
                     "%d workers: the bf16 C alone (c NULL) = the bf16 copy, poison past N kept", workers);
      }
    }
    mha_packed_bf16_free(&pw);
  }
  free(a), free(w), free(w16), free(bias), free(want), free(ap), free(c), free(c16), free(only16);
}

/* Random bf16 values, K past the set's chunk: a row of C has the same bits
 * computed alone (M 1: one call over K) as in a call of 97 rows (blocks of
 * many rows take K in chunks, each continuing the last: gemm-bf16.c) */
static void check_gemm_rows_alone(tester* t, const mha_kernels* kr, int64_t K) {
  const int64_t M = 97, N = 300;
  tester_context(t, "%s: gemm rows alone, M %lld K %lld N %lld, random values", kr->name, (long long)M,
                 (long long)K, (long long)N);
  uint16_t* a = tester_alloc((size_t)(M * K) * 2);
  uint16_t* w16 = tester_alloc((size_t)(K * N) * 2);
  for (int64_t i = 0; i < M * K; i++) a[i] = mha_f32_to_bf16((float)tester_uniform(t, -1.0, 1.0));
  for (int64_t i = 0; i < K * N; i++) w16[i] = mha_f32_to_bf16((float)tester_uniform(t, -1.0, 1.0));
  uint16_t* ap = tester_alloc(mha_gemm_bf16_pack_elems(M, K) * 2);
  float* c = tester_alloc((size_t)(M * N) * sizeof(float));
  float* row = tester_alloc((size_t)N * sizeof(float));
  mha_packed_bf16 pw;
  if (check_ok(t, mha_packed_bf16_alloc(kr, K, N, &pw), "alloc")) {
    if (check_ok(t, mha_packed_bf16_fill(kr, &pw, w16, MHA_DTYPE_BF16, N, 1), "fill")) {
      const mha_team team = {NULL, 2, NULL};
      tester_poison(c, (size_t)(M * N));
      mha_gemm_bf16_packed(kr, M, mha_gemm_bf16_pack(kr, M, a, K, K, ap, team), &pw, NULL, c, N, NULL, team);
      static const int64_t rows[] = {0, 5, 11, 12, 50, 95, 96};
      int same = 1;
      for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        tester_poison(row, (size_t)N);
        const uint16_t* ar = a + rows[r] * K;
        mha_gemm_bf16_packed(kr, 1, mha_gemm_bf16_pack(kr, 1, ar, K, K, ap, team), &pw, NULL, row, N, NULL, team);
        same &= memcmp(row, c + rows[r] * N, (size_t)N * sizeof(float)) == 0;
      }
      tester_check(t, same, "rows 0, 5, 11, 12, 50, 95, 96 alone: the bits of the 97-row call");
    }
    mha_packed_bf16_free(&pw);
  }
  free(a), free(w16), free(ap), free(c), free(row);
}

static void check_gemm(tester* t, const mha_kernels* kr) {
  static const int64_t Ms[] = {1, 7, 8, 9, 12, 13, 64, 65, 97, 130}, Ks[] = {1, 4, 5, 67},
                       Ns[] = {1, 7, 8, 9, 31, 33, 65, 300}; /* 300: past a 256-column tile */
  for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
      for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
        /* lda = K half the time: x86 reads such rows in place when K % 4 == 0 */
        const int64_t K = Ks[ki], lda = (mi + ni) % 2 ? K + 2 : K;
        check_gemm_case(t, kr, Ms[mi], K, Ns[ni], lda, (int)((mi + ki + ni) % 4));
      }
    }
  }
  /* K past the set's chunk (bf16_kc, x86 768), which blocks of many rows
   * take in chunks: K one chunk and one value, two chunks exactly, two and
   * a part quad */
  static const int64_t Ms2[] = {1, 13, 97}, Ks2[] = {769, 1536, 1541}, Ns2[] = {33, 300};
  for (size_t mi = 0; mi < sizeof Ms2 / sizeof Ms2[0]; mi++) {
    for (size_t ki = 0; ki < sizeof Ks2 / sizeof Ks2[0]; ki++) {
      for (size_t ni = 0; ni < sizeof Ns2 / sizeof Ns2[0]; ni++) {
        const int64_t K = Ks2[ki], lda = (mi + ki + ni) % 2 ? K + 2 : K;
        check_gemm_case(t, kr, Ms2[mi], K, Ns2[ni], lda, (int)((mi + ki + ni) % 4));
      }
    }
  }
  check_gemm_rows_alone(t, kr, 1541);
  check_gemm_rows_alone(t, kr, 3076);
}

/* ---- 2. and 3. the layer ---- */

/* A layer problem with every input, weight and bias a bf16 value (rounded
 * in place, so the oracle reads exactly those), and their bf16 bits. */
typedef struct bf16_layer {
  layer_problem p;
  uint16_t *x_q, *x_k, *x_v;
  uint16_t* w[10]; /* w_q, w_k, w_v, w_o, in_proj_weight, b_q, b_k, b_v, b_o, in_proj_bias */
  mha_layer_desc desc; /* dtype BF16, pointing at w[] */
  size_t nx_q, nx_k;
} bf16_layer;

static void bf16_layer_build(tester* t, const layer_case* lc, mha_isa isa, bf16_layer* L) {
  memset(L, 0, sizeof *L);
  layer_problem* p = &L->p;
  layer_problem_build(t, lc, p);
  const int64_t dm = lc->d_model, H = lc->H, D = p->D, Dv = p->Dv, Hkv = p->Hkv, dkv = p->d_kv;
  L->nx_q = (size_t)(lc->B * lc->Tq * dm);
  L->nx_k = (size_t)(lc->B * p->Tk * dkv);
  L->x_q = layer_round16(MHA_DTYPE_BF16, p->x_q, L->nx_q);
  L->x_k = layer_round16(MHA_DTYPE_BF16, p->x_k, L->nx_k);
  L->x_v = layer_round16(MHA_DTYPE_BF16, p->x_v, L->nx_k);
  float* src[10] = {p->w_q, p->w_k, p->w_v, p->w_o, p->in_proj_weight, p->b_q, p->b_k, p->b_v, p->b_o,
                    p->in_proj_bias};
  const size_t n[10] = {(size_t)(dm * H * D), (size_t)(dkv * Hkv * D), (size_t)(dkv * Hkv * Dv),
                        (size_t)(H * Dv * dm), (size_t)(3 * dm * dm), (size_t)(H * D), (size_t)(Hkv * D),
                        (size_t)(Hkv * Dv), (size_t)dm, (size_t)(3 * dm)};
  for (int i = 0; i < 10; i++) L->w[i] = layer_round16(MHA_DTYPE_BF16, src[i], n[i]);
  L->desc = p->desc;
  mha_layer_desc* d = &L->desc;
  d->dtype = MHA_DTYPE_BF16;
  d->isa = isa;
  const float** dst[10] = {&d->w_q, &d->w_k, &d->w_v, &d->w_o, &d->in_proj_weight,
                           &d->b_q, &d->b_k, &d->b_v, &d->b_o, &d->in_proj_bias};
  for (int i = 0; i < 10; i++) *dst[i] = (const float*)L->w[i];
}

static void bf16_layer_free(bf16_layer* L) {
  free(L->x_q), free(L->x_k), free(L->x_v);
  for (int i = 0; i < 10; i++) free(L->w[i]);
  layer_problem_free(&L->p);
}

/* The args of a bf16 forward of L's problem into out16 (and weights). */
static mha_layer_args bf16_args(const bf16_layer* L, uint16_t* out16, float* weights, int threads) {
  mha_layer_args a = L->p.args;
  a.dtype = MHA_DTYPE_BF16;
  a.x_q = (const float*)L->x_q;
  a.x_k = (const float*)L->x_k;
  a.x_v = (const float*)L->x_v;
  a.out = (float*)out16;
  a.weights = weights;
  a.num_threads = threads;
  return a;
}

/* The core's part of the bound (tolerance_layer_with's hook): Q, K, V
 * rounded to bf16 (2^-8 relative, on top of their projections' errors),
 * the fp32 core on them, P rounded to bf16 (2^-8·max|v|) and the output
 * rounded to bf16 (2^-8 of |out| <= max|v|). */
static void core_bf16_tolerance(const oracle_attention_problem* p, const tolerance_input_errors* err,
                                const double* weights, double* out_tol, double* weights_tol) {
  const size_t nq = (size_t)(p->B * p->Tq * p->H * p->D), nk = (size_t)(p->B * p->Tk * p->Hkv * p->D);
  const size_t nv = (size_t)(p->B * p->Tk * p->Hkv * p->Dv), no = (size_t)(p->B * p->H * p->Tq * p->Dv);
  double* eq = tolerance_alloc(nq);
  double* ek = tolerance_alloc(nk);
  double* ev = tolerance_alloc(nv);
  double vmax = 0.0;
  for (size_t i = 0; i < nq; i++) eq[i] = err->q[i] + 0x1p-8 * (fabs(p->q[i]) + err->q[i]);
  for (size_t i = 0; i < nk; i++) ek[i] = err->k[i] + 0x1p-8 * (fabs(p->k[i]) + err->k[i]);
  for (size_t i = 0; i < nv; i++) {
    ev[i] = err->v[i] + 0x1p-8 * (fabs(p->v[i]) + err->v[i]);
    if (fabs(p->v[i]) + ev[i] > vmax) vmax = fabs(p->v[i]) + ev[i];
  }
  const tolerance_input_errors rounded = {eq, ek, ev};
  tolerance_attention(p, &rounded, weights, out_tol, weights_tol);
  for (size_t i = 0; i < no; i++) out_tol[i] += 0x1p-8 * vmax + 0x1p-8 * (vmax + out_tol[i] + 0x1p-8 * vmax);
  free(eq), free(ek), free(ev);
}

static void check_accuracy(tester* t, const bf16_layer* L, const mha_layer* plan, const mha_layer* widening) {
  const layer_problem* p = &L->p;
  const layer_case* c = &p->c;
  const double scale = c->scale != 0.0f ? (double)c->scale : 1.0 / sqrt((double)p->D);
  const mha_strides s = p->args.mask.additive_strides;
  double* want = tolerance_alloc(p->out_size);
  double* tol = tolerance_alloc(p->out_size);
  double* want_w = p->weights ? tolerance_alloc(p->weights_size) : NULL;
  double* tol_w = p->weights ? tolerance_alloc(p->weights_size) : NULL;
  oracle_layer_trace trace;
  oracle_layer_forward(&p->oracle, c->B, c->Tq, p->Tk, p->x_q, p->x_k, p->x_v, scale, c->causal, p->kv_len,
                       p->additive, (oracle_strides){s.batch, s.head, s.row}, want, want_w, &trace);
  tolerance_layer_with(&p->oracle, &trace, want_w, core_bf16_tolerance, tol, tol_w);
  for (size_t i = 0; i < p->out_size; i++) tol[i] += 0x1p-8 * (fabs(want[i]) + tol[i]) + 0x1p-133;
  oracle_layer_trace_free(&trace);

  uint16_t* out16 = tester_alloc((p->out_size + GUARD) * 2);
  for (size_t i = 0; i < p->out_size + GUARD; i++) out16[i] = poison16();
  float* w = p->weights ? tester_alloc(p->weights_size * sizeof(float)) : NULL;
  if (w) tester_poison(w, p->weights_size);
  mha_layer_args a = bf16_args(L, out16, w, 2);
  if (check_ok(t, mha_layer_forward(plan, &a), "forward")) {
    float* got = tester_alloc(p->out_size * sizeof(float));
    int guard = 1;
    for (size_t i = 0; i < p->out_size; i++) got[i] = mha_bf16_to_f32(out16[i]);
    for (size_t i = p->out_size; i < p->out_size + GUARD; i++) guard &= out16[i] == poison16();
    tester_check_close(t, "out against the oracle", p->out_size, got, want, tol);
    tester_check(t, guard, "nothing written past out");
    if (w) tester_check_close(t, "weights against the oracle", p->weights_size, w, want_w, tol_w);
    /* the widening path (neon, avx512f: the same plan inputs) gives other bits */
    uint16_t* wide = tester_alloc(p->out_size * 2);
    mha_layer_args aw = bf16_args(L, wide, NULL, 2);
    if (check_ok(t, mha_layer_forward(widening, &aw), "widening forward")) {
      tester_check(t, memcmp(wide, out16, p->out_size * 2) != 0, "out is not the widening path's (the BF16 form ran)");
    }
    free(got), free(wide);
  }
  free(out16), free(w), free(want), free(tol), free(want_w), free(tol_w);
}

static void check_bits(tester* t, const bf16_layer* L, const mha_layer* plan) {
  const layer_problem* p = &L->p;
  const layer_case* c = &p->c;
  const size_t nout = p->out_size;
  uint16_t* ref = tester_alloc(nout * 2);
  uint16_t* got = tester_alloc(nout * 2);
  float* w = p->weights ? tester_alloc(p->weights_size * sizeof(float)) : NULL;
  mha_layer_args a = bf16_args(L, ref, NULL, 1);
  if (!check_ok(t, mha_layer_forward(plan, &a), "forward, 1 thread")) goto done;
  for (int threads = 2; threads <= 3; threads++) {
    memset(got, 0xff, nout * 2);
    a = bf16_args(L, got, w, threads);
    void* ws = NULL;
    if (threads == 3) { /* the caller's workspace, of the size the BF16 form needs */
      size_t bytes = 0;
      if (check_ok(t, mha_layer_workspace_size(plan, &a, &bytes), "workspace size")) {
        ws = tester_alloc(bytes);
        memset(ws, 0xff, bytes);
        a.workspace = ws, a.workspace_size = bytes;
      }
    }
    if (check_ok(t, mha_layer_forward(plan, &a), "forward")) {
      tester_check(t, memcmp(ref, got, nout * 2) == 0, "%d threads%s%s: out bitwise 1 thread's", threads,
                   w ? ", with weights" : "", ws ? ", the caller's workspace" : "");
    }
    free(ws);
  }
  /* each entry alone: its rows, its masks */
  const int64_t width = mha_layer_output_width(plan), Tk = p->Tk;
  for (int64_t b = 0; b < c->B; b++) {
    a = bf16_args(L, got, NULL, 2);
    a.B = 1;
    a.x_q = (const float*)(L->x_q + b * c->Tq * c->d_model);
    if (L->x_k) a.x_k = (const float*)(L->x_k + b * Tk * p->d_kv);
    if (L->x_v) a.x_v = (const float*)(L->x_v + b * Tk * p->d_kv);
    if (a.mask.kv_len) a.mask.kv_len += b;
    if (a.mask.additive) a.mask.additive += b * a.mask.additive_strides.batch;
    if (check_ok(t, mha_layer_forward(plan, &a), "forward, one entry")) {
      tester_check(t, memcmp(ref + b * c->Tq * width, got, (size_t)(c->Tq * width) * 2) == 0,
                   "entry %lld alone: bitwise inside its batch", (long long)b);
    }
  }
done:
  free(ref), free(got), free(w);
}

/* A caller's pool that runs the tasks one after another, last first. */
static void reverse_for(void* pool, mha_task_fn task, void* task_context, size_t n) {
  (void)pool;
  for (size_t i = n; i-- > 0;) task(task_context, i);
}

/* The caller's pool and a trace: out bitwise OpenMP's; the trace holds the
 * GEMMs' tiles (0 Q, 1 K, 2 V, 3 W_o when there is one) and attention units. */
static void check_pool_trace(tester* t, const bf16_layer* L, const mha_layer* plan) {
  const layer_problem* p = &L->p;
  uint16_t* ref = tester_alloc(p->out_size * 2);
  uint16_t* got = tester_alloc(p->out_size * 2);
  mha_trace_event* ev = tester_alloc(4096 * sizeof *ev);
  mha_trace trace = {ev, 4096, 0, 0};
  const mha_threadpool pool = {reverse_for, NULL, 3};
  mha_layer_args a = bf16_args(L, ref, NULL, 2);
  mha_layer_args b = bf16_args(L, got, NULL, 0);
  b.threadpool = &pool;
  b.trace = &trace;
  if (check_ok(t, mha_layer_forward(plan, &a), "forward") &&
      check_ok(t, mha_layer_forward(plan, &b), "forward on the caller's pool, traced")) {
    tester_check(t, memcmp(ref, got, p->out_size * 2) == 0, "the caller's pool and a trace: out bitwise OpenMP's");
    int gemm[4] = {0, 0, 0, 0}, attention = 0;
    for (int64_t i = 0; i < trace.count; i++) {
      if (ev[i].stage == MHA_TRACE_GEMM && ev[i].head >= 0 && ev[i].head < 4) gemm[ev[i].head]++;
      if (ev[i].stage == MHA_TRACE_ATTENTION) attention++;
    }
    tester_check(t, trace.count == trace.total && gemm[0] > 0 && gemm[1] > 0 && gemm[2] > 0 &&
                        (gemm[3] > 0) == (p->c.no_w_o == 0) && attention > 0,
                 "the trace: %lld of %lld events, GEMM tiles %d/%d/%d/%d, %d attention units", (long long)trace.count,
                 (long long)trace.total, gemm[0], gemm[1], gemm[2], gemm[3], attention);
  }
  free(ref), free(got), free(ev);
}

/* A bf16 K/V cache output (self-attention cases): out unchanged, the cache's
 * K and V within the projections' bound plus their rounding. */
static void check_cache_output(tester* t, const bf16_layer* L, const mha_layer* plan) {
  const layer_problem* p = &L->p;
  const layer_case* c = &p->c;
  const int64_t B = c->B, T = c->Tq, Hkv = p->Hkv, D = p->D, Dv = p->Dv;
  uint16_t* ref = tester_alloc(p->out_size * 2);
  uint16_t* got = tester_alloc(p->out_size * 2);
  uint16_t* kc = tester_alloc((size_t)(B * Hkv * T * D) * 2);
  uint16_t* vc = tester_alloc((size_t)(B * Hkv * T * Dv) * 2);
  mha_kv_cache cache;
  mha_kv_cache_init(&cache, MHA_DTYPE_BF16, kc, vc, Hkv, T, D, Dv);
  mha_layer_args a = bf16_args(L, ref, NULL, 2);
  mha_layer_args ac = bf16_args(L, got, NULL, 2);
  ac.kv_cache = &cache;
  if (check_ok(t, mha_layer_forward(plan, &a), "forward") &&
      check_ok(t, mha_layer_forward(plan, &ac), "forward with a bf16 K/V cache")) {
    tester_check(t, memcmp(ref, got, p->out_size * 2) == 0, "out with the cache output bitwise without");
    const double scale = 1.0 / sqrt((double)D);
    oracle_layer_trace tr;
    double* want = tolerance_alloc(p->out_size);
    oracle_layer_forward(&p->oracle, B, T, T, p->x_q, NULL, NULL, scale, c->causal, NULL, NULL,
                         (oracle_strides){0, 0, 0}, want, NULL, &tr);
    int ok = 1;
    for (int64_t b = 0; b < B; b++) {
      for (int64_t g = 0; g < Hkv; g++) {
        for (int64_t s = 0; s < T; s++) {
          for (int64_t e = 0; e < D + Dv; e++) {
            const int is_k = e < D;
            const int64_t col = g * (is_k ? D : Dv) + (is_k ? e : e - D);
            const size_t at = (size_t)((b * T + s) * Hkv * (is_k ? D : Dv) + col);
            const double exact = is_k ? tr.k[at] : tr.v[at];
            const double mag = is_k ? tr.k_abs[at] : tr.v_abs[at];
            const double bound = (double)(p->d_kv + 2) * TOLERANCE_EPS * mag;
            const uint16_t h = is_k ? kc[((b * Hkv + g) * T + s) * D + e] : vc[((b * Hkv + g) * T + s) * Dv + e - D];
            ok &= fabs(mha_bf16_to_f32(h) - exact) <= bound + 0x1p-8 * (fabs(exact) + bound);
          }
        }
      }
    }
    tester_check(t, ok, "the cache's K and V within the projections' bound plus their rounding");
    oracle_layer_trace_free(&tr);
    free(want);
  }
  free(ref), free(got), free(kc), free(vc);
}

static void check_layer(tester* t, mha_isa isa, const char* what, const layer_case* lc) {
  bf16_layer L;
  bf16_layer_build(t, lc, isa, &L);
  tester_context(t, "%s: %s", mha_isa_name(isa), what);
  mha_layer *plan = NULL, *widening = NULL;
  mha_layer_desc dw = L.desc;
  dw.isa = tester_widening_isa(isa); /* the same bf16 weights, widened: the path without the unit */
  if (check_ok(t, mha_layer_create(&L.desc, &plan), "create") &&
      check_ok(t, mha_layer_create(&dw, &widening), "create on the widening set")) {
    tester_check(t, plan->bf16_form == 1, "the plan is in the BF16 form");
    tester_check(t, widening->bf16_form == 0, "the widening set's plan is not");
    check_accuracy(t, &L, plan, widening);
    check_bits(t, &L, plan);
    check_pool_trace(t, &L, plan);
    if (!lc->cross && !lc->kv_len && !lc->additive) check_cache_output(t, &L, plan);
  }
  mha_layer_destroy(plan);
  mha_layer_destroy(widening);
  bf16_layer_free(&L);
}

int main(void) {
  tester t;
  tester_init(&t, "layer-bf16-test");
  int sets = 0;
  for (int i = MHA_ISA_SCALAR; i < MHA_ISA_COUNT; i++) {
    const mha_kernels* kr = mha_kernels_for((mha_isa)i);
    if (kr == NULL || kr->bf16_gemm == NULL) continue;
    sets++;
    printf("%s: the BF16 form of the %s set\n", t.name, kr->name);
    check_gemm(&t, kr);
    layer_case c;
    memset(&c, 0, sizeof c);
    c.B = 2, c.Tq = 17, c.d_model = 48, c.H = 8, c.Hkv = 4, c.layout = MHA_WEIGHTS_IN_OUT, c.biases = 1;
    c.causal = 1, c.weights = 1, c.threads = 1;
    check_layer(&t, (mha_isa)i, "self, GQA 8/4, biases, causal, weights", &c);
    memset(&c, 0, sizeof c);
    c.B = 3, c.Tq = 7, c.Tk = 13, c.d_model = 24, c.d_kv = 20, c.H = 4, c.Hkv = 2, c.D = 8, c.Dv = 12;
    c.layout = MHA_WEIGHTS_OUT_IN, c.cross = 1, c.separate_v = 1, c.kv_len = 1, c.biases = 1, c.threads = 1;
    check_layer(&t, (mha_isa)i, "cross, separate K and V inputs, kv_len, Dv != D, OUT_IN", &c);
    memset(&c, 0, sizeof c);
    c.B = 1, c.Tq = 65, c.Tk = 33, c.d_model = 32, c.H = 4, c.layout = MHA_WEIGHTS_OUT_IN, c.packed = 1;
    c.biases = 1, c.cross = 1, c.additive = 1, c.threads = 1;
    check_layer(&t, (mha_isa)i, "packed in_proj, cross, additive mask", &c);
    memset(&c, 0, sizeof c);
    c.B = 2, c.Tq = 9, c.d_model = 21, c.H = 3, c.layout = MHA_WEIGHTS_IN_OUT, c.no_w_o = 1, c.threads = 1;
    check_layer(&t, (mha_isa)i, "no W_o, odd widths", &c);
  }
  if (sets == 0) {
    printf("layer-bf16-test: SKIPPED: no kernel set with a BF16 unit in this build on this CPU "
           "(neon_bf16: AArch64 with FEAT_BF16; avx512_bf16: x86-64 with AVX512-BF16; amx_bf16: a build with "
           "MHA_AMX on a CPU with AMX-BF16)\n");
    return 77;
  }
  return tester_finish(&t);
}
