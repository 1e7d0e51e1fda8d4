/*
 * Packed variable-length batches (mha_attention_varlen_f32, and over a K/V
 * cache mha_attention_varlen_kv_f32 in varlen-kv.c): the checks of the
 * lengths and the packed views, and the schedule: one plan per sequence, the
 * plan of that sequence called alone (mha_attention_varlen_run), so time and
 * workspace follow the real rows and keys, and desc's Tq and Tk are bounds
 * only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* Checks desc and the lengths, and fills *flat: the packed queries as one
 * batch entry of total_q rows (batch strides 0), the shape the views, masks
 * and overlaps are checked on; its keys are the total_k packed rows, or over
 * a cache Tk (the cache's own checks bound what is read). */
static mha_status mha_varlen_check(const char* fn, const mha_attention_desc* d, const mha_varlen_batch* vb,
                                   mha_attention_desc* flat) {
  if (d == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: desc is NULL", fn);
  const char* kname = vb->used_k != NULL || vb->cache != NULL ? "seqused_k" : "cu_seqlens_k";
  if (vb->cu_q == NULL || (vb->cu_k == NULL && vb->used_k == NULL)) {
    return mha_error(MHA_STATUS_NULL_POINTER, "%s: %s is NULL", fn, vb->cu_q == NULL ? "cu_seqlens_q" : kname);
  }
  if (d->B < 1 || d->Tq < 1 || d->Tk < 1) {
    return mha_error(MHA_STATUS_INVALID_SIZE, "%s: B, Tq and Tk must be >= 1 (B = %lld, Tq = %lld, Tk = %lld)",
                     fn, (long long)d->B, (long long)d->Tq, (long long)d->Tk);
  }
  if ((uint64_t)d->B >= (uint64_t)(SIZE_MAX / sizeof(int32_t))) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: cu_seqlens [B + 1] overflows (B = %lld)", fn, (long long)d->B);
  }
  if (d->mask.kv_len != NULL || d->mask.additive != NULL) {
    return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                     "%s: mask.%s must be NULL (the lengths come from %s; no additive mask)", fn,
                     d->mask.kv_len != NULL ? "kv_len" : "additive", kname);
  }
  /* offsets: start at 0, each length in [0, bound]; per-sequence counts
   * (used_k): each in [0, Tk] */
  const struct { const char* name; const int32_t* cu; int64_t max; } offs[] = {
      {"cu_seqlens_q", vb->cu_q, d->Tq}, {"cu_seqlens_k", vb->cu_k, d->Tk}};
  for (int w = 0; w < 2 && offs[w].cu != NULL; w++) {
    if (offs[w].cu[0] != 0) {
      return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: %s[0] = %d, must be 0", fn, offs[w].name,
                       (int)offs[w].cu[0]);
    }
    for (int64_t b = 0; b < d->B; b++) {
      const int64_t len = (int64_t)offs[w].cu[b + 1] - offs[w].cu[b];
      if (len < 0 || len > offs[w].max) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT,
                         "%s: %s gives sequence %lld the length %lld, outside [0, %s = %lld]", fn,
                         offs[w].name, (long long)b, (long long)len, w == 0 ? "Tq" : "Tk",
                         (long long)offs[w].max);
      }
    }
  }
  if (vb->used_k != NULL) {
    for (int64_t b = 0; b < d->B; b++) {
      if (vb->used_k[b] < 0 || vb->used_k[b] > d->Tk) {
        return mha_error(MHA_STATUS_INVALID_ARGUMENT, "%s: seqused_k[%lld] = %d, outside [0, Tk = %lld]", fn,
                         (long long)b, (int)vb->used_k[b], (long long)d->Tk);
      }
    }
  }
  *flat = *d;
  flat->B = 1;
  flat->Tq = vb->cu_q[d->B] > 0 ? vb->cu_q[d->B] : 1;
  if (vb->cu_k != NULL) flat->Tk = vb->cu_k[d->B] > 0 ? vb->cu_k[d->B] : 1;
  flat->q.batch = flat->k.batch = flat->v.batch = flat->out.batch = 0;
  /* the flat call checks the views over the packed rows, the variants'
   * fields, the sizes and H % Hkv; lse is [total_q, H] there too */
  return MHA_STATUS_SUCCESS;
}

mha_status mha_varlen_read(const char* fn, const mha_attention_desc* caller, const mha_varlen_batch* vb,
                           mha_attention_desc* d, mha_attention_desc* flat) {
  mha_status st = mha_desc_read(fn, caller, d);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_varlen_check(fn, d, vb, flat);
}

/* mha_attention_varlen_f32 and mha_attention_varlen: q, k, v and out hold
 * elements of dtype. 16-bit K and V are read as a contiguous cache over the
 * packed views (each sequence's from its first key row), as mha_attention
 * reads them. */
static mha_status mha_varlen_call(const char* fn, const mha_attention_desc* caller, mha_dtype dtype,
                                  const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k, const void* q,
                                  const void* k, const void* v, void* out) {
  mha_kv_cache cache;
  mha_varlen_batch vb = {cu_seqlens_q, cu_seqlens_k, NULL, NULL, fn, dtype};
  mha_attention_desc d, flat;
  mha_status st = mha_varlen_read(fn, caller, &vb, &d, &flat);
  if (st != MHA_STATUS_SUCCESS || (st = mha_rotary_refuse(fn, &d)) != MHA_STATUS_SUCCESS) return st;
  const mha_attention_desc* desc = &d;
  /* the offsets are inputs like the rest: no output may overwrite them */
  const size_t ncu = (size_t)(desc->B + 1) * sizeof(int32_t);
  const mha_span offsets[] = {{"cu_seqlens_q", cu_seqlens_q, ncu}, {"cu_seqlens_k", cu_seqlens_k, ncu}};
  /* no query (key) rows: q, out and lse (k and v) address nothing — the flat
   * view's one row is a stand-in for the checks of the strides — so they
   * overlap nothing */
  const int no_q = cu_seqlens_q[desc->B] == 0, no_k = cu_seqlens_k[desc->B] == 0;
  mha_attention_desc spans = flat;
  if (no_q) spans.lse = NULL;
  if ((st = mha_attention_validate(fn, &flat, q, k, v, out, 0)) != MHA_STATUS_SUCCESS ||
      (st = mha_attention_check_overlap(fn, &spans, mha_dtype_size(dtype), no_q ? NULL : q, no_k ? NULL : k,
                                        no_k ? NULL : v, no_q ? NULL : out, NULL, offsets, 2)) != MHA_STATUS_SUCCESS) {
    return st;
  }
  if (dtype != MHA_DTYPE_F32) {
    cache = mha_kv_cache_over_views(dtype, k, v, d.k, d.v, flat.Tk);
    vb.cache = &cache;
  }
  mha_call c;
  st = mha_call_plan(fn, "mha_attention_varlen_workspace_size", desc, 0, &vb, &c);
  if (st != MHA_STATUS_SUCCESS || (st = mha_attention_check_heads(fn, desc)) != MHA_STATUS_SUCCESS) return st;
  const mha_team team = mha_call_team(&c, desc);
  st = mha_attention_varlen_run(c.kr, desc, &vb, q, k, v, out, team, c.ws);
  mha_trace_end(team.tracer);
  return st;
}

mha_status mha_attention_varlen_f32(const mha_attention_desc* desc, const int32_t* cu_seqlens_q,
                                    const int32_t* cu_seqlens_k, const float* q, const float* k,
                                    const float* v, float* out) {
  return mha_varlen_call("mha_attention_varlen_f32", desc, MHA_DTYPE_F32, cu_seqlens_q, cu_seqlens_k, q, k, v,
                         out);
}

mha_status mha_attention_varlen(const mha_attention_desc* desc, mha_dtype dtype, const int32_t* cu_seqlens_q,
                                const int32_t* cu_seqlens_k, const void* q, const void* k, const void* v,
                                void* out) {
  static const char fn[] = "mha_attention_varlen";
  const mha_status st = mha_io_dtype_check(fn, dtype);
  if (st != MHA_STATUS_SUCCESS) return st;
  return mha_varlen_call(fn, desc, dtype, cu_seqlens_q, cu_seqlens_k, q, k, v, out);
}

mha_status mha_attention_varlen_workspace_size(const mha_attention_desc* caller,
                                               const int32_t* cu_seqlens_q,
                                               const int32_t* cu_seqlens_k, size_t* bytes) {
  static const char fn[] = "mha_attention_varlen_workspace_size";
  if (bytes == NULL) return mha_error(MHA_STATUS_NULL_POINTER, "%s: bytes is NULL", fn);
  const mha_varlen_batch vb = {cu_seqlens_q, cu_seqlens_k, NULL, NULL, fn, MHA_DTYPE_F32};
  mha_attention_desc d, flat;
  mha_status st = mha_varlen_read(fn, caller, &vb, &d, &flat);
  if (st != MHA_STATUS_SUCCESS || (st = mha_rotary_refuse(fn, &d)) != MHA_STATUS_SUCCESS) return st;
  const mha_attention_desc* desc = &d;
  static const float any = 0.0f;
  if ((st = mha_attention_validate(fn, &flat, &any, &any, &any, &any, 0)) != MHA_STATUS_SUCCESS) return st;
  mha_call c;
  if ((st = mha_call_plan(fn, NULL, desc, 0, &vb, &c)) != MHA_STATUS_SUCCESS) return st;
  *bytes = c.floats * sizeof(float) + 64;
  return MHA_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* The schedule: one plan per sequence                                      */
/* ------------------------------------------------------------------------ */

/* Sequence b of a packed batch as a call of its own: B = 1, Tq = len_q, Tk =
 * len_k (a sequence without keys: Tk = 1 with kv_len {0}, so its rows see
 * nothing), its views at its rows of the packed tensors, lse [len_q, H]
 * rows of the packed [total_q, H]. The plan of this desc is the plan of the
 * sequence called alone, so its bits are that call's. */
static const int32_t mha_no_keys = 0;

static int64_t mha_varlen_len_k(const mha_varlen_batch* vb, int64_t b) {
  return vb->cu_k != NULL ? (int64_t)vb->cu_k[b + 1] - vb->cu_k[b] : (int64_t)vb->used_k[b];
}

static void mha_varlen_seq_desc(const mha_attention_desc* d, const mha_varlen_batch* vb, int64_t b,
                                mha_attention_desc* s) {
  *s = *d;
  const int32_t* cu_q = vb->cu_q;
  const int64_t len_k = mha_varlen_len_k(vb, b);
  s->B = 1;
  s->Tq = (int64_t)cu_q[b + 1] - cu_q[b];
  s->Tk = len_k > 0 ? len_k : 1;
  s->mask.kv_len = len_k > 0 ? NULL : &mha_no_keys;
  s->q.batch = s->k.batch = s->v.batch = s->out.batch = 0;
  if (d->lse != NULL) s->lse = d->lse + (int64_t)cu_q[b] * d->H;
  s->workspace = NULL;
  s->workspace_size = 0;
}

/* The items a sequence of len_q rows should aim for: its share of want. */
static int64_t mha_varlen_want(int64_t want, int64_t len_q, int64_t total_q) {
  const double w = (double)want * (double)len_q / (double)total_q;
  return w < 1.0 ? 1 : (int64_t)ceil(w);
}

/* The layout of a varlen call's workspace: per-thread scratch, then every
 * sequence's shared parts, then the plans, their descs, over a cache their
 * views of it, and the unit tables. */
typedef struct mha_varlen_layout {
  int64_t nseq;      /* sequences with query rows */
  size_t scratch;    /* floats per thread: the largest plan's */
  size_t shared;     /* floats of all plans' shared parts */
  int64_t units;     /* work units of all plans */
  double work;       /* their work, for the size rule (parallel.h) */
  int threads;
  size_t meta;       /* floats of plans, descs, cache views and the three [nseq + 1] tables */
  size_t total;
} mha_varlen_layout;

static size_t mha_floats_for_bytes(size_t bytes) { return mha_round16((bytes + sizeof(float) - 1) / sizeof(float)); }

/* A pass over the sequences making each plan (not kept): the sizes. */
static mha_status mha_varlen_layout_of(const mha_kernels* kr, const mha_attention_desc* d,
                                       const mha_varlen_batch* vb, int nthreads, int bf16, mha_varlen_layout* l) {
  memset(l, 0, sizeof *l);
  const int32_t* cu_q = vb->cu_q;
  const int64_t total_q = cu_q[d->B], want = (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads;
  int bad = 0;
  for (int64_t b = 0; b < d->B; b++) {
    if (cu_q[b + 1] == cu_q[b]) continue;
    mha_attention_desc s;
    mha_attn_plan p;
    mha_varlen_seq_desc(d, vb, b, &s);
    mha_status st = mha_attn_plan_make(&p, kr, &s, 0, mha_varlen_want(want, s.Tq, total_q), bf16);
    if (st != MHA_STATUS_SUCCESS) return st;
    l->nseq++;
    if (p.scratch > l->scratch) l->scratch = p.scratch;
    mha_count(&l->shared, p.shared_n, 1, &bad);
    bad |= !mha_add_i64(l->units, p.units, &l->units);
    l->work += p.work;
  }
  l->threads = mha_attn_threads(nthreads, l->units, l->work);
  mha_count(&l->meta, (size_t)l->nseq, mha_floats_for_bytes(sizeof(mha_attn_plan)), &bad);
  mha_count(&l->meta, (size_t)l->nseq, mha_floats_for_bytes(sizeof(mha_attention_desc)), &bad);
  /* the sequences' cache views: over a cache, and over packed 16-bit K/V
   * (counted for packed fp32 K/V too, so that one workspace size serves
   * mha_attention_varlen_f32 and mha_attention_varlen alike) */
  mha_count(&l->meta, (size_t)l->nseq, mha_floats_for_bytes(sizeof(mha_kv_cache)), &bad);
  mha_count(&l->meta, (size_t)l->nseq + 1, 3 * sizeof(int64_t) / sizeof(float), &bad);
  l->meta = mha_round16(l->meta);
  mha_count(&l->total, l->scratch, (size_t)l->threads, &bad);
  mha_count(&l->total, l->shared, 1, &bad);
  mha_count(&l->total, l->meta, 1, &bad);
  if (bad || l->total > (SIZE_MAX - 128) / sizeof(float)) {
    return mha_error(MHA_STATUS_SIZE_OVERFLOW, "%s: the workspace size overflows", vb->fn);
  }
  return MHA_STATUS_SUCCESS;
}

mha_status mha_attention_varlen_floats(const mha_kernels* kr, const mha_attention_desc* d,
                                       const mha_varlen_batch* vb, int nthreads, size_t* floats) {
  /* one size for both forms of a set with a BF16 unit (as mha_attention_workspace_floats) */
  *floats = 0;
  for (int bf16 = 0; bf16 <= (kr->bf16_gemm != NULL); bf16++) {
    mha_varlen_layout l;
    mha_status st = mha_varlen_layout_of(kr, d, vb, nthreads, bf16, &l);
    if (st != MHA_STATUS_SUCCESS) return st;
    if (l.total > *floats) *floats = l.total;
  }
  return MHA_STATUS_SUCCESS;
}

/* The packed K/V row sequence b's keys start at (vb->cu_k). A sequence
 * without keys reads no K or V row: its first key row may lie past the
 * views' checked span (cu_k[b] = the total), where the pointer could wrap,
 * so it gets the views' base. */
static int64_t mha_varlen_first_key(const mha_varlen_batch* vb, int64_t b) {
  return vb->cu_k[b + 1] > vb->cu_k[b] ? vb->cu_k[b] : 0;
}

/* Sequence b's view of the cache: its entry b as entry 0 (contiguous: the
 * pointers at entry b; paged: the table from row b); over packed 16-bit K
 * and V (vb->cu_k), the pointers at the sequence's first key row. */
static mha_kv_cache mha_varlen_seq_cache(const mha_varlen_batch* vb, int64_t b) {
  const mha_kv_cache* c = vb->cache;
  mha_kv_cache s = *c;
  const size_t esz = mha_dtype_size(c->dtype);
  if (vb->cu_k != NULL) {
    const int64_t k0 = mha_varlen_first_key(vb, b);
    s.k = (char*)c->k + (size_t)(k0 * c->k_strides.row) * esz;
    s.v = (char*)c->v + (size_t)(k0 * c->v_strides.row) * esz;
  } else if (c->block_size != 0) {
    s.block_table = c->block_table + b * c->max_blocks;
  } else {
    s.k = (char*)c->k + (size_t)(b * c->k_strides.batch) * esz;
    s.v = (char*)c->v + (size_t)(b * c->v_strides.batch) * esz;
  }
  return s;
}

mha_status mha_attention_varlen_run(const mha_kernels* kr, const mha_attention_desc* d, const mha_varlen_batch* vb,
                                    const void* q, const void* k, const void* v, void* out, mha_team team,
                                    float* workspace) {
  const char* fn = vb->fn;
  const int32_t* cu_q = vb->cu_q;
  mha_varlen_layout l;
  const int nthreads = team.workers;
  const int bf16 = mha_bf16_form_of(kr, vb->io_dt, vb->cache != NULL ? vb->cache->dtype : MHA_DTYPE_F32);
  mha_status st = mha_varlen_layout_of(kr, d, vb, nthreads, bf16, &l);
  if (st != MHA_STATUS_SUCCESS || l.nseq == 0) return st;
  team.workers = l.threads;
  float* ws = workspace;
  if (ws == NULL) {
    ws = aligned_alloc(64, (l.total * sizeof(float) + 63) & ~(size_t)63);
    if (ws == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace", fn,
                       l.total * sizeof(float));
    }
  }
  float* shared = ws + l.scratch * (size_t)l.threads;
  char* meta = (char*)(shared + l.shared);
  mha_attn_plan* plans = (mha_attn_plan*)meta;
  mha_attention_desc* descs = (mha_attention_desc*)(meta + (size_t)l.nseq * mha_floats_for_bytes(sizeof(mha_attn_plan)) * sizeof(float));
  char* after = (char*)descs + (size_t)l.nseq * mha_floats_for_bytes(sizeof(mha_attention_desc)) * sizeof(float);
  mha_kv_cache* caches = NULL;
  if (vb->cache != NULL) {
    caches = (mha_kv_cache*)after;
    after += (size_t)l.nseq * mha_floats_for_bytes(sizeof(mha_kv_cache)) * sizeof(float);
  }
  int64_t* pack_first = (int64_t*)after;
  int64_t* unit_first = pack_first + l.nseq + 1;
  int64_t* mean_first = unit_first + l.nseq + 1;
  const int64_t total_q = cu_q[d->B], want = (int64_t)MHA_ATTN_UNITS_PER_THREAD * nthreads;
  int64_t i = 0;
  pack_first[0] = unit_first[0] = mean_first[0] = 0;
  for (int64_t b = 0; b < d->B; b++) {
    if (cu_q[b + 1] == cu_q[b]) continue;
    mha_attention_desc* s = &descs[i];
    mha_attn_plan* p = &plans[i];
    mha_varlen_seq_desc(d, vb, b, s);
    (void)mha_attn_plan_make(p, kr, s, 0, mha_varlen_want(want, s->Tq, total_q), bf16); /* it passed above */
    p->entry = b; /* the trace's batch: the sequence */
    if (p->rot_pos != NULL) p->rot_pos += cu_q[b]; /* positions [total_q]: this sequence's rows */
    p->lse_batch = 0; /* lse [total_q, H] */
    p->lse_head = 1;
    p->lse_row = d->H;
    /* q and out of this sequence: its first row, in elements of io_dt */
    const size_t esz = mha_dtype_size(vb->io_dt);
    const void* qb = (const char*)q + (size_t)((int64_t)cu_q[b] * d->q.row) * esz;
    void* ob = (char*)out + (size_t)((int64_t)cu_q[b] * d->out.row) * esz;
    if (caches != NULL) {
      caches[i] = mha_varlen_seq_cache(vb, b);
      mha_attn_plan_bind(p, qb, vb->io_dt, NULL, NULL, &caches[i], ob, NULL, &shared);
    } else {
      const int64_t k0 = mha_varlen_first_key(vb, b);
      mha_attn_plan_bind(p, qb, vb->io_dt, (const float*)k + k0 * d->k.row, (const float*)v + k0 * d->v.row, NULL,
                         ob, NULL, &shared);
    }
    pack_first[i + 1] = pack_first[i] + p->kt_blocks * MHA_KT_PARTS;
    unit_first[i + 1] = unit_first[i] + p->units;
    mean_first[i + 1] = 0;
    i++;
  }
  const mha_attn_stages stages = {plans, l.nseq, pack_first, unit_first, mean_first};
  mha_attn_execute(&stages, team, ws, l.scratch);
  if (workspace == NULL) free(ws);
  return MHA_STATUS_SUCCESS;
}
