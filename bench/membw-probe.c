/*
 * The memory-bandwidth probe: a read-only pass over a buffer much larger
 * than the caches (256 MiB by default, on a shared machine), split over
 * OpenMP threads, each thread reading the part it first touched. The XOR
 * reduction over 64-bit words vectorizes and costs nothing beside the loads.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct mha_bench_membw {
  uint64_t* data;
  size_t words;
  int threads;
};

static volatile uint64_t mha_bench_membw_sink;

mha_bench_membw* mha_bench_membw_create(size_t bytes, int threads) {
  mha_bench_membw* m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  m->words = bytes / sizeof(uint64_t) / 64 * 64;
  m->threads = threads;
  m->data = aligned_alloc(4096, m->words * sizeof(uint64_t));
  if (m->data == NULL) {
    free(m);
    return NULL;
  }
  const int64_t n = (int64_t)m->words;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; i++) m->data[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
  return m;
}

double mha_bench_membw_run(mha_bench_membw* m) {
  const uint64_t* p = m->data;
  const int64_t n = (int64_t)m->words;
  uint64_t acc = 0;
#pragma omp parallel for schedule(static) num_threads(m->threads) reduction(^ : acc)
  for (int64_t i = 0; i < n; i++) acc ^= p[i];
  mha_bench_membw_sink = acc;
  return (double)n * sizeof(uint64_t);
}

void mha_bench_membw_destroy(mha_bench_membw* m) {
  if (m == NULL) return;
  free(m->data);
  free(m);
}
