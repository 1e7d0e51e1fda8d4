/*
 * Derived tolerances: for each output element, a bound on the error of any
 * correct float evaluation, computed from the operands' magnitudes (not a
 * picked constant). The derivation is in tolerance.c.
 */
#ifndef MHA_TESTS_TOLERANCE_H
#define MHA_TESTS_TOLERANCE_H

#include "oracle.h"

/* FLT_EPSILON = 2^-23, twice the unit roundoff u of float. */
#define TOLERANCE_EPS 0x1.0p-23

/* Per-element absolute errors already present in the inputs of a core
 * problem (the layer's projections); NULL members mean exact inputs. Same
 * strides as the problem's q, k, v. */
typedef struct tolerance_input_errors {
  const double *q, *k, *v;
} tolerance_input_errors;

/* calloc of count doubles (at least one); reports and exits on failure. */
double* tolerance_alloc(size_t count);

/* err[b, h, t, c] through the view's strides, or 0 when err is NULL (exact). */
double tolerance_at(const double* err, oracle_strides s, int64_t b, int64_t h, int64_t t, int64_t c);

/* out_tol [B, H, Tq, Dv]; weights_tol [B, H, Tq, Tk] (or NULL) from the
 * oracle's weights (needed when weights_tol is non-NULL). err may be NULL.
 * Rows without a visible key get 0: they must be exact zeros. */
void tolerance_attention(const oracle_attention_problem* p, const tolerance_input_errors* err,
                         const double* weights, double* out_tol, double* weights_tol);

/* The bound on one visible logit's magnitude, scale·Σ(|q| + δq)(|k| + δk),
 * and on the error the inputs' errors (eq, ek, or NULL) put in it, for key j
 * of query row (b, h, i) with K/V head g. */
void tolerance_logit_bound(const oracle_attention_problem* p, const double* eq, const double* ek,
                           int64_t b, int64_t h, int64_t g, int64_t i, int64_t j, double* mag,
                           double* pert);

/* The same for a layer forward traced by oracle_layer_forward():
 * out_tol [B, Tq, width], weights_tol [B, H, Tq, Tk] or NULL. */
void tolerance_layer(const oracle_layer* L, const oracle_layer_trace* trace,
                     const double* weights, double* out_tol, double* weights_tol);

/* A core's tolerance function, as tolerance_attention. */
typedef void (*tolerance_core_fn)(const oracle_attention_problem* p,
                                  const tolerance_input_errors* err, const double* weights,
                                  double* out_tol, double* weights_tol);

/* tolerance_layer around any core tolerance (the variants' has its own):
 * the projections' rounding into the core, then the output projection's. */
void tolerance_layer_with(const oracle_layer* L, const oracle_layer_trace* trace,
                          const double* weights, tolerance_core_fn core, double* out_tol,
                          double* weights_tol);

#endif
