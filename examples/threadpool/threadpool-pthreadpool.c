/* threadpool-pthreadpool: mha on pthreadpool, XNNPACK's thread pool (Debian's
 * libpthreadpool-dev), instead of OpenMP.
 *
 * pthreadpool-adapter.c turns a pthreadpool_t into an mha_threadpool
 * (include/mha.h, "Threads"): its parallel_for is pthreadpool_parallelize_1d,
 * whose task type is already mha's. An engine built on XNNPACK can so run
 * attention on the threads its other operators use.
 *
 * Pools of 1, 2 and 3 threads (the caller included). pool-check.c runs a
 * causal prefill, a decode step over a K/V cache and a layer through it and
 * on OpenMP at 3 threads, and checks that the outputs are bitwise equal and
 * that the pool was really called, with more than one task (never, with one
 * thread). The program
 * exits 1 if a check fails. */
#include <stdio.h>

#include <pthreadpool.h>

#include "pool-check.h"
#include "pthreadpool-adapter.h"

int main(void) {
  int failed = 0;
  /* pools of 1, 2 and 3 threads (the caller included): with one, every call
   * runs on the caller's thread and the pool is never called */
  for (int threads = 1; threads <= POOL_CHECK_THREADS; threads++) {
    pthreadpool_t pool = pthreadpool_create(threads);
    if (pool == NULL) {
      fprintf(stderr, "threadpool-pthreadpool: pthreadpool_create(%d) failed\n", threads);
      return 1;
    }
    const mha_threadpool tp = pthreadpool_adapter_threadpool(pool); /* what desc.threadpool points to */
    failed += pool_check(&tp, "threadpool-pthreadpool");
    pthreadpool_destroy(pool);
  }
  return failed == 0 ? 0 : 1;
}
