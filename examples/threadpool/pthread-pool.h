/*
 * A small pthread pool that plugs into mha as an mha_threadpool (include/mha.h,
 * "Threads"): the reference for a caller's pool, and what its tests run.
 *
 * parallel_for(n) hands out the task indices from one counter; the calling
 * thread takes them too. It returns as soon as all n tasks are done — it
 * never waits for a worker that has not woken up yet: a worker that wakes
 * late (its core was taken by another process) finds the counter spent, or
 * tagged with a newer call, and goes back to sleep. Workers spin briefly
 * after a call before they sleep, so back-to-back calls (a decode loop)
 * find them awake.
 *
 *   tpool* pool = tpool_create(4);      // 4 = the caller + 3 threads
 *   mha_threadpool tp = tpool_threadpool(pool);
 *   desc.threadpool = &tp;                              // or args.threadpool
 *   ... mha calls ...
 *   tpool_destroy(pool);
 *
 * (The prefix is tpool_: pthread_ names are reserved by POSIX.)
 *
 * One parallel_for at a time per pool (mha calls it from the thread that
 * called mha; two threads calling mha at once need a pool each).
 */
#ifndef MHA_EXAMPLE_PTHREAD_POOL_H
#define MHA_EXAMPLE_PTHREAD_POOL_H

#include <stddef.h>

#include "mha.h"

typedef struct tpool tpool;

/* A pool of `threads` workers, the calling thread counted (threads - 1 are
 * started); NULL if threads < 1 or a thread cannot be started. */
tpool* tpool_create(int threads);
void tpool_destroy(tpool* pool);

/* task(task_context, i) once for every i in [0, n); returns when all are done. */
void tpool_parallel_for(void* pool, mha_task_fn task, void* task_context, size_t n);

/* The pool as mha sees it: parallel_for above, num_threads = threads. */
mha_threadpool tpool_threadpool(tpool* pool);

#endif
