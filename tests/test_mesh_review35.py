"""Review 35: meshing, occupancy and metrics."""

from __future__ import annotations

import tracemalloc

import numpy as np
import trimesh

from voxface import occupancy
from voxface.frame import Grid
from voxface.occupancy import occupancy_grid


def test_occupancy_grid_sums_its_columns_a_block_at_a_time_with_the_same_grid(monkeypatch):
    """_fill's int64/float64 running sums covered the whole grid (16 bytes a cell: 2 GB at 512^3 for a
    128 MB result, 270 MB at 256^3); they are summed a block of rows at a time, to the same cells."""
    sphere = trimesh.creation.icosphere(3, radius=80.0)
    grid = Grid(256, 200.0, (1.0, -2.0, 3.0))
    tracemalloc.start()
    try:
        occ = occupancy_grid(sphere.vertices, sphere.faces, grid, rule="nonzero")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert occ.shape == (256,) * 3 and occ.dtype == np.uint8 and occ.flags.c_contiguous
    assert peak < 160 * 2**20, f"peak {peak / 2**20:.0f} MB for a {occ.nbytes / 2**20:.0f} MB grid"  # 270 MB before
    # the sphere's cells by their centres: inside its inscribed sphere in, outside its circumscribed one out
    z, y, x = ((grid.origin[i] + (np.arange(256, dtype=np.float32) + 0.5) * grid.voxel_size - c) ** 2
               for i, c in ((2, 0.0), (1, 0.0), (0, 0.0)))
    d2 = z[:, None, None] + y[None, :, None] + x[None, None, :]  # (D, H, W) = (z, y, x)
    inner = np.abs(trimesh.proximity.signed_distance(sphere, np.zeros((1, 3)))[0])
    assert occ[d2 < (inner - 0.01) ** 2].all() and not occ[d2 > 80.01**2].any()

    # blocks of every size give the grid of one block, for both rules and both methods, inside-out parts too
    hole = trimesh.creation.icosphere(2, radius=30.0)
    hole.invert()
    shapes = [trimesh.creation.torus(50.0, 15.0), trimesh.util.concatenate([sphere, hole])]
    small = Grid(29, 200.0, (3.0, -2.0, 1.0))
    for mesh in shapes:
        for method in ("scanline", "raycast"):
            for rule in ("nonzero", "evenodd"):
                monkeypatch.setattr(occupancy, "_FILL_BLOCK", 1 << 22)
                whole = occupancy_grid(mesh.vertices, mesh.faces, small, method, rule)
                for block in (1, 29 * 30 * 3, 29 * 30 * 7 + 5):
                    monkeypatch.setattr(occupancy, "_FILL_BLOCK", block)
                    assert np.array_equal(occupancy_grid(mesh.vertices, mesh.faces, small, method, rule), whole)
    assert whole.any() and not whole.all()


def test_float64_logits_past_float32s_range_mesh_without_a_numpy_warning():
    """float64 logits beyond float32's range (a saturated float64 field, +-1e300) printed numpy's
    'RuntimeWarning: overflow encountered in cast' from extract_mesh; they become +-inf there and are
    clipped like any saturated logit: the same mesh as +-1e6, without a word."""
    import warnings

    from voxface.mesh import extract_mesh

    grid = Grid(16, 32.0, (0.0, 0.0, 0.0))
    huge = np.full((16, 16, 16), -1e300)
    huge[4:12, 4:12, 4:12] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mesh = extract_mesh(huge, grid).mesh
    reference = extract_mesh(np.clip(huge, -1e6, 1e6), grid).mesh
    assert np.array_equal(mesh.vertices, reference.vertices) and np.array_equal(mesh.faces, reference.faces)
    assert mesh.is_watertight and mesh.volume > 0


def test_watertight_caches_nothing_on_the_mesh_and_agrees_with_trimesh():
    """MeshResult.watertight asked trimesh, which cached the mesh's edges on it (11 MB for a 128^3
    sphere's 99k faces) for as long as the result was held; it is found on the arrays, to trimesh's answer."""
    from voxface.mesh import MeshResult, extract_mesh

    grid = Grid(48, 96.0, (0.0, 0.0, 0.0))
    ax = grid.origin[0] + (np.arange(48) + 0.5) * grid.voxel_size
    r = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    logits = (30.0 - r).astype(np.float32)
    result = extract_mesh(logits, grid)
    result.mesh._cache.clear()
    assert result.watertight is True
    assert not result.mesh._cache.cache, sorted(result.mesh._cache.cache)
    opened = trimesh.Trimesh(result.mesh.vertices, result.mesh.faces[1:], process=False)  # one face gone
    flipped = result.mesh.faces.copy()
    flipped[0] = flipped[0, ::-1]  # one face wound the other way
    wound = trimesh.Trimesh(result.mesh.vertices, flipped, process=False)
    for mesh in (opened, wound, trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64))):
        expected = bool(mesh.copy().is_watertight and mesh.copy().is_winding_consistent)
        assert MeshResult(mesh, 0.5).watertight is expected is False


def test_a_file_name_holding_a_nul_character_is_one_input_error_naming_it(tmp_path):
    """export_mesh (and every writer through check_file_name) raised the os module's bare
    'ValueError: embedded null byte', naming no file, where its docstring promises a VoxfaceError."""
    import pytest

    from voxface.errors import InputError
    from voxface.mesh import atomic_write_bytes, export_mesh

    box = trimesh.creation.box()
    for write in (lambda p: export_mesh(box, p), lambda p: atomic_write_bytes(p, b"x")):
        with pytest.raises(InputError, match=r"a\\0b\.ply: holds a NUL character"):
            write(str(tmp_path / "a\0b.ply"))
    assert list(tmp_path.iterdir()) == []


def test_a_mesh_whose_faces_have_no_area_is_refused_not_sampled_with_zero_normals():
    """sample_surface promises unit normals, points uniform by area: a mesh whose faces all have zero
    area (collinear or repeated corners) gave points along its edges with (0, 0, 0) normals, which
    mesh_metrics scored as a surface (normal consistency 0). It is refused as a mesh without faces is,
    naming the side in match_surfaces / mesh_metrics."""
    import pytest

    from voxface.errors import InputError
    from voxface.metrics import mesh_metrics, sample_surface

    line = (np.array([[0.0, 0, 0], [10, 0, 0], [20, 0, 0], [0, 5, 0]]), np.array([[0, 1, 2], [0, 2, 1]]))
    sphere = trimesh.creation.icosphere(2, radius=10.0)
    with pytest.raises(InputError, match="2 faces have no area"):
        sample_surface(line, 10)
    with pytest.raises(InputError, match="^pred: cannot sample .* no area"):
        mesh_metrics(line, sphere, n=10)
    with pytest.raises(InputError, match="^gt: cannot sample .* no area"):
        mesh_metrics(sphere, line, n=10)
    # one degenerate face among others is never sampled (zero weight): the normals stay unit
    v = np.vstack([sphere.vertices, [[0.0, 0, 0]]])
    f = np.vstack([sphere.faces, [[0, 0, len(v) - 1]]])
    _, normals = sample_surface((v, f), 2000)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
