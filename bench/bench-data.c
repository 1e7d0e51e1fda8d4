/*
 * Inputs of one shape (fixed seed), mha's reference output, the check every
 * peer passes once before it is timed, and the bench's error message.
 */
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kv-gemm/kv-convert.h"

static char mha_bench_msg[512];

int mha_bench_fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(mha_bench_msg, sizeof mha_bench_msg, fmt, ap);
  va_end(ap);
  return -1;
}

const char* mha_bench_error(void) { return mha_bench_msg; }

int mha_bench_max_threads(void) { return omp_get_max_threads(); }

int mha_bench_cores(void) { return omp_get_num_procs(); }

const char* mha_bench_active_isa(void) {
  static char buf[256];
  mha_isa isa;
  if (mha_get_isa(&isa) != MHA_STATUS_SUCCESS) {
    snprintf(buf, sizeof buf, "error: %s", mha_last_error());
    return buf;
  }
  return mha_isa_name(isa);
}

/* Element i of stream `seed`, uniform in [-scale, scale): a counter-based
 * hash (splitmix64), so the fill is parallel and the same for any thread count. */
static float mha_bench_uniform(uint64_t seed, uint64_t i, float scale) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return ((float)(z >> 40) / 8388608.0f - 1.0f) * scale;
}

static float* mha_bench_random(size_t n, uint64_t seed, float scale, int threads) {
  float* p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
  if (p == NULL) return NULL;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < (int64_t)n; i++) p[i] = mha_bench_uniform(seed, (uint64_t)i, scale);
  return p;
}

void mha_bench_data_destroy(mha_bench_data* d) {
  if (d == NULL) return;
  free(d->x);
  free(d->w_q);
  free(d->w_k);
  free(d->w_v);
  free(d->w_o);
  free(d->q);
  free(d->k);
  free(d->v);
  free(d->ref);
  free(d);
}

uint16_t* mha_bench_narrow16(const float* x, size_t n, int dt) {
  uint16_t* y = malloc(n * sizeof *y);
  if (y == NULL) return NULL;
  for (size_t i = 0; i < n; i++) y[i] = dt == MHA_DTYPE_F16 ? mha_f32_to_f16(x[i]) : mha_f32_to_bf16(x[i]);
  return y;
}

void mha_bench_widen16(const uint16_t* x, size_t n, int dt, float* y) {
  for (size_t i = 0; i < n; i++) y[i] = dt == MHA_DTYPE_F16 ? mha_f16_to_f32(x[i]) : mha_bf16_to_f32(x[i]);
}

/* x[0..n) rounded to the 16-bit type dt (f16 or bf16) and widened back */
static void mha_bench_round_to(float* x, size_t n, int dt, int threads) {
  const int f16 = dt == MHA_DTYPE_F16;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < (int64_t)n; i++) {
    x[i] = f16 ? mha_f16_to_f32(mha_f32_to_f16(x[i])) : mha_bf16_to_f32(mha_f32_to_bf16(x[i]));
  }
}

int mha_bench_data_create(const mha_bench_shape* s, int threads, mha_bench_data** out) {
  *out = NULL;
  mha_bench_data* d = calloc(1, sizeof *d);
  if (d == NULL) return mha_bench_fail("out of memory");
  d->s = *s;
  const size_t B = (size_t)s->B, H = (size_t)s->H, Hkv = (size_t)s->Hkv, Tq = (size_t)s->Tq,
               Tk = (size_t)s->Tk, D = (size_t)s->D, dm = (size_t)s->d_model;
  int ok;
  if (s->kind == MHA_BENCH_LAYER) {
    /* weights ~ U(-1, 1)/sqrt(d_in): projections of unit-range inputs stay O(1) */
    const float wi = 1.0f / sqrtf((float)dm), wo = 1.0f / sqrtf((float)(H * D));
    d->x = mha_bench_random(B * Tq * dm, 1, 1.0f, threads);
    d->w_q = mha_bench_random(H * D * dm, 2, wi, threads);
    d->w_k = mha_bench_random(Hkv * D * dm, 3, wi, threads);
    d->w_v = mha_bench_random(Hkv * D * dm, 4, wi, threads);
    d->w_o = mha_bench_random(dm * H * D, 5, wo, threads);
    d->out_len = B * Tq * dm;
    ok = d->x && d->w_q && d->w_k && d->w_v && d->w_o;
    /* the 16-bit layer rows: x and the weights hold values of the type, so
     * the fp32 row and the reference compute on the same values */
    if (ok && (s->flags & MHA_BENCH_IO16) && s->kv_dtype != MHA_DTYPE_F32) {
      mha_bench_round_to(d->x, B * Tq * dm, s->kv_dtype, threads);
      mha_bench_round_to(d->w_q, H * D * dm, s->kv_dtype, threads);
      mha_bench_round_to(d->w_k, Hkv * D * dm, s->kv_dtype, threads);
      mha_bench_round_to(d->w_v, Hkv * D * dm, s->kv_dtype, threads);
      mha_bench_round_to(d->w_o, dm * H * D, s->kv_dtype, threads);
    }
  } else {
    d->q = mha_bench_random(B * H * Tq * D, 6, 1.0f, threads);
    d->k = mha_bench_random(B * Hkv * Tk * D, 7, 1.0f, threads);
    d->v = mha_bench_random(B * Hkv * Tk * D, 8, 1.0f, threads);
    d->out_len = B * H * Tq * D;
    ok = d->q && d->k && d->v;
    /* a 16-bit cache holds values of its type: K and V are rounded to it, so
     * that the fp32 twin, the reference and the cache hold the same values */
    if (ok && s->kv_dtype != MHA_DTYPE_F32) {
      const size_t n = B * Hkv * Tk * D;
      mha_bench_round_to(d->k, n, s->kv_dtype, threads);
      mha_bench_round_to(d->v, n, s->kv_dtype, threads);
      /* and Q, for mha_attention's 16-bit rows */
      if (s->flags & MHA_BENCH_IO16) mha_bench_round_to(d->q, B * H * Tq * D, s->kv_dtype, threads);
    }
  }
  d->ref = malloc(d->out_len * sizeof(float));
  if (!ok || d->ref == NULL) {
    mha_bench_data_destroy(d);
    return mha_bench_fail("out of memory for the inputs of %s", s->preset);
  }

  /* the reference: mha itself, on the kernel set in use */
  const mha_bench_impl* impl = s->kind == MHA_BENCH_LAYER ? &mha_bench_layer : &mha_bench_core;
  void* st = NULL;
  if (impl->setup(d, threads, &st) != 0 || impl->run(st) != 0) {
    if (st != NULL) impl->teardown(st);
    mha_bench_data_destroy(d);
    return -1;
  }
  memcpy(d->ref, impl->output(st), d->out_len * sizeof(float));
  impl->teardown(st);
  *out = d;
  return 0;
}

/* Normalized MSE, as ggml's tests: a broken peer (a missing scale, a wrong
 * head, no max subtraction) lands near 1; FP32 reassociation over reductions
 * of a few thousand terms stays many orders below the bound. */
static double mha_bench_nmse = 0.0;

double mha_bench_last_nmse(void) { return mha_bench_nmse; }

int mha_bench_check(const char* who, const float* out, const float* ref, size_t n, double limit) {
  double num = 0.0, den = 0.0;
  mha_bench_nmse = INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (isfinite(ref[i]) && !isfinite(out[i])) {
      return mha_bench_fail("%s: output[%zu] = %g where mha gives %g", who, i, (double)out[i],
                            (double)ref[i]);
    }
    const double e = (double)out[i] - (double)ref[i];
    num += e * e;
    den += (double)ref[i] * (double)ref[i];
  }
  const double nmse = den > 0.0 ? num / den : num;
  mha_bench_nmse = nmse;
  if (!(nmse <= limit)) {
    return mha_bench_fail("%s: output differs from mha's (normalized MSE %.3g > %.0e)", who, nmse, limit);
  }
  return 0;
}
