"""The process-wide state of libmha: the library in use (library_path) and
the kernel set, ISAS with isa_available, get_isa and set_isa. (mha.version()
stays in the package's __init__, next to __version__.)"""
import ctypes

from . import _lib
from ._errors import _check


#: The kernel set names mha knows (mha_isa_name), besides "default".
ISAS = ("scalar", "avx2", "avx512f", "neon", "neon_bf16", "avx512_bf16", "amx_bf16")


def library_path():
    """The path of the libmha.so in use (loading it if needed)."""
    return _lib.path()


def isa_available(name):
    """True if this build of libmha contains the kernel set `name` ("scalar",
    "avx2", "avx512f", "neon", "neon_bf16", "avx512_bf16", "amx_bf16") and the CPU runs it; False otherwise,
    including for names mha does not know and "default"."""
    value = _lib.ISA_VALUES.get(name)
    if value is None:
        return False
    return bool(_lib.lib().mha_isa_available(value))


def get_isa():
    """The process-wide kernel set in use (MHA_ISA, set_isa, or the best)."""
    L = _lib.lib()
    v = ctypes.c_int()
    _check(L.mha_get_isa(ctypes.byref(v)))
    return L.mha_isa_name(v.value).decode()


def set_isa(name):
    """Forces the process-wide kernel set ("default" forgets the choice).
    MhaError UNKNOWN_ISA / UNSUPPORTED_ISA otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, not {type(name).__name__}")
    _check(_lib.lib().mha_set_isa_by_name(name.encode()))
