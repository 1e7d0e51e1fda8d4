/* The AMX model of amx-emulate.h. */
#include "amx-emulate.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int configured;
  unsigned char rows[8];
  uint16_t colsb[8];
  unsigned char data[8][16][64];
  unsigned long count;
} mha_amx_emu_state;

static _Thread_local mha_amx_emu_state mha_amx_emu;

static void mha_amx_emu_fault(const char* what) {
  fprintf(stderr, "amx-emulate: %s (the instruction faults on the hardware)\n", what);
  abort();
}

static void mha_amx_emu_check_tile(int t) {
  if (t < 0 || t > 7) mha_amx_emu_fault("tile register out of 0..7");
  if (!mha_amx_emu.configured) mha_amx_emu_fault("tile instruction without a configuration (#UD)");
  if (mha_amx_emu.rows[t] == 0) mha_amx_emu_fault("tile not configured (#UD)");
}

void mha_amx_emu_ldtilecfg(const void* cfg) {
  const unsigned char* p = cfg;
  if (p[0] == 0) { /* palette 0: the init state (counted there) */
    mha_amx_emu_tilerelease();
    return;
  }
  mha_amx_emu.count++;
  if (p[0] != 1) mha_amx_emu_fault("palette other than 0 or 1 (#GP)");
  for (int i = 2; i < 16; i++) {
    if (p[i] != 0) mha_amx_emu_fault("reserved configuration byte set (#GP)");
  }
  memset(&mha_amx_emu.data, 0, sizeof mha_amx_emu.data);
  for (int t = 0; t < 16; t++) {
    const uint16_t colsb = (uint16_t)(p[16 + 2 * t] | (p[17 + 2 * t] << 8));
    const unsigned char rows = p[48 + t];
    if (t >= 8) {
      if (colsb != 0 || rows != 0) mha_amx_emu_fault("tile past tmm7 configured (#GP)");
      continue;
    }
    if (rows > 16 || colsb > 64 || colsb % 4 != 0) mha_amx_emu_fault("tile over 16 rows or 64 bytes (#GP)");
    if ((rows == 0) != (colsb == 0)) mha_amx_emu_fault("tile with rows but no bytes, or bytes but no rows (#GP)");
    mha_amx_emu.rows[t] = rows;
    mha_amx_emu.colsb[t] = colsb;
  }
  mha_amx_emu.configured = 1;
}

void mha_amx_emu_tilerelease(void) {
  mha_amx_emu.count++;
  memset(mha_amx_emu.rows, 0, sizeof mha_amx_emu.rows);
  memset(mha_amx_emu.colsb, 0, sizeof mha_amx_emu.colsb);
  memset(&mha_amx_emu.data, 0, sizeof mha_amx_emu.data);
  mha_amx_emu.configured = 0;
}

void mha_amx_emu_tileloadd(int t, const void* base, size_t stride) {
  mha_amx_emu_check_tile(t);
  mha_amx_emu.count++;
  memset(mha_amx_emu.data[t], 0, sizeof mha_amx_emu.data[t]);
  for (int r = 0; r < mha_amx_emu.rows[t]; r++) {
    memcpy(mha_amx_emu.data[t][r], (const unsigned char*)base + (size_t)r * stride, mha_amx_emu.colsb[t]);
  }
}

void mha_amx_emu_tilestored(int t, void* base, size_t stride) {
  mha_amx_emu_check_tile(t);
  mha_amx_emu.count++;
  for (int r = 0; r < mha_amx_emu.rows[t]; r++) {
    memcpy((unsigned char*)base + (size_t)r * stride, mha_amx_emu.data[t][r], mha_amx_emu.colsb[t]);
  }
}

void mha_amx_emu_tilezero(int t) {
  mha_amx_emu_check_tile(t);
  mha_amx_emu.count++;
  memset(mha_amx_emu.data[t], 0, sizeof mha_amx_emu.data[t]);
}

/* a bf16 value as fp32, a subnormal read as a zero of its sign (DAZ) */
static float mha_amx_emu_bf16(const unsigned char* p) {
  uint32_t u = (uint32_t)(p[0] | (p[1] << 8)) << 16;
  if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* an fp32 result that is subnormal becomes a zero of its sign (FTZ) */
static float mha_amx_emu_ftz(float x) {
  return fpclassify(x) == FP_SUBNORMAL ? copysignf(0.0f, x) : x;
}

void mha_amx_emu_tdpbf16ps(int dst, int a, int b) {
  mha_amx_emu_check_tile(dst);
  mha_amx_emu_check_tile(a);
  mha_amx_emu_check_tile(b);
  mha_amx_emu.count++;
  if (dst == a || dst == b || a == b) mha_amx_emu_fault("TDPBF16PS with a tile twice (#UD)");
  const int M = mha_amx_emu.rows[dst], N = mha_amx_emu.colsb[dst] / 4, K = mha_amx_emu.colsb[a] / 4;
  if (mha_amx_emu.rows[a] != M || mha_amx_emu.rows[b] != K || mha_amx_emu.colsb[b] != mha_amx_emu.colsb[dst]) {
    mha_amx_emu_fault("TDPBF16PS shapes disagree (#UD)");
  }
  for (int m = 0; m < M; m++) {
    float even[16] = {0}, odd[16] = {0};
    for (int k = 0; k < K; k++) {
      const float a0 = mha_amx_emu_bf16(&mha_amx_emu.data[a][m][4 * k]);
      const float a1 = mha_amx_emu_bf16(&mha_amx_emu.data[a][m][4 * k + 2]);
      for (int n = 0; n < N; n++) {
        const float b0 = mha_amx_emu_bf16(&mha_amx_emu.data[b][k][4 * n]);
        const float b1 = mha_amx_emu_bf16(&mha_amx_emu.data[b][k][4 * n + 2]);
        /* the product exact (8-bit significands), the sum rounded once */
        even[n] = mha_amx_emu_ftz(fmaf(a0, b0, even[n]));
        odd[n] = mha_amx_emu_ftz(fmaf(a1, b1, odd[n]));
      }
    }
    for (int n = 0; n < N; n++) {
      float c;
      memcpy(&c, &mha_amx_emu.data[dst][m][4 * n], sizeof c);
      c = mha_amx_emu_ftz(c + mha_amx_emu_ftz(even[n] + odd[n]));
      memcpy(&mha_amx_emu.data[dst][m][4 * n], &c, sizeof c);
    }
  }
}

unsigned long mha_amx_emu_count(void) { return mha_amx_emu.count; }
