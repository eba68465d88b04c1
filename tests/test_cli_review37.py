"""Review 37, the command line as a user meets it: bad input, logs, interrupted runs."""

from __future__ import annotations

import json

import pytest

from .conftest import SMALL_CONFIG, TOY_DATA, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _checkpoint(path):
    import torch

    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    torch.manual_seed(0)
    return save_checkpoint(path, create_model(SMALL_CONFIG).eval(), extra={"run_config": {"data": TOY_DATA}})


def test_refine_train_draws_no_progress_bar_into_a_log_and_logs_json_lines_there(tmp_path, monkeypatch, capsys):
    """``voxface refine-train ... 2>log`` (a job: thousands of steps) drew its bar into the log, a
    carriage-return update at every step, and the log got none of the JSON lines that --no-progress
    prints, where train, evaluate and the data commands draw bars only on a terminal. Off a terminal
    (capsys) it logs what --no-progress logs: a JSON line every 25 steps and the validation's."""
    src = _checkpoint(tmp_path / "src.pth.tar")
    out = tmp_path / "out.pth.tar"
    code, stdout, err = run_cli(monkeypatch, capsys, "refine-train", "-c", src, "-o", out, "--steps", "2",
                                "--batch-size", "2", "--points", "16", "--resolution", "32", "--num-val", "1")
    assert code == 0, err
    assert "\r" not in err and "refine-train:" not in err, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records if "step" in r] == [2], err  # the last step is logged
    assert [r["event"] for r in records if "event" in r] == ["val"], err
    assert json.loads(stdout.strip().splitlines()[-1])["checkpoint"] == str(out)
