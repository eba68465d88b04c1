"""voxface.occupancy.occupancy_points: points take the grids' rule (the refinement head's targets)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from voxface.errors import InputError

REAL_ICT = os.environ.get("VOXFACE_ICT_ROOT")
needs_ict = pytest.mark.skipif(not (REAL_ICT and Path(REAL_ICT).exists()),
                               reason="ICT-FaceKit not available: set VOXFACE_ICT_ROOT to its folder")


def _two_boxes():
    """A 40 mm cube and a 40 x 30 x 30 mm box through it, merged into one consistently wound mesh that
    passes through itself (as ICT's closed head does at closed lips): winding number 2 where they
    overlap. No face of one lies in a face's plane of the other (open3d reports a ray's crossings of
    two triangles at the same distance once)."""
    import trimesh

    a = trimesh.creation.box((40.0, 40.0, 40.0))
    b = trimesh.creation.box((40.0, 30.0, 30.0)).apply_translation(_B)
    return trimesh.util.concatenate([a, b])


_B = np.array([20.0, 2.0, 3.0])  # the centre of the second box (half sizes 20, 15, 15)
_HALF_B = np.array([20.0, 15.0, 15.0])


def test_points_where_a_surface_overlaps_itself_are_inside_by_the_nonzero_rule() -> None:
    """The refinement head's point targets were open3d's compute_occupancy (the even-odd rule), while
    its grids took the nonzero rule: a point where the surface covers itself (winding number 2) was
    outside. occupancy_points takes either rule: the union under nonzero (and auto, the winding being
    consistent, and the surface inside out), the symmetric difference under evenodd."""
    import open3d as o3d

    from voxface.occupancy import is_consistently_wound, occupancy_points

    mesh = _two_boxes()
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    assert is_consistently_wound(f)
    rng = np.random.default_rng(0)
    p = rng.uniform([-25.0, -25, -25], [45.0, 25, 25], size=(20000, 3))
    in_a = (np.abs(p) < 20).all(1)
    in_b = (np.abs(p - _B) < _HALF_B).all(1)
    # the points within 0.01 mm of a face's plane of either box are left out (either answer is right there)
    near = (np.abs(np.abs(p) - 20).min(1) < 1e-2) | (np.abs(np.abs(p - _B) - _HALF_B).min(1) < 1e-2)
    both = in_a & in_b
    assert both.sum() > 1000 and near.sum() < 100
    nonzero = occupancy_points(v, f, p, rule="nonzero")
    assert np.array_equal(nonzero[~near], (in_a | in_b)[~near])
    assert np.array_equal(occupancy_points(v, f, p), nonzero)  # auto: consistently wound, so nonzero
    assert np.array_equal(occupancy_points(v, f[:, ::-1], p, rule="nonzero"), nonzero)  # the sign does not matter
    evenodd = occupancy_points(v, f, p, rule="evenodd")
    assert np.array_equal(evenodd[~near], (in_a ^ in_b)[~near])
    # what the refinement head's targets were: the even-odd rule, the overlap outside
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(f.astype(np.uint32)))
    before = scene.compute_occupancy(o3d.core.Tensor(p.astype(np.float32)), nsamples=3).numpy() > 0.5
    assert not before[both & ~near].any() and nonzero[both & ~near].all()


def test_points_agree_with_the_grid_at_its_cell_centres() -> None:
    """occupancy_points and occupancy_grid classify the same points alike, by either rule: at the
    centres occupancy_grid's columns pass through (nudged off the cell centres, see the module
    docstring) exactly; two overlapping spheres; a lattice of points along the frame's axes (rays
    along no axis or diagonal)."""
    import trimesh

    from voxface.frame import Grid
    from voxface.occupancy import _JITTER, occupancy_grid, occupancy_points

    mesh = trimesh.util.concatenate([trimesh.creation.icosphere(subdivisions=3, radius=60.0).apply_translation(c)
                                     for c in ((-25.0, 0, 0), (25.0, 0, 0))])
    grid = Grid(32, 256.0, (0.0, 0.0, 0.0))
    centres = grid.cell_centers() + np.array([_JITTER[0], _JITTER[1], 0.0]) * grid.voxel_size  # (z, y, x, 3)
    for rule in ("nonzero", "evenodd"):
        cells = occupancy_grid(mesh.vertices, mesh.faces, grid, rule=rule).astype(bool)
        points = occupancy_points(mesh.vertices, mesh.faces, centres.reshape(-1, 3), rule=rule)
        assert cells.sum() > 1000
        assert np.array_equal(points.reshape(cells.shape), cells)


def test_auto_takes_the_even_odd_rule_for_inconsistent_winding_and_bad_input_is_one_line() -> None:
    """A mesh some of whose triangles are flipped has no meaningful winding number: 'auto' takes the
    even-odd rule (as occupancy_grid does) and the sphere stays whole. Points that are not (N, 3)
    finite numbers, or an unknown rule, are an InputError naming occupancy_points."""
    import trimesh

    from voxface.occupancy import occupancy_points

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=60.0)
    f = sphere.faces.copy()
    f[::3] = f[::3, ::-1]
    rng = np.random.default_rng(1)
    p = rng.uniform(-70.0, 70.0, size=(3000, 3))
    r = np.linalg.norm(p, axis=1)
    sure = (r < 59.0) | (r > 60.5)  # the icosphere's facets lie within a few mm inside its radius
    assert np.array_equal(occupancy_points(sphere.vertices, f, p)[sure], (r < 59.0)[sure])
    assert np.array_equal(occupancy_points(sphere.vertices, sphere.faces, p)[sure], (r < 59.0)[sure])
    assert occupancy_points(sphere.vertices, sphere.faces, np.zeros((0, 3))).shape == (0,)
    far = np.array([[500.0, 0, 0], [0, -500.0, 3]])  # outside the mesh's box: outside without a ray
    assert not occupancy_points(sphere.vertices, sphere.faces, far).any()
    with pytest.raises(InputError, match=r"occupancy_points: points must be a \(N, 3\) array"):
        occupancy_points(sphere.vertices, sphere.faces, np.zeros((4, 2)))
    with pytest.raises(InputError, match="occupancy_points: 1 points hold NaN"):
        occupancy_points(sphere.vertices, sphere.faces, np.array([[0.0, np.nan, 0.0], [1.0, 2.0, 3.0]]))
    with pytest.raises(InputError, match="occupancy_points: face indices must lie from 0"):
        occupancy_points(sphere.vertices, sphere.faces + len(sphere.vertices), p)
    with pytest.raises(InputError, match="unknown occupancy rule 'odd'"):
        occupancy_points(sphere.vertices, sphere.faces, p, rule="odd")


@needs_ict
def test_the_refinement_heads_point_targets_keep_closed_lips_solid() -> None:
    """ICT's closed head passes through itself at closed or pressed lips (sample 59 of seed 0: cells
    of winding number 2 that the grids' nonzero rule keeps solid). The refinement head's oracle
    labelled points with open3d's compute_occupancy (even-odd): those points were outside while
    their grid cells were inside, so the head was trained to carve the slit the grids had lost.
    Its points now agree with its grids: at those cells, and at every cell centre of the 64^3 grid
    (exactly at the centres the grid's columns pass through, all but a few within float32 rounding
    of the surface at the true centres)."""
    from voxface.config import FrameConfig
    from voxface.data.ict import load_ict
    from voxface.data.synthetic import FaceSampler
    from voxface.frame import Grid
    from voxface.occupancy import _JITTER, occupancy_grid
    from voxface.refine import occupancy_oracle

    s = FaceSampler(load_ict(REAL_ICT), seed=0)
    item = {"id_coeffs": s.id_coeffs(59), "exp_coeffs": s.exp_coeffs(59)}
    oracle = occupancy_oracle({"kind": "synthetic", "ict_root": REAL_ICT})
    grid = Grid.from_config(FrameConfig(), 64)
    cells = oracle.grid(item, grid).astype(bool)
    v = oracle._vertices(item)
    evenodd = occupancy_grid(v, oracle.head.faces, grid, rule="evenodd").astype(bool)
    slit = np.argwhere(cells & ~evenodd)  # (z, y, x) indices of the cells the even-odd rule carved out
    assert len(slit) >= 2
    assert oracle.points(item, grid.cell_centers()[tuple(slit.T)]).all()
    nudged = grid.cell_centers() + np.array([_JITTER[0], _JITTER[1], 0.0]) * grid.voxel_size
    assert np.array_equal(oracle.points(item, nudged.reshape(-1, 3)).reshape(cells.shape), cells)
    at_centres = oracle.points(item, grid.cell_centers().reshape(-1, 3)).reshape(cells.shape)
    assert np.count_nonzero(at_centres != cells) <= 30


def test_rays_through_vertices_and_edges_do_not_mislabel_points() -> None:
    """A ray that runs exactly through a vertex or an edge may report a crossing twice or not at
    all; each point's rays are in fixed directions, so points are aimed along each of them through
    the vertices and edge midpoints of two overlapping spheres (winding number 2 where they
    overlap): the other two rays outvote the one that fails, and every point away from the surface
    is labelled as the analytic union (nonzero) and symmetric difference (even-odd) say."""
    import trimesh

    from voxface.occupancy import _POINT_RAYS, occupancy_points

    centres = np.array([[-25.0, 0, 0], [25.0, 0, 0]])
    mesh = trimesh.util.concatenate([trimesh.creation.icosphere(subdivisions=3, radius=60.0).apply_translation(c)
                                     for c in centres])
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    rng = np.random.default_rng(2)
    targets = np.concatenate([v, (v[f[:, 0]] + v[f[:, 1]]) / 2])  # vertices and edge midpoints
    points = np.concatenate([targets - d * rng.uniform(2.0, 80.0, size=(len(targets), 1)) for d in _POINT_RAYS])
    points = points.astype(np.float32).astype(np.float64)  # what the rays start from
    d = np.linalg.norm(points[:, None] - centres, axis=-1)
    inside, outside = d < 59.0, d > 60.5  # the facets lie within a few mm inside the radius
    sure = inside.any(1) | outside.all(1)
    assert sure.sum() > 10000 and inside.all(1).sum() > 500
    assert np.array_equal(occupancy_points(v, f, points[sure], rule="nonzero"), inside.any(1)[sure])
    each = (inside | outside).all(1)  # sure of both spheres: for their symmetric difference
    assert np.array_equal(occupancy_points(v, f, points[each], rule="evenodd"), (inside.sum(1) == 1)[each])
