"""Finding and loading libmha.so, and the C structs of include/mha.h as ctypes.

The structs mirror mha.h field for field, in order; the function prototypes are
set once when the library is loaded. Only public symbols of mha.h are used.
When a struct of mha.h changes, change it here too: the test
tests/test_abi.py compares every size and offset with the C compiler's
(python/abi-dump.c, built and passed to the tests by python/CMakeLists.txt).
"""
import ctypes
import ctypes.util
import os
import threading

I64 = ctypes.c_int64
PTR = ctypes.c_void_p

# enum mha_status, by value (values are stable across releases, mha.h)
STATUS_NAMES = {
    0: "MHA_STATUS_SUCCESS",
    1: "MHA_STATUS_NULL_POINTER",
    2: "MHA_STATUS_INVALID_SIZE",
    3: "MHA_STATUS_INVALID_SHAPE",
    4: "MHA_STATUS_INVALID_STRIDE",
    5: "MHA_STATUS_INVALID_ARGUMENT",
    6: "MHA_STATUS_SIZE_OVERFLOW",
    7: "MHA_STATUS_OUT_OF_MEMORY",
    8: "MHA_STATUS_UNKNOWN_ISA",
    9: "MHA_STATUS_UNSUPPORTED_ISA",
    10: "MHA_STATUS_COMMUNICATION",
}
STATUS = {name[len("MHA_STATUS_"):]: value for value, name in STATUS_NAMES.items()}

# enum mha_isa
ISA_VALUES = {"default": 0, "scalar": 1, "avx2": 2, "avx512f": 3, "neon": 4, "neon_bf16": 5,
              "avx512_bf16": 6, "amx_bf16": 7}

MHA_WEIGHTS_IN_OUT = 0
MHA_WEIGHTS_OUT_IN = 1

# enum mha_dtype (the element type of a K/V cache)
DTYPE_VALUES = {"f32": 0, "f16": 1, "bf16": 2, "int8": 3}
# mha_rotary_style
ROTARY_STYLE_VALUES = {"neox": 0, "gptj": 1}

# enum mha_trace_stage (mha_trace_event.stage)
TRACE_STAGE_VALUES = {"pack_kt": 1, "attention": 2, "weights_mean": 3, "gemm": 4}


class Strides(ctypes.Structure):
    _fields_ = [("batch", I64), ("head", I64), ("row", I64)]


class Mask(ctypes.Structure):
    _fields_ = [("causal", ctypes.c_int), ("kv_len", PTR), ("additive", PTR),
                ("additive_strides", Strides), ("align", ctypes.c_int), ("offset", I64),
                ("window", ctypes.c_int), ("window_left", I64), ("window_right", I64),
                ("alibi_slopes", PTR), ("softcap", ctypes.c_float), ("sinks", PTR)]


class _Sized(ctypes.Structure):
    """A struct that starts with size_t struct_size (mha.h, "ABI"): set to
    its sizeof on construction; positional arguments fill the fields after it."""

    def __init__(self, *args, **kwargs):
        super().__init__(ctypes.sizeof(type(self)), *args, **kwargs)


class AttentionDesc(_Sized):
    _fields_ = [("struct_size", ctypes.c_size_t), ("B", I64), ("H", I64), ("Hkv", I64), ("Tq", I64), ("Tk", I64), ("D", I64),
                ("Dv", I64), ("q", Strides), ("k", Strides), ("v", Strides), ("out", Strides),
                ("scale", ctypes.c_float), ("mask", Mask), ("num_threads", ctypes.c_int),
                ("isa", ctypes.c_int), ("lse", PTR), ("weights_mode", ctypes.c_int),
                ("weights_heads", PTR), ("weights_nheads", I64), ("workspace", PTR),
                ("workspace_size", ctypes.c_size_t), ("threadpool", PTR), ("trace", PTR),
                ("rotary", PTR)]


class Rotary(_Sized):
    _fields_ = [("struct_size", ctypes.c_size_t), ("style", ctypes.c_int), ("dim", I64), ("cos", PTR),
                ("sin", PTR), ("n_positions", I64), ("positions", PTR)]


class KVCache(_Sized):
    _fields_ = [("struct_size", ctypes.c_size_t), ("dtype", ctypes.c_int), ("k", PTR), ("v", PTR), ("k_strides", Strides),
                ("v_strides", Strides), ("capacity", I64), ("block_size", I64),
                ("num_blocks", I64), ("block_table", PTR), ("max_blocks", I64),
                ("k_scales", PTR), ("v_scales", PTR), ("scale_strides", Strides)]


class LayerDesc(_Sized):
    _fields_ = [("struct_size", ctypes.c_size_t), ("d_model", I64), ("d_kv", I64), ("H", I64), ("Hkv", I64), ("D", I64),
                ("Dv", I64), ("layout", ctypes.c_int), ("w_q", PTR), ("w_k", PTR), ("w_v", PTR),
                ("w_o", PTR), ("in_proj_weight", PTR), ("b_q", PTR), ("b_k", PTR), ("b_v", PTR),
                ("b_o", PTR), ("in_proj_bias", PTR), ("isa", ctypes.c_int), ("dtype", ctypes.c_int)]


class LayerArgs(_Sized):
    _fields_ = [("struct_size", ctypes.c_size_t), ("B", I64), ("Tq", I64), ("Tk", I64), ("x_q", PTR), ("x_k", PTR), ("x_v", PTR),
                ("out", PTR), ("mask", Mask), ("weights", PTR), ("weights_mode", ctypes.c_int),
                ("weights_heads", PTR), ("weights_nheads", I64), ("scale", ctypes.c_float),
                ("num_threads", ctypes.c_int), ("workspace", PTR),
                ("workspace_size", ctypes.c_size_t), ("kv_cache", PTR), ("kv_pos", PTR),
                ("threadpool", PTR), ("trace", PTR), ("dtype", ctypes.c_int)]


class TraceEvent(ctypes.Structure):
    _fields_ = [("start_ns", I64), ("end_ns", I64), ("worker", ctypes.c_int32),
                ("stage", ctypes.c_int32), ("batch", ctypes.c_int32), ("head", ctypes.c_int32),
                ("heads", ctypes.c_int32), ("q_begin", ctypes.c_int32), ("q_end", ctypes.c_int32),
                ("k_begin", ctypes.c_int32), ("k_end", ctypes.c_int32),
                ("reserved", ctypes.c_int32)]


class Trace(ctypes.Structure):
    _fields_ = [("events", PTR), ("capacity", I64), ("count", I64), ("total", I64)]


class LibraryNotFoundError(OSError):
    """No libmha.so was found (or it could not be loaded)."""


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def _soname():
    """The SONAME of the libmha this package's structs mirror (ABI_VERSION):
    libmha.so.0.<minor> before 1.0, libmha.so.<major> after (the top-level
    CMakeLists.txt)."""
    major, minor = ABI_VERSION
    return f"libmha.so.0.{minor}" if major == 0 else f"libmha.so.{major}"


def bundled_dir():
    """Where a wheel puts its libmha (python/CMakeLists.txt): <package>/lib."""
    return os.path.join(_package_dir(), "lib")


def candidates():
    """The places searched, in order, as (description, path or None)."""
    out = []
    env = os.environ.get("MHA_LIBRARY")
    if env:
        out.append(("$MHA_LIBRARY", env))
    for name in (_soname(), "libmha.so"):
        out.append(("bundled in the package", os.path.join(bundled_dir(), name)))
    for name in ("libmha.so", _soname(), "libmha.so.0"):
        out.append(("next to the package", os.path.join(_package_dir(), name)))
    repo = os.path.dirname(os.path.dirname(_package_dir()))  # <repo>/python/mha -> <repo>
    if os.path.isfile(os.path.join(repo, "include", "mha.h")):  # used from a checkout
        out.append(("the repository's build/", os.path.join(repo, "build", "libmha.so")))
    out.append(('ctypes.util.find_library("mha")', ctypes.util.find_library("mha")))
    return out


def find_library():
    """The path of the libmha.so to load: $MHA_LIBRARY (must exist if set: it
    overrides everything), the library a wheel carries (<package>/lib/
    libmha.so.0.<minor> or libmha.so), a libmha.so next to the package,
    <repo>/build/libmha.so, then ctypes.util.find_library("mha")."""
    env = os.environ.get("MHA_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise LibraryNotFoundError(f"MHA_LIBRARY={env!r} is not a file")
        return os.path.abspath(env)
    tried = []
    for what, path in candidates():
        if path is None:
            tried.append(f"{what}: nothing")
            continue
        if what.startswith("ctypes.util"):
            return path  # a soname the dynamic loader resolves
        if os.path.isfile(path):
            return path
        tried.append(f"{what}: {path}")
    raise LibraryNotFoundError(
        "libmha.so not found; install the wheel, which carries it (pip install ./python), "
        "build it (cmake --build build, target mha_shared) or set MHA_LIBRARY to its path. "
        "Tried: " + "; ".join(tried))


def _prototypes(lib):
    c_int, c_char_p = ctypes.c_int, ctypes.c_char_p
    P = ctypes.POINTER
    protos = {
        "mha_status_string": (c_char_p, [c_int]),
        "mha_last_error": (c_char_p, []),
        "mha_isa_name": (c_char_p, [c_int]),
        "mha_isa_available": (c_int, [c_int]),
        "mha_get_isa": (c_int, [P(c_int)]),
        "mha_set_isa": (c_int, [c_int]),
        "mha_set_isa_by_name": (c_int, [c_char_p]),
        "mha_attention_desc_init_sized": (None, [P(AttentionDesc), ctypes.c_size_t] + [I64] * 7),
        "mha_attention_f32": (c_int, [P(AttentionDesc), PTR, PTR, PTR, PTR, PTR]),
        "mha_layer_create": (c_int, [P(LayerDesc), P(PTR)]),
        "mha_layer_destroy": (None, [PTR]),
        "mha_layer_output_width": (I64, [PTR]),
        "mha_layer_isa": (c_int, [PTR]),
        "mha_layer_args_init_sized": (None, [P(LayerArgs), ctypes.c_size_t]),
        "mha_layer_desc_init_sized": (None, [P(LayerDesc), ctypes.c_size_t]),
        "mha_layer_forward": (c_int, [PTR, P(LayerArgs)]),
        "mha_attention_workspace_size": (c_int, [P(AttentionDesc), c_int, P(ctypes.c_size_t)]),
        "mha_attention": (c_int, [P(AttentionDesc), c_int, PTR, PTR, PTR, PTR, PTR]),
        "mha_layer_workspace_size": (c_int, [PTR, P(LayerArgs), P(ctypes.c_size_t)]),
        "mha_attention_varlen_f32": (c_int, [P(AttentionDesc), P(ctypes.c_int32),
                                             P(ctypes.c_int32), PTR, PTR, PTR, PTR]),
        "mha_attention_varlen": (c_int, [P(AttentionDesc), c_int, P(ctypes.c_int32),
                                         P(ctypes.c_int32), PTR, PTR, PTR, PTR]),
        "mha_attention_varlen_workspace_size": (c_int, [P(AttentionDesc), P(ctypes.c_int32),
                                                        P(ctypes.c_int32), P(ctypes.c_size_t)]),
        # pointer arrays as void*
        "mha_merge_f32": (c_int, [I64, I64, I64, PTR, PTR, PTR, PTR]),
        "mha_kv_cache_init_sized": (None, [P(KVCache), ctypes.c_size_t, c_int, PTR, PTR] + [I64] * 4),
        "mha_kv_cache_init_paged_sized": (None, [P(KVCache), ctypes.c_size_t, c_int, PTR, PTR]
                                          + [I64] * 5 + [PTR, I64]),
        "mha_attention_kv_f32": (c_int, [P(AttentionDesc), PTR, P(KVCache), PTR, PTR]),
        "mha_attention_kv": (c_int, [P(AttentionDesc), c_int, PTR, P(KVCache), PTR, PTR]),
        "mha_attention_kv_workspace_size": (c_int, [P(AttentionDesc), P(KVCache), c_int,
                                                    P(ctypes.c_size_t)]),
        "mha_attention_varlen_kv_f32": (c_int, [P(AttentionDesc), P(ctypes.c_int32),
                                                P(ctypes.c_int32), PTR, P(KVCache), PTR]),
        "mha_attention_varlen_kv": (c_int, [P(AttentionDesc), c_int, P(ctypes.c_int32),
                                            P(ctypes.c_int32), PTR, P(KVCache), PTR]),
        "mha_attention_varlen_kv_workspace_size": (c_int, [P(AttentionDesc), P(ctypes.c_int32),
                                                           P(ctypes.c_int32), P(KVCache),
                                                           P(ctypes.c_size_t)]),
        "mha_kv_cache_write_varlen": (c_int, [P(KVCache)] + [I64] * 4 + [P(ctypes.c_int32), P(ctypes.c_int32),
                                                                       PTR, Strides, PTR, Strides, PTR]),
        "mha_kv_cache_write_slots": (c_int, [P(KVCache)] + [I64] * 4 + [P(ctypes.c_int32), PTR, Strides, PTR,
                                                                      Strides, PTR]),
        "mha_rotary_apply_f32": (c_int, [P(Rotary), I64, I64, I64, PTR, Strides, PTR, Strides]),
        "mha_rotary_table_f32": (c_int, [I64, I64, ctypes.c_double, ctypes.c_double, PTR,
                                         ctypes.c_double, PTR, PTR]),
        # mha_strides by value
        "mha_kv_cache_write": (c_int, [P(KVCache)] + [I64] * 5 + [PTR, PTR, Strides, PTR,
                                                                  Strides]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


# The MHA_VERSION of include/mha.h this package's structs mirror.
ABI_VERSION = (0, 5)


def _check_version(handle, path):
    """A library of another minor version (before 1.0: other struct layouts)
    would read the structs wrongly and return garbage without an error:
    refuse it at load."""
    try:
        fn = handle.mha_version
    except AttributeError:
        raise LibraryNotFoundError(f"{path} has no mha_version(): a library older than 0.3, "
                                   f"this package needs {ABI_VERSION[0]}.{ABI_VERSION[1]}.x") from None
    fn.restype = ctypes.c_uint32
    fn.argtypes = []
    v = fn()
    if (v // 10000, v // 100 % 100) != ABI_VERSION:
        raise LibraryNotFoundError(
            f"{path} is mha {v // 10000}.{v // 100 % 100}.{v % 100}; this package needs "
            f"{ABI_VERSION[0]}.{ABI_VERSION[1]}.x (the structs differ between minor versions)")


_lock = threading.Lock()
_lib = None
_path = None


def lib():
    """The loaded library (loaded at the first call)."""
    global _lib, _path
    if _lib is None:
        with _lock:
            if _lib is None:
                path = find_library()
                try:
                    handle = ctypes.CDLL(path)
                except OSError as e:
                    raise LibraryNotFoundError(f"cannot load {path}: {e}") from e
                _prototypes(handle)
                _check_version(handle, path)
                _path = path
                _lib = handle
    return _lib


def path():
    lib()
    return _path
