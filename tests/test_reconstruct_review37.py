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


def test_a_resumes_summary_lists_the_files_of_every_input_it_skips(tiny_model, face_png, tmp_path) -> None:
    """summary.json keeps the earlier runs' outputs of the inputs a resume skips under ok_earlier,
    looked up by the input's path in the earlier summary: a photo moved since (skipped by its
    bytes), or one skipped on its mesh alone (the earlier run killed before its summary), was in
    skipped and in neither ok nor ok_earlier, so the summary no longer said where its mesh was."""
    photos = tmp_path / "a"
    photos.mkdir()
    for name in ("x.png", "y.png"):
        (photos / name).write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    kw = dict(detect=False, progress=False, workers=1, latents=True)
    first = reconstruct_files(tiny_model, photos, out, **kw)
    files = {Path(p).name: f for p, f in first.ok.items()}
    assert files["x.png"] == [str(out / "x.ply"), str(out / "x.npz")]

    moved = photos.rename(tmp_path / "b")  # the folder moved: each photo known by its bytes
    again = reconstruct_files(tiny_model, moved, out, skip_existing=True, **kw)
    assert sorted(again.skipped) == [str(moved / "x.png"), str(moved / "y.png")] and not again.ok
    record = json.loads((out / "summary.json").read_text())
    assert record["ok_earlier"] == {str(moved / n): files[n] for n in ("x.png", "y.png")}

    (out / "summary.json").unlink()  # a run killed before its summary: the meshes alone say done
    third = reconstruct_files(tiny_model, moved, out, skip_existing=True, **kw)
    assert len(third.skipped) == 2
    assert json.loads((out / "summary.json").read_text())["ok_earlier"] == record["ok_earlier"]


def test_a_resume_lists_a_group_photos_faces_in_face_order(tiny_model, tmp_path) -> None:
    """The same with --all-faces, from the files on disk: face by face (x_0 ... x_10), each face's
    mesh, .npz and preview, as the run that wrote them listed them."""
    from voxface.reconstruct import _all_faces_index, _BatchJob, _owned_files

    out = tmp_path / "out"
    out.mkdir()
    job = _BatchJob(out, "ply", True, True, 0.5, 0, None, "canonical", False, True, True, 4, 32)
    names = [f"x_{k}{end}" for k in (0, 2, 10) for end in (".ply", ".npz", "_preview.png")]
    for name in [*names, "x_1.ply", "x_0.obj"]:
        (out / name).write_bytes(b"x")
    owner = tmp_path / "x.png"
    owners = {name: owner for name in [*names, "x_0.obj"]}  # x_1.ply: on no record as x.png's
    listed = _owned_files(job, "x", owner, owners, _all_faces_index(job))
    assert listed == [str(out / n) for n in names]


def test_a_batch_that_ends_with_failures_leaves_another_writers_temporaries_alone(tiny_model, face_png, tmp_path,
                                                                                 monkeypatch) -> None:
    """Two processes may write into one folder (test_concurrency). A batch that ran to its end with a
    failed input removed every hidden temporary of the failed stem and of the stems it prefixes
    ('.x.*.tmp', '.x_*.tmp'), fresh ones too: those of another process writing x_1 (or x) at that
    moment, whose rename then failed. A run that ended has no temporaries of its own left (its
    writers remove theirs); only one stopped part-way removes those of its unfinished inputs."""
    import voxface.reconstruct as rec_mod

    photos = tmp_path / "in"
    photos.mkdir()
    (photos / "x.png").write_bytes(b"not a photo")
    (photos / "y.png").write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    theirs = [out / ".x_1.ply.0123abcd.tmp", out / ".x.npz.4567cdef.tmp"]  # another process's writes, now
    real = rec_mod._written_since

    def written_since(*args, **kwargs):
        for f in theirs:
            f.write_bytes(b"half a mesh")
        return real(*args, **kwargs)

    monkeypatch.setattr(rec_mod, "_written_since", written_since)
    s = reconstruct_files(tiny_model, photos, out, detect=False, progress=False, workers=1)
    assert list(s.failed) == [str(photos / "x.png")] and list(s.ok) == [str(photos / "y.png")]
    assert all(f.exists() for f in theirs)


def test_one_photo_a_batch_gives_reconstruct_images_face_bit_for_bit(tiny_model, face_png, tmp_path) -> None:
    """What reconstruct_files' docstring says of batch independence: with batch_size=1 and
    workers=1 each face's codes, pose, crop box and mesh are reconstruct_image's of the photo."""
    import trimesh

    from voxface.reconstruct import reconstruct_image

    photos = tmp_path / "in"
    photos.mkdir()
    with Image.open(face_png) as im:
        im.save(photos / "a.png")
        ImageOps.mirror(im).rotate(8).save(photos / "b.png")
    out = tmp_path / "out"
    s = reconstruct_files(tiny_model, photos, out, detect=False, batch_size=1, workers=1, progress=False,
                          latents=True)
    assert not s.failed and len(s.ok) == 2
    for name in ("a", "b"):
        one = reconstruct_image(tiny_model, photos / f"{name}.png", detect=False)
        z = np.load(out / f"{name}.npz")
        for key, value in one.arrays(volume=False).items():
            assert np.array_equal(z[key], value), (name, key)
        mesh = trimesh.load(out / f"{name}.ply", process=False)
        assert np.array_equal(mesh.faces, one.mesh.faces)
        assert np.array_equal(np.asarray(mesh.vertices), np.asarray(one.mesh.vertices, np.float32)), name
