"""The few parts of include/mha.h that bench/peers.py needs, through ctypes.

A thin mirror of the C structs (field for field, in order) over the shared
library the build makes (build/libmha.so). Not a Python package: the benchmark's
way to time mha in the same process, on the same NumPy arrays, as its peers.
"""
import ctypes
import os

import numpy as np

I64 = ctypes.c_int64
PTR = ctypes.c_void_p
FPTR = ctypes.POINTER(ctypes.c_float)

MHA_WEIGHTS_OUT_IN = 1


class Strides(ctypes.Structure):
    _fields_ = [("batch", I64), ("head", I64), ("row", I64)]


class Mask(ctypes.Structure):
    _fields_ = [("causal", ctypes.c_int), ("kv_len", PTR), ("additive", PTR),
                ("additive_strides", Strides)]


class AttentionDesc(ctypes.Structure):
    _fields_ = [("B", I64), ("H", I64), ("Hkv", I64), ("Tq", I64), ("Tk", I64), ("D", I64),
                ("Dv", I64), ("q", Strides), ("k", Strides), ("v", Strides), ("out", Strides),
                ("scale", ctypes.c_float), ("mask", Mask), ("num_threads", ctypes.c_int),
                ("isa", ctypes.c_int), ("workspace", PTR), ("workspace_size", ctypes.c_size_t)]


class LayerDesc(ctypes.Structure):
    _fields_ = [("d_model", I64), ("d_kv", I64), ("H", I64), ("Hkv", I64), ("D", I64),
                ("Dv", I64), ("layout", ctypes.c_int), ("w_q", PTR), ("w_k", PTR), ("w_v", PTR),
                ("w_o", PTR), ("in_proj_weight", PTR), ("b_q", PTR), ("b_k", PTR), ("b_v", PTR),
                ("b_o", PTR), ("in_proj_bias", PTR), ("isa", ctypes.c_int)]


class LayerArgs(ctypes.Structure):
    _fields_ = [("B", I64), ("Tq", I64), ("Tk", I64), ("x_q", PTR), ("x_k", PTR), ("x_v", PTR),
                ("out", PTR), ("mask", Mask), ("weights", PTR), ("scale", ctypes.c_float),
                ("num_threads", ctypes.c_int), ("workspace", PTR),
                ("workspace_size", ctypes.c_size_t)]


def _ptr(a):
    assert a.dtype == np.float32 and a.flags["C_CONTIGUOUS"]
    return a.ctypes.data_as(PTR)


class Mha:
    def __init__(self, path):
        self.lib = ctypes.CDLL(os.path.abspath(path))
        L = self.lib
        L.mha_attention_f32.restype = ctypes.c_int
        L.mha_attention_f32.argtypes = [ctypes.POINTER(AttentionDesc), PTR, PTR, PTR, PTR, PTR]
        L.mha_attention_desc_init.argtypes = [ctypes.POINTER(AttentionDesc)] + [I64] * 7
        L.mha_layer_create.restype = ctypes.c_int
        L.mha_layer_create.argtypes = [ctypes.POINTER(LayerDesc), ctypes.POINTER(PTR)]
        L.mha_layer_forward.restype = ctypes.c_int
        L.mha_layer_forward.argtypes = [PTR, ctypes.POINTER(LayerArgs)]
        L.mha_layer_destroy.argtypes = [PTR]
        L.mha_last_error.restype = ctypes.c_char_p
        L.mha_get_isa.argtypes = [ctypes.POINTER(ctypes.c_int)]
        L.mha_isa_name.restype = ctypes.c_char_p
        L.mha_isa_name.argtypes = [ctypes.c_int]

    def check(self, st, what):
        if st != 0:
            raise RuntimeError(f"{what}: status {st}: {self.lib.mha_last_error().decode()}")

    def isa(self):
        v = ctypes.c_int()
        self.check(self.lib.mha_get_isa(ctypes.byref(v)), "mha_get_isa")
        return self.lib.mha_isa_name(v.value).decode()

    def core(self, q, k, v, out, causal, threads):
        """q [B, H, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv] → out [B, H, Tq, Dv]."""
        B, H, Tq, D = q.shape
        Hkv, Tk, Dv = k.shape[1], k.shape[2], v.shape[3]
        d = AttentionDesc()
        self.lib.mha_attention_desc_init(ctypes.byref(d), B, H, Hkv, Tq, Tk, D, Dv)
        d.mask.causal = int(causal)
        d.num_threads = threads
        self.check(self.lib.mha_attention_f32(ctypes.byref(d), _ptr(q), _ptr(k), _ptr(v),
                                              _ptr(out), None), "mha_attention_f32")

    def layer(self, d_model, H, Hkv, wq, wk, wv, wo, bq, bk, bv, bo):
        """A plan from nn.Linear-layout ([out, in]) weights and biases."""
        desc = LayerDesc()
        desc.d_model, desc.H, desc.Hkv = d_model, H, Hkv
        desc.layout = MHA_WEIGHTS_OUT_IN
        desc.w_q, desc.w_k, desc.w_v, desc.w_o = _ptr(wq), _ptr(wk), _ptr(wv), _ptr(wo)
        desc.b_q, desc.b_k, desc.b_v, desc.b_o = _ptr(bq), _ptr(bk), _ptr(bv), _ptr(bo)
        plan = PTR()
        self.check(self.lib.mha_layer_create(ctypes.byref(desc), ctypes.byref(plan)),
                   "mha_layer_create")
        return plan

    def forward(self, plan, x, out, causal, threads):
        a = LayerArgs()
        a.B, a.Tq = x.shape[0], x.shape[1]
        a.x_q, a.out = _ptr(x), _ptr(out)
        a.mask.causal = int(causal)
        a.num_threads = threads
        self.check(self.lib.mha_layer_forward(plan, ctypes.byref(a)), "mha_layer_forward")

    def destroy(self, plan):
        self.lib.mha_layer_destroy(plan)
