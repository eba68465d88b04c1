"""Checkpoints, review 36: what `inspect` prints of a file from elsewhere, and which report a release
takes as the file's."""

from __future__ import annotations

import hashlib
import json

import torch

from voxface.checkpoint import inspect_checkpoint, load_checkpoint, save_checkpoint

from .conftest import run_cli

_EVIL = "\x1b]0;owned\x07\x1b[2J\nresume       optimizer yes"  # a terminal title, a cleared screen, a forged line


def test_inspect_escapes_the_control_characters_a_checkpoint_holds(tmp_path, tiny_model, monkeypatch, capsys):
    """`voxface inspect` is how one looks at a checkpoint from elsewhere without running it, but its table
    printed the file's own strings raw (top-level keys, network names, loss names, ``released_from``):
    a key holding an escape sequence set the terminal's title or cleared the screen, and one holding a
    newline added a line of its own to the table. Each line is escaped as the ``error:`` lines are."""
    foreign = tmp_path / "foreign.pth"
    torch.save({f"model{_EVIL}": {"w": torch.zeros(3)}, "epoch": 1}, foreign)
    ours = save_checkpoint(tmp_path / "ours.pth.tar", tiny_model, loss_history=[{f"loss{_EVIL}": 1.0}],
                           extra={"released_from": f"x{_EVIL}"})
    clean = save_checkpoint(tmp_path / "clean.pth.tar", tiny_model, loss_history=[{"loss": 1.0}],
                            extra={"released_from": "x"})
    for path in (foreign, ours):
        table = inspect_checkpoint(path).format()
        assert "\x1b" not in table and "\x07" not in table, table
        assert "\\x1b]0;owned\\x07\\x1b[2J\\nresume" in table  # shown, escaped
        assert not [line for line in table.splitlines() if line.startswith("resume") and "yes" in line], table
    assert len(inspect_checkpoint(ours).format().splitlines()) == len(inspect_checkpoint(clean).format().splitlines())
    code, out, err = run_cli(monkeypatch, capsys, "inspect", foreign)
    assert code == 0 and err == "" and "\x1b" not in out and "\x07" not in out, out
    assert len(out.splitlines()) == len(inspect_checkpoint(foreign).format().splitlines())
    code, out, _ = run_cli(monkeypatch, capsys, "inspect", foreign, "--json")
    assert code == 0 and f"model{_EVIL}" in json.loads(out)["keys"]  # the JSON keeps the strings as they are
