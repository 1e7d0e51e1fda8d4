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
