"""Review 32: the latent tools take the detector's ``skin_check`` and ``scan_size`` (API and CLI),
and the public writers refuse a file name that names a folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import run_cli


@pytest.fixture(scope="module")
def tinted(tmp_path_factory) -> Path:
    """The astronaut under a blue-green light (red x 0.35, green x 0.6): the cascade finds the face,
    the skin check refuses it."""
    import skimage.data
    from PIL import Image

    img = skimage.data.astronaut().astype(np.float64) * np.array([0.35, 0.6, 1.0])
    path = tmp_path_factory.mktemp("tinted") / "tinted.png"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


HINT = r"1 face-like region left out for lacking skin colour.*skin_check=False, keeps it\)$"


def test_latent_functions_take_skin_check_and_scan_size(tiny_model, tinted):
    from voxface import NoFaceError, latent

    m = tiny_model
    with pytest.raises(NoFaceError, match=HINT):  # what the hint says is now true of as_latents
        latent.as_latents(m, tinted)
    lat = latent.as_latents(m, tinted, skin_check=False)  # was a TypeError
    assert lat.z_id.shape == (1, m.config.encoder.z_id) and lat.pose is not None
    same = latent.encode_photo(m, tinted, skin_check=False)
    assert torch.equal(same.z_id, lat.z_id) and torch.equal(same.z_exp, lat.z_exp)
    # a list of photos reads each one with the same options
    assert len(latent.as_latents(m, [tinted, tinted], skin_check=False)) == 2

    codes = latent.interpolate(m, tinted, lat, 3, skin_check=False)
    assert torch.allclose(codes.z_id[0], lat.z_id[0]) and torch.allclose(codes.z_id[-1], lat.z_id[0])
    moved = latent.transfer_expression(m, tinted, tinted, skin_check=False)
    assert torch.equal(moved.z_exp, lat.z_exp)
    walked = latent.walk(m, tinted, torch.zeros(m.config.encoder.z_exp), [0.0, 1.0], space="expression",
                         skin_check=False)
    assert torch.equal(walked.z_id[1], lat.z_id[0])
    with pytest.warns(UserWarning):  # the tiny model has no prior
        drawn = latent.sample(m, 2, space="expression", base=tinted, skin_check=False)
    assert torch.equal(drawn.z_id[1], lat.z_id[0])
    for call in (lambda: latent.interpolate(m, tinted, lat, 3), lambda: latent.walk(
            m, tinted, torch.zeros(m.config.encoder.z_exp), [0.0], space="expression"),
            lambda: latent.transfer_expression(m, lat, tinted)):
        with pytest.raises(NoFaceError, match=HINT):  # the default keeps the check
            call()


def test_scan_size_reaches_the_detector_and_is_checked_first(tiny_model, tinted, monkeypatch, tmp_path):
    import voxface.reconstruct as R
    from voxface import latent
    from voxface.errors import InputError, InputTypeError

    seen = []
    real = R.prepare_crops

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("skin_check", "scan_size")})
        return real(*args, **kwargs)

    monkeypatch.setattr(R, "prepare_crops", spy)
    latent.as_latents(tiny_model, tinted, skin_check=False, scan_size=300)
    latent.interpolate(tiny_model, tinted, tinted, 2, skin_check=False, scan_size=256)
    assert seen == [{"skin_check": False, "scan_size": 300}] + [{"skin_check": False, "scan_size": 256}] * 2
    # refused as reconstruct refuses it, before any photo is read (a missing one here)
    with pytest.raises(InputError, match="scan_size must be at least 24, got 10"):
        latent.as_latents(tiny_model, tmp_path / "missing.png", scan_size=10)
    with pytest.raises(InputTypeError, match="scan_size must be an integer"):
        latent.interpolate(tiny_model, tinted, tinted, 2, scan_size=300.5)
    with pytest.raises(InputError, match="scan_size"):  # codes alone: still checked, never ignored
        latent.as_latents(tiny_model, latent.mean_latents(tiny_model), scan_size=0)


def test_latent_commands_have_reconstructs_detector_options():
    import typer.main

    from voxface.cli import app

    root = typer.main.get_command(app)

    def option(cmd, name):
        (p,) = [p for p in root.commands[cmd].params if p.name == name]
        return p

    for name in ("skin_check", "scan_size"):
        ref = option("reconstruct", name)
        for cmd in ("interpolate", "transfer", "walk"):
            p = option(cmd, name)
            assert (p.opts, p.secondary_opts, p.default, p.help) == (ref.opts, ref.secondary_opts, ref.default,
                                                                     ref.help), (cmd, name)
    assert option("walk", "scan_size").default == 640 and option("walk", "skin_check").default is True


def test_interpolate_no_skin_check_on_the_command_line(monkeypatch, capsys, tmp_path, tinted):
    args = ("interpolate", tinted, tinted, "--steps", "2", "--size", "32")
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "a")
    assert code == 1 and "keeps it)" in err and not (tmp_path / "a" / "manifest.json").exists(), err
    code, _, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "b", "--no-skin-check", "--scan-size", "300")
    assert code == 0, err  # was "No such option: --no-skin-check"
    command = json.loads((tmp_path / "b" / "manifest.json").read_text())["command"]
    assert (command["detect"], command["skin_check"], command["scan_size"]) == (True, False, 300)
    assert (tmp_path / "b" / "step_01.ply").is_file()
    code, _, err = run_cli(monkeypatch, capsys, "walk", tinted, "-o", tmp_path / "c", "--scan-size", "10")
    assert code == 1 and "--scan-size" in err and not (tmp_path / "c").exists(), err


@pytest.mark.parametrize("sep", sorted(set(filter(None, ("/", os.sep, os.altsep)))))
def test_writers_refuse_a_file_name_that_names_a_folder(tiny_model, tmp_path, monkeypatch, sep):
    """``Path()`` drops a trailing slash: ``save_latents(lat, "out/")`` wrote ``out.npz`` beside the
    folder, ``save_png(img, "newB/")`` / ``save_gif`` / ``save_mesh_page`` a file named ``newB``...,
    ``Reconstruction.save("d/x.ply/")`` the file ``d/x.ply``. Each is refused, nothing written."""
    from voxface.errors import InputError, VoxfaceError
    from voxface.html import save_mesh_page
    from voxface.latent import mean_latents, save_latents
    from voxface.reconstruct import decode_latents
    from voxface.viz import save_gif, save_png

    monkeypatch.chdir(tmp_path)
    lat = mean_latents(tiny_model)
    rec = decode_latents(tiny_model, lat)[0]
    img = np.zeros((8, 8, 3), np.uint8)
    (tmp_path / "out").mkdir()
    calls = {
        f"out{sep}": lambda p: save_latents(lat, p),
        f"newA{sep}": lambda p: save_latents(rec, p),
        f"newB{sep}": lambda p: save_png(img, p),
        f"newC.gif{sep}": lambda p: save_gif([img, img], p),
        f"newD{sep}": lambda p: save_mesh_page(p, [rec.mesh]),
        f"d{sep}x.ply{sep}": lambda p: rec.save(p, latents=True, preview=True),
    }
    for name, write in calls.items():
        with pytest.raises(InputError, match=r"names a folder \(it ends in '.+'\); give a file name$") as ei:
            write(name)
        assert ei.value.path == name
    class Named:  # any os.PathLike (pathlib's drop the slash themselves)
        def __fspath__(self):
            return f"newB{sep}"

    for name in (f"newB{sep}".encode(), Named()):  # bytes and path-likes too
        with pytest.raises(InputError, match=r"names a folder"):
            save_png(img, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any((tmp_path / "out").iterdir())

    # an existing folder named as the file: one clear line, nothing written beside it
    with pytest.raises(InputError, match=r"^out: is a folder; give a file name"):
        save_latents(lat, "out")  # was written as out.npz beside it
    (tmp_path / "box.ply").mkdir()
    for write in (lambda: save_png(img, "out"), lambda: save_gif([img], "out"),
                  lambda: save_mesh_page("out", [rec.mesh]), lambda: rec.save("box.ply", preview=True)):
        with pytest.raises(VoxfaceError, match=r": cannot write file \(is a folder, where a file is to be written\)$"):
            write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box.ply", "out"]
    # names without the slash still write
    assert save_latents(lat, f"out{sep}x") == Path("out") / "x.npz"
    assert rec.save(f"out{sep}x.ply") == [Path("out") / "x.ply"]
