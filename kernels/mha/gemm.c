/*
 * The projection GEMM: weights packed once, then Goto's five loops around the
 * table's micro-kernel.
 *
 *   W [K×N] is packed into ⌈N/NR⌉ panels; panel p holds columns
 *   [p·NR, p·NR + NR) as K rows of NR floats, zero padded past N. A k-slice
 *   [pc, pc + kc) of a panel is then the micro-kernel's B with ldb = NR.
 *
 *   loop 5  jc over N in NC   (a block of panels that stays in L3/L2)
 *   loop 4  pc over K in KC   (the k-slice of those panels, KC·NC floats in L2)
 *   loop 3  ic over M in MC   (rows of A re-used across the panels, MC·KC in L2;
 *                              a thread's tile spans MHA_GEMM_MC_PER_TILE of them)
 *   loop 2  ir over MC in MR  (MR rows × KC of A, read in place, stay in L1)
 *   loop 1  jr over NC in NR  (the micro-kernel; its KC·NR panel slice streams
 *                              from L2, one contiguous stream)
 *
 * Loops 1 and 2 in this order (BLIS's: the broadcast operand stays in L1,
 * the vector operand streams) measured 1.02–1.05x the other order on
 * Emerald Rapids (bert_base, gpt2 and llama_prefill layers, 1 and 2 threads,
 * mha_ab) and the same on its AVX2 set; no bit changes, since every C element
 * keeps its k order.
 *
 * Threads take whole tiles of C (rows × an NC block), each over the full K
 * in the same order, so the result does not depend on the number of threads.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv-gemm/kv-convert.h"
#include "mha/internal.h"

mha_status mha_packed_w_alloc(const mha_kernels* kr, int64_t K, int64_t N, mha_packed_w* out) {
  const int64_t nr = (int64_t)kr->gemm_nr;
  int64_t n;
  if (!mha_mul_i64((N + nr - 1) / nr * nr, K, &n) || !mha_mul_i64(n, (int64_t)sizeof(float), &n) ||
      (uint64_t)n > (uint64_t)SIZE_MAX - 64) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "mha_layer_create: packed weights overflow");
  }
  out->data = aligned_alloc(64, ((size_t)n + 63) & ~(size_t)63);
  if (out->data == NULL) {
    return mha_error(MHA_STATUS_OUT_OF_MEMORY,
                     "mha_layer_create: cannot allocate %lld bytes of packed weights", (long long)n);
  }
  memset(out->data, 0, (size_t)n);
  out->K = K;
  out->N = N;
  out->nr = (size_t)nr;
  return MHA_STATUS_SUCCESS;
}

float mha_element_f32(const void* a, mha_dtype dtype, int64_t i) {
  switch (dtype) {
    case MHA_DTYPE_F16: return mha_f16_to_f32(((const uint16_t*)a)[i]);
    case MHA_DTYPE_BF16: return mha_bf16_to_f32(((const uint16_t*)a)[i]);
    default: return ((const float*)a)[i];
  }
}

void mha_packed_w_fill(mha_packed_w* dst, int64_t col0, int64_t N, const void* w, mha_dtype dtype,
                       int64_t stride_k, int64_t stride_n) {
  const int64_t nr = (int64_t)dst->nr, K = dst->K;
  for (int64_t j = 0; j < N; j++) {
    const int64_t col = col0 + j;
    float* panel = dst->data + (col / nr) * K * nr + col % nr;
    if (dtype == MHA_DTYPE_F32) { /* the common case, without a call per element */
      const float* wf = w;
      for (int64_t kk = 0; kk < K; kk++) panel[kk * nr] = wf[kk * stride_k + j * stride_n];
    } else {
      for (int64_t kk = 0; kk < K; kk++) panel[kk * nr] = mha_element_f32(w, dtype, kk * stride_k + j * stride_n);
    }
  }
}

mha_status mha_pack_w(const mha_kernels* kr, int64_t K, int64_t N, const void* w, mha_dtype dtype,
                      int64_t stride_k, int64_t stride_n, mha_packed_w* out) {
  mha_status st = mha_packed_w_alloc(kr, K, N, out);
  if (st == MHA_STATUS_SUCCESS) mha_packed_w_fill(out, 0, N, w, dtype, stride_k, stride_n);
  return st;
}

void mha_packed_w_free(mha_packed_w* pw) {
  if (pw == NULL) return;
  free(pw->data);
  pw->data = NULL;
}

/* The L2 bytes per core, read once (sysconf, which glibc answers from CPUID
 * leaf 4 / 0x8000001D on x86); 0 when unknown. */
static long mha_l2_bytes(void) {
  static long cached = -1;
  long v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
  if (v < 0) {
#if defined(_SC_LEVEL2_CACHE_SIZE)
    v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (v < 0) v = 0;
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
  }
  return v;
}

/* MC (rows of A) and NC (columns of packed W) of the table, shrunk on a CPU
 * whose L2 cannot hold MC·KC + NC·KC floats in 3/4 of it (the tables' values
 * fit the 512 KiB – 2 MiB L2s of Zen 3/4 and Intel server cores; a 256 KiB
 * client L2 gets half-size blocks). KC is never changed: it sets the order of
 * the k-block additions, and so the bits, which must not depend on the CPU's
 * caches within one kernel set. */
static void mha_gemm_blocks(const mha_kernels* kr, int64_t nr, int64_t* mc, int64_t* nc) {
  const int64_t mr = (int64_t)kr->gemm_mr, kc = (int64_t)kr->gemm_kc;
  *mc = (int64_t)kr->gemm_mc / mr * mr;
  *nc = (int64_t)kr->gemm_nc / nr * nr;
  const long l2 = mha_l2_bytes();
  while (l2 > 0 && (*mc + *nc) * kc * (int64_t)sizeof(float) > l2 / 4 * 3 && (*mc > mr || *nc > nr)) {
    if (*mc > mr) *mc = (*mc / 2 + mr - 1) / mr * mr;
    if (*nc > nr) *nc = (*nc / 2 + nr - 1) / nr * nr;
  }
}

/* One tile of C: rows [i0, i0 + mt) (several MC blocks) × columns
 * [jc, jc + nc), over the whole K. For each k-slice the B block (KC×NC,
 * in L2) serves every MC block of the tile before the next slice. A is read
 * in place: copying its blocks contiguous measured 2–4% slower, also at
 * d_model 4096, where its rows lie 16 KiB apart. */
static void mha_gemm_tile(const mha_kernels* kr, int64_t mc_max, int64_t i0, int64_t mt, int64_t jc,
                          int64_t nc, const float* a, int64_t lda, const mha_packed_w* w,
                          const float* bias, float* c, int64_t ldc) {
  const int64_t K = w->K, nr = (int64_t)w->nr, mr = (int64_t)kr->gemm_mr;
  const int64_t kc_max = (int64_t)kr->gemm_kc;
  if (bias != NULL) {
    for (int64_t i = 0; i < mt; i++) memcpy(c + (i0 + i) * ldc + jc, bias + jc, (size_t)nc * sizeof(float));
  }
  for (int64_t pc = 0; pc < K; pc += kc_max) {
    const int64_t kc = K - pc < kc_max ? K - pc : kc_max;
    const int accumulate = pc > 0 || bias != NULL;
    for (int64_t ic = i0; ic < i0 + mt; ic += mc_max) {
      const int64_t mc = i0 + mt - ic < mc_max ? i0 + mt - ic : mc_max;
      for (int64_t ir = 0; ir < mc; ir += mr) {
        const int64_t m = mc - ir < mr ? mc - ir : mr;
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const int64_t n = nc - jr < nr ? nc - jr : nr;
          const float* panel = w->data + ((jc + jr) / nr) * K * nr + pc * nr;
          kr->gemm((size_t)m, (size_t)n, (size_t)kc, a + (ic + ir) * lda + pc, (size_t)lda, panel, (size_t)nr,
                   c + (ic + ir) * ldc + jc + jr, (size_t)ldc, accumulate);
        }
      }
    }
  }
}

/* MC blocks per tile: enough reuse of each B block from L2, while a large M
 * still gives every thread tiles. Every C element sees the same micro-kernel
 * calls in the same k order whatever the tiling, so results do not depend on it. */
enum { MHA_GEMM_MC_PER_TILE = 4 };

/* Tile t of the grid of C. */
static void mha_gemm_tile_at(const mha_kernels* kr, const mha_gemm_grid* g, int64_t t, int64_t M,
                             const float* a, int64_t lda, const mha_packed_w* w, const float* bias,
                             float* c, int64_t ldc) {
  const int64_t N = w->N, i0 = (t / g->nt) * g->mtile, jc = (t % g->nt) * g->nc;
  mha_gemm_tile(kr, g->mc, i0, M - i0 < g->mtile ? M - i0 : g->mtile, jc,
                N - jc < g->nc ? N - jc : g->nc, a, lda, w, bias, c, ldc);
}

/* Units of work each thread should have to choose from, so that dynamic
 * scheduling evens out uneven tiles and noisy cores. */
enum { MHA_GEMM_UNITS_PER_THREAD = 4 };

mha_gemm_grid mha_gemm_grid_for(const mha_kernels* kr, int64_t M, int64_t N, int64_t nr, int nthreads) {
  /* MC a multiple of MR and NC a multiple of NR, so tiles start on tile edges */
  const int64_t mr = (int64_t)kr->gemm_mr;
  mha_gemm_grid g;
  mha_gemm_blocks(kr, nr, &g.mc, &g.nc);
  const int64_t mc = g.mc;
  g.mtile = mc * MHA_GEMM_MC_PER_TILE;
  /* few tiles for the threads (a B = 1 prefill, a decode step): halve the
   * tiles, rows down to one MC block first (B blocks stay reused from L2),
   * then columns down to one panel, then rows down to one MR tile. The
   * tiling never changes a result: every C element sees the same k order. */
  const int64_t want = (int64_t)MHA_GEMM_UNITS_PER_THREAD * (nthreads > 1 ? nthreads : 1);
  for (;;) {
    g.mt = (M + g.mtile - 1) / g.mtile;
    g.nt = (N + g.nc - 1) / g.nc;
    g.tiles = g.mt * g.nt;
    if (g.tiles >= want || nthreads <= 1) break;
    if (g.mtile > mc && g.mtile < 2 * M) {
      g.mtile = (g.mtile / 2 + mr - 1) / mr * mr;
    } else if (g.nc > nr) {
      g.nc = (g.nc / 2 + nr - 1) / nr * nr;
    } else if (g.mtile > mr) {
      g.mtile = (g.mtile / 2 + mr - 1) / mr * mr;
    } else {
      break;
    }
  }
  return g;
}

typedef struct mha_gemm_run {
  const mha_kernels* kr;
  const mha_gemm_grid* g;
  int64_t M;
  const float* a;
  int64_t lda;
  const mha_packed_w* w;
  const float* bias;
  float* c;
  int64_t ldc;
  int64_t next; /* the next tile to take */
  const mha_tracer* tracer;
} mha_gemm_run;

static void mha_gemm_worker(void* ctx, int worker) {
  mha_gemm_run* r = ctx;
  for (int64_t t; (t = mha_claim(&r->next, r->g->tiles)) >= 0;) {
    const int64_t start = r->tracer != NULL ? mha_now_ns() : 0;
    mha_gemm_tile_at(r->kr, r->g, t, r->M, r->a, r->lda, r->w, r->bias, r->c, r->ldc);
    if (r->tracer == NULL) continue;
    const mha_gemm_grid* g = r->g;
    const int64_t i0 = (t / g->nt) * g->mtile, jc = (t % g->nt) * g->nc, N = r->w->N;
    /* batch 0: the chunk's first entry once the tracer adds its batch0 */
    mha_trace_event ev = {start, mha_now_ns(), worker, MHA_TRACE_GEMM, 0, r->tracer->gemm, 0,
                          mha_trace_i32(i0), mha_trace_i32(i0 + g->mtile < r->M ? i0 + g->mtile : r->M),
                          mha_trace_i32(jc), mha_trace_i32(jc + g->nc < N ? jc + g->nc : N), 0};
    mha_trace_record(r->tracer, &ev);
  }
}

void mha_gemm_f32(const mha_kernels* kr, int64_t M, const float* a, int64_t lda,
                  const mha_packed_w* w, const float* bias, float* c, int64_t ldc, mha_team team) {
  const mha_gemm_grid g = mha_gemm_grid_for(kr, M, w->N, (int64_t)w->nr, team.workers);
  if (team.workers > g.tiles) team.workers = (int)g.tiles;
  /* the size rule (parallel.h): 2·M·N·K FLOPs, 2 per byte of A, W and C */
  const double m = (double)M, n = (double)w->N, k = (double)w->K;
  team.workers = mha_workers_for(team.workers, 2.0 * m * n * k + 2.0 * 4.0 * (m * k + k * n + m * n));
  /* one worker opens no parallel region: the OpenMP runtime allocates its
   * team there and exits the process if that fails */
  mha_gemm_run r = {kr, &g, M, a, lda, w, bias, c, ldc, 0, team.tracer};
  mha_team_run(team, mha_gemm_worker, &r);
}
