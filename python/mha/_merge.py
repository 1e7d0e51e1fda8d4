"""merge(): the (out, lse) of attention over disjoint key ranges of the same
queries combined into the result over their union (mha_merge_f32)."""
import ctypes

import numpy as np

from . import _lib
from ._errors import _check, _fail
from ._coerce import _F32, _check_out_array, _float32, _ptr
from ._tensors import _Tensors


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
    Returns (out, lse) with lse of shape [...], float32. Tensors (torch,
    DLPack, array interface) as in attention(): torch in → torch out, and an
    out= that is outs[0]'s memory merges in place.
    """
    L = _lib.lib()
    t, out_given = _Tensors(), out
    outs = [t.array(o, f"outs[{p}]") for p, o in enumerate(outs)]
    lses = [t.array(l, f"lses[{p}]") for p, l in enumerate(lses)]
    out = t.out(out)
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
    return t.result((out, lse), out_given)
