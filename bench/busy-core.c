/*
 * A stolen core: one thread spinning on the process's first CPU (the lowest
 * in sched_getaffinity's mask), as another process that takes a core away
 * from the benchmark would (issue #21). Started in a benchmark's setup,
 * stopped and joined at its teardown, so it never runs beside another
 * benchmark. The thread pins itself with pthread_setaffinity_np and
 * start() returns only once it is pinned and spinning.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bench.h"

struct mha_bench_busy {
  pthread_t thread;
  int cpu;
  atomic_int state; /* 0 starting, 1 spinning, 2 told to stop; < 0: -errno of the pinning */
  volatile unsigned long spins;
};

int mha_bench_busy_first_cpu(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (CPU_ISSET(c, &set)) return c;
  }
  return 0;
}

static void* mha_bench_busy_main(void* arg) {
  mha_bench_busy* b = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(b->cpu, &set);
  const int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  if (err != 0) {
    atomic_store(&b->state, -err);
    return NULL;
  }
  int expected = 0;
  atomic_compare_exchange_strong(&b->state, &expected, 1);
  /* the whole core: no pause, no yield, no sleep */
  while (atomic_load_explicit(&b->state, memory_order_relaxed) == 1) b->spins++;
  return NULL;
}

int mha_bench_busy_start(mha_bench_busy** out) {
  *out = NULL;
  mha_bench_busy* b = calloc(1, sizeof *b);
  if (b == NULL) return ENOMEM;
  b->cpu = mha_bench_busy_first_cpu();
  atomic_init(&b->state, 0);
  int err = pthread_create(&b->thread, NULL, mha_bench_busy_main, b);
  if (err != 0) {
    free(b);
    return err;
  }
  int s;
  while ((s = atomic_load(&b->state)) == 0) sched_yield();
  if (s < 0) {
    pthread_join(b->thread, NULL);
    free(b);
    return -s;
  }
  *out = b;
  return 0;
}

int mha_bench_busy_cpu(const mha_bench_busy* b) { return b->cpu; }

void mha_bench_busy_stop(mha_bench_busy* b) {
  if (b == NULL) return;
  atomic_store(&b->state, 2);
  pthread_join(b->thread, NULL);
  free(b);
}
