"""Review 32 (ONNX export and interop): regressions for defects found in this round."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import trimesh

from voxface.interop import from_pytorch3d, to_pytorch3d


class _Meshes:
    """The part of ``pytorch3d.structures.Meshes`` the interop uses: it keeps the tensors it is given."""

    def __init__(self, verts, faces):
        self._verts, self._faces = verts, faces

    def verts_list(self):
        return self._verts

    def faces_list(self):
        return self._faces


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


def test_pytorch3d_tensors_are_not_the_voxface_meshes_arrays(monkeypatch):
    """to_pytorch3d handed PyTorch3D the trimesh's own faces array (torch.as_tensor shares an int64
    array) and from_pytorch3d gave trimesh the tensors' memory (float64 vertices, int64 faces): an
    in-place edit on one side (a renderer's winding flip, an optimiser's step on the vertices)
    silently changed the other, behind trimesh's caches. Each side now has its own copy."""
    pkg, structures = types.ModuleType("pytorch3d"), types.ModuleType("pytorch3d.structures")
    structures.Meshes = _Meshes
    pkg.structures = structures
    monkeypatch.setitem(sys.modules, "pytorch3d", pkg)
    monkeypatch.setitem(sys.modules, "pytorch3d.structures", structures)

    box = trimesh.creation.box((10.0, 20.0, 30.0))
    faces0, verts0, volume0 = box.faces.copy(), box.vertices.copy(), box.volume
    p3d = to_pytorch3d(box)
    p3d.faces_list()[0][:] = p3d.faces_list()[0][:, [0, 2, 1]]  # the other winding, in place
    p3d.verts_list()[0].mul_(2.0)
    np.testing.assert_array_equal(box.faces, faces0)
    np.testing.assert_array_equal(box.vertices, verts0)
    assert box.volume == pytest.approx(volume0)
    pair = (torch.as_tensor(box.vertices, dtype=torch.float32), torch.as_tensor(box.faces))
    got = to_pytorch3d(pair)
    got.faces_list()[0].zero_()
    assert torch.equal(pair[1], torch.as_tensor(faces0))

    verts, faces = torch.as_tensor(verts0.copy()), torch.as_tensor(faces0.copy())  # float64, int64: as trimesh's
    back = from_pytorch3d(_Meshes([verts], [faces]))[0]
    verts.add_(100.0)
    faces[:] = faces[:, [0, 2, 1]]
    np.testing.assert_array_equal(back.vertices, verts0)
    np.testing.assert_array_equal(back.faces, faces0)
    assert back.volume == pytest.approx(volume0)
