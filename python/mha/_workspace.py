"""The workspace= argument of every call (_workspace): None (mha allocates
per call), "auto" (one buffer per thread, kept by this module and grown to
what mha_*_workspace_size reports) or a caller's writable C-contiguous
array."""
import ctypes
import threading

import numpy as np

from ._errors import _check


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
