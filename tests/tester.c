/* Shared test helpers: RNG, fills, poison, counted checks, the ISA loop. */
#include "tester.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TESTER_POISON_BITS UINT32_C(0x7fa5dead)

void tester_init(tester* t, const char* name) {
  memset(t, 0, sizeof *t);
  t->name = name;
  t->seed = TESTER_DEFAULT_SEED;
  const char* env = getenv("MHA_TEST_SEED");
  if (env != NULL && env[0] != '\0') t->seed = strtoull(env, NULL, 0);
  /* splitmix64 of the seed: any seed, 0 included, gives a nonzero state */
  uint64_t z = t->seed + UINT64_C(0x9e3779b97f4a7c15);
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  z ^= z >> 31;
  t->rng = z != 0 ? z : 1;
  printf("%s: seed %llu (set MHA_TEST_SEED to change)\n", name, (unsigned long long)t->seed);
}

void tester_context(tester* t, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->context, sizeof t->context, fmt, ap);
  va_end(ap);
}

uint64_t tester_bits(tester* t) {
  /* xorshift64* */
  uint64_t x = t->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  t->rng = x;
  return x * UINT64_C(0x2545f4914f6cdd1d);
}

int64_t tester_below(tester* t, int64_t n) {
  if (n <= 1) return 0;
  return (int64_t)(tester_bits(t) % (uint64_t)n);
}

double tester_uniform(tester* t, double lo, double hi) {
  const double u = (double)(tester_bits(t) >> 11) * 0x1.0p-53; /* [0, 1) */
  return lo + (hi - lo) * u;
}

int64_t tester_pick(tester* t, const int64_t* values, size_t count) {
  return values[tester_below(t, (int64_t)count)];
}

void tester_fill_range(tester* t, float* x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) {
    float v;
    do {
      v = (float)tester_uniform(t, lo, hi);
    } while (v == 0.0f || v < lo || v >= hi);
    x[i] = v;
  }
}

void tester_fill(tester* t, float* x, size_t n) { tester_fill_range(t, x, n, -1.0f, 1.0f); }

float tester_poison_value(void) {
  const uint32_t bits = TESTER_POISON_BITS;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

void tester_poison(float* x, size_t n) {
  const float p = tester_poison_value();
  for (size_t i = 0; i < n; i++) x[i] = p;
}

int tester_is_poison(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return bits == TESTER_POISON_BITS;
}

void* tester_alloc(size_t bytes) {
  void* p = malloc(bytes == 0 ? 1 : bytes);
  if (p == NULL) {
    fprintf(stderr, "test harness: cannot allocate %zu bytes\n", bytes);
    exit(2);
  }
  return p;
}

static void tester_report_failure(tester* t) {
  if (t->quiet) return;
  fprintf(stderr, "  case: %s\n  seed: MHA_TEST_SEED=%llu\n", t->context,
          (unsigned long long)t->seed);
}

int tester_check(tester* t, int ok, const char* fmt, ...) {
  t->checks++;
  if (ok) return 1;
  t->failures++;
  if (t->quiet) return 0;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: FAILED: ", t->name);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  tester_report_failure(t);
  return 0;
}

static int tester_element_ok(float a, double e, double tol) {
  if (tester_is_poison(a)) return 0;
  if (isnan(e)) return isnan(a);
  if (isinf(e)) return (double)a == e;
  if (!isfinite(a)) return 0;
  return fabs((double)a - e) <= tol;
}

int tester_check_close(tester* t, const char* what, size_t n, const float* actual,
                       const double* expected, const double* tol) {
  size_t bad = 0, first_bad = n;
  double max_err = 0.0, max_ratio = 0.0, err2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < n; i++) {
    const float a = actual[i];
    const double e = expected[i];
    if (!tester_element_ok(a, e, tol[i])) {
      if (first_bad == n) first_bad = i;
      bad++;
    }
    if (isfinite(e) && isfinite(a)) {
      const double err = fabs((double)a - e);
      if (err > max_err) max_err = err;
      if (tol[i] > 0.0 && err / tol[i] > max_ratio) max_ratio = err / tol[i];
      err2 += err * err;
      ref2 += e * e;
    }
  }
  const double nmse = ref2 > 0.0 ? err2 / ref2 : err2;
  if (max_ratio > t->worst_ratio) t->worst_ratio = max_ratio;
  if (nmse > t->worst_nmse) t->worst_nmse = nmse;
  t->checks++;
  if (bad == 0) return 1;
  t->failures++;
  if (t->quiet) return 0;
  fprintf(stderr,
          "%s: FAILED: %s: %zu of %zu elements out of tolerance; first at [%zu]: got %.9g, "
          "want %.9g, tol %.3g\n  max abs error %.3g, max error/tol %.3g, NMSE %.3g\n",
          t->name, what, bad, n, first_bad, (double)actual[first_bad], expected[first_bad],
          tol[first_bad], max_err, max_ratio, nmse);
  tester_report_failure(t);
  return 0;
}

/* whether name is one of the comma-separated words of list */
static int isa_in_list(const char* list, const char* name) {
  const size_t n = strlen(name);
  for (const char* p = list; *p != '\0';) {
    const char* end = strchr(p, ',');
    const size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return 1;
    if (end == NULL) break;
    p = end + 1;
  }
  return 0;
}

mha_isa tester_widening_isa(mha_isa isa) {
  switch (isa) {
    case MHA_ISA_NEON_BF16: return MHA_ISA_NEON;
    case MHA_ISA_AVX512_BF16: return MHA_ISA_AVX512F;
    case MHA_ISA_AMX_BF16: return MHA_ISA_AVX512F;
    default: return isa;
  }
}

isa_list tester_available_isas(tester* t) {
  isa_list list;
  list.count = 0;
  /* up to neon: neon_bf16's and avx512_bf16's tables are neon's and
   * avx512f's but for the BF16 form of bf16 calls (config/table-*-bf16.c;
   * attention-bf16-test checks both), so the suite's fp32 and f16 paths run
   * once per unit, not twice */
  /* MHA_TEST_ISAS="neon,..." restricts the list (set by tests/CMakeLists.txt
   * for the long ISA-looping tests under an emulator only; announced) */
  const char* only = getenv("MHA_TEST_ISAS");
  for (int i = MHA_ISA_SCALAR; i <= MHA_ISA_NEON; i++) {
    if (only != NULL && only[0] != '\0' && !isa_in_list(only, mha_isa_name((mha_isa)i))) {
      t->skipped_isas++;
      printf("%s: skipping ISA %s: not in MHA_TEST_ISAS=%s\n", t->name, mha_isa_name((mha_isa)i),
             only);
      continue;
    }
    if (mha_isa_available((mha_isa)i)) {
      list.isa[list.count++] = (mha_isa)i;
    } else {
      t->skipped_isas++;
      printf("%s: skipping ISA %s: not in this build or not on this CPU\n", t->name,
             mha_isa_name((mha_isa)i));
    }
  }
  if (only != NULL && only[0] != '\0') {
    /* a restriction that leaves nothing to run would make the test assert nothing */
    tester_check(t, list.count > 0, "MHA_TEST_ISAS=%s names no kernel set this CPU runs", only);
  }
  return list;
}

int tester_set_isa(tester* t, mha_isa isa) {
  const mha_status st = mha_set_isa(isa);
  return tester_check(t, st == MHA_STATUS_SUCCESS, "mha_set_isa(%s) returned %s: %s",
                      mha_isa_name(isa), mha_status_string(st), mha_last_error());
}

#define TESTER_STALE_MARKER "stale-error-marker"

void tester_stale_error(void) { (void)mha_set_isa_by_name(TESTER_STALE_MARKER); }

int tester_check_failure(tester* t, const char* what, mha_status got, mha_status want,
                         const char* arg) {
  const char* msg = mha_last_error();
  int ok = tester_check(t, got == want, "%s: returned %s (%d), want %s (%d); message: %s", what,
                        mha_status_string(got), (int)got, mha_status_string(want), (int)want,
                        msg != NULL ? msg : "(NULL)");
  if (msg == NULL) return tester_check(t, 0, "%s: mha_last_error() is NULL", what);
  ok &= tester_check(t, msg[0] != '\0' && strstr(msg, TESTER_STALE_MARKER) == NULL,
                     "%s: no fresh message in mha_last_error() (got \"%s\")", what, msg);
  if (arg != NULL) {
    ok &= tester_check(t, strstr(msg, arg) != NULL,
                       "%s: mha_last_error() \"%s\" does not name the argument %s", what, msg,
                       arg);
  }
  return ok;
}

int tester_finish(tester* t) {
  printf("%s: %ld checks passed, %ld failed, %d ISAs skipped (worst error/tolerance %.3g, "
         "worst NMSE %.3g)\n",
         t->name, t->checks - t->failures, t->failures, t->skipped_isas, t->worst_ratio,
         t->worst_nmse);
  return t->failures == 0 && t->checks > 0 ? 0 : 1;
}
