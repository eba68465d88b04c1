"""voxface.detect and voxface.image: regressions found in review (messages, framing, loading)."""

from __future__ import annotations

import numpy as np
import pytest

from voxface.detect import detect_and_crop
from voxface.errors import NoFaceError


def test_no_scan_size_hint_where_the_scan_saw_every_pixel() -> None:
    """A 6000-px photo is loaded downscaled to 4096 px; scanned at ``--scan-size 4096`` it was told 'a
    larger scan (--scan-size, now 4096) finds smaller ones', but a larger scan reads the same 4096 px.
    Here: a 300x200 image, loaded at half the photo's size, scanned whole (640 >= 300)."""
    flat = np.full((200, 300, 3), 127, np.uint8)
    with pytest.raises(NoFaceError) as e:
        detect_and_crop(flat, source_scale=2.0)
    assert "at least 64 px wide in the photo (600 px on its longer side" in str(e.value)
    assert "--scan-size" not in str(e.value)
    # scanned downscaled (max_side 150 < 300: faces under 48 px of the image are missed), the hint stays
    with pytest.raises(NoFaceError, match=r"a larger scan \(--scan-size, now 150\) finds smaller ones$"):
        detect_and_crop(flat, source_scale=2.0, max_side=150)
