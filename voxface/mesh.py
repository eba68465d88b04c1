"""From occupancy logits to a closed triangle mesh in canonical millimetres, and mesh files.

:func:`extract_mesh` follows Occupancy Networks' ``Generator3D`` (``onet/generation.py``): the
probability threshold is applied in logit space, the grid is padded with one cell of "outside" so
every surface closes, marching cubes runs on the padded grid (scikit-image, Lewiner), and the
result comes with its timing per stage.

Axis order and orientation. Logits are ``(D, H, W) = (z, y, x)`` (:mod:`voxface.frame`). Marching
cubes returns vertices in ``(d, h, w)`` index order and triangles wound *clockwise* seen from
outside in that index space (its ``normals`` point outward, but the right-hand rule on its faces
points inward). :meth:`voxface.frame.Grid.index_to_mm` reverses the axis order to ``(x, y, z)``,
an odd permutation that mirrors the handedness, so the same triangles are counter-clockwise seen
from outside in the canonical frame: face normals point outward and ``trimesh`` volumes are positive
with no flip. A check on the signed volume keeps that true should scikit-image ever change its
winding (the tests pin it).

Import cost: trimesh and open3d are imported inside the functions that need them, torch never
(tensors are recognised by their ``detach``/``cpu`` methods).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import stat
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, InputTypeError, VoxfaceError
from .frame import Grid

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

#: File formats :func:`export_mesh` writes (through trimesh), by extension.
MESH_FORMATS = ("obj", "ply", "stl", "glb")

#: Value the grid is padded with (in logit space): far below any threshold, so the padding is
#: outside and every isosurface closes at the grid boundary (as Occupancy Networks does).
PAD_LOGIT = -1e6

#: Finite logits are clipped to this magnitude (``inf`` from saturated models becomes finite).
_MAX_LOGIT = 1e5


def _to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy array from a numpy array, a (CPU/GPU, possibly bfloat16) torch tensor or a sequence."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if x.is_floating_point() and str(x.dtype) != "torch.float64":
            x = x.float()  # numpy has no bfloat16; float64 stays float64
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _checked_pair(vertices: Any, faces: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (V, 3) float64, faces (F, 3) int64)`` of a mesh given as arrays, or an
    :class:`InputError` naming what is wrong: trimesh takes any shapes and indices as they are
    (a face naming a missing vertex failed later in trimesh's code, fractional indices were
    truncated, ``(V, 2)`` vertices made a mesh)."""
    try:
        v = _to_numpy(vertices, np.float64)
        f_raw = _to_numpy(faces)
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"expected (vertices, faces) arrays of numbers: {e}") from None
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"vertices must have shape (V, 3), got {v.shape}")
    if f_raw.size == 0:
        return v, np.zeros((0, 3), np.int64)
    if f_raw.ndim != 2 or f_raw.shape[1] != 3:
        raise InputError(f"faces must have shape (F, 3) (triangles), got {f_raw.shape}")
    if f_raw.dtype.kind not in "iub" and not (f_raw.dtype.kind == "f" and np.all(np.mod(f_raw, 1) == 0)):
        raise InputError(f"faces must hold whole vertex indices, got {f_raw.dtype} values")
    f = f_raw.astype(np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"faces index vertex {int(f.min()) if f.min() < 0 else int(f.max())}, but there are "
                         f"{len(v)} vertices (indices 0..{len(v) - 1})")
    return v, f


def as_trimesh(mesh: Any) -> "trimesh.Trimesh":
    """A ``trimesh.Trimesh`` from a mesh in any form voxface hands out: a ``trimesh.Trimesh``, a
    :class:`MeshResult` or :class:`voxface.Reconstruction` (their ``.mesh``, not copied), a
    ``trimesh.Scene`` (what ``trimesh.load`` returns for a ``.glb``, voxface's own included: its
    meshes joined in world coordinates, ``Scene.to_mesh``: **metres** for voxface's own ``.glb``, which
    glTF keeps in metres, where every other format and voxface's meshes are millimetres; scale it by
    1000 before comparing it with them, e.g. in :func:`voxface.metrics.mesh_metrics`), or a
    ``(vertices (V, 3), faces (F, 3))`` pair of arrays (numpy or torch; taken as they are, no vertex
    merge). Anything else is an
    :class:`~voxface.errors.InputTypeError`; a scene without a triangle mesh an :class:`InputError`."""
    import trimesh

    inner = getattr(mesh, "mesh", None)
    if isinstance(inner, trimesh.Trimesh):
        return inner
    if isinstance(mesh, trimesh.Trimesh):
        return mesh
    if isinstance(mesh, trimesh.Scene):  # trimesh.load("head.glb"): it needed force="mesh"
        if not any(isinstance(g, trimesh.Trimesh) for g in mesh.geometry.values()):
            raise InputError("expected a mesh: this trimesh.Scene holds no triangle mesh")
        return mesh.to_mesh()
    if isinstance(mesh, tuple) and len(mesh) == 2:
        return trimesh.Trimesh(*_checked_pair(mesh[0], mesh[1]), process=False)
    raise InputTypeError(f"expected a mesh: a trimesh.Trimesh, a MeshResult, a Reconstruction or (vertices, faces), "
                         f"got {type(mesh).__name__}")


def mesh_list(meshes: Any) -> list[Any]:
    """``meshes`` as a list, for functions that take one mesh or several: one mesh (anything
    :func:`as_trimesh` takes but a sequence of them: a ``trimesh.Trimesh``, a :class:`MeshResult`,
    a :class:`voxface.Reconstruction`, a ``(vertices, faces)`` pair of arrays) is a list of one (it
    was "'Trimesh' object is not iterable", and a pair two meshes); the items are not converted."""
    from .interop import _is_pair

    if _is_pair(meshes) or not isinstance(meshes, Iterable) or isinstance(meshes, (str, bytes)):
        return [meshes]
    return list(meshes)


def probability_to_logit(p: float) -> float:
    """``log p - log(1 - p)`` for a probability ``0 < p < 1`` (else an :class:`InputError`: it was
    a bare ``math domain error``)."""
    if not 0.0 < p < 1.0:  # NaN fails this too
        raise InputError(f"a surface threshold is a probability strictly between 0 and 1, got {p}")
    return math.log(p) - math.log1p(-p)


@dataclass
class MeshResult:
    """A mesh extracted from a logit grid.

    Attributes:
        mesh: ``trimesh.Trimesh`` in canonical millimetres, ``(x, y, z)`` (:mod:`voxface.frame`);
            closed, triangles counter-clockwise seen from outside (outward normals, positive
            volume).
        threshold: the occupancy *probability* the surface was extracted at.
        seconds: wall time per stage (``prepare``, ``marching_cubes``, ``components``, ``smooth``,
            ``decimate``; 0.0 for a stage that did not run) and ``total``.
        n_components: connected components marching cubes produced, before ``keep_largest``.
    """

    mesh: "trimesh.Trimesh"
    threshold: float
    seconds: dict[str, float] = field(default_factory=dict)
    n_components: int = 1

    @property
    def level(self) -> float:
        """The threshold in logit space (the isovalue marching cubes used on logits). A binary 0/1
        grid is meshed where its occupancy, linear between cells, equals :attr:`threshold`
        (:func:`extract_mesh`), which is not where ``2 * occupancy - 1`` equals this level but at 0.5."""
        return probability_to_logit(self.threshold)

    @property
    def watertight(self) -> bool:
        """Whether the mesh is closed and consistently wound (trimesh's ``is_watertight`` and
        ``is_winding_consistent``), found on its arrays (:func:`_edge_topology`): asking trimesh cached
        its edges on the mesh (~120 bytes a face: 45 MB for a 256^3 face) for as long as it is held."""
        topo = _edge_topology(np.asarray(self.mesh.faces), len(self.mesh.vertices))
        return bool(topo.closed and topo.consistent)

    def save(self, path: str | Path, file_type: str | None = None) -> Path:
        """Write the mesh with :func:`export_mesh`."""
        return export_mesh(self.mesh, path, file_type)


def _logit_volume(logits: Any, grid: Grid) -> tuple[np.ndarray, bool]:
    """``(volume (R, R, R) float32, binary)`` of :func:`extract_mesh`'s ``logits`` (checked, infinities
    clipped); ``binary``: every value is 0 or 1 and both occur, a 0/1 occupancy grid."""
    if not isinstance(grid, Grid):  # a resolution (64) or None was AttributeError: no attribute 'resolution'
        raise InputTypeError(f"grid must be a voxface.Grid (the model's: model.grid; Grid(resolution, side_mm, "
                             f"center_mm) for another), got {type(grid).__name__} {grid!r}")
    vol = _to_numpy(logits)
    while vol.ndim > 3 and vol.shape[0] == 1:  # (1, R, R, R), (1, 1, R, R, R): one grid, leading unit axes
        vol = vol[0]
    R = grid.resolution
    if vol.shape != (R, R, R):
        raise InputError(
            f"logits must have shape ({R}, {R}, {R}), (1, {R}, {R}, {R}) or (1, 1, {R}, {R}, {R}) for a "
            f"{R}^3 grid (one face; index a batch), got {tuple(vol.shape)}"
        )
    if not np.issubdtype(vol.dtype, np.floating):
        hint = ""
        if (vol.dtype == bool or np.issubdtype(vol.dtype, np.integer)) and np.isin(vol, (0, 1)).all():
            hint = " (an occupancy grid: pass occupancy.astype(np.float32), meshed midway between its 0 and 1 cells)"
        raise InputTypeError(f"logits must be floating point, got {vol.dtype}{hint}")
    with np.errstate(over="ignore"):  # float64 logits past float32's range become +-inf, clipped below
        vol = vol.astype(np.float32, copy=False)  # may be the caller's array: read, never written
    lo, hi = vol.min(), vol.max()  # NaN if any value is NaN
    if np.isnan(lo) or np.isnan(hi):
        raise InputError("logits contain NaN")
    if lo >= 0.0 and hi <= 1.0 and np.any((vol > 0.0) & (vol < 1.0)):  # a 0/1 occupancy grid meshes (binary)
        # sigmoid(logits) passed as logits: at any threshold up to 0.5 every cell was inside, and the
        # "head" came back as the whole grid's cube
        raise InputError(f"logits all lie in [0, 1] (lowest {float(lo):.3g}, highest {float(hi):.3g}): these look like "
                         f"occupancy probabilities; pass logits, log(p) - log(1 - p) (sigmoid(logits) is the probability)")
    if lo < -_MAX_LOGIT or hi > _MAX_LOGIT:
        vol = np.clip(vol, -_MAX_LOGIT, _MAX_LOGIT)
    return vol, bool(lo == 0.0 and hi == 1.0)  # and nothing between: refused above


def import_backends() -> None:
    """Import the libraries :func:`extract_mesh` and :func:`export_mesh` load lazily (trimesh alone
    takes ~0.65 s), for a process about to fork workers that mesh: they inherit the modules, and
    share their pages, instead of each importing them again."""
    import scipy.sparse.csgraph  # noqa: F401 - mesh components
    import skimage.measure  # noqa: F401 - marching cubes
    import trimesh  # noqa: F401 - meshes and their export


def _to_open3d(mesh: "trimesh.Trimesh") -> Any:
    import open3d as o3d

    return o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(mesh.vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(mesh.faces, dtype=np.int32)),
    )


def _from_open3d(o3d_mesh: Any) -> "trimesh.Trimesh":
    import trimesh

    return trimesh.Trimesh(np.asarray(o3d_mesh.vertices), np.asarray(o3d_mesh.triangles), process=True)


def _closed(mesh: "trimesh.Trimesh") -> bool:
    return bool(len(mesh.faces) and mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0)


def _o3d_decimate(mesh: "trimesh.Trimesh", target: int) -> "trimesh.Trimesh":
    """open3d quadric decimation (Garland-Heckbert) to about ``target`` triangles."""
    return _from_open3d(_to_open3d(mesh).simplify_quadric_decimation(target_number_of_triangles=int(target)))


def _repair(mesh: "trimesh.Trimesh") -> "trimesh.Trimesh":
    """trimesh's repairs for a decimated mesh: merge, drop degenerate/duplicate faces, fill holes."""
    import trimesh

    mesh = mesh.copy()
    mesh.merge_vertices()
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    trimesh.repair.fill_holes(mesh)
    trimesh.repair.fix_normals(mesh)  # consistent winding, outward
    return mesh


def _decimate(mesh: "trimesh.Trimesh", target: int) -> "trimesh.Trimesh":
    """Decimate keeping the mesh closed: open3d, then trimesh repairs, else the input unchanged.

    open3d's quadric decimation keeps a closed manifold closed in practice (it stops above the
    target rather than break the topology: a sphere asked for 100 faces gets 100, a genus-200
    blob asked for 300 keeps ~1,300). Should it ever return an open or inconsistently wound mesh,
    trimesh repairs it (merge vertices, drop degenerate and duplicate faces, fill holes, fix
    winding); if that still does not close it the undecimated mesh is returned with a
    ``RuntimeWarning``, so :func:`extract_mesh` never hands out an open mesh.
    """
    out = _o3d_decimate(mesh, target)
    if _closed(out):
        return out
    out = _repair(out)
    if _closed(out):
        return out
    warnings.warn(
        f"quadric decimation to {target} faces left the mesh open and trimesh could not repair it; "
        f"keeping the undecimated mesh ({len(mesh.faces)} faces)",
        RuntimeWarning,
        stacklevel=3,
    )
    return mesh


def _smooth(mesh: "trimesh.Trimesh", iterations: int) -> "trimesh.Trimesh":
    """Taubin smoothing (:func:`_taubin`) keeping the mesh closed, in memory and once written and
    read back.

    Smoothing moves vertices only, so the faces stay those of the closed input; but it can bring
    two vertices together (slivers next to grid points), and a reader that merges coincident
    vertices (trimesh's default, and every STL/GLB reader after float32 rounding) would then fuse
    them into a non-manifold edge. Vertices are therefore rounded to float32 as marching cubes'
    are; where any two then coincide, trimesh's repairs run (:func:`_repair`), and if the mesh does
    not come out closed the unsmoothed mesh is returned with a ``RuntimeWarning``.
    """
    import trimesh

    smoothed = _taubin(mesh, int(iterations))
    xyz = smoothed.astype(np.float32).astype(np.float64)
    out = trimesh.Trimesh(xyz, np.asarray(mesh.faces), process=False)
    if not _merge_changes(xyz):
        out.metadata["processed"] = True  # nothing process=True would change
        return out
    out = _repair(out)
    if _closed(out) and not _merge_changes(np.asarray(out.vertices, np.float32).astype(np.float64)):
        return out
    warnings.warn(
        f"Taubin smoothing ({iterations} iterations) brought vertices together and trimesh could not "
        f"keep the mesh closed; keeping the unsmoothed mesh",
        RuntimeWarning,
        stacklevel=3,
    )
    return mesh


#: Taubin's (1995) pass factors: ``lambda`` shrinks, ``mu`` inflates back; pass-band frequency
#: ``1 / lambda + 1 / mu`` = 0.11 (the uniform Laplacian's frequencies run from 0 to 2).
_TAUBIN = (0.5, -0.53)


def _taubin(mesh: "trimesh.Trimesh", iterations: int) -> np.ndarray:
    """The vertices ``(V, 3)`` float64 of ``mesh`` after Taubin's ``lambda | mu`` smoothing with the
    *uniform* (umbrella) Laplacian, ``iterations`` pairs of passes (trimesh's ``filter_taubin`` on
    a copy; ``mesh`` is not changed), each closed component then scaled back to the volume it
    enclosed (Desbrun et al. 1999's volume constraint), except the components the filter cannot
    smooth, which are kept as they were; the faces are unchanged.

    Not open3d's ``filter_smooth_taubin``: it weights each neighbour by the inverse edge length,
    so marching cubes' short sliver edges dominate, their ends are pulled together (on a real face
    from 10 iterations on, until they coincide and the mesh was kept unsmoothed), and the weights
    grow as the edges shrink: 300 iterations moved a vertex 177 mm, 1,000 blew the head up to a
    kilometre. The uniform filter is stable: no frequency gains more than 0.085% a pass pair (those
    near half the pass-band frequency, 0.11), so it removes what varies from vertex to vertex and
    keeps the shape, which grows slowly (on a real face the volume grew 0.3% at 30 iterations,
    1.2% at 100, 3.6% at 300 and 12% at 1,000 before the volume constraint; a sphere of radius 3
    cells, nearer the most amplified frequency, grew 2.2 times wider at 1,000).

    Small components. A blob a few cells across is all stop band to the filter (the octahedron of
    a single cell, Laplacian frequency 1, shrinks by 0.765 a pass pair) and came back as a point
    (a 1-cell blob at 10 iterations with 0.03% of its volume; a sphere of radius 1 cell with 11%
    of its volume at 30); a rod one cell thick is stop band across and pass band along, and came
    back as a line. So a component that the filter thins by more than 10% along a principal axis
    (its RMS extent about its centre: :data:`_STOP_BAND`) is kept unsmoothed, and every other
    closed component is scaled back to its volume, which undoes the filter's isotropic shrinking
    or growth (a sphere of radius 2 cells stays within 15% of its width at 1,000 iterations). The filter is linear and keeps each component's degree-weighted
    vertex mean (the fixed point of the uniform Laplacian): the components are scaled about it, so
    scaling once at the end equals scaling after every pass. A mesh that is not closed and
    consistently wound (whose volumes mean nothing) is not scaled.
    """
    import trimesh
    from scipy.sparse.csgraph import connected_components
    from trimesh.smoothing import filter_taubin, laplacian_calculation

    xyz = np.array(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    n = len(xyz)
    work = trimesh.Trimesh(xyz, faces, process=False)
    laplacian = laplacian_calculation(work).tocsr()  # CSR: each pass about twice as fast as COO
    # components of the vertex graph (the operator never mixes two of them); each face gives each of
    # its corners one outgoing edge, so a vertex's face count is its row sum in the operator
    n_comp, comp = connected_components(laplacian, directed=False)
    degree = np.bincount(faces.ravel(), minlength=n).astype(np.float64)
    weight = np.bincount(comp, weights=degree, minlength=n_comp)
    centre = np.stack([np.bincount(comp, weights=degree * xyz[:, i], minlength=n_comp) for i in range(3)], axis=1)
    centre /= np.where(weight > 0, weight, 1.0)[:, None]
    face_comp = comp[faces[:, 0]]
    centred = xyz - centre[comp]
    work.vertices = centred.copy()
    lamb, mu = _TAUBIN  # trimesh takes mu's magnitude (its nu) and alternates single passes
    out = np.asarray(filter_taubin(work, lamb=lamb, nu=-mu, iterations=2 * iterations,
                                   laplacian_operator=laplacian).vertices, dtype=np.float64)
    # a component the filter thins along some axis is in its stop band: kept as it was
    lost = (_principal_rms(out, comp, n_comp) < _STOP_BAND * _principal_rms(centred, comp, n_comp)).any(axis=1)
    out[lost[comp]] = centred[lost[comp]]
    scale = np.ones(n_comp)
    if _closed_topology(faces, n) is not None:  # every component closed: volumes mean something
        before = _signed_volumes(centred, faces, face_comp, n_comp)
        after = _signed_volumes(out, faces, face_comp, n_comp)
        ok = before * after > 0  # a cavity (wound inward, negative volume) keeps its volume too
        scale[ok] = np.cbrt(before[ok] / after[ok])
    return out * scale[comp][:, None] + centre[comp]


#: A component whose RMS extent along a principal axis (about its centre) the filter takes below this
#: fraction is left unsmoothed by :func:`_taubin`: its shape is in the filter's stop band.
_STOP_BAND = 0.9


def _principal_rms(v: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """``(n, 3)`` RMS extents (mm) along the principal axes, ascending, of the points ``v (V, 3)``
    of each part ``labels (V,)`` about the origin (the square roots of their second-moment matrix's
    eigenvalues)."""
    count = np.maximum(np.bincount(labels, minlength=n), 1)
    m = np.empty((n, 3, 3))
    for i in range(3):
        for j in range(i, 3):
            m[:, i, j] = m[:, j, i] = np.bincount(labels, weights=v[:, i] * v[:, j], minlength=n) / count
    return np.sqrt(np.maximum(np.linalg.eigvalsh(m), 0.0))


def _signed_volumes(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` signed volumes (mm^3) of the closed parts of a mesh whose face ``k`` belongs to part
    ``labels[k]`` (:func:`_signed_volume`, one sum per part)."""
    return np.bincount(labels, weights=_volume_terms(vertices, faces), minlength=n) / 6.0


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (mm^3) enclosed by triangles, ``sum(v0 . (v1 x v2)) / 6``: positive for a closed
    mesh wound counter-clockwise seen from outside (a small fraction of the cost of trimesh's
    ``mesh.volume``, which computes every mass property)."""
    return float(_volume_terms(vertices, faces).sum()) / 6.0


def _volume_terms(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``v0 . (v1 x v2)`` of each triangle, ``(F,)`` float64: six times its signed volume about the
    origin. One coordinate at a time, and no BLAS call (whose threads would only get in the way of
    this small sum)."""
    x, y, z = np.asarray(vertices, dtype=np.float64).T
    f0, f1, f2 = np.asarray(faces).T
    x1, y1, z1, x2, y2, z2 = x[f1], y[f1], z[f1], x[f2], y[f2], z[f2]
    t = x[f0] * (y1 * z2 - z1 * y2)
    t += y[f0] * (z1 * x2 - x1 * z2)
    t += z[f0] * (x1 * y2 - y1 * x2)
    return t


@dataclass
class _Topology:
    """Edge topology of a triangle mesh (see :func:`_edge_topology`)."""

    labels: np.ndarray  # (F,) int64 connected-component label per face
    closed: bool  # every edge is shared by exactly two faces
    consistent: bool  # every shared edge is traversed in opposite directions by its two faces


def _edge_topology(faces: np.ndarray, n_vertices: int) -> _Topology:
    """Components, closedness and winding consistency of ``faces (F, 3)`` from one edge sort.

    Components join faces through edges shared by exactly two faces: the same partition as
    ``trimesh.graph.connected_component_labels(mesh.face_adjacency)`` (``face_adjacency`` skips
    non-manifold edges too). ``closed`` and ``consistent`` are trimesh's ``is_watertight`` and
    ``is_winding_consistent``. About a fifth of the cost of computing those through trimesh.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    n_f = len(f)
    if n_f == 0:
        return _Topology(np.zeros(0, np.int64), False, True)
    d = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # directed edges; face k owns rows 3k, 3k+1, 3k+2
    key = np.minimum(d[:, 0], d[:, 1]) * np.int64(max(1, n_vertices)) + np.maximum(d[:, 0], d[:, 1])
    order = np.argsort(key)
    k = key[order]
    start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])  # first slot of each distinct edge
    count = np.diff(np.r_[start, len(k)])
    two = start[count == 2]
    a, b = order[two], order[two + 1]
    consistent = bool(np.all(d[a, 0] != d[b, 0]))  # (u, v) in one face, (v, u) in the other
    graph = coo_matrix((np.ones(len(a), np.int8), (a // 3, b // 3)), shape=(n_f, n_f))
    _, labels = connected_components(graph, directed=False)
    return _Topology(labels.astype(np.int64, copy=False), bool(len(two) == len(count)), consistent)


def _closed_topology(faces: np.ndarray, n_vertices: int) -> "_Topology | None":
    """:func:`_edge_topology` of a closed, consistently wound mesh, or ``None`` for any other mesh.

    The common case of :func:`_marching_cubes_mesh`, for under a third of the cost, and with no
    global sort. Half-edge ``h = 3 k + j`` runs from corner ``j`` of face ``k`` to corner ``j + 1``;
    as a sparse matrix ``H[u, v] = h + 1`` (scipy's COO to CSR conversion: a counting sort by
    row, then each row's few columns sorted), the mesh is closed and consistently wound exactly
    when no half-edge is a loop or repeated (``nnz`` = the number of half-edges) and ``H``'s
    pattern is symmetric: every ``u -> v`` has its ``v -> u``, once. Then ``H`` and its transpose
    (in CSR) list the same ``(u, v)`` slots in the same order, holding a half-edge and its twin.
    The components are those of the face graph the twins give (three neighbours per face),
    labelled by the same scipy call as :func:`_edge_topology`, so the labels are the same too.
    """
    from scipy.sparse import csc_matrix, csr_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    n_f = len(f)
    n = 3 * n_f
    if n_f == 0 or n % 2:
        return None
    src = f.ravel()
    dst = f[:, [1, 2, 0]].ravel()
    if (src == dst).any():  # a face with a repeated corner
        return None
    nv = max(1, int(n_vertices))
    # data h + 1: CSR conversion sums repeated entries and drops zeros; a repeat shows in nnz
    half = csr_matrix((np.arange(1, n + 1, dtype=np.int64), (src, dst)), shape=(nv, nv))
    del src, dst  # each array is let go once used (~200 bytes a face held at once, 80 MB at 256^3, before)
    if half.nnz != n:
        return None
    back = half.T.tocsr()  # back[u, v] = the half-edge v -> u, plus one
    if not (np.array_equal(half.indptr, back.indptr) and np.array_equal(half.indices, back.indices)):
        return None
    half.data -= 1
    back.data -= 1
    twin = np.empty(n, np.int64)
    twin[half.data] = back.data
    del half, back
    twin //= 3  # the twin's face
    # symmetric, so given as CSC (its transpose, the same graph) with float64 weights: what scipy
    # would otherwise convert it to
    graph = csc_matrix((np.ones(n), twin, np.arange(0, n + 1, 3)), shape=(n_f, n_f))
    del twin
    _, labels = connected_components(graph, directed=False)
    return _Topology(labels.astype(np.int64, copy=False), True, True)


def _surface_cells(field: np.ndarray, level: float, *, pad: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The part of a padded volume marching cubes needs, and a mask of the cells to visit.

    Returns ``(volume, mask)``: the padded volume cut one point past the last cell that may hold
    the surface (the upper ends only, so indices -- and every float32 rounding of the vertices --
    stay those of the whole volume) and a boolean mask, of the cut volume's shape, that is True at
    the eight corners of every cell with corners on both sides of ``level`` (a value equal to it
    counts as either), whatever corner scikit-image looks the mask up at. Marching cubes skips
    every other cell, which holds no surface: the result is the same, for a fraction of the work.

    ``field`` is the padded volume, or with ``pad`` the volume ``(R, R, R)`` float32 itself, padded
    here with one cell of :data:`PAD_LOGIT` (``level`` must lie above it): the same ``volume``,
    written once, where ``np.pad`` and then the cut copied the whole grid twice (a 256^3 grid's
    67 MB held three times over during marching cubes).
    """
    up = field >= level
    zy = up.any(axis=2)
    z = np.flatnonzero(zy.any(axis=1))
    y = np.flatnonzero(zy.any(axis=0))
    x = np.flatnonzero(up.any(axis=(0, 1)))
    del up, zy
    shift = int(pad)  # index of field's [0, 0, 0] in the padded volume
    shape = [n + 2 * shift for n in field.shape]
    # cells lo - 1 .. hi touch a point >= level; their corners run lo - 1 .. hi + 1 (clamped)
    lo = [max(int(a[0]) + shift - 1, 0) for a in (z, y, x)]
    hi = [min(int(a[-1]) + shift + 2, n) for a, n in zip((z, y, x), shape)]
    if pad:
        volume = np.full(hi, PAD_LOGIT, dtype=np.float32)
        inner = [min(h, n + 1) - 1 for h, n in zip(hi, field.shape)]  # field points inside the cut
        volume[1: inner[0] + 1, 1: inner[1] + 1, 1: inner[2] + 1] = field[: inner[0], : inner[1], : inner[2]]
    else:
        volume = np.ascontiguousarray(field[: hi[0], : hi[1], : hi[2]])
    block = volume[lo[0]:, lo[1]:, lo[2]:]

    def every(b: np.ndarray) -> np.ndarray:  # all eight corners of each cell
        b = b[:-1] & b[1:]
        b = b[:, :-1] & b[:, 1:]
        return b[:, :, :-1] & b[:, :, 1:]

    cells = ~(every(block > level) | every(block < level))  # (nz - 1, ny - 1, nx - 1)
    mask = np.zeros(volume.shape, dtype=bool)
    corners = mask[lo[0]:, lo[1]:, lo[2]:]
    m = np.zeros((cells.shape[0] + 1,) + cells.shape[1:], dtype=bool)
    m[:-1] |= cells
    m[1:] |= cells
    m2 = np.zeros(m.shape[:1] + (m.shape[1] + 1, m.shape[2]), dtype=bool)
    m2[:, :-1] |= m
    m2[:, 1:] |= m
    corners[:, :, :-1] |= m2
    corners[:, :, 1:] |= m2
    return volume, mask


def _merge_changes(xyz: np.ndarray) -> bool:
    """Whether trimesh's vertex merge (``process=True``) would fuse any two of ``xyz (V, 3)``.

    trimesh merges vertices whose coordinates agree once rounded to ``tol.merge`` (1e-8 mm); the
    rounded rows are hashed to one 64-bit integer each and sorted: no two equal hashes, no two equal
    rows. Equal hashes (a fused pair, or a rare collision) answer True, and the caller takes the
    validated path, so the answer is never wrong in the direction that matters.
    """
    import trimesh

    digits = trimesh.util.decimal_to_digits(trimesh.tol.merge)
    k = (xyz * 10**digits).round().astype(np.int64)  # exactly trimesh's merge_vertices keys
    h = k[:, 0] * np.int64(-7046029254386353131) + k[:, 1] * np.int64(-4658895280553007687) + k[:, 2]  # wraps
    h.sort()
    return bool((h[1:] == h[:-1]).any())


def _marching_cubes_mesh(vol: np.ndarray, grid: Grid, level: float) -> "tuple[trimesh.Trimesh, _Topology]":
    """Closed mesh (canonical mm) of the ``level`` isosurface of ``vol (R, R, R)`` padded with
    :data:`PAD_LOGIT`, and its :class:`_Topology`.

    Fast path: marching cubes on the cells that hold the surface (:func:`_surface_cells`),
    degenerate triangles allowed; when no two vertices lie within trimesh's merge tolerance (so
    scikit-image has no degenerate triangle to drop and trimesh no vertex to merge) and the mesh is
    closed and consistently wound (:func:`_closed_topology`), that mesh is the validated path's, as
    it is, and is returned. Otherwise (values on the level, a shape cut by the grid boundary, whose
    crossings next to the padding fall on grid points) the validated path runs.
    """
    import trimesh
    from skimage.measure import marching_cubes

    volume, mask = _surface_cells(vol, level, pad=True)  # padded and cut in one copy
    verts, faces, _, _ = marching_cubes(volume, level=level, allow_degenerate=True, mask=mask)
    # freed before the checks below (a 256^3 grid's cut volume and mask: ~60 MB); the validated path
    # (values on the level, vertices within the merge tolerance: a model's 256^3 face) cuts them again,
    # ~40 ms at 256^3
    del volume, mask
    xyz = grid.index_to_mm(verts - 1.0).astype(np.float32).astype(np.float64)  # as the validated path does
    del verts
    if not _merge_changes(xyz):
        faces = faces.astype(np.int64)
        topo = _closed_topology(faces, len(xyz))
        if topo is not None:
            mesh = trimesh.Trimesh(vertices=xyz, faces=faces, process=False)
            mesh.metadata["processed"] = True  # what process=True would have recorded
            if _signed_volume(xyz, faces) < 0:  # the validated path's safety net
                mesh.invert()
            return mesh, topo
    del xyz, faces
    mesh, topo = _validated_marching_cubes_mesh(vol, None, grid, level, True)
    for nudge in _UNTIE_NUDGES:
        if topo.closed and topo.consistent:
            break
        untied = _untied(*_surface_cells(vol, level, pad=True), level, nudge)
        if not (untied > 0).any():  # a sliver of surface the nudge took away: try the next one
            continue
        cut, cells = _surface_cells(untied, 0.0)
        del untied
        m, t = _validated_marching_cubes_mesh(cut, cells, grid, 0.0)
        del cut, cells
        if t.closed and t.consistent:
            mesh, topo = m, t
    return mesh, topo


#: Level offsets :func:`_untied` tries in turn, in units of the surface band's largest value.
_UNTIE_NUDGES = (1e-5, -2.3e-5, 4.7e-5)


def _untied(volume: np.ndarray, mask: np.ndarray, level: float, nudge: float) -> np.ndarray:
    """``volume - level`` scaled so the surface band's largest magnitude (padding left out) is
    1000, then moved by ``nudge`` of that (~1e-5 of a cell: nothing a mesh file or a metric can
    see), as float32.

    scikit-image's marching cubes can leave a hole even with no value on the level: where the two
    cubes sharing an ambiguous face decide it differently. Its face test compares two products of
    corner values, and a tie -- exact on quantised values, or within its absolute epsilon
    ``FLT_EPSILON`` on values near zero -- is broken by each cube's own orientation of the face
    (the same reading as scikit-image issue 8116, where values equal the level). The scale
    lifts every product far above the epsilon (the surface is the zero set either way), and the
    nudge breaks exact ties: ``(a - n)(c - n) - (b - n)(d - n) = ac - bd - n (a + c - b - d)``,
    nonzero for a tie ``ac = bd`` on an ambiguous face, where ``a + c`` and ``b + d`` have
    opposite signs.
    """
    d = volume.astype(np.float64) - level
    # the band's real values: a shape cut by the grid boundary has padding cells in the band, whose
    # PAD_LOGIT would set the scale and turn the nudge into a shift of tens of logits (a whole cube)
    real = mask & (volume > PAD_LOGIT / 2)
    band = float(np.abs(d[real]).max()) if real.any() else 1.0
    return ((d * (1000.0 / max(band, 1e-30))) - 1000.0 * nudge).astype(np.float32)


def _validated_marching_cubes_mesh(volume: np.ndarray, mask: np.ndarray | None, grid: Grid, level: float,
                                   pad: bool = False) -> "tuple[trimesh.Trimesh, _Topology]":
    """:func:`_marching_cubes_mesh` for any grid: degenerate triangles dropped, trimesh's vertex merge,
    and trimesh's validation when that does not close the mesh. ``volume`` is padded (``mask``: the
    cells to visit, or ``None`` for all), or with ``pad`` the grid itself (``mask`` ``None``), padded
    and cut here (:func:`_surface_cells`) and let go once marching cubes has run."""
    import trimesh
    from skimage.measure import marching_cubes

    if pad:
        volume, mask = _surface_cells(volume, level, pad=True)
    # allow_degenerate=False drops the zero-area triangles marching cubes makes where a value equals
    # the level exactly (quantised or saturated logits); trimesh's vertex merge then closes the mesh.
    verts, faces, _, _ = marching_cubes(volume, level=level, allow_degenerate=False, mask=mask)
    del volume, mask
    xyz = grid.index_to_mm(verts - 1.0)  # undo the padding; (d, h, w) -> canonical (x, y, z) mm
    # Rounded to float32, as every mesh file stores them, *before* the merge: crossings a hair from
    # a grid point (next to the PAD_LOGIT border, or a value within ~1e-6 of the level) give
    # vertices 1e-6 mm apart that a float32 file would fuse, leaving an exported mesh that is no
    # longer watertight; merged here, the mesh in memory is the one a file holds.
    xyz = xyz.astype(np.float32).astype(np.float64)
    # No winding flip: see the module docstring (the axis reversal already makes faces CCW outside).
    # Merge coincident vertices and drop the faces that collapse in the merge (two corners fused).
    # When the result is closed and consistently wound, trimesh's validation (drop degenerate and
    # duplicate faces, fix normals) would change nothing more, so it is skipped; otherwise it runs
    # on the unmerged mesh.
    mesh = trimesh.Trimesh(vertices=xyz, faces=faces, process=True)
    f = mesh.faces
    collapsed = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    if collapsed.any():
        mesh.update_faces(~collapsed)
        mesh.remove_unreferenced_vertices()
    topo = _edge_topology(mesh.faces, len(mesh.vertices))
    if not (topo.closed and topo.consistent):
        # trimesh's normal fix divides by each body's volume: a flat scrap of a rough field (volume
        # 0) printed numpy's 'invalid value encountered in divide' to the user; its result is unused
        with np.errstate(divide="ignore", invalid="ignore"):
            mesh = trimesh.Trimesh(vertices=xyz, faces=faces, process=True, validate=True)
        topo = _edge_topology(mesh.faces, len(mesh.vertices))
    if _signed_volume(mesh.vertices, mesh.faces) < 0:  # safety net against a change of scikit-image's winding
        mesh.invert()
    return mesh, topo


#: Most Taubin smoothing iterations :func:`extract_mesh` runs: the filter's slow growth of mid-scale
#: bumps (its gain of up to 1.00085 a pass pair), which the volume constraint cannot undo, moves a face's
#: vertices up to 23 mm at 1,000, 54 mm at 2,000, and makes it self-intersecting at 5,000.
MAX_SMOOTH = 1000


def check_mesh_options(threshold: float = 0.5, smooth: int = 0, decimate: int | None = None) -> None:
    """Refuse the :func:`extract_mesh` options no mesh can be made with (an :class:`InputError`):
    callers that mesh after other work check them first."""
    def whole(name: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputTypeError(f"{name} must be a whole number, got {type(v).__name__} {v!r}")
        return int(v)

    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"threshold must be a number, got {type(threshold).__name__} {threshold!r}")
    if not 0.0 < float(threshold) < 1.0:
        raise InputError(f"threshold is an occupancy probability and must lie in (0, 1), got {threshold}")
    if whole("smooth", smooth) < 0:
        raise InputError(f"smooth must be >= 0 iterations, got {smooth}")
    if int(smooth) > MAX_SMOOTH:
        raise InputError(f"smooth must be at most {MAX_SMOOTH} iterations, got {smooth}: Taubin smoothing grows "
                         f"mid-scale bumps slowly (a face's vertices up to 23 mm out at 1,000) and then distorts the "
                         f"mesh (self-intersecting at 5,000)")
    if decimate is not None and whole("decimate", decimate) < 4:
        raise InputError(f"decimate must be a face count >= 4 (or None), got {decimate}")


def extract_mesh(
    logits: Any,
    grid: Grid,
    threshold: float = 0.5,
    *,
    smooth: int = 0,
    decimate: int | None = None,
    keep_largest: bool = True,
) -> MeshResult:
    """Closed triangle mesh of the ``threshold`` isosurface of an occupancy logit grid.

    Args:
        logits: ``(R, R, R)``, ``(1, R, R, R)`` or ``(1, 1, R, R, R)`` float occupancy logits, numpy or torch (any
            device, any float dtype), laid out ``(D, H, W) = (z, y, x)`` on ``grid``
            (:mod:`voxface.frame`); ``sigmoid(logits)`` is the occupancy probability. A float grid
            of 0s and 1s (both present) is taken as binary occupancy, not logits: the surface lies
            where the occupancy, linear between cells, equals ``threshold`` (midway between inside
            and outside cells at 0.5, as for the logits ``2 * occupancy - 1``; 30% of the way out
            from the inside cell at 0.7), not at the logit ``log t - log(1 - t)``.
        grid: the voxel grid the logits live on (maps indices to canonical mm).
        threshold: occupancy *probability* of the surface, ``0 < threshold < 1``; marching cubes
            runs at the logit ``log t - log(1 - t)`` (0 for 0.5).
        smooth: Taubin smoothing iterations (uniform weights, ``lambda`` 0.5, ``mu`` -0.53:
            :func:`_taubin`); moves vertices only, so the mesh stays closed, and each closed
            component keeps the volume it had; a component too small or thin for the filter (a
            blob or a rod one cell across, which it shrank to a point or a line) is left as it
            is. At most :data:`MAX_SMOOTH`. 0 = none.
        decimate: target face count for quadric decimation (open3d
            ``simplify_quadric_decimation``), or ``None``. The result may keep more faces where
            fewer would change the topology; see :func:`_decimate` for the watertight guarantee.
        keep_largest: keep only the connected component with the most faces (drops floaters).

    Returns:
        :class:`MeshResult` whose ``mesh`` is a closed ``trimesh.Trimesh`` with ``float64``
        vertices ``(V, 3)`` in canonical mm ``(x, y, z)`` and ``int64`` faces ``(F, 3)`` wound
        counter-clockwise seen from outside. Where scikit-image's marching cubes leaves a hole
        (ambiguous cube faces whose tests tie: quantised or near-zero logits), it runs again on
        an untied copy of the field (:func:`_untied`: the surface moves by ~1e-5 of a cell). On
        fields as rough as white noise it can still emit, rarely, an edge of four faces; such a
        mesh is returned as it is and :attr:`MeshResult.watertight` is False.

    Raises:
        InputError: logits of the wrong shape or with NaN, probabilities in the place of logits
            (every value in ``[0, 1]``, some strictly between), a threshold outside ``(0, 1)``, a
            ``smooth`` below 0 or above :data:`MAX_SMOOTH` or a ``decimate`` below 4 (each a
            ``ValueError``).
        InputTypeError: logits that are not floating point, a ``grid`` that is not a
            :class:`~voxface.frame.Grid` (a resolution), or options of the wrong type (a ``TypeError``).
        VoxfaceError: an empty grid (no cell above the threshold).
    """
    seconds = dict.fromkeys(("prepare", "marching_cubes", "components", "smooth", "decimate"), 0.0)
    t_start = t0 = perf_counter()
    check_mesh_options(threshold, smooth, decimate)
    level = probability_to_logit(float(threshold))
    vol, binary = _logit_volume(logits, grid)
    if binary:
        # occupancy 0/1, not logits: 2 * (occupancy - threshold), linear in the occupancy, crossing
        # level 0 where it equals the threshold (each side's value in float64 first: a threshold a hair
        # below 1 stays above the level). As logits, the 0 cells lay on the level at 0.5 (the surface
        # half a cell out, through the outside cells) and above it below 0.5 (the grid's whole cube)
        t = float(threshold)
        vol = np.where(vol > 0.5, np.float32(2.0 * (1.0 - t)), np.float32(-2.0 * t))
        level = 0.0
    v_max = float(vol.max())
    if not v_max > level:
        # sigmoid, written so that neither branch overflows: a grid of logits all below about -710
        # (a saturated model; -inf) made math.exp(-v_max) an OverflowError, not this message
        e = math.exp(-abs(v_max))
        p_max = 1.0 / (1.0 + e) if v_max >= 0 else e / (1.0 + e)
        raise VoxfaceError(
            f"empty occupancy grid: no cell above probability {threshold} (highest: {p_max:.3g}); "
            "nothing to mesh"
        )
    seconds["prepare"] = perf_counter() - t0

    t0 = perf_counter()
    mesh, topo = _marching_cubes_mesh(vol, grid, level)
    seconds["marching_cubes"] = perf_counter() - t0

    t0 = perf_counter()
    labels = topo.labels
    counts = np.bincount(labels)
    n_components = int(len(counts))
    if keep_largest and n_components > 1:
        mesh.update_faces(labels == int(np.argmax(counts)))
        mesh.remove_unreferenced_vertices()
    seconds["components"] = perf_counter() - t0

    if smooth:
        t0 = perf_counter()
        mesh = _smooth(mesh, int(smooth))
        seconds["smooth"] = perf_counter() - t0

    if decimate is not None and int(decimate) < len(mesh.faces):
        t0 = perf_counter()
        mesh = _decimate(mesh, int(decimate))
        seconds["decimate"] = perf_counter() - t0

    seconds["total"] = perf_counter() - t_start
    return MeshResult(mesh=mesh, threshold=float(threshold), seconds=seconds, n_components=n_components)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for writing bytes atomically: all of it appears, or nothing does.

    Writes go to a hidden temporary file in the same folder (created with the usual permissions,
    ``0o666`` less the umask, or the permission bits of the file it replaces: :func:`_keep_mode`);
    on success it is flushed, fsynced and ``os.replace``-d over ``path``; on any error it is
    removed and ``path`` is left as it was. Parent folders are created (durably), and removed
    again on an error. A ``path`` that is a device, FIFO or socket (through a link too: ``/dev/null``)
    is an :class:`OSError` naming it, before anything is created (:func:`special_file_problem`).
    """
    path = Path(path)
    _refuse_special(path)
    created = _make_parent(path)
    try:
        fd, tmp = _temporary(path)
    except OSError as e:  # name the asked-for file, never the hidden temporary one
        _remove_folders(created)
        raise OSError(e.errno, e.strerror, str(path)) from None
    _keep_mode(fd, path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _remove_folders(created)
        raise
    _fsync_folder(path.parent)


def special_file_problem(path: str | Path) -> str | None:
    """Why a file to write at ``path`` is refused, on one line without the path, when it is a device,
    FIFO or socket (through a link too: ``/dev/null``, ``/dev/stdout``), else ``None`` (a regular file, a
    folder, nothing there or a broken link). Every voxface write makes a new file and renames it over
    the name (:func:`atomic_open`), which replaced such a node with a regular file: as root,
    ``export_mesh(m, "/dev/null")`` replaced the null device, and a named pipe a reader waited on
    became a file nobody reads."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # nothing there (or a broken link): a new file
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return (f"is {kind}; voxface writes a new file and renames it over the name, which would replace it: "
            "name a regular file")


def _refuse_special(path: Path) -> None:
    """Raise :func:`special_file_problem` of ``path`` as an :class:`OSError` naming it (the writers turn
    it into their :class:`VoxfaceError`)."""
    problem = special_file_problem(path)
    if problem is not None:
        raise OSError(errno.EINVAL, problem, str(path))


def _keep_mode(fd: int, path: Path) -> None:
    """Give the new file (open as ``fd``) the permission bits of the file at ``path`` it replaces, as
    writing into that file kept them: the atomic rename put a file of the default mode (``0o666``
    less the umask) in its place, so a checkpoint, mesh or export made private (``chmod 600``) or
    shared with a group (``664``) became ``644`` at its next write. A new file keeps the default;
    best effort."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode) and os.chmod in os.supports_fd:
            os.chmod(fd, stat.S_IMODE(st.st_mode) & 0o777)  # never set-user-ID onto new bytes
    except (OSError, ValueError):  # no file there yet
        pass


#: The longest file name (bytes) of the usual file systems (ext4, XFS, Btrfs, APFS, NTFS in UTF-16 units).
_MAX_NAME_BYTES = 255


def _temporary_name(path: Path) -> str:
    """The ``<name>`` of :func:`_temporary`'s ``.<name>.<8 hex>.tmp``: ``path``'s name, cut (at a
    character) to keep the temporary's name within :data:`_MAX_NAME_BYTES`."""
    name = path.name
    while len(os.fsencode(name)) > _MAX_NAME_BYTES - 14:  # ".", "." + 8 hex, ".tmp"
        name = name[:-1]
    return name


#: Seconds a hidden temporary must have gone untouched before a later write of its file removes it
#: as what a killed write left (a write still filling one touches it): checkpoints and ONNX exports.
STALE_TEMPORARY_S = 600.0


def remove_stale_temporaries(path: str | Path, older_than_s: float = STALE_TEMPORARY_S) -> None:
    """Remove the hidden temporaries of writes of ``path`` (:func:`_temporary`'s
    ``.<name>.<8 hex>.tmp``) that a process killed mid-write (SIGKILL, a pre-empted job, a power
    cut) left beside it: the file itself stayed whole, the temporary stayed for good. Only those
    untouched for ``older_than_s`` seconds go (a write still filling one touches it); best effort,
    errors are ignored."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{_temporary_name(path)}.") + r"[0-9a-f]{8}\.tmp")
    now = time.time()
    try:
        entries = [e for e in os.scandir(path.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return
    for entry in entries:
        try:
            stale = now - entry.stat(follow_symlinks=False).st_mtime > older_than_s
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            continue


def _temporary(path: Path) -> tuple[int, Path]:
    """A new hidden file ``.<name>.<8 hex>.tmp`` beside ``path`` (mode 0o666 less the umask),
    opened for writing: ``(fd, its path)``. ``<name>`` is cut (at a character) to keep the
    temporary's name within the 255 bytes file systems allow: a target name of 242-255 bytes is
    legal, and its temporary's was refused as ``File name too long``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    name = _temporary_name(path)
    while True:
        tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def _fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable (POSIX); best effort."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_files(files: "Sequence[tuple[str | Path, bytes]]") -> list[Path]:
    """Write several files all or nothing: every one to a hidden temporary beside its target
    (flushed and fsynced), and only once all are written, each renamed over its target, in the
    given order (put the file that proves the set complete last).

    A failure while writing (a full disk, an unwritable folder) removes the temporaries and leaves
    every target as it was: earlier versions of the files stay whole. Only a rename failing
    between two others (not expected on one file system) can leave a mix of new and earlier
    files, each whole. OS errors become :class:`VoxfaceError` naming the target (a target that is a
    device, FIFO or socket too, before anything is written: :func:`special_file_problem`). Returns
    the targets as paths.
    """
    files = [(Path(target), data) for target, data in files]
    for target, _ in files:  # a device or FIFO the renames would replace: refused before any write
        if (problem := special_file_problem(target)) is not None:
            raise VoxfaceError(problem, target)
    staged: list[tuple[Path, Path]] = []  # (temporary, target)
    created: list[Path] = []  # folders made for the targets, removed again on a failure
    path = Path()
    try:
        for target, data in files:
            path = Path(target)
            created += _make_parent(path)
            fd, tmp = _temporary(path)
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for i, (tmp, path) in enumerate(staged):
            os.replace(tmp, path)
            staged[i] = (path, path)  # renamed: nothing left to remove
    except BaseException as e:
        for tmp, target in staged:
            if tmp != target:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        _remove_folders(created)  # where empty: a folder holding a renamed target stays
        if isinstance(e, OSError):
            raise VoxfaceError(f"cannot write file ({e.strerror or e})", path) from None
        raise
    for folder in dict.fromkeys(target.parent for _, target in staged):
        _fsync_folder(folder)
    return [target for _, target in staged]


def probe_write(folder: str | Path) -> None:
    """Create and remove a temporary file in ``folder``: whether it can really be written into
    (permission bits do not tell root, nor read-only or immutable file systems). Raises
    :class:`OSError`; used to refuse an output before long work, not after it."""
    import tempfile

    with tempfile.TemporaryFile(dir=folder):
        pass


def check_file_name(path: Any) -> None:
    """Refuse ``path``, the file a public writer is asked to write, when it ends in a folder
    separator (``/``, :data:`os.sep`, :data:`os.altsep`): :class:`~pathlib.Path` drops it, so
    ``"out/"`` wrote a file named ``out`` (or ``out.npz`` beside the folder) where a folder was
    named. An :class:`InputError` naming the path, as the CLI's and ``save_checkpoint``'s refusals;
    call it on the raw argument, before it becomes a Path. A name holding a NUL character, which no
    file system takes, is one too (it was the os module's bare ``ValueError: embedded null byte``,
    naming no file and no :class:`~voxface.errors.VoxfaceError`). Other types are left to the writer."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return
    text = os.fsdecode(os.fspath(path))
    if "\0" in text:
        raise InputError("holds a NUL character, which no file name can hold", text.replace("\0", "\\0"))
    if text.endswith(tuple(s for s in ("/", os.sep, os.altsep) if s)):
        raise InputError(f"names a folder (it ends in '{text[-1]}'); give a file name", text)


def output_problem(path: Path, folder: bool = False) -> str | None:
    """Why ``path`` (a file to write, or with ``folder`` a folder to write into) cannot be written,
    on one line without the path, or ``None``: a file or broken link where the folder is to be (a
    folder where the file is, or a device, FIFO or socket: :func:`special_file_problem`), one among
    its parents, or a nearest existing folder that refuses a file (:func:`probe_write`). Creates
    nothing; checked before long work, not after it."""
    if folder and os.path.lexists(path) and not path.is_dir():
        return f"is {_not_a_folder(path)}, where a folder is needed"
    if not folder and path.is_dir():
        return "is a folder, where a file is to be written"
    if not folder and (special := special_file_problem(path)) is not None:
        return special
    if (blocked := parent_problem(path)) is not None:
        return blocked
    existing = path if folder and path.is_dir() else next(a for a in path.absolute().parents if a.is_dir())
    try:
        probe_write(existing)
    except OSError as e:
        return f"cannot write into {existing} ({e.strerror or e})"
    return None


def _not_a_folder(p: Path) -> str:
    """What stands at ``p`` where a folder is needed: ``a broken link`` or ``a file``."""
    return "a broken link" if p.is_symlink() and not p.exists() else "a file"


def parent_problem(path: Path) -> str | None:
    """``"<p> is a file, where a folder is needed"`` for the outermost of ``path``'s parents that is a
    file (or a broken link), else ``None``: a write under it fails, however long the work before."""
    blocker = next((a for a in reversed(Path(path).parents) if os.path.lexists(a) and not a.is_dir()), None)
    return None if blocker is None else f"{blocker} is {_not_a_folder(blocker)}, where a folder is needed"


def _make_parent(path: Path) -> list[Path]:
    """Create ``path``'s folders, durably (each new folder's entry fsynced in its parent), and
    return those it created, innermost first (for :func:`_remove_folders`). An :class:`OSError`
    naming ``path`` (never a temporary name) with the real reason when ``path`` is a folder or a
    file (or a broken link) stands where a folder is needed."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, where a file is to be written", str(path))
    missing = []
    folder = path.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((a for a in reversed(path.parents) if os.path.lexists(a) and not a.is_dir()), path.parent)
        what = "a broken link" if blocker.is_symlink() and not blocker.exists() else "a file"
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is {what}, where a folder is needed", str(path)) from None
    for new in reversed(missing):  # outermost first: its parent's entry, then the next one down
        _fsync_folder(new.parent)
    return missing


def _remove_folders(folders: "Sequence[Path]") -> None:
    """Remove the folders :func:`_make_parent` created, innermost first, where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` with :func:`atomic_open`; OS errors become :class:`VoxfaceError`
    (a device, FIFO or socket at ``path`` too: :func:`special_file_problem`), a name ending in a
    folder separator an :class:`InputError` (:func:`check_file_name`)."""
    check_file_name(path)  # export_mesh(m, "e.ply/"), EvalReport.save("r.json/") wrote e.ply, r.json
    path = Path(path)
    if (problem := special_file_problem(path)) is not None:  # atomic_open's OSError, said without its prefix
        raise VoxfaceError(problem, path)
    try:
        with atomic_open(path) as f:
            f.write(data)
    except OSError as e:
        raise VoxfaceError(f"cannot write file ({e.strerror or e})", path) from None
    return path


def export_mesh(mesh: Any, path: str | Path, file_type: str | None = None) -> Path:
    """Write a mesh as OBJ, PLY (binary), STL (binary) or GLB through trimesh, atomically.

    Args:
        mesh: a ``trimesh.Trimesh``, a :class:`MeshResult`, a :class:`voxface.Reconstruction` or a
            ``(vertices (V, 3), faces (F, 3))`` pair (:func:`as_trimesh`); coordinates are written as they
            are (canonical mm for voxface meshes) in OBJ, PLY and STL, which carry no unit. GLB is
            written in metres (coordinates / 1000; a mesh that gives its units, trimesh's ``units``,
            from those: a loaded ``.glb`` is metres already): glTF's unit is the metre, and its axes (y up,
            the asset's front towards +z, its right towards -x) are the canonical frame's already,
            so viewers, AR included, show a head at its size and upright.
        path: output file; parent folders are created.
        file_type: one of :data:`MESH_FORMATS`; by default the extension of ``path``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        VoxfaceError: unknown format (naming the file), or the file cannot be written (``path`` is a
            device, FIFO or socket, which the atomic rename would replace: ``/dev/null``). On any
            failure nothing is left at ``path`` (an existing file is untouched) and no temporary
            file remains.
        InputTypeError: ``mesh`` is none of the above (``InputError``: a pair of the wrong shapes).
    """
    check_file_name(path)  # before the format: "out/x/" has no extension once Path drops the slash
    return atomic_write_bytes(path, mesh_bytes(mesh, path, file_type))


def mesh_format(path: str | Path, file_type: str | None = None) -> str:
    """The format :func:`export_mesh` writes ``path`` in: ``file_type``, else the extension, lower
    case and one of :data:`MESH_FORMATS`; another is an :class:`InputError` naming ``path`` (checked
    before any work by commands that write a mesh at the end)."""
    ft = (file_type if file_type is not None else Path(path).suffix).lower().lstrip(".")
    if ft not in MESH_FORMATS:
        raise InputError(
            f"unknown mesh format {ft or '(no extension)'!r}; use one of {', '.join(MESH_FORMATS)}", Path(path)
        )
    return ft


def _to_metres(mesh: "trimesh.Trimesh", path: str | Path) -> float:
    """The factor from ``mesh``'s coordinates to metres: 1e-3 (millimetres, voxface's unit) unless the
    mesh gives its units (trimesh's ``units``: ``"meters"`` for a loaded ``.glb``), which was read as
    millimetres, so re-exporting a loaded GLB shrank it 1000 times. Units trimesh does not know are
    an :class:`InputError` naming ``path``."""
    from trimesh.units import unit_conversion

    units = getattr(mesh, "units", None)
    if units is None:
        return 1e-3
    try:
        return float(unit_conversion(units, "meters"))
    except (ValueError, TypeError, KeyError):
        raise InputError(f"the mesh's units {units!r} are not a length trimesh knows; set mesh.units (e.g. "
                         f"'millimeters') or None for voxface's millimetres", Path(path)) from None


def mesh_bytes(mesh: Any, path: str | Path, file_type: str | None = None) -> bytes:
    """The bytes :func:`export_mesh` writes to ``path`` (format from ``file_type`` or its
    extension; an unknown one is an :class:`InputError` naming ``path``; GLB in metres, from the
    mesh's ``units`` where it gives them, else from millimetres), of a mesh in any form
    :func:`as_trimesh` takes."""
    ft = mesh_format(path, file_type)
    mesh = as_trimesh(mesh)  # a Reconstruction or (vertices, faces) too; anything else an InputTypeError
    if ft == "glb":  # glTF lengths are metres (a head written in mm showed 180 m tall)
        scale = _to_metres(mesh, path)
        mesh = mesh.copy()
        mesh.vertices = np.asarray(mesh.vertices, dtype=np.float64) * scale
    data = mesh.export(file_type=ft)
    return data.encode("utf-8") if isinstance(data, str) else data
