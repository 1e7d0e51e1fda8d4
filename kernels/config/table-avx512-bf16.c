/* The x86-64 AVX-512 + AVX512-BF16 kernel table: the AVX-512F table, and the
 * BF16 matrix form of bf16 calls (vdpbf16ps, kernels/bf16-gemm/). Built once
 * from the AVX-512F table, so that every fp32 (and f16) kernel is that set's
 * and only the bf16 form differs. */
#include <pthread.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/kernels.h"
#include "f32-softmax/f32-softmax.h"

static mha_kernels mha_kernels_avx512_bf16_table;
static pthread_once_t mha_kernels_avx512_bf16_once = PTHREAD_ONCE_INIT;

static void mha_kernels_avx512_bf16_build(void) {
  mha_kernels t = *mha_kernels_avx512f();
  t.isa = MHA_ISA_AVX512_BF16;
  t.name = "avx512_bf16";
  t.bf16_gemm = mha_bf16_gemm_dp_ukernel_12x32__avx512bf16;
  t.bf16_mr = 12;
  t.bf16_nr = 32;
  t.bf16_a_rows = 1;
  /* 256 keys a block: Zen 4, 2 threads, long_core 460 → 435 ms and bert_base's
   * core 27.5 → 24.9 ms against 64 (128: halfway) */
  t.bf16_nk = 256;
  /* the layer GEMM's K in chunks of 768 where longer (blocks of 8 rows or
   * more): an A block's chunk (12 rows, 18 KB) and its C rows (12 KB) in a
   * 32 KB L1. Zen 4, 2 threads: M 2048, K 4096, N 4096 164 ms against 185
   * with K whole (chunks of 512: the same; K 768 split 512 + 256: 4%
   * slower than whole), llama_prefill_gqa's layer 560 against 610 ms */
  t.bf16_kc = 768;
  t.bf16_pack_a = mha_bf16_pack_a__avx512bw;
  t.bf16_pack_a_f32 = mha_bf16_pack_a_f32__avx512bf16;
  t.bf16_pack_b = mha_bf16_pack_b__avx512bw;
  t.bf16_pack_b_cols = mha_bf16_pack_b_cols__avx512bw;
  t.bf16_softmax_tile_pack = mha_f32_softmax_online_tile_pack__avx512bf16;
  mha_kernels_avx512_bf16_table = t;
}

const mha_kernels* mha_kernels_avx512_bf16(void) {
  pthread_once(&mha_kernels_avx512_bf16_once, mha_kernels_avx512_bf16_build);
  return &mha_kernels_avx512_bf16_table;
}
