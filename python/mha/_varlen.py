"""attention_varlen(): a packed batch of variable-length sequences, q as
[total_q, heads, width] with cu_seqlens offsets, each sequence given the bits
of the same sequence called alone; its keys either packed the same way
(mha_attention_varlen_f32) or read from a K/V cache, contiguous or paged,
float32 or 16-bit (seqused_k: mha_attention_varlen_kv_f32, a serving
engine's step)."""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import (_F32, _c_int, _check_out_array, _element_strides, _float32, _input_view,
                      _int32_array, _isa_value, _kv_dtype, _kv_len_array, _ptr, _scale, _strides)
from ._core import _io16_arrays
from ._kv_cache import _block_table, _cache_axes, _cache_scales, _cache_struct, _check_pools
from ._options import _set_variants
from ._rotary import _rotary_struct
from ._tensors import _Tensors
from . import _trace
from ._workspace import _workspace


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k=None, *, seqused_k=None,
                     block_table=None, kv_dtype=None, cache_layout="bhtd", max_seqlen_q=None,
                     max_seqlen_k=None, causal=False, align="bottom_right", window=None,
                     alibi_slopes=None, softcap=None, sinks=None, scale=None, return_lse=False,
                     num_threads=0, isa=None, out=None, workspace=None, return_trace=False,
                     rotary_cos=None, rotary_sin=None, rotary_interleaved=False,
                     rotary_positions=None, k_scales=None, v_scales=None, dtype=None):
    """A packed variable-length batch (mha_attention_varlen_f32), or one whose
    keys come from a K/V cache (seqused_k: mha_attention_varlen_kv_f32).

    q [total_q, H, D]: B sequences back to back; sequence b's queries are
    rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]: B + 1 offsets from 0 of an
    integer dtype (TypeError for floats or bools), each in the int32 range
    (MhaError INVALID_ARGUMENT otherwise); mha passes private copies of them.
    Its keys, given by exactly one of (TypeError otherwise; block_table and
    kv_dtype only with seqused_k):
      cu_seqlens_k  k [total_k, Hkv, D], v [total_k, Hkv, Dv] packed like q,
                    sequence b's keys rows cu_seqlens_k[b] .. cu_seqlens_k[b+1]
                    (B + 1 offsets as above; k and v are cast to float32);
      seqused_k     B key counts (an int broadcasts): k and v are a K/V cache,
                    read in place, and sequence b's keys are its entry b's
                    tokens 0 .. seqused_k[b] (FlashAttention's
                    flash_attn_varlen_func with seqused_k and block_table).
                    block_table None: a contiguous cache of B entries,
                    cache_layout "bhtd" (default) [B, Hkv, capacity, D] or
                    "bthd" [B, capacity, Hkv, D]; block_table [B, max_blocks]:
                    pools as in attention_paged() ("bhtd" [num_blocks, Hkv,
                    block_size, D] or "bthd" [num_blocks, block_size, Hkv, D]),
                    of which only the slots covering an entry's seqused_k
                    tokens are read and checked. kv_dtype as in
                    attention_paged(): float32, float16, ml_dtypes.bfloat16
                    (torch bfloat16), or uint16 bits with "f16" / "bf16".
                    Write a step's new K/V rows first (kv_cache_write): a
                    prefill chunk's own keys are the last len_q of its keys.
    Each sequence gets exactly the bits of the same sequence called alone
    (attention() on that one sequence, B = 1, its own lengths; over a cache,
    attention_paged() or attention() on its entry with Tk = seqused_k[b]),
    whatever else is packed with it. max_seqlen_q/k (None: the longest
    sequence) are only upper bounds, and checked: a sequence longer than
    them is an error (over a cache max_seqlen_k must also fit the cache).
    They do not change the schedule, the cost or the bits. Masks, variants,
    scale, num_threads, isa, workspace as in attention(), per sequence with
    its own lengths: causal bottom-right puts a chunk's last query on its
    last key (kv_len and additive masks do not apply). A sequence without
    keys gives zeros (lse -inf). return_trace as in attention(); an event's
    batch is its sequence b, its rows and keys are positions within that
    sequence. Returns out [total_q, H, Dv]; with return_lse and/or
    return_trace a tuple in the order (out, lse, trace), leaving out the ones
    not asked for: (out, lse [total_q, H]) or (out, trace). Tensors (torch,
    DLPack, array interface) as in attention(): torch in → torch out (the
    trace stays a NumPy array).

    Rotary embeddings (over a cache only; FlashAttention's names):
    rotary_cos, rotary_sin [n_positions, rotary_dim / 2] (rotary_table()
    makes them) rotate the first rotary_dim dimensions of each query head as
    mha reads Q, GPT-NeoX pairs (i, i + rotary_dim/2), or GPT-J pairs (2i,
    2i+1) with rotary_interleaved; query i of sequence b at position
    seqused_k[b] − len_q + i, or rotary_positions [total_q]. The cache must
    hold keys rotated the same way (kv_cache_write's rotary arguments, or the
    engine's own). Bitwise the call on Q rotated beforehand by the formula of
    mha.h.

    dtype None (default): float32 q and out. "f16" or "bf16": q and out in
    that 16-bit type, read and written in place (float16; for bf16 uint16
    bits, ml_dtypes.bfloat16 or torch.bfloat16), out in q's dtype; with
    cu_seqlens_k k and v too (mha_attention_varlen), over a cache the cache
    keeps its own type (mha_attention_varlen_kv; kv_dtype as above). Each
    sequence is bitwise attention(..., dtype=) on it alone (attention_paged()
    over a cache): the float32 call on the widened values rounded once, or,
    for bf16 on a set with a BF16 unit (neon_bf16, avx512_bf16, amx_bf16), that set's BF16 form.
    """
    L = _lib.lib()
    cache_mode = seqused_k is not None
    if cache_mode == (cu_seqlens_k is not None):
        raise TypeError("attention_varlen() takes cu_seqlens_k (k and v packed like q) or "
                        "seqused_k (k and v a K/V cache), " +
                        ("not both" if cache_mode else "and got neither"))
    if not cache_mode:
        for name, value in (("block_table", block_table), ("kv_dtype", kv_dtype),
                            ("rotary_cos", rotary_cos), ("rotary_positions", rotary_positions)):
            if value is not None:
                raise TypeError(f"attention_varlen(): {name} is for a K/V cache (with seqused_k)")
    t, out_given = _Tensors(), out
    if dtype is not None:
        # q and out (and packed k, v) 16-bit, read and written in place
        inputs = (("q", q),) if cache_mode else (("q", q), ("k", k), ("v", v))
        arrays, out = _io16_arrays(t, dtype, inputs, out)
        q = arrays[0]
        if not cache_mode:
            k, v = arrays[1], arrays[2]
    else:
        q = _float32(t.array(q, "q"), "q")
    if cache_mode:
        k, v, kv_dtype = t.kv(k, v, ("k", "v"), kv_dtype)
        k, v = np.asarray(k), np.asarray(v)
        keys = t.array(seqused_k, "seqused_k")
        block_table = t.array(block_table, "block_table")
    else:
        if dtype is None:
            k, v = _float32(t.array(k, "k"), "k"), _float32(t.array(v, "v"), "v")
        keys = t.array(cu_seqlens_k, "cu_seqlens_k")
    cu_seqlens_q = t.array(cu_seqlens_q, "cu_seqlens_q")
    alibi_slopes, sinks = t.array(alibi_slopes, "alibi_slopes"), t.array(sinks, "sinks")
    if dtype is None:
        out = t.out(out)
    workspace = t.out(workspace, "workspace")
    for name, a in [("q", q)] + ([] if cache_mode else [("k", k), ("v", v)]):
        if a.ndim != 3:
            _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 3 [total, heads, width]")
    cq = _int32_array(cu_seqlens_q, "cu_seqlens_q")  # private copies: out cannot alias them
    total_q, H, D = q.shape
    if cache_mode:
        if cq.ndim != 1 or cq.size < 2:
            _fail("INVALID_SHAPE", f"cu_seqlens_q must be [B + 1] with B >= 1, not {cq.shape}")
        B = cq.size - 1
        ck = _kv_len_array(keys, B, "seqused_k", "key count")
        # held: the arrays the cache points into, alive through the call
        cache, held, Hkv = _varlen_cache(t, k, v, B, block_table, cache_layout, kv_dtype, k_scales, v_scales)
        Dk, Dv = held[0].shape[3], held[1].shape[3]
        if Dk != D:
            _fail("INVALID_SHAPE", f"k's head width ({Dk}) differs from q's ({D})")
        if int(cq[-1]) != total_q:
            _fail("INVALID_SHAPE", f"cu_seqlens_q ends at {int(cq[-1])}; q has {total_q} rows")
        lens_k = ck
    else:
        ck = _int32_array(keys, "cu_seqlens_k")
        if cq.ndim != 1 or cq.shape != ck.shape or cq.size < 2:
            _fail("INVALID_SHAPE", f"cu_seqlens_q and cu_seqlens_k must both be [B + 1] with "
                                   f"B >= 1, not {cq.shape} and {ck.shape}")
        B = cq.size - 1
        total_k, Hkv, Dk = k.shape
        Dv = v.shape[2]
        if Dk != D or v.shape[:2] != (total_k, Hkv):
            _fail("INVALID_SHAPE", f"k {k.shape} and v {v.shape} do not match q {q.shape}")
        if int(cq[-1]) != total_q or int(ck[-1]) != total_k:
            _fail("INVALID_SHAPE", f"cu_seqlens end at {int(cq[-1])}, {int(ck[-1])}; q and k have "
                                   f"{total_q} and {total_k} rows")
        lens_k = np.diff(ck)
    lens_q = np.diff(cq)
    Tq = int(max_seqlen_q) if max_seqlen_q is not None else max(1, int(lens_q.max()))
    Tk = int(max_seqlen_k) if max_seqlen_k is not None else max(1, int(lens_k.max()))
    axes = (0, 2, 1)  # the packed views as [1, total, heads, width]
    q4, sq = _input_view(q[None], axes)
    if out is None:
        out = np.empty((total_q, H, Dv), _F32 if dtype is None else q.dtype)
    else:
        _check_out_array(out, (total_q, H, Dv), "out", None if dtype is None else q.dtype)
    so = _element_strides(out[None], axes, False)
    if so is None:
        _fail("INVALID_STRIDE", "out must have a contiguous last dimension")
    if cache_mode:
        sk = sv = [0, 0, 0]  # not used: the cache's strides are
    else:
        k4, sk = _input_view(k[None], axes)
        v4, sv = _input_view(v[None], axes)
    d = _lib.AttentionDesc(B, H, Hkv, Tq, Tk, D, Dv, _strides([0] + sq[1:]), _strides([0] + sk[1:]),
                           _strides([0] + sv[1:]), _strides([0] + so[1:]))
    d.scale = _scale(scale)
    d.num_threads = _c_int(num_threads, "num_threads")
    d.isa = _isa_value(isa)
    keep = [cq, ck]
    d.mask.causal = 1 if causal else 0
    _set_variants(d.mask, H, align, window, alibi_slopes, softcap, sinks, keep)
    if rotary_cos is not None or rotary_sin is not None:
        rot = _rotary_struct(t.array(rotary_cos, "rotary_cos"), t.array(rotary_sin, "rotary_sin"),
                             rotary_interleaved, t.array(rotary_positions, "rotary_positions"), total_q, D,
                             keep)
        d.rotary = ctypes.addressof(rot)
    elif rotary_positions is not None:
        raise TypeError("attention_varlen(): rotary_positions without rotary_cos and rotary_sin")
    lse = np.empty((total_q, H), _F32) if return_lse else None
    d.lse = _ptr(lse)
    i32 = ctypes.POINTER(ctypes.c_int32)
    pq, pk = cq.ctypes.data_as(i32), ck.ctypes.data_as(i32)
    if cache_mode:
        def size_query(size):
            return L.mha_attention_varlen_kv_workspace_size(ctypes.byref(d), pq, pk,
                                                            ctypes.byref(cache), ctypes.byref(size))

        def run():
            if dtype is not None:
                return L.mha_attention_varlen_kv(ctypes.byref(d), _lib.DTYPE_VALUES[dtype], pq, pk,
                                                 _ptr(q4), ctypes.byref(cache), _ptr(out))
            return L.mha_attention_varlen_kv_f32(ctypes.byref(d), pq, pk, _ptr(q4),
                                                 ctypes.byref(cache), _ptr(out))
    else:
        def size_query(size):
            return L.mha_attention_varlen_workspace_size(ctypes.byref(d), pq, pk,
                                                         ctypes.byref(size))

        def run():
            if dtype is not None:
                return L.mha_attention_varlen(ctypes.byref(d), _lib.DTYPE_VALUES[dtype], pq, pk,
                                              _ptr(q4), _ptr(k4), _ptr(v4), _ptr(out))
            return L.mha_attention_varlen_f32(ctypes.byref(d), pq, pk, _ptr(q4), _ptr(k4), _ptr(v4),
                                              _ptr(out))
    ws = _workspace(workspace, size_query)
    if ws is not None:
        d.workspace, d.workspace_size = ws.ctypes.data, ws.nbytes

    def call():
        _check(run())
    if not return_trace:
        call()
        return t.result((out, lse) if return_lse else out, out_given)
    # the trace's guess: every sequence as long as the longest
    trace = _trace.traced_call(call, d, _trace.capacity_guess(B, H, Tq, Tk, d.num_threads))
    return t.result((out, lse, trace) if return_lse else (out, trace), out_given)


def _varlen_cache(t, k, v, B, block_table, cache_layout, kd, k_scales, v_scales):
    """The mha_kv_cache of a varlen call's K/V cache (contiguous of B entries,
    or pools addressed by block_table [B, max_blocks]), the arrays it points
    into, (k, v, table), which must stay alive through the call, and Hkv."""
    paged = block_table is not None
    axes = _cache_axes(cache_layout, paged)
    kd = _kv_dtype((k, v), ("k", "v"), kd)
    _check_pools(k, v, axes, "")
    table = None
    if paged:
        table = _block_table(block_table, B)
    elif k.shape[axes[0]] != B:
        _fail("INVALID_SHAPE", f"k holds {k.shape[axes[0]]} cache entries for {B} sequences "
                               f"(cu_seqlens_q): one entry per sequence")
    scales = _cache_scales(t, kd, k_scales, v_scales, k.shape[:3], axes)
    k, sk = _input_view(k, axes)
    v, sv = _input_view(v, axes)
    return _cache_struct(kd, k, sk, v, sv, axes, table, scales), (k, v, table, scales), k.shape[axes[1]]
