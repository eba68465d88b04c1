"""``voxface reconstruct`` / :func:`voxface.reconstruct_files` reviewed as a user with thousands of
photos would use it: what each output records, and a folder of odd inputs rerun into itself."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from voxface.models import create_model

from .conftest import TINY_CONFIG, run_cli


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model(copy.deepcopy(TINY_CONFIG)).eval()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    from voxface.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth.tar", tiny_model, epoch=7)


@pytest.fixture(scope="module")
def face_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("face") / "face.png"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.LANCZOS).save(p)
    return p


def _photos(d: Path, face_png: Path, names: tuple[str, ...] = ("a.png", "b.png")) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name in names:
        (d / name).write_bytes(face_png.read_bytes())
    return d


def test_every_npz_records_the_checkpoint_that_made_it(tiny_ckpt, face_png, tmp_path, monkeypatch, capsys) -> None:
    """Each face's ``.npz`` says which weights made it: the checkpoint's resolved path, the SHA-256
    of its bytes (``sha256sum``'s), its epoch, the weights' digest ``summary.json`` records and the
    voxface version; the file is read once for the run, not once a face. The codes' keys are as
    before and the latent loader still reads the file (it recorded nothing: thousands of outputs
    of several trainings could not be told apart)."""
    import voxface.checkpoint
    from voxface import __version__
    from voxface.latent import as_latents

    photos = _photos(tmp_path / "photos", face_png)
    link = tmp_path / "latest.pth.tar"  # a training's "latest" link: the file it points to is recorded
    link.symlink_to(tiny_ckpt)
    reads = []
    real = voxface.checkpoint._read
    monkeypatch.setattr(voxface.checkpoint, "_read", lambda *a, **k: reads.append(a) or real(*a, **k))
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photos, "-o", out, "-c", link, "--no-detect",
                           "--no-preview", "--workers", "1")
    assert code == 0, err
    assert len(reads) == 1  # load_model's only: the provenance is what it read (model.source), not a second read
    import json

    summary = json.loads((out / "summary.json").read_text())
    want = {"voxface_version": __version__, "model_sha256": summary["settings"]["model_sha256"],
            "checkpoint": str(tiny_ckpt.resolve()), "checkpoint_sha256": hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest(),
            "checkpoint_epoch": 7}
    assert summary["model"] == want
    model = voxface.checkpoint.load_model(tiny_ckpt, device="cpu")
    for stem in ("a", "b"):
        with np.load(out / f"{stem}.npz") as z:  # no pickles: np.load's default refuses them
            assert z.files[:8] == ["z_id", "z_exp", "pose_rotation", "pose_scale", "pose_translation",
                                   "grid_side_mm", "grid_center_mm", "crop_box"]
            got = {k: z[k].item() for k in want}
            assert z["checkpoint_epoch"].dtype == np.int64
        assert got == want
        assert as_latents(model, out / f"{stem}.npz").z_id.shape == (1, TINY_CONFIG["encoder"]["z_id"])


def test_the_api_records_the_weights_and_a_given_checkpoint(tiny_model, tiny_ckpt, face_png, tmp_path) -> None:
    """``reconstruct_files`` without ``checkpoint`` records the weights' digest and the version (no
    path it does not know); with it, in pipeline processes too, the file's path, hash and epoch. A
    checkpoint that cannot be read is refused before anything is written."""
    from voxface.errors import CheckpointError
    from voxface.reconstruct import model_digest, reconstruct_files

    photos = _photos(tmp_path / "photos", face_png, ("a.png", "b.png", "c.png"))
    s = reconstruct_files(tiny_model, photos, tmp_path / "plain", detect=False, latents=True, progress=False,
                          workers=1)
    assert len(s.ok) == 3
    with np.load(tmp_path / "plain" / "a.npz") as z:
        assert z["model_sha256"].item() == model_digest(tiny_model) and "checkpoint" not in z.files
    s = reconstruct_files(tiny_model, photos, tmp_path / "procs", detect=False, latents=True, progress=False,
                          workers=2, batch_size=1, checkpoint=tiny_ckpt)  # forked pipeline processes write them
    assert len(s.ok) == 3
    for stem in "abc":
        with np.load(tmp_path / "procs" / f"{stem}.npz") as z:
            assert z["checkpoint"].item() == str(tiny_ckpt.resolve()) and z["checkpoint_epoch"].item() == 7
    with pytest.raises(CheckpointError, match="gone.pth.tar"):
        reconstruct_files(tiny_model, photos, tmp_path / "never", detect=False, progress=False,
                          checkpoint=tmp_path / "gone.pth.tar")
    assert not (tmp_path / "never").exists()


def test_the_demo_npz_records_the_bundled_weights(monkeypatch, capsys, tmp_path) -> None:
    """``voxface demo``'s ``.npz`` names the weights that made it too (the bundled ones without -c)."""
    from voxface.checkpoint import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("no bundled weights")
    code, _, err = run_cli(monkeypatch, capsys, "demo", "-o", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    with np.load(tmp_path / "demo" / "astronaut_mesh.npz") as z:
        assert z["checkpoint"].item() == str(DEFAULT_WEIGHTS.resolve())
        assert z["checkpoint_sha256"].item() == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()


def test_a_photo_rerun_with_fewer_faces_keeps_none_of_the_earlier_faces(tiny_model, tmp_path) -> None:
    """``--all-faces`` rerun on a photo that now gives fewer faces (here: --no-detect, one face; other
    detector settings or an edited photo alike): the earlier run's ``x_1`` files went on lying
    beside this run's ``x_0``, on summary.json's record as the photo's, and the folder told of two
    faces, one made with other settings. Another input's files there are kept."""
    import json

    from skimage import data

    from voxface.reconstruct import reconstruct_files

    photos = tmp_path / "photos"
    photos.mkdir()
    astro = Image.fromarray(data.astronaut())
    canvas = Image.new("RGB", (832, 512), (128, 128, 128))
    for x0, y0, side in ((0, 0, 512), (512, 96, 320)):  # two faces the detector finds
        canvas.paste(astro.resize((side, side), Image.Resampling.LANCZOS), (x0, y0))
    canvas.save(photos / "two.png")
    out = tmp_path / "out"
    kw = dict(all_faces=True, latents=True, progress=False, workers=1)
    s = reconstruct_files(tiny_model, photos, out, **kw)
    assert s.faces == 2
    (out / "other_0.ply").write_bytes((out / "two_1.ply").read_bytes())  # another input's face, on no record
    s = reconstruct_files(tiny_model, photos, out, detect=False, **kw)
    assert s.faces == 1 and not s.failed
    assert sorted(p.name for p in out.iterdir()) == ["other_0.ply", "summary.json", "two_0.npz", "two_0.ply"]
    assert json.loads((out / "summary.json").read_text())["owners"] == {
        "two_0.npz": str((photos / "two.png").resolve()), "two_0.ply": str((photos / "two.png").resolve())}


@pytest.mark.parametrize("workers", [1, 2])
def test_inputs_are_digested_as_they_are_read_not_all_again_at_the_end(tiny_model, face_png, tmp_path, monkeypatch,
                                                                       workers) -> None:
    """summary.json's ``digests`` (what tells a moved photo by its bytes) are taken by the reader as it
    loads each photo, beside the network, in pipeline processes too: at the end of a run every photo
    done was read once more, in one thread with Ctrl-C held off (thousands of 4 MB photos: minutes
    after an interrupt before the command answered). The digests recorded are the same."""
    import json
    import threading

    import voxface.reconstruct as rec

    photos = _photos(tmp_path / "photos", face_png, ("a.png", "b.png", "c.png"))
    (photos / "b.png").write_bytes(b"not a picture")  # fails: no digest needed
    at_end = []
    real = rec._digest

    def digest(p):  # the batch's threads read; this process's main thread only records that it would have
        if threading.current_thread() is threading.main_thread():
            at_end.append(p)
            return None
        return real(p)

    monkeypatch.setattr(rec, "_digest", digest)
    s = rec.reconstruct_files(tiny_model, photos, tmp_path / "out", detect=False, progress=False, workers=workers,
                              batch_size=1)
    assert sorted(Path(p).name for p in s.ok) == ["a.png", "c.png"] and list(s.failed) == [str(photos / "b.png")]
    assert at_end == []
    digests = json.loads((tmp_path / "out" / "summary.json").read_text())["digests"]
    assert digests == {str((photos / n).resolve()): real(photos / n) for n in ("a.png", "c.png")}


def test_a_folder_whose_sub_folders_hold_more_photos_says_how_many_are_left_out(tiny_ckpt, face_png, tmp_path,
                                                                               monkeypatch, capsys) -> None:
    """``photos/*.png`` beside ``photos/<person>/*.png`` without --recursive: the top photos alone were
    reconstructed without a word, and '1 face(s) from 1 image(s)' read as the whole dataset. One
    warning now counts the photos left out; an output folder inside (its previews), hidden folders
    and -r give none, and the API says it too."""
    import warnings

    from voxface.reconstruct import expand_inputs

    photos = _photos(tmp_path / "photos", face_png, ("top.png",))
    _photos(photos / "ann", face_png, ("1.png", "2.png"))
    _photos(photos / "bob" / "deeper", face_png, ("3.png",))
    _photos(photos / ".thumbnails", face_png, ("t.png",))  # hidden: -r leaves it out too
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photos, "-o", photos / "out", "-c", tiny_ckpt,
                           "--no-detect", "--workers", "1")  # writes out/top_preview.png: not a photo
    assert code == 0, err
    assert f"warning: {photos}: 3 photo(s) in its sub-folders are left out (they are searched with --recursive)" in err
    assert err.count("warning:") == 1
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photos / "ann", "-o", tmp_path / "o2", "-c", tiny_ckpt,
                           "--no-detect", "--workers", "1", "--no-preview")
    assert code == 0 and "warning" not in err, err  # no sub-folders
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", photos, "-r", "-o", tmp_path / "o3", "-c", tiny_ckpt,
                           "--no-detect", "--workers", "1", "--no-preview")
    assert code == 0 and "left out" not in err, err
    with pytest.warns(UserWarning, match=r"3 photo\(s\) in its sub-folders are left out \(they are searched with "
                                         r"recursive=True\)"):
        assert expand_inputs(photos) == [photos / "top.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(expand_inputs(photos, recursive=True)) == 4


def test_a_symbolic_link_loop_in_a_folder_reconstructed_into_itself_is_one_line(tiny_ckpt, face_png, tmp_path,
                                                                                 monkeypatch, capsys) -> None:
    """``ln -s b.jpg b.jpg`` in a folder written into itself: the check for inputs an output could
    overwrite resolved every input with Path.resolve, whose RuntimeError on a loop was a traceback.
    Now the loop is one failed input and the photo beside it is reconstructed."""
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(face_png, folder / "a.png")
    (folder / "b.jpg").symlink_to("b.jpg")
    code, _, err = run_cli(monkeypatch, capsys, "reconstruct", folder, "-o", folder, "-c", tiny_ckpt, "--no-detect",
                           "--no-preview", "--workers", "1")
    assert "Traceback" not in err
    assert code == 1, err  # one input failed
    assert "b.jpg: a symbolic link that leads to no file" in err
    assert (folder / "a.ply").is_file() and (folder / "b.jpg").is_symlink()
