/*
 * K/V caches in 16 bits and paged (include/mha.h, "KV caches: 16-bit and
 * paged"): mha_attention_kv_f32, mha_attention_kv_workspace_size,
 * mha_kv_cache_init, mha_kv_cache_init_paged and mha_kv_cache_write.
 *
 *   1. Bits. K and V drawn in fp32 (never 0), rounded to f16, bf16 or kept
 *      fp32, are stored contiguous (mha_kv_cache_init), contiguous with
 *      other strides ([B, T, Hkv, D] with padded rows), paged in vLLM's
 *      [num_blocks, block_size, Hkv, D] pools with block sizes 16, 32, 64 and
 *      256, and paged in [num_blocks, Hkv, block_size, D] pools: the blocks in
 *      random order in a pool larger than needed (the rest NaN), table slots
 *      no key needs set to -1, and in some cases two entries sharing their
 *      first blocks (a common prefix). Every store, at 1, 2 and 3 threads,
 *      must give out, lse and weights (per head, head mean) bitwise equal to
 *      mha_attention_f32 on the widened values, on every ISA this CPU runs.
 *      desc's k and v strides are set to garbage for the cache calls (the
 *      header says they are not used). Outputs are poisoned before each run,
 *      with a guard past the end that must keep its poison.
 *   2. Batch invariance: entry b of a B = 3 paged call equals the B = 1 call
 *      on that entry alone (its table row, its kv_len), bitwise.
 *   3. Accuracy: the fp32 reference on the widened values against the naive
 *      oracle (variant-tolerance.c's derived bounds), and against the oracle
 *      on the fp32 K/V *before* rounding, with the rounding of K and V as
 *      input errors (derivation at check_unrounded).
 *   4. mha_kv_cache_write into contiguous and paged caches of each dtype:
 *      the rows read back as mha_f32_to_f16/bf16 of the inputs (the fp32
 *      bits), every other element keeps its sentinel, failing calls write
 *      nothing; then a decode loop that appends a token per step into a
 *      paged f16 cache (blocks given out as the entries reach them) and
 *      checks every step bitwise against mha_attention_f32 on a widened
 *      contiguous copy.
 *   5. Errors: one check per documented status of mha_attention_kv_f32 and
 *      mha_attention_kv_workspace_size; failing calls leave the outputs
 *      poisoned; a caller workspace of exactly the reported size works (at an
 *      odd address, same bits), one byte less fails.
 *   Also: the scalar conversions of kv-gemm/kv-convert.h that the checks
 *   rely on, exhaustively round-tripped and against the compiler's _Float16
 *   where it has one; and one corrupted cache element must change the output
 *   (the bitwise checks can fail).
 *
 * Run it with OMP_WAIT_POLICY=passive (CTest does): many small calls at up to
 * 3 threads on 2 shared cores otherwise spend their time spinning.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "mha.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"
#include "variant-tolerance.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Poisoned floats past the end of every output: must stay poison. */
#define GUARD 16

/* ------------------------------------------------------------------------ */
/* Element types                                                            */
/* ------------------------------------------------------------------------ */

static const mha_dtype kDtypes[] = {MHA_DTYPE_F16, MHA_DTYPE_BF16, MHA_DTYPE_F32};
#define NDTYPES 3

static const char* dtype_name(mha_dtype t) {
  switch (t) {
    case MHA_DTYPE_F16: return "f16";
    case MHA_DTYPE_BF16: return "bf16";
    case MHA_DTYPE_F32: return "f32";
    default: return "?";
  }
}

static size_t dtype_size(mha_dtype t) { return t == MHA_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t); }

/* The unit roundoff u of rounding to nearest into the type (2^-p for p
 * significand bits), and η, half its smallest subnormal: |fl(x) − x| <=
 * u·|x| + η for any x in range. */
static double dtype_u(mha_dtype t) { return t == MHA_DTYPE_F16 ? 0x1p-11 : t == MHA_DTYPE_BF16 ? 0x1p-8 : 0.0; }
static double dtype_eta(mha_dtype t) {
  return t == MHA_DTYPE_F16 ? 0x1p-25 : t == MHA_DTYPE_BF16 ? 0x1p-134 : 0.0;
}

/* x rounded to the type and widened back (exact both ways for fp32). */
static float round_to(mha_dtype t, float x) {
  switch (t) {
    case MHA_DTYPE_F16: return mha_f16_to_f32(mha_f32_to_f16(x));
    case MHA_DTYPE_BF16: return mha_bf16_to_f32(mha_f32_to_bf16(x));
    default: return x;
  }
}

/* base[at] ← x in the type (x representable: stored exactly). */
static void put_elem(void* base, mha_dtype t, int64_t at, float x) {
  if (t == MHA_DTYPE_F32)
    ((float*)base)[at] = x;
  else
    ((uint16_t*)base)[at] = t == MHA_DTYPE_F16 ? mha_f32_to_f16(x) : mha_f32_to_bf16(x);
}

/* Sentinels that no rounding of an fp32 value produces: signalling NaNs. */
#define F16_SENTINEL UINT16_C(0x7d5b)
#define BF16_SENTINEL UINT16_C(0x7f8b)

static void fill_sentinel(void* base, mha_dtype t, size_t n) {
  if (t == MHA_DTYPE_F32) {
    tester_poison(base, n);
    return;
  }
  uint16_t* h = base;
  for (size_t i = 0; i < n; i++) h[i] = t == MHA_DTYPE_F16 ? F16_SENTINEL : BF16_SENTINEL;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st), mha_last_error());
}

/* 1 while a case with NaN inputs runs: a NaN then matches any NaN (mha.h:
 * its sign and payload are not part of the guarantee). Otherwise a NaN must
 * have the same bits too (no input makes one; the poison is a NaN). */
static int g_nan_matches_nan;

/* got[0..n) and want[0..n) bit for bit. One check; prints up to three
 * differences as [row, col] with rows of `width` values. */
static int check_bits(tester* t, const char* what, const float* got, const float* want, size_t n,
                      size_t width) {
  size_t diff = 0;
  char shown[3][128];
  for (size_t i = 0; i < n; i++) {
    if (memcmp(&got[i], &want[i], sizeof(float)) == 0) continue;
    if (g_nan_matches_nan && isnan(got[i]) && isnan(want[i]) && !tester_is_poison(got[i])) continue;
    if (diff < 3) {
      snprintf(shown[diff], sizeof shown[diff], "[%zu, %zu] got %.9g (%08x) want %.9g (%08x)", i / width,
               i % width, (double)got[i], (unsigned)mha_f32_to_bits(got[i]), (double)want[i],
               (unsigned)mha_f32_to_bits(want[i]));
    }
    diff++;
  }
  return tester_check(t, diff == 0, "%s: %zu of %zu values differ: %s%s%s%s%s", what, diff, n,
                      diff > 0 ? shown[0] : "", diff > 1 ? "; " : "", diff > 1 ? shown[1] : "",
                      diff > 2 ? "; " : "", diff > 2 ? shown[2] : "");
}

/* 1 if x[0..n) all hold the poison. */
static int all_poison(const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!tester_is_poison(x[i])) return 0;
  }
  return 1;
}

/* 1 if no element of x[0..n) holds the poison (all written). */
static int none_poison(const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (tester_is_poison(x[i])) return 0;
  }
  return 1;
}

/* tester_check_close, returning the worst error/tolerance of this call in
 * *worst (kept as the max) without losing the run's overall worst. */
static int check_close(tester* t, const char* what, size_t n, const float* got, const double* want,
                       const double* tol, double* worst) {
  const double before = t->worst_ratio;
  t->worst_ratio = 0.0;
  const int ok = tester_check_close(t, what, n, got, want, tol);
  if (t->worst_ratio > *worst) *worst = t->worst_ratio;
  if (before > t->worst_ratio) t->worst_ratio = before;
  return ok;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

typedef struct stats {
  long isa_checks[MHA_ISA_COUNT]; /* checks made while running on each ISA */
  long isa_calls[MHA_ISA_COUNT]; /* mha_attention_kv_f32 calls per ISA */
  /* vs the oracle on the widened values: worst error/tolerance */
  double worst_widened[MHA_ISA_COUNT][NDTYPES];
  /* vs the oracle on the fp32 K/V before rounding */
  double max_err0[NDTYPES]; /* max |Δout| */
  double max_err0_lse[NDTYPES]; /* max |Δlse| */
  double worst0[NDTYPES]; /* worst |Δ| / per-element bound (out, lse, weights) */
  double global0[NDTYPES]; /* worst max|Δout| / the global bound */
  long mask_kinds[8]; /* cases per mask kind */
} stats;

static stats g_stats;

/* ------------------------------------------------------------------------ */
/* Cases                                                                    */
/* ------------------------------------------------------------------------ */

enum { M_CAUSAL = 1, M_WINDOW = 2, M_ALIBI = 4, M_SOFTCAP = 8, M_SINKS = 16, M_ADDITIVE = 32 };
static const char* const kMaskKinds[8] = {"none",  "causal",  "kv_len", "window",
                                          "alibi", "softcap", "sinks",  "additive"};

typedef struct kv_case {
  const char* name;
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  unsigned mask; /* M_* */
  int kvlen; /* 1: mask.kv_len (B = 3: Tk, random, 0; B = 1: random in [0, Tk]) */
  mha_align align;
  int weights; /* 0: none; 1: per head; 2: head mean */
  int prefix; /* entries 0 and 1 share their first min(Tk, 256) tokens, and blocks */
  int nonfinite; /* entry 0, K/V head 0: an inf in V and a NaN in K, visible to some rows only */
} kv_case;

#define BR MHA_ALIGN_BOTTOM_RIGHT
#define KVE MHA_ALIGN_KV_END

/* decode (Tq 1 and 4, Tk 1 .. 1100), prefill (Tq = Tk 65, 130) and cross
 * attention (33 queries, 300 keys); D 1, 7, 64, 128, and Dv != D; every
 * mask kind. */
static const kv_case kCases[] = {
    {"decode", 1, 8, 2, 1, 1, 64, 64, 0, 0, BR, 0, 0, 0},
    {"decode causal", 3, 8, 8, 1, 7, 7, 7, M_CAUSAL, 1, BR, 1, 0, 0},
    {"decode window", 1, 8, 2, 4, 63, 128, 128, M_WINDOW, 0, BR, 2, 0, 0},
    {"decode alibi prefix", 3, 8, 2, 4, 65, 1, 1, M_ALIBI, 1, KVE, 0, 1, 0},
    {"decode softcap", 1, 8, 8, 1, 200, 64, 64, M_SOFTCAP, 0, BR, 1, 0, 0},
    {"decode sinks prefix", 3, 8, 2, 1, 1100, 64, 64, M_SINKS, 1, BR, 2, 1, 0},
    {"decode causal additive", 1, 8, 2, 4, 1100, 128, 128, M_CAUSAL | M_ADDITIVE, 0, BR, 1, 0, 0},
    {"decode additive alibi Dv != D", 3, 8, 8, 4, 200, 7, 5, M_ADDITIVE | M_ALIBI, 1, BR, 0, 0, 0},
    {"decode kv_len", 1, 8, 2, 1, 65, 1, 1, 0, 1, BR, 1, 0, 0},
    {"decode causal window softcap sinks prefix", 3, 8, 2, 4, 63, 64, 64,
     M_CAUSAL | M_WINDOW | M_SOFTCAP | M_SINKS, 1, KVE, 1, 1, 0},
    {"decode sinks alibi", 1, 8, 8, 4, 7, 128, 128, M_SINKS | M_ALIBI, 0, BR, 2, 0, 0},
    {"decode window prefix", 3, 8, 2, 1, 200, 128, 128, M_WINDOW, 1, BR, 1, 1, 0},
    {"decode Tk 1 causal", 3, 8, 2, 4, 1, 7, 7, M_CAUSAL, 1, KVE, 2, 0, 0},
    {"prefill causal", 1, 8, 2, 65, 65, 128, 128, M_CAUSAL, 0, BR, 1, 0, 0},
    {"prefill additive softcap prefix", 3, 8, 8, 65, 65, 7, 7, M_ADDITIVE | M_SOFTCAP, 1, BR, 2, 1, 0},
    {"prefill causal alibi sinks", 1, 8, 2, 130, 130, 64, 64, M_CAUSAL | M_ALIBI | M_SINKS, 0, BR, 2, 0, 0},
    {"prefill causal softcap", 3, 8, 2, 130, 130, 7, 7, M_CAUSAL | M_SOFTCAP, 1, KVE, 1, 0, 0},
    {"cross window sinks prefix Dv != D", 3, 8, 2, 33, 300, 64, 48, M_WINDOW | M_SINKS, 1, BR, 1, 1, 0},
    {"cross additive Dv != D", 1, 8, 8, 33, 300, 1, 7, M_ADDITIVE, 1, BR, 0, 0, 0},
    /* non-finite K/V rows that the mask hides from some rows of an item:
     * the "careful" P·V (a 16-bit or paged V widened into the tile) */
    {"prefill causal, inf in V, NaN in K", 3, 8, 2, 65, 65, 64, 64, M_CAUSAL, 1, BR, 1, 0, 1},
    {"decode causal, inf in V, NaN in K", 3, 8, 2, 4, 200, 7, 7, M_CAUSAL, 1, BR, 2, 0, 1},
};

/* The mask kinds of a case (indices into kMaskKinds), as a bit set. */
static unsigned mask_kinds_of(const kv_case* c) {
  unsigned k = 0;
  if (c->mask == 0 && !c->kvlen) k |= 1u << 0;
  if (c->mask & M_CAUSAL) k |= 1u << 1;
  if (c->kvlen) k |= 1u << 2;
  if (c->mask & M_WINDOW) k |= 1u << 3;
  if (c->mask & M_ALIBI) k |= 1u << 4;
  if (c->mask & M_SOFTCAP) k |= 1u << 5;
  if (c->mask & M_SINKS) k |= 1u << 6;
  if (c->mask & M_ADDITIVE) k |= 1u << 7;
  return k;
}

/* One case's inputs: fp32 Q, K and V (K and V before rounding), the masks. */
typedef struct kv_problem {
  const kv_case* c;
  mha_attention_desc desc; /* contiguous q, k, v, out; the masks; lse set per call */
  float *q, *k0, *v0; /* [B, H, Tq, D], [B, Hkv, Tk, D], [B, Hkv, Tk, Dv] */
  int32_t* kv_len;
  float *additive, *slopes, *sinks;
  size_t nq, nk, nv, n_out, n_w, n_lse;
  double* qd; /* q widened, for the oracle */
} kv_problem;

static double* widen_floats(const float* x, size_t n) {
  double* d = tester_alloc((n > 0 ? n : 1) * sizeof(double));
  for (size_t i = 0; i < n; i++) d[i] = (double)x[i];
  return d;
}

static void problem_build(tester* t, const kv_case* c, kv_problem* p) {
  memset(p, 0, sizeof *p);
  p->c = c;
  const int64_t B = c->B, H = c->H, Hkv = c->Hkv, Tq = c->Tq, Tk = c->Tk, D = c->D, Dv = c->Dv;
  mha_attention_desc* d = &p->desc;
  mha_attention_desc_init(d, B, H, Hkv, Tq, Tk, D, Dv);
  p->nq = (size_t)(B * H * Tq * D);
  p->nk = (size_t)(B * Hkv * Tk * D);
  p->nv = (size_t)(B * Hkv * Tk * Dv);
  p->n_out = (size_t)(B * H * Tq * Dv);
  p->n_w = (size_t)(B * (c->weights == 2 ? 1 : H) * Tq * Tk);
  p->n_lse = (size_t)(B * H * Tq);
  p->q = tester_alloc(p->nq * sizeof(float));
  p->k0 = tester_alloc(p->nk * sizeof(float));
  p->v0 = tester_alloc(p->nv * sizeof(float));
  tester_fill(t, p->q, p->nq);
  tester_fill(t, p->k0, p->nk);
  tester_fill(t, p->v0, p->nv);
  /* never 0, even rounded to f16 (|x| <= 2^-25 would be) */
  for (size_t i = 0; i < p->nk; i++) {
    if (round_to(MHA_DTYPE_F16, p->k0[i]) == 0.0f) p->k0[i] = 0.5f;
  }
  for (size_t i = 0; i < p->nv; i++) {
    if (round_to(MHA_DTYPE_F16, p->v0[i]) == 0.0f) p->v0[i] = -0.5f;
  }
  if (c->prefix && B > 1) {
    /* entry 1 starts with entry 0's first P tokens: a common prompt */
    const int64_t P = Tk < 256 ? Tk : 256;
    for (int64_t g = 0; g < Hkv; g++) {
      memcpy(p->k0 + (Hkv + g) * Tk * D, p->k0 + g * Tk * D, (size_t)(P * D) * sizeof(float));
      memcpy(p->v0 + (Hkv + g) * Tk * Dv, p->v0 + g * Tk * Dv, (size_t)(P * Dv) * sizeof(float));
    }
  }
  if (c->nonfinite) {
    /* causal: prefill V[Tk/2] = inf, K[2Tk/3] = NaN, so the rows before
     * Tk/2 see neither, those up to 2Tk/3 the inf, the rest the NaN; decode
     * (Tq = 4) V[Tk-2] = inf for the last two rows, K[Tk-1] = NaN for the
     * last one */
    const int64_t jv = Tq > 8 ? Tk / 2 : Tk - 2, jk = Tq > 8 ? Tk * 2 / 3 : Tk - 1;
    p->v0[jv * Dv] = INFINITY;
    p->k0[jk * D] = NAN;
  }
  mha_mask* m = &d->mask;
  m->causal = (c->mask & M_CAUSAL) != 0;
  m->align = c->align;
  if (c->kvlen) {
    p->kv_len = tester_alloc((size_t)B * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) p->kv_len[b] = (int32_t)tester_below(t, Tk + 1);
    if (B > 1) {
      p->kv_len[0] = (int32_t)Tk;
      p->kv_len[B - 1] = 0;
      /* the middle entry long enough to read some shared blocks */
      if (c->prefix && Tk > 40) p->kv_len[1] = (int32_t)(Tk / 2 + tester_below(t, Tk / 2 + 1));
    }
    m->kv_len = p->kv_len;
  }
  if (c->mask & M_WINDOW) {
    m->window = 1;
    m->window_left = 1 + tester_below(t, Tk / 2 + 1);
    m->window_right = m->causal ? 0 : tester_below(t, 4);
  }
  if (c->mask & M_ALIBI) {
    p->slopes = tester_alloc((size_t)H * sizeof(float));
    for (int64_t h = 0; h < H; h++) p->slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)H);
    m->alibi_slopes = p->slopes;
  }
  if (c->mask & M_SOFTCAP) m->softcap = 0.75f; /* the logits reach ±1: tanh bends them */
  if (c->mask & M_SINKS) {
    p->sinks = tester_alloc((size_t)H * sizeof(float));
    for (int64_t h = 0; h < H; h++) p->sinks[h] = (float)tester_uniform(t, -3.0, 3.0);
    m->sinks = p->sinks;
  }
  if (c->mask & M_ADDITIVE) {
    const size_t n = (size_t)(B * H * Tq * Tk);
    p->additive = tester_alloc(n * sizeof(float));
    tester_fill_range(t, p->additive, n, -3.0f, 3.0f);
    for (size_t i = 0; i < n; i++) {
      if (tester_below(t, 100) < 15) p->additive[i] = -INFINITY;
    }
    m->additive = p->additive;
    m->additive_strides = (mha_strides){H * Tq * Tk, Tq * Tk, Tk};
  }
  d->weights_mode = c->weights == 2 ? MHA_WEIGHTS_HEAD_MEAN : MHA_WEIGHTS_PER_HEAD;
  p->qd = widen_floats(p->q, p->nq);
}

static void problem_free(kv_problem* p) {
  free(p->q);
  free(p->k0);
  free(p->v0);
  free(p->kv_len);
  free(p->additive);
  free(p->slopes);
  free(p->sinks);
  free(p->qd);
  memset(p, 0, sizeof *p);
}

/* The oracle's problem over K and V (double, contiguous). */
static oracle_attention_problem oracle_of(const kv_problem* p, const double* k, const double* v) {
  const kv_case* c = p->c;
  const mha_mask* m = &p->desc.mask;
  oracle_attention_problem o;
  memset(&o, 0, sizeof o);
  o.B = c->B, o.H = c->H, o.Hkv = c->Hkv, o.Tq = c->Tq, o.Tk = c->Tk, o.D = c->D, o.Dv = c->Dv;
  o.q = p->qd, o.k = k, o.v = v;
  o.q_strides = (oracle_strides){c->H * c->Tq * c->D, c->Tq * c->D, c->D};
  o.k_strides = (oracle_strides){c->Hkv * c->Tk * c->D, c->Tk * c->D, c->D};
  o.v_strides = (oracle_strides){c->Hkv * c->Tk * c->Dv, c->Tk * c->Dv, c->Dv};
  o.scale = 1.0 / sqrt((double)c->D);
  o.causal = m->causal;
  o.kv_len = m->kv_len;
  o.additive = m->additive;
  o.additive_strides =
      (oracle_strides){m->additive_strides.batch, m->additive_strides.head, m->additive_strides.row};
  o.var.align = (int)m->align;
  o.var.offset = m->offset;
  o.var.window = m->window;
  o.var.window_left = m->window_left;
  o.var.window_right = m->window_right;
  o.var.alibi_slopes = m->alibi_slopes;
  o.var.softcap = (double)m->softcap;
  o.var.sinks = m->sinks;
  return o;
}

/* ------------------------------------------------------------------------ */
/* One dtype: rounded values, the oracle's answers                          */
/* ------------------------------------------------------------------------ */

typedef struct kv_rounded {
  mha_dtype dt;
  float *kw, *vw; /* K, V rounded to dt and widened: what the fp32 reference reads */
  double *kwd, *vwd;
  double *k0d, *v0d; /* the values before rounding */
  double *ek, *ev; /* bounds on the rounding errors, u·|x| + η */
} kv_rounded;

static void rounded_build(const kv_problem* p, mha_dtype dt, kv_rounded* r) {
  memset(r, 0, sizeof *r);
  r->dt = dt;
  r->kw = tester_alloc(p->nk * sizeof(float));
  r->vw = tester_alloc(p->nv * sizeof(float));
  for (size_t i = 0; i < p->nk; i++) r->kw[i] = round_to(dt, p->k0[i]);
  for (size_t i = 0; i < p->nv; i++) r->vw[i] = round_to(dt, p->v0[i]);
  r->kwd = widen_floats(r->kw, p->nk);
  r->vwd = widen_floats(r->vw, p->nv);
  r->k0d = widen_floats(p->k0, p->nk);
  r->v0d = widen_floats(p->v0, p->nv);
  r->ek = tester_alloc(p->nk * sizeof(double));
  r->ev = tester_alloc(p->nv * sizeof(double));
  const double u = dtype_u(dt), eta = dtype_eta(dt);
  for (size_t i = 0; i < p->nk; i++) r->ek[i] = u * fabs(r->k0d[i]) + eta;
  for (size_t i = 0; i < p->nv; i++) r->ev[i] = u * fabs(r->v0d[i]) + eta;
}

static void rounded_free(kv_rounded* r) {
  free(r->kw);
  free(r->vw);
  free(r->kwd);
  free(r->vwd);
  free(r->k0d);
  free(r->v0d);
  free(r->ek);
  free(r->ev);
  memset(r, 0, sizeof *r);
}

/* The oracle's out, weights (per head, NULL unless the case asks for them)
 * and lse, with their tolerances. */
typedef variant_expected expected;

static expected expect(const kv_problem* p, const oracle_attention_problem* o,
                       const tolerance_input_errors* err) {
  const size_t nw = (size_t)(p->c->B * p->c->H * p->c->Tq * p->c->Tk);
  return variant_expected_compute(o, err, p->n_out, p->c->weights == 1 ? nw : 0, p->n_lse);
}

/* ------------------------------------------------------------------------ */
/* Stores: the same K/V values in each layout a cache can have              */
/* ------------------------------------------------------------------------ */

/* ST_PAGED: mha_kv_cache_init_paged's head-major [n, Hkv, bs, D] blocks;
 * ST_PAGED_BTHD: token-major [n, bs, Hkv, D] (vLLM's GPU layout) by strides */
typedef enum store_kind { ST_CONTIG, ST_STRIDED, ST_PAGED, ST_PAGED_BTHD } store_kind;

typedef struct store_spec {
  store_kind kind;
  int64_t bs; /* paged: block size */
} store_spec;

typedef struct kv_store {
  store_spec spec;
  mha_kv_cache cache;
  void *k, *v; /* the buffers or pools */
  int32_t* table; /* paged: [B, max_blocks] */
  size_t k_n, v_n; /* elements */
  char name[64];
} kv_store;

/* A random permutation of [0, n). */
static int32_t* permutation(tester* t, int64_t n) {
  int32_t* p = tester_alloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
  for (int64_t i = 0; i < n; i++) p[i] = (int32_t)i;
  for (int64_t i = n - 1; i > 0; i--) {
    const int64_t j = tester_below(t, i + 1);
    const int32_t x = p[i];
    p[i] = p[j];
    p[j] = x;
  }
  return p;
}

/* The element offset of token t of (b, g) through the cache's strides and
 * table, as the header defines it. */
static int64_t cache_at(const mha_kv_cache* c, const mha_strides* s, int64_t b, int64_t g, int64_t t) {
  if (c->block_size == 0) return b * s->batch + g * s->head + t * s->row;
  const int64_t blk = c->block_table[b * c->max_blocks + t / c->block_size];
  return blk * s->batch + g * s->head + (t % c->block_size) * s->row;
}

static int same_strides(mha_strides a, mha_strides b) {
  return a.batch == b.batch && a.head == b.head && a.row == b.row;
}

/* Builds the store of r's values: rows no key needs, padding and unused
 * blocks hold NaN; kv_len (or NULL) says which tokens each entry needs. */
static void store_build(tester* t, kv_store* s, store_spec spec, const kv_problem* p, const kv_rounded* r) {
  const kv_case* c = p->c;
  const int64_t B = c->B, Hkv = c->Hkv, Tk = c->Tk, D = c->D, Dv = c->Dv;
  const mha_dtype dt = r->dt;
  memset(s, 0, sizeof *s);
  s->spec = spec;
  mha_kv_cache* kc = &s->cache;
  if (spec.kind == ST_CONTIG || spec.kind == ST_STRIDED) {
    const int64_t cap = Tk + 2 + (spec.kind == ST_STRIDED); /* rows past Tk: NaN */
    mha_strides ks, vs;
    if (spec.kind == ST_CONTIG) {
      ks = (mha_strides){Hkv * cap * D, cap * D, D};
      vs = (mha_strides){Hkv * cap * Dv, cap * Dv, Dv};
      snprintf(s->name, sizeof s->name, "contiguous cap %lld", (long long)cap);
    } else {
      /* [B, cap, Hkv, D] with 3 elements after each token and 5 after each entry */
      ks = (mha_strides){cap * (Hkv * D + 3) + 5, D, Hkv * D + 3};
      vs = (mha_strides){cap * (Hkv * Dv + 3) + 5, Dv, Hkv * Dv + 3};
      snprintf(s->name, sizeof s->name, "contiguous [B,T,Hkv,D]+pad cap %lld", (long long)cap);
    }
    s->k_n = (size_t)((B - 1) * ks.batch + (Hkv - 1) * ks.head + (cap - 1) * ks.row + D);
    s->v_n = (size_t)((B - 1) * vs.batch + (Hkv - 1) * vs.head + (cap - 1) * vs.row + Dv);
    s->k = tester_alloc(s->k_n * dtype_size(dt));
    s->v = tester_alloc(s->v_n * dtype_size(dt));
    fill_sentinel(s->k, dt, s->k_n);
    fill_sentinel(s->v, dt, s->v_n);
    mha_kv_cache_init(kc, dt, s->k, s->v, Hkv, cap, D, Dv);
    if (spec.kind == ST_CONTIG) {
      tester_check(t,
                   kc->dtype == dt && kc->k == s->k && kc->v == s->v && same_strides(kc->k_strides, ks) &&
                       same_strides(kc->v_strides, vs) && kc->capacity == cap && kc->block_size == 0 &&
                       kc->block_table == NULL,
                   "mha_kv_cache_init: fields not as documented ([B, Hkv, capacity, D])");
    }
    kc->k_strides = ks;
    kc->v_strides = vs;
  } else {
    const int64_t bs = spec.bs;
    const int64_t max_blocks = (Tk + bs - 1) / bs + 1; /* the last column is never used: -1 */
    /* the blocks each entry needs: its kv_len (the table slots past it stay -1) */
    int64_t needed = 0, shared = 0;
    int64_t* used = tester_alloc((size_t)B * sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) {
      const int64_t len = p->kv_len != NULL ? p->kv_len[b] : Tk;
      used[b] = (len + bs - 1) / bs;
      needed += used[b];
    }
    if (c->prefix && B > 1) {
      /* entry 1 shares entry 0's full blocks of the common prompt */
      const int64_t P = Tk < 256 ? Tk : 256;
      shared = P / bs;
      if (shared > used[1]) shared = used[1];
      if (shared > used[0]) shared = used[0];
      needed -= shared;
    }
    const int64_t num_blocks = needed + 3;
    int32_t* perm = permutation(t, num_blocks);
    s->table = tester_alloc((size_t)(B * max_blocks) * sizeof(int32_t));
    for (int64_t i = 0; i < B * max_blocks; i++) s->table[i] = -1;
    int64_t next = 0;
    for (int64_t b = 0; b < B; b++) {
      for (int64_t j = 0; j < used[b]; j++) {
        s->table[b * max_blocks + j] = b == 1 && j < shared ? s->table[j] : perm[next++];
      }
    }
    free(perm);
    free(used);
    s->k_n = (size_t)(num_blocks * bs * Hkv * D);
    s->v_n = (size_t)(num_blocks * bs * Hkv * Dv);
    s->k = tester_alloc(s->k_n * dtype_size(dt));
    s->v = tester_alloc(s->v_n * dtype_size(dt));
    fill_sentinel(s->k, dt, s->k_n);
    fill_sentinel(s->v, dt, s->v_n);
    mha_kv_cache_init_paged(kc, dt, s->k, s->v, num_blocks, bs, Hkv, D, Dv, s->table, max_blocks);
    tester_check(t,
                 kc->dtype == dt && kc->k == s->k && kc->v == s->v &&
                     same_strides(kc->k_strides, (mha_strides){Hkv * bs * D, bs * D, D}) &&
                     same_strides(kc->v_strides, (mha_strides){Hkv * bs * Dv, bs * Dv, Dv}) &&
                     kc->block_size == bs && kc->num_blocks == num_blocks && kc->block_table == s->table &&
                     kc->max_blocks == max_blocks,
                 "mha_kv_cache_init_paged: fields not as documented ([num_blocks, Hkv, block_size, D])");
    if (spec.kind == ST_PAGED_BTHD) {
      kc->k_strides = mha_strides_bthd(Hkv, bs, D);
      kc->v_strides = mha_strides_bthd(Hkv, bs, Dv);
      tester_check(t, same_strides(kc->k_strides, (mha_strides){bs * Hkv * D, D, Hkv * D}),
                   "mha_strides_bthd(Hkv, block_size, D) is not [num_blocks, block_size, Hkv, D]");
    }
    snprintf(s->name, sizeof s->name, "paged %s bs %lld (%lld blocks, %lld shared)",
             spec.kind == ST_PAGED ? "[n,Hkv,bs,D]" : "[n,bs,Hkv,D]", (long long)bs, (long long)num_blocks,
             (long long)shared);
  }
  /* the values: every token an entry's blocks (or rows) hold */
  for (int64_t b = 0; b < B; b++) {
    int64_t rows = Tk;
    if (kc->block_size != 0) {
      rows = 0;
      while (rows < Tk && kc->block_table[b * kc->max_blocks + rows / kc->block_size] >= 0) rows++;
    }
    for (int64_t g = 0; g < Hkv; g++) {
      for (int64_t j = 0; j < rows; j++) {
        const int64_t ak = cache_at(kc, &kc->k_strides, b, g, j), av = cache_at(kc, &kc->v_strides, b, g, j);
        const float* kr = r->kw + ((b * Hkv + g) * Tk + j) * D;
        const float* vr = r->vw + ((b * Hkv + g) * Tk + j) * Dv;
        for (int64_t e = 0; e < D; e++) put_elem(s->k, dt, ak + e, kr[e]);
        for (int64_t e = 0; e < Dv; e++) put_elem(s->v, dt, av + e, vr[e]);
      }
    }
  }
}

static void store_free(kv_store* s) {
  free(s->k);
  free(s->v);
  free(s->table);
  memset(s, 0, sizeof *s);
}

/* The stores every case runs: contiguous, strided, paged at each block size,
 * and the [n, Hkv, bs, D] pools at a block size that changes with the case. */
static const int64_t kBlockSizes[] = {16, 32, 64, 256};
#define NSTORES 7

static store_spec store_spec_of(int si, int ci) {
  switch (si) {
    case 0: return (store_spec){ST_CONTIG, 0};
    case 1: return (store_spec){ST_STRIDED, 0};
    case 6: return (store_spec){ST_PAGED_BTHD, kBlockSizes[ci % 4]};
    default: return (store_spec){ST_PAGED, kBlockSizes[si - 2]};
  }
}

/* ------------------------------------------------------------------------ */
/* Running a case                                                           */
/* ------------------------------------------------------------------------ */

/* Output buffers of one call, each GUARD floats longer than its view. */
typedef struct outputs {
  float *out, *w, *lse;
} outputs;

static outputs outputs_alloc(const kv_problem* p) {
  outputs o;
  o.out = tester_alloc((p->n_out + GUARD) * sizeof(float));
  o.w = p->c->weights ? tester_alloc((p->n_w + GUARD) * sizeof(float)) : NULL;
  o.lse = tester_alloc((p->n_lse + GUARD) * sizeof(float));
  return o;
}

static void outputs_free(outputs* o) {
  free(o->out);
  free(o->w);
  free(o->lse);
}

static void outputs_poison(const kv_problem* p, outputs* o) {
  tester_poison(o->out, p->n_out + GUARD);
  if (o->w != NULL) tester_poison(o->w, p->n_w + GUARD);
  tester_poison(o->lse, p->n_lse + GUARD);
}

/* 1 if no output was touched (all poison, guards included). */
static int outputs_untouched(const kv_problem* p, const outputs* o) {
  return all_poison(o->out, p->n_out + GUARD) && (o->w == NULL || all_poison(o->w, p->n_w + GUARD)) &&
         all_poison(o->lse, p->n_lse + GUARD);
}

/* The desc of a cache call: k and v strides that would fail the core's
 * checks, to show that they are not read. */
static mha_attention_desc cache_desc(const kv_problem* p, mha_isa isa, int threads, float* lse) {
  mha_attention_desc d = p->desc;
  d.isa = isa;
  d.num_threads = threads;
  d.lse = lse;
  d.k = (mha_strides){-1, -1, -1};
  d.v = (mha_strides){-7, -7, -7};
  return d;
}

/* out, lse, weights of a call against the reference, bitwise; guards kept. */
static void compare_outputs(tester* t, const kv_problem* p, const outputs* got, const outputs* ref,
                            const char* what) {
  char label[160];
  snprintf(label, sizeof label, "%s: out", what);
  check_bits(t, label, got->out, ref->out, p->n_out, (size_t)p->c->Dv);
  snprintf(label, sizeof label, "%s: lse", what);
  check_bits(t, label, got->lse, ref->lse, p->n_lse, (size_t)p->c->Tq);
  if (ref->w != NULL) {
    snprintf(label, sizeof label, "%s: weights (%s)", what, p->c->weights == 2 ? "head mean" : "per head");
    check_bits(t, label, got->w, ref->w, p->n_w, (size_t)p->c->Tk);
  }
  tester_check(t,
               all_poison(got->out + p->n_out, GUARD) && all_poison(got->lse + p->n_lse, GUARD) &&
                   (got->w == NULL || all_poison(got->w + p->n_w, GUARD)),
               "%s: wrote past the end of out, lse or weights", what);
}

/* One cache call against the reference. */
static void run_store(tester* t, const kv_problem* p, const kv_store* s, mha_isa isa, int threads,
                      const outputs* ref, outputs* o) {
  mha_attention_desc d = cache_desc(p, isa, threads, o->lse);
  outputs_poison(p, o);
  g_stats.isa_calls[isa]++;
  if (!check_ok(t, mha_attention_kv_f32(&d, p->q, &s->cache, o->out, o->w), "mha_attention_kv_f32")) return;
  char what[160];
  snprintf(what, sizeof what, "%s at %d threads vs mha_attention_f32", s->name, threads);
  compare_outputs(t, p, o, ref, what);
}

/* A caller workspace of exactly mha_attention_kv_workspace_size() bytes, at
 * an odd address: the same bits; one byte less: INVALID_ARGUMENT, nothing
 * written. The size is the core's for desc. */
static void check_workspace(tester* t, const kv_problem* p, const kv_store* s, mha_isa isa, int threads,
                            const outputs* ref, outputs* o) {
  mha_attention_desc d = cache_desc(p, isa, threads, o->lse);
  mha_attention_desc core = p->desc;
  core.isa = isa;
  core.num_threads = threads;
  core.lse = o->lse;
  size_t bytes = 0, core_bytes = 0;
  if (!check_ok(t, mha_attention_kv_workspace_size(&d, &s->cache, o->w != NULL, &bytes), "kv workspace size") ||
      !check_ok(t, mha_attention_workspace_size(&core, o->w != NULL, &core_bytes), "core workspace size")) {
    return;
  }
  tester_check(t, bytes == core_bytes && bytes > 0,
               "mha_attention_kv_workspace_size = %zu, mha_attention_workspace_size = %zu (%s)", bytes,
               core_bytes, s->name);
  char* raw = tester_alloc(bytes + 3);
  d.workspace = raw + 3;
  d.workspace_size = bytes;
  outputs_poison(p, o);
  if (check_ok(t, mha_attention_kv_f32(&d, p->q, &s->cache, o->out, o->w), "with a workspace")) {
    char what[160];
    snprintf(what, sizeof what, "%s with a caller workspace", s->name);
    compare_outputs(t, p, o, ref, what);
  }
  d.workspace_size = bytes - 1;
  outputs_poison(p, o);
  tester_stale_error();
  tester_check_failure(t, "workspace one byte short", mha_attention_kv_f32(&d, p->q, &s->cache, o->out, o->w),
                       MHA_STATUS_INVALID_ARGUMENT, "workspace_size");
  tester_check(t, outputs_untouched(p, o), "a call with a short workspace wrote its outputs");
  free(raw);
}

/* Entry b of the B = 3 call, alone: B = 1, its table row, kv_len, additive
 * slice and queries; bitwise the batch's rows. */
static void check_batch_invariance(tester* t, const kv_problem* p, const kv_store* s, mha_isa isa,
                                   const outputs* ref) {
  const kv_case* c = p->c;
  const size_t e_out = (size_t)(c->H * c->Tq * c->Dv), e_lse = (size_t)(c->H * c->Tq);
  const size_t e_w = p->n_w / (size_t)c->B;
  float* out = tester_alloc((e_out + GUARD) * sizeof(float));
  float* lse = tester_alloc((e_lse + GUARD) * sizeof(float));
  float* w = ref->w != NULL ? tester_alloc((e_w + GUARD) * sizeof(float)) : NULL;
  for (int64_t b = 0; b < c->B; b++) {
    mha_attention_desc d = cache_desc(p, isa, 2, lse);
    d.B = 1;
    if (d.mask.kv_len != NULL) d.mask.kv_len += b;
    if (d.mask.additive != NULL) d.mask.additive += b * d.mask.additive_strides.batch;
    mha_kv_cache one = s->cache;
    one.block_table = s->table + b * s->cache.max_blocks;
    tester_poison(out, e_out + GUARD);
    tester_poison(lse, e_lse + GUARD);
    if (w != NULL) tester_poison(w, e_w + GUARD);
    g_stats.isa_calls[isa]++;
    if (!check_ok(t, mha_attention_kv_f32(&d, p->q + (size_t)b * (size_t)(c->H * c->Tq * c->D), &one, out, w),
                  "entry alone")) {
      continue;
    }
    char what[160];
    snprintf(what, sizeof what, "%s: entry %lld alone vs in the batch: out", s->name, (long long)b);
    check_bits(t, what, out, ref->out + (size_t)b * e_out, e_out, (size_t)c->Dv);
    snprintf(what, sizeof what, "%s: entry %lld alone vs in the batch: lse", s->name, (long long)b);
    check_bits(t, what, lse, ref->lse + (size_t)b * e_lse, e_lse, (size_t)c->Tq);
    if (w != NULL) {
      snprintf(what, sizeof what, "%s: entry %lld alone vs in the batch: weights", s->name, (long long)b);
      check_bits(t, what, w, ref->w + (size_t)b * e_w, e_w, (size_t)c->Tk);
    }
    tester_check(t, all_poison(out + e_out, GUARD) && all_poison(lse + e_lse, GUARD),
                 "entry alone wrote past its end");
  }
  free(out);
  free(lse);
  free(w);
}

/* Accuracy against the fp32 K/V before rounding.
 *
 * Rounding x to the type changes it by |δx| <= u·|x| + η (u = 2^-11 for
 * f16, 2^-8 for bf16, 0 for fp32; η half the smallest subnormal). Through
 * the attention of row i:
 *   - the logits: s_j = scale·q·k_j moves by |Δs_j| <= scale·Σ_d |q_d|·δk_jd
 *     (the soft-cap is 1-Lipschitz, ALiBi and the additive mask do not
 *     depend on K);
 *   - the weights: logits each moved by at most Δs give p'_j = p_j·e^{Δ_j} /
 *     Σ_n p_n·e^{Δ_n} with |Δ| <= Δs, so |p'_j − p_j| <= p_j·expm1(2·Δs)
 *     (a sink's logit does not move: the bound holds with it);
 *   - out = Σ_j p_j·v_j: |Δout_c| <= Σ_j p'_j·|δv_jc| + Σ_j |p'_j − p_j|·|v_jc|
 *     <= max_j δv_jc + expm1(2·Δs)·max_j |v_jc|.
 * Added to the float evaluation's own error, this is what
 * variant_tolerance_attention computes from input errors (tolerance.c: δk
 * enters e_s as `pert`, δv as evmax, and mag and vmax use |x| + δx), so the
 * per-element check hands it ek = u·|k| + η and ev = u·|v| + η. The global
 * check is the same bound with every maximum taken over the whole case:
 *   max|Δout| <= u·max|V| + η + expm1(2·max|Δs|)·max|V| + max tol_float,
 * with max|Δs| <= scale·max_{b,h,i,j} Σ_d |q_d|·(u·|k_jd| + η) and tol_float
 * the float evaluation's tolerance on the rounded values. */
static void check_unrounded(tester* t, const kv_problem* p, const kv_rounded* r, int di, const expected* e0,
                            const expected* ew, const outputs* ref) {
  const kv_case* c = p->c;
  double worst = 0.0, max_err = 0.0, max_lse = 0.0;
  check_close(t, "out vs the oracle on K/V before rounding", p->n_out, ref->out, e0->out, e0->out_tol, &worst);
  check_close(t, "lse vs the oracle on K/V before rounding", p->n_lse, ref->lse, e0->lse, e0->lse_tol, &worst);
  if (e0->w != NULL)
    check_close(t, "weights vs the oracle on K/V before rounding", p->n_w, ref->w, e0->w, e0->w_tol, &worst);
  for (size_t i = 0; i < p->n_out; i++) {
    const double d = fabs((double)ref->out[i] - e0->out[i]);
    if (isfinite(d) && d > max_err) max_err = d;
  }
  for (size_t i = 0; i < p->n_lse; i++) {
    const double d = fabs((double)ref->lse[i] - e0->lse[i]);
    if (isfinite(d) && d > max_lse) max_lse = d;
  }
  g_stats.max_err0[di] = fmax(g_stats.max_err0[di], max_err);
  g_stats.max_err0_lse[di] = fmax(g_stats.max_err0_lse[di], max_lse);
  g_stats.worst0[di] = fmax(g_stats.worst0[di], worst);
  if (c->nonfinite) return; /* max|V| is inf: the global bound says nothing */
  /* the global bound */
  const double u = dtype_u(r->dt), eta = dtype_eta(r->dt), scale = 1.0 / sqrt((double)c->D);
  double vmax = 0.0, ds = 0.0, tol_float = 0.0;
  for (size_t i = 0; i < p->nv; i++) vmax = fmax(vmax, fabs(r->v0d[i]));
  for (size_t i = 0; i < p->n_out; i++) tol_float = fmax(tol_float, ew->out_tol[i]);
  const int64_t G = c->H / c->Hkv;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      for (int64_t i = 0; i < c->Tq; i++) {
        const double* qi = p->qd + ((b * c->H + h) * c->Tq + i) * c->D;
        for (int64_t j = 0; j < c->Tk; j++) {
          const double* kj = r->k0d + ((b * c->Hkv + h / G) * c->Tk + j) * c->D;
          double s = 0.0;
          for (int64_t x = 0; x < c->D; x++) s += fabs(qi[x]) * (u * fabs(kj[x]) + eta);
          ds = fmax(ds, scale * s);
        }
      }
    }
  }
  const double bound = u * vmax + eta + expm1(2.0 * ds) * vmax + tol_float;
  tester_check(t, max_err <= bound,
               "max |out - oracle on K/V before rounding| = %.3g above the derived bound %.3g "
               "(u %.3g, max|V| %.3g, max|ds| %.3g, float tolerance %.3g)",
               max_err, bound, u, vmax, ds, tol_float);
  if (bound > 0.0) g_stats.global0[di] = fmax(g_stats.global0[di], max_err / bound);
}

static void describe(tester* t, const kv_case* c, mha_isa isa, mha_dtype dt, const char* what) {
  tester_context(
      t,
      "%s: case \"%s\" isa=%s dtype=%s B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld mask=%#x "
      "kv_len=%d align=%d weights=%d prefix=%d nonfinite=%d",
      what, c->name, mha_isa_name(isa), dtype_name(dt), (long long)c->B, (long long)c->H, (long long)c->Hkv,
      (long long)c->Tq, (long long)c->Tk, (long long)c->D, (long long)c->Dv, c->mask, c->kvlen, (int)c->align,
      c->weights, c->prefix, c->nonfinite);
}

static void run_case(tester* t, const isa_list* isas, int ci) {
  const kv_case* c = &kCases[ci];
  kv_problem p;
  problem_build(t, c, &p);
  g_nan_matches_nan = c->nonfinite;
  outputs ref = outputs_alloc(&p), o = outputs_alloc(&p);
  for (int di = 0; di < NDTYPES; di++) {
    const mha_dtype dt = kDtypes[di];
    kv_rounded r;
    rounded_build(&p, dt, &r);
    /* the oracle on the widened values (float tolerance), and on the values
     * before rounding (the rounding as input errors) */
    const oracle_attention_problem ow = oracle_of(&p, r.kwd, r.vwd), o0 = oracle_of(&p, r.k0d, r.v0d);
    const tolerance_input_errors err0 = {NULL, r.ek, r.ev};
    expected ew = expect(&p, &ow, NULL), e0 = expect(&p, &o0, &err0);
    kv_store stores[NSTORES];
    for (int si = 0; si < NSTORES; si++) store_build(t, &stores[si], store_spec_of(si, ci), &p, &r);
    for (int n = 0; n < isas->count; n++) {
      const mha_isa isa = isas->isa[n];
      const long before = t->checks;
      describe(t, c, isa, dt, "reference");
      /* the reference: mha_attention_f32 on the widened values, 1 thread */
      mha_attention_desc d = p.desc;
      d.isa = isa;
      d.num_threads = 1;
      d.lse = ref.lse;
      outputs_poison(&p, &ref);
      if (!check_ok(t, mha_attention_f32(&d, p.q, r.kw, r.vw, ref.out, ref.w), "mha_attention_f32 reference")) {
        continue;
      }
      tester_check(t,
                   none_poison(ref.out, p.n_out) && none_poison(ref.lse, p.n_lse) &&
                       (ref.w == NULL || none_poison(ref.w, p.n_w)),
                   "the reference left an output element unwritten");
      if (c->nonfinite) {
        /* the case does what it says: rows that see the inf, the NaN, neither */
        size_t nan = 0, inf = 0, finite_rows = 0;
        for (size_t i = 0; i < p.n_out; i++) nan += isnan(ref.out[i]) != 0, inf += isinf(ref.out[i]) != 0;
        for (size_t i = 0; i < p.n_lse; i++) finite_rows += isfinite(ref.lse[i]) != 0;
        tester_check(t, nan > 0 && inf > 0 && finite_rows > 0,
                     "non-finite case: %zu NaN and %zu inf in out, %zu rows with a finite lse", nan, inf,
                     finite_rows);
      }
      double* worst = &g_stats.worst_widened[isa][di];
      check_close(t, "out vs the oracle", p.n_out, ref.out, ew.out, ew.out_tol, worst);
      check_close(t, "lse vs the oracle", p.n_lse, ref.lse, ew.lse, ew.lse_tol, worst);
      if (ew.w != NULL) check_close(t, "weights vs the oracle", p.n_w, ref.w, ew.w, ew.w_tol, worst);
      check_unrounded(t, &p, &r, di, &e0, &ew, &ref);
      /* every store: the contiguous one at 1, 2 and 3 threads, the others
       * at one thread count each, changing with the case */
      for (int si = 0; si < NSTORES; si++) {
        for (int threads = 1; threads <= 3; threads++) {
          if (si > 0 && threads != 1 + (si + ci) % 3) continue;
          describe(t, c, isa, dt, stores[si].name);
          run_store(t, &p, &stores[si], isa, threads, &ref, &o);
        }
      }
      const int ws_store = 2 + ci % (NSTORES - 2);
      describe(t, c, isa, dt, "caller workspace");
      check_workspace(t, &p, &stores[ws_store], isa, 1 + ci % 3, &ref, &o);
      if (c->B > 1) {
        const int bi_store = 2 + (ci + 1) % (NSTORES - 2);
        describe(t, c, isa, dt, "batch invariance");
        check_batch_invariance(t, &p, &stores[bi_store], isa, &ref);
      }
      g_stats.isa_checks[isa] += t->checks - before;
    }
    for (int si = 0; si < NSTORES; si++) store_free(&stores[si]);
    variant_expected_free(&ew);
    variant_expected_free(&e0);
    rounded_free(&r);
  }
  const unsigned kinds = mask_kinds_of(c);
  for (int k = 0; k < 8; k++) g_stats.mask_kinds[k] += (kinds >> k) & 1u;
  g_nan_matches_nan = 0;
  outputs_free(&ref);
  outputs_free(&o);
  problem_free(&p);
}

/* ------------------------------------------------------------------------ */
/* One corrupted element: the bitwise checks can fail                       */
/* ------------------------------------------------------------------------ */

/* A paged f16 cache whose V (then K) has one element one ulp off: the
 * heads that read it must change (out; lse for K), the others not. */
static void test_sensitivity(tester* t, const isa_list* isas) {
  static const kv_case c = {"sensitivity", 1, 8, 2, 1, 40, 16, 16, 0, 0, BR, 0, 0, 0};
  kv_problem p;
  problem_build(t, &c, &p);
  kv_rounded r;
  rounded_build(&p, MHA_DTYPE_F16, &r);
  kv_store s;
  store_build(t, &s, (store_spec){ST_PAGED, 16}, &p, &r);
  outputs ref = outputs_alloc(&p), o = outputs_alloc(&p);
  const size_t per_head = (size_t)(c.Tq * c.Dv);
  for (int n = 0; n < isas->count; n++) {
    const mha_isa isa = isas->isa[n];
    const long before = t->checks;
    describe(t, &c, isa, MHA_DTYPE_F16, "one corrupted element");
    mha_attention_desc d = cache_desc(&p, isa, 1, ref.lse);
    outputs_poison(&p, &ref);
    if (!check_ok(t, mha_attention_kv_f32(&d, p.q, &s.cache, ref.out, NULL), "clean cache")) continue;
    for (int which = 0; which < 2; which++) {
      /* token 17 of K/V head 1 (query heads 4 .. 7), element 3 */
      const mha_strides* st = which == 0 ? &s.cache.v_strides : &s.cache.k_strides;
      uint16_t* x = (uint16_t*)(which == 0 ? s.v : s.k) + cache_at(&s.cache, st, 0, 1, 17) + 3;
      *x ^= 1u;
      d.lse = o.lse;
      outputs_poison(&p, &o);
      if (check_ok(t, mha_attention_kv_f32(&d, p.q, &s.cache, o.out, NULL), "corrupted cache")) {
        const int same_low = memcmp(o.out, ref.out, 4 * per_head * sizeof(float)) == 0;
        /* one ulp of V moves every row that sees it by p·ulp (visible in each
         * head); one ulp of K moves a logit by ~ulp·|q_d|, which a head's
         * output may round away: for K at least one head must show it */
        int high_changed = 0;
        for (int h = 4; h < 8; h++) {
          high_changed +=
              memcmp(o.out + h * per_head, ref.out + h * per_head, per_head * sizeof(float)) != 0;
        }
        const int enough = which == 0 ? high_changed == 4 : high_changed >= 1;
        tester_check(t, same_low && enough,
                     "one ulp of %s[token 17, head 1]: heads 0-3 unchanged %d, heads 4-7 changed: %d of 4",
                     which == 0 ? "V" : "K", same_low, high_changed);
        if (which == 1) {
          tester_check(t, memcmp(o.lse + 4, ref.lse + 4, 4 * sizeof(float)) != 0,
                       "one ulp of K left lse unchanged");
        }
      }
      *x ^= 1u;
    }
    g_stats.isa_checks[isa] += t->checks - before;
  }
  outputs_free(&ref);
  outputs_free(&o);
  store_free(&s);
  rounded_free(&r);
  problem_free(&p);
}

/* ------------------------------------------------------------------------ */
/* mha_kv_cache_write                                                       */
/* ------------------------------------------------------------------------ */

/* The bits the cache must hold for x. */
static uint32_t stored_bits(mha_dtype dt, float x) {
  switch (dt) {
    case MHA_DTYPE_F16: return mha_f32_to_f16(x);
    case MHA_DTYPE_BF16: return mha_f32_to_bf16(x);
    default: return mha_f32_to_bits(x);
  }
}

static uint32_t elem_bits(const void* base, mha_dtype dt, size_t i) {
  if (dt == MHA_DTYPE_F32) {
    uint32_t u;
    memcpy(&u, (const char*)base + i * sizeof(float), sizeof u);
    return u;
  }
  return ((const uint16_t*)base)[i];
}

static void set_elem_bits(void* base, mha_dtype dt, size_t i, uint32_t bits) {
  if (dt == MHA_DTYPE_F32)
    memcpy((char*)base + i * sizeof(float), &bits, sizeof bits);
  else
    ((uint16_t*)base)[i] = (uint16_t)bits;
}

/* Elements of a and b (n of dt) that differ: one check, the first printed. */
static int check_same_elems(tester* t, const char* what, const void* got, const void* want, mha_dtype dt,
                            size_t n) {
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < n; i++) {
    if (elem_bits(got, dt, i) != elem_bits(want, dt, i) && diff++ == 0) first = i;
  }
  return tester_check(t, diff == 0, "%s: %zu of %zu elements differ; first at [%zu]: %#x, want %#x", what, diff,
                      n, first, diff ? (unsigned)elem_bits(got, dt, first) : 0u,
                      diff ? (unsigned)elem_bits(want, dt, first) : 0u);
}

/* A cache to write into: B = 3 entries of 64 tokens, Hkv = 2, D = 9, Dv = 6,
 * contiguous, strided, paged [n, bs, Hkv, D] (bs 16) or [n, Hkv, bs, D]
 * (bs 32); paged blocks given out (shuffled, 2 spare) only for the slots
 * that [pos[b], pos[b] + T) covers, the other slots -1. */
enum { W_B = 3, W_HKV = 2, W_D = 9, W_DV = 6, W_TOKENS = 64 };

static void write_cache_build(tester* t, kv_store* s, int layout, mha_dtype dt, const int32_t* pos, int64_t T) {
  memset(s, 0, sizeof *s);
  mha_kv_cache* kc = &s->cache;
  if (layout <= 1) {
    mha_strides ks = mha_strides_bhtd(W_HKV, W_TOKENS, W_D), vs = mha_strides_bhtd(W_HKV, W_TOKENS, W_DV);
    if (layout == 1) {
      ks = (mha_strides){W_TOKENS * (W_HKV * W_D + 2) + 1, W_D, W_HKV * W_D + 2};
      vs = (mha_strides){W_TOKENS * (W_HKV * W_DV + 2) + 1, W_DV, W_HKV * W_DV + 2};
    }
    s->k_n = (size_t)((W_B - 1) * ks.batch + (W_HKV - 1) * ks.head + (W_TOKENS - 1) * ks.row + W_D);
    s->v_n = (size_t)((W_B - 1) * vs.batch + (W_HKV - 1) * vs.head + (W_TOKENS - 1) * vs.row + W_DV);
    s->k = tester_alloc(s->k_n * dtype_size(dt));
    s->v = tester_alloc(s->v_n * dtype_size(dt));
    mha_kv_cache_init(kc, dt, s->k, s->v, W_HKV, W_TOKENS, W_D, W_DV);
    kc->k_strides = ks;
    kc->v_strides = vs;
    snprintf(s->name, sizeof s->name, "%s", layout == 0 ? "contiguous" : "contiguous [B,T,Hkv,D]+pad");
  } else {
    const int64_t bs = layout == 2 ? 16 : 32, max_blocks = W_TOKENS / bs + 1;
    s->table = tester_alloc((size_t)(W_B * max_blocks) * sizeof(int32_t));
    int64_t used = 0;
    for (int64_t i = 0; i < W_B * max_blocks; i++) s->table[i] = -1;
    for (int64_t b = 0; b < W_B; b++) used += (pos[b] + T - 1) / bs - pos[b] / bs + 1;
    const int64_t num_blocks = used + 2;
    int32_t* perm = permutation(t, num_blocks);
    int64_t next = 0;
    for (int64_t b = 0; b < W_B; b++) {
      for (int64_t j = pos[b] / bs; j <= (pos[b] + T - 1) / bs; j++)
        s->table[b * max_blocks + j] = perm[next++];
    }
    free(perm);
    s->k_n = (size_t)(num_blocks * bs * W_HKV * W_D);
    s->v_n = (size_t)(num_blocks * bs * W_HKV * W_DV);
    s->k = tester_alloc(s->k_n * dtype_size(dt));
    s->v = tester_alloc(s->v_n * dtype_size(dt));
    mha_kv_cache_init_paged(kc, dt, s->k, s->v, num_blocks, bs, W_HKV, W_D, W_DV, s->table, max_blocks);
    if (layout == 3) {
      kc->k_strides = mha_strides_bthd(W_HKV, bs, W_D);
      kc->v_strides = mha_strides_bthd(W_HKV, bs, W_DV);
    }
    snprintf(s->name, sizeof s->name, "paged %s bs %lld", layout == 2 ? "[n,Hkv,bs,D]" : "[n,bs,Hkv,D]",
             (long long)bs);
  }
  fill_sentinel(s->k, dt, s->k_n);
  fill_sentinel(s->v, dt, s->v_n);
}

/* Snapshots of a cache's two buffers. */
typedef struct snapshot {
  void *k, *v;
} snapshot;

static snapshot snapshot_take(const kv_store* s, mha_dtype dt) {
  snapshot x;
  x.k = tester_alloc(s->k_n * dtype_size(dt));
  x.v = tester_alloc(s->v_n * dtype_size(dt));
  memcpy(x.k, s->k, s->k_n * dtype_size(dt));
  memcpy(x.v, s->v, s->v_n * dtype_size(dt));
  return x;
}

static void snapshot_free(snapshot* x) {
  free(x->k);
  free(x->v);
}

/* A failing write: the status, a fresh message naming arg, and not one
 * element of the cache changed. */
static void expect_write_failure(tester* t, const kv_store* s, mha_dtype dt, const char* what, mha_status want,
                                 const char* arg, const mha_kv_cache* c, int64_t B, int64_t T, int64_t D,
                                 int64_t Dv, const int32_t* pos, const float* kn, mha_strides ks,
                                 const float* vn, mha_strides vs) {
  snapshot before = snapshot_take(s, dt);
  tester_stale_error();
  const mha_status st = mha_kv_cache_write(c, B, W_HKV, T, D, Dv, pos, kn, ks, vn, vs);
  tester_check_failure(t, what, st, want, arg);
  char label[160];
  snprintf(label, sizeof label, "%s: K after the failed write", what);
  check_same_elems(t, label, s->k, before.k, dt, s->k_n);
  snprintf(label, sizeof label, "%s: V after the failed write", what);
  check_same_elems(t, label, s->v, before.v, dt, s->v_n);
  snapshot_free(&before);
}

static void test_write_one(tester* t, mha_dtype dt, int layout, int64_t T) {
  int32_t pos[W_B];
  if (T == 1) {
    pos[0] = 15, pos[1] = 16, pos[2] = 63; /* the last row of a block, the first of the next, the last */
  } else {
    pos[0] = 0, pos[1] = 11, pos[2] = W_TOKENS - 37; /* across 3 and 4 blocks of 16 */
  }
  kv_store s;
  write_cache_build(t, &s, layout, dt, pos, T);
  tester_context(t, "mha_kv_cache_write: dtype=%s %s T=%lld pos={%d,%d,%d}", dtype_name(dt), s.name,
                 (long long)T, (int)pos[0], (int)pos[1], (int)pos[2]);
  /* k_new [B, T, Hkv, D] (token-major rows); v_new [B, Hkv, T, Dv] with a pad after each row */
  const mha_strides ks = {T * W_HKV * W_D, W_D, W_HKV * W_D};
  const mha_strides vs = {W_HKV * T * (W_DV + 1) + 2, T * (W_DV + 1), W_DV + 1};
  const size_t nk = (size_t)(W_B * T * W_HKV * W_D),
               nv = (size_t)((W_B - 1) * vs.batch + (W_HKV - 1) * vs.head + (T - 1) * vs.row + W_DV);
  float* kn = tester_alloc(nk * sizeof(float));
  float* vn = tester_alloc(nv * sizeof(float));
  tester_fill_range(t, kn, nk, -4.0f, 4.0f);
  tester_fill_range(t, vn, nv, -4.0f, 4.0f);
  /* values at the edges of the 16-bit formats: overflow to ±inf, the
   * largest f16, subnormals, a tie, -0, NaN */
  static const float special[] = {1e5f,  -65520.0f,      65519.0f,    0x1p-25f, 0x1.8p-25f, 0x1p-20f,
                                  -0.0f, 1.00048828125f, 1.00390625f, 3e-39f,   NAN,        -INFINITY};
  for (size_t i = 0; i < COUNT(special); i++) {
    kn[tester_below(t, (int64_t)nk)] = special[i];
    vn[tester_below(t, (int64_t)nv)] = special[i];
  }
  snapshot want = snapshot_take(&s, dt);
  const mha_status st = mha_kv_cache_write(&s.cache, W_B, W_HKV, T, W_D, W_DV, pos, kn, ks, vn, vs);
  if (check_ok(t, st, "mha_kv_cache_write")) {
    /* what must be there: the sentinel, and the rounded rows at their places */
    for (int64_t b = 0; b < W_B; b++) {
      for (int64_t g = 0; g < W_HKV; g++) {
        for (int64_t j = 0; j < T; j++) {
          const int64_t ak = cache_at(&s.cache, &s.cache.k_strides, b, g, pos[b] + j);
          const int64_t av = cache_at(&s.cache, &s.cache.v_strides, b, g, pos[b] + j);
          for (int64_t e = 0; e < W_D; e++) {
            set_elem_bits(want.k, dt, (size_t)(ak + e),
                          stored_bits(dt, kn[b * ks.batch + g * ks.head + j * ks.row + e]));
          }
          for (int64_t e = 0; e < W_DV; e++) {
            set_elem_bits(want.v, dt, (size_t)(av + e),
                          stored_bits(dt, vn[b * vs.batch + g * vs.head + j * vs.row + e]));
          }
        }
      }
    }
    check_same_elems(t, "K after the write", s.k, want.k, dt, s.k_n);
    check_same_elems(t, "V after the write", s.v, want.v, dt, s.v_n);
  }
  snapshot_free(&want);

  /* failing calls write nothing */
  const int64_t limit = s.cache.block_size != 0 ? s.cache.max_blocks * s.cache.block_size : W_TOKENS;
  int32_t bad_pos[W_B] = {pos[0], pos[1], (int32_t)(limit - T + 1)};
  expect_write_failure(t, &s, dt, "pos past the cache", MHA_STATUS_INVALID_ARGUMENT, "entry 2", &s.cache, W_B,
                       T, W_D, W_DV, bad_pos, kn, ks, vn, vs);
  bad_pos[2] = -1;
  expect_write_failure(t, &s, dt, "negative pos", MHA_STATUS_INVALID_ARGUMENT, "entry 2", &s.cache, W_B, T, W_D,
                       W_DV, bad_pos, kn, ks, vn, vs);
  expect_write_failure(t, &s, dt, "NULL pos", MHA_STATUS_NULL_POINTER, "pos", &s.cache, W_B, T, W_D, W_DV, NULL,
                       kn, ks, vn, vs);
  expect_write_failure(t, &s, dt, "NULL k_new", MHA_STATUS_NULL_POINTER, "k_new", &s.cache, W_B, T, W_D, W_DV,
                       pos, NULL, ks, vn, vs);
  expect_write_failure(t, &s, dt, "NULL v_new", MHA_STATUS_NULL_POINTER, "v_new", &s.cache, W_B, T, W_D, W_DV,
                       pos, kn, ks, NULL, vs);
  expect_write_failure(t, &s, dt, "NULL cache", MHA_STATUS_NULL_POINTER, "cache", NULL, W_B, T, W_D, W_DV, pos,
                       kn, ks, vn, vs);
  mha_kv_cache c = s.cache;
  c.k = NULL;
  expect_write_failure(t, &s, dt, "NULL cache->k", MHA_STATUS_NULL_POINTER, "cache->k", &c, W_B, T, W_D, W_DV,
                       pos, kn, ks, vn, vs);
  c = s.cache;
  c.dtype = (mha_dtype)4; /* 3 is MHA_DTYPE_INT8 */
  expect_write_failure(t, &s, dt, "bad dtype", MHA_STATUS_INVALID_ARGUMENT, "dtype", &c, W_B, T, W_D, W_DV, pos,
                       kn, ks, vn, vs);
  expect_write_failure(t, &s, dt, "B = 0", MHA_STATUS_INVALID_SIZE, "B", &s.cache, 0, T, W_D, W_DV, pos, kn, ks,
                       vn, vs);
  expect_write_failure(t, &s, dt, "T = 0", MHA_STATUS_INVALID_SIZE, "T", &s.cache, W_B, 0, W_D, W_DV, pos, kn,
                       ks, vn, vs);
  const mha_strides neg = {ks.batch, -ks.head, ks.row};
  expect_write_failure(t, &s, dt, "negative k_new stride", MHA_STATUS_INVALID_STRIDE, "k_new", &s.cache, W_B, T,
                       W_D, W_DV, pos, kn, neg, vn, vs);
  /* k_new inside the cache's K buffer (fp32 views of its bytes) */
  if (dt == MHA_DTYPE_F32 && s.k_n >= nk) {
    expect_write_failure(t, &s, dt, "k_new overlaps cache->k", MHA_STATUS_INVALID_STRIDE, "k_new", &s.cache,
                         W_B, T, W_D, W_DV, pos, (const float*)s.k, ks, vn, vs);
  }
  if (s.cache.block_size != 0) {
    static const int64_t bad_bs[] = {8, 24, 512, 1};
    for (size_t i = 0; i < COUNT(bad_bs); i++) {
      c = s.cache;
      c.block_size = bad_bs[i];
      expect_write_failure(t, &s, dt, "block_size not a power of two in [16, 256]", MHA_STATUS_INVALID_ARGUMENT,
                           "block_size", &c, W_B, T, W_D, W_DV, pos, kn, ks, vn, vs);
    }
    /* a slot that entry 2's rows cover: -1, then num_blocks */
    int32_t* slot = &s.table[2 * s.cache.max_blocks + pos[2] / s.cache.block_size];
    const int32_t keep = *slot;
    *slot = -1;
    expect_write_failure(t, &s, dt, "covering table slot -1", MHA_STATUS_INVALID_ARGUMENT, "block_table",
                         &s.cache, W_B, T, W_D, W_DV, pos, kn, ks, vn, vs);
    *slot = (int32_t)s.cache.num_blocks;
    expect_write_failure(t, &s, dt, "covering table slot num_blocks", MHA_STATUS_INVALID_ARGUMENT,
                         "block_table", &s.cache, W_B, T, W_D, W_DV, pos, kn, ks, vn, vs);
    *slot = keep;
    c = s.cache;
    c.block_table = NULL;
    expect_write_failure(t, &s, dt, "NULL block_table", MHA_STATUS_NULL_POINTER, "block_table", &c, W_B, T, W_D,
                         W_DV, pos, kn, ks, vn, vs);
  } else {
    c = s.cache;
    c.capacity = 0;
    expect_write_failure(t, &s, dt, "capacity 0", MHA_STATUS_INVALID_SIZE, "capacity", &c, W_B, T, W_D, W_DV,
                         pos, kn, ks, vn, vs);
  }
  free(kn);
  free(vn);
  store_free(&s);
}

static void test_write(tester* t) {
  for (int di = 0; di < NDTYPES; di++) {
    for (int layout = 0; layout < 4; layout++) {
      test_write_one(t, kDtypes[di], layout, 1);
      test_write_one(t, kDtypes[di], layout, 37);
    }
  }
}

/* A decode loop: two entries append one token per step (entry 1 after a
 * 5-token prompt) into a paged f16 cache whose blocks are given out when an
 * entry reaches them; every step's attention is bitwise mha_attention_f32 on
 * a widened contiguous copy, on every ISA. */
static void test_decode_loop(tester* t, const isa_list* isas) {
  enum { B = 2, H = 8, HKV = 2, D = 64, DV = 64, BS = 16, STEPS = 40, PROMPT = 5, CAP = STEPS + PROMPT };
  const int64_t max_blocks = (CAP + BS - 1) / BS + 1, num_blocks = 2 * max_blocks + 2;
  int32_t* table = tester_alloc((size_t)(B * max_blocks) * sizeof(int32_t));
  for (int64_t i = 0; i < B * max_blocks; i++) table[i] = -1;
  int32_t* perm = permutation(t, num_blocks);
  int64_t next_block = 0;
  uint16_t* kp = tester_alloc((size_t)(num_blocks * BS * HKV * D) * sizeof(uint16_t));
  uint16_t* vp = tester_alloc((size_t)(num_blocks * BS * HKV * DV) * sizeof(uint16_t));
  fill_sentinel(kp, MHA_DTYPE_F16, (size_t)(num_blocks * BS * HKV * D));
  fill_sentinel(vp, MHA_DTYPE_F16, (size_t)(num_blocks * BS * HKV * DV));
  mha_kv_cache cache;
  mha_kv_cache_init_paged(&cache, MHA_DTYPE_F16, kp, vp, num_blocks, BS, HKV, D, DV, table, max_blocks);
  /* the widened copy [B, Hkv, CAP, D] */
  float* kc = tester_alloc((size_t)(B * HKV * CAP * D) * sizeof(float));
  float* vc = tester_alloc((size_t)(B * HKV * CAP * DV) * sizeof(float));
  tester_fill(t, kc, (size_t)(B * HKV * CAP * D)); /* rows past kv_len: anything */
  tester_fill(t, vc, (size_t)(B * HKV * CAP * DV));
  float* q = tester_alloc((size_t)(B * H * D) * sizeof(float));
  float* out = tester_alloc((size_t)(B * H * DV + GUARD) * sizeof(float));
  float* ref = tester_alloc((size_t)(B * H * DV) * sizeof(float));
  float* lse = tester_alloc((size_t)(B * H + GUARD) * sizeof(float));
  float* ref_lse = tester_alloc((size_t)(B * H) * sizeof(float));
  float* kn = tester_alloc((size_t)(HKV * PROMPT * D) * sizeof(float));
  float* vn = tester_alloc((size_t)(HKV * PROMPT * DV) * sizeof(float));
  int32_t len[B] = {0, 0};
  /* appends T tokens to entry b (B = 1 view: its table row), and to the copy */
  for (int step = -1; step < STEPS; step++) {
    for (int64_t b = 0; b < B; b++) {
      const int64_t T = step < 0 ? (b == 1 ? PROMPT : 0) : 1;
      if (T == 0) continue;
      for (int64_t j = len[b] / BS; j <= (len[b] + T - 1) / BS; j++) {
        if (table[b * max_blocks + j] < 0) table[b * max_blocks + j] = perm[next_block++];
      }
      tester_fill(t, kn, (size_t)(HKV * T * D));
      tester_fill(t, vn, (size_t)(HKV * T * DV));
      mha_kv_cache one = cache;
      one.block_table = table + b * max_blocks;
      tester_context(t, "decode loop: step %d, append %lld to entry %lld at %d", step, (long long)T,
                     (long long)b, (int)len[b]);
      const int32_t at = len[b];
      if (!check_ok(t,
                    mha_kv_cache_write(&one, 1, HKV, T, D, DV, &at, kn, mha_strides_bhtd(HKV, T, D), vn,
                                       mha_strides_bhtd(HKV, T, DV)),
                    "append")) {
        continue;
      }
      for (int64_t g = 0; g < HKV; g++) {
        for (int64_t j = 0; j < T; j++) {
          for (int64_t e = 0; e < D; e++) {
            kc[((b * HKV + g) * CAP + len[b] + j) * D + e] = round_to(MHA_DTYPE_F16, kn[(g * T + j) * D + e]);
          }
          for (int64_t e = 0; e < DV; e++) {
            vc[((b * HKV + g) * CAP + len[b] + j) * DV + e] = round_to(MHA_DTYPE_F16, vn[(g * T + j) * DV + e]);
          }
        }
      }
      len[b] += (int32_t)T;
    }
    if (step < 0) continue;
    tester_fill(t, q, (size_t)(B * H * D));
    const int64_t Tk = len[0] > len[1] ? len[0] : len[1];
    mha_attention_desc d;
    mha_attention_desc_init(&d, B, H, HKV, 1, Tk, D, DV);
    d.k = mha_strides_bhtd(HKV, CAP, D);
    d.v = mha_strides_bhtd(HKV, CAP, DV);
    d.mask.kv_len = len;
    d.mask.causal = 1;
    d.mask.align = MHA_ALIGN_KV_END;
    for (int n = 0; n < isas->count; n++) {
      const mha_isa isa = isas->isa[n];
      const long before = t->checks;
      tester_context(t, "decode loop: step %d, isa %s, kv_len {%d, %d}", step, mha_isa_name(isa), (int)len[0],
                     (int)len[1]);
      d.isa = isa;
      d.num_threads = 1;
      d.lse = ref_lse;
      if (!check_ok(t, mha_attention_f32(&d, q, kc, vc, ref, NULL), "reference")) continue;
      d.num_threads = 1 + (step + n) % 3;
      d.lse = lse;
      tester_poison(out, (size_t)(B * H * DV + GUARD));
      tester_poison(lse, (size_t)(B * H + GUARD));
      g_stats.isa_calls[isa]++;
      if (check_ok(t, mha_attention_kv_f32(&d, q, &cache, out, NULL), "mha_attention_kv_f32")) {
        check_bits(t, "decode step: out", out, ref, (size_t)(B * H * DV), DV);
        check_bits(t, "decode step: lse", lse, ref_lse, (size_t)(B * H), 1);
        tester_check(t, all_poison(out + B * H * DV, GUARD) && all_poison(lse + B * H, GUARD),
                     "wrote past the end");
      }
      g_stats.isa_checks[isa] += t->checks - before;
    }
  }
  free(perm);
  free(table);
  free(kp);
  free(vp);
  free(kc);
  free(vc);
  free(q);
  free(out);
  free(ref);
  free(lse);
  free(ref_lse);
  free(kn);
  free(vn);
}

/* ------------------------------------------------------------------------ */
/* Errors of mha_attention_kv_f32 and mha_attention_kv_workspace_size       */
/* ------------------------------------------------------------------------ */

enum { E_B = 2, E_H = 4, E_HKV = 2, E_TQ = 2, E_TK = 20, E_D = 8, E_BS = 16 };

typedef struct err_env {
  mha_attention_desc d;
  float q[E_B * E_H * E_TQ * E_D];
  float out[E_B * E_H * E_TQ * E_D + GUARD];
  float w[E_B * E_H * E_TQ * E_TK + GUARD];
  float lse[E_B * E_H * E_TQ + GUARD];
} err_env;

static void env_poison(err_env* e) {
  tester_poison(e->out, COUNT(e->out));
  tester_poison(e->w, COUNT(e->w));
  tester_poison(e->lse, COUNT(e->lse));
}

/* A failing call: status, fresh message naming arg, outputs untouched; and
 * (ws) the same status from mha_attention_kv_workspace_size, bytes kept. */
static void expect_kv_failure(tester* t, err_env* e, const char* what, const mha_attention_desc* d,
                              const mha_kv_cache* c, mha_status want, const char* arg, int ws) {
  env_poison(e);
  tester_stale_error();
  const mha_status st = mha_attention_kv_f32(d, e->q, c, e->out, e->w);
  tester_check_failure(t, what, st, want, arg);
  tester_check(
      t,
      all_poison(e->out, COUNT(e->out)) && all_poison(e->w, COUNT(e->w)) && all_poison(e->lse, COUNT(e->lse)),
      "%s: the failed call wrote an output", what);
  if (!ws) return;
  size_t bytes = 12345;
  char label[160];
  snprintf(label, sizeof label, "%s (workspace size)", what);
  tester_stale_error();
  tester_check_failure(t, label, mha_attention_kv_workspace_size(d, c, 1, &bytes), want, arg);
  tester_check(t, bytes == 12345, "%s: the failed call wrote *bytes", label);
}

static void test_errors(tester* t) {
  static err_env e;
  tester_context(t, "mha_attention_kv_f32 errors");
  tester_fill(t, e.q, COUNT(e.q));
  mha_attention_desc_init(&e.d, E_B, E_H, E_HKV, E_TQ, E_TK, E_D, E_D);
  e.d.lse = e.lse;
  e.d.num_threads = 1;
  /* a contiguous and a paged f16 cache of 20 tokens */
  uint16_t* ck = tester_alloc((size_t)(E_B * E_HKV * E_TK * E_D) * sizeof(uint16_t));
  uint16_t* cv = tester_alloc((size_t)(E_B * E_HKV * E_TK * E_D) * sizeof(uint16_t));
  for (int i = 0; i < E_B * E_HKV * E_TK * E_D; i++)
    ck[i] = cv[i] = mha_f32_to_f16((float)tester_uniform(t, -1, 1));
  mha_kv_cache contig, paged;
  mha_kv_cache_init(&contig, MHA_DTYPE_F16, ck, cv, E_HKV, E_TK, E_D, E_D);
  const int64_t nblk = 5;
  uint16_t* pk = tester_alloc((size_t)(nblk * E_BS * E_HKV * E_D) * sizeof(uint16_t));
  uint16_t* pv = tester_alloc((size_t)(nblk * E_BS * E_HKV * E_D) * sizeof(uint16_t));
  for (int i = 0; i < nblk * E_BS * E_HKV * E_D; i++)
    pk[i] = pv[i] = mha_f32_to_f16((float)tester_uniform(t, -1, 1));
  int32_t table[E_B * 3] = {4, 0, -1, 3, 1, -1};
  mha_kv_cache_init_paged(&paged, MHA_DTYPE_F16, pk, pv, nblk, E_BS, E_HKV, E_D, E_D, table, 3);

  env_poison(&e);
  check_ok(t, mha_attention_kv_f32(&e.d, e.q, &contig, e.out, e.w), "valid contiguous cache");
  check_ok(t, mha_attention_kv_f32(&e.d, e.q, &paged, e.out, e.w), "valid paged cache");

  /* NULL_POINTER */
  expect_kv_failure(t, &e, "NULL cache", &e.d, NULL, MHA_STATUS_NULL_POINTER, "cache", 1);
  expect_kv_failure(t, &e, "NULL desc", NULL, &paged, MHA_STATUS_NULL_POINTER, "desc", 1);
  mha_kv_cache c = paged;
  c.k = NULL;
  expect_kv_failure(t, &e, "NULL cache->k", &e.d, &c, MHA_STATUS_NULL_POINTER, "cache->k", 1);
  c = contig;
  c.v = NULL;
  expect_kv_failure(t, &e, "NULL cache->v", &e.d, &c, MHA_STATUS_NULL_POINTER, "cache->v", 1);
  c = paged;
  c.block_table = NULL;
  expect_kv_failure(t, &e, "NULL block_table", &e.d, &c, MHA_STATUS_NULL_POINTER, "block_table", 1);
  env_poison(&e);
  tester_stale_error();
  tester_check_failure(t, "NULL q", mha_attention_kv_f32(&e.d, NULL, &paged, e.out, e.w),
                       MHA_STATUS_NULL_POINTER, "q");
  tester_stale_error();
  tester_check_failure(t, "NULL out", mha_attention_kv_f32(&e.d, e.q, &paged, NULL, e.w),
                       MHA_STATUS_NULL_POINTER, "out");
  tester_check(t, all_poison(e.w, COUNT(e.w)) && all_poison(e.lse, COUNT(e.lse)),
               "NULL q/out: an output was written");
  tester_stale_error();
  tester_check_failure(t, "NULL bytes", mha_attention_kv_workspace_size(&e.d, &paged, 0, NULL),
                       MHA_STATUS_NULL_POINTER, "bytes");

  /* INVALID_ARGUMENT: dtype, block_size, table slots, Tk past the cache */
  const int bad_dtypes[] = {4, -1, 1000}; /* 3 is MHA_DTYPE_INT8 */
  for (size_t i = 0; i < COUNT(bad_dtypes); i++) {
    c = i % 2 ? contig : paged;
    c.dtype = (mha_dtype)bad_dtypes[i];
    expect_kv_failure(t, &e, "bad dtype", &e.d, &c, MHA_STATUS_INVALID_ARGUMENT, "dtype", 1);
  }
  const int64_t bad_bs[] = {24, 8, 512, 1, -16, 48, 17};
  for (size_t i = 0; i < COUNT(bad_bs); i++) {
    c = paged;
    c.block_size = bad_bs[i];
    expect_kv_failure(t, &e, "bad block_size", &e.d, &c, MHA_STATUS_INVALID_ARGUMENT, "block_size", 1);
  }
  table[4] = -1; /* entry 1's second block: keys 16 .. 19 need it */
  expect_kv_failure(t, &e, "used table slot -1", &e.d, &paged, MHA_STATUS_INVALID_ARGUMENT, "block_table", 1);
  table[4] = (int32_t)nblk;
  expect_kv_failure(t, &e, "used table slot = num_blocks", &e.d, &paged, MHA_STATUS_INVALID_ARGUMENT,
                    "block_table", 1);
  table[4] = INT32_MIN;
  expect_kv_failure(t, &e, "used table slot INT32_MIN", &e.d, &paged, MHA_STATUS_INVALID_ARGUMENT,
                    "block_table", 1);
  /* the slot is not used when kv_len stops before it: fine; one key more needs it */
  int32_t lens[E_B] = {E_TK, 16};
  mha_attention_desc d = e.d;
  d.mask.kv_len = lens;
  env_poison(&e);
  check_ok(t, mha_attention_kv_f32(&d, e.q, &paged, e.out, e.w), "unused table slot INT32_MIN (kv_len 16)");
  lens[1] = 17;
  expect_kv_failure(t, &e, "table slot INT32_MIN that kv_len 17 uses", &d, &paged, MHA_STATUS_INVALID_ARGUMENT,
                    "block_table", 1);
  table[4] = 1;
  c = contig;
  c.capacity = E_TK - 1;
  c.k_strides = c.v_strides = mha_strides_bhtd(E_HKV, E_TK - 1, E_D);
  expect_kv_failure(t, &e, "Tk > capacity", &e.d, &c, MHA_STATUS_INVALID_ARGUMENT, "cache", 1);
  c = paged;
  c.max_blocks = 1; /* 16 tokens per entry: table [B, 1] = {4, 0} */
  expect_kv_failure(t, &e, "Tk > max_blocks * block_size", &e.d, &c, MHA_STATUS_INVALID_ARGUMENT, "cache", 1);
  int32_t bad_len[E_B] = {E_TK + 1, 0};
  d = e.d;
  d.mask.kv_len = bad_len;
  expect_kv_failure(t, &e, "kv_len > Tk", &d, &paged, MHA_STATUS_INVALID_ARGUMENT, "kv_len", 1);

  /* INVALID_SIZE */
  const int64_t zero_or_less[] = {0, -3};
  for (size_t i = 0; i < COUNT(zero_or_less); i++) {
    c = contig;
    c.capacity = zero_or_less[i];
    expect_kv_failure(t, &e, "capacity < 1", &e.d, &c, MHA_STATUS_INVALID_SIZE, "capacity", 1);
    c = paged;
    c.num_blocks = zero_or_less[i];
    expect_kv_failure(t, &e, "num_blocks < 1", &e.d, &c, MHA_STATUS_INVALID_SIZE, "num_blocks", 1);
    c = paged;
    c.max_blocks = zero_or_less[i];
    expect_kv_failure(t, &e, "max_blocks < 1", &e.d, &c, MHA_STATUS_INVALID_SIZE, "max_blocks", 1);
  }
  /* INVALID_STRIDE: the cache's own views */
  c = contig;
  c.k_strides.row = E_D - 1;
  expect_kv_failure(t, &e, "cache row stride < D", &e.d, &c, MHA_STATUS_INVALID_STRIDE, "cache->k", 1);
  c = paged;
  c.v_strides.head = -1;
  expect_kv_failure(t, &e, "negative cache stride", &e.d, &c, MHA_STATUS_INVALID_STRIDE, "cache->v", 1);

  /* INVALID_STRIDE: outputs overlapping the cache */
  {
    const size_t kbytes = (size_t)(E_B * E_HKV * E_TK * E_D) * sizeof(uint16_t);
    const size_t nout = (size_t)(E_B * E_H * E_TQ * E_D);
    float* arena = tester_alloc(kbytes + nout * sizeof(float) + 64);
    mha_kv_cache over = contig;
    over.k = arena;
    float* out = arena + kbytes / sizeof(float) / 2; /* half inside K */
    tester_poison(out, nout);
    tester_stale_error();
    tester_check_failure(t, "out overlaps cache->k", mha_attention_kv_f32(&e.d, e.q, &over, out, NULL),
                         MHA_STATUS_INVALID_STRIDE, "cache->k");
    tester_check(t, all_poison(out, nout), "out overlapping cache->k was written");
    over = contig;
    over.v = arena;
    tester_poison(arena, (kbytes + nout * sizeof(float)) / sizeof(float));
    env_poison(&e);
    tester_stale_error();
    tester_check_failure(t, "weights overlap cache->v",
                         mha_attention_kv_f32(&e.d, e.q, &over, e.out, arena + 8), MHA_STATUS_INVALID_STRIDE,
                         "cache->v");
    tester_check(t, all_poison(e.out, COUNT(e.out)) && all_poison(e.lse, COUNT(e.lse)),
                 "weights overlapping cache->v: out or lse was written");
    d = e.d;
    d.lse = arena + 4;
    over = contig;
    over.k = arena;
    env_poison(&e);
    tester_stale_error();
    tester_check_failure(t, "lse overlaps cache->k", mha_attention_kv_f32(&d, e.q, &over, e.out, e.w),
                         MHA_STATUS_INVALID_STRIDE, "lse");
    tester_check(t, all_poison(e.out, COUNT(e.out)) && all_poison(e.w, COUNT(e.w)),
                 "lse overlapping cache->k: out or weights was written");
    free(arena);
    /* the table as lse: not poisoned (it must stay a valid table) */
    d = e.d;
    int32_t table2[E_B * 3 + 16];
    memcpy(table2, table, sizeof table);
    for (int i = E_B * 3; i < E_B * 3 + 16; i++) table2[i] = 0;
    d.lse = (float*)(void*)table2;
    c = paged;
    c.block_table = table2;
    env_poison(&e);
    tester_stale_error();
    tester_check_failure(t, "lse overlaps cache->block_table", mha_attention_kv_f32(&d, e.q, &c, e.out, NULL),
                         MHA_STATUS_INVALID_STRIDE, "block_table");
    tester_check(t, memcmp(table2, table, sizeof table) == 0 && all_poison(e.out, COUNT(e.out)),
                 "lse overlapping the table: the table or out was written");
  }
  /* the init functions accept NULL */
  mha_kv_cache_init(NULL, MHA_DTYPE_F16, ck, cv, 1, 1, 1, 1);
  mha_kv_cache_init_paged(NULL, MHA_DTYPE_F16, pk, pv, 1, 16, 1, 1, 1, table, 1);
  free(ck);
  free(cv);
  free(pk);
  free(pv);
}

/* ------------------------------------------------------------------------ */
/* The conversions of kv-gemm/kv-convert.h                                  */
/* ------------------------------------------------------------------------ */

/* bf16 of x by its definition: the nearer of the two bf16 values around x
 * (ties to the even one), from exact double arithmetic. */
static uint16_t bf16_reference(float x) {
  const uint32_t u = mha_f32_to_bits(x);
  const uint16_t lo = (uint16_t)(u >> 16);
  if ((u & 0xffffu) == 0) return lo;
  const uint16_t hi = (uint16_t)(lo + 1); /* the next value away from 0 (may be inf) */
  const double dl = fabs((double)x - (double)mha_bf16_to_f32(lo));
  const double dh = fabs((double)mha_bf16_to_f32(hi) - (double)x);
  if (isinf(mha_bf16_to_f32(hi))) {
    /* beyond the largest bf16: inf when x rounds past it (the midpoint
     * to the next binade value 2^128 ties to inf, whose mantissa is even) */
    const double half = ldexp(1.0, 128 - 9);
    return fabs((double)x) - fabs((double)mha_bf16_to_f32(lo)) >= half ? hi : lo;
  }
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

static void test_conversions(tester* t) {
  tester_context(t, "kv-convert.h conversions");
  long bad_f16 = 0, bad_bf16 = 0, bad_ref = 0, bad_bf_ref = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    const float f = mha_f16_to_f32((uint16_t)h), b = mha_bf16_to_f32((uint16_t)h);
    if (isnan(f) ? !isnan(mha_f16_to_f32(mha_f32_to_f16(f))) : mha_f32_to_f16(f) != h) bad_f16++;
    if (isnan(b) ? !isnan(mha_bf16_to_f32(mha_f32_to_bf16(b))) : mha_f32_to_bf16(b) != h) bad_bf16++;
#ifdef __FLT16_MAX__
    _Float16 x;
    const uint16_t hb = (uint16_t)h;
    memcpy(&x, &hb, sizeof x);
    if (!(isnan(f) && isnan((float)x)) && mha_f32_to_bits(f) != mha_f32_to_bits((float)x)) bad_ref++;
#endif
  }
  tester_check(t, bad_f16 == 0, "f16 -> f32 -> f16 changed %ld of 65536 values", bad_f16);
  tester_check(t, bad_bf16 == 0, "bf16 -> f32 -> bf16 changed %ld of 65536 values", bad_bf16);
  tester_check(t, bad_ref == 0, "mha_f16_to_f32 differs from the compiler's _Float16 on %ld values", bad_ref);
  /* narrowing: random bit patterns, and the neighbourhoods of every f16
   * rounding boundary (midpoints between neighbours, ± one fp32 ulp) */
  long n = 0;
  bad_ref = 0;
  for (long i = 0; i < 400000; i++) {
    uint32_t u;
    if (i < 200000) {
      u = (uint32_t)tester_bits(t);
    } else {
      const uint16_t h = (uint16_t)tester_below(t, 0x7c00); /* a finite positive f16 */
      const double mid = ((double)mha_f16_to_f32(h) + (double)mha_f16_to_f32((uint16_t)(h + 1))) / 2.0;
      u = mha_f32_to_bits((float)mid) + (uint32_t)(tester_below(t, 3) - 1);
      if (tester_below(t, 2)) u |= 0x80000000u;
    }
    const float x = mha_bits_to_f32(u);
    if (isnan(x)) continue;
    n++;
    if (mha_f32_to_bf16(x) != bf16_reference(x)) bad_bf_ref++;
#ifdef __FLT16_MAX__
    const _Float16 y = (_Float16)x;
    uint16_t hy;
    memcpy(&hy, &y, sizeof hy);
    if (mha_f32_to_f16(x) != hy) bad_ref++;
#endif
  }
  tester_check(t, bad_ref == 0, "mha_f32_to_f16 differs from the compiler's (_Float16) on %ld of %ld values",
               bad_ref, n);
  tester_check(t, bad_bf_ref == 0, "mha_f32_to_bf16 differs from round-to-nearest-even on %ld of %ld values",
               bad_bf_ref, n);
  /* a few by hand */
  tester_check(t,
               mha_f32_to_f16(65504.0f) == 0x7bff && mha_f32_to_f16(65520.0f) == 0x7c00 &&
                   mha_f32_to_f16(65519.996f) == 0x7bff && mha_f32_to_f16(0x1p-24f) == 0x0001 &&
                   mha_f32_to_f16(0x1p-25f) == 0x0000 && mha_f32_to_f16(0x1.8p-24f) == 0x0002 &&
                   mha_f32_to_f16(-1.0f) == 0xbc00 && mha_f32_to_f16(1.00048828125f) == 0x3c00 &&
                   mha_f32_to_bf16(1.00390625f) == 0x3f80 && mha_f32_to_bf16(1.01171875f) == 0x3f82 &&
                   mha_f32_to_bf16(-INFINITY) == 0xff80,
               "hand-checked conversions");
}

/* ------------------------------------------------------------------------ */

int main(void) {
  tester t;
  tester_init(&t, "kv-cache-test");
  const isa_list isas = tester_available_isas(&t);
  test_conversions(&t);
  const long common0 = t.checks;
  test_errors(&t);
  test_write(&t);
  const long common = t.checks - common0;
  test_sensitivity(&t, &isas);
  for (int ci = 0; ci < (int)COUNT(kCases); ci++) run_case(&t, &isas, ci);
  test_decode_loop(&t, &isas);

  tester_context(&t, "mask coverage");
  for (int k = 0; k < 8; k++) {
    tester_check(&t, g_stats.mask_kinds[k] > 0, "no case has the mask kind %s", kMaskKinds[k]);
  }
  printf("kv-cache-test: %zu cases x %d dtypes x %d stores; checks per ISA:", COUNT(kCases), NDTYPES, NSTORES);
  for (int n = 0; n < isas.count; n++) {
    printf(" %s %ld (%ld cache calls)", mha_isa_name(isas.isa[n]), g_stats.isa_checks[isas.isa[n]],
           g_stats.isa_calls[isas.isa[n]]);
  }
  printf("; errors and writes %ld\n", common);
  for (int di = 0; di < NDTYPES; di++) {
    printf(
        "kv-cache-test: %-4s vs the oracle on fp32 K/V before rounding: max |dout| %.3g, max |dlse| %.3g, "
        "worst |d|/bound %.3g per element, %.3g of the global bound\n",
        dtype_name(kDtypes[di]), g_stats.max_err0[di], g_stats.max_err0_lse[di], g_stats.worst0[di],
        g_stats.global0[di]);
  }
  for (int n = 0; n < isas.count; n++) {
    printf("kv-cache-test: %-8s vs the oracle on the widened values, worst error/tolerance:",
           mha_isa_name(isas.isa[n]));
    for (int di = 0; di < NDTYPES; di++)
      printf(" %s %.3g", dtype_name(kDtypes[di]), g_stats.worst_widened[isas.isa[n]][di]);
    printf("\n");
  }
  return tester_finish(&t);
}
