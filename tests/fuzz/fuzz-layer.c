/*
 * libFuzzer harness of the full layer: mha_layer_create(),
 * mha_layer_workspace_size(), mha_layer_forward() and mha_layer_destroy()
 * over fuzzed layer shapes, weight forms (separate, packed in_proj, mixed,
 * missing), biases, layouts, kernel sets, batch and sequence sizes, self and
 * cross attention, masks, scales, thread counts, caller workspaces, NULL
 * pointers and outputs laid over other buffers.
 *
 * Input bytes, front to back (fuzz-common.h decodes each field; every field
 * has a default once the input runs out; make_seeds.py writes the same):
 *   d_model, H        sizes
 *   Hkv               >= 0xF0: a size follows; % 4 == 0: 0 (default);
 *                     else H / the largest divisor <= 1 + (byte >> 2) % 8
 *   D                 < 0xA0: 0 (default d_model / H); else a size follows
 *   Dv, d_kv          < 0xC0: 0 (default); else a size follows
 *   layout            < 0xF0: byte & 1; else 2 or -1 (bad)
 *   weight form       % 8: 0-4 separate, 5 in_proj_weight, 6 in_proj and w_q
 *                     (bad), 7 one of w_q, w_k, w_v NULL ((byte >> 3) % 3)
 *   biases            bits: b_q, b_k, b_v, b_o, in_proj_bias
 *   w_o               % 4 == 3: NULL (heads concatenated)
 *   isa
 *   B, Tq, Tk         sizes
 *   inputs            % 8: 0-3 self, 4-5 cross (x_v NULL), 6 cross with x_v,
 *                     7 x_v without x_k (bad)
 *   mask              causal, kv_len, additive kind [+ its bytes], content
 *   weights (bit 0), scale, num_threads
 *   workspace         % 8: 0-3 none, 4 exact, 5 misaligned, 6 one byte short, 7 one byte
 *   null              0xF0..0xF6: desc, &layer, layer, args, x_q, out, bytes
 *   checks            (default 0x07) bit 0: rerun at another thread count;
 *                     bit 1: rerun with weights toggled; bit 2: rerun one
 *                     batch entry alone (all must give the same bits);
 *                     bit 3: NaN in a few elements of the key/value inputs
 *                     (x_q for self-attention; bit 4: +inf instead): the
 *                     rows that see those tokens turn NaN, the others must not;
 *                     bit 5: the 16-bit forms after a successful forward
 *                     (bf16; bit 6: f16), see layer_check_16
 *   alias             0xF0..0xF4: out = x_q, out = x_k, weights = out,
 *                     weights = x_q, workspace = out (same buffer)
 *
 * Checks as in fuzz-attention.c, plus: *layer is NULL after a failed
 * create, the plan reports its kernel set and output width, and the plan
 * no longer needs the caller's weights (they are freed before the forward,
 * so ASan reports any later read).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"
#include "oracle.h"
#include "tester.h"
#include "tolerance.h"

/* The arrays of a layer description. */
enum { W_Q, W_K, W_V, W_O, W_IN_PROJ, B_Q, B_K, B_V, B_O, B_IN_PROJ, W_COUNT };
static const char* const w_name[W_COUNT] = {"w_q", "w_k", "w_v", "w_o", "in_proj_weight",
                                            "b_q", "b_k", "b_v", "b_o", "in_proj_bias"};

/* The arrays of a forward. */
enum { X_Q, X_K, X_V, X_OUT, X_W, X_COUNT };
static const char* const x_name[X_COUNT] = {"x_q", "x_k", "x_v", "out", "weights"};

typedef enum { FORM_SEPARATE, FORM_IN_PROJ, FORM_MIXED, FORM_MISSING } weight_form;
typedef enum { INPUTS_SELF, INPUTS_KV, INPUTS_SEPARATE, INPUTS_BAD } inputs_mode;
typedef enum { WS_NONE, WS_EXACT, WS_MISALIGNED, WS_SHORT, WS_TINY } ws_mode;
typedef enum {
  NULL_NONE,
  NULL_DESC,
  NULL_LAYER_OUT,
  NULL_LAYER,
  NULL_ARGS,
  NULL_X_Q,
  NULL_OUT,
  NULL_BYTES
} null_mode;
typedef enum {
  ALIAS_NONE,
  ALIAS_OUT_IS_X_Q,
  ALIAS_OUT_IS_X_K,
  ALIAS_W_IS_OUT,
  ALIAS_W_IS_X_Q,
  ALIAS_WORKSPACE_IS_OUT
} alias_mode;
enum {
  CHECK_THREADS = 1,
  CHECK_WEIGHTS = 2,
  CHECK_ENTRY = 4,
  CHECK_BAD_NAN = 8,
  CHECK_BAD_INF = 16,
  CHECK_16 = 32,
  CHECK_F16 = 64
};

typedef struct layer_case {
  /* the plan */
  mha_layer_desc desc;
  int64_t d_kv, Hkv, D, Dv;  /* with the defaults resolved */
  int64_t len[W_COUNT];      /* floats each array needs (saturated; 0 if the sizes are bad) */
  int64_t n[W_COUNT];        /* floats of each array the description passes; 0: none */
  float* w[W_COUNT];         /* the caller's arrays (freed after create) */
  float* w_copy[W_COUNT];    /* their contents, for the oracle */
  fuzz_expect create;
  int create_small;
  /* one forward */
  mha_layer_args args;
  inputs_mode inputs;
  int64_t Tk;                /* the keys the core sees: Tq for self-attention */
  int64_t width;             /* of the output rows */
  int pass[X_COUNT];         /* the forward receives this array */
  int64_t nx[X_COUNT];       /* its floats (saturated) */
  float* own[X_COUNT];       /* allocations; NULL for an aliased array */
  size_t n_own[X_COUNT];     /* floats of each allocation */
  void* snap[X_COUNT];       /* their contents before the call */
  fuzz_mask mask;
  unsigned checks;
  ws_mode ws;
  null_mode null;
  alias_mode alias;
  fuzz_expect shape, call;   /* the forward's rules without / with pointers and workspace */
  int small;
} layer_case;

/* ------------------------------------------------------------------------ */
/* The plan                                                                 */
/* ------------------------------------------------------------------------ */

static int64_t layer_decode_hkv(fuzz_input* in, int64_t H) {
  const uint8_t h = fuzz_u8(in, 0);
  if (h >= 0xF0) return fuzz_size(in, 1);
  if (h % 4 == 0) return 0;
  int64_t div = 1 + (h >> 2) % 8;
  while (div > 1 && (H < 1 || H % div != 0)) div--;
  return H >= 1 ? H / div : 1;
}

static void layer_decode_desc(fuzz_input* in, layer_case* c, weight_form* form, unsigned* biases) {
  mha_layer_desc* d = &c->desc;
  memset(d, 0, sizeof *d);
  d->d_model = fuzz_size(in, 16);
  d->H = fuzz_size(in, 2);
  d->Hkv = layer_decode_hkv(in, d->H);
  d->D = fuzz_u8(in, 0) < 0xA0 ? 0 : fuzz_size(in, 8);
  d->Dv = fuzz_u8(in, 0) < 0xC0 ? 0 : fuzz_size(in, 8);
  d->d_kv = fuzz_u8(in, 0) < 0xC0 ? 0 : fuzz_size(in, 16);
  const uint8_t layout = fuzz_u8(in, 0);
  d->layout = (mha_weight_layout)(layout < 0xF0 ? layout & 1 : layout & 1 ? 2 : -1);
  const uint8_t f = fuzz_u8(in, 0);
  *form = f % 8 < 5 ? FORM_SEPARATE : (weight_form)(f % 8 - 4);
  const int missing = (f >> 3) % 3; /* FORM_MISSING: which of w_q, w_k, w_v */
  *biases = fuzz_u8(in, 0);
  const int has_wo = fuzz_u8(in, 0) % 4 != 3;
  d->isa = fuzz_isa(in);

  /* which arrays the description passes */
  const int in_proj = *form == FORM_IN_PROJ || *form == FORM_MIXED;
  c->n[W_Q] = !in_proj || *form == FORM_MIXED;
  c->n[W_K] = c->n[W_V] = !in_proj;
  if (*form == FORM_MISSING) c->n[W_Q + missing] = 0;
  c->n[W_O] = has_wo;
  c->n[W_IN_PROJ] = in_proj;
  for (int i = 0; i < 5; i++) c->n[B_Q + i] = *biases >> i & 1;
}

/* The rules of mha_layer_create (include/mha.h, mha_layer_desc); sets the
 * resolved sizes and each array's length. */
static void layer_expect_create(layer_case* c) {
  const mha_layer_desc* d = &c->desc;
  fuzz_expect* e = &c->create;
  fuzz_expect_init(e);
  const int64_t dm = d->d_model, H = d->H;
  if (dm < 1) fuzz_require(e, MHA_STATUS_INVALID_SIZE, "d_model = %lld", (long long)dm);
  if (H < 1) fuzz_require(e, MHA_STATUS_INVALID_SIZE, "H = %lld", (long long)H);
  if (d->d_kv < 0 || d->Hkv < 0 || d->D < 0 || d->Dv < 0) {
    fuzz_require(e, MHA_STATUS_INVALID_SIZE, "d_kv, Hkv, D or Dv < 0");
  }
  if (d->layout != MHA_WEIGHTS_IN_OUT && d->layout != MHA_WEIGHTS_OUT_IN) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "layout = %d", (int)d->layout);
  }
  const int in_proj = c->n[W_IN_PROJ] != 0;
  if (in_proj && (c->n[W_Q] || c->n[W_K] || c->n[W_V] || c->n[B_Q] || c->n[B_K] || c->n[B_V])) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "in_proj_weight with separate weights or biases");
  }
  if (!in_proj && c->n[B_IN_PROJ]) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "in_proj_bias without in_proj_weight");
  }
  if (!in_proj && (!c->n[W_Q] || !c->n[W_K] || !c->n[W_V])) {
    fuzz_require(e, MHA_STATUS_NULL_POINTER, "w_q, w_k or w_v is NULL");
  }
  if (!c->n[W_O] && c->n[B_O]) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "b_o without w_o");
  fuzz_expect_isa(e, d->isa);

  const int sizes_ok = dm >= 1 && H >= 1 && d->d_kv >= 0 && d->Hkv >= 0 && d->D >= 0 && d->Dv >= 0;
  c->d_kv = d->d_kv ? d->d_kv : dm;
  c->Hkv = d->Hkv ? d->Hkv : H;
  c->D = d->D ? d->D : sizes_ok ? dm / H : 0;
  c->Dv = d->Dv ? d->Dv : c->D;
  for (int i = 0; i < W_COUNT; i++) c->n[i] = c->n[i] ? 1 : 0; /* tiny unless sized below */
  c->create_small = 0;
  if (!sizes_ok) return;
  if (H % c->Hkv != 0) fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "H %% Hkv != 0");
  if (d->D == 0 && dm % H != 0) fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "d_model %% H != 0");
  if (in_proj && (c->d_kv != dm || c->Hkv != H || fuzz_mul_sat(c->D, H) != dm || c->Dv != c->D)) {
    fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "in_proj_weight needs d_kv = d_model, Hkv = H, D = Dv = d_model / H");
  }
  const int64_t HD = fuzz_mul_sat(H, c->D), HDv = fuzz_mul_sat(H, c->Dv);
  const int64_t KD = fuzz_mul_sat(c->Hkv, c->D), KDv = fuzz_mul_sat(c->Hkv, c->Dv);
  const int64_t len[W_COUNT] = {
      fuzz_mul_sat(dm, HD), fuzz_mul_sat(c->d_kv, KD), fuzz_mul_sat(c->d_kv, KDv),
      fuzz_mul_sat(HDv, dm), fuzz_mul_sat(3, fuzz_mul_sat(dm, dm)),
      HD, KD, KDv, dm, fuzz_mul_sat(3, dm)};
  int64_t total = 0;
  for (int i = 0; i < W_COUNT; i++) {
    c->len[i] = len[i];
    /* the four projections are sized whether passed or not (w_o: H·Dv·d_model) */
    const int sized = i < W_IN_PROJ || (i == W_IN_PROJ && c->n[i]);
    if (sized && fuzz_mul_sat(len[i], (int64_t)sizeof(float)) == INT64_MAX) {
      fuzz_require(e, MHA_STATUS_SIZE_OVERFLOW, "%s overflows", w_name[i]);
    }
    if (c->n[i] && fuzz_reasonable(len[i])) c->n[i] = len[i];
    if (c->n[i]) total = fuzz_add_sat(total, len[i]);
  }
  c->create_small = total <= FUZZ_MAX_WORK;
  if (!c->create_small) {
    fuzz_allow(e, MHA_STATUS_SIZE_OVERFLOW);
    fuzz_allow(e, MHA_STATUS_OUT_OF_MEMORY);
  }
}

/* Whether every array the description passes has its full length. */
static int layer_weights_real(const layer_case* c) {
  for (int i = 0; i < W_COUNT; i++) {
    if (c->n[i] && c->n[i] != c->len[i]) return 0;
  }
  return 1;
}

static void layer_make_weights(layer_case* c, fuzz_rng* r) {
  const int64_t fan_in[W_COUNT] = {c->desc.d_model, c->d_kv, c->d_kv,
                                   fuzz_mul_sat(c->desc.H, c->Dv), c->desc.d_model, 1, 1, 1, 1, 1};
  for (int i = 0; i < W_COUNT; i++) {
    if (!c->n[i]) continue;
    c->w[i] = fuzz_alloc((size_t)c->n[i]);
    /* unit-variance projections: 1/sqrt(fan_in); biases in [-0.5, 0.5) */
    const float a = i < B_Q && c->n[i] > 1 ? 1.0f / sqrtf((float)fan_in[i]) : 0.5f;
    for (int64_t j = 0; j < c->n[i]; j++) c->w[i][j] = fuzz_uniform(r, -a, a);
    c->w_copy[i] = fuzz_snapshot(c->w[i], (size_t)c->n[i] * sizeof(float));
  }
  mha_layer_desc* d = &c->desc;
  d->w_q = c->w[W_Q];
  d->w_k = c->w[W_K];
  d->w_v = c->w[W_V];
  d->w_o = c->w[W_O];
  d->in_proj_weight = c->w[W_IN_PROJ];
  d->b_q = c->w[B_Q];
  d->b_k = c->w[B_K];
  d->b_v = c->w[B_V];
  d->b_o = c->w[B_O];
  d->in_proj_bias = c->w[B_IN_PROJ];
}

/* Creates the plan as the case says; NULL if create failed (as it must). */
static mha_layer* layer_create(layer_case* c) {
  fuzz_expect e = c->create;
  if (c->null == NULL_DESC || c->null == NULL_LAYER_OUT) {
    fuzz_expect_init(&e);
    fuzz_require(&e, MHA_STATUS_NULL_POINTER, "%s is NULL", c->null == NULL_DESC ? "desc" : "layer");
  }
  static char not_a_plan;
  mha_layer* layer = (mha_layer*)&not_a_plan; /* must become NULL on failure */
  const mha_status st = mha_layer_create(c->null == NULL_DESC ? NULL : &c->desc,
                                         c->null == NULL_LAYER_OUT ? NULL : &layer);
  fuzz_check_status("mha_layer_create", st, &e);
  for (int i = 0; i < W_COUNT; i++) {
    if (c->w[i]) fuzz_check_unchanged(w_name[i], c->w[i], c->w_copy[i], (size_t)c->n[i] * sizeof(float));
  }
  if (c->null == NULL_LAYER_OUT) return NULL;
  if (st != MHA_STATUS_SUCCESS) {
    if (layer != NULL) fuzz_finding("mha_layer_create failed but left *layer = %p", (void*)layer);
    return NULL;
  }
  mha_isa want = c->desc.isa;
  if (want == MHA_ISA_DEFAULT && mha_get_isa(&want) != MHA_STATUS_SUCCESS) {
    fuzz_finding("mha_layer_create succeeded with a bad process kernel set");
  }
  if (mha_layer_isa(layer) != want) {
    fuzz_finding("mha_layer_isa() = %s, asked for %s", mha_isa_name(mha_layer_isa(layer)),
                 mha_isa_name(want));
  }
  const int64_t width = c->n[W_O] ? c->desc.d_model : c->desc.H * c->Dv;
  if (mha_layer_output_width(layer) != width) {
    fuzz_finding("mha_layer_output_width() = %lld, expected %lld",
                 (long long)mha_layer_output_width(layer), (long long)width);
  }
  return layer;
}

/* ------------------------------------------------------------------------ */
/* The forward                                                              */
/* ------------------------------------------------------------------------ */

static void layer_decode_args(fuzz_input* in, fuzz_rng* r, layer_case* c) {
  mha_layer_args* a = &c->args;
  mha_layer_args_init(a);
  a->B = fuzz_size(in, 1);
  a->Tq = fuzz_size(in, 4);
  a->Tk = fuzz_size(in, 5);
  const uint8_t inputs = fuzz_u8(in, 0) % 8;
  c->inputs = inputs < 4 ? INPUTS_SELF : inputs < 6 ? INPUTS_KV : (inputs_mode)(inputs - 4);
  c->Tk = c->inputs == INPUTS_SELF || c->inputs == INPUTS_BAD ? a->Tq : a->Tk;
  fuzz_expect_init(&c->shape);
  fuzz_mask_make(in, r, a->B, c->desc.H, a->Tq, c->Tk, &c->mask, &c->shape);
  a->mask = c->mask.mask;
  const int weights = fuzz_u8(in, 0) & 1;
  a->scale = fuzz_scale(in);
  a->num_threads = fuzz_threads(in);
  const uint8_t ws = fuzz_u8(in, 0) % 8;
  c->ws = ws < 4 ? WS_NONE : (ws_mode)(ws - 3);
  const uint8_t nul = fuzz_u8(in, 0);
  c->null = nul >= 0xF0 && nul <= 0xF6 ? (null_mode)(nul - 0xF0 + 1) : NULL_NONE;
  c->checks = fuzz_u8(in, CHECK_THREADS | CHECK_WEIGHTS | CHECK_ENTRY);
  const uint8_t alias = fuzz_u8(in, 0);
  c->alias = alias >= 0xF0 && alias <= 0xF4 ? (alias_mode)(alias - 0xF0 + 1) : ALIAS_NONE;

  const int64_t B = a->B, Tq = a->Tq;
  c->width = c->n[W_O] ? c->desc.d_model : fuzz_mul_sat(c->desc.H, c->Dv);
  c->pass[X_Q] = c->pass[X_OUT] = 1;
  c->pass[X_K] = c->inputs == INPUTS_KV || c->inputs == INPUTS_SEPARATE;
  c->pass[X_V] = c->inputs == INPUTS_SEPARATE || c->inputs == INPUTS_BAD;
  c->pass[X_W] = weights;
  c->nx[X_Q] = fuzz_mul_sat(fuzz_mul_sat(B, Tq), c->desc.d_model);
  c->nx[X_K] = c->nx[X_V] = fuzz_mul_sat(fuzz_mul_sat(B, a->Tk), c->d_kv);
  c->nx[X_OUT] = fuzz_mul_sat(fuzz_mul_sat(B, Tq), c->width);
  c->nx[X_W] = fuzz_mul_sat(fuzz_mul_sat(fuzz_mul_sat(B, c->desc.H), Tq), c->Tk);
}

/* The array an alias lays over another (dst over src); 0: nothing shared. */
static int layer_alias_roles(const layer_case* c, int* dst, int* src) {
  static const int pairs[][2] = {{-1, -1},     {X_OUT, X_Q}, {X_OUT, X_K},
                                 {X_W, X_OUT}, {X_W, X_Q},   {-1, X_OUT}};
  *dst = pairs[c->alias][0];
  *src = pairs[c->alias][1];
  return c->alias != ALIAS_NONE && c->pass[*src] && (*dst < 0 || c->pass[*dst]);
}

/* The rules of mha_layer_forward for a valid plan (include/mha.h). */
static void layer_expect_forward(layer_case* c) {
  const mha_layer_args* a = &c->args;
  fuzz_expect* e = &c->shape;
  const int self = c->inputs == INPUTS_SELF || c->inputs == INPUTS_BAD;
  if (c->inputs == INPUTS_BAD) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "x_v without x_k");
  if (self && c->d_kv != c->desc.d_model) {
    fuzz_require(e, MHA_STATUS_INVALID_SHAPE, "self-attention with d_kv != d_model");
  }
  const int sizes_ok = a->B >= 1 && a->Tq >= 1 && c->Tk >= 1;
  if (!sizes_ok) fuzz_require(e, MHA_STATUS_INVALID_SIZE, "B, Tq or Tk < 1");
  if (!isfinite(a->scale)) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "scale is not finite");
  if (a->num_threads < 0) fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "num_threads < 0");
  for (int i = 0; i < X_COUNT && sizes_ok; i++) {
    if (c->pass[i] && fuzz_mul_sat(c->nx[i], (int64_t)sizeof(float)) == INT64_MAX) {
      fuzz_require(e, MHA_STATUS_SIZE_OVERFLOW, "%s overflows", x_name[i]);
    }
  }
  /* multiply-adds: projections, attention, output projection */
  const int64_t H = c->desc.H, dm = c->desc.d_model, DDv = fuzz_add_sat(c->D, c->Dv);
  const int64_t rows_q = fuzz_mul_sat(a->B, a->Tq), rows_k = fuzz_mul_sat(a->B, c->Tk);
  const int64_t proj =
      fuzz_add_sat(fuzz_mul_sat(rows_q, fuzz_mul_sat(dm, fuzz_mul_sat(H, c->D))),
                   fuzz_mul_sat(rows_k, fuzz_mul_sat(c->d_kv, fuzz_mul_sat(c->Hkv, DDv))));
  const int64_t attn = fuzz_mul_sat(fuzz_mul_sat(fuzz_mul_sat(rows_q, H), c->Tk), DDv);
  const int64_t outp = fuzz_mul_sat(rows_q, fuzz_mul_sat(fuzz_mul_sat(H, c->Dv), dm));
  c->small = sizes_ok && fuzz_add_sat(fuzz_add_sat(proj, attn), outp) <= FUZZ_MAX_WORK;
  if (!c->small) {
    fuzz_allow(e, MHA_STATUS_SIZE_OVERFLOW);
    fuzz_allow(e, MHA_STATUS_OUT_OF_MEMORY);
  }
  if (c->null == NULL_LAYER || c->null == NULL_ARGS) {
    fuzz_require(e, MHA_STATUS_NULL_POINTER, "%s is NULL", c->null == NULL_LAYER ? "layer" : "args");
  }
}

/* Whether every array the forward receives can have its full length. */
static int layer_inputs_reasonable(const layer_case* c) {
  for (int i = 0; i < X_COUNT; i++) {
    if (c->pass[i] && !fuzz_reasonable(c->nx[i])) return 0;
  }
  return 1;
}

/* NaN (or +inf) in one to three elements of the key/value inputs (x_q in
 * self-attention): the rows that see those tokens turn NaN, the rows they
 * are hidden from must not notice; the oracle knows which. Before the
 * snapshots, so that "inputs never change" still holds. */
static void layer_poison_inputs(layer_case* c, float* const ptr[X_COUNT], fuzz_rng* r) {
  if (!(c->checks & (CHECK_BAD_NAN | CHECK_BAD_INF)) || !c->small || !layer_inputs_reasonable(c)) {
    return;
  }
  const float bad = c->checks & CHECK_BAD_INF ? INFINITY : NAN;
  for (uint64_t n = 1 + fuzz_next(r) % 3; n > 0; n--) {
    const int which = !c->pass[X_K] ? X_Q : c->pass[X_V] && fuzz_next(r) & 1 ? X_V : X_K;
    ptr[which][fuzz_next(r) % (uint64_t)c->nx[which]] = bad;
  }
}

/* Allocates the forward's arrays (tiny where unreasonable: the call must
 * then fail), random inputs, poisoned outputs, aliases; ws_floats: the
 * least the out buffer must hold when the workspace lies over it. */
static void layer_make_inputs(layer_case* c, fuzz_rng* r, size_t ws_floats) {
  int dst, src;
  const int aliased = layer_alias_roles(c, &dst, &src);
  size_t n[X_COUNT];
  for (int i = 0; i < X_COUNT; i++) n[i] = fuzz_reasonable(c->nx[i]) ? (size_t)c->nx[i] : 1;
  if (aliased && dst >= 0 && n[dst] > n[src]) n[src] = n[dst];
  if (c->alias == ALIAS_WORKSPACE_IS_OUT && n[X_OUT] < ws_floats) n[X_OUT] = ws_floats;
  float* ptr[X_COUNT] = {NULL};
  for (int i = 0; i < X_COUNT; i++) {
    if (!c->pass[i] || (aliased && i == dst)) continue;
    c->own[i] = ptr[i] = fuzz_alloc(n[i]);
    c->n_own[i] = n[i];
    if (i >= X_OUT) {
      fuzz_poison(ptr[i], n[i]);
    } else {
      for (size_t j = 0; j < n[i]; j++) ptr[i][j] = fuzz_uniform(r, -1.0f, 1.0f);
    }
  }
  if (aliased && dst >= 0) ptr[dst] = ptr[src];
  layer_poison_inputs(c, ptr, r);
  for (int i = 0; i < X_COUNT; i++) {
    if (c->own[i]) c->snap[i] = fuzz_snapshot(c->own[i], c->n_own[i] * sizeof(float));
  }
  mha_layer_args* a = &c->args;
  a->x_q = ptr[X_Q];
  a->x_k = ptr[X_K];
  a->x_v = ptr[X_V];
  a->out = ptr[X_OUT];
  a->weights = ptr[X_W];
  if (aliased && c->alias == ALIAS_WORKSPACE_IS_OUT) {
    a->workspace = ptr[X_OUT];
    a->workspace_size = ws_floats * sizeof(float);
  }
}

static void layer_describe(const layer_case* c, weight_form form) {
  const mha_layer_desc* d = &c->desc;
  const mha_layer_args* a = &c->args;
  fuzz_describe(
      "layer d_model=%lld d_kv=%lld H=%lld Hkv=%lld D=%lld Dv=%lld layout=%d form=%d "
      "biases=%d%d%d%d%d w_o=%d isa=%d | B=%lld Tq=%lld Tk=%lld inputs=%d causal=%d kv_len=%s "
      "additive=%s{%lld,%lld,%lld} weights=%d scale=%a threads=%d workspace=%d null=%d "
      "checks=0x%x alias=%d",
      (long long)d->d_model, (long long)d->d_kv, (long long)d->H, (long long)d->Hkv,
      (long long)d->D, (long long)d->Dv, (int)d->layout, (int)form, c->n[B_Q] != 0,
      c->n[B_K] != 0, c->n[B_V] != 0, c->n[B_O] != 0, c->n[B_IN_PROJ] != 0, c->n[W_O] != 0,
      (int)d->isa, (long long)a->B, (long long)a->Tq, (long long)a->Tk, (int)c->inputs,
      a->mask.causal, a->mask.kv_len ? "on" : "off", a->mask.additive ? "on" : "off",
      (long long)a->mask.additive_strides.batch, (long long)a->mask.additive_strides.head,
      (long long)a->mask.additive_strides.row, c->pass[X_W], (double)a->scale, a->num_threads,
      (int)c->ws, (int)c->null, c->checks, (int)c->alias);
}

/* The workspace query: the forward's rules, data pointers aside. Which
 * pointers are NULL still matters (self or cross, weights or not): the
 * others point at one float, which the query must not read. */
static mha_status layer_query(const layer_case* c, const mha_layer* layer, size_t* bytes) {
  fuzz_expect e = c->shape;
  if (c->null == NULL_BYTES) fuzz_require(&e, MHA_STATUS_NULL_POINTER, "bytes is NULL");
  static float one;
  mha_layer_args args = c->args;
  args.x_q = &one;
  args.x_k = c->pass[X_K] ? &one : NULL;
  args.x_v = c->pass[X_V] ? &one : NULL;
  args.out = &one;
  args.weights = c->pass[X_W] ? &one : NULL;
  *bytes = 0;
  const mha_status st = mha_layer_workspace_size(c->null == NULL_LAYER ? NULL : layer,
                                                 c->null == NULL_ARGS ? NULL : &args,
                                                 c->null == NULL_BYTES ? NULL : bytes);
  fuzz_check_status("mha_layer_workspace_size", st, &e);
  return st;
}

/* A caller workspace as the mode says (see fuzz-attention.c). */
static void* layer_workspace(layer_case* c, size_t needed, int known) {
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
  c->args.workspace = ws + offset;
  c->args.workspace_size = size;
  return ws;
}

/* The rules of the pointers: NULLs, outputs over other buffers, the workspace. */
static void layer_expect_call(layer_case* c, size_t needed, int known) {
  fuzz_expect* e = &c->call;
  *e = c->shape;
  if (c->null == NULL_X_Q || c->null == NULL_OUT) {
    fuzz_require(e, MHA_STATUS_NULL_POINTER, "%s is NULL", c->null == NULL_X_Q ? "x_q" : "out");
  }
  if (c->ws == WS_SHORT || c->ws == WS_TINY || (c->ws != WS_NONE && !known)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "workspace_size %zu < the %zu needed",
                 c->args.workspace_size, known ? needed : 0);
  }
  int dst, src;
  if (layer_alias_roles(c, &dst, &src)) {
    fuzz_require(e, MHA_STATUS_INVALID_STRIDE, "%s shares its buffer with %s",
                 dst >= 0 ? x_name[dst] : "the workspace", x_name[src]);
  }
  if (!layer_inputs_reasonable(c) || c->mask.tiny) {
    /* a one-float stand-in for a huge array: the span the library computes
     * from its sizes may well cover another buffer */
    fuzz_allow(e, MHA_STATUS_INVALID_STRIDE);
  }
}

/* The outputs of one successful forward. */
typedef struct layer_result {
  float* out;
  float* weights; /* or NULL */
} layer_result;

static void layer_check_written(const char* what, const float* x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (fuzz_is_poison(x[i])) fuzz_finding("%s element %zu was not written", what, i);
  }
}

/* One forward of plan (args.B entries of the case) into fresh poisoned
 * outputs; it must succeed. */
static layer_result layer_rerun(const layer_case* c, const mha_layer* plan, mha_layer_args args,
                                int weights, const char* what) {
  const size_t n_out = (size_t)(args.B * args.Tq * c->width);
  const size_t n_w = (size_t)(args.B * c->desc.H * args.Tq * c->Tk);
  layer_result res = {fuzz_alloc(n_out), weights ? fuzz_alloc(n_w) : NULL};
  fuzz_poison(res.out, n_out);
  if (res.weights) fuzz_poison(res.weights, n_w);
  args.out = res.out;
  args.weights = res.weights;
  args.workspace = NULL; /* that must not change the bits */
  args.workspace_size = 0;
  const mha_status st = mha_layer_forward(plan, &args);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("the %s forward failed with %s: %s", what, mha_status_string(st), mha_last_error());
  }
  layer_check_written("out", res.out, n_out);
  if (res.weights) layer_check_written("weights", res.weights, n_w);
  return res;
}

static void layer_result_free(layer_result* r) {
  free(r->out);
  free(r->weights);
}

/* The naive double oracle and its derived tolerance against the results. */
static void layer_check_oracle(const layer_case* c, const layer_result* scalar) {
  const mha_layer_desc* d = &c->desc;
  const mha_layer_args* a = &c->args;
  const oracle_layer L = {
      .d_model = d->d_model, .d_kv = c->d_kv, .H = d->H, .Hkv = c->Hkv, .D = c->D, .Dv = c->Dv,
      .out_in = d->layout == MHA_WEIGHTS_OUT_IN,
      .w_q = c->w_copy[W_Q], .w_k = c->w_copy[W_K], .w_v = c->w_copy[W_V], .w_o = c->w_copy[W_O],
      .in_proj_weight = c->w_copy[W_IN_PROJ],
      .b_q = c->w_copy[B_Q], .b_k = c->w_copy[B_K], .b_v = c->w_copy[B_V], .b_o = c->w_copy[B_O],
      .in_proj_bias = c->w_copy[B_IN_PROJ]};
  const size_t n_out = (size_t)c->nx[X_OUT], n_w = (size_t)c->nx[X_W];
  double* out = malloc(n_out * sizeof(double));
  double* out_tol = malloc(n_out * sizeof(double));
  double* w = malloc(n_w * sizeof(double));
  double* w_tol = malloc(n_w * sizeof(double));
  if (!out || !out_tol || !w || !w_tol) exit(2);
  const mha_strides* as = &a->mask.additive_strides;
  const double scale = a->scale != 0.0f ? (double)a->scale : 1.0 / sqrt((double)c->D);
  oracle_layer_trace trace;
  oracle_layer_forward(&L, a->B, a->Tq, c->Tk, a->x_q, a->x_k, a->x_v, scale, a->mask.causal,
                       a->mask.kv_len, a->mask.additive, (oracle_strides){as->batch, as->head, as->row},
                       out, w, &trace);
  tolerance_layer(&L, &trace, w, out_tol, w_tol);
  const int64_t out_dims[4] = {a->B, a->Tq, 1, c->width};
  const int64_t w_dims[4] = {a->B, d->H, a->Tq, c->Tk};
  fuzz_check_close("out", out_dims, a->out, scalar ? scalar->out : NULL, out, out_tol);
  if (a->weights) {
    fuzz_check_close("weights", w_dims, a->weights, scalar ? scalar->weights : NULL, w, w_tol);
  }
  oracle_layer_trace_free(&trace);
  free(out); free(out_tol); free(w); free(w_tol);
}

/* One batch entry alone (B = 1, every pointer moved to it) gives the bits
 * it had in the whole batch. */
static void layer_check_entry(const layer_case* c, const mha_layer* plan, fuzz_rng* r) {
  mha_layer_args a = c->args;
  const int64_t e = (int64_t)(fuzz_next(r) % (uint64_t)a.B);
  const int64_t n_out = a.Tq * c->width, n_w = c->desc.H * a.Tq * c->Tk;
  a.x_q += e * a.Tq * c->desc.d_model;
  if (a.x_k) a.x_k += e * a.Tk * c->d_kv;
  if (a.x_v) a.x_v += e * a.Tk * c->d_kv;
  if (a.mask.kv_len) a.mask.kv_len += e;
  if (a.mask.additive) a.mask.additive += e * a.mask.additive_strides.batch;
  a.B = 1;
  layer_result one = layer_rerun(c, plan, a, a.weights != NULL, "single-entry");
  fuzz_check_identical("out of one entry", c->args.out + e * n_out, one.out, (size_t)n_out);
  if (one.weights) {
    fuzz_check_identical("weights of one entry", c->args.weights + e * n_w, one.weights,
                         (size_t)n_w);
  }
  layer_result_free(&one);
}

/* One 16-bit forward of plan on x16 into a fresh out of exactly its size
 * (ASan sees a write past it); it must succeed. */
static uint16_t* layer_run16(const layer_case* c, const mha_layer* plan, mha_layer_args args, mha_dtype dt,
                             uint16_t* const x16[3], const char* what) {
  const size_t n_out = (size_t)c->nx[X_OUT];
  uint16_t* out = malloc(n_out * sizeof(uint16_t));
  if (out == NULL) exit(2);
  for (size_t i = 0; i < n_out; i++) out[i] = 0x7fa5; /* a NaN in either type; no forward writes it */
  args.dtype = dt;
  args.x_q = (const float*)x16[0];
  args.x_k = (const float*)x16[1];
  args.x_v = (const float*)x16[2];
  args.out = (float*)out;
  args.weights = NULL;
  args.workspace = NULL;
  args.workspace_size = 0;
  const mha_status st = mha_layer_forward(plan, &args);
  if (st != MHA_STATUS_SUCCESS) {
    fuzz_finding("the %s forward failed where the fp32 one succeeded: %s: %s", what, mha_status_string(st),
                 mha_last_error());
  }
  for (size_t i = 0; i < n_out; i++) {
    if (out[i] == 0x7fa5) fuzz_finding("the %s forward left out element %zu unwritten", what, i);
  }
  return out;
}

/* After a successful fp32 forward (include/mha.h, the layer's 16-bit forms):
 *  1. x and out in the type on the case's plan: bitwise the fp32 forward on
 *     the widened inputs, each output rounded once;
 *  2. a plan from the weights and biases in the type: on the widening path
 *     bitwise the plan from their widened values; where the plan's set has
 *     a BF16 unit and the type is bf16 (the layer's BF16 form: its own
 *     accuracy contract, layer-bf16-test) it must succeed, write nothing
 *     past out and give the same bits at another thread count. */
static void layer_check_16(const layer_case* c, const mha_layer* plan) {
  const int f16 = (c->checks & CHECK_F16) != 0;
  const mha_dtype dt = f16 ? MHA_DTYPE_F16 : MHA_DTYPE_BF16;
  const mha_layer_args* a = &c->args;
  const float* x[3] = {a->x_q, a->x_k, a->x_v};
  const int64_t nxi[3] = {c->nx[X_Q], c->nx[X_K], c->nx[X_V]};
  uint16_t* x16[3] = {NULL, NULL, NULL};
  float* xw[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++) {
    if (x[i] != NULL) fuzz_copy16(x[i], (size_t)nxi[i], f16, &x16[i], &xw[i]);
  }
  const size_t n_out = (size_t)c->nx[X_OUT];
  mha_layer_args args = *a;
  args.x_q = xw[0], args.x_k = xw[1], args.x_v = xw[2];
  layer_result ref = layer_rerun(c, plan, args, 0, "fp32 (widened 16-bit inputs)");
  uint16_t* o16 = layer_run16(c, plan, *a, dt, x16, "16-bit io");
  for (size_t i = 0; i < n_out; i++) {
    const float got = fuzz_widen16(o16[i], f16);
    if (isnan(ref.out[i])) {
      if (!isnan(got)) fuzz_finding("16-bit io: out[%zu] NaN in fp32, %g in 16 bits", i, (double)got);
      continue;
    }
    const float want = fuzz_round16(ref.out[i], f16);
    if (memcmp(&got, &want, sizeof got) != 0) {
      fuzz_finding("16-bit io: out[%zu] = %a, not the fp32 forward's %a rounded (%a)", i, (double)got,
                   (double)ref.out[i], (double)want);
    }
  }
  /* 2. the plan from 16-bit weights, and the one from their widened values */
  uint16_t* w16[W_COUNT] = {NULL};
  float* ww[W_COUNT] = {NULL};
  mha_layer_desc d16 = c->desc, dw = c->desc;
  const float** f16p[W_COUNT] = {&d16.w_q, &d16.w_k, &d16.w_v, &d16.w_o, &d16.in_proj_weight,
                                 &d16.b_q, &d16.b_k, &d16.b_v, &d16.b_o, &d16.in_proj_bias};
  const float** fwp[W_COUNT] = {&dw.w_q, &dw.w_k, &dw.w_v, &dw.w_o, &dw.in_proj_weight,
                                &dw.b_q, &dw.b_k, &dw.b_v, &dw.b_o, &dw.in_proj_bias};
  for (int i = 0; i < W_COUNT; i++) {
    if (c->w_copy[i] == NULL) continue;
    fuzz_copy16(c->w_copy[i], (size_t)c->n[i], f16, &w16[i], &ww[i]);
    *f16p[i] = (const float*)w16[i];
    *fwp[i] = ww[i];
  }
  /* the case's desc is memset (struct_size 0: the 0.5 layout, without dtype) */
  d16.struct_size = sizeof d16;
  d16.dtype = dt;
  mha_layer *p16 = NULL, *pw = NULL;
  const mha_status s16 = mha_layer_create(&d16, &p16), sw = mha_layer_create(&dw, &pw);
  if (s16 != MHA_STATUS_SUCCESS || sw != MHA_STATUS_SUCCESS) {
    fuzz_finding("a plan from the %s weights (%s) or their widened values (%s) failed where the fp32 plan "
                 "succeeded: %s", f16 ? "f16" : "bf16", mha_status_string(s16), mha_status_string(sw),
                 mha_last_error());
  } else {
    mha_isa set = mha_layer_isa(p16);
    /* the BF16 form: bf16 weights on a set with a BF16 unit (one that widens on another) */
    const int form = !f16 && tester_widening_isa(set) != set;
    uint16_t* a16 = layer_run16(c, p16, *a, dt, x16, "16-bit weights");
    if (!form) {
      uint16_t* aw = layer_run16(c, pw, *a, dt, x16, "widened weights");
      for (size_t i = 0; i < n_out; i++) {
        if (a16[i] != aw[i] && !(isnan(fuzz_widen16(a16[i], f16)) && isnan(fuzz_widen16(aw[i], f16)))) {
          fuzz_finding("16-bit weights: out[%zu] = 0x%04x, the plan of their widened values 0x%04x", i, a16[i], aw[i]);
        }
      }
      free(aw);
    } else {
      mha_layer_args t = *a;
      t.num_threads = a->num_threads == 1 ? 2 : 1;
      uint16_t* again = layer_run16(c, p16, t, dt, x16, "BF16 form, another thread count");
      if (memcmp(a16, again, n_out * sizeof(uint16_t)) != 0) {
        fuzz_finding("the layer's BF16 form: the bits differ at another thread count");
      }
      free(again);
    }
    free(a16);
  }
  mha_layer_destroy(p16);
  mha_layer_destroy(pw);
  for (int i = 0; i < W_COUNT; i++) free(w16[i]), free(ww[i]);
  layer_result_free(&ref);
  free(o16);
  for (int i = 0; i < 3; i++) free(x16[i]), free(xw[i]);
}

static void layer_check_success(const layer_case* c, const mha_layer* plan,
                                const mha_layer* scalar, fuzz_rng* r) {
  const mha_layer_args* a = &c->args;
  layer_check_written("out", a->out, (size_t)c->nx[X_OUT]);
  if (a->weights) layer_check_written("weights", a->weights, (size_t)c->nx[X_W]);
  layer_result s = {NULL, NULL};
  if (scalar != NULL) s = layer_rerun(c, scalar, *a, a->weights != NULL, "scalar plan's");
  layer_check_oracle(c, scalar != NULL ? &s : NULL);
  layer_result_free(&s);
  if (c->checks & CHECK_THREADS) {
    mha_layer_args args = *a;
    args.num_threads = a->num_threads == 1 ? 2 : 1;
    layer_result t = layer_rerun(c, plan, args, a->weights != NULL, "thread-count");
    fuzz_check_identical("out at another thread count", a->out, t.out, (size_t)c->nx[X_OUT]);
    if (t.weights) {
      fuzz_check_identical("weights at another thread count", a->weights, t.weights,
                           (size_t)c->nx[X_W]);
    }
    layer_result_free(&t);
  }
  if (c->checks & CHECK_WEIGHTS) {
    layer_result t = layer_rerun(c, plan, *a, a->weights == NULL, "weights-toggled");
    fuzz_check_identical("out with weights toggled", a->out, t.out, (size_t)c->nx[X_OUT]);
    layer_result_free(&t);
  }
  if ((c->checks & CHECK_ENTRY) && a->B > 1) layer_check_entry(c, plan, r);
  if (c->checks & CHECK_16) layer_check_16(c, plan);
}

/* Inputs never change; on failure nothing changes at all. */
static void layer_check_untouched(const layer_case* c, int failed) {
  for (int i = 0; i < X_COUNT; i++) {
    if (c->own[i] == NULL || (i >= X_OUT && !failed)) continue;
    fuzz_check_unchanged(x_name[i], c->own[i], c->snap[i], c->n_own[i] * sizeof(float));
  }
}

static void layer_forward(layer_case* c, fuzz_rng* r, const mha_layer* plan,
                          const mha_layer* scalar) {
  size_t needed;
  const mha_status qst = layer_query(c, plan, &needed);
  const int known = qst == MHA_STATUS_SUCCESS && c->null != NULL_BYTES;
  if (c->alias == ALIAS_WORKSPACE_IS_OUT && (!known || (int64_t)needed > FUZZ_MAX_BUFFER_BYTES)) {
    c->alias = ALIAS_NONE; /* the workspace lies over out only where its size is known */
  }
  if (c->alias == ALIAS_WORKSPACE_IS_OUT) c->ws = WS_NONE;
  void* ws = layer_workspace(c, needed, known);
  layer_expect_call(c, needed, known);
  if (c->call.required == 0 && !(c->small && layer_inputs_reasonable(c) && !c->mask.tiny)) {
    free(ws); /* valid, but too big to run here (a tiny stand-in would be read) */
    return;
  }
  layer_make_inputs(c, r, c->alias == ALIAS_WORKSPACE_IS_OUT ? (needed + 3) / sizeof(float) : 0);
  mha_layer_args args = c->args;
  if (c->null == NULL_X_Q) args.x_q = NULL;
  if (c->null == NULL_OUT) args.out = NULL;
  const mha_status st = mha_layer_forward(c->null == NULL_LAYER ? NULL : plan,
                                          c->null == NULL_ARGS ? NULL : &args);
  fuzz_check_status("mha_layer_forward", st, &c->call);
  layer_check_untouched(c, st != MHA_STATUS_SUCCESS);
  const int pointers_fine = c->null == NULL_NONE && c->ws == WS_NONE && c->alias == ALIAS_NONE &&
                            layer_inputs_reasonable(c) && !c->mask.tiny;
  if (pointers_fine && st != qst && st != MHA_STATUS_OUT_OF_MEMORY) {
    fuzz_finding("the forward returned %s but the workspace query %s", mha_status_string(st),
                 mha_status_string(qst));
  }
  if (st == MHA_STATUS_SUCCESS) layer_check_success(c, plan, scalar, r);
  free(ws);
}

/* ------------------------------------------------------------------------ */

static void layer_case_free(layer_case* c) {
  for (int i = 0; i < W_COUNT; i++) {
    free(c->w[i]);
    free(c->w_copy[i]);
  }
  for (int i = 0; i < X_COUNT; i++) {
    free(c->own[i]);
    free(c->snap[i]);
  }
  fuzz_mask_free(&c->mask);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_input in = {data, size};
  fuzz_rng rng = fuzz_rng_from(data, size);
  layer_case c;
  memset(&c, 0, sizeof c);
  weight_form form;
  unsigned biases;
  layer_decode_desc(&in, &c, &form, &biases);
  layer_expect_create(&c);
  layer_decode_args(&in, &rng, &c);
  layer_describe(&c, form);
  if (c.create.required == 0 && !(c.create_small && layer_weights_real(&c))) {
    layer_case_free(&c); /* a valid plan too big to build here */
    return 0;
  }
  layer_make_weights(&c, &rng);
  mha_layer* plan = layer_create(&c);
  mha_layer* scalar = NULL;
  if (plan != NULL && c.desc.isa != MHA_ISA_SCALAR) {
    mha_layer_desc desc = c.desc;
    desc.isa = MHA_ISA_SCALAR;
    if (mha_layer_create(&desc, &scalar) != MHA_STATUS_SUCCESS) {
      fuzz_finding("the scalar plan failed: %s", mha_last_error());
    }
  }
  /* the plans keep packed copies: the caller's weights may go now */
  for (int i = 0; i < W_COUNT; i++) {
    free(c.w[i]);
    c.w[i] = NULL;
  }
  if (plan != NULL) {
    layer_expect_forward(&c);
    layer_forward(&c, &rng, plan, scalar);
  }
  mha_layer_destroy(scalar);
  mha_layer_destroy(plan);
  layer_case_free(&c);
  return 0;
}
