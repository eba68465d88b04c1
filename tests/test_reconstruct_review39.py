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
