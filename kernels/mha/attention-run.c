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
} mha_attn_stage_run;

static void mha_attn_stage_worker(void* ctx, int worker) {
  mha_attn_stage_run* r = ctx;
  float* mine = r->scratch + (size_t)worker * r->stride;
  for (int64_t u; (u = mha_claim(&r->next, r->n)) >= 0;) {
    if (r->stage == 0) mha_attn_pack_unit(r->s, u);
    else if (r->stage == 1) mha_attn_item_unit(r->s, u, mine);
    else mha_attn_mean_unit(r->s, u, mine);
  }
}

void mha_attn_execute(const mha_attn_stages* s, mha_team team, float* scratch, size_t stride) {
  const int64_t n = s->n;
  mha_attn_stage_run runs[3] = {
      {s, scratch, stride, 0, s->pack_first[n], 0},
      {s, scratch, stride, 1, s->unit_first[n], 0},
      {s, scratch, stride, 2, s->mean_first[n], 0},
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

mha_status mha_attention_run(const mha_kernels* kr, const mha_attention_desc* d, const float* q,
                             const float* k, const float* v, const mha_kv_cache* cache, float* out,
                             float* weights, mha_team team, float* workspace) {
  static const char fn[] = "mha_attention_f32";
  mha_attn_plan p;
  mha_status st = mha_attn_plan_make(&p, kr, d, weights != NULL, (int64_t)MHA_ATTN_UNITS_PER_THREAD * team.workers);
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
  mha_attn_plan_bind(&p, q, k, v, cache, out, weights, &shared);
  const int64_t pack_first[2] = {0, p.kt_blocks * MHA_KT_PARTS}, unit_first[2] = {0, p.units},
                mean_first[2] = {0, mha_attn_mean_units(&p)};
  const mha_attn_stages stages = {&p, 1, pack_first, unit_first, mean_first};
  mha_attn_execute(&stages, team, ws, p.scratch);
  if (workspace == NULL) free(ws);
  return MHA_STATUS_SUCCESS;
}
