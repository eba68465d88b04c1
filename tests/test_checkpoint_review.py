"""Checkpoint provenance and file bytes: what a release says it was made from, and what makes two
writes of the same model differ."""

from __future__ import annotations

import torch

from voxface.checkpoint import inspect_checkpoint, load_checkpoint, release_checkpoint, save_checkpoint
from voxface.models import create_model

from .conftest import SMALL_CONFIG, TOY_DATA


def _small():
    torch.manual_seed(0)
    return create_model(SMALL_CONFIG).eval()


def test_a_head_refined_on_a_release_is_not_a_release_and_its_release_names_it(tmp_path):
    """refine-train on a release carried the release's ``released_from`` into its output: ``inspect``
    called the refined file "released from <the first training file>", and releasing it kept that
    name instead of the refined file it was made from."""
    from voxface.refine import RefineTrainConfig, refine_checkpoint

    model = _small()
    opt = torch.optim.AdamW(model.parameters())
    train = save_checkpoint(tmp_path / "last.pth.tar", model, opt, step=3)
    first = release_checkpoint(train, tmp_path / "release-1.pth.tar")
    assert load_checkpoint(first)["extra"]["released_from"] == "last.pth.tar"

    cfg = RefineTrainConfig(steps=1, batch_size=4, points=32, resolution=0, num_val=0)
    refined, _ = refine_checkpoint(first, tmp_path / "refined.pth.tar", TOY_DATA, cfg, device="cpu")
    ck = load_checkpoint(refined)
    assert "released_from" not in ck["extra"] and ck["extra"]["refine_train"]["source"] == str(first)
    assert inspect_checkpoint(refined).released_from is None
    assert "released" not in inspect_checkpoint(refined).format()

    second = release_checkpoint(refined, tmp_path / "release-2.pth.tar")
    assert load_checkpoint(second)["extra"]["released_from"] == "refined.pth.tar"
    assert inspect_checkpoint(second).released_from == "refined.pth.tar"
    # a release of a release still names the training file the first one came from
    again = release_checkpoint(second, tmp_path / "release-3.pth.tar")
    assert load_checkpoint(again)["extra"]["released_from"] == "refined.pth.tar"


def test_map_location_is_checked_as_an_argument_not_blamed_on_the_file(tmp_path):
    """``load_checkpoint(path, map_location=0)`` said the file "could not be read as a torch checkpoint
    ('int' object is not callable)" and ``"meta"`` was refused as a device voxface does not run on,
    though ``torch.device("meta")`` loaded."""
    import pytest

    from voxface.errors import CheckpointError, InputTypeError

    path = save_checkpoint(tmp_path / "m.pth.tar", _small())
    for where in ("meta", torch.device("meta")):
        sd = load_checkpoint(path, map_location=where)["state_dict"]
        assert all(t.device.type == "meta" for t in sd.values())
    sd = load_checkpoint(path, map_location=lambda storage, location: storage)["state_dict"]
    assert all(t.device.type == "cpu" for t in sd.values())
    if not torch.cuda.is_available():  # a CUDA index is resolve_device's: that device, refused here
        with pytest.raises(CheckpointError, match="CUDA is not available") as e:
            load_checkpoint(path, map_location=0)
        assert e.value.reason == "device"
    for bad in (1.5, True, object()):
        with pytest.raises(InputTypeError, match="map_location must be"):
            load_checkpoint(path, map_location=bad)


def test_source_date_epoch_makes_the_file_bytes_reproducible(tmp_path, monkeypatch):
    """``meta["created"]`` was always the wall clock, so releasing the same checkpoint twice (a second
    apart) gave two files of different bytes and hashes; ``$SOURCE_DATE_EPOCH`` now fixes it."""
    import pytest

    from voxface.errors import InputError

    model = _small()
    train = save_checkpoint(tmp_path / "last.pth.tar", model, torch.optim.AdamW(model.parameters()), step=3)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = release_checkpoint(train, tmp_path / "a" / "vox-cpk.pth.tar")
    b = release_checkpoint(train, tmp_path / "b" / "vox-cpk.pth.tar")
    assert load_checkpoint(a)["meta"]["created"] == "2023-11-14T22:13:20+00:00"
    assert a.read_bytes() == b.read_bytes()

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(InputError, match="SOURCE_DATE_EPOCH must be a whole number"):
        save_checkpoint(a, model)
    assert a.read_bytes() == b.read_bytes()  # the earlier file is untouched
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert load_checkpoint(save_checkpoint(tmp_path / "now.pth.tar", model))["meta"]["created"] > "2024"


def test_a_file_another_voxface_version_wrote_says_which_when_it_does_not_build(tmp_path, monkeypatch, capsys):
    """A checkpoint of a later voxface (same format, a config key or weight this version lacks) said
    only "unknown key(s) ['attention']": nothing told the user the file came from another version."""
    import pytest

    from voxface import __version__
    from voxface.checkpoint import load_model
    from voxface.errors import ArchitectureMismatchError, CheckpointError

    from .conftest import run_cli

    ck = load_checkpoint(save_checkpoint(tmp_path / "m.pth.tar", _small()))
    ck["meta"]["voxface_version"] = "9.1.0"
    ck["config"]["encoder"]["attention"] = True
    torch.save(ck, tmp_path / "key.pth.tar")
    del ck["config"]["encoder"]["attention"]
    ck["state_dict"]["decoder.gate.weight"] = torch.zeros(3)
    torch.save(ck, tmp_path / "weight.pth.tar")
    said = f"written by voxface 9.1.0, this is voxface {__version__}"

    with pytest.raises(CheckpointError, match="unknown key.*attention.*" + said) as e:
        load_model(tmp_path / "key.pth.tar", device="cpu")
    assert e.value.reason == "config"
    with pytest.raises(ArchitectureMismatchError, match="decoder.gate.weight.*" + said):
        load_model(tmp_path / "weight.pth.tar", device="cpu")
    assert said in inspect_checkpoint(tmp_path / "weight.pth.tar").note
    code, out, err = run_cli(monkeypatch, capsys, "inspect", tmp_path / "key.pth.tar")
    assert code == 0 and said in out
    # a file of this version says nothing of versions
    del ck["state_dict"]["decoder.gate.weight"]
    ck["meta"]["voxface_version"] = __version__
    ck["config"]["encoder"]["attention"] = True
    torch.save(ck, tmp_path / "same.pth.tar")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "same.pth.tar", device="cpu")
    assert "written by" not in str(e.value)


def test_a_voxface_model_saved_the_usual_torch_ways_says_how_to_make_it_a_checkpoint(tmp_path, monkeypatch, capsys):
    """``torch.save(model.state_dict())`` and ``torch.save(model)`` of a voxface model were refused as
    any foreign file is, with nothing on how to load them; the first is now named as a voxface model's
    weights without its config (a ``module.`` prefix too), the second as voxface's own pickled objects."""
    from .conftest import run_cli

    model = _small()
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    torch.save(model, tmp_path / "whole.pt")
    for name in ("sd.pth", "dp.pth"):
        code, out, err = run_cli(monkeypatch, capsys, "decode", tmp_path / name, "-o", tmp_path / "x.ply")
        assert code != 0 and err.count("\n") == 1 and "Traceback" not in err
        assert "bare state_dict" in err and "voxface model's, without the config" in err and "create_model" in err
    note = inspect_checkpoint(tmp_path / "sd.pth").note
    assert "voxface model's, without the config" in note and "not a voxface model" not in note
    code, out, err = run_cli(monkeypatch, capsys, "decode", tmp_path / "whole.pt", "-o", tmp_path / "x.ply")
    assert code != 0 and err.count("\n") == 1
    assert "voxface.models.voxface.VoxFace" in err and "weights_only=False" in err and "save_checkpoint" in err
    assert not (tmp_path / "x.ply").exists()
    # another project's state_dict gets no such hint
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    code, out, err = run_cli(monkeypatch, capsys, "decode", tmp_path / "other.pth", "-o", tmp_path / "x.ply")
    assert code != 0 and "bare state_dict" in err and "create_model" not in err
    assert inspect_checkpoint(tmp_path / "other.pth").note.endswith("not a voxface model")


def test_a_path_argument_of_the_wrong_type_is_an_input_type_error(tmp_path):
    """``load_model(5)``, ``load_checkpoint(None)``, ``save_checkpoint(None, model)`` or an open file
    raised Python's bare ``TypeError: expected str, bytes or os.PathLike object`` (the README: bad
    arguments raise ``InputTypeError``); ``bytes`` paths, which ``os`` takes, failed in ``Path``."""
    import io

    import pytest

    from voxface.checkpoint import load_model
    from voxface.errors import InputTypeError

    model = _small()
    path = save_checkpoint(tmp_path / "m.pth.tar", model)
    calls = [(load_model, (5,)), (load_checkpoint, (None,)), (inspect_checkpoint, (3.0,)),
             (save_checkpoint, (None, model)), (release_checkpoint, (None, tmp_path / "r.pth.tar")),
             (release_checkpoint, (path, 7))]
    for fn, args in calls:
        with pytest.raises(InputTypeError, match="must be the path of a checkpoint file"):
            fn(*args)
    with open(path, "rb") as f, pytest.raises(InputTypeError, match="an open file .*pass its path"):
        load_checkpoint(f)
    with pytest.raises(InputTypeError, match="an open file"):
        save_checkpoint(io.BytesIO(), model)
    assert not (tmp_path / "r.pth.tar").exists()
    # bytes paths are paths
    out = save_checkpoint(bytes(tmp_path / "b.pth.tar"), model)
    assert out == tmp_path / "b.pth.tar" and load_model(bytes(out), device="cpu").config == model.config
    assert load_checkpoint(bytes(out))["config"] == load_checkpoint(path)["config"]


def test_the_hidden_temporary_a_killed_write_left_goes_with_the_next_write(tmp_path):
    """A checkpoint write killed outright (SIGKILL: a pre-empted training job) kept the previous file
    whole but left its hidden temporary (up to a whole checkpoint's size) beside it for good, one per
    kill. The next write of that checkpoint removes those gone unwritten for ten minutes; a fresh one
    (a write still going), another file's, and files that only look alike stay."""
    import os
    import time

    from voxface.mesh import _temporary

    model = _small()
    path = tmp_path / "last.pth.tar"
    made = []
    for _ in range(2):  # named exactly as atomic_open names them
        fd, tmp = _temporary(path)
        os.write(fd, b"PK\x03\x04 half a checkpoint")
        os.close(fd)
        made.append(tmp)
    old = time.time() - 3600
    os.utime(made[0], (old, old))
    fd, other = _temporary(tmp_path / "best.pth.tar")
    os.close(fd)
    os.utime(other, (old, old))
    alike = [tmp_path / ".last.pth.tar.notahexnm.tmp", tmp_path / ".last.pth.tar.0123abcd.tmp.keep"]
    for p in alike:
        p.write_bytes(b"x")
        os.utime(p, (old, old))

    save_checkpoint(path, model)
    assert not made[0].exists()  # stale: what a killed write left
    assert made[1].exists() and other.exists() and all(p.exists() for p in alike)
    assert load_checkpoint(path)["config"]["decoder"]["resolution"] == SMALL_CONFIG["decoder"]["resolution"]


def test_nan_weights_are_named_as_such_and_never_released(tmp_path, monkeypatch, capsys):
    """Weights with NaN (a diverged run) failed a release as "values beyond +-65504 or non-finite ones;
    release it with --float32", which then shipped a model that outputs NaN. The release now refuses
    NaN weights at any precision; save_checkpoint(half=True) says NaN, not half=False."""
    import pytest

    from voxface.errors import InputError

    from .conftest import run_cli

    model = _small()
    with torch.no_grad():
        next(model.decoder.parameters()).view(-1)[:3] = float("nan")
    src = save_checkpoint(tmp_path / "diverged.pth.tar", model)  # float32: the run's own file is written
    with pytest.raises(InputError, match="3 of its .* values are NaN or infinite") as e:
        save_checkpoint(tmp_path / "h.pth.tar", model, half=True)
    assert "half=False" not in str(e.value) and not (tmp_path / "h.pth.tar").exists()
    for flag in ([], ["--float32"]):
        code, out, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar", *flag)
        assert code == 1 and err.count("\n") == 1, err
        assert "NaN or infinite" in err and "--float32" not in err and "best.pth.tar" in err
        assert not (tmp_path / "r.pth.tar").exists()
