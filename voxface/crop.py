"""How a face crop is framed: one rule shared by the data engine, the detector and the docs.

A crop is the square centred on the centre of the face's 68-landmark bounding box (Multi-PIE
layout, as in ICT-FaceKit), with side ``CROP_SCALE * max(box width, box height)``, resized to the
encoder's input size (128 by default). Training crops are rendered with this framing from the
projected landmarks, jittered around it (by default the centre by up to 5% of the side and the
side by up to 8%: ``SamplerConfig.crop_jitter`` / ``crop_scale_jitter``); at inference a
detector box is mapped to the same framing by :mod:`voxface.detect`.
"""

from __future__ import annotations

import numpy as np

#: Crop side / larger side of the 68-landmark bounding box.
CROP_SCALE = 1.45


def crop_box_from_landmark_box(center_xy: tuple[float, float], landmark_side: float,
                               scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """The framing rule itself: square crop ``(x0, y0, side)`` around a 68-landmark box.

    Args:
        center_xy: centre ``(x, y)`` of the 68-landmark bounding box, in image units.
        landmark_side: larger side of that box (same units).
        scale: crop side / ``landmark_side``.

    Returns:
        ``(x0, y0, side)``: top-left corner and side of the square crop, same units; the crop
        covers ``[x0, x0 + side) x [y0, y0 + side)``.
    """
    side = scale * float(landmark_side)
    return (float(center_xy[0]) - side / 2, float(center_xy[1]) - side / 2, side)


def crop_box_from_landmarks(landmarks_xy: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """Square crop ``(x0, y0, side)`` in image pixels from 2D landmarks ``(68, 2)`` (x, y): a numpy
    array, a sequence or a torch tensor (on any device).

    Raises:
        InputError: landmarks that are not ``(N, 2)`` finite pixel positions with ``N >= 2`` (an
            ``(N, 3)`` array of 3D landmarks would frame the crop on the depth extent too).
    """
    from .errors import InputError

    if hasattr(landmarks_xy, "detach") and hasattr(landmarks_xy, "cpu"):  # a torch tensor, on any device
        landmarks_xy = landmarks_xy.detach().cpu().double().numpy()
    lm = np.asarray(landmarks_xy, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 2:
        hint = ("; for 3D landmarks pass their (x, y) image columns, landmarks[:, :2]"
                if lm.ndim == 2 and lm.shape[1] == 3 else "")
        raise InputError(f"landmarks must be an (N, 2) array of (x, y) pixel positions, N >= 2, got shape "
                         f"{lm.shape}{hint}")
    if not np.isfinite(lm).all():
        raise InputError("landmarks must be finite (a NaN or inf landmark has no place in the image)")
    lo, hi = lm.min(0), lm.max(0)
    center = (lo + hi) / 2
    return np.array(crop_box_from_landmark_box(center, float(np.max(hi - lo)), scale))
