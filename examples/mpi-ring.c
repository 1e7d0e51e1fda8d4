/*
 * Ring attention of one long sequence over MPI ranks (libmha_mpi,
 * mha_mpi_ring_attention_f32): each rank holds T/N tokens of Q, K and V in
 * the balanced causal split (an early and a late chunk), the K/V blocks
 * travel around the ring while each rank computes. Prints the agreement of
 * sampled rows with one process attending over the whole sequence, and the
 * time split (compute, waiting on the ring).
 *
 *   mpiexec -n 4 build/examples/mpi-ring            (64k tokens: 65536)
 *   mpiexec --bind-to none -n 2 build/examples/mpi-ring 32768 --one
 *       (also one process on as many threads as ranks; --bind-to none, or
 *       Open MPI's binding of each rank to one core puts that process's
 *       threads on a single core)
 *
 * Sizes: B 1, H 8, Hkv 2, D 64, causal. Exits non-zero when a sampled row
 * differs from the single-process call by more than 1e-4 (relative to
 * max|v|): the merge of partial results costs a few ulps, not more.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "mha.h"
#include "mha_mpi.h"

enum { H = 8, HKV = 2, D = 64, SAMPLES = 8 };

/* A value of global element index i of tensor `salt`, in [-1, 1): the same
 * on every rank, so each builds only its part (and the sampled rows' keys). */
static float value_at(uint64_t i, uint64_t salt) {
  uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull + salt * 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (float)((double)((z ^ (z >> 31)) >> 11) * 0x1p-52 - 1.0);
}

/* Rows [g0, g0 + n) of the [heads, T, D] tensor `salt` into rows [l0, ..) of a [heads, Tl, D] buffer. */
static void fill_rows(float* x, int64_t heads, int64_t T, int64_t Tl, int64_t g0, int64_t n, int64_t l0,
                      uint64_t salt) {
  for (int64_t h = 0; h < heads; h++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t c = 0; c < D; c++)
        x[(h * Tl + l0 + i) * D + c] = value_at((uint64_t)((h * T + g0 + i) * D + c), salt);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int64_t T = argc > 1 ? atoll(argv[1]) : 65536;
  const int one = argc > 2 && strcmp(argv[2], "--one") == 0;
  if (T < 2 * size || T % (2 * size) != 0) {
    if (rank == 0) fprintf(stderr, "mpi-ring: T (%lld) must be a multiple of 2·ranks (%d)\n", (long long)T, 2 * size);
    MPI_Finalize();
    return 2;
  }
  const int64_t Tl = T / size, c = Tl / 2;
  const int64_t g0[2] = {rank * c, (2 * size - 1 - rank) * c};
  float* q = malloc((size_t)(H * Tl * D) * sizeof(float));
  float* k = malloc((size_t)(HKV * Tl * D) * sizeof(float));
  float* v = malloc((size_t)(HKV * Tl * D) * sizeof(float));
  float* out = malloc((size_t)(H * Tl * D) * sizeof(float));
  if (!q || !k || !v || !out) return 1;
  for (int s = 0; s < 2; s++) {
    fill_rows(q, H, T, Tl, g0[s], c, s * c, 1);
    fill_rows(k, HKV, T, Tl, g0[s], c, s * c, 2);
    fill_rows(v, HKV, T, Tl, g0[s], c, s * c, 3);
  }
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, H, HKV, Tl, Tl, D, D);
  d.mask.causal = 1;
  d.num_threads = 1;
  MPI_Barrier(MPI_COMM_WORLD);
  mha_status st = mha_mpi_ring_attention_f32(MPI_COMM_WORLD, MHA_MPI_SPLIT_BALANCED, &d, q, k, v, out);
  if (st != MHA_STATUS_SUCCESS) {
    fprintf(stderr, "rank %d: %s\n", rank, mha_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  mha_mpi_timing tm;
  mha_mpi_last_timing(&tm);
  double mine[3] = {tm.compute_s, tm.wait_s, tm.total_s}, most[3];
  MPI_Reduce(mine, most, 3, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);

  /* sampled rows (the last rows of each chunk: the most keys) against one
   * process over the whole sequence: the rows' keys are rebuilt here */
  double worst = 0.0;
  {
    const int64_t tk = g0[1] + c; /* the late chunk's last row sees keys [0, tk) */
    float* kk = malloc((size_t)(HKV * tk * D) * sizeof(float));
    float* vv = malloc((size_t)(HKV * tk * D) * sizeof(float));
    float* qs = malloc((size_t)(H * SAMPLES * D) * sizeof(float));
    float* ref = malloc((size_t)(H * SAMPLES * D) * sizeof(float));
    fill_rows(kk, HKV, T, tk, 0, tk, 0, 2);
    fill_rows(vv, HKV, T, tk, 0, tk, 0, 3);
    fill_rows(qs, H, T, SAMPLES, tk - SAMPLES, SAMPLES, 0, 1);
    mha_attention_desc r;
    mha_attention_desc_init(&r, 1, H, HKV, SAMPLES, tk, D, D);
    r.mask.causal = 1; /* bottom-right: the samples are the last rows before tk */
    r.num_threads = 1;
    if (mha_attention_f32(&r, qs, kk, vv, ref, NULL) != MHA_STATUS_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 1);
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < SAMPLES; i++)
        for (int64_t x = 0; x < D; x++) {
          const double a = out[(h * Tl + Tl - SAMPLES + i) * D + x], b = ref[(h * SAMPLES + i) * D + x];
          if (fabs(a - b) > worst) worst = fabs(a - b);
        }
    free(kk), free(vv), free(qs), free(ref);
  }
  double worst_all;
  MPI_Reduce(&worst, &worst_all, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    const double flops = 2.0 * 2.0 * (double)T * (double)T / 2.0 * H * D; /* causal: half of QKᵀ and PV */
    printf("mpi-ring: T %lld over %d ranks (balanced causal split, H %d/%d, D %d, 1 thread each)\n", (long long)T,
           size, H, HKV, D);
    printf("  time %.3f s (slowest rank: compute %.3f s, waiting on the ring %.3f s): %.1f GFLOP/s\n", most[2],
           most[0], most[1], flops / most[2] * 1e-9);
    printf("  sampled rows against one process: max |difference| %.3g (max|v| <= 1)\n", worst_all);
  }
  if (one) {
    /* one process over the whole sequence on as many threads as ranks: rank 0
     * computes, the others wait without spinning (a polled Ibarrier) */
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
      float* Q = malloc((size_t)(H * T * D) * sizeof(float));
      float* K = malloc((size_t)(HKV * T * D) * sizeof(float));
      float* V = malloc((size_t)(HKV * T * D) * sizeof(float));
      float* O = malloc((size_t)(H * T * D) * sizeof(float));
      fill_rows(Q, H, T, T, 0, T, 0, 1);
      fill_rows(K, HKV, T, T, 0, T, 0, 2);
      fill_rows(V, HKV, T, T, 0, T, 0, 3);
      mha_attention_desc w;
      mha_attention_desc_init(&w, 1, H, HKV, T, T, D, D);
      w.mask.causal = 1;
      w.num_threads = size;
      const double t0 = MPI_Wtime();
      if (mha_attention_f32(&w, Q, K, V, O, NULL) != MHA_STATUS_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 1);
      const double t1 = MPI_Wtime() - t0;
      printf("  one process, %d threads: %.3f s; ring / one process = %.3f\n", size, t1, most[2] / t1);
      free(Q), free(K), free(V), free(O);
    }
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    int done = 0;
    while (!done) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (!done) nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
  }
  free(q), free(k), free(v), free(out);
  const int bad = rank == 0 && !(worst_all <= 1e-4);
  MPI_Finalize();
  return bad;
}
