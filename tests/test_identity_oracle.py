"""benchmarks/identity_oracle.py: what a perfect reader of the face's 2D geometry recovers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from .test_data import REAL_ICT, needs_ict

ROOT = Path(__file__).resolve().parents[1]


@needs_ict
def test_fit_recovers_the_coefficients_from_exact_projections() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from identity_oracle import fit_coefficients
    finally:
        sys.path.pop(0)
    from voxface.data.ict import SUBMESHES, load_ict
    from voxface.data.synthetic import FaceSampler

    ict = load_ict(REAL_ICT)
    fs = FaceSampler(ict, seed=9)
    a, e = fs.id_coeffs(0), fs.exp_coeffs(0)
    verts = fs.head.person(a).full_vertices(e)
    camera, cam = fs.camera(0, verts)
    idx = np.arange(*SUBMESHES["narrow_face"])[::3]
    px = camera.to_crop(cam[idx], 128)
    ah, eh = fit_coefficients(ict, idx, px, camera.rotation, cam[idx, 2], camera.box, 128, sigma=1e-3)
    # the canonical scale is per person, so the fit sees a slightly rescaled face: close, not exact
    assert np.abs(ah - a).max() < 0.05 and np.abs(eh - e).max() < 0.05


@needs_ict
def test_oracle_table_orders_the_readers() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "identity_oracle.py"), "--num", "4"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    rows = {m[0].strip(): float(m[1]) for m in re.findall(r"^\| ([^|]+) \| ([\d.]+) \| -?\d+% \|$", out, re.M)}
    face = [k for k in rows if k.startswith("1677 face vertices")]
    assert len(rows) == 13 and len(face) == 10, out
    exact = rows["1677 face vertices, 0 px"]
    assert exact > rows["mean head (baseline)"] + 0.08 and exact > rows["1677 face vertices, 4 px"]
    assert (rows["1677 face vertices, 1 px, rotation off by 3 deg, refined in the fit"]
            > rows["1677 face vertices, 1 px, rotation off by 3 deg"])
    assert 0.5 < float(re.search(r"vertices by ([\d.]+) px RMS", out)[1]) < 5.0
