/*
 * The kernel table: one entry per ISA, chosen once at run time.
 *
 * Every ISA (scalar included) fills the same table with kernels of the same
 * signatures, tiles and packing; the portable drivers in kernels/mha/ only
 * ever call through it. The contracts are written down in kernels/README.md.
 */
#ifndef MHA_KERNELS_CONFIG_KERNELS_H
#define MHA_KERNELS_CONFIG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"

/* C[m×n] (=, or += when accumulate) A[m×k] · B[k×n]
 *   A row-major with row stride lda; B row-major with row stride ldb
 *   (a packed weight panel is B with ldb = NR); C row-major, row stride ldc.
 *   1 <= m <= MR, 1 <= n <= NR, k >= 1. Reads only A[0..m)[0..k) and
 *   B[0..k)[0..n); writes only C[0..m)[0..n). The kernel handles the edges. */
typedef void (*mha_f32_gemm_ukernel_fn)(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                        const float* b, size_t ldb, float* c, size_t ldc,
                                        int accumulate);

/* C[m×n] = A[m×k] · B[n×k]ᵀ: rows of A against rows of B (row strides lda,
 *   ldb), no packing, any m >= 1 and n >= 1, k >= 1; writes only
 *   C[0..m)[0..n). Used where a tile has too few rows to amortize a
 *   transpose of B (decode: one query row per head against the keys). */
typedef void (*mha_f32_gemm_nt_fn)(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                   const float* b, size_t ldb, float* c, size_t ldc);

/* log2(e) rounded to float: the factor that takes natural-log units (an
 * additive mask, a modified score) into the base-2 units of the step */
#define MHA_LOG2E_F 1.44269504088896340736f

/* One online-softmax step on one row of a score tile (n keys of a key block),
 * in base 2: the scores arrive in log2 units (the caller folds scale·log2(e)
 * into Q, or passes scale = log2(e) after a score modifier), so every
 * exponential is an exp2 and m, l are the row's base-2 running max and sum:
 *   s[j] ← s[j]·scale + (add ? add[j]·log2(e) : 0)   for j < n_valid
 *          (an additive -inf hides its key, even from a NaN score)
 *   m'   = max(m, max_j s[j]);  p[j] = 2^(s[j] − m') (stored in s);  s[j] = 0 for j >= n_valid
 *   l    ← l·2^(m − m') + Σ_j p[j];  m ← m'
 * Returns alpha = 2^(m − m'), the factor the caller applies to the row's
 * output accumulator: exactly 1, with no exp2 computed, when the max did not
 * move. While no key of the row has been visible (m' = −inf) all p are 0 and
 * alpha is 1. n_valid <= n. NaN propagates. The row's log-sum-exp in natural
 * units is (m + log2 l)·ln 2. */
typedef float (*mha_f32_softmax_online_row_fn)(size_t n, size_t n_valid, float* s, float scale,
                                               const float* add, float* m, float* l);

/* The step for `rows` whole rows of a score tile at once (row r at
 * s + r·lds, all n keys visible, scale 1, no additive mask: a plain call's
 * key block that every row of the item sees whole): for each row, bitwise
 * what softmax_online_row(n, n, row, 1, NULL, &m[r], &l[r]) gives, its
 * return value in alpha[r]. One call per key block instead of one per row,
 * so the rows' reductions overlap and the exp2 calls run back to back. */
typedef void (*mha_f32_softmax_online_tile_fn)(size_t rows, size_t n, float* s, size_t lds, float* m,
                                                float* l, float* alpha);

/* The score modifiers of one row, before the softmax step (which then runs
 * with scale log2(e)):  x[j] ← x[j]·scale;  x[j] ← cap·tanh(x[j]/cap) if cap > 0;
 *   x[j] ← x[j] + slope·(d0 + j) if slope != 0   (ALiBi: d0 = j0 − i')
 * for j < n. NaN propagates. */
typedef void (*mha_f32_scoremod_fn)(size_t n, float* x, float scale, float cap, float slope,
                                    float d0);

/* K/V caches in 16 bits and paged (kernels/kv-gemm/, kernels/README.md).
 * Q, the scores, the softmax and every accumulator stay fp32; a 16-bit value
 * is widened (exactly) in registers as it is loaded. Per element, each kernel
 * runs exactly the operations of the ISA's f32 kernel it mirrors, in the same
 * order, so its result is bitwise the f32 kernel's on the widened values.
 *
 * gemm_nt_{f16,bf16}: C[m×n] = A[m×k]·B[n×k]ᵀ as gemm_nt, B's rows 16-bit
 *   (row stride ldb, in elements). */
typedef void (*mha_x16_gemm_nt_fn)(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                   const uint16_t* b, size_t ldb, float* c, size_t ldc);

/* gemm_pv_{f32,f16,bf16}: C[m×n] += A[m×k]·B[k×n] with row p of B at
 *   brows[p] (n values of the kernel's type): rows anywhere, as a paged cache
 *   holds them; or, when brows is NULL, at b + p·ldb (ldb in elements: a
 *   contiguous cache or view; b is not read when brows is given). Per element as the ISA's gemm with accumulate = 1: acc = 0;
 *   acc += a[i][p]·b[p][j] for p = 0 .. k−1 (one fma on the SIMD ISAs; a
 *   rounded product, then the sum, on scalar, as its gemm); c = acc + c.
 *   1 <= m, 1 <= n, k >= 1, any sizes (the kernel tiles them itself). */
typedef void (*mha_f32_gemm_pv_fn)(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                   const float* b, size_t ldb, const float* const* brows, float* c,
                                   size_t ldc);
typedef void (*mha_x16_gemm_pv_fn)(size_t m, size_t n, size_t k, const float* a, size_t lda,
                                   const uint16_t* b, size_t ldb, const uint16_t* const* brows,
                                   float* c, size_t ldc);

/* y[0..n) = x[0..n) widened to fp32 (exact) */
typedef void (*mha_x16_widen_fn)(size_t n, const uint16_t* x, float* y);

/* y[0..n) = x[0..n) rounded to f16 / bf16, bitwise kv-convert.h's
 * mha_f32_to_f16 / mha_f32_to_bf16 */
typedef void (*mha_x16_narrow_fn)(size_t n, const float* x, uint16_t* y);

/* y[0..n) = (float)x[0..n) · scale (an int8 cache row): one rounding per
 * value, bitwise the same on every set */
typedef void (*mha_i8_dequant_fn)(size_t n, const int8_t* x, float scale, float* y);

/* The tile step on a transposed score tile: key j's scores of the `rows`
 * query rows at st + j·ldst (query row r in column r), n keys; rows a
 * multiple of the set's gemm_nr (the columns of Sᵀ in whole panels; the
 * kernels need their vector width: 16 rows AVX-512, 8 AVX2), n a multiple
 * of 16 and at most MHA_TILE_T_MAX_KEYS. For each query row r, bitwise what the tile step (and so
 * the row step) gives on that row laid out contiguously: the probabilities
 * stored back in column r, m[r], l[r] and alpha[r]. With the query rows in
 * the lanes, the row maxima and sums are vertical operations (no horizontal
 * reduction), and P·V reads P as a transposed A (gemm_at). */
enum { MHA_TILE_T_MAX_KEYS = 256 };
typedef void (*mha_f32_softmax_online_tile_t_fn)(size_t rows, size_t n, float* st, size_t ldst, float* m,
                                                 float* l, float* alpha);

/* x[0..n) ← x[0..n) · alpha */
typedef void (*mha_f32_vscale_fn)(size_t n, float* x, float alpha);

/* x[0..n) ← 2^(x[0..n) − c) · alpha  (the weights pass: final probabilities
 * from base-2 scores and the row's base-2 max c) */
typedef void (*mha_f32_vexp2_scale_fn)(size_t n, float* x, float c, float alpha);

/* The BF16 matrix form (a set with a BF16 matrix unit; kernels/bf16-gemm/):
 * C = alpha·A·Bᵀ on operands packed once into the unit's layout
 * (bf16-gemm.h defines each set's), k padded with zeros to kq quads (4·kq
 * values). Every layout keeps one rule the drivers rely on: A's row i (i a
 * multiple of 2) and B's block of bf16_nr rows from row j (j a multiple of
 * bf16_nr) start at element i·4·kq and j·4·kq.
 * bf16_gemm: C[m×n] = alpha·A·Bᵀ (accumulate 0), or C += alpha·A·Bᵀ (1),
 *   m <= bf16_mr, n <= bf16_nr; A from its row 0, B from its block's row 0.
 *   Per element the same instructions wherever it lies in a tile. On the
 *   sets with a bf16_kc, also accumulate 2 (continue): each element's chain
 *   starts from C's value instead of 0, then C = alpha·acc — a chain over K
 *   in two calls (the second with A and B from k0) is bitwise one call.
 * bf16_pack_a / bf16_pack_a_f32: A's rows [0, rows) of k values at src[i]
 *   (bf16, or fp32 rounded to nearest even: mha_f32_to_bf16's bits, except
 *   that an fp32 subnormal may become a zero of its sign — the value the
 *   units read a bf16 subnormal as — and a NaN any quiet NaN); rows even, or
 *   the last written as a zero-padded pair where the layout pairs them.
 * bf16_pack_b: B's rows [0, rows) (rows a multiple of bf16_nr) of k values at src[i].
 * bf16_pack_b_cols: B from its columns: the n columns of k rows (k a
 *   multiple of 4) at src[p] as B's rows, padded with zero rows to a
 *   multiple of bf16_nr. */
typedef void (*mha_bf16_gemm_fn)(size_t m, size_t n, size_t kq, const uint16_t* a, const uint16_t* b,
                                 float alpha, float* c, size_t ldc, int accumulate);
typedef void (*mha_bf16_pack_rows_fn)(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst);
typedef void (*mha_bf16_pack_rows_f32_fn)(size_t rows, size_t k, const float* const* src, uint16_t* dst);
typedef void (*mha_bf16_pack_cols_fn)(size_t k, size_t n, const uint16_t* const* src, uint16_t* dst);
/* The tile step (mha_f32_softmax_online_tile_fn: the same rows, m, l and
 * alpha, bit for bit) fused with P's packing: P's rows go to pb as
 * bf16_pack_a_f32 would pack the step's rows of s (A for bf16_gemm, in the
 * set's layout: x86 its rows, Arm its row pairs), not to s, whose rows are
 * then unspecified. */
typedef void (*mha_bf16_softmax_tile_pack_fn)(size_t rows, size_t n, float* s, size_t lds, float* m, float* l,
                                              float* alpha, uint16_t* pb);

typedef struct mha_kernels {
  mha_isa isa;
  const char* name;

  /* projection and attention GEMM micro-kernel and its register tile */
  mha_f32_gemm_ukernel_fn gemm;
  size_t gemm_mr;
  size_t gemm_nr;
  /* cache blocks of the projection GEMM (the five loops): see kernels/mha/gemm.c */
  size_t gemm_mc;
  size_t gemm_kc;
  size_t gemm_nc;
  /* dot-product form for few-row tiles */
  mha_f32_gemm_nt_fn gemm_nt;
  /* gemm with A transposed: A[i][p] at a[p·lda + i] (else gemm's contract),
   * per element bitwise gemm's result; NULL where the set has none (then
   * the flash loop keeps Q row-major and S untransposed) */
  mha_f32_gemm_ukernel_fn gemm_at;

  /* attention: query rows and keys per block of the flash loop */
  size_t attn_mq;
  size_t attn_nk;
  /* query rows an item starts from when a head has several query blocks: a
   * multiple of attn_mq, so each Kᵀ and V block serves more rows from L1
   * (halved again when items are few). Rows are computed alone, so this
   * never changes a result; attn_mq alone sets the decisions that do. */
  size_t attn_item_rows;
  /* decode (the dot-product form): 1 when this set's gemm_nt and gemm_pv
   * read each K and V row whole, in address order; then an fp32 contiguous V
   * goes through gemm_pv's strided form, and no software prefetch runs, paged
   * caches included: the hardware prefetchers follow the streams (AVX-512:
   * 1.3–1.5× faster from DRAM on Zen 4, AVX2 1.4× for MHA). 0: an fp32 V
   * through gemm in place, the next key block prefetched (NEON and scalar:
   * not measured on their hardware). */
  int decode_streams;

  mha_f32_softmax_online_row_fn softmax_online_row;
  mha_f32_softmax_online_tile_fn softmax_online_tile;
  /* NULL where the set has none; needs gemm_at */
  mha_f32_softmax_online_tile_t_fn softmax_online_tile_t;
  mha_f32_scoremod_fn scoremod;
  mha_f32_vscale_fn vscale;
  mha_f32_vexp2_scale_fn vexp2_scale;

  /* K/V caches: 16-bit rows, rows through pointers (paged) */
  mha_x16_gemm_nt_fn gemm_nt_f16;
  mha_x16_gemm_nt_fn gemm_nt_bf16;
  mha_f32_gemm_pv_fn gemm_pv_f32;
  mha_x16_gemm_pv_fn gemm_pv_f16;
  mha_x16_gemm_pv_fn gemm_pv_bf16;
  mha_x16_widen_fn widen_f16;
  mha_x16_widen_fn widen_bf16;
  mha_x16_narrow_fn narrow_f16;
  mha_x16_narrow_fn narrow_bf16;
  mha_i8_dequant_fn dequant_i8;

  /* The BF16 matrix form of a bf16 call (io and K/V bf16): NULL on the sets
   * without a BF16 unit, which widen to fp32 instead (kernels/mha/attention-bf16.c) */
  mha_bf16_gemm_fn bf16_gemm;
  int bf16_mr, bf16_nr; /* bf16_gemm's tile: rows of A, rows of B (C's columns) */
  int bf16_a_rows;      /* 1: A's layout is its rows, 4·kq values apart (packing
                           rows already so laid out is a copy: skipped) */
  int bf16_nk;          /* the BF16 form's key block (0: attn_nk): its per-row
                           softmax costs spread over more keys */
  int bf16_kc;          /* the layer GEMM's K chunk where K is longer (a multiple
                           of 4, at most 768; 0: K whole): bf16_gemm continues
                           (accumulate 2), and the layout holds a B block's
                           values from k0 at + k0·NR (x86; kernels/mha/gemm-bf16.c) */
  mha_bf16_pack_rows_fn bf16_pack_a;
  mha_bf16_pack_rows_f32_fn bf16_pack_a_f32;
  mha_bf16_pack_rows_fn bf16_pack_b;
  mha_bf16_pack_cols_fn bf16_pack_b_cols;
  /* the softmax tile step with P packed for P·V, or NULL (then the step and
   * bf16_pack_a_f32 run one after the other: the same bits) */
  mha_bf16_softmax_tile_pack_fn bf16_softmax_tile_pack;
} mha_kernels;

/* The kernel table of each ISA; NULL when the ISA is not compiled in. */
const mha_kernels* mha_kernels_scalar(void);
const mha_kernels* mha_kernels_avx2(void);
const mha_kernels* mha_kernels_avx512f(void);
const mha_kernels* mha_kernels_neon(void);
const mha_kernels* mha_kernels_neon_bf16(void);
const mha_kernels* mha_kernels_avx512_bf16(void);
const mha_kernels* mha_kernels_amx_bf16(void); /* a build with MHA_AMX only */

/* The table in use (chosen once from MHA_ISA or the CPU). On failure
 * (bad MHA_ISA) returns the status and sets the error message; *out is
 * untouched. */
mha_status mha_kernels_active(const mha_kernels** out);

/* The table for a descriptor's isa field: the active one for MHA_ISA_DEFAULT,
 * else that ISA's (INVALID_ARGUMENT outside the enum, UNSUPPORTED_ISA if not
 * runnable here; message names fn). */
mha_status mha_kernels_resolve(const char* fn, mha_isa requested, const mha_kernels** out);

/* The table of a given ISA if built and runnable, else NULL. */
const mha_kernels* mha_kernels_for(mha_isa isa);

#endif
