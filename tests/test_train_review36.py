"""Training review 36: regressions for the defects found in voxface/train.py and its neighbours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
