"""The ctypes mirrors of mha.h's structs (mha/_lib.py) against the C compiler:
every struct's size, every field's offset and size (and the values of the
enums _lib.py mirrors as constants). A change to a struct in
mha.h that _lib.py misses would make the library read garbage; this test
catches it. MHA_ABI_DUMP is the abi-dump program python/CMakeLists.txt builds
(CTest sets it); without it (a bare pytest run) the test is skipped."""
import ctypes
import os
import subprocess

import pytest

from mha import _lib

MIRRORS = {"mha_strides": _lib.Strides, "mha_mask": _lib.Mask,
           "mha_attention_desc": _lib.AttentionDesc, "mha_kv_cache": _lib.KVCache,
           "mha_layer_desc": _lib.LayerDesc,
           "mha_layer_args": _lib.LayerArgs, "mha_trace_event": _lib.TraceEvent,
           "mha_trace": _lib.Trace, "mha_rotary": _lib.Rotary}


def c_layout():
    exe = os.environ.get("MHA_ABI_DUMP")
    if not exe:
        pytest.skip("MHA_ABI_DUMP not set (CTest's python-front sets it)")
    out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    layout, enums = {}, {}
    for line in out.splitlines():
        if line.startswith("enum "):
            _, enum, name, value = line.split()
            enums.setdefault(enum, {})[name] = int(value)
            continue
        struct, field, offset, size = line.split()
        layout.setdefault(struct, {})[field] = (int(offset), int(size))
    return layout, enums


def test_enum_values_match_the_header():
    _, enums = c_layout()
    assert enums["mha_dtype"] == {f"MHA_DTYPE_{n.upper()}": v for n, v in _lib.DTYPE_VALUES.items()}
    assert enums["mha_trace_stage"] == {f"MHA_TRACE_{n.upper()}": v
                                        for n, v in _lib.TRACE_STAGE_VALUES.items()}
    assert enums["mha_rotary_style"] == {f"MHA_ROTARY_{n.upper()}": v
                                         for n, v in _lib.ROTARY_STYLE_VALUES.items()}


def test_struct_layouts_match_the_header():
    layout, _ = c_layout()
    assert set(layout) == set(MIRRORS)
    for name, cls in MIRRORS.items():
        c = layout[name]
        assert ctypes.sizeof(cls) == c["-"][1], f"sizeof({name})"
        py_fields = [f for f, _ in cls._fields_]
        assert sorted(py_fields) == sorted(f for f in c if f != "-"), f"{name}: fields differ"
        for field, ctype in cls._fields_:
            assert (getattr(cls, field).offset, ctypes.sizeof(ctype)) == c[field], \
                f"{name}.{field}: offset/size"
