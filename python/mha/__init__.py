"""mha — multi-head attention kernels for CPUs, from Python.

A pure-Python front (ctypes) over libmha.so, no compiled code of its own.
Tensors in, tensors out: NumPy arrays, PyTorch CPU tensors, anything with
__dlpack__ or the array interface is read in place, and results come back as
the caller's type (torch tensors for torch inputs, without a copy; NumPy
arrays otherwise). mha.torch (imported on its own) registers the calls as
torch.library custom ops and a drop-in scaled_dot_product_attention. The
library is found (at the first call) at:

  1. $MHA_LIBRARY, a path to libmha.so (an error if it is set but missing);
  2. the wheel's own copy, mha/lib/libmha.so.0.<minor> (pip install ./python);
  3. a libmha.so (or libmha.so.0.<minor>, libmha.so.0) next to this package;
  4. <repo>/build/libmha.so when the package is used from a checkout;
  5. ctypes.util.find_library("mha") (an installed libmha).

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
  - attention_varlen(q, k_cache, v_cache, cu_seqlens_q, seqused_k=...,
    block_table=None): a serving step in one call, packed query rows (decode
    tokens and prefill chunks) over a contiguous cache or pools, sequence b
    reading the first seqused_k[b] tokens of entry b; rotary_cos/rotary_sin
    rotate Q on the way in (kv_cache_write takes the same for K);
  - kv_cache_write_varlen(k_cache, v_cache, k_new, v_new, cu_seqlens, pos)
    and kv_cache_write_slots(k_pool, v_pool, k_new, v_new, slot_mapping):
    the serving writers (a step's packed rows per sequence, or by slot);
  - rotary_table(dim, n_positions, theta): the cos/sin table of rotary
    embeddings (linear, NTK or YaRN scaling through its arguments).
Caches and pools are never copied when mha can read them in place, and
kv_cache_write refuses (MhaError INVALID_STRIDE) a cache it cannot write in
place.

Traces: return_trace=True on attention(), attention_paged(),
attention_varlen() and Layer.forward also returns the call's work units as a
NumPy structured array of TRACE_DTYPE (start_ns, end_ns, worker, stage,
batch, head, heads, q_begin, q_end, k_begin, k_end; mha.h, "Threads"), last
in the result tuple; TRACE_STAGES names the stage values ({1: "pack_kt",
2: "attention", 3: "weights_mean", 4: "gemm"}). The results' bits do not
change.

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

from ._lib import LibraryNotFoundError  # noqa: F401 (public)
from ._errors import MhaError
from ._process import ISAS, library_path, isa_available, get_isa, set_isa
from ._core import attention
from ._kv_cache import attention_paged, kv_cache_write
from ._kv_write import kv_cache_write_slots, kv_cache_write_varlen
from ._rotary import rotary_table
from ._varlen import attention_varlen
from ._merge import merge
from ._layer import Layer
from ._trace import TRACE_DTYPE, TRACE_STAGES

from . import _lib  # the loader (loads no library at import)

__version__ = "0.5.0"  # the C library's MHA_VERSION_MAJOR.MINOR.PATCH (include/mha.h)

__all__ = ["attention_varlen", "MhaError", "LibraryNotFoundError", "version", "library_path", "ISAS",
           "isa_available", "get_isa", "set_isa", "attention", "attention_paged",
           "kv_cache_write", "merge", "Layer", "TRACE_DTYPE", "TRACE_STAGES", "rotary_table",
           "kv_cache_write_varlen", "kv_cache_write_slots"]

# The public names defined in the private modules, as they were before the
# split: mha.MhaError, mha.Layer, mha.attention (reprs, tracebacks, help()).
for _obj in (MhaError, library_path, isa_available, get_isa, set_isa, attention,
             attention_paged, kv_cache_write, attention_varlen, merge, Layer, rotary_table,
             kv_cache_write_varlen, kv_cache_write_slots):
    _obj.__module__ = __name__
del _obj

# Nothing here uses ctypes, threading, operator, weakref or np any more: they
# stay in the namespace (mha.np, ...) as they were before the split.
_KEPT_MODULES = (ctypes, threading, operator, weakref, np)


def version():
    """The loaded libmha's version, "MAJOR.MINOR.PATCH" (mha_version(); loads
    the library). The package's own is __version__."""
    v = _lib.lib().mha_version()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
