"""Every failure is an MhaError with mha's status and message; outputs stay untouched."""
import threading

import numpy as np
import pytest

import mha
from conftest import nan_like, rand


def raises(status_name, fn, *args, **kwargs):
    with pytest.raises(mha.MhaError) as info:
        fn(*args, **kwargs)
    e = info.value
    assert e.status_name == status_name, str(e)
    assert e.status == mha._lib.STATUS[status_name[len("MHA_STATUS_"):]]
    assert e.message and e.description
    assert status_name in str(e)
    return e


@pytest.fixture
def qkv(rng):
    return rand(rng, (2, 4, 5, 8)), rand(rng, (2, 2, 6, 8)), rand(rng, (2, 2, 6, 8))


def test_core_statuses_from_mha(rng, qkv):
    q, k, v = qkv
    e = raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, rand(rng, (2, 3, 6, 8)),
               rand(rng, (2, 3, 6, 8)))
    assert "Hkv" in e.message and e.message.startswith("mha_attention_f32")
    assert e.description == "invalid shape"
    raises("MHA_STATUS_INVALID_SIZE", mha.attention, q[:, :, :0], k, v)
    raises("MHA_STATUS_INVALID_ARGUMENT", mha.attention, q, k, v, scale=float("inf"))
    raises("MHA_STATUS_INVALID_ARGUMENT", mha.attention, q, k, v, num_threads=-1)
    e = raises("MHA_STATUS_INVALID_ARGUMENT", mha.attention, q, k, v, kv_len=[6, 7])
    assert "kv_len" in e.message
    raises("MHA_STATUS_UNKNOWN_ISA", mha.attention, q, k, v, isa="sse9")
    missing = [n for n in mha.ISAS if not mha.isa_available(n)]
    if missing:
        raises("MHA_STATUS_UNSUPPORTED_ISA", mha.attention, q, k, v, isa=missing[0])


def test_out_views_mha_refuses(rng):
    q = rand(rng, (2, 4, 5, 8))
    e = raises("MHA_STATUS_INVALID_STRIDE", mha.attention, q, q, q, out=q)  # out aliases q
    assert "overlap" in e.message
    out = nan_like((2, 4, 5, 8))
    k = out[:, :2, :, :]                     # an input inside the output
    raises("MHA_STATUS_INVALID_STRIDE", mha.attention, q, k.copy(), k, out=out)
    assert np.all(np.isnan(out[:, 2:]))
    rev = nan_like((2, 4, 5, 8))[:, :, ::-1]  # negative row stride
    raises("MHA_STATUS_INVALID_STRIDE", mha.attention, q, q, q, out=rev)
    assert np.all(np.isnan(rev))
    buf = nan_like((4 * 5 * 8,))
    overl = np.lib.stride_tricks.as_strided(buf, (2, 4, 5, 8), (0, 160, 32, 4))  # batch stride 0
    raises("MHA_STATUS_INVALID_STRIDE", mha.attention, q, q, q, out=overl)
    assert np.all(np.isnan(buf))
    raises("MHA_STATUS_INVALID_STRIDE", mha.attention, q, q, q, out=nan_like((2, 4, 5, 16))[..., ::2])
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, q, q, out=nan_like((2, 4, 5, 7)))
    with pytest.raises(TypeError):
        mha.attention(q, q, q, out=np.zeros((2, 4, 5, 8)))
    ro = nan_like((2, 4, 5, 8))
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        mha.attention(q, q, q, out=ro)


def test_shape_errors_checked_before_the_call(rng, qkv):
    q, k, v = qkv
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, k[..., :7], v)          # D differs
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, k, v[:, :, :5])         # Tk differs
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, rand(rng, (3, 2, 6, 8)), v)  # batch
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q[0], k, v)                # 3-D
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, k, v, mask=rand(rng, (5, 5)))
    raises("MHA_STATUS_INVALID_SHAPE", mha.attention, q, k, v, kv_len=[1, 2, 3])
    with pytest.raises(TypeError):
        mha.attention(q.astype(np.int32), k, v)
    with pytest.raises(TypeError):
        mha.attention(q, k, v, kv_len=[1.5, 2.0])
    with pytest.raises(ValueError):
        mha.attention(q, k, v, layout="tbhd")


def test_a_failed_call_writes_nothing(qkv):
    q, k, v = qkv
    out = nan_like((2, 4, 5, 8))
    raises("MHA_STATUS_INVALID_ARGUMENT", mha.attention, q, k, v, kv_len=[6, 99], out=out)
    assert np.all(np.isnan(out))


def test_layer_statuses(rng):
    w = rand(rng, (16, 16))
    e = raises("MHA_STATUS_NULL_POINTER", mha.Layer, 16, 2, w_k=w, w_v=w)   # no w_q
    assert "w_q" in e.message
    raises("MHA_STATUS_INVALID_SHAPE", mha.Layer, 18, 4, w_q=w, w_k=w, w_v=w)  # 18 % 4
    raises("MHA_STATUS_INVALID_SHAPE", mha.Layer, 16, 4, num_kv_heads=3, w_q=w, w_k=w, w_v=w)
    raises("MHA_STATUS_INVALID_SIZE", mha.Layer, 0, 4, w_q=w, w_k=w, w_v=w)
    raises("MHA_STATUS_INVALID_ARGUMENT", mha.Layer, 16, 2, w_q=w, w_k=w, w_v=w,
           in_proj_weight=rand(rng, (48, 16)))
    raises("MHA_STATUS_INVALID_ARGUMENT", mha.Layer, 16, 2, w_q=w, w_k=w, w_v=w,
           b_o=rand(rng, 16))                                                 # b_o without w_o
    raises("MHA_STATUS_INVALID_SHAPE", mha.Layer, 16, 2, w_q=w[:8], w_k=w, w_v=w)  # Python check
    raises("MHA_STATUS_UNKNOWN_ISA", mha.Layer, 16, 2, w_q=w, w_k=w, w_v=w, isa="mmx")
    layer = mha.Layer(16, 2, w_q=w, w_k=w, w_v=w, w_o=w)
    x = rand(rng, (2, 3, 16))
    raises("MHA_STATUS_INVALID_ARGUMENT", layer.forward, x, None, x)          # x_v without x_k
    raises("MHA_STATUS_INVALID_SHAPE", layer.forward, x[..., :8])
    raises("MHA_STATUS_INVALID_SHAPE", layer.forward, x, rand(rng, (1, 3, 16)))
    raises("MHA_STATUS_INVALID_ARGUMENT", layer.forward, x, kv_len=[3, 4])
    out = nan_like((2, 3, 16))
    raises("MHA_STATUS_INVALID_STRIDE", layer.forward, out, out=out)          # out is x
    raises("MHA_STATUS_INVALID_STRIDE", layer.forward, x,
           out=nan_like((2, 3, 32))[..., ::2])                                # not contiguous
    assert np.all(np.isnan(out))
    layer.close()
    raises("MHA_STATUS_NULL_POINTER", layer.forward, x)


def test_set_isa_errors():
    raises("MHA_STATUS_UNKNOWN_ISA", mha.set_isa, "sse9")
    missing = [n for n in mha.ISAS if not mha.isa_available(n)]
    if missing:
        raises("MHA_STATUS_UNSUPPORTED_ISA", mha.set_isa, missing[0])
    assert mha.get_isa() in mha.ISAS


def test_message_is_read_in_the_failing_thread(rng, qkv):
    # mha_last_error is thread-local: each thread sees its own failure's message
    q, k, v = qkv
    messages = {}

    def fail(name, kv_len):
        try:
            mha.attention(q, k, v, kv_len=kv_len)
        except mha.MhaError as e:
            messages[name] = e.message

    threads = [threading.Thread(target=fail, args=(f"t{i}", [6, 7 + i])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert f"= {7 + i} is outside" in messages[f"t{i}"]
