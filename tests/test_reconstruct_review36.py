"""``voxface reconstruct`` / :func:`voxface.reconstruct_files` reviewed (session 36) at fine grids:
``--resolution 128/256``, where a face's logits are 8 or 64 MiB."""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path

import numpy as np
import pytest

import voxface.reconstruct as rec_mod
from voxface.reconstruct import fine_group, reconstruct_files

from .test_reconstruct_review import two_faces  # noqa: F401 - the same module fixtures
from .test_reconstruct_review33 import face_png, tiny_model  # noqa: F401


def _batch(tmp_path: Path, model, photos: Path, out: str, monkeypatch, cells: int) -> tuple[int, list[int]]:
    """Reconstruct ``photos`` at twice the model's grid in one network batch, with ``FINE_GROUP_CELLS``
    set to ``cells``: the most fine grids alive at once, and the faces of each decode."""
    monkeypatch.setattr(rec_mod, "FINE_GROUP_CELLS", cells)
    alive: list[weakref.ref] = []
    calls: list[int] = []
    peak = [0]
    real = getattr(rec_mod.decode_at, "__wrapped__", rec_mod.decode_at)  # not the previous call's wrapper

    def tracked(*args, **kwargs):
        logits, grid, info = real(*args, **kwargs)
        alive.extend(weakref.ref(a) for a in logits)
        calls.append(len(logits))
        peak[0] = max(peak[0], sum(r() is not None for r in alive))
        return logits, grid, info

    tracked.__wrapped__ = real
    monkeypatch.setattr(rec_mod, "decode_at", tracked)
    s = reconstruct_files(model, photos, tmp_path / out, detect=False, batch_size=6, workers=1, progress=False,
                          preview=False, save_volume=True, resolution=2 * model.grid.resolution)
    assert len(s.ok) == 6 and not s.failed, s.failed
    return peak[0], calls


def test_a_fine_batch_is_refined_a_group_at_a_time_with_the_same_meshes(tiny_model, face_png, tmp_path,
                                                                        monkeypatch) -> None:
    """The pipeline refined a whole network batch before meshing any face of it: 16 fine grids of
    64 MiB at --resolution 256 (1 GiB a pipeline process, ~500 MB more peak RSS for a batch of 8
    than of 4 with the shipped model). The faces are refined FINE_GROUP_CELLS at a time and meshed
    and handed to the writers before the next group: here one face a group, so at most a few grids
    (the group's, the writers' backlog) are alive, where all six were. The logits are the same up to
    the decoder's batch rounding (bit for bit with the shipped model at 256^3, groups of four)."""
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(6):
        shutil.copy(face_png, photos / f"f{i}.png")
    Rf = 2 * tiny_model.grid.resolution
    whole_peak, whole_calls = _batch(tmp_path, tiny_model, photos, "whole", monkeypatch, 6 * Rf**3)
    assert whole_calls == [6] and whole_peak == 6  # what a batch held before, and still may when it fits
    peak, calls = _batch(tmp_path, tiny_model, photos, "grouped", monkeypatch, Rf**3)
    assert calls == [1] * 6
    assert peak <= 3, peak  # 6 before
    for i in range(6):
        with np.load(tmp_path / "whole" / f"f{i}.npz") as a, np.load(tmp_path / "grouped" / f"f{i}.npz") as b:
            assert a["logits"].shape == (Rf,) * 3
            np.testing.assert_allclose(a["logits"], b["logits"], rtol=0, atol=1e-4)
        assert (tmp_path / "grouped" / f"f{i}.ply").stat().st_size > 0


def test_a_group_photos_faces_refined_in_different_groups_are_written_together_last_to_first(
        tiny_model, two_faces, face_png, tmp_path, monkeypatch) -> None:
    """--all-faces at a fine grid, one face a group: a group photo's faces are refined apart, yet
    written as one task, face 0 (the mesh --skip-existing looks for) after the others, and a photo
    after it gets its own."""
    Rf = 2 * tiny_model.grid.resolution
    monkeypatch.setattr(rec_mod, "FINE_GROUP_CELLS", Rf**3)
    photos = tmp_path / "in"
    photos.mkdir()
    shutil.copy(two_faces, photos / "a.png")
    shutil.copy(face_png, photos / "b.png")
    order: list[str] = []
    real = rec_mod.Reconstruction.save

    def save(self, path, **kw):
        order.append(Path(path).stem)
        return real(self, path, **kw)

    monkeypatch.setattr(rec_mod.Reconstruction, "save", save)
    s = reconstruct_files(tiny_model, photos, tmp_path / "out", all_faces=True, batch_size=8, workers=1,
                          preview=False, progress=False, resolution=Rf)
    assert not s.failed and s.faces == 3, s.failed
    assert order == ["a_1", "a_0", "b_0"]
    assert [Path(f).name for f in s.ok[str(photos / "a.png")]] == ["a_0.ply", "a_1.ply"]
    assert [Path(f).name for f in s.ok[str(photos / "b.png")]] == ["b_0.ply"]


def test_fine_group_sizes(tiny_model) -> None:
    """A whole batch on the model's grid and at 128^3 (as before), four faces at 256^3, one at 512^3."""
    R = tiny_model.grid.resolution  # 32
    assert fine_group(tiny_model, None, 16) == 16
    assert fine_group(tiny_model, R, 16) == 16
    assert fine_group(tiny_model, 128, 16) == 16
    assert fine_group(tiny_model, 256, 16) == 4
    assert fine_group(tiny_model, 256, 3) == 3
    assert fine_group(tiny_model, 512, 16) == 1


@pytest.mark.filterwarnings("ignore:this checkpoint has no latent prior")
def test_the_volume_a_face_saves_is_not_copied_first(tiny_model, tmp_path) -> None:
    """``Reconstruction.arrays(volume=True)`` (what ``save_volume`` / ``--save-volume`` writes)
    copied the float32 logits with ``astype`` before compressing them: 64 MiB more a face at
    256^3 in every writer, 512 MiB at 512^3. The float32 volume is handed on as it is (float64
    logits are still written as float32), and the file holds the same values."""
    from voxface.latent import sample_latents
    from voxface.reconstruct import decode_latents

    rec = decode_latents(tiny_model, sample_latents(tiny_model, 1, seed=0), resolution=2 * tiny_model.grid.resolution)[0]
    assert rec.logits.dtype == np.float32
    assert np.shares_memory(rec.arrays()["logits"], rec.logits)
    (path,) = [f for f in rec.save(tmp_path / "f.ply", save_volume=True) if f.suffix == ".npz"]
    with np.load(path) as z:
        assert np.array_equal(z["logits"], rec.logits) and z["logits"].dtype == np.float32
    rec.logits = rec.logits.astype(np.float64)
    got = rec.arrays()["logits"]
    assert got.dtype == np.float32 and np.array_equal(got, rec.logits.astype(np.float32))


def test_summary_records_what_filled_the_finer_grid_not_what_was_asked(tiny_model, face_png, tmp_path) -> None:
    """summary.json's settings recorded the --upsample asked for: 'head' for a checkpoint without a
    refinement head (the CLI notes it falls back), so the meshes were on record as the head's, and a
    resume with --upsample decoder, which makes the same meshes, warned they were made with other
    settings. The method used is recorded (upsample_method: here a decoder without a continuous
    function, 'trilinear'), and such a resume is quiet."""
    import json
    import warnings

    photos = tmp_path / "in"
    photos.mkdir()
    shutil.copy(face_png, photos / "f.png")
    out = tmp_path / "out"
    opts = dict(detect=False, workers=1, progress=False, preview=False, resolution=2 * tiny_model.grid.resolution)
    reconstruct_files(tiny_model, photos, out, upsample="head", **opts)
    assert json.loads((out / "summary.json").read_text())["settings"]["upsample"] == "trilinear"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = reconstruct_files(tiny_model, photos, out, upsample="decoder", skip_existing=True, **opts)
    assert s.skipped == [str(photos / "f.png")]
