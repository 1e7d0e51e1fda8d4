/*
 * Many-core parallelism, counted (no timing): every parallel stage of a
 * B = 1 prefill and of a decode step exposes at least 4 units of work per
 * thread, for 2 … 64 threads, with every kernel table built for this
 * architecture (the counts do not depend on the CPU that runs the test).
 *
 * Stages: the fused Q|K|V projection GEMM, the core's Kᵀ packing (when the
 * shape packs), the core's (item, key range) units, the output projection.
 * The decode merge is done by the last unit of each item: no stage.
 *
 * One limit is stated, not hidden: a decode step's output projection has
 * M = 1 row, so its units are its column panels, ⌈d_model / NR⌉; at NR = 32
 * (avx512f) and d_model 4096 that is 128, 2 per thread at 64 threads (4 per
 * thread up to 32). More would need a split of K with a fixed reduction
 * order; the test checks the panel count is reached instead.
 */
#include <stdint.h>
#include <stdio.h>

#include "config/kernels.h"
#include "mha.h"
#include "mha/internal.h"
#include "tester.h"

enum { UNITS_PER_THREAD = 4 };

typedef struct shape {
  const char* name;
  int64_t T, Tk, d_model, H, Hkv, D; /* T query rows (1: decode) */
  int causal;
} shape;

static void check_gemm(tester* t, const mha_kernels* kr, const char* what, int64_t M, int64_t N,
                       int threads) {
  const int64_t nr = (int64_t)kr->gemm_nr;
  const mha_gemm_grid g = mha_gemm_grid_for(kr, M, N, nr, threads);
  const int64_t want = (int64_t)UNITS_PER_THREAD * threads;
  /* the most units a GEMM can have without splitting K: MR-row × NR-column tiles */
  const int64_t mr = (int64_t)kr->gemm_mr;
  const int64_t most = ((M + mr - 1) / mr) * ((N + nr - 1) / nr);
  const int64_t need = want < most ? want : most;
  tester_check(t, g.tiles >= need, "%s (M %lld, N %lld): %lld tiles of %lld×%lld for %d threads, "
               "want >= %lld", what, (long long)M, (long long)N, (long long)g.tiles,
               (long long)g.mtile, (long long)g.nc, threads, (long long)need);
  /* the grid covers C exactly once */
  tester_check(t, g.mt * g.mtile >= M && (g.mt - 1) * g.mtile < M && g.nt * g.nc >= N &&
                      (g.nt - 1) * g.nc < N && g.mtile % mr == 0 && g.nc % nr == 0,
               "%s: grid %lld×%lld of %lld×%lld does not tile %lld×%lld", what, (long long)g.mt,
               (long long)g.nt, (long long)g.mtile, (long long)g.nc, (long long)M, (long long)N);
  if (need < want) {
    printf("work-units-test: %s %s at %d threads: %lld units (%.1f per thread): all the MR×NR "
           "tiles there are without splitting K\n", kr->name, what, threads, (long long)g.tiles,
           (double)g.tiles / threads);
  }
}

static void check_core(tester* t, const mha_kernels* kr, const shape* s, int threads) {
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, s->H, s->Hkv, s->T, s->Tk, s->D, s->D);
  d.mask.causal = s->causal;
  int64_t pack = 0, units = 0;
  const mha_status st = mha_attention_work_units(kr, &d, threads, &pack, &units);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "work units: %s", mha_last_error())) return;
  const int64_t want = (int64_t)UNITS_PER_THREAD * threads;
  tester_check(t, units >= want, "core units: %lld for %d threads, want >= %lld", (long long)units,
               threads, (long long)want);
  tester_check(t, pack == 0 || pack >= want, "Kᵀ packing: %lld blocks for %d threads, want >= %lld",
               (long long)pack, threads, (long long)want);
  if (s->T == 1) {
    tester_check(t, pack == 0, "a decode step packs %lld blocks of Kᵀ (a copy of its K cache)",
                 (long long)pack);
  }
}

int main(void) {
  tester t;
  tester_init(&t, "work-units-test");
  static const shape shapes[] = {
      {"bert_base prefill", 512, 512, 768, 12, 12, 64, 0},
      {"gpt2 prefill", 1024, 1024, 768, 12, 12, 64, 1},
      {"llama prefill Hkv=32", 2048, 2048, 4096, 32, 32, 128, 1},
      {"llama prefill Hkv=8", 2048, 2048, 4096, 32, 8, 128, 1},
      {"decode Hkv=32", 1, 4096, 4096, 32, 32, 128, 0},
      {"decode Hkv=8", 1, 4096, 4096, 32, 8, 128, 0},
      {"decode H=64 Hkv=8", 1, 4096, 8192, 64, 8, 128, 0},
  };
  const mha_kernels* tables[4] = {mha_kernels_scalar(), NULL, NULL, NULL};
  int n_tables = 1;
#if defined(__x86_64__)
  tables[n_tables++] = mha_kernels_avx2();
  tables[n_tables++] = mha_kernels_avx512f();
#endif
  for (int k = 0; k < n_tables; k++) {
    const mha_kernels* kr = tables[k];
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
      const shape* s = &shapes[i];
      for (int threads = 2; threads <= 64; threads *= 2) {
        tester_context(&t, "%s, %s, %d threads", kr->name, s->name, threads);
        const int64_t nr = (int64_t)kr->gemm_nr;
        const int64_t n_qkv = ((s->H * s->D + nr - 1) / nr + 2 * ((s->Hkv * s->D + nr - 1) / nr)) * nr;
        check_gemm(&t, kr, "Q|K|V projection", s->T, n_qkv, threads);
        check_core(&t, kr, s, threads);
        check_gemm(&t, kr, "output projection", s->T, s->d_model, threads);
      }
    }
  }
  return tester_finish(&t);
}
