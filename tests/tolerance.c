/*
 * Derived error bounds of the float computations, per output element.
 *
 * Notation: u = eps/2 = 2^-24 is float's unit roundoff, and a sum of n
 * products evaluated in float in any order has an error of at most
 * gamma(n)·Σ|a||b| with gamma(n) = n·u/(1 − n·u) <= n·eps for the sizes here
 * (the factor 2 between n·u and n·eps covers the 1/(1 − n·u) and FMA-or-not
 * differences). |·| below are magnitudes of the exact (oracle) operands.
 *
 * 1. Logits. For row i and visible key j the float pipeline evaluates
 *      x_ij = fl(fl(scale · fl(q_i·k_j)) + add_ij) − m_i
 *    (m_i the row max, or the running max of the online softmax). With
 *    mag_i = max_j scale·Σ_d |q_id||k_jd| and add_i = max_j |add_ij|:
 *      dot products       D·u·mag_i   for x_ij, and the same for m_i
 *      scale rounded      u·|x_ij − m_i| <= 2u·mag_i (a float 1/sqrt(D))
 *      scale multiply     u·mag_i     twice
 *      mask add           u·(mag_i + add_i) twice
 *      the subtraction    u·|x_ij| <= 2u·(mag_i + add_i)
 *      online rescaling   the exp(m_old − m_new) arguments telescope to
 *                         at most 2u·(mag_i + add_i)
 *    so |Δx_ij| <= e_s = eps·((D + 5)·mag_i + 3·add_i).
 *    Errors δq, δk already present in q and k (the layer's projections) add
 *      scale·Σ_d (δq_id·(|k_jd| + δk_jd) + |q_id|·δk_jd)
 *    to e_s (maximized over the visible j), and mag_i is then taken over
 *    |q| + δq and |k| + δk.
 * 2. Probabilities. A softmax of logits each off by at most e_s gives
 *      p'_j = p_j · exp(Δ_j) / Σ_k p_k exp(Δ_k),  |Δ| <= e_s,
 *    so |p'_j − p_j| <= p_j·expm1(2·e_s). The float evaluation adds: exp
 *    (<= 4 eps, SIMD polynomial exps are ~1 ulp), the sum l of at most Tk
 *    terms (Tk·u), the block rescales of l and of the output (at most Tk
 *    blocks, Tk·u), the division (u). Collected: a relative error
 *      r_i = expm1(2·e_s) + 2·(Tk + 4)·eps
 *    on each p_j; the weights output gets p_j·r_i (+ FLT_MIN for
 *    subnormal p_j).
 * 3. Output. out_ic = Σ_j p_j v_jc, and Σ_j p_j = 1, so
 *      |Δout_ic| <= max_j |v_jc|·r_i + max_j δv_jc
 *    over the visible j (the P·V accumulation error Tk·u·Σ p|v| is inside
 *    r_i). A row with no visible key must be exact zeros: tolerance 0.
 * 4. The layer. Each projection Y = X·W + b of inner size K is off by
 *      δY = gamma(K + 1)·(Σ_k |x||w| + |b|) <= (K + 2)·eps·Y_abs
 *    (Y_abs is what the oracle returns beside Y); these δq, δk, δv enter
 *    steps 1 and 3. The output projection of the concatenated heads A (inner
 *    size H·Dv, per-element error δA from step 3) is off by
 *      Σ_k δA_k·|W_kc| + (H·Dv + 2)·eps·(Σ_k (|A_k| + δA_k)·|W_kc| + |b_c|).
 *    Without w_o the output is A, off by δA.
 * All bounds are first order; the second-order terms are far below the
 * factor-2 slack of gamma(n) <= n·eps.
 */
#include "tolerance.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double* tolerance_alloc(size_t count) {
  double* p = calloc(count == 0 ? 1 : count, sizeof(double));
  if (p == NULL) {
    fprintf(stderr, "tolerance: cannot allocate %zu doubles\n", count);
    exit(2);
  }
  return p;
}

double tolerance_at(const double* err, oracle_strides s, int64_t b, int64_t h, int64_t t,
                    int64_t c) {
  return err != NULL ? err[b * s.batch + h * s.head + t * s.row + c] : 0.0;
}

/* The bound on one visible logit's magnitude, scale·Σ(|q| + δq)(|k| + δk),
 * and on the error the inputs' errors put in it, for key j of query row
 * (b, h, i) with K/V head g (eq, ek: the inputs' errors, or NULL). */
void tolerance_logit_bound(const oracle_attention_problem* p, const double* eq, const double* ek,
                           int64_t b, int64_t h, int64_t g, int64_t i, int64_t j, double* mag,
                           double* pert) {
  const double* qi = p->q + b * p->q_strides.batch + h * p->q_strides.head + i * p->q_strides.row;
  const double* kj = p->k + b * p->k_strides.batch + g * p->k_strides.head + j * p->k_strides.row;
  double m = 0.0, d_err = 0.0;
  for (int64_t d = 0; d < p->D; d++) {
    const double dq = tolerance_at(eq, p->q_strides, b, h, i, d);
    const double dk = tolerance_at(ek, p->k_strides, b, g, j, d);
    m += (fabs(qi[d]) + dq) * (fabs(kj[d]) + dk);
    d_err += dq * (fabs(kj[d]) + dk) + fabs(qi[d]) * dk;
  }
  *mag = m * fabs(p->scale);
  *pert = d_err * fabs(p->scale);
}

void tolerance_attention(const oracle_attention_problem* p, const tolerance_input_errors* err,
                         const double* weights, double* out_tol, double* weights_tol) {
  const double eps = TOLERANCE_EPS;
  const double* eq = err != NULL ? err->q : NULL;
  const double* ek = err != NULL ? err->k : NULL;
  const double* ev = err != NULL ? err->v : NULL;
  double* vmax = tolerance_alloc((size_t)p->Dv);
  double* evmax = tolerance_alloc((size_t)p->Dv);
  for (int64_t b = 0; b < p->B; b++) {
    for (int64_t h = 0; h < p->H; h++) {
      const int64_t g = oracle_kv_head(p, h);
      for (int64_t i = 0; i < p->Tq; i++) {
        double mag = 0.0, pert = 0.0, add = 0.0;
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
          const double* vj =
              p->v + b * p->v_strides.batch + g * p->v_strides.head + j * p->v_strides.row;
          for (int64_t c = 0; c < p->Dv; c++) {
            const double dv = tolerance_at(ev, p->v_strides, b, g, j, c);
            if (fabs(vj[c]) + dv > vmax[c]) vmax[c] = fabs(vj[c]) + dv;
            if (dv > evmax[c]) evmax[c] = dv;
          }
        }
        const double e_s = pert + eps * ((double)(p->D + 5) * mag + 3.0 * add);
        const double r = expm1(2.0 * e_s) + 2.0 * (double)(p->Tk + 4) * eps;
        double* ot = out_tol + ((b * p->H + h) * p->Tq + i) * p->Dv;
        for (int64_t c = 0; c < p->Dv; c++) ot[c] = any ? vmax[c] * r + evmax[c] + FLT_MIN : 0.0;
        if (weights_tol == NULL) continue;
        const size_t row = (size_t)(((b * p->H + h) * p->Tq + i) * p->Tk);
        for (int64_t j = 0; j < p->Tk; j++) {
          const int vis = oracle_key_visible(p, b, h, i, j);
          weights_tol[row + (size_t)j] = vis ? fabs(weights[row + (size_t)j]) * r + FLT_MIN : 0.0;
        }
      }
    }
  }
  free(evmax);
  free(vmax);
}

/* e[i] = (K + 2)·eps·mag[i] for n elements: a projection's rounding bound. */
static double* tolerance_projection(size_t n, int64_t K, const double* mag) {
  double* e = tolerance_alloc(n);
  for (size_t i = 0; i < n; i++) e[i] = (double)(K + 2) * TOLERANCE_EPS * mag[i];
  return e;
}

void tolerance_layer(const oracle_layer* L, const oracle_layer_trace* tr, const double* weights,
                     double* out_tol, double* weights_tol) {
  tolerance_layer_with(L, tr, weights, tolerance_attention, out_tol, weights_tol);
}

void tolerance_layer_with(const oracle_layer* L, const oracle_layer_trace* tr,
                          const double* weights, tolerance_core_fn core, double* out_tol,
                          double* weights_tol) {
  const oracle_attention_problem* p = &tr->attention;
  const int64_t B = tr->B, Tq = tr->Tq, Tk = tr->Tk, H = L->H, Hkv = L->Hkv;
  const int64_t D = L->D, Dv = L->Dv;
  const int64_t dkv = tr->d_kv;
  double* eq = tolerance_projection((size_t)(B * Tq * H * D), L->d_model, tr->q_abs);
  double* ek = tolerance_projection((size_t)(B * Tk * Hkv * D), dkv, tr->k_abs);
  double* ev = tolerance_projection((size_t)(B * Tk * Hkv * Dv), dkv, tr->v_abs);
  const tolerance_input_errors in = {eq, ek, ev};
  double* heads_tol = tolerance_alloc((size_t)(B * H * Tq * Dv));
  core(p, &in, weights, heads_tol, weights_tol);

  /* δA[b, t, h·Dv + c] = heads_tol[b, h, t, c] */
  const int64_t HDv = H * Dv;
  double* ea = tolerance_alloc((size_t)(B * Tq * HDv));
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t t = 0; t < Tq; t++) {
        for (int64_t c = 0; c < Dv; c++) {
          ea[(b * Tq + t) * HDv + h * Dv + c] = heads_tol[((b * H + h) * Tq + t) * Dv + c];
        }
      }
    }
  }
  if (L->w_o == NULL) {
    memcpy(out_tol, ea, (size_t)(B * Tq * HDv) * sizeof(double));
  } else {
    const int64_t M = B * Tq, N = L->d_model;
    double* grown = tolerance_alloc((size_t)(M * N)); /* Σ δA·|W| */
    double* mag = tolerance_alloc((size_t)(M * N));   /* Σ (|A| + δA)·|W| + |b| */
    double* a_plus = tolerance_alloc((size_t)(M * HDv));
    double* scratch = tolerance_alloc((size_t)(M * N));
    for (int64_t i = 0; i < M * HDv; i++) a_plus[i] = fabs(tr->attn[i]) + ea[i];
    oracle_linear(M, HDv, N, ea, L->w_o, L->out_in, NULL, scratch, grown);
    oracle_linear(M, HDv, N, a_plus, L->w_o, L->out_in, L->b_o, scratch, mag);
    for (int64_t i = 0; i < M * N; i++) {
      out_tol[i] = grown[i] + (double)(HDv + 2) * TOLERANCE_EPS * mag[i] + FLT_MIN;
    }
    free(scratch);
    free(a_plus);
    free(mag);
    free(grown);
  }
  free(ea);
  free(heads_tol);
  free(ev);
  free(ek);
  free(eq);
}
