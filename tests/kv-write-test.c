/*
 * The serving writers of a K/V cache (mha_kv_cache_write_varlen,
 * mha_kv_cache_write_slots), against mha_kv_cache_write:
 *   1. For fp32, f16 and bf16 caches, contiguous and paged (blocks of 16 and
 *      32 shuffled over a pool with spare blocks), on every ISA this CPU runs:
 *      a packed step (sequences of 0, 1, 7, 33 and 65 new rows at their own
 *      positions) written by write_varlen leaves the cache bitwise as
 *      mha_kv_cache_write called once per sequence leaves it (the same
 *      rounding: kv-convert.h's, whatever the kernel set), and every element
 *      no row addresses keeps its sentinel; write_slots with the slots those
 *      positions map to (and padding slots of -1 between them) leaves the
 *      same bits.
 *   2. Errors: every documented status; a failing call writes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tester.h"

static const mha_dtype kDtypes[] = {MHA_DTYPE_F32, MHA_DTYPE_F16, MHA_DTYPE_BF16};
static const char* const kDtypeNames[] = {"f32", "f16", "bf16"};
static const int64_t kBlocks[] = {0, 16, 32};

enum { B = 5, HKV = 3, D = 20, DV = 12, TCAP = 128 };

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

/* A cache of B entries holding up to TCAP tokens, its pools filled with a
 * sentinel (a signalling NaN no rounding produces). */
typedef struct kv_pools {
  mha_kv_cache cache;
  void *k, *v;
  size_t k_bytes, v_bytes;
  int32_t table[B * (TCAP / 16)];
} kv_pools;

static void pools_make(tester* t, kv_pools* p, mha_dtype dtype, int64_t bs) {
  const size_t esz = dtype == MHA_DTYPE_F32 ? 4 : 2;
  int64_t rows;
  if (bs == 0) {
    rows = (int64_t)B * TCAP;
  } else {
    const int64_t per = TCAP / bs, nblocks = B * per + 3;
    int32_t perm[B * (TCAP / 16) + 3];
    for (int64_t i = 0; i < nblocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = nblocks - 1; i > 0; i--) {
      const int64_t j = tester_below(t, i + 1);
      const int32_t x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    for (int64_t i = 0; i < B * per; i++) p->table[i] = perm[i];
    rows = nblocks * bs;
  }
  p->k_bytes = (size_t)(rows * HKV * D) * esz;
  p->v_bytes = (size_t)(rows * HKV * DV) * esz;
  p->k = tester_alloc(p->k_bytes);
  p->v = tester_alloc(p->v_bytes);
  memset(p->k, 0x7d, p->k_bytes); /* f16 0x7d7d, bf16 0x7d7d, f32 0x7d7d7d7d: finite sentinels */
  memset(p->v, 0x7d, p->v_bytes);
  if (bs == 0) {
    mha_kv_cache_init(&p->cache, dtype, p->k, p->v, HKV, TCAP, D, DV);
  } else {
    mha_kv_cache_init_paged(&p->cache, dtype, p->k, p->v, rows / bs, bs, HKV, D, DV, p->table, TCAP / bs);
  }
}

static void pools_free(kv_pools* p) {
  free(p->k);
  free(p->v);
}

static void run(tester* t, mha_dtype dtype, const char* dname, int64_t bs, mha_isa isa) {
  const int32_t lens[B] = {7, 0, 1, 65, 33};
  int32_t cu[B + 1], pos[B];
  cu[0] = 0;
  for (int b = 0; b < B; b++) {
    cu[b + 1] = cu[b] + lens[b];
    pos[b] = (int32_t)tester_below(t, TCAP - lens[b] + 1);
  }
  const int64_t total = cu[B];
  /* packed [total, HKV, D] with padded rows (row stride HKV·D + 3) */
  const mha_strides ks = {0, D, HKV * D + 3}, vs = {0, DV, HKV * DV + 1};
  float* kn = tester_alloc((size_t)(total * ks.row) * sizeof(float));
  float* vn = tester_alloc((size_t)(total * vs.row) * sizeof(float));
  tester_fill(t, kn, (size_t)(total * ks.row));
  tester_fill(t, vn, (size_t)(total * vs.row));
  kv_pools want, got, slots;
  pools_make(t, &want, dtype, bs);
  got = want; /* the same table and layout, pools of its own */
  got.k = tester_alloc(want.k_bytes);
  got.v = tester_alloc(want.v_bytes);
  memset(got.k, 0x7d, want.k_bytes);
  memset(got.v, 0x7d, want.v_bytes);
  got.cache.k = got.k;
  got.cache.v = got.v;
  if (bs != 0) got.cache.block_table = got.table;
  tester_context(t, "%s, block %lld, isa %s", dname, (long long)bs, mha_isa_name(isa));
  if (!tester_set_isa(t, MHA_ISA_SCALAR)) return;
  /* the reference: mha_kv_cache_write per sequence, on the scalar set */
  for (int b = 0; b < B; b++) {
    if (lens[b] == 0) continue;
    mha_kv_cache e = want.cache;
    if (bs != 0) e.block_table = want.table + b * (TCAP / bs);
    else {
      const size_t esz = dtype == MHA_DTYPE_F32 ? 4 : 2;
      e.k = (char*)e.k + (size_t)(b * e.k_strides.batch) * esz;
      e.v = (char*)e.v + (size_t)(b * e.v_strides.batch) * esz;
    }
    const mha_strides one_k = {0, ks.head, ks.row}, one_v = {0, vs.head, vs.row};
    check_ok(t, mha_kv_cache_write(&e, 1, HKV, lens[b], D, DV, &pos[b], kn + cu[b] * ks.row, one_k,
                                   vn + cu[b] * vs.row, one_v),
             "mha_kv_cache_write");
  }
  if (!tester_set_isa(t, isa)) return;
  if (check_ok(t, mha_kv_cache_write_varlen(&got.cache, B, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL), "write_varlen")) {
    tester_check(t, memcmp(got.k, want.k, want.k_bytes) == 0 && memcmp(got.v, want.v, want.v_bytes) == 0,
                 "write_varlen: the cache differs from mha_kv_cache_write per sequence");
  }
  if (bs != 0) {
    /* the same rows by slots, with a padding slot between sequences */
    slots = got;
    slots.k = tester_alloc(want.k_bytes);
    slots.v = tester_alloc(want.v_bytes);
    memset(slots.k, 0x7d, want.k_bytes);
    memset(slots.v, 0x7d, want.v_bytes);
    slots.cache.k = slots.k;
    slots.cache.v = slots.v;
    const int64_t n = total + B;
    int32_t* map = tester_alloc((size_t)n * sizeof(int32_t));
    float* kp = tester_alloc((size_t)(n * ks.row) * sizeof(float));
    float* vp = tester_alloc((size_t)(n * vs.row) * sizeof(float));
    tester_fill(t, kp, (size_t)(n * ks.row)); /* padding rows: values that must not land */
    tester_fill(t, vp, (size_t)(n * vs.row));
    int64_t r = 0;
    for (int b = 0; b < B; b++) {
      for (int i = 0; i < lens[b]; i++, r++) {
        const int64_t tok = pos[b] + i;
        map[r] = got.table[b * (TCAP / bs) + tok / bs] * (int32_t)bs + (int32_t)(tok % bs);
        memcpy(kp + r * ks.row, kn + (cu[b] + i) * ks.row, (size_t)ks.row * sizeof(float));
        memcpy(vp + r * vs.row, vn + (cu[b] + i) * vs.row, (size_t)vs.row * sizeof(float));
      }
      map[r++] = -1;
    }
    if (check_ok(t, mha_kv_cache_write_slots(&slots.cache, n, HKV, D, DV, map, kp, ks, vp, vs, NULL), "write_slots")) {
      tester_check(t, memcmp(slots.k, want.k, want.k_bytes) == 0 && memcmp(slots.v, want.v, want.v_bytes) == 0,
                   "write_slots: the cache differs from mha_kv_cache_write per sequence");
    }
    free(map);
    free(kp);
    free(vp);
    free(slots.k);
    free(slots.v);
  }
  free(kn);
  free(vn);
  free(got.k);
  free(got.v);
  pools_free(&want);
}

/* A call that must fail with want naming arg, leaving the pools as they were. */
static void expect_fail(tester* t, const kv_pools* p, const void* k0, const void* v0, const char* what,
                        mha_status got, mha_status want, const char* arg) {
  tester_check_failure(t, what, got, want, arg);
  tester_check(t, memcmp(p->k, k0, p->k_bytes) == 0 && memcmp(p->v, v0, p->v_bytes) == 0, "%s: wrote the cache",
               what);
}

static void check_errors(tester* t) {
  tester_context(t, "writer errors");
  kv_pools p;
  pools_make(t, &p, MHA_DTYPE_F16, 16);
  void* k0 = tester_alloc(p.k_bytes);
  void* v0 = tester_alloc(p.v_bytes);
  memcpy(k0, p.k, p.k_bytes);
  memcpy(v0, p.v, p.v_bytes);
  float kn[4 * HKV * D], vn[4 * HKV * DV];
  tester_fill(t, kn, sizeof kn / sizeof kn[0]);
  tester_fill(t, vn, sizeof vn / sizeof vn[0]);
  const mha_strides ks = {0, D, HKV * D}, vs = {0, DV, HKV * DV};
  int32_t cu[B + 1] = {0, 1, 2, 2, 3, 4}, pos[B] = {0, 5, 9, 100, TCAP - 1};
  int32_t map[4] = {0, 17, -1, 40};
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "NULL pos", mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, NULL, kn, ks, vn, vs, NULL),
              MHA_STATUS_NULL_POINTER, "pos");
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "NULL cu_seqlens",
              mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, NULL, pos, kn, ks, vn, vs, NULL), MHA_STATUS_NULL_POINTER,
              "cu_seqlens");
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "NULL k_new", mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, NULL, ks, vn, vs, NULL),
              MHA_STATUS_NULL_POINTER, "k_new");
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "B 0", mha_kv_cache_write_varlen(&p.cache, 0, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL),
              MHA_STATUS_INVALID_SIZE, "B");
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "D 0", mha_kv_cache_write_varlen(&p.cache, B, HKV, 0, DV, cu, pos, kn, ks, vn, vs, NULL),
              MHA_STATUS_INVALID_SIZE, "D");
  cu[2] = 0;
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "decreasing cu_seqlens",
              mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL), MHA_STATUS_INVALID_ARGUMENT,
              "cu_seqlens");
  cu[2] = 2;
  pos[4] = TCAP; /* one token past the end */
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "position past the cache",
              mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL), MHA_STATUS_INVALID_ARGUMENT,
              "entry 4");
  pos[4] = -1;
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "negative position",
              mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL), MHA_STATUS_INVALID_ARGUMENT,
              "entry 4");
  pos[4] = TCAP - 1;
  p.table[1 * (TCAP / 16) + 0] = -1; /* entry 1 writes token 5: its first slot */
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "a table slot the rows need",
              mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL), MHA_STATUS_INVALID_ARGUMENT,
              "block_table[1][0]");
  p.table[1 * (TCAP / 16) + 0] = 2;
  /* entry 2 has no rows: its slots are never read, even a bad one */
  p.table[2 * (TCAP / 16) + 0] = -1;
  memcpy(k0, p.k, p.k_bytes);
  check_ok(t, mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, kn, ks, vn, vs, NULL), "a slot no row needs");
  memcpy(k0, p.k, p.k_bytes);
  memcpy(v0, p.v, p.v_bytes);
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "k_new inside the cache",
              mha_kv_cache_write_varlen(&p.cache, B, HKV, D, DV, cu, pos, (const float*)p.k, ks, vn, vs, NULL),
              MHA_STATUS_INVALID_STRIDE, "k_new");

  tester_stale_error();
  expect_fail(t, &p, k0, v0, "NULL slot_mapping", mha_kv_cache_write_slots(&p.cache, 4, HKV, D, DV, NULL, kn, ks, vn, vs, NULL),
              MHA_STATUS_NULL_POINTER, "slot_mapping");
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "no tokens", mha_kv_cache_write_slots(&p.cache, 0, HKV, D, DV, map, kn, ks, vn, vs, NULL),
              MHA_STATUS_INVALID_SIZE, "n_tokens");
  map[3] = (int32_t)(p.cache.num_blocks * 16);
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "a slot past the pools",
              mha_kv_cache_write_slots(&p.cache, 4, HKV, D, DV, map, kn, ks, vn, vs, NULL), MHA_STATUS_INVALID_ARGUMENT,
              "slot_mapping[3]");
  map[3] = 40;
  mha_kv_cache contig;
  mha_kv_cache_init(&contig, MHA_DTYPE_F16, p.k, p.v, HKV, 16, D, DV);
  tester_stale_error();
  expect_fail(t, &p, k0, v0, "slots into a contiguous cache",
              mha_kv_cache_write_slots(&contig, 4, HKV, D, DV, map, kn, ks, vn, vs, NULL), MHA_STATUS_INVALID_ARGUMENT,
              "paged");
  check_ok(t, mha_kv_cache_write_slots(&p.cache, 4, HKV, D, DV, map, kn, ks, vn, vs, NULL), "good slots");
  tester_check(t, memcmp(p.k, k0, p.k_bytes) != 0, "good slots wrote nothing");
  free(k0);
  free(v0);
  pools_free(&p);
}

int main(void) {
  tester t;
  tester_init(&t, "kv-write-test");
  const isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    for (size_t d = 0; d < sizeof kDtypes / sizeof kDtypes[0]; d++) {
      for (size_t l = 0; l < sizeof kBlocks / sizeof kBlocks[0]; l++) run(&t, kDtypes[d], kDtypeNames[d], kBlocks[l], isas.isa[i]);
    }
  }
  mha_set_isa(MHA_ISA_DEFAULT);
  check_errors(&t);
  return tester_finish(&t);
}
