/*
 * Allocation failure at every allocation of every public call that
 * allocates: mha_attention_f32 (prefill and decode shapes, with and without
 * weights, GQA and MQA, every mask), mha_layer_create, mha_layer_forward
 * (self- and cross-attention) and mha_layer_forward_once.
 *
 * The allocator is interposed in this executable (alloc-hooks.c): libmha.a
 * is linked in statically and the OpenMP runtime calls malloc through the
 * PLT, so the runtime's allocations are counted and failed too. For
 * N = 1, 2, ... the N-th allocation attempt of one call fails, until a call
 * completes without reaching its N-th allocation. Each attempt runs in a
 * forked child (a fresh process, so that an exit inside the call is seen
 * and reported instead of ending the test) that sends back what happened.
 *
 * With num_threads = 1 every attempt must end with the call returning
 *   - OUT_OF_MEMORY, a fresh mha_last_error(), the outputs (poisoned with
 *     NaN before the call) untouched and, for mha_layer_create, *layer NULL;
 *   - or SUCCESS with the outputs bitwise equal to a clean call's;
 * never another status, never an exit; and the number of live allocations
 * after the call (and after destroying a created plan) equals the number
 * before: nothing leaks on any path. A one-thread call must not enter the
 * OpenMP runtime at all, so a failure there is a failure of the test.
 *
 * The process that forks the attempts never enters the OpenMP runtime (the
 * reference outputs come from a child too), so every attempt starts with a
 * cold runtime, as a program's first call does.
 *
 * With num_threads = 2 the runtime does allocate (its thread pool, a team,
 * the threads' TLS), and libgomp exits the process when one of those
 * allocations fails: that part is outside mha's control. Those attempts are
 * counted and reported, not failed; every attempt that returns must still
 * satisfy the rules above, except that the first parallel region of a
 * process leaves the runtime's thread pool allocated: an attempt that
 * returns has either not reached the runtime (0 blocks more) or completed
 * its regions (the pool's P blocks more, P measured by a clean call), and a
 * second call must add nothing.
 *
 * Not built in sanitizer builds: ASan and TSan interpose malloc themselves.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-hooks.h"
#include "mha.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* More allocations than any call makes: a sweep that reaches it has failed. */
enum { MAX_ATTEMPTS = 200, MAX_SITES = 64 };

typedef enum call_kind { CALL_CORE, CALL_CREATE, CALL_FORWARD, CALL_FORWARD_ONCE } call_kind;

typedef struct oom_case {
  const char* name;
  call_kind kind;
  int with_threads;          /* also run the num_threads = 2 variant */
  mha_attention_desc core;   /* CALL_CORE */
  const float *q, *k, *v;
  mha_layer_desc layer;      /* CALL_CREATE, CALL_FORWARD_ONCE */
  mha_layer_args args;       /* the forward (CALL_CREATE: the forward that checks the new plan) */
  mha_layer* plan;           /* CALL_FORWARD */
  float* out;                /* outputs, poisoned before each call */
  size_t out_n;
  float* weights;            /* or NULL */
  size_t weights_n;
  float *ref_out, *ref_weights; /* a clean call's outputs */
} oom_case;

/* What one attempt in a child did. */
typedef struct child_report {
  int fired;       /* the N-th allocation was reached and failed */
  int exited;      /* the process exited inside the call */
  int status;      /* the call's status, when it returned */
  int outputs_ok;  /* failure: outputs untouched; success: equal to the clean call's */
  int plan_ok;     /* mha_layer_create: *layer NULL on failure */
  int message_ok;  /* failure: a fresh, non-empty mha_last_error() */
  long leaked;     /* live allocations after the call minus before */
  long leaked_again; /* num_threads > 1, success: the same after a second, clean call */
  long attempts;   /* allocation attempts the call made */
  const void* site; /* where the failed allocation was called from */
  char message[160];
} child_report;

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */
/* ------------------------------------------------------------------------ */

static float* filled(tester* t, size_t n) {
  float* x = tester_alloc(n * sizeof(float));
  tester_fill(t, x, n);
  return x;
}

/* Memory that a child's writes reach: the references are computed in one. */
static float* shared_floats(size_t n) {
  void* p = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
                 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "alloc-fail-test: mmap of %zu floats failed\n", n);
    exit(2);
  }
  return p;
}

static void case_outputs(oom_case* c, size_t out_n, size_t weights_n) {
  c->out_n = out_n;
  c->out = tester_alloc(out_n * sizeof(float));
  c->ref_out = shared_floats(out_n);
  c->weights_n = weights_n;
  c->weights = weights_n ? tester_alloc(weights_n * sizeof(float)) : NULL;
  c->ref_weights = weights_n ? shared_floats(weights_n) : NULL;
}

typedef struct core_shape {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, additive, weights;
} core_shape;

static void core_case(tester* t, oom_case* c, const char* name, core_shape s, int with_threads) {
  memset(c, 0, sizeof *c);
  c->name = name;
  c->kind = CALL_CORE;
  c->with_threads = with_threads;
  mha_attention_desc_init(&c->core, s.B, s.H, s.Hkv, s.Tq, s.Tk, s.D, s.Dv);
  c->q = filled(t, (size_t)(s.B * s.H * s.Tq * s.D));
  c->k = filled(t, (size_t)(s.B * s.Hkv * s.Tk * s.D));
  c->v = filled(t, (size_t)(s.B * s.Hkv * s.Tk * s.Dv));
  c->core.mask.causal = s.causal;
  if (s.kv_len) {
    int32_t* len = tester_alloc((size_t)s.B * sizeof(int32_t));
    for (int64_t b = 0; b < s.B; b++) len[b] = (int32_t)(b % 2 == 0 ? s.Tk - 3 : 1);
    c->core.mask.kv_len = len;
  }
  if (s.additive) { /* one [Tq, Tk] mask for all batches and heads, one key hidden */
    float* add = filled(t, (size_t)(s.Tq * s.Tk));
    add[s.Tk / 2] = -INFINITY;
    c->core.mask.additive = add;
    c->core.mask.additive_strides = (mha_strides){0, 0, s.Tk};
  }
  case_outputs(c, (size_t)(s.B * s.H * s.Tq * s.Dv),
               s.weights ? (size_t)(s.B * s.H * s.Tq * s.Tk) : 0);
}

/* Layer fixtures: d_model 16, H 4 (D = Dv = 4), cross inputs of width 12. */
enum { DM = 16, DKV = 12, NH = 4, NHKV = 2, HD = 4, LB = 2, LTQ = 5, LTK = 7 };

typedef struct layer_weights {
  float *w_q, *w_k, *w_v, *w_k12, *w_v12, *w_o, *in_proj, *in_proj_bias;
  float *b_q, *b_kv, *b_o;
  float *x_q, *x_k, *x_v;
  int32_t kv_len[LB];
} layer_weights;

static void layer_weights_init(tester* t, layer_weights* w) {
  w->w_q = filled(t, DM * NH * HD);
  w->w_k = filled(t, DM * NHKV * HD);
  w->w_v = filled(t, DM * NHKV * HD);
  w->w_k12 = filled(t, DKV * NHKV * HD);
  w->w_v12 = filled(t, DKV * NHKV * HD);
  w->w_o = filled(t, NH * HD * DM);
  w->in_proj = filled(t, 3 * DM * DM);
  w->in_proj_bias = filled(t, 3 * DM);
  w->b_q = filled(t, NH * HD);
  w->b_kv = filled(t, NHKV * HD);
  w->b_o = filled(t, DM);
  w->x_q = filled(t, LB * LTQ * DM);
  w->x_k = filled(t, LB * LTK * DKV);
  w->x_v = filled(t, LB * LTK * DKV);
  w->kv_len[0] = LTQ - 1;
  w->kv_len[1] = 2;
}

/* GQA, separate weights, d_kv == d_model: the fused Q|K|V packing. */
static mha_layer_desc desc_self(const layer_weights* w) {
  mha_layer_desc d;
  memset(&d, 0, sizeof d);
  d.d_model = DM;
  d.H = NH;
  d.Hkv = NHKV;
  d.w_q = w->w_q;
  d.w_k = w->w_k;
  d.w_v = w->w_v;
  d.w_o = w->w_o;
  d.b_q = w->b_q;
  d.b_k = w->b_kv;
  d.b_v = w->b_kv;
  d.b_o = w->b_o;
  return d;
}

/* d_kv 12: two packed matrices (W_q, and W_k | W_v), every bias, W_o: the
 * most allocations a create makes. */
static mha_layer_desc desc_cross(const layer_weights* w) {
  mha_layer_desc d = desc_self(w);
  d.d_kv = DKV;
  d.w_k = w->w_k12;
  d.w_v = w->w_v12;
  return d;
}

/* PyTorch's packed in_proj_weight and in_proj_bias (H = Hkv), OUT_IN. */
static mha_layer_desc desc_packed(const layer_weights* w) {
  mha_layer_desc d;
  memset(&d, 0, sizeof d);
  d.d_model = DM;
  d.H = NH;
  d.layout = MHA_WEIGHTS_OUT_IN;
  d.in_proj_weight = w->in_proj;
  d.in_proj_bias = w->in_proj_bias;
  d.w_o = w->w_o;
  d.b_o = w->b_o;
  return d;
}

static mha_layer_args args_self(layer_weights* w) {
  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = LB;
  a.Tq = LTQ;
  a.x_q = w->x_q;
  a.mask.causal = 1;
  a.mask.kv_len = w->kv_len;
  return a;
}

static mha_layer_args args_cross(layer_weights* w, int separate_v) {
  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = LB;
  a.Tq = LTQ;
  a.Tk = LTK;
  a.x_q = w->x_q;
  a.x_k = w->x_k;
  a.x_v = separate_v ? w->x_v : NULL;
  return a;
}

static void layer_case(oom_case* c, const char* name, call_kind kind, mha_layer_desc d,
                       mha_layer_args a, int weights, int with_threads) {
  memset(c, 0, sizeof *c);
  c->name = name;
  c->kind = kind;
  c->with_threads = with_threads;
  c->layer = d;
  c->args = a;
  const int64_t tk = a.x_k != NULL ? a.Tk : a.Tq;
  const int64_t width = d.w_o != NULL ? d.d_model : NH * HD;
  case_outputs(c, (size_t)(a.B * a.Tq * width), weights ? (size_t)(a.B * NH * a.Tq * tk) : 0);
  c->args.out = c->out;
  c->args.weights = c->weights;
}

/* ------------------------------------------------------------------------ */
/* One call                                                                 */
/* ------------------------------------------------------------------------ */

static mha_status run_call(const oom_case* c, int threads, mha_layer** created) {
  mha_layer_args a = c->args;
  a.num_threads = threads;
  switch (c->kind) {
    case CALL_CORE: {
      mha_attention_desc d = c->core;
      d.num_threads = threads;
      return mha_attention_f32(&d, c->q, c->k, c->v, c->out, c->weights);
    }
    case CALL_CREATE: return mha_layer_create(&c->layer, created);
    case CALL_FORWARD: return mha_layer_forward(c->plan, &a);
    case CALL_FORWARD_ONCE: return mha_layer_forward_once(&c->layer, &a);
  }
  return MHA_STATUS_INVALID_ARGUMENT;
}

static void poison_outputs(oom_case* c) {
  tester_poison(c->out, c->out_n);
  if (c->weights != NULL) tester_poison(c->weights, c->weights_n);
}

static int all_poison(const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!tester_is_poison(x[i])) return 0;
  }
  return 1;
}

static int outputs_match_reference(const oom_case* c) {
  return memcmp(c->out, c->ref_out, c->out_n * sizeof(float)) == 0 &&
         (c->weights == NULL ||
          memcmp(c->weights, c->ref_weights, c->weights_n * sizeof(float)) == 0);
}

/* A clean call (nothing armed) whose outputs become the reference. */
static void make_reference(tester* t, oom_case* c) {
  tester_context(t, "%s: the clean call", c->name);
  poison_outputs(c);
  mha_layer* plan = NULL;
  mha_status st = run_call(c, 1, &plan);
  if (c->kind == CALL_CREATE && st == MHA_STATUS_SUCCESS) {
    mha_layer_args a = c->args;
    a.num_threads = 1;
    st = mha_layer_forward(plan, &a);
    mha_layer_destroy(plan);
  }
  tester_check(t, st == MHA_STATUS_SUCCESS, "%s: the clean call returned %s: %s", c->name,
               mha_status_string(st), mha_last_error());
  memcpy(c->ref_out, c->out, c->out_n * sizeof(float));
  if (c->weights != NULL) memcpy(c->ref_weights, c->weights, c->weights_n * sizeof(float));
}

/* ------------------------------------------------------------------------ */
/* The child: one call with its N-th allocation failing                     */
/* ------------------------------------------------------------------------ */

static volatile int child_in_call;
static int child_fd = -1;
static child_report child_result;

static void child_send(void) {
  const char* p = (const char*)&child_result;
  size_t left = sizeof child_result;
  while (left > 0) {
    const ssize_t n = write(child_fd, p, left);
    if (n <= 0) break;
    p += n;
    left -= (size_t)n;
  }
}

/* An exit() while the call runs: libgomp's answer to a failed allocation. */
static void child_on_exit(void) {
  if (!child_in_call) return;
  child_result.exited = 1;
  child_result.fired = alloc_hooks_fired(&child_result.site);
  child_result.attempts = alloc_hooks_attempts();
  child_send();
  _exit(0);
}

static void child_attempt(oom_case* c, int threads, long n) {
  atexit(child_on_exit);
  memset(&child_result, 0, sizeof child_result);
  poison_outputs(c);
  tester_stale_error();
  char stale[512];
  snprintf(stale, sizeof stale, "%s", mha_last_error());
  mha_layer* plan = (mha_layer*)&child_result; /* any non-NULL value: must become NULL */
  const long live_before = alloc_hooks_live();

  alloc_hooks_fail_at(n);
  child_in_call = 1;
  const mha_status st = run_call(c, threads, &plan);
  child_in_call = 0;
  child_result.fired = alloc_hooks_fired(&child_result.site);
  child_result.attempts = alloc_hooks_attempts();
  alloc_hooks_fail_at(0);

  child_result.status = (int)st;
  snprintf(child_result.message, sizeof child_result.message, "%s", mha_last_error());
  child_result.plan_ok = 1;
  if (st == MHA_STATUS_SUCCESS) {
    if (c->kind == CALL_CREATE) { /* the new plan must compute what a clean one does */
      mha_layer_args a = c->args;
      a.num_threads = 1;
      child_result.plan_ok = mha_layer_forward(plan, &a) == MHA_STATUS_SUCCESS;
      mha_layer_destroy(plan);
    }
    child_result.outputs_ok = outputs_match_reference(c);
    child_result.message_ok = 1;
    if (threads > 1 && c->kind != CALL_CREATE) {
      /* the runtime's pool now exists: a second call must add nothing */
      const long live_again = alloc_hooks_live();
      child_result.outputs_ok &= run_call(c, threads, &plan) == MHA_STATUS_SUCCESS &&
                                 outputs_match_reference(c);
      child_result.leaked_again = alloc_hooks_live() - live_again;
    }
  } else {
    child_result.outputs_ok =
        all_poison(c->out, c->out_n) &&
        (c->weights == NULL || all_poison(c->weights, c->weights_n));
    if (c->kind == CALL_CREATE) child_result.plan_ok = plan == NULL;
    const char* msg = mha_last_error();
    child_result.message_ok = msg[0] != '\0' && strcmp(msg, stale) != 0;
  }
  child_result.leaked = alloc_hooks_live() - live_before;
  child_send();
  _exit(0);
}

/* Runs one attempt in a child; 0 if the child died or sent nothing. */
static int attempt(tester* t, oom_case* c, int threads, long n, child_report* r) {
  int fds[2];
  if (pipe(fds) != 0) return tester_check(t, 0, "pipe failed: %s", strerror(errno));
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return tester_check(t, 0, "fork failed: %s", strerror(errno));
  }
  if (pid == 0) {
    close(fds[0]);
    child_fd = fds[1];
    if (threads > 1) { /* libgomp's "out of memory" lines: the sites are printed anyway */
      const int null = open("/dev/null", O_WRONLY);
      if (null >= 0) dup2(null, STDERR_FILENO);
    }
    child_attempt(c, threads, n);
  }
  close(fds[1]);
  memset(r, 0, sizeof *r);
  size_t got = 0;
  while (got < sizeof *r) {
    const ssize_t k = read(fds[0], (char*)r + got, sizeof *r - got);
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fds[0]);
  int wstatus = 0;
  if (waitpid(pid, &wstatus, 0) != pid) return tester_check(t, 0, "waitpid failed");
  if (WIFSIGNALED(wstatus)) {
    return tester_check(t, 0, "%s, num_threads %d, allocation %ld failing: the process died of "
                        "signal %d", c->name, threads, n, WTERMSIG(wstatus));
  }
  /* a nonzero exit after a complete report: valgrind's --error-exitcode */
  return tester_check(t, got == sizeof *r && WEXITSTATUS(wstatus) == 0,
                      "%s, num_threads %d, allocation %ld failing: the child exited with %d "
                      "after sending %zu of %zu bytes", c->name, threads, n,
                      WEXITSTATUS(wstatus), got, sizeof *r);
}

/* ------------------------------------------------------------------------ */
/* The sweep                                                                */
/* ------------------------------------------------------------------------ */

typedef struct site_list {
  const void* site[MAX_SITES];
  int count;
} site_list;

static void site_add(site_list* s, const void* site) {
  for (int i = 0; i < s->count; i++) {
    if (s->site[i] == site) return;
  }
  if (s->count < MAX_SITES) s->site[s->count++] = site;
}

static void print_sites(const char* indent, const site_list* s) {
  for (int i = 0; i < s->count; i++) {
    char name[256];
    alloc_hooks_site_name(s->site[i], name, sizeof name);
    printf("%s%s (%s)\n", indent, name,
           alloc_hooks_site_in_executable(s->site[i]) ? "mha" : "shared library");
  }
}

typedef struct totals {
  site_list sites;      /* every failed site, both thread counts */
  long injected;        /* attempts whose failure fired */
  long runtime_exits;   /* num_threads 2 attempts that ended in an exit inside the call */
  long runtime_tries;   /* num_threads 2 attempts that fired */
} totals;

/* A clean attempt (nothing fails): *kept receives the blocks it left live
 * (with num_threads > 1, the runtime's thread pool). */
static void clean_attempt(tester* t, oom_case* c, int threads, const child_report* r,
                          long* kept) {
  tester_check(t, !r->exited && r->status == MHA_STATUS_SUCCESS,
               "%s: with no failure injected the call returned %s: %s", c->name,
               mha_status_string((mha_status)r->status), r->message);
  tester_check(t, r->outputs_ok && r->plan_ok,
               "%s: the clean call's outputs differ from the reference", c->name);
  tester_check(t, threads > 1 || r->leaked == 0, "%s: the clean call leaked %ld allocations",
               c->name, r->leaked);
  tester_check(t, r->leaked_again == 0, "%s: a second clean call leaked %ld allocations",
               c->name, r->leaked_again);
  *kept = r->leaked;
}

static void sweep(tester* t, oom_case* c, int threads, totals* tot) {
  tester_context(t, "%s, num_threads %d", c->name, threads);
  site_list sites = {{0}, 0};
  long oom = 0, success = 0, exits = 0, clean = -1, kept = 0;
  child_report r;
  if (threads > 1) { /* first: the blocks a process's first parallel call keeps */
    if (!attempt(t, c, threads, 0, &r)) return;
    clean_attempt(t, c, threads, &r, &kept);
  }
  long n = 1;
  for (; n <= MAX_ATTEMPTS; n++) {
    if (!attempt(t, c, threads, n, &r)) break;
    if (!r.fired) { /* the call made fewer than n allocations */
      clean = r.attempts;
      long kept_now;
      clean_attempt(t, c, threads, &r, &kept_now);
      break;
    }
    tot->injected++;
    site_add(&sites, r.site);
    site_add(&tot->sites, r.site);
    char where[256];
    alloc_hooks_site_name(r.site, where, sizeof where);
    if (r.exited) {
      exits++;
      /* one thread: the call must not enter the runtime at all */
      tester_check(t, threads != 1, "%s, num_threads 1: the process exited inside the "
                   "call when allocation %ld (at %s) failed", c->name, n, where);
      continue;
    }
    if (r.status == MHA_STATUS_SUCCESS) {
      success++;
      tester_check(t, r.outputs_ok && r.plan_ok, "%s: allocation %ld (at %s) failed, the call "
                   "returned success, but its outputs differ from a clean call's", c->name, n,
                   where);
    } else {
      oom++;
      tester_check(t, r.status == MHA_STATUS_OUT_OF_MEMORY, "%s: allocation %ld (at %s) failed "
                   "and the call returned %s (want out of memory): %s", c->name, n, where,
                   mha_status_string((mha_status)r.status), r.message);
      tester_check(t, r.outputs_ok, "%s: allocation %ld (at %s) failed and the call wrote to "
                   "its outputs", c->name, n, where);
      tester_check(t, r.plan_ok, "%s: allocation %ld (at %s) failed and *layer is not NULL",
                   c->name, n, where);
      tester_check(t, r.message_ok, "%s: allocation %ld (at %s) failed and mha_last_error() "
                   "holds no fresh message", c->name, n, where);
    }
    tester_check(t, r.leaked == 0 || r.leaked == kept, "%s: allocation %ld (at %s) failed and "
                 "the call leaked %ld allocations", c->name, n, where, r.leaked);
    tester_check(t, r.leaked_again == 0, "%s: allocation %ld (at %s) failed, and a second call "
                 "leaked %ld allocations", c->name, n, where, r.leaked_again);
  }
  tester_check(t, n <= MAX_ATTEMPTS, "%s: still failing after %d allocations", c->name,
               MAX_ATTEMPTS);
  if (threads > 1) {
    tot->runtime_exits += exits;
    tot->runtime_tries += oom + success + exits;
  }
  printf("  %-52s threads %d: allocations %2ld; each failed: %ld out of memory, %ld success, "
         "%ld exits inside the call", c->name, threads, clean, oom, success, exits);
  if (threads > 1) printf("; the runtime keeps %ld blocks", kept);
  printf("\n");
  print_sites("      at ", &sites);
}

/* The references, computed in a child: this process must never enter the
 * OpenMP runtime, so that every attempt starts from a cold one. */
static void make_references(tester* t, oom_case* cases, int count) {
  tester_context(t, "the clean calls (in a child)");
  fflush(stdout);
  fflush(stderr);
  const pid_t pid = fork();
  if (pid < 0) {
    tester_check(t, 0, "fork failed: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    tester ct = *t;
    for (int i = 0; i < count; i++) make_reference(&ct, &cases[i]);
    fflush(stdout);
    _exit(ct.failures == 0 ? 0 : 1);
  }
  int wstatus = 0;
  tester_check(t, waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus) &&
                   WEXITSTATUS(wstatus) == 0,
               "the clean calls failed (see above)");
}

int main(void) {
  tester t;
  tester_init(&t, "alloc-fail-test");
  if (!tester_check(&t, alloc_hooks_available(),
                    "the allocator is not interposed (a sanitizer or valgrind owns malloc)")) {
    return tester_finish(&t);
  }

  /* core: prefill, decode (the key split, few query rows), weights, GQA, MQA, masks */
  static const struct {
    const char* name;
    core_shape s;
    int with_threads;
  } core_cases[] = {
      {"core prefill, GQA 4/2, causal", {2, 4, 2, 37, 53, 16, 12, 1, 0, 0, 0}, 1},
      {"core prefill, weights, kv_len, additive", {2, 4, 2, 37, 53, 16, 12, 0, 1, 1, 1}, 1},
      {"core decode, GQA 8/2 (key split)", {1, 8, 2, 1, 700, 64, 64, 0, 0, 0, 0}, 1},
      {"core decode, weights, causal", {2, 8, 2, 1, 300, 32, 32, 1, 0, 0, 1}, 0},
      {"core MQA 6/1, Tq < Tk, causal, kv_len", {3, 6, 1, 9, 40, 8, 8, 1, 1, 0, 0}, 0},
  };
  enum { NCORE = COUNT(core_cases), NLAYER = 7 };
  static oom_case cases[NCORE + NLAYER];
  int nc = 0;
  for (size_t i = 0; i < NCORE; i++) {
    core_case(&t, &cases[nc++], core_cases[i].name, core_cases[i].s, core_cases[i].with_threads);
  }

  static layer_weights w;
  layer_weights_init(&t, &w);
  const mha_layer_desc dself = desc_self(&w), dcross = desc_cross(&w), dpacked = desc_packed(&w);
  mha_layer_desc dnowo = dself;
  dnowo.w_o = NULL;
  dnowo.b_o = NULL;
  layer_case(&cases[nc++], "layer create, d_kv 12, every bias, w_o", CALL_CREATE, dcross,
             args_cross(&w, 1), 0, 0);
  layer_case(&cases[nc++], "layer create, in_proj_weight + in_proj_bias", CALL_CREATE, dpacked,
             args_self(&w), 0, 0);
  oom_case* fwd_self = &cases[nc];
  layer_case(&cases[nc++], "layer forward, self, GQA, causal, kv_len, weights", CALL_FORWARD,
             dself, args_self(&w), 1, 1);
  oom_case* fwd_cross = &cases[nc];
  layer_case(&cases[nc++], "layer forward, cross, separate x_v", CALL_FORWARD, dcross,
             args_cross(&w, 1), 0, 0);
  oom_case* fwd_cross_kv = &cases[nc];
  layer_case(&cases[nc++], "layer forward, cross, fused K|V", CALL_FORWARD, dcross,
             args_cross(&w, 0), 1, 0);
  layer_case(&cases[nc++], "layer forward_once, self, in_proj", CALL_FORWARD_ONCE, dpacked,
             args_self(&w), 0, 1);
  layer_case(&cases[nc++], "layer forward_once, self, no w_o", CALL_FORWARD_ONCE, dnowo,
             args_self(&w), 1, 0);

  /* the plans of the forward cases, made before any attempt */
  mha_layer* plans[3] = {NULL, NULL, NULL};
  tester_context(&t, "the forward cases' plans");
  tester_check(&t, mha_layer_create(&dself, &plans[0]) == MHA_STATUS_SUCCESS &&
                   mha_layer_create(&dcross, &plans[1]) == MHA_STATUS_SUCCESS &&
                   mha_layer_create(&dcross, &plans[2]) == MHA_STATUS_SUCCESS,
               "mha_layer_create: %s", mha_last_error());
  fwd_self->plan = plans[0];
  fwd_cross->plan = plans[1];
  fwd_cross_kv->plan = plans[2];
  if (t.failures > 0) return tester_finish(&t);

  /* references from clean one-thread calls (results do not depend on the
   * thread count, so they serve the two-thread attempts too) */
  make_references(&t, cases, nc);
  if (t.failures > 0) return tester_finish(&t);

  totals tot;
  memset(&tot, 0, sizeof tot);
  printf("alloc-fail-test: the N-th allocation of each call fails, N = 1, 2, ... until a call "
         "completes\n");
  for (int i = 0; i < nc; i++) sweep(&t, &cases[i], 1, &tot);
  for (int i = 0; i < nc; i++) {
    if (cases[i].with_threads) sweep(&t, &cases[i], 2, &tot);
  }

  printf("alloc-fail-test: %ld injected failures, %d distinct allocation sites failed:\n",
         tot.injected, tot.sites.count);
  print_sites("    ", &tot.sites);
  printf("alloc-fail-test: num_threads 2: %ld of %ld injected failures ended in an exit inside "
         "the call (the OpenMP runtime's exit on a failed allocation: outside mha's control)\n",
         tot.runtime_exits, tot.runtime_tries);

  for (int i = 0; i < 3; i++) mha_layer_destroy(plans[i]);
  return tester_finish(&t);
}
