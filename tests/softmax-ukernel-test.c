/*
 * White-box test of the online-softmax kernels and the vector helpers of
 * every available kernel table (contracts in config/kernels.h), in base 2:
 *
 *   softmax_online_row(n, n_valid, s, scale, add, &m, &l):
 *     x[j] = s[j]·scale + (add ? add[j]·log2(e) : 0)   j < n_valid
 *     m'   = max(m, max_j x[j]);  s[j] = 2^(x[j] − m');  s[j] = 0 for j >= n_valid
 *     l   ← l·2^(m − m') + Σ_j s[j];  m ← m';  returns alpha = 2^(m − m'),
 *     exactly 1 when the max did not move;
 *     no key visible yet (m' = −inf): all s are 0, alpha is 1, m and l unchanged.
 *   softmax_online_tile(rows, n, s, lds, m, l, alpha): per row, bitwise the
 *     row step with scale 1 and no mask.
 *   bf16_softmax_tile_pack(rows, n, s, lds, m, l, alpha, pb) (the sets with
 *     a BF16 unit that have it): bitwise the tile step, then bf16_pack_a_f32
 *     of its rows into pb.
 *   vscale(n, x, alpha):          x ← x·alpha
 *   vexp2_scale(n, x, c, alpha):  x ← 2^(x − c)·alpha
 *
 * Against a double reference, for every n around the SIMD widths (tails),
 * n_valid from 0 to n, no mask / a mask / a mask with −inf / all −inf,
 * fresh and running states, chains of blocks, NaN; the tile against the row
 * step bit for bit. s and add end at a PROT_NONE page: reading past n faults.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16-layout.h"
#include "config/kernels.h"
#include "guarded-buffer.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const size_t kLengths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100};
static const float kScales[] = {1.0f, 0.125f, -0.7f};

typedef enum mask_kind { MASK_NONE, MASK_RANDOM, MASK_SOME_INF, MASK_ALL_INF, MASK_COUNT } mask_kind;
static const char* const kMaskNames[MASK_COUNT] = {"none", "random", "some -inf", "all -inf"};

/* The state before a block: fresh, below the block's max, above it. */
typedef enum start_kind { START_FRESH, START_LOW, START_HIGH, START_COUNT } start_kind;
static const char* const kStartNames[START_COUNT] = {"fresh", "m below", "m above"};

static const double kEps = 0x1.0p-23;
static const double kLn2 = 0.69314718055994530942;

/* One block: builds s and add, runs the kernel and checks s, m, l, alpha. */
static void check_block(tester* t, const mha_kernels* kr, size_t n, size_t n_valid, float scale,
                        mask_kind mk, start_kind sk) {
  tester_context(t, "isa=%s softmax_online_row n=%zu n_valid=%zu scale=%g mask=%s start=%s",
                 kr->name, n, n_valid, (double)scale, kMaskNames[mk], kStartNames[sk]);
  guarded_buffer gs = guarded_alloc(n);
  guarded_buffer ga = guarded_alloc(n);
  float* s = gs.data;
  float* add = mk == MASK_NONE ? NULL : ga.data;
  tester_fill_range(t, s, n, -4.0f, 4.0f);
  tester_fill_range(t, ga.data, n, -2.0f, 2.0f);
  if (mk == MASK_SOME_INF) {
    for (size_t j = 0; j < n; j++) {
      if (tester_below(t, 3) == 0) ga.data[j] = -INFINITY;
    }
  }
  if (mk == MASK_ALL_INF) {
    for (size_t j = 0; j < n; j++) ga.data[j] = -INFINITY;
  }

  /* the reference, from the same float inputs */
  double x[128], want_p[128], tol_p[128];
  double mx = -INFINITY, x_err = 0.0;
  for (size_t j = 0; j < n_valid; j++) {
    const double sc = (double)s[j] * (double)scale;
    /* the mask in base-2 units, by the float log2(e) the kernels use */
    const double a = add != NULL ? (double)add[j] * (double)MHA_LOG2E_F : 0.0;
    x[j] = add != NULL && add[j] == -INFINITY ? -INFINITY : sc + a;
    /* two roundings (multiply, fma): u·|sc| + u·|sc + a| <= eps·(|sc| + |a|) */
    if (isfinite(x[j]) && kEps * (fabs(sc) + fabs(a)) > x_err) x_err = kEps * (fabs(sc) + fabs(a));
    if (x[j] > mx) mx = x[j];
  }
  float m = -INFINITY, l = 0.0f;
  if (sk == START_LOW) {
    m = (float)(isfinite(mx) ? mx - 3.0 : -5.0);
    l = 2.5f;
  }
  if (sk == START_HIGH) {
    m = (float)(isfinite(mx) ? mx + 3.0 : 5.0);
    l = 1.5f;
  }
  const double m0 = (double)m, l0 = (double)l;
  const double m1 = m0 > mx ? m0 : mx;

  const float alpha = kr->softmax_online_row(n, n_valid, s, scale, add, &m, &l);

  if (m1 == -INFINITY) {
    /* nothing visible yet */
    int zeros = 1;
    for (size_t j = 0; j < n; j++) zeros &= s[j] == 0.0f;
    tester_check(t, zeros, "no visible key: s not all zero");
    tester_check(t, alpha == 1.0f, "no visible key: alpha = %g, want 1", (double)alpha);
    tester_check(t, m == -INFINITY && l == 0.0f, "no visible key: m = %g, l = %g, want -inf, 0",
                 (double)m, (double)l);
  } else {
    double sum = 0.0, sum_tol = 0.0;
    for (size_t j = 0; j < n; j++) {
      if (j >= n_valid || x[j] == -INFINITY) {
        want_p[j] = 0.0;
        tol_p[j] = 0.0;
        continue;
      }
      /* the exponent x − m' is off by x_err twice plus the subtraction's
       * u·|x − m'|, which 2^ turns into a relative ln 2·err; exp2 adds <= 4 eps */
      want_p[j] = exp2(x[j] - m1);
      const double arg_err = 2.0 * x_err + kEps * fabs(x[j] - m1);
      tol_p[j] = want_p[j] * (expm1(kLn2 * arg_err) + 4.0 * kEps) + FLT_MIN;
      sum += want_p[j];
      sum_tol += tol_p[j];
    }
    tester_check_close(t, "p", n, s, want_p, tol_p);
    const double want_alpha = exp2(m0 - m1);
    /* from a fresh state alpha = 2^(−inf) = 0 exactly; when the max stays,
     * exactly 1 (no exp2 at all) */
    const double alpha_tol =
        m0 == -INFINITY || m0 >= mx
            ? 0.0
            : want_alpha * (expm1(kLn2 * (2.0 * x_err + kEps * fabs(m0 - m1))) + 4.0 * kEps);
    tester_check(t, fabs((double)alpha - want_alpha) <= alpha_tol,
                 "alpha = %.9g, want %.9g +- %.3g", (double)alpha, want_alpha, alpha_tol);
    tester_check(t, fabs((double)m - m1) <= x_err, "m = %.9g, want %.9g +- %.3g", (double)m, m1,
                 x_err);
    const double want_l = l0 * want_alpha + sum;
    const double l_tol = l0 * alpha_tol + sum_tol + (double)(n + 2) * kEps * want_l;
    tester_check(t, fabs((double)l - want_l) <= l_tol, "l = %.9g, want %.9g +- %.3g", (double)l,
                 want_l, l_tol);
  }
  guarded_free(&ga);
  guarded_free(&gs);
}

/* A row split into blocks of width nk: the chained state must end with the
 * row's max and sum, and the accumulated alpha factors must turn each
 * block's p into 2^(x − final max). */
static void check_chain(tester* t, const mha_kernels* kr, size_t total, size_t nk) {
  tester_context(t, "isa=%s softmax_online_row chain total=%zu nk=%zu", kr->name, total, nk);
  float row[256];
  tester_fill_range(t, row, total, -6.0f, 6.0f);
  float m = -INFINITY, l = 0.0f;
  double acc = 0.0;  /* Σ_j p_j·w_j rescaled like the output accumulator */
  double weight[256];
  for (size_t j = 0; j < total; j++) weight[j] = tester_uniform(t, -1.0, 1.0);
  for (size_t j0 = 0; j0 < total; j0 += nk) {
    const size_t n = total - j0 < nk ? total - j0 : nk;
    guarded_buffer gs = guarded_alloc(n);
    memcpy(gs.data, row + j0, n * sizeof(float));
    const float alpha = kr->softmax_online_row(n, n, gs.data, 1.0f, NULL, &m, &l);
    acc *= (double)alpha;
    for (size_t j = 0; j < n; j++) acc += (double)gs.data[j] * weight[j0 + j];
    guarded_free(&gs);
  }
  double mx = -INFINITY, sum = 0.0, dot = 0.0, mag = 0.0;
  for (size_t j = 0; j < total; j++) mx = row[j] > mx ? row[j] : mx;
  for (size_t j = 0; j < total; j++) {
    const double p = exp2((double)row[j] - mx);
    sum += p;
    dot += p * weight[j];
    mag += p * fabs(weight[j]);
  }
  /* each block adds a rescale (alpha) and an exp per element */
  const double rel = (double)(total + 4 * (total / nk + 1)) * kEps + 12.0 * 6.0 * kEps;
  tester_check(t, (double)m == mx, "chain: m = %.9g, want %.9g", (double)m, mx);
  tester_check(t, fabs((double)l - sum) <= rel * sum, "chain: l = %.9g, want %.9g", (double)l,
               sum);
  tester_check(t, fabs(acc - dot) <= rel * mag, "chain: rescaled accumulator %.9g, want %.9g",
               acc, dot);
}

static void check_nan(tester* t, const mha_kernels* kr, size_t n) {
  tester_context(t, "isa=%s softmax_online_row NaN n=%zu", kr->name, n);
  guarded_buffer gs = guarded_alloc(n);
  tester_fill(t, gs.data, n);
  gs.data[n / 2] = NAN;
  float m = -INFINITY, l = 0.0f;
  (void)kr->softmax_online_row(n, n, gs.data, 1.0f, NULL, &m, &l);
  tester_check(t, isnan(l), "a NaN score: l = %g, want NaN", (double)l);
  tester_fill(t, gs.data, n);
  m = -INFINITY;
  l = 0.0f;
  guarded_buffer ga = guarded_alloc(n);
  tester_fill(t, ga.data, n);
  ga.data[n - 1] = NAN;
  (void)kr->softmax_online_row(n, n, gs.data, 1.0f, ga.data, &m, &l);
  tester_check(t, isnan(l), "a NaN mask entry: l = %g, want NaN", (double)l);
  guarded_free(&ga);
  guarded_free(&gs);
}

static void check_vector_helpers(tester* t, const mha_kernels* kr, size_t n) {
  tester_context(t, "isa=%s vscale / vexp2_scale n=%zu", kr->name, n);
  guarded_buffer gx = guarded_alloc(n);
  float ref[128];
  tester_fill_range(t, gx.data, n, -10.0f, 10.0f);
  const float alpha = 0.734f;
  for (size_t j = 0; j < n; j++) ref[j] = gx.data[j] * alpha; /* one correctly rounded multiply */
  kr->vscale(n, gx.data, alpha);
  tester_check(t, memcmp(ref, gx.data, n * sizeof(float)) == 0,
               "vscale is not the correctly rounded x * alpha");

  tester_fill_range(t, gx.data, n, -20.0f, 5.0f);
  double want[128], tol[128];
  const float c = 3.5f, beta = 0.25f;
  for (size_t j = 0; j < n; j++) {
    const double arg = (double)gx.data[j] - c;
    want[j] = exp2(arg) * beta;
    tol[j] = want[j] * (kEps * (kLn2 * fabs(arg) + 6.0)) + FLT_MIN;
  }
  kr->vexp2_scale(n, gx.data, c, beta);
  tester_check_close(t, "vexp2_scale", n, gx.data, want, tol);
  guarded_free(&gx);
}

/* The tile step against the row step, bit for bit: rows fresh, with the
 * max below and above the block's, a row of -inf (nothing visible yet), a
 * row holding a NaN, one holding +inf; n multiples of the SIMD widths and
 * not; lds > n with the gap poisoned (the tile must not touch it). */
/* The tile tests' rows (row r at st + r·lds, n keys, the gap NaN) and
 * states: fresh, max staying, moving, tying; an all -inf row, a NaN, a
 * +inf; and (spread) every 7th row from −300 to 0, so that some p are
 * subnormal in fp32 or zero (row 0, fresh: max 0 and a key at −130) */
static void fill_tile_rows(tester* t, float* st, size_t rows, size_t n, size_t lds, float* m, float* l,
                           int spread) {
  tester_fill_range(t, st, rows * lds, -8.0f, 8.0f);
  for (size_t r = 0; spread && r < rows; r += 7) {
    for (size_t j = 0; j < n; j++) st[r * lds + j] = (float)tester_uniform(t, -300.0, 0.0);
  }
  if (spread && n >= 2) st[0] = 0.0f, st[1] = -130.0f;
  for (size_t r = 0; r < rows; r++) {
    for (size_t j = n; j < lds; j++) st[r * lds + j] = NAN;
    switch (r % 5) {
      case 0: m[r] = -INFINITY, l[r] = 0.0f; break;
      case 1: m[r] = 20.0f, l[r] = 3.0f; break;                /* max stays */
      case 2: m[r] = -3.0f, l[r] = 1.25f; break;               /* max moves */
      case 3: m[r] = st[r * lds], l[r] = 2.0f; break;          /* max maybe ties */
      default: m[r] = tester_uniform(t, -8.0, 8.0), l[r] = 1.0f; break;
    }
  }
  if (rows > 2) {
    for (size_t j = 0; j < n; j++) st[1 * lds + j] = -INFINITY;
    m[1] = -INFINITY, l[1] = 0.0f;
    st[2 * lds + n / 2] = NAN;
  }
  if (rows > 3) st[3 * lds + n - 1] = INFINITY;
  if (rows > 4) { /* a second row with no visible key, at an even index (Arm packs rows in pairs) */
    for (size_t j = 0; j < n; j++) st[4 * lds + j] = -INFINITY;
    m[4] = -INFINITY, l[4] = 0.0f;
  }
}

static void check_tile(tester* t, const mha_kernels* kr, size_t rows, size_t n) {
  tester_context(t, "isa=%s softmax_online_tile rows=%zu n=%zu", kr->name, rows, n);
  const size_t lds = n + 3;
  float* st = malloc(rows * lds * sizeof(float));
  float* sr = malloc(rows * lds * sizeof(float));
  float* m = malloc(rows * 6 * sizeof(float));
  if (st == NULL || sr == NULL || m == NULL) {
    tester_check(t, 0, "out of memory");
    free(st), free(sr), free(m);
    return;
  }
  float *l = m + rows, *at = m + 2 * rows, *mr = m + 3 * rows, *lr = m + 4 * rows, *ar = m + 5 * rows;
  fill_tile_rows(t, st, rows, n, lds, m, l, 0);
  memcpy(sr, st, rows * lds * sizeof(float));
  memcpy(mr, m, rows * sizeof(float));
  memcpy(lr, l, rows * sizeof(float));
  for (size_t r = 0; r < rows; r++) {
    ar[r] = kr->softmax_online_row(n, n, sr + r * lds, 1.0f, NULL, &mr[r], &lr[r]);
  }
  kr->softmax_online_tile(rows, n, st, lds, m, l, at);
  size_t bad = 0, first = rows;
  for (size_t r = 0; r < rows; r++) {
    const int same = memcmp(st + r * lds, sr + r * lds, lds * sizeof(float)) == 0 &&
                     memcmp(&m[r], &mr[r], sizeof(float)) == 0 && memcmp(&l[r], &lr[r], sizeof(float)) == 0 &&
                     memcmp(&at[r], &ar[r], sizeof(float)) == 0;
    if (!same && bad++ == 0) first = r;
  }
  tester_check(t, bad == 0, "%zu of %zu rows differ from the row step; first row %zu (m %.9g/%.9g l %.9g/%.9g)",
               bad, rows, first, first < rows ? (double)m[first] : 0.0, first < rows ? (double)mr[first] : 0.0,
               first < rows ? (double)l[first] : 0.0, first < rows ? (double)lr[first] : 0.0);
  free(st), free(sr), free(m);
}

/* The BF16 form's fused step (bf16_softmax_tile_pack) against the tile step
 * and bf16_pack_a_f32 one after the other, bit for bit: m, l, alpha and
 * every packed value, the padding to 4·⌈n/4⌉ included; nothing written past
 * the rows' packed values (poison) */
static void check_tile_pack(tester* t, const mha_kernels* kr, size_t rows, size_t n) {
  tester_context(t, "isa=%s bf16_softmax_tile_pack rows=%zu n=%zu", kr->name, rows, n);
  /* the packed rows: rows (x86) or pairs of rows (Arm) of 4·⌈n/4⌉ values */
  const size_t ldp = (n + 3) / 4 * 4, lds = n + 3;
  const size_t used = (kr->bf16_a_rows ? rows : (rows + 1) / 2 * 2) * ldp, np = used + 64;
  float* st = malloc(rows * lds * sizeof(float));
  float* sr = malloc(rows * lds * sizeof(float));
  float* m = malloc(rows * 6 * sizeof(float));
  uint16_t* pt = malloc(np * sizeof(uint16_t));
  uint16_t* pr = malloc(np * sizeof(uint16_t));
  const float** rowp = malloc(rows * sizeof(float*));
  if (st == NULL || sr == NULL || m == NULL || pt == NULL || pr == NULL || rowp == NULL) {
    tester_check(t, 0, "out of memory");
    free(st), free(sr), free(m), free(pt), free(pr), free(rowp);
    return;
  }
  float *l = m + rows, *at = m + 2 * rows, *mr = m + 3 * rows, *lr = m + 4 * rows, *ar = m + 5 * rows;
  fill_tile_rows(t, st, rows, n, lds, m, l, 1);
  memcpy(sr, st, rows * lds * sizeof(float));
  memcpy(mr, m, rows * sizeof(float));
  memcpy(lr, l, rows * sizeof(float));
  for (size_t i = 0; i < np; i++) pt[i] = pr[i] = 0x7fa5; /* a NaN no packing writes */
  kr->softmax_online_tile(rows, n, sr, lds, mr, lr, ar);
  for (size_t r = 0; r < rows; r++) rowp[r] = sr + r * lds;
  kr->bf16_pack_a_f32(rows, n, rowp, pr);
  kr->bf16_softmax_tile_pack(rows, n, st, lds, m, l, at, pt);
  size_t bad = 0, first = rows, past = 0, subnormal = 0;
  for (size_t r = 0; r < rows; r++) {
    int same = memcmp(&m[r], &mr[r], sizeof(float)) == 0 && memcmp(&l[r], &lr[r], sizeof(float)) == 0 &&
               memcmp(&at[r], &ar[r], sizeof(float)) == 0;
    for (size_t j = 0; j < ldp; j++) same &= pt[bf16_a_index(kr, n, r, j)] == pr[bf16_a_index(kr, n, r, j)];
    if (!same && bad++ == 0) first = r;
    for (size_t j = 0; j < n; j++) {
      const float p = sr[r * lds + j];
      subnormal += p != 0.0f && fabsf(p) < FLT_MIN;
    }
  }
  /* an odd count's padding row (Arm) as the packing writes it */
  for (size_t j = 0; rows % 2 == 1 && !kr->bf16_a_rows && j < ldp; j++) {
    bad += pt[bf16_a_index(kr, n, rows, j)] != pr[bf16_a_index(kr, n, rows, j)];
  }
  for (size_t i = used; i < np; i++) past += pt[i] != 0x7fa5;
  tester_check(t, bad == 0, "%zu of %zu rows differ from the tile step + bf16_pack_a_f32; first row %zu", bad, rows,
               first);
  tester_check(t, past == 0, "%zu values written past the rows' packed P", past);
  if (n >= 2) tester_check(t, subnormal > 0, "the spread rows give no subnormal p (test inputs)");
  free(st), free(sr), free(m), free(pt), free(pr), free(rowp);
}

/* The transposed tile step against the row step, bit for bit: the same rows
 * as check_tile (fresh, max below and above, -inf, NaN, +inf), laid out one
 * key per row of the tile (query row r in column r), ldst > rows with the
 * gap poisoned; a few rows tie at ±0 with the max, where the order of the
 * max decides the sign of m. */
static void check_tile_t(tester* t, const mha_kernels* kr, size_t rows, size_t n) {
  tester_context(t, "isa=%s softmax_online_tile_t rows=%zu n=%zu", kr->name, rows, n);
  if (!tester_check(t, rows >= 16 && rows <= 4096 && n >= 16, "bad test shape")) return;
  const size_t ldt = rows + 5;
  float* sr = malloc(rows * n * sizeof(float));
  float* st = malloc(n * ldt * sizeof(float));
  float* m = malloc(rows * 6 * sizeof(float));
  if (sr == NULL || st == NULL || m == NULL) {
    tester_check(t, 0, "out of memory");
    free(sr), free(st), free(m);
    return;
  }
  float *l = m + rows, *at = m + 2 * rows, *mr = m + 3 * rows, *lr = m + 4 * rows, *ar = m + 5 * rows;
  tester_fill_range(t, sr, rows * n, -8.0f, 8.0f);
  for (size_t r = 0; r < rows; r++) {
    switch (r % 8) {
      case 0: m[r] = -INFINITY, l[r] = 0.0f; break;
      case 1: m[r] = 20.0f, l[r] = 3.0f; break;
      case 2: m[r] = -3.0f, l[r] = 1.25f; break;
      case 3: m[r] = sr[r * n], l[r] = 2.0f; break;
      case 4: /* the max is +0 and -0 at once: a tie within one lane's chain (keys 1, 17) */
      case 5: /* ... across the tree's first level on 16 lanes (keys 2, 10) */
      case 6: /* ... and on 8 lanes (keys 2, 6) */
        for (size_t j = 0; j < n; j++) sr[r * n + j] = -fabsf(sr[r * n + j]);
        if (r % 8 == 4) {
          sr[r * n + 1] = 0.0f;
          sr[r * n + (n > 17 ? 17 : 2)] = -0.0f;
        } else {
          sr[r * n + 2] = -0.0f, sr[r * n + (r % 8 == 5 ? 10 : 6)] = 0.0f;
        }
        m[r] = -INFINITY, l[r] = 0.0f;
        break;
      default: m[r] = tester_uniform(t, -8.0, 8.0), l[r] = 1.0f; break;
    }
  }
  for (size_t j = 0; j < n; j++) sr[1 * n + j] = -INFINITY;
  m[1] = -INFINITY, l[1] = 0.0f;
  for (size_t j = 0; j < n; j++) sr[14 * n + j] = -INFINITY; /* stays -inf: the fallback */
  sr[2 * n + n / 2] = NAN;
  sr[3 * n + n - 1] = INFINITY;
  for (size_t j = 0; j < n; j++) {
    for (size_t c = 0; c < ldt; c++) st[j * ldt + c] = c < rows ? sr[c * n + j] : NAN;
  }
  for (size_t r = 0; r < rows; r++) {
    mr[r] = m[r], lr[r] = l[r];
    ar[r] = kr->softmax_online_row(n, n, sr + r * n, 1.0f, NULL, &mr[r], &lr[r]);
  }
  kr->softmax_online_tile_t(rows, n, st, ldt, m, l, at);
  size_t bad = 0, first = rows, gap = 0;
  for (size_t r = 0; r < rows; r++) {
    int same = memcmp(&m[r], &mr[r], sizeof(float)) == 0 && memcmp(&l[r], &lr[r], sizeof(float)) == 0 &&
               memcmp(&at[r], &ar[r], sizeof(float)) == 0;
    for (size_t j = 0; j < n; j++) same &= memcmp(&st[j * ldt + r], &sr[r * n + j], sizeof(float)) == 0;
    if (!same && bad++ == 0) first = r;
  }
  for (size_t j = 0; j < n; j++) {
    for (size_t c = rows; c < ldt; c++) gap += !isnan(st[j * ldt + c]);
  }
  tester_check(t, bad == 0, "%zu of %zu rows differ from the row step; first row %zu (m %.9g/%.9g l %.9g/%.9g)",
               bad, rows, first, first < rows ? (double)m[first] : 0.0, first < rows ? (double)mr[first] : 0.0,
               first < rows ? (double)l[first] : 0.0, first < rows ? (double)lr[first] : 0.0);
  tester_check(t, gap == 0, "%zu values written in the gap past the rows", gap);
  free(sr), free(st), free(m);
}

static void test_kernel(tester* t, const mha_kernels* kr) {
  for (size_t li = 0; li < COUNT(kLengths); li++) {
    const size_t n = kLengths[li];
    size_t valid[5] = {0, 1, n / 2, n - 1, n};
    for (size_t vi = 0; vi < COUNT(valid); vi++) {
      if (vi > 0 && valid[vi] == valid[vi - 1]) continue;
      for (size_t si = 0; si < COUNT(kScales); si++) {
        for (int mk = 0; mk < MASK_COUNT; mk++) {
          for (int sk = 0; sk < START_COUNT; sk++) {
            check_block(t, kr, n, valid[vi], kScales[si], (mask_kind)mk, (start_kind)sk);
          }
        }
      }
    }
    check_nan(t, kr, n);
    check_vector_helpers(t, kr, n);
  }
  const size_t chains[][2] = {{1, 1}, {100, 8}, {200, 64}, {129, 16}, {256, 33}};
  for (size_t i = 0; i < COUNT(chains); i++) check_chain(t, kr, chains[i][0], chains[i][1]);
  static const size_t tile_rows[] = {1, 2, 5, 12, 48, 63, 64, 65, 130};
  static const size_t tile_n[] = {1, 7, 15, 16, 17, 32, 48, 64, 65, 128};
  for (size_t i = 0; i < COUNT(tile_rows); i++) {
    for (size_t k = 0; k < COUNT(tile_n); k++) check_tile(t, kr, tile_rows[i], tile_n[k]);
  }
  if (kr->softmax_online_tile_t != NULL) {
    /* rows: multiples of the set's NR (the contract), 16 at least (the test's row kinds) */
    const size_t nr = kr->gemm_nr < 16 ? 16 : kr->gemm_nr;
    static const size_t tile_t_n[] = {16, 32, 64, 128, MHA_TILE_T_MAX_KEYS};
    for (size_t i = 1; i <= 4; i++) {
      for (size_t k = 0; k < COUNT(tile_t_n); k++) check_tile_t(t, kr, i * nr, tile_t_n[k]);
    }
  }
}

int main(void) {
  tester t;
  tester_init(&t, "softmax-ukernel-test");
  const isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    const mha_kernels* kr = mha_kernels_for(isas.isa[i]);
    tester_context(&t, "mha_kernels_for(%s)", mha_isa_name(isas.isa[i]));
    if (!tester_check(&t, kr != NULL && kr->softmax_online_row != NULL && kr->vscale != NULL &&
                              kr->vexp2_scale != NULL && kr->softmax_online_tile != NULL,
                      "kernel table incomplete")) {
      continue;
    }
    test_kernel(&t, kr);
  }
  /* the sets with a BF16 unit (not in the list above: their fp32 kernels
   * are the base set's): the fused step of the BF16 form */
  static const mha_isa bf16_sets[] = {MHA_ISA_NEON_BF16, MHA_ISA_AVX512_BF16};
  for (size_t i = 0; i < COUNT(bf16_sets); i++) {
    const mha_kernels* kr = mha_isa_available(bf16_sets[i]) ? mha_kernels_for(bf16_sets[i]) : NULL;
    if (kr == NULL || kr->bf16_softmax_tile_pack == NULL) continue;
    static const size_t rows[] = {1, 2, 5, 12, 48, 63, 64, 65, 130};
    static const size_t n[] = {1, 7, 16, 17, 32, 48, 64, 65, 128, 256};
    for (size_t r = 0; r < COUNT(rows); r++) {
      for (size_t k = 0; k < COUNT(n); k++) check_tile_pack(&t, kr, rows[r], n[k]);
    }
  }
  return tester_finish(&t);
}
