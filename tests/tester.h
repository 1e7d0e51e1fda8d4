/*
 * Small shared helpers of the mha tests: a seeded RNG, random fills, NaN
 * poisoning, checks that count and report, and the ISA loop.
 *
 * The seed comes from the environment variable MHA_TEST_SEED (decimal or
 * 0x-hex), else a fixed default; it is printed with every failure so a run
 * can be repeated exactly.
 */
#ifndef MHA_TESTS_TESTER_H
#define MHA_TESTS_TESTER_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"

#define TESTER_DEFAULT_SEED UINT64_C(0x6d68612d74657374)

typedef struct tester {
  const char* name;     /* the test executable, for messages */
  uint64_t seed;        /* the run's seed */
  uint64_t rng;         /* xorshift state */
  long checks;          /* checks made */
  long failures;        /* checks failed */
  int skipped_isas;     /* ISAs this CPU or build lacks */
  int quiet;            /* 1: failures are counted but not printed (harness self-tests) */
  double worst_ratio;   /* largest error / tolerance seen by tester_check_close */
  double worst_nmse;    /* largest normalized MSE seen by tester_check_close */
  char context[512];    /* the case being run, printed with failures */
} tester;

/* Reads MHA_TEST_SEED and seeds the generator. */
void tester_init(tester* t, const char* name);

/* Sets the description of the case in progress (printf format). */
void tester_context(tester* t, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Uniform 64 random bits. */
uint64_t tester_bits(tester* t);
/* Uniform integer in [0, n), n >= 1. */
int64_t tester_below(tester* t, int64_t n);
/* Uniform double in [lo, hi). */
double tester_uniform(tester* t, double lo, double hi);
/* One element of a list of int64 values, chosen uniformly. */
int64_t tester_pick(tester* t, const int64_t* values, size_t count);

/* x[0..n) ← uniform in [-1, 1), never exactly 0. */
void tester_fill(tester* t, float* x, size_t n);
/* x[0..n) ← uniform in [lo, hi), never exactly 0. */
void tester_fill_range(tester* t, float* x, size_t n, float lo, float hi);

/* The poison: a quiet NaN with a payload that no computation produces. */
float tester_poison_value(void);
/* x[0..n) ← the poison. */
void tester_poison(float* x, size_t n);
/* 1 if x has the poison's exact bits. */
int tester_is_poison(float x);

/* malloc that reports and exits on failure (tests only, never the library). */
void* tester_alloc(size_t bytes);

/* Counts one check; on failure prints the message, the context and the seed.
 * Returns ok. */
int tester_check(tester* t, int ok, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Compares actual[0..n) with expected[0..n) within the per-element
 * tolerance tol[0..n): an actual with the poison's bits always fails (never
 * written); a NaN expected needs a NaN actual; an infinite
 * expected needs the same infinity; otherwise actual must be finite and
 * |actual - expected| <= tol (tol 0 means exact). One check; on failure
 * prints the first bad element, the max abs error, the max error/tol and the
 * NMSE. Returns 1 if all elements pass. */
int tester_check_close(tester* t, const char* what, size_t n, const float* actual,
                       const double* expected, const double* tol);

/* The ISAs a test runs on. */
typedef struct isa_list {
  mha_isa isa[MHA_ISA_COUNT];
  int count;
} isa_list;

/* The ISAs this build and CPU run, up to neon (neon_bf16, avx512_bf16: attention-bf16-test);
 * prints and counts the others in t->skipped_isas. MHA_TEST_ISAS (a comma
 * list of names) keeps only those it names, and fails the test when that
 * leaves none. */
isa_list tester_available_isas(tester* t);

/* The set whose table a set with a BF16 unit copies, but for its BF16 form
 * (neon_bf16: neon, avx512_bf16 and amx_bf16: avx512f): the widening path of bf16 calls
 * on the same CPU. Any other set: itself. */
mha_isa tester_widening_isa(mha_isa isa);

/* mha_set_isa(isa), counted as a check. Returns 1 on success. */
int tester_set_isa(tester* t, mha_isa isa);

/* Leaves a known message in mha_last_error() (through a failing
 * mha_set_isa_by_name), so that a later check can tell a fresh message from
 * a stale one. */
void tester_stale_error(void);

/* Checks a call that must fail: its status is want, and mha_last_error() is
 * a fresh, non-empty message that names arg (when arg is non-NULL).
 * Call tester_stale_error() before the call. Returns 1 if all hold. */
int tester_check_failure(tester* t, const char* what, mha_status got, mha_status want,
                         const char* arg);

/* Prints "<name>: N checks passed, M failed (...)" and returns the exit code. */
int tester_finish(tester* t);

#endif
