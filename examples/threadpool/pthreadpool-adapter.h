/*
 * pthreadpool (XNNPACK's thread pool; Debian's libpthreadpool-dev) as an
 * mha_threadpool (include/mha.h, "Threads"):
 *
 *   pthreadpool_t pool = pthreadpool_create(4);          // 4 = the caller + 3 threads
 *   mha_threadpool tp = pthreadpool_adapter_threadpool(pool);
 *   desc.threadpool = &tp;                                // or args.threadpool
 *   ... mha calls ...
 *   pthreadpool_destroy(pool);
 *
 * parallel_for is pthreadpool_parallelize_1d with flags 0: the tasks run on
 * the pool's threads and the caller's, and it returns when all are done, as
 * mha's contract asks. pthreadpool serializes calls that several threads make
 * on one pool, so (unlike the reference pool in pthread-pool.h) one pool may
 * serve mha calls from several threads; they then take turns.
 */
#ifndef MHA_EXAMPLE_PTHREADPOOL_ADAPTER_H
#define MHA_EXAMPLE_PTHREADPOOL_ADAPTER_H

#include <stddef.h>

#include <pthreadpool.h>

#include "mha.h"

/* task(task_context, i) once for every i in [0, n) on pthreadpool `pool`
 * (a pthreadpool_t; NULL runs them on the calling thread). */
void pthreadpool_adapter_parallel_for(void* pool, mha_task_fn task, void* task_context, size_t n);

/* The pool as mha sees it: parallel_for above, num_threads =
 * pthreadpool_get_threads_count(pool) (1 for NULL). */
mha_threadpool pthreadpool_adapter_threadpool(pthreadpool_t pool);

#endif
