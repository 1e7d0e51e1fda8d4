"""mha.attention_varlen: packed variable-length batches against the padded
call (bitwise) and a float64 NumPy reference per sequence."""
import numpy as np
import pytest

import mha
from conftest import available_isas


def reference(q, k, v, causal, window):
    """One sequence: q [Tq, H, D], k/v [Tk, Hkv, D]; bottom-right alignment."""
    Tq, H, D = q.shape
    Tk, Hkv, Dv = v.shape
    G = H // Hkv
    out = np.zeros((Tq, H, Dv))
    for h in range(H):
        s = q[:, h, :].astype(np.float64) @ k[:, h // G, :].astype(np.float64).T / np.sqrt(D)
        ip = np.arange(Tq)[:, None] + Tk - Tq
        j = np.arange(Tk)[None, :]
        vis = np.ones((Tq, Tk), bool)
        if causal:
            vis &= j <= ip
        if window is not None:
            vis &= (j >= ip - window[0]) & (j <= ip + window[1])
        s = np.where(vis, s, -np.inf)
        m = s.max(axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        p = np.where(vis, np.exp(s - m), 0.0)
        l = p.sum(axis=1, keepdims=True)
        out[:, h, :] = np.where(l > 0, p @ v[:, h // G, :].astype(np.float64) / np.where(l > 0, l, 1), 0)
    return out


def pack(rng, lens_q, lens_k, H, Hkv, D):
    cq = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    ck = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    q = rng.uniform(-1, 1, (cq[-1], H, D)).astype(np.float32)
    k = rng.uniform(-1, 1, (ck[-1], Hkv, D)).astype(np.float32)
    v = rng.uniform(-1, 1, (ck[-1], Hkv, D)).astype(np.float32)
    return q, k, v, cq, ck


@pytest.mark.parametrize("isa", available_isas())
@pytest.mark.parametrize("causal,window", [(False, None), (True, None), (True, (9, 0))])
def test_varlen_matches_reference_and_padded(isa, causal, window):
    rng = np.random.default_rng(3)
    lens_q, lens_k = [17, 0, 5, 40], [30, 12, 5, 64]
    H, Hkv, D = 6, 2, 8
    q, k, v, cq, ck = pack(rng, lens_q, lens_k, H, Hkv, D)
    Tq, Tk = 48, 70
    out, lse = mha.attention_varlen(q, k, v, cq, ck, max_seqlen_q=Tq, max_seqlen_k=Tk, causal=causal,
                                    window=window, return_lse=True, isa=isa, num_threads=2)
    out1 = mha.attention_varlen(q, k, v, cq, ck, max_seqlen_q=Tq, max_seqlen_k=Tk, causal=causal,
                                window=window, isa=isa, num_threads=1, workspace="auto")
    assert np.array_equal(out, out1)
    for b in range(len(lens_q)):
        lq, lk = lens_q[b], lens_k[b]
        if lq == 0:
            continue
        seq = slice(cq[b], cq[b + 1])
        ref = reference(q[seq], k[ck[b]:ck[b + 1]], v[ck[b]:ck[b + 1]], causal, window)
        np.testing.assert_allclose(out[seq], ref, rtol=1e-5, atol=1e-5)
        # the padded call: queries left-padded to Tq, keys right-padded, kv_end alignment
        pq = rng.uniform(-1, 1, (1, Tq, H, D)).astype(np.float32)
        pk = rng.uniform(-1, 1, (1, Tk, Hkv, D)).astype(np.float32)
        pv = rng.uniform(-1, 1, (1, Tk, Hkv, D)).astype(np.float32)
        pq[0, Tq - lq:] = q[seq]
        pk[0, :lk] = k[ck[b]:ck[b + 1]]
        pv[0, :lk] = v[ck[b]:ck[b + 1]]
        po, pl = mha.attention(pq, pk, pv, layout="bthd", causal=causal, window=window,
                               kv_len=[lk], align="kv_end", return_lse=True, isa=isa)
        assert np.array_equal(out[seq], po[0, Tq - lq:])
        assert np.array_equal(lse[seq], pl[0, Tq - lq:])


def test_varlen_errors():
    rng = np.random.default_rng(4)
    q, k, v, cq, ck = pack(rng, [3, 4], [5, 6], 2, 2, 4)
    with pytest.raises(mha.MhaError) as e:
        mha.attention_varlen(q, k, v, cq, ck, max_seqlen_q=3)  # a sequence of 4 > Tq
    assert e.value.status_name.endswith("INVALID_ARGUMENT")
    with pytest.raises(mha.MhaError):
        mha.attention_varlen(q, k, v, cq[:-1], ck)
