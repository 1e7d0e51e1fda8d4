/*
 * libFuzzer harness: rotary embeddings (include/mha.h, "Rotary embeddings")
 * as hostile input. Everything else of a serving step is valid and small:
 * the fuzzer's bytes choose the rotary (style, dim, table length, NULL or
 * short-sized struct, positions natural or given, in or out of the table, a
 * table that out overlaps) and the step (sequences, lengths, heads, D, cache
 * dtype and layout, threads, kernel set). Four calls, each against the model:
 *
 *   mha_rotary_apply_f32          Q rotated at its rows' positions
 *   mha_kv_cache_write_varlen     every sequence's keys 0 .. used−1, K rotated
 *   mha_kv_cache_write_slots      the same tokens by slot (paged), positions given
 *   mha_attention_varlen_kv_f32   the step, Q rotated in the call
 *
 * A broken rule must be refused with its status and a message, writing
 * nothing (outputs and caches compared with snapshots). A valid call must
 * give the bits of the same work rotated beforehand: apply against the
 * formula, the writers against mha_kv_cache_write_varlen of K rotated by
 * mha_rotary_apply_f32, the call against the call without a rotary on Q so
 * rotated (out and lse).
 *
 * Byte format (each byte has a default when the input runs out):
 *   style   < 0xF0: byte % 2; else 2 + byte % 16 (not a style)
 *   D       1 + byte % 40
 *   dim     < 0xF0: 2·(byte % 24) (0: bad; > D: bad); else byte % 5 · 2 + 1 (odd)
 *   npos    byte % 90 (0: bad)
 *   posmode byte % 8: 0..3 natural; 4..5 given, valid; 6 given, one −1; 7 one npos (a query's
 *           when byte / 8 is even, else a key's; byte / 16 picks the row)
 *   special 0: none; 1: cos NULL; 2: sin NULL; 3: struct_size 8; 4: out over cos (the call)
 *   B       1 + byte % 4; then per sequence: len_q = byte % 7, used = len_q + next byte % 40
 *   heads   Hkv = 1 + byte % 2, H = Hkv·(1 + (byte >> 1) % 3)
 *   cache   dtype byte % 4 (f32, f16, bf16, int8), paged (block 16) if byte & 4
 *   threads 1 + byte % 3;  isa byte % MHA_ISA_COUNT (skipped if unavailable)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

enum { RT_MAXB = 4, RT_BS = 16 };

typedef struct rt_case {
  mha_rotary rot;
  float *cos, *sin;
  size_t table_floats;
  int64_t D, Dv, B, H, Hkv, npos;
  int posmode, special, paged, threads;
  mha_dtype dtype;
  mha_isa isa;
  int32_t cu_q[RT_MAXB + 1], used[RT_MAXB], cu_k[RT_MAXB + 1], zeros[RT_MAXB];
  int64_t total_q, total_k, max_used;
  int32_t *qpos, *kpos; /* the positions of the rows: natural, or the given ones */
  float *q, *kn, *vn;
} rt_case;

static void rt_decode(fuzz_input* in, fuzz_rng* r, rt_case* c) {
  memset(c, 0, sizeof *c);
  const uint8_t st = fuzz_u8(in, 0);
  const mha_rotary_style style = st < 0xF0 ? (mha_rotary_style)(st % 2) : (mha_rotary_style)(2 + st % 16);
  c->D = 1 + fuzz_u8(in, 15) % 40;
  const uint8_t db = fuzz_u8(in, (uint8_t)(c->D / 2));
  const int64_t dim = db < 0xF0 ? 2 * (db % 24) : (db % 5) * 2 + 1;
  c->npos = fuzz_u8(in, 80) % 90;
  const uint8_t pm = fuzz_u8(in, 0);
  c->posmode = pm % 8;
  c->special = fuzz_u8(in, 0) % 5;
  c->B = 1 + fuzz_u8(in, 1) % RT_MAXB;
  c->cu_q[0] = c->cu_k[0] = 0;
  for (int64_t b = 0; b < c->B; b++) {
    const int32_t lq = fuzz_u8(in, 1) % 7;
    const int32_t lk = lq + fuzz_u8(in, 9) % 40;
    c->used[b] = lk;
    c->cu_q[b + 1] = c->cu_q[b] + lq;
    c->cu_k[b + 1] = c->cu_k[b] + lk;
    if (lk > c->max_used) c->max_used = lk;
  }
  c->total_q = c->cu_q[c->B];
  c->total_k = c->cu_k[c->B];
  const uint8_t hb = fuzz_u8(in, 0);
  c->Hkv = 1 + hb % 2;
  c->H = c->Hkv * (1 + (hb >> 1) % 3);
  c->Dv = 1 + (hb >> 3) % 9;
  const uint8_t cb = fuzz_u8(in, 1);
  c->dtype = (mha_dtype)(cb % 4);
  c->paged = (cb & 4) != 0;
  c->threads = 1 + fuzz_u8(in, 0) % 3;
  c->isa = (mha_isa)(fuzz_u8(in, 0) % MHA_ISA_COUNT);

  /* the table: npos rows of max(dim/2, 1), values from the generator */
  const int64_t half = dim >= 2 ? dim / 2 : 1;
  c->table_floats = (size_t)((c->npos > 0 ? c->npos : 1) * half);
  const size_t out_floats = (size_t)((c->total_q > 0 ? c->total_q : 1) * c->H * c->Dv);
  const size_t cos_floats = c->special == 4 && out_floats > c->table_floats ? out_floats : c->table_floats;
  c->cos = fuzz_alloc(cos_floats);
  c->sin = fuzz_alloc(c->table_floats);
  for (size_t i = 0; i < cos_floats; i++) c->cos[i] = fuzz_uniform(r, -1.0f, 1.0f);
  for (size_t i = 0; i < c->table_floats; i++) c->sin[i] = fuzz_uniform(r, -1.0f, 1.0f);
  mha_rotary_init(&c->rot, style, dim, c->cos, c->sin, c->npos);
  if (c->special == 1) c->rot.cos = NULL;
  if (c->special == 2) c->rot.sin = NULL;
  if (c->special == 3) c->rot.struct_size = 8;

  /* the rows' positions: the natural ones, or given (maybe one broken) */
  c->qpos = malloc((size_t)(c->total_q + 1) * sizeof(int32_t));
  c->kpos = malloc((size_t)(c->total_k + 1) * sizeof(int32_t));
  if (c->qpos == NULL || c->kpos == NULL) exit(2);
  for (int64_t b = 0; b < c->B; b++) {
    const int32_t lq = c->cu_q[b + 1] - c->cu_q[b];
    for (int32_t i = 0; i < lq; i++) c->qpos[c->cu_q[b] + i] = c->used[b] - lq + i;
    for (int32_t j = 0; j < c->used[b]; j++) c->kpos[c->cu_k[b] + j] = j;
  }
  if (c->posmode >= 6) { /* one broken position: a query's (pm / 8 even) or a key's */
    const int32_t bad = c->posmode == 6 ? -1 : (int32_t)c->npos;
    const int row = pm / 16;
    if ((pm / 8) % 2 == 0 && c->total_q > 0) c->qpos[row % c->total_q] = bad;
    if ((pm / 8) % 2 == 1 && c->total_k > 0) c->kpos[row % c->total_k] = bad;
  }

  c->q = fuzz_alloc((size_t)((c->total_q + 1) * c->H * c->D));
  c->kn = fuzz_alloc((size_t)((c->total_k + 1) * c->Hkv * c->D));
  c->vn = fuzz_alloc((size_t)((c->total_k + 1) * c->Hkv * c->Dv));
  for (int64_t i = 0; i < (c->total_q + 1) * c->H * c->D; i++) c->q[i] = fuzz_uniform(r, -1.0f, 1.0f);
  for (int64_t i = 0; i < (c->total_k + 1) * c->Hkv * c->D; i++) c->kn[i] = fuzz_uniform(r, -1.0f, 1.0f);
  for (int64_t i = 0; i < (c->total_k + 1) * c->Hkv * c->Dv; i++) c->vn[i] = fuzz_uniform(r, -1.0f, 1.0f);
}

static void rt_free(rt_case* c) {
  free(c->cos), free(c->sin), free(c->qpos), free(c->kpos), free(c->q), free(c->kn), free(c->vn);
}

/* The rotary's own rules (a struct the call reads for heads of D). */
static void rt_expect_fields(const rt_case* c, fuzz_expect* e) {
  const mha_rotary* r = &c->rot;
  if (r->struct_size != sizeof *r) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "struct_size %zu", r->struct_size);
  if (r->style != MHA_ROTARY_NEOX && r->style != MHA_ROTARY_GPTJ) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "style %d", (int)r->style);
  }
  if (r->dim < 2 || r->dim % 2 != 0 || r->dim > c->D) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "dim %lld (D %lld)", (long long)r->dim, (long long)c->D);
  }
  if (r->n_positions < 1) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "n_positions %lld", (long long)r->n_positions);
  if (r->cos == NULL || r->sin == NULL) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cos or sin NULL");
}

/* Positions: every one the call uses in [0, n_positions). */
static void rt_expect_positions(const rt_case* c, const int32_t* pos, int64_t n, fuzz_expect* e) {
  for (int64_t i = 0; i < n; i++) {
    if (pos[i] < 0 || pos[i] >= c->npos) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "row %lld at position %d of %lld", (long long)i, (int)pos[i],
                   (long long)c->npos);
      return;
    }
  }
}

/* A cache for the step: contiguous [B, Hkv, max_used] or paged blocks of 16
 * in a reversed pool; every byte 0xFF (NaN) until written. */
typedef struct rt_cache {
  mha_kv_cache c;
  void *k, *v;
  float *ks, *vs; /* int8: the rows' scales */
  size_t kb, vb, sb;
  int32_t table[RT_MAXB * 4];
} rt_cache;

static void rt_cache_make(const rt_case* c, rt_cache* rc) {
  const size_t esz = c->dtype == MHA_DTYPE_F32 ? 4 : c->dtype == MHA_DTYPE_INT8 ? 1 : 2;
  const int64_t cap = c->max_used > 0 ? c->max_used : 1, mb = (cap + RT_BS - 1) / RT_BS, nb = c->B * mb;
  const int64_t rows = c->paged ? nb * RT_BS : c->B * cap;
  rc->kb = (size_t)(rows * c->Hkv * c->D) * esz;
  rc->vb = (size_t)(rows * c->Hkv * c->Dv) * esz;
  rc->k = malloc(rc->kb);
  rc->v = malloc(rc->vb);
  if (rc->k == NULL || rc->v == NULL) exit(2);
  memset(rc->k, 0xff, rc->kb);
  memset(rc->v, 0xff, rc->vb);
  rc->sb = (size_t)(rows * c->Hkv) * sizeof(float);
  rc->ks = malloc(rc->sb);
  rc->vs = malloc(rc->sb);
  if (rc->ks == NULL || rc->vs == NULL) exit(2);
  memset(rc->ks, 0xff, rc->sb); /* NaN until written */
  memset(rc->vs, 0xff, rc->sb);
  if (c->paged) {
    for (int64_t i = 0; i < nb; i++) rc->table[i] = (int32_t)(nb - 1 - i);
    mha_kv_cache_init_paged(&rc->c, c->dtype, rc->k, rc->v, nb, RT_BS, c->Hkv, c->D, c->Dv, rc->table, mb);
  } else {
    mha_kv_cache_init(&rc->c, c->dtype, rc->k, rc->v, c->Hkv, cap, c->D, c->Dv);
  }
  rc->c.k_scales = rc->ks; /* read only for int8 */
  rc->c.v_scales = rc->vs;
}

static void rt_cache_free(rt_cache* rc) { free(rc->k), free(rc->v), free(rc->ks), free(rc->vs); }

static void rt_same(const char* what, const void* a, const void* b, size_t bytes) {
  if (memcmp(a, b, bytes) != 0) fuzz_finding("%s: not the bits of the same work rotated beforehand", what);
}

/* Q or K rotated by mha_rotary_apply_f32 at pos (valid rotary and positions). */
static float* rt_rotated(const rt_case* c, const float* x, int64_t n, int64_t heads, const int32_t* pos) {
  float* y = fuzz_alloc((size_t)((n + 1) * heads * c->D));
  mha_rotary r = c->rot;
  r.positions = pos;
  const mha_strides s = mha_strides_bthd(heads, n, c->D);
  const mha_status st = mha_rotary_apply_f32(&r, n, heads, c->D, x, s, y, s);
  if (st != MHA_STATUS_SUCCESS) fuzz_finding("mha_rotary_apply_f32 refused a valid rotary: %s", mha_last_error());
  return y;
}

static void rt_run(rt_case* c) {
  if (!mha_isa_available(c->isa)) c->isa = MHA_ISA_SCALAR;
  fuzz_expect fields;
  fuzz_expect_init(&fields);
  rt_expect_fields(c, &fields);
  const int given = c->posmode >= 4;
  mha_rotary rot = c->rot;
  fuzz_describe("rotary: style %d, dim %lld, D %lld, npos %lld, posmode %d, special %d; B %lld (total_q %lld, "
                "total_k %lld), H %lld/%lld, Dv %lld, dtype %d, %s, %d threads, isa %s",
                (int)rot.style, (long long)rot.dim, (long long)c->D, (long long)c->npos, c->posmode, c->special,
                (long long)c->B, (long long)c->total_q, (long long)c->total_k, (long long)c->H, (long long)c->Hkv,
                (long long)c->Dv, (int)c->dtype, c->paged ? "paged" : "contiguous", c->threads,
                mha_isa_name(c->isa));

  /* 1. apply on Q's rows (positions: given, or the row index) */
  if (c->total_q > 0) {
    fuzz_expect e = fields;
    rot.positions = given ? c->qpos : NULL;
    int32_t* idx = malloc((size_t)c->total_q * sizeof(int32_t));
    if (idx == NULL) exit(2);
    for (int64_t i = 0; i < c->total_q; i++) idx[i] = (int32_t)i;
    if (e.required == 0) rt_expect_positions(c, given ? c->qpos : idx, c->total_q, &e);
    const size_t n = (size_t)(c->total_q * c->H * c->D);
    float* y = fuzz_alloc(n);
    fuzz_poison(y, n);
    void* snap = fuzz_snapshot(y, n * sizeof(float));
    const mha_strides s = mha_strides_bthd(c->H, c->total_q, c->D);
    const mha_status st = mha_rotary_apply_f32(&rot, c->total_q, c->H, c->D, c->q, s, y, s);
    fuzz_check_status("mha_rotary_apply_f32", st, &e);
    if (st != MHA_STATUS_SUCCESS) {
      fuzz_check_unchanged("y after a failed apply", y, snap, n * sizeof(float));
    } else { /* the formula, element by element */
      const int64_t half = rot.dim / 2;
      for (int64_t i = 0; i < c->total_q * c->H; i++) {
        const int64_t p = given ? c->qpos[i / c->H] : i / c->H;
        const float* x = c->q + i * c->D;
        for (int64_t k = 0; k < half; k++) {
          const int64_t a = rot.style == MHA_ROTARY_GPTJ ? 2 * k : k, b = rot.style == MHA_ROTARY_GPTJ ? 2 * k + 1 : k + half;
          const float cc = rot.cos[p * half + k], ss = rot.sin[p * half + k];
          const float ac = x[a] * cc, bs = x[b] * ss, bc = x[b] * cc, as = x[a] * ss;
          const float ya = ac - bs, yb = bc + as;
          if (memcmp(&ya, &y[i * c->D + a], 4) != 0 || memcmp(&yb, &y[i * c->D + b], 4) != 0) {
            fuzz_finding("apply: row %lld, pair %lld is not the formula's", (long long)(i / c->H), (long long)k);
          }
        }
        if (memcmp(x + 2 * half, y + i * c->D + 2 * half, (size_t)(c->D - 2 * half) * sizeof(float)) != 0) {
          fuzz_finding("apply: the dimensions past dim changed");
        }
      }
    }
    free(idx), free(y), free(snap);
  }

  /* 2. the writers: every sequence's keys 0 .. used−1 */
  rt_cache a, b;
  rt_cache_make(c, &a);
  rt_cache_make(c, &b);
  const mha_strides ks = mha_strides_bthd(c->Hkv, c->total_k, c->D), vs = mha_strides_bthd(c->Hkv, c->total_k, c->Dv);
  if (c->total_k > 0) {
    fuzz_expect e = fields;
    rot.positions = given ? c->kpos : NULL;
    if (e.required == 0) rt_expect_positions(c, c->kpos, c->total_k, &e);
    void* snap = fuzz_snapshot(a.k, a.kb);
    const mha_status st = mha_kv_cache_write_varlen(&a.c, c->B, c->Hkv, c->D, c->Dv, c->cu_k, c->zeros, c->kn, ks,
                                                    c->vn, vs, &rot);
    fuzz_check_status("mha_kv_cache_write_varlen", st, &e);
    if (st != MHA_STATUS_SUCCESS) {
      fuzz_check_unchanged("cache->k after a failed write", a.k, snap, a.kb);
      /* the keys unrotated, so the call below still has a cache to read */
      if (mha_kv_cache_write_varlen(&a.c, c->B, c->Hkv, c->D, c->Dv, c->cu_k, c->zeros, c->kn, ks, c->vn, vs,
                                    NULL) != MHA_STATUS_SUCCESS) {
        fuzz_finding("write_varlen without a rotary failed: %s", mha_last_error());
      }
    } else {
      float* kr = rt_rotated(c, c->kn, c->total_k, c->Hkv, c->kpos);
      if (mha_kv_cache_write_varlen(&b.c, c->B, c->Hkv, c->D, c->Dv, c->cu_k, c->zeros, kr, ks, c->vn, vs, NULL) !=
          MHA_STATUS_SUCCESS) {
        fuzz_finding("write_varlen without a rotary failed: %s", mha_last_error());
      }
      rt_same("write_varlen's K", a.k, b.k, a.kb);
      rt_same("write_varlen's V", a.v, b.v, a.vb);
      if (c->dtype == MHA_DTYPE_INT8) {
        rt_same("write_varlen's K scales", a.ks, b.ks, a.sb);
        rt_same("write_varlen's V scales", a.vs, b.vs, a.sb);
      }
      if (c->paged) { /* by slots, positions given: the same bytes */
        int32_t* slots = malloc((size_t)c->total_k * sizeof(int32_t));
        if (slots == NULL) exit(2);
        for (int64_t s = 0; s < c->B; s++) {
          for (int32_t j = 0; j < c->used[s]; j++) {
            const int32_t blk = a.table[s * a.c.max_blocks + j / RT_BS];
            slots[c->cu_k[s] + j] = blk * RT_BS + j % RT_BS;
          }
        }
        memset(b.k, 0xff, b.kb);
        memset(b.ks, 0xff, b.sb);
        mha_rotary rs = rot;
        rs.positions = c->kpos;
        const mha_status ss = mha_kv_cache_write_slots(&b.c, c->total_k, c->Hkv, c->D, c->Dv, slots, c->kn, ks,
                                                       c->vn, vs, &rs);
        fuzz_check_status("mha_kv_cache_write_slots", ss, &e);
        rt_same("write_slots' K", a.k, b.k, a.kb);
        if (c->dtype == MHA_DTYPE_INT8) rt_same("write_slots' K scales", a.ks, b.ks, a.sb);
        free(slots);
      }
      free(kr);
    }
    free(snap);
  }

  /* 3. the step: Q rotated in the call, over the cache written above */
  if (c->total_k > 0 && c->total_q > 0) {
    fuzz_expect e = fields;
    rot.positions = given ? c->qpos : NULL;
    if (e.required == 0) rt_expect_positions(c, c->qpos, c->total_q, &e);
    mha_attention_desc d;
    mha_attention_desc_init(&d, c->B, c->H, c->Hkv, 6, c->max_used, c->D, c->Dv);
    d.q = mha_strides_bthd(c->H, c->total_q, c->D);
    d.out = mha_strides_bthd(c->H, c->total_q, c->Dv);
    d.mask.causal = 1;
    d.num_threads = c->threads;
    d.isa = c->isa;
    d.rotary = &rot;
    const size_t n = (size_t)(c->total_q * c->H * c->Dv);
    float* out = c->special == 4 ? c->cos : fuzz_alloc(n);
    float* lse = fuzz_alloc((size_t)(c->total_q * c->H));
    if (c->special == 4) {
      fuzz_require(&e, MHA_STATUS_INVALID_STRIDE, "out over rotary->cos");
    } else {
      fuzz_poison(out, n);
    }
    fuzz_poison(lse, (size_t)(c->total_q * c->H));
    d.lse = lse;
    void* snap = fuzz_snapshot(out, n * sizeof(float));
    const mha_status st = mha_attention_varlen_kv_f32(&d, c->cu_q, c->used, c->q, &a.c, out);
    fuzz_check_status("mha_attention_varlen_kv_f32", st, &e);
    if (st != MHA_STATUS_SUCCESS) {
      fuzz_check_unchanged("out after a failed call", out, snap, n * sizeof(float));
    } else {
      float* qr = rt_rotated(c, c->q, c->total_q, c->H, c->qpos);
      float* out2 = fuzz_alloc(n);
      float* lse2 = fuzz_alloc((size_t)(c->total_q * c->H));
      d.rotary = NULL;
      d.lse = lse2;
      d.num_threads = 1 + c->threads % 3;
      if (mha_attention_varlen_kv_f32(&d, c->cu_q, c->used, qr, &a.c, out2) != MHA_STATUS_SUCCESS) {
        fuzz_finding("the call without a rotary failed: %s", mha_last_error());
      }
      rt_same("the call's out", out, out2, n * sizeof(float));
      rt_same("the call's lse", lse, lse2, (size_t)(c->total_q * c->H) * sizeof(float));
      free(qr), free(out2), free(lse2);
    }
    if (c->special != 4) free(out);
    free(lse), free(snap);
  }
  rt_cache_free(&a);
  rt_cache_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_input in = {data, size};
  fuzz_rng rng = fuzz_rng_from(data, size);
  rt_case c;
  rt_decode(&in, &rng, &c);
  rt_run(&c);
  rt_free(&c);
  return 0;
}
