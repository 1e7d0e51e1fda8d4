/*
 * The element type of B in the GEMM cores shared by the f32 kernels and the
 * K/V cache kernels (the f32-gemm/ headers): a compile-time argument of their
 * always_inline functions. Every instance runs the same arithmetic; only the
 * loads of B differ (fp32, or 16 bits widened exactly in registers), so a
 * 16-bit instance gives bitwise the f32 instance's result on the widened
 * values. The ISA loads are in kv-load-<isa>.h.
 */
#ifndef MHA_KERNELS_KV_LOAD_H
#define MHA_KERNELS_KV_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "kv-gemm/kv-convert.h"

enum { MHA_KV_F32 = 0, MHA_KV_F16 = 1, MHA_KV_BF16 = 2 };

/* &base[i] for elements of type BT (fp32, or 16 bits) */
static inline __attribute__((always_inline)) const void* mha_kv_at(const int BT, const void* base,
                                                                   size_t i) {
  return (const char*)base + i * (BT == MHA_KV_F32 ? sizeof(float) : sizeof(uint16_t));
}

/* brows[p] + j0 of a table of row pointers: brows is a const float* const*
 * (fp32) or a const uint16_t* const* (16 bits), read as its own type */
static inline __attribute__((always_inline)) const void* mha_kv_row(const int BT, const void* brows,
                                                                    size_t p, size_t j0) {
  if (BT == MHA_KV_F32) return ((const float* const*)brows)[p] + j0;
  return ((const uint16_t* const*)brows)[p] + j0;
}

/* Row p of B from column j0 for the P·V kernels: brows[p] + j0 when PAGED
 * (a table of row pointers: a paged cache), else b + p·ldb + j0 (rows at a
 * fixed stride: a contiguous cache or view). PAGED is a compile-time
 * constant; the strided form lets the hardware prefetchers see a stream. */
static inline __attribute__((always_inline)) const void* mha_kv_src_row(const int BT, const int PAGED,
                                                                        const void* b, size_t ldb,
                                                                        const void* brows, size_t p,
                                                                        size_t j0) {
  return PAGED ? mha_kv_row(BT, brows, p, j0) : mha_kv_at(BT, b, p * ldb + j0);
}

/* base[i] as fp32 (exact) */
static inline __attribute__((always_inline)) float mha_kv_load_scalar(const int BT,
                                                                      const void* base, size_t i) {
  if (BT == MHA_KV_F16) return mha_f16_to_f32(((const uint16_t*)base)[i]);
  if (BT == MHA_KV_BF16) return mha_bf16_to_f32(((const uint16_t*)base)[i]);
  return ((const float*)base)[i];
}

#endif
