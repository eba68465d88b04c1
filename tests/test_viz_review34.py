"""voxface.viz and the latent commands' pictures, review 34: rendering reads meshes, never changes them."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import trimesh

import voxface.viz as viz

from .conftest import run_cli


def _head(subdivisions: int = 3, radius: float = 80.0) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions, radius=radius)
    m.vertices[:, 1] *= 1.2  # not a sphere: every view differs
    m._cache.clear()
    return m


def test_rendering_caches_nothing_on_the_callers_mesh_so_its_ply_is_unchanged():
    """Every renderer asked the caller's trimesh for its vertex normals, which trimesh caches on the
    mesh with the face normals, angles, triangles and cross products they come from (3 MB a face of
    the model's grid, which the latent commands held to the end), and a mesh's PLY holds its vertex
    normals once they are cached: ``render_mesh(rec.mesh)`` (or ``rec.preview()``) before
    ``rec.save('x.ply')`` wrote another file (24,560 bytes of an icosphere became 32,318)."""
    m = _head()
    ply = m.export(file_type="ply")
    pose = {"rotation": np.diag([1.0, -1.0, -1.0]), "scale": 0.8, "translation": np.zeros(2)}
    viz.render_mesh(m, size=16)
    viz.render_views(m, [(0, 0), (60, 10)], 16)
    viz.mesh_turntable(m, n=2, size=16)
    viz.render_sequence([m, m], [(30, 10)], 16)
    viz.render_overlay(np.full((16, 16, 3), 128, np.uint8), m, **pose)
    viz.shared_framing([m])
    assert not m._cache.cache, sorted(m._cache.cache)
    assert m.export(file_type="ply") == ply


def test_a_render_depends_on_the_geometry_alone_not_on_normals_the_mesh_carries():
    """Normals cached on the mesh (set by hand, loaded from a file, left by an earlier render of a
    mesh whose vertices trimesh did not see change) were drawn instead of the geometry's."""
    m = _head()
    fresh = viz.render_mesh(m, size=24, yaw=30)
    overlay = viz.render_overlay(np.zeros((24, 24, 3), np.uint8), m, np.diag([1.0, -1.0, -1.0]), 0.8, np.zeros(2))
    m.vertex_normals = np.tile([1.0, 0.0, 0.0], (len(m.vertices), 1))
    assert np.array_equal(viz.render_mesh(m, size=24, yaw=30), fresh)
    assert np.array_equal(viz.render_sequence([m], [(30, 0)], 24)[0][0], fresh)
    again = viz.render_overlay(np.zeros((24, 24, 3), np.uint8), m, np.diag([1.0, -1.0, -1.0]), 0.8, np.zeros(2))
    assert np.array_equal(again, overlay)


def test_vertex_normals_are_trimeshs_bit_for_bit():
    """The renderer's normals, derived from the arrays, are trimesh's ``vertex_normals`` exactly (the
    pictures stay byte for byte those of before), zero-area faces and unused vertices included."""
    m = _head(2)
    v = np.vstack([m.vertices, [[500.0, 0, 0]]])  # an unused vertex
    f = np.vstack([m.faces, [[0, 0, 1]], [[2, 3, 3]]])  # two zero-area faces
    ref = trimesh.Trimesh(v, f, process=False).vertex_normals
    got = viz._vertex_normals(np.asarray(v, np.float64), np.asarray(f, np.int64))
    assert got.dtype == np.float64 and np.array_equal(got, ref)


def test_rendering_many_meshes_holds_one_meshs_derived_arrays():
    """Memory beyond the pictures does not grow with the number of meshes rendered."""
    meshes = [_head(4, 80.0 + i) for i in range(12)]

    def peak(ms) -> int:
        tracemalloc.start()
        try:
            viz.render_sequence(ms, [(0, 0)], 8, supersample=1)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    viz.render_sequence(meshes[:1], [(0, 0)], 8)  # imports, open3d warm-up
    few, many = peak(meshes[:2]), peak(meshes)
    per_mesh = 20 * len(meshes[0].faces) * 8 * 9  # well under one mesh's triangles (F x 3 x 3 float64)
    assert many - few < per_mesh, (few, many)
    assert all(not m._cache.cache for m in meshes)


def test_render_sequence_of_pairs_is_the_render_of_the_meshes_and_checks_every_pair_first(monkeypatch):
    """Meshes given as ``(vertices, faces)`` pairs are read as arrays (no Trimesh built, nothing kept):
    the same framing and pictures as the meshes, and a bad pair is refused before anything is drawn."""
    m = _head(2)
    pair = (np.asarray(m.vertices), np.asarray(m.faces))
    framing = viz.shared_framing([m])
    assert all(np.array_equal(a, b) for a, b in zip(viz.shared_framing([pair]), framing))
    ref = viz.render_sequence([m], [(0, 0)], 16)[0][0]
    assert np.array_equal(viz.render_sequence([pair], [(0, 0)], 16)[0][0], ref)
    bad = (np.asarray(m.vertices), np.asarray(m.faces) + len(m.vertices))
    calls = []
    real = viz._render
    monkeypatch.setattr(viz, "_render", lambda *a: calls.append(1) or real(*a))
    for given in (framing, None):
        with pytest.raises(viz.InputError, match="faces index vertex"):
            viz.render_sequence([m, bad], [(0, 0)], 8, framing=given)
    assert calls == []  # refused before the first mesh was rendered


# ------------------------------------------------------------------------------------------------
# the latent commands


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_latent_render_is_render_sequence_and_leaves_the_faces_meshes_alone(bundled):
    """The latent commands rendered copies of the meshes in chunks of 16 (render_sequence cached
    normals on the meshes it was given); render_sequence caches nothing now, and they render the
    faces themselves, under one framing: the same pictures, nothing left on the meshes."""
    from voxface.cli import _latent
    from voxface.latent import sample

    recs = _latent._decode(bundled, sample(bundled, 3, seed=5), 0.5, {"resolution": None, "upsample": "decoder"})
    views = [(0.0, 0.0), (30.0, 10.0)]
    images = _latent._render(recs, views, 24)
    ref = viz.render_sequence([(r.mesh.vertices.copy(), r.mesh.faces.copy()) for r in recs], views, 24)
    assert [[a.tobytes() for a in row] for row in images] == [[a.tobytes() for a in row] for row in ref]
    assert all(not r.mesh._cache.cache for r in recs)
    entry = _latent._mesh_entry("x.ply", recs[0])
    assert entry == {"file": "x.ply", "vertices": len(recs[0].mesh.vertices), "faces": len(recs[0].mesh.faces),
                     "watertight": True}
    assert not recs[0].mesh._cache.cache


@pytest.mark.parametrize("drop", [0, 1])
def test_the_manifests_closedness_is_trimeshs(drop):
    """``_mesh_entry`` finds closedness from the face array: trimesh's ``is_watertight`` (a closed
    mesh, and one with a face removed), without caching edges on the mesh."""
    import types

    from voxface.cli import _latent

    m = _head(2)
    m = trimesh.Trimesh(m.vertices, m.faces[drop:], process=False)
    entry = _latent._mesh_entry("a.ply", types.SimpleNamespace(mesh=m))
    assert not m._cache.cache
    assert entry["watertight"] is (drop == 0) is trimesh.Trimesh(m.vertices, m.faces, process=False).is_watertight


def test_transfer_leaves_no_derived_arrays_on_its_faces(bundled, tmp_path, monkeypatch, capsys):
    """``voxface transfer`` rendered its triptych with render_sequence on the three faces' meshes,
    which kept the normals and triangles it cached to the end of the run."""
    from voxface.cli import _latent
    from voxface.latent import sample

    codes = sample(bundled, 2, seed=6, temperature=0.7)
    for i in range(2):
        np.savez(tmp_path / f"{i}.npz", z_id=codes.z_id[i].numpy(), z_exp=codes.z_exp[i].numpy())
    held = []
    real = _latent._decode

    def spy(*args, **kwargs):
        recs = real(*args, **kwargs)
        held.extend(recs)
        return recs

    monkeypatch.setattr(_latent, "_decode", spy)
    code, _, err = run_cli(monkeypatch, capsys, "transfer", tmp_path / "0.npz", tmp_path / "1.npz", "--steps", 2,
                           "-o", tmp_path / "out", "--size", 32)
    assert code == 0, err
    assert len(held) == 5 and (tmp_path / "out" / "triptych.png").is_file()
    assert [sorted(r.mesh._cache.cache) for r in held] == [[]] * 5


def test_a_vertex_no_face_names_is_not_framed():
    """A scan's file may keep vertices no face names (faces deleted in an editor, stray points):
    the framing took them in, and a head with one such vertex 900 mm away was drawn as a speck
    (2% of the picture instead of 74%); shared_framing (render_sequence, plot_meshes_plotly) too."""
    m = _head(3)
    stray = trimesh.Trimesh(np.vstack([m.vertices, [[900.0, 0.0, 0.0]]]), m.faces, process=False)
    assert np.array_equal(viz.render_mesh(stray, size=32, yaw=30), viz.render_mesh(m, size=32, yaw=30))
    assert np.array_equal(viz.render_views(stray, [(0, 0)], 32, fov_deg=40)[0],
                          viz.render_views(m, [(0, 0)], 32, fov_deg=40)[0])
    c, r = viz.shared_framing([stray, (np.asarray(stray.vertices), np.asarray(stray.faces))])
    c0, r0 = viz.shared_framing([m])
    assert np.array_equal(c, c0) and r == r0
    assert np.array_equal(viz.render_sequence([stray], [(0, 0)], 32)[0][0], viz.render_mesh(m, size=32))
    # a point set (no faces) is still framed by its points
    assert viz.shared_framing([(np.asarray(m.vertices), np.zeros((0, 3), int))])[1] == r0


def test_sample_holds_its_turntable_views_compressed_and_draws_the_same_grid(bundled, tmp_path, monkeypatch, capsys):
    """``voxface sample`` held the twelve turntable views of every face as pictures until the GIF
    was written (0.9 MB a face at ``--size 160``: 0.9 GB for ``-n 1024``). Each face's views are
    compressed as they are rendered (about a fifth of the bytes) and unpacked a grid at a time:
    grid.png is the grid of the pictures render_sequence draws."""
    from PIL import Image

    from voxface.cli import _latent

    real, held = _latent._render, []

    def spy(recs, views, size, keep=lambda image: image):
        out = real(recs, views, size, keep=keep)
        held.append((recs, views, [list(row) for row in out]))  # (the grids let each go once drawn)
        return out

    monkeypatch.setattr(_latent, "_render", spy)
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 3, "--seed", 7, "-o", tmp_path / "s", "--size", 48)
    assert code == 0, err
    (recs, views, packed), = held
    assert len(packed) == 3 and all(len(row) == 12 for row in packed)
    assert all(isinstance(p[0], bytes) and len(p[0]) < 48 * 48 * 3 / 2 for row in packed for p in row)
    images = viz.render_sequence(recs, views, 48)
    grid = viz.image_grid([row[1] for row in images], ncols=2, labels=[f"seed 7 #{i}" for i in range(3)],
                          title=None)
    png = np.asarray(Image.open(tmp_path / "s" / "grid.png"))
    assert np.array_equal(png[-grid.shape[0]:], grid)  # below the caption: the 30-degree views as drawn
    assert np.array_equal(_latent._unpacked(_latent._packed(images[0][0])), images[0][0])
