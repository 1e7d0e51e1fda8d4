/* The MPI component's shared steps (mpi-internal.h): the private
 * communicator, MPI errors, the ranks' agreement, the desc checks, one core
 * call at global positions and the copy into the caller's view. */
#include <stdio.h>
#include <string.h>

#include "mha/internal.h"
#include "mpi/mpi-internal.h"

mha_status mha_mpi_check(const char* fn, const char* what, int rc) {
  if (rc == MPI_SUCCESS) return MHA_STATUS_SUCCESS;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
  return mha_error(MHA_STATUS_COMMUNICATION, "%s: %s failed: %s", fn, what, msg);
}

_Thread_local mha_mpi_timing mha_mpi_timing_now;
static _Thread_local double mha_mpi_call_start;

void mha_mpi_last_timing(mha_mpi_timing* timing) {
  if (timing != NULL) *timing = mha_mpi_timing_now;
}

void mha_mpi_lap(double* t0, double* acc) {
  const double now = MPI_Wtime();
  *acc += now - *t0;
  *t0 = now;
}

mha_status mha_mpi_begin(const char* fn, MPI_Comm comm, mha_mpi_comm* c) {
  memset(c, 0, sizeof *c);
  memset(&mha_mpi_timing_now, 0, sizeof mha_mpi_timing_now);
  c->comm = MPI_COMM_NULL;
  int init = 0;
  MPI_Initialized(&init);
  if (!init) return mha_error(MHA_STATUS_COMMUNICATION, "%s: MPI is not initialized (MPI_Init)", fn);
  if (comm == MPI_COMM_NULL) return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: comm is MPI_COMM_NULL", fn);
  mha_mpi_call_start = MPI_Wtime();
  mha_status st = mha_mpi_check(fn, "MPI_Comm_dup", MPI_Comm_dup(comm, &c->comm));
  if (st != MHA_STATUS_SUCCESS) return st;
  MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c->comm, &c->rank);
  MPI_Comm_size(c->comm, &c->size);
  return MHA_STATUS_SUCCESS;
}

void mha_mpi_end(mha_mpi_comm* c) {
  if (c->comm != MPI_COMM_NULL) {
    MPI_Comm_free(&c->comm);
    mha_mpi_timing_now.total_s = MPI_Wtime() - mha_mpi_call_start;
  }
}

mha_status mha_mpi_agree(const char* fn, const mha_mpi_comm* c, mha_status local, const int64_t* fields,
                         const char* const* names, int n) {
  /* one MPI_MAX all-reduce of (status, rank of a failure, fields, −fields):
   * the largest status, who had it, and each field's maximum and minimum */
  int64_t send[2 + 2 * 16], recv[2 + 2 * 16];
  send[0] = (int64_t)local;
  send[1] = local != MHA_STATUS_SUCCESS ? c->rank : -1;
  for (int i = 0; i < n; i++) {
    send[2 + i] = fields[i];
    send[2 + n + i] = fields[i] == INT64_MIN ? INT64_MAX : -fields[i];
  }
  char saved[512];
  snprintf(saved, sizeof saved, "%s", mha_last_error());
  double t0 = MPI_Wtime();
  mha_status st = mha_mpi_check(fn, "MPI_Allreduce (the ranks' agreement)",
                                MPI_Allreduce(send, recv, 2 + 2 * n, MPI_INT64_T, MPI_MAX, c->comm));
  mha_mpi_lap(&t0, &mha_mpi_timing_now.wait_s);
  if (st != MHA_STATUS_SUCCESS) return st;
  if (recv[0] != MHA_STATUS_SUCCESS) {
    if ((int64_t)local == recv[0]) return mha_error(local, "%s", saved);
    return mha_error((mha_status)recv[0], "%s: rank %lld's inputs failed its checks (%s); this rank's passed", fn,
                     (long long)recv[1], mha_status_string((mha_status)recv[0]));
  }
  for (int i = 0; i < n; i++) {
    if (recv[2 + i] != -recv[2 + n + i]) {
      return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: the ranks differ in %s (%lld on this rank, from %lld to %lld)",
                       fn, names[i], (long long)fields[i], (long long)-recv[2 + n + i], (long long)recv[2 + i]);
    }
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_mpi_check_desc(const char* fn, const mha_attention_desc* d) {
  if (d->mask.kv_len != NULL) return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.kv_len is not supported", fn);
  if (d->mask.additive != NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: an additive mask is not supported", fn);
  }
  if (d->mask.align != MHA_ALIGN_BOTTOM_RIGHT) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: mask.align must be MHA_ALIGN_BOTTOM_RIGHT (global positions)",
                     fn);
  }
  if (d->rotary != NULL) return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: a rotary is not supported", fn);
  return MHA_STATUS_SUCCESS;
}

/* Do the masks hide keys [gk, gk + nk) from every query of [gq, gq + nq)? */
static int mha_mpi_hidden(const mha_attention_desc* d, int64_t gq, int64_t nq, int64_t gk, int64_t nk) {
  const int64_t lim = (int64_t)1 << 62;
  int64_t right = lim, left = lim;
  if (d->mask.window) {
    left = d->mask.window_left < lim ? d->mask.window_left : lim;
    right = d->mask.window_right < lim ? d->mask.window_right : lim;
  }
  if (d->mask.causal && right > 0) right = 0;
  /* the keys any query sees: [gq − left, gq + nq − 1 + right] */
  return gk > gq + nq - 1 + right || gk + nk - 1 < gq - left;
}

int mha_mpi_part_run(const mha_attention_desc* desc, const mha_mpi_part* pt, float* out_part, float* lse_part) {
  /* a part that counts the sinks runs even when its keys are hidden: the
   * sink's term is the rows' whole result there */
  if (!pt->with_sinks && mha_mpi_hidden(desc, pt->gq, pt->nq, pt->gk, pt->nk)) return 1;
  mha_attention_desc d = *desc;
  d.Tq = pt->nq;
  d.Tk = pt->nk;
  d.q = pt->qs;
  d.k = pt->ks;
  d.v = pt->vs;
  d.out = mha_strides_bhtd(d.H, pt->nq, d.Dv);
  d.lse = lse_part;
  d.mask.align = MHA_ALIGN_OFFSET;
  d.mask.offset = pt->gq - pt->gk; /* i' − j in global positions */
  if (!pt->with_sinks) d.mask.sinks = NULL;
  d.workspace = NULL; /* sized for another call */
  d.trace = NULL;
  d.workspace_size = 0;
  const mha_status st = pt->cache != NULL ? mha_attention_kv_f32(&d, pt->q, pt->cache, out_part, NULL)
                                          : mha_attention_f32(&d, pt->q, pt->k, pt->v, out_part, NULL);
  return st == MHA_STATUS_SUCCESS ? 0 : -(int)st - 1;
}

void mha_mpi_put_out(const mha_attention_desc* d, float* out_view, int64_t t0, int64_t T, const float* out,
                     const float* lse) {
  const size_t Dv = (size_t)d->Dv;
  for (int64_t b = 0; b < d->B; b++) {
    for (int64_t h = 0; h < d->H; h++) {
      for (int64_t i = 0; i < T; i++) {
        const size_t row = (size_t)((b * d->H + h) * T + i);
        memcpy(out_view + b * d->out.batch + h * d->out.head + (t0 + i) * d->out.row, out + row * Dv,
               Dv * sizeof(float));
        if (d->lse != NULL) d->lse[(b * d->H + h) * d->Tq + t0 + i] = lse[row];
      }
    }
  }
}
