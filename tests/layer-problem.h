/*
 * One layer test problem: random weights and inputs for a layer case, the
 * matching mha_layer_desc / mha_layer_args and oracle_layer, and the
 * oracle's answer with its derived tolerance.
 */
#ifndef MHA_TESTS_LAYER_PROBLEM_H
#define MHA_TESTS_LAYER_PROBLEM_H

#include <stdint.h>

#include "mha.h"
#include "oracle.h"
#include "tester.h"

typedef struct layer_case {
  int64_t B, Tq, Tk;      /* Tk: key rows when cross; for self-attention it is passed
                             to the library anyway, which must ignore it */
  int64_t d_model, d_kv;  /* passed as is: d_kv 0 means d_model */
  int64_t H, Hkv, D, Dv;  /* passed as is: 0 means the documented default */
  mha_weight_layout layout;
  int packed;             /* in_proj_weight (and in_proj_bias with biases) */
  int biases;             /* a bias on every projection */
  int no_w_o;             /* w_o NULL: the heads, concatenated */
  int cross;              /* x_k given */
  int separate_v;         /* x_v given too */
  int causal, kv_len;     /* masks, as in the core */
  int additive;           /* a full [B, H, Tq, Tk] additive mask with some -inf */
  int weights;            /* ask for the attention weights */
  int threads;
  float scale;            /* 0: default */
} layer_case;

typedef struct layer_problem {
  layer_case c;
  /* resolved sizes */
  int64_t d_kv, Hkv, D, Dv, Tk, width;
  float *w_q, *w_k, *w_v, *w_o, *in_proj_weight;
  float *b_q, *b_k, *b_v, *b_o, *in_proj_bias;
  float *x_q, *x_k, *x_v, *additive;
  int32_t* kv_len;
  float *out, *weights;
  size_t out_size, weights_size; /* floats */
  mha_layer_desc desc;
  mha_layer_args args;
  oracle_layer oracle;
} layer_problem;

void layer_case_describe(tester* t, const layer_case* c, const char* what);

/* Allocates and fills everything; out and weights are poisoned. */
void layer_problem_build(tester* t, const layer_case* c, layer_problem* p);
void layer_problem_free(layer_problem* p);

/* x[0..n) rounded to dt (f16 or bf16, to nearest even) in place, so that an
 * oracle reads exactly the 16-bit values; returns their bits (tester_alloc),
 * or NULL for a NULL x. */
uint16_t* layer_round16(mha_dtype dt, float* x, size_t n);

/* want/tol [out_size], want_w/tol_w [weights_size] (NULL without weights). */
void layer_problem_expect(const layer_problem* p, double* want, double* tol, double* want_w,
                          double* tol_w);

#endif
