/*
 * The named presets: real model shapes (quick and full modes) and their tiny
 * twins (smoke mode: the same code paths in milliseconds). Which peers and
 * thread counts run, and what quick mode skips, is decided in main.cc.
 */
#include "bench.h"

#define LAYER(name, B, H, Hkv, T, dm, causal, flags) \
  {name, MHA_BENCH_LAYER, B, H, Hkv, T, T, (dm) / (H), dm, causal, flags}
#define CORE(name, B, H, Hkv, Tq, Tk, D, causal, flags) \
  {name, MHA_BENCH_CORE, B, H, Hkv, Tq, Tk, D, 0, causal, flags}

enum { SWEEP = MHA_BENCH_SWEEP, BIG = MHA_BENCH_BIG, HEADS = MHA_BENCH_HEADS, DEC = MHA_BENCH_DECODE };

static const mha_bench_shape mha_bench_real[] = {
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
    /* the heads study: d_model 768, T 512, head width 768 / H */
    LAYER("heads",           1, 1,  1,   512,  768,  0, HEADS),
    LAYER("heads",           1, 2,  2,   512,  768,  0, HEADS),
    LAYER("heads",           1, 4,  4,   512,  768,  0, HEADS),
    LAYER("heads",           1, 8,  8,   512,  768,  0, HEADS),
    LAYER("heads",           1, 12, 12,  512,  768,  0, HEADS),
    LAYER("heads",           1, 16, 16,  512,  768,  0, HEADS),
    LAYER("heads",           1, 24, 24,  512,  768,  0, HEADS),
    LAYER("heads",           1, 48, 48,  512,  768,  0, HEADS),
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
    LAYER("heads",           1, 1,  1,   16,   48,   0, HEADS),
    LAYER("heads",           1, 2,  2,   16,   48,   0, HEADS),
    LAYER("heads",           1, 4,  4,   16,   48,   0, HEADS),
    LAYER("heads",           1, 8,  8,   16,   48,   0, HEADS),
    LAYER("heads",           1, 12, 12,  16,   48,   0, HEADS),
    LAYER("heads",           1, 16, 16,  16,   48,   0, HEADS),
    LAYER("heads",           1, 24, 24,  16,   48,   0, HEADS),
    LAYER("heads",           1, 48, 48,  16,   48,   0, HEADS),
};

size_t mha_bench_presets(mha_bench_mode mode, const mha_bench_shape** shapes) {
  if (mode == MHA_BENCH_SMOKE) {
    *shapes = mha_bench_tiny;
    return sizeof mha_bench_tiny / sizeof mha_bench_tiny[0];
  }
  *shapes = mha_bench_real;
  return sizeof mha_bench_real / sizeof mha_bench_real[0];
}
