/* The naive oracle: double accumulation, 3-pass softmax, no library code. */
#include "oracle.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* oracle_alloc(size_t count, size_t size) {
  void* p = calloc(count == 0 ? 1 : count, size);
  if (p == NULL) {
    fprintf(stderr, "oracle: cannot allocate %zu x %zu bytes\n", count, size);
    exit(2);
  }
  return p;
}

int64_t oracle_kv_head(const oracle_attention_problem* p, int64_t h) {
  return h / (p->H / p->Hkv);
}

double oracle_mask_value(const oracle_attention_problem* p, int64_t b, int64_t h, int64_t i,
                         int64_t j) {
  if (p->additive == NULL) return 0.0;
  const oracle_strides s = p->additive_strides;
  return (double)p->additive[b * s.batch + h * s.head + i * s.row + j];
}

int64_t oracle_aligned_position(const oracle_attention_problem* p, int64_t b, int64_t i) {
  switch (p->var.align) {
    case 1: return i;
    case 2: return i + p->var.offset;
    case 3: return i + (p->kv_len != NULL ? (int64_t)p->kv_len[b] : p->Tk) - p->Tq;
    default: return i + p->Tk - p->Tq;
  }
}

int oracle_key_visible(const oracle_attention_problem* p, int64_t b, int64_t h, int64_t i,
                       int64_t j) {
  /* d = j − i' stays within ±2^62; the window sides may be anything up to
   * INT64_MAX, so they are compared with d, never added to i' */
  const int64_t d = j - oracle_aligned_position(p, b, i);
  if (p->causal && d > 0) return 0;
  if (p->var.window && (d < -p->var.window_left || d > p->var.window_right)) return 0;
  if (p->kv_len != NULL && j >= (int64_t)p->kv_len[b]) return 0;
  if (p->additive != NULL && oracle_mask_value(p, b, h, i, j) == -INFINITY) return 0;
  return 1;
}

double oracle_logit(const oracle_attention_problem* p, int64_t b, int64_t h, int64_t i,
                    int64_t j) {
  const int64_t g = oracle_kv_head(p, h);
  const double* qi = p->q + b * p->q_strides.batch + h * p->q_strides.head + i * p->q_strides.row;
  const double* kj = p->k + b * p->k_strides.batch + g * p->k_strides.head + j * p->k_strides.row;
  double dot = 0.0;
  for (int64_t d = 0; d < p->D; d++) dot += qi[d] * kj[d];
  double s = p->scale * dot;
  if (p->var.softcap > 0.0) s = p->var.softcap * tanh(s / p->var.softcap);
  if (p->var.alibi_slopes != NULL) {
    const double dist = (double)(oracle_aligned_position(p, b, i) - j);
    s -= (double)p->var.alibi_slopes[h] * dist;
  }
  return s + oracle_mask_value(p, b, h, i, j);
}

double oracle_sink(const oracle_attention_problem* p, int64_t h) {
  return p->var.sinks != NULL ? (double)p->var.sinks[h] : -INFINITY;
}

void oracle_attention_lse(const oracle_attention_problem* p, double* out, double* weights,
                          double* lse) {
  double* s = oracle_alloc((size_t)p->Tk, sizeof(double));
  int* vis = oracle_alloc((size_t)p->Tk, sizeof(int));
  for (int64_t b = 0; b < p->B; b++) {
    for (int64_t h = 0; h < p->H; h++) {
      const int64_t g = oracle_kv_head(p, h);
      const double* vbase = p->v + b * p->v_strides.batch + g * p->v_strides.head;
      const double sink = oracle_sink(p, h);
      for (int64_t i = 0; i < p->Tq; i++) {
        const size_t r = (size_t)((b * p->H + h) * p->Tq + i);
        double* o = out + r * (size_t)p->Dv;
        double* w = weights != NULL ? weights + r * (size_t)p->Tk : NULL;
        /* pass 1: logits of the visible keys and their max, the sink included */
        int any = 0, has_nan = 0;
        double mx = sink;
        for (int64_t j = 0; j < p->Tk; j++) {
          vis[j] = oracle_key_visible(p, b, h, i, j);
          if (!vis[j]) continue;
          s[j] = oracle_logit(p, b, h, i, j);
          if (isnan(s[j])) has_nan = 1;
          else if (s[j] > mx) mx = s[j];
          if (s[j] != -INFINITY) any = 1;
        }
        for (int64_t c = 0; c < p->Dv; c++) o[c] = 0.0;
        if (w != NULL) {
          for (int64_t j = 0; j < p->Tk; j++) w[j] = 0.0;
        }
        if (has_nan || (any && mx == INFINITY)) {
          /* a NaN (or +inf) logit: the row is NaN where it sees keys */
          for (int64_t c = 0; c < p->Dv; c++) o[c] = NAN;
          if (w != NULL) {
            for (int64_t j = 0; j < p->Tk; j++) w[j] = vis[j] ? NAN : 0.0;
          }
          if (lse != NULL) lse[r] = NAN;
          continue;
        }
        if (!any) {
          /* no visible key (or only -inf logits): zeros, the weight all on
           * the sink if there is one */
          if (lse != NULL) lse[r] = sink;
          continue;
        }
        /* pass 2: exp and sum, the sink's term included */
        double sum = sink == -INFINITY ? 0.0 : exp(sink - mx);
        for (int64_t j = 0; j < p->Tk; j++) {
          if (!vis[j]) continue;
          s[j] = exp(s[j] - mx);
          sum += s[j];
        }
        /* pass 3: normalize, then weight the values */
        for (int64_t j = 0; j < p->Tk; j++) {
          if (!vis[j]) continue;
          const double pj = s[j] / sum;
          if (w != NULL) w[j] = pj;
          const double* vj = vbase + j * p->v_strides.row;
          for (int64_t c = 0; c < p->Dv; c++) o[c] += pj * vj[c];
        }
        if (lse != NULL) lse[r] = mx + log(sum);
      }
    }
  }
  free(vis);
  free(s);
}

void oracle_attention(const oracle_attention_problem* p, double* out, double* weights) {
  oracle_attention_lse(p, out, weights, NULL);
}

void oracle_merge(int64_t parts, int64_t rows, int64_t Dv, const double* const* outs,
                  const double* const* lses, double* out, double* lse) {
  for (int64_t r = 0; r < rows; r++) {
    double mx = -INFINITY;
    int bad = 0;
    for (int64_t k = 0; k < parts; k++) {
      const double x = lses[k][r];
      if (isnan(x) || x == INFINITY) bad = 1;
      else if (x > mx) mx = x;
    }
    double* o = out + r * Dv;
    if (bad || mx == -INFINITY) {
      for (int64_t c = 0; c < Dv; c++) o[c] = bad ? NAN : 0.0;
      if (lse != NULL) lse[r] = bad ? NAN : -INFINITY;
      continue;
    }
    double sum = 0.0;
    for (int64_t k = 0; k < parts; k++) sum += exp(lses[k][r] - mx);
    const double L = mx + log(sum);
    for (int64_t c = 0; c < Dv; c++) o[c] = 0.0;
    for (int64_t k = 0; k < parts; k++) {
      if (lses[k][r] == -INFINITY) continue; /* its out row is not read */
      const double f = exp(lses[k][r] - L);
      for (int64_t c = 0; c < Dv; c++) o[c] += f * outs[k][r * Dv + c];
    }
    if (lse != NULL) lse[r] = L;
  }
}

void oracle_gather(int64_t n0, int64_t n1, int64_t n2, int64_t width, const float* src,
                   oracle_strides s, double* dst) {
  for (int64_t a = 0; a < n0; a++) {
    for (int64_t b = 0; b < n1; b++) {
      for (int64_t r = 0; r < n2; r++) {
        const float* row = src + a * s.batch + b * s.head + r * s.row;
        double* d = dst + ((a * n1 + b) * n2 + r) * width;
        for (int64_t c = 0; c < width; c++) d[c] = (double)row[c];
      }
    }
  }
}

void oracle_linear(int64_t M, int64_t K, int64_t N, const double* x, const float* w, int out_in,
                   const float* bias, double* y, double* y_abs) {
  for (int64_t r = 0; r < M; r++) {
    for (int64_t n = 0; n < N; n++) {
      double acc = bias != NULL ? (double)bias[n] : 0.0;
      double mag = bias != NULL ? fabs((double)bias[n]) : 0.0;
      for (int64_t k = 0; k < K; k++) {
        const double wkn = (double)(out_in ? w[n * K + k] : w[k * N + n]);
        acc += x[r * K + k] * wkn;
        mag += fabs(x[r * K + k]) * fabs(wkn);
      }
      y[r * N + n] = acc;
      if (y_abs != NULL) y_abs[r * N + n] = mag;
    }
  }
}

void oracle_linear_f32(int64_t M, int64_t K, int64_t N, const float* x, const float* w,
                       int out_in, const float* bias, double* y, double* y_abs) {
  double* xd = oracle_alloc((size_t)(M * K), sizeof(double));
  for (int64_t i = 0; i < M * K; i++) xd[i] = (double)x[i];
  oracle_linear(M, K, N, xd, w, out_in, bias, y, y_abs);
  free(xd);
}

/* One projection's weight, layout and bias, after resolving the packed form. */
typedef struct oracle_projection {
  const float* w;
  int out_in;
  const float* bias;
} oracle_projection;

static oracle_projection oracle_layer_projection(const oracle_layer* L, int which) {
  oracle_projection pr;
  if (L->in_proj_weight != NULL) {
    /* rows [which·d_model, (which+1)·d_model) of [3·d_model, d_model], OUT_IN */
    const int64_t d = L->d_model;
    pr.w = L->in_proj_weight + which * d * d;
    pr.out_in = 1;
    pr.bias = L->in_proj_bias != NULL ? L->in_proj_bias + which * d : NULL;
    return pr;
  }
  pr.out_in = L->out_in;
  pr.w = which == 0 ? L->w_q : which == 1 ? L->w_k : L->w_v;
  pr.bias = which == 0 ? L->b_q : which == 1 ? L->b_k : L->b_v;
  return pr;
}

void oracle_layer_forward(const oracle_layer* L, int64_t B, int64_t Tq, int64_t Tk,
                          const float* x_q, const float* x_k, const float* x_v, double scale,
                          int causal, const int32_t* kv_len, const float* additive,
                          oracle_strides additive_strides, double* out, double* weights,
                          oracle_layer_trace* trace) {
  oracle_layer_forward_variants(L, B, Tq, Tk, x_q, x_k, x_v, scale, causal, kv_len, additive,
                                additive_strides, NULL, out, weights, trace);
}

void oracle_layer_forward_variants(const oracle_layer* L, int64_t B, int64_t Tq, int64_t Tk,
                                   const float* x_q, const float* x_k, const float* x_v,
                                   double scale, int causal, const int32_t* kv_len,
                                   const float* additive, oracle_strides additive_strides,
                                   const oracle_variants* var, double* out, double* weights,
                                   oracle_layer_trace* trace) {
  const int64_t H = L->H, Hkv = L->Hkv, D = L->D, Dv = L->Dv;
  const float* xk = x_k != NULL ? x_k : x_q;
  const float* xv = x_v != NULL ? x_v : xk;
  const int64_t dkv = x_k != NULL ? L->d_kv : L->d_model;
  if (x_k == NULL) Tk = Tq;

  double* q = oracle_alloc((size_t)(B * Tq * H * D), sizeof(double));
  double* k = oracle_alloc((size_t)(B * Tk * Hkv * D), sizeof(double));
  double* v = oracle_alloc((size_t)(B * Tk * Hkv * Dv), sizeof(double));
  double* q_abs = oracle_alloc((size_t)(B * Tq * H * D), sizeof(double));
  double* k_abs = oracle_alloc((size_t)(B * Tk * Hkv * D), sizeof(double));
  double* v_abs = oracle_alloc((size_t)(B * Tk * Hkv * Dv), sizeof(double));
  const oracle_projection pq = oracle_layer_projection(L, 0);
  const oracle_projection pk = oracle_layer_projection(L, 1);
  const oracle_projection pv = oracle_layer_projection(L, 2);
  oracle_linear_f32(B * Tq, L->d_model, H * D, x_q, pq.w, pq.out_in, pq.bias, q, q_abs);
  oracle_linear_f32(B * Tk, dkv, Hkv * D, xk, pk.w, pk.out_in, pk.bias, k, k_abs);
  oracle_linear_f32(B * Tk, dkv, Hkv * Dv, xv, pv.w, pv.out_in, pv.bias, v, v_abs);

  /* heads are column blocks of the projections: a [B, T, H, width] view */
  oracle_attention_problem p;
  memset(&p, 0, sizeof p);
  p.B = B, p.H = H, p.Hkv = Hkv, p.Tq = Tq, p.Tk = Tk, p.D = D, p.Dv = Dv;
  p.q = q, p.k = k, p.v = v;
  p.q_strides = (oracle_strides){Tq * H * D, D, H * D};
  p.k_strides = (oracle_strides){Tk * Hkv * D, D, Hkv * D};
  p.v_strides = (oracle_strides){Tk * Hkv * Dv, Dv, Hkv * Dv};
  p.scale = scale;
  p.causal = causal;
  p.kv_len = kv_len;
  p.additive = additive;
  p.additive_strides = additive_strides;
  if (var != NULL) p.var = *var;
  double* heads = oracle_alloc((size_t)(B * H * Tq * Dv), sizeof(double));
  oracle_attention(&p, heads, weights);

  /* concatenate: attn[b, t, h·Dv + c] = heads[b, h, t, c] */
  double* attn = oracle_alloc((size_t)(B * Tq * H * Dv), sizeof(double));
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t t = 0; t < Tq; t++) {
        for (int64_t c = 0; c < Dv; c++) {
          attn[(b * Tq + t) * H * Dv + h * Dv + c] = heads[((b * H + h) * Tq + t) * Dv + c];
        }
      }
    }
  }
  free(heads);
  if (L->w_o != NULL) {
    oracle_linear(B * Tq, H * Dv, L->d_model, attn, L->w_o, L->out_in, L->b_o, out, NULL);
  } else {
    memcpy(out, attn, (size_t)(B * Tq * H * Dv) * sizeof(double));
  }

  if (trace != NULL) {
    trace->B = B, trace->Tq = Tq, trace->Tk = Tk;
    trace->d_kv = dkv;
    trace->q = q, trace->k = k, trace->v = v;
    trace->q_abs = q_abs, trace->k_abs = k_abs, trace->v_abs = v_abs;
    trace->attn = attn;
    trace->attention = p;
    return;
  }
  double* owned[] = {q, k, v, q_abs, k_abs, v_abs, attn};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
}

void oracle_layer_trace_free(oracle_layer_trace* t) {
  double* owned[] = {t->q, t->k, t->v, t->q_abs, t->k_abs, t->v_abs, t->attn};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
  memset(t, 0, sizeof *t);
}
