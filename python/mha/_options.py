"""The keyword options shared by attention(), attention_paged(),
attention_varlen() and Layer.forward(), written into their C struct: causal,
kv_len and the additive mask into its mha_mask (_set_mask); the variants
align, window, alibi_slopes, softcap and sinks likewise (_set_variants); and
weights_mode into the weights fields, with the weights array it calls for
(_weights_mode, _weights_array)."""
import ctypes

import numpy as np

from ._errors import _fail
from ._coerce import (_F32, _I32_MAX, _I32_MIN, _c_int64, _head_values, _kv_len_array,
                      _mask_view, _strides)


# enum mha_align (mha.h); an int align is MHA_ALIGN_OFFSET with that offset
_ALIGNS = {"bottom_right": 0, "top_left": 1, "kv_end": 3}
_ALIGN_OFFSET = 2
# enum mha_weights_mode (mha.h)
_WEIGHTS_MODES = {"per_head": 0, "mean": 1}
_WEIGHTS_SELECTED = 2


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
