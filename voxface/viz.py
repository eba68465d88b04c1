"""Pictures for people: clay renders, overlays on photos, volume slices, grids, PNG/GIF, plotly.

Everything renders off screen on the CPU (open3d's ``RaycastingScene``; no display, no OpenGL) and
returns ``uint8`` RGB images ``(H, W, 3)`` (renders on a transparent background, ``background=None``:
RGBA ``(H, W, 4)``). Rendering casts one ray per sub-pixel (2x2 by default,
averaged: anti-aliased silhouettes), shades with vertex normals interpolated by the barycentric
coordinates of each hit (for a mesh wound inconsistently, normals blind to the winding), and
lights the surface with a key light (upper left), a fill light (right) and ambient light, plus a
faint highlight: a clay look. Lights are fixed to the camera, so every view is lit alike.

Views of a mesh in the canonical frame (:mod:`voxface.frame`): ``yaw = pitch = 0`` looks at the
face from the front (the camera on +z looking towards -z): canonical x to the image's right, y up.
Positive ``yaw`` moves the camera about the vertical axis towards +x (the subject's left side);
positive ``pitch`` raises it (looking down on the head). The camera turns about the centre of the
mesh's bounding box and frames the mesh's bounding sphere, so a turntable keeps one scale.

Overlays use the weak-perspective pose of :class:`voxface.models.voxface.Pose`: a canonical point
``X`` (mm) lands at crop coordinates ``scale * (R @ X)[:2] / HEAD_RMS_RADIUS_MM + t`` in
``[-1, 1]`` (x right, y down), the image being the crop.

open3d, trimesh, PIL, matplotlib and plotly are imported inside the functions that use them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, InputTypeError, VoxfaceError, check_finite, check_integer
from .frame import HEAD_RMS_RADIUS_MM, Grid
from .mesh import _checked_pair, _to_numpy, as_trimesh, atomic_write_bytes, check_file_name

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

__all__ = [
    "render_mesh",
    "render_views",
    "mesh_turntable",
    "render_overlay",
    "slice_montage",
    "image_grid",
    "draw_points",
    "save_png",
    "save_gif",
    "plot_mesh_plotly",
    "plot_meshes_plotly",
    "render_sequence",
    "shared_framing",
    "latent_explorer",
]

Color = tuple[float, float, float]

#: Default clay colour (linear-ish RGB in [0, 1]).
CLAY: Color = (0.8, 0.75, 0.7)

_AMBIENT = 0.3
_KEY = 0.68  # upper left, in front
_FILL = 0.3  # right, slightly below
_SPECULAR = 0.12
_SHININESS = 24.0
_MARGIN = 1.04  # bounding-sphere radius / half the image


# --------------------------------------------------------------------------------------------
# ray casting


def _check_finite(vertices: np.ndarray) -> None:
    """Refuse vertices ``(V, 3)`` with a NaN or infinite coordinate (they would frame an empty view)."""
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise VoxfaceError(f"cannot render a mesh with non-finite vertices: {int(bad.sum())} of "
                           f"{len(vertices)} have NaN or infinite coordinates")


def _check_area(vertices: np.ndarray, faces: np.ndarray, what: str) -> None:
    """Refuse a mesh ``vertices (V, 3), faces (F, 3)`` (finite) whose faces all have zero area (to
    1e-10 of the extent of the vertices they name, squared): its vertices coincide or lie on a line
    (a mesh scaled by 0), and it was drawn as an empty picture (or page) without a word. A vertex no
    face names (a scan's stray point, drawn nowhere, framed nowhere: :func:`_drawn`) is no part of
    the extent: one 1 km away made every face of a head "zero area". ``what`` opens the message."""
    if len(faces) == 0:
        return
    extent = float(np.ptp(_drawn(vertices, faces), axis=0).max())

    def any_area(f: np.ndarray) -> bool:
        tri = vertices[f]
        e1, e2 = ((tri[:, k] - tri[:, 0]) / extent for k in (1, 2))  # in units of the extent: no overflow
        return bool((np.linalg.norm(np.cross(e1, e2), axis=1) > 1e-10).any())

    # a real mesh shows area in its first faces: the rest is looked at only when they have none
    if not (extent > 0 and (any_area(faces[:256]) or any_area(faces[256:]))):
        raise VoxfaceError(f"{what}: its {len(faces)} face(s) all have zero area (their vertices coincide or lie "
                           "on a line), so there is nothing to draw")


def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(F, 3)`` normals of ``faces``, by their winding, of length twice the face's area."""
    tri = vertices[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])


def _axis_normals(faces: np.ndarray, face_n: np.ndarray, n_vertices: int) -> np.ndarray:
    """Vertex normals ``(V, 3)`` blind to the winding: at each vertex, the main axis of its faces'
    normals (the top eigenvector of the sum of ``n n^T`` over them, weighted by area), without a
    sign. ``face_n (F, 3)``: face normals of length twice the face's area."""
    length = np.linalg.norm(face_n, axis=1)
    outer = np.einsum("fi,fj->fij", face_n, face_n / np.maximum(length, 1e-300)[:, None]).reshape(-1, 9)
    corner = faces.reshape(-1)
    acc = np.stack([np.bincount(corner, np.repeat(outer[:, k], 3), n_vertices) for k in range(9)], axis=1)
    return np.linalg.eigh(acc.reshape(-1, 3, 3))[1][:, :, 2]  # eigenvalues ascending: the last vector


def _mesh_arrays(mesh: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices (V, 3) float64, faces (F, 3) int64)`` of a mesh in any form :func:`as_trimesh`
    takes, read without asking the mesh for anything it derives: trimesh caches what it derives
    (normals, triangles, edges) on the mesh asked, and a mesh's PLY holds its normals once they are
    cached (a render changed the file a later ``save`` wrote). A ``(vertices, faces)`` pair is
    checked as :func:`as_trimesh` checks it, without building a ``Trimesh`` (a reference cycle:
    its arrays wait for Python's cycle collector), and so are a ``Trimesh``'s arrays: a face
    naming a vertex the mesh does not have (negative, or past the last) is an :class:`InputError`."""
    import trimesh

    if isinstance(mesh, tuple) and len(mesh) == 2 and not isinstance(getattr(mesh, "mesh", None), trimesh.Trimesh):
        return _checked_pair(*mesh)
    m = as_trimesh(mesh)
    # a Trimesh's faces are checked as a pair's are: trimesh keeps a loaded file's indices unchecked
    # (a PLY cut short or written wrong), so a face naming vertex V was a bare IndexError, and -1 was
    # wrapped by numpy to the last vertex and handed to open3d as vertex 2^32 - 1 (read out of bounds)
    return _checked_pair(m.vertices, m.faces)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals ``(V, 3)`` of ``vertices (V, 3) float64, faces (F, 3) int64``: trimesh's
    ``Trimesh.vertex_normals`` (face normals weighted by the corner angles; zero-area faces left
    out, a vertex of none zero), bit for bit, computed from the arrays: nothing is cached on a
    caller's mesh, and normals a mesh carries (loaded from a file, set by hand) are not used, so a
    picture depends on the geometry alone."""
    from trimesh import geometry, triangles

    if len(faces) == 0:
        return np.zeros((len(vertices), 3))
    tri = vertices[faces]
    unit, valid = triangles.normals(triangles=tri, crosses=triangles.cross(tri))
    face_n = unit
    if not valid.all():  # as Trimesh.face_normals pads them: zero for a zero-area face
        face_n = np.zeros((len(faces), 3))
        face_n[valid] = unit
    return geometry.weighted_vertex_normals(len(vertices), faces, face_n, triangles.angles(tri))


def _drawn(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The vertices ``(V', 3)`` of ``vertices (V, 3)`` that ``faces (F, 3)`` name: those a picture
    can show, which its framing bounds (a vertex no face names, left in a scan's file, drew the
    head as a speck in a corner). ``vertices`` itself when every vertex is named, or there are no
    faces (a point set, framed by its points)."""
    if len(faces) == 0:
        return vertices
    named = np.zeros(len(vertices), bool)
    named[faces.reshape(-1)] = True
    return vertices if named.all() else vertices[named]


@dataclass
class _Scene:
    """A mesh in an open3d ``RaycastingScene`` with what shading needs."""

    scene: Any
    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64
    vertex_normals: np.ndarray  # (V, 3) float64, unit
    center: np.ndarray  # (3,) bounding-box centre
    radius: float  # bounding-sphere radius about center
    #: the vertex normals are axes without a sign (:func:`_axis_normals`): each hit turns its
    #: triangle's three towards the triangle's own normal before interpolating them
    unsigned: bool = False
    #: the vertices faces name (:func:`_drawn`; ``vertices`` itself when every vertex is named)
    drawn: np.ndarray | None = None
    #: ``(3,)`` the point the scene's float32 coordinates are relative to (rays are moved by it):
    #: the drawn vertices' bounding-box centre, so a mesh far from the origin keeps its precision
    origin: np.ndarray | None = None

    @classmethod
    def build(cls, vertices: np.ndarray, faces: np.ndarray, vertex_normals: np.ndarray) -> "_Scene":
        import open3d as o3d

        if len(faces) == 0:
            raise InputError("cannot render a mesh without faces")
        _check_finite(vertices)
        _check_area(vertices, faces, "cannot render this mesh")
        drawn = _drawn(vertices, faces)  # the view frames the surface, not vertices no face names
        center = 0.5 * (drawn.min(0) + drawn.max(0))
        # open3d holds the triangles (and the rays) in float32: relative to the mesh's centre, not to
        # the origin, or a mesh far from it (a scan in world coordinates: a head 5,000 km from the
        # origin in metres) was rounded to a few points, drawn as a blank picture without a word
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(vertices - center, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
        )
        radius = float(np.linalg.norm(drawn - center, axis=1).max()) or 1.0
        # inconsistent winding (a scan, a mesh stitched from parts): vertex normals summed faces
        # facing both ways, cancelled to noise, and the shading came out in blotches. Faces against
        # their corners' normals tell; 20k faces spread over the mesh are enough to see them
        some = faces[:: max(1, len(faces) // 20000)]
        against = np.einsum("fd,fd->f", _face_normals(vertices, some), vertex_normals[some].sum(1)) < 0
        unsigned = bool(against.mean() > 1e-3)
        if unsigned:
            vertex_normals = _axis_normals(faces, _face_normals(vertices, faces), len(vertices))
        return cls(scene, vertices, faces, vertex_normals, center, radius, unsigned, drawn, center.copy())

    @classmethod
    def of(cls, mesh: Any) -> "_Scene":
        v, f = _mesh_arrays(mesh)
        _check_finite(v)  # before the normals are derived from them
        return cls.build(v, f, _vertex_normals(v, f))

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rays ``(..., 3)`` to ``(hit (...,) bool, normal (..., 3))``: smooth normals at the hits.

        The normal is the vertex normals interpolated with the hit's barycentric coordinates
        (open3d: ``p = (1 - u - v) v0 + u v1 + v v2``), turned to the side of the hit triangle
        that faces the viewer (by the triangle's own normal), and reflected in the plane facing the
        viewer where it still points away (interpolated across a silhouette).
        """
        import open3d as o3d

        shape = origins.shape[:-1]
        offset = 0.0 if self.origin is None else self.origin  # the scene's coordinates are relative to it
        rays = np.concatenate([origins.reshape(-1, 3) - offset, directions.reshape(-1, 3)], axis=1)
        ans = self.scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        hit = np.isfinite(ans["t_hit"].numpy())
        prim = ans["primitive_ids"].numpy()[hit].astype(np.int64)
        uv = ans["primitive_uvs"].numpy()[hit].astype(np.float64)
        w = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)  # (K, 3)
        corners = self.vertex_normals[self.faces[prim]]  # (K, 3, 3)
        face_n = _face_normals(self.vertices, self.faces[prim])
        if self.unsigned:  # each corner's axis turned to the side of the hit triangle's own normal
            corners = corners * np.where(np.einsum("kcd,kd->kc", corners, face_n) < 0, -1.0, 1.0)[..., None]
        n = np.einsum("kc,kcd->kd", w, corners)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        d = directions.reshape(-1, 3)[hit]
        # the side of the triangle the ray sees (an open mesh's back, an inside-out shell): its own
        # normal tells. The smooth normal was negated wherever it pointed away, but interpolated
        # across a silhouette it points away on triangles facing the viewer (0.2% of a face's hits):
        # negated, its sideways part turned round, and rim pixels were lit as the opposite side (up
        # to 100 levels off: specks along the outline). Such a normal is reflected in the plane
        # facing the viewer instead, keeping its sideways part
        n *= np.where(np.einsum("kd,kd->k", face_n, d) > 0, -1.0, 1.0)[:, None]
        n -= 2 * np.maximum(np.einsum("kd,kd->k", n, d), 0.0)[:, None] * d  # d is a unit vector
        normals = np.zeros((hit.size, 3))
        normals[hit] = n
        return hit.reshape(shape), normals.reshape(*shape, 3)


def _shade(
    normals: np.ndarray, right: np.ndarray, up: np.ndarray, back: np.ndarray, color: Color
) -> np.ndarray:
    """Clay shading of unit normals ``(..., 3)``; ``right, up, back`` = the camera's axes (world)."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v)

    key = unit(-0.55 * right + 0.65 * up + 0.75 * back)
    fill = unit(0.8 * right - 0.15 * up + 0.6 * back)
    diffuse = _AMBIENT + _KEY * np.clip(normals @ key, 0, None) + _FILL * np.clip(normals @ fill, 0, None)
    half = unit(key + back)  # Blinn-Phong half vector, viewer along +back
    spec = _SPECULAR * np.clip(normals @ half, 0, None) ** _SHININESS
    rgb = diffuse[..., None] * np.asarray(color, dtype=np.float64) + spec[..., None]
    return np.clip(rgb, 0.0, 1.0)


def _shade_hits(hit: np.ndarray, normals: np.ndarray, right: np.ndarray, up: np.ndarray, back: np.ndarray,
                color: Color) -> np.ndarray:
    """:func:`_shade` of the rays that hit (``hit (...)``, ``normals (..., 3)``), black elsewhere
    (:func:`_composite` weighs colours by coverage): a face covers a fraction of the view, so only
    that fraction is shaded."""
    rgb = np.zeros(normals.shape)
    rgb[hit] = _shade(normals[hit], right, up, back, color)
    return rgb


def _composite(hit: np.ndarray, rgb: np.ndarray, under: np.ndarray, ss: int, alpha: float,
               transparent: bool = False) -> np.ndarray:
    """Average ``ss x ss`` sub-pixels; blend ``alpha`` of the shaded colour over ``under`` by coverage.

    ``hit (H*ss, W*ss)``, ``rgb (H*ss, W*ss, 3)`` in [0, 1]; ``under (H, W, 3)`` float in [0, 1].
    Pixels no ray hit keep ``under`` exactly. ``transparent``: ``(H, W, 4)`` RGBA instead, the
    shaded colour (black where no ray hit) with ``alpha`` times the coverage as alpha.
    """
    H, W = under.shape[:2]
    cov = hit.reshape(H, ss, W, ss).mean(axis=(1, 3))
    col = (rgb * hit[..., None]).reshape(H, ss, W, ss, 3).sum(axis=(1, 3))
    col = col / np.maximum(cov * ss * ss, 1)[..., None]
    a = (alpha * cov)[..., None]
    out = np.concatenate([col, a], axis=-1) if transparent else under * (1 - a) + col * a
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def _view_axes(yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera (right, up, back) in canonical coordinates for a yaw/pitch in degrees."""
    y, p = math.radians(yaw), math.radians(pitch)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])  # R_x(-pitch)
    m = ry @ rx
    return m[:, 0], m[:, 1], m[:, 2]


def _rgb01(value: Any, what: str) -> Color:
    """``value`` as an RGB triple in [0, 1]; anything else (0-255 values: an all-white render on
    white) is an :class:`InputError` naming ``what``."""
    try:
        rgb = tuple(float(c) for c in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        hint = " (divide 0-255 values by 255)" if len(rgb) == 3 and all(0.0 <= c <= 255.0 for c in rgb) else ""
        raise InputError(f"{what} must be three numbers in [0, 1] (RGB), got {value!r}{hint}")
    return rgb  # type: ignore[return-value]


def _plotly_rgb(color: Any) -> str:
    """``"rgb(r,g,b)"`` (0-255) of an RGB colour in [0, 1] (:func:`_rgb01`), as plotly takes it."""
    return "rgb({},{},{})".format(*(int(round(255 * c)) for c in _rgb01(color, "color")))


#: Rays cast at once (a band of image rows): a 2048-pixel render held 4 GB, a 4096 one 16 GB.
_RAYS_PER_BLOCK = 1 << 18


def _row_blocks(rows: int, rays_per_row: int) -> list[tuple[int, int]]:
    """``[(r0, r1), ...]``: bands of pixel rows covering ``0 .. rows`` with at most about
    :data:`_RAYS_PER_BLOCK` rays each (at least one row)."""
    step = max(1, _RAYS_PER_BLOCK // max(1, rays_per_row))
    return [(r0, min(rows, r0 + step)) for r0 in range(0, rows, step)]


def _check_raster(size: int | None, ss: int) -> None:
    """Refuse an image side ``size`` (pixels; ``None``: not checked) or a supersampling factor
    ``ss`` (rays per pixel along each axis) below 1: they give empty, black or broken images."""
    if size is not None and size < 1:
        raise InputError(f"size must be a positive number of pixels, got {size}")
    if ss < 1:
        raise InputError(f"supersample must be at least 1 (rays per pixel along each axis), got {ss}")


def _render(
    sc: _Scene,
    yaw: float,
    pitch: float,
    size: int,
    fov_deg: float | None,
    color: Color,
    background: Color | None,
    ss: int,
) -> np.ndarray:
    _check_raster(size, ss)
    color = _rgb01(color, "color")
    transparent = background is None  # RGBA, alpha = coverage
    background = (1.0, 1.0, 1.0) if transparent else _rgb01(background, "background")
    if not (math.isfinite(yaw) and math.isfinite(pitch)):  # NaN axes: no ray hits, a blank picture
        raise InputError(f"yaw and pitch must be finite numbers of degrees, got {yaw} and {pitch}")
    right, up, back = _view_axes(yaw, pitch)
    n = size * ss
    half = sc.radius * _MARGIN
    s = (np.arange(n) + 0.5) / n * 2 - 1  # sub-pixel centres in [-1, 1]
    if fov_deg is not None and not 0 < fov_deg < 180:
        raise InputError(f"fov_deg must lie in (0, 180) degrees (or None: orthographic), got {fov_deg}")
    under = np.broadcast_to(np.asarray(background, dtype=np.float64), (size, size, 3))
    out = np.empty((size, size, 4 if transparent else 3), np.uint8)
    # orthographic rays start in front of every vertex drawn: 2 radii out is outside the mesh for its
    # own framing, but a close-up's framing (render_sequence(framing=...)) put them inside the head.
    # A vertex no face names is no part of it: one 1 km in front of the face moved the rays' start
    # there, where float32 (open3d's rays) rounds to a millimetre and more: a 3/4 view came out noisy
    drawn = sc.vertices if sc.drawn is None else sc.drawn
    front = max(2 * sc.radius, float(((drawn - sc.center) @ back).max()) + sc.radius)
    for r0, r1 in _row_blocks(size, n * ss):  # a band of pixel rows at a time: bounded memory
        u, v = np.meshgrid(s, -s[r0 * ss : r1 * ss])  # rows top to bottom: v from +1 to -1
        if fov_deg is None:  # orthographic: parallel rays from a plane in front of the mesh
            origins = sc.center + half * (u[..., None] * right + v[..., None] * up) + front * back
            directions = np.broadcast_to(-back, origins.shape)
        else:  # pinhole at a distance where the bounding sphere fills the field of view
            tan = math.tan(math.radians(fov_deg) / 2)
            dist = half / math.sin(math.radians(fov_deg) / 2)
            eye = sc.center + dist * back
            directions = -back + tan * (u[..., None] * right + v[..., None] * up)
            directions = directions / np.linalg.norm(directions, axis=-1, keepdims=True)
            origins = np.broadcast_to(eye, directions.shape)
        hit, normals = sc.cast(origins, directions)
        rgb = _shade_hits(hit, normals, right, up, back, color)
        out[r0:r1] = _composite(hit, rgb, under[r0:r1], ss, 1.0, transparent)
    return out


def render_mesh(
    mesh: Any,
    *,
    yaw: float = 0.0,
    pitch: float = 0.0,
    size: int = 256,
    fov_deg: float | None = None,
    color: Color = CLAY,
    background: Color | None = (1.0, 1.0, 1.0),
    supersample: int = 2,
) -> np.ndarray:
    """Clay render of a mesh in the canonical frame.

    Args:
        mesh: ``trimesh.Trimesh``, :class:`~voxface.mesh.MeshResult` or ``(vertices (V, 3),
            faces (F, 3))``, in canonical mm (any units work: the view frames the mesh).
        yaw, pitch: view direction in degrees (module docstring): 0, 0 = from the front (+z),
            x right, y up; +yaw shows the subject's left (+x) side, +pitch looks from above.
        size: image side in pixels.
        fov_deg: horizontal/vertical field of view of a pinhole camera, or ``None`` for an
            orthographic view (the default).
        color, background: RGB in [0, 1]; ``background=None``: a transparent background (for
            figures composed elsewhere), the image RGBA.
        supersample: rays per pixel along each axis (anti-aliasing).

    Returns:
        ``(size, size, 3)`` uint8 RGB; with ``background=None`` ``(size, size, 4)`` uint8 RGBA, alpha
        the share of the pixel the mesh covers (anti-aliased edges), the colour the mesh's
        (:func:`save_png` writes it as RGBA).

    Raises:
        ValueError: ``size`` or ``supersample`` below 1; ``fov_deg`` outside (0, 180); ``yaw`` or
            ``pitch`` NaN or infinite (a blank picture); ``color`` or ``background`` not three
            numbers in [0, 1] (0-255 values drew a white mesh on white).
        VoxfaceError: a mesh without faces, with NaN or infinite vertex coordinates, whose faces
            all have zero area (an empty picture), or with a face naming a vertex it does not have
            (an :class:`InputError`).
    """
    return _render(_Scene.of(mesh), float(yaw), float(pitch), int(size), fov_deg, color, background,
                   int(supersample))


def _views(views: Any) -> list[tuple[float, float]]:
    """``views`` as ``[(yaw, pitch), ...]`` in degrees; anything else (``[0, 60]``, yaws alone: a
    bare 'cannot unpack non-iterable int') is an :class:`InputError`."""
    out = []
    for v in views:
        try:
            yaw, pitch = v
            out.append((float(yaw), float(pitch)))
        except (TypeError, ValueError):
            raise InputError(f"views must be (yaw, pitch) pairs in degrees, e.g. [(0, 0), (60, 0)]; got {v!r}") from None
    return out


def render_views(
    mesh: Any,
    views: Sequence[tuple[float, float]] = ((0.0, 0.0), (60.0, 0.0), (-60.0, 0.0)),
    size: int = 256,
    **kwargs: Any,
) -> list[np.ndarray]:
    """:func:`render_mesh` for each ``(yaw, pitch)`` in ``views`` (degrees), one scene built once.

    Keyword arguments (``fov_deg``, ``color``, ``background``, ``supersample``) go to every view.
    Returns a list of ``(size, size, 3)`` uint8 images (``(size, size, 4)`` RGBA with ``background=None``).
    """
    opts = {"fov_deg": None, "color": CLAY, "background": (1.0, 1.0, 1.0), "supersample": 2}
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise InputTypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    opts.update(kwargs)
    sc = _Scene.of(mesh)
    fov, color, bg, ss = opts["fov_deg"], opts["color"], opts["background"], int(opts["supersample"])
    return [_render(sc, yaw, pitch, int(size), fov, color, bg, ss) for yaw, pitch in _views(views)]


def mesh_turntable(
    mesh: Any, n: int = 36, size: int = 256, pitch: float = 10.0, **kwargs: Any
) -> list[np.ndarray]:
    """``n`` frames of the mesh turning a full circle (yaw ``360 * i / n``), for :func:`save_gif`.

    Returns a list of ``(size, size, 3)`` uint8 images; keyword arguments as :func:`render_views`.
    ``n`` below 1 or not whole (2.5 drew 2 frames 144 degrees apart) is an :class:`InputError`.
    """
    try:
        ok = not isinstance(n, (bool, str)) and float(n) >= 1 and float(n) == int(n)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"n must be a whole number of frames, at least 1, got {n!r}")
    return render_views(mesh, [(360.0 * i / int(n), pitch) for i in range(int(n))], size, **kwargs)


def _pose_arrays(pose: Any) -> tuple[np.ndarray, float, np.ndarray]:
    rot = _to_numpy(pose.rotation, np.float64)
    scale = _to_numpy(pose.scale, np.float64)
    trans = _to_numpy(pose.translation, np.float64)
    if rot.ndim == 3:
        if len(rot) != 1:
            raise InputError(f"render_overlay takes one pose, got a batch of {len(rot)}")
        rot, scale, trans = rot[0], scale.reshape(-1)[0], trans.reshape(-1, 2)[0]
    return rot, float(scale), trans


def _check_pose(rot: np.ndarray, scale: float, t: np.ndarray) -> None:
    """Refuse a pose that does not place the mesh as a camera sees it: a NaN or infinite entry (the
    posed mesh was refused as having "non-finite vertices"), a scale not above 0 (0 drew nothing, a
    negative one the back of the head upside down) or a ``rotation`` that is not one (a reflection,
    ``diag(1, -1, 1)``, drew the mesh mirrored; a scaled matrix stretched it). The tolerance takes
    rotations computed in bfloat16."""
    if not (np.isfinite(rot).all() and math.isfinite(scale) and np.isfinite(t).all()):
        raise InputError(f"rotation, scale and translation must be finite numbers, got rotation {rot.tolist()}, "
                         f"scale {scale} and translation {t.tolist()}")
    if not scale > 0:
        raise InputError(f"scale must be above 0 (the head's RMS radius in crop half-widths), got {scale}")
    det = float(np.linalg.det(rot))
    if not (np.abs(rot @ rot.T - np.eye(3)).max() < 0.05 and det > 0):
        what = "a reflection (determinant -1): it would draw the mesh mirrored" if abs(det + 1) < 0.05 else \
            f"not orthonormal (determinant {det:.3g})"
        raise InputError(f"rotation must be a rotation matrix, canonical to OpenCV camera axes (a frontal face: "
                         f"diag(1, -1, -1)), got {np.round(rot, 4).tolist()}: {what}")


def render_overlay(
    image: Any,
    mesh: Any,
    rotation: Any = None,
    scale: float | None = None,
    translation: Any = None,
    *,
    pose: Any = None,
    alpha: float = 0.6,
    color: Color = CLAY,
    supersample: int = 2,
) -> np.ndarray:
    """Blend a clay render of the mesh, posed in the crop, over the crop image.

    Args:
        image: the square crop ``(S, S, 3)`` uint8 RGB, or float in [0, 1] (as
            :attr:`voxface.Reconstruction.crop`; ``(S, S)`` grey or ``(S, S, 4)`` RGBA, composited over white, also taken); its
            extent is crop coordinates ``[-1, 1]`` on each axis (x right, y down).
        mesh: a mesh (``trimesh.Trimesh``, :class:`~voxface.mesh.MeshResult`,
            :class:`voxface.Reconstruction` or ``(vertices, faces)``).
            With a pose: in canonical mm. Without one: already in *crop space*, ``(x, y)`` crop
            coordinates (x right, y down) and ``z`` depth along the optical axis (larger =
            farther) in the same units. A Reconstruction without pose arguments is posed by its
            own :attr:`~voxface.Reconstruction.pose` (its mesh is in canonical mm, never in crop
            space: it covered the whole crop); one without a pose (decoded from a code) is refused.
        rotation: ``(3, 3)`` canonical-to-OpenCV-camera rotation (numpy or torch).
        scale: the head's RMS radius in crop half-widths.
        translation: ``(2,)`` the canonical origin in crop coordinates.
        pose: instead of the three above, a :class:`~voxface.models.voxface.Pose` of batch 1.
        alpha: opacity of the mesh (0-1).
        color: clay RGB in [0, 1].
        supersample: rays per pixel along each axis.

    Returns:
        ``(H, W, 3)`` uint8 (``H == W``). Pixels the mesh does not cover are the input's, unchanged.

    Raises:
        ValueError: an image that is not ``(S, S, 3)`` (or ``(S, S)``, ``(S, S, 4)``), uint8 or
            float in [0, 1], with ``S >= 1`` (a non-square image would stretch the mesh along its longer side),
            ``supersample`` below 1, ``alpha`` outside [0, 1] or ``color`` not RGB in [0, 1]; a pose
            with a NaN or infinite entry, a ``scale`` not above 0, or a ``rotation`` that is not a
            rotation matrix (a reflection drew the mesh mirrored).
        VoxfaceError: a mesh without faces, with non-finite vertices or with a face naming a vertex
            it does not have.
    """
    shape = tuple(image.shape) if hasattr(image, "shape") else np.shape(image)  # as given, for the message
    img = _rgb_uint8(image, "image")
    if img.shape[0] != img.shape[1] or img.shape[0] == 0:
        # crop coordinates [-1, 1] span a square crop; a (H, W) image with H != W would stretch the mesh
        raise InputError(f"image must be a non-empty square crop (H == W), got shape {shape}: crop "
                         "coordinates [-1, 1] span both sides of the crop, so a non-square image would "
                         "stretch the mesh; crop or pad it square first")
    _check_raster(None, int(supersample))
    color = _rgb01(color, "color")
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must lie in [0, 1] (the mesh's opacity), got {alpha}")
    img = img[..., :3]
    if type(mesh).__name__ == "Reconstruction" and pose is None and rotation is None and scale is None \
            and translation is None:
        if mesh.pose is None:
            raise InputError("this Reconstruction has no pose (decoded from a code): give rotation, scale and "
                             "translation, or pose=, to place its mesh in a crop")
        pose = mesh.pose
    verts, faces = _mesh_arrays(mesh)
    _check_finite(verts)
    # vertex normals follow the rotation below (uniform scale and translation do not change them)
    normals = _vertex_normals(verts, faces)
    if pose is not None:
        rotation, scale, translation = _pose_arrays(pose)
    if rotation is not None or scale is not None or translation is not None:
        if rotation is None or scale is None or translation is None:
            raise InputError("give rotation, scale and translation together (or pose=)")
        rot, sc_, t = (_to_numpy(x, np.float64) for x in (rotation, scale, translation))
        if rot.size != 9 or sc_.size != 1 or t.size != 2:
            raise InputError(f"rotation must be (3, 3), scale one number and translation (2,), got shapes "
                             f"{rot.shape}, {sc_.shape} and {t.shape}")
        rot, k, t = rot.reshape(3, 3), float(sc_.reshape(-1)[0]) / HEAD_RMS_RADIUS_MM, t.reshape(2)
        _check_pose(rot, k * HEAD_RMS_RADIUS_MM, t)
        # rotation + uniform scale + translation: orientation (outward normals) is preserved
        verts = k * verts @ rot.T + np.array([t[0], t[1], 0.0])
    if rotation is not None:
        normals = normals @ rot.T
    sc = _Scene.build(verts, faces, normals)

    H, W = img.shape[:2]
    ss = int(supersample)
    xs = (np.arange(W * ss) + 0.5) / (W * ss) * 2 - 1
    ys = (np.arange(H * ss) + 0.5) / (H * ss) * 2 - 1
    # rays start in front of the vertices faces name (sc.drawn), as render_mesh's do (d2e676f): a stray
    # vertex far in front (a scan's outlier) put their start there, where float32 rays lose the surface
    z0 = sc.drawn[:, 2].min() - 1.0
    out = np.empty((H, W, 3), np.uint8)
    for r0, r1 in _row_blocks(H, W * ss * ss):  # a band of rows at a time: bounded memory
        u, v = np.meshgrid(xs, ys[r0 * ss : r1 * ss])
        origins = np.stack([u, v, np.full_like(u, z0)], axis=-1)
        directions = np.broadcast_to(np.array([0.0, 0.0, 1.0]), origins.shape)
        hit, nrm = sc.cast(origins, directions)
        # OpenCV camera: x right, y down, viewer towards -z
        rgb = _shade_hits(hit, nrm, np.array([1.0, 0, 0]), np.array([0, -1.0, 0]), np.array([0, 0, -1.0]), color)
        out[r0:r1] = _composite(hit, rgb, img[r0:r1].astype(np.float64) / 255.0, ss, float(alpha))
    return out


# --------------------------------------------------------------------------------------------
# volumes and images


def _font(size: int = 12) -> Any:
    """The captions' font: DejaVu Sans as matplotlib ships it (Latin with accents, Greek, Cyrillic;
    one font on every machine), else Pillow's default. Pillow's own font (Aileron) holds ASCII only:
    a caption naming ``José.jpg`` read ``Jos□.jpg``. Neither holds CJK or emoji: those show as boxes.
    A new font object per call (0.1 ms): a FreeType face is not to be shared between threads, and
    previews are drawn in writer threads."""
    import importlib.util

    from PIL import ImageFont

    # found, not imported: importing matplotlib costs 0.2 s in every process drawing a preview
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            return ImageFont.truetype(str(Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
        except OSError:  # pragma: no cover - matplotlib is a dependency
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _check_positive(name: str, value: Any, what: str) -> None:
    """Refuse (:class:`InputError` naming ``name``: ``must be <what>``) a value that is not a finite
    number above 0 (a string, NaN and infinity included)."""
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be {what}, got {value!r}")


#: How far outside [0, 1] a float image may stray (clipped when drawn): a bicubic resize's overshoot,
#: as :meth:`voxface.VoxFace.encode` takes it (``voxface.models.voxface.IMAGE_OVERSHOOT``, not
#: imported: it imports torch). Refused at 1e-3, the crops the encoder read could not be shown.
_OVERSHOOT = 0.2


def _image_array(image: Any) -> np.ndarray:
    """``image`` as a numpy array; a PIL image in its colours: numpy reads a palette image (a GIF
    frame, an 8-bit PNG) as its palette indices, drawn as greys, and CMYK or YCbCr as if RGB(A)."""
    if type(image).__module__.startswith("PIL.") and hasattr(image, "mode") and hasattr(image, "convert"):
        if image.mode not in ("1", "L", "RGB", "RGBA") and not image.mode.startswith(("I", "F")):
            alpha = "A" in image.mode or "transparency" in image.info
            image = image.convert("RGBA" if alpha else "RGB")
    return _to_numpy(image)


def _rgb_uint8(image: Any, what: str = "images") -> np.ndarray:
    """``(H, W, 3)`` uint8 from a uint8, float [0, 1] or bool image, grey ``(H, W)`` or RGB(A),
    or a PIL image; alpha is composited over white, as :func:`voxface.image.load_image` does for
    the network. Float values up to :data:`_OVERSHOOT` outside [0, 1] (a bicubic resize's, which
    the encoder takes) are clipped; NaN pixels are black."""
    a = _image_array(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        known = a[~np.isnan(a)]  # NaN pixels are drawn black; an image of NaN alone read "got [nan, nan]"
        if a.size and not known.size:
            raise InputError(f"{what}: the float image holds NaN only, no value to draw")
        if a.size and not (known.min() >= -_OVERSHOOT and known.max() <= 1 + _OVERSHOOT):
            hint = " (divide 0-255 values by 255)" if known.max() > 1 + _OVERSHOOT else ""
            raise InputError(f"{what}: float images must hold values in [0, 1], got [{known.min():.4g}, "
                             f"{known.max():.4g}]{hint}")
        a = np.clip(np.round(np.nan_to_num(a) * 255), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise InputError(f"{what} must be uint8 (or float in [0, 1], or bool), got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputError(f"{what} must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.shape[2] == 4:  # alpha over white, by the network's rule
        from .image import _channels_to_rgb

        return _channels_to_rgb(a)
    return a


def _wrap_text(text: str, font: Any, room: float) -> list[str]:
    """``text`` in lines no wider than ``room`` pixels in ``font``: broken at its own line breaks
    (they were read as spaces), at spaces, and inside a word wider than a line where it must be."""
    if "\n" in text.strip():
        return [line for part in text.strip().splitlines() for line in _wrap_text(part, font, room)]
    words: list[str] = []
    for word in text.split():
        while len(word) > 1 and font.getlength(word) > room:
            # the longest prefix that fits (at least one character), by bisection: measuring every
            # prefix took 2 s for a 1000-character word (a path without spaces) and 90 s for 3000
            lo, hi = 1, len(word) - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if font.getlength(word[:mid]) <= room else (lo, mid - 1)
            words.append(word[:lo])
            word = word[lo:]
        words.append(word)
    lines: list[str] = []
    for word in words:
        if lines and font.getlength(f"{lines[-1]} {word}") <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def image_grid(
    images: Sequence[Any],
    ncols: int | None = None,
    pad: int = 4,
    labels: Sequence[str] | None = None,
    background: int = 255,
    title: str | None = None,
) -> np.ndarray:
    """Tile images into one, row-major, with ``pad`` pixels between and around them.

    Args:
        images: ``(H, W, 3)``/``(H, W, 4)`` (alpha over white)/``(H, W)`` uint8 (or float in [0, 1]) images,
            or PIL images (palette, CMYK... in their colours); sizes may differ (each is centred in
            a cell of the largest size).
        ncols: columns; by default ``ceil(sqrt(len(images)))``.
        pad: pixels between cells and around the border.
        labels: optional caption per image, drawn in a strip above it.
        background: grey level of the padding, an integer 0-255.
        title: optional line drawn in a strip above the whole grid (what the images show).
            Captions are drawn in DejaVu Sans: Latin (accents too), Greek and Cyrillic; characters
            it lacks (CJK, emoji) show as boxes.

    Returns:
        ``(title + rows * (h + label) + (rows + 1) * pad, ncols * w + (ncols + 1) * pad, 3)``
        uint8 with ``h, w`` the largest image height and width.
    """
    from PIL import Image, ImageDraw

    ims = [_rgb_uint8(im) for im in images]
    if not ims:
        raise InputError("image_grid needs at least one image")
    for i, im in enumerate(ims):  # a (0, 0, 3) image was a cell of padding: a blank picture, no word
        if im.size == 0:
            raise InputError(f"image_grid: image {i} has no pixels (shape {im.shape})")
    if isinstance(background, bool) or not (isinstance(background, (int, np.integer)) and 0 <= background <= 255):
        # 300 was an OverflowError, 0.5 (a [0, 1] grey) a black background
        raise InputError(f"background must be a grey level, an integer 0-255, got {background!r}")
    if labels is not None and len(labels) != len(ims):
        raise InputError(f"{len(labels)} labels for {len(ims)} images")
    try:  # NaN, infinity or a word were bare int() errors naming neither
        ok = (ncols is None or int(ncols) >= 1) and int(pad) >= 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"image_grid needs ncols of at least 1 and pad of at least 0, got {ncols!r} and {pad!r}")
    pad = int(pad)
    ncols = int(ncols or math.ceil(math.sqrt(len(ims))))
    nrows = math.ceil(len(ims) / ncols)
    h = max(im.shape[0] for im in ims)
    w = max(im.shape[1] for im in ims)
    font = _font()
    line_h = font.getbbox("Ag")[3] + 2
    strip = 0
    wrapped: list[list[str]] = []
    if labels is not None:  # each label wrapped to its cell's width: long ones ran into the next cell
        wrapped = [_wrap_text(str(t), font, max(8, w - 4)) for t in labels]
        strip = max(len(lines) for lines in wrapped) * line_h + 3
    ch = h + strip
    out = np.full((nrows * ch + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3), background, np.uint8)
    for i, im in enumerate(ims):
        r, c = divmod(i, ncols)
        y0 = pad + r * (ch + pad) + strip + (h - im.shape[0]) // 2
        x0 = pad + c * (w + pad) + (w - im.shape[1]) // 2
        out[y0 : y0 + im.shape[0], x0 : x0 + im.shape[1]] = im
    if labels is not None:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        ink = (0, 0, 0) if background >= 128 else (255, 255, 255)
        for i, lines in enumerate(wrapped):
            r, c = divmod(i, ncols)
            for k, line in enumerate(lines):
                draw.text((pad + c * (w + pad) + 2, pad + r * (ch + pad) + 1 + k * line_h), line, fill=ink, font=font)
        out = np.asarray(pil)
    if title:  # wrapped at word boundaries to the grid's width
        lines = _wrap_text(str(title), font, out.shape[1] - 2 * pad - 4)
        head = np.full((line_h * len(lines) + 6, out.shape[1], 3), background, np.uint8)
        pil = Image.fromarray(head)
        draw = ImageDraw.Draw(pil)
        for k, line in enumerate(lines):
            draw.text((pad + 2, 3 + k * line_h), line, fill=(0, 0, 0) if background >= 128 else (255, 255, 255),
                      font=font)
        out = np.concatenate([np.asarray(pil), out], axis=0)
    return out


def draw_points(
    image: Any,
    points_xy: Any,
    scale: int = 1,
    *,
    radius: float = 1.5,
    color: tuple[int, int, int] = (255, 40, 40),
) -> np.ndarray:
    """Dots at 2D points (e.g. the 68 landmarks) on an image enlarged ``scale`` times.

    Args:
        image: ``(H, W, 3)`` uint8 (or ``(H, W)``, or float in [0, 1]).
        points_xy: ``(N, 2)`` continuous pixel coordinates ``(x, y)`` of ``image``: ``(0, 0)`` is
            the top-left corner of the top-left pixel, x right, y down.
        scale: integer enlargement (nearest neighbour), so small crops stay readable.
        radius: dot radius in pixels of the enlarged image: the pixels whose centres lie within it
            are drawn, and always the pixel holding the point (below 0.5 drawn as 0.5).
        color: RGB as three integers 0-255 (the default), or three floats in [0, 1] as the
            other functions here take colours; floats above 1 are refused (give 0-255 as integers).

    Returns:
        ``(H * scale, W * scale, 3)`` uint8.

    Raises:
        ValueError: ``scale`` not a whole number of at least 1, ``radius`` not a positive finite number,
            ``color`` none of the above (``(1.0, 0.0, 0.0)`` is red; it drew near-black).
    """
    from PIL import Image

    img = _rgb_uint8(image)
    try:
        ok_scale = float(scale) >= 1 and float(scale) == int(scale)
    except (TypeError, ValueError, OverflowError):
        ok_scale = False
    if not ok_scale:
        raise InputError(f"scale must be a whole number of at least 1 (the enlargement), got {scale!r}")
    _check_positive("radius", radius, "a positive finite number of pixels")
    fill = _rgb_points(color)
    scale, radius = int(scale), max(0.5, float(radius))
    pil = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
    pts = _to_numpy(points_xy, np.float64)
    if pts.size and pts.shape[-1] != 2:
        raise InputError(f"points_xy must be (N, 2) pixel coordinates (x, y), got shape {pts.shape}")
    pts = pts.reshape(-1, 2) * scale
    out = np.array(pil)
    H, W = out.shape[:2]
    # each dot: the pixels whose centres lie within `radius` of the point, and the pixel holding it
    # (a small dot never vanishes). PIL's ellipse drew its box's pixels inclusive, so every dot sat
    # half a pixel right of and below its point, one pixel too wide
    for x, y in pts[np.all(np.isfinite(pts), axis=1)]:
        c0, c1 = max(0, math.floor(x - radius)), min(W, math.ceil(x + radius))
        r0, r1 = max(0, math.floor(y - radius)), min(H, math.ceil(y + radius))
        if c0 >= c1 or r0 >= r1:  # off the image
            continue
        yy, xx = np.mgrid[r0:r1, c0:c1] + 0.5
        disc = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        if 0 <= x < W and 0 <= y < H:
            disc[int(y) - r0, int(x) - c0] = True
        out[r0:r1, c0:c1][disc] = fill
    return out


def _rgb_points(color: Any) -> tuple[int, int, int]:
    """:func:`draw_points`' ``color`` as 0-255 integers: integers are 0-255, floats [0, 1] (so
    ``(1.0, 0.0, 0.0)`` is red, not the near-black ``(1, 0, 0)`` it drew)."""
    try:
        values = np.asarray(color)
        rgb = [float(c) for c in values.reshape(-1)] if values.dtype.kind in "iuf" else []
    except (TypeError, ValueError):
        values, rgb = np.asarray(0), []
    floats = values.dtype.kind == "f"
    top = 1.0 if floats else 255.0
    if len(rgb) != 3 or not all(0.0 <= c <= top for c in rgb):
        hint = ""
        if floats and len(rgb) == 3 and all(0.0 <= c <= 255.0 for c in rgb):
            hint = " (floats are [0, 1]; give 0-255 values as integers)"
        raise InputError(f"color must be RGB: three integers 0-255 or three floats in [0, 1], got {color!r}{hint}")
    return tuple(int(round(c * 255)) if floats else int(c) for c in rgb)  # type: ignore[return-value]


def slice_montage(
    volume: Any,
    n: int = 8,
    axis: int = 0,
    *,
    grid: Grid | None = None,
    ncols: int | None = None,
    cell_px: int = 128,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float = 1.0,
    span: str = "occupied",
) -> np.ndarray:
    """A montage of ``n`` evenly spaced slices through a volume, colour-mapped and labelled, with a
    caption saying what the colours mean.

    Args:
        volume: ``(D, H, W) = (z, y, x)`` occupancy probabilities (float) or occupancy (bool /
            0-1 integers); ``(1, 1, D, H, W)`` is taken too. Values are clipped to ``[vmin, vmax]``
            (pass ``sigmoid(logits)``, not logits).
        n: number of slices (at most the axis length), at the centres of ``n`` equal bins.
        axis: 0 slices along z (each tile: x right, y up: the front view), 1 along y (x right,
            z down: seen from above, face at the bottom), 2 along x (z right, y up: the profile,
            face to the right).
        grid: if given, labels give the slice position in canonical mm, else the index.
        ncols: montage columns (default ``ceil(sqrt(n))``).
        cell_px: tiles are upscaled (nearest neighbour, integer factor) to at least this size.
        cmap: a matplotlib colormap name (the colormap only; no figure is made).
        span: ``"occupied"`` (default): the slices spread over the part of the axis where some
            value reaches the middle of ``[vmin, vmax]`` (the head, not the empty cube around it;
            the whole axis when none does); ``"all"``: over the whole axis.

    Returns:
        uint8 ``(H, W, 3)`` image (see :func:`image_grid`).

    Raises:
        ValueError: a volume that is not ``(D, H, W)`` or holds NaN, ``axis`` not 0-2, ``vmin >=
            vmax`` or either not finite, ``n`` or ``cell_px`` below 1, an unknown ``cmap`` or
            ``span``, a ``grid`` of another resolution than the volume's.
    """
    from matplotlib import colormaps

    vol = _to_numpy(volume)
    if vol.ndim == 5 and vol.shape[:2] == (1, 1):
        vol = vol[0, 0]
    if vol.ndim != 3 or vol.size == 0:
        raise InputError(f"volume must be a non-empty (D, H, W), got shape {vol.shape}")
    nan = int(np.isnan(vol).sum()) if np.issubdtype(vol.dtype, np.floating) else 0
    if nan:  # colour-mapped as black, a colour the caption's scale does not hold
        raise InputError(f"volume holds {nan} NaN values of {vol.size} (the sigmoid of NaN logits: a diverged "
                         "model?); a montage cannot colour them")
    if axis not in (0, 1, 2):
        raise InputError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis}")
    if grid is not None and vol.shape != (grid.resolution,) * 3:
        # a 128^3 volume labelled on the 64^3 grid read every position off by up to half the cube
        raise InputError(f"volume {vol.shape} is not on the grid given ({grid.resolution}^3 cells): its slice "
                         f"positions would be mislabelled; pass the volume's own grid")
    # vmin >= vmax coloured by a divide by 1e-12 under a caption reading the range backwards; an
    # unknown colormap was a KeyError, n or cell_px below 1 silently 1 slice / the bare voxels
    if not (math.isfinite(float(vmin)) and math.isfinite(float(vmax)) and float(vmin) < float(vmax)):
        raise InputError(f"vmin and vmax must be finite with vmin < vmax, got {vmin} and {vmax}")
    if int(n) < 1 or int(cell_px) < 1:
        raise InputError(f"n and cell_px must be at least 1, got {n} and {cell_px}")
    if cmap not in colormaps:
        raise InputError(f"cmap must be a matplotlib colormap name (e.g. 'viridis', 'gray'), not {cmap!r}")
    if span not in ("occupied", "all"):
        raise InputError(f"span must be 'occupied' or 'all', not {span!r}")

    def scaled(a: np.ndarray) -> np.ndarray:
        """``a``'s values on the colour scale: ``[vmin, vmax]`` to [0, 1], clipped (float64)."""
        return np.clip((a.astype(np.float64) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)

    # a slice at a time: the whole volume scaled in float64 (and clipped) peaked at 4x a float32
    # volume's bytes (270 MB beside a 256^3 grid, 2 GB beside a 512^3 one) for a picture of 8 slices
    lo, length = 0, vol.shape[axis]
    if span == "occupied":
        inside = np.flatnonzero([(scaled(np.take(vol, i, axis=axis)) >= 0.5).any() for i in range(length)])
        if len(inside):
            lo, length = int(inside[0]), int(inside[-1]) + 1 - int(inside[0])
    n = max(1, min(int(n), length))
    idx = lo + np.unique(((np.arange(n) + 0.5) * length / n).astype(int))
    colormap = colormaps[cmap]
    names = "zyx"
    tiles, labels = [], []
    for i in idx:
        s = scaled(np.take(vol, i, axis=axis))
        if axis == 0:  # (H, W) = (y, x): y up
            s = s[::-1]
        elif axis == 2:  # (D, H) = (z, y) -> rows y (up), columns z
            s = s.T[::-1]
        k = max(1, math.ceil(cell_px / max(s.shape)))
        s = np.kron(s, np.ones((k, k)))
        tiles.append((colormap(s)[..., :3] * 255).round().astype(np.uint8))
        if grid is not None:
            mm = grid.origin[2 - axis] + (i + 0.5) * grid.voxel_size
            labels.append(f"{names[axis]} = {mm:+.1f} mm")
        else:
            labels.append(f"{'dhw'[axis]} = {i}")
    low, high = (colormap(v)[:3] for v in (0.0, 1.0))
    title = f"colour: {vmin:g} {_colour_word(low)} to {vmax:g} {_colour_word(high)} ({cmap})"
    return image_grid(tiles, ncols=ncols, labels=labels, title=title)


def _colour_word(rgb: Sequence[float]) -> str:
    """A rough name for an RGB colour in [0, 1], for captions ("dark purple", "yellow")."""
    import colorsys

    h, lightness, sat = colorsys.rgb_to_hls(*rgb)
    if sat < 0.15:
        return "black" if lightness < 0.2 else "white" if lightness > 0.8 else "grey"
    names = ((0.04, "red"), (0.11, "orange"), (0.19, "yellow"), (0.45, "green"), (0.55, "cyan"),
             (0.7, "blue"), (0.85, "purple"), (0.95, "pink"), (1.01, "red"))
    word = next(name for edge, name in names if h < edge)
    return f"dark {word}" if lightness < 0.3 else word


def _pil(image: Any) -> Any:
    from PIL import Image

    a = _image_array(image)
    if a.size == 0:
        raise InputError(f"an image needs at least one pixel, got shape {a.shape}")
    if a.ndim == 3 and a.shape[2] == 4 and a.dtype == np.uint8:
        return Image.fromarray(a, "RGBA")
    return Image.fromarray(_rgb_uint8(a), "RGB")


def save_png(image: Any, path: str | Path) -> Path:
    """Write an image as PNG, atomically (temporary file, fsync, rename).

    ``image``: ``(H, W, 3)``/``(H, W)`` uint8 (or float in [0, 1]), ``(H, W, 4)`` uint8 RGBA, or a
    PIL image.
    Returns ``path``; an unwritable path raises :class:`VoxfaceError`, a name with another
    picture format's suffix (``a.jpg``: PNG bytes under it) or ending in a slash (``out/``: a
    folder) an :class:`InputError`.
    """
    check_file_name(path)  # Path() drops the slash: "out/" wrote a file named out
    _check_suffix(path, ".png", "PNG")
    return atomic_write_bytes(path, png_bytes(image))


#: suffixes of picture formats other than the one a writer writes: such a name is a mistake
_PICTURE_SUFFIXES = frozenset((".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".avif"))


def _check_suffix(path: str | Path, suffix: str, kind: str) -> None:
    """Refuse ``path`` named as a picture format other than ``kind`` (its suffix ``suffix``):
    the bytes written would not be what its name says. Other names (none, ``.out``) are taken."""
    s = Path(path).suffix.lower()
    if s in _PICTURE_SUFFIXES and s != suffix:
        raise InputError(f"{path}: named as another picture format, but {kind} is written; "
                         f"name the file {Path(path).stem}{suffix}")


def png_bytes(image: Any) -> bytes:
    """``image`` (as :func:`save_png` takes it) encoded as PNG."""
    buf = io.BytesIO()
    _pil(image).save(buf, format="PNG")
    return buf.getvalue()


def save_gif(frames: Iterable[Any], path: str | Path, fps: float = 12.0, loop: int | None = 0) -> Path:
    """Write frames as an animated GIF, atomically.

    Args:
        frames: ``(H, W, 3)`` uint8 images (e.g. :func:`mesh_turntable`), as :func:`save_png` takes
            them: a sequence (a list), or any iterable (a generator). A GIF has one size: frames
            smaller than the largest are centred on it, their edge pixels extended (a GIF shows a
            larger frame cut and a smaller one over the last).
        fps: frames per second, at most 50 (GIF stores durations in 10 ms steps, and browsers play
            frames of 10 ms or less at 100 ms: a higher rate is written as 50), at least 1/655 (16
            bits of 10 ms: a frame lasts at most 655.35 s). A frame lasts a
            whole number of 10 ms, some a step longer than others where needed (fps 8: 120 and 130
            ms), so that the animation plays at ``fps`` on average.
        loop: how many times the animation repeats after it has played once: 0 (the default)
            forever, ``None`` not at all (it plays once), at most 65535 (GIF stores 16 bits).

    Returns ``path``. Colours are quantised to a 256-colour palette per frame (GIF). A name with
    another picture format's suffix (``a.png``) or ending in a slash (``out/``: a folder) is an
    :class:`InputError`.

    Memory: frames are converted one at a time as the encoder takes them (it keeps each one
    quantised, 1 byte a pixel, until it writes), never all in full colour at once. A sequence is
    read twice: every frame is checked, and the largest size found, before any is encoded. A
    generator's frames are quantised as they come and let go (a caller that yields frames and
    keeps none holds the GIF's palette frames alone); one smaller than a later frame is padded
    after it is quantised, with its quantised edge colours (a sequence's before: the same
    picture, a palette a little different).
    """
    check_file_name(path)  # Path() drops the slash: "out/" wrote a file named out
    _check_suffix(path, ".gif", "GIF")
    _check_positive("fps", fps, "a positive finite number")
    if 1000 / float(fps) > 655000:  # 16 bits of 10 ms a frame: fps 0.001 was a bare OverflowError from PIL
        raise InputError(f"fps must be at least 1/655 (a GIF frame lasts at most 655.35 s), got {fps!r}")
    if loop is not None and (isinstance(loop, bool) or not isinstance(loop, (int, np.integer))
                             or not 0 <= loop <= 65535):
        # -1 and 70000 were OverflowErrors from PIL's encoder, None a TypeError
        raise InputError(f"loop must be a whole number 0-65535 (0: forever) or None (play once), got {loop!r}")
    if isinstance(frames, Sequence) and not isinstance(frames, (str, bytes)):
        ims = _gif_frames_of_sequence(frames)
    else:
        ims = _gif_frames_of_iterable(frames)
    n = next(ims)  # the number of frames (every frame read once to know it), then the frames
    first = next(ims)
    buf = io.BytesIO()
    # GIF stores 10 ms steps and PIL cuts a duration down to one (fps 8: 120 ms, 8.3 fps; 6: 6.25):
    # each frame ends at its own time rounded to 10 ms, so the animation keeps the rate asked for
    step = max(20.0, 1000 / float(fps))
    ends = [10 * round((i + 1) * step / 10) for i in range(n)]
    durations = [b - a for a, b in zip([0, *ends], ends)]
    opts = {} if loop is None else {"loop": int(loop)}  # no loop extension: browsers play it once
    # PIL takes append_images one at a time (it keeps each quantised): a generator, not a list of
    # every frame in full colour (4 bytes a pixel) beside the caller's
    first.save(buf, format="GIF", save_all=True, append_images=ims, duration=durations, **opts)
    return atomic_write_bytes(path, buf.getvalue())


def _gif_pad(shape: tuple[int, ...], H: int, W: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``np.pad`` widths that centre an image of ``shape`` on ``(H, W)``."""
    dh, dw = H - shape[0], W - shape[1]
    return (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)


def _gif_frames_of_sequence(frames: Sequence[Any]) -> Iterator[Any]:
    """:func:`save_gif`'s frames from a sequence: yields their number, then each frame as a PIL
    RGB image, converted (and padded to the largest) as it is asked for."""
    from PIL import Image

    shapes = []
    for i, f in enumerate(frames):  # every frame checked, and the largest size found, first
        shape = _rgb_uint8(f).shape
        if not np.prod(shape):
            raise InputError(f"save_gif: frame {i} has no pixels (shape {shape})")
        shapes.append(shape)
    if not shapes:
        raise InputError("save_gif needs at least one frame")
    H, W = max(s[0] for s in shapes), max(s[1] for s in shapes)
    yield len(shapes)
    for i, f in enumerate(frames):
        a = _rgb_uint8(f)
        if a.shape != shapes[i]:
            raise InputError(f"save_gif: frame {i} changed while it was written (shape {shapes[i]}, then {a.shape})")
        if a.shape[:2] != (H, W):
            a = np.pad(a, (*_gif_pad(a.shape, H, W), (0, 0)), mode="edge")
        yield Image.fromarray(a, "RGB")
        del a


def _gif_frames_of_iterable(frames: Iterable[Any]) -> Iterator[Any]:
    """:func:`save_gif`'s frames from an iterable read once: each quantised as it comes (as PIL
    quantises a GIF's RGB frame); yields their number, then the frames, each let go as it is
    taken, those smaller than the largest padded with their edge palette indices."""
    from PIL import Image

    held = []
    for i, f in enumerate(frames):
        a = _rgb_uint8(f)
        if a.size == 0:
            raise InputError(f"save_gif: frame {i} has no pixels (shape {a.shape})")
        held.append(Image.fromarray(a, "RGB").convert("P", palette=Image.Palette.ADAPTIVE))
        del a, f
    if not held:
        raise InputError("save_gif needs at least one frame")
    W, H = max(p.width for p in held), max(p.height for p in held)
    yield len(held)
    for i in range(len(held)):
        p, held[i] = held[i], None  # PIL keeps its own copy: this one is let go
        if p.size != (W, H):
            q = Image.fromarray(np.pad(np.asarray(p), _gif_pad((p.height, p.width), H, W), mode="edge"), "P")
            q.putpalette(p.getpalette(), "RGB")
            p = q
        yield p


def _plotly_mesh(mesh: Any, i: int = 0) -> "trimesh.Trimesh":
    """``mesh`` as a trimesh, refused as the renderers refuse it: without faces (a numpy 'truth
    value of an empty array' error in plotly), with NaN or infinite vertices (holes in the view),
    with faces all of zero area (an empty view) or with a face naming a vertex it does not have."""
    m = as_trimesh(mesh)
    if len(m.faces) == 0:
        raise InputError(f"cannot plot mesh {i}: it has no faces")
    try:
        v, f = _checked_pair(m.vertices, m.faces)  # a face naming a vertex the mesh does not have
    except InputError as e:
        raise InputError(f"cannot plot mesh {i}: {e}") from None
    bad = ~np.isfinite(v).all(axis=1)  # _check_finite's refusal, naming the mesh of a sequence
    if bad.any():
        raise VoxfaceError(f"cannot plot mesh {i}: it has non-finite vertices: {int(bad.sum())} of {len(v)} have "
                           "NaN or infinite coordinates")
    _check_area(v, f, f"cannot plot mesh {i}")
    return m


def _plotly_arrays(mesh: Any, max_faces: int | None, i: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """``(vertices (V, 3), faces (F, 3), faces given)`` of mesh ``i`` for a plotly figure: checked
    (:func:`_plotly_mesh`) and decimated to about ``max_faces`` if it has more, as the HTML page
    decimates it (:func:`voxface.html._mesh_arrays`; the caller's mesh is left as it is). A figure
    embeds every vertex and face: a 256^3 mesh (330,000 faces) was 11 MB of notebook output, a
    sequence of them hundreds of MB, which froze the notebook."""
    from .html import _mesh_arrays

    return _mesh_arrays(_plotly_mesh(mesh, i), max_faces, i)


def _faces_note(shown: int, given: int) -> str:
    """``"20,000 of 327,680 faces shown"`` for a mesh decimated for the figure, else ``""``."""
    return f"{shown:,} of {given:,} faces shown" if given > shown else ""


def _with_note(title: str | None, note: str) -> str | None:
    """``title`` with ``note`` after it (``" \u00b7 "`` between them), as the HTML page's caption."""
    if not note:
        return title
    return f"{title} \u00b7 {note}" if title else note


#: A plotly figure's hover: the vertex under the mouse in canonical mm.
_HOVER = "x %{x:.1f} mm<br>y %{y:.1f} mm<br>z %{z:.1f} mm"


def plot_mesh_plotly(mesh: Any, *, color: Color = CLAY, title: str | None = None,
                     max_faces: int | None = 20000) -> Any:
    """An interactive plotly ``Figure`` of a mesh (``Mesh3d``, smooth shading, equal axes).

    The initial camera looks at the face from the front (+z), y up, like :func:`render_mesh`.
    A mesh with more than ``max_faces`` faces is decimated for the figure only, as
    :func:`voxface.html.mesh_page` does (the figure embeds every vertex: a 256^3 mesh was 11 MB of
    notebook output), the title saying so ("20,000 of 327,680 faces shown"); ``None``: never.
    Needs plotly (``pip install 'voxface[notebook]'``). Raises :class:`VoxfaceError` for a mesh
    without faces or with NaN or infinite vertices, and :class:`InputError` for a ``max_faces``
    below 4.
    """
    try:
        import plotly.graph_objects as go
    except ImportError as e:  # plotly is an extra
        raise ImportError("plot_mesh_plotly needs plotly: pip install 'voxface[notebook]'") from e
    from .html import _check_max_faces

    _check_max_faces(max_faces)
    v, f, given = _plotly_arrays(mesh, max_faces)
    title = _with_note(title, _faces_note(len(f), given))
    rgb = _plotly_rgb(color)
    trace = go.Mesh3d(
        x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2],
        color=rgb, flatshading=False, hovertemplate=_HOVER + "<extra></extra>",
        lighting={"ambient": 0.35, "diffuse": 0.8, "specular": 0.15, "roughness": 0.6},
        lightposition={"x": -1000, "y": 1500, "z": 2000},
    )  # fmt: skip
    fig = go.Figure(trace)
    fig.update_layout(
        title=title,
        margin={"l": 0, "r": 0, "t": 30 if title else 0, "b": 0},
        scene={
            "aspectmode": "data",
            "xaxis_title": "x (mm)", "yaxis_title": "y (mm)", "zaxis_title": "z (mm)",
            "camera": {"eye": {"x": 0, "y": 0, "z": 2.0}, "up": {"x": 0, "y": 1, "z": 0}},
        },
    )  # fmt: skip
    return fig


# --------------------------------------------------------------------------------------------
# sequences, interactive views and the latent explorer


def _meshes_of(items: Sequence[Any]) -> list["trimesh.Trimesh"]:
    """Meshes from meshes, MeshResults, ``(vertices, faces)`` or Reconstructions; one mesh (not a
    sequence of them) is a list of one, as :func:`voxface.html.mesh_page` takes it (it was
    "'Trimesh' object is not iterable", and a ``(vertices, faces)`` pair two meshes, the vertices
    refused as "got TrackedArray")."""
    from .mesh import mesh_list

    return [as_trimesh(m) for m in mesh_list(items)]


def shared_framing(meshes: Sequence[Any], margin: float = 1.0) -> tuple[np.ndarray, float]:
    """``(center (3,), radius)`` of one view that frames every mesh: the centre of the union's
    bounding box and the largest distance of a vertex from it, times ``margin`` (the vertices faces
    name: one that no face names is not drawn, nor framed). One mesh (not a sequence) is taken as
    a sequence of one.

    Raises :class:`VoxfaceError` for a mesh without vertices or with NaN or infinite ones, and
    :class:`InputError` for a ``margin`` that is not a positive finite number."""
    from .mesh import mesh_list

    # 0, a negative or NaN margin came back as the radius (0, -50, nan), which render_sequence then
    # refused as a bad framing, never naming margin
    _check_positive("margin", margin, "a positive finite number (the factor on the radius)")
    items = mesh_list(meshes)
    if not items:
        raise InputError("shared_framing needs at least one mesh")
    # two passes over the meshes (the union's box, then the farthest vertex from its centre), each
    # read as arrays (_mesh_arrays: nothing cached on them, no Trimesh made of a (vertices, faces) pair)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for i, item in enumerate(items):
        v, f = _mesh_arrays(item)
        if len(v) == 0:
            raise InputError(f"cannot frame mesh {i}: it has no vertices")
        _check_finite(v)  # a NaN or infinite vertex would make the framing NaN: a blank view
        v = _drawn(v, f)
        lo, hi = np.minimum(lo, v.min(0)), np.maximum(hi, v.max(0))
    center = 0.5 * (lo + hi)
    radius = max(float(np.linalg.norm(_drawn(*_mesh_arrays(item)) - center, axis=1).max()) for item in items)
    return center, (radius or 1.0) * float(margin)


def render_sequence(
    meshes: Sequence[Any],
    views: Sequence[tuple[float, float]] = ((0.0, 0.0),),
    size: int = 256,
    *,
    framing: tuple[Any, float] | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> list[list[np.ndarray]]:
    """Clay renders of several meshes under one shared framing (sizes stay comparable).

    Args:
        meshes: meshes (``trimesh.Trimesh``, ``MeshResult``, ``(vertices, faces)``) or
            :class:`voxface.Reconstruction` s, in canonical mm; one mesh is a sequence of one.
        views: ``(yaw, pitch)`` pairs in degrees (:func:`render_mesh`).
        size: image side in pixels.
        framing: ``(center (3,), radius > 0)`` of the view (finite, in the meshes' units); default
            :func:`shared_framing`. The picture's half-side is ``1.04 * radius`` (the margin of every
            render). A radius smaller than the meshes' is a close-up (orthographic rays start in
            front of every face; a ``fov_deg`` camera stands ``1.04 * radius / sin(fov_deg / 2)``
            from the centre, which may be inside the mesh).
        progress: a progress bar counting the meshes rendered (``render``).
        **kwargs: ``fov_deg``, ``color``, ``background``, ``supersample`` as :func:`render_views`.

    Returns:
        ``images[i][j]``: mesh ``i`` seen from view ``j``, ``(size, size, 3)`` uint8 (RGBA
        ``(size, size, 4)`` with ``background=None``: :func:`render_mesh`).
    """
    return list(_renders(meshes, views, size, framing=framing, progress=progress, **kwargs))


def _renders(
    meshes: Sequence[Any],
    views: Sequence[tuple[float, float]] = ((0.0, 0.0),),
    size: int = 256,
    *,
    framing: tuple[Any, float] | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> Iterator[list[np.ndarray]]:
    """:func:`render_sequence`'s pictures a mesh at a time: the arguments and every mesh are checked
    (and the framing found) now, then each item the iterator yields is one mesh's views, rendered as
    it is asked for, so a caller keeping less than the pictures (``voxface sample``'s grid keeps
    them compressed) holds less."""
    opts = {"fov_deg": None, "color": CLAY, "background": (1.0, 1.0, 1.0), "supersample": 2}
    unknown = set(kwargs) - set(opts)
    if unknown:
        raise InputTypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    opts.update(kwargs)
    from .mesh import mesh_list

    items = mesh_list(meshes)
    if framing is not None:  # every mesh checked before the first is rendered (shared_framing does it too)
        for item in items:
            _mesh_arrays(item)
    center, radius = framing if framing is not None else shared_framing(items)
    center, radius = _to_numpy(center, np.float64), float(radius)
    # a radius of 0 filled the picture with one pixel's colour, a negative or NaN one or a NaN
    # centre drew nothing, a 2-element centre failed in numpy broadcasting
    if center.shape != (3,) or not np.isfinite(center).all() or not (math.isfinite(radius) and radius > 0):
        raise InputError(f"framing must be (center (3,) finite, radius > 0) in the meshes' units, got "
                         f"center {center.tolist()} and radius {radius}")
    return _render_each(items, _views(views), int(size), (center, radius), opts, progress)


def _render_each(items: list[Any], views: list[tuple[float, float]], size: int, framing: tuple[np.ndarray, float],
                 opts: dict[str, Any], progress: bool) -> Iterator[list[np.ndarray]]:
    """The views of each mesh of ``items`` under ``framing`` (checked), yielded a mesh at a time."""
    from tqdm.auto import tqdm

    # each mesh is read as arrays (_Scene.of): nothing is cached on the caller's meshes (trimesh
    # caches derived normals and triangles on a mesh, 3 MB a face of the model's grid, and writes the
    # normals into its PLY), and what a mesh's render derives goes with its scene, so memory beyond
    # the pictures is one mesh's whatever the number of meshes
    for item in tqdm(items, desc="render", unit="face", disable=not progress):
        sc = _Scene.of(item)
        sc.center, sc.radius = framing
        yield [_render(sc, y, p, size, opts["fov_deg"], opts["color"], opts["background"], int(opts["supersample"]))
               for y, p in views]


def plot_meshes_plotly(
    meshes: Sequence[Any],
    labels: Sequence[str] | None = None,
    *,
    color: Color = CLAY,
    title: str | None = None,
    height: int = 560,
    max_faces: int | None = 20000,
) -> Any:
    """An interactive plotly ``Figure``: the first mesh in 3D (``Mesh3d``) and a slider (and a
    play button) over all of them, with fixed axes so sizes compare.

    ``meshes``: meshes or :class:`voxface.Reconstruction` s in canonical mm (one mesh: a figure
    of one step); ``labels``: one caption per mesh (default ``"0"``, ``"1"``...; a string: the
    caption of one mesh). A mesh with more than ``max_faces`` faces is decimated for the figure
    only, as :func:`voxface.html.mesh_page` does (the figure embeds every mesh: a sequence of 256^3
    meshes was hundreds of MB of notebook output, which froze it), the title at that step saying
    so ("20,000 of 327,680 faces shown"); ``None``: never.
    Needs plotly (``pip install 'voxface[notebook]'``). Rotate/zoom with the mouse; the camera stays put across steps.
    """
    try:
        import plotly.graph_objects as go
    except ImportError as e:  # plotly is an extra
        raise ImportError("plot_meshes_plotly needs plotly: pip install 'voxface[notebook]'") from e
    from .html import _check_max_faces

    _check_max_faces(max_faces)
    # plotly refuses a height under 10 pixels (or not a number) in a dozen lines of its own
    try:
        ok = math.isfinite(float(height)) and float(height) >= 10
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise InputError(f"height must be a number of pixels, at least 10, got {height!r}")
    ms = [_plotly_arrays(m, max_faces, i) for i, m in enumerate(_meshes_of(meshes))]
    if not ms:
        raise InputError("plot_meshes_plotly needs at least one mesh")
    if isinstance(labels, str):  # one caption, not one a character (as mesh_page)
        labels = [labels]
    labels = [str(i) for i in range(len(ms))] if labels is None else [str(s) for s in labels]
    if len(labels) != len(ms):
        raise InputError(f"{len(labels)} labels for {len(ms)} meshes")
    rgb = _plotly_rgb(color)

    def trace(m: tuple[np.ndarray, np.ndarray, int], label: str) -> Any:
        v, f, _ = m
        # the hover names the step's mesh (its label, as the trace's name: a label is never read as
        # a hover template) and the vertex in mm (units and step were plotly's default name, "trace 0")
        return go.Mesh3d(
            x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], color=rgb, flatshading=False,
            name=label, hovertemplate=_HOVER + "<extra>%{fullData.name}</extra>",
            lighting={"ambient": 0.35, "diffuse": 0.8, "specular": 0.15, "roughness": 0.6},
            lightposition={"x": -1000, "y": 1500, "z": 2000},
        )  # fmt: skip

    center, radius = shared_framing([(v, f) for v, f, _ in ms], margin=1.05)
    rng = [[float(c - radius), float(c + radius)] for c in center]
    # plotly animates to a frame by name: two equal labels ("t = 0.33" twice) showed the first of
    # them at both steps, so a repeated label names its frame "label (2)", "label (3)"...
    names: list[str] = []
    for lab in labels:
        name, k = lab, 1
        while name in names or (name != lab and name in labels):
            k += 1
            name = f"{lab} ({k})"
        names.append(name)
    # a step's title says when its mesh is decimated for the figure (every step's title is set, so
    # a step with every face shown takes the plain title back)
    titles = [_with_note(title, _faces_note(len(m[1]), m[2])) for m in ms]
    noted = any(t != title for t in titles)
    frames = [go.Frame(data=[trace(m, lab)], name=name, **({"layout": {"title": {"text": t or ""}}} if noted else {}))
              for m, lab, name, t in zip(ms, labels, names, titles)]
    anim = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    steps = [{"method": "animate", "label": lab, "args": [[name], anim]} for lab, name in zip(labels, names)]
    fig = go.Figure(data=[trace(ms[0], labels[0])], frames=frames)
    fig.update_layout(
        title=titles[0], height=height,
        # room below the scene for the slider's ticks and its current value (they were clipped)
        margin={"l": 0, "r": 30, "t": 30 if noted or title else 0, "b": 90},
        scene={
            "aspectmode": "cube",
            "xaxis": {"range": rng[0], "title": "x (mm)"},
            "yaxis": {"range": rng[1], "title": "y (mm)"},
            "zaxis": {"range": rng[2], "title": "z (mm)"},
            "camera": {"eye": {"x": 0, "y": 0, "z": 2.0}, "up": {"x": 0, "y": 1, "z": 0}},
        },
        sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": ""}, "pad": {"t": 10, "l": 10},
                  "x": 0.12, "len": 0.86}],
        updatemenus=[{  # left of the slider, not over its value
            "type": "buttons", "showactive": False, "x": 0.0, "y": 0.0, "xanchor": "left", "yanchor": "top",
            "pad": {"t": 10},
            "buttons": [{"label": "play", "method": "animate",
                         "args": [None, {**anim, "frame": {"duration": 250, "redraw": True}, "fromcurrent": True}]}],
        }],
    )  # fmt: skip
    return fig


def latent_explorer(
    model: Any,
    code: Any = None,
    *,
    k: int = 4,
    space: str = "expression",
    value_range: float = 3.0,
    step: float = 0.25,
    size: int = 320,
    yaw: float = 30.0,
    pitch: float = 10.0,
    threshold: float = 0.5,
    continuous_update: bool = False,
    detect: bool = True,
    skin_check: bool = True,
    scan_size: int | None = None,
    resolution: int | None = None,
    upsample: str = "decoder",
) -> Any:
    """An ipywidgets explorer: sliders along the top principal latent directions, live mesh view.

    Needs ipywidgets (``pip install 'voxface[notebook]'``).

    Args:
        model: a :class:`voxface.VoxFace` whose checkpoint holds a latent prior.
        code: the starting face (anything :func:`voxface.latent.as_latents` takes: Latents, a
            photo, an ``.npz``, a raw code); ``None`` (the default) starts from the prior's mean
            face, :func:`voxface.latent.mean_latents`.
        k: sliders per space (the ``k`` principal directions with the most variance).
        space: ``"expression"``, ``"identity"`` or ``"both"`` (``k`` sliders for each).
        value_range: each slider runs over ``[-value_range, value_range]`` standard deviations of
            the training codes along its direction (:func:`voxface.latent.walk`).
        step: slider resolution (standard deviations).
        size: side of the rendered view (pixels); ``yaw``/``pitch``: its direction (degrees).
        threshold: surface occupancy probability.
        continuous_update: redraw while a slider is dragged (True) or when it is released
            (False, the default: each redraw decodes, meshes and renders, ~0.1-0.5 s on a CPU).
        detect, skin_check, scan_size: for a photo as ``code``, as in
            :func:`voxface.latent.as_latents`: ``detect=False`` takes it as an already framed crop,
            ``skin_check=False`` keeps a face under strongly tinted light, ``scan_size`` (>= 24;
            ``None``: :data:`voxface.reconstruct.SCAN_SIZE`) the side of the copy the detector scans.
        resolution, upsample: the grid each face is decoded on and how it is reached, as in
            :func:`voxface.reconstruct.decode_latents` (``None``: the model's own grid; 128 or 256
            make each redraw seconds slower on a CPU).

    Returns:
        An ``ipywidgets.VBox`` (display it in a notebook) with these attributes for scripting
        and tests: ``sliders`` (``ipywidgets.FloatSlider`` per direction), ``directions``
        (:class:`voxface.latent.Direction` per slider), ``image`` (``ipywidgets.Image`` holding
        the PNG of the current mesh), ``status`` (``ipywidgets.HTML``), ``base`` (the start
        Latents), ``latents()`` (the current code: start + sum of slider value x std x
        direction, Latents of batch 1), ``reconstruction`` (the last decoded
        :class:`voxface.Reconstruction`), ``update()`` (decode and redraw now), ``reset()``
        (all sliders to 0) and ``redraws`` (how many times the view was redrawn). Moving a slider
        calls ``update()``.
    """
    try:
        import ipywidgets as w
    except ImportError as e:  # an extra, as plotly
        raise ImportError("latent_explorer needs ipywidgets: pip install 'voxface[notebook]'") from e

    from . import latent as L
    from .models import Latents
    from .reconstruct import SCAN_SIZE, decode_latents

    from .mesh import check_mesh_options, probability_to_logit

    # before any decoding: threshold 1.5 was a bare 'math domain error', value_range -1 a TraitError
    check_mesh_options(threshold)
    for name, x in (("value_range", value_range), ("step", step)):
        _check_positive(name, x, "a positive number of standard deviations")
    _check_raster(int(size), 1)
    check_integer("k", k, 1)  # 0 built an explorer without a slider
    # the photo options every other function reading a face takes (they were a bare TypeError here)
    options = L._detect_options(skin_check, SCAN_SIZE if scan_size is None else scan_size)
    for name, x in (("yaw", yaw), ("pitch", pitch)):  # NaN was refused only after the first decode
        check_finite(name, x)
    level = probability_to_logit(float(threshold))
    spaces = ("identity", "expression") if space == "both" else (space,)
    for s in spaces:
        if s not in ("identity", "expression"):
            raise InputError(f"space must be 'identity', 'expression' or 'both', not {space!r}")
    base = L.as_latents(model, L.mean_latents(model) if code is None else code, detect=bool(detect), **options)[0]
    base = Latents(base.z_id.clone(), base.z_exp.clone())
    directions = [d for s in spaces for d in L.principal_directions(model, s, k)]
    grid = {"resolution": resolution, "upsample": upsample}  # what decodes every face shown
    start = decode_latents(model, base, threshold=threshold, **grid)[0]
    # room for the shape to grow while sliders move
    framing = shared_framing([start.mesh], margin=1.25)

    sliders = []
    for d in directions:
        tag = "id" if d.space == "identity" else "exp"
        desc = f"{tag} {d.index}" + (f" ({d.match})" if d.match else "")
        sliders.append(w.FloatSlider(
            value=0.0, min=-float(value_range), max=float(value_range), step=float(step), description=desc,
            continuous_update=bool(continuous_update), readout_format="+.2f",
            style={"description_width": "160px"}, layout=w.Layout(width="460px"),
        ))  # fmt: skip
    image = w.Image(format="png", width=size, height=size)
    status = w.HTML()
    reset_btn = w.Button(description="reset", layout=w.Layout(width="80px"))
    box = w.VBox([w.HBox([image, w.VBox([*sliders, reset_btn])]), status])

    def latents() -> "Latents":
        z_id, z_exp = base.z_id.clone(), base.z_exp.clone()
        for s, d in zip(sliders, directions):
            if s.value:
                target = z_id if d.space == "identity" else z_exp
                target += float(s.value) * d.std * d.vector.to(target)
        return Latents(z_id, z_exp)

    def update(_change: Any = None) -> None:
        try:
            rec = decode_latents(model, latents(), threshold=threshold, **grid)[0]
        except VoxfaceError as e:  # e.g. an empty grid far out in latent space
            status.value = f"<span style='color:#a00'>{_html_escape(str(e))}</span>"
            return
        box.reconstruction = rec
        img = render_sequence([rec.mesh], [(yaw, pitch)], size, framing=framing)[0][0]
        image.value = png_bytes(img)
        box.redraws += 1
        occ = float((rec.logits > level).mean())  # the cells inside the surface drawn (at `threshold`)
        status.value = (f"{len(rec.mesh.vertices)} vertices, watertight={rec.mesh.is_watertight}, "
                        f"occupied {occ:.1%} of the grid")

    def reset(_btn: Any = None) -> None:
        for s in sliders:  # one redraw, not one per slider
            s.unobserve(update, names="value")
            s.value = 0.0
            s.observe(update, names="value")
        update()

    for s in sliders:
        s.observe(update, names="value")
    reset_btn.on_click(reset)
    box.sliders, box.directions, box.image, box.status = sliders, directions, image, status
    box.base, box.latents, box.update, box.reset = base, latents, update, reset
    box.reconstruction, box.redraws = start, 0
    update()
    return box


def _html_escape(s: str) -> str:
    import html

    return html.escape(s)
