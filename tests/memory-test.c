/*
 * Peak memory of the attention core. mha.h promises that without weights
 * no Tq × Tk buffer exists: the workspace is O(threads · tile + B·Hkv·Tk·D)
 * (per-thread tiles plus one packed copy of K). Measured here with the
 * counting allocator interposed in this executable (alloc-hooks.c): the
 * peak of the bytes allocated and not yet freed during one call, above
 * what was allocated before it, at B = H = 1, D = Dv = 64, Tq = Tk = T for
 * T = 8192 and 16384, two threads, no weights.
 *
 * The bound, per call: 2 · 4·T·D bytes (the documented packed copy of K is
 * T·D floats; twice that leaves room for a packed V as well) plus 1 MiB per
 * thread for the tiles, which do not grow with T, and the OpenMP runtime's
 * per-call bookkeeping. A T × T float buffer would take 4·T² bytes: 256 MiB
 * at T = 8192, about 50 times the bound, and a T × T byte mask 64 MiB.
 * Growth: peak(16384) / peak(8192) must stay under 3 (O(T) gives 2, O(T²) 4).
 *
 * With weights requested the caller passes its own [T, T] weights array; the
 * library must not allocate another T × T buffer beside it: the same bound
 * holds at T = 8192.
 *
 * Not built in sanitizer builds (they own malloc); too slow under valgrind.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-hooks.h"
#include "mha.h"
#include "tester.h"

enum { D = 64, THREADS = 2, T_SMALL = 8192, T_LARGE = 16384 };

#define MIB (1024.0 * 1024.0)

/* The bound above, in bytes. */
static size_t peak_bound(int64_t T) {
  return 2u * sizeof(float) * (size_t)T * D + (size_t)THREADS * ((size_t)1 << 20);
}

typedef struct buffers {
  float *q, *k, *v, *out, *weights;
} buffers;

/* Bytes allocated by one call at its peak, above those live before it. */
static size_t measure(tester* t, const buffers* b, int64_t T, int with_weights) {
  tester_context(t, "peak memory, T = %lld, D = %d, %d threads, weights %d", (long long)T, D,
                 THREADS, with_weights);
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, 1, 1, T, T, D, D);
  d.num_threads = THREADS;
  size_t ws = 0;
  mha_status st = mha_attention_workspace_size(&d, with_weights, &ws);
  tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_workspace_size: %s: %s",
               mha_status_string(st), mha_last_error());
  const size_t n = (size_t)T * D;
  tester_poison(b->out, n);
  const long live = alloc_hooks_live();
  const size_t base = alloc_hooks_peak_reset();
  st = mha_attention_f32(&d, b->q, b->k, b->v, b->out, with_weights ? b->weights : NULL);
  const size_t peak = alloc_hooks_peak() - base;
  tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32: %s: %s", mha_status_string(st),
               mha_last_error());
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += !isfinite(b->out[i]);
  tester_check(t, bad == 0, "%zu of %zu outputs are not finite (or never written)", bad, n);
  tester_check(t, alloc_hooks_live() == live, "the call leaked %ld allocations",
               alloc_hooks_live() - live);
  const size_t bound = peak_bound(T);
  printf("memory-test: T = %5lld%s: peak %8.2f MiB allocated by the call; bound %6.2f MiB "
         "(2·4·T·D + %d MiB); workspace_size %6.2f MiB\n",
         (long long)T, with_weights ? ", weights" : "         ", (double)peak / MIB,
         (double)bound / MIB, THREADS, (double)ws / MIB);
  tester_check(t, peak <= bound, "T = %lld: the call allocated %zu bytes at its peak, more than "
               "O(T·D) allows (%zu)", (long long)T, peak, bound);
  return peak;
}

int main(void) {
  tester t;
  tester_init(&t, "memory-test");
  if (!tester_check(&t, alloc_hooks_available(),
                    "the allocator is not interposed (a sanitizer or valgrind owns malloc)")) {
    return tester_finish(&t);
  }
  const size_t n = (size_t)T_LARGE * D;
  buffers b;
  b.q = tester_alloc(n * sizeof(float));
  b.k = tester_alloc(n * sizeof(float));
  b.v = tester_alloc(n * sizeof(float));
  b.out = tester_alloc(n * sizeof(float));
  b.weights = tester_alloc((size_t)T_SMALL * T_SMALL * sizeof(float));
  tester_fill(&t, b.q, n);
  tester_fill(&t, b.k, n);
  tester_fill(&t, b.v, n);

  /* a first call starts the OpenMP runtime's thread pool, which stays: its
   * memory is not any later call's */
  tester_context(&t, "warm-up call");
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, 1, 1, 256, 256, D, D);
  d.num_threads = THREADS;
  const mha_status st = mha_attention_f32(&d, b.q, b.k, b.v, b.out, NULL);
  tester_check(&t, st == MHA_STATUS_SUCCESS, "warm-up: %s", mha_last_error());

  const size_t small = measure(&t, &b, T_SMALL, 0);
  const size_t large = measure(&t, &b, T_LARGE, 0);
  if (small > 0) {
    const double ratio = (double)large / (double)small;
    printf("memory-test: peak(%d) / peak(%d) = %.3f (O(T): 2, O(T²): 4)\n", T_LARGE, T_SMALL,
           ratio);
    tester_check(&t, ratio < 3.0, "peak memory grows faster than O(T): peak(%d) / peak(%d) = %.3f",
                 T_LARGE, T_SMALL, ratio);
  } else {
    printf("memory-test: the call at T = %d allocated nothing\n", T_SMALL);
  }
  measure(&t, &b, T_SMALL, 1);

  free(b.q);
  free(b.k);
  free(b.v);
  free(b.out);
  free(b.weights);
  return tester_finish(&t);
}
