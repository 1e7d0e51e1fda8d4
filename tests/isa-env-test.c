/*
 * The MHA_ISA environment variable, read at the first call into the library.
 * CTest runs this program several times with a different MHA_ISA each:
 *   isa-env-test unknown      MHA_ISA names no ISA: every computing call
 *                             fails with UNKNOWN_ISA until mha_set_isa()
 *   isa-env-test unsupported  MHA_ISA names an ISA this machine lacks:
 *                             the same with UNSUPPORTED_ISA
 *   isa-env-test <name>       MHA_ISA=<name>: mha_get_isa reports it and
 *                             the calls work
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

/* The computing calls on a tiny problem; each must return want and, when
 * failing, write nothing. */
static void check_calls(tester* t, mha_status want) {
  enum { N = 2 * 3 * 4 };
  float x[N], out[N], before[N], w[4 * 4];
  tester_fill(t, x, N);
  tester_fill(t, w, 16);
  tester_fill(t, before, N);
  const char* arg = want == MHA_STATUS_SUCCESS ? NULL : getenv("MHA_ISA");

  mha_isa isa;
  tester_stale_error();
  mha_status st = mha_get_isa(&isa);
  if (want != MHA_STATUS_SUCCESS) tester_check_failure(t, "mha_get_isa", st, want, arg);

  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, 2, 1, 3, 3, 4, 4);
  memcpy(out, before, sizeof out);
  tester_stale_error();
  st = mha_attention_f32(&d, x, x, x, out, NULL);
  if (want != MHA_STATUS_SUCCESS) {
    tester_check_failure(t, "mha_attention_f32", st, want, arg);
    tester_check(t, memcmp(out, before, sizeof out) == 0, "mha_attention_f32 wrote to out");
  } else {
    tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32: %s", mha_last_error());
  }

  mha_layer_desc ld;
  memset(&ld, 0, sizeof ld);
  ld.d_model = 4;
  ld.H = 2;
  ld.w_q = ld.w_k = ld.w_v = ld.w_o = w;
  mha_layer* plan = NULL;
  tester_stale_error();
  st = mha_layer_create(&ld, &plan);
  if (want != MHA_STATUS_SUCCESS) {
    tester_check_failure(t, "mha_layer_create", st, want, arg);
    tester_check(t, plan == NULL, "mha_layer_create failed but set a plan");
  } else {
    tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_create: %s", mha_last_error());
  }
  mha_layer_destroy(plan);

  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = 2;
  a.Tq = 3;
  a.x_q = x;
  a.out = out;
  memcpy(out, before, sizeof out);
  tester_stale_error();
  st = mha_layer_forward_once(&ld, &a);
  if (want != MHA_STATUS_SUCCESS) {
    tester_check_failure(t, "mha_layer_forward_once", st, want, arg);
    tester_check(t, memcmp(out, before, sizeof out) == 0, "mha_layer_forward_once wrote to out");
  } else {
    tester_check(t, st == MHA_STATUS_SUCCESS, "mha_layer_forward_once: %s", mha_last_error());
  }
}

int main(int argc, char** argv) {
  tester t;
  tester_init(&t, "isa-env-test");
  const char* mode = argc > 1 ? argv[1] : "";
  const char* env = getenv("MHA_ISA");
  tester_context(&t, "MHA_ISA=%s, mode %s", env != NULL ? env : "(unset)", mode);
  if (!tester_check(&t, env != NULL, "MHA_ISA is not set: run this through CTest")) {
    return tester_finish(&t);
  }

  if (strcmp(mode, "unknown") == 0 || strcmp(mode, "unsupported") == 0) {
    const mha_status want =
        strcmp(mode, "unknown") == 0 ? MHA_STATUS_UNKNOWN_ISA : MHA_STATUS_UNSUPPORTED_ISA;
    check_calls(&t, want);
    check_calls(&t, want); /* still failing: no silent fallback */
    /* mha_set_isa picks a valid set; then everything works */
    tester_check(&t, mha_set_isa(MHA_ISA_SCALAR) == MHA_STATUS_SUCCESS, "mha_set_isa(scalar)");
    mha_isa isa = (mha_isa)-1;
    tester_check(&t, mha_get_isa(&isa) == MHA_STATUS_SUCCESS && isa == MHA_ISA_SCALAR,
                 "after mha_set_isa(scalar), mha_get_isa reports %s", mha_isa_name(isa));
    check_calls(&t, MHA_STATUS_SUCCESS);
  } else {
    /* a kernel set this machine cannot run is reported as a skipped test
     * (exit 77, SKIP_RETURN_CODE in CTest), never as a silent pass */
    for (int i = MHA_ISA_SCALAR; i < MHA_ISA_COUNT; i++) {
      if (strcmp(mode, mha_isa_name((mha_isa)i)) == 0 && !mha_isa_available((mha_isa)i)) {
        const int arm = i == MHA_ISA_NEON || i == MHA_ISA_NEON_BF16;
        printf("isa-env-test: SKIPPED: kernel set %s cannot be tested here: %s\n", mode,
#if defined(__x86_64__) || defined(_M_X64)
               arm ? "not built into an x86-64 library"
               : i == MHA_ISA_AMX_BF16
                   ? "not in this build (-DMHA_AMX=ON), or this CPU or OS does not grant AMX-BF16"
                   : "this CPU lacks it"
#elif defined(__aarch64__)
               !arm ? "not built into an AArch64 library" : "this CPU lacks it"
#else
               "not built for this architecture"
#endif
        );
        return 77;
      }
    }
    if (strcmp(mode, "default") == 0) { /* MHA_ISA=default: the best set, as if unset */
      mha_isa isa = (mha_isa)-1;
      tester_check(&t, mha_get_isa(&isa) == MHA_STATUS_SUCCESS && mha_isa_available(isa),
                   "MHA_ISA=default: mha_get_isa reports %s", mha_isa_name(isa));
      check_calls(&t, MHA_STATUS_SUCCESS);
      return tester_finish(&t);
    }
    mha_isa isa = (mha_isa)-1;
    const mha_status st = mha_get_isa(&isa);
    tester_check(&t, st == MHA_STATUS_SUCCESS && strcmp(mha_isa_name(isa), mode) == 0,
                 "mha_get_isa returned %s and reports %s, want %s", mha_status_string(st),
                 mha_isa_name(isa), mode);
    check_calls(&t, MHA_STATUS_SUCCESS);
  }
  return tester_finish(&t);
}
