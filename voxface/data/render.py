"""Ray-cast renders of posed faces (CPU), backgrounds and photometric corruption.

Camera: a pinhole in the OpenCV convention (:mod:`voxface.frame`), at the origin of the camera
frame. Only the rays of the crop are cast: the crop is a square window of the normalised image
plane (``x/z``, ``y/z``), so a render *is* a detector-style crop with no resampling.

First hits: every ray starts at the camera centre, so ray casting is rasterization. The
:class:`Rasterizer` tests each (projected) triangle against the pixel samples in its bounding box
and keeps the nearest hit, with perspective-correct depth and barycentrics: the hits open3d's
Embree ray caster (:class:`RayScene`, the reference of the tests) returns, without building a BVH
for every mesh, which cost more than casting the rays. Pure numpy on one thread, so a render's
bits do not depend on thread counts and worker processes do not oversubscribe the cores.

Anti-aliasing is edge-adaptive (:func:`render_crop`): one ray per pixel centre, then an
``ss x ss`` grid of rays (the pattern of plain ``ss``-fold supersampling) only in the pixels next
to a discontinuity of coverage, material, depth or colour (about an eighth of a face crop's
pixels). Inside smooth regions the centre sample equals the supersampled mean up to a
second-order term, so the image matches full supersampling at about 40 % of the rays. Rays are
averaged in linear RGB, as a sensor integrates light over a pixel (an average of sRGB values
darkens every high-contrast edge: half a pixel of skin, sRGB 0.8, over black is 0.59, not 0.4).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

#: skimage images used as real-photo backgrounds (no faces in them but the cameraman's of
#: ``camera``, in profile: a crop of the photo can show it beside the rendered face).
BACKGROUND_IMAGES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "brick", "grass", "gravel", "coins", "moon", "page", "text", "camera")

#: edge detection of :func:`render_crop`: a depth step of more than this many pixel footprints
#: between neighbouring centre samples (a surface steeper than ~72 degrees, or an occlusion) ...
DEPTH_JUMP_PIXELS = 3.0
#: ... or an sRGB step of more than this in any channel marks both pixels for supersampling.
COLOUR_JUMP = 0.12


@dataclass
class Lighting:
    """Ambient plus directional lights (directions point *towards* the light, camera frame)."""

    ambient: np.ndarray  # (3,) linear RGB
    directions: np.ndarray  # (L, 3)
    colours: np.ndarray  # (L, 3)
    specular: float
    shininess: float


def _face_cross_t(vt: np.ndarray, ft: np.ndarray) -> np.ndarray:
    """Unnormalised face normals ``(3, F)`` (twice the areas) of vertices ``(3, V)``, faces ``(3, F)``.

    Channel-first: every operation runs on contiguous rows."""
    p0, p1, p2 = (np.take(vt, ft[k], axis=1) for k in range(3))
    a, b = p1 - p0, p2 - p0
    return np.stack([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def vertex_face_incidence(num_vertices: int, faces: np.ndarray):
    """Sparse ``(V, F)`` float32 matrix with a 1 where a vertex belongs to a face (for normals)."""
    import scipy.sparse

    F = len(faces)
    return scipy.sparse.csr_matrix(
        (np.ones(3 * F, np.float32), (np.asarray(faces).ravel(), np.repeat(np.arange(F), 3))),
        shape=(num_vertices, F))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, incidence=None,
                   faces_t: np.ndarray | None = None) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` float32 (a view of channel-first storage).

    ``incidence`` (:func:`vertex_face_incidence` of ``faces``) and ``faces_t`` (``faces.T``,
    contiguous) save rebuilding them per call.
    """
    vt = np.ascontiguousarray(np.asarray(vertices, np.float32).T)
    ft = np.ascontiguousarray(np.asarray(faces).T) if faces_t is None else faces_t
    fn = _face_cross_t(vt, ft)  # (3, F)
    if incidence is None:
        incidence = vertex_face_incidence(vt.shape[1], faces)
    n = np.stack([incidence @ fn[c] for c in range(3)]).astype(np.float32, copy=False)  # (3, V)
    n *= 1 / np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).clip(1e-12)
    return n.T


@dataclass
class Hits:
    """First hits of the camera rays through the active samples of a ``G x G`` grid over a crop.

    Sample ``(i, j)`` lies at ``((j + 0.5) / G, (i + 0.5) / G)`` of the crop; only hits are listed.
    """

    sample: np.ndarray  # (n,) int64 linear sample index i * G + j
    prim: np.ndarray  # (n,) int64 hit triangle (row of the caster's faces)
    uv: np.ndarray  # (n, 2) float32 barycentrics of vertices 1 and 2 of the triangle (open3d's)
    depth: np.ndarray  # (n,) float64 z of the hit (camera frame)
    dirs: np.ndarray  # (n, 3) float32 unit ray directions


def _grid_dirs(box: np.ndarray, G: int, sample: np.ndarray) -> np.ndarray:
    """Unit directions ``(n, 3)`` float32 of the rays through linear samples of a ``G x G`` crop grid."""
    x0, y0, side = (float(b) for b in box)
    d = np.empty((len(sample), 3), np.float64)
    d[:, 0] = x0 + (sample % G + 0.5) * (side / G)
    d[:, 1] = y0 + (sample // G + 0.5) * (side / G)
    d[:, 2] = 1.0
    d /= np.sqrt((d * d).sum(1, keepdims=True))
    return d.astype(np.float32)


class Rasterizer:
    """Exact first hits of camera rays through a crop, by rasterizing the projected triangles.

    All rays start at the camera centre, so a ray through image-plane point ``q`` hits a triangle
    exactly when ``q`` lies in the triangle's projection (vertices in front of the camera); the
    hit depth and barycentrics follow from the perspective-correct interpolation of ``1 / z``. This
    gives what :class:`RayScene` (Embree) returns, without building a BVH per mesh: each triangle
    is tested against the grid samples inside its projected bounding box (a handful, as the
    triangles are about a pixel wide) and a depth test keeps the nearest. Pure numpy, one thread.

    Args:
        vertices: ``(V, 3)`` camera frame (``z > 0`` in front of the camera).
        faces: ``(F, 3)`` triangles; those seen from behind (``(p1 - p0) x (p2 - p0) . p0 >= 0``)
            are culled unless ``two_sided`` (``(F,)`` bool) marks them, as are degenerate ones.
        box: the crop ``(x0, y0, side)`` in normalised image-plane units (see :func:`pixel_rays`).
    """

    _EPS = 1e-10  # samples on an edge shared by two triangles belong to both: no cracks

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, box: np.ndarray, two_sided: np.ndarray | None = None):
        v = np.asarray(vertices, np.float64)
        self.box = np.asarray(box, np.float64)
        x0, y0, side = (float(b) for b in box)
        iz = 1.0 / v[:, 2]
        qx, qy = (v[:, 0] * iz - x0) / side, (v[:, 1] * iz - y0) / side  # crop units
        f0, f1, f2 = np.ascontiguousarray(np.asarray(faces).T)
        ax, ay = np.take(qx, f0), np.take(qy, f0)
        bx, by = np.take(qx, f1) - ax, np.take(qy, f1) - ay
        cx, cy = np.take(qx, f2) - ax, np.take(qy, f2) - ay
        # det = (p0 . n) / (z0 z1 z2): negative where the triangle faces the camera
        det = bx * cy - by * cx
        keep = det < -1e-14
        if two_sided is not None:
            keep |= two_sided & (det > 1e-14)
        behind = v[:, 2] <= 0
        if behind.any():  # not projectable (never the case for the synthetic faces)
            keep &= ~(np.take(behind, f0) | np.take(behind, f1) | np.take(behind, f2))
        k = np.flatnonzero(keep)
        self.ids = k
        ax, ay, bx, by, cx, cy = (np.take(a, k) for a in (ax, ay, bx, by, cx, cy))
        inv = 1.0 / np.take(det, k)
        # per triangle: vertex 0 and the barycentrics of vertices 1 and 2 as linear functions of the
        # offset (dx, dy) from it: l1 = m11 dx + m12 dy, l2 = m21 dx + m22 dy
        self.coef = np.stack([ax, ay, cy * inv, -cx * inv, -by * inv, bx * inv], 1)
        self.w = np.stack([np.take(iz, np.take(fk, k)) for fk in (f0, f1, f2)], 1)  # (n, 3) 1 / z of vertices
        zero = np.zeros_like(bx)
        self.xmin = ax + np.minimum(np.minimum(bx, cx), zero)
        self.xmax = ax + np.maximum(np.maximum(bx, cx), zero)
        self.ymin = ay + np.minimum(np.minimum(by, cy), zero)
        self.ymax = ay + np.maximum(np.maximum(by, cy), zero)

    def _candidates(self, t: np.ndarray, lox, loy, nx, ny, G: int, active: np.ndarray | None):
        """Samples inside triangles ``t``: triangle, sample, barycentrics l1, l2 (2D) and 1 / z."""
        nx, cnt = np.take(nx, t), np.take(nx, t) * np.take(ny, t)
        # candidate (triangle, sample) pairs, triangle-major
        fi = np.repeat(t, cnt)
        q, r = np.divmod(np.arange(len(fi), dtype=np.int32) - np.repeat(np.cumsum(cnt, dtype=np.int32) - cnt, cnt),
                         np.repeat(nx, cnt))
        ii = np.repeat(np.take(loy, t), cnt) + q
        jj = np.repeat(np.take(lox, t), cnt) + r
        key = ii * G + jj
        if active is not None:
            a = np.flatnonzero(np.take(active, key))
            fi, ii, jj, key = (np.take(x, a) for x in (fi, ii, jj, key))
        c = np.take(self.coef, fi, axis=0)  # (m, 6); np.take: much faster than fancy indexing
        dx = (jj + 0.5) * (1.0 / G) - c[:, 0]
        dy = (ii + 0.5) * (1.0 / G) - c[:, 1]
        l1 = c[:, 2] * dx + c[:, 3] * dy
        l2 = c[:, 4] * dx + c[:, 5] * dy
        e = -self._EPS
        a = np.flatnonzero((l1 >= e) & (l2 >= e) & (l1 + l2 <= 1.0 - e))
        fi, l1, l2, key = (np.take(x, a) for x in (fi, l1, l2, key))
        w = np.take(self.w, fi, axis=0)
        w1, w2 = l1 * w[:, 1], l2 * w[:, 2]
        return fi, key, w1, w2, (1.0 - l1 - l2) * w[:, 0] + w1 + w2

    def hits(self, G: int, active: np.ndarray | None = None) -> Hits:
        """Nearest hits at the samples of a ``G x G`` grid (``active``: ``(G, G)`` bool, None: all)."""
        # samples (j + 0.5) / G inside each triangle's bounding box: columns lox..hix, rows loy..hiy
        lox = np.maximum(np.ceil(self.xmin * G - 0.5), 0).astype(np.int32)
        hix = np.minimum(np.floor(self.xmax * G - 0.5), G - 1).astype(np.int32)
        loy = np.maximum(np.ceil(self.ymin * G - 0.5), 0).astype(np.int32)
        hiy = np.minimum(np.floor(self.ymax * G - 0.5), G - 1).astype(np.int32)
        nx, ny = hix - lox + 1, hiy - loy + 1
        ok = (nx > 0) & (ny > 0)
        if active is not None:  # skip triangles with no active sample in their box (summed-area table)
            sat = np.zeros((G + 1, G + 1), np.int32)
            sat[1:, 1:] = np.cumsum(np.cumsum(active, 0, dtype=np.int32), 1, dtype=np.int32)
            sat = sat.ravel()
            lx, hx, ly, hy = (np.clip(a, 0, G - 1) for a in (lox, hix, loy, hiy))
            ly, hy = ly * (G + 1), (hy + 1) * (G + 1)
            ok &= (np.take(sat, hy + hx + 1) - np.take(sat, ly + hx + 1) - np.take(sat, hy + lx)
                   + np.take(sat, ly + lx)) > 0
            active = active.ravel()
        fi, key, w1, w2, iz = self._candidates(np.flatnonzero(ok).astype(np.int32), lox, loy, nx, ny, G, active)
        zbuf = np.zeros(G * G)
        np.maximum.at(zbuf, key, iz)  # nearest = largest 1 / z
        win = np.flatnonzero(iz == zbuf[key])
        owner = np.full(G * G, -1, np.int64)
        owner[key[win]] = win  # ties (a sample on a shared edge): the last candidate
        sample = np.flatnonzero(owner >= 0)
        c = owner[sample]
        izc = iz[c]
        uv = np.stack([w1[c] / izc, w2[c] / izc], 1).astype(np.float32)
        return Hits(sample, np.take(self.ids, np.take(fi, c)), uv, 1.0 / izc, _grid_dirs(self.box, G, sample))


class RayScene:
    """An open3d (Embree) ray-casting scene of one triangle mesh, built and cast on one thread."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, box: np.ndarray | None = None):
        import open3d as o3d

        self._o3d = o3d
        self.box = None if box is None else np.asarray(box, np.float64)
        self.scene = o3d.t.geometry.RaycastingScene(nthreads=1)
        self.scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)),
        )

    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        """First hits of ``rays (N, 6)``: ``t_hit`` (inf: miss), ``primitive_ids``, ``primitive_uvs``."""
        r = self.scene.cast_rays(self._o3d.core.Tensor(np.ascontiguousarray(rays, np.float32)), nthreads=1)
        return {k: r[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs")}

    def hits(self, G: int, active: np.ndarray | None = None) -> Hits:
        """:meth:`Rasterizer.hits` by ray casting through the crop ``box`` given at construction
        (the reference the rasterizer is tested against; faces are not culled here)."""
        sample = np.arange(G * G) if active is None else np.flatnonzero(active)
        dirs = _grid_dirs(self.box, G, sample)
        rays = np.concatenate([np.zeros_like(dirs), dirs], 1)
        r = self.cast(rays)
        h = np.isfinite(r["t_hit"])
        return Hits(sample[h], r["primitive_ids"][h].astype(np.int64), r["primitive_uvs"][h],
                    r["t_hit"][h].astype(np.float64) * dirs[h, 2], dirs[h])


def cast(vertices: np.ndarray, faces: np.ndarray, rays: np.ndarray) -> dict[str, np.ndarray]:
    """Cast ``rays (N, 6)`` (origin, direction) at a triangle mesh; numpy results of open3d."""
    return RayScene(vertices, faces).cast(rays)


def pixel_rays(box: np.ndarray, size: int, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Rays ``(N, 6)`` float32 from the camera centre through crop points ``(px, py)`` in pixels.

    ``box = (x0, y0, side)`` in normalised image-plane units (``x/z``, ``y/z``; x right, y down);
    pixel ``(i, j)`` of a ``size``-pixel crop spans ``[j, j + 1] x [i, i + 1]``. Directions are unit.
    """
    x0, y0, side = (float(b) for b in box)
    k = side / size
    d = np.empty((len(px), 3), np.float64)
    d[:, 0] = x0 + np.asarray(px, np.float64) * k
    d[:, 1] = y0 + np.asarray(py, np.float64) * k
    d[:, 2] = 1.0
    d /= np.sqrt((d * d).sum(1, keepdims=True))
    rays = np.zeros((len(d), 6), np.float32)
    rays[:, 3:] = d
    return rays


def crop_rays(box: np.ndarray, size: int) -> np.ndarray:
    """Rays ``(size*size, 6)`` from the camera centre through the pixel centres of a crop (row-major)."""
    c = np.arange(size) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return pixel_rays(box, size, xx.ravel(), yy.ravel())


def shade(prim: np.ndarray, uv: np.ndarray, view: np.ndarray, faces: np.ndarray, normals: np.ndarray,
          albedo: np.ndarray, light: Lighting) -> np.ndarray:
    """Blinn-Phong shading of ray hits: linear RGB ``(n, 3)`` float32.

    Args:
        prim: ``(n,)`` hit triangle (row of ``faces``); uv: ``(n, 2)`` its barycentrics (open3d's).
        view: ``(n, 3)`` unit vectors from the hit towards the camera (minus the ray direction).
        faces: ``(F, 3)``; normals, albedo: ``(V, 3)`` per-vertex unit normals and linear albedo.
    """
    # channel-first (3, n) arithmetic: contiguous rows instead of strided columns
    nt = np.ascontiguousarray(np.asarray(normals, np.float32).T)
    at = np.ascontiguousarray(np.asarray(albedo, np.float32).T)
    f = faces[prim]
    u, v = (np.ascontiguousarray(uv[:, k], np.float32) for k in (0, 1))
    w0 = 1 - u - v
    i0, i1, i2 = f[:, 0], f[:, 1], f[:, 2]
    n = np.take(nt, i0, axis=1) * w0 + np.take(nt, i1, axis=1) * u + np.take(nt, i2, axis=1) * v  # (3, n)
    a = np.take(at, i0, axis=1) * w0 + np.take(at, i1, axis=1) * u + np.take(at, i2, axis=1) * v
    vw = np.ascontiguousarray(np.asarray(view, np.float32).T)  # (3, n)
    n *= 1 / np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).clip(1e-9)
    nv = n[0] * vw[0] + n[1] * vw[1] + n[2] * vw[2]
    n *= np.where(nv < 0, np.float32(-1), np.float32(1))  # back faces (inside of the mouth)
    col = a * np.asarray(light.ambient, np.float32)[:, None]
    shininess = np.float32(light.shininess)
    for d, c in zip(np.asarray(light.directions, np.float32), np.asarray(light.colours, np.float32)):
        ndl = n[0] * d[0] + n[1] * d[1] + n[2] * d[2]
        h = vw + d[:, None]
        nh = (n[0] * h[0] + n[1] * h[1] + n[2] * h[2]) / np.sqrt(h[0] * h[0] + h[1] * h[1] + h[2] * h[2]).clip(1e-9)
        spec = np.clip(nh, 0, None) ** shininess * (ndl > 0) * np.float32(light.specular)
        ndl = np.clip(ndl, 0, None)
        col += (a * ndl + spec) * c[:, None]
    return col.T


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """sRGB encoding (IEC 61966-2-1) of linear RGB, clipped to ``[0, 1]`` first; dtype kept."""
    c = np.clip(c, 0, 1)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055).astype(c.dtype, copy=False)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3 x 3 binary dilation of a 2D mask."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    row = out.copy()
    out[:, 1:] |= row[:, :-1]
    out[:, :-1] |= row[:, 1:]
    return out


def _edge_pixels(material: np.ndarray, depth: np.ndarray, colour: np.ndarray, footprint: float) -> np.ndarray:
    """Pixels ``(S, S)`` to supersample, from the centre samples of a crop.

    Both pixels of a 4-neighbour pair are marked where coverage or material changes between them,
    where depth jumps by more than :data:`DEPTH_JUMP_PIXELS` pixel footprints (``footprint``: a
    pixel's width per unit depth) or where sRGB jumps by more than :data:`COLOUR_JUMP`. Material
    changes inside the face (eyes, lips, teeth) are widened by a pixel: features thinner than a
    pixel (the corner of an eye, teeth between lips) can fall between two centre samples.
    """
    edge = np.zeros(material.shape, bool)
    inner = np.zeros(material.shape, bool)
    colour = np.ascontiguousarray(np.moveaxis(colour, -1, 0))  # (3, S, S): contiguous planes
    for ax in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[ax], b[ax] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        ma, mb = material[a], material[b]
        za, zb = depth[a], depth[b]
        mat = ma != mb
        with np.errstate(invalid="ignore"):  # inf - inf between two misses: same material anyway
            step = mat | (np.abs(za - zb) > (DEPTH_JUMP_PIXELS * footprint) * np.minimum(za, zb))
        for c in colour:
            step |= np.abs(c[a] - c[b]) > COLOUR_JUMP
        edge[a] |= step
        edge[b] |= step
        mat &= (ma >= 0) & (mb >= 0)
        inner[a] |= mat
        inner[b] |= mat
    return edge | _dilate(inner)


def render_crop(caster, size: int, supersample: int,
                shade_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], material: np.ndarray,
                adaptive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased crop of a scene in linear RGB.

    Args:
        caster: the posed mesh and crop: ``caster.hits(G, active) -> Hits`` (:class:`Rasterizer`).
        size: ``S``, pixels per side of the crop.
        supersample: ``ss``: pixels near an edge average an ``ss x ss`` grid of rays (1: centres only).
        shade_fn: ``(triangle ids, uvs, unit ray directions) -> (n, 3)`` linear RGB of hits
            (:func:`shade`; values above 1 are averaged as they are, the caller clips the pixel).
        material: ``(F,)`` integer per triangle of the caster; a change between neighbours is an edge.
        adaptive: False supersamples every pixel (the reference the adaptive image approximates).

    Returns:
        Linear RGB ``(S, S, 3)`` premultiplied by coverage (the mean of the pixel's rays, misses
        black: composite over a background's linear RGB, then encode with :func:`linear_to_srgb`)
        and the coverage ``(S, S)``, both float32. Colour edges are found in sRGB
        (:data:`COLOUR_JUMP`).
    """
    S, ss = int(size), max(1, int(supersample))

    def trace(G: int, active: np.ndarray | None) -> tuple[Hits, np.ndarray, np.ndarray]:
        h = caster.hits(G, active)
        col = np.zeros((G * G, 3), np.float32)
        if h.prim.size:
            col[h.sample] = shade_fn(h.prim, h.uv, h.dirs)
        cov = np.zeros(G * G, np.float32)
        cov[h.sample] = 1
        return h, col, cov

    def pool(col: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # ss x ss box average
        return col.reshape(S, ss, S, ss, 3).mean((1, 3)), cov.reshape(S, ss, S, ss).mean((1, 3))

    if ss == 1 or not adaptive:
        _, col, cov = trace(S * ss, None)
        return pool(col, cov)
    h, col, cov = trace(S, None)
    mat = np.full(S * S, -1, np.int64)
    mat[h.sample] = material[h.prim]
    depth = np.full(S * S, np.inf)
    depth[h.sample] = h.depth
    edge = _edge_pixels(mat.reshape(S, S), depth.reshape(S, S), linear_to_srgb(col).reshape(S, S, 3),
                         float(caster.box[2]) / S).ravel()
    if edge.any():
        G = S * ss
        sub = caster.hits(G, np.repeat(np.repeat(edge.reshape(S, S), ss, 0), ss, 1))
        pix = (sub.sample // G // ss) * S + (sub.sample % G) // ss
        scol = shade_fn(sub.prim, sub.uv, sub.dirs) if sub.prim.size else np.zeros((0, 3), np.float32)
        k = 1.0 / (ss * ss)  # misses add nothing: black, no coverage
        col[edge] = np.stack([np.bincount(pix, scol[:, c], S * S)[edge] * k for c in range(3)], 1)
        cov[edge] = np.bincount(pix, None, S * S)[edge] * k
    return col.reshape(S, S, 3), cov.reshape(S, S)


@lru_cache(maxsize=None)
def _bg_image(name: str):
    """A background photo as an RGB ``PIL.Image`` (decoded once per process)."""
    import skimage.data
    from PIL import Image

    img = np.asarray(getattr(skimage.data, name)())
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    img = img.astype(np.uint8, copy=False)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(img[..., :3]), "RGB")


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(max(size - 1, 1))
    return yy, xx


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random sRGB background ``(size, size, 3)`` float32: flat, gradient, noise or photo crop."""
    kind = rng.choice(["flat", "gradient", "noise", "photo", "photo"])
    if kind == "flat":
        return np.broadcast_to(rng.uniform(0, 1, 3).astype(np.float32), (size, size, 3)).copy()
    if kind == "gradient":
        a, b = rng.uniform(0, 1, 3).astype(np.float32), rng.uniform(0, 1, 3).astype(np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = _unit_grid(size)
        t = np.float32(np.cos(ang)) * xx + np.float32(np.sin(ang)) * yy
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        return a + (b - a) * t[..., None]
    from PIL import Image, ImageFilter

    if kind == "noise":  # colour blobs: a k x k random grid, bilinearly enlarged and blurred, plus grain
        k = int(rng.integers(4, 16))
        base = (rng.uniform(0, 1, (k, k, 3)) * 255 + 0.5).astype(np.uint8)
        img = Image.fromarray(base, "RGB").resize((size, size), Image.Resampling.BILINEAR)
        img = img.filter(ImageFilter.GaussianBlur(radius=size / k / 2))
        x = np.asarray(img, np.float32) * np.float32(1 / 255)
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.03)
        return np.clip(x, 0, 1)

    img = _bg_image(str(rng.choice(BACKGROUND_IMAGES)))
    w, h = img.size
    s = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    # Pillow's bilinear filter widens with the reduction factor: an anti-aliased resize of the crop
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=(x, y, x + s, y + s))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, np.float32) * np.float32(1 / 255)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, blur, sensor noise and JPEG compression of an sRGB ``(S, S, 3)`` image."""
    from PIL import Image, ImageFilter

    x = np.asarray(img, np.float32)
    # colour: brightness b, offset o, contrast c about the mean, saturation s about the grey
    # level, white balance wb; composed into one affine map of the pixel and its grey level
    b, o = rng.uniform(0.75, 1.25), rng.uniform(-0.08, 0.08)
    c = rng.uniform(0.75, 1.25)
    s = rng.uniform(0.6, 1.3)
    wb = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    m = float(x.mean(dtype=np.float64)) * b + o  # mean after brightness
    k1, k0 = b * c, (o - m) * c + m  # brightness + contrast: x -> k1 x + k0
    g = x.mean(axis=2, keepdims=True)
    x = (x * np.float32(s * k1) + (g * np.float32((1 - s) * k1) + np.float32(k0))) * wb
    if rng.random() < 0.05:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)  # some photos are grey
    x = np.clip(x, 0, 1)
    pil = Image.fromarray((x * 255 + 0.5).astype(np.uint8))
    if rng.random() < 0.4:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    x = np.asarray(pil, np.float32) * np.float32(1 / 255)
    if rng.random() < 0.6:
        sigma = np.float32(rng.uniform(0.005, 0.04))
        x = np.clip(x + rng.standard_normal(x.shape, dtype=np.float32) * sigma, 0, 1)
    if rng.random() < 0.6:
        buf = io.BytesIO()
        Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(25, 95)))
        buf.seek(0)
        x = np.asarray(Image.open(buf).convert("RGB"), np.float32) * np.float32(1 / 255)
    return x.astype(np.float32, copy=False)
