/*
 * Scalar conversions between fp32 and the 16-bit K/V formats (IEEE binary16
 * "f16", bfloat16 "bf16"), in portable C11: the reference of the vector
 * kernels' widening and the rounding of mha_kv_cache_write.
 *
 * Widening is exact (every f16 and bf16 value is an fp32 value, subnormals,
 * infinities and NaN included; a NaN keeps its sign and payload bits, quiet
 * bit set for f16 as the hardware conversions do). Narrowing rounds to
 * nearest, ties to even; fp32 values beyond the format's range become
 * ±infinity; a NaN stays a NaN (quiet).
 */
#ifndef MHA_KERNELS_KV_CONVERT_H
#define MHA_KERNELS_KV_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline float mha_bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint32_t mha_f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* bf16 → fp32: the upper half of the fp32 bits */
static inline float mha_bf16_to_f32(uint16_t h) { return mha_bits_to_f32((uint32_t)h << 16); }

/* f16 → fp32, exact */
static inline float mha_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1fu) return mha_bits_to_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
  if (exp != 0) return mha_bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return mha_bits_to_f32(sign);
  /* subnormal: man · 2^-24, exact in fp32 */
  const float mag = (float)man * 5.9604644775390625e-8f;
  return sign ? -mag : mag;
}

/* fp32 → bf16, round to nearest even; a NaN stays a quiet NaN */
static inline uint16_t mha_f32_to_bf16(float f) {
  const uint32_t u = mha_f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(rounded >> 16);
}

/* fp32 → f16, round to nearest even (subnormals included); overflow → ±inf;
 * a NaN stays a quiet NaN */
static inline uint16_t mha_f32_to_f16(float f) {
  const uint32_t u = mha_f32_to_bits(f);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* ≥ 65520: rounds past the largest, 65504 */
  if (a >= 0x38800000u) {                                   /* normal in f16: ≥ 2^-14 */
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);      /* round the 13 dropped bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
  }
  if (a < 0x33000000u) return sign; /* < 2^-25: rounds to ±0 (2^-25 itself ties to 0) */
  /* subnormal in f16: the value in units of 2^-24, rounded to nearest even */
  const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e; /* value = m · 2^(e − 150); units of 2^-24: m >> (126 − e) */
  const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  const uint32_t up = rem > half || (rem == half && (q & 1u));
  return (uint16_t)(sign | (q + up));
}

#endif
