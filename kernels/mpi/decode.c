/*
 * Sequence-parallel decode over MPI (mha_mpi.h, mha_mpi_decode_f32 and
 * mha_mpi_decode_kv_f32): each rank attends over its part of the keys (views
 * or its K/V cache), then one MPI_Allgather of the partial (out, lse) and a
 * merge in rank order give every rank the result.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/internal.h"
#include "mpi/mpi-internal.h"

/* Both entry points: the keys in desc's views k, v, or (kv) in cache. */
static mha_status mha_mpi_decode(const char* fn, MPI_Comm comm, const mha_attention_desc* caller, const float* q,
                                 const float* k, const float* v, int kv, const mha_kv_cache* cache, float* out) {
  mha_mpi_comm c;
  mha_status st = mha_mpi_begin(fn, comm, &c);
  if (st != MHA_STATUS_SUCCESS) return st;
  mha_attention_desc d;
  memset(&d, 0, sizeof d);
  size_t rows = 0, per = 0;
  float *parts = NULL, *mine = NULL;
  int64_t* tk = NULL;
  const float** outs = NULL;
  const float** lses = NULL;
  st = mha_desc_read(fn, caller, &d);
  if (st == MHA_STATUS_SUCCESS && (q == NULL || out == NULL || (kv ? cache == NULL : (k == NULL || v == NULL)))) {
    st = mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                   q == NULL ? "q" : out == NULL ? "out" : kv ? "cache" : k == NULL ? "k" : "v");
  }
  if (st == MHA_STATUS_SUCCESS) st = mha_mpi_check_desc(fn, &d);
  size_t bytes;
  if (st == MHA_STATUS_SUCCESS) {
    st = cache != NULL ? mha_attention_kv_workspace_size(&d, cache, 0, &bytes) : mha_attention_workspace_size(&d, 0, &bytes);
  }
  if (st == MHA_STATUS_SUCCESS) {
    /* each rank's partial (out [B, H, Tq, Dv], lse [B, H, Tq]): one message */
    int64_t n;
    if (!mha_mul_i64(d.B * d.H, d.Tq, &n) || !mha_mul_i64(n, d.Dv + 1, &n) || n > INT_MAX / c.size) {
      st = mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the gathered partials B·H·Tq·(Dv + 1)·ranks overflow", fn);
    } else {
      rows = (size_t)(d.B * d.H * d.Tq);
      per = (size_t)n;
      mine = malloc(per * sizeof(float));
      parts = malloc(per * (size_t)c.size * sizeof(float));
      tk = malloc((size_t)c.size * sizeof(int64_t));
      outs = malloc((size_t)c.size * sizeof(float*));
      lses = malloc((size_t)c.size * sizeof(float*));
      if (mine == NULL || parts == NULL || tk == NULL || outs == NULL || lses == NULL) {
        st = mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate the gathered partials", fn);
      }
    }
  }
  const int64_t fields[] = {d.B, d.H, d.Hkv, d.Tq, d.D, d.Dv, d.mask.causal, d.mask.window, d.mask.window_left,
                            d.mask.window_right, d.mask.alibi_slopes != NULL, d.mask.sinks != NULL};
  static const char* const names[] = {"B", "H", "Hkv", "Tq", "D", "Dv", "mask.causal", "mask.window",
                                      "mask.window_left", "mask.window_right", "mask.alibi_slopes", "mask.sinks"};
  st = mha_mpi_agree(fn, &c, st, fields, names, (int)(sizeof fields / sizeof fields[0]));
  if (st == MHA_STATUS_SUCCESS) {
    /* the ranks' key counts: rank r's keys start at the sum of those before it */
    st = mha_mpi_check(fn, "MPI_Allgather (key counts)", MPI_Allgather(&d.Tk, 1, MPI_INT64_T, tk, 1, MPI_INT64_T, c.comm));
  }
  mha_status local = MHA_STATUS_SUCCESS;
  if (st == MHA_STATUS_SUCCESS) {
    int64_t k_off = 0, total = 0;
    for (int r = 0; r < c.size; r++) {
      if (r < c.rank) k_off += tk[r];
      total += tk[r];
    }
    mha_mpi_part pt;
    pt.q = q, pt.k = k, pt.v = v, pt.cache = cache;
    pt.qs = d.q, pt.ks = d.k, pt.vs = d.v;
    pt.nq = d.Tq, pt.nk = d.Tk;
    pt.gq = total - d.Tq; /* the queries are the sequence's last Tq positions */
    pt.gk = k_off;
    pt.with_sinks = c.rank == 0;
    double t0 = MPI_Wtime();
    const int r = mha_mpi_part_run(&d, &pt, mine, mine + rows * (size_t)d.Dv);
    if (r < 0) {
      local = (mha_status)(-r - 1);
    } else if (r == 1) { /* every key hidden: nothing to add */
      memset(mine, 0, rows * (size_t)d.Dv * sizeof(float));
      for (size_t i = 0; i < rows; i++) mine[rows * (size_t)d.Dv + i] = -INFINITY;
    }
    mha_mpi_lap(&t0, &mha_mpi_timing_now.compute_s);
    st = mha_mpi_check(fn, "MPI_Allgather (the partials)",
                       MPI_Allgather(mine, (int)per, MPI_FLOAT, parts, (int)per, MPI_FLOAT, c.comm));
    mha_mpi_lap(&t0, &mha_mpi_timing_now.wait_s);
  }
  if (st == MHA_STATUS_SUCCESS) st = mha_mpi_agree(fn, &c, local, NULL, NULL, 0);
  if (st == MHA_STATUS_SUCCESS) {
    /* the merge in rank order: the same bits on every rank */
    for (int r = 0; r < c.size; r++) {
      outs[r] = parts + (size_t)r * per;
      lses[r] = parts + (size_t)r * per + rows * (size_t)d.Dv;
    }
    float* merged = mine;
    double t0 = MPI_Wtime();
    st = mha_merge_f32(c.size, (int64_t)rows, d.Dv, outs, lses, merged, merged + rows * (size_t)d.Dv);
    mha_mpi_lap(&t0, &mha_mpi_timing_now.compute_s);
    if (st == MHA_STATUS_SUCCESS) mha_mpi_put_out(&d, out, 0, d.Tq, merged, merged + rows * (size_t)d.Dv);
  }
  free(mine), free(parts), free(tk), free(outs), free(lses);
  mha_mpi_end(&c);
  return st;
}

mha_status mha_mpi_decode_f32(MPI_Comm comm, const mha_attention_desc* desc, const float* q, const float* k,
                              const float* v, float* out) {
  return mha_mpi_decode("mha_mpi_decode_f32", comm, desc, q, k, v, 0, NULL, out);
}

mha_status mha_mpi_decode_kv_f32(MPI_Comm comm, const mha_attention_desc* desc, const float* q,
                                 const mha_kv_cache* cache, float* out) {
  return mha_mpi_decode("mha_mpi_decode_kv_f32", comm, desc, q, NULL, NULL, 1, cache, out);
}
