"""attention(): mha_attention_f32 over strided float32 views in either layout,
or mha_attention_kv_f32 over a contiguous 16-bit K/V cache read in place;
with _attend, the call it shares with attention_paged() (the desc, out,
weights, lse and workspace), the layout names' axes, the broadcast of a
batch of 1 and the import of the options' tensors (_options_arrays)."""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import (_F32, _attention_kv_dtype, _c_int, _element_strides, _float32, _input_view,
                      _isa_value, _kv_dtype, _output_view, _ptr, _scale, _strides)
from ._options import _set_mask, _set_variants, _weights_array, _weights_mode
from ._tensors import _Tensors
from . import _trace
from ._workspace import _workspace


_LAYOUT_AXES = {"bhtd": (0, 1, 2), "bthd": (0, 2, 1)}  # axes of (batch, head, row)


def _batch_to(a, axis, B):
    """a with a batch of 1 broadcast to B (stride 0), or a itself."""
    if a.shape[axis] == B:
        return a
    shape = list(a.shape)
    shape[axis] = B
    return np.broadcast_to(a, shape)


def _options_arrays(t, opts):
    """The tensor-valued options of a call (kv_len, mask, alibi_slopes, sinks,
    weights_mode, workspace) imported by t (a _Tensors), in place in opts."""
    for name in ("kv_len", "mask", "alibi_slopes", "sinks", "weights_mode"):
        if name in opts:
            opts[name] = t.array(opts[name], name)
    if "workspace" in opts:
        opts["workspace"] = t.out(opts["workspace"], "workspace")
    return opts


def _io16_arrays(t, dtype, inputs, out):
    """The arrays of a 16-bit call (dtype "f16" / "bf16": mha_attention and
    its cache twins): the (name, value) inputs and out, imported by t in place
    (never cast), each of a dtype that holds dtype's values."""
    if dtype not in ("f16", "bf16"):
        raise ValueError(f"dtype must be None, 'f16' or 'bf16', not {dtype!r}")
    arrays = [np.asarray(t.io16(x, name)) for name, x in inputs]
    out = t.io16(out, "out", write=True)
    names = [name for name, _ in inputs] + ["out"]
    _kv_dtype(arrays if out is None else arrays + [out], names, dtype)
    return arrays, out


def attention(q, k, v, *, layout="bhtd", causal=False, kv_len=None, mask=None, scale=None,
              align="bottom_right", window=None, alibi_slopes=None, softcap=None, sinks=None,
              need_weights=False, weights_mode="per_head", return_lse=False, num_threads=0,
              isa=None, out=None, workspace=None, kv_dtype=None, return_trace=False, dtype=None):
    """out = softmax(scale·Q·Kᵀ + mask)·V per (batch, head): mha_attention_f32.

    layout "bhtd": q [B,H,Tq,D], k [B,Hkv,Tk,D], v [B,Hkv,Tk,Dv] → out [B,H,Tq,Dv]
    layout "bthd": the same as [B,T,H,D] (strides passed through, no transpose)
    Any strided view is read in place (see the package's docstring for the few
    copies); a batch of 1 in q, k or v broadcasts against the others (stride 0).
    H % Hkv == 0 (grouped-query: query head h reads K/V head h // (H // Hkv)).

    16-bit K and V (a KV cache kept in half precision): when k and v are both
    float16 arrays (or both ml_dtypes.bfloat16), or with kv_dtype "f16" / "bf16"
    and uint16 arrays holding the bits, they are read in place as a
    contiguous 16-bit cache (mha_attention_kv_f32: widened in registers,
    never copied to float32). q, the arithmetic and out stay float32, and the
    result is bitwise that of this call on k.astype(float32),
    v.astype(float32). kv_dtype None (default): float16/bfloat16 as above,
    anything else is cast to float32 as always; "f32": always that cast.

    Masks and score modifiers (all compose; a key is visible when every
    enabled mask lets it through). i' is query row i's aligned position
    among the keys (see align):
    causal        query i sees key j iff j <= i'
    kv_len        B key lengths (an int broadcasts): keys j >= kv_len[b] hidden
    mask          additive float mask, broadcastable to [B,H,Tq,Tk] (-inf hides)
    align         where query row i sits, for causal, window and ALiBi:
                  "bottom_right" (default): i' = i + Tk - Tq (the queries are
                  the last Tq positions, a KV cache); "top_left": i' = i
                  (PyTorch's is_causal=True); "kv_end": i' = i + kv_len[b] - Tq
                  (bottom-right per batch entry, Tk without kv_len); an int
                  offset: i' = i + offset (a chunk of queries anywhere;
                  |offset| < 2**60)
    window        None (off), or (left, right), ints >= 0: query i sees key j
                  iff i' - left <= j <= i' + right (Mistral's window W is
                  (W - 1, 0)); keys outside every row's window are never read
    alibi_slopes  None, or H floats: the logit of key j gets - slope_h·(i' - j)
    softcap       None (off), or a cap > 0: s ← softcap·tanh(s / softcap),
                  applied to scale·q·k before ALiBi and the additive mask
                  (Gemma 2's logit soft-capping)
    sinks         None, or H logits (gpt-oss's attention sinks): sink h joins
                  the softmax's denominator of every row of head h, with no
                  value row; -inf is no sink
    alibi_slopes and sinks are converted to contiguous float32 [H] arrays.
    A query row that the masks leave without keys gives zeros (its weights
    are zeros: with a sink, all its weight is on the sink).

    scale         None (or 0.0, as in C): 1/sqrt(D)
    need_weights  also return the probabilities P (0 on hidden keys), float32,
                  in weights_mode's shape
    weights_mode  "per_head" (default): [B,H,Tq,Tk]; "mean": their mean over
                  the heads [B,Tq,Tk] (nn.MultiheadAttention's
                  average_attn_weights=True); a sequence of n head indices in
                  [0, H): those heads only, in that order, [B,n,Tq,Tk] (the
                  other heads' weights are never computed). Ignored (but
                  checked) without need_weights. Weights do not change out.
    return_lse    also return each row's log-sum-exp of its visible logits
                  (the sink included), float32 with out's leading dimensions:
                  [B,H,Tq] ("bhtd") or [B,Tq,H] ("bthd", a transposed view).
                  -inf for a row with no visible key and no sink. The (out,
                  lse) of calls over disjoint key ranges merge into the result
                  over their union with merge().
    num_threads   0: OpenMP's default; results are bitwise the same for any count
    isa           None: the process choice; or "scalar", "avx2", ... for this call
    out           None: allocated; else a writable float32 array of out's shape
                  (any strides mha accepts), written in place
    workspace     None: mha allocates its workspace per call; "auto": a buffer
                  kept per thread by this module (repeated calls allocate
                  nothing); or a writable C-contiguous array of enough bytes
    kv_dtype      None, "f32", "f16" or "bf16": see 16-bit K and V above
    dtype         None (default): float32 q and out, as above. "f16" or "bf16":
                  q, k, v AND out in that 16-bit type (mha_attention): float16
                  arrays, or for bf16 uint16 arrays of the bits, ml_dtypes.bfloat16
                  or torch.bfloat16, all read in place; out is returned in q's
                  dtype (an out= must have it). The result is bitwise
                  attention() on the float32 values rounded once to the type
                  (to nearest even); weights and lse stay float32. kv_dtype
                  must then be None.
    return_trace  also return the call's trace (mha.h, "Threads"): a NumPy
                  structured array of mha.TRACE_DTYPE, one row per work unit
                  the call ran (start_ns, end_ns since the call began, worker,
                  stage — a key of mha.TRACE_STAGES —, batch, head, heads,
                  q_begin, q_end, k_begin, k_end), never truncated: when the
                  call runs more units than a guess from the shape, it is run
                  once more with room for all (the same bits written again).
                  Results are bitwise those of the call without a trace.
    Returns out; with need_weights, return_lse and/or return_trace a tuple of
    out and those results in this order: (out, weights, lse, trace), leaving
    out the ones not asked for, e.g. (out, lse) or (out, trace).

    Tensors: q, k, v, out, mask, kv_len, alibi_slopes, sinks (and every
    array argument) may be any CPU tensor: a torch tensor, an object with
    __dlpack__ or with the array interface, read (or, out, written) in place.
    The results are torch tensors when a torch tensor came in (an out= is
    returned as given; a trace stays a NumPy structured array), else NumPy
    arrays. torch bfloat16 K and V are read
    as a bf16 cache.
    """
    L = _lib.lib()
    axes = _LAYOUT_AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
    t, out_given = _Tensors(), out
    if dtype is not None:
        # Q, K, V and out 16-bit (mha_attention): read and written in place
        if kv_dtype is not None:
            raise TypeError("kv_dtype must be None with dtype= (q, k, v and out are all dtype)")
        (q, k, v), out = _io16_arrays(t, dtype, (("q", q), ("k", k), ("v", v)), out)
        kd = None
    else:
        q = t.array(q, "q")
        k, v, kv_dtype = t.kv(k, v, ("k", "v"), kv_dtype, cast=True)
        out = t.out(out)
    opts = _options_arrays(t, dict(kv_len=kv_len, mask=mask, alibi_slopes=alibi_slopes,
                                   sinks=sinks, weights_mode=weights_mode, workspace=workspace))
    if dtype is None:
        kd = _attention_kv_dtype(k, v, kv_dtype)
        q = _float32(q, "q")
        if kd is None:
            k, v = _float32(k, "k"), _float32(v, "v")
        else:
            k, v = np.asarray(k), np.asarray(v)
    for name, a in (("q", q), ("k", k), ("v", v)):
        if a.ndim != 4:
            _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 4 ({layout})")
    ib, ih, it = axes
    bq, H, Tq, D = q.shape[ib], q.shape[ih], q.shape[it], q.shape[3]
    bk, Hkv, Tk, Dk = k.shape[ib], k.shape[ih], k.shape[it], k.shape[3]
    bv, Hv, Tv, Dv = v.shape[ib], v.shape[ih], v.shape[it], v.shape[3]
    B = max(bq, bk, bv)
    if bq != B or bk != B or bv != B:
        if any(b not in (1, B) for b in (bq, bk, bv)):
            _fail("INVALID_SHAPE", f"batch sizes of q, k, v ({bq}, {bk}, {bv}) do not broadcast")
        q, k, v = (_batch_to(a, ib, B) for a in (q, k, v))
    if Dk != D:
        _fail("INVALID_SHAPE", f"k's head width ({Dk}) differs from q's ({D})")
    if Hv != Hkv or Tv != Tk:
        _fail("INVALID_SHAPE", f"v's heads and rows ({Hv}, {Tv}) differ from k's ({Hkv}, {Tk})")
    q, sq = _input_view(q, axes)
    k, sk = _input_view(k, axes)
    v, sv = _input_view(v, axes)
    cache = None
    if kd is not None:
        # a contiguous cache of capacity Tk over the views' own strides (no copy)
        cache = _lib.KVCache(_lib.DTYPE_VALUES[kd], _ptr(k), _ptr(v), _strides(sk),
                             _strides(sv), Tk)
    return t.result(_attend(L, q, sq, (k, sk, v, sv), cache, B, H, Hkv, Tq, Tk, D, Dv, layout,
                            axes, causal=causal, scale=scale, align=align, window=window,
                            softcap=softcap, need_weights=need_weights, return_lse=return_lse,
                            return_trace=return_trace, num_threads=num_threads, isa=isa, out=out,
                            io_dtype=dtype, **opts), out_given)


def _attend(L, q, sq, kv, cache, B, H, Hkv, Tq, Tk, D, Dv, layout, axes, *, causal, kv_len,
            mask, scale, align, window, alibi_slopes, softcap, sinks, need_weights,
            weights_mode, return_lse, num_threads, isa, out, workspace, return_trace=False,
            io_dtype=None):
    """The call of attention() and attention_paged(): mha_attention_f32 on the
    float32 views kv = (k, k strides, v, v strides), mha_attention on 16-bit
    ones (io_dtype "f16" / "bf16": q, k, v and out), or, with a cache,
    mha_attention_kv_f32 (kv unused)."""
    # every field is set here or left 0 (ctypes zero-fills), which is what
    # mha_attention_desc_init leaves in the fields it does not take (a ctypes
    # call with seven int64 arguments costs more than the smallest attention)
    d = _lib.AttentionDesc(B, H, Hkv, Tq, Tk, D, Dv)
    d.scale = _scale(scale)
    d.num_threads = _c_int(num_threads, "num_threads")
    d.isa = _isa_value(isa)
    keep = []  # the mask and per-head arrays, alive through the call
    _set_mask(d.mask, causal, kv_len, mask, B, H, Tq, Tk, keep)
    _set_variants(d.mask, H, align, window, alibi_slopes, softcap, sinks, keep)
    d.weights_mode, d.weights_heads, d.weights_nheads, slots = _weights_mode(
        weights_mode, H, need_weights, keep)

    out_shape = (B, H, Tq, Dv) if layout == "bhtd" else (B, Tq, H, Dv)
    if out is None:
        out = np.empty(out_shape, _F32 if io_dtype is None else q.dtype)
        so = _element_strides(out, axes, False)
    else:
        so = _output_view(out, out_shape, axes, "out", None if io_dtype is None else q.dtype)
    weights = _weights_array(slots, B, Tq, Tk) if need_weights else None
    lse = np.empty((B, H, Tq), _F32) if return_lse else None
    d.q, d.out = _strides(sq), _strides(so)
    d.lse = _ptr(lse)
    if cache is None:
        k, sk, v, sv = kv
        d.k, d.v = _strides(sk), _strides(sv)
        ws = _workspace(workspace, lambda size: L.mha_attention_workspace_size(
            ctypes.byref(d), int(need_weights), ctypes.byref(size)))
        if ws is not None:
            d.workspace, d.workspace_size = ws.ctypes.data, ws.nbytes

        if io_dtype is None:
            def call():
                _check(L.mha_attention_f32(ctypes.byref(d), _ptr(q), _ptr(k), _ptr(v), _ptr(out),
                                           _ptr(weights)))
        else:
            def call():
                _check(L.mha_attention(ctypes.byref(d), _lib.DTYPE_VALUES[io_dtype], _ptr(q), _ptr(k),
                                       _ptr(v), _ptr(out), _ptr(weights)))
    else:
        ws = _workspace(workspace, lambda size: L.mha_attention_kv_workspace_size(
            ctypes.byref(d), ctypes.byref(cache), int(need_weights), ctypes.byref(size)))
        if ws is not None:
            d.workspace, d.workspace_size = ws.ctypes.data, ws.nbytes

        if io_dtype is None:
            def call():
                _check(L.mha_attention_kv_f32(ctypes.byref(d), _ptr(q), ctypes.byref(cache),
                                              _ptr(out), _ptr(weights)))
        else:
            def call():
                _check(L.mha_attention_kv(ctypes.byref(d), _lib.DTYPE_VALUES[io_dtype], _ptr(q),
                                          ctypes.byref(cache), _ptr(out), _ptr(weights)))
    if return_trace:
        trace = _trace.traced_call(call, d, _trace.capacity_guess(B, H, Tq, Tk, d.num_threads))
    else:
        call()
    if not (need_weights or return_lse or return_trace):
        return out
    result = (out, weights) if need_weights else (out,)
    if return_lse:
        result += (lse if layout == "bhtd" else lse.transpose(0, 2, 1),)
    if return_trace:
        result += (trace,)
    return result
