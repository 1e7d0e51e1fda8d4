/*
 * Micro-kernels straight from each ISA's kernel table (mha_kernels_for()):
 * the GEMM tile (m × n × k with m <= MR, n <= NR, operands in L1, as the
 * five loops feed it), the dot-product tile C = A·Bᵀ (few query rows against
 * a block of keys: decode), and the online-softmax row step (one row of a
 * key block). ISAs this build or this CPU lacks give NULL and are skipped.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "config/kernels.h"

struct mha_bench_ukernel {
  const mha_kernels* kr;
  int kernel;
  size_t m, n, k;
  float *a, *b, *c;
};

static float* mha_bench_uk_fill(size_t n, float lo, float hi) {
  float* p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
  if (p == NULL) return NULL;
  unsigned s = 12345u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = lo + (hi - lo) * (float)(s >> 8) / 16777216.0f;
  }
  return p;
}

void mha_bench_ukernel_destroy(mha_bench_ukernel* u) {
  if (u == NULL) return;
  free(u->a);
  free(u->b);
  free(u->c);
  free(u);
}

mha_bench_ukernel* mha_bench_ukernel_create(mha_isa isa, int kernel, size_t m, size_t n, size_t k) {
  const mha_kernels* kr = mha_kernels_for(isa);
  if (kr == NULL || n == 0) return NULL;
  if (kernel != MHA_BENCH_UK_SOFTMAX && (m == 0 || k == 0)) return NULL;
  if (kernel == MHA_BENCH_UK_GEMM && (m > kr->gemm_mr || n > kr->gemm_nr)) return NULL;
  if (kernel == MHA_BENCH_UK_GEMM_NT && kr->gemm_nt == NULL) return NULL;
  mha_bench_ukernel* u = calloc(1, sizeof *u);
  if (u == NULL) return NULL;
  u->kr = kr;
  u->kernel = kernel;
  u->m = m;
  u->n = n;
  u->k = k;
  if (kernel == MHA_BENCH_UK_GEMM) {
    u->a = mha_bench_uk_fill(m * k, -1.0f, 1.0f);                 /* A [m × k], lda = k */
    u->b = mha_bench_uk_fill(k * kr->gemm_nr, -1.0f, 1.0f);       /* a packed panel [k × NR], ldb = NR */
    u->c = mha_bench_uk_fill(m * kr->gemm_nr, 0.0f, 0.0f);        /* C [m × NR] */
  } else if (kernel == MHA_BENCH_UK_GEMM_NT) {
    u->a = mha_bench_uk_fill(m * k, -1.0f, 1.0f); /* query rows [m × k] */
    u->b = mha_bench_uk_fill(n * k, -1.0f, 1.0f); /* key rows [n × k] */
    u->c = mha_bench_uk_fill(m * n, 0.0f, 0.0f);  /* scores [m × n] */
  } else {
    u->a = mha_bench_uk_fill(n, -5.0f, 5.0f); /* one row of scores */
    u->b = mha_bench_uk_fill(1, 0.0f, 0.0f);
    u->c = mha_bench_uk_fill(1, 0.0f, 0.0f);
  }
  if (!u->a || !u->b || !u->c) goto fail;
  return u;
fail:
  mha_bench_ukernel_destroy(u);
  return NULL;
}

void mha_bench_ukernel_run(mha_bench_ukernel* u) {
  if (u->kernel == MHA_BENCH_UK_GEMM) {
    u->kr->gemm(u->m, u->n, u->k, u->a, u->k, u->b, u->kr->gemm_nr, u->c, u->kr->gemm_nr, 0);
  } else if (u->kernel == MHA_BENCH_UK_GEMM_NT) {
    u->kr->gemm_nt(u->m, u->n, u->k, u->a, u->k, u->b, u->k, u->c, u->n);
  } else {
    /* a fresh row each call: running max -inf, sum 0; after the first call the
     * row holds probabilities, which are as good scores as any */
    float m = -INFINITY, l = 0.0f;
    u->kr->softmax_online_row(u->n, u->n, u->a, 0.125f, NULL, &m, &l);
  }
}

double mha_bench_ukernel_work(const mha_bench_ukernel* u) {
  /* GEMM tiles: 2·m·n·k FLOPs; softmax: n elements */
  return u->kernel == MHA_BENCH_UK_SOFTMAX ? (double)u->n : 2.0 * (double)(u->m * u->n * u->k);
}

const char* mha_bench_ukernel_name(mha_isa isa, int kernel, char* buf, size_t len) {
  const mha_kernels* kr = mha_kernels_for(isa);
  if (kr == NULL) {
    snprintf(buf, len, "%s", mha_isa_name(isa));
  } else if (kernel == MHA_BENCH_UK_GEMM) {
    snprintf(buf, len, "f32_gemm_%zux%zu__%s", kr->gemm_mr, kr->gemm_nr, kr->name);
  } else if (kernel == MHA_BENCH_UK_GEMM_NT) {
    snprintf(buf, len, "f32_gemm_nt__%s", kr->name); /* the table does not name its tile */
  } else {
    snprintf(buf, len, "f32_softmax_online_row__%s", kr->name);
  }
  return buf;
}

void mha_bench_ukernel_tile(mha_isa isa, size_t* mr, size_t* nr, size_t* kc, size_t* nk,
                            int* has_nt) {
  const mha_kernels* kr = mha_kernels_for(isa);
  *has_nt = kr != NULL && kr->gemm_nt != NULL;
  *mr = kr ? kr->gemm_mr : 0;
  *nr = kr ? kr->gemm_nr : 0;
  *kc = kr ? kr->gemm_kc : 0;
  *nk = kr ? kr->attn_nk : 0;
}
