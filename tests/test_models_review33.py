"""Review 33 (networks and maths): regression tests for the defects fixed in this round."""

from __future__ import annotations

import torch

from voxface.frame import euler_matrix
from voxface.rotation import geodesic_degrees


def test_geodesic_degrees_of_a_float64_pose_against_float32_labels() -> None:
    """A float64 model's poses against the data's float32 labels (``voxface.evaluate``'s pose error
    of a model cast with ``.double()``) were 'RuntimeError: expected scalar type Double but found
    Float'; the two dtypes are promoted to float64."""
    r1 = torch.from_numpy(euler_matrix(20.0, -10.0, 5.0))[None]  # float64
    r2 = torch.from_numpy(euler_matrix(20.0, -10.0, 35.0))[None].float()
    for a, b in ((r1, r2), (r2, r1)):
        angle = geodesic_degrees(a, b)
        assert angle.dtype == torch.float64 and angle.shape == (1,)
        assert abs(float(angle[0]) - 30.0) < 1e-4
    assert geodesic_degrees(r2, r2).dtype == torch.float32  # one dtype: unchanged
