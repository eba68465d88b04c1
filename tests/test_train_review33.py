"""Review 33: evaluation, training runs and data export (resume of a finished run without its validation set,
SIGTERM during ``voxface evaluate``, temporaries a killed ``voxface data export`` left)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from voxface.train import train

from .conftest import run_cli
from .test_train import tiny


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_resuming_a_finished_run_renders_no_validation_set(tmp_path, monkeypatch, capsys) -> None:
    """``voxface train --resume`` of a finished run rendered the whole validation set (``train.num_val``
    synthetic faces, rendered up front: 4.4 s of 48 tiny ones here, minutes at the defaults) before
    saying there was nothing to train. It is still checked as any resume (the config, the data, the
    resume state), but the validation set is not built; the result is the run's as before."""
    import voxface.train
    from voxface.errors import ConfigError

    run = tmp_path / "run"
    done = train(tiny(total_steps=4, val_every=2, ckpt_every=2), run, progress=False)
    last = run / "last.pth.tar"
    capsys.readouterr()
    real = voxface.train.build_dataset

    def build_dataset(data, split, *args, **kwargs):
        assert split != "val", "validation set built for a finished run"
        return real(data, split, *args, **kwargs)

    def collate_val(*args, **kwargs):
        raise AssertionError("validation set rendered for a finished run")

    monkeypatch.setattr(voxface.train, "build_dataset", build_dataset)
    monkeypatch.setattr(voxface.train, "_collate_val", collate_val)
    res = train(None, resume=last, progress=False)
    assert (res.steps, res.steps_run, res.interrupted) == (4, 0, False)
    assert (res.best_val_iou, res.best_step, res.final_val_iou, res.final_loss, res.mean_shape_iou) == (
        done.best_val_iou, done.best_step, done.final_val_iou, done.final_loss, done.mean_shape_iou)
    assert "its run finished at step 4" in capsys.readouterr().err
    code, out, err = run_cli(monkeypatch, capsys, "train", "--resume", last, "--no-progress")
    assert code == 0 and out.startswith(f"step 4: best val IoU {done.best_val_iou:.4f}"), err
    # still checked as a resume: a config that is not the run's is refused
    with pytest.raises(ConfigError, match=r"differs from the run"):
        train(tiny(total_steps=4, val_every=2, ckpt_every=2, lr=0.1), run, resume=last, progress=False)


def test_an_export_removes_the_temporaries_a_killed_export_left(tmp_path, toy_root) -> None:
    """``voxface data export`` killed mid-write (SIGKILL, a pre-empted job) left its hidden temporary
    (``.000006.png.<8 hex>.tmp``) in the folder for good: the re-run rewrote the sample and left it. An
    export now removes the temporaries of its files untouched for mesh.STALE_TEMPORARY_S, before and
    after its samples; a fresh one (another export may be filling it) and other files stay."""
    import os
    import time

    from voxface.data.export import export_samples
    from voxface.mesh import STALE_TEMPORARY_S

    out = tmp_path / "exp"
    assert export_samples(out, 1, resolution=16, points=10, ict_root=str(toy_root), progress=False) == 1
    old = time.time() - STALE_TEMPORARY_S - 60
    stale = [".000001.png.0123abcd.tmp", ".000000.ply.89abcdef.tmp", ".1000000.npz.00000000.tmp",
             ".000002.json.0123abcd.tmp", "..export.json.deadbeef.tmp"]
    kept = [".notes.png.0123abcd.tmp", "000003.png.0123abcd.tmp", ".000004.png.tmp", ".000004.obj.0123abcd.tmp"]
    for name in stale + kept:
        (out / name).write_bytes(b"partial")
        os.utime(out / name, (old, old))
    fresh = out / ".000005.npz.fedcba98.tmp"  # a live export's, as far as anyone can tell
    fresh.write_bytes(b"partial")
    assert export_samples(out, 1, resolution=16, points=10, ict_root=str(toy_root), progress=False) == 0
    names = {p.name for p in out.iterdir()}
    assert not names & set(stale) and set(kept) | {fresh.name} <= names, sorted(names)
    assert {"000000.png", "000000.ply", "000000.npz", "000000.json"} <= names


@pytest.fixture(scope="module")
def eval_checkpoint(tmp_path_factory) -> Path:
    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ck")
    return save_checkpoint(d / "m.pth.tar", create_model(SMALL_CONFIG).eval(),
                           extra={"run_config": {"data": {"kind": "synthetic", "seed": 2000013}}})


def test_sigterm_stops_evaluate_as_ctrl_c_does(eval_checkpoint, toy_root, tmp_path, monkeypatch, capsys) -> None:
    """SIGTERM (``timeout``, a job scheduler's limit) killed ``voxface evaluate`` without a word, leaving the
    folders it had made for the report and the plots. It now stops between samples as Ctrl-C does (the
    sample being scored is finished, not broken off inside C code): one line, exit 143, nothing left;
    during the plots, the line says the report is written."""
    import os
    import signal

    import voxface.evaluate as ev

    scored: list[int] = []
    real = ev.surface_scores

    def surface_scores(*args, **kwargs):  # the signal lands inside the first sample's scoring
        scored.append(1)
        if len(scored) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    def save_plots(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return []

    def unhandled(signum, frame):  # a SIGTERM the command leaves alone: a failure, not the end of pytest
        raise AssertionError("SIGTERM reached the process's own handler")

    report, plots = tmp_path / "out" / "r.json", tmp_path / "plots"
    args = ("evaluate", "-c", eval_checkpoint, "--num", 8, "--points", 1000, "--ict-root", toy_root,
            "--device", "cpu", "--report", report, "--plots", plots)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        monkeypatch.setattr(ev, "surface_scores", surface_scores)
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 143, err
        assert err.rstrip().splitlines()[-1].split("\r")[-1] == f"error: terminated; no report written to {report}"
        assert len(scored) == 2  # the first sample's model and baseline, then stopped before the second
        assert not (tmp_path / "out").exists() and not plots.exists()
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
        monkeypatch.setattr(ev, "surface_scores", real)
        monkeypatch.setattr(ev, "save_plots", save_plots)
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 143 and json.loads(report.read_text())["num"] == 8, err
        assert err.rstrip().splitlines()[-1] == (f"error: terminated; the report is written to {report}, not all "
                                                 f"the plots in {plots}"), err
    finally:
        signal.signal(signal.SIGTERM, before)


def test_evaluate_leaves_a_default_sigterm_alone_and_defers_a_handled_one() -> None:
    """The API (no handler of voxface's): SIGTERM keeps its default action during evaluate(). With a
    Python handler (the CLI's), the handler runs at the scoring loop's next check, between samples."""
    import signal

    from voxface.evaluate import _DeferSigint

    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with _DeferSigint():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        seen: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
        with _DeferSigint() as stop:
            signal.raise_signal(signal.SIGTERM)
            assert seen == []
            stop.check()
            assert seen == [signal.SIGTERM]
            stop.check()  # once
            assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_stops_data_export_as_ctrl_c_does(tmp_path, toy_root, monkeypatch, capsys) -> None:
    """SIGTERM killed ``voxface data export`` without a word, leaving a half-written sample (000001.png and
    .ply, no .json), which check-folder and training then refused ('no pose for this crop'), and no
    .export.json. It is now cleaned up as Ctrl-C is: the half-written sample removed, the settings
    recorded, one line saying how to go on, exit 143."""
    import os
    import signal

    import voxface.mesh

    real = voxface.mesh.export_mesh
    meshes: list[Path] = []

    def export_mesh(mesh, path, *args, **kwargs):  # the signal lands while the second sample is written
        meshes.append(Path(path))
        if len(meshes) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(mesh, path, *args, **kwargs)

    def unhandled(signum, frame):  # a SIGTERM the command leaves alone: a failure, not the end of pytest
        raise AssertionError("SIGTERM reached the process's own handler")

    out = tmp_path / "exp"
    monkeypatch.setattr(voxface.mesh, "export_mesh", export_mesh)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        code, _, err = run_cli(monkeypatch, capsys, "data", "export", "-n", 4, "-o", out, "--resolution", 32,
                               "--points", 10, "--ict-root", toy_root)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # put back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 143, err
    assert err.rstrip().splitlines()[-1].split("\r")[-1] == (
        f"error: terminated; the complete samples in {out} are kept: run the same command again to go on"), err
    assert sorted(p.name for p in out.iterdir()) == [".export.json", "000000.json", "000000.npz", "000000.ply",
                                                     "000000.png"]
