"""mha.kv_cache_write_varlen and mha.kv_cache_write_slots (the serving writers):
bitwise what kv_cache_write writes per sequence, in f16 and bf16, contiguous and
paged; by slots the same bytes as per sequence; K rotated in the writer
bitwise K rotated by kv_cache_write's rotary (mha.h's formula); the refusals
write nothing."""
import numpy as np
import pytest

import mha
from conftest import rand



def empty(shape, dt):
    a = np.zeros(shape, dt)
    a.view(np.uint16)[...] = 0xFFFF  # NaN in both 16-bit types
    return a


@pytest.mark.parametrize("dt,kd", [(np.float16, None), (np.uint16, "bf16")])
@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("rotary", [False, True])
def test_varlen_and_slots_match_the_per_sequence_writer(dt, kd, paged, rotary):
    rng = np.random.default_rng(5)
    Hkv, D, Dv, bs = 2, 16, 8, 16
    lens, pos = [3, 0, 17, 1], [5, 0, 0, 30]
    B, cap = len(lens), 48
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    kn, vn = rand(rng, (int(cu[-1]), Hkv, D)), rand(rng, (int(cu[-1]), Hkv, Dv))
    cos, sin = mha.rotary_table(D, cap, 500.0)
    rot = dict(rotary_cos=cos, rotary_sin=sin) if rotary else {}
    rot["kv_dtype"] = kd
    per = cap // bs
    table = (np.arange(B * per)[::-1].reshape(B, per)).astype(np.int32) if paged else None
    shape = (B * per, Hkv, bs, D) if paged else (B, Hkv, cap, D)
    vshape = shape[:3] + (Dv,)
    k1, v1, k2, v2 = empty(shape, dt), empty(vshape, dt), empty(shape, dt), empty(vshape, dt)
    mha.kv_cache_write_varlen(k1, v1, kn, vn, cu, pos, block_table=table, **rot)
    for b in range(B):
        if lens[b] == 0:
            continue
        rows = slice(cu[b], cu[b + 1])
        mha.kv_cache_write(k2, v2, kn[rows].transpose(1, 0, 2)[None], vn[rows].transpose(1, 0, 2)[None],
                           [pos[b]], block_table=None if table is None else table[b:b + 1], **rot) \
            if paged else \
            mha.kv_cache_write(k2[b:b + 1], v2[b:b + 1], kn[rows].transpose(1, 0, 2)[None],
                               vn[rows].transpose(1, 0, 2)[None], [pos[b]], **rot)
    # every new element written once (random values are never all-ones bits), nothing else
    assert (k1.view(np.uint16) != 0xFFFF).sum() == int(cu[-1]) * Hkv * D
    assert (v1.view(np.uint16) != 0xFFFF).sum() == int(cu[-1]) * Hkv * Dv
    assert np.array_equal(k1.view(np.uint16), k2.view(np.uint16))
    assert np.array_equal(v1.view(np.uint16), v2.view(np.uint16))
    if paged:  # by slots: token p of entry b at table[b][p // bs]·bs + p % bs
        slots = np.concatenate([[table[b][(pos[b] + j) // bs] * bs + (pos[b] + j) % bs for j in range(lens[b])]
                                for b in range(B)]).astype(np.int32)
        positions = np.concatenate([np.arange(pos[b], pos[b] + lens[b]) for b in range(B)]).astype(np.int32)
        k3, v3 = empty(shape, dt), empty(vshape, dt)
        extra = dict(rot, rotary_positions=positions) if rotary else {"kv_dtype": kd}
        mha.kv_cache_write_slots(k3, v3, kn, vn, slots, **extra)
        assert np.array_equal(k1.view(np.uint16), k3.view(np.uint16))
        assert np.array_equal(v1.view(np.uint16), v3.view(np.uint16))


def test_refusals_write_nothing():
    rng = np.random.default_rng(2)
    k, v = empty((4, 2, 16, 8), np.float16), empty((4, 2, 16, 8), np.float16)
    kn, vn = rand(rng, (3, 2, 8)), rand(rng, (3, 2, 8))
    cos, sin = mha.rotary_table(8, 64)
    with pytest.raises(mha.MhaError):  # a slot does not tell a position
        mha.kv_cache_write_slots(k, v, kn, vn, np.array([0, 1, 2], np.int32), rotary_cos=cos, rotary_sin=sin)
    with pytest.raises(mha.MhaError):  # a slot past the pools
        mha.kv_cache_write_slots(k, v, kn, vn, np.array([0, 1, 64], np.int32))
    with pytest.raises(mha.MhaError):  # past the table's positions
        mha.kv_cache_write_varlen(k, v, kn, vn, [0, 3], [62], block_table=np.arange(4, dtype=np.int32)[None],
                                  rotary_cos=cos, rotary_sin=sin)
    assert (k.view(np.uint16) == 0xFFFF).all() and (v.view(np.uint16) == 0xFFFF).all()
    with pytest.raises(TypeError):
        mha.kv_cache_write_varlen(k, v, kn, vn, [0, 3], [0], block_table=np.zeros((1, 4), np.int32),
                                  rotary_positions=[0, 1, 2])


@pytest.mark.parametrize("paged", [False, True])
def test_layer_fills_a_cache(paged):
    """Layer.forward(k_cache=, v_cache=): the cache holds its K and V projections
    rounded as kv_cache_write rounds them (the fp32 cache's rows, written again
    into an f16 cache), out unchanged."""
    rng = np.random.default_rng(11)
    B, T, dm, H, Hkv = 2, 9, 24, 4, 2
    D = dm // H
    w = {n: rand(rng, s) for n, s in (("w_q", (H * D, dm)), ("w_k", (Hkv * D, dm)),
                                        ("w_v", (Hkv * D, dm)), ("w_o", (dm, H * D)))}
    layer = mha.Layer(dm, H, num_kv_heads=Hkv, **w)
    x = rand(rng, (B, T, dm))
    plain = layer(x)
    k32, v32 = np.full((B, Hkv, T, D), np.nan, np.float32), np.full((B, Hkv, T, D), np.nan, np.float32)
    out32 = layer(x, k_cache=k32, v_cache=v32)
    assert np.array_equal(out32, plain) and not np.isnan(k32).any() and not np.isnan(v32).any()
    bs, per = 16, 1
    table = np.array([[1], [0]], np.int32) if paged else None
    shape = (B * per, Hkv, bs, D) if paged else (B, Hkv, T, D)
    k16, v16 = empty(shape, np.float16), empty(shape, np.float16)
    layer(x, k_cache=k16, v_cache=v16, block_table=table, kv_pos=[0, 0])
    kw, vw = empty(shape, np.float16), empty(shape, np.float16)
    mha.kv_cache_write(kw, vw, k32, v32, 0, block_table=table)
    assert np.array_equal(k16.view(np.uint16), kw.view(np.uint16))
    assert np.array_equal(v16.view(np.uint16), vw.view(np.uint16))
    with pytest.raises(TypeError):
        layer(x, k_cache=k16)


@pytest.mark.parametrize("paged", [False, True])
def test_int8_cache(paged):
    """An int8 cache (np.int8 with k_scales / v_scales): the writers quantize by
    mha.h's rule, attention_paged / attention_varlen over it give bitwise
    attention() on the dequantized values, the slots writer the same bytes;
    scales missing or misshaped are refused."""
    rng = np.random.default_rng(13)
    B, H, Hkv, D, bs, T = 2, 4, 2, 16, 16, 40
    per = -(-T // bs)
    table = np.arange(B * per, dtype=np.int32)[::-1].reshape(B, per).copy() if paged else None
    shape = (B * per, Hkv, bs, D) if paged else (B, Hkv, T, D)
    k8, v8 = np.zeros(shape, np.int8), np.zeros(shape, np.int8)
    ks, vs = np.zeros(shape[:3], np.float32), np.zeros(shape[:3], np.float32)
    kn, vn = rand(rng, (B * T, Hkv, D)), rand(rng, (B * T, Hkv, D))
    cu = np.array([0, T, 2 * T], np.int32)
    mha.kv_cache_write_varlen(k8, v8, kn, vn, cu, [0, 0], block_table=table, k_scales=ks, v_scales=vs)
    # the rule, from mha.h's text, on one row
    x = kn[T + 5, 1].astype(np.float64)
    amax = np.abs(x).max()
    want_q = np.clip(np.round(x * (127.0 / amax)), -127, 127).astype(np.int8)  # np.round: ties to even
    if paged:
        blk, row = table[1][5 // bs], 5 % bs
        got_q, got_s = k8[blk, 1, row], ks[blk, 1, row]
    else:
        got_q, got_s = k8[1, 1, 5], ks[1, 1, 5]
    assert np.array_equal(got_q, want_q) and got_s == np.float32(amax / 127.0)

    def dequant(q8, s):  # [B, Hkv, T, D] float32, (float)q · scale
        d = q8.astype(np.float32) * s[..., None]
        if paged:
            d = d[table].transpose(0, 2, 1, 3, 4).reshape(B, Hkv, per * bs, D)
        return np.ascontiguousarray(d[:, :, :T])
    kd, vd = dequant(k8, ks), dequant(v8, vs)
    q = rand(rng, (B, H, 1, D))
    want = mha.attention(q, kd, vd)
    if paged:
        got = mha.attention_paged(q, k8, v8, table, Tk=T, k_scales=ks, v_scales=vs)
        assert np.array_equal(got, want)
        qv = q[:, :, 0]  # [B, H, D] as packed rows
        out = mha.attention_varlen(qv, k8, v8, np.array([0, 1, 2], np.int32), seqused_k=[T, T],
                                   block_table=table, k_scales=ks, v_scales=vs)
        assert np.array_equal(out, want[:, :, 0])
        slots = np.concatenate([[table[b][j // bs] * bs + j % bs for j in range(T)] for b in range(B)])
        k2, v2 = np.zeros_like(k8), np.zeros_like(v8)
        ks2, vs2 = np.zeros_like(ks), np.zeros_like(vs)
        mha.kv_cache_write_slots(k2, v2, kn, vn, slots.astype(np.int32), k_scales=ks2, v_scales=vs2)
        assert np.array_equal(k2, k8) and np.array_equal(ks2, ks) and np.array_equal(vs2, vs)
    with pytest.raises(TypeError):
        mha.kv_cache_write_varlen(k8, v8, kn, vn, cu, [0, 0], block_table=table)  # no scales
    with pytest.raises(mha.MhaError):
        mha.kv_cache_write_varlen(k8, v8, kn, vn, cu, [0, 0], block_table=table, k_scales=ks[:1],
                                  v_scales=vs[:1])
    with pytest.raises(TypeError):
        mha.attention(q, k8, v8, kv_dtype="int8")
