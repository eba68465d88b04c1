"""How a face crop is framed: one rule shared by the data engine, the detector and the docs.

A crop is the square centred on the centre of the face's 68-landmark bounding box (Multi-PIE
layout, as in ICT-FaceKit), with side ``CROP_SCALE * max(box width, box height)``, resized to the
encoder's input size (128 by default). Training crops are rendered with exactly this framing from
the projected landmarks; at inference a detector box is mapped to the same framing by
:mod:`voxface.detect`.
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
    """Square crop ``(x0, y0, side)`` in image pixels from 2D landmarks ``(68, 2)`` (x, y)."""
    lm = np.asarray(landmarks_xy, dtype=np.float64)
    lo, hi = lm.min(0), lm.max(0)
    center = (lo + hi) / 2
    return np.array(crop_box_from_landmark_box(center, float(np.max(hi - lo)), scale))
