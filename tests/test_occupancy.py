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


def _spheres(centres, radius: float = 60.0):
    import trimesh

    parts = [trimesh.creation.icosphere(subdivisions=3, radius=radius).apply_translation(c) for c in centres]
    return trimesh.util.concatenate(parts)


@pytest.mark.parametrize("method", ["scanline", "raycast"])
def test_a_surface_that_overlaps_itself_is_solid_where_it_overlaps(method) -> None:
    """The even-odd rule carved out every region a surface covers twice: ICT's closed head, whose
    lips pass through each other, got a slit through closed lips. Two overlapping spheres in one
    mesh (consistently wound) stand in for it: the nonzero rule gives their union, as
    an analytic test of the cell centres does; the even-odd rule their symmetric difference."""
    from voxface.frame import Grid
    from voxface.occupancy import is_consistently_wound, occupancy_grid

    centres = np.array([[-25.0, 0, 0], [25.0, 0, 0]])
    mesh = _spheres(centres)
    grid = Grid(32, 256.0, (0.0, 0.0, 0.0))
    c = grid.cell_centers()
    d = np.linalg.norm(c[..., None, :] - centres, axis=-1)  # (..., 2)
    inside = d < 59.0  # the icosphere's facets lie within a few mm inside its radius: cells near it left out
    outside = d > 60.5
    sure = inside.any(-1) | outside.all(-1)
    union = inside.any(-1)
    both = inside.all(-1)
    assert is_consistently_wound(mesh.faces) and both.sum() > 500
    auto = occupancy_grid(mesh.vertices, mesh.faces, grid, method=method)
    assert np.array_equal(auto.astype(bool)[sure], union[sure])
    evenodd = occupancy_grid(mesh.vertices, mesh.faces, grid, method=method, rule="evenodd")
    assert not evenodd.astype(bool)[both].any()  # the overlap carved out
    inside_out = occupancy_grid(mesh.vertices, mesh.faces[:, ::-1], grid, method=method, rule="nonzero")
    assert np.array_equal(inside_out, auto)  # the winding number's sign does not matter


def test_auto_falls_back_to_even_odd_where_the_winding_is_inconsistent() -> None:
    """A mesh some of whose triangles are flipped (a scan stitched from parts) has no meaningful
    winding number: 'auto' takes the even-odd rule, which ignores direction, and keeps it whole."""
    import trimesh

    from voxface.frame import Grid
    from voxface.occupancy import is_consistently_wound, occupancy_grid

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=60.0)
    f = sphere.faces.copy()
    f[::3] = f[::3, ::-1]
    assert is_consistently_wound(sphere.faces) and not is_consistently_wound(f)
    assert not is_consistently_wound(sphere.faces[:-1])  # open: an edge without its reverse
    grid = Grid(24, 160.0, (0.0, 0.0, 0.0))
    good = occupancy_grid(sphere.vertices, sphere.faces, grid)
    assert good.sum() > 1000
    assert np.array_equal(occupancy_grid(sphere.vertices, f, grid), good)
    assert not np.array_equal(occupancy_grid(sphere.vertices, f, grid, rule="nonzero"), good)
    with pytest.raises(InputError, match="unknown occupancy rule 'odd'"):
        occupancy_grid(sphere.vertices, f, grid, rule="odd")
