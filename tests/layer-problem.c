/* Builds the weights, inputs, descriptors and oracle of one layer case. */
#include "layer-problem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kv-gemm/kv-convert.h"
#include "tolerance.h"

void layer_case_describe(tester* t, const layer_case* c, const char* what) {
  tester_context(t,
                 "%s: B=%lld Tq=%lld Tk=%lld d_model=%lld d_kv=%lld H=%lld Hkv=%lld D=%lld "
                 "Dv=%lld layout=%s packed=%d biases=%d no_w_o=%d cross=%d separate_v=%d "
                 "causal=%d kv_len=%d additive=%d weights=%d threads=%d scale=%g",
                 what, (long long)c->B, (long long)c->Tq, (long long)c->Tk,
                 (long long)c->d_model, (long long)c->d_kv, (long long)c->H, (long long)c->Hkv,
                 (long long)c->D, (long long)c->Dv,
                 c->layout == MHA_WEIGHTS_OUT_IN ? "out_in" : "in_out", c->packed, c->biases,
                 c->no_w_o, c->cross, c->separate_v, c->causal, c->kv_len, c->additive,
                 c->weights, c->threads, (double)c->scale);
}

/* n weights uniform in ±1/sqrt(fan_in): projections stay O(1). */
static float* random_weights(tester* t, size_t n, int64_t fan_in) {
  float* w = tester_alloc(n * sizeof(float));
  const float a = 1.0f / sqrtf((float)fan_in);
  tester_fill_range(t, w, n, -a, a);
  return w;
}

static float* random_inputs(tester* t, size_t n) {
  float* x = tester_alloc(n * sizeof(float));
  tester_fill(t, x, n);
  return x;
}

void layer_problem_build(tester* t, const layer_case* c, layer_problem* p) {
  memset(p, 0, sizeof *p);
  p->c = *c;
  const int64_t dm = c->d_model, H = c->H, B = c->B, Tq = c->Tq;
  p->d_kv = c->d_kv != 0 ? c->d_kv : dm;
  p->Hkv = c->Hkv != 0 ? c->Hkv : H;
  p->D = c->D != 0 ? c->D : dm / H;
  p->Dv = c->Dv != 0 ? c->Dv : p->D;
  p->Tk = c->cross ? c->Tk : Tq;
  p->width = c->no_w_o ? H * p->Dv : dm;
  const int64_t dkv = p->d_kv, Hkv = p->Hkv, D = p->D, Dv = p->Dv, Tk = p->Tk;

  mha_layer_desc* d = &p->desc;
  mha_layer_desc_init(d); /* struct_size set: fields past the 0.5 layout (dtype) are read */
  d->d_model = dm;
  d->d_kv = c->d_kv;
  d->H = H;
  d->Hkv = c->Hkv;
  d->D = c->D;
  d->Dv = c->Dv;
  d->layout = c->layout;
  if (c->packed) {
    p->in_proj_weight = random_weights(t, (size_t)(3 * dm * dm), dm);
    d->in_proj_weight = p->in_proj_weight;
    if (c->biases) {
      p->in_proj_bias = random_inputs(t, (size_t)(3 * dm));
      d->in_proj_bias = p->in_proj_bias;
    }
  } else {
    p->w_q = random_weights(t, (size_t)(dm * H * D), dm);
    p->w_k = random_weights(t, (size_t)(dkv * Hkv * D), dkv);
    p->w_v = random_weights(t, (size_t)(dkv * Hkv * Dv), dkv);
    d->w_q = p->w_q;
    d->w_k = p->w_k;
    d->w_v = p->w_v;
    if (c->biases) {
      p->b_q = random_inputs(t, (size_t)(H * D));
      p->b_k = random_inputs(t, (size_t)(Hkv * D));
      p->b_v = random_inputs(t, (size_t)(Hkv * Dv));
      d->b_q = p->b_q;
      d->b_k = p->b_k;
      d->b_v = p->b_v;
    }
  }
  if (!c->no_w_o) {
    p->w_o = random_weights(t, (size_t)(H * Dv * dm), H * Dv);
    d->w_o = p->w_o;
    if (c->biases) {
      p->b_o = random_inputs(t, (size_t)dm);
      d->b_o = p->b_o;
    }
  }

  p->x_q = random_inputs(t, (size_t)(B * Tq * dm));
  if (c->cross) p->x_k = random_inputs(t, (size_t)(B * Tk * dkv));
  if (c->cross && c->separate_v) p->x_v = random_inputs(t, (size_t)(B * Tk * dkv));
  p->out_size = (size_t)(B * Tq * p->width);
  p->out = tester_alloc(p->out_size * sizeof(float));
  tester_poison(p->out, p->out_size);
  if (c->weights) {
    p->weights_size = (size_t)(B * H * Tq * Tk);
    p->weights = tester_alloc(p->weights_size * sizeof(float));
    tester_poison(p->weights, p->weights_size);
  }

  mha_layer_args* a = &p->args;
  mha_layer_args_init(a);
  a->B = B;
  a->Tq = Tq;
  a->Tk = c->Tk;
  a->x_q = p->x_q;
  a->x_k = p->x_k;
  a->x_v = p->x_v;
  a->out = p->out;
  a->weights = p->weights;
  a->scale = c->scale;
  a->num_threads = c->threads;
  a->mask.causal = c->causal;
  if (c->kv_len) {
    p->kv_len = tester_alloc((size_t)B * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) p->kv_len[b] = (int32_t)(1 + tester_below(t, Tk));
    if (B > 1) p->kv_len[B - 1] = 0;
    a->mask.kv_len = p->kv_len;
  }
  if (c->additive) {
    const size_t n = (size_t)(B * H * Tq * Tk);
    p->additive = tester_alloc(n * sizeof(float));
    tester_fill_range(t, p->additive, n, -2.0f, 2.0f);
    for (size_t i = 0; i < n; i++) {
      if (tester_below(t, 100) < 10) p->additive[i] = -INFINITY;
    }
    a->mask.additive = p->additive;
    a->mask.additive_strides = (mha_strides){H * Tq * Tk, Tq * Tk, Tk};
  }

  oracle_layer* o = &p->oracle;
  o->d_model = dm, o->d_kv = dkv, o->H = H, o->Hkv = Hkv, o->D = D, o->Dv = Dv;
  o->out_in = c->layout == MHA_WEIGHTS_OUT_IN;
  o->w_q = p->w_q, o->w_k = p->w_k, o->w_v = p->w_v, o->w_o = p->w_o;
  o->in_proj_weight = p->in_proj_weight;
  o->b_q = p->b_q, o->b_k = p->b_k, o->b_v = p->b_v, o->b_o = p->b_o;
  o->in_proj_bias = p->in_proj_bias;
}

void layer_problem_free(layer_problem* p) {
  float* owned[] = {p->w_q, p->w_k,    p->w_v,   p->w_o, p->in_proj_weight, p->b_q,
                    p->b_k, p->b_v,    p->b_o,   p->in_proj_bias, p->x_q,   p->x_k,
                    p->x_v, p->additive, p->out, p->weights};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) free(owned[i]);
  free(p->kv_len);
  memset(p, 0, sizeof *p);
}

void layer_problem_expect(const layer_problem* p, double* want, double* tol, double* want_w,
                          double* tol_w) {
  const layer_case* c = &p->c;
  const double scale = c->scale != 0.0f ? (double)c->scale : 1.0 / sqrt((double)p->D);
  const mha_strides s = p->args.mask.additive_strides;
  oracle_layer_trace trace;
  oracle_layer_forward(&p->oracle, c->B, c->Tq, p->Tk, p->x_q, p->x_k, p->x_v, scale, c->causal,
                       p->kv_len, p->additive, (oracle_strides){s.batch, s.head, s.row}, want,
                       want_w, &trace);
  tolerance_layer(&p->oracle, &trace, want_w, tol, tol_w);
  oracle_layer_trace_free(&trace);
}

uint16_t* layer_round16(mha_dtype dt, float* x, size_t n) {
  if (x == NULL) return NULL;
  uint16_t* bits = tester_alloc(n * 2);
  for (size_t i = 0; i < n; i++) {
    bits[i] = dt == MHA_DTYPE_F16 ? mha_f32_to_f16(x[i]) : mha_f32_to_bf16(x[i]);
    x[i] = dt == MHA_DTYPE_F16 ? mha_f16_to_f32(bits[i]) : mha_bf16_to_f32(bits[i]);
  }
  return bits;
}
