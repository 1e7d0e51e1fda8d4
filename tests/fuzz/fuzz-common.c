/* Shared parts of the libFuzzer harnesses: see fuzz-common.h. */
#include "fuzz-common.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */
/* ------------------------------------------------------------------------ */

uint8_t fuzz_u8(fuzz_input* in, uint8_t dflt) {
  if (in->size == 0) return dflt;
  const uint8_t b = in->data[0];
  in->data++;
  in->size--;
  return b;
}

uint16_t fuzz_u16(fuzz_input* in, uint16_t dflt) {
  if (in->size < 2) {
    in->size = 0;
    return dflt;
  }
  const uint16_t v = (uint16_t)(in->data[0] | in->data[1] << 8);
  in->data += 2;
  in->size -= 2;
  return v;
}

int64_t fuzz_size(fuzz_input* in, int64_t dflt) {
  if (in->size == 0) return dflt;
  const uint8_t b = fuzz_u8(in, 0);
  switch (b) {
    case 0xE0: return 0;
    case 0xE1: return -1;
    case 0xE2: return INT64_MIN;
    case 0xE3: return (int64_t)1 << 62;
    case 0xE4: return INT64_MAX;
    case 0xE5: return (int64_t)1 << 31;
    case 0xE6: return ((int64_t)1 << 32) + 1;
    case 0xE7: return 1 + fuzz_u16(in, 2047) % 2200; /* decode-sized key counts */
    case 0xE8: return 2048;
    case 0xE9: return (int64_t)1 << 40;
    case 0xEA: return 3037000500; /* just above sqrt(INT64_MAX): squares overflow */
    case 0xEB: return INT32_MAX;
    default: return b >= 0x70 && b < 0xE0 ? 1 + (b - 0x70) % 70 : 1 + b % 8;
  }
}

mha_isa fuzz_isa(fuzz_input* in) {
  const uint8_t b = fuzz_u8(in, 0);
  if (b < 0xF0) return (mha_isa)(b % MHA_ISA_COUNT);
  static const int bad[] = {MHA_ISA_COUNT, -1, 100};
  return (mha_isa)bad[b % 3];
}

int fuzz_threads(fuzz_input* in) {
  const uint8_t b = fuzz_u8(in, 0);
  if (b < 0xF0) return b % 3;
  static const int odd[] = {3, -1, INT_MIN};
  return odd[b % 3];
}

float fuzz_scale(fuzz_input* in) {
  const uint8_t b = fuzz_u8(in, 0);
  if (b < 0x80) return 0.0f; /* the default 1/sqrt(D), the common case */
  if (b < 0xF0) return (float)((int)(b - 0x80) - 40) / 16.0f; /* -2.5 .. 4.4 */
  static const float special[16] = {NAN,   INFINITY, -INFINITY, 3e38f, -3e38f, -0.0f,
                                    FLT_MIN, 1e-30f, 1e6f,     FLT_MAX, 0.125f, 1.0f,
                                    30.0f,  -1.0f,   1e3f,     0.0f};
  return special[b - 0xF0];
}

fuzz_rng fuzz_rng_from(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 0x100000001b3u;
  fuzz_rng r = {h};
  return r;
}

uint64_t fuzz_next(fuzz_rng* r) { /* splitmix64 */
  uint64_t z = (r->state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

float fuzz_uniform(fuzz_rng* r, float lo, float hi) {
  const float u = (float)(fuzz_next(r) >> 40) * 0x1.0p-24f;
  const float x = lo + (hi - lo) * u;
  return x != 0.0f ? x : 0.5f * (hi != 0.0f ? hi : lo); /* inputs are never all zeros */
}

/* ------------------------------------------------------------------------ */
/* Views                                                                    */
/* ------------------------------------------------------------------------ */

int64_t fuzz_mul_sat(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_mul_overflow(a, b, &r)) return r;
  return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
}

int64_t fuzz_add_sat(int64_t a, int64_t b) {
  int64_t r;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return a < 0 ? INT64_MIN : INT64_MAX;
}

/* Contiguous [B, n1, n2, width]. */
static mha_strides fuzz_bhtd(int64_t n1, int64_t n2, int64_t width) {
  const int64_t row = width, head = fuzz_mul_sat(n2, row);
  mha_strides s = {fuzz_mul_sat(n1, head), head, row};
  return s;
}

mha_strides fuzz_layout(fuzz_input* in, int64_t n1, int64_t n2, int64_t width) {
  const uint8_t b = fuzz_u8(in, 0);
  mha_strides s = fuzz_bhtd(n1, n2, width);
  if (b < 0x80) return s;
  switch ((b - 0x80) % 16) {
    case 0: { /* [B, T, H, W]: what X·W produces */
      s.head = width;
      s.row = fuzz_mul_sat(n1, width);
      s.batch = fuzz_mul_sat(n2, s.row);
      break;
    }
    case 1: { /* BHTD with gaps after each row, head and batch */
      s.row = fuzz_add_sat(width, fuzz_u8(in, 3));
      s.head = fuzz_add_sat(fuzz_mul_sat(n2, s.row), fuzz_u8(in, 5));
      s.batch = fuzz_add_sat(fuzz_mul_sat(n1, s.head), fuzz_u8(in, 7));
      break;
    }
    case 2: s.batch = 0; break;
    case 3: s.head = 0; break;
    case 4: s.row = 0; break;
    case 5: s.batch = s.batch > 0 ? -s.batch : -1; break;
    case 6: s.head = s.head > 0 ? -s.head : -1; break;
    case 7: s.row = s.row > 0 ? -s.row : -1; break;
    case 8: s.row = width > 1 ? width - 1 : 0; break; /* rows overlap by one */
    case 9: s.head = fuzz_mul_sat(fuzz_add_sat(n2, -1), s.row); break; /* last row = next head's first */
    case 10: s.batch = s.batch > 0 ? s.batch - 1 : 0; break; /* batches overlap by one */
    case 11: s.row = (int64_t)1 << 60; break;
    case 12: s.head = INT64_MAX / 2; break;
    case 13: { /* explicit */
      s.batch = fuzz_size(in, s.batch);
      s.head = fuzz_size(in, s.head);
      s.row = fuzz_size(in, s.row);
      break;
    }
    case 14: { /* [B, T, H, W] with gaps after each head's columns, row and batch */
      s.head = fuzz_add_sat(width, fuzz_u8(in, 1));
      s.row = fuzz_add_sat(fuzz_mul_sat(n1, s.head), fuzz_u8(in, 2));
      s.batch = fuzz_add_sat(fuzz_mul_sat(n2, s.row), fuzz_u8(in, 3));
      break;
    }
    default: { /* stride 0 on every dimension of size 1: always allowed */
      if (n1 == 1) s.head = 0;
      if (n2 == 1) s.row = 0;
      s.batch = fuzz_u8(in, 0) & 1 ? 0 : s.batch; /* batch size unknown here: sometimes 0 */
      break;
    }
  }
  return s;
}

int fuzz_view_extent(const fuzz_view* v, int64_t* extent) {
  *extent = 0;
  if (v->n0 < 1 || v->n1 < 1 || v->n2 < 1 || v->width < 1) return 0;
  if (v->s.batch < 0 || v->s.head < 0 || v->s.row < 0) return 0;
  int64_t a, b, c, end, bytes;
  if (__builtin_mul_overflow(v->n0 - 1, v->s.batch, &a) ||
      __builtin_mul_overflow(v->n1 - 1, v->s.head, &b) ||
      __builtin_mul_overflow(v->n2 - 1, v->s.row, &c) || __builtin_add_overflow(a, b, &end) ||
      __builtin_add_overflow(end, c, &end) || __builtin_add_overflow(end, v->width, &end) ||
      __builtin_mul_overflow(end, (int64_t)sizeof(float), &bytes)) {
    return 0;
  }
  *extent = end;
  return 1;
}

int fuzz_view_nested(const fuzz_view* v) {
  int64_t n[3] = {v->n0, v->n1, v->n2}, s[3] = {v->s.batch, v->s.head, v->s.row};
  /* sort the three dimensions by stride (insertion sort) */
  for (int i = 1; i < 3; i++) {
    for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
      int64_t t = s[j]; s[j] = s[j - 1]; s[j - 1] = t;
      t = n[j]; n[j] = n[j - 1]; n[j - 1] = t;
    }
  }
  int64_t span = v->width;
  for (int i = 0; i < 3; i++) {
    if (n[i] <= 1) continue;
    if (s[i] < span) return 0;
    span = fuzz_add_sat(span, fuzz_mul_sat(n[i] - 1, s[i]));
  }
  return 1;
}

/* ------------------------------------------------------------------------ */
/* The status model                                                         */
/* ------------------------------------------------------------------------ */

void fuzz_expect_init(fuzz_expect* e) { memset(e, 0, sizeof *e); }

void fuzz_require(fuzz_expect* e, mha_status status, const char* fmt, ...) {
  e->required |= FUZZ_BIT(status);
  const size_t used = strlen(e->why);
  if (used + 4 >= sizeof e->why) return; /* the first reasons are enough */
  if (used > 0) strcat(e->why, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->why + strlen(e->why), sizeof e->why - strlen(e->why), fmt, ap);
  va_end(ap);
}

void fuzz_allow(fuzz_expect* e, mha_status status) { e->allowed |= FUZZ_BIT(status); }

int64_t fuzz_expect_view(fuzz_expect* e, const char* name, const fuzz_view* v, int is_output,
                         int is_mask) {
  int broken = 0;
  if (v->s.batch < 0 || v->s.head < 0 || v->s.row < 0) {
    fuzz_require(e, MHA_STATUS_INVALID_STRIDE, "%s has a negative stride", name);
    broken = 1;
  }
  if (v->n2 > 1 && v->s.row < v->width && !(is_mask && v->s.row == 0)) {
    fuzz_require(e, MHA_STATUS_INVALID_STRIDE, "%s row stride %lld < its row %lld", name,
                 (long long)v->s.row, (long long)v->width);
    broken = 1;
  }
  if (v->n0 < 1 || v->n1 < 1 || v->n2 < 1 || v->width < 1 || broken) return 0;
  int64_t extent;
  if (!fuzz_view_extent(v, &extent)) {
    fuzz_require(e, MHA_STATUS_SIZE_OVERFLOW, "the extent of %s overflows", name);
    return 0;
  }
  if (is_output && !fuzz_view_nested(v)) {
    fuzz_require(e, MHA_STATUS_INVALID_STRIDE, "%s strides do not nest", name);
  }
  return extent;
}

static void fuzz_format_statuses(unsigned bits, char* buf, size_t size) {
  buf[0] = '\0';
  for (int st = 0; st < 32; st++) {
    if (!(bits & FUZZ_BIT(st))) continue;
    const size_t used = strlen(buf);
    snprintf(buf + used, size - used, "%s%s", used ? ", " : "", mha_status_string((mha_status)st));
  }
}

void fuzz_check_status(const char* call, mha_status st, const fuzz_expect* e) {
  const unsigned bit = (int)st >= 0 && (int)st < 32 ? FUZZ_BIT(st) : 0;
  char expected[256];
  fuzz_format_statuses(e->required | e->allowed, expected, sizeof expected);
  if (e->required != 0 && st == MHA_STATUS_SUCCESS) {
    fuzz_finding("%s returned SUCCESS, but it must fail (%s) because: %s", call, expected, e->why);
  }
  if (e->required != 0 && !(bit & (e->required | e->allowed))) {
    fuzz_finding("%s returned %s (%d), expected one of {%s} because: %s; message: %s", call,
                 mha_status_string(st), (int)st, expected, e->why, mha_last_error());
  }
  if (e->required == 0 && st != MHA_STATUS_SUCCESS && !(bit & e->allowed)) {
    fuzz_finding("%s refused a valid call with %s (%d): %s", call, mha_status_string(st), (int)st,
                 mha_last_error());
  }
  if (st != MHA_STATUS_SUCCESS) {
    const char* msg = mha_last_error();
    if (msg == NULL || msg[0] == '\0') {
      fuzz_finding("%s returned %s with an empty mha_last_error()", call, mha_status_string(st));
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                  */
/* ------------------------------------------------------------------------ */

/* A quiet NaN with a payload no computation produces from the inputs' NaNs. */
static const uint32_t fuzz_poison_bits = 0x7fc5a5a5u;

float* fuzz_alloc(size_t n) {
  float* p = malloc((n ? n : 1) * sizeof(float));
  if (p == NULL) {
    fprintf(stderr, "mha-fuzz: cannot allocate %zu floats\n", n);
    exit(2);
  }
  return p;
}

int fuzz_reasonable(int64_t floats) {
  return floats >= 1 && floats <= FUZZ_MAX_BUFFER_BYTES / (int64_t)sizeof(float);
}

void fuzz_fill_nan(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}

void fuzz_poison(float* x, size_t n) {
  for (size_t i = 0; i < n; i++) memcpy(&x[i], &fuzz_poison_bits, sizeof(float));
}

int fuzz_is_poison(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return bits == fuzz_poison_bits;
}

/* Elements of the view, saturating. */
static int64_t fuzz_view_elements(const fuzz_view* v) {
  return fuzz_mul_sat(fuzz_mul_sat(fuzz_mul_sat(v->n0, v->n1), v->n2), v->width);
}

/* Runs body with row pointing at each row of the view, in order. */
#define FUZZ_FOR_ROWS(base, v, row, body)                                            \
  for (int64_t fa_ = 0; fa_ < (v)->n0; fa_++) {                                      \
    for (int64_t fb_ = 0; fb_ < (v)->n1; fb_++) {                                    \
      for (int64_t fc_ = 0; fc_ < (v)->n2; fc_++) {                                  \
        row = (base) + fa_ * (v)->s.batch + fb_ * (v)->s.head + fc_ * (v)->s.row;    \
        body                                                                         \
      }                                                                              \
    }                                                                                \
  }

/* A view whose elements far outnumber its extent (stride 0 over a huge
 * dimension) is filled flat: such a call is never run, only refused. */
static int fuzz_view_walkable(const fuzz_view* v, int64_t extent) {
  return fuzz_view_elements(v) <= fuzz_mul_sat(4, extent);
}

void fuzz_fill_view(float* base, int64_t extent, const fuzz_view* v, fuzz_rng* r, float lo,
                    float hi) {
  if (!fuzz_view_walkable(v, extent)) {
    for (int64_t i = 0; i < extent; i++) base[i] = fuzz_uniform(r, lo, hi);
    return;
  }
  float* row;
  FUZZ_FOR_ROWS(base, v, row, {
    for (int64_t d = 0; d < v->width; d++) row[d] = fuzz_uniform(r, lo, hi);
  })
}

void fuzz_gather(const float* base, const fuzz_view* v, float* dst) {
  const float* row;
  FUZZ_FOR_ROWS(base, v, row, {
    memcpy(dst, row, (size_t)v->width * sizeof(float));
    dst += v->width;
  })
}

void fuzz_poison_view(float* base, const fuzz_view* v) {
  float* row;
  FUZZ_FOR_ROWS(base, v, row, { fuzz_poison(row, (size_t)v->width); })
}

float* fuzz_view_pick(float* base, const fuzz_view* v, fuzz_rng* r) {
  const uint64_t a = fuzz_next(r) % (uint64_t)v->n0, b = fuzz_next(r) % (uint64_t)v->n1;
  const uint64_t c = fuzz_next(r) % (uint64_t)v->n2, d = fuzz_next(r) % (uint64_t)v->width;
  return base + (int64_t)a * v->s.batch + (int64_t)b * v->s.head + (int64_t)c * v->s.row +
         (int64_t)d;
}

/* ------------------------------------------------------------------------ */
/* Masks                                                                    */
/* ------------------------------------------------------------------------ */

/* Fills the additive mask's view: finite values, -inf (single keys, whole
 * rows, nearly everything), one +inf or NaN, huge finite values. */
static void fuzz_mask_fill(fuzz_mask* m, uint8_t content, fuzz_rng* r) {
  const fuzz_view* v = &m->view;
  fuzz_fill_nan(m->additive, (size_t)m->extent); /* gaps: a correct kernel never reads them */
  if (!fuzz_view_walkable(v, m->extent)) {
    for (int64_t i = 0; i < m->extent; i++) m->additive[i] = fuzz_uniform(r, -2.0f, 2.0f);
    return;
  }
  float* row;
  FUZZ_FOR_ROWS(m->additive, v, row, {
    const int hide_row = content % 8 == 2 && fuzz_next(r) % 3 == 0;
    for (int64_t j = 0; j < v->width; j++) {
      const uint64_t dice = fuzz_next(r) % 64;
      float x = fuzz_uniform(r, -2.0f, 2.0f);
      switch (content % 8) {
        case 1: if (dice < 16) x = -INFINITY; break;
        case 2: if (hide_row) x = -INFINITY; break;
        case 3: if (dice < 60) x = -INFINITY; break;
        case 6: if (dice < 8) x = dice & 1 ? 1e30f : -1e30f; break;
        case 7: x = dice < 16 ? -INFINITY : dice == 16 ? NAN : dice == 17 ? INFINITY : x; break;
        default: break;
      }
      row[j] = x;
    }
  })
  if (content % 8 == 4) *fuzz_view_pick(m->additive, v, r) = INFINITY;
  if (content % 8 == 5) *fuzz_view_pick(m->additive, v, r) = NAN;
}

static void fuzz_kv_len_make(fuzz_input* in, fuzz_rng* r, int64_t B, int64_t Tk, fuzz_mask* m,
                             fuzz_expect* e) {
  const uint8_t k = fuzz_u8(in, 0);
  if (k % 8 < 4 || !fuzz_reasonable(B)) return; /* no kv_len (it needs an array of B) */
  m->kv_len = malloc((size_t)B * sizeof(int32_t));
  if (m->kv_len == NULL) exit(2);
  const int64_t top = Tk < 0 ? 0 : Tk > INT32_MAX ? INT32_MAX : Tk;
  for (int64_t b = 0; b < B; b++) {
    m->kv_len[b] = k % 8 == 5 ? (int32_t)top : (int32_t)(fuzz_next(r) % (uint64_t)(top + 1));
  }
  if (k % 8 == 6 && B > 1) { /* an empty entry and a full one */
    m->kv_len[0] = 0;
    m->kv_len[B - 1] = (int32_t)top;
  }
  if (k % 8 == 7) {
    const int64_t bad[4] = {-1, fuzz_add_sat(Tk, 1), INT32_MAX, INT32_MIN};
    const int64_t x = bad[(k >> 3) % 4];
    m->kv_len[fuzz_next(r) % (uint64_t)B] = (int32_t)(x > INT32_MAX ? INT32_MAX : x);
  }
  for (int64_t b = 0; b < B; b++) {
    if (m->kv_len[b] < 0 || m->kv_len[b] > Tk) {
      fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "kv_len[%lld] = %d outside [0, Tk = %lld]",
                   (long long)b, (int)m->kv_len[b], (long long)Tk);
      break;
    }
  }
  m->mask.kv_len = m->kv_len;
}

/* The additive mask's strides: broadcasts, full, padded, bad. */
static int fuzz_additive_strides(fuzz_input* in, uint8_t kind, int64_t H, int64_t Tq, int64_t Tk,
                                 mha_strides* s) {
  const int64_t rowq = fuzz_mul_sat(Tq, Tk);
  switch (kind % 12) {
    case 3: *s = (mha_strides){0, 0, Tk}; return 1;                 /* one [Tq, Tk] mask */
    case 4: *s = fuzz_bhtd(H, Tq, Tk); return 1;                    /* full */
    case 5: {                                                       /* padded */
      const int64_t pad = fuzz_u8(in, 1);
      s->row = fuzz_add_sat(Tk, pad);
      s->head = fuzz_add_sat(fuzz_mul_sat(Tq, s->row), pad);
      s->batch = fuzz_add_sat(fuzz_mul_sat(H, s->head), pad);
      return 1;
    }
    case 6: *s = (mha_strides){rowq, 0, Tk}; return 1;              /* per batch, heads broadcast */
    case 7: *s = (mha_strides){Tk, 0, 0}; return 1;                 /* key padding */
    case 8: *s = (mha_strides){0, 0, 0}; return 1;                  /* one row for everything */
    case 9: *s = (mha_strides){0, -1, Tk}; return 1;                /* negative */
    case 10: *s = (mha_strides){0, 0, fuzz_add_sat(Tk, -1)}; return 1; /* rows shorter than Tk */
    case 11: *s = fuzz_layout(in, H, Tq, Tk); return 1;             /* anything */
    default: return 0;                                              /* no additive mask */
  }
}

void fuzz_mask_make(fuzz_input* in, fuzz_rng* r, int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                    fuzz_mask* m, fuzz_expect* e) {
  memset(m, 0, sizeof *m);
  const uint8_t c = fuzz_u8(in, 0);
  static const int bad_causal[] = {2, -1, INT_MIN};
  m->mask.causal = c < 0xF0 ? c & 1 : bad_causal[c % 3];
  if (m->mask.causal != 0 && m->mask.causal != 1) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.causal = %d", m->mask.causal);
  }
  fuzz_kv_len_make(in, r, B, Tk, m, e);

  const uint8_t kind = fuzz_u8(in, 0);
  mha_strides s;
  if (!fuzz_additive_strides(in, kind, H, Tq, Tk, &s)) return;
  const uint8_t content = fuzz_u8(in, 0);
  m->view = (fuzz_view){B, H, Tq, Tk, s};
  m->extent = fuzz_expect_view(e, "mask.additive", &m->view, 0, 1);
  if (fuzz_reasonable(m->extent)) {
    m->additive = fuzz_alloc((size_t)m->extent);
    fuzz_mask_fill(m, content, r);
  } else {
    m->extent = 1; /* the call must fail before reading it */
    m->tiny = 1;
    m->additive = fuzz_alloc(1);
    m->additive[0] = 0.0f;
  }
  m->mask.additive = m->additive;
  m->mask.additive_strides = s;
}

void fuzz_mask_free(fuzz_mask* m) {
  free(m->kv_len);
  free(m->additive);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static char fuzz_case[1024];

void fuzz_describe(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fuzz_case, sizeof fuzz_case, fmt, ap);
  va_end(ap);
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("MHA_FUZZ_VERBOSE") != NULL;
  if (verbose) fprintf(stderr, "mha-fuzz case: %s\n", fuzz_case);
}

void fuzz_finding(const char* fmt, ...) {
  fprintf(stderr, "\nmha-fuzz finding: ");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n  case: %s\n", fuzz_case);
  abort();
}

void fuzz_check_unchanged(const char* what, const void* x, const void* snapshot, size_t bytes) {
  if (memcmp(x, snapshot, bytes) == 0) return;
  const unsigned char *a = x, *b = snapshot;
  size_t i = 0;
  while (a[i] == b[i]) i++;
  fuzz_finding("%s changed at byte %zu of %zu (float element %zu)", what, i, bytes,
               i / sizeof(float));
}

void* fuzz_snapshot(const void* x, size_t bytes) {
  void* copy = malloc(bytes ? bytes : 1);
  if (copy == NULL) exit(2);
  memcpy(copy, x, bytes);
  return copy;
}

void fuzz_expect_isa(fuzz_expect* e, mha_isa isa) {
  if ((int)isa < 0 || (int)isa >= MHA_ISA_COUNT) {
    /* "not an mha_isa": INVALID_ARGUMENT as mha_set_isa(), or UNKNOWN_ISA */
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "isa = %d is not an mha_isa", (int)isa);
    fuzz_allow(e, MHA_STATUS_UNKNOWN_ISA);
  } else if (isa == MHA_ISA_DEFAULT) {
    mha_isa current;
    const mha_status st = mha_get_isa(&current); /* fails for a bad MHA_ISA */
    if (st != MHA_STATUS_SUCCESS) fuzz_require(e, st, "the process kernel set (MHA_ISA) is bad");
  } else if (!mha_isa_available(isa)) {
    fuzz_require(e, MHA_STATUS_UNSUPPORTED_ISA, "isa %s is not available here", mha_isa_name(isa));
  }
}

static void fuzz_index(const int64_t dims[4], size_t i, char* buf, size_t size) {
  int64_t idx[4];
  for (int d = 3; d >= 0; d--) {
    idx[d] = (int64_t)i % dims[d];
    i /= (size_t)dims[d];
  }
  snprintf(buf, size, "[%lld, %lld, %lld, %lld]", (long long)idx[0], (long long)idx[1],
           (long long)idx[2], (long long)idx[3]);
}

void fuzz_check_close(const char* what, const int64_t dims[4], const float* got, const float* ref,
                      const double* oracle, const double* tol) {
  const size_t n = (size_t)(dims[0] * dims[1] * dims[2] * dims[3]);
  for (size_t i = 0; i < n; i++) {
    const double t = tol[i], o = oracle[i], g = got[i], s = ref != NULL ? ref[i] : g;
    if (!isfinite(t)) continue; /* the bound is vacuous (logits overflow float) */
    const int ok = isnan(o) ? isnan(g) && isnan(s) : fabs(g - o) <= t && fabs(s - o) <= t;
    if (ok) continue;
    char at[96];
    fuzz_index(dims, i, at, sizeof at);
    fuzz_finding("%s%s: got %.9g, scalar %.9g, oracle %.9g, tolerance %.3g (|got - scalar| = %.3g)",
                 what, at, g, s, o, t, fabs(g - s));
  }
}

void fuzz_check_identical(const char* what, const float* got, const float* again, size_t n) {
  for (size_t i = 0; i < n; i++) {
    /* the guarantee is on values: two NaNs are the same result whatever
     * their sign and payload (an order of operations may flip a NaN's sign) */
    if (isnan(got[i]) && isnan(again[i])) continue;
    if (memcmp(&got[i], &again[i], sizeof(float)) != 0) {
      fuzz_finding("%s: the bits differ at element %zu of %zu: %a, rerun %a", what, i, n,
                   (double)got[i], (double)again[i]);
    }
  }
}

void fuzz_expect_variant_fields(fuzz_expect* e, const mha_mask* m) {
  const int64_t pos_limit = (int64_t)1 << 60;
  if ((int)m->align < 0 || (int)m->align > 3) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.align = %d", (int)m->align);
  } else if (m->align == MHA_ALIGN_OFFSET && (m->offset >= pos_limit || m->offset <= -pos_limit)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "|mask.offset| >= 2^60");
  }
  if (m->window != 0 && m->window != 1) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.window = %d", m->window);
  } else if (m->window && (m->window_left < 0 || m->window_right < 0)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "a negative window side");
  }
  if (!(m->softcap >= 0.0f) || !isfinite(m->softcap)) {
    fuzz_require(e, MHA_STATUS_INVALID_ARGUMENT, "mask.softcap = %a", (double)m->softcap);
  }
}

/* A window side: < 0xF0 byte % 16; 0xF0.. -1, INT64_MIN, INT64_MAX, 2^62,
 * 2^62 + 1, 64, 300; above, byte % 16. */
static int64_t fuzz_window_side(fuzz_input* in) {
  static const int64_t special[] = {-1, INT64_MIN, INT64_MAX, (int64_t)1 << 62,
                                    ((int64_t)1 << 62) + 1, 64, 300};
  const uint8_t b = fuzz_u8(in, 0);
  return b >= 0xF0 && b < 0xF0 + 7 ? special[b - 0xF0] : (int64_t)(b % 16);
}

void fuzz_decode_position(fuzz_input* in, mha_mask* m) {
  const uint8_t align = fuzz_u8(in, 0);
  m->align = align < 0xF0 ? (mha_align)(align % 4) : align == 0xF0 ? (mha_align)4 : (mha_align)-1;
  static const int64_t offsets[] = {(int64_t)1 << 60,       -((int64_t)1 << 60),
                                    INT64_MAX,              INT64_MIN,
                                    ((int64_t)1 << 60) - 1, -(((int64_t)1 << 60) - 1),
                                    1000,                   -1000};
  const uint8_t off = fuzz_u8(in, 0x20); /* 0x20: offset 0 */
  m->offset = off >= 0xF8 ? offsets[off - 0xF8] : (int64_t)(off % 64) - 32;
  const uint8_t win = fuzz_u8(in, 0);
  m->window = win < 0xF0 ? win & 1 : win == 0xF0 ? 2 : -1;
  m->window_left = fuzz_window_side(in);
  m->window_right = fuzz_window_side(in);
}

/* ------------------------------------------------------------------------ */
/* The 16-bit formats                                                       */
/* ------------------------------------------------------------------------ */

static float fuzz_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float fuzz_bf16_to_f32(uint16_t h) { return fuzz_bits_f32((uint32_t)h << 16); }

float fuzz_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1fu) return fuzz_bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
  if (exp != 0) return fuzz_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0) return fuzz_bits_f32(sign);
  const float mag = (float)man * 5.9604644775390625e-8f; /* man · 2^-24 */
  return sign ? -mag : mag;
}

float fuzz_round16(float x, int f16) {
  if (isinf(x)) return x;
  const int p = f16 ? 11 : 8;        /* significand bits, the hidden one included */
  const int emin = f16 ? -14 : -126; /* the exponent of the smallest normal */
  const int emax = f16 ? 15 : 127;   /* of the largest */
  const double a = fabs((double)x);
  double r = 0.0;
  if (a != 0.0) {
    int e;
    (void)frexp(a, &e); /* a = m · 2^e, m in [0.5, 1) */
    int E = e - 1;
    if (E < emin) E = emin; /* subnormal: the smallest normal's ulp */
    const double ulp = ldexp(1.0, E - (p - 1));
    r = rint(a / ulp) * ulp;
    if (r >= ldexp(1.0, emax + 1)) r = INFINITY;
  }
  const float f = (float)r; /* exact: a 16-bit value is a float */
  return signbit(x) ? -f : f;
}

uint16_t fuzz_to16(float x, int f16) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if (!f16) return (uint16_t)(u >> 16);
  if (isnan(x)) return 0x7e00;
  const float v = fuzz_round16(x, 1), a = fabsf(v);
  const uint16_t sign = (uint16_t)(signbit(v) ? 0x8000 : 0);
  if (isinf(a)) return (uint16_t)(sign | 0x7c00);
  if (a < 0x1p-14f) return (uint16_t)(sign | (uint16_t)(a * 0x1p24f)); /* subnormal: exact */
  int e;
  const float m = frexpf(a, &e); /* a = m·2^e, m in [0.5, 1): 11 bits of m exact */
  return (uint16_t)(sign | (uint16_t)(((e + 14) << 10) + (int)(m * 2048.0f) - 1024));
}

float fuzz_widen16(uint16_t h, int f16) { return f16 ? fuzz_f16_to_f32(h) : fuzz_bf16_to_f32(h); }

void fuzz_copy16(const float* x, size_t n, int f16, uint16_t** x16, float** xw) {
  *x16 = malloc(n * sizeof(uint16_t) + 1);
  *xw = malloc(n * sizeof(float) + 1);
  if (*x16 == NULL || *xw == NULL) exit(2);
  for (size_t i = 0; i < n; i++) {
    (*x16)[i] = fuzz_to16(x[i], f16);
    (*xw)[i] = fuzz_widen16((*x16)[i], f16);
  }
}
