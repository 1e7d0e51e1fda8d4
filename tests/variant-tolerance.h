/*
 * Derived tolerances of the attention variants (alignment, window, ALiBi,
 * soft-cap, sinks) and of the lse output: tolerance.c's bounds, extended
 * term by term for the score modifiers and the sink (the derivation is in
 * variant-tolerance.c). Used by variants-test, merge-test and
 * layer-variants-test; the plain tests keep tolerance.c.
 */
#ifndef MHA_TESTS_VARIANT_TOLERANCE_H
#define MHA_TESTS_VARIANT_TOLERANCE_H

#include "oracle.h"
#include "tolerance.h"

/* out_tol [B, H, Tq, Dv]; weights_tol [B, H, Tq, Tk] or NULL (then weights
 * may be NULL); lse_tol [B, H, Tq] or NULL (then lse may be NULL), from the
 * oracle's weights and lse of the problem. err may be NULL (exact inputs).
 * Rows with no visible key get 0 everywhere (exact zeros, and an lse that is
 * exactly the sink or -inf); so do hidden keys' weights and non-finite lse. */
void variant_tolerance_attention(const oracle_attention_problem* p,
                                 const tolerance_input_errors* err, const double* weights,
                                 const double* lse, double* out_tol, double* weights_tol,
                                 double* lse_tol);

/* The oracle's out, weights and lse of a problem with their tolerances
 * (variant_tolerance_attention), in buffers from tester_alloc: n_out, n_w
 * (0: no weights, w and w_tol NULL) and n_lse doubles. err may be NULL. */
typedef struct variant_expected {
  double *out, *out_tol, *w, *w_tol, *lse, *lse_tol;
} variant_expected;

variant_expected variant_expected_compute(const oracle_attention_problem* p,
                                          const tolerance_input_errors* err, size_t n_out,
                                          size_t n_w, size_t n_lse);
void variant_expected_free(variant_expected* e);

/* The same for a layer forward traced by oracle_layer_forward_variants():
 * out_tol [B, Tq, width], weights_tol [B, H, Tq, Tk] or NULL. */
void variant_tolerance_layer(const oracle_layer* L, const oracle_layer_trace* trace,
                             const double* weights, double* out_tol, double* weights_tol);

#endif
