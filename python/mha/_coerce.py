"""Argument coercion shared by every call family: Python values to what the C
API takes (an isa name to its enum value, num_threads to a C int, scale,
int64 offsets), NumPy arrays to float32 views with the element strides mha
reads in place (or the few copies it cannot express), a caller's out= view
(checked, never copied), a mask broadcast to [B,H,Tq,Tk], private int32
copies (kv_len, positions, block tables, cu_seqlens), per-head float32
arrays, and the K/V dtype of 16-bit caches (f32, f16, bf16, or uint16 bits
named by kv_dtype)."""
import operator

import numpy as np

from . import _lib
from ._errors import _fail
from ._process import ISAS


_F32 = np.dtype(np.float32)
_I32_MIN, _I32_MAX = -2 ** 31, 2 ** 31 - 1
_I64_MIN, _I64_MAX = -2 ** 63, 2 ** 63 - 1


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


def _check_out_array(out, shape, name, dtype=None):
    """An output array the caller gave: the right type, dtype (float32, or
    dtype) and shape, writable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or a CPU tensor, not "
                        f"{type(out).__name__}")
    want = _F32 if dtype is None else dtype
    if out.dtype != want:
        raise TypeError(f"{name}: dtype {out.dtype} is not {want} (an output is never copied)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if tuple(out.shape) != tuple(shape):
        _fail("INVALID_SHAPE", f"{name} has shape {tuple(out.shape)}, expected {tuple(shape)}")


def _output_view(out, shape, axes, name, dtype=None):
    """Element strides of a caller's out= view (float32, or dtype: 16-bit),
    which mha writes in place (never copied). Strides mha refuses (negative,
    overlapping) are passed on for mha to report; what it cannot even be told
    is refused here."""
    _check_out_array(out, shape, name, dtype)
    if out.size == 0:
        return [0, 0, 0]
    isz = out.itemsize
    if not out.flags.aligned:
        _fail("INVALID_STRIDE", f"{name}: its address or a stride is not a whole number of "
                                f"elements (byte strides {out.strides})")
    if shape[3] > 1 and out.strides[3] != isz:
        _fail("INVALID_STRIDE", f"{name}: the last dimension must be contiguous "
                                f"(byte strides {out.strides})")
    st = []
    for ax in axes:
        n, s = shape[ax], out.strides[ax]
        if s % isz:
            if n > 1:
                _fail("INVALID_STRIDE", f"{name}: byte stride {s} is not a whole number of elements")
            s = 0
        st.append(s // isz)  # negative strides go to mha, which refuses them
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


def _ptr(a):
    return None if a is None else a.ctypes.data


# ---------------------------------------------------------------------------- K/V dtypes

_F16 = np.dtype(np.float16)
_U16 = np.dtype(np.uint16)
_I8 = np.dtype(np.int8)
_KV_DTYPE_EXPECTED = {"f32": "float32", "f16": "float16, or uint16 holding the bits",
                      "bf16": "uint16 holding the bits, or ml_dtypes.bfloat16",
                      "int8": "int8, with k_scales and v_scales"}


def _native_kv_dtype(dt):
    """The mha_dtype name that a NumPy dtype holds by itself, or None (uint16
    bits could be either 16-bit type: kv_dtype says which)."""
    if dt == _F32:
        return "f32"
    if dt == _F16:
        return "f16"
    if dt == _I8:
        return "int8"
    if dt.name == "bfloat16" and dt.itemsize == 2:  # ml_dtypes.bfloat16
        return "bf16"
    return None


def _check_kv_dtype_name(kv_dtype):
    if kv_dtype is not None and kv_dtype not in _lib.DTYPE_VALUES:
        raise ValueError(f"kv_dtype must be None, 'f32', 'f16', 'bf16' or 'int8', not {kv_dtype!r}")


def _kv_dtype(arrays, names, kv_dtype):
    """The mha_dtype name of K/V arrays that mha reads or writes in place:
    kv_dtype, or (None) the one their NumPy dtypes hold (the same for all)."""
    _check_kv_dtype_name(kv_dtype)
    found = [_native_kv_dtype(a.dtype) for a in arrays]
    if kv_dtype is None:
        if found[0] is None or any(f != found[0] for f in found):
            dts = ", ".join(f"{n} {a.dtype}" for n, a in zip(names, arrays))
            raise TypeError(f"{dts}: a K/V cache is float32, float16, ml_dtypes.bfloat16 or int8 "
                            f"(the same for K and V); for uint16 bits pass kv_dtype='f16' or 'bf16'")
        return found[0]
    for a, f, name in zip(arrays, found, names):
        if f != kv_dtype and not (kv_dtype in ("f16", "bf16") and a.dtype == _U16):
            raise TypeError(f"{name}: dtype {a.dtype} cannot hold kv_dtype={kv_dtype!r} values "
                            f"({_KV_DTYPE_EXPECTED[kv_dtype]} expected)")
    return kv_dtype


def _attention_kv_dtype(k, v, kv_dtype):
    """attention()'s choice: None (the float32 path: K and V cast to float32
    as needed) or "f16" / "bf16" (a 16-bit cache read in place)."""
    _check_kv_dtype_name(kv_dtype)
    if kv_dtype == "f32":
        return None
    if kv_dtype == "int8":
        raise TypeError("attention(): an int8 cache needs its scales: attention_paged() or "
                        "attention_varlen() with k_scales= and v_scales=")
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
