/* Builds the buffers, descriptor and oracle problem of one attention case. */
#include "attention-problem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char* layout_name(layout_kind l) {
  static const char* const names[LAYOUT_COUNT] = {"bhtd", "bthd", "bhtd+pad", "bthd+pad",
                                                  "unit0"};
  return (int)l >= 0 && l < LAYOUT_COUNT ? names[l] : "?";
}

const char* additive_name(additive_kind a) {
  static const char* const names[ADDITIVE_COUNT] = {"none",     "bcast{0,0,Tk}", "full",
                                                    "full+pad", "per-batch",     "keypad{Tk,0,0}",
                                                    "row{0,0,0}"};
  return (int)a >= 0 && a < ADDITIVE_COUNT ? names[a] : "?";
}

mha_strides layout_strides(layout_kind l, int64_t B, int64_t H, int64_t T, int64_t W) {
  mha_strides s;
  switch (l) {
    case LAYOUT_BTHD:
      s.row = H * W;
      s.head = W;
      s.batch = T * H * W;
      break;
    case LAYOUT_BHTD_PADDED:
      s.row = W + 3;
      s.head = T * s.row + 5;
      s.batch = H * s.head + 7;
      break;
    case LAYOUT_BTHD_PADDED:
      s.head = W;
      s.row = H * W + 5;
      s.batch = T * s.row + 3;
      break;
    case LAYOUT_UNIT_ZERO:
      s.row = T == 1 ? 0 : W;
      s.head = H == 1 ? 0 : T * W;
      s.batch = B == 1 ? 0 : H * T * W;
      break;
    case LAYOUT_BHTD:
    default:
      s.row = W;
      s.head = T * W;
      s.batch = H * T * W;
      break;
  }
  return s;
}

int64_t view_extent(int64_t n0, int64_t n1, int64_t n2, int64_t W, mha_strides s) {
  return (n0 - 1) * s.batch + (n1 - 1) * s.head + (n2 - 1) * s.row + W;
}

static mha_strides additive_strides(additive_kind a, int64_t H, int64_t Tq, int64_t Tk) {
  mha_strides s = {0, 0, 0};
  switch (a) {
    case ADDITIVE_BROADCAST: s.row = Tk; break;
    case ADDITIVE_FULL:
      s.row = Tk;
      s.head = Tq * Tk;
      s.batch = H * Tq * Tk;
      break;
    case ADDITIVE_PADDED:
      s.row = Tk + 5;
      s.head = Tq * s.row + 3;
      s.batch = H * s.head + 1;
      break;
    case ADDITIVE_PER_BATCH:
      s.row = Tk;
      s.batch = Tq * Tk;
      break;
    case ADDITIVE_KEY_PADDING: s.batch = Tk; break;
    case ADDITIVE_ONE_ROW:
    case ADDITIVE_NONE:
    default: break;
  }
  return s;
}

double attention_case_cost(const attention_case* c) {
  return (double)c->B * (double)c->H * (double)c->Tq * (double)c->Tk * (double)(c->D + c->Dv);
}

void attention_case_describe(tester* t, const attention_case* c, const char* isa) {
  tester_context(t,
                 "isa=%s B=%lld H=%lld Hkv=%lld Tq=%lld Tk=%lld D=%lld Dv=%lld layout q/k/v/out="
                 "%s/%s/%s/%s causal=%d kv_len=%d additive=%s minus_inf=%d weights=%d "
                 "threads=%d scale=%g logits=%s nan_q=%d",
                 isa, (long long)c->B, (long long)c->H, (long long)c->Hkv, (long long)c->Tq,
                 (long long)c->Tk, (long long)c->D, (long long)c->Dv, layout_name(c->layout_q),
                 layout_name(c->layout_k), layout_name(c->layout_v), layout_name(c->layout_out),
                 c->causal, c->kv_len, additive_name(c->additive), c->minus_inf, c->weights,
                 c->threads, (double)c->scale,
                 c->logits == LOGITS_HIGH ? "high" : c->logits == LOGITS_LOW ? "low" : "random",
                 c->nan_q);
}

/* Fills every element of a view with uniform values in [lo, hi). */
static void view_fill(tester* t, float* base, int64_t n0, int64_t n1, int64_t n2, int64_t W,
                      mha_strides s, float lo, float hi) {
  for (int64_t a = 0; a < n0; a++) {
    for (int64_t b = 0; b < n1; b++) {
      for (int64_t r = 0; r < n2; r++) {
        tester_fill_range(t, base + a * s.batch + b * s.head + r * s.row, (size_t)W, lo, hi);
      }
    }
  }
}

static float* alloc_filled(tester* t, size_t n) {
  float* x = tester_alloc(n * sizeof(float));
  tester_fill(t, x, n);
  return x;
}

static double* widen(int64_t n0, int64_t n1, int64_t n2, int64_t W, const float* src,
                     mha_strides s) {
  double* d = tester_alloc((size_t)(n0 * n1 * n2 * W) * sizeof(double));
  oracle_gather(n0, n1, n2, W, src, (oracle_strides){s.batch, s.head, s.row}, d);
  return d;
}

void attention_problem_build(tester* t, const attention_case* c, attention_problem* p) {
  memset(p, 0, sizeof *p);
  p->c = *c;
  const int64_t B = c->B, H = c->H, Hkv = c->Hkv, Tq = c->Tq, Tk = c->Tk, D = c->D, Dv = c->Dv;
  mha_attention_desc* d = &p->desc;
  mha_attention_desc_init(d, B, H, Hkv, Tq, Tk, D, Dv);
  d->q = layout_strides(c->layout_q, B, H, Tq, D);
  d->k = layout_strides(c->layout_k, B, Hkv, Tk, D);
  d->v = layout_strides(c->layout_v, B, Hkv, Tk, Dv);
  d->out = layout_strides(c->layout_out, B, H, Tq, Dv);
  d->num_threads = c->threads;
  d->scale = c->scale;

  p->q_size = (size_t)view_extent(B, H, Tq, D, d->q);
  p->k_size = (size_t)view_extent(B, Hkv, Tk, D, d->k);
  p->v_size = (size_t)view_extent(B, Hkv, Tk, Dv, d->v);
  p->out_size = (size_t)view_extent(B, H, Tq, Dv, d->out);
  p->q = alloc_filled(t, p->q_size);
  p->k = alloc_filled(t, p->k_size);
  p->v = alloc_filled(t, p->v_size);
  p->out = tester_alloc(p->out_size * sizeof(float));
  if (c->weights) p->weights = tester_alloc((size_t)(B * H * Tq * Tk) * sizeof(float));

  if (c->logits != LOGITS_RANDOM) {
    /* q ≈ 1, k ≈ u/D with u in [0.901, 1): q·k in about [0.9, 1), times ±100 */
    view_fill(t, p->q, B, H, Tq, D, d->q, 0.999f, 1.0f);
    view_fill(t, p->k, B, Hkv, Tk, D, d->k, 0.901f / (float)D, 1.0f / (float)D);
    d->scale = c->logits == LOGITS_HIGH ? 100.0f : -100.0f;
    p->c.scale = d->scale; /* described as run */
  }
  if (c->nan_q) {
    p->q[(B - 1) * d->q.batch + (H - 1) * d->q.head + (Tq - 1) * d->q.row] = NAN;
  }

  if (c->kv_len) {
    p->kv_len = tester_alloc((size_t)B * sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) p->kv_len[b] = (int32_t)tester_below(t, Tk + 1);
    if (B > 1) {
      p->kv_len[0] = (int32_t)Tk;
      p->kv_len[B - 1] = 0;
    }
    d->mask.kv_len = p->kv_len;
  }
  d->mask.causal = c->causal;

  if (c->additive != ADDITIVE_NONE) {
    const mha_strides s = additive_strides(c->additive, H, Tq, Tk);
    p->additive_size = (size_t)view_extent(B, H, Tq, Tk, s);
    p->additive = tester_alloc(p->additive_size * sizeof(float));
    tester_fill_range(t, p->additive, p->additive_size, -3.0f, 3.0f);
    if (c->minus_inf >= 1) {
      for (size_t i = 0; i < p->additive_size; i++) {
        if (tester_below(t, 100) < 15) p->additive[i] = -INFINITY;
      }
    }
    if (c->minus_inf >= 2) {
      float* row = p->additive + (Tq / 2) * s.row;
      for (int64_t j = 0; j < Tk; j++) row[j] = -INFINITY;
    }
    d->mask.additive = p->additive;
    d->mask.additive_strides = s;
  }

  /* which elements of out belong to the view */
  p->out_covered = calloc(p->out_size, 1);
  if (p->out_covered == NULL) exit(2);
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t i = 0; i < Tq; i++) {
        memset(p->out_covered + b * d->out.batch + h * d->out.head + i * d->out.row, 1,
               (size_t)Dv);
      }
    }
  }

  /* the oracle reads widened contiguous copies */
  p->qd = widen(B, H, Tq, D, p->q, d->q);
  p->kd = widen(B, Hkv, Tk, D, p->k, d->k);
  p->vd = widen(B, Hkv, Tk, Dv, p->v, d->v);
  oracle_attention_problem* o = &p->oracle;
  o->B = B, o->H = H, o->Hkv = Hkv, o->Tq = Tq, o->Tk = Tk, o->D = D, o->Dv = Dv;
  o->q = p->qd, o->k = p->kd, o->v = p->vd;
  o->q_strides = (oracle_strides){H * Tq * D, Tq * D, D};
  o->k_strides = (oracle_strides){Hkv * Tk * D, Tk * D, D};
  o->v_strides = (oracle_strides){Hkv * Tk * Dv, Tk * Dv, Dv};
  o->scale = d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)D);
  o->causal = c->causal;
  o->kv_len = p->kv_len;
  o->additive = p->additive;
  o->additive_strides = (oracle_strides){d->mask.additive_strides.batch,
                                         d->mask.additive_strides.head,
                                         d->mask.additive_strides.row};
}

void attention_problem_free(attention_problem* p) {
  free(p->qd);
  free(p->kd);
  free(p->vd);
  free(p->out_covered);
  free(p->additive);
  free(p->kv_len);
  free(p->weights);
  free(p->out);
  free(p->v);
  free(p->k);
  free(p->q);
  memset(p, 0, sizeof *p);
}

void attention_problem_poison(attention_problem* p) {
  tester_poison(p->out, p->out_size);
  if (p->weights != NULL) {
    const attention_case* c = &p->c;
    tester_poison(p->weights, (size_t)(c->B * c->H * c->Tq * c->Tk));
  }
}

void attention_problem_gather_out(const attention_problem* p, float* dst) {
  const attention_case* c = &p->c;
  const mha_strides s = p->desc.out;
  for (int64_t b = 0; b < c->B; b++) {
    for (int64_t h = 0; h < c->H; h++) {
      for (int64_t i = 0; i < c->Tq; i++) {
        memcpy(dst + ((b * c->H + h) * c->Tq + i) * c->Dv, p->out + b * s.batch + h * s.head + i * s.row,
               (size_t)c->Dv * sizeof(float));
      }
    }
  }
}

size_t attention_problem_gap_writes(const attention_problem* p) {
  size_t n = 0;
  for (size_t i = 0; i < p->out_size; i++) {
    if (!p->out_covered[i] && !tester_is_poison(p->out[i])) n++;
  }
  return n;
}
