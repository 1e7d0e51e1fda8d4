"""The serving writers: kv_cache_write_varlen() (a step's packed rows per
sequence at its positions, mha_kv_cache_write_varlen) and
kv_cache_write_slots() (vLLM's slot_mapping into paged pools,
mha_kv_cache_write_slots), each optionally rotating K with rotary embeddings
(mha.h, "Rotary embeddings") as it writes."""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import _float32, _input_view, _int32_array, _ptr, _strides
from ._kv_cache import _block_table, _cache_axes, _cache_scales, _cache_struct, _written_cache
from ._rotary import _rotary_struct
from ._tensors import _Tensors

_PACKED = (0, 2, 1)  # [1, total, heads, width] as (batch, head, row)


def _packed_rows(t, k_new, v_new):
    """k_new [total, Hkv, D] and v_new [total, Hkv, Dv] (float32, cast) and
    their element strides."""
    kn, vn = _float32(t.array(k_new, "k_new"), "k_new"), _float32(t.array(v_new, "v_new"), "v_new")
    for name, a in (("k_new", kn), ("v_new", vn)):
        if a.ndim != 3:
            _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 3 [total, Hkv, width]")
    if kn.shape[:2] != vn.shape[:2]:
        _fail("INVALID_SHAPE", f"k_new {kn.shape} and v_new {vn.shape} differ in rows or heads")
    k4, sk = _input_view(kn[None], _PACKED)
    v4, sv = _input_view(vn[None], _PACKED)
    return k4, sk, v4, sv, kn.shape[0], kn.shape[1], kn.shape[2], vn.shape[2]


def _cache_of(t, k_cache, v_cache, kv_dtype, cache_layout, paged, Hkv, D, Dv, k_scales=None, v_scales=None):
    """(k_cache, its strides, v_cache, its strides, dtype name, axes, int8
    scales or None) of a cache a writer fills in place."""
    k_cache, v_cache, kv_dtype = t.kv(k_cache, v_cache, ("k_cache", "v_cache"), kv_dtype, write=True)
    caxes = _cache_axes(cache_layout, paged)
    sk, sv, kd = _written_cache(k_cache, v_cache, kv_dtype, caxes, Hkv, D, Dv, f"{Hkv} heads of {D} / {Dv}")
    scales = _cache_scales(t, kd, k_scales, v_scales, k_cache.shape[:3], caxes, write=True)
    return k_cache, sk, v_cache, sv, kd, caxes, scales


def _rotary_arg(t, rotary_cos, rotary_sin, interleaved, positions, rows, D, keep):
    if rotary_cos is None and rotary_sin is None:
        if positions is not None:
            raise TypeError("rotary_positions without rotary_cos and rotary_sin")
        return None
    r = _rotary_struct(t.array(rotary_cos, "rotary_cos"), t.array(rotary_sin, "rotary_sin"), interleaved,
                       t.array(positions, "rotary_positions"), rows, D, keep)
    return ctypes.byref(r)


def kv_cache_write_varlen(k_cache, v_cache, k_new, v_new, cu_seqlens, pos, *, block_table=None,
                          kv_dtype=None, cache_layout=None, rotary_cos=None, rotary_sin=None,
                          rotary_interleaved=False, rotary_positions=None, k_scales=None, v_scales=None):
    """A serving step's new rows into a cache in place (mha_kv_cache_write_varlen):
    rows cu_seqlens[b] .. cu_seqlens[b+1] of k_new [total, Hkv, D] and v_new
    [total, Hkv, Dv] (float32; other float dtypes are cast) become tokens
    pos[b], pos[b] + 1, ... of cache entry b, rounded to the cache's dtype.
    The cache as in kv_cache_write(): contiguous [B, Hkv, capacity, D]
    ("bhtd") or [B, capacity, Hkv, D] ("bthd"), or pools with block_table
    [B, max_blocks]. For a step of attention_varlen over the cache:
    pos[b] = seqused_k[b] − len_q[b]. rotary_cos, rotary_sin [n_positions,
    rotary_dim / 2]: K rotated first (GPT-J pairs with rotary_interleaved),
    row j of sequence b at pos[b] + j or rotary_positions [total]. Writes
    nothing when any check fails (MhaError)."""
    L = _lib.lib()
    t = _Tensors()
    k4, skn, v4, svn, total, Hkv, D, Dv = _packed_rows(t, k_new, v_new)
    cu = _int32_array(t.array(cu_seqlens, "cu_seqlens"), "cu_seqlens")
    if cu.ndim != 1 or cu.size < 2:
        _fail("INVALID_SHAPE", f"cu_seqlens must be [B + 1] with B >= 1, not {cu.shape}")
    B = cu.size - 1
    if int(cu[-1]) != total:
        _fail("INVALID_SHAPE", f"cu_seqlens ends at {int(cu[-1])}; k_new has {total} rows")
    p = _int32_array(t.array(pos, "pos"), "pos")
    if p.ndim == 0:
        p = np.full(B, int(p), np.int32)
    if p.shape != (B,):
        _fail("INVALID_SHAPE", f"pos must be [{B}], not {p.shape}")
    paged = block_table is not None
    k_cache, sk, v_cache, sv, kd, caxes, scales = _cache_of(t, k_cache, v_cache, kv_dtype, cache_layout, paged, Hkv,
                                                            D, Dv, k_scales, v_scales)
    table = _block_table(t.array(block_table, "block_table"), B) if paged else None
    if not paged and k_cache.shape[caxes[0]] != B:
        _fail("INVALID_SHAPE", f"k_cache holds {k_cache.shape[caxes[0]]} entries for {B} sequences")
    keep = []
    rot = _rotary_arg(t, rotary_cos, rotary_sin, rotary_interleaved, rotary_positions, total, D, keep)
    cache = _cache_struct(kd, k_cache, sk, v_cache, sv, caxes, table, scales)
    i32 = ctypes.POINTER(ctypes.c_int32)
    _check(L.mha_kv_cache_write_varlen(ctypes.byref(cache), B, Hkv, D, Dv, cu.ctypes.data_as(i32),
                                       p.ctypes.data_as(i32), _ptr(k4), _strides(skn), _ptr(v4),
                                       _strides(svn), rot))


def kv_cache_write_slots(k_pool, v_pool, k_new, v_new, slot_mapping, *, kv_dtype=None, cache_layout=None,
                         rotary_cos=None, rotary_sin=None, rotary_interleaved=False, rotary_positions=None,
                         k_scales=None, v_scales=None):
    """Rows into paged pools by slot, as vLLM's reshape_and_cache
    (mha_kv_cache_write_slots): row i of k_new [n_tokens, Hkv, D] and v_new
    goes to slot slot_mapping[i] = block · block_size + row of the pools
    ("bhtd" [num_blocks, Hkv, block_size, D] or "bthd" [num_blocks,
    block_size, Hkv, D]); a negative slot is padding. rotary_cos and
    rotary_sin rotate K first, row i at rotary_positions[i] (required: a
    slot does not tell a position). Writes nothing when any check fails."""
    L = _lib.lib()
    t = _Tensors()
    k4, skn, v4, svn, n, Hkv, D, Dv = _packed_rows(t, k_new, v_new)
    slots = _int32_array(t.array(slot_mapping, "slot_mapping"), "slot_mapping")
    if slots.shape != (n,):
        _fail("INVALID_SHAPE", f"slot_mapping must be [{n}] (one per row of k_new), not {slots.shape}")
    k_pool, sk, v_pool, sv, kd, caxes, scales = _cache_of(t, k_pool, v_pool, kv_dtype, cache_layout, True, Hkv, D,
                                                          Dv, k_scales, v_scales)
    keep = []
    rot = _rotary_arg(t, rotary_cos, rotary_sin, rotary_interleaved, rotary_positions, n, D, keep)
    table = np.zeros((1, 1), np.int32)  # not read: slots address the pools
    cache = _cache_struct(kd, k_pool, sk, v_pool, sv, caxes, table, scales)
    i32 = ctypes.POINTER(ctypes.c_int32)
    _check(L.mha_kv_cache_write_slots(ctypes.byref(cache), n, Hkv, D, Dv, slots.ctypes.data_as(i32), _ptr(k4),
                                      _strides(skn), _ptr(v4), _strides(svn), rot))
