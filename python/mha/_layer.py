"""Layer: the full attention layer (projections, attention, output
projection) as a plan: mha_layer_create packs the weights once,
Layer.forward runs mha_layer_forward many times, and the plan is freed by
close(), a with block or garbage collection."""
import ctypes
import weakref

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import _F32, _c_int, _check_out_array, _float32, _isa_value, _ptr, _scale
from ._coerce import _kv_len_array
from ._kv_cache import _block_table, _cache_struct
from ._kv_write import _cache_of
from ._options import _set_mask, _set_variants, _weights_array, _weights_mode
from ._tensors import _Tensors
from . import _trace
from ._workspace import _workspace


def _contiguous(a, name, t=None):
    """A C-contiguous float32 array (a itself when it is one, or a view of a
    tensor's memory when it is one, else a copy). t: the call's _Tensors."""
    return np.ascontiguousarray(_float32((t or _Tensors()).array(a, name), name))


class Layer:
    """The full layer as a plan (mha_layer_create): the weights are packed once
    (copied into the plan; the arrays may be dropped after), forward runs many
    times. Usable as a context manager; the plan is freed by close(), at the
    end of a with block, or when the object is garbage collected.

    d_model, num_heads     widths: X_q [B,Tq,d_model], H query heads
    num_kv_heads           Hkv (None: H), H % Hkv == 0
    head_dim               D (None: d_model // num_heads)
    value_head_dim         Dv (None: D); an extension of the C desc's Dv
    d_kv                   width of x_k, x_v (None: d_model)
    w_q, w_k, w_v, w_o     layout "out_in" (PyTorch nn.Linear.weight, Y = X·Wᵀ):
                           w_q [H·D, d_model], w_k [Hkv·D, d_kv], w_v [Hkv·Dv, d_kv],
                           w_o [d_model, H·Dv]; layout "in_out" (Y = X·W): transposed.
                           w_o None: no output projection, the output is the
                           concatenated heads [B,Tq,H·Dv] (the "wrapper" design)
    b_q, b_k, b_v, b_o     optional biases [H·D], [Hkv·D], [Hkv·Dv], [d_model]
    in_proj_weight/_bias   PyTorch's packed nn.MultiheadAttention weights
                           [3·d_model, d_model] / [3·d_model], instead of w_q, w_k, w_v
                           (torch tensors, Parameters too, or any CPU tensor)
    isa                    None: pack for the process choice; or a kernel set name
    dtype                  None (default): the weights and biases are cast to float32
                           as needed. "f16" or "bf16": all of them are in that 16-bit
                           type (mha_layer_desc.dtype: a half-precision checkpoint
                           read in place, never cast) — float16, or for bf16 uint16
                           bits, ml_dtypes.bfloat16 or torch.bfloat16 — each value
                           widened exactly as it is packed: the plan is bitwise the
                           plan made from the float32 values. Independent of
                           forward's dtype (the inputs' and output's type).
    """

    def __init__(self, d_model, num_heads, *, num_kv_heads=None, head_dim=None, d_kv=None,
                 w_q=None, w_k=None, w_v=None, w_o=None, b_q=None, b_k=None, b_v=None, b_o=None,
                 in_proj_weight=None, in_proj_bias=None, layout="out_in", isa=None,
                 value_head_dim=None, dtype=None):
        self._handle = None
        self._finalizer = None
        L = _lib.lib()
        layouts = {"out_in": _lib.MHA_WEIGHTS_OUT_IN, "in_out": _lib.MHA_WEIGHTS_IN_OUT}
        if layout not in layouts:
            raise ValueError(f"layout must be 'out_in' or 'in_out', not {layout!r}")
        dm, H = int(d_model), int(num_heads)
        # the C rules for the derived sizes (0 or None: derived)
        dkv = int(d_kv or 0) or dm
        Hkv = int(num_kv_heads or 0) or H
        D = int(head_dim or 0) or (dm // H if H > 0 and dm % H == 0 else 0)
        Dv = int(value_head_dim or 0) or D
        self.d_model, self.num_heads, self.num_kv_heads = dm, H, Hkv
        self.head_dim, self.value_head_dim, self.d_kv = D, Dv, dkv

        def mat(n_in, n_out):
            return (n_out, n_in) if layout == "out_in" else (n_in, n_out)
        expected = {"w_q": mat(dm, H * D), "w_k": mat(dkv, Hkv * D), "w_v": mat(dkv, Hkv * Dv),
                    "w_o": mat(H * Dv, dm), "b_q": (H * D,), "b_k": (Hkv * D,),
                    "b_v": (Hkv * Dv,), "b_o": (dm,), "in_proj_weight": (3 * dm, dm),
                    "in_proj_bias": (3 * dm,)}
        # shapes are checked here only where mha would read them: if a size is
        # invalid, mha_layer_create refuses before reading any weight
        sizes_ok = min(dm, H, Hkv, D, Dv, dkv) > 0 and H % Hkv == 0
        given = dict(w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o, b_q=b_q, b_k=b_k, b_v=b_v, b_o=b_o,
                     in_proj_weight=in_proj_weight, in_proj_bias=in_proj_bias)
        arrays = {}
        t = _Tensors()
        if dtype is not None:  # the 16-bit arrays, in place (a copy only to make them C-contiguous)
            from ._core import _io16_arrays
            named = [(n, a) for n, a in given.items() if a is not None]
            got, _ = _io16_arrays(t, dtype, named, None)
            given = {n: np.ascontiguousarray(a) for (n, _), a in zip(named, got)}
        for name, a in given.items():
            if a is None:
                continue
            a = _contiguous(a, name) if dtype is None else a
            if sizes_ok and a.shape != expected[name]:
                _fail("INVALID_SHAPE", f"Layer: {name} has shape {a.shape}, expected "
                                       f"{expected[name]} (layout {layout!r})")
            arrays[name] = a

        desc = _lib.LayerDesc()
        desc.d_model, desc.H = dm, H
        desc.d_kv = int(d_kv or 0)
        desc.Hkv = int(num_kv_heads or 0)
        desc.D = int(head_dim or 0)
        desc.Dv = int(value_head_dim or 0)
        desc.layout = layouts[layout]
        desc.isa = _isa_value(isa)
        if dtype is not None:
            desc.dtype = _lib.DTYPE_VALUES[dtype]
        for name, a in arrays.items():
            setattr(desc, name, a.ctypes.data)
        handle = _lib.PTR()
        _check(L.mha_layer_create(ctypes.byref(desc), ctypes.byref(handle)))
        self._handle = handle.value
        self._finalizer = weakref.finalize(self, L.mha_layer_destroy, handle.value)
        self._output_width = int(L.mha_layer_output_width(self._handle))
        self._isa = L.mha_isa_name(L.mha_layer_isa(self._handle)).decode()

    @property
    def isa(self):
        """The kernel set the plan was packed for (it always runs with it)."""
        return self._isa

    @property
    def output_width(self):
        """d_model, or H·Dv without an output projection."""
        return self._output_width

    @property
    def closed(self):
        return self._handle is None

    def close(self):
        """Frees the plan (idempotent). A later forward raises MhaError NULL_POINTER."""
        if self._finalizer is not None:
            self._finalizer()
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def forward(self, x, x_k=None, x_v=None, *, causal=False, kv_len=None, mask=None, scale=None,
                align="bottom_right", window=None, alibi_slopes=None, softcap=None, sinks=None,
                need_weights=False, weights_mode="per_head", num_threads=0, out=None,
                workspace=None, return_trace=False, k_cache=None, v_cache=None, kv_pos=None,
                block_table=None, kv_dtype=None, cache_layout=None, k_scales=None, v_scales=None,
                dtype=None):
        """One forward pass (mha_layer_forward).

        x      [B,Tq,d_model]; x_k None: self-attention (K, V from x)
        x_k    [B,Tk,d_kv] (cross-attention); x_v [B,Tk,d_kv] or None (V from x_k)
        x, x_k, x_v must be C-contiguous float32: copied when they are not.
        causal, kv_len, mask, align, window, alibi_slopes, softcap, sinks,
        scale, num_threads: as in attention(), over [B,H,Tq,Tk] (alibi_slopes
        and sinks: H values).
        need_weights, weights_mode: as in attention(): weights [B,H,Tq,Tk]
               ("per_head"), [B,Tq,Tk] ("mean") or [B,n,Tq,Tk] (n heads).
        out    None: allocated; else a C-contiguous writable float32
               [B,Tq,output_width], written in place.
        workspace  None, "auto" or an array, as in attention().
        return_trace  as in attention(): the events of the projections'
               GEMM tiles (stage "gemm": C rows q_begin.. of the batch
               chunk the layer was running, columns k_begin..; batch and
               head -1) and of the core's units.
        Returns out [B,Tq,output_width]; with need_weights and/or
        return_trace a tuple in the order (out, weights, trace), leaving out
        the ones not asked for: (out, weights) or (out, trace).
        k_cache, v_cache  a K/V cache the forward fills with its K and V
               projections (mha_layer_args.kv_cache: a prefill that fills
               the cache for the decode steps after it), as kv_cache_write
               writes: contiguous [B, Hkv, capacity, D] ("bhtd") or [B,
               capacity, Hkv, D] ("bthd"), or pools with block_table [B,
               max_blocks]; float32, float16, bfloat16 (or uint16 bits with
               kv_dtype); row t of entry b at token kv_pos[b] + t (kv_pos
               None: t). out is unchanged by it.
        dtype  None (default): float32 x and out. "f16" or "bf16": x, x_k,
               x_v and out in that 16-bit type (mha_layer_args.dtype):
               float16, or for bf16 uint16 bits, ml_dtypes.bfloat16 or
               torch.bfloat16, read in place (copied only when not
               C-contiguous, never cast); out in x's dtype. Bitwise the
               float32 forward on the widened values, rounded once; the
               plan's weights stay float32.
        (The layer has no lse output: use attention() for merging.)
        Tensors (torch, DLPack, array interface) as in attention(): read in
        place when C-contiguous float32; torch in → torch out (the trace
        stays a NumPy array).
        """
        L = _lib.lib()
        t, out_given = _Tensors(), out
        if dtype is not None:
            from ._core import _io16_arrays  # the 16-bit arrays, in place
            inputs = [(n, a) for n, a in (("x", x), ("x_k", x_k), ("x_v", x_v)) if a is not None]
            arrays, out = _io16_arrays(t, dtype, inputs, out)
            got = dict(zip([n for n, _ in inputs], (np.ascontiguousarray(a) for a in arrays)))
            x, x_k, x_v = got["x"], got.get("x_k"), got.get("x_v")
        else:
            x = _contiguous(x, "x", t)
        kv_len, mask = t.array(kv_len, "kv_len"), t.array(mask, "mask")
        alibi_slopes, sinks = t.array(alibi_slopes, "alibi_slopes"), t.array(sinks, "sinks")
        weights_mode = t.array(weights_mode, "weights_mode")
        if dtype is None:
            out = t.out(out)
        workspace = t.out(workspace, "workspace")
        if x.ndim != 3 or x.shape[2] != self.d_model:
            _fail("INVALID_SHAPE", f"x has shape {x.shape}, expected [B, Tq, {self.d_model}]")
        B, Tq = x.shape[0], x.shape[1]
        Tk = Tq
        xk = xv = None
        for name, a in (("x_k", x_k), ("x_v", x_v)):
            if a is None:
                continue
            a = _contiguous(a, name, t) if dtype is None else a
            if a.ndim != 3 or a.shape[0] != B or a.shape[2] != self.d_kv:
                _fail("INVALID_SHAPE", f"{name} has shape {a.shape}, expected [{B}, Tk, {self.d_kv}]")
            if name == "x_k" or xk is None:
                Tk = a.shape[1]
            elif a.shape[1] != Tk:
                _fail("INVALID_SHAPE", f"x_v has {a.shape[1]} rows, x_k {Tk}")
            if name == "x_k":
                xk = a
            else:
                xv = a
        out_shape = (B, Tq, self._output_width)
        if out is None:
            out = np.empty(out_shape, _F32 if dtype is None else x.dtype)
        else:
            _check_out_array(out, out_shape, "out", None if dtype is None else x.dtype)
            if not out.flags.c_contiguous:
                _fail("INVALID_STRIDE", "out of Layer.forward must be C-contiguous "
                                        "[B, Tq, output_width] (the C API's layout)")
        H = self.num_heads
        a = _lib.LayerArgs()  # zero-filled, struct_size set (mha_layer_args_init's result)
        a.B, a.Tq, a.Tk = B, Tq, Tk
        if dtype is not None:
            a.dtype = _lib.DTYPE_VALUES[dtype]
        a.x_q, a.x_k, a.x_v = _ptr(x), _ptr(xk), _ptr(xv)
        a.scale = _scale(scale)
        a.num_threads = _c_int(num_threads, "num_threads")
        keep = []
        _set_mask(a.mask, causal, kv_len, mask, B, H, Tq, Tk, keep)
        _set_variants(a.mask, H, align, window, alibi_slopes, softcap, sinks, keep)
        a.weights_mode, a.weights_heads, a.weights_nheads, slots = _weights_mode(
            weights_mode, H, need_weights, keep)
        weights = _weights_array(slots, B, Tq, Tk) if need_weights else None
        a.out, a.weights = _ptr(out), _ptr(weights)
        if (k_cache is None) != (v_cache is None):
            raise TypeError("Layer.forward(): k_cache and v_cache come together")
        if k_cache is None and (kv_pos is not None or block_table is not None):
            raise TypeError("Layer.forward(): kv_pos and block_table are for a cache (k_cache, v_cache)")
        if k_cache is not None:
            paged = block_table is not None
            kc, sk, vc, sv, kd, caxes, scales = _cache_of(t, k_cache, v_cache, kv_dtype, cache_layout, paged,
                                                          self.num_kv_heads, self.head_dim, self.value_head_dim,
                                                          k_scales, v_scales)
            table = _block_table(t.array(block_table, "block_table"), B) if paged else None
            cache = _cache_struct(kd, kc, sk, vc, sv, caxes, table, scales)
            keep += [kc, vc, table, cache, scales]
            a.kv_cache = ctypes.addressof(cache)
            if kv_pos is not None:
                pos = _kv_len_array(t.array(kv_pos, "kv_pos"), B, "kv_pos", "position")
                keep.append(pos)
                a.kv_pos = pos.ctypes.data
        ws = _workspace(workspace, lambda size: L.mha_layer_workspace_size(
            self._handle, ctypes.byref(a), ctypes.byref(size)))
        if ws is not None:
            a.workspace, a.workspace_size = ws.ctypes.data, ws.nbytes
        handle = self._handle

        def call():
            _check(L.mha_layer_forward(handle, ctypes.byref(a)))
        if not return_trace:
            call()
            return t.result((out, weights) if need_weights else out, out_given)
        Hkv, D, Dv = self.num_kv_heads, self.head_dim, self.value_head_dim
        gemms = ((B * Tq, H * D), (B * Tk, Hkv * D), (B * Tk, Hkv * Dv), (B * Tq, self.d_model))
        trace = _trace.traced_call(call, a, _trace.capacity_guess(B, H, Tq, Tk, a.num_threads,
                                                                  gemms))
        return t.result((out, weights, trace) if need_weights else (out, trace), out_given)

    __call__ = forward

    def __repr__(self):
        state = "closed" if self.closed else f"isa={self._isa!r}"
        return (f"mha.Layer(d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, "
                f"output_width={self._output_width}, {state})")
