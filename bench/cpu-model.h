/* The CPU's model name, for every figure a bench tool prints (cpu-model.c). */
#ifndef MHA_BENCH_CPU_MODEL_H
#define MHA_BENCH_CPU_MODEL_H

#include <stddef.h>

/* buf ← /proc/cpuinfo's first "model name", or "unknown CPU". */
void mha_bench_cpu_model(char* buf, size_t len);

#endif
