/*
 * libFuzzer harness of the attention core: mha_attention_f32() and
 * mha_attention_workspace_size() over fuzzed shapes, strides, masks, scales,
 * thread counts, kernel sets, caller workspaces, NULL pointers, buffers
 * that alias each other, and the attention variants (alignment, sliding
 * window, ALiBi, soft-cap, sinks, the lse output, the weights modes).
 *
 * Input bytes, front to back (fuzz-common.h decodes each field; every field
 * has a default once the input runs out; make_seeds.py writes the same):
 *   B, Hkv            sizes
 *   H mode            < 0xC0: H = Hkv · (1 + byte % 8); else a size follows
 *   Tq, Tk, D, Dv     sizes
 *   q, k, v, out      layouts (fuzz_layout)
 *   mask              causal, kv_len, additive kind [+ its bytes], content
 *   scale, values (% 3), num_threads, isa
 *   weights           bit 0: ask for the attention weights
 *   workspace         % 8: 0-3 none, 4 exact, 5 exact but misaligned,
 *                     6 one byte short, 7 one byte
 *   null              0xF0..0xF5: q, k, v, out, desc, or the query's bytes
 *   alias             0xF0..0xF6: k = q, v = k, out = q, out = v,
 *                     weights = out, out = mask, weights = k (same buffer)
 *   checks            (default 0x07) bit 0: rerun at another thread count;
 *                     bit 1: rerun with weights toggled; bit 2: rerun one
 *                     batch entry alone (all three must give the same bits);
 *                     bit 3: NaN in a few K and V elements (bit 4: +inf
 *                     instead): the rows that see them turn NaN, the rows
 *                     they are hidden from must not notice; bit 5: the
 *                     16-bit rerun (mha_attention, after every successful
 *                     call) in the other type (bf16 for an even Tq, f16 for
 *                     an odd one, without it)
 * The variants (trailing bytes: an input that ends before them, as every
 * input written before they existed, has every variant off):
 *   align             < 0xF0: byte % 4 (mha_align); 0xF0: 4, 0xF1: -1 (bad)
 *   offset            (default 0x20) < 0xF8: byte % 64 - 32; 0xF8.. : 2^60,
 *                     -2^60, INT64_MAX, INT64_MIN (bad with ALIGN_OFFSET),
 *                     2^60 - 1, -(2^60 - 1), 1000, -1000
 *   window            < 0xF0: byte & 1; 0xF0: 2, 0xF1: -1 (bad)
 *   left, right       window sides: < 0xF0: byte % 16; 0xF0.. : -1,
 *                     INT64_MIN (bad with a window), INT64_MAX, 2^62,
 *                     2^62 + 1, 64, 300; else byte % 16
 *   alibi             % 4: off, slopes in [0, 1), [0, 1/16), [-1, 1)
 *   softcap           < 0x80: 0; < 0xF0: 0.5 + (byte - 0x80) / 2; 0xF0..:
 *                     NaN, -1, inf, -inf (bad), -0, FLT_MIN, FLT_MAX, 1e-3
 *   sinks             % 4: off, in [-4, 4), the same with some -inf, [80, 100)
 *   lse               < 0xF0: bit 0: an lse output; 0xF0: lse = out's
 *                     buffer, 0xF1: lse = q's (both INVALID_STRIDE)
 *   weights_mode      % 8: 0-3 per head, 4 head mean, 5 selected heads
 *                     (1 + (byte >> 3) % 4 of them, drawn), 6 the same with
 *                     one head outside [0, H); 7: by (byte >> 3) % 3 a mode
 *                     outside the enum, weights_heads NULL, weights_nheads 0
 *   (the slopes, sinks and heads are drawn from a generator of their own)
 *
 * Per input: the model of include/mha.h says which statuses the call may
 * return; buffers have exactly the extent their strides address (or are
 * tiny when that is unreasonable, and then the call must be refused before
 * touching them); inputs are random and finite with NaN in the gaps;
 * outputs are poisoned. A successful call must write every element of its
 * views and nothing else, agree with the scalar kernel set and the naive
 * double oracle within the derived tolerance (tests/variant-tolerance.c
 * with any variant, for out, weights in their mode's layout and lse; an
 * infinite lse exactly), and keep its bits (out, weights, lse) in the
 * reruns. A failed call must leave every buffer as it was and set
 * mha_last_error(). Anything else is a finding: a message and abort().
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"
#include "variant-tolerance.h"

enum { ROLE_Q, ROLE_K, ROLE_V, ROLE_OUT, ROLE_W, ROLE_LSE, ROLE_COUNT };
static const char* const role_name[ROLE_COUNT] = {"q", "k", "v", "out", "weights", "lse"};

typedef enum { WS_NONE, WS_EXACT, WS_MISALIGNED, WS_SHORT, WS_TINY } ws_mode;
typedef enum { NULL_NONE, NULL_Q, NULL_K, NULL_V, NULL_OUT, NULL_DESC, NULL_BYTES } null_mode;
typedef enum {
  ALIAS_NONE,
  ALIAS_K_IS_Q,
  ALIAS_V_IS_K,
  ALIAS_OUT_IS_Q,
  ALIAS_OUT_IS_V,
  ALIAS_W_IS_OUT,
  ALIAS_OUT_IS_MASK,
  ALIAS_W_IS_K
} alias_mode;
enum {
  CHECK_THREADS = 1,
  CHECK_WEIGHTS = 2,
  CHECK_ENTRY = 4,
  CHECK_BAD_KV_NAN = 8,
  CHECK_BAD_KV_INF = 16,
  CHECK_F16 = 32
};

/* The lse output: none, its own [B, H, Tq] buffer, or over out or q. */
typedef enum { LSE_NONE, LSE_OWN, LSE_IS_OUT, LSE_IS_Q } lse_mode;
/* The weights layout: per head, the head mean, chosen heads; or broken:
 * a head outside [0, H), a value outside the enum, heads NULL, nheads 0. */
typedef enum {
  WM_PER_HEAD,
  WM_MEAN,
  WM_SELECTED,
  WM_BAD_HEAD,
  WM_BAD_ENUM,
  WM_NULL_HEADS,
  WM_ZERO_HEADS
} wmode_kind;

/* The attention variants of the case (decoded from the trailing bytes; all
 * off when the input runs out), and the arrays they point at. */
typedef struct core_variants {
  int any;           /* a variant that changes the math or asks for lse */
  lse_mode lse;
  wmode_kind wmode;
  float* slopes;     /* owned, [nhead] or NULL */
  float* sinks;      /* owned, [nhead] or NULL */
  int32_t* heads;    /* owned, [nheads] (1 when nheads is 0) or NULL */
  size_t nhead;      /* floats behind slopes / sinks: H, or 1 standing in for a huge H */
  size_t nheads;     /* int32s behind heads */
  void *slopes_snap, *sinks_snap, *heads_snap;
} core_variants;

typedef struct core_case {
  mha_attention_desc desc;
  fuzz_view view[ROLE_COUNT]; /* weights: contiguous [B, slots, Tq, Tk]; lse: [B, H, Tq] */
  int64_t extent[ROLE_COUNT]; /* floats each view addresses; 0: unknown */
  fuzz_mask mask;
  int weights;
  unsigned checks;
  fuzz_values values;
  ws_mode ws;
  null_mode null;
  alias_mode alias;
  fuzz_expect shape; /* the rules of desc: what the workspace query checks too */
  fuzz_expect call;  /* plus the pointers, aliasing and the caller's workspace */
  int small;         /* cheap enough to run and to check against the oracle */
  core_variants var;
} core_case;

/* The buffers of one call. Aliased roles share their source's allocation. */
typedef struct core_buffers {
  float* own[ROLE_COUNT]; /* allocations, NULL for an aliased role */
  float* ptr[ROLE_COUNT]; /* what the call receives */
  size_t n[ROLE_COUNT];   /* floats behind ptr */
  void* snap[ROLE_COUNT]; /* snapshots of own[] before the call */
  void* mask_snap;
  void* kv_len_snap;
} core_buffers;

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

static void core_decode_shape(fuzz_input* in, mha_attention_desc* d) {
  const int64_t B = fuzz_size(in, 1), Hkv = fuzz_size(in, 1);
  const uint8_t hmode = fuzz_u8(in, 1);
  const int64_t H = hmode < 0xC0 ? fuzz_mul_sat(Hkv, 1 + hmode % 8) : fuzz_size(in, 2);
  const int64_t Tq = fuzz_size(in, 3), Tk = fuzz_size(in, 5);
  const int64_t D = fuzz_size(in, 8), Dv = fuzz_size(in, 8);
  /* the documented way to fill a descriptor, whatever the sizes */
  mha_attention_desc_init(d, B, H, Hkv, Tq, Tk, D, Dv);
}

static fuzz_view core_out_view(const mha_attention_desc* d) {
  return (fuzz_view){d->B, d->H, d->Tq, d->Dv, d->out};
}

static void core_decode(fuzz_input* in, fuzz_rng* r, core_case* c) {
  memset(c, 0, sizeof *c);
  fuzz_expect_init(&c->shape);
  mha_attention_desc* d = &c->desc;
  core_decode_shape(in, d);
  d->q = fuzz_layout(in, d->H, d->Tq, d->D);
  d->k = fuzz_layout(in, d->Hkv, d->Tk, d->D);
  d->v = fuzz_layout(in, d->Hkv, d->Tk, d->Dv);
  d->out = fuzz_layout(in, d->H, d->Tq, d->Dv);
  fuzz_mask_make(in, r, d->B, d->H, d->Tq, d->Tk, &c->mask, &c->shape);
  d->mask = c->mask.mask;
  d->scale = fuzz_scale(in);
  c->values = (fuzz_values)(fuzz_u8(in, 0) % FUZZ_VALUES_COUNT);
  d->num_threads = fuzz_threads(in);
  d->isa = fuzz_isa(in);
  c->weights = fuzz_u8(in, 0) & 1;
  const uint8_t ws = fuzz_u8(in, 0) % 8;
  c->ws = ws < 4 ? WS_NONE : (ws_mode)(ws - 3);
  const uint8_t nul = fuzz_u8(in, 0);
  c->null = nul >= 0xF0 && nul <= 0xF5 ? (null_mode)(nul - 0xF0 + 1) : NULL_NONE;
  const uint8_t alias = fuzz_u8(in, 0);
  c->alias = alias >= 0xF0 && alias <= 0xF6 ? (alias_mode)(alias - 0xF0 + 1) : ALIAS_NONE;
  c->checks = fuzz_u8(in, CHECK_THREADS | CHECK_WEIGHTS | CHECK_ENTRY);

  c->view[ROLE_Q] = (fuzz_view){d->B, d->H, d->Tq, d->D, d->q};
  c->view[ROLE_K] = (fuzz_view){d->B, d->Hkv, d->Tk, d->D, d->k};
  c->view[ROLE_V] = (fuzz_view){d->B, d->Hkv, d->Tk, d->Dv, d->v};
  c->view[ROLE_OUT] = core_out_view(d);
  const int64_t w_row = d->Tk, w_head = fuzz_mul_sat(d->Tq, w_row);
  c->view[ROLE_W] =
      (fuzz_view){d->B, d->H, d->Tq, d->Tk, {fuzz_mul_sat(d->H, w_head), w_head, w_row}};
}

/* The slots of the weights output: H, 1 (the mean) or the chosen heads. */
static int64_t core_weights_slots(const mha_attention_desc* d) {
  if (d->weights_mode == MHA_WEIGHTS_HEAD_MEAN) return 1;
  if (d->weights_mode == MHA_WEIGHTS_SELECTED) return d->weights_nheads;
  return d->H;
}

/* A window side: small sizes (0 included) mostly; negative or huge ones. */
/* H floats for the slopes or sinks (one standing in for a huge H). */
static float* core_head_array(core_case* c, fuzz_rng* r, float lo, float hi) {
  float* x = fuzz_alloc(c->var.nhead);
  for (size_t h = 0; h < c->var.nhead; h++) x[h] = fuzz_uniform(r, lo, hi);
  return x;
}

/* The trailing bytes: the attention variants (an input that ends before
 * them leaves every variant off, so older inputs keep their meaning). Their
 * arrays come from r, a generator of their own, so that the rest of the
 * case draws what it drew before. */
static void core_decode_variants(fuzz_input* in, fuzz_rng* r, core_case* c) {
  mha_attention_desc* d = &c->desc;
  mha_mask* m = &d->mask;
  core_variants* var = &c->var;
  fuzz_decode_position(in, m);
  const int64_t H = d->H;
  var->nhead = H >= 1 && H <= (1 << 20) ? (size_t)H : 1;
  const uint8_t alibi = fuzz_u8(in, 0) % 4;
  if (alibi != 0) {
    static const float range[4][2] = {{0, 0}, {0, 1}, {0, 0.0625f}, {-1, 1}};
    var->slopes = core_head_array(c, r, range[alibi][0], range[alibi][1]);
    m->alibi_slopes = var->slopes;
  }
  static const float caps[] = {NAN, -1.0f, INFINITY, -INFINITY, -0.0f, FLT_MIN, FLT_MAX, 1e-3f};
  const uint8_t cap = fuzz_u8(in, 0);
  m->softcap = cap < 0x80 ? 0.0f
               : cap < 0xF0 ? 0.5f + 0.5f * (float)(cap - 0x80)
               : cap < 0xF8 ? caps[cap - 0xF0] : 0.0f;
  const uint8_t sinks = fuzz_u8(in, 0) % 4;
  if (sinks != 0) {
    var->sinks = sinks == 3 ? core_head_array(c, r, 80, 100) : core_head_array(c, r, -4, 4);
    if (sinks == 2) {
      for (size_t h = 0; h < var->nhead; h++) {
        if (fuzz_next(r) % 3 == 0) var->sinks[h] = -INFINITY;
      }
    }
    m->sinks = var->sinks;
  }
  const uint8_t lse = fuzz_u8(in, 0);
  var->lse = lse < 0xF0 ? (lse & 1 ? LSE_OWN : LSE_NONE) : lse == 0xF0 ? LSE_IS_OUT
             : lse == 0xF1 ? LSE_IS_Q : LSE_NONE;
  const uint8_t wm = fuzz_u8(in, 0);
  switch (wm % 8) {
    case 4: var->wmode = WM_MEAN; break;
    case 5: var->wmode = WM_SELECTED; break;
    case 6: var->wmode = WM_BAD_HEAD; break;
    case 7: var->wmode = (wmode_kind)(WM_BAD_ENUM + (wm >> 3) % 3); break;
    default: var->wmode = WM_PER_HEAD; break;
  }
  d->weights_mode = MHA_WEIGHTS_PER_HEAD;
  if (var->wmode == WM_MEAN) d->weights_mode = MHA_WEIGHTS_HEAD_MEAN;
  if (var->wmode == WM_BAD_ENUM) d->weights_mode = (mha_weights_mode)3;
  if (var->wmode == WM_SELECTED || var->wmode == WM_BAD_HEAD || var->wmode == WM_NULL_HEADS ||
      var->wmode == WM_ZERO_HEADS) {
    d->weights_mode = MHA_WEIGHTS_SELECTED;
    var->nheads = var->wmode == WM_ZERO_HEADS ? 1 : 1 + (size_t)(wm >> 3) % 4;
    var->heads = malloc(var->nheads * sizeof(int32_t));
    if (var->heads == NULL) exit(2);
    for (size_t k = 0; k < var->nheads; k++) {
      var->heads[k] = H >= 1 ? (int32_t)(fuzz_next(r) % (uint64_t)(H < INT32_MAX ? H : INT32_MAX)) : 0;
    }
    if (var->wmode == WM_BAD_HEAD) {
      static const int32_t bad[] = {-1, INT32_MIN, INT32_MAX};
      const size_t k = (size_t)(fuzz_next(r) % var->nheads);
      const uint64_t pick = fuzz_next(r) % 4;
      var->heads[k] = pick < 3 ? bad[pick] : (int32_t)(H >= 0 && H < INT32_MAX ? H : -2);
    }
    d->weights_heads = var->wmode == WM_NULL_HEADS ? NULL : var->heads;
    d->weights_nheads = var->wmode == WM_ZERO_HEADS ? 0 : (int64_t)var->nheads;
    var->heads_snap = fuzz_snapshot(var->heads, var->nheads * sizeof(int32_t));
  }
  if (var->slopes) var->slopes_snap = fuzz_snapshot(var->slopes, var->nhead * sizeof(float));
  if (var->sinks) var->sinks_snap = fuzz_snapshot(var->sinks, var->nhead * sizeof(float));
  var->any = m->align != MHA_ALIGN_BOTTOM_RIGHT || m->window != 0 || m->alibi_slopes != NULL ||
             m->softcap != 0.0f || m->sinks != NULL || var->lse != LSE_NONE;

  /* the weights in the mode's layout; a broken mode gets one slot */
  const int64_t slots = var->wmode == WM_NULL_HEADS || var->wmode == WM_ZERO_HEADS ||
                                var->wmode == WM_BAD_ENUM
                            ? 1 : core_weights_slots(d);
  const int64_t w_row = d->Tk, w_head = fuzz_mul_sat(d->Tq, w_row);
  c->view[ROLE_W] =
      (fuzz_view){d->B, slots, d->Tq, d->Tk, {fuzz_mul_sat(slots, w_head), w_head, w_row}};
  c->view[ROLE_LSE] = (fuzz_view){d->B, d->H, d->Tq, 1, {fuzz_mul_sat(d->H, d->Tq), d->Tq, 1}};
}

static void core_variants_free(core_variants* var) {
  free(var->slopes);
  free(var->sinks);
  free(var->heads);
  free(var->slopes_snap);
  free(var->sinks_snap);
  free(var->heads_snap);
}

static void core_describe(const core_case* c) {
  const mha_attention_desc* d = &c->desc;
  const mha_mask* m = &d->mask;
  fuzz_describe(
      "attention B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld q{%lld,%lld,%lld} "
      "k{%lld,%lld,%lld} v{%lld,%lld,%lld} out{%lld,%lld,%lld} causal=%d kv_len=%s%d "
      "additive=%s{%lld,%lld,%lld} scale=%a threads=%d isa=%d weights=%d workspace=%d null=%d "
      "alias=%d values=%d checks=0x%x align=%d offset=%lld window=%d{%lld,%lld} alibi=%s "
      "softcap=%a sinks=%s lse=%d weights_mode=%d{%d, nheads=%lld}",
      (long long)d->B, (long long)d->H, (long long)d->Hkv, (long long)d->Tq, (long long)d->Tk,
      (long long)d->D, (long long)d->Dv, (long long)d->q.batch, (long long)d->q.head,
      (long long)d->q.row, (long long)d->k.batch, (long long)d->k.head, (long long)d->k.row,
      (long long)d->v.batch, (long long)d->v.head, (long long)d->v.row, (long long)d->out.batch,
      (long long)d->out.head, (long long)d->out.row, m->causal, m->kv_len ? "[0]=" : "none/",
      m->kv_len ? (int)m->kv_len[0] : 0, m->additive ? "on" : "off",
      (long long)m->additive_strides.batch, (long long)m->additive_strides.head,
      (long long)m->additive_strides.row, (double)d->scale, d->num_threads, (int)d->isa,
      c->weights, (int)c->ws, (int)c->null, (int)c->alias, (int)c->values, c->checks,
      (int)m->align, (long long)m->offset, m->window, (long long)m->window_left,
      (long long)m->window_right, m->alibi_slopes ? "on" : "off", (double)m->softcap,
      m->sinks ? "on" : "off", (int)c->var.lse, (int)d->weights_mode, (int)c->var.wmode,
      (long long)d->weights_nheads);
}

/* ------------------------------------------------------------------------ */
/* The model                                                                */
/* ------------------------------------------------------------------------ */

/* The rules of the descriptor alone (include/mha.h, mha_attention_f32). */
static void core_expect_shape(core_case* c) {
  const mha_attention_desc* d = &c->desc;
  fuzz_expect* e = &c->shape;
  const struct { const char* name; int64_t value; } sizes[] = {
      {"B", d->B}, {"H", d->H}, {"Hkv", d->Hkv}, {"Tq", d->Tq},
      {"Tk", d->Tk}, {"D", d->D}, {"Dv", d->Dv}};
  int sizes_ok = 1;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      fuzz_require(e, MHA_STATUS_INVALID_SIZE, "%s = %lld", sizes[i].name,
                   (long long)sizes[i].value);
      sizes_ok = 0;
    }
  }
  if (sizes_ok && d->H % d->Hkv != 0) {
    fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "H %% Hkv != 0");
  }
  if (!isfinite(d->scale)) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "scale is not finite");
  if (d->num_threads < 0) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "num_threads < 0");
  fuzz_expect_isa(e, d->isa);
  const mha_mask* m = &d->mask;
  fuzz_expect_variant_fields(e, m);
  if ((int)d->weights_mode < 0 || (int)d->weights_mode > 2) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "weights_mode = %d", (int)d->weights_mode);
  } else if (c->weights && d->weights_mode == MHA_WEIGHTS_SELECTED) {
    if (d->weights_heads == NULL) {
      fuzz_require(e, MHA_STATUS_NULL_POINTER, "weights_heads is NULL");
    } else if (d->weights_nheads < 1) {
      fuzz_require(e, MHA_STATUS_INVALID_SIZE, "weights_nheads < 1");
    } else {
      for (int64_t k = 0; k < d->weights_nheads; k++) {
        if (d->weights_heads[k] < 0 || d->weights_heads[k] >= d->H) {
          fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "weights_heads[%lld] = %d", (long long)k,
                       (int)d->weights_heads[k]);
          break;
        }
      }
    }
  }
  for (int r = ROLE_Q; r <= ROLE_OUT; r++) {
    c->extent[r] = fuzz_expect_view(e, role_name[r], &c->view[r], r == ROLE_OUT, 0);
  }
  if (c->weights && sizes_ok && !fuzz_view_extent(&c->view[ROLE_W], &c->extent[ROLE_W])) {
    fuzz_require(e, MHA_STATUS_SIZE_OVERFLOW, "weights [B, slots, Tq, Tk] overflows");
  }
  /* lse [B, H, Tq] fits whenever out does (out addresses B·H·Tq·Dv elements) */
  if (c->var.lse == LSE_OWN && sizes_ok) fuzz_view_extent(&c->view[ROLE_LSE], &c->extent[ROLE_LSE]);
  const int64_t work = fuzz_mul_sat(
      fuzz_mul_sat(fuzz_mul_sat(fuzz_mul_sat(d->B, d->H), d->Tq), d->Tk), fuzz_add_sat(d->D, d->Dv));
  c->small = sizes_ok && work <= FUZZ_MAX_WORK && fuzz_mul_sat(fuzz_mul_sat(d->B, d->H), d->Tq) <= FUZZ_MAX_ROWS;
  if (!c->small) { /* a valid but huge problem may not fit in memory or size_t */
    fuzz_allow(e, MHA_STATUS_SIZE_OVERFLOW);
    fuzz_allow(e, MHA_STATUS_OUT_OF_MEMORY);
  }
}

static int core_role_used(const core_case* c, int r) {
  if (r == ROLE_W) return c->weights;
  if (r == ROLE_LSE) return c->var.lse == LSE_OWN;
  return 1;
}

/* slopes and sinks have H floats (or one standing in for a huge H) */
static int core_heads_tiny(const core_case* c) {
  return (c->var.slopes || c->var.sinks) && c->desc.H > 1 && c->var.nhead == 1;
}

/* Whether every buffer the call uses can have its full extent. */
static int core_extents_reasonable(const core_case* c) {
  for (int r = 0; r < ROLE_COUNT; r++) {
    if (core_role_used(c, r) && !fuzz_reasonable(c->extent[r])) return 0;
  }
  return 1;
}

/* The role an alias lays over another (dst over src; src -1: the mask).
 * Returns 0 when nothing is shared. */
static int core_alias_roles(const core_case* c, int* dst, int* src) {
  static const int pairs[][2] = {{-1, -1},           {ROLE_K, ROLE_Q},  {ROLE_V, ROLE_K},
                                 {ROLE_OUT, ROLE_Q}, {ROLE_OUT, ROLE_V}, {ROLE_W, ROLE_OUT},
                                 {ROLE_OUT, -1},     {ROLE_W, ROLE_K}};
  *dst = pairs[c->alias][0];
  *src = pairs[c->alias][1];
  if (*dst == ROLE_W && !c->weights) return 0; /* no weights: nothing shares */
  if (c->alias == ALIAS_OUT_IS_MASK) return c->mask.additive != NULL;
  return *dst >= 0;
}

/* The rules of the pointers: NULLs, outputs over inputs, the workspace. */
static void core_expect_call(core_case* c, size_t ws_needed, int ws_known) {
  fuzz_expect* e = &c->call;
  *e = c->shape;
  if (c->null >= NULL_Q && c->null <= NULL_OUT) {
    fuzz_require(e, MHA_STATUS_NULL_POINTER, "%s is NULL", role_name[c->null - NULL_Q]);
  }
  int dst, src;
  if (core_alias_roles(c, &dst, &src) && (dst == ROLE_OUT || dst == ROLE_W)) {
    fuzz_require(e, MHA_STATUS_INVALID_STRIDE, "%s shares its buffer with %s", role_name[dst],
                 src >= 0 ? role_name[src] : "mask.additive");
  }
  if (c->var.lse == LSE_IS_OUT || c->var.lse == LSE_IS_Q) {
    fuzz_require(e, MHA_STATUS_INVALID_STRIDE, "lse shares its buffer with %s",
                 c->var.lse == LSE_IS_OUT ? "out" : "q");
  }
  if (!core_extents_reasonable(c) || c->mask.tiny || core_heads_tiny(c)) {
    /* a one-float stand-in for a huge view: the span the library computes
     * from its strides may well cover another buffer */
    fuzz_allow(e, MHA_STATUS_INVALID_STRIDE);
  }
  if (c->ws == WS_SHORT || c->ws == WS_TINY || (c->ws != WS_NONE && !ws_known)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "workspace_size %zu < the %zu needed",
                 c->desc.workspace_size, ws_needed);
  }
}


/* NaN (or +inf) in one to three elements of K or V: "K/V rows hidden from
 * a query row (causal, kv_len, an additive -inf) never reach it, whatever
 * they hold", while the rows that see them turn NaN. The oracle reads the
 * same buffers and applies the same visibility, so it knows which rows. */
static void core_poison_kv(const core_case* c, core_buffers* b, fuzz_rng* r) {
  if (!(c->checks & (CHECK_BAD_KV_NAN | CHECK_BAD_KV_INF)) || !c->small ||
      !core_extents_reasonable(c)) {
    return;
  }
  const float bad = c->checks & CHECK_BAD_KV_INF ? INFINITY : NAN;
  for (uint64_t n = 1 + fuzz_next(r) % 3; n > 0; n--) {
    const int role = fuzz_next(r) & 1 ? ROLE_K : ROLE_V;
    *fuzz_view_pick(b->ptr[role], &c->view[role], r) = bad;
  }
}

static void core_buffers_make(const core_case* c, fuzz_rng* rng, core_buffers* b) {
  memset(b, 0, sizeof *b);
  int dst = -1, src = -1;
  const int aliased = core_alias_roles(c, &dst, &src);
  for (int r = 0; r < ROLE_COUNT; r++) {
    b->n[r] = fuzz_reasonable(c->extent[r]) ? (size_t)c->extent[r] : 1;
  }
  if (aliased && src >= 0 && b->n[dst] > b->n[src]) b->n[src] = b->n[dst];
  for (int r = 0; r < ROLE_COUNT; r++) {
    if (aliased && r == dst) continue;
    b->own[r] = fuzz_alloc(b->n[r]);
    b->ptr[r] = b->own[r];
    fuzz_fill_nan(b->own[r], b->n[r]);
  }
  if (aliased) {
    b->ptr[dst] = src >= 0 ? b->ptr[src] : (float*)c->mask.additive;
    b->n[dst] = src >= 0 ? b->n[src] : (size_t)c->mask.extent;
  }
  /* q and k set where the logits land; v stays in [-1, 1). HIGH: q·k/sqrt(D)
   * = sqrt(D)·x² in about [90, 100) at the default scale. */
  const float high = c->desc.D >= 1 ? sqrtf(95.0f / sqrtf((float)c->desc.D)) : 1.0f;
  const float qk_range[FUZZ_VALUES_COUNT][2] = {{-1, 1}, {high, 1.02f * high}, {-8, 8}};
  for (int r = ROLE_Q; r <= ROLE_V; r++) {
    const float* range = r == ROLE_V ? qk_range[FUZZ_VALUES_UNIT] : qk_range[c->values];
    if (fuzz_reasonable(c->extent[r])) {
      fuzz_fill_view(b->ptr[r], c->extent[r], &c->view[r], rng, range[0], range[1]);
    } else {
      b->ptr[r][0] = range[1];
    }
  }
  core_poison_kv(c, b, rng);
  /* outputs start poisoned, unless they lie over an input (then the call must fail) */
  for (int r = ROLE_OUT; r <= ROLE_LSE; r++) {
    if (b->own[r] != NULL) fuzz_poison(b->own[r], b->n[r]);
  }
  for (int r = 0; r < ROLE_COUNT; r++) {
    if (b->own[r] != NULL) b->snap[r] = fuzz_snapshot(b->own[r], b->n[r] * sizeof(float));
  }
  if (c->mask.additive) {
    b->mask_snap = fuzz_snapshot(c->mask.additive, (size_t)c->mask.extent * sizeof(float));
  }
  if (c->mask.kv_len) {
    b->kv_len_snap = fuzz_snapshot(c->mask.kv_len, (size_t)c->desc.B * sizeof(int32_t));
  }
}

static void core_buffers_free(core_buffers* b) {
  for (int r = 0; r < ROLE_COUNT; r++) {
    free(b->own[r]);
    free(b->snap[r]);
  }
  free(b->mask_snap);
  free(b->kv_len_snap);
}

/* Inputs never change; on failure nothing changes at all. */
static void core_check_untouched(const core_case* c, const core_buffers* b, int failed) {
  for (int r = 0; r < ROLE_COUNT; r++) {
    const int output = r == ROLE_OUT || r == ROLE_W || r == ROLE_LSE;
    if (b->own[r] == NULL || (output && !failed)) continue;
    fuzz_check_unchanged(role_name[r], b->own[r], b->snap[r], b->n[r] * sizeof(float));
  }
  if (c->mask.additive) {
    fuzz_check_unchanged("mask.additive", c->mask.additive, b->mask_snap,
                         (size_t)c->mask.extent * sizeof(float));
  }
  if (c->mask.kv_len) {
    fuzz_check_unchanged("mask.kv_len", c->mask.kv_len, b->kv_len_snap,
                         (size_t)c->desc.B * sizeof(int32_t)); /* kv_len exists only for B >= 1 */
  }
  const core_variants* var = &c->var;
  if (var->slopes) {
    fuzz_check_unchanged("mask.alibi_slopes", var->slopes, var->slopes_snap, var->nhead * sizeof(float));
  }
  if (var->sinks) {
    fuzz_check_unchanged("mask.sinks", var->sinks, var->sinks_snap, var->nhead * sizeof(float));
  }
  if (var->heads) {
    fuzz_check_unchanged("weights_heads", var->heads, var->heads_snap, var->nheads * sizeof(int32_t));
  }
}

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/* The outputs of one successful call, dense. */
typedef struct core_result {
  float* out;     /* [B, H, Tq, Dv] */
  float* weights; /* [B, slots, Tq, Tk] or NULL */
  float* lse;     /* [B, H, Tq] or NULL */
} core_result;

/* Every element of the out view (n floats at buf) was written, and nothing
 * around it; returns the view gathered dense. */
static float* core_take_out(const fuzz_view* v, float* buf, size_t n) {
  const size_t count = (size_t)(v->n0 * v->n1 * v->n2 * v->width);
  float* dense = fuzz_alloc(count);
  fuzz_gather(buf, v, dense);
  for (size_t i = 0; i < count; i++) {
    if (fuzz_is_poison(dense[i])) fuzz_finding("out element %zu of %zu was not written", i, count);
  }
  fuzz_poison_view(buf, v);
  for (size_t i = 0; i < n; i++) {
    if (!fuzz_is_poison(buf[i])) fuzz_finding("out: offset %zu, outside the view, was written", i);
  }
  return dense;
}

static size_t core_weights_count(const mha_attention_desc* d) {
  return (size_t)(d->B * core_weights_slots(d) * d->Tq * d->Tk);
}

static size_t core_lse_count(const mha_attention_desc* d) { return (size_t)(d->B * d->H * d->Tq); }

static void core_take_weights(const float* w, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (fuzz_is_poison(w[i])) fuzz_finding("weights element %zu was not written", i);
  }
}

static void core_take_lse(const float* lse, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (fuzz_is_poison(lse[i])) fuzz_finding("lse element %zu was not written", i);
  }
}

/* Runs d (another kernel set, thread count, weights choice or batch entry)
 * into fresh poisoned outputs; it must succeed. */
static core_result core_rerun(const mha_attention_desc* d, const float* q, const float* k,
                              const float* v, int weights, const char* what) {
  const fuzz_view ov = core_out_view(d);
  int64_t n_out;
  fuzz_view_extent(&ov, &n_out); /* the first call validated it */
  float* out = fuzz_alloc((size_t)n_out);
  fuzz_poison(out, (size_t)n_out);
  core_result res = {NULL, NULL, NULL};
  if (weights) {
    res.weights = fuzz_alloc(core_weights_count(d));
    fuzz_poison(res.weights, core_weights_count(d));
  }
  mha_attention_desc dl = *d; /* a fresh lse output where the call has one */
  if (d->lse != NULL) {
    res.lse = fuzz_alloc(core_lse_count(d));
    fuzz_poison(res.lse, core_lse_count(d));
    dl.lse = res.lse;
  }
  const mha_status st = mha_attention_f32(&dl, q, k, v, out, res.weights);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("the %s rerun failed with %s: %s", what, mha_status_string(st), mha_last_error());
  }
  res.out = core_take_out(&ov, out, (size_t)n_out);
  if (res.weights) core_take_weights(res.weights, core_weights_count(d));
  if (res.lse) core_take_lse(res.lse, core_lse_count(d));
  free(out);
  return res;
}

static void core_result_free(core_result* r) {
  free(r->out);
  free(r->weights);
  free(r->lse);
}

/* got (and again, when not NULL) bitwise equal to the first result's weights and lse. */
static void core_check_same(const char* what, const mha_attention_desc* d, const core_result* got,
                            const core_result* again) {
  char name[96];
  if (got->weights && again->weights) {
    snprintf(name, sizeof name, "weights %s", what);
    fuzz_check_identical(name, got->weights, again->weights, core_weights_count(d));
  }
  if (got->lse && again->lse) {
    snprintf(name, sizeof name, "lse %s", what);
    fuzz_check_identical(name, got->lse, again->lse, core_lse_count(d));
  }
}

/* The oracle's per-head weights [B, H, Tq, Tk] (and their tolerances) in
 * the layout of weights_mode: the mean over heads (with the rounding of a
 * float sum of H terms and the division), or the chosen heads. */
static void core_weights_layout(const mha_attention_desc* d, const double* w, const double* w_tol,
                                double* lw, double* lw_tol) {
  const int64_t H = d->H, slots = core_weights_slots(d);
  const size_t per = (size_t)(d->Tq * d->Tk);
  for (int64_t b = 0; b < d->B; b++) {
    for (int64_t k = 0; k < slots; k++) {
      double* o = lw + (size_t)(b * slots + k) * per;
      double* ot = lw_tol + (size_t)(b * slots + k) * per;
      if (d->weights_mode == MHA_WEIGHTS_HEAD_MEAN) {
        for (size_t x = 0; x < per; x++) {
          double sum = 0.0, tol = 0.0;
          for (int64_t h = 0; h < H; h++) {
            sum += w[(size_t)(b * H + h) * per + x];
            tol += w_tol[(size_t)(b * H + h) * per + x];
          }
          o[x] = sum / (double)H;
          ot[x] = tol / (double)H + (double)(H + 2) * TOLERANCE_EPS * fabs(o[x]) + FLT_MIN;
        }
      } else {
        const int64_t h = d->weights_mode == MHA_WEIGHTS_SELECTED ? d->weights_heads[k] : k;
        memcpy(o, w + (size_t)(b * H + h) * per, per * sizeof(double));
        memcpy(ot, w_tol + (size_t)(b * H + h) * per, per * sizeof(double));
      }
    }
  }
}

/* lse against the oracle: NaN rows NaN, infinite ones (-inf: no visible key
 * and no sink) exactly, the rest within the derived tolerance. */
static void core_check_lse(size_t n, const float* got, const float* ref, const double* oracle,
                           const double* tol) {
  for (size_t i = 0; i < n; i++) {
    const double o = oracle[i], t = tol[i], g = got[i], s = ref != NULL ? ref[i] : g;
    int ok;
    if (isnan(o)) {
      ok = isnan(g) && isnan(s);
    } else if (!isfinite(o)) {
      ok = g == o && s == o;
    } else {
      if (!isfinite(t)) continue; /* the bound is vacuous (logits overflow float) */
      ok = fabs(g - o) <= t && fabs(s - o) <= t;
    }
    if (!ok) {
      fuzz_finding("lse row %zu: got %.9g, scalar %.9g, oracle %.9g, tolerance %.3g", i, g, s, o, t);
    }
  }
}

/* The naive double oracle and its derived tolerance (tests/oracle.c,
 * tests/tolerance.c; with a variant, oracle_attention_lse and
 * tests/variant-tolerance.c) against the tested and the scalar results. */
static void core_check_oracle(const core_case* c, const core_buffers* b, const core_result* got,
                              const core_result* scalar) {
  const mha_attention_desc* d = &c->desc;
  const int64_t B = d->B, H = d->H, Hkv = d->Hkv, Tq = d->Tq, Tk = d->Tk, D = d->D, Dv = d->Dv;
  double* q = malloc((size_t)(B * H * Tq * D) * sizeof(double));
  double* k = malloc((size_t)(B * Hkv * Tk * D) * sizeof(double));
  double* v = malloc((size_t)(B * Hkv * Tk * Dv) * sizeof(double));
  double* out = malloc((size_t)(B * H * Tq * Dv) * sizeof(double));
  double* out_tol = malloc((size_t)(B * H * Tq * Dv) * sizeof(double));
  const size_t n_wh = (size_t)(B * H * Tq * Tk), n_lse = core_lse_count(d);
  double* w = malloc(n_wh * sizeof(double));
  double* w_tol = malloc(n_wh * sizeof(double));
  double* lse = malloc(n_lse * sizeof(double));
  double* lse_tol = malloc(n_lse * sizeof(double));
  if (!q || !k || !v || !out || !out_tol || !w || !w_tol || !lse || !lse_tol) exit(2);
  oracle_gather(B, H, Tq, D, b->ptr[ROLE_Q], (oracle_strides){d->q.batch, d->q.head, d->q.row}, q);
  oracle_gather(B, Hkv, Tk, D, b->ptr[ROLE_K], (oracle_strides){d->k.batch, d->k.head, d->k.row}, k);
  oracle_gather(B, Hkv, Tk, Dv, b->ptr[ROLE_V], (oracle_strides){d->v.batch, d->v.head, d->v.row}, v);
  const mha_strides* as = &d->mask.additive_strides;
  const mha_mask* m = &d->mask;
  const oracle_attention_problem p = {
      .B = B, .H = H, .Hkv = Hkv, .Tq = Tq, .Tk = Tk, .D = D, .Dv = Dv,
      .q = q, .k = k, .v = v,
      .q_strides = {H * Tq * D, Tq * D, D},
      .k_strides = {Hkv * Tk * D, Tk * D, D},
      .v_strides = {Hkv * Tk * Dv, Tk * Dv, Dv},
      .scale = d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)D),
      .causal = d->mask.causal,
      .kv_len = d->mask.kv_len,
      .additive = d->mask.additive,
      .additive_strides = {as->batch, as->head, as->row},
      .var = {.align = (int)m->align, .offset = m->offset, .window = m->window,
              .window_left = m->window_left, .window_right = m->window_right,
              .alibi_slopes = m->alibi_slopes, .softcap = (double)m->softcap,
              .sinks = m->sinks}};
  if (c->var.any) {
    oracle_attention_lse(&p, out, w, lse);
    variant_tolerance_attention(&p, NULL, w, lse, out_tol, w_tol, lse_tol);
  } else {
    oracle_attention(&p, out, w);
    tolerance_attention(&p, NULL, w, out_tol, w_tol);
  }
  const int64_t out_dims[4] = {B, H, Tq, Dv};
  fuzz_check_close("out", out_dims, got->out, scalar ? scalar->out : NULL, out, out_tol);
  if (got->weights) {
    const int64_t w_dims[4] = {B, core_weights_slots(d), Tq, Tk};
    double* lw = malloc(core_weights_count(d) * sizeof(double));
    double* lw_tol = malloc(core_weights_count(d) * sizeof(double));
    if (!lw || !lw_tol) exit(2);
    core_weights_layout(d, w, w_tol, lw, lw_tol);
    fuzz_check_close("weights", w_dims, got->weights, scalar ? scalar->weights : NULL, lw, lw_tol);
    free(lw); free(lw_tol);
  }
  if (got->lse) core_check_lse(n_lse, got->lse, scalar ? scalar->lse : NULL, lse, lse_tol);
  free(q); free(k); free(v); free(out); free(out_tol); free(w); free(w_tol);
  free(lse); free(lse_tol);
}

/* One batch entry alone (B = 1, every pointer moved to it) gives the bits
 * it had in the whole batch. */
static void core_check_entry(const core_case* c, const core_buffers* b, const core_result* got,
                             fuzz_rng* rng) {
  mha_attention_desc d = c->desc;
  const int64_t e = (int64_t)(fuzz_next(rng) % (uint64_t)d.B);
  d.B = 1;
  d.workspace = NULL;
  d.workspace_size = 0;
  if (d.mask.kv_len) d.mask.kv_len += e;
  if (d.mask.additive) d.mask.additive += e * d.mask.additive_strides.batch;
  /* d.lse only says that there is one: core_rerun passes a fresh buffer */
  core_result one = core_rerun(&d, b->ptr[ROLE_Q] + e * d.q.batch, b->ptr[ROLE_K] + e * d.k.batch,
                               b->ptr[ROLE_V] + e * d.v.batch, c->weights, "single-entry");
  const size_t n_out = (size_t)(d.H * d.Tq * d.Dv), n_w = core_weights_count(&d);
  fuzz_check_identical("out of one entry", got->out + (size_t)e * n_out, one.out, n_out);
  if (got->weights) {
    fuzz_check_identical("weights of one entry", got->weights + (size_t)e * n_w, one.weights, n_w);
  }
  if (got->lse) {
    const size_t n_lse = core_lse_count(&d);
    fuzz_check_identical("lse of one entry", got->lse + (size_t)e * n_lse, one.lse, n_lse);
  }
  core_result_free(&one);
}

/* The set on which a bf16 call widens to fp32: the call's (the process
 * default's for MHA_ISA_DEFAULT), or for a set with a BF16 unit the set it
 * copies (include/mha.h: the BF16 form has its own contract, which
 * attention-bf16-test checks against the oracle). */
static mha_isa core_widening_isa(mha_isa isa) {
  if (isa == MHA_ISA_DEFAULT && mha_get_isa(&isa) != MHA_STATUS_SUCCESS) return MHA_ISA_DEFAULT;
  return tester_widening_isa(isa);
}

/* mha_attention on 16-bit copies of q, k and v (fuzz_to16 of every buffer
 * element: the gaps stay NaN): it must succeed where the fp32 call did, give
 * bitwise the fp32 call on the widened copies rounded once (include/mha.h;
 * bf16 on the widening set), and write nothing outside out's view. Where the
 * call's set computes bf16 on a BF16 unit, that call too must succeed and
 * keep to out's view. */
static void core_check_16(const core_case* c, const core_buffers* b) {
  /* both types from the seed corpus: odd Tq picks f16, checks bit 5 flips it */
  const int f16 = ((c->checks & CHECK_F16) != 0) != ((c->desc.Tq & 1) != 0);
  const mha_dtype dt = f16 ? MHA_DTYPE_F16 : MHA_DTYPE_BF16;
  mha_attention_desc d = c->desc;
  d.workspace = NULL;
  d.workspace_size = 0;
  d.lse = NULL;
  const mha_isa own = d.isa;
  if (!f16) d.isa = core_widening_isa(d.isa);
  uint16_t* x16[3];
  float* xw[3];
  for (int r = ROLE_Q; r <= ROLE_V; r++) fuzz_copy16(b->ptr[r], b->n[r], f16, &x16[r], &xw[r]);
  const size_t n_out = b->n[ROLE_OUT];
  float* ow = malloc(n_out * sizeof(float) + 1);
  uint16_t* o16 = malloc(n_out * sizeof(uint16_t) + 1);
  if (ow == NULL || o16 == NULL) exit(2);
  fuzz_poison(ow, n_out);
  for (size_t i = 0; i < n_out; i++) o16[i] = 0x7fa5; /* a NaN no call writes */
  mha_status st = mha_attention_f32(&d, xw[ROLE_Q], xw[ROLE_K], xw[ROLE_V], ow, NULL);
  if (st != MHA_STATUS_SUCCESS) fuzz_finding("fp32 call on the widened 16-bit copies: %s", mha_status_string(st));
  st = mha_attention(&d, dt, x16[ROLE_Q], x16[ROLE_K], x16[ROLE_V], o16, NULL);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("mha_attention (%s) failed where mha_attention_f32 succeeded: %s: %s", f16 ? "f16" : "bf16",
                 mha_status_string(st), mha_last_error());
  }
  for (size_t i = 0; i < n_out; i++) {
    const float got = fuzz_widen16(o16[i], f16);
    if (fuzz_is_poison(ow[i])) { /* not written by the fp32 call: a gap of the view */
      if (o16[i] != 0x7fa5) fuzz_finding("mha_attention wrote out[%zu], outside its view", i);
      continue;
    }
    if (isnan(ow[i])) {
      if (!isnan(got)) fuzz_finding("out[%zu]: NaN in fp32, %g in 16 bits", i, (double)got);
      continue;
    }
    const float want = fuzz_round16(ow[i], f16);
    if (memcmp(&got, &want, sizeof got) != 0) {
      fuzz_finding("out[%zu] = %a, not the fp32 call's %a rounded (%a)", i, (double)got, (double)ow[i],
                   (double)want);
    }
  }
  /* the call's own set, where it is not the widening one: its BF16 form */
  mha_isa own_set = own;
  if (own_set == MHA_ISA_DEFAULT && mha_get_isa(&own_set) != MHA_STATUS_SUCCESS) own_set = d.isa;
  if (!f16 && own_set != d.isa) {
    mha_attention_desc du = d;
    du.isa = own_set;
    for (size_t i = 0; i < n_out; i++) o16[i] = 0x7fa5;
    st = mha_attention(&du, dt, x16[ROLE_Q], x16[ROLE_K], x16[ROLE_V], o16, NULL);
    if (st != MHA_STATUS_SUCCESS) {
      fuzz_finding("mha_attention (bf16, the BF16 form of %s) failed where the widening set succeeded: %s: %s",
                   mha_isa_name(own_set), mha_status_string(st), mha_last_error());
    }
    for (size_t i = 0; i < n_out; i++) {
      if (fuzz_is_poison(ow[i]) && o16[i] != 0x7fa5) fuzz_finding("the BF16 form wrote out[%zu], outside its view", i);
    }
  }
  for (int r = ROLE_Q; r <= ROLE_V; r++) free(x16[r]), free(xw[r]);
  free(ow), free(o16);
}

/* After a successful call: the outputs, the scalar set, the oracle, the
 * reruns that must keep the bits. */
static void core_check_success(const core_case* c, const core_buffers* b, fuzz_rng* rng) {
  const fuzz_view ov = core_out_view(&c->desc);
  core_result got = {core_take_out(&ov, b->ptr[ROLE_OUT], b->n[ROLE_OUT]),
                     c->weights ? b->ptr[ROLE_W] : NULL, c->desc.lse};
  if (got.weights) core_take_weights(got.weights, core_weights_count(&c->desc));
  if (got.lse) core_take_lse(got.lse, core_lse_count(&c->desc));
  const float *q = b->ptr[ROLE_Q], *k = b->ptr[ROLE_K], *v = b->ptr[ROLE_V];
  mha_attention_desc d = c->desc;
  d.workspace = NULL; /* the reruns allocate their own: that must not change the bits */
  d.workspace_size = 0;

  core_result scalar = {NULL, NULL, NULL};
  if (d.isa != MHA_ISA_SCALAR) {
    mha_attention_desc ds = d;
    ds.isa = MHA_ISA_SCALAR;
    scalar = core_rerun(&ds, q, k, v, c->weights, "scalar");
  }
  core_check_oracle(c, b, &got, d.isa != MHA_ISA_SCALAR ? &scalar : NULL);
  core_result_free(&scalar);

  const size_t n_out = (size_t)(ov.n0 * ov.n1 * ov.n2 * ov.width);
  if (c->checks & CHECK_THREADS) {
    mha_attention_desc dt = d;
    dt.num_threads = d.num_threads == 1 ? 2 : 1;
    core_result again = core_rerun(&dt, q, k, v, c->weights, "thread-count");
    fuzz_check_identical("out at another thread count", got.out, again.out, n_out);
    core_check_same("at another thread count", &d, &got, &again);
    core_result_free(&again);
  }
  if (c->checks & CHECK_WEIGHTS) { /* "Requesting weights does not change the bits of out" */
    mha_attention_desc dw = d;
    if (!c->weights && dw.weights_mode == MHA_WEIGHTS_SELECTED && c->var.wmode != WM_SELECTED) {
      dw.weights_mode = MHA_WEIGHTS_PER_HEAD; /* the heads are broken: the call ignored them */
    }
    core_result again = core_rerun(&dw, q, k, v, !c->weights, "weights-toggled");
    fuzz_check_identical("out with weights toggled", got.out, again.out, n_out);
    if (got.lse && again.lse) {
      fuzz_check_identical("lse with weights toggled", got.lse, again.lse, core_lse_count(&d));
    }
    core_result_free(&again);
  }
  if ((c->checks & CHECK_ENTRY) && d.B > 1) core_check_entry(c, b, &got, rng);
  if (c->small && core_extents_reasonable(c)) core_check_16(c, b);
  free(got.out);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/* The workspace query: the descriptor's rules, pointers aside. */
static mha_status core_query(const core_case* c, size_t* bytes) {
  fuzz_expect e = c->shape;
  if (c->null == NULL_DESC || c->null == NULL_BYTES) {
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "%s is NULL", c->null == NULL_DESC ? "desc" : "bytes");
  }
  *bytes = 0;
  const mha_status st = mha_attention_workspace_size(c->null == NULL_DESC ? NULL : &c->desc,
                                                     c->weights, c->null == NULL_BYTES ? NULL : bytes);
  fuzz_check_status("mha_attention_workspace_size", st, &e);
  if (st == MHA_STATUS_SUCCESS && *bytes == 0) fuzz_finding("workspace size 0");
  return st;
}

/* A caller workspace as the mode says: exact, misaligned, short or tiny. */
static void* core_workspace(core_case* c, size_t needed, int known) {
  if (c->ws == WS_NONE || (known && (int64_t)needed > FUZZ_MAX_BUFFER_BYTES)) {
    c->ws = WS_NONE;
    return NULL;
  }
  size_t size = 1, offset = 0;
  if (known && c->ws == WS_EXACT) size = needed;
  if (known && c->ws == WS_MISALIGNED) size = needed, offset = 1 + needed % 63;
  if (known && c->ws == WS_SHORT) size = needed - 1;
  char* ws = malloc(size + offset);
  if (ws == NULL) exit(2);
  c->desc.workspace = ws + offset;
  c->desc.workspace_size = size;
  return ws;
}

static void core_run(core_case* c, fuzz_rng* rng) {
  core_expect_shape(c);
  core_describe(c);
  size_t needed;
  const mha_status qst = core_query(c, &needed);
  const int known = qst == MHA_STATUS_SUCCESS && c->null != NULL_BYTES;
  void* ws = core_workspace(c, needed, known);
  core_expect_call(c, known ? needed : 0, known);
  if (c->call.required == 0 &&
      !(c->small && core_extents_reasonable(c) && !c->mask.tiny && !core_heads_tiny(c))) {
    free(ws); /* valid, but too big to run here (a tiny stand-in would be read) */
    return;
  }

  core_buffers b;
  core_buffers_make(c, rng, &b);
  const float* lse_at[] = {NULL, b.ptr[ROLE_LSE], b.ptr[ROLE_OUT], b.ptr[ROLE_Q]};
  c->desc.lse = (float*)lse_at[c->var.lse];
  const float* ptr[ROLE_COUNT];
  for (int r = 0; r < ROLE_COUNT; r++) {
    ptr[r] = c->null == (null_mode)(NULL_Q + r) ? NULL : b.ptr[r];
  }
  fuzz_expect e = c->call;
  if (c->null == NULL_DESC) {
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "desc is NULL");
  }
  const mha_status st =
      mha_attention_f32(c->null == NULL_DESC ? NULL : &c->desc, ptr[ROLE_Q], ptr[ROLE_K],
                        ptr[ROLE_V], (float*)ptr[ROLE_OUT], c->weights ? b.ptr[ROLE_W] : NULL);
  fuzz_check_status("mha_attention_f32", st, &e);
  core_check_untouched(c, &b, st != MHA_STATUS_SUCCESS);
  /* "Checks desc like the call does (pointers aside) and returns the same
   * statuses": where the pointers cannot matter (real, separate buffers) */
  const int pointers_fine = c->null == NULL_NONE && c->alias == ALIAS_NONE && c->ws == WS_NONE &&
                            core_extents_reasonable(c) && !c->mask.tiny && !core_heads_tiny(c) &&
                            (c->var.lse == LSE_NONE || c->var.lse == LSE_OWN);
  if (pointers_fine && st != qst && st != MHA_STATUS_OUT_OF_MEMORY) {
    fuzz_finding("the call returned %s but the workspace query %s", mha_status_string(st),
                 mha_status_string(qst));
  }
  if (st == MHA_STATUS_SUCCESS) core_check_success(c, &b, rng);
  core_buffers_free(&b);
  free(ws);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_input in = {data, size};
  fuzz_rng rng = fuzz_rng_from(data, size);
  core_case c;
  core_decode(&in, &rng, &c);
  fuzz_rng vrng = rng; /* the variants' arrays: a stream of their own */
  vrng.state ^= 0xD1B54A32D192ED03ull;
  core_decode_variants(&in, &vrng, &c);
  core_run(&c, &rng);
  fuzz_mask_free(&c.mask);
  core_variants_free(&c.var);
  return 0;
}
