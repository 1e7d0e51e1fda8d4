/*
 * The tensor-parallel layer over MPI (mha_mpi.h, mha_mpi_layer_*): each rank
 * packs its heads' slices of the weights into an ordinary plan, runs it,
 * and the output projection's partial sums are added in rank order.
 */
#include <stdlib.h>
#include <string.h>

#include "mha/internal.h"
#include "mpi/mpi-internal.h"

struct mha_mpi_layer {
  mha_mpi_comm c;     /* the layer's own communicator, for its lifetime */
  mha_layer* local;   /* this rank's heads */
  int64_t H, h0, Hl;  /* all heads, this rank's first, how many */
  int64_t d_model, d_kv;
};

/* Columns [c0, c0 + n) of a [rows, ld] row-major matrix, as a new [rows, n] one. */
static float* mha_columns(const float* w, int64_t rows, int64_t ld, int64_t c0, int64_t n) {
  float* s = malloc((size_t)(rows * n) * sizeof(float));
  if (s == NULL) return NULL;
  for (int64_t r = 0; r < rows; r++) memcpy(s + r * n, w + r * ld + c0, (size_t)n * sizeof(float));
  return s;
}

/* Rows [r0, r0 + n) of a [rows, cols] row-major matrix, transposed: a new [cols, n] one. */
static float* mha_rows_transposed(const float* w, int64_t cols, int64_t r0, int64_t n) {
  float* s = malloc((size_t)(cols * n) * sizeof(float));
  if (s == NULL) return NULL;
  for (int64_t c = 0; c < cols; c++)
    for (int64_t r = 0; r < n; r++) s[c * n + r] = w[(r0 + r) * cols + c];
  return s;
}

/* The weights of this rank's heads: in desc form (slices read in place, or
 * copies kept in owned[] to free after packing). */
static mha_status mha_mpi_layer_slice(const char* fn, const mha_layer_desc* d, int rank, int size,
                                      mha_layer_desc* l, float* owned[4], int64_t* h0, int64_t* Hl) {
  const int64_t H = d->H, Hkv = d->Hkv ? d->Hkv : d->H, d_kv = d->d_kv ? d->d_kv : d->d_model;
  if (d->d_model < 1 || H < 1) return mha_error(MHA_STATUS_INVALID_SIZE, "%s: d_model and H must be >= 1", fn);
  if (H % size != 0 || Hkv % size != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: H (%lld) and Hkv (%lld) must be multiples of the ranks (%d)", fn,
                     (long long)H, (long long)Hkv, size);
  }
  if (d->w_o == NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: w_o is NULL (the concatenated heads are not gathered)", fn);
  }
  if (d->dtype != MHA_DTYPE_F32) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: dtype = %d: whole weights are sliced as fp32 only (pass 16-bit weights pre-sliced)", fn,
                     (int)d->dtype);
  }
  if (d->D == 0 && d->d_model % H != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: d_model (%lld) is not a multiple of H (%lld)", fn,
                     (long long)d->d_model, (long long)H);
  }
  const int64_t D = d->D ? d->D : d->d_model / H, Dv = d->Dv ? d->Dv : D;
  const int64_t hl = H / size, gl = Hkv / size, q0 = rank * hl, g0 = rank * gl;
  *l = *d;
  l->H = hl;
  l->Hkv = gl;
  l->D = D;
  l->Dv = Dv;
  l->d_kv = d_kv;
  const float *wq = d->w_q, *wk = d->w_k, *wv = d->w_v, *bq = d->b_q, *bk = d->b_k, *bv = d->b_v;
  if (d->in_proj_weight != NULL) {
    /* [3·d_model, d_model], OUT_IN: the q, k and v row blocks */
    if (wq != NULL || wk != NULL || wv != NULL) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: in_proj_weight and w_q/w_k/w_v are both given", fn);
    }
    wq = d->in_proj_weight;
    wk = d->in_proj_weight + d->d_model * d->d_model;
    wv = d->in_proj_weight + 2 * d->d_model * d->d_model;
    l->layout = MHA_WEIGHTS_OUT_IN; /* in_proj is OUT_IN: the local plan takes W_o so too */
    if (d->in_proj_bias != NULL) {
      bq = d->in_proj_bias;
      bk = d->in_proj_bias + d->d_model;
      bv = d->in_proj_bias + 2 * d->d_model;
    }
    l->in_proj_weight = NULL;
    l->in_proj_bias = NULL;
  }
  if (wq == NULL || wk == NULL || wv == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: a projection weight is NULL", fn);
  memset(owned, 0, 4 * sizeof(float*));
  if (d->layout == MHA_WEIGHTS_OUT_IN || d->in_proj_weight != NULL) {
    l->w_q = wq + q0 * D * d->d_model;
    l->w_k = wk + g0 * D * d_kv;
    l->w_v = wv + g0 * Dv * d_kv;
    /* W_o's slice as OUT_IN [d_model, hl·Dv]: its columns, or (in_proj with
     * an IN_OUT W_o) its rows transposed */
    l->w_o = owned[3] = d->layout == MHA_WEIGHTS_OUT_IN ? mha_columns(d->w_o, d->d_model, H * Dv, q0 * Dv, hl * Dv)
                                                        : mha_rows_transposed(d->w_o, d->d_model, q0 * Dv, hl * Dv);
  } else {
    l->w_q = owned[0] = mha_columns(wq, d->d_model, H * D, q0 * D, hl * D);
    l->w_k = owned[1] = mha_columns(wk, d_kv, Hkv * D, g0 * D, gl * D);
    l->w_v = owned[2] = mha_columns(wv, d_kv, Hkv * Dv, g0 * Dv, gl * Dv);
    l->w_o = d->w_o + q0 * Dv * d->d_model;
    if (owned[0] == NULL || owned[1] == NULL || owned[2] == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate the weights' slices", fn);
    }
  }
  if (l->w_o == NULL) return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate W_o's slice", fn);
  l->b_q = bq != NULL ? bq + q0 * D : NULL;
  l->b_k = bk != NULL ? bk + g0 * D : NULL;
  l->b_v = bv != NULL ? bv + g0 * Dv : NULL;
  l->b_o = rank == 0 ? d->b_o : NULL; /* added once, in rank 0's partial */
  *h0 = q0;
  *Hl = hl;
  return MHA_STATUS_SUCCESS;
}

mha_status mha_mpi_layer_create(MPI_Comm comm, const mha_layer_desc* caller, mha_mpi_weights weights,
                                mha_mpi_layer** out) {
  static const char fn[] = "mha_mpi_layer_create";
  if (out != NULL) *out = NULL;
  mha_mpi_layer* L = calloc(1, sizeof *L);
  if (L == NULL) return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate the layer", fn);
  mha_status st = mha_mpi_begin(fn, comm, &L->c);
  if (st != MHA_STATUS_SUCCESS) {
    free(L);
    return st;
  }
  mha_layer_desc d, l;
  memset(&d, 0, sizeof d);
  float* owned[4] = {NULL, NULL, NULL, NULL};
  st = out == NULL ? mha_error(MHA_STATUS_NULL_POINTER, "%s: layer is NULL", fn) : mha_layer_desc_read(fn, caller, &d);
  if (st == MHA_STATUS_SUCCESS) {
    if (weights == MHA_MPI_WEIGHTS_WHOLE) {
      st = mha_mpi_layer_slice(fn, &d, L->c.rank, L->c.size, &l, owned, &L->h0, &L->Hl);
    } else if (weights == MHA_MPI_WEIGHTS_SLICED) {
      /* this rank's slice as it is: its heads follow the ranks before it */
      l = d;
      l.b_o = L->c.rank == 0 ? d.b_o : NULL; /* added once, in rank 0's partial */
      L->Hl = d.H;
      L->h0 = (int64_t)L->c.rank * d.H;
      if (d.w_o == NULL) {
        st = mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: w_o is NULL (the concatenated heads are not gathered)", fn);
      }
    } else {
      st = mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: weights = %d is not an mha_mpi_weights", fn, (int)weights);
    }
  }
  if (st == MHA_STATUS_SUCCESS) st = mha_layer_create(&l, &L->local);
  for (int i = 0; i < 4; i++) free(owned[i]);
  const int64_t fields[] = {d.d_model, d.d_kv, d.H, d.Hkv, d.D, d.Dv, (int64_t)d.layout, d.w_o != NULL,
                            d.in_proj_weight != NULL, d.b_o != NULL, (int64_t)weights, (int64_t)d.dtype};
  static const char* const names[] = {"d_model", "d_kv", "H", "Hkv", "D", "Dv", "layout", "w_o", "in_proj_weight",
                                      "b_o", "weights", "dtype"};
  st = mha_mpi_agree(fn, &L->c, st, fields, names, (int)(sizeof fields / sizeof fields[0]));
  if (st != MHA_STATUS_SUCCESS) {
    mha_mpi_layer_destroy(L);
    return st;
  }
  L->H = weights == MHA_MPI_WEIGHTS_SLICED ? d.H * L->c.size : d.H;
  L->d_model = d.d_model;
  L->d_kv = d.d_kv ? d.d_kv : d.d_model;
  *out = L;
  return MHA_STATUS_SUCCESS;
}

void mha_mpi_layer_destroy(mha_mpi_layer* L) {
  if (L == NULL) return;
  mha_layer_destroy(L->local);
  mha_mpi_end(&L->c);
  free(L);
}

mha_status mha_mpi_layer_forward(const mha_mpi_layer* L, const mha_layer_args* caller) {
  static const char fn[] = "mha_mpi_layer_forward";
  if (L == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: layer is NULL", fn);
  memset(&mha_mpi_timing_now, 0, sizeof mha_mpi_timing_now);
  const double start = MPI_Wtime();
  mha_layer_args a;
  memset(&a, 0, sizeof a);
  mha_status st = mha_layer_args_read(fn, caller, &a);
  float *part = NULL, *all = NULL, *wide = NULL;
  size_t n = 0, nq = 0, nk = 0;
  if (st == MHA_STATUS_SUCCESS) {
    if (a.out == NULL || a.x_q == NULL) {
      st = mha_error(MHA_STATUS_NULL_POINTER, "%s: args->%s is NULL", fn, a.out == NULL ? "out" : "x_q");
    } else if (a.weights != NULL) {
      st = mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: args->weights is not supported", fn);
    } else if (a.kv_cache != NULL) {
      st = mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: args->kv_cache is not supported", fn);
    } else if (a.dtype != MHA_DTYPE_F32 && a.dtype != MHA_DTYPE_F16 && a.dtype != MHA_DTYPE_BF16) {
      st = mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: args->dtype = %d, must be MHA_DTYPE_F32, F16 or BF16", fn,
                     (int)a.dtype);
    }
  }
  if (st == MHA_STATUS_SUCCESS) {
    int64_t rows, krows = 0;
    if (a.B < 1 || a.Tq < 1 || (a.x_k != NULL && a.Tk < 1)) {
      st = mha_error(MHA_STATUS_INVALID_SIZE, "%s: B, Tq (and Tk with x_k) must be >= 1", fn);
    } else if (!mha_mul_i64(a.B, a.Tq, &rows) || !mha_mul_i64(rows, L->d_model, &rows) ||
               rows > INT32_MAX / L->c.size ||
               (a.x_k != NULL && (!mha_mul_i64(a.B, a.Tk, &krows) || !mha_mul_i64(krows, L->d_kv, &krows) ||
                                  krows > INT32_MAX))) {
      st = mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: B·Tq·d_model·ranks exceeds one MPI message", fn);
    } else {
      n = (size_t)rows;
      part = malloc(n * sizeof(float));
      all = malloc(n * (size_t)L->c.size * sizeof(float));
      if (a.dtype != MHA_DTYPE_F32) { /* 16-bit x: widened here, the local forward in fp32 */
        nq = n;
        nk = (size_t)krows;
        wide = malloc((nq + nk * (a.x_v != NULL ? 2 : 1)) * sizeof(float) + 1);
      }
      if (part == NULL || all == NULL || (a.dtype != MHA_DTYPE_F32 && wide == NULL)) {
        st = mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate the partials", fn);
      }
    }
  }
  const int64_t fields[] = {a.B, a.Tq, a.x_k != NULL ? a.Tk : 0, a.x_k != NULL, a.x_v != NULL, a.mask.causal,
                            a.mask.kv_len != NULL, a.mask.additive != NULL, (int64_t)a.dtype};
  static const char* const names[] = {"B", "Tq", "Tk", "x_k", "x_v", "mask.causal", "mask.kv_len", "mask.additive",
                                      "dtype"};
  st = mha_mpi_agree(fn, &L->c, st, fields, names, (int)(sizeof fields / sizeof fields[0]));
  if (st == MHA_STATUS_SUCCESS) {
    /* this rank's heads: its part of the per-head masks */
    mha_layer_args l = a;
    if (l.mask.additive != NULL) l.mask.additive += L->h0 * l.mask.additive_strides.head;
    if (l.mask.alibi_slopes != NULL) l.mask.alibi_slopes += L->h0;
    if (l.mask.sinks != NULL) l.mask.sinks += L->h0;
    l.out = part;
    /* the local plan's kernel set widens and rounds (exact, and to nearest even) */
    const mha_kernels* kr = mha_kernels_for(mha_layer_isa(L->local));
    if (wide != NULL) {
      /* x_q, x_k, x_v widened exactly: out = round(the fp32 forward on them) */
      mha_widen_row(kr, a.dtype, a.x_q, 1.0f, nq, wide);
      l.x_q = wide;
      if (a.x_k != NULL) {
        mha_widen_row(kr, a.dtype, a.x_k, 1.0f, nk, wide + nq);
        l.x_k = wide + nq;
      }
      if (a.x_v != NULL) {
        mha_widen_row(kr, a.dtype, a.x_v, 1.0f, nk, wide + nq + nk);
        l.x_v = wide + nq + nk;
      }
      l.dtype = MHA_DTYPE_F32;
    }
    l.workspace = NULL;
    l.workspace_size = 0;
    l.trace = NULL;
    double t0 = MPI_Wtime();
    mha_status local = mha_layer_forward(L->local, &l);
    mha_mpi_lap(&t0, &mha_mpi_timing_now.compute_s);
    st = mha_mpi_check(fn, "MPI_Allgather (the partial outputs)",
                       MPI_Allgather(part, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, L->c.comm));
    mha_mpi_lap(&t0, &mha_mpi_timing_now.wait_s);
    if (st == MHA_STATUS_SUCCESS) st = mha_mpi_agree(fn, &L->c, local, NULL, NULL, 0);
    if (st == MHA_STATUS_SUCCESS) {
      /* the sum in rank order: the same bits on every rank (16-bit out:
       * summed in fp32, each value rounded once) */
      float* sum = wide != NULL ? part : a.out;
      memcpy(sum, all, n * sizeof(float));
      for (int r = 1; r < L->c.size; r++) {
        const float* p = all + (size_t)r * n;
        for (size_t i = 0; i < n; i++) sum[i] += p[i];
      }
      if (wide != NULL) mha_narrow_row(kr, a.dtype, n, sum, a.out);
      mha_mpi_lap(&t0, &mha_mpi_timing_now.compute_s);
    }
  }
  free(part), free(all), free(wide);
  mha_mpi_timing_now.total_s = MPI_Wtime() - start;
  return st;
}
