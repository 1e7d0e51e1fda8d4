/*
 * One attention-core test problem: its parameters, its input buffers laid
 * out as asked (strides written out by hand, not from the library's
 * helpers), the matching mha_attention_desc and oracle problem.
 */
#ifndef MHA_TESTS_ATTENTION_PROBLEM_H
#define MHA_TESTS_ATTENTION_PROBLEM_H

#include <stdint.h>

#include "mha.h"
#include "oracle.h"
#include "tester.h"

/* How a [B, heads, T, width] tensor lies in memory. */
typedef enum layout_kind {
  LAYOUT_BHTD,        /* contiguous [B, H, T, W] */
  LAYOUT_BTHD,        /* contiguous [B, T, H, W]: heads are column blocks of rows */
  LAYOUT_BHTD_PADDED, /* [B, H, T, W] with gaps after each row, head and batch */
  LAYOUT_BTHD_PADDED, /* [B, T, H, W] with gaps after each row and batch */
  LAYOUT_UNIT_ZERO,   /* contiguous BHTD, stride 0 on every dimension of size 1 */
  LAYOUT_COUNT
} layout_kind;

/* The additive mask and its strides. */
typedef enum additive_kind {
  ADDITIVE_NONE,
  ADDITIVE_BROADCAST,   /* {0, 0, Tk}: one [Tq, Tk] mask for all batches and heads */
  ADDITIVE_FULL,        /* {H·Tq·Tk, Tq·Tk, Tk} */
  ADDITIVE_PADDED,      /* full, with gaps after rows, heads and batches */
  ADDITIVE_PER_BATCH,   /* {Tq·Tk, 0, Tk}: heads broadcast */
  ADDITIVE_KEY_PADDING, /* {Tk, 0, 0}: one key row per batch, broadcast over heads and rows */
  ADDITIVE_ONE_ROW,     /* {0, 0, 0}: one key row for everything */
  ADDITIVE_COUNT
} additive_kind;

/* Where the logits land. */
typedef enum logits_kind {
  LOGITS_RANDOM, /* q, k uniform in [-1, 1) */
  LOGITS_HIGH,   /* scale·q·k in about [90, 100): overflows exp without the max */
  LOGITS_LOW,    /* scale·q·k in about [-100, -90): underflows exp without the max */
  LOGITS_COUNT
} logits_kind;

typedef struct attention_case {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  layout_kind layout_q, layout_k, layout_v, layout_out;
  int causal;            /* 0 or 1 */
  int kv_len;            /* 0: none; 1: random lengths in [0, Tk], one of them 0 when B > 1 */
  additive_kind additive;
  int minus_inf;         /* additive mask: 0 finite; 1 some -inf; 2 and one all -inf row */
  int weights;           /* also ask for the weights */
  int threads;           /* desc.num_threads */
  float scale;           /* 0: the default 1/sqrt(D) */
  logits_kind logits;
  int nan_q;             /* a NaN in one query row */
} attention_case;

/* Buffers and descriptors of a case. */
typedef struct attention_problem {
  attention_case c;
  mha_attention_desc desc;   /* ready to pass to mha_attention_f32 */
  float *q, *k, *v, *out;    /* out sized to its strided extent */
  float* weights;            /* [B, H, Tq, Tk] or NULL */
  float* additive;           /* or NULL */
  int32_t* kv_len;           /* or NULL */
  size_t q_size, k_size, v_size, out_size, additive_size; /* floats */
  unsigned char* out_covered; /* out_size flags: 1 where the view has an element */
  /* the oracle's view: widened contiguous copies */
  double *qd, *kd, *vd;
  oracle_attention_problem oracle;
} attention_problem;

const char* layout_name(layout_kind l);
const char* additive_name(additive_kind a);

/* The strides of a layout, written out from the definitions. */
mha_strides layout_strides(layout_kind l, int64_t B, int64_t H, int64_t T, int64_t W);

/* Largest offset + 1 of a view. */
int64_t view_extent(int64_t n0, int64_t n1, int64_t n2, int64_t W, mha_strides s);

/* Estimated cost: B·H·Tq·Tk·(D + Dv) multiply-adds. */
double attention_case_cost(const attention_case* c);

/* Describes the case in t's context. */
void attention_case_describe(tester* t, const attention_case* c, const char* isa);

/* Allocates and fills every buffer of the case with random values from t. */
void attention_problem_build(tester* t, const attention_case* c, attention_problem* p);
void attention_problem_free(attention_problem* p);

/* Poisons out (all of it, gaps included) and weights. */
void attention_problem_poison(attention_problem* p);

/* dst [B, H, Tq, Dv] ← the strided out view. */
void attention_problem_gather_out(const attention_problem* p, float* dst);

/* Number of out elements outside the view that do not hold the poison. */
size_t attention_problem_gap_writes(const attention_problem* p);

#endif
