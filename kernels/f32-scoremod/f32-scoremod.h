/* Score modifiers of one row of a score tile (soft-capping, ALiBi), one
 * kernel per ISA (contract: config/kernels.h, kernels/README.md). */
#ifndef MHA_KERNELS_F32_SCOREMOD_H
#define MHA_KERNELS_F32_SCOREMOD_H

#include <stddef.h>

void mha_f32_scoremod__scalar(size_t n, float* x, float scale, float cap, float slope, float d0);
void mha_f32_scoremod__avx2(size_t n, float* x, float scale, float cap, float slope, float d0);
void mha_f32_scoremod__avx512f(size_t n, float* x, float scale, float cap, float slope, float d0);
void mha_f32_scoremod__neon(size_t n, float* x, float scale, float cap, float slope, float d0);

#endif
