"""return_trace=True (mha.h, "Threads": mha_trace): the events come back as a
TRACE_DTYPE array, last in the result tuple; the attention events tile every
(batch entry, head, query row) × keys exactly once; the layer records its
GEMM tiles; a buffer too small for the guess is rerun, complete; the results'
bits never change."""
import numpy as np
import pytest

import mha
from mha import _trace

from conftest import rand

PACK_KT, ATTENTION, WEIGHTS_MEAN, GEMM = 1, 2, 3, 4


def check_times(tr, workers):
    """Every event's times (ns since the call began, start <= end) and worker."""
    assert tr.dtype == mha.TRACE_DTYPE
    assert len(tr) > 0
    assert np.all(tr["start_ns"] >= 0)
    assert np.all(tr["start_ns"] <= tr["end_ns"])
    assert np.all((tr["worker"] >= 0) & (tr["worker"] < workers))
    assert set(np.unique(tr["stage"]).tolist()) <= set(mha.TRACE_STAGES)


def coverage(tr, B, H, Tq):
    """keys[b, h, i]: the keys the attention events give row i of head h of
    entry b (each event adds k_end - k_begin to its heads × rows)."""
    keys = np.zeros((B, H, Tq), np.int64)
    for e in tr[tr["stage"] == ATTENTION]:
        assert e["k_begin"] <= e["k_end"] and e["q_begin"] < e["q_end"] and e["heads"] >= 1
        keys[e["batch"], e["head"]:e["head"] + e["heads"], e["q_begin"]:e["q_end"]] += \
            e["k_end"] - e["k_begin"]
    return keys


def bits(a):
    return np.asarray(a).view(np.uint32)


def qkv(rng, B, H, Hkv, Tq, Tk, D=32, Dv=24):
    return (rand(rng, (B, H, Tq, D)), rand(rng, (B, Hkv, Tk, D)), rand(rng, (B, Hkv, Tk, Dv)))


def test_trace_stages_and_dtype():
    assert mha.TRACE_STAGES == {1: "pack_kt", 2: "attention", 3: "weights_mean", 4: "gemm"}
    assert mha.TRACE_DTYPE.names == ("start_ns", "end_ns", "worker", "stage", "batch", "head",
                                     "heads", "q_begin", "q_end", "k_begin", "k_end")


@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_causal_attention_trace_tiles_every_row(rng, layout):
    B, H, Hkv, Tq, Tk = 2, 4, 2, 200, 230
    q, k, v = qkv(rng, B, H, Hkv, Tq, Tk)
    if layout == "bthd":
        q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    out, tr = mha.attention(q, k, v, causal=True, layout=layout, num_threads=2,
                            return_trace=True)
    check_times(tr, 2)
    # a prefill of several query blocks: K is packed, then the attention units
    assert set(np.unique(tr["stage"]).tolist()) == {PACK_KT, ATTENTION}
    att = tr[tr["stage"] == ATTENTION]
    assert np.all(att["heads"] == H // Hkv) and np.all(att["head"] % (H // Hkv) == 0)
    assert np.all((att["batch"] >= 0) & (att["batch"] < B))
    assert np.all(coverage(tr, B, H, Tq) == Tk)
    pack = tr[tr["stage"] == PACK_KT]
    assert np.all(pack["heads"] == 1) and np.all(pack["q_begin"] == pack["q_end"])
    assert np.all((pack["head"] >= 0) & (pack["head"] < Hkv))
    plain = mha.attention(q, k, v, causal=True, layout=layout, num_threads=2)
    assert np.array_equal(bits(out), bits(plain))


def test_decode_splits_cover_every_key_once(rng):
    # one query row against many keys: the keys are split into ranges
    B, H, Hkv, Tq, Tk = 3, 8, 2, 1, 1500
    q, k, v = qkv(rng, B, H, Hkv, Tq, Tk)
    out, lse, tr = mha.attention(q, k, v, kv_len=[1500, 700, 1], return_lse=True, num_threads=2,
                                 return_trace=True)
    check_times(tr, 2)
    att = tr[tr["stage"] == ATTENTION]
    assert len(att) > B * Hkv  # split into key ranges
    assert np.all(coverage(tr, B, H, Tq) == Tk)
    plain, plain_lse = mha.attention(q, k, v, kv_len=[1500, 700, 1], return_lse=True,
                                     num_threads=2)
    assert np.array_equal(bits(out), bits(plain))
    assert np.array_equal(bits(lse), bits(plain_lse))


def test_results_in_order_weights_lse_trace(rng):
    B, H, Hkv, Tq, Tk = 2, 4, 4, 70, 90
    q, k, v = qkv(rng, B, H, Hkv, Tq, Tk)
    res = mha.attention(q, k, v, causal=True, need_weights=True, weights_mode="mean",
                        return_lse=True, num_threads=2, return_trace=True)
    assert len(res) == 4
    out, w, lse, tr = res
    assert out.shape == (B, H, Tq, 24) and w.shape == (B, Tq, Tk) and lse.shape == (B, H, Tq)
    check_times(tr, 2)
    assert WEIGHTS_MEAN in tr["stage"]
    mean = tr[tr["stage"] == WEIGHTS_MEAN]
    rows = np.zeros((B, Tq), np.int64)
    for e in mean:
        assert e["head"] == 0 and e["heads"] == H
        rows[e["batch"], e["q_begin"]:e["q_end"]] += 1
    assert np.all(rows == 1)
    assert np.all(coverage(tr, B, H, Tq) == Tk)
    plain = mha.attention(q, k, v, causal=True, need_weights=True, weights_mode="mean",
                          return_lse=True, num_threads=2)
    for a, b in zip((out, w, lse), plain):
        assert np.array_equal(bits(a), bits(b))


def test_a_short_guess_reruns_with_room_for_every_event(rng, monkeypatch):
    B, H, Hkv, Tq, Tk = 2, 4, 2, 150, 150
    q, k, v = qkv(rng, B, H, Hkv, Tq, Tk)
    full = mha.attention(q, k, v, causal=True, num_threads=2, return_trace=True)[1]
    calls = []
    real = _trace.traced_call

    def counting(call, owner, capacity):
        def counted():
            calls.append(owner.trace)
            call()
        return real(counted, owner, capacity)
    monkeypatch.setattr(_trace, "traced_call", counting)
    for guess in (0, 1, len(full) - 1):
        monkeypatch.setattr(_trace, "capacity_guess", lambda *a, guess=guess, **kw: guess)
        calls.clear()
        out, tr = mha.attention(q, k, v, causal=True, num_threads=2, return_trace=True)
        assert len(calls) == 2  # the first run was short: one rerun
        assert len(tr) == len(full)
        assert np.all(coverage(tr, B, H, Tq) == Tk)
    monkeypatch.setattr(_trace, "capacity_guess", lambda *a, **kw: len(full))
    calls.clear()
    out, tr = mha.attention(q, k, v, causal=True, num_threads=2, return_trace=True)
    assert len(calls) == 1 and len(tr) == len(full)


def test_varlen_trace_per_sequence(rng):
    H, Hkv, D = 4, 2, 16
    lens_q, lens_k = [5, 130, 1], [9, 130, 40]
    cq, ck = np.cumsum([0] + lens_q), np.cumsum([0] + lens_k)
    q, k, v = rand(rng, (cq[-1], H, D)), rand(rng, (ck[-1], Hkv, D)), rand(rng, (ck[-1], Hkv, D))
    out, tr = mha.attention_varlen(q, k, v, cq, ck, causal=True, num_threads=2, return_trace=True)
    check_times(tr, 2)
    for b, (tq, tk) in enumerate(zip(lens_q, lens_k)):
        one = tr[tr["batch"] == b]
        assert np.all(coverage(one, b + 1, H, tq)[b] == tk)
    assert set(np.unique(tr[tr["stage"] == ATTENTION]["batch"]).tolist()) == {0, 1, 2}
    out2, lse, tr2 = mha.attention_varlen(q, k, v, cq, ck, causal=True, num_threads=2,
                                          return_lse=True, return_trace=True)
    assert lse.shape == (cq[-1], H) and tr2.dtype == mha.TRACE_DTYPE
    plain = mha.attention_varlen(q, k, v, cq, ck, causal=True, num_threads=2)
    assert np.array_equal(bits(out), bits(plain)) and np.array_equal(bits(out2), bits(plain))


def test_paged_trace(rng):
    B, H, Hkv, D, bs, nb = 2, 4, 2, 16, 16, 12
    kp, vp = rand(rng, (nb, Hkv, bs, D)), rand(rng, (nb, Hkv, bs, D))
    table = np.array([[3, 1, 7, 0, 5], [2, 11, 4, 6, 9]], np.int32)
    q = rand(rng, (B, H, 1, D))
    out, tr = mha.attention_paged(q, kp, vp, table, kv_len=[80, 33], num_threads=2,
                                  return_trace=True)
    check_times(tr, 2)
    assert np.all(coverage(tr, B, H, 1) == 80)  # Tk: max(kv_len)
    plain = mha.attention_paged(q, kp, vp, table, kv_len=[80, 33], num_threads=2)
    assert np.array_equal(bits(out), bits(plain))


def test_layer_trace_has_gemm_tiles(rng):
    d_model, H, Hkv, B, T = 64, 4, 2, 2, 96
    D = d_model // H
    mat = lambda o, i: rand(rng, (o, i)) / np.float32(np.sqrt(i))
    w = dict(w_q=mat(H * D, d_model), w_k=mat(Hkv * D, d_model), w_v=mat(Hkv * D, d_model),
             w_o=mat(d_model, H * D))
    x = rand(rng, (B, T, d_model))
    with mha.Layer(d_model, H, num_kv_heads=Hkv, **w) as layer:
        out, tr = layer.forward(x, causal=True, num_threads=2, return_trace=True)
        check_times(tr, 2)
        gemm = tr[tr["stage"] == GEMM]
        assert len(gemm) > 0
        # one chunk here (batch 0, rows of [B·T]); head names the GEMM: 0 the fused
        # Q|K|V of self-attention, 3 the output projection
        assert np.all(gemm["batch"] == 0) and set(np.unique(gemm["head"])) == {0, 3}
        assert np.all(gemm["heads"] == 0)
        assert np.all((gemm["q_begin"] < gemm["q_end"]) & (gemm["k_begin"] < gemm["k_end"]))
        assert np.all(gemm["q_end"] <= B * T)
        # the tiles cover each projection's output once: x·W_qkv [B·T, (H + 2·Hkv)·D]
        # and the output projection [B·T, d_model]
        area = lambda g: ((g["q_end"] - g["q_begin"]).astype(np.int64) * (g["k_end"] - g["k_begin"])).sum()
        assert area(gemm[gemm["head"] == 0]) == B * T * (H + 2 * Hkv) * D
        assert area(gemm[gemm["head"] == 3]) == B * T * d_model
        assert np.all(coverage(tr, B, H, T) == T)
        out_w, weights, tr_w = layer.forward(x, causal=True, need_weights=True, num_threads=2,
                                             return_trace=True)
        assert weights.shape == (B, H, T, T) and GEMM in tr_w["stage"]
        plain = layer.forward(x, causal=True, num_threads=2)
        assert np.array_equal(bits(out), bits(plain)) and np.array_equal(bits(out_w), bits(plain))


def test_a_tiny_call_has_a_trace_too():
    q = np.ones((1, 1, 3, 4), np.float32)
    out = mha.attention(q, q, q)
    assert isinstance(out, np.ndarray) and out.shape == (1, 1, 3, 4)
    out, tr = mha.attention(q, q, q, return_trace=True)
    assert isinstance(tr, np.ndarray) and tr.dtype == mha.TRACE_DTYPE


def test_torch_inputs_give_a_numpy_trace(rng):
    torch = pytest.importorskip("torch")
    q, k, v = (torch.from_numpy(a) for a in qkv(rng, 1, 2, 2, 40, 40))
    out, tr = mha.attention(q, k, v, causal=True, return_trace=True)
    assert isinstance(out, torch.Tensor)
    assert isinstance(tr, np.ndarray) and tr.dtype == mha.TRACE_DTYPE
    assert np.all(coverage(tr, 1, 2, 40) == 40)
