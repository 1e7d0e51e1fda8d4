"""K/V caches in 16 bits and paged: mha.attention with float16 / bf16 K and V,
mha.attention_paged, mha.kv_cache_write.

What is held (include/mha.h, "KV caches"):
  - bits: a 16-bit cache, contiguous or paged (any block size, table, pool
    layout, thread count), gives bitwise the result of mha.attention on its
    values widened to float32 (np.array_equal);
  - accuracy: against conftest's float64 reference on the widened values,
    within the core's tolerance (RTOL = ATOL = 1e-5): the widening is exact;
  - kv_cache_write rounds to nearest, ties to even: float16 as NumPy's
    astype(np.float16), bfloat16 as the bit arithmetic of to_bf16() here;
  - errors: MhaError with mha's status (a table slot outside the pool, Tk past
    the cache, a bad block size, a position past the cache), TypeError for
    dtypes that cannot hold the cache, nothing written on failure.
"""
import numpy as np
import pytest

import mha
from mha import _lib
from conftest import assert_close, available_isas, nan_like, rand, ref_attention, widening_isa
from test_variants import alibi, ref as ref_variants

DTYPES = ["f16", "bf16"]


# ---------------------------------------------------------------------------- 16-bit values


def to_bf16(x):
    """float32 → bfloat16 bits (uint16), to nearest, ties to even (finite and
    ±inf inputs; a finite value past the largest bfloat16 becomes ±inf)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def widen_bf16(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def to_16(x, dtype):
    """(the array mha reads, kv_dtype to pass, its values widened to float32)."""
    if dtype == "f16":
        h = np.asarray(x, np.float32).astype(np.float16)
        return h, None, h.astype(np.float32)
    b = to_bf16(x)
    return b, "bf16", widen_bf16(b)


def bits(a):
    """The raw 16-bit (or 32-bit) patterns of an array."""
    a = np.asarray(a)
    return a.view(np.uint16) if a.itemsize == 2 else a.view(np.uint32)


def test_bf16_rounding_helper():
    # the helper itself: exact values, ties to even both ways, overflow
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)  # bfloat16's ulp at 1
    x = np.array([1.0, -2.5, one + ulp / 2, one + 3 * ulp / 2, one + ulp / 4, 3.4e38, -np.inf],
                 np.float32)
    want = [1.0, -2.5, 1.0, one + 2 * ulp, 1.0, np.inf, -np.inf]
    assert np.array_equal(widen_bf16(to_bf16(x)), np.array(want, np.float32))


# ---------------------------------------------------------------------------- contiguous caches

# B, H, Hkv, Tq, Tk, D, Dv
SHAPES = [(2, 4, 2, 7, 29, 16, 8),     # GQA, Dv != D
          (3, 8, 2, 1, 300, 32, 32),   # decode (the key-range split)
          (1, 3, 3, 37, 37, 8, 8),     # prefill, Tq == Tk
          (2, 4, 1, 29, 11, 65, 7)]    # MQA, Tq > Tk, odd widths


def shape_id(s):
    return "B{}H{}Hkv{}Tq{}Tk{}D{}Dv{}".format(*s)


def make(rng, shape):
    B, H, Hkv, Tq, Tk, D, Dv = shape
    return rand(rng, (B, H, Tq, D)), rand(rng, (B, Hkv, Tk, D)), rand(rng, (B, Hkv, Tk, Dv))


def masks(rng, shape):
    B, H, Hkv, Tq, Tk, D, Dv = shape
    kl = rng.integers(1, Tk + 1, B)
    kl[0] = Tk
    return [dict(), dict(causal=True), dict(kv_len=kl),
            dict(causal=True, kv_len=kl, mask=rand(rng, (Tq, Tk), -2, 2)),
            dict(causal=True, kv_len=kl, window=(5, 0), alibi_slopes=alibi(H), softcap=1.5,
                 sinks=rand(rng, H), align="kv_end", scale=0.9)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("layout", ["bhtd", "bthd"])
def test_contiguous_equals_widened_fp32(rng, shape, dtype, layout):
    q, k, v = make(rng, shape)
    k16, kd, kw32 = to_16(k, dtype)
    v16, _, vw32 = to_16(v, dtype)
    T = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3))) if layout == "bthd" \
        else (lambda a: a)
    for m in masks(rng, shape):
        got = mha.attention(T(q), T(k16), T(v16), layout=layout, kv_dtype=kd, **m)
        want = mha.attention(T(q), T(kw32), T(vw32), layout=layout, **m)
        assert got.dtype == np.float32
        assert np.array_equal(got, want), m
        g = got if layout == "bhtd" else got.transpose(0, 2, 1, 3)
        assert_close(g, ref_variants(q, kw32, vw32, **m)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_contiguous_weights_lse_workspace(rng, dtype):
    shape = (2, 6, 3, 5, 40, 16, 16)
    q, k, v = make(rng, shape)
    k16, kd, kw32 = to_16(k, dtype)
    v16, _, vw32 = to_16(v, dtype)
    kw = dict(causal=True, kv_len=[40, 23], need_weights=True, return_lse=True)
    for mode in ("per_head", "mean", [4, 1]):
        got = mha.attention(q, k16, v16, kv_dtype=kd, weights_mode=mode, **kw)
        want = mha.attention(q, kw32, vw32, weights_mode=mode, **kw)
        for a, b in zip(got, want):
            assert np.array_equal(a, b), mode
    o, w = ref_attention(q, kw32, vw32, causal=True, kv_len=[40, 23])
    out, weights, _ = mha.attention(q, k16, v16, kv_dtype=kd, **kw)
    assert_close(out, o)
    assert_close(weights, w)
    plain = mha.attention(q, k16, v16, kv_dtype=kd, causal=True)
    auto = mha.attention(q, k16, v16, kv_dtype=kd, causal=True, workspace="auto")
    mine = mha.attention(q, k16, v16, kv_dtype=kd, causal=True,
                         workspace=np.zeros(1 << 22, np.uint8))
    assert np.array_equal(plain, auto) and np.array_equal(plain, mine)
    with pytest.raises(mha.MhaError) as e:
        mha.attention(q, k16, v16, kv_dtype=kd, causal=True, workspace=np.zeros(16, np.uint8))
    assert e.value.status_name == "MHA_STATUS_INVALID_ARGUMENT"


class KVSpy:
    """Wraps the loaded library; records the caches mha_attention_kv_f32 receives."""

    def __init__(self, real):
        self.real = real
        self.caches = []
        self.f32_calls = 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def mha_attention_kv_f32(self, desc_ref, q, cache_ref, out, weights):
        c = cache_ref._obj
        self.caches.append(type(c).from_buffer_copy(c))
        return self.real.mha_attention_kv_f32(desc_ref, q, cache_ref, out, weights)

    def mha_attention_f32(self, *args):
        self.f32_calls += 1
        return self.real.mha_attention_f32(*args)


@pytest.fixture
def spy(monkeypatch):
    s = KVSpy(_lib.lib())
    monkeypatch.setattr(_lib, "lib", lambda: s)
    return s


def strides_of(s):
    return (s.batch, s.head, s.row)


def test_16_bit_views_are_read_in_place(rng, spy):
    # the first Tk rows of a bigger [B,Hkv,capacity,D] float16 cache, and a
    # [B,T,Hkv,D] uint16 view: the cache struct points into them, in elements
    B, H, Hkv, Tq, cap, Tk, D = 2, 4, 2, 1, 64, 37, 16
    q = rand(rng, (B, H, Tq, D))
    kc = rand(rng, (B, Hkv, cap, D)).astype(np.float16)
    vc = rand(rng, (B, Hkv, cap, D)).astype(np.float16)
    k, v = kc[:, :, :Tk], vc[:, :, :Tk]
    got = mha.attention(q, k, v)
    c = spy.caches[-1]
    assert (c.k, c.v) == (kc.ctypes.data, vc.ctypes.data)
    assert c.dtype == _lib.DTYPE_VALUES["f16"] and c.block_size == 0 and c.capacity == Tk
    assert strides_of(c.k_strides) == (Hkv * cap * D, cap * D, D)
    assert spy.f32_calls == 0
    assert np.array_equal(got, mha.attention(q, k.astype(np.float32), v.astype(np.float32)))
    # bf16 bits in a [B,T,Hkv,D] buffer, seen as bhtd (a transposed view)
    kb = to_bf16(rand(rng, (B, Tk, Hkv, D)))
    vb = to_bf16(rand(rng, (B, Tk, Hkv, D)))
    got = mha.attention(q, kb.transpose(0, 2, 1, 3), vb.transpose(0, 2, 1, 3), kv_dtype="bf16")
    c = spy.caches[-1]
    assert c.k == kb.ctypes.data and c.dtype == _lib.DTYPE_VALUES["bf16"]
    assert strides_of(c.k_strides) == (Tk * Hkv * D, D, Hkv * D)
    want = mha.attention(q, widen_bf16(kb).transpose(0, 2, 1, 3),
                         widen_bf16(vb).transpose(0, 2, 1, 3))
    assert np.array_equal(got, want)
    # a batch of 1 broadcasts (stride 0); f16 bits as uint16 with kv_dtype="f16"
    got = mha.attention(q, k[:1].view(np.uint16), v[:1].view(np.uint16), kv_dtype="f16")
    assert strides_of(spy.caches[-1].k_strides)[0] == 0
    want = mha.attention(q, k[:1].astype(np.float32), v[:1].astype(np.float32))
    assert np.array_equal(got, want)


def test_float32_and_mixed_kv_stay_on_the_fp32_call(rng, spy):
    q, k, v = make(rng, (1, 2, 2, 3, 9, 8, 8))
    mha.attention(q, k, v)
    mha.attention(q, k.astype(np.float16), v)          # mixed: cast to float32, as before
    mha.attention(q, k.astype(np.float16), v.astype(np.float16), kv_dtype="f32")
    assert spy.f32_calls == 3 and spy.caches == []


@pytest.mark.parametrize("isa", available_isas())
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_isa_and_thread_count(rng, isa, dtype):
    for shape in [(2, 6, 2, 33, 65, 63, 7), (1, 8, 2, 1, 1100, 64, 64)]:
        q, k, v = make(rng, shape)
        k16, kd, kw32 = to_16(k, dtype)
        v16, _, vw32 = to_16(v, dtype)
        kl = [shape[4]] * shape[0]
        kl[-1] = shape[4] // 2 + 1
        want = mha.attention(q, kw32, vw32, isa=isa, causal=True, kv_len=kl)
        for threads in (1, 2):
            got = mha.attention(q, k16, v16, kv_dtype=kd, isa=isa, num_threads=threads,
                                causal=True, kv_len=kl)
            assert np.array_equal(got, want), (isa, threads)
        assert_close(want, ref_attention(q, kw32, vw32, causal=True, kv_len=kl)[0])


# ---------------------------------------------------------------------------- paged caches


def make_paged(rng, dtype, B, Hkv, D, Dv, lens, block_size, cache_layout, shared_prefix=0):
    """Pools with the values of lens[b] tokens per entry, a shuffled table
    (entries share their first shared_prefix blocks; unused slots hold -1),
    and the same keys as contiguous widened float32 [B,Hkv,max(lens),D]."""
    Tk = max(lens)
    k = rand(rng, (B, Hkv, Tk, D))
    v = rand(rng, (B, Hkv, Tk, Dv))
    if shared_prefix:
        n = shared_prefix * block_size
        k[1:, :, :n] = k[:1, :, :n]
        v[1:, :, :n] = v[:1, :, :n]
    need = [-(-n // block_size) for n in lens]
    max_blocks = max(need) + 1                     # one spare column
    num_blocks = sum(need) - shared_prefix * (B - 1) + 3   # and spare blocks
    order = rng.permutation(num_blocks)
    table = np.full((B, max_blocks), -1, np.int32)
    used = 0
    for b in range(B):
        for s in range(need[b]):
            if b > 0 and s < shared_prefix:
                table[b, s] = table[0, s]
            else:
                table[b, s] = order[used]
                used += 1
    shape = (lambda w: (num_blocks, block_size, Hkv, w)) if cache_layout == "bthd" else \
        (lambda w: (num_blocks, Hkv, block_size, w))
    store = np.uint16 if dtype == "bf16" else (np.float16 if dtype == "f16" else np.float32)
    kp = np.zeros(shape(D), store)
    vp = np.zeros(shape(Dv), store)
    kd = "bf16" if dtype == "bf16" else None
    # filled by kv_cache_write (checked against the rounding below)
    k_new = np.zeros((B, Hkv, Tk, D), np.float32)
    v_new = np.zeros((B, Hkv, Tk, Dv), np.float32)
    for b in range(B):
        k_new[b, :, :lens[b]] = k[b, :, :lens[b]]
        v_new[b, :, :lens[b]] = v[b, :, :lens[b]]
    for b in range(B):  # each entry its own length; the shared blocks are written twice, equal
        mha.kv_cache_write(kp, vp, k_new[b:b + 1, :, :lens[b]], v_new[b:b + 1, :, :lens[b]], 0,
                           block_table=table[b:b + 1], kv_dtype=kd, cache_layout=cache_layout)
    if dtype == "f32":
        kw, vw = k, v
    else:
        kw, vw = to_16(k, dtype)[2], to_16(v, dtype)[2]
    return kp, vp, table, kd, kw, vw


@pytest.mark.parametrize("cache_layout", ["bthd", "bhtd"])
@pytest.mark.parametrize("block_size", [16, 32])
@pytest.mark.parametrize("dtype", ["f32"] + DTYPES)
def test_paged_equals_contiguous_and_widened(rng, dtype, block_size, cache_layout):
    B, H, Hkv, D, Dv = 3, 8, 2, 32, 16
    lens = [70, 1, 45]
    kp, vp, table, kd, kw, vw = make_paged(rng, dtype, B, Hkv, D, Dv, lens, block_size,
                                           cache_layout, shared_prefix=1)
    for Tq, kw_mask in [(1, dict()), (1, dict(causal=True, window=(20, 0))),
                        (4, dict(causal=True, align="kv_end")),
                        (4, dict(alibi_slopes=alibi(H), softcap=2.0, sinks=rand(rng, H)))]:
        q = rand(rng, (B, H, Tq, D))
        got = mha.attention_paged(q, kp, vp, table, kv_len=lens, kv_dtype=kd,
                                  cache_layout=cache_layout, **kw_mask)
        want = mha.attention(q, kw, vw, kv_len=lens, **kw_mask)
        assert np.array_equal(got, want), kw_mask
        assert_close(got, ref_variants(q, kw, vw, kv_len=lens, **kw_mask)[0])
        if dtype != "f32":  # the contiguous 16-bit cache: the same bits
            k16 = kw.astype(np.float16) if dtype == "f16" else to_bf16(kw)
            v16 = vw.astype(np.float16) if dtype == "f16" else to_bf16(vw)
            assert np.array_equal(mha.attention(q, k16, v16, kv_dtype=kd, kv_len=lens,
                                                **kw_mask), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_paged_outputs_layouts_threads(rng, dtype):
    B, H, Hkv, Tq, D = 2, 4, 2, 3, 16
    lens = [40, 33]
    kp, vp, table, kd, kw, vw = make_paged(rng, dtype, B, Hkv, D, D, lens, 16, "bhtd")
    q = rand(rng, (B, H, Tq, D))
    kw_ = dict(kv_len=lens, causal=True, align="kv_end", need_weights=True, return_lse=True)
    got = mha.attention_paged(q, kp, vp, table, kv_dtype=kd, **kw_)
    want = mha.attention(q, kw, vw, **kw_)
    assert got[1].shape == (B, H, Tq, 40)  # Tk = max(kv_len)
    for a, b in zip(got, want):
        assert np.array_equal(a, b)
    # q and out in bthd, an explicit Tk, every thread count and workspace kind
    qt = np.ascontiguousarray(q.transpose(0, 2, 1, 3))
    ref_out = mha.attention(q, kw, vw, kv_len=lens, causal=True, align="kv_end")
    out = nan_like((B, Tq, H, D))
    for threads in (1, 2, 3):
        for ws in (None, "auto"):
            o = mha.attention_paged(qt, kp, vp, table, kv_len=lens, kv_dtype=kd, layout="bthd",
                                    causal=True, align="kv_end", num_threads=threads,
                                    workspace=ws, out=out)
            assert o is out
            assert np.array_equal(o.transpose(0, 2, 1, 3), ref_out)
    # Tk = 48 with kv_len: the weights have 48 columns, out is unchanged
    o, w = mha.attention_paged(q, kp, vp, table, kv_len=lens, Tk=48, kv_dtype=kd,
                               need_weights=True)
    assert w.shape == (B, H, Tq, 48) and np.all(w[..., 40:] == 0)
    assert np.array_equal(o, mha.attention(q, kw, vw, kv_len=lens))
    # a batch of 1 in q broadcasts over the table's entries
    o = mha.attention_paged(q[:1], kp, vp, table, kv_len=lens, kv_dtype=kd)
    assert np.array_equal(o, mha.attention(np.repeat(q[:1], B, 0), kw, vw, kv_len=lens))


def test_paged_pools_as_views_of_one_cache(rng, spy):
    # vLLM keeps K and V in one [2, num_blocks, block_size, Hkv, D] tensor
    nb, bs, Hkv, D, B, H = 6, 16, 2, 8, 2, 4
    kv = rand(rng, (2, nb, bs, Hkv, D)).astype(np.float16)
    table = np.array([[4, 0], [1, 5]])
    q = rand(rng, (B, H, 1, D))
    got = mha.attention_paged(q, kv[0], kv[1], table, cache_layout="bthd")
    c = spy.caches[-1]
    assert (c.k, c.v) == (kv[0].ctypes.data, kv[1].ctypes.data)
    assert (c.block_size, c.num_blocks, c.max_blocks) == (bs, nb, 2)
    assert strides_of(c.k_strides) == (bs * Hkv * D, D, Hkv * D)
    gathered = lambda p: np.stack([np.concatenate([p[t] for t in row]) for row in table])  # noqa: E731
    k = gathered(kv[0]).transpose(0, 2, 1, 3).astype(np.float32)   # [B,Hkv,32,D]
    v = gathered(kv[1]).transpose(0, 2, 1, 3).astype(np.float32)
    assert np.array_equal(got, mha.attention(q, k, v))


# ---------------------------------------------------------------------------- writing


@pytest.mark.parametrize("cache_layout", ["bhtd", "bthd"])
@pytest.mark.parametrize("dtype", ["f32"] + DTYPES)
def test_write_contiguous_round_trips(rng, dtype, cache_layout):
    B, Hkv, cap, D, Dv = 2, 3, 20, 8, 5
    store = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}[dtype]
    kd = "bf16" if dtype == "bf16" else None
    shp = (lambda w: (B, Hkv, cap, w)) if cache_layout == "bhtd" else (lambda w: (B, cap, Hkv, w))
    sentinel = 0x7FC00000 if dtype == "f32" else 0x7E00  # bits never written (a NaN, mostly)
    raw = np.uint32 if dtype == "f32" else np.uint16
    kc = np.full(shp(D), sentinel, raw).view(store)
    vc = np.full(shp(Dv), sentinel, raw).view(store)
    k = rand(rng, (B, Hkv, 7, D), -3, 3)
    v = rand(rng, (B, Hkv, 7, Dv), -3, 3)
    k[0, 0, 0, :4] = [70000.0, -1e6, 2.0 ** -20, 1 + 2.0 ** -11]  # overflow, tiny, an f16 tie
    k[0, 0, 1, :4] = [1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8,           # bf16 ties (down, up)
                      1 + 3 * 2.0 ** -11, -(1 + 2.0 ** -8)]         # an f16 tie up, bf16 down
    # in two steps: 4 rows at [2, 3], then 3 rows, k_new given as [B,T,Hkv,D]
    pos = np.array([2, 3])
    mha.kv_cache_write(kc, vc, k[:, :, :4], v[:, :, :4], pos, kv_dtype=kd,
                       cache_layout=cache_layout)
    T = lambda a: np.ascontiguousarray(a.transpose(0, 2, 1, 3))  # noqa: E731
    mha.kv_cache_write(kc, vc, T(k[:, :, 4:]), T(v[:, :, 4:]), pos + 4, kv_dtype=kd,
                       cache_layout=cache_layout, layout="bthd")
    kb = kc if cache_layout == "bhtd" else kc.transpose(0, 2, 1, 3)
    vb = vc if cache_layout == "bhtd" else vc.transpose(0, 2, 1, 3)
    with np.errstate(over="ignore"):  # 70000 and -1e6 become ±inf in float16, as in mha
        rounded = {"f32": k, "f16": k.astype(np.float16), "bf16": to_bf16(k)}[dtype], \
            {"f32": v, "f16": v.astype(np.float16), "bf16": to_bf16(v)}[dtype]
    for b in range(B):
        p = pos[b]
        assert np.array_equal(bits(kb[b, :, p:p + 7]), bits(rounded[0][b]))
        assert np.array_equal(bits(vb[b, :, p:p + 7]), bits(rounded[1][b]))
        # nothing else written
        rest = np.ones(cap, bool)
        rest[p:p + 7] = False
        assert np.all(bits(kb[b][:, rest]) == sentinel)
        assert np.all(bits(vb[b][:, rest]) == sentinel)
    if dtype == "f16":
        assert kb[0, 0, 2, 0] == np.inf and kb[0, 0, 2, 1] == -np.inf  # beyond the f16 range
    # what was written reads back as the widened values
    widen = widen_bf16 if dtype == "bf16" else (lambda a: a.astype(np.float32))
    for b in range(B):
        q = rand(rng, (1, 6, 2, D))
        ks, vs = kb[b:b + 1, :, pos[b]:pos[b] + 7], vb[b:b + 1, :, pos[b]:pos[b] + 7]
        got = mha.attention(q, ks, vs, kv_dtype=kd)
        # (the rows holding ±inf make NaN rows: equal as NaN, not in their bits)
        assert np.array_equal(got, mha.attention(q, widen(ks), widen(vs)), equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_write_paged_round_trips(rng, dtype):
    B, Hkv, D, bs, nb = 2, 2, 8, 16, 5
    store = np.float16 if dtype == "f16" else np.uint16
    kd = "bf16" if dtype == "bf16" else None
    kp = np.zeros((nb, bs, Hkv, D), store)
    vp = np.zeros((nb, bs, Hkv, D), store)
    table = np.array([[3, 0, -1], [1, 4, 2]])
    k = rand(rng, (B, Hkv, 5, D))
    v = rand(rng, (B, Hkv, 5, D))
    pos = [13, 30]  # entry 0 crosses from block 3 into block 0; entry 1 into block 2
    mha.kv_cache_write(kp, vp, k, v, pos, block_table=table, kv_dtype=kd, cache_layout="bthd")
    rounded = (lambda a: a.astype(np.float16)) if dtype == "f16" else to_bf16
    written = np.zeros(kp.shape[:2], bool)
    for b in range(B):
        for t in range(5):
            blk, row = table[b, (pos[b] + t) // bs], (pos[b] + t) % bs
            assert np.array_equal(bits(kp[blk, row]), bits(rounded(k[b, :, t])))
            assert np.array_equal(bits(vp[blk, row]), bits(rounded(v[b, :, t])))
            written[blk, row] = True
    assert np.all(bits(kp)[~written] == 0) and np.all(bits(vp)[~written] == 0)


# ---------------------------------------------------------------------------- errors


def raises(status_name, fn, *args, **kwargs):
    with pytest.raises(mha.MhaError) as info:
        fn(*args, **kwargs)
    assert info.value.status_name == "MHA_STATUS_" + status_name, str(info.value)
    return info.value


def test_errors(rng):
    B, H, Hkv, D, bs, nb = 2, 4, 2, 8, 16, 4
    kp = np.zeros((nb, Hkv, bs, D), np.float16)
    vp = np.zeros((nb, Hkv, bs, D), np.float16)
    q = rand(rng, (B, H, 1, D))
    table = np.array([[0, 1], [2, 3]])
    mha.attention_paged(q, kp, vp, table)
    # a table slot outside [0, num_blocks) that the call reads
    bad = np.array([[0, 1], [2, 4]])
    e = raises("INVALID_ARGUMENT", mha.attention_paged, q, kp, vp, bad)
    assert "block_table" in e.message and e.message.startswith("mha_attention_kv_f32")
    raises("INVALID_ARGUMENT", mha.attention_paged, q, kp, vp, np.array([[0, 1], [-1, 3]]))
    # ... but slots past an entry's keys are never read
    mha.attention_paged(q, kp, vp, np.array([[0, 1], [2, -1]]), kv_len=[32, 16])
    # Tk past the cache: max_blocks·block_size = 32
    e = raises("INVALID_ARGUMENT", mha.attention_paged, q, kp, vp, table, Tk=33)
    assert "33" in e.message
    raises("INVALID_ARGUMENT", mha.attention_paged, q, kp, vp, table, kv_len=[33, 1])
    # a block size that is not a power of two in [16, 256]
    raises("INVALID_ARGUMENT", mha.attention_paged, q, np.zeros((4, Hkv, 24, D), np.float16),
           np.zeros((4, Hkv, 24, D), np.float16), table)
    # shapes the Python front checks
    raises("INVALID_SHAPE", mha.attention_paged, q, kp, vp[:3], table)
    raises("INVALID_SHAPE", mha.attention_paged, q, kp, vp, table[:, 0])
    raises("INVALID_SHAPE", mha.attention_paged, rand(rng, (3, H, 1, D)), kp, vp, table)
    raises("INVALID_SHAPE", mha.attention_paged, rand(rng, (B, H, 1, 4)), kp, vp, table)
    raises("INVALID_SHAPE", mha.attention, q, kp[:2], vp[:2, :, :8])
    # an out that lies in the pool: mha refuses it
    pool32 = np.zeros((nb, Hkv, bs, D), np.float32)
    inside = pool32.reshape(-1)[:B * H * D].reshape(B, H, 1, D)
    e = raises("INVALID_STRIDE", mha.attention_paged, q, pool32, pool32.copy(), table, out=inside)
    assert "overlap" in e.message
    # dtypes
    with pytest.raises(TypeError, match="kv_dtype"):
        mha.attention(q, kp.view(np.uint16), vp.view(np.uint16))
    with pytest.raises(TypeError, match="kv_dtype"):
        mha.attention_paged(q, kp.view(np.uint16), vp.view(np.uint16), table)
    with pytest.raises(TypeError):
        mha.attention(q, kp, vp, kv_dtype="bf16")            # float16 is not bf16
    with pytest.raises(TypeError):
        mha.attention(q, q, q, kv_dtype="f16")               # float32 is not f16
    with pytest.raises(TypeError):
        mha.attention_paged(q, kp, vp.astype(np.float32), table)
    with pytest.raises(ValueError):
        mha.attention(q, kp, vp, kv_dtype="fp8")
    with pytest.raises(ValueError):
        mha.attention_paged(q, kp, vp, table, cache_layout="thd")
    with pytest.raises(TypeError):
        mha.attention_paged(q, kp, vp, table.astype(np.float32))


def test_write_errors_write_nothing(rng):
    B, Hkv, D, bs, nb = 2, 2, 8, 16, 4
    kp = np.zeros((nb, Hkv, bs, D), np.float16)
    vp = np.zeros((nb, Hkv, bs, D), np.float16)
    table = np.array([[0, 1], [2, 3]])
    k = rand(rng, (B, Hkv, 4, D))
    # entry 1's rows cross into a bad slot: nothing is written, entry 0's included
    e = raises("INVALID_ARGUMENT", mha.kv_cache_write, kp, vp, k, k, [0, 14],
               block_table=np.array([[0, 1], [2, 7]]))
    assert "block_table" in e.message and e.message.startswith("mha_kv_cache_write")
    raises("INVALID_ARGUMENT", mha.kv_cache_write, kp, vp, k, k, [0, 29], block_table=table)
    raises("INVALID_ARGUMENT", mha.kv_cache_write, kp, vp, k, k, -1, block_table=table)
    assert not np.any(bits(kp)) and not np.any(bits(vp))
    # contiguous: pos + T past the capacity
    kc = np.zeros((B, Hkv, 10, D), np.float16)
    raises("INVALID_ARGUMENT", mha.kv_cache_write, kc, kc.copy(), k, k, [0, 7])
    assert not np.any(bits(kc))
    # caches that cannot be written in place, or do not hold the rows
    raises("INVALID_STRIDE", mha.kv_cache_write, kc[:, :, ::-1], kc.copy(), k, k, 0)
    raises("INVALID_SHAPE", mha.kv_cache_write, kc[:1], kc[:1].copy(), k, k, 0)
    raises("INVALID_SHAPE", mha.kv_cache_write, kc, kc.copy(), k[..., :4], k, 0)
    raises("INVALID_SHAPE", mha.kv_cache_write, kc, kc.copy(), k, k, [0, 1, 2])
    ro = kc.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        mha.kv_cache_write(ro, kc, k, k, 0)
    with pytest.raises(TypeError):
        mha.kv_cache_write(kc.tolist(), kc, k, k, 0)
    with pytest.raises(TypeError, match="kv_dtype"):
        mha.kv_cache_write(kc.view(np.uint16), kc.view(np.uint16), k, k, 0)


def test_ml_dtypes_bfloat16_if_installed(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q, k, v = make(rng, (1, 2, 2, 3, 20, 8, 8))
    kb, vb = k.astype(ml_dtypes.bfloat16), v.astype(ml_dtypes.bfloat16)
    got = mha.attention(q, kb, vb)
    assert np.array_equal(got, mha.attention(q, kb.astype(np.float32), vb.astype(np.float32)))


@pytest.mark.parametrize("io", ["f16", "bf16"])
def test_paged_16bit_q_and_out(rng, io):
    """attention_paged(dtype=...): q and out 16-bit (mha_attention_kv), bitwise the
    float32-q call rounded once to the type; the pools keep their own type."""
    B, H, Hkv, D, Dv = 2, 4, 2, 16, 16
    lens = [37, 5]
    kp, vp, table, kd, kw, vw = make_paged(rng, "bf16", B, Hkv, D, Dv, lens, 16, "bhtd",
                                           shared_prefix=0)
    qf = rand(rng, (B, H, 3, D))
    q16 = qf.astype(np.float16) if io == "f16" else to_bf16(qf)
    q32 = q16.astype(np.float32) if io == "f16" else (q16.astype(np.uint32) << 16).view(np.float32)
    isa = widening_isa()  # a bf16 pool and q on a BF16 unit: its BF16 form, its own bound
    got = mha.attention_paged(q16, kp, vp, table, kv_len=lens, kv_dtype=kd, causal=True, dtype=io, isa=isa)
    want = mha.attention_paged(q32, kp, vp, table, kv_len=lens, kv_dtype=kd, causal=True, isa=isa)
    assert got.dtype == q16.dtype
    want16 = want.astype(np.float16) if io == "f16" else to_bf16(want)
    assert np.array_equal(got.view(np.uint16), want16.view(np.uint16))
