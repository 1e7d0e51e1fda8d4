/*
 * mha_serving_step: one step of a continuously batching engine, the way it
 * calls attention per layer: a packed batch of sequences, some prefilling a
 * chunk and most decoding one token, all reading one paged K/V cache.
 *
 *   mha_serving_step [--threads N] [--reps N] [--block 16|32|...] [--dtype f16|bf16|f32|int8]
 *                    [--prefill N] [--rotary] [--huge] [--tiny]
 *
 * The preset (issue #22): 64 sequences, 4 of them prefilling chunks of 512
 * tokens (causal, aligned to the end of their keys), 60 decoding one token;
 * histories drawn in [1024, 8192] tokens (fixed seed); H 32, Hkv 8, D 128;
 * a paged cache (head-major blocks, shuffled in the pool). --tiny: 8
 * sequences, chunks of 16, histories in [32, 256], for a smoke test.
 * --prefill N: N prefilling sequences instead of 4 (0: the decodes alone,
 * the step's memory-bound share). --rotary: also the one call with rotary
 * embeddings applied to Q in the call (GPT-NeoX, all D dimensions, a table
 * from θ = 10^4), timed between the other two: the cost of the fusion.
 * The pools are 2 MiB aligned; --huge also backs them with transparent huge
 * pages (madvise), as an engine may allocate its cache: a decode over
 * 16-token blocks of a 1.25 GB pool walks the page tables at every block.
 *
 * Times, alternating, `reps` times each (medians): mha_attention_varlen_kv_f32
 * over the whole step (one call), and mha_attention_kv_f32 called once per
 * sequence (what a caller without the varlen call writes), both with a
 * caller workspace; checks that both give the same bits. Prints the CPU, the
 * step's FLOPs and cache bytes, ms, GFLOP/s, GB/s of cache read and the
 * ratio. Speed is reported, never asserted.
 */
#define _DEFAULT_SOURCE /* madvise */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "cpu-model.h"
#include "mha.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}
static float next_unit(void) { return (float)((double)(next_u64() >> 11) * 0x1p-53 * 2.0 - 1.0); }

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double median(double* x, int n) {
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The pools: 2 MiB aligned, backed by transparent huge pages when asked
 * (--huge: madvise(MADV_HUGEPAGE), as an engine would allocate its cache) */
static void* pool_alloc(size_t bytes, int huge) {
  const size_t align = (size_t)2 << 20, size = (bytes + align - 1) / align * align;
  void* p = aligned_alloc(align, size);
  if (p != NULL && huge) (void)madvise(p, size, MADV_HUGEPAGE);
  return p;
}

static int fail(const char* what, mha_status st) {
  fprintf(stderr, "mha_serving_step: %s: %s: %s\n", what, mha_status_string(st), mha_last_error());
  return 1;
}

int main(int argc, char** argv) {
  int threads = 0, reps = 7, tiny = 0, prefill = -1, rotary = 0, huge = 0;
  int64_t bs = 16;
  mha_dtype dtype = MHA_DTYPE_F16;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--tiny") == 0) {
      tiny = 1;
    } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
      threads = atoi(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) {
      reps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--huge") == 0) {
      huge = 1;
    } else if (strcmp(argv[i], "--rotary") == 0) {
      rotary = 1;
    } else if (i + 1 < argc && strcmp(argv[i], "--prefill") == 0) {
      prefill = atoi(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--block") == 0) {
      bs = atoll(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--dtype") == 0) {
      const char* t = argv[++i];
      dtype = strcmp(t, "f32") == 0    ? MHA_DTYPE_F32
              : strcmp(t, "bf16") == 0 ? MHA_DTYPE_BF16
              : strcmp(t, "int8") == 0 ? MHA_DTYPE_INT8
                                       : MHA_DTYPE_F16;
    } else {
      fprintf(stderr, "usage: mha_serving_step [--threads N] [--reps N] [--block N] [--dtype f16|bf16|f32|int8] "
                      "[--prefill N] [--rotary] [--huge] [--tiny]\n");
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  const int64_t B = tiny ? 8 : 64, chunk = tiny ? 16 : 512;
  const int64_t n_prefill = prefill >= 0 && prefill <= B ? prefill : tiny ? 2 : 4;
  const int64_t hist_lo = tiny ? 32 : 1024, hist_hi = tiny ? 256 : 8192;
  const int64_t H = 32, Hkv = 8, D = 128;
  const size_t esz = dtype == MHA_DTYPE_F32 ? 4 : dtype == MHA_DTYPE_INT8 ? 1 : 2;

  /* lengths: the prefilling sequences first; keys = history (+ the chunk) */
  int32_t* cu_q = malloc((size_t)(B + 1) * sizeof(int32_t));
  int32_t* used = malloc((size_t)B * sizeof(int32_t));
  int64_t max_used = 0, blocks = 0, tokens = 0;
  cu_q[0] = 0;
  for (int64_t b = 0; b < B; b++) {
    const int64_t lq = b < n_prefill ? chunk : 1;
    const int64_t hist = hist_lo + (int64_t)(next_u64() % (uint64_t)(hist_hi - hist_lo + 1));
    used[b] = (int32_t)(hist + lq);
    cu_q[b + 1] = cu_q[b] + (int32_t)lq;
    if (used[b] > max_used) max_used = used[b];
    blocks += (used[b] + bs - 1) / bs;
    tokens += used[b];
  }
  const int64_t max_blocks = (max_used + bs - 1) / bs, total_q = cu_q[B];
  /* the pool: every block some sequence uses, shuffled */
  int32_t* table = malloc((size_t)(B * max_blocks) * sizeof(int32_t));
  int32_t* perm = malloc((size_t)blocks * sizeof(int32_t));
  for (int64_t i = 0; i < blocks; i++) perm[i] = (int32_t)i;
  for (int64_t i = blocks - 1; i > 0; i--) {
    const int64_t j = (int64_t)(next_u64() % (uint64_t)(i + 1));
    const int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (int64_t b = 0, next = 0; b < B; b++) {
    for (int64_t s = 0; s < max_blocks; s++) table[b * max_blocks + s] = s * bs < used[b] ? perm[next++] : -1;
  }
  const size_t pool = (size_t)(blocks * Hkv * bs * D);
  void* kp = pool_alloc(pool * esz, huge);
  void* vp = pool_alloc(pool * esz, huge);
  float* q = malloc((size_t)(total_q * H * D) * sizeof(float));
  float* out1 = malloc((size_t)(total_q * H * D) * sizeof(float));
  float* out2 = malloc((size_t)(total_q * H * D) * sizeof(float));
  if (!cu_q || !used || !table || !perm || !kp || !vp || !q || !out1 || !out2) {
    fprintf(stderr, "mha_serving_step: out of memory (cache %.2f GB)\n", 2.0 * (double)(pool * esz) / 1e9);
    return 1;
  }
  mha_kv_cache cache;
  mha_kv_cache_init_paged(&cache, dtype, kp, vp, blocks, bs, Hkv, D, D, table, max_blocks);
  /* int8: one scale per row of the pools */
  float* kscales = dtype == MHA_DTYPE_INT8 ? malloc((size_t)(blocks * Hkv * bs) * sizeof(float)) : NULL;
  float* vscales = dtype == MHA_DTYPE_INT8 ? malloc((size_t)(blocks * Hkv * bs) * sizeof(float)) : NULL;
  if (dtype == MHA_DTYPE_INT8 && (kscales == NULL || vscales == NULL)) return 1;
  cache.k_scales = kscales;
  cache.v_scales = vscales;
  /* the values, written as an engine does (mha_kv_cache_write, one
   * sequence at a time from fp32 rows) */
  {
    float* rows = malloc((size_t)(Hkv * max_used * D) * sizeof(float));
    if (rows == NULL) return 1;
    const int32_t pos0 = 0;
    for (int64_t b = 0; b < B; b++) {
      for (int64_t i = 0; i < Hkv * used[b] * D; i++) rows[i] = next_unit();
      mha_kv_cache e = cache;
      e.block_table = table + b * max_blocks;
      const mha_strides rs = mha_strides_bhtd(Hkv, used[b], D);
      const mha_status st = mha_kv_cache_write(&e, 1, Hkv, used[b], D, D, &pos0, rows, rs, rows, rs);
      if (st != MHA_STATUS_SUCCESS) return fail("mha_kv_cache_write", st);
    }
    free(rows);
  }
  for (int64_t i = 0; i < total_q * H * D; i++) q[i] = next_unit();

  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, chunk, max_used, D, D);
  d.q = d.out = (mha_strides){0, D, H * D};
  d.mask.causal = 1;
  d.num_threads = threads;
  size_t bytes = 0, bytes1 = 0;
  mha_status st = mha_attention_varlen_kv_workspace_size(&d, cu_q, used, &cache, &bytes);
  if (st != MHA_STATUS_SUCCESS) return fail("varlen kv workspace", st);
  /* the per-sequence calls: the largest workspace any of them asks */
  for (int64_t b = 0; b < B; b++) {
    mha_attention_desc s = d;
    s.B = 1;
    s.Tq = cu_q[b + 1] - cu_q[b];
    s.Tk = used[b];
    mha_kv_cache e = cache;
    e.block_table = table + b * max_blocks;
    size_t n = 0;
    if ((st = mha_attention_kv_workspace_size(&s, &e, 0, &n)) != MHA_STATUS_SUCCESS) return fail("kv workspace", st);
    if (n > bytes1) bytes1 = n;
  }
  void* ws = malloc(bytes);
  void* ws1 = malloc(bytes1);
  d.workspace = ws;
  d.workspace_size = bytes;

  double flops = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const int64_t lq = cu_q[b + 1] - cu_q[b];
    /* causal, aligned to the end: row i sees used − lq + i + 1 keys */
    const double seen = (double)lq * (double)(used[b] - lq) + 0.5 * (double)lq * (double)(lq + 1);
    flops += 4.0 * (double)H * (double)D * seen;
  }
  /* K and V rows, and an int8 cache's scale per row */
  const double cache_bytes = 2.0 * (double)tokens * (double)Hkv * ((double)D * (double)esz +
                                                                  (dtype == MHA_DTYPE_INT8 ? 4.0 : 0.0));

  double* t_one = malloc((size_t)reps * sizeof(double));
  double* t_per = malloc((size_t)reps * sizeof(double));
  double* t_rot = malloc((size_t)reps * sizeof(double));
  /* --rotary: the same call with Q rotated in it (the cache is not
   * re-written: the cost measured is the call's) */
  float* rcos = NULL;
  float* rsin = NULL;
  mha_rotary rot;
  mha_attention_desc dr = d;
  if (rotary) {
    rcos = malloc((size_t)(max_used * D / 2) * sizeof(float));
    rsin = malloc((size_t)(max_used * D / 2) * sizeof(float));
    if (rcos == NULL || rsin == NULL) return 1;
    if ((st = mha_rotary_table_f32(D, max_used, 10000.0, 1.0, NULL, 1.0, rcos, rsin)) != MHA_STATUS_SUCCESS) {
      return fail("mha_rotary_table_f32", st);
    }
    mha_rotary_init(&rot, MHA_ROTARY_NEOX, D, rcos, rsin, max_used);
    dr.rotary = &rot;
  }
  for (int r = -1; r < reps; r++) { /* r = −1: the untimed warm-up */
    double t0 = now_s();
    if ((st = mha_attention_varlen_kv_f32(&d, cu_q, used, q, &cache, out1)) != MHA_STATUS_SUCCESS) {
      return fail("mha_attention_varlen_kv_f32", st);
    }
    const double t1 = now_s();
    double t_per_start = t1;
    if (rotary) {
      if ((st = mha_attention_varlen_kv_f32(&dr, cu_q, used, q, &cache, out2)) != MHA_STATUS_SUCCESS) {
        return fail("mha_attention_varlen_kv_f32 with rotary", st);
      }
      t_per_start = now_s();
      if (r >= 0) t_rot[r] = t_per_start - t1;
    }
    for (int64_t b = 0; b < B; b++) {
      mha_attention_desc s = d;
      s.B = 1;
      s.Tq = cu_q[b + 1] - cu_q[b];
      s.Tk = used[b];
      s.workspace = ws1;
      s.workspace_size = bytes1;
      mha_kv_cache e = cache;
      e.block_table = table + b * max_blocks;
      st = mha_attention_kv_f32(&s, q + (int64_t)cu_q[b] * H * D, &e, out2 + (int64_t)cu_q[b] * H * D, NULL);
      if (st != MHA_STATUS_SUCCESS) return fail("mha_attention_kv_f32", st);
    }
    const double t2 = now_s();
    if (r >= 0) {
      t_one[r] = t1 - t0;
      t_per[r] = t2 - t_per_start;
    }
  }
  const int same = memcmp(out1, out2, (size_t)(total_q * H * D) * sizeof(float)) == 0;
  const double one = median(t_one, reps), per = median(t_per, reps);
  char cpu[256];
  mha_bench_cpu_model(cpu, sizeof cpu);
  const char* tname = dtype == MHA_DTYPE_F32    ? "f32"
                      : dtype == MHA_DTYPE_BF16 ? "bf16"
                      : dtype == MHA_DTYPE_INT8 ? "int8"
                                                : "f16";
  printf("CPU: %s; threads %d (0: all); %d reps, medians\n", cpu, threads, reps);
  printf("serving_step%s: %lld sequences (%lld prefilling chunks of %lld, %lld decoding), histories [%lld, %lld], "
         "H %lld / Hkv %lld, D %lld, paged %s cache, blocks of %lld: %.3f GB, %.2f GFLOP\n",
         tiny ? " (tiny)" : "", (long long)B, (long long)n_prefill, (long long)chunk, (long long)(B - n_prefill),
         (long long)hist_lo, (long long)hist_hi, (long long)H, (long long)Hkv, (long long)D, tname, (long long)bs,
         cache_bytes / 1e9, flops / 1e9);
  printf("  one call (mha_attention_varlen_kv_f32): %9.3f ms  %7.1f GFLOP/s  %6.1f GB/s of cache\n", one * 1e3,
         flops / one / 1e9, cache_bytes / one / 1e9);
  printf("  per sequence (mha_attention_kv_f32):    %9.3f ms  %7.1f GFLOP/s  %6.1f GB/s of cache\n", per * 1e3,
         flops / per / 1e9, cache_bytes / per / 1e9);
  printf("  per sequence / one call: %.2fx; outputs %s\n", per / one, same ? "bitwise equal" : "DIFFER");
  if (rotary) {
    const double rt = median(t_rot, reps);
    printf("  one call with rotary (NeoX, dim %lld):   %9.3f ms  %7.1f GFLOP/s; with / without rotary: %.3fx\n",
           (long long)D, rt * 1e3, flops / rt / 1e9, rt / one);
  }
  free(t_rot);
  free(rcos);
  free(rsin);
  free(t_one);
  free(t_per);
  free(ws);
  free(ws1);
  free(cu_q);
  free(used);
  free(table);
  free(perm);
  free(kp);
  free(vp);
  free(kscales);
  free(vscales);
  free(q);
  free(out1);
  free(out2);
  return same ? 0 : 1;
}
