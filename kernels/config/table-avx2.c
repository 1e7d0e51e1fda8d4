/* The AVX2 + FMA kernel table. */
#include "config/kernels.h"
#include "f32-gemm/f32-gemm.h"
#include "f32-scoremod/f32-scoremod.h"
#include "f32-softmax/f32-softmax.h"
#include "kv-gemm/kv-gemm.h"

static const mha_kernels mha_kernels_avx2_table = {
    .isa = MHA_ISA_AVX2,
    .name = "avx2",
    .gemm = mha_f32_gemm_ukernel_6x16__avx2,
    .gemm_mr = 6,
    .gemm_nr = 16,
    /* KC·NR·4 B = 16 KiB: one panel slice in half of L1; MC·KC·4 B = 96 KiB of A
     * in L2; NC·KC·4 B = 256 KiB of panels */
    .gemm_mc = 96,
    .gemm_kc = 256,
    .gemm_nc = 256,
    .gemm_nt = mha_f32_gemm_nt_ukernel_4x1__avx2,
    .gemm_at = mha_f32_gemm_at_ukernel_6x16__avx2,
    .attn_mq = 48,
    .decode_streams = 1,
    .attn_nk = 64,
    /* 96 rows per item (16 row tiles of 6), as the AVX-512 set; on Emerald Rapids, 1 thread,
     * the AVX2 gain was within the host's noise (interleaved medians 0.84-1.05x) */
    .attn_item_rows = 96,
    .softmax_online_row = mha_f32_softmax_online_row__avx2,
    .softmax_online_tile = mha_f32_softmax_online_tile__avx2,
    .softmax_online_tile_t = mha_f32_softmax_online_tile_t__avx2,
    .scoremod = mha_f32_scoremod__avx2,
    .vscale = mha_f32_vscale__avx2,
    .vexp2_scale = mha_f32_vexp2_scale__avx2,
    .gemm_nt_f16 = mha_f16_gemm_nt_ukernel_4x1__avx2,
    .gemm_nt_bf16 = mha_bf16_gemm_nt_ukernel_4x1__avx2,
    .gemm_pv_f32 = mha_f32_gemm_pv_ukernel_6x16__avx2,
    .gemm_pv_f16 = mha_f16_gemm_pv_ukernel_6x16__avx2,
    .gemm_pv_bf16 = mha_bf16_gemm_pv_ukernel_6x16__avx2,
    .widen_f16 = mha_f16_widen__avx2,
    .widen_bf16 = mha_bf16_widen__avx2,
    .narrow_f16 = mha_f16_narrow__avx2,
    .narrow_bf16 = mha_bf16_narrow__avx2,
    .dequant_i8 = mha_i8_dequant__avx2,
};

const mha_kernels* mha_kernels_avx2(void) { return &mha_kernels_avx2_table; }
