/*
 * White-box test of the GEMM micro-kernel of every available kernel table
 * (config/kernels.h): C[m×n] (=, or += with accumulate) A[m×k]·B[k×n] for
 * every m in 1..MR, n in 1..NR, k in {1, 2, 3, 7, 16, 17, 64, 127}, tight
 * and prime strides, against a double reference with a derived tolerance.
 *
 * The contract says the kernel reads only A[0..m)[0..k) and B[0..k)[0..n)
 * and writes only C[0..m)[0..n):
 *  - A and B are allocated to their exact extent ((m−1)·lda + k and
 *    (k−1)·ldb + n floats) twice: ending at a PROT_NONE page, so an
 *    over-read faults in any build, and from malloc, so ASan sees both ends;
 *  - C sits between guard zones and every element outside the m×n view
 *    (row tails up to ldc included) must keep its poison.
 * The dot-product kernel gemm_nt, C[m×n] = A[m×k]·B[n×k]ᵀ for any m, n, is
 * held to the same rules for m up to 13 and n up to 64. Where the table has
 * gemm_at (A given transposed: A[i][p] at a[p·lda + i]), it must give
 * bitwise gemm's C for every shape above, A transposed into an exactly sized
 * page-guarded buffer (tight and prime strides), and write nothing else.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/kernels.h"
#include "guarded-buffer.h"
#include "tester.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define GUARD 16 /* poisoned floats before and after C */

static const size_t kDepths[] = {1, 2, 3, 7, 16, 17, 64, 127};

static size_t next_prime_above(size_t x) {
  for (size_t p = x + 1;; p++) {
    int prime = p >= 2;
    for (size_t d = 2; d * d <= p && prime; d++) prime = p % d != 0;
    if (prime) return p;
  }
}

typedef struct gemm_shape {
  size_t m, n, k, lda, ldb, ldc;
  int accumulate;
} gemm_shape;

/* Runs the kernel on a and b (each exactly sized) and checks C. */
static void check_gemm(tester* t, const mha_kernels* kr, const gemm_shape* g, const float* a,
                       const float* b, const float* c0, const char* alloc) {
  tester_context(t,
                 "isa=%s gemm %zux%zu m=%zu n=%zu k=%zu lda=%zu ldb=%zu ldc=%zu accumulate=%d "
                 "operands=%s",
                 kr->name, kr->gemm_mr, kr->gemm_nr, g->m, g->n, g->k, g->lda, g->ldb, g->ldc,
                 g->accumulate, alloc);
  const size_t c_extent = (g->m - 1) * g->ldc + g->n;
  const size_t total = c_extent + 2 * GUARD;
  float* cbuf = tester_alloc(total * sizeof(float));
  tester_poison(cbuf, total);
  float* c = cbuf + GUARD;
  for (size_t i = 0; i < g->m; i++) {
    memcpy(c + i * g->ldc, c0 + i * g->n, g->n * sizeof(float));
  }

  kr->gemm(g->m, g->n, g->k, a, g->lda, b, g->ldb, c, g->ldc, g->accumulate);

  double want[32 * 32], tol[32 * 32];
  float got[32 * 32];
  for (size_t i = 0; i < g->m; i++) {
    for (size_t j = 0; j < g->n; j++) {
      const double init = g->accumulate ? (double)c0[i * g->n + j] : 0.0;
      double acc = init, mag = fabs(init);
      for (size_t p = 0; p < g->k; p++) {
        const double x = (double)a[i * g->lda + p] * (double)b[p * g->ldb + j];
        acc += x;
        mag += fabs(x);
      }
      /* a float sum of k + 1 terms: gamma(k + 1)·Σ|terms| <= (k + 2)·eps·mag */
      want[i * g->n + j] = acc;
      tol[i * g->n + j] = (double)(g->k + 2) * 0x1.0p-23 * mag;
      got[i * g->n + j] = c[i * g->ldc + j];
    }
  }
  tester_check_close(t, "C", g->m * g->n, got, want, tol);

  size_t stray = 0;
  for (size_t idx = 0; idx < total; idx++) {
    const ptrdiff_t off = (ptrdiff_t)idx - GUARD;
    const int inside = off >= 0 && (size_t)off < c_extent && (size_t)off % g->ldc < g->n;
    if (!inside && !tester_is_poison(cbuf[idx])) stray++;
  }
  tester_check(t, stray == 0, "%zu elements written outside C[0..m)[0..n)", stray);
  free(cbuf);
}

/* gemm_at against gemm, bit for bit: A transposed into At [k × ldat]
 * (exactly (k−1)·ldat + m floats, ending at a PROT_NONE page). */
static void check_gemm_at(tester* t, const mha_kernels* kr, const gemm_shape* g, const float* a,
                          const float* b, const float* c0) {
  for (int strides = 0; strides < 2; strides++) {
    const size_t ldat = strides == 0 ? g->m : next_prime_above(kr->gemm_mr);
    tester_context(t, "isa=%s gemm_at m=%zu n=%zu k=%zu ldat=%zu ldb=%zu ldc=%zu accumulate=%d", kr->name,
                   g->m, g->n, g->k, ldat, g->ldb, g->ldc, g->accumulate);
    guarded_buffer gat = guarded_alloc((g->k - 1) * ldat + g->m);
    for (size_t p = 0; p < g->k; p++) {
      for (size_t i = 0; i < g->m; i++) gat.data[p * ldat + i] = a[i * g->lda + p];
    }
    const size_t c_extent = (g->m - 1) * g->ldc + g->n;
    const size_t total = c_extent + 2 * GUARD;
    float* want = tester_alloc(total * sizeof(float));
    float* got = tester_alloc(total * sizeof(float));
    tester_poison(want, total);
    for (size_t i = 0; i < g->m; i++) {
      memcpy(want + GUARD + i * g->ldc, c0 + i * g->n, g->n * sizeof(float));
    }
    memcpy(got, want, total * sizeof(float));
    kr->gemm(g->m, g->n, g->k, a, g->lda, b, g->ldb, want + GUARD, g->ldc, g->accumulate);
    kr->gemm_at(g->m, g->n, g->k, gat.data, ldat, b, g->ldb, got + GUARD, g->ldc, g->accumulate);
    size_t differ = 0;
    for (size_t idx = 0; idx < total; idx++) {
      /* poison outside C compares equal too: any stray write differs */
      if (memcmp(&want[idx], &got[idx], sizeof(float)) != 0) differ++;
    }
    tester_check(t, differ == 0, "%zu elements differ from gemm's (C or its surroundings)", differ);
    free(got);
    free(want);
    guarded_free(&gat);
  }
}

/* gemm_nt on exactly sized A [m, lda] and B [n, ldb]; checks C and its guards. */
static void check_gemm_nt(tester* t, const mha_kernels* kr, const gemm_shape* g, const float* a,
                          const float* b, const char* alloc) {
  tester_context(t, "isa=%s gemm_nt m=%zu n=%zu k=%zu lda=%zu ldb=%zu ldc=%zu operands=%s",
                 kr->name, g->m, g->n, g->k, g->lda, g->ldb, g->ldc, alloc);
  const size_t c_extent = (g->m - 1) * g->ldc + g->n;
  const size_t total = c_extent + 2 * GUARD;
  float* cbuf = tester_alloc(total * sizeof(float));
  tester_poison(cbuf, total);
  float* c = cbuf + GUARD;
  for (size_t i = 0; i < g->m; i++) tester_fill(t, c + i * g->ldc, g->n); /* overwritten */

  kr->gemm_nt(g->m, g->n, g->k, a, g->lda, b, g->ldb, c, g->ldc);

  const size_t mn = g->m * g->n;
  double* want = tester_alloc(mn * sizeof(double));
  double* tol = tester_alloc(mn * sizeof(double));
  float* got = tester_alloc(mn * sizeof(float));
  for (size_t i = 0; i < g->m; i++) {
    for (size_t j = 0; j < g->n; j++) {
      double acc = 0.0, mag = 0.0;
      for (size_t p = 0; p < g->k; p++) {
        const double x = (double)a[i * g->lda + p] * (double)b[j * g->ldb + p];
        acc += x;
        mag += fabs(x);
      }
      want[i * g->n + j] = acc;
      tol[i * g->n + j] = (double)(g->k + 1) * 0x1.0p-23 * mag;
      got[i * g->n + j] = c[i * g->ldc + j];
    }
  }
  tester_check_close(t, "C", mn, got, want, tol);
  size_t stray = 0;
  for (size_t idx = 0; idx < total; idx++) {
    const ptrdiff_t off = (ptrdiff_t)idx - GUARD;
    const int inside = off >= 0 && (size_t)off < c_extent && (size_t)off % g->ldc < g->n;
    if (!inside && !tester_is_poison(cbuf[idx])) stray++;
  }
  tester_check(t, stray == 0, "%zu elements written outside C[0..m)[0..n)", stray);
  free(got);
  free(tol);
  free(want);
  free(cbuf);
}

static const size_t kNtRows[] = {1, 2, 3, 4, 5, 7, 8, 13};
static const size_t kNtCols[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64};

static void test_gemm_nt(tester* t, const mha_kernels* kr) {
  tester_context(t, "isa=%s table", mha_isa_name(kr->isa));
  if (!tester_check(t, kr->gemm_nt != NULL, "gemm_nt missing")) return;
  for (size_t mi = 0; mi < COUNT(kNtRows); mi++) {
    for (size_t ni = 0; ni < COUNT(kNtCols); ni++) {
      for (size_t ki = 0; ki < COUNT(kDepths); ki++) {
        for (int strides = 0; strides < 2; strides++) {
          gemm_shape g;
          memset(&g, 0, sizeof g);
          g.m = kNtRows[mi], g.n = kNtCols[ni], g.k = kDepths[ki];
          g.lda = strides ? next_prime_above(g.k) : g.k;
          g.ldb = strides ? next_prime_above(g.k + 1) : g.k;
          g.ldc = strides ? next_prime_above(g.n) : g.n;
          const size_t a_size = (g.m - 1) * g.lda + g.k;
          const size_t b_size = (g.n - 1) * g.ldb + g.k; /* B's last row exactly k long */
          guarded_buffer ga = guarded_alloc(a_size);
          guarded_buffer gb = guarded_alloc(b_size);
          tester_fill(t, ga.data, a_size);
          tester_fill(t, gb.data, b_size);
          float* ma = tester_alloc(a_size * sizeof(float));
          float* mb = tester_alloc(b_size * sizeof(float));
          memcpy(ma, ga.data, a_size * sizeof(float));
          memcpy(mb, gb.data, b_size * sizeof(float));
          check_gemm_nt(t, kr, &g, ga.data, gb.data, "page-guarded");
          check_gemm_nt(t, kr, &g, ma, mb, "malloc");
          free(mb);
          free(ma);
          guarded_free(&gb);
          guarded_free(&ga);
        }
      }
    }
  }
}

static void test_kernel(tester* t, const mha_kernels* kr) {
  tester_context(t, "isa=%s table", mha_isa_name(kr->isa));
  if (!tester_check(t, kr->gemm != NULL && kr->gemm_mr >= 1 && kr->gemm_mr <= 32 &&
                           kr->gemm_nr >= 1 && kr->gemm_nr <= 32,
                    "gemm kernel or tile missing or larger than 32x32 (mr %zu, nr %zu)",
                    kr->gemm_mr, kr->gemm_nr)) {
    return;
  }
  for (size_t m = 1; m <= kr->gemm_mr; m++) {
    for (size_t n = 1; n <= kr->gemm_nr; n++) {
      for (size_t ki = 0; ki < COUNT(kDepths); ki++) {
        for (int strides = 0; strides < 2; strides++) {
          gemm_shape g;
          g.m = m, g.n = n, g.k = kDepths[ki];
          if (strides == 0) {
            g.lda = g.k, g.ldb = n, g.ldc = n; /* tight: B's last row exactly n wide */
          } else {
            g.lda = next_prime_above(g.k);
            g.ldb = next_prime_above(kr->gemm_nr);
            g.ldc = next_prime_above(kr->gemm_nr + 3);
          }
          const size_t a_size = (m - 1) * g.lda + g.k;
          const size_t b_size = (g.k - 1) * g.ldb + n;
          guarded_buffer ga = guarded_alloc(a_size);
          guarded_buffer gb = guarded_alloc(b_size);
          float* ma = tester_alloc(a_size * sizeof(float));
          float* mb = tester_alloc(b_size * sizeof(float));
          float c0[32 * 32];
          tester_fill(t, ga.data, a_size);
          tester_fill(t, gb.data, b_size);
          tester_fill(t, c0, m * n);
          memcpy(ma, ga.data, a_size * sizeof(float));
          memcpy(mb, gb.data, b_size * sizeof(float));
          for (g.accumulate = 0; g.accumulate <= 1; g.accumulate++) {
            check_gemm(t, kr, &g, ga.data, gb.data, c0, "page-guarded");
            check_gemm(t, kr, &g, ma, mb, c0, "malloc");
            if (kr->gemm_at != NULL) check_gemm_at(t, kr, &g, ga.data, gb.data, c0);
          }
          free(mb);
          free(ma);
          guarded_free(&gb);
          guarded_free(&ga);
        }
      }
    }
  }
}

int main(void) {
  tester t;
  tester_init(&t, "gemm-ukernel-test");
  const isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    const mha_kernels* kr = mha_kernels_for(isas.isa[i]);
    tester_context(&t, "mha_kernels_for(%s)", mha_isa_name(isas.isa[i]));
    if (!tester_check(&t, kr != NULL && kr->isa == isas.isa[i],
                      "no kernel table for an available ISA")) {
      continue;
    }
    test_kernel(&t, kr);
    test_gemm_nt(&t, kr);
  }
  /* a table for an unavailable ISA must not be handed out */
  for (int i = MHA_ISA_SCALAR; i <= MHA_ISA_NEON; i++) {
    if (mha_isa_available((mha_isa)i)) continue;
    tester_check(&t, mha_kernels_for((mha_isa)i) == NULL, "mha_kernels_for(%s) is not NULL",
                 mha_isa_name((mha_isa)i));
  }
  return tester_finish(&t);
}
