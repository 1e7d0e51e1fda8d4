/*
 * The layer's plan: validation of its descriptor and the weights packed
 * once (mha_layer_create); the forward is in layer-forward.c.
 *
 * Packed weights: one panel matrix per input width. When d_kv == d_model,
 * W_q | W_k | W_v are packed side by side into one matrix, each part
 * starting on a panel boundary (padded to NR columns with zeros), so
 * self-attention is one fused GEMM, and the Q-only, K-only, V-only and K|V
 * projections are views of it (a range of panels). Otherwise W_q and W_k | W_v
 * are two matrices.
 *
 * The projections are written into [B·T, width] buffers whose columns are
 * the heads side by side: head h of Q is the view {T·ld, D, ld} at column
 * h·D, exactly the [B, T, H, D] layout the core reads; nothing is copied
 * apart. The core writes its output the same way ([B, Tq, H, Dv]) into the
 * concatenation buffer that the output projection reads (or straight into
 * the caller's out when W_o is NULL).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/layer-plan.h"

static int64_t mha_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* A view of panels [p0, p0 + cols/nr) of a packed matrix. */
static mha_packed_w mha_panels(const mha_packed_w* w, int64_t col0, int64_t cols) {
  mha_packed_w v = *w;
  v.data = w->data + (col0 / (int64_t)w->nr) * w->K * (int64_t)w->nr;
  v.N = cols;
  return v;
}

static mha_status mha_layer_validate(const mha_layer_desc* d, int64_t* d_kv, int64_t* Hkv,
                                     int64_t* D, int64_t* Dv) {
  static const char fn[] = "mha_layer_create";
  if (d->d_model < 1) return mha_error(MHA_STATUS_INVALID_SIZE, "%s: d_model = %lld, must be >= 1", fn, (long long)d->d_model);
  if (d->H < 1) return mha_error(MHA_STATUS_INVALID_SIZE, "%s: H = %lld, must be >= 1", fn, (long long)d->H);
  if (d->d_kv < 0 || d->Hkv < 0 || d->D < 0 || d->Dv < 0) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: d_kv, Hkv, D and Dv must be >= 0 (0: default)", fn);
  }
  if (d->layout != MHA_WEIGHTS_IN_OUT && d->layout != MHA_WEIGHTS_OUT_IN) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: layout = %d is not an mha_weight_layout", fn, (int)d->layout);
  }
  if (d->dtype != MHA_DTYPE_F32 && d->dtype != MHA_DTYPE_F16 && d->dtype != MHA_DTYPE_BF16) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: dtype = %d is not F32, F16 or BF16", fn, (int)d->dtype);
  }
  *d_kv = d->d_kv ? d->d_kv : d->d_model;
  *Hkv = d->Hkv ? d->Hkv : d->H;
  if (d->H % *Hkv != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: H (%lld) is not a multiple of Hkv (%lld)", fn, (long long)d->H, (long long)*Hkv);
  }
  if (d->D == 0 && d->d_model % d->H != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: d_model (%lld) is not a multiple of H (%lld); set D explicitly", fn,
                     (long long)d->d_model, (long long)d->H);
  }
  *D = d->D ? d->D : d->d_model / d->H;
  *Dv = d->Dv ? d->Dv : *D;
  int64_t t;
  if (!mha_mul_i64(d->H, *D, &t) || !mha_mul_i64(t, d->d_model, &t) ||
      !mha_mul_i64(d->H, *Dv, &t) || !mha_mul_i64(t, d->d_model, &t) ||
      !mha_add_i64(*D, *Dv, &t) || !mha_mul_i64(*Hkv, t, &t) || !mha_mul_i64(t, *d_kv, &t) ||
      !mha_mul_i64(t, 2 * (int64_t)sizeof(float), &t)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the weight sizes overflow", fn);
  }
  if (d->in_proj_weight != NULL) {
    if (d->w_q || d->w_k || d->w_v || d->b_q || d->b_k || d->b_v) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: in_proj_weight excludes w_q, w_k, w_v, b_q, b_k, b_v", fn);
    }
    if (*d_kv != d->d_model || *Hkv != d->H || *D * d->H != d->d_model || *Dv != *D) {
      return mha_error(MHA_STATUS_INVALID_SHAPE,
                       "%s: in_proj_weight needs d_kv == d_model, Hkv == H and D == Dv == d_model / H", fn);
    }
  } else {
    if (d->in_proj_bias != NULL) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: in_proj_bias needs in_proj_weight", fn);
    }
    if (d->w_q == NULL || d->w_k == NULL || d->w_v == NULL) {
      return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL (and no in_proj_weight)", fn,
                       d->w_q == NULL ? "w_q" : d->w_k == NULL ? "w_k" : "w_v");
    }
  }
  if (d->w_o == NULL && d->b_o != NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: b_o given without w_o", fn);
  }
  return MHA_STATUS_SUCCESS;
}

void mha_layer_destroy(mha_layer* L) {
  if (L == NULL) return;
  mha_packed_w_free(&L->wq_alloc);
  mha_packed_w_free(&L->wkv_alloc);
  mha_packed_w_free(&L->wo);
  free(L->bqkv);
  free(L->bo);
  for (int i = 0; i < 4; i++) mha_packed_bf16_free(&L->w16[i]);
  free(L);
}

mha_status mha_layer_create(const mha_layer_desc* caller, mha_layer** out) {
  static const char fn[] = "mha_layer_create";
  if (out == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: layer is NULL", fn);
  *out = NULL;
  mha_layer_desc read;
  mha_status st = mha_layer_desc_read(fn, caller, &read);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_layer_desc* desc = &read;
  int64_t d_kv = 0, Hkv = 0, D = 0, Dv = 0;
  st = mha_layer_validate(desc, &d_kv, &Hkv, &D, &Dv);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_kernels* kr;
  if ((st = mha_kernels_resolve(fn, desc->isa, &kr)) != MHA_STATUS_SUCCESS) return st;

  mha_layer* L = calloc(1, sizeof *L);
  if (L == NULL) return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate the plan", fn);
  const int64_t nr = (int64_t)kr->gemm_nr, dm = desc->d_model, H = desc->H;
  L->kr = kr;
  L->d_model = dm;
  L->d_kv = d_kv;
  L->H = H;
  L->Hkv = Hkv;
  L->D = D;
  L->Dv = Dv;
  L->nq = mha_round_up(H * D, nr);
  L->nk = mha_round_up(Hkv * D, nr);
  L->nv = mha_round_up(Hkv * Dv, nr);

  /* where each weight's element (in, out) lives: IN_OUT is w[in·n_out + out],
   * counted in elements of desc->dtype (4 or 2 bytes) */
  const mha_dtype dt = desc->dtype;
  const size_t esz = dt == MHA_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t);
  const int out_in = desc->layout == MHA_WEIGHTS_OUT_IN;
  const void *wq = desc->w_q, *wk = desc->w_k, *wv = desc->w_v;
  int64_t sq_k = out_in ? 1 : H * D, sq_n = out_in ? dm : 1;
  int64_t sk_k = out_in ? 1 : Hkv * D, sk_n = out_in ? d_kv : 1;
  int64_t sv_k = out_in ? 1 : Hkv * Dv, sv_n = out_in ? d_kv : 1;
  if (desc->in_proj_weight != NULL) { /* [3·d_model, d_model], nn.Linear layout */
    wq = desc->in_proj_weight;
    wk = (const char*)wq + (size_t)(dm * dm) * esz;
    wv = (const char*)wk + (size_t)(dm * dm) * esz;
    sq_k = sk_k = sv_k = 1;
    sq_n = sk_n = sv_n = dm;
  }

  const int fused = d_kv == dm;
  if (fused) {
    if ((st = mha_packed_w_alloc(kr, dm, L->nq + L->nk + L->nv, &L->wq_alloc)) != MHA_STATUS_SUCCESS) goto fail;
    L->wqkv = L->wq_alloc;
    L->wq = mha_panels(&L->wqkv, 0, L->nq);
    L->wkv = mha_panels(&L->wqkv, L->nq, L->nk + L->nv);
  } else {
    if ((st = mha_packed_w_alloc(kr, dm, L->nq, &L->wq_alloc)) != MHA_STATUS_SUCCESS) goto fail;
    if ((st = mha_packed_w_alloc(kr, d_kv, L->nk + L->nv, &L->wkv_alloc)) != MHA_STATUS_SUCCESS) goto fail;
    L->wq = L->wq_alloc;
    L->wkv = L->wkv_alloc;
  }
  L->wk = mha_panels(&L->wkv, 0, L->nk);
  L->wv = mha_panels(&L->wkv, L->nk, L->nv);
  mha_packed_w_fill(&L->wq, 0, H * D, wq, dt, sq_k, sq_n);
  mha_packed_w_fill(&L->wkv, 0, Hkv * D, wk, dt, sk_k, sk_n);
  mha_packed_w_fill(&L->wkv, L->nk, Hkv * Dv, wv, dt, sv_k, sv_n);

  const void *bq = desc->b_q, *bk = desc->b_k, *bv = desc->b_v;
  if (desc->in_proj_bias != NULL) {
    bq = desc->in_proj_bias;
    bk = (const char*)bq + (size_t)dm * esz;
    bv = (const char*)bk + (size_t)dm * esz;
  }
  if (bq || bk || bv) {
    L->bqkv = calloc((size_t)(L->nq + L->nk + L->nv), sizeof(float));
    if (L->bqkv == NULL) { st = mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate biases", fn); goto fail; }
    if (bq) mha_widen_row(kr, dt, bq, 1.0f, (size_t)(H * D), L->bqkv);
    if (bk) mha_widen_row(kr, dt, bk, 1.0f, (size_t)(Hkv * D), L->bqkv + L->nq);
    if (bv) mha_widen_row(kr, dt, bv, 1.0f, (size_t)(Hkv * Dv), L->bqkv + L->nq + L->nk);
  }
  if (desc->w_o != NULL) {
    L->has_wo = 1;
    const int64_t so_k = out_in ? 1 : dm, so_n = out_in ? H * Dv : 1;
    if ((st = mha_pack_w(kr, H * Dv, dm, desc->w_o, dt, so_k, so_n, &L->wo)) != MHA_STATUS_SUCCESS) goto fail;
    if (desc->b_o != NULL) {
      L->bo = malloc((size_t)dm * sizeof(float));
      if (L->bo == NULL) { st = mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate b_o", fn); goto fail; }
      mha_widen_row(kr, dt, desc->b_o, 1.0f, (size_t)dm, L->bo);
    }
  }
  if (dt == MHA_DTYPE_BF16 && kr->bf16_gemm != NULL) {
    /* the BF16 form's panels: the weights as given, packed for the unit */
    const void* w[4] = {wq, wk, wv, desc->w_o};
    const int64_t K[4] = {dm, d_kv, d_kv, H * Dv}, N[4] = {H * D, Hkv * D, Hkv * Dv, dm};
    const int64_t sk[4] = {sq_k, sk_k, sv_k, out_in ? 1 : dm}, sn[4] = {sq_n, sk_n, sv_n, out_in ? H * Dv : 1};
    for (int i = 0; i < 4; i++) {
      if (w[i] == NULL) continue; /* no W_o */
      if ((st = mha_packed_bf16_alloc(kr, K[i], N[i], &L->w16[i])) != MHA_STATUS_SUCCESS ||
          (st = mha_packed_bf16_fill(kr, &L->w16[i], w[i], dt, sk[i], sn[i])) != MHA_STATUS_SUCCESS) {
        goto fail;
      }
    }
    L->bf16_form = 1;
  }
  *out = L;
  return MHA_STATUS_SUCCESS;
fail:
  mha_layer_destroy(L);
  return st;
}

mha_isa mha_layer_isa(const mha_layer* L) { return L == NULL ? MHA_ISA_SCALAR : L->kr->isa; }

int64_t mha_layer_output_width(const mha_layer* L) {
  if (L == NULL) return 0;
  return L->has_wo ? L->d_model : L->H * L->Dv;
}

void mha_layer_desc_init_sized(mha_layer_desc* caller, size_t size) {
  mha_layer_desc d;
  memset(&d, 0, sizeof d);
  mha_struct_init(caller, size, &d, sizeof d);
}

