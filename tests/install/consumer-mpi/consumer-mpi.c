/* Links the installed libmha_mpi (find_package(mha COMPONENTS mpi)) and
 * runs one sequence-parallel decode on however many ranks it is given
 * (run.sh: one, as a singleton), checked against libmha's own call. */
#include <math.h>
#include <stdio.h>

#include <mpi.h>

#include "mha.h"
#include "mha_mpi.h"

enum { H = 2, T = 16, D = 8 };

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  static float q[H * D], k[H * T * D], v[H * T * D], out[H * D], want[H * D];
  for (int i = 0; i < H * D; i++) q[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
  for (int i = 0; i < H * T * D; i++) {
    k[i] = (float)((i * 5) % 13) / 13.0f - 0.5f;
    v[i] = (float)((i * 3) % 17) / 17.0f - 0.5f;
  }
  /* this rank's keys: the whole sequence on one rank */
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, H, H, 1, T, D, D);
  d.num_threads = 1;
  int rc = 0;
  if (mha_attention_f32(&d, q, k, v, want, NULL) != MHA_STATUS_SUCCESS ||
      (size == 1 && mha_mpi_decode_f32(MPI_COMM_WORLD, &d, q, k, v, out) != MHA_STATUS_SUCCESS)) {
    fprintf(stderr, "consumer_mpi: %s\n", mha_last_error());
    rc = 1;
  }
  double err = 0.0;
  for (int i = 0; size == 1 && rc == 0 && i < H * D; i++) err = fmax(err, fabs((double)out[i] - want[i]));
  if (rc == 0 && err > 1e-6) {
    fprintf(stderr, "consumer_mpi: decode differs from mha_attention_f32 by %g\n", err);
    rc = 1;
  }
  if (rank == 0 && rc == 0) printf("consumer_mpi: mha %u, %d rank(s), decode within %g\n", (unsigned)mha_version(), size, err);
  MPI_Finalize();
  return rc;
}
