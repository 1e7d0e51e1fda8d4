/* Internal helpers shared by the portable drivers: errors, size checks, threads. */
#ifndef MHA_KERNELS_MHA_INTERNAL_H
#define MHA_KERNELS_MHA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config/kernels.h"
#include "mha.h"
#include "mha/parallel.h"

/* Records a formatted message for mha_last_error() and returns status. */
mha_status mha_error(mha_status status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The structs a call reads, read by the growth rule of mha.h ("ABI") into
 * *dst, this library's full layout (kernels/mha/abi.c): NULL_POINTER for a
 * NULL src, INVALID_ARGUMENT for a bad struct_size. */
mha_status mha_desc_read(const char* fn, const mha_attention_desc* src, mha_attention_desc* dst);
mha_status mha_kv_cache_read(const char* fn, const mha_kv_cache* src, mha_kv_cache* dst);
mha_status mha_layer_desc_read(const char* fn, const mha_layer_desc* src, mha_layer_desc* dst);
mha_status mha_layer_args_read(const char* fn, const mha_layer_args* src, mha_layer_args* dst);
mha_status mha_rotary_struct_read(const char* fn, const mha_rotary* src, mha_rotary* dst);
/* An initializer's write into a caller's struct of `size` bytes (its
 * sizeof): the first min(size, full) bytes of *full, zeros past them, and
 * struct_size = size; nothing when dst is NULL or size cannot hold
 * struct_size. */
void mha_struct_init(void* dst, size_t size, const void* full, size_t full_size);

/* Clears the calling thread's last error message. */
void mha_error_clear(void);

/* *out = a · b; returns 0 on int64 overflow (a, b >= 0). */
int mha_mul_i64(int64_t a, int64_t b, int64_t* out);
/* *out = a + b; returns 0 on int64 overflow (a, b >= 0). */
int mha_add_i64(int64_t a, int64_t b, int64_t* out);

/* Checks a strided 4-D view [n0, n1, n2, width] with last dim contiguous:
 * strides >= 0, row stride >= width when n2 > 1 (or 0 when broadcast is
 * allowed, as on masks), and the largest offset + 1 fits in int64 and size_t.
 * Returns SUCCESS or the status (message set, naming fn and what). */
mha_status mha_check_view(const char* fn, const char* what, int64_t n0, int64_t n1, int64_t n2,
                          int64_t width, const mha_strides* s, int allow_broadcast);

/* The bytes a checked view addresses from its base: (largest offset + 1)·4. */
mha_status mha_view_span(const char* fn, const char* what, int64_t n0, int64_t n1, int64_t n2,
                         int64_t width, const mha_strides* s, size_t* bytes);

/* An output view must not write one element twice: sorted by stride, each
 * dimension of size > 1 steps over all that the inner ones span (so stride 0
 * only on size 1). Call after mha_check_view. INVALID_STRIDE otherwise. */
mha_status mha_check_view_injective(const char* fn, const char* what, int64_t n0, int64_t n1,
                                    int64_t n2, int64_t width, const mha_strides* s);

/* A named byte range a call reads or writes: [p, p + bytes); NULL or empty
 * ranges overlap nothing. */
typedef struct mha_span {
  const char* name;
  const void* p;
  size_t bytes;
} mha_span;

/* INVALID_STRIDE (naming both) if one of outs[0..n_out) overlaps one of
 * ins[0..n_in) or another output; SUCCESS otherwise. */
mha_status mha_check_spans_disjoint(const char* fn, const mha_span* outs, size_t n_out,
                                    const mha_span* ins, size_t n_in);

/* The same for two outputs, out and weights. */
mha_status mha_check_outputs_disjoint(const char* fn, mha_span out, mha_span weights,
                                      const mha_span* inputs, size_t n);

/* The weights output's heads dimension: H, 1 (head mean) or the chosen heads. */
int64_t mha_weights_slots(const mha_attention_desc* d);


/* Projection GEMM with weights packed once (kernels/mha/gemm.c). */
typedef struct mha_packed_w {
  float* data;      /* ⌈N/NR⌉ panels of K×NR, zero padded */
  int64_t K, N;
  size_t nr;
} mha_packed_w;

/* Zeroed panels for a K×N matrix (⌈N/NR⌉ panels of K×NR). */
mha_status mha_packed_w_alloc(const mha_kernels* kernels, int64_t K, int64_t N, mha_packed_w* out);
/* Packs a K×N source of dtype's elements (F32, F16 or BF16, widened exactly;
 * element (k, n) at index k·stride_k + n·stride_n of w) into the columns
 * [col0, col0 + N) of dst; col0 a multiple of NR, padding left zero. */
void mha_packed_w_fill(mha_packed_w* dst, int64_t col0, int64_t N, const void* w, mha_dtype dtype,
                       int64_t stride_k, int64_t stride_n);
/* Allocates and packs W (as mha_packed_w_fill, from column 0) for kernels' NR. */
mha_status mha_pack_w(const mha_kernels* kernels, int64_t K, int64_t N, const void* w, mha_dtype dtype,
                      int64_t stride_k, int64_t stride_n, mha_packed_w* out);
/* Element i of a dtype (F32, F16 or BF16) array, widened exactly. */
float mha_element_f32(const void* a, mha_dtype dtype, int64_t i);
void mha_packed_w_free(mha_packed_w* pw);

/* How the projection GEMM splits C among threads: tiles of mtile rows × nc
 * columns, mt × nt of them, each run in MC-row blocks of A (mc). A function of the shape, the kernels and the
 * thread count; it never changes a result (every C element sees the same
 * k order), only how many units the threads share. */
typedef struct mha_gemm_grid {
  int64_t mc, mtile, nc, mt, nt, tiles;
} mha_gemm_grid;
mha_gemm_grid mha_gemm_grid_for(const mha_kernels* kernels, int64_t M, int64_t N, int64_t nr, int nthreads);

/* C[M×N] = A[M×K] · W + bias (bias NULL: none), on the team's workers
 * (fewer for a small product: parallel.h). A row stride lda, C row stride
 * ldc. Deterministic for any team. */
void mha_gemm_f32(const mha_kernels* kernels, int64_t M, const float* a, int64_t lda,
                  const mha_packed_w* w, const float* bias, float* c, int64_t ldc, mha_team team);

/* The layer's BF16 form (kernels/mha/gemm-bf16.c; a kernel set with
 * bf16_gemm): W [K×N] packed once as the N rows of Wᵀ, B of the set's
 * layout (bf16-gemm.h), N padded with zero rows to a multiple of bf16_nr,
 * kq = ⌈K/4⌉ quads. */
typedef struct mha_packed_bf16 {
  uint16_t* data;
  int64_t K, N, kq;
} mha_packed_bf16;
mha_status mha_packed_bf16_alloc(const mha_kernels* kernels, int64_t K, int64_t N, mha_packed_bf16* out);
/* Packs W (dtype's elements: element (k, n) at index k·stride_k + n·stride_n
 * of w, widened exactly, then rounded to bf16 — exact for bf16 weights). */
mha_status mha_packed_bf16_fill(const mha_kernels* kernels, mha_packed_bf16* dst, const void* w, mha_dtype dtype,
                                int64_t stride_k, int64_t stride_n);
void mha_packed_bf16_free(mha_packed_bf16* pw);
/* A's M rows of K bf16 values (row stride lda) packed for the unit into
 * a_packed, mha_gemm_bf16_pack_elems(M, K) elements, on the team's workers;
 * returns the packed A to pass on: a_packed, or a itself where the set's A
 * layout is its rows (bf16_a_rows) and they are laid out so already (K a
 * multiple of 4, lda = K). */
size_t mha_gemm_bf16_pack_elems(int64_t M, int64_t K);
const uint16_t* mha_gemm_bf16_pack(const mha_kernels* kernels, int64_t M, const uint16_t* a, int64_t lda, int64_t K,
                        uint16_t* a_packed, mha_team team);
/* C[M×N] = A·W (+ bias: acc + b) from A packed by mha_gemm_bf16_pack (with
 * W's K): products in bf16 accumulated in fp32 by the set's unit, each
 * element one chain of the unit's steps over the whole K (in one call, or,
 * where K is longer than the set's bf16_kc, in chunks that continue it:
 * gemm-bf16.c), so its bits depend on
 * neither the team nor M. c16 (or NULL): C also rounded to bf16 into it,
 * the same layout, each tile as it is done (mha_narrow_row's bits); c may
 * be NULL where c16 is not (then only the bf16 C is written). */
void mha_gemm_bf16_packed(const mha_kernels* kernels, int64_t M, const uint16_t* a_packed, const mha_packed_bf16* w,
                          const float* bias, float* c, int64_t ldc, uint16_t* c16, mha_team team);

/* The attention core after validation (kernels/mha/attention.c).
 * workspace: NULL (allocated here), or mha_attention_workspace_floats()
 * floats, 64-byte aligned. Fails only before writing anything. K and V come
 * from the fp32 views k, v (desc's strides), or, when cache is non-NULL, from
 * the cache (validated: mha_kv_cache_validate). Q and out hold elements of
 * io_dt (fp32, or f16 / bf16 for mha_attention). */
mha_status mha_attention_run(const mha_kernels* kernels, const mha_attention_desc* desc,
                             const void* q, const float* k, const float* v,
                             const mha_kv_cache* cache, mha_dtype io_dt, void* out, float* weights,
                             mha_team team, float* workspace);
/* The overlap rule of every call (include/mha.h, "Strided views"): what it
 * writes (out, weights, lse, the caller's workspace, and the extra outputs
 * `more_out`) is disjoint from everything else it reads or writes: q, k, v,
 * the masks, the slopes and sinks, weights_heads, and the extra inputs
 * `more_in` (cu_seqlens, a cache and its table). INVALID_STRIDE naming the
 * pair otherwise. q, k, v and out hold elements of esz bytes (4, or 2 for
 * mha_attention's 16-bit types). desc must have passed mha_attention_validate. */
mha_status mha_attention_check_overlap(const char* fn, const mha_attention_desc* desc, size_t esz,
                                       const void* q, const void* k, const void* v,
                                       const void* out, const float* weights,
                                       const mha_span* more_in, size_t n_more_in);
mha_status mha_attention_workspace_floats(const mha_kernels* kernels, const mha_attention_desc* desc,
                                          int with_weights, int nthreads, size_t* floats);

/* A packed variable-length batch (kernels/mha/varlen.c checks it): one plan
 * per sequence with query rows, each the plan of that sequence called alone
 * (B = 1, its own lengths), run as one unit space over all sequences. Time
 * and workspace follow the real rows and keys, never desc's Tq and Tk.
 * Its keys are packed fp32 rows (cu_k) or a cache's entries (used_k, cache:
 * sequence b reads tokens [0, used_k[b]) of cache entry b). */
typedef struct mha_varlen_batch {
  const int32_t* cu_q;       /* [B + 1] */
  const int32_t* cu_k;       /* [B + 1]: packed K/V rows; NULL over a cache */
  const int32_t* used_k;     /* [B]: each sequence's keys in the cache; NULL for packed K/V */
  const mha_kv_cache* cache; /* NULL: packed fp32 K/V; with cu_k: packed 16-bit K/V as a
                                contiguous cache over their views */
  const char* fn;            /* the entry point, for messages */
  mha_dtype io_dt;           /* of q and out (and packed K/V): fp32 (0, the default), or f16 / bf16 */
} mha_varlen_batch;
mha_status mha_attention_varlen_floats(const mha_kernels* kernels, const mha_attention_desc* desc,
                                       const mha_varlen_batch* batch, int nthreads, size_t* floats);
mha_status mha_attention_varlen_run(const mha_kernels* kernels, const mha_attention_desc* desc,
                                    const mha_varlen_batch* batch, const void* q, const void* k,
                                    const void* v, void* out, mha_team team, float* workspace);
/* The checks of a varlen call's desc and lengths (exactly one of cu_k and
 * used_k is set); fills *flat, the packed rows as one entry of total_q
 * queries for the view checks (varlen.c). */
mha_status mha_varlen_read(const char* fn, const mha_attention_desc* caller, const mha_varlen_batch* batch,
                           mha_attention_desc* d, mha_attention_desc* flat);

/* The parallel stages of a core call at nthreads threads: the Kᵀ packing
 * blocks (0 in the dot-product form) and the (item, key range) units; the
 * decode merge is done by the last unit of each item, no stage of its own. */
mha_status mha_attention_work_units(const mha_kernels* kernels, const mha_attention_desc* desc,
                                    int nthreads, int64_t* pack_units, int64_t* units);

/* A core, K/V-cache or varlen call planned before it runs: its kernel set,
 * its threads, the workspace floats it needs, and the caller's workspace
 * (aligned), or NULL when it passed none. */
typedef struct mha_call {
  const mha_kernels* kr;
  int nthreads; /* the workers asked for (mha_resolve_workers) */
  size_t floats;
  float* ws;
  mha_tracer tracer; /* the call's trace, when desc.trace is set (mha_call_team) */
} mha_call;

/* Plans a call of desc (validated): resolves desc->isa and num_threads,
 * counts the workspace (a packed batch's when batch is non-NULL), and when
 * size_fn is non-NULL takes desc->workspace, INVALID_ARGUMENT naming size_fn
 * (the *_workspace_size() to ask) when it is too small (attention-plan.c). */
mha_status mha_call_plan(const char* fn, const char* size_fn, const mha_attention_desc* desc, int with_weights,
                         const mha_varlen_batch* batch, mha_call* call);

/* A planned call's workers, on desc's pool, with desc's trace begun (the
 * caller ends it: mha_trace_end(team.tracer)). */
mha_team mha_call_team(mha_call* call, const mha_attention_desc* desc);

/* A caller's workspace, aligned up to 64 bytes, if its size is at least what
 * *_workspace_size() reports for `floats` (floats·4 + 64 bytes); else NULL. */
float* mha_workspace_take(void* workspace, size_t workspace_bytes, size_t floats);

/* Validates a core descriptor and the pointers, and with_weights: that a
 * [B, H, Tq, Tk] weights array is addressable (kernels/mha/attention.c). */
mha_status mha_attention_validate(const char* fn, const mha_attention_desc* desc, const void* q,
                                  const void* k, const void* v, const void* out,
                                  int with_weights);

/* The slopes and sinks of desc's mask: finite, and finite or −inf
 * (INVALID_ARGUMENT naming the entry). The calls check them last, after
 * everything else (kernels/mha/attention-check.c). */
mha_status mha_attention_check_heads(const char* fn, const mha_attention_desc* desc);

/* The checks of a K/V cache for a core call over desc (kernels/mha/kv-cache.c):
 * dtype, pointers, layout, every table slot that covers an entry's keys
 * [0, kv_len or Tk); and *k_bytes, *v_bytes, the spans of k and v. */
/* desc with k and v views that pass the core's checks whatever the caller
 * left in them: the cache's layout replaces them (kv-cache.c). */
mha_attention_desc mha_kv_desc(const mha_attention_desc* desc);
mha_status mha_kv_cache_validate(const char* fn, const mha_attention_desc* desc,
                                 const mha_kv_cache* cache, size_t* k_bytes, size_t* v_bytes);

/* The checks of a cache that B entries write T tokens into from first[b]
 * (NULL: 0), or read [0, lens[b]) from (lens non-NULL): the cache's fields,
 * its views (*k_bytes, *v_bytes: their spans) and every table slot used. */
/* One entry's tokens [start, start + n) of a checked cache: inside it, and
 * every table slot that covers them in [0, num_blocks). */
mha_status mha_kv_cache_check_range(const char* fn, const mha_kv_cache* cache, int64_t b, int64_t start, int64_t n);
mha_status mha_kv_cache_check(const char* fn, const mha_kv_cache* cache, int64_t B, int64_t Hkv,
                              int64_t D, int64_t Dv, const int32_t* first, const int32_t* lens,
                              int64_t T, size_t* k_bytes, size_t* v_bytes);

/* Bytes per element of a K/V cache type. */
static inline size_t mha_dtype_size(mha_dtype t) {
  return t == MHA_DTYPE_F32 ? sizeof(float) : t == MHA_DTYPE_INT8 ? sizeof(int8_t) : sizeof(uint16_t);
}

/* 16-bit K and V given as views (mha_attention, mha_attention_varlen) as a
 * contiguous cache of dtype over them: the kernels widen them as they load
 * (kernels/kv-gemm), as for a K/V cache; capacity = the views' rows. */
static inline mha_kv_cache mha_kv_cache_over_views(mha_dtype dtype, const void* k, const void* v, mha_strides ks,
                                                   mha_strides vs, int64_t capacity) {
  mha_kv_cache c;
  memset(&c, 0, sizeof c);
  c.struct_size = sizeof c;
  c.dtype = dtype;
  c.k = (void*)k;
  c.v = (void*)v;
  c.k_strides = ks;
  c.v_strides = vs;
  c.capacity = capacity;
  return c;
}

/* The type of Q and out of mha_attention, mha_attention_kv and
 * mha_attention_varlen_kv: fp32, f16 or bf16, else INVALID_ARGUMENT. */
mha_status mha_io_dtype_check(const char* fn, mha_dtype dtype);

/* y[0..n) = x[0..n) of type dt (fp32, f16, bf16; int8 times scale) as fp32:
 * the kernel set's widening, exact (scale is read for int8 only). */
static inline void mha_widen_row(const mha_kernels* kr, mha_dtype dt, const void* x, float scale, size_t n,
                                 float* y) {
  switch (dt) {
    case MHA_DTYPE_F16: kr->widen_f16(n, (const uint16_t*)x, y); break;
    case MHA_DTYPE_BF16: kr->widen_bf16(n, (const uint16_t*)x, y); break;
    case MHA_DTYPE_INT8: kr->dequant_i8(n, (const int8_t*)x, scale, y); break;
    default: memcpy(y, x, n * sizeof(float)); break;
  }
}

/* y[0..n) = x[0..n) in type dt: fp32 copied, f16 and bf16 rounded by the
 * kernel set's narrowing (to nearest even). int8 is not handled here (a
 * row's scale comes with it: the cache writer's). */
static inline void mha_narrow_row(const mha_kernels* kr, mha_dtype dt, size_t n, const float* x, void* y) {
  switch (dt) {
    case MHA_DTYPE_F16: kr->narrow_f16(n, x, (uint16_t*)y); break;
    case MHA_DTYPE_BF16: kr->narrow_bf16(n, x, (uint16_t*)y); break;
    default: memcpy(y, x, n * sizeof(float)); break;
  }
}

/* The element offset of token t of entry b, K/V head g, in a paged cache's
 * pool of strides s (K's or V's; batch = block to block): through the block
 * table, block_size a power of two (checked by mha_kv_cache_check). */
static inline int64_t mha_kv_paged_offset(const mha_kv_cache* c, const mha_strides* s, int64_t b, int64_t g,
                                          int64_t t) {
  const int shift = __builtin_ctzll((unsigned long long)c->block_size);
  const int64_t blk = c->block_table[b * c->max_blocks + (t >> shift)];
  return blk * s->batch + g * s->head + (t & (c->block_size - 1)) * s->row;
}

/* The scale of token t of entry b, K/V head g, of a checked int8 cache
 * (is_v = 0: k_scales, 1: v_scales), through the table when paged. */
static inline float* mha_kv_scale_ptr(const mha_kv_cache* c, int is_v, int64_t b, int64_t g, int64_t t) {
  const mha_strides* s = &c->scale_strides;
  const int64_t at = c->block_size != 0 ? mha_kv_paged_offset(c, s, b, g, t) : b * s->batch + g * s->head + t * s->row;
  return (is_v ? c->v_scales : c->k_scales) + at;
}

/* The bytes of each scale array of a checked int8 cache that B entries use
 * (0 for the other dtypes): input spans for the overlap rule. */
size_t mha_kv_cache_scale_bytes(const mha_kv_cache* cache, int64_t B, int64_t Hkv);

/* Stores rows into a checked cache (mha_kv_cache_write's loop): for entries
 * b = b0 .. b0 + nb − 1, row t of entry b − b0 of k_new / v_new (element
 * strides ks, vs) becomes token pos[b] + t (pos NULL: t), rounded to the
 * cache's dtype by the kernel set's narrowing (bitwise the same on every set). */
void mha_kv_cache_store(const mha_kernels* kernels, const mha_kv_cache* cache, int64_t b0, int64_t nb, int64_t Hkv, int64_t T,
                        int64_t D, int64_t Dv, const int32_t* pos, const float* k_new,
                        const mha_strides* ks, const float* v_new, const mha_strides* vs);

/* Rotary embeddings (rotary.c). */
/* One head's row x [D] at position pos, rotated (mha.h's formula) and times
 * scale into y[d·y_step]: the one rotation every path runs. */
void mha_rotary_row(const mha_rotary* r, int64_t pos, size_t D, const float* x, float* y, size_t y_step,
                    float scale);
/* Reads *src by the growth rule and checks its fields for heads of D
 * values; *table_bytes = the bytes of cos (and of sin). */
mha_status mha_rotary_read(const char* fn, const mha_rotary* src, int64_t D, mha_rotary* r, size_t* table_bytes);
/* INVALID_ARGUMENT naming `what` `row` when pos is outside [0, n_positions). */
mha_status mha_rotary_check_pos(const char* fn, const mha_rotary* r, const char* what, int64_t row, int64_t pos);
/* The positions of a cache call's query rows: entry b's rows are [cu_q[b],
 * cu_q[b+1]) of the packed rows (cu_q NULL: [b·Tq, (b+1)·Tq)), at
 * rotary->positions[row] or, naturally, end − len + i with end = ends[b]
 * (ends NULL: Tk). Each must lie in the table. */
mha_status mha_rotary_check_queries(const char* fn, const mha_rotary* r, int64_t B, const int32_t* cu_q, int64_t Tq,
                                    const int32_t* ends, int64_t Tk);
/* INVALID_ARGUMENT when desc->rotary is set: the calls that apply none. */
mha_status mha_rotary_refuse(const char* fn, const mha_attention_desc* d);

#endif
