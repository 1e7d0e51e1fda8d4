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
