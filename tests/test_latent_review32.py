"""Review 32 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


@pytest.mark.parametrize("resolution, batches", [(None, [8, 2]), (128, [1, 1])])
def test_cli_decoding_keeps_each_faces_mesh_and_lets_its_volume_go(bundled, monkeypatch, capsys, resolution,
                                                                     batches):
    """interpolate/transfer/walk/sample kept every face's (R, R, R) occupancy volume until the end,
    which they never use: 67 MB a face at --resolution 256 (``interpolate --steps 9 --resolution
    256`` peaked at 2.1 GB, 150 MB more a step; ``sample -n 1024 --resolution 256`` would need over
    100 GB). They decode a batch at a time (one face on a finer grid) and drop the volumes; the
    meshes are decode_latents' own, one progress bar counts the faces."""
    import gc
    import weakref

    import torch

    import voxface.reconstruct
    from voxface.cli._latent import _decode
    from voxface.latent import sample

    n = sum(batches)
    codes = sample(bundled, n, seed=3, temperature=0.5)
    grid = {"resolution": resolution, "upsample": "decoder"}
    volumes, calls = [], []
    real = voxface.reconstruct.decode_latents

    def spy(model, lat, **kwargs):
        recs = real(model, lat, **kwargs)
        calls.append(len(lat))
        volumes.extend(weakref.ref(r.logits if r.logits.base is None else r.logits.base) for r in recs)
        return recs

    monkeypatch.setattr(voxface.reconstruct, "decode_latents", spy)
    recs = _decode(bundled, codes, 0.5, grid, progress=True)
    gc.collect()
    assert calls == batches
    assert len(recs) == n and all(r.logits is None for r in recs)
    assert volumes and all(v() is None for v in volumes)  # freed, not held by the faces
    assert "decode: 100%" in capsys.readouterr().err.replace("\r", "\n")
    monkeypatch.setattr(voxface.reconstruct, "decode_latents", real)
    # the same batches as before (a batch's size moves the logits by ~1e-5: float rounding)
    for rec, ref in zip(recs, real(bundled, codes, batch_size=batches[0], **grid)):
        assert np.array_equal(rec.mesh.vertices, ref.mesh.vertices) and np.array_equal(rec.mesh.faces, ref.mesh.faces)
        assert torch.equal(rec.latents.z_id, ref.latents.z_id) and torch.equal(rec.latents.z_exp, ref.latents.z_exp)


def test_save_latents_refuses_extras_numpy_would_pickle(tmp_path):
    """``save_latents(..., seed=2**70)`` wrote a pickled object array: np.load(file)["seed"] then
    raised 'Object arrays cannot be loaded when allow_pickle=False'. Refused, nothing written; 64-bit
    integers and strings are stored as they are."""
    import torch

    from voxface.errors import InputError
    from voxface.latent import save_latents
    from voxface.models import Latents

    lat = Latents(torch.zeros(1, 16), torch.zeros(1, 8))
    for value in (2**70, [1.0, None]):
        with pytest.raises(InputError, match="seed holds Python objects"):
            save_latents(lat, tmp_path / "x.npz", seed=value)
        assert not (tmp_path / "x.npz").exists()
    path = save_latents(lat, tmp_path / "y.npz", seed=2**64 - 1, note="seed " + str(2**70))
    with np.load(path) as f:  # allow_pickle=False
        assert int(f["seed"]) == 2**64 - 1 and str(f["note"]) == f"seed {2**70}"


def test_cli_sample_with_a_seed_beyond_64_bits_writes_a_latent_file_numpy_reads(bundled, tmp_path, monkeypatch,
                                                                                 capsys):
    """``voxface sample --seed 99999999999999999999999`` (numpy draws from any seed) wrote its seed
    into latents.npz as a pickled object array, which np.load refuses; it is stored as its digits."""
    from voxface.latent import sample

    seed = 10**23 - 1
    out = tmp_path / "s"
    code, _, err = run_cli(monkeypatch, capsys, "sample", "-n", 2, "-o", out, "--seed", seed, "--size", 32)
    assert code == 0, err
    with np.load(out / "latents.npz") as f:
        assert str(f["seed"]) == str(seed)
        assert np.array_equal(f["z_id"], sample(bundled, 2, seed=seed).z_id.numpy())
    assert json.loads((out / "manifest.json").read_text())["command"]["seed"] == seed


def test_cli_a_run_stopped_while_moving_its_files_in_leaves_them_listed(tiny_model, tmp_path, monkeypatch, capsys):
    """A run stopped (Ctrl-C) while its files were being moved in from the hidden folder left the
    ones moved so far beside the earlier run's manifest, which does not list them: a rerun then
    refused them as files no latent command wrote (and none removed them). A manifest listing the
    earlier run's files and the new ones is written before the first move: the rerun finishes."""
    import os

    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    np.savez(tmp_path / "b.npz", z_id=np.ones(16, np.float32), z_exp=np.ones(8, np.float32))
    out = tmp_path / "o"

    def run(*args: object) -> tuple[int, str]:
        code, _, err = run_cli(monkeypatch, capsys, *args, tmp_path / "a.npz", tmp_path / "b.npz", "-o", out,
                               "--steps", 2, "--size", 32, "-c", ckpt)
        return code, err

    assert run("interpolate")[0] == 0
    real, moved = os.replace, []

    def replace(src, dst, *a, **k):  # the third file moved in from the hidden folder: Ctrl-C
        if Path(src).parent.name.startswith(".voxface-partial-") and Path(dst).parent == out:
            if len(moved) == 2:
                raise KeyboardInterrupt
            moved.append(Path(dst).name)
        return real(src, dst, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        code, err = run("transfer")
    assert code == 130, err
    assert moved == ["source.ply", "target.ply"] and (out / "source.ply").is_file()
    stopped = json.loads((out / "manifest.json").read_text())
    assert stopped["command"]["name"] == "interpolate" and len(stopped["meshes"]) == 2  # the earlier run's
    assert {"source.ply", "target.ply", "step_00.ply", "interpolation.gif"} <= set(stopped["files"])
    code, err = run("transfer")  # was: 'source.ply: was not written by a voxface latent command'
    assert code == 0, err
    listed = set(json.loads((out / "manifest.json").read_text())["files"])
    assert {p.name for p in out.iterdir()} - {"manifest.json"} == listed
    assert "transfer.ply" in listed and "interpolation.gif" not in listed


def test_cli_transfers_progress_bar_counts_its_three_faces_too(tiny_model, tmp_path, monkeypatch, capsys):
    """transfer decoded the source, the target and the transfer before its bar, unseen (a minute at
    --resolution 256 on a CPU); one bar now counts them with the morph's two middle steps."""
    import sys

    from voxface.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    np.savez(tmp_path / "a.npz", z_id=np.zeros(16, np.float32), z_exp=np.zeros(8, np.float32))
    np.savez(tmp_path / "b.npz", z_id=np.ones(16, np.float32), z_exp=np.ones(8, np.float32))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, _, err = run_cli(monkeypatch, capsys, "transfer", tmp_path / "a.npz", tmp_path / "b.npz", "-o",
                           tmp_path / "o", "--steps", 4, "--size", 32, "-c", ckpt)
    assert code == 0, err
    bars = err.replace("\r", "\n")
    # the morph's ends are the target's and the transfer's decodes (test_latent_ends_review33.py)
    assert "decode: 100%" in bars and "5/5" in bars, err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [m["file"] for m in manifest["meshes"]] == ["source.ply", "target.ply", "transfer.ply"] + [
        f"step_0{i}.ply" for i in range(4)]


def test_a_folder_named_like_a_latent_file_is_called_a_folder(tiny_model, tmp_path, monkeypatch, capsys):
    """``voxface interpolate a.npz runs.npz`` with runs.npz a folder said 'runs.npz: no such latent
    file', of a name `ls` shows."""
    from voxface.errors import VoxfaceError
    from voxface.latent import as_latents

    (tmp_path / "runs.npz").mkdir()
    with pytest.raises(VoxfaceError, match=r"runs\.npz: is a folder, not a latent file$"):
        as_latents(tiny_model, tmp_path / "runs.npz")
    with pytest.raises(VoxfaceError, match=r"nope\.npz: no such latent file$"):
        as_latents(tiny_model, str(tmp_path / "nope.npz"))


def test_sample_warns_for_each_latent_its_prior_does_not_describe(tiny_model):
    """sample warned of N(0, I) only for ``model.prior is None``: an empty prior, or one with the
    identity's statistics only (the checkpoint check takes both), drew the rest from N(0, I) without
    a word. Each case warns, naming what was drawn so; a full prior stays silent."""
    import warnings

    import torch

    from voxface.latent import sample

    model = tiny_model
    saved = model.prior
    try:
        model.prior = {}
        with pytest.warns(UserWarning, match=r"no latent prior: sampling N\(0, I\)"):
            sample(model, 2)
        model.prior = {"z_id_mean": torch.ones(16), "z_id_std": torch.full((16,), 0.5)}
        with pytest.warns(UserWarning, match=r"prior has no z_exp statistics: sampling z_exp from N\(0, I\)"):
            codes = sample(model, 2, kind="gaussian")
        assert float(codes.z_id.mean()) > 0.5  # the identity from its prior all the same
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sample(model, 2, space="identity")  # z_exp kept (the mean, zeros): nothing drawn from N(0, I)
        model.prior = {**model.prior, "z_exp_mean": torch.zeros(8), "z_exp_std": torch.ones(8)}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sample(model, 2)
    finally:
        model.prior = saved
