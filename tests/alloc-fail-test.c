/*
 * Allocation failure at every allocation of every public call that
 * allocates: mha_attention_f32 (prefill and decode shapes, with and without
 * weights, GQA and MQA, every mask), mha_attention_kv_f32 (f16, bf16 and
 * fp32 caches, contiguous and paged through a shuffled block table; decode
 * shapes whose keys are split into ranges and prefill shapes; with and
 * without weights and lse; GQA and MQA), mha_attention_varlen_f32 (packed
 * batches with a sequence without query rows, one without keys, a
 * decode-like one of 1 query row and a few hundred keys and a prefill-like
 * one; with lse), mha_layer_create, mha_layer_forward (self- and
 * cross-attention; with a K/V cache output, f16 contiguous and bf16 paged)
 * and mha_layer_forward_once. And the calls whose statuses include no
 * OUT_OF_MEMORY, mha_kv_cache_write (f16, bf16, fp32; contiguous and paged)
 * and mha_merge_f32 (with and without lse): they must allocate nothing, so
 * their sweep ends at the first attempt, which must succeed with a clean
 * call's bits.
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
 *   - OUT_OF_MEMORY, a fresh mha_last_error(), the outputs (out, weights,
 *     lse: poisoned with NaN before the call) untouched, the call's K/V
 *     cache (an input of mha_attention_kv_f32, the output of
 *     mha_kv_cache_write and of a layer forward with args.kv_cache; filled
 *     with random values) bitwise what it was before the call and, for
 *     mha_layer_create, *layer NULL;
 *   - or SUCCESS with the outputs and the cache bitwise equal to a clean
 *     call's (a clean call leaves an input cache as it was and writes an
 *     output cache);
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

typedef enum call_kind {
  CALL_CORE,
  CALL_KV,
  CALL_VARLEN,
  CALL_KV_WRITE,
  CALL_MERGE,
  CALL_CREATE,
  CALL_FORWARD,
  CALL_FORWARD_ONCE
} call_kind;

/* The float outputs a call may have, poisoned before each call. */
enum { OUT, WEIGHTS, LSE, NOUTPUTS };

typedef struct output {
  float* p;   /* NULL: the call has no such output */
  size_t n;
  float* ref; /* a clean call's values */
} output;

/* The K or V memory of a case's cache (the whole pool when paged), bytes. */
typedef struct cache_mem {
  void* p;               /* NULL: no cache */
  size_t n;
  unsigned char* before; /* copied just before each call */
  unsigned char* ref;    /* after a clean call */
} cache_mem;

typedef struct oom_case {
  const char* name;
  call_kind kind;
  int with_threads;          /* also run the num_threads = 2 variant */
  int allocates_nothing;     /* no OUT_OF_MEMORY documented: the call must make no allocation */
  mha_attention_desc core;   /* CALL_CORE, CALL_KV, CALL_VARLEN (its lse: o[LSE].p) */
  const float *q, *k, *v;    /* CALL_KV_WRITE: k_new and v_new */
  const int32_t *cu_q, *cu_k; /* CALL_VARLEN */
  mha_kv_cache cache;        /* CALL_KV, CALL_KV_WRITE; CALL_FORWARD: args.kv_cache if set */
  cache_mem mem[2];          /* the cache's K and V memory */
  int cache_written;         /* 1: the call writes the cache; 0: it only reads it */
  struct {
    int64_t B, Hkv, T, D, Dv;
    const int32_t* pos;
    mha_strides k, v;
  } write;                   /* CALL_KV_WRITE */
  struct {
    int64_t parts, rows, Dv;
    const float* const* outs;
    const float* const* lses;
  } merge;                   /* CALL_MERGE */
  mha_layer_desc layer;      /* CALL_CREATE, CALL_FORWARD_ONCE */
  mha_layer_args args;       /* the forward (CALL_CREATE: the forward that checks the new plan) */
  mha_layer* plan;           /* CALL_FORWARD */
  output o[NOUTPUTS];        /* out, weights, lse */
} oom_case;

/* What one attempt in a child did. */
typedef struct child_report {
  int fired;       /* the N-th allocation was reached and failed */
  int exited;      /* the process exited inside the call */
  int status;      /* the call's status, when it returned */
  int outputs_ok;  /* failure: outputs untouched; success: equal to the clean call's */
  int cache_ok;    /* failure: the cache as before the call; success: as after the clean call */
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
static void* shared_bytes(size_t n) {
  void* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "alloc-fail-test: mmap of %zu bytes failed\n", n);
    exit(2);
  }
  return p;
}

/* Output `which` of n floats (none when n is 0); returns it. */
static float* case_output(oom_case* c, int which, size_t n) {
  if (n == 0) return NULL;
  c->o[which].n = n;
  c->o[which].p = tester_alloc(n * sizeof(float));
  c->o[which].ref = shared_bytes(n * sizeof(float));
  return c->o[which].p;
}

typedef struct core_shape {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, additive, weights, lse;
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
  case_output(c, OUT, (size_t)(s.B * s.H * s.Tq * s.Dv));
  case_output(c, WEIGHTS, s.weights ? (size_t)(s.B * s.H * s.Tq * s.Tk) : 0);
  c->core.lse = case_output(c, LSE, s.lse ? (size_t)(s.B * s.H * s.Tq) : 0);
}

static size_t dtype_bytes(mha_dtype t) { return t == MHA_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t); }

static void cache_mem_init(cache_mem* m, void* p, size_t n) {
  m->p = p;
  m->n = n;
  m->before = tester_alloc(n);
  m->ref = shared_bytes(n);
}

/* The case's K/V cache, B entries of Hkv heads with room for capacity
 * tokens: contiguous [B, Hkv, capacity, D] when block_size is 0; else pools
 * of B·ceil(capacity / block_size) + 3 blocks, handed out by the table
 * [B, max_blocks] in shuffled order (never the identity), with one more slot
 * per entry left -1 (no token reaches it). Every element of the memory holds
 * a random value (the tester's fill rounded to dt by mha_kv_cache_write,
 * which allocates nothing and opens no parallel region), so that a write the
 * call should not make shows. */
static void cache_build(tester* t, oom_case* c, mha_dtype dt, int64_t B, int64_t Hkv,
                        int64_t capacity, int64_t D, int64_t Dv, int64_t block_size) {
  const int64_t per = block_size ? (capacity + block_size - 1) / block_size : 0;
  const int64_t blocks = block_size ? B * per + 3 : B, rows = block_size ? block_size : capacity;
  const size_t nk = (size_t)(blocks * Hkv * rows * D), nv = (size_t)(blocks * Hkv * rows * Dv);
  void* k = tester_alloc(nk * dtype_bytes(dt));
  void* v = tester_alloc(nv * dtype_bytes(dt));
  mha_kv_cache all; /* the memory as one contiguous cache of `blocks` entries */
  mha_kv_cache_init(&all, dt, k, v, Hkv, rows, D, Dv);
  float* kf = filled(t, nk);
  float* vf = filled(t, nv);
  int32_t* zero = tester_alloc((size_t)blocks * sizeof(int32_t));
  memset(zero, 0, (size_t)blocks * sizeof(int32_t));
  const mha_status st = mha_kv_cache_write(&all, blocks, Hkv, rows, D, Dv, zero, kf,
                                           mha_strides_bhtd(Hkv, rows, D), vf,
                                           mha_strides_bhtd(Hkv, rows, Dv));
  tester_check(t, st == MHA_STATUS_SUCCESS, "%s: filling the cache: %s", c->name,
               mha_last_error());
  free(kf);
  free(vf);
  free(zero);
  if (block_size == 0) {
    mha_kv_cache_init(&c->cache, dt, k, v, Hkv, capacity, D, Dv);
  } else {
    int32_t* perm = tester_alloc((size_t)blocks * sizeof(int32_t));
    for (int64_t i = 0; i < blocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = blocks - 1; i > 0; i--) {
      const int64_t j = tester_below(t, i + 1);
      const int32_t x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    int identity = 1;
    for (int64_t i = 0; i < B * per; i++) identity &= perm[i] == i;
    if (identity) { /* the last block first */
      for (int64_t i = 0; i < blocks; i++) perm[i] = (int32_t)((i + blocks - 1) % blocks);
    }
    int32_t* table = tester_alloc((size_t)(B * (per + 1)) * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) {
      for (int64_t s = 0; s <= per; s++) table[b * (per + 1) + s] = s < per ? perm[b * per + s] : -1;
    }
    free(perm);
    mha_kv_cache_init_paged(&c->cache, dt, k, v, blocks, block_size, Hkv, D, Dv, table, per + 1);
  }
  cache_mem_init(&c->mem[0], k, nk * dtype_bytes(dt));
  cache_mem_init(&c->mem[1], v, nv * dtype_bytes(dt));
}

/* mha_attention_kv_f32: the core case's shape, its K and V stored as the
 * cache's tokens [0, Tk) (rounded to dt), capacity Tk + 5. */
static void kv_case(tester* t, oom_case* c, const char* name, core_shape s, mha_dtype dt,
                    int64_t block_size, int with_threads) {
  core_case(t, c, name, s, with_threads);
  c->kind = CALL_KV;
  cache_build(t, c, dt, s.B, s.Hkv, s.Tk + 5, s.D, s.Dv, block_size);
  int32_t* zero = tester_alloc((size_t)s.B * sizeof(int32_t));
  memset(zero, 0, (size_t)s.B * sizeof(int32_t));
  const mha_status st = mha_kv_cache_write(&c->cache, s.B, s.Hkv, s.Tk, s.D, s.Dv, zero, c->k,
                                           mha_strides_bhtd(s.Hkv, s.Tk, s.D), c->v,
                                           mha_strides_bhtd(s.Hkv, s.Tk, s.Dv));
  tester_check(t, st == MHA_STATUS_SUCCESS, "%s: storing K and V: %s", name, mha_last_error());
  free(zero);
}

/* mha_kv_cache_write of T random rows per entry at positions pos, from
 * [B, Hkv, T, ·] rows or, token_major, [B, T, Hkv, ·] rows. */
static void kv_write_case(tester* t, oom_case* c, const char* name, mha_dtype dt,
                          int64_t block_size, int64_t B, int64_t Hkv, int64_t T, int64_t D,
                          int64_t Dv, int64_t capacity, const int32_t* pos, int token_major) {
  memset(c, 0, sizeof *c);
  c->name = name;
  c->kind = CALL_KV_WRITE;
  c->allocates_nothing = 1;
  c->cache_written = 1;
  cache_build(t, c, dt, B, Hkv, capacity, D, Dv, block_size);
  c->k = filled(t, (size_t)(B * Hkv * T * D));
  c->v = filled(t, (size_t)(B * Hkv * T * Dv));
  c->write.B = B;
  c->write.Hkv = Hkv;
  c->write.T = T;
  c->write.D = D;
  c->write.Dv = Dv;
  c->write.pos = pos;
  c->write.k = token_major ? mha_strides_bthd(Hkv, T, D) : mha_strides_bhtd(Hkv, T, D);
  c->write.v = token_major ? mha_strides_bthd(Hkv, T, Dv) : mha_strides_bhtd(Hkv, T, Dv);
}

/* A packed variable-length batch: n sequences of len_q[b] query rows and
 * len_k[b] keys; Tq, Tk the longest. */
enum { MAX_SEQS = 6 };

typedef struct varlen_shape {
  int64_t H, Hkv, D, Dv;
  int causal, lse, n;
  int32_t len_q[MAX_SEQS], len_k[MAX_SEQS];
} varlen_shape;

static void varlen_case(tester* t, oom_case* c, const char* name, varlen_shape s,
                        int with_threads) {
  memset(c, 0, sizeof *c);
  c->name = name;
  c->kind = CALL_VARLEN;
  c->with_threads = with_threads;
  int32_t* cu_q = tester_alloc((size_t)(s.n + 1) * sizeof(int32_t));
  int32_t* cu_k = tester_alloc((size_t)(s.n + 1) * sizeof(int32_t));
  int64_t Tq = 1, Tk = 1;
  cu_q[0] = cu_k[0] = 0;
  for (int b = 0; b < s.n; b++) {
    cu_q[b + 1] = cu_q[b] + s.len_q[b];
    cu_k[b + 1] = cu_k[b] + s.len_k[b];
    if (s.len_q[b] > Tq) Tq = s.len_q[b];
    if (s.len_k[b] > Tk) Tk = s.len_k[b];
  }
  c->cu_q = cu_q;
  c->cu_k = cu_k;
  const int64_t tq = cu_q[s.n], tk = cu_k[s.n];
  mha_attention_desc_init(&c->core, s.n, s.H, s.Hkv, Tq, Tk, s.D, s.Dv);
  /* packed [total, heads, width]: batch strides not used */
  c->core.q = (mha_strides){0, s.D, s.H * s.D};
  c->core.k = (mha_strides){0, s.D, s.Hkv * s.D};
  c->core.v = (mha_strides){0, s.Dv, s.Hkv * s.Dv};
  c->core.out = (mha_strides){0, s.Dv, s.H * s.Dv};
  c->core.mask.causal = s.causal;
  c->q = filled(t, (size_t)(tq * s.H * s.D));
  c->k = filled(t, (size_t)(tk * s.Hkv * s.D));
  c->v = filled(t, (size_t)(tk * s.Hkv * s.Dv));
  case_output(c, OUT, (size_t)(tq * s.H * s.Dv));
  c->core.lse = case_output(c, LSE, s.lse ? (size_t)(tq * s.H) : 0); /* [total_q, H] */
}

/* mha_merge_f32 of `parts` random parts [rows, Dv]: lse in [-4, 4), every
 * third row -inf in one part, the last row -inf in all (zeros, lse -inf). */
static void merge_case(tester* t, oom_case* c, const char* name, int64_t parts, int64_t rows,
                       int64_t Dv, int with_lse) {
  memset(c, 0, sizeof *c);
  c->name = name;
  c->kind = CALL_MERGE;
  c->allocates_nothing = 1;
  const float** outs = tester_alloc((size_t)parts * sizeof(float*));
  const float** lses = tester_alloc((size_t)parts * sizeof(float*));
  for (int64_t p = 0; p < parts; p++) {
    outs[p] = filled(t, (size_t)(rows * Dv));
    float* lse = tester_alloc((size_t)rows * sizeof(float));
    tester_fill_range(t, lse, (size_t)rows, -4.0f, 4.0f);
    for (int64_t r = 1; r < rows; r += 3) {
      if (r % parts == p) lse[r] = -INFINITY;
    }
    lse[rows - 1] = -INFINITY;
    lses[p] = lse;
  }
  c->merge.parts = parts;
  c->merge.rows = rows;
  c->merge.Dv = Dv;
  c->merge.outs = outs;
  c->merge.lses = lses;
  case_output(c, OUT, (size_t)(rows * Dv));
  case_output(c, LSE, with_lse ? (size_t)rows : 0);
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
  c->args.out = case_output(c, OUT, (size_t)(a.B * a.Tq * width));
  c->args.weights = case_output(c, WEIGHTS, weights ? (size_t)(a.B * NH * a.Tq * tk) : 0);
}

/* A forward whose K and V projections go to a cache (args.kv_cache) at
 * positions pos, capacity tokens per entry. */
static void layer_kv_case(tester* t, oom_case* c, const char* name, mha_layer_desc d,
                          mha_layer_args a, int weights, mha_dtype dt, int64_t block_size,
                          int64_t capacity, const int32_t* pos, int with_threads) {
  layer_case(c, name, CALL_FORWARD, d, a, weights, with_threads);
  cache_build(t, c, dt, a.B, NHKV, capacity, HD, HD, block_size);
  c->cache_written = 1;
  c->args.kv_cache = &c->cache;
  c->args.kv_pos = pos;
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
      return mha_attention_f32(&d, c->q, c->k, c->v, c->o[OUT].p, c->o[WEIGHTS].p);
    }
    case CALL_KV: {
      mha_attention_desc d = c->core;
      d.num_threads = threads;
      return mha_attention_kv_f32(&d, c->q, &c->cache, c->o[OUT].p, c->o[WEIGHTS].p);
    }
    case CALL_VARLEN: {
      mha_attention_desc d = c->core;
      d.num_threads = threads;
      return mha_attention_varlen_f32(&d, c->cu_q, c->cu_k, c->q, c->k, c->v, c->o[OUT].p);
    }
    case CALL_KV_WRITE:
      return mha_kv_cache_write(&c->cache, c->write.B, c->write.Hkv, c->write.T, c->write.D,
                                c->write.Dv, c->write.pos, c->k, c->write.k, c->v, c->write.v);
    case CALL_MERGE:
      return mha_merge_f32(c->merge.parts, c->merge.rows, c->merge.Dv, c->merge.outs,
                           c->merge.lses, c->o[OUT].p, c->o[LSE].p);
    case CALL_CREATE: return mha_layer_create(&c->layer, created);
    case CALL_FORWARD: return mha_layer_forward(c->plan, &a);
    case CALL_FORWARD_ONCE: return mha_layer_forward_once(&c->layer, &a);
  }
  return MHA_STATUS_INVALID_ARGUMENT;
}

static void poison_outputs(oom_case* c) {
  for (int i = 0; i < NOUTPUTS; i++) {
    if (c->o[i].p != NULL) tester_poison(c->o[i].p, c->o[i].n);
  }
}

static int all_poison(const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!tester_is_poison(x[i])) return 0;
  }
  return 1;
}

static int outputs_untouched(const oom_case* c) {
  for (int i = 0; i < NOUTPUTS; i++) {
    if (c->o[i].p != NULL && !all_poison(c->o[i].p, c->o[i].n)) return 0;
  }
  return 1;
}

static int outputs_match_reference(const oom_case* c) {
  for (int i = 0; i < NOUTPUTS; i++) {
    if (c->o[i].p != NULL && memcmp(c->o[i].p, c->o[i].ref, c->o[i].n * sizeof(float)) != 0) {
      return 0;
    }
  }
  return 1;
}

/* The cache's memory as it is now, before a call. */
static void cache_snapshot(oom_case* c) {
  for (int i = 0; i < 2; i++) {
    if (c->mem[i].p != NULL) memcpy(c->mem[i].before, c->mem[i].p, c->mem[i].n);
  }
}

/* 1 if the cache's memory equals the snapshot (reference 0) or the clean
 * call's (reference 1), bitwise. */
static int cache_equals(const oom_case* c, int reference) {
  for (int i = 0; i < 2; i++) {
    const cache_mem* m = &c->mem[i];
    if (m->p != NULL && memcmp(m->p, reference ? m->ref : m->before, m->n) != 0) return 0;
  }
  return 1;
}

/* A clean call (nothing armed) whose outputs become the reference. */
static void make_reference(tester* t, oom_case* c) {
  tester_context(t, "%s: the clean call", c->name);
  poison_outputs(c);
  cache_snapshot(c);
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
  for (int i = 0; i < NOUTPUTS; i++) {
    if (c->o[i].p != NULL) memcpy(c->o[i].ref, c->o[i].p, c->o[i].n * sizeof(float));
  }
  for (int i = 0; i < 2; i++) {
    const cache_mem* m = &c->mem[i];
    if (m->p == NULL) continue;
    memcpy(m->ref, m->p, m->n);
    const int same = memcmp(m->p, m->before, m->n) == 0;
    if (c->cache_written) {
      tester_check(t, !same, "%s: the clean call wrote nothing to the cache's %s", c->name,
                   i == 0 ? "K" : "V");
    } else {
      tester_check(t, same, "%s: the clean call changed the cache's %s (an input)", c->name,
                   i == 0 ? "K" : "V");
    }
  }
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
  cache_snapshot(c);
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
    child_result.cache_ok = cache_equals(c, 1);
    child_result.message_ok = 1;
    if (threads > 1 && c->kind != CALL_CREATE) {
      /* the runtime's pool now exists: a second call must add nothing */
      const long live_again = alloc_hooks_live();
      child_result.outputs_ok &= run_call(c, threads, &plan) == MHA_STATUS_SUCCESS &&
                                 outputs_match_reference(c);
      child_result.cache_ok &= cache_equals(c, 1);
      child_result.leaked_again = alloc_hooks_live() - live_again;
    }
  } else {
    child_result.outputs_ok = outputs_untouched(c);
    child_result.cache_ok = cache_equals(c, 0);
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
  tester_check(t, r->cache_ok, "%s: the clean call's cache differs from the reference", c->name);
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
      tester_check(t, r.cache_ok, "%s: allocation %ld (at %s) failed, the call returned "
                   "success, but its cache differs from a clean call's", c->name, n, where);
    } else {
      oom++;
      tester_check(t, r.status == MHA_STATUS_OUT_OF_MEMORY, "%s: allocation %ld (at %s) failed "
                   "and the call returned %s (want out of memory): %s", c->name, n, where,
                   mha_status_string((mha_status)r.status), r.message);
      tester_check(t, r.outputs_ok, "%s: allocation %ld (at %s) failed and the call wrote to "
                   "its outputs", c->name, n, where);
      tester_check(t, r.cache_ok, "%s: allocation %ld (at %s) failed and the call changed "
                   "its cache", c->name, n, where);
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
  /* no OUT_OF_MEMORY documented: the first attempt already found nothing to fail */
  tester_check(t, !c->allocates_nothing || (n == 1 && clean == 0), "%s, num_threads %d: the "
               "call documents no out of memory but made %ld allocations", c->name, threads,
               clean >= 0 ? clean : n - 1);
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
      {"core prefill, GQA 4/2, causal", {2, 4, 2, 37, 53, 16, 12, 1, 0, 0, 0, 0}, 1},
      {"core prefill, weights, kv_len, additive", {2, 4, 2, 37, 53, 16, 12, 0, 1, 1, 1, 0}, 1},
      {"core decode, GQA 8/2 (key split)", {1, 8, 2, 1, 700, 64, 64, 0, 0, 0, 0, 0}, 1},
      {"core decode, weights, causal", {2, 8, 2, 1, 300, 32, 32, 1, 0, 0, 1, 0}, 0},
      {"core MQA 6/1, Tq < Tk, causal, kv_len", {3, 6, 1, 9, 40, 8, 8, 1, 1, 0, 0, 0}, 0},
  };
  /* the core over K/V caches: every dtype, contiguous and paged (block
   * sizes 16, 32, 64), decode (Tk of 5-6 key blocks of 64: split into
   * ranges) and prefill, weights, lse */
  static const struct {
    const char* name;
    core_shape s;
    mha_dtype dtype;
    int64_t block_size;
    int with_threads;
  } kv_cases[] = {
      {"kv decode, f16 contiguous, GQA 8/2 (key split)", {2, 8, 2, 1, 333, 32, 24, 0, 0, 0, 0, 0},
       MHA_DTYPE_F16, 0, 1},
      {"kv decode, bf16 paged 32, weights, lse", {2, 6, 2, 1, 301, 16, 16, 0, 0, 0, 1, 1},
       MHA_DTYPE_BF16, 32, 0},
      {"kv decode, f32 paged 64, MQA 4/1, causal, kv_len, lse",
       {3, 4, 1, 1, 257, 24, 8, 1, 1, 0, 0, 1}, MHA_DTYPE_F32, 64, 0},
      {"kv prefill, f16 paged 16, GQA 4/2, causal, weights", {2, 4, 2, 41, 57, 16, 12, 1, 0, 0, 1, 0},
       MHA_DTYPE_F16, 16, 1},
      {"kv prefill, bf16 contiguous, GQA 6/2, kv_len, lse", {2, 6, 2, 39, 45, 8, 20, 0, 1, 0, 0, 1},
       MHA_DTYPE_BF16, 0, 0},
      {"kv prefill, f32 contiguous, weights, additive", {1, 4, 2, 37, 53, 16, 16, 0, 0, 1, 1, 0},
       MHA_DTYPE_F32, 0, 0},
  };
  /* packed batches: lengths (query rows / keys) with an empty query
   * sequence, one without keys, a decode-like 1/300 and a prefill-like one */
  static const struct {
    const char* name;
    varlen_shape s;
    int with_threads;
  } varlen_cases[] = {
      {"varlen, GQA 4/2, causal, lse: 0/5 1/300 40/47 3/0 7/11",
       {4, 2, 16, 12, 1, 1, 5, {0, 1, 40, 3, 7}, {5, 300, 47, 0, 11}}, 1},
      {"varlen, MQA 3/1, lse: 1/263 0/0 33/29 5/0",
       {3, 1, 8, 24, 0, 1, 4, {1, 0, 33, 5}, {263, 0, 29, 0}}, 0},
  };
  static const int32_t write_pos_a[3] = {0, 11, 23}, write_pos_b[2] = {5, 29},
                       write_pos_c[2] = {31, 32};
  enum {
    NCORE = COUNT(core_cases),
    NKV = COUNT(kv_cases),
    NVARLEN = COUNT(varlen_cases),
    NWRITE = 3,
    NMERGE = 2,
    NLAYER = 9
  };
  static oom_case cases[NCORE + NKV + NVARLEN + NWRITE + NMERGE + NLAYER];
  int nc = 0;
  for (size_t i = 0; i < NCORE; i++) {
    core_case(&t, &cases[nc++], core_cases[i].name, core_cases[i].s, core_cases[i].with_threads);
  }
  for (size_t i = 0; i < NKV; i++) {
    kv_case(&t, &cases[nc++], kv_cases[i].name, kv_cases[i].s, kv_cases[i].dtype,
            kv_cases[i].block_size, kv_cases[i].with_threads);
  }
  for (size_t i = 0; i < NVARLEN; i++) {
    varlen_case(&t, &cases[nc++], varlen_cases[i].name, varlen_cases[i].s,
                varlen_cases[i].with_threads);
  }
  /* the writer: positions anywhere, rows crossing blocks, one decode token
   * at a block edge */
  kv_write_case(&t, &cases[nc++], "kv write, f16 contiguous, T 7 at 0/11/23", MHA_DTYPE_F16, 0,
                3, 2, 7, 20, 12, 30, write_pos_a, 0);
  kv_write_case(&t, &cases[nc++], "kv write, bf16 paged 16, [B,T,Hkv,D] rows, T 19 at 5/29",
                MHA_DTYPE_BF16, 16, 2, 3, 19, 8, 16, 48, write_pos_b, 1);
  kv_write_case(&t, &cases[nc++], "kv write, f32 paged 32, T 1 at 31/32", MHA_DTYPE_F32, 32, 2,
                1, 1, 33, 17, 64, write_pos_c, 0);
  merge_case(&t, &cases[nc++], "merge, 3 parts, 30 rows of 13, lse", 3, 30, 13, 1);
  merge_case(&t, &cases[nc++], "merge, 2 parts, 7 rows of 64, no lse", 2, 7, 64, 0);

  tester_check(&t, nc == NCORE + NKV + NVARLEN + NWRITE + NMERGE, "the case table");

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
  /* the layer's cache output: tokens at mixed positions (the paged one
   * crossing a block edge) */
  static const int32_t self_pos[LB] = {5, 2}, cross_pos[LB] = {13, 3};
  oom_case* fwd_self_cache = &cases[nc];
  layer_kv_case(&t, &cases[nc++], "layer forward, self, weights, f16 contiguous cache", dself,
                args_self(&w), 1, MHA_DTYPE_F16, 0, LTQ + 6, self_pos, 1);
  oom_case* fwd_cross_cache = &cases[nc];
  layer_kv_case(&t, &cases[nc++], "layer forward, cross, fused K|V, bf16 paged 16 cache", dcross,
                args_cross(&w, 0), 0, MHA_DTYPE_BF16, 16, LTK + 13, cross_pos, 0);

  tester_check(&t, nc == (int)COUNT(cases), "the case table");

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
  fwd_self_cache->plan = plans[0];
  fwd_cross_cache->plan = plans[2];
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
