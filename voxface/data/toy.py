"""Toy data: analytic ellipsoid "heads" with cheap renders, for tests, notebooks and quick runs.

No files are needed. A toy head is an ellipsoid with a nose and a tapered chin, deformed by a few
expression parameters; its occupancy is computed analytically on the canonical grid
(:class:`voxface.frame.Grid`) and its image is ray-marched from the same implicit function, so the
image, the pose fields and the occupancy always agree.

Identity coefficients ``id_coeffs (4,)`` (each about ``N(0, 1)``, clipped to ``[-2.5, 2.5]``):

=====  ==============================================================================
index  effect
=====  ==============================================================================
0      width against height (x radius up, y radius down)
1      depth (z radius)
2      nose length
3      chin taper (narrower lower face)
=====  ==============================================================================

The neutral head is scaled so that ``sqrt((a^2 + b^2 + c^2) / 3)`` (the RMS radius of a sphere
for a sphere, close to it for these ellipsoids) equals :data:`voxface.frame.HEAD_RMS_RADIUS_MM`:
like real voxface data, absolute size is not part of identity. Skin, hair and iris colours are
also drawn per identity, so the same person looks the same in both of their samples.

Expression coefficients ``exp_coeffs (3,)``:

=====  ==================  ==============================================================
index  range               effect
=====  ==================  ==============================================================
0      ``[0, 1]``          jaw open: the lower half stretches down (up to +25 %), the
                           mouth opens in the image
1      ``[-1, 1]``         smile / cheek puff: the lower face widens (up to +/-14 %), the
                           mouth widens
2      ``[-1, 1]``         brow raise: the upper half stretches (up to +/-8 %), brows move
=====  ==================  ==============================================================

Every item is a pure function of ``(seed, index)``: identity from ``(seed, index // 2)``,
expression, pose, light and background from ``(seed, index)``. Items follow the block layout of
:mod:`voxface.data` (``index ^ 1`` same person, ``occ_swap`` = own identity with the expression of
``index ^ 2``). An item takes a few milliseconds at 64 px / 32^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ModelConfig, from_dict, model_config
from ..errors import ConfigError
from ..frame import FRONTAL_ROTATION, HEAD_RMS_RADIUS_MM, Grid, euler_matrix
from ..occupancy import unpack_occupancy
from . import BLOCK, check_seed, split_seed

N_ID = 4
N_EXP = 3

#: Ray-marching step (mm); the crossing is then found by linear interpolation.
_MARCH_STEP_MM = 8.0


@dataclass
class ToyDataConfig:
    """The ``data:`` section for ``kind: toy``.

    ``num_train`` / ``num_val`` are dataset lengths (multiples of 4; ``num_val`` 0: no validation, as
    for the other kinds); the val split uses seed
    ``seed + val_seed_offset`` so it shares no person with training. Angles are degrees
    (uniform in ``[-max, max]``); ``scale_jitter`` / ``shift_jitter`` perturb the framing
    (relative scale, crop-coordinate shift); ``noise`` is the pixel noise std (image in [0, 1]).
    ``cache: true`` keeps every generated item in memory (compactly, about 20 kB at 64 px /
    32^3), which makes later epochs free; leave it off for huge ``num_train``.
    """

    kind: str = "toy"
    num_train: int = 100_000
    num_val: int = 256
    seed: int = 0
    val_seed_offset: int = 1_000_003
    max_yaw: float = 45.0
    max_pitch: float = 20.0
    max_roll: float = 10.0
    scale: float = 0.62
    scale_jitter: float = 0.08
    shift_jitter: float = 0.06
    noise: float = 0.02
    cache: bool = False


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFF for k in key])


def sample_identity(seed: int, person: int) -> np.ndarray:
    """Identity coefficients ``(4,)`` float32 of toy person ``person``."""
    return np.clip(_rng(seed, person, 11).standard_normal(N_ID), -2.5, 2.5).astype(np.float32)


def sample_expression(seed: int, index: int) -> np.ndarray:
    """Expression coefficients ``(3,)`` float32 of toy sample ``index``."""
    r = _rng(seed, index, 12)
    jaw = r.uniform(0.0, 1.0) ** 1.5  # closed mouths are more common than wide open ones
    return np.array([jaw, r.uniform(-1, 1), r.uniform(-1, 1)], dtype=np.float32)


@dataclass(frozen=True)
class ToyHead:
    """Shape parameters (mm) of one neutral toy head, derived from identity coefficients."""

    a: float  # x radius
    b: float  # y radius
    c: float  # z radius
    nose: float  # nose length (mm, along z)
    taper: float  # relative narrowing of the x radius at the chin

    @classmethod
    def from_coeffs(cls, id_coeffs: np.ndarray) -> "ToyHead":
        k = np.asarray(id_coeffs, dtype=np.float64)
        a = 0.86 * np.exp(0.12 * k[0])
        b = 1.08 * np.exp(-0.08 * k[0])
        c = 1.00 * np.exp(0.10 * k[1])
        norm = HEAD_RMS_RADIUS_MM / np.sqrt((a * a + b * b + c * c) / 3.0)
        nose = 24.0 * np.exp(0.3 * k[2])
        taper = float(np.clip(0.18 + 0.1 * k[3], 0.0, 0.45))
        return cls(float(a * norm), float(b * norm), float(c * norm), float(nose), taper)


def _to_neutral(x: np.ndarray, y: np.ndarray, z: np.ndarray, e: np.ndarray, head: ToyHead):
    """Undo the expression: deformed canonical coordinates (mm) to neutral ones (same shapes)."""
    e0, e1, e2 = (float(v) for v in e)  # Python floats keep float32 arrays float32
    qy = y * np.where(y < 0, 1.0 / (1.0 + 0.25 * e0), 1.0 / (1.0 + 0.08 * e2)).astype(y.dtype)
    w = np.clip(qy * (-1.0 / head.b), 0.0, 1.0)
    qx = x / (1.0 + (0.14 * e1) * np.sin(np.pi * w))
    return qx, qy, z


def _neutral_field(x: np.ndarray, y: np.ndarray, z: np.ndarray, head: ToyHead) -> np.ndarray:
    """Implicit function of the neutral head at coordinates (mm): negative inside."""
    t = np.clip(y * (-1.0 / head.b), 0.0, 1.0)
    ax = head.a * (1.0 - head.taper * t * t)
    f_head = (x / ax) ** 2 + (y * (1.0 / head.b)) ** 2 + (z * (1.0 / head.c)) ** 2 - 1.0
    nz = 0.8 * head.c
    f_nose = (
        (x * (1.0 / (0.13 * head.a))) ** 2
        + ((y + 0.12 * head.b) * (1.0 / (0.24 * head.b))) ** 2
        + ((z - nz) * (1.0 / (head.nose + 0.2 * head.c))) ** 2
        - 1.0
    )
    return np.minimum(f_head, f_nose)


def _field(x: np.ndarray, y: np.ndarray, z: np.ndarray, e: np.ndarray, head: ToyHead) -> np.ndarray:
    return _neutral_field(*_to_neutral(x, y, z, e, head), head)


def _extent(e: np.ndarray, head: ToyHead) -> tuple[np.ndarray, np.ndarray]:
    """A box ``(lo, hi)`` (x, y, z mm) that contains the deformed head."""
    ax = head.a * (1.0 + 0.14 * abs(float(e[1]))) + 1.0
    lo = np.array([-ax, -head.b * (1.0 + 0.25 * float(e[0])) - 1.0, -head.c - 1.0])
    hi = np.array([ax, head.b * (1.0 + 0.08 * float(e[2])) + 1.0, head.c + head.nose + 1.0])  # nose tip
    return lo, hi


def toy_field(points: np.ndarray, id_coeffs: np.ndarray, exp_coeffs: np.ndarray) -> np.ndarray:
    """Implicit function of a toy head at canonical points ``(..., 3)`` (mm): ``< 0`` inside."""
    head = ToyHead.from_coeffs(id_coeffs)
    p = np.asarray(points, np.float64)
    return _field(p[..., 0], p[..., 1], p[..., 2], np.asarray(exp_coeffs, np.float64), head)


def toy_occupancy(grid: Grid, id_coeffs: np.ndarray, exp_coeffs: np.ndarray) -> np.ndarray:
    """Occupancy ``(R, R, R)`` uint8 (``(D, H, W) = (z, y, x)``) of a toy head on ``grid``.

    Exactly ``toy_field(grid.cell_centers(), ...) < 0``; only cells in the head's bounding box
    are evaluated.
    """
    head = ToyHead.from_coeffs(id_coeffs)
    e = np.asarray(exp_coeffs, np.float64)
    lo, hi = _extent(e, head)
    ax = grid.axis() + grid.origin[:, None]  # (3, R): x, y, z cell centres
    sl = []
    for d in range(3):
        idx = np.flatnonzero((ax[d] >= lo[d]) & (ax[d] <= hi[d]))
        sl.append(slice(idx[0], idx[-1] + 1) if idx.size else slice(0, 0))
    occ = np.zeros((grid.resolution,) * 3, np.uint8)
    xs, ys, zs = ax[0][sl[0]], ax[1][sl[1]], ax[2][sl[2]]
    if xs.size and ys.size and zs.size:
        f = _field(xs[None, None, :], ys[None, :, None], zs[:, None, None], e, head)
        occ[sl[2], sl[1], sl[0]] = f < 0
    return occ


def _appearance(seed: int, person: int) -> dict[str, np.ndarray]:
    r = _rng(seed, person, 13)
    tone = r.uniform(0.0, 1.0)
    skin = np.array([0.95, 0.78, 0.66]) * (1 - tone) + np.array([0.45, 0.3, 0.2]) * tone
    hair = r.uniform(0.05, 0.6) * np.array([1.0, r.uniform(0.6, 0.9), r.uniform(0.3, 0.7)])
    iris = r.uniform(0.1, 0.7, size=3)
    return {"skin": skin, "hair": hair, "iris": iris, "hairline": np.array(r.uniform(0.35, 0.6))}



def render_toy(
    id_coeffs: np.ndarray,
    exp_coeffs: np.ndarray,
    rotation: np.ndarray,
    scale: float,
    translation: np.ndarray,
    size: int,
    appearance: dict[str, np.ndarray],
    light: np.ndarray,
    background: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-march a toy head into a crop.

    Args:
        rotation: ``(3, 3)`` canonical -> OpenCV camera axes. ``scale``, ``translation (2,)``:
            :class:`voxface.models.Pose` fields (weak perspective, crop coordinates).
        size: crop side ``S`` in pixels. ``light``: ``(3,)`` unit direction towards the light,
            camera axes. ``background``: ``(S, S, 3)`` float image in [0, 1].

    Returns:
        ``image (S, S, 3)`` float32 in [0, 1] and ``mask (S, S)`` uint8.
    """
    head = ToyHead.from_coeffs(id_coeffs)
    e = np.asarray(exp_coeffs, np.float64)
    rot = np.asarray(rotation, np.float64)
    lo, hi = _extent(e, head)
    r_max = float(np.linalg.norm(np.maximum(-lo, hi)))  # bounding sphere about the origin
    mm_per_unit = HEAD_RMS_RADIUS_MM / scale  # crop units -> mm in the camera plane
    u = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    px, py = np.meshgrid((u - translation[0]) * mm_per_unit, (u - translation[1]) * mm_per_unit)
    cand = np.flatnonzero((px * px + py * py).ravel() < r_max * r_max)
    image = np.array(background, dtype=np.float32, copy=True)
    mask = np.zeros((size, size), np.uint8)
    if not cand.size:
        return image, mask
    cx = px.ravel()[cand].astype(np.float32)[:, None]
    cy = py.ravel()[cand].astype(np.float32)[:, None]
    n_steps = int(np.ceil(2 * r_max / _MARCH_STEP_MM)) + 1
    zs = np.linspace(-r_max, r_max, n_steps, dtype=np.float32)
    r32 = rot.astype(np.float32)
    # camera point (cx, cy, z) to canonical R^T p, coordinate by coordinate: (N, n_steps) each
    xyz = [r32[0, i] * cx + r32[1, i] * cy + r32[2, i] * zs[None, :] for i in range(3)]
    f = _field(*xyz, e, head)
    inside = f < 0
    k = inside.argmax(1)
    hit = inside[np.arange(len(k)), k] & (k > 0)
    if not hit.any():
        return image, mask
    idx = np.flatnonzero(hit)
    k = k[idx]
    f0, f1 = f[idx, k - 1].astype(np.float64), f[idx, k].astype(np.float64)
    z = zs[k - 1] + f0 / (f0 - f1) * float(zs[1] - zs[0])
    p_cam = np.stack([cx[idx, 0], cy[idx, 0], z], -1).astype(np.float64)
    p_can = p_cam @ rot  # rows: R^T p
    # normal: central differences of the implicit function, canonical then camera axes
    eps = 0.5
    grad = np.empty_like(p_can)
    for d in range(3):
        a, b = p_can.copy(), p_can.copy()
        a[:, d] += eps
        b[:, d] -= eps
        grad[:, d] = _field(a[:, 0], a[:, 1], a[:, 2], e, head) - _field(b[:, 0], b[:, 1], b[:, 2], e, head)
    n_cam = grad @ rot.T
    n_cam /= np.linalg.norm(n_cam, axis=1, keepdims=True) + 1e-12
    shade = 0.35 + 0.75 * np.clip(n_cam @ np.asarray(light, np.float64), 0.0, 1.0)
    q = np.stack(_to_neutral(p_can[:, 0], p_can[:, 1], p_can[:, 2], e, head), -1)
    col = _surface_colour(q, e, head, appearance)
    pix = cand[idx]
    image.reshape(-1, 3)[pix] = np.clip(col * shade[:, None], 0.0, 1.0)
    mask.reshape(-1)[pix] = 1
    return image, mask


def _surface_colour(q: np.ndarray, e: np.ndarray, head: ToyHead, app: dict) -> np.ndarray:
    """Albedo ``(N, 3)`` at neutral surface points ``(N, 3)``: skin, hair, eyes, brows, mouth."""
    ux, uy, uz = q[:, 0] / head.a, q[:, 1] / head.b, q[:, 2] / head.c
    col = np.broadcast_to(app["skin"], (len(q), 3)).copy()
    front = uz > 0.3
    hair = (uy > float(app["hairline"])) & (uz < 0.75) | (uz < -0.25) & (uy > -0.3)
    col[hair] = app["hair"]
    for sx in (-0.36, 0.36):
        d_eye = ((ux - sx) / 0.13) ** 2 + ((uy - 0.14) / 0.07) ** 2
        col[front & (d_eye < 1)] = [0.95, 0.95, 0.95]
        col[front & (d_eye < 0.3)] = app["iris"]
        d_brow = ((ux - sx) / 0.16) ** 2 + ((uy - 0.3 - 0.1 * e[2]) / 0.03) ** 2
        col[front & (d_brow < 1)] = app["hair"] * 0.7
    mouth_h = 0.025 + 0.14 * e[0]
    mouth_w = 0.22 * (1.0 + 0.35 * e[1])
    d_mouth = (ux / mouth_w) ** 2 + ((uy + 0.5 + 0.02 * e[1]) / mouth_h) ** 2
    col[front & (d_mouth < 1)] = [0.45, 0.08, 0.1]
    col[front & (d_mouth < 0.6) & (e[0] > 0.25)] = [0.12, 0.02, 0.03]
    return col


def _background(r: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = r.uniform(0, 1, 3), r.uniform(0, 1, 3)
    ang = r.uniform(0, 2 * np.pi)
    u = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(u, u)
    t = np.clip(0.5 + 0.5 * (gx * np.cos(ang) + gy * np.sin(ang)), 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    fx, fy, ph = r.uniform(1, 6), r.uniform(1, 6), r.uniform(0, 2 * np.pi, 2)
    img += 0.12 * (np.sin(fx * gx * np.pi + ph[0]) * np.sin(fy * gy * np.pi + ph[1]))[..., None]
    return np.clip(img, 0, 1)


class ToyDataset:
    """Analytic toy heads in the voxface item layout (:mod:`voxface.data`); see the module doc.

    Args:
        length: number of items (a multiple of 4).
        seed: data seed; item ``i`` is a pure function of ``(seed, i)``.
        grid: the canonical grid occupancies are computed on.
        image_size: crop side ``S`` (pixels).
        cfg: framing/pose ranges (:class:`ToyDataConfig`); its lengths and seed are ignored.
    """

    def __init__(self, length: int, seed: int, grid: Grid, image_size: int, cfg: ToyDataConfig | None = None):
        if length < 0 or length % BLOCK:  # 0: an empty split (num_val 0: no validation)
            raise ConfigError(f"toy dataset length {length} must be a multiple of {BLOCK} (0 or more)")
        self.length, self.seed, self.grid, self.image_size = int(length), check_seed(seed), grid, int(image_size)
        self.cfg = cfg or ToyDataConfig()
        # items are pure functions of (seed, index), so a memo is always safe (about 20 kB each)
        self._cache: dict[int, dict[str, np.ndarray]] | None = {} if self.cfg.cache else None

    @classmethod
    def from_config(cls, data_cfg: dict[str, Any], split: str, model_cfg: ModelConfig | dict | None) -> "ToyDataset":
        """Build the ``"train"`` or ``"val"`` split from the ``data:`` section of a config."""
        cfg = from_dict(ToyDataConfig, data_cfg, "data")
        mcfg = model_config(model_cfg)
        grid = Grid.from_config(mcfg.frame, mcfg.decoder.resolution)
        if split not in ("train", "val"):
            raise ConfigError(f"unknown split {split!r}; use 'train' or 'val'")
        key = f"num_{split}"
        length = getattr(cfg, key)
        if length < (BLOCK if split == "train" else 0) or length % BLOCK:  # num_val 0: no validation, as other kinds
            raise ConfigError(f"data.{key} {length} must be a " + ("positive multiple" if split == "train" else
                              "multiple") + f" of {BLOCK} (a toy dataset's length"
                              + ("; 0: no validation)" if split != "train" else ")"))
        if not (cfg.scale > 0 and math.isfinite(cfg.scale)):  # 0: an empty mask and a divide-by-zero
            # warning; below 0 a head turned over; inf a crop all face
            raise ConfigError(f"data.scale {cfg.scale} must be above 0 and finite (the head's RMS radius in crop "
                              "half-widths)")
        # a negative angle or shift was numpy's 'high - low < 0' at the first item (in a loader
        # worker), NaN its OverflowError; a NaN scale jitter or a shift past the crop's half-width
        # gave crops with no head (mask all 0), a negative or NaN noise no noise, without a word
        for key in ("max_yaw", "max_pitch", "max_roll"):
            v = getattr(cfg, key)
            if not (math.isfinite(v) and 0 <= v <= 180):
                raise ConfigError(f"data.{key} {v} must be an angle in degrees from 0 to 180 (angles are drawn "
                                  f"uniformly from -{key} to +{key})")
        if not (math.isfinite(cfg.shift_jitter) and 0 <= cfg.shift_jitter <= 1):
            raise ConfigError(f"data.shift_jitter {cfg.shift_jitter} must be from 0 to 1 (crop half-widths; more "
                              "moves the head's centre out of the crop)")
        for key in ("scale_jitter", "noise"):
            v = getattr(cfg, key)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"data.{key} {v} must be a finite number, 0 or more")
        seed = split_seed(cfg.seed, cfg.val_seed_offset, split)
        return cls(length, seed, grid, mcfg.encoder.image_size, cfg)

    def __len__(self) -> int:
        return self.length

    def coeffs(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(id_coeffs (4,), exp_coeffs (3,))`` of item ``index``."""
        return sample_identity(self.seed, index // 2), sample_expression(self.seed, index)

    def _make(self, index: int) -> dict[str, np.ndarray]:
        cfg, s = self.cfg, self.seed
        person = index // 2
        id_c, exp_c = self.coeffs(index)
        exp_swap = sample_expression(s, index ^ 2)
        r = _rng(s, index, 14)
        yaw, pitch, roll = (r.uniform(-m, m) for m in (cfg.max_yaw, cfg.max_pitch, cfg.max_roll))
        rotation = FRONTAL_ROTATION @ euler_matrix(yaw, pitch, roll)
        scale = cfg.scale * np.exp(r.uniform(-1, 1) * cfg.scale_jitter)
        translation = r.uniform(-cfg.shift_jitter, cfg.shift_jitter, 2)
        light = np.array([r.uniform(-0.7, 0.7), r.uniform(-0.7, 0.3), 1.0])
        light /= -np.linalg.norm(light)  # points from the surface towards the light (camera side)
        bg = _background(r, self.image_size)
        img, mask = render_toy(
            id_c, exp_c, rotation, scale, translation, self.image_size,
            _appearance(s, person), light, bg,
        )
        if cfg.noise > 0:
            img = img + r.normal(0, cfg.noise, img.shape)
        item = {
            # images are 8-bit like real photos (and compact in the cache)
            "image": np.round(np.clip(img, 0, 1).transpose(2, 0, 1) * 255).astype(np.uint8),
            "mask": mask,
            "occ": np.packbits(toy_occupancy(self.grid, id_c, exp_c)),
            "occ_swap": np.packbits(toy_occupancy(self.grid, id_c, exp_swap)),
            "id_coeffs": id_c,
            "exp_coeffs": exp_c,
            "rotation": rotation.astype(np.float32),
            "scale": np.float32(scale),
            "translation": translation.astype(np.float32),
            "identity": np.int64(person),
            "index": np.int64(index),
        }
        if self._cache is not None:
            self._cache[index] = item
        return item

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Item ``index`` in the layout of :mod:`voxface.data` (``image`` float32 in [0, 1])."""
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a toy dataset of {self.length}")
        item = self._cache.get(index) if self._cache is not None else None
        if item is None:
            item = self._make(index)
        out = {k: np.array(v, copy=True) for k, v in item.items()}  # callers cannot alter the memo
        R = self.grid.resolution  # R^3 bits: an odd R's packed grid ends in a padded byte
        out["image"] = item["image"].astype(np.float32) * np.float32(1 / 255)
        out["occ"] = unpack_occupancy(item["occ"], R)
        out["occ_swap"] = unpack_occupancy(item["occ_swap"], R)
        return out


__all__ = [
    "ToyDataConfig", "ToyDataset", "ToyHead", "toy_field", "toy_occupancy", "render_toy",
    "sample_identity", "sample_expression", "N_ID", "N_EXP",
]
