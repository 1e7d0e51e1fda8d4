/*
 * Batch invariance: the bits of one batch entry's output depend only on that
 * entry's inputs and the shape of one entry (and the kernel set) — never on
 * B, on where the entry sits in its batch, on the other entries, on the
 * thread count, on the layer's chunking, or on whether a workspace was
 * passed.
 *
 * For each kernel set the CPU has, each case computes one entry alone
 * (B = 1, one thread, the call allocating its workspace), then the same
 * entry at a random position inside batches of 1…17 random other entries,
 * with 1 or 2 threads, with or without a caller workspace sized exactly to
 * the *_workspace_size() query (so an ASan build catches any write past
 * it), and compares the entry's output rows and weights bitwise.
 *
 * Cases: core prefill (causal), core decode with split key ranges (the
 * report: H = Hkv = 8, Tq 1, Tk 2048, D 64), GQA decode with key padding,
 * GQA prefill with a per-batch additive mask, decode with weights, unmasked
 * prefill (MHA and GQA) whose items take the transposed tiles or the row
 * form depending on their rows; layer
 * cross-attention decode (the report's heap overflow: d_model 64, H 8,
 * Tq 1, Tk 2048, chunks of 16 entries, so B 17 leaves a short last chunk)
 * and layer self-attention prefill with GQA, causal and key padding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha.h"
#include "tester.h"

enum { MAX_B = 17 };

typedef struct core_case {
  const char* name;
  int64_t H, Hkv, Tq, Tk, D, Dv;
  int causal, kv_len, additive, weights;
} core_case;

/* Elements of one batch entry of each tensor (contiguous [B, H, T, W]). */
typedef struct entry_sizes {
  size_t q, k, v, out, add, w;
} entry_sizes;

static entry_sizes core_entry_sizes(const core_case* c) {
  entry_sizes e;
  e.q = (size_t)(c->H * c->Tq * c->D);
  e.k = (size_t)(c->Hkv * c->Tk * c->D);
  e.v = (size_t)(c->Hkv * c->Tk * c->Dv);
  e.out = (size_t)(c->H * c->Tq * c->Dv);
  e.add = c->additive ? (size_t)(c->Tq * c->Tk) : 0; /* per batch, heads broadcast */
  e.w = c->weights ? (size_t)(c->H * c->Tq * c->Tk) : 0;
  return e;
}

/* One entry's inputs. */
typedef struct core_entry {
  float *q, *k, *v, *add;
  int32_t kv_len;
} core_entry;

static void core_entry_fill(tester* t, const core_case* c, const entry_sizes* e, core_entry* x) {
  x->q = tester_alloc(e->q * sizeof(float));
  x->k = tester_alloc(e->k * sizeof(float));
  x->v = tester_alloc(e->v * sizeof(float));
  x->add = e->add ? tester_alloc(e->add * sizeof(float)) : NULL;
  tester_fill(t, x->q, e->q);
  tester_fill(t, x->k, e->k);
  tester_fill(t, x->v, e->v);
  if (x->add != NULL) tester_fill_range(t, x->add, e->add, -2.0f, 2.0f);
  /* lengths in [1, Tk]: an entry of length 0 is all zeros, which hides nothing */
  x->kv_len = c->kv_len ? (int32_t)(1 + tester_below(t, c->Tk)) : (int32_t)c->Tk;
}

static void core_entry_free(core_entry* x) {
  free(x->q);
  free(x->k);
  free(x->v);
  free(x->add);
}

/* Runs the core on entries[0..B) laid out contiguously; writes out and weights. */
static mha_status core_run(const core_case* c, const entry_sizes* e, mha_isa isa, int64_t B,
                           core_entry* const* entries, int threads, int with_workspace,
                           float* out, float* weights) {
  float* q = tester_alloc(e->q * (size_t)B * sizeof(float));
  float* k = tester_alloc(e->k * (size_t)B * sizeof(float));
  float* v = tester_alloc(e->v * (size_t)B * sizeof(float));
  float* add = e->add ? tester_alloc(e->add * (size_t)B * sizeof(float)) : NULL;
  int32_t kv_len[MAX_B];
  for (int64_t b = 0; b < B; b++) {
    memcpy(q + (size_t)b * e->q, entries[b]->q, e->q * sizeof(float));
    memcpy(k + (size_t)b * e->k, entries[b]->k, e->k * sizeof(float));
    memcpy(v + (size_t)b * e->v, entries[b]->v, e->v * sizeof(float));
    if (add != NULL) memcpy(add + (size_t)b * e->add, entries[b]->add, e->add * sizeof(float));
    kv_len[b] = entries[b]->kv_len;
  }
  mha_attention_desc d;
  mha_attention_desc_init(&d, B, c->H, c->Hkv, c->Tq, c->Tk, c->D, c->Dv);
  d.isa = isa;
  d.num_threads = threads;
  d.mask.causal = c->causal;
  d.mask.kv_len = c->kv_len ? kv_len : NULL;
  if (add != NULL) {
    d.mask.additive = add;
    d.mask.additive_strides = (mha_strides){c->Tq * c->Tk, 0, c->Tk};
  }
  void* ws = NULL;
  mha_status st = MHA_STATUS_SUCCESS;
  if (with_workspace) {
    size_t bytes = 0;
    st = mha_attention_workspace_size(&d, weights != NULL, &bytes);
    if (st == MHA_STATUS_SUCCESS) {
      ws = tester_alloc(bytes); /* exactly what was asked for */
      d.workspace = ws;
      d.workspace_size = bytes;
    }
  }
  if (st == MHA_STATUS_SUCCESS) st = mha_attention_f32(&d, q, k, v, out, weights);
  free(ws);
  free(q);
  free(k);
  free(v);
  free(add);
  return st;
}

/* Compares entry `pos` of a batch output with the entry computed alone. */
static void check_entry(tester* t, const char* what, const float* batch, size_t entry_size,
                        int64_t pos, const float* alone) {
  const float* got = batch + (size_t)pos * entry_size;
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < entry_size; i++) {
    if (memcmp(&got[i], &alone[i], sizeof(float)) != 0 && diff++ == 0) first = i;
  }
  tester_check(t, diff == 0, "%s: %zu of %zu values differ from the entry computed alone; first "
               "at [%zu]: %.9g vs %.9g", what, diff, entry_size, first,
               diff ? (double)got[first] : 0.0, diff ? (double)alone[first] : 0.0);
}

static void test_core_case(tester* t, const core_case* c, mha_isa isa) {
  const entry_sizes e = core_entry_sizes(c);
  core_entry mine;
  core_entry_fill(t, c, &e, &mine);
  core_entry others[MAX_B];
  for (int i = 0; i < MAX_B; i++) core_entry_fill(t, c, &e, &others[i]);

  tester_context(t, "core %s, isa %s, alone", c->name, mha_isa_name(isa));
  float* alone = tester_alloc(e.out * sizeof(float));
  float* alone_w = e.w ? tester_alloc(e.w * sizeof(float)) : NULL;
  tester_poison(alone, e.out);
  if (alone_w) tester_poison(alone_w, e.w);
  core_entry* one[1] = {&mine};
  mha_status st = core_run(c, &e, isa, 1, one, 1, 0, alone, alone_w);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "alone: %s: %s", mha_status_string(st), mha_last_error())) {
    goto done;
  }
  for (int64_t B = 1; B <= MAX_B; B++) {
    const int64_t pos = tester_below(t, B);
    const int threads = 1 + (int)(B % 2);
    const int with_ws = (int)((B / 2) % 2);
    tester_context(t, "core %s, isa %s, B %lld, entry at %lld, %d threads, %s workspace", c->name,
                   mha_isa_name(isa), (long long)B, (long long)pos, threads,
                   with_ws ? "caller" : "own");
    core_entry* entries[MAX_B];
    for (int64_t b = 0; b < B; b++) entries[b] = b == pos ? &mine : &others[(b * 7 + B) % MAX_B];
    float* out = tester_alloc(e.out * (size_t)B * sizeof(float));
    float* w = e.w ? tester_alloc(e.w * (size_t)B * sizeof(float)) : NULL;
    tester_poison(out, e.out * (size_t)B);
    if (w) tester_poison(w, e.w * (size_t)B);
    st = core_run(c, &e, isa, B, entries, threads, with_ws, out, w);
    if (tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s", mha_status_string(st), mha_last_error())) {
      check_entry(t, "out", out, e.out, pos, alone);
      if (w) check_entry(t, "weights", w, e.w, pos, alone_w);
    }
    free(out);
    free(w);
  }
done:
  free(alone);
  free(alone_w);
  core_entry_free(&mine);
  for (int i = 0; i < MAX_B; i++) core_entry_free(&others[i]);
}

/* ------------------------------------------------------------------------ */

typedef struct layer_case {
  const char* name;
  int64_t d_model, H, Hkv, Tq, Tk;
  int cross, causal, kv_len, weights;
} layer_case;

static void layer_run_check(tester* t, const layer_case* c, mha_isa isa) {
  const int64_t dm = c->d_model, D = dm / c->H, nkv = c->Hkv * D;
  const int64_t Tk = c->cross ? c->Tk : c->Tq;
  float* wq = tester_alloc((size_t)(dm * dm) * sizeof(float));
  float* wk = tester_alloc((size_t)(dm * nkv) * sizeof(float));
  float* wv = tester_alloc((size_t)(dm * nkv) * sizeof(float));
  float* wo = tester_alloc((size_t)(dm * dm) * sizeof(float));
  tester_fill(t, wq, (size_t)(dm * dm));
  tester_fill(t, wk, (size_t)(dm * nkv));
  tester_fill(t, wv, (size_t)(dm * nkv));
  tester_fill(t, wo, (size_t)(dm * dm));
  mha_layer_desc ld;
  memset(&ld, 0, sizeof ld);
  ld.d_model = dm;
  ld.H = c->H;
  ld.Hkv = c->Hkv;
  ld.w_q = wq;
  ld.w_k = wk;
  ld.w_v = wv;
  ld.w_o = wo;
  ld.isa = isa;
  mha_layer* plan = NULL;
  tester_context(t, "layer %s, isa %s, create", c->name, mha_isa_name(isa));
  mha_status st = mha_layer_create(&ld, &plan);
  free(wq);
  free(wk);
  free(wv);
  free(wo);
  if (!tester_check(t, st == MHA_STATUS_SUCCESS, "create: %s: %s", mha_status_string(st), mha_last_error())) return;
  tester_check(t, mha_layer_isa(plan) == isa, "the plan runs %s, not %s", mha_isa_name(mha_layer_isa(plan)),
               mha_isa_name(isa));

  /* inputs of MAX_B entries; entry `mine` is the last one */
  const size_t exq = (size_t)(c->Tq * dm), exk = c->cross ? (size_t)(Tk * dm) : 0;
  const size_t eout = (size_t)(c->Tq * dm), ew = c->weights ? (size_t)(c->H * c->Tq * Tk) : 0;
  float* xq_all = tester_alloc(exq * (MAX_B + 1) * sizeof(float));
  float* xk_all = exk ? tester_alloc(exk * (MAX_B + 1) * sizeof(float)) : NULL;
  int32_t len_all[MAX_B + 1];
  tester_fill(t, xq_all, exq * (MAX_B + 1));
  if (xk_all) tester_fill(t, xk_all, exk * (MAX_B + 1));
  for (int i = 0; i <= MAX_B; i++) len_all[i] = (int32_t)(1 + tester_below(t, Tk));
  const int mine = MAX_B;

  float* alone = NULL;
  float* alone_w = NULL;
  float* xq = tester_alloc(exq * MAX_B * sizeof(float));
  float* xk = exk ? tester_alloc(exk * MAX_B * sizeof(float)) : NULL;
  for (int64_t B = 0; B <= MAX_B; B++) { /* B = 0: the entry alone, as B 1 */
    const int64_t nb = B == 0 ? 1 : B;
    const int64_t pos = B == 0 ? 0 : tester_below(t, B);
    const int threads = B == 0 ? 1 : 1 + (int)(B % 2);
    const int with_ws = B == 0 ? 0 : (int)((B / 2) % 2);
    tester_context(t, "layer %s, isa %s, B %lld, entry at %lld, %d threads, %s workspace", c->name,
                   mha_isa_name(isa), (long long)nb, (long long)pos, threads, with_ws ? "caller" : "own");
    int32_t len[MAX_B];
    for (int64_t b = 0; b < nb; b++) {
      const int src = b == pos ? mine : (int)((b * 5 + B) % MAX_B);
      memcpy(xq + (size_t)b * exq, xq_all + (size_t)src * exq, exq * sizeof(float));
      if (xk) memcpy(xk + (size_t)b * exk, xk_all + (size_t)src * exk, exk * sizeof(float));
      len[b] = len_all[src];
    }
    float* out = tester_alloc(eout * (size_t)nb * sizeof(float));
    float* w = ew ? tester_alloc(ew * (size_t)nb * sizeof(float)) : NULL;
    tester_poison(out, eout * (size_t)nb);
    if (w) tester_poison(w, ew * (size_t)nb);
    mha_layer_args a;
    mha_layer_args_init(&a);
    a.B = nb;
    a.Tq = c->Tq;
    a.Tk = Tk;
    a.x_q = xq;
    a.x_k = xk;
    a.out = out;
    a.weights = w;
    a.num_threads = threads;
    a.mask.causal = c->causal;
    a.mask.kv_len = c->kv_len ? len : NULL;
    void* ws = NULL;
    st = MHA_STATUS_SUCCESS;
    if (with_ws) {
      size_t bytes = 0;
      st = mha_layer_workspace_size(plan, &a, &bytes);
      if (st == MHA_STATUS_SUCCESS) {
        ws = tester_alloc(bytes); /* exactly: ASan catches a write past it */
        a.workspace = ws;
        a.workspace_size = bytes;
      }
    }
    if (st == MHA_STATUS_SUCCESS) st = mha_layer_forward(plan, &a);
    free(ws);
    if (tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s", mha_status_string(st), mha_last_error())) {
      if (B == 0) {
        alone = out;
        alone_w = w;
        continue;
      }
      if (alone != NULL) {
        check_entry(t, "out", out, eout, pos, alone);
        if (w) check_entry(t, "weights", w, ew, pos, alone_w);
      }
    }
    free(out);
    free(w);
  }
  free(alone);
  free(alone_w);
  free(xq);
  free(xk);
  free(xq_all);
  free(xk_all);
  mha_layer_destroy(plan);
}

int main(void) {
  tester t;
  tester_init(&t, "batch-invariance-test");
  static const core_case core_cases[] = {
      {"prefill causal", 4, 4, 37, 37, 16, 16, 1, 0, 0, 0},
      {"decode H=Hkv=8 Tk 2048 D 64", 8, 8, 1, 2048, 64, 64, 0, 0, 0, 0},
      {"GQA decode kv_len", 8, 2, 1, 1000, 32, 24, 0, 1, 0, 0},
      {"GQA prefill additive", 6, 3, 9, 70, 7, 11, 0, 0, 1, 0},
      {"decode with weights", 2, 1, 1, 700, 16, 16, 1, 1, 0, 1},
      {"prefill kv_len weights", 2, 2, 13, 65, 8, 8, 1, 1, 0, 1},
      /* unmasked: alone the entry's items have 48 rows (the row form), in
       * batches 96 (transposed tiles), or 24 on two threads */
      {"prefill unmasked", 1, 1, 192, 150, 64, 48, 0, 0, 0, 0},
      {"GQA prefill unmasked", 8, 2, 100, 150, 32, 40, 0, 0, 0, 0},
  };
  static const layer_case layer_cases[] = {
      /* the heap-overflow report: cross-attention decode, 16 entries per chunk */
      {"cross decode d64 H8 Tk2048", 64, 8, 8, 1, 2048, 1, 0, 0, 0},
      {"cross decode kv_len weights", 64, 8, 2, 1, 1500, 1, 0, 1, 1},
      {"self prefill GQA causal kv_len", 48, 6, 2, 33, 0, 0, 1, 1, 0},
  };
  const isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    for (size_t c = 0; c < sizeof core_cases / sizeof core_cases[0]; c++) {
      test_core_case(&t, &core_cases[c], isas.isa[i]);
    }
    for (size_t c = 0; c < sizeof layer_cases / sizeof layer_cases[0]; c++) {
      layer_run_check(&t, &layer_cases[c], isas.isa[i]);
    }
  }
  return tester_finish(&t);
}
