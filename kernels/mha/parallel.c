/* The call's workers on the caller's pool, on OpenMP, or alone (parallel.h). */
#include "mha/parallel.h"

#include <omp.h>
#include <stddef.h>
#include <time.h>

typedef struct mha_team_task {
  mha_worker_fn fn;
  void* ctx;
} mha_team_task;

/* the pool's task i is worker i */
static void mha_team_task_run(void* task_context, size_t index) {
  const mha_team_task* t = task_context;
  t->fn(t->ctx, (int)index);
}

void mha_team_run(mha_team team, mha_worker_fn fn, void* ctx) {
  if (team.workers <= 1) {
    fn(ctx, 0);
    return;
  }
  if (team.pool != NULL) {
    mha_team_task t = {fn, ctx};
    team.pool->parallel_for(team.pool->context, mha_team_task_run, &t, (size_t)team.workers);
    return;
  }
#pragma omp parallel num_threads(team.workers)
  fn(ctx, omp_get_thread_num());
}

int mha_workers_for(int workers, double work) {
  const double most = work / MHA_WORK_PER_WORKER;
  if (most < (double)workers) workers = (int)most;
  return workers < 1 ? 1 : workers;
}

int mha_resolve_workers(int num_threads, const mha_threadpool* pool) {
  if (num_threads > 0) return num_threads;
  if (pool != NULL) return pool->num_threads > 0 ? pool->num_threads : 1;
  if (omp_in_parallel()) return 1;
  const int n = omp_get_max_threads();
  return n > 0 ? n : 1;
}

int64_t mha_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

mha_tracer* mha_trace_begin(mha_tracer* tracer, mha_trace* trace) {
  if (trace == NULL) return NULL;
  tracer->trace = trace;
  tracer->t0_ns = mha_now_ns();
  tracer->batch0 = 0;
  tracer->gemm = 0;
  trace->count = 0;
  trace->total = 0;
  return tracer;
}

void mha_trace_record(const mha_tracer* tracer, const mha_trace_event* ev) {
  mha_trace* tr = tracer->trace;
  const int64_t slot = __atomic_fetch_add(&tr->total, 1, __ATOMIC_RELAXED);
  if (slot >= tr->capacity) return;
  mha_trace_event e = *ev;
  e.start_ns -= tracer->t0_ns;
  e.end_ns -= tracer->t0_ns;
  if (e.batch >= 0) e.batch += (int32_t)tracer->batch0;
  tr->events[slot] = e;
}

void mha_trace_end(const mha_tracer* tracer) {
  if (tracer == NULL) return;
  mha_trace* tr = tracer->trace;
  const int64_t total = __atomic_load_n(&tr->total, __ATOMIC_RELAXED);
  tr->count = total < tr->capacity ? total : tr->capacity;
}
