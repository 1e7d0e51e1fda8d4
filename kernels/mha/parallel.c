/* The call's workers on the caller's pool, on OpenMP, or alone (parallel.h). */
#include "mha/parallel.h"

#include <omp.h>
#include <stddef.h>

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
