/*
 * Error bounds of the float computation of the attention variants, per
 * output element. Notation and steps 1-4 as in tolerance.c (u = eps/2 the
 * unit roundoff, mag_i = max_j scale·Σ_d |q_id||k_jd| and add_i = max_j
 * |add_ij| over the visible keys j of row i); what the variants add:
 *
 * 1. Logits. The pipeline is
 *      s = fl(scale·fl(q·k));  t = fl(cap·tanh(fl(s / cap)));
 *      b = fma(slope, δ, t) with δ = fl(fl(j0 − i') + lane);  x = fl(b + add) − m
 *    - soft-cap: tanh' = sech² <= 1, so the dot product's error passes
 *      through unchanged or smaller; the division by cap adds u·|s|·sech² <=
 *      u·mag, tanh itself 3.5 ulp at most (SLEEF's u35 kernels, which the
 *      SIMD sets use: 3x faster than u10; glibc's tanhf 2) <= 3.5·eps·mag,
 *      the product by cap u·|t|: 4.5·eps·mag, counted as 5;
 *    - ALiBi: with β_i = max_j |slope·(i' − j)|, δ is exact below 2^24 and
 *      off by 2u·|δ| above, the fma rounds once (u·(|t| + β)), and β enters
 *      the mask add, the subtraction of m and the online rescaling wherever
 *      add_i does in tolerance.c (3 eps per unit of magnitude): 5·eps·β_i;
 *    - a sink σ_h (finite) is one more logit, exact, but the subtraction
 *      σ − m and every x − m (m may now be σ) round at u·(|x| + |σ|):
 *      2·eps·|σ|.
 *    So e_s = pert + eps·((D + 5 + 4·[cap])·mag + 3·add + 5·β + 2·|σ|).
 * 2. Probabilities: as tolerance.c, with the sink as one more term of l:
 *      r_i = expm1(2·e_s) + 2·(Tk + 5)·eps;  weights p_j·r_i (+ FLT_MIN).
 * 3. Output: |Δout_ic| <= max_j |v_jc|·r_i + max_j δv_jc; Σ_j p_j <= 1 with
 *    a sink, so the bound stands. A row with no visible key is exact zeros.
 * 4. lse = m + log(l). Logits off by e_s move the log-sum-exp by e_s at
 *    most (its gradient is the probability vector); l's relative error
 *    (inside r_i) moves log(l) by r_i; the log and the add round at
 *    u·|log l| + u·|lse|, where 0 <= log l = lse − m <= log(Tk + 2) (at most
 *    Tk keys and the sink, each term <= 1). So
 *      lse_tol = e_s + r_i + 2·eps·(|lse| + log(Tk + 2)) + FLT_MIN
 *    (4 times the rounding terms, for the merge of decode key ranges). A row
 *    with no visible key has lse exactly σ (l = 1, log 1 = 0) or -inf:
 *    tolerance 0.
 * 5. The layer: tolerance.c's step 4 with these head bounds.
 */
#include "variant-tolerance.h"

#include "tester.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void variant_tolerance_attention(const oracle_attention_problem* p,
                                 const tolerance_input_errors* err, const double* weights,
                                 const double* lse, double* out_tol, double* weights_tol,
                                 double* lse_tol) {
  const double eps = TOLERANCE_EPS;
  const double* eq = err != NULL ? err->q : NULL;
  const double* ek = err != NULL ? err->k : NULL;
  const double* ev = err != NULL ? err->v : NULL;
  const double cap_terms = p->var.softcap > 0.0 ? 5.0 : 0.0;
  double* vmax = tolerance_alloc((size_t)p->Dv);
  double* evmax = tolerance_alloc((size_t)p->Dv);
  for (int64_t b = 0; b < p->B; b++) {
    for (int64_t h = 0; h < p->H; h++) {
      const int64_t g = oracle_kv_head(p, h);
      const double sink = oracle_sink(p, h);
      const double slope = p->var.alibi_slopes != NULL ? fabs((double)p->var.alibi_slopes[h]) : 0.0;
      for (int64_t i = 0; i < p->Tq; i++) {
        const int64_t ip = oracle_aligned_position(p, b, i);
        double mag = 0.0, pert = 0.0, add = 0.0, beta = 0.0;
        int any = 0;
        for (int64_t c = 0; c < p->Dv; c++) vmax[c] = evmax[c] = 0.0;
        for (int64_t j = 0; j < p->Tk; j++) {
          if (!oracle_key_visible(p, b, h, i, j)) continue;
          any = 1;
          double m, d_err;
          tolerance_logit_bound(p, eq, ek, b, h, g, i, j, &m, &d_err);
          if (m > mag) mag = m;
          if (d_err > pert) pert = d_err;
          const double a = fabs(oracle_mask_value(p, b, h, i, j));
          if (a > add) add = a;
          const double bj = slope * fabs((double)(ip - j));
          if (bj > beta) beta = bj;
          const double* vj =
              p->v + b * p->v_strides.batch + g * p->v_strides.head + j * p->v_strides.row;
          for (int64_t c = 0; c < p->Dv; c++) {
            const double dv = tolerance_at(ev, p->v_strides, b, g, j, c);
            if (fabs(vj[c]) + dv > vmax[c]) vmax[c] = fabs(vj[c]) + dv;
            if (dv > evmax[c]) evmax[c] = dv;
          }
        }
        const double sig = isfinite(sink) ? fabs(sink) : 0.0;
        const double e_s = pert + eps * (((double)p->D + 5.0 + cap_terms) * mag + 3.0 * add +
                                         5.0 * beta + 2.0 * sig);
        const double r = expm1(2.0 * e_s) + 2.0 * (double)(p->Tk + 5) * eps;
        const size_t row = (size_t)((b * p->H + h) * p->Tq + i);
        double* ot = out_tol + row * (size_t)p->Dv;
        for (int64_t c = 0; c < p->Dv; c++) ot[c] = any ? vmax[c] * r + evmax[c] + FLT_MIN : 0.0;
        if (lse_tol != NULL) {
          const double l = lse != NULL ? lse[row] : 0.0;
          lse_tol[row] = any && isfinite(l)
                             ? e_s + r + 2.0 * eps * (fabs(l) + log((double)p->Tk + 2.0)) + FLT_MIN
                             : 0.0;
        }
        if (weights_tol == NULL) continue;
        const size_t wrow = row * (size_t)p->Tk;
        for (int64_t j = 0; j < p->Tk; j++) {
          const int vis = oracle_key_visible(p, b, h, i, j);
          weights_tol[wrow + (size_t)j] = vis ? fabs(weights[wrow + (size_t)j]) * r + FLT_MIN : 0.0;
        }
      }
    }
  }
  free(evmax);
  free(vmax);
}

/* variant_tolerance_attention in tolerance_layer_with's shape. */
static void vt_core(const oracle_attention_problem* p, const tolerance_input_errors* in,
                    const double* weights, double* out_tol, double* weights_tol) {
  variant_tolerance_attention(p, in, weights, NULL, out_tol, weights_tol, NULL);
}

void variant_tolerance_layer(const oracle_layer* L, const oracle_layer_trace* tr,
                             const double* weights, double* out_tol, double* weights_tol) {
  tolerance_layer_with(L, tr, weights, vt_core, out_tol, weights_tol);
}

variant_expected variant_expected_compute(const oracle_attention_problem* p,
                                          const tolerance_input_errors* err, size_t n_out,
                                          size_t n_w, size_t n_lse) {
  variant_expected e;
  e.out = tester_alloc(n_out * sizeof(double));
  e.out_tol = tester_alloc(n_out * sizeof(double));
  e.w = n_w > 0 ? tester_alloc(n_w * sizeof(double)) : NULL;
  e.w_tol = n_w > 0 ? tester_alloc(n_w * sizeof(double)) : NULL;
  e.lse = tester_alloc(n_lse * sizeof(double));
  e.lse_tol = tester_alloc(n_lse * sizeof(double));
  oracle_attention_lse(p, e.out, e.w, e.lse);
  variant_tolerance_attention(p, err, e.w, e.lse, e.out_tol, e.w_tol, e.lse_tol);
  return e;
}

void variant_expected_free(variant_expected* e) {
  free(e->out);
  free(e->out_tol);
  free(e->w);
  free(e->w_tol);
  free(e->lse);
  free(e->lse_tol);
}
