/*
 * Who runs a call's work units (include/mha.h, "Threads"): the caller's
 * pool, an OpenMP team, or the calling thread alone. Every stage hands out
 * its units from a shared counter, so whoever runs a unit, and however late
 * a worker starts, the results are the same bits and the call is done when
 * its units are.
 */
#ifndef MHA_PARALLEL_H
#define MHA_PARALLEL_H

#include <stdint.h>

#include "mha.h"

/* A call's trace (mha.h, "Threads"): the caller's buffer and the call's
 * start. */
typedef struct mha_tracer {
  mha_trace* trace;
  int64_t t0_ns;
  int64_t batch0; /* added to each event's batch (the layer's chunk) */
  int32_t gemm;   /* the layer's GEMM running now: its events' head (mha.h) */
} mha_tracer;

/* A call's workers: `workers` slots of scratch, run by the caller's pool
 * (pool != NULL) or OpenMP (pool NULL; one worker opens no region), and
 * the trace its units go to (NULL: none). */
typedef struct mha_team {
  const mha_threadpool* pool;
  int workers; /* >= 1 */
  const mha_tracer* tracer;
} mha_team;

/* CLOCK_MONOTONIC in ns. */
int64_t mha_now_ns(void);

/* At a call's start: the trace's start time, count and total 0. Returns
 * tracer, or NULL when trace is NULL (no trace). */
mha_tracer* mha_trace_begin(mha_tracer* tracer, mha_trace* trace);
/* One unit, as it ends: slot `total++` of the buffer if it has one. Any
 * worker, at once. */
void mha_trace_record(const mha_tracer* tracer, const mha_trace_event* ev);
/* At the call's end: count = min(total, capacity). */
void mha_trace_end(const mha_tracer* tracer);

/* An event's int32 field from an int64 index (saturated: the fields hold
 * rows, keys and heads, which fit unless a call is past 2^31 of them). */
static inline int32_t mha_trace_i32(int64_t x) { return (int32_t)(x < INT32_MAX ? x : INT32_MAX); }

/* fn(ctx, w) once for every worker w in [0, team.workers), at once where the
 * pool or OpenMP can: pool->parallel_for with n = workers, an OpenMP region
 * of `workers` threads (fewer if OpenMP gives fewer: a worker that never
 * runs leaves its units to the others), or a plain call for one worker. */
typedef void (*mha_worker_fn)(void* ctx, int worker);
void mha_team_run(mha_team team, mha_worker_fn fn, void* ctx);

/* The next of n units from a counter shared by the workers (relaxed: the
 * units are independent; the stage's end orders their writes), or -1 when
 * all are taken. */
static inline int64_t mha_claim(int64_t* next, int64_t n) {
  const int64_t u = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
  return u < n ? u : -1;
}

/* The call's work that one more worker must have before it pays: about
 * 40 µs of one core, counting a FLOP as 1 and a byte moved as 2. */
#define MHA_WORK_PER_WORKER 4.0e6

/* The workers for `work` units of work, at most `workers`, at least 1. */
int mha_workers_for(int workers, double work);

/* The workers a call asks for: num_threads > 0 as is; else the pool's
 * num_threads, or OpenMP's default (1 inside an active parallel region). */
int mha_resolve_workers(int num_threads, const mha_threadpool* pool);

#endif
