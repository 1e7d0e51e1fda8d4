/*
 * Error paths of the layer: mha_layer_create, mha_layer_forward and
 * mha_layer_forward_once. For each: the status, a fresh mha_last_error(),
 * *layer set to NULL on a failed create, and out/weights left untouched.
 * Also OUT_OF_MEMORY, from a legitimately huge forward run in a child
 * process (see test_out_of_memory).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mha.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* d_model 8, H 2 (D 4), self-attention; B 2, Tq 3, cross Tk 4. */
enum { DM = 8, NH = 2, NB = 2, NTQ = 3, NTK = 4, DKV = 6 };
enum { OUT_N = NB * NTQ * DM, W_N = NB * NH * NTQ * NTK };

typedef struct layer_fixture {
  float w_q[DM * DM], w_k[DM * DM], w_v[DM * DM], w_o[DM * DM], in_proj[3 * DM * DM];
  float w_k6[DKV * DM], w_v6[DKV * DM]; /* for d_kv 6 */
  float bias[3 * DM];
  float x_q[NB * NTQ * DM], x_k[NB * NTK * DM], additive[W_N];
  float out[OUT_N], weights[W_N], out_before[OUT_N], weights_before[W_N];
  int32_t kv_len[NB];
  mha_layer_desc desc;
  mha_layer_args args;
} layer_fixture;

static unsigned seen_status;

static void fixture_init(tester* t, layer_fixture* f) {
  float* arrays[] = {f->w_q, f->w_k, f->w_v, f->w_o, f->in_proj, f->w_k6, f->w_v6, f->bias,
                     f->x_q, f->x_k, f->additive, f->out_before, f->weights_before};
  const size_t sizes[] = {DM * DM, DM * DM, DM * DM, DM * DM, 3 * DM * DM, DKV * DM, DKV * DM,
                          3 * DM, NB * NTQ * DM, NB * NTK * DM, W_N, OUT_N, W_N};
  for (size_t i = 0; i < COUNT(arrays); i++) tester_fill(t, arrays[i], sizes[i]);
  f->kv_len[0] = 1;
  f->kv_len[1] = NTQ;
  memset(&f->desc, 0, sizeof f->desc);
  f->desc.d_model = DM;
  f->desc.H = NH;
  f->desc.layout = MHA_WEIGHTS_IN_OUT;
  f->desc.w_q = f->w_q;
  f->desc.w_k = f->w_k;
  f->desc.w_v = f->w_v;
  f->desc.w_o = f->w_o;
  mha_layer_args_init(&f->args);
  f->args.B = NB;
  f->args.Tq = NTQ;
  f->args.x_q = f->x_q;
  f->args.out = f->out;
  f->args.weights = f->weights;
}

static void expect_create(tester* t, const mha_layer_desc* desc, const char* what,
                          mha_status want, const char* arg) {
  tester_context(t, "layer create error: %s", what);
  mha_layer* layer = (mha_layer*)&seen_status; /* any non-NULL value: must become NULL */
  tester_stale_error();
  const mha_status got = mha_layer_create(desc, &layer);
  tester_check_failure(t, what, got, want, arg);
  seen_status |= 1u << (unsigned)got;
  tester_check(t, layer == NULL, "%s: *layer not set to NULL", what);
  if (got == MHA_STATUS_SUCCESS) mha_layer_destroy(layer);
}

static void test_create(tester* t, layer_fixture* f) {
  tester_context(t, "layer create: NULL");
  tester_stale_error();
  mha_status st = mha_layer_create(&f->desc, NULL);
  tester_check_failure(t, "layer NULL", st, MHA_STATUS_NULL_POINTER, NULL);
  expect_create(t, NULL, "desc NULL", MHA_STATUS_NULL_POINTER, "desc");

  mha_layer_desc d = f->desc;
  d.w_q = NULL;
  expect_create(t, &d, "w_q NULL", MHA_STATUS_NULL_POINTER, "w_q");
  d = f->desc;
  d.w_k = NULL;
  expect_create(t, &d, "w_k NULL", MHA_STATUS_NULL_POINTER, "w_k");
  d = f->desc;
  d.w_v = NULL;
  expect_create(t, &d, "w_v NULL", MHA_STATUS_NULL_POINTER, "w_v");

  const char* names[] = {"d_model", "H", "d_kv", "Hkv", "D", "Dv"};
  for (size_t field = 0; field < COUNT(names); field++) {
    const int64_t bad[] = {0, -1};
    for (size_t i = 0; i < COUNT(bad); i++) {
      if (field >= 2 && bad[i] == 0) continue; /* 0 means the default there */
      d = f->desc;
      int64_t* sizes[] = {&d.d_model, &d.H, &d.d_kv, &d.Hkv, &d.D, &d.Dv};
      *sizes[field] = bad[i];
      char what[64];
      snprintf(what, sizeof what, "%s = %lld", names[field], (long long)bad[i]);
      expect_create(t, &d, what, MHA_STATUS_INVALID_SIZE, names[field]);
    }
  }

  d = f->desc;
  d.H = 3; /* 8 % 3 != 0 and D derived */
  expect_create(t, &d, "d_model 8, H 3, D 0", MHA_STATUS_INVALID_SHAPE, "H");
  d = f->desc;
  d.H = 4;
  d.Hkv = 3;
  expect_create(t, &d, "H 4, Hkv 3", MHA_STATUS_INVALID_SHAPE, "Hkv");

  mha_layer_desc packed = f->desc;
  packed.w_q = packed.w_k = packed.w_v = NULL;
  packed.in_proj_weight = f->in_proj;
  packed.layout = MHA_WEIGHTS_OUT_IN;
  d = packed;
  d.d_kv = DKV;
  expect_create(t, &d, "in_proj_weight with d_kv != d_model", MHA_STATUS_INVALID_SHAPE, "d_kv");
  d = packed;
  d.Hkv = 1;
  expect_create(t, &d, "in_proj_weight with Hkv != H", MHA_STATUS_INVALID_SHAPE, "Hkv");
  d = packed;
  d.D = 2;
  d.Dv = 2;
  expect_create(t, &d, "in_proj_weight with D != d_model / H", MHA_STATUS_INVALID_SHAPE, NULL);
  d = packed;
  d.Dv = 2;
  expect_create(t, &d, "in_proj_weight with Dv != D", MHA_STATUS_INVALID_SHAPE, NULL);

  d = packed;
  d.w_q = f->w_q;
  expect_create(t, &d, "in_proj_weight and w_q", MHA_STATUS_INVALID_ARGUMENT, NULL);
  d = packed;
  d.b_k = f->bias;
  expect_create(t, &d, "in_proj_weight and b_k", MHA_STATUS_INVALID_ARGUMENT, NULL);
  d = f->desc;
  d.in_proj_bias = f->bias;
  expect_create(t, &d, "in_proj_bias without in_proj_weight", MHA_STATUS_INVALID_ARGUMENT, NULL);
  const int layouts[] = {2, -1};
  for (size_t i = 0; i < COUNT(layouts); i++) {
    d = f->desc;
    d.layout = (mha_weight_layout)layouts[i];
    char what[64];
    snprintf(what, sizeof what, "layout %d", layouts[i]);
    expect_create(t, &d, what, MHA_STATUS_INVALID_ARGUMENT, "layout");
  }

  /* w_q would be [2^40, 2^40]: refused before reading the 64-float array */
  d = f->desc;
  d.d_model = (int64_t)1 << 40;
  expect_create(t, &d, "d_model 2^40", MHA_STATUS_SIZE_OVERFLOW, NULL);
  d = f->desc;
  d.H = (int64_t)1 << 31;
  d.D = (int64_t)1 << 31;
  d.Dv = 1;
  expect_create(t, &d, "H 2^31, D 2^31", MHA_STATUS_SIZE_OVERFLOW, NULL);
}

/* Runs a forward (with plan, or forward_once with desc when plan is NULL). */
static void expect_forward(tester* t, layer_fixture* f, const mha_layer* plan,
                           const mha_layer_desc* desc, const mha_layer_args* args,
                           const char* what, mha_status want, const char* arg) {
  memcpy(f->out, f->out_before, sizeof f->out);
  memcpy(f->weights, f->weights_before, sizeof f->weights);
  tester_context(t, "layer forward error: %s", what);
  tester_stale_error();
  const mha_status got =
      plan != NULL || desc == NULL ? mha_layer_forward(plan, args) : mha_layer_forward_once(desc, args);
  tester_check_failure(t, what, got, want, arg);
  seen_status |= 1u << (unsigned)got;
  tester_check(t, memcmp(f->out, f->out_before, sizeof f->out) == 0, "%s: out was written", what);
  tester_check(t, memcmp(f->weights, f->weights_before, sizeof f->weights) == 0,
               "%s: weights were written", what);
}

static void test_forward(tester* t, layer_fixture* f) {
  mha_layer* plan = NULL;
  tester_context(t, "layer forward errors: the plan");
  if (!tester_check(t, mha_layer_create(&f->desc, &plan) == MHA_STATUS_SUCCESS,
                    "mha_layer_create of the fixture: %s", mha_last_error())) {
    return;
  }
  mha_layer_args a = f->args;
  expect_forward(t, f, NULL, NULL, &a, "layer NULL", MHA_STATUS_NULL_POINTER, "layer");
  expect_forward(t, f, plan, NULL, NULL, "args NULL", MHA_STATUS_NULL_POINTER, "args");
  a.x_q = NULL;
  expect_forward(t, f, plan, NULL, &a, "x_q NULL", MHA_STATUS_NULL_POINTER, "x_q");
  a = f->args;
  a.out = NULL;
  expect_forward(t, f, plan, NULL, &a, "out NULL", MHA_STATUS_NULL_POINTER, "out");

  const int64_t bad[] = {0, -1};
  for (size_t i = 0; i < COUNT(bad); i++) {
    char what[64];
    a = f->args;
    a.B = bad[i];
    snprintf(what, sizeof what, "B = %lld", (long long)bad[i]);
    expect_forward(t, f, plan, NULL, &a, what, MHA_STATUS_INVALID_SIZE, "B");
    a = f->args;
    a.Tq = bad[i];
    snprintf(what, sizeof what, "Tq = %lld", (long long)bad[i]);
    expect_forward(t, f, plan, NULL, &a, what, MHA_STATUS_INVALID_SIZE, "Tq");
    a = f->args;
    a.x_k = f->x_k;
    a.Tk = bad[i];
    snprintf(what, sizeof what, "cross-attention Tk = %lld", (long long)bad[i]);
    expect_forward(t, f, plan, NULL, &a, what, MHA_STATUS_INVALID_SIZE, "Tk");
  }

  a = f->args;
  a.mask.causal = 2;
  expect_forward(t, f, plan, NULL, &a, "causal 2", MHA_STATUS_INVALID_ARGUMENT, "causal");
  a = f->args;
  f->kv_len[1] = NTQ + 1; /* self-attention: Tk = Tq */
  a.mask.kv_len = f->kv_len;
  expect_forward(t, f, plan, NULL, &a, "kv_len[1] = Tk + 1", MHA_STATUS_INVALID_ARGUMENT,
                 "kv_len");
  f->kv_len[1] = -1;
  expect_forward(t, f, plan, NULL, &a, "kv_len[1] = -1", MHA_STATUS_INVALID_ARGUMENT, "kv_len");
  f->kv_len[1] = NTQ;
  a = f->args;
  a.scale = NAN;
  expect_forward(t, f, plan, NULL, &a, "scale NaN", MHA_STATUS_INVALID_ARGUMENT, "scale");
  a = f->args;
  a.num_threads = -1;
  expect_forward(t, f, plan, NULL, &a, "num_threads -1", MHA_STATUS_INVALID_ARGUMENT,
                 "num_threads");
  a = f->args;
  a.mask.additive = f->additive;
  a.mask.additive_strides = (mha_strides){NH * NTQ * NTQ, -NTQ, NTQ};
  expect_forward(t, f, plan, NULL, &a, "additive head stride < 0", MHA_STATUS_INVALID_STRIDE,
                 "additive");
  a.mask.additive_strides = (mha_strides){NH * NTQ * NTQ, NTQ * NTQ, NTQ - 1};
  expect_forward(t, f, plan, NULL, &a, "additive row stride < Tk", MHA_STATUS_INVALID_STRIDE,
                 "additive");

  a = f->args;
  a.B = (int64_t)1 << 40;
  a.Tq = (int64_t)1 << 40;
  expect_forward(t, f, plan, NULL, &a, "B 2^40, Tq 2^40", MHA_STATUS_SIZE_OVERFLOW, NULL);
  a = f->args;
  a.weights = f->weights;
  a.x_k = f->x_k;
  a.B = 1;
  a.Tq = (int64_t)1 << 33;
  a.Tk = (int64_t)1 << 33;
  expect_forward(t, f, plan, NULL, &a, "weights [1, 2, 2^33, 2^33]", MHA_STATUS_SIZE_OVERFLOW,
                 NULL);

  /* the same through forward_once, and a desc that fails there */
  a = f->args;
  a.mask.causal = 3;
  expect_forward(t, f, NULL, &f->desc, &a, "forward_once, causal 3", MHA_STATUS_INVALID_ARGUMENT,
                 "causal");
  mha_layer_desc d = f->desc;
  d.H = 3;
  expect_forward(t, f, NULL, &d, &f->args, "forward_once, H 3", MHA_STATUS_INVALID_SHAPE, NULL);
  mha_layer_destroy(plan);

  /* self-attention (x_k NULL) needs d_kv == d_model */
  d = f->desc;
  d.d_kv = DKV;
  d.w_k = f->w_k6;
  d.w_v = f->w_v6;
  tester_context(t, "layer forward errors: a d_kv 6 plan");
  if (tester_check(t, mha_layer_create(&d, &plan) == MHA_STATUS_SUCCESS,
                   "mha_layer_create with d_kv 6: %s", mha_last_error())) {
    expect_forward(t, f, plan, NULL, &f->args, "self-attention with d_kv != d_model",
                   MHA_STATUS_INVALID_SHAPE, NULL);
    mha_layer_destroy(plan);
  }

  /* the fixture is valid: each failure above came from its one change */
  tester_context(t, "layer forward: the unchanged fixture");
  tester_check(t, mha_layer_forward_once(&f->desc, &f->args) == MHA_STATUS_SUCCESS,
               "the valid fixture fails: %s", mha_last_error());
}

/*
 * OUT_OF_MEMORY. The layer's workspace holds at least one batch entry's
 * projections, O(Tq·(H·D + Hkv·(D + Dv))) floats (mha.h). With d_model 4,
 * H 1, B = 1 and Tq = 2^50 that is 12·2^50 floats, about 2^56 bytes, and
 * still at most 2^60 bytes if an implementation pads each projection and
 * the heads to 64 columns: no product overflows int64_t or size_t, yet no
 * machine can allocate it (x86-64 and AArch64 address at most 2^48 bytes),
 * so a conforming library must return OUT_OF_MEMORY
 * before it reads the 16-float x_q. It runs in a forked child so that a
 * library that reads first crashes the child, not this test; sanitizer
 * builds need ASAN_OPTIONS=allocator_may_return_null=1 (set by CTest) for
 * malloc to return NULL instead of aborting. The core has no such test:
 * its workspace is O(threads · tile) and any huge core problem would need
 * huge real buffers.
 */
enum { CHILD_CREATE_FAILED = 200 };

static void test_out_of_memory(tester* t) {
  tester_context(t, "OUT_OF_MEMORY from a 2^44-row-byte layer forward, in a child process");
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    tester_check(t, 0, "fork failed");
    return;
  }
  if (pid == 0) {
    /* x and out are address ranges as large as Tq says (4 TiB each, reserved,
     * never backed), so the call sees disjoint buffers and fails on its own
     * workspace; only their first page is accessible */
    const size_t span = ((size_t)1 << 38) * 4 * sizeof(float);
    float* x = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    float* out = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (x == MAP_FAILED || out == MAP_FAILED || mprotect(x, 4096, PROT_READ | PROT_WRITE) != 0 ||
        mprotect(out, 4096, PROT_READ | PROT_WRITE) != 0) {
      _exit(CHILD_CREATE_FAILED);
    }
    float w[16], before[16];
    for (int i = 0; i < 16; i++) w[i] = x[i] = before[i] = out[i] = 0.25f * (float)(i + 1);
    mha_layer_desc d;
    memset(&d, 0, sizeof d);
    d.d_model = 4;
    d.H = 1;
    d.w_q = d.w_k = d.w_v = d.w_o = w;
    mha_layer* plan = NULL;
    if (mha_layer_create(&d, &plan) != MHA_STATUS_SUCCESS) _exit(CHILD_CREATE_FAILED);
    mha_layer_args a;
    mha_layer_args_init(&a);
    a.B = 1;
    a.Tq = (int64_t)1 << 38;
    a.x_q = x;
    a.out = out;
    a.num_threads = 1;
    const mha_status st = mha_layer_forward(plan, &a);
    const int fresh = mha_last_error()[0] != '\0';
    if (st != MHA_STATUS_OUT_OF_MEMORY) {
      fprintf(stderr, "layer-errors-test child: %s: %s\n", mha_status_string(st), mha_last_error());
    }
    mha_layer_destroy(plan);
    const int untouched = memcmp(out, before, sizeof before) == 0;
    _exit((int)st + (untouched ? 0 : 100) + (fresh ? 0 : 50));
  }
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) != pid) {
    tester_check(t, 0, "waitpid failed");
    return;
  }
  if (!tester_check(t, WIFEXITED(wstatus), "the child died of signal %d: the library touched "
                    "memory it was not given instead of failing the allocation",
                    WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : -1)) {
    return;
  }
  const int code = WEXITSTATUS(wstatus);
  if (!tester_check(t, code != CHILD_CREATE_FAILED, "the child could not create its plan")) return;
  tester_check(t, code < 100, "OUT_OF_MEMORY forward wrote to out");
  tester_check(t, code % 50 == MHA_STATUS_OUT_OF_MEMORY, "huge forward returned %d (%s), want "
               "%s", code % 50, mha_status_string((mha_status)(code % 50)),
               mha_status_string(MHA_STATUS_OUT_OF_MEMORY));
  tester_check(t, code % 100 < 50, "OUT_OF_MEMORY left mha_last_error() empty");
  if (code % 50 <= 9) seen_status |= 1u << (unsigned)(code % 50);
}

int main(void) {
  tester t;
  tester_init(&t, "layer-errors-test");
  /* first, before any OpenMP thread exists in this process (fork + libgomp) */
  test_out_of_memory(&t);
  static layer_fixture f;
  fixture_init(&t, &f);
  test_create(&t, &f);
  test_forward(&t, &f);
  const unsigned want[] = {MHA_STATUS_NULL_POINTER,    MHA_STATUS_INVALID_SIZE,
                           MHA_STATUS_INVALID_SHAPE,   MHA_STATUS_INVALID_STRIDE,
                           MHA_STATUS_INVALID_ARGUMENT, MHA_STATUS_SIZE_OVERFLOW,
                           MHA_STATUS_OUT_OF_MEMORY};
  for (size_t i = 0; i < COUNT(want); i++) {
    tester_check(&t, (seen_status >> want[i]) & 1u, "no layer test produced status %u (%s)",
                 want[i], mha_status_string((mha_status)want[i]));
  }
  return tester_finish(&t);
}
