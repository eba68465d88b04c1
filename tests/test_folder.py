"""Real-data folders (voxface.data.folder): discovery, exact occupancy of meshes and grids, the item
layout, the content-keyed cache, splits and blocks, errors naming the file, and a short training run.

Fixtures are tiny (a few trimesh spheres and boxes, 32 px crops, 16^3 or 32^3 grids), so the module
runs in seconds on two busy cores.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from PIL import Image

from voxface.config import FrameConfig, model_config
from voxface.data import build_dataset
from voxface.data.folder import FolderDataset, canonical_similarity, fit_pose, scan_folder
from voxface.data.toy import ToyDataset
from voxface.errors import ConfigError, DataError, InputError, VoxfaceError
from voxface.frame import FRONTAL_ROTATION, HEAD_RMS_RADIUS_MM, Grid
from voxface.occupancy import pack_occupancy

FRAME = FrameConfig()  # 400 mm cube centred at (0, -30, -55)
MODEL = {
    "encoder": {"image_size": 32, "widths": [8, 16, 32], "blocks": [1, 1, 1], "z_id": 8, "z_exp": 4},
    "decoder": {"resolution": 16, "widths": [32, 16]},
}
POSE = {"rotation": FRONTAL_ROTATION.tolist(), "scale": 0.6, "translation": [0.02, -0.05]}
SPHERE_C = np.array([5.0, -12.0, -20.0])
BOX_C, BOX_E = np.array([10.0, -20.0, -40.0]), np.array([100.0, 150.0, 120.0])


def _crop(path: Path, size: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)


def _sphere(r: float, subdiv: int = 3) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdiv, radius=r)
    m.apply_translation(SPHERE_C)
    return m


def _box() -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=BOX_E)
    m.apply_translation(BOX_C)
    return m


def _sphere_occ(grid: Grid, r: float) -> np.ndarray:
    d = np.linalg.norm(grid.cell_centers() - SPHERE_C, axis=-1)
    return (d < r).astype(np.uint8)


def _write(folder: Path, stem: str, *, mesh: trimesh.Trimesh | None = None, mesh_ext: str = ".ply",
           npz: dict | None = None, meta: dict | None = None, img_ext: str = ".png", seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _crop(folder / f"{stem}{img_ext}", seed=seed)
    if mesh is not None:
        mesh.export(folder / f"{stem}{mesh_ext}")
    if npz is not None:
        np.savez(folder / f"{stem}.npz", **npz)
    if meta is not None:
        (folder / f"{stem}.json").write_text(json.dumps(meta))


def _fixture(folder: Path, grid: Grid) -> None:
    """Five samples of three persons: PLY sphere, OBJ box, dense and packed npz grids."""
    _write(folder, "anna_1", mesh=_sphere(80), meta={**POSE, "person": "anna"}, seed=1)
    _write(folder, "anna_2", mesh=_box(), mesh_ext=".obj", meta={**POSE, "person": "anna"}, seed=2)
    _write(folder, "ben_1", npz={"occupancy": _sphere_occ(grid, 70)}, meta={**POSE, "person": "ben"}, seed=3)
    _write(folder, "ben_2", npz={"occupancy": pack_occupancy(_sphere_occ(grid, 75))}, img_ext=".jpg",
           meta={**POSE, "person": "ben"}, seed=4)
    _write(folder, "carl_1", mesh=_sphere(85), meta={**POSE, "person": "carl"}, seed=5)


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ------------------------------------------------------------------------------ occupancy


def test_mesh_occupancy_matches_analytic_inside_tests(tmp_path: Path, cache: Path) -> None:
    grid = Grid.from_config(FRAME, 32)
    _fixture(tmp_path / "d", grid)
    ds = FolderDataset(tmp_path / "d", 32, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    by_stem = {s.stem: s for s in ds.samples}
    centres = grid.cell_centers()
    # sphere (an inscribed icosphere): exact away from the thin band between polygon and sphere
    occ = ds.ground_truth(by_stem["anna_1"])["occ"]
    d = np.linalg.norm(centres - SPHERE_C, axis=-1)
    sure = (d < 0.99 * 80) | (d > 80)
    assert occ.dtype == np.uint8 and occ.shape == (32,) * 3
    assert np.array_equal(occ[sure], (d < 80)[sure].astype(np.uint8))
    assert (~sure).sum() < 0.01 * sure.sum()
    # box (OBJ): no cell centre lies on a face, so every cell is exact
    occ = ds.ground_truth(by_stem["anna_2"])["occ"]
    inside = np.all(np.abs(centres - BOX_C) < BOX_E / 2, axis=-1)
    assert np.array_equal(occ, inside.astype(np.uint8)) and occ.sum() > 100
    # (D, H, W) = (z, y, x): the box is longest along y, the H axis
    ext = [np.ptp(np.nonzero(occ)[k]) for k in range(3)]
    assert ext[1] == max(ext)
    # grids are read as they are, dense or bit-packed
    assert np.array_equal(ds.ground_truth(by_stem["ben_1"])["occ"], _sphere_occ(grid, 70))
    assert np.array_equal(ds.ground_truth(by_stem["ben_2"])["occ"], _sphere_occ(grid, 75))


def test_mesh_to_canonical_and_hole_filling(tmp_path: Path, cache: Path) -> None:
    grid = Grid.from_config(FRAME, 32)
    m = _sphere(80)
    metres = m.copy()
    metres.apply_translation(-SPHERE_C)
    metres.apply_scale(0.001)  # a scan in metres, centred at its own origin
    T = np.eye(4)
    T[:3, :3] *= 1000.0
    T[:3, 3] = SPHERE_C
    _write(tmp_path / "d", "metres", mesh=metres, meta={"mesh_to_canonical": T[:3].tolist()})
    holed = trimesh.Trimesh(m.vertices, m.faces[1:], process=False)  # one triangle missing
    _write(tmp_path / "d", "holed", mesh=holed)
    ds = FolderDataset(tmp_path / "d", 32, 32, FRAME, split="all", cache_dir=cache)
    occs = {s.stem: ds.ground_truth(s)["occ"] for s in ds.samples}
    d = np.linalg.norm(grid.cell_centers() - SPHERE_C, axis=-1)
    sure = (d < 0.99 * 80) | (d > 80)
    for occ in occs.values():
        assert np.array_equal(occ[sure], (d < 80)[sure].astype(np.uint8))
    # canonical_similarity gives a usable mesh_to_canonical for a scan: uncalibrated, the area
    # centroid to the origin and the RMS radius to 88 mm; calibrated (the default), the area
    # statistics of the ICT mean head in the canonical frame
    T2 = canonical_similarity(metres.vertices, metres.faces, calibrated=False)
    v = metres.vertices @ T2[:3, :3].T + T2[:3, 3]
    assert np.linalg.norm(v.mean(0)) < 1.0
    assert abs(np.sqrt((v ** 2).sum(1).mean()) - HEAD_RMS_RADIUS_MM) < 0.5
    from voxface.data.folder import ICT_AREA_CENTROID_MM, ICT_AREA_RMS_MM, _area_statistics

    T3 = canonical_similarity(metres.vertices, metres.faces)
    c, r = _area_statistics(metres.vertices @ T3[:3, :3].T + T3[:3, 3], metres.faces)
    np.testing.assert_allclose(c, ICT_AREA_CENTROID_MM, atol=1e-6)
    assert r == pytest.approx(ICT_AREA_RMS_MM, rel=1e-9)


def test_a_mesh_of_several_closed_parts_is_the_union_of_their_insides(tmp_path: Path, cache: Path) -> None:
    """Eyeballs modelled inside the head and an ear overlapping it: the even-odd rule over the whole
    surface carved them out of the head (empty cells where the head is solid)."""
    from voxface.occupancy import occupancy_grid

    grid = Grid.from_config(FRAME, 32)
    head = _sphere(80)
    parts = [head]
    for offset, r in (([30, 10, 55], 18), ([-30, 10, 55], 18), ([80, 0, 0], 25)):
        p = trimesh.creation.icosphere(subdivisions=2, radius=r)
        p.apply_translation(SPHERE_C + offset)
        parts.append(p)
    _write(tmp_path / "d", "eyes", mesh=trimesh.util.concatenate(parts))
    ds = FolderDataset(tmp_path / "d", 32, 32, FRAME, split="all", cache_dir=cache)
    occ = ds.ground_truth(ds.samples[0])["occ"]
    union = np.zeros_like(occ)
    for p in parts:
        union |= occupancy_grid(p.vertices, p.faces, grid)
    assert np.array_equal(occ, union)
    centres = grid.cell_centers()
    for offset in ([30, 10, 55], [-30, 10, 55], [85, 0, 0]):  # inside a part inside, or past the head
        d, h, w = np.unravel_index(np.argmin(np.linalg.norm(centres - SPHERE_C - offset, axis=-1)), occ.shape)
        assert occ[d, h, w] == 1
    # one part: exactly the occupancy of the whole surface, as before
    _write(tmp_path / "d1", "head", mesh=head)
    ds1 = FolderDataset(tmp_path / "d1", 32, 32, FRAME, split="all", cache_dir=cache)
    assert np.array_equal(ds1.ground_truth(ds1.samples[0])["occ"], occupancy_grid(head.vertices, head.faces, grid))


def test_file_names_that_are_not_utf8_are_samples_like_any_other(tmp_path: Path, cache: Path) -> None:
    """A crop and mesh named in Latin-1 (caf\\xe9_1.png, from an old archive) reach Python as lone
    surrogates: the person split, the point seed and trimesh's loader raised UnicodeEncodeError."""
    d = tmp_path / "d"
    stem = os.fsdecode(b"caf\xe9_1")
    try:
        _write(d, stem, mesh=_sphere(80), meta=POSE)
    except (OSError, UnicodeError):  # a file system that only takes UTF-8 names
        pytest.skip("this file system refuses names that are not UTF-8")
    _write(d, "ben_1", mesh=_sphere(75), meta=POSE, seed=1)
    ds = FolderDataset(d, 16, 32, FRAME, split="all", points=64, cache_dir=cache, prepare=True)
    assert sorted(s.stem for s in ds.samples) == ["ben_1", stem]
    item = ds[[ds.sample_of(i).stem for i in range(len(ds))].index(stem)]
    assert item["occ"].sum() > 0 and item["points"].shape == (64, 3)
    splits = [FolderDataset(d, 16, 32, FRAME, split=k, val_fraction=0.5, cache_dir=cache) for k in ("train", "val")]
    assert sorted(s.stem for sd in splits for s in sd.samples) == ["ben_1", stem]


# ----------------------------------------------------------------------------- item layout


def test_items_follow_the_synthetic_layout(tmp_path: Path, cache: Path) -> None:
    mcfg = model_config(MODEL)
    grid = Grid.from_config(mcfg.frame, 16)
    _fixture(tmp_path / "d", grid)
    ds = FolderDataset.from_config({"kind": "folder", "root": str(tmp_path / "d"), "cache_dir": str(cache),
                                    "val_fraction": 0.0}, "train", mcfg)
    ref = ToyDataset.from_config({"kind": "toy", "num_train": 4, "num_val": 4}, "train", mcfg)[0]
    assert len(ds) % 4 == 0 and len(ds) >= 6
    for i in range(len(ds)):
        item = ds[i]
        # everything the synthetic/toy layout has, except what real data cannot have
        assert set(item) == set(ref) - {"occ_swap", "id_coeffs", "exp_coeffs"}
        for k, v in item.items():
            assert isinstance(v, np.ndarray) or np.isscalar(v), k
            assert (np.shape(v), np.asarray(v).dtype) == (np.shape(ref[k]), np.asarray(ref[k]).dtype), k
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert int(item["index"]) == i
        # blocks: i ^ 1 is the same person
        assert ds[i ^ 1]["identity"] == item["identity"]
        np.testing.assert_allclose(item["rotation"], FRONTAL_ROTATION, atol=1e-6)
        assert float(item["scale"]) == pytest.approx(0.6)
    # the mask is the occupancy seen through the pose: a disc for a sphere
    s = next(k for k in range(len(ds)) if ds.sample_of(k).stem == "carl_1")
    mask = ds[s]["mask"].astype(bool)
    yy, xx = np.mgrid[:32, :32]
    c = (np.array([SPHERE_C[0], -SPHERE_C[1]]) * 0.6 / HEAD_RMS_RADIUS_MM + POSE["translation"] + 1) / 2 * 32
    disc = np.hypot(xx + 0.5 - c[0], yy + 0.5 - c[1]) < 0.6 * 85 / HEAD_RMS_RADIUS_MM * 16
    assert (mask & disc).sum() / (mask | disc).sum() > 0.8  # a coarse 16^3 grid


def test_an_item_does_not_pass_over_every_sample(tmp_path: Path, cache: Path, monkeypatch) -> None:
    """Every item asked has_pose and coeff_dims, which each went over all samples: an epoch was
    quadratic in the folder's size (22 ms an item at 20,000 samples). They are computed once."""
    from voxface.data.folder import FolderSample

    calls = []
    real = FolderSample.has_pose
    monkeypatch.setattr(FolderSample, "has_pose", property(lambda s: calls.append(s.stem) or real.fget(s)))
    _fixture(tmp_path / "d", Grid.from_config(FRAME, 16))
    ds = FolderDataset(tmp_path / "d", 16, 32, split="all", cache_dir=cache)
    n = len(ds.samples)
    calls.clear()
    items = [ds[i] for i in range(len(ds))]
    assert all("rotation" in it for it in items) and len(items) == 8
    assert len(calls) <= n + len(ds), len(calls)  # once over the samples, then one per item (its mask)


def test_coefficients_of_different_lengths_are_refused(tmp_path: Path, cache: Path) -> None:
    """Every JSON with coefficients, one of them a number short: the coefficients of the whole
    folder were dropped without a word (check-folder said "coefficients: no"). A DataError naming it."""
    meta = {"id_coeffs": [0.1, 0.2, 0.3], "exp_coeffs": [0.5, 0.0]}
    _write(tmp_path / "d", "a", mesh=_sphere(80), meta=meta)
    _write(tmp_path / "d", "b", mesh=_sphere(80), meta={**meta, "id_coeffs": [0.1, 0.2]})
    with pytest.raises(DataError) as ei:
        FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache)
    assert str(ei.value) == (f"{tmp_path / 'd' / 'b.json'}: id_coeffs has 2 numbers where a.json has 3; every "
                             "sample's id_coeffs must have one length")
    _write(tmp_path / "d", "b", mesh=_sphere(80), meta={"person": "b"})  # some without them: allowed, none used
    with pytest.warns(UserWarning) as rec:  # but said (they were dropped without a word)
        assert FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache).coeff_dims is None
    assert [str(w.message) for w in rec] == [
        f"{tmp_path / 'd' / 'b.json'}: no id_coeffs or exp_coeffs (samples here have id_coeffs and exp_coeffs): "
        "coefficients are used only when every sample has both id_coeffs and exp_coeffs, so none are (no "
        "coefficient heads are built, the coeff loss is off)"]
    _write(tmp_path / "d", "b", mesh=_sphere(80), meta={"exp_coeffs": [0.5, 0.0]})  # expressions only: unused
    _write(tmp_path / "d", "a", mesh=_sphere(80), meta={"exp_coeffs": [0.5, 0.0]})
    with pytest.warns(UserWarning, match=r"a.json: no id_coeffs \(samples here have exp_coeffs\): coefficients"):
        assert FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache).coeff_dims is None


def test_points_coefficients_and_no_pose(tmp_path: Path, cache: Path) -> None:
    grid = Grid.from_config(FRAME, 16)
    meta = {"id_coeffs": [0.1, 0.2, 0.3], "exp_coeffs": [0.5, 0.0]}
    _write(tmp_path / "d", "a", mesh=_sphere(80), meta={**meta, "person": "a"})
    _write(tmp_path / "d", "b", npz={"occupancy": _sphere_occ(grid, 70)}, meta={**meta, "person": "b"})
    ds = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", points=64, cache_dir=cache)
    assert ds.coeff_dims == (3, 2) and not ds.has_pose
    for i in range(len(ds)):
        it = ds[i]
        assert "rotation" not in it and it["mask"].min() == 1  # no pose: the mask is unknown (ones)
        assert it["id_coeffs"].dtype == np.float32 and it["exp_coeffs"].shape == (2,)
        assert it["points"].shape == (64, 3) and it["normals"].shape == (64, 3)
        r = np.linalg.norm(it["points"] - SPHERE_C, axis=1)
        expect = 80 if ds.sample_of(i).stem == "a" else 70
        assert np.all(np.abs(r - expect) < 0.2 * expect)  # grid surfaces are only cell-accurate
        out = ((it["points"] - SPHERE_C) * it["normals"]).sum(1)
        assert (out > 0).mean() > 0.95  # normals point outwards


def test_fit_pose_recovers_a_weak_perspective_pose() -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = q * np.sign(np.linalg.det(q))
    X = rng.normal(size=(50, 3)) * 60
    uv = 0.7 * (X @ R.T)[:, :2] / HEAD_RMS_RADIUS_MM + [0.1, -0.2]
    got = fit_pose(X, uv)
    np.testing.assert_allclose(got["rotation"], R, atol=1e-6)
    assert got["scale"] == pytest.approx(0.7) and np.allclose(got["translation"], [0.1, -0.2])


def test_fit_pose_refuses_points_that_fix_no_pose() -> None:
    """Lists of different lengths were numpy's 'Incompatible dimensions' (LinAlgError), (N, 2)
    points an IndexError; 3 points or coplanar ones (the docstring's limits) gave a pose without
    a word. InputErrors saying what is wrong."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)) * 60
    uv = 0.7 * (X @ FRONTAL_ROTATION.T)[:, :2] / HEAD_RMS_RADIUS_MM
    for a, b, words in ((X, uv[:15], r"\(N, 3\) and crop_xy \(N, 2\) .* got \[20, 3\] and \[15, 2\]"),
                        (X[:, :2], uv, r"got \[20, 2\] and \[20, 2\]"),
                        (X[:3], uv[:3], r"at least 4 points .* \(got 3\)"),
                        (np.c_[X[:, :2], np.zeros(20)], uv, "coplanar"),
                        (np.where(np.eye(20, 3) > 0, np.nan, X), uv, "finite")):
        with pytest.raises(InputError, match=words):
            fit_pose(a, b)
    assert fit_pose(X[:4], uv[:4])["scale"] == pytest.approx(0.7)  # four points off a plane suffice


def test_canonical_similarity_refuses_what_is_no_scan_or_no_rotation() -> None:
    """A 'rotation' with a scale in it (mm per unit given by hand) multiplied the fitted scale
    without a word (a head twice the size); (N, 2) vertices or (F, 2) faces were numpy's
    AxisError / IndexError. InputErrors; a reflection (left-handed scan axes) is a change of axes
    and is kept."""
    m = _sphere(80)
    for args, words in (((m.vertices[:, :2], m.faces), r"vertices must be \(N, 3\)"),
                        ((m.vertices, m.faces[:, :2]), r"faces must be \(F, 3\) vertex indices"),
                        ((m.vertices, m.faces + len(m.vertices)), "faces must be"),
                        ((m.vertices, m.faces, np.eye(3) * 2), "rotation must be an orthonormal 3x3")):
        with pytest.raises(InputError, match=words):
            canonical_similarity(*args)
    mirror = np.diag([1.0, 1.0, -1.0])
    T = canonical_similarity(m.vertices, m.faces, mirror)
    np.testing.assert_allclose(T[:3, :3] @ mirror, canonical_similarity(m.vertices, m.faces)[:3, :3], atol=1e-9)


# ------------------------------------------------------------------------- cache and splits


def test_cache_is_keyed_by_content_and_outside_the_folder(tmp_path: Path, cache: Path, monkeypatch) -> None:
    grid = Grid.from_config(FRAME, 16)
    folder = tmp_path / "d"
    _fixture(folder, grid)
    before = _listing(folder)
    ds = FolderDataset(folder, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    items = [ds[i] for i in range(len(ds))]
    assert _listing(folder) == before  # nothing written into the user's folder
    assert len(list(cache.rglob("*.npz"))) == 3  # one entry per mesh

    import voxface.data.folder as folder_mod

    def boom(*a, **k):
        raise AssertionError("voxelised again")

    monkeypatch.setattr(folder_mod, "occupancy_grid", boom)
    again = FolderDataset(folder, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    for a, b in zip(items, (again[i] for i in range(len(again)))):
        assert np.array_equal(a["occ"], b["occ"]) and np.array_equal(a["image"], b["image"])
    monkeypatch.undo()
    _sphere(60).export(folder / "carl_1.ply")  # new content: a new key, voxelised anew
    third = FolderDataset(folder, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    assert len(list(cache.rglob("*.npz"))) == 4
    carl = next(s for s in third.samples if s.stem == "carl_1")
    assert third.ground_truth(carl)["occ"].sum() < ds.ground_truth(carl)["occ"].sum()


def test_prepare_voxelises_only_the_samples_a_cap_keeps(tmp_path: Path, cache: Path) -> None:
    """num_train: 4 on a folder of many meshes voxelised (and cached) every one of them at start."""
    for k in range(6):
        _write(tmp_path / "d", f"p{k}", mesh=_sphere(70 + k), meta={"person": str(k // 2)}, seed=k)
    kw = dict(split="all", cache_dir=cache, prepare=True)
    capped = FolderDataset(tmp_path / "d", 16, 32, FRAME, limit=4, **kw)
    drawn = {capped.sample_of(i).stem for i in range(len(capped))}
    assert len(capped) == 4 and len(drawn) == 4 and len(list(cache.rglob("*.npz"))) == 4
    assert capped.prepare() == 4
    (tmp_path / "d" / "p5.ply").write_text("ply\nnot a mesh")  # a sample the cap leaves out: not read
    assert "p5" not in drawn
    FolderDataset(tmp_path / "d", 16, 32, FRAME, limit=4, **kw)
    with pytest.raises(DataError, match="p5.ply: cannot read the mesh"):  # all of them without the cap
        FolderDataset(tmp_path / "d", 16, 32, FRAME, **kw)


def test_a_broken_cache_entry_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    """An entry cut short (a copy of the cache stopped half way) or emptied was a BadZipFile or
    EOFError traceback, where the code meant to voxelise the mesh again."""
    _write(tmp_path / "d", "x", mesh=_sphere(80))
    ds = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache)
    want = ds.ground_truth(ds.samples[0])["occ"]
    (entry,) = cache.rglob("*.npz")
    whole = entry.read_bytes()
    for broken in (whole[: len(whole) // 2], b"", b"not an npz at all"):
        entry.write_bytes(broken)
        again = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache)
        assert np.array_equal(again.ground_truth(again.samples[0])["occ"], want)
        assert entry.read_bytes() == whole  # and written again


def test_person_split_and_blocks(tmp_path: Path, cache: Path) -> None:
    grid = Grid.from_config(FRAME, 16)
    occ = {"occupancy": _sphere_occ(grid, 70)}
    n_per = {f"p{k}": 1 + k % 3 for k in range(9)}
    for p, n in n_per.items():
        for j in range(n):
            _write(tmp_path / "d", f"{p}_{j}", npz=occ, meta={"person": p})
    kw = dict(cache_dir=cache, val_fraction=0.3, split_seed=3)
    tr = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="train", **kw)
    va = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="val", **kw)
    assert tr.persons and va.persons and not set(tr.persons) & set(va.persons)
    assert set(tr.persons) | set(va.persons) == set(n_per)
    for ds in (tr, va):
        assert len(ds) % 4 == 0
        stems = [ds.sample_of(i).stem for i in range(len(ds))]
        assert {s.stem for s in ds.samples} == set(stems)  # every sample at least once
        for i in range(len(ds)):
            assert ds.sample_of(i).person == ds.sample_of(i ^ 1).person
    limited = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="train", limit=6, **kw)
    assert len(limited) == 4


# ---------------------------------------------------------------------------------- errors


def _expect(path: Path, fn, match: str) -> None:
    with pytest.raises(DataError, match=match) as e:
        fn()
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg, msg


def test_bad_files_name_the_file(tmp_path: Path, cache: Path) -> None:
    grid = Grid.from_config(FRAME, 16)
    kw = dict(split="all", cache_dir=cache)

    def case(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        return d

    def ds(d: Path, **k: Any) -> FolderDataset:
        return FolderDataset(d, 16, 32, FRAME, **{**kw, **k})

    d = case("open")  # a cap of the sphere removed: too big for hole filling
    m = _sphere(80)
    keep = m.triangles_center[:, 1] < SPHERE_C[1] + 60
    _write(d, "x", mesh=trimesh.Trimesh(m.vertices, m.faces[keep], process=False))
    _expect(d / "x.ply", lambda: ds(d, prepare=True), "not closed")
    d = case("garbage")
    _write(d, "x")
    (d / "x.ply").write_bytes(b"ply\nformat nonsense\n\x00\x01")
    _expect(d / "x.ply", lambda: ds(d, prepare=True), "cannot read the mesh")
    d = case("metres")
    _write(d, "x", mesh=trimesh.creation.icosphere(radius=0.09))
    _expect(d / "x.ply", lambda: ds(d, prepare=True), "canonical millimetres")
    d = case("outside")
    far = _sphere(80)
    far.apply_translation([0, 0, 5000])
    _write(d, "x", mesh=far)
    _expect(d / "x.ply", lambda: ds(d, prepare=True), "covers no cell")
    d = case("nogt")
    _write(d, "x")
    _expect(d / "x.png", lambda: ds(d), "no ground truth")
    d = case("badjson")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)})
    (d / "x.json").write_text("{rotation: oops")
    _expect(d / "x.json", lambda: ds(d), "not valid JSON")
    # JSON is UTF-8 whatever the locale, and a BOM (PowerShell's, Notepad's) is no error: it was
    # "not valid JSON (Unexpected UTF-8 BOM ...)"; text in another encoding still says what is wrong
    d = case("bom")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)})
    (d / "x.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({**POSE, "person": "Zoë"}, ensure_ascii=False).encode())
    assert ds(d).samples[0].person == "Zoë"
    (d / "x.json").write_bytes(json.dumps({"person": "Zoë"}, ensure_ascii=False).encode("latin-1"))
    _expect(d / "x.json", lambda: ds(d), "not valid JSON")
    # a pose in pixels (of the crop or the photo) gave silhouettes off the crop and a garbage pose target
    for i, bad in enumerate(({"scale": 51.2}, {"translation": [64.0, 70.0]})):
        d = case(f"pixels{i}")
        _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)}, meta={**POSE, **bad})
        _expect(d / "x.json", lambda: ds(d), r"look like pixels: translation is in crop coordinates")
    d = case("partialpose")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)}, meta={"rotation": POSE["rotation"]})
    _expect(d / "x.json", lambda: ds(d), "scale")
    d = case("badrot")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)}, meta={**POSE, "rotation": np.eye(3).ravel().tolist()[:8] + [2]})
    _expect(d / "x.json", lambda: ds(d), "rotation")
    d = case("mixedpose")
    _write(d, "a", npz={"occupancy": _sphere_occ(grid, 70)}, meta=POSE)
    _write(d, "b", npz={"occupancy": _sphere_occ(grid, 70)})
    _expect(d / "b.png", lambda: ds(d), "pose")
    d = case("npzkey")
    _write(d, "x", npz={"occ": _sphere_occ(grid, 70)})
    _expect(d / "x.npz", lambda: ds(d, prepare=True), "occupancy")
    d = case("npzres")
    _write(d, "x", npz={"occupancy": _sphere_occ(Grid.from_config(FRAME, 8), 70)})
    _expect(d / "x.npz", lambda: ds(d, prepare=True), "another grid")
    # a frame stated in part (side_mm alone, or a JSON frame with centre only) was not checked at all:
    # a 300 mm grid trained as the model's 400 mm one
    d = case("npzside")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70), "side_mm": 300.0})
    _expect(d / "x.npz", lambda: ds(d, prepare=True), "another grid")
    d = case("jsoncentre")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)}, meta={"frame": {"center_mm": [0, 0, 0]}})
    _expect(d / "x.npz", lambda: ds(d, prepare=True), "another grid")
    d = case("npzsame")  # the model's own side alone is the model's grid
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70), "side_mm": grid.side_mm})
    assert ds(d, prepare=True)[0]["occ"].sum() == _sphere_occ(grid, 70).sum()
    d = case("notsquare")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)})
    Image.new("RGB", (40, 30)).save(d / "x.png")
    _expect(d / "x.png", lambda: ds(d)[0], "not square")
    d = case("badimage")
    _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)})
    (d / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(Exception) as e:  # an ImageError (a VoxfaceError) naming the crop
        ds(d)[0]
    assert str(d / "x.png") in str(e.value)
    _expect(tmp_path / "missing", lambda: ds(tmp_path / "missing"), "does not exist")
    d = case("empty")
    _expect(d, lambda: ds(d), "no samples")
    _, unused = scan_folder(tmp_path / "npzres")
    assert unused == []


def test_an_open_part_beside_a_closed_head_is_named(tmp_path: Path, cache: Path) -> None:
    """A closed head with an open extra part (a hair card, eyelashes) was only 'not closed (5 boundary
    edges)', as if the head were open."""
    ring = np.array([[np.cos(a), np.sin(a), 0.0] for a in np.linspace(0, 2 * np.pi, 5, endpoint=False)]) * 15
    card = trimesh.Trimesh(np.vstack([[0, 0, 0], ring]) + SPHERE_C + [0, 40, 100],  # a pentagon before the face
                           [[0, 1 + k, 1 + (k + 1) % 5] for k in range(5)])
    _write(tmp_path / "d", "x", mesh=trimesh.util.concatenate([_sphere(80), card]))
    _expect(tmp_path / "d" / "x.ply", lambda: FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all",
                                                           cache_dir=cache, prepare=True),
            r"not closed \(5 boundary edges, 0 non-manifold\); 1 of its 2 connected parts is open \(the largest 5 "
            r"of the 1285 triangles\), so remove what is open")
    m = _sphere(80)  # one part, open: no word about parts
    _write(tmp_path / "e", "x", mesh=trimesh.Trimesh(m.vertices, m.faces[m.triangles_center[:, 1] < SPHERE_C[1] + 60]))
    with pytest.raises(DataError) as e:
        FolderDataset(tmp_path / "e", 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    assert "boundary edges, 0 non-manifold); occupancy needs" in str(e.value)


def test_a_mesh_in_other_units_or_axes_is_refused_with_what_to_fix(tmp_path: Path, cache: Path) -> None:
    """The errors said 'scale it' (by what?) and, for a scan in the JSON's wrong mesh_to_canonical,
    'give mesh_to_canonical' (it was given); a z-up scan's named only millimetres and centring."""
    def check(name: str, mesh: trimesh.Trimesh, meta: dict | None, *words: str) -> None:
        _write(tmp_path / name, "x", mesh=mesh, meta=meta)
        with pytest.raises(DataError) as e:
            FolderDataset(tmp_path / name, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
        msg = str(e.value)
        assert msg.startswith(str(tmp_path / name / "x.ply")) and "\n" not in msg, msg
        for w in words:
            assert w in msg, msg

    head = _sphere(80)
    for unit, mm in (("metres", 1000.0), ("centimetres", 10.0), ("inches", 25.4)):
        m = head.copy()
        m.apply_scale(1 / mm)
        check(unit, m, None, f"it looks like {unit}", "give mesh_to_canonical", "canonical_similarity")
    m = head.copy()
    m.apply_scale(1e-3)
    check("wrong_transform", m, {"mesh_to_canonical": (np.eye(4) * [1e-3, 1e-3, 1e-3, 1]).tolist()},
          "after the JSON's mesh_to_canonical is", "fix mesh_to_canonical")
    box = trimesh.creation.box(extents=[140, 280, 180])  # a head and neck from a scanner's origin at the
    box.apply_translation([0, 110, -40])  # neck, in z-up axes: the top sticks out of the front of the grid
    box.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    check("z_up", box, None, "front (+z)", "y up, z out of the face")
    far = _sphere(80)
    far.apply_translation([0, 2000, 0])  # a scan in its scanner's coordinates: where it is
    check("far", far, None, "covers no cell", "its box is centred at [5.0, 1988.0, -20.0]")


def test_a_scan_in_a_mesh_format_that_is_not_read_is_named(tmp_path: Path) -> None:
    """A crop with its scan as .stl (what many scanners write) was told only that x.ply, x.obj or
    x.npz was expected, as if nothing were there."""
    d = tmp_path / "d"
    _write(d, "x")
    _sphere(80).export(d / "x.STL")
    (d / "x.txt").write_text("notes")  # not a mesh: not named
    _expect(d / "x.png", lambda: scan_folder(d), r"expected x.ply, x.obj or x.npz .*; x.STL is beside it: convert it "
                                                  r"to .ply")
    (d / "x.STL").unlink()
    with pytest.raises(DataError) as e:
        scan_folder(d)
    assert "beside it (any case of the suffix)" in str(e.value) and "x.txt" not in str(e.value)


def test_a_rotation_that_turns_the_face_away_is_refused(tmp_path: Path, cache: Path) -> None:
    """A pose in OpenGL camera axes (frontal: the identity) or fitted to crop coordinates with y up
    was taken as it is: silhouettes upside down and the pose loss trained on faces seen from behind."""
    from voxface.frame import euler_matrix

    grid = Grid.from_config(FRAME, 16)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) * 60
    uv = 0.7 * (X @ FRONTAL_ROTATION.T)[:, :2] / HEAD_RMS_RADIUS_MM
    flipped = fit_pose(X, uv * [1, -1])["rotation"]  # landmarks given with y up
    for name, rot in (("opengl", np.eye(3)), ("y_up", flipped),
                      ("opengl_yawed", np.diag([1.0, -1.0, -1.0]) @ FRONTAL_ROTATION @ euler_matrix(40, 10, 0))):
        d = tmp_path / name
        _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)}, meta={**POSE, "rotation": np.asarray(rot).tolist()})
        _expect(d / "x.json", lambda: FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache),
                r"rotation turns the face away from the camera .*OpenGL.*diag\(1, -1, -1\)")
    for yaw in (-90, 0, 60, 90):  # any face a crop can show: up to a profile, with some pitch
        d = tmp_path / f"yaw{yaw}"
        rot = FRONTAL_ROTATION @ euler_matrix(yaw, 15, 5)
        _write(d, "x", npz={"occupancy": _sphere_occ(grid, 70)}, meta={**POSE, "rotation": rot.tolist()})
        assert FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache).has_pose


def test_a_transposed_mesh_to_canonical_is_named_so(tmp_path: Path, cache: Path) -> None:
    """A column-major 4x4 (OpenGL, three.js, glTF) has its translation in the last row: it was refused
    as not affine without saying why; the transpose is the matrix meant."""
    T = np.eye(4)
    T[:3, :3] *= 1000.0
    T[:3, 3] = SPHERE_C
    metres = _sphere(80)
    metres.apply_translation(-SPHERE_C)
    metres.apply_scale(0.001)
    d = tmp_path / "d"
    _write(d, "x", mesh=metres, meta={"mesh_to_canonical": T.T.tolist()})
    _expect(d / "x.json", lambda: FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache),
            r"last row 0 0 0 1\); this one has its translation in the last row: it is transposed .*give its transpose")
    _write(d, "x", mesh=metres, meta={"mesh_to_canonical": T.tolist()})
    ds = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
    assert ds.ground_truth(ds.samples[0])["occ"].sum() > 0
    _write(d, "x", mesh=metres, meta={"mesh_to_canonical": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]})
    with pytest.raises(DataError) as e:  # singular, not transposed: no such hint
        FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
    assert "it is transposed" not in str(e.value) and str(e.value).endswith("(last row 0 0 0 1)")


def test_suffixes_in_any_case(tmp_path: Path, cache: Path) -> None:
    """``.PLY``, ``.Npz``, ``.JSON`` and ``.MASK.PNG`` belong to their crop (stems match exactly)."""
    grid = Grid.from_config(FRAME, 16)
    d = tmp_path / "d"
    _write(d, "a", mesh=_sphere(80), mesh_ext=".PLY")
    _write(d, "b", img_ext=".JPG")
    np.savez(d / "b.npz", occupancy=_sphere_occ(grid, 70))
    (d / "b.npz").rename(d / "b.Npz")
    (d / "b.JSON").write_text(json.dumps({"person": "a"}))
    Image.new("L", (40, 40), 255).save(d / "b.MASK.PNG", format="PNG")
    samples, unused = scan_folder(d)
    assert unused == []
    a, b = samples
    assert a.mesh == d / "a.PLY" and b.npz == d / "b.Npz" and b.json == d / "b.JSON"
    assert b.mask == d / "b.MASK.PNG" and b.person == "a"
    ds = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
    assert ds[0]["occ"].any() and len(ds.persons) == 1
    _write(d, "c", npz={"occupancy": _sphere_occ(grid, 70)})
    with open(d / "c.NPZ", "wb") as fh:  # (np.savez appends .npz to a path not ending in .npz)
        np.savez(fh, occupancy=_sphere_occ(grid, 70))
    if len(list(d.glob("c.*"))) == 3:  # a case-sensitive file system: two grids for one crop
        _expect(d / "c.png", lambda: scan_folder(d), "more than one occupancy grid")


def test_folder_layout_problems_name_the_file(tmp_path: Path, cache: Path) -> None:
    """Split folders, broken links, masks and empty grids: a DataError naming the file, never a
    silent skip or another exception."""
    grid = Grid.from_config(FRAME, 16)
    occ = {"occupancy": _sphere_occ(grid, 70)}

    def ds(d: Path, split: str = "all", **k: Any) -> FolderDataset:
        return FolderDataset(d, 16, 32, FRAME, split=split, cache_dir=cache, **k)

    d = tmp_path / "beside"  # a crop beside train/ would be in neither split
    _write(d / "train", "a", npz=occ)
    _write(d / "val", "b", npz=occ)
    _write(d, "stray", npz=occ)
    _expect(d / "stray.png", lambda: ds(d), "beside the train/ folder")
    for f in ("stray.png", "stray.npz"):
        (d / f).unlink()
    (d / "notes.txt").write_text("hi")
    assert ds(d).unused == [d / "notes.txt"]  # listed by check-folder
    d = tmp_path / "onlyval"
    _write(d / "val", "a", npz=occ)
    _expect(d, lambda: ds(d), "val/ folder but no train/")
    d = tmp_path / "emptytrain"
    (d / "train").mkdir(parents=True)
    _write(d / "val", "a", npz=occ)
    _expect(d / "train", lambda: ds(d, "train"), r"no samples for the train split: expected crops .* is empty")
    d = tmp_path / "nothing"
    d.mkdir()
    (d / "readme.txt").write_text("hi")
    _expect(d, lambda: ds(d), r"no samples .* holds readme.txt")
    d = tmp_path / "brokenlink"
    _write(d, "a", npz=occ)
    os.symlink(tmp_path / "gone.png", d / "b.png")
    _expect(d / "b.png", lambda: ds(d), "broken symbolic link")
    d = tmp_path / "mask"
    _write(d, "a", npz=occ)
    Image.new("L", (40, 30), 255).save(d / "a.mask.png")
    _expect(d / "a.mask.png", lambda: ds(d)[0], "40x30 pixels, not square")
    d = tmp_path / "npz0"
    _write(d, "a", npz={"occupancy": np.zeros((0, 0, 0), np.uint8)})
    _expect(d / "a.npz", lambda: ds(d, prepare=True), "occupancy is empty")
    d = tmp_path / "zeros"
    _write(d, "a", npz={"occupancy": np.zeros((16,) * 3, np.uint8)})
    _expect(d / "a.npz", lambda: ds(d, prepare=True), "no occupied cell")
    _expect(d / "a.npz", lambda: ds(d, points=8, prepare=True), "no occupied cell")
    np.savez(d / "a.npz", occupancy=pack_occupancy(np.zeros((16,) * 3, np.uint8)))
    _expect(d / "a.npz", lambda: ds(d, prepare=True), "no occupied cell")


def test_mask_files_are_read_as_documented_in_any_mode(tmp_path: Path, cache: Path) -> None:
    """A mask is non-zero where the head is, in any mode and bit depth. It was thresholded at 128
    after load_image composited it over white: a 0/1 label mask read as no head at all, and a cut-out
    (transparent background, alpha = silhouette) as head everywhere. Each mask here marks the left
    half (64 px, resized to the 32 px crops)."""
    grid = Grid.from_config(FRAME, 16)
    d = tmp_path / "masks"
    half = np.zeros((64, 64), np.uint8)
    half[:, :32] = 1
    rgba = np.zeros((64, 64, 4), np.uint8)  # a cut-out: dark hair (black, opaque) on a transparent background
    rgba[:, :32, 3] = 255
    rgba[:, 16:32, :3] = 180
    masks = {
        "label01": Image.fromarray(half, "L"),
        "label01_16bit": Image.fromarray(half.astype(np.uint16)),
        "white255": Image.fromarray(half * 255, "L").convert("RGB"),
        "cutout": Image.fromarray(rgba, "RGBA"),
        "opaque_rgba": Image.fromarray(half * 255, "L").convert("RGBA"),
        "bilevel": Image.fromarray(half * 255, "L").convert("1"),
    }
    for name, im in masks.items():
        _write(d, name, npz={"occupancy": _sphere_occ(grid, 70)})
        im.save(d / f"{name}.mask.png")
    _write(d, "jpeg", npz={"occupancy": _sphere_occ(grid, 70)})
    Image.fromarray(half * 255, "L").save(d / "jpeg.mask.jpg", quality=60)  # compression noise near the edge
    ds = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
    expected = np.zeros((32, 32), np.uint8)
    expected[:, :16] = 1
    seen = set()
    for i in range(len(ds)):
        seen.add(ds.sample_of(i).stem)
        np.testing.assert_array_equal(ds[i]["mask"], expected, err_msg=ds.sample_of(i).stem)
    assert seen == {*masks, "jpeg"}
    (d / "jpeg.mask.jpg").write_bytes(b"not an image")
    _expect(d / "jpeg.mask.jpg", lambda: [ds[i] for i in range(len(ds))], "cannot read the mask")


def test_a_mask_with_an_exif_orientation_is_turned_as_its_crop_is(tmp_path: Path, cache: Path) -> None:
    """The crop (load_image) was turned upright by its EXIF orientation, the mask beside it, made from
    the same phone photo and keeping its tag, was not: the silhouette lay rotated against the face."""
    grid = Grid.from_config(FRAME, 16)
    d = tmp_path / "d"
    upright = np.zeros((64, 64), np.uint8)
    upright[:, :16] = 255  # a strip on the left, as shown
    upright_crop = np.zeros((64, 64, 3), np.uint8)
    upright_crop[:, :16] = 255
    for name, suffix in (("png", ".mask.png"), ("jpeg", ".mask.jpg")):
        _write(d, name, npz={"occupancy": _sphere_occ(grid, 70)}, img_ext=".jpg")
        for arr, path in ((upright_crop, d / f"{name}.jpg"), (upright, d / f"{name}{suffix}")):
            im = Image.fromarray(np.ascontiguousarray(np.rot90(arr, 1)))  # stored turned; tag 6 turns it back
            exif = im.getexif()
            exif[0x0112] = 6
            im.save(path, exif=exif)
    ds = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
    expected = np.zeros((32, 32), np.uint8)
    expected[:, :8] = 1
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"][0, :, :6].mean() > 0.9 and item["image"][0, :, 10:].mean() < 0.1  # the crop: upright
        np.testing.assert_array_equal(item["mask"], expected, err_msg=ds.sample_of(i).stem)


def test_prepare_reads_every_crop_and_mask(tmp_path: Path, cache: Path) -> None:
    """prepare (data.prepare: true, the default) promises that a bad file fails at once; it only
    voxelised meshes, so a non-square or unreadable crop (or mask) past the items the trainer reads
    at the start failed mid-run, when a batch first drew it."""
    grid = Grid.from_config(FRAME, 16)
    d = tmp_path / "d"
    _fixture(d, grid)

    def ds(**k: Any) -> FolderDataset:
        return FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache, **k)

    assert len(ds(prepare=True)) == 8
    Image.new("RGB", (40, 30)).save(d / "carl_1.png")
    ds(prepare=False)  # nothing read yet
    _expect(d / "carl_1.png", lambda: ds(prepare=True), "40x30 pixels, not square")
    (d / "carl_1.png").write_bytes(b"")
    with pytest.raises(VoxfaceError, match="carl_1.png"):
        ds(prepare=True)
    _crop(d / "carl_1.png")
    Image.new("L", (40, 30)).save(d / "carl_1.mask.png")
    _expect(d / "carl_1.mask.png", lambda: ds(prepare=True), "40x30 pixels, not square")


def test_a_head_the_grid_cuts_off_is_refused_a_neck_may_leave_through_the_bottom(tmp_path: Path, cache: Path) -> None:
    """A mesh in millimetres but not centred (a scan in its scanner's coordinates) was voxelised
    as far as the grid reached: a head with its top cut off trained silently. Occupied cells on any
    face of the grid but the bottom are a DataError naming the file (mesh, cached mesh or npz)."""
    grid = Grid.from_config(FRAME, 16)

    def ds(d: Path) -> FolderDataset:
        return FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)

    d = tmp_path / "high"
    _write(d, "a", mesh=_sphere(80).apply_translation([0, 150, 0]))  # reaches y = 218 mm, the grid 170
    _expect(d / "a.ply", lambda: ds(d), r"reaches the grid's top \(\+y\) face")
    d = tmp_path / "forward"
    _write(d, "a", mesh=_sphere(80).apply_translation([150, 0, 130]))
    _expect(d / "a.ply", lambda: ds(d), r"front \(\+z\), subject's left \(\+x\) faces")
    d = tmp_path / "grid"
    occ = _sphere_occ(grid, 70)
    occ[0, 8, 8] = 1  # one cell on the back face
    _write(d, "a", npz={"occupancy": occ})
    _expect(d / "a.npz", lambda: ds(d), r"back \(-z\) face")
    d = tmp_path / "neck"  # a long neck (a box below the head) leaves through the bottom: fine
    neck = trimesh.creation.box(extents=[80, 200, 80]).apply_translation([0, -220, -40])
    _write(d, "a", mesh=trimesh.util.concatenate([_sphere(80), neck]))
    item = ds(d)[0]
    assert item["occ"][:, 0].any() and item["occ"].sum() > _sphere_occ(grid, 80).sum()
    # shoulders (a wide box at the bottom) leave through the sides' lowest quarter: fine; a grid with a
    # cell on a side above it is still refused
    d = tmp_path / "shoulders"
    shoulders = trimesh.creation.box(extents=[460, 60, 160]).apply_translation([0, -205, -55])
    _write(d, "a", mesh=trimesh.util.concatenate([_sphere(80), neck, shoulders]))
    item = ds(d)[0]
    assert item["occ"][..., 0].any() and item["occ"][..., -1].any()  # both sides, low down
    d = tmp_path / "side"
    occ = _sphere_occ(grid, 70)
    occ[8, 4, 15] = 1  # subject's left face, at the lowest quarter's top row: refused
    _write(d, "a", npz={"occupancy": occ})
    _expect(d / "a.npz", lambda: ds(d), r"subject's left \(\+x\) face")
    # a mesh voxelised into the cache before this check is refused too, from the cache
    d = tmp_path / "cached"
    _write(d, "a", mesh=_sphere(80).apply_translation([0, 150, 0]))
    s = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
    bad = np.zeros((16,) * 3, np.uint8)
    bad[4:, 4:, 4:] = 1
    path = s._cache_path(s._content_key(s.samples[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, occ=pack_occupancy(bad))
    _expect(d / "a.ply", lambda: ds(d), r"top \(\+y\), front \(\+z\), subject's left \(\+x\) faces")


# -------------------------------------------------------------------------------- training


def _train_cfg(root: Path, cache: Path, **loss: Any) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(MODEL),
        "data": {"kind": "folder", "root": str(root), "cache_dir": str(cache)},
        "train": {"batch_size": 4, "lr": 0.003, "total_steps": 2, "warmup_steps": 1, "val_every": 0,
                  "ckpt_every": 0, "log_every": 1, "num_val": 4, "prior_samples": 4, "threads": 1,
                  "amp": "off", "loss": {"swap": 0.0, **loss}},
    }


def test_trains_two_steps_on_a_folder(tmp_path: Path, cache: Path, monkeypatch) -> None:
    from voxface.checkpoint import load_model
    from voxface.data.folder import FolderDataset
    from voxface.train import train

    bars: list[bool] = []  # train(progress=False) (voxface train --no-progress) still showed the voxelising bar
    prepare = FolderDataset.prepare
    monkeypatch.setattr(FolderDataset, "prepare", lambda self, progress=False: (bars.append(progress),
                                                                                prepare(self, progress=False))[1])

    grid = Grid.from_config(FRAME, 16)
    _fixture(tmp_path / "data" / "train", grid)
    _write(tmp_path / "data" / "val", "dora_1", mesh=_sphere(78), meta={**POSE, "person": "dora"})
    _write(tmp_path / "data" / "val", "dora_2", npz={"occupancy": _sphere_occ(grid, 72)},
           meta={**POSE, "person": "dora"})
    cfg = _train_cfg(tmp_path / "data", cache)
    assert len(build_dataset(cfg["data"], "train", model_config(MODEL))) == 8  # 3 pairs + 1 repeated
    assert bars == [True]  # build_dataset's default: a bar while meshes are voxelised
    res = train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert bars[1:] == [False, False]  # the training and validation splits, no bar
    assert res.steps == 2 and np.isfinite(res.final_loss) and 0.0 <= res.final_val_iou <= 1.0
    log = [json.loads(line) for line in res.log_path.read_text().splitlines()]
    terms = [r["loss"] for r in log if r["event"] == "train"]
    assert len(terms) == 2 and "pose" in terms[0] and "coeff" not in terms[0] and "swap" not in terms[0]
    assert load_model(res.best_checkpoint or res.last_checkpoint) is not None
    # the swap term needs occ_swap, which real data cannot have: a clear ConfigError before any step,
    # also in point mode (the shipped config's: it raised a ValueError traceback there), nothing written
    for mode in ({}, {"points": 256}):
        cfg = _train_cfg(tmp_path / "data", cache, swap=0.5, **mode)
        if mode:  # point mode needs the deform decoder (logits_at), as the shipped config has
            cfg["model"]["decoder"]["name"] = "deform"
        with pytest.raises(ConfigError, match="train.loss.swap/teacher > 0 need 'occ_swap' targets"):
            train(cfg, tmp_path / "run2", device="cpu", progress=False)
        assert not (tmp_path / "run2").exists()


@pytest.mark.skipif(not (Path(sys.executable).parent / "torchrun").exists(), reason="torchrun not installed")
def test_ddp_trains_on_a_folder_without_poses(tmp_path: Path, cache: Path) -> None:
    """A folder without poses feeds no pose term, so the encoder's pose head gets no gradients: DDP
    failed at the second step ('Expected to have finished reduction in the prior iteration', a
    traceback per rank) where one process trained."""
    import yaml

    for i, (person, mesh) in enumerate([("anna", _sphere(80)), ("anna", _box()), ("ben", _sphere(70)),
                                        ("carl", _sphere(85))]):
        _write(tmp_path / "data" / "train", f"{person}_{i}", mesh=mesh, meta={"person": person}, seed=i)
    _write(tmp_path / "data" / "val", "dora_1", mesh=_sphere(78), meta={"person": "dora"})
    cfg = _train_cfg(tmp_path / "data", cache)
    cfg["train"].update(batch_size=8, total_steps=3)  # whole blocks of 4 on each of 2 ranks
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "voxface.train",
           "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert not any("pose" in rec.get("loss", {}) for rec in log if rec["event"] == "train")
    assert log[-1]["event"] == "end" and log[-1]["step"] == 3 and log[-1]["ddp_weights_identical"] is True


def test_trains_on_a_folder_with_surface_points_in_grid_and_point_mode(tmp_path: Path, cache: Path) -> None:
    """data.points: N (the folder's surface samples, canonical mm, under the items' "points") were passed
    to the network as the step's cells to decode: without point mode, a conv3d model was told to set
    train.loss.points: 0 (it was 0) and a deform model failed in KeyError 'pts_occ'. The cells are the
    trainer's own; the folder's points train in both modes."""
    from voxface.train import train

    grid = Grid.from_config(FRAME, 16)
    _fixture(tmp_path / "data" / "train", grid)
    _write(tmp_path / "data" / "val", "dora_1", mesh=_sphere(78), meta={**POSE, "person": "dora"})
    for decoder, loss in (("conv3d", {}), ("deform", {}), ("deform", {"points": 64})):
        cfg = _train_cfg(tmp_path / "data", cache, **loss)
        cfg["data"]["points"] = 32
        cfg["model"]["decoder"]["name"] = decoder
        cfg["train"]["total_steps"] = 1
        res = train(cfg, tmp_path / f"run-{decoder}-{len(loss)}", device="cpu", progress=False)
        assert res.steps == 1 and np.isfinite(res.final_loss)


def test_config_inheriting_the_shipped_config(tmp_path: Path, cache: Path) -> None:
    """The docs' snippet: inherit configs/voxface-64.yaml, switch data to a folder, swap off."""
    from voxface.train import resolve_config

    _fixture(tmp_path / "faces", Grid.from_config(FRAME, 64))
    shipped = Path(__file__).resolve().parents[1] / "configs" / "voxface-64.yaml"
    y = tmp_path / "real.yaml"
    y.write_text(f"inherit_from: {os.path.relpath(shipped, tmp_path)}\n"
                 f"data:\n  kind: folder\n  root: {tmp_path / 'faces'}\n  cache_dir: {cache}\n"
                 "  val_fraction: 0.3\ntrain:\n  loss:\n    swap: 0.0\n    latent: 0.0\n    teacher: 0.0\n")
    cfg = resolve_config(y)
    loss = cfg["train"].loss
    assert loss.swap == loss.latent == loss.teacher == 0.0
    assert cfg["data"]["path"] == ".data/cache-64"  # inherited, ignored
    tr = build_dataset(cfg["data"], "train", cfg["model"])
    va = build_dataset(cfg["data"], "val", cfg["model"])
    assert tr.root == tmp_path / "faces" and len(tr) and len(va) and tr[0]["occ"].shape == (64,) * 3
    assert tr[0]["image"].shape == (3, 128, 128)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.root"):
        build_dataset({"kind": "folder"}, "train", model_config(MODEL))
    with pytest.raises(ConfigError, match="unknown"):
        build_dataset({"kind": "folder", "root": str(tmp_path), "bogus": 1}, "train", model_config(MODEL))
    # a cap below a block kept no item: the trainer then died on an IndexError traceback
    _fixture(tmp_path / "d", Grid.from_config(FRAME, 16))
    base = {"kind": "folder", "root": str(tmp_path / "d"), "cache_dir": str(tmp_path / "cache")}
    # (ConfigErrors naming data.<key>, as the toy and synthetic sections' are: they were InputErrors
    # saying 'num_val 2', which train --dry-run printed without the config file)
    for split, key in (("train", "num_train"), ("val", "num_val")):
        with pytest.raises(ConfigError, match=f"^data.{key} 3: items come in blocks of 4, so it keeps none of the "
                                              f"{split}"):
            build_dataset({**base, key: 3}, split, model_config(MODEL))
    with pytest.raises(ConfigError, match="^data.num_train 0"):
        build_dataset({**base, "num_train": 0}, "train", model_config(MODEL))
    assert len(build_dataset({**base, "num_val": 0}, "val", model_config(MODEL))) == 0  # no validation: allowed
    with pytest.raises(ConfigError, match="^data.num_val -3 must be >= 0"):  # it kept all but the last block
        build_dataset({**base, "num_val": -3}, "val", model_config(MODEL))
    assert len(build_dataset({**base, "num_train": 7}, "train", model_config(MODEL))) == 4
    with pytest.raises(InputError, match="^num_val 3: items"):  # the class itself names its argument's use
        FolderDataset(tmp_path / "d", 16, 32, split="val", limit=3, cache_dir=tmp_path / "cache")
    # a share written as a percent held out every person but one (train on one person) without a word
    for bad in (10, 1.0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match=r"^data.val_fraction .*from 0 \(none\) to below 1"):
            build_dataset({"kind": "folder", "root": str(tmp_path), "val_fraction": bad}, "train", model_config(MODEL))
    # data.points -3 was numpy's 'negative dimensions are not allowed' (a traceback) when sampling;
    # image_size 0 a ZeroDivisionError at the first item, resolution 2.5 truncated to 2
    with pytest.raises(ConfigError, match=r"^data.points must be at least 0, got -3"):
        build_dataset({**base, "points": -3}, "train", model_config(MODEL))
    d = tmp_path / "d"
    for kw, match in (({"image_size": 0}, "^image_size must be at least 1"), ({"resolution": 2.5}, "^resolution must "
                      "be an integer"), ({"points": -1}, "^points must be at least 0"), ({"split": "test"}, "^split")):
        with pytest.raises((InputError, TypeError), match=match):
            FolderDataset(d, **{"resolution": 16, "image_size": 32, "cache_dir": tmp_path / "cache", **kw})


def test_check_folder_lists_every_bad_sample_in_one_run(tmp_path: Path, cache: Path, monkeypatch, capsys) -> None:
    """check-folder stopped at the first bad file: on a folder of thousands of scans, one run per bad
    file. Every sample is checked; each bad one is an error line naming its file, then one line
    counts them (exit 1); the good samples' meshes are cached all the same."""
    from .conftest import run_cli

    grid = Grid.from_config(FRAME, 16)
    _fixture(tmp_path / "d", grid)
    _write(tmp_path / "d", "dan_1", npz={"occupancy": np.zeros((16,) * 3, np.uint8)}, meta=POSE)  # no occupied cell
    _write(tmp_path / "d", "eve_1", mesh=_sphere(80), meta=POSE)  # good ground truth ...
    (tmp_path / "d" / "eve_1.png").write_bytes(b"not a png")  # ... beside an unreadable crop
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", tmp_path / "d", "--resolution", 16,
                             "--image-size", 32, "--cache-dir", cache)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err, err
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), err
    assert lines[0].startswith(f"error: {tmp_path / 'd' / 'dan_1.npz'}: ") and "no occupied cell" in lines[0]
    assert lines[1].startswith(f"error: {tmp_path / 'd' / 'eve_1.png'}: ")
    assert lines[2] == f"error: {tmp_path / 'd'}: 2 of 7 samples cannot be used (each listed above); fix or remove them and check again"
    # every mesh is cached, eve_1's too (its crop is the bad file): anna_1's and eve_1's, one sphere, share an entry
    assert len(list(cache.rglob("*.npz"))) == 3
    # the API raises the first, as before, unless given a list
    from voxface.data.folder import FolderDataset

    ds = FolderDataset(tmp_path / "d", 16, 32, split="all", cache_dir=cache)
    with pytest.raises(DataError, match="no occupied cell"):
        ds.prepare()
    problems: list = []
    assert ds.prepare(problems=problems) == 7 and [type(e).__name__ for e in problems] == ["DataError", "ImageError"]


def test_check_folder_cli(tmp_path: Path, cache: Path) -> None:
    from typer.testing import CliRunner

    from voxface.cli import app

    _fixture(tmp_path / "d", Grid.from_config(FRAME, 16))
    (tmp_path / "d" / "notes.txt").write_text("hi")
    r = CliRunner().invoke(app, ["data", "check-folder", str(tmp_path / "d"), "--resolution", "16",
                                 "--image-size", "32", "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    assert "5 samples of 3 persons" in r.output and "notes.txt" in r.output


def test_check_folder_with_a_config_checks_the_grid_training_reads(tmp_path: Path, cache: Path, monkeypatch,
                                                                   capsys) -> None:
    """check-folder had no --config: it checked (and cached) the default 64^3 grid whatever the run
    trains on, so training voxelised everything again and could refuse heads the check passed."""
    import yaml

    from .conftest import run_cli

    _fixture(tmp_path / "d", Grid.from_config(FRAME, 16))
    cfg = tmp_path / "real.yaml"
    cfg.write_text(yaml.safe_dump({"model": MODEL, "data": {"kind": "folder", "root": str(tmp_path / "d"),
                                                            "cache_dir": str(cache)}}))
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", "-c", cfg)
    assert code == 0, err
    assert "5 samples of 3 persons" in out and "grid 16^3 of 400 mm" in out and f"cache {cache}" in out
    assert list(cache.rglob("*.npz"))  # the config's cache, filled for the config's grid
    # without the config: the default 64^3 grid, on which the folder's 16^3 grids do not fit
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", tmp_path / "d", "--cache-dir", cache)
    assert code == 1 and "ben_1.npz" in err
    cfg.write_text(yaml.safe_dump({"model": MODEL, "data": {"kind": "toy"}}))
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", "-c", cfg)
    assert code == 1 and err == f"error: {cfg}: data.kind is 'toy', not 'folder'; check-folder checks the real-data " \
                                "folder of a folder config\n"


def test_check_folder_counts_samples_per_split_and_applies_the_configs_caps(tmp_path: Path, cache: Path,
                                                                            monkeypatch, capsys) -> None:
    """check-folder said 'items: train 8, val 4' of a folder of 5 samples (items repeat samples to
    pair persons and fill blocks), and with -c ignored data.num_train / num_val, which training
    applies: it now counts items and distinct samples per split, capped as training caps them."""
    import yaml

    from .conftest import run_cli

    _fixture(tmp_path / "d", Grid.from_config(FRAME, 16))  # train: anna, ben (4 samples); val: carl (1)
    args = ("data", "check-folder", tmp_path / "d", "--resolution", 16, "--image-size", 32, "--cache-dir", cache)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "; train 4 items of 4 samples (2 persons); val 4 items of 1 sample (1 person) (an epoch's items " \
           "repeat samples" in out, out
    assert "check items" not in err and "\r" not in err, err  # captured, as a job's log: no bar lines
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, again, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and again == out, err
    assert "check items d: 100%" in err and "8/8" in err  # on a terminal, building every item (long work): a bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    cfg = tmp_path / "real.yaml"
    data = {"kind": "folder", "root": str(tmp_path / "d"), "cache_dir": str(cache), "val_fraction": 0,
            "num_train": 4, "num_val": 0}
    cfg.write_text(yaml.safe_dump({"model": MODEL, "data": data}))
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", "-c", cfg)
    assert code == 0, err
    assert "5 samples of 3 persons" in out  # every sample is still checked
    assert "; train 4 items of 4 samples (2 persons), data.num_train 4 leaves out 1; val 0 items of 0 samples " \
           "(0 persons);" in out and "repeat" not in out, out
    ds = FolderDataset(tmp_path / "d", 16, 32, split="train", val_fraction=0, limit=4, cache_dir=cache)
    assert len(ds) == 4 and len(set(ds.order)) == 4  # what training reads
    # a cap that keeps no item is the config's, refused before the folder is checked (it was after
    # every item was built, as 'error: num_val 2: ...' without the file or the section)
    for key, value, words in (("num_val", 2, "data.num_val 2: items come in blocks of 4"),
                              ("val_fraction", 10, "data.val_fraction 10.0: the share of persons")):
        cfg.write_text(yaml.safe_dump({"model": MODEL, "data": {**data, "val_fraction": 0.1, key: value}}))
        code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", "-c", cfg)
        assert code == 1 and err.startswith(f"error: {cfg}: {words}") and err.count("\n") == 1, err
        assert "check items" not in err and out == ""


def test_check_folder_warns_of_a_person_in_both_split_folders(tmp_path: Path, cache: Path, monkeypatch,
                                                               capsys) -> None:
    """With train/ and val/ folders a person may be in both (the person split of a flat folder
    never does that): check-folder said nothing, and validation was on persons training saw."""
    from .conftest import run_cli

    g = Grid.from_config(FRAME, 16)
    _write(tmp_path / "d" / "train", "anna_1", mesh=_sphere(80), meta={**POSE, "person": "anna"}, seed=1)
    _write(tmp_path / "d" / "train", "ben_1", npz={"occupancy": _sphere_occ(g, 70)}, meta={**POSE, "person": "ben"})
    _write(tmp_path / "d" / "val", "carl_1", mesh=_sphere(85), meta={**POSE, "person": "carl"}, seed=5)
    args = ("data", "check-folder", tmp_path / "d", "--resolution", 16, "--image-size", 32, "--cache-dir", cache)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "in both train/ and val/" not in err, err
    # one crop per person in train/: the identity-pairs warning (fbb2633), the only one
    assert [line for line in err.splitlines() if "warning:" in line] == [
        line for line in err.splitlines() if "every person has a single sample" in line] != [], err
    assert "3 samples of 3 persons" in out
    _write(tmp_path / "d" / "val", "anna_2", mesh=_box(), meta={**POSE, "person": "anna"}, seed=2)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert f"warning: {tmp_path / 'd'}: 1 person in both train/ and val/ ('anna'): validation is not on unseen " \
           "persons" in err, err


@pytest.mark.parametrize("occupancy, args, words", [
    (np.zeros((0, 0, 0), np.uint8), [], "occupancy is empty"),
    (np.zeros((16,) * 3, np.uint8), [], "no occupied cell"),
    (np.zeros((16,) * 3, np.uint8), ["--points", "8"], "no occupied cell"),
    (None, ["--points", "-1"], "--points must be 0 (none) or more"),
    # a 0/255 grid was 'must be bool or 0/1 integers (got uint8)': uint8 is fine, its values are not
    (_sphere_occ(Grid.from_config(FRAME, 16), 70) * 255, [], "0/1 integers (got uint8 from 0 to 255; divide by 255)"),
    (_sphere_occ(Grid.from_config(FRAME, 16), 70).astype(np.int16) * 2 - 1, [], "(got int16 from -1 to 1)"),
])
def test_check_folder_reports_bad_grids_in_one_line(tmp_path: Path, cache: Path, monkeypatch, capsys,
                                                    occupancy, args, words) -> None:
    from .conftest import run_cli

    occ = _sphere_occ(Grid.from_config(FRAME, 16), 70) if occupancy is None else occupancy
    _write(tmp_path / "d", "x", npz={"occupancy": occ})
    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", tmp_path / "d", "--resolution", 16,
                             "--image-size", 32, "--cache-dir", cache, *args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and words in lines[0]
    if occupancy is not None:
        assert lines[0].startswith(f"error: {tmp_path / 'd' / 'x.npz'}: ")


# ----------------------------------------------------------------- exported synthetic samples

REAL_ICT = os.environ.get("VOXFACE_ICT_ROOT")


def test_exported_samples_name_their_persons_so_no_person_is_in_both_splits(tmp_path: Path, cache: Path) -> None:
    """The sampler draws persons in pairs (samples 2k, 2k + 1 share an identity): the export says so
    (``person``), so a folder dataset pairs them and never splits one person across train and val."""
    from voxface.data.export import export_samples

    from .toy_ict import write_toy_ict

    root = str(write_toy_ict(tmp_path / "ict").parent)
    export_samples(tmp_path / "x", 8, resolution=16, points=16, ict_root=root, progress=False)
    metas = [json.loads((tmp_path / "x" / f"{i:06d}.json").read_text()) for i in range(8)]
    persons = [m["person"] for m in metas]
    assert persons[0::2] == persons[1::2] and len(set(persons)) == 4
    for a, b in zip(metas[0::2], metas[1::2]):
        assert a["id_coeffs"] == b["id_coeffs"]
    splits = {}
    for split in ("train", "val"):
        ds = FolderDataset(tmp_path / "x", 16, 64, FRAME, split=split, cache_dir=cache, val_fraction=0.5)
        splits[split] = {s.person for s in ds.samples}
        assert all(sum(s.person == p for s in ds.samples) == 2 for p in splits[split])
    assert splits["train"] and splits["val"] and not splits["train"] & splits["val"]


@pytest.mark.ict
@pytest.mark.skipif(not (REAL_ICT and Path(REAL_ICT).exists()), reason="needs VOXFACE_ICT_ROOT")
def test_export_without_ict_data_leaves_no_folder(tmp_path: Path) -> None:
    """export_samples made the output folder before loading ICT-FaceKit: a wrong --ict-root left an
    empty folder behind its one-line error."""
    from voxface.data.export import export_samples
    from voxface.errors import VoxfaceError

    with pytest.raises(VoxfaceError, match="ICT-FaceKit"):
        export_samples(tmp_path / "x" / "y", 1, resolution=32, points=16, ict_root=str(tmp_path / "none"),
                       progress=False)
    assert list(tmp_path.iterdir()) == []


def test_reads_voxface_data_export_and_mesh_matches_grid(tmp_path: Path, cache: Path) -> None:
    """`voxface data export` output is a valid folder; voxelising its PLY heads gives its npz grids."""
    from voxface.data.export import export_samples

    export_samples(tmp_path / "x", 2, resolution=32, points=16, ict_root=REAL_ICT, progress=False)
    ds = FolderDataset(tmp_path / "x", 32, 128, FRAME, split="all", cache_dir=cache)
    assert ds.has_pose and ds.coeff_dims == (100, 53)
    for s in ds.samples:
        from_npz = ds.ground_truth(s)["occ"]
        from_mesh = ds._voxelise(s)["occ"]
        assert np.array_equal(from_npz, from_mesh)
    item = ds[0]
    exported = json.loads(ds.sample_of(0).json.read_text())
    np.testing.assert_allclose(item["rotation"], exported["rotation"], atol=1e-6)
    assert item["mask"].mean() > 0.2  # the head seen through the exported pose


@pytest.mark.ict
@pytest.mark.skipif(not (REAL_ICT and Path(REAL_ICT).exists()), reason="needs VOXFACE_ICT_ROOT")
def test_area_statistics_of_ict_heads_match_the_constants() -> None:
    """The calibration constants are the ICT mean closed head's area statistics in the canonical
    frame, and canonical_similarity (calibrated) brings a person's closed head, scaled, turned and
    moved as a scan in metres would be, back to the canonical frame within about 2% of scale and
    10 mm (the uncalibrated measure: about 29% too small and 58 mm off)."""
    from voxface.data.folder import ICT_AREA_CENTROID_MM, ICT_AREA_RMS_MM, _area_statistics
    from voxface.data.ict import load_ict
    from voxface.data.synthetic import FaceSampler, SamplerConfig
    from voxface.frame import euler_matrix

    s = FaceSampler(load_ict(REAL_ICT), SamplerConfig(), 12345)
    c, r = _area_statistics(s.head.closed_head(None, None), s.head.faces)
    np.testing.assert_allclose(c, ICT_AREA_CENTROID_MM, atol=0.06)
    assert r == pytest.approx(ICT_AREA_RMS_MM, abs=0.06)
    R = euler_matrix(20, -10, 5)
    for i in range(3):
        canon = s.head.person(s.id_coeffs(4 * i)).closed_head(None)  # canonical mm (vertex-normalised)
        scan = (canon @ R.T) * 0.0012 + np.array([0.3, -0.1, 1.2])  # a scan in metres, turned and moved
        for calibrated, scale_tol, shift_tol in ((True, 0.03, 10.0), (False, None, None)):
            T = canonical_similarity(scan, s.head.faces, rotation=R.T, calibrated=calibrated)
            back = scan @ T[:3, :3].T + T[:3, 3]
            scale = np.linalg.norm(T[:3, 0]) / (1 / 0.0012)
            shift = np.linalg.norm(back.mean(0) - canon.mean(0))
            if calibrated:
                assert abs(scale - 1) < scale_tol and shift < shift_tol, (i, scale, shift)
            else:
                assert scale < 0.75 and shift > 40, (i, scale, shift)


def test_rotation_in_6d_as_six_numbers_or_a_three_by_two_matrix() -> None:
    """The 6D form is the first two columns: flat (column 0, then column 1) or written as the 3x2
    matrix they are; both give the rotation back (the 3x2 matrix was read row by row: off by 0.6)."""
    from voxface.data.folder import _rotation
    from voxface.frame import FRONTAL_ROTATION, euler_matrix

    R = FRONTAL_ROTATION @ euler_matrix(25, -10, 8)
    here = Path("x.json")
    np.testing.assert_allclose(_rotation(R.tolist(), here), R, atol=1e-12)
    np.testing.assert_allclose(_rotation(np.r_[R[:, 0], R[:, 1]].tolist(), here), R, atol=1e-12)
    np.testing.assert_allclose(_rotation(R[:, :2].tolist(), here), R, atol=1e-12)
    # 2x3 was read as the two columns, silently; it is as likely the projection's two rows (R[:2]),
    # which gave another rotation (equal only for a frontal face): refused as ambiguous
    with pytest.raises(DataError, match="2x3 matrix, which could be its first two rows"):
        _rotation(R[:2].tolist(), here)
