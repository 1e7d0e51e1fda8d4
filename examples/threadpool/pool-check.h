/*
 * What both thread-pool examples check (threadpool-pthread.c,
 * threadpool-pthreadpool.c): a caller's pool gives the bits of the OpenMP
 * default (include/mha.h, "Threads").
 *
 * Three calls, on every kernel set this CPU runs (mha_set_isa), each run
 * through the pool (num_threads 0: the pool's) and on OpenMP (threadpool
 * NULL, num_threads 3), outputs poisoned with NaN before each run:
 *   prefill  mha_attention_f32, desc.threadpool: causal, B=2 H=4 Hkv=2
 *            T=200 D=64
 *   decode   mha_attention_kv_f32, desc.threadpool: one query row per head
 *            against a 2048-token fp32 cache, B=2 H=8 Hkv=2 D=64 (the key
 *            ranges run in parallel and are merged)
 *   layer    mha_layer_forward_once, args.threadpool: causal self-attention,
 *            B=2 T=64 d_model=256 H=8 Hkv=2 (the projection GEMMs too)
 * Each check: both runs succeed, the pool's output is all written (no NaN
 * left) and bitwise the OpenMP one (memcmp), and the pool was really used:
 * mha called its parallel_for, with more than one task at least once (each
 * call is large enough for the size rule to give it several workers), every
 * task index ran exactly once, n never exceeded the pool's num_threads, and
 * every call came from the calling thread. Without that last part a pool that
 * was never called, or one that ran only task 0 (its shared counters hand
 * the other tasks' units to task 0), would pass the bit comparison.
 */
#ifndef MHA_EXAMPLE_POOL_CHECK_H
#define MHA_EXAMPLE_POOL_CHECK_H

#include "mha.h"

/* The OpenMP side's num_threads; give the pool as many threads. */
enum { POOL_CHECK_THREADS = 3 };

/* Runs the checks above through `pool` (its num_threads at most 64) and
 * prints one summary line that starts with `name`, and a line on stderr per
 * failed check. Returns the number of failed checks: 0 is success. */
int pool_check(const mha_threadpool* pool, const char* name);

#endif
