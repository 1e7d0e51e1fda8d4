/* The x86-64 AMX-BF16 kernel table (a build with -DMHA_AMX=ON): the
 * avx512_bf16 table, with the BF16 form's products on AMX tiles
 * (kernels/bf16-gemm/bf16-gemm-amx-32x32-amxbf16.c). The operands' layout,
 * the packers and the fused softmax-and-pack step are avx512_bf16's; every
 * fp32, f16 and widening kernel is the avx512f set's. */
#include <pthread.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/kernels.h"

static mha_kernels mha_kernels_amx_bf16_table;
static pthread_once_t mha_kernels_amx_bf16_once = PTHREAD_ONCE_INIT;

static void mha_kernels_amx_bf16_build(void) {
  mha_kernels t = *mha_kernels_avx512_bf16();
  t.isa = MHA_ISA_AMX_BF16;
  t.name = "amx_bf16";
  t.bf16_gemm = mha_bf16_gemm_amx_ukernel_32x32__amxbf16;
  /* two row tiles × two column tiles: four accumulators, A's and B's two
   * tiles each (all eight tile registers) */
  t.bf16_mr = 32;
  t.bf16_nr = 32;
  /* the layer GEMM's K chunk: whole steps of 16 k-pairs (32 values), and an
   * A block's chunk of 32 rows × 256 values (16 KB) in gemm-bf16.c's stack
   * buffer. Not yet measured on an AMX CPU (nor is bf16_nk: avx512_bf16's) */
  t.bf16_kc = 256;
  mha_kernels_amx_bf16_table = t;
}

const mha_kernels* mha_kernels_amx_bf16(void) {
  pthread_once(&mha_kernels_amx_bf16_once, mha_kernels_amx_bf16_build);
  return &mha_kernels_amx_bf16_table;
}
