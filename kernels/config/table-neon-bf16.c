/* The AArch64 Advanced SIMD + BF16 kernel table: the NEON table, and the BF16
 * matrix form of bf16 calls (BFMMLA, kernels/bf16-gemm/). Built once from the
 * NEON table, so that every fp32 (and f16) kernel is the NEON set's and only
 * the bf16 form differs. */
#include <pthread.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/kernels.h"
#include "f32-softmax/f32-softmax.h"

static mha_kernels mha_kernels_neon_bf16_table;
static pthread_once_t mha_kernels_neon_bf16_once = PTHREAD_ONCE_INIT;

static void mha_kernels_neon_bf16_build(void) {
  mha_kernels t = *mha_kernels_neon();
  t.isa = MHA_ISA_NEON_BF16;
  t.name = "neon_bf16";
  t.bf16_gemm = mha_bf16_gemm_mmla_ukernel_8x8__neonbf16;
  t.bf16_mr = 8;
  t.bf16_nr = 8;
  /* A and B share the layout (bf16-gemm.h) */
  t.bf16_pack_a = mha_bf16_pack_rows__neon;
  t.bf16_pack_a_f32 = mha_bf16_pack_rows_f32__neon;
  t.bf16_pack_b = mha_bf16_pack_rows__neon;
  t.bf16_pack_b_cols = mha_bf16_pack_cols__neon;
  /* the softmax step packs P's row pairs itself (f32-softmax/) */
  t.bf16_softmax_tile_pack = mha_f32_softmax_online_tile_pack__neon;
  mha_kernels_neon_bf16_table = t;
}

const mha_kernels* mha_kernels_neon_bf16(void) {
  pthread_once(&mha_kernels_neon_bf16_once, mha_kernels_neon_bf16_build);
  return &mha_kernels_neon_bf16_table;
}
