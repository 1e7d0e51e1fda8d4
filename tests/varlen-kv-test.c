/*
 * A packed variable-length batch over a K/V cache (mha_attention_varlen_kv_f32,
 * mha_attention_varlen_kv_workspace_size): the serving step, where decodes
 * (one query) and prefill chunks (aligned to the end of their keys) read one
 * cache in one call.
 *
 *   1. Bits. Every sequence's out and lse are bitwise mha_attention_kv_f32 on
 *      that sequence alone (B = 1, Tq = len_q, Tk = seqused_k[b], its cache
 *      entry as entry 0), as documented, for fp32, f16 and bf16 caches,
 *      contiguous (rows past each sequence's keys NaN) and paged (head-major
 *      blocks of 16 and 32 in a shuffled pool larger than needed, the rest
 *      NaN, table slots no key needs set to -1), on every ISA this CPU runs,
 *      at 1, 2 and 3 threads. Outputs are poisoned before each call, with
 *      guards past total_q that must keep their poison; every row of a
 *      sequence with queries must be written.
 *   2. Accuracy: each sequence against the naive oracle on the cache's
 *      widened values (variant-tolerance.c's derived bounds), with causal,
 *      window, ALiBi, soft-cap, sinks and GQA.
 *   3. Errors: every documented status of both entry points (NULLs, a
 *      seqused_k outside [0, Tk], a table slot a key needs outside
 *      [0, num_blocks), Tk past the cache, kv_len or an additive mask, out
 *      over the cache, a short workspace); failing calls write nothing.
 *
 * Run with OMP_WAIT_POLICY=passive (CTest does): many small calls at up to 3
 * threads on shared cores.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "oracle.h"
#include "tester.h"
#include "variant-tolerance.h"

#define GUARD 16

typedef struct vk_case {
  int64_t H, Hkv, Tq, Tk, D, Dv;
  int causal, window, alibi, softcap, sinks;
  const char* name;
} vk_case;

static const mha_dtype kDtypes[] = {MHA_DTYPE_F32, MHA_DTYPE_F16, MHA_DTYPE_BF16};
static const char* const kDtypeNames[] = {"f32", "f16", "bf16"};
/* block sizes: 0 contiguous, else paged */
static const int64_t kLayouts[] = {0, 16, 32};

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

/* x rounded to the cache's type and widened back; its bits stored at base[at] */
static float store_elem(void* base, mha_dtype t, size_t at, float x) {
  switch (t) {
    case MHA_DTYPE_F16: ((uint16_t*)base)[at] = mha_f32_to_f16(x); return mha_f16_to_f32(mha_f32_to_f16(x));
    case MHA_DTYPE_BF16: ((uint16_t*)base)[at] = mha_f32_to_bf16(x); return mha_bf16_to_f32(mha_f32_to_bf16(x));
    default: ((float*)base)[at] = x; return x;
  }
}

/* NaN in the type everywhere: the rows no key should read */
static void fill_nan(void* base, mha_dtype t, size_t n) {
  for (size_t i = 0; i < n; i++) (void)store_elem(base, t, i, NAN);
}

static int same_bits(const float* a, const float* b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* A batch: lengths, the cache holding each sequence's keys, and their
 * widened values [B][Hkv][Tk][D] for the oracle. */
typedef struct vk_batch {
  int64_t B;
  int32_t *cu_q, *used;
  mha_kv_cache cache;
  void *k, *v;
  int32_t* table;
  float *kw, *vw; /* widened: [B, Hkv, Tk, D] and [B, Hkv, Tk, Dv] */
} vk_batch;

/* Serving-step lengths: a full prefill chunk, decodes, a sequence without
 * queries, one without keys, short and odd chunks aligned to their keys. */
static void make_lengths(tester* t, const vk_case* c, vk_batch* s) {
  const int64_t B = 7;
  s->B = B;
  s->cu_q = tester_alloc((size_t)(B + 1) * sizeof(int32_t));
  s->used = tester_alloc((size_t)B * sizeof(int32_t));
  const int64_t Tq = c->Tq, Tk = c->Tk;
  const int64_t lq[7] = {Tq, 1, 0, 1, Tq < 7 ? Tq : 7, 1, 1 + tester_below(t, Tq)};
  s->cu_q[0] = 0;
  for (int64_t b = 0; b < B; b++) {
    int64_t lk = b == 0 || b == 5 ? Tk : b == 3 ? 0 : lq[b] + tester_below(t, Tk - lq[b] + 1);
    s->used[b] = (int32_t)lk;
    s->cu_q[b + 1] = s->cu_q[b] + (int32_t)lq[b];
  }
}

/* The cache of a batch in `dtype`, contiguous (bs 0) or paged in blocks of bs. */
static void make_cache(tester* t, const vk_case* c, mha_dtype dtype, int64_t bs, vk_batch* s) {
  const int64_t B = s->B, Hkv = c->Hkv, Tk = c->Tk, D = c->D, Dv = c->Dv;
  const size_t esz = dtype == MHA_DTYPE_F32 ? 4 : 2;
  s->kw = tester_alloc((size_t)(B * Hkv * Tk * D) * sizeof(float));
  s->vw = tester_alloc((size_t)(B * Hkv * Tk * Dv) * sizeof(float));
  s->table = NULL;
  int64_t nblocks = 0, max_blocks = 0, cap = Tk + 3;
  int32_t* perm = NULL;
  if (bs == 0) {
    s->k = tester_alloc((size_t)(B * Hkv * cap * D) * esz);
    s->v = tester_alloc((size_t)(B * Hkv * cap * Dv) * esz);
    fill_nan(s->k, dtype, (size_t)(B * Hkv * cap * D));
    fill_nan(s->v, dtype, (size_t)(B * Hkv * cap * Dv));
    mha_kv_cache_init(&s->cache, dtype, s->k, s->v, Hkv, cap, D, Dv);
  } else {
    max_blocks = (Tk + bs - 1) / bs;
    for (int64_t b = 0; b < B; b++) nblocks += (s->used[b] + bs - 1) / bs;
    nblocks += 3; /* blocks no sequence uses, NaN */
    perm = tester_alloc((size_t)nblocks * sizeof(int32_t));
    for (int64_t i = 0; i < nblocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = nblocks - 1; i > 0; i--) {
      const int64_t j = tester_below(t, i + 1);
      const int32_t x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    s->table = tester_alloc((size_t)(B * max_blocks) * sizeof(int32_t));
    int64_t next = 0;
    for (int64_t b = 0; b < B; b++) {
      for (int64_t sl = 0; sl < max_blocks; sl++) {
        s->table[b * max_blocks + sl] = sl * bs < s->used[b] ? perm[next++] : -1;
      }
    }
    s->k = tester_alloc((size_t)(nblocks * Hkv * bs * D) * esz);
    s->v = tester_alloc((size_t)(nblocks * Hkv * bs * Dv) * esz);
    fill_nan(s->k, dtype, (size_t)(nblocks * Hkv * bs * D));
    fill_nan(s->v, dtype, (size_t)(nblocks * Hkv * bs * Dv));
    mha_kv_cache_init_paged(&s->cache, dtype, s->k, s->v, nblocks, bs, Hkv, D, Dv, s->table, max_blocks);
  }
  for (int64_t b = 0; b < B; b++) {
    for (int64_t g = 0; g < Hkv; g++) {
      for (int64_t j = 0; j < s->used[b]; j++) {
        size_t kat, vat;
        if (bs == 0) {
          kat = (size_t)(((b * Hkv + g) * cap + j) * D);
          vat = (size_t)(((b * Hkv + g) * cap + j) * Dv);
        } else {
          const int64_t blk = s->table[b * max_blocks + j / bs];
          kat = (size_t)(((blk * Hkv + g) * bs + j % bs) * D);
          vat = (size_t)(((blk * Hkv + g) * bs + j % bs) * Dv);
        }
        float* kw = s->kw + ((b * Hkv + g) * Tk + j) * D;
        float* vw = s->vw + ((b * Hkv + g) * Tk + j) * Dv;
        for (int64_t x = 0; x < D; x++) kw[x] = store_elem(s->k, dtype, kat + (size_t)x, (float)tester_uniform(t, -1.0, 1.0));
        for (int64_t x = 0; x < Dv; x++) vw[x] = store_elem(s->v, dtype, vat + (size_t)x, (float)tester_uniform(t, -1.0, 1.0));
      }
    }
  }
  free(perm);
}

static void free_cache(vk_batch* s) {
  free(s->k);
  free(s->v);
  free(s->table);
  free(s->kw);
  free(s->vw);
}

/* Sequence b's entry of the cache as entry 0: what its own call gets. */
static mha_kv_cache entry_cache(const vk_batch* s, int64_t b) {
  mha_kv_cache e = s->cache;
  if (e.block_size != 0) {
    e.block_table = s->table + b * e.max_blocks;
  } else {
    const size_t esz = e.dtype == MHA_DTYPE_F32 ? 4 : 2;
    e.k = (char*)e.k + (size_t)(b * e.k_strides.batch) * esz;
    e.v = (char*)e.v + (size_t)(b * e.v_strides.batch) * esz;
  }
  return e;
}

/* Sequence b against the oracle on the widened values, out and lse. */
static void check_oracle(tester* t, const vk_case* c, const mha_attention_desc* d, const vk_batch* s, int64_t b,
                         const float* q, const float* out, const float* lse) {
  const int64_t H = c->H, Hkv = c->Hkv, D = c->D, Dv = c->Dv, Tk = c->Tk;
  const int64_t q0 = s->cu_q[b], lq = s->cu_q[b + 1] - q0, lk = s->used[b], tk = lk > 0 ? lk : 1;
  double* qd = tester_alloc((size_t)(lq * H * D) * sizeof(double));
  double* kd = tester_alloc((size_t)(Hkv * tk * D) * sizeof(double));
  double* vd = tester_alloc((size_t)(Hkv * tk * Dv) * sizeof(double));
  for (int64_t i = 0; i < lq * H * D; i++) qd[i] = q[q0 * H * D + i];
  memset(kd, 0, (size_t)(Hkv * tk * D) * sizeof(double));
  memset(vd, 0, (size_t)(Hkv * tk * Dv) * sizeof(double));
  for (int64_t g = 0; g < Hkv; g++) {
    for (int64_t j = 0; j < lk; j++) {
      for (int64_t x = 0; x < D; x++) kd[(g * tk + j) * D + x] = s->kw[((b * Hkv + g) * Tk + j) * D + x];
      for (int64_t x = 0; x < Dv; x++) vd[(g * tk + j) * Dv + x] = s->vw[((b * Hkv + g) * Tk + j) * Dv + x];
    }
  }
  const int32_t zero = 0;
  oracle_attention_problem p;
  memset(&p, 0, sizeof p);
  p.B = 1;
  p.H = H;
  p.Hkv = Hkv;
  p.Tq = lq;
  p.Tk = tk;
  p.D = D;
  p.Dv = Dv;
  p.q = qd;
  p.k = kd;
  p.v = vd;
  p.q_strides = (oracle_strides){0, D, H * D};
  p.k_strides = (oracle_strides){0, tk * D, D};
  p.v_strides = (oracle_strides){0, tk * Dv, Dv};
  p.scale = 1.0 / sqrt((double)D);
  p.causal = c->causal;
  p.kv_len = lk > 0 ? NULL : &zero;
  p.var.window = d->mask.window;
  p.var.window_left = d->mask.window_left;
  p.var.window_right = d->mask.window_right;
  p.var.alibi_slopes = d->mask.alibi_slopes;
  p.var.softcap = d->mask.softcap;
  p.var.sinks = d->mask.sinks;
  variant_expected e = variant_expected_compute(&p, NULL, (size_t)(H * lq * Dv), 0, (size_t)(H * lq));
  /* out rows [q0 + i] × H packed; the oracle's [H, lq, Dv] */
  float* got = tester_alloc((size_t)(H * lq * Dv) * sizeof(float));
  float* got_lse = tester_alloc((size_t)(H * lq) * sizeof(float));
  for (int64_t h = 0; h < H; h++) {
    for (int64_t i = 0; i < lq; i++) {
      memcpy(got + (h * lq + i) * Dv, out + ((q0 + i) * H + h) * Dv, (size_t)Dv * sizeof(float));
      got_lse[h * lq + i] = lse[(q0 + i) * H + h];
    }
  }
  tester_check_close(t, "out vs oracle", (size_t)(H * lq * Dv), got, e.out, e.out_tol);
  tester_check_close(t, "lse vs oracle", (size_t)(H * lq), got_lse, e.lse, e.lse_tol);
  variant_expected_free(&e);
  free(got);
  free(got_lse);
  free(qd);
  free(kd);
  free(vd);
}

static void run_case(tester* t, const vk_case* c, const isa_list* isas) {
  const int64_t H = c->H, Hkv = c->Hkv, D = c->D, Dv = c->Dv;
  float slopes[64], sinks[64];
  for (int64_t h = 0; h < H; h++) {
    slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)H);
    sinks[h] = (float)tester_uniform(t, -1.0, 1.0);
  }
  for (size_t di = 0; di < sizeof kDtypes / sizeof kDtypes[0]; di++) {
    for (size_t li = 0; li < sizeof kLayouts / sizeof kLayouts[0]; li++) {
      vk_batch s;
      make_lengths(t, c, &s);
      make_cache(t, c, kDtypes[di], kLayouts[li], &s);
      const int64_t B = s.B, tq = s.cu_q[B];
      const size_t no = (size_t)(tq * H * Dv), nl = (size_t)(tq * H);
      float* q = tester_alloc((size_t)(tq * H * D) * sizeof(float));
      float* out = tester_alloc((no + GUARD) * sizeof(float));
      float* lse = tester_alloc((nl + GUARD) * sizeof(float));
      float* ref = tester_alloc((no + GUARD) * sizeof(float));
      float* ref_lse = tester_alloc((nl + GUARD) * sizeof(float));
      tester_fill(t, q, (size_t)(tq * H * D));

      mha_attention_desc d;
      mha_attention_desc_init(&d, B, H, Hkv, c->Tq, c->Tk, D, Dv);
      d.q = (mha_strides){0, D, H * D};
      d.out = (mha_strides){0, Dv, H * Dv};
      d.k = d.v = (mha_strides){-7, -7, -7}; /* not used: the cache's */
      d.mask.causal = c->causal;
      if (c->window) {
        d.mask.window = 1;
        d.mask.window_left = c->window - 1;
        d.mask.window_right = c->causal ? 0 : 3;
      }
      if (c->alibi) d.mask.alibi_slopes = slopes;
      if (c->softcap) d.mask.softcap = 8.0f;
      if (c->sinks) d.mask.sinks = sinks;

      for (int ii = 0; ii < isas->count; ii++) {
        d.isa = isas->isa[ii];
        /* the reference: each sequence alone, on one thread */
        tester_poison(ref, no + GUARD);
        tester_poison(ref_lse, nl + GUARD);
        for (int64_t b = 0; b < B; b++) {
          const int64_t q0 = s.cu_q[b], lq = s.cu_q[b + 1] - q0, lk = s.used[b];
          if (lq == 0) continue;
          tester_context(t, "%s, %s, block %lld, isa %s, sequence %lld alone", c->name, kDtypeNames[di],
                         (long long)kLayouts[li], mha_isa_name(d.isa), (long long)b);
          mha_attention_desc sd = d;
          const int32_t zero = 0;
          sd.B = 1;
          sd.Tq = lq;
          sd.Tk = lk > 0 ? lk : 1;
          if (lk == 0) sd.mask.kv_len = &zero;
          sd.num_threads = 1;
          float* sl = tester_alloc((size_t)(lq * H) * sizeof(float));
          sd.lse = sl;
          const mha_kv_cache e = entry_cache(&s, b);
          if (check_ok(t, mha_attention_kv_f32(&sd, q + q0 * H * D, &e, ref + q0 * H * Dv, NULL), "alone")) {
            for (int64_t i = 0; i < lq; i++) {
              for (int64_t h = 0; h < H; h++) ref_lse[(q0 + i) * H + h] = sl[h * lq + i];
            }
          }
          free(sl);
        }
        for (int threads = 1; threads <= 3; threads++) {
          tester_context(t, "%s, %s, block %lld, isa %s, %d threads", c->name, kDtypeNames[di],
                         (long long)kLayouts[li], mha_isa_name(d.isa), threads);
          d.num_threads = threads;
          d.lse = lse;
          tester_poison(out, no + GUARD);
          tester_poison(lse, nl + GUARD);
          if (!check_ok(t, mha_attention_varlen_kv_f32(&d, s.cu_q, s.used, q, &s.cache, out), "varlen kv")) continue;
          int guards = 1, written = 1;
          for (size_t i = 0; i < GUARD; i++) guards &= tester_is_poison(out[no + i]) && tester_is_poison(lse[nl + i]);
          for (size_t i = 0; i < no; i++) written &= !tester_is_poison(out[i]);
          for (size_t i = 0; i < nl; i++) written &= !tester_is_poison(lse[i]);
          tester_check(t, guards, "wrote past total_q");
          tester_check(t, written, "a row of out or lse was not written");
          for (int64_t b = 0; b < B; b++) {
            const int64_t q0 = s.cu_q[b], lq = s.cu_q[b + 1] - q0;
            if (lq == 0) continue;
            tester_check(t,
                         same_bits(out + q0 * H * Dv, ref + q0 * H * Dv, (size_t)(lq * H * Dv)) &&
                             same_bits(lse + q0 * H, ref_lse + q0 * H, (size_t)(lq * H)),
                         "sequence %lld (len_q %lld, seqused_k %d) differs from its own cache call",
                         (long long)b, (long long)lq, (int)s.used[b]);
            if (threads == 1 && ii == 0) check_oracle(t, c, &d, &s, b, q, out, lse);
          }
        }
      }
      free(q);
      free(out);
      free(lse);
      free(ref);
      free(ref_lse);
      free(s.cu_q);
      free(s.used);
      free_cache(&s);
    }
  }
}

/* A call that must fail with want, naming arg, and leave out[0..n) poisoned. */
static void expect_fail(tester* t, const float* out, size_t n, const char* what, mha_status got, mha_status want,
                        const char* arg) {
  tester_check_failure(t, what, got, want, arg);
  int untouched = 1;
  for (size_t i = 0; i < n; i++) untouched &= tester_is_poison(out[i]);
  tester_check(t, untouched, "%s: wrote out", what);
}

/* Every documented status; a failing call writes nothing. */
static void check_errors(tester* t) {
  enum { B = 2, H = 2, Hkv = 1, D = 8, BS = 16, NB = 4, MAXB = 2 };
  tester_context(t, "varlen kv errors");
  uint16_t kp[NB * Hkv * BS * D], vp[NB * Hkv * BS * D];
  for (size_t i = 0; i < sizeof kp / sizeof kp[0]; i++) kp[i] = vp[i] = mha_f32_to_f16(0.25f);
  int32_t table[B * MAXB] = {2, -1, 0, 3}; /* entry 0 needs 1 block, entry 1 two */
  mha_kv_cache cache;
  mha_kv_cache_init_paged(&cache, MHA_DTYPE_F16, kp, vp, NB, BS, Hkv, D, D, table, MAXB);
  float q[4 * H * D], out[4 * H * D + GUARD];
  for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = 0.125f * (float)(i % 7) - 0.3f;
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, 3, MAXB * BS, D, D);
  d.q = d.out = (mha_strides){0, D, H * D};
  d.mask.causal = 1;
  const int32_t cu_q[B + 1] = {0, 1, 4};
  int32_t used[B] = {10, 20};
  check_ok(t, mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out), "good call");

  const size_t n_out = sizeof out / sizeof out[0];
  tester_poison(out, n_out); /* every failing call below must leave it so */
  tester_stale_error();
  expect_fail(t, out, n_out, "NULL seqused_k", mha_attention_varlen_kv_f32(&d, cu_q, NULL, q, &cache, out),
              MHA_STATUS_NULL_POINTER, "seqused_k");
  tester_stale_error();
  expect_fail(t, out, n_out, "NULL cu_seqlens_q", mha_attention_varlen_kv_f32(&d, NULL, used, q, &cache, out),
              MHA_STATUS_NULL_POINTER, "cu_seqlens_q");
  tester_stale_error();
  expect_fail(t, out, n_out, "NULL cache", mha_attention_varlen_kv_f32(&d, cu_q, used, q, NULL, out), MHA_STATUS_NULL_POINTER,
              "cache");
  used[1] = -1;
  tester_stale_error();
  expect_fail(t, out, n_out, "negative seqused_k", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "seqused_k[1]");
  used[1] = MAXB * BS + 1;
  tester_stale_error();
  expect_fail(t, out, n_out, "seqused_k past Tk", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "seqused_k[1]");
  used[1] = 20;
  used[0] = BS + 1; /* entry 0's second slot is -1 */
  tester_stale_error();
  expect_fail(t, out, n_out, "table slot a key needs", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "block_table");
  used[0] = 10;
  table[2] = NB; /* past the pool */
  tester_stale_error();
  expect_fail(t, out, n_out, "table slot past the pool", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "block_table");
  table[2] = 0;
  d.Tk = MAXB * BS + 1;
  tester_stale_error();
  expect_fail(t, out, n_out, "Tk past the cache", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "tokens");
  d.Tk = MAXB * BS;
  const int32_t bad_cu[B + 1] = {0, 3, 2};
  tester_stale_error();
  expect_fail(t, out, n_out, "decreasing cu_seqlens_q", mha_attention_varlen_kv_f32(&d, bad_cu, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "cu_seqlens_q");
  const int32_t lens[B] = {1, 1};
  d.mask.kv_len = lens;
  tester_stale_error();
  expect_fail(t, out, n_out, "kv_len", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out), MHA_STATUS_INVALID_ARGUMENT,
              "kv_len");
  d.mask.kv_len = NULL;
  const float add[16] = {0};
  d.mask.additive = add;
  tester_stale_error();
  expect_fail(t, out, n_out, "additive mask", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "additive");
  d.mask.additive = NULL;
  cache.dtype = (mha_dtype)7;
  tester_stale_error();
  expect_fail(t, out, n_out, "dtype", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out), MHA_STATUS_INVALID_ARGUMENT,
              "dtype");
  cache.dtype = MHA_DTYPE_F16;
  cache.block_size = 24;
  tester_stale_error();
  expect_fail(t, out, n_out, "block size", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
              MHA_STATUS_INVALID_ARGUMENT, "block_size");
  cache.block_size = BS;
  /* out over the cache's pool: an output that overwrites an input */
  float* pool = tester_alloc((size_t)(NB * Hkv * BS * D) * sizeof(float));
  for (size_t i = 0; i < (size_t)(NB * Hkv * BS * D); i++) pool[i] = 0.5f;
  mha_kv_cache fc;
  mha_kv_cache_init_paged(&fc, MHA_DTYPE_F32, pool, pool, NB, BS, Hkv, D, D, table, MAXB);
  tester_stale_error();
  tester_check_failure(t, "out over the cache", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &fc, pool),
                       MHA_STATUS_INVALID_STRIDE, "out");
  free(pool);
  /* out or lse over the block table: the table is an input (the fuzzer's
   * finding: the fifth input span was once dropped by the overlap check) */
  int32_t* big = tester_alloc((size_t)(4 * H * D) * sizeof(float) + sizeof table);
  memcpy(big, table, sizeof table);
  mha_kv_cache tc = cache;
  tc.block_table = big;
  tester_stale_error();
  tester_check_failure(t, "out over the block table",
                       mha_attention_varlen_kv_f32(&d, cu_q, used, q, &tc, (float*)big), MHA_STATUS_INVALID_STRIDE,
                       "block_table");
  float lse_buf[4 * H];
  d.lse = (float*)big;
  tester_stale_error();
  tester_check_failure(t, "lse over the block table", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &tc, out),
                       MHA_STATUS_INVALID_STRIDE, "block_table");
  d.lse = lse_buf;
  check_ok(t, mha_attention_varlen_kv_f32(&d, cu_q, used, q, &tc, out), "lse apart from the table");
  d.lse = NULL;
  tester_check(t, memcmp(big, table, sizeof table) == 0, "the block table was written");
  {
    /* no query rows: q, out and lse address nothing (the call was refused:
     * "out overlaps q"); nothing written */
    const int32_t none[B + 1] = {0, 0, 0};
    float buf[8];
    for (int i = 0; i < 8; i++) buf[i] = (float)i;
    mha_attention_desc e = d;
    e.lse = buf + 2;
    check_ok(t, mha_attention_varlen_kv_f32(&e, none, used, buf, &cache, buf + 1), "no query rows, buffers close");
    int same = 1;
    for (int i = 0; i < 8; i++) same &= buf[i] == (float)i;
    tester_check(t, same, "no query rows: nothing written");
  }
  free(big);

  /* the workspace: exactly the reported size works (same bits), less fails */
  float want[4 * H * D];
  d.num_threads = 2;
  check_ok(t, mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, want), "no workspace");
  size_t bytes = 0;
  tester_stale_error();
  tester_check_failure(t, "NULL bytes", mha_attention_varlen_kv_workspace_size(&d, cu_q, used, &cache, NULL),
                       MHA_STATUS_NULL_POINTER, "bytes");
  used[0] = -3;
  tester_stale_error();
  tester_check_failure(t, "size of a bad seqused_k",
                       mha_attention_varlen_kv_workspace_size(&d, cu_q, used, &cache, &bytes),
                       MHA_STATUS_INVALID_ARGUMENT, "seqused_k[0]");
  used[0] = 10;
  if (check_ok(t, mha_attention_varlen_kv_workspace_size(&d, cu_q, used, &cache, &bytes), "workspace size")) {
    char* ws = tester_alloc(bytes + 1);
    d.workspace = ws + 1; /* an odd address */
    d.workspace_size = bytes;
    tester_poison(out, 4 * H * D);
    if (check_ok(t, mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out), "with a workspace")) {
      tester_check(t, same_bits(out, want, 4 * H * D), "a caller workspace changed the bits");
    }
    d.workspace_size = bytes - 1;
    tester_stale_error();
    tester_check_failure(t, "short workspace", mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out),
                         MHA_STATUS_INVALID_ARGUMENT, "workspace_size");
    free(ws);
  }
}

int main(void) {
  tester t;
  tester_init(&t, "varlen-kv-test");
  /*            H  Hkv Tq  Tk   D   Dv  causal window alibi softcap sinks */
  const vk_case cases[] = {
      {4, 2, 65, 200, 16, 16, 1, 0, 0, 0, 0, "causal GQA, chunks of 65"},
      {8, 2, 7, 600, 32, 24, 1, 0, 0, 0, 1, "causal, long decodes (key ranges), sinks"},
      {4, 4, 33, 130, 8, 8, 1, 21, 1, 1, 0, "causal window + ALiBi + soft-cap"},
      {6, 3, 64, 97, 12, 12, 0, 0, 0, 0, 0, "not causal, MHA"},
  };
  const isa_list isas = tester_available_isas(&t);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_case(&t, &cases[c], &isas);
  check_errors(&t);
  return tester_finish(&t);
}
