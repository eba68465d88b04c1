"""voxface.occupancy against analytic answers and its own packing."""

from __future__ import annotations

import numpy as np
import pytest

from voxface.errors import InputError
from voxface.occupancy import pack_occupancy, unpack_occupancy


def test_unpacking_refuses_another_resolutions_grid() -> None:
    """A 32^3 grid unpacked as 64^3 was padded with zeros (and a 64^3 one unpacked as 32^3 cut to
    its first 32768 cells): a wrong grid of the asked shape, without a word."""
    rng = np.random.default_rng(0)
    occ = (rng.random((32, 32, 32)) < 0.3).astype(np.uint8)
    assert np.array_equal(unpack_occupancy(pack_occupancy(occ), 32), occ)
    odd = (rng.random((5, 5, 5)) < 0.5).astype(np.uint8)  # 125 bits: 16 bytes, the last one padded
    assert np.array_equal(unpack_occupancy(pack_occupancy(odd), 5), odd)
    with pytest.raises(InputError, match=r"4096 bytes are not a packed 64\^3 grid \(32768 bytes\)"):
        unpack_occupancy(pack_occupancy(occ), 64)
    with pytest.raises(InputError, match=r"32768 bytes are not a packed 32\^3 grid"):
        unpack_occupancy(pack_occupancy(np.ones((64, 64, 64), np.uint8)), 32)


def test_a_resolution_in_the_place_of_the_grid_is_a_type_error() -> None:
    """occupancy_grid(v, f, 64) (the resolution where the grid goes) was AttributeError: 'int' object
    has no attribute 'resolution', with either method."""
    from voxface.errors import InputTypeError
    from voxface.frame import Grid
    from voxface.occupancy import occupancy_grid

    # a tetrahedron around the centre of a 4^3 grid of 40 mm cells
    v = np.array([[-30.0, -30, -30], [60, -30, -30], [-30, 60, -30], [-30, -30, 60]])
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    for method in ("scanline", "raycast"):
        with pytest.raises(InputTypeError, match="grid must be a voxface.Grid"):
            occupancy_grid(v, f, 4, method=method)
    grid = Grid(4, 160.0, (0.0, 0.0, 0.0))
    c = grid.cell_centers()  # inside: every coordinate above -30 and x + y + z below 0
    expected = ((c > -30).all(-1) & (c.sum(-1) < 0)).astype(np.uint8)
    assert expected.sum() == 4
    assert np.array_equal(occupancy_grid(v, f, grid), expected)
