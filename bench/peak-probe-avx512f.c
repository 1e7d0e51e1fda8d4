/*
 * The AVX-512F FMA probe: the machine's FP32 peak with 512-bit FMAs.
 * Compiled with -mavx512f (this file only).
 *
 * 16 independent accumulators: FMA latency is 4 cycles on current x86 cores
 * and up to 2 FMAs issue per cycle, so 8 chains in flight cover it; 16 leave
 * slack. 16 acc + 2 operands = 18/32 zmm.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

double mha_bench_fma_run__avx512f(int threads, int64_t reps);

static volatile float mha_bench_sink_avx512f;

double mha_bench_fma_run__avx512f(int threads, int64_t reps) {
#pragma omp parallel num_threads(threads)
  {
    /* acc ← acc·x + y converges to y / (1 − x) = 1: no overflow, no subnormals */
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
    const float t = (float)omp_get_thread_num();
    __m512 a0 = _mm512_set1_ps(t + 0.01f), a1 = _mm512_set1_ps(t + 0.02f);
    __m512 a2 = _mm512_set1_ps(t + 0.03f), a3 = _mm512_set1_ps(t + 0.04f);
    __m512 a4 = _mm512_set1_ps(t + 0.05f), a5 = _mm512_set1_ps(t + 0.06f);
    __m512 a6 = _mm512_set1_ps(t + 0.07f), a7 = _mm512_set1_ps(t + 0.08f);
    __m512 a8 = _mm512_set1_ps(t + 0.09f), a9 = _mm512_set1_ps(t + 0.10f);
    __m512 a10 = _mm512_set1_ps(t + 0.11f), a11 = _mm512_set1_ps(t + 0.12f);
    __m512 a12 = _mm512_set1_ps(t + 0.13f), a13 = _mm512_set1_ps(t + 0.14f);
    __m512 a14 = _mm512_set1_ps(t + 0.15f), a15 = _mm512_set1_ps(t + 0.16f);
    for (int64_t r = 0; r < reps; r++) {
      a0 = _mm512_fmadd_ps(a0, x, y);
      a1 = _mm512_fmadd_ps(a1, x, y);
      a2 = _mm512_fmadd_ps(a2, x, y);
      a3 = _mm512_fmadd_ps(a3, x, y);
      a4 = _mm512_fmadd_ps(a4, x, y);
      a5 = _mm512_fmadd_ps(a5, x, y);
      a6 = _mm512_fmadd_ps(a6, x, y);
      a7 = _mm512_fmadd_ps(a7, x, y);
      a8 = _mm512_fmadd_ps(a8, x, y);
      a9 = _mm512_fmadd_ps(a9, x, y);
      a10 = _mm512_fmadd_ps(a10, x, y);
      a11 = _mm512_fmadd_ps(a11, x, y);
      a12 = _mm512_fmadd_ps(a12, x, y);
      a13 = _mm512_fmadd_ps(a13, x, y);
      a14 = _mm512_fmadd_ps(a14, x, y);
      a15 = _mm512_fmadd_ps(a15, x, y);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    mha_bench_sink_avx512f = _mm512_reduce_add_ps(s);
  }
  /* 16 accumulators × 16 lanes × 2 FLOPs per FMA */
  return (double)threads * (double)reps * 16.0 * 16.0 * 2.0;
}
