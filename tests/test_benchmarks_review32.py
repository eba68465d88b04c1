"""The scripts under benchmarks/: bad arguments are argparse's one error line (not a traceback, a
KeyError after the run, or a table of nan)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(*args: object, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.mark.parametrize("script, args, words", [
    # each was a traceback (or, for pose_offaxis.py --num 1 and identity_oracle.py --num 0, a table of nan)
    ("decoder_oracle.py", ["x.pth.tar", "--num", "2"], "--num: must be at least 4"),  # was KeyError after the run
    ("decoder_oracle.py", ["x.pth.tar", "--batch", "0"], "--batch: must be at least 1, not 0"),
    ("decoder_oracle.py", ["x.pth.tar", "--scales", "0,half"], "'half' in '0,half' is not a number"),
    ("decoder_oracle.py", ["x.pth.tar", "--scales", ","], "lists no values"),
    ("mirror_tta.py", ["--num", "0"], "--num: must be at least 1 (faces), not 0"),
    ("jitter_tta.py", ["--num", "-1"], "--num: must be at least 1"),
    ("pose_offaxis.py", ["--num", "1"], "--num: must be at least 2"),
    ("error_regions.py", ["--num", "0"], "--num: must be at least 1"),
    ("code_length.py", ["--num", "0"], "--num: must be at least 1 (pairs)"),
    ("identity_oracle.py", ["--step", "0"], "--step: must be at least 1"),
    ("identity_oracle.py", ["--num", "0"], "--num: must be at least 1"),
    ("readout_probe.py", ["--num-train", "3"], "--num-train: must be at least 4"),
    ("readout_probe.py", ["--num", "0"], "--num: must be at least 1"),
])
def test_bad_arguments_are_one_usage_error(script: str, args: list[str], words: str) -> None:
    r = _run(BENCH / script, *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: argument ") and words in last, r.stderr
