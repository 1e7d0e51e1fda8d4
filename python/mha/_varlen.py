"""attention_varlen(): a packed batch of variable-length sequences
(mha_attention_varlen_f32), q, k and v as [total, heads, width] with
cu_seqlens offsets, each sequence given the bits of the same sequence called
alone."""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import (_F32, _c_int, _check_out_array, _element_strides, _float32, _input_view,
                      _int32_array, _isa_value, _ptr, _scale, _strides)
from ._options import _set_variants
from ._tensors import _Tensors
from . import _trace
from ._workspace import _workspace


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, *, max_seqlen_q=None,
                     max_seqlen_k=None, causal=False, align="bottom_right", window=None,
                     alibi_slopes=None, softcap=None, sinks=None, scale=None, return_lse=False,
                     num_threads=0, isa=None, out=None, workspace=None, return_trace=False):
    """A packed variable-length batch (mha_attention_varlen_f32).

    q [total_q, H, D], k [total_k, Hkv, D], v [total_k, Hkv, Dv]: B sequences
    back to back; sequence b's queries are rows cu_seqlens_q[b] ..
    cu_seqlens_q[b+1], its keys likewise: B + 1 offsets from 0 of an
    integer dtype (TypeError for floats or bools), each in the int32 range
    (MhaError INVALID_ARGUMENT otherwise); mha passes private copies of them.
    Each sequence gets exactly the bits of the same sequence called alone
    (attention() on that one sequence, B = 1, its own lengths), whatever else
    is packed with it. max_seqlen_q/k (None: the longest sequence) are only
    upper bounds, and checked: a sequence longer than them is an error. They
    do not change the schedule, the cost or the bits. Masks, variants, scale,
    num_threads, isa, workspace as in attention(), per sequence with its own
    lengths (kv_len and additive masks do not apply). return_trace as in
    attention(); an event's batch is its sequence b, its rows and keys are
    positions within that sequence. Returns out [total_q, H, Dv]; with
    return_lse and/or return_trace a tuple in the order (out, lse, trace),
    leaving out the ones not asked for: (out, lse [total_q, H]) or (out,
    trace). Tensors (torch, DLPack, array interface) as in attention(): torch
    in → torch out (the trace stays a NumPy array).
    """
    L = _lib.lib()
    t, out_given = _Tensors(), out
    q, k, v = (_float32(t.array(a, name), name) for a, name in ((q, "q"), (k, "k"), (v, "v")))
    cu_seqlens_q = t.array(cu_seqlens_q, "cu_seqlens_q")
    cu_seqlens_k = t.array(cu_seqlens_k, "cu_seqlens_k")
    alibi_slopes, sinks = t.array(alibi_slopes, "alibi_slopes"), t.array(sinks, "sinks")
    out, workspace = t.out(out), t.out(workspace, "workspace")
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim != 3:
            _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 3 [total, heads, width]")
    cq = _int32_array(cu_seqlens_q, "cu_seqlens_q")  # private copies: out cannot alias them
    ck = _int32_array(cu_seqlens_k, "cu_seqlens_k")
    if cq.ndim != 1 or cq.shape != ck.shape or cq.size < 2:
        _fail("INVALID_SHAPE", f"cu_seqlens_q and cu_seqlens_k must both be [B + 1] with B >= 1, "
                               f"not {cq.shape} and {ck.shape}")
    B = cq.size - 1
    total_q, H, D = q.shape
    total_k, Hkv, Dk = k.shape
    Dv = v.shape[2]
    if Dk != D or v.shape[:2] != (total_k, Hkv):
        _fail("INVALID_SHAPE", f"k {k.shape} and v {v.shape} do not match q {q.shape}")
    if int(cq[-1]) != total_q or int(ck[-1]) != total_k:
        _fail("INVALID_SHAPE", f"cu_seqlens end at {int(cq[-1])}, {int(ck[-1])}; q and k have "
                               f"{total_q} and {total_k} rows")
    lens_q, lens_k = np.diff(cq), np.diff(ck)
    Tq = int(max_seqlen_q) if max_seqlen_q is not None else max(1, int(lens_q.max()))
    Tk = int(max_seqlen_k) if max_seqlen_k is not None else max(1, int(lens_k.max()))
    axes = (0, 2, 1)  # the views as [1, total, heads, width]
    q4, sq = _input_view(q[None], axes)
    k4, sk = _input_view(k[None], axes)
    v4, sv = _input_view(v[None], axes)
    if out is None:
        out = np.empty((total_q, H, Dv), _F32)
    else:
        _check_out_array(out, (total_q, H, Dv), "out")
    so = _element_strides(out[None], axes, False)
    if so is None:
        _fail("INVALID_STRIDE", "out must have a contiguous last dimension")
    d = _lib.AttentionDesc(B, H, Hkv, Tq, Tk, D, Dv, _strides([0] + sq[1:]), _strides([0] + sk[1:]),
                           _strides([0] + sv[1:]), _strides([0] + so[1:]))
    d.scale = _scale(scale)
    d.num_threads = _c_int(num_threads, "num_threads")
    d.isa = _isa_value(isa)
    keep = [cq, ck]
    d.mask.causal = 1 if causal else 0
    _set_variants(d.mask, H, align, window, alibi_slopes, softcap, sinks, keep)
    lse = np.empty((total_q, H), _F32) if return_lse else None
    d.lse = _ptr(lse)
    fn, size_fn = L.mha_attention_varlen_f32, L.mha_attention_varlen_workspace_size
    i32 = ctypes.POINTER(ctypes.c_int32)
    pq, pk = cq.ctypes.data_as(i32), ck.ctypes.data_as(i32)
    ws = _workspace(workspace, lambda size: size_fn(ctypes.byref(d), pq, pk, ctypes.byref(size)))
    if ws is not None:
        d.workspace, d.workspace_size = ws.ctypes.data, ws.nbytes

    def call():
        _check(fn(ctypes.byref(d), pq, pk, _ptr(q4), _ptr(k4), _ptr(v4), _ptr(out)))
    if not return_trace:
        call()
        return t.result((out, lse) if return_lse else out, out_given)
    # the trace's guess: every sequence as long as the longest
    trace = _trace.traced_call(call, d, _trace.capacity_guess(B, H, Tq, Tk, d.num_threads))
    return t.result((out, lse, trace) if return_lse else (out, trace), out_given)
