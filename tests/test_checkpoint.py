"""voxface.checkpoint and its CLI: exact round trips, atomic writes, and refusing bad or unsafe files."""

from __future__ import annotations

import builtins
import datetime
import json
import os
import pickle
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch
from torch import nn

import voxface.checkpoint as ckpt_mod
from voxface.checkpoint import (
    FORMAT_VERSION,
    inspect_checkpoint,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from voxface.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointVersionError,
    UnsafeCheckpointError,
)
from voxface.frame import FRAME_DESCRIPTION
from voxface.models import count_parameters, create_model, flops_per_sample
from .conftest import run_cli

PYTHON = sys.executable
VOXFACE_BIN = str(Path(sys.executable).with_name("voxface"))


def images(model, n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    s = model.image_size
    return torch.rand(n, 3, s, s, generator=g)


def outputs(model, x):
    with torch.no_grad():
        logits, lat = model(x)
    return logits, lat


def assert_tensors_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def one_line_naming(err: BaseException, path: Path) -> str:
    msg = str(err)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


@pytest.fixture
def trained(tiny_model):
    """The tiny model after one AdamW step (so optimizer state holds tensors), with a prior."""
    model = tiny_model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    logits, lat = model(images(model))
    (logits.sigmoid().mean() + lat.z_id.square().mean()).backward()
    opt.step()
    sched.step()
    model.eval()
    g = torch.Generator().manual_seed(2)
    model.prior = {
        "mean": torch.randn(24, generator=g),
        "std": torch.rand(24, generator=g),
        "components": torch.randn(4, 24, generator=g),
        "explained": [0.5, 0.25, 0.125, 0.0625],
        "count": 100,
    }
    return model, opt, sched


# ------------------------------------------------------------------------------ round trips


def test_float32_round_trip_is_bit_exact(tmp_path, trained):
    model, opt, sched = trained
    path = tmp_path / "run" / "nested" / "model.pth.tar"  # parents are created
    rng = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.default_rng(0).bit_generator.state,
    }
    aux = nn.Linear(24, 10)
    history = [{"step": 1, "loss": torch.tensor(0.75), "iou": np.float32(0.5)}, {"step": 2, "loss": 0.5}]
    out = save_checkpoint(
        path, model, opt, epoch=3, step=120, loss_history=history, scheduler=sched,
        rng_state=rng, extra={"aux_head": aux.state_dict(), "note": "x"},
    )
    assert out == path and path.is_file()

    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    ck = load_checkpoint(path, map_location="auto")
    assert set(ck) == {"state_dict", "optimizer", "scheduler", "epoch", "step", "loss_history",
                       "config", "prior", "rng", "extra", "meta"} == set(raw)
    assert_tensors_equal(dict(ck["state_dict"]), dict(model.state_dict()))
    assert ck["epoch"] == 3 and ck["step"] == 120
    assert ck["loss_history"] == [{"step": 1, "loss": 0.75, "iou": 0.5}, {"step": 2, "loss": 0.5}]
    assert ck["config"]["encoder"]["z_id"] == 16 and ck["config"]["decoder"]["resolution"] == 32

    # resume state
    saved_opt, live_opt = ck["optimizer"], opt.state_dict()
    assert saved_opt["param_groups"] == live_opt["param_groups"]
    assert set(saved_opt["state"]) == set(live_opt["state"])
    for i, st in live_opt["state"].items():
        for k, v in st.items():
            assert torch.equal(saved_opt["state"][i][k], v), (i, k)
    assert ck["scheduler"] == sched.state_dict()
    assert torch.equal(ck["rng"]["torch"], rng["torch"])
    assert ck["rng"]["python"] == rng["python"]
    assert ck["rng"]["numpy"] == rng["numpy"]
    assert_tensors_equal(dict(ck["extra"]["aux_head"]), dict(aux.state_dict()))

    meta = ck["meta"]
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["frame"] == FRAME_DESCRIPTION
    assert meta["resolution"] == 32 and meta["dtype"] == "float32"
    assert meta["torch_version"] == str(torch.__version__)
    assert meta["parameters"]["encoder"] == count_parameters(model.encoder)
    assert meta["parameters"]["decoder"] == count_parameters(model.decoder)
    assert meta["parameters"]["total"] == count_parameters(model)
    created = datetime.datetime.fromisoformat(meta["created"])
    assert created.utcoffset() == datetime.timedelta(0)

    # the model rebuilt from the file alone
    x = images(model)
    ref_logits, ref_lat = outputs(model, x)
    rng_before = torch.get_rng_state()
    loaded = load_model(path, device="cpu")
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading does not consume the seed
    assert not loaded.training and loaded.device.type == "cpu"
    assert loaded.config == model.config
    assert_tensors_equal(dict(loaded.state_dict()), dict(model.state_dict()))
    logits, lat = outputs(loaded, x)
    assert logits.shape == (2, 1, 32, 32, 32)
    assert torch.equal(logits, ref_logits)
    assert torch.equal(lat.z_id, ref_lat.z_id) and torch.equal(lat.z_exp, ref_lat.z_exp)
    assert torch.equal(lat.pose.rotation, ref_lat.pose.rotation)
    assert set(loaded.prior) == set(model.prior)
    for k in ("mean", "std", "components"):
        assert torch.equal(loaded.prior[k], model.prior[k])
    assert loaded.prior["explained"] == model.prior["explained"] and loaded.prior["count"] == 100


def test_float16_round_trip(tmp_path, trained):
    model, opt, _ = trained
    full, half = tmp_path / "full.pth.tar", tmp_path / "half.pth.tar"
    save_checkpoint(full, model)
    save_checkpoint(half, model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size

    ck = load_checkpoint(half)
    assert ck["meta"]["dtype"] == "float16" and ck["meta"]["half"] is True
    assert all(t.dtype == torch.float16 for t in ck["state_dict"].values() if t.is_floating_point())
    # resume state is never halved
    resumable = load_checkpoint(save_checkpoint(tmp_path / "resume.pth.tar", model, opt, half=True))
    assert all(v.dtype == torch.float32 for st in resumable["optimizer"]["state"].values()
               for v in st.values() if v.is_floating_point() and v.ndim)

    loaded = load_model(half, device="cpu")
    ref = model.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32, k
        rel = (v - ref[k]).norm() / ref[k].norm().clamp_min(1e-12)
        assert rel <= 1e-3, (k, float(rel))
    x = images(model)
    ref_logits, _ = outputs(model, x)
    logits, _ = outputs(loaded, x)
    assert (logits - ref_logits).abs().max() <= 2e-2 * ref_logits.abs().max()


def test_release_strips_resume_state_and_keeps_history(tmp_path, trained):
    from typer.testing import CliRunner

    from voxface.cli import app

    model, opt, sched = trained
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    aux = nn.Linear(16, 100)  # the trainer's resume-only entries of extra (voxface.train's _extra)
    resume_extra = {"aux_heads": aux.state_dict(), "aux_dims": [100, 53], "data_position": {"step": 2},
                    "grad_scaler": {"scale": 65536.0, "_growth_tracker": 3}}
    src = save_checkpoint(tmp_path / "best.pth.tar", model, opt, scheduler=sched, epoch=3, step=2,
                          loss_history=history, rng_state={"python": 1},
                          extra={"val_iou": 0.5, "elapsed_s": 12.0, **resume_extra})
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"num": 4, "seed": 7, "resolution": 32, "summary": {"iou_gap_closed": 0.5},
                                  "samples": [{"iou": 1.0}]}))
    dst = tmp_path / "ship" / "vox-cpk.pth.tar"
    res = CliRunner().invoke(app, ["release", str(src), "-o", str(dst), "--report", str(report)])
    assert res.exit_code == 0, res.output
    assert "float16" in res.output and dst.stat().st_size < 0.4 * src.stat().st_size

    ck = load_checkpoint(dst)
    assert ck["optimizer"] is None and ck["scheduler"] is None and ck["rng"] is None
    assert (ck["epoch"], ck["step"]) == (3, 2) and ck["loss_history"] == history
    assert ck["extra"]["val_iou"] == 0.5 and ck["extra"]["released_from"] == "best.pth.tar"
    assert set(ck["extra"]) == {"val_iou", "elapsed_s", "released_from", "evaluation"}  # no resume state
    info = inspect_checkpoint(dst)
    assert list(info.networks) == ["encoder", "decoder"] and "extra.aux_heads" not in info.format()
    assert ck["extra"]["evaluation"] == {"num": 4, "seed": 7, "resolution": 32,
                                         "summary": {"iou_gap_closed": 0.5}}  # per-sample records dropped
    assert torch.equal(ck["prior"]["mean"], model.prior["mean"])
    loaded = load_model(dst, device="cpu")
    x = images(model)
    assert (outputs(loaded, x)[0] - outputs(model, x)[0]).abs().max() <= 2e-2 * outputs(model, x)[0].abs().max()


def _one_error_line(code: int, out: str, err: str, path: Path) -> str:
    assert code == 1, (code, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), err
    return lines[0]


@pytest.mark.parametrize(
    "report, words",
    [
        ([{"iou": 0.9}], "holds a list"),
        ("report", "holds a string"),
        ({"foo": 1}, "lacks num, seed, resolution, summary"),
        ({"num": 4, "seed": 7, "resolution": 32}, "lacks summary"),
        ({"num": "4", "seed": 7, "resolution": 32, "summary": {}}, "num is not a whole number"),
        ({"num": 4, "seed": 7, "resolution": 32, "summary": [0.5]}, "summary is not an object"),
    ],
    ids=["list", "string", "no-evaluation-keys", "no-summary", "num-a-string", "summary-a-list"],
)
def test_release_refuses_a_report_that_is_not_an_evaluation(tmp_path, tiny_model, monkeypatch, capsys, report, words):
    """``release --report R`` with JSON that is not a `voxface evaluate` report: one line naming R, exit
    1, the earlier output untouched (never a TypeError, never an empty evaluation embedded)."""
    src = save_checkpoint(tmp_path / "last.pth.tar", tiny_model)
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps(report))
    dst = save_checkpoint(tmp_path / "vox-cpk.pth.tar", tiny_model)  # an earlier release
    before = dst.read_bytes()
    line = _one_error_line(*run_cli(monkeypatch, capsys, "release", src, "-o", dst, "--report", bad), bad)
    assert words in line and "voxface evaluate --report" in line, line
    assert dst.read_bytes() == before


def test_release_in_place_is_refused_and_keeps_the_resume_state(tmp_path, trained, monkeypatch, capsys):
    """``release X -o X`` (under any spelling of X, or a link to it) would overwrite the training
    checkpoint with its stripped copy: refused in one line naming X, X byte-identical."""
    model, opt, sched = trained
    src = save_checkpoint(tmp_path / "last.pth.tar", model, opt, scheduler=sched, step=2, rng_state={"python": 1})
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    os.link(src, tmp_path / "hard.pth.tar")
    for out in (src, tmp_path / "sub" / ".." / "last.pth.tar", tmp_path / "hard.pth.tar"):
        line = _one_error_line(*run_cli(monkeypatch, capsys, "release", src, "-o", out), src)
        assert "checkpoint itself" in line and "resume state" in line and "-o last-release.pth.tar" in line, line
        assert src.read_bytes() == before
    assert load_checkpoint(src)["optimizer"] is not None
    code, out, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "last-release.pth.tar")
    assert code == 0 and err == "", err
    # a release has no resume state: refused in place too, without saying it would lose one
    rel = tmp_path / "last-release.pth.tar"
    line = _one_error_line(*run_cli(monkeypatch, capsys, "release", rel, "-o", rel), rel)
    assert "releasing in place would overwrite it (a training checkpoint's resume state" in line, line


def test_release_float32_of_a_float16_checkpoint_warns(tmp_path, tiny_model, monkeypatch, capsys):
    """``release --float32`` of weights stored in float16 is allowed (a tool may want float32 files) but
    says in one ``warning:`` line that it cannot bring the precision back; float32 sources say nothing."""
    half = save_checkpoint(tmp_path / "half.pth.tar", tiny_model, half=True)
    dst = tmp_path / "f32.pth.tar"
    code, out, err = run_cli(monkeypatch, capsys, "release", half, "-o", dst, "--float32")
    assert code == 0 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {half}: "), err
    assert "float16" in lines[0] and "cannot bring back the precision" in lines[0]
    assert f"wrote {dst}" in out and inspect_checkpoint(dst).networks["decoder"]["dtype"] == "float32"
    full = save_checkpoint(tmp_path / "full.pth.tar", tiny_model)
    code, out, err = run_cli(monkeypatch, capsys, "release", full, "-o", tmp_path / "f32b.pth.tar", "--float32")
    assert code == 0 and err == "", err


def test_half_refuses_values_beyond_float16(tmp_path, tiny_model):
    with torch.no_grad():
        tiny_model.decoder.out.bias[0] = 1e6
    path = tmp_path / "big.pth.tar"
    with pytest.raises(ValueError, match="decoder.out.bias"):
        save_checkpoint(path, tiny_model, half=True)
    assert os.listdir(tmp_path) == []


def test_release_of_weights_beyond_float16_is_one_line(tmp_path, monkeypatch, capsys):
    """``release`` (float16 by default) of weights float16 cannot hold: one line naming the tensor and
    --float32, which then releases it (it was an uncaught ValueError)."""
    from voxface.models import create_model

    from .conftest import TINY_CONFIG

    model = create_model(TINY_CONFIG)
    with torch.no_grad():
        model.decoder.out.bias[0] = 1e6
    src = save_checkpoint(tmp_path / "big.pth.tar", model)
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "cannot store decoder.out.bias as float16" in lines[0], err
    assert "release it with --float32" in lines[0] and not (tmp_path / "r.pth.tar").exists()
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar", "--float32")
    assert code == 0, err


def test_save_unwraps_data_parallel_and_keeps_numpy_out(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "dp.pth.tar", nn.DataParallel(tiny_model),
                           extra={"table": np.arange(6, dtype=np.int16).reshape(2, 3)})
    ck = load_checkpoint(path)
    assert list(ck["state_dict"]) == list(tiny_model.state_dict())
    table = ck["extra"]["table"]
    assert isinstance(table, torch.Tensor) and table.dtype == torch.int16
    assert table.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_numpy_scalars_and_int_or_str_subclasses_are_stored_as_plain_values(tmp_path, tiny_model):
    """np.float64 is a float and an IntEnum an int, but pickled as their classes, which weights_only
    refuses: saved as they were, the file could never be loaded again (a run's last.pth.tar lost)."""
    import enum

    class Stage(enum.IntEnum):
        DECODER = 2

    class Mode(str, enum.Enum):
        LATENT = "latent"

    tiny_model.prior = {"count": np.int64(7), "scale": np.float64(0.25)}
    path = save_checkpoint(
        tmp_path / "m.pth.tar", tiny_model, epoch=np.int64(3), step=np.int32(9),
        loss_history=[{"iou": np.float64(0.5), "stage": Stage.DECODER, np.str_("mode"): Mode.LATENT}],
        extra={"best_iou": np.float64(0.75), Stage.DECODER: Mode.LATENT, "flag": np.bool_(True)},
    )
    ck = load_checkpoint(path)  # loads: no numpy or enum class inside
    assert ck["loss_history"] == [{"iou": 0.5, "stage": 2, "mode": "latent"}]
    assert [type(v) for v in ck["loss_history"][0].values()] == [float, int, str]
    assert ck["extra"]["best_iou"] == 0.75 and type(ck["extra"]["best_iou"]) is float
    assert ck["extra"][2] == "latent" and type(ck["extra"][2]) is str and ck["extra"]["flag"] is True
    assert ck["prior"] == {"count": 7, "scale": 0.25} and type(ck["prior"]["count"]) is int
    assert ck["epoch"] == 3 and ck["step"] == 9
    assert load_model(path, device="cpu").prior == {"count": 7, "scale": 0.25}
    # a numpy scalar that is not a number (a date) is refused like any other non-data, nothing written
    with pytest.raises(TypeError, match=r"extra\['when'\]: cannot store a datetime"):
        save_checkpoint(tmp_path / "d.pth.tar", tiny_model, extra={"when": np.datetime64("2026-01-01T00:00:00")})
    assert not (tmp_path / "d.pth.tar").exists()


def test_save_refuses_code_and_leaves_nothing(tmp_path, tiny_model):
    path = tmp_path / "m.pth.tar"
    with pytest.raises(TypeError, match=r"extra\['hook'\].*function"):
        save_checkpoint(path, tiny_model, extra={"hook": lambda: None})
    with pytest.raises(TypeError, match="VoxFace"):
        save_checkpoint(path, nn.Linear(2, 2))
    assert os.listdir(tmp_path) == []


def test_saved_file_gets_normal_permissions(tmp_path, tiny_model):
    umask = os.umask(0)
    os.umask(umask)
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ------------------------------------------------------------------------------ atomic writes


def _broken_save(real_save):
    def save(obj, f, *args, **kwargs):
        import io

        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2])
        else:
            Path(f).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    return save


def test_atomic_save_leaves_previous_file_untouched(tmp_path, tiny_model, monkeypatch):
    path = tmp_path / "model.pth.tar"
    save_checkpoint(path, tiny_model, epoch=1)
    before = path.read_bytes()

    with torch.no_grad():
        for p in tiny_model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(torch, "save", _broken_save(torch.save))
    with pytest.raises(CheckpointError) as ei:  # named by the file asked for, with the system's reason
        save_checkpoint(path, tiny_model, epoch=2)
    assert str(ei.value) == f"{path}: cannot write file (No space left on device)" and ei.value.reason == "unwritable"
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pth.tar"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


def test_atomic_save_without_previous_file_leaves_nothing(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(torch, "save", _broken_save(torch.save))
    with pytest.raises(CheckpointError, match=r"new\.pth\.tar: cannot write file \(No space left on device\)$"):
        save_checkpoint(tmp_path / "new.pth.tar", tiny_model)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
def test_a_write_failing_inside_torch_save_is_its_own_error(tmp_path, tiny_model, monkeypatch, error):
    """The file itself failing (not torch.save mocked whole): torch's C++ writer swallows what the
    file's write raised and fails later with RuntimeError 'unexpected pos'; the user must get the
    one-line CheckpointError of a full disk, and Ctrl-C must stay a KeyboardInterrupt."""
    import contextlib

    import voxface.mesh

    path = tmp_path / "model.pth.tar"
    save_checkpoint(path, tiny_model, epoch=1)
    before = path.read_bytes()
    real_open = voxface.mesh.atomic_open

    class Failing:
        def __init__(self, f):
            self.f, self.calls = f, 0

        def write(self, data):
            self.calls += 1
            if self.calls == 3:
                raise error
            return self.f.write(data)

        def flush(self):
            self.f.flush()

    @contextlib.contextmanager
    def failing_open(p):
        with real_open(p) as f:
            yield Failing(f)

    monkeypatch.setattr(voxface.mesh, "atomic_open", failing_open)
    if isinstance(error, OSError):
        with pytest.raises(CheckpointError) as ei:
            save_checkpoint(path, tiny_model, epoch=2)
        assert str(ei.value) == f"{path}: cannot write file (No space left on device)"
        assert ei.value.reason == "unwritable"
    else:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, tiny_model, epoch=2)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pth.tar"]
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no file can be made")
@pytest.mark.parametrize("command", ["init-checkpoint", "release"])
def test_cli_unwritable_checkpoint_names_the_file_asked_for(tmp_path, tiny_yaml, tiny_model, monkeypatch, capsys,
                                                           command):
    """A checkpoint the system will not let be made (here in /proc) is one line naming the file asked
    for and the reason, never the hidden temporary file, which is not left behind either."""
    src = save_checkpoint(tmp_path / "src.pth.tar", tiny_model)
    args = ["-c", tiny_yaml] if command == "init-checkpoint" else [src]
    code, out, err = run_cli(monkeypatch, capsys, command, *args, "-o", "/proc/voxface-test.pth.tar")
    line = _one_error_line(code, out, err, Path("/proc/voxface-test.pth.tar"))
    assert line == "error: /proc/voxface-test.pth.tar: cannot write file (No such file or directory)"
    assert ".tmp" not in err
    # where the folder is a file, the file in the way is named
    (tmp_path / "afile").write_text("not a folder")
    code, out, err = run_cli(monkeypatch, capsys, command, *args, "-o", tmp_path / "afile" / "x.pth.tar")
    line = _one_error_line(code, out, err, tmp_path / "afile" / "x.pth.tar")
    assert line.endswith(f"cannot write file ({tmp_path / 'afile'} is a file, where a folder is needed)")
    assert sorted(os.listdir(tmp_path)) == ["afile", "src.pth.tar"]


def test_save_onto_a_directory_is_a_clear_error(tmp_path, tiny_model):
    (tmp_path / "d").mkdir()
    with pytest.raises(CheckpointError, match="is a directory") as ei:
        save_checkpoint(tmp_path / "d", tiny_model)
    assert ei.value.reason == "directory"  # every CheckpointError carries its reason
    assert os.listdir(tmp_path / "d") == []
    # a folder not made yet, named with a trailing slash: Path() dropped the slash and a file 'new' was written
    with pytest.raises(CheckpointError, match="names a folder \\(it ends in a slash\\)") as ei:
        save_checkpoint(f"{tmp_path}/new/", tiny_model)
    assert ei.value.reason == "directory" and not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------ unsafe pickles


class _SystemCall:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _Exec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _torch_zip(path, payload):
    torch.save({"state_dict": {"w": torch.zeros(2)}, "config": {}, "payload": payload}, path)


def _torch_legacy(path, payload):
    torch.save({"payload": payload}, path, _use_new_zipfile_serialization=False)


def _raw_pickle(protocol):
    def write(path, payload):
        path.write_bytes(pickle.dumps(payload, protocol=protocol))

    return write


@pytest.mark.parametrize("payload_cls", [_SystemCall, _Exec], ids=["os.system", "builtins.exec"])
@pytest.mark.parametrize(
    "writer",
    [_torch_zip, _torch_legacy, _raw_pickle(0), _raw_pickle(2), _raw_pickle(pickle.HIGHEST_PROTOCOL)],
    ids=["torch-zip", "torch-legacy", "pickle-p0", "pickle-p2", "pickle-highest"],
)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload_cls, writer):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth.tar"
    writer(path, payload_cls(marker))
    for read in (load_checkpoint, inspect_checkpoint, load_model):
        with pytest.raises(UnsafeCheckpointError) as ei:
            read(path)
        msg = one_line_naming(ei.value, path)
        assert ("system" in msg) if payload_cls is _SystemCall else ("exec" in msg)
        assert ei.value.reason == "unsafe"
    assert not marker.exists()


def test_numpy_arrays_in_a_checkpoint_are_outside_the_allowed_set(tmp_path):
    path = tmp_path / "np.pth.tar"
    torch.save({"x": np.zeros(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        load_checkpoint(path)


def test_loader_never_falls_back_to_unsafe_loading(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth.tar"
    _torch_zip(path, _SystemCall(marker))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    assert calls == [True]
    assert not marker.exists()


# ------------------------------------------------------------------------------ bad files


def _good_bytes(tmp_path, model) -> bytes:
    p = save_checkpoint(tmp_path / "_good.pth.tar", model)
    data = p.read_bytes()
    p.unlink()
    return data


def _make_bad(kind: str, tmp_path: Path, model) -> Path:
    p = tmp_path / f"{kind}.pth.tar"
    if kind == "missing":
        return tmp_path / "does-not-exist.pth.tar"
    if kind == "directory":
        p.mkdir()
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        data = _good_bytes(tmp_path, model)
        p.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-legacy":
        torch.save({"w": torch.zeros(1000)}, p, _use_new_zipfile_serialization=False)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 3])
    elif kind == "zip":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "hello")
    elif kind == "npz":
        p = tmp_path / "arrays.npz"
        np.savez(p, weights=np.zeros(3), bias=np.ones(2))
    elif kind == "npy":
        p = tmp_path / "array.npy"
        np.save(p, np.zeros(3))
    elif kind == "text":
        p = tmp_path / "config.yaml"
        p.write_text("model:\n  encoder:\n    z_id: 16\n")
    elif kind == "lfs-pointer":
        p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 42\n")
    elif kind == "unknown":
        p.write_bytes(bytes(range(256)) * 4)
    elif kind == "onnx":  # the first bytes of export-onnx's encoder.onnx (ir_version 9, producer pytorch)
        p = tmp_path / "encoder.onnx"
        p.write_bytes(b"\x08\x09\x12\x07pytorch\x1a\x062.13.0" + bytes(range(256)))
    elif kind == "pickle":
        p.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=2))
    elif kind == "not-a-dict":
        torch.save(torch.zeros(3), p)
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


BAD_KINDS = {
    # kind: (reason, words in the message)
    "missing": ("missing", "not found"),
    "directory": ("directory", "is a directory"),
    "empty": ("empty", "empty (0 bytes)"),
    "truncated": ("truncated", "truncated"),
    "truncated-legacy": ("truncated", "truncated"),
    "zip": ("zip", "zip archive but not a torch checkpoint"),
    "npz": ("npz", "NumPy .npz archive"),
    "npy": ("npy", "NumPy .npy array"),
    "text": ("text", "text file"),
    "lfs-pointer": ("lfs-pointer", "Git LFS pointer"),
    "unknown": ("unknown", "unrecognised format"),
    "onnx": ("onnx", "is an ONNX graph (as `voxface export-onnx` writes), not a torch checkpoint"),
    "pickle": ("pickle", "Python pickle but not a torch checkpoint"),
    "not-a-dict": ("not-a-dict", "holds a Tensor"),
}


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_bad_file_gives_its_own_one_line_error(tmp_path, tiny_model, kind):
    reason, words = BAD_KINDS[kind]
    path = _make_bad(kind, tmp_path, tiny_model)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(path)
    assert type(ei.value) is CheckpointError
    assert ei.value.reason == reason
    assert words in one_line_naming(ei.value, path)
    with pytest.raises(CheckpointError, match="not found" if kind == "missing" else None):
        load_model(path)


def test_a_plain_pickle_is_named_without_torchs_advice_cut_mid_word(tmp_path):
    """torch's refusal ends in generic advice with a URL; cut at 160 characters it ended mid-URL.
    The message keeps the reason and ends on a word."""
    p = tmp_path / "p.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(p)
    msg = str(ei.value)
    assert msg.endswith(")") and "Check the documentation" not in msg and "https://" not in msg, msg
    assert "is a Python pickle but not a torch checkpoint (" in msg


def test_a_flipped_bit_in_the_weights_is_refused_not_loaded(tmp_path, tiny_model, monkeypatch):
    """torch.load does not check the CRC-32 torch.save records, so a byte changed in a tensor's data
    (bit rot, a bad copy) loaded as a silently wrong weight; a file written without CRCs still loads."""
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    data = bytearray(path.read_bytes())
    at = data.find(tiny_model.decoder.out.weight.detach().numpy().tobytes())
    assert at > 0
    data[at + 1] ^= 0x40
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(bytes(data))
    for read in (lambda: load_model(bad, device="cpu"), lambda: load_checkpoint(bad), lambda: inspect_checkpoint(bad)):
        with pytest.raises(CheckpointError) as ei:
            read()
        msg = one_line_naming(ei.value, bad)
        assert "is corrupt: Bad CRC-32" in msg and ei.value.reason == "corrupt"

    import torch.serialization

    monkeypatch.setattr(torch.serialization, "get_crc32_options", lambda: False)
    no_crc = save_checkpoint(tmp_path / "nocrc.pth.tar", tiny_model)
    with zipfile.ZipFile(no_crc) as z:
        assert {i.CRC for i in z.infolist()} == {0}
    assert_tensors_equal(dict(load_model(no_crc, device="cpu").state_dict()), dict(tiny_model.state_dict()))


def test_bad_file_messages_are_distinct(tmp_path, tiny_model):
    messages = {}
    for kind in BAD_KINDS:
        if kind == "truncated-legacy":
            continue
        (tmp_path / kind).mkdir()
        path = _make_bad(kind, tmp_path / kind, tiny_model)
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(path)
        messages[kind] = str(ei.value).replace(str(path), "<path>")
    assert len(set(messages.values())) == len(messages), messages


def test_newer_format_version_is_refused_but_inspectable(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    ck = load_checkpoint(path)
    ck["meta"]["format_version"] = FORMAT_VERSION + 1
    torch.save(ck, path)
    with pytest.raises(CheckpointVersionError) as ei:
        load_checkpoint(path)
    msg = one_line_naming(ei.value, path)
    assert f"format {FORMAT_VERSION + 1}" in msg and "upgrade voxface" in msg
    with pytest.raises(CheckpointVersionError):
        load_model(path)
    info = inspect_checkpoint(path)
    assert info.kind == "voxface" and "upgrade voxface" in info.note


# ------------------------------------------------------------------------------ architecture


def test_architecture_mismatch_names_key_and_both_shapes(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    ck = load_checkpoint(path)
    ck["config"]["encoder"]["z_id"] = 20  # the file's config no longer fits its weights
    torch.save(ck, path)
    with pytest.raises(ArchitectureMismatchError) as ei:
        load_model(path, device="cpu")
    msg = one_line_naming(ei.value, path)
    assert "encoder.head_id.weight" in msg
    assert "(16, 256)" in msg and "(20, 256)" in msg
    with pytest.raises(ArchitectureMismatchError):  # shapes are refused even non-strictly
        load_model(path, device="cpu", strict=False)


def test_missing_and_unexpected_keys(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    ck = load_checkpoint(path)
    del ck["state_dict"]["decoder.out.bias"]
    ck["state_dict"]["decoder.refine.weight"] = torch.zeros(3, 4)
    torch.save(ck, path)
    with pytest.raises(ArchitectureMismatchError) as ei:
        load_model(path, device="cpu")
    msg = one_line_naming(ei.value, path)
    assert "decoder.out.bias" in msg and "missing" in msg and "(8,)" in msg
    assert "1 missing, 1 unexpected" in msg
    with pytest.warns(UserWarning, match="decoder.refine.weight"):
        model = load_model(path, device="cpu", strict=False)
    assert torch.equal(model.decoder.out.weight, tiny_model.decoder.out.weight)


@pytest.mark.parametrize("entry, words", [((3, torch.zeros(2)), "state_dict key 3 is a int, not a parameter name"),
                                          (("decoder.out.bias", [0.0]), "state_dict entry 'decoder.out.bias' is a list, "
                                                                        "not a tensor")], ids=["int-key", "list-value"])
def test_a_state_dict_entry_that_is_not_a_named_tensor_is_named(tmp_path, tiny_model, entry, words):
    """It said 'entry 3 is a Tensor, not a tensor' for a key that is not a name."""
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    ck = load_checkpoint(path)
    ck["state_dict"][entry[0]] = entry[1]
    torch.save(ck, path)
    for read in (lambda: load_model(path, device="cpu"), lambda: inspect_checkpoint(path)):
        with pytest.raises(CheckpointError) as ei:
            read()
        assert one_line_naming(ei.value, path) == f"{path}: {words}" and ei.value.reason == "corrupt"


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, tiny_model, prefix):
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    ck = load_checkpoint(path)
    ck["state_dict"] = {prefix + k: v for k, v in ck["state_dict"].items()}
    torch.save(ck, path)
    loaded = load_model(path, device="cpu")
    assert_tensors_equal(dict(loaded.state_dict()), dict(tiny_model.state_dict()))
    x = images(tiny_model)
    assert torch.equal(outputs(loaded, x)[0], outputs(tiny_model, x)[0])


def test_a_checkpoint_saved_on_cuda_loads_on_a_cpu_only_machine(tmp_path, tiny_model, monkeypatch):
    """Tensors tagged cuda:0 (as torch.save writes them from a GPU) load where CUDA is missing:
    load_model and the default map_location put them on the CPU; map_location=None (keep them
    where they were saved) is one line saying so, not 'corrupt'."""
    import torch.serialization

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    real_tag = torch.serialization.location_tag
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    opt = torch.optim.AdamW(tiny_model.parameters())
    path = save_checkpoint(tmp_path / "gpu.pth.tar", tiny_model, opt, rng_state={"torch": torch.get_rng_state()})
    monkeypatch.setattr(torch.serialization, "location_tag", real_tag)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does here
        torch.load(path, weights_only=True)

    model = load_model(path)  # device="auto": the CPU here
    assert model.device.type == "cpu"
    assert_tensors_equal(dict(model.state_dict()), dict(tiny_model.state_dict()))
    for where in ("cpu", "auto", torch.device("cpu")):
        ck = load_checkpoint(path, map_location=where)
        assert all(t.device.type == "cpu" for t in ck["state_dict"].values())
    assert inspect_checkpoint(path).kind == "voxface"
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint(path, map_location=None)
    msg = one_line_naming(ei.value, path)
    assert "saved on a CUDA device" in msg and "map_location='cpu'" in msg and "corrupt" not in msg
    assert ei.value.reason == "device"
    with pytest.raises(CheckpointError) as ei:  # asking for CUDA names the file too (it did not)
        load_checkpoint(path, map_location="cuda")
    msg = one_line_naming(ei.value, path)
    assert "cannot be loaded there" in msg and "CUDA is not available" in msg and ei.value.reason == "device"


def test_asking_for_cuda_on_a_cpu_only_machine_does_not_blame_the_file(tmp_path, tiny_model, monkeypatch):
    """map_location=torch.device('cuda') (or a mapping onto CUDA) of a file saved on the CPU said the
    file 'holds tensors saved on a CUDA device': it is where it was asked to go that has no CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = save_checkpoint(tmp_path / "cpu.pth.tar", tiny_model)
    for where in (torch.device("cuda"), torch.device("cuda", 0), {"cpu": "cuda:0"}):
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(path, map_location=where)
        msg = one_line_naming(ei.value, path)
        assert "saved on a CUDA device" not in msg and ei.value.reason == "device", msg
        assert ("CUDA is not available" if isinstance(where, torch.device) else "no CUDA") in msg
    assert load_checkpoint(path, map_location=torch.device("cpu"))["step"] == 0


def test_load_model_without_path_uses_default_weights(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(ckpt_mod, "DEFAULT_WEIGHTS", tmp_path / "weights" / "vox-cpk.pth.tar")
    with pytest.raises(CheckpointError) as ei:
        load_model()
    msg = one_line_naming(ei.value, tmp_path / "weights" / "vox-cpk.pth.tar")
    assert "no default weights" in msg and "pass a checkpoint path" in msg
    save_checkpoint(ckpt_mod.DEFAULT_WEIGHTS, tiny_model)
    model = load_model(device="cpu")
    assert_tensors_equal(dict(model.state_dict()), dict(tiny_model.state_dict()))


# ------------------------------------------------------------------------------ inspection


def test_inspect_voxface_checkpoint(tmp_path, trained):
    model, opt, sched = trained
    path = save_checkpoint(
        tmp_path / "m.pth.tar", model, opt, epoch=2, step=40, scheduler=sched,
        loss_history=[{"loss": 1.0}, {"loss": 0.5, "iou": float("nan")}],
        extra={"aux_head": nn.Linear(24, 10).state_dict()},
    )
    info = inspect_checkpoint(path)
    assert info.kind == "voxface" and info.note is None
    assert info.parameters == {
        "encoder": count_parameters(model.encoder),
        "decoder": count_parameters(model.decoder),
        "total": count_parameters(model),
    }
    assert info.networks["encoder"]["dtype"] == "float32"
    assert info.networks["extra.aux_head"] == {"parameters": 250, "tensors": 2, "dtype": "float32"}
    assert info.flops == flops_per_sample(model) and info.flops["total"] > 0
    assert (info.epoch, info.step, info.loss_history_length) == (2, 40, 2)
    assert info.last_loss["loss"] == 0.5
    assert info.resume == {"optimizer": True, "scheduler": True, "rng": False}
    assert info.config["decoder"]["resolution"] == 32 and info.meta["format_version"] == FORMAT_VERSION

    d = json.loads(json.dumps(info.to_dict(), allow_nan=False))  # strict JSON
    assert d["parameters"]["total"] == count_parameters(model) and d["last_loss"]["iou"] == "nan"
    text = info.format()
    assert f"{count_parameters(model.decoder):,}" in text and "FLOPs/sample" in text


def _fomm_checkpoint(path: Path, legacy: bool = False) -> dict[str, nn.Module]:
    """A First Order Motion Model style ``vox-cpk.pth.tar`` with small stand-in networks."""
    torch.manual_seed(0)
    nets = {
        "generator": nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 3)),
        "kp_detector": nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(20)),
        "discriminator": nn.Conv2d(3, 1, 4),
    }
    nets["kp_detector"](torch.zeros(1, 3, 8, 8))  # materialise the lazy layer
    data: dict = {name: m.state_dict() for name, m in nets.items()}
    for name, m in nets.items():
        opt = torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999))
        m(torch.rand(1, 3, 8, 8)).mean().backward()
        opt.step()
        data[f"optimizer_{name}"] = opt.state_dict()
    data["epoch"] = 99
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return nets


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_first_order_motion_model_checkpoint_is_recognised_and_refused(tmp_path, legacy):
    path = tmp_path / "vox-cpk.pth.tar"
    nets = _fomm_checkpoint(path, legacy)
    info = inspect_checkpoint(path)
    assert info.kind == "foreign"
    assert list(info.networks) == ["generator", "kp_detector", "discriminator"]
    for name, m in nets.items():  # BatchNorm running statistics are not parameters
        assert info.networks[name]["parameters"] == count_parameters(m), name
        assert info.networks[name]["tensors"] == len(m.state_dict())
    assert info.optimizers == ["optimizer_generator", "optimizer_kp_detector", "optimizer_discriminator"]
    assert info.epoch == 99 and info.parameters is None
    assert info.note == (
        "First Order Motion Model checkpoint (vox-cpk.pth.tar): networks generator, kp_detector, "
        "discriminator; not a voxface model"
    )
    assert "First Order Motion Model" in info.format()

    with pytest.raises(CheckpointError) as ei:
        load_model(path, device="cpu")
    assert type(ei.value) is CheckpointError and ei.value.reason == "foreign"
    msg = one_line_naming(ei.value, path)
    assert "not a voxface checkpoint" in msg and "First Order Motion Model" in msg
    assert "generator, kp_detector, discriminator" in msg


def test_bare_state_dict_is_foreign(tmp_path, tiny_model):
    path = tmp_path / "weights.pt"
    torch.save(tiny_model.state_dict(), path)
    info = inspect_checkpoint(path)
    assert info.kind == "foreign" and "bare state_dict" in info.note
    assert info.networks["decoder"]["parameters"] == count_parameters(tiny_model.decoder)
    keys = next(line for line in info.format().splitlines() if line.startswith("keys"))
    assert keys.endswith(f", ... ({len(tiny_model.state_dict())} keys; --json lists them)"), keys  # not all 53
    assert keys.count(",") == 8 and len(info.to_dict()["keys"]) == len(tiny_model.state_dict())
    with pytest.raises(CheckpointError, match="not a voxface checkpoint.*bare state_dict"):
        load_model(path)


# ------------------------------------------------------------------------------ CLI


def test_cli_init_checkpoint_then_inspect(tmp_path, tiny_yaml, tiny_config, monkeypatch, capsys):
    out_path = tmp_path / "ckpt" / "tiny.pth.tar"
    code, out, err = run_cli(monkeypatch, capsys, "init-checkpoint", "--config", str(tiny_yaml),
                              "-o", str(out_path), "--seed", "3")
    assert code == 0, err
    assert f"wrote {out_path}" in out

    torch.manual_seed(3)
    expected = create_model(tiny_config)
    assert_tensors_equal(dict(load_model(out_path, device="cpu").state_dict()), dict(expected.state_dict()))

    code, out, err = run_cli(monkeypatch, capsys, "inspect", str(out_path), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["kind"] == "voxface"
    assert d["parameters"] == {
        "encoder": count_parameters(expected.encoder),
        "decoder": count_parameters(expected.decoder),
        "total": count_parameters(expected),
    }
    assert d["flops"]["total"] > 0 and d["meta"]["resolution"] == 32

    code, out, _ = run_cli(monkeypatch, capsys, "inspect", str(out_path))
    assert code == 0 and "encoder" in out and f"{count_parameters(expected):,}" in out


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 99999999999999999999])
def test_cli_init_checkpoint_seed_out_of_range_names_the_seed_not_the_config(tmp_path, tiny_yaml, monkeypatch,
                                                                             capsys, seed):
    """A --seed torch.manual_seed refuses is refused up front, in one line naming --seed and the
    range (not blamed on the config, as torch's ValueError was); nothing is written."""
    out_path = tmp_path / "x.pth.tar"
    code, out, err = run_cli(monkeypatch, capsys, "init-checkpoint", "-c", tiny_yaml, "-o", out_path,
                             "--seed", str(seed))
    assert code == 1 and "Traceback" not in out + err, err
    assert err == f"error: --seed must be a whole number from {-(2**63)} to {2**64 - 1}, not {seed}\n"
    assert not out_path.exists() and os.listdir(tmp_path) == []


def test_cli_init_checkpoint_takes_every_seed_torch_takes(tmp_path, tiny_yaml, tiny_config, monkeypatch, capsys):
    """The ends of torch's range are accepted and seed the initialisation (a negative seed is 2**64 + seed)."""
    for seed in (2**64 - 1, -(2**63)):
        out_path = tmp_path / f"{seed}.pth.tar"
        code, out, err = run_cli(monkeypatch, capsys, "init-checkpoint", "-c", tiny_yaml, "-o", out_path,
                                 "--seed", str(seed))
        assert code == 0 and err == "", err
        torch.manual_seed(seed)
        expected = create_model(tiny_config)
        assert_tensors_equal(dict(load_model(out_path, device="cpu").state_dict()), dict(expected.state_dict()))
        assert load_checkpoint(out_path)["extra"]["init_seed"] == seed


def test_cli_init_checkpoint_half(tmp_path, tiny_yaml, monkeypatch, capsys):
    out_path = tmp_path / "tiny16.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "init-checkpoint", "-c", str(tiny_yaml),
                            "-o", str(out_path), "--half")
    assert code == 0, err
    assert inspect_checkpoint(out_path).networks["decoder"]["dtype"] == "float16"


@pytest.mark.parametrize(
    "args, words",
    [
        (["inspect", "{tmp}/nope.pth.tar"], "not found"),
        (["inspect", "{tmp}/evil.pth.tar"], "posix.system"),
        (["init-checkpoint", "--config", "{tmp}/nomodel.yaml", "-o", "{tmp}/x.pth.tar"], "no `model:` section"),
        (["init-checkpoint", "--config", "{tmp}/typo.yaml", "-o", "{tmp}/x.pth.tar"], "unknown key"),
        (["init-checkpoint", "--config", "{tmp}/widths.yaml", "-o", "{tmp}/x.pth.tar"], "decoder.widths needs 4"),
        (["init-checkpoint", "--config", "{tmp}/negative.yaml", "-o", "{tmp}/x.pth.tar"], "z_id must be at least 1"),
        (["train", "--config", "{tmp}/widths.yaml", "-o", "{tmp}/run"], "decoder.widths needs 4"),
        (["train", "--config", "{tmp}/negative.yaml", "--dry-run"], "z_id must be at least 1"),
        (["reconstruct", "{tmp}/face.png", "--no-detect", "-o", "{tmp}/afile/out"], "afile is a file, where a folder is needed"),
        (["evaluate", "--num", "4", "--report", "{tmp}/afile/r.json"], "afile: is a file, where a folder is needed"),
        (["init-checkpoint", "--config", "{tmp}/latin1.yaml", "-o", "{tmp}/x.pth.tar"], "is not UTF-8 text"),
        (["train", "--config", "{tmp}/latin1.yaml", "--dry-run"], "is not UTF-8 text (byte 15: 0xe9)"),
    ],
    ids=["missing", "unsafe", "no-model-section", "config-typo", "inconsistent-model", "negative-size",
         "train-inconsistent-model", "train-negative-size", "output-folder-under-a-file",
         "report-under-a-file-fails-before-evaluating", "config-not-utf8", "train-config-not-utf8"],
)
def test_cli_user_errors_print_one_line(tmp_path, monkeypatch, capsys, args, words):
    marker = tmp_path / "MARKER"
    _torch_zip(tmp_path / "evil.pth.tar", _SystemCall(marker))
    (tmp_path / "nomodel.yaml").write_text("data:\n  kind: toy\n")
    (tmp_path / "typo.yaml").write_text("model:\n  encoder:\n    z_idd: 3\n")
    (tmp_path / "widths.yaml").write_text("model:\n  decoder:\n    widths: [8]\n")
    (tmp_path / "negative.yaml").write_text("model:\n  encoder:\n    z_id: -5\n")
    (tmp_path / "afile").write_text("a file where a folder is asked for")
    (tmp_path / "latin1.yaml").write_bytes("# config of Ren\u00e9\nmodel: {}\n".encode("latin-1"))
    Image.new("RGB", (64, 64), (128, 100, 90)).save(tmp_path / "face.png")
    code, out, err = run_cli(monkeypatch, capsys, *(a.format(tmp=tmp_path) for a in args))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert str(tmp_path) in lines[0]
    assert not marker.exists() and not (tmp_path / "x.pth.tar").exists() and not (tmp_path / "run").exists()


def test_console_script_inspect_json(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    r = subprocess.run([VOXFACE_BIN, "inspect", "--json", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["networks"]["encoder"]["parameters"] == count_parameters(tiny_model.encoder)


def test_help_and_import_do_not_import_torch():
    code = (
        "import sys\n"
        "import voxface\n"
        "assert 'torch' not in sys.modules, 'import voxface pulled in torch'\n"
        "import voxface.cli\n"
        "sys.argv = ['voxface', '--help']\n"
        "try:\n"
        "    voxface.cli.main()\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'voxface --help pulled in torch'\n"
    )
    r = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "inspect" in r.stdout and "init-checkpoint" in r.stdout


def test_release_and_refine_outputs_never_replace_another_runs_resume_state(tmp_path, trained, monkeypatch, capsys):
    """``release A -o B`` where B is another run's training checkpoint: refused in one line naming B,
    B unchanged (the release keeps no resume state, so that run could no longer be resumed). A
    folder as -o and a place that cannot be written are refused before any work, naming the path."""
    model, opt, sched = trained
    src = save_checkpoint(tmp_path / "a" / "best.pth.tar", model, epoch=1, step=2)
    other = save_checkpoint(tmp_path / "b" / "last.pth.tar", model, opt, scheduler=sched, step=5,
                            rng_state={"python": 1})
    before = other.read_bytes()
    line = _one_error_line(*run_cli(monkeypatch, capsys, "release", src, "-o", other), other)
    assert "resume state" in line and "could no longer be resumed" in line, line
    assert other.read_bytes() == before
    line = _one_error_line(*run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "a"), tmp_path / "a")
    assert "is a folder" in line, line

    import tempfile

    real = tempfile.TemporaryFile

    def refuse(*args, **kwargs):  # a read-only place (permission bits do not stop root: probed by a real write)
        if str(kwargs.get("dir", "")).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    line = _one_error_line(*run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "ro" / "x.pth.tar"),
                           tmp_path / "ro" / "x.pth.tar")
    assert line.endswith("cannot write file (Permission denied)"), line
    from voxface.checkpoint import check_output_checkpoint
    from voxface.errors import CheckpointError

    with pytest.raises(CheckpointError, match="resume state"):
        check_output_checkpoint(other, "refined checkpoint")


def test_release_embeds_how_the_report_was_measured_and_refuses_other_models_reports(tmp_path, trained, monkeypatch,
                                                                                        capsys):
    model, _, _ = trained
    src = save_checkpoint(tmp_path / "best.pth.tar", model)
    elsewhere = save_checkpoint(tmp_path / "other.pth.tar", model)
    base = {"num": 4, "seed": 7, "resolution": 32, "summary": {"model": {}}}
    report = tmp_path / "r.json"
    report.write_text(json.dumps({**base, "latents": "encoder", "upsample": "none", "points": 100000,
                                  "checkpoint": str(src), "samples": []}))
    dst = tmp_path / "rel.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", dst, "--report", report)
    assert code == 0, err
    assert load_checkpoint(dst)["extra"]["evaluation"] == {**base, "latents": "encoder", "upsample": "none",
                                                            "points": 100000, "checkpoint": str(src)}
    for data, words in (({**base, "latents": "true"}, "evaluates the decoder on true coefficients"),
                        ({**base, "checkpoint": str(elsewhere)}, f"evaluates {elsewhere}, not {src}")):
        report.write_text(json.dumps(data))
        line = _one_error_line(*run_cli(monkeypatch, capsys, "release", src, "-o", dst, "--report", report), report)
        assert words in line, line


def test_release_of_a_checkpoint_with_malformed_metadata_is_no_traceback(tmp_path, tiny_model, monkeypatch, capsys):
    """Hand-edited metadata of the wrong type (extra a list, step a string, loss_history a number)
    is dropped by release, as inspect and decode read past it."""
    src = save_checkpoint(tmp_path / "w.pth.tar", tiny_model)
    ck = torch.load(src, weights_only=False)
    ck.update(extra=[1], step="abc", loss_history=5)
    torch.save(ck, src)
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar")
    assert code == 0 and "Traceback" not in err, err
    out = load_checkpoint(tmp_path / "r.pth.tar")
    assert out["step"] == 0 and out["loss_history"] == [] and out["extra"]["released_from"] == "w.pth.tar"
    ck.update(loss_history=[1, {"step": 1, "total": 0.5}, "x"])  # records that are not dicts: dropped, not
    torch.save(ck, src)                                            # an error naming no file
    code, _, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar")
    assert code == 0 and err == "", err
    assert load_checkpoint(tmp_path / "r.pth.tar")["loss_history"] == [{"step": 1, "total": 0.5}]


def test_save_checkpoint_with_its_arguments_swapped_says_which_comes_first(tmp_path, tiny_model):
    from voxface.errors import InputTypeError

    with pytest.raises(InputTypeError, match=r"save_checkpoint takes \(path, model\), the path first"):
        save_checkpoint(tiny_model, tmp_path / "m.pth.tar")
    assert not list(tmp_path.iterdir())


def test_save_checkpoint_refuses_an_optimizer_or_step_of_another_type(tmp_path, tiny_model):
    """optimizer="adam" was AttributeError: 'str' object has no attribute 'state_dict', epoch="x" int()'s
    bare ValueError: InputTypeErrors naming the argument, nothing written; numpy integers are steps."""
    import numpy as np

    from voxface.errors import InputTypeError

    for kwargs, words in (({"optimizer": "adam"}, "optimizer must be a torch optimizer"),
                          ({"scheduler": 3}, "scheduler must be a torch scheduler"),
                          ({"epoch": "x"}, "epoch must be an integer"), ({"step": 2.5}, "step must be an integer")):
        with pytest.raises(InputTypeError, match=words):
            save_checkpoint(tmp_path / "m.pth.tar", tiny_model, **kwargs)
    assert not list(tmp_path.iterdir())
    save_checkpoint(tmp_path / "m.pth.tar", tiny_model, step=np.int64(7))
    assert load_checkpoint(tmp_path / "m.pth.tar")["step"] == 7


def test_inspect_and_release_read_past_hand_edited_values(tmp_path, tiny_model, monkeypatch, capsys):
    """A NaN epoch, an infinite step, a config section that is a list and an embedded evaluation whose
    parts are not objects: inspect (table and JSON) shows what it can, and release writes (epoch and
    step 0), instead of a ValueError/AttributeError traceback."""
    src = save_checkpoint(tmp_path / "w.pth.tar", tiny_model)
    ck = torch.load(src, weights_only=False)
    ck.update(epoch=float("nan"), step=float("inf"),
              extra={"evaluation": {"num": 4, "summary": {"model": "x", "baseline": 5}}})
    encoder, ck["config"]["encoder"] = ck["config"]["encoder"], [1, 2]
    torch.save(ck, src)
    code, out, err = run_cli(monkeypatch, capsys, "inspect", src)
    assert code == 0 and err == "", err
    assert "progress" not in out and "model        ? encoder" in out, out
    assert "evaluation   4 unseen faces" in out and "its config does not build a model" in out, out
    code, out, err = run_cli(monkeypatch, capsys, "inspect", "--json", src)
    assert code == 0 and err == "", err
    assert json.loads(out)["epoch"] is None and json.loads(out)["step"] is None
    ck["config"]["encoder"] = encoder
    torch.save(ck, src)  # a config that builds the model: release reads past the epoch and step
    code, out, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar")
    assert code == 0 and "Traceback" not in err, err
    out_ck = load_checkpoint(tmp_path / "r.pth.tar")
    assert out_ck["epoch"] == 0 and out_ck["step"] == 0


def test_init_checkpoint_never_replaces_a_runs_resume_state(tmp_path, trained, tiny_yaml, monkeypatch, capsys):
    """``init-checkpoint -o runs/x/last.pth.tar``: refused in one line naming the file, which keeps its
    bytes (it silently became a fresh random model at step 0, and the run could not be resumed). A
    checkpoint without resume state is replaced, as before."""
    model, opt, sched = trained
    run = save_checkpoint(tmp_path / "run" / "last.pth.tar", model, opt, scheduler=sched, step=5)
    before = run.read_bytes()
    line = _one_error_line(*run_cli(monkeypatch, capsys, "init-checkpoint", "-c", tiny_yaml, "-o", run), run)
    assert "resume state" in line and "could no longer be resumed" in line, line
    assert run.read_bytes() == before
    plain = save_checkpoint(tmp_path / "plain.pth.tar", model, step=5)
    code, _, err = run_cli(monkeypatch, capsys, "init-checkpoint", "-c", tiny_yaml, "-o", plain)
    assert code == 0 and err == "", err
    assert load_checkpoint(plain)["step"] == 0


def test_release_annotate_says_when_the_runs_validation_data_is_smaller_than_asked(tmp_path, tiny_model, monkeypatch,
                                                                                    capsys):
    """``release --annotate 64`` of a run whose validation split holds 5 faces named the directions
    from those 5 without a word (the help promises 'this many validation faces'): one stderr line
    says how many it used; the release is written."""
    import voxface.data
    import voxface.latent

    tiny_model.prior = {"kind": "gaussian", "z_id_mean": torch.zeros(16), "z_id_std": torch.ones(16)}
    src = save_checkpoint(tmp_path / "best.pth.tar", tiny_model,
                          extra={"run_config": {"data": {"kind": "toy", "num_val": 5}}})
    tiny_model.prior = None
    used = []
    monkeypatch.setattr(voxface.data, "build_dataset", lambda cfg, split, model_cfg: list(range(5)))
    monkeypatch.setattr(voxface.latent, "annotate_directions", lambda model, ds, idx: used.extend(idx))
    code, out, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar", "--annotate", 64)
    assert code == 0 and used == [0, 1, 2, 3, 4], err
    assert err == ("note: --annotate: the run's validation data holds 5 faces, fewer than 64; naming the directions "
                   "from those 5\n"), err
    assert (tmp_path / "r.pth.tar").is_file()
    code, out, err = run_cli(monkeypatch, capsys, "release", src, "-o", tmp_path / "r.pth.tar", "--annotate", 5)
    assert code == 0 and err == "", err


def test_a_malformed_stored_prior_is_refused_when_the_model_loads(tmp_path: Path, monkeypatch, capsys) -> None:
    """A hand-edited prior with a mean and no standard deviation loaded, and `voxface decode` then
    failed in a KeyError traceback ('z_id_std'); a prior that is a list loaded silently. Each is one
    line naming the file at load_model; a good prior and no prior still load."""
    import copy
    import re

    from voxface.checkpoint import load_model, save_checkpoint
    from voxface.errors import InputError
    from voxface.models import create_model

    from .conftest import TINY_CONFIG, run_cli

    model = create_model(copy.deepcopy(TINY_CONFIG))
    save_checkpoint(tmp_path / "m.pth.tar", model)  # no prior: the file the bad priors are edited into
    d_id, d_exp = TINY_CONFIG["encoder"]["z_id"], TINY_CONFIG["encoder"]["z_exp"]
    good = {"z_id_mean": torch.zeros(d_id), "z_id_std": torch.ones(d_id),
            "z_exp_mean": torch.zeros(d_exp), "z_exp_std": torch.ones(d_exp)}
    for prior, why in ((None, None), (good, None),
                       ({"z_id_mean": torch.zeros(d_id)}, "its latent prior has z_id_mean or z_id_std without the other"),
                       ([1, 2], "its latent prior must be a mapping, got list"),
                       ({**good, "z_exp_std": torch.ones(d_exp + 1)},
                        f"its latent prior's z_exp_std holds {d_exp + 1} values; the model's z_exp has {d_exp}"),
                       # PCA parts of other sizes: `voxface sample` ended in torch's size-mismatch traceback
                       ({**good, "z_id_pca": {"components": torch.zeros(3, d_id),
                                              "explained_variance": torch.ones(3)}}, None),
                       ({**good, "z_id_pca": {"components": torch.zeros(3, d_id + 4),
                                              "explained_variance": torch.ones(3)}},
                        f"its latent prior's z_id_pca components have shape (3, {d_id + 4}); the model's codes need "
                        f"(k, {d_id})"),
                       ({**good, "z_exp_pca": {"components": torch.zeros(2, d_exp),
                                               "explained_variance": torch.ones(5)}},
                        "its latent prior's z_exp_pca explained_variance has shape (5,); its 2 components need (2,)"),
                       ({**good, "z_exp_pca": {"components": torch.zeros(2, d_exp)}},
                        "its latent prior's z_exp_pca has components without explained_variance")):
        model.prior = prior
        if why is None:
            path = save_checkpoint(tmp_path / "m.pth.tar", model)
            assert load_model(path, device="cpu").prior is not None or prior is None
            continue
        # save_checkpoint refuses to write such a prior (the file would not load): a hand-edited file
        path = tmp_path / "m.pth.tar"
        with pytest.raises(InputError, match=re.escape(why.replace("its latent prior", "model.prior", 1))):
            save_checkpoint(path, model)
        ck = load_checkpoint(path)
        ck["prior"] = prior
        torch.save(ck, path)
        with pytest.raises(CheckpointError, match=re.escape(why)):
            load_model(path, device="cpu")
        code, _, err = run_cli(monkeypatch, capsys, "decode", path, "-o", tmp_path / "x.ply")
        assert code == 1 and "Traceback" not in err and why in err and str(path) in err, err
        assert not (tmp_path / "x.ply").exists()


def test_saved_config_follows_the_refinement_head_the_model_holds(tmp_path, tiny_model):
    """model.refiner = None (dropping a head) or a head assigned by hand wrote a config that
    disagreed with the weights: the file was written, then refused by load_model (missing or
    unexpected refiner.* weights)."""
    import dataclasses

    from voxface.config import RefineConfig
    from voxface.refine import RefineHead, add_refine_head

    head_cfg = RefineConfig(hidden=8, layers=1, pe_freqs=1)
    add_refine_head(tiny_model, head_cfg)
    tiny_model.refiner = None  # drop the head; model.config.refine still names it
    save_checkpoint(tmp_path / "dropped.pth.tar", tiny_model)
    loaded = load_model(tmp_path / "dropped.pth.tar", device="cpu")
    assert loaded.refiner is None and loaded.config.refine is None
    assert tiny_model.config.refine == head_cfg  # the model itself is left as it was

    torch.manual_seed(0)
    plain = create_model(dataclasses.replace(tiny_model.config, refine=None)).eval()
    dec = plain.decoder
    plain.refiner = RefineHead(head_cfg, dec.feature_channels, plain.config.decoder.resolution // dec.cfg.shuffle)
    with torch.no_grad():
        plain.refiner.mlp[-1].bias.fill_(0.5)
    save_checkpoint(tmp_path / "by_hand.pth.tar", plain)
    loaded = load_model(tmp_path / "by_hand.pth.tar", device="cpu")
    assert loaded.config.refine == head_cfg
    assert_tensors_equal(loaded.refiner.state_dict(), plain.refiner.state_dict())


def test_save_refuses_a_prior_the_file_could_not_be_loaded_with(tmp_path, tiny_model):
    """model.prior set by hand with a mean of the wrong size (or no std) was written without a word,
    and load_model then refused the whole file, weights and all; save_checkpoint and
    release_checkpoint(prior=) now refuse it naming the file, and an earlier file there is kept."""
    from voxface.checkpoint import release_checkpoint
    from voxface.errors import InputError

    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model)
    before = path.read_bytes()
    tiny_model.prior = {"z_id_mean": torch.zeros(5), "z_id_std": torch.ones(5)}
    with pytest.raises(InputError) as ei:
        save_checkpoint(path, tiny_model)
    msg = one_line_naming(ei.value, path)
    assert "model.prior's z_id_mean holds 5 values; the model's z_id has 16" in msg and "not written" in msg
    assert path.read_bytes() == before
    with pytest.raises(InputError, match="z_id_mean holds 3 values"):
        release_checkpoint(path, tmp_path / "r.pth.tar", prior={"z_id_mean": torch.zeros(3), "z_id_std": torch.ones(3)})
    assert not (tmp_path / "r.pth.tar").exists()
    tiny_model.prior = {"z_id_mean": torch.zeros(16), "z_id_std": torch.ones(16)}
    assert load_model(save_checkpoint(path, tiny_model), device="cpu").prior["z_id_std"].shape == (16,)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_pipe_or_device_is_not_called_an_empty_file(tmp_path, monkeypatch, capsys):
    """`voxface inspect <(ssh host cat ckpt)` (a named pipe) and /dev/null read as 0 bytes and were
    'empty (0 bytes): the write that produced it failed': they are not regular files. Refused
    without opening them (opening a pipe with no writer would block)."""
    fifo = tmp_path / "pipe.pth.tar"
    os.mkfifo(fifo)
    for path in (fifo, Path(os.devnull)):
        with pytest.raises(CheckpointError) as ei:
            load_checkpoint(path)
        msg = one_line_naming(ei.value, path)
        assert "not a regular file" in msg and "empty" not in msg and ei.value.reason == "not-a-file"
    code, _, err = run_cli(monkeypatch, capsys, "inspect", fifo)
    assert code == 1 and "Traceback" not in err and "not a regular file" in err
