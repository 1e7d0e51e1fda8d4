/*
 * The AMX model (tests/amx/amx-emulate.c) and the amx_bf16 kernel on it: a
 * build with -DMHA_AMX=ON -DMHA_AMX_EMULATE=ON only (scripts/test.sh
 * --amx-emulate), where attention-bf16-test and layer-bf16-test run the
 * amx_bf16 set on this model.
 *
 *   1. The model against the SDM's description, on hand-made tiles: the
 *      even and odd products summed apart, then added; bf16 subnormal
 *      inputs read as 0; fp32 subnormal results flushed; loads zero past a
 *      tile's rows and bytes; stores write a tile's rows and bytes only.
 *   2. Its faults (#GP, #UD) abort, in a child process: a bad palette, a
 *      reserved byte, a tile over 16 rows, shapes that disagree, a tile
 *      instruction without a configuration.
 *   3. The kernel goes through the model (the instruction count moves), and
 *      the amx_bf16 set is this build's default.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amx-emulate.h"
#include "bf16-gemm/amx-ops.h"
#include "bf16-gemm/bf16-gemm.h"
#include "config/kernels.h"
#include "tester.h"

static uint16_t bf(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (uint16_t)(u >> 16); /* the values below are exact in bf16 */
}

/* one tile shape for all eight: rows × bytes */
static void config(int rows, int colsb) {
  mha_amx_tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int i = 0; i < 8; i++) cfg.rows[i] = (unsigned char)rows, cfg.colsb[i] = (unsigned short)colsb;
  mha_amx_emu_ldtilecfg(&cfg);
}

static void check_model(tester* t) {
  tester_context(t, "the model");
  /* tiles of 2 rows × 8 bytes: A's row 0 two k-pairs [a0 a1 | a2 a3], B's
   * column 0 the pairs [b0 b1], [b2 b3]; C[0][0] becomes
   * c + ((a0·b0 + a2·b2) + (a1·b1 + a3·b3)), the rest meets zeros */
  config(2, 8);
  uint16_t a[2][4] = {{bf(1.0f), bf(3.0f), bf(0x1p24f), bf(-0x1p24f)}, {0}};
  uint16_t b[2][4] = {{bf(1.0f), bf(1.0f), 0, 0}, {bf(1.0f), bf(1.0f), 0, 0}};
  float c[2][2] = {{0.5f, 7.0f}, {9.0f, 9.0f}};
  mha_amx_emu_tileloadd(0, c, sizeof c[0]);
  mha_amx_emu_tileloadd(1, a, sizeof a[0]);
  mha_amx_emu_tileloadd(2, b, sizeof b[0]);
  mha_amx_emu_tdpbf16ps(0, 1, 2);
  float out[2][2];
  memset(out, 0xff, sizeof out);
  mha_amx_emu_tilestored(0, out, sizeof out[0]);
  /* even: 1 + 2^24 rounds (the tie) to 2^24; odd: 3 − 2^24 is exact; their
   * sum 3, + 0.5. One chain in k order would give 1 + 3 + 2^24 − 2^24 = 4,
   * + 0.5 */
  tester_check(t, out[0][0] == 3.5f, "TDPBF16PS sums the even and the odd products apart, then adds (%g, want 3.5)",
               (double)out[0][0]);
  tester_check(t, out[0][1] == 7.0f && out[1][0] == 9.0f, "columns and rows of zero products leave C as it was");

  /* DAZ and FTZ: a subnormal bf16 input reads as 0; a subnormal fp32 result is 0 */
  config(1, 4);
  uint16_t x[2] = {0x0001, bf(1.0f)}, y[2] = {bf(1.0f), bf(0x1p-120f)};
  float z = 0.0f;
  mha_amx_emu_tilezero(0);
  mha_amx_emu_tileloadd(1, x, 4);
  mha_amx_emu_tileloadd(2, y, 4);
  mha_amx_emu_tdpbf16ps(0, 1, 2);
  mha_amx_emu_tilestored(0, &z, 4);
  tester_check(t, z == 0x1p-120f, "a subnormal input reads as 0 (%g)", (double)z);
  uint16_t s1[2] = {bf(0x1p-70f), 0}, s2[2] = {bf(0x1p-70f), 0};
  mha_amx_emu_tilezero(0);
  mha_amx_emu_tileloadd(1, s1, 4);
  mha_amx_emu_tileloadd(2, s2, 4);
  mha_amx_emu_tdpbf16ps(0, 1, 2);
  z = 1.0f;
  mha_amx_emu_tilestored(0, &z, 4);
  tester_check(t, z == 0.0f && !signbit(z), "a subnormal result (2^-140) is flushed to 0 (%g)", (double)z);

  /* loads zero past rows and bytes; stores write rows × bytes only */
  config(2, 8);
  float src[4][4], dst[4][4];
  for (int i = 0; i < 16; i++) src[i / 4][i % 4] = (float)(i + 1), dst[i / 4][i % 4] = -1.0f;
  mha_amx_emu_tileloadd(3, src, sizeof src[0]);
  mha_amx_emu_tilestored(3, dst, sizeof dst[0]);
  int ok = 1;
  for (int i = 0; i < 4; i++) {
    for (int j = 0; j < 4; j++) ok &= dst[i][j] == (i < 2 && j < 2 ? src[i][j] : -1.0f);
  }
  tester_check(t, ok, "a 2 × 8-byte tile loads and stores 2 rows of 2 floats, nothing else");
  mha_amx_emu_tilerelease();
}

/* 1 if fn aborts in a child process (the instruction's fault) */
static int faults(void (*fn)(void)) {
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stderr);
    fn();
    _exit(0);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return 0;
  return WIFSIGNALED(status);
}

static void bad_palette(void) {
  mha_amx_tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 2;
  mha_amx_emu_ldtilecfg(&cfg);
}
static void bad_reserved(void) {
  mha_amx_tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1, cfg.reserved[3] = 1;
  mha_amx_emu_ldtilecfg(&cfg);
}
static void bad_rows(void) { config(17, 64); }
static void bad_shapes(void) {
  mha_amx_tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int i = 0; i < 8; i++) cfg.rows[i] = 16, cfg.colsb[i] = 64;
  cfg.rows[2] = 8; /* B with 8 k-pairs against A's 16 */
  mha_amx_emu_ldtilecfg(&cfg);
  mha_amx_emu_tdpbf16ps(0, 1, 2);
}
static void unconfigured(void) { mha_amx_emu_tilezero(0); }
static void good(void) {
  config(16, 64);
  mha_amx_emu_tdpbf16ps(0, 1, 2);
  mha_amx_emu_tilerelease();
}

static void check_faults(tester* t) {
  tester_context(t, "the model's faults");
  tester_check(t, !faults(good), "a valid configuration and TDPBF16PS run");
  tester_check(t, faults(bad_palette), "palette 2 faults");
  tester_check(t, faults(bad_reserved), "a reserved byte set faults");
  tester_check(t, faults(bad_rows), "17 rows fault");
  tester_check(t, faults(bad_shapes), "TDPBF16PS with B's rows != A's pairs faults");
  tester_check(t, faults(unconfigured), "a tile instruction without a configuration faults");
}

static void check_kernel_runs(tester* t) {
  tester_context(t, "the amx_bf16 set on the model");
  const mha_kernels* kr = mha_kernels_for(MHA_ISA_AMX_BF16);
  if (!tester_check(t, kr != NULL, "the amx_bf16 set is available in this build")) return;
  mha_isa isa = MHA_ISA_DEFAULT;
  tester_check(t, mha_get_isa(&isa) == MHA_STATUS_SUCCESS && isa == MHA_ISA_AMX_BF16,
               "amx_bf16 is the build's default set (%s)", mha_isa_name(isa));
  tester_check(t, kr->bf16_gemm == mha_bf16_gemm_amx_ukernel_32x32__amxbf16, "its gemm is the AMX kernel");
  uint16_t a[32 * 36], b[32 * 36];
  for (int i = 0; i < 32 * 36; i++) a[i] = bf((float)(i % 5 - 2)), b[i] = bf((float)(i % 3 - 1));
  float c[32 * 32];
  const unsigned long before = mha_amx_emu_count();
  kr->bf16_gemm(32, 32, 9, a, b, 1.0f, c, 32, 0); /* 18 k-pairs: a step and a padded one */
  /* configuration, 4 zeros, 2 steps × (4 loads + 4 products), 4 stores, release */
  const unsigned long ran = mha_amx_emu_count() - before;
  tester_check(t, ran == 26, "a 32 × 32 call with 18 k-pairs runs 26 instructions on the model (%lu)", ran);
}

int main(void) {
  if (!mha_isa_available(MHA_ISA_AVX512_BF16)) {
    printf("amx-emulate-test: SKIPPED: the amx_bf16 set's packers and epilogue need AVX512-BF16, which this CPU "
           "lacks\n");
    return 77;
  }
  tester t;
  tester_init(&t, "amx-emulate-test");
  check_model(&t);
  check_faults(&t);
  check_kernel_runs(&t);
  return tester_finish(&t);
}
