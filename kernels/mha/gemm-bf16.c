/*
 * The projection GEMM on a BF16 matrix unit (a kernel set with bf16_gemm):
 * the layer's BF16 form (layer-forward.c). bf16 rows of A times weights
 * packed once as bf16, accumulated in fp32 by the unit.
 *
 *   W [K×N] is packed as the N rows of Wᵀ, B of the set's layout
 *   (bf16-gemm.h; each weight rounded to bf16 — exact for weights that are
 *   bf16 values), N padded with zero rows to a multiple of the set's NR,
 *   ⌈K/4⌉ quads deep: the NR columns from column j at element j·4·kq. A's
 *   rows are packed as A once per call (the pack stage, 8 rows per unit),
 *   then C is computed in tiles of rows × columns, each element by one
 *   chain of the unit's steps over the whole K: its bits do not depend on
 *   the tiling, the thread count or the row count, and the bias is added
 *   after (acc + b, one fp32 addition).
 *
 *   Where K is longer than the set's bf16_kc (x86: an A block of 12 rows
 *   × K no longer fits L1, and its rows, 2·K bytes apart, alias in its
 *   sets) an A block of several rows takes K in chunks: the block's chunk
 *   copied into a contiguous buffer on the stack, that serves every panel
 *   of the tile, the micro-kernel continuing each element's chain from the
 *   value the previous chunk stored (accumulate 2: the same steps as one
 *   call over K, bit for bit). Blocks of few rows (a decode step's) stream
 *   B and gain nothing from it: one call over K.
 */
#include <stdlib.h>
#include <string.h>

#include "mha/internal.h"

/* Rows of C per tile: 8 micro-kernel rows (64 rows of A on Arm, 96 on x86:
 * K = 4096 bf16 in 512 or 768 KiB of L2); columns per tile: 256 (32 Arm
 * micro-kernel columns, 8 x86 ones). Shrunk for few tiles (a decode step),
 * as the fp32 grid: halve columns, then rows, while they stay whole tiles. */
enum { MHA_BF16_MTILES = 8, MHA_BF16_NTILE = 256, MHA_BF16_UNITS_PER_THREAD = 4 };
/* the worker's fp32 tile when C is not kept: an A block's rows (bf16_mr: 8
 * on Arm, 12 avx512_bf16, 32 amx_bf16) × the tile's columns, 16 KB (the
 * columns halved where the rows are more than 16) */
enum { MHA_BF16_TILE_FLOATS = 16 * MHA_BF16_NTILE };
/* the most values of K a chunk holds and the most values of an A block's
 * chunk (rows × chunk: the stack buffer, 18 KB; attention-bf16-test's table
 * check holds every set's bf16_kc and bf16_mr to them), and the fewest rows of an A block
 * that takes K in chunks (Zen 4, K 4096, N 4096, one worker, M rows: M 6
 * 1.16 ms with K whole against 1.27 in chunks; 8: 1.63 against 1.52; 12:
 * 3.31 against 2.17; 2048, two workers: 185 against 164) */
enum { MHA_BF16_KC_MAX = 768, MHA_BF16_KC_VALUES = 12 * 768, MHA_BF16_KC_MIN_ROWS = 8 };

static int64_t mha_round8(int64_t x) { return (x + 7) / 8 * 8; }

static int64_t mha_round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

mha_status mha_packed_bf16_alloc(const mha_kernels* kr, int64_t K, int64_t N, mha_packed_bf16* out) {
  memset(out, 0, sizeof *out);
  out->K = K;
  out->N = N;
  out->kq = (K + 3) / 4;
  /* N rounded to NR rows of 4·kq values; sizes checked by the plan's validation */
  const size_t n = (size_t)mha_round_up(N, kr->bf16_nr) * (size_t)(4 * out->kq);
  out->data = calloc(n > 0 ? n : 1, sizeof(uint16_t));
  if (out->data == NULL) return mha_error(MHA_STATUS_OUT_OF_MEMORY, "mha_layer_create: cannot allocate %zu bytes of bf16 weights", n * 2);
  return MHA_STATUS_SUCCESS;
}

mha_status mha_packed_bf16_fill(const mha_kernels* kr, mha_packed_bf16* dst, const void* w, mha_dtype dtype,
                                int64_t stride_k, int64_t stride_n) {
  /* NR columns at a time, gathered as fp32 rows of Wᵀ, rounded to bf16 and packed */
  const int64_t K = dst->K, kq = dst->kq, NR = kr->bf16_nr;
  float* row = malloc((size_t)K * sizeof(float));
  uint16_t* rows = malloc((size_t)(NR * K) * sizeof(uint16_t));
  const uint16_t** src = malloc((size_t)NR * sizeof(uint16_t*));
  if (row == NULL || rows == NULL || src == NULL) {
    free(row), free(rows), free(src);
    return mha_error(MHA_STATUS_OUT_OF_MEMORY, "mha_layer_create: cannot allocate the bf16 packing rows");
  }
  for (int64_t j0 = 0; j0 < dst->N; j0 += NR) {
    for (int64_t r = 0; r < NR; r++) {
      const int64_t j = j0 + r;
      for (int64_t kk = 0; kk < K; kk++) row[kk] = j < dst->N ? mha_element_f32(w, dtype, kk * stride_k + j * stride_n) : 0.0f;
      kr->narrow_bf16((size_t)K, row, rows + r * K);
      src[r] = rows + r * K;
    }
    kr->bf16_pack_b((size_t)NR, (size_t)K, src, dst->data + j0 * 4 * kq);
  }
  free(row), free(rows), free(src);
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
  int64_t M, K, kq, kc, mtile, ntile, nt, tiles;
  const uint16_t* a;
  int64_t lda;
  const mha_packed_bf16* w; /* the compute stage's */
  const float* bias;
  float* c;
  int64_t ldc;
  uint16_t* c16; /* C rounded to bf16 too (the same layout), or NULL */
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
    r->kr->bf16_pack_a(8, (size_t)K, src, r->ap + 8 * g * 4 * kq);
  }
}

static void mha_gemm_bf16_worker(void* ctx, int worker) {
  mha_gemm_bf16_run* r = ctx;
  const int64_t N = r->w->N, kq = r->kq, MR = r->kr->bf16_mr, NR = r->kr->bf16_nr;
  /* without an fp32 C (r->c NULL: only the bf16 one is wanted), an A
   * block's fp32 rows go to this tile, in L1, and only their rounding to
   * memory: at M 4096, N 2304 the fp32 C would be 38 MB more written */
  float tile[MHA_BF16_TILE_FLOATS];
  /* an A block's chunk of K (where K is taken in chunks) */
  uint16_t chunk[MHA_BF16_KC_VALUES];
  for (int64_t t; (t = mha_claim(&r->next, r->tiles)) >= 0;) {
    const int64_t start = r->tracer != NULL ? mha_now_ns() : 0;
    const int64_t i0 = (t / r->nt) * r->mtile, j0 = (t % r->nt) * r->ntile;
    const int64_t i1 = i0 + r->mtile < r->M ? i0 + r->mtile : r->M;
    const int64_t j1 = j0 + r->ntile < N ? j0 + r->ntile : N;
    /* an A block (MR rows × K, or a chunk of K: in L1) serves the tile's
     * columns: 443 against 422 GFLOP/s the other way round (B panels outer)
     * at M 4096, K 768, N 2304 on a Zen 4, 2 threads. K 768 whole against
     * chunks of 256 (stored and continued): 398 against 322-352 GFLOP/s;
     * at K 4096 chunks of 768 are the faster (the file's head). */
    for (int64_t i = i0; i < i1; i += MR) {
      const int64_t m = i1 - i < MR ? i1 - i : MR;
      /* the A block's rows of C: in C, or (row ii, column j) at
       * tile[(ii - i)·ntile + j - j0] */
      float* cb = r->c != NULL ? r->c + i * r->ldc + j0 : tile;
      const int64_t ldc = r->c != NULL ? r->ldc : r->ntile;
      const uint16_t* ai = r->ap + i * 4 * kq;
      /* K in chunks (the file's head), or whole */
      const int64_t kc = r->kc > 0 && r->kc < r->K && m >= MHA_BF16_KC_MIN_ROWS ? r->kc : 4 * kq;
      for (int64_t k0 = 0; k0 < 4 * kq; k0 += kc) {
        const int64_t kqc = (4 * kq - k0 < kc ? 4 * kq - k0 : kc) / 4;
        const uint16_t* a = ai;
        if (kc < 4 * kq) {
          for (int64_t ii = 0; ii < m; ii++) memcpy(chunk + ii * 4 * kqc, ai + ii * 4 * kq + k0, (size_t)(8 * kqc));
          a = chunk;
        }
        for (int64_t j = j0; j < j1; j += NR) {
          const int64_t n = j1 - j < NR ? j1 - j : NR;
          r->kr->bf16_gemm((size_t)m, (size_t)n, (size_t)kqc, a, r->w->data + j * 4 * kq + k0 * NR, 1.0f,
                           cb + (j - j0), (size_t)ldc, k0 > 0 ? 2 : 0);
        }
      }
      if (r->bias != NULL) {
        for (int64_t ii = 0; ii < m; ii++) {
          for (int64_t j = j0; j < j1; j++) cb[ii * ldc + j - j0] += r->bias[j];
        }
      }
      if (r->c16 != NULL) { /* the A block's rows of the tile, rounded while in cache */
        for (int64_t ii = 0; ii < m; ii++) {
          mha_narrow_row(r->kr, MHA_DTYPE_BF16, (size_t)(j1 - j0), cb + ii * ldc, r->c16 + (i + ii) * r->ldc + j0);
        }
      }
    }
    if (r->tracer == NULL) continue;
    mha_trace_event ev = {start, mha_now_ns(), worker, MHA_TRACE_GEMM, 0, r->tracer->gemm, 0, mha_trace_i32(i0),
                          mha_trace_i32(i1), mha_trace_i32(j0), mha_trace_i32(j1), 0};
    mha_trace_record(r->tracer, &ev);
  }
}

const uint16_t* mha_gemm_bf16_pack(const mha_kernels* kr, int64_t M, const uint16_t* a, int64_t lda, int64_t K,
                                   uint16_t* a_packed, mha_team team) {
  const int64_t kq = (K + 3) / 4;
  /* already A's layout (K a multiple of 4: no padding to zero), and the
   * kernels read rows < M only */
  if (kr->bf16_a_rows && K % 4 == 0 && lda == K) return a;
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
  return a_packed;
}

void mha_gemm_bf16_packed(const mha_kernels* kr, int64_t M, const uint16_t* a_packed, const mha_packed_bf16* w,
                          const float* bias, float* c, int64_t ldc, uint16_t* c16, mha_team team) {
  mha_gemm_bf16_run r;
  memset(&r, 0, sizeof r);
  r.kr = kr, r.M = M, r.K = w->K, r.kq = w->kq, r.w = w, r.bias = bias, r.c = c, r.ldc = ldc, r.c16 = c16;
  r.ap = (uint16_t*)a_packed;
  r.tracer = team.tracer;
  const int64_t MR = kr->bf16_mr, NR = kr->bf16_nr;
  r.kc = kr->bf16_kc > 0 && kr->bf16_kc <= MHA_BF16_KC_MAX && MR * kr->bf16_kc <= MHA_BF16_KC_VALUES ? kr->bf16_kc
                                                                                                 : 0;
  r.mtile = MHA_BF16_MTILES * MR;
  r.ntile = MHA_BF16_NTILE;
  /* without an fp32 C, the tile's columns of an A block fit the worker's tile */
  while (c == NULL && MR * r.ntile > MHA_BF16_TILE_FLOATS && r.ntile > NR) r.ntile /= 2;
  const int64_t want = (int64_t)MHA_BF16_UNITS_PER_THREAD * (team.workers > 1 ? team.workers : 1);
  for (;;) {
    r.nt = (w->N + r.ntile - 1) / r.ntile;
    r.tiles = ((M + r.mtile - 1) / r.mtile) * r.nt;
    if (r.tiles >= want || team.workers <= 1) break;
    if (r.ntile > NR && (r.ntile / 2) % NR == 0) {
      r.ntile /= 2;
    } else if (r.mtile > MR && (r.mtile / 2) % MR == 0) {
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
