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
