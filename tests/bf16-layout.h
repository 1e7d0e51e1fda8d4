/* The BF16 sets' packed layouts (kernels/bf16-gemm/bf16-gemm.h), written
 * again from their definitions for the tests: where element (i, p) of A,
 * and (j, p) of B, of a packed [rows × k] matrix lies. x86 (avx512_bf16, amx_bf16): A
 * its rows, 4·⌈k/4⌉ values apart; B panels of 32 rows, a 64-value line per
 * k-pair. Arm (neon_bf16): row pairs in quads, A and B alike (the last pair
 * of an odd count padded with a zero row). */
#ifndef MHA_TESTS_BF16_LAYOUT_H
#define MHA_TESTS_BF16_LAYOUT_H

#include <stddef.h>

#include "config/kernels.h"

static inline int bf16_x86_layout(const mha_kernels* kr) {
  return kr->isa == MHA_ISA_AVX512_BF16 || kr->isa == MHA_ISA_AMX_BF16;
}

/* quads of k a step of the set's kernel takes whole (amx_bf16: 16 k-pairs;
 * the others any quad): where a chain may be split */
static inline size_t bf16_step_quads(const mha_kernels* kr) { return kr->isa == MHA_ISA_AMX_BF16 ? 8 : 1; }

static inline size_t bf16_a_index(const mha_kernels* kr, size_t k, size_t i, size_t p) {
  const size_t kq = (k + 3) / 4;
  if (bf16_x86_layout(kr)) return i * 4 * kq + p; /* rows */
  return (i / 2) * 8 * kq + (p / 4) * 8 + (i % 2) * 4 + p % 4; /* row pairs in quads */
}

static inline size_t bf16_b_index(const mha_kernels* kr, size_t k, size_t j, size_t p) {
  const size_t kq = (k + 3) / 4;
  if (bf16_x86_layout(kr)) return (j / 32) * 128 * kq + (p / 2) * 64 + (j % 32) * 2 + p % 2; /* panels */
  return bf16_a_index(kr, k, j, p);
}

#endif
