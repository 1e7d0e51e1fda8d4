"""mha.attention against the float64 reference: masks, GQA, cross-attention,
Dv != D, odd sizes, both layouts, strided views without copies, weights,
every kernel set and thread count."""

import numpy as np
import pytest

import mha
from mha import _lib
from conftest import (ATOL, RTOL, assert_close, available_isas, nan_like, rand,
                      ref_attention)

# B, H, Hkv, Tq, Tk, D, Dv
SHAPES = [
    (1, 1, 1, 1, 1, 1, 1),
    (2, 4, 4, 7, 7, 8, 8),
    (1, 2, 2, 63, 65, 7, 7),      # cross, odd
    (2, 6, 2, 7, 63, 65, 7),      # GQA, Dv != D, odd
    (1, 4, 1, 65, 65, 16, 24),    # MQA, Dv != D
    (3, 2, 1, 1, 65, 63, 1),      # decode, Dv = 1
    (1, 3, 3, 65, 7, 1, 16),      # Tq > Tk, D = 1
]
MASKS = ["none", "causal", "kv_len", "additive_tqtk", "additive_full", "all"]


def shape_id(s):
    return "B{}H{}Hkv{}Tq{}Tk{}D{}Dv{}".format(*s)


def make(rng, shape):
    B, H, Hkv, Tq, Tk, D, Dv = shape
    return rand(rng, (B, H, Tq, D)), rand(rng, (B, Hkv, Tk, D)), rand(rng, (B, Hkv, Tk, Dv))


def mask_args(rng, kind, shape):
    B, H, Hkv, Tq, Tk, D, Dv = shape
    args = {}
    if kind in ("causal", "all"):
        args["causal"] = True
    if kind in ("kv_len", "all"):
        kl = rng.integers(1, Tk + 1, B)
        kl[0] = Tk  # one full entry
        if B > 1:
            kl[-1] = max(1, Tk // 2)
        args["kv_len"] = kl
    if kind == "additive_tqtk":
        args["mask"] = rand(rng, (Tq, Tk), -2, 2)
    if kind in ("additive_full", "all"):
        m = rand(rng, (B, H, Tq, Tk), -2, 2)
        m[..., Tk - 1] = -np.inf if Tk > 1 else m[..., Tk - 1]  # hides the last key
        args["mask"] = m
    return args


def to_bthd(a):
    """A [B,H,T,D] tensor stored as a contiguous [B,T,H,D] array."""
    return np.ascontiguousarray(a.transpose(0, 2, 1, 3))


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_core_matches_reference(rng, shape, kind, layout):
    q, k, v = make(rng, shape)
    margs = mask_args(rng, kind, shape)
    want, _ = ref_attention(q, k, v, **margs)
    B, H, Hkv, Tq, Tk, D, Dv = shape
    if layout == "bhtd":
        out = nan_like((B, H, Tq, Dv))
        got = mha.attention(q, k, v, out=out, **margs)
    else:
        out = nan_like((B, Tq, H, Dv))
        got = mha.attention(to_bthd(q), to_bthd(k), to_bthd(v), layout="bthd", out=out, **margs)
        got = got.transpose(0, 2, 1, 3)  # compared in bhtd order
    assert got.base is out or got is out
    assert_close(got, want)


def test_allocated_output_and_scale(rng):
    q, k, v = make(rng, (2, 4, 2, 7, 9, 8, 5))
    for scale in (None, 0.3, -1.25):
        got = mha.attention(q, k, v, scale=scale)
        assert got.shape == (2, 4, 7, 5) and got.dtype == np.float32
        assert got.flags.c_contiguous
        assert_close(got, ref_attention(q, k, v, scale=scale)[0])
    got = mha.attention(to_bthd(q), to_bthd(k), to_bthd(v), layout="bthd")
    assert got.shape == (2, 7, 4, 5)
    assert_close(got.transpose(0, 2, 1, 3), ref_attention(q, k, v)[0])


def test_causal_is_bottom_right(rng):
    # Tq < Tk: the queries are the last Tq positions; query i sees keys j <= i + Tk - Tq
    q, k, v = make(rng, (1, 2, 2, 3, 10, 8, 8))
    got = mha.attention(q, k, v, causal=True)
    assert_close(got, ref_attention(q, k, v, causal=True)[0])
    # the last query row sees every key: the same as without causal
    full = mha.attention(q, k, v)
    np.testing.assert_allclose(got[:, :, -1], full[:, :, -1], rtol=RTOL, atol=ATOL)
    # and row 0 is the first row of a Tk-row causal attention, i.e. sees 8 keys
    _, w = mha.attention(q, k, v, causal=True, need_weights=True)
    assert np.count_nonzero(w[0, 0, 0]) == 8 and np.count_nonzero(w[0, 0, 2]) == 10


def test_weights(rng):
    shape = (2, 4, 2, 7, 65, 8, 3)
    q, k, v = make(rng, shape)
    for kind in MASKS:
        margs = mask_args(rng, kind, shape)
        want_o, want_w = ref_attention(q, k, v, **margs)
        out, w = mha.attention(q, k, v, need_weights=True, **margs)
        assert w.shape == (2, 4, 7, 65) and w.dtype == np.float32
        assert_close(out, want_o)
        assert_close(w, want_w)
        # requesting weights does not change the bits of out
        assert out.tobytes() == mha.attention(q, k, v, **margs).tobytes()


def test_empty_rows_give_zeros(rng):
    B, H, Tq, Tk, D = 2, 2, 5, 6, 4
    q, k, v = rand(rng, (B, H, Tq, D)), rand(rng, (B, H, Tk, D)), rand(rng, (B, H, Tk, D))
    m = rand(rng, (Tq, Tk))
    m[1, :] = -np.inf                     # row 1 sees nothing
    out, w = mha.attention(q, k, v, mask=m, kv_len=[Tk, 0], need_weights=True,
                           out=nan_like((B, H, Tq, D)))
    assert np.all(out[:, :, 1] == 0) and np.all(w[:, :, 1] == 0)
    assert np.all(out[1] == 0) and np.all(w[1] == 0)   # kv_len 0: every row empty
    assert np.all(np.isfinite(out))
    assert_close(out, ref_attention(q, k, v, mask=m, kv_len=[Tk, 0])[0])
    # causal with Tq > Tk: the first Tq - Tk rows have no key
    q2 = rand(rng, (1, 1, 9, D))
    out2 = mha.attention(q2, k[:1, :1, :4], v[:1, :1, :4], causal=True)
    assert np.all(out2[0, 0, :5] == 0) and np.all(out2[0, 0, 5:] != 0)


# ---------------------------------------------------------------------------- views


class Spy:
    """Wraps the loaded library; records what mha_attention_f32 receives."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def mha_attention_f32(self, desc_ref, q, k, v, out, weights):
        d = desc_ref._obj
        self.calls.append(dict(desc=type(d).from_buffer_copy(d), q=q, k=k, v=v, out=out,
                               weights=weights))
        return self.real.mha_attention_f32(desc_ref, q, k, v, out, weights)


@pytest.fixture
def spy(monkeypatch):
    s = Spy(_lib.lib())
    monkeypatch.setattr(_lib, "lib", lambda: s)
    return s


def elem_strides(a, axes):
    return tuple(a.strides[i] // 4 for i in axes)


def strides_of(s):
    return (s.batch, s.head, s.row)


def test_sliced_views_are_passed_in_place(rng, spy):
    big_q = rand(rng, (3, 5, 20, 40))
    big_kv = rand(rng, (2, 4, 70, 50))
    q = big_q[1:3, 1:5, 2:9, 3:11]          # [2,4,7,8], every stride non-contiguous
    k = big_kv[:, ::2, :65, :8]             # [2,2,65,8], heads every other
    v = big_kv[:, 1::2, 1:66, 10:15]        # [2,2,65,5]
    big_out = nan_like((4, 6, 9, 12))
    out = big_out[1:3, :4, 1:8, 2:7]        # [2,4,7,5]
    got = mha.attention(q, k, v, out=out, causal=True)
    assert got is out
    c = spy.calls[-1]
    assert (c["q"], c["k"], c["v"], c["out"]) == (q.ctypes.data, k.ctypes.data, v.ctypes.data,
                                                  out.ctypes.data)
    d = c["desc"]
    axes = (0, 1, 2)
    assert strides_of(d.q) == elem_strides(q, axes)
    assert strides_of(d.k) == elem_strides(k, axes)
    assert strides_of(d.v) == elem_strides(v, axes)
    assert strides_of(d.out) == elem_strides(out, axes)
    assert_close(out, ref_attention(q, k, v, causal=True)[0])
    # mha wrote the view and nothing around it
    inside = np.zeros(big_out.shape, bool)
    inside[1:3, :4, 1:8, 2:7] = True
    assert not np.any(np.isnan(big_out[inside])) and np.all(np.isnan(big_out[~inside]))


def test_bthd_views_of_bhtd_memory(rng, spy):
    # [B,T,H,D] views (transposes) of [B,H,T,D] arrays, and the other way round
    q, k, v = make(rng, (2, 4, 2, 7, 9, 8, 6))
    out_mem = nan_like((2, 4, 7, 6))
    out = out_mem.transpose(0, 2, 1, 3)      # [B,Tq,H,Dv] view of bhtd memory
    got = mha.attention(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3),
                        v.transpose(0, 2, 1, 3), layout="bthd", out=out)
    assert got is out
    c = spy.calls[-1]
    assert (c["q"], c["k"], c["v"], c["out"]) == (q.ctypes.data, k.ctypes.data, v.ctypes.data,
                                                  out_mem.ctypes.data)
    assert strides_of(c["desc"].q) == elem_strides(q, (0, 1, 2))
    assert strides_of(c["desc"].out) == elem_strides(out_mem, (0, 1, 2))
    assert_close(out_mem, ref_attention(q, k, v)[0])
    # a [B,T,H·D] projection split into heads as a view (the layer's layout)
    x = rand(rng, (2, 7, 4 * 8))
    qh = x.reshape(2, 7, 4, 8)
    got = mha.attention(qh, qh, qh, layout="bthd")
    assert spy.calls[-1]["q"] == x.ctypes.data
    assert strides_of(spy.calls[-1]["desc"].q) == (7 * 32, 8, 32)
    qb = qh.transpose(0, 2, 1, 3)
    assert_close(got.transpose(0, 2, 1, 3), ref_attention(qb, qb, qb)[0])


def test_broadcast_inputs_and_masks_use_stride_0(rng, spy):
    B, H, Tq, Tk, D = 3, 4, 7, 9, 8
    q = rand(rng, (B, H, Tq, D))
    k1 = rand(rng, (1, 2, Tk, D))            # one K/V for every batch entry
    v1 = rand(rng, (1, 2, Tk, D))
    m2 = rand(rng, (Tq, Tk))                 # [Tq,Tk] for all batches and heads
    got = mha.attention(q, k1, v1, mask=m2)
    c = spy.calls[-1]
    assert c["k"] == k1.ctypes.data and c["v"] == v1.ctypes.data
    assert strides_of(c["desc"].k)[0] == 0
    assert c["desc"].mask.additive == m2.ctypes.data
    assert strides_of(c["desc"].mask.additive_strides) == (0, 0, Tk)
    assert_close(got, ref_attention(q, k1, v1, mask=m2)[0])
    # np.broadcast_to views, and a per-head [1,H,1,Tk] mask (row stride 0)
    kb = np.broadcast_to(k1, (B, 2, Tk, D))
    mh = rand(rng, (1, H, 1, Tk))
    got = mha.attention(q, kb, v1, mask=mh)
    c = spy.calls[-1]
    assert c["k"] == k1.ctypes.data and c["desc"].mask.additive == mh.ctypes.data
    assert strides_of(c["desc"].mask.additive_strides) == (0, Tk, 0)
    assert_close(got, ref_attention(q, k1, v1, mask=mh)[0])
    # a mask broadcast over keys ([Tq,1]) is materialized at [Tq,Tk] only
    mq = rand(rng, (Tq, 1))
    got = mha.attention(q, k1, v1, mask=mq)
    assert strides_of(spy.calls[-1]["desc"].mask.additive_strides) == (0, 0, Tk)
    assert_close(got, ref_attention(q, k1, v1, mask=mq)[0])


def test_views_mha_cannot_express_are_copied(rng, spy):
    q, k, v = make(rng, (2, 2, 2, 7, 9, 8, 8))
    want = ref_attention(q, k, v)[0]
    cases = {
        "float64": (q.astype(np.float64), k, v),
        "float16": (q, k.astype(np.float16), v),
        "last dim strided": (np.repeat(q, 2, axis=3)[..., ::2], k, v),
    }
    for name, (a, b, c) in cases.items():
        got = mha.attention(a, b, c)
        assert_close(got, ref_attention(a.astype(np.float32), b.astype(np.float32),
                                        c.astype(np.float32))[0] if name == "float16" else want)
    # a reversed view (negative strides) is copied, and gives the reversed result
    rk, rv = k[:, :, ::-1], v[:, :, ::-1]
    got = mha.attention(q, rk, rv)
    assert spy.calls[-1]["k"] != rk.ctypes.data
    assert_close(got, ref_attention(q, rk, rv)[0])
    # a q broadcast over rows (row stride 0) is refused by mha for q: copied
    qr = np.broadcast_to(q[:, :, :1], q.shape)
    got = mha.attention(qr, k, v)
    assert spy.calls[-1]["q"] != qr.ctypes.data
    assert_close(got, ref_attention(qr, k, v)[0])


# ---------------------------------------------------------------------------- ISAs, threads


@pytest.mark.parametrize("isa", available_isas())
def test_every_isa_and_thread_count(rng, isa):
    shape = (2, 6, 2, 33, 65, 63, 7)
    q, k, v = make(rng, shape)
    margs = mask_args(rng, "all", shape)
    want_o, want_w = ref_attention(q, k, v, **margs)
    results = []
    for threads in (1, 2):
        out = nan_like((2, 6, 33, 7))
        o, w = mha.attention(q, k, v, isa=isa, num_threads=threads, need_weights=True, out=out,
                             **margs)
        assert_close(o, want_o)
        assert_close(w, want_w)
        results.append((o.tobytes(), w.tobytes()))
    assert results[0] == results[1], f"{isa}: 1 and 2 threads differ"
    # decode shape (the key-range split path)
    q1 = rand(rng, (1, 4, 1, 64))
    k1, v1 = rand(rng, (1, 4, 1024, 64)), rand(rng, (1, 4, 1024, 64))
    a = mha.attention(q1, k1, v1, isa=isa, num_threads=1)
    b = mha.attention(q1, k1, v1, isa=isa, num_threads=2)
    assert a.tobytes() == b.tobytes()
    assert_close(a, ref_attention(q1, k1, v1)[0])


def test_isa_selection():
    isas = available_isas()
    assert "scalar" in isas
    assert mha.get_isa() in isas
    assert not mha.isa_available("default") and not mha.isa_available("sse9")
    before = mha.get_isa()
    try:
        for name in isas:
            mha.set_isa(name)
            assert mha.get_isa() == name
    finally:
        mha.set_isa("default")
    assert mha.get_isa() == before


def test_workspace_auto_and_caller_buffer_give_the_same_bits():
    rng = np.random.default_rng(5)
    q = rng.uniform(-1, 1, (2, 4, 33, 16)).astype(np.float32)
    k = rng.uniform(-1, 1, (2, 2, 70, 16)).astype(np.float32)
    v = rng.uniform(-1, 1, (2, 2, 70, 16)).astype(np.float32)
    ref = mha.attention(q, k, v, causal=True)
    auto = mha.attention(q, k, v, causal=True, workspace="auto")
    assert np.array_equal(ref, auto)
    buf = np.zeros(1 << 22, np.uint8)
    mine = mha.attention(q, k, v, causal=True, workspace=buf)
    assert np.array_equal(ref, mine)
    with pytest.raises(mha.MhaError) as e:
        mha.attention(q, k, v, causal=True, workspace=np.zeros(16, np.uint8))
    assert e.value.status_name.endswith("INVALID_ARGUMENT")
    with pytest.raises(ValueError):
        mha.attention(q, k, v, workspace="yes")
