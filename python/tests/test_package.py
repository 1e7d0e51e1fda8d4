"""The package itself: version, library discovery."""
import os
import re

import pytest

import mha
from mha import _lib


def test_version_matches_the_header():
    header = os.path.join(os.path.dirname(__file__), "..", "..", "include", "mha.h")
    if not os.path.exists(header):
        pytest.skip("not in a checkout")
    text = open(header).read()
    parts = [re.search(rf"#define MHA_VERSION_{p} (\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    assert mha.version() == ".".join(parts) == mha.__version__


def test_library_in_use():
    path = mha.library_path()
    assert os.path.exists(path)
    if os.environ.get("MHA_LIBRARY"):
        assert os.path.samefile(path, os.environ["MHA_LIBRARY"])


def test_discovery_order(tmp_path, monkeypatch):
    pkg = tmp_path / "repo" / "python" / "mha"
    pkg.mkdir(parents=True)
    monkeypatch.setattr(_lib, "_package_dir", lambda: str(pkg))
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: None)
    monkeypatch.delenv("MHA_LIBRARY", raising=False)
    with pytest.raises(mha.LibraryNotFoundError, match="MHA_LIBRARY"):
        _lib.find_library()
    (tmp_path / "repo" / "build").mkdir()
    (tmp_path / "repo" / "build" / "libmha.so").write_bytes(b"")
    with pytest.raises(mha.LibraryNotFoundError):  # not a checkout: no include/mha.h
        _lib.find_library()
    (tmp_path / "repo" / "include").mkdir()
    (tmp_path / "repo" / "include" / "mha.h").write_bytes(b"")
    (tmp_path / "repo" / "build" / "libmha.so").write_bytes(b"")
    assert _lib.find_library() == str(tmp_path / "repo" / "build" / "libmha.so")
    (pkg / "libmha.so").write_bytes(b"")
    assert _lib.find_library() == str(pkg / "libmha.so")
    other = tmp_path / "other.so"
    other.write_bytes(b"")
    monkeypatch.setenv("MHA_LIBRARY", str(other))
    assert _lib.find_library() == str(other)
    monkeypatch.setenv("MHA_LIBRARY", str(tmp_path / "missing.so"))
    with pytest.raises(mha.LibraryNotFoundError, match="missing.so"):
        _lib.find_library()
    monkeypatch.delenv("MHA_LIBRARY")
    (pkg / "libmha.so").unlink()
    (tmp_path / "repo" / "build" / "libmha.so").unlink()
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: "libmha.so.0")
    assert _lib.find_library() == "libmha.so.0"


def test_mha_error_is_an_exception():
    e = mha.MhaError(3, "custom")
    assert isinstance(e, Exception)
    assert (e.status, e.status_name, e.message, e.description) == (
        3, "MHA_STATUS_INVALID_SHAPE", "custom", "invalid shape")


def test_loaded_library_version_matches():
    v = _lib.lib().mha_version()
    assert (v // 10000, v // 100 % 100) == _lib.ABI_VERSION
    assert mha.__version__.startswith(f"{v // 10000}.{v // 100 % 100}.")


def test_other_minor_version_is_refused(monkeypatch):
    class Fake:
        def __init__(self, v):
            self.mha_version = lambda: v
    with pytest.raises(mha.LibraryNotFoundError, match="structs differ"):
        _lib._check_version(Fake(200), "libmha.so.0.2")   # 0.2.0
    _lib._check_version(Fake(_lib.ABI_VERSION[0] * 10000 + _lib.ABI_VERSION[1] * 100 + 7), "ok")


def test_discovery_finds_the_bundled_library(tmp_path, monkeypatch):
    # A wheel carries the library as <package>/lib/libmha.so.0.<minor> (its
    # SONAME; python/CMakeLists.txt): found before a libmha.so next to the
    # package and the build tree; $MHA_LIBRARY still overrides it.
    pkg = tmp_path / "repo" / "python" / "mha"
    (pkg / "lib").mkdir(parents=True)
    for d in ("include", "build"):
        (tmp_path / "repo" / d).mkdir()
    (tmp_path / "repo" / "include" / "mha.h").write_bytes(b"")
    (tmp_path / "repo" / "build" / "libmha.so").write_bytes(b"")
    (pkg / "libmha.so").write_bytes(b"")
    monkeypatch.setattr(_lib, "_package_dir", lambda: str(pkg))
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: None)
    monkeypatch.delenv("MHA_LIBRARY", raising=False)
    major, minor = _lib.ABI_VERSION
    soname = f"libmha.so.0.{minor}" if major == 0 else f"libmha.so.{major}"
    assert _lib._soname() == soname
    assert _lib.find_library() == str(pkg / "libmha.so")
    (pkg / "lib" / "libmha.so").write_bytes(b"")
    assert _lib.find_library() == str(pkg / "lib" / "libmha.so")
    (pkg / "lib" / soname).write_bytes(b"")
    assert _lib.find_library() == str(pkg / "lib" / soname)
    other = tmp_path / "other.so"
    other.write_bytes(b"")
    monkeypatch.setenv("MHA_LIBRARY", str(other))
    assert _lib.find_library() == str(other)
    monkeypatch.delenv("MHA_LIBRARY")
    # only the SONAME of this package's minor version, not another one
    (pkg / "lib" / soname).unlink()
    (pkg / "lib" / "libmha.so").unlink()
    (pkg / "lib" / "libmha.so.0.999").write_bytes(b"")
    assert _lib.find_library() == str(pkg / "libmha.so")


def _installed_distribution():
    """The installed distribution mha was imported from (a wheel installed by
    pip), or None when mha comes from a source tree (PYTHONPATH, a checkout)
    or an editable install."""
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    try:
        dist = metadata.distribution("mha")
    except metadata.PackageNotFoundError:
        return None
    init = str(dist.locate_file("mha/__init__.py"))
    if not os.path.isfile(init) or not os.path.samefile(init, mha.__file__):
        return None
    return dist


def test_installed_wheel_loads_its_own_library():
    dist = _installed_distribution()
    if dist is None:
        pytest.skip(f"mha is imported from {os.path.dirname(mha.__file__)}, not from an "
                    "installed wheel (scripts/test-wheel.sh runs this test from one)")
    if os.environ.get("MHA_LIBRARY"):
        pytest.skip("MHA_LIBRARY is set: it overrides the library the wheel carries")
    files = [str(f).replace(os.sep, "/") for f in dist.files or []]
    bundled = [f for f in files if f.startswith("mha/lib/libmha.so")]
    assert bundled, "the installed wheel has no mha/lib/libmha.so*: it was built without libmha"
    pkg = os.path.realpath(os.path.dirname(mha.__file__))
    path = os.path.realpath(mha.library_path())
    assert os.path.commonpath([path, pkg]) == pkg, f"{path} is outside the package {pkg}"
    assert os.path.basename(path) == _lib._soname()
    # After `auditwheel repair` the wheel also carries libmha's own
    # dependencies (libsleef, libgomp) in mha.libs/: those copies are the ones
    # mapped into the process.
    vendored = [os.path.realpath(str(dist.locate_file(f))) for f in files
                if f.startswith("mha.libs/") and ".so" in f]
    if vendored and os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            mapped = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
        mapped = {os.path.realpath(p) for p in mapped if p.startswith("/")}
        missing = [p for p in vendored if p not in mapped]
        assert not missing, f"vendored libraries not loaded: {missing}"
