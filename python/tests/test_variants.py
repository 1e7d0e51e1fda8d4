"""The attention variants through mha.attention, mha.merge and Layer.forward:
alignment (bottom-right, top-left, kv_end, an offset), sliding window, ALiBi,
soft-capping, sinks, the lse output, merging key ranges, the weights modes,
every kernel set and thread count, and the errors.

The reference is an independent float64 NumPy model written here from the
formulas of include/mha.h (mha_align, mha_mask, mha_merge_f32):

  i' = i + shift(b)   (bottom_right: Tk - Tq, top_left: 0,
                       kv_end: kv_len[b] - Tq, offset: the offset)
  visible(j) = j < kv_len[b] and (not causal or j <= i')
               and (no window or i' - left <= j <= i' + right)
               and additive[b,h,i,j] != -inf
  s = scale·q·k;  s = softcap·tanh(s / softcap);  s -= slope_h·(i' - j);  s += additive
  P = exp(s - m) / (Σ_visible exp(s - m) + exp(sink_h - m)),  lse = m + log(den)

Tolerance: conftest's |mha - ref| <= 1e-5 + 1e-5·|ref| (RTOL = ATOL = 1e-5)
for out, weights and lse, every variant included. The largest error seen is
~4e-6, with ALiBi over long distances (decode, Tk = 600, slope 1/2): the
float32 bias slope·(i' - j) is rounded at its own magnitude.
"""
import numpy as np
import pytest

import mha
from conftest import ATOL, RTOL, assert_close, available_isas, linear, nan_like, rand

ALIGNS = ["bottom_right", "top_left", "kv_end", 3, -4]
INF = np.inf


# ---------------------------------------------------------------------------- the reference


def shifts(align, B, Tq, Tk, kv_len):
    """i' - i per batch entry."""
    if align == "bottom_right":
        return np.full(B, Tk - Tq)
    if align == "top_left":
        return np.zeros(B, np.int64)
    if align == "kv_end":
        kl = np.full(B, Tk) if kv_len is None else np.broadcast_to(np.asarray(kv_len), (B,))
        return kl.astype(np.int64) - Tq
    return np.full(B, int(align))


def ref(q, k, v, *, causal=False, kv_len=None, mask=None, scale=None, align="bottom_right",
        window=None, alibi_slopes=None, softcap=None, sinks=None):
    """float64 (out [B,H,Tq,Dv], weights [B,H,Tq,Tk], lse [B,H,Tq]); bhtd inputs."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    kk = np.repeat(k, H // Hkv, axis=1)
    vv = np.repeat(v, H // Hkv, axis=1)
    s = 1.0 / np.sqrt(D) if scale is None else float(np.float32(scale))
    S = s * np.einsum("bhid,bhjd->bhij", q, kk)
    if softcap is not None:
        c = float(np.float32(softcap))
        S = c * np.tanh(S / c)
    kl = np.full(B, Tk) if kv_len is None else np.broadcast_to(np.asarray(kv_len), (B,))
    ip = np.arange(Tq)[None, :, None] + shifts(align, B, Tq, Tk, kv_len)[:, None, None]  # [B,Tq,1]
    j = np.arange(Tk)[None, None, :]
    vis = j < kl[:, None, None]
    if causal:
        vis = vis & (j <= ip)
    if window is not None:
        left, right = window
        vis = vis & (j >= ip - left) & (j <= ip + right)
    vis = np.broadcast_to(vis[:, None], (B, H, Tq, Tk))
    if alibi_slopes is not None:
        slope = np.asarray(alibi_slopes, np.float32).astype(np.float64)
        S = S - slope[None, :, None, None] * (ip - j)[:, None].astype(np.float64)
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, np.float64), (B, H, Tq, Tk))
        vis = vis & (m != -INF)
        S = S + np.where(np.isneginf(m), 0.0, m)
    S = np.where(vis, S, -INF)
    sink = np.full(H, -INF) if sinks is None else np.asarray(sinks, np.float32).astype(np.float64)
    sk = np.broadcast_to(sink[None, :, None], (B, H, Tq))
    mx = np.maximum(S.max(-1), sk)
    mx0 = np.where(np.isfinite(mx), mx, 0.0)
    E = np.where(vis, np.exp(S - mx0[..., None]), 0.0)
    den = E.sum(-1) + np.where(np.isfinite(sk), np.exp(sk - mx0), 0.0)
    safe = np.where(den > 0, den, 1.0)
    P = np.where(den[..., None] > 0, E / safe[..., None], 0.0)
    lse = np.where(den > 0, mx0 + np.log(safe), -INF)
    return np.einsum("bhij,bhjd->bhid", P, vv), P, lse


def close(got, want):
    assert_close(got, want, rtol=RTOL, atol=ATOL)


def close_lse(got, want):
    """lse may hold -inf (rows with no key and no sink): exactly where the reference does."""
    got = np.asarray(got)
    assert got.dtype == np.float32 and got.shape == want.shape
    inf = np.isneginf(want)
    assert np.array_equal(np.isneginf(got), inf)
    np.testing.assert_allclose(got[~inf].astype(np.float64), want[~inf], rtol=RTOL, atol=ATOL)


def make(rng, B, H, Hkv, Tq, Tk, D, Dv):
    return rand(rng, (B, H, Tq, D)), rand(rng, (B, Hkv, Tk, D)), rand(rng, (B, Hkv, Tk, Dv))


def alibi(H):
    """The ALiBi paper's slopes 2^(-8(h+1)/H)."""
    return (2.0 ** (-8.0 * np.arange(1, H + 1) / H)).astype(np.float32)


def combined(rng, B, H, Tq, Tk, align="bottom_right", sinks=True):
    """Every variant at once: window + causal + ALiBi + softcap + sinks + kv_len + additive."""
    kl = rng.integers(Tk // 2, Tk + 1, B)
    kl[0] = Tk
    if B > 2:
        kl[1] = 0  # an entry with no key: its rows are empty (only the sink)
    m = rand(rng, (B, 1, Tq, Tk), -1, 1)
    m[:, :, ::3, 1::4] = -INF
    kw = dict(causal=True, window=(9, 2), alibi_slopes=alibi(H), softcap=1.5, kv_len=kl, mask=m,
              scale=0.9, align=align)
    if sinks:
        kw["sinks"] = rand(rng, H, -1, 2)
    return kw


# ---------------------------------------------------------------------------- each variant, each alignment

# B, H, Hkv, Tq, Tk, D, Dv
SHAPES = [(2, 4, 2, 13, 29, 16, 8),    # GQA, Tq < Tk
          (1, 3, 3, 37, 37, 8, 8),     # Tq == Tk, more than one query block
          (2, 4, 1, 29, 11, 8, 4)]     # MQA, Tq > Tk

VARIANTS = {
    "causal": dict(causal=True),
    "window_left": dict(window=(4, 0)),
    "window_both": dict(window=(3, 5)),
    "window_causal": dict(window=(6, 100), causal=True),
    "window_zero": dict(window=(0, 0)),
    "alibi": "alibi",
    "softcap": dict(softcap=0.6, scale=1.0),
    "sinks": "sinks",
    "kv_len": "kv_len",
}


def variant_kwargs(rng, name, shape):
    B, H, Hkv, Tq, Tk, D, Dv = shape
    kw = VARIANTS[name]
    if kw == "alibi":
        return dict(alibi_slopes=alibi(H))
    if kw == "sinks":
        return dict(sinks=rand(rng, H, -1, 2))
    if kw == "kv_len":
        return dict(kv_len=rng.integers(1, Tk + 1, B))
    return dict(kw)


@pytest.mark.parametrize("align", ALIGNS, ids=str)
@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}H{}Hkv{}Tq{}Tk{}D{}Dv{}".format(*s))
def test_each_variant_alone(rng, shape, name, align):
    q, k, v = make(rng, *shape)
    kw = variant_kwargs(rng, name, shape)
    want, want_w, want_l = ref(q, k, v, align=align, **kw)
    out, w, lse = mha.attention(q, k, v, align=align, need_weights=True, return_lse=True, **kw)
    close(out, want)
    close(w, want_w)
    close_lse(lse, want_l)


@pytest.mark.parametrize("align", ALIGNS, ids=str)
def test_all_variants_combined(rng, align):
    B, H, Hkv, Tq, Tk, D, Dv = 3, 6, 2, 21, 40, 16, 12
    q, k, v = make(rng, B, H, Hkv, Tq, Tk, D, Dv)
    kw = combined(rng, B, H, Tq, Tk, align)
    want, want_w, want_l = ref(q, k, v, **kw)
    out, w, lse = mha.attention(q, k, v, need_weights=True, return_lse=True, **kw)
    close(out, want)
    close(w, want_w)
    close_lse(lse, want_l)
    # the bthd layout: the same numbers, lse as [B,Tq,H] like out's leading dims
    T = lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3))  # noqa: E731
    o2, l2 = mha.attention(T(q), T(k), T(v), layout="bthd", return_lse=True, **kw)
    assert l2.shape == (B, Tq, H)
    close(o2.transpose(0, 2, 1, 3), want)
    close_lse(l2.transpose(0, 2, 1), want_l)
    # requesting weights and lse does not change the bits of out
    assert mha.attention(q, k, v, **kw).tobytes() == out.tobytes()


@pytest.mark.parametrize("align", ALIGNS, ids=str)
def test_decode(rng, align):
    # Tq = 1 against a long cache: the decode path (key ranges merged by lse inside mha)
    B, H, Hkv, Tq, Tk, D, Dv = 3, 8, 2, 1, 600, 32, 16
    q, k, v = make(rng, B, H, Hkv, Tq, Tk, D, Dv)
    kl = np.array([600, 0, 417])
    sinks = rand(rng, H, -1, 2)
    for kw in (dict(), dict(kv_len=kl), dict(window=(127, 0), causal=True, kv_len=kl),
               dict(alibi_slopes=alibi(H), softcap=2.0, scale=1.0, sinks=sinks, kv_len=kl),
               dict(combined(rng, B, H, Tq, Tk), kv_len=kl, window=(250, 0), alibi_slopes=alibi(H))):
        kw["align"] = align
        want, want_w, want_l = ref(q, k, v, **kw)
        out, w, lse = mha.attention(q, k, v, need_weights=True, return_lse=True, **kw)
        close(out, want)
        close(w, want_w)
        close_lse(lse, want_l)


def test_gqa_heads_read_their_kv_head(rng):
    # H = 8 over Hkv = 2 with per-head slopes and sinks: heads 0-3 read K/V head 0
    B, H, Hkv, Tq, Tk, D = 1, 8, 2, 5, 23, 8
    q, k, v = make(rng, B, H, Hkv, Tq, Tk, D, D)
    kw = dict(alibi_slopes=alibi(H), sinks=rand(rng, H), window=(6, 0), causal=True)
    want, _, want_l = ref(q, k, v, **kw)
    out, lse = mha.attention(q, k, v, return_lse=True, **kw)
    close(out, want)
    close_lse(lse, want_l)
    # the same as MHA with K/V repeated per head
    rep = lambda a: np.repeat(a, H // Hkv, axis=1)  # noqa: E731
    o2, l2 = mha.attention(q, rep(k), rep(v), return_lse=True, **kw)
    close(o2, want)
    close_lse(l2, want_l)


def test_alignments_place_the_queries(rng):
    # causal with Tq = 3 < Tk = 10: the first row sees 8 keys (bottom-right),
    # 1 key (top-left), kv_len - 2 (kv_end), 5 + 1 (offset 5)
    q, k, v = make(rng, 2, 1, 1, 3, 10, 4, 4)
    kl = [10, 6]
    for align, first in (("bottom_right", [8, 6]), ("top_left", [1, 1]), ("kv_end", [8, 4]),
                         (5, [6, 6]), (-1, [0, 0])):
        _, w = mha.attention(q, k, v, causal=True, kv_len=kl, align=align, need_weights=True)
        assert [np.count_nonzero(w[b, 0, 0]) for b in range(2)] == first, align


def test_unbounded_window_at_extreme_offsets(rng):
    # a window of INT64_MAX on both sides hides nothing, whatever the offset
    # (|offset| < 2^60): the same bits as no window
    q, k, v = make(rng, 2, 4, 2, 6, 50, 8, 8)
    big = 2 ** 63 - 1
    for align in ("bottom_right", 2 ** 60 - 1, -(2 ** 60 - 1)):
        for kw in (dict(), dict(causal=True)):
            want = mha.attention(q, k, v, align=align, **kw)
            got = mha.attention(q, k, v, align=align, window=(big, big), **kw)
            assert got.tobytes() == want.tobytes(), (align, kw)


# ---------------------------------------------------------------------------- lse and empty rows


def test_lse_empty_row_and_sink_only_row(rng):
    B, H, Tq, Tk, D = 2, 3, 4, 6, 8
    q, k, v = make(rng, B, H, H, Tq, Tk, D, D)
    kl = [Tk, 0]                                 # entry 1 has no key
    out, w, lse = mha.attention(q, k, v, kv_len=kl, need_weights=True, return_lse=True)
    assert np.all(np.isneginf(lse[1])) and np.all(np.isfinite(lse[0]))
    assert np.all(out[1] == 0) and np.all(w[1] == 0)
    close_lse(lse, ref(q, k, v, kv_len=kl)[2])
    # with sinks: a row with only the sink gets lse = sink exactly, zeros elsewhere
    sinks = np.array([0.5, -2.25, -INF], np.float32)  # -inf: no sink for head 2
    out, w, lse = mha.attention(q, k, v, kv_len=kl, sinks=sinks, need_weights=True,
                                return_lse=True)
    assert np.array_equal(lse[1], np.broadcast_to(sinks[:, None], (H, Tq)))
    assert np.all(out[1] == 0) and np.all(w[1] == 0)
    want, want_w, want_l = ref(q, k, v, kv_len=kl, sinks=sinks)
    close(out, want)
    close(w, want_w)
    close_lse(lse, want_l)
    # a sink takes weight from the keys: rows sum to 1 - exp(sink - lse)
    np.testing.assert_allclose(w[0].sum(-1), 1 - np.exp(sinks[:, None] - lse[0]), rtol=1e-5,
                               atol=1e-6)
    # rows emptied by causal with a negative offset (the first 2 rows see no key)
    out, lse = mha.attention(q, k, v, causal=True, align=-2, return_lse=True)
    assert np.all(np.isneginf(lse[:, :, :2])) and np.all(out[:, :, :2] == 0)
    close_lse(lse, ref(q, k, v, causal=True, align=-2)[2])


# ---------------------------------------------------------------------------- merge


def split_call(q, k, v, bounds, layout="bhtd", **kw):
    """attention over each key range [a, b) of bounds, with the positions of the
    whole sequence: align=<offset> so that i' - j' = i' - j, kv_len clipped
    to the range, the additive mask sliced, the sinks on the first range only."""
    Tq, Tk = q.shape[2], k.shape[2]
    B = q.shape[0]
    shift = shifts(kw.pop("align", "bottom_right"), B, Tq, Tk, kw.get("kv_len"))
    assert np.all(shift == shift[0]), "one offset per call"
    kv_len, mask, sinks = kw.pop("kv_len", None), kw.pop("mask", None), kw.pop("sinks", None)
    T = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3))) if layout == "bthd" else (lambda a: a)
    outs, lses = [], []
    for p, (a, b) in enumerate(bounds):
        pkw = dict(kw, align=int(shift[0]) - a)
        if kv_len is not None:
            pkw["kv_len"] = np.clip(np.asarray(kv_len) - a, 0, b - a)
        if mask is not None:
            pkw["mask"] = np.asarray(mask)[..., a:b]
        if sinks is not None and p == 0:
            pkw["sinks"] = sinks
        o, lse = mha.attention(T(q), T(k[:, :, a:b]), T(v[:, :, a:b]), layout=layout,
                               return_lse=True, **pkw)
        outs.append(o)
        lses.append(lse)
    return outs, lses


@pytest.mark.parametrize("bounds", [[(0, 17), (17, 40)], [(0, 5), (5, 31), (31, 40)]],
                         ids=["2parts", "3parts"])
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_merge_reproduces_one_call(rng, bounds, layout):
    B, H, Hkv, Tq, Tk, D, Dv = 2, 4, 2, 9, 40, 16, 8
    q, k, v = make(rng, B, H, Hkv, Tq, Tk, D, Dv)
    kw = dict(alibi_slopes=alibi(H), softcap=1.5, scale=0.9, sinks=rand(rng, H, -1, 2),
              kv_len=[40, 23], mask=rand(rng, (Tq, Tk), -1, 1), window=(20, 0), causal=True,
              align=3)
    want, _, want_l = ref(q, k, v, **kw)
    one, one_l = mha.attention(q, k, v, return_lse=True, **kw)
    outs, lses = split_call(q, k, v, bounds, layout=layout, **kw)
    out, lse = mha.merge(outs, lses)
    if layout == "bthd":
        assert out.shape == (B, Tq, H, Dv) and lse.shape == (B, Tq, H)
        out, lse = out.transpose(0, 2, 1, 3), lse.transpose(0, 2, 1)
    close(out, want)
    close_lse(lse, want_l)
    close(out, one.astype(np.float64))
    close_lse(lse, one_l.astype(np.float64))


def test_merge_plain_parts_and_in_place(rng):
    # no causal: split K/V anywhere, merge, compare with the one call
    B, H, Tq, Tk, D = 2, 3, 5, 33, 8
    q, k, v = make(rng, B, H, H, Tq, Tk, D, D)
    one, one_l = mha.attention(q, k, v, return_lse=True)
    parts = [mha.attention(q, k[:, :, a:b], v[:, :, a:b], return_lse=True)
             for a, b in ((0, 10), (10, 11), (11, 33))]
    outs, lses = [p[0] for p in parts], [p[1] for p in parts]
    out, lse = mha.merge(outs, lses)
    assert out.dtype == np.float32 and out.shape == one.shape and lse.shape == one_l.shape
    close(out, one.astype(np.float64))
    close_lse(lse, one_l.astype(np.float64))
    # the order of parts is fixed by the caller: the same order, the same bits
    again, again_l = mha.merge(outs, lses)
    assert again.tobytes() == out.tobytes() and again_l.tobytes() == lse.tobytes()
    # in place into outs[0]
    first = outs[0].copy()
    got, got_l = mha.merge([first] + outs[1:], lses, out=first)
    assert got is first
    assert got.tobytes() == out.tobytes() and got_l.tobytes() == lse.tobytes()
    # into a caller's buffer; non-contiguous and float64 parts are copied
    buf = nan_like(one.shape)
    got, _ = mha.merge([o.astype(np.float64) for o in outs], [np.repeat(l[..., None], 2, -1)[..., 0] for l in lses],
                       out=buf)
    assert got is buf and got.tobytes() == out.tobytes()
    # a single part is itself
    got, got_l = mha.merge([one], [one_l])
    assert got.tobytes() == one.tobytes() and got_l.tobytes() == one_l.tobytes()


def test_merge_empty_parts_and_rows():
    o1 = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    o2 = np.array([[7.0, 8.0], [9.0, 10.0], [11.0, 12.0]], np.float32)
    l1 = np.array([0.0, -INF, -INF], np.float32)
    l2 = np.array([0.0, 1.0, -INF], np.float32)
    out, lse = mha.merge([o1, o2], [l1, l2])
    np.testing.assert_allclose(out[0], [4.0, 5.0], rtol=1e-6)  # equal halves
    assert np.array_equal(out[1], o2[1]) and lse[1] == np.float32(1.0)  # part 1 adds nothing
    assert np.all(out[2] == 0) and np.isneginf(lse[2])  # no part sees row 2
    np.testing.assert_allclose(lse[0], np.log(2.0), rtol=1e-6)
    # 1-D parts: one row
    out, lse = mha.merge([o1[0], o2[0]], [l1[0], l2[0]])
    assert out.shape == (2,) and lse.shape == ()


def test_merge_errors(rng):
    o = rand(rng, (2, 3, 4, 8))
    lse = rand(rng, (2, 3, 4))

    def raises(status, *args, **kw):
        with pytest.raises(mha.MhaError) as info:
            mha.merge(*args, **kw)
        assert info.value.status_name == "MHA_STATUS_" + status, str(info.value)
        return info.value

    raises("INVALID_SHAPE", [o, o[:, :, :3]], [lse, lse[:, :, :3]])  # parts differ
    raises("INVALID_SHAPE", [o, o], [lse, lse[:, :, :3]])            # lse rows differ
    raises("INVALID_SHAPE", [o, o], [lse, lse.reshape(2, 4, 3)])     # same count, not the same dims
    raises("INVALID_SHAPE", [o, o], [lse])                           # counts differ
    raises("INVALID_SHAPE", [o], [lse], out=nan_like((2, 3, 4, 7)))
    raises("INVALID_SIZE", [], [])
    e = raises("INVALID_SIZE", [o[:, :, :0]], [lse[:, :, :0]])       # mha's check
    assert e.message.startswith("mha_merge_f32")
    o2 = o.copy()
    raises("INVALID_STRIDE", [o2, o], [lse, lse], out=o)             # out is another part
    raises("INVALID_STRIDE", [o, o2], [lse, lse], out=nan_like((2, 3, 4, 16))[..., :8])
    assert np.array_equal(o, o2)


# ---------------------------------------------------------------------------- weights modes


@pytest.mark.parametrize("decode", [False, True], ids=["prefill", "decode"])
def test_weights_modes(rng, decode):
    B, H, Hkv, Tq, Tk, D = (2, 6, 2, 1, 300, 16) if decode else (2, 6, 3, 19, 27, 16)
    q, k, v = make(rng, B, H, Hkv, Tq, Tk, D, D)
    kw = combined(rng, B, H, Tq, Tk)
    out, per_head = mha.attention(q, k, v, need_weights=True, **kw)
    assert per_head.shape == (B, H, Tq, Tk)
    close(per_head, ref(q, k, v, **kw)[1])
    o_mean, mean = mha.attention(q, k, v, need_weights=True, weights_mode="mean", **kw)
    assert mean.shape == (B, Tq, Tk) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, per_head.astype(np.float64).mean(1), rtol=0, atol=1e-6)
    heads = [5, 0, 3, 3]
    o_sel, sel = mha.attention(q, k, v, need_weights=True, weights_mode=heads, **kw)
    assert sel.shape == (B, 4, Tq, Tk)
    assert sel.tobytes() == per_head[:, heads].tobytes()  # the same bits as per head
    o_sel1, sel1 = mha.attention(q, k, v, need_weights=True, weights_mode=np.array([2]), **kw)
    assert sel1.tobytes() == per_head[:, [2]].tobytes()
    # out is the same whatever the weights
    assert o_mean.tobytes() == out.tobytes() == o_sel.tobytes() == o_sel1.tobytes()
    # with return_lse too: (out, weights, lse)
    res = mha.attention(q, k, v, need_weights=True, weights_mode="mean", return_lse=True, **kw)
    assert len(res) == 3 and res[1].tobytes() == mean.tobytes() and res[2].shape == (B, H, Tq)
    # without need_weights the mode is ignored (but checked)
    assert isinstance(mha.attention(q, k, v, weights_mode=[1, 2], **kw), np.ndarray)


def test_default_return_types_unchanged(rng):
    q, k, v = make(rng, 1, 2, 2, 3, 4, 8, 8)
    assert isinstance(mha.attention(q, k, v), np.ndarray)
    res = mha.attention(q, k, v, need_weights=True)
    assert isinstance(res, tuple) and len(res) == 2 and res[1].shape == (1, 2, 3, 4)
    res = mha.attention(q, k, v, return_lse=True)
    assert isinstance(res, tuple) and len(res) == 2 and res[1].shape == (1, 2, 3)
    res = mha.attention(q, k, v, need_weights=True, return_lse=True)
    assert len(res) == 3 and res[1].shape == (1, 2, 3, 4) and res[2].shape == (1, 2, 3)


def test_per_head_values_are_converted(rng):
    q, k, v = make(rng, 1, 4, 2, 5, 9, 8, 8)
    slopes, sinks = alibi(4), rand(rng, 4)
    want = mha.attention(q, k, v, alibi_slopes=slopes, sinks=sinks)
    # float64 lists, a strided view, int values: converted to contiguous float32
    got = mha.attention(q, k, v, alibi_slopes=slopes.astype(np.float64).tolist(),
                        sinks=np.repeat(sinks, 2)[::2])
    assert got.tobytes() == want.tobytes()
    got = mha.attention(q, k, v, alibi_slopes=[1, 0, 0, 2])
    close(got, ref(q, k, v, alibi_slopes=[1, 0, 0, 2])[0])


# ---------------------------------------------------------------------------- kernel sets and threads


@pytest.mark.parametrize("isa", available_isas())
def test_every_isa_and_thread_count(rng, isa):
    for shape in ((2, 6, 2, 21, 40, 16, 12), (3, 8, 2, 1, 600, 32, 16)):
        B, H, Hkv, Tq, Tk, D, Dv = shape
        q, k, v = make(rng, *shape)
        for align in ("bottom_right", "kv_end", 2):
            kw = combined(rng, B, H, Tq, Tk, align)
            if Tq == 1:
                kw["alibi_slopes"] = alibi(H) / 16
            want, want_w, want_l = ref(q, k, v, **kw)
            results = []
            for threads in (1, 2):
                out, w, lse = mha.attention(q, k, v, isa=isa, num_threads=threads,
                                            need_weights=True, return_lse=True, **kw)
                results.append(out.tobytes() + w.tobytes() + lse.tobytes())
            assert results[0] == results[1], f"{isa} {shape} {align}: 1 and 2 threads differ"
            close(out, want)
            close(w, want_w)
            close_lse(lse, want_l)
            m1 = mha.attention(q, k, v, isa=isa, num_threads=1, need_weights=True,
                               weights_mode="mean", **kw)[1]
            m2 = mha.attention(q, k, v, isa=isa, num_threads=2, need_weights=True,
                               weights_mode="mean", **kw)[1]
            assert m1.tobytes() == m2.tobytes()


# ---------------------------------------------------------------------------- the layer


def layer_weights(rng, d_model, H, Hkv, D):
    def mat(n_in, n_out):
        return rand(rng, (n_out, n_in)) / np.float32(np.sqrt(n_in))  # out_in
    return dict(w_q=mat(d_model, H * D), w_k=mat(d_model, Hkv * D), w_v=mat(d_model, Hkv * D),
                w_o=mat(H * D, d_model), b_q=rand(rng, H * D, -0.1, 0.1),
                b_o=rand(rng, d_model, -0.1, 0.1))


def ref_layer_variants(x, w, H, Hkv, D, **kw):
    B, T, _ = x.shape
    q = linear(x, w["w_q"], w["b_q"], "out_in").reshape(B, T, H, D).transpose(0, 2, 1, 3)
    k = linear(x, w["w_k"], None, "out_in").reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)
    v = linear(x, w["w_v"], None, "out_in").reshape(B, T, Hkv, D).transpose(0, 2, 1, 3)
    o, P, _ = ref(q, k, v, **kw)
    cat = o.transpose(0, 2, 1, 3).reshape(B, T, H * D)
    return linear(cat, w["w_o"], w["b_o"], "out_in"), P


@pytest.mark.parametrize("align", ALIGNS, ids=str)
def test_layer_variants(rng, align):
    d_model, H, Hkv, D, B, T = 32, 4, 2, 8, 3, 23
    w = layer_weights(rng, d_model, H, Hkv, D)
    x = rand(rng, (B, T, d_model))
    kw = combined(rng, B, H, T, T, align)
    want, want_w = ref_layer_variants(x, w, H, Hkv, D, **kw)
    with mha.Layer(d_model, H, num_kv_heads=Hkv, **w) as layer:
        out, per_head = layer.forward(x, need_weights=True, **kw)
        close(out, want)
        close(per_head, want_w)
        o_mean, mean = layer.forward(x, need_weights=True, weights_mode="mean", **kw)
        assert mean.shape == (B, T, T)
        np.testing.assert_allclose(mean, per_head.astype(np.float64).mean(1), rtol=0, atol=1e-6)
        o_sel, sel = layer.forward(x, need_weights=True, weights_mode=[3, 1], **kw)
        assert sel.shape == (B, 2, T, T) and sel.tobytes() == per_head[:, [3, 1]].tobytes()
        assert out.tobytes() == o_mean.tobytes() == o_sel.tobytes()
        assert isinstance(layer.forward(x, **kw), np.ndarray)
        o1 = layer.forward(x, num_threads=1, **kw)
        o2 = layer.forward(x, num_threads=2, **kw)
        assert o1.tobytes() == o2.tobytes()


def test_gemma2_style_layer(rng):
    # Gemma 2: a local layer (sliding window, causal) with logit soft-capping
    d_model, H, Hkv, D, B, T = 32, 4, 2, 8, 2, 40
    w = layer_weights(rng, d_model, H, Hkv, D)
    x = rand(rng, (B, T, d_model))
    kw = dict(causal=True, window=(15, 0), softcap=0.5, scale=1.0)
    want, _ = ref_layer_variants(x, w, H, Hkv, D, **kw)
    with mha.Layer(d_model, H, num_kv_heads=Hkv, **w) as layer:
        close(layer.forward(x, **kw), want)


# ---------------------------------------------------------------------------- errors


def raises(status_name, fn, *args, from_mha=None, **kwargs):
    with pytest.raises(mha.MhaError) as info:
        fn(*args, **kwargs)
    e = info.value
    assert e.status_name == "MHA_STATUS_" + status_name, str(e)
    assert e.message
    if from_mha:
        assert e.message.startswith(from_mha), e.message
    return e


def test_errors(rng):
    q, k, v = make(rng, 2, 4, 2, 5, 6, 8, 8)
    out = nan_like((2, 4, 5, 8))
    core = dict(from_mha="mha_attention_f32")
    for kw, status, origin in [
            (dict(align="bottom"), "INVALID_ARGUMENT", None),
            (dict(align="BOTTOM_RIGHT"), "INVALID_ARGUMENT", None),
            (dict(align=1.5), "INVALID_ARGUMENT", None),
            (dict(align=True), "INVALID_ARGUMENT", None),
            (dict(align=2 ** 60), "INVALID_ARGUMENT", core),
            (dict(window=(-1, 0)), "INVALID_ARGUMENT", core),
            (dict(window=(0, -3)), "INVALID_ARGUMENT", core),
            (dict(window=5), "INVALID_ARGUMENT", None),
            (dict(window=(1, 2, 3)), "INVALID_ARGUMENT", None),
            (dict(window=(1.0, 2)), "INVALID_ARGUMENT", None),
            (dict(softcap=0.0), "INVALID_ARGUMENT", None),
            (dict(softcap=1e-50), "INVALID_ARGUMENT", None),   # 0 as float32
            (dict(softcap=-1.0), "INVALID_ARGUMENT", core),
            (dict(softcap=float("nan")), "INVALID_ARGUMENT", core),
            (dict(softcap=float("inf")), "INVALID_ARGUMENT", core),
            (dict(softcap=1e39), "INVALID_ARGUMENT", core),    # inf as float32
            (dict(alibi_slopes=[1.0, 2.0]), "INVALID_SHAPE", None),
            (dict(sinks=np.zeros((4, 1))), "INVALID_SHAPE", None),
            (dict(weights_mode="sum", need_weights=True), "INVALID_ARGUMENT", None),
            (dict(weights_mode="sum"), "INVALID_ARGUMENT", None),
            (dict(weights_mode=[0.5], need_weights=True), "INVALID_ARGUMENT", None),
            (dict(weights_mode=[[0]], need_weights=True), "INVALID_ARGUMENT", None),
            (dict(weights_mode=[4], need_weights=True), "INVALID_ARGUMENT", core),
            (dict(weights_mode=[-1], need_weights=True), "INVALID_ARGUMENT", core),
            (dict(weights_mode=[], need_weights=True), "INVALID_SIZE", core)]:
        raises(status, mha.attention, q, k, v, out=out, **kw, **(origin or {}))
        assert np.all(np.isnan(out)), kw  # untouched
    with pytest.raises(TypeError):
        mha.attention(q, k, v, sinks=["a"] * 4)
    # the layer: the same checks, mha's from mha_layer_forward
    w = layer_weights(rng, 16, 4, 2, 4)
    x = rand(rng, (2, 5, 16))
    lay = dict(from_mha="mha_layer_forward")
    with mha.Layer(16, 4, num_kv_heads=2, **w) as layer:
        raises("INVALID_ARGUMENT", layer.forward, x, align="left")
        raises("INVALID_ARGUMENT", layer.forward, x, window=(-1, 0), **lay)
        raises("INVALID_ARGUMENT", layer.forward, x, softcap=0)
        raises("INVALID_ARGUMENT", layer.forward, x, softcap=-2.0, **lay)
        raises("INVALID_ARGUMENT", layer.forward, x, softcap=float("nan"), **lay)
        raises("INVALID_SHAPE", layer.forward, x, sinks=[0.0] * 3)
        raises("INVALID_ARGUMENT", layer.forward, x, need_weights=True, weights_mode=[9], **lay)
