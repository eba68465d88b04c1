"""The closed head of ICT-FaceKit, placed in the canonical frame (:mod:`voxface.frame`).

The union of face, head and neck, mouth socket and both eye sockets (vertices ``0 .. 14061``) is a
surface with a single boundary: a 54-vertex loop at the bottom of the neck. Capping that loop with
a fan around its centroid gives a watertight, consistently wound, outward-facing closed head whose
inside is exact (no voxelised surface points). Eyeballs, teeth and lashes are rendered but are not
part of the occupancy.

Canonical placement of a person with identity coefficients ``a``: the neutral-expression closed
head of ``a`` is translated so its vertex centroid is the origin and scaled (uniformly) to an RMS
radius of :data:`voxface.frame.HEAD_RMS_RADIUS_MM`. Expressions are applied *before* this
similarity transform and share it, so they move the surface but never the origin or the scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..frame import HEAD_RMS_RADIUS_MM
from ..occupancy import is_consistently_wound, odd_edges
from .ict import CLOSED_HEAD_VERTICES, SUBMESHES, ICTModel, blend, check_coeffs

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

CM_TO_MM = 10.0


def _boundary_loops(faces: np.ndarray) -> list[list[int]]:
    """Boundary loops of a triangle mesh, each in the direction the faces traverse its edges."""
    directed = {(int(a), int(b)) for f in faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0]))}
    nxt: dict[int, int] = {}
    for a, b in directed:
        if (b, a) not in directed:
            nxt[a] = b
    loops, seen = [], set()
    for s in list(nxt):
        if s in seen:
            continue
        loop, cur = [], s
        while cur not in seen:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        loops.append(loop)
    return loops


@dataclass
class Transform:
    """Similarity from ICT centimetres to canonical millimetres: ``X_mm = (X_cm - center) * scale``."""

    center: np.ndarray  # (3,) cm
    scale: float  # mm per cm

    def apply(self, v_cm: np.ndarray) -> np.ndarray:
        return ((np.asarray(v_cm, np.float64) - self.center) * self.scale).astype(np.float32)


class HeadModel:
    """Closed heads and full render meshes of ICT-FaceKit faces in the canonical frame.

    Args:
        ict: the loaded :class:`voxface.data.ict.ICTModel`.
    """

    def __init__(self, ict: ICTModel):
        self.ict = ict
        n = CLOSED_HEAD_VERTICES
        head_faces = ict.faces[(ict.faces < n).all(axis=1)]
        loops = _boundary_loops(head_faces)
        if len(loops) != 1:  # not ICT-FaceKit's topology (an edited or foreign generic_neutral_mesh.obj)
            raise DataError(f"not ICT-FaceKit's head topology: vertices 0..{n - 1} should leave one open loop "
                            f"(the neck), found {len(loops)}", ict.root / "generic_neutral_mesh.obj")
        self.cap_loop = np.asarray(loops[0], np.int64)
        # fan around a new vertex (index n) at the loop centroid, wound against the loop's direction
        loop = self.cap_loop
        cap = np.stack([np.roll(loop, -1), loop, np.full_like(loop, n)], axis=1)
        #: ``(F, 3)`` triangles of the closed head over ``n + 1`` vertices (the last: cap centre).
        self.faces = np.concatenate([head_faces, cap]).astype(np.int32)
        self.num_vertices = n + 1
        #: :func:`voxface.occupancy.occupancy_grid`'s rule for these faces, checked once: ``"nonzero"``
        #: (ICT's topology is closed and consistently wound), so the lips, which pass through each
        #: other when pressed or closed, stay solid where they overlap
        self.occupancy_rule = "nonzero" if is_consistently_wound(self.faces) else "evenodd"
        odd = odd_edges(self.faces) if self.occupancy_rule == "evenodd" else 0
        if odd:  # one neck loop, yet a triangle given twice: occupancy_grid refused it (not closed) at the
            # first sample, without naming the file
            raise DataError(f"not ICT-FaceKit's head topology: {odd} edges of vertices "
                            f"0..{n - 1} are shared by an odd number of triangles (a triangle given twice?)",
                            ict.root / "generic_neutral_mesh.obj")
        self.landmarks = ict.landmarks
        lo, hi = SUBMESHES["narrow_face"]
        #: per-face flag: the triangle belongs to the ICT narrow face area (metrics' face region).
        self.face_region = ((self.faces >= lo) & (self.faces < hi)).all(axis=1)

    # -- canonical placement -------------------------------------------------------------------
    def transform(self, id_coeffs: np.ndarray | None, identity_vertices: np.ndarray | None = None) -> Transform:
        """The canonical similarity of a person (depends on identity only).

        ``identity_vertices`` (cm, neutral expression, at least the closed-head vertices) saves
        recomputing the identity's mesh when the caller already has it.
        """
        v = identity_vertices if identity_vertices is not None else self.ict.vertices(id_coeffs, None, stop=CLOSED_HEAD_VERTICES)
        v = np.asarray(v[:CLOSED_HEAD_VERTICES], np.float64)
        c = v.mean(axis=0)
        rms = float(np.sqrt(((v - c) ** 2).sum(axis=1).mean())) * CM_TO_MM
        return Transform(c, CM_TO_MM * HEAD_RMS_RADIUS_MM / rms)

    def person(self, id_coeffs: np.ndarray | None) -> "Person":
        """A person: the identity's neutral mesh and canonical transform, computed once."""
        v_id = self.ict.vertices(id_coeffs)
        return Person(self, v_id, self.transform(id_coeffs, v_id))

    def _cap(self, v: np.ndarray) -> np.ndarray:
        return np.concatenate([v, v[self.cap_loop].mean(axis=0, keepdims=True)])

    def closed_head(self, id_coeffs: np.ndarray | None, exp_coeffs: np.ndarray | None,
                    transform: Transform | None = None) -> np.ndarray:
        """Vertices ``(N + 1, 3)`` float32 of the closed head in canonical mm (faces: :attr:`faces`)."""
        tr = transform or self.transform(id_coeffs)
        v = self.ict.vertices(id_coeffs, exp_coeffs, stop=CLOSED_HEAD_VERTICES)
        return tr.apply(self._cap(v))

    def full_vertices(self, id_coeffs: np.ndarray | None, exp_coeffs: np.ndarray | None,
                      transform: Transform | None = None) -> np.ndarray:
        """All ``(V, 3)`` vertices (eyes, teeth, lashes included) in canonical mm."""
        tr = transform or self.transform(id_coeffs)
        return tr.apply(self.ict.vertices(id_coeffs, exp_coeffs))

    def mesh(self, id_coeffs: np.ndarray | None = None, exp_coeffs: np.ndarray | None = None) -> "trimesh.Trimesh":
        """The closed head as a ``trimesh.Trimesh`` (canonical mm), for metrics and export."""
        import trimesh

        return trimesh.Trimesh(self.closed_head(id_coeffs, exp_coeffs), self.faces, process=False)


@dataclass
class Person:
    """One identity: its neutral-expression vertices (cm) and canonical transform.

    Expressions are added to :attr:`vertices_cm` directly, so the 100-mode identity product is
    computed once per person, not once per expression.
    """

    head: HeadModel
    vertices_cm: np.ndarray  # (V, 3)
    transform: Transform

    def _expressed(self, exp_coeffs: np.ndarray | None, stop: int | None) -> np.ndarray:
        v = self.vertices_cm[:stop].copy()
        if exp_coeffs is not None:
            basis = self.head.ict.expression
            v += blend(check_coeffs(exp_coeffs, basis, "exp_coeffs"), basis, stop)
        return v

    def full_vertices(self, exp_coeffs: np.ndarray | None) -> np.ndarray:
        """All ``(V, 3)`` vertices in canonical mm."""
        return self.transform.apply(self._expressed(exp_coeffs, None))

    def closed_head(self, exp_coeffs: np.ndarray | None) -> np.ndarray:
        """Closed-head vertices ``(N + 1, 3)`` in canonical mm (faces: ``HeadModel.faces``)."""
        return self.transform.apply(self.head._cap(self._expressed(exp_coeffs, CLOSED_HEAD_VERTICES)))


def identity_mode_weights(head: HeadModel) -> np.ndarray:
    """How much each identity mode moves the canonical (scale-normalised) closed head.

    For mode ``k``, the mean squared vertex displacement (canonical mm^2) between the mean head and
    the head with ``a_k = 1`` (others 0), both placed in the canonical frame (so a mode that only
    changes head size moves almost nothing). Returned ``(N_id,)`` float32, normalised to mean 1:
    the per-mode weights of the ``latent`` loss (:func:`voxface.losses.latent_loss`), which then
    approximates the mean squared vertex error of the identity.
    """
    n = head.ict.identity.shape[0]
    base = head.closed_head(None, None).astype(np.float64)
    w = np.empty(n, np.float64)
    for k in range(n):
        a = np.zeros(n, np.float32)
        a[k] = 1.0
        w[k] = ((head.closed_head(a, None) - base) ** 2).sum(axis=1).mean()
    return (w / max(w.mean(), 1e-12)).astype(np.float32)
