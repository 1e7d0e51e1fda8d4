"""mha.Layer against the float64 reference: PyTorch's packed in_proj, separate
weights in both layouts, GQA, cross-attention, the wrapper design (no w_o),
masks, weights, out=, every kernel set and thread count, the plan's life."""
import gc

import numpy as np
import pytest

import mha
from conftest import (LAYER_ATOL, LAYER_RTOL, assert_close, available_isas, nan_like, rand,
                      ref_layer)


def close(got, want):
    assert_close(got, want, rtol=LAYER_RTOL, atol=LAYER_ATOL)


def weights(rng, d_model, H, Hkv, D, Dv, d_kv, layout="out_in", bias=True, w_o=True):
    def mat(n_in, n_out):
        shape = (n_out, n_in) if layout == "out_in" else (n_in, n_out)
        return rand(rng, shape) / np.float32(np.sqrt(n_in))
    w = dict(w_q=mat(d_model, H * D), w_k=mat(d_kv, Hkv * D), w_v=mat(d_kv, Hkv * Dv),
             w_o=mat(H * Dv, d_model) if w_o else None)
    b = dict(b_q=None, b_k=None, b_v=None, b_o=None)
    if bias:
        b = dict(b_q=rand(rng, H * D, -0.1, 0.1), b_k=rand(rng, Hkv * D, -0.1, 0.1),
                 b_v=rand(rng, Hkv * Dv, -0.1, 0.1), b_o=rand(rng, d_model, -0.1, 0.1) if w_o else None)
    return w, b


def test_in_proj_pytorch_layout(rng):
    d_model, H, B, T = 48, 6, 2, 17
    in_w = rand(rng, (3 * d_model, d_model)) / np.float32(np.sqrt(d_model))
    in_b = rand(rng, 3 * d_model, -0.1, 0.1)
    w_o = rand(rng, (d_model, d_model)) / np.float32(np.sqrt(d_model))
    b_o = rand(rng, d_model, -0.1, 0.1)
    x = rand(rng, (B, T, d_model))
    want, want_w = ref_layer(x, in_w[:d_model], in_w[d_model:2 * d_model], in_w[2 * d_model:], w_o,
                             in_b[:d_model], in_b[d_model:2 * d_model], in_b[2 * d_model:], b_o,
                             H, H, 8, 8, causal=True)
    with mha.Layer(d_model, H, in_proj_weight=in_w, in_proj_bias=in_b, w_o=w_o, b_o=b_o) as layer:
        assert layer.output_width == d_model
        assert layer.isa == mha.get_isa()
        out = nan_like((B, T, d_model))
        got, w = layer.forward(x, causal=True, need_weights=True, out=out)
        assert got is out
        close(got, want)
        close(w, want_w)
    assert layer.closed


@pytest.mark.parametrize("layout", ["out_in", "in_out"])
@pytest.mark.parametrize("dims", [
    # d_model, H, Hkv, D, Dv, d_kv, B, Tq, Tk (Tk None: self-attention)
    (32, 4, 4, 8, 8, 32, 2, 7, None),
    (40, 8, 2, 5, 5, 40, 2, 63, None),       # GQA
    (24, 4, 1, 6, 6, 24, 3, 1, None),        # MQA, one row
    (36, 6, 3, 7, 9, 20, 2, 7, 65),          # cross, d_kv != d_model, Dv != D, odd head widths
    (16, 2, 2, 8, 8, 16, 1, 65, 63),         # cross, same widths
], ids=lambda d: "dm{}H{}Hkv{}D{}Dv{}dkv{}B{}Tq{}Tk{}".format(*d))
def test_separate_weights(rng, dims, layout):
    d_model, H, Hkv, D, Dv, d_kv, B, Tq, Tk = dims
    w, b = weights(rng, d_model, H, Hkv, D, Dv, d_kv, layout)
    x = rand(rng, (B, Tq, d_model))
    cross = Tk is not None
    x_k = rand(rng, (B, Tk, d_kv)) if cross else None
    x_v = rand(rng, (B, Tk, d_kv)) if cross else None
    layer = mha.Layer(d_model, H, num_kv_heads=Hkv, head_dim=D, value_head_dim=Dv,
                      d_kv=d_kv if cross else None, layout=layout, **w, **b)
    masks = [dict(), dict(causal=True),
             dict(kv_len=np.arange(B) % (Tk or Tq) + 1, mask=rand(rng, (Tq, Tk or Tq), -2, 2))]
    for m in masks:
        want, _ = ref_layer(x, **w, **b, H=H, Hkv=Hkv, D=D, Dv=Dv, layout=layout, x_k=x_k,
                            x_v=x_v, **m)
        close(layer.forward(x, x_k, x_v, **m), want)
    if cross:  # values from the same input as keys: one fused K/V projection
        want, _ = ref_layer(x, **w, **b, H=H, Hkv=Hkv, D=D, Dv=Dv, layout=layout, x_k=x_k)
        close(layer.forward(x, x_k), want)
    layer.close()
    layer.close()  # idempotent


def test_wrapper_design_without_w_o(rng):
    d_model, H, Hkv, D, Dv, B, T = 32, 4, 2, 8, 6, 2, 9
    w, b = weights(rng, d_model, H, Hkv, D, Dv, d_model, w_o=False)
    layer = mha.Layer(d_model, H, num_kv_heads=Hkv, value_head_dim=Dv, **w, **b)
    assert layer.output_width == H * Dv
    x = rand(rng, (B, T, d_model))
    out = nan_like((B, T, H * Dv))
    got = layer(x, causal=True, out=out)
    assert got is out
    want, _ = ref_layer(x, **w, **b, H=H, Hkv=Hkv, D=D, Dv=Dv, causal=True)
    close(out, want)


def test_copies_of_non_contiguous_inputs(rng):
    d_model, H, B, T = 32, 4, 2, 7
    w, b = weights(rng, d_model, H, H, 8, 8, d_model, layout="in_out")
    big = rand(rng, (B, T, 2 * d_model))
    x = big[:, :, ::2]                        # not contiguous: copied
    w64 = {k: v.astype(np.float64) for k, v in w.items()}  # cast at create
    layer = mha.Layer(d_model, H, layout="in_out", **w64, **b)
    want, _ = ref_layer(np.ascontiguousarray(x), **w, **b, H=H, Hkv=H, D=8, Dv=8,
                        layout="in_out")
    close(layer.forward(x), want)
    close(layer.forward(x.astype(np.float64)), want)


@pytest.mark.parametrize("isa", available_isas())
def test_layer_every_isa_and_thread_count(rng, isa):
    d_model, H, Hkv, B, T = 64, 8, 4, 2, 65
    w, b = weights(rng, d_model, H, Hkv, 8, 8, d_model)
    x = rand(rng, (B, T, d_model))
    layer = mha.Layer(d_model, H, num_kv_heads=Hkv, isa=isa, **w, **b)
    assert layer.isa == isa
    want, want_w = ref_layer(x, **w, **b, H=H, Hkv=Hkv, D=8, Dv=8, causal=True, kv_len=[T, 40])
    bits = []
    for threads in (1, 2):
        o, wts = layer.forward(x, causal=True, kv_len=[T, 40], need_weights=True,
                               num_threads=threads)
        close(o, want)
        close(wts, want_w)
        bits.append((o.tobytes(), wts.tobytes()))
    assert bits[0] == bits[1]


def test_plan_freed_on_garbage_collection(rng):
    w, b = weights(rng, 16, 2, 2, 8, 8, 16)
    layer = mha.Layer(16, 2, **w, **b)
    fin = layer._finalizer
    assert fin.alive
    del layer
    gc.collect()
    assert not fin.alive
    # weights may be dropped after create: the plan holds packed copies
    layer = mha.Layer(16, 2, **{k: v.copy() for k, v in w.items()}, **b)
    x = rand(rng, (1, 3, 16))
    want, _ = ref_layer(x, **w, **b, H=2, Hkv=2, D=8, Dv=8)
    gc.collect()
    close(layer.forward(x), want)
    assert "Layer(d_model=16" in repr(layer)


def test_layer_workspace_auto_gives_the_same_bits():
    rng = np.random.default_rng(9)
    dm, H = 32, 4
    w = rng.uniform(-0.2, 0.2, (3 * dm, dm)).astype(np.float32)
    wo = rng.uniform(-0.2, 0.2, (dm, dm)).astype(np.float32)
    x = rng.uniform(-1, 1, (2, 19, dm)).astype(np.float32)
    with mha.Layer(dm, H, in_proj_weight=w, w_o=wo) as layer:
        ref = layer.forward(x, causal=True)
        for _ in range(2):
            assert np.array_equal(layer.forward(x, causal=True, workspace="auto"), ref)
