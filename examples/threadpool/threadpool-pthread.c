/* threadpool-pthread: mha on the caller's own thread pool instead of OpenMP.
 *
 * An engine that already keeps worker threads hands them to mha as an
 * mha_threadpool (include/mha.h, "Threads"): a parallel_for, its context and
 * its thread count, in desc.threadpool (the core, the K/V-cache call) or
 * args.threadpool (the layer). The call then runs every stage of its work
 * through that parallel_for and opens no OpenMP region.
 *
 * Here the pool is the reference pthread pool of pthread-pool.h, with 1, 2
 * and 3 threads (the caller included). pool-check.c runs a causal prefill, a
 * decode step over a K/V cache and a layer through it and on OpenMP at 3
 * threads, and checks that the outputs are bitwise equal and that the pool
 * was really called, with more than one task (never, with one thread). The program exits 1 if a
 * check fails. */
#include <stdio.h>

#include "pool-check.h"
#include "pthread-pool.h"

int main(void) {
  int failed = 0;
  /* pools of 1, 2 and 3 threads (the caller included): with one, every call
   * runs on the caller's thread and the pool is never called */
  for (int threads = 1; threads <= POOL_CHECK_THREADS; threads++) {
    tpool* pool = tpool_create(threads);
    if (pool == NULL) {
      fprintf(stderr, "threadpool-pthread: tpool_create(%d) failed\n", threads);
      return 1;
    }
    const mha_threadpool tp = tpool_threadpool(pool); /* what desc.threadpool points to */
    failed += pool_check(&tp, "threadpool-pthread");
    tpool_destroy(pool);
  }
  return failed == 0 ? 0 : 1;
}
