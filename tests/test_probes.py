"""benchmarks/readout_probe.py (ridge probes of the encoder's frozen features) and
benchmarks/code_length.py (how literally the decoder reads short identity codes)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from .test_data import needs_ict

ROOT = Path(__file__).resolve().parents[1]


def _probe():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import readout_probe
    finally:
        sys.path.pop(0)
    return readout_probe


def test_ridge_recovers_a_linear_map_and_shrinks_noise_outputs() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 20)) * rng.uniform(0.5, 3.0, 20) + 5.0  # unstandardised on purpose
    w = rng.normal(size=(20, 2))
    y = np.concatenate([x @ w + 0.01 * rng.normal(size=(600, 2)), rng.normal(size=(600, 1))], 1)
    x_eval = rng.normal(size=(50, 20)) * x.std(0) + 5.0
    pred, alphas = _probe().ridge(x, y, x_eval, held_out=100)
    assert pred.shape == (50, 3) and alphas.shape == (3,)
    np.testing.assert_allclose(pred[:, :2], x_eval @ w, atol=0.05)
    # the noise column: the strongest shrinkage wins, and its predictions sit near its mean
    assert alphas[2] > alphas[:2].max()
    assert np.abs(pred[:, 2] - y[:, 2].mean()).max() < 0.2


@needs_ict
def test_probe_table_brackets_the_readers() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readout_probe.py"), "--num-train", "64",
                          "--num", "8"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    num, pct = r"([\d.]+)", r"-?\d+%"
    rows = {m[0].strip(): tuple(map(float, m[1:])) for m in re.findall(
        rf"^\| ([^|]+) \| (?:\d+|-) \| {num} \| {pct} \| {num} \| {pct} \| {num} \| {pct} \|$", out, re.M)}
    assert len(rows) == 11, out
    err, exact, decoded = zip(*rows.values())
    assert 0.5 < rows["mean identity"][0] < 2.0  # about 1: the weights are normalised to mean 1
    assert rows["true coefficients x 1"][:2] == (0.0, 1.0)  # no error; the exact head is the truth
    assert rows["true coefficients x 1"][2] > rows["mean identity"][2] + 0.05
    # the exact head follows the scaled coefficients monotonically, towards the truth
    scaled = [rows[f"true coefficients x {k}"] for k in ("0.25", "0.5", "0.75", "1")]
    assert all(a[0] > b[0] and a[1] < b[1] for a, b in zip(scaled, scaled[1:]))
    assert all(0.0 < v <= 1.0 for v in exact + decoded)


@needs_ict
def test_code_length_table_shows_slerp_keeps_the_length() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "code_length.py"), "--num", "4"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {m[0].strip(): (float(m[1]), float(m[2]), None if m[3] == "-" else float(m[3])) for m in
            re.findall(r"^\| ([^|]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+|-) \|$", out, re.M)}
    assert len(rows) == 8, out
    length = rows["a person's code"][0]
    assert 7.0 < length < 13.0  # 100 modes of unit variance
    for t in ("0.25", "0.5"):
        assert abs(rows[f"slerp towards another person, t = {t}"][0] - length) < 1.0
        assert rows[f"lerp towards another person, t = {t}"][0] < length - 1.0
    assert rows["a person's code"][1] > 0.9  # the decoder on codes like its training codes
    half = rows["a person's code x 0.5"]
    assert abs(half[0] - length / 2) < 1e-3 and 0.0 < half[1] <= 1.0 and 0.0 < half[2] <= 1.0
