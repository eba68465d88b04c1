"""voxface.interop: meshes to and from PyTorch3D, which is optional (not installable here): the
conversion is tested against a stand-in ``pytorch3d.structures.Meshes`` that keeps what it is given
and answers ``verts_list``/``faces_list`` as PyTorch3D's does, and the missing library is one line."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import trimesh

from voxface.errors import VoxfaceError
from voxface.frame import Grid
from voxface.interop import from_pytorch3d, to_pytorch3d
from voxface.mesh import extract_mesh


class _Meshes:
    """The part of ``pytorch3d.structures.Meshes`` these functions use (lists of tensors)."""

    def __init__(self, verts, faces):
        assert isinstance(verts, list) and isinstance(faces, list) and len(verts) == len(faces)
        self._verts, self._faces = verts, faces

    def verts_list(self):
        return self._verts

    def faces_list(self):
        return self._faces


@pytest.fixture
def fake_pytorch3d(monkeypatch):
    pkg, structures = types.ModuleType("pytorch3d"), types.ModuleType("pytorch3d.structures")
    structures.Meshes = _Meshes
    pkg.structures = structures
    monkeypatch.setitem(sys.modules, "pytorch3d", pkg)
    monkeypatch.setitem(sys.modules, "pytorch3d.structures", structures)


def _sphere_result(r: float):
    g = Grid(32, 300.0, (0.0, 0.0, 0.0))
    c = (np.arange(32) + 0.5) * g.voxel_size - 150.0
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return extract_mesh((r - np.sqrt(x**2 + y**2 + z**2)).astype(np.float32), g)


def test_meshes_round_trip_through_pytorch3d(fake_pytorch3d):
    small, big = _sphere_result(50.0), _sphere_result(100.0)
    box = trimesh.creation.box((10.0, 20.0, 30.0))
    p3d = to_pytorch3d([small, big.mesh, box])
    verts, faces = p3d.verts_list(), p3d.faces_list()
    assert [v.dtype for v in verts] == [torch.float32] * 3 and [f.dtype for f in faces] == [torch.int64] * 3
    assert [len(v) for v in verts] == [len(small.mesh.vertices), len(big.mesh.vertices), 8]
    back = from_pytorch3d(p3d)
    for orig, got in zip((small.mesh, big.mesh, box), back):
        np.testing.assert_array_equal(got.faces, orig.faces)
        np.testing.assert_allclose(got.vertices, orig.vertices, atol=1e-4)  # float32 mm
        assert got.is_watertight and got.volume > 0  # winding kept: normals outward
    # one mesh is a batch of one; a Reconstruction-like object (.mesh) is taken too
    one = to_pytorch3d(types.SimpleNamespace(mesh=box))
    assert len(one.verts_list()) == 1 and torch.equal(one.faces_list()[0], torch.as_tensor(box.faces))
    # so is a (vertices, faces) pair, numpy or torch (it was taken as two meshes and refused), alone or in a list;
    # a tuple of two meshes stays a batch of two
    for pair in ((box.vertices, box.faces), (torch.as_tensor(box.vertices), torch.as_tensor(box.faces))):
        for given, n in ((pair, 1), ([pair, box], 2)):
            got = to_pytorch3d(given)
            assert len(got.verts_list()) == n and torch.equal(got.faces_list()[0], torch.as_tensor(box.faces))
            np.testing.assert_allclose(got.verts_list()[0].numpy(), box.vertices, atol=1e-6)
    assert len(to_pytorch3d((small, box)).verts_list()) == 2
    # devices as every voxface function takes them ("auto" was a torch RuntimeError traceback)
    want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for device, where in (("auto", want), ("cpu", torch.device("cpu")), (torch.device("cpu"), torch.device("cpu"))):
        assert to_pytorch3d(box, device=device).verts_list()[0].device.type == where.type
    with pytest.raises(VoxfaceError, match="unknown device 'gpu'"):
        to_pytorch3d(box, device="gpu")
    # a CUDA index, as resolve_device takes it (str(0) was "unknown device '0'")
    if torch.cuda.is_available():
        assert to_pytorch3d(box, device=0).verts_list()[0].device == torch.device("cuda:0")
    else:
        with pytest.raises(VoxfaceError, match="device 'cuda:0' was asked for but CUDA is not available"):
            to_pytorch3d(box, device=0)


def test_bad_items_and_a_missing_pytorch3d_are_one_line(monkeypatch):
    with pytest.raises(TypeError, match="got ndarray"):
        to_pytorch3d([np.zeros((3, 3))])
    with pytest.raises(TypeError, match="from_pytorch3d expects a pytorch3d.structures.Meshes, got list"):
        from_pytorch3d([trimesh.creation.box()])  # was an AttributeError traceback
    monkeypatch.setitem(sys.modules, "pytorch3d", None)  # import fails as when it is not installed
    with pytest.raises(ImportError, match="pytorch3d is not installed; it is an optional interop") as e:
        to_pytorch3d(trimesh.creation.box())
    assert "\n" not in str(e.value)
