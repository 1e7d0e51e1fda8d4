/*
 * The layer's BF16 form (mha.h, "The layer's BF16 form"): a forward with bf16
 * x_q, x_k, x_v and out on a plan made from bf16 weights for a kernel set
 * with a BF16 matrix unit. Per chunk of batch entries:
 *
 *   1. the projections on the unit (gemm-bf16.c): A = the caller's bf16 rows,
 *      packed once per input (self-attention: x_q once for Q, K and V), W the
 *      plan's bf16 panels; fp32 accumulators, + bias in fp32;
 *   2. Q, K and V rounded once to bf16 by the GEMM as each tile is done, in
 *      the fp32 path's layout (head h of Q at column h·D of a row of ldq);
 *      the fp32 K and V are kept only for the K/V cache output, which
 *      rounds them to its own dtype (for a bf16 cache the same values the
 *      attention reads);
 *   3. the core's BF16 form on them (attention-bf16.c), its output rounded to
 *      bf16: the concatenation, or the caller's out without W_o;
 *   4. the output projection on the unit from the bf16 concatenation, + b_o,
 *      each value rounded once into out as its tile is done.
 *
 * Every element sees the same operations whatever the chunking, the batch
 * and the threads: the GEMM's elements are one micro-kernel call each, and
 * the core's schedule is a function of one entry's shape.
 */
#include "mha/layer-plan.h"

mha_status mha_layer_chunk_bf16(const mha_layer* L, const mha_layer_args* a, const mha_layer_call* c, int64_t b0,
                                int64_t nb, float* buf, mha_tracer* tracer) {
  const mha_kernels* kr = L->kr;
  const mha_team team = {a->threadpool, c->nthreads, tracer};
  const int64_t rows_q = nb * c->Tq, rows_k = nb * c->Tk, ldq = c->ldq, ldkv = c->ldkv;
  const int64_t width = mha_layer_output_width(L), H = L->H, Hkv = L->Hkv, D = L->D, Dv = L->Dv;
  const uint16_t* x_q = (const uint16_t*)a->x_q + b0 * c->Tq * L->d_model;
  const uint16_t* x_k = a->x_k ? (const uint16_t*)a->x_k + b0 * c->Tk * L->d_kv : NULL;
  const uint16_t* x_v = a->x_v ? (const uint16_t*)a->x_v + b0 * c->Tk * L->d_kv : NULL;
  uint16_t* out16 = (uint16_t*)a->out + b0 * c->Tq * width;
  /* the workspace: the fp32 projections (n_p32: only with a K/V cache
   * output, which takes the fp32 K and V: kvbuf NULL without one), the
   * bf16 concatenation in the fp32 one's part, then (n_x) the bf16
   * projections and packed A, the core's part */
  float* kvbuf = c->n_p32 == 0 ? NULL : c->self ? buf + L->nq : buf + c->n_q;
  uint16_t* cat16 = (uint16_t*)(buf + c->n_p32);
  uint16_t* q16 = (uint16_t*)(buf + c->n_p32 + c->n_cat);
  uint16_t* kv16 = c->self ? q16 + L->nq : q16 + c->n_q;
  uint16_t* ap = (uint16_t*)mha_align64(buf + c->n_p32 + c->n_cat + (c->n_q + c->n_kv + 1) / 2);
  float* attn_ws = mha_align64(buf + c->n_p32 + c->n_cat + c->n_x + c->n_out);
  const float* bq = L->bqkv;
  const float* bk = L->bqkv ? L->bqkv + L->nq : NULL;
  const float* bv = L->bqkv ? L->bqkv + L->nq + L->nk : NULL;
  const mha_packed_bf16* w = L->w16;

  /* 1. the projections: three GEMMs, traced as 0 Q, 1 K, 2 V (mha.h); each
   * tile also rounded once to bf16 as it is done (2.). Only the bf16 Q, K
   * and V are written, and the fp32 K and V where the cache takes them. */
  float* vf = kvbuf != NULL ? kvbuf + L->nk : NULL;
  mha_trace_gemm(tracer, 0);
  const uint16_t* aq = mha_gemm_bf16_pack(kr, rows_q, x_q, L->d_model, L->d_model, ap, team);
  mha_gemm_bf16_packed(kr, rows_q, aq, &w[MHA_LAYER_W16_Q], bq, NULL, ldq, q16, team);
  if (c->self) {
    mha_trace_gemm(tracer, 1);
    mha_gemm_bf16_packed(kr, rows_q, aq, &w[MHA_LAYER_W16_K], bk, kvbuf, ldq, kv16, team);
    mha_trace_gemm(tracer, 2);
    mha_gemm_bf16_packed(kr, rows_q, aq, &w[MHA_LAYER_W16_V], bv, vf, ldq, kv16 + L->nk, team);
  } else {
    mha_trace_gemm(tracer, 1);
    const uint16_t* ak = mha_gemm_bf16_pack(kr, rows_k, x_k, L->d_kv, L->d_kv, ap, team);
    mha_gemm_bf16_packed(kr, rows_k, ak, &w[MHA_LAYER_W16_K], bk, kvbuf, ldkv, kv16, team);
    mha_trace_gemm(tracer, 2);
    if (x_v != NULL) ak = mha_gemm_bf16_pack(kr, rows_k, x_v, L->d_kv, L->d_kv, ap, team);
    mha_gemm_bf16_packed(kr, rows_k, ak, &w[MHA_LAYER_W16_V], bv, vf, ldkv, kv16 + L->nk, team);
  }

  /* 3. the core on this chunk's entries of the masks and weights */
  mha_attention_desc cd = c->cd;
  cd.B = nb;
  if (cd.mask.kv_len != NULL) cd.mask.kv_len += b0;
  if (cd.mask.additive != NULL) cd.mask.additive += b0 * cd.mask.additive_strides.batch;
  float* weights = a->weights ? a->weights + b0 * mha_weights_slots(&cd) * c->Tq * c->Tk : NULL;
  const mha_kv_cache kv = mha_kv_cache_over_views(MHA_DTYPE_BF16, kv16, kv16 + L->nk, cd.k, cd.v, c->Tk);
  mha_status st = mha_attention_run(kr, &cd, q16, NULL, NULL, &kv, MHA_DTYPE_BF16, L->has_wo ? cat16 : out16,
                                    weights, team, attn_ws);
  if (st == MHA_STATUS_SUCCESS && a->kv_cache != NULL) {
    mha_kv_cache_store(kr, a->kv_cache, b0, nb, Hkv, c->Tk, D, Dv, a->kv_pos, kvbuf, &cd.k, kvbuf + L->nk, &cd.v);
  }
  /* 4. the output projection, each value rounded once */
  if (st == MHA_STATUS_SUCCESS && L->has_wo) {
    mha_trace_gemm(tracer, 3);
    const uint16_t* ao = mha_gemm_bf16_pack(kr, rows_q, cat16, H * Dv, H * Dv, ap, team);
    mha_gemm_bf16_packed(kr, rows_q, ao, &w[MHA_LAYER_W16_O], L->bo, NULL, L->d_model, out16, team);
  }
  return st;
}
