/*
 * Ring (context-parallel) attention over MPI (mha_mpi.h,
 * mha_mpi_ring_attention_f32): each rank keeps its queries and passes its
 * K/V block around the ring; per step it computes its queries against the
 * block it holds while the block moves on (MPI_Isend to rank + 1, MPI_Irecv
 * from rank − 1), and merges the partial (out, lse) in ring order.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/internal.h"
#include "mpi/mpi-internal.h"

/* A rank's tokens: one or two segments of the sequence (the split). */
typedef struct mha_ring_segs {
  int n;
  int64_t global[2], local[2], len;
} mha_ring_segs;

static mha_ring_segs mha_ring_segs_of(mha_mpi_split split, int rank, int size, int64_t T_local) {
  mha_ring_segs s;
  if (split == MHA_MPI_SPLIT_BALANCED) {
    const int64_t c = T_local / 2;
    s.n = 2;
    s.len = c;
    s.global[0] = (int64_t)rank * c;
    s.global[1] = (int64_t)(2 * size - 1 - rank) * c;
    s.local[0] = 0;
    s.local[1] = c;
  } else {
    s.n = 1;
    s.len = T_local;
    s.global[0] = s.global[1] = (int64_t)rank * T_local;
    s.local[0] = s.local[1] = 0;
  }
  return s;
}

/* This rank's checks, before the ranks agree: desc and the pointers, the
 * split, the sizes of the ring's messages. */
static mha_status mha_ring_check(const char* fn, mha_mpi_split split, const mha_attention_desc* caller,
                                 const float* q, const float* k, const float* v, const float* out,
                                 mha_attention_desc* d, size_t* block) {
  mha_status st = mha_desc_read(fn, caller, d);
  if (st != MHA_STATUS_SUCCESS) return st;
  if (q == NULL || k == NULL || v == NULL || out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     q == NULL ? "q" : k == NULL ? "k" : v == NULL ? "v" : "out");
  }
  if ((st = mha_mpi_check_desc(fn, d)) != MHA_STATUS_SUCCESS) return st;
  if (split != MHA_MPI_SPLIT_CONTIGUOUS && split != MHA_MPI_SPLIT_BALANCED) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: split = %d is not an mha_mpi_split", fn, (int)split);
  }
  if (d->Tq != d->Tk) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: Tq (%lld) != Tk (%lld): each rank holds the same tokens of Q, K, V",
                     fn, (long long)d->Tq, (long long)d->Tk);
  }
  if (split == MHA_MPI_SPLIT_BALANCED && d->Tq % 2 != 0) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: MHA_MPI_SPLIT_BALANCED needs an even Tq (%lld): two chunks per rank",
                     fn, (long long)d->Tq);
  }
  size_t bytes;
  if ((st = mha_attention_workspace_size(d, 0, &bytes)) != MHA_STATUS_SUCCESS) return st;
  /* one K/V block: B·Hkv·T·(D + Dv) floats, one MPI message (an int count) */
  int64_t n;
  if (!mha_mul_i64(d->B * d->Hkv, d->Tk, &n) || !mha_mul_i64(n, d->D + d->Dv, &n) || n > INT_MAX) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: a K/V block of B·Hkv·T·(D + Dv) floats exceeds one MPI message",
                     fn);
  }
  *block = (size_t)n;
  return MHA_STATUS_SUCCESS;
}

/* K and V of desc's views into one contiguous block: K [B, Hkv, T, D], then V [B, Hkv, T, Dv]. */
static void mha_ring_pack(const mha_attention_desc* d, const float* k, const float* v, float* block) {
  float* kb = block;
  float* vb = block + (size_t)(d->B * d->Hkv * d->Tk * d->D);
  for (int64_t b = 0; b < d->B; b++) {
    for (int64_t g = 0; g < d->Hkv; g++) {
      for (int64_t j = 0; j < d->Tk; j++) {
        const size_t row = (size_t)((b * d->Hkv + g) * d->Tk + j);
        memcpy(kb + row * (size_t)d->D, k + b * d->k.batch + g * d->k.head + j * d->k.row, (size_t)d->D * sizeof(float));
        memcpy(vb + row * (size_t)d->Dv, v + b * d->v.batch + g * d->v.head + j * d->v.row,
               (size_t)d->Dv * sizeof(float));
      }
    }
  }
}

mha_status mha_mpi_ring_attention_f32(MPI_Comm comm, mha_mpi_split split, const mha_attention_desc* caller,
                                      const float* q, const float* k, const float* v, float* out) {
  static const char fn[] = "mha_mpi_ring_attention_f32";
  mha_mpi_comm c;
  mha_status st = mha_mpi_begin(fn, comm, &c);
  if (st != MHA_STATUS_SUCCESS) return st;
  mha_attention_desc d;
  memset(&d, 0, sizeof d);
  size_t block = 0;
  st = mha_ring_check(fn, split, caller, q, k, v, out, &d, &block);
  /* the buffers: two K/V blocks, a part's (out, lse), each segment's running (out, lse) */
  float *kv[2] = {NULL, NULL}, *part = NULL, *run = NULL;
  size_t seg_rows = 0;
  if (st == MHA_STATUS_SUCCESS) {
    const int64_t seg = split == MHA_MPI_SPLIT_BALANCED ? d.Tq / 2 : d.Tq;
    seg_rows = (size_t)(d.B * d.H * seg);
    const size_t seg_floats = seg_rows * (size_t)(d.Dv + 1);
    kv[0] = malloc(block * sizeof(float));
    kv[1] = malloc(block * sizeof(float));
    part = malloc(seg_floats * sizeof(float));
    run = malloc(2 * seg_floats * sizeof(float));
    if (kv[0] == NULL || kv[1] == NULL || part == NULL || run == NULL) {
      st = mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate the ring's buffers (%zu bytes)", fn,
                     (2 * block + 3 * seg_floats) * sizeof(float));
    }
  }
  const int64_t fields[] = {d.B, d.H, d.Hkv, d.Tq, d.D, d.Dv, (int64_t)split, d.mask.causal, d.mask.window,
                            d.mask.window_left, d.mask.window_right, d.mask.alibi_slopes != NULL,
                            d.mask.sinks != NULL};
  static const char* const names[] = {"B", "H", "Hkv", "Tq", "D", "Dv", "split", "mask.causal", "mask.window",
                                      "mask.window_left", "mask.window_right", "mask.alibi_slopes",
                                      "mask.sinks"};
  st = mha_mpi_agree(fn, &c, st, fields, names, (int)(sizeof fields / sizeof fields[0]));
  if (st == MHA_STATUS_SUCCESS) {
    const mha_ring_segs mine = mha_ring_segs_of(split, c.rank, c.size, d.Tq);
    const size_t Dv = (size_t)d.Dv, kfloats = (size_t)(d.B * d.Hkv * d.Tk * d.D);
    float* run_out[2] = {run, run + seg_rows * Dv};
    float* run_lse[2] = {run + 2 * seg_rows * Dv, run + 2 * seg_rows * Dv + seg_rows};
    float *part_out = part, *part_lse = part + seg_rows * Dv;
    int have[2] = {0, 0};
    mha_status local = MHA_STATUS_SUCCESS;
    double t0 = MPI_Wtime();
    mha_ring_pack(&d, k, v, kv[0]);
    const int next = (c.rank + 1) % c.size, prev = (c.rank + c.size - 1) % c.size;
    int cur = 0;
    for (int s = 0; s < c.size; s++) {
      MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
      if (s + 1 < c.size) {
        /* the block moves on while this step computes with it */
        int rc = MPI_Isend(kv[cur], (int)block, MPI_FLOAT, next, s, c.comm, &req[0]);
        if (rc == MPI_SUCCESS) rc = MPI_Irecv(kv[1 - cur], (int)block, MPI_FLOAT, prev, s, c.comm, &req[1]);
        if (rc != MPI_SUCCESS && local == MHA_STATUS_SUCCESS) local = mha_mpi_check(fn, "MPI_Isend / MPI_Irecv", rc);
      }
      const int src = (c.rank - s + c.size) % c.size;
      const mha_ring_segs theirs = mha_ring_segs_of(split, src, c.size, d.Tq);
      const float* kb = kv[cur];
      const float* vb = kv[cur] + kfloats;
      for (int i = 0; i < mine.n && local == MHA_STATUS_SUCCESS; i++) {
        for (int j = 0; j < theirs.n && local == MHA_STATUS_SUCCESS; j++) {
          mha_mpi_part pt;
          pt.cache = NULL;
          pt.q = q + mine.local[i] * d.q.row;
          pt.qs = d.q;
          pt.k = kb + theirs.local[j] * d.D;
          pt.v = vb + theirs.local[j] * d.Dv;
          pt.ks = mha_strides_bhtd(d.Hkv, d.Tk, d.D);
          pt.vs = mha_strides_bhtd(d.Hkv, d.Tk, d.Dv);
          pt.nq = mine.len;
          pt.nk = theirs.len;
          pt.gq = mine.global[i];
          pt.gk = theirs.global[j];
          pt.with_sinks = pt.gq == pt.gk; /* the row's own segment: sinks once */
          const int r = mha_mpi_part_run(&d, &pt, have[i] ? part_out : run_out[i], have[i] ? part_lse : run_lse[i]);
          if (r < 0) {
            local = (mha_status)(-r - 1);
          } else if (r == 0 && have[i]) {
            const float* outs[2] = {run_out[i], part_out};
            const float* lses[2] = {run_lse[i], part_lse};
            local = mha_merge_f32(2, (int64_t)seg_rows, d.Dv, outs, lses, run_out[i], run_lse[i]);
          } else if (r == 0) {
            have[i] = 1;
          }
          int done;
          if (req[0] != MPI_REQUEST_NULL) MPI_Testall(2, req, &done, MPI_STATUSES_IGNORE); /* progress */
        }
      }
      mha_mpi_lap(&t0, &mha_mpi_timing_now.compute_s);
      const int rc = MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
      mha_mpi_lap(&t0, &mha_mpi_timing_now.wait_s);
      if (rc != MPI_SUCCESS && local == MHA_STATUS_SUCCESS) local = mha_mpi_check(fn, "MPI_Waitall", rc);
      cur = 1 - cur;
    }
    /* a failure in the ring (no rank stops passing blocks on) is every rank's */
    st = mha_mpi_agree(fn, &c, local, NULL, NULL, 0);
    if (st == MHA_STATUS_SUCCESS) {
      for (int i = 0; i < mine.n; i++) {
        if (!have[i]) { /* no key visible to any row: zeros, lse −inf */
          memset(run_out[i], 0, seg_rows * Dv * sizeof(float));
          for (size_t r = 0; r < seg_rows; r++) run_lse[i][r] = -INFINITY;
        }
        mha_mpi_put_out(&d, out, mine.local[i], mine.len, run_out[i], run_lse[i]);
      }
    }
  }
  free(kv[0]), free(kv[1]), free(part), free(run);
  mha_mpi_end(&c);
  return st;
}
