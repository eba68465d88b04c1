"""The canonical frame and the voxel grid: written down once, used everywhere.

Canonical frame (right-handed, millimetres):

* **x** runs from the subject's right to their left as seen by the camera (image left to right
  when the face looks into the camera), **y** up, **z** out of the face towards the camera.
* **Origin**: the centroid of the vertices of the person's closed head (face, head and neck,
  mouth and eye sockets) *with a neutral expression*. Expressions move the surface, not the origin.
* **Scale**: head size is not observable from a face crop (a bigger head farther away projects to
  the same image), so every person's neutral closed head is scaled to one RMS radius about its
  origin, :data:`HEAD_RMS_RADIUS_MM` (the ICT-FaceKit mean head's). "mm" in voxface therefore means
  *canonical millimetres*: real millimetres for a head of average size.

Camera frame (for poses and overlays): OpenCV convention, x right, y down, z forward along the
optical axis. A head pose ``(R, t)`` maps canonical points to camera points,
``X_cam = R @ X_can + t``; looking into the camera is ``R = diag(1, -1, -1)``.

Voxel grid: the canonical volume is an axis-aligned cube of side ``side_mm`` centred at
``center_mm`` (:class:`voxface.config.FrameConfig`), cut into ``R^3`` cells. Volumes are stored
``(D, H, W) = (z, y, x)``, batch-first as ``(B, 1, D, H, W)``; cell ``(d, h, w)`` has its centre at

    x = cx - L/2 + (w + 0.5) * L / R,   y = cy - L/2 + (h + 0.5) * L / R,   z = cz - L/2 + (d + 0.5) * L / R

so index order is reversed with respect to (x, y, z). Occupancy grids are ``uint8``/``bool``
(1 = inside the head); logits are ``float32``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from .config import FrameConfig

#: RMS radius (mm) every neutral closed head is scaled to (the ICT-FaceKit mean head's, measured).
HEAD_RMS_RADIUS_MM = 88.0

#: Rotation taking canonical axes to OpenCV camera axes for a face looking into the camera.
FRONTAL_ROTATION = np.diag([1.0, -1.0, -1.0])


def euler_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head rotation in the canonical frame, ``(3, 3)`` float64, from yaw (about y), pitch (about x)
    and roll (about z) in degrees, applied roll, then pitch, then yaw:
    ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)``. A head posed in the camera is
    ``X_cam = FRONTAL_ROTATION @ R @ X_can + t``; :func:`voxface.rotation.euler_to_matrix` is this
    as a float32 tensor.

    Signs, for a head seen by the camera: yaw > 0 turns the face to the subject's left (image right);
    pitch > 0 tips it down (chin towards the chest); roll > 0 tilts it towards the subject's right
    shoulder (the head turns counter-clockwise in the image).

    Each angle is a finite real number (a 0-d tensor too): a string, ``None`` or NaN is an
    :class:`~voxface.errors.InputTypeError` / :class:`~voxface.errors.InputError` naming the angle (they
    were a NumPy ufunc error, or a matrix of NaN)."""
    from .errors import check_finite

    y, p, r = np.radians([check_finite(f"euler_matrix: {name} (degrees)", value)
                          for name, value in (("yaw", yaw), ("pitch", pitch), ("roll", roll))])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def euler_angles(rotation: np.ndarray, frame: str = "auto") -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of a head rotation: the inverse of :func:`euler_matrix`.

    ``rotation`` is ``(3, 3)``: the canonical-frame rotation ``R`` of :func:`euler_matrix`
    (``frame="canonical"``) or a camera-frame pose ``FRONTAL_ROTATION @ R`` (``frame="camera"``: what
    the encoder predicts, ``Latents.pose.rotation[i]``). ``frame="auto"`` (the default) tells them
    apart by the sign of the ``[1, 1]`` entry, ``cos(pitch) cos(roll)``, which is positive in the
    canonical frame for a head within 90 degrees of upright (``|pitch| < 90`` and ``|roll| < 90``):
    name the frame for any other head (upside down, lying on its side, pitch or roll at 90), whose
    rotation ``auto`` reads in the other frame (a canonical roll of 100 read as yaw 180, roll -80).
    Exact for pitch inside ``(-90, 90)``; at pitch +-90 (gimbal lock, where only yaw - roll or yaw +
    roll is defined) roll is 0 and yaw holds the turn. Signs as :func:`euler_matrix` says (yaw > 0:
    face to the subject's left, pitch > 0: face down, roll > 0: towards the right shoulder). A torch
    tensor may require grad, lie on any device and be of any floating dtype (bfloat16 too); more than
    one rotation, another ``frame`` or a reflection (determinant below 0: a pose mirrored along one
    axis, which read as a plausible head pose with the mirrored turn's signs) is an ``InputError``.
    """
    from .errors import InputError
    from .mesh import _to_numpy  # a tensor: detached, on the CPU, bfloat16 (which numpy lacks) as float32

    if frame not in ("auto", "canonical", "camera"):
        raise InputError(f"euler_angles: frame must be 'auto', 'canonical' or 'camera', got {frame!r}")
    m = _to_numpy(rotation, np.float64)  # Latents.pose.rotation[i] requires grad (numpy refused it), maybe on a GPU
    if m.size != 9:
        raise InputError(f"euler_angles takes one (3, 3) rotation, got shape {m.shape} (index a batch: rotation[i])")
    m = m.reshape(3, 3)
    # NaN passes (unchecked: det warned): a diverged encoder's NaN pose reads NaN angles, as Reconstruction's repr shows
    det = np.linalg.det(m) if np.isfinite(m).all() else 1.0
    if det < 0:
        raise InputError(f"euler_angles: the matrix is a reflection, not a rotation (determinant {det:.3g}; a "
                         "rotation's is +1): one of its axes is mirrored")
    if frame == "camera" or (frame == "auto" and m[1, 1] < 0):  # undo FRONTAL_ROTATION (its own inverse)
        m = FRONTAL_ROTATION @ m
    # pitch from atan2(sin, cos) (cos = the length of row 1's other two entries, cos(pitch) >= 0), not
    # arcsin(sin): arcsin's slope is infinite at +-1, so near +-90 a float32 pose's rounding (6e-8)
    # moved pitch by 0.01 degree (89.99 read 90.0, 89.9 read 89.8991), a thousand times its own error
    cos_pitch = np.hypot(m[1, 0], m[1, 1])
    pitch = np.degrees(np.arctan2(-m[1, 2], cos_pitch))
    if cos_pitch < 1e-12:  # pitch +-90 (gimbal lock): yaw and roll turn about one axis,
        # and both of the atan2 below were atan2(0, 0) = 0, losing the turn; roll 0 and yaw all of it
        return float(np.degrees(np.arctan2(-m[2, 0], m[0, 0]))), float(pitch), 0.0
    yaw = np.degrees(np.arctan2(m[0, 2], m[2, 2]))
    roll = np.degrees(np.arctan2(m[1, 0], m[1, 1]))
    return float(yaw), float(pitch), float(roll)


FRAME_DESCRIPTION = (
    "canonical frame: right-handed, millimetres (heads scaled to an RMS radius of "
    f"{HEAD_RMS_RADIUS_MM} mm), x to the subject's left as seen by the camera, y up, z out of the "
    "face; origin = centroid of the neutral closed head. Volumes (B,1,D,H,W) with D=z, H=y, W=x, "
    "cell centres at center - side/2 + (index + 0.5) * side / R. Camera frame: OpenCV "
    "(x right, y down, z forward), X_cam = R X_can + t."
)


@dataclass(frozen=True)
class Grid:
    """A cubic voxel grid over the canonical volume.

    Attributes:
        resolution: cells per side ``R``.
        side_mm: side of the cube in canonical millimetres.
        center_mm: centre of the cube ``(x, y, z)`` in canonical millimetres.
    """

    resolution: int
    side_mm: float
    center_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        # checked and normalised once: a list or array centre made the grid unhashable and ``==``
        # ambiguous; a zero resolution or a centre of two numbers failed later, deep in the maths
        from .errors import InputError, InputTypeError

        try:
            if isinstance(self.resolution, bool):
                raise TypeError
            resolution = operator.index(self.resolution)
            side = float(self.side_mm)
            center = tuple(float(c) for c in np.asarray(self.center_mm, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            raise InputTypeError(f"Grid takes an integer resolution, a side in mm and a centre of 3 numbers, got "
                                 f"{self.resolution!r}, {self.side_mm!r}, {self.center_mm!r}") from None
        if resolution < 1 or not (math.isfinite(side) and side > 0):
            raise InputError(f"Grid needs a resolution of at least 1 and a finite side_mm above 0, got "
                             f"{self.resolution!r} and {self.side_mm!r}")
        if len(center) != 3 or not all(math.isfinite(c) for c in center):
            raise InputError(f"Grid center_mm must be 3 finite numbers (x, y, z), got {self.center_mm!r}")
        object.__setattr__(self, "resolution", resolution)
        object.__setattr__(self, "side_mm", side)
        object.__setattr__(self, "center_mm", center)

    @classmethod
    def from_config(cls, frame: FrameConfig, resolution: int) -> "Grid":
        """The ``resolution``^3 grid over the canonical volume of ``frame`` (a model's:
        ``Grid.from_config(model.config.frame, model.config.resolution)`` is ``model.grid``). The
        resolution is checked as :class:`Grid` checks it: ``int()`` made 63.9999 (a side divided by
        a cell size) a 63^3 grid."""
        x, y, z = (float(c) for c in frame.center_mm)
        return cls(resolution, float(frame.side_mm), (x, y, z))

    @property
    def voxel_size(self) -> float:
        """Edge length of one cell (mm)."""
        return self.side_mm / self.resolution

    @property
    def origin(self) -> np.ndarray:
        """Corner ``(x, y, z)`` of the cube with the smallest coordinates (mm)."""
        return np.asarray(self.center_mm, dtype=np.float64) - self.side_mm / 2

    def axis(self) -> np.ndarray:
        """Cell-centre coordinates along one axis, relative to the cube's corner (mm), ``(R,)``."""
        return (np.arange(self.resolution) + 0.5) * self.voxel_size

    def index_to_mm(self, dhw: np.ndarray) -> np.ndarray:
        """Continuous indices ``(..., 3)`` in ``(d, h, w)`` order to canonical ``(x, y, z)`` mm."""
        dhw = np.asarray(dhw, dtype=np.float64)
        return self.origin + (dhw[..., ::-1] + 0.5) * self.voxel_size

    def mm_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Canonical ``(..., 3)`` ``(x, y, z)`` mm to continuous ``(d, h, w)`` indices."""
        xyz = np.asarray(xyz, dtype=np.float64)
        return ((xyz - self.origin) / self.voxel_size - 0.5)[..., ::-1]

    def mm_to_unit(self, xyz: np.ndarray) -> np.ndarray:
        """Canonical mm ``(..., 3)`` to ``[-1, 1]`` cube coordinates in ``(x, y, z)`` order.

        This is the convention of :func:`torch.nn.functional.grid_sample` with
        ``align_corners=False`` on a ``(D, H, W)`` volume.
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        return (xyz - np.asarray(self.center_mm)) / (self.side_mm / 2)

    def cell_centers(self) -> np.ndarray:
        """All cell centres in canonical mm, ``(R, R, R, 3)`` indexed ``[d, h, w]`` -> ``(x, y, z)``."""
        a = self.axis()
        o = self.origin
        z, y, x = np.meshgrid(a + o[2], a + o[1], a + o[0], indexing="ij")
        return np.stack([x, y, z], axis=-1)

    def contains(self, xyz: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Whether points ``(..., 3)`` lie inside the cube shrunk by ``margin_mm``."""
        xyz = np.asarray(xyz, dtype=np.float64)
        lo = self.origin + margin_mm
        hi = self.origin + self.side_mm - margin_mm
        return np.all((xyz >= lo) & (xyz <= hi), axis=-1)
