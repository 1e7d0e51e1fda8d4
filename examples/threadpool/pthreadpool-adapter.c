/* pthreadpool as an mha_threadpool (pthreadpool-adapter.h). */
#include "pthreadpool-adapter.h"

#include <limits.h>

/* pthreadpool's 1-D task, void(*)(void*, size_t), is mha's task type, so mha's
 * task is handed over as it is, with no trampoline in between. Should either
 * type ever change, this stops the build instead of a call through a pointer
 * of the wrong type. */
_Static_assert(_Generic((mha_task_fn)0, pthreadpool_task_1d_t: 1, default: 0),
               "mha_task_fn and pthreadpool_task_1d_t differ: add a trampoline");

void pthreadpool_adapter_parallel_for(void* pool, mha_task_fn task, void* task_context, size_t n) {
  /* Flags 0: no PTHREADPOOL_FLAG_DISABLE_DENORMALS, which would flush
   * subnormals on the workers and change the bits against the OpenMP path;
   * no PTHREADPOOL_FLAG_YIELD_WORKERS, so that the workers stay awake
   * between the stages of a call and between decode steps. */
  pthreadpool_parallelize_1d((pthreadpool_t)pool, task, task_context, n, 0);
}

mha_threadpool pthreadpool_adapter_threadpool(pthreadpool_t pool) {
  const size_t threads = pool != NULL ? pthreadpool_get_threads_count(pool) : 1;
  mha_threadpool tp = {pthreadpool_adapter_parallel_for, pool,
                       threads < 1 ? 1 : threads > INT_MAX ? INT_MAX : (int)threads};
  return tp;
}
