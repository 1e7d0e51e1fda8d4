#!/usr/bin/env python3
"""Writes the seed corpus of the libFuzzer harnesses (standard library only).

    python3 tests/fuzz/make_seeds.py [corpus_dir]     (default: tests/fuzz/corpus)

Each seed is one named problem encoded in the byte format that
fuzz-common.c, fuzz-attention.c, fuzz-layer.c, fuzz-kv-cache.c and
fuzz-varlen.c decode: change this file with them. Fields left out take the
harness's defaults, so a seed names only what makes it interesting. The
directories corpus/attention, corpus/layer, corpus/kv-cache and corpus/varlen
are rewritten from scratch.
"""
import os
import struct
import sys

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# fuzz_size: bytes 0xE0..0xEB are these special values
SPECIAL_SIZES = {0: 0xE0, -1: 0xE1, INT64_MIN: 0xE2, 1 << 62: 0xE3, INT64_MAX: 0xE4,
                 1 << 31: 0xE5, (1 << 32) + 1: 0xE6, 2048: 0xE8, 1 << 40: 0xE9,
                 3037000500: 0xEA, (1 << 31) - 1: 0xEB}


def size(v):
    """A size field: 1..8 and 9..70 in one byte, up to 2200 in three, or a special."""
    if v in SPECIAL_SIZES:
        return bytes([SPECIAL_SIZES[v]])
    if 1 <= v <= 8:
        return bytes([v - 1])
    if 9 <= v <= 70:
        return bytes([0x70 + v - 1])
    if 71 <= v <= 2200:
        return bytes([0xE7]) + struct.pack("<H", v - 1)
    raise ValueError(f"size {v} has no encoding")


# fuzz_layout: < 0x80 contiguous [B, H, T, W]; 0x80 + kind otherwise, then
# the kind's own fields: three pad bytes, three sizes, or one flag byte
LAYOUT_KINDS = ["bthd", "padded", "zero_batch", "zero_head", "zero_row", "neg_batch", "neg_head",
                "neg_row", "rows_overlap", "heads_overlap", "batches_overlap", "huge_row",
                "huge_head", "explicit", "bthd_padded", "unit_zero"]
LAYOUT_FIELDS = {"padded": 3, "explicit": 3, "bthd_padded": 3, "unit_zero": 1}


def layout(kind="bhtd", *extra):
    if kind == "bhtd":
        return b"\x00"
    if len(extra) != LAYOUT_FIELDS.get(kind, 0):
        raise ValueError(f"layout {kind} takes {LAYOUT_FIELDS.get(kind, 0)} fields")
    out = bytes([0x80 + LAYOUT_KINDS.index(kind)])
    for x in extra:  # a size (bytes) or a byte (int)
        out += x if isinstance(x, bytes) else bytes([x])
    return out


# fuzz_scale: < 0x80 default; 0x80 + 40 + 16·s for s in [-2.5, 4.4]; 0xF0.. specials
SPECIAL_SCALES = ["nan", "inf", "-inf", "3e38", "-3e38", "-0", "flt_min", "1e-30", "1e6",
                  "flt_max", "0.125", "1", "30", "-1", "1e3", "0"]


def scale(s=None):
    if s is None:
        return b"\x00"
    if isinstance(s, str):
        return bytes([0xF0 + SPECIAL_SCALES.index(s)])
    return bytes([0x80 + 40 + round(16 * s)])


ISAS = {"default": 0, "scalar": 1, "avx2": 2, "avx512f": 3, "neon": 4,
        "bad5": 0xF0, "bad-1": 0xF1, "bad100": 0xF2}
THREADS = {0: 0, 1: 1, 2: 2, 3: 0xF0, -1: 0xF1, "int_min": 0xF2}
CAUSAL = {0: 0, 1: 1, 2: 0xF0, -1: 0xF1, "int_min": 0xF2}
KV_LEN = {"none": 0, "random": 4, "full": 5, "empty_and_full": 6,
          "bad-1": 7, "bad_tk+1": 7 | 8, "bad_int_max": 7 | 16, "bad_int_min": 7 | 24}
ADDITIVE = {"none": 0, "broadcast": 3, "full": 4, "padded": 5, "per_batch": 6,
            "key_padding": 7, "one_row": 8, "negative": 9, "short_rows": 10, "layout": 11}
CONTENT = {"finite": 0, "some_-inf": 1, "rows_-inf": 2, "mostly_-inf": 3, "one_+inf": 4,
           "one_nan": 5, "huge": 6, "mixed": 7}
WORKSPACE = {"none": 0, "exact": 4, "misaligned": 5, "short": 6, "tiny": 7}


def mask(causal=0, kv_len="none", additive="none", content="finite", extra=b""):
    """causal, kv_len, additive kind [+ its bytes], content (only with an additive mask)."""
    out = bytes([CAUSAL[causal], KV_LEN[kv_len], ADDITIVE[additive]]) + extra
    if additive != "none":
        out += bytes([CONTENT[content]])
    return out


CORE_NULL = {"none": 0, "q": 0xF0, "k": 0xF1, "v": 0xF2, "out": 0xF3, "desc": 0xF4, "bytes": 0xF5}
CORE_ALIAS = {"none": 0, "k=q": 0xF0, "v=k": 0xF1, "out=q": 0xF2, "out=v": 0xF3,
              "weights=out": 0xF4, "out=mask": 0xF5, "weights=k": 0xF6}
CHECKS_ALL = 0x07  # reruns: threads, weights toggled, one entry
BAD_NAN, BAD_INF = 0x08, 0x18  # NaN / +inf in a few K/V (layer: key/value input) elements
LAYER_BF16, LAYER_F16 = 0x20, 0x60  # fuzz-layer: the 16-bit forms after a successful forward


# The attention variants: trailing bytes after checks, written only when a
# seed names one (an input that ends before them has every variant off)
ALIGN = {"bottom_right": 0, "top_left": 1, "offset": 2, "kv_end": 3, "bad4": 0xF0, "bad-1": 0xF1}
OFFSETS = {1 << 60: 0xF8, -(1 << 60): 0xF9, INT64_MAX: 0xFA, INT64_MIN: 0xFB,
           (1 << 60) - 1: 0xFC, -((1 << 60) - 1): 0xFD, 1000: 0xFE, -1000: 0xFF}
WINDOW = {0: 0, 1: 1, 2: 0xF0, -1: 0xF1}
WINDOW_SIDES = {-1: 0xF0, INT64_MIN: 0xF1, INT64_MAX: 0xF2, 1 << 62: 0xF3, (1 << 62) + 1: 0xF4,
                64: 0xF5, 300: 0xF6}
ALIBI = {"off": 0, "unit": 1, "small": 2, "signed": 3}  # slopes in [0, 1), [0, 1/16), [-1, 1)
SOFTCAPS = {"nan": 0xF0, "-1": 0xF1, "inf": 0xF2, "-inf": 0xF3, "-0": 0xF4, "flt_min": 0xF5,
            "flt_max": 0xF6, "1e-3": 0xF7}
SINKS = {"off": 0, "small": 1, "some_-inf": 2, "large": 3}  # [-4, 4), some -inf, [80, 100)
LSE = {"off": 0, "on": 1, "out": 0xF0, "q": 0xF1}  # own buffer, or over out / q
WMODES = {"per_head": 0, "mean": 4, "selected": 5, "bad_head": 6, "bad_enum": 7,
          "null_heads": 7 | 8, "zero_heads": 7 | 16}


def offset(o):
    return bytes([OFFSETS[o]]) if o in OFFSETS else bytes([o + 32])  # -32 .. 31


def window_side(w):
    return bytes([WINDOW_SIDES[w]]) if w in WINDOW_SIDES else bytes([w])  # 0 .. 15


def softcap(c):
    if isinstance(c, str):
        return bytes([SOFTCAPS[c]])
    return bytes([0 if c == 0 else 0x80 + round((c - 0.5) * 2)])  # 0.5 .. 56.5 by halves


def wmode(mode, nheads=1):
    """weights_mode: selected / bad_head take 1..4 heads (drawn by the harness)."""
    return bytes([WMODES[mode] | ((nheads - 1) << 3 if mode in ("selected", "bad_head") else 0)])


def variants(align="bottom_right", off=0, window=0, left=0, right=0, alibi="off", cap=0,
             sinks="off", lse="off", weights_mode="per_head", nheads=1):
    return (bytes([ALIGN[align]]) + offset(off) + bytes([WINDOW[window]]) + window_side(left) +
            window_side(right) + bytes([ALIBI[alibi]]) + softcap(cap) + bytes([SINKS[sinks]]) +
            bytes([LSE[lse]]) + wmode(weights_mode, nheads))


def attention(B=1, Hkv=1, group=2, H=None, Tq=3, Tk=5, D=8, Dv=8, q="bhtd", k="bhtd", v="bhtd",
              out="bhtd", m=None, sc=None, values=0, threads=0, isa="default", weights=0,
              workspace="none", null="none", alias="none", checks=CHECKS_ALL, var=None):
    """One fuzz-attention input; H = Hkv·group unless H is given."""
    hmode = size(H) if H is not None else b""
    data = size(B) + size(Hkv)
    data += bytes([0xC0]) + hmode if H is not None else bytes([group - 1])
    data += size(Tq) + size(Tk) + size(D) + size(Dv)
    for lay in (q, k, v, out):
        data += layout(*lay) if isinstance(lay, tuple) else layout(lay)
    data += m if m is not None else mask()
    data += scale(sc) + bytes([values, THREADS[threads], ISAS[isa], weights,
                               WORKSPACE[workspace], CORE_NULL[null], CORE_ALIAS[alias], checks])
    if var is not None:
        data += variants(**var)
    return data


LAYER_NULL = {"none": 0, "desc": 0xF0, "&layer": 0xF1, "layer": 0xF2, "args": 0xF3, "x_q": 0xF4,
              "out": 0xF5, "bytes": 0xF6}
LAYER_ALIAS = {"none": 0, "out=x_q": 0xF0, "out=x_k": 0xF1, "weights=out": 0xF2,
               "weights=x_q": 0xF3, "workspace=out": 0xF4}
FORMS = {"separate": 0, "in_proj": 5, "in_proj+w_q": 6, "no_w_q": 7, "no_w_k": 7 | 8,
         "no_w_v": 7 | 16}
INPUTS = {"self": 0, "cross_kv": 4, "cross": 6, "x_v_only": 7}


def hkv_byte(H, Hkv):
    """The Hkv field: 0 (default = H), H / divisor, or an explicit size."""
    if Hkv == 0:
        return b"\x00"
    if Hkv > 0 and H % Hkv == 0 and H // Hkv <= 8:
        return bytes([((H // Hkv - 1) << 2) | 1])  # the largest divisor <= 1 + (b >> 2) % 8
    return bytes([0xF0]) + size(Hkv)


def optional(v, threshold):
    """D, Dv, d_kv: 0 is the default; anything else is a marker byte and a size."""
    return b"\x00" if v == 0 else bytes([threshold]) + size(v)


def layer(d_model=16, H=2, Hkv=0, D=0, Dv=0, d_kv=0, out_in=1, form="separate", biases="",
          w_o=True, isa="default", B=1, Tq=4, Tk=5, inputs="self", m=None, weights=0, sc=None,
          threads=0, workspace="none", null="none", checks=CHECKS_ALL, alias="none"):
    """One fuzz-layer input; biases is a string of q k v o p (in_proj_bias)."""
    bias_bits = sum(1 << "qkvop".index(ch) for ch in biases)
    layout_byte = out_in if out_in in (0, 1) else (0xF1 if out_in == 2 else 0xF0)
    data = size(d_model) + size(H) + hkv_byte(H, Hkv)
    data += optional(D, 0xA0) + optional(Dv, 0xC0) + optional(d_kv, 0xC0)
    data += bytes([layout_byte, FORMS[form], bias_bits, 0 if w_o else 3, ISAS[isa]])
    data += size(B) + size(Tq) + size(Tk) + bytes([INPUTS[inputs]])
    data += m if m is not None else mask()
    data += bytes([weights]) + scale(sc)
    data += bytes([THREADS[threads], WORKSPACE[workspace], LAYER_NULL[null], checks,
                   LAYER_ALIAS[alias]])
    return data


ATTENTION_SEEDS = {
    # the paths a real engine takes
    "prefill-causal": attention(B=2, Hkv=2, group=2, Tq=16, Tk=16, D=32, Dv=32, m=mask(causal=1)),
    "prefill-gqa-bthd": attention(B=2, Hkv=2, group=4, Tq=33, Tk=33, D=16, Dv=16, q="bthd",
                                  k="bthd", v="bthd", out="bthd", m=mask(causal=1)),
    "decode-mqa-2048": attention(B=1, Hkv=1, group=4, Tq=1, Tk=2048, D=64, Dv=64),
    "decode-gqa-kvlen": attention(B=2, Hkv=2, group=2, Tq=1, Tk=2048, D=16, Dv=16,
                                  m=mask(kv_len="random"), threads=2),
    "decode-2100-causal": attention(B=1, Hkv=1, group=2, Tq=1, Tk=2100, D=64, Dv=64,
                                    m=mask(causal=1)),
    "chunked-prefill-tq<tk": attention(B=1, Hkv=1, group=3, Tq=7, Tk=65, D=24, Dv=12,
                                       m=mask(causal=1), weights=1),
    "tq>tk-causal-weights": attention(B=1, Hkv=2, group=1, Tq=9, Tk=4, D=7, Dv=5,
                                      m=mask(causal=1), weights=1),
    # every mask kind
    "mask-kvlen-empty-full": attention(B=3, Hkv=1, group=2, Tq=5, Tk=9,
                                       m=mask(kv_len="empty_and_full"), weights=1),
    "mask-broadcast-some-inf": attention(B=2, Hkv=1, group=2, Tq=6, Tk=10,
                                         m=mask(additive="broadcast", content="some_-inf")),
    "mask-full-rows-inf": attention(B=2, Hkv=2, group=1, Tq=4, Tk=8, weights=1,
                                    m=mask(additive="full", content="rows_-inf")),
    "mask-padded-mostly-inf": attention(B=2, Hkv=1, group=1, Tq=3, Tk=20,
                                        m=mask(causal=1, additive="padded", extra=b"\x05",
                                               content="mostly_-inf")),
    "mask-per-batch-huge": attention(B=2, Hkv=1, group=2, Tq=4, Tk=6,
                                     m=mask(additive="per_batch", content="huge")),
    "mask-key-padding-nan": attention(B=2, Hkv=1, group=2, Tq=4, Tk=6, weights=1,
                                      m=mask(additive="key_padding", content="one_nan")),
    "mask-one-row-plus-inf": attention(B=1, Hkv=1, group=1, Tq=3, Tk=6,
                                       m=mask(additive="one_row", content="one_+inf")),
    "mask-all-kinds-mixed": attention(B=3, Hkv=1, group=2, Tq=8, Tk=8, weights=1,
                                      m=mask(causal=1, kv_len="random", additive="full",
                                             content="mixed")),
    "nonfinite-kv-causal": attention(B=2, Hkv=2, group=2, Tq=24, Tk=24, m=mask(causal=1),
                                   weights=1, checks=CHECKS_ALL | BAD_NAN),
    "nonfinite-kv-kvlen-decode": attention(B=3, Hkv=2, group=2, Tq=1, Tk=300,
                                         m=mask(kv_len="random"), checks=CHECKS_ALL | BAD_NAN),
    "nonfinite-kv-inf-additive": attention(B=1, Hkv=1, group=2, Tq=8, Tk=40,
                                     m=mask(additive="full", content="some_-inf"),
                                     checks=CHECKS_ALL | BAD_INF),
    # an even Tq: the bf16 rerun, the BF16 form on a set with a BF16 unit; kv_len 0 for
    # entry 0: the K/V pre-pass's blocks past it hold no key (they ran past K, stop 38)
    "bf16-prefill-kvlen-past-blocks": attention(B=2, Hkv=1, group=2, Tq=32, Tk=520, D=4, Dv=4,
                                                m=mask(kv_len="empty_and_full")),
    # layouts, workspaces, values, kernel sets
    "strides-padded-broadcast": attention(B=2, Hkv=2, group=2, Tq=5, Tk=7, D=9, Dv=3,
                                          q=("padded", 3, 5, 7), k="zero_batch", v=("unit_zero", 1),
                                          out=("bthd_padded", 1, 2, 3)),
    "workspace-exact-scalar": attention(B=2, Hkv=1, group=2, Tq=8, Tk=8, workspace="exact",
                                        isa="scalar", weights=1),
    "workspace-misaligned-avx2": attention(B=1, Hkv=1, group=2, Tq=1, Tk=300,
                                           workspace="misaligned", isa="avx2"),
    "logits-high-avx512f": attention(B=1, Hkv=1, group=2, Tq=4, Tk=64, D=32, values=1,
                                     isa="avx512f", threads=1),
    "logits-large-scale": attention(B=1, Hkv=1, group=1, Tq=4, Tk=16, values=2, sc=4.0),
    # what must be refused
    "bad-workspace-short": attention(workspace="short"),
    "bad-h-not-multiple": attention(Hkv=3, H=4),
    "bad-sizes-huge": attention(Tq=1 << 62, D=INT64_MAX),
    "bad-size-zero": attention(Tk=0),
    "bad-out-overlaps": attention(Tq=4, out="rows_overlap"),
    "bad-out-head-stride-0": attention(out="zero_head"),
    "bad-negative-stride": attention(k="neg_row"),
    "bad-huge-strides": attention(q="huge_row", v=("explicit", size(1 << 40), size(1), size(8))),
    "bad-scale-nan": attention(sc="nan"),
    "bad-scale-3e38": attention(sc="3e38", values=2),
    "bad-causal-2": attention(m=mask(causal=2)),
    "bad-kvlen-tk+1": attention(B=2, m=mask(kv_len="bad_tk+1")),
    "bad-isa-neon": attention(isa="neon"),
    "bad-isa-value": attention(isa="bad5"),
    "bad-null-q": attention(null="q"),
    "bad-out-is-q": attention(alias="out=q"),
    "bad-weights-is-out": attention(weights=1, alias="weights=out"),
    "bad-threads-negative": attention(threads=-1),
    # the attention variants
    "var-window-causal-alibi-lse": attention(
        B=2, Hkv=2, group=2, Tq=16, Tk=40, D=16, Dv=8, m=mask(causal=1), weights=1,
        var=dict(window=1, left=7, right=0, alibi="small", lse="on")),
    "var-offset-softcap-sinks-selected": attention(
        B=1, Hkv=1, group=3, Tq=7, Tk=65, D=24, Dv=12, m=mask(causal=1), weights=1, values=2,
        var=dict(align="offset", off=20, cap=10, sinks="small", lse="on",
                 weights_mode="selected", nheads=3)),
    "var-decode-kvend-sinks-mean": attention(
        B=3, Hkv=2, group=2, Tq=1, Tk=300, D=16, Dv=16, m=mask(kv_len="random"), weights=1,
        var=dict(align="kv_end", sinks="some_-inf", lse="on", weights_mode="mean")),
    "var-topleft-window-both-sides": attention(
        B=2, Hkv=1, group=2, Tq=9, Tk=4, D=7, Dv=5, m=mask(additive="full", content="some_-inf"),
        weights=1, var=dict(align="top_left", window=1, left=1, right=2, alibi="signed",
                            sinks="large", weights_mode="mean")),
    "var-high-logits-softcap": attention(
        B=1, Hkv=1, group=2, Tq=4, Tk=64, D=32, values=1, weights=1,
        var=dict(cap=30, alibi="unit", lse="on", weights_mode="selected", nheads=2)),
    "var-window-empty-rows": attention(
        B=2, Hkv=1, group=1, Tq=6, Tk=12, m=mask(causal=1), weights=1,
        var=dict(align="offset", off=-10, window=1, left=0, right=0, sinks="small", lse="on")),
    "bad-offset-2p60": attention(var=dict(align="offset", off=1 << 60)),
    "bad-align-4": attention(var=dict(align="bad4")),
    "bad-window-negative": attention(var=dict(window=1, left=-1)),
    "bad-window-2": attention(var=dict(window=2, left=3)),
    "bad-softcap-nan": attention(var=dict(cap="nan")),
    "bad-softcap-negative": attention(var=dict(cap="-1")),
    "bad-lse-is-out": attention(var=dict(lse="out")),
    "bad-weights-head": attention(weights=1, var=dict(weights_mode="bad_head", nheads=2)),
}

LAYER_SEEDS = {
    "self-bert-biases-causal": layer(d_model=64, H=4, biases="qkvo", B=2, Tq=16, m=mask(causal=1)),
    "self-in-out-layout": layer(d_model=24, H=3, out_in=0, B=2, Tq=7, weights=1),
    "self-gqa": layer(d_model=64, H=8, Hkv=2, B=1, Tq=12, m=mask(causal=1, kv_len="random")),
    "self-in-proj": layer(d_model=32, H=4, form="in_proj", biases="op", B=2, Tq=9),
    "self-no-w-o": layer(d_model=40, H=5, w_o=False, B=2, Tq=6, weights=1),
    "self-explicit-head-widths": layer(d_model=40, H=3, D=24, Dv=16, B=1, Tq=5,
                                       m=mask(additive="broadcast", content="some_-inf")),
    "cross-kv-fused": layer(d_model=32, d_kv=48, H=4, B=2, Tq=6, Tk=20, inputs="cross_kv",
                            m=mask(kv_len="empty_and_full")),
    "cross-separate-x-v": layer(d_model=16, H=2, B=2, Tq=3, Tk=30, inputs="cross",
                                m=mask(additive="key_padding", content="rows_-inf"), weights=1),
    "cross-decode": layer(d_model=32, H=4, Hkv=1, B=1, Tq=1, Tk=700, inputs="cross_kv",
                          threads=2),
    "nonfinite-input-self-causal": layer(d_model=16, H=2, B=2, Tq=10, m=mask(causal=1),
                                       checks=CHECKS_ALL | BAD_NAN),
    "nonfinite-input-inf-cross-kvlen": layer(d_model=16, H=2, B=2, Tq=3, Tk=12, inputs="cross",
                                       m=mask(kv_len="random"), weights=1,
                                       checks=CHECKS_ALL | BAD_INF),
    "workspace-exact": layer(d_model=16, H=4, B=3, Tq=5, workspace="exact", isa="scalar"),
    "workspace-misaligned": layer(d_model=16, H=2, B=2, Tq=5, workspace="misaligned", isa="avx2"),
    # the 16-bit forms: x and out 16-bit on the plan, and a plan from 16-bit weights (bf16
    # on a set with a BF16 unit: the layer's BF16 form); d_model 770 with narrow heads: the
    # BF16 form's projections take K in chunks (blocks of 8 rows and more, K past 768)
    "bf16-self-gqa-causal": layer(d_model=64, H=8, Hkv=2, biases="qkvo", B=2, Tq=12,
                                  m=mask(causal=1), checks=CHECKS_ALL | LAYER_BF16),
    "f16-cross-kvlen": layer(d_model=32, d_kv=48, H=4, B=2, Tq=6, Tk=20, inputs="cross",
                             m=mask(kv_len="random"), weights=1, checks=CHECKS_ALL | LAYER_F16),
    "bf16-k-past-chunk": layer(d_model=770, H=1, D=2, Dv=2, biases="qo", B=2, Tq=12,
                               m=mask(causal=1), threads=2, checks=CHECKS_ALL | LAYER_BF16),
    "bf16-in-proj-nonfinite": layer(d_model=32, H=4, form="in_proj", biases="p", B=2, Tq=9,
                                    checks=CHECKS_ALL | BAD_NAN | LAYER_BF16),
    # what must be refused
    "bad-workspace-short": layer(workspace="short"),
    "bad-in-proj-with-w-q": layer(form="in_proj+w_q"),
    "bad-missing-w-k": layer(form="no_w_k"),
    "bad-in-proj-shape": layer(d_model=16, H=2, d_kv=8, form="in_proj"),
    "bad-b-o-without-w-o": layer(biases="o", w_o=False),
    "bad-d-model-not-multiple": layer(d_model=10, H=3),
    "bad-layout": layer(out_in=2),
    "bad-huge-head-width": layer(d_model=1, H=1, D=1 << 62, Dv=1 << 62),
    "bad-self-with-d-kv": layer(d_kv=8, inputs="self"),
    "bad-x-v-without-x-k": layer(inputs="x_v_only"),
    "bad-batch-zero": layer(B=0),
    "bad-tq-huge": layer(Tq=1 << 62),
    "bad-isa-neon": layer(isa="neon"),
    "bad-null-args": layer(null="args"),
    "bad-out-is-x-q": layer(alias="out=x_q"),
    "bad-workspace-is-out": layer(alias="workspace=out"),
}


# fuzz-kv-cache.c: the K/V cache API (mha_attention_kv_f32, mha_kv_cache_write)
KV_DTYPES = {"f32": 0, "f16": 1, "bf16": 2, "bad3": 0xF0, "bad-1": 0xF1, "bad_int_max": 0xF2}
KV_TK = {-1: 0xF0, 81: 0xF1, 100: 0xF2, 129: 0xF3, 200: 0xF4, 300: 0xF5, 1 << 31: 0xF6,
         INT64_MAX: 0xF7}
KV_LAYOUTS = {"init": 0, "padded": 4, "token_major": 5, "token_major_padded": 6, "changed": 7}
KV_CHANGES = {"row_short": 0, "row_negative": 1, "batch_negative": 2, "head_zero": 3,
              "batch_zero": 4, "row_huge": 5, "v_row_short": 6}
KV_CAPACITY = {0: 0xF0, -1: 0xF1, INT64_MIN: 0xF2, 1 << 40: 0xF3, 1 << 62: 0xF4}
KV_BLOCKS = {16: 0, 32: 1, 64: 2, 128: 6, 256: 7, 0: 0xC0, 8: 0xC1, 24: 0xC2, 512: 0xC3, 1: 0xC4,
             -16: 0xC5, 48: 0xC6, 17: 0xC7, 1 << 62: 0xC8, 15: 0xC9, 257: 0xCA, 32768: 0xCB}
KV_MAX_BLOCKS = {"need": 0, "need+1": 1, "need+2": 2, "need-1": 3, 0: 0xF0, -1: 0xF1,
                 INT64_MIN: 0xF2}
KV_TABLES = {"distinct": 0, "random": 1, "shared": 2, "garbage_unused": 3, "bad_read": 4,
             "bad_any": 5, "full": 6}
KV_BAD_ENTRIES = {-1: 0, "num_blocks": 1, "int32_min": 2, "int32_max": 3, "num_blocks+7": 4, -2: 5}
KV_ISAS = {"default": 0, "scalar": 1, "avx2": 2, "avx512f": 3, "neon": 0xF0, "bad5": 0xF1,
           "bad-1": 0xF2}  # avx2 and avx512f: where available (else another set)
KV_WORKSPACE = {"none": 0, "exact": 1, "short": 2, "odd": 3}
KV_IO = {"bhtd": 0, "bthd": 1, "padded": 2}
KV_VALUES = {"small": 0, "wide": 1, "bits": 2, "large": 3}
KV_POS = {"append": 0, "random": 1, "zero": 2, "bad-1": 3, "bad_past_end": 7, "bad_int_max": 11,
          "bad_int_min": 15}
KV_NEW_LAYOUTS = {"bhtd": 0, "padded": 2, "bthd": 3}
KV_NEW_VALUES = {"uniform": 0, "wide": 1, "bits": 2, "ties": 3}
KV_SPECIAL = {"none": 0, "null_cache": 0xF0, "null_k": 0xF1, "null_v": 0xF2, "null_table": 0xF3,
              "k_is_v": 0xF4, "null_desc": 0xF5, "null_q": 0xF6, "null_out": 0xF7,
              "null_pos": 0xF8}
# varlen mode (mha_attention_varlen_kv_f32): the lengths' breakage and a placement
KV_VL_LENS = {"good": 0, "cu_first": 4, "cu_decreasing": 5, "cu_null": 6, "seqused_null": 7}
KV_VL_PLACE = {"none": 0, "out>cu_q": 3, "out>seqused": 4, "out>table": 5, "lse>table": 6,
               "kv_len": 7}  # contiguous caches: out>table is lse>seqused, lse>table lse>cu_q


def kv_byte(want, decode, limit=0xF0):
    """The first byte below limit that decode() maps to want."""
    for b in range(limit):
        if decode(b) == want:
            return bytes([b])
    raise ValueError(f"no byte decodes to {want}")


def kv_cache(B=1, Hkv=1, group=2, H=None, Tq=1, Tk=5, D=8, Dv=8, dtype="f16", paged=False,
             layout="init", pads=(0, 0, 0), change="row_short", capacity=0, block=16,
             max_blocks="need", num_blocks="all", table="distinct", bad_entry=-1, shared=1,
             kv_len="none", causal=0, align=0, off=0, window=0, left=0, right=0, alibi="off",
             cap=0, sinks="off", sc=None, threads=1, isa="default", weights=0, lse=0,
             workspace="none", qo="bhtd", values="small", nan_gaps=0, q_wide=0, write=False, T=1,
             pos="append", new_layout="bhtd", new_values="uniform", special="none", len_q=None,
             vl_lens="good", vl_place="none"):
    """One fuzz-kv-cache input. capacity: an int n < 6 is max(Tk, 1) + n, ("short", n)
    max(Tk, 1) - 1 - n, ("special", v) one of KV_CAPACITY. max_blocks: a KV_MAX_BLOCKS key or 1..6;
    num_blocks: "all" (B·max_blocks), ("plus", n) (B·max_blocks + n), 1..12, 0 or -1.
    len_q: None, the single call; else varlen mode with these B query lengths (each <= Tq, or
    ("past", k): Tq + 1 + k), seqused_k from kv_len, qo the packed layout (KV_IO's values:
    packed, head-major, padded)."""
    data = bytes([B - 1, Hkv - 1])
    data += bytes([group - 1]) if H is None else bytes([0xF0 + H - 1])
    data += bytes([0xFF if Tq == 0 else Tq - 1])
    data += bytes([KV_TK[Tk] if Tk in KV_TK else Tk])
    data += bytes([D - 1, Dv - 1, KV_DTYPES[dtype], int(paged) | KV_LAYOUTS[layout] << 1])
    if layout in ("padded", "token_major_padded"):
        data += bytes(pads)
    if layout == "changed":
        data += bytes([KV_CHANGES[change]])
    if not paged:
        if isinstance(capacity, tuple):
            kind, n = capacity
            data += bytes([0xC0 + n if kind == "short" else KV_CAPACITY[n]])
        else:
            data += bytes([capacity])
    else:
        data += bytes([KV_BLOCKS[block]])
        if max_blocks in KV_MAX_BLOCKS:
            data += bytes([KV_MAX_BLOCKS[max_blocks]])
        else:
            data += kv_byte(max_blocks, lambda b: 1 + (b >> 3) % 6 if b % 5 == 4 else None)
        if num_blocks == "all":
            data += b"\x00"
        elif isinstance(num_blocks, tuple):
            data += kv_byte(num_blocks[1], lambda b: (b >> 2) % 4 if b % 3 == 2 else None)
        elif num_blocks in (0, -1):
            data += bytes([0xF0 if num_blocks == 0 else 0xF1])
        else:
            data += kv_byte(num_blocks, lambda b: 1 + (b >> 2) % 12 if b % 3 == 1 else None)
        sub = KV_BAD_ENTRIES[bad_entry] if table.startswith("bad") else shared - 1
        data += bytes([KV_TABLES[table] | sub << 3])
    data += bytes([KV_LEN[kv_len]])
    data += bytes([0xFF if causal == 2 else causal, 0xF0 if align == 4 else align, off + 32,
                   0xFF if window == 2 else window, 0xFF if left == -1 else left,
                   0xFF if right == -1 else right, ALIBI[alibi]])
    data += softcap(cap) if cap not in ("nan", "-1") else bytes([0xF0 if cap == "nan" else 0xF1])
    data += bytes([SINKS[sinks]]) + scale(sc)
    data += bytes([threads - 1, KV_ISAS[isa],
                   weights | lse << 1 | KV_WORKSPACE[workspace] << 2 | KV_IO[qo] << 4,
                   KV_VALUES[values] | nan_gaps << 2 | q_wide << 3,
                   (0xFF if T == 0 else 1 | (T - 1) << 1) if write else 0,
                   KV_POS[pos], KV_NEW_LAYOUTS[new_layout] | KV_NEW_VALUES[new_values] << 2,
                   KV_SPECIAL[special]])
    if len_q is not None:
        assert len(len_q) == B
        data += bytes([1 | KV_VL_LENS[vl_lens] << 1 | KV_VL_PLACE[vl_place] << 4])
        data += bytes(0xF0 + n[1] if isinstance(n, tuple) else n for n in len_q)
    return data


KV_CACHE_SEEDS = {
    # the paths an engine takes
    "decode-f16-contiguous-gqa": kv_cache(B=2, Hkv=2, group=4, Tk=40, D=32, Dv=32,
                                          kv_len="random"),
    "decode-bf16-paged16-kvlen-nan-gaps": kv_cache(B=3, Hkv=2, group=2, Tk=70, D=16, Dv=16,
                                                   dtype="bf16", paged=True, kv_len="random",
                                                   nan_gaps=1, threads=2),
    "decode-f32-paged32-shared-prefix": kv_cache(B=3, Hkv=1, group=4, Tk=64, D=24, Dv=24,
                                                 dtype="f32", paged=True, block=32,
                                                 table="shared", shared=2, num_blocks=("plus", 1)),
    "decode-f16-paged256-mha": kv_cache(B=2, Hkv=4, group=1, Tk=80, D=40, Dv=40, paged=True,
                                        block=256, kv_len="random", threads=3),
    "prefill-f16-paged-causal-weights-lse": kv_cache(B=2, Hkv=1, group=2, Tq=9, Tk=30, D=12,
                                                     Dv=20, paged=True, causal=1, weights=1,
                                                     lse=1, max_blocks="need+2"),
    "paged-token-major-bf16": kv_cache(B=2, Hkv=3, group=1, Tq=2, Tk=80, dtype="bf16",
                                       paged=True, block=64, layout="token_major", kv_len="full"),
    "paged-padded-window-alibi-softcap-sinks": kv_cache(
        B=2, Hkv=2, group=2, Tq=4, Tk=50, D=9, Dv=7, paged=True, layout="padded",
        pads=(1, 2, 3), causal=1, window=1, left=7, alibi="small", cap=10, sinks="small", lse=1,
        weights=1, table="random", num_blocks=5),
    "contiguous-token-major-padded-f32-io-padded": kv_cache(
        B=3, Hkv=2, group=3, Tq=3, Tk=21, D=5, Dv=11, dtype="f32", layout="token_major_padded",
        pads=(3, 0, 5), capacity=4, qo="padded", threads=3, isa="avx2"),
    "kv-end-empty-and-full-paged128": kv_cache(B=4, Hkv=1, group=3, Tq=3, Tk=77, paged=True,
                                               block=128, align=3, causal=1,
                                               kv_len="empty_and_full", weights=1),
    "table-garbage-unused-slots": kv_cache(B=3, Hkv=2, group=1, Tk=60, paged=True,
                                           table="garbage_unused", kv_len="random",
                                           max_blocks="need+2", nan_gaps=1),
    "values-arbitrary-f16-bits": kv_cache(B=2, Hkv=1, group=2, Tq=2, Tk=33, values="bits",
                                          weights=1, lse=1),
    "values-large-bf16-paged": kv_cache(B=1, Hkv=2, group=2, Tk=48, dtype="bf16", paged=True,
                                        values="large", q_wide=1, lse=1),
    "workspace-odd-scalar-paged": kv_cache(B=2, Hkv=2, group=2, Tk=40, paged=True,
                                           workspace="odd", isa="scalar", weights=1),
    "workspace-exact-avx512f": kv_cache(B=1, Hkv=1, group=4, Tk=80, D=40, Dv=40,
                                        workspace="exact", isa="avx512f"),
    "kv-shares-one-buffer": kv_cache(B=2, Hkv=1, group=2, Tk=20, D=6, Dv=10, paged=True,
                                     special="k_is_v"),
    "heads-share-rows": kv_cache(B=2, Hkv=2, group=2, Tk=30, layout="changed",
                                 change="head_zero", paged=True),
    # the writer, then the attention over what it wrote
    "write-append-f16-paged-ties": kv_cache(B=4, Hkv=2, group=2, Tk=40, paged=True,
                                            kv_len="random", write=True, T=1,
                                            new_values="ties"),
    "write-chunk-bf16-contiguous-padded": kv_cache(B=2, Hkv=2, group=1, Tq=9, Tk=30, D=10,
                                                   Dv=6, dtype="bf16", causal=1, write=True,
                                                   T=9, pos="append", new_layout="padded",
                                                   new_values="ties", capacity=5),
    "write-wide-f16-overflow-subnormal": kv_cache(B=2, Hkv=1, group=2, Tk=25, write=True, T=5,
                                                  pos="random", new_values="wide",
                                                  new_layout="bthd", lse=1),
    "write-bits-f32-paged-token-major": kv_cache(B=3, Hkv=2, group=1, Tk=50, dtype="f32",
                                                 paged=True, layout="token_major", write=True,
                                                 T=4, pos="random", new_values="bits"),
    "write-shared-blocks": kv_cache(B=2, Hkv=1, group=1, Tk=40, paged=True, table="shared",
                                    shared=2, write=True, T=3, pos="zero"),
    # what must be refused
    "bad-dtype-3": kv_cache(dtype="bad3"),
    "bad-block-24": kv_cache(paged=True, block=24),
    "bad-block-512": kv_cache(B=2, paged=True, block=512, Tk=40),
    "bad-paged-block-0": kv_cache(paged=True, block=0),
    "bad-table-entry-read": kv_cache(B=2, Tk=40, paged=True, table="bad_read",
                                     bad_entry="num_blocks"),
    "bad-table-entry-int32-min": kv_cache(B=3, Tk=70, paged=True, table="bad_any",
                                          bad_entry="int32_min", kv_len="random"),
    "bad-max-blocks-0": kv_cache(paged=True, max_blocks=0),
    "bad-max-blocks-short": kv_cache(B=2, Tk=40, paged=True, max_blocks="need-1"),
    "bad-num-blocks-0": kv_cache(paged=True, num_blocks=0),
    "bad-tk-past-capacity": kv_cache(Tk=30, capacity=("short", 2)),
    "bad-capacity-0": kv_cache(capacity=("special", 0)),
    "bad-capacity-2p62": kv_cache(capacity=("special", 1 << 62)),
    "bad-tk-2p31": kv_cache(Tk=1 << 31, weights=1),
    "bad-kvlen-tk+1": kv_cache(B=2, Tk=30, paged=True, kv_len="bad_tk+1"),
    "bad-stride-row-short": kv_cache(B=2, Tk=20, layout="changed", change="row_short"),
    "bad-stride-v-negative-paged": kv_cache(paged=True, layout="changed", change="row_negative"),
    "bad-h-not-multiple": kv_cache(Hkv=2, H=3),
    "bad-workspace-short": kv_cache(Tk=30, paged=True, workspace="short"),
    "bad-null-table": kv_cache(paged=True, special="null_table"),
    "bad-null-cache": kv_cache(special="null_cache", write=True),
    "bad-isa-neon": kv_cache(isa="neon"),
    "bad-write-pos-past-end": kv_cache(B=2, Tk=30, paged=True, write=True, T=4,
                                       pos="bad_past_end"),
    "bad-write-pos-negative": kv_cache(B=3, Tk=20, write=True, T=2, pos="bad-1"),
    "bad-write-t-0": kv_cache(write=True, T=0),
    "bad-write-k-is-v": kv_cache(B=2, Tk=20, write=True, T=2, special="k_is_v"),
    # varlen mode (mha_attention_varlen_kv_f32): a serving step over the cache
    "varlen-decode-prefill-f16-paged": kv_cache(B=4, Hkv=2, group=2, Tq=9, Tk=70, D=16, Dv=16,
                                                paged=True, kv_len="random", causal=1, lse=1,
                                                threads=2, len_q=[1, 9, 0, 5]),
    "varlen-no-keys-sinks-f32-token-major": kv_cache(
        B=3, Hkv=1, group=3, Tq=6, Tk=40, dtype="f32", layout="token_major",
        kv_len="empty_and_full", sinks="some_-inf", lse=1, qo="bthd", len_q=[6, 1, 3]),
    "varlen-write-chunk-bf16-paged32": kv_cache(B=2, Hkv=2, group=1, Tq=4, Tk=50, dtype="bf16",
                                                paged=True, block=32, kv_len="random", causal=1,
                                                write=True, T=4, len_q=[1, 4], table="shared",
                                                shared=1),
    "varlen-window-alibi-softcap-padded-io": kv_cache(
        B=3, Hkv=2, group=2, Tq=7, Tk=60, D=9, Dv=7, paged=True, layout="padded", pads=(1, 2, 3),
        causal=1, window=1, left=6, alibi="small", cap=10, lse=1, qo="padded",
        kv_len="random", table="garbage_unused", max_blocks="need+2", len_q=[7, 1, 2]),
    "varlen-kv-end-nan-gaps-values-bits": kv_cache(B=2, Hkv=2, group=2, Tq=3, Tk=33, align=3,
                                                   causal=1, kv_len="random", values="bits",
                                                   nan_gaps=1, lse=1, len_q=[3, 2]),
    "varlen-workspace-exact-scalar": kv_cache(B=4, Hkv=1, group=4, Tq=5, Tk=80, D=32, Dv=32,
                                              paged=True, block=64, workspace="exact",
                                              isa="scalar", threads=3, len_q=[1, 1, 5, 1]),
    "varlen-bad-seqused-tk+1": kv_cache(B=2, Tq=3, Tk=30, paged=True, kv_len="bad_tk+1",
                                        len_q=[1, 3]),
    "varlen-bad-seqused-null": kv_cache(B=2, Tq=3, Tk=30, len_q=[1, 3], vl_lens="seqused_null"),
    "varlen-bad-cu-q-null": kv_cache(B=2, Tq=3, Tk=30, paged=True, len_q=[1, 3],
                                     vl_lens="cu_null"),
    "varlen-bad-cu-q-first": kv_cache(B=3, Tq=3, Tk=30, len_q=[1, 3, 2], vl_lens="cu_first"),
    "varlen-bad-cu-q-decreasing": kv_cache(B=3, Tq=3, Tk=30, paged=True, len_q=[1, 3, 2],
                                           vl_lens="cu_decreasing"),
    "varlen-bad-len-q-past-tq": kv_cache(B=2, Tq=4, Tk=30, len_q=[1, ("past", 0)]),
    "varlen-bad-table-slot-read": kv_cache(B=3, Tq=2, Tk=40, paged=True, table="bad_read",
                                           bad_entry="int32_max", kv_len="random",
                                           len_q=[1, 2, 0]),
    "varlen-bad-tk-past-capacity": kv_cache(B=2, Tq=2, Tk=30, capacity=("short", 1),
                                            len_q=[2, 1]),
    "varlen-bad-mask-kv-len": kv_cache(B=2, Tq=2, Tk=20, len_q=[2, 1], vl_place="kv_len"),
    "varlen-bad-out-over-cu-q": kv_cache(B=2, Tq=3, Tk=20, paged=True, len_q=[1, 3],
                                         vl_place="out>cu_q"),
    "varlen-bad-out-over-seqused": kv_cache(B=2, Tq=3, Tk=20, len_q=[3, 3],
                                            vl_place="out>seqused"),
    "varlen-bad-lse-over-seqused-contiguous": kv_cache(B=3, Tq=2, Tk=20, len_q=[1, 2, 2],
                                                       vl_place="out>table"),
    # the overlap check once dropped its fifth input span, the block table
    # (stop 32's fuzzing): out or lse over the table then returned SUCCESS
    "varlen-bad-out-over-table": kv_cache(B=2, Tq=3, Tk=40, paged=True, len_q=[1, 3],
                                          vl_place="out>table"),
    "varlen-bad-lse-over-table": kv_cache(B=2, Tq=3, Tk=40, paged=True, len_q=[3, 1],
                                          vl_place="lse>table"),
    "varlen-bad-workspace-short": kv_cache(B=2, Tq=3, Tk=30, paged=True, workspace="short",
                                           len_q=[1, 3]),
    "varlen-bad-null-table": kv_cache(B=2, Tq=3, Tk=30, paged=True, special="null_table",
                                      len_q=[1, 3]),
    "bad-write-null-pos": kv_cache(write=True, special="null_pos"),
}


# fuzz-varlen: the bounds (% 16), the offsets, the arrays and placements
VL_SHARE = {"none": 0, "lengths": 2, "array": 3}  # len_k = len_q; one array for both
VL_BOUNDS = {"tight": 0, "short": 11, 1 << 31: 12, 1 << 62: 13, INT64_MAX: 14}
VL_OFFSETS = {"good": 0, "first": 5, "decreasing": 6, "null": 7}
VL_FIRST = {1: 0, -1: 1, -(1 << 31): 2, (1 << 31) - 1: 3}  # the value of a broken cu[0]
VL_KV_MASK = {"none": 0, "kv_len": 6, "additive": 7}
VL_ALIBI = {"off": 0, "unit": 1, "small": 2, "signed": 3, "+inf": 4, "-inf": 5, "nan": 6}
VL_SINKS = {"off": 0, "small": 1, "some_-inf": 2, "large": 3, "all_-inf": 4, "+inf": 5, "nan": 6}
VL_LSE = {"off": 0, "on": 1, "out": 0xF0, "cu_q": 0xF1, "cu_k": 0xF2}
VL_VALUES = {"unit": 0, "high": 1, "large": 2, "nan_kv": 3}
VL_WORKSPACE = {"none": 0, "exact": 3, "misaligned": 4, "short": 5, "out": 6, "q": 7}
VL_NULL = {"none": 0, "q": 0xF0, "k": 0xF1, "v": 0xF2, "out": 0xF3, "desc": 0xF4, "bytes": 0xF5}
VL_ALIAS = {"none": 0, "out=q": 0xF0, "out>cu_q": 0xF1, "out>cu_k": 0xF2}
VL_LAYOUTS = ["head_major", "padded", "batch_junk", "batch_neg", "head_zero", "row_short",
              "row_neg", "heads_over_rows", "huge_row", "explicit"]


def vl_bound(b):
    """tight, short, 2^31, 2^62, INT64_MAX; ("loose", 1..16); ("size", any fuzz_size)."""
    if isinstance(b, tuple) and b[0] == "loose":
        return bytes([8 | ((b[1] - 1) << 4)])
    if isinstance(b, tuple) and b[0] == "size":
        return bytes([15]) + size(b[1])
    return bytes([VL_BOUNDS[b]])


def vl_offsets(kind="good", array="q", first=1, step=0):
    """A broken cu_seqlens_q or _k: cu[0] = first, or a decreasing pair (step 0..3)."""
    param = VL_FIRST[first] if kind == "first" else step
    return bytes([VL_OFFSETS[kind] | (8 if array == "k" else 0) | (param << 4)])


def vl_layout(kind="packed", *extra):
    """packed; padded takes the pad (1..16); explicit takes three sizes (batch, head, row)."""
    if kind == "packed":
        return b"\x00"
    out = bytes([0x80 + VL_LAYOUTS.index(kind)])
    if kind == "padded":
        out += bytes([extra[0] - 1])
    if kind == "explicit":
        out += b"".join(size(x) for x in extra)
    return out


def vl_len_q(n):
    if 0 <= n <= 32:
        return bytes([n])
    if 33 <= n <= 153 and (n - 33) % 8 == 0:
        return bytes([0xF0 + (n - 33) // 8])
    raise ValueError(f"len_q {n} has no encoding")


def vl_len_k(n):
    if 0 <= n <= 40:
        return bytes([n])
    if 64 <= n <= 544 and (n - 64) % 32 == 0:
        return bytes([0xE0 + (n - 64) // 32])
    raise ValueError(f"len_k {n} has no encoding")


def varlen(seqs=((3, 5),), B=None, Hkv=1, group=2, H=None, D=8, Dv=8, share="none", Tq="tight",
           Tk="tight", offsets=b"\x00", causal=0, kv_mask="none", align="bottom_right", off=0,
           window=0, left=0, right=0, alibi="off", cap=0, sinks="off", lse="off", sc=None,
           values="unit", threads=0, isa="default", workspace="none", null="none", alias="none",
           q="packed", k="packed", v="packed", out="packed"):
    """One fuzz-varlen input: seqs are the (len_q, len_k) of the sequences (B = len(seqs)
    unless given; sequences past 32 draw their lengths); H = Hkv·group unless H is given."""
    B = len(seqs) if B is None else B
    data = size(B) + size(Hkv)
    data += bytes([0xC0]) + size(H) if H is not None else bytes([group - 1])
    data += size(D) + size(Dv) + bytes([VL_SHARE[share]]) + vl_bound(Tq) + vl_bound(Tk)
    data += offsets + bytes([CAUSAL[causal], VL_KV_MASK[kv_mask], ALIGN[align]]) + offset(off)
    data += bytes([WINDOW[window]]) + window_side(left) + window_side(right)
    data += bytes([VL_ALIBI[alibi]]) + softcap(cap) + bytes([VL_SINKS[sinks], VL_LSE[lse]])
    data += scale(sc) + bytes([VL_VALUES[values], THREADS[threads], ISAS[isa],
                               VL_WORKSPACE[workspace], VL_NULL[null], VL_ALIAS[alias]])
    for lay in (q, k, v, out):
        data += vl_layout(*lay) if isinstance(lay, tuple) else vl_layout(lay)
    for lq, lk in seqs[:32]:
        data += vl_len_q(lq) + vl_len_k(lk)
    return data


VARLEN_SEEDS = {
    # the batches a serving engine packs
    "decode-gqa-long-keys": varlen(seqs=[(1, 320), (1, 96), (1, 40), (1, 544)], Hkv=2, group=4,
                                   D=16, Dv=16, threads=2, lse="on"),
    "prefill-causal-lse": varlen(seqs=[(20, 20), (7, 7), (32, 32)], Hkv=2, group=2, D=16, Dv=16,
                                 causal=1, lse="on"),
    "mixed-decode-prefill-empty": varlen(seqs=[(1, 192), (17, 17), (0, 5), (3, 0), (0, 0), (9, 30)],
                                         causal=1, lse="on", sinks="small"),
    "self-one-array-top-left": varlen(seqs=[(5, 5), (12, 12), (1, 1)], share="array", causal=1,
                                      align="top_left", lse="on"),
    "no-keys-sinks-some-inf": varlen(seqs=[(4, 0), (3, 6), (2, 0)], H=3, group=None, Hkv=1,
                                     sinks="some_-inf", lse="on"),
    "no-keys-last-sequence": varlen(seqs=[(3, 5), (4, 0)], Hkv=2, group=1, lse="on"),
    "no-queries-at-all": varlen(seqs=[(0, 4), (0, 0), (0, 9)], lse="on"),
    "bounds-huge-same-bits": varlen(seqs=[(5, 9), (2, 3)], Tq=1 << 62, Tk=INT64_MAX, lse="on",
                                    causal=1),
    "bounds-2p31-and-loose": varlen(seqs=[(6, 2), (1, 17)], Tq=("loose", 3), Tk=1 << 31),
    "long-prefill-153": varlen(seqs=[(153, 160), (1, 64)], group=1, D=16, Dv=8, causal=1,
                               threads=3),
    "b40-sequences-drawn": varlen(seqs=[(i % 5, (3 * i) % 7) for i in range(32)], B=40, lse="on"),
    # every variant, per sequence
    "window-alibi-softcap-offset": varlen(seqs=[(12, 30), (5, 9), (1, 40)], Hkv=2, group=2,
                                          causal=1, align="offset", off=3, window=1, left=5,
                                          right=0, alibi="small", cap=10, lse="on"),
    "kv-end-window-both-sides-signed-alibi": varlen(seqs=[(7, 20), (9, 4), (2, 2)], align="kv_end",
                                                    window=1, left=2, right=3, alibi="signed"),
    "large-sinks-high-logits": varlen(seqs=[(4, 33), (8, 8)], values="high", sinks="large",
                                      lse="on", D=32, Dv=16, isa="avx512f", threads=1),
    "all-sinks-inf-unit-alibi": varlen(seqs=[(6, 10), (2, 0)], sinks="all_-inf", alibi="unit",
                                       lse="on", sc=0.5),
    "nan-kv-stays-in-its-sequence": varlen(seqs=[(4, 7), (5, 9), (3, 3)], values="nan_kv",
                                           causal=1, lse="on"),
    # layouts, workspaces, kernel sets
    "layouts-head-major-padded-junk-batch": varlen(seqs=[(4, 6), (3, 11)], Hkv=2, group=2, D=9,
                                                   Dv=5, q="head_major", k=("padded", 3),
                                                   v="batch_junk", out=("padded", 2), lse="on"),
    "layouts-explicit-broadcast-heads": varlen(seqs=[(2, 5), (3, 4)], k="head_zero",
                                               q=("explicit", 7, 8, 16), lse="on"),
    "workspace-exact-scalar": varlen(seqs=[(6, 6), (1, 128), (0, 3)], workspace="exact",
                                     isa="scalar", threads=3, causal=1),
    "workspace-misaligned-avx2": varlen(seqs=[(1, 96), (9, 9)], workspace="misaligned",
                                        isa="avx2", lse="on"),
    # what must be refused
    "bad-tq-shorter-than-a-sequence": varlen(seqs=[(5, 5), (7, 2)], Tq="short"),
    "bad-tk-zero": varlen(seqs=[(2, 3)], Tk=("size", 0)),
    "bad-cu-q-first-1": varlen(seqs=[(2, 3), (4, 1)], offsets=vl_offsets("first", "q", first=1)),
    "bad-cu-k-decreasing": varlen(seqs=[(2, 3), (4, 1), (1, 1)],
                                  offsets=vl_offsets("decreasing", "k", step=1)),
    "bad-cu-k-null": varlen(seqs=[(2, 3)], offsets=vl_offsets("null", "k")),
    "bad-mask-kv-len": varlen(seqs=[(2, 3), (1, 4)], kv_mask="kv_len"),
    "bad-mask-additive": varlen(seqs=[(2, 3)], kv_mask="additive"),
    "bad-alibi-inf": varlen(seqs=[(3, 4)], alibi="+inf", H=4, group=None),
    "bad-sinks-nan": varlen(seqs=[(3, 4)], sinks="nan", H=2, group=None),
    "bad-align-4-causal-2": varlen(seqs=[(3, 4)], align="bad4", causal=2),
    "bad-workspace-short": varlen(seqs=[(3, 4), (2, 9)], workspace="short"),
    "bad-workspace-over-out": varlen(seqs=[(3, 4), (2, 9)], workspace="out"),
    "bad-out-over-cu-q": varlen(seqs=[(3, 4), (2, 9)], alias="out>cu_q"),
    "bad-out-over-cu-k": varlen(seqs=[(3, 4), (2, 9)], alias="out>cu_k"),
    "bad-out-is-q": varlen(seqs=[(3, 4)], alias="out=q", Dv=8),
    "bad-lse-over-out": varlen(seqs=[(3, 4), (1, 1)], lse="out"),
    "bad-lse-over-cu-k": varlen(seqs=[(3, 4), (1, 1)], lse="cu_k"),
    "bad-out-heads-broadcast": varlen(seqs=[(3, 4)], out="head_zero", group=2),
    "bad-b-2p62": varlen(seqs=[], B=1 << 62),
    "bad-h-not-multiple-threads-negative": varlen(seqs=[(2, 2)], Hkv=3, H=4, threads=-1),
}


def write(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    write(os.path.join(root, "attention"), ATTENTION_SEEDS)
    write(os.path.join(root, "layer"), LAYER_SEEDS)
    write(os.path.join(root, "kv-cache"), KV_CACHE_SEEDS)
    write(os.path.join(root, "varlen"), VARLEN_SEEDS)
    print(f"{len(ATTENTION_SEEDS)} attention, {len(LAYER_SEEDS)} layer, "
          f"{len(KV_CACHE_SEEDS)} kv-cache and {len(VARLEN_SEEDS)} varlen seeds in {root}")


if __name__ == "__main__":
    main()
