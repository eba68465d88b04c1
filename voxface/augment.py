"""Left-right mirror augmentation of training batches, with the labels mirrored to match.

A face mirrored about the canonical ``x = 0`` plane is another plausible face: ICT-FaceKit's
neutral head is exactly symmetric (every vertex has a mirror vertex), its left and right
expression blendshapes come in ``_L``/``_R`` pairs (and ``jawLeft``/``jawRight``, ``mouthLeft``/``mouthRight``), and its identity modes span their own mirror
images almost exactly (the least-squares residual is 0.4% of a mode's displacement for the median
mode). So a training crop flipped left to right is a new person's crop whose labels follow
exactly, or, for identity, as closely as the 100 modes allow:

=================  ========================================================================
field              mirrored
=================  ========================================================================
``image``          columns reversed
``mask``           columns reversed
``occ``            along W (canonical x) reversed: exact when the grid is centred on x = 0
``occ_swap``       same
``id_coeffs``      ``M @ a`` with ``M`` = :attr:`MirrorMaps.identity`
``exp_coeffs``     ``_L`` and ``_R`` weights exchanged, and ``...Left`` and ``...Right``
                   (``jawLeft``/``jawRight``, ``mouthLeft``/``mouthRight``)
``rotation``       ``F R F``, ``F = diag(-1, 1, 1)`` (mirror in both the canonical and the camera frame)
``translation``    x negated (crop coordinates); ``scale`` unchanged
``euler``          yaw and roll negated
``landmarks_2d``   ``x -> S - x`` and the 68 points renumbered left for right
``landmarks_3d``   canonical x negated, renumbered
``points``         canonical x negated (surface samples of a folder's meshes, ``data.points``)
``normals``        canonical x negated
``points_face``    unchanged: 1 on the ICT narrow face (``FaceSampler.surface_points``), a region
                   that is its own mirror image, so a mirrored point keeps its flag
=================  ========================================================================

The crop is flipped about its own centre, not the camera's principal point; for the off-centre
crops of the synthetic data (principal point offsets of a few percent of the focal length) the
flipped crop is the mirrored scene seen through a slightly shifted principal point, a second-order
effect on the image, which the pose labels (weak perspective in crop coordinates) absorb.

Flips are drawn per block of 4 samples (:data:`voxface.data.BLOCK`), so pairs of one person
(and the swap targets within a block) stay consistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import BLOCK
from .errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .data.ict import ICTModel

#: Fields :func:`mirror_batch` knows how to mirror; any other array-valued geometric field would be
#: left inconsistent, so it refuses batches with fields outside this set and :data:`INVARIANT`.
MIRRORED = frozenset({"image", "mask", "occ", "occ_swap", "id_coeffs", "exp_coeffs", "rotation",
                      "translation", "euler", "landmarks_2d", "landmarks_3d", "points", "normals"})
#: Fields a mirror leaves as they are (``points_face``: the narrow face is left-right symmetric; a
#: ``SyntheticDataset`` with ``n_points`` gives it beside ``points`` and ``normals``).
INVARIANT = frozenset({"scale", "identity", "index", "points_face"})


@dataclass(frozen=True)
class MirrorMaps:
    """How the labels of a mirrored face follow from the original's.

    Attributes:
        identity: ``(N_id, N_id)`` float32: the mirrored person's identity coefficients are
            ``identity @ a`` (least squares over the closed-head vertices).
        identity_residual: ``(N_id,)`` relative residual of each mode's mirror image in the span
            of the modes (0: exact).
        expression: ``(N_exp,)`` int64 permutation: ``e_mirrored[j] = e[expression[j]]``.
        landmarks: ``(68,)`` int64 permutation of the 68 landmarks, same convention.
    """

    identity: np.ndarray
    identity_residual: np.ndarray
    expression: np.ndarray
    landmarks: np.ndarray


def vertex_mirror(vertices: np.ndarray, tol: float = 0.05) -> np.ndarray:
    """``(V,)`` int64 index of each vertex's mirror image (``x -> -x``) among ``vertices (V, 3)``.

    Raises :class:`ValueError` when a mirror image is farther than ``tol`` (same units) from every
    vertex: the mesh is not symmetric.
    """
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    m = v * np.array([-1.0, 1.0, 1.0])
    d, j = cKDTree(v).query(m)
    if d.max() > tol:
        raise ValueError(f"the mesh is not left-right symmetric: a mirrored vertex is {d.max():.3g} from the nearest")
    return j.astype(np.int64)


def expression_mirror_map(names: "list[str]") -> np.ndarray:
    """``(N_exp,)`` int64 permutation taking expression weights to the mirrored face's: ``..._L``
    and ``..._R`` exchanged (:func:`voxface.data.ict.expression_mirror`), and so are ``...Left``
    and ``...Right`` (ARKit's ``jawLeft``, ``mouthLeft``: the jaw or mouth moved to one side, whose
    mirror image is the other side's shape); every other expression is its own mirror."""
    from .data.ict import expression_mirror

    perm = expression_mirror(names)
    for i, n in enumerate(names):
        for a, b in (("Left", "Right"), ("Right", "Left")):
            if n.endswith(a) and n[: -len(a)] + b in names:
                perm[i] = names.index(n[: -len(a)] + b)
    return perm


def mirror_maps(ict: "ICTModel") -> MirrorMaps:
    """The :class:`MirrorMaps` of an ICT-FaceKit model (about a second: one least-squares solve)."""
    from .data.ict import CLOSED_HEAD_VERTICES

    n = CLOSED_HEAD_VERTICES
    vm = vertex_mirror(ict.neutral[:n])  # within the closed head (other parts share positions)
    flip = np.array([-1.0, 1.0, 1.0])
    basis = ict.identity[:, :n].astype(np.float64)  # (K, n, 3) cm
    mirrored = basis[:, vm] * flip  # mode k's displacement, mirrored
    A = basis.reshape(len(basis), -1).T  # (3n, K)
    Y = mirrored.reshape(len(basis), -1).T
    X, *_ = np.linalg.lstsq(A, Y, rcond=None)  # mirrored_k = sum_l X[l, k] basis_l
    res = np.linalg.norm(A @ X - Y, axis=0) / np.maximum(np.linalg.norm(Y, axis=0), 1e-12)
    pos = ict.neutral[np.asarray(ict.landmarks, np.int64)].astype(np.float64)
    lm_mirror = np.argmin(((pos[:, None] - (pos * flip)[None]) ** 2).sum(-1), axis=0)  # nearest, no symmetry check
    return MirrorMaps(identity=X.astype(np.float32), identity_residual=res.astype(np.float32),
                      expression=expression_mirror_map(list(ict.expression_names)),
                      landmarks=lm_mirror.astype(np.int64))


def block_flips(batch_size: int, p: float, generator: "torch.Generator") -> "torch.Tensor":
    """``(batch_size,)`` bool: which samples to mirror, drawn per block of 4 with probability ``p``."""
    import torch

    blocks = -(-batch_size // BLOCK)
    f = torch.rand(blocks, generator=generator) < p
    return f.repeat_interleave(BLOCK)[:batch_size]


def mirror_batch(batch: dict[str, Any], flip: "torch.Tensor", maps: MirrorMaps,
                 grid_center_x: float = 0.0) -> dict[str, Any]:
    """A copy of a collated batch with the samples where ``flip (B,)`` is true mirrored.

    Args:
        batch: tensors as :mod:`voxface.data` lays them out (``image (B, 3, S, S)``, ``occ
            (B, R, R, R)``, ``id_coeffs (B, N_id)``, ...), all on one device.
        flip: ``(B,)`` bool (or 0/1) on any device, a NumPy array or a list; anything else, or another
            length, is an :class:`~voxface.errors.InputError`, and so is one that mirrors part of a
            block of 4 of a batch with ``occ_swap`` (whose targets pair samples ``i`` and ``i ^ 2``).
        maps: :func:`mirror_maps` of the data's morphable model.
        grid_center_x: canonical x (mm) of the occupancy grid's centre; grids are mirrored
            only about x = 0, so another value with ``occ`` in the batch raises ``ConfigError``.
    """
    import torch

    unknown = sorted(k for k, v in batch.items() if torch.is_tensor(v) and k not in MIRRORED | INVARIANT)
    if unknown:
        raise ValueError(f"mirror_batch: do not know how to mirror {unknown}")
    if ("occ" in batch or "occ_swap" in batch) and abs(grid_center_x) > 1e-6:
        raise ConfigError(f"mirror augmentation needs an occupancy grid centred on x = 0 (model.frame.center_mm "
                          f"x is {grid_center_x})")
    out = dict(batch)
    first = next((v for v in batch.values() if torch.is_tensor(v)), None)
    if first is None:
        return out
    flip = torch.as_tensor(flip)  # a NumPy mask or a list as well
    if flip.numel() != len(first) or flip.is_floating_point() or flip.is_complex():
        raise InputError(f"mirror_batch: flip must be ({len(first)},) booleans, one per sample, got "
                         f"{tuple(flip.shape)} {flip.dtype}")
    flip = flip.reshape(-1)
    if "occ_swap" in batch:  # occ_swap[i] is identity i with the expression of i ^ 2: a block mirrors whole
        whole = flip[: len(flip) - len(flip) % BLOCK].bool().reshape(-1, BLOCK).cpu()
        split = (whole.any(1) & ~whole.all(1)).nonzero().flatten().tolist()
        if split:
            b = split[0] * BLOCK
            raise InputError(f"mirror_batch: flip mirrors part of a block of {BLOCK} (samples {b}-{b + BLOCK - 1}: "
                             f"{whole[split[0]].tolist()}), whose occ_swap targets are one sample's identity with "
                             "another's expression: mirror whole blocks (block_flips draws such masks)")
    if not bool(flip.any()):
        return out
    dev = first.device
    f = flip.to(dev).bool()
    flip_x = torch.tensor([-1.0, 1.0, 1.0], device=dev)  # F = diag(-1, 1, 1)

    def where(key: str, mirrored: torch.Tensor) -> None:
        x = batch[key]
        out[key] = torch.where(f.view(-1, *([1] * (x.dim() - 1))), mirrored.to(x.dtype), x)

    for key in ("image", "mask", "occ", "occ_swap"):
        if key in batch:
            where(key, batch[key].flip(-1))
    if "id_coeffs" in batch:
        M = torch.as_tensor(maps.identity, device=dev)
        where("id_coeffs", batch["id_coeffs"].float() @ M.T)
    if "exp_coeffs" in batch:
        where("exp_coeffs", batch["exp_coeffs"][:, torch.as_tensor(maps.expression, device=dev)])
    if "rotation" in batch:
        where("rotation", batch["rotation"] * flip_x.view(1, 3, 1) * flip_x.view(1, 1, 3))
    if "translation" in batch:
        where("translation", batch["translation"] * flip_x[:2])
    if "euler" in batch:
        where("euler", batch["euler"] * torch.tensor([-1.0, 1.0, -1.0], device=dev))
    lm = torch.as_tensor(maps.landmarks, device=dev)
    if "landmarks_2d" in batch:
        size = batch["image"].shape[-1] if "image" in batch else None
        if size is None:
            raise ValueError("mirror_batch: landmarks_2d need the image (its width) in the batch")
        l2 = batch["landmarks_2d"][:, lm].clone()
        l2[..., 0] = size - l2[..., 0]
        where("landmarks_2d", l2)
    if "landmarks_3d" in batch:
        where("landmarks_3d", batch["landmarks_3d"][:, lm] * flip_x)
    for key in ("points", "normals"):  # (B, N, 3) canonical surface samples: a set, nothing to renumber
        if key in batch:
            where(key, batch[key] * flip_x)
    return out
