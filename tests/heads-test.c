/*
 * The textbook helpers mha_split_heads_f32 ([B, T, H·D] → [B, H, T, D]) and
 * mha_combine_heads_f32 (the inverse): against the index formula, the round
 * trip, and their argument checks. Buffers are exactly sized, so a
 * sanitizer build catches any access past them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void test_shape(tester* t, int64_t B, int64_t T, int64_t H, int64_t D) {
  tester_context(t, "split/combine heads B=%lld T=%lld H=%lld D=%lld", (long long)B,
                 (long long)T, (long long)H, (long long)D);
  const size_t n = (size_t)(B * T * H * D);
  float* x = tester_alloc(n * sizeof(float));
  float* split = tester_alloc(n * sizeof(float));
  float* back = tester_alloc(n * sizeof(float));
  float* want = tester_alloc(n * sizeof(float));
  tester_fill(t, x, n);
  tester_poison(split, n);
  tester_poison(back, n);

  mha_status st = mha_split_heads_f32(B, T, H, D, x, split);
  tester_check(t, st == MHA_STATUS_SUCCESS, "mha_split_heads_f32 returned %s: %s",
               mha_status_string(st), mha_last_error());
  /* split[b, h, t, d] = x[b, t, h·D + d] */
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t tt = 0; tt < T; tt++) {
        for (int64_t d = 0; d < D; d++) {
          want[((b * H + h) * T + tt) * D + d] = x[((b * T + tt) * H + h) * D + d];
        }
      }
    }
  }
  tester_check(t, memcmp(split, want, n * sizeof(float)) == 0,
               "mha_split_heads_f32 differs from split[b,h,t,d] = x[b,t,h*D+d]");

  st = mha_combine_heads_f32(B, T, H, D, split, back);
  tester_check(t, st == MHA_STATUS_SUCCESS, "mha_combine_heads_f32 returned %s: %s",
               mha_status_string(st), mha_last_error());
  tester_check(t, memcmp(back, x, n * sizeof(float)) == 0,
               "mha_combine_heads_f32(mha_split_heads_f32(x)) != x");

  /* combine on its own, against the formula out[b, t, h·D + d] = x[b, h, t, d] */
  tester_poison(back, n);
  st = mha_combine_heads_f32(B, T, H, D, x, back);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t tt = 0; tt < T; tt++) {
        for (int64_t d = 0; d < D; d++) {
          want[((b * T + tt) * H + h) * D + d] = x[((b * H + h) * T + tt) * D + d];
        }
      }
    }
  }
  tester_check(t, st == MHA_STATUS_SUCCESS && memcmp(back, want, n * sizeof(float)) == 0,
               "mha_combine_heads_f32 differs from out[b,t,h*D+d] = x[b,h,t,d]");
  free(want);
  free(back);
  free(split);
  free(x);
}

/* A failing call returns its status and leaves out untouched. */
static void expect_failure(tester* t, const char* what, mha_status want, mha_status got,
                           const float* out, const float* before, size_t n) {
  tester_check(t, got == want, "%s: returned %s, want %s", what, mha_status_string(got),
               mha_status_string(want));
  tester_check(t, mha_last_error()[0] != '\0', "%s: mha_last_error() is empty", what);
  tester_check(t, memcmp(out, before, n * sizeof(float)) == 0, "%s: wrote to out", what);
}

static void test_errors(tester* t) {
  tester_context(t, "split/combine heads argument checks");
  float x[24], out[24], before[24];
  tester_fill(t, x, 24);
  tester_fill(t, before, 24);
  memcpy(out, before, sizeof out);
  typedef mha_status (*heads_fn)(int64_t, int64_t, int64_t, int64_t, const float*, float*);
  const heads_fn fns[2] = {mha_split_heads_f32, mha_combine_heads_f32};
  const char* names[2] = {"mha_split_heads_f32", "mha_combine_heads_f32"};
  for (int f = 0; f < 2; f++) {
    char what[96];
    snprintf(what, sizeof what, "%s(x NULL)", names[f]);
    expect_failure(t, what, MHA_STATUS_NULL_POINTER, fns[f](2, 3, 2, 2, NULL, out), out, before,
                   24);
    snprintf(what, sizeof what, "%s(out NULL)", names[f]);
    tester_check(t, fns[f](2, 3, 2, 2, x, NULL) == MHA_STATUS_NULL_POINTER,
                 "%s: want null pointer", what);
    const int64_t bad[][4] = {{0, 3, 2, 2}, {2, 0, 2, 2}, {2, 3, 0, 2}, {2, 3, 2, 0},
                              {-1, 3, 2, 2}, {2, -3, 2, 2}, {2, 3, -2, 2}, {2, 3, 2, -2}};
    for (size_t i = 0; i < COUNT(bad); i++) {
      snprintf(what, sizeof what, "%s(%lld, %lld, %lld, %lld)", names[f], (long long)bad[i][0],
               (long long)bad[i][1], (long long)bad[i][2], (long long)bad[i][3]);
      expect_failure(t, what, MHA_STATUS_INVALID_SIZE,
                     fns[f](bad[i][0], bad[i][1], bad[i][2], bad[i][3], x, out), out, before, 24);
    }
    /* sizes whose product overflows: refused before any access */
    const int64_t big = (int64_t)1 << 40;
    snprintf(what, sizeof what, "%s(2^40, 2^40, 1, 1)", names[f]);
    expect_failure(t, what, MHA_STATUS_SIZE_OVERFLOW, fns[f](big, big, 1, 1, x, out), out,
                   before, 24);
  }
}

int main(void) {
  tester t;
  tester_init(&t, "heads-test");
  const int64_t shapes[][4] = {{1, 1, 1, 1}, {2, 5, 3, 7}, {3, 64, 12, 8}, {1, 7, 1, 137},
                               {2, 1, 4, 61}};
  for (size_t i = 0; i < COUNT(shapes); i++) {
    test_shape(&t, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
  }
  test_errors(&t);
  return tester_finish(&t);
}
