"""Rotary embeddings (mha.h, "Rotary embeddings"): rotary_table() fills a
cos/sin table from θ (mha_rotary_table_f32), and _rotary_struct() builds the
mha_rotary a call applies to Q (attention_varlen over a cache) from
FlashAttention-style arguments; _rotate_rows() rotates kv_cache_write's K
through the library (mha_rotary_apply_f32)."""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import _F32, _int32_array, _ptr


def rotary_table(dim, n_positions, theta=10000.0, *, position_scale=1.0, inv_freq=None,
                 attn_factor=1.0):
    """cos, sin [n_positions, dim // 2] float32 for rotary embeddings of dim
    dimensions: angle = (p · position_scale) · f[i], f[i] = theta^(−2i/dim) or
    inv_freq[i] (YaRN, Llama 3 or NTK-by-parts frequencies), times
    attn_factor; computed in double and rounded once (mha_rotary_table_f32).
    Linear scaling by a factor: position_scale=1/factor. NTK-aware:
    theta=θ·factor^(dim/(dim−2))."""
    L = _lib.lib()
    dim, n_positions = int(dim), int(n_positions)
    if dim < 2 or dim % 2 or n_positions < 1:
        _fail("INVALID_SIZE", f"rotary_table(): dim = {dim} must be even and >= 2, n_positions = "
                              f"{n_positions} >= 1")
    inv = None
    if inv_freq is not None:
        inv = np.ascontiguousarray(inv_freq, dtype=_F32)
        if inv.shape != (dim // 2,):
            _fail("INVALID_SHAPE", f"inv_freq must be [{dim // 2}], not {inv.shape}")
    cos = np.empty((n_positions, dim // 2), _F32)
    sin = np.empty((n_positions, dim // 2), _F32)
    _check(L.mha_rotary_table_f32(dim, n_positions, float(theta), float(position_scale), _ptr(inv),
                                  float(attn_factor), _ptr(cos), _ptr(sin)))
    return cos, sin


def _rotary_struct(rotary_cos, rotary_sin, interleaved, positions, rows, head_dim, keep):
    """The mha_rotary of (cos, sin [n_positions, dim/2]) — FlashAttention's
    rotary_cos / rotary_sin, dim = 2·cos.shape[1] <= head_dim; interleaved:
    GPT-J pairs, else GPT-NeoX — with positions [rows] or None (natural).
    The arrays it points into are appended to keep."""
    if (rotary_cos is None) != (rotary_sin is None):
        raise TypeError("rotary_cos and rotary_sin come together")
    cos = np.ascontiguousarray(rotary_cos, dtype=_F32)
    sin = np.ascontiguousarray(rotary_sin, dtype=_F32)
    if cos.ndim != 2 or cos.shape != sin.shape or cos.shape[1] < 1:
        _fail("INVALID_SHAPE", f"rotary_cos and rotary_sin must both be [n_positions, rotary_dim / 2], "
                               f"not {cos.shape} and {sin.shape}")
    if 2 * cos.shape[1] > head_dim:
        _fail("INVALID_SHAPE", f"rotary_dim = {2 * cos.shape[1]} (2 · rotary_cos.shape[1]) is wider than "
                               f"the heads ({head_dim})")
    r = _lib.Rotary(_lib.ROTARY_STYLE_VALUES["gptj" if interleaved else "neox"], 2 * cos.shape[1],
                    cos.ctypes.data, sin.ctypes.data, cos.shape[0], None)
    keep += [cos, sin, r]
    if positions is not None:
        pos = _int32_array(positions, "rotary_positions")
        if pos.shape != (rows,):
            _fail("INVALID_SHAPE", f"rotary_positions must be [{rows}] (one per query row), not {pos.shape}")
        keep.append(pos)
        r.positions = pos.ctypes.data
    return r



def _rotate_rows(x, axes, rotary_cos, rotary_sin, interleaved, positions, keep):
    """K of kv_cache_write, x [B, heads, T, D] in the layout of axes (batch,
    head, row), rotated by the library (mha_rotary_apply_f32, mha.h's
    formula) into a new array; row t of entry b at positions[b, t]."""
    L = _lib.lib()
    x = np.ascontiguousarray(x, dtype=_F32)
    y = np.empty_like(x)
    ib, ih, it = axes
    B, H, T, D = x.shape[ib], x.shape[ih], x.shape[it], x.shape[3]
    r = _rotary_struct(rotary_cos, rotary_sin, interleaved, None, T, D, keep)
    st = _lib.Strides(0, x.strides[ih] // 4, x.strides[it] // 4)
    for b in range(B):
        pos = _int32_array(positions[b], "positions")
        r.positions = pos.ctypes.data
        off = b * x.strides[ib]
        _check(L.mha_rotary_apply_f32(ctypes.byref(r), T, H, D, x.ctypes.data + off, st, y.ctypes.data + off, st))
    return y
