/*
 * The naive oracle of the mha tests. It shares no code with the library and
 * includes none of its headers: it is written from the documentation in
 * include/mha.h alone, accumulates in double and uses the textbook 3-pass
 * softmax (max, sum of exp, normalize).
 */
#ifndef MHA_TESTS_ORACLE_H
#define MHA_TESTS_ORACLE_H

#include <stddef.h>
#include <stdint.h>

/* Element (b, h, t, c) of a 4-D view is at base[b·batch + h·head + t·row + c]. */
typedef struct oracle_strides {
  int64_t batch, head, row;
} oracle_strides;

/* The attention variants of mha_mask beyond causal, kv_len and the additive
 * mask (include/mha.h, "Masks"). All zero / NULL, as a memset leaves them:
 * bottom-right alignment, no window, no ALiBi, no soft-cap, no sinks. */
typedef struct oracle_variants {
  /* Where query row i sits among the keys, its aligned position i':
   *   0 bottom-right  i' = i + Tk − Tq
   *   1 top-left      i' = i
   *   2 offset        i' = i + offset
   *   3 kv end        i' = i + kv_len[b] − Tq (Tk when kv_len is NULL)
   * (the values of mha_align; the oracle includes no header of the library) */
  int align;
  int64_t offset;
  int window;                 /* 1: key j visible iff i' − left <= j <= i' + right */
  int64_t window_left, window_right;
  const float* alibi_slopes;  /* [H] or NULL: the logit gets − slope_h·(i' − j) */
  double softcap;             /* 0: off; else s ← cap·tanh(s / cap) before ALiBi and the mask */
  const float* sinks;         /* [H] or NULL: a logit in every row's denominator, no value row */
} oracle_variants;

/* One attention problem, inputs in double (the core test widens its float
 * inputs, the layer oracle passes its exact projections). */
typedef struct oracle_attention_problem {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  const double* q; /* [B, H,   Tq, D ] through q_strides */
  const double* k; /* [B, Hkv, Tk, D ] through k_strides */
  const double* v; /* [B, Hkv, Tk, Dv] through v_strides */
  oracle_strides q_strides, k_strides, v_strides;
  double scale;    /* already resolved: the caller turns 0 into 1/sqrt(D) */
  int causal;      /* key j visible to row i iff j <= i' (bottom-right by default: i + Tk - Tq) */
  const int32_t* kv_len;   /* [B] or NULL */
  const float* additive;   /* or NULL */
  oracle_strides additive_strides;
  oracle_variants var;     /* alignment, window, ALiBi, soft-cap, sinks (zero: none) */
} oracle_attention_problem;

/* The aligned position i' of query row i in batch entry b (var.align). */
int64_t oracle_aligned_position(const oracle_attention_problem* p, int64_t b, int64_t i);

/* 1 if key j is visible to query row i of (b, h): causal, the window,
 * kv_len and an additive entry other than -inf all let it through. */
int oracle_key_visible(const oracle_attention_problem* p, int64_t b, int64_t h, int64_t i,
                       int64_t j);

/* The logit of a visible key, in double, in the documented order:
 *   s = scale·q·k;  s ← cap·tanh(s / cap);  s ← s − slope_h·(i' − j);  s ← s + additive. */
double oracle_logit(const oracle_attention_problem* p, int64_t b, int64_t h, int64_t i, int64_t j);

/* The sink logit of head h, or -inf without sinks. */
double oracle_sink(const oracle_attention_problem* p, int64_t h);

/* The additive mask entry of (b, h, i, j), 0 without a mask. */
double oracle_mask_value(const oracle_attention_problem* p, int64_t b, int64_t h, int64_t i,
                         int64_t j);

/* The K/V head that query head h reads: h / (H / Hkv). */
int64_t oracle_kv_head(const oracle_attention_problem* p, int64_t h);

/* out [B, H, Tq, Dv] contiguous; weights [B, H, Tq, Tk] contiguous or NULL.
 * Rows with no visible key get zeros; a NaN anywhere in a row's visible
 * scores makes that row NaN. */
void oracle_attention(const oracle_attention_problem* p, double* out, double* weights);

/* oracle_attention with every variant, plus lse [B, H, Tq] contiguous (or
 * NULL): log Σ exp over the visible logits and the sink; -inf for a row with
 * no visible key and no sink (whose out and weights are zeros), the sink for
 * a row with only the sink (out and weights zeros), NaN for a NaN row. A row
 * whose visible logits are all -inf counts as a row with no visible key. */
void oracle_attention_lse(const oracle_attention_problem* p, double* out, double* weights,
                          double* lse);

/* Merges partial (out [rows, Dv], lse [rows]) of disjoint key ranges, as
 * documented for mha_merge_f32, in double: L = log Σ_p exp(lse_p), out =
 * Σ_p exp(lse_p − L)·out_p; all parts -inf: zeros and -inf; a NaN or +inf
 * lse: NaN. */
void oracle_merge(int64_t parts, int64_t rows, int64_t Dv, const double* const* outs,
                  const double* const* lses, double* out, double* lse);

/* dst [n0, n1, n2, width] contiguous ← the float view src with strides s, widened. */
void oracle_gather(int64_t n0, int64_t n1, int64_t n2, int64_t width, const float* src,
                   oracle_strides s, double* dst);

/* A linear map y = x·W + bias over M rows, in double:
 *   y[r, n] = Σ_k x[r, k] · W(k, n) + bias[n]
 * with W(k, n) = w[k·N + n] when out_in is 0 ([K, N], IN_OUT) and
 * w[n·K + k] when out_in is 1 ([N, K], OUT_IN / nn.Linear). bias may be NULL.
 * If y_abs is non-NULL it receives Σ_k |x[r, k]|·|W(k, n)| + |bias[n]|, the
 * magnitude that bounds the rounding error of a float evaluation (with a
 * nonnegative x and no bias it is also Σ_k x·|W|, how an error in x grows). */
void oracle_linear(int64_t M, int64_t K, int64_t N, const double* x, const float* w, int out_in,
                   const float* bias, double* y, double* y_abs);

/* oracle_linear for float inputs. */
void oracle_linear_f32(int64_t M, int64_t K, int64_t N, const float* x, const float* w,
                       int out_in, const float* bias, double* y, double* y_abs);

/* A layer, as documented for mha_layer_desc, with every default resolved by
 * the caller (d_kv, Hkv, D, Dv are the real values). */
typedef struct oracle_layer {
  int64_t d_model, d_kv, H, Hkv, D, Dv;
  int out_in; /* 0: IN_OUT [in, out]; 1: OUT_IN [out, in] */
  const float *w_q, *w_k, *w_v, *w_o;   /* w_o NULL: concatenated heads */
  const float* in_proj_weight;          /* [3·d_model, d_model], always OUT_IN */
  const float *b_q, *b_k, *b_v, *b_o;
  const float* in_proj_bias;            /* [3·d_model] */
} oracle_layer;

/* The intermediate values of one layer forward, for the error bounds. */
typedef struct oracle_layer_trace {
  int64_t B, Tq, Tk;
  int64_t d_kv;                  /* width of the key/value inputs used */
  double *q, *k, *v;             /* [B, Tq, H·D], [B, Tk, Hkv·D], [B, Tk, Hkv·Dv] */
  double *q_abs, *k_abs, *v_abs; /* Σ|x||w| + |b| of each element */
  double* attn;                  /* [B, Tq, H·Dv]: the heads, concatenated */
  oracle_attention_problem attention; /* the core problem solved, pointing at q, k, v */
} oracle_layer_trace;

/* out [B, Tq, width] (width d_model, or H·Dv without w_o) and weights
 * [B, H, Tq, Tk] (or NULL). x_k NULL: self-attention (Tk = Tq, keys and
 * values from x_q); x_v NULL: values from x_k. The mask fields are as in
 * oracle_attention_problem. trace (or NULL) receives the intermediates;
 * free them with oracle_layer_trace_free(). */
void oracle_layer_forward(const oracle_layer* L, int64_t B, int64_t Tq, int64_t Tk,
                          const float* x_q, const float* x_k, const float* x_v, double scale,
                          int causal, const int32_t* kv_len, const float* additive,
                          oracle_strides additive_strides, double* out, double* weights,
                          oracle_layer_trace* trace);

/* oracle_layer_forward with the attention variants (var may be NULL: none). */
void oracle_layer_forward_variants(const oracle_layer* L, int64_t B, int64_t Tq, int64_t Tk,
                                   const float* x_q, const float* x_k, const float* x_v,
                                   double scale, int causal, const int32_t* kv_len,
                                   const float* additive, oracle_strides additive_strides,
                                   const oracle_variants* var, double* out, double* weights,
                                   oracle_layer_trace* trace);

void oracle_layer_trace_free(oracle_layer_trace* trace);

#endif
