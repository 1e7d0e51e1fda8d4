"""attention(dtype="f16" / "bf16"): Q, K, V and out in a 16-bit type
(mha_attention). The contract: bitwise attention() on the float32 values,
rounded once to the type (to nearest even); weights and lse float32 and
bitwise that call's."""
import numpy as np
import pytest

import mha
from conftest import widening_isa


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
    isa = widening_isa()  # the widening path's contract; the BF16 form has its own
    out = mha.attention(q, k, v, dtype="bf16", window=(5, 0), causal=True, isa=isa)
    ref = mha.attention(bf16_value(q), bf16_value(k), bf16_value(v), window=(5, 0), causal=True, isa=isa)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, bf16_bits(ref))
    # an out= view (every other head of a larger buffer) written in place
    big = np.full((B, 2 * H, Tq, D), 0x7FA5, np.uint16)
    view = big[:, ::2]
    got = mha.attention(q, k, v, dtype="bf16", window=(5, 0), causal=True, out=view, isa=isa)
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


def test_varlen_dtype_packed_and_over_a_cache():
    """attention_varlen(dtype=): packed f16 / bf16 q, k, v (mha_attention_varlen),
    and 16-bit q over a paged bf16 cache (mha_attention_varlen_kv): bitwise
    the float32 call rounded once."""
    rng = np.random.default_rng(4)
    H, Hkv, D = 4, 2, 16
    cu_q = np.array([0, 1, 9, 9, 14])
    cu_k = np.array([0, 30, 39, 52, 52])
    q16 = rng.uniform(-1, 1, (14, H, D)).astype(np.float16)
    k16 = rng.uniform(-1, 1, (52, Hkv, D)).astype(np.float16)
    v16 = rng.uniform(-1, 1, (52, Hkv, D)).astype(np.float16)
    out = mha.attention_varlen(q16, k16, v16, cu_q, cu_k, causal=True, dtype="f16")
    ref = mha.attention_varlen(q16.astype(np.float32), k16.astype(np.float32), v16.astype(np.float32),
                               cu_q, cu_k, causal=True)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out.view(np.uint16), ref.astype(np.float16).view(np.uint16))
    # bf16 bits, and an out= of the right dtype written in place (isa: the widening
    # path's contract; the BF16 form has its own)
    qb, kb, vb = (bf16_bits(a.astype(np.float32)) for a in (q16, k16, v16))
    isa = widening_isa()
    outb = np.full((14, H, D), 0x7FA5, np.uint16)
    got = mha.attention_varlen(qb, kb, vb, cu_q, cu_k, causal=True, dtype="bf16", out=outb, isa=isa)
    assert got is outb
    refb = mha.attention_varlen(bf16_value(qb), bf16_value(kb), bf16_value(vb), cu_q, cu_k, causal=True,
                                isa=isa)
    np.testing.assert_array_equal(outb, bf16_bits(refb))
    # over a paged bf16 cache: 4 entries of 32 tokens in blocks of 16, the table reversed
    kc = bf16_bits(rng.uniform(-1, 1, (8, Hkv, 16, D)).astype(np.float32))
    vc = bf16_bits(rng.uniform(-1, 1, (8, Hkv, 16, D)).astype(np.float32))
    table = np.arange(8).reshape(4, 2)[:, ::-1].copy()
    used = np.array([20, 32, 0, 5])
    outc = mha.attention_varlen(qb, kc, vc, cu_q, seqused_k=used, block_table=table, kv_dtype="bf16",
                                causal=True, dtype="bf16", isa=isa)
    refc = mha.attention_varlen(bf16_value(qb), kc, vc, cu_q, seqused_k=used, block_table=table,
                                kv_dtype="bf16", causal=True, isa=isa)
    np.testing.assert_array_equal(outc, bf16_bits(refc))
    with pytest.raises(ValueError):
        mha.attention_varlen(q16, k16, v16, cu_q, cu_k, dtype="f8")
    with pytest.raises(TypeError):
        mha.attention_varlen(q16, k16, v16, cu_q, cu_k, dtype="bf16")  # float16 arrays are not bf16


def test_layer_forward_dtype():
    """Layer.forward(dtype=): x, x_k and out 16-bit (mha_layer_args.dtype), bitwise
    the float32 forward on the widened values rounded once."""
    rng = np.random.default_rng(5)
    d_model, H = 32, 4
    w = [rng.uniform(-0.3, 0.3, (d_model, d_model)).astype(np.float32) for _ in range(4)]
    layer = mha.Layer(d_model, H, w_q=w[0], w_k=w[1], w_v=w[2], w_o=w[3])
    x = rng.uniform(-1, 1, (2, 9, d_model)).astype(np.float16)
    xk = rng.uniform(-1, 1, (2, 13, d_model)).astype(np.float16)
    out = layer.forward(x, xk, dtype="f16")
    ref = layer.forward(x.astype(np.float32), xk.astype(np.float32))
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out.view(np.uint16), ref.astype(np.float16).view(np.uint16))
    xb = bf16_bits(x.astype(np.float32))
    outb = layer.forward(xb, dtype="bf16", causal=True)
    refb = layer.forward(bf16_value(xb), causal=True)
    np.testing.assert_array_equal(outb, bf16_bits(refb))
    layer.close()


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_layer_weights_dtype(dtype):
    """Layer(dtype=): 16-bit weights and biases read in place (mha_layer_desc.dtype),
    bitwise the plan made from their float32 values; with 16-bit inputs too."""
    rng = np.random.default_rng(6)
    d_model, H, Hkv = 24, 4, 2
    D = d_model // H
    shapes = {"w_q": (H * D, d_model), "w_k": (Hkv * D, d_model), "w_v": (Hkv * D, d_model),
              "w_o": (d_model, H * D), "b_q": (H * D,), "b_k": (Hkv * D,), "b_v": (Hkv * D,),
              "b_o": (d_model,)}
    w32 = {n: rng.uniform(-0.3, 0.3, s).astype(np.float32) for n, s in shapes.items()}
    if dtype == "f16":
        w16 = {n: a.astype(np.float16) for n, a in w32.items()}
        wide = {n: a.astype(np.float32) for n, a in w16.items()}
    else:
        w16 = {n: bf16_bits(a) for n, a in w32.items()}
        wide = {n: bf16_value(a) for n, a in w16.items()}
    ref_layer = mha.Layer(d_model, H, num_kv_heads=Hkv, **wide)
    layer = mha.Layer(d_model, H, num_kv_heads=Hkv, dtype=dtype, **w16)
    x = rng.uniform(-1, 1, (2, 7, d_model)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x, causal=True), ref_layer.forward(x, causal=True))
    x16 = x.astype(np.float16) if dtype == "f16" else bf16_bits(x)
    if dtype == "bf16" and layer.isa in ("neon_bf16", "avx512_bf16", "amx_bf16"):
        # bf16 weights and x on a BF16 unit: the layer's BF16 form (mha.h), not the
        # widening path's bits; within its bound of the float32 forward
        got = bf16_value(layer.forward(x16, dtype=dtype))
        want = ref_layer.forward(bf16_value(x16))
        assert np.max(np.abs(got - want)) <= 0.05 * np.max(np.abs(want))
    else:
        np.testing.assert_array_equal(layer.forward(x16, dtype=dtype).view(np.uint16),
                                      ref_layer.forward(x16, dtype=dtype).view(np.uint16))
    # the values were read as 16-bit: not the plan of the unrounded float32 weights
    assert not np.array_equal(layer.forward(x), mha.Layer(d_model, H, num_kv_heads=Hkv, **w32).forward(x))
    with pytest.raises(TypeError):  # float32 arrays are not 16-bit weights
        mha.Layer(d_model, H, num_kv_heads=Hkv, dtype=dtype, **w32)
    with pytest.raises(ValueError):
        mha.Layer(d_model, H, num_kv_heads=Hkv, dtype="f8", **w16)
    layer.close()
    ref_layer.close()
