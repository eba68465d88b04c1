"""The voxel-grid <-> canonical-millimetre mapping, written once in voxface.frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxface.config import FrameConfig
from voxface.frame import Grid


def test_cell_centres_follow_the_documented_formula():
    g = Grid.from_config(FrameConfig(side_mm=400.0, center_mm=(0.0, -30.0, -55.0)), 64)
    c = g.cell_centers()
    assert c.shape == (64, 64, 64, 3)
    vs = 400.0 / 64
    # cell (d, h, w) = (2, 5, 7): x from w, y from h, z from d
    np.testing.assert_allclose(c[2, 5, 7], [0 - 200 + 7.5 * vs, -30 - 200 + 5.5 * vs, -55 - 200 + 2.5 * vs])
    np.testing.assert_allclose(g.index_to_mm([2, 5, 7]), c[2, 5, 7])
    np.testing.assert_allclose(g.mm_to_index(c[2, 5, 7]), [2, 5, 7], atol=1e-9)
    assert g.voxel_size == pytest.approx(vs)


def test_unit_coordinates_match_grid_sample():
    """mm_to_unit gives the (x, y, z) coordinates torch.grid_sample expects for a (D, H, W) volume."""
    g = Grid.from_config(FrameConfig(side_mm=100.0, center_mm=(10.0, 0.0, -5.0)), 8)
    vol = torch.arange(8**3, dtype=torch.float64).view(1, 1, 8, 8, 8)
    pts = g.index_to_mm(np.array([[1, 2, 3], [7, 0, 4]]))
    u = torch.from_numpy(g.mm_to_unit(pts)).view(1, 1, 1, 2, 3)
    s = torch.nn.functional.grid_sample(vol, u, align_corners=False).flatten()
    assert s.tolist() == [vol[0, 0, 1, 2, 3].item(), vol[0, 0, 7, 0, 4].item()]


def test_contains():
    g = Grid.from_config(FrameConfig(side_mm=10.0, center_mm=(0.0, 0.0, 0.0)), 4)
    assert g.contains(np.array([[0, 0, 0], [4.9, -4.9, 0], [5.1, 0, 0]])).tolist() == [True, True, False]
    assert not g.contains(np.array([4.9, 0, 0]), margin_mm=0.5)
