"""Defects the lead found in session 38, each with the test that failed before its fix."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


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
