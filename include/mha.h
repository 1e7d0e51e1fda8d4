/*
 * mha.h — multi-head attention forward kernels for CPUs: fp32 compute, with
 * K/V read from fp32, f16 or bf16 caches.
 *
 * The one installed header of libmha. C11, usable from C++.
 *
 * Two levels of API:
 *   1. The attention core, for engines that already hold Q, K and V:
 *        out = softmax(scale · Q·Kᵀ + mask) · V      per (batch, head)
 *      mha_attention_f32(), with its variants in the mask (causal alignment,
 *      sliding window, ALiBi, soft-cap, sinks) and each row's log-sum-exp
 *      (desc.lse). Around it:
 *        - K/V caches as engines keep them (fp32, f16 or bf16 elements,
 *          contiguous or paged through a block table): mha_kv_cache_init(),
 *          mha_kv_cache_init_paged(), mha_attention_kv_f32() (bitwise the
 *          core on the widened values) and the writers mha_kv_cache_write(),
 *          mha_kv_cache_write_varlen() and mha_kv_cache_write_slots();
 *        - packed variable-length batches (sequences back to back, offsets
 *          in cu_seqlens): mha_attention_varlen_f32(), and over a K/V cache
 *          (a serving step mixing prefill chunks and decodes in one call):
 *          mha_attention_varlen_kv_f32();
 *        - mha_merge_f32(), which merges the (out, lse) of attention over
 *          disjoint key ranges into the exact result;
 *        - the workspace queries (*_workspace_size()): with a caller's
 *          workspace, a call allocates nothing.
 *   2. The full layer (projections, attention, output projection) as a plan
 *      that packs the weights once and runs many times:
 *        mha_layer_create() / mha_layer_forward() / mha_layer_destroy(),
 *      and the one-shot mha_layer_forward_once(); a forward can also fill a
 *      K/V cache with its K and V projections (mha_layer_args.kv_cache).
 *
 * Conventions
 *   - Shapes are named B (batch), H (query heads), Hkv (key/value heads),
 *     Tq (query rows), Tk (key rows), D (query/key head width), Dv (value
 *     head width) everywhere.
 *   - Sizes and strides are int64_t counts of elements (not bytes).
 *   - Every function that can fail returns an mha_status; on failure it
 *     writes nothing to any output buffer, and mha_last_error() describes
 *     what was wrong. No function aborts, asserts or exits.
 *   - All entry points are thread-safe: plans are read-only after creation
 *     and may be used by several threads at once (each call with its own
 *     outputs and workspace). The kernel set can be chosen per call or per
 *     plan (the isa fields) without touching the process-wide choice.
 *   - Determinism: for a given kernel set, the bits of a batch entry's output
 *     (and weights) depend only on that entry's inputs and the shape of one
 *     entry (H, Hkv, Tq, Tk, D, Dv, the layer's widths, the mask kinds) —
 *     never on the thread count, on B, on the other entries of the batch, on
 *     the layer's chunking, on whether a workspace is passed, or on whether
 *     weights are requested. Different kernel sets may differ in the last
 *     bits (within the documented tolerance of the scalar path). A NaN is
 *     a NaN: its sign and payload are not part of the guarantee.
 *   - A call with num_threads == 1 (or resolving to 1, or a small call: see
 *     num_threads), or with a threadpool, opens no OpenMP parallel region,
 *     so the OpenMP runtime allocates nothing for it.
 */
#ifndef MHA_H
#define MHA_H

#include <stddef.h>
#include <stdint.h>

/* MHA_API marks the library's entry points. The shared library (libmha.so)
 * is built with -fvisibility=hidden and exports these declarations only; in
 * the static library (libmha.a) the attribute changes nothing. Defined empty
 * for compilers without the GNU visibility attribute. */
#ifndef MHA_API
#if defined(__GNUC__) || defined(__clang__)
#define MHA_API __attribute__((visibility("default")))
#else
#define MHA_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MHA_VERSION_MAJOR 0
#define MHA_VERSION_MINOR 5
#define MHA_VERSION_PATCH 0

/* The version of the library actually loaded, MAJOR·10000 + MINOR·100 +
 * PATCH: a program or binding can compare it with the MHA_VERSION_* it was
 * built against. */
MHA_API uint32_t mha_version(void);

/* ABI: how the structs grow without breaking callers (since 0.5).
 *
 * Each struct that a call reads — mha_attention_desc, mha_kv_cache,
 * mha_layer_desc, mha_layer_args, mha_rotary — starts with size_t
 * struct_size, the caller's sizeof, which its initializer sets
 * (mha_attention_desc_init, mha_kv_cache_init(_paged), mha_layer_desc_init,
 * mha_layer_args_init, mha_rotary_init:
 * inline wrappers that pass the caller's sizeof to the exported *_sized
 * functions, which write that many bytes and no more).
 *   - New fields are only ever appended at the end of these structs,
 *     and a new field's 0 means "off" (the old behaviour). The nested
 *     mha_strides and mha_mask never change: new mask options are appended
 *     to the outer structs.
 *   - The library reads the first struct_size bytes of a struct and takes
 *     every field past them as 0. So a program compiled against an older
 *     header keeps working with a newer library.
 *   - A struct_size larger than the library knows (a program built against
 *     a newer header) is accepted when the bytes it does not know are all 0,
 *     and refused with INVALID_ARGUMENT naming the struct otherwise: a field
 *     the library cannot honour is never silently ignored.
 *   - struct_size 0 (a zero-filled struct, `= {0}`) reads as the 0.5 layout
 *     (mha_rotary: its 0.6 layout); a struct_size between 1 and that
 *     layout's size is INVALID_ARGUMENT.
 *   - The SONAME, libmha.so.0.5, changes only when a field is removed or
 *     changed or a function's signature changes; appending fields and
 *     functions keeps it. */

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

/* Every failure has its own value; values are stable across releases. */
typedef enum mha_status {
  MHA_STATUS_SUCCESS = 0,          /* the call did what it says */
  MHA_STATUS_NULL_POINTER = 1,     /* a required pointer argument is NULL */
  MHA_STATUS_INVALID_SIZE = 2,     /* a size is zero or negative, or out of its documented range */
  MHA_STATUS_INVALID_SHAPE = 3,    /* sizes that do not fit together: H % Hkv != 0,
                                      d_model % H != 0 where D is derived, a packed
                                      in_proj_weight with d_kv != d_model, ... */
  MHA_STATUS_INVALID_STRIDE = 4,   /* a negative stride, or a row stride shorter than the row */
  MHA_STATUS_INVALID_ARGUMENT = 5, /* any other bad value: a non-finite scale, kv_len[b]
                                      outside [0, Tk], an unknown enum value */
  MHA_STATUS_SIZE_OVERFLOW = 6,    /* a product of sizes overflows int64_t / size_t */
  MHA_STATUS_OUT_OF_MEMORY = 7,    /* an allocation failed */
  MHA_STATUS_UNKNOWN_ISA = 8,      /* an ISA name that mha does not know (MHA_ISA or mha_set_isa_by_name) */
  MHA_STATUS_UNSUPPORTED_ISA = 9,  /* an ISA that this CPU lacks or this build does not contain */
  MHA_STATUS_COMMUNICATION = 10    /* a communication call failed (libmha_mpi: MPI's error, in the
                                      message); libmha itself never returns it. (Since 0.6.) */
} mha_status;

/* A short constant description of a status ("invalid size", ...). Never NULL. */
MHA_API const char* mha_status_string(mha_status status);

/* The message of the last failed call made by the calling thread, with the
 * name of the offending argument ("mha_attention_f32: H (12) is not a
 * multiple of Hkv (5)"). Empty string if no call has failed. Thread-local. */
MHA_API const char* mha_last_error(void);

/* ------------------------------------------------------------------------ */
/* ISA selection                                                            */
/* ------------------------------------------------------------------------ */

/* Kernel sets. Tags are the words SLEEF uses. MHA_ISA_DEFAULT is 0 so that a
 * zero-filled descriptor means "the process choice", never a slow path. */
typedef enum mha_isa {
  MHA_ISA_DEFAULT = 0, /* the process-wide choice (MHA_ISA, mha_set_isa, or the best) */
  MHA_ISA_SCALAR = 1,  /* portable C11, the reference path; always present */
  MHA_ISA_AVX2 = 2,    /* x86-64 AVX2 + FMA */
  MHA_ISA_AVX512F = 3, /* x86-64 AVX-512F */
  MHA_ISA_NEON = 4,    /* AArch64 Advanced SIMD */
  MHA_ISA_NEON_BF16 = 5, /* AArch64 Advanced SIMD + BF16 (Armv8.6 FEAT_BF16: BFMMLA): the neon set,
                            and bf16 attention on the BF16 unit (see mha_attention) */
  MHA_ISA_AVX512_BF16 = 6, /* x86-64 AVX-512F/BW + AVX512-BF16 (vdpbf16ps: AMD Zen 4 and later, Intel
                              Cooper Lake, Sapphire Rapids and later): the avx512f set, and bf16
                              attention on the BF16 unit (see mha_attention) */
  MHA_ISA_AMX_BF16 = 7 /* x86-64 AMX-BF16 (TDPBF16PS tiles: Intel Sapphire Rapids and later): the
                          avx512_bf16 set with its BF16 form's products on AMX. Present only in a
                          build configured with -DMHA_AMX=ON (off by default until its tests have
                          run on an AMX CPU: README, "AMX"), on a CPU with AMX-TILE, AMX-BF16 and
                          AVX512-BF16 whose Linux grants the process the tile state
                          (arch_prctl ARCH_REQ_XCOMP_PERM, asked once); else not available */
} mha_isa;

/* One past the largest mha_isa value: concrete sets are [MHA_ISA_SCALAR, MHA_ISA_COUNT). */
#define MHA_ISA_COUNT 8

/* "default", "scalar", "avx2", "avx512f", "neon", "neon_bf16", "avx512_bf16", "amx_bf16";
 * "unknown" for other values. */
MHA_API const char* mha_isa_name(mha_isa isa);

/* 1 if this build contains the kernel set and the CPU can run it, else 0
 * (0 for MHA_ISA_DEFAULT, which is not a kernel set). */
MHA_API int mha_isa_available(mha_isa isa);

/* The kernel set in use. At the first call into the library it is chosen
 * from the environment variable MHA_ISA (one of the names above) if set,
 * else the best set the CPU can run. If MHA_ISA names an unknown or
 * unavailable set, every computing call fails with MHA_STATUS_UNKNOWN_ISA
 * or MHA_STATUS_UNSUPPORTED_ISA until mha_set_isa() picks a valid one: mha
 * never silently runs a different set than the one asked for. */
MHA_API mha_status mha_get_isa(mha_isa* isa);

/* Force a kernel set for all later calls that do not choose their own
 * (process-wide; a descriptor's isa field overrides it for one call or plan).
 * MHA_ISA_DEFAULT forgets a previous choice: the next call chooses again from
 * MHA_ISA and the CPU. Returns MHA_STATUS_UNSUPPORTED_ISA if
 * mha_isa_available(isa) is 0 and MHA_STATUS_INVALID_ARGUMENT for a value
 * outside the enum. Calls running while it changes use one set or the other,
 * never a mix. */
MHA_API mha_status mha_set_isa(mha_isa isa);

/* As mha_set_isa(), by name; MHA_STATUS_UNKNOWN_ISA for an unknown name. */
MHA_API mha_status mha_set_isa_by_name(const char* name);

/* ------------------------------------------------------------------------ */
/* Threads: OpenMP, or the caller's own pool                                */
/* ------------------------------------------------------------------------ */

/* By default a call runs its work on OpenMP (num_threads below). An engine
 * with a pool of its own (ggml's threadpool, ONNX Runtime's intra-op pool,
 * PyTorch's at::parallel_for, XNNPACK's pthreadpool) passes it as an
 * mha_threadpool (desc.threadpool, args.threadpool); the call then runs its
 * work through pool->parallel_for and opens no OpenMP region. Adapters for a
 * plain pthread pool and for pthreadpool: examples/threadpool/.
 *
 * parallel_for(context, task, task_context, n) must call
 * task(task_context, i) exactly once for every i in [0, n) — on any threads,
 * the calling one included, in any order, at once or one after another —
 * and return only after every one of those calls has returned. It may not
 * fail. mha calls it only from the thread that called mha (never from
 * inside a task), with 2 <= n <= the call's workers, once per stage of the
 * call that has work (a call with one worker runs on the calling thread and
 * does not call the pool) (the core: the Kᵀ packing, the attention units, the
 * head-mean weights; the layer: each projection GEMM, then the core's).
 *
 * Task i is worker i: it uses worker i's slice of the workspace and takes
 * the stage's work units from a counter the tasks share, until none is
 * left. So a task that starts late (its thread was descheduled, or busy)
 * finds the units done by the others and returns at once; a pool that runs
 * the tasks one after another on one thread is correct, only not parallel.
 *
 * The call's workers: num_threads if > 0, else pool->num_threads; fewer
 * when the call's work is too small to share (see num_threads). The
 * workspace size queries count them the same way, so pass the same pool and
 * num_threads to the query and the call.
 *
 * Stack: a task uses up to about 40 KB of its thread's stack (the deepest
 * frame: the bf16 layer GEMM's worker, 35 KB — its 16 KB fp32 tile and an
 * 18 KB chunk of A; then the AVX2 transposed softmax step's 8.6 KB; GCC
 * -fstack-usage, x86-64 Release; the amx_bf16 set's kernel adds 8.3 KB below
 * that worker: about 44 KB), and the calling thread a few KB more: a
 * pool whose threads have 64 KB of stack is enough (a bf16 layer forward ran
 * on a 48 KB thread, not on a 40 KB one; the AVX2 and AVX-512 fp32 cores on
 * 32 KB; sanitizer builds need more).
 *
 * Bits: those of the OpenMP default, whoever runs the units and however many
 * tasks run at once. Errors: parallel_for NULL or num_threads < 1 is
 * INVALID_ARGUMENT; every check happens before the first parallel_for, so a
 * call that fails never calls the pool. */
typedef void (*mha_task_fn)(void* task_context, size_t index);
typedef void (*mha_parallel_for_fn)(void* pool_context, mha_task_fn task, void* task_context,
                                    size_t n);
typedef struct mha_threadpool {
  mha_parallel_for_fn parallel_for;
  void* context;   /* passed to parallel_for as pool_context */
  int num_threads; /* how many tasks it runs at once (its threads, the caller's included); >= 1 */
} mha_threadpool;

/* A trace of a call's work units (who ran what, when), for finding the
 * straggler and for studying how heads spread over threads. Off by default
 * (desc.trace, args.trace NULL) and then free: one pointer test per unit.
 * With a trace, every unit the call runs is recorded once, as it ends, into
 * events[0 .. capacity); the call sets count (the events written) and total
 * (the units run: total > count means the buffer was too small and the
 * rest were dropped). Times are ns since the call began (CLOCK_MONOTONIC);
 * each event's start <= end. The buffer is the caller's, written only by
 * the call (one trace per concurrent call). Bits of the results: unchanged.
 *
 *   stage PACK_KT:       Kᵀ packing of key block k_begin.. of (batch, K/V head
 *                        `head`); heads = 1, no query rows.
 *   stage ATTENTION:     query rows [q_begin, q_end) of the `heads` query heads
 *                        from `head` on (one K/V head's group) against keys
 *                        [k_begin, k_end) (a key range of a decode split, or
 *                        every key the rows may see).
 *   stage WEIGHTS_MEAN:  the head-mean weights of rows [q_begin, q_end).
 *   stage GEMM:          a projection tile of the layer: rows [q_begin,
 *                        q_end) × columns [k_begin, k_end) of one GEMM of
 *                        a chunk of batch entries (rows counted from the
 *                        chunk's first entry, `batch`); head says which
 *                        GEMM: 0 Q (self-attention: the fused Q|K|V), 1 K
 *                        (or the fused K|V), 2 V, 3 the output projection;
 *                        heads 0. (The layer's BF16 form runs Q, K and V
 *                        as three GEMMs, 0, 1 and 2, columns from each
 *                        one's first.)
 * batch is the batch entry (varlen: the sequence). */
typedef enum mha_trace_stage {
  MHA_TRACE_PACK_KT = 1,
  MHA_TRACE_ATTENTION = 2,
  MHA_TRACE_WEIGHTS_MEAN = 3,
  MHA_TRACE_GEMM = 4
} mha_trace_stage;

typedef struct mha_trace_event {
  int64_t start_ns, end_ns;
  int32_t worker; /* the worker that ran it: its OpenMP thread number, or the pool's task index */
  int32_t stage;  /* mha_trace_stage */
  int32_t batch, head, heads;
  int32_t q_begin, q_end, k_begin, k_end;
  int32_t reserved; /* 0 */
} mha_trace_event;

typedef struct mha_trace {
  mha_trace_event* events; /* [capacity] */
  int64_t capacity;        /* >= 0 */
  int64_t count;           /* out: events written, min(total, capacity) */
  int64_t total;           /* out: units run */
} mha_trace;

/* ------------------------------------------------------------------------ */
/* Strided views                                                            */
/* ------------------------------------------------------------------------ */

/* Element strides of a 4-D tensor [batch, head, row, col] whose last
 * dimension (col) is contiguous. Element (b, h, t, c) is at
 *   base[b·batch + h·head + t·row + c].
 * Strides must be >= 0.
 *   - Inputs (q, k, v, masks) may broadcast: a batch or head stride of 0
 *     reads the same data for every index (a row stride of 0 only on masks
 *     or where the dimension has size 1).
 *   - Outputs (out) must address every element once: sorted by stride, each
 *     dimension of size > 1 must step over everything the inner dimensions
 *     span, so a stride of 0 is allowed only where a dimension has size 1.
 *
 * The overlap rule, for every call of this header: what a call writes must
 * not overlap anything else the call reads or writes. Written: out, weights,
 * lse, the caller's workspace, a K/V cache being written (mha_kv_cache_write,
 * the layer's cache output). Read: q, k, v (x_q, x_k, x_v in the layer), the
 * additive mask, kv_len, alibi_slopes, sinks, weights_heads, cu_seqlens_q and
 * cu_seqlens_k, a cache's K, V and block_table, pos / kv_pos, and merge's
 * outs and lses. The only exception: mha_merge_f32's out may be outs[0]
 * itself and its lse lses[0] itself (merging in place). The test is on the
 * byte range each buffer spans (lowest to highest element), so views that
 * interleave without sharing an element are refused too. Every pointer is
 * checked before anything is written; a violation returns
 * MHA_STATUS_INVALID_STRIDE naming both buffers and writes nothing. */
typedef struct mha_strides {
  int64_t batch;
  int64_t head;
  int64_t row;
} mha_strides;

/* Strides of a contiguous [B, H, T, width] tensor: {H·T·width, T·width, width}. */
MHA_API mha_strides mha_strides_bhtd(int64_t H, int64_t T, int64_t width);

/* Strides of a contiguous [B, T, H, width] tensor — the layout that X·W
 * produces, so heads are a view, not a transpose: {T·H·width, width, H·width}. */
MHA_API mha_strides mha_strides_bthd(int64_t H, int64_t T, int64_t width);

/* ------------------------------------------------------------------------ */
/* Masks                                                                    */
/* ------------------------------------------------------------------------ */

/* Where query row i sits among the keys: its aligned position i', which the
 * causal mask, the sliding window and ALiBi measure from. */
typedef enum mha_align {
  /* i' = i + Tk − Tq: the queries are the last Tq positions (the default;
   * what a KV cache needs). */
  MHA_ALIGN_BOTTOM_RIGHT = 0,
  /* i' = i: PyTorch's scaled_dot_product_attention(is_causal=True). */
  MHA_ALIGN_TOP_LEFT = 1,
  /* i' = i + mask.offset: a chunk of queries at any position (chunked
   * prefill, speculative verification). */
  MHA_ALIGN_OFFSET = 2,
  /* i' = i + kv_len[b] − Tq (Tk when kv_len is NULL): bottom-right per batch
   * entry, for a padded batch of caches of different lengths. */
  MHA_ALIGN_KV_END = 3
} mha_align;

/* All masks and score modifiers compose. A key is visible to a query row when
 * every enabled mask lets it through. The logit of a visible key is
 *
 *   s = scale·q·k;  s ← softcap·tanh(s / softcap)   (if softcap > 0)
 *   s ← s − slope_h·(i' − j)                        (if alibi_slopes)
 *   s ← s + additive[b, h, i, j]                    (if additive)
 *
 *  causal   key j is visible iff j <= i' (i' from align; bottom-right by
 *           default: with Tq == Tk the usual lower triangle; with Tq < Tk
 *           the queries are the last Tq positions). NOTE: PyTorch's
 *           scaled_dot_product_attention(is_causal=True) aligns top-left:
 *           use MHA_ALIGN_TOP_LEFT for its result when Tq != Tk.
 *  window   1: key j is visible iff i' − window_left <= j <= i' + window_right
 *           (both >= 0; Mistral's window W is left = W − 1, right = 0, or
 *           right = anything with causal). Key blocks outside every row's
 *           window are never visited: cost grows with T·window, not T².
 *  kv_len   NULL, or an array of B lengths: in batch entry b, keys
 *           j >= kv_len[b] are hidden (key padding). 0 <= kv_len[b] <= Tk.
 *  additive NULL, or an additive float mask whose element for
 *           (b, h, i, j) is additive[b·s.batch + h·s.head + i·s.row + j]
 *           (keys contiguous). A stride of 0 broadcasts that dimension,
 *           e.g. {0, 0, Tk} is one [Tq, Tk] mask for all batches and heads.
 *  alibi_slopes  NULL, or H finite slopes (ALiBi; a call refuses ±inf or NaN
 *           with INVALID_ARGUMENT naming the entry, after all its other
 *           checks; the *_workspace_size queries read neither array): computed in the kernel, no bias
 *           tensor. The distance i' − j is formed in float: exact while
 *           |i' − j| < 2^24 (16M positions); beyond, neighbouring keys may
 *           get the same bias.
 *  softcap  0 (off), or a finite cap > 0 (Gemma 2's logit soft-capping). A
 *           scaled product that overflows to ±inf is capped to ±cap (no NaN).
 *  sinks    NULL, or H logits (gpt-oss's attention sinks): sink h joins the
 *           softmax's denominator of every row of head h but has no value
 *           row, so a row puts weight exp(sink_h − m)/l on "nothing".
 *           Each sink is finite or −inf (no sink); +inf or NaN is
 *           INVALID_ARGUMENT naming the entry.
 *
 * A query row that the masks leave with no visible key outputs zeros (and
 * zero weights), never NaN; with a sink, its weight is all on the sink. A
 * NaN in Q, K, V or the mask still propagates to the rows that see it; K/V
 * rows hidden from a query row (causal, window, kv_len, an additive -inf)
 * never reach it, whatever they hold.
 *
 * Non-finite logits: an additive +inf, or a finite scale and inputs whose
 * scaled product overflows to +inf (e.g. scale 3e38), make that query row
 * NaN (inf − inf in the softmax). A row whose visible logits all overflow to
 * -inf is treated as a row with no visible key: zeros. Scale must be finite
 * (INVALID_ARGUMENT otherwise); it is not checked for overflow, since that
 * depends on the data. */
typedef struct mha_mask {
  int causal;                   /* 0 or 1 */
  const int32_t* kv_len;        /* [B] or NULL */
  const float* additive;        /* or NULL */
  mha_strides additive_strides; /* used only when additive != NULL */
  mha_align align;              /* the aligned position i' of causal, window, ALiBi */
  int64_t offset;               /* i' = i + offset with MHA_ALIGN_OFFSET; |offset| < 2^60 */
  int window;                   /* 0 or 1: the sliding window below */
  int64_t window_left;          /* >= 0: keys before i' a row sees */
  int64_t window_right;         /* >= 0: keys after i' a row sees */
  const float* alibi_slopes;    /* [H] or NULL */
  float softcap;                /* 0, or the cap (finite, > 0) */
  const float* sinks;           /* [H] or NULL */
} mha_mask;

/* ------------------------------------------------------------------------ */
/* The attention core                                                       */
/* ------------------------------------------------------------------------ */

/* What the optional weights output holds (the attention probabilities P). */
typedef enum mha_weights_mode {
  /* [B, H, Tq, Tk]: every head's weights. */
  MHA_WEIGHTS_PER_HEAD = 0,
  /* [B, Tq, Tk]: their mean over the H heads, summed in head order
   * (nn.MultiheadAttention's default, average_attn_weights=True). */
  MHA_WEIGHTS_HEAD_MEAN = 1,
  /* [B, n, Tq, Tk]: heads weights_heads[0 .. n) only, in that order; the
   * other heads' weights are never computed. */
  MHA_WEIGHTS_SELECTED = 2
} mha_weights_mode;

/* Rotary position embeddings for the cache calls and writers ("Rotary
 * embeddings" below). */
typedef struct mha_rotary mha_rotary;

/* Describes one call of mha_attention_f32(). Fill it with
 * mha_attention_desc_init() and change what differs. */
typedef struct mha_attention_desc {
  size_t struct_size; /* sizeof(mha_attention_desc), set by the initializer (see "ABI") */
  int64_t B, H, Hkv, Tq, Tk, D, Dv; /* all >= 1; H % Hkv == 0 */
  mha_strides q;    /* Q   [B, H,   Tq, D ] */
  mha_strides k;    /* K   [B, Hkv, Tk, D ] */
  mha_strides v;    /* V   [B, Hkv, Tk, Dv] */
  mha_strides out;  /* out [B, H,   Tq, Dv] */
  float scale;      /* multiplies Q·Kᵀ; 0 means the default 1/sqrt(D); must be finite */
  mha_mask mask;    /* all off by default */
  /* 0: the default: OpenMP's (1 when called inside a parallel region), or
   * the threadpool's. > 0: at most that many workers. Fewer when the call's
   * work is too small to share: a call gets one worker per 4·10^6 units of
   * work (a FLOP counts 1, a byte read or written 2: about 40 µs of one
   * core), so a tiny call runs on the caller's thread alone, however many
   * threads are asked for. Never changes a result's bits. */
  int num_threads;
  mha_isa isa;      /* MHA_ISA_DEFAULT: the process choice; else this call's kernel set
                       (UNSUPPORTED_ISA if unavailable). Thread-safe: nothing global changes. */
  /* NULL, or a contiguous [B, H, Tq] buffer that receives each row's
   * log-sum-exp of its visible logits (the sink included): out and lse of
   * disjoint key ranges merge into the exact result (mha_merge_f32). A row
   * with no visible key (and no sink) gets -inf; a NaN row NaN. */
  float* lse;
  /* The layout of the weights output, when one is passed (see
   * mha_weights_mode); weights_heads [weights_nheads] lists the heads of
   * MHA_WEIGHTS_SELECTED (each in [0, H)). */
  mha_weights_mode weights_mode;
  const int32_t* weights_heads;
  int64_t weights_nheads;
  /* NULL: the call allocates its workspace (and frees it before returning).
   * Else a caller-owned buffer of workspace_size bytes, any alignment, at
   * least mha_attention_workspace_size(): the call then allocates nothing.
   * One buffer per concurrent call; it overlaps nothing else of the call
   * (INVALID_STRIDE). */
  void* workspace;
  size_t workspace_size;
  /* NULL: OpenMP. Else the caller's pool runs the call's work (see
   * "Threads"); num_threads 0 then means pool->num_threads. (Since 0.6.) */
  const mha_threadpool* threadpool;
  /* NULL, or a trace of the call's work units (see "Threads"). (Since 0.6.) */
  mha_trace* trace;
  /* NULL, or rotary embeddings applied to Q as the cache calls read it
   * (mha_attention_kv_f32, mha_attention_varlen_kv_f32; the other calls
   * refuse one): see "Rotary embeddings" for the positions. (Since 0.6.) */
  const mha_rotary* rotary;
} mha_attention_desc;

/* Sets the sizes, contiguous [B, H, T, width] strides for q, k, v and out,
 * scale 0 (default), no mask, num_threads 0. Never fails; values are checked
 * by mha_attention_f32(). */
MHA_API void mha_attention_desc_init_sized(mha_attention_desc* desc, size_t struct_size, int64_t B,
                                           int64_t H, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D,
                                           int64_t Dv);
/* An inline wrapper over the exported *_sized
 * function with the caller's sizeof: an initializer never writes past the
 * caller's struct, whichever library version runs it. */
static inline void mha_attention_desc_init(mha_attention_desc* desc, int64_t B, int64_t H, int64_t Hkv,
                                           int64_t Tq, int64_t Tk, int64_t D, int64_t Dv) {
  mha_attention_desc_init_sized(desc, sizeof *desc, B, H, Hkv, Tq, Tk, D, Dv);
}

/* Scaled dot-product attention for every (batch b, query head h):
 *
 *   g        = h / (H / Hkv)                  (the K/V head of query head h)
 *   S[i, j]  = scale · Σ_d Q[b,h,i,d] · K[b,g,j,d] + M[b,h,i,j]
 *   P[i, :]  = softmax(S[i, :]) over the visible keys (0 on hidden keys)
 *   out[b,h,i,:] = Σ_j P[i, j] · V[b,g,j,:]
 *
 * where M is the additive mask (0 without one) and "visible" is defined by
 * the mask (see mha_mask). Grouped-query (1 < Hkv < H) and multi-query
 * (Hkv = 1) attention follow from g.
 *
 * weights: NULL, or a contiguous buffer that receives P (0 on hidden keys)
 * in desc->weights_mode's layout: [B, H, Tq, Tk] (the default), their mean
 * over heads [B, Tq, Tk], or chosen heads [B, n, Tq, Tk]. It is written by an
 * inspection pass after the flash loop (per head: with each item; the mean:
 * a pass per query block over all heads, in head order). Without it no
 * Tq × Tk buffer is allocated: the workspace is O(threads · tile +
 * B·Hkv·Tk·D). Requesting weights does not change the bits of out.
 *
 * Decode (few query rows per K/V head) splits the keys into ranges of a fixed
 * number of key blocks (enough ranges for 256 units over the entry's Hkv
 * heads, at most 64, each at least 2 blocks), runs the ranges in parallel and
 * merges them by log-sum-exp in a fixed order: the split is a function of one
 * entry's shape (Hkv, Tk) only.
 *
 * Returns SUCCESS, NULL_POINTER (desc, q, k, v or out), INVALID_SIZE,
 * INVALID_SHAPE (H % Hkv), INVALID_STRIDE, INVALID_ARGUMENT (scale,
 * causal, kv_len, alibi_slopes, sinks), SIZE_OVERFLOW, OUT_OF_MEMORY, UNKNOWN_ISA or
 * UNSUPPORTED_ISA (a bad MHA_ISA). */
MHA_API mha_status mha_attention_f32(const mha_attention_desc* desc, const float* q,
                                     const float* k, const float* v, float* out, float* weights);

/* The workspace bytes mha_attention_f32(desc, ..., weights) needs, with
 * with_weights = (weights != NULL), at desc->num_threads (0 resolved as at
 * call time). It is O(threads · tile + B·Hkv·Tk·D): per-thread tiles plus one
 * packed copy of K for prefill shapes; never Tq × Tk. Checks desc like the
 * call does (pointers aside) and returns the same statuses. */
MHA_API mha_status mha_attention_workspace_size(const mha_attention_desc* desc, int with_weights,
                                                size_t* bytes);

/* An element type: of a K/V cache (below), and of Q, K, V and out in
 * mha_attention. The scores, the softmax and every accumulator stay fp32; a
 * 16-bit value is widened (exactly) in registers as the kernels load it,
 * never copied out as fp32. */
typedef enum mha_dtype {
  MHA_DTYPE_F32 = 0,  /* IEEE binary32 */
  MHA_DTYPE_F16 = 1,  /* IEEE binary16 (half), its bits as uint16_t */
  MHA_DTYPE_BF16 = 2, /* bfloat16 (the upper half of a binary32), as uint16_t */
  /* symmetric int8 with one fp32 scale per row (token, K/V head): value =
   * (float)q · scale, q in [−127, 127] as int8_t; the scales live beside the
   * cache (mha_kv_cache's k_scales, v_scales; "int8 caches" below). (Since 0.6.) */
  MHA_DTYPE_INT8 = 3
} mha_dtype;

/* The core (mha_attention_f32) with Q, K, V and out in a 16-bit type:
 * dtype MHA_DTYPE_F16 or MHA_DTYPE_BF16 (their bits as uint16_t; desc's
 * strides count elements of that type), or MHA_DTYPE_F32 (then exactly
 * mha_attention_f32). Masks, variants, GQA, weights and lse (both fp32) work
 * as in the core; desc->rotary is refused. Workspace: mha_attention_workspace_size
 * (the type does not change it).
 *
 * Accuracy (since 0.6): a product of two f16 or bf16 values is exact in fp32,
 * so every kernel set without a BF16 unit (and every set for f16) computes
 * in fp32 on the exactly widened values (Q widened as it is packed, K and V
 * as the kernels load them: no fp32 copy of any of them) and rounds each
 * output once:
 *
 *   out = round(mha_attention_f32(widen(q), widen(k), widen(v)))   bit for bit
 *
 * (round: to nearest, ties to even, as mha_kv_cache_write rounds; past the
 * type's range ±inf, a NaN stays NaN), with weights and lse bitwise those of
 * that fp32 call. Its error against exact attention on the 16-bit inputs is
 * the fp32 core's plus half an ulp of the type: at most 2^−8 relative for
 * bf16, 2^−11 for f16 (the unit roundoff; an f16 result under 2^−14 is
 * subnormal: an absolute 2^−25). Bits
 * are identical for any thread count and batch composition, per kernel set.
 *
 * The BF16 form (since 0.6): a bf16 call whose K and V are bf16, on a set
 * with a BF16 unit (MHA_ISA_NEON_BF16: Armv8.6 BFMMLA; MHA_ISA_AVX512_BF16:
 * vdpbf16ps), computes the products on the unit: S = scale·(Q·Kᵀ), the bf16
 * products summed in fp32 by the unit (subnormals flushed to zero; BFMMLA
 * rounds its sums to odd, vdpbf16ps to nearest even), scaled in fp32; the online softmax, its max and sum in fp32;
 * the probabilities P rounded to bf16 (to nearest even) for P·V, again
 * summed in fp32 by the unit; each row divided by its fp32 sum and rounded
 * once. Its error against exact attention on the bf16 inputs is the fp32
 * core's, plus 2^−8·max|v| over the row's visible keys (P's rounding: each
 * weight within 2^−8 of itself, the weights summing to 1), plus half an ulp
 * of bf16. Weights and lse are fp32, from this form's scores. Bits are
 * identical for any thread count and batch composition, and a row gets the
 * same bits from a decode call and inside a prefill; they are not the
 * widening path's (MHA_ISA_NEON and MHA_ISA_AVX512F give those on the same CPU). A Q rotated by
 * the call (the cache calls) is rounded to bf16 once, after the rotation.
 *
 * Returns the core's statuses, plus INVALID_ARGUMENT for another dtype or a
 * rotary; the overlap rule counts 2-byte elements for q, k, v and out. */
MHA_API mha_status mha_attention(const mha_attention_desc* desc, mha_dtype dtype, const void* q, const void* k,
                                 const void* v, void* out, float* weights);

/* A packed variable-length batch: B sequences of different lengths, back to
 * back without padding (FlashAttention's cu_seqlens), in one call.
 *
 *   cu_seqlens_q [B + 1]: sequence b's queries are rows [cu_q[b], cu_q[b+1])
 *                of q and out; cu_seqlens_k [B + 1] likewise its keys in k, v.
 *                Both start at 0 and never decrease.
 *   desc         B = the number of sequences; Tq, Tk = bounds of the query
 *                and key lengths (every sequence's must be <= them; they
 *                change neither the schedule, the cost nor the bits); H, Hkv, D,
 *                Dv, scale, num_threads, isa, workspace as in the core. The
 *                views' head and row strides address the packed rows (q
 *                element (row t, head h, d) at q[t·q.row + h·q.head + d]); their
 *                batch strides are not used. lse, when given, is [total_q, H].
 *   masks        per sequence, with its own lengths: causal bottom-right means
 *                i' = i + len_k − len_q; top-left, offset, the window, ALiBi,
 *                soft-cap and sinks as in mha_mask. kv_len and the additive
 *                mask must be NULL (INVALID_ARGUMENT), and there is no weights
 *                output (use the padded call to inspect weights).
 *
 * Bits: sequence b gets exactly the bits of the same sequence called alone:
 * mha_attention_f32 with this desc but B = 1, Tq = len_q, Tk = len_k and
 * views at its rows (lse then [1, H, len_q]). Each sequence has the plan of
 * that call, and the sequences' work items share one parallel schedule, so
 * a sequence's bits depend on nothing else in the batch, on the bounds Tq
 * and Tk, or on the thread count. A sequence without keys (len_k = 0)
 * outputs zeros, lse −inf (its sink's value with sinks), as a row that sees
 * no key does; one without queries is skipped. A batch of no query rows
 * (no key rows) has q, out and lse (k and v) address nothing: they still
 * must not be NULL, but the overlap rule does not apply to them.
 *
 * Cost: time O(Σ_b len_q·len_k) (less under causal and windows) and a
 * workspace of per-thread tiles plus O(real rows and keys): Kᵀ of the
 * prefill-shaped sequences, the decode partials, a small plan per sequence.
 *
 * Returns the core's statuses, plus INVALID_ARGUMENT for bad cu_seqlens
 * (naming the entry), INVALID_STRIDE when out or lse overlaps cu_seqlens
 * (the overlap rule). */
MHA_API mha_status mha_attention_varlen_f32(const mha_attention_desc* desc,
                                            const int32_t* cu_seqlens_q,
                                            const int32_t* cu_seqlens_k, const float* q,
                                            const float* k, const float* v, float* out);

/* mha_attention_varlen_f32 with q, k, v and out in dtype (MHA_DTYPE_F32,
 * F16 or BF16; their bits as uint16_t, the views counting elements of it):
 * each sequence gets bitwise its own mha_attention call (its accuracy
 * contract, the BF16 form included). Returns mha_attention_varlen_f32's
 * statuses, plus INVALID_ARGUMENT for another dtype; the overlap rule counts
 * elements of dtype. Its workspace is mha_attention_varlen_workspace_size's.
 * (Since 0.6.) */
MHA_API mha_status mha_attention_varlen(const mha_attention_desc* desc, mha_dtype dtype,
                                        const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k, const void* q,
                                        const void* k, const void* v, void* out);

/* The workspace bytes mha_attention_varlen_f32() needs for these offsets
 * and num_threads (a function of the real lengths, not of Tq and Tk). */
MHA_API mha_status mha_attention_varlen_workspace_size(const mha_attention_desc* desc,
                                                       const int32_t* cu_seqlens_q,
                                                       const int32_t* cu_seqlens_k,
                                                       size_t* bytes);

/* ------------------------------------------------------------------------ */
/* KV caches: 16-bit and paged                                              */
/* ------------------------------------------------------------------------ */


/* A K/V cache as an engine stores it, contiguous or paged.
 *
 * Contiguous (block_size = 0): entry b's K row t of K/V head g is at
 *   k + (b·k_strides.batch + g·k_strides.head + t·k_strides.row) elements,
 *   for t < capacity (likewise v with v_strides).
 * Paged (block_size > 0): K and V are pools of num_blocks blocks of
 *   block_size tokens (a power of two, 16 .. 256); entry b's token t is row
 *   t % block_size of block n = block_table[b·max_blocks + t / block_size],
 *   at k + (n·k_strides.batch + g·k_strides.head + (t % block_size)·k_strides.row)
 *   elements: the strides' "batch" steps from block to block. Entries may
 *   share blocks (a common prefix); only the table slots that cover an
 *   entry's keys are read, and each must be in [0, num_blocks).
 * Strides are in elements of dtype; rows (the last dimension) contiguous. */
typedef struct mha_kv_cache {
  size_t struct_size;         /* sizeof(mha_kv_cache), set by the initializers (see "ABI") */
  mha_dtype dtype;
  void* k;                    /* K, or its pool */
  void* v;                    /* V, or its pool */
  mha_strides k_strides;
  mha_strides v_strides;
  int64_t capacity;           /* contiguous: rows per (b, g); paged: not used */
  int64_t block_size;         /* 0: contiguous; else tokens per block, 16 .. 256, a power of two */
  int64_t num_blocks;         /* paged: blocks in each pool */
  const int32_t* block_table; /* paged: [B, max_blocks], row-major */
  int64_t max_blocks;         /* paged: table columns; an entry holds up to max_blocks·block_size tokens */
  /* MHA_DTYPE_INT8 only (else not read): the scale of K row t of head g of
   * entry b (paged: of its block n, row t % block_size) at k_scales[b·
   * scale_strides.batch + g·scale_strides.head + t·scale_strides.row]
   * (paged: n·batch + ...), likewise v_scales. The initializers set
   * scale_strides to [B, Hkv, capacity] (paged: [num_blocks, Hkv,
   * block_size]) contiguous and the pointers to NULL: set k_scales and
   * v_scales to arrays of that many floats. (Since 0.6.) */
  float* k_scales;
  float* v_scales;
  mha_strides scale_strides;
} mha_kv_cache;

/* A contiguous cache [B, Hkv, capacity, D] (K) and [B, Hkv, capacity, Dv] (V). */
MHA_API void mha_kv_cache_init_sized(mha_kv_cache* cache, size_t struct_size, mha_dtype dtype, void* k,
                                     void* v, int64_t Hkv, int64_t capacity, int64_t D, int64_t Dv);
/* An inline wrapper over the exported *_sized
 * function with the caller's sizeof: an initializer never writes past the
 * caller's struct, whichever library version runs it. */
static inline void mha_kv_cache_init(mha_kv_cache* cache, mha_dtype dtype, void* k, void* v, int64_t Hkv,
                                     int64_t capacity, int64_t D, int64_t Dv) {
  mha_kv_cache_init_sized(cache, sizeof *cache, dtype, k, v, Hkv, capacity, D, Dv);
}

/* A paged cache whose pools are [num_blocks, Hkv, block_size, D] (K) and
 * [num_blocks, Hkv, block_size, Dv] (V), addressed through block_table
 * [B, max_blocks]: head-major blocks, as CPU engines keep them (OpenVINO's
 * and IPEX's paged attention), so that one head's rows of a block are one
 * contiguous run (block_size·D elements) that a decode step streams. For
 * token-major [num_blocks, block_size, Hkv, D] pools (vLLM's GPU layout) set
 * the strides to mha_strides_bthd(Hkv, block_size, D) afterwards: supported,
 * but each row of a head is then its own strided piece (measured 1.5–2.3×
 * slower for decode than head-major on an Intel Xeon, Hkv 8–32). */
MHA_API void mha_kv_cache_init_paged_sized(mha_kv_cache* cache, size_t struct_size, mha_dtype dtype,
                                           void* k_pool, void* v_pool, int64_t num_blocks,
                                           int64_t block_size, int64_t Hkv, int64_t D, int64_t Dv,
                                           const int32_t* block_table, int64_t max_blocks);
/* An inline wrapper over the exported *_sized
 * function with the caller's sizeof: an initializer never writes past the
 * caller's struct, whichever library version runs it. */
static inline void mha_kv_cache_init_paged(mha_kv_cache* cache, mha_dtype dtype, void* k_pool, void* v_pool,
                                           int64_t num_blocks, int64_t block_size, int64_t Hkv, int64_t D,
                                           int64_t Dv, const int32_t* block_table, int64_t max_blocks) {
  mha_kv_cache_init_paged_sized(cache, sizeof *cache, dtype, k_pool, v_pool, num_blocks, block_size, Hkv, D,
                                Dv, block_table, max_blocks);
}

/* int8 caches (MHA_DTYPE_INT8). K and V hold int8_t elements, and each row
 * (token, K/V head) one fp32 scale in k_scales / v_scales (laid out by
 * scale_strides, which the initializers set; set the two pointers). The
 * writers quantize each fp32 row x of n values symmetrically:
 *
 *   amax = max |x[i]|;  q[i] = x[i]·127/amax (in double) rounded to nearest,
 *   ties to even;  scale = amax/127 rounded to fp32;
 *
 * amax = 0 stores scale 0 and q 0; a row holding a NaN or an infinity
 * stores scale NaN and q 0 (the row reads NaN). Error: |q·scale − x| <=
 * amax·(1/254 + 2^−22) for a normal amax. Rounding to an integer is exact in
 * every rounding mode; the product x·127/amax is computed in the caller's
 * mode (the default gives the documented bytes on every machine). Reading,
 * every kernel set dequantizes a row as (float)q · scale (one rounding) into
 * an L1-resident fp32 tile per key block and runs the fp32 kernels on it: a
 * call over an int8 cache gives bitwise the fp32 call on the dequantized
 * values, as 16-bit caches do, and reads a quarter of the fp32 bytes (plus
 * 4 bytes of scale per row). */

/* The core (mha_attention_f32) with K and V read from a cache: entry b's keys
 * are the cache's tokens [0, Tk) (fewer with mask.kv_len, as usual); desc's k
 * and v strides are not used (the cache's are). Every mask, variant, GQA,
 * weights mode and lse works as in the core; Tk <= capacity (contiguous) or
 * Tk <= max_blocks·block_size (paged).
 *
 * Bits: the result is bitwise that of mha_attention_f32 on K and V widened
 * to fp32 (same desc), on every kernel set, whatever the layout: contiguous
 * and paged caches holding the same values give the same bits, for any
 * block size, table and thread count. So a 16-bit cache is exactly as
 * accurate as fp32 attention on its (rounded) values.
 *
 * Returns the core's statuses, plus NULL_POINTER (cache, its k, v or
 * block_table; an int8 cache's k_scales or v_scales), INVALID_ARGUMENT (dtype, block_size, a table slot outside
 * [0, num_blocks), Tk past the cache), INVALID_SIZE (capacity, num_blocks,
 * max_blocks < 1). desc->rotary rotates Q as the call reads it, query i of
 * entry b at kv_end(b) − Tq + i or rotary->positions [B·Tq] ("Rotary
 * embeddings"; a position outside the table is INVALID_ARGUMENT). A packed
 * variable-length batch over a cache:
 * mha_attention_varlen_kv_f32. */
MHA_API mha_status mha_attention_kv_f32(const mha_attention_desc* desc, const float* q,
                                        const mha_kv_cache* cache, float* out, float* weights);

/* mha_attention_kv_f32 with Q and out in dtype (MHA_DTYPE_F32, F16 or BF16;
 * the cache has its own type): a 16-bit Q is widened (exactly) as it is
 * packed, rotated there when desc->rotary asks, and each output row is
 * rounded once, so out = round(mha_attention_kv_f32 on the widened q),
 * bit for bit, weights and lse that call's (see mha_attention for the
 * rounding and its bound) — except in the BF16 form (a bf16 Q over a bf16
 * cache on a set with a BF16 unit: mha_attention's contract for it). The workspace is mha_attention_kv_workspace_size's.
 * Returns mha_attention_kv_f32's statuses, plus INVALID_ARGUMENT for another
 * dtype; the overlap rule counts q and out in elements of dtype. (Since 0.6.) */
MHA_API mha_status mha_attention_kv(const mha_attention_desc* desc, mha_dtype dtype, const void* q,
                                    const mha_kv_cache* cache, void* out, float* weights);

/* The workspace bytes mha_attention_kv_f32() needs: the core's for desc
 * (the layout and dtype of the cache do not change it). */
MHA_API mha_status mha_attention_kv_workspace_size(const mha_attention_desc* desc,
                                                   const mha_kv_cache* cache, int with_weights,
                                                   size_t* bytes);

/* A packed variable-length batch over a K/V cache: one call for a serving
 * engine's step, in which some sequences prefill a chunk and others decode
 * one token, all reading one cache (FlashAttention's flash_attn_varlen_func
 * with seqused_k and block_table; ONNX Runtime's GroupQueryAttention with
 * seqlens_k).
 *
 *   cu_seqlens_q [B + 1]: sequence b's queries are rows [cu_q[b], cu_q[b+1])
 *                of q and out, packed as in mha_attention_varlen_f32 (starts
 *                at 0, never decreases, each length <= desc->Tq).
 *   seqused_k [B]: sequence b's keys are tokens [0, seqused_k[b]) of cache
 *                entry b (contiguous: entry b of the pools; paged: row b of
 *                block_table), 0 <= seqused_k[b] <= desc->Tk. Only the table
 *                slots that cover those tokens are read and checked. Write a
 *                step's new K/V rows into the cache first (mha_kv_cache_write):
 *                a prefill chunk's own keys are the last len_q of its keys.
 *   desc         B = the number of sequences; Tq, Tk = bounds of the lengths
 *                (Tk <= the cache's capacity, or max_blocks·block_size);
 *                H, Hkv, D, Dv, scale, the masks' causal flag, alignment,
 *                window, ALiBi, soft-cap and sinks, num_threads, isa,
 *                threadpool, trace and workspace as in the core; rotary
 *                rotates Q at seqused_k[b] − len_q + i (or
 *                rotary->positions [total_q]; "Rotary embeddings"). desc's k
 *                and v views are not used (the cache's strides are); q's and
 *                out's head and row strides address the packed rows, their
 *                batch strides are not used; lse, when given, is [total_q, H].
 *                kv_len and the additive mask must be NULL; no weights output.
 *   masks        per sequence, with its own lengths: causal bottom-right (the
 *                default) puts query i of a chunk of len_q at position
 *                i + seqused_k[b] − len_q, so a prefill chunk is aligned to
 *                the end of its keys and a decode row sees them all.
 *
 * Schedule: one plan per sequence, by its real lengths: a one-token decode is
 * split over its keys as a decode call is, a prefill chunk over query blocks;
 * the sequences' work shares one parallel schedule.
 *
 * Bits: sequence b gets exactly the bits of mha_attention_kv_f32 on that
 * sequence alone (desc with B = 1, Tq = len_q, Tk = seqused_k[b], views at its
 * rows, and the cache's entry b as entry 0), and so of the fp32 core on the
 * cache's widened values: nothing else in the batch, the bounds Tq and Tk, the
 * layout, the block size or the thread count changes them. A sequence with no
 * keys outputs zeros and lse −inf (its sink's value with sinks); one with no
 * queries is skipped.
 *
 * Returns the varlen call's statuses (INVALID_ARGUMENT for bad cu_seqlens_q
 * or a seqused_k outside [0, Tk], naming the entry) and the cache call's
 * (NULL_POINTER, INVALID_ARGUMENT for the dtype, block size, a table slot
 * outside [0, num_blocks) or Tk past the cache, INVALID_SIZE); INVALID_STRIDE
 * when out or lse overlaps an input (q, the lengths, the cache, its table).
 * Nothing is written unless every check passes. */
MHA_API mha_status mha_attention_varlen_kv_f32(const mha_attention_desc* desc, const int32_t* cu_seqlens_q,
                                               const int32_t* seqused_k, const float* q,
                                               const mha_kv_cache* cache, float* out);

/* mha_attention_varlen_kv_f32 with q and out in dtype (MHA_DTYPE_F32, F16
 * or BF16; the cache has its own type): each sequence gets bitwise its own
 * mha_attention_kv call (see mha_attention_kv: the fp32 call on the widened
 * Q, each output rounded once). Returns mha_attention_varlen_kv_f32's
 * statuses, plus INVALID_ARGUMENT for another dtype; the overlap rule counts
 * q and out in elements of dtype. Its workspace is the one below. (Since 0.6.) */
MHA_API mha_status mha_attention_varlen_kv(const mha_attention_desc* desc, mha_dtype dtype,
                                           const int32_t* cu_seqlens_q, const int32_t* seqused_k, const void* q,
                                           const mha_kv_cache* cache, void* out);

/* The workspace bytes mha_attention_varlen_kv_f32() needs for these lengths
 * and num_threads (a function of the real lengths, not of Tq and Tk). */
MHA_API mha_status mha_attention_varlen_kv_workspace_size(const mha_attention_desc* desc,
                                                          const int32_t* cu_seqlens_q,
                                                          const int32_t* seqused_k,
                                                          const mha_kv_cache* cache, size_t* bytes);

/* ------------------------------------------------------------------------ */
/* Rotary embeddings (RoPE)                                                 */
/* ------------------------------------------------------------------------ */

/* How a head's rotated dimensions pair up (angle index i < dim/2). */
typedef enum mha_rotary_style {
  /* GPT-NeoX, Llama in Hugging Face's layout (rotate_half): dimension i
   * pairs with i + dim/2 */
  MHA_ROTARY_NEOX = 0,
  /* GPT-J, Meta's original Llama (interleaved): dimension 2i pairs with 2i + 1 */
  MHA_ROTARY_GPTJ = 1
} mha_rotary_style;

/* Rotary embeddings, applied to Q as the cache calls read it (desc->rotary)
 * and to K as the serving writers store it (their rotary argument), so the
 * cache holds rotated keys, as every engine's does. A row x of a head (D
 * values) at position p becomes x', for each pair (a, b) of angle index i
 * (style above):
 *
 *   x'[a] = x[a]·c − x[b]·s,   x'[b] = x[b]·c + x[a]·s,
 *   c = cos[p·dim/2 + i],      s = sin[p·dim/2 + i],
 *
 * each product rounded to fp32, then the difference or sum (never a fused
 * multiply-add: the same bits on every kernel set); dimensions dim .. D−1
 * pass unchanged (partial rotary). The caller's table holds the angles of
 * positions 0 .. n_positions−1, so any scaling (linear, NTK-aware, YaRN's
 * per-frequency factors and attention factor) is the table's:
 * mha_rotary_table_f32 fills one from θ.
 *
 * Positions: with positions NULL, each row's natural position — a cache
 * call's query row i of entry b is at kv_end(b) − Tq + i (kv_end =
 * mask.kv_len[b] or Tk; varlen: seqused_k[b] − len_q + i), the last tokens
 * of its keys, which the step writes just before; a writer's row j of
 * sequence b at pos[b] + j (write_slots needs positions). Else positions[r]
 * for row r: cache call [B·Tq] (entry-major), varlen call [total_q] (packed
 * rows), writers [total] / [n_tokens] (packed rows), mha_rotary_apply_f32
 * [n]. Every position must lie in [0, n_positions) (INVALID_ARGUMENT, naming
 * the row, before anything is written).
 *
 * Bits: Q rotated in the call equals Q rotated by mha_rotary_apply_f32 and
 * passed without one; K rotated by a writer equals K rotated by
 * mha_rotary_apply_f32 and written without one. The calls' bits promises
 * (threads, batch composition) hold with rotary. */
struct mha_rotary {
  size_t struct_size;       /* sizeof(mha_rotary), set by mha_rotary_init (see "ABI") */
  mha_rotary_style style;
  int64_t dim;              /* rotated dimensions of each head: even, 2 <= dim <= D */
  const float* cos;         /* [n_positions, dim/2], row-major */
  const float* sin;         /* [n_positions, dim/2], row-major */
  int64_t n_positions;      /* >= 1 */
  const int32_t* positions; /* NULL (natural positions) or one per row, as above */
};

/* Sets the fields, positions NULL. Never fails; the calls check. */
MHA_API void mha_rotary_init_sized(mha_rotary* rotary, size_t struct_size, mha_rotary_style style, int64_t dim,
                                   const float* cos, const float* sin, int64_t n_positions);
/* An inline wrapper over the exported *_sized function with the caller's
 * sizeof (see "ABI"). */
static inline void mha_rotary_init(mha_rotary* rotary, mha_rotary_style style, int64_t dim, const float* cos,
                                   const float* sin, int64_t n_positions) {
  mha_rotary_init_sized(rotary, sizeof *rotary, style, dim, cos, sin, n_positions);
}

/* Fills a table cos, sin [n_positions, dim/2]: for position p and index i,
 *
 *   angle = (p · position_scale) · f[i],   f[i] = inv_freq[i], or θ^(−2i/dim)
 *                                          when inv_freq is NULL,
 *   cos[p·dim/2 + i] = attn_factor · cos(angle), sin likewise,
 *
 * in double, rounded once to fp32 (Hugging Face computes the angle in fp32:
 * its tables differ from these in the last bits at large positions). Plain
 * RoPE: position_scale 1, attn_factor 1. Linear scaling by a factor:
 * position_scale 1/factor. NTK-aware: θ·factor^(dim/(dim−2)). YaRN and
 * Llama 3: their scaled frequencies as inv_freq [dim/2], and YaRN's
 * attention factor. Returns NULL_POINTER, INVALID_SIZE (dim odd or < 2,
 * n_positions < 1), INVALID_ARGUMENT (θ <= 0 or not finite without
 * inv_freq, a scale, factor or inv_freq not finite), SIZE_OVERFLOW,
 * INVALID_STRIDE (cos and sin overlap). */
MHA_API mha_status mha_rotary_table_f32(int64_t dim, int64_t n_positions, double theta, double position_scale,
                                        const float* inv_freq, double attn_factor, float* cos, float* sin);

/* Rotates n rows of H heads: x [n, H, D] (element (r, h, d) at
 * x[r·x_strides.row + h·x_strides.head + d]; the batch stride is not used)
 * into y likewise, row r at rotary->positions[r], or r when that is NULL. In
 * place when y == x with the same strides; otherwise y overlaps nothing it
 * reads. For Q of the calls that take no rotary, or K written with
 * mha_kv_cache_write. Returns NULL_POINTER, INVALID_SIZE, INVALID_ARGUMENT
 * (the rotary's fields, a position), INVALID_STRIDE, SIZE_OVERFLOW; writes
 * nothing unless every check passes. */
MHA_API mha_status mha_rotary_apply_f32(const mha_rotary* rotary, int64_t n, int64_t H, int64_t D, const float* x,
                                        mha_strides x_strides, float* y, mha_strides y_strides);

/* Appends rows to a cache: for every entry b < B, K/V head g < Hkv and
 * t < T, row t of k_new [B, Hkv, T, D] (strides k_new_strides, fp32) is
 * rounded to the cache's dtype (to nearest, ties to even; beyond the f16
 * range ±inf) and stored as the cache's token pos[b] + t of entry b; v_new
 * [B, Hkv, T, Dv] likewise. pos[b] >= 0 and pos[b] + T must fit the cache
 * (capacity, or max_blocks·block_size with every covering table slot in
 * [0, num_blocks)). Entries must not write the same block rows (no check).
 * Returns SUCCESS, NULL_POINTER, INVALID_SIZE, INVALID_ARGUMENT (dtype,
 * block size, pos, table), INVALID_STRIDE, SIZE_OVERFLOW. Writes nothing
 * unless every check passes. */
MHA_API mha_status mha_kv_cache_write(const mha_kv_cache* cache, int64_t B, int64_t Hkv, int64_t T,
                                      int64_t D, int64_t Dv, const int32_t* pos,
                                      const float* k_new, mha_strides k_new_strides,
                                      const float* v_new, mha_strides v_new_strides);

/* Writes a packed step's new rows into a cache, sequence by sequence, as a
 * serving engine appends (the writer beside mha_attention_varlen_kv_f32):
 * rows [cu_seqlens[b], cu_seqlens[b+1]) of k_new [total, Hkv, D] (element
 * (row i, head g, d) at k_new[i·k_new_strides.row + g·k_new_strides.head + d];
 * the batch stride is not used) become tokens pos[b], pos[b] + 1, ... of
 * cache entry b, rounded to the cache's dtype as mha_kv_cache_write rounds
 * (bitwise the same on every kernel set); v_new [total, Hkv, Dv] likewise.
 * cu_seqlens starts at 0 and never decreases; a sequence of length 0 writes
 * nothing. Each sequence's tokens must fit the cache (pos[b] >= 0, pos[b] +
 * len <= capacity or max_blocks·block_size) and, paged, every table slot that
 * covers them must be in [0, num_blocks). Sequences must not write the same
 * rows (no check; the later one stays). For a step of
 * mha_attention_varlen_kv_f32: pos[b] = seqused_k[b] − len_q[b].
 * rotary: NULL, or rotary embeddings applied to each K row before it is
 * rounded (V as is): row j of sequence b at position pos[b] + j, or
 * rotary->positions[row] ("Rotary embeddings"); D >= rotary->dim.
 * Returns SUCCESS, NULL_POINTER, INVALID_SIZE (B, Hkv, D, Dv < 1),
 * INVALID_ARGUMENT (cu_seqlens, a position, a table slot, the cache's
 * fields), INVALID_STRIDE (a view, or the cache over an input), SIZE_OVERFLOW.
 * Writes nothing unless every check passes. */
MHA_API mha_status mha_kv_cache_write_varlen(const mha_kv_cache* cache, int64_t B, int64_t Hkv, int64_t D,
                                             int64_t Dv, const int32_t* cu_seqlens, const int32_t* pos,
                                             const float* k_new, mha_strides k_new_strides, const float* v_new,
                                             mha_strides v_new_strides, const mha_rotary* rotary);

/* The same by slots, as vLLM's reshape_and_cache: row i of k_new and v_new
 * (packed as above, n_tokens rows) goes to slot slot_mapping[i] = block ·
 * block_size + row of a paged cache's pools, whatever the table says; a
 * negative slot is padding and writes nothing. Paged caches only (a
 * contiguous one is INVALID_ARGUMENT). Slots past num_blocks·block_size are
 * INVALID_ARGUMENT, naming the token. Two rows with the same slot: the later
 * one stays. rotary: NULL, or applied to each K row as in
 * mha_kv_cache_write_varlen, at rotary->positions[i] (a slot cannot tell a
 * position: positions NULL is INVALID_ARGUMENT). Returns as
 * mha_kv_cache_write_varlen; writes nothing unless every check passes. */
MHA_API mha_status mha_kv_cache_write_slots(const mha_kv_cache* cache, int64_t n_tokens, int64_t Hkv, int64_t D,
                                            int64_t Dv, const int32_t* slot_mapping, const float* k_new,
                                            mha_strides k_new_strides, const float* v_new,
                                            mha_strides v_new_strides, const mha_rotary* rotary);

/* Merges the partial results of disjoint key ranges of the same queries,
 * computed with an lse output, into the result over their union:
 *
 *   L = log Σ_p exp(lse_p[r]);  out[r, :] = Σ_p exp(lse_p[r] − L) · out_p[r, :]
 *
 * over parts p = 0 .. parts−1 in that order, so the bits are reproducible
 * for a fixed order of parts. rows = B·H·Tq rows of width Dv: outs[p] and
 * out are contiguous [rows, Dv], lses[p] and lse contiguous [rows]. A part
 * with lse −inf adds nothing (its out row is not read); a row that no part
 * sees gets zeros and lse −inf. lse may be NULL. out may be outs[0] itself
 * and lse lses[0] itself (in place); otherwise out and lse overlap no part
 * and each other (the overlap rule, "Strided views"; every part's pointers
 * are checked). A sink belongs to one part only (pass sinks to one range's
 * call). Returns SUCCESS, NULL_POINTER, INVALID_SIZE (parts, rows or Dv <
 * 1), INVALID_STRIDE (an overlap), SIZE_OVERFLOW. */
MHA_API mha_status mha_merge_f32(int64_t parts, int64_t rows, int64_t Dv, const float* const* outs,
                                 const float* const* lses, float* out, float* lse);

/* ------------------------------------------------------------------------ */
/* The full layer                                                           */
/* ------------------------------------------------------------------------ */

/* How the projection weights are laid out in memory. */
typedef enum mha_weight_layout {
  /* W is [in, out] row-major, Y = X·W (the textbook layout). */
  MHA_WEIGHTS_IN_OUT = 0,
  /* W is [out, in] row-major, Y = X·Wᵀ: PyTorch nn.Linear.weight. */
  MHA_WEIGHTS_OUT_IN = 1
} mha_weight_layout;

/* Describes a layer. Pointers are read only during mha_layer_create(): the
 * plan keeps packed copies, and the caller may free its weights after. */
typedef struct mha_layer_desc {
  size_t struct_size; /* sizeof(mha_layer_desc), set by mha_layer_desc_init (see "ABI") */
  int64_t d_model; /* width of X_q and of the output; >= 1 */
  int64_t d_kv;    /* width of X_k and X_v; 0 means d_model */
  int64_t H;       /* query heads; >= 1 */
  int64_t Hkv;     /* key/value heads; 0 means H; H % Hkv == 0 */
  int64_t D;       /* query/key head width; 0 means d_model / H (then d_model % H == 0) */
  int64_t Dv;      /* value head width; 0 means D */
  mha_weight_layout layout; /* layout of w_q, w_k, w_v, w_o */

  /* Separate projection weights (IN_OUT shapes shown; OUT_IN transposes):
   *   w_q [d_model, H·D], w_k [d_kv, Hkv·D], w_v [d_kv, Hkv·Dv],
   *   w_o [H·Dv, d_model] or NULL.
   * w_o == NULL gives the "wrapper" design: the output is the concatenation
   * of the heads, [B, Tq, H·Dv], with no output projection. */
  const float* w_q;
  const float* w_k;
  const float* w_v;
  const float* w_o;

  /* Alternatively PyTorch's packed nn.MultiheadAttention.in_proj_weight
   * [3·d_model, d_model] (always OUT_IN, rows q, k, v). When non-NULL,
   * w_q, w_k and w_v must be NULL; it requires d_kv == d_model,
   * Hkv == H and D == Dv == d_model / H. */
  const float* in_proj_weight;

  /* Optional biases (NULL: none): b_q [H·D], b_k [Hkv·D], b_v [Hkv·Dv],
   * b_o [d_model]; or in_proj_bias [3·d_model] together with in_proj_weight
   * (then b_q, b_k, b_v must be NULL). */
  const float* b_q;
  const float* b_k;
  const float* b_v;
  const float* b_o;
  const float* in_proj_bias;

  /* MHA_ISA_DEFAULT (0): pack for the process choice at create time; else
   * this plan's kernel set (UNSUPPORTED_ISA if unavailable). */
  mha_isa isa;
  /* The element type of every weight and bias above: MHA_DTYPE_F32 (0, the
   * default), or MHA_DTYPE_F16 / MHA_DTYPE_BF16 (a 16-bit checkpoint read in
   * place: the pointers then address uint16_t bits — pass them cast to
   * const float*; 2-byte alignment suffices). Each value is widened exactly
   * as it is packed: the plan is bit for bit the plan made from the widened
   * fp32 weights, and its packed panels are fp32 (twice the checkpoint's
   * bytes). Independent of mha_layer_args.dtype, the type of the inputs and
   * output — but bf16 weights on a set with a BF16 unit are also packed as
   * bf16, for the layer's BF16 form (below). Another value:
   * INVALID_ARGUMENT. (Since 0.6.) */
  mha_dtype dtype;
} mha_layer_desc;

/* Sets everything to 0 / NULL and struct_size: fill in the sizes and weights. */
MHA_API void mha_layer_desc_init_sized(mha_layer_desc* desc, size_t struct_size);
/* An inline wrapper over the exported *_sized
 * function with the caller's sizeof: an initializer never writes past the
 * caller's struct, whichever library version runs it. */
static inline void mha_layer_desc_init(mha_layer_desc* desc) { mha_layer_desc_init_sized(desc, sizeof *desc); }

/* An opaque plan: the packed weights and the kernel set they were packed for. */
typedef struct mha_layer mha_layer;

/* Validates desc and packs the weights. On success *layer is a new plan;
 * on failure *layer is set to NULL (if layer is non-NULL).
 * Returns SUCCESS, NULL_POINTER, INVALID_SIZE, INVALID_SHAPE,
 * INVALID_ARGUMENT (bad layout or dtype, mixed in_proj and separate weights),
 * SIZE_OVERFLOW, OUT_OF_MEMORY, UNKNOWN_ISA, UNSUPPORTED_ISA. */
MHA_API mha_status mha_layer_create(const mha_layer_desc* desc, mha_layer** layer);

/* Frees a plan. NULL is allowed. */
MHA_API void mha_layer_destroy(mha_layer* layer);

/* The width of the layer's output rows: d_model, or H·Dv when w_o is NULL. */
MHA_API int64_t mha_layer_output_width(const mha_layer* layer);

/* The kernel set the plan's weights were packed for; the plan always runs
 * with it, whatever mha_set_isa() says later. MHA_ISA_SCALAR for NULL. */
MHA_API mha_isa mha_layer_isa(const mha_layer* layer);

/* One forward pass. */
typedef struct mha_layer_args {
  size_t struct_size; /* sizeof(mha_layer_args), set by mha_layer_args_init (see "ABI") */
  int64_t B;        /* >= 1 */
  int64_t Tq;       /* query rows per batch entry; >= 1 */
  int64_t Tk;       /* key rows per batch entry; ignored (= Tq) for self-attention */
  const float* x_q; /* [B, Tq, d_model], contiguous */
  /* x_k: [B, Tk, d_kv], or NULL for self-attention (K and V from x_q; then
   *      d_kv must equal d_model). x_v: [B, Tk, d_kv], or NULL when values
   *      come from the same input as keys (one fused K/V projection). */
  const float* x_k;
  const float* x_v;
  float* out;       /* [B, Tq, mha_layer_output_width()], contiguous */
  mha_mask mask;    /* as in the core, over [B, H, Tq, Tk] */
  float* weights;   /* NULL, or the attention weights in weights_mode's layout
                       ([B, H, Tq, Tk] by default; see mha_weights_mode) */
  mha_weights_mode weights_mode;
  const int32_t* weights_heads; /* MHA_WEIGHTS_SELECTED: the heads, [weights_nheads] */
  int64_t weights_nheads;
  float scale;      /* 0: 1/sqrt(D) */
  int num_threads;  /* as in the core: 0 the default (OpenMP's, or the pool's), > 0 at most that many */
  /* NULL: the call allocates its buffers. Else a caller-owned buffer of
   * workspace_size bytes, at least mha_layer_workspace_size(): the call then
   * allocates nothing. One buffer per concurrent call. */
  void* workspace;
  size_t workspace_size;
  /* NULL, or a K/V cache (see "KV caches" above) that receives this call's
   * K and V projections: entry b's key row t (t < Tk) is stored as the
   * cache's token kv_pos[b] + t (kv_pos NULL: t), rounded to the cache's
   * dtype as mha_kv_cache_write does — a prefill that fills the cache for
   * the decode steps after it. The attention itself runs on the fp32
   * projections. The cache must not overlap the call's inputs, out,
   * weights or workspace (INVALID_STRIDE); every position and table slot is
   * checked before anything is written (INVALID_ARGUMENT). */
  const mha_kv_cache* kv_cache;
  const int32_t* kv_pos;
  /* NULL: OpenMP. Else the caller's pool runs the call's GEMMs and attention
   * (see "Threads"); num_threads 0 then means pool->num_threads. (Since 0.6.) */
  const mha_threadpool* threadpool;
  /* NULL, or a trace of the call's GEMM tiles and attention units (see
   * "Threads"). (Since 0.6.) */
  mha_trace* trace;
  /* The element type of x_q, x_k, x_v and out: MHA_DTYPE_F32 (0, the
   * default), or MHA_DTYPE_F16 / MHA_DTYPE_BF16, whose bits the four
   * pointers then address as uint16_t (pass them cast to float*; they need
   * only 2-byte alignment and are read and written as uint16_t). Each input
   * value is widened exactly as the chunk is projected, each output row
   * rounded once (to nearest even): out = round(the fp32 forward on the
   * widened inputs), bit for bit; weights and the K/V cache output as that
   * forward's — except for bf16 on a plan in the BF16 form (below). The
   * plan's weights are fp32 panels (16-bit weights: mha_layer_desc.dtype,
   * widened as they are packed). The
   * overlap rule counts their 2-byte elements; the workspace
   * (mha_layer_workspace_size, which reads dtype) grows by one chunk's
   * inputs and outputs in fp32. (Since 0.6.) */
  mha_dtype dtype;
} mha_layer_args;

/* The layer's BF16 form (since 0.6). A plan made from bf16 weights
 * (mha_layer_desc.dtype = MHA_DTYPE_BF16) for a kernel set with a BF16 unit
 * (MHA_ISA_NEON_BF16, MHA_ISA_AVX512_BF16) also packs them as bf16 for the unit, and a forward
 * with args.dtype = MHA_DTYPE_BF16 then runs on it:
 *   - the projections: the bf16 inputs times the bf16 weights (each product
 *     exact) summed in fp32 by the unit, + the bias in fp32;
 *   - Q, K and V rounded once to bf16 (to nearest even);
 *   - the core's BF16 form on them (see mha_attention), its output rounded to
 *     bf16 (the concatenated heads; without W_o, the call's out);
 *   - the output projection on the unit from that concatenation, + b_o, each
 *     value rounded once.
 * Its error against the exact layer on the bf16 inputs and weights is the
 * fp32 forward's bound with Q, K, V and the concatenation each perturbed by
 * half an ulp of bf16 (at most 2^−8 relative), plus the core's BF16 term
 * (2^−8·max|v|), plus half an ulp of each output. Attention weights are fp32,
 * from the core's BF16 scores; a K/V cache output receives the fp32
 * projections rounded to its dtype (for a bf16 cache: the K and V the
 * attention read). Bits are identical for any thread count, chunking and
 * batch composition; they are not the widening path's. The plan's other
 * forwards (fp32, f16 inputs) use its fp32 panels as on every set; the
 * workspace grows by the bf16 Q, K, V and one packed input
 * (mha_layer_workspace_size reads dtype). */

/* Sets everything to 0 / NULL and struct_size: self-attention, no mask,
 * default scale. */
MHA_API void mha_layer_args_init_sized(mha_layer_args* args, size_t struct_size);
/* An inline wrapper over the exported *_sized
 * function with the caller's sizeof: an initializer never writes past the
 * caller's struct, whichever library version runs it. */
static inline void mha_layer_args_init(mha_layer_args* args) { mha_layer_args_init_sized(args, sizeof *args); }

/* out = concat_h(attention(X_q·W_q + b_q, X_k·W_k + b_k, X_v·W_v + b_v)_h) · W_o + b_o
 * with head h of Q being columns [h·D, (h+1)·D) of X_q·W_q (a view: heads
 * are never copied apart), and the core's masks and GQA rule. The batch
 * runs in chunks of whole entries, so the workspace (allocated per call
 * unless args->workspace is given) holds the projections of as many entries
 * as fit in 16 MiB, at least one: O(Tq + Tk)·(H·D + Hkv·(D + Dv)) floats per
 * entry, plus the core's workspace; no Tq × Tk buffer unless args->weights
 * is given.
 * Returns the core's statuses plus NULL_POINTER for a NULL layer/args/x_q/out. */
MHA_API mha_status mha_layer_forward(const mha_layer* layer, const mha_layer_args* args);

/* The workspace bytes mha_layer_forward(layer, args) needs for args' B, Tq,
 * Tk, inputs (self or cross), weights and num_threads: one chunk of batch
 * entries' projections (see mha_layer_forward), the GEMM's packing space and
 * the core's workspace. Checks args like the call (data pointers aside). */
MHA_API mha_status mha_layer_workspace_size(const mha_layer* layer, const mha_layer_args* args,
                                            size_t* bytes);

/* Create, forward once, destroy. */
MHA_API mha_status mha_layer_forward_once(const mha_layer_desc* desc, const mha_layer_args* args);

/* ------------------------------------------------------------------------ */
/* Textbook helpers                                                         */
/* ------------------------------------------------------------------------ */

/* Split heads: x [B, T, H·D] → out [B, H, T, D] (a copy, for teaching and
 * for engines that want the BHTD layout; the layer itself never copies). */
MHA_API mha_status mha_split_heads_f32(int64_t B, int64_t T, int64_t H, int64_t D,
                                       const float* x, float* out);

/* Combine heads: x [B, H, T, D] → out [B, T, H·D]; the inverse of the above. */
MHA_API mha_status mha_combine_heads_f32(int64_t B, int64_t T, int64_t H, int64_t D,
                                         const float* x, float* out);

#ifdef __cplusplus
}
#endif

#endif /* MHA_H */
