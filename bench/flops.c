/*
 * Work counts: the FLOPs behind every GFLOPS counter and the bytes behind
 * decode's GBps. Only multiply-adds of matrix products count (2 FLOPs each);
 * softmax, scaling, biases and copies are not counted. Every implementation
 * of a shape is credited the same useful FLOPs, so GFLOPS ratios are time
 * ratios (a peer that computes masked scores, or the wrapper that projects
 * K and V once per query head under GQA, does extra work it is not paid for).
 */
#include "bench.h"

/* Query row i (0-based, aligned position i' = i + Tk − Tq, bottom-right as
 * mha_mask documents) sees keys j <= i' under the causal mask and
 * j > i' − window under a window: the keys in [max(0, i' − window + 1),
 * min(Tk, i' + 1)); without a mask all Tk. */
double mha_bench_visible_pairs(int64_t Tq, int64_t Tk, int causal, int64_t window) {
  if (!causal && window <= 0) return (double)Tq * (double)Tk;
  double pairs = 0.0;
  for (int64_t i = 0; i < Tq; i++) {
    const int64_t ip = i + Tk - Tq;
    int64_t lo = 0, hi = Tk;
    if (causal && ip + 1 < hi) hi = ip + 1;
    if (window > 0 && ip - window + 1 > lo) lo = ip - window + 1;
    if (hi > lo) pairs += (double)(hi - lo);
  }
  return pairs;
}

double mha_bench_flops(const mha_bench_shape* s) {
  const double B = (double)s->B, H = (double)s->H, Hkv = (double)s->Hkv;
  const double Tq = (double)s->Tq, Tk = (double)s->Tk, D = (double)s->D, Dv = (double)s->D;
  /* the core: per (batch, head), S = Q·Kᵀ is 2·D FLOPs per visible (query, key)
   * pair and O = P·V is 2·Dv per pair:  2·B·H·pairs·(D + Dv),
   * pairs = Tq·Tk, or the visible part under the causal mask */
  double pairs = 0.0; /* Σ_b: with mixed lengths each entry's own Tk, queries bottom-right (kv_len) */
  for (int64_t b = 0; b < s->B; b++) pairs += mha_bench_visible_pairs(s->Tq, mha_bench_kv_len(s, b), s->causal, s->window);
  const double core = 2.0 * H * pairs * (D + Dv);
  if (s->kind == MHA_BENCH_CORE) return core;
  const double dm = (double)s->d_model;
  /* the projections, 2·B·T·d_in·d_out each:
   *   Q   2·B·Tq·d_model·(H·D)
   *   K   2·B·Tk·d_model·(Hkv·D)
   *   V   2·B·Tk·d_model·(Hkv·Dv)
   *   out 2·B·Tq·(H·Dv)·d_model */
  const double q = 2.0 * B * Tq * dm * (H * D);
  const double k = 2.0 * B * Tk * dm * (Hkv * D);
  const double v = 2.0 * B * Tk * dm * (Hkv * Dv);
  const double o = 2.0 * B * Tq * (H * Dv) * dm;
  return q + k + v + core + o;
}

int64_t mha_bench_kv_len(const mha_bench_shape* s, int64_t b) {
  return s->mixed ? s->Tk - b * s->Tk / (2 * s->B) : s->Tk;
}

/* K [B, Hkv, Tk, D] and V [B, Hkv, Tk, Dv] (Tk: each entry's length), 4 or 2
 * bytes per element: each element read at least once. */
double mha_bench_kv_bytes(const mha_bench_shape* s) {
  double keys = 0.0;
  for (int64_t b = 0; b < s->B; b++) keys += (double)mha_bench_kv_len(s, b);
  const double esz = s->kv_dtype == MHA_DTYPE_F32 ? 4.0 : 2.0;
  return keys * (double)s->Hkv * (double)(s->D + s->D) * esz;
}
