/*
 * The benchmark bodies' shared declarations: C, included by the C bodies and
 * by the one C++ file (main.cc) that registers them with Google Benchmark.
 *
 * Nothing here times anything: Google Benchmark does. Every body is a
 * setup (untimed, checks the output once), a run (the timed call) and a
 * teardown.
 */
#ifndef MHA_BENCH_H
#define MHA_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "mha.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Shapes and presets (presets.c)                                           */
/* ------------------------------------------------------------------------ */

typedef enum mha_bench_mode {
  MHA_BENCH_SMOKE = 0, /* tiny shapes, every code path once (CI) */
  MHA_BENCH_QUICK = 1, /* the default: about two minutes on 2 cores */
  MHA_BENCH_FULL = 2   /* every preset at its real size and every thread count */
} mha_bench_mode;

typedef enum mha_bench_kind {
  MHA_BENCH_LAYER = 0, /* the full layer: projections, attention, output projection */
  MHA_BENCH_CORE = 1   /* the attention core alone (mha_attention_f32) */
} mha_bench_kind;

/* Case flags. */
enum {
  MHA_BENCH_SWEEP = 1u << 0,   /* quick mode sweeps threads 1, 2, 4, …, all (else all only) */
  MHA_BENCH_BIG = 1u << 1,     /* quick mode leaves the wrapper layout out */
  MHA_BENCH_HEADS = 1u << 2,   /* the heads study: mha against its wrapper layout only,
                                  every thread count in full mode, 1 and all in quick */
  MHA_BENCH_DECODE = 1u << 3,  /* memory bound: report GBps of K and V read */
  MHA_BENCH_VARIANT = 1u << 4, /* attention variants (window, ALiBi, soft-cap, sinks): mha
                                  only (the C peers have none; bench/peers.py has PyTorch) */
  MHA_BENCH_KVCACHE = 1u << 5, /* K/V from a cache (kv_dtype, page): mha only, fp32 twin beside */
  MHA_BENCH_STOLEN = 1u << 6,  /* the stolen-core rows: all threads only, mha on OpenMP and on the
                                  reference pthread pool, quiet or with a core taken (busy) */
  MHA_BENCH_PAST_L3 = 1u << 7, /* Tk sized at run time so that K and V (fp32) hold at least 4×
                                  this CPU's L3 (never below the table's Tk): decode from DRAM,
                                  so that % of the read probe means DRAM on every CPU */
  MHA_BENCH_IO16 = 1u << 8     /* Q, K, V and out in kv_dtype through mha_attention (f16, bf16;
                                  fp32: the core): mha only */
};

/* One benchmarked shape. For a layer, Tq == Tk == T (self-attention),
 * D = Dv = d_model / H, the weights are d_model × (H·D) etc. For the core,
 * d_model is 0. */
typedef struct mha_bench_shape {
  const char* preset; /* bert_base, gpt2, llama_prefill, long_core, decode, decode_dram, heads, … */
  mha_bench_kind kind;
  int64_t B, H, Hkv, Tq, Tk, D, d_model;
  int causal;
  unsigned flags;
  /* the core's variants (mha_mask): 0 = off */
  int64_t window; /* > 0: a row sees its `window` latest keys (left = window − 1, right = 0) */
  float softcap;  /* > 0: logit soft-cap */
  int alibi;      /* 1: ALiBi with the usual slopes 2^(−8(h+1)/H) */
  int sinks;      /* 1: one sink logit per head */
  /* K/V caches (MHA_BENCH_KVCACHE): element type, paging, batch lengths */
  int kv_dtype;   /* an mha_dtype: 0 fp32, 1 f16, 2 bf16 (K and V, and with MHA_BENCH_IO16
                     Q and out, hold values of that type) */
  int64_t page;   /* 0: contiguous; else tokens per block of a paged cache (shuffled blocks) */
  int mixed;      /* 1: entry b holds Tk − ⌊b·Tk / 2B⌋ keys (mask.kv_len); 0: all Tk */
  /* 1: a thread spins on the process's first CPU while this shape's rows run
   * (busy-core.c), from the benchmark's setup to its teardown */
  int busy;
} mha_bench_shape;

/* The keys entry b of a shape holds (Tk, or less for mixed lengths). */
int64_t mha_bench_kv_len(const mha_bench_shape* s, int64_t b);

/* The bytes of the L3 that CPU 0 shares (sysfs, else sysconf), or 32 MiB if
 * neither says. */
size_t mha_bench_l3_bytes(void);

/* The cases of a mode, in the order they run. */
size_t mha_bench_presets(mha_bench_mode mode, const mha_bench_shape** shapes);

/* ------------------------------------------------------------------------ */
/* Work counts (flops.c)                                                    */
/* ------------------------------------------------------------------------ */

/* (query, key) pairs of one head that the mask leaves visible (window 0: none). */
double mha_bench_visible_pairs(int64_t Tq, int64_t Tk, int causal, int64_t window);
/* Useful FLOPs of one forward pass of the shape (the formula is in flops.c). */
double mha_bench_flops(const mha_bench_shape* s);
/* Bytes of K and V one pass of the core reads at least once (decode's floor),
 * at the shape's K/V element size and lengths. */
double mha_bench_kv_bytes(const mha_bench_shape* s);

/* ------------------------------------------------------------------------ */
/* Errors (bench-data.c)                                                    */
/* ------------------------------------------------------------------------ */

/* Formats a message into the bench's error buffer and returns -1. */
int mha_bench_fail(const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* The last message of mha_bench_fail(). */
const char* mha_bench_error(void);

/* ------------------------------------------------------------------------ */
/* Inputs and the reference output of one shape (bench-data.c)              */
/* ------------------------------------------------------------------------ */

typedef struct mha_bench_data {
  mha_bench_shape s;
  /* layer: x [B, T, d_model]; weights in nn.Linear layout (MHA_WEIGHTS_OUT_IN):
   * w_q [H·D, d_model], w_k and w_v [Hkv·D, d_model], w_o [d_model, H·D] */
  float *x, *w_q, *w_k, *w_v, *w_o;
  /* core: q [B, H, Tq, D], k and v [B, Hkv, Tk, D] (contiguous BHTD) */
  float *q, *k, *v;
  /* mha's own output on the kernel set in use: what every peer is checked against */
  float* ref;
  size_t out_len;
} mha_bench_data;

/* Fills the inputs with a fixed seed and computes the reference with mha
 * (active ISA, `threads` threads). Returns 0, or -1 (mha_bench_error()). */
int mha_bench_data_create(const mha_bench_shape* s, int threads, mha_bench_data** out);
void mha_bench_data_destroy(mha_bench_data* d);

/* x[0..n) rounded to the 16-bit type dt (f16 or bf16; to nearest even) into a
 * new array (NULL when out of memory); y[0..n) = x[0..n) widened from dt. */
uint16_t* mha_bench_narrow16(const float* x, size_t n, int dt);
void mha_bench_widen16(const uint16_t* x, size_t n, int dt, float* y);

/* Compares an output with the reference: normalized MSE
 * Σ(out − ref)² / Σ ref² <= limit and every element finite where ref is.
 * Returns 0, or -1 with the reason (mha_bench_error()). */
int mha_bench_check(const char* who, const float* out, const float* ref, size_t n, double limit);
/* The limit of a row: 1e-5 (fp32 reassociation stays orders below it); 1e-4
 * for a 16-bit row, whose output is rounded to its type (NMSE about 3e-6
 * for bf16) and, in a BF16 form, its Q, K, V, P and heads too. */
#define MHA_BENCH_NMSE_LIMIT 1e-5
#define MHA_BENCH_NMSE_LIMIT_16 1e-4
/* The normalized MSE of the last mha_bench_check() (infinity if it found a
 * non-finite element). */
double mha_bench_last_nmse(void);

/* ------------------------------------------------------------------------ */
/* Implementations under test: mha and its peers                            */
/* ------------------------------------------------------------------------ */

/* One implementation of a layer or a core. setup builds what the timed run
 * needs (plans, buffers) outside the timed loop; run is the timed call;
 * output is the buffer run wrote. */
typedef struct mha_bench_impl {
  const char* name; /* mha, mha_scalar, mha_wrapper, blas */
  mha_bench_kind kind;
  int (*setup)(const mha_bench_data* d, int threads, void** state);
  int (*run)(void* state); /* 0, or -1 (mha_bench_error()) */
  const float* (*output)(const void* state);
  void (*teardown)(void* state);
  const char* (*label)(void); /* what runs: an ISA name, "openblas-pthread", ... */
} mha_bench_impl;

extern const mha_bench_impl mha_bench_layer;         /* bench-layer.c: mha_layer_forward */
extern const mha_bench_impl mha_bench_layer_scalar;  /* the same, plan made on MHA_ISA_SCALAR */
extern const mha_bench_impl mha_bench_wrapper;       /* bench-wrapper.c: H single-head layers */
extern const mha_bench_impl mha_bench_core;          /* bench-core.c: mha_attention_f32 */
extern const mha_bench_impl mha_bench_core_scalar;   /* the same on MHA_ISA_SCALAR */
/* the same on the reference pthread pool (examples/threadpool/pthread-pool.c,
 * desc.threadpool), made with `threads` threads in setup, destroyed at teardown */
extern const mha_bench_impl mha_bench_core_pool;
extern const mha_bench_impl mha_bench_core_kv;       /* bench-kv.c: mha_attention_kv_f32 */
extern const mha_bench_impl mha_bench_core_16;       /* bench-core16.c: mha_attention, 16-bit */
extern const mha_bench_impl mha_bench_layer_16;      /* bench-layer16.c: the layer, 16-bit weights, x, out */
/* peer-blas.c; both NULL-named (name == NULL) when built without BLAS */
extern const mha_bench_impl mha_bench_blas_layer;
extern const mha_bench_impl mha_bench_blas_core;

/* What the BLAS peer links: "OpenBLAS 0.3.21 ... (pthread)" or "none". */
const char* mha_bench_blas_info(void);

/* OpenMP's thread count (OMP_NUM_THREADS, else the cores) and the cores. */
int mha_bench_max_threads(void);
int mha_bench_cores(void);

/* The ISA mha uses now ("scalar", "avx2", ...), or "error: ..." */
const char* mha_bench_active_isa(void);

/* ------------------------------------------------------------------------ */
/* A stolen core (busy-core.c)                                              */
/* ------------------------------------------------------------------------ */

/* One thread spinning on an atomic flag, pinned (pthread_setaffinity_np) to
 * the process's first CPU, as another process that takes a core would. */
typedef struct mha_bench_busy mha_bench_busy;
/* The lowest CPU of the process's affinity mask (sched_getaffinity). */
int mha_bench_busy_first_cpu(void);
/* Starts the thread and returns once it is pinned and spinning: 0, or an
 * errno value (pthread_create's, pthread_setaffinity_np's). */
int mha_bench_busy_start(mha_bench_busy** out);
int mha_bench_busy_cpu(const mha_bench_busy* b);
/* Stops the thread, joins it, frees; NULL does nothing. */
void mha_bench_busy_stop(mha_bench_busy* b);

/* ------------------------------------------------------------------------ */
/* Micro-kernels through the kernel table (bench-ukernel.c)                 */
/* ------------------------------------------------------------------------ */

/* One micro-kernel call of an ISA's table:
 *   GEMM     the tile C[m×n] = A[m×k]·B[k×n], m <= MR, n <= NR, B a packed panel
 *   GEMM_NT  the dot-product tile C[m×n] = A[m×k]·B[n×k]ᵀ (queries against keys)
 *   SOFTMAX  the online-softmax row step over n keys (m, k unused) */
typedef struct mha_bench_ukernel mha_bench_ukernel;
enum { MHA_BENCH_UK_GEMM = 0, MHA_BENCH_UK_GEMM_NT = 1, MHA_BENCH_UK_SOFTMAX = 2 };

/* NULL when the ISA is not built or the CPU lacks it (the bench is skipped). */
mha_bench_ukernel* mha_bench_ukernel_create(mha_isa isa, int kernel, size_t m, size_t n, size_t k);
void mha_bench_ukernel_run(mha_bench_ukernel* u);
void mha_bench_ukernel_destroy(mha_bench_ukernel* u);
/* The kernel's name as in kernels/ (f32_gemm_4x8__scalar, ...), the table's
 * tile and blocks (all 0 for an absent ISA), and the work per call: FLOPs
 * (GEMM tiles) or elements (softmax). */
const char* mha_bench_ukernel_name(mha_isa isa, int kernel, char* buf, size_t len);
void mha_bench_ukernel_tile(mha_isa isa, size_t* mr, size_t* nr, size_t* kc, size_t* nk,
                            int* has_nt);
double mha_bench_ukernel_work(const mha_bench_ukernel* u);

/* ------------------------------------------------------------------------ */
/* Machine probes (peak-probe*.c, membw-probe.c)                            */
/* ------------------------------------------------------------------------ */

/* The FMA probe of an ISA: 1 if built in and the CPU runs it. Only the
 * x86 probes exist (avx2 = AVX2 + FMA, avx512f). */
int mha_bench_fma_available(mha_isa isa);
/* Runs `reps` rounds of independent FMAs on `threads` OpenMP threads and
 * returns the FLOPs executed (2 per lane per FMA). */
double mha_bench_fma_run(mha_isa isa, int threads, int64_t reps);
/* The same for a BF16 unit's dot products (the BF16 form's peak): only
 * avx512_bf16 (vdpbf16ps, 4 FLOPs per lane); returns the FLOPs executed */
int mha_bench_dp_bf16_available(mha_isa isa);
double mha_bench_dp_bf16_run(mha_isa isa, int threads, int64_t reps);

/* A read-only pass over a buffer of `bytes` (first touched by the threads
 * that read it). */
typedef struct mha_bench_membw mha_bench_membw;
mha_bench_membw* mha_bench_membw_create(size_t bytes, int threads);
/* One pass; returns the bytes read. */
double mha_bench_membw_run(mha_bench_membw* m);
void mha_bench_membw_destroy(mha_bench_membw* m);

#ifdef __cplusplus
}
#endif

#endif
