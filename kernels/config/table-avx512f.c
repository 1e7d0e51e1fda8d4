/* The AVX-512F kernel table. */
#include "config/kernels.h"
#include "f32-gemm/f32-gemm.h"
#include "f32-scoremod/f32-scoremod.h"
#include "f32-softmax/f32-softmax.h"
#include "kv-gemm/kv-gemm.h"

static const mha_kernels mha_kernels_avx512f_table = {
    .isa = MHA_ISA_AVX512F,
    .name = "avx512f",
    .gemm = mha_f32_gemm_ukernel_12x32__avx512f,
    .gemm_mr = 12,
    .gemm_nr = 32,
    /* KC·NR·4 B = 32 KiB: one panel slice per L1 (48 KiB here, 32 on Zen 4);
     * MC·KC·4 B = 192 KiB of A in L2; NC·KC·4 B = 384 KiB of panels in L2/L3 */
    .gemm_mc = 192,
    .gemm_kc = 256,
    .gemm_nc = 384,
    .gemm_nt = mha_f32_gemm_nt_ukernel_4x1__avx512f,
    .gemm_at = mha_f32_gemm_at_ukernel_12x32__avx512f,
    /* 48 query rows (4 tiles of 12) against 64 keys: S is 12 KiB, Kᵀ 32 KiB at D = 128 */
    .attn_mq = 48,
    .attn_nk = 64,
    /* 96 rows per item: each Kᵀ/V block read into L1 serves 8 row tiles, not 4
     * (Emerald Rapids, 1 thread, T 4096: core +3-4% at D 64 and 128) */
    .attn_item_rows = 96,
    .decode_streams = 1,
    .softmax_online_row = mha_f32_softmax_online_row__avx512f,
    .softmax_online_tile = mha_f32_softmax_online_tile__avx512f,
    .softmax_online_tile_t = mha_f32_softmax_online_tile_t__avx512f,
    .scoremod = mha_f32_scoremod__avx512f,
    .vscale = mha_f32_vscale__avx512f,
    .vexp2_scale = mha_f32_vexp2_scale__avx512f,
    .gemm_nt_f16 = mha_f16_gemm_nt_ukernel_4x1__avx512f,
    .gemm_nt_bf16 = mha_bf16_gemm_nt_ukernel_4x1__avx512f,
    .gemm_pv_f32 = mha_f32_gemm_pv_ukernel_12x32__avx512f,
    .gemm_pv_f16 = mha_f16_gemm_pv_ukernel_12x32__avx512f,
    .gemm_pv_bf16 = mha_bf16_gemm_pv_ukernel_12x32__avx512f,
    .widen_f16 = mha_f16_widen__avx512f,
    .widen_bf16 = mha_bf16_widen__avx512f,
    .narrow_f16 = mha_f16_narrow__avx512f,
    .narrow_bf16 = mha_bf16_narrow__avx512f,
    .dequant_i8 = mha_i8_dequant__avx512f,
};

const mha_kernels* mha_kernels_avx512f(void) { return &mha_kernels_avx512f_table; }
