/* The reference pthread pool (pthread-pool.h). */
#include "pthread-pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* How long an idle worker polls for the next call before it sleeps. */
enum { POOL_SPIN_POLLS = 20000 };

struct tpool {
  pthread_mutex_t mu;
  pthread_cond_t wake;
  int threads;
  pthread_t* started;
  int nstarted;
  int stop;
  /* the current call, written by the caller under mu before gen moves */
  mha_task_fn task;
  void* task_context;
  size_t n;
  _Atomic uint64_t gen;   /* calls so far */
  _Atomic uint64_t claim; /* (gen << 32) | next task index of call gen */
  _Atomic size_t done;    /* tasks of the current call finished */
};

/* The next task index of call `gen`, or -1 when its tasks are all taken or a
 * newer call has started (a late worker). */
static int64_t pool_claim(tpool* p, uint64_t gen, size_t n) {
  uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
  for (;;) {
    if ((c >> 32) != (gen & 0xFFFFFFFFu) || (c & 0xFFFFFFFFu) >= n) return -1;
    if (atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire)) {
      return (int64_t)(c & 0xFFFFFFFFu);
    }
  }
}

/* Runs tasks of call gen until none is left. A claimed index belongs to a
 * call that is not finished (the caller waits for it), so task and context
 * are still valid. */
static void pool_run(tpool* p, uint64_t gen, mha_task_fn task, void* ctx, size_t n) {
  for (int64_t i; (i = pool_claim(p, gen, n)) >= 0;) {
    task(ctx, (size_t)i);
    atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
  }
}

static void* pool_worker(void* arg) {
  tpool* p = arg;
  uint64_t seen = 0;
  for (;;) {
    /* poll a while for the next call, then sleep */
    for (int s = 0; s < POOL_SPIN_POLLS && atomic_load_explicit(&p->gen, memory_order_acquire) == seen; s++) {
      if (s % 64 == 63) sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    while (!p->stop && atomic_load_explicit(&p->gen, memory_order_relaxed) == seen) pthread_cond_wait(&p->wake, &p->mu);
    if (p->stop) {
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    seen = atomic_load_explicit(&p->gen, memory_order_relaxed);
    const mha_task_fn task = p->task;
    void* ctx = p->task_context;
    const size_t n = p->n;
    pthread_mutex_unlock(&p->mu);
    pool_run(p, seen, task, ctx, n);
  }
}

tpool* tpool_create(int threads) {
  if (threads < 1) return NULL;
  tpool* p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->threads = threads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  p->started = calloc((size_t)threads, sizeof *p->started);
  if (p->started == NULL) {
    tpool_destroy(p);
    return NULL;
  }
  for (int t = 1; t < threads; t++) {
    if (pthread_create(&p->started[p->nstarted], NULL, pool_worker, p) != 0) {
      tpool_destroy(p);
      return NULL;
    }
    p->nstarted++;
  }
  return p;
}

void tpool_destroy(tpool* p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int t = 0; t < p->nstarted; t++) pthread_join(p->started[t], NULL);
  pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->mu);
  free(p->started);
  free(p);
}

void tpool_parallel_for(void* pool, mha_task_fn task, void* task_context, size_t n) {
  tpool* p = pool;
  if (n == 0) return;
  if (p->nstarted == 0 || n == 1) {
    for (size_t i = 0; i < n; i++) task(task_context, i);
    return;
  }
  pthread_mutex_lock(&p->mu);
  const uint64_t gen = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
  p->task = task;
  p->task_context = task_context;
  p->n = n;
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  atomic_store_explicit(&p->claim, (gen & 0xFFFFFFFFu) << 32, memory_order_release);
  atomic_store_explicit(&p->gen, gen, memory_order_release);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  /* the caller works too, then waits only for tasks already running */
  pool_run(p, gen, task, task_context, n);
  for (unsigned s = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n; s++) {
    if (s % 64 == 63) sched_yield();
  }
}

mha_threadpool tpool_threadpool(tpool* pool) {
  mha_threadpool tp = {tpool_parallel_for, pool, pool->threads};
  return tp;
}
