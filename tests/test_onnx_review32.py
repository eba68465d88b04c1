"""Review 32 (ONNX export and interop): regressions for defects found in this round."""

from __future__ import annotations

import sys

import pytest
import torch
import trimesh

from voxface.interop import to_pytorch3d


def _broken_pytorch3d(monkeypatch, error: ImportError) -> None:
    """An installed pytorch3d whose ``structures`` raises ``error`` on import."""
    import importlib.abc
    import importlib.machinery

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name in ("pytorch3d", "pytorch3d.structures"):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            if module.__name__ == "pytorch3d.structures":
                raise error

    for name in ("pytorch3d", "pytorch3d.structures"):  # the modules this import makes go again after the test
        monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])


@pytest.mark.parametrize("error", [
    ImportError("/site-packages/pytorch3d/_C.cpython-312-x86_64-linux-gnu.so: undefined symbol: _ZN3c10..."),
    ModuleNotFoundError("No module named 'iopath'", name="iopath"),
])
def test_a_pytorch3d_that_is_installed_but_does_not_import_is_not_called_missing(monkeypatch, error):
    """A pytorch3d built for another torch (its _C: 'undefined symbol') or missing a dependency was
    reported as 'pytorch3d is not installed': the user reinstalled what was there. It now says it is
    installed, the import's own error and the torch it must be built for, on one line."""
    _broken_pytorch3d(monkeypatch, error)
    with pytest.raises(ImportError) as e:
        to_pytorch3d(trimesh.creation.box())
    msg = str(e.value)
    assert msg.startswith("pytorch3d is installed but does not import") and "not installed" not in msg
    assert str(error).splitlines()[0] in msg and f"torch {torch.__version__}" in msg and "\n" not in msg
    # not installed at all: still the one line saying so
    monkeypatch.setitem(sys.modules, "pytorch3d", None)
    with pytest.raises(ImportError, match="^pytorch3d is not installed; it is an optional interop"):
        to_pytorch3d(trimesh.creation.box())

