/*
 * The AVX512-BF16 probe: the machine's peak for the BF16 form's products,
 * vdpbf16ps on zmm (16 lanes × 2 bf16 products × 2 FLOPs = 64 FLOPs each).
 * Compiled with -mavx512f -mavx512bf16 (this file only).
 *
 * 16 independent accumulators, as the FMA probe: vdpbf16ps's latency is
 * 5–6 cycles on Zen 4 and Sapphire Rapids, at most 2 issue per cycle.
 * acc ← acc + x·y over the pairs: with x·y = 2^-20 per product the sums
 * stay far from overflow for any rep count the probe runs.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

double mha_bench_dp_run__avx512bf16(int threads, int64_t reps);

static volatile float mha_bench_sink_avx512bf16;

double mha_bench_dp_run__avx512bf16(int threads, int64_t reps) {
#pragma omp parallel num_threads(threads)
  {
    /* bf16 2^-10 is 0x3a80: both operands, every lane */
    const __m512bh x = (__m512bh)_mm512_set1_epi16((short)0x3a80);
    const float t = (float)omp_get_thread_num();
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(t + 0.01f * (float)(i + 1));
    for (int64_t r = 0; r < reps; r++) {
      a[0] = _mm512_dpbf16_ps(a[0], x, x);
      a[1] = _mm512_dpbf16_ps(a[1], x, x);
      a[2] = _mm512_dpbf16_ps(a[2], x, x);
      a[3] = _mm512_dpbf16_ps(a[3], x, x);
      a[4] = _mm512_dpbf16_ps(a[4], x, x);
      a[5] = _mm512_dpbf16_ps(a[5], x, x);
      a[6] = _mm512_dpbf16_ps(a[6], x, x);
      a[7] = _mm512_dpbf16_ps(a[7], x, x);
      a[8] = _mm512_dpbf16_ps(a[8], x, x);
      a[9] = _mm512_dpbf16_ps(a[9], x, x);
      a[10] = _mm512_dpbf16_ps(a[10], x, x);
      a[11] = _mm512_dpbf16_ps(a[11], x, x);
      a[12] = _mm512_dpbf16_ps(a[12], x, x);
      a[13] = _mm512_dpbf16_ps(a[13], x, x);
      a[14] = _mm512_dpbf16_ps(a[14], x, x);
      a[15] = _mm512_dpbf16_ps(a[15], x, x);
    }
    __m512 s = _mm512_setzero_ps();
    for (int i = 0; i < 16; i++) s = _mm512_add_ps(s, a[i]);
    mha_bench_sink_avx512bf16 = _mm512_reduce_add_ps(s);
  }
  /* 16 accumulators × 16 lanes × 2 products × 2 FLOPs */
  return (double)threads * (double)reps * 16.0 * 16.0 * 2.0 * 2.0;
}
