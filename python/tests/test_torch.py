"""PyTorch: torch tensors through every call family (read in place, results
torch tensors, out= and caches written in place), and mha.torch: the custom
ops and scaled_dot_product_attention against
torch.nn.functional.scaled_dot_product_attention, eagerly and under
torch.compile(fullgraph=True), and the NotImplementedError cases.

Tolerance: against PyTorch's SDPA in float64, the core's RTOL = ATOL = 1e-5
(conftest); mha against itself (NumPy vs torch, eager vs compiled): bitwise.
Skipped without torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import mha  # noqa: E402
import mha.torch as mt  # noqa: E402
from mha import _core, _kv_cache, _tensors  # noqa: E402
from conftest import ATOL, RTOL  # noqa: E402


def randn(g, *shape):
    return torch.rand(*shape, generator=g) * 2 - 1


@pytest.fixture
def g(request):
    return torch.Generator().manual_seed(sum(map(ord, request.node.nodeid)) & 0xFFFFFFFF)


@pytest.fixture
def seen(monkeypatch):
    """The data pointers of the q/k/v arrays attention() and attention_paged() pass to mha."""
    ptrs = []
    real = _core._input_view

    def spy(a, axes, allow_row0=False):
        a, st = real(a, axes, allow_row0)
        ptrs.append(a.ctypes.data)
        return a, st
    monkeypatch.setattr(_core, "_input_view", spy)
    monkeypatch.setattr(_kv_cache, "_input_view", spy)
    return ptrs


def ref_sdpa(q, k, v, **kw):
    """PyTorch's SDPA in float64 (the mask too, when it is float)."""
    m = kw.get("attn_mask")
    if m is not None and m.dtype != torch.bool:
        kw["attn_mask"] = m.double()
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), **kw)


def close(got, want):
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.double(), want.double(), rtol=RTOL, atol=ATOL)


def qkv(g, B=2, H=4, Hkv=2, Tq=5, Tk=9, D=16, Dv=8):
    return randn(g, B, H, Tq, D), randn(g, B, Hkv, Tk, D), randn(g, B, Hkv, Tk, Dv)


# ---------------------------------------------------------------------------- tensors in and out


def test_import_mha_torch_registers_the_ops():
    for name in ("attention", "attention_paged", "attention_varlen", "kv_cache_write"):
        assert hasattr(torch.ops.mha, name)
    assert "mha::attention" in str(torch.ops.mha.attention.default._schema)


def test_torch_in_torch_out_without_copy(g, seen):
    q, k, v = qkv(g)
    q.requires_grad_(True)  # detached, not copied
    got, w, lse = mha.attention(q, k, v, causal=True, need_weights=True, return_lse=True)
    assert seen == [q.data_ptr(), k.data_ptr(), v.data_ptr()]
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in (got, w, lse))
    want, ww, wl = mha.attention(q.detach().numpy(), k.numpy(), v.numpy(), causal=True,
                                 need_weights=True, return_lse=True)
    assert np.array_equal(got.numpy(), want) and np.array_equal(w.numpy(), ww)
    assert np.array_equal(lse.numpy(), wl)
    # strided views: the bthd layout of a transposed buffer, a slice, a broadcast batch
    qt = q.detach().transpose(1, 2)                 # [B,Tq,H,D] view of a bhtd tensor
    kb = torch.cat([k, k], 2)[:, :, 4:13].transpose(1, 2)
    vb = v[:1].expand(2, -1, -1, -1).transpose(1, 2)
    del seen[:]
    out = torch.full((2, 5, 4, 8), float("nan"))
    got = mha.attention(qt, kb, vb, layout="bthd", out=out)
    assert got is out
    assert seen == [qt.data_ptr(), kb.data_ptr(), vb.data_ptr()]
    want = mha.attention(qt.numpy(), kb.numpy(), np.broadcast_to(v[:1].numpy(), (2,) + v.shape[1:])
                         .transpose(0, 2, 1, 3), layout="bthd")
    assert np.array_equal(out.numpy(), want)


def test_mixed_and_cast_inputs(g):
    q, k, v = qkv(g)
    want = mha.attention(q.numpy(), k.numpy(), v.numpy())
    got = mha.attention(q.numpy(), k, v.numpy())     # one torch tensor: torch out
    assert isinstance(got, torch.Tensor) and np.array_equal(got.numpy(), want)
    # float64 and bfloat16 queries are cast, as NumPy dtypes are
    got = mha.attention(q.double(), k, v)
    assert np.array_equal(got.numpy(), mha.attention(q.double().numpy(), k.numpy(), v.numpy()))
    qb = q.to(torch.bfloat16)
    got = mha.attention(qb, k, v)
    assert np.array_equal(got.numpy(), mha.attention(qb.float().numpy(), k.numpy(), v.numpy()))
    with pytest.raises(TypeError, match="out: dtype torch.bfloat16"):
        mha.attention(q, k, v, out=torch.empty(2, 4, 5, 8, dtype=torch.bfloat16))


def test_other_devices_are_refused(g):
    q, k, v = qkv(g)
    meta = torch.empty(2, 4, 5, 16, device="meta")
    with pytest.raises(ValueError, match="q is on device meta; mha runs on the CPU"):
        mha.attention(meta, k, v)
    with pytest.raises(ValueError, match="k_cache is on device meta"):
        mha.kv_cache_write(meta, meta, k, v, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_kv_cache_in_place_and_paged(g, seen, dtype):
    B, H, Hkv, T, D, bs = 2, 4, 2, 40, 16, 16
    kn, vn = randn(g, B, Hkv, T, D), randn(g, B, Hkv, T, D)
    # contiguous cache: the torch tensor is written in place
    kc = torch.zeros(B, Hkv, 64, D, dtype=dtype)
    vc = torch.zeros(B, Hkv, 64, D, dtype=dtype)
    ptr = kc.data_ptr()
    pos = torch.tensor([3, 20], dtype=torch.int32)
    assert mha.kv_cache_write(kc, vc, kn, vn, pos) is None
    assert kc.data_ptr() == ptr
    np_dt = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.uint16}[dtype]
    kd = "bf16" if dtype == torch.bfloat16 else None
    wk, wv = np.zeros(kc.shape, np_dt), np.zeros(vc.shape, np_dt)
    mha.kv_cache_write(wk, wv, kn.numpy(), vn.numpy(), pos.numpy(), kv_dtype=kd)
    bits = (lambda t: t.view(torch.int16).numpy().view(np.uint16)) if kd else (lambda t: t.numpy())
    assert np.array_equal(bits(kc), wk) and np.array_equal(bits(vc), wv)
    # the contiguous cache read by attention (bf16 tensors as a bf16 cache)
    q = randn(g, B, H, 3, D)
    del seen[:]
    got = mha.attention(q, kc, vc, kv_len=pos + T, causal=True, align="kv_end")
    assert seen == [q.data_ptr(), kc.data_ptr(), vc.data_ptr()]
    want = mha.attention(q.numpy(), wk, wv, kv_dtype=kd, kv_len=pos.numpy() + T, causal=True,
                         align="kv_end")
    assert np.array_equal(got.numpy(), want)
    # pools through the ops
    kp = torch.zeros(6, Hkv, bs, D, dtype=dtype)
    vp = torch.zeros(6, Hkv, bs, D, dtype=dtype)
    table = torch.tensor([[4, 1, 0], [2, 5, 3]], dtype=torch.int32)
    mt.kv_cache_write(kp, vp, kn, vn, torch.tensor([0]), block_table=table)
    lens = torch.tensor([40, 29], dtype=torch.int32)
    got = mt.attention_paged(q, kp, vp, table, kv_len=lens, causal=True, align="kv_end")
    # the same keys, contiguous: attention() on the widened values, bitwise
    want = mha.attention(q, kn.to(dtype).float(), vn.to(dtype).float(), kv_len=lens,
                         causal=True, align="kv_end")
    assert isinstance(got, torch.Tensor) and torch.equal(got, want)


def test_read_only_import_of_a_torch_cache_falls_back_to_numpy(g, monkeypatch):
    # a torch whose DLPack export NumPy imports read-only (the legacy protocol):
    # the cache is still written in place, through tensor.numpy()
    real = _tensors._from_dlpack

    def read_only(x, name):
        a = real(x, name).view()
        a.flags.writeable = False
        return a
    monkeypatch.setattr(_tensors, "_from_dlpack", read_only)
    kn, vn = randn(g, 1, 2, 3, 8), randn(g, 1, 2, 3, 8)
    for dtype in (torch.float32, torch.bfloat16):
        kc, vc = torch.zeros(1, 2, 4, 8, dtype=dtype), torch.zeros(1, 2, 4, 8, dtype=dtype)
        mha.kv_cache_write(kc, vc, kn, vn, 1)
        assert torch.equal(kc[:, :, 1:], kn.to(dtype)) and torch.equal(vc[:, :, 1:], vn.to(dtype))
        assert not kc[:, :, 0].any()


def test_varlen_merge_layer(g):
    cq, ck = torch.tensor([0, 3, 8]), torch.tensor([0, 7, 11])
    q, k, v = randn(g, 8, 4, 16), randn(g, 11, 2, 16), randn(g, 11, 2, 8)
    got = mt.attention_varlen(q, k, v, cq, ck, causal=True)
    for b in range(2):  # each sequence: bitwise mha.attention on it alone, and PyTorch's SDPA
        qs, ks, vs = (t[c[b]:c[b + 1]].transpose(0, 1)[None]
                      for t, c in ((q, cq), (k, ck), (v, ck)))
        want = mha.attention(qs, ks, vs, causal=True)
        assert torch.equal(got[cq[b]:cq[b + 1]], want[0].transpose(0, 1))
        Tq, Tk = qs.shape[2], ks.shape[2]  # causal, bottom-right: a row may see no key (zeros)
        bottom_right = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
        close(want, ref_sdpa(qs, ks, vs, attn_mask=bottom_right, enable_gqa=True))
    # merge of torch parts, in place into the first
    q4, k4, v4 = qkv(g)
    o1, l1 = mha.attention(q4, k4[:, :, :4], v4[:, :, :4], return_lse=True)
    o2, l2 = mha.attention(q4, k4[:, :, 4:], v4[:, :, 4:], return_lse=True)
    want, wl = mha.merge([o1.numpy(), o2.numpy()], [l1.numpy(), l2.numpy()])
    out, lse = mha.merge([o1, o2], [l1, l2], out=o1)
    assert out is o1 and isinstance(lse, torch.Tensor)
    assert np.array_equal(o1.numpy(), want) and np.array_equal(lse.numpy(), wl)
    close(out, ref_sdpa(q4, k4, v4, enable_gqa=True))
    # Layer from nn.MultiheadAttention's parameters (requires_grad), torch x in and out
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    x = randn(g, 2, 7, 32)
    with mha.Layer(32, 4, in_proj_weight=ref.in_proj_weight, in_proj_bias=ref.in_proj_bias,
                   w_o=ref.out_proj.weight, b_o=ref.out_proj.bias) as layer:
        got = layer(x, causal=True)
        assert isinstance(got, torch.Tensor)
        with torch.no_grad():
            want, _ = ref(x, x, x, attn_mask=torch.ones(7, 7, dtype=torch.bool).triu(1),
                          need_weights=False)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- SDPA


SDPA_CASES = {
    "plain": (dict(B=2, H=4, Hkv=4, Tq=7, Tk=7), {}),
    "causal_Tq<Tk": (dict(B=2, H=3, Hkv=3, Tq=5, Tk=11), dict(is_causal=True)),
    "causal_Tq>Tk": (dict(B=1, H=2, Hkv=2, Tq=9, Tk=4), dict(is_causal=True)),
    "gqa": (dict(B=2, H=8, Hkv=2, Tq=6, Tk=13), dict(enable_gqa=True, is_causal=True)),
    "mqa_broadcast": (dict(B=2, H=4, Hkv=1, Tq=3, Tk=9), {}),
    "scale_Dv": (dict(B=1, H=2, Hkv=2, Tq=4, Tk=6, Dv=5), dict(scale=0.3)),
    "bool_mask": (dict(B=2, H=2, Hkv=2, Tq=5, Tk=8), dict(attn_mask="bool")),
    "float_mask": (dict(B=2, H=2, Hkv=2, Tq=5, Tk=8), dict(attn_mask="float")),
    "decode": (dict(B=3, H=4, Hkv=2, Tq=1, Tk=300, D=64, Dv=64), dict(enable_gqa=True)),
}


def sdpa_inputs(g, B, H, Hkv, Tq, Tk, D=16, Dv=None, **_):
    return qkv(g, B, H, Hkv, Tq, Tk, D, Dv or D)


def sdpa_kwargs(g, kw, B, H, Tq, Tk, **_):
    kw = dict(kw)
    if kw.get("attn_mask") == "bool":
        m = torch.rand(B, 1, Tq, Tk, generator=g) < 0.7
        m[0, 0, 1] = False  # a row without keys: zeros, as PyTorch gives them
        kw["attn_mask"] = m
    elif kw.get("attn_mask") == "float":
        kw["attn_mask"] = randn(g, Tq, Tk)
    return kw


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_matches_pytorch(g, case):
    dims, kw = SDPA_CASES[case]
    q, k, v = sdpa_inputs(g, **dims)
    kw = sdpa_kwargs(g, kw, **dims)
    got = mt.scaled_dot_product_attention(q, k, v, **kw)
    close(got, ref_sdpa(q, k, v, **kw))
    close(got, F.scaled_dot_product_attention(q, k, v, **kw))
    # the op itself, bitwise what mha.attention gives
    if "attn_mask" not in kw:
        op = mt.attention(q, k, v, causal=kw.get("is_causal", False), scale=kw.get("scale"),
                          align="top_left")
        assert torch.equal(op, got)


def test_sdpa_other_ranks(g):
    q, k, v = randn(g, 4, 5, 8), randn(g, 4, 7, 8), randn(g, 4, 7, 8)     # [H, L, E]
    close(mt.scaled_dot_product_attention(q, k, v, is_causal=True),
          ref_sdpa(q, k, v, is_causal=True))
    q, k, v = randn(g, 2, 3, 4, 5, 8), randn(g, 2, 3, 2, 7, 8), randn(g, 2, 3, 2, 7, 6)
    m = torch.rand(5, 7, generator=g) < 0.8
    close(mt.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True),
          ref_sdpa(q, k, v, attn_mask=m, enable_gqa=True))


def test_sdpa_refusals(g):
    q, k, v = qkv(g, H=4, Hkv=4)
    sdpa = mt.scaled_dot_product_attention
    for args, kw, what in [
            ((q, k, v), dict(dropout_p=0.1), "dropout_p=0.1"),
            ((q.double(), k, v), {}, "query of dtype torch.float64"),
            ((q, k.half(), v), {}, "key of dtype torch.float16"),
            ((q, k, v.to("meta")), {}, "value on device meta"),
            ((q[0, 0], k[0, 0], v[0, 0]), {}, "query with 2 dimensions"),
            ((q.numpy(), k, v), {}, "query of type ndarray"),
            ((q, k, v), dict(scale=0.0), "scale=0.0"),
            ((q, k, v), dict(attn_mask=torch.zeros(5, 9, device="meta")), "attn_mask on device"),
            ((q, k, v), dict(attn_mask=torch.zeros(1, 1, 1, 5, 9)), "attn_mask with 5 dim")]:
        with pytest.raises(NotImplementedError, match=what.replace(".", r"\.")):
            sdpa(*args, **kw)
    # what PyTorch itself refuses, refused the same way
    with pytest.raises(RuntimeError, match="should not be set when is_causal"):
        sdpa(q, k, v, attn_mask=torch.zeros(5, 9), is_causal=True)
    q6, k4, v4 = qkv(g, H=6, Hkv=4)
    with pytest.raises(RuntimeError, match="must divide"):
        sdpa(q6, k4, v4, enable_gqa=True)
    with pytest.raises(RuntimeError, match="must match"):
        sdpa(q6, k4, v4)
    with pytest.raises(RuntimeError, match="attn_mask dtype"):
        sdpa(q, k, v, attn_mask=torch.zeros(5, 9, dtype=torch.float64))


# ---------------------------------------------------------------------------- torch.compile


def test_opcheck(g):
    q, k, v = qkv(g)
    torch.library.opcheck(mt.attention, (q, k, v), dict(causal=True, align="top_left"))
    torch.library.opcheck(mt.attention_varlen,
                          (randn(g, 8, 4, 16), randn(g, 11, 2, 16), randn(g, 11, 2, 8),
                           torch.tensor([0, 3, 8]), torch.tensor([0, 7, 11])), {})
    kp, vp = randn(g, 6, 2, 16, 16), randn(g, 6, 2, 16, 8)
    table = torch.tensor([[4, 1, 0], [2, 5, 3]], dtype=torch.int32)
    torch.library.opcheck(mt.attention_paged, (q, kp, vp, table),
                          dict(kv_len=torch.tensor([40, 29], dtype=torch.int32)))
    torch.library.opcheck(mt.kv_cache_write, (kp, vp, k, v, torch.tensor([3, 20])),
                          dict(block_table=table))


def test_compile_fullgraph(g):
    torch._dynamo.reset()
    q, k, v = qkv(g, B=2, H=8, Hkv=2, Tq=6, Tk=13)
    m = torch.rand(2, 1, 6, 13, generator=g) < 0.8
    x = randn(g, 8, 4, 16)
    cq, ck = torch.tensor([0, 3, 8]), torch.tensor([0, 7, 11])
    kx, vx = randn(g, 11, 2, 16), randn(g, 11, 2, 8)
    table = torch.tensor([[4, 1, 0], [2, 5, 3]], dtype=torch.int32)
    lens = torch.tensor([13, 9], dtype=torch.int32)

    def f(q, k, v, m, kp, vp):
        a = mt.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        b = mt.scaled_dot_product_attention(q * 0.5, k, v, attn_mask=m, enable_gqa=True)
        mt.kv_cache_write(kp, vp, k, v, torch.zeros(1, dtype=torch.int32), block_table=table)
        c = mt.attention_paged(q, kp, vp, table, kv_len=lens, causal=True)
        d = torch.ops.mha.attention_varlen(x, kx, vx, cq, ck, causal=True)
        return a + 1, b, c, d.sum(1)

    def pools():
        return torch.zeros(6, 2, 16, 16), torch.zeros(6, 2, 16, 8)

    kp_e, vp_e = pools()
    eager = f(q, k, v, m, kp_e, vp_e)
    kp_c, vp_c = pools()
    compiled = torch.compile(f, fullgraph=True)(q, k, v, m, kp_c, vp_c)
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)
    assert torch.equal(kp_c, kp_e) and torch.equal(vp_c, vp_e) and kp_c.any()  # written in place
    close(eager[0] - 1, ref_sdpa(q, k, v, is_causal=True, enable_gqa=True))
    close(eager[1], ref_sdpa(q * 0.5, k, v, attn_mask=m, enable_gqa=True))
    # one graph, the ops in it as opaque nodes (traced through their fake kernels)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    torch._dynamo.reset()
    again = torch.compile(f, backend=backend, fullgraph=True)(q, k, v, m, *pools())
    assert len(graphs) == 1 and all(torch.equal(a, b) for a, b in zip(eager, again))
    targets = [str(n.target) for n in graphs[0].graph.nodes if n.op == "call_function"]
    for op in ("attention", "attention_paged", "attention_varlen", "kv_cache_write"):
        # torch.ops.mha.<op> (the packet) or its .default overload
        assert f"mha.{op}.default" in targets or f"mha.{op}" in targets, (op, targets)
