/*
 * int8 K/V caches (MHA_DTYPE_INT8; include/mha.h, "int8 caches").
 *
 *   1. The dequantization kernel of every kernel set (dequant_i8) bitwise the
 *      scalar one, every int8 value, scales normal, subnormal, 0, ±inf, NaN,
 *      lengths 1..40 (tails), nothing written past the row.
 *   2. The writer's quantization: bitwise the documented rule (computed here
 *      from its text), q in [−127, 127], the error bound |q·scale − x| <=
 *      amax·(1/254 + 2^−22), a zero row (scale 0), a row with a NaN or an
 *      infinity (scale NaN, q 0); mha_kv_cache_write, _varlen and _slots
 *      store the same bytes.
 *   3. Reading: mha_attention_kv_f32 over an int8 cache (contiguous, paged
 *      blocks of 16 and 32 in a shuffled pool) gives bitwise
 *      mha_attention_f32 on the dequantized K and V (out and lse), for
 *      decodes (keys split), prefill (the tiled form), GQA, causal, kv_len,
 *      D > Dv and D < Dv, on every ISA at 1-3 threads; and
 *      mha_attention_varlen_kv_f32 gives each sequence its own call's bits.
 *   4. Errors: NULL scales, scales over out, nothing written.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/kernels.h"
#include "mha.h"
#include "tester.h"

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

static int same_bits(const void* a, const void* b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ---- 1. the dequantization kernels ---- */

static void check_dequant_kernels(tester* t, const isa_list* isas) {
  static const float scales[] = {0.0078125f, 3.1e-3f, 1.0f, 1e-40f /* subnormal */, 0.0f, INFINITY, -2.5f, NAN};
  int8_t x[48];
  float want[48], got[48 + 4];
  for (int ii = 0; ii < isas->count; ii++) {
    const mha_kernels* kr = mha_kernels_for(isas->isa[ii]);
    if (kr == NULL) continue;
    tester_context(t, "dequant_i8, isa %s", mha_isa_name(isas->isa[ii]));
    int ok = 1, guard = 1;
    for (int v0 = -128; v0 < 128; v0 += 40) {
      for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++) {
        for (size_t n = 1; n <= 40; n++) {
          for (size_t i = 0; i < n; i++) x[i] = (int8_t)(v0 + (int)((i * 37) % 40));
          for (size_t i = 0; i < n; i++) want[i] = (float)x[i] * scales[si];
          tester_poison(got, n + 4);
          kr->dequant_i8(n, x, scales[si], got);
          ok &= same_bits(got, want, n * sizeof(float));
          for (size_t i = n; i < n + 4; i++) guard &= tester_is_poison(got[i]);
        }
      }
    }
    tester_check(t, ok, "bitwise (float)q · scale for every value, scale and length");
    tester_check(t, guard, "nothing written past the row");
  }
}

/* ---- 2. quantization ---- */

/* The documented rule, from mha.h's text. */
static float quantize_ref(size_t n, const float* x, int8_t* q) {
  float amax = 0.0f;
  int finite = 1;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) finite = 0;
    else if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
  }
  if (!finite || amax == 0.0f) {
    memset(q, 0, n);
    return finite ? 0.0f : NAN;
  }
  for (size_t i = 0; i < n; i++) {
    const double v = (double)x[i] * (127.0 / (double)amax);
    double r = nearbyint(v); /* the default mode: to nearest, ties to even */
    if (r > 127) r = 127;
    if (r < -127) r = -127;
    q[i] = (int8_t)r;
  }
  return (float)((double)amax / 127.0);
}

static void check_quantization(tester* t) {
  enum { HKV = 2, CAP = 40, D = 37 };
  int8_t* kq = tester_alloc(HKV * CAP * D);
  int8_t* vq = tester_alloc(HKV * CAP * D);
  float ks[HKV * CAP], vs[HKV * CAP];
  float* rows = tester_alloc(HKV * CAP * D * sizeof(float));
  tester_context(t, "quantization");
  for (int r = 0; r < HKV * CAP; r++) {
    float* x = rows + r * D;
    const float mag = r % 5 == 0 ? 1e-30f : r % 5 == 1 ? 3e30f : 1.0f;
    tester_fill_range(t, x, D, -mag, mag);
    if (r == 3) memset(x, 0, D * sizeof(float));                /* a zero row */
    if (r == 4) x[7] = NAN;                                     /* a NaN */
    if (r == 6) x[0] = -INFINITY;                               /* an infinity */
    if (r == 8) for (int i = 0; i < D; i++) x[i] = (float)(i - 18) * 0.5f; /* ties: k + 0.5 steps */
  }
  mha_kv_cache c;
  mha_kv_cache_init(&c, MHA_DTYPE_INT8, kq, vq, HKV, CAP, D, D);
  c.k_scales = ks;
  c.v_scales = vs;
  const int32_t pos0 = 0;
  const mha_strides s = mha_strides_bhtd(HKV, CAP, D);
  if (!check_ok(t, mha_kv_cache_write(&c, 1, HKV, CAP, D, D, &pos0, rows, s, rows, s), "write")) return;
  int exact = 1, in_range = 1, bounded = 1;
  for (int r = 0; r < HKV * CAP; r++) {
    int8_t ref[D];
    const float sc = quantize_ref(D, rows + r * D, ref);
    exact &= same_bits(ref, kq + r * D, D) && same_bits(&sc, &ks[r], sizeof sc) && same_bits(kq + r * D, vq + r * D, D);
    float amax = 0;
    for (int i = 0; i < D; i++) {
      in_range &= kq[r * D + i] >= -127;
      if (fabsf(rows[r * D + i]) > amax) amax = fabsf(rows[r * D + i]);
    }
    if (!isfinite(amax) || isnan(ks[r]) || r == 4 || r == 6) continue;
    for (int i = 0; i < D; i++) {
      const double err = fabs((double)((float)kq[r * D + i] * ks[r]) - (double)rows[r * D + i]);
      if (ks[r] >= 0x1p-126f) bounded &= err <= (double)amax * (1.0 / 254 + 0x1p-22);
    }
  }
  tester_check(t, exact, "bitwise the documented rule (q and scale)");
  tester_check(t, in_range, "q in [-127, 127]");
  tester_check(t, bounded, "|q·scale − x| <= amax·(1/254 + 2^-22)");
  int zero_ok = 1, nan_ok = 1;
  for (int i = 0; i < D; i++) zero_ok &= kq[3 * D + i] == 0 && kq[4 * D + i] == 0 && kq[6 * D + i] == 0;
  zero_ok &= ks[3] == 0.0f;
  nan_ok &= isnan(ks[4]) && isnan(ks[6]);
  tester_check(t, zero_ok, "a zero row: scale 0, q 0; a non-finite row: q 0");
  tester_check(t, nan_ok, "a row with a NaN or an infinity: scale NaN");
  free(kq), free(vq), free(rows);
}

/* ---- 3. reading ---- */

typedef struct i8_case {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len;
  const char* name;
} i8_case;

/* An int8 cache holding K/V [B, Hkv, Tk, D/Dv], written by the writer;
 * contiguous (bs 0) or paged in a shuffled pool; kd, vd the dequantized
 * values [B, Hkv, Tk, D / Dv]. */
typedef struct i8_cache {
  mha_kv_cache c;
  int8_t *k, *v;
  float *ks, *vs, *kd, *vd;
  int32_t* table;
} i8_cache;

static void make_cache(tester* t, const i8_case* cs, int64_t bs, const float* kx, const float* vx, i8_cache* out) {
  const int64_t B = cs->B, Hkv = cs->Hkv, Tk = cs->Tk, D = cs->D, Dv = cs->Dv;
  memset(out, 0, sizeof *out);
  int64_t n0, rows;
  if (bs == 0) {
    n0 = B;
    rows = Tk;
  } else {
    const int64_t mb = (Tk + bs - 1) / bs;
    n0 = B * mb + 2;
    rows = bs;
    out->table = tester_alloc((size_t)(B * mb) * sizeof(int32_t));
    int32_t* perm = tester_alloc((size_t)n0 * sizeof(int32_t));
    for (int64_t i = 0; i < n0; i++) perm[i] = (int32_t)i;
    for (int64_t i = n0 - 1; i > 0; i--) {
      const int64_t j = tester_below(t, i + 1);
      const int32_t x = perm[i];
      perm[i] = perm[j];
      perm[j] = x;
    }
    memcpy(out->table, perm, (size_t)(B * mb) * sizeof(int32_t));
    free(perm);
  }
  out->k = tester_alloc((size_t)(n0 * Hkv * rows * D));
  out->v = tester_alloc((size_t)(n0 * Hkv * rows * Dv));
  out->ks = tester_alloc((size_t)(n0 * Hkv * rows) * sizeof(float));
  out->vs = tester_alloc((size_t)(n0 * Hkv * rows) * sizeof(float));
  memset(out->k, 0x7f, (size_t)(n0 * Hkv * rows * D));
  memset(out->v, 0x7f, (size_t)(n0 * Hkv * rows * Dv));
  tester_poison(out->ks, (size_t)(n0 * Hkv * rows)); /* unwritten rows read NaN */
  tester_poison(out->vs, (size_t)(n0 * Hkv * rows));
  if (bs == 0) {
    mha_kv_cache_init(&out->c, MHA_DTYPE_INT8, out->k, out->v, Hkv, Tk, D, Dv);
  } else {
    mha_kv_cache_init_paged(&out->c, MHA_DTYPE_INT8, out->k, out->v, n0, bs, Hkv, D, Dv, out->table,
                            (Tk + bs - 1) / bs);
  }
  out->c.k_scales = out->ks;
  out->c.v_scales = out->vs;
  int32_t* pos = tester_alloc((size_t)B * sizeof(int32_t));
  memset(pos, 0, (size_t)B * sizeof(int32_t));
  (void)check_ok(t, mha_kv_cache_write(&out->c, B, Hkv, Tk, D, Dv, pos, kx, mha_strides_bhtd(Hkv, Tk, D), vx,
                                       mha_strides_bhtd(Hkv, Tk, Dv)),
                 "fill the int8 cache");
  free(pos);
  /* the dequantized values, from the stored bytes and scales */
  out->kd = tester_alloc((size_t)(B * Hkv * Tk * D) * sizeof(float));
  out->vd = tester_alloc((size_t)(B * Hkv * Tk * Dv) * sizeof(float));
  for (int64_t b = 0; b < B; b++) {
    for (int64_t g = 0; g < Hkv; g++) {
      for (int64_t j = 0; j < Tk; j++) {
        int64_t at; /* the row's index among the pool's [n0, Hkv, rows] */
        if (bs == 0) {
          at = (b * Hkv + g) * Tk + j;
        } else {
          const int64_t mb = (Tk + bs - 1) / bs;
          at = ((int64_t)out->table[b * mb + j / bs] * Hkv + g) * bs + j % bs;
        }
        const int64_t o = (b * Hkv + g) * Tk + j;
        for (int64_t x = 0; x < D; x++) out->kd[o * D + x] = (float)out->k[at * D + x] * out->ks[at];
        for (int64_t x = 0; x < Dv; x++) out->vd[o * Dv + x] = (float)out->v[at * Dv + x] * out->vs[at];
      }
    }
  }
}

static void free_cache(i8_cache* c) { free(c->k), free(c->v), free(c->ks), free(c->vs), free(c->kd), free(c->vd), free(c->table); }

static void run_case(tester* t, const i8_case* cs, const isa_list* isas) {
  const int64_t B = cs->B, H = cs->H, Hkv = cs->Hkv, Tq = cs->Tq, Tk = cs->Tk, D = cs->D, Dv = cs->Dv;
  float* q = tester_alloc((size_t)(B * H * Tq * D) * sizeof(float));
  float* kx = tester_alloc((size_t)(B * Hkv * Tk * D) * sizeof(float));
  float* vx = tester_alloc((size_t)(B * Hkv * Tk * Dv) * sizeof(float));
  tester_fill(t, q, (size_t)(B * H * Tq * D));
  tester_fill(t, kx, (size_t)(B * Hkv * Tk * D));
  tester_fill(t, vx, (size_t)(B * Hkv * Tk * Dv));
  int32_t* kv_len = tester_alloc((size_t)B * sizeof(int32_t));
  for (int64_t b = 0; b < B; b++) kv_len[b] = (int32_t)(b == 0 ? Tk : Tq + tester_below(t, Tk - Tq + 1));
  const size_t no = (size_t)(B * H * Tq * Dv), nl = (size_t)(B * H * Tq);
  float *o1 = tester_alloc(no * sizeof(float)), *o2 = tester_alloc(no * sizeof(float));
  float *l1 = tester_alloc(nl * sizeof(float)), *l2 = tester_alloc(nl * sizeof(float));
  static const int64_t layouts[] = {0, 16, 32};
  for (size_t li = 0; li < 3; li++) {
    i8_cache c;
    make_cache(t, cs, layouts[li], kx, vx, &c);
    mha_attention_desc d;
    mha_attention_desc_init(&d, B, H, Hkv, Tq, Tk, D, Dv);
    d.mask.causal = cs->causal;
    d.mask.kv_len = cs->kv_len ? kv_len : NULL;
    for (int ii = 0; ii < isas->count; ii++) {
      d.isa = isas->isa[ii];
      /* the fp32 core on the dequantized values: the reference bits */
      d.num_threads = 1;
      d.lse = l2;
      tester_poison(o2, no);
      tester_context(t, "%s, %s, isa %s", cs->name, layouts[li] ? "paged" : "contiguous", mha_isa_name(d.isa));
      if (!check_ok(t, mha_attention_f32(&d, q, c.kd, c.vd, o2, NULL), "fp32 core on the dequantized values")) continue;
      for (int threads = 1; threads <= 3; threads++) {
        tester_context(t, "%s, %s (block %lld), isa %s, %d threads", cs->name, layouts[li] ? "paged" : "contiguous",
                       (long long)layouts[li], mha_isa_name(d.isa), threads);
        d.num_threads = threads;
        d.lse = l1;
        tester_poison(o1, no);
        if (!check_ok(t, mha_attention_kv_f32(&d, q, &c.c, o1, NULL), "int8 cache call")) continue;
        tester_check(t, same_bits(o1, o2, no * sizeof(float)) && same_bits(l1, l2, nl * sizeof(float)),
                     "the int8 cache call = the fp32 core on the dequantized values (out and lse)");
      }
    }
    /* varlen over the cache: each sequence its own call's bits */
    if (li > 0 && cs->causal) {
      int32_t* cu = tester_alloc((size_t)(B + 1) * sizeof(int32_t));
      cu[0] = 0;
      for (int64_t b = 0; b < B; b++) cu[b + 1] = cu[b] + (int32_t)(b % 2 ? 1 : Tq);
      const int64_t tq = cu[B];
      float* qv = tester_alloc((size_t)(tq * H * D) * sizeof(float));
      float *ov = tester_alloc((size_t)(tq * H * Dv) * sizeof(float)), *oa = tester_alloc((size_t)(tq * H * Dv) * sizeof(float));
      tester_fill(t, qv, (size_t)(tq * H * D));
      mha_attention_desc v;
      mha_attention_desc_init(&v, B, H, Hkv, Tq, Tk, D, Dv);
      v.q = mha_strides_bthd(H, tq, D);
      v.out = mha_strides_bthd(H, tq, Dv);
      v.mask.causal = 1;
      v.num_threads = 2;
      tester_context(t, "%s, varlen over the paged int8 cache", cs->name);
      tester_poison(ov, (size_t)(tq * H * Dv));
      if (check_ok(t, mha_attention_varlen_kv_f32(&v, cu, kv_len, qv, &c.c, ov), "varlen")) {
        int ok = 1;
        for (int64_t b = 0; b < B; b++) {
          mha_attention_desc s = v;
          s.B = 1;
          s.Tq = cu[b + 1] - cu[b];
          s.Tk = kv_len[b];
          s.num_threads = 1;
          mha_kv_cache e = c.c;
          e.block_table += b * c.c.max_blocks;
          tester_poison(oa, (size_t)(tq * H * Dv));
          ok &= mha_attention_kv_f32(&s, qv + (int64_t)cu[b] * H * D, &e, oa, NULL) == MHA_STATUS_SUCCESS;
          ok &= same_bits(oa, ov + (int64_t)cu[b] * H * Dv, (size_t)(s.Tq * H * Dv) * sizeof(float));
        }
        tester_check(t, ok, "each sequence bitwise its own cache call");
      }
      free(cu), free(qv), free(ov), free(oa);
    }
    free_cache(&c);
  }
  free(q), free(kx), free(vx), free(kv_len), free(o1), free(o2), free(l1), free(l2);
}

/* The layer's cache output into an int8 cache: the bytes and scales that
 * mha_kv_cache_write stores from the projections the layer writes into an
 * fp32 cache (its exact K and V projections). */
static void check_layer_output(tester* t) {
  enum { B = 2, T = 9, DM = 24, H = 4, HKV = 2, D = 6 };
  float wq[DM * H * D], wk[DM * HKV * D], wv[DM * HKV * D], wo[H * D * DM], x[B * T * DM], out[B * T * DM];
  tester_fill(t, wq, sizeof wq / sizeof wq[0]);
  tester_fill(t, wk, sizeof wk / sizeof wk[0]);
  tester_fill(t, wv, sizeof wv / sizeof wv[0]);
  tester_fill(t, wo, sizeof wo / sizeof wo[0]);
  tester_fill(t, x, sizeof x / sizeof x[0]);
  mha_layer_desc ld;
  mha_layer_desc_init(&ld);
  ld.d_model = DM;
  ld.H = H;
  ld.Hkv = HKV;
  ld.w_q = wq;
  ld.w_k = wk;
  ld.w_v = wv;
  ld.w_o = wo;
  mha_layer* L = NULL;
  tester_context(t, "the layer's int8 cache output");
  if (!check_ok(t, mha_layer_create(&ld, &L), "mha_layer_create")) return;
  float k32[B * HKV * T * D], v32[B * HKV * T * D];
  int8_t k8[B * HKV * T * D], v8[B * HKV * T * D], k8w[B * HKV * T * D], v8w[B * HKV * T * D];
  float ks[B * HKV * T], vs[B * HKV * T], ksw[B * HKV * T], vsw[B * HKV * T];
  mha_kv_cache c32, c8, c8w;
  mha_kv_cache_init(&c32, MHA_DTYPE_F32, k32, v32, HKV, T, D, D);
  mha_kv_cache_init(&c8, MHA_DTYPE_INT8, k8, v8, HKV, T, D, D);
  mha_kv_cache_init(&c8w, MHA_DTYPE_INT8, k8w, v8w, HKV, T, D, D);
  c8.k_scales = ks;
  c8.v_scales = vs;
  c8w.k_scales = ksw;
  c8w.v_scales = vsw;
  mha_layer_args a;
  mha_layer_args_init(&a);
  a.B = B;
  a.Tq = a.Tk = T;
  a.x_q = x;
  a.out = out;
  a.kv_cache = &c32;
  int ok = mha_layer_forward(L, &a) == MHA_STATUS_SUCCESS;
  a.kv_cache = &c8;
  ok &= mha_layer_forward(L, &a) == MHA_STATUS_SUCCESS;
  const int32_t pos[B] = {0, 0};
  const mha_strides s = mha_strides_bhtd(HKV, T, D);
  ok &= mha_kv_cache_write(&c8w, B, HKV, T, D, D, pos, k32, s, v32, s) == MHA_STATUS_SUCCESS;
  tester_check(t, ok, "the calls succeed: %s", mha_last_error());
  tester_check(t, same_bits(k8, k8w, sizeof k8) && same_bits(v8, v8w, sizeof v8) && same_bits(ks, ksw, sizeof ks) &&
                      same_bits(vs, vsw, sizeof vs),
               "the layer's int8 cache = the writer on its fp32 projections (bytes and scales)");
  mha_layer_destroy(L);
}

/* ---- 4. errors ---- */

static void check_errors(tester* t) {
  enum { HKV = 1, CAP = 8, D = 4 };
  int8_t k[HKV * CAP * D], v[HKV * CAP * D];
  float ks[HKV * CAP], vs[HKV * CAP], q[D], out[D];
  tester_fill(t, q, D);
  mha_kv_cache c;
  mha_kv_cache_init(&c, MHA_DTYPE_INT8, k, v, HKV, CAP, D, D);
  mha_attention_desc d;
  mha_attention_desc_init(&d, 1, 1, 1, 1, CAP, D, D);
  tester_context(t, "errors");
  tester_poison(out, D);
  tester_stale_error();
  tester_check_failure(t, "NULL k_scales", mha_attention_kv_f32(&d, q, &c, out, NULL), MHA_STATUS_NULL_POINTER,
                       "k_scales");
  c.k_scales = ks;
  tester_stale_error();
  tester_check_failure(t, "NULL v_scales", mha_attention_kv_f32(&d, q, &c, out, NULL), MHA_STATUS_NULL_POINTER,
                       "v_scales");
  c.v_scales = vs;
  tester_stale_error();
  tester_check_failure(t, "out over k_scales", mha_attention_kv_f32(&d, q, &c, ks, NULL), MHA_STATUS_INVALID_STRIDE,
                       "k_scales");
  int ok = 1;
  for (int i = 0; i < D; i++) ok &= tester_is_poison(out[i]);
  tester_check(t, ok, "refused calls write nothing");
  /* a writer whose new rows overlap the scales */
  float rows[CAP * D];
  tester_fill(t, rows, CAP * D);
  const int32_t pos0 = 0;
  float* over = (float*)ks;
  tester_stale_error();
  tester_check_failure(t, "write: k_new over k_scales",
                       mha_kv_cache_write(&c, 1, HKV, 2, D, D, &pos0, over, mha_strides_bhtd(1, 2, D), rows,
                                          mha_strides_bhtd(1, 2, D)),
                       MHA_STATUS_INVALID_STRIDE, "k_scales");
}

int main(void) {
  tester t;
  tester_init(&t, "kv-int8-test");
  const isa_list isas = tester_available_isas(&t);
  check_dequant_kernels(&t, &isas);
  check_quantization(&t);
  /*                B  H  Hkv Tq  Tk   D   Dv causal kv_len */
  const i8_case cases[] = {
      {2, 8, 2, 1, 600, 64, 64, 0, 1, "decode GQA, keys split"},
      {2, 4, 4, 1, 130, 24, 40, 1, 0, "decode, D < Dv"},
      {2, 4, 2, 65, 200, 32, 16, 1, 1, "prefill GQA causal, kv_len, D > Dv"},
      {1, 3, 1, 7, 7, 200, 2, 1, 0, "prefill, D > 64·Dv (the K tile holds one row)"},
      {2, 2, 2, 1, 77, 200, 1, 0, 0, "decode, Dv 1, D 200"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&t, &cases[i], &isas);
  check_layer_output(&t);
  check_errors(&t);
  return tester_finish(&t);
}
