"""voxface.mesh: marching cubes on analytic signed-distance logits, and mesh files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import trimesh

from voxface.config import FrameConfig
from voxface.errors import VoxfaceError
from voxface.frame import Grid
from voxface.mesh import MESH_FORMATS, MeshResult, export_mesh, extract_mesh, probability_to_logit

GRID = Grid.from_config(FrameConfig(), 64)  # the default canonical cube at 64^3
CENTER = np.asarray(GRID.center_mm)


def sphere_logits(center, r: float, grid: Grid = GRID) -> np.ndarray:
    """``(R, R, R)`` logits = signed distance to a sphere in cells (positive inside)."""
    d = np.linalg.norm(grid.cell_centers() - np.asarray(center, dtype=np.float64), axis=-1)
    return ((r - d) / grid.voxel_size).astype(np.float32)


def assert_closed(mesh: trimesh.Trimesh) -> None:
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0


@pytest.mark.parametrize("kind", ["numpy", "torch5d"])
def test_sphere_geometry_and_outward_normals(kind):
    r = 90.0
    logits = sphere_logits(CENTER, r)
    if kind == "torch5d":
        torch = pytest.importorskip("torch")
        logits = torch.from_numpy(logits)[None, None]
    res = extract_mesh(logits, GRID)
    assert isinstance(res, MeshResult)
    m = res.mesh
    assert_closed(m)
    assert res.watertight and res.n_components == 1 and len(m.split(only_watertight=False)) == 1
    assert res.threshold == 0.5 and res.level == 0.0
    dist = np.linalg.norm(m.vertices - CENTER, axis=1)
    assert abs(dist.mean() - r) < 0.01 * r
    assert abs(m.volume - 4 / 3 * math.pi * r**3) < 0.02 * 4 / 3 * math.pi * r**3
    assert abs(m.area - 4 * math.pi * r**2) < 0.03 * 4 * math.pi * r**2
    # outward: vertex and face normals point away from the centre, everywhere
    assert np.all(np.sum(m.vertex_normals * (m.vertices - CENTER), axis=1) > 0)
    assert np.all(np.sum(m.face_normals * (m.triangles_center - CENTER), axis=1) > 0)
    assert set(res.seconds) >= {"prepare", "marching_cubes", "components", "smooth", "decimate", "total"}
    assert res.seconds["total"] >= res.seconds["marching_cubes"] > 0


def test_off_centre_sphere_lands_at_its_canonical_position():
    # (x, y, z) all different: a swapped axis order would put the centroid at (25, -10, 40)
    c = np.array([40.0, -10.0, 25.0])
    m = extract_mesh(sphere_logits(c, 50.0), GRID).mesh
    np.testing.assert_allclose(m.centroid, c, atol=0.5)
    np.testing.assert_allclose(m.bounds.mean(axis=0), c, atol=0.5)


def test_ellipsoid_extents_follow_x_y_z():
    semi = np.array([100.0, 60.0, 35.0])  # along x, y, z
    q = (GRID.cell_centers() - CENTER) / semi
    logits = (1.0 - np.linalg.norm(q, axis=-1)) * 20.0
    m = extract_mesh(logits, GRID).mesh
    assert_closed(m)
    np.testing.assert_allclose(m.extents, 2 * semi, rtol=0.03)


def test_shape_cut_by_the_grid_boundary_is_closed():
    # a sphere centred on the +x face of the cube: half of it lies outside the grid
    c = CENTER + np.array([GRID.side_mm / 2, 0.0, 0.0])
    m = extract_mesh(sphere_logits(c, 60.0), GRID).mesh
    assert_closed(m)
    last_centre_x = GRID.index_to_mm(np.array([0, 0, GRID.resolution - 1]))[0]
    assert m.bounds[1, 0] == pytest.approx(last_centre_x, abs=0.01)  # closed at the last cell centre
    # a grid that is full everywhere closes into a box through the outermost cell centres
    full = extract_mesh(np.full((64, 64, 64), 10.0, np.float32), GRID).mesh
    assert_closed(full)
    side = GRID.side_mm - GRID.voxel_size
    assert full.volume == pytest.approx(side**3, rel=1e-3)


def test_keep_largest_component():
    big_c, small_c = CENTER + [-60.0, 0, 0], CENTER + [80.0, 0, 0]
    logits = np.maximum(sphere_logits(big_c, 50.0), sphere_logits(small_c, 25.0))
    res = extract_mesh(logits, GRID)
    assert res.n_components == 2
    assert_closed(res.mesh)
    assert len(res.mesh.split(only_watertight=False)) == 1
    np.testing.assert_allclose(res.mesh.centroid, big_c, atol=0.5)
    both = extract_mesh(logits, GRID, keep_largest=False)
    assert both.n_components == 2 and len(both.mesh.split(only_watertight=False)) == 2
    vol = 4 / 3 * math.pi * (50.0**3 + 25.0**3)
    assert both.mesh.volume == pytest.approx(vol, rel=0.03)


def test_threshold_is_a_probability_applied_in_logit_space():
    r = 80.0
    logits = sphere_logits(CENTER, r)
    radii = []
    for p in (0.2, 0.5, 0.8):
        res = extract_mesh(logits, GRID, threshold=p)
        assert res.level == pytest.approx(math.log(p / (1 - p)))
        radius = np.linalg.norm(res.mesh.vertices - CENTER, axis=1).mean()
        # logits are distances in cells: the surface at logit L lies L cells inside the sphere
        assert radius == pytest.approx(r - res.level * GRID.voxel_size, rel=0.01)
        radii.append(radius)
    assert radii[0] > radii[1] > radii[2]
    assert probability_to_logit(0.5) == 0.0


def test_quantised_logits_still_close():
    # integer logits put many cell values exactly on the level: degenerate triangles are dropped
    logits = np.round(sphere_logits(CENTER, 70.0))
    assert (logits == 0).sum() > 100
    assert_closed(extract_mesh(logits, GRID).mesh)


def _rough_quantised_volumes(n: int, size: int = 16, seed: int = 0):
    """White noise in steps of 1/4, never on the level, inside an "outside" border of two cells:
    fields with many ambiguous cube faces whose tests tie exactly."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        v = (np.round(rng.standard_normal((size,) * 3) * 4) / 4 + 0.125).astype(np.float32)
        v[:2] = v[-2:] = v[:, :2] = v[:, -2:] = v[:, :, :2] = v[:, :, -2:] = -1.0
        yield v


def test_face_test_ties_are_untied_into_closed_meshes():
    """scikit-image's marching cubes leaves holes where the two cubes of a tied ambiguous face
    decide it differently (no value on the level needed); extract_mesh re-runs it on an untied
    copy of the field and returns a closed mesh."""
    from skimage.measure import marching_cubes

    from voxface.mesh import PAD_LOGIT, _closed_topology

    grid = Grid(16, 300.0, (0.0, 0.0, 0.0))
    holes = 0
    for v in _rough_quantised_volumes(40):
        _, faces, _, _ = marching_cubes(np.pad(v, 1, constant_values=PAD_LOGIT), level=0.0)
        holes += _closed_topology(faces.astype(np.int64), int(faces.max()) + 1) is None
        res = extract_mesh(v, grid, keep_largest=False)
        assert res.watertight and res.mesh.is_winding_consistent
    # the seed is one with a hole (scikit-image 0.22-0.26): the repair above really ran
    assert holes >= 1


def test_a_resolution_in_the_place_of_the_grid_is_a_type_error():
    """extract_mesh(logits, 64) (the resolution for the grid) or None was AttributeError: 'int' object has
    no attribute 'resolution'."""
    from voxface.errors import InputTypeError

    logits = sphere_logits(CENTER, 90.0)
    for bad in (64, None):
        with pytest.raises(InputTypeError, match="grid must be a voxface.Grid.*model.grid"):
            extract_mesh(logits, bad)
    assert extract_mesh(logits, GRID).watertight


def test_rough_fields_mesh_without_numpy_warnings():
    """A white-noise field (a scrambled or untrained model's logits) has flat closed scraps of zero
    volume, on which trimesh's normal fix divided by zero: numpy's 'invalid value encountered in
    divide' reached the user (evaluate's progress bar among them). The mesh is made without a word."""
    import warnings

    grid = Grid(32, 400.0, (0.0, 0.0, 0.0))
    for seed in (18, 35):  # seeds whose fields have such a scrap
        v = np.random.default_rng(seed).normal(size=(32, 32, 32)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = extract_mesh(v, grid, keep_largest=False)
        assert len(res.mesh.faces) > 1000


def test_ties_on_a_shape_cut_by_the_grid_boundary_keep_each_cell_on_its_side():
    """Tied faces next to the boundary: the untied copy is scaled by the band's own values, not by
    the padding's (which turned the nudge into a shift of tens of logits and the mesh into the
    whole cube). Every interior cell centre lies on its own side of the mesh."""
    from voxface.occupancy import occupancy_grid

    grid = Grid(16, 160.0, (0.0, 0.0, 0.0))
    inner = (slice(1, -1),) * 3  # border cells sit on the surface (the padding is -1e6)
    for seed in range(3):
        v = np.sign(np.random.default_rng(seed).standard_normal((16,) * 3)).astype(np.float32)
        res = extract_mesh(v, grid, keep_largest=False)
        assert res.watertight
        inside = occupancy_grid(res.mesh.vertices, res.mesh.faces, grid, method="raycast")
        assert np.array_equal(inside[inner], (v > 0)[inner].astype(inside.dtype))
        assert res.mesh.volume < 0.9 * 150.0 ** 3  # not the cube of cell centres


def test_untied_field_keeps_the_surface():
    """The untied copy is the same zero set, scaled, moved by a hair: same signs away from the
    level, vertices within 1e-4 cells."""
    from skimage.measure import marching_cubes

    from voxface.mesh import _surface_cells, _untied

    v, mask = _surface_cells(sphere_logits(CENTER, 70.0)[16:48, 16:48, 16:48], 0.0)
    u = _untied(v, mask, 0.0, 1e-5)  # the band: the corners of the cells the surface crosses
    assert np.abs(u[mask]).max() == pytest.approx(1000.0, rel=1e-3)
    far = np.abs(v) > 1e-3
    assert np.array_equal(u[far] > 0, v[far] > 0)
    a, fa, _, _ = marching_cubes(v, 0.0)
    b, fb, _, _ = marching_cubes(u, 0.0)
    assert a.shape == b.shape and np.array_equal(fa, fb) and np.abs(a - b).max() < 1e-4


def test_smoothing_keeps_rough_meshes_closed_also_once_read_back(tmp_path):
    """Taubin smoothing of a rough surface brings vertices together; the mesh stays closed in
    memory and after a PLY/STL round trip (readers merge coincident vertices), whether it is
    repaired or, failing that, left unsmoothed with a warning."""
    import warnings

    g = Grid(32, 300.0, (0.0, 0.0, 0.0))
    zz, yy, xx = np.meshgrid(*(np.arange(32),) * 3, indexing="ij")
    r = np.sqrt((xx - 15.5) ** 2 + (yy - 15.5) ** 2 + (zz - 15.5) ** 2)
    moved = 0
    for seed in range(6):
        v = (10 - r + np.random.default_rng(seed).standard_normal((32,) * 3) * 1.5).astype(np.float32)
        base = extract_mesh(v, g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = extract_mesh(v, g, smooth=10)
        assert_closed(res.mesh)
        moved += not np.array_equal(res.mesh.vertices, base.mesh.vertices)
        for fmt in ("ply", "stl"):
            back = trimesh.load(export_mesh(res.mesh, tmp_path / f"m.{fmt}"))
            assert back.is_watertight and back.is_winding_consistent, (seed, fmt)
    assert moved >= 5  # smoothing really happened on (nearly) all of them


def test_many_smoothing_iterations_smooth_stably_and_stay_closed(tmp_path):
    """--smooth 30 and more really smooths: open3d's inverse-distance Taubin pulled the ends of
    marching cubes' short edges together (the mesh then came back unsmoothed with a warning, even
    a sphere's at 30 iterations) and blew the mesh up at hundreds of iterations (a real face 177 mm
    out at 300). The uniform filter moves vertices smoothly, keeps the volume and stays closed."""
    import warnings

    logits = sphere_logits(CENTER, 90.0)
    logits += np.random.default_rng(0).standard_normal(logits.shape).astype(np.float32) * 0.3  # a rough sphere
    base = extract_mesh(logits, GRID)
    spread = np.linalg.norm(base.mesh.vertices - CENTER, axis=1).std()
    for iterations, volume_tol in ((30, 0.01), (100, 0.02), (300, 0.05)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no fallback to the unsmoothed mesh
            res = extract_mesh(logits, GRID, smooth=iterations)
        assert_closed(res.mesh)
        assert len(res.mesh.faces) == len(base.mesh.faces)
        move = np.linalg.norm(res.mesh.vertices - base.mesh.vertices, axis=1)
        assert move.max() > 0.1 and move.max() < 2 * GRID.voxel_size, (iterations, move.max())
        assert res.mesh.volume == pytest.approx(base.mesh.volume, rel=volume_tol)
        dist = np.linalg.norm(res.mesh.vertices - CENTER, axis=1)
        assert dist.std() < 0.6 * spread  # rounder than the rough marching-cubes mesh
        back = trimesh.load(export_mesh(res.mesh, tmp_path / f"s{iterations}.stl"))
        assert back.is_watertight and back.is_winding_consistent


def test_smoothing_past_the_limit_is_refused_before_any_work(monkeypatch, capsys, tmp_path):
    """Taubin's filter grows a mesh slowly without end: a face 24% larger by volume at 2,000
    iterations, self-intersecting (negative volume) at 5,000, which --smooth 5000 wrote as it was.
    More than MAX_SMOOTH is an InputError, and on the command line one line before any face."""
    from voxface.errors import InputError
    from voxface.mesh import MAX_SMOOTH, check_mesh_options

    from .conftest import run_cli

    check_mesh_options(smooth=MAX_SMOOTH)
    with pytest.raises(InputError, match=f"smooth must be at most {MAX_SMOOTH} iterations, got {MAX_SMOOTH + 1}"):
        extract_mesh(sphere_logits(CENTER, 90.0), GRID, smooth=MAX_SMOOTH + 1)
    photo = tmp_path / "face.png"
    photo.write_bytes(b"not read")
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photo, "-o", tmp_path / "out", "--smooth", 5000)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "'--smooth'" in lines[0] and "less than or equal to 1000" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_smoothing_and_decimation_keep_the_mesh_closed():
    r = 90.0
    logits = sphere_logits(CENTER, r)
    base = extract_mesh(logits, GRID)
    res = extract_mesh(logits, GRID, smooth=10, decimate=2000)
    assert_closed(res.mesh)
    assert len(res.mesh.faces) <= 2000 < len(base.mesh.faces)
    assert res.mesh.volume == pytest.approx(base.mesh.volume, rel=0.02)
    assert res.seconds["smooth"] > 0 and res.seconds["decimate"] > 0
    smooth_only = extract_mesh(logits, GRID, smooth=5)
    assert_closed(smooth_only.mesh)
    assert len(smooth_only.mesh.faces) == len(base.mesh.faces)
    # a target above the face count leaves the mesh alone
    same = extract_mesh(logits, GRID, decimate=10**7)
    assert len(same.mesh.faces) == len(base.mesh.faces) and same.seconds["decimate"] == 0.0


def test_decimation_that_opens_the_mesh_is_repaired_or_undone(monkeypatch):
    import voxface.mesh as vm

    logits = sphere_logits(CENTER, 80.0)
    base = extract_mesh(logits, GRID)

    def one_hole(mesh, target):  # decimation that loses one triangle: trimesh fills the hole
        out = mesh.copy()
        out.update_faces(np.arange(1, len(out.faces)))
        return out

    monkeypatch.setattr(vm, "_o3d_decimate", one_hole)
    res = extract_mesh(logits, GRID, decimate=len(base.mesh.faces) - 1)
    assert_closed(res.mesh)
    assert len(res.mesh.faces) == len(base.mesh.faces)

    def half(mesh, target):  # beyond repair: the undecimated mesh comes back, with a warning
        out = mesh.copy()
        out.update_faces(out.triangles_center[:, 0] > CENTER[0])
        out.remove_unreferenced_vertices()
        return out

    monkeypatch.setattr(vm, "_o3d_decimate", half)
    with pytest.warns(RuntimeWarning, match="undecimated"):
        res = extract_mesh(logits, GRID, decimate=100)
    assert_closed(res.mesh)
    assert len(res.mesh.faces) == len(base.mesh.faces)


def test_leading_unit_axes_give_the_same_mesh():
    """``model.decode(...)[0]`` is ``(1, R, R, R)``: the README's ``extract_mesh(logits[0], grid)``."""
    vol = sphere_logits(CENTER, 50.0)
    ref = extract_mesh(vol, GRID).mesh
    for shape in ((1, 64, 64, 64), (1, 1, 64, 64, 64)):
        mesh = extract_mesh(vol.reshape(shape), GRID).mesh
        np.testing.assert_array_equal(mesh.vertices, ref.vertices)
        np.testing.assert_array_equal(mesh.faces, ref.faces)


def test_bad_inputs_raise_voxface_errors():
    with pytest.raises(VoxfaceError, match="empty"):
        extract_mesh(np.full((64, 64, 64), -3.0, np.float32), GRID)
    with pytest.raises(VoxfaceError, match="empty"):  # above 0.5 but not above 0.9
        extract_mesh(np.full((64, 64, 64), 1.0, np.float32), GRID, threshold=0.9)
    with pytest.raises(VoxfaceError, match="shape"):
        extract_mesh(np.zeros((32, 32, 32), np.float32), GRID)
    with pytest.raises(VoxfaceError, match="one face; index a batch"):  # a batch of two is not one grid
        extract_mesh(np.zeros((2, 1, 64, 64, 64), np.float32), GRID)
    with pytest.raises(VoxfaceError, match="threshold"):
        extract_mesh(sphere_logits(CENTER, 50.0), GRID, threshold=1.0)
    bad = sphere_logits(CENTER, 50.0)
    bad[0, 0, 0] = np.nan
    with pytest.raises(VoxfaceError, match="NaN"):
        extract_mesh(bad, GRID)


def _noise_logits(seed: int, sigma: float, quantise: bool) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(np.random.default_rng(seed).standard_normal((32, 32, 32)), sigma)
    v = (n / n.std() - 0.8).astype(np.float32)
    return np.round(4 * v) if quantise else v  # quantised: values on the level, non-manifold merges


@pytest.mark.parametrize("quantise", [False, True])
def test_edge_topology_matches_trimesh(quantise):
    """The one-sort components/closedness/winding check equals trimesh's face adjacency results."""
    from skimage.measure import marching_cubes

    from voxface.mesh import _edge_topology

    g = Grid(32, 300.0, (0.0, 0.0, 0.0))
    for seed in range(4):
        vol = np.pad(_noise_logits(seed, 1.5, quantise), 1, constant_values=-1e6)
        v, f, _, _ = marching_cubes(vol, 0.0, allow_degenerate=False)
        m = trimesh.Trimesh(g.index_to_mm(v - 1.0), f, process=True)
        if seed % 2:  # an open, inconsistently wound mesh too
            m.update_faces(np.arange(1, len(m.faces)))
            m.faces[: len(m.faces) // 2] = m.faces[: len(m.faces) // 2, ::-1]
        topo = _edge_topology(m.faces, len(m.vertices))
        want = trimesh.graph.connected_component_labels(m.face_adjacency, node_count=len(m.faces))
        # the same partition: a bijection between the two labellings
        pairs = set(zip(topo.labels.tolist(), want.tolist()))
        assert len(pairs) == len(set(want.tolist())) == len(set(topo.labels.tolist()))
        assert topo.closed == m.is_watertight and topo.consistent == m.is_winding_consistent


@pytest.mark.parametrize("quantise", [False, True])
def test_fast_extraction_equals_the_validated_reference(quantise):
    """The fast path (merge, drop collapsed faces, one edge sort) gives trimesh's validated mesh."""
    from skimage.measure import marching_cubes

    from voxface.mesh import PAD_LOGIT

    g = Grid(32, 300.0, (0.0, 0.0, 0.0))
    untied = 0
    for seed in range(3):
        vol = _noise_logits(seed, 2.0, quantise)
        v, f, _, _ = marching_cubes(np.pad(vol, 1, constant_values=PAD_LOGIT), 0.0, allow_degenerate=False)
        xyz = g.index_to_mm(v - 1.0).astype(np.float32).astype(np.float64)
        ref = trimesh.Trimesh(xyz, f, process=True, validate=True)
        ref_labels = trimesh.graph.connected_component_labels(ref.face_adjacency, node_count=len(ref.faces))
        res = extract_mesh(vol, g, keep_largest=False)
        m = res.mesh
        if not (ref.is_watertight and ref.is_winding_consistent):
            # a hole validation cannot close (tied face tests): extract_mesh unties the field instead
            assert res.watertight and m.is_winding_consistent and quantise
            untied += 1
            continue
        assert res.n_components == len(np.unique(ref_labels))
        assert (len(m.vertices), len(m.faces)) == (len(ref.vertices), len(ref.faces))
        assert res.watertight == bool(ref.is_watertight and ref.is_winding_consistent)
        np.testing.assert_array_equal(m.vertices, ref.vertices)
        np.testing.assert_array_equal(m.faces, ref.faces)
    assert untied < 3  # most quantised fields need no untying: the comparison above ran


def _interior_logits(seed: int, quantise: bool) -> np.ndarray:
    """Smooth random blobs (often several) that stay away from the grid boundary."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(np.random.default_rng(100 + seed).standard_normal((32, 32, 32)), 1.5 + 0.5 * (seed % 3))
    v = n / n.std() - 0.3
    idx = np.abs(np.arange(32) - 15.5)
    box = 12.0 - np.maximum.reduce(np.meshgrid(idx, idx, idx, indexing="ij"))  # > 0 inside a centred box
    v = np.minimum(v, 0.5 * box).astype(np.float32)
    return np.round(4 * v) if quantise else v


@pytest.mark.parametrize("quantise", [False, True])
def test_fast_path_gives_the_validated_mesh(quantise, monkeypatch):
    """Shapes inside the grid take the fast path (no merge, no validation) unless values sit on the
    level; either way the mesh is the one of the validated path on the whole padded volume (the
    extraction as it was before the fast path), vertex for vertex, and so are the components and
    the largest one."""
    import voxface.mesh as vm

    real = vm._validated_marching_cubes_mesh
    validated = []
    monkeypatch.setattr(vm, "_validated_marching_cubes_mesh", lambda *a: validated.append(1) or real(*a))
    g = Grid(32, 300.0, (0.0, 0.0, 0.0))
    for seed in range(6):
        vol = _interior_logits(seed, quantise)
        for threshold in (0.5, 0.3):
            level = probability_to_logit(threshold)
            ref, topo = real(np.pad(vol, 1, constant_values=vm.PAD_LOGIT), None, g, level)
            res = extract_mesh(vol, g, threshold, keep_largest=False)
            assert res.watertight
            if not (topo.closed and topo.consistent):  # tied face tests: closed by untying (see above)
                assert quantise
                continue
            assert res.n_components == len(np.unique(topo.labels))
            np.testing.assert_array_equal(res.mesh.vertices, ref.vertices)
            np.testing.assert_array_equal(res.mesh.faces, ref.faces)
            largest = extract_mesh(vol, g, threshold).mesh
            ref.update_faces(topo.labels == np.argmax(np.bincount(topo.labels)))
            ref.remove_unreferenced_vertices()
            np.testing.assert_array_equal(largest.vertices, ref.vertices)
            np.testing.assert_array_equal(largest.faces, ref.faces)
    if not quantise:
        assert not validated  # smooth values: never on the level, never a merge
    # a head-sized blob in the default grid takes the fast path too
    q = (GRID.cell_centers() - CENTER) / np.array([75.0, 95.0, 85.0])
    validated.clear()
    res = extract_mesh(((1.0 - np.linalg.norm(q, axis=-1)) * 12.0).astype(np.float32), GRID)
    assert not validated and res.watertight and res.mesh.volume > 0


def test_surface_cells_leave_marching_cubes_unchanged():
    """Marching cubes on the cut, masked volume gives exactly the arrays of the whole padded volume,
    also where values sit on the level (either side of it) and where the shape reaches the boundary."""
    from skimage.measure import marching_cubes

    from voxface.mesh import PAD_LOGIT, _surface_cells

    vols = [_interior_logits(s, q) for s in range(3) for q in (False, True)]
    vols += [_noise_logits(s, 1.5, q) for s in range(2) for q in (False, True)]
    for vol in vols:
        padded = np.pad(vol, 1, constant_values=PAD_LOGIT)
        for level in (0.0, 1.0, -0.5):
            if not (vol >= level).any():
                continue
            cut, mask = _surface_cells(padded, level)
            assert cut.shape == mask.shape and mask.sum() < cut.size
            for degenerate in (True, False):
                want = marching_cubes(padded, level, allow_degenerate=degenerate)
                got = marching_cubes(cut, level, allow_degenerate=degenerate, mask=mask)
                for w, x in zip(want[:2], got[:2]):
                    np.testing.assert_array_equal(w, x)


def test_closed_topology_accepts_exactly_closed_consistent_meshes():
    """The fast check equals the full edge topology on closed meshes and refuses anything else."""
    from skimage.measure import marching_cubes

    from voxface.mesh import PAD_LOGIT, _closed_topology, _edge_topology

    for seed in range(4):
        v, f, _, _ = marching_cubes(np.pad(_interior_logits(seed, False), 1, constant_values=PAD_LOGIT), 0.0)
        f = f.astype(np.int64)
        full, fast = _edge_topology(f, len(v)), _closed_topology(f, len(v))
        assert full.closed and full.consistent
        np.testing.assert_array_equal(fast.labels, full.labels)  # the same labels, not only the partition
        assert _closed_topology(f[1:], len(v)) is None  # a hole
        flipped = f.copy()
        flipped[0] = flipped[0, ::-1]
        assert _closed_topology(flipped, len(v)) is None  # one face wound the wrong way
        assert _closed_topology(np.concatenate([f, f[:2]]), len(v)) is None  # edges in four faces
    tet = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert _closed_topology(tet, 4) is not None and _closed_topology(tet, 4).labels.tolist() == [0, 0, 0, 0]
    two = np.concatenate([tet + 4, tet])  # two components, listed second one first
    np.testing.assert_array_equal(_closed_topology(two, 8).labels, _edge_topology(two, 8).labels)
    assert _closed_topology(two, 8).labels.tolist() == [0] * 4 + [1] * 4
    # a component wound inside out is still closed and consistent: only twins' directions count
    assert _closed_topology(np.concatenate([tet, tet[:, ::-1] + 4]), 8) is not None
    assert _closed_topology(np.array([[0, 1, 0], [1, 0, 0]]), 2) is None  # repeated corners
    assert _closed_topology(np.zeros((0, 3), np.int64), 0) is None


def test_merge_check_follows_trimesh():
    from voxface.mesh import _merge_changes

    rng = np.random.default_rng(0)
    xyz = rng.uniform(-150, 150, (1000, 3)).astype(np.float32).astype(np.float64)
    assert not _merge_changes(xyz)
    for delta in (0.0, 1e-10):  # the same point, or one trimesh's merge fuses with it
        near = xyz.copy()
        near[7] = near[500] + delta
        assert _merge_changes(near)
        assert len(trimesh.Trimesh(near, np.array([[7, 500, 1]]), process=True).vertices) == 2
    near = xyz.copy()
    near[7] = near[500] + 1e-4
    assert not _merge_changes(near)


# ------------------------------------------------------------------------------------------------
# export


@pytest.fixture(scope="module")
def sphere_mesh() -> trimesh.Trimesh:
    return extract_mesh(sphere_logits(CENTER + [10.0, 5.0, -5.0], 60.0), GRID, decimate=1500).mesh


@pytest.mark.parametrize("fmt", MESH_FORMATS)
def test_export_round_trip(tmp_path, sphere_mesh, fmt):
    import open3d as o3d

    path = export_mesh(sphere_mesh, tmp_path / "sub" / f"head.{fmt}")
    assert path == tmp_path / "sub" / f"head.{fmt}"
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind
    nv, nf = len(sphere_mesh.vertices), len(sphere_mesh.faces)

    # STL stores every triangle with its own 3 corners (no shared vertices): readers get 3F
    # vertices, so compare after merging identical vertices (trimesh's process=True does that).
    back = trimesh.load(path, force="mesh", process=fmt == "stl")
    assert (len(back.vertices), len(back.faces)) == (nv, nf)
    if fmt == "glb":  # glTF lengths are metres
        back.apply_scale(1000.0)
    if fmt != "stl":  # the same vertices, in order, to float32 precision, and the same faces
        np.testing.assert_allclose(back.vertices, sphere_mesh.vertices, rtol=2.5e-7, atol=1e-9)
        np.testing.assert_array_equal(back.faces, sphere_mesh.faces)
    np.testing.assert_allclose(back.bounds, sphere_mesh.bounds, rtol=2.5e-7, atol=1e-9)
    assert back.is_watertight and back.volume == pytest.approx(sphere_mesh.volume, rel=1e-5)

    o = o3d.io.read_triangle_mesh(str(path))
    if fmt == "stl":
        o = o.remove_duplicated_vertices()
    assert (len(o.vertices), len(o.triangles)) == (nv, nf)


def test_glb_is_written_in_metres_with_the_canonical_axes(tmp_path):
    """glTF's unit is the metre and its axes are y up, front towards +z, asset's right towards -x:
    a GLB of a canonical-mm head held the millimetre values, so viewers (and AR) showed it 1000x
    too big. The file's own position bounds are in metres; the axes are not permuted."""
    import json
    import struct

    c = np.array([40.0, -10.0, 25.0])  # distinct x, y, z: a swapped or flipped axis shows
    m = extract_mesh(sphere_logits(c, 50.0), GRID).mesh
    data = export_mesh(m, tmp_path / "head.glb").read_bytes()
    assert data[:4] == b"glTF"
    (n,) = struct.unpack("<I", data[12:16])
    gltf = json.loads(data[20:20 + n])
    pos = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    np.testing.assert_allclose(pos["min"], m.bounds[0] / 1000.0, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(pos["max"], m.bounds[1] / 1000.0, rtol=1e-6, atol=1e-9)
    assert all(node.get("scale", [1, 1, 1]) == [1, 1, 1] for node in gltf["nodes"])  # no hidden rescale
    back = trimesh.load(tmp_path / "head.glb", force="mesh")
    np.testing.assert_allclose(back.centroid * 1000.0, c, atol=0.5)
    assert back.volume > 0 and back.volume * 1e9 == pytest.approx(m.volume, rel=1e-5)  # outward, metres^3
    assert m.vertices.max() > 1.0  # the input mesh itself is untouched (still mm)


def test_export_unknown_format_and_overrides(tmp_path, sphere_mesh):
    with pytest.raises(VoxfaceError, match=r"mesh\.xyz.*unknown mesh format 'xyz'"):
        export_mesh(sphere_mesh, tmp_path / "mesh.xyz")
    with pytest.raises(VoxfaceError, match="no extension"):
        export_mesh(sphere_mesh, tmp_path / "mesh")
    assert os.listdir(tmp_path) == []
    p = export_mesh(sphere_mesh, tmp_path / "mesh.bin", file_type="PLY")
    assert len(trimesh.load(p, file_type="ply", process=False).faces) == len(sphere_mesh.faces)
    res = MeshResult(sphere_mesh, 0.5)
    assert res.save(tmp_path / "r.obj").exists()


def test_export_is_atomic_on_failure(tmp_path, sphere_mesh, monkeypatch):
    target = tmp_path / "head.ply"
    target.write_bytes(b"previous")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(VoxfaceError, match="head.ply.*No space left"):
        export_mesh(sphere_mesh, target)
    assert target.read_bytes() == b"previous"  # untouched
    assert os.listdir(tmp_path) == ["head.ply"]  # temporary file removed


def test_trimesh_hashes_with_xxhash():
    """trimesh checks its caches by hashing the arrays; without xxhash (a dependency) it falls back
    to blake2b, which made exporting a fresh 64^3 face mesh ~5x slower."""
    import trimesh.caching

    assert trimesh.caching.hash_fast is not trimesh.caching.hash_fallback


def test_writes_onto_a_folder_or_under_a_file_name_the_path_and_the_reason(tmp_path, sphere_mesh):
    """The message names the asked-for path (never the hidden temporary file) and the real reason:
    "File exists" from mkdir under a file, or a rename onto a folder, said nothing useful."""
    (tmp_path / "d.ply").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(VoxfaceError, match=r"d\.ply: cannot write file \(is a folder, where a file is to be written\)"):
        export_mesh(sphere_mesh, tmp_path / "d.ply")
    with pytest.raises(VoxfaceError, match=r"head\.ply: cannot write file \(.*afile is a file, where a folder is needed\)"):
        export_mesh(sphere_mesh, tmp_path / "afile" / "sub" / "head.ply")
    assert sorted(os.listdir(tmp_path)) == ["afile", "d.ply"] and os.listdir(tmp_path / "d.ply") == []


def test_atomic_write_that_cannot_make_its_temporary_names_the_target(tmp_path, monkeypatch):
    """When the hidden temporary file cannot even be created (a read-only folder), the error names
    the asked-for file, never the temporary's random name, and nothing is left behind."""
    import voxface.mesh as vm
    from voxface.errors import VoxfaceError

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path.with_name(f".{path.name}.1234abcd.tmp")))

    monkeypatch.setattr(vm, "_temporary", refuse)
    target = tmp_path / "out.ply"
    with pytest.raises(VoxfaceError) as ei:
        vm.atomic_write_bytes(target, b"data")
    assert str(ei.value) == f"{target}: cannot write file (Permission denied)" and ".tmp" not in str(ei.value)
    with pytest.raises(PermissionError) as pe:
        with vm.atomic_open(target):
            pass
    assert pe.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_failed_writes_leave_no_new_folders_and_created_folders_are_fsynced(tmp_path, sphere_mesh, monkeypatch):
    """A write under folders it had to create (``out/new/sub/head.ply``) that fails -- a full disk,
    Ctrl-C -- left the empty new folders behind; a successful one fsynced only the file's own
    folder, not the new folders' entries in theirs (a crash could lose the whole subtree)."""
    import errno

    import voxface.mesh as vm

    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "new" / "sub" / "head.ply"
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(VoxfaceError, match=r"head\.ply: cannot write file \(No space left on device\)"):
        export_mesh(sphere_mesh, target)
    with pytest.raises(VoxfaceError, match=r"a\.npz: cannot write file"):
        vm.atomic_write_files([(tmp_path / "out" / "n1" / "a.npz", b"x"), (target, b"y")])
    monkeypatch.setattr(os, "fsync", real_fsync)
    with pytest.raises(KeyboardInterrupt):
        with vm.atomic_open(target) as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path / "out") == []  # nothing new: no file, no temporary, no folder

    synced = []
    monkeypatch.setattr(vm, "_fsync_folder", lambda folder: synced.append(Path(folder)))
    export_mesh(sphere_mesh, target)
    assert target.exists()
    # the new folders' entries (in out/ and out/new/), then the file's entry in out/new/sub/
    assert synced == [tmp_path / "out", tmp_path / "out" / "new", target.parent]


def test_a_broken_link_where_a_folder_is_needed_is_named_as_such(tmp_path, sphere_mesh):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(VoxfaceError, match=r"head\.ply: cannot write file \(.*gone is a broken link, where a folder"):
        export_mesh(sphere_mesh, tmp_path / "gone" / "sub" / "head.ply")
    assert sorted(os.listdir(tmp_path)) == ["gone"]


@pytest.mark.parametrize("vertices, faces, message", [
    (np.zeros((3, 3)), [[0, 1, 5]], r"faces index vertex 5, but there are 3 vertices \(indices 0..2\)"),
    (np.zeros((3, 3)), [[0, 1, -1]], r"faces index vertex -1"),
    (np.zeros((3, 2)), [[0, 1, 2]], r"vertices must have shape \(V, 3\), got \(3, 2\)"),
    (np.zeros((3, 3)), [0, 1, 2], r"faces must have shape \(F, 3\) \(triangles\), got \(3,\)"),
    (np.zeros((3, 3)), [[0.0, 1.5, 2.0]], r"faces must hold whole vertex indices"),
    ("abc", [[0, 1, 2]], r"expected \(vertices, faces\) arrays of numbers"),
])
def test_a_vertices_faces_pair_that_is_no_mesh_is_one_line(vertices, faces, message) -> None:
    """trimesh takes a pair as it is: a face naming a missing vertex failed later inside trimesh
    (an IndexError in a render or a metric), fractional indices were truncated, (V, 2) made a mesh."""
    from voxface.mesh import as_trimesh

    with pytest.raises(VoxfaceError, match=message):
        as_trimesh((vertices, faces))
    m = as_trimesh((np.eye(3), np.array([[0.0, 1.0, 2.0]])))  # whole-number floats are indices
    assert m.faces.dtype == np.int64 and m.faces.tolist() == [[0, 1, 2]]


def test_logits_that_are_no_grid_are_input_errors() -> None:
    """Wrong-shape, integer or NaN logits raised a bare VoxfaceError, where the API promises an
    InputError (a ValueError) / InputTypeError (a TypeError) for arguments it cannot use."""
    from voxface.errors import InputError, InputTypeError
    from voxface.mesh import extract_mesh

    grid = Grid.from_config(FrameConfig(), 8)
    with pytest.raises(InputError, match=r"logits must have shape \(8, 8, 8\).*got \(2, 8, 8, 8\)"):
        extract_mesh(np.zeros((2, 8, 8, 8), np.float32), grid)
    with pytest.raises(InputTypeError, match="logits must be floating point, got int64"):
        extract_mesh(np.zeros((8, 8, 8), np.int64), grid)
    bad = np.zeros((8, 8, 8), np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="logits contain NaN"):
        extract_mesh(bad, grid)


def test_names_up_to_the_file_systems_limit_are_written_longer_ones_are_one_error(tmp_path):
    """A mesh name of 242-255 bytes is legal, but its hidden temporary (``.<name>.<8 hex>.tmp``)
    was 14 bytes longer and the write failed as 'File name too long'; the temporary's name is now
    cut to fit. A name past 255 bytes stays one VoxfaceError naming the file, nothing left."""
    mesh = trimesh.creation.icosphere()
    for stem in ("a" * 251, "é" * 125 + "a"):  # 255 bytes with ".ply" (ASCII, and 2-byte UTF-8)
        target = tmp_path / f"{stem}.ply"
        assert len(os.fsencode(target.name)) == 255
        export_mesh(mesh, target)
        assert len(trimesh.load(target).faces) == len(mesh.faces)
    too_long = tmp_path / ("b" * 252 + ".ply")
    with pytest.raises(VoxfaceError) as ei:
        export_mesh(mesh, too_long)
    assert str(ei.value) == f"{too_long}: cannot write file (File name too long)"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a" * 251 + ".ply", "é" * 125 + "a.ply"])


def test_export_takes_every_mesh_form_the_api_hands_out_and_refuses_others(tmp_path):
    """Functions that take a mesh take a Trimesh, a MeshResult, a Reconstruction or (vertices,
    faces) (README); export_mesh took only the first two and failed on the others in an
    AttributeError ('tuple' object has no attribute 'export'), not the documented InputTypeError."""
    from types import SimpleNamespace

    from voxface.errors import InputError, InputTypeError

    sphere = trimesh.creation.icosphere()
    forms = {"pair": (sphere.vertices, sphere.faces), "result": MeshResult(sphere, 0.5),
             "reconstruction": SimpleNamespace(mesh=sphere)}  # what as_trimesh reads of a Reconstruction
    for name, form in forms.items():
        for fmt in MESH_FORMATS:
            back = trimesh.load(export_mesh(form, tmp_path / f"{name}.{fmt}"), force="mesh")
            assert len(back.faces) == len(sphere.faces), (name, fmt)
    for bad in (None, "head.ply", sphere.vertices):
        with pytest.raises(InputTypeError, match="expected a mesh"):
            export_mesh(bad, tmp_path / "bad.ply")
    with pytest.raises(InputError, match=r"vertices must have shape \(V, 3\)"):
        export_mesh((sphere.vertices[:, :2], sphere.faces), tmp_path / "bad.ply")
    assert not (tmp_path / "bad.ply").exists()


def test_probabilities_passed_as_logits_are_refused_and_a_binary_grid_still_meshes():
    """sigmoid(logits) passed for the logits (notebook 01 computes exactly that grid) made every cell
    inside at the default threshold, and extract_mesh returned the grid's whole 400 mm cube as the
    head, silently. It is an InputError now; a 0/1 occupancy grid still meshes (the surface midway)."""
    from voxface.errors import InputError

    logits = sphere_logits(CENTER, 90.0)
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    for p in (probs, probs.astype(np.float32)):
        with pytest.raises(InputError, match=r"logits all lie in \[0, 1\].*look like occupancy probabilities"):
            extract_mesh(p, GRID)
    binary = extract_mesh((logits > 0).astype(np.float32), GRID).mesh
    assert_closed(binary)
    assert binary.volume == pytest.approx(4 / 3 * math.pi * 90.0**3, rel=0.15)


def test_a_loaded_glb_scene_is_taken_as_its_mesh(tmp_path) -> None:
    """``trimesh.load`` of a .glb (voxface's own export included) returns a Scene, which every
    mesh-taking function refused ('got Scene') unless loaded with force='mesh'."""
    from voxface.errors import InputError
    from voxface.mesh import as_trimesh

    sphere = extract_mesh(sphere_logits(CENTER, 90.0), GRID).mesh
    path = export_mesh(sphere, tmp_path / "head.glb")
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene)
    m = as_trimesh(scene)
    assert isinstance(m, trimesh.Trimesh) and m.is_watertight and len(m.faces) == len(sphere.faces)
    assert m.bounding_box.extents == pytest.approx(sphere.bounding_box.extents / 1000.0, rel=1e-4)  # GLB: metres
    with pytest.raises(InputError, match="holds no triangle mesh"):
        as_trimesh(trimesh.Scene())


@pytest.mark.parametrize("p", [0.0, 1.0, -0.5, 2.0, float("nan")])
def test_probability_to_logit_refuses_what_is_no_probability(p) -> None:
    """It raised a bare 'math domain error' (or returned NaN): each caller had to check first."""
    from voxface.errors import InputError

    with pytest.raises(InputError, match="strictly between 0 and 1"):
        probability_to_logit(p)
    assert probability_to_logit(0.5) == 0.0 and probability_to_logit(0.9) == pytest.approx(math.log(9.0))


@pytest.mark.parametrize("fill", [-1e4, -np.inf])
def test_a_grid_far_below_the_threshold_is_the_empty_grid_error(fill) -> None:
    # a saturated model's logits (all below about -710, or -inf) were math.exp's OverflowError
    with pytest.raises(VoxfaceError, match=r"empty occupancy grid: .*\(highest: 0\)"):
        extract_mesh(np.full((64, 64, 64), fill, np.float32), GRID)


def test_export_and_report_writers_refuse_a_name_ending_in_a_slash(tmp_path) -> None:
    """export_mesh(m, "e.ply/") (and MeshResult.save, EvalReport.save, every atomic_write_bytes
    caller) wrote a file e.ply where the name said a folder: Path() drops the slash."""
    import trimesh

    from voxface.errors import InputError
    from voxface.mesh import atomic_write_bytes, export_mesh

    m = trimesh.creation.icosphere(subdivisions=1)
    for call in (lambda p: export_mesh(m, p), lambda p: atomic_write_bytes(p, b"{}")):
        with pytest.raises(InputError, match=r"names a folder \(it ends in '/'\); give a file name"):
            call(f"{tmp_path}/e.ply/")
    assert list(tmp_path.iterdir()) == []
    assert export_mesh(m, f"{tmp_path}/e.ply").is_file()
