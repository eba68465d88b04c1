"""Review 36 of the synthetic training photos, their export and augmentation (voxface.data.render,
appearance, head, export, voxface.augment, ``voxface data``): defects found by running the commands as a
job runs them and by checking the renders against their own labels."""

from __future__ import annotations

import sys

import pytest


@pytest.mark.parametrize("command", ["preview", "export", "cache"])
def test_the_data_commands_draw_no_progress_bar_into_a_log(tmp_path, toy_root, cache_env, monkeypatch, capsys,
                                                           command):
    """``voxface data preview``, ``export`` and ``cache`` drew their tqdm bar whatever stderr was: an
    export or cache of tens of thousands of samples run by a job into a log file wrote a
    carriage-return bar update every 0.1 s for hours, where reconstruct, sample and export-onnx draw
    bars only on a terminal. A log gets the result line alone; a terminal still gets the bar."""
    from .conftest import run_cli

    args = {"preview": ["-n", 1, "-o", tmp_path / "p.png"],
            "export": ["-n", 1, "-o", tmp_path / "e", "--resolution", 32, "--points", 1],
            "cache": ["-o", tmp_path / "c", "-n", 4, "--num-val", 4, "--resolution", 32, "--image-size", 16,
                      "--workers", 0]}[command]
    bar = {"preview": "preview:", "export": "export:", "cache": "cache val:"}[command]
    code, out, err = run_cli(monkeypatch, capsys, "data", command, *args, "--ict-root", toy_root)
    assert code == 0, err
    assert bar not in err and "|" not in err and "\r" not in err, err  # captured: not a terminal
    assert out.startswith(("wrote", "cache ready")), out
    if command == "preview":  # the terminal's bar, once (each command takes the same switch)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        code, out, err = run_cli(monkeypatch, capsys, "data", command, *args, "--ict-root", toy_root)
        assert code == 0 and bar in err and "1/1" in err, err
