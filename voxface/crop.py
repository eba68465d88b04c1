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


def crop_box_from_landmarks(landmarks_xy: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """Square crop ``(x0, y0, side)`` in image pixels from 2D landmarks ``(68, 2)`` (x, y)."""
    lm = np.asarray(landmarks_xy, dtype=np.float64)
    lo, hi = lm.min(0), lm.max(0)
    center = (lo + hi) / 2
    side = scale * float(np.max(hi - lo))
    return np.array([center[0] - side / 2, center[1] - side / 2, side])
