/*
 * The parallel stages of a call: the Kᵀ pre-pass, the (item, key range)
 * units, the head-mean weights pass, over one plan (the core, a K/V cache,
 * the layer's chunks) or one plan per sequence (varlen), in one parallel
 * region (OpenMP) or one parallel_for per stage (the caller's pool); and
 * mha_attention_run, the core's run over its own workspace.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "mha/attention-plan.h"

/* The plan that unit u of a stage belongs to: first[i] <= u < first[i + 1]. */
static int64_t mha_attn_plan_of(const int64_t* first, int64_t n, int64_t u) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (first[mid] <= u) lo = mid; else hi = mid - 1;
  }
  return lo;
}

static void mha_attn_pack_unit(const mha_attn_stages* s, int64_t u) {
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(s->pack_first, s->n, u);
  mha_pack_kt_part(&s->plans[i], u - s->pack_first[i]);
}

static void mha_attn_item_unit(const mha_attn_stages* s, int64_t u, float* scratch) {
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(s->unit_first, s->n, u);
  const mha_attn_plan* p = &s->plans[i];
  const int64_t v = u - s->unit_first[i];
  mha_attention_item(p, v / p->nsplit, v % p->nsplit, scratch);
}

static void mha_attn_mean_unit(const mha_attn_stages* s, int64_t u, float* scratch) {
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(s->mean_first, s->n, u);
  mha_attention_weights_mean(&s->plans[i], u - s->mean_first[i], scratch);
}

/* One stage's units, taken from its counter by every worker until none is
 * left: 0 the Kᵀ packing, 1 the (item, key range) units, 2 the head-mean
 * weights. */
typedef struct mha_attn_stage_run {
  const mha_attn_stages* s;
  float* scratch;
  size_t stride;
  int stage;
  int64_t n;
  int64_t next;
  const mha_tracer* tracer;
} mha_attn_stage_run;

/* What unit u of a stage covers, for the trace (mha.h, "Threads"). */
static void mha_attn_unit_event(const mha_attn_stages* s, int stage, int64_t u, mha_trace_event* ev) {
  const int64_t* first = stage == 0 ? s->pack_first : stage == 1 ? s->unit_first : s->mean_first;
  const int64_t i = s->n == 1 ? 0 : mha_attn_plan_of(first, s->n, u);
  const mha_attn_plan* p = &s->plans[i];
  const mha_attention_desc* d = p->d;
  const int64_t v = u - first[i];
  int64_t b, head, heads, q0 = 0, q1 = 0, k0 = 0, k1 = d->Tk;
  if (stage == 0) {
    const int64_t blk = v / MHA_KT_PARTS, kb = blk % p->nkb;
    b = blk / (p->nkb * d->Hkv);
    head = (blk / p->nkb) % d->Hkv;
    heads = 1;
    k0 = kb * p->nk;
    k1 = k0 + p->nk < d->Tk ? k0 + p->nk : d->Tk;
  } else if (stage == 1) {
    const mha_item_pos pos = mha_item_pos_of(p, v / p->nsplit);
    b = pos.b, head = pos.g * p->G, heads = p->G, q0 = pos.q0, q1 = pos.q0 + pos.mq;
    k0 = (v % p->nsplit) * p->split_len;
    k1 = k0 + p->split_len < d->Tk ? k0 + p->split_len : d->Tk;
  } else {
    const int64_t qb = v % p->nqb;
    b = v / p->nqb, head = 0, heads = d->H, q0 = qb * p->mq;
    q1 = q0 + p->mq < d->Tq ? q0 + p->mq : d->Tq;
  }
  ev->stage = stage == 0 ? MHA_TRACE_PACK_KT : stage == 1 ? MHA_TRACE_ATTENTION : MHA_TRACE_WEIGHTS_MEAN;
  ev->batch = mha_trace_i32(p->entry + b);
  ev->head = mha_trace_i32(head), ev->heads = mha_trace_i32(heads);
  ev->q_begin = mha_trace_i32(q0), ev->q_end = mha_trace_i32(q1);
  ev->k_begin = mha_trace_i32(k0), ev->k_end = mha_trace_i32(k1);
  ev->reserved = 0;
}

static void mha_attn_run_unit(const mha_attn_stage_run* r, int64_t u, float* mine) {
  if (r->stage == 0) mha_attn_pack_unit(r->s, u);
  else if (r->stage == 1) mha_attn_item_unit(r->s, u, mine);
  else mha_attn_mean_unit(r->s, u, mine);
}

static void mha_attn_stage_worker(void* ctx, int worker) {
  mha_attn_stage_run* r = ctx;
  float* mine = r->scratch + (size_t)worker * r->stride;
  for (int64_t u; (u = mha_claim(&r->next, r->n)) >= 0;) {
    if (r->tracer == NULL) {
      mha_attn_run_unit(r, u, mine);
      continue;
    }
    mha_trace_event ev;
    ev.start_ns = mha_now_ns();
    mha_attn_run_unit(r, u, mine);
    ev.end_ns = mha_now_ns();
    ev.worker = worker;
    mha_attn_unit_event(r->s, r->stage, u, &ev);
    mha_trace_record(r->tracer, &ev);
  }
}

void mha_attn_execute(const mha_attn_stages* s, mha_team team, float* scratch, size_t stride) {
  const int64_t n = s->n;
  mha_attn_stage_run runs[3] = {
      {s, scratch, stride, 0, s->pack_first[n], 0, team.tracer},
      {s, scratch, stride, 1, s->unit_first[n], 0, team.tracer},
      {s, scratch, stride, 2, s->mean_first[n], 0, team.tracer},
  };
  if (team.workers > 1 && team.pool == NULL) {
    /* OpenMP: one region, a barrier between stages that have work (a stage
     * needs the one before it done); a thread that starts late finds the
     * counters spent. The region's own join ends the last stage. */
#pragma omp parallel num_threads(team.workers)
    {
      const int w = omp_get_thread_num();
      int ran = 0;
      for (int i = 0; i < 3; i++) {
        if (runs[i].n == 0) continue;
        if (ran++) {
#pragma omp barrier
        }
        mha_attn_stage_worker(&runs[i], w);
      }
    }
    return;
  }
  /* one worker, or the caller's pool: one parallel_for per stage with work */
  for (int i = 0; i < 3; i++) {
    if (runs[i].n > 0) mha_team_run(team, mha_attn_stage_worker, &runs[i]);
  }
}

/* The head-mean weights pass's units of a bound plan: one per (b, query block). */
static int64_t mha_attn_mean_units(const mha_attn_plan* p) {
  return p->weights != NULL && p->d->weights_mode == MHA_WEIGHTS_HEAD_MEAN ? p->d->B * p->nqb : 0;
}

mha_status mha_attention_run(const mha_kernels* kr, const mha_attention_desc* d, const void* q,
                             const float* k, const float* v, const mha_kv_cache* cache, mha_dtype io_dt,
                             void* out, float* weights, mha_team team, float* workspace) {
  static const char fn[] = "mha_attention_f32";
  mha_attn_plan p;
  const int bf16 = mha_bf16_form_of(kr, io_dt, cache != NULL ? cache->dtype : MHA_DTYPE_F32);
  mha_status st = mha_attn_plan_make(&p, kr, d, weights != NULL, (int64_t)MHA_ATTN_UNITS_PER_THREAD * team.workers,
                                     bf16);
  if (st != MHA_STATUS_SUCCESS) return st;
  const int nthreads = team.workers = mha_attn_threads(team.workers, p.units, p.work);
  size_t total = 0;
  if ((st = mha_attn_total(p.scratch, nthreads, p.shared_n, &total)) != MHA_STATUS_SUCCESS) return st;
  float* ws = workspace;
  if (ws == NULL) {
    ws = aligned_alloc(64, (total * sizeof(float) + 63) & ~(size_t)63);
    if (ws == NULL) {
      return mha_error(MHA_STATUS_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes of workspace", fn,
                       total * sizeof(float));
    }
  }
  float* shared = ws + p.scratch * (size_t)nthreads;
  mha_attn_plan_bind(&p, q, io_dt, k, v, cache, out, weights, &shared);
  const int64_t pack_first[2] = {0, p.kt_blocks * MHA_KT_PARTS}, unit_first[2] = {0, p.units},
                mean_first[2] = {0, mha_attn_mean_units(&p)};
  const mha_attn_stages stages = {&p, 1, pack_first, unit_first, mean_first};
  mha_attn_execute(&stages, team, ws, p.scratch);
  if (workspace == NULL) free(ws);
  return MHA_STATUS_SUCCESS;
}
