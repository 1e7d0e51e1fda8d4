"""Tensors in, tensors out: the tensor arguments of one call imported as NumPy
arrays over the caller's memory (no copy), and its results handed back as the
caller's type (_Tensors).

Read in place: NumPy arrays; any object with __dlpack__ (PyTorch tensors,
NumPy >= 1.22 arrays, JAX / CuPy-style CPU tensors), through np.from_dlpack
(copy=False where NumPy takes it: a zero-copy import or an error); any object
with the array interface (__array_interface__ / __array_struct__), through
np.asarray. A tensor on another device than the CPU is refused (ValueError)
before anything is read: __dlpack_device__ names it. torch tensors are
detached first (a view: requires_grad is not a reason to copy), and the
bfloat16 ones, which NumPy cannot hold, are read as their uint16 bits when
they are a K/V cache (kv_dtype 'bf16') and cast to float32 otherwise (the
cast every other float dtype gets). torch is never imported here unless the
caller gave a torch tensor (type(x).__module__ says so)."""
import numpy as np

_NP_VERSION = tuple(int(p) for p in np.__version__.split(".")[:2] if p.isdigit())
_HAS_FROM_DLPACK = hasattr(np, "from_dlpack")  # NumPy >= 1.22
_FROM_DLPACK_COPY = _NP_VERSION >= (2, 1)      # from_dlpack(..., copy=False)

# enum DLDeviceType (dlpack.h)
_DL_CPU = 1
_DL_DEVICES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan", 8: "metal",
               9: "vpi", 10: "rocm", 11: "rocm_host", 12: "ext_dev", 13: "cuda_managed",
               14: "oneapi", 15: "webgpu", 16: "hexagon", 17: "maia"}


def _is_torch(x):
    """A torch object (a Tensor, a Parameter, ...), told without importing torch."""
    mod = type(x).__module__
    return mod == "torch" or mod.startswith("torch.")


def _is_tensor(x):
    """An object this module imports: a torch tensor, a DLPack or array-interface object."""
    return (isinstance(x, np.ndarray) or _is_torch(x) or hasattr(x, "__dlpack__")
            or hasattr(x, "__array_interface__") or hasattr(x, "__array_struct__"))


def _device_error(name, where):
    return ValueError(f"{name} is on device {where}; mha runs on the CPU only (move it there "
                      f"first, e.g. {name}.cpu() for a torch tensor)")


def _from_dlpack(x, name):
    """A NumPy view of a DLPack object's memory (never a copy)."""
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None:
        kind, index = dev()
        kind = int(kind)
        if kind != _DL_CPU:
            where = f"{_DL_DEVICES.get(kind, 'DLPack device type ' + str(kind))}:{int(index)}"
            raise _device_error(name, where)
    if not _HAS_FROM_DLPACK:
        if hasattr(x, "__array_interface__") or hasattr(x, "__array_struct__"):
            return np.asarray(x)
        raise TypeError(f"{name}: reading a DLPack object takes NumPy >= 1.22 "
                        f"(np.from_dlpack); this is NumPy {np.__version__}")
    try:
        if _FROM_DLPACK_COPY:
            try:
                return np.from_dlpack(x, copy=False)
            except TypeError:
                pass  # a producer of the legacy protocol (no copy argument): it never copies
        return np.from_dlpack(x)
    except (BufferError, TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name}: {type(x).__name__} cannot be read in place through DLPack "
                        f"({e})") from e


class _Tensors:
    """The tensor arguments of one call: each imported as a NumPy array over
    its memory, and whether any was a torch tensor (then every result is one:
    torch.from_numpy, no copy; an out= is returned as the caller's object)."""

    __slots__ = ("torch", "bf16_bits")

    def __init__(self):
        self.torch = False
        self.bf16_bits = False  # a torch bfloat16 tensor came in as uint16 bits (io16)

    def _torch(self, x, name):
        """A torch tensor, checked (CPU, strided) and detached; marks the call."""
        self.torch = True
        if x.device.type != "cpu":
            raise _device_error(name, str(x.device))
        import torch
        if x.layout != torch.strided:
            raise TypeError(f"{name}: a {x.layout} torch tensor (mha reads strided tensors)")
        return x.detach()

    def array(self, x, name, cast=True, write=False):
        """x as a NumPy array over its memory when it is a tensor (torch,
        DLPack, array interface); other values (None, ndarrays, lists,
        numbers) unchanged. A torch bfloat16 tensor is cast to float32 (cast,
        the default: what mha does with every float dtype it does not read)
        or refused (TypeError: an out= or a cache is never copied). write: x
        is written in place, and a DLPack import NumPy made read-only is
        refused (ValueError)."""
        if x is None or isinstance(x, np.ndarray):
            return x
        if _is_torch(x):
            x = self._torch(x, name)
            if _is_torch_bf16(x):
                if not cast:
                    raise TypeError(f"{name}: dtype {x.dtype} cannot be written in place (NumPy "
                                    f"has no such dtype)")
                import torch
                x = x.to(torch.float32)  # a copy, as for any dtype other than float32
            return _torch_array(x, name)
        if hasattr(x, "__dlpack__"):
            a = _from_dlpack(x, name)
            if write and not a.flags.writeable:
                raise ValueError(f"{name} is read-only: NumPy imported it through DLPack as "
                                 f"read-only (a read-only tensor, or a producer of the legacy "
                                 f"DLPack protocol, which cannot say it is writable)")
            return a
        if hasattr(x, "__array_interface__") or hasattr(x, "__array_struct__"):
            return np.asarray(x)
        return x

    def out(self, x, name="out"):
        """A caller's out= (or another array written in place): never cast."""
        return self.array(x, name, cast=False, write=True)

    def kv(self, k, v, names, kv_dtype, cast=False, write=False):
        """(k, v, kv_dtype) of K/V arrays mha reads (or, write, writes) in
        place. torch bfloat16 tensors are their uint16 bits with kv_dtype
        'bf16'. cast (attention(): K/V that are not a 16-bit cache are cast
        to float32): unless both are bfloat16, or with kv_dtype 'f32', they
        are cast."""
        bf = [_is_torch(x) and _is_torch_bf16(x) for x in (k, v)]
        if not any(bf):
            return (self.array(k, names[0], cast, write), self.array(v, names[1], cast, write),
                    kv_dtype)
        bad = names[bf.index(True)]
        if kv_dtype not in (None, "bf16", "f32") or (kv_dtype == "f32" and not cast):
            raise TypeError(f"{bad}: dtype torch.bfloat16 cannot hold kv_dtype={kv_dtype!r} values")
        if cast and (kv_dtype == "f32" or not all(bf)):
            return self.array(k, names[0]), self.array(v, names[1]), kv_dtype
        out = [self._bf16_bits(x, name) if is_bf else self.array(x, name, cast, write)
               for x, is_bf, name in zip((k, v), bf, names)]
        return out[0], out[1], "bf16"

    def io16(self, x, name, write=False):
        """A 16-bit array mha reads (or, write, writes) in place: a torch
        bfloat16 tensor as its uint16 bits, anything else as array() leaves
        it (never cast: its dtype is checked against the call's)."""
        if _is_torch(x) and _is_torch_bf16(x):
            self.bf16_bits = True
            return self._bf16_bits(x, name)
        return self.array(x, name, cast=False, write=write)

    def _bf16_bits(self, x, name):
        """A torch bfloat16 tensor as a NumPy uint16 view of its bits (the same memory)."""
        import torch
        return _torch_array(self._torch(x, name).view(torch.int16), name).view(np.uint16)

    def result(self, value, out=None):
        """A call's result (an array or a tuple of them, out first) as the
        caller's type; out: the caller's own out= object, returned as given.
        A structured array (a trace, return_trace) stays a NumPy array: torch
        has no such dtype."""
        single = not isinstance(value, tuple)
        items = [value] if single else list(value)
        if self.torch:
            import torch
            if self.bf16_bits and isinstance(items[0], np.ndarray) and items[0].dtype == np.uint16:
                # bf16 bits go back as torch.bfloat16 (the same memory)
                items[0] = torch.from_numpy(items[0].view(np.int16)).view(torch.bfloat16)
            items = [torch.from_numpy(a) if isinstance(a, np.ndarray) and a.dtype.names is None
                     else a for a in items]
        if out is not None and not isinstance(out, np.ndarray):
            items[0] = out
        return items[0] if single else tuple(items)


def _torch_array(t, name):
    """A NumPy view of a (detached, CPU) torch tensor's memory: np.from_dlpack,
    or t.numpy() where that import is read-only (a torch of the legacy DLPack
    protocol; torch tensors are writable)."""
    a = _from_dlpack(t, name)
    return a if a.flags.writeable else t.numpy()


def _is_torch_bf16(x):
    """A torch bfloat16 tensor (NumPy has no such dtype)."""
    import torch
    return x.dtype == torch.bfloat16
