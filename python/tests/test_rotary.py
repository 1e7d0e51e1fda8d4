"""Rotary embeddings in the Python front: mha.rotary_table against float64,
attention_varlen(rotary_cos=, rotary_sin=) over a cache written by
kv_cache_write(rotary_cos=, ...) against a float64 reference of each style
(GPT-NeoX halves, GPT-J interleaved; full and partial rotary_dim), bitwise
the call on Q rotated beforehand (rotated in float32 by mha.h's formula), and
the refusals (MhaError / TypeError, nothing written)."""
import numpy as np
import pytest

import mha
from conftest import nan_like, rand
from test_varlen_kv import packed, reference


def rotate64(x, cos, sin, pos, interleaved):
    """x [..., D] rotated in float64 at pos (x.shape[:-1]) with the table's values."""
    half = cos.shape[1]
    c, s = cos[pos].astype(np.float64), sin[pos].astype(np.float64)
    y = x.astype(np.float64).copy()
    if interleaved:
        a, b = y[..., 0:2 * half:2].copy(), y[..., 1:2 * half:2].copy()
        y[..., 0:2 * half:2], y[..., 1:2 * half:2] = a * c - b * s, b * c + a * s
    else:
        a, b = y[..., :half].copy(), y[..., half:2 * half].copy()
        y[..., :half], y[..., half:2 * half] = a * c - b * s, b * c + a * s
    return y


def test_table_against_float64():
    cos, sin = mha.rotary_table(64, 4096, 10000.0)
    p = np.arange(4096, dtype=np.float64)[:, None]
    f = 10000.0 ** (-np.arange(32, dtype=np.float64) * 2 / 64)
    assert np.abs(cos - np.cos(p * f)).max() < 1e-7
    assert np.abs(sin - np.sin(p * f)).max() < 1e-7
    inv = np.linspace(0.01, 1.0, 32).astype(np.float32)
    c2, s2 = mha.rotary_table(64, 100, inv_freq=inv, position_scale=0.5, attn_factor=1.1)
    a = (np.arange(100, dtype=np.float64)[:, None] * 0.5) * inv.astype(np.float64)
    assert np.abs(c2 - 1.1 * np.cos(a)).max() < 2e-7
    assert np.abs(s2 - 1.1 * np.sin(a)).max() < 2e-7


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("D,dim", [(32, 32), (32, 16), (24, 8)])
def test_serving_step_with_rotary(interleaved, D, dim):
    rng = np.random.default_rng(7 + D + dim + interleaved)
    H, Hkv, Dv = 4, 2, 8
    lens_q, used = [1, 9, 1, 4], [40, 9, 1, 25]
    B, cap = len(used), 48
    cos, sin = mha.rotary_table(dim, cap, 10000.0)
    q, cu = packed(rng, lens_q, H, D)
    k_raw, v = rand(rng, (B, Hkv, cap, D)), rand(rng, (B, Hkv, cap, Dv))
    k_cache = nan_like((B, Hkv, cap, D))
    v_cache = nan_like((B, Hkv, cap, Dv))
    mha.kv_cache_write(k_cache, v_cache, k_raw, v, np.zeros(B, np.int32), rotary_cos=cos, rotary_sin=sin,
                       rotary_interleaved=interleaved)
    pos_k = np.broadcast_to(np.arange(cap)[None, None, :], (B, Hkv, cap))
    np.testing.assert_allclose(k_cache, rotate64(k_raw, cos, sin, pos_k, interleaved), rtol=0, atol=3e-7)
    out = mha.attention_varlen(q, k_cache, v_cache, cu, seqused_k=used, causal=True, rotary_cos=cos,
                               rotary_sin=sin, rotary_interleaved=interleaved)
    qpos = np.concatenate([np.arange(u - lq, u) for u, lq in zip(used, lens_q)])
    qpos_h = np.broadcast_to(qpos[:, None], q.shape[:2])
    for b in range(B):
        rows = slice(cu[b], cu[b + 1])
        want = reference(rotate64(q[rows], cos, sin, qpos_h[rows], interleaved),
                         rotate64(k_raw[b, :, :used[b]], cos, sin, pos_k[b, :, :used[b]], interleaved),
                         v[b, :, :used[b]])
        np.testing.assert_allclose(out[rows], want, rtol=1e-5, atol=1e-5)
    # bitwise: Q rotated beforehand in float32 by the formula, and positions given
    half = dim // 2
    c, s = cos[qpos][:, None, :], sin[qpos][:, None, :]
    qr = q.copy()
    if interleaved:
        a, b_ = q[..., 0:dim:2], q[..., 1:dim:2]
        qr[..., 0:dim:2], qr[..., 1:dim:2] = a * c - b_ * s, b_ * c + a * s
    else:
        a, b_ = q[..., :half], q[..., half:dim]
        qr[..., :half], qr[..., half:dim] = a * c - b_ * s, b_ * c + a * s
    before = mha.attention_varlen(qr, k_cache, v_cache, cu, seqused_k=used, causal=True)
    assert np.array_equal(out, before)
    given = mha.attention_varlen(q, k_cache, v_cache, cu, seqused_k=used, causal=True, rotary_cos=cos,
                                 rotary_sin=sin, rotary_interleaved=interleaved, rotary_positions=qpos,
                                 num_threads=2)
    assert np.array_equal(out, given)


def test_refusals():
    rng = np.random.default_rng(3)
    cos, sin = mha.rotary_table(8, 16)
    q, cu = packed(rng, [2], 2, 8)
    k, v = rand(rng, (1, 2, 16, 8)), rand(rng, (1, 2, 16, 8))
    with pytest.raises(mha.MhaError) as e:  # natural positions past the table
        mha.attention_varlen(q, k, v, cu, seqused_k=[16], rotary_cos=cos[:10], rotary_sin=sin[:10])
    assert e.value.status_name == "MHA_STATUS_INVALID_ARGUMENT"
    with pytest.raises(mha.MhaError):  # wider than the heads
        mha.attention_varlen(q, k, v, cu, seqused_k=[4], rotary_cos=np.ones((16, 8), np.float32),
                             rotary_sin=np.ones((16, 8), np.float32))
    with pytest.raises(TypeError):
        mha.attention_varlen(q, k, v, cu, seqused_k=[4], rotary_cos=cos)
    with pytest.raises(TypeError):  # packed keys take no rotary
        mha.attention_varlen(q, q, q, cu, cu_seqlens_k=cu, rotary_cos=cos, rotary_sin=sin)
    kc, vc = nan_like((1, 2, 16, 8)), nan_like((1, 2, 16, 8))
    with pytest.raises(mha.MhaError):  # rows 12 .. 19 past a table of 16
        mha.kv_cache_write(kc, vc, rand(rng, (1, 2, 8, 8)), rand(rng, (1, 2, 8, 8)), [12], rotary_cos=cos,
                           rotary_sin=sin)
    assert np.isnan(kc).all() and np.isnan(vc).all()
