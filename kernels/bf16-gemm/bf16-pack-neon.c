/* Packing into row pairs in quads (bf16-gemm.h): bf16 rows (Q, K), fp32
 * rows rounded to bf16 (P), and the columns of bf16 rows (V, as the rows of
 * Vᵀ). Full quads with NEON permutes, the last partial quad of a row and
 * the last partial group of 8 columns value by value. Plain AArch64 NEON:
 * no BF16 instruction here (the rounding is integer arithmetic). */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bf16-gemm/bf16-gemm.h"
#include "config/neon-parts.h"
#include "kv-gemm/kv-convert.h"

void mha_bf16_pack_rows__neon(size_t rows, size_t k, const uint16_t* const* src, uint16_t* dst) {
  const size_t kq = (k + 3) / 4, ldp = 8 * kq;
  for (size_t r = 0; r < rows; r += 2) {
    const uint16_t* x0 = src[r];
    const uint16_t* x1 = r + 1 < rows ? src[r + 1] : NULL;
    uint16_t* out = dst + (r / 2) * ldp;
    size_t c = 0;
    for (; c + 8 <= k; c += 8, out += 16) {
      const uint64x2_t v0 = vreinterpretq_u64_u16(vld1q_u16(x0 + c));
      const uint64x2_t v1 = x1 != NULL ? vreinterpretq_u64_u16(vld1q_u16(x1 + c)) : vdupq_n_u64(0);
      vst1q_u16(out, vreinterpretq_u16_u64(vzip1q_u64(v0, v1)));
      vst1q_u16(out + 8, vreinterpretq_u16_u64(vzip2q_u64(v0, v1)));
    }
    for (; c < 4 * kq; c += 4, out += 8) {
      for (size_t t = 0; t < 4; t++) {
        out[t] = c + t < k ? x0[c + t] : 0;
        out[4 + t] = x1 != NULL && c + t < k ? x1[c + t] : 0;
      }
    }
  }
}

void mha_bf16_pack_rows_f32__neon(size_t rows, size_t k, const float* const* src, uint16_t* dst) {
  const size_t kq = (k + 3) / 4, ldp = 8 * kq;
  for (size_t r = 0; r < rows; r += 2) {
    const float* x0 = src[r];
    const float* x1 = r + 1 < rows ? src[r + 1] : NULL;
    uint16_t* out = dst + (r / 2) * ldp;
    size_t c = 0;
    for (; c + 4 <= k; c += 4, out += 8) {
      const uint16x4_t h0 = mha_neon_f32_to_bf16x4(vld1q_f32(x0 + c));
      const uint16x4_t h1 = x1 != NULL ? mha_neon_f32_to_bf16x4(vld1q_f32(x1 + c)) : vdup_n_u16(0);
      vst1q_u16(out, vcombine_u16(h0, h1));
    }
    for (; c < 4 * kq; c += 4, out += 8) {
      for (size_t t = 0; t < 4; t++) {
        out[t] = c + t < k ? mha_f32_to_bf16(x0[c + t]) : 0;
        out[4 + t] = x1 != NULL && c + t < k ? mha_f32_to_bf16(x1[c + t]) : 0;
      }
    }
  }
}

void mha_bf16_pack_cols__neon(size_t k, size_t n, const uint16_t* const* src, uint16_t* dst) {
  const size_t kq = k / 4, ldp = 8 * kq, n8 = (n + 7) / 8 * 8;
  for (size_t q = 0; q < kq; q++) {
    const uint16_t* x0 = src[4 * q];
    const uint16_t* x1 = src[4 * q + 1];
    const uint16_t* x2 = src[4 * q + 2];
    const uint16_t* x3 = src[4 * q + 3];
    size_t c = 0;
    for (; c + 8 <= n; c += 8) {
      /* keys 4q .. 4q+3 of columns c .. c+7: interleave the rows by 16 bits
       * (a: keys 0,1; b: keys 2,3), then by 32 bits: one column pair each */
      const uint16x8_t v0 = vld1q_u16(x0 + c), v1 = vld1q_u16(x1 + c);
      const uint16x8_t v2 = vld1q_u16(x2 + c), v3 = vld1q_u16(x3 + c);
      const uint32x4_t alo = vreinterpretq_u32_u16(vzip1q_u16(v0, v1));
      const uint32x4_t ahi = vreinterpretq_u32_u16(vzip2q_u16(v0, v1));
      const uint32x4_t blo = vreinterpretq_u32_u16(vzip1q_u16(v2, v3));
      const uint32x4_t bhi = vreinterpretq_u32_u16(vzip2q_u16(v2, v3));
      uint16_t* out = dst + (c / 2) * ldp + 8 * q;
      vst1q_u16(out, vreinterpretq_u16_u32(vzip1q_u32(alo, blo)));
      vst1q_u16(out + ldp, vreinterpretq_u16_u32(vzip2q_u32(alo, blo)));
      vst1q_u16(out + 2 * ldp, vreinterpretq_u16_u32(vzip1q_u32(ahi, bhi)));
      vst1q_u16(out + 3 * ldp, vreinterpretq_u16_u32(vzip2q_u32(ahi, bhi)));
    }
    for (; c < n8; c++) {
      uint16_t* out = dst + (c / 2) * ldp + 8 * q + 4 * (c % 2);
      for (size_t t = 0; t < 4; t++) out[t] = c < n ? src[4 * q + t][c] : 0;
    }
  }
}
