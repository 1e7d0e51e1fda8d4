/*
 * The projection GEMM on a BF16 matrix unit (a kernel set with bf16_gemm):
 * the layer's BF16 form (layer-forward.c). bf16 rows of A times weights
 * packed once as bf16, accumulated in fp32 by the unit.
 *
 *   W [K×N] is packed as the N rows of Wᵀ in the set's pair layout
 *   (bf16_pack_rows_f32: each weight rounded to bf16 — exact for weights
 *   that are bf16 values), N padded with zero rows to a multiple of 8, ⌈K/4⌉
 *   quads deep: the 8 columns [8j, 8j + 8) are row pairs 4j .. 4j + 3, at
 *   element 4j·8·kq. A's rows are packed the same way once per call (the
 *   pack stage), then C is computed in tiles of rows × columns, each element
 *   by one micro-kernel call over the whole K: its bits do not depend on the
 *   tiling, the thread count or the row count, and the bias is added after
 *   (acc + b, one fp32 addition).
 */
#include <stdlib.h>
#include <string.h>

#include "mha/internal.h"

/* Rows of C per tile: 8 micro-kernel rows (64 rows of A: K = 4096 bf16 in
 * 512 KiB of L2); columns per tile: 32 micro-kernel columns. Shrunk for
 * few tiles (a decode step), as the fp32 grid: halve columns, then rows. */
enum { MHA_BF16_MTILE = 64, MHA_BF16_NTILE = 256, MHA_BF16_UNITS_PER_THREAD = 4 };

static int64_t mha_round8(int64_t x) { return (x + 7) / 8 * 8; }

mha_status mha_packed_bf16_alloc(int64_t K, int64_t N, mha_packed_bf16* out) {
  memset(out, 0, sizeof *out);
  out->K = K;
  out->N = N;
  out->kq = (K + 3) / 4;
  /* N rounded to 8 rows of 4·kq values; sizes checked by the plan's validation */
  const size_t n = (size_t)mha_round8(N) * (size_t)(4 * out->kq);
  out->data = calloc(n > 0 ? n : 1, sizeof(uint16_t));
  if (out->data == NULL) return mha_error(MHA_STATUS_OUT_OF_MEMORY, "mha_layer_create: cannot allocate %zu bytes of bf16 weights", n * 2);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_packed_bf16_fill(const mha_kernels* kr, mha_packed_bf16* dst, const void* w, mha_dtype dtype,
                                int64_t stride_k, int64_t stride_n) {
  /* eight columns at a time, gathered as fp32 rows of Wᵀ and packed */
  const int64_t K = dst->K, kq = dst->kq;
  float* rows = malloc((size_t)(8 * K) * sizeof(float));
  if (rows == NULL) return mha_error(MHA_STATUS_OUT_OF_MEMORY, "mha_layer_create: cannot allocate the bf16 packing rows");
  const float* src[8];
  for (int64_t j0 = 0; j0 < dst->N; j0 += 8) {
    for (int64_t r = 0; r < 8; r++) {
      float* row = rows + r * K;
      const int64_t j = j0 + r;
      for (int64_t kk = 0; kk < K; kk++) row[kk] = j < dst->N ? mha_element_f32(w, dtype, kk * stride_k + j * stride_n) : 0.0f;
      src[r] = row;
    }
    kr->bf16_pack_rows_f32(8, (size_t)K, src, dst->data + (j0 / 2) * 8 * kq);
  }
  free(rows);
  return MHA_STATUS_SUCCESS;
}

void mha_packed_bf16_free(mha_packed_bf16* pw) {
  if (pw == NULL) return;
  free(pw->data);
  pw->data = NULL;
}

size_t mha_gemm_bf16_pack_elems(int64_t M, int64_t K) {
  return (size_t)(mha_round8(M) + 1) * (size_t)(4 * ((K + 3) / 4)); /* + the zero row */
}

typedef struct mha_gemm_bf16_run {
  const mha_kernels* kr;
  int64_t M, K, kq, mtile, ntile, nt, tiles;
  const uint16_t* a;
  int64_t lda;
  const mha_packed_bf16* w; /* the compute stage's */
  const float* bias;
  float* c;
  int64_t ldc;
  uint16_t* ap;             /* A packed: ⌈M/8⌉·8 rows */
  const uint16_t* zero_row; /* 4·kq zeros, after them */
  int64_t next_pack, next;
  const mha_tracer* tracer;
} mha_gemm_bf16_run;

/* The pack stage: groups of 8 rows of A (the last group's missing rows read
 * the zero row at the end of the packed buffer). */
static void mha_gemm_bf16_pack_worker(void* ctx, int worker) {
  (void)worker;
  mha_gemm_bf16_run* r = ctx;
  const int64_t groups = (r->M + 7) / 8, K = r->K, kq = r->kq;
  for (int64_t g; (g = mha_claim(&r->next_pack, groups)) >= 0;) {
    const uint16_t* src[8];
    for (int64_t i = 0; i < 8; i++) src[i] = 8 * g + i < r->M ? r->a + (8 * g + i) * r->lda : r->zero_row;
    r->kr->bf16_pack_rows(8, (size_t)K, src, r->ap + (8 * g / 2) * 8 * kq);
  }
}

static void mha_gemm_bf16_worker(void* ctx, int worker) {
  mha_gemm_bf16_run* r = ctx;
  const int64_t N = r->w->N, kq = r->kq;
  for (int64_t t; (t = mha_claim(&r->next, r->tiles)) >= 0;) {
    const int64_t start = r->tracer != NULL ? mha_now_ns() : 0;
    const int64_t i0 = (t / r->nt) * r->mtile, j0 = (t % r->nt) * r->ntile;
    const int64_t i1 = i0 + r->mtile < r->M ? i0 + r->mtile : r->M;
    const int64_t j1 = j0 + r->ntile < N ? j0 + r->ntile : N;
    for (int64_t j = j0; j < j1; j += 8) { /* a B group (8 columns × K) serves the tile's rows */
      const int64_t n = j1 - j < 8 ? j1 - j : 8;
      const uint16_t* b = r->w->data + (j / 2) * 8 * kq;
      for (int64_t i = i0; i < i1; i += 8) {
        const int64_t m = i1 - i < 8 ? i1 - i : 8;
        float* c = r->c + i * r->ldc + j;
        r->kr->bf16_gemm((size_t)m, (size_t)n, (size_t)kq, r->ap + (i / 2) * 8 * kq, b, 1.0f, c, (size_t)r->ldc, 0);
        if (r->bias != NULL) {
          for (int64_t ii = 0; ii < m; ii++) {
            for (int64_t jj = 0; jj < n; jj++) c[ii * r->ldc + jj] += r->bias[j + jj];
          }
        }
      }
    }
    if (r->tracer == NULL) continue;
    mha_trace_event ev = {start, mha_now_ns(), worker, MHA_TRACE_GEMM, 0, r->tracer->gemm, 0, mha_trace_i32(i0),
                          mha_trace_i32(i1), mha_trace_i32(j0), mha_trace_i32(j1), 0};
    mha_trace_record(r->tracer, &ev);
  }
}

void mha_gemm_bf16_pack(const mha_kernels* kr, int64_t M, const uint16_t* a, int64_t lda, int64_t K,
                        uint16_t* a_packed, mha_team team) {
  const int64_t kq = (K + 3) / 4;
  mha_gemm_bf16_run r;
  memset(&r, 0, sizeof r);
  r.kr = kr, r.M = M, r.K = K, r.kq = kq, r.a = a, r.lda = lda, r.ap = a_packed;
  uint16_t* zero_row = a_packed + (size_t)mha_round8(M) * (size_t)(4 * kq);
  memset(zero_row, 0, (size_t)(4 * kq) * sizeof(uint16_t));
  r.zero_row = zero_row;
  team.tracer = NULL;
  /* the size rule (parallel.h): bytes read and written, 2 a byte */
  team.workers = mha_workers_for(team.workers, 2.0 * 2.0 * 2.0 * (double)M * (double)K);
  if (team.workers > (M + 7) / 8) team.workers = (int)((M + 7) / 8);
  mha_team_run(team, mha_gemm_bf16_pack_worker, &r);
}

void mha_gemm_bf16_packed(const mha_kernels* kr, int64_t M, const uint16_t* a_packed, const mha_packed_bf16* w,
                          const float* bias, float* c, int64_t ldc, mha_team team) {
  mha_gemm_bf16_run r;
  memset(&r, 0, sizeof r);
  r.kr = kr, r.M = M, r.K = w->K, r.kq = w->kq, r.w = w, r.bias = bias, r.c = c, r.ldc = ldc;
  r.ap = (uint16_t*)a_packed;
  r.tracer = team.tracer;
  r.mtile = MHA_BF16_MTILE;
  r.ntile = MHA_BF16_NTILE;
  const int64_t want = (int64_t)MHA_BF16_UNITS_PER_THREAD * (team.workers > 1 ? team.workers : 1);
  for (;;) {
    r.nt = (w->N + r.ntile - 1) / r.ntile;
    r.tiles = ((M + r.mtile - 1) / r.mtile) * r.nt;
    if (r.tiles >= want || team.workers <= 1) break;
    if (r.ntile > 8) {
      r.ntile /= 2;
    } else if (r.mtile > 8) {
      r.mtile /= 2;
    } else {
      break;
    }
  }
  if (team.workers > r.tiles) team.workers = (int)r.tiles;
  /* the size rule (parallel.h): 2·M·N·K FLOPs, 2 per byte of A, W and C */
  const double m = (double)M, n = (double)w->N, k = (double)w->K;
  team.workers = mha_workers_for(team.workers, 2.0 * m * n * k + 2.0 * (2.0 * (m * k + k * n) + 4.0 * m * n));
  mha_team_run(team, mha_gemm_bf16_worker, &r);
}
