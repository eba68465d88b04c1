"""Synthetic training data from ICT-FaceKit: renders, exact occupancy, landmarks, pairs.

Every sample is a pure function of ``(seed, index)``: all randomness comes from
``numpy.random.default_rng([seed, stream, key])`` with a fixed stream per factor, so a sample is
identical across machines, runs and worker counts. Persons are keyed by ``index // 2`` (samples
``2k`` and ``2k + 1`` share an identity, see :mod:`voxface.data` for the block layout), everything
else by ``index``.
"""

from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..crop import CROP_SCALE, crop_box_from_landmarks
from ..errors import ConfigError, InputTypeError
from ..frame import FRONTAL_ROTATION, HEAD_RMS_RADIUS_MM, Grid, euler_matrix
from ..occupancy import occupancy_grid
from . import check_seed, split_seed
from .appearance import Appearance, srgb_to_linear
from .head import HeadModel
from .ict import SUBMESHES, ICTModel, expression_mirror, load_ict
from .render import (Lighting, Rasterizer, background, linear_to_srgb, photometric, render_crop, shade,
                     vertex_face_incidence, vertex_normals)

if TYPE_CHECKING:  # pragma: no cover
    from ..config import FrameConfig

# random streams
_ID, _EXP, _POSE, _CAM, _LIGHT, _ALBEDO, _BG, _PHOTO, _PTS = range(9)

# sub-meshes that are drawn (transparent helper meshes of the eye rig are left out)
_RENDER_PARTS = ("face", "head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right",
                 "gums_and_tongue", "teeth", "eyeball_left", "eyeball_right", "eyelashes")


#: Half the width of the picture at the head centre's depth (mm): each sample's camera stands
#: ``FRAME_HALF_WIDTH_MM / tan(fov / 2)`` from the head's centre, so a head fills a similar share of
#: the frame whatever the field of view.
FRAME_HALF_WIDTH_MM = 170.0
#: Fields of view from here on (degrees) put that camera within ``FRAME_HALF_WIDTH_MM`` of the
#: head's centre: inside the head (its nose tip and ears lie 100-130 mm out).
MAX_FOV = 90.0


@dataclass
class SamplerConfig:
    """Ranges of the synthetic data (angles in degrees).

    Expressions (:meth:`FaceSampler.exp_coeffs`): a share ``neutral_share`` of the samples is
    neutral; the others draw ``k`` from 1 to ``max_expressions`` blendshapes (0: every face is
    neutral), each with weight ``w * U(0.85, 1.15)`` clipped to 1, ``w ~ U(0.3, 1)`` (so from 0.255
    to 1, 5 % of them exactly 1), and a blendshape with a mirror (``_L``/``_R``) brings its mirror
    along in a share ``symmetric_share`` of draws (the same ``w``, its own ``U(0.85, 1.15)``), so a
    face can have ``max_expressions + 1`` non-zero weights (measured at the defaults: 15 % neutral,
    6 % with 5). Identity coefficients are ``N(0, id_temperature^2)`` per mode.
    """

    image_size: int = 128
    supersample: int = 2  # pixels at edges (silhouette, material, depth, colour) average ss x ss rays
    id_temperature: float = 1.0
    neutral_share: float = 0.15
    max_expressions: int = 4  # blendshapes drawn (a mirrored pair adds one: see above)
    symmetric_share: float = 0.5
    yaw: float = 60.0
    pitch: float = 25.0
    roll: float = 15.0
    fov: tuple[float, float] = (10.0, 45.0)
    crop_jitter: float = 0.05  # crop centre jitter, fraction of the crop side
    crop_scale_jitter: float = 0.08  # relative jitter of the crop side
    photometric: bool = True


@dataclass
class SyntheticDataConfig:
    """The ``data:`` section for ``kind: synthetic`` (renders made on the fly).

    ``num_train`` / ``num_val`` are the split lengths (rounded down to a multiple of 4; ``num_val``
    0: no validation); the validation split uses seed ``seed + val_seed_offset``; ``sampler``
    holds :class:`SamplerConfig` keys (its ``image_size`` defaults to the model's crop size);
    ``ict_root`` is the ICT-FaceKit folder (default ``$VOXFACE_ICT_ROOT``). ``path`` is a
    ``kind: cache`` key, accepted and unused, so a config inheriting a cache config can switch
    to synthetic data by ``kind`` alone. Other keys are refused (a typo such as ``num_trian``
    trained on the default length without a word).
    """

    kind: str = "synthetic"
    seed: int = 0
    val_seed_offset: int = 1_000_003
    num_train: int = 4096
    num_val: int = 4096
    sampler: Any = None
    ict_root: str | None = None
    path: str | None = None


def check_sampler_config(cfg: SamplerConfig, where: str = "sampler") -> SamplerConfig:
    """``cfg`` when its values can draw faces; else a one-line :class:`ConfigError` naming
    ``where.<key>`` (``data.sampler.<key>`` in a training config). Checked when a sampler or a
    dataset is built: ``max_expressions: -1`` failed in numpy's 'low >= high' at the first sample
    (in a loader or cache worker), a field of view of 0 in a NaN landmark error, one of 180
    degrees or more drew cameras behind the head (and one of 90 or more, :data:`MAX_FOV`, stood
    the camera inside it: a crop of the inside of the nose, scale 0.004, at 150), and a
    ``supersample`` of 0 or 1.5 rendered as 1 (no anti-aliasing)."""
    def whole(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not whole(cfg.image_size) or cfg.image_size < 1:  # 0 was a ZeroDivisionError in the rasterizer
        raise ConfigError(f"{where}.image_size {cfg.image_size!r} must be a whole number of pixels, at least 1")
    if not whole(cfg.supersample) or cfg.supersample < 1:  # the renderer took 0 and 1.5 for 1 without a word
        raise ConfigError(f"{where}.supersample {cfg.supersample!r} must be a whole number of rays per pixel side, "
                          "at least 1 (1: no anti-aliasing)")
    if not whole(cfg.max_expressions) or cfg.max_expressions < 0:
        raise ConfigError(f"{where}.max_expressions {cfg.max_expressions!r} must be a whole number, 0 or more "
                          "(0: every face neutral)")
    for key in ("neutral_share", "symmetric_share"):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ConfigError(f"{where}.{key} {v!r} must be a share from 0 to 1")
    fov = tuple(cfg.fov) if isinstance(cfg.fov, (list, tuple)) else ()
    if len(fov) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in fov) \
            or not 0 < fov[0] <= fov[1] < MAX_FOV:
        raise ConfigError(f"{where}.fov {cfg.fov!r} must be [low, high], the range of the camera's field of view "
                          f"in degrees, with 0 < low <= high < {MAX_FOV:g} (the camera stands "
                          f"{FRAME_HALF_WIDTH_MM:g} / tan(fov / 2) mm from the head's centre: from {MAX_FOV:g} "
                          "degrees on, inside the head)")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)

    # a negative angle was numpy's 'high - low < 0' at the first sample (in a loader or cache worker)
    # and NaN its OverflowError; a NaN or infinite jitter or temperature drew NaN faces and crops
    # (empty masks, NaN poses) without a word, and a centre jitter over half the side moved the face out
    for key in ("yaw", "pitch", "roll"):
        v = getattr(cfg, key)
        if not number(v) or not 0 <= v <= 180:
            raise ConfigError(f"{where}.{key} {v!r} must be an angle in degrees from 0 to 180 (angles are drawn "
                              f"uniformly from -{key} to +{key})")
    if not number(cfg.crop_jitter) or not 0 <= cfg.crop_jitter <= 0.5:
        raise ConfigError(f"{where}.crop_jitter {cfg.crop_jitter!r} must be a share of the crop side from 0 to 0.5 "
                          "(more moves the face's centre out of the crop)")
    for key, what in (("crop_scale_jitter", "the relative jitter of the crop side"),
                      ("id_temperature", "the identity coefficients' standard deviation")):
        v = getattr(cfg, key)
        if not number(v) or v < 0:
            raise ConfigError(f"{where}.{key} {v!r} must be a finite number, 0 or more ({what})")
    return cfg


def _rng(seed: int, stream: int, key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, stream, int(key)])



@dataclass
class Camera:
    """A pinhole camera (unit focal length, OpenCV axes) and the square crop a sample is framed in.

    Attributes:
        rotation: ``(3, 3)`` canonical frame to camera frame.
        translation: ``(3,)`` mm; a canonical point ``X`` is at ``rotation @ X + translation``.
        euler: ``(3,)`` yaw, pitch, roll (degrees) the rotation was drawn as.
        box: ``(x0, y0, side)`` of the crop on the image plane ``(x / z, y / z)``.
        center: ``(2,)`` the crop's centre on the image plane (``box[:2] + side / 2``, as drawn).
    """

    rotation: np.ndarray
    translation: np.ndarray
    euler: np.ndarray
    box: np.ndarray
    center: np.ndarray

    def to_crop(self, camera_points: np.ndarray, image_size: int) -> np.ndarray:
        """Camera-frame points ``(N, 3)`` (mm) to crop pixels ``(N, 2)`` (x right, y down; pixel
        ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``)."""
        p = np.asarray(camera_points, np.float64)
        return (p[:, :2] / p[:, 2:3] - self.box[:2]) / self.box[2] * image_size


#: How the renderer anti-aliases: an edge pixel's rays are averaged, and composited over the
#: background, in linear light (before f703d00: in sRGB, which darkened every edge). Data caches
#: (format 4) and exports (``antialias``) record it, so samples of the two renderers are never mixed.
ANTIALIAS = "linear"


class FaceSampler:
    """Draws synthetic faces and their targets.

    Args:
        ict: the morphable model, or the path of an ICT-FaceKit folder to load it from (default:
            :func:`voxface.data.ict.load_ict` from the environment, ``$VOXFACE_ICT_ROOT``).
        cfg: :class:`SamplerConfig`.
        seed: the dataset seed; ``(seed, index)`` determines a sample completely.
        transparent_cornea: leave out the cornea of each eye (:func:`voxface.data.appearance.cornea_vertices`)
            so the iris and pupil show. ICT-FaceKit's sclera is a closed shell over the iris: drawn
            opaque (False, the default, what caches of format 2 and the shipped model's
            evaluation were rendered with) every eye is a blank white ball without iris, and the
            cornea's bulge pokes through closed eyelids.
    """

    def __init__(self, ict: ICTModel | str | os.PathLike | None = None, cfg: SamplerConfig | None = None,
                 seed: int = 0, transparent_cornea: bool = False):
        self.seed = check_seed(seed)
        if ict is None or isinstance(ict, (str, os.PathLike)):  # FaceSampler("/data/ICT-FaceKit"): a bare
            ict = load_ict(ict)  # AttributeError ('str' object has no attribute 'faces') before
        elif not isinstance(ict, ICTModel):
            raise InputTypeError(f"ict must be an ICTModel (voxface.data.ict.load_ict(path)) or the path of an "
                                 f"ICT-FaceKit folder, not {type(ict).__name__}")
        self.ict = ict
        self.head = HeadModel(self.ict)
        self.cfg = check_sampler_config(cfg or SamplerConfig())
        V = self.ict.num_vertices
        keep = np.zeros(V, bool)
        for p in _RENDER_PARTS:
            a, b = SUBMESHES[p]
            keep[a:b] = True
        self.appearance = Appearance(self.ict, self.head.full_vertices(None, None))
        self.render_faces = self.ict.faces[keep[self.ict.faces].all(1)]
        self.transparent_cornea = bool(transparent_cornea)
        if self.transparent_cornea:  # the irises show through
            self.render_faces = self.render_faces[~self.appearance.cornea[self.render_faces].all(1)]
        lo, hi = SUBMESHES["eyelashes"]
        self._open_faces = (self.render_faces >= lo).all(1) & (self.render_faces < hi).all(1)
        mirror = expression_mirror(list(self.ict.expression_names))
        self._mirror = {i: int(j) for i, j in enumerate(mirror) if j != i}
        self._incompatible = {frozenset(p) for p in self.ict.incompatible}
        # per-worker constants of the renderer: vertex-face incidence (vertex normals) and a material
        # id per render triangle (sub-mesh and albedo region: a change between pixels is an edge)
        self._incidence = vertex_face_incidence(V, self.render_faces)
        part = np.zeros(V, np.int64)
        for k, p in enumerate(_RENDER_PARTS):
            a, b = SUBMESHES[p]
            part[a:b] = k
        self._material = (part * 8 + self.appearance.region.astype(np.int64))[self.render_faces].max(1)
        self._render_faces_t = np.ascontiguousarray(self.render_faces.T)
        # the two samples of a person (index 2k, 2k + 1) share its mesh basis product and albedo
        self._persons: dict[bytes, Any] = {}
        self._albedos: dict[tuple[int, int], np.ndarray] = {}

    # -- parameters ------------------------------------------------------------------------------
    def id_coeffs(self, index: int) -> np.ndarray:
        """Identity coefficients ``(100,)`` of the person of sample ``index`` (key ``index // 2``)."""
        rng = _rng(self.seed, _ID, index // 2)
        return (rng.standard_normal(self.ict.identity.shape[0]) * self.cfg.id_temperature).astype(np.float32)

    def exp_coeffs(self, index: int) -> np.ndarray:
        """Sparse expression coefficients ``(53,)`` in [0, 1], respecting incompatible pairs."""
        rng = _rng(self.seed, _EXP, index)
        n = len(self.ict.expression_names)
        e = np.zeros(n, np.float32)
        if rng.random() < self.cfg.neutral_share or self.cfg.max_expressions == 0:
            return e
        k = int(rng.integers(1, self.cfg.max_expressions + 1))
        for j in rng.permutation(n)[: 3 * k]:
            if np.count_nonzero(e) >= k:
                break
            picks = [int(j)]
            if j in self._mirror and rng.random() < self.cfg.symmetric_share:
                picks.append(self._mirror[int(j)])
            active = set(np.flatnonzero(e).tolist())
            if any(frozenset((p, a)) in self._incompatible for p in picks for a in active | set(picks) if p != a):
                continue
            w = rng.uniform(0.3, 1.0)
            for p in picks:
                e[p] = np.clip(w * rng.uniform(0.85, 1.15), 0, 1)
        return e

    # -- per-person caches (a pure function of the key: results do not depend on call order) ---
    def _person(self, a: np.ndarray):
        """``HeadModel.person(a)``; the last two persons are kept (samples 2k, 2k + 1 share one)."""
        key = np.ascontiguousarray(a, np.float32).tobytes()
        p = self._persons.get(key)
        if p is None:
            p = self.head.person(a)
            if len(self._persons) >= 2:
                self._persons.pop(next(iter(self._persons)))
            self._persons[key] = p
        return p

    def _albedo(self, index: int) -> np.ndarray:
        """Linear albedo ``(V, 3)`` of the person of sample ``index`` (read-only, cached like persons)."""
        key = (self.seed, index // 2)
        al = self._albedos.get(key)
        if al is None:
            al = self.appearance.albedo(_rng(self.seed, _ALBEDO, index // 2))
            al.flags.writeable = False
            if len(self._albedos) >= 2:
                self._albedos.pop(next(iter(self._albedos)))
            self._albedos[key] = al
        return al

    # -- one sample ------------------------------------------------------------------------------
    def camera(self, index: int, verts: np.ndarray) -> tuple["Camera", np.ndarray]:
        """The camera and crop of sample ``index`` for a face with canonical vertices ``verts
        (V, 3)`` (mm; the crop is framed on their 68 landmarks), and those vertices in the camera
        frame ``(V, 3)`` (mm, OpenCV axes). A pure function of ``(seed, index)`` and ``verts``."""
        cfg = self.cfg
        prng = _rng(self.seed, _POSE, index)
        yaw, pitch, roll = (prng.uniform(-a, a) for a in (cfg.yaw, cfg.pitch, cfg.roll))
        R = FRONTAL_ROTATION @ euler_matrix(yaw, pitch, roll)
        crng = _rng(self.seed, _CAM, index)
        fov = crng.uniform(*cfg.fov)
        dist = FRAME_HALF_WIDTH_MM / np.tan(np.radians(fov) / 2)  # the head fills a similar share of the frame
        t = np.array([crng.normal(0, 0.05) * dist, crng.normal(0, 0.05) * dist, dist])
        cam = verts @ R.T + t
        lm = cam[self.ict.landmarks]
        lm2 = lm[:, :2] / lm[:, 2:3]
        box = crop_box_from_landmarks(lm2, CROP_SCALE)
        side = box[2] * np.exp(crng.uniform(-1, 1) * cfg.crop_scale_jitter)
        cx = box[0] + box[2] / 2 + crng.uniform(-1, 1) * cfg.crop_jitter * side
        cy = box[1] + box[2] / 2 + crng.uniform(-1, 1) * cfg.crop_jitter * side
        box = np.array([cx - side / 2, cy - side / 2, side])
        return Camera(R, t, np.array([yaw, pitch, roll]), box, np.array([cx, cy])), cam

    def render(self, index: int, verts: np.ndarray) -> dict[str, Any]:
        """Render sample ``index`` of a face with canonical vertices ``verts (V, 3)`` (mm):
        the crop, its mask, landmarks and pose."""
        cfg = self.cfg
        S, ss = cfg.image_size, cfg.supersample
        camera, cam = self.camera(index, verts)
        R, t, box = camera.rotation, camera.translation, camera.box
        yaw, pitch, roll = camera.euler
        dist, side = t[2], box[2]
        cx, cy = camera.center
        lm2 = cam[self.ict.landmarks, :2] / cam[self.ict.landmarks, 2:3]

        # First hits by rasterizing the triangles (exact ray casting from the camera centre):
        # faces turned away from the camera are culled, as they are never the first hit on these
        # closed, outward-wound surfaces (eyelash strips are open and always kept).
        f = self.render_faces
        cam32 = cam.astype(np.float32)
        raster = Rasterizer(cam, f, box, two_sided=self._open_faces)
        lrng = _rng(self.seed, _LIGHT, index)
        nl = int(lrng.integers(1, 3))
        dirs = []
        for _ in range(nl):  # lights in front of the face, towards the camera (-z in camera frame)
            d = np.array([lrng.uniform(-1, 1), lrng.uniform(-1, 0.6), -lrng.uniform(0.3, 1.0)])
            dirs.append(d / np.linalg.norm(d))
        tint = lambda: lrng.uniform(0.85, 1.0, 3)  # noqa: E731
        light = Lighting(
            ambient=lrng.uniform(0.15, 0.45) * tint(),
            directions=np.array(dirs),
            colours=np.array([lrng.uniform(0.5, 1.0) * tint() for _ in range(nl)]) / np.sqrt(nl),
            specular=float(lrng.uniform(0.0, 0.25)),
            shininess=float(lrng.uniform(8, 40)),
        )
        albedo = self._albedo(index)
        normals = vertex_normals(cam32, f, self._incidence, self._render_faces_t)

        def shade_linear(prim: np.ndarray, uv: np.ndarray, dirs: np.ndarray) -> np.ndarray:
            return shade(prim, uv, -dirs, f, normals, albedo, light)

        # rgb: linear, premultiplied by coverage (edge pixels average ss x ss rays, misses black).
        # Composited over the (sRGB) background in linear light, as a camera's pixel integrates it:
        # averaging sRGB values darkened every anti-aliased edge (a dark rim around the face).
        rgb, m = render_crop(raster, S, ss, shade_linear, self._material)
        bg = background(_rng(self.seed, _BG, index), S)
        cov = m[..., None]
        img = np.where(cov > 0, linear_to_srgb(rgb + srgb_to_linear(bg) * (1 - cov)), bg)
        if cfg.photometric:
            img = photometric(img, _rng(self.seed, _PHOTO, index))
        half = side / 2
        o = t / t[2]
        pose_t = np.array([(o[0] - cx) / half, (o[1] - cy) / half])
        lm_px = (lm2 - box[:2]) / side * S
        return {
            "image": np.ascontiguousarray(np.clip(img, 0, 1).transpose(2, 0, 1), dtype=np.float32),
            "mask": (m > 0.5).astype(np.uint8),
            "rotation": R.astype(np.float32),
            "scale": np.float32(HEAD_RMS_RADIUS_MM / dist / half),
            "translation": pose_t.astype(np.float32),
            "euler": np.array([yaw, pitch, roll], np.float32),
            "landmarks_2d": lm_px.astype(np.float32),
            "landmarks_3d": verts[self.ict.landmarks].astype(np.float32),
        }

    def occupancy(self, closed_head: np.ndarray, grid: Grid) -> np.ndarray:
        """Exact occupancy ``(R, R, R)`` uint8 of closed-head vertices (canonical mm) on ``grid``."""
        return occupancy_grid(closed_head, self.head.faces, grid, rule=self.head.occupancy_rule)

    def surface_points(self, index: int, closed_head: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` points and normals on a closed head (canonical mm) and a face-region flag
        (trimesh's area-weighted surface sampling)."""
        import trimesh

        mesh = trimesh.Trimesh(closed_head, self.head.faces, process=False, validate=False)
        pts, fid = trimesh.sample.sample_surface(mesh, n, seed=int(_rng(self.seed, _PTS, index).integers(2**31)))
        # plain arrays: trimesh's TrackedArray stayed one through astype (torch's default_convert,
        # a DataLoader without batching, passed it on as it is instead of a tensor)
        return (np.array(pts, np.float32), np.array(mesh.face_normals[fid], np.float32),
                self.head.face_region[fid].astype(np.uint8))

    def sample(self, index: int, resolution: int | None = 64, frame: FrameConfig | None = None, *,
               swap: bool = True, n_points: int = 0) -> dict[str, Any]:
        """Everything for sample ``index`` (keys of :mod:`voxface.data`, plus landmarks etc.).

        Args:
            index: sample index; the block layout of :mod:`voxface.data` applies.
            resolution: occupancy grid resolution (None: no occupancy).
            frame: :class:`voxface.config.FrameConfig` of the grid (default: the canonical cube).
            swap: also compute ``occ_swap`` (identity of ``index``, expression of ``index ^ 2``).
            n_points: number of surface points/normals to sample (0: none).
        """
        from ..config import FrameConfig

        try:
            i = operator.index(index)
        except TypeError:
            i = -1
        if isinstance(index, bool) or i < 0:  # a negative index was a ValueError deep inside numpy's seeding
            raise IndexError(f"sample index {index!r} must be a whole number, 0 or more")
        index = i
        a = self.id_coeffs(index)
        e = self.exp_coeffs(index)
        person = self._person(a)
        out = self.render(index, person.full_vertices(e))
        out.update(id_coeffs=a, exp_coeffs=e, identity=np.int64(index // 2), index=np.int64(index))
        closed = person.closed_head(e)
        if resolution:
            grid = Grid.from_config(frame or FrameConfig(), resolution)
            out["occ"] = self.occupancy(closed, grid)
            if swap:
                out["occ_swap"] = self.occupancy(person.closed_head(self.exp_coeffs(index ^ 2)), grid)
        if n_points:
            p, nrm, face = self.surface_points(index, closed, n_points)
            out.update(points=p, normals=nrm, points_face=face)
        return out


class SyntheticDataset:
    """A map-style dataset rendering ICT-FaceKit samples on the fly (one sampler per worker).

    Items follow the layout of :mod:`voxface.data`. On a 2-core machine prefer the cached dataset
    (``voxface data cache``); on-the-fly generation is for machines with many cores.
    """

    def __init__(self, n: int, seed: int, resolution: int, frame: FrameConfig | None = None,
                 sampler_cfg: SamplerConfig | None = None,
                 ict_root: str | None = None, n_points: int = 0, keys: tuple[str, ...] | None = None):
        self.n, self.seed, self.resolution, self.frame = int(n), check_seed(seed), int(resolution), frame
        self.sampler_cfg = sampler_cfg or SamplerConfig()
        self.ict_root, self.n_points, self.keys = ict_root, n_points, keys
        self._sampler: FaceSampler | None = None

    @classmethod
    def from_config(cls, data_cfg: dict, split: str, model_cfg: Any) -> "SyntheticDataset":
        from ..config import from_dict

        if split not in ("train", "val"):  # 'Train' or 'test' was the validation split without a word
            raise ConfigError(f"unknown split {split!r}; use 'train' or 'val'")
        cfg = from_dict(SyntheticDataConfig, data_cfg, "data")
        sampler = cfg.sampler
        if sampler is not None and not isinstance(sampler, dict):
            raise ConfigError(f"data.sampler must be a mapping of sampler settings, got {type(sampler).__name__} "
                              f"{sampler!r}")
        scfg = from_dict(SamplerConfig, {"image_size": model_cfg.encoder.image_size, **(sampler or {})}, "data.sampler")
        check_sampler_config(scfg, "data.sampler")  # when the dataset is built, not at its first item
        if scfg.image_size != model_cfg.encoder.image_size:  # failed at the first step, the run folder begun
            raise ConfigError(f"data.sampler.image_size {scfg.image_size} differs from model.encoder.image_size "
                              f"{model_cfg.encoder.image_size}, the crops the model reads: leave it out (it is the "
                              "model's)")
        seed = split_seed(cfg.seed, cfg.val_seed_offset, split)
        key = "num_train" if split == "train" else "num_val"
        n = getattr(cfg, key)
        if n < 4 and split == "train":  # rounded down to no item: an IndexError traceback in the trainer
            raise ConfigError(f"data.{key} {n} must be at least 4 (a synthetic dataset's length is rounded down "
                              "to a multiple of 4)")
        if n < 0:  # a negative length: Python's '__len__() should return >= 0' at the first len()
            raise ConfigError(f"data.{key} {n} must be >= 0 (0: no validation)")
        if 0 < n < 4:  # rounded down to 0: validation turned off without a word (cache, folder and toy refuse it)
            raise ConfigError(f"data.{key} {n}: a synthetic dataset's length is rounded down to a multiple of 4, so "
                              "it keeps none of the val split; give at least 4, or 0 for no validation")
        return cls(n - n % 4, seed, model_cfg.decoder.resolution, model_cfg.frame, scfg, cfg.ict_root)

    @property
    def sampler(self) -> FaceSampler:
        if self._sampler is None:
            self._sampler = FaceSampler(load_ict(self.ict_root), self.sampler_cfg, self.seed)
        return self._sampler

    def __getstate__(self) -> dict[str, Any]:
        # pickled without its sampler (the parsed ICT model, ~50 MB): a spawn or forkserver DataLoader
        # worker builds its own at its first item (one sampler per worker); samples depend only on
        # (seed, index), so they are the same
        return {**self.__dict__, "_sampler": None}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for a synthetic dataset of {self.n}")
        s = self.sampler.sample(index, self.resolution, self.frame, n_points=self.n_points)
        if self.keys:
            s = {k: s[k] for k in self.keys}
        return s
