"""Reconstruction metrics, as defined by Occupancy Networks (``im2mesh/eval.py``).

Surface metrics compare points sampled on one surface with the other surface:

* :func:`mesh_metrics` (what ``voxface evaluate`` reports): points sampled on each *mesh*
  (:func:`sample_surface`, 100k per surface as in Occupancy Networks), each matched to the
  **nearest point of the other mesh's surface** (exact, open3d ray-casting scene), whose triangle
  gives the normal. This is the limit of Occupancy Networks' point-to-point matching as the other
  surface's sample grows dense: the sample size sets only the variance, never the value. Matching
  to the other surface's *samples* instead has a floor set by their spacing: a head (237,000 mm^2)
  sampled with 30,000 points scores Chamfer-L1 1.40 mm and F-score@1 mm 0.33 against *itself*
  (100,000: 0.77 mm and 0.74), which would hide most of what separates two reconstructions at
  millimetre thresholds (Occupancy Networks' shapes are normalised to a unit cube, where 100k
  points are dense at its thresholds).
* :func:`surface_metrics`: two point clouds matched through nearest neighbours
  (``scipy.spatial.cKDTree``), for surfaces known only by points (a scan); mind the floor above.

Both compute:

* **accuracy**: mean distance from each predicted point to the nearest ground-truth point;
* **completeness**: mean distance from each ground-truth point to the nearest predicted point;
* **Chamfer-L1** ``= 0.5 * (accuracy + completeness)``; Chamfer-L2 the same with squared
  distances;
* **normal consistency**: mean ``|n_pred . n_gt|`` between nearest neighbours, averaged over both
  directions (orientation-free, 1 = normals agree);
* **precision@tau / recall@tau**: fraction of predicted (ground-truth) points within ``tau`` of the
  other surface (``<=``, as ``get_threshold_percentage``), and their harmonic mean, the
  **F-score@tau** (Convolutional Occupancy Networks, Tatarchenko et al. 2019).

Distances are in the units of the points: canonical millimetres throughout voxface. Every function
is pure and accepts numpy arrays or (CPU) torch tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, InputTypeError, check_integer
from .mesh import MeshResult, _to_numpy, as_trimesh

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

    from .reconstruct import Reconstruction

__all__ = ["sample_surface", "surface_metrics", "mesh_metrics", "match_surfaces", "matched_metrics", "closest_points",
           "surface_scene", "sampled_surface", "SampledSurface", "SurfaceMatch", "iou"]


def sample_surface(
    mesh: "trimesh.Trimesh | MeshResult | Reconstruction", n: int = 100_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Points sampled uniformly by area on a mesh surface, with the normals of their faces.

    Args:
        mesh: a ``trimesh.Trimesh`` (or :class:`~voxface.mesh.MeshResult`, :class:`voxface.Reconstruction`,
            ``(vertices, faces)``: :func:`voxface.mesh.as_trimesh`).
        n: number of points, an integer >= 1.
        seed: an integer >= 0; the sample is a pure function of ``(mesh, n, seed)``.

    Returns:
        ``points (n, 3)`` float64 in the mesh's units and frame, and unit ``normals (n, 3)``
        float64 (the normal of the face each point lies on).
    """
    mesh = as_trimesh(mesh)
    points, normals, _ = _sample_with_faces(mesh, n, seed)
    return points, normals


def _points(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x, np.float64)
    if a.ndim != 2 or a.shape[1] != 3 or len(a) == 0:
        raise InputError(f"{name} must be a non-empty (N, 3) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} holds NaN or infinite values ({int((~np.isfinite(a).all(axis=1)).sum())} of "
                         f"{len(a)} rows)")
    return a


def _count(n: Any, name: str = "n") -> int:
    """A sample size: an integer >= 1 (``numpy`` integers, and whole floats such as ``1e5``; not a bool)."""
    whole = isinstance(n, (float, np.floating)) and np.isfinite(n) and float(n).is_integer()
    if isinstance(n, (bool, np.bool_)) or not (isinstance(n, (int, np.integer)) or whole):
        raise InputTypeError(f"{name} must be an integer number of points, not {type(n).__name__} {n!r}")
    if n < 1:
        raise InputError(f"{name} must be at least 1 point, not {int(n)}")
    return int(n)


def _unit(x: Any, n: int, name: str) -> np.ndarray:
    a = _points(x, name)
    if len(a) != n:
        raise InputError(f"{name} has {len(a)} rows for {n} points")
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norm, 1e-12)


def _thresholds(taus: Any) -> list[float]:
    """F-score thresholds: finite distances >= 0 (a single number is one threshold)."""
    if isinstance(taus, (int, float, np.number)):
        taus = [taus]
    try:
        if isinstance(taus, (str, bytes)):
            raise TypeError
        out = [float(t) for t in taus]
    except (TypeError, ValueError):
        raise InputTypeError(f"taus must be a sequence of distances, got {taus!r}") from None
    bad = [t for t in out if not (np.isfinite(t) and t >= 0)]
    if bad:
        raise InputError(f"taus must be finite distances >= 0, got {bad[0]}")
    return out


def _tau_key(tau: float) -> str:
    return str(float(tau))


def surface_metrics(
    pred_pts: Any,
    pred_normals: Any | None,
    gt_pts: Any,
    gt_normals: Any | None,
    taus: Sequence[float] = (1.0, 2.5),
    *,
    gt_mask: Any | None = None,
) -> dict[str, float]:
    """Accuracy, completeness, Chamfer, normal consistency and F-scores of two sampled surfaces.

    Args:
        pred_pts: ``(N, 3)`` points on the predicted surface (mm in voxface).
        pred_normals: ``(N, 3)`` their normals (normalised here; sign ignored), or ``None``.
        gt_pts: ``(M, 3)`` points on the ground-truth surface, same units and frame.
        gt_normals: ``(M, 3)`` their normals, or ``None``. Normal consistency needs both.
        taus: distance thresholds for precision/recall/F-score, in the points' units (finite, >= 0;
            a single number is one threshold).
        gt_mask: optional ``(M,)`` bool, restricting the metrics to a region of the ground truth
            (e.g. the face). Completeness and recall then run over the ground-truth points in the
            region; accuracy and precision over the predicted points whose nearest ground-truth
            point is in the region (nearest neighbours are still searched in *all* points, so the
            region's border is not penalised). Normal consistency is restricted the same way.

    Returns:
        ``{"accuracy", "completeness", "chamfer_l1", "chamfer_l2", "normal_consistency" (only
        with normals), "precision@<tau>", "recall@<tau>", "fscore@<tau>"}`` as Python floats,
        with ``<tau>`` written ``str(float(tau))``: ``"fscore@1.0"``, ``"fscore@2.5"``.
        Distances in the points' units; ``chamfer_l2`` in squared units.
    """
    from scipy.spatial import cKDTree

    taus = _thresholds(taus)
    pred = _points(pred_pts, "pred_pts")
    gt = _points(gt_pts, "gt_pts")
    # completeness: gt -> pred; accuracy: pred -> gt (Occupancy Networks' eval_pointcloud)
    d_gt, idx_gt = cKDTree(pred).query(gt, workers=-1)
    d_pred, idx_pred = cKDTree(gt).query(pred, workers=-1)

    sel_gt = np.ones(len(gt), dtype=bool)
    sel_pred = np.ones(len(pred), dtype=bool)
    if gt_mask is not None:
        mask = _to_numpy(gt_mask).astype(bool).reshape(-1)
        if mask.shape != (len(gt),):
            raise InputError(f"gt_mask must have shape ({len(gt)},), got {mask.shape}")
        if not mask.any():
            raise InputError("gt_mask selects no ground-truth points")
        sel_gt = mask
        sel_pred = mask[idx_pred]
    normals = None
    if pred_normals is not None and gt_normals is not None:
        n_pred = _unit(pred_normals, len(pred), "pred_normals")
        n_gt = _unit(gt_normals, len(gt), "gt_normals")
        normals = (np.abs(np.sum(n_pred * n_gt[idx_pred], axis=1))[sel_pred],
                   np.abs(np.sum(n_gt * n_pred[idx_gt], axis=1))[sel_gt])
    return _summarise(d_pred[sel_pred], d_gt[sel_gt], normals, taus)


def surface_scene(mesh: "trimesh.Trimesh | MeshResult | Reconstruction") -> Any:
    """An open3d ``RaycastingScene`` of a mesh's triangles, for :func:`closest_points` (build it
    once to query a mesh many times)."""
    import open3d as o3d

    mesh = as_trimesh(mesh)
    if len(mesh.faces) == 0:
        raise InputError("cannot find the closest points of a mesh without faces")
    with np.errstate(over="ignore"):  # past float32's range: inf, refused below
        vertices = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    # a NaN corner: open3d leaves its triangles out silently (all of them: every distance made up, every
    # triangle index 2^32 - 1)
    _check_corners(vertices, mesh.faces)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(np.ascontiguousarray(mesh.faces, dtype=np.uint32)))
    return scene


def _check_corners(vertices: np.ndarray, faces: Any) -> None:
    """Refuse a mesh whose faces use a vertex that is NaN or infinite (float32 past its range, for a scene)."""
    if np.isfinite(vertices).all():  # the usual case: no sort of the face indices
        return
    corners = vertices[np.unique(np.asarray(faces))]
    if not np.isfinite(corners).all():
        bad = int((~np.isfinite(corners).all(axis=1)).sum())
        raise InputError(f"the mesh's vertices hold NaN or infinite values ({bad} of the {len(corners)} its faces use)")


def closest_points(mesh: "trimesh.Trimesh | MeshResult | Reconstruction", points: Any, scene: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The nearest point of a mesh's surface to each query point (exact; open3d ``RaycastingScene``).

    Args:
        mesh: a triangle mesh (any form :func:`voxface.mesh.as_trimesh` takes).
        points: ``(N, 3)`` query points, in the mesh's units and frame.
        scene: the mesh's :func:`surface_scene`, when already built (else built here).

    Returns:
        ``distance (N,)`` float64 (Euclidean, to the surface, not to a vertex) and
        ``face (N,)`` int64, the index of the triangle the nearest point lies on. Computed in
        float32 (about 1e-5 mm at head scale).
    """
    import open3d as o3d

    q = _points(points, "points")
    ans = (scene if scene is not None else surface_scene(mesh)).compute_closest_points(
        o3d.core.Tensor(q.astype(np.float32)))
    nearest = ans["points"].numpy().astype(np.float64)
    return np.linalg.norm(q - nearest, axis=1), ans["primitive_ids"].numpy().astype(np.int64)


@dataclass
class SurfaceMatch:
    """Points sampled on two meshes, each matched to the other mesh's surface (:func:`match_surfaces`).

    ``pred_*`` are the ``N`` points sampled on the prediction, ``gt_*`` the ``M`` on the ground
    truth: ``*_normal (·, 3)`` the unit normal of the triangle a point lies on, ``*_face`` that
    triangle's index, ``*_distance`` the distance to the other surface, ``*_other_normal`` the
    normal of the other surface's triangle nearest to it, ``pred_nearest_gt_face`` that triangle's
    index in the ground truth (to restrict accuracy to a ground-truth region); ``gt_faces`` the
    ground truth's number of triangles.
    """

    pred_distance: np.ndarray
    pred_normal: np.ndarray
    pred_other_normal: np.ndarray
    pred_nearest_gt_face: np.ndarray
    gt_distance: np.ndarray
    gt_normal: np.ndarray
    gt_other_normal: np.ndarray
    gt_face: np.ndarray
    gt_faces: int  # triangles of the ground-truth mesh (a region mask has one entry each)


@dataclass
class SampledSurface:
    """A mesh with points sampled on it (:func:`sampled_surface`) and its closest-point scene:
    what :func:`match_surfaces` needs of one side, prepared once to match against several others.
    ``points``/``normals (n, 3)`` float64, ``face (n,)`` the triangle each point lies on."""

    mesh: Any
    points: np.ndarray
    normals: np.ndarray
    face: np.ndarray
    scene: Any


def sampled_surface(mesh: "trimesh.Trimesh | MeshResult | Reconstruction", n: int = 100_000, seed: int = 0,
                    scene: Any = None) -> SampledSurface:
    """``n`` points sampled on ``mesh`` (:func:`sample_surface`, with their triangles) and its
    :func:`surface_scene` (``scene``: the mesh's, when already built)."""
    mesh = as_trimesh(mesh)
    points, normals, face = _sample_with_faces(mesh, n, seed)
    return SampledSurface(mesh, points, normals, face, surface_scene(mesh) if scene is None else scene)


def match_surfaces(pred: "trimesh.Trimesh | MeshResult | Reconstruction | SampledSurface",
                   gt: "trimesh.Trimesh | MeshResult | Reconstruction | SampledSurface", n: int = 100_000,
                   seed: int = 0, gt_seed: int | None = None) -> SurfaceMatch:
    """``n`` points sampled on each mesh (seeds ``seed`` and ``gt_seed``, default ``seed + 1``),
    each matched to the nearest point of the other mesh's surface (:func:`closest_points`; a triangle
    without area, which no point is sampled on and whose normal is zero or noise, is no surface). Either
    side may be given as a :class:`SampledSurface` (its points and scene are used as they are).
    A mesh without faces is refused naming its side (``pred`` or ``gt``)."""

    def side(mesh: Any, name: str, s: int) -> SampledSurface:
        if isinstance(mesh, SampledSurface):
            return mesh
        count = _count(n)
        try:
            return sampled_surface(mesh, count, s)
        except InputError as e:
            raise type(e)(f"{name}: {e}") from None

    seed = check_integer("seed", seed, 0)  # before either side is sampled, and named as the caller's
    gt_seed = seed + 1 if gt_seed is None else check_integer("gt_seed", gt_seed, 0)
    p = side(pred, "pred", seed)
    g = side(gt, "gt", gt_seed)
    dp, near_gt = _nearest_with_area(g, p.points, *closest_points(g.mesh, p.points, g.scene))
    dg, near_pred = _nearest_with_area(p, g.points, *closest_points(p.mesh, g.points, p.scene))
    return SurfaceMatch(dp, p.normals, np.asarray(g.mesh.face_normals[near_gt], np.float64), near_gt,
                        dg, g.normals, np.asarray(p.mesh.face_normals[near_pred], np.float64), g.face,
                        len(g.mesh.faces))


def _without_area(mesh: "trimesh.Trimesh", faces: np.ndarray) -> np.ndarray:
    """Which of the triangles ``faces`` (indices) have no area: twice their area at most 1e-12 of their
    longest edge squared (a repeated vertex, three vertices in a line up to float rounding), where the
    normal (trimesh's: zero, or the direction of rounding noise) says nothing of the surface."""
    tri = np.asarray(mesh.vertices, np.float64)[np.asarray(mesh.faces)[faces]]  # (n, 3, 3)
    edges = tri - np.roll(tri, 1, axis=1)
    cross = np.linalg.norm(np.cross(edges[:, 0], edges[:, 1]), axis=1)
    return cross <= 1e-12 * np.einsum("nij,nij->ni", edges, edges).max(axis=1)


def _nearest_with_area(other: SampledSurface, points: np.ndarray, distance: np.ndarray,
                       face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``points``' nearest points on ``other``'s surface (``distance``, ``face``: :func:`closest_points`'),
    with the triangles that have no area (:func:`_without_area`) left out. Such a triangle (common in
    scans) is no surface: no point is ever sampled on it, and its normal is zero or noise, so a point
    matched to it (off an edge it lies along) scored a normal consistency of 0, or a random one,
    against a surface whose every normal agreed. Those points are matched again to the triangles with
    area (the distance is the same where the degenerate triangle lies on the surface); other points,
    and meshes without such triangles, as they were."""
    matched = np.zeros(len(other.mesh.faces), bool)
    matched[face] = True  # (not np.unique: a sort of every point)
    if not _without_area(other.mesh, np.flatnonzero(matched)).any():  # the usual case: only those are checked
        return distance, face
    has_area = ~_without_area(other.mesh, np.arange(len(other.mesh.faces)))
    keep = np.flatnonzero(has_area)
    if len(keep) == 0:  # (a sampled surface has area: not reached from match_surfaces)
        return distance, face
    import trimesh

    redo = ~has_area[face]
    surface = trimesh.Trimesh(np.asarray(other.mesh.vertices), np.asarray(other.mesh.faces)[keep], process=False)
    d, f = closest_points(surface, points[redo])
    distance, face = distance.copy(), face.copy()
    distance[redo], face[redo] = d, keep[f]
    return distance, face


def _sample_with_faces(mesh: "trimesh.Trimesh", n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points sampled uniformly by area (trimesh), their faces' normals and the faces' indices."""
    import trimesh

    n = _count(n)
    seed = check_integer("seed", seed, 0)  # numpy's bare 'expected non-negative integer'; 1.5 was taken as 1
    if len(mesh.faces) == 0:
        raise InputError("cannot sample the surface of a mesh without faces")
    _check_corners(np.asarray(mesh.vertices), mesh.faces)  # else every sampled point NaN, blamed on 'points'
    if not float(mesh.area) > 0.0:  # sampled along its edges with zero normals, scored as a surface
        raise InputError(f"cannot sample the surface of a mesh whose {len(mesh.faces)} faces have no area "
                         "(every one degenerate: a line or a point)")
    points, face = trimesh.sample.sample_surface(mesh, n, seed=seed)
    face = np.asarray(face, dtype=np.int64)
    return np.asarray(points, np.float64), np.asarray(mesh.face_normals[face], np.float64), face


def matched_metrics(match: SurfaceMatch, taus: Sequence[float] = (1.0, 2.5), *,
                    gt_face_mask: Any | None = None) -> dict[str, float]:
    """The metrics of :func:`surface_metrics` (same keys, same definitions) from a :class:`SurfaceMatch`.

    ``gt_face_mask``: optional ``(F_gt,)`` bool over the ground truth's *triangles*, restricting
    the metrics to a region: completeness and recall over the ground-truth points on its
    triangles, accuracy and precision over the predicted points whose nearest ground-truth point
    lies on one of them (the region's border is not penalised). Where no predicted point's nearest
    ground truth lies in the region, accuracy (and so Chamfer, precision, normal consistency) is NaN:
    nothing to measure (:func:`voxface.evaluate.surface_scores` scores it as a miss); F-score is then 0.
    """
    taus = _thresholds(taus)
    sel_gt = np.ones(len(match.gt_distance), dtype=bool)
    sel_pred = np.ones(len(match.pred_distance), dtype=bool)
    if gt_face_mask is not None:
        mask = _to_numpy(gt_face_mask).astype(bool).reshape(-1)
        if len(mask) != match.gt_faces:
            raise InputError(f"gt_face_mask has {len(mask)} entries; the ground truth has {match.gt_faces} triangles")
        sel_gt, sel_pred = mask[match.gt_face], mask[match.pred_nearest_gt_face]
        if not sel_gt.any():
            raise InputError("gt_face_mask selects no ground-truth points")
    normals = (np.abs(np.sum(match.pred_normal * match.pred_other_normal, axis=1)),
               np.abs(np.sum(match.gt_normal * match.gt_other_normal, axis=1)))
    return _summarise(match.pred_distance[sel_pred], match.gt_distance[sel_gt],
                      (normals[0][sel_pred], normals[1][sel_gt]), taus)


def mesh_metrics(
    pred: "trimesh.Trimesh | MeshResult | Reconstruction",
    gt: "trimesh.Trimesh | MeshResult | Reconstruction",
    n: int = 100_000,
    seed: int = 0,
    taus: Sequence[float] = (1.0, 2.5),
    *,
    gt_face_mask: Any | None = None,
) -> dict[str, float]:
    """Accuracy, completeness, Chamfer, normal consistency and F-scores of two meshes (module
    docstring): ``n`` points sampled on each (seeds ``seed``, ``seed + 1``), matched exactly to the
    other surface (:func:`match_surfaces`, :func:`matched_metrics`; ``gt_face_mask`` as there).
    Two samplings of one mesh score 0 mm and F-score 1. Keys as :func:`surface_metrics`."""
    taus = _thresholds(taus)  # before the sampling and matching
    return matched_metrics(match_surfaces(pred, gt, n, seed), taus, gt_face_mask=gt_face_mask)


def _summarise(da: np.ndarray, dc: np.ndarray, normals: tuple[np.ndarray, np.ndarray] | None,
               taus: Sequence[float]) -> dict[str, float]:
    """Metrics from accuracy distances ``da`` (prediction -> truth), completeness distances ``dc``
    and, optionally, the ``|n . n'|`` of both directions."""

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if len(a) else float("nan")

    out: dict[str, float] = {}
    out["accuracy"] = mean(da)
    out["completeness"] = mean(dc)
    out["chamfer_l1"] = 0.5 * (out["accuracy"] + out["completeness"])
    out["chamfer_l2"] = 0.5 * (mean(da**2) + mean(dc**2))
    if normals is not None:
        out["normal_consistency"] = 0.5 * (mean(normals[0]) + mean(normals[1]))
    for tau in taus:
        k = _tau_key(tau)
        precision = mean((da <= tau).astype(np.float64))
        recall = mean((dc <= tau).astype(np.float64))
        out[f"precision@{k}"] = precision
        out[f"recall@{k}"] = recall
        denom = precision + recall
        out[f"fscore@{k}"] = 2 * precision * recall / denom if denom > 0 else 0.0
    return out


def _occupancy(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x)
    if a.dtype == bool:
        return a
    if np.issubdtype(a.dtype, np.integer):
        return a != 0
    raise InputTypeError(
        f"{name} must be a boolean or integer occupancy grid, got {a.dtype}; threshold probabilities "
        "first (e.g. probs >= 0.5, or logits >= 0)"
    )


def iou(occ_a: Any, occ_b: Any, batched: bool | None = None) -> float | np.ndarray:
    """Intersection over union of two occupancy grids (or occupancy at sample points).

    Args:
        occ_a, occ_b: same-shape boolean (or 0/1 integer) arrays or tensors: a grid ``(D, H, W)``,
            a batch ``(B, D, H, W)`` / ``(B, 1, D, H, W)``, or occupancy at points ``(N,)`` /
            ``(B, N)``.
        batched: whether the first axis is the batch. ``None``: batched iff ``ndim >= 4``
            (voxel grids); pass ``True`` for ``(B, N)`` point occupancies.

    Returns:
        A Python float, or for a batch a ``(B,)`` float64 array (empty for ``B = 0``). Where both are empty (the union
        is empty) the IoU is 1.0: the two agree exactly.
    """
    a = _occupancy(occ_a, "occ_a")
    b = _occupancy(occ_b, "occ_b")
    if a.shape != b.shape:
        raise InputError(f"occupancy shapes differ: {a.shape} vs {b.shape}")
    if batched is None:
        batched = a.ndim >= 4
    if batched:
        if a.ndim < 2:
            raise InputError(f"a batch of occupancies needs a batch axis and another, got shape {a.shape}")
        size = int(np.prod(a.shape[1:]))  # not -1: a batch of 0 has no size to infer
        a, b = a.reshape(len(a), size), b.reshape(len(b), size)
        inter = np.logical_and(a, b).sum(axis=1)
        union = np.logical_or(a, b).sum(axis=1)
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    inter = int(np.logical_and(a, b).sum())
    union = int(np.logical_or(a, b).sum())
    return inter / union if union else 1.0
