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


@pytest.mark.parametrize("resolution", [1, 7, 64, 100, 128])
def test_index_and_mm_are_inverse_and_match_the_readme_formula(resolution):
    """README: cell (d, h, w) has its centre at center - 200 + (index + 0.5) * 400 / R along (z, y, x)."""
    g = Grid.from_config(FrameConfig(), resolution)
    c = g.cell_centers()
    R = resolution
    idx = np.stack(np.meshgrid(*[np.arange(R)] * 3, indexing="ij"), axis=-1)  # (R, R, R, 3) as (d, h, w)
    centre = np.array([0.0, -30.0, -55.0])
    formula = centre - 200 + (idx[..., ::-1] + 0.5) * 400 / R  # (x, y, z) from (w, h, d)
    np.testing.assert_allclose(c, formula, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(g.index_to_mm(idx), c)
    np.testing.assert_allclose(g.mm_to_index(c), idx, rtol=0, atol=1e-12)
    pts = np.random.default_rng(R).uniform(-300, 300, (500, 3))  # any point, inside the cube or not
    np.testing.assert_allclose(g.index_to_mm(g.mm_to_index(pts)), pts, rtol=0, atol=1e-12)
    assert g.contains(c).all()
    # the cube's faces lie half a cell beyond the outer centres
    np.testing.assert_allclose(c[0, 0, 0] - g.voxel_size / 2, g.origin)
    np.testing.assert_allclose(c[-1, -1, -1] + g.voxel_size / 2, g.origin + 400)


def test_grid_checks_and_normalises_its_fields():
    """A Grid built by hand with a list or array centre was unhashable and ``==`` raised; a zero
    resolution or a centre of 2 numbers failed later, deep in the maths (ZeroDivisionError, a
    broadcast error)."""
    from voxface.errors import InputError, InputTypeError

    ref = Grid(64, 400.0, (0.0, -30.0, -55.0))
    for centre in ([0, -30, -55], np.array([0.0, -30.0, -55.0])):
        g = Grid(np.int64(64), 400, centre)
        assert g == ref and hash(g) == hash(ref) and g.center_mm == (0.0, -30.0, -55.0)
        assert type(g.resolution) is int and type(g.side_mm) is float
    for args in [(0, 400.0, (0, 0, 0)), (64, -1.0, (0, 0, 0)), (64, float("inf"), (0, 0, 0)),
                 (64, 400.0, (0, 0)), (64, 400.0, (0, float("nan"), 0))]:
        with pytest.raises(InputError, match="^Grid "):
            Grid(*args)
    for args in [(64.5, 400.0, (0, 0, 0)), (True, 400.0, (0, 0, 0)), (64, "big", (0, 0, 0))]:
        with pytest.raises(InputTypeError, match="^Grid takes an integer resolution"):
            Grid(*args)


def test_euler_angles_of_the_encoders_pose_as_its_docstring_says():
    """euler_angles documents ``Latents.pose.rotation[i]`` as input, but that tensor requires grad and
    numpy refused it (a RuntimeError traceback); a whole batch was a reshape ValueError."""
    from voxface.errors import InputError
    from voxface.frame import FRONTAL_ROTATION, euler_angles, euler_matrix

    pose = torch.tensor(FRONTAL_ROTATION @ euler_matrix(20.0, -10.0, 5.0), dtype=torch.float32)
    batch = torch.stack([pose, pose]).requires_grad_(True) * 1.0  # as the encoder's: a graph behind it
    np.testing.assert_allclose(euler_angles(batch[0]), (20.0, -10.0, 5.0), atol=1e-4)
    with pytest.raises(InputError, match=r"takes one \(3, 3\) rotation, got shape \(2, 3, 3\)"):
        euler_angles(batch)


def test_from_config_checks_the_resolution_as_grid_does():
    """Grid.from_config truncated the resolution with int(): 400 / 6.2500001 (63.99999...) gave a
    63^3 grid without a word, and '64' was taken; Grid itself refuses both."""
    from voxface.errors import InputTypeError

    assert Grid.from_config(FrameConfig(), np.int64(64)) == Grid(64, 400.0, (0.0, -30.0, -55.0))
    for resolution in (400 / 6.2500001, "64", 64.0):
        with pytest.raises(InputTypeError, match="^Grid takes an integer resolution"):
            Grid.from_config(FrameConfig(), resolution)


@pytest.mark.parametrize("pitch", [90.0, -90.0])
def test_euler_angles_at_gimbal_lock_keep_the_turn(pitch):
    """At pitch +-90 with exact zeros (a rotation written by hand), yaw and roll were both
    atan2(0, 0) = 0: a head turned 30 degrees came back unturned. Now roll is 0 and yaw holds the
    turn, so the angles rebuild the rotation, and near the lock the angles are still the given ones."""
    from voxface.frame import euler_angles, euler_matrix

    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    turned = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ euler_matrix(0.0, pitch, 0.0).round()
    assert turned[1, 0] == turned[1, 1] == 0.0
    yaw, p, roll = euler_angles(turned)
    assert (yaw, p, roll) == pytest.approx((30.0, pitch, 0.0))
    for angles in [(30.0, pitch, 20.0), (-40.0, pitch, -10.0)]:
        np.testing.assert_allclose(euler_matrix(*euler_angles(euler_matrix(*angles))), euler_matrix(*angles),
                                   atol=1e-9)
        near = (angles[0], np.sign(pitch) * 89.99, angles[2])
        np.testing.assert_allclose(euler_angles(euler_matrix(*near)), near, atol=1e-6)
