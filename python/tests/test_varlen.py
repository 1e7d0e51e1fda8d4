"""mha.attention_varlen: packed variable-length batches against the padded
call (bitwise) and a float64 NumPy reference per sequence."""
import os
import subprocess
import sys
import textwrap

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
def test_varlen_matches_reference_and_alone(isa, causal, window):
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
        # the same sequence called alone (B = 1, its own lengths): the same bits
        po, pl = mha.attention(q[seq][None], k[ck[b]:ck[b + 1]][None], v[ck[b]:ck[b + 1]][None],
                               layout="bthd", causal=causal, window=window, return_lse=True, isa=isa)
        assert np.array_equal(out[seq], po[0])
        pl = np.asarray(pl)[0]
        assert np.array_equal(lse[seq], pl if pl.shape == (lq, H) else pl.T)
    # the bounds Tq, Tk change neither the bits nor the cost
    out2 = mha.attention_varlen(q, k, v, cq, ck, max_seqlen_q=2**30, max_seqlen_k=2**30, causal=causal,
                                window=window, isa=isa, num_threads=2)
    assert np.array_equal(out, out2)


def test_varlen_errors():
    rng = np.random.default_rng(4)
    q, k, v, cq, ck = pack(rng, [3, 4], [5, 6], 2, 2, 4)
    with pytest.raises(mha.MhaError) as e:
        mha.attention_varlen(q, k, v, cq, ck, max_seqlen_q=3)  # a sequence of 4 > Tq
    assert e.value.status_name.endswith("INVALID_ARGUMENT")
    with pytest.raises(mha.MhaError):
        mha.attention_varlen(q, k, v, cq[:-1], ck)


def test_cu_seqlens_out_of_int32_range_refused():
    # issue #17 defect 9: an offset outside int32 was cast unchecked, so
    # 2**32 + 3 wrapped to 3 and the call ran on a different segmentation
    rng = np.random.default_rng(5)
    q, k, v, cq, ck = pack(rng, [3, 4], [5, 6], 2, 2, 4)
    for bad in ([0, 2 ** 32 + 3, 7], [0, -2 ** 32 + 3, 7], [0, 2 ** 31, 7]):
        with pytest.raises(mha.MhaError) as e:
            mha.attention_varlen(q, k, v, np.array(bad, np.int64), ck)
        assert e.value.status_name.endswith("INVALID_ARGUMENT")
        assert "cu_seqlens_q" in e.value.message
    with pytest.raises(mha.MhaError) as e:
        mha.attention_varlen(q, k, v, cq, np.array([0, 2 ** 32 + 5, 11], np.uint64))
    assert e.value.status_name.endswith("INVALID_ARGUMENT")
    assert "cu_seqlens_k" in e.value.message


def test_cu_seqlens_float_dtype_refused():
    # issue #17 defect 9: float offsets were truncated (3.9 -> 3) silently;
    # as for kv_len, pos and block_table, a non-integer dtype is a TypeError
    rng = np.random.default_rng(6)
    q, k, v, cq, ck = pack(rng, [3, 4], [5, 6], 2, 2, 4)
    for bad in ([0, 3.9, 7.0], np.array([0, 3, 7], np.float32), [0.0, 3.0, 7.0]):
        with pytest.raises(TypeError, match="cu_seqlens_q"):
            mha.attention_varlen(q, k, v, bad, ck)
        with pytest.raises(TypeError, match="cu_seqlens_k"):
            mha.attention_varlen(q, k, v, cq, ck.astype(np.float64))
    with pytest.raises(TypeError):
        mha.attention_varlen(q[:1], k[:1], v[:1], [False, True], [False, True])


def test_cu_seqlens_is_copied_not_aliased_by_out():
    # issue #17 defect 9: cu_seqlens_q an int32 view of the out= array was
    # passed to C as is, so writing out overwrote the offsets mid-call (a
    # crash); mha now passes a private copy. Run in a child so a crash fails
    # this test rather than the whole session.
    code = textwrap.dedent("""
        import numpy as np, mha
        rng = np.random.default_rng(0)
        H, Hkv, D = 4, 2, 16
        q, k, v = (rng.uniform(-1, 1, (30, h, D)).astype(np.float32) for h in (H, Hkv, Hkv))
        cu = np.array([0, 10, 20, 30], np.int32)
        ref = mha.attention_varlen(q, k, v, cu, cu, num_threads=1)
        out = np.zeros((30, H, D), np.float32)
        cu_q = out.reshape(-1).view(np.int32)[:4]
        cu_q[:] = cu
        got = mha.attention_varlen(q, k, v, cu_q, cu, out=out, num_threads=1)
        assert got is out
        assert np.array_equal(out, ref), "out differs from the call with separate offsets"
        print("ok")
    """)
    env = dict(os.environ, MHA_LIBRARY=mha.library_path(),
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(mha.__file__))]
                                          + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr)
