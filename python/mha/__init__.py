"""mha — multi-head attention kernels for CPUs, from Python.

A pure-Python front (ctypes) over libmha.so: NumPy arrays in, NumPy arrays
out, no compiled code of its own. The library is found (at the first call) at:

  1. $MHA_LIBRARY, a path to libmha.so (an error if it is set but missing);
  2. a libmha.so (or libmha.so.0) next to this package, if installed with it;
  3. <repo>/build/libmha.so when the package is used from a checkout;
  4. ctypes.util.find_library("mha") (an installed libmha).

Views, not copies. mha takes element strides for the batch, head and row
dimensions of every tensor, with the last dimension contiguous, so any NumPy
view of that kind is passed as it is: slices of bigger arrays, the [B,T,H,D]
"bthd" layout (strides, no transpose), broadcast inputs (stride 0, e.g. from
np.broadcast_to or a batch of 1 against a bigger batch) and masks that
broadcast to [B,H,Tq,Tk]. An input is copied only when mha cannot express it:
  - its dtype is not float32 (other float dtypes are cast, a copy; integer
    dtypes are refused with TypeError) — except K/V caches in 16 bits, below;
  - its last dimension is not contiguous (np.ascontiguousarray);
  - it has a negative stride, a stride that is not a whole number of
    elements, or a row stride shorter than its row (q, k, v broadcast over
    rows; masks may broadcast rows). The copy is np.ascontiguousarray.
  - a mask whose last dimension broadcasts (size 1 against Tk) gets that one
    dimension materialized, at its own size (not [B,H,Tq,Tk]).
  - Layer weights, and the inputs x, x_k, x_v of Layer.forward, must be
    C-contiguous float32 (the C API): copied when they are not.
  - kv_len, and the head list of weights_mode, are always converted to small
    int32 arrays; alibi_slopes and sinks (H values each) to contiguous float32
    arrays. All of them are kept alive through the call only.
Outputs are never copied: out= must be a writable float32 array of the exact
output shape, which mha writes in place; mha refuses (MhaError
MHA_STATUS_INVALID_STRIDE) an out that overlaps an input or itself.

K/V caches in 16 bits, contiguous or paged. mha reads K and V stored as
float16 or bfloat16 in place, widening them in registers (q, the arithmetic
and out stay float32), with bitwise the result of float32 attention on the
widened values:
  - attention(q, k, v) with k and v float16 (or ml_dtypes.bfloat16), or
    uint16 bits with kv_dtype="f16" / "bf16": a contiguous cache, any view;
  - attention_paged(q, k_pool, v_pool, block_table, kv_len=...): pools of
    blocks of block_size tokens ([num_blocks, Hkv, block_size, D], head-major
    as CPU engines keep them, or vLLM's token-major [num_blocks, block_size,
    Hkv, D]) addressed through a
    [B, max_blocks] block table; float32 pools too;
  - kv_cache_write(k_cache, v_cache, k_new, v_new, pos): appends float32
    rows to a contiguous cache or to pools, rounded to nearest even.
Caches and pools are never copied when mha can read them in place, and
kv_cache_write refuses (MhaError INVALID_STRIDE) a cache it cannot write in
place.

Errors: every failure of the library raises MhaError with the status and
mha_last_error()'s message. Inconsistencies the C call cannot see (q and k
with different head widths, a mask that does not broadcast, a wrong out
shape, ...) raise MhaError too, with the status mha uses for its own checks
(INVALID_SHAPE, INVALID_STRIDE, ...) and a message from this package.
"""
import ctypes
import threading
import operator
import weakref

import numpy as np

from . import _lib
from ._lib import LibraryNotFoundError  # noqa: F401 (public)

__version__ = "0.4.1"  # the C library's MHA_VERSION_MAJOR.MINOR.PATCH (include/mha.h)

__all__ = ["attention_varlen", "MhaError", "LibraryNotFoundError", "version", "library_path", "ISAS",
           "isa_available", "get_isa", "set_isa", "attention", "attention_paged",
           "kv_cache_write", "merge", "Layer"]

#: The kernel set names mha knows (mha_isa_name), besides "default".
ISAS = ("scalar", "avx2", "avx512f", "neon")

_F32 = np.dtype(np.float32)
_I32_MIN, _I32_MAX = -2 ** 31, 2 ** 31 - 1
_I64_MIN, _I64_MAX = -2 ** 63, 2 ** 63 - 1


class MhaError(Exception):
    """A failed mha call.

    status       the mha_status value (int)
    status_name  its enum name, e.g. "MHA_STATUS_INVALID_SHAPE"
    description  mha_status_string(status), e.g. "invalid shape"
    message      mha_last_error() of the failed call (or this package's
                 message for a check made before calling the library)
    """

    def __init__(self, status, message, description=None):
        self.status = int(status)
        self.status_name = _lib.STATUS_NAMES.get(self.status, f"MHA_STATUS_{self.status}")
        if description is None:
            try:
                description = _lib.lib().mha_status_string(self.status).decode()
            except Exception:  # the library may be missing: keep the name
                description = self.status_name[len("MHA_STATUS_"):].lower().replace("_", " ")
        self.description = description
        self.message = message
        super().__init__(f"{self.status_name} ({description}): {message}")


def _fail(status_name, message):
    raise MhaError(_lib.STATUS[status_name], message)


def _check(status):
    """Raises MhaError for a non-zero status; reads mha_last_error() at once, in
    the calling thread (the message is thread-local)."""
    if status != 0:
        msg = _lib.lib().mha_last_error()
        raise MhaError(status, msg.decode("utf-8", "replace") if msg else "")


# ---------------------------------------------------------------------------- the process


def version():
    """The library version this package is for, "MAJOR.MINOR.PATCH"."""
    return __version__


def library_path():
    """The path of the libmha.so in use (loading it if needed)."""
    return _lib.path()


def isa_available(name):
    """True if this build of libmha contains the kernel set `name` ("scalar",
    "avx2", "avx512f", "neon") and the CPU runs it; False otherwise,
    including for names mha does not know and "default"."""
    value = _lib.ISA_VALUES.get(name)
    if value is None:
        return False
    return bool(_lib.lib().mha_isa_available(value))


def get_isa():
    """The process-wide kernel set in use (MHA_ISA, set_isa, or the best)."""
    L = _lib.lib()
    v = ctypes.c_int()
    _check(L.mha_get_isa(ctypes.byref(v)))
    return L.mha_isa_name(v.value).decode()


def set_isa(name):
    """Forces the process-wide kernel set ("default" forgets the choice).
    MhaError UNKNOWN_ISA / UNSUPPORTED_ISA otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, not {type(name).__name__}")
    _check(_lib.lib().mha_set_isa_by_name(name.encode()))


def _isa_value(isa):
    if isa is None:
        return 0
    value = _lib.ISA_VALUES.get(isa) if isinstance(isa, str) else None
    if value is None:
        _fail("UNKNOWN_ISA", f"unknown ISA {isa!r}; one of default, {', '.join(ISAS)}")
    return value


def _c_int(value, name):
    value = int(value)
    if not _I32_MIN <= value <= _I32_MAX:
        _fail("INVALID_ARGUMENT", f"{name} = {value} does not fit a C int")
    return value


def _scale(scale):
    # None (or 0.0, as in the C API) means the default 1/sqrt(D)
    return 0.0 if scale is None else float(scale)


# ---------------------------------------------------------------------------- arrays


def _float32(a, name):
    """a as a float32 ndarray: the same array (no copy) when it is one, else a
    cast copy for other float dtypes."""
    a = np.asarray(a)
    if a.dtype != _F32:
        if a.dtype.kind != "f":
            raise TypeError(f"{name}: dtype {a.dtype} is not a float dtype (float32 expected)")
        a = a.astype(_F32)  # a copy: mha computes in float32
    return a


def _element_strides(a, axes, allow_row0):
    """Element strides (batch, head, row) of a 4-D view for mha (float32, or a
    16-bit cache: counted in its own elements), or None when mha cannot
    express it (last dimension not contiguous, negative or misaligned
    strides, a row stride shorter than the row)."""
    if a.size == 0:
        return [0, 0, 0]  # a size of 0: mha refuses it (INVALID_SIZE) before any stride
    shape, strides, isz = a.shape, a.strides, a.itemsize
    # aligned: the address and every stride a whole number of elements
    if not a.flags.aligned or (shape[3] > 1 and strides[3] != isz):
        return None
    out = []
    for ax in axes:
        n, s = shape[ax], strides[ax]
        if s < 0 or s % isz:
            if n > 1:
                return None
            s = 0  # any stride addresses a dimension of size 1
        out.append(s // isz)
    nrow, srow = shape[axes[2]], out[2]
    if nrow > 1 and srow < shape[3] and not (allow_row0 and srow == 0):
        return None
    return out


def _strides(values):
    return _lib.Strides(*values)


def _input_view(a, axes, allow_row0=False):
    """(array to pass, its element strides): a itself when mha can read it in
    place, else a C-contiguous copy."""
    st = _element_strides(a, axes, allow_row0)
    if st is None:
        a = np.ascontiguousarray(a)
        st = _element_strides(a, axes, allow_row0)
    return a, st


def _check_out_array(out, shape, name):
    """An output array the caller gave: the right type, dtype and shape, writable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, not {type(out).__name__}")
    if out.dtype != _F32:
        raise TypeError(f"{name}: dtype {out.dtype} is not float32 (an output is never copied)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if tuple(out.shape) != tuple(shape):
        _fail("INVALID_SHAPE", f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")


def _output_view(out, shape, axes, name):
    """Element strides of a caller's out= view, which mha writes in place
    (never copied). Strides mha refuses (negative, overlapping) are passed on
    for mha to report; what it cannot even be told is refused here."""
    _check_out_array(out, shape, name)
    if out.size == 0:
        return [0, 0, 0]
    if not out.flags.aligned:
        _fail("INVALID_STRIDE", f"{name}: its address or a stride is not a whole number of "
                                f"floats (byte strides {out.strides})")
    if shape[3] > 1 and out.strides[3] != 4:
        _fail("INVALID_STRIDE", f"{name}: the last dimension must be contiguous "
                                f"(byte strides {out.strides})")
    st = []
    for ax in axes:
        n, s = shape[ax], out.strides[ax]
        if s % 4:
            if n > 1:
                _fail("INVALID_STRIDE", f"{name}: byte stride {s} is not a whole number of floats")
            s = 0
        st.append(s // 4)  # negative strides go to mha, which refuses them
    return st


def _mask_view(mask, B, H, Tq, Tk):
    """The additive mask as a [B,H,Tq,Tk] view of the caller's array (NumPy
    broadcasting: broadcast dimensions get stride 0, nothing is materialized
    except a broadcast last dimension, at the mask's own size)."""
    m = _float32(mask, "mask")
    if m.ndim > 4:
        _fail("INVALID_SHAPE", f"mask has {m.ndim} dimensions; it must broadcast to [B,H,Tq,Tk]")
    m = m[(None,) * (4 - m.ndim)]  # a view
    target = (B, H, Tq, Tk)
    if any(n not in (1, t) for n, t in zip(m.shape, target)):
        _fail("INVALID_SHAPE", f"mask of shape {np.shape(mask)} does not broadcast to "
                               f"[B,H,Tq,Tk] = {list(target)}")
    if Tk > 1 and (m.shape[3] != Tk or m.strides[3] != 4):
        m = np.ascontiguousarray(np.broadcast_to(m, m.shape[:3] + (Tk,)))
    view = np.broadcast_to(m, target)
    st = _element_strides(view, (0, 1, 2), allow_row0=True)
    if st is None:
        view = np.broadcast_to(np.ascontiguousarray(m), target)
        st = _element_strides(view, (0, 1, 2), allow_row0=True)
    return view, st


def _int32_array(values, name):
    """values as a private C-contiguous int32 copy (no array of the caller's,
    an out= included, can alias it): TypeError for a non-integer dtype (floats,
    bools), INVALID_ARGUMENT for a value outside the int32 range."""
    a = np.asarray(values)
    if a.size and a.dtype.kind not in "iu":
        raise TypeError(f"{name}: dtype {a.dtype} is not an integer dtype")
    if a.size and (int(a.min()) < _I32_MIN or int(a.max()) > _I32_MAX):
        _fail("INVALID_ARGUMENT", f"{name} holds a value outside the int32 range")
    return np.array(a, dtype=np.int32, order="C", copy=True)


def _kv_len_array(kv_len, B, name="kv_len", what="length"):
    """B int32 values (an int broadcasts), one per batch entry."""
    a = _int32_array(kv_len, name)
    if a.ndim == 0:
        a = np.full(B, a, np.int32)
    if a.shape != (B,):
        _fail("INVALID_SHAPE", f"{name} has shape {a.shape}, expected ({B},) (one {what} per "
                               f"batch entry)")
    return a


def _set_mask(cmask, causal, kv_len, mask, B, H, Tq, Tk, keep):
    cmask.causal = 1 if causal else 0
    if kv_len is not None:
        kl = _kv_len_array(kv_len, B)
        keep.append(kl)
        cmask.kv_len = kl.ctypes.data
    if mask is not None:
        m, st = _mask_view(mask, B, H, Tq, Tk)
        keep.append(m)
        cmask.additive = m.ctypes.data
        cmask.additive_strides = _strides(st)


# enum mha_align (mha.h); an int align is MHA_ALIGN_OFFSET with that offset
_ALIGNS = {"bottom_right": 0, "top_left": 1, "kv_end": 3}
_ALIGN_OFFSET = 2
# enum mha_weights_mode (mha.h)
_WEIGHTS_MODES = {"per_head": 0, "mean": 1}
_WEIGHTS_SELECTED = 2


def _c_int64(value, name):
    """An integer (not a bool, not a float) that fits int64_t."""
    if isinstance(value, (bool, np.bool_)):
        _fail("INVALID_ARGUMENT", f"{name} must be an integer, not a bool")
    try:
        value = operator.index(value)
    except TypeError:
        _fail("INVALID_ARGUMENT", f"{name} must be an integer, not {type(value).__name__}")
    if not _I64_MIN <= value <= _I64_MAX:
        _fail("INVALID_ARGUMENT", f"{name} = {value} does not fit int64_t")
    return value


def _head_values(a, H, name):
    """H per-head values (alibi_slopes, sinks) as a contiguous float32 [H] array."""
    a = np.asarray(a)
    if a.size and a.dtype.kind not in "fiu":
        raise TypeError(f"{name}: dtype {a.dtype} is not a float dtype (float32 expected)")
    a = np.asarray(a, dtype=_F32, order="C")  # a copy unless already float32 and contiguous
    if a.shape != (H,):
        _fail("INVALID_SHAPE", f"{name} has shape {a.shape}, expected ({H},) (one value per "
                               f"query head)")
    return a


def _set_variants(cmask, H, align, window, alibi_slopes, softcap, sinks, keep):
    """The mask fields of mha.h's attention variants. Values mha checks itself
    (a negative window, a negative, NaN or infinite softcap, an offset beyond
    ±2^60) are passed on for mha to refuse; what C cannot be told is refused
    here."""
    if isinstance(align, str):
        value = _ALIGNS.get(align)
        if value is None:
            _fail("INVALID_ARGUMENT", f"align {align!r} is not one of 'bottom_right', "
                                      f"'top_left', 'kv_end' or an int offset")
        cmask.align = value
    elif isinstance(align, (int, np.integer)) and not isinstance(align, (bool, np.bool_)):
        cmask.align = _ALIGN_OFFSET
        cmask.offset = _c_int64(align, "align (offset)")
    else:
        _fail("INVALID_ARGUMENT", f"align must be 'bottom_right', 'top_left', 'kv_end' or an "
                                  f"int offset, not {type(align).__name__}")
    if window is not None:
        try:
            left, right = window
        except (TypeError, ValueError):
            _fail("INVALID_ARGUMENT", f"window must be None or a pair (left, right), not {window!r}")
        cmask.window = 1
        cmask.window_left = _c_int64(left, "window left")
        cmask.window_right = _c_int64(right, "window right")
    if alibi_slopes is not None:
        a = _head_values(alibi_slopes, H, "alibi_slopes")
        keep.append(a)
        cmask.alibi_slopes = a.ctypes.data
    if softcap is not None:
        cap = ctypes.c_float(float(softcap)).value  # what mha will read
        if cap == 0.0:
            # 0 means "off" in C: a cap the caller asked for may not vanish silently
            _fail("INVALID_ARGUMENT", f"softcap = {softcap!r} (as float32 {cap}) must be > 0 "
                                      f"(None: no soft-capping)")
        cmask.softcap = cap  # < 0, NaN, inf: mha refuses them (INVALID_ARGUMENT)
    if sinks is not None:
        a = _head_values(sinks, H, "sinks")
        keep.append(a)
        cmask.sinks = a.ctypes.data


def _weights_mode(mode, H, need_weights, keep):
    """(C mode, heads pointer, number of heads, slots): slots is the second
    dimension of the weights ([B,slots,Tq,Tk]), or None for the mean
    ([B,Tq,Tk]). The mode is checked even without need_weights (then it is
    otherwise ignored, as PyTorch ignores average_attn_weights)."""
    if isinstance(mode, str):
        value = _WEIGHTS_MODES.get(mode)
        if value is None:
            _fail("INVALID_ARGUMENT", f"weights_mode {mode!r} is not 'per_head', 'mean' or a "
                                      f"sequence of head indices")
        return value, None, 0, (H if value == 0 else None)
    heads = np.asarray(mode)
    if heads.ndim != 1 or (heads.size and heads.dtype.kind not in "iu"):
        _fail("INVALID_ARGUMENT", "weights_mode must be 'per_head', 'mean' or a 1-D sequence of "
                                  "integer head indices")
    if heads.size and (int(heads.min()) < _I32_MIN or int(heads.max()) > _I32_MAX):
        _fail("INVALID_ARGUMENT", "weights_mode holds a head index outside the int32 range")
    heads = np.ascontiguousarray(heads, dtype=np.int32)
    if not need_weights:
        return 0, None, 0, H
    keep.append(heads)  # the range [0, H) and n >= 1 are mha's checks
    return _WEIGHTS_SELECTED, heads.ctypes.data, heads.size, heads.size


def _weights_array(slots, B, Tq, Tk):
    shape = (B, Tq, Tk) if slots is None else (B, slots, Tq, Tk)
    return np.empty(shape, _F32)


def _ptr(a):
    return None if a is None else a.ctypes.data


# ---------------------------------------------------------------------------- the core

_LAYOUT_AXES = {"bhtd": (0, 1, 2), "bthd": (0, 2, 1)}  # axes of (batch, head, row)


def _batch_to(a, axis, B):
    """a with a batch of 1 broadcast to B (stride 0), or a itself."""
    if a.shape[axis] == B:
        return a
    shape = list(a.shape)
    shape[axis] = B
    return np.broadcast_to(a, shape)


def attention(q, k, v, *, layout="bhtd", causal=False, kv_len=None, mask=None, scale=None,
              align="bottom_right", window=None, alibi_slopes=None, softcap=None, sinks=None,
              need_weights=False, weights_mode="per_head", return_lse=False, num_threads=0,
              isa=None, out=None, workspace=None, kv_dtype=None):
    """out = softmax(scale·Q·Kᵀ + mask)·V per (batch, head): mha_attention_f32.

    layout "bhtd": q [B,H,Tq,D], k [B,Hkv,Tk,D], v [B,Hkv,Tk,Dv] → out [B,H,Tq,Dv]
    layout "bthd": the same as [B,T,H,D] (strides passed through, no transpose)
    Any strided view is read in place (see the module's docstring for the few
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
    Returns out; with need_weights and/or return_lse a tuple in the order
    (out, weights), (out, lse) or (out, weights, lse).
    """
    L = _lib.lib()
    axes = _LAYOUT_AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
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
    return _attend(L, q, sq, (k, sk, v, sv), cache, B, H, Hkv, Tq, Tk, D, Dv, layout, axes,
                   causal=causal, kv_len=kv_len, mask=mask, scale=scale, align=align,
                   window=window, alibi_slopes=alibi_slopes, softcap=softcap, sinks=sinks,
                   need_weights=need_weights, weights_mode=weights_mode,
                   return_lse=return_lse, num_threads=num_threads, isa=isa, out=out,
                   workspace=workspace)


def _attend(L, q, sq, kv, cache, B, H, Hkv, Tq, Tk, D, Dv, layout, axes, *, causal, kv_len,
            mask, scale, align, window, alibi_slopes, softcap, sinks, need_weights,
            weights_mode, return_lse, num_threads, isa, out, workspace):
    """The call of attention() and attention_paged(): mha_attention_f32 on the
    float32 views kv = (k, k strides, v, v strides), or, with a cache,
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
        out = np.empty(out_shape, _F32)
        so = _element_strides(out, axes, False)
    else:
        so = _output_view(out, out_shape, axes, "out")
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
        _check(L.mha_attention_f32(ctypes.byref(d), _ptr(q), _ptr(k), _ptr(v), _ptr(out),
                                   _ptr(weights)))
    else:
        ws = _workspace(workspace, lambda size: L.mha_attention_kv_workspace_size(
            ctypes.byref(d), ctypes.byref(cache), int(need_weights), ctypes.byref(size)))
        if ws is not None:
            d.workspace, d.workspace_size = ws.ctypes.data, ws.nbytes
        _check(L.mha_attention_kv_f32(ctypes.byref(d), _ptr(q), ctypes.byref(cache), _ptr(out),
                                      _ptr(weights)))
    if not (need_weights or return_lse):
        return out
    result = (out, weights) if need_weights else (out,)
    if return_lse:
        result += (lse if layout == "bhtd" else lse.transpose(0, 2, 1),)
    return result


# ---------------------------------------------------------------------------- K/V caches

_F16 = np.dtype(np.float16)
_U16 = np.dtype(np.uint16)
_KV_DTYPE_EXPECTED = {"f32": "float32", "f16": "float16, or uint16 holding the bits",
                      "bf16": "uint16 holding the bits, or ml_dtypes.bfloat16"}


def _native_kv_dtype(dt):
    """The mha_dtype name that a NumPy dtype holds by itself, or None (uint16
    bits could be either 16-bit type: kv_dtype says which)."""
    if dt == _F32:
        return "f32"
    if dt == _F16:
        return "f16"
    if dt.name == "bfloat16" and dt.itemsize == 2:  # ml_dtypes.bfloat16
        return "bf16"
    return None


def _check_kv_dtype_name(kv_dtype):
    if kv_dtype is not None and kv_dtype not in _lib.DTYPE_VALUES:
        raise ValueError(f"kv_dtype must be None, 'f32', 'f16' or 'bf16', not {kv_dtype!r}")


def _kv_dtype(arrays, names, kv_dtype):
    """The mha_dtype name of K/V arrays that mha reads or writes in place:
    kv_dtype, or (None) the one their NumPy dtypes hold (the same for all)."""
    _check_kv_dtype_name(kv_dtype)
    found = [_native_kv_dtype(a.dtype) for a in arrays]
    if kv_dtype is None:
        if found[0] is None or any(f != found[0] for f in found):
            dts = ", ".join(f"{n} {a.dtype}" for n, a in zip(names, arrays))
            raise TypeError(f"{dts}: a K/V cache is float32, float16 or ml_dtypes.bfloat16 (the "
                            f"same for K and V); for uint16 bits pass kv_dtype='f16' or 'bf16'")
        return found[0]
    for a, f, name in zip(arrays, found, names):
        if f != kv_dtype and not (kv_dtype != "f32" and a.dtype == _U16):
            raise TypeError(f"{name}: dtype {a.dtype} cannot hold kv_dtype={kv_dtype!r} values "
                            f"({_KV_DTYPE_EXPECTED[kv_dtype]} expected)")
    return kv_dtype


def _attention_kv_dtype(k, v, kv_dtype):
    """attention()'s choice: None (the float32 path: K and V cast to float32
    as needed) or "f16" / "bf16" (a 16-bit cache read in place)."""
    _check_kv_dtype_name(kv_dtype)
    if kv_dtype == "f32":
        return None
    dk, dv = np.asarray(k).dtype, np.asarray(v).dtype
    if kv_dtype is None:
        n = _native_kv_dtype(dk)
        if n in ("f16", "bf16") and _native_kv_dtype(dv) == n:
            return n
        if _U16 in (dk, dv):
            raise TypeError("k, v: uint16 arrays are read as 16-bit K/V bits only with "
                            "kv_dtype='f16' or 'bf16'")
        return None
    return _kv_dtype((np.asarray(k), np.asarray(v)), ("k", "v"), kv_dtype)


def _cache_axes(cache_layout, paged):
    """(block-or-batch, head, row) axes of a cache's arrays."""
    if cache_layout is None:
        cache_layout = "bhtd"  # the C API's init functions: head-major blocks when paged
    axes = _LAYOUT_AXES.get(cache_layout)
    if axes is None:
        raise ValueError(f"cache_layout must be 'bhtd' or 'bthd', not {cache_layout!r}")
    return axes


def _block_table(block_table, B=None):
    t = _int32_array(block_table, "block_table")
    if t.ndim != 2 or t.shape[1] < 1 or (B is not None and t.shape[0] != B):
        want = "[B, max_blocks]" if B is None else f"[{B}, max_blocks]"
        _fail("INVALID_SHAPE", f"block_table has shape {t.shape}, expected {want} (max_blocks >= 1)")
    return t


def _cache_struct(kd, k, sk, v, sv, axes, table):
    """The mha_kv_cache of K/V arrays (pools when table is not None)."""
    c = _lib.KVCache(_lib.DTYPE_VALUES[kd], _ptr(k), _ptr(v), _strides(sk), _strides(sv))
    if table is None:
        c.capacity = k.shape[axes[2]]
    else:
        c.block_size, c.num_blocks = k.shape[axes[2]], k.shape[0]
        c.block_table, c.max_blocks = _ptr(table), table.shape[1]
    return c


def _check_pools(k, v, axes, what):
    """k and v must agree on what mha's struct holds once: blocks (or batch),
    heads, rows."""
    for name, a in (("k", k), ("v", v)):
        if a.ndim != 4:
            _fail("INVALID_SHAPE", f"{name}{what} has {a.ndim} dimensions, expected 4")
    ib, ih, it = axes
    if (k.shape[ib], k.shape[ih], k.shape[it]) != (v.shape[ib], v.shape[ih], v.shape[it]):
        _fail("INVALID_SHAPE", f"k{what} {k.shape} and v{what} {v.shape} differ in blocks, heads "
                               f"or rows")


def attention_paged(q, k_pool, v_pool, block_table, *, kv_len=None, Tk=None, kv_dtype=None,
                    cache_layout="bhtd", layout="bhtd", causal=False, mask=None, scale=None,
                    align="bottom_right", window=None, alibi_slopes=None, softcap=None,
                    sinks=None, need_weights=False, weights_mode="per_head", return_lse=False,
                    num_threads=0, isa=None, out=None, workspace=None):
    """Attention over a paged K/V cache (mha_attention_kv_f32), as serving engines keep it.

    q            [B,H,Tq,D] ("bhtd") or [B,Tq,H,D] (layout "bthd"), float32
                 (other float dtypes are cast); a batch of 1 broadcasts
    k_pool       K's pool of num_blocks blocks of block_size tokens (a power of
                 two, 16 .. 256): cache_layout "bhtd" (default, head-major,
                 as CPU engines keep it: a head's rows of a block are one run)
                 [num_blocks, Hkv, block_size, D], or "bthd" (vLLM's GPU
                 layout, slower here) [num_blocks, block_size, Hkv, D]; read in place (any view
                 with a contiguous last dimension, e.g. one half of a
                 [2, num_blocks, ...] cache)
    v_pool       V's pool, the same with Dv
    block_table  [B, max_blocks] ints: entry b's token t is row t % block_size
                 of block block_table[b, t // block_size]. Entries may share
                 blocks; only the slots that cover an entry's keys are read,
                 and each must be in [0, num_blocks) (else MhaError
                 INVALID_ARGUMENT).
    kv_len       B key lengths (an int broadcasts), as in attention()
    Tk           the key rows of the call (the weights' last dimension, the
                 bottom-right alignment): None is max(kv_len) (at least 1)
                 with kv_len, else max_blocks·block_size. More than
                 max_blocks·block_size: MhaError INVALID_ARGUMENT. With
                 entries of different lengths and Tq > 1, causal decoding
                 wants align="kv_end" (each entry's queries end at its kv_len).
    kv_dtype     None: from the pools' dtype (float32, float16,
                 ml_dtypes.bfloat16); "f16" or "bf16" for uint16 bits; "f32"
    Every other keyword is attention()'s; out is [B,H,Tq,Dv] or [B,Tq,H,Dv].
    The bits are those of attention() on the same keys gathered into a
    contiguous cache (and of attention() on them widened to float32), for any
    block size, table and thread count. Fill the pools with kv_cache_write().
    """
    L = _lib.lib()
    axes = _LAYOUT_AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
    paxes = _cache_axes(cache_layout, True)
    k, v = np.asarray(k_pool), np.asarray(v_pool)
    kd = _kv_dtype((k, v), ("k_pool", "v_pool"), kv_dtype)
    _check_pools(k, v, paxes, "_pool")
    table = _block_table(block_table)
    B = table.shape[0]
    q = _float32(q, "q")
    if q.ndim != 4:
        _fail("INVALID_SHAPE", f"q has {q.ndim} dimensions, expected 4 ({layout})")
    ib, ih, it = axes
    if q.shape[ib] not in (1, B):
        _fail("INVALID_SHAPE", f"q's batch ({q.shape[ib]}) differs from block_table's rows ({B})")
    q = _batch_to(q, ib, B)
    H, Tq, D = q.shape[ih], q.shape[it], q.shape[3]
    Hkv, block_size, Dk, Dv = k.shape[paxes[1]], k.shape[paxes[2]], k.shape[3], v.shape[3]
    if Dk != D:
        _fail("INVALID_SHAPE", f"k_pool's head width ({Dk}) differs from q's ({D})")
    if Tk is None:
        if kv_len is not None:
            Tk = max(1, int(_kv_len_array(kv_len, B).max()))
        else:
            Tk = table.shape[1] * block_size
    Tk = _c_int64(Tk, "Tk")
    q, sq = _input_view(q, axes)
    k, sk = _input_view(k, paxes)
    v, sv = _input_view(v, paxes)
    cache = _cache_struct(kd, k, sk, v, sv, paxes, table)
    return _attend(L, q, sq, None, cache, B, H, Hkv, Tq, Tk, D, Dv, layout, axes,
                   causal=causal, kv_len=kv_len, mask=mask, scale=scale, align=align,
                   window=window, alibi_slopes=alibi_slopes, softcap=softcap, sinks=sinks,
                   need_weights=need_weights, weights_mode=weights_mode,
                   return_lse=return_lse, num_threads=num_threads, isa=isa, out=out,
                   workspace=workspace)


def _written_view(a, axes, name):
    """Element strides of a cache array that mha writes in place (never copied)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is written in place), not "
                        f"{type(a).__name__}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if a.ndim != 4:
        _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 4")
    st = _element_strides(a, axes, False)
    if st is None:
        _fail("INVALID_STRIDE", f"{name}: byte strides {a.strides} cannot be written in place (a "
                                f"contiguous last dimension, strides >= 0 and whole elements)")
    return st


def kv_cache_write(k_cache, v_cache, k_new, v_new, pos, *, block_table=None, kv_dtype=None,
                   cache_layout=None, layout="bhtd"):
    """Appends rows to a K/V cache in place, rounded to its dtype (to nearest,
    ties to even; f16 overflows to ±inf): mha_kv_cache_write.

    k_new        [B,Hkv,T,D] ("bhtd") or [B,T,Hkv,D] (layout "bthd"), float32
                 (other float dtypes are cast); v_new likewise with Dv
    pos          B ints (an int broadcasts): row t of entry b becomes the
                 cache's token pos[b] + t; pos[b] >= 0 and pos[b] + T must fit
    k_cache, v_cache  writable arrays, never copied:
      block_table None: a contiguous cache, cache_layout "bhtd" (default)
                 [B,Hkv,capacity,D] or "bthd" [B,capacity,Hkv,D] (any view
                 with a contiguous last dimension and non-negative strides)
      block_table [B, max_blocks]: pools as in attention_paged(),
                 cache_layout "bhtd" (default) or "bthd"; every slot covering
                 [pos[b], pos[b] + T) must be in [0, num_blocks). Entries must
                 not write the same block rows.
    kv_dtype     None: from the caches' dtype (float32, float16,
                 ml_dtypes.bfloat16); "f16" or "bf16" for uint16 bits
    Writes nothing when any check fails (MhaError).
    """
    L = _lib.lib()
    axes = _LAYOUT_AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
    paged = block_table is not None
    caxes = _cache_axes(cache_layout, paged)
    kn, vn = _float32(k_new, "k_new"), _float32(v_new, "v_new")
    for name, a in (("k_new", kn), ("v_new", vn)):
        if a.ndim != 4:
            _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 4 ({layout})")
    ib, ih, it = axes
    B, Hkv, T, D = kn.shape[ib], kn.shape[ih], kn.shape[it], kn.shape[3]
    Dv = vn.shape[3]
    if (vn.shape[ib], vn.shape[ih], vn.shape[it]) != (B, Hkv, T):
        _fail("INVALID_SHAPE", f"v_new {vn.shape} and k_new {kn.shape} differ in batch, heads "
                               f"or rows")
    sk = _written_view(k_cache, caxes, "k_cache")
    sv = _written_view(v_cache, caxes, "v_cache")
    kd = _kv_dtype((k_cache, v_cache), ("k_cache", "v_cache"), kv_dtype)
    _check_pools(k_cache, v_cache, caxes, "_cache")
    if k_cache.shape[caxes[1]] != Hkv or k_cache.shape[3] != D or v_cache.shape[3] != Dv:
        _fail("INVALID_SHAPE", f"k_cache {k_cache.shape} / v_cache {v_cache.shape} do not hold "
                               f"rows of k_new {kn.shape} / v_new {vn.shape}")
    table = None
    if paged:
        table = _block_table(block_table, B)
    elif k_cache.shape[caxes[0]] != B:
        _fail("INVALID_SHAPE", f"k_cache holds {k_cache.shape[caxes[0]]} batch entries, k_new {B}")
    p = _kv_len_array(pos, B, "pos", "position")
    kn, skn = _input_view(kn, axes)
    vn, svn = _input_view(vn, axes)
    cache = _cache_struct(kd, k_cache, sk, v_cache, sv, caxes, table)
    _check(L.mha_kv_cache_write(ctypes.byref(cache), B, Hkv, T, D, Dv, _ptr(p), _ptr(kn),
                                _strides(skn), _ptr(vn), _strides(svn)))


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, *, max_seqlen_q=None,
                     max_seqlen_k=None, causal=False, align="bottom_right", window=None,
                     alibi_slopes=None, softcap=None, sinks=None, scale=None, return_lse=False,
                     num_threads=0, isa=None, out=None, workspace=None):
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
    lengths (kv_len and additive masks do not apply). Returns out
    [total_q, H, Dv], or (out, lse [total_q, H]) with return_lse.
    """
    L = _lib.lib()
    q, k, v = _float32(q, "q"), _float32(k, "k"), _float32(v, "v")
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
    _check(fn(ctypes.byref(d), pq, pk, _ptr(q4), _ptr(k4), _ptr(v4), _ptr(out)))
    return (out, lse) if return_lse else out


# ---------------------------------------------------------------------------- workspaces

_ws_cache = threading.local()


def _workspace(workspace, query):
    """The workspace of a call: None (mha allocates its own per call), "auto"
    (a buffer kept per thread by this module and grown to what
    mha_*_workspace_size reports: what an engine does, so repeated calls
    allocate nothing and take no page faults), or a caller's writable
    C-contiguous NumPy array (its nbytes; mha refuses one that is too small)."""
    if workspace is None:
        return None
    if isinstance(workspace, str):
        if workspace != "auto":
            raise ValueError(f"workspace must be None, 'auto' or a NumPy array, not {workspace!r}")
        size = ctypes.c_size_t(0)
        _check(query(size))
        buf = getattr(_ws_cache, "buf", None)
        if buf is None or buf.nbytes < size.value:
            buf = np.zeros(max(size.value, 64), np.uint8)  # first touched here, not in the call
            _ws_cache.buf = buf
        return buf
    if not isinstance(workspace, np.ndarray) or not workspace.flags.c_contiguous or \
            not workspace.flags.writeable:
        raise TypeError("workspace must be a writable C-contiguous NumPy array")
    return workspace


# ---------------------------------------------------------------------------- merging


def merge(outs, lses, *, out=None):
    """Merges the (out, lse) of attention over disjoint key ranges of the same
    queries into the result over their union (mha_merge_f32):

      L = log Σ_p exp(lses[p]);  out = Σ_p exp(lses[p] - L)·outs[p]

    summed over the parts in the order given (the bits are reproducible for a
    fixed order). For chunked prefill, a shared prefix attended once, or
    sequence-parallel attention: call attention(..., return_lse=True) on each
    key range (with the causal/window/ALiBi positions of the whole sequence,
    e.g. align=<int offset>, and sinks on one range only) and merge.

    outs   a sequence of P >= 1 arrays of one shape [..., Dv]
    lses   P arrays of shape [...] (outs' leading dimensions); the leading
           dimensions are flattened to rows, so a part's rows must be in the
           same order in its out and its lse (as attention returns them, in
           either layout). Parts that are not C-contiguous float32 are copied.
    out    None: allocated; else a C-contiguous writable float32 array of
           outs' shape, written in place. It may be outs[0] itself (merging
           in place) but no other part, nor overlap one.
    A part whose lse is -inf adds nothing; a row no part sees gets zeros and
    lse -inf; a NaN lse makes the row NaN.
    Returns (out, lse) with lse of shape [...], float32.
    """
    L = _lib.lib()
    outs, lses = list(outs), list(lses)
    if not outs:
        _fail("INVALID_SIZE", "merge: no parts (outs is empty)")
    if len(lses) != len(outs):
        _fail("INVALID_SHAPE", f"merge: {len(outs)} outs but {len(lses)} lses")
    os_, ls_ = [], []
    shape = None
    for p, (o, l) in enumerate(zip(outs, lses)):
        # C order, copied only if needed (ascontiguousarray would make a 0-d lse 1-d)
        o = np.asarray(_float32(o, f"outs[{p}]"), order="C")
        l = np.asarray(_float32(l, f"lses[{p}]"), order="C")
        if o.ndim < 1:
            _fail("INVALID_SHAPE", f"merge: outs[{p}] is a scalar; expected [..., Dv]")
        if shape is None:
            shape = o.shape
        elif o.shape != shape:
            _fail("INVALID_SHAPE", f"merge: outs[{p}] has shape {o.shape}, outs[0] {shape}")
        if l.shape != shape[:-1]:
            _fail("INVALID_SHAPE", f"merge: lses[{p}] has shape {l.shape}, expected "
                                   f"{shape[:-1]} (outs' leading dimensions)")
        os_.append(o)
        ls_.append(l)
    Dv = shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    if out is None:
        out = np.empty(shape, _F32)
    else:
        _check_out_array(out, shape, "out")
        if not out.flags.c_contiguous:
            _fail("INVALID_STRIDE", "out of merge must be C-contiguous (the C API's layout)")
        for p, a in enumerate(os_ + ls_):
            in_place = p == 0 and a.ctypes.data == out.ctypes.data
            if not in_place and np.may_share_memory(out, a):
                what = f"outs[{p}]" if p < len(os_) else f"lses[{p - len(os_)}]"
                _fail("INVALID_STRIDE", f"merge: out overlaps {what} (only outs[0] itself may "
                                        f"be out)")
    lse = np.empty(shape[:-1], _F32)
    P = len(os_)
    po = (ctypes.c_void_p * P)(*[a.ctypes.data for a in os_])
    pl = (ctypes.c_void_p * P)(*[a.ctypes.data for a in ls_])
    _check(L.mha_merge_f32(P, rows, Dv, ctypes.addressof(po), ctypes.addressof(pl), _ptr(out),
                           _ptr(lse)))
    return out, lse


# ---------------------------------------------------------------------------- the layer


def _contiguous(a, name):
    """A C-contiguous float32 array (a itself when it is one, else a copy)."""
    return np.ascontiguousarray(_float32(a, name))


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
    isa                    None: pack for the process choice; or a kernel set name
    """

    def __init__(self, d_model, num_heads, *, num_kv_heads=None, head_dim=None, d_kv=None,
                 w_q=None, w_k=None, w_v=None, w_o=None, b_q=None, b_k=None, b_v=None, b_o=None,
                 in_proj_weight=None, in_proj_bias=None, layout="out_in", isa=None,
                 value_head_dim=None):
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
        for name, a in given.items():
            if a is None:
                continue
            a = _contiguous(a, name)
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
                workspace=None):
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
        Returns out [B,Tq,output_width], or (out, weights) with need_weights.
        (The layer has no lse output: use attention() for merging.)
        """
        L = _lib.lib()
        x = _contiguous(x, "x")
        if x.ndim != 3 or x.shape[2] != self.d_model:
            _fail("INVALID_SHAPE", f"x has shape {x.shape}, expected [B, Tq, {self.d_model}]")
        B, Tq = x.shape[0], x.shape[1]
        Tk = Tq
        xk = xv = None
        for name, a in (("x_k", x_k), ("x_v", x_v)):
            if a is None:
                continue
            a = _contiguous(a, name)
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
            out = np.empty(out_shape, _F32)
        else:
            _check_out_array(out, out_shape, "out")
            if not out.flags.c_contiguous:
                _fail("INVALID_STRIDE", "out of Layer.forward must be C-contiguous "
                                        "[B, Tq, output_width] (the C API's layout)")
        H = self.num_heads
        a = _lib.LayerArgs()
        L.mha_layer_args_init(ctypes.byref(a))
        a.B, a.Tq, a.Tk = B, Tq, Tk
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
        ws = _workspace(workspace, lambda size: L.mha_layer_workspace_size(
            self._handle, ctypes.byref(a), ctypes.byref(size)))
        if ws is not None:
            a.workspace, a.workspace_size = ws.ctypes.data, ws.nbytes
        _check(L.mha_layer_forward(self._handle, ctypes.byref(a)))
        return (out, weights) if need_weights else out

    __call__ = forward

    def __repr__(self):
        state = "closed" if self.closed else f"isa={self._isa!r}"
        return (f"mha.Layer(d_model={self.d_model}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, "
                f"output_width={self._output_width}, {state})")
