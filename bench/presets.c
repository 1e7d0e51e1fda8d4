/*
 * The named presets: real model shapes (quick and full modes) and their tiny
 * twins (smoke mode: the same code paths in milliseconds). Which peers and
 * thread counts run, and what quick mode skips, is decided in main.cc.
 */
#include <stdio.h>
#include <unistd.h>

#include "bench.h"

#define LAYER(name, B, H, Hkv, T, dm, causal, flags) \
  {name, MHA_BENCH_LAYER, B, H, Hkv, T, T, (dm) / (H), dm, causal, flags, 0, 0.0f, 0, 0, 0, 0, 0, 0}
#define CORE(name, B, H, Hkv, Tq, Tk, D, causal, flags) \
  {name, MHA_BENCH_CORE, B, H, Hkv, Tq, Tk, D, 0, causal, flags, 0, 0.0f, 0, 0, 0, 0, 0, 0}
/* a causal self-attention core with variants: window, soft-cap, ALiBi, sinks */
#define VAR(name, H, Hkv, T, D, window, softcap, alibi, sinks) \
  {name, MHA_BENCH_CORE, 1, H, Hkv, T, T, D, 0, 1, MHA_BENCH_VARIANT, window, softcap, alibi, sinks, 0, 0, 0, 0}
/* a decode step (B 1, Tq 1) at all threads, quiet (busy 0) or with a thread
 * spinning on the first CPU (busy 1): the stolen-core rows (issue #21) */
#define STOLEN(H, Hkv, Tk, D, busy)                                                             \
  {"stolen_core", MHA_BENCH_CORE, 1, H, Hkv, 1, Tk, D, 0, 0, MHA_BENCH_DECODE | MHA_BENCH_STOLEN, \
   0, 0.0f, 0, 0, 0, 0, 0, busy}

/* the core over a K/V cache: element type (0 fp32, 1 f16, 2 bf16), page
 * (0 contiguous, else tokens per block), mixed lengths */
#define KVC(name, B, H, Hkv, Tq, Tk, D, causal, dtype, page, mixed)                                    \
  {name, MHA_BENCH_CORE, B, H, Hkv, Tq, Tk, D, 0, causal,                                              \
   MHA_BENCH_KVCACHE | ((Tq) == 1 ? MHA_BENCH_DECODE : 0), 0, 0.0f, 0, 0, dtype, page, mixed, 0}

/* the core with Q, K, V and out in a 16-bit type (mha_attention; 0: fp32, the core) */
#define C16(name, B, H, Hkv, T, D, causal, dtype) \
  {name, MHA_BENCH_CORE, B, H, Hkv, T, T, D, 0, causal, MHA_BENCH_IO16, 0, 0.0f, 0, 0, dtype, 0, 0, 0}
/* the layer with weights, x and out in a 16-bit type (0: fp32, the layer) */
#define L16(name, B, H, Hkv, T, dm, causal, dtype) \
  {name, MHA_BENCH_LAYER, B, H, Hkv, T, T, (dm) / (H), dm, causal, MHA_BENCH_IO16, 0, 0.0f, 0, 0, dtype, 0, 0, 0}

enum {
  SWEEP = MHA_BENCH_SWEEP,
  BIG = MHA_BENCH_BIG,
  HEADS = MHA_BENCH_HEADS,
  DEC = MHA_BENCH_DECODE,
  DRAM = MHA_BENCH_PAST_L3
};

/* not const: mha_bench_presets sizes the DRAM rows' Tk once, from the L3 */
static mha_bench_shape mha_bench_real[] = {
    /*      preset           B  H   Hkv  T     d_model causal */
    LAYER("bert_base",       1, 12, 12,  512,  768,  0, SWEEP),
    LAYER("bert_base",       8, 12, 12,  512,  768,  0, BIG),
    LAYER("gpt2",            1, 12, 12,  1024, 768,  1, SWEEP),
    LAYER("llama_prefill",   1, 32, 32,  2048, 4096, 1, BIG),
    LAYER("llama_prefill",   1, 32, 8,   2048, 4096, 1, BIG), /* the GQA twin */
    /*      preset           B  H   Hkv  Tq    Tk    D    causal */
    CORE("long_core",        1, 8,  8,   8192, 8192, 64,  0, BIG),
    CORE("decode",           1, 32, 32,  1,    4096, 128, 0, SWEEP | DEC),
    CORE("decode",           1, 32, 8,   1,    4096, 128, 0, SWEEP | DEC),
    /* decode from DRAM: K and V at least 4× the L3 (Tk from the CPU at run time;
     * 4096 and 16384 on a 32 MiB L3), issue #20's "% of the read probe" rows */
    CORE("decode_dram",      1, 32, 32,  1,    4096, 128, 0, SWEEP | DEC | DRAM),
    CORE("decode_dram",      1, 32, 8,   1,    4096, 128, 0, SWEEP | DEC | DRAM),
    /* the heads study: d_model 768, T 512, head width 768 / H */
    LAYER("heads",           1, 1,  1,   512,  768,  0, HEADS),
    LAYER("heads",           1, 2,  2,   512,  768,  0, HEADS),
    LAYER("heads",           1, 4,  4,   512,  768,  0, HEADS),
    LAYER("heads",           1, 8,  8,   512,  768,  0, HEADS),
    LAYER("heads",           1, 12, 12,  512,  768,  0, HEADS),
    LAYER("heads",           1, 16, 16,  512,  768,  0, HEADS),
    LAYER("heads",           1, 24, 24,  512,  768,  0, HEADS),
    LAYER("heads",           1, 48, 48,  512,  768,  0, HEADS),
    /* the variants: each alone against none on one shape (their cost) ... */
    /*   preset          H   Hkv  T      D    window softcap alibi sinks */
    VAR("var_none",      8,  8,   4096,  64,  0,     0.0f,   0,    0),
    VAR("var_window",    8,  8,   4096,  64,  1024,  0.0f,   0,    0),
    VAR("var_alibi",     8,  8,   4096,  64,  0,     0.0f,   1,    0),
    VAR("var_softcap",   8,  8,   4096,  64,  0,     50.0f,  0,    0),
    VAR("var_sinks",     8,  8,   4096,  64,  0,     0.0f,   0,    1),
    VAR("var_all",       8,  8,   4096,  64,  1024,  50.0f,  1,    1),
    /* ... models that use them: Gemma 2 (window 4096 + soft-cap 50, GQA,
     * D 256) and gpt-oss (sinks; window 128 on alternate layers) ... */
    VAR("gemma2",        16, 8,   8192,  256, 4096,  50.0f,  0,    0),
    VAR("gpt_oss_local", 64, 8,   4096,  64,  128,   0.0f,   0,    1),
    VAR("gpt_oss_global",64, 8,   4096,  64,  0,     0.0f,   0,    1),
    /* ... and a sliding window's cost against T: T·window, not T² */
    VAR("window_scaling", 8, 8,   4096,  64,  4096,  0.0f,   0,    0),
    VAR("window_scaling", 8, 8,   8192,  64,  4096,  0.0f,   0,    0),
    VAR("window_scaling", 8, 8,   16384, 64,  4096,  0.0f,   0,    0),
    VAR("window_scaling", 8, 8,   32768, 64,  4096,  0.0f,   0,    0),
    /* K/V caches: decode from fp32, f16 and bf16 caches, contiguous and paged
     * (the fp32 contiguous row is the baseline of each group) ... */
    /*   preset        B   H   Hkv Tq    Tk     D    causal dtype page mixed */
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     0,    0,   0),
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     1,    0,   0),
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     2,    0,   0),
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     1,    16,  0),
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     1,    32,  0),
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     1,    128, 0),
    KVC("kv_decode",   1,  32, 32, 1,    4096,  128, 0,     0,    32,  0),
    KVC("kv_decode",   1,  32, 8,  1,    32768, 128, 0,     0,    0,   0),
    KVC("kv_decode",   1,  32, 8,  1,    32768, 128, 0,     1,    0,   0),
    KVC("kv_decode",   1,  32, 8,  1,    32768, 128, 0,     2,    0,   0),
    KVC("kv_decode",   1,  32, 8,  1,    32768, 128, 0,     1,    32,  0),
    KVC("kv_decode",   16, 32, 8,  1,    4096,  128, 0,     0,    0,   1),
    KVC("kv_decode",   16, 32, 8,  1,    4096,  128, 0,     1,    0,   1),
    KVC("kv_decode",   16, 32, 8,  1,    4096,  128, 0,     2,    0,   1),
    KVC("kv_decode",   16, 32, 8,  1,    4096,  128, 0,     1,    32,  1),
    /* ... and prefill from a 16-bit cache (conversions behind the FMAs) */
    KVC("kv_prefill",  1,  32, 8,  2048, 2048,  128, 1,     0,    0,   0),
    KVC("kv_prefill",  1,  32, 8,  2048, 2048,  128, 1,     1,    0,   0),
    KVC("kv_prefill",  1,  32, 8,  2048, 2048,  128, 1,     2,    0,   0),
    KVC("kv_prefill",  1,  32, 8,  2048, 2048,  128, 1,     1,    32,  0),
    /* the same prefill with Q, K, V and out in f16 / bf16 (issue #23; the
     * kernel sets widen: the 16-bit types' cost against fp32) */
    C16("attn16",      1,  32, 8,  2048,        128, 1,     0),
    C16("attn16",      1,  32, 8,  2048,        128, 1,     1),
    C16("attn16",      1,  32, 8,  2048,        128, 1,     2),
    /* ... and unmasked at the long_core shape (D 64: the softmax's share is twice D 128's) */
    C16("attn16",      1,  8,  8,  8192,        64,  0,     0),
    C16("attn16",      1,  8,  8,  8192,        64,  0,     2),
    /* the gpt2 layer with weights, x and out in f16 / bf16 (a bf16 checkpoint
     * served in bf16; on neon_bf16 and avx512_bf16 the bf16 row is the layer's BF16 form) */
    L16("layer16",     1,  12, 12, 1024,  768,       1,     0),
    L16("layer16",     1,  12, 12, 1024,  768,       1,     1),
    L16("layer16",     1,  12, 12, 1024,  768,       1,     2),
    /* ... and the bert_base shape (B 8, T 512, unmasked) */
    L16("layer16",     8,  12, 12, 512,   768,       0,     0),
    L16("layer16",     8,  12, 12, 512,   768,       0,     2),
    /* ... and llama_prefill's GQA layer (d_model 4096: the BF16 form's
     * projections take K in chunks on avx512_bf16) */
    L16("layer16",     1,  32, 8,  2048,  4096,      1,     0),
    L16("layer16",     1,  32, 8,  2048,  4096,      1,     2),
    /* a stolen core: decode (as above, Hkv 8) and a tiny decode that gets few
     * workers, each quiet and with CPU 0 busy, on OpenMP and on a pthread pool */
    /*      H   Hkv  Tk    D    busy */
    STOLEN(32, 8,   4096, 128, 0),
    STOLEN(32, 8,   4096, 128, 1),
    STOLEN(8,  8,   256,  64,  0),
    STOLEN(8,  8,   256,  64,  1),
};

/* Tiny twins: odd sizes around the tiles (T 33 and 80 cross a 32- and a
 * 64-key block), the same masks, GQA ratios and heads as the real ones. */
static const mha_bench_shape mha_bench_tiny[] = {
    LAYER("bert_base",       1, 4,  4,   16,   64,   0, SWEEP),
    LAYER("bert_base",       2, 4,  4,   16,   64,   0, BIG),
    LAYER("gpt2",            1, 4,  4,   24,   48,   1, SWEEP),
    LAYER("llama_prefill",   1, 8,  8,   33,   128,  1, BIG),
    LAYER("llama_prefill",   1, 8,  2,   33,   128,  1, BIG),
    CORE("long_core",        1, 2,  2,   80,   80,   16,  0, BIG),
    CORE("decode",           1, 8,  8,   1,    100,  32,  0, SWEEP | DEC),
    CORE("decode",           1, 8,  2,   1,    100,  32,  0, SWEEP | DEC),
    CORE("decode_dram",      1, 8,  2,   1,    100,  32,  0, SWEEP | DEC),
    LAYER("heads",           1, 1,  1,   16,   48,   0, HEADS),
    LAYER("heads",           1, 2,  2,   16,   48,   0, HEADS),
    LAYER("heads",           1, 4,  4,   16,   48,   0, HEADS),
    LAYER("heads",           1, 8,  8,   16,   48,   0, HEADS),
    LAYER("heads",           1, 12, 12,  16,   48,   0, HEADS),
    LAYER("heads",           1, 16, 16,  16,   48,   0, HEADS),
    LAYER("heads",           1, 24, 24,  16,   48,   0, HEADS),
    LAYER("heads",           1, 48, 48,  16,   48,   0, HEADS),
    VAR("var_none",      4,  4,   80,    16,  0,     0.0f,   0,    0),
    VAR("var_window",    4,  4,   80,    16,  20,    0.0f,   0,    0),
    VAR("var_alibi",     4,  4,   80,    16,  0,     0.0f,   1,    0),
    VAR("var_softcap",   4,  4,   80,    16,  0,     5.0f,   0,    0),
    VAR("var_sinks",     4,  4,   80,    16,  0,     0.0f,   0,    1),
    VAR("var_all",       4,  4,   80,    16,  20,    5.0f,   1,    1),
    VAR("gemma2",        4,  2,   80,    32,  33,    5.0f,   0,    0),
    VAR("gpt_oss_local", 8,  2,   80,    16,  9,     0.0f,   0,    1),
    VAR("gpt_oss_global",8,  2,   80,    16,  0,     0.0f,   0,    1),
    VAR("window_scaling", 2, 2,   80,    16,  20,    0.0f,   0,    0),
    VAR("window_scaling", 2, 2,   160,   16,  20,    0.0f,   0,    0),
    KVC("kv_decode",   1,  8,  2,  1,    100,   32,  0,     0,    0,   0),
    KVC("kv_decode",   1,  8,  2,  1,    100,   32,  0,     1,    0,   0),
    KVC("kv_decode",   1,  8,  2,  1,    100,   32,  0,     2,    16,  0),
    KVC("kv_decode",   3,  8,  2,  1,    100,   32,  0,     1,    32,  1),
    KVC("kv_prefill",  1,  8,  2,  80,   80,    32,  1,     2,    16,  0),
    C16("attn16",      1,  8,  2,  80,          32,  1,     2),
    L16("layer16",     1,  4,  4,  24,    48,        1,     0),
    L16("layer16",     1,  4,  4,  24,    48,        1,     1),
    L16("layer16",     1,  4,  4,  24,    48,        1,     2),
    L16("layer16",     1,  4,  2,  24,    800,       1,     2), /* K 800: the chunked projections */
    STOLEN(8,  2,   100,  32,  0),
    STOLEN(8,  2,   100,  32,  1),
    STOLEN(4,  4,   48,   16,  0),
    STOLEN(4,  4,   48,   16,  1),
};

size_t mha_bench_l3_bytes(void) {
  /* sysfs first: the L3 that CPU 0 shares (one CCD's on AMD); glibc's
   * sysconf may report the whole package's (320 MiB on a 10-CCD EPYC) */
  FILE* f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
  if (f != NULL) {
    unsigned long v = 0;
    char unit = 0;
    const int got = fscanf(f, "%lu%c", &v, &unit);
    fclose(f);
    if (got >= 1 && v > 0) return (size_t)v * (unit == 'K' ? 1024u : unit == 'M' ? 1024u * 1024u : 1u);
  }
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return (size_t)l3;
  return (size_t)32 << 20;
}

/* Tk of a DRAM row: the least power of two >= the table's Tk whose fp32 K
 * and V hold 4× the L3, at most 2^20 tokens */
static int64_t mha_bench_dram_tk(const mha_bench_shape* s, size_t l3) {
  const double per_token = 2.0 * (double)s->Hkv * (double)s->D * sizeof(float);
  int64_t tk = s->Tk;
  while (tk < ((int64_t)1 << 20) && (double)tk * per_token < 4.0 * (double)l3) tk *= 2;
  return tk;
}

size_t mha_bench_presets(mha_bench_mode mode, const mha_bench_shape** shapes) {
  if (mode == MHA_BENCH_SMOKE) {
    *shapes = mha_bench_tiny;
    return sizeof mha_bench_tiny / sizeof mha_bench_tiny[0];
  }
  const size_t n = sizeof mha_bench_real / sizeof mha_bench_real[0];
  const size_t l3 = mha_bench_l3_bytes();
  for (size_t i = 0; i < n; i++) {
    if (mha_bench_real[i].flags & MHA_BENCH_PAST_L3) mha_bench_real[i].Tk = mha_bench_dram_tk(&mha_bench_real[i], l3);
  }
  *shapes = mha_bench_real;
  return n;
}
