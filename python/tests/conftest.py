"""Shared helpers: an independent float64 NumPy reference of attention and of
the layer, random inputs (never zeros), and the tolerances.

Tolerance: mha computes in float32 (SLEEF exp, fused multiply-adds); against
the float64 reference every output must satisfy
    |mha - ref| <= ATOL + RTOL·|ref|   with RTOL = ATOL = 1e-5
for the core (inputs uniform in [-1, 1], D, Tk <= 65) and LAYER_ATOL/RTOL =
1e-5 for the layer (weights scaled by 1/sqrt(width) so activations stay O(1)).
"""
import numpy as np
import pytest

import mha

RTOL = 1e-5
ATOL = 1e-5
LAYER_RTOL = 1e-5
LAYER_ATOL = 1e-5


@pytest.fixture
def rng(request):
    # a seed per test, stable across runs
    seed = sum(map(ord, request.node.nodeid)) & 0xFFFFFFFF
    return np.random.default_rng(seed)


def widening_isa():
    """The kernel set whose bf16 calls widen to float32 (the contract these tests
    check bitwise): the default one, or where the default has a BF16 unit
    (neon_bf16, avx512_bf16, amx_bf16: its BF16 form has its own bound) its sibling."""
    return {"neon_bf16": "neon", "avx512_bf16": "avx512f", "amx_bf16": "avx512f"}.get(mha.get_isa())


def rand(rng, shape, lo=-1.0, hi=1.0):
    """Random float32 in [lo, hi], with no exact zeros."""
    a = rng.uniform(lo, hi, shape)
    a[a == 0] = 0.5
    return a.astype(np.float32)


def nan_like(shape):
    return np.full(shape, np.nan, np.float32)


def ref_attention(q, k, v, causal=False, kv_len=None, mask=None, scale=None):
    """float64 reference; q [B,H,Tq,D], k [B,Hkv,Tk,D], v [B,Hkv,Tk,Dv] (bhtd).
    Returns (out [B,H,Tq,Dv], weights [B,H,Tq,Tk])."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B = max(q.shape[0], k.shape[0], v.shape[0])
    q, k, v = (np.broadcast_to(a, (B,) + a.shape[1:]) for a in (q, k, v))
    _, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    G = H // Hkv
    kk = np.repeat(k, G, axis=1)
    vv = np.repeat(v, G, axis=1)
    s = 1.0 / np.sqrt(D) if scale is None else float(np.float32(scale))
    S = s * np.einsum("bhid,bhjd->bhij", q, kk)
    vis = np.ones((B, H, Tq, Tk), bool)
    i = np.arange(Tq)[:, None]
    j = np.arange(Tk)[None, :]
    if causal:
        vis &= j <= i + (Tk - Tq)
    if kv_len is not None:
        kl = np.broadcast_to(np.asarray(kv_len), (B,))
        vis &= j[None, None] < kl[:, None, None, None]
    if mask is not None:
        m = np.broadcast_to(np.asarray(mask, np.float64), (B, H, Tq, Tk))
        vis &= m != -np.inf
        S = S + np.where(np.isneginf(m), 0.0, m)
    S = np.where(vis, S, -np.inf)
    mx = np.max(S, axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    P = np.where(vis, np.exp(S - mx), 0.0)
    den = P.sum(-1, keepdims=True)
    P = np.where(den > 0, P / np.where(den > 0, den, 1.0), 0.0)
    return np.einsum("bhij,bhjd->bhid", P, vv), P


def linear(x, w, b, layout):
    """x·W (+b) in float64, W in mha's layout "in_out" [in,out] or "out_in" [out,in]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    y = x @ (w if layout == "in_out" else w.T)
    return y if b is None else y + np.asarray(b, np.float64)


def ref_layer(x, w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o, H, Hkv, D, Dv, layout="out_in",
              x_k=None, x_v=None, **mask):
    """float64 reference of the layer. Returns (out [B,Tq,width], weights)."""
    x_k = x if x_k is None else x_k
    x_v = x_k if x_v is None else x_v
    B, Tq = x.shape[:2]
    Tk = x_k.shape[1]
    q = linear(x, w_q, b_q, layout).reshape(B, Tq, H, D).transpose(0, 2, 1, 3)
    k = linear(x_k, w_k, b_k, layout).reshape(B, Tk, Hkv, D).transpose(0, 2, 1, 3)
    v = linear(x_v, w_v, b_v, layout).reshape(B, Tk, Hkv, Dv).transpose(0, 2, 1, 3)
    o, P = ref_attention(q, k, v, **mask)
    cat = o.transpose(0, 2, 1, 3).reshape(B, Tq, H * Dv)
    if w_o is None:
        return cat, P
    return linear(cat, w_o, b_o, layout), P


def assert_close(got, want, rtol=RTOL, atol=ATOL):
    got = np.asarray(got)
    assert got.dtype == np.float32
    assert got.shape == want.shape
    assert np.all(np.isfinite(got)), "non-finite values in the output"
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol)


def available_isas():
    return [n for n in mha.ISAS if mha.isa_available(n)]
