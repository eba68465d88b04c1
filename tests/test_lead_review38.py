"""Defects the lead found in session 38, each with the test that failed before its fix."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from .test_reconstruct_review33 import face_png, tiny_model  # noqa: F401 - the same module fixtures


def test_sigterm_stops_any_command_as_ctrl_c_does(tmp_path: Path) -> None:
    """`voxface demo` (and any command without a handler of its own: checkpoint release, bench, data
    preview) died of SIGTERM by the default action: no word, and the half-written outputs stayed.
    The root group stops every command as Ctrl-C does: its cleanup runs, one ``terminated`` line,
    exit 143. The signal comes while the demo writes its first file."""
    out = tmp_path / "demo"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import voxface.viz
        from voxface.cli import main

        real = voxface.viz.save_png

        def save_png(*args, **kwargs):
            real(*args, **kwargs)  # the photo is on disk: the demo's cleanup must remove it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here

        voxface.viz.save_png = save_png
        sys.argv = ["voxface", "demo", "-o", {str(out)!r}, "--device", "cpu"]
        main()
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "terminated" and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()  # the folder the demo made, with the photo it wrote, is removed again


def test_ctrl_c_still_says_interrupted(tmp_path: Path) -> None:
    """The root group's SIGTERM handling leaves Ctrl-C as it was: ``interrupted``, exit 130."""
    script = textwrap.dedent(f"""
        import sys
        import voxface.checkpoint
        from voxface.cli import main

        def load_model(*args, **kwargs):
            raise KeyboardInterrupt

        voxface.checkpoint.load_model = load_model
        sys.argv = ["voxface", "demo", "-o", {str(tmp_path / 'demo')!r}, "--device", "cpu"]
        main()
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in proc.stderr


def test_skip_existing_remakes_a_photo_replaced_in_place(tiny_model, face_png, tmp_path) -> None:
    """--skip-existing skipped a photo replaced in place since its mesh was made (a bad crop fixed,
    a photo re-exported): its old mesh and codes stayed, another face's. An input newer than its mesh
    whose bytes differ from those summary.json recorded is made again, with a warning; one merely
    touched (same bytes) is still skipped, and an untouched one is not even read."""
    import json
    import os
    import warnings

    import numpy as np
    import pytest
    from PIL import Image, ImageOps

    from voxface.reconstruct import reconstruct_files

    photos = tmp_path / "in"
    photos.mkdir()
    for name in ("x.png", "y.png", "z.png"):
        (photos / name).write_bytes(face_png.read_bytes())
    out = tmp_path / "out"
    kw = dict(detect=False, progress=False, workers=1, latents=True)
    first = reconstruct_files(tiny_model, photos, out, **kw)
    assert len(first.ok) == 3
    z_before = np.load(out / "x.npz")["z_id"]
    later = os.stat(out / "x.ply").st_mtime_ns + 10**9
    with Image.open(face_png) as im:
        ImageOps.mirror(im).save(photos / "x.png")  # replaced: another photo under the same name
    os.utime(photos / "x.png", ns=(later, later))
    os.utime(photos / "y.png", ns=(later, later))  # touched: the same bytes
    with pytest.warns(UserWarning, match=r"x\.png: its bytes changed since an earlier run made its outputs"):
        again = reconstruct_files(tiny_model, photos, out, skip_existing=True, **kw)
    assert list(again.ok) == [str(photos / "x.png")] and not again.failed
    assert sorted(again.skipped) == [str(photos / "y.png"), str(photos / "z.png")]
    assert not np.allclose(np.load(out / "x.npz")["z_id"], z_before, atol=1e-4)  # the new photo's codes
    digests = json.loads((out / "summary.json").read_text())["digests"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a third run: everything is done, nothing to say
        third = reconstruct_files(tiny_model, photos, out, skip_existing=True, **kw)
    assert not third.ok and len(third.skipped) == 3
    assert json.loads((out / "summary.json").read_text())["digests"] == digests


def test_a_short_runs_loss_curve_is_drawn_at_full_strength(tmp_path: Path) -> None:
    """Under 100 logged steps no running mean is drawn, and the only loss line was the raw one at a
    quarter opacity: a smoke run's loss.png showed a curve barely darker than the grid. Without a
    mean the raw line is drawn at full strength; with one (100 steps and more) as before."""
    import numpy as np
    from PIL import Image

    from voxface.train import _plot

    def blue_pixels(n: int) -> int:
        history = [{"step": float(i), "total": 1.0 / (1 + i)} for i in range(n)]
        _plot(tmp_path / "loss.png", history, [[float(n - 1), 0.8]], 0.7)
        rgb = np.asarray(Image.open(tmp_path / "loss.png").convert("RGB")).astype(int)
        return int((np.abs(rgb - np.array([31, 119, 180])).sum(axis=-1) < 40).sum())  # matplotlib's tab:blue

    assert blue_pixels(60) > 300  # the curve itself, not a pale trace
    assert blue_pixels(200) > 300  # the running mean, unchanged
