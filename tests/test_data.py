"""The synthetic data engine: ICT loader and cache, closed head, occupancy, sampler, pairs, cache.

Runs on a toy morphable model written in ICT-FaceKit's folder format; the tests marked ``ict``
repeat the key checks on the real ICT-FaceKit when ``VOXFACE_ICT_ROOT`` points at it.
"""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

import numpy as np
import pytest
import trimesh

from voxface.config import FrameConfig
from voxface.data import BLOCK, BlockSampler
from voxface.data.cache import CachedDataset, write_cache
from voxface.data.head import HeadModel
from voxface.data.ict import find_root, load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.errors import DataError
from voxface.frame import HEAD_RMS_RADIUS_MM, Grid
from voxface.occupancy import occupancy_grid, pack_occupancy, unpack_occupancy

from .toy_ict import EXPRESSIONS

REAL_ICT = os.environ.get("VOXFACE_ICT_ROOT")
needs_ict = pytest.mark.skipif(
    not (REAL_ICT and Path(REAL_ICT).exists()),
    reason="ICT-FaceKit not available: set VOXFACE_ICT_ROOT (make test unpacks ../shared/data/ict-facekit)",
)


@pytest.fixture(scope="module")
def toy(toy_root, cache_env):
    return load_ict(toy_root)


@pytest.fixture(scope="module")
def toy_sampler(toy):
    return FaceSampler(toy, SamplerConfig(image_size=64), seed=3)


# -- loader ---------------------------------------------------------------------------------------

def test_loader_reads_the_folder_layout(toy, toy_root):
    assert toy.neutral.shape == (26719, 3)
    assert toy.identity.shape == (100, 26719, 3)
    assert toy.expression.shape == (53, 26719, 3)
    assert toy.expression_names == EXPRESSIONS
    assert toy.landmarks.shape == (68,)
    assert toy.incompatible == [(0, 2)]  # shape00_L, shape01_L
    # quads are split into two triangles, triangles kept
    assert toy.faces.shape[1] == 3 and toy.faces.max() < 14062
    assert find_root(toy_root) == find_root(toy_root / "FaceXModel")


def test_loader_cache_is_read_and_keyed_by_content(toy_root, cache_env, monkeypatch):
    first = load_ict(toy_root)
    assert list(cache_env.glob("ict-*.npz")), "first load writes the compact cache"

    def no_parsing(*a, **k):
        raise AssertionError("a cached model was parsed from its OBJ files again")

    with monkeypatch.context() as m:
        m.setattr("voxface.data.ict._read_obj", no_parsing)
        again = load_ict(toy_root)  # from the cache alone
    np.testing.assert_array_equal(again.neutral, first.neutral)
    np.testing.assert_array_equal(again.identity, first.identity)
    np.testing.assert_array_equal(again.expression, first.expression)
    # a changed source file gives a new key, so stale caches are never read
    f = toy_root / "FaceXModel" / "identity005.obj"
    text = f.read_text()
    f.write_text(text.replace("v ", "v  ", 1))
    n_before = len(list(cache_env.glob("ict-*.npz")))
    load_ict(toy_root)
    assert len(list(cache_env.glob("ict-*.npz"))) == n_before + 1
    f.write_text(text)
    np.testing.assert_array_equal(again.neutral, load_ict(toy_root).neutral)
    # a new format of the parsed arrays is parsed again into its own file, and keeps the model's key
    # (data caches record the key: a format change of ours must not make them refuse to grow)
    with monkeypatch.context() as m:
        m.setattr("voxface.data.ict.CACHE_VERSION", 99)
        newer = load_ict(toy_root)
    assert newer.key == first.key and list(cache_env.glob("ict-v99-*.npz"))


def test_loader_errors_name_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("VOXFACE_ICT_ROOT", raising=False)
    with pytest.raises(DataError, match="VOXFACE_ICT_ROOT"):
        load_ict()
    with pytest.raises(DataError, match=str(tmp_path)):
        load_ict(tmp_path)


# -- closed head and canonical frame --------------------------------------------------------------

def test_closed_head_is_watertight_and_canonical(toy, toy_sampler):
    head = toy_sampler.head
    for i in range(10):
        a, e = toy_sampler.id_coeffs(i), toy_sampler.exp_coeffs(i)
        person = head.person(a)
        m = trimesh.Trimesh(person.closed_head(e), head.faces, process=False)
        assert m.is_watertight and m.is_winding_consistent and m.volume > 0
        # origin and scale come from the neutral-expression head of the identity
        v0 = person.closed_head(None)[:-1]
        np.testing.assert_allclose(v0.mean(0), 0, atol=1e-3)
        rms = np.sqrt(((v0 - v0.mean(0)) ** 2).sum(1).mean())
        assert rms == pytest.approx(HEAD_RMS_RADIUS_MM, rel=1e-4)


# -- occupancy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("res", [32, 64])
def test_occupancy_matches_independent_inside_tests(toy_sampler, res):
    head = toy_sampler.head
    grid = Grid.from_config(FrameConfig(), res)
    v = head.person(toy_sampler.id_coeffs(4)).closed_head(toy_sampler.exp_coeffs(4))
    occ = occupancy_grid(v, head.faces, grid)
    ref = occupancy_grid(v, head.faces, grid, method="raycast")
    assert occ.shape == (res,) * 3 and occ.dtype == np.uint8
    assert (occ != ref).sum() == 0
    mesh = trimesh.Trimesh(v, head.faces, process=False)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, res, (400, 3))
    pts = grid.index_to_mm(idx)
    inside = mesh.contains(pts)
    agree = (occ[idx[:, 0], idx[:, 1], idx[:, 2]].astype(bool) == inside).mean()
    assert agree >= 0.995
    # volume of the occupied cells approximates the mesh volume
    assert occ.sum() * grid.voxel_size**3 == pytest.approx(mesh.volume, rel=0.08 if res == 32 else 0.03)


def test_occupancy_of_an_analytic_box():
    grid = Grid.from_config(FrameConfig(side_mm=100.0, center_mm=(0.0, 0.0, 0.0)), 20)  # 5 mm cells
    box = trimesh.creation.box(extents=(42.0, 22.0, 12.0))  # centred at 0
    occ = occupancy_grid(box.vertices, box.faces, grid)
    # cell centres at +-2.5, +-7.5, ... : inside |x|<21 -> 8 columns, |y|<11 -> 4, |z|<6 -> 2
    assert occ.sum() == 8 * 4 * 2
    zs, ys, xs = np.nonzero(occ)
    assert xs.min() == 6 and xs.max() == 13 and ys.min() == 8 and zs.min() == 9


@pytest.mark.parametrize("method", ["scanline", "raycast"])
@pytest.mark.parametrize("center", [(0, -30, -55), (180, -30, -55), (0, -30, -255), (0, -30, 140), (0, 170, -55),
                                    (-200, -230, -255)],
                         ids=["inside", "past-x", "below-z", "past-z", "past-y", "corner"])
def test_occupancy_of_a_sphere_cut_by_the_grid_boundary(method, center):
    """A mesh reaching outside the cube: the cells inside it are exactly those whose centres are
    inside the sphere (cells within 1 mm of the surface, where the polyhedron differs, left out).
    The raycast reference started its rays one cell below the cube, inside a mesh reaching further
    down, and filled those columns inside out (6656 wrong cells for the below-z sphere)."""
    grid = Grid.from_config(FrameConfig(), 32)
    sphere = trimesh.creation.icosphere(5, radius=100.0)
    sphere.apply_translation(center)
    occ = occupancy_grid(sphere.vertices, sphere.faces, grid, method=method)
    dist = np.linalg.norm(grid.cell_centers() - np.asarray(center, float), axis=-1)
    clear = np.abs(dist - 100.0) > 1.0
    np.testing.assert_array_equal(occ[clear], (dist < 100.0)[clear].astype(np.uint8))
    assert occ.sum() > 0
    # a mesh without triangles has nothing inside (the raycast's lowest vertex was np.min of nothing)
    empty = occupancy_grid(np.zeros((0, 3)), np.zeros((0, 3), np.int64), grid, method=method)
    assert empty.shape == (32, 32, 32) and not empty.any()


def test_pack_round_trip():
    occ = (np.random.default_rng(0).random((16, 16, 16)) > 0.5).astype(np.uint8)
    bits = pack_occupancy(occ)
    assert bits.nbytes == 16**3 // 8
    np.testing.assert_array_equal(unpack_occupancy(bits, 16), occ)


# -- sampler --------------------------------------------------------------------------------------

def test_sample_contents(toy_sampler):
    s = toy_sampler.sample(5, 32, n_points=256)
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == np.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["occ"].shape == (32, 32, 32) and s["occ_swap"].shape == (32, 32, 32)
    assert s["points"].shape == (256, 3) and s["normals"].shape == (256, 3)
    np.testing.assert_allclose(np.linalg.norm(s["normals"], axis=1), 1, atol=1e-4)
    R = s["rotation"]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
    assert np.linalg.det(R) == pytest.approx(1, abs=1e-5)
    assert s["mask"].mean() > 0.2, "the head covers a good part of the crop"
    # landmarks project inside the crop and onto the head
    lm = s["landmarks_2d"]
    assert ((lm >= 0) & (lm < 64)).all()
    on_head = s["mask"][lm[:, 1].astype(int), lm[:, 0].astype(int)]
    assert on_head.mean() > 0.9


def test_sample_values_are_plain_numpy_so_an_unbatched_loader_gives_tensors(toy_sampler):
    """``points`` was trimesh's TrackedArray (astype keeps the subclass): a DataLoader without
    batching (``batch_size=None``) passed it on as it was, every other key as a tensor."""
    import torch

    s = toy_sampler.sample(5, 32, n_points=16)
    odd = {k: type(v).__name__ for k, v in s.items() if type(v) is not np.ndarray and type(v).__module__ != "numpy"}
    assert not odd, odd
    converted = torch.utils.data.default_convert(s)
    assert all(isinstance(v, torch.Tensor) for v in converted.values()), \
        {k: type(v).__name__ for k, v in converted.items()}


def test_expressions_respect_incompatible_pairs(toy_sampler):
    for i in range(300):
        e = toy_sampler.exp_coeffs(i)
        assert not (e[0] > 0 and e[2] > 0)
        assert ((e >= 0) & (e <= 1)).all()
    neutral = np.mean([not toy_sampler.exp_coeffs(i).any() for i in range(400)])
    assert 0.07 < neutral < 0.25


def test_samples_are_pure_functions_of_seed_and_index(toy, toy_sampler):
    other = FaceSampler(toy, SamplerConfig(image_size=64), seed=3)
    for i in (0, 7, 123):
        a, b = toy_sampler.sample(i, 32), other.sample(i, 32)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    c = FaceSampler(toy, SamplerConfig(image_size=64), seed=4).sample(7, 32)
    assert not np.array_equal(c["image"], toy_sampler.sample(7, 32)["image"])


def test_blocks_pair_identities_and_swaps(toy_sampler):
    s = [toy_sampler.sample(i, 32) for i in range(4)]
    np.testing.assert_array_equal(s[0]["id_coeffs"], s[1]["id_coeffs"])
    assert not np.array_equal(s[0]["id_coeffs"], s[2]["id_coeffs"])
    grid = Grid.from_config(FrameConfig(), 32)
    for i in range(4):
        person = toy_sampler.head.person(s[i]["id_coeffs"])
        want = occupancy_grid(person.closed_head(s[i ^ 2]["exp_coeffs"]), toy_sampler.head.faces, grid)
        np.testing.assert_array_equal(s[i]["occ_swap"], want)


def test_block_sampler_is_deterministic_and_keeps_blocks():
    bs = BlockSampler(64, seed=1)
    bs.set_epoch(3)
    a = list(bs)
    assert sorted(a) == list(range(64))
    assert all(a[k] // BLOCK == a[k + 1] // BLOCK for k in range(0, 64, BLOCK) for k in [k, k + 1, k + 2])
    assert a == list(bs)
    bs.set_epoch(4)
    assert a != list(bs)
    r0, r1 = BlockSampler(64, seed=1, rank=0, num_replicas=2), BlockSampler(64, seed=1, rank=1, num_replicas=2)
    assert set(r0).isdisjoint(set(r1)) and len(list(r0)) == len(r0) == 32


# -- renderer -------------------------------------------------------------------------------------

def _posed(sampler, yaw=25.0, pitch=-10.0, dist=600.0):
    """Camera-frame vertices and a face crop box of the mean face of ``sampler``."""
    from voxface.crop import crop_box_from_landmarks
    from voxface.frame import FRONTAL_ROTATION, euler_matrix

    R = FRONTAL_ROTATION @ euler_matrix(yaw, pitch, 5.0)
    cam = sampler.head.full_vertices(None, None) @ R.T + np.array([3.0, -2.0, dist])
    lm = cam[sampler.ict.landmarks]
    return cam, crop_box_from_landmarks(lm[:, :2] / lm[:, 2:3])


@pytest.mark.parametrize("G", [64, 128])
def test_rasterizer_matches_embree_ray_casting(toy_sampler, G):
    from voxface.data.render import Rasterizer, RayScene

    cam, box = _posed(toy_sampler)
    f = toy_sampler.render_faces
    r = Rasterizer(cam, f, box, two_sided=toy_sampler._open_faces)
    a = r.hits(G)
    b = RayScene(cam.astype(np.float32), f[r.ids], box).hits(G)
    assert a.sample.size > 0.3 * G * G
    assert abs(a.sample.size - b.sample.size) <= 2  # a ray grazing an edge may differ, not more
    common, ia, ib = np.intersect1d(a.sample, b.sample, return_indices=True)
    same = a.prim[ia] == r.ids[b.prim[ib]]
    assert same.mean() > 0.998  # the rest: samples on an edge shared by two triangles
    np.testing.assert_allclose(a.depth[ia], b.depth[ib], rtol=1e-5)
    np.testing.assert_allclose(a.uv[ia][same], b.uv[ib][same], atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(a.dirs, axis=1), 1, atol=1e-6)
    # an active mask restricts the samples and keeps their hits
    active = np.zeros((G, G), bool)
    active[G // 3: G // 2, G // 4: 3 * G // 4] = True
    c = r.hits(G, active)
    assert active.ravel()[c.sample].all()
    keep = active.ravel()[a.sample]
    np.testing.assert_array_equal(c.sample, a.sample[keep])
    np.testing.assert_array_equal(c.prim, a.prim[keep])


def _plain_images(sampler, n, monkeypatch, adaptive):
    import functools

    from voxface.data import render, synthetic

    monkeypatch.setattr(synthetic, "background", lambda rng, S: np.full((S, S, 3), 0.5, np.float32))
    monkeypatch.setattr(synthetic, "render_crop", functools.partial(render.render_crop, adaptive=adaptive))
    return np.stack([sampler.sample(i, None)["image"] for i in range(n)])


def _check_adaptive_antialiasing(sampler, monkeypatch, n):
    ada = _plain_images(sampler, n, monkeypatch, True)
    full = _plain_images(sampler, n, monkeypatch, False)  # every pixel 2x2 supersampled
    d = np.abs(ada - full).max(1)
    assert d.mean() < 1e-3
    assert np.quantile(d, 0.999) < 0.06  # a few isolated pixels (sub-pixel slivers) may differ


def test_edge_adaptive_antialiasing_matches_full_supersampling(toy, monkeypatch):
    _check_adaptive_antialiasing(FaceSampler(toy, SamplerConfig(image_size=64, photometric=False), seed=3),
                                 monkeypatch, 6)


def test_surface_points_are_trimesh_sample_surface(toy_sampler):
    from voxface.data.synthetic import _PTS, _rng

    for i in (0, 5):
        v = toy_sampler.head.person(toy_sampler.id_coeffs(i)).closed_head(toy_sampler.exp_coeffs(i))
        p, n, face = toy_sampler.surface_points(i, v, 300)
        mesh = trimesh.Trimesh(v, toy_sampler.head.faces, process=False)
        ref, fid = trimesh.sample.sample_surface(mesh, 300, seed=int(_rng(toy_sampler.seed, _PTS, i).integers(2**31)))
        np.testing.assert_array_equal(p, ref.astype(np.float32))
        np.testing.assert_allclose(n, mesh.face_normals[fid], atol=1e-6)
        np.testing.assert_array_equal(face, toy_sampler.head.face_region[fid])


def test_blend_is_elementwise_and_sliceable(toy):
    from voxface.data.ict import blend

    a = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    full = blend(a, toy.identity)
    np.testing.assert_array_equal(blend(a, toy.identity, 500), full[:500])
    ref = np.tensordot(a.astype(np.float64), toy.identity.astype(np.float64), axes=1)
    np.testing.assert_allclose(full, ref, atol=1e-5)


def test_limit_threads_sets_the_loaded_openblas(tmp_path):
    import json
    import subprocess
    import sys

    code = ("import json, os, numpy; from voxface.data.workers import limit_threads\n"
            "try:\n    blas = str(numpy.show_config(mode='dicts')['Build Dependencies']['blas'].get('name'))\n"
            "except Exception:\n    blas = ''\n"
            "print(json.dumps({'set': limit_threads(1), 'env': os.environ['OPENBLAS_NUM_THREADS'], 'blas': blas}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    res = json.loads(out.stdout)
    assert res["env"] == "1"
    if sys.platform.startswith("linux") and "openblas" in res["blas"].lower():
        assert res["set"]["openblas"] >= 1


# -- cache ----------------------------------------------------------------------------------------

def test_a_chunks_files_are_on_disk_before_its_rename(tmp_path, toy_root, monkeypatch):
    """Each .npy of a chunk is fsynced, then its folder, before the rename that makes the chunk count
    (a power loss after the rename left empty files in a chunk that looked finished), then the cache
    folder, so the rename itself is durable."""
    from voxface.data.cache import write_cache

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(f"replace {a} {b}") or real_replace(a, b))
    write_cache(tmp_path / "c", 8, workers=0, seed=3, resolution=32, image_size=64, chunk=8,
                ict_root=str(toy_root), progress=False)
    at = next(i for i, e in enumerate(events) if e.startswith("replace") and e.endswith("chunk_000000"))
    before, tmp = events[:at], events[at].split()[1]
    written = {p.name for p in (tmp_path / "c" / "chunk_000000").glob("*.npy")}
    assert written and {Path(e.split()[1]).name for e in before if e.startswith(f"fsync {tmp}/")} == written
    assert before[-1] == f"fsync {tmp}" and events[at + 1] == f"fsync {tmp_path / 'c'}"

def test_a_full_disk_while_writing_a_chunk_names_the_file_and_leaves_no_temporary(tmp_path, toy_root, monkeypatch):
    """numpy's write of a chunk onto a full disk raised OSError('131072 requested and 94080
    written'), which 'voxface data cache' printed as 'error: 131072 requested and 94080 written'
    (no file, no reason), and the half-written temporary chunk folder stayed, holding the space a
    rerun needs. A DataError names the file; no temporary remains; the rerun finishes the cache."""
    from voxface.data import cache

    kw = dict(workers=0, seed=3, resolution=32, image_size=16, chunk=4, ict_root=str(toy_root), progress=False)
    write_cache(tmp_path / "c", 4, **kw)
    real_save = np.save

    def full(f, a, *args, **kwargs):
        if Path(f.name).name == "occ.npy":
            raise OSError("131072 requested and 94080 written")
        return real_save(f, a, *args, **kwargs)

    monkeypatch.setattr(cache.np, "save", full)
    with pytest.raises(DataError) as ei:
        write_cache(tmp_path / "c", 8, **kw)
    assert str(ei.value) == (f"{tmp_path / 'c' / 'chunk_000001' / 'occ.npy'}: cannot write this cache file (131072 "
                             "requested and 94080 written; is the disk full?); its chunk is not kept: run the same "
                             "command again to go on once there is room")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".lock", "chunk_000000", "meta.json"]
    monkeypatch.setattr(cache.np, "save", real_save)
    write_cache(tmp_path / "c", 8, **kw)
    assert len(CachedDataset(tmp_path / "c")) == 8


def test_cache_is_identical_across_worker_counts_and_resumes(tmp_path, toy_root, toy):
    kw = dict(seed=3, resolution=32, image_size=64, chunk=8, ict_root=str(toy_root), progress=False)
    write_cache(tmp_path / "w0", 16, workers=0, **kw)
    write_cache(tmp_path / "w2", 16, workers=2, **kw)
    for c in ("chunk_000000", "chunk_000001"):
        for f in sorted((tmp_path / "w0" / c).glob("*.npy")):
            assert f.read_bytes() == (tmp_path / "w2" / c / f.name).read_bytes(), f
    # items read back equal freshly rendered samples (images up to 8-bit quantisation)
    ds = CachedDataset(tmp_path / "w0")
    direct = FaceSampler(toy, SamplerConfig(image_size=64), seed=3).sample(9, 32)
    item = ds[9]
    np.testing.assert_array_equal(item["occ"], direct["occ"])
    np.testing.assert_array_equal(item["occ_swap"], direct["occ_swap"])
    assert np.abs(item["image"] - direct["image"]).max() <= 0.5 / 255 + 1e-6
    # an encoder stage reads only some fields: the same values, nothing else decoded
    from voxface.train import ENCODER_STAGE_FIELDS

    ds.fields = ENCODER_STAGE_FIELDS
    part = ds[9]
    assert set(part) == ENCODER_STAGE_FIELDS
    for k in part:
        np.testing.assert_array_equal(part[k], item[k])
    ds.fields = None
    assert set(ds[9]) == set(item)
    # resume: a removed chunk is re-rendered, existing ones are kept
    import shutil

    before = (tmp_path / "w0" / "chunk_000000" / "image.npy").stat().st_mtime_ns
    shutil.rmtree(tmp_path / "w0" / "chunk_000001")
    write_cache(tmp_path / "w0", 16, workers=0, **kw)
    assert (tmp_path / "w0" / "chunk_000000" / "image.npy").stat().st_mtime_ns == before
    assert len(CachedDataset(tmp_path / "w0")) == 16
    with pytest.raises(DataError, match="other settings"):
        write_cache(tmp_path / "w0", 16, workers=0, **{**kw, "resolution": 64})
    # grow: a cache of 12 (short last chunk) asked for 24 equals one written at 24 at once
    write_cache(tmp_path / "g", 12, workers=0, **kw)
    assert len(CachedDataset(tmp_path / "g")) == 12
    first = (tmp_path / "g" / "chunk_000000" / "image.npy").stat().st_mtime_ns
    write_cache(tmp_path / "g", 24, workers=0, **kw)
    write_cache(tmp_path / "w24", 24, workers=0, **kw)
    assert (tmp_path / "g" / "chunk_000000" / "image.npy").stat().st_mtime_ns == first  # kept
    assert json.loads((tmp_path / "g" / "meta.json").read_text())["n"] == 24
    for c in ("chunk_000000", "chunk_000001", "chunk_000002"):
        for f in sorted((tmp_path / "w24" / c).glob("*.npy")):
            assert f.read_bytes() == (tmp_path / "g" / c / f.name).read_bytes(), f
    write_cache(tmp_path / "g", 8, workers=0, **kw)  # fewer: nothing rendered, nothing dropped
    assert len(CachedDataset(tmp_path / "g")) == 24


@pytest.mark.timeout(120)
def test_write_cache_checks_the_ict_root_before_starting_workers(tmp_path, monkeypatch, capsys):
    from .conftest import run_cli

    missing = tmp_path / "no-ict"
    with pytest.raises(DataError, match="ICT-FaceKit"):
        write_cache(tmp_path / "c", 8, workers=2, ict_root=str(missing), progress=False)
    assert not (tmp_path / "c").exists(), "nothing is written before the data is known to be there"
    with pytest.raises(DataError, match="unknown sampler"):
        write_cache(tmp_path / "c", 8, workers=2, ict_root=str(missing), sampler={"yaww": 3}, progress=False)
    code, out, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", tmp_path / "cli", "-n", 8, "--num-val", 4,
                             "--ict-root", missing)
    assert code == 1 and err.startswith("error:") and "ICT-FaceKit" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, words",
    [
        (("--num-val", -3), "--num-val must be at least 4 (samples are written in blocks of 4), not -3"),
        (("--num-val", 0), "--num-val must be at least 4 (samples are written in blocks of 4), not 0"),
        (("--num-val", 3), "--num-val must be at least 4"),  # rounded down to no sample
        (("-n", 2), "-n/--num must be at least 4 (samples are written in blocks of 4), not 2"),
        (("-n", -4), "-n/--num must be at least 4"),
        (("--resolution", 7), "--resolution must be from 32 to 256, not 7"),
        (("--resolution", 512), "--resolution must be from 32 to 256, not 512"),
        (("--image-size", 0), "--image-size must be at least 1 (pixels), not 0"),
    ],
    ids=["num-val-negative", "num-val-0", "num-val-3", "num-2", "num-negative", "resolution-7", "resolution-512",
         "image-size-0"],
)
def test_data_cache_refuses_bad_options_before_writing(tmp_path, toy_root, cache_env, monkeypatch, capsys, args,
                                                       words):
    """A split with no sample (it said "cache ready" with ``"n": -4`` in meta.json, or an empty val/ that
    training then called "no complete chunk yet"), a resolution ``data export`` refuses, an empty crop:
    one line, exit 1, before anything is written (val/ is written first: a bad -n is not found after it)."""
    from .conftest import run_cli

    out = tmp_path / "c"
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, "-n", 4, "--num-val", 4,
                                "--resolution", 32, "--image-size", 32, "--workers", 0, "--ict-root", toy_root, *args)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and words in lines[0], err
    assert "cache ready" not in stdout and not out.exists()


def test_write_cache_refuses_the_same_values_before_writing(tmp_path, toy_root):
    """The library refuses them too, naming the split folder, with the resolution check ``data export`` uses."""
    from voxface.data import RESOLUTIONS, check_resolution

    kw = dict(workers=0, ict_root=str(toy_root), progress=False, image_size=32)
    for n, extra, words in ((-4, {}, "n must be at least 4"), (0, {}, "n must be at least 4"),
                            (3, {}, "n must be at least 4 (samples are written in blocks of 4), not 3"),
                            (4, {"resolution": 7}, "resolution must be from 32 to 256, not 7"),
                            (4, {"resolution": 257}, "resolution must be from 32 to 256, not 257"),
                            (4, {"image_size": 0}, "image_size must be at least 1")):
        out = tmp_path / "split"
        with pytest.raises(DataError) as ei:
            write_cache(out, n, **{**kw, **extra})
        assert str(ei.value).startswith(f"{out}: {words}"), str(ei.value)
        assert not out.exists()
    assert RESOLUTIONS == (32, 256)
    for ok in (32, 64, 256):
        assert check_resolution(ok) == ok
    with pytest.raises(DataError, match="^--resolution must be from 32 to 256, not 31$"):
        check_resolution(31, "--resolution")


def test_a_failing_worker_initializer_fails_the_first_task(tmp_path, monkeypatch):
    from dataclasses import asdict

    from voxface.data import cache, workers

    monkeypatch.setattr(workers, "limit_threads", lambda n=1: {})  # not in the test process
    monkeypatch.setattr(workers, "die_with_parent", lambda: True)
    monkeypatch.setattr(cache, "_worker", {})
    cache._init_worker(str(tmp_path / "no-ict"), asdict(SamplerConfig()), 0)  # must not raise: no respawn loop
    frame = {"side_mm": FrameConfig().side_mm, "center_mm": list(FrameConfig().center_mm)}
    with pytest.raises(DataError, match="ICT-FaceKit"):
        cache._write_chunk((str(tmp_path), 0, 0, 4, 32, frame))


# -- the real ICT-FaceKit -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ict_sampler():
    return FaceSampler(load_ict(REAL_ICT), seed=11)


@needs_ict
def test_real_closed_heads_are_watertight(ict_sampler):
    head = ict_sampler.head
    assert len(head.cap_loop) == 54
    for i in range(50):
        v = head.person(ict_sampler.id_coeffs(i)).closed_head(ict_sampler.exp_coeffs(i))
        m = trimesh.Trimesh(v, head.faces, process=False)
        assert m.is_watertight and m.is_winding_consistent and m.volume > 0, i
        assert Grid.from_config(FrameConfig(), 64).contains(v, margin_mm=5).all(), "inside the canonical cube"


@needs_ict
def test_real_occupancy_agrees_with_trimesh(ict_sampler):
    head = ict_sampler.head
    grid = Grid.from_config(FrameConfig(), 64)
    v = head.person(ict_sampler.id_coeffs(3)).closed_head(ict_sampler.exp_coeffs(3))
    occ = occupancy_grid(v, head.faces, grid)
    mesh = trimesh.Trimesh(v, head.faces, process=False)
    rng = np.random.default_rng(1)
    # half the test points near the surface, where errors would show
    inside_idx = np.argwhere(occ)
    idx = np.concatenate([rng.integers(0, 64, (300, 3)), inside_idx[rng.integers(0, len(inside_idx), 300)]])
    agree = (occ[tuple(idx.T)].astype(bool) == mesh.contains(grid.index_to_mm(idx))).mean()
    assert agree >= 0.995


@needs_ict
def test_real_landmarks_land_on_the_face(ict_sampler):
    for i in range(12):
        s = ict_sampler.sample(i, None)
        lm = s["landmarks_2d"]
        assert ((lm >= 0) & (lm < 128)).all(), i
        on = s["mask"][lm[:, 1].astype(int), lm[:, 0].astype(int)]
        assert on.mean() > 0.85, i


@needs_ict
def test_real_edge_adaptive_antialiasing_matches_full_supersampling(monkeypatch):
    _check_adaptive_antialiasing(FaceSampler(load_ict(REAL_ICT), SamplerConfig(photometric=False), seed=11),
                                 monkeypatch, 4)


def test_identity_mode_weights_measure_each_modes_canonical_displacement(toy) -> None:
    from voxface.data.head import identity_mode_weights

    head = HeadModel(toy)
    w = identity_mode_weights(head)
    n = toy.identity.shape[0]
    assert w.shape == (n,) and w.dtype == np.float32
    assert np.all(w >= 0) and w.mean() == pytest.approx(1.0, rel=1e-5)
    # the definition: mean squared canonical vertex displacement of a unit coefficient, relative
    base = head.closed_head(None, None).astype(np.float64)
    raw = []
    for k in range(n):
        a = np.zeros(n, np.float32)
        a[k] = 1.0
        raw.append(((head.closed_head(a, None) - base) ** 2).sum(1).mean())
    np.testing.assert_allclose(w, np.asarray(raw) / np.mean(raw), rtol=1e-5)


def test_data_preview_writes_two_png_grids(tmp_path, toy_root, monkeypatch, capsys):
    from PIL import Image

    from .conftest import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "data", "preview", "-o", tmp_path / "grid", "-n", 4,
                             "--ict-root", toy_root)
    assert code == 0, err
    for name in ("grid.png", "grid_meshes.png"):  # no extension given: .png added to both
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.size[0] > 64 and im.size[1] > 64
    assert f"{tmp_path / 'grid.png'}" in out
    code, _, err = run_cli(monkeypatch, capsys, "data", "preview", "-o", tmp_path / "grid.jpg", "-n", 4,
                           "--ict-root", toy_root)
    assert code == 1 and "is a PNG picture" in err and not (tmp_path / "grid.jpg").exists()


def test_data_preview_checks_the_meshes_file_before_rendering(tmp_path, monkeypatch, capsys):
    """A folder named like the second output (``g_meshes.png``) failed after every sample was
    rendered, with ``g.png`` already written: one line now, before the ICT model is read, nothing written."""
    import voxface.data.ict
    import voxface.data.synthetic  # noqa: F401  (imported first, it binds the real load_ict, not the patch below)

    from .conftest import run_cli

    def no_ict(*a, **k):
        raise AssertionError("ICT-FaceKit was loaded")

    monkeypatch.setattr(voxface.data.ict, "load_ict", no_ict)
    (tmp_path / "g_meshes.png").mkdir()
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-o", tmp_path / "g.png", "-n", 1)
    assert code == 1 and err == f"error: {tmp_path / 'g_meshes.png'}: is a folder, where a file is to be written\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g_meshes.png"]


def test_data_preview_draws_each_mesh_posed_as_its_crop(tmp_path, toy_root, monkeypatch, capsys):
    """The mesh tile shows the head where, and turned as, the crop shows it: its silhouette covers
    the rendered head's mask (it was drawn mirrored, without roll, centred)."""
    from PIL import Image

    from voxface.data.ict import load_ict
    from voxface.data.synthetic import FaceSampler

    from .conftest import run_cli

    for start in (0, 1, 2):
        code, _, err = run_cli(monkeypatch, capsys, "data", "preview", "-o", tmp_path / "g.png", "-n", 1,
                               "--start", start, "--ict-root", toy_root)
        assert code == 0, err
        tile = np.asarray(Image.open(tmp_path / "g_meshes.png").convert("L"))[4:260, 4:260] < 250
        mask = FaceSampler(load_ict(toy_root), seed=0).sample(start, None)["mask"] > 0.5
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((256, 256))) > 127
        iou = (tile & mask).sum() / (tile | mask).sum()
        mirrored = (tile[:, ::-1] & mask).sum() / (tile[:, ::-1] | mask).sum()
        assert iou > 0.8 and iou > mirrored + 0.05, (start, iou, mirrored)


def test_data_preview_refuses_a_negative_start_in_one_line(tmp_path, toy_root, monkeypatch, capsys):
    """``--start -5`` ended in numpy's traceback (``expected non-negative integer``) after the ICT model was
    loaded: one line, exit 1, nothing written. So is a seed outside 0 .. 2**32 - 1 (samples are keyed by the
    seed modulo 2**32: -5 drew seed 2**32 - 5's data)."""
    from .conftest import run_cli

    out = tmp_path / "pv" / "neg.png"
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 1, "--start", -5, "-o", out,
                                "--ict-root", toy_root)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
    assert lines[0] == "error: --start must be a sample index, 0 or more, not -5", err
    assert not (tmp_path / "pv").exists()
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 1, "--start", 0, "--seed", -5,
                                "-o", out, "--ict-root", toy_root)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0] == "error: --seed must be a whole number from 0 to 4294967295, not -5", err  # the option's name
    assert not (tmp_path / "pv").exists()


# -- voxface data export --------------------------------------------------------------------------

_EXPORT = ("--resolution", 32, "--points", 16)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_data_export_refuses_bad_options_in_one_line(tmp_path, toy_root, cache_env, monkeypatch, capsys):
    from .conftest import run_cli

    out = tmp_path / "x"
    for args, words in [(("--resolution", 0), "--resolution must be from 32 to 256, not 0"),
                        (("--resolution", 17), "--resolution must be from 32 to 256, not 17"),
                        (("--resolution", 512), "--resolution must be from 32 to 256, not 512"),
                        (("--points", 0), "--points must be at least 1"),
                        (("--points", -1), "--points must be at least 1"),
                        (("-n", 0), "--num must be at least 1")]:
        code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, "--ict-root", toy_root,
                               *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
        assert "Traceback" not in err and not out.exists(), args  # checked before anything is written


def test_data_export_checks_its_folder_before_reading_ict(tmp_path, monkeypatch, capsys):
    """``data export -o FILE/sub`` read the ICT model, then failed as '<out>: Not a directory':
    the output folder is checked first, one line naming the file in the way."""
    import voxface.data.ict

    from .conftest import run_cli

    def no_ict(*a, **k):
        raise AssertionError("ICT-FaceKit was loaded")

    monkeypatch.setattr(voxface.data.ict, "load_ict", no_ict)
    (tmp_path / "afile").write_text("x")
    for out, problem in ((tmp_path / "afile" / "sub", f"{tmp_path / 'afile'} is a file, where a folder is needed"),
                         (tmp_path / "afile", "is a file, where a folder is needed")):
        code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 1, "-o", out)
        assert code == 1 and err == f"error: {out}: {problem}\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_data_export_records_its_settings_and_refuses_other_ones(tmp_path, toy_root, cache_env, monkeypatch,
                                                                 capsys):
    from .conftest import run_cli

    out = tmp_path / "x"
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, "--ict-root", toy_root, *_EXPORT)
    assert code == 0, err
    settings = json.loads((out / ".export.json").read_text())
    assert (settings["resolution"], settings["points"], settings["seed"]) == (32, 16, 0)
    before = _files(out)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 3, "-o", out, "--ict-root", toy_root,
                           "--resolution", 64, "--points", 16)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {out}: "), err
    assert "--resolution 32" in lines[0] and "--resolution 64" in lines[0] and "another folder" in lines[0]
    assert _files(out) == before  # nothing added, nothing changed
    # an export by an older voxface (no .export.json): its first sample's JSON and NPZ tell the settings
    (out / ".export.json").unlink()
    before = _files(out)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 3, "-o", out, "--ict-root", toy_root,
                           "--resolution", 32, "--points", 8, "--seed", 5)
    assert code == 1 and "--seed 0, --points 16" in err and "--seed 5, --points 8" in err and "000000.json" in err
    assert _files(out) == before
    # the same settings grow the folder (and record them again)
    code, out_text, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 3, "-o", out, "--ict-root", toy_root,
                                  *_EXPORT)
    assert code == 0 and "wrote 1 samples" in out_text, err
    assert {k: v for k, v in _files(out).items() if k in before} == before
    samples = [f"{i:06d}.{e}" for i in range(3) for e in ("json", "npz", "ply", "png")]
    assert sorted(_files(out)) == [".export.json", *samples]


def test_a_failing_data_export_leaves_no_half_written_sample(tmp_path, toy_root, cache_env, monkeypatch, capsys):
    import errno

    from .conftest import run_cli

    out = tmp_path / "x"
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 2, "-o", out, "--ict-root", toy_root, *_EXPORT)
    assert code == 0, err
    before = _files(out)

    def full_disk(*a, **k):  # after the sample's PNG and PLY are written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 4, "-o", out, "--ict-root", toy_root, *_EXPORT)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("export:")]  # no bar
    assert code == 1 and "Traceback" not in err and lines == [  # the file and what to do (was the reason alone)
        f"error: {out / '000002.npz'}: cannot write this file (No space left on device); the samples before it are "
        "kept: run the same command again to go on once there is room"], err
    assert _files(out) == before  # the earlier samples intact; nothing of sample 2, no temporary file


@pytest.mark.parametrize("meta, words", [("{\"n\": 4, \"se", "cannot read this cache's meta.json"),
                                         ("[]", "is not a voxface cache's meta.json"),
                                         ("{\"seed\": 0}", "is not a voxface cache's meta.json")],
                         ids=["truncated", "a-list", "no-count"])
def test_write_cache_over_a_broken_meta_json_is_one_line(tmp_path, toy_root, meta, words):
    """A cache folder whose meta.json is truncated or not a cache's: a DataError naming that file
    (was a JSONDecodeError / AttributeError traceback), the file left as it was."""
    out = tmp_path / "split"
    out.mkdir()
    (out / "meta.json").write_text(meta)
    with pytest.raises(DataError) as ei:
        write_cache(out, 4, workers=0, ict_root=str(toy_root), progress=False, image_size=32, resolution=32)
    assert str(ei.value).startswith(f"{out / 'meta.json'}: {words}"), str(ei.value)
    assert (out / "meta.json").read_text() == meta


def test_cache_workers_leave_ctrl_c_to_the_parent(toy_root, monkeypatch):
    """A worker ignores SIGINT (the parent ends the pool): no worker traceback on Ctrl-C."""
    import signal

    from voxface.data import workers
    from voxface.data.cache import _init_worker

    monkeypatch.setattr(workers, "die_with_parent", lambda: True)  # not this test process's death with pytest's parent
    before = signal.getsignal(signal.SIGINT)
    try:
        _init_worker(str(toy_root), {"image_size": 32}, 0)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_cache_workers_die_with_their_parent(toy_root):
    """A ``voxface data cache`` killed outright (kill -9, the OOM killer, a plain SIGTERM) left its
    workers rendering on for the rest of their chunks (measured: 40 s at 64 px) outside the
    released .lock, beside the writer of a rerun. The worker initializer asks the kernel to kill
    each worker with its parent (PR_SET_PDEATHSIG), as the reconstruct pipeline's do."""
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    code = ("import ctypes, signal\n"
            "from voxface.data.cache import _init_worker\n"
            f"_init_worker({str(toy_root)!r}, {{'image_size': 16}}, 0)\n"
            "sig = ctypes.c_int(0)\n"
            "assert ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0) == 0\n"  # PR_GET_PDEATHSIG
            "print(sig.value == signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


def _copy_ict(src: Path, dst: Path) -> Path:
    """A copy of a FaceXModel folder (symbolic links, so a test can replace single files)."""
    d = dst / "FaceXModel"
    d.mkdir(parents=True)
    for f in (src / "FaceXModel").iterdir():
        (d / f.name).symlink_to(f)
    return dst


def test_write_cache_refuses_to_grow_a_cache_of_other_ict_files(tmp_path, toy_root, cache_env):
    """A cache records the digest of the ICT-FaceKit files it was rendered from; growing it from
    other files (another ICT version) would mix two models' samples silently: refused, folder intact."""
    kw = dict(seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False)
    out = tmp_path / "split"
    write_cache(out, 4, ict_root=str(toy_root), **kw)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["ict"] == load_ict(toy_root).key and len(meta["ict"]) == 20
    other = _copy_ict(toy_root, tmp_path / "ict2")
    f = other / "FaceXModel" / "identity003.obj"
    text = f.read_text()
    f.unlink()
    f.write_text(text.replace("v ", "v  ", 1) + "# edited\n")  # same vertices, other bytes: another release
    assert load_ict(other).key != meta["ict"]
    before = (out / "meta.json").read_text()
    with pytest.raises(DataError) as ei:
        write_cache(out, 8, ict_root=str(other), **kw)
    assert str(ei.value).startswith(f"{out}: this cache was rendered from other ICT-FaceKit files"), ei.value
    assert (out / "meta.json").read_text() == before and not (out / "chunk_000001").exists()
    write_cache(out, 8, ict_root=str(toy_root), **kw)  # the same files grow it
    assert len(CachedDataset(out)) == 8
    # a cache written before voxface recorded the digest is trusted (and grows)
    legacy = json.loads((out / "meta.json").read_text())
    legacy.pop("ict")
    (out / "meta.json").write_text(json.dumps(legacy))
    write_cache(out, 12, ict_root=str(toy_root), **kw)
    assert json.loads((out / "meta.json").read_text())["ict"] == meta["ict"]


def test_write_cache_asked_for_fewer_completes_a_missing_chunk_in_full(tmp_path, toy_root):
    """A cache of 24 whose second chunk is missing (an interrupted run), written again with n=12:
    the chunk was rendered with 4 rows where meta.json (n=24) promises 8 (items 12..15 raised
    IndexError, and a later run never repaired it). It is rendered in full."""
    import shutil

    kw = dict(seed=1, resolution=32, image_size=32, chunk=8, workers=0, progress=False, ict_root=str(toy_root))
    write_cache(tmp_path / "ref", 24, **kw)
    out = tmp_path / "c"
    write_cache(out, 24, **kw)
    shutil.rmtree(out / "chunk_000001")
    write_cache(out, 12, **kw)
    for f in sorted((tmp_path / "ref" / "chunk_000001").glob("*.npy")):
        assert f.read_bytes() == (out / "chunk_000001" / f.name).read_bytes(), f
    ds = CachedDataset(out)
    assert len(ds) == 24 and int(ds[15]["index"]) == 15


def test_two_writers_of_one_cache_do_not_collide(tmp_path, toy_root):
    """A second process writing the same split while the first runs gets a one-line DataError at
    once (it raced the first's renames: an OSError traceback and a stray temporary folder); the
    first finishes a whole cache. Leftover temporaries of a killed writer are removed."""
    import subprocess
    import sys
    import time

    out = tmp_path / "c"
    kw = dict(seed=1, resolution=32, image_size=32, chunk=4, workers=0, progress=False, ict_root=str(toy_root))
    code = ("import sys, time\n"
            "import voxface.data.cache as c\n"
            "write = c._write_chunk\n"
            "def slow(task):\n"  # after its chunk 2, the first writer pauses (holding the lock)
            "    done = write(task)\n"
            "    if task[1] == 2:\n"
            "        time.sleep(60)\n"
            "    return done\n"
            "c._write_chunk = slow\n"
            f"c.write_cache(sys.argv[1], 16, **{kw!r})\n")
    env = {**os.environ, "VOXFACE_CACHE": os.environ.get("VOXFACE_CACHE", str(tmp_path / "vc"))}
    first = subprocess.Popen([sys.executable, "-c", code, str(out)], env=env)
    try:
        deadline = time.time() + 60
        while not (out / "chunk_000002").is_dir():
            assert first.poll() is None and time.time() < deadline, "the first writer did not get going"
            time.sleep(0.1)
        with pytest.raises(DataError) as ei:
            write_cache(out, 16, **kw)
        assert str(ei.value).startswith(f"{out}: another process is writing this cache now"), ei.value
    finally:
        first.kill()
        first.wait()
    (out / ".tmp_chunk_000009_123").mkdir()  # left by a writer killed mid-chunk
    assert not (out / "chunk_000003").exists()
    write_cache(out, 16, **kw)  # the lock died with its process: this run resumes the cache
    assert len(CachedDataset(out)) == 16 and not list(out.glob(".tmp_chunk_*"))


@pytest.mark.parametrize("damage, words", [
    ("truncate", "image.npy: truncated: "),
    ("remove", "occ.npy: missing from the data cache"),
    ("short", "mask.npy: holds an array of shape [4, 32, 32], expected [8, 32, 32] (from meta.json)"),
    ("meta", "meta.json: is not a voxface cache's meta.json (KeyError: 'chunk')"),
])
def test_a_damaged_cache_is_a_one_line_error_when_opened(tmp_path, toy_root, damage, words):
    """A truncated, missing or short chunk file (a full disk, a copy cut short, a stray edit) was
    read as is: a ValueError/KeyError/IndexError traceback from a loader worker, possibly hours
    into training. Opening the dataset checks every chunk file's header and names the bad file."""
    out = tmp_path / "c"
    write_cache(out, 16, seed=1, resolution=32, image_size=32, chunk=8, workers=0, progress=False,
                ict_root=str(toy_root))
    chunk = out / "chunk_000001"
    if damage == "truncate":
        f = chunk / "image.npy"
        f.write_bytes(f.read_bytes()[:1000])
    elif damage == "remove":
        (chunk / "occ.npy").unlink()
    elif damage == "short":
        np.save(chunk / "mask.npy", np.load(chunk / "mask.npy")[:4])
    else:
        meta = json.loads((out / "meta.json").read_text())
        del meta["chunk"]
        (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as ei:
        CachedDataset(out)
    msg = str(ei.value)
    assert len(msg.splitlines()) == 1 and words in msg and str(out) in msg, msg
    if damage != "meta":
        assert "run 'voxface data cache' again" in msg
        assert len(CachedDataset(out, limit=8)) == 8  # the whole first chunk alone is still usable


def test_a_cache_of_an_odd_resolution_opens(tmp_path, toy_root):
    """R^3 of an odd R is no multiple of 8: its packed occupancy holds one byte more than R^3 // 8.
    The header check on opening took that whole cache for a damaged one (33^3: 4493 bytes, 'expected
    4492')."""
    out = tmp_path / "c"
    write_cache(out, 4, seed=1, resolution=33, image_size=32, chunk=4, workers=0, progress=False,
                ict_root=str(toy_root))
    ds = CachedDataset(out)
    assert len(ds) == 4 and ds[0]["occ"].shape == (33, 33, 33)


@pytest.mark.parametrize("edit, words", [
    (lambda t: t[: len(t) // 2], "malformed OBJ record"),  # cut mid-line
    (lambda t: t.replace("v ", "v x", 1), "malformed OBJ record"),
])
def test_a_truncated_or_garbled_ict_obj_is_one_line(tmp_path, toy_root, cache_env, edit, words):
    """A truncated identity OBJ (a partial download) raised 'could not convert string to float' /
    'cannot reshape' as a ValueError traceback: now a DataError naming the file."""
    root = _copy_ict(toy_root, tmp_path / "ict")
    f = root / "FaceXModel" / "identity042.obj"
    text = f.read_text()
    f.unlink()
    f.write_text(edit(text))
    with pytest.raises(DataError) as ei:
        load_ict(root)
    assert str(ei.value).startswith(f"{f}: {words}"), ei.value
    f.unlink()
    f.write_bytes(b"\xff\xfe v 1 2 3\n")
    with pytest.raises(DataError, match="not a text OBJ file"):
        load_ict(root)


def test_bad_ict_landmarks_and_topology_are_one_line(tmp_path, toy_root, cache_env):
    """Landmark indices outside the mesh (an IndexError deep in the sampler) and a neutral mesh
    of another topology (a ValueError from HeadModel) are DataErrors naming the file."""
    root = _copy_ict(toy_root, tmp_path / "ict")
    vi = root / "FaceXModel" / "vertex_indices.json"
    meta = json.loads(vi.read_text())
    vi.unlink()
    vi.write_text(json.dumps({**meta, "idx_to_landmark_verts": [0, 1, 30000]}))
    with pytest.raises(DataError) as ei:
        load_ict(root)
    assert str(ei.value).startswith(f"{vi}: idx_to_landmark_verts must list vertex indices below 26719"), ei.value
    vi.write_text(json.dumps({**meta, "expressions": 5}))
    with pytest.raises(DataError, match="malformed vertex_indices.json"):
        load_ict(root)
    vi.write_text(json.dumps(meta))
    ict = load_ict(root)
    ict.faces = ict.faces[100:]  # a hole in the face besides the neck: two open loops
    with pytest.raises(DataError) as ei:
        HeadModel(ict)
    assert str(ei.value).startswith(f"{root / 'FaceXModel' / 'generic_neutral_mesh.obj'}: not ICT-FaceKit's head"), ei.value


def test_a_cache_config_without_a_path_is_a_config_error():
    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.path: the cache folder \('voxface data cache -o DIR'\) is required"):
        build_dataset({"kind": "cache"}, "train", model_config({}))


def test_build_dataset_takes_load_yamls_model_dict_and_an_empty_data_section():
    """build_dataset(cfg["data"], "val", cfg["model"]) (load_yaml's dicts, as annotate_directions'
    docstring shows) failed for synthetic data in AttributeError: 'dict' object has no attribute
    'encoder' (only the toy data took a dict); an empty data: section (None) in AttributeError."""
    from voxface.config import load_yaml
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    root = Path(__file__).resolve().parents[1]
    cfg = load_yaml(root / "configs" / "voxface-64.yaml")
    ds = build_dataset({"kind": "synthetic", "num_val": 8}, "val", cfg["model"])  # no face rendered yet
    assert len(ds) == 8 and ds.resolution == cfg["model"]["decoder"]["resolution"]
    assert len(build_dataset(None, "val", cfg["model"])) == len(build_dataset({}, "val", cfg["model"]))
    with pytest.raises(ConfigError, match="data: section must be a mapping"):
        build_dataset(["kind", "toy"], "val", cfg["model"])


def test_an_ict_obj_with_another_vertex_count_is_one_line(tmp_path, toy_root, cache_env):
    """An identity OBJ with a vertex fewer (another release's file, an edit) failed in numpy's
    'operands could not be broadcast together' (a traceback) before the vertex count was checked."""
    root = _copy_ict(toy_root, tmp_path / "ict")
    f = root / "FaceXModel" / "identity005.obj"
    lines = f.read_text().splitlines()
    f.unlink()
    f.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError) as ei:
        load_ict(root)
    assert str(ei.value) == f"{f}: vertex count 26718 differs from the neutral mesh's (26719)", ei.value


@pytest.mark.parametrize("damage", [
    lambda p: p.write_bytes(p.read_bytes()[:100_000]),  # truncated (a full disk, a killed copy)
    lambda p: p.write_bytes(b""),  # empty
    lambda p: p.write_bytes(p.read_bytes()[:-5_000_000] + b"\0" * 5_000_000),  # zeroed tail
])
def test_a_damaged_parsed_ict_cache_is_parsed_again(tmp_path, toy_root, damage, monkeypatch):
    """A damaged ``ict-v1-*.npz`` (the compact cache of the parsed OBJs) raised zipfile's
    'File is not a zip file' / EOFError as a traceback on every later load: it is parsed again
    from the OBJ files and rewritten."""
    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))
    first = load_ict(toy_root)
    (cfile,) = (tmp_path / "cache").glob("ict-v*.npz")
    damage(cfile)
    again = load_ict(toy_root)
    np.testing.assert_array_equal(again.expression, first.expression)
    assert again.key == first.key
    with np.load(cfile) as z:  # rewritten whole
        np.testing.assert_array_equal(z["identity"], first.identity)


def test_data_preview_refuses_a_start_past_64_bit_indices_in_one_line(tmp_path, monkeypatch, capsys):
    """``--start 2**64`` rendered a whole sample, then failed in an OverflowError traceback (samples
    record their index as int64): one line, exit 1, before the ICT model is read; nothing written."""
    from .conftest import run_cli

    out = tmp_path / "pv" / "big.png"
    last = 2**63 - 1
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "preview", "-n", 2, "--start", last, "-o", out,
                                "--ict-root", tmp_path / "no-ict")
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
    assert lines[0] == f"error: --start must be at most {last - 1} with -n 2 (sample indices are 64-bit), not {last}"
    assert not (tmp_path / "pv").exists()


def test_data_check_folder_refuses_a_resolution_no_grid_can_hold(tmp_path, monkeypatch, capsys):
    """``check-folder --resolution 2000`` voxelised into a 60 GiB array: a MemoryError traceback.
    Refused on one line above the largest resolution voxface writes (256), before the folder is read."""
    from .conftest import run_cli

    code, stdout, err = run_cli(monkeypatch, capsys, "data", "check-folder", tmp_path, "--resolution", 2000)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
    assert lines[0] == "error: --resolution must be at most 256 (cells per side), not 2000", err


def test_a_failed_write_of_the_parsed_ict_cache_leaves_no_temporary_file(tmp_path, toy_root, monkeypatch):
    """A full disk while the parsed arrays were written left the partial ``.ict-v1-*.tmp.npz`` (50 MB
    for the real model) in the cache folder, one more per process that tried: the load goes on
    (a cache only saves time) and the temporary file is removed, as it is after a Ctrl-C while it
    is written (which left it too)."""
    import voxface.data.ict as ict

    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))
    real_savez = np.savez

    def savez_then_full(path, **arrays):
        real_savez(path, **{"neutral": arrays["neutral"]})  # part of it written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ict.np, "savez", savez_then_full)
    model = load_ict(toy_root)
    assert model.neutral.shape == (26719, 3)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []

    def savez_then_ctrl_c(path, **arrays):  # Ctrl-C while it is written: the partial file stayed too
        real_savez(path, **{"neutral": arrays["neutral"]})
        raise KeyboardInterrupt

    monkeypatch.setattr(ict.np, "savez", savez_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        load_ict(toy_root)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(ict.np, "savez", real_savez)
    load_ict(toy_root)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ict-index.json", ict._parsed_name(model.key)]


def test_a_partial_ict_folder_names_the_file_it_lacks(tmp_path, monkeypatch):
    """A FaceXModel folder with vertex_indices.json but no generic_neutral_mesh.obj (a partial copy)
    was refused as 'no FaceXModel/vertex_indices.json', the one file it had; the message names the
    missing file, and says when the folder came from $VOXFACE_ICT_ROOT."""
    d = tmp_path / "ict" / "FaceXModel"
    d.mkdir(parents=True)
    (d / "vertex_indices.json").write_text("{}")
    with pytest.raises(DataError) as ei:
        find_root(tmp_path / "ict")
    assert str(ei.value) == f"{tmp_path / 'ict'}: not an ICT-FaceKit folder: no FaceXModel/generic_neutral_mesh.obj"
    monkeypatch.setenv("VOXFACE_ICT_ROOT", str(d))
    with pytest.raises(DataError) as ei:
        find_root()
    assert str(ei.value) == f"{d}: not an ICT-FaceKit folder (from $VOXFACE_ICT_ROOT): no generic_neutral_mesh.obj"


def test_an_ict_root_that_is_not_there_or_a_file_says_so(tmp_path, monkeypatch):
    """A typo in --ict-root (or $VOXFACE_ICT_ROOT) and the path of a file in the folder (its
    vertex_indices.json) were both refused as 'no FaceXModel/vertex_indices.json or
    FaceXModel/generic_neutral_mesh.obj', as if the folder were there and lacked them."""
    typo = tmp_path / "ICT-FaceKt"
    with pytest.raises(DataError) as ei:
        find_root(typo)
    assert str(ei.value) == f"{typo}: no such ICT-FaceKit folder"
    monkeypatch.setenv("VOXFACE_ICT_ROOT", str(typo))
    with pytest.raises(DataError) as ei:
        load_ict()
    assert str(ei.value) == f"{typo}: no such ICT-FaceKit folder (from $VOXFACE_ICT_ROOT)"
    f = tmp_path / "vertex_indices.json"
    f.write_text("{}")
    with pytest.raises(DataError) as ei:
        find_root(f)
    assert str(ei.value) == (f"{f}: is a file, not an ICT-FaceKit folder: give the FaceXModel folder (or the clone "
                             "holding it)")


def test_write_cache_into_a_cache_of_other_settings_names_them(tmp_path, toy_root, cache_env):
    """Refused as 'a cache with other settings is already there' without saying which: the user had
    to diff meta.json by hand. The settings that differ are named, both ways; the folder is kept."""
    kw = dict(seed=1, resolution=32, chunk=4, workers=0, progress=False, ict_root=str(toy_root))
    out = write_cache(tmp_path / "c", 4, image_size=32, **kw)
    meta = (out / "meta.json").read_bytes()
    with pytest.raises(DataError) as ei:
        write_cache(out, 4, image_size=48, sampler={"yaw": 30.0}, **kw)
    assert str(ei.value) == (f"{out}: a cache with other settings is already there (image_size 32, sampler.image_size "
                             "32, sampler.yaw 60.0; this run asks for image_size 48, sampler.image_size 48, "
                             "sampler.yaw 30.0); use another folder"), ei.value
    assert (out / "meta.json").read_bytes() == meta and len(CachedDataset(out)) == 4


def test_a_cache_config_with_too_few_items_is_named_not_blamed_on_the_cache(tmp_path, toy_root, cache_env):
    """``data.num_train: 2`` on a whole cache failed as 'the data cache holds no complete chunk yet'
    (a lie), ``-3`` as Python's '__len__() should return >= 0', and ``data.num_val: 0`` (no
    validation, as the synthetic data takes it) could not train at all: a ConfigError naming the key,
    and an empty validation split."""
    import shutil

    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    kw = dict(seed=1, resolution=32, image_size=64, chunk=4, workers=0, progress=False, ict_root=str(toy_root))
    write_cache(tmp_path / "c" / "train", 4, **kw)
    write_cache(tmp_path / "c" / "val", 4, **kw)
    m = model_config("configs/tiny.yaml")
    cfg = {"kind": "cache", "path": str(tmp_path / "c")}
    for n in (2, -3, 0):
        with pytest.raises(ConfigError, match=rf"^data.num_train {n}: items come in blocks of 4, so it keeps none"):
            build_dataset({**cfg, "num_train": n}, "train", m)
    with pytest.raises(ConfigError, match=r"^data.num_val 3: .* give at least 4, or null for all \(0: no validation\)"):
        build_dataset({**cfg, "num_val": 3}, "val", m)
    assert len(build_dataset({**cfg, "num_val": 0}, "val", m)) == 0
    assert len(build_dataset({**cfg, "num_train": 5}, "train", m)) == 4
    # YAML reads 1e4 as text ('invalid literal for int()' traceback); 10.7 was truncated to 8 items
    for bad in ("1e4", 10.7, True):
        with pytest.raises(ConfigError, match=rf"^data.num_train {bad!r} must be a whole number of items, or null"):
            build_dataset({**cfg, "num_train": bad}, "train", m)
    assert len(build_dataset({**cfg, "num_train": np.int64(4), "num_val": None}, "train", m)) == 4
    # a typo trained on the whole cache without a word; synthetic's keys are accepted (a config switching kind)
    with pytest.raises(ConfigError, match=r"^data: unknown key\(s\) \['num_trian'\] for kind: cache; known: "
                                          r"\['kind', 'num_train', 'num_val', 'path'\]"):
        build_dataset({**cfg, "num_trian": 8}, "train", m)
    # keys YAML reads as a number or null beside a text one: a TypeError traceback while sorting the message
    with pytest.raises(ConfigError, match=r"^data: unknown key\(s\) \[1, None, 'num_trian'\] for kind: cache"):
        build_dataset({**cfg, "num_trian": 8, 1: 2, None: 3}, "train", m)
    assert len(build_dataset({**cfg, "seed": 3, "sampler": {"fov_deg": [10, 20]}, "num_train": 4}, "train", m)) == 4
    shutil.rmtree(tmp_path / "c" / "train" / "chunk_000000")
    with pytest.raises(DataError, match="holds no complete chunk yet"):  # still said of a cache without one
        build_dataset(cfg, "train", m)


def test_data_cache_into_a_file_is_one_line_before_the_ict_model_is_read(tmp_path, monkeypatch, capsys):
    """``data cache -o FILE`` loaded ICT-FaceKit, then failed as '<FILE>/val: Not a directory': the
    output is checked first and named as the option given; the file is kept."""
    from .conftest import run_cli

    out = tmp_path / "notes.txt"
    out.write_text("mine")
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "cache", "-o", out, "-n", 4, "--num-val", 4,
                                "--workers", 0, "--ict-root", tmp_path / "no-ict")
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in stdout + err and len(lines) == 1, err
    assert lines[0] == f"error: {out}: is a file, where a folder is needed", err
    assert out.read_text() == "mine"


@pytest.mark.parametrize("text", ["null", "[1, 2]"])
def test_an_ict_index_that_is_not_an_object_is_rewritten(tmp_path, toy_root, monkeypatch, text):
    """An ``ict-index.json`` holding JSON that is not an object was skipped when read but failed the
    write of the parsed cache ('NoneType' object does not support item assignment, a traceback on
    every load): it is replaced by a fresh index, and the next load reads the cache."""
    import voxface.data.ict as ict

    monkeypatch.setenv("VOXFACE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ict-index.json").write_text(text)
    first = load_ict(toy_root)
    index = json.loads((tmp_path / "cache" / "ict-index.json").read_text())
    assert isinstance(index, dict) and list(index.values()) == [first.key]
    monkeypatch.setattr(ict, "_content_key", lambda files: pytest.fail("files hashed again despite the index"))
    assert load_ict(toy_root).key == first.key


def test_head_coefficients_of_the_wrong_shape_are_named(toy):
    """A batch row ``(1, 100)`` (a reconstruction's ``z_id``) failed in numpy's 'operands could not be
    broadcast together', 100 expression weights in 'index 53 is out of bounds': an InputError naming
    the argument and the shape. A shorter vector keeps meaning the first modes."""
    from voxface.errors import InputError

    head = HeadModel(toy)
    with pytest.raises(InputError, match=r"^id_coeffs must be a vector of at most 100 coefficients, got shape "
                                         r"\[1, 100\] \(one face of a batch: pass row \[0\]\)$"):
        head.mesh(np.zeros((1, 100), np.float32), None)
    with pytest.raises(InputError, match=r"^exp_coeffs must be a vector of at most 53 coefficients, got shape \[100\]"):
        head.person(None).closed_head(np.full(100, 0.5, np.float32))
    a = np.zeros(100, np.float32)
    a[:3] = [1.0, -0.5, 0.25]
    np.testing.assert_array_equal(head.closed_head(a[:3], None), head.closed_head(a, None))


def test_opening_the_folder_of_a_caches_splits_says_to_open_a_split(tmp_path, toy_root, cache_env):
    """``CachedDataset(DIR)`` for the folder ``voxface data cache -o DIR`` wrote said 'not a voxface data
    cache ... write one with voxface data cache', of the cache just written: it names the splits."""
    write_cache(tmp_path / "c" / "train", 4, seed=1, resolution=32, image_size=32, chunk=4, workers=0,
                progress=False, ict_root=str(toy_root))
    with pytest.raises(DataError) as ei:
        CachedDataset(tmp_path / "c")
    assert str(ei.value).startswith(f"{tmp_path / 'c'}: holds a data cache's splits: open its train/ or val/"), ei.value
    assert len(CachedDataset(tmp_path / "c" / "train")) == 4
    with pytest.raises(DataError, match="not a voxface data cache"):
        CachedDataset(tmp_path)


def test_a_cache_config_naming_one_split_says_to_name_the_folder_of_both(tmp_path, toy_root, cache_env):
    """``data.path: DIR/train`` (the folder write_cache and CachedDataset take) was refused as
    'DIR/train/train: not a voxface data cache ... write one with voxface data cache', of a cache
    that is there: the error says data.path is the folder holding train/ and val/."""
    from voxface.config import model_config
    from voxface.data import build_dataset

    write_cache(tmp_path / "c" / "train", 4, seed=1, resolution=32, image_size=64, chunk=4, workers=0,
                progress=False, ict_root=str(toy_root))
    m = model_config("configs/tiny.yaml")
    with pytest.raises(DataError) as ei:
        build_dataset({"kind": "cache", "path": str(tmp_path / "c" / "train")}, "train", m)
    assert str(ei.value) == (f"{tmp_path / 'c' / 'train'}: is one split of a data cache (its meta.json is here): "
                             f"data.path is the folder holding train/ and val/ ({tmp_path / 'c'})")
    assert len(build_dataset({"kind": "cache", "path": str(tmp_path / "c")}, "train", m)) == 4


def test_synthetic_data_section_problems_are_one_line_config_errors() -> None:
    """data.sampler left empty in YAML (null) crashed the trainer in a TypeError ('{**None}'), a
    number there likewise; a negative data.num_val gave Python's '__len__() should return >= 0'.
    Empty is the defaults; the others are ConfigErrors naming the key (errors inside the section
    say data.sampler.<key>, they said config.<key>). No ICT data is read for any of this."""
    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    m = model_config("configs/tiny.yaml")
    ds = build_dataset({"kind": "synthetic", "sampler": None, "num_val": 8}, "val", m)
    assert len(ds) == 8 and ds.sampler_cfg.image_size == m.encoder.image_size
    with pytest.raises(ConfigError, match=r"^data.sampler must be a mapping of sampler settings, got int 5$"):
        build_dataset({"kind": "synthetic", "sampler": 5}, "train", m)
    with pytest.raises(ConfigError, match=r"^data.sampler: unknown key\(s\) \['yaww'\]"):
        build_dataset({"kind": "synthetic", "sampler": {"yaww": 3}}, "train", m)
    with pytest.raises(ConfigError, match=r"^data.num_val -3 must be >= 0 \(0: no validation\)$"):
        build_dataset({"kind": "synthetic", "num_val": -3}, "val", m)


def test_synthetic_data_section_refuses_unknown_keys_and_non_integers() -> None:
    """A typo in a synthetic data section (``num_trian: 20000``) trained on the default 4096 faces
    without a word, ``num_val: null`` was a TypeError traceback ('int() argument ... NoneType') and
    ``num_train: 10.7`` was truncated: one-line ConfigErrors naming the key, as for toy and folder
    data. A cache config's ``path`` is accepted (a config inheriting one switches kind alone)."""
    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    m = model_config("configs/tiny.yaml")
    with pytest.raises(ConfigError, match=r"^data: unknown key\(s\) \['num_trian'\]; known: \[.*'num_train'"):
        build_dataset({"kind": "synthetic", "num_trian": 20000}, "train", m)
    with pytest.raises(ConfigError, match=r"^data.num_val: expected int, got None$"):
        build_dataset({"kind": "synthetic", "num_val": None}, "val", m)
    with pytest.raises(ConfigError, match=r"^data.num_train: expected int, got 10.7"):
        build_dataset({"kind": "synthetic", "num_train": 10.7}, "train", m)
    ds = build_dataset({"kind": "synthetic", "path": ".data/cache-64", "num_train": 16384, "seed": 3,
                        "ict_root": "/nowhere"}, "train", m)  # nothing is read until an item is drawn
    assert (len(ds), ds.seed, ds.ict_root) == (16384, 3, "/nowhere")
    val = build_dataset({"kind": "synthetic", "seed": 3, "val_seed_offset": 10}, "val", m)
    assert (len(val), val.seed) == (4096, 13)


def test_sampler_values_that_draw_no_face_are_config_errors_when_built(toy, toy_root, tmp_path):
    """``data.sampler.max_expressions: 0`` (meant: neutral faces) failed in numpy's 'low >= high'
    at the first sample, in a loader or cache worker; a field of view of 0 in a NaN-landmark
    error, one past 180 degrees put the camera behind the head without a word, a supersample of
    0 or 1.5 rendered as 1 (no anti-aliasing) without one. Each is a
    ConfigError naming the key when the sampler, the dataset or the cache is built; 0
    expressions draws neutral faces."""
    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    neutral = FaceSampler(toy, SamplerConfig(image_size=16, max_expressions=0), seed=3)
    assert all(not neutral.exp_coeffs(i).any() for i in range(40))
    m = model_config("configs/tiny.yaml")
    for key, value, words in (("max_expressions", -1, "must be a whole number, 0 or more"),
                              ("neutral_share", 1.5, "must be a share from 0 to 1"),
                              ("fov", (0.0, 30.0), r"with 0 < low <= high < 90 \(the camera stands 170 / tan"),
                              ("fov", (170.0, 200.0), r"with 0 < low <= high < 90 \(the camera stands 170 / tan"),
                              ("fov", (45.0, 10.0), r"with 0 < low <= high < 90 \(the camera stands 170 / tan"),  # numpy: 'high - low < 0'
                              ("image_size", 0, "must be a whole number of pixels, at least 1"),
                              ("supersample", 0, "must be a whole number of rays per pixel side, at least 1"),
                              ("supersample", -1, "must be a whole number of rays per pixel side, at least 1")):
        with pytest.raises(ConfigError, match=rf"^sampler\.{key} .* {words}"):
            FaceSampler(toy, SamplerConfig(**{"image_size": 16, key: value}), seed=3)
        with pytest.raises(ConfigError, match=rf"^data\.sampler\.{key} .* {words}"):
            build_dataset({"kind": "synthetic", "sampler": {key: list(value) if isinstance(value, tuple) else value}},
                          "train", m)
    with pytest.raises(ConfigError, match=r"^sampler\.supersample 1.5 must be a whole number"):
        FaceSampler(toy, SamplerConfig(image_size=16, supersample=1.5), seed=3)
    with pytest.raises(ConfigError, match=r"^sampler\.max_expressions -1"):
        write_cache(tmp_path / "c", 4, workers=0, ict_root=str(toy_root), progress=False, image_size=16,
                    resolution=32, sampler={"max_expressions": -1})
    assert not (tmp_path / "c").exists()
    ok = FaceSampler(toy, SamplerConfig(image_size=16, fov=(30.0, 30.0)), seed=3)  # one angle is a range
    assert ok.camera(0, ok.head.full_vertices(None, None))[1][:, 2].min() > 0  # in front of the camera


def test_a_synthetic_crop_size_other_than_the_models_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    """data.sampler.image_size other than model.encoder.image_size trained... until the first step
    failed ('images must be (B, 3, 64, 64) crops'), after config.yaml and log.jsonl were written
    (the corrected run then needed --overwrite). A ConfigError naming both keys, nothing written."""
    import yaml

    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    from .conftest import run_cli

    m = model_config("configs/tiny.yaml")
    with pytest.raises(ConfigError, match=r"^data.sampler.image_size 32 differs from model.encoder.image_size 64"):
        build_dataset({"kind": "synthetic", "sampler": {"image_size": 32}}, "train", m)
    assert build_dataset({"kind": "synthetic", "sampler": {"image_size": 64}}, "train", m).sampler_cfg.image_size == 64
    cfg = tmp_path / "syn.yaml"
    cfg.write_text(yaml.safe_dump({"inherit_from": str(Path("configs/tiny.yaml").resolve()),
                                   "data": {"kind": "synthetic", "num_train": 8, "num_val": 4,
                                            "sampler": {"image_size": 32}, "ict_root": "/nowhere"},
                                   "train": {"batch_size": 4, "total_steps": 1}}))
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", cfg, "-o", tmp_path / "run", "--device", "cpu",
                           "--no-progress")
    assert code == 1 and err == f"error: {cfg}: data.sampler.image_size 32 differs from model.encoder.image_size " \
                                "64, the crops the model reads: leave it out (it is the model's)\n", err
    assert not (tmp_path / "run").exists()


def test_export_samples_without_surface_points_and_bad_values(tmp_path, toy_root):
    """export_samples(points=0) failed in a KeyError ('points') after writing the first sample's PNG
    and PLY; resolution 0 likewise ('occ'). points=0 writes the grid alone; a resolution below 1
    or negative points is a DataError naming the folder, before anything is written."""
    from voxface.data.export import export_samples

    kw = dict(ict_root=str(toy_root), progress=False)
    for bad, words in (({"resolution": 0}, "resolution must be a whole number of cells per side, at least 1, not 0"),
                       ({"points": -1}, "points must be 0 (none) or a number of surface points, not -1")):
        with pytest.raises(DataError, match=rf"^{tmp_path / 'bad'}: {re.escape(words)}$"):
            export_samples(tmp_path / "bad", 1, **kw, **bad)
        assert not (tmp_path / "bad").exists()
    assert export_samples(tmp_path / "x", 2, resolution=32, points=0, **kw) == 2
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [".export.json"] + [
        f"00000{i}.{e}" for i in (0, 1) for e in ("json", "npz", "ply", "png")]  # its settings, as the CLI's
    with np.load(tmp_path / "x" / "000001.npz") as z:
        assert z.files == ["occupancy"] and z["occupancy"].shape == (32, 32, 32) and z["occupancy"].any()


def test_unknown_sampler_settings_of_mixed_key_types_are_named(tmp_path):
    """A sampler key YAML reads as a number beside a text one (``1:`` and a typo) ended in a TypeError
    traceback while sorting the message; both are named, before anything is written."""
    with pytest.raises(DataError, match=r"unknown sampler setting\(s\) \[1, 'yaww'\]"):
        write_cache(tmp_path / "c", 8, workers=0, sampler={1: 2, "yaww": 3})
    assert not (tmp_path / "c").exists()


def test_data_cache_of_another_seed_names_the_option_not_the_validation_seed(tmp_path, toy_root, cache_env,
                                                                             monkeypatch, capsys):
    """`data cache -o C --seed 5` into a cache made with seed 0 said 'seed 1000003; this run asks for seed
    1000008': val/'s internal seed, which the user never typed. It names --seed, as given, and how to grow it."""
    from .conftest import run_cli

    out = tmp_path / "c"
    args = ("data", "cache", "-o", out, "-n", 4, "--num-val", 4, "--resolution", 32, "--image-size", 32,
            "--workers", 0, "--ict-root", toy_root)
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, _, err = run_cli(monkeypatch, capsys, *args, "--seed", 5)
    assert code == 1 and err.strip() == (f"error: {out}: a cache of --seed 0 is already there (this run: --seed 5); "
                                         "rerun with --seed 0 to grow it, or use another folder"), err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_parsed_ict_files_of_earlier_formats_are_removed_when_one_is_written(tmp_path, toy_root, monkeypatch):
    """Parsed-array files of the format before versions were named (``ict-<key>.npz``, 50 MB each) were
    never read nor removed; writing this format's file removes them, and nothing else in the folder."""
    cache = tmp_path / "cache"
    cache.mkdir()
    old = [cache / "ict-1e435a315020b5b80581.npz", cache / "ict-v0-800fc6f5b23c9188829a.npz"]
    kept = [cache / "ict-index.json", cache / "notes.npz", cache / "ict-v1-800fc6f5b23c9188829a.npz"]
    for f in old + kept:
        f.write_bytes(b"x")
    monkeypatch.setenv("VOXFACE_CACHE", str(cache))
    model = load_ict(toy_root)
    names = sorted(p.name for p in cache.iterdir())
    assert not any(f.name in names for f in old), names
    assert all(f.name in names for f in kept) and f"ict-v1-{model.key}.npz" in names, names


def test_a_cache_of_the_even_odd_occupancy_is_not_grown_with_nonzero_samples(tmp_path, toy_root, cache_env):
    """Format 3 voxelises by the nonzero rule (closed lips solid where the head surface passes through
    itself); growing a format-2 cache would mix grids of the two rules in one training set."""
    import json

    kw = dict(seed=1, resolution=32, chunk=4, workers=0, progress=False, ict_root=str(toy_root), image_size=32)
    out = write_cache(tmp_path / "c", 4, **kw)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == 4
    (out / "meta.json").write_text(json.dumps({**meta, "format": 2}))
    for n in (8, 4):  # grown, or a rerun to complete it: either would mix grids of two rules
        with pytest.raises(DataError, match=r"a cache of format 2 is already there: it was written before the "
                                            r"closed-lips occupancy fix .* render a new cache into another folder"):
            write_cache(out, n, **kw)
    assert len(CachedDataset(out)) == 4
    (out / "meta.json").write_text(json.dumps({**meta, "format": 2, "n": 8}))  # its writer stopped half-way
    with pytest.warns(UserWarning, match=r"reading 4: it was written before the closed-lips occupancy fix"):
        CachedDataset(out)


def test_a_cache_split_other_than_train_or_val_is_refused(tmp_path, toy_root, cache_env):
    """build_dataset(kind: cache, 'Train' or 'test') read the validation split without a word, as
    synthetic data did until this round."""
    from voxface.config import model_config
    from voxface.data import build_dataset
    from voxface.errors import ConfigError

    kw = dict(seed=1, resolution=32, chunk=4, workers=0, progress=False, ict_root=str(toy_root), image_size=32)
    write_cache(tmp_path / "c" / "train", 4, **kw)
    write_cache(tmp_path / "c" / "val", 4, **{**kw, "seed": 2})
    m = model_config({"encoder": {"image_size": 32}, "decoder": {"resolution": 32}})
    assert len(build_dataset({"kind": "cache", "path": str(tmp_path / "c")}, "train", m)) == 4
    for split in ("Train", "test"):
        with pytest.raises(ConfigError, match=f"unknown split '{split}'; use 'train' or 'val'"):
            build_dataset({"kind": "cache", "path": str(tmp_path / "c")}, split, m)
