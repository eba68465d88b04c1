"""Fast start: ``import voxface`` and ``voxface --help`` (and each new command's ``--help``)
import neither torch nor open3d. Checked in fresh interpreters through ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "open3d", "onnxruntime", "trimesh")

_CODE = """
import sys, json, io, contextlib
import voxface
after_import = {m: m in sys.modules for m in %(heavy)r}
import voxface.cli
sys.argv = ['voxface'] + %(args)r
buf = io.StringIO()
code = 0
try:
    with contextlib.redirect_stdout(buf):
        voxface.cli.main()
except SystemExit as e:
    code = e.code or 0
print(json.dumps({"import": after_import, "help": {m: m in sys.modules for m in %(heavy)r},
                  "code": code, "out": buf.getvalue()}))
"""


def _probe(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-c", _CODE % {"heavy": HEAVY, "args": args}], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_and_help_stay_light():
    res = _probe(["--help"])
    assert not any(res["import"].values()), res["import"]
    assert not any(res["help"].values()), res["help"]
    assert res["code"] == 0
    for cmd in ("bench", "export-onnx", "refine-train", "reconstruct"):
        assert cmd in res["out"]


@pytest.mark.parametrize("cmd", ["bench", "export-onnx", "refine-train"])
def test_command_help_stays_light(cmd):
    res = _probe([cmd, "--help"])
    assert res["code"] == 0 and "Usage" in res["out"]
    assert not res["help"]["torch"] and not res["help"]["open3d"], res["help"]


def test_every_public_name_resolves():
    """``voxface.__all__`` is the public API: each name imports (lazily) to a real object."""
    import voxface

    for name in voxface.__all__:
        obj = getattr(voxface, name)
        assert obj is not None, name
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__, f"voxface.{name} has no docstring"
