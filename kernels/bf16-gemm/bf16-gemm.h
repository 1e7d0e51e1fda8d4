/* BF16 matrix-unit kernels: products of bf16 values accumulated in fp32 by
 * the CPU's matrix instructions (Arm BF16: BFMMLA), over operands packed once
 * into the instructions' layout. Contracts: config/kernels.h, kernels/README.md.
 *
 * The packed layout ("row pairs in quads"): a matrix X of `rows` rows and k
 * columns is stored as ⌈rows/2⌉ row pairs, pair after pair, each pair ⌈k/4⌉
 * quads of 8 values: X[2p][4q .. 4q+3] then X[2p+1][4q .. 4q+3]. A missing
 * row or column is 0. Pair p starts at element p·8·⌈k/4⌉: the stride of the
 * kernels' `ldp`. BFMMLA takes one quad of a pair of A and one of a pair of
 * B and adds their four 2×2 dot products of 4 terms to a 2×2 fp32 tile. */
#ifndef MHA_KERNELS_BF16_GEMM_H
#define MHA_KERNELS_BF16_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* C[m×n] = alpha·A·Bᵀ, or C += alpha·A·Bᵀ (accumulate): A's pairs at a, B's
 * at b, both kq quads deep (pair stride 8·kq elements); m <= 8 (⌈m/2⌉ pairs
 * read), n <= 8 (4 pairs of B read: B is packed to a multiple of 8 rows).
 * Per element: acc = 0; acc = BFMMLA(acc, quad q) for q = 0 .. kq−1; then
 * alpha·acc, plus C's value when accumulating: the same operations whatever
 * m, n and the element's place in the tile. */
void mha_bf16_gemm_mmla_ukernel_8x8__neonbf16(size_t m, size_t n, size_t kq, const uint16_t* a,
                                              const uint16_t* b, float alpha, float* c, size_t ldc,
                                              int accumulate);

/* Packs rows [0, rows) of k bf16 values each, row i at src[i], as row pairs
 * in quads (dst). Every src[i] is read for k values: pass a zero row for a
 * padding row. */
void mha_bf16_pack_rows__neon(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst);

/* The same from fp32 rows, each value rounded to bf16 (to nearest even,
 * bitwise kv-convert.h's mha_f32_to_bf16) */
void mha_bf16_pack_rows_f32__neon(size_t rows, size_t k, const float* const* src, uint16_t* dst);

/* Packs the columns of a bf16 matrix as the rows of its transpose: n
 * columns (row pairs of the packed result: n rounded up to 8, the missing
 * ones zero) of k rows, row p at src[p] (k a multiple of 4: pass a zero row
 * for a padding row), into dst. Reads n values of every src[p]. */
void mha_bf16_pack_cols__neon(size_t k, size_t n, const uint16_t* const* src, uint16_t* dst);

#endif
