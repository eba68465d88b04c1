"""Training review 36: regressions for the defects found in voxface/train.py and its neighbours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from voxface.checkpoint import load_checkpoint

_PEAK = "peak = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\n"


def test_carrying_the_best_checkpoint_into_a_new_folder_holds_no_tensor_data(tmp_path: Path) -> None:
    """A run resumed into another folder carries the source's best.pth.tar when it is the run's best: it
    was loaded whole onto the CPU to read its step, then read whole again as bytes for the copy (95 MB more
    at peak for a 96 MB file, 4 MB now). The step is read without tensor data and the file copied a MiB
    at a time; the copy is the same bytes, and a best of another step is not copied."""
    best = tmp_path / "a" / "best.pth.tar"
    best.parent.mkdir()
    torch.save({"step": 7, "state_dict": {f"w{i}": torch.full((4_000_000,), float(i)) for i in range(6)}}, best)
    probe = ("import re, sys, types\nfrom pathlib import Path\nfrom voxface.train import _Run\n" + _PEAK +
             "run = types.SimpleNamespace(best_step=int(sys.argv[3]), paths={'best': Path(sys.argv[2])})\n"
             "before = peak()\n_Run._carry_best(run, Path(sys.argv[1]))\nprint((peak() - before) // 1024)\n")
    dst = tmp_path / "b" / "best.pth.tar"
    out = subprocess.run([sys.executable, "-c", probe, str(best), str(dst), "7"],
                         capture_output=True, text=True, check=True).stdout
    assert int(out) < 40, f"{out.strip()} MB more at peak"  # 95 MB before
    assert dst.read_bytes() == best.read_bytes()
    assert load_checkpoint(dst)["state_dict"]["w5"][0] == 5.0
    other = tmp_path / "c" / "best.pth.tar"
    subprocess.run([sys.executable, "-c", probe, str(best), str(other), "6"], capture_output=True, check=True)
    assert not other.exists() and not other.parent.exists()


_TINY_YAML = """\
model:
  encoder: {image_size: 32, widths: [8, 16, 32], blocks: [1, 1, 1], z_id: 8, z_exp: 4}
  decoder: {resolution: 16, widths: [32, 16]}
  frame: {side_mm: 300.0, center_mm: [0.0, -10.0, 20.0]}
data: {kind: toy, num_train: 64, num_val: 16, cache: true}
train: {batch_size: 8, lr: 0.003, total_steps: 4, warmup_steps: 1, val_every: 0, ckpt_every: 0, log_every: 1,
        num_val: 16, prior_samples: 32, threads: 1}
"""


@pytest.mark.skipif(not (Path(sys.executable).parent / "torchrun").exists(), reason="torchrun not installed")
def test_a_loss_one_ddp_rank_cannot_compute_stops_every_rank_in_one_line(tmp_path: Path) -> None:
    """Under torchrun each rank checked its own loss: a NaN on rank 1 only (a batch only it reads) raised
    the divergence error there, and rank 0 went on into backward's all-reduce and died in gloo's traceback
    ('Connection closed by peer ... This is typically caused by a remote worker crashing'). The logged terms
    are averaged over ranks before the update (as they were after it), so every rank says the one line."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(
        "import os\nimport voxface.train as vt\nreal, calls = vt.compute_losses, [0]\n"
        "def nan_at_step_2(*args, **kwargs):\n    total, terms = real(*args, **kwargs)\n    calls[0] += 1\n"
        "    if calls[0] == 2 and os.environ['RANK'] == '1':\n        terms['total'] = float('nan')\n"
        "    return total, terms\nvt.compute_losses = nan_at_step_2\nvt.main()\n")
    (tmp_path / "c.yaml").write_text(_TINY_YAML)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", str(script),
           "--config", "c.yaml", "--out", "run", "--no-progress", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert r.returncode != 0
    said = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert said == ["error: training diverged: the loss is nan at step 2 (a resume repeats the same steps and "
                    "diverges again: lower train.lr and start again (--overwrite), or start a new run from "
                    "run/last.pth.tar (train.init_from) with a lower train.lr)"] * 2, r.stderr[-3000:]
    assert "Connection closed" not in r.stderr and "[rank0]: Traceback" not in r.stderr, r.stderr[-3000:]


def test_voxface_train_draws_its_progress_bar_only_on_a_terminal(tmp_path: Path, monkeypatch, capsys) -> None:
    """``voxface train ... 2>log`` (a job: hours of steps) wrote a carriage-return bar update into the log at
    every step, where reconstruct, evaluate, sample, the data commands and export-onnx draw bars only on a
    terminal. A log gets the summary alone; a terminal gets the bar as before."""
    from .conftest import run_cli

    (tmp_path / "c.yaml").write_text(_TINY_YAML)
    args = ("train", "-c", tmp_path / "c.yaml", "--steps", 2, "--device", "cpu")
    code, out, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "log")
    assert code == 0, err
    assert "train:" not in err and "\r" not in err, err  # captured: not a terminal
    assert out.startswith("step 2: best val IoU"), out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "tty")
    assert code == 0 and "train:" in err and "2/2" in err, err
    code, out, err = run_cli(monkeypatch, capsys, *args, "-o", tmp_path / "quiet", "--no-progress")
    assert code == 0 and "train:" not in err, err


def test_weights_a_step_made_nan_are_refused_before_last_pth_tar_is_written_over(tmp_path: Path, monkeypatch) -> None:
    """A step whose loss was finite but whose gradients were not (no fp16 scaler to skip it) made the weights
    NaN; at a checkpoint step last.pth.tar was written with them over the run's last good one, and the next
    step's 'the loss is nan' told the user to resume from that file. The run stops at that step in one line,
    before anything validates or writes the weights: last.pth.tar is the earlier step's, finite."""
    import yaml

    import voxface.train as vt
    from voxface.errors import VoxfaceError

    cfg = yaml.safe_load(_TINY_YAML)
    cfg["train"].update(total_steps=8, ckpt_every=2, val_every=2)
    real, calls = vt.compute_losses, [0]

    def nan_gradients_at_step_4(outs, *args, **kwargs):
        total, terms = real(outs, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 4:  # sqrt's gradient at 0 is infinite: a finite loss, NaN gradients
            logits = next(v for v in outs.values() if torch.is_tensor(v) and v.requires_grad)
            total = total + (logits * 0).abs().sqrt().sum()
        return total, terms

    monkeypatch.setattr(vt, "compute_losses", nan_gradients_at_step_4)
    out = tmp_path / "run"
    with pytest.raises(VoxfaceError, match=r"diverged: the weights are not finite after step 4 \(model\.\S+: the "
                                           r"step's update was not, though its loss was; \S+last\.pth\.tar was "
                                           r"written before this step and is left as it was\); a resume repeats the "
                                           r"same steps and diverges again: lower train\.lr"):
        vt.train(cfg, out, device="cpu", progress=False)
    ck = load_checkpoint(out / "last.pth.tar")
    assert ck["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())
    assert load_checkpoint(out / "best.pth.tar")["step"] == 2
    monkeypatch.setattr(vt, "compute_losses", real)
    calls[0] = 0
    res = vt.train(None, out, resume=out / "last.pth.tar", device="cpu", progress=False)  # goes on from step 2
    assert res.steps == 8 and not res.interrupted
