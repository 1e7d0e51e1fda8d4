"""attention(dtype="f16" / "bf16"): Q, K, V and out in a 16-bit type
(mha_attention). The contract: bitwise attention() on the float32 values,
rounded once to the type (to nearest even); weights and lse float32 and
bitwise that call's."""
import numpy as np
import pytest

import mha


def bf16_bits(x):
    """float32 → bfloat16 bits, to nearest even (finite values)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def random_bf16(rng, shape):
    return bf16_bits(rng.uniform(-1.5, 1.5, shape).astype(np.float32))


def test_bf16_bits_helper_rounds_to_nearest_even():
    x = np.array([1.0, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, -2.5], np.float32)
    assert bf16_bits(x).tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020]


@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
@pytest.mark.parametrize("causal", [False, True])
def test_f16_bitwise_float32_rounded(layout, causal):
    rng = np.random.default_rng(1)
    B, H, Hkv, Tq, Tk, D = 2, 4, 2, 33, 65, 24
    shp = (lambda b, h, t, d: (b, h, t, d)) if layout == "bhtd" else (lambda b, h, t, d: (b, t, h, d))
    q = rng.uniform(-1, 1, shp(B, H, Tq, D)).astype(np.float16)
    k = rng.uniform(-1, 1, shp(B, Hkv, Tk, D)).astype(np.float16)
    v = rng.uniform(-1, 1, shp(B, Hkv, Tk, D)).astype(np.float16)
    out, w, lse = mha.attention(q, k, v, layout=layout, causal=causal, dtype="f16",
                                need_weights=True, return_lse=True)
    ref, wr, lr = mha.attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32),
                                layout=layout, causal=causal, need_weights=True, return_lse=True)
    assert out.dtype == np.float16 and out.shape == ref.shape
    # NumPy's float32 → float16 cast rounds to nearest even
    np.testing.assert_array_equal(out.view(np.uint16), ref.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(w, wr)
    np.testing.assert_array_equal(lse, lr)


def test_bf16_bits_bitwise_and_out_view():
    rng = np.random.default_rng(2)
    B, H, Tq, Tk, D = 1, 3, 17, 40, 16
    q, k, v = (random_bf16(rng, (B, H, t, D)) for t in (Tq, Tk, Tk))
    out = mha.attention(q, k, v, dtype="bf16", window=(5, 0), causal=True)
    ref = mha.attention(bf16_value(q), bf16_value(k), bf16_value(v), window=(5, 0), causal=True)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, bf16_bits(ref))
    # an out= view (every other head of a larger buffer) written in place
    big = np.full((B, 2 * H, Tq, D), 0x7FA5, np.uint16)
    view = big[:, ::2]
    got = mha.attention(q, k, v, dtype="bf16", window=(5, 0), causal=True, out=view)
    assert got is view
    np.testing.assert_array_equal(view, bf16_bits(ref))
    assert (big[:, 1::2] == 0x7FA5).all()


def test_ml_dtypes_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(3)
    q, k, v = (rng.uniform(-1, 1, (1, 2, 9, 8)).astype(ml_dtypes.bfloat16) for _ in range(3))
    out = mha.attention(q, k, v, dtype="bf16")
    assert out.dtype == q.dtype
    ref = mha.attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
    np.testing.assert_array_equal(out.view(np.uint16), bf16_bits(ref))


def test_refusals():
    q = np.zeros((1, 1, 2, 4), np.float16) + np.float16(0.5)
    with pytest.raises(ValueError):
        mha.attention(q, q, q, dtype="f8")
    with pytest.raises(TypeError):
        mha.attention(q, q, q, dtype="f16", kv_dtype="f16")
    with pytest.raises(TypeError):  # float32 q with dtype f16: never cast
        mha.attention(q.astype(np.float32), q, q, dtype="f16")
    with pytest.raises(TypeError):  # an out= of another dtype
        mha.attention(q, q, q, dtype="f16", out=np.zeros((1, 1, 2, 4), np.float32))
    with pytest.raises(TypeError):  # float16 values are not bf16 bits
        mha.attention(q, q, q, dtype="bf16")
