/*
 * libFuzzer harness of packed variable-length batches:
 * mha_attention_varlen_f32() and mha_attention_varlen_workspace_size() over
 * fuzzed sequence lengths (empty queries, empty keys, decode-like and
 * prefill-like sequences in one batch), bounds Tq / Tk (tight, loose, too
 * short, huge), broken offsets, packed view layouts, the attention variants
 * (alignment, window, ALiBi, soft-cap, sinks, lse), thread counts, kernel
 * sets, caller workspaces, NULL pointers and outputs laid over inputs (q,
 * cu_seqlens_q, cu_seqlens_k) or over each other.
 *
 * Input bytes, front to back (fuzz-common.h decodes the shared fields; every
 * field has a default once the input runs out; make_seeds.py writes the
 * same):
 *   B, Hkv            sizes (fuzz_size; defaults 3, 1)
 *   H mode            < 0xC0: H = Hkv · (1 + byte % 4); else a size follows
 *   D, Dv             sizes (defaults 8, 8)
 *   share             % 4: 0-1 independent lengths; 2 len_k = len_q; 3 the
 *                     same and cu_seqlens_k is cu_seqlens_q (one array)
 *   Tq, Tk            the bounds, one byte each, % 16: 0-7 the longest
 *                     length (1 when all are 0); 8-10 longer by
 *                     1 + (byte >> 4); 11 one shorter (INVALID_ARGUMENT, or
 *                     INVALID_SIZE at 0); 12 2^31, 13 2^62, 14 INT64_MAX
 *                     (valid: same bits); 15 a size follows (fuzz_size)
 *   offsets           % 8: 0-4 good; 5 cu[0] = 1, -1, INT32_MIN, INT32_MAX
 *                     by (byte >> 4) % 4; 6 a decreasing pair; 7 NULL;
 *                     bit 3: cu_seqlens_k broken instead of cu_seqlens_q
 *   causal            < 0xF0: byte & 1; else 2, -1, INT_MIN (bad)
 *   kv mask           % 8: 6 mask.kv_len set, 7 mask.additive set (both
 *                     INVALID_ARGUMENT); else neither
 *   align             < 0xF0: byte % 4 (mha_align); 0xF0: 4, 0xF1: -1 (bad)
 *   offset            (default 0x20) < 0xF8: byte % 64 - 32; 0xF8.. : 2^60,
 *                     -2^60, INT64_MAX, INT64_MIN (bad with ALIGN_OFFSET),
 *                     2^60 - 1, -(2^60 - 1), 1000, -1000
 *   window            < 0xF0: byte & 1; 0xF0: 2, 0xF1: -1 (bad)
 *   left, right       < 0xF0: byte % 16; 0xF0.. : -1, INT64_MIN (bad with a
 *                     window), INT64_MAX, 2^62, 2^62 + 1, 64, 300
 *   alibi             % 8: 0, 7 off; slopes in 1 [0, 1), 2 [0, 1/16),
 *                     3 [-1, 1); 4, 5, 6: one slope +inf, -inf, NaN (bad)
 *   softcap           < 0x80: 0; < 0xF0: 0.5 + (byte - 0x80) / 2; 0xF0..:
 *                     NaN, -1, inf, -inf (bad), -0, FLT_MIN, FLT_MAX, 1e-3
 *   sinks             % 8: 0, 7 off; 1 [-4, 4); 2 the same with some -inf;
 *                     3 [80, 100); 4 all -inf; 5, 6: one +inf, NaN (bad)
 *   lse               < 0xF0: bit 0: an lse output [total_q, H]; 0xF0: lse
 *                     over out, 0xF1: over cu_seqlens_q, 0xF2: over
 *                     cu_seqlens_k (INVALID_STRIDE)
 *   scale             fuzz_scale
 *   values            % 4: q, k in [-1, 1); logits about 90..100; q, k in
 *                     [-8, 8); 3: [-1, 1) with NaN in 1-3 K/V elements
 *   num_threads, isa  fuzz_threads, fuzz_isa
 *   workspace         % 8: 0-2 none, 3 exact, 4 exact but misaligned, 5 one
 *                     byte short (INVALID_ARGUMENT), 6 over out, 7 over q
 *                     (INVALID_STRIDE)
 *   null              0xF0..0xF5: q, k, v, out, desc, the query's bytes
 *   alias             0xF0: out = q; 0xF1: out over cu_seqlens_q; 0xF2: out
 *                     over cu_seqlens_k (INVALID_STRIDE)
 *   q, k, v, out      layouts of the packed rows: < 0x80 packed
 *                     [total, heads, width] = {0, width, heads·width}; else
 *                     by (byte - 0x80) % 10: 0 head-major [heads, total,
 *                     width]; 1 padded (+ a byte: pad 1 + byte % 16 after
 *                     each head and row); 2 packed with batch stride
 *                     INT64_MAX, 3 with batch stride -1 (batch strides are
 *                     not used); 4 head stride 0; 5 row stride width - 1;
 *                     6 row stride negative; 7 head stride = row stride =
 *                     width; 8 row stride 2^62; 9 explicit (+ three sizes:
 *                     batch, head, row)
 *   lengths           per sequence b < 32: len_q, len_k (one byte each);
 *                     later sequences draw len_q in 0..2, len_k in 0..3.
 *                     len_q: < 0xF0: byte % 33; else 33 + 8·(byte - 0xF0)
 *                     (to 153). len_k: < 0xE0: byte % 41; 0xE0..0xEF:
 *                     64 + 32·(byte - 0xE0) (to 544: a decode step); 0xF0..: 0
 *   (the slopes, sinks, values and placements are drawn from a generator
 *   seeded with the whole input)
 *
 * Per input: the model of include/mha.h says which statuses each call may
 * return. The views are checked as the packed rows ([1, heads, total rows,
 * width], batch strides unused); buffers have exactly the extent their
 * strides address, inputs are random with NaN in the gaps, outputs are
 * poisoned, and out and lse go on for two poisoned packed rows (and a few
 * floats) past total_q. A failed call must return a status the model
 * requires, with a fresh mha_last_error(), and leave out, lse, the offsets
 * and every input bitwise as they were. A successful call must write every
 * packed row of out (and lse entry) and nothing else, give every sequence
 * BITWISE the out rows and lse entries of the same sequence called alone
 * through mha_attention_f32 (B = 1, Tq = len_q, Tk = len_k, views at its
 * rows; a sequence without keys: Tk = 1 with kv_len {0}, and then zeros and
 * lse -inf or its sink), and keep its bits at another thread count and with
 * other bounds (whose workspace query must not change either). Batches above
 * FUZZ_MAX_WORK multiply-adds or FUZZ_MAX_ROWS query rows are only queried and
 * validated.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

/* Sequences whose lengths come from the input; later ones draw theirs. */
#define VL_DECODED_SEQS 32
/* The largest B whose offsets the harness builds; between this and
 * VL_B_OVERFLOW only calls with NULL offsets are made. */
#define VL_MAX_B ((int64_t)1 << 12)
/* From here cu_seqlens [B + 1] cannot exist: its bytes overflow int64. */
#define VL_B_OVERFLOW ((int64_t)1 << 61)
/* Sequences compared with the same sequence alone (a sample when B is larger). */
#define VL_MAX_ALONE 12
/* Poisoned floats of out (and lse entries) past the packed rows: two
 * packed rows and this many more. */
#define VL_SLACK 7
/* Slopes and sinks exist (H floats) up to this H. */
#define VL_MAX_HEAD_ARRAY ((int64_t)1 << 16)
/* A marker left in mha_last_error() before each call: a failed call must replace it. */
#define VL_STALE "mha-fuzz-stale-error-marker"

enum { ROLE_Q, ROLE_K, ROLE_V, ROLE_OUT, ROLE_COUNT };
static const char* const role_name[ROLE_COUNT] = {"q", "k", "v", "out"};

typedef enum { SHARE_NONE, SHARE_LENGTHS, SHARE_ARRAY } share_mode;
typedef enum {
  BOUND_TIGHT,
  BOUND_LOOSE,
  BOUND_SHORT,
  BOUND_2P31,
  BOUND_2P62,
  BOUND_MAX,
  BOUND_SIZE
} bound_kind;
typedef enum { CU_GOOD, CU_FIRST, CU_DECREASING, CU_NULL } cu_break;
typedef enum { XMASK_NONE, XMASK_KV_LEN, XMASK_ADDITIVE } xmask_mode;
typedef enum { LSE_NONE, LSE_OWN, LSE_OVER_OUT, LSE_OVER_CU_Q, LSE_OVER_CU_K } lse_mode;
typedef enum { WS_NONE, WS_EXACT, WS_MISALIGNED, WS_SHORT, WS_OVER_OUT, WS_OVER_Q } ws_mode;
typedef enum { NULL_NONE, NULL_Q, NULL_K, NULL_V, NULL_OUT, NULL_DESC, NULL_BYTES } null_mode;
typedef enum { ALIAS_NONE, ALIAS_OUT_IS_Q, ALIAS_OUT_OVER_CU_Q, ALIAS_OUT_OVER_CU_K } alias_mode;
typedef enum {
  LAY_PACKED,
  LAY_HEAD_MAJOR,
  LAY_PADDED,
  LAY_BATCH_JUNK,
  LAY_BATCH_NEG,
  LAY_HEAD_ZERO,
  LAY_ROW_SHORT,
  LAY_ROW_NEG,
  LAY_HEADS_OVER_ROWS,
  LAY_HUGE_ROW,
  LAY_EXPLICIT,
  LAY_COUNT
} layout_kind;

typedef struct vl_layout {
  layout_kind kind;
  int64_t pad;         /* LAY_PADDED */
  mha_strides given;   /* LAY_EXPLICIT */
} vl_layout;

typedef struct vl_case {
  mha_attention_desc desc;
  /* decoded */
  share_mode share;
  bound_kind bound[2];
  int64_t bound_arg[2];
  cu_break brk;
  int brk_k;           /* the broken array is cu_seqlens_k */
  int brk_param;
  xmask_mode xmask;
  int alibi, sinks;    /* modes (% 8) */
  lse_mode lse;
  int values;
  ws_mode ws;
  null_mode null;
  alias_mode alias;
  vl_layout lay[ROLE_COUNT];
  /* the batch */
  int64_t nseq;        /* sequences with lengths: B when 1 <= B <= VL_MAX_B, else 0 */
  int64_t ncu;         /* entries of each offsets array: nseq + 1, 1 (B < 1 or huge), 0 (none) */
  int64_t *len_q, *len_k;
  int32_t *cu_q, *cu_k; /* the offsets' values (cu_k == cu_q with SHARE_ARRAY), or NULL */
  int cu_q_null, cu_k_null;
  int offsets_ok;      /* the offsets are good and fit the bounds: the totals are the call's */
  int64_t total_q, total_k, max_q, max_k;
  int64_t rows_q, rows_k; /* max(total, 1): the rows the views are checked on */
  /* the variants' arrays */
  float *slopes, *sink_vals;
  size_t nhead;
  int32_t* kv_len;
  float* additive;
  /* views of the packed rows, [1, heads, rows, width] */
  fuzz_view view[ROLE_COUNT];
  int64_t extent[ROLE_COUNT];
  fuzz_expect shape; /* the rules of desc and the offsets: the query checks them too */
  fuzz_expect call;  /* plus the pointers, overlaps and the caller's workspace */
  int small;         /* valid-looking and cheap enough to run */
  int heads_bad;     /* a slope or sink the call refuses (the query does not read them) */
  int callable;      /* the harness can pass what the contract asks for */
} vl_case;

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

static vl_layout vl_decode_layout(fuzz_input* in) {
  vl_layout l = {LAY_PACKED, 0, {0, 0, 0}};
  const uint8_t b = fuzz_u8(in, 0);
  if (b < 0x80) return l;
  l.kind = (layout_kind)(1 + (b - 0x80) % (LAY_COUNT - 1));
  if (l.kind == LAY_PADDED) l.pad = 1 + fuzz_u8(in, 0) % 16;
  if (l.kind == LAY_EXPLICIT) {
    l.given.batch = fuzz_size(in, 0);
    l.given.head = fuzz_size(in, 8);
    l.given.row = fuzz_size(in, 8);
  }
  return l;
}

/* The strides of a [1, H, rows, W] view of the packed rows. */
static mha_strides vl_strides(const vl_layout* l, int64_t H, int64_t rows, int64_t W) {
  const int64_t hw = fuzz_mul_sat(H, W);
  mha_strides s = {0, W, hw};
  switch (l->kind) {
    case LAY_PACKED: break;
    case LAY_HEAD_MAJOR: s.head = fuzz_mul_sat(rows, W); s.row = W; break;
    case LAY_PADDED:
      s.head = fuzz_add_sat(W, l->pad);
      s.row = fuzz_add_sat(fuzz_mul_sat(H, s.head), l->pad);
      break;
    case LAY_BATCH_JUNK: s.batch = INT64_MAX; break;
    case LAY_BATCH_NEG: s.batch = -1; break;
    case LAY_HEAD_ZERO: s.head = 0; s.row = W; break;
    case LAY_ROW_SHORT: s.head = W; s.row = fuzz_add_sat(W, -1); break;
    case LAY_ROW_NEG: s.row = hw == INT64_MIN ? INT64_MIN : -hw; break;
    case LAY_HEADS_OVER_ROWS: s.head = W; s.row = W; break;
    case LAY_HUGE_ROW: s.row = (int64_t)1 << 62; break;
    case LAY_EXPLICIT: s = l->given; break;
    default: break;
  }
  return s;
}

static bound_kind vl_decode_bound(fuzz_input* in, int64_t* arg) {
  const uint8_t b = fuzz_u8(in, 0);
  *arg = 0;
  switch (b % 16) {
    case 8: case 9: case 10: *arg = 1 + (b >> 4); return BOUND_LOOSE;
    case 11: return BOUND_SHORT;
    case 12: return BOUND_2P31;
    case 13: return BOUND_2P62;
    case 14: return BOUND_MAX;
    case 15: *arg = fuzz_size(in, 1); return BOUND_SIZE;
    default: return BOUND_TIGHT;
  }
}

static int64_t vl_bound_value(bound_kind k, int64_t arg, int64_t longest) {
  const int64_t tight = longest > 0 ? longest : 1;
  switch (k) {
    case BOUND_LOOSE: return tight + arg;
    case BOUND_SHORT: return tight - 1;
    case BOUND_2P31: return (int64_t)1 << 31;
    case BOUND_2P62: return (int64_t)1 << 62;
    case BOUND_MAX: return INT64_MAX;
    case BOUND_SIZE: return arg;
    default: return tight;
  }
}

/* A window side: small sizes (0 included) mostly; negative or huge ones. */
static int64_t vl_len_q(uint8_t b) { return b < 0xF0 ? b % 33 : 33 + 8 * (int64_t)(b - 0xF0); }

static int64_t vl_len_k(uint8_t b) {
  if (b < 0xE0) return b % 41;
  if (b < 0xF0) return 64 + 32 * (int64_t)(b - 0xE0);
  return 0;
}

static void* vl_xalloc(size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  if (p == NULL) exit(2);
  return p;
}

static void vl_decode(fuzz_input* in, fuzz_rng* r, vl_case* c) {
  memset(c, 0, sizeof *c);
  mha_attention_desc* d = &c->desc;
  const int64_t B = fuzz_size(in, 3), Hkv = fuzz_size(in, 1);
  const uint8_t hmode = fuzz_u8(in, 1);
  const int64_t H = hmode < 0xC0 ? fuzz_mul_sat(Hkv, 1 + hmode % 4) : fuzz_size(in, 2);
  const int64_t D = fuzz_size(in, 8), Dv = fuzz_size(in, 8);
  mha_attention_desc_init(d, B, H, Hkv, 1, 1, D, Dv); /* bounds and strides set below */
  const uint8_t share = fuzz_u8(in, 0) % 4;
  c->share = share < 2 ? SHARE_NONE : share == 2 ? SHARE_LENGTHS : SHARE_ARRAY;
  c->bound[0] = vl_decode_bound(in, &c->bound_arg[0]);
  c->bound[1] = vl_decode_bound(in, &c->bound_arg[1]);
  const uint8_t off = fuzz_u8(in, 0);
  c->brk = off % 8 < 5 ? CU_GOOD : (cu_break)(off % 8 - 4);
  c->brk_k = (off >> 3) & 1;
  c->brk_param = (off >> 4) % 4;

  mha_mask* m = &d->mask;
  const uint8_t causal = fuzz_u8(in, 0);
  static const int bad_causal[] = {2, -1, INT_MIN};
  m->causal = causal < 0xF0 ? causal & 1 : bad_causal[causal % 3];
  const uint8_t xm = fuzz_u8(in, 0) % 8;
  c->xmask = xm == 6 ? XMASK_KV_LEN : xm == 7 ? XMASK_ADDITIVE : XMASK_NONE;
  fuzz_decode_position(in, m);
  c->alibi = fuzz_u8(in, 0) % 8;
  static const float caps[] = {NAN, -1.0f, INFINITY, -INFINITY, -0.0f, FLT_MIN, FLT_MAX, 1e-3f};
  const uint8_t cap = fuzz_u8(in, 0);
  m->softcap = cap < 0x80 ? 0.0f
               : cap < 0xF0 ? 0.5f + 0.5f * (float)(cap - 0x80)
               : cap < 0xF8 ? caps[cap - 0xF0] : 0.0f;
  c->sinks = fuzz_u8(in, 0) % 8;
  const uint8_t lse = fuzz_u8(in, 0);
  c->lse = lse < 0xF0 ? (lse & 1 ? LSE_OWN : LSE_NONE)
           : lse <= 0xF2 ? (lse_mode)(LSE_OVER_OUT + (lse - 0xF0)) : LSE_NONE;
  d->scale = fuzz_scale(in);
  c->values = fuzz_u8(in, 0) % 4;
  d->num_threads = fuzz_threads(in);
  d->isa = fuzz_isa(in);
  const uint8_t ws = fuzz_u8(in, 0) % 8;
  c->ws = ws < 3 ? WS_NONE : (ws_mode)(ws - 2);
  const uint8_t nul = fuzz_u8(in, 0);
  c->null = nul >= 0xF0 && nul <= 0xF5 ? (null_mode)(nul - 0xF0 + 1) : NULL_NONE;
  const uint8_t alias = fuzz_u8(in, 0);
  c->alias = alias >= 0xF0 && alias <= 0xF2 ? (alias_mode)(alias - 0xF0 + 1) : ALIAS_NONE;
  for (int role = 0; role < ROLE_COUNT; role++) c->lay[role] = vl_decode_layout(in);

  /* the sequences (the trailing bytes) */
  c->nseq = B >= 1 && B <= VL_MAX_B ? B : 0;
  c->len_q = vl_xalloc((size_t)(c->nseq ? c->nseq : 1) * sizeof(int64_t));
  c->len_k = vl_xalloc((size_t)(c->nseq ? c->nseq : 1) * sizeof(int64_t));
  for (int64_t b = 0; b < c->nseq; b++) {
    if (b < VL_DECODED_SEQS) {
      c->len_q[b] = vl_len_q(fuzz_u8(in, (uint8_t)((4 + 3 * b) % 9)));
      c->len_k[b] = vl_len_k(fuzz_u8(in, (uint8_t)((6 + 5 * b) % 13)));
    } else {
      c->len_q[b] = (int64_t)(fuzz_next(r) % 3);
      c->len_k[b] = (int64_t)(fuzz_next(r) % 4);
    }
    if (c->share != SHARE_NONE) c->len_k[b] = c->len_q[b];
  }
}

/* ------------------------------------------------------------------------ */
/* The batch: offsets, bounds, the variants' arrays, the views              */
/* ------------------------------------------------------------------------ */

/* H floats for the slopes or sinks in [lo, hi). */
static float* vl_head_array(const vl_case* c, fuzz_rng* r, float lo, float hi) {
  float* x = fuzz_alloc(c->nhead);
  for (size_t h = 0; h < c->nhead; h++) x[h] = fuzz_uniform(r, lo, hi);
  return x;
}

static void vl_build(vl_case* c, fuzz_rng* r) {
  mha_attention_desc* d = &c->desc;
  const int64_t B = d->B;
  /* the offsets of the decoded lengths */
  c->ncu = c->nseq ? c->nseq + 1 : (B < 1 || B >= VL_B_OVERFLOW) ? 1 : 0;
  if (c->ncu) {
    c->cu_q = vl_xalloc((size_t)c->ncu * sizeof(int32_t));
    c->cu_k = c->share == SHARE_ARRAY ? c->cu_q : vl_xalloc((size_t)c->ncu * sizeof(int32_t));
    c->cu_q[0] = c->cu_k[0] = 0;
    for (int64_t b = 0; b < c->nseq; b++) {
      c->cu_q[b + 1] = c->cu_q[b] + (int32_t)c->len_q[b];
      if (c->share != SHARE_ARRAY) c->cu_k[b + 1] = c->cu_k[b] + (int32_t)c->len_k[b];
      if (c->len_q[b] > c->max_q) c->max_q = c->len_q[b];
      if (c->len_k[b] > c->max_k) c->max_k = c->len_k[b];
    }
    c->total_q = c->cu_q[c->nseq];
    c->total_k = c->cu_k[c->nseq];
  }
  c->rows_q = c->total_q > 0 ? c->total_q : 1;
  c->rows_k = c->total_k > 0 ? c->total_k : 1;
  d->Tq = vl_bound_value(c->bound[0], c->bound_arg[0], c->max_q);
  d->Tk = vl_bound_value(c->bound[1], c->bound_arg[1], c->max_k);

  /* the broken offsets */
  if (c->brk == CU_NULL) {
    c->cu_q_null = !c->brk_k || c->ncu == 0;
    c->cu_k_null = c->brk_k || c->ncu == 0;
  }
  int32_t* broken = c->brk_k ? c->cu_k : c->cu_q;
  if (c->brk == CU_FIRST && c->ncu >= 1) {
    static const int32_t first[4] = {1, -1, INT32_MIN, INT32_MAX};
    broken[0] = first[c->brk_param];
  }
  if (c->brk == CU_DECREASING && c->nseq >= 1) {
    const int64_t i = 1 + (int64_t)(fuzz_next(r) % (uint64_t)c->nseq);
    broken[i] = broken[i - 1] - 1 - 1000 * c->brk_param; /* offsets are >= 0: no wrap */
  }
  /* a B whose offsets cannot be built ([B + 1] int32 too big to pass) is
   * called only where no offset is read: NULL offsets, or no desc */
  c->callable = c->ncu > 0 || (c->cu_q_null && c->cu_k_null) || c->null == NULL_DESC;

  /* the variants' arrays: slopes and sinks of H floats, one of them bad */
  mha_mask* m = &d->mask;
  c->nhead = d->H >= 1 && d->H <= VL_MAX_HEAD_ARRAY ? (size_t)d->H : 0;
  if (c->nhead == 0) c->alibi = c->sinks = 0;
  if (c->alibi >= 1 && c->alibi <= 6) {
    static const float range[4][2] = {{0, 0}, {0, 1}, {0, 0.0625f}, {-1, 1}};
    const int k = c->alibi <= 3 ? c->alibi : 1;
    c->slopes = vl_head_array(c, r, range[k][0], range[k][1]);
    static const float bad[3] = {INFINITY, -INFINITY, NAN};
    if (c->alibi >= 4) c->slopes[fuzz_next(r) % c->nhead] = bad[c->alibi - 4];
    m->alibi_slopes = c->slopes;
  }
  if (c->sinks >= 1 && c->sinks <= 6) {
    c->sink_vals = c->sinks == 3 ? vl_head_array(c, r, 80, 100) : vl_head_array(c, r, -4, 4);
    for (size_t h = 0; h < c->nhead; h++) {
      if (c->sinks == 4 || (c->sinks == 2 && fuzz_next(r) % 3 == 0)) c->sink_vals[h] = -INFINITY;
    }
    if (c->sinks == 5) c->sink_vals[fuzz_next(r) % c->nhead] = INFINITY;
    if (c->sinks == 6) c->sink_vals[fuzz_next(r) % c->nhead] = NAN;
    m->sinks = c->sink_vals;
  }
  /* the masks the packed form refuses */
  if (c->xmask == XMASK_KV_LEN) {
    const int64_t n = c->nseq ? c->nseq : 1;
    c->kv_len = vl_xalloc((size_t)n * sizeof(int32_t));
    for (int64_t b = 0; b < n; b++) c->kv_len[b] = c->nseq ? (int32_t)c->len_k[b] : 0;
    m->kv_len = c->kv_len;
  }
  if (c->xmask == XMASK_ADDITIVE) {
    c->additive = fuzz_alloc(64);
    for (int i = 0; i < 64; i++) c->additive[i] = 0.0f;
    m->additive = c->additive;
    m->additive_strides = (mha_strides){0, 0, 0};
  }

  /* the views of the packed rows */
  d->q = vl_strides(&c->lay[ROLE_Q], d->H, c->rows_q, d->D);
  d->k = vl_strides(&c->lay[ROLE_K], d->Hkv, c->rows_k, d->D);
  d->v = vl_strides(&c->lay[ROLE_V], d->Hkv, c->rows_k, d->Dv);
  d->out = vl_strides(&c->lay[ROLE_OUT], d->H, c->rows_q, d->Dv);
  c->view[ROLE_Q] = (fuzz_view){1, d->H, c->rows_q, d->D, {0, d->q.head, d->q.row}};
  c->view[ROLE_K] = (fuzz_view){1, d->Hkv, c->rows_k, d->D, {0, d->k.head, d->k.row}};
  c->view[ROLE_V] = (fuzz_view){1, d->Hkv, c->rows_k, d->Dv, {0, d->v.head, d->v.row}};
  c->view[ROLE_OUT] = (fuzz_view){1, d->H, c->rows_q, d->Dv, {0, d->out.head, d->out.row}};

  /* placements that need something to overlap; a shared array is one array */
  if (c->share == SHARE_ARRAY) {
    if (c->alias == ALIAS_OUT_OVER_CU_K) c->alias = ALIAS_OUT_OVER_CU_Q;
    if (c->lse == LSE_OVER_CU_K) c->lse = LSE_OVER_CU_Q;
    if (c->alias == ALIAS_OUT_OVER_CU_Q && c->lse == LSE_OVER_CU_Q) c->lse = LSE_OWN;
  }
  if ((c->alias == ALIAS_OUT_OVER_CU_Q && (c->cu_q_null || !c->ncu)) ||
      (c->alias == ALIAS_OUT_OVER_CU_K && (c->cu_k_null || !c->ncu))) {
    c->alias = ALIAS_NONE;
  }
  if ((c->lse == LSE_OVER_CU_Q && (c->cu_q_null || !c->ncu)) ||
      (c->lse == LSE_OVER_CU_K && (c->cu_k_null || !c->ncu))) {
    c->lse = LSE_OWN;
  }
}

/* ------------------------------------------------------------------------ */
/* The model                                                                */
/* ------------------------------------------------------------------------ */

/* "Both start at 0 and never decrease"; every length <= its bound. */
static int vl_expect_offsets(fuzz_expect* e, const char* name, const int32_t* cu, int64_t nseq,
                             int64_t bound, const char* bound_name) {
  if (cu[0] != 0) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "%s[0] = %d", name, (int)cu[0]);
    return 0;
  }
  for (int64_t b = 0; b < nseq; b++) {
    const int64_t len = (int64_t)cu[b + 1] - cu[b];
    if (len < 0) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "%s decreases at %lld", name, (long long)b);
      return 0;
    }
    if (len > bound) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "%s: sequence %lld has length %lld > %s = %lld",
                   name, (long long)b, (long long)len, bound_name, (long long)bound);
      return 0;
    }
  }
  return 1;
}

/* A view's rules, required only where it addresses a real row: a view of
 * no rows (total 0) spans nothing, and its rules are then merely allowed. */
static int64_t vl_expect_view(fuzz_expect* e, const char* name, const fuzz_view* v, int is_output,
                              int real) {
  if (real) return fuzz_expect_view(e, name, v, is_output, 0);
  fuzz_expect soft;
  fuzz_expect_init(&soft);
  const int64_t extent = fuzz_expect_view(&soft, name, v, is_output, 0);
  e->allowed |= soft.required;
  return extent;
}

static void vl_expect_shape(vl_case* c) {
  const mha_attention_desc* d = &c->desc;
  const mha_mask* m = &d->mask;
  fuzz_expect* e = &c->shape;
  fuzz_expect_init(e);
  const struct { const char* name; int64_t value; } sizes[] = {
      {"B", d->B}, {"H", d->H}, {"Hkv", d->Hkv}, {"Tq", d->Tq},
      {"Tk", d->Tk}, {"D", d->D}, {"Dv", d->Dv}};
  int sizes_ok = 1;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    if (sizes[i].value < 1) {
      fuzz_require(e, MHA_STATUS_INVALID_SIZE, "%s = %lld", sizes[i].name, (long long)sizes[i].value);
      sizes_ok = 0;
    }
  }
  if (d->B >= VL_B_OVERFLOW) { /* cu_seqlens [B + 1] has more bytes than int64 counts */
    fuzz_require(e, MHA_STATUS_SIZE_OVERFLOW, "cu_seqlens [B + 1 = %lld + 1] overflows", (long long)d->B);
    fuzz_allow(e, MHA_STATUS_INVALID_SIZE);
    fuzz_allow(e, MHA_STATUS_INVALID_ARGUMENT);
  }
  if (sizes_ok && d->H % d->Hkv != 0) fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "H %% Hkv != 0");
  if (!isfinite(d->scale)) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "scale is not finite");
  if (d->num_threads < 0) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "num_threads < 0");
  fuzz_expect_isa(e, d->isa);
  if (m->causal != 0 && m->causal != 1) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.causal = %d", m->causal);
  }
  fuzz_expect_variant_fields(e, m);
  if (m->kv_len != NULL) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.kv_len is set");
  if (m->additive != NULL) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.additive is set");

  /* the offsets */
  if (c->cu_q_null) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cu_seqlens_q is NULL");
  if (c->cu_k_null) fuzz_require(e, MHA_STATUS_NULL_POINTER, "cu_seqlens_k is NULL");
  c->offsets_ok = 0;
  if (c->ncu >= 1) {
    int ok = 1;
    if (!c->cu_q_null) ok &= vl_expect_offsets(e, "cu_seqlens_q", c->cu_q, c->nseq, d->Tq, "Tq");
    if (!c->cu_k_null) ok &= vl_expect_offsets(e, "cu_seqlens_k", c->cu_k, c->nseq, d->Tk, "Tk");
    c->offsets_ok = ok && c->nseq >= 1 && !c->cu_q_null && !c->cu_k_null;
  }

  /* the views over the packed rows; their rules where the totals are the call's */
  const int real_q = c->offsets_ok && c->total_q > 0, real_k = c->offsets_ok && c->total_k > 0;
  fuzz_expect views;
  fuzz_expect_init(&views);
  fuzz_expect* ve = c->offsets_ok ? e : &views;
  for (int r = 0; r < ROLE_COUNT; r++) {
    const int real = r == ROLE_Q || r == ROLE_OUT ? real_q : real_k;
    c->extent[r] = vl_expect_view(ve, role_name[r], &c->view[r], r == ROLE_OUT, real);
  }
  e->allowed |= views.required | views.allowed; /* unknown totals: anything a view may break */
  const mha_strides* all[ROLE_COUNT] = {&d->q, &d->k, &d->v, &d->out};
  for (int r = 0; r < ROLE_COUNT; r++) {
    if (all[r]->batch < 0) fuzz_allow(e, MHA_STATUS_INVALID_STRIDE); /* not used: refusing is lenient */
  }

  /* the real work: Σ len_q·len_k·H·(D + Dv) */
  int64_t work = 0, rows = 0;
  for (int64_t b = 0; b < c->nseq; b++) {
    const int64_t lk = c->len_k[b] > 0 ? c->len_k[b] : 1;
    work = fuzz_add_sat(work, fuzz_mul_sat(c->len_q[b], lk));
    rows = fuzz_add_sat(rows, c->len_q[b]);
  }
  work = fuzz_mul_sat(fuzz_mul_sat(work, d->H), fuzz_add_sat(d->D, d->Dv));
  c->small = sizes_ok && c->offsets_ok && work <= FUZZ_MAX_WORK && fuzz_mul_sat(rows, d->H) <= FUZZ_MAX_ROWS;
  if (!c->small) { /* a valid but huge problem may not fit in memory or size_t */
    fuzz_allow(e, MHA_STATUS_SIZE_OVERFLOW);
    fuzz_allow(e, MHA_STATUS_OUT_OF_MEMORY);
  }
}

static int64_t vl_lse_count(const vl_case* c) { return fuzz_mul_sat(c->total_q, c->desc.H); }

/* Whether every buffer the call uses can have its full extent. */
static int vl_extents_reasonable(const vl_case* c) {
  for (int r = 0; r < ROLE_COUNT; r++) {
    if (!fuzz_reasonable(c->extent[r])) return 0;
  }
  return c->lse == LSE_NONE || c->total_q == 0 || fuzz_reasonable(vl_lse_count(c));
}

/* An overlap that must be refused where the written buffer spans a real row. */
static void vl_expect_overlap(vl_case* c, const char* what) {
  if (c->offsets_ok && c->total_q > 0) {
    fuzz_require(&c->call, MHA_STATUS_INVALID_STRIDE, "%s", what);
  } else {
    fuzz_allow(&c->call, MHA_STATUS_INVALID_STRIDE);
  }
}

/* The values of the slopes and sinks: the call's rule only (the workspace
 * query reads no array), checked after everything else. Returns 1 if one is
 * bad. */
static int vl_expect_heads(const vl_case* c, fuzz_expect* e) {
  const mha_mask* m = &c->desc.mask;
  for (size_t h = 0; m->alibi_slopes != NULL && h < c->nhead; h++) {
    if (!isfinite(m->alibi_slopes[h])) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "alibi_slopes[%zu] = %g", h, (double)m->alibi_slopes[h]);
      return 1;
    }
  }
  for (size_t h = 0; m->sinks != NULL && h < c->nhead; h++) {
    if (isnan(m->sinks[h]) || m->sinks[h] == INFINITY) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "sinks[%zu] = %g", h, (double)m->sinks[h]);
      return 1;
    }
  }
  return 0;
}

static void vl_expect_call(vl_case* c, int ws_known) {
  fuzz_expect* e = &c->call;
  *e = c->shape;
  if (c->null >= NULL_Q && c->null <= NULL_OUT) {
    fuzz_require(e, MHA_STATUS_NULL_POINTER, "%s is NULL", role_name[c->null - NULL_Q]);
  }
  c->heads_bad = vl_expect_heads(c, e);
  if (c->alias == ALIAS_OUT_IS_Q) vl_expect_overlap(c, "out is q");
  if (c->alias == ALIAS_OUT_OVER_CU_Q) vl_expect_overlap(c, "out lies over cu_seqlens_q");
  if (c->alias == ALIAS_OUT_OVER_CU_K) vl_expect_overlap(c, "out lies over cu_seqlens_k");
  if (c->lse == LSE_OVER_OUT) vl_expect_overlap(c, "lse lies over out");
  if (c->lse == LSE_OVER_CU_Q) vl_expect_overlap(c, "lse lies over cu_seqlens_q");
  if (c->lse == LSE_OVER_CU_K) vl_expect_overlap(c, "lse lies over cu_seqlens_k");
  if (c->ws == WS_OVER_OUT) vl_expect_overlap(c, "the workspace lies over out");
  if (c->ws == WS_OVER_Q) vl_expect_overlap(c, "the workspace lies over q");
  if (!vl_extents_reasonable(c)) fuzz_allow(e, MHA_STATUS_INVALID_STRIDE); /* tiny stand-ins */
  if (c->ws == WS_SHORT || ((c->ws == WS_EXACT || c->ws == WS_MISALIGNED) && !ws_known)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "workspace_size %zu is short", c->desc.workspace_size);
  }
  if ((c->ws == WS_OVER_OUT || c->ws == WS_OVER_Q) && !ws_known) {
    fuzz_allow(e, MHA_STATUS_INVALID_ARGUMENT);
  }
}

static void vl_describe(const vl_case* c) {
  const mha_attention_desc* d = &c->desc;
  const mha_mask* m = &d->mask;
  char lens[400];
  size_t used = 0;
  lens[0] = '\0';
  for (int64_t b = 0; b < c->nseq && used < sizeof lens - 40; b++) {
    used += (size_t)snprintf(lens + used, sizeof lens - used, "%s%lld/%lld", b ? "," : "",
                             (long long)c->len_q[b], (long long)c->len_k[b]);
    if (b == 23 && c->nseq > 24) {
      snprintf(lens + used, sizeof lens - used, ",...");
      break;
    }
  }
  fuzz_describe(
      "varlen B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld len_q/len_k=[%s] "
      "total_q=%lld total_k=%lld share=%d offsets=%d%s%s q{%lld,%lld,%lld} k{%lld,%lld,%lld} "
      "v{%lld,%lld,%lld} out{%lld,%lld,%lld} causal=%d xmask=%d align=%d offset=%lld "
      "window=%d{%lld,%lld} alibi=%d softcap=%a sinks=%d lse=%d scale=%a values=%d threads=%d "
      "isa=%d workspace=%d null=%d alias=%d",
      (long long)d->B, (long long)d->H, (long long)d->Hkv, (long long)d->Tq, (long long)d->Tk,
      (long long)d->D, (long long)d->Dv, lens, (long long)c->total_q, (long long)c->total_k,
      (int)c->share, (int)c->brk, c->brk_k ? "(k)" : "(q)",
      c->brk == CU_FIRST ? "[0] broken" : c->brk == CU_DECREASING ? " decreasing" : "",
      (long long)d->q.batch, (long long)d->q.head, (long long)d->q.row, (long long)d->k.batch,
      (long long)d->k.head, (long long)d->k.row, (long long)d->v.batch, (long long)d->v.head,
      (long long)d->v.row, (long long)d->out.batch, (long long)d->out.head, (long long)d->out.row,
      m->causal, (int)c->xmask, (int)m->align, (long long)m->offset, m->window,
      (long long)m->window_left, (long long)m->window_right, c->alibi, (double)m->softcap,
      c->sinks, (int)c->lse, (double)d->scale, c->values, d->num_threads, (int)d->isa, (int)c->ws,
      (int)c->null, (int)c->alias);
}

/* fuzz_check_status, and a failed call's message must be its own (not the
 * marker left in mha_last_error() before the call). */
static void vl_check_status(const char* call, mha_status st, const fuzz_expect* e) {
  fuzz_check_status(call, st, e);
  if (st != MHA_STATUS_SUCCESS && strstr(mha_last_error(), VL_STALE) != NULL) {
    fuzz_finding("%s returned %s but mha_last_error() is stale: \"%s\"", call, mha_status_string(st),
                 mha_last_error());
  }
}

static void vl_stale(void) { (void)mha_set_isa_by_name(VL_STALE); }

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct vl_buffers {
  float* own[ROLE_COUNT];  /* allocations; out's is NULL when out = q */
  float* ptr[ROLE_COUNT];  /* the views' bases */
  size_t n[ROLE_COUNT];    /* floats behind ptr */
  void* snap[ROLE_COUNT];
  float* lse_own;          /* or NULL: lse over out, or none */
  float* lse;              /* what desc.lse receives */
  size_t n_lse;
  void* lse_snap;
  const int32_t *cu_q, *cu_k; /* what the call receives */
  void *cu_q_snap, *cu_k_snap, *slopes_snap, *sinks_snap, *kv_len_snap, *additive_snap;
  char* ws_own;
  size_t n_out_plain, n_lse_plain; /* out and lse of a rerun: the view plus the slack */
} vl_buffers;

static size_t vl_max(size_t a, size_t b) { return a > b ? a : b; }

/* The caller's workspace (and its size in desc) as the mode says; a
 * workspace over out or q is placed once those exist. */
static size_t vl_workspace_size(vl_case* c, size_t needed, int known) {
  if (c->ws == WS_NONE) return 0;
  if (known && needed > (size_t)FUZZ_MAX_BUFFER_BYTES) {
    c->ws = WS_NONE;
    return 0;
  }
  if (!known) return c->ws == WS_OVER_OUT || c->ws == WS_OVER_Q ? 64 : 1;
  return c->ws == WS_SHORT ? needed - 1 : needed;
}

static void vl_buffers_make(vl_case* c, fuzz_rng* rng, vl_buffers* b, size_t ws_size) {
  memset(b, 0, sizeof *b);
  mha_attention_desc* d = &c->desc;
  const size_t ncu = (size_t)c->ncu;
  const size_t ws_floats = (ws_size + sizeof(float) - 1) / sizeof(float);
  for (int r = 0; r < ROLE_COUNT; r++) {
    b->n[r] = fuzz_reasonable(c->extent[r]) ? (size_t)c->extent[r] : 1;
  }
  /* two packed rows more, which must keep their poison */
  const int64_t row_out = fuzz_mul_sat(d->H, d->Dv), row_lse = d->H;
  const size_t span_out = b->n[ROLE_OUT];
  b->n_out_plain = span_out + VL_SLACK + (fuzz_reasonable(row_out) ? 2 * (size_t)row_out : 0);
  const int64_t n_lse = vl_lse_count(c);
  const size_t span_lse = fuzz_reasonable(n_lse) ? (size_t)n_lse : 0; /* [0, span) is lse's */
  b->n_lse_plain = span_lse + VL_SLACK + (fuzz_reasonable(row_lse) ? 2 * (size_t)row_lse : 0);
  b->n[ROLE_OUT] = b->n_out_plain;
  if (c->ws == WS_OVER_Q) b->n[ROLE_Q] = vl_max(b->n[ROLE_Q], ws_floats);
  if (c->ws == WS_OVER_OUT) b->n[ROLE_OUT] = vl_max(b->n[ROLE_OUT], ws_floats);
  if (c->lse == LSE_OVER_OUT) b->n[ROLE_OUT] = vl_max(b->n[ROLE_OUT], b->n_lse_plain);
  size_t at_out = 0, at_lse = 0; /* where the offsets lie inside out or lse */
  if (c->alias == ALIAS_OUT_OVER_CU_Q || c->alias == ALIAS_OUT_OVER_CU_K) {
    at_out = (size_t)(fuzz_next(rng) % span_out);
    b->n[ROLE_OUT] = vl_max(b->n[ROLE_OUT], at_out + ncu);
  }
  if (c->alias == ALIAS_OUT_IS_Q) b->n[ROLE_Q] = vl_max(b->n[ROLE_Q], b->n[ROLE_OUT]);

  for (int r = 0; r < ROLE_COUNT; r++) {
    if (r == ROLE_OUT && c->alias == ALIAS_OUT_IS_Q) continue;
    b->own[r] = fuzz_alloc(b->n[r]);
    b->ptr[r] = b->own[r];
    fuzz_fill_nan(b->own[r], b->n[r]);
  }
  if (c->alias == ALIAS_OUT_IS_Q) {
    b->ptr[ROLE_OUT] = b->ptr[ROLE_Q];
    b->n[ROLE_OUT] = b->n[ROLE_Q];
  }
  /* q and k where the logits land; v in [-1, 1). HIGH: q·k/sqrt(D) about
   * 90..100 at the default scale. A view of no rows (total 0) keeps its NaN:
   * a correct kernel never reads it, and a NaN that leaks shows. */
  const float high = d->D >= 1 ? sqrtf(95.0f / sqrtf((float)d->D)) : 1.0f;
  const int vals = c->values == 3 ? FUZZ_VALUES_UNIT : c->values;
  const float qk_range[FUZZ_VALUES_COUNT][2] = {{-1, 1}, {high, 1.02f * high}, {-8, 8}};
  for (int r = ROLE_Q; r <= ROLE_V; r++) {
    const float* range = r == ROLE_V ? qk_range[FUZZ_VALUES_UNIT] : qk_range[vals];
    const int64_t total = r == ROLE_Q ? c->total_q : c->total_k;
    if (fuzz_reasonable(c->extent[r])) {
      if (total > 0) fuzz_fill_view(b->ptr[r], c->extent[r], &c->view[r], rng, range[0], range[1]);
    } else {
      b->ptr[r][0] = range[1];
    }
  }
  if (c->values == 3 && c->total_k > 0 && fuzz_reasonable(c->extent[ROLE_K]) &&
      fuzz_reasonable(c->extent[ROLE_V])) {
    for (uint64_t n = 1 + fuzz_next(rng) % 3; n > 0; n--) {
      const int role = fuzz_next(rng) & 1 ? ROLE_K : ROLE_V;
      *fuzz_view_pick(b->ptr[role], &c->view[role], rng) = NAN;
    }
  }
  if (b->own[ROLE_OUT] != NULL) fuzz_poison(b->own[ROLE_OUT], b->n[ROLE_OUT]);

  /* lse: its own buffer (maybe holding an offsets array), or out's */
  if (c->lse == LSE_OVER_OUT) {
    b->lse = b->ptr[ROLE_OUT];
    b->n_lse = b->n[ROLE_OUT];
  } else if (c->lse != LSE_NONE) {
    b->n_lse = b->n_lse_plain;
    if (c->lse == LSE_OVER_CU_Q || c->lse == LSE_OVER_CU_K) {
      at_lse = span_lse ? (size_t)(fuzz_next(rng) % span_lse) : 0;
      b->n_lse = vl_max(b->n_lse, at_lse + ncu);
    }
    b->lse_own = fuzz_alloc(b->n_lse);
    fuzz_poison(b->lse_own, b->n_lse);
    b->lse = b->lse_own;
  }

  /* the offsets: the case's arrays, or copies inside out or lse */
  b->cu_q = c->cu_q_null ? NULL : c->cu_q;
  b->cu_k = c->cu_k_null ? NULL : c->cu_k;
  if (c->alias == ALIAS_OUT_OVER_CU_Q || c->alias == ALIAS_OUT_OVER_CU_K) {
    int32_t* at = (int32_t*)(b->own[ROLE_OUT] + at_out);
    const int is_k = c->alias == ALIAS_OUT_OVER_CU_K;
    memcpy(at, is_k ? c->cu_k : c->cu_q, ncu * sizeof(int32_t));
    if (is_k) b->cu_k = at; else b->cu_q = at;
    if (c->share == SHARE_ARRAY) b->cu_q = b->cu_k = at;
  }
  if (c->lse == LSE_OVER_CU_Q || c->lse == LSE_OVER_CU_K) {
    int32_t* at = (int32_t*)(b->lse_own + at_lse);
    const int is_k = c->lse == LSE_OVER_CU_K;
    memcpy(at, is_k ? c->cu_k : c->cu_q, ncu * sizeof(int32_t));
    if (is_k) b->cu_k = at; else b->cu_q = at;
    if (c->share == SHARE_ARRAY) b->cu_q = b->cu_k = at;
  }

  /* the caller's workspace */
  if (c->ws != WS_NONE) {
    char* ws;
    if (c->ws == WS_OVER_Q) {
      ws = (char*)b->ptr[ROLE_Q];
    } else if (c->ws == WS_OVER_OUT) {
      ws = (char*)b->ptr[ROLE_OUT];
    } else {
      const size_t shift = c->ws == WS_MISALIGNED ? 1 + ws_size % 63 : 0;
      b->ws_own = vl_xalloc(ws_size + shift);
      ws = b->ws_own + shift;
    }
    d->workspace = ws;
    d->workspace_size = ws_size;
  }
  d->lse = b->lse;

  for (int r = 0; r < ROLE_COUNT; r++) {
    if (b->own[r] != NULL) b->snap[r] = fuzz_snapshot(b->own[r], b->n[r] * sizeof(float));
  }
  if (b->lse_own != NULL) b->lse_snap = fuzz_snapshot(b->lse_own, b->n_lse * sizeof(float));
  if (c->ncu) {
    b->cu_q_snap = fuzz_snapshot(c->cu_q, ncu * sizeof(int32_t));
    b->cu_k_snap = fuzz_snapshot(c->cu_k, ncu * sizeof(int32_t));
  }
  if (c->slopes) b->slopes_snap = fuzz_snapshot(c->slopes, c->nhead * sizeof(float));
  if (c->sink_vals) b->sinks_snap = fuzz_snapshot(c->sink_vals, c->nhead * sizeof(float));
  if (c->kv_len) b->kv_len_snap = fuzz_snapshot(c->kv_len, (size_t)(c->nseq ? c->nseq : 1) * sizeof(int32_t));
  if (c->additive) b->additive_snap = fuzz_snapshot(c->additive, 64 * sizeof(float));
}

static void vl_buffers_free(vl_buffers* b) {
  for (int r = 0; r < ROLE_COUNT; r++) {
    free(b->own[r]);
    free(b->snap[r]);
  }
  free(b->lse_own);
  free(b->lse_snap);
  free(b->cu_q_snap);
  free(b->cu_k_snap);
  free(b->slopes_snap);
  free(b->sinks_snap);
  free(b->kv_len_snap);
  free(b->additive_snap);
  free(b->ws_own);
}

/* Inputs never change; outputs neither when the call failed (or wrote
 * nothing: a placement that overlaps is allowed only with no rows). A
 * buffer that is also the caller's workspace may change on success. */
static void vl_check_untouched(const vl_case* c, const vl_buffers* b, int failed) {
  for (int r = 0; r < ROLE_COUNT; r++) {
    if (b->own[r] == NULL) continue;
    if (r == ROLE_OUT && !failed && c->alias == ALIAS_NONE && c->lse != LSE_OVER_OUT) continue;
    if (!failed && ((r == ROLE_Q && c->ws == WS_OVER_Q) || (r == ROLE_OUT && c->ws == WS_OVER_OUT))) continue;
    fuzz_check_unchanged(role_name[r], b->own[r], b->snap[r], b->n[r] * sizeof(float));
  }
  const int lse_holds_cu = c->lse == LSE_OVER_CU_Q || c->lse == LSE_OVER_CU_K;
  if (b->lse_own != NULL && (failed || lse_holds_cu)) {
    fuzz_check_unchanged("lse", b->lse_own, b->lse_snap, b->n_lse * sizeof(float));
  }
  if (c->ncu) {
    fuzz_check_unchanged("cu_seqlens_q", c->cu_q, b->cu_q_snap, (size_t)c->ncu * sizeof(int32_t));
    fuzz_check_unchanged("cu_seqlens_k", c->cu_k, b->cu_k_snap, (size_t)c->ncu * sizeof(int32_t));
  }
  if (c->slopes) fuzz_check_unchanged("mask.alibi_slopes", c->slopes, b->slopes_snap, c->nhead * sizeof(float));
  if (c->sink_vals) fuzz_check_unchanged("mask.sinks", c->sink_vals, b->sinks_snap, c->nhead * sizeof(float));
  if (c->kv_len) {
    fuzz_check_unchanged("mask.kv_len", c->kv_len, b->kv_len_snap,
                         (size_t)(c->nseq ? c->nseq : 1) * sizeof(int32_t));
  }
  if (c->additive) fuzz_check_unchanged("mask.additive", c->additive, b->additive_snap, 64 * sizeof(float));
}

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/* The outputs of one successful call, dense: out [H, total_q, Dv] (the
 * view's order), lse [total_q, H] or NULL. */
typedef struct vl_result {
  float* out;
  float* lse;
} vl_result;

/* The sequence of packed query row t. */
static int64_t vl_seq_of_row(const vl_case* c, int64_t t) {
  int64_t s = 0;
  while (s + 1 < c->nseq && c->cu_q[s + 1] <= t) s++;
  return s;
}

/* Every packed row of out and lse was written, and nothing else: not the
 * gaps of out's view, not the floats past it, not lse past total_q·H. */
static vl_result vl_take(const vl_case* c, float* out, size_t n_out, const float* lse, size_t n_lse,
                         const char* what) {
  const int64_t H = c->desc.H, Dv = c->desc.Dv, tq = c->total_q;
  vl_result res = {fuzz_alloc((size_t)(H * tq * Dv)), NULL};
  if (tq > 0) {
    fuzz_gather(out, &c->view[ROLE_OUT], res.out);
    for (int64_t i = 0; i < H * tq * Dv; i++) {
      if (!fuzz_is_poison(res.out[i])) continue;
      const int64_t h = i / (tq * Dv), t = i / Dv % tq;
      fuzz_finding("%s: out row %lld (sequence %lld), head %lld, column %lld was not written", what,
                   (long long)t, (long long)vl_seq_of_row(c, t), (long long)h, (long long)(i % Dv));
    }
    fuzz_poison_view(out, &c->view[ROLE_OUT]);
  }
  for (size_t i = 0; i < n_out; i++) {
    if (!fuzz_is_poison(out[i])) {
      fuzz_finding("%s: out offset %zu, outside the view of its %lld packed rows (a gap, or past "
                   "total_q), was written",
                   what, i, (long long)tq);
    }
  }
  if (lse != NULL) {
    const size_t n = (size_t)(tq * H);
    res.lse = fuzz_alloc(n);
    memcpy(res.lse, lse, n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
      if (fuzz_is_poison(lse[i])) {
        fuzz_finding("%s: lse of row %zu (sequence %lld), head %zu was not written", what,
                     i / (size_t)H, (long long)vl_seq_of_row(c, (int64_t)(i / (size_t)H)), i % (size_t)H);
      }
    }
    for (size_t i = n; i < n_lse; i++) {
      if (!fuzz_is_poison(lse[i])) {
        fuzz_finding("%s: lse entry %zu, past total_q·H = %zu, was written", what, i, n);
      }
    }
  }
  return res;
}

static void vl_result_free(vl_result* r) {
  free(r->out);
  free(r->lse);
}

/* The index of the first element whose bits differ, or -1 (a NaN is a NaN). */
static int64_t vl_diff(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) && isnan(b[i])) continue;
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (int64_t)i;
  }
  return -1;
}

/* Two results of the same batch must have the same bits. */
static void vl_check_same(const vl_case* c, const vl_result* got, const vl_result* again,
                          const char* what) {
  const int64_t H = c->desc.H, Dv = c->desc.Dv, tq = c->total_q;
  int64_t i = vl_diff(got->out, again->out, (size_t)(H * tq * Dv));
  if (i >= 0) {
    const int64_t t = i / Dv % tq;
    fuzz_finding("out %s: the bits differ at row %lld (sequence %lld), head %lld, column %lld: %a, "
                 "rerun %a", what, (long long)t, (long long)vl_seq_of_row(c, t),
                 (long long)(i / (tq * Dv)), (long long)(i % Dv), (double)got->out[i],
                 (double)again->out[i]);
  }
  if (got->lse && again->lse && (i = vl_diff(got->lse, again->lse, (size_t)(tq * H))) >= 0) {
    fuzz_finding("lse %s: the bits differ at row %lld (sequence %lld), head %lld: %a, rerun %a",
                 what, (long long)(i / H), (long long)vl_seq_of_row(c, i / H), (long long)(i % H),
                 (double)got->lse[i], (double)again->lse[i]);
  }
}

/* The batch again through d (another thread count or other bounds) into
 * fresh poisoned outputs, with its own workspace; it must succeed. */
static vl_result vl_rerun(const vl_case* c, const vl_buffers* b, const mha_attention_desc* d,
                          const char* what) {
  float* out = fuzz_alloc(b->n_out_plain);
  fuzz_poison(out, b->n_out_plain);
  float* lse = NULL;
  if (c->desc.lse != NULL) {
    lse = fuzz_alloc(b->n_lse_plain);
    fuzz_poison(lse, b->n_lse_plain);
  }
  mha_attention_desc dd = *d;
  dd.lse = lse;
  dd.workspace = NULL;
  dd.workspace_size = 0;
  const mha_status st = mha_attention_varlen_f32(&dd, b->cu_q, b->cu_k, b->ptr[ROLE_Q],
                                                 b->ptr[ROLE_K], b->ptr[ROLE_V], out);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("the rerun %s (Tq = %lld, Tk = %lld, %d threads) failed with %s: %s", what,
                 (long long)dd.Tq, (long long)dd.Tk, dd.num_threads, mha_status_string(st),
                 mha_last_error());
  }
  vl_result res = vl_take(c, out, b->n_out_plain, lse, b->n_lse_plain, what);
  free(out);
  free(lse);
  return res;
}

/* Sequence s must have exactly the bits of the same sequence called alone:
 * mha_attention_f32 with this desc but B = 1, Tq = len_q, Tk = len_k and
 * views at its rows (lse [1, H, len_q]); without keys, Tk = 1 and kv_len
 * {0} over a row of its own. */
static void vl_check_alone(const vl_case* c, const vl_buffers* b, const vl_result* got, int64_t s,
                           fuzz_rng* rng) {
  const mha_attention_desc* d = &c->desc;
  const int64_t H = d->H, Hkv = d->Hkv, D = d->D, Dv = d->Dv, tq = c->total_q;
  const int64_t lq = c->len_q[s], lk = c->len_k[s], cq = c->cu_q[s], ck = c->cu_k[s];
  if (lq == 0) return;
  static const int32_t no_keys = 0;
  mha_attention_desc sd = *d;
  sd.B = 1;
  sd.Tq = lq;
  sd.Tk = lk > 0 ? lk : 1;
  sd.mask.kv_len = lk > 0 ? NULL : &no_keys;
  sd.q.batch = sd.k.batch = sd.v.batch = sd.out.batch = 0;
  sd.workspace = NULL;
  sd.workspace_size = 0;
  const fuzz_view ov = {1, H, lq, Dv, {0, d->out.head, d->out.row}};
  int64_t n_o = 0;
  fuzz_view_extent(&ov, &n_o); /* within the batch's out view */
  float* so = fuzz_alloc((size_t)n_o);
  fuzz_poison(so, (size_t)n_o);
  float* sl = NULL;
  if (d->lse != NULL) {
    sl = fuzz_alloc((size_t)(H * lq));
    fuzz_poison(sl, (size_t)(H * lq));
  }
  sd.lse = sl;
  /* without keys, cu_k[s] may be one past the views' rows, where a pointer
   * could wrap: the sequence gets rows of its own below */
  const float* kp = lk > 0 ? b->ptr[ROLE_K] + ck * d->k.row : NULL;
  const float* vp = lk > 0 ? b->ptr[ROLE_V] + ck * d->v.row : NULL;
  float *own_k = NULL, *own_v = NULL;
  if (lk == 0) { /* one key row of its own, hidden by kv_len {0} */
    const fuzz_view kv[2] = {{1, Hkv, 1, D, {0, d->k.head, d->k.row}},
                             {1, Hkv, 1, Dv, {0, d->v.head, d->v.row}}};
    float** own[2] = {&own_k, &own_v};
    for (int i = 0; i < 2; i++) {
      int64_t n = 0;
      fuzz_view_extent(&kv[i], &n);
      *own[i] = fuzz_alloc((size_t)n);
      fuzz_fill_nan(*own[i], (size_t)n);
      fuzz_fill_view(*own[i], n, &kv[i], rng, -1.0f, 1.0f);
    }
    kp = own_k;
    vp = own_v;
  }
  const mha_status st = mha_attention_f32(&sd, b->ptr[ROLE_Q] + cq * d->q.row, kp, vp, so, NULL);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("sequence %lld (len_q %lld, len_k %lld) called alone through mha_attention_f32 "
                 "failed with %s: %s", (long long)s, (long long)lq, (long long)lk,
                 mha_status_string(st), mha_last_error());
  }
  float* alone = fuzz_alloc((size_t)(H * lq * Dv));
  fuzz_gather(so, &ov, alone);
  for (int64_t h = 0; h < H; h++) {
    for (int64_t i = 0; i < lq; i++) {
      const float* g = got->out + ((h * tq) + cq + i) * Dv;
      const float* a = alone + (h * lq + i) * Dv;
      const int64_t j = vl_diff(g, a, (size_t)Dv);
      if (j >= 0) {
        fuzz_finding("sequence %lld (len_q %lld, len_k %lld, rows from %lld): out row %lld, head "
                     "%lld, column %lld is %a in the batch but %a alone",
                     (long long)s, (long long)lq, (long long)lk, (long long)cq, (long long)i,
                     (long long)h, (long long)j, (double)g[j], (double)a[j]);
      }
      if (sl != NULL && vl_diff(&got->lse[(cq + i) * H + h], &sl[h * lq + i], 1) >= 0) {
        fuzz_finding("sequence %lld (len_q %lld, len_k %lld): lse of row %lld, head %lld is %a in "
                     "the batch but %a alone",
                     (long long)s, (long long)lq, (long long)lk, (long long)i, (long long)h,
                     (double)got->lse[(cq + i) * H + h], (double)sl[h * lq + i]);
      }
    }
  }
  free(alone);
  free(so);
  free(sl);
  free(own_k);
  free(own_v);
}

/* A sequence without keys outputs zeros, lse -inf (its sink's value with sinks). */
static void vl_check_no_keys(const vl_case* c, const vl_result* got) {
  const mha_attention_desc* d = &c->desc;
  const int64_t H = d->H, Dv = d->Dv, tq = c->total_q;
  for (int64_t s = 0; s < c->nseq; s++) {
    if (c->len_k[s] != 0) continue;
    for (int64_t t = c->cu_q[s]; t < c->cu_q[s + 1]; t++) {
      for (int64_t h = 0; h < H; h++) {
        for (int64_t j = 0; j < Dv; j++) {
          const float x = got->out[(h * tq + t) * Dv + j];
          if (x != 0.0f) {
            fuzz_finding("sequence %lld has no keys, but out row %lld, head %lld, column %lld is %a",
                         (long long)s, (long long)(t - c->cu_q[s]), (long long)h, (long long)j,
                         (double)x);
          }
        }
        if (got->lse == NULL) continue;
        const float want = d->mask.sinks ? d->mask.sinks[h] : -INFINITY, x = got->lse[t * H + h];
        if (memcmp(&x, &want, sizeof x) != 0) {
          fuzz_finding("sequence %lld has no keys, but lse of row %lld, head %lld is %a, not %a",
                       (long long)s, (long long)(t - c->cu_q[s]), (long long)h, (double)x,
                       (double)want);
        }
      }
    }
  }
}

/* Bounds other than desc's: the tight ones when they are not, else huge ones. */
static void vl_other_bounds(const vl_case* c, fuzz_rng* rng, int64_t* Tq, int64_t* Tk) {
  const int64_t tight_q = c->max_q > 0 ? c->max_q : 1, tight_k = c->max_k > 0 ? c->max_k : 1;
  static const int64_t huge[3] = {(int64_t)1 << 31, (int64_t)1 << 62, INT64_MAX};
  if (c->desc.Tq == tight_q && c->desc.Tk == tight_k) {
    *Tq = huge[fuzz_next(rng) % 3];
    *Tk = huge[fuzz_next(rng) % 3];
  } else {
    *Tq = tight_q;
    *Tk = tight_k;
  }
}

static void vl_check_success(const vl_case* c, vl_buffers* b, fuzz_rng* rng) {
  const mha_attention_desc* d = &c->desc;
  vl_result got = vl_take(c, b->ptr[ROLE_OUT], b->n[ROLE_OUT], b->lse, b->n_lse, "the call");
  vl_check_no_keys(c, &got);
  /* every sequence (a sample of a long batch) against itself alone */
  if (c->nseq <= VL_MAX_ALONE) {
    for (int64_t s = 0; s < c->nseq; s++) vl_check_alone(c, b, &got, s, rng);
  } else {
    for (int64_t s = 0; s < 4; s++) vl_check_alone(c, b, &got, s, rng);
    vl_check_alone(c, b, &got, c->nseq - 1, rng);
    for (int k = 0; k < VL_MAX_ALONE - 5; k++) {
      vl_check_alone(c, b, &got, (int64_t)(fuzz_next(rng) % (uint64_t)c->nseq), rng);
    }
  }
  mha_attention_desc dt = *d;
  dt.num_threads = d->num_threads == 1 ? 2 : 1;
  vl_result again = vl_rerun(c, b, &dt, "at another thread count");
  vl_check_same(c, &got, &again, "at another thread count");
  vl_result_free(&again);
  mha_attention_desc db = *d;
  vl_other_bounds(c, rng, &db.Tq, &db.Tk);
  again = vl_rerun(c, b, &db, "with other bounds");
  vl_check_same(c, &got, &again, "with other bounds");
  vl_result_free(&again);
  vl_result_free(&got);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/* The workspace query: the rules of desc and the offsets, pointers aside. */
static mha_status vl_query(const vl_case* c, size_t* bytes) {
  fuzz_expect e = c->shape;
  if (c->null == NULL_DESC) {
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "desc is NULL");
  }
  if (c->null == NULL_BYTES) fuzz_require(&e, MHA_STATUS_NULL_POINTER, "bytes is NULL");
  *bytes = 0;
  vl_stale();
  const mha_status st = mha_attention_varlen_workspace_size(
      c->null == NULL_DESC ? NULL : &c->desc, c->cu_q_null ? NULL : c->cu_q,
      c->cu_k_null ? NULL : c->cu_k, c->null == NULL_BYTES ? NULL : bytes);
  vl_check_status("mha_attention_varlen_workspace_size", st, &e);
  return st;
}

/* "A function of the real lengths, not of Tq and Tk": the query with other
 * bounds must give the same bytes. */
static void vl_check_query_bounds(const vl_case* c, size_t bytes, fuzz_rng* rng) {
  mha_attention_desc d = c->desc;
  vl_other_bounds(c, rng, &d.Tq, &d.Tk);
  size_t other = 0;
  vl_stale();
  const mha_status st = mha_attention_varlen_workspace_size(&d, c->cu_q, c->cu_k, &other);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("the workspace query with bounds Tq = %lld, Tk = %lld failed with %s: %s",
                 (long long)d.Tq, (long long)d.Tk, mha_status_string(st), mha_last_error());
  }
  if (other != bytes) {
    fuzz_finding("the workspace depends on the bounds: %zu bytes at Tq = %lld, Tk = %lld but %zu "
                 "at Tq = %lld, Tk = %lld", bytes, (long long)c->desc.Tq, (long long)c->desc.Tk,
                 other, (long long)d.Tq, (long long)d.Tk);
  }
}

static void vl_run(vl_case* c, fuzz_rng* rng) {
  vl_expect_shape(c);
  vl_describe(c);
  if (!c->callable) return; /* B's offsets cannot be built: nothing to pass */
  size_t needed = 0;
  const mha_status qst = vl_query(c, &needed);
  const int known = qst == MHA_STATUS_SUCCESS && c->null != NULL_BYTES;
  if (known && c->shape.required == 0 && c->null == NULL_NONE) vl_check_query_bounds(c, needed, rng);
  const size_t ws_size = vl_workspace_size(c, needed, known);
  c->desc.workspace_size = ws_size;
  vl_expect_call(c, known);
  if (c->call.required == 0 && !(c->small && vl_extents_reasonable(c))) return; /* valid, too big */

  vl_buffers b;
  vl_buffers_make(c, rng, &b, ws_size);
  fuzz_expect e = c->call;
  if (c->null == NULL_DESC) {
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "desc is NULL");
  }
  const float* in[ROLE_COUNT];
  for (int r = 0; r < ROLE_COUNT; r++) in[r] = c->null == (null_mode)(NULL_Q + r) ? NULL : b.ptr[r];
  vl_stale();
  const mha_status st = mha_attention_varlen_f32(c->null == NULL_DESC ? NULL : &c->desc, b.cu_q,
                                                 b.cu_k, in[ROLE_Q], in[ROLE_K], in[ROLE_V],
                                                 (float*)in[ROLE_OUT]);
  vl_check_status("mha_attention_varlen_f32", st, &e);
  vl_check_untouched(c, &b, st != MHA_STATUS_SUCCESS);
  /* the query checks what the call does, pointers aside: where the pointers
   * cannot matter, both return the same */
  const int pointers_fine = c->null == NULL_NONE && c->alias == ALIAS_NONE && c->ws == WS_NONE &&
                            (c->lse == LSE_NONE || c->lse == LSE_OWN) && vl_extents_reasonable(c) &&
                            !c->heads_bad;
  if (pointers_fine && st != qst && st != MHA_STATUS_OUT_OF_MEMORY) {
    fuzz_finding("the call returned %s but the workspace query %s", mha_status_string(st),
                 mha_status_string(qst));
  }
  const int placed = c->alias != ALIAS_NONE || (c->lse != LSE_NONE && c->lse != LSE_OWN) ||
                     c->ws == WS_OVER_OUT || c->ws == WS_OVER_Q;
  if (st == MHA_STATUS_SUCCESS && !placed) vl_check_success(c, &b, rng);
  vl_buffers_free(&b);
}

static void vl_free(vl_case* c) {
  free(c->len_q);
  free(c->len_k);
  if (c->cu_k != c->cu_q) free(c->cu_k);
  free(c->cu_q);
  free(c->slopes);
  free(c->sink_vals);
  free(c->kv_len);
  free(c->additive);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_input in = {data, size};
  fuzz_rng rng = fuzz_rng_from(data, size);
  vl_case c;
  vl_decode(&in, &rng, &c);
  vl_build(&c, &rng);
  vl_run(&c, &rng);
  vl_free(&c);
  return 0;
}
