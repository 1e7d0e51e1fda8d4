/*
 * Packed variable-length batches (mha_attention_varlen_f32):
 *   - every sequence's out and lse are bitwise those of the same sequence
 *     called alone (mha_attention_f32, B = 1, its own lengths; a sequence
 *     without keys: one key hidden by kv_len {0}), as documented, for the
 *     bottom-right, top-left and offset alignments, with and without causal,
 *     window, ALiBi, soft-cap and sinks: so a sequence's bits never depend on
 *     the batch it is packed in, nor on the bounds Tq, Tk;
 *   - bitwise identical for 1, 2 and 3 threads; every ISA this CPU has;
 *   - rows past total_q, and lse entries of no row, are never written
 *     (poisoned buffers keep their poison); zero-length sequences;
 *   - bad offsets and masks the packed form refuses.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tester.h"

typedef struct vl_case {
  int64_t B, H, Hkv, Tq, Tk, D, Dv;
  int causal, window;
  int alibi, softcap, sinks;
  const char* name;
} vl_case;

static int check_ok(tester* t, mha_status st, const char* what) {
  return tester_check(t, st == MHA_STATUS_SUCCESS, "%s: %s: %s", what, mha_status_string(st),
                      mha_last_error());
}

static int same_bits(const float* a, const float* b, size_t n, size_t* at) {
  for (size_t i = 0; i < n; i++) {
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      *at = i;
      return 0;
    }
  }
  return 1;
}

static void set_variants(const vl_case* c, mha_mask* m, const float* slopes, const float* sinks) {
  m->causal = c->causal;
  if (c->window) {
    m->window = 1;
    m->window_left = c->window - 1;
    m->window_right = c->causal ? 0 : 3;
  }
  if (c->alibi) m->alibi_slopes = slopes;
  if (c->softcap) m->softcap = 8.0f;
  if (c->sinks) m->sinks = sinks;
}

static void run_case(tester* t, const vl_case* c, mha_isa isa) {
  const int64_t B = c->B, H = c->H, Hkv = c->Hkv, Tq = c->Tq, Tk = c->Tk, D = c->D, Dv = c->Dv;
  int32_t* cu_q = tester_alloc((size_t)(B + 1) * sizeof(int32_t));
  int32_t* cu_k = tester_alloc((size_t)(B + 1) * sizeof(int32_t));
  int32_t* kv_len = tester_alloc((size_t)B * sizeof(int32_t));
  cu_q[0] = cu_k[0] = 0;
  for (int64_t b = 0; b < B; b++) {
    /* lengths in [0, T]: the first entry full, one entry (if B > 2) empty */
    int64_t lq = b == 0 ? Tq : tester_below(t, Tq + 1), lk = b == 0 ? Tk : tester_below(t, Tk + 1);
    if (B > 2 && b == 1) lq = 0;
    if (B > 3 && b == 2) lk = 0;
    if (c->causal && lk < lq) lk = lq; /* bottom-right causal rows need keys to align to */
    cu_q[b + 1] = cu_q[b] + (int32_t)lq;
    cu_k[b + 1] = cu_k[b] + (int32_t)lk;
    kv_len[b] = (int32_t)lk;
  }
  const int64_t tq = cu_q[B], tk = cu_k[B];
  /* packed [total, H, D] (q, out) and [total, Hkv, D] (k, v) */
  const size_t nq = (size_t)((tq > 0 ? tq : 1) * H * D), nk = (size_t)((tk > 0 ? tk : 1) * Hkv * D);
  const size_t nv = (size_t)((tk > 0 ? tk : 1) * Hkv * Dv), no = (size_t)((tq > 0 ? tq : 1) * H * Dv);
  float* q = tester_alloc(nq * sizeof(float));
  float* k = tester_alloc(nk * sizeof(float));
  float* v = tester_alloc(nv * sizeof(float));
  float* out = tester_alloc((no + 8) * sizeof(float)); /* + 8 past the end: must stay poison */
  float* out1 = tester_alloc((no + 8) * sizeof(float));
  float* lse = tester_alloc(((size_t)(tq * H) + 8) * sizeof(float));
  float* lse1 = tester_alloc(((size_t)(tq * H) + 8) * sizeof(float));
  float slopes[64], sinks[64];
  tester_fill(t, q, nq);
  tester_fill(t, k, nk);
  tester_fill(t, v, nv);
  for (int64_t h = 0; h < H; h++) {
    slopes[h] = exp2f(-8.0f * (float)(h + 1) / (float)H);
    sinks[h] = (float)tester_uniform(t, -1.0, 1.0);
  }

  mha_attention_desc d;
  mha_attention_desc_init(&d, B, H, Hkv, Tq, Tk, D, Dv);
  d.q = (mha_strides){0, D, H * D};
  d.k = (mha_strides){0, D, Hkv * D};
  d.v = (mha_strides){0, Dv, Hkv * Dv};
  d.out = (mha_strides){0, Dv, H * Dv};
  d.isa = isa;
  set_variants(c, &d.mask, slopes, sinks);

  for (int align = 0; align < 3; align++) {
    /* 0: bottom-right, 1: top-left, 2: an offset; each against every
     * sequence called alone, bitwise */
    d.mask.align = align == 0 ? MHA_ALIGN_BOTTOM_RIGHT : align == 1 ? MHA_ALIGN_TOP_LEFT : MHA_ALIGN_OFFSET;
    d.mask.offset = align == 2 ? 2 : 0;
    if (align > 0 && !c->causal && !c->window && !c->alibi) continue; /* alignment changes nothing */
    for (int threads = 1; threads <= 3; threads++) {
      tester_context(t, "%s, isa %s, align %d, %d threads", c->name, mha_isa_name(isa), align, threads);
      d.num_threads = threads;
      d.lse = lse;
      tester_poison(out, no + 8);
      tester_poison(lse, (size_t)(tq * H) + 8);
      if (!check_ok(t, mha_attention_varlen_f32(&d, cu_q, cu_k, q, k, v, out), "varlen")) continue;
      tester_check(t, tester_is_poison(out[(size_t)(tq * H * Dv)]) && tester_is_poison(lse[tq * H]),
                   "wrote past total_q");
      size_t bad = 0;
      int all_written = 1;
      for (size_t i = 0; i < (size_t)(tq * H * Dv); i++) all_written &= !tester_is_poison(out[i]);
      for (size_t i = 0; i < (size_t)(tq * H); i++) all_written &= !tester_is_poison(lse[i]);
      tester_check(t, all_written, "a row of out or lse was not written");
      if (threads == 1) {
        memcpy(out1, out, (no + 8) * sizeof(float));
        memcpy(lse1, lse, ((size_t)(tq * H) + 8) * sizeof(float));
      } else {
        tester_check(t, same_bits(out, out1, no, &bad) && same_bits(lse, lse1, (size_t)(tq * H), &bad),
                     "bits differ from 1 thread at %zu", bad);
        continue;
      }

      /* the reference of each sequence */
      for (int64_t b = 0; b < B; b++) {
        const int64_t lq = cu_q[b + 1] - cu_q[b], lk = kv_len[b];
        if (lq == 0) continue;
        {
          /* the sequence alone, its own lengths, the same alignment */
          mha_attention_desc sd = d;
          sd.B = 1;
          sd.Tq = lq;
          sd.Tk = lk > 0 ? lk : 1;
          sd.num_threads = 1;
          sd.workspace = NULL;
          float* so = tester_alloc((size_t)(lq * H * Dv) * sizeof(float));
          float* sl = tester_alloc((size_t)(lq * H) * sizeof(float));
          sd.lse = sl;
          sd.q.batch = sd.k.batch = sd.v.batch = sd.out.batch = 0;
          const int32_t zero = 0;
          if (lk == 0) sd.mask.kv_len = &zero; /* no keys: a one-key view, all hidden */
          if (check_ok(t, mha_attention_f32(&sd, q + cu_q[b] * H * D, k + cu_k[b] * Hkv * D,
                                            v + cu_k[b] * Hkv * Dv, so, NULL), "alone")) {
            /* out: the packed rows [cu_q[b], cu_q[b+1]) × H, so's layout;
             * lse: packed [total_q, H], the call's [1, H, lq] */
            int ok = same_bits(out + cu_q[b] * H * Dv, so, (size_t)(lq * H * Dv), &bad);
            for (int64_t i = 0; i < lq && ok; i++) {
              for (int64_t h = 0; h < H && ok; h++) ok = same_bits(lse + (cu_q[b] + i) * H + h, sl + h * lq + i, 1, &bad);
            }
            tester_check(t, ok, "sequence %lld (len_q %lld, len_k %lld) differs from the same sequence alone "
                         "at element %zu", (long long)b, (long long)lq, (long long)lk, bad);
          }
          free(so);
          free(sl);
        }
      }
    }
  }
  free(cu_q);
  free(cu_k);
  free(kv_len);
  free(q);
  free(k);
  free(v);
  free(out);
  free(out1);
  free(lse);
  free(lse1);
}

static void check_errors(tester* t) {
  tester_context(t, "varlen errors");
  float q[4 * 2 * 8] = {0}, k[4 * 2 * 8] = {0}, v[4 * 2 * 8] = {0}, out[4 * 2 * 8];
  mha_attention_desc d;
  mha_attention_desc_init(&d, 2, 2, 2, 3, 3, 8, 8);
  d.q = d.k = d.v = d.out = (mha_strides){0, 8, 16};
  const int32_t good[3] = {0, 2, 4}, not0[3] = {1, 2, 4}, down[3] = {0, 3, 2}, too_long[3] = {0, 4, 4};
  check_ok(t, mha_attention_varlen_f32(&d, good, good, q, k, v, out), "good offsets");
  tester_stale_error();
  tester_check_failure(t, "cu[0] != 0", mha_attention_varlen_f32(&d, not0, good, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "cu_seqlens_q");
  tester_stale_error();
  tester_check_failure(t, "decreasing", mha_attention_varlen_f32(&d, good, down, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "cu_seqlens_k");
  tester_stale_error();
  tester_check_failure(t, "longer than Tq", mha_attention_varlen_f32(&d, too_long, good, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "Tq");
  tester_stale_error();
  tester_check_failure(t, "NULL offsets", mha_attention_varlen_f32(&d, NULL, good, q, k, v, out),
                       MHA_STATUS_NULL_POINTER, "cu_seqlens_q");
  const int32_t lens[2] = {1, 1};
  d.mask.kv_len = lens;
  tester_stale_error();
  tester_check_failure(t, "kv_len", mha_attention_varlen_f32(&d, good, good, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "kv_len");
  d.mask.kv_len = NULL;
  d.out = (mha_strides){0, 8, 8}; /* heads overlap rows */
  tester_stale_error();
  tester_check_failure(t, "out not injective", mha_attention_varlen_f32(&d, good, good, q, k, v, out),
                       MHA_STATUS_INVALID_STRIDE, "out");
  d.out = (mha_strides){0, 8, 16};
  {
    /* no query rows: q, out and lse address nothing, so buffers that would
     * overlap a row's span do not overlap (the call was refused: "out
     * overlaps q"); nothing is written */
    const int32_t none[3] = {0, 0, 0};
    float buf[20];
    for (int i = 0; i < 20; i++) buf[i] = (float)i;
    mha_attention_desc e = d;
    e.lse = buf + 2;
    check_ok(t, mha_attention_varlen_f32(&e, none, good, buf, k, v, buf + 1), "no query rows, buffers packed close");
    check_ok(t, mha_attention_varlen(&e, MHA_DTYPE_BF16, none, good, buf, k, v, buf + 1), "the same in bf16");
    int same = 1;
    for (int i = 0; i < 20; i++) same &= buf[i] == (float)i;
    tester_check(t, same, "no query rows: nothing written");
    /* no key rows: k and v address nothing, out may lie where a row of k
     * would; every row outputs zeros */
    float kbuf[4 + 4 * 16];
    for (int i = 0; i < 4 + 4 * 16; i++) kbuf[i] = NAN;
    check_ok(t, mha_attention_varlen_f32(&d, good, none, q, kbuf, kbuf, kbuf + 4), "no key rows, out over k's span");
    int zeros = 1;
    for (int i = 4; i < 4 + 4 * 16; i++) zeros &= kbuf[i] == 0.0f; /* 4 rows × 2 heads × 8 */
    tester_check(t, zeros, "no key rows: zeros out");
    tester_stale_error();
    tester_check_failure(t, "out over q with rows", mha_attention_varlen_f32(&d, good, good, q, k, v, q + 1),
                         MHA_STATUS_INVALID_STRIDE, "overlaps");
  }
  size_t bytes = 0;
  check_ok(t, mha_attention_varlen_workspace_size(&d, good, good, &bytes), "workspace size");
  void* ws = tester_alloc(bytes);
  d.workspace = ws;
  d.workspace_size = bytes;
  check_ok(t, mha_attention_varlen_f32(&d, good, good, q, k, v, out), "with a workspace");
  d.workspace_size = 16;
  tester_stale_error();
  tester_check_failure(t, "small workspace", mha_attention_varlen_f32(&d, good, good, q, k, v, out),
                       MHA_STATUS_INVALID_ARGUMENT, "workspace_size");
  free(ws);
}

int main(void) {
  tester t;
  tester_init(&t, "varlen-test");
  const vl_case cases[] = {
      {4, 4, 4, 33, 70, 16, 16, 0, 0, 0, 0, 0, "plain, prefill shapes"},
      {5, 6, 2, 65, 65, 12, 9, 1, 0, 0, 0, 0, "causal GQA"},
      {4, 4, 2, 40, 130, 8, 8, 1, 21, 1, 1, 1, "causal window + ALiBi + soft-cap + sinks"},
      {3, 8, 2, 1, 600, 16, 16, 1, 0, 0, 0, 1, "decode (key ranges merged), sinks"},
      {4, 4, 1, 7, 300, 8, 5, 0, 50, 1, 0, 0, "non-causal window, MQA, ALiBi"},
  };
  const isa_list isas = tester_available_isas(&t);
  for (int i = 0; i < isas.count; i++) {
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_case(&t, &cases[c], isas.isa[i]);
  }
  check_errors(&t);
  return tester_finish(&t);
}
