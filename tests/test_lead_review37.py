"""Review 37 by the lead: regressions."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_a_latent_file_made_by_other_weights_is_read_with_a_warning_naming_it(bundled, tmp_path):
    """``as_latents(model, "a.npz")`` of a file another model wrote (its ``model_sha256`` differs)
    was read without a word: the codes have the right shapes, so nothing else tells, and they
    decode to another face. It warns naming the file and both digests; a file of this model's, or
    one that records no model (written by other tools), reads silently, with the same codes."""
    import numpy as np

    from voxface.latent import as_latents, sample, save_latents
    from voxface.reconstruct import model_provenance

    codes = sample(bundled, 2, seed=3)
    ours = save_latents(codes, tmp_path / "ours.npz", **model_provenance(bundled))
    bare = save_latents(codes, tmp_path / "bare.npz")
    other = save_latents(codes, tmp_path / "other.npz", model_sha256=np.str_("0123456789abcdef"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (ours, bare):
            got = as_latents(bundled, path)
            assert np.array_equal(got.z_id.numpy(), codes.z_id.numpy())
    with pytest.warns(UserWarning, match=r"other\.npz: its codes were made by other weights "
                                         r"\(model_sha256 0123456789abcdef; this model's is [0-9a-f]{16}\)"):
        got = as_latents(bundled, other)
    assert np.array_equal(got.z_exp.numpy(), codes.z_exp.numpy())


@pytest.mark.parametrize("train, key", [({"lr": -1}, "train.lr"), ({"loss": {"points": 1}}, "train.loss.points"),
                                        ({"batch_size": 6}, "train.batch_size"), ({"seed": -3}, "train.seed"),
                                        ({"freeze": ["decodr"]}, "train.freeze")])
def test_a_bad_train_value_a_parent_config_sets_names_the_parent(tmp_path, monkeypatch, train, key):
    """The trainer's own value checks (``train.lr -1``, ``train.loss.points 1``, ...) recorded no key,
    so a value a parent config sets was blamed on the child that inherits it (``child.yaml: train.lr
    -1.0 must be a positive number``), and a config dict inheriting it named no file at all, where
    the model's and the data's checks name the parent. They name the parent, ``(inherited by ...)``;
    a child that sets the value itself is named alone."""
    import yaml

    from voxface.errors import ConfigError
    from voxface.train import resolve_config

    parent, child, own = tmp_path / "parent.yaml", tmp_path / "child.yaml", tmp_path / "own.yaml"
    parent.write_text(yaml.safe_dump({"model": {"grid": {"resolution": 16}}, "train": train}))
    child.write_text(yaml.safe_dump({"inherit_from": "parent.yaml", "train": {"total_steps": 3}}))
    own.write_text(yaml.safe_dump({"inherit_from": "parent.yaml", "train": train}))
    with pytest.raises(ConfigError) as e:
        resolve_config(child)
    assert Path(e.value.path).resolve() == parent.resolve() and key in str(e.value) and f"(inherited by {child})" in str(e.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        resolve_config({"inherit_from": "parent.yaml"})
    assert Path(e.value.path).resolve() == parent.resolve() and "(inherited by the config dict)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        resolve_config(own)
    assert Path(e.value.path) == own and "inherited" not in str(e.value)


def test_a_reconstructions_repr_reads_its_pose_in_the_camera_frame(bundled):
    """``repr(rec)`` read the encoder's pose with ``euler_angles``' frame guess (``frame="auto"``), which
    takes a head rolled past 90 degrees for a canonical rotation: a face lying on its side (roll 100)
    printed as yaw +180, roll -80, a head facing away. An encoder pose is camera-frame, and is read so."""
    import numpy as np
    import torch

    from voxface.frame import FRONTAL_ROTATION, euler_matrix
    from voxface.reconstruct import reconstruct_image

    rec = reconstruct_image(bundled, np.full((64, 64, 3), 0.5, np.float32), detect=False)
    r = torch.as_tensor(FRONTAL_ROTATION @ euler_matrix(10, -5, 100), dtype=torch.float32)[None]
    rec.pose.rotation = r
    assert "pose=yaw +10, pitch -5, roll +100 deg" in repr(rec)


def test_a_latent_file_that_cannot_be_read_says_so_not_that_it_is_no_latent_file(bundled, tmp_path, monkeypatch):
    """A ``.npz`` this user may not read (``chmod 000``; EIO on a failing disk) was 'not a voxface latent
    file (PermissionError: [Errno 13] Permission denied: 'a.npz')': wrong (its format was never read)
    and naming the file twice. It is 'cannot read file (Permission denied)', once named. (np.load is
    made to fail as open() does for another user: the tests may run as root, whom chmod does not stop.)"""
    import numpy as np

    from voxface.errors import InputError
    from voxface.latent import as_latents, sample, save_latents

    path = save_latents(sample(bundled, 1, seed=0), tmp_path / "a.npz")

    def refuse(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(np, "load", refuse)
    with pytest.raises(InputError) as e:
        as_latents(bundled, path)
    assert str(e.value) == f"{path}: cannot read file (Permission denied)"


def test_a_bench_report_and_its_json_are_written_all_or_nothing(tmp_path, monkeypatch):
    """``run_bench`` wrote ``.json`` and ``.md`` as two atomic writes: a full disk (or an interrupt)
    between them left the new numbers' ``.json`` beside the earlier ``.md``, a report its own JSON
    contradicts. They are written as one set (``mesh.atomic_write_files``): a failure leaves both as
    they were."""
    import errno
    import json
    import os

    from voxface.bench import run_bench
    from voxface.errors import VoxfaceError

    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: {"help_s": 0.1})
    monkeypatch.setattr("voxface.bench.render_markdown", lambda res: "# one\n")
    md = tmp_path / "b.md"
    run_bench(md, sections="startup", keep_others=False)
    before = md.with_suffix(".json").read_bytes()
    assert md.read_text() == "# one\n" and json.loads(before)["startup"] == {"help_s": 0.1}

    fsync = os.fsync

    def full_disk_for_the_report(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".b.md" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return fsync(fd)

    monkeypatch.setattr("voxface.bench.bench_startup", lambda *a, **k: {"help_s": 0.2})
    monkeypatch.setattr("voxface.bench.render_markdown", lambda res: "# two\n")
    monkeypatch.setattr(os, "fsync", full_disk_for_the_report)
    with pytest.raises(VoxfaceError, match="No space left on device"):
        run_bench(md, sections="startup", keep_others=False)
    assert md.read_text() == "# one\n" and md.with_suffix(".json").read_bytes() == before


def test_an_onnx_export_failing_without_a_file_name_names_the_folder(tiny_model, tmp_path, monkeypatch):
    """``export_onnx`` named the file of an ``OSError`` that names its hidden temporary, but re-raised
    one that names none (torch.onnx's writer on a full disk) bare: ``error: No space left on device``,
    no file. It names the output folder (which the export made, and removes again)."""
    import errno

    import torch

    from voxface.errors import VoxfaceError
    from voxface.onnx import export_onnx

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    out = tmp_path / "o"
    with pytest.raises(VoxfaceError) as e:
        export_onnx(tiny_model, out, check=False, speed=False)
    assert str(e.value) == f"{out}: cannot write into this folder (No space left on device)"
    assert not out.exists()  # the folder it made, removed again


def test_latent_decode_takes_the_photo_options_every_latent_function_takes(bundled):
    """``latent.decode(model, photo, detect=False)`` (or ``skin_check=``, ``scan_size=``) was a bare
    ``TypeError`` from ``decode_latents``, where the README says every latent function that reads
    photos takes them as ``model.reconstruct`` does. They reach ``as_latents``: the same face as
    decoding its codes."""
    import numpy as np

    from voxface.latent import as_latents, decode

    crop = np.full((64, 64, 3), 0.6, np.float32)
    rec = decode(bundled, crop, detect=False)
    ref = decode(bundled, as_latents(bundled, crop, detect=False))
    assert len(rec) == 1 and np.array_equal(rec[0].mesh.vertices, ref[0].mesh.vertices)


def test_export_samples_refuses_a_folder_an_export_of_other_settings_wrote(tmp_path, toy_root):
    """The check that an export does not mix its samples with an earlier export's of other settings
    lived in the CLI alone: ``export_samples(out, 1, resolution=32)`` then ``export_samples(out, 2,
    resolution=48, seed=1)`` wrote sample 1 of seed 1 at 48^3 beside sample 0 of seed 0 at 32^3
    without a word. The library refuses it, naming the folder and both settings, before reading
    ICT-FaceKit, and records the settings in ``.export.json`` as the CLI did; the same settings grow
    the folder."""
    import json

    from voxface.data.export import EXPORT_SETTINGS, export_samples
    from voxface.errors import DataError

    out = tmp_path / "exp"
    assert export_samples(out, 1, resolution=32, points=0, ict_root=str(toy_root), progress=False) == 1
    recorded = json.loads((out / EXPORT_SETTINGS).read_text())
    assert recorded["resolution"] == 32 and recorded["seed"] == 0 and len(recorded["ict"]) > 0
    with pytest.raises(DataError) as e:
        export_samples(out, 2, resolution=48, seed=1, points=0, ict_root=tmp_path / "no-ict", progress=False)
    assert str(e.value).startswith(f"{out}: holds samples exported with --seed 0, --resolution 32 ")
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_SETTINGS, "000000.json", "000000.npz", "000000.ply",
                                                     "000000.png"]
    assert export_samples(out, 2, resolution=32, points=0, ict_root=str(toy_root), progress=False) == 1


def test_running_out_of_memory_in_train_names_the_config_keys_not_options_train_lacks(monkeypatch, capsys, tmp_path,
                                                                                        tiny_yaml):
    """``voxface train`` out of memory said to use '--batch-size, --resolution, fewer --workers', options
    train does not have (its sizes are the config's); it names the config keys. Other commands keep
    naming their options."""
    from .conftest import run_cli

    def too_big(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr("voxface.train.train", too_big)
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", tiny_yaml, "-o", tmp_path / "run")
    assert code == 1 and err.count("\n") == 1, err
    assert "(train.batch_size, model.grid.resolution or train.workers in the config)" in err
    monkeypatch.setattr("voxface.checkpoint.load_model", too_big)
    code, _, err = run_cli(monkeypatch, capsys, "decode", tmp_path / "m.pth.tar", "-o", tmp_path / "x.ply")
    assert code == 1 and "(--batch-size, --resolution, fewer --workers, as the command has them)" in err
