"""voxface.mesh, review 33: smoothing of small components, binary occupancy grids."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxface.frame import Grid
from voxface.mesh import extract_mesh

GRID = Grid(32, 256.0, (0.0, 0.0, 0.0))  # 8 mm cells
C = np.array([3.0, 1.0, 2.0])  # off the cell lattice


def _sphere(center: np.ndarray, r_mm: float, grid: Grid = GRID) -> np.ndarray:
    """Logits = signed distance to a sphere, in cells (positive inside)."""
    d = np.linalg.norm(grid.cell_centers() - center, axis=-1)
    return ((r_mm - d) / grid.voxel_size).astype(np.float32)


def _closed(mesh) -> bool:
    return bool(mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0)


@pytest.mark.parametrize("iterations", [10, 30, 100])
def test_smoothing_keeps_a_one_cell_blob(iterations):
    """Taubin smoothing took a one-cell blob (marching cubes' octahedron, all of it at the filter's
    stop band) to a point: 0.03% of its volume at 10 iterations, 3e-9 mm^3 at 30, and at 100 the
    unsmoothed mesh with a warning. Each closed component now keeps its volume and place."""
    import warnings

    v = np.full((32,) * 3, -1.0, np.float32)
    v[16, 16, 16] = 1.0
    base = extract_mesh(v, GRID).mesh
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to the unsmoothed mesh
        m = extract_mesh(v, GRID, smooth=iterations).mesh
    assert _closed(m)
    assert m.volume == pytest.approx(base.volume, rel=1e-6)
    np.testing.assert_allclose(m.extents, base.extents, rtol=1e-6)
    np.testing.assert_allclose(m.centroid, base.centroid, atol=1e-6)


@pytest.mark.parametrize("r_cells", [1.0, 1.5, 3.0, 8.0])
def test_smoothing_keeps_a_spheres_radius_and_centre(r_cells):
    """A sphere of known radius keeps its volume-equivalent radius (against the unsmoothed mesh's:
    marching cubes itself is what falls short on a sphere of one cell) and its centre, at any size;
    a sphere of radius 1 cell kept 48% of its radius at 30 iterations, 1.5 cells 88%."""
    r = r_cells * GRID.voxel_size
    base = extract_mesh(_sphere(C, r), GRID).mesh
    r0 = (3 * base.volume / (4 * math.pi)) ** (1 / 3)
    if r_cells >= 3:  # marching cubes' own radius, where the grid resolves the sphere
        assert r0 == pytest.approx(r, rel=0.03)
    for iterations in (10, 30, 100):
        m = extract_mesh(_sphere(C, r), GRID, smooth=iterations).mesh
        assert _closed(m)
        r1 = (3 * m.volume / (4 * math.pi)) ** (1 / 3)
        assert r1 == pytest.approx(r0, rel=1e-6), (r_cells, iterations)
        # the centre: within a quarter of a cell where the sphere has a handful of vertices, exact otherwise
        tol = 0.02 if r_cells >= 3 else 0.25
        assert np.linalg.norm(m.centroid - base.centroid) < tol * GRID.voxel_size, (r_cells, iterations)


def test_smoothing_keeps_each_component_with_keep_largest_off():
    """Every component keeps its own volume: a floater of one cell beside a large sphere stayed a
    point when only the whole mesh's volume was looked at."""
    big = _sphere(C + [-50.0, 0, 0], 40.0)
    v = big.copy()
    v[16, 16, 27] = 1.0  # one cell at x = +92 mm, far from the sphere
    base = extract_mesh(v, GRID, keep_largest=False)
    assert base.n_components == 2
    m = extract_mesh(v, GRID, smooth=30, keep_largest=False).mesh
    parts = sorted(m.split(only_watertight=False), key=lambda p: p.volume)
    ref = sorted(base.mesh.split(only_watertight=False), key=lambda p: p.volume)
    assert len(parts) == 2
    for p, q in zip(parts, ref):
        assert p.volume == pytest.approx(q.volume, rel=1e-6)
        np.testing.assert_allclose(p.centroid, q.centroid, atol=0.1)


def test_smoothing_a_rough_sphere_keeps_its_radius():
    """A rough analytic sphere (noise on the logits) smooths to the sphere's radius."""
    r = 90.0
    v = _sphere(C, r) + np.random.default_rng(0).standard_normal((32,) * 3).astype(np.float32) * 0.3
    base = extract_mesh(v, GRID).mesh
    spread = np.linalg.norm(base.vertices - C, axis=1).std()
    for iterations in (10, 100, 300):
        m = extract_mesh(v, GRID, smooth=iterations).mesh
        dist = np.linalg.norm(m.vertices - C, axis=1)
        assert dist.mean() == pytest.approx(r, rel=0.01), iterations
        assert dist.std() < 0.7 * spread
        assert m.volume == pytest.approx(base.volume, rel=1e-6)


def test_a_binary_occupancy_grid_is_meshed_midway_at_any_threshold():
    """A float 0/1 occupancy grid was read as logits: at 0.5 its outside cells lay on the level, so
    the surface ran through them, half a cell out (one occupied cell gave a mesh two cells wide, a
    sphere of 90 mm came back at 92.8 mm, +9% by volume), and below 0.5 every cell was inside and
    the grid's whole 256 mm cube came back. It is occupancy now: midway at 0.5, between at any
    threshold, the mesh of 2 * occupancy - 1."""
    from voxface.errors import InputTypeError, VoxfaceError

    one = np.zeros((32,) * 3, np.float32)
    one[16, 16, 16] = 1.0
    m = extract_mesh(one, GRID).mesh
    np.testing.assert_allclose(m.extents, [GRID.voxel_size] * 3, atol=1e-4)  # half a cell either side
    np.testing.assert_allclose(m.bounds.mean(axis=0), GRID.index_to_mm(np.array([16, 16, 16])), atol=1e-4)

    r = 90.0
    occ = (_sphere(C, r) > 0).astype(np.float32)
    ref = extract_mesh(2 * occ - 1, GRID).mesh
    radii = {}
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        res = extract_mesh(occ, GRID, threshold=t)
        assert _closed(res.mesh)
        radii[t] = np.linalg.norm(res.mesh.vertices - C, axis=1).mean()
        assert abs(radii[t] - r) < GRID.voxel_size, t  # between the inside and outside cells
    assert radii[0.1] > radii[0.3] > radii[0.5] > radii[0.7] > radii[0.9]
    mid = extract_mesh(occ, GRID).mesh
    np.testing.assert_allclose(mid.vertices, ref.vertices, atol=1e-4)
    assert mid.volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)
    # thresholds at the ends of (0, 1): the surface at the outside cells' and the inside cells' centres
    cube = np.zeros((32,) * 3, np.float32)
    cube[10:20, 10:20, 10:20] = 1.0
    for t, cells in ((1e-9, 11), (1 - 1e-8, 9)):
        np.testing.assert_allclose(extract_mesh(cube, GRID, threshold=t).mesh.extents, [cells * GRID.voxel_size] * 3,
                                   atol=1e-3)
    # an all-ones grid is still read as logits (probability 0.73), as before
    with pytest.raises(VoxfaceError, match="empty"):
        extract_mesh(np.ones((32,) * 3, np.float32), GRID, threshold=0.9)
    # bool / integer occupancy: refused as before, with the way to mesh it
    with pytest.raises(InputTypeError, match=r"got bool \(an occupancy grid: pass occupancy.astype\(np.float32\)"):
        extract_mesh(occ > 0, GRID)


def test_smoothing_keeps_a_small_cavity():
    """A cavity is a component wound inward (negative volume): one outside cell inside a sphere,
    kept with keep_largest=False, was smoothed away (-0.52 mm^3 to -0.0 at 10 iterations)."""
    v = _sphere(np.zeros(3), 90.0)
    v[16, 16, 16] = -1.0
    base = extract_mesh(v, GRID, keep_largest=False)
    assert base.n_components == 2
    m = extract_mesh(v, GRID, smooth=10, keep_largest=False).mesh
    cavity, shell = sorted(m.split(only_watertight=False), key=lambda p: len(p.faces))
    ref_cavity, ref_shell = sorted(base.mesh.split(only_watertight=False), key=lambda p: len(p.faces))
    assert ref_cavity.volume < 0
    assert cavity.volume == pytest.approx(ref_cavity.volume, rel=1e-6)
    assert shell.volume == pytest.approx(ref_shell.volume, rel=1e-6)
    assert m.volume == pytest.approx(base.mesh.volume, rel=1e-9)


@pytest.mark.parametrize("thickness", [1, 2])
def test_smoothing_a_thin_rod_neither_collapses_nor_stretches_it(thickness):
    """A rod one cell thick is in the filter's stop band across and in its pass band along: Taubin
    alone made it a line (volume 0.3% at 30 iterations), and scaling back to the volume stretched
    that line to 874 mm (36 m at 100). A component the filter thins by more than 10% along some
    principal axis is kept as it was; the others are smoothed and keep their volume."""
    v = np.full((32,) * 3, -1.0, np.float32)
    v[16 - thickness // 2 : 16 + (thickness + 1) // 2, 16 - thickness // 2 : 16 + (thickness + 1) // 2, 8:24] = 1.0
    base = extract_mesh(v, GRID).mesh
    for iterations in (10, 30, 100):
        m = extract_mesh(v, GRID, smooth=iterations).mesh
        assert _closed(m)
        assert m.volume == pytest.approx(base.volume, rel=1e-6)
        np.testing.assert_allclose(m.extents, base.extents, rtol=0.1, err_msg=str(iterations))


@pytest.mark.parametrize("r_cells", [2.0, 3.0, 5.0])
def test_long_smoothing_keeps_small_spheres_in_shape(r_cells):
    """Taubin's filter grows what lies near its pass band (a gain up to 1.00085 a pass pair): alone,
    at 1,000 iterations, it made a sphere of radius 3 cells 2.2 times wider. Scaled back to its
    volume, the sphere stays within 15% of its width along every axis."""
    r = r_cells * GRID.voxel_size
    base = extract_mesh(_sphere(C, r), GRID).mesh
    for iterations in (300, 1000):
        m = extract_mesh(_sphere(C, r), GRID, smooth=iterations).mesh
        assert _closed(m)
        assert m.volume == pytest.approx(base.volume, rel=1e-6)
        np.testing.assert_allclose(m.extents, base.extents, rtol=0.15, err_msg=str(iterations))
        assert np.linalg.norm(m.centroid - base.centroid) < 0.15 * GRID.voxel_size


def test_float64_tensors_keep_their_precision():
    """_to_numpy cast every float tensor to float32 (meant for bfloat16, which numpy lacks): float64
    vertices 1e4 + 1e-4 mm came back as 1e4."""
    import torch

    from voxface.mesh import _to_numpy

    x = torch.tensor([[1e4 + 1e-4, 0.0, 0.0]], dtype=torch.float64)
    assert _to_numpy(x, np.float64)[0, 0] - 1e4 == pytest.approx(1e-4, rel=1e-6)
    assert _to_numpy(x).dtype == np.float64
    assert _to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32


def test_writing_over_a_file_keeps_its_permission_bits(tmp_path):
    """Every atomic write (meshes, exports, caches, ONNX, checkpoints) replaced a ``chmod 600`` file
    by one of the default mode (``644`` under the usual umask): a private mesh became readable by
    everyone at its next write. The replacement keeps the old file's bits; a new file the default."""
    import os
    import stat

    from voxface.mesh import atomic_write_bytes

    umask = os.umask(0o022)
    try:
        private, fresh = tmp_path / "face.ply", tmp_path / "new.ply"
        atomic_write_bytes(private, b"old")
        os.chmod(private, 0o600)
        atomic_write_bytes(private, b"new")
        atomic_write_bytes(fresh, b"new")
    finally:
        os.umask(umask)
    assert private.read_bytes() == b"new"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
