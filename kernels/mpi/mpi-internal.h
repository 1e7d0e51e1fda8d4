/* What the MPI component's calls share (kernels/mpi/): a private
 * communicator per call, the ranks' agreement before any data moves, MPI
 * errors as statuses, and one core call on a (query part, key part) pair at
 * global positions. */
#ifndef MHA_KERNELS_MPI_INTERNAL_H
#define MHA_KERNELS_MPI_INTERNAL_H

#include <mpi.h>

#include "mha.h"
#include "mha_mpi.h"

/* A call's communicator: a duplicate of the caller's (its messages never
 * meet the caller's) whose MPI errors return instead of aborting. */
typedef struct mha_mpi_comm {
  MPI_Comm comm;
  int rank, size;
} mha_mpi_comm;

/* The calling thread's timing of its current call (mha_mpi_last_timing). */
extern _Thread_local mha_mpi_timing mha_mpi_timing_now;

/* Duplicates comm (collective); starts the call's timing. Returns SUCCESS or
 * COMMUNICATION. */
mha_status mha_mpi_begin(const char* fn, MPI_Comm comm, mha_mpi_comm* c);
void mha_mpi_end(mha_mpi_comm* c);

/* Seconds since *t0, added to *acc; *t0 becomes now. */
void mha_mpi_lap(double* t0, double* acc);

/* MPI's return code rc as a status: SUCCESS, or COMMUNICATION with MPI's
 * message (naming what failed). */
mha_status mha_mpi_check(const char* fn, const char* what, int rc);

/* The ranks' agreement: every rank passes its local status (its own checks)
 * and the n shape fields that must be equal on every rank. Returns, on every
 * rank alike: the largest status any rank had (this rank's message if its
 * own, else one naming the rank that failed), else INVALID_SHAPE when a field
 * differs between ranks (naming it), else SUCCESS. n <= 16. */
mha_status mha_mpi_agree(const char* fn, const mha_mpi_comm* c, mha_status local, const int64_t* fields,
                         const char* const* names, int n);

/* The checks every MPI call makes of desc before agreeing: no kv_len, no
 * additive mask, no rotary, the default alignment, no weights (never
 * taken). */
mha_status mha_mpi_check_desc(const char* fn, const mha_attention_desc* desc);

/* One part: the desc's queries q0 .. q0+nq (global positions gq .. gq+nq)
 * against keys k0 .. k0+nk of k, v (global positions gk ..): out_part
 * [B, H, nq, Dv] and lse_part [B, H, nq] contiguous. with_sinks: this part
 * counts the sinks. Returns 1 when the masks hide every key from every
 * query and the part has no sinks (then nothing was computed), else 0, or
 * -(status) - 1 on failure. */
typedef struct mha_mpi_part {
  const float *q, *k, *v;           /* the first query row and key row of the part */
  const mha_kv_cache* cache;        /* or the keys are this cache's first nk tokens (k, v unused) */
  mha_strides qs, ks, vs;            /* their views */
  int64_t nq, nk, gq, gk;
  int with_sinks;
} mha_mpi_part;
int mha_mpi_part_run(const mha_attention_desc* desc, const mha_mpi_part* part, float* out_part, float* lse_part);

/* Copies a contiguous [B, H, T, Dv] result into the caller's out view
 * (desc's strides) at rows t0 .. t0+T, and its lse [B, H, T] into
 * desc->lse ([B, H, Tq]) when given. */
void mha_mpi_put_out(const mha_attention_desc* desc, float* out_view, int64_t t0, int64_t T, const float* out,
                     const float* lse);

#endif
