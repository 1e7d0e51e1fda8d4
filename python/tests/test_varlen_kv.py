"""mha.attention_varlen over a K/V cache (seqused_k: mha_attention_varlen_kv_f32):
a serving step that packs decode rows and prefill chunks, its keys read from
a contiguous or paged cache, float32 or 16-bit.

What is held (include/mha.h, mha_attention_varlen_kv_f32):
  - accuracy: every sequence against a float64 NumPy reference on the
    cache's values widened to float64 (conftest's RTOL = ATOL = 1e-5), causal
    bottom-right per sequence: query i of a chunk of len_q sees the keys
    j <= i + seqused_k[b] - len_q;
  - bits: every sequence is bitwise the single-sequence cache call on its
    entry (attention_paged, or attention on the contiguous entry, B = 1,
    Tq = len_q, Tk = seqused_k[b]), out and lse, at any thread count, with
    or without a workspace, whatever is packed with it; a sequence without
    keys gives zeros and lse -inf;
  - errors: MhaError with mha's status for a bad seqused_k (outside [0, Tk],
    past the cache, over a bad table slot), nothing written; TypeError for
    arguments that do not go together.
"""
import numpy as np
import pytest

import mha
from conftest import available_isas, nan_like, rand
from test_kv_cache import raises, to_16
from test_variants import alibi

RTOL = ATOL = 1e-5


def reference(q, k, v, causal=True):
    """One sequence, float64: q [len_q, H, D], k [Hkv, len_k, D], v [Hkv, len_k, Dv]
    (the cache's widened rows); causal bottom-right to len_k."""
    lq, H, D = q.shape
    Hkv, lk, Dv = v.shape
    out = np.zeros((lq, H, Dv))
    if lk == 0:
        return out
    G = H // Hkv
    i = np.arange(lq)[:, None] + lk - lq
    j = np.arange(lk)[None, :]
    vis = j <= i if causal else np.ones((lq, lk), bool)
    for h in range(H):
        s = q[:, h].astype(np.float64) @ k[h // G].astype(np.float64).T / np.sqrt(D)
        s = np.where(vis, s, -np.inf)
        m = s.max(axis=1, keepdims=True)
        p = np.where(vis, np.exp(s - np.where(np.isfinite(m), m, 0.0)), 0.0)
        den = p.sum(axis=1, keepdims=True)
        pv = p @ v[h // G].astype(np.float64)
        out[:, h] = np.where(den > 0, pv / np.where(den > 0, den, 1), 0)
    return out


def packed(rng, lens_q, H, D):
    cu = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    return rand(rng, (int(cu[-1]), H, D)), cu


class Paged:
    """Pools of num_blocks blocks ("bhtd": [num_blocks, Hkv, bs, D]) holding
    entry b's tokens [0, lens[b]) in shuffled blocks (unused slots -1, spare
    blocks), and the same values as [B, Hkv, max(lens), D] float32."""

    def __init__(self, rng, dtype, B, Hkv, D, Dv, lens, bs, spare_slots=1):
        Tk = max(max(lens), 1)
        k32, v32 = rand(rng, (B, Hkv, Tk, D)), rand(rng, (B, Hkv, Tk, Dv))
        need = [-(-n // bs) for n in lens]
        self.max_blocks = max(need) + spare_slots
        num_blocks = sum(need) + 3
        order = rng.permutation(num_blocks)
        self.table = np.full((B, self.max_blocks), -1, np.int32)
        store = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}[dtype]
        self.k = np.zeros((num_blocks, Hkv, bs, D), store)
        self.v = np.zeros((num_blocks, Hkv, bs, Dv), store)
        self.kd = "bf16" if dtype == "bf16" else None
        used = 0
        for b in range(B):
            for s in range(need[b]):
                self.table[b, s] = order[used]
                used += 1
        k16, _, self.kw = to_16(k32, dtype) if dtype != "f32" else (k32, None, k32)
        v16, _, self.vw = to_16(v32, dtype) if dtype != "f32" else (v32, None, v32)
        for b in range(B):
            for t in range(lens[b]):
                blk, row = self.table[b, t // bs], t % bs
                self.k[blk, :, row] = k16[b, :, t]
                self.v[blk, :, row] = v16[b, :, t]

    def widened(self, b, n):
        """Entry b's first n keys as float32 [Hkv, n, D], [Hkv, n, Dv]."""
        return self.kw[b, :, :n], self.vw[b, :, :n]


# decode rows (len_q 1), prefill chunks, a sequence with no query rows, one
# chunk longer than its keys (its first rows see nothing)
LENS_Q = [1, 7, 0, 1, 12, 3]
USED_K = [37, 20, 9, 64, 12, 2]


@pytest.mark.parametrize("isa", available_isas())
def test_contiguous_f32_cache_against_reference_and_alone(rng, isa):
    B, H, Hkv, D, Dv, cap = len(LENS_Q), 6, 2, 16, 8, 70
    q, cu = packed(rng, LENS_Q, H, D)
    kc, vc = rand(rng, (B, Hkv, cap, D)), rand(rng, (B, Hkv, cap, Dv))
    out, lse = mha.attention_varlen(q, kc, vc, cu, seqused_k=USED_K, causal=True,
                                    return_lse=True, isa=isa, num_threads=2)
    assert out.shape == (cu[-1], H, Dv) and lse.shape == (cu[-1], H)
    for b, (lq, lk) in enumerate(zip(LENS_Q, USED_K)):
        rows = slice(cu[b], cu[b + 1])
        np.testing.assert_allclose(out[rows], reference(q[rows], kc[b, :, :lk], vc[b, :, :lk]),
                                   rtol=RTOL, atol=ATOL)
        if lq == 0:
            continue
        # alone: entry b as a cache of its own, B = 1, Tq = len_q, Tk = seqused_k[b]
        qa = q[rows].transpose(1, 0, 2)[None]
        oa, la = mha.attention(qa, kc[b:b + 1, :, :lk], vc[b:b + 1, :, :lk], causal=True,
                               return_lse=True, isa=isa)
        assert np.array_equal(out[rows], oa[0].transpose(1, 0, 2)), b
        assert np.array_equal(lse[rows], la[0].T), b
    # the cache as token-major [B, capacity, Hkv, D] views: the same bits
    kt = np.ascontiguousarray(kc.transpose(0, 2, 1, 3))
    vt = np.ascontiguousarray(vc.transpose(0, 2, 1, 3))
    o2 = mha.attention_varlen(q, kt, vt, cu, seqused_k=USED_K, cache_layout="bthd",
                              causal=True, isa=isa, num_threads=1)
    assert np.array_equal(o2, out)


@pytest.mark.parametrize("isa", available_isas())
@pytest.mark.parametrize("bs", [16, 32])
def test_paged_f16_cache_against_reference_and_alone(rng, isa, bs):
    B, H, Hkv, D, Dv = len(LENS_Q), 8, 2, 32, 16
    c = Paged(rng, "f16", B, Hkv, D, Dv, USED_K, bs)
    q, cu = packed(rng, LENS_Q, H, D)
    out, lse = mha.attention_varlen(q, c.k, c.v, cu, seqused_k=USED_K, block_table=c.table,
                                    causal=True, return_lse=True, isa=isa)
    for b, (lq, lk) in enumerate(zip(LENS_Q, USED_K)):
        rows = slice(cu[b], cu[b + 1])
        kw, vw = c.widened(b, lk)
        np.testing.assert_allclose(out[rows], reference(q[rows], kw, vw), rtol=RTOL, atol=ATOL)
        if lq == 0:
            continue
        # alone: the single-sequence paged call on entry b's table row
        qa = q[rows].transpose(1, 0, 2)[None]
        oa, la = mha.attention_paged(qa, c.k, c.v, c.table[b:b + 1], Tk=lk, causal=True,
                                     return_lse=True, isa=isa)
        assert np.array_equal(out[rows], oa[0].transpose(1, 0, 2)), b
        assert np.array_equal(lse[rows], la[0].T), b
        # and the contiguous 16-bit cache of the same values (attention())
        ob = mha.attention(qa, c.kw[b:b + 1, :, :lk].astype(np.float16),
                           c.vw[b:b + 1, :, :lk].astype(np.float16), causal=True, isa=isa)
        assert np.array_equal(out[rows], ob[0].transpose(1, 0, 2)), b
    # every thread count, workspace kind and bound: the same bits
    buf = nan_like(out.shape)
    for threads in (1, 2, 3):
        for ws in (None, "auto", np.zeros(1 << 22, np.uint8)):
            got = mha.attention_varlen(q, c.k, c.v, cu, seqused_k=USED_K, block_table=c.table,
                                       causal=True, isa=isa, num_threads=threads, workspace=ws,
                                       out=buf, max_seqlen_q=40,
                                       max_seqlen_k=c.max_blocks * bs)
            assert got is buf
            assert np.array_equal(got, out), (threads, ws)


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_variants_bitwise_alone(rng, dtype):
    # window, ALiBi, soft-cap, sinks, GQA, Dv != D, a bthd pool: each sequence
    # is still its own single-sequence call
    B, H, Hkv, D, Dv, bs = 4, 6, 3, 24, 40, 16
    lens_q, used = [1, 5, 16, 1], [33, 48, 16, 0]
    c = Paged(rng, dtype, B, Hkv, D, Dv, used, bs, spare_slots=0)
    kt, vt = (np.ascontiguousarray(p.transpose(0, 2, 1, 3)) for p in (c.k, c.v))
    q, cu = packed(rng, lens_q, H, D)
    kw = dict(causal=True, window=(9, 0), alibi_slopes=alibi(H), softcap=2.5,
              sinks=rand(rng, H), scale=0.3)
    out, lse = mha.attention_varlen(q, kt, vt, cu, seqused_k=used, block_table=c.table,
                                    kv_dtype=c.kd, cache_layout="bthd", return_lse=True, **kw)
    for b in range(B):
        rows = slice(cu[b], cu[b + 1])
        if used[b] == 0:  # no keys: zeros, and the sink's logit as lse
            assert np.all(out[rows] == 0)
            assert np.array_equal(lse[rows], np.broadcast_to(kw["sinks"], (lens_q[b], H)))
            continue
        qa = q[rows].transpose(1, 0, 2)[None]
        oa, la = mha.attention_paged(qa, kt, vt, c.table[b:b + 1], Tk=used[b], kv_dtype=c.kd,
                                     cache_layout="bthd", return_lse=True, **kw)
        assert np.array_equal(out[rows], oa[0].transpose(1, 0, 2)), b
        assert np.array_equal(lse[rows], la[0].T), b


def test_serving_step_after_kv_cache_write(rng):
    # a step as an engine runs it: write the new rows (a decode token for
    # entry 0, a chunk of 6 for entry 1) into bf16 pools, then one varlen call
    B, H, Hkv, D, bs = 2, 4, 2, 16, 16
    c = Paged(rng, "bf16", B, Hkv, D, D, [30, 10], bs)
    new = [1, 6]
    k_new, v_new = rand(rng, (B, Hkv, max(new), D)), rand(rng, (B, Hkv, max(new), D))
    for b in range(B):
        mha.kv_cache_write(c.k, c.v, k_new[b:b + 1, :, :new[b]], v_new[b:b + 1, :, :new[b]],
                           [30, 10][b], block_table=c.table[b:b + 1], kv_dtype="bf16")
    used = [31, 16]
    q, cu = packed(rng, new, H, D)
    out = mha.attention_varlen(q, c.k, c.v, cu, seqused_k=used, block_table=c.table,
                               kv_dtype="bf16", causal=True)
    for b in range(B):
        rows = slice(cu[b], cu[b + 1])
        kw = np.concatenate([c.kw[b, :, :used[b] - new[b]], to_16(k_new[b, :, :new[b]], "bf16")[2]],
                            axis=1)
        vw = np.concatenate([c.vw[b, :, :used[b] - new[b]], to_16(v_new[b, :, :new[b]], "bf16")[2]],
                            axis=1)
        np.testing.assert_allclose(out[rows], reference(q[rows], kw, vw), rtol=RTOL, atol=ATOL)


def test_trace_names_sequences(rng):
    c = Paged(rng, "f16", 3, 2, 8, 8, [40, 17, 5], 16)
    q, cu = packed(rng, [1, 9, 0], 4, 8)
    out, tr = mha.attention_varlen(q, c.k, c.v, cu, seqused_k=[40, 17, 5], block_table=c.table,
                                   causal=True, return_trace=True, num_threads=2)
    assert set(np.unique(tr["batch"])) == {0, 1}  # sequence 2 has no query rows
    assert np.array_equal(out, mha.attention_varlen(q, c.k, c.v, cu, seqused_k=[40, 17, 5],
                                                    block_table=c.table, causal=True))


def test_bad_seqused_k_raises_and_writes_nothing(rng):
    B, H, Hkv, D, bs = 2, 4, 2, 8, 16
    c = Paged(rng, "f16", B, Hkv, D, D, [20, 33], bs, spare_slots=0)  # 3 slots: 48 tokens
    q, cu = packed(rng, [1, 4], H, D)
    out = nan_like((5, H, D))
    call = dict(block_table=c.table, causal=True, out=out)
    # beyond the bound max_seqlen_k (C names the entry)
    e = raises("INVALID_ARGUMENT", mha.attention_varlen, q, c.k, c.v, cu, seqused_k=[20, 33],
               max_seqlen_k=32, **call)
    assert "seqused_k[1]" in e.message and e.message.startswith("mha_attention_varlen_kv_f32")
    # negative
    e = raises("INVALID_ARGUMENT", mha.attention_varlen, q, c.k, c.v, cu, seqused_k=[-1, 33],
               **call)
    assert "seqused_k[0]" in e.message
    # past what the table can hold (max_blocks·block_size = 48)
    raises("INVALID_ARGUMENT", mha.attention_varlen, q, c.k, c.v, cu, seqused_k=[20, 49], **call)
    # keys over a table slot that holds -1 (entry 0 has blocks for 20 tokens, i.e. 2 slots)
    e = raises("INVALID_ARGUMENT", mha.attention_varlen, q, c.k, c.v, cu, seqused_k=[33, 33],
               **call)
    assert "block_table" in e.message
    # a contiguous cache: past its capacity
    kc = np.zeros((B, Hkv, 24, D), np.float16)
    raises("INVALID_ARGUMENT", mha.attention_varlen, q, kc, kc.copy(), cu, seqused_k=[20, 25],
           out=out)
    assert np.all(np.isnan(out)), "a failed call wrote out"
    # ... the slots past an entry's keys are never read: -1 there is fine
    ok = mha.attention_varlen(q, c.k, c.v, cu, seqused_k=[20, 33], **call)
    assert ok is out and np.all(np.isfinite(out))
    # an out that lies in a (float32) pool: mha refuses it
    pool = Paged(rng, "f32", B, Hkv, D, D, [20, 33], bs)
    inside = pool.k.reshape(-1)[:5 * H * D].reshape(5, H, D)
    e = raises("INVALID_STRIDE", mha.attention_varlen, q, pool.k, pool.v, cu, seqused_k=[20, 33],
               block_table=pool.table, out=inside)
    assert "overlap" in e.message
    # shapes and dtypes the Python front checks
    raises("INVALID_SHAPE", mha.attention_varlen, q, c.k, c.v, cu, seqused_k=[20, 33, 1],
           block_table=c.table)
    raises("INVALID_SHAPE", mha.attention_varlen, q, kc[:1], kc[:1].copy(), cu, seqused_k=[1, 1])
    raises("INVALID_ARGUMENT", mha.attention_varlen, q, c.k, c.v, cu,
           seqused_k=np.array([20, 2 ** 32 + 1]), block_table=c.table)
    with pytest.raises(TypeError, match="seqused_k"):
        mha.attention_varlen(q, c.k, c.v, cu, seqused_k=[20.0, 33.0], block_table=c.table)
    with pytest.raises(TypeError, match="not both"):
        mha.attention_varlen(q, c.k, c.v, cu, cu, seqused_k=[20, 33], block_table=c.table)
    with pytest.raises(TypeError, match="neither"):
        mha.attention_varlen(q, c.k, c.v, cu)
    with pytest.raises(TypeError, match="block_table"):
        mha.attention_varlen(q, q, q, cu, cu, block_table=c.table)
    with pytest.raises(TypeError, match="kv_dtype"):
        mha.attention_varlen(q, c.k.view(np.uint16), c.v.view(np.uint16), cu, seqused_k=[20, 33],
                             block_table=c.table)
