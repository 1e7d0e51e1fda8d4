"""mha.torch: libmha as PyTorch operators (imports torch; `import mha` does not).

Custom ops (torch.library.custom_op, namespace "mha", with fake kernels so
that torch.compile traces them, fullgraph=True included; CPU tensors; no
autograd: a backward through them raises PyTorch's "no autograd formula"):

  torch.ops.mha.attention          attention(q, k, v, mask, causal, scale, ...)
  torch.ops.mha.attention_paged    attention over a paged K/V cache
  torch.ops.mha.attention_varlen   a packed batch of variable-length sequences
  torch.ops.mha.kv_cache_write     rows appended to a cache in place (mutates
                                   k_cache and v_cache)

The same objects are this module's attention, attention_paged,
attention_varlen and kv_cache_write. Their arguments are those of
mha.attention() & co. with two changes a schema needs: align is a name
("bottom_right", "top_left", "kv_end") and an int offset goes in offset=
(which overrides align); window is None or [left, right]. Tensor arguments are
read in place (float32; float16 / bfloat16 K/V caches), results are new
float32 tensors.

scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
is_causal=False, scale=None, enable_gqa=False) is a drop-in for
torch.nn.functional.scaled_dot_product_attention where it applies: CPU
float32 query, key and value of 3 or more dimensions [..., H, L, E] (value
[..., Hkv, S, Ev]); dropout_p == 0; a boolean (True: takes part) or float
attn_mask broadcastable to [..., H, L, S]; is_causal top-left, as PyTorch
defines it (mha's align="top_left"); enable_gqa (H a multiple of Hkv, query
head h reads K/V head h // (H // Hkv), as PyTorch's repeat_interleave); a
batch of 1 or a single K/V head broadcasts. A row that the mask leaves
without keys gives zeros (as PyTorch's math backend). Anything else raises
NotImplementedError naming the argument; what PyTorch itself refuses (a mask
with is_causal, a head count that does not divide) raises its RuntimeError.
"""
from typing import List, Optional

import torch
from torch import Tensor

from ._core import attention as _attention
from ._kv_cache import attention_paged as _attention_paged, kv_cache_write as _kv_cache_write
from ._varlen import attention_varlen as _attention_varlen

if not hasattr(torch.library, "custom_op"):
    raise ImportError(f"mha.torch needs torch >= 2.4 (torch.library.custom_op); this is torch "
                      f"{torch.__version__}")

__all__ = ["attention", "attention_paged", "attention_varlen", "kv_cache_write",
           "scaled_dot_product_attention"]

_AXES = {"bhtd": (0, 1, 2), "bthd": (0, 2, 1)}


def _align(align, offset):
    return align if offset is None else int(offset)


def _window(window):
    return None if window is None else tuple(window)


def _axes(layout):
    axes = _AXES.get(layout)
    if axes is None:
        raise ValueError(f"layout must be 'bhtd' or 'bthd', not {layout!r}")
    return axes


def _out_shape(layout, B, H, Tq, Dv):
    return (B, H, Tq, Dv) if layout == "bhtd" else (B, Tq, H, Dv)


# ---------------------------------------------------------------------------- custom ops


@torch.library.custom_op("mha::attention", mutates_args=())
def attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None,
              causal: bool = False, scale: Optional[float] = None, align: str = "bottom_right",
              offset: Optional[int] = None, layout: str = "bhtd", kv_len: Optional[Tensor] = None,
              window: Optional[List[int]] = None, alibi_slopes: Optional[Tensor] = None,
              softcap: Optional[float] = None, sinks: Optional[Tensor] = None,
              kv_dtype: Optional[str] = None, num_threads: int = 0) -> Tensor:
    """mha.attention() as a torch op: out [B,H,Tq,Dv] ("bhtd") or [B,Tq,H,Dv]."""
    return _attention(q, k, v, layout=layout, causal=causal, kv_len=kv_len, mask=mask,
                      scale=scale, align=_align(align, offset), window=_window(window),
                      alibi_slopes=alibi_slopes, softcap=softcap, sinks=sinks,
                      kv_dtype=kv_dtype, num_threads=num_threads)


@attention.register_fake
def _attention_fake(q, k, v, mask=None, causal=False, scale=None, align="bottom_right",
                    offset=None, layout="bhtd", kv_len=None, window=None, alibi_slopes=None,
                    softcap=None, sinks=None, kv_dtype=None, num_threads=0):
    ib, ih, it = _axes(layout)
    B = torch.sym_max(q.shape[ib], torch.sym_max(k.shape[ib], v.shape[ib]))
    return q.new_empty(_out_shape(layout, B, q.shape[ih], q.shape[it], v.shape[3]),
                       dtype=torch.float32)


@torch.library.custom_op("mha::attention_paged", mutates_args=())
def attention_paged(q: Tensor, k_pool: Tensor, v_pool: Tensor, block_table: Tensor,
                    kv_len: Optional[Tensor] = None, Tk: Optional[int] = None,
                    kv_dtype: Optional[str] = None, cache_layout: str = "bhtd",
                    layout: str = "bhtd", causal: bool = False, mask: Optional[Tensor] = None,
                    scale: Optional[float] = None, align: str = "bottom_right",
                    offset: Optional[int] = None, window: Optional[List[int]] = None,
                    alibi_slopes: Optional[Tensor] = None, softcap: Optional[float] = None,
                    sinks: Optional[Tensor] = None, num_threads: int = 0) -> Tensor:
    """mha.attention_paged() as a torch op: out [B,H,Tq,Dv] with B = block_table's rows."""
    return _attention_paged(q, k_pool, v_pool, block_table, kv_len=kv_len, Tk=Tk,
                            kv_dtype=kv_dtype, cache_layout=cache_layout, layout=layout,
                            causal=causal, mask=mask, scale=scale, align=_align(align, offset),
                            window=_window(window), alibi_slopes=alibi_slopes, softcap=softcap,
                            sinks=sinks, num_threads=num_threads)


@attention_paged.register_fake
def _attention_paged_fake(q, k_pool, v_pool, block_table, kv_len=None, Tk=None, kv_dtype=None,
                          cache_layout="bhtd", layout="bhtd", causal=False, mask=None,
                          scale=None, align="bottom_right", offset=None, window=None,
                          alibi_slopes=None, softcap=None, sinks=None, num_threads=0):
    _, ih, it = _axes(layout)
    return q.new_empty(_out_shape(layout, block_table.shape[0], q.shape[ih], q.shape[it],
                                  v_pool.shape[3]), dtype=torch.float32)


@torch.library.custom_op("mha::attention_varlen", mutates_args=())
def attention_varlen(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor,
                     max_seqlen_q: Optional[int] = None, max_seqlen_k: Optional[int] = None,
                     causal: bool = False, scale: Optional[float] = None,
                     align: str = "bottom_right", offset: Optional[int] = None,
                     window: Optional[List[int]] = None, alibi_slopes: Optional[Tensor] = None,
                     softcap: Optional[float] = None, sinks: Optional[Tensor] = None,
                     num_threads: int = 0) -> Tensor:
    """mha.attention_varlen() as a torch op: out [total_q, H, Dv]."""
    return _attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                             max_seqlen_k=max_seqlen_k, causal=causal, scale=scale,
                             align=_align(align, offset), window=_window(window),
                             alibi_slopes=alibi_slopes, softcap=softcap, sinks=sinks,
                             num_threads=num_threads)


@attention_varlen.register_fake
def _attention_varlen_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None,
                           max_seqlen_k=None, causal=False, scale=None, align="bottom_right",
                           offset=None, window=None, alibi_slopes=None, softcap=None, sinks=None,
                           num_threads=0):
    return q.new_empty((q.shape[0], q.shape[1], v.shape[2]), dtype=torch.float32)


@torch.library.custom_op("mha::kv_cache_write", mutates_args=("k_cache", "v_cache"))
def kv_cache_write(k_cache: Tensor, v_cache: Tensor, k_new: Tensor, v_new: Tensor, pos: Tensor,
                   block_table: Optional[Tensor] = None, kv_dtype: Optional[str] = None,
                   cache_layout: Optional[str] = None, layout: str = "bhtd") -> None:
    """mha.kv_cache_write() as a torch op: k_cache and v_cache written in place
    (pos: a tensor of B positions, or of one for all)."""
    if pos.numel() == 1:
        pos = pos.reshape(())  # one position for every batch entry
    _kv_cache_write(k_cache, v_cache, k_new, v_new, pos, block_table=block_table,
                    kv_dtype=kv_dtype, cache_layout=cache_layout, layout=layout)


@kv_cache_write.register_fake
def _kv_cache_write_fake(k_cache, v_cache, k_new, v_new, pos, block_table=None, kv_dtype=None,
                         cache_layout=None, layout="bhtd"):
    return None


# ---------------------------------------------------------------------------- SDPA


def _unsupported(what):
    raise NotImplementedError(f"mha.torch.scaled_dot_product_attention: {what} (use "
                              f"torch.nn.functional.scaled_dot_product_attention)")


def _sdpa_mask(attn_mask, query):
    """attn_mask as an additive float32 mask (a bool one: 0 where True, -inf elsewhere)."""
    if not isinstance(attn_mask, torch.Tensor):
        _unsupported(f"attn_mask of type {type(attn_mask).__name__} (a tensor or None)")
    if attn_mask.device.type != "cpu":
        _unsupported(f"attn_mask on device {attn_mask.device} (CPU only)")
    if attn_mask.dim() > query.dim():
        _unsupported(f"attn_mask with {attn_mask.dim()} dimensions, more than query's "
                     f"{query.dim()}")
    if attn_mask.dtype == torch.bool:
        return torch.where(attn_mask, 0.0, float("-inf"))
    if attn_mask.dtype != torch.float32:
        raise RuntimeError(f"Expected attn_mask dtype to be bool or float or to match query "
                           f"dtype, but got attn_mask.dtype: {attn_mask.dtype} and "
                           f"query.dtype: {query.dtype} instead.")
    return attn_mask


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention on mha's kernels (see
    the module's docstring for what it covers; NotImplementedError otherwise)."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            _unsupported(f"{name} of type {type(t).__name__} (a torch.Tensor)")
        if t.is_nested:
            _unsupported(f"{name} is a nested tensor")
        if t.device.type != "cpu":
            _unsupported(f"{name} on device {t.device} (CPU only)")
        if t.dtype != torch.float32:
            _unsupported(f"{name} of dtype {t.dtype} (torch.float32 only)")
        if t.dim() != query.dim() or t.dim() < 3:
            _unsupported(f"{name} with {t.dim()} dimensions (query, key and value of the same "
                         f"number of dimensions, at least 3: [..., heads, length, width])")
    if dropout_p != 0.0:
        _unsupported(f"dropout_p={dropout_p} (only 0.0)")
    if scale is not None and scale == 0.0:
        _unsupported("scale=0.0 (mha reads a scale of 0 as the default 1/sqrt(E))")
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set "
                           "when is_causal=True")
    H, Hkv = query.shape[-3], key.shape[-3]
    if enable_gqa:
        if value.shape[-3] != Hkv or H % Hkv != 0:
            raise RuntimeError("Number of heads in key and value must divide the number of "
                               "heads in query")
    elif Hkv != H and Hkv != 1:
        raise RuntimeError(f"The size of tensor a ({H}) must match the size of tensor b "
                           f"({Hkv}) at non-singleton dimension {query.dim() - 3}")
    mask = None if attn_mask is None else _sdpa_mask(attn_mask, query)
    lead = query.shape[:-3]
    if query.dim() == 3:
        q, k, v = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    elif query.dim() == 4:
        q, k, v = query, key, value
    else:
        if key.shape[:-3] != lead or value.shape[:-3] != lead:
            _unsupported(f"leading dimensions that differ (query {tuple(lead)}, key "
                         f"{tuple(key.shape[:-3])}, value {tuple(value.shape[:-3])}) with more "
                         f"than one batch dimension")
        if mask is not None and mask.dim() > 3:
            _unsupported(f"attn_mask with {mask.dim()} dimensions and more than one batch "
                         f"dimension")
        q, k, v = (t.reshape((-1,) + tuple(t.shape[-3:])) for t in (query, key, value))
    out = attention(q, k, v, mask, causal=bool(is_causal),
                    scale=None if scale is None else float(scale), align="top_left")
    if query.dim() == 4:
        return out
    return out.reshape(tuple(lead) + tuple(out.shape[-3:]))
