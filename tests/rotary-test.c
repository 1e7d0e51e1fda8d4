/*
 * Rotary embeddings (include/mha.h, "Rotary embeddings"): the table, the
 * rotation, Q rotated in the cache calls and K rotated by the writers.
 *
 *   1. The table (mha_rotary_table_f32) against a long-double θ^(−2i/dim),
 *      linear scaling, caller frequencies and the attention factor.
 *   2. The rotation (mha_rotary_apply_f32) of both styles, full and partial,
 *      against a float64 reference, bitwise the documented formula (each
 *      product rounded, then the sum), in place = out of place.
 *   3. The writers: mha_kv_cache_write_varlen and _slots with a rotary store
 *      bitwise what they store without one from K rotated by
 *      mha_rotary_apply_f32, in f32, f16 and bf16, contiguous and paged; V
 *      is never rotated.
 *   4. The calls: mha_attention_varlen_kv_f32 and mha_attention_kv_f32 with
 *      desc.rotary give bitwise the call without one on Q rotated by
 *      mha_rotary_apply_f32 at the documented natural positions, and the
 *      same with those positions given; on every ISA this CPU runs, at 1-3
 *      threads, every dtype and layout; and a float64 end-to-end oracle.
 *   5. Errors: every refusal names its argument and writes nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

static const mha_dtype kDtypes[] = {MHA_DTYPE_F32, MHA_DTYPE_F16, MHA_DTYPE_BF16};
static const char* const kDtypeNames[] = {"f32", "f16", "bf16"};
static const int64_t kLayouts[] = {0, 16}; /* 0 contiguous, else paged blocks */

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

static int same_bits(const void* a, const void* b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ---- 1. the table ---- */

static void check_table(tester* t) {
  enum { DIM = 12, NP = 300 };
  float c[NP * DIM / 2], s[NP * DIM / 2], c2[NP * DIM / 2], s2[NP * DIM / 2];
  tester_context(t, "table, theta 10000");
  if (!check_ok(t, mha_rotary_table_f32(DIM, NP, 10000.0, 1.0, NULL, 1.0, c, s), "mha_rotary_table_f32")) return;
  double worst = 0;
  for (int p = 0; p < NP; p++) {
    for (int i = 0; i < DIM / 2; i++) {
      const long double f = expl(-2.0L * i / DIM * logl(10000.0L)), a = (long double)p * f;
      const double ec = fabs((double)(c[p * DIM / 2 + i] - cosl(a))), es = fabs((double)(s[p * DIM / 2 + i] - sinl(a)));
      if (ec > worst) worst = ec;
      if (es > worst) worst = es;
    }
  }
  /* rounded once to fp32: half an ulp of values below 1, plus double's angle */
  tester_check(t, worst <= 6.0e-8, "table against long double: max error %g", worst);
  /* linear scaling by 4: position 4p scaled is position p plain (exact: p·0.25) */
  if (check_ok(t, mha_rotary_table_f32(DIM, NP, 10000.0, 0.25, NULL, 1.0, c2, s2), "scaled table")) {
    int ok = 1;
    for (int p = 0; p + 4 <= NP && ok; p += 4) {
      ok = same_bits(c2 + p * DIM / 2, c + (p / 4) * DIM / 2, DIM / 2 * sizeof(float)) &&
           same_bits(s2 + p * DIM / 2, s + (p / 4) * DIM / 2, DIM / 2 * sizeof(float));
    }
    tester_check(t, ok, "position_scale 1/4: row 4p equals row p of the plain table");
  }
  /* caller frequencies and an attention factor */
  float inv[DIM / 2];
  for (int i = 0; i < DIM / 2; i++) inv[i] = (float)tester_uniform(t, 0.001, 1.0);
  if (check_ok(t, mha_rotary_table_f32(DIM, NP, 0.0, 1.0, inv, 1.25, c2, s2), "inv_freq table")) {
    double w = 0;
    for (int p = 0; p < NP; p++) {
      for (int i = 0; i < DIM / 2; i++) {
        const long double a = (long double)p * inv[i];
        const double e = fabs((double)(c2[p * DIM / 2 + i] - 1.25L * cosl(a))) +
                         fabs((double)(s2[p * DIM / 2 + i] - 1.25L * sinl(a)));
        if (e > w) w = e;
      }
    }
    tester_check(t, w <= 2.0e-7, "inv_freq and attn_factor 1.25 against long double: max error %g", w);
  }
}

/* ---- 2. the rotation ---- */

/* The documented formula, as the test reads it. */
static void rotate_ref_f32(const mha_rotary* r, int64_t pos, int64_t D, const float* x, float* y) {
  const int64_t half = r->dim / 2;
  for (int64_t i = 0; i < half; i++) {
    const int64_t a = r->style == MHA_ROTARY_GPTJ ? 2 * i : i, b = r->style == MHA_ROTARY_GPTJ ? 2 * i + 1 : i + half;
    const float c = r->cos[pos * half + i], s = r->sin[pos * half + i];
    const float ac = x[a] * c, bs = x[b] * s, bc = x[b] * c, as = x[a] * s;
    y[a] = ac - bs;
    y[b] = bc + as;
  }
  for (int64_t d = 2 * half; d < D; d++) y[d] = x[d];
}

static void check_apply(tester* t, mha_rotary_style style, int64_t D, int64_t dim) {
  enum { N = 9, H = 3, NP = 50 };
  const int64_t half = dim / 2;
  float* c = tester_alloc((size_t)(NP * half) * sizeof(float));
  float* s = tester_alloc((size_t)(NP * half) * sizeof(float));
  float* x = tester_alloc((size_t)(N * H * D) * sizeof(float));
  float* y = tester_alloc((size_t)(N * H * D) * sizeof(float));
  float* z = tester_alloc((size_t)(N * H * D) * sizeof(float));
  double* want = tester_alloc((size_t)(N * H * D) * sizeof(double));
  double* tol = tester_alloc((size_t)(N * H * D) * sizeof(double));
  int32_t pos[N];
  tester_context(t, "apply, %s, D %lld, dim %lld", style == MHA_ROTARY_NEOX ? "neox" : "gptj", (long long)D,
                 (long long)dim);
  (void)mha_rotary_table_f32(dim, NP, 500.0, 1.0, NULL, 1.0, c, s);
  tester_fill(t, x, (size_t)(N * H * D));
  for (int i = 0; i < N; i++) pos[i] = (int32_t)tester_below(t, NP);
  mha_rotary r;
  mha_rotary_init(&r, style, dim, c, s, NP);
  r.positions = pos;
  const mha_strides st = mha_strides_bthd(H, N, D);
  tester_poison(y, (size_t)(N * H * D));
  if (!check_ok(t, mha_rotary_apply_f32(&r, N, H, D, x, st, y, st), "mha_rotary_apply_f32")) goto done;
  int exact = 1;
  for (int64_t i = 0; i < N; i++) {
    for (int64_t h = 0; h < H; h++) {
      const float* xr = x + (i * H + h) * D;
      float ref[256];
      rotate_ref_f32(&r, pos[i], D, xr, ref);
      exact &= same_bits(ref, y + (i * H + h) * D, (size_t)D * sizeof(float));
      /* float64: x'[a] = x[a]·cos − x[b]·sin with the table's values */
      for (int64_t k = 0; k < half; k++) {
        const int64_t a = style == MHA_ROTARY_GPTJ ? 2 * k : k, b = style == MHA_ROTARY_GPTJ ? 2 * k + 1 : k + half;
        const double cc = c[pos[i] * half + k], ss = s[pos[i] * half + k];
        const size_t o = (size_t)((i * H + h) * D);
        want[o + a] = xr[a] * cc - xr[b] * ss;
        want[o + b] = xr[b] * cc + xr[a] * ss;
        tol[o + a] = tol[o + b] = 0x1p-23 * (fabs(xr[a]) + fabs(xr[b]));
      }
      for (int64_t d = dim; d < D; d++) {
        want[(i * H + h) * D + d] = xr[d];
        tol[(i * H + h) * D + d] = 0;
      }
    }
  }
  tester_check(t, exact, "bitwise the documented formula (products rounded, then the sum)");
  tester_check_close(t, "against float64", (size_t)(N * H * D), y, want, tol);
  /* in place */
  memcpy(z, x, (size_t)(N * H * D) * sizeof(float));
  if (check_ok(t, mha_rotary_apply_f32(&r, N, H, D, z, st, z, st), "in place")) {
    tester_check(t, same_bits(y, z, (size_t)(N * H * D) * sizeof(float)), "in place equals out of place");
  }
done:
  free(c), free(s), free(x), free(y), free(z), free(want), free(tol);
}

/* ---- 3 and 4: a serving batch ---- */

typedef struct rt_batch {
  int64_t B, H, Hkv, D, Dv, Tk, np;
  mha_rotary rot;
  float *cos, *sin;
  int32_t cu_q[6], used[5], cu_k[6], zeros[5];
  float *q, *kn, *vn; /* q [total_q, H, D]; all keys' rows [total_k, Hkv, D / Dv] */
  int32_t* kpos;      /* each key row's position (its token) */
  int32_t* qpos;      /* each query row's natural position */
} rt_batch;

static void make_batch(tester* t, rt_batch* s, mha_rotary_style style, int64_t D, int64_t dim) {
  s->B = 5;
  s->H = 4;
  s->Hkv = 2;
  s->D = D;
  s->Dv = 8;
  s->Tk = 70;
  s->np = 80;
  const int32_t lq[5] = {1, 13, 1, 0, 5};
  const int32_t lk[5] = {70, 13, 1, 9, 40};
  s->cu_q[0] = s->cu_k[0] = 0;
  for (int b = 0; b < 5; b++) {
    s->used[b] = lk[b];
    s->zeros[b] = 0;
    s->cu_q[b + 1] = s->cu_q[b] + lq[b];
    s->cu_k[b + 1] = s->cu_k[b] + lk[b];
  }
  const int64_t tq = s->cu_q[5], tk = s->cu_k[5], half = dim / 2;
  s->cos = tester_alloc((size_t)(s->np * half) * sizeof(float));
  s->sin = tester_alloc((size_t)(s->np * half) * sizeof(float));
  (void)mha_rotary_table_f32(dim, s->np, 10000.0, 1.0, NULL, 1.0, s->cos, s->sin);
  mha_rotary_init(&s->rot, style, dim, s->cos, s->sin, s->np);
  s->q = tester_alloc((size_t)(tq * s->H * D) * sizeof(float));
  s->kn = tester_alloc((size_t)(tk * s->Hkv * D) * sizeof(float));
  s->vn = tester_alloc((size_t)(tk * s->Hkv * s->Dv) * sizeof(float));
  tester_fill(t, s->q, (size_t)(tq * s->H * D));
  tester_fill(t, s->kn, (size_t)(tk * s->Hkv * D));
  tester_fill(t, s->vn, (size_t)(tk * s->Hkv * s->Dv));
  s->kpos = tester_alloc((size_t)tk * sizeof(int32_t));
  s->qpos = tester_alloc((size_t)(tq > 0 ? tq : 1) * sizeof(int32_t));
  for (int b = 0; b < 5; b++) {
    for (int j = 0; j < lk[b]; j++) s->kpos[s->cu_k[b] + j] = j;
    for (int i = 0; i < lq[b]; i++) s->qpos[s->cu_q[b] + i] = lk[b] - lq[b] + i;
  }
}

static void free_batch(rt_batch* s) {
  free(s->cos), free(s->sin), free(s->q), free(s->kn), free(s->vn), free(s->kpos), free(s->qpos);
}

/* A cache for the batch's keys: contiguous [B, Hkv, Tk] or paged blocks of
 * bs (a shuffled pool), every element NaN until written. */
typedef struct rt_cache {
  mha_kv_cache c;
  void *k, *v;
  size_t kbytes, vbytes;
  int32_t* table;
} rt_cache;

static void make_cache(tester* t, const rt_batch* s, mha_dtype dt, int64_t bs, rt_cache* rc) {
  const size_t esz = dt == MHA_DTYPE_F32 ? 4 : 2;
  rc->table = NULL;
  int64_t rows;
  if (bs == 0) {
    rows = s->B * s->Tk;
  } else {
    const int64_t mb = (s->Tk + bs - 1) / bs, nb = s->B * mb;
    rows = nb * bs;
    rc->table = tester_alloc((size_t)nb * sizeof(int32_t));
    for (int64_t i = 0; i < nb; i++) rc->table[i] = (int32_t)i;
    for (int64_t i = nb - 1; i > 0; i--) {
      const int64_t j = tester_below(t, i + 1);
      const int32_t x = rc->table[i];
      rc->table[i] = rc->table[j];
      rc->table[j] = x;
    }
  }
  rc->kbytes = (size_t)(rows * s->Hkv * s->D) * esz;
  rc->vbytes = (size_t)(rows * s->Hkv * s->Dv) * esz;
  rc->k = tester_alloc(rc->kbytes);
  rc->v = tester_alloc(rc->vbytes);
  memset(rc->k, 0xff, rc->kbytes); /* NaN in every dtype */
  memset(rc->v, 0xff, rc->vbytes);
  if (bs == 0) {
    mha_kv_cache_init(&rc->c, dt, rc->k, rc->v, s->Hkv, s->Tk, s->D, s->Dv);
  } else {
    const int64_t mb = (s->Tk + bs - 1) / bs;
    mha_kv_cache_init_paged(&rc->c, dt, rc->k, rc->v, s->B * mb, bs, s->Hkv, s->D, s->Dv, rc->table, mb);
  }
}

static void free_cache(rt_cache* rc) { free(rc->k), free(rc->v), free(rc->table); }

/* The batch's keys written with the writer's rotary (a), and K rotated by
 * mha_rotary_apply_f32 then written without one (b): the same bytes. Also by
 * slots (paged). Leaves a filled. */
static void check_writers(tester* t, const rt_batch* s, rt_cache* a, rt_cache* b) {
  const int64_t tk = s->cu_k[s->B];
  const mha_strides ks = mha_strides_bthd(s->Hkv, tk, s->D), vs = mha_strides_bthd(s->Hkv, tk, s->Dv);
  float* krot = tester_alloc((size_t)(tk * s->Hkv * s->D) * sizeof(float));
  mha_rotary r = s->rot;
  r.positions = s->kpos;
  (void)mha_rotary_apply_f32(&r, tk, s->Hkv, s->D, s->kn, ks, krot, ks);
  check_ok(t, mha_kv_cache_write_varlen(&a->c, s->B, s->Hkv, s->D, s->Dv, s->cu_k, s->zeros, s->kn, ks, s->vn, vs,
                                        &s->rot),
           "write_varlen with rotary");
  check_ok(t, mha_kv_cache_write_varlen(&b->c, s->B, s->Hkv, s->D, s->Dv, s->cu_k, s->zeros, krot, ks, s->vn, vs,
                                        NULL),
           "write_varlen of pre-rotated K");
  tester_check(t, same_bits(a->k, b->k, a->kbytes) && same_bits(a->v, b->v, a->vbytes),
               "write_varlen: rotated in the writer = rotated before");
  /* the caller's positions, the natural ones: the same bytes again */
  memset(b->k, 0xff, b->kbytes);
  check_ok(t, mha_kv_cache_write_varlen(&b->c, s->B, s->Hkv, s->D, s->Dv, s->cu_k, s->zeros, s->kn, ks, s->vn, vs, &r),
           "write_varlen with positions");
  tester_check(t, same_bits(a->k, b->k, a->kbytes), "write_varlen: positions given = natural");
  if (a->c.block_size != 0) {
    /* by slots: token j of entry e at table[e][j / bs]·bs + j % bs */
    int32_t* slots = tester_alloc((size_t)tk * sizeof(int32_t));
    for (int64_t e = 0; e < s->B; e++) {
      for (int64_t j = 0; j < s->used[e]; j++) {
        const int64_t bs = a->c.block_size;
        slots[s->cu_k[e] + j] = (int32_t)(a->table[e * a->c.max_blocks + j / bs] * bs + j % bs);
      }
    }
    memset(b->k, 0xff, b->kbytes);
    check_ok(t, mha_kv_cache_write_slots(&b->c, tk, s->Hkv, s->D, s->Dv, slots, s->kn, ks, s->vn, vs, &r),
             "write_slots with rotary");
    tester_check(t, same_bits(a->k, b->k, a->kbytes), "write_slots: the same bytes as write_varlen");
    free(slots);
  }
  free(krot);
}

static void check_calls(tester* t, const rt_batch* s, const rt_cache* a, const isa_list* isas) {
  const int64_t tq = s->cu_q[s->B], H = s->H, D = s->D, Dv = s->Dv;
  const mha_strides qs = mha_strides_bthd(H, tq, D), os = mha_strides_bthd(H, tq, Dv);
  float* qrot = tester_alloc((size_t)(tq * H * D) * sizeof(float));
  mha_rotary r = s->rot;
  r.positions = s->qpos;
  (void)mha_rotary_apply_f32(&r, tq, H, D, s->q, qs, qrot, qs);
  float *o1 = tester_alloc((size_t)(tq * H * Dv) * sizeof(float)), *o2 = tester_alloc((size_t)(tq * H * Dv) * sizeof(float));
  float *l1 = tester_alloc((size_t)(tq * H) * sizeof(float)), *l2 = tester_alloc((size_t)(tq * H) * sizeof(float));
  mha_attention_desc d;
  mha_attention_desc_init(&d, s->B, H, s->Hkv, 13, s->Tk, D, Dv);
  d.q = qs;
  d.out = os;
  d.mask.causal = 1;
  for (int ii = 0; ii < isas->count; ii++) {
    for (int threads = 1; threads <= 3; threads++) {
      const char* cache_name = a->c.block_size ? "paged" : "contiguous";
      tester_context(t, "varlen_kv, %s %s, isa %s, %d threads", kDtypeNames[a->c.dtype], cache_name,
                     mha_isa_name(isas->isa[ii]), threads);
      d.isa = isas->isa[ii];
      d.num_threads = threads;
      tester_poison(o1, (size_t)(tq * H * Dv));
      tester_poison(o2, (size_t)(tq * H * Dv));
      d.rotary = &s->rot;
      d.lse = l1;
      if (!check_ok(t, mha_attention_varlen_kv_f32(&d, s->cu_q, s->used, s->q, &a->c, o1), "with rotary")) continue;
      d.rotary = NULL;
      d.lse = l2;
      check_ok(t, mha_attention_varlen_kv_f32(&d, s->cu_q, s->used, qrot, &a->c, o2), "pre-rotated");
      tester_check(t, same_bits(o1, o2, (size_t)(tq * H * Dv) * sizeof(float)) &&
                          same_bits(l1, l2, (size_t)(tq * H) * sizeof(float)),
                   "rotated in the call = rotated before (out and lse)");
      d.rotary = &r; /* the natural positions, given */
      d.lse = l2;
      tester_poison(o2, (size_t)(tq * H * Dv));
      check_ok(t, mha_attention_varlen_kv_f32(&d, s->cu_q, s->used, s->q, &a->c, o2), "positions given");
      tester_check(t, same_bits(o1, o2, (size_t)(tq * H * Dv) * sizeof(float)), "positions given = natural");
    }
  }
  /* the padded cache call (contiguous): entries 0 and 1, Tq 5 rows each at
   * kv_len[b] − 5 + i */
  if (a->c.block_size == 0) {
    enum { B = 2, Tq = 5 };
    int32_t kv_len[B], pos[B * Tq];
    float* q = tester_alloc((size_t)(B * H * Tq * D) * sizeof(float));
    float* qr = tester_alloc((size_t)(B * H * Tq * D) * sizeof(float));
    float* p1 = tester_alloc((size_t)(B * H * Tq * Dv) * sizeof(float));
    float* p2 = tester_alloc((size_t)(B * H * Tq * Dv) * sizeof(float));
    tester_fill(t, q, (size_t)(B * H * Tq * D));
    for (int64_t b = 0; b < B; b++) {
      kv_len[b] = s->used[b];
      for (int64_t i = 0; i < Tq; i++) pos[b * Tq + i] = (int32_t)(kv_len[b] - Tq + i);
    }
    /* Q [B, H, Tq, D]: each (b, h) is Tq rows at pos[b·Tq ..] */
    for (int64_t b = 0; b < B; b++) {
      for (int64_t h = 0; h < H; h++) {
        mha_rotary rr = s->rot;
        rr.positions = pos + b * Tq;
        const mha_strides one = mha_strides_bthd(1, Tq, D);
        (void)mha_rotary_apply_f32(&rr, Tq, 1, D, q + (b * H + h) * Tq * D, one, qr + (b * H + h) * Tq * D, one);
      }
    }
    mha_attention_desc k;
    mha_attention_desc_init(&k, B, H, s->Hkv, Tq, s->Tk, D, Dv);
    k.mask.causal = 1;
    k.mask.kv_len = kv_len;
    for (int ii = 0; ii < isas->count; ii++) {
      for (int threads = 1; threads <= 3; threads++) {
        tester_context(t, "kv_f32, %s contiguous, isa %s, %d threads", kDtypeNames[a->c.dtype],
                       mha_isa_name(isas->isa[ii]), threads);
        k.isa = isas->isa[ii];
        k.num_threads = threads;
        tester_poison(p1, (size_t)(B * H * Tq * Dv));
        tester_poison(p2, (size_t)(B * H * Tq * Dv));
        const size_t nw = (size_t)(B * H * Tq * s->Tk);
        float* w1 = tester_alloc(nw * sizeof(float));
        float* w2 = tester_alloc(nw * sizeof(float));
        tester_poison(w1, nw);
        tester_poison(w2, nw);
        k.rotary = &s->rot;
        check_ok(t, mha_attention_kv_f32(&k, q, &a->c, p1, w1), "kv_f32 with rotary");
        k.rotary = NULL;
        check_ok(t, mha_attention_kv_f32(&k, qr, &a->c, p2, w2), "kv_f32 pre-rotated");
        tester_check(t, same_bits(p1, p2, (size_t)(B * H * Tq * Dv) * sizeof(float)) &&
                            same_bits(w1, w2, nw * sizeof(float)),
                     "kv_f32: rotated in the call = rotated before (out and the weights)");
        free(w1);
        free(w2);
      }
    }
    free(q), free(qr), free(p1), free(p2);
  }
  free(qrot), free(o1), free(o2), free(l1), free(l2);
}

/* A float64 end-to-end reference of the step (f32 contiguous cache): Q and K
 * rotated in double from the table's values, causal bottom-right softmax. */
static void check_oracle(tester* t, const rt_batch* s, const rt_cache* a) {
  const int64_t tq = s->cu_q[s->B], H = s->H, D = s->D, Dv = s->Dv, G = H / s->Hkv, half = s->rot.dim / 2;
  const int gptj = s->rot.style == MHA_ROTARY_GPTJ;
  float* out = tester_alloc((size_t)(tq * H * Dv) * sizeof(float));
  double* want = tester_alloc((size_t)(tq * H * Dv) * sizeof(double));
  double* tol = tester_alloc((size_t)(tq * H * Dv) * sizeof(double));
  double* qd = tester_alloc((size_t)D * sizeof(double));
  double* kd = tester_alloc((size_t)(s->Tk * D) * sizeof(double));
  double* p = tester_alloc((size_t)s->Tk * sizeof(double));
  mha_attention_desc d;
  mha_attention_desc_init(&d, s->B, H, s->Hkv, 13, s->Tk, D, Dv);
  d.q = mha_strides_bthd(H, tq, D);
  d.out = mha_strides_bthd(H, tq, Dv);
  d.mask.causal = 1;
  d.rotary = &s->rot;
  tester_context(t, "float64 oracle, %s, dim %lld", gptj ? "gptj" : "neox", (long long)s->rot.dim);
  tester_poison(out, (size_t)(tq * H * Dv));
  if (!check_ok(t, mha_attention_varlen_kv_f32(&d, s->cu_q, s->used, s->q, &a->c, out), "call")) goto done;
  for (int64_t b = 0; b < s->B; b++) {
    const int64_t lq = s->cu_q[b + 1] - s->cu_q[b], lk = s->used[b];
    for (int64_t h = 0; h < H; h++) {
      const int64_t g = h / G;
      /* K of this sequence and head, rotated in double at its token */
      for (int64_t j = 0; j < lk; j++) {
        const float* kr = s->kn + ((s->cu_k[b] + j) * s->Hkv + g) * D;
        for (int64_t x = 0; x < D; x++) kd[j * D + x] = kr[x];
        for (int64_t i = 0; i < half; i++) {
          const int64_t ia = gptj ? 2 * i : i, ib = gptj ? 2 * i + 1 : i + half;
          const double c = s->cos[j * half + i], sn = s->sin[j * half + i];
          kd[j * D + ia] = (double)kr[ia] * c - (double)kr[ib] * sn;
          kd[j * D + ib] = (double)kr[ib] * c + (double)kr[ia] * sn;
        }
      }
      for (int64_t i = 0; i < lq; i++) {
        const int64_t row = s->cu_q[b] + i, at = lk - lq + i;
        const float* qr = s->q + (row * H + h) * D;
        for (int64_t x = 0; x < D; x++) qd[x] = qr[x];
        for (int64_t k = 0; k < half; k++) {
          const int64_t ia = gptj ? 2 * k : k, ib = gptj ? 2 * k + 1 : k + half;
          const double c = s->cos[at * half + k], sn = s->sin[at * half + k];
          qd[ia] = (double)qr[ia] * c - (double)qr[ib] * sn;
          qd[ib] = (double)qr[ib] * c + (double)qr[ia] * sn;
        }
        double m = -INFINITY, l = 0;
        for (int64_t j = 0; j <= at; j++) {
          double dot = 0;
          for (int64_t x = 0; x < D; x++) dot += qd[x] * kd[j * D + x];
          p[j] = dot / sqrt((double)D);
          if (p[j] > m) m = p[j];
        }
        for (int64_t j = 0; j <= at; j++) l += (p[j] = exp(p[j] - m));
        for (int64_t e = 0; e < Dv; e++) {
          double acc = 0;
          for (int64_t j = 0; j <= at; j++) acc += p[j] * s->vn[((s->cu_k[b] + j) * s->Hkv + g) * Dv + e];
          want[(row * H + h) * Dv + e] = acc / l;
          tol[(row * H + h) * Dv + e] = 2e-5;
        }
      }
    }
  }
  tester_check_close(t, "varlen_kv with rotary against float64", (size_t)(tq * H * Dv), out, want, tol);
done:
  free(out), free(want), free(tol), free(qd), free(kd), free(p);
}

/* ---- 5. errors ---- */

static void check_errors(tester* t, const rt_batch* s, rt_cache* a) {
  const int64_t tq = s->cu_q[s->B], tk = s->cu_k[s->B], H = s->H, D = s->D, Dv = s->Dv;
  const mha_strides qs = mha_strides_bthd(H, tq, D), os = mha_strides_bthd(H, tq, Dv);
  const mha_strides ks = mha_strides_bthd(s->Hkv, tk, D), vs = mha_strides_bthd(s->Hkv, tk, Dv);
  float* out = tester_alloc((size_t)(tq * H * Dv) * sizeof(float));
  void* snap = tester_alloc(a->kbytes);
  memcpy(snap, a->k, a->kbytes);
  mha_attention_desc d;
  mha_attention_desc_init(&d, s->B, H, s->Hkv, 13, s->Tk, D, Dv);
  d.q = qs;
  d.out = os;
  d.mask.causal = 1;
  tester_context(t, "errors");
  struct {
    const char* what;
    mha_rotary r;
    mha_status want;
    const char* arg;
  } bad[8];
  int n = 0;
  for (int i = 0; i < 8; i++) bad[i].r = s->rot;
  bad[n].what = "style 7", bad[n].r.style = (mha_rotary_style)7, bad[n].want = MHA_STATUS_INVALID_ARGUMENT, bad[n++].arg = "style";
  bad[n].what = "odd dim", bad[n].r.dim = 3, bad[n].want = MHA_STATUS_INVALID_ARGUMENT, bad[n++].arg = "dim";
  bad[n].what = "dim > D", bad[n].r.dim = D + 2, bad[n].want = MHA_STATUS_INVALID_ARGUMENT, bad[n++].arg = "dim";
  bad[n].what = "no positions", bad[n].r.n_positions = 0, bad[n].want = MHA_STATUS_INVALID_ARGUMENT, bad[n++].arg = "n_positions";
  bad[n].what = "cos NULL", bad[n].r.cos = NULL, bad[n].want = MHA_STATUS_NULL_POINTER, bad[n++].arg = "cos";
  bad[n].what = "table too short", bad[n].r.n_positions = 50, bad[n].want = MHA_STATUS_INVALID_ARGUMENT, bad[n++].arg = "position";
  bad[n].what = "struct_size 8", bad[n].r.struct_size = 8, bad[n].want = MHA_STATUS_INVALID_ARGUMENT, bad[n++].arg = "rotary";
  for (int i = 0; i < n; i++) {
    d.rotary = &bad[i].r;
    tester_poison(out, (size_t)(tq * H * Dv));
    tester_stale_error();
    char what[96];
    snprintf(what, sizeof what, "varlen_kv: %s", bad[i].what);
    tester_check_failure(t, what, mha_attention_varlen_kv_f32(&d, s->cu_q, s->used, s->q, &a->c, out), bad[i].want,
                         bad[i].arg);
    int kept = 1;
    for (int64_t e = 0; e < tq * H * Dv; e++) kept &= tester_is_poison(out[e]);
    tester_check(t, kept, "%s: out untouched", what);
    tester_stale_error();
    snprintf(what, sizeof what, "write_varlen: %s", bad[i].what);
    /* the writer's positions reach 69, as the queries' do */
    tester_check_failure(t, what,
                         mha_kv_cache_write_varlen(&a->c, s->B, s->Hkv, D, Dv, s->cu_k, s->zeros, s->kn, ks, s->vn,
                                                   vs, &bad[i].r),
                         bad[i].want, bad[i].arg);
    tester_check(t, same_bits(snap, a->k, a->kbytes), "%s: cache untouched", what);
  }
  /* a position out of the table, given */
  int32_t* qp = tester_alloc((size_t)tq * sizeof(int32_t));
  memcpy(qp, s->qpos, (size_t)tq * sizeof(int32_t));
  qp[tq - 1] = -1;
  mha_rotary r = s->rot;
  r.positions = qp;
  d.rotary = &r;
  tester_stale_error();
  tester_check_failure(t, "varlen_kv: position -1", mha_attention_varlen_kv_f32(&d, s->cu_q, s->used, s->q, &a->c, out),
                       MHA_STATUS_INVALID_ARGUMENT, "query row");
  /* natural positions below 0: fewer keys than queries */
  int32_t used[5];
  memcpy(used, s->used, sizeof used);
  used[1] = 3; /* 13 queries */
  d.rotary = &s->rot;
  tester_stale_error();
  tester_check_failure(t, "varlen_kv: 13 queries over 3 keys", mha_attention_varlen_kv_f32(&d, s->cu_q, used, s->q,
                                                                                         &a->c, out),
                       MHA_STATUS_INVALID_ARGUMENT, "rotary->positions");
  /* out over cos: a one-token call whose out is the rotary's cos */
  {
    mha_attention_desc one;
    mha_attention_desc_init(&one, 1, 2, 2, 1, s->Tk, D, 1);
    one.rotary = &s->rot;
    one.q = mha_strides_bthd(2, 1, D);
    one.out = mha_strides_bthd(2, 1, 1);
    const int32_t cu1[2] = {0, 1}, used1[1] = {5};
    mha_kv_cache c1;
    mha_kv_cache_init(&c1, MHA_DTYPE_F32, s->kn, s->vn, 2, s->Tk, D, 1);
    tester_stale_error();
    tester_check_failure(t, "varlen_kv: out over rotary->cos",
                         mha_attention_varlen_kv_f32(&one, cu1, used1, s->q, &c1, s->cos), MHA_STATUS_INVALID_STRIDE,
                         "rotary->cos");
  }
  /* the calls without a rotary refuse one */
  {
    mha_attention_desc core;
    mha_attention_desc_init(&core, 1, 2, 2, 3, 3, D, D);
    core.rotary = &s->rot;
    float x[3 * 2 * 64], y[3 * 2 * 64];
    tester_fill(t, x, sizeof x / sizeof x[0]);
    tester_poison(y, sizeof y / sizeof y[0]);
    tester_stale_error();
    tester_check_failure(t, "mha_attention_f32 with a rotary", mha_attention_f32(&core, x, x, x, y, NULL),
                         MHA_STATUS_INVALID_ARGUMENT, "rotary");
    const int32_t cu[2] = {0, 3};
    tester_stale_error();
    tester_check_failure(t, "mha_attention_varlen_f32 with a rotary",
                         mha_attention_varlen_f32(&core, cu, cu, x, x, x, y), MHA_STATUS_INVALID_ARGUMENT, "rotary");
    tester_check(t, tester_is_poison(y[0]), "refused calls write nothing");
  }
  /* write_slots needs positions */
  if (a->c.block_size != 0) {
    int32_t* slots = tester_alloc((size_t)tk * sizeof(int32_t));
    for (int64_t i = 0; i < tk; i++) slots[i] = -1;
    slots[0] = 0;
    tester_stale_error();
    tester_check_failure(t, "write_slots without positions",
                         mha_kv_cache_write_slots(&a->c, tk, s->Hkv, D, Dv, slots, s->kn, ks, s->vn, vs, &s->rot),
                         MHA_STATUS_INVALID_ARGUMENT, "positions");
    tester_check(t, same_bits(snap, a->k, a->kbytes), "write_slots: cache untouched");
    free(slots);
  }
  /* the table's own checks */
  float c4[4], s4[4];
  tester_stale_error();
  tester_check_failure(t, "table: odd dim", mha_rotary_table_f32(3, 2, 10000.0, 1.0, NULL, 1.0, c4, s4),
                       MHA_STATUS_INVALID_SIZE, "dim");
  tester_stale_error();
  tester_check_failure(t, "table: theta 0", mha_rotary_table_f32(2, 2, 0.0, 1.0, NULL, 1.0, c4, s4),
                       MHA_STATUS_INVALID_ARGUMENT, "theta");
  tester_stale_error();
  tester_check_failure(t, "table: cos over sin", mha_rotary_table_f32(4, 2, 10000.0, 1.0, NULL, 1.0, c4, c4 + 1),
                       MHA_STATUS_INVALID_STRIDE, "sin");
  free(out), free(snap), free(qp);
}

int main(void) {
  tester t;
  tester_init(&t, "rotary-test");
  check_table(&t);
  const int64_t shapes[][2] = {{16, 16}, {16, 8}, {24, 2}, {64, 64}, {7, 4}}; /* D, dim */
  for (int st = 0; st < 2; st++) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
      check_apply(&t, (mha_rotary_style)st, shapes[i][0], shapes[i][1]);
    }
  }
  const isa_list isas = tester_available_isas(&t);
  for (int st = 0; st < 2; st++) {
    for (int pi = 0; pi < 2; pi++) {
      const int64_t D = pi == 0 ? 16 : 24, dim = pi == 0 ? 16 : 8; /* full, partial */
      rt_batch s;
      make_batch(&t, &s, (mha_rotary_style)st, D, dim);
      for (size_t di = 0; di < 3; di++) {
        for (size_t li = 0; li < 2; li++) {
          rt_cache a, b;
          make_cache(&t, &s, kDtypes[di], kLayouts[li], &a);
          make_cache(&t, &s, kDtypes[di], kLayouts[li], &b);
          if (b.table != NULL) { /* the same table: the same bytes where they land */
            memcpy(b.table, a.table, (size_t)(s.B * a.c.max_blocks) * sizeof(int32_t));
          }
          tester_context(&t, "writers, %s, %s, %s, dim %lld of %lld", st ? "gptj" : "neox", kDtypeNames[di],
                         kLayouts[li] ? "paged" : "contiguous", (long long)dim, (long long)D);
          check_writers(&t, &s, &a, &b);
          check_calls(&t, &s, &a, &isas);
          if (di == 0 && li == 0) check_oracle(&t, &s, &a);
          if (st == 0 && pi == 0 && di == 1) check_errors(&t, &s, &a);
          free_cache(&a);
          free_cache(&b);
        }
      }
      free_batch(&s);
    }
  }
  return tester_finish(&t);
}
