/*
 * The layer's forward (mha_layer_forward): the call's shapes and workspace,
 * its overlap rule, then per chunk of batch entries the projections (one
 * fused GEMM for self-attention), the core on head views of them, and the
 * output projection; the K/V cache output. The plan is made by
 * layer-create.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/layer-plan.h"

void mha_layer_args_init_sized(mha_layer_args* caller, size_t size) {
  mha_layer_args a;
  memset(&a, 0, sizeof a);
  mha_struct_init(caller, size, &a, sizeof a);
}

/* A caller's args and its cache (if any) read by the growth rule into *a
 * and *cache, a->kv_cache then pointing at *cache. */
static mha_status mha_layer_args_take(const char* fn, const mha_layer_args* caller, mha_layer_args* a,
                                      mha_kv_cache* cache) {
  mha_status st = mha_layer_args_read(fn, caller, a);
  if (st != MHA_STATUS_SUCCESS || a->kv_cache == NULL) return st;
  if ((st = mha_kv_cache_read(fn, a->kv_cache, cache)) == MHA_STATUS_SUCCESS) a->kv_cache = cache;
  return st;
}

static mha_status mha_layer_call_make(const char* fn, const mha_layer* L, const mha_layer_args* a,
                                      mha_layer_call* c) {
  c->self = a->x_k == NULL;
  c->dt = a->dtype;
  if (c->dt != MHA_DTYPE_F32 && c->dt != MHA_DTYPE_F16 && c->dt != MHA_DTYPE_BF16) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: args->dtype = %d, must be MHA_DTYPE_F32, F16 or BF16", fn,
                     (int)c->dt);
  }
  c->esz = mha_dtype_size(c->dt);
  c->bf16 = L->bf16_form && c->dt == MHA_DTYPE_BF16;
  if (c->self && a->x_v != NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: x_v given without x_k", fn);
  }
  if (c->self && L->d_kv != L->d_model) {
    return mha_error(MHA_STATUS_INVALID_SHAPE, "%s: self-attention needs d_kv == d_model (%lld != %lld)", fn,
                     (long long)L->d_kv, (long long)L->d_model);
  }
  const int64_t B = a->B, Tq = a->Tq, Tk = c->self ? a->Tq : a->Tk;
  if (B < 1 || Tq < 1 || Tk < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: B = %lld, Tq = %lld, Tk = %lld; each must be >= 1", fn,
                     (long long)B, (long long)Tq, (long long)Tk);
  }
  const int64_t H = L->H, Hkv = L->Hkv, D = L->D, Dv = L->Dv;
  c->B = B;
  c->Tq = Tq;
  c->Tk = Tk;
  c->ldq = c->self ? L->nq + L->nk + L->nv : L->nq;
  c->ldkv = L->nk + L->nv;
  /* the caller's arrays, whole: x_q, x_k/x_v, out */
  int64_t t, entry;
  if (!mha_mul_i64(B, Tq, &t) || !mha_mul_i64(t, L->d_model > L->d_kv ? L->d_model : L->d_kv, &t) ||
      !mha_mul_i64(B, Tk, &t) || !mha_mul_i64(t, L->d_kv, &t) ||
      !mha_mul_i64(B, Tq, &t) || !mha_mul_i64(t, H * Dv > L->d_model ? H * Dv : L->d_model, &t) ||
      !mha_mul_i64(t, (int64_t)sizeof(float), &t) || (uint64_t)t > (uint64_t)SIZE_MAX / 2) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: B·T times the layer widths overflows", fn);
  }
  /* floats of one batch entry's projections and concatenated heads */
  int64_t eq, ekv, ecat;
  if (!mha_mul_i64(Tq, c->ldq, &eq) || !mha_mul_i64(Tk, c->self ? 0 : c->ldkv, &ekv) ||
      !mha_mul_i64(Tq, L->has_wo ? H * Dv : 0, &ecat) || !mha_add_i64(eq, ekv, &entry) ||
      !mha_add_i64(entry, ecat, &entry) || !mha_mul_i64(entry, (int64_t)sizeof(float), &t) ||
      (uint64_t)t > (uint64_t)SIZE_MAX / 2) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: T times the layer widths overflows", fn);
  }
  c->chunk = (int64_t)MHA_LAYER_CHUNK_BYTES / t;
  if (c->chunk < 1) c->chunk = 1;
  if (c->chunk > B) c->chunk = B;
  c->n_q = c->chunk * eq;
  c->n_kv = c->chunk * ekv;
  c->n_cat = c->chunk * ecat;
  c->n_x = c->n_out = 0;
  c->n_p32 = c->n_q + c->n_kv;
  if (c->dt != MHA_DTYPE_F32) {
    /* one chunk's inputs widened, and its fp32 output before the rounding
     * (products checked above: each is at most the caller's arrays) */
    const int64_t width = mha_layer_output_width(L);
    c->n_out = c->chunk * Tq * width;
    if (!c->bf16) {
      c->n_x = c->chunk * (Tq * L->d_model + (c->self ? 0 : Tk * L->d_kv * (a->x_v != NULL ? 2 : 1)));
    } else {
      /* the BF16 form (layer-bf16.c) reads the inputs as they are: its n_x
       * holds the bf16 Q, K, V (as the fp32 projections' layout) and A
       * packed for the largest of the GEMMs (aligned); the bf16
       * concatenation takes half of the fp32 one's part */
      const int64_t rq = c->chunk * Tq, rk = c->chunk * Tk;
      size_t np = mha_gemm_bf16_pack_elems(rq, L->d_model);
      if (!c->self && mha_gemm_bf16_pack_elems(rk, L->d_kv) > np) np = mha_gemm_bf16_pack_elems(rk, L->d_kv);
      if (L->has_wo && mha_gemm_bf16_pack_elems(rq, H * Dv) > np) np = mha_gemm_bf16_pack_elems(rq, H * Dv);
      c->n_x = (c->n_q + c->n_kv + 1) / 2 + ((int64_t)np + 1) / 2 + 16;
      c->n_out = 0;
      if (a->kv_cache == NULL) c->n_p32 = 0;
    }
  }

  /* the masks and weights are checked over the whole batch, the workspace
   * sized for one chunk */
  mha_attention_desc* cd = &c->cd;
  mha_attention_desc_init(cd, B, H, Hkv, Tq, Tk, D, Dv);
  cd->q = (mha_strides){Tq * c->ldq, D, c->ldq};
  cd->k = c->self ? (mha_strides){Tq * c->ldq, D, c->ldq} : (mha_strides){Tk * c->ldkv, D, c->ldkv};
  cd->v = c->self ? (mha_strides){Tq * c->ldq, Dv, c->ldq} : (mha_strides){Tk * c->ldkv, Dv, c->ldkv};
  cd->out = mha_strides_bthd(H, Tq, Dv);
  cd->scale = a->scale;
  cd->mask = a->mask;
  cd->weights_mode = a->weights_mode;
  cd->weights_heads = a->weights_heads;
  cd->weights_nheads = a->weights_nheads;
  cd->num_threads = a->num_threads;
  cd->threadpool = a->threadpool;
  cd->trace = a->trace;
  static const float any = 0.0f;
  mha_status st = mha_attention_validate(fn, cd, &any, &any, &any, &any, a->weights != NULL);
  if (st != MHA_STATUS_SUCCESS) return st;
  c->nthreads = mha_resolve_workers(a->num_threads, a->threadpool);
  /* the core's workspace for a full chunk and for the short last one: the
   * larger (it grows with B, but a buffer overrun must not hang on that) */
  size_t n_last = 0;
  cd->B = B % c->chunk;
  if (cd->B != 0) {
    st = mha_attention_workspace_floats(L->kr, cd, a->weights != NULL, c->nthreads, &n_last);
    if (st != MHA_STATUS_SUCCESS) return st;
  }
  cd->B = c->chunk;
  st = mha_attention_workspace_floats(L->kr, cd, a->weights != NULL, c->nthreads, &c->n_attn);
  if (st != MHA_STATUS_SUCCESS) return st;
  if (n_last > c->n_attn) c->n_attn = n_last;
  /* the core's part starts 64-byte aligned */
  c->total = (size_t)(c->n_p32 + c->n_cat + c->n_x + c->n_out) + 16 + c->n_attn;
  if (c->total > (SIZE_MAX - 128) / sizeof(float)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: workspace size overflows", fn);
  }
  return MHA_STATUS_SUCCESS;
}


mha_status mha_layer_workspace_size(const mha_layer* L, const mha_layer_args* caller, size_t* bytes) {
  static const char fn[] = "mha_layer_workspace_size";
  if (L == NULL || caller == NULL || bytes == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn,
                     L == NULL ? "layer" : caller == NULL ? "args" : "bytes");
  }
  mha_layer_args read;
  mha_kv_cache cache;
  mha_status st = mha_layer_args_take(fn, caller, &read, &cache);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_layer_args* a = &read;
  mha_layer_call c;
  st = mha_layer_call_make(fn, L, a, &c);
  if (st != MHA_STATUS_SUCCESS) return st;
  *bytes = c.total * sizeof(float) + 64;
  return MHA_STATUS_SUCCESS;
}

/* Batch entries [b0, b0 + nb) of a forward, in the call's workspace. */
static mha_status mha_layer_chunk(const mha_layer* L, const mha_layer_args* a, const mha_layer_call* c,
                                  int64_t b0, int64_t nb, float* buf, mha_tracer* tracer) {
  if (c->bf16) return mha_layer_chunk_bf16(L, a, c, b0, nb, buf, tracer);
  const mha_kernels* kr = L->kr;
  const mha_team team = {a->threadpool, c->nthreads, tracer};
  const int64_t rows_q = nb * c->Tq, rows_k = nb * c->Tk, ldq = c->ldq, ldkv = c->ldkv;
  const int64_t width = mha_layer_output_width(L);
  /* the chunk's rows of the caller's arrays (elements of c->dt) */
  const char* x_q = (const char*)a->x_q + (size_t)(b0 * c->Tq * L->d_model) * c->esz;
  const char* x_k = a->x_k ? (const char*)a->x_k + (size_t)(b0 * c->Tk * L->d_kv) * c->esz : NULL;
  const char* x_v = a->x_v ? (const char*)a->x_v + (size_t)(b0 * c->Tk * L->d_kv) * c->esz : NULL;
  char* out16 = (char*)a->out + (size_t)(b0 * c->Tq * width) * c->esz;
  float* out = (float*)out16;
  float* qbuf = buf;
  float* kvbuf = c->self ? qbuf + L->nq : buf + c->n_q;
  if (c->dt != MHA_DTYPE_F32) {
    /* 16-bit: the inputs widened (exactly) into the workspace, the output
     * written there in fp32 and rounded once at the end */
    float* xw = buf + c->n_q + c->n_kv + c->n_cat;
    const size_t nq_in = (size_t)(rows_q * L->d_model), nk_in = (size_t)(rows_k * L->d_kv);
    mha_widen_row(kr, c->dt, x_q, 1.0f, nq_in, xw);
    x_q = (const char*)xw;
    xw += nq_in;
    if (x_k != NULL) {
      mha_widen_row(kr, c->dt, x_k, 1.0f, nk_in, xw);
      x_k = (const char*)xw;
      xw += nk_in;
    }
    if (x_v != NULL) {
      mha_widen_row(kr, c->dt, x_v, 1.0f, nk_in, xw);
      x_v = (const char*)xw;
    }
    out = buf + c->n_q + c->n_kv + c->n_cat + c->n_x;
  }
  float* cat = L->has_wo ? buf + c->n_q + c->n_kv : out;
  float* attn_ws = mha_align64(buf + c->n_q + c->n_kv + c->n_cat + c->n_x + c->n_out);
  const float* bq = L->bqkv;
  const float* bkv = L->bqkv ? L->bqkv + L->nq : NULL;

  if (c->self) {
    mha_trace_gemm(tracer, 0);
    mha_gemm_f32(kr, rows_q, (const float*)x_q, L->d_model, &L->wqkv, bq, qbuf, ldq, team);
  } else {
    mha_trace_gemm(tracer, 0);
    mha_gemm_f32(kr, rows_q, (const float*)x_q, L->d_model, &L->wq, bq, qbuf, ldq, team);
    mha_trace_gemm(tracer, 1);
    if (x_v == NULL) {
      mha_gemm_f32(kr, rows_k, (const float*)x_k, L->d_kv, &L->wkv, bkv, kvbuf, ldkv, team);
    } else {
      mha_gemm_f32(kr, rows_k, (const float*)x_k, L->d_kv, &L->wk, bkv, kvbuf, ldkv, team);
      mha_trace_gemm(tracer, 2);
      mha_gemm_f32(kr, rows_k, (const float*)x_v, L->d_kv, &L->wv, bkv ? bkv + L->nk : NULL, kvbuf + L->nk,
                   ldkv, team);
    }
  }
  /* the core's view of this chunk: its batch entries of the masks and weights */
  mha_attention_desc cd = c->cd;
  cd.B = nb;
  if (cd.mask.kv_len != NULL) cd.mask.kv_len += b0;
  if (cd.mask.additive != NULL) cd.mask.additive += b0 * cd.mask.additive_strides.batch;
  float* weights = a->weights ? a->weights + b0 * mha_weights_slots(&cd) * c->Tq * c->Tk : NULL;
  mha_status st = mha_attention_run(kr, &cd, qbuf, kvbuf, kvbuf + L->nk, NULL, MHA_DTYPE_F32, cat, weights, team, attn_ws);
  if (st == MHA_STATUS_SUCCESS && a->kv_cache != NULL) {
    /* the chunk's K and V rows, as the core read them (cd.k, cd.v) */
    mha_kv_cache_store(kr, a->kv_cache, b0, nb, L->Hkv, c->Tk, L->D, L->Dv, a->kv_pos, kvbuf, &cd.k, kvbuf + L->nk,
                       &cd.v);
  }
  if (st == MHA_STATUS_SUCCESS && L->has_wo) {
    mha_trace_gemm(tracer, 3);
    mha_gemm_f32(kr, rows_q, cat, L->H * L->Dv, &L->wo, L->bo, out, L->d_model, team);
  }
  if (st == MHA_STATUS_SUCCESS && c->dt != MHA_DTYPE_F32) {
    mha_narrow_row(kr, c->dt, (size_t)(rows_q * width), out, out16); /* each value rounded once */
  }
  return st;
}

/* out and weights must not share memory with each other or with what the
 * call reads (x_q, x_k, x_v, the masks, the workspace). All are contiguous
 * except the additive mask, whose span was checked with the core's desc. */
static mha_status mha_layer_check_overlap(const char* fn, const mha_layer* L, const mha_layer_args* a,
                                          const mha_layer_call* c) {
  /* the products were checked by mha_layer_call_make and mha_attention_validate */
  const size_t f = sizeof(float), B = (size_t)c->B, Tq = (size_t)c->Tq, Tk = (size_t)c->Tk, e = c->esz;
  const size_t nout = B * Tq * (size_t)mha_layer_output_width(L) * e;
  const int64_t slots = a->weights_mode == MHA_WEIGHTS_HEAD_MEAN ? 1
                        : a->weights_mode == MHA_WEIGHTS_SELECTED ? a->weights_nheads : L->H;
  const size_t nw = a->weights ? B * (size_t)slots * Tq * Tk * f : 0;
  size_t nadd = 0;
  mha_status st;
  if (a->mask.additive != NULL &&
      (st = mha_view_span(fn, "mask.additive", c->B, L->H, c->Tq, c->Tk, &a->mask.additive_strides,
                          &nadd)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  const mha_span in[] = {
      {"x_q", a->x_q, B * Tq * (size_t)L->d_model * e},
      {"x_k", a->x_k, B * Tk * (size_t)L->d_kv * e},
      {"x_v", a->x_v, B * Tk * (size_t)L->d_kv * e},
      {"mask.additive", a->mask.additive, nadd},
      {"mask.kv_len", a->mask.kv_len, a->mask.kv_len ? B * sizeof(int32_t) : 0},
      {"mask.alibi_slopes", a->mask.alibi_slopes, (size_t)L->H * f},
      {"mask.sinks", a->mask.sinks, (size_t)L->H * f},
      {"weights_heads", a->weights_heads,
       a->weights != NULL && a->weights_mode == MHA_WEIGHTS_SELECTED ? (size_t)a->weights_nheads * sizeof(int32_t) : 0},
      {"workspace", a->workspace, a->workspace ? a->workspace_size : 0}};
  st = mha_check_outputs_disjoint(fn, (mha_span){"out", a->out, nout}, (mha_span){"weights", a->weights, nw},
                                  in, sizeof in / sizeof in[0]);
  if (st != MHA_STATUS_SUCCESS || a->kv_cache == NULL) return st;
  /* the cache is an output too: its checks (positions, table slots), then
   * disjoint from everything else */
  size_t kb, vb;
  if ((st = mha_kv_cache_check(fn, a->kv_cache, c->B, L->Hkv, L->D, L->Dv, a->kv_pos, NULL, c->Tk, &kb,
                               &vb)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  const size_t ntable = a->kv_cache->block_size != 0 ? B * (size_t)a->kv_cache->max_blocks * sizeof(int32_t) : 0;
  const mha_span more[] = {in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8],
                           {"out", a->out, nout}, {"weights", a->weights, nw},
                           {"kv_pos", a->kv_pos, a->kv_pos ? B * sizeof(int32_t) : 0},
                           {"kv_cache->block_table", a->kv_cache->block_table, ntable}};
  const size_t ns = mha_kv_cache_scale_bytes(a->kv_cache, c->B, L->Hkv);
  const mha_span outs[] = {{"kv_cache->k", a->kv_cache->k, kb},
                           {"kv_cache->v", a->kv_cache->v, vb},
                           {"kv_cache->k_scales", a->kv_cache->k_scales, ns},
                           {"kv_cache->v_scales", a->kv_cache->v_scales, ns}};
  return mha_check_spans_disjoint(fn, outs, 4, more, sizeof more / sizeof more[0]);
}

mha_status mha_layer_forward(const mha_layer* L, const mha_layer_args* caller) {
  static const char fn[] = "mha_layer_forward";
  if (L == NULL || caller == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, L == NULL ? "layer" : "args");
  }
  mha_layer_args read;
  mha_kv_cache cache;
  mha_status st = mha_layer_args_take(fn, caller, &read, &cache);
  if (st != MHA_STATUS_SUCCESS) return st;
  const mha_layer_args* a = &read;
  if (a->x_q == NULL || a->out == NULL) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, a->x_q == NULL ? "x_q" : "out");
  }
  mha_layer_call c;
  st = mha_layer_call_make(fn, L, a, &c);
  if (st != MHA_STATUS_SUCCESS) return st;
  if ((st = mha_layer_check_overlap(fn, L, a, &c)) != MHA_STATUS_SUCCESS) return st;

  /* everything is allocated (or taken from the caller's workspace) before
   * anything is written; the core, given its workspace, cannot fail */
  float* buf = mha_workspace_take(a->workspace, a->workspace_size, c.total);
  if (a->workspace != NULL && buf == NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: workspace_size %zu is smaller than mha_layer_workspace_size() (%zu)", fn,
                     a->workspace_size, c.total * sizeof(float) + 64);
  }
  if ((st = mha_attention_check_heads(fn, &c.cd)) != MHA_STATUS_SUCCESS) return st;
  const int owned = buf == NULL;
  if (owned) {
    buf = aligned_alloc(64, (c.total * sizeof(float) + 63) & ~(size_t)63);
    if (buf == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace", fn,
                       c.total * sizeof(float));
    }
  }
  mha_tracer tracer;
  mha_tracer* tr = mha_trace_begin(&tracer, a->trace);
  for (int64_t b0 = 0; b0 < c.B && st == MHA_STATUS_SUCCESS; b0 += c.chunk) {
    if (tr != NULL) tr->batch0 = b0; /* the chunk's entries in the trace */
    st = mha_layer_chunk(L, a, &c, b0, c.B - b0 < c.chunk ? c.B - b0 : c.chunk, buf, tr);
  }
  mha_trace_end(tr);
  if (owned) free(buf);
  return st;
}

mha_status mha_layer_forward_once(const mha_layer_desc* desc, const mha_layer_args* args) {
  mha_layer* L = NULL;
  mha_status st = mha_layer_create(desc, &L);
  if (st != MHA_STATUS_SUCCESS) return st;
  st = mha_layer_forward(L, args);
  mha_layer_destroy(L);
  return st;
}
