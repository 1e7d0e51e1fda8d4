#!/usr/bin/env python3
"""mha beside the peers a user would pick instead, in one process, alternating.

On the presets of bench/presets.c (real sizes), at one thread count or several
(--threads 1,N: the one-thread and all-thread rows, thread count the outer loop within
a preset), with the same NumPy inputs for everyone:
  layer presets   mha (plan made once, biases on all four projections),
                  torch_sdpa_layer (nn.Linear ×3 → SDPA → nn.Linear; enable_gqa for GQA),
                  torch_nn_mha (nn.MultiheadAttention, need_weights=False; H = Hkv only),
                  ort_attention_layer (com.microsoft Attention, fused QKV + bias → MatMul + Add;
                  H = Hkv only), ort_attention23_layer (MatMul + Add → Split → opset-23
                  Attention with q_num_heads / kv_num_heads → MatMul + Add),
                  ov_sdpa_layer_f32 / ov_sdpa_layer_default_<p> (OpenVINO: MatMul + Add →
                  VariadicSplit → Reshape/Transpose → repeat_kv for GQA → opset-13
                  ScaledDotProductAttention → MatMul + Add; below)
  core presets    mha (mha_attention_f32), torch_sdpa, ort_mha (com.microsoft
                  MultiHeadAttention; H = Hkv only), ort_attention23 (opset 23),
                  ov_sdpa_f32 / ov_sdpa_default_<p> (OpenVINO opset-13 SDPA)
  OpenVINO        (CPU plugin) each model compiled twice with INFERENCE_NUM_THREADS = the
                  thread count and the latency hint: with INFERENCE_PRECISION_HINT f32 (the
                  *_f32 row, an fp32 peer) and with OpenVINO's default precision, the row
                  named by the precision the compiled model reports (ov::hint::
                  inference_precision: bf16 on a CPU with AVX512-BF16 or AMX; where that is
                  f32 the row is left out as a duplicate, with a note). None for the variant
                  and kv presets.
  variant presets (causal self-attention cores with a sliding window, ALiBi, soft-cap
                  and/or sinks, as bench/presets.c) mha (mha.attention with window=,
                  alibi_slopes=, softcap=, sinks=), torch_sdpa_mask (SDPA with the
                  equivalent explicit float mask; without soft-cap and sinks only, which
                  SDPA cannot express), torch_eager (the composite a user writes:
                  Q·Kᵀ·scale, soft-cap, + ALiBi and mask, sink column, softmax, ·V; heads
                  in chunks where the scores would not fit); ONNX Runtime: none
  kv presets      decode (Tq = 1) from a K/V cache whose elements are fp32, f16 or bf16,
                  contiguous or paged (block_size 32, head-major [num_blocks, Hkv,
                  block_size, D] pools, blocks shuffled, as bench/bench-kv.c), some with mixed lengths
                  (kv_len, as bench/flops.c): mha (mha.attention with float16 / bf16-bit K
                  and V read in place, mha.attention_paged for the paged rows; fp32 rows
                  are mha_attention_f32), torch_sdpa (q, k, v all in the cache's type, what
                  a CPU engine in f16/bf16 runs; its output cast to float32 for the check),
                  torch_sdpa_upcast (q fp32, k.float() and v.float() inside the timed call,
                  as a caller with fp32 queries must do; 16-bit rows only). PyTorch has no
                  paged attention: on paged rows both first gather the blocks through the
                  table (k_pool[table], inside the timed call); mixed lengths are a boolean
                  attn_mask. ONNX Runtime: none; ggml (llama.cpp's f16 KV-cache attention)
                  is not installed here and is listed as left out.
Every peer's output is checked against mha's once before timing, at each thread
count (normalized RMS error < 1e-3; torch_sdpa on a 16-bit kv preset computes with
its q and output rounded to the 16-bit type, and OpenVINO's default row in bf16
rounds its inputs, weights and probabilities, so their bound is 8 units of that
type's roundoff: 8·2^-11 ≈ 3.9e-3 for f16, 8·2^-8 ≈ 3.1e-2 for bf16,
kv_tolerance(); torch_sdpa shows ~3e-4 and ~2e-3, OpenVINO bf16 ~2e-3).
Every row records the precision its system computes in ("precision"). Then
`rounds` rounds, each timing every system in turn (repeat calls for at least
`min_time` seconds, the median call); the figure is the median over rounds.

A stolen core (--stolen-core, instead of the presets): the two decode shapes of
mha_bench's stolen_core rows (B 1, H 32, Hkv 8, Tq 1, Tk 4096, D 128; and a tiny
decode H 8, Hkv 8, Tk 256, D 64) at the largest --threads count, mha (mha_attention_f32,
OpenMP as built) and torch_sdpa each timed quiet and busy: busy, with a separate process
(Python spinning in `while True: pass`) pinned with os.sched_setaffinity to the first
CPU this process may use (0 here, as bench/busy-core.c), started after the pause
before the timing and killed right after it; quiet, with none. Outputs are checked
once as above, then each round times every system quiet, then busy. Rows have preset
"stolen_core_peers" and busy 0 / 1 (busy_cpu beside); the table is shape | system |
quiet | busy | busy / quiet (--json defaults to out/bench/stolen-peers.json).

Writes a JSON of rows and prints a Markdown table: median time, GFLOP/s,
% of the FMA peak (a bf16 row: of the BF16 unit's dot-product peak where
mha_bench probed one, bf16_peak_gflops_t<n>; pct_peak_of says which)
(decode: GB/s and % of the read probe, K and V counted as
stored: 2 bytes an element in a 16-bit cache) and mha's speed-up over each peer
(peer time / mha time). Peaks come from the mha_bench JSON
(--probe-json), measured in the same run by scripts/bench.sh --peers.

mha runs through the Python front (python/mha, imported from this checkout)
over the library given by --lib (passed as MHA_LIBRARY), in a process of its
own.

Usage: bench/peers.py --lib build/libmha.so --threads 2|1,2 [--presets a,b|variants|kv] [--rounds 3]
                      [--bf16]
                      [--min-time 0.3] [--probe-json out/bench/quick.json]
                      [--json out/bench/peers.json] [--md out/bench/quick-summary.md]
                      [--variants-full] [--tiny] [--stolen-core]
  --presets variants   the variant presets alone (var_*, gemma2, gpt_oss_*, window_scaling)
  --presets kv         the K/V-cache decode presets alone (kv_decode: fp32 / f16 / bf16 /
                       paged f16, three shapes)
  --variants-full      also the variant shapes left out by default for their time
                       (marked full_only in PRESETS: gemma2, window_scaling T 16384 and
                       32768; --tiny includes them)
  --tiny               a smoke check only, not a benchmark: every preset shrunk (T / 16,
                       so 4096 → 256, windows with it; Hkv / 4 with the GQA ratio kept;
                       B ≤ 2), e.g. --tiny --threads 1 --rounds 1 --presets var_all,gemma2
                       (with --stolen-core: its two shapes shrunk alike)
  --bf16               also the bf16 rows of the core and layer presets (the precision the
                       engines run where the CPU has a bf16 unit): mha_bf16 (mha.attention
                       with dtype="bf16": q, k, v and out bf16; the layer: mha.Layer with
                       dtype="bf16" weights and forward(dtype="bf16") on bf16 x and out),
                       torch_sdpa_bf16 / torch_sdpa_layer_bf16 (SDPA and the F.linear layer
                       on torch.bfloat16 tensors and weights); with OpenVINO's default row
                       (bf16 where the CPU has AVX512-BF16 or AMX). Their outputs are
                       checked within KV_TOL["bf16"]; the summary's speed-up of a bf16
                       peer is over mha_bf16. scripts/bench.sh --peers passes it when the
                       CPU has avx512_bf16 or amx_bf16.
  --stolen-core        the stolen-core comparison above instead of the presets (mha and
                       torch_sdpa, quiet and with the first CPU busy), at max(--threads)
"""
import argparse
import collections
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

# the Python front from this checkout; it loads libmha.so at its first call (in
# the mha worker only, with MHA_LIBRARY set from --lib)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python"))
import mha  # noqa: E402

# name, kind, B, H, Hkv, Tq, Tk, D, d_model, causal  (as bench/presets.c); the
# variant presets add window (W > 0: a row sees keys [i − W + 1, i]), softcap
# (> 0), alibi and sinks (the slopes and sink logits of bench/bench-core.c), and
# full_only (run with --variants-full only: their PyTorch peers take ~25-30 s a call
# on one core, 5-6 minutes a shape there; the default variant list takes ~10 minutes
# on one core, ~6 on two)
# The kv presets add kv_dtype ("f32", "f16", "bf16": the elements K and V are stored in;
# "" for every other preset), page (0: contiguous; else the block size of a paged cache)
# and mixed (entry b holds Tk − ⌊b·Tk / 2B⌋ keys, as bench/flops.c mha_bench_kv_len).
Preset = collections.namedtuple(
    "Preset", "name kind B H Hkv Tq Tk D d_model causal variant window softcap alibi sinks "
    "full_only kv_dtype page mixed", defaults=(False, 0, 0.0, False, False, False, "", 0, False))


def VAR(name, H, Hkv, T, D, window, softcap, alibi, sinks, full_only=False):
    """A causal self-attention core with variants, B 1, Tq = Tk (bottom-right = top-left)."""
    return Preset(name, "core", 1, H, Hkv, T, T, D, 0, True, True, window, softcap, bool(alibi),
                  bool(sinks), full_only)


def KV(name, B, H, Hkv, Tk, D, dtype, page=0, mixed=False):
    """Decode (Tq = 1, no mask) from a K/V cache of `dtype`, as bench/presets.c's KVC rows."""
    return Preset(name, "core", B, H, Hkv, 1, Tk, D, 0, False, kv_dtype=dtype, page=page,
                  mixed=mixed)


PRESETS = [
    Preset("bert_base", "layer", 8, 12, 12, 512, 512, 64, 768, False),
    Preset("gpt2", "layer", 1, 12, 12, 1024, 1024, 64, 768, True),
    Preset("llama_prefill", "layer", 1, 32, 32, 2048, 2048, 128, 4096, True),
    Preset("llama_prefill_gqa", "layer", 1, 32, 8, 2048, 2048, 128, 4096, True),
    Preset("long_core", "core", 1, 8, 8, 8192, 8192, 64, 0, False),
    Preset("decode", "core", 1, 32, 32, 1, 4096, 128, 0, False),
    Preset("decode_gqa", "core", 1, 32, 8, 1, 4096, 128, 0, False),
    # the variants, as bench/presets.c's real table
    #   name              H   Hkv  T      D    window softcap alibi sinks
    VAR("var_none",       8,  8,   4096,  64,  0,     0.0,    0,    0),
    VAR("var_window",     8,  8,   4096,  64,  1024,  0.0,    0,    0),
    VAR("var_alibi",      8,  8,   4096,  64,  0,     0.0,    1,    0),
    VAR("var_softcap",    8,  8,   4096,  64,  0,     50.0,   0,    0),
    VAR("var_sinks",      8,  8,   4096,  64,  0,     0.0,    0,    1),
    VAR("var_all",        8,  8,   4096,  64,  1024,  50.0,   1,    1),
    VAR("gemma2",         16, 8,   8192,  256, 4096,  50.0,   0,    0, full_only=True),
    VAR("gpt_oss_local",  64, 8,   4096,  64,  128,   0.0,    0,    1),
    VAR("gpt_oss_global", 64, 8,   4096,  64,  0,     0.0,    0,    1),
    VAR("window_scaling", 8,  8,   4096,  64,  4096,  0.0,    0,    0),
    VAR("window_scaling", 8,  8,   8192,  64,  4096,  0.0,    0,    0),
    VAR("window_scaling", 8,  8,   16384, 64,  4096,  0.0,    0,    0, full_only=True),
    VAR("window_scaling", 8,  8,   32768, 64,  4096,  0.0,    0,    0, full_only=True),
    # decode from 16-bit and paged caches, as bench/presets.c's kv_decode rows
    #  name          B   H   Hkv  Tk     D    dtype   page mixed
    KV("kv_decode",  1,  32, 32,  4096,  128, "f32"),
    KV("kv_decode",  1,  32, 32,  4096,  128, "f16"),
    KV("kv_decode",  1,  32, 32,  4096,  128, "bf16"),
    KV("kv_decode",  1,  32, 32,  4096,  128, "f16",  32),
    KV("kv_decode",  1,  32, 8,   32768, 128, "f32"),
    KV("kv_decode",  1,  32, 8,   32768, 128, "f16"),
    KV("kv_decode",  1,  32, 8,   32768, 128, "bf16"),
    KV("kv_decode",  1,  32, 8,   32768, 128, "f16",  32),
    KV("kv_decode",  16, 32, 8,   4096,  128, "f32",  0,   True),
    KV("kv_decode",  16, 32, 8,   4096,  128, "f16",  0,   True),
    KV("kv_decode",  16, 32, 8,   4096,  128, "bf16", 0,   True),
    KV("kv_decode",  16, 32, 8,   4096,  128, "f16",  32,  True),
]


# --stolen-core: the decode shapes of bench/presets.c's STOLEN rows (mha_bench's
# stolen_core preset), timed quiet and with the first CPU busy
STOLEN = [
    Preset("stolen_core_peers", "core", 1, 32, 8, 1, 4096, 128, 0, False),
    Preset("stolen_core_peers", "core", 1, 8, 8, 1, 256, 64, 0, False),
]
STOLEN_FAMILIES = ("mha", "torch")  # mha_attention_f32 and torch_sdpa


def tiny(p):
    """--tiny: the same preset shrunk for a smoke check (T / 16: 4096 → 256, the window
    with it; Hkv / 4 keeping H / Hkv; B ≤ 2; d_model = H·D). Not a benchmark."""
    f = 16
    Hkv = max(1, p.Hkv // 4)
    H = Hkv * (p.H // p.Hkv)
    return p._replace(B=min(p.B, 2), H=H, Hkv=Hkv, Tq=p.Tq if p.Tq == 1 else max(16, p.Tq // f),
                      Tk=max(16, p.Tk // f), d_model=H * p.D if p.d_model else 0,
                      window=max(1, p.window // f) if p.window else 0)


def describe(p):
    """The shape in words, for the table."""
    d = f"B {p.B}, H {p.H}/{p.Hkv}, T {p.Tq}" + (f"×{p.Tk}" if p.Tq != p.Tk else "") + f", D {p.D}"
    if p.d_model:
        d += f", d_model {p.d_model}"
    d += ", causal" if p.causal else ""
    if p.window:
        d += f", window {p.window}"
    if p.softcap:
        d += f", soft-cap {p.softcap:g}"
    if p.alibi:
        d += ", ALiBi"
    if p.sinks:
        d += ", sinks"
    if p.kv_dtype:
        d += f", K/V {p.kv_dtype}" + (f", paged {p.page}" if p.page else "")
        d += ", mixed lengths" if p.mixed else ""
    return d


def visible_pairs(Tq, Tk, causal, window=0):
    """bench/flops.c mha_bench_visible_pairs: row i (aligned i' = i + Tk − Tq) sees the
    keys in [max(0, i' − window + 1), min(Tk, i' + 1)) (causal) or [.., Tk) (window only)."""
    if not causal and window <= 0:
        return float(Tq) * Tk
    ip = np.arange(Tq, dtype=np.int64) + (Tk - Tq)
    hi = np.minimum(Tk, ip + 1) if causal else np.full(Tq, Tk, np.int64)
    lo = np.maximum(0, ip - window + 1) if window > 0 else np.zeros(Tq, np.int64)
    return float(np.maximum(hi - lo, 0).sum())


def kv_len(p, b):
    """bench/flops.c mha_bench_kv_len: entry b's keys (Tk unless mixed)."""
    return p.Tk - b * p.Tk // (2 * p.B) if p.mixed else p.Tk


def kv_lens(p):
    return np.array([kv_len(p, b) for b in range(p.B)], np.int32)


def flops(p):
    """bench/flops.c: only matrix products count, 2 FLOPs per multiply-add; a window
    counts only the pairs it leaves visible, mixed lengths only each entry's keys
    (every system of a shape is credited the same FLOPs, so GFLOP/s ratios are time
    ratios)."""
    _, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    pairs = sum(visible_pairs(Tq, kv_len(p, b), causal, p.window) for b in range(B))
    core = 2.0 * H * pairs * (D + D)
    if kind == "core":
        return core
    return 2.0 * B * Tq * dm * (H * D) + 2.0 * 2 * B * Tk * dm * (Hkv * D) + core + \
        2.0 * B * Tq * (H * D) * dm


def kv_bytes(p):
    """bench/flops.c mha_bench_kv_bytes: K and V as stored (4 bytes an element, 2 in a
    16-bit cache), each entry's keys once; every system of a shape is credited the same."""
    esz = 2.0 if p.kv_dtype in ("f16", "bf16") else 4.0
    keys = sum(kv_len(p, b) for b in range(p.B))
    return esz * keys * p.Hkv * 2 * p.D


# nrmse bound of a peer that computes in a 16-bit type (q and the output rounded to it,
# probabilities in it; OpenVINO's bf16 inference precision: the projections' inputs and
# weights too): 8 units of its roundoff
KV_TOL = {"f16": 8 * 2.0 ** -11, "bf16": 8 * 2.0 ** -8}


def precision(p, system):
    """The type a system computes in: the cache's 16-bit type for torch_sdpa on a 16-bit kv
    preset, the precision OpenVINO chose for its default row (ov_sdpa*_default_<precision>),
    else f32 (mha's own rows included)."""
    if system == "torch_sdpa" and p.kv_dtype in KV_TOL:
        return p.kv_dtype
    if system.endswith("_bf16") and "_default_" not in system:  # the --bf16 rows
        return "bf16"
    if "_default_" in system:
        return system.rsplit("_", 1)[1]
    return "f32"


def kv_tolerance(p, system):
    """The nrmse a peer's output may show against mha's: 1e-3, or KV_TOL for a peer that
    computes in 16 bits (torch_sdpa on a 16-bit kv preset, OpenVINO's default row where it
    chose bf16 or f16)."""
    return KV_TOL.get(precision(p, system), 1e-3)


def nrmse(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.sqrt(np.mean((a - b) ** 2)) / (np.sqrt(np.mean(b ** 2)) + 1e-30))


# ---------------------------------------------------------------------------- systems


def to_bf16(a):
    """float32 → bfloat16 bits (uint16), to nearest, ties to even (finite values)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def kv_inputs(p, x, rng):
    """A kv preset's cache: k16 / v16 (float16, or uint16 bf16 bits) [B, Hkv, Tk, D]
    holding x's k and v rounded (k and v themselves replaced by the widened values, for
    the fp32 systems); paged, pools [num_blocks, Hkv, page, D] of shuffled blocks with a
    spare block per entry and the table [B, ⌈Tk / page⌉] (as bench/bench-kv.c)."""
    B, Hkv, Tk, D = p.B, p.Hkv, p.Tk, p.D
    if p.kv_dtype == "f16":
        x["k16"], x["v16"] = x["k"].astype(np.float16), x["v"].astype(np.float16)
        x["k"], x["v"] = x["k16"].astype(np.float32), x["v16"].astype(np.float32)
    elif p.kv_dtype == "bf16":
        x["k16"], x["v16"] = to_bf16(x["k"]), to_bf16(x["v"])
        widen = lambda b: (b.astype(np.uint32) << 16).view(np.float32)  # noqa: E731
        x["k"], x["v"] = widen(x["k16"]), widen(x["v16"])
    if p.mixed:
        x["kv_len"] = kv_lens(p)
    if p.page:
        per = -(-Tk // p.page)
        blocks = B * (per + 1)
        table = rng.permutation(blocks)[:B * per].reshape(B, per).astype(np.int32)
        pools = []
        for name in ("k", "v"):
            a = x[name + "16"] if p.kv_dtype in ("f16", "bf16") else x[name]
            pool = np.zeros((blocks, Hkv, p.page, D), a.dtype)
            pad = np.zeros((B, Hkv, per * p.page, D), a.dtype)
            pad[:, :, :Tk] = a
            # entry b's block s: its tokens [s·page, (s+1)·page) as [Hkv, page, D]
            pool[table] = pad.reshape(B, Hkv, per, p.page, D).transpose(0, 2, 1, 3, 4)
            pools.append(pool)
        x["k_pool"], x["v_pool"], x["table"] = pools[0], pools[1], table
    return x


def make_inputs(p, rng):
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    f = np.float32
    if kind == "core":
        x = dict(q=rng.uniform(-1, 1, (B, H, Tq, D)).astype(f),
                 k=rng.uniform(-1, 1, (B, Hkv, Tk, D)).astype(f),
                 v=rng.uniform(-1, 1, (B, Hkv, Tk, D)).astype(f))
        if p.kv_dtype:
            return kv_inputs(p, x, rng)
        if p.variant:  # as bench/bench-core.c: ALiBi's geometric slopes, learned-looking sinks
            h = np.arange(H)
            x["slopes"] = np.exp2(-8.0 * (h + 1) / H).astype(f)
            x["sinks"] = (0.25 * (h % 5)).astype(f)
        return x
    s = 1.0 / np.sqrt(dm)
    return dict(x=rng.uniform(-1, 1, (B, Tq, dm)).astype(f),
                wq=(rng.uniform(-1, 1, (H * D, dm)) * s).astype(f),
                wk=(rng.uniform(-1, 1, (Hkv * D, dm)) * s).astype(f),
                wv=(rng.uniform(-1, 1, (Hkv * D, dm)) * s).astype(f),
                wo=(rng.uniform(-1, 1, (dm, H * D)) * s).astype(f),
                bq=rng.uniform(-0.1, 0.1, H * D).astype(f),
                bk=rng.uniform(-0.1, 0.1, Hkv * D).astype(f),
                bv=rng.uniform(-0.1, 0.1, Hkv * D).astype(f),
                bo=rng.uniform(-0.1, 0.1, dm).astype(f))


def bf16_inputs(p, x):
    """The --bf16 rows' inputs, rounded once from the preset's float32 ones (uint16 bits):
    q, k, v (core) or x and the eight weights and biases (layer)."""
    names = ("q", "k", "v") if p.kind == "core" else \
        ("x", "wq", "wk", "wv", "wo", "bq", "bk", "bv", "bo")
    return {n: to_bf16(x[n]) for n in names}


def bf16_value(bits):
    """bfloat16 bits (uint16) → float32 values."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def mha_bf16_system(p, x16, threads):
    """(call, cleanup) of the mha_bf16 row: everything bf16 (the output widened by the
    "output" command for the check, outside the timing)."""
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    if kind == "core":
        out = np.empty((B, H, Tq, D), np.uint16)
        return (lambda: mha.attention(x16["q"], x16["k"], x16["v"], causal=causal, dtype="bf16",
                                      num_threads=threads, out=out, workspace="auto"), None)
    plan = mha.Layer(dm, H, num_kv_heads=Hkv, layout="out_in", dtype="bf16", w_q=x16["wq"],
                     w_k=x16["wk"], w_v=x16["wv"], w_o=x16["wo"], b_q=x16["bq"], b_k=x16["bk"],
                     b_v=x16["bv"], b_o=x16["bo"])
    out = np.empty((B, Tq, dm), np.uint16)
    return (lambda: plan.forward(x16["x"], causal=causal, num_threads=threads, out=out,
                                 workspace="auto", dtype="bf16"), plan.close)


def mha_system(p, x, threads):
    """(call, cleanup): a call returns mha's output, written into one preallocated array."""
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    if kind == "core":
        out = np.empty((B, H, Tq, D), np.float32)
        # workspace="auto": one buffer kept across calls, as an engine passes
        # one (mha_attention_workspace_size); PyTorch's and ONNX Runtime's
        # allocators cache their memory too
        kw = {}
        if p.kv_dtype:
            kw = dict(kv_len=x.get("kv_len"),
                      kv_dtype="bf16" if p.kv_dtype == "bf16" else None)
            if p.page:
                return (lambda: mha.attention_paged(
                    x["q"], x["k_pool"], x["v_pool"], x["table"], Tk=Tk, num_threads=threads,
                    out=out, workspace="auto", **kw), None)
            if p.kv_dtype != "f32":
                return (lambda: mha.attention(x["q"], x["k16"], x["v16"], num_threads=threads,
                                              out=out, workspace="auto", **kw), None)
            kw = dict(kv_len=kw["kv_len"])  # fp32: mha_attention_f32, as the decode presets
        if p.variant:  # bottom-right aligned (mha's default), Tq = Tk: the same as top-left
            kw = dict(window=(p.window - 1, 0) if p.window else None,
                      alibi_slopes=x["slopes"] if p.alibi else None, softcap=p.softcap or None,
                      sinks=x["sinks"] if p.sinks else None)
        return (lambda: mha.attention(x["q"], x["k"], x["v"], causal=causal, num_threads=threads,
                                      out=out, workspace="auto", **kw), None)
    plan = mha.Layer(dm, H, num_kv_heads=Hkv, layout="out_in", w_q=x["wq"], w_k=x["wk"],
                     w_v=x["wv"], w_o=x["wo"], b_q=x["bq"], b_k=x["bk"], b_v=x["bv"],
                     b_o=x["bo"])
    out = np.empty((B, Tq, dm), np.float32)
    return (lambda: plan.forward(x["x"], causal=causal, num_threads=threads, out=out,
                                 workspace="auto"), plan.close)


GiB = 2.0 ** 30
# The PyTorch peers of the variant presets materialize [Tq, Tk] tensors: the eager
# composite processes heads in chunks whose scores fit in CHUNK_BYTES, and a peer
# that would need more than SKIP_BYTES is left out with a printed reason.
CHUNK_BYTES, SKIP_BYTES = 6 * GiB, 8 * GiB


def variant_mask(p, x, torch):
    """The explicit additive float mask equivalent to the preset's mask and ALiBi:
    −inf where causal or the window hides key j from row i (i' = i + Tk − Tq; Tq = Tk
    here), −slope_h·(i' − j) on the visible keys under ALiBi (0 without).
    [1, H, Tq, Tk] with ALiBi, else [1, 1, Tq, Tk]: 4-D, since PyTorch 2.15 sends a
    3-D [H, Tq, Tk] float mask to SDPA's math path (the whole score tensor in memory)
    and a 4-D one to its fused CPU kernel. Built once, in row blocks (no [Tq, Tk]
    temporaries beside it), as a user builds it once per sequence length."""
    H, Tq, Tk = p.H, p.Tq, p.Tk
    hm = H if p.alibi else 1
    m = torch.empty(1, hm, Tq, Tk)
    j = torch.arange(Tk).view(1, Tk)
    slopes = torch.from_numpy(x["slopes"]).view(H, 1, 1)
    for r0 in range(0, Tq, 256):
        r1 = min(Tq, r0 + 256)
        d = torch.arange(r0, r1).view(-1, 1) + (Tk - Tq) - j  # i' − j
        hidden = torch.zeros(r1 - r0, Tk, dtype=torch.bool)
        if p.causal:
            hidden |= d < 0
        if p.window:
            hidden |= d >= p.window
        blk = -slopes * d.to(torch.float32) if p.alibi else torch.zeros(1, r1 - r0, Tk)
        m[0, :, r0:r1] = blk.masked_fill_(hidden, float("-inf"))
    return m


def variant_torch_systems(p, x, threads, torch, F):
    """(systems, skipped) for a variant preset: torch_sdpa_mask where SDPA can express
    the variants (no soft-cap, no sinks), torch_eager for every one."""
    B, H, Hkv, Tq, Tk, D = p.B, p.H, p.Hkv, p.Tq, p.Tk, p.D
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    gqa, g = Hkv != H, H // Hkv
    scale = 1.0 / np.sqrt(D)
    systems, skipped = {}, []
    mask_bytes = 4.0 * (H if p.alibi else 1) * Tq * Tk
    if mask_bytes > SKIP_BYTES:
        return systems, [f"torch_sdpa_mask, torch_eager: the explicit mask alone is "
                         f"{mask_bytes / GiB:.1f} GiB (> {SKIP_BYTES / GiB:.0f} GiB)"]
    mask = variant_mask(p, x, torch)

    if not p.softcap and not p.sinks:
        # the fused CPU kernel keeps the mask and a block of scores; the math path
        # (taken for masks it does not support) materializes scores and probabilities
        try:
            math = int(torch._fused_sdp_choice(t["q"], t["k"], t["v"], mask,
                                               enable_gqa=gqa)) == 0
        except (AttributeError, TypeError, RuntimeError):
            math = True
        need = mask_bytes + (3.0 * 4 * B * H * Tq * Tk if math else 0.0)
        if need > SKIP_BYTES:
            skipped.append(f"torch_sdpa_mask: needs ~{need / GiB:.1f} GiB "
                           f"(> {SKIP_BYTES / GiB:.0f} GiB{', math path' if math else ''})")
        else:
            def sdpa_mask():
                with torch.inference_mode():
                    return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=mask,
                                                          enable_gqa=gqa).numpy()
            systems["torch_sdpa_mask"] = sdpa_mask

    # torch_eager: what a user writes (as Hugging Face's eager_attention_forward for
    # Gemma 2 and gpt-oss): S = Q·Kᵀ·scale; soft-cap cap·tanh(S/cap); + the mask
    # (ALiBi's bias folded in, built once as above); sinks as one more logit column,
    # concatenated, then dropped after the softmax; softmax; ·V; GQA by repeating K/V
    # (repeat_interleave, HF's repeat_kv). Its S is B·H·Tq·Tk floats: 4 GiB and more at
    # the gemma2 / gpt_oss sizes, and each out-of-place step holds up to three of them
    # at once. A user must do what this does: run the heads in chunks whose three
    # [B, c, Tq, Tk + 1] tensors fit (CHUNK_BYTES, ~6 GiB here), and give up where one
    # head alone would need more than SKIP_BYTES (window_scaling at T 32768: 12 GiB of
    # scores for one head, beside its 4 GiB mask).
    per_head = 3.0 * 4 * B * Tq * (Tk + 1)
    fixed = mask_bytes + (2.0 * 4 * B * H * Tk * D if gqa else 0.0)
    if per_head + fixed > SKIP_BYTES:
        skipped.append(f"torch_eager: needs ~{(per_head + fixed) / GiB:.1f} GiB for one head "
                       f"(> {SKIP_BYTES / GiB:.0f} GiB)")
        return systems, skipped
    chunk = int(max(1, min(H, (CHUNK_BYTES - fixed) // per_head)))
    chunk = -(-H // -(-H // chunk))  # as even as the chunk count allows: 16 heads 6+6+4
    cap = float(p.softcap)
    sinks = t["sinks"].view(1, H, 1, 1)

    def eager():
        with torch.inference_mode():
            q, k, v = t["q"], t["k"], t["v"]
            if gqa:
                k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
            outs = []
            for h0 in range(0, H, chunk):
                h1 = min(H, h0 + chunk)
                s = torch.matmul(q[:, h0:h1], k[:, h0:h1].transpose(-1, -2)) * scale
                if cap:
                    s = torch.tanh(s / cap) * cap
                s = s + (mask[:, h0:h1] if p.alibi else mask)
                if p.sinks:
                    s = torch.cat([s, sinks[:, h0:h1].expand(B, h1 - h0, Tq, 1)], dim=-1)
                    w = torch.softmax(s, dim=-1)[..., :-1]
                else:
                    w = torch.softmax(s, dim=-1)
                del s
                outs.append(torch.matmul(w, v[:, h0:h1]))
            return torch.cat(outs, dim=1).numpy()
    systems["torch_eager"] = eager
    if chunk < H:
        print(f"peers: {p.name} T {Tq}: torch_eager runs {chunk} of {H} heads at a time "
              f"(~{(chunk * per_head + fixed) / GiB:.1f} GiB)", flush=True)
    return systems, skipped


def kv_torch_systems(p, x, torch, F):
    """(systems, skipped) for a kv preset: torch_sdpa in the cache's type (fp32 rows:
    fp32), torch_sdpa_upcast (16-bit rows: q fp32, K and V widened in the call). Paged:
    the blocks gathered through the table in the call. Mixed lengths: a boolean mask."""
    B, H, Hkv, Tk = p.B, p.H, p.Hkv, p.Tk
    gqa = Hkv != H
    dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[p.kv_dtype]

    def cache(a):  # the stored elements as a tensor of the cache's type (no copy)
        if p.kv_dtype == "bf16":
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)
    if p.kv_dtype == "f32":
        k, v = torch.from_numpy(x["k"]), torch.from_numpy(x["v"])
    elif p.page:
        k = v = None
    else:
        k, v = cache(x["k16"]), cache(x["v16"])
    q32 = torch.from_numpy(x["q"])
    q16 = q32.to(dt)  # the engine's queries, already in its type (outside the timed call)
    mask = None
    if p.mixed:
        mask = (torch.arange(Tk).view(1, 1, 1, Tk) <
                torch.from_numpy(x["kv_len"]).view(B, 1, 1, 1))
    if p.page:
        kp, vp = cache(x["k_pool"]), cache(x["v_pool"])
        table = torch.from_numpy(x["table"].astype(np.int64))

        def kv():  # [B, per, Hkv, page, D] → [B, Hkv, Tk, D]
            g = lambda pool: pool[table].transpose(1, 2).flatten(2, 3)[:, :, :Tk]  # noqa: E731
            return g(kp), g(vp)
    else:
        def kv():
            return k, v

    def sdpa():
        with torch.inference_mode():
            kk, vv = kv()
            return F.scaled_dot_product_attention(q16, kk, vv, attn_mask=mask,
                                                  enable_gqa=gqa).float().numpy()

    def sdpa_upcast():
        with torch.inference_mode():
            kk, vv = kv()
            return F.scaled_dot_product_attention(q32, kk.float(), vv.float(), attn_mask=mask,
                                                  enable_gqa=gqa).numpy()
    systems = {"torch_sdpa": sdpa}
    if p.kv_dtype != "f32":
        systems["torch_sdpa_upcast"] = sdpa_upcast
    return systems, []


class Bf16Output:
    """A --bf16 row's call: timed as it is (its output in bf16); widen() gives the
    float32 values for the check, outside the timing (the worker's "output" command)."""

    def __init__(self, call, widen):
        self.call, self.widen = call, widen

    def __call__(self):
        return self.call()

    def output(self):
        return self.widen(self.call())


def torch_systems(p, x, threads, bf16=False):
    """(systems, skipped): the PyTorch peers of the preset, and the ones left out, why."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    if p.variant:
        return variant_torch_systems(p, x, threads, torch, F)
    if p.kv_dtype:
        return kv_torch_systems(p, x, torch, F)
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    gqa = Hkv != H
    systems = {}
    # --bf16: the same calls on torch.bfloat16 copies of the float32 inputs (made here,
    # outside the timing; rounded to nearest even, as mha_bf16's inputs); the output is
    # widened by .float() for the check only, the timed call returns the bf16 tensor
    tb = {k: v.to(torch.bfloat16) for k, v in t.items()} if bf16 else None

    def core(t):
        with torch.inference_mode():
            return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=causal,
                                                  enable_gqa=gqa)

    def layer(t):
        with torch.inference_mode():
            q = F.linear(t["x"], t["wq"], t["bq"]).view(B, Tq, H, D).transpose(1, 2)
            k = F.linear(t["x"], t["wk"], t["bk"]).view(B, Tk, Hkv, D).transpose(1, 2)
            v = F.linear(t["x"], t["wv"], t["bv"]).view(B, Tk, Hkv, D).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
            return F.linear(o.transpose(1, 2).reshape(B, Tq, H * D), t["wo"], t["bo"])
    fn, base = (core, "torch_sdpa") if kind == "core" else (layer, "torch_sdpa_layer")
    systems[base] = lambda: fn(t).numpy()
    if bf16:
        systems[base + "_bf16"] = Bf16Output(lambda: fn(tb), lambda y: y.float().numpy())
    if kind == "core":
        return systems, []
    if not gqa:
        m = torch.nn.MultiheadAttention(dm, H, batch_first=True, bias=True).eval()
        with torch.no_grad():
            m.in_proj_weight.copy_(torch.cat([t["wq"], t["wk"], t["wv"]]))
            m.in_proj_bias.copy_(torch.cat([t["bq"], t["bk"], t["bv"]]))
            m.out_proj.weight.copy_(t["wo"])
            m.out_proj.bias.copy_(t["bo"])
        mask = torch.nn.Transformer.generate_square_subsequent_mask(Tq) if causal else None

        def nn_mha():
            with torch.inference_mode():
                return m(t["x"], t["x"], t["x"], need_weights=False, attn_mask=mask,
                         is_causal=causal)[0].numpy()
        systems["torch_nn_mha"] = nn_mha
    return systems, []


def ort_systems(p, x, threads):
    """(systems, skipped): the ONNX Runtime peers (none for the variant and kv presets)."""
    if p.variant or p.kv_dtype:
        return {}, []
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    F32 = TensorProto.FLOAT
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)]

    def session(nodes, inputs, outputs, inits):
        g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
        model = helper.make_model(g, opset_imports=opsets, ir_version=10)
        return ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])

    def init(n, a):
        return numpy_helper.from_array(np.ascontiguousarray(a, np.float32), n)

    systems = {}
    if kind == "core":
        q3 = x["q"].transpose(0, 2, 1, 3).reshape(B, Tq, H * D).copy()
        k3 = x["k"].transpose(0, 2, 1, 3).reshape(B, Tk, Hkv * D).copy()
        v3 = x["v"].transpose(0, 2, 1, 3).reshape(B, Tk, Hkv * D).copy()
        feeds = {"q": q3, "k": k3, "v": v3}
        ins = [helper.make_tensor_value_info("q", F32, [B, Tq, H * D]),
               helper.make_tensor_value_info("k", F32, [B, Tk, Hkv * D]),
               helper.make_tensor_value_info("v", F32, [B, Tk, Hkv * D])]
        out = [helper.make_tensor_value_info("y", F32, [B, Tq, H * D])]

        def back(y):
            return y.reshape(B, Tq, H, D).transpose(0, 2, 1, 3)
        if Hkv == H and not causal:
            s = session([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"],
                                          domain="com.microsoft", num_heads=H)], ins, out, [])
            systems["ort_mha"] = lambda: back(s.run(None, feeds)[0])
        s23 = session([helper.make_node("Attention", ["q", "k", "v"], ["y"], q_num_heads=H,
                                        kv_num_heads=Hkv, is_causal=int(causal))], ins, out, [])
        systems["ort_attention23"] = lambda: back(s23.run(None, feeds)[0])
        return systems, []

    feeds = {"x": x["x"]}
    ins = [helper.make_tensor_value_info("x", F32, [B, Tq, dm])]
    out = [helper.make_tensor_value_info("y", F32, [B, Tq, dm])]
    out_proj = [helper.make_node("MatMul", ["a", "wo"], ["ao"]),
                helper.make_node("Add", ["ao", "bo"], ["y"])]
    o_inits = [init("wo", x["wo"].T), init("bo", x["bo"])]
    if Hkv == H:
        w = np.concatenate([x["wq"], x["wk"], x["wv"]]).T  # [dm, 3·dm]
        b = np.concatenate([x["bq"], x["bk"], x["bv"]])
        s = session([helper.make_node("Attention", ["x", "w", "b"], ["a"], domain="com.microsoft",
                                      num_heads=H, unidirectional=int(causal))] + out_proj,
                    ins, out, [init("w", w), init("b", b)] + o_inits)
        systems["ort_attention_layer"] = lambda: s.run(None, feeds)[0]
    w = np.concatenate([x["wq"], x["wk"], x["wv"]]).T
    b = np.concatenate([x["bq"], x["bk"], x["bv"]])
    split = np.array([H * D, Hkv * D, Hkv * D], np.int64)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["qkv"]),
             helper.make_node("Split", ["qkv", "split"], ["q", "k", "v"], axis=2),
             helper.make_node("Attention", ["q", "k", "v"], ["a"], q_num_heads=H,
                              kv_num_heads=Hkv, is_causal=int(causal))] + out_proj
    s23 = session(nodes, ins, out, [init("w", w), init("b", b),
                                    numpy_helper.from_array(split, "split")] + o_inits)
    systems["ort_attention23_layer"] = lambda: s23.run(None, feeds)[0]
    return systems, []


def ov_precision(compiled):
    """The inference precision a compiled model actually chose (ov::hint::inference_precision),
    as f32 / bf16 / f16."""
    import openvino.properties.hint as hint
    t = compiled.get_property(hint.inference_precision)
    name = getattr(t, "get_type_name", lambda: str(t))()
    return {"f32": "f32", "float32": "f32", "bf16": "bf16", "bfloat16": "bf16",
            "f16": "f16", "float16": "f16"}.get(name, name)


def ov_systems(p, x, threads):
    """(systems, skipped): the OpenVINO peers (CPU plugin; none for the variant and kv
    presets). The attention core is opset-13 ScaledDotProductAttention (causal where the
    preset is); the layer is MatMul + Add (one packed [Wq; Wk; Wv] weight, as the ONNX Runtime
    opset-23 layer) → VariadicSplit → Reshape/Transpose to [B, heads, T, D] → GQA as the model
    writes it (repeat_kv: Unsqueeze → Broadcast → Reshape) → SDPA → Transpose/Reshape →
    MatMul + Add. Each is compiled twice, INFERENCE_NUM_THREADS = threads, latency hint:
    with INFERENCE_PRECISION_HINT f32 (ov_sdpa*_f32, the fp32 peer), and with OpenVINO's
    default precision (ov_sdpa*_default_<what it chose>: bf16 on a CPU with AVX512-BF16;
    left out, with a note, where the default is f32, as the first row already is that)."""
    if p.variant or p.kv_dtype:
        return {}, []
    import openvino as ov
    import openvino.opset13 as ops
    name, kind, B, H, Hkv, Tq, Tk, D, dm, causal = p[:10]
    g = H // Hkv
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731

    def heads(t, T, nh):  # [B, T, nh·D] → [B, nh, T, D]
        return ops.transpose(ops.reshape(t, i64(B, T, nh, D), False), i64(0, 2, 1, 3))

    def repeat_kv(t):  # [B, Hkv, Tk, D] → [B, H, Tk, D], as Hugging Face's repeat_kv
        if g == 1:
            return t
        t = ops.broadcast(ops.unsqueeze(t, i64(2)), i64(B, Hkv, g, Tk, D))
        return ops.reshape(t, i64(B, H, Tk, D), False)

    if kind == "core":
        q = ops.parameter([B, H, Tq, D], np.float32, name="q")
        k = ops.parameter([B, Hkv, Tk, D], np.float32, name="k")
        v = ops.parameter([B, Hkv, Tk, D], np.float32, name="v")
        y = ops.scaled_dot_product_attention(q, repeat_kv(k), repeat_kv(v), causal=causal)
        model = ov.Model([y], [q, k, v], "sdpa")
        feeds, base = [x["q"], x["k"], x["v"]], "ov_sdpa"
    else:
        xi = ops.parameter([B, Tq, dm], np.float32, name="x")
        w = np.ascontiguousarray(np.concatenate([x["wq"], x["wk"], x["wv"]]))  # [(H+2Hkv)·D, dm]
        b = np.concatenate([x["bq"], x["bk"], x["bv"]])
        qkv = ops.add(ops.matmul(xi, ops.constant(w), False, True), ops.constant(b))
        qs, ks, vs = ops.variadic_split(qkv, i64(2), i64(H * D, Hkv * D, Hkv * D)).outputs()
        a = ops.scaled_dot_product_attention(heads(qs, Tq, H), repeat_kv(heads(ks, Tk, Hkv)),
                                             repeat_kv(heads(vs, Tk, Hkv)), causal=causal)
        a = ops.reshape(ops.transpose(a, i64(0, 2, 1, 3)), i64(B, Tq, H * D), False)
        y = ops.add(ops.matmul(a, ops.constant(np.ascontiguousarray(x["wo"])), False, True),
                    ops.constant(x["bo"]))
        model = ov.Model([y], [xi], "sdpa_layer")
        feeds, base = [x["x"]], "ov_sdpa_layer"
    core = ov.Core()
    systems, skipped = {}, []
    for hint in ("f32", None):
        cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if hint:
            cfg["INFERENCE_PRECISION_HINT"] = hint
        compiled = core.compile_model(model, "CPU", cfg)
        prec = ov_precision(compiled)
        if hint is None and prec == "f32":
            skipped.append(f"{base}_default: OpenVINO's default precision here is f32, the "
                           f"same as {base}_f32")
            continue
        req = compiled.create_infer_request()
        for i, a in enumerate(feeds):  # bound once, read in place (shared_memory)
            req.set_input_tensor(i, ov.Tensor(np.ascontiguousarray(a), shared_memory=True))

        def run(req=req):
            req.infer()
            return req.get_output_tensor(0).data
        systems[f"{base}_f32" if hint else f"{base}_default_{prec}"] = run
    return systems, skipped


# ---------------------------------------------------------------------------- timing


def time_call(fn, min_time):
    fn()  # warm
    times, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= min_time and len(times) >= 2:
            break
    return statistics.median(times)


def first_cpu():
    """The lowest CPU this process may run on (bench/busy-core.c mha_bench_busy_first_cpu)."""
    try:
        return min(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        return 0


# the busy process: pins itself, says so, then takes the whole core (no sleep, no yield)
SPIN = "import os, sys\nos.sched_setaffinity(0, {%d})\nsys.stdout.write('1')\n" \
    "sys.stdout.flush()\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy_core(cpu):
    """--stolen-core: a separate Python process spinning on `cpu` (pinned with
    os.sched_setaffinity) for the duration of the block, killed at its end; None: quiet."""
    if cpu is None:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", SPIN % cpu], stdout=subprocess.PIPE)
    try:
        if proc.stdout.read(1) != b"1":  # pinned and about to spin
            raise RuntimeError(f"the busy process did not start on CPU {cpu} "
                               f"(exit status {proc.wait()})")
        yield
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def probe_peaks(path, threads):
    """(FMA peak GFLOP/s, read GB/s, BF16 unit's peak GFLOP/s or None) at `threads`, from
    an mha_bench JSON's context (peak_gflops_<isa>_t<n>, mem_read_GBps_t<n>,
    bf16_peak_gflops_t<n>: the probes of the same run)."""
    if not path or not os.path.exists(path):
        return None, None, None
    ctx = json.load(open(path)).get("context", {})

    def num(v):
        try:
            return float(str(v).split()[0])
        except (TypeError, ValueError):
            return None
    peaks = [num(v) for k, v in ctx.items()
             if k.startswith("peak_gflops_") and k.endswith(f"_t{threads}")]
    peaks = [v for v in peaks if v]
    return (max(peaks) if peaks else num(ctx.get("peak_gflops")),
            num(ctx.get(f"mem_read_GBps_t{threads}")),
            num(ctx.get(f"bf16_peak_gflops_t{threads}")))


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# Each family of systems runs in a process of its own: PyTorch, ONNX Runtime and
# OpenVINO bring their own OpenMP runtime or thread pool (OpenVINO: TBB), which must
# not share a process with mha's libgomp (two runtimes spinning on the same cores
# slow each other down by integer factors). The driver alternates between them.
FAMILIES = ("mha", "torch", "ort", "ov")


def worker(family, lib_path, conn):
    if family == "mha":
        os.environ["MHA_LIBRARY"] = os.path.abspath(lib_path)
    systems, cleanup, inputs = {}, None, (None, None)
    while True:
        cmd, arg = conn.recv()
        try:
            if cmd == "quit":
                break
            if cmd == "versions":
                if family == "mha":
                    conn.send(("ok", {"mha_isa": mha.get_isa()}))
                elif family == "torch":
                    import torch
                    conn.send(("ok", {"torch": torch.__version__}))
                elif family == "ort":
                    import onnxruntime
                    conn.send(("ok", {"onnxruntime": onnxruntime.__version__}))
                else:
                    import openvino
                    conn.send(("ok", {"openvino": openvino.__version__.split("-")[0]}))
            elif cmd == "setup":  # (preset, threads)
                if cleanup:
                    cleanup()
                    cleanup = None
                systems, skipped = {}, []  # the previous systems' tensors go first
                p, threads, bf16 = arg
                bf16 = bf16 and p.kind in ("core", "layer") and not p.variant and not p.kv_dtype
                if inputs[0] != p:  # the same inputs at every thread count of a preset
                    inputs = (None, None)
                    gc.collect()
                    inputs = (p, make_inputs(p, np.random.default_rng(0x6d6861)))
                gc.collect()
                x = inputs[1]
                if family == "mha":
                    fn, cleanup = mha_system(p, x, threads)
                    systems = {"mha": fn}
                    if bf16:
                        fb, close_b = mha_bf16_system(p, bf16_inputs(p, x), threads)
                        systems["mha_bf16"] = Bf16Output(fb, bf16_value)
                        if close_b:
                            first = cleanup
                            cleanup = (lambda: (first(), close_b())) if first else close_b
                elif family == "torch":
                    systems, skipped = torch_systems(p, x, threads, bf16)
                elif family == "ort":
                    systems, skipped = ort_systems(p, x, threads)
                else:
                    systems, skipped = ov_systems(p, x, threads)
                conn.send(("ok", (sorted(systems), skipped)))
            elif cmd == "output":
                fn = systems[arg]
                y = fn.output() if isinstance(fn, Bf16Output) else fn()
                conn.send(("ok", np.ascontiguousarray(y)))
            elif cmd == "time":
                name, min_time = arg
                conn.send(("ok", time_call(systems[name], min_time)))
        except Exception as e:  # reported by the driver, never fatal to the run
            conn.send(("error", f"{type(e).__name__}: {e}"))


class Family:
    def __init__(self, ctx, family, lib_path):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(family, lib_path, child), daemon=True)
        self.proc.start()

    def call(self, cmd, arg=None):
        self.conn.send((cmd, arg))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(value)
        return value

    def close(self):
        self.conn.send(("quit", None))
        self.proc.join(10)


def thread_counts(text):
    """--threads: one count or a comma-separated list (e.g. 1,16), in the order given."""
    try:
        counts = list(dict.fromkeys(int(t) for t in str(text).split(",") if t.strip()))
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--threads {text!r}: a count or a list such as 1,16")
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="build/libmha.so")
    ap.add_argument("--threads", type=thread_counts, default=[os.cpu_count()],
                    help="thread count, or a comma-separated list timed one after another "
                    "within each preset (e.g. 1,16: the one-thread and all-thread rows)")
    ap.add_argument("--presets", default=",".join(dict.fromkeys(p.name for p in PRESETS)),
                    help="comma-separated names; 'variants' stands for every variant preset, "
                    "'kv' for every K/V-cache preset")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--probe-json")
    ap.add_argument("--peak-gflops", type=float,
                    help="FMA peak at the largest --threads (others: --probe-json's)")
    ap.add_argument("--read-gbps", type=float,
                    help="read bandwidth at the largest --threads (others: --probe-json's)")
    ap.add_argument("--json", help="default out/bench/peers.json (--stolen-core: "
                    "out/bench/stolen-peers.json)")
    ap.add_argument("--md")
    ap.add_argument("--variants-full", action="store_true",
                    help="also the variant shapes marked full_only (gemma2, window_scaling "
                    "T 16384 and 32768)")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke check only: every preset shrunk (T / 16, fewer heads)")
    ap.add_argument("--bf16", action="store_true",
                    help="also the bf16 rows of the core and layer presets: mha_bf16, "
                    "torch_sdpa_bf16, torch_sdpa_layer_bf16 (speed-ups of bf16 peers over "
                    "mha_bf16)")
    ap.add_argument("--stolen-core", action="store_true",
                    help="instead of the presets: mha and torch_sdpa on the stolen_core decode "
                    "shapes at the largest --threads, quiet and with a process spinning on the "
                    "first CPU")
    args = ap.parse_args()
    busy_cpu, loads, families = None, (None,), FAMILIES
    if args.stolen_core:  # --presets does not apply
        presets = [tiny(p) if args.tiny else p for p in STOLEN]
        args.threads = [max(args.threads)]
        busy_cpu, loads, families = first_cpu(), (0, 1), STOLEN_FAMILIES
    else:
        wanted = set()
        for w in args.presets.split(","):
            names = {p.name for p in PRESETS if p.variant} if w == "variants" else \
                {p.name for p in PRESETS if p.kv_dtype} if w == "kv" else {w}
            if not names & {p.name for p in PRESETS}:
                ap.error(f"unknown preset {w!r}")
            wanted |= names
        presets = []
        for p in PRESETS:
            if p.name not in wanted:
                continue
            if p.full_only and not (args.variants_full or args.tiny):  # tiny: seconds anyway
                print(f"peers: {p.name} T {p.Tq}: left out (minutes for the PyTorch peers; "
                      "--variants-full runs it)", flush=True)
                continue
            presets.append(tiny(p) if args.tiny else p)
    if not args.json:
        args.json = "out/bench/stolen-peers.json" if args.stolen_core else "out/bench/peers.json"

    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    fams = {f: Family(ctx, f, args.lib) for f in families}
    tmax = max(args.threads)
    peaks = {}  # threads → (FMA peak GFLOP/s, read GB/s)
    bf16_peaks = {}  # threads → the BF16 unit's dot-product peak (None: not probed)
    for n in args.threads:
        peak, bw, bf16_peaks[n] = probe_peaks(args.probe_json, n)
        if n == tmax:
            peak, bw = args.peak_gflops or peak, args.read_gbps or bw
        peaks[n] = (peak, bw)
    versions = {"numpy": np.__version__}
    for f in fams.values():
        versions.update(f.call("versions"))
    cpu = cpu_model()
    tl = ", ".join(map(str, args.threads))
    print(f"peers: CPU {cpu}; threads {tl}; mha {versions['mha_isa']}, "
          + ", ".join(f"{k} {versions[k]}" for k in ("torch", "onnxruntime", "openvino")
                      if k in versions)
          + "; FMA peak / read GB/s "
          + ", ".join(f"{peaks[n][0]} / {peaks[n][1]} at {n}" for n in args.threads)
          + (f"; --stolen-core: busy rows with a process spinning on CPU {busy_cpu}"
             if args.stolen_core else "")
          + ("; --tiny: smoke shapes, not a benchmark" if args.tiny else ""), flush=True)

    rows, errors, skipped = [], [], []
    if any(p.kv_dtype for p in presets):
        skipped.append("kv_decode: ggml (llama.cpp's CPU attention over f16 K/V caches): not "
                       "available here (no ggml build or Python binding installed)")
    # thread count is the outer loop within a preset (as mha_bench), the systems the inner
    for p, threads in ((p, n) for p in presets for n in args.threads):
        t_preset = time.perf_counter()
        tag = f"{p.name}" + (f" T {p.Tq}" if p.variant else "") + f" t{threads}"
        peak, bw = peaks[threads]
        owner = {}
        for fname, fam in fams.items():
            try:
                names, why = fam.call("setup", (p, threads, args.bf16))
                for n in names:
                    owner[n] = fam
                for w in why:  # a peer left out on purpose (memory): a note, not an error
                    note = f"{p.name} ({describe(p)}): {w}"
                    if note not in skipped:  # once, not once per thread count
                        skipped.append(note)
                        print(f"peers: {p.name} T {p.Tq}: skipped {w}", flush=True)
            except RuntimeError as e:
                errors.append(f"{tag}: {fname} setup: {e}")
        if "mha" not in owner:
            continue
        ref = owner["mha"].call("output", "mha")
        ok, check = ["mha"], {}
        for n, fam in owner.items():
            if n == "mha":
                continue
            try:
                err = nrmse(fam.call("output", n), ref)
            except RuntimeError as e:
                errors.append(f"{tag}: {n}: {e}")
                continue
            check[n] = err
            tol = kv_tolerance(p, n)
            if err < tol:
                ok.append(n)
            else:
                errors.append(f"{tag}: {n}: output differs from mha's (nrmse {err:.3g} "
                              f">= {tol:.3g})")
        # loads: (None,) for the presets; --stolen-core: 0 quiet, then 1 with busy_cpu taken
        times = {(n, busy): [] for n in ok for busy in loads}
        for _ in range(args.rounds):
            for n in ok:
                for busy in loads:
                    time.sleep(0.2)  # let the previous system's spinning threads go to sleep
                    with busy_core(busy_cpu if busy else None):
                        times[n, busy].append(owner[n].call("time", (n, args.min_time)))
        fl = flops(p)
        for (n, busy), ts in times.items():
            t = statistics.median(ts)
            row = {"preset": p[0], "kind": p[1], "B": p[2], "H": p[3], "Hkv": p[4], "Tq": p[5],
                   "Tk": p[6], "D": p[7], "d_model": p[8], "causal": p[9], "system": n,
                   "precision": precision(p, n), "threads": threads, "median_s": t,
                   "rounds_s": ts, "gflops": fl / t / 1e9}
            if p.variant:
                row.update(variant=True, window=p.window, softcap=p.softcap, alibi=p.alibi,
                           sinks=p.sinks)
            if p.kv_dtype:
                row.update(kv_dtype=p.kv_dtype, page=p.page, mixed=p.mixed)
            if busy is not None:
                row.update(busy=busy, busy_cpu=busy_cpu if busy else None)
            if n in check:
                row["nrmse"] = check[n]
                row["nrmse_tol"] = kv_tolerance(p, n)
            # a bf16 row against the BF16 unit's peak where it was probed (the
            # products every bf16 system here runs on it), else the FMA's
            unit_peak = bf16_peaks[threads] if row["precision"] == "bf16" else None
            if unit_peak or peak:
                row["pct_peak"] = 100.0 * row["gflops"] / (unit_peak or peak)
                row["pct_peak_of"] = "bf16" if unit_peak else "fma"
            if p[5] == 1:
                row["gbps"] = kv_bytes(p) / t / 1e9
                if bw:
                    row["pct_bw"] = 100.0 * row["gbps"] / bw
            rows.append(row)
            print(f"peers: {p[0]:18s} t{threads:<3d} {n:26s} {t * 1e3:10.2f} ms  "
                  f"{row['gflops']:8.1f} GFLOP/s"
                  + (f"  (T {p.Tq})" if p.variant else "")
                  + (f"  ({describe(p)})" if p.kv_dtype or busy is not None else "")
                  + ("" if busy is None else f"  CPU {busy_cpu} busy" if busy else "  quiet")
                  + (f"  nrmse {check[n]:.1e}" if n in check else ""), flush=True)
        print(f"peers: {tag}: {time.perf_counter() - t_preset:.1f} s in all", flush=True)
    for f in fams.values():
        f.close()

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        # "threads" stays the largest count (one number, as before); every row has its own
        json.dump({"context": {"cpu": cpu, "threads": tmax, "thread_counts": args.threads,
                               "peak_gflops": peaks[tmax][0], "read_gbps": peaks[tmax][1],
                               "peaks": {str(n): {"peak_gflops": pk, "read_gbps": b}
                                         for n, (pk, b) in peaks.items()},
                               "tiny": args.tiny, "stolen_core": args.stolen_core,
                               "busy_cpu": busy_cpu, **versions}, "rows": rows,
                   "errors": errors, "skipped": skipped}, f, indent=1)
    md = stolen_summary(rows, cpu, tmax, versions, busy_cpu) if args.stolen_core else \
        summary(rows, cpu, args.threads, versions, skipped)
    print(md)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    for e in errors:
        print("peers: ERROR: " + e, file=sys.stderr)
    return 1 if errors else 0


def row_shape(r):
    """describe() of a JSON row (the presets' shape in words)."""
    return describe(Preset(r["preset"], r["kind"], r["B"], r["H"], r["Hkv"], r["Tq"], r["Tk"],
                           r["D"], r["d_model"], r["causal"], r.get("variant", False),
                           r.get("window", 0), r.get("softcap", 0.0), r.get("alibi", False),
                           r.get("sinks", False), False, r.get("kv_dtype", ""), r.get("page", 0),
                           r.get("mixed", False)))


def summary(rows, cpu, threads, versions, skipped=()):
    lines = [f"CPU: {cpu}; threads {', '.join(map(str, threads))}; mha kernel set "
             f"{versions['mha_isa']}; torch {versions['torch']}, onnxruntime "
             f"{versions['onnxruntime']}, openvino {versions['openvino']}.",
             "Medians of alternating rounds in one run. speed-up = peer time / mha time at the "
             "same thread count (> 1: mha is faster); a peer computing in bf16 is set beside "
             "mha_bf16 where that row exists (--bf16). precision: what the system computes in.",
             "",
             "| preset | shape | threads | system | precision | median | GFLOP/s | % peak | GB/s | "
             "% read probe | mha speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    by_shape = {}  # window_scaling has one preset name for four T
    for r in rows:
        by_shape.setdefault((r["preset"], row_shape(r), r["threads"]), []).append(r)
    for (preset, shape, n), rs in by_shape.items():
        mha = next((r for r in rs if r["system"] == "mha"), None)
        mha_bf16 = next((r for r in rs if r["system"] == "mha_bf16"), None)
        for r in rs:
            t = r["median_s"]
            tm = f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.2f} s"
            base = mha_bf16 if r.get("precision") == "bf16" and mha_bf16 else mha
            sp = "—" if r["system"] in ("mha", "mha_bf16") or base is None else \
                f"{t / base['median_s']:.2f}×" + (" (vs mha_bf16)" if base is mha_bf16 else "")
            pct = f"{r['pct_peak']:.1f}" if "pct_peak" in r else "—"
            gb = f"{r['gbps']:.1f}" if "gbps" in r else "—"
            pbw = f"{r['pct_bw']:.1f}" if "pct_bw" in r else "—"
            lines.append(f"| {preset} | {shape} | {n} | {r['system']} | "
                         f"{r.get('precision', 'f32')} | {tm} | {r['gflops']:.1f} | "
                         f"{pct} | {gb} | {pbw} | {sp} |")
    if skipped:
        lines += ["", "Left out: " + "; ".join(skipped) + "."]
    return "\n".join(lines)


def stolen_summary(rows, cpu, threads, versions, busy_cpu):
    """--stolen-core: per shape and system, the quiet and busy medians and busy / quiet."""
    lines = [f"Stolen core: decode at {threads} threads, quiet and with a process spinning on "
             f"CPU {busy_cpu} (pinned, started before each busy timing and killed after it). "
             f"CPU: {cpu}; mha kernel set {versions['mha_isa']} (OpenMP); torch "
             f"{versions.get('torch')} (SDPA). Medians of alternating rounds in one run.", "",
             "| shape | system | quiet ms | busy ms | busy/quiet |", "|---|---|---|---|---|"]
    cells = {}
    for r in rows:
        cells.setdefault((row_shape(r), r["system"]), {})[r["busy"]] = r["median_s"]
    for (shape, system), t in cells.items():
        q, b = t.get(0), t.get(1)
        lines.append(f"| {shape} | {system} | {f'{q * 1e3:.3f}' if q else '—'} | "
                     f"{f'{b * 1e3:.3f}' if b else '—'} | {f'{b / q:.2f}×' if q and b else '—'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
