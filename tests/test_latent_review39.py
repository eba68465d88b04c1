"""Review 39 of the latent toolkit (voxface.latent, voxface.cli._latent): regressions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_cli


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_latent_manifests_record_the_faces_absolute(bundled, tmp_path, monkeypatch, capsys):
    """``voxface interpolate a.npz b.npz`` (and ``transfer``, ``walk``) recorded the faces as typed
    (``"a": "a.npz"``), relative to a folder the manifest does not name, beside an absolute
    checkpoint path: the run could not be redone from anywhere else. The faces are recorded
    absolute, links resolved, as the checkpoint is; the arguments as typed still work."""
    from voxface.latent import sample, save_latents

    faces = sample(bundled, 2, seed=7)
    data = tmp_path / "data"
    save_latents(faces[0], data / "a.npz")
    save_latents(faces[1], data / "b.npz")
    monkeypatch.chdir(data)
    a, b = (str((data / n).resolve()) for n in ("a.npz", "b.npz"))

    code, _, err = run_cli(monkeypatch, capsys, "interpolate", "a.npz", "b.npz", "-o", tmp_path / "morph",
                           "--steps", 2, "--size", 32)
    assert code == 0, err
    command = json.loads((tmp_path / "morph" / "manifest.json").read_text())["command"]
    assert (command["a"], command["b"], command["checkpoint"]) == (a, b, "bundled")

    code, _, err = run_cli(monkeypatch, capsys, "transfer", "a.npz", "./b.npz", "-o", tmp_path / "swap",
                           "--steps", 2, "--size", 32)
    assert code == 0, err
    command = json.loads((tmp_path / "swap" / "manifest.json").read_text())["command"]
    assert (command["source"], command["target"]) == (a, b)

    code, _, err = run_cli(monkeypatch, capsys, "walk", "../data/a.npz", "-o", tmp_path / "walk", "--values", "0",
                           "--size", 32)
    assert code == 0, err
    command = json.loads((tmp_path / "walk" / "manifest.json").read_text())["command"]
    assert command["face"] == a and Path(command["face"]).is_absolute()
    assert command["values"] == [0.0]


def test_set_expression_checks_the_names_before_reading_the_face(bundled, tmp_path, monkeypatch):
    """``set_expression(model, photo, {"jawopen": 1.0})`` detected and encoded the photo (a second
    or more on a CPU, for every face of a list of photos) before saying the name was wrong; and a
    missing photo was reported before a misspelt name. The names and values are checked first: the
    face is not read at all; a good call gives the same codes as before."""
    import torch

    from voxface import latent

    read = []
    real = latent.as_latents
    monkeypatch.setattr(latent, "as_latents", lambda *a, **k: read.append(a[1]) or real(*a, **k))
    with pytest.raises(latent.InputError, match=r"^no expression coefficient 'jawopen'; did you mean jawOpen\?$"):
        latent.set_expression(bundled, tmp_path / "missing.png", {"jawopen": 1.0})
    with pytest.raises(ValueError, match="jawOpen"):
        latent.set_expression(bundled, tmp_path / "missing.png", {"jawOpen": float("nan")})
    assert read == []
    faces = latent.sample(bundled, 2, seed=4)
    out = latent.set_expression(bundled, faces, {"jawOpen": 0.75, "eyeBlink_L": 1.0})
    j, k = (latent.expression_names(bundled).index(n) for n in ("jawOpen", "eyeBlink_L"))
    expected = faces.z_exp.clone()
    expected[:, j], expected[:, k] = 0.75, 1.0
    assert torch.equal(out.z_exp, expected) and torch.equal(out.z_id, faces.z_id)
    assert len(read) == 1
