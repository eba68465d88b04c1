"""Review 32 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import run_cli
from .test_latent import one_error_line


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _no_model(monkeypatch):
    import voxface.checkpoint

    monkeypatch.setattr(voxface.checkpoint, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))


def test_cli_transfer_refuses_to_replace_the_meshes_reconstruct_wrote_for_photos_named_source_and_target(
        tmp_path, monkeypatch, capsys):
    """``voxface reconstruct source.jpg target.jpg -o rec`` writes rec/source.ply and rec/target.ply
    (with --frame camera, say); ``voxface transfer rec/source.npz rec/target.npz -o rec`` replaced
    both with canonical decodes of the codes, and a rerun in another --format removed them as files
    of the earlier transfer. Any file of an output's name that no latent command's manifest lists is
    refused, as index.html was: one line naming it, before the model is loaded, nothing touched."""
    out = tmp_path / "rec"
    out.mkdir()
    for stem in ("source", "target"):
        (out / f"{stem}.ply").write_bytes(b"the mesh reconstruct wrote for " + stem.encode())
        np.savez(out / f"{stem}.npz", z_id=np.zeros((1, 16), np.float32), z_exp=np.zeros((1, 8), np.float32))
    (out / "summary.json").write_text("{}")
    ckpt = tmp_path / "model.pth.tar"
    ckpt.write_bytes(b"x")
    before = _snapshot(out)
    _no_model(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, "transfer", out / "source.npz", out / "target.npz", "-o", out,
                           "--checkpoint", ckpt)
    assert code == 1
    assert one_error_line(err) == (
        f"error: {out / 'source.ply'}: was not written by a voxface latent command (no manifest.json beside it "
        "lists it), and this run writes its source.ply there; write into another folder (-o) or move it")
    assert _snapshot(out) == before


@pytest.mark.parametrize("command", ["interpolate", "walk", "sample"])
def test_cli_refuses_to_replace_a_users_file_of_an_output_name(tmp_path, monkeypatch, capsys, command):
    """The user's own strip.png / grid.png / latents.npz (no earlier run's manifest lists them) were
    silently replaced."""
    out = tmp_path / "o"
    out.mkdir()
    face = tmp_path / "face.npz"
    np.savez(face, z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    victim = {"interpolate": "strip.png", "walk": "latents.npz", "sample": "grid.png"}[command]
    (out / victim).write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    args = {"interpolate": ["interpolate", face, face], "walk": ["walk", face], "sample": ["sample", "-n", 2]}[command]
    before = _snapshot(out)
    _no_model(monkeypatch)
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", out, "--checkpoint", tmp_path / "model.pth.tar")
    assert code == 1
    assert one_error_line(err).startswith(f"error: {out / victim}: was not written by a voxface latent command")
    assert _snapshot(out) == before


def test_an_earlier_latent_runs_listed_outputs_are_still_replaced_without_a_word(tmp_path):
    """The refusal leaves reruns alone: files an earlier interpolate/transfer/walk/sample manifest
    lists (and names that are not there yet) pass."""
    from voxface.cli._latent import _output_names, _refuse_overwriting
    from voxface.errors import VoxfaceError

    out = tmp_path / "o"
    out.mkdir()
    earlier = ["step_00.ply", "step_01.ply", "strip.png", "walk.gif", "index.html", "latents.npz"]
    for name in earlier:
        (out / name).write_bytes(b"earlier run")
    (out / "manifest.json").write_text(json.dumps({"command": {"name": "walk"}, "files": earlier}))
    _refuse_overwriting(out, _output_names("step", 4, "ply", "interpolation.gif"), [], None)  # no error
    (out / "step_02.ply").write_bytes(b"mine")  # not listed: the user's
    with pytest.raises(VoxfaceError, match="step_02.ply: was not written by a voxface latent command"):
        _refuse_overwriting(out, _output_names("step", 4, "ply", "interpolation.gif"), [], None)
