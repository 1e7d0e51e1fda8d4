/*
 * The layer with 16-bit inputs and output (mha_layer_args.dtype
 * MHA_DTYPE_F16 / MHA_DTYPE_BF16; include/mha.h): the documented contract,
 * checked from its text.
 *
 *   1. Bits: out is bitwise round(the fp32 forward on the widened x_q, x_k,
 *      x_v) (kv-convert.h's conversions: to nearest even), attention weights
 *      bitwise that forward's; self-attention (GQA, biases, causal), cross
 *      attention with separate K and V inputs, kv_len and the concatenated
 *      heads (no W_o), packed in_proj with an additive mask; every ISA at
 *      1-3 threads, out poisoned and guarded; with the caller's workspace
 *      of mha_layer_workspace_size() for that dtype.
 *   2. Refusals (nothing written): another dtype, out over x_q by one
 *      2-byte element; a buffer right after x_q is accepted.
 *   3. 16-bit weights (mha_layer_desc.dtype): a plan made from f16 / bf16
 *      weights and biases (separate IN_OUT and OUT_IN, packed in_proj, no
 *      W_o), each array in a buffer that ends at an inaccessible page, runs
 *      bitwise the plan made from the same values widened to fp32, with
 *      fp32 and with 16-bit inputs, every ISA at 1 and 3 threads; another
 *      desc dtype is refused (INVALID_ARGUMENT naming dtype, no plan).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "guarded-buffer.h"
#include "layer-problem.h"
#include "mha.h"
#include "tester.h"

enum { GUARD = 16 };

static uint16_t narrow(mha_dtype dt, float f) { return dt == MHA_DTYPE_F16 ? mha_f32_to_f16(f) : mha_f32_to_bf16(f); }
static float widen(mha_dtype dt, uint16_t h) { return dt == MHA_DTYPE_F16 ? mha_f16_to_f32(h) : mha_bf16_to_f32(h); }
static uint16_t poison16(void) { return 0x7fa5; }

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

/* x rounded to dt (x16) and widened back (xw): the 16-bit call's inputs and the fp32 call's */
static void round_input(mha_dtype dt, const float* x, size_t n, uint16_t** x16, float** xw) {
  *x16 = NULL;
  *xw = NULL;
  if (x == NULL) return;
  *x16 = tester_alloc(n * 2);
  *xw = tester_alloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    (*x16)[i] = narrow(dt, x[i]);
    (*xw)[i] = widen(dt, (*x16)[i]);
  }
}

static void check_case(tester* t, const isa_list* isas, const char* what, const layer_case* lc) {
  static const mha_dtype dts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  layer_problem p;
  layer_problem_build(t, lc, &p);
  const size_t nq = (size_t)(lc->B * lc->Tq * lc->d_model), nk = (size_t)(lc->B * p.Tk * p.d_kv);
  for (int di = 0; di < 2; di++) {
    const mha_dtype dt = dts[di];
    uint16_t *q16, *k16, *v16;
    float *qw, *kw, *vw;
    round_input(dt, p.x_q, nq, &q16, &qw);
    round_input(dt, p.x_k, nk, &k16, &kw);
    round_input(dt, p.x_v, nk, &v16, &vw);
    uint16_t* out16 = tester_alloc((p.out_size + GUARD) * 2);
    float* outf = tester_alloc(p.out_size * sizeof(float));
    float *w = NULL, *wf = NULL;
    if (p.weights != NULL) {
      w = tester_alloc(p.weights_size * sizeof(float));
      wf = tester_alloc(p.weights_size * sizeof(float));
    }
    for (int ii = 0; ii < isas->count; ii++) {
      mha_layer_desc d = p.desc;
      d.isa = isas->isa[ii];
      mha_layer* L = NULL;
      if (!check_ok(t, mha_layer_create(&d, &L), "create")) continue;
      for (int threads = 1; threads <= 3; threads++) {
        tester_context(t, "%s, %s, isa %s, %d threads", what, dt == MHA_DTYPE_F16 ? "f16" : "bf16",
                       mha_isa_name(isas->isa[ii]), threads);
        mha_layer_args a = p.args;
        a.num_threads = threads;
        a.x_q = qw, a.x_k = kw, a.x_v = vw, a.out = outf, a.weights = wf;
        tester_poison(outf, p.out_size);
        if (wf) tester_poison(wf, p.weights_size);
        if (!check_ok(t, mha_layer_forward(L, &a), "fp32 forward")) continue;
        a.dtype = dt;
        a.x_q = (const float*)q16, a.x_k = (const float*)k16, a.x_v = (const float*)v16;
        a.out = (float*)out16, a.weights = w;
        for (size_t i = 0; i < p.out_size + GUARD; i++) out16[i] = poison16();
        if (w) tester_poison(w, p.weights_size);
        void* ws = NULL;
        if (threads == 2) { /* the caller's workspace, of the size this dtype needs */
          size_t bytes = 0;
          if (check_ok(t, mha_layer_workspace_size(L, &a, &bytes), "workspace size")) {
            ws = tester_alloc(bytes);
            a.workspace = ws, a.workspace_size = bytes;
          }
        }
        if (check_ok(t, mha_layer_forward(L, &a), "16-bit forward")) {
          int same = 1, guard = 1;
          for (size_t i = 0; i < p.out_size; i++) same &= out16[i] == narrow(dt, outf[i]);
          for (size_t i = p.out_size; i < p.out_size + GUARD; i++) guard &= out16[i] == poison16();
          tester_check(t, same, "out bitwise round(the fp32 forward on the widened inputs)");
          tester_check(t, guard, "nothing written past out");
          if (w) tester_check(t, memcmp(w, wf, p.weights_size * sizeof(float)) == 0, "weights bitwise the fp32 forward's");
        }
        free(ws);
      }
      mha_layer_destroy(L);
    }
    free(q16), free(k16), free(v16), free(qw), free(kw), free(vw), free(out16), free(outf), free(w), free(wf);
  }
  layer_problem_free(&p);
}

static void check_refusals(tester* t) {
  tester_context(t, "refusals");
  layer_case lc;
  memset(&lc, 0, sizeof lc);
  lc.B = 1, lc.Tq = 5, lc.d_model = 16, lc.H = 2, lc.layout = MHA_WEIGHTS_IN_OUT, lc.threads = 1;
  layer_problem p;
  layer_problem_build(t, &lc, &p);
  mha_layer* L = NULL;
  const size_t n = (size_t)(lc.Tq * lc.d_model);
  uint16_t* buf = tester_alloc((3 * n + GUARD) * 2);
  for (size_t i = 0; i < n; i++) buf[i] = mha_f32_to_bf16(p.x_q[i]);
  for (size_t i = n; i < 3 * n + GUARD; i++) buf[i] = poison16();
  if (check_ok(t, mha_layer_create(&p.desc, &L), "create")) {
    mha_layer_args a = p.args;
    a.x_q = (const float*)buf;
    a.out = (float*)(buf + n);
    a.dtype = MHA_DTYPE_INT8;
    tester_stale_error();
    tester_check_failure(t, "dtype int8", mha_layer_forward(L, &a), MHA_STATUS_INVALID_ARGUMENT, "dtype");
    a.dtype = (mha_dtype)7;
    tester_stale_error();
    tester_check_failure(t, "dtype 7", mha_layer_forward(L, &a), MHA_STATUS_INVALID_ARGUMENT, "dtype");
    int untouched = 1;
    for (size_t i = n; i < 3 * n; i++) untouched &= buf[i] == poison16();
    tester_check(t, untouched, "a refused call writes nothing");
    a.dtype = MHA_DTYPE_BF16;
    a.out = (float*)(buf + n - 1); /* one 2-byte element over x_q's last */
    tester_stale_error();
    tester_check_failure(t, "out over x_q's last element", mha_layer_forward(L, &a), MHA_STATUS_INVALID_STRIDE, "out");
    a.out = (float*)(buf + n); /* right after it: accepted */
    check_ok(t, mha_layer_forward(L, &a), "out right after x_q");
    int guard = 1;
    for (size_t i = 2 * n; i < 3 * n + GUARD; i++) guard &= buf[i] == poison16();
    tester_check(t, guard, "nothing written past out");
  }
  mha_layer_destroy(L);
  free(buf);
  layer_problem_free(&p);
}

/* One weight array: its 16-bit copy (ending at an inaccessible page, so a
 * read one element past it faults) and its widened fp32 copy. */
typedef struct weight16 {
  guarded_buffer g;
  const uint16_t* bits;
  float* widened;
} weight16;

static void weight16_make(mha_dtype dt, const float* w, size_t n, weight16* o) {
  memset(o, 0, sizeof *o);
  if (w == NULL) return;
  const size_t nf = (n + 1) / 2;
  o->g = guarded_alloc(nf);
  uint16_t* bits = (uint16_t*)o->g.data + (2 * nf - n); /* ends at the page */
  o->widened = tester_alloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    bits[i] = narrow(dt, w[i]);
    o->widened[i] = widen(dt, bits[i]);
  }
  o->bits = bits;
}

static void weight16_free(weight16* o) {
  if (o->g.map != NULL) guarded_free(&o->g);
  free(o->widened);
}

static void check_weights16(tester* t, const isa_list* isas, const char* what, const layer_case* lc) {
  static const mha_dtype dts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  layer_problem p;
  layer_problem_build(t, lc, &p);
  const int64_t dm = lc->d_model, H = lc->H, D = p.D, Dv = p.Dv, Hkv = p.Hkv, dkv = p.d_kv;
  const mha_layer_desc* d0 = &p.desc;
  const float* src[10] = {d0->w_q, d0->w_k, d0->w_v, d0->w_o, d0->in_proj_weight,
                          d0->b_q, d0->b_k, d0->b_v, d0->b_o, d0->in_proj_bias};
  const size_t n[10] = {(size_t)(dm * H * D), (size_t)(dkv * Hkv * D), (size_t)(dkv * Hkv * Dv),
                        (size_t)(H * Dv * dm), (size_t)(3 * dm * dm),
                        (size_t)(H * D), (size_t)(Hkv * D), (size_t)(Hkv * Dv), (size_t)dm, (size_t)(3 * dm)};
  const size_t nq = (size_t)(lc->B * lc->Tq * dm), nk = (size_t)(lc->B * p.Tk * dkv);
  for (int di = 0; di < 2; di++) {
    const mha_dtype dt = dts[di];
    weight16 w[10];
    for (int i = 0; i < 10; i++) weight16_make(dt, src[i], n[i], &w[i]);
    mha_layer_desc d16 = p.desc, dw = p.desc;
    const float** f16[10] = {&d16.w_q, &d16.w_k, &d16.w_v, &d16.w_o, &d16.in_proj_weight,
                             &d16.b_q, &d16.b_k, &d16.b_v, &d16.b_o, &d16.in_proj_bias};
    const float** fw[10] = {&dw.w_q, &dw.w_k, &dw.w_v, &dw.w_o, &dw.in_proj_weight,
                            &dw.b_q, &dw.b_k, &dw.b_v, &dw.b_o, &dw.in_proj_bias};
    for (int i = 0; i < 10; i++) {
      *f16[i] = (const float*)w[i].bits;
      *fw[i] = w[i].widened;
    }
    d16.dtype = dt;
    uint16_t *q16, *k16, *v16;
    float *qw, *kw, *vw;
    round_input(dt, p.x_q, nq, &q16, &qw);
    round_input(dt, p.x_k, nk, &k16, &kw);
    round_input(dt, p.x_v, nk, &v16, &vw);
    float* want = tester_alloc(p.out_size * sizeof(float));
    uint16_t* want16 = tester_alloc(p.out_size * 2);
    uint16_t* got16 = tester_alloc(p.out_size * 2);
    for (int ii = 0; ii < isas->count; ii++) {
      tester_context(t, "%s, %s weights, isa %s", what, dt == MHA_DTYPE_F16 ? "f16" : "bf16",
                     mha_isa_name(isas->isa[ii]));
      d16.isa = dw.isa = isas->isa[ii];
      mha_layer *L16 = NULL, *Lw = NULL;
      if (check_ok(t, mha_layer_create(&d16, &L16), "create from 16-bit weights") &&
          check_ok(t, mha_layer_create(&dw, &Lw), "create from the widened weights")) {
        for (int threads = 1; threads <= 3; threads += 2) {
          mha_layer_args a = p.args;
          a.num_threads = threads;
          a.weights = NULL;
          a.out = want;
          tester_poison(want, p.out_size);
          if (!check_ok(t, mha_layer_forward(Lw, &a), "forward, widened weights")) continue;
          a.out = p.out;
          tester_poison(p.out, p.out_size);
          if (check_ok(t, mha_layer_forward(L16, &a), "forward, 16-bit weights")) {
            tester_check(t, memcmp(want, p.out, p.out_size * sizeof(float)) == 0,
                         "%d threads: out bitwise the widened weights' plan's", threads);
          }
          /* 16-bit inputs and output too: the whole layer in the checkpoint's type */
          a.dtype = dt;
          a.x_q = (const float*)q16, a.x_k = (const float*)k16, a.x_v = (const float*)v16;
          a.out = (float*)want16;
          for (size_t i = 0; i < p.out_size; i++) want16[i] = poison16(), got16[i] = poison16();
          if (!check_ok(t, mha_layer_forward(Lw, &a), "16-bit forward, widened weights")) continue;
          a.out = (float*)got16;
          if (check_ok(t, mha_layer_forward(L16, &a), "16-bit forward, 16-bit weights")) {
            tester_check(t, memcmp(want16, got16, p.out_size * 2) == 0,
                         "%d threads, 16-bit inputs: out bitwise the widened weights' plan's", threads);
          }
        }
      }
      mha_layer_destroy(L16);
      mha_layer_destroy(Lw);
    }
    for (int i = 0; i < 10; i++) weight16_free(&w[i]);
    free(q16), free(k16), free(v16), free(qw), free(kw), free(vw), free(want), free(want16), free(got16);
  }
  /* refusals: no plan, the message names dtype */
  static const mha_dtype bad[] = {MHA_DTYPE_INT8, (mha_dtype)7};
  for (int i = 0; i < 2; i++) {
    tester_context(t, "%s, weights dtype %d", what, (int)bad[i]);
    mha_layer_desc d = p.desc;
    d.dtype = bad[i];
    mha_layer* L = (mha_layer*)&p; /* must become NULL */
    tester_stale_error();
    tester_check_failure(t, "create", mha_layer_create(&d, &L), MHA_STATUS_INVALID_ARGUMENT, "dtype");
    tester_check(t, L == NULL, "a refused plan is NULL");
  }
  layer_problem_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "layer-16-test");
  const isa_list isas = tester_available_isas(&t);
  layer_case c;
  memset(&c, 0, sizeof c);
  c.B = 2, c.Tq = 17, c.d_model = 48, c.H = 8, c.Hkv = 4, c.layout = MHA_WEIGHTS_IN_OUT, c.biases = 1, c.causal = 1;
  c.weights = 1, c.threads = 1;
  check_case(&t, &isas, "self, GQA 8/4, biases, causal, weights", &c);
  memset(&c, 0, sizeof c);
  c.B = 3, c.Tq = 7, c.Tk = 13, c.d_model = 24, c.d_kv = 20, c.H = 4, c.Hkv = 2, c.D = 8, c.Dv = 12;
  c.layout = MHA_WEIGHTS_OUT_IN, c.cross = 1, c.separate_v = 1, c.kv_len = 1, c.no_w_o = 1, c.threads = 1;
  check_case(&t, &isas, "cross, separate K and V inputs, kv_len, no W_o", &c);
  memset(&c, 0, sizeof c);
  c.B = 1, c.Tq = 65, c.Tk = 33, c.d_model = 32, c.H = 4, c.layout = MHA_WEIGHTS_OUT_IN, c.packed = 1, c.biases = 1;
  c.cross = 1, c.additive = 1, c.threads = 1;
  check_case(&t, &isas, "packed in_proj, cross, additive mask", &c);
  check_refusals(&t);

  memset(&c, 0, sizeof c);
  c.B = 2, c.Tq = 9, c.d_model = 40, c.H = 4, c.Hkv = 2, c.layout = MHA_WEIGHTS_IN_OUT, c.biases = 1, c.causal = 1;
  c.threads = 1;
  check_weights16(&t, &isas, "16-bit weights, IN_OUT, GQA 4/2, biases", &c);
  memset(&c, 0, sizeof c);
  c.B = 1, c.Tq = 7, c.Tk = 11, c.d_model = 24, c.d_kv = 20, c.H = 4, c.Hkv = 2, c.D = 8, c.Dv = 12;
  c.layout = MHA_WEIGHTS_OUT_IN, c.cross = 1, c.separate_v = 1, c.biases = 1, c.threads = 1;
  check_weights16(&t, &isas, "16-bit weights, OUT_IN, cross, separate K and V, Dv != D", &c);
  memset(&c, 0, sizeof c);
  c.B = 2, c.Tq = 13, c.d_model = 32, c.H = 4, c.layout = MHA_WEIGHTS_OUT_IN, c.packed = 1, c.biases = 1;
  c.threads = 1;
  check_weights16(&t, &isas, "16-bit weights, packed in_proj and in_proj_bias", &c);
  memset(&c, 0, sizeof c);
  c.B = 1, c.Tq = 5, c.d_model = 21, c.H = 3, c.layout = MHA_WEIGHTS_IN_OUT, c.no_w_o = 1, c.threads = 1;
  check_weights16(&t, &isas, "16-bit weights, no W_o, odd widths", &c);
  return tester_finish(&t);
}
