"""Tensors in, tensors out, with NumPy only: every call family reads any CPU
object with __dlpack__ (through np.from_dlpack) or with the array interface
(np.asarray) in place, and writes out= and K/V caches given that way in
place.

Held here:
  - bits: results bitwise those of the same call on the plain NumPy arrays;
  - no copy: a float32 (or 16-bit cache) input with a contiguous last
    dimension reaches the C call at its own address (the import and the
    stride handling copy nothing), strided views included;
  - out= and caches: written in place through the object's memory; the
    out= object itself is returned;
  - a tensor on another device is refused (ValueError naming the device)
    before anything is read; read-only memory is refused for out= and caches;
  - results are NumPy arrays for every non-torch input, and `import mha`
    (with such calls) never imports torch.
"""
import subprocess
import sys

import numpy as np
import pytest

import mha
from mha import _core, _kv_cache, _tensors
from conftest import nan_like, rand

needs_dlpack = pytest.mark.skipif(not hasattr(np, "from_dlpack"),
                                  reason="np.from_dlpack needs NumPy >= 1.22")


class DL:
    """Only the DLPack protocol (as a JAX or CuPy CPU array offers it)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class LegacyDL(DL):
    """The DLPack protocol before 2023 (no max_version, copy, dl_device)."""

    def __dlpack__(self, stream=None):
        return self._a.__dlpack__()


class AI:
    """Only the array interface."""

    def __init__(self, a):
        self._a = a

    @property
    def __array_interface__(self):
        return self._a.__array_interface__


class OnDevice:
    """A DLPack object on a GPU: its memory must never be asked for."""

    def __init__(self, kind=2, index=1):
        self.device = (kind, index)

    def __dlpack__(self, **kw):
        raise AssertionError("__dlpack__ called on a non-CPU tensor")

    def __dlpack_device__(self):
        return self.device


WRAPS = [pytest.param(DL, id="dlpack", marks=needs_dlpack),
         pytest.param(LegacyDL, id="legacy_dlpack", marks=needs_dlpack),
         pytest.param(AI, id="array_interface")]
# what NumPy imports writable (the legacy DLPack protocol cannot say so: read-only)
WRITE_WRAPS = [w for w in WRAPS if w.id != "legacy_dlpack"]


def qkv(rng, B=2, H=4, Hkv=2, Tq=5, Tk=9, D=16, Dv=8):
    return (rand(rng, (B, H, Tq, D)), rand(rng, (B, Hkv, Tk, D)), rand(rng, (B, Hkv, Tk, Dv)))


@pytest.fixture
def seen(monkeypatch):
    """The data pointers of the arrays attention() and attention_paged() pass to mha."""
    ptrs = []

    def spy(a, axes, allow_row0=False):
        a, st = _core_input_view(a, axes, allow_row0)
        ptrs.append(a.ctypes.data)
        return a, st
    _core_input_view = _core._input_view
    monkeypatch.setattr(_core, "_input_view", spy)
    monkeypatch.setattr(_kv_cache, "_input_view", spy)
    return ptrs


# ---------------------------------------------------------------------------- the import


@pytest.mark.parametrize("wrap", WRAPS)
def test_import_is_a_view(rng, wrap):
    base = rand(rng, (2, 7, 3, 16))
    for a in (base, base[:, 1:6], base.transpose(0, 2, 1, 3), base[..., :8]):
        t = _tensors._Tensors()
        got = t.array(wrap(a), "q")
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        assert got.ctypes.data == a.ctypes.data and got.strides == a.strides
        assert np.shares_memory(got, base) and not t.torch
    # other values pass through
    t = _tensors._Tensors()
    assert t.array(None, "x") is None and t.array([1, 2], "x") == [1, 2] and t.array(3, "x") == 3
    assert t.array(base, "x") is base


@pytest.mark.parametrize("wrap", WRAPS)
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_attention_bitwise_and_in_place(rng, seen, wrap, layout):
    q, k, v = qkv(rng)
    if layout == "bthd":  # [B,T,H,D] views of bigger buffers: strided, read in place
        q, k, v = (np.ascontiguousarray(a.transpose(0, 2, 1, 3)) for a in (q, k, v))
        qb = nan_like((2, 5, 6, 16))  # q's heads 1..4 of 6, k's rows 3..11 of 18
        qb[:, :, 1:5] = q
        q, k = qb[:, :, 1:5], np.concatenate([k, k], axis=1)[:, 3:12]
    kl = np.array([9, 4], np.int32)
    mask = rand(rng, (1, 1, 5, 9))
    kw = dict(layout=layout, causal=True, mask=mask, return_lse=True)
    want, want_lse = mha.attention(q, k, v, kv_len=kl, **kw)
    del seen[:]
    got, lse = mha.attention(wrap(q), wrap(k), wrap(v), kv_len=wrap(kl),
                             **dict(kw, mask=wrap(mask)))
    assert seen == [q.ctypes.data, k.ctypes.data, v.ctypes.data]  # no copy
    assert type(got) is np.ndarray and type(lse) is np.ndarray
    assert np.array_equal(got, want) and np.array_equal(lse, want_lse)


@pytest.mark.parametrize("wrap", WRITE_WRAPS)
def test_attention_out_is_written_in_place(rng, wrap):
    q, k, v = qkv(rng)
    want = mha.attention(q, k, v)
    buf = nan_like((2, 4, 5, 8))
    o = wrap(buf)
    got = mha.attention(wrap(q), wrap(k), wrap(v), out=o)
    assert got is o and np.array_equal(buf, want)
    # a strided out (a view of a bigger buffer), with weights
    big = nan_like((2, 4, 5, 16))
    got, w = mha.attention(wrap(q), wrap(k), wrap(v), out=wrap(big[..., 4:12]), need_weights=True)
    assert np.array_equal(big[..., 4:12], want) and np.isnan(big[..., :4]).all()
    assert type(w) is np.ndarray and np.array_equal(w, mha.attention(q, k, v, need_weights=True)[1])


@pytest.mark.parametrize("wrap", WRAPS)
def test_cast_and_16_bit(rng, seen, wrap):
    q, k, v = qkv(rng)
    # float64 is cast (a copy, as for NumPy input)
    want = mha.attention(q.astype(np.float64), k, v)
    assert np.array_equal(mha.attention(wrap(q.astype(np.float64)), wrap(k), wrap(v)), want)
    # a float16 cache is read in place
    k16, v16 = k.astype(np.float16), v.astype(np.float16)
    want = mha.attention(q, k16, v16)
    del seen[:]
    assert np.array_equal(mha.attention(wrap(q), wrap(k16), wrap(v16)), want)
    assert seen == [q.ctypes.data, k16.ctypes.data, v16.ctypes.data]
    bits_k, bits_v = k16.view(np.uint16), v16.view(np.uint16)
    got = mha.attention(wrap(q), wrap(bits_k), wrap(bits_v), kv_dtype="f16")
    assert np.array_equal(got, want)


# ---------------------------------------------------------------------------- K/V caches


def paged(rng, dtype=np.float16, B=2, Hkv=2, D=16, bs=16, nblocks=6):
    kp = np.zeros((nblocks, Hkv, bs, D), dtype)
    vp = np.zeros((nblocks, Hkv, bs, D), dtype)
    table = np.array([[4, 1, 0], [2, 5, 3]], np.int32)
    return kp, vp, table


@pytest.mark.parametrize("wrap", WRITE_WRAPS)
def test_kv_cache_write_in_place(rng, wrap):
    B, Hkv, T, D = 2, 2, 20, 16
    kn, vn = rand(rng, (B, Hkv, T, D)), rand(rng, (B, Hkv, T, D))
    pos = np.array([3, 11], np.int32)
    # a contiguous float16 cache, and a float32 one in the bthd layout
    for dtype, cl in ((np.float16, "bhtd"), (np.float32, "bthd")):
        shape = (B, Hkv, 40, D) if cl == "bhtd" else (B, 40, Hkv, D)
        kc, vc = np.zeros(shape, dtype), np.zeros(shape, dtype)
        want_k, want_v = kc.copy(), vc.copy()
        mha.kv_cache_write(want_k, want_v, kn, vn, pos, cache_layout=cl)
        assert mha.kv_cache_write(wrap(kc), wrap(vc), wrap(kn), wrap(vn), wrap(pos),
                                  cache_layout=cl) is None
        assert np.array_equal(kc, want_k) and np.array_equal(vc, want_v) and kc.any()
    # pools, through a wrapped block table
    kp, vp, table = paged(rng)
    wk, wv = kp.copy(), vp.copy()
    mha.kv_cache_write(wk, wv, kn, vn, pos, block_table=table)
    mha.kv_cache_write(wrap(kp), wrap(vp), wrap(kn), wrap(vn), pos, block_table=wrap(table))
    assert np.array_equal(kp, wk) and np.array_equal(vp, wv) and kp.any()


@pytest.mark.parametrize("wrap", WRITE_WRAPS)
def test_attention_paged(rng, seen, wrap):
    kp, vp, table = paged(rng)
    kn, vn = rand(rng, (2, 2, 40, 16)), rand(rng, (2, 2, 40, 16))
    mha.kv_cache_write(kp, vp, kn, vn, 0, block_table=table)
    q = rand(rng, (2, 4, 3, 16))
    lens = np.array([40, 29], np.int32)
    want, wl = mha.attention_paged(q, kp, vp, table, kv_len=lens, causal=True, align="kv_end",
                                   return_lse=True)
    del seen[:]
    out = nan_like(want.shape)
    got, lse = mha.attention_paged(wrap(q), wrap(kp), wrap(vp), wrap(table), kv_len=wrap(lens),
                                   causal=True, align="kv_end", return_lse=True, out=wrap(out))
    assert seen == [q.ctypes.data, kp.ctypes.data, vp.ctypes.data]
    assert np.array_equal(out, want) and np.array_equal(lse, wl) and type(lse) is np.ndarray


def test_out_and_cache_must_be_writable(rng):
    q, k, v = qkv(rng, B=1, H=1, Hkv=1, Tq=2, Tk=4, D=8, Dv=8)
    kc = np.zeros((1, 1, 4, 8), np.float16)
    ro = kc.copy()
    ro.flags.writeable = False
    ro_out = np.zeros((1, 1, 2, 8), np.float32)
    ro_out.flags.writeable = False
    wraps = [AI] + ([DL] if hasattr(np, "from_dlpack") else [])
    for wrap in wraps:
        # NumPy >= 2.1 imports read-only memory as such; older NumPy refuses to export it
        with pytest.raises((ValueError, TypeError), match="read-only|DLPack"):
            mha.kv_cache_write(wrap(ro), wrap(kc), k, v, 0)
        with pytest.raises((ValueError, TypeError), match="read-only|DLPack"):
            mha.attention(q, k, v, out=wrap(ro_out))
    assert not kc.any()


@needs_dlpack
def test_legacy_dlpack_is_read_in_place_but_not_written(rng, seen):
    q, k, v = qkv(rng)
    want = mha.attention(q, k, v)
    del seen[:]
    assert np.array_equal(mha.attention(LegacyDL(q), LegacyDL(k), LegacyDL(v)), want)
    assert seen == [q.ctypes.data, k.ctypes.data, v.ctypes.data]
    out = nan_like(want.shape)
    with pytest.raises(ValueError, match="out is read-only: .*legacy DLPack protocol"):
        mha.attention(q, k, v, out=LegacyDL(out))
    kc = np.zeros((2, 2, 9, 16), np.float32)
    with pytest.raises(ValueError, match="k_cache is read-only"):
        mha.kv_cache_write(LegacyDL(kc), kc.copy(), k, v, 0)
    assert np.isnan(out).all() and not kc.any()


# ---------------------------------------------------------------------------- varlen, merge, Layer


@pytest.mark.parametrize("wrap", WRITE_WRAPS)
def test_varlen_merge_layer(rng, wrap):
    cq, ck = np.array([0, 3, 8]), np.array([0, 7, 11])
    q, k, v = rand(rng, (8, 4, 16)), rand(rng, (11, 2, 16)), rand(rng, (11, 2, 8))
    want, wl = mha.attention_varlen(q, k, v, cq, ck, causal=True, return_lse=True)
    out = nan_like(want.shape)
    o = wrap(out)
    got, lse = mha.attention_varlen(wrap(q), wrap(k), wrap(v), wrap(cq), wrap(ck), causal=True,
                                    return_lse=True, out=o)
    assert got is o and np.array_equal(out, want) and np.array_equal(lse, wl)
    # merge: two key ranges, merged in place into the first part
    q4, k4, v4 = qkv(rng)
    o1, l1 = mha.attention(q4, k4[:, :, :4], v4[:, :, :4], return_lse=True)
    o2, l2 = mha.attention(q4, k4[:, :, 4:], v4[:, :, 4:], return_lse=True)
    want, wl = mha.merge([o1, o2], [l1, l2])
    got, lse = mha.merge([wrap(o1), wrap(o2)], [wrap(l1), wrap(l2)])
    assert type(got) is np.ndarray and np.array_equal(got, want) and np.array_equal(lse, wl)
    first = wrap(o1)
    got, lse = mha.merge([first, wrap(o2)], [wrap(l1), wrap(l2)], out=first)
    assert got is first and np.array_equal(o1, want)
    # Layer: weights and x through the wrapper
    dm, H = 16, 4
    w = {n: rand(rng, (dm, dm), -0.25, 0.25) for n in ("w_q", "w_k", "w_v", "w_o")}
    x = rand(rng, (2, 5, dm))
    with mha.Layer(dm, H, **w) as plain, mha.Layer(dm, H, **{n: wrap(a) for n, a in w.items()}) \
            as wrapped:
        want = plain.forward(x, causal=True)
        out = nan_like(want.shape)
        got = wrapped.forward(wrap(x), causal=True, out=wrap(out))
        assert np.array_equal(out, want)
        got = wrapped.forward(wrap(x), causal=True)
        assert type(got) is np.ndarray and np.array_equal(got, want)


# ---------------------------------------------------------------------------- devices, torch


@pytest.mark.parametrize("kind,name", [(2, "cuda"), (10, "rocm"), (42, "DLPack device type 42")])
def test_non_cpu_devices_are_refused(rng, kind, name):
    q, k, v = qkv(rng)
    gpu = OnDevice(kind)
    with pytest.raises(ValueError, match=f"q is on device {name}:1; mha runs on the CPU"):
        mha.attention(gpu, k, v)
    with pytest.raises(ValueError, match="out is on device"):
        mha.attention(q, k, v, out=gpu)
    with pytest.raises(ValueError, match="k_cache is on device"):
        mha.kv_cache_write(gpu, gpu, k, v, 0)
    with pytest.raises(ValueError, match="cu_seqlens_q is on device"):
        mha.attention_varlen(q[0], k[0], v[0], gpu, [0, 2])
    with pytest.raises(ValueError, match=r"outs\[1\] is on device"):
        mha.merge([q, gpu], [q[..., 0], q[..., 0]])


def test_import_mha_does_not_import_torch():
    code = ("import sys, numpy as np, mha\n"
            "class DL:\n"
            "    def __init__(s, a): s.a = a\n"
            "    def __dlpack__(s, **kw): return s.a.__dlpack__(**kw)\n"
            "    def __dlpack_device__(s): return s.a.__dlpack_device__()\n"
            "q = np.ones((1, 1, 2, 8), np.float32)\n"
            "w = DL if hasattr(np, 'from_dlpack') else (lambda a: a)\n"
            "mha.attention(w(q), w(q), w(q))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
