"""return_trace=True: a call's trace of its work units (mha.h, "Threads":
mha_trace) handed back as a NumPy structured array of TRACE_DTYPE, one row
per unit the call ran.

The C call writes at most `capacity` events and counts the rest (total).
Python cannot know a call's unit count before the call (it depends on the
kernels' tiles and the thread count), so the buffer is sized by a generous
guess from the shape (never touched beyond what the call writes: np.empty),
and a call that ran more units than that is run once more with a buffer of
exactly its total. Rerunning is harmless: every output (out, weights, lse)
is written again with the same bits (mha's results do not depend on the
schedule), and inputs are never written by these calls."""
import ctypes
import os

import numpy as np

from . import _lib

# stage value -> name (enum mha_trace_stage)
TRACE_STAGES = {v: name for name, v in _lib.TRACE_STAGE_VALUES.items()}

# The events as the C struct lays them out (the ctypes mirror, checked
# against the compiler by test_abi), and as they are returned: the same
# fields, packed, without `reserved`.
_EVENT_DTYPE = np.dtype(_lib.TraceEvent)
TRACE_DTYPE = np.dtype([(name, np.dtype(ctype)) for name, ctype in _lib.TraceEvent._fields_
                        if name != "reserved"])

# The first buffer's size is at most this many events (56 MiB of address
# space, only the written part ever touched); a call with more units reruns.
_GUESS_MAX = 1 << 20


def _ceil(a, b):
    return -(-int(a) // int(b))


def capacity_guess(B, H, Tq, Tk, num_threads, gemms=()):
    """Events enough for the call's units in all but extreme cases: the
    attention items (query blocks of >= 8 rows per head), the Kᵀ packing
    and the decode key ranges (>= 16 keys each per head), a few hundred
    units per worker for the small-call splits, and per (M, N) GEMM of the
    layer its tiles of >= 8 rows by 64 columns. At most _GUESS_MAX."""
    workers = int(num_threads) if int(num_threads) > 0 else (os.cpu_count() or 1)
    workers = max(workers, 1)
    n = 1024 + 256 * workers + B * H * (_ceil(Tq, 8) + _ceil(Tk, 16))
    for M, N in gemms:
        n += 256 * workers + _ceil(M, 8) * _ceil(N, 64)
    return int(min(n, _GUESS_MAX))


def traced_call(call, owner, capacity):
    """Runs call() (which raises MhaError on failure) with owner.trace (an
    AttentionDesc or LayerArgs) pointing at a trace of `capacity` events;
    when the call ran more units than that, runs it once more with a buffer
    of their total. Returns the events written, a TRACE_DTYPE array."""
    for attempt in range(2):
        buf = np.empty(max(capacity, 1), _EVENT_DTYPE)
        tr = _lib.Trace(buf.ctypes.data, capacity, 0, 0)
        owner.trace = ctypes.addressof(tr)
        try:
            call()
        finally:
            owner.trace = None
        if tr.total <= tr.count:
            break
        if attempt == 1:
            raise RuntimeError(f"mha: the rerun of a traced call ran {tr.total} units, more than "
                               f"the {capacity} of its first run (the unit count changed)")
        capacity = int(tr.total)
    events = np.empty(tr.count, TRACE_DTYPE)
    for name in TRACE_DTYPE.names:
        events[name] = buf[name][:tr.count]
    return events
