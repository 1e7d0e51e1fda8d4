/* The scalar kernel table: portable C, the reference every fast path is tested against. */
#include "config/kernels.h"
#include "f32-gemm/f32-gemm.h"
#include "f32-scoremod/f32-scoremod.h"
#include "f32-softmax/f32-softmax.h"
#include "kv-gemm/kv-gemm.h"

static const mha_kernels mha_kernels_scalar_table = {
    .isa = MHA_ISA_SCALAR,
    .name = "scalar",
    .gemm = mha_f32_gemm_ukernel_4x8__scalar,
    .gemm_mr = 4,
    .gemm_nr = 8,
    /* scalar code is compute bound at any block size; these keep A and a
     * weight panel in L1/L2 like the SIMD paths do */
    .gemm_mc = 64,
    .gemm_kc = 256,
    .gemm_nc = 256,
    .gemm_nt = mha_f32_gemm_nt_ukernel_1x1__scalar,
    .attn_mq = 32,
    .decode_streams = 0,
    .attn_nk = 64,
    .attn_item_rows = 32,
    .softmax_online_row = mha_f32_softmax_online_row__scalar,
    .softmax_online_tile = mha_f32_softmax_online_tile__scalar,
    .scoremod = mha_f32_scoremod__scalar,
    .vscale = mha_f32_vscale__scalar,
    .vexp2_scale = mha_f32_vexp2_scale__scalar,
    .gemm_nt_f16 = mha_f16_gemm_nt_ukernel_1x1__scalar,
    .gemm_nt_bf16 = mha_bf16_gemm_nt_ukernel_1x1__scalar,
    .gemm_pv_f32 = mha_f32_gemm_pv_ukernel_4x8__scalar,
    .gemm_pv_f16 = mha_f16_gemm_pv_ukernel_4x8__scalar,
    .gemm_pv_bf16 = mha_bf16_gemm_pv_ukernel_4x8__scalar,
    .widen_f16 = mha_f16_widen__scalar,
    .widen_bf16 = mha_bf16_widen__scalar,
    .narrow_f16 = mha_f16_narrow__scalar,
    .narrow_bf16 = mha_bf16_narrow__scalar,
    .dequant_i8 = mha_i8_dequant__scalar,
};

const mha_kernels* mha_kernels_scalar(void) { return &mha_kernels_scalar_table; }
