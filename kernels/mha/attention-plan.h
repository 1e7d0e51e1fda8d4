/*
 * The attention core's internal plan (kernels/mha/attention-*.c, varlen.c):
 * the schedule of one call and the per-thread scratch of a work item, the
 * small accessors every stage shares, and the stages' entry points.
 *
 * Work item = (batch b, K/V head g, query block). The query rows of all
 * G = H / Hkv heads that share K/V head g are packed side by side, so each
 * key/value block is read once per group, not once per query head. For each
 * key block: S = Qp·Kᵀ (GEMM micro-kernel, Q packed with scale·log2(e)
 * folded in), the online softmax step in base 2 (mask, running max and sum,
 * p = 2^(s − m); one tile call when every row sees the whole block),
 * O = alpha·O + P·V with the rescale skipped where alpha = 1.
 * Key blocks that the causal mask or kv_len hide from every row of the item
 * are never touched. Splits depend on the shape only, never on the thread
 * count, so results are bitwise identical for any number of threads.
 *
 * A call walks the files in this order:
 *   attention.c          the public entry points (and desc_init, strides)
 *   attention-check.c    the descriptor's checks and the overlap rule
 *   attention-plan.c     the plan: item and key-range sizes, the workspace
 *   attention-run.c      the parallel stages over one plan or many (varlen)
 *   attention-rows.c     an item's rows: query packing, visible keys, scores
 *   attention-item.c     the flash loop of one (item, key range)
 *   attention-bf16.c     its scores and P·V on a BF16 unit (bf16 calls on neon_bf16, avx512_bf16)
 *   attention-decode.c   the merge of an item's key ranges (decode)
 *   attention-weights.c  the inspection passes (per head, chosen, mean)
 */
#ifndef MHA_KERNELS_MHA_ATTENTION_PLAN_H
#define MHA_KERNELS_MHA_ATTENTION_PLAN_H

#include <math.h>
#include <string.h>

#include "mha/internal.h"

/* Bound of |mask.offset|. With T < 2^61 (any view that fits memory), an
 * aligned position i' lies in (−2^61, 2^61 + 2^60) for every alignment. */
#define MHA_POS_LIMIT ((int64_t)1 << 60)
/* Clamp of the window's reach: a side of 2^62 reaches past every key from any
 * i' (i' − 2^62 < 0 and i' + 2^62 > 2^61 > Tk), and i' ± (2^62 + 1) cannot
 * overflow. A clamp of 2^60 would not do: with offset −(2^60 − 1) a window of
 * INT64_MAX on the right would end at key i + 1. */
#define MHA_WINDOW_LIMIT ((int64_t)1 << 62)

/* The schedule of one call: a function of the shape and the kernels only. */
typedef struct mha_attn_plan {
  const mha_kernels* kr;
  const mha_attention_desc* d;
  const void* q;     /* Q and out: elements of io_dt (desc's strides count them) */
  const void *k, *v; /* fp32 views, or a cache's buffers or pools (dt) */
  void* out;
  float* weights;
  mha_dtype io_dt;   /* of Q and out: fp32, or f16 / bf16 (mha_attention): Q widened as it is
                        packed, each out row rounded once as it is written */
  /* where K and V rows are: desc's views (fp32), or a cache (mha_kv_cache) */
  const mha_strides *ks, *vs; /* element strides; paged: batch = block to block */
  const mha_kv_cache* cache;  /* or NULL: desc's fp32 views */
  mha_dtype dt;               /* of K and V */
  size_t esz;                 /* bytes per K/V element */
  int64_t page;               /* paged: tokens per block (a power of two); 0: contiguous */
  int v_in_place;             /* fp32 contiguous V: the P·V GEMM reads it where it is */
  int bf16_form;              /* Q, K, V bf16 on a set with a BF16 unit: the scores and
                                 P·V through it (attention-bf16.c) */
  float scale;
  float qscale;      /* Q's factor as it is packed: scale·log2(e), or 1 when modify */
  int modify;        /* a score modifier (soft-cap, ALiBi, or a scale too large to fold) runs
                        before each softmax step, which then multiplies by log2(e) */
  int64_t G;         /* query heads per K/V head */
  int64_t mq;        /* query rows per head in one item */
  int64_t nqb;       /* query blocks per head */
  int64_t nk;        /* keys per block */
  int64_t nkb;       /* key blocks per head: ⌈Tk / nk⌉ */
  int64_t rows;      /* G·mq: rows of the packed query tile */
  int use_nt;        /* few rows: scores as dot products with K in place */
  int qt;            /* the tiled form on a set with gemm_at: an item's Q packed
                        transposed, [D][R], the A of S = Q·Kᵀ and the B of Sᵀ = K·Qᵀ */
  float* kt;         /* else: Kᵀ per key block, packed once, [B][Hkv][nkb][D][nk]; in the
                        BF16 form the block's K and V in the set's B layout
                        (attention-bf16.c), kt_blk floats a block either way */
  size_t kt_blk;     /* floats per key block of kt */
  const uint16_t* kv_zero; /* the BF16 form's zero row (max(D, Dv) values) after kt's blocks;
                              NULL: no pre-packed K and V (another form, or no pre-pass) */
  int64_t nsplit;    /* key ranges per item (decode); 1 otherwise */
  int64_t split_len; /* keys per range, a multiple of nk */
  float* partial;    /* nsplit > 1: per (item, range, row) O [Dv], m, l */
  int64_t items;     /* B·Hkv·nqb */
  int64_t units;     /* items·nsplit */
  double work;       /* the call's work for the size rule (parallel.h): FLOPs + 2·bytes, a bound */
  int64_t entry;     /* the trace's batch of b = 0: the sequence of a varlen plan, else 0 */
  /* rotary embeddings applied to Q as it is packed (desc->rotary), or NULL;
   * rot_pos: the caller's positions of this plan's rows, [B·Tq], or NULL */
  const mha_rotary* rot;
  const int32_t* rot_pos;
  int64_t kt_blocks; /* B·Hkv·nkb key blocks of packed Kᵀ; 0 in the nt form */
  size_t scratch;    /* floats of scratch per thread */
  int32_t* done;     /* nsplit > 1: per item, the ranges finished so far */
  /* lse element (b, h, i) at d->lse[b·lse_batch + h·lse_head + i·lse_row]:
   * [B, H, Tq], or [total_q, H] for one sequence of a packed batch */
  int64_t lse_batch, lse_head, lse_row;
  float* ml;         /* head-mean weights: every row's final (m, l), [B][H][Tq][2] */
  /* chosen heads' weights: the slots of head h are slot_first[h],
   * slot_next[that], ... (−1 ends), so a row finds its slots in O(1 + its
   * own), never by a scan of the list */
  int64_t *slot_first, *slot_next;
  /* floats of the workspace parts shared by the threads: Kᵀ, the decode
   * partials and counters, the head-mean (m, l), the slot lists; and their sum */
  size_t kt_n, part_n, done_n, ml_n, slot_n, shared_n;
} mha_attn_plan;

static inline size_t mha_round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Checked size_t arithmetic for the workspace count: *acc += a·b, bad |= overflow. */
static inline void mha_count(size_t* acc, size_t a, size_t b, int* bad) {
  size_t t;
  *bad |= __builtin_mul_overflow(a, b, &t);
  *bad |= __builtin_add_overflow(*acc, t, acc);
}

/* Units of work each thread should have to choose from (dynamic schedule). */
enum { MHA_ATTN_UNITS_PER_THREAD = 4 };

/* C[M×N] (+)= A[M×K]·B[K×N], tiled over the micro-kernel: B and C
 * row-major with the given strides; A row-major (at = 0: gemm) or given
 * transposed (at = 1, A[i][p] at a[p·lda + i]: gemm_at). */
static inline void mha_gemm_tiles(const mha_kernels* kr, int at, size_t M, size_t N, size_t K, const float* a,
                                  size_t lda, const float* b, size_t ldb, float* c, size_t ldc, int accumulate) {
  const mha_f32_gemm_ukernel_fn ukernel = at ? kr->gemm_at : kr->gemm;
  for (size_t j = 0; j < N; j += kr->gemm_nr) {
    const size_t n = N - j < kr->gemm_nr ? N - j : kr->gemm_nr;
    for (size_t i = 0; i < M; i += kr->gemm_mr) {
      const size_t m = M - i < kr->gemm_mr ? M - i : kr->gemm_mr;
      ukernel(m, n, K, at ? a + i : a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, accumulate);
    }
  }
}

/* The keys batch entry b has: kv_len or Tk. */
static inline int64_t mha_kv_end(const mha_attn_plan* p, int64_t b) {
  return p->d->mask.kv_len ? p->d->mask.kv_len[b] : p->d->Tk;
}

/* Row j of K (is_v = 0) or V (1) of K/V head g of entry b: in a contiguous
 * view or cache, or through the block table of a paged one. */
static inline const void* mha_kv_row(const mha_attn_plan* p, int is_v, int64_t b, int64_t g, int64_t j) {
  const mha_strides* s = is_v ? p->vs : p->ks;
  int64_t at;
  if (p->page != 0) {
    at = mha_kv_paged_offset(p->cache, s, b, g, j);
  } else {
    at = b * s->batch + g * s->head + j * s->row;
  }
  return (const char*)(is_v ? p->v : p->k) + (size_t)at * p->esz;
}

/* Of the rows j .. j + n, how many lie back to back from row j (one block of
 * a paged cache; all of them in a contiguous one). */
static inline size_t mha_kv_run(const mha_attn_plan* p, int64_t j, size_t n) {
  if (p->page == 0) return n;
  const size_t left = (size_t)(p->page - (j & (p->page - 1)));
  return left < n ? left : n;
}

/* The scale of K (is_v = 0) or V row j of K/V head g of entry b: an int8
 * cache's, else 1 (not used). */
static inline float mha_kv_scale(const mha_attn_plan* p, int is_v, int64_t b, int64_t g, int64_t j) {
  return p->dt == MHA_DTYPE_INT8 ? *mha_kv_scale_ptr(p->cache, is_v, b, g, j) : 1.0f;
}

/* y[0..n) = row x widened to fp32 (x: n elements of the plan's K/V type;
 * scale: the row's, int8 only). */
static inline void mha_kv_widen(const mha_attn_plan* p, const void* x, float scale, size_t n, float* y) {
  mha_widen_row(p->kr, p->dt, x, scale, n, y);
}

/* The offset of row (b, h, i) of out, in elements. */
static inline int64_t mha_out_at(const mha_attn_plan* p, int64_t b, int64_t h, int64_t i) {
  const mha_strides* s = &p->d->out;
  return b * s->batch + h * s->head + i * s->row;
}

/* Writes row (b, h, i) of out: o[c] · inv for c < Dv, each product rounded
 * to fp32 (kr->vscale, in place in the scratch row o) and then, for a 16-bit
 * out, once to its type (the set's narrow kernel: to nearest even). */
void mha_put_out_row(const mha_attn_plan* p, int64_t b, int64_t h, int64_t i, float* o, float inv);

/* The packed Kᵀ of key block kb of (b, g). */
static inline float* mha_kt_block(const mha_attn_plan* p, int64_t b, int64_t g, int64_t kb) {
  return p->kt + (size_t)((b * p->d->Hkv + g) * p->nkb + kb) * p->kt_blk;
}

/* Packing units per key block: quarters of its keys, so that a B = 1
 * prefill has enough units for many threads. */
enum { MHA_KT_PARTS = 4 };

/* Row r of an item packs query row i = q0 + r % mq of head h = g·G + r / mq. */
typedef struct mha_row {
  int64_t h, i;
} mha_row;

static inline mha_row mha_item_row(const mha_attn_plan* p, int64_t g, int64_t q0, int64_t mq, size_t r) {
  mha_row row = {g * p->G + (int64_t)r / mq, q0 + (int64_t)r % mq};
  return row;
}

/* Of the keys [j0, j0 + nk), how many row (b, row) sees (a prefix: keys
 * [0, lim) are visible), and its additive mask from key j0 (NULL if none). */
static inline size_t mha_row_keys(const mha_attn_plan* p, int64_t b, mha_row row, int64_t lim, int64_t j0,
                           size_t nk, const float** add) {
  const mha_attention_desc* d = p->d;
  *add = NULL;
  if (d->mask.additive != NULL) {
    const mha_strides* ms = &d->mask.additive_strides;
    *add = d->mask.additive + b * ms->batch + row.h * ms->head + row.i * ms->row + j0;
  }
  const int64_t nv = lim - j0;
  return nv < 0 ? 0 : nv > (int64_t)nk ? nk : (size_t)nv;
}

/* The item's coordinates: batch entry, K/V head, first query row, rows per head. */
typedef struct mha_item_pos {
  int64_t b, g, q0, mq;
} mha_item_pos;

static inline mha_item_pos mha_item_pos_of(const mha_attn_plan* p, int64_t item) {
  mha_item_pos pos;
  pos.q0 = (item % p->nqb) * p->mq;
  pos.g = (item / p->nqb) % p->d->Hkv;
  pos.b = item / (p->nqb * p->d->Hkv);
  pos.mq = p->d->Tq - pos.q0 < p->mq ? p->d->Tq - pos.q0 : p->mq;
  return pos;
}

/* The per-thread scratch of an item: query rows, a score tile, the output
 * accumulator, the running max and sum, a key block's rescale factors, the
 * row limits, a merge row. */
typedef struct mha_scratch {
  float *qp, *s, *o, *m, *l, *alpha, *acc;
  int64_t *lo, *lim; /* row r sees keys [lo[r], lim[r]) (before the additive mask) */
  float* vclean; /* [nk × Dv] (at least D floats): a V block in fp32 (widened,
                    gathered, or with its non-finite rows zeroed) for the P·V
                    GEMM; int8 K rows dequantized for the scores before it */
  const void** vrows; /* [nk]: the V rows of a key block (the pointer form of P·V) */
  unsigned char* bad; /* [nk]: key j's V row holds a NaN or an infinity */
  /* the BF16 form's packed operands (sets with kr->bf16_gemm; else NULL) */
  struct {
    uint16_t *qb, *kb, *pb, *vb; /* Q [rows × D], a K block [nk × D], P [rows × nk], V [nk × Dv]ᵀ */
    uint16_t* qs;                /* [rows × D]: Q rows rotated and rounded */
    const uint16_t* zero;        /* max(D, Dv, nk) zeros */
    const uint16_t** rows16;     /* row pointers for the packing: max(rows, nk rounded up to 8) */
    const float** rows32;        /* [rows] */
  } bf16;
} mha_scratch;

/* The BF16 form's scratch parts (sets with kr->bf16_gemm): bf16 elements of
 * the packed Q, K block, P and Vᵀ (the set's layout, kernels/bf16-gemm/:
 * B operands padded to bf16_nr rows) and of the rotated Q rows; floats of the
 * zero row; row pointers. mha_attn_plan_make checks their sum for overflow
 * before mha_scratch_of uses them. */
typedef struct mha_bf16_sizes {
  size_t qb, kb, pb, vb, qs, zero, ptrs16, ptrs32;
} mha_bf16_sizes;

static inline mha_bf16_sizes mha_bf16_sizes_of(const mha_attn_plan* p) {
  const size_t NR = (size_t)p->kr->bf16_nr;
  const size_t rows2 = ((size_t)p->rows + 1) / 2 * 2, nk8 = ((size_t)p->nk + NR - 1) / NR * NR;
  const size_t D4 = ((size_t)p->d->D + 3) / 4 * 4, nk4 = ((size_t)p->nk + 3) / 4 * 4;
  const size_t Dv8 = ((size_t)p->d->Dv + NR - 1) / NR * NR;
  mha_bf16_sizes z;
  z.qb = rows2 * D4;
  z.kb = nk8 * D4;
  z.pb = rows2 * nk4;
  z.vb = Dv8 * nk4;
  z.qs = (size_t)p->rows * (size_t)p->d->D;
  z.zero = (size_t)(p->d->D > p->d->Dv ? p->d->D : p->d->Dv);
  z.ptrs16 = (size_t)p->rows > nk8 ? (size_t)p->rows : nk8;
  z.ptrs32 = (size_t)p->rows;
  return z;
}

/* The partial (O [Dv], m, l) of row r of key range `split` of an item. */
static inline float* mha_partial_row(const mha_attn_plan* p, int64_t item, int64_t split, size_t r) {
  return p->partial + ((size_t)(item * p->nsplit + split) * (size_t)p->rows + r) * (size_t)(p->d->Dv + 2);
}

/* log2(e) and ln 2: the flash loop's m and l are in base 2 (config/kernels.h) */
#define MHA_LOG2E 1.44269504088896340736
#define MHA_LN2 0.69314718055994530942

/* Head h's sink logit (natural units), −inf for none. */
static inline float mha_head_sink(const mha_attention_desc* d, int64_t h) {
  return d->mask.sinks != NULL ? d->mask.sinks[h] : -INFINITY;
}

/* A row's log-sum-exp, in natural units, from its base-2 running (m, l) and
 * the sink it started from (−inf for none): −inf for a row that saw nothing
 * (l = 0), NaN for a NaN row, and exactly the sink where the sink's term is
 * the only one that counts (l = 1 at m = sink·log2(e): every key's term
 * underflowed or there was none), which m·ln 2 would miss by an ulp. */
static inline float mha_lse(float m, float l, float sink) {
  if (l == 0.0f) return -INFINITY;
  if (l == 1.0f && m == sink * MHA_LOG2E_F) return sink;
  return (float)(((double)m + log2((double)l)) * MHA_LN2);
}

/* Writes row (b, h, i)'s log-sum-exp (mha_lse of its base-2 m, l and its
 * sink) when an lse output is asked for; else computes nothing (a log2 per
 * row was 0.6% of a bf16 core). */
static inline void mha_put_lse(const mha_attn_plan* p, int64_t b, int64_t h, int64_t i, float m, float l,
                               float sink) {
  if (p->d->lse == NULL) return;
  p->d->lse[b * p->lse_batch + h * p->lse_head + i * p->lse_row] = mha_lse(m, l, sink);
}

/* The parallel stages of n bound plans, as one unit space each: the Kᵀ
 * packing, then the (item, key range) units, then the head-mean weights
 * passes. Unit u of a stage belongs to the plan i with first[i] <= u <
 * first[i + 1]. */
typedef struct mha_attn_stages {
  const mha_attn_plan* plans;
  int64_t n;
  const int64_t *pack_first, *unit_first, *mean_first; /* [n + 1] each */
} mha_attn_stages;

/* attention-plan.c */
mha_status mha_attn_plan_make(mha_attn_plan* p, const mha_kernels* kr, const mha_attention_desc* d,
                              int with_weights, int64_t want_items, int bf16_form);

/* Does a call take the BF16 form (attention-bf16.c)? Q and out bf16, K and
 * V bf16, on a set with a BF16 unit. Its plan has the set's bf16_nk keys a
 * block (mha_attn_plan_make's bf16_form), the others attn_nk. */
static inline int mha_bf16_form_of(const mha_kernels* kr, mha_dtype io_dt, mha_dtype kv_dt) {
  return kr->bf16_gemm != NULL && io_dt == MHA_DTYPE_BF16 && kv_dt == MHA_DTYPE_BF16;
}
/* The workers that share a plan's units: at most one per unit, at most one
 * per MHA_WORK_PER_WORKER of its work (parallel.h), at least 1. */
int mha_attn_threads(int nthreads, int64_t units, double work);
mha_status mha_attn_total(size_t scratch, int threads, size_t shared, size_t* floats);
void mha_attn_plan_bind(mha_attn_plan* p, const void* q, mha_dtype io_dt, const float* k, const float* v,
                        const mha_kv_cache* cache, void* out, float* weights, float** shared);

/* attention-run.c: runs the stages on the team's workers, worker w's
 * scratch at scratch + w·stride floats */
void mha_attn_execute(const mha_attn_stages* s, mha_team team, float* scratch, size_t stride);

/* The rotary position of query row i of entry b: the caller's, or the row's
 * natural one (its distance from the end of the entry's keys) */
static inline int64_t mha_rot_at(const mha_attn_plan* p, int64_t b, int64_t i) {
  return p->rot_pos != NULL ? p->rot_pos[b * p->d->Tq + i] : mha_kv_end(p, b) - p->d->Tq + i;
}

/* attention-rows.c */
void mha_pack_kt_part(const mha_attn_plan* p, int64_t unit);
void mha_scores(const mha_attn_plan* p, const mha_scratch* sc, size_t R, int64_t b, int64_t g, int64_t j0,
                size_t nk, int st);
int64_t mha_aligned_pos(const mha_attn_plan* p, int64_t b, int64_t i);
int64_t mha_item_setup(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc, int64_t* first);
mha_scratch mha_scratch_of(const mha_attn_plan* p, float* base);
size_t mha_row_prepare(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t r,
                       int64_t j0, size_t nk, float* srow, const float** add, size_t* nlo,
                       float* step_scale);

/* attention-bf16.c: the BF16 form (p->bf16_form): the item's Q packed (at
 * its setup), S = scale·Q·Kᵀ of a key block into sc->s, and O += bf16(P)·V,
 * returning 1 when careful left out a V row holding a NaN or an infinity
 * (sc->bad); with p_packed the softmax step has packed P already
 * (bf16_softmax_tile_pack), else P is packed from sc->s */
void mha_bf16_pack_q(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc);
/* the pre-pass of the BF16 form: part 0 of a key block packs its K, part 1
 * its V (parts 2 and 3 nothing), into the block's kt area */
void mha_bf16_pack_kv_part(const mha_attn_plan* p, int64_t unit);
/* The BF16 form's pre-pass serves key blocks of up to this many keys (every
 * set's attn_nk is 64) and B blocks of up to this many rows (bf16_nr) */
enum { MHA_BF16_PREPASS_KEYS = 256 };
/* floats of one key block's K and V in the set's B layout (the pre-pass),
 * at least: counted with overflow checks (*bad set on overflow) */
size_t mha_bf16_kv_block_floats(const mha_kernels* kr, size_t D, size_t Dv, size_t nk, int* bad);
void mha_bf16_scores(const mha_attn_plan* p, const mha_scratch* sc, size_t R, int64_t b, int64_t g, int64_t j0,
                     size_t nk);
int mha_bf16_pv(const mha_attn_plan* p, const mha_scratch* sc, mha_item_pos pos, size_t R, int64_t j0, size_t nk,
                int careful, int p_packed);

/* attention-item.c: one (item, key range) */
void mha_attention_item(const mha_attn_plan* p, int64_t item, int64_t split, float* scratch);

/* attention-decode.c: the merge of an item's key ranges, by the unit that
 * finishes last */
void mha_attention_merge(const mha_attn_plan* p, int64_t item, float* scratch);

/* attention-weights.c */
void mha_weights_slots_index(const mha_attn_plan* p);
void mha_attention_weights(const mha_attn_plan* p, mha_item_pos pos, const mha_scratch* sc, int64_t first,
                           int64_t max_lim);
void mha_attention_weights_mean(const mha_attn_plan* p, int64_t unit, float* scratch);

#endif
