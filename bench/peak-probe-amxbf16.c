/*
 * The AMX-BF16 probe (a build with -DMHA_AMX=ON): the machine's peak for the
 * amx_bf16 set's products, TDPBF16PS on whole tiles (16 rows × 16 columns ×
 * 16 k-pairs: 16384 FLOPs each). Runs only where the set is available (the
 * process granted the tile state by isa-select.c).
 *
 * Six accumulator tiles against one A and one B tile loaded once: six
 * independent chains, so the probe is bound by the unit's throughput (one
 * TDPBF16PS per 16 cycles on Sapphire Rapids), not by a chain's latency.
 * A and B hold 2^-10 in every bf16 (products 2^-20): no overflow for any rep
 * count the probe runs. Each thread loads its own configuration and releases
 * the tiles at the end.
 */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "bf16-gemm/amx-ops.h"

double mha_bench_dp_run__amxbf16(int threads, int64_t reps);

static const mha_amx_tilecfg mha_bench_amx_cfg = {
    .palette_id = 1, .colsb = {64, 64, 64, 64, 64, 64, 64, 64}, .rows = {16, 16, 16, 16, 16, 16, 16, 16}};

static volatile float mha_bench_sink_amxbf16;

double mha_bench_dp_run__amxbf16(int threads, int64_t reps) {
#pragma omp parallel num_threads(threads)
  {
    _Alignas(64) uint16_t x[16 * 32];
    _Alignas(64) float c[16 * 16];
    for (int i = 0; i < 16 * 32; i++) x[i] = 0x3a80; /* bf16 2^-10 */
    MHA_AMX_LDTILECFG(&mha_bench_amx_cfg);
    MHA_AMX_TILELOADD(6, x, 64);
    MHA_AMX_TILELOADD(7, x, 64);
    MHA_AMX_TILEZERO(0);
    MHA_AMX_TILEZERO(1);
    MHA_AMX_TILEZERO(2);
    MHA_AMX_TILEZERO(3);
    MHA_AMX_TILEZERO(4);
    MHA_AMX_TILEZERO(5);
    for (int64_t r = 0; r < reps; r++) {
      MHA_AMX_TDPBF16PS(0, 6, 7);
      MHA_AMX_TDPBF16PS(1, 6, 7);
      MHA_AMX_TDPBF16PS(2, 6, 7);
      MHA_AMX_TDPBF16PS(3, 6, 7);
      MHA_AMX_TDPBF16PS(4, 6, 7);
      MHA_AMX_TDPBF16PS(5, 6, 7);
    }
    MHA_AMX_TILESTORED(5, c, 64);
    MHA_AMX_TILERELEASE();
    mha_bench_sink_amxbf16 = c[0] + (float)omp_get_thread_num();
  }
  /* 6 tiles × 16 rows × 16 columns × 16 k-pairs × 2 products × 2 FLOPs */
  return (double)threads * (double)reps * 6.0 * 16.0 * 16.0 * 16.0 * 2.0 * 2.0;
}
