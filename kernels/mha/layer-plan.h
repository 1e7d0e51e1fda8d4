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
};

#endif
