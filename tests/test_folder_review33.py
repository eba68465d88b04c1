"""Review 33 of real-data folders (voxface.data.folder): defects found following docs/real_data.md
end to end on a small fabricated folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from voxface.config import FrameConfig
from voxface.data.folder import FolderDataset
from voxface.errors import DataError
from voxface.frame import FRONTAL_ROTATION

FRAME = FrameConfig()  # 400 mm cube centred at (0, -30, -55)
POSE = {"rotation": FRONTAL_ROTATION.tolist(), "scale": 0.6, "translation": [0.02, -0.05]}
CENTRE = np.array([5.0, -12.0, -20.0])


def _sphere(r: float = 80.0) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=3, radius=r)
    m.apply_translation(CENTRE)
    return m


def _write(folder: Path, stem: str, mesh: trimesh.Trimesh, meta: dict | None = None, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / f"{stem}.png")
    mesh.export(folder / f"{stem}.ply")
    if meta is not None:
        (folder / f"{stem}.json").write_text(json.dumps(meta))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_a_closed_mesh_with_every_triangle_twice_is_voxelised_as_its_surface(tmp_path: Path, cache: Path) -> None:
    """A double-sided export (each triangle again, wound the other way) or a mesh with its triangles
    listed twice is closed: it was refused as "not closed ... close it (e.g. Poisson reconstruction)"
    (every edge in four triangles), and two copies of a triangle cancel in the occupancy."""
    s = _sphere()
    n = len(s.vertices)
    double = trimesh.Trimesh(np.vstack([s.vertices, s.vertices]), np.vstack([s.faces, s.faces[:, ::-1] + n]),
                             process=False)
    twice = trimesh.Trimesh(s.vertices, np.vstack([s.faces, s.faces]), process=False)
    _write(tmp_path / "d", "a_single", s)
    _write(tmp_path / "d", "b_double", double)
    _write(tmp_path / "d", "c_twice", twice)
    ds = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    occ = {ds.sample_of(i).stem: ds[i]["occ"] for i in range(len(ds))}
    assert occ["a_single"].sum() > 100
    np.testing.assert_array_equal(occ["b_double"], occ["a_single"])
    np.testing.assert_array_equal(occ["c_twice"], occ["a_single"])


def test_a_pose_or_coefficients_on_one_split_only_are_refused_or_unused_in_both(tmp_path: Path, cache: Path) -> None:
    """'Either every sample has a pose or none has' and 'coefficients are used only when every sample
    has both' are rules of the folder: checked on each split alone, a folder whose unposed samples
    (or samples without coefficients) were all in val trained with pose fields in train only, and
    built coefficient heads for train while the warning said none were built; `data check-folder`
    (both splits) refused what training accepted."""
    root = tmp_path / "split"
    for i in range(4):
        _write(root / "train", f"t{i}", _sphere(70 + i), {**POSE, "person": f"p{i}"}, seed=i)
    _write(root / "val", "v0", _sphere(75), {"person": "q"}, seed=9)  # no pose
    for split in ("train", "val", "all"):
        with pytest.raises(DataError, match=r"v0\.json: no pose .* give every sample a pose or none"):
            FolderDataset(root, 16, 32, FRAME, split=split, cache_dir=cache)

    flat = tmp_path / "flat"
    coeffs = {"id_coeffs": [0.1, 0.2, 0.3], "exp_coeffs": [0.5, 0.0]}
    for i in range(6):
        _write(flat, f"s{i}", _sphere(70 + i), {"person": f"p{i}", **coeffs}, seed=i)
    val = FolderDataset(flat, 16, 32, FRAME, split="val", val_fraction=0.3, cache_dir=cache)
    assert val.samples and val.coeff_dims == (3, 2)
    for s in val.samples:  # the val persons' samples lose their coefficients
        (flat / f"{s.stem}.json").write_text(json.dumps({"person": s.person}))
    with pytest.warns(UserWarning, match="coefficients are used only when every sample has both"):
        train = FolderDataset(flat, 16, 32, FRAME, split="train", val_fraction=0.3, cache_dir=cache)
    assert all(s.id_coeffs is not None for s in train.samples)  # every training sample has them ...
    assert train.coeff_dims is None and "id_coeffs" not in train[0]  # ... but the folder does not: unused


def test_stems_match_whether_their_accents_are_composed_or_not(tmp_path: Path, cache: Path) -> None:
    """macOS writes file names decomposed (NFD): a mesh, JSON or mask copied from a Mac beside a crop
    written elsewhere (NFC) was "no ground truth for this crop: expected José.ply ... beside it" with
    José.ply beside it. Stems now match in NFC; a crop under both forms is two crops of one stem."""
    import unicodedata

    from voxface.data.folder import scan_folder

    nfc, nfd = unicodedata.normalize("NFC", "José_1"), unicodedata.normalize("NFD", "José_1")
    assert nfc != nfd
    d = tmp_path / "d"
    _write(d, nfc, _sphere(), seed=1)
    (d / f"{nfc}.ply").rename(d / f"{nfd}.ply")
    (d / f"{nfd}.json").write_text(json.dumps({**POSE, "person": "jose"}))
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(d / f"{nfd}.mask.png")
    (s,), unused = scan_folder(d)
    assert s.stem == nfc and s.image.name == f"{nfc}.png" and unused == []
    assert s.mesh.name == f"{nfd}.ply" and s.json.name == f"{nfd}.json" and s.mask.name == f"{nfd}.mask.png"
    assert s.person == "jose" and s.has_pose
    ds = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    assert ds[0]["occ"].sum() > 100 and ds[0]["mask"].min() == 1

    _write(d, nfd, _sphere(), seed=2)  # the same name twice, as two crops
    with pytest.raises(DataError, match="two crops share the stem"):
        scan_folder(d)


def test_a_null_json_value_is_the_key_absent(tmp_path: Path, cache: Path) -> None:
    """Every JSON key is optional, and exporters write null for what they do not know: "rotation":
    null was "rotation has shape [], expected [3, 3]" and "person": null a refused person."""
    d = tmp_path / "d"
    nulls = {"rotation": None, "scale": None, "translation": None, "person": None, "mesh_to_canonical": None,
             "id_coeffs": None, "exp_coeffs": None, "frame": None}
    _write(d, "a", _sphere(), nulls, seed=1)
    _write(d, "b", _sphere(75), {**nulls, "person": "bob"}, seed=2)
    ds = FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    assert not ds.has_pose and ds.coeff_dims is None
    assert [s.person for s in ds.samples] == ["a", "bob"]  # no person: the crop's stem
    _write(d, "c", _sphere(), {**POSE, "scale": None}, seed=3)  # a pose with one part null: part missing
    with pytest.raises(DataError, match=r"c\.json: a pose needs rotation, scale and translation; \['scale'\] missing"):
        FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)


def test_a_pose_fitted_to_a_mirrored_crop_is_named_mirrored_not_opengl(tmp_path: Path, cache: Path) -> None:
    """A crop mirrored against its mesh (a selfie camera's photo, flipped 2D landmarks) fits a pose
    that turns the face away but keeps it upright; it was told to multiply the rotation by
    diag(1, -1, -1), the fix for OpenGL axes, which turns that face upside down."""
    from voxface.data.folder import fit_pose
    from voxface.frame import HEAD_RMS_RADIUS_MM, euler_matrix

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) * 60
    for yaw in (0, 30, -50):
        rot = FRONTAL_ROTATION @ euler_matrix(yaw, 10, 5)
        uv = 0.7 * (X @ rot.T)[:, :2] / HEAD_RMS_RADIUS_MM
        assert np.allclose(fit_pose(X, uv)["rotation"], rot, atol=1e-6)
        for name, flip, expect in (("mirrored", [-1, 1], r"yet keeps it upright: the crop is mirrored"),
                                   ("y_up", [1, -1], r"OpenGL camera axes .*diag\(1, -1, -1\)")):
            d = tmp_path / f"{name}{yaw}"
            _write(d, "x", _sphere(), {**POSE, "rotation": fit_pose(X, uv * flip)["rotation"]})
            with pytest.raises(DataError, match=r"x\.json: rotation turns the face away from the camera") as e:
                FolderDataset(d, 16, 32, FRAME, split="all", cache_dir=cache)
            assert e.match(expect)
            if name == "mirrored":
                assert "OpenGL" not in str(e.value)


def test_a_closed_mesh_with_collapsed_triangles_is_closed(tmp_path: Path, cache: Path) -> None:
    """A triangle naming one vertex twice (a sliver an export or the vertex merge collapsed) has no
    area, but made a closed head "not closed (2 boundary edges, 1 non-manifold) ... close it (e.g.
    Poisson reconstruction)"; a mesh of such triangles only has no triangles."""
    s = _sphere()
    f = s.faces
    slivers = [[f[0, 0], f[0, 0], f[0, 1]], [f[5, 1], f[5, 2], f[5, 2]]]
    collapsed = trimesh.Trimesh(s.vertices, np.vstack([f, slivers]), process=False)
    _write(tmp_path / "d", "a_single", s)
    _write(tmp_path / "d", "b_collapsed", collapsed)
    ds = FolderDataset(tmp_path / "d", 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
    np.testing.assert_array_equal(ds[1]["occ"], ds[0]["occ"])
    _write(tmp_path / "e", "x", trimesh.Trimesh(s.vertices, f[:, [0, 0, 1]], process=False))
    with pytest.raises(DataError, match=r"x\.ply: the mesh has no triangles"):
        FolderDataset(tmp_path / "e", 16, 32, FRAME, split="all", cache_dir=cache, prepare=True)
