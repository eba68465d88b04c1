"""``voxface reconstruct`` / :func:`voxface.reconstruct_files` reviewed (session 37) as a user with a
folder of thousands of photos runs it: reruns into one output folder, names that collide, resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from voxface.reconstruct import reconstruct_files

from .test_reconstruct_review33 import face_png, tiny_model  # noqa: F401 - the same module fixtures


def _two_photos_of_one_name(tmp_path: Path, face_png: Path) -> tuple[Path, Path]:
    """``a/x.png`` and ``b/x.png``: two different photos (the face and its mirror image) of one name."""
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    a.parent.mkdir()
    b.parent.mkdir()
    with Image.open(face_png) as im:
        im.save(b)
        ImageOps.mirror(im).save(a)
    return a, b


def test_a_rerun_in_another_format_keeps_each_photos_stem(tiny_model, face_png, tmp_path) -> None:
    """An input keeps the stem an earlier run gave it, but the stems were read from the earlier
    meshes of this run's --format only: b/x.png reconstructed to x.obj and x.npz, then a rerun with
    --format ply and a/x.png added (sorting first) gave x to a/x.png, whose x.npz replaced b's
    beside b's x.obj (two photos' files under one stem), and b/x.png became x_1. Now b keeps x."""
    a, b = _two_photos_of_one_name(tmp_path, face_png)
    out = tmp_path / "out"
    kw = dict(latents=True, progress=False, workers=1, detect=False)
    first = reconstruct_files(tiny_model, [b], out, fmt="obj", **kw)
    assert first.ok == {str(b): [str(out / "x.obj"), str(out / "x.npz")]}
    z_b = np.load(out / "x.npz")["z_id"]
    second = reconstruct_files(tiny_model, [a, b], out, fmt="ply", **kw)
    assert not second.failed, second.failed
    assert second.ok[str(b)] == [str(out / "x.ply"), str(out / "x.npz")]
    assert second.ok[str(a)] == [str(out / "x_1.ply"), str(out / "x_1.npz")]
    owners = json.loads((out / "summary.json").read_text())["owners"]
    assert {name: Path(p).parent.name for name, p in owners.items()} == {
        "x.obj": "b", "x.npz": "b", "x.ply": "b", "x_1.ply": "a", "x_1.npz": "a"}
    np.testing.assert_allclose(np.load(out / "x.npz")["z_id"], z_b, atol=1e-4)  # b's codes (batch rounding aside)
    assert not np.allclose(np.load(out / "x_1.npz")["z_id"], z_b, atol=1e-4)  # a's are another face's


def test_a_folder_of_a_meshs_name_is_no_finished_face_on_resume(tiny_model, face_png, tmp_path) -> None:
    """--skip-existing took any path of the mesh's name for the finished mesh: out/x.ply a folder,
    the input failed ('is a folder, where a file is to be written'), and the resume skipped it as
    done and put the folder on record as its output (summary.json's owners). It fails again now."""
    photos = tmp_path / "in"
    photos.mkdir()
    for name in ("x.png", "y.png"):
        (photos / name).write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    (out / "x.ply").mkdir(parents=True)
    kw = dict(detect=False, progress=False, workers=1)
    first = reconstruct_files(tiny_model, photos, out, **kw)
    assert list(first.failed) == [str(photos / "x.png")] and "is a folder" in first.failed[str(photos / "x.png")]
    again = reconstruct_files(tiny_model, photos, out, skip_existing=True, **kw)
    assert again.skipped == [str(photos / "y.png")]
    assert list(again.failed) == [str(photos / "x.png")]
    assert "x.ply" not in json.loads((out / "summary.json").read_text())["owners"]
