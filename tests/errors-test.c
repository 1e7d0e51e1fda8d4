/*
 * Error paths of the attention core, the ISA selection and the status
 * strings: one test per way to fail. For each: the status, a fresh
 * mha_last_error() naming the argument, and output buffers left untouched
 * (filled with a sentinel and compared after). Size overflows use huge
 * sizes with tiny buffers: validation must fail before touching memory.
 * Every status from 1 to 9 except OUT_OF_MEMORY must come up here (the
 * layer's errors and OUT_OF_MEMORY are in layer-errors-test.c). The
 * attention variants' fields (align, offset, window, softcap) and the lse
 * output's overlaps have their own cases, and the limits they allow run.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A small valid problem: B 2, H 2, Hkv 1, Tq 3, Tk 4, D 5, Dv 6. */
enum { B0 = 2, H0 = 2, HKV0 = 1, TQ0 = 3, TK0 = 4, D0 = 5, DV0 = 6 };
enum {
  Q_SIZE = B0 * H0 * TQ0 * D0,
  K_SIZE = B0 * HKV0 * TK0 * D0,
  V_SIZE = B0 * HKV0 * TK0 * DV0,
  OUT_SIZE = B0 * H0 * TQ0 * DV0,
  W_SIZE = B0 * H0 * TQ0 * TK0,
  LSE_SIZE = B0 * H0 * TQ0,
};

typedef struct core_fixture {
  mha_attention_desc desc;
  float q[Q_SIZE], k[K_SIZE], v[V_SIZE], out[OUT_SIZE], weights[W_SIZE], additive[W_SIZE];
  float out_before[OUT_SIZE], weights_before[W_SIZE];
  float lse[LSE_SIZE], lse_before[LSE_SIZE];
  float slopes[H0], sinks[H0];
  int32_t kv_len[B0];
} core_fixture;

static unsigned seen_status; /* bit s set when status s was produced */

static void fixture_init(tester* t, core_fixture* f) {
  mha_attention_desc_init(&f->desc, B0, H0, HKV0, TQ0, TK0, D0, DV0);
  tester_fill(t, f->q, Q_SIZE);
  tester_fill(t, f->k, K_SIZE);
  tester_fill(t, f->v, V_SIZE);
  tester_fill(t, f->additive, W_SIZE);
  tester_fill(t, f->out_before, OUT_SIZE);
  tester_fill(t, f->weights_before, W_SIZE);
  tester_fill(t, f->lse_before, LSE_SIZE);
  tester_fill(t, f->slopes, H0);
  tester_fill(t, f->sinks, H0);
  f->kv_len[0] = TK0;
  f->kv_len[1] = 2;
}

/* Runs the core on desc with the fixture's buffers (or NULL where asked)
 * and checks the failure. */
static void expect_core(tester* t, core_fixture* f, const mha_attention_desc* desc,
                        const char* what, mha_status want, const char* arg) {
  memcpy(f->out, f->out_before, sizeof f->out);
  memcpy(f->weights, f->weights_before, sizeof f->weights);
  memcpy(f->lse, f->lse_before, sizeof f->lse);
  tester_context(t, "core error: %s", what);
  tester_stale_error();
  const mha_status got = mha_attention_f32(desc, f->q, f->k, f->v, f->out, f->weights);
  tester_check_failure(t, what, got, want, arg);
  seen_status |= 1u << (unsigned)got;
  tester_check(t, memcmp(f->out, f->out_before, sizeof f->out) == 0, "%s: out was written", what);
  tester_check(t, memcmp(f->weights, f->weights_before, sizeof f->weights) == 0,
               "%s: weights were written", what);
  tester_check(t, memcmp(f->lse, f->lse_before, sizeof f->lse) == 0, "%s: lse was written", what);
}

/* The attention variants' arguments (mha_mask: align, offset, window,
 * softcap): each bad value is INVALID_ARGUMENT from the call and from the
 * workspace query, with a message naming the field; the limits themselves
 * are accepted. */
static void expect_core_and_query(tester* t, core_fixture* f, const mha_attention_desc* d,
                                  const char* what, mha_status want, const char* arg) {
  expect_core(t, f, d, what, want, arg);
  char query[96];
  snprintf(query, sizeof query, "workspace query, %s", what);
  size_t bytes = 0;
  tester_stale_error();
  tester_check_failure(t, query, mha_attention_workspace_size(d, 1, &bytes), want, arg);
}

static void expect_core_success(tester* t, core_fixture* f, const mha_attention_desc* d,
                                const char* what) {
  tester_context(t, "core, valid: %s", what);
  const mha_status st = mha_attention_f32(d, f->q, f->k, f->v, f->out, f->weights);
  tester_check(t, st == MHA_STATUS_SUCCESS, "%s returned %s: %s", what, mha_status_string(st),
               mha_last_error());
}

static void test_core_variant_arguments(tester* t, core_fixture* f) {
  const int aligns[] = {-1, MHA_ALIGN_KV_END + 1, 100};
  for (size_t i = 0; i < COUNT(aligns); i++) {
    mha_attention_desc d = f->desc;
    d.mask.align = (mha_align)aligns[i];
    char what[64];
    snprintf(what, sizeof what, "mask.align = %d", aligns[i]);
    expect_core_and_query(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "align");
  }
  const int64_t limit = (int64_t)1 << 60;
  const int64_t offsets[] = {limit, -limit, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < COUNT(offsets); i++) {
    mha_attention_desc d = f->desc;
    d.mask.align = MHA_ALIGN_OFFSET;
    d.mask.offset = offsets[i];
    char what[64];
    snprintf(what, sizeof what, "mask.offset = %lld", (long long)offsets[i]);
    expect_core_and_query(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "offset");
  }
  const int windows[] = {2, -1, 1000};
  for (size_t i = 0; i < COUNT(windows); i++) {
    mha_attention_desc d = f->desc;
    d.mask.window = windows[i];
    char what[64];
    snprintf(what, sizeof what, "mask.window = %d", windows[i]);
    expect_core_and_query(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "window");
  }
  const int64_t sides[] = {-1, INT64_MIN};
  for (size_t i = 0; i < COUNT(sides); i++) {
    for (int right = 0; right <= 1; right++) {
      mha_attention_desc d = f->desc;
      d.mask.window = 1;
      d.mask.window_left = right ? 3 : sides[i];
      d.mask.window_right = right ? sides[i] : 3;
      char what[64];
      snprintf(what, sizeof what, "mask.window_%s = %lld", right ? "right" : "left",
               (long long)sides[i]);
      expect_core_and_query(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT,
                            right ? "window_right" : "window_left");
    }
  }
  const float caps[] = {NAN, -NAN, -1.0f, -FLT_MIN, INFINITY, -INFINITY};
  for (size_t i = 0; i < COUNT(caps); i++) {
    mha_attention_desc d = f->desc;
    d.mask.softcap = caps[i];
    char what[64];
    snprintf(what, sizeof what, "mask.softcap = %g", (double)caps[i]);
    expect_core_and_query(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "softcap");
  }
  /* the limits are valid */
  mha_attention_desc d = f->desc;
  d.mask.align = MHA_ALIGN_OFFSET;
  d.mask.offset = limit - 1;
  d.mask.causal = 1;
  expect_core_success(t, f, &d, "offset 2^60 - 1, causal");
  d.mask.offset = -(limit - 1);
  expect_core_success(t, f, &d, "offset -(2^60 - 1), causal");
  d = f->desc;
  d.mask.window = 1;
  d.mask.window_left = INT64_MAX;
  d.mask.window_right = INT64_MAX;
  d.mask.softcap = FLT_MAX;
  d.mask.alibi_slopes = f->slopes;
  d.mask.sinks = f->sinks;
  d.lse = f->lse;
  expect_core_success(t, f, &d, "window INT64_MAX both sides, softcap FLT_MAX, slopes, sinks, lse");
  d.mask.softcap = -0.0f; /* == 0: off */
  expect_core_success(t, f, &d, "softcap -0");
}

/* lse is an output: it must not overlap out, weights or any input; nor may
 * out or weights overlap the slopes or the sinks (inputs): INVALID_STRIDE,
 * naming the views. */
static void test_core_variant_overlaps(tester* t, core_fixture* f) {
  struct {
    const char* what;
    float* lse;
  } lse_cases[] = {
      {"lse on out", f->out},
      {"lse on the last element of out", f->out + OUT_SIZE - 1},
      {"lse on weights", f->weights + 5},
      {"lse on q", f->q},
      {"lse on k", f->k + K_SIZE - 2},
      {"lse on v", f->v + 3},
      {"lse on the additive mask", f->additive},
      {"lse on kv_len", (float*)f->kv_len},
      {"lse on the ALiBi slopes", f->slopes},
      {"lse on the sinks", f->sinks},
  };
  for (size_t i = 0; i < COUNT(lse_cases); i++) {
    mha_attention_desc d = f->desc;
    d.mask.additive = f->additive;
    d.mask.additive_strides = (mha_strides){H0 * TQ0 * TK0, TQ0 * TK0, TK0};
    d.mask.kv_len = f->kv_len;
    d.mask.alibi_slopes = f->slopes;
    d.mask.sinks = f->sinks;
    d.lse = lse_cases[i].lse;
    expect_core(t, f, &d, lse_cases[i].what, MHA_STATUS_INVALID_STRIDE, "lse");
  }
  mha_attention_desc d = f->desc;
  d.mask.sinks = f->out + 1;
  expect_core(t, f, &d, "sinks inside out", MHA_STATUS_INVALID_STRIDE, "sinks");
  d = f->desc;
  d.mask.alibi_slopes = f->weights + W_SIZE - 1;
  expect_core(t, f, &d, "ALiBi slopes overlapping weights", MHA_STATUS_INVALID_STRIDE, "alibi_slopes");
  /* adjacent but disjoint: accepted */
  d = f->desc;
  d.lse = f->lse;
  d.mask.alibi_slopes = f->slopes;
  d.mask.sinks = f->sinks;
  expect_core_success(t, f, &d, "lse, slopes and sinks in their own buffers");
}

static void test_core_null_pointers(tester* t, core_fixture* f) {
  const float* inputs[3] = {f->q, f->k, f->v};
  const char* names[4] = {"q", "k", "v", "out"};
  for (int which = 0; which < 4; which++) {
    memcpy(f->out, f->out_before, sizeof f->out);
    char what[64];
    snprintf(what, sizeof what, "%s NULL", names[which]);
    tester_context(t, "core error: %s", what);
    tester_stale_error();
    const mha_status got =
        mha_attention_f32(&f->desc, which == 0 ? NULL : inputs[0], which == 1 ? NULL : inputs[1],
                          which == 2 ? NULL : inputs[2], which == 3 ? NULL : f->out, NULL);
    tester_check_failure(t, what, got, MHA_STATUS_NULL_POINTER, names[which]);
    seen_status |= 1u << (unsigned)got;
    tester_check(t, memcmp(f->out, f->out_before, sizeof f->out) == 0, "%s: out was written",
                 what);
  }
  expect_core(t, f, NULL, "desc NULL", MHA_STATUS_NULL_POINTER, "desc");
}

static void test_core_sizes(tester* t, core_fixture* f) {
  const char* names[7] = {"B", "H", "Hkv", "Tq", "Tk", "D", "Dv"};
  const int64_t bad[] = {0, -1, INT64_MIN};
  for (int field = 0; field < 7; field++) {
    for (size_t i = 0; i < COUNT(bad); i++) {
      mha_attention_desc d = f->desc;
      int64_t* sizes[7] = {&d.B, &d.H, &d.Hkv, &d.Tq, &d.Tk, &d.D, &d.Dv};
      *sizes[field] = bad[i];
      char what[64];
      snprintf(what, sizeof what, "%s = %lld", names[field], (long long)bad[i]);
      expect_core(t, f, &d, what, MHA_STATUS_INVALID_SIZE, names[field]);
    }
  }
}

static void test_core_shapes(tester* t, core_fixture* f) {
  mha_attention_desc d = f->desc;
  d.H = 3, d.Hkv = 2;
  expect_core(t, f, &d, "H 3, Hkv 2", MHA_STATUS_INVALID_SHAPE, "Hkv");
  d = f->desc;
  d.Hkv = 4; /* more K/V heads than query heads */
  expect_core(t, f, &d, "H 2, Hkv 4", MHA_STATUS_INVALID_SHAPE, "Hkv");
}

static void test_core_strides(tester* t, core_fixture* f) {
  const char* names[4] = {"q", "k", "v", "out"};
  const int64_t widths[4] = {D0, D0, DV0, DV0};
  for (int which = 0; which < 4; which++) {
    for (int dim = 0; dim < 3; dim++) {
      mha_attention_desc d = f->desc;
      mha_strides* views[4] = {&d.q, &d.k, &d.v, &d.out};
      int64_t* field = dim == 0 ? &views[which]->batch : dim == 1 ? &views[which]->head
                                                                  : &views[which]->row;
      *field = -1;
      char what[64];
      snprintf(what, sizeof what, "%s stride %d = -1", names[which], dim);
      expect_core(t, f, &d, what, MHA_STATUS_INVALID_STRIDE, names[which]);
    }
    mha_attention_desc d = f->desc;
    mha_strides* views[4] = {&d.q, &d.k, &d.v, &d.out};
    views[which]->row = widths[which] - 1;
    char what[64];
    snprintf(what, sizeof what, "%s row stride %lld < width %lld", names[which],
             (long long)(widths[which] - 1), (long long)widths[which]);
    expect_core(t, f, &d, what, MHA_STATUS_INVALID_STRIDE, names[which]);
  }
  mha_attention_desc d = f->desc;
  d.mask.additive = f->additive;
  d.mask.additive_strides = (mha_strides){-1, 0, TK0};
  expect_core(t, f, &d, "additive batch stride -1", MHA_STATUS_INVALID_STRIDE, "additive");
  d.mask.additive_strides = (mha_strides){0, 0, TK0 - 1};
  expect_core(t, f, &d, "additive row stride Tk - 1", MHA_STATUS_INVALID_STRIDE, "additive");
}

static void test_core_arguments(tester* t, core_fixture* f) {
  const float scales[] = {NAN, INFINITY, -INFINITY};
  for (size_t i = 0; i < COUNT(scales); i++) {
    mha_attention_desc d = f->desc;
    d.scale = scales[i];
    char what[64];
    snprintf(what, sizeof what, "scale %g", (double)scales[i]);
    expect_core(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "scale");
  }
  const int causal[] = {2, -1};
  for (size_t i = 0; i < COUNT(causal); i++) {
    mha_attention_desc d = f->desc;
    d.mask.causal = causal[i];
    char what[64];
    snprintf(what, sizeof what, "causal %d", causal[i]);
    expect_core(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "causal");
  }
  const int32_t lengths[] = {-1, TK0 + 1, INT32_MIN, INT32_MAX};
  for (size_t i = 0; i < COUNT(lengths); i++) {
    mha_attention_desc d = f->desc;
    f->kv_len[1] = lengths[i];
    d.mask.kv_len = f->kv_len;
    char what[64];
    snprintf(what, sizeof what, "kv_len[1] = %d with Tk %d", (int)lengths[i], TK0);
    expect_core(t, f, &d, what, MHA_STATUS_INVALID_ARGUMENT, "kv_len");
  }
  f->kv_len[1] = 2;
  mha_attention_desc d = f->desc;
  d.num_threads = -1;
  expect_core(t, f, &d, "num_threads -1", MHA_STATUS_INVALID_ARGUMENT, "num_threads");
}

/* Sizes whose products overflow, with the fixture's tiny buffers. */
static void test_core_overflow(tester* t, core_fixture* f) {
  const int64_t big = (int64_t)1 << 40;
  mha_attention_desc d;
  /* B·Tq rows: every view's extent is about 2^80 elements */
  mha_attention_desc_init(&d, big, 1, 1, big, 1, 1, 1);
  expect_core(t, f, &d, "B 2^40, Tq 2^40", MHA_STATUS_SIZE_OVERFLOW, NULL);
  /* each view fits, but the [B, H, Tq, Tk] weights (2^64 elements) do not */
  const int64_t rows = (int64_t)1 << 32;
  mha_attention_desc_init(&d, 1, 1, 1, rows, rows, 1, 1);
  expect_core(t, f, &d, "weights of Tq 2^32 x Tk 2^32", MHA_STATUS_SIZE_OVERFLOW, NULL);
  /* a stride so large that (B - 1)·stride overflows */
  d = f->desc;
  d.q.batch = INT64_MAX / 2 + 1;
  d.B = 3;
  expect_core(t, f, &d, "q batch stride 2^62 with B 3", MHA_STATUS_SIZE_OVERFLOW, NULL);
  /* extent in elements fits int64 but not in bytes */
  d = f->desc;
  d.k.row = INT64_MAX / 4;
  expect_core(t, f, &d, "k row stride 2^61: bytes overflow", MHA_STATUS_SIZE_OVERFLOW, NULL);
}

static void test_isa_errors(tester* t) {
  tester_context(t, "ISA selection errors");
  mha_isa before;
  tester_check(t, mha_get_isa(&before) == MHA_STATUS_SUCCESS, "mha_get_isa: %s",
               mha_last_error());

  tester_stale_error();
  mha_status st = mha_set_isa_by_name("sse9");
  tester_check_failure(t, "mha_set_isa_by_name(\"sse9\")", st, MHA_STATUS_UNKNOWN_ISA, "sse9");
  seen_status |= 1u << (unsigned)st;
  tester_stale_error();
  st = mha_set_isa_by_name("");
  tester_check_failure(t, "mha_set_isa_by_name(\"\")", st, MHA_STATUS_UNKNOWN_ISA, NULL);
  tester_stale_error();
  st = mha_set_isa_by_name(NULL);
  tester_check_failure(t, "mha_set_isa_by_name(NULL)", st, MHA_STATUS_NULL_POINTER, NULL);

  int unavailable = 0;
  for (int i = MHA_ISA_SCALAR; i < MHA_ISA_COUNT; i++) {
    if (mha_isa_available((mha_isa)i)) continue;
    unavailable++;
    char what[64];
    snprintf(what, sizeof what, "mha_set_isa(%s)", mha_isa_name((mha_isa)i));
    tester_stale_error();
    st = mha_set_isa((mha_isa)i);
    tester_check_failure(t, what, st, MHA_STATUS_UNSUPPORTED_ISA, mha_isa_name((mha_isa)i));
    seen_status |= 1u << (unsigned)st;
    snprintf(what, sizeof what, "mha_set_isa_by_name(\"%s\")", mha_isa_name((mha_isa)i));
    tester_stale_error();
    st = mha_set_isa_by_name(mha_isa_name((mha_isa)i));
    tester_check_failure(t, what, st, MHA_STATUS_UNSUPPORTED_ISA, NULL);
  }
  /* x86 builds lack neon and AArch64 builds lack avx2: one is always missing */
  tester_check(t, unavailable > 0, "every ISA available: UNSUPPORTED_ISA cannot be tested");

  const int bad_values[] = {-1, MHA_ISA_COUNT, 100};
  for (size_t i = 0; i < COUNT(bad_values); i++) {
    char what[64];
    snprintf(what, sizeof what, "mha_set_isa(%d)", bad_values[i]);
    tester_stale_error();
    st = mha_set_isa((mha_isa)bad_values[i]);
    tester_check_failure(t, what, st, MHA_STATUS_INVALID_ARGUMENT, NULL);
    seen_status |= 1u << (unsigned)st;
  }
  tester_stale_error();
  st = mha_get_isa(NULL);
  tester_check_failure(t, "mha_get_isa(NULL)", st, MHA_STATUS_NULL_POINTER, NULL);

  mha_isa after = (mha_isa)-1;
  tester_check(t, mha_get_isa(&after) == MHA_STATUS_SUCCESS && after == before,
               "failed mha_set_isa calls changed the ISA in use (%s -> %s)",
               mha_isa_name(before), mha_isa_name(after));
}

static void test_names(tester* t) {
  tester_context(t, "status and ISA names");
  const char* strings[11];
  for (int s = 0; s <= 10; s++) {
    strings[s] = mha_status_string((mha_status)s);
    tester_check(t, strings[s] != NULL && strings[s][0] != '\0',
                 "mha_status_string(%d) is NULL or empty", s);
    for (int r = 0; r < s && strings[s] != NULL; r++) {
      tester_check(t, strings[r] == NULL || strcmp(strings[r], strings[s]) != 0,
                   "mha_status_string(%d) == mha_status_string(%d) = \"%s\"", r, s, strings[s]);
    }
  }
  tester_check(t, strcmp(mha_status_string((mha_status)11), "unknown status") == 0,
               "mha_status_string(11) is \"unknown status\"");
  tester_check(t, mha_status_string((mha_status)-1) != NULL, "mha_status_string(-1) is NULL");

  const char* want[MHA_ISA_COUNT] = {"default", "scalar", "avx2", "avx512f", "neon", "neon_bf16", "avx512_bf16", "amx_bf16"};
  for (int i = 0; i < MHA_ISA_COUNT; i++) {
    const char* name = mha_isa_name((mha_isa)i);
    tester_check(t, name != NULL && strcmp(name, want[i]) == 0, "mha_isa_name(%d) = \"%s\"", i,
                 name != NULL ? name : "(NULL)");
  }
  const int outside[] = {-1, MHA_ISA_COUNT, 1000};
  for (size_t i = 0; i < COUNT(outside); i++) {
    const char* name = mha_isa_name((mha_isa)outside[i]);
    tester_check(t, name != NULL && strcmp(name, "unknown") == 0, "mha_isa_name(%d) = \"%s\"",
                 outside[i], name != NULL ? name : "(NULL)");
    tester_check(t, mha_isa_available((mha_isa)outside[i]) == 0, "mha_isa_available(%d) != 0",
                 outside[i]);
  }
  tester_check(t, mha_isa_available(MHA_ISA_SCALAR) == 1, "scalar is not available");
}

int main(void) {
  tester t;
  tester_init(&t, "errors-test");
  static core_fixture f; /* large-ish: not on the stack */
  fixture_init(&t, &f);
  test_core_null_pointers(&t, &f);
  test_core_sizes(&t, &f);
  test_core_shapes(&t, &f);
  test_core_strides(&t, &f);
  test_core_arguments(&t, &f);
  test_core_overflow(&t, &f);
  test_core_variant_arguments(&t, &f);
  test_core_variant_overlaps(&t, &f);
  test_isa_errors(&t);
  test_names(&t);

  /* the fixture itself is valid: the failures above come from the one change each made */
  tester_context(&t, "the unchanged fixture");
  const mha_status st = mha_attention_f32(&f.desc, f.q, f.k, f.v, f.out, f.weights);
  tester_check(&t, st == MHA_STATUS_SUCCESS, "the valid fixture returned %s: %s",
               mha_status_string(st), mha_last_error());

  for (unsigned s = 1; s <= 9; s++) {
    if (s == MHA_STATUS_OUT_OF_MEMORY) continue; /* layer-errors-test.c */
    tester_check(&t, (seen_status >> s) & 1u, "no test produced status %u (%s)", s,
                 mha_status_string((mha_status)s));
  }
  return tester_finish(&t);
}
