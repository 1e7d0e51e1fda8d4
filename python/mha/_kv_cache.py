"""K/V caches kept by a serving engine: attention_paged() (attention over
pools of blocks addressed through a block table, mha_attention_kv_f32) and
kv_cache_write() (float32 rows appended to a contiguous cache or to pools,
rounded to its dtype, mha_kv_cache_write), with the mha_kv_cache struct and
the checks of cache and pool arrays. (attention() reads a contiguous 16-bit
cache itself, in _core.)"""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import (_c_int64, _element_strides, _float32, _input_view, _int32_array, _kv_dtype,
                      _kv_len_array, _ptr, _strides)
from ._core import _LAYOUT_AXES, _attend, _batch_to, _io16_arrays, _options_arrays
from ._rotary import _rotate_rows
from ._tensors import _Tensors


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


def _cache_scales(t, kd, k_scales, v_scales, rows_shape, axes, write=False):
    """An int8 cache's scales (k_scales, v_scales: float32, one per cache row,
    shaped as the cache without its last dimension, read or written in place)
    and their element strides (block or batch, head, row); None for the other
    dtypes, which take none."""
    if kd != "int8":
        if k_scales is not None or v_scales is not None:
            raise TypeError("k_scales and v_scales are for an int8 cache")
        return None
    if k_scales is None or v_scales is None:
        raise TypeError("an int8 cache needs k_scales and v_scales (float32, one per cache row)")
    out = []
    for name, s in (("k_scales", k_scales), ("v_scales", v_scales)):
        s = t.array(s, name, write=write)
        if not isinstance(s, np.ndarray) or s.dtype != np.float32:
            raise TypeError(f"{name} must be a float32 array (read and written in place)")
        if write and not s.flags.writeable:
            raise ValueError(f"{name} is read-only")
        if s.shape != tuple(rows_shape):
            _fail("INVALID_SHAPE", f"{name} has shape {s.shape}, expected {tuple(rows_shape)} (one per cache row)")
        if any(b < 0 or b % 4 for b in s.strides):
            _fail("INVALID_STRIDE", f"{name}: byte strides {s.strides} are not whole non-negative elements")
        out.append(s)
    if out[0].strides != out[1].strides:
        _fail("INVALID_STRIDE", "k_scales and v_scales must have the same strides")
    return out[0], out[1], [out[0].strides[a] // 4 for a in axes]


def _cache_struct(kd, k, sk, v, sv, axes, table, scales=None):
    """The mha_kv_cache of K/V arrays (pools when table is not None); scales:
    an int8 cache's (_cache_scales)."""
    c = _lib.KVCache(_lib.DTYPE_VALUES[kd], _ptr(k), _ptr(v), _strides(sk), _strides(sv))
    if scales is not None:
        c.k_scales, c.v_scales, c.scale_strides = _ptr(scales[0]), _ptr(scales[1]), _strides(scales[2])
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
                    num_threads=0, isa=None, out=None, workspace=None, return_trace=False,
                    k_scales=None, v_scales=None, dtype=None):
    """Attention over a paged K/V cache (mha_attention_kv_f32), as serving engines keep it.

    dtype        None (default): q and out float32. "f16" / "bf16": q and out in
                 that 16-bit type, read and written in place (mha_attention_kv;
                 as attention()'s dtype), bitwise this call on q as float32
                 rounded once to the type; the pools keep their own type.

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
    k_scales, v_scales  an int8 pool's (np.int8) scales, float32, one per
                 row: shaped as the pool without its last dimension
    kv_dtype     None: from the pools' dtype (float32, float16,
                 ml_dtypes.bfloat16, int8); "f16" or "bf16" for uint16 bits; "f32"
    Every other keyword is attention()'s; out is [B,H,Tq,Dv] or [B,Tq,H,Dv],
    and the results come in attention()'s order, (out, weights, lse, trace)
    less the ones not asked for (need_weights, return_lse, return_trace).
    The bits are those of attention() on the same keys gathered into a
    contiguous cache (and of attention() on them widened to float32), for any
    block size, table and thread count. Fill the pools with kv_cache_write().
    Tensors (torch, DLPack, array interface) as in attention(): the pools
    are read in place (torch bfloat16 pools as bf16), torch in → torch out.
    """
    L = _lib.lib()
    axes = _LAYOUT_AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
    paxes = _cache_axes(cache_layout, True)
    t, out_given = _Tensors(), out
    if dtype is not None:
        (q,), out = _io16_arrays(t, dtype, (("q", q),), out)
    else:
        q, out = t.array(q, "q"), t.out(out)
    k, v, kv_dtype = t.kv(k_pool, v_pool, ("k_pool", "v_pool"), kv_dtype)
    k, v = np.asarray(k), np.asarray(v)
    opts = _options_arrays(t, dict(kv_len=kv_len, mask=mask, alibi_slopes=alibi_slopes,
                                   sinks=sinks, weights_mode=weights_mode, workspace=workspace))
    kv_len = opts["kv_len"]
    kd = _kv_dtype((k, v), ("k_pool", "v_pool"), kv_dtype)
    _check_pools(k, v, paxes, "_pool")
    table = _block_table(t.array(block_table, "block_table"))
    B = table.shape[0]
    if dtype is None:
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
    scales = _cache_scales(t, kd, k_scales, v_scales, k.shape[:3], paxes)
    k, sk = _input_view(k, paxes)
    v, sv = _input_view(v, paxes)
    cache = _cache_struct(kd, k, sk, v, sv, paxes, table, scales)
    return t.result(_attend(L, q, sq, None, cache, B, H, Hkv, Tq, Tk, D, Dv, layout, axes,
                            causal=causal, scale=scale, align=align, window=window,
                            softcap=softcap, need_weights=need_weights, return_lse=return_lse,
                            return_trace=return_trace, num_threads=num_threads, isa=isa, out=out,
                            io_dtype=dtype, **opts), out_given)


def _written_view(a, axes, name):
    """Element strides of a cache array that mha writes in place (never copied)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or a CPU tensor (it is written in "
                        f"place), not {type(a).__name__}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if a.ndim != 4:
        _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 4")
    st = _element_strides(a, axes, False)
    if st is None:
        _fail("INVALID_STRIDE", f"{name}: byte strides {a.strides} cannot be written in place (a "
                                f"contiguous last dimension, strides >= 0 and whole elements)")
    return st


def _written_cache(k_cache, v_cache, kv_dtype, caxes, Hkv, D, Dv, rows):
    """The checks of a cache a writer fills in place (k_cache, v_cache as
    _Tensors.kv gave them): (k element strides, v's, the mha_dtype name).
    rows names the new rows in the shape error."""
    sk = _written_view(k_cache, caxes, "k_cache")
    sv = _written_view(v_cache, caxes, "v_cache")
    kd = _kv_dtype((k_cache, v_cache), ("k_cache", "v_cache"), kv_dtype)
    _check_pools(k_cache, v_cache, caxes, "_cache")
    if k_cache.shape[caxes[1]] != Hkv or k_cache.shape[3] != D or v_cache.shape[3] != Dv:
        _fail("INVALID_SHAPE", f"k_cache {k_cache.shape} / v_cache {v_cache.shape} do not hold "
                               f"rows of {rows}")
    return sk, sv, kd


def kv_cache_write(k_cache, v_cache, k_new, v_new, pos, *, block_table=None, kv_dtype=None,
                   cache_layout=None, layout="bhtd", rotary_cos=None, rotary_sin=None,
                   rotary_interleaved=False, k_scales=None, v_scales=None):
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
                 ml_dtypes.bfloat16, int8); "f16" or "bf16" for uint16 bits
    k_scales, v_scales  an int8 cache's scales (float32, one per row: the
                 cache's shape without its last dimension), written with it;
                 each row quantized as mha.h's "int8 caches" says
    Tensors: k_cache and v_cache may be torch tensors (bfloat16 ones too),
    DLPack or array-interface objects: written in place through a NumPy view
    of their memory (never a copy; one that cannot be viewed is refused).
    rotary_cos, rotary_sin [n_positions, rotary_dim / 2]: K rows rotated
    first (V as is), row t of entry b at position pos[b] + t, GPT-NeoX pairs
    or GPT-J with rotary_interleaved: the bits of mha_kv_cache_write_varlen
    with a rotary (mha.h's formula), to pair with attention_varlen's.
    Writes nothing when any check fails (MhaError).
    """
    L = _lib.lib()
    axes = _LAYOUT_AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
    paged = block_table is not None
    caxes = _cache_axes(cache_layout, paged)
    t = _Tensors()
    k_cache, v_cache, kv_dtype = t.kv(k_cache, v_cache, ("k_cache", "v_cache"), kv_dtype,
                                      write=True)
    kn, vn = _float32(t.array(k_new, "k_new"), "k_new"), _float32(t.array(v_new, "v_new"), "v_new")
    block_table, pos = t.array(block_table, "block_table"), t.array(pos, "pos")
    for name, a in (("k_new", kn), ("v_new", vn)):
        if a.ndim != 4:
            _fail("INVALID_SHAPE", f"{name} has {a.ndim} dimensions, expected 4 ({layout})")
    ib, ih, it = axes
    B, Hkv, T, D = kn.shape[ib], kn.shape[ih], kn.shape[it], kn.shape[3]
    Dv = vn.shape[3]
    if (vn.shape[ib], vn.shape[ih], vn.shape[it]) != (B, Hkv, T):
        _fail("INVALID_SHAPE", f"v_new {vn.shape} and k_new {kn.shape} differ in batch, heads "
                               f"or rows")
    sk, sv, kd = _written_cache(k_cache, v_cache, kv_dtype, caxes, Hkv, D, Dv,
                                f"k_new {kn.shape} / v_new {vn.shape}")
    table = None
    if paged:
        table = _block_table(block_table, B)
    elif k_cache.shape[caxes[0]] != B:
        _fail("INVALID_SHAPE", f"k_cache holds {k_cache.shape[caxes[0]]} batch entries, k_new {B}")
    p = _kv_len_array(pos, B, "pos", "position")
    if rotary_cos is not None or rotary_sin is not None:
        if rotary_cos is None or rotary_sin is None:
            raise TypeError("rotary_cos and rotary_sin come together")
        at = p.astype(np.int64)[:, None] + np.arange(T)[None, :]  # [B, T]: token pos[b] + t
        kn = _rotate_rows(kn, axes, t.array(rotary_cos, "rotary_cos"), t.array(rotary_sin, "rotary_sin"),
                          rotary_interleaved, at, [])
    kn, skn = _input_view(kn, axes)
    vn, svn = _input_view(vn, axes)
    scales = _cache_scales(t, kd, k_scales, v_scales, k_cache.shape[:3], caxes, write=True)
    cache = _cache_struct(kd, k_cache, sk, v_cache, sv, caxes, table, scales)
    _check(L.mha_kv_cache_write(ctypes.byref(cache), B, Hkv, T, D, Dv, _ptr(p), _ptr(kn),
                                _strides(skn), _ptr(vn), _strides(svn)))
