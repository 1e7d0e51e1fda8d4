/* BF16 matrix-unit kernels: products of bf16 values accumulated in fp32 by
 * the CPU's matrix instructions (Arm BF16: BFMMLA; AVX512-BF16: vdpbf16ps),
 * over operands packed once into the instructions' layout. Contracts:
 * config/kernels.h, kernels/README.md. Each layout pads k with zeros to kq
 * quads (4·kq values) and puts A's row i (i even) and B's block of NR rows
 * from row j (j a multiple of NR) at element i·4·kq and j·4·kq.
 *
 * Arm, "row pairs in quads" (A and B alike, NR 8): a matrix X of `rows`
 * rows is stored as ⌈rows/2⌉ row pairs, pair after pair, each pair kq quads
 * of 8 values: X[2p][4q .. 4q+3] then X[2p+1][4q .. 4q+3]. A missing row or
 * column is 0. Pair p starts at element p·8·kq: the stride of the kernels'
 * `ldp`. BFMMLA takes one quad of a pair of A and one of a pair of B and
 * adds their four 2×2 dot products of 4 terms to a 2×2 fp32 tile.
 *
 * x86, "rows; panels of k-pairs" (NR 32): A is its rows, 4·kq values apart
 * (a broadcast 32-bit word is one row's k-pair); B is panels of 32 rows,
 * each panel 2·kq k-pairs of 32 rows' (X[j][2t], X[j][2t+1]) words side by
 * side — 64 values, two zmm registers: the 16-row halves vdpbf16ps takes.
 * Row j's k-pair t lies at element (j/32)·128·kq + 64·t + 2·(j%32). */
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

/* C[m×n] = alpha·A·Bᵀ, or C += alpha·A·Bᵀ (accumulate), on the x86 layout:
 * A's rows at a (row stride 4·kq), B's panel at b; m <= 12, n <= 32. Per
 * element: acc = 0; acc = vdpbf16ps(acc, k-pair t) for t = 0 .. 2·kq−1
 * (subnormal inputs and outputs flushed, sums rounded to nearest even); then
 * alpha·acc, plus C's value when accumulating (1). accumulate 2 (continue):
 * acc starts from C's value instead of 0, then C = alpha·acc — a chain
 * split at a k-pair (B's panel read from k0 at b + 32·k0) is one call's bits. */
void mha_bf16_gemm_dp_ukernel_12x32__avx512bf16(size_t m, size_t n, size_t kq, const uint16_t* a,
                                                const uint16_t* b, float alpha, float* c, size_t ldc,
                                                int accumulate);

/* The same contract (accumulate 0, 1, 2 as above; m <= 32, n <= 32) with
 * AMX-BF16 on the same layout: A's rows read as tiles of 16 rows × 16
 * k-pairs, B's panel halves as tiles of 16 k-pairs × 16 columns. Per
 * element: acc = 0 (or C's value: continue); acc = TDPBF16PS(acc, step s)
 * for each step of 16 k-pairs, the last padded with zero pairs; then
 * alpha·acc, plus C's value when accumulating (1). A chain split at a
 * multiple of 16 k-pairs (32 values: B's panel from k0 at b + 32·k0) is one
 * call's bits. Loads its tile configuration and releases the tiles in each
 * call. Only on a CPU (and an OS) that grants AMX: isa-select.c. */
void mha_bf16_gemm_amx_ukernel_32x32__amxbf16(size_t m, size_t n, size_t kq, const uint16_t* a,
                                              const uint16_t* b, float alpha, float* c, size_t ldc,
                                              int accumulate);

/* A's rows [0, rows) of k values (bf16; fp32 rounded to nearest even by
 * vcvtne2ps2bf16, an fp32 subnormal to a zero of its sign) to rows of 4·⌈k/4⌉ */
void mha_bf16_pack_a__avx512bw(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst);
void mha_bf16_pack_a_f32__avx512bf16(size_t rows, size_t k, const float* const* src, uint16_t* dst);

/* B's rows [0, rows) (rows a multiple of 32) of k values each into panels of k-pairs */
void mha_bf16_pack_b__avx512bw(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst);

/* B from its columns: n columns (B's rows: n rounded up to 32, the missing
 * ones zero) of k rows (k a multiple of 4), row p at src[p], into panels */
void mha_bf16_pack_b_cols__avx512bw(size_t k, size_t n, const uint16_t* const* src, uint16_t* dst);

#endif
