/*
 * Size boundaries of the attention core.
 *
 *   size-boundary-test large
 *     Tq = Tk = 46341, so Tq·Tk = 2147488281 > 2^31: any 32-bit count of
 *     scores or of key blocks overflows. B = H = 1, D = Dv = 1, no weights,
 *     causal and not, on every ISA this CPU runs (the scalar path without
 *     the mask only: its causal run adds 8 s). V holds the key's
 *     position, v_j = (j + 1/2) / Tk, so that a row's output is where its
 *     attention lies on average, and K rises with it, k_j = 2·v_j − 1, while
 *     Q is random in [-1, 1) and the scale is 4: row i's output moves with
 *     q_i (from about 0.13 to 0.87 without the causal mask), and a loop that
 *     skips or repeats a range of keys, or reads another row, moves it by
 *     far more than the tolerance. (With random V every row's output
 *     averages out to about the same number, whatever keys were read.)
 *     Eight rows (the first two, three around the middle, 2^15, the last
 *     two) are compared with the double-precision oracle on just that row
 *     (tolerance derived as in tolerance.c), and every output must be
 *     finite. 10 to 25 s on 2 cores in a Release build, most of it the
 *     scalar path, which sanitizer builds leave out (the SIMD paths take
 *     about 30 s there); exit 77 (skipped) if no ISA is left to run.
 *
 *   size-boundary-test overflow
 *     Shapes whose byte counts overflow int64_t / size_t must be refused
 *     with SIZE_OVERFLOW (INVALID_STRIDE where an output view overlaps
 *     itself) before anything is read, written or allocated, by
 *     mha_attention_f32 and mha_attention_workspace_size alike (the same
 *     status, each with a non-empty mha_last_error()). The data pointers
 *     point at 64 floats: a call that went ahead would read far past them.
 *     Each shape runs in a forked child under a 10 s alarm(), so that a
 *     crash or a hang is reported as such. Allocations are counted by the
 *     interposed allocator (alloc-hooks.c); under a sanitizer or valgrind,
 *     which own malloc, the rest is checked.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc-hooks.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Tq·Tk > 2^31                                                             */
/* ------------------------------------------------------------------------ */

enum { T_LARGE = 46341 };
#define SCALE 4.0f

static void test_large(tester* t, mha_isa isa, int causal, const float* q, const float* k,
                       const float* v, const double* qd, const double* kd, const double* vd,
                       float* out) {
  const int64_t T = T_LARGE;
  tester_context(t, "Tq = Tk = %lld, D = Dv = 1, causal %d, isa %s", (long long)T, causal,
                 mha_isa_name(isa));
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, 1, 1, T, T, 1, 1);
  d.isa = isa;
  d.mask.causal = causal;
  d.scale = SCALE;
  tester_poison(out, (size_t)T);
  const double t0 = now_seconds();
  const mha_status st = mha_attention_f32(&d, q, k, v, out, NULL);
  const double seconds = now_seconds() - t0;
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "mha_attention_f32: %s: %s",
                    mha_status_string(st), mha_last_error())) {
    return;
  }
  size_t bad = 0;
  for (int64_t i = 0; i < T; i++) bad += !isfinite(out[i]);
  tester_check(t, bad == 0, "%zu of %lld rows are not finite (or never written)", bad,
               (long long)T);

  static const int64_t rows[] = {0, 1, T_LARGE / 2 - 1, T_LARGE / 2, T_LARGE / 2 + 1, 32768,
                                 T_LARGE - 2, T_LARGE - 1};
  float got[COUNT(rows)];
  double want[COUNT(rows)], tol[COUNT(rows)];
  for (size_t r = 0; r < COUNT(rows); r++) {
    const int64_t i = rows[r];
    /* the row alone: one query against the keys it sees */
    oracle_attention_problem p;
    memset(&p, 0, sizeof p);
    p.B = p.H = p.Hkv = p.Tq = p.D = p.Dv = 1;
    p.Tk = causal ? i + 1 : T;
    p.q = qd + i;
    p.k = kd;
    p.v = vd;
    p.q_strides = (oracle_strides){1, 1, 1};
    p.k_strides = p.v_strides = (oracle_strides){T, T, 1};
    p.scale = SCALE;
    oracle_attention(&p, &want[r], NULL);
    tolerance_attention(&p, NULL, NULL, &tol[r], NULL);
    got[r] = out[i];
  }
  char what[96];
  snprintf(what, sizeof what, "rows 0, 1, T/2 - 1, T/2, T/2 + 1, 2^15, T - 2, T - 1");
  tester_check_close(t, what, COUNT(rows), got, want, tol);
  printf("size-boundary-test: Tq = Tk = %lld (Tq·Tk = %lld), causal %d, %-7s: %6.2f s; "
         "row T/2: %.6f (oracle %.6f, tolerance %.2g)\n",
         (long long)T, (long long)(T * T), causal, mha_isa_name(isa), seconds, (double)got[3],
         want[3], tol[3]);
}

/* Sanitizer builds leave out the scalar path: about 45 s of the 75 s that
 * the problem takes there on every ISA (2 cores); Release runs it. */
static int skip_isa(mha_isa isa) {
#ifdef MHA_TEST_SANITIZE
  if (isa == MHA_ISA_SCALAR) {
    printf("size-boundary-test: skipping ISA scalar under -fsanitize=%s (too slow there; the "
           "Release build runs it)\n", MHA_TEST_SANITIZE);
    return 1;
  }
#endif
  (void)isa;
  return 0;
}

static int run_large(tester* t) {
  const int64_t T = T_LARGE;
  float* q = tester_alloc((size_t)T * sizeof(float));
  float* k = tester_alloc((size_t)T * sizeof(float));
  float* v = tester_alloc((size_t)T * sizeof(float));
  float* out = tester_alloc((size_t)T * sizeof(float));
  double* qd = tester_alloc((size_t)T * sizeof(double));
  double* kd = tester_alloc((size_t)T * sizeof(double));
  double* vd = tester_alloc((size_t)T * sizeof(double));
  tester_fill(t, q, (size_t)T);
  for (int64_t j = 0; j < T; j++) {
    v[j] = (float)(((double)j + 0.5) / (double)T);
    k[j] = 2.0f * v[j] - 1.0f;
    qd[j] = q[j];
    kd[j] = k[j];
    vd[j] = v[j];
  }
  const isa_list isas = tester_available_isas(t);
  int ran = 0;
  for (int i = 0; i < isas.count; i++) {
    if (skip_isa(isas.isa[i])) continue;
    ran++;
    for (int causal = 0; causal <= 1; causal++) {
      /* the scalar path only without the mask: with it, it takes 8 s more
       * and reaches no size the unmasked run does not (causal rows see
       * T·(T + 1)/2 < 2^31 scores in all) */
      if (isas.isa[i] == MHA_ISA_SCALAR && causal) continue;
      test_large(t, isas.isa[i], causal, q, k, v, qd, kd, vd, out);
    }
  }
  free(q);
  free(k);
  free(v);
  free(out);
  free(qd);
  free(kd);
  free(vd);
  if (ran == 0) {
    printf("size-boundary-test: skipped: no ISA left to run\n");
    return 77;
  }
  return tester_finish(t);
}

/* ------------------------------------------------------------------------ */
/* Byte counts that overflow                                                */
/* ------------------------------------------------------------------------ */

enum { DUMMY = 64, CHILD_SECONDS = 10 };

/* What the child saw. */
typedef struct refusal {
  int status, ws_status;       /* mha_attention_f32, mha_attention_workspace_size */
  int message, ws_message;     /* each left a non-empty mha_last_error() */
  long allocations;            /* allocation attempts during both calls */
  int untouched;               /* out and weights still hold their poison */
  char text[200];              /* the call's message */
} refusal;

typedef struct overflow_case {
  const char* name;
  mha_attention_desc desc;
  int with_weights;
  mha_status want, also; /* the status wanted; `also` another acceptable one (or SUCCESS: none) */
} overflow_case;

static void child_refuse(const overflow_case* c, int fd) {
  static float q[DUMMY], k[DUMMY], v[DUMMY], out[DUMMY], weights[DUMMY];
  for (int i = 0; i < DUMMY; i++) q[i] = k[i] = v[i] = 0.5f;
  tester_poison(out, DUMMY);
  tester_poison(weights, DUMMY);
  refusal r;
  memset(&r, 0, sizeof r);
  tester_stale_error();
  char stale[512];
  snprintf(stale, sizeof stale, "%s", mha_last_error());
  alarm(CHILD_SECONDS);
  alloc_hooks_fail_at(0);
  r.status = (int)mha_attention_f32(&c->desc, q, k, v, out, c->with_weights ? weights : NULL);
  snprintf(r.text, sizeof r.text, "%s", mha_last_error());
  r.message = mha_last_error()[0] != '\0' && strcmp(mha_last_error(), stale) != 0;
  tester_stale_error();
  size_t bytes = 0;
  r.ws_status = (int)mha_attention_workspace_size(&c->desc, c->with_weights, &bytes);
  r.ws_message = mha_last_error()[0] != '\0' && strcmp(mha_last_error(), stale) != 0;
  r.allocations = alloc_hooks_attempts();
  r.untouched = 1;
  for (int i = 0; i < DUMMY; i++) {
    r.untouched &= tester_is_poison(out[i]) && tester_is_poison(weights[i]);
  }
  const ssize_t n = write(fd, &r, sizeof r);
  _exit(n == (ssize_t)sizeof r ? 0 : 3);
}

static void expect_refused(tester* t, const overflow_case* c) {
  tester_context(t, "overflow: %s", c->name);
  int fds[2];
  if (!tester_check(t, pipe(fds) == 0, "pipe: %s", strerror(errno))) return;
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child_refuse(c, fds[1]);
  }
  close(fds[1]);
  if (!tester_check(t, pid > 0, "fork: %s", strerror(errno))) {
    close(fds[0]);
    return;
  }
  refusal r;
  const ssize_t got = read(fds[0], &r, sizeof r);
  close(fds[0]);
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (WIFSIGNALED(wstatus)) {
    tester_check(t, 0, "%s: the call %s (signal %d)", c->name,
                 WTERMSIG(wstatus) == SIGALRM ? "did not return within 10 s" : "crashed",
                 WTERMSIG(wstatus));
    return;
  }
  if (!tester_check(t, got == (ssize_t)sizeof r && WEXITSTATUS(wstatus) == 0,
                    "%s: the child exited with %d without a report", c->name,
                    WEXITSTATUS(wstatus))) {
    return;
  }
  const mha_status st = (mha_status)r.status, ws = (mha_status)r.ws_status;
  const int want_ok = st == c->want || (c->also != MHA_STATUS_SUCCESS && st == c->also);
  tester_check(t, want_ok, "%s: mha_attention_f32 returned %s, want %s%s%s; message: %s", c->name,
               mha_status_string(st), mha_status_string(c->want),
               c->also != MHA_STATUS_SUCCESS ? " or " : "",
               c->also != MHA_STATUS_SUCCESS ? mha_status_string(c->also) : "", r.text);
  tester_check(t, r.message, "%s: mha_attention_f32 left no message", c->name);
  tester_check(t, ws == st, "%s: mha_attention_workspace_size returned %s, the call %s", c->name,
               mha_status_string(ws), mha_status_string(st));
  tester_check(t, r.ws_message, "%s: mha_attention_workspace_size left no message", c->name);
  tester_check(t, r.untouched, "%s: the refused call wrote to out or weights", c->name);
  if (alloc_hooks_available()) {
    tester_check(t, r.allocations == 0, "%s: %ld allocations before refusing", c->name,
                 r.allocations);
  }
  printf("size-boundary-test: %-58s -> %s: %s\n", c->name, mha_status_string(st), r.text);
}

static overflow_case shape(const char* name, int64_t B, int64_t H, int64_t Hkv, int64_t Tq,
                           int64_t Tk, int64_t D, mha_status want) {
  overflow_case c;
  memset(&c, 0, sizeof c);
  c.name = name;
  mha_attention_desc_init(&c.desc, B, H, Hkv, Tq, Tk, D, D);
  c.desc.num_threads = 1;
  c.want = want;
  c.also = MHA_STATUS_SUCCESS;
  return c;
}

static int run_overflow(tester* t) {
  const int64_t p62 = INT64_C(1) << 62;
  const mha_strides bcast1 = {0, 0, 1}; /* every batch and head on one [T, 1] block */
  overflow_case cases[12];
  size_t n = 0;

  /* the bug report: all four views broadcast over 2^62 batch entries; out
   * then overlaps itself (INVALID_STRIDE), unless the size check comes first */
  overflow_case c = shape("bug report: B 2^62, Tq 8, Tk 200, strides {0, 0, 1}", p62, 1, 1, 8,
                          200, 1, MHA_STATUS_INVALID_STRIDE);
  c.desc.q = c.desc.k = c.desc.v = c.desc.out = bcast1;
  c.also = MHA_STATUS_SIZE_OVERFLOW;
  cases[n++] = c;
  /* inputs broadcast, out contiguous: out's extent is 2^65 floats */
  c = shape("B 2^62, inputs {0, 0, 1}, out contiguous", p62, 1, 1, 8, 200, 1,
            MHA_STATUS_SIZE_OVERFLOW);
  c.desc.q = c.desc.k = c.desc.v = bcast1;
  cases[n++] = c;
  c = shape("B 2^62, D 64, inputs {0, 0, 64}, out contiguous", p62, 1, 1, 8, 200, 64,
            MHA_STATUS_SIZE_OVERFLOW);
  c.desc.q = c.desc.k = c.desc.v = (mha_strides){0, 0, 64};
  cases[n++] = c;
  c = shape("B 2^62, weights, inputs and out {0, 0, 1}", p62, 1, 1, 8, 200, 1,
            MHA_STATUS_SIZE_OVERFLOW);
  c.desc.q = c.desc.k = c.desc.v = c.desc.out = bcast1;
  c.with_weights = 1;
  c.also = MHA_STATUS_INVALID_STRIDE; /* out overlaps too */
  cases[n++] = c;
  /* every view fits (16 GiB each), the weights [1, 1, 2^32, 2^32] do not */
  c = shape("weights [1, 1, 2^32, 2^32]", 1, 1, 1, INT64_C(1) << 32, INT64_C(1) << 32, 1,
            MHA_STATUS_SIZE_OVERFLOW);
  c.with_weights = 1;
  cases[n++] = c;
  /* 2^61 weights fit int64 as a count, not as bytes */
  c = shape("weights [1, 1, 2^31, 2^30]: 2^63 bytes", 1, 1, 1, INT64_C(1) << 31,
            INT64_C(1) << 30, 1, MHA_STATUS_SIZE_OVERFLOW);
  c.with_weights = 1;
  cases[n++] = c;
  c = shape("weights [2^20, 2^20, 2^12, 2^12]: 2^64 elements", INT64_C(1) << 20,
            INT64_C(1) << 20, 1, INT64_C(1) << 12, INT64_C(1) << 12, 1, MHA_STATUS_SIZE_OVERFLOW);
  c.with_weights = 1;
  cases[n++] = c;
  c = shape("Tk = INT64_MAX", 1, 1, 1, 1, INT64_MAX, 1, MHA_STATUS_SIZE_OVERFLOW);
  cases[n++] = c;
  c = shape("Tk = INT64_MAX / 4 + 1 (K's bytes just past INT64_MAX)", 1, 1, 1, 1,
            INT64_MAX / 4 + 1, 1, MHA_STATUS_SIZE_OVERFLOW);
  cases[n++] = c;
  c = shape("Tq = INT64_MAX", 1, 1, 1, INT64_MAX, 1, 1, MHA_STATUS_SIZE_OVERFLOW);
  cases[n++] = c;
  c = shape("D = Dv = INT64_MAX", 1, 1, 1, 1, 1, INT64_MAX, MHA_STATUS_SIZE_OVERFLOW);
  cases[n++] = c;
  /* (B - 1)·batch stride = 2^63 */
  c = shape("B 3, q batch stride 2^62", 3, 1, 1, 1, 1, 1, MHA_STATUS_SIZE_OVERFLOW);
  c.desc.q.batch = p62;
  cases[n++] = c;

  for (size_t i = 0; i < n; i++) expect_refused(t, &cases[i]);
  if (!alloc_hooks_available()) {
    printf("size-boundary-test: allocations not counted (a sanitizer or valgrind owns malloc)\n");
  }
  return tester_finish(t);
}

int main(int argc, char** argv) {
  tester t;
  tester_init(&t, "size-boundary-test");
  if (argc == 2 && strcmp(argv[1], "large") == 0) return run_large(&t);
  if (argc == 2 && strcmp(argv[1], "overflow") == 0) return run_overflow(&t);
  fprintf(stderr, "usage: size-boundary-test large|overflow\n");
  return 2;
}
