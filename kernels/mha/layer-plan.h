/*
 * The layer plan (kernels/mha/layer-create.c makes it, layer-forward.c runs
 * it): the kernel set and the weights packed once.
 */
#ifndef MHA_KERNELS_MHA_LAYER_PLAN_H
#define MHA_KERNELS_MHA_LAYER_PLAN_H

#include "mha/internal.h"

struct mha_layer {
  const mha_kernels* kr; /* the kernel set the weights were packed for */
  int64_t d_model, d_kv, H, Hkv, D, Dv;
  int64_t nq, nk, nv; /* padded widths of the Q, K and V parts (multiples of NR) */
  mha_packed_w wq_alloc, wkv_alloc; /* owned storage (wkv_alloc unused when fused) */
  mha_packed_w wq, wk, wv, wkv, wqkv; /* views; wqkv.data == NULL unless d_kv == d_model */
  int has_wo;
  mha_packed_w wo;
  float* bqkv; /* [nq + nk + nv] zero padded, or NULL */
  float* bo;   /* [d_model] or NULL */
  /* The BF16 form (bf16 weights on a set with bf16_gemm; layer-forward.c):
   * W_q, W_k, W_v, W_o packed as bf16 too; bf16_form 0: none (data NULL) */
  int bf16_form;
  mha_packed_bf16 w16[4];
};

/* A forward call runs over chunks of whole batch entries, each chunk's
 * projections, attention and output projection in one workspace. The chunk
 * holds as many entries as fit in MHA_LAYER_CHUNK_BYTES (at least one):
 * the working set stays cache-sized, and the buffer stays under glibc's
 * 32 MiB mmap ceiling, so repeated calls reuse heap memory instead of
 * faulting in fresh pages (about 10% of a bert_base B = 8 forward). Every
 * output element sees the same operations in the same order whatever the
 * chunking: the GEMM's per-row results do not depend on the row count, and
 * the core's schedule (query blocks, decode key ranges) is a function of one
 * entry's shape, never of B. So results do not depend on the chunking, and
 * an entry's bits do not depend on the rest of its batch (tested in
 * batch-invariance-test). */
enum { MHA_LAYER_CHUNK_BYTES = 16 << 20 };

/* One forward call's shapes and buffer sizes (floats, per chunk), checked. */
typedef struct mha_layer_call {
  int self;
  mha_dtype dt;                   /* of x_q, x_k, x_v and out */
  int bf16;                       /* the BF16 form: bf16 io on a plan with bf16_form */
  size_t esz;                     /* their bytes per element */
  int64_t n_x, n_out;             /* 16-bit: floats of one chunk's widened inputs (the BF16
                                     form: its bf16 Q/K/V, concatenation and packed A) and fp32
                                     output (none in the BF16 form: its GEMM rounds each tile) */
  int64_t B, Tq, Tk, ldq, ldkv;
  int64_t chunk;                  /* batch entries per chunk */
  int64_t n_q, n_kv, n_cat;       /* floats of one chunk's projections and concatenation */
  int64_t n_p32;                  /* floats of the fp32 projections' part of the workspace:
                                     n_q + n_kv, or 0 in the BF16 form without a K/V cache
                                     output (its GEMMs write only bf16 Q, K and V) */
  mha_attention_desc cd;          /* the core's view of one chunk (B = chunk; pointers at run time) */
  int nthreads;
  size_t n_attn, total;
} mha_layer_call;

static inline float* mha_align64(float* p) { return (float*)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* The GEMM whose tiles the trace records next (mha.h: a GEMM event's head). */
static inline void mha_trace_gemm(mha_tracer* tracer, int32_t which) {
  if (tracer != NULL) tracer->gemm = which;
}

/* The BF16 form's chunk (layer-bf16.c): batch entries [b0, b0 + nb) in the
 * call's workspace, as mha_layer_chunk in layer-forward.c. */
mha_status mha_layer_chunk_bf16(const mha_layer* L, const mha_layer_args* a, const mha_layer_call* c, int64_t b0,
                                int64_t nb, float* buf, mha_tracer* tracer);

/* w16's parts */
enum { MHA_LAYER_W16_Q = 0, MHA_LAYER_W16_K = 1, MHA_LAYER_W16_V = 2, MHA_LAYER_W16_O = 3 };

#endif
