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


def test_python_m_voxface_is_the_command():
    """``python -m voxface`` runs the CLI (where the console script is not on PATH), as light."""
    code = ("import runpy, sys\nsys.argv = ['voxface', '--help']\n"
            "try:\n    runpy.run_module('voxface', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\nprint('TORCH', 'torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "reconstruct" in r.stdout and "TORCH False" in r.stdout
    r = subprocess.run([sys.executable, "-m", "voxface", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("voxface "), r.stderr


@pytest.mark.parametrize("cmd", ["bench", "export-onnx", "refine-train"])
def test_command_help_stays_light(cmd):
    res = _probe([cmd, "--help"])
    assert res["code"] == 0 and "Usage" in res["out"]
    assert not res["help"]["torch"] and not res["help"]["open3d"], res["help"]


_EVERY_HELP = """
import sys, json, io, contextlib
import typer.main
import voxface.cli
group = typer.main.get_command(voxface.cli.app)
names = []
for n, c in group.commands.items():
    names += [[n, s] for s in c.commands] if hasattr(c, "commands") else [[n]]
heavy = {}
for args in names:
    sys.argv = ["voxface", *args, "--help"]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            voxface.cli.main()
    except SystemExit as e:
        assert not e.code, (args, e.code)
    assert "Usage" in buf.getvalue(), args
    heavy[" ".join(args)] = [m for m in %(heavy)r if m in sys.modules]
print(json.dumps(heavy))
"""


def test_every_command_help_stays_light():
    """``voxface COMMAND --help`` of every command, sub-commands of ``data`` too (the test above
    names three): none imports torch, open3d, onnxruntime or trimesh."""
    r = subprocess.run([sys.executable, "-c", _EVERY_HELP % {"heavy": HEAVY}], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    heavy = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(heavy) >= 19 and "data check-folder" in heavy and "reconstruct" in heavy
    assert not any(heavy.values()), {k: v for k, v in heavy.items() if v}


def test_every_public_name_resolves():
    """``voxface.__all__`` is the public API: each name imports (lazily) to a real object."""
    import voxface

    for name in voxface.__all__:
        obj = getattr(voxface, name)
        assert obj is not None, name
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__, f"voxface.{name} has no docstring"


def test_submodules_are_attributes_of_the_package_without_importing_them():
    """``voxface.device.keep_freed_memory()`` (README) and ``voxface.latent.sample`` work after a
    plain ``import voxface``, as after ``import voxface.device``; tab completion lists them; and
    the lookup imports the module only then (torch stays out of ``import voxface``)."""
    code = ("import sys, voxface; assert 'voxface.latent' not in sys.modules; "
            "assert {'device', 'latent', 'viz', 'metrics'} <= set(dir(voxface)); "
            "f = voxface.device.keep_freed_memory; g = voxface.latent.sample; "
            "assert 'torch' not in sys.modules; print(f.__module__, g.__module__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["voxface.device", "voxface.latent"]


_FAULTS = """
import resource, sys
import numpy as np
from voxface.device import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
def batch():  # a batch's activations: three 20 MB blocks alive together, then freed
    blocks = [np.ones(20 << 17) for _ in range(3)]
    del blocks
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
from voxface.device import release_freed_memory
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096  # noqa: E731
held = rss()
released = release_freed_memory()
print(applied, faults, released, (held - rss()) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_keep_freed_memory_stops_the_page_faults_of_repeated_batches_and_release_hands_it_back():
    """keep_freed_memory (what the voxface command sets) keeps freed blocks mapped, so the next
    batch's allocations fault no page in; by default glibc hands back what is freed at the top of
    its heap past its (dynamic) trim threshold, and 10 such batches fault ~10,000 pages in again."""
    import os

    def faults(mode: str) -> tuple[str, int, str, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        applied, n, released, freed_mb = out.stdout.split()
        return applied, int(n), released, int(freed_mb)

    if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        pytest.skip("not glibc")
    applied, tuned, released, freed_mb = faults("tuned")
    _, plain, _, _ = faults("plain")
    assert applied == "True"
    assert tuned < 500, tuned
    assert plain > 5000, plain
    # what keep_freed_memory holds (the batch's 60 MB), release_freed_memory hands back
    assert released == "True" and freed_mb > 40, freed_mb


def test_resolve_device_refuses_unknown_and_missing_devices(tmp_path, monkeypatch, capsys):
    import torch

    from voxface.device import resolve_device
    from voxface.errors import VoxfaceError

    from .conftest import run_cli

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad, words in [("tpu", "unknown device 'tpu'"), ("xla", "runs on cpu, cuda or mps"),
                       (f"cuda:{torch.cuda.device_count() + 3}", "was asked for but")]:
        with pytest.raises(VoxfaceError, match=words):
            resolve_device(bad)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", "4", "--report", tmp_path / "r.json",
                           "--device", "tpu")
    assert code == 1 and err.strip() == "error: unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"
