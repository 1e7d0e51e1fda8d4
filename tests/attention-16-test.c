/*
 * 16-bit attention (mha_attention with MHA_DTYPE_F16 / MHA_DTYPE_BF16;
 * include/mha.h): the documented contract, checked from its text.
 *
 *   1. Bits: out is bitwise round(mha_attention_f32 on the widened q, k, v)
 *      (the scalar conversions of kv-convert.h: to nearest even), and weights and
 *      lse bitwise that fp32 call's, for prefill (tiled and transposed
 *      forms), decode (keys split), GQA, causal, kv_len, an additive mask,
 *      window + ALiBi + soft-cap + sinks, strided (bthd) views, D != Dv and
 *      sizes 1, 7, 63, 65, on every ISA at 1-3 threads. out is poisoned
 *      before each call and guarded past its end.
 *   2. Accuracy: |widen(out) − oracle| within the fp32 core's derived
 *      tolerance plus half an ulp of the type, the oracle in double on the
 *      widened inputs. (The sets that compute bf16 on a BF16 unit have a
 *      contract of their own: attention-bf16-test.)
 *   2b. mha_attention_kv: 16-bit Q and out over fp32 and bf16 caches,
 *      contiguous and paged, with and without a rotary: bitwise round(the
 *      fp32-Q cache call on the widened q), every ISA at 1-3 threads.
 *   2b'. mha_attention_varlen: packed 16-bit Q, K, V (a sequence without
 *      keys, one without queries): bitwise round(the fp32 varlen call on the
 *      widened inputs), every ISA at 1-3 threads; the varlen workspace size
 *      serves it.
 *   2c. mha_attention_varlen_kv: a packed step (decode, chunks, an empty
 *      sequence) over a paged bf16 cache with a rotary, bitwise round(the
 *      fp32-Q varlen call on the widened q).
 *   3. Refusals (nothing written): another dtype, NULL pointers, a rotary,
 *      out over q; buffers that touch only in 2-byte elements are accepted;
 *      MHA_DTYPE_F32 is mha_attention_f32.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"

/* ---- the 16-bit formats: the library's scalar conversions (kv-gemm/kv-convert.h),
 * checked against their definitions and the compiler's _Float16 in kv-cache-test,
 * and on known values below ---- */

static float widen(mha_dtype dt, uint16_t h) { return dt == MHA_DTYPE_F16 ? mha_f16_to_f32(h) : mha_bf16_to_f32(h); }

/* to nearest, ties to even; beyond the range ±inf */
static uint16_t narrow(mha_dtype dt, float f) { return dt == MHA_DTYPE_F16 ? mha_f32_to_f16(f) : mha_f32_to_bf16(f); }

/* Random 16-bit values in about ±[2^-6, 2): never zero. */
static void fill16(tester* t, mha_dtype dt, uint16_t* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (dt == MHA_DTYPE_BF16) {
      x[i] = (uint16_t)((tester_bits(t) & 0x807f) | (uint16_t)((121 + tester_below(t, 7)) << 7));
    } else {
      x[i] = (uint16_t)((tester_bits(t) & 0x83ff) | (uint16_t)((9 + tester_below(t, 7)) << 10));
    }
  }
}

static void widen_all(mha_dtype dt, const uint16_t* x, float* y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = widen(dt, x[i]);
}

/* ---- cases ---- */

typedef struct case16 {
  const char* name;
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, additive, variants, bthd, weights;
} case16;

static const case16 cases[] = {
    {"prefill", 2, 4, 2, 65, 65, 64, 64, 0, 0, 0, 0, 0, 1},
    {"causal cross", 1, 3, 1, 63, 130, 7, 9, 1, 0, 0, 0, 0, 0},
    {"decode split", 2, 8, 2, 1, 300, 128, 128, 0, 0, 0, 0, 0, 1},
    {"kv_len + additive", 3, 2, 2, 17, 33, 16, 16, 0, 1, 1, 0, 0, 1},
    {"variants", 1, 2, 1, 40, 40, 32, 32, 1, 0, 0, 1, 0, 0},
    {"bthd views", 2, 4, 4, 33, 47, 24, 40, 1, 0, 0, 0, 1, 0},
    {"ones", 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1},
    {"tall", 1, 2, 2, 200, 200, 64, 64, 1, 0, 0, 0, 0, 0},
};

typedef struct problem16 {
  const case16* cs;
  mha_dtype dt;
  mha_attention_desc d;
  size_t nq, nk, nv, nout, nw, nlse;
  uint16_t *q, *k, *v;
  float *qf, *kf, *vf;
  float *add, *slopes, *sinks;
  int32_t* kv_len;
} problem16;

enum { GUARD = 16 };

static void problem_make(tester* t, const case16* cs, mha_dtype dt, problem16* p) {
  memset(p, 0, sizeof *p);
  p->cs = cs;
  p->dt = dt;
  mha_attention_desc_init(&p->d, cs->B, cs->H, cs->Hkv, cs->Tq, cs->Tk, cs->D, cs->Dv);
  if (cs->bthd) {
    p->d.q = mha_strides_bthd(cs->H, cs->Tq, cs->D);
    p->d.k = mha_strides_bthd(cs->Hkv, cs->Tk, cs->D);
    p->d.v = mha_strides_bthd(cs->Hkv, cs->Tk, cs->Dv);
    p->d.out = mha_strides_bthd(cs->H, cs->Tq, cs->Dv);
  }
  p->nq = (size_t)(cs->B * cs->H * cs->Tq * cs->D);
  p->nk = (size_t)(cs->B * cs->Hkv * cs->Tk * cs->D);
  p->nv = (size_t)(cs->B * cs->Hkv * cs->Tk * cs->Dv);
  p->nout = (size_t)(cs->B * cs->H * cs->Tq * cs->Dv);
  p->nw = (size_t)(cs->B * cs->H * cs->Tq * cs->Tk);
  p->nlse = (size_t)(cs->B * cs->H * cs->Tq);
  p->q = tester_alloc(p->nq * 2);
  p->k = tester_alloc(p->nk * 2);
  p->v = tester_alloc(p->nv * 2);
  fill16(t, dt, p->q, p->nq);
  fill16(t, dt, p->k, p->nk);
  fill16(t, dt, p->v, p->nv);
  p->qf = tester_alloc(p->nq * sizeof(float));
  p->kf = tester_alloc(p->nk * sizeof(float));
  p->vf = tester_alloc(p->nv * sizeof(float));
  widen_all(dt, p->q, p->qf, p->nq);
  widen_all(dt, p->k, p->kf, p->nk);
  widen_all(dt, p->v, p->vf, p->nv);
  p->d.mask.causal = cs->causal;
  if (cs->kv_len) {
    p->kv_len = tester_alloc((size_t)cs->B * sizeof(int32_t));
    for (int64_t b = 0; b < cs->B; b++) p->kv_len[b] = (int32_t)(b == 0 ? cs->Tk : 1 + tester_below(t, cs->Tk));
    p->d.mask.kv_len = p->kv_len;
  }
  if (cs->additive) {
    p->add = tester_alloc(p->nw * sizeof(float));
    tester_fill(t, p->add, p->nw);
    for (size_t i = 0; i < p->nw; i += 5) p->add[i] = -INFINITY;
    /* every row keeps key 1 (kv_len >= 1 ... key 0 may be hidden) */
    for (size_t r = 0; r < p->nlse; r++) p->add[r * (size_t)cs->Tk] = 0.5f;
    p->d.mask.additive = p->add;
    p->d.mask.additive_strides = mha_strides_bhtd(cs->H, cs->Tq, cs->Tk);
  }
  if (cs->variants) {
    p->slopes = tester_alloc((size_t)cs->H * sizeof(float));
    p->sinks = tester_alloc((size_t)cs->H * sizeof(float));
    for (int64_t h = 0; h < cs->H; h++) {
      p->slopes[h] = 0.0625f * (float)(h + 1);
      p->sinks[h] = 0.25f - 0.5f * (float)h;
    }
    p->d.mask.window = 1;
    p->d.mask.window_left = 9;
    p->d.mask.window_right = 0;
    p->d.mask.alibi_slopes = p->slopes;
    p->d.mask.softcap = 30.0f;
    p->d.mask.sinks = p->sinks;
  }
}

static void problem_free(problem16* p) {
  free(p->q), free(p->k), free(p->v), free(p->qf), free(p->kf), free(p->vf);
  free(p->add), free(p->slopes), free(p->sinks), free(p->kv_len);
}

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

static uint16_t poison16(void) { return 0x7fa5; /* a NaN in both formats, with a payload no call writes */ }

/* ---- 1. bits ---- */

static void check_bits(tester* t, const isa_list* isas) {
  static const mha_dtype dts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    for (int di = 0; di < 2; di++) {
      problem16 p;
      problem_make(t, &cases[ci], dts[di], &p);
      uint16_t* out = tester_alloc((p.nout + GUARD) * 2);
      float* outf = tester_alloc(p.nout * sizeof(float));
      float *w = NULL, *wf = NULL;
      if (p.cs->weights) {
        w = tester_alloc(p.nw * sizeof(float));
        wf = tester_alloc(p.nw * sizeof(float));
      }
      float* lse = tester_alloc(p.nlse * sizeof(float));
      float* lsef = tester_alloc(p.nlse * sizeof(float));
      for (int ii = 0; ii < isas->count; ii++) {
        for (int threads = 1; threads <= 3; threads++) {
          tester_context(t, "%s, %s, isa %s, %d threads", p.cs->name, dts[di] == MHA_DTYPE_F16 ? "f16" : "bf16",
                         mha_isa_name(isas->isa[ii]), threads);
          mha_attention_desc d = p.d;
          d.isa = isas->isa[ii];
          d.num_threads = threads;
          /* the fp32 call on the widened values */
          tester_poison(outf, p.nout);
          if (wf) tester_poison(wf, p.nw);
          tester_poison(lsef, p.nlse);
          d.lse = lsef;
          if (!check_ok(t, mha_attention_f32(&d, p.qf, p.kf, p.vf, outf, wf), "fp32 call")) continue;
          /* the 16-bit call */
          for (size_t i = 0; i < p.nout + GUARD; i++) out[i] = poison16();
          if (w) tester_poison(w, p.nw);
          tester_poison(lse, p.nlse);
          d.lse = lse;
          if (!check_ok(t, mha_attention(&d, dts[di], p.q, p.k, p.v, out, w), "16-bit call")) continue;
          int same = 1, guard = 1;
          for (size_t i = 0; i < p.nout; i++) same &= out[i] == narrow(dts[di], outf[i]);
          for (size_t i = p.nout; i < p.nout + GUARD; i++) guard &= out[i] == poison16();
          tester_check(t, same, "out bitwise round(the fp32 call on the widened inputs)");
          tester_check(t, guard, "nothing written past out");
          tester_check(t, memcmp(lse, lsef, p.nlse * sizeof(float)) == 0, "lse bitwise the fp32 call's");
          if (w) tester_check(t, memcmp(w, wf, p.nw * sizeof(float)) == 0, "weights bitwise the fp32 call's");
        }
      }
      free(out), free(outf), free(w), free(wf), free(lse), free(lsef);
      problem_free(&p);
    }
  }
}

/* ---- 2. accuracy against the oracle ---- */

static oracle_strides ostr(mha_strides s) {
  oracle_strides o = {s.batch, s.head, s.row};
  return o;
}

static void check_oracle(tester* t) {
  static const mha_dtype dts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    if (cases[ci].variants) continue; /* bitwise the fp32 call above; the variants' oracle is variants-test's */
    for (int di = 0; di < 2; di++) {
      problem16 p;
      problem_make(t, &cases[ci], dts[di], &p);
      tester_context(t, "oracle, %s, %s", p.cs->name, dts[di] == MHA_DTYPE_F16 ? "f16" : "bf16");
      double* qd = tolerance_alloc(p.nq);
      double* kd = tolerance_alloc(p.nk);
      double* vd = tolerance_alloc(p.nv);
      for (size_t i = 0; i < p.nq; i++) qd[i] = p.qf[i];
      for (size_t i = 0; i < p.nk; i++) kd[i] = p.kf[i];
      for (size_t i = 0; i < p.nv; i++) vd[i] = p.vf[i];
      oracle_attention_problem op;
      memset(&op, 0, sizeof op);
      op.B = p.cs->B, op.H = p.cs->H, op.Hkv = p.cs->Hkv, op.Tq = p.cs->Tq, op.Tk = p.cs->Tk;
      op.D = p.cs->D, op.Dv = p.cs->Dv;
      op.q = qd, op.k = kd, op.v = vd;
      op.q_strides = ostr(p.d.q), op.k_strides = ostr(p.d.k), op.v_strides = ostr(p.d.v);
      op.scale = 1.0 / sqrt((double)p.cs->D);
      op.causal = p.cs->causal;
      op.kv_len = p.kv_len;
      op.additive = p.add;
      op.additive_strides = ostr(p.d.mask.additive_strides);
      double* want = tolerance_alloc(p.nout);
      double* w = tolerance_alloc(p.nw);
      double* tol = tolerance_alloc(p.nout);
      oracle_attention(&op, want, w);
      tolerance_attention(&op, NULL, w, tol, NULL);
      /* the oracle's output is [B, H, Tq, Dv] contiguous; out follows desc's view */
      uint16_t* out = tester_alloc(p.nout * 2);
      float* got = tester_alloc(p.nout * sizeof(float));
      double* want_v = tolerance_alloc(p.nout);
      double* tol_v = tolerance_alloc(p.nout);
      for (size_t i = 0; i < p.nout; i++) out[i] = poison16();
      /* the widening path's contract: where the default set computes bf16
       * on a BF16 unit, the set without it (that form: attention-bf16-test) */
      mha_isa def = MHA_ISA_DEFAULT;
      if (mha_get_isa(&def) == MHA_STATUS_SUCCESS) p.d.isa = tester_widening_isa(def);
      if (check_ok(t, mha_attention(&p.d, dts[di], p.q, p.k, p.v, out, NULL), "16-bit call")) {
        /* the unit roundoff: |round(x) − x| <= u·|x| for a normal result */
        const double u = dts[di] == MHA_DTYPE_F16 ? 0x1p-11 : 0x1p-8;
        size_t n = 0;
        for (int64_t b = 0; b < op.B; b++)
          for (int64_t h = 0; h < op.H; h++)
            for (int64_t i = 0; i < op.Tq; i++)
              for (int64_t c = 0; c < op.Dv; c++, n++) {
                const size_t at = (size_t)(b * p.d.out.batch + h * p.d.out.head + i * p.d.out.row + c);
                got[n] = widen(dts[di], out[at]);
                want_v[n] = want[n];
                /* the fp32 result lies within tol of want; rounding it moves it by at
                 * most half an ulp of its magnitude (f16 subnormals: 2^-25) */
                const double mag = fabs(want[n]) + tol[n];
                tol_v[n] = tol[n] + u * mag + (dts[di] == MHA_DTYPE_F16 ? 0x1p-25 : 0.0);
              }
        tester_check_close(t, "out", p.nout, got, want_v, tol_v);
      }
      free(out), free(got), free(want_v), free(tol_v), free(qd), free(kd), free(vd), free(want), free(w), free(tol);
      problem_free(&p);
    }
  }
}

/* ---- 2b. the cache call: mha_attention_kv ---- */

/* Q and out 16-bit over an fp32 or a bf16 cache (contiguous, and paged in
 * blocks of 16 in a reversed pool), with and without a rotary: bitwise
 * round(mha_attention_kv_f32 on the widened q), lse bitwise, every ISA at
 * 1-3 threads; a decode (Tq 1, keys split) and a chunk (Tq 37). */
static void check_kv(tester* t, const isa_list* isas) {
  enum { B = 2, H = 4, HKV = 2, TK = 70, D = 32, PAGE = 16, NB = (TK + PAGE - 1) / PAGE };
  float* kx = tester_alloc((size_t)(B * HKV * TK * D) * sizeof(float));
  float* vx = tester_alloc((size_t)(B * HKV * TK * D) * sizeof(float));
  tester_fill(t, kx, (size_t)(B * HKV * TK * D));
  tester_fill(t, vx, (size_t)(B * HKV * TK * D));
  float *cosb = tester_alloc((size_t)(TK * D / 2) * sizeof(float)), *sinb = tester_alloc((size_t)(TK * D / 2) * sizeof(float));
  (void)check_ok(t, mha_rotary_table_f32(D, TK, 10000.0, 1.0, NULL, 1.0, cosb, sinb), "rotary table");
  static const mha_dtype cdts[] = {MHA_DTYPE_F32, MHA_DTYPE_BF16}, iodts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  static const int64_t tqs[] = {1, 37};
  int32_t table[B * NB];
  for (int i = 0; i < B * NB; i++) table[i] = B * NB - 1 - i; /* reversed: blocks out of order */
  for (int ci = 0; ci < 2; ci++) {
    for (int paged = 0; paged <= 1; paged++) {
      const size_t esz = cdts[ci] == MHA_DTYPE_F32 ? 4 : 2;
      const size_t rows = paged ? (size_t)(B * NB * PAGE) : (size_t)(B * TK);
      void* kc = tester_alloc(rows * HKV * D * esz);
      void* vc = tester_alloc(rows * HKV * D * esz);
      mha_kv_cache c;
      if (paged) mha_kv_cache_init_paged(&c, cdts[ci], kc, vc, B * NB, PAGE, HKV, D, D, table, NB);
      else mha_kv_cache_init(&c, cdts[ci], kc, vc, HKV, TK, D, D);
      const int32_t pos[B] = {0, 0};
      (void)check_ok(t, mha_kv_cache_write(&c, B, HKV, TK, D, D, pos, kx, mha_strides_bhtd(HKV, TK, D), vx,
                                           mha_strides_bhtd(HKV, TK, D)), "fill the cache");
      for (int ti = 0; ti < 2; ti++) {
        const int64_t Tq = tqs[ti];
        const size_t nq = (size_t)(B * H * Tq * D);
        for (int di = 0; di < 2; di++) {
          uint16_t* q16 = tester_alloc(nq * 2);
          float* qf = tester_alloc(nq * sizeof(float));
          uint16_t* out16 = tester_alloc((nq + GUARD) * 2);
          float *outf = tester_alloc(nq * sizeof(float)), *lse = tester_alloc((size_t)(B * H * Tq) * sizeof(float)),
                *lsef = tester_alloc((size_t)(B * H * Tq) * sizeof(float));
          fill16(t, iodts[di], q16, nq);
          widen_all(iodts[di], q16, qf, nq);
          for (int rot = 0; rot <= 1; rot++) {
            mha_rotary r;
            mha_rotary_init(&r, MHA_ROTARY_NEOX, D, cosb, sinb, TK);
            for (int ii = 0; ii < isas->count; ii++) {
              for (int threads = 1; threads <= 3; threads++) {
                tester_context(t, "kv: cache %s%s, Tq %lld, %s, rotary %d, isa %s, %d threads",
                               ci ? "bf16" : "f32", paged ? " paged" : "", (long long)Tq,
                               iodts[di] == MHA_DTYPE_F16 ? "f16" : "bf16", rot, mha_isa_name(isas->isa[ii]), threads);
                mha_attention_desc d;
                mha_attention_desc_init(&d, B, H, HKV, Tq, TK, D, D);
                d.mask.causal = 1;
                d.isa = isas->isa[ii];
                d.num_threads = threads;
                d.rotary = rot ? &r : NULL;
                tester_poison(outf, nq);
                tester_poison(lsef, (size_t)(B * H * Tq));
                d.lse = lsef;
                if (!check_ok(t, mha_attention_kv_f32(&d, qf, &c, outf, NULL), "fp32 cache call")) continue;
                for (size_t i = 0; i < nq + GUARD; i++) out16[i] = poison16();
                tester_poison(lse, (size_t)(B * H * Tq));
                d.lse = lse;
                if (!check_ok(t, mha_attention_kv(&d, iodts[di], q16, &c, out16, NULL), "16-bit cache call")) continue;
                int same = 1, guard = 1;
                for (size_t i = 0; i < nq; i++) same &= out16[i] == narrow(iodts[di], outf[i]);
                for (size_t i = nq; i < nq + GUARD; i++) guard &= out16[i] == poison16();
                tester_check(t, same, "out bitwise round(mha_attention_kv_f32 on the widened q)");
                tester_check(t, guard, "nothing written past out");
                tester_check(t, memcmp(lse, lsef, (size_t)(B * H * Tq) * sizeof(float)) == 0, "lse bitwise");
              }
            }
          }
          free(q16), free(qf), free(out16), free(outf), free(lse), free(lsef);
        }
      }
      free(kc), free(vc);
    }
  }
  /* another dtype: refused, nothing written */
  {
    uint16_t q16[8 * D], out16[8 * D];
    fill16(t, MHA_DTYPE_BF16, q16, 8 * D);
    for (int i = 0; i < 8 * D; i++) out16[i] = poison16();
    float* kc = tester_alloc((size_t)(TK * D) * sizeof(float));
    float* vc = tester_alloc((size_t)(TK * D) * sizeof(float));
    mha_kv_cache c;
    mha_kv_cache_init(&c, MHA_DTYPE_F32, kc, vc, 1, TK, D, D);
    mha_attention_desc d;
    mha_attention_desc_init(&d, 1, 8, 1, 1, TK, D, D);
    tester_context(t, "kv: refusals");
    tester_stale_error();
    tester_check_failure(t, "dtype int8", mha_attention_kv(&d, MHA_DTYPE_INT8, q16, &c, out16, NULL),
                         MHA_STATUS_INVALID_ARGUMENT, "dtype");
    int untouched = 1;
    for (int i = 0; i < 8 * D; i++) untouched &= out16[i] == poison16();
    tester_check(t, untouched, "a refused call writes nothing");
    free(kc), free(vc);
  }
  free(kx), free(vx), free(cosb), free(sinb);
}

/* ---- 2d. packed sequences: mha_attention_varlen ---- */

/* Four packed sequences (a decode, a chunk, one without queries, one without
 * keys) with packed 16-bit K and V, causal, GQA: bitwise
 * round(mha_attention_varlen_f32 on the widened q, k, v), which gives each
 * sequence its own call; every ISA at 1-3 threads; another dtype refused. */
/* The packed batch's desc: [total, heads, width] views of 17 query and 40 key rows at most */
static mha_attention_desc varlen_desc(int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t Dv) {
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, 17, 40, D, Dv);
  d.q = mha_strides_bthd(H, 17, D);
  d.k = mha_strides_bthd(Hkv, 40, D);
  d.v = mha_strides_bthd(Hkv, 40, Dv);
  d.out = mha_strides_bthd(H, 17, Dv);
  return d;
}

static void check_varlen(tester* t, const isa_list* isas) {
  enum { B = 4, H = 4, HKV = 2, D = 24, DV = 40 };
  const int32_t cu_q[B + 1] = {0, 1, 18, 18, 25}, cu_k[B + 1] = {0, 40, 57, 70, 70};
  const size_t nq = 25 * H * D, nk = 70 * HKV * D, nv = 70 * HKV * DV, nout = 25 * H * DV;
  static const mha_dtype dts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  for (int di = 0; di < 2; di++) {
    uint16_t *q = tester_alloc(nq * 2), *k = tester_alloc(nk * 2), *v = tester_alloc(nv * 2);
    float *qf = tester_alloc(nq * sizeof(float)), *kf = tester_alloc(nk * sizeof(float)),
          *vf = tester_alloc(nv * sizeof(float));
    fill16(t, dts[di], q, nq);
    fill16(t, dts[di], k, nk);
    fill16(t, dts[di], v, nv);
    widen_all(dts[di], q, qf, nq);
    widen_all(dts[di], k, kf, nk);
    widen_all(dts[di], v, vf, nv);
    uint16_t* out = tester_alloc((nout + GUARD) * 2);
    float* outf = tester_alloc(nout * sizeof(float));
    for (int ii = 0; ii < isas->count; ii++) {
      for (int threads = 1; threads <= 3; threads++) {
        tester_context(t, "varlen: %s, isa %s, %d threads", dts[di] == MHA_DTYPE_F16 ? "f16" : "bf16",
                       mha_isa_name(isas->isa[ii]), threads);
        mha_attention_desc d = varlen_desc(B, H, HKV, D, DV);
        d.mask.causal = 1;
        d.isa = isas->isa[ii];
        d.num_threads = threads;
        tester_poison(outf, nout);
        if (!check_ok(t, mha_attention_varlen_f32(&d, cu_q, cu_k, qf, kf, vf, outf), "fp32 call")) continue;
        for (size_t i = 0; i < nout + GUARD; i++) out[i] = poison16();
        if (!check_ok(t, mha_attention_varlen(&d, dts[di], cu_q, cu_k, q, k, v, out), "16-bit call")) continue;
        int same = 1, guard = 1;
        for (size_t i = 0; i < nout; i++) same &= out[i] == narrow(dts[di], outf[i]);
        for (size_t i = nout; i < nout + GUARD; i++) guard &= out[i] == poison16();
        tester_check(t, same, "out bitwise round(mha_attention_varlen_f32 on the widened inputs)");
        tester_check(t, guard, "nothing written past out");
      }
    }
    tester_context(t, "varlen: refusals");
    mha_attention_desc d = varlen_desc(B, H, HKV, D, DV);
    for (size_t i = 0; i < nout; i++) out[i] = poison16();
    tester_stale_error();
    tester_check_failure(t, "dtype int8", mha_attention_varlen(&d, MHA_DTYPE_INT8, cu_q, cu_k, q, k, v, out),
                         MHA_STATUS_INVALID_ARGUMENT, "dtype");
    int untouched = 1;
    for (size_t i = 0; i < nout; i++) untouched &= out[i] == poison16();
    tester_check(t, untouched, "a refused call writes nothing");
    /* the workspace size of mha_attention_varlen_workspace_size serves the 16-bit call */
    size_t bytes = 0;
    if (check_ok(t, mha_attention_varlen_workspace_size(&d, cu_q, cu_k, &bytes), "workspace size")) {
      void* ws = tester_alloc(bytes);
      d.workspace = ws;
      d.workspace_size = bytes;
      check_ok(t, mha_attention_varlen(&d, dts[di], cu_q, cu_k, q, k, v, out), "with the caller's workspace");
      free(ws);
    }
    free(q), free(k), free(v), free(qf), free(kf), free(vf), free(out), free(outf);
  }
}

/* ---- 2c. the serving step: mha_attention_varlen_kv ---- */

/* Four packed sequences (a decode, a chunk, an empty one, a longer chunk)
 * over a bf16 cache paged in blocks of 16, Q and out f16 / bf16, with a
 * rotary: bitwise round(mha_attention_varlen_kv_f32 on the widened q), which
 * gives each sequence its own cache call; every ISA at 1-3 threads. */
static void check_varlen_kv(tester* t, const isa_list* isas) {
  enum { B = 4, H = 4, HKV = 2, TK = 64, D = 16, PAGE = 16, NB = TK / PAGE };
  const int32_t cu[B + 1] = {0, 1, 8, 8, 21}, used[B] = {40, 64, 0, 13};
  const size_t total = 21, nq = total * H * D;
  float* kx = tester_alloc((size_t)(B * HKV * TK * D) * sizeof(float));
  float* vx = tester_alloc((size_t)(B * HKV * TK * D) * sizeof(float));
  tester_fill(t, kx, (size_t)(B * HKV * TK * D));
  tester_fill(t, vx, (size_t)(B * HKV * TK * D));
  uint16_t* kc = tester_alloc((size_t)(B * NB * PAGE * HKV * D) * 2);
  uint16_t* vc = tester_alloc((size_t)(B * NB * PAGE * HKV * D) * 2);
  int32_t table[B * NB];
  for (int i = 0; i < B * NB; i++) table[i] = (i * 7) % (B * NB); /* 7 is prime to 16: a permutation */
  mha_kv_cache c;
  mha_kv_cache_init_paged(&c, MHA_DTYPE_BF16, kc, vc, B * NB, PAGE, HKV, D, D, table, NB);
  const int32_t pos[B] = {0, 0, 0, 0};
  (void)check_ok(t, mha_kv_cache_write(&c, B, HKV, TK, D, D, pos, kx, mha_strides_bhtd(HKV, TK, D), vx,
                                       mha_strides_bhtd(HKV, TK, D)), "fill the cache");
  float *cosb = tester_alloc((size_t)(TK * D / 2) * sizeof(float)), *sinb = tester_alloc((size_t)(TK * D / 2) * sizeof(float));
  (void)check_ok(t, mha_rotary_table_f32(D, TK, 10000.0, 1.0, NULL, 1.0, cosb, sinb), "rotary table");
  mha_rotary r;
  mha_rotary_init(&r, MHA_ROTARY_GPTJ, D, cosb, sinb, TK);
  static const mha_dtype iodts[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16};
  for (int di = 0; di < 2; di++) {
    uint16_t* q16 = tester_alloc(nq * 2);
    float* qf = tester_alloc(nq * sizeof(float));
    uint16_t* out16 = tester_alloc((nq + GUARD) * 2);
    float* outf = tester_alloc(nq * sizeof(float));
    fill16(t, iodts[di], q16, nq);
    widen_all(iodts[di], q16, qf, nq);
    for (int ii = 0; ii < isas->count; ii++) {
      for (int threads = 1; threads <= 3; threads++) {
        tester_context(t, "varlen_kv: %s, isa %s, %d threads", iodts[di] == MHA_DTYPE_F16 ? "f16" : "bf16",
                       mha_isa_name(isas->isa[ii]), threads);
        mha_attention_desc d;
        mha_attention_desc_init(&d, B, H, HKV, 13, TK, D, D);
        d.q = d.out = mha_strides_bthd(H, 13, D); /* packed rows [total, H, D] */
        d.mask.causal = 1;
        d.isa = isas->isa[ii];
        d.num_threads = threads;
        d.rotary = &r;
        tester_poison(outf, nq);
        if (!check_ok(t, mha_attention_varlen_kv_f32(&d, cu, used, qf, &c, outf), "fp32 call")) continue;
        for (size_t i = 0; i < nq + GUARD; i++) out16[i] = poison16();
        if (!check_ok(t, mha_attention_varlen_kv(&d, iodts[di], cu, used, q16, &c, out16), "16-bit call")) continue;
        int same = 1, guard = 1;
        for (size_t i = 0; i < nq; i++) same &= out16[i] == narrow(iodts[di], outf[i]);
        for (size_t i = nq; i < nq + GUARD; i++) guard &= out16[i] == poison16();
        tester_check(t, same, "out bitwise round(mha_attention_varlen_kv_f32 on the widened q)");
        tester_check(t, guard, "nothing written past out");
      }
    }
    free(q16), free(qf), free(out16), free(outf);
  }
  tester_context(t, "varlen_kv: refusals");
  uint16_t q16[21 * H * D], out16[21 * H * D];
  fill16(t, MHA_DTYPE_BF16, q16, 21 * H * D);
  for (int i = 0; i < 21 * H * D; i++) out16[i] = poison16();
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, HKV, 13, TK, D, D);
  d.q = d.out = mha_strides_bthd(H, 13, D);
  tester_stale_error();
  tester_check_failure(t, "dtype int8", mha_attention_varlen_kv(&d, MHA_DTYPE_INT8, cu, used, q16, &c, out16),
                       MHA_STATUS_INVALID_ARGUMENT, "dtype");
  tester_stale_error();
  tester_check_failure(t, "out over q", mha_attention_varlen_kv(&d, MHA_DTYPE_BF16, cu, used, q16, &c, q16 + 8),
                       MHA_STATUS_INVALID_STRIDE, "out");
  int untouched = 1;
  for (int i = 0; i < 21 * H * D; i++) untouched &= out16[i] == poison16();
  tester_check(t, untouched, "a refused call writes nothing");
  free(kx), free(vx), free(kc), free(vc), free(cosb), free(sinb);
}

/* ---- 3. refusals ---- */

static void check_refusals(tester* t) {
  problem16 p;
  problem_make(t, &cases[0], MHA_DTYPE_BF16, &p);
  uint16_t* out = tester_alloc(p.nout * 2);
  const mha_attention_desc* d = &p.d;
  tester_context(t, "refusals");
  int untouched = 1;
  for (size_t i = 0; i < p.nout; i++) out[i] = poison16();
  tester_stale_error();
  tester_check_failure(t, "dtype int8", mha_attention(d, MHA_DTYPE_INT8, p.q, p.k, p.v, out, NULL),
                       MHA_STATUS_INVALID_ARGUMENT, "dtype");
  tester_stale_error();
  tester_check_failure(t, "dtype 9", mha_attention(d, (mha_dtype)9, p.q, p.k, p.v, out, NULL),
                       MHA_STATUS_INVALID_ARGUMENT, "dtype");
  tester_stale_error();
  tester_check_failure(t, "q NULL", mha_attention(d, MHA_DTYPE_BF16, NULL, p.k, p.v, out, NULL),
                       MHA_STATUS_NULL_POINTER, "q");
  tester_stale_error();
  tester_check_failure(t, "out NULL", mha_attention(d, MHA_DTYPE_F16, p.q, p.k, p.v, NULL, NULL),
                       MHA_STATUS_NULL_POINTER, "out");
  tester_stale_error();
  tester_check_failure(t, "desc NULL", mha_attention(NULL, MHA_DTYPE_F16, p.q, p.k, p.v, out, NULL),
                       MHA_STATUS_NULL_POINTER, "desc");
  /* a rotary: refused as by the core */
  mha_attention_desc dr = p.d;
  mha_rotary rot;
  float table[4] = {1, 0, 0, 1};
  mha_rotary_init(&rot, MHA_ROTARY_NEOX, 2, table, table, 2);
  dr.rotary = &rot;
  tester_stale_error();
  tester_check_failure(t, "rotary", mha_attention(&dr, MHA_DTYPE_BF16, p.q, p.k, p.v, out, NULL),
                       MHA_STATUS_INVALID_ARGUMENT, "rotary");
  for (size_t i = 0; i < p.nout; i++) untouched &= out[i] == poison16();
  tester_check(t, untouched, "a refused call writes nothing");
  /* out over the second half of q: refused; out right after q (2-byte
   * elements: they touch but do not overlap) accepted */
  uint16_t* both = tester_alloc((p.nq + p.nout) * 2);
  memcpy(both, p.q, p.nq * 2);
  tester_stale_error();
  tester_check_failure(t, "out over q", mha_attention(d, MHA_DTYPE_BF16, both, p.k, p.v, both + p.nq / 2, NULL),
                       MHA_STATUS_INVALID_STRIDE, "out");
  check_ok(t, mha_attention(d, MHA_DTYPE_BF16, both, p.k, p.v, both + p.nq, NULL), "out right after q");
  /* MHA_DTYPE_F32 is the fp32 core */
  float* of = tester_alloc(p.nout * sizeof(float));
  float* og = tester_alloc(p.nout * sizeof(float));
  if (check_ok(t, mha_attention_f32(d, p.qf, p.kf, p.vf, of, NULL), "fp32 core") &&
      check_ok(t, mha_attention(d, MHA_DTYPE_F32, p.qf, p.kf, p.vf, og, NULL), "mha_attention f32")) {
    tester_check(t, memcmp(of, og, p.nout * sizeof(float)) == 0, "MHA_DTYPE_F32: bitwise mha_attention_f32");
  }
  free(both), free(of), free(og), free(out);
  problem_free(&p);
}

/* ---- the conversions the checks use, on values whose rounding is known ---- */

static void check_helpers(tester* t) {
  tester_context(t, "test helpers");
  int ok = 1;
  ok &= narrow(MHA_DTYPE_F16, 1.0f) == 0x3c00 && narrow(MHA_DTYPE_F16, 65504.0f) == 0x7bff;
  ok &= narrow(MHA_DTYPE_F16, 65520.0f) == 0x7c00 && narrow(MHA_DTYPE_F16, 0x1p-24f) == 0x0001;
  ok &= narrow(MHA_DTYPE_F16, 1.0f + 0x1p-11f) == 0x3c00;              /* tie to even (down) */
  ok &= narrow(MHA_DTYPE_F16, 1.0f + 3 * 0x1p-11f) == 0x3c02;          /* tie to even (up) */
  ok &= narrow(MHA_DTYPE_F16, 2047.5f * 0x1p-10f) == 0x4000;           /* carries into the exponent */
  ok &= narrow(MHA_DTYPE_BF16, 1.0f + 0x1p-8f) == 0x3f80 && narrow(MHA_DTYPE_BF16, 1.0f + 3 * 0x1p-8f) == 0x3f82;
  ok &= widen(MHA_DTYPE_F16, 0x0001) == 0x1p-24f && widen(MHA_DTYPE_F16, 0xc000) == -2.0f;
  for (uint32_t h = 0; h < 0x7c00; h++) ok &= narrow(MHA_DTYPE_F16, widen(MHA_DTYPE_F16, (uint16_t)h)) == h;
  tester_check(t, ok, "the f16 / bf16 rounding and widening the checks use, on known values");
}

int main(void) {
  tester t;
  tester_init(&t, "attention-16-test");
  const isa_list isas = tester_available_isas(&t);
  check_helpers(&t);
  check_bits(&t, &isas);
  check_oracle(&t);
  check_kv(&t, &isas);
  check_varlen(&t, &isas);
  check_varlen_kv(&t, &isas);
  check_refusals(&t);
  return tester_finish(&t);
}
