/*
 * The AVX2 + FMA probe: the machine's FP32 peak with 256-bit FMAs.
 * Compiled with -mavx2 -mfma (this file only).
 *
 * 12 independent accumulators: FMA latency is 4 cycles (Intel since Skylake,
 * Zen 3 and 4) at up to 2 FMAs per cycle, so 8 chains in flight cover it.
 * 12 acc + 2 operands = 14/16 ymm.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

double mha_bench_fma_run__avx2(int threads, int64_t reps);

static volatile float mha_bench_sink_avx2;

double mha_bench_fma_run__avx2(int threads, int64_t reps) {
#pragma omp parallel num_threads(threads)
  {
    /* acc ← acc·x + y converges to y / (1 − x) = 1: no overflow, no subnormals */
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
    const float t = (float)omp_get_thread_num();
    __m256 a0 = _mm256_set1_ps(t + 0.01f), a1 = _mm256_set1_ps(t + 0.02f);
    __m256 a2 = _mm256_set1_ps(t + 0.03f), a3 = _mm256_set1_ps(t + 0.04f);
    __m256 a4 = _mm256_set1_ps(t + 0.05f), a5 = _mm256_set1_ps(t + 0.06f);
    __m256 a6 = _mm256_set1_ps(t + 0.07f), a7 = _mm256_set1_ps(t + 0.08f);
    __m256 a8 = _mm256_set1_ps(t + 0.09f), a9 = _mm256_set1_ps(t + 0.10f);
    __m256 a10 = _mm256_set1_ps(t + 0.11f), a11 = _mm256_set1_ps(t + 0.12f);
    for (int64_t r = 0; r < reps; r++) {
      a0 = _mm256_fmadd_ps(a0, x, y);
      a1 = _mm256_fmadd_ps(a1, x, y);
      a2 = _mm256_fmadd_ps(a2, x, y);
      a3 = _mm256_fmadd_ps(a3, x, y);
      a4 = _mm256_fmadd_ps(a4, x, y);
      a5 = _mm256_fmadd_ps(a5, x, y);
      a6 = _mm256_fmadd_ps(a6, x, y);
      a7 = _mm256_fmadd_ps(a7, x, y);
      a8 = _mm256_fmadd_ps(a8, x, y);
      a9 = _mm256_fmadd_ps(a9, x, y);
      a10 = _mm256_fmadd_ps(a10, x, y);
      a11 = _mm256_fmadd_ps(a11, x, y);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    mha_bench_sink_avx2 = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] +
                          lanes[6] + lanes[7];
  }
  /* 12 accumulators × 8 lanes × 2 FLOPs per FMA */
  return (double)threads * (double)reps * 12.0 * 8.0 * 2.0;
}
