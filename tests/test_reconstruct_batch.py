"""The batch pipeline of ``voxface reconstruct`` on large folders: what it does per input stays
per input (no step that looks at every output or every other input once per input), its files and
``summary.json``.

``tests/test_reliability.py`` covers the batch's failure behaviour (bad files, interrupts, killed
processes, resumes, stems of two photos of one name); this module adds what only shows with many
inputs.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from voxface.models import create_model

from .conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model(copy.deepcopy(TINY_CONFIG)).eval()


@pytest.fixture(scope="module")
def face_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("face") / "face.png"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS).save(p)
    return p


def _folder_of_photos(d: Path, n: int, face_png: Path) -> list[Path]:
    """``d`` with two faces and ``n`` blank images (no face: they fail fast), reconstructed into itself."""
    d.mkdir()
    blank = Image.new("RGB", (16, 16), (90, 90, 90))
    for i in range(n):
        blank.save(d / f"p{i:04d}.png")
    for name in ("face_a.png", "face_b.png"):
        (d / name).write_bytes(face_png.read_bytes())
    return sorted(d.iterdir())


class _CountingRe:
    """``re`` for voxface.reconstruct, counting the names its patterns are matched against."""

    def __init__(self) -> None:
        self.matches = 0
        self.S, self.escape = re.S, re.escape

    def compile(self, *args):
        pattern, outer = re.compile(*args), self

        class Counted:
            def fullmatch(self, s):
                outer.matches += 1
                return pattern.fullmatch(s)

        return Counted()


@pytest.mark.parametrize("all_faces", [False, True])
def test_a_batch_looks_at_its_output_folder_a_bounded_number_of_times(tiny_model, face_png, tmp_path, monkeypatch,
                                                                      all_faces) -> None:
    """A folder reconstructed into itself, most of its photos failing (the finally step that puts
    finished faces on record and removes temporaries runs for every failed input): the output folder
    is listed the same number of times for 20 inputs as for 200, and the names in it are matched
    a number of times that grows with the inputs, not with their square. (It listed the folder twice
    per failed input and matched every name against every stem: 4000 photos took 55 s of that
    before and after 2 s of work, an interrupted batch of thousands minutes to stop.)"""
    import voxface.reconstruct as rec

    listings: dict[int, int] = {}
    matches: dict[int, int] = {}
    for n in (20, 200):
        d = tmp_path / f"n{n}"
        paths = _folder_of_photos(d, n, face_png)
        counting = _CountingRe()
        monkeypatch.setattr(rec, "re", counting)
        calls = []
        real_listdir, real_scandir = os.listdir, os.scandir

        def listdir(p=".", _calls=calls):
            _calls.append(Path(p))
            return real_listdir(p)

        def scandir(p=".", _calls=calls):
            _calls.append(Path(p))
            return real_scandir(p)

        monkeypatch.setattr(os, "listdir", listdir)
        monkeypatch.setattr(os, "scandir", scandir)
        try:
            s = rec.reconstruct_files(tiny_model, paths, d, all_faces=all_faces, latents=True, preview=False,
                                      workers=1, progress=False)
        finally:
            monkeypatch.setattr(os, "listdir", real_listdir)
            monkeypatch.setattr(os, "scandir", real_scandir)
        assert len(s.failed) == n and all("no face" in m for m in s.failed.values()), s.failed
        assert set(s.ok) == {str(d / "face_a.png"), str(d / "face_b.png")}
        listings[n] = sum(1 for p in calls if p == d)
        matches[n] = counting.matches
        for p in paths:  # every photo kept
            assert p.is_file()
        assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
    assert listings[20] == listings[200], listings
    assert matches[200] <= 4 * (200 + 2) * 2, matches  # inputs and names each read a few times


def test_thousands_of_photos_of_one_name_get_distinct_stems_in_input_order() -> None:
    """Nested folders of one layout (``person_k/0001.jpg``) give thousands of inputs one name: each
    gets the smallest free suffix, as it did, without searching from 1 each time (20000 of them took
    minutes before)."""
    from voxface.reconstruct import unique_stems

    n = 20000
    paths = [Path(f"person_{i:05d}/0001.jpg") for i in range(n)]
    paths.insert(3, Path("other/0001_2.jpg"))  # an input's own stem is never given to another
    stems = unique_stems(paths)
    assert len(set(stems)) == len(stems)
    assert stems[:6] == ["0001", "0001_1", "0001_3", "0001_2", "0001_4", "0001_5"]
    assert stems[-1] == f"0001_{n}"
    # an earlier run's stems come first; the others fill the gaps in order
    earlier = {paths[5]: "0001_1"}
    stems = unique_stems(paths[:7], earlier)
    assert stems == ["0001", "0001_3", "0001_4", "0001_2", "0001_5", "0001_1", "0001_6"]


def test_partial_writes_of_many_stems_go_in_one_listing(tmp_path, monkeypatch) -> None:
    """The temporaries of every failed stem are removed with one listing of the folder; finished
    outputs, other stems' temporaries and names that only look alike stay."""
    import voxface.reconstruct as rec

    keep = ["a.ply", "a.npz", ".a.ply", ".ab.ply.11111111.tmp", ".c.ply.22222222.tmp", ".a.tmp"]
    gone = [".a.ply.1234abcd.tmp", ".a_preview.png.deadbeef.tmp", ".a_0.npz.00000000.tmp",
            ".[b].ply.0badf00d.tmp", ".x.y.obj.cafef00d.tmp"]
    for n in keep + gone:
        (tmp_path / n).write_bytes(b"x")
    calls = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p=".": calls.append(p) or real(p))
    rec._remove_partial_writes(tmp_path, (s for s in ["a", "[b]", "x.y", "zz"]))
    rec._remove_partial_writes(tmp_path, [])  # nothing to remove: the folder is not even listed
    assert len(calls) == 1
    monkeypatch.setattr(os, "listdir", real)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(keep)


def test_skip_existing_knows_many_moved_photos_by_name_and_bytes(tiny_model, face_png, tmp_path) -> None:
    """A folder moved after a run: a rerun from the new place with ``--skip-existing`` skips every
    photo (looked up by its name among the earlier owners, then its bytes), and a photo of the same
    name with other bytes is not taken for one of them."""
    from voxface.reconstruct import reconstruct_files

    src = tmp_path / "photos"
    src.mkdir()
    arr = np.asarray(Image.open(face_png))
    for i in range(3):
        Image.fromarray(np.roll(arr, i, axis=1)).save(src / f"f{i}.png")
    out = tmp_path / "out"
    s = reconstruct_files(tiny_model, sorted(src.iterdir()), out, detect=False, workers=1, progress=False)
    assert len(s.ok) == 3
    moved = tmp_path / "moved"
    src.rename(moved)
    Image.fromarray(np.roll(arr, 7, axis=1)).save(moved / "f2.png")  # f2 changed meanwhile
    s = reconstruct_files(tiny_model, sorted(moved.iterdir()), out, detect=False, workers=1, progress=False,
                          skip_existing=True)
    assert sorted(s.skipped) == [str(moved / "f0.png"), str(moved / "f1.png")]
    assert list(s.failed) == [str(moved / "f2.png")] and "another photo" in s.failed[str(moved / "f2.png")]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    from voxface.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth.tar", tiny_model)


def test_a_folder_of_sub_folders_says_recursive_and_recursive_reads_them(tiny_ckpt, face_png, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    """A dataset laid out one folder a person (``photos/person/0001.png``): without --recursive the
    error says the sub-folders were not searched (it said only 'no images found'); with it every
    photo is reconstructed, the repeated name told apart, and summary.json maps each to its files."""
    from .conftest import run_cli

    photos = tmp_path / "photos"
    for person in ("ann", "bob"):
        (photos / person).mkdir(parents=True)
        (photos / person / "0001.png").write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photos, "-o", out, "-c", tiny_ckpt, "--no-detect",
                           "--no-preview")
    assert code == 1 and "Traceback" not in err
    assert f"error: {photos}: no images found (its sub-folders are searched with --recursive)" in err
    assert not out.exists()
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photos, "-r", "-o", out, "-c", tiny_ckpt,
                           "--no-detect", "--no-preview", "--workers", "1")
    assert code == 0, err
    import json

    ok = json.loads((out / "summary.json").read_text())["ok"]
    assert ok == {str(photos / "ann" / "0001.png"): [str(out / "0001.ply"), str(out / "0001.npz")],
                  str(photos / "bob" / "0001.png"): [str(out / "0001_1.ply"), str(out / "0001_1.npz")]}
    for files in ok.values():
        with np.load(files[1]) as z:
            assert z["z_id"].shape == (1, TINY_CONFIG["encoder"]["z_id"])


def test_reconstruction_fields_are_what_its_docstring_says(tiny_model, face_png) -> None:
    """The shapes, dtypes and devices :class:`Reconstruction`'s docstring gives; a face decoded from
    codes that carry a pose has no crop box, and ``mesh_in_camera`` says so (it said 'no pose')."""
    from voxface.errors import VoxfaceError
    from voxface.reconstruct import Reconstruction, decode_latents, reconstruct_image

    doc = Reconstruction.__doc__
    for words in ("crop_box: ``(3,)`` float64", "``z_id (1, D_id)``", "``rotation (1, 3, 3)``", "``scale (1,)``",
                  "``translation (1, 2)``", "canonical millimetres"):
        assert words in doc, words
    r = reconstruct_image(tiny_model, face_png)
    S = tiny_model.image_size
    assert r.crop_box.shape == (3,) and r.crop_box.dtype == np.float64
    assert r.crop.shape == (S, S, 3) and r.crop.dtype == np.float32 and 0 <= r.crop.min() <= r.crop.max() <= 1
    assert r.latents.z_id.shape == (1, TINY_CONFIG["encoder"]["z_id"]) and r.latents.z_id.device.type == "cpu"
    assert r.latents.z_exp.shape == (1, TINY_CONFIG["encoder"]["z_exp"])
    assert tuple(r.pose.rotation.shape) == (1, 3, 3) and tuple(r.pose.scale.shape) == (1,)
    assert tuple(r.pose.translation.shape) == (1, 2)
    R = r.pose.rotation[0].double()
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-4) and torch.det(R) > 0
    assert r.logits.dtype == np.float32 and r.logits.shape == (r.grid.resolution,) * 3
    d = decode_latents(tiny_model, r.latents)[0]
    assert d.pose is not None and d.crop_box is None
    with pytest.raises(VoxfaceError, match="no crop box"):
        d.mesh_in_camera()


def test_reconstruct_files_of_one_folder_or_path_is_not_read_letter_by_letter(tiny_model, face_png, tmp_path) -> None:
    """``reconstruct_files(model, "photos/", out)``: a str (or Path) is one folder, photo or pattern,
    expanded as the command expands it (a str was iterated: one failed 'input' per character, and
    summary.json listed '/', 't', 'm'...); a path that matches nothing fails before anything is written."""
    from voxface.errors import ImageError
    from voxface.reconstruct import reconstruct_files

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        (photos / name).write_bytes(face_png.read_bytes())
    (photos / "notes.txt").write_text("not a photo")
    kw = dict(detect=False, workers=1, progress=False, preview=True)
    s = reconstruct_files(tiny_model, str(photos), photos, **kw)  # into its own folder: previews written there
    assert sorted(s.ok) == [str(photos / "a.png"), str(photos / "b.png")] and not s.failed
    s = reconstruct_files(tiny_model, photos, photos, **kw)  # again: its previews are not taken for photos
    assert sorted(s.ok) == [str(photos / "a.png"), str(photos / "b.png")] and not s.failed
    s = reconstruct_files(tiny_model, str(photos / "a.png"), tmp_path / "one", **kw)
    assert list(s.ok) == [str(photos / "a.png")]
    s = reconstruct_files(tiny_model, str(photos / "*.png"), tmp_path / "pattern", **kw)
    assert sorted(s.ok) == [str(photos / "a.png"), str(photos / "b.png")]
    with pytest.raises(ImageError, match="nothing"):
        reconstruct_files(tiny_model, str(tmp_path / "nothing"), tmp_path / "never", **kw)
    assert not (tmp_path / "never").exists()


def test_save_frames_and_units_are_the_documented_ones(tiny_model, face_png, tmp_path) -> None:
    """``save(frame=...)``: canonical mm or the camera frame's pixels; GLB the same divided by 1000."""
    import trimesh

    from voxface.reconstruct import Reconstruction, reconstruct_image

    assert '``frame``: ``"canonical"``' in Reconstruction.save.__doc__
    r = reconstruct_image(tiny_model, face_png)
    cam = r.mesh_in_camera()
    for frame, want in (("canonical", r.mesh.vertices), ("camera", cam.vertices)):
        for fmt, unit in (("ply", 1.0), ("glb", 1000.0)):
            r.save(tmp_path / f"{frame}.{fmt}", frame=frame)
            got = trimesh.load(tmp_path / f"{frame}.{fmt}", force="mesh", process=False)
            assert np.allclose(np.asarray(got.vertices) * unit, want, atol=1e-3 * unit), (frame, fmt)
    # the camera frame overlays the photo: the mesh's x, y reach into the crop box
    x0, y0, side = r.crop_box
    cx, cy = cam.vertices[:, 0].mean(), cam.vertices[:, 1].mean()
    assert x0 - side < cx < x0 + 2 * side and y0 - side < cy < y0 + 2 * side


def test_reconstruct_files_searches_folders_in_a_list_and_refuses_one_without_photos(tiny_model, face_png,
                                                                                     tmp_path) -> None:
    """``reconstruct_files(model, "empty_dir", out)`` returned an empty summary without a word (the
    command says 'no images found'); a folder inside a list was one failed input ('is a directory');
    the API had no ``recursive``."""
    from voxface.errors import ImageError
    from voxface.reconstruct import reconstruct_files

    photos = tmp_path / "photos"
    (photos / "ann").mkdir(parents=True)
    (photos / "ann" / "a.png").write_bytes(face_png.read_bytes())
    (tmp_path / "b.png").write_bytes(face_png.read_bytes())
    (tmp_path / "empty").mkdir()
    kw = dict(detect=False, workers=1, progress=False)
    with pytest.raises(ImageError, match=rf"^{photos}: no images found \(its sub-folders are searched with "
                                         r"recursive=True\)$"):
        reconstruct_files(tiny_model, photos, tmp_path / "never", **kw)
    with pytest.raises(ImageError, match=rf"^{tmp_path / 'empty'}: no images found$"):
        reconstruct_files(tiny_model, [tmp_path / "empty"], tmp_path / "never", **kw)
    with pytest.raises(ImageError, match="no file matches this pattern"):  # as the command says it
        reconstruct_files(tiny_model, [str(tmp_path / "empty" / "*.jpg")], tmp_path / "never", **kw)
    assert not (tmp_path / "never").exists()
    s = reconstruct_files(tiny_model, photos, tmp_path / "r", recursive=True, **kw)
    assert list(s.ok) == [str(photos / "ann" / "a.png")]
    # a list: its folders searched in place, its files inputs as they are (a missing one fails in the batch)
    s = reconstruct_files(tiny_model, [photos / "ann", tmp_path / "b.png", tmp_path / "gone.png"], tmp_path / "l", **kw)
    assert sorted(s.ok) == sorted([str(photos / "ann" / "a.png"), str(tmp_path / "b.png")]), (s.ok, s.failed)
    assert list(s.failed) == [str(tmp_path / "gone.png")]
    # a folder and a photo in it, or overlapping patterns: each photo once, as the command lists it
    # (it was reconstructed twice, into a and a_1, and summary.json held one record for both)
    ann = photos / "ann"
    s = reconstruct_files(tiny_model, [ann / "a.png", ann, str(ann / "*.png"), ann / ".." / "ann" / "a.png"],
                          tmp_path / "d", **kw)
    assert list(s.ok) == [str(ann / "a.png")] and s.faces == 1 and not s.failed
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a.ply", "summary.json"]


def test_an_encoder_with_broken_weights_is_named_not_the_codes(face_png, tmp_path) -> None:
    """A checkpoint whose encoder gives NaN (a diverged run) failed every photo with decode's
    'z_id holds NaN or infinite values', as if the caller had passed bad codes. Now one error saying
    the encoder's weights are broken, before anything is decoded or written."""
    from voxface.errors import VoxfaceError
    from voxface.models import Latents, Pose
    from voxface.reconstruct import reconstruct_files, reconstruct_image

    torch.manual_seed(0)
    broken = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    with torch.no_grad():
        for p in broken.encoder.parameters():
            p.fill_(float("nan"))
    with pytest.raises(VoxfaceError, match=r"^the model's encoder gives NaN or infinite codes or pose for 1 of the 1"):
        reconstruct_image(broken, face_png, detect=False)
    with pytest.raises(VoxfaceError, match=r"encoder gives NaN .*its weights are broken"):
        reconstruct_files(broken, [face_png], tmp_path / "out", detect=False, workers=1, progress=False)
    assert not list((tmp_path / "out").glob("*.ply"))
    # which faces: codes or any pose field
    ok = Latents(torch.zeros(3, 2), torch.zeros(3, 1), Pose(torch.eye(3).repeat(3, 1, 1), torch.ones(3),
                                                            torch.zeros(3, 2)))
    assert ok.nonfinite() == []
    ok.z_exp[1, 0] = float("inf")
    ok.pose.translation[2, 1] = float("nan")
    assert ok.nonfinite() == [1, 2]


def test_summary_records_the_settings_and_a_resume_with_other_ones_says_so(tiny_ckpt, tiny_model, face_png,
                                                                            tmp_path, monkeypatch, capsys) -> None:
    """summary.json records what made the faces (the model's weights, voxface's version, every option
    a face's files depend on). A --skip-existing rerun with another threshold or other weights kept
    the earlier faces silently, leaving a folder of meshes made two ways: it now says which inputs
    and which settings on one warning line; the same settings again say nothing."""
    import json

    from voxface.checkpoint import save_checkpoint

    from .conftest import run_cli

    photos = tmp_path / "photos"
    photos.mkdir()
    arr = np.asarray(Image.open(face_png))
    for i in range(2):
        Image.fromarray(np.roll(arr, i, axis=1)).save(photos / f"f{i}.png")
    out = tmp_path / "out"
    base = ("reconstruct", photos, "-o", out, "--no-detect", "--no-preview", "--workers", "1")
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt)
    assert code == 0, err
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["threshold"] == 0.5 and settings["format"] == "ply" and settings["detect"] is False
    assert settings["resolution"] == TINY_CONFIG["decoder"]["resolution"] and settings["latents"] is True
    assert re.fullmatch(r"[0-9a-f]{16}", settings["model_sha256"])

    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing")
    assert code == 0 and "warning" not in err, err  # the same settings: nothing to say

    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing", "--threshold", "0.6")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert lines == [f"warning: {out / 'summary.json'}: 2 of the 2 input(s) skipped as done were made with other "
                     "settings: threshold 0.5 (now 0.6); rerun without --skip-existing to remake them"]
    # no face was made at 0.6: each face's record stays 0.5, and the same rerun says it again
    record = json.loads((out / "summary.json").read_text())
    assert {record["settings_table"][i]["threshold"] for i in record["made_with"].values()} == {0.5}
    assert set(record["made_with"]) == {"f0.ply", "f0.npz", "f1.ply", "f1.npz"}
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing", "--threshold", "0.6")
    assert "threshold 0.5 (now 0.6)" in err, err
    # meshes of another format are other files: nothing skipped, nothing to say
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing", "--resolution", "64",
                           "--format", "obj")
    assert code == 0 and "warning" not in err, err
    # a finer grid: its upsample is no change from the model's grid, where none is used
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing", "--resolution", "64")
    assert "settings: resolution 32 (now 64); rerun" in err and "upsample None" not in err, err
    # a new photo made at 0.6 beside faces kept from 0.5: each face keeps its own record
    Image.fromarray(np.roll(arr, 5, axis=1)).save(photos / "f2.png")
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing", "--threshold", "0.6")
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", tiny_ckpt, "--skip-existing", "--threshold", "0.6")
    assert "2 of the 3 input(s) skipped as done were made with other settings: threshold 0.5 (now 0.6)" in err, err

    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    other_ckpt = save_checkpoint(tmp_path / "other.pth.tar", other)
    code, _, err = run_cli(monkeypatch, capsys, *base, "-c", other_ckpt, "--skip-existing", "--threshold", "0.6")
    assert code == 0 and "3 of the 3 input(s) skipped as done were made with other settings: the model's weights, " \
        "threshold 0.5 (now 0.6)" in err, err


def test_a_folder_without_photos_beside_other_inputs_is_named_not_dropped(tiny_ckpt, tiny_model, face_png, tmp_path,
                                                                           monkeypatch, capsys) -> None:
    """``voxface reconstruct a.png people/ empty/ -o out`` where ``people/`` holds only sub-folders
    (no -r) and ``empty/`` nothing: both were dropped without a word and the batch reported success
    on ``a.png`` alone. Each is now one warning line naming it (``people/`` with how its sub-folders
    are searched), the batch goes on; the API warns the same way."""
    from voxface.reconstruct import reconstruct_files

    from .conftest import run_cli

    (tmp_path / "a.png").write_bytes(face_png.read_bytes())
    (tmp_path / "people" / "ann").mkdir(parents=True)
    (tmp_path / "people" / "ann" / "b.png").write_bytes(face_png.read_bytes())
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", tmp_path / "a.png", tmp_path / "people",
                           tmp_path / "empty", "-o", out, "-c", tiny_ckpt, "--no-detect", "--no-preview",
                           "--workers", "1")
    assert code == 0 and "Traceback" not in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("warning:")] == [
        f"warning: {tmp_path / 'people'}: no images found (its sub-folders are searched with --recursive); "
        "it is left out",
        f"warning: {tmp_path / 'empty'}: no images found; it is left out"]
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "a.ply", "summary.json"]
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", tmp_path / "a.png", tmp_path / "people", "-r",
                           "-o", tmp_path / "r", "-c", tiny_ckpt, "--no-detect", "--no-preview", "--workers", "1")
    assert code == 0 and "warning" not in err and (tmp_path / "r" / "b.ply").is_file(), err
    with pytest.warns(UserWarning, match=r"people: no images found \(its sub-folders are searched with "
                                         r"recursive=True\); it is left out"):
        s = reconstruct_files(tiny_model, [tmp_path / "a.png", tmp_path / "people"], tmp_path / "api",
                              detect=False, workers=1, progress=False)
    assert list(s.ok) == [str(tmp_path / "a.png")]


def test_detector_options_reach_every_input_and_summary_records_them(tiny_ckpt, tiny_model, tmp_path, monkeypatch,
                                                                    capsys) -> None:
    """``--no-skin-check`` and ``--scan-size`` (the detector's ``skin_check`` and ``max_side``, which
    the command had no way to set): a face under a warm cast is found only without the skin check;
    a 41-px face in a 640-px photo is missed when the photo is scanned at 300 px (then 19 px, under
    the cascade's 24-px window). summary.json records both, and a resume with another says so."""
    import json

    from skimage import data

    from voxface.errors import InputError
    from voxface.reconstruct import reconstruct_files, reconstruct_image

    from .conftest import run_cli

    photos = tmp_path / "photos"
    photos.mkdir()
    a = data.astronaut()
    Image.fromarray(np.clip(a * np.array([1.3, 1.0, 0.6]), 0, 255).astype(np.uint8)).save(photos / "warm.png")
    small = np.full((640, 640, 3), 128, np.uint8)
    small[50:250, 50:250] = np.asarray(Image.fromarray(a).resize((200, 200), Image.Resampling.LANCZOS))
    Image.fromarray(small).save(photos / "small.png")
    out = tmp_path / "out"
    base = ("reconstruct", photos, "-o", out, "-c", tiny_ckpt, "--no-preview", "--workers", "1")
    code, _, err = run_cli(monkeypatch, capsys, *base)
    assert code == 1 and "warm.png: no face found" in err and "lacking skin colour" in err, err
    assert (out / "small.ply").is_file() and not (out / "warm.ply").exists()
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["skin_check"] is True and settings["scan_size"] == 640
    code, _, err = run_cli(monkeypatch, capsys, *base, "--no-skin-check", "--scan-size", "300", "--skip-existing")
    assert code == 0 and (out / "warm.ply").is_file(), err
    assert "skin_check True (now False), scan_size 640 (now 300)" in err, err  # small.png kept from the 640-px scan
    assert f"{photos / 'small.png'}" not in err  # skipped as done, not scanned again
    record = json.loads((out / "summary.json").read_text())
    assert record["settings"]["skin_check"] is False and record["settings"]["scan_size"] == 300
    assert record["settings_table"][record["made_with"]["warm.ply"]]["skin_check"] is False
    code, _, err = run_cli(monkeypatch, capsys, *base, "--scan-size", "300")
    assert code == 1 and f"error: {photos / 'small.png'}: no face found" in err, err
    code, _, err = run_cli(monkeypatch, capsys, *base, "--scan-size", "10")
    assert code == 1 and "Traceback" not in err and "--scan-size" in err, err
    # the API takes them too, and refuses a scan size no face fits before reading any photo
    assert reconstruct_image(tiny_model, photos / "warm.png", skin_check=False).crop_box is not None
    with pytest.raises(InputError, match="scan_size must be at least 24"):
        reconstruct_files(tiny_model, photos, tmp_path / "never", scan_size=10, progress=False)
    assert not (tmp_path / "never").exists()
    # the command's default (written out so that --help imports no torch) is the detector's own
    import inspect

    from voxface.cli._reconstruct import SCAN_SIZE as cli_default
    from voxface.detect import detect_faces
    from voxface.reconstruct import SCAN_SIZE

    assert cli_default == SCAN_SIZE == inspect.signature(detect_faces).parameters["max_side"].default
    from voxface.cli._reconstruct import MAX_SMOOTH as cli_most
    from voxface.mesh import MAX_SMOOTH

    assert cli_most == MAX_SMOOTH  # --smooth's range in --help is the library's


def test_an_output_folder_that_is_a_file_is_a_voxface_error(tiny_model, face_png, tmp_path) -> None:
    """``reconstruct_files(model, photos, "afile")`` (or ``"afile/out"``) raised a bare
    FileExistsError / NotADirectoryError: a user's mistake, not a voxface error line. Now a
    VoxfaceError naming the folder (the command's line is unchanged), before any photo is read."""
    from voxface.errors import VoxfaceError
    from voxface.reconstruct import reconstruct_files

    afile = tmp_path / "afile"
    afile.write_text("a file where a folder is asked for")
    with pytest.raises(VoxfaceError, match=rf"^{re.escape(str(afile))}: is a file, where a folder is needed$"):
        reconstruct_files(tiny_model, [tmp_path / "never-read.png"], afile, progress=False)
    with pytest.raises(VoxfaceError, match=rf"^{re.escape(str(afile / 'out'))}: Not a directory$"):
        reconstruct_files(tiny_model, [tmp_path / "never-read.png"], afile / "out", progress=False)
    assert afile.read_text() == "a file where a folder is asked for"


@pytest.mark.parametrize("option, value, error", [("batch_size", 0, "InputError"),
                                                  ("batch_size", 2.7, "InputTypeError"),
                                                  ("workers", 0, "InputError"), ("workers", True, "InputTypeError")])
def test_batch_size_and_workers_that_are_not_integers_from_one_are_refused(tiny_model, face_png, tmp_path, option,
                                                                           value, error) -> None:
    """``reconstruct_files(batch_size=0)`` ran with 1, ``batch_size=2.7`` with 2, ``workers=0`` with 1,
    without a word (``decode_latents`` refuses the same values): refused, before anything is written."""
    import voxface.errors
    from voxface.reconstruct import reconstruct_files

    with pytest.raises(getattr(voxface.errors, error), match=rf"^{option} must be"):
        reconstruct_files(tiny_model, [face_png], tmp_path / "never", progress=False, **{option: value})
    assert not (tmp_path / "never").exists()


def test_names_that_differ_only_in_case_get_distinct_stems_on_a_case_insensitive_folder(tiny_model, face_png,
                                                                                        tmp_path, monkeypatch) -> None:
    """``people/ann/IMG_1.JPG`` and ``people/bob/img_1.jpg`` into a folder on a case-insensitive file
    system (macOS's and Windows' default) got the stems ``IMG_1`` and ``img_1``: one file, the second
    face over the first, while summary.json listed both as written. There the stems differ beyond
    case; on a case-sensitive folder (this one) nothing changes."""
    import voxface.reconstruct as rec_mod
    from voxface.reconstruct import reconstruct_files, unique_stems

    paths = [Path("a/X.jpg"), Path("b/x.jpg"), Path("c/x_1.JPG")]
    assert unique_stems(paths) == ["X", "x", "x_1"]
    assert unique_stems(paths, ignore_case=True) == ["X", "x_2", "x_1"]
    assert unique_stems(paths, {paths[1]: "x"}, ignore_case=True) == ["X_2", "x", "x_1"]
    assert rec_mod._case_insensitive(tmp_path) is False and not [f for f in tmp_path.iterdir()]

    for sub, name in (("ann", "IMG_1.PNG"), ("bob", "img_1.png")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes(face_png.read_bytes())
    monkeypatch.setattr(rec_mod, "_case_insensitive", lambda folder: True)
    s = reconstruct_files(tiny_model, [tmp_path / "ann", tmp_path / "bob"], tmp_path / "out", detect=False,
                          workers=1, progress=False)
    meshes = sorted(Path(files[0]).name for files in s.ok.values())
    assert meshes == ["IMG_1.ply", "img_1_1.ply"] and not s.failed


@pytest.mark.parametrize("option, value, words", [
    ("--format", "xyz", "--format must be one of obj, ply, stl, glb, not 'xyz'"),
    ("--frame", "pixels", "--frame must be one of canonical, camera, not 'pixels'")])
def test_a_bad_format_or_frame_is_refused_before_the_checkpoint_is_read(face_png, tmp_path, monkeypatch, capsys,
                                                                        option, value, words) -> None:
    """``--format xyz`` / ``--frame pixels`` were refused only after the model had loaded (seconds),
    and with a bad ``-c`` too the checkpoint's error came first: now, like ``--upsample``, before it."""
    from .conftest import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", face_png, "-o", tmp_path / "out", option, value,
                           "-c", tmp_path / "no-such-model.pth.tar")
    assert code == 1 and err.strip() == f"error: {words}", err
    assert not (tmp_path / "out").exists()


def test_the_api_names_its_own_fmt_and_frame_arguments(tiny_model, face_png, tmp_path) -> None:
    """reconstruct_files(fmt="PLY") said '--format must be one of ...', an option the Python caller
    never typed: the argument's own name, an InputError (a ValueError), before any output."""
    from voxface.errors import InputError
    from voxface.reconstruct import reconstruct_files

    with pytest.raises(InputError, match=r"^fmt must be one of obj, ply, stl, glb, not 'PLY'$"):
        reconstruct_files(tiny_model, face_png, tmp_path / "out", fmt="PLY", detect=False, progress=False)
    with pytest.raises(InputError, match=r"^frame must be one of canonical, camera, not 'cam'$"):
        reconstruct_files(tiny_model, face_png, tmp_path / "out", frame="cam", detect=False, progress=False)
    assert not (tmp_path / "out").exists()


def test_preview_refuses_a_size_it_cannot_draw(tiny_model, face_png) -> None:
    """``rec.preview(0)`` failed in PIL's ValueError ('height and width must be > 0', no argument
    named): a one-line InputError naming ``size``; a float is refused rather than truncated."""
    from voxface.errors import InputError, InputTypeError
    from voxface.reconstruct import reconstruct_image

    r = reconstruct_image(tiny_model, face_png, detect=False)
    assert r.preview(16).shape == (24, 4 * 16 + 20, 3)
    with pytest.raises(InputError, match="^size must be at least 1, got 0$"):
        r.preview(0)
    with pytest.raises(InputTypeError, match="^size must be an integer"):
        r.preview(64.5)


@pytest.mark.parametrize("args", [
    ["reconstruct", "{photo}", "--no-detect", "-o", "{tmp}/afile/out"],
    ["decode", "{ckpt}", "-o", "{tmp}/afile/x.ply"],
    ["demo", "-o", "{tmp}/afile/demo"],
])
def test_an_output_that_cannot_be_written_is_refused_before_the_model_is_read(args, tmp_path, monkeypatch,
                                                                             capsys) -> None:
    """reconstruct, decode and demo loaded the model (seconds; minutes on a slow disk) before finding
    that -o lies under a file; they now refuse it first, in check_output's words."""
    from .conftest import run_cli

    (tmp_path / "afile").write_text("x")
    photo = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(photo)
    loaded = []
    monkeypatch.setattr("voxface.checkpoint.load_model", lambda *a, **k: loaded.append(1))
    argv = [a.format(tmp=tmp_path, photo=photo, ckpt=tmp_path / "afile") for a in args]
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    assert code == 1 and "afile is a file, where a folder is needed" in err and err.count("\n") == 1, err
    assert not loaded


def test_a_second_ctrl_c_while_the_batch_shuts_down_is_ignored(tiny_ckpt, tmp_path, monkeypatch) -> None:
    """After the first Ctrl-C the pipeline finishes the faces being written, removes partial writes
    and records what was done; a second Ctrl-C there cut that short (temporary files left behind)
    and a third, at exit, printed a traceback from Python's wait for the pipeline's threads. Ctrl-C
    is ignored while it shuts down, and the handler is back afterwards."""
    import os
    import signal

    import voxface.reconstruct as rec_mod
    from voxface.checkpoint import load_model
    from voxface.reconstruct import reconstruct_files

    model = load_model(tiny_ckpt, device="cpu")
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"p{k}.png")
        Image.fromarray(np.full((64, 64, 3), 90 + 20 * k, np.uint8)).save(paths[-1])
    real_collect, real_remove, calls, removed = rec_mod._collect, rec_mod._remove_partial_writes, {"n": 0}, []

    def collect(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the first Ctrl-C
        return real_collect(*args)

    def remove(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the second, while the pipeline shuts down
        time.sleep(0.05)  # the handler would run here
        removed.append(1)
        return real_remove(*args, **kwargs)

    import time

    monkeypatch.setattr(rec_mod, "_collect", collect)
    monkeypatch.setattr(rec_mod, "_remove_partial_writes", remove)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        reconstruct_files(model, paths, tmp_path / "out", detect=False, batch_size=1, workers=1, progress=False)
    assert removed and signal.getsignal(signal.SIGINT) is before
    assert (tmp_path / "out" / "summary.json").exists() and not list((tmp_path / "out").glob(".*.tmp"))


def test_a_reconstruction_prints_as_one_short_line(tiny_model) -> None:
    """repr(rec) (a notebook cell's output, print(rec)) was the dataclass's: the whole logits array
    and the codes, 8,000 characters; it is one line naming what a user looks for."""
    rec = tiny_model.reconstruct(np.full((64, 64, 3), 0.5, np.float32), detect=False)
    text = repr(rec)
    assert "\n" not in text and len(text) < 200, text
    assert text.startswith("Reconstruction(source='<array>', mesh=") and "pose=yaw " in text
    assert f"z_id=(1, {tiny_model.config.encoder.z_id})" in text
