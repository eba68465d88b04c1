"""Optional interop with PyTorch3D: voxface meshes as ``pytorch3d.structures.Meshes`` and back.

PyTorch3D is not a dependency (it is not on the package index for most platforms: build it as its
INSTALL.md says); these functions import it when called and say so in one line when it is missing.

    >>> import voxface
    >>> from voxface.interop import to_pytorch3d
    >>> model = voxface.load_model()
    >>> recs = [model.reconstruct(p) for p in photos]
    >>> meshes = to_pytorch3d(recs, device="cuda")      # one batched Meshes, ragged sizes

Vertices stay in voxface's canonical frame (:mod:`voxface.frame`: millimetres, x to the subject's
left, y up, z out of the face) and triangles keep their winding (counter-clockwise seen from
outside), so PyTorch3D's face normals point outward. A PyTorch3D camera from
``look_at_view_transform(dist=600, elev=0, azim=0)`` sits on the +z axis looking at the origin (the
head's centroid): it sees the face from the front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputTypeError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import trimesh

__all__ = ["to_pytorch3d", "from_pytorch3d"]

_MISSING = ("pytorch3d is not installed; it is an optional interop of voxface (build it as "
            "https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md says); voxface's own meshes "
            "are trimesh.Trimesh")


def _pytorch3d_meshes() -> Any:
    try:
        from pytorch3d.structures import Meshes
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name in ("pytorch3d", "pytorch3d.structures"):
            raise ImportError(_MISSING) from None
        # installed but broken (its _C built for another torch, a missing dependency): not "not installed"
        import torch

        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise ImportError(f"pytorch3d is installed but does not import ({type(e).__name__}: {first}); a build for "
                          f"another torch (this is torch {torch.__version__}) or a missing dependency: rebuild it "
                          "as https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md says") from None
    return Meshes


def to_pytorch3d(meshes: Any, device: "str | torch.device | None" = None) -> Any:
    """voxface meshes as one batched ``pytorch3d.structures.Meshes``.

    Args:
        meshes: a ``trimesh.Trimesh``, :class:`voxface.MeshResult`, :class:`voxface.Reconstruction`
            or ``(vertices (V, 3), faces (F, 3))`` pair of arrays (:func:`voxface.mesh.as_trimesh`), or a
            sequence or other iterable of them, a generator included (any mix; sizes may differ:
            PyTorch3D batches ragged meshes).
        device: where the tensors go: ``None`` (the default) the CPU; ``"auto"`` CUDA when present,
            else the CPU; ``"cpu"``, ``"cuda:N"``, a CUDA index (``0``) or a ``torch.device`` (:func:`voxface.device.resolve_device`).

    Returns:
        ``Meshes`` with ``verts_list()[i]`` ``float32 (V_i, 3)`` in canonical mm and
        ``faces_list()[i]`` ``int64 (F_i, 3)``, in the order given: copies, never views of the
        meshes' arrays. The vertices are taken as they are: a ``trimesh.Scene`` (what ``trimesh.load``
        gives for a ``.glb``, which :func:`~voxface.mesh.as_trimesh` also takes) is in its own units,
        metres for voxface's own ``.glb`` (scale it by 1000 first).

    Raises:
        ImportError: pytorch3d is not installed, or is installed but does not import (one line saying
            which, and where to get or rebuild it).
        TypeError: an item is none of the above.
        VoxfaceError: a device this machine does not have (one line).
    """
    import torch

    from .device import resolve_device

    device = torch.device("cpu") if device is None else resolve_device(device)

    from .mesh import as_trimesh, mesh_list

    # mesh_list: a generator (``to_pytorch3d(model.reconstruct(p) for p in photos)``) too; it was refused
    # as one mesh ("expected a mesh ..., got generator"), only a list or tuple being read as several
    tms = [as_trimesh(m) for m in mesh_list(meshes)]  # type errors before the import error: they are the caller's
    Meshes = _pytorch3d_meshes()
    # copies (torch.tensor), never views: as_tensor shared the trimesh's int64 faces, so an in-place
    # edit on either side changed the other behind trimesh's caches
    verts = [torch.tensor(np.asarray(m.vertices, np.float32), device=device) for m in tms]
    faces = [torch.tensor(np.asarray(m.faces, np.int64), device=device) for m in tms]
    return Meshes(verts=verts, faces=faces)


def _is_pair(obj: Any) -> bool:
    """Whether ``obj`` is one ``(vertices, faces)`` mesh, not a sequence of two meshes."""
    return isinstance(obj, tuple) and len(obj) == 2 and all(getattr(a, "ndim", None) == 2 for a in obj)


def from_pytorch3d(meshes: Any) -> "list[trimesh.Trimesh]":
    """A ``pytorch3d.structures.Meshes`` batch as ``trimesh.Trimesh`` meshes (float64 vertices, int64
    faces, on the CPU, copies of the tensors; nothing merged or reordered), e.g. to write them with
    :func:`voxface.mesh.export_mesh` or to score them with :mod:`voxface.metrics`. Anything without
    ``verts_list``/``faces_list`` is an :class:`~voxface.errors.InputTypeError`."""
    import trimesh

    if not all(callable(getattr(meshes, name, None)) for name in ("verts_list", "faces_list")):
        raise InputTypeError(f"from_pytorch3d expects a pytorch3d.structures.Meshes, got {type(meshes).__name__}")

    # copied (np.array): float64 / int64 CPU tensors' numpy() is their memory, which trimesh keeps as it is
    return [trimesh.Trimesh(np.array(v.detach().cpu().double().numpy()), np.array(f.detach().cpu().long().numpy()),
                            process=False)
            for v, f in zip(meshes.verts_list(), meshes.faces_list())]
