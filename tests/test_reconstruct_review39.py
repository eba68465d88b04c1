"""``voxface reconstruct`` / :func:`voxface.reconstruct_files` reviewed (session 39): the resume's
checks and a batch's outputs when the disk fills up."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from voxface.reconstruct import _BatchJob, _digest, _replaced


def _job(out: Path) -> _BatchJob:
    return _BatchJob(out=out, fmt="ply", detect=False, all_faces=False, threshold=0.5, smooth=0, decimate=None,
                     frame="canonical", save_volume=False, preview=False, latents=False, batch_size=1, resolution=64)


def test_replaced_answers_without_changing_what_it_is_given(tmp_path) -> None:
    """``_replaced`` asks whether a photo was replaced in place since its mesh was made; it also
    appended the photo to a list it was handed (the caller's warning list), so asking twice listed
    the photo twice. It is a question now: the same answer each time, and nothing it is given
    changes (the caller keeps the list)."""
    photo, out = tmp_path / "x.png", tmp_path / "out"
    out.mkdir()
    photo.write_bytes(b"first bytes")
    digests = {str(photo.resolve()): _digest(photo)}
    mesh = out / "x.ply"
    mesh.write_bytes(b"mesh")
    os.utime(mesh, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(photo, ns=(900_000_000_000_000_000, 900_000_000_000_000_000))
    assert "replaced" not in inspect.signature(_replaced).parameters
    job = _job(out)
    assert _replaced(photo, "x", job, digests, _digest) is False  # older than its mesh: not read
    photo.write_bytes(b"other bytes")  # replaced in place: newer than the mesh, other bytes
    before = dict(digests)
    assert [_replaced(photo, "x", job, digests, _digest) for _ in range(2)] == [True, True]
    assert digests == before
    photo.write_bytes(b"first bytes")  # newer, but the recorded bytes: not replaced
    assert _replaced(photo, "x", job, digests, _digest) is False
    assert _replaced(photo, "x", job, {}, _digest) is False  # nothing on record


def test_a_disk_full_to_the_end_says_what_was_written_and_keeps_it(tmp_path, monkeypatch) -> None:
    """The disk fills up after the first face: the other faces fail, and so does ``summary.json``.
    The error was the summary's alone (``summary.json: cannot write file (No space left on
    device)``): the command's line with the faces written and failed was lost with it, and nothing
    said the first face was whole. The one line now says both, the first face's files are whole,
    nothing half-written is left, and a resume once there is room makes only the others."""
    import copy
    import errno
    import json
    import stat

    import numpy as np
    import pytest
    import torch
    import trimesh
    from PIL import Image

    from voxface.errors import VoxfaceError
    from voxface.models import create_model
    from voxface.reconstruct import reconstruct_files

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    photos, out = tmp_path / "in", tmp_path / "out"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in "abc":
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photos / f"{name}.png")
    real, files_synced = os.fsync, []

    def full_after_two_files(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            files_synced.append(fd)
            if len(files_synced) > 2:  # a.npz and a.ply fit; nothing after them
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", full_after_two_files)
    with pytest.raises(VoxfaceError) as ei:
        reconstruct_files(model, photos, out, detect=False, latents=True, workers=1, progress=False)
    monkeypatch.setattr(os, "fsync", real)
    assert str(ei.value) == (f"{out / 'summary.json'}: cannot write file (No space left on device); this run is "
                             "not on record: 1 face(s) from 1 image(s) written whole, 2 failed (once there is room, "
                             "resume with --skip-existing)")
    assert sorted(os.listdir(out)) == ["a.npz", "a.ply"]  # no temporary, no partial file
    a_mesh = (out / "a.ply").read_bytes()
    assert len(trimesh.load(out / "a.ply").faces) > 0 and {"z_id", "z_exp"} <= set(np.load(out / "a.npz").files)
    s = reconstruct_files(model, photos, out, detect=False, latents=True, workers=1, skip_existing=True,
                          progress=False)
    assert s.skipped == [str(photos / "a.png")] and sorted(s.ok) == [str(photos / n) for n in ("b.png", "c.png")]
    assert (out / "a.ply").read_bytes() == a_mesh
    assert sorted(json.loads((out / "summary.json").read_text())["owners"]) == [
        f"{n}.{ext}" for n in "abc" for ext in ("npz", "ply")]


def test_a_face_read_back_from_its_npz_lands_on_the_photo_again(tmp_path) -> None:
    """A face saved with ``latents=True`` and decoded from its ``.npz`` had the file's pose but no
    crop box (the latent reader gave codes and pose), and ``mesh_in_camera`` said it 'has no pose or
    no crop box (it was decoded from a latent code, not read from a photo)'. ``latent.decode`` reads
    the file's box back (and a Reconstruction's), so the face lands where the photo's own does;
    codes with a pose and no box, or without a pose, each say which is missing."""
    import copy

    import numpy as np
    import pytest
    import torch

    from voxface import latent
    from voxface.errors import VoxfaceError
    from voxface.models import Latents, create_model

    from .conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    rec = model.reconstruct(photo, detect=False)
    npz = rec.save(tmp_path / "face.ply", latents=True)[1]
    back = latent.decode(model, npz)[0]  # (the lead, later: the file's crop box is read back with its pose)
    np.testing.assert_allclose(back.crop_box, [0.0, -8.0, 56.0])
    assert len(back.mesh.vertices) == len(rec.mesh.vertices)
    np.testing.assert_allclose(back.mesh_in_camera().vertices, rec.mesh_in_camera().vertices, atol=1e-3)
    np.testing.assert_allclose(latent.decode(model, rec)[0].mesh_in_camera().vertices,
                               rec.mesh_in_camera().vertices, atol=1e-3)  # a Reconstruction's own box
    boxless = latent.decode(model, rec.latents)[0]  # codes and pose, no box
    assert boxless.pose is not None and boxless.crop_box is None
    for call in (boxless.mesh_in_camera, lambda: boxless.save(tmp_path / "cam.ply", frame="camera")):
        with pytest.raises(VoxfaceError) as ei:
            call()
        assert str(ei.value) == ("this reconstruction has a pose but no crop box (decoded from codes without one); "
                                 "to pose it over the photo they were read from, set rec.crop_box = (x0, y0, side) "
                                 "of that crop, as a reconstruct .npz's crop_box array holds it")
    assert not (tmp_path / "cam.ply").exists()
    bad = tmp_path / "bad.npz"  # a box edited by hand into no box: the face has none
    np.savez(bad, **{k: v for k, v in np.load(npz).items() if k != "crop_box"}, crop_box=np.array([0.0, 0.0, -5.0]))
    assert latent.decode(model, bad)[0].crop_box is None
    poseless = latent.decode(model, Latents(rec.latents.z_id, rec.latents.z_exp))[0]
    with pytest.raises(VoxfaceError, match=r"^this reconstruction has no pose \(decoded from a code that carries "
                                           r"none: sampled or set by hand\), so it has no place in a photo$"):
        poseless.mesh_in_camera()


def test_a_demo_the_disk_cannot_hold_leaves_nothing_of_its_own(tmp_path, monkeypatch, capsys) -> None:
    """``voxface demo`` writes the photo, then the mesh with its ``.npz`` and preview, then the mesh
    posed in the camera frame. A full disk at the last file removed the photo and tried to remove the
    folder it had made, but the three files of the mesh before it stayed (and kept the folder): half
    a demo, without its photo. Every file the demo wrote that was not there before goes now; a
    folder's other files stay."""
    import copy
    import errno
    import stat

    import torch

    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    from .conftest import TINY_CONFIG, run_cli

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pth.tar", create_model(copy.deepcopy(TINY_CONFIG)).eval(), epoch=1)
    real, files_synced = os.fsync, []

    def full_after_four_files(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            files_synced.append(fd)
            if len(files_synced) > 4:  # the photo, the mesh, its .npz and preview; not the camera-frame mesh
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    out = kept / "new" / "demo"
    monkeypatch.setattr(os, "fsync", full_after_four_files)
    code, _, err = run_cli(monkeypatch, capsys, "demo", "-o", out, "-c", ckpt, "--device", "cpu")
    monkeypatch.setattr(os, "fsync", real)
    assert code == 1 and err == f"error: {out / 'astronaut_mesh_camera.obj'}: cannot write file (No space left on device)\n"
    assert len(files_synced) == 5
    # the folders it made went with its files; the folder's own file stays
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"] and (kept / "notes.txt").read_text() == "mine"
