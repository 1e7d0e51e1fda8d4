/* The probes' dispatch: which ISA's FMA (and BF16 dot-product) probe this
 * build has and this CPU runs. */
#include "bench.h"

#if defined(MHA_BENCH_X86_PROBES)
double mha_bench_fma_run__avx2(int threads, int64_t reps);
double mha_bench_fma_run__avx512f(int threads, int64_t reps);
double mha_bench_dp_run__avx512bf16(int threads, int64_t reps);
#endif
#if defined(MHA_BENCH_AMX_PROBE)
double mha_bench_dp_run__amxbf16(int threads, int64_t reps);
#endif

int mha_bench_fma_available(mha_isa isa) {
#if defined(MHA_BENCH_X86_PROBES)
  switch (isa) {
    case MHA_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case MHA_ISA_AVX512F: return __builtin_cpu_supports("avx512f");
    default: return 0;
  }
#else
  (void)isa;
  return 0;
#endif
}

double mha_bench_fma_run(mha_isa isa, int threads, int64_t reps) {
  if (!mha_bench_fma_available(isa)) return 0.0;
#if defined(MHA_BENCH_X86_PROBES)
  if (isa == MHA_ISA_AVX2) return mha_bench_fma_run__avx2(threads, reps);
  if (isa == MHA_ISA_AVX512F) return mha_bench_fma_run__avx512f(threads, reps);
#endif
  return 0.0;
}

int mha_bench_dp_bf16_available(mha_isa isa) {
#if defined(MHA_BENCH_AMX_PROBE)
  if (isa == MHA_ISA_AMX_BF16) return mha_isa_available(isa); /* asks Linux for the tile state */
#endif
#if defined(MHA_BENCH_X86_PROBES)
  return isa == MHA_ISA_AVX512_BF16 && mha_isa_available(isa);
#else
  (void)isa;
  return 0;
#endif
}

double mha_bench_dp_bf16_run(mha_isa isa, int threads, int64_t reps) {
  if (!mha_bench_dp_bf16_available(isa)) return 0.0;
#if defined(MHA_BENCH_AMX_PROBE)
  if (isa == MHA_ISA_AMX_BF16) return mha_bench_dp_run__amxbf16(threads, reps);
#endif
#if defined(MHA_BENCH_X86_PROBES)
  return mha_bench_dp_run__avx512bf16(threads, reps);
#else
  return 0.0;
#endif
}
