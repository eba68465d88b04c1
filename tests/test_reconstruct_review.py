"""``voxface reconstruct`` / :func:`voxface.reconstruct_files`: batches stopped part-way (a group
photo's faces, a killed run's temporaries) and resumed, and the output folder's ``summary.json``."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from voxface.models import create_model

from .conftest import TINY_CONFIG

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model(copy.deepcopy(TINY_CONFIG)).eval()


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The astronaut at 512 and 320 px side by side: two faces the detector finds."""
    from skimage import data

    p = tmp_path_factory.mktemp("two") / "two.png"
    astro = Image.fromarray(data.astronaut())
    canvas = Image.new("RGB", (832, 512), (128, 128, 128))
    for x0, y0, side in ((0, 0, 512), (512, 96, 320)):
        canvas.paste(astro.resize((side, side), Image.Resampling.LANCZOS), (x0, y0))
    canvas.save(p)
    return p


_KILLED_BETWEEN_FACES = textwrap.dedent("""
    import copy, os, signal, sys
    from pathlib import Path
    import torch
    sys.path.insert(0, {repo!r})
    from tests.conftest import TINY_CONFIG
    from voxface.models import create_model
    import voxface.reconstruct as rec

    real = rec.Reconstruction.save

    def save(self, path, **kw):  # the process dies (out of memory, kill -9) on its second face's write
        if getattr(save, "done", 0) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        save.done = getattr(save, "done", 0) + 1
        return real(self, path, **kw)

    rec.Reconstruction.save = save
    torch.manual_seed(0)
    model = create_model(copy.deepcopy(TINY_CONFIG)).eval()
    rec.reconstruct_files(model, [{photo!r}], {out!r}, all_faces=True, workers=1, progress=False)
""")


def test_a_group_photo_stopped_between_its_faces_is_redone_on_resume(tiny_model, two_faces, tmp_path) -> None:
    """``--all-faces``: a run killed after one face of a group photo was written and before the
    next left ``<stem>_0`` (the file ``--skip-existing`` takes as the proof) alone, and a resume
    skipped the photo as done: its other faces were never made. Face 0 is now written after the
    others, so the resume redoes the photo and writes every face."""
    from voxface.reconstruct import reconstruct_files

    out = tmp_path / "out"
    code = _KILLED_BETWEEN_FACES.format(repo=str(REPO), photo=str(two_faces), out=str(out))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not (out / "two_0.ply").exists()  # the photo is not marked done
    s = reconstruct_files(tiny_model, [two_faces], out, all_faces=True, skip_existing=True, progress=False)
    assert not s.skipped and s.faces == 2 and not s.failed
    assert sorted(Path(f).name for f in s.ok[str(two_faces)]) == ["two_0.ply", "two_1.ply"]
    assert not [f.name for f in out.iterdir() if f.name.startswith(".")]


def test_the_faces_of_a_group_photo_are_written_last_to_first(tiny_model, two_faces, tmp_path, monkeypatch) -> None:
    """Every worker writes a group photo's face 0 after its other faces, and the summary lists them in
    face order."""
    import voxface.reconstruct as rec

    order: list[str] = []
    real = rec.Reconstruction.save

    def save(self, path, **kw):
        order.append(Path(path).stem)
        return real(self, path, **kw)

    monkeypatch.setattr(rec.Reconstruction, "save", save)
    s = rec.reconstruct_files(tiny_model, [two_faces], tmp_path / "out", all_faces=True, workers=2, preview=False,
                              progress=False)
    assert order == ["two_1", "two_0"]
    assert [Path(f).name for f in s.ok[str(two_faces)]] == ["two_0.ply", "two_1.ply"]


def test_a_group_photo_without_its_face_0_is_not_put_on_record(tmp_path) -> None:
    """After processes were stopped, the faces written since the start go on record; a group photo
    whose face 0 (written last) is missing was stopped part-way: not done."""
    from voxface.reconstruct import BatchSummary, _BatchJob, _written_since

    job = _BatchJob(tmp_path, "ply", True, True, 0.5, 0, None, "canonical", False, False, False, 4, 64)
    since = time.time() - 1
    for name in ("a_1.ply", "b_0.ply", "b_1.ply"):
        (tmp_path / name).write_bytes(b"ply")
    summary = BatchSummary()
    _written_since(job, [(tmp_path / "a.png", "a"), (tmp_path / "b.png", "b")], summary, since)
    assert list(summary.ok) == [str(tmp_path / "b.png")] and summary.faces == 2
    assert sorted(Path(f).name for f in summary.ok[str(tmp_path / "b.png")]) == ["b_0.ply", "b_1.ply"]
    os.utime(tmp_path / "b_0.ply", (since - 10, since - 10))  # an earlier run's face 0
    summary = BatchSummary()
    _written_since(job, [(tmp_path / "b.png", "b")], summary, since)
    assert not summary.ok


@pytest.fixture(scope="module")
def face_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("face") / "face.png"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS).save(p)
    return p


def test_a_summary_json_that_no_batch_wrote_is_kept(tiny_model, face_png, tmp_path, monkeypatch, capsys) -> None:
    """A folder holding another tool's ``summary.json`` (the photos' own folder as ``-o``): the batch
    replaced it with its own without a word. Refused on one line naming it, before the model is
    read and before any face is written; a folder of that name too. An earlier run's summary is
    read and replaced as before."""
    import json

    import voxface.checkpoint
    from voxface.errors import VoxfaceError
    from voxface.reconstruct import reconstruct_files

    from .conftest import run_cli

    d = tmp_path / "photos"
    d.mkdir()
    (d / "face.png").write_bytes(face_png.read_bytes())
    theirs = b'{"experiment": "lighting", "accuracy": 0.93}\n'
    (d / "summary.json").write_bytes(theirs)
    loaded: list[object] = []
    monkeypatch.setattr(voxface.checkpoint, "load_model", lambda *a, **k: loaded.append(a) or tiny_model)
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", d, "-o", d, "--device", "cpu")
    assert code == 1 and err.count("\n") == 1 and not loaded, err
    assert f"{d / 'summary.json'}: exists and is not the summary of a voxface reconstruct run" in err
    assert (d / "summary.json").read_bytes() == theirs and sorted(f.name for f in d.iterdir()) == [
        "face.png", "summary.json"]
    with pytest.raises(VoxfaceError, match="is not the summary"):
        reconstruct_files(tiny_model, d, d, detect=False, progress=False)
    (tmp_path / "out" / "summary.json").mkdir(parents=True)
    with pytest.raises(VoxfaceError, match="summary.json: is a folder"):
        reconstruct_files(tiny_model, d, tmp_path / "out", detect=False, progress=False)
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["summary.json"]
    # voxface's own summary: replaced by the next run's
    (d / "summary.json").unlink()
    reconstruct_files(tiny_model, d, d, detect=False, progress=False)
    s = reconstruct_files(tiny_model, d, d, detect=False, skip_existing=True, progress=False)
    assert s.skipped == [str(d / "face.png")]
    assert json.loads((d / "summary.json").read_text())["skipped"] == [str(d / "face.png")]


def test_a_resume_removes_what_a_killed_run_was_writing(tiny_model, face_png, tmp_path) -> None:
    """A run killed mid-write (SIGKILL, out of memory: nothing of it runs after) leaves its hidden
    temporary files (``.x.ply.<hex>.tmp``, up to a 64 MiB volume each); a rerun wrote the faces
    and kept them forever. A run removes the ones of its own faces that are older than it, and
    keeps other stems' and newer ones (a process writing beside it now)."""
    from voxface.reconstruct import reconstruct_files

    d = tmp_path / "in"
    d.mkdir()
    for name in ("x.png", "y.png"):
        (d / name).write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 3600
    left = [".x.ply.1234abcd.tmp", ".x.npz.0badf00d.tmp", ".y_preview.png.deadbeef.tmp"]
    kept = [".z.ply.11111111.tmp", ".x.ply.22222222.tmp"]  # another stem's; one being written beside the run
    for name in left + kept:
        (out / name).write_bytes(b"ply\n")
        t = time.time() + 3600 if name == kept[1] else old
        os.utime(out / name, (t, t))
    s = reconstruct_files(tiny_model, d, out, detect=False, latents=True, preview=True, progress=False)
    assert len(s.ok) == 2 and not s.failed
    assert sorted(f.name for f in out.iterdir() if f.name.startswith(".")) == sorted(kept)
    # a resume that skips the faces (done before their rewrite was killed) removes theirs too
    (out / left[0]).write_bytes(b"ply\n")
    os.utime(out / left[0], (old, old))
    s = reconstruct_files(tiny_model, d, out, detect=False, latents=True, preview=True, skip_existing=True,
                          progress=False)
    assert len(s.skipped) == 2
    assert sorted(f.name for f in out.iterdir() if f.name.startswith(".")) == sorted(kept)
