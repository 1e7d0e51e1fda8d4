/* The AArch64 Advanced SIMD (NEON) kernel table. */
#include "config/kernels.h"
#include "f32-gemm/f32-gemm.h"
#include "f32-scoremod/f32-scoremod.h"
#include "f32-softmax/f32-softmax.h"
#include "kv-gemm/kv-gemm.h"

static const mha_kernels mha_kernels_neon_table = {
    .isa = MHA_ISA_NEON,
    .name = "neon",
    .gemm = mha_f32_gemm_ukernel_8x12__neon,
    .gemm_mr = 8,
    .gemm_nr = 12,
    /* KC·NR·4 B = 12 KiB: one panel slice in a fifth of L1d (64 KiB on
     * Neoverse N1/V1/V2, 128 KiB on Apple M1 P-cores); MC·KC·4 B = 96 KiB of
     * A (12 tiles of 8 rows) and NC·KC·4 B = 384 KiB of panels (32 panels of
     * 12) together fit in 3/4 of a 1 MiB L2 (V1, N2; N1 has 512 KiB-1 MiB:
     * mha_gemm_blocks halves MC and NC where sysconf reports a smaller L2) */
    .gemm_mc = 96,
    .gemm_kc = 256,
    .gemm_nc = 384,
    .gemm_nt = mha_f32_gemm_nt_ukernel_4x4__neon,
    /* 48 query rows (6 tiles of 8) against 64 keys: S is 12 KiB, Kᵀ 32 KiB at D = 128 */
    .attn_mq = 48,
    .decode_streams = 0,
    .attn_nk = 64,
    /* not measured larger: one item is one nominal block */
    .attn_item_rows = 48,
    .softmax_online_row = mha_f32_softmax_online_row__neon,
    .softmax_online_tile = mha_f32_softmax_online_tile__neon,
    .scoremod = mha_f32_scoremod__neon,
    .vscale = mha_f32_vscale__neon,
    .vexp2_scale = mha_f32_vexp2_scale__neon,
    .gemm_nt_f16 = mha_f16_gemm_nt_ukernel_4x4__neon,
    .gemm_nt_bf16 = mha_bf16_gemm_nt_ukernel_4x4__neon,
    .gemm_pv_f32 = mha_f32_gemm_pv_ukernel_8x12__neon,
    .gemm_pv_f16 = mha_f16_gemm_pv_ukernel_8x12__neon,
    .gemm_pv_bf16 = mha_bf16_gemm_pv_ukernel_8x12__neon,
    .widen_f16 = mha_f16_widen__neon,
    .widen_bf16 = mha_bf16_widen__neon,
    .narrow_f16 = mha_f16_narrow__neon,
    .narrow_bf16 = mha_bf16_narrow__neon,
    .dequant_i8 = mha_i8_dequant__neon,
};

const mha_kernels* mha_kernels_neon(void) { return &mha_kernels_neon_table; }
