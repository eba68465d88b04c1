"""The notebooks in notebooks/ run top to bottom (nbclient, a python3 kernel of this interpreter).

Run with ``VOXFACE_NOTEBOOK_FAST=1`` (shorter training, fewer frames). Without the bundled weights
the notebooks fall back to a toy model in ``VOXFACE_NOTEBOOK_RUN``; the tests put there the toy
checkpoint the other tests train (same settings as the notebooks' fast fallback), so it is trained
once per session. With the bundled weights installed the notebooks use those; one test hides them
to run the fallback.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from .test_latent import trained_toy_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
EXPECTED = [
    "01_reconstruct_a_photo",
    "02_latent_interpolation",
    "03_expression_transfer_and_sampling",
    "04_train_a_small_model",
    "05_inspect_a_checkpoint",
]


def _public(module: str, name: str) -> bool:
    """Whether ``module.name`` is public API: in the module's ``__all__`` (where it has one; for the
    package, its lazy names and submodules) and not underscored. Dunders (``__file__``) pass."""
    import importlib

    if name.startswith("__") and name.endswith("__"):
        return True
    mod = importlib.import_module(module)
    if module == "voxface":
        return name in dir(mod)
    return not name.startswith("_") and name in getattr(mod, "__all__", [name])


def private_names(source: str) -> list[str]:
    """The voxface names a notebook cell uses that are not public API (:func:`_public`).

    Follows ``import voxface``, ``from voxface import latent``, ``from voxface.x import y`` and
    dotted access on names bound to voxface modules (``voxface.train.train``, ``latent.sample``);
    any other underscored attribute (``model._x``) counts too.
    """
    import ast
    import importlib
    import types

    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    modules: dict[str, str] = {}  # local name -> voxface module it is bound to
    bad: list[str] = []

    def bind(local: str, module: str, name: str) -> None:
        full = f"{module}.{name}"
        try:
            if isinstance(importlib.import_module(full), types.ModuleType):
                modules[local] = full
        except ImportError:
            pass

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "voxface":
                    parts = a.name.split(".")
                    bad += [a.name for i in range(1, len(parts)) if not _public(".".join(parts[:i]), parts[i])]
                    modules[a.asname or "voxface"] = a.name if a.asname else "voxface"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "voxface":
            parts = node.module.split(".")
            bad += [node.module for i in range(1, len(parts)) if not _public(".".join(parts[:i]), parts[i])]
            for a in node.names:
                if not _public(node.module, a.name):
                    bad.append(f"{node.module}.{a.name}")
                bind(a.asname or a.name, node.module, a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                module = modules[base.id]
                for name in chain:
                    if not _public(module, name):
                        bad.append(f"{module}.{name}")
                        break
                    try:
                        mod = importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        break
                    module = mod.__name__
            elif node.attr.startswith("_") and not node.attr.endswith("__"):
                bad.append(f".{node.attr}")
    return sorted(set(bad))


def test_private_names_finds_what_the_notebooks_must_not_use():
    """The public-API check itself: it finds private names however they are reached."""
    ok = "import voxface\nfrom voxface import latent, viz\nfrom voxface.train import train\n" \
         "voxface.load_model(); latent.sample(m, 1); viz.render_mesh(x); voxface.train.train; voxface.__file__"
    assert private_names(ok) == []
    assert private_names("from voxface.latent import _integer") == ["voxface.latent._integer"]
    assert private_names("from voxface import latent\nlatent._TOY_EXP_NAMES") == ["voxface.latent._TOY_EXP_NAMES"]
    assert private_names("import voxface\nvoxface.latent._integer(1)") == ["voxface.latent._integer"]
    assert private_names("from voxface.cli._latent import save_latents") == ["voxface.cli._latent"]
    assert private_names("from voxface.latent import SMOOTH") == ["voxface.latent.SMOOTH"]  # not in __all__
    assert private_names("model._prior") == ["._prior"]


def test_all_notebooks_are_there_and_stored_without_outputs():
    import nbformat

    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"
                assert not private_names(cell.source), f"{path.name}: not the public API: {private_names(cell.source)}"
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4, f"{path.name}: explain what it shows"


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Environment for the kernels: fast mode, outputs and the toy run in temporary folders."""
    run = tmp_path_factory.mktemp("notebook-run")
    shutil.copy(trained_toy_checkpoint(tmp_path_factory), run / "best.pth.tar")
    env = {
        "VOXFACE_NOTEBOOK_FAST": "1",
        "VOXFACE_NOTEBOOK_RUN": str(run),
        "VOXFACE_NOTEBOOK_OUT": str(tmp_path_factory.mktemp("notebook-out")),
        # the kernel is this interpreter (jupyter_client maps the kernelspec's "python" to it);
        # keep its scripts first on PATH too
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    return env


#: What each notebook writes into ``VOXFACE_NOTEBOOK_OUT/<number>/`` and what it prints (the
#: claims its prose makes about the output), in fast mode.
WRITES = {
    "01": ["astronaut.ply", "astronaut.npz", "astronaut_preview.png", "astronaut_turntable.gif"],
    "02": ["astronaut.npz", "interpolation.html", "interpolation.gif"],
    "03": ["samples_by_temperature.png", "transfer_table.png", "walk.png"],
    "04": ["toy-run/best.pth.tar", "toy-run/loss.png", "eval.png"],
    "05": ["mean_face.png"],
}
PRINTS = {
    "01": ["watertight=True"],
    "02": ["all watertight: True"],
    "03": ["temperature 0 is the prior mean: True"],
}
PICTURES = {"image/png", "image/gif", "application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json"}


def execute(path: Path, env: dict[str, str], monkeypatch, first: str | None = None):
    """Run notebook ``path`` on a fresh kernel (``first``: a cell put before its own); returns the
    executed notebook and the text it printed."""
    import nbformat
    from nbclient import NotebookClient

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    if first:
        nb.cells.insert(0, nbformat.v4.new_code_cell(first))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the traceback on the first failing cell
    printed = []
    for cell in nb.cells:
        kinds = set()
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            kinds.update(out.get("data", {}))
            if out.get("output_type") == "stream":
                assert not (out["name"] == "stderr" and "Warning" in out["text"]), f"{path.name}: {out['text']}"
                printed.append(out["text"])
        if cell.cell_type == "code" and re.search(r"(^|; )(show|display|plt\.show)\(", cell.source, re.M):
            assert kinds & PICTURES, f"{path.name}: a cell meant to show a picture shows none:\n{cell.source}"
    return nb, "".join(printed)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, notebook_env, monkeypatch):
    import numpy as np
    from PIL import Image

    nb, printed = execute(path, notebook_env, monkeypatch)
    kinds = {k for cell in nb.cells for out in cell.get("outputs", []) for k in out.get("data", {})}
    assert "image/png" in kinds, f"{path.name} shows no picture"
    if path.stem in ("01_reconstruct_a_photo", "02_latent_interpolation"):
        assert "application/vnd.plotly.v1+json" in kinds or "text/html" in kinds, "no interactive 3D view"
    number = path.stem[:2]
    for claim in PRINTS.get(number, []):
        assert claim in printed, f"{path.name} does not print {claim!r}:\n{printed}"
    out = Path(notebook_env["VOXFACE_NOTEBOOK_OUT"]) / number
    for name in WRITES[number]:
        f = out / name
        assert f.is_file() and f.stat().st_size > 0, f"{path.name} did not write {f}"
        if f.suffix in (".png", ".gif"):
            with Image.open(f) as im:
                assert min(im.size) >= 64 and (f.suffix == ".png" or im.n_frames > 1), f
    if number in ("01", "02"):
        with np.load(out / "astronaut.npz") as z:
            assert {"z_id", "z_exp", "pose_rotation", "crop_box"} <= set(z.files), z.files
            # 02's face A is the .npz `voxface reconstruct` writes by default: codes and pose, no volume
            assert ("logits" in z.files) == (number == "01"), z.files


@pytest.mark.slow
def test_notebook_without_the_bundled_weights_uses_the_toy_run(notebook_env, monkeypatch, tmp_path):
    """On a machine without the bundled weights the notebooks fall back to the toy model in
    ``VOXFACE_NOTEBOOK_RUN``; 03 then takes its branches for a model whose codes are not named
    (prior samples as sources, walks along principal directions)."""
    env = {**notebook_env, "VOXFACE_NOTEBOOK_OUT": str(tmp_path)}
    path = REPO_ROOT / "notebooks" / "03_expression_transfer_and_sampling.ipynb"
    hide = "import voxface\nfrom pathlib import Path\nvoxface.DEFAULT_WEIGHTS = Path('/nonexistent/vox-cpk.pth.tar')"
    _, printed = execute(path, env, monkeypatch, first=hide)
    run = Path(notebook_env["VOXFACE_NOTEBOOK_RUN"])
    assert f"checkpoint: {run / 'best.pth.tar'}" in printed, printed
    assert "row 0: expression direction 0" in printed, printed  # the walk along principal directions
    assert all((tmp_path / "03" / name).is_file() for name in WRITES["03"]), sorted((tmp_path / "03").iterdir())


@pytest.mark.slow
def test_interrupting_the_training_stops_notebook_04_there(monkeypatch, tmp_path):
    """Interrupting the kernel during 04's training: ``train`` finishes the step, writes
    ``last.pth.tar`` and returns, so the cell ended normally, printed 'best val IoU -1.000 (step -1)'
    and Run All went on into the evaluation, which failed on the missing ``best.pth.tar``. The
    notebook now stops at the training cell, naming the checkpoint and how to resume it.
    (``stop_at`` returns from ``train`` as an interruption does, at a known step.)"""
    from nbclient.exceptions import CellExecutionError

    env = {"VOXFACE_NOTEBOOK_FAST": "1", "VOXFACE_NOTEBOOK_OUT": str(tmp_path),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    interrupt = ("import voxface.train\n_train = voxface.train.train\n"
                 "voxface.train.train = lambda *a, **k: _train(*a, **{**k, 'stop_at': 3})")
    path = REPO_ROOT / "notebooks" / "04_train_a_small_model.ipynb"
    with pytest.raises(CellExecutionError) as e:
        execute(path, env, monkeypatch, first=interrupt)
    run = tmp_path / "04" / "toy-run"
    assert "KeyboardInterrupt" in str(e.value) and "training stopped at step 3 of 40" in str(e.value), e.value
    assert f"{run / 'last.pth.tar'} written" in str(e.value) and "resume=RUN" in str(e.value)
    assert (run / "last.pth.tar").is_file() and not (tmp_path / "04" / "eval.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("number", ["04", "05"])
def test_notebooks_that_read_the_models_tensors_run_on_a_gpu(number, monkeypatch, tmp_path):
    """Where CUDA is available ``load_model`` and ``train`` put the model on the GPU: 04's evaluation
    (``model.decode(...).numpy()``) and 05's filter picture (the first convolution's weight) called
    ``.numpy()`` on CUDA tensors, a TypeError there. Runs only on a machine with CUDA."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    env = {"VOXFACE_NOTEBOOK_FAST": "1", "VOXFACE_NOTEBOOK_OUT": str(tmp_path),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    path = next(p for p in NOTEBOOKS if p.stem.startswith(number))
    _, printed = execute(path, env, monkeypatch, first="import torch\nassert torch.cuda.is_available()")
    assert all((tmp_path / number / name).is_file() for name in WRITES[number]), sorted((tmp_path / number).rglob("*"))


@pytest.mark.slow
def test_the_toy_fallback_trains_with_a_progress_bar_and_stops_when_interrupted(monkeypatch, tmp_path):
    """Without the bundled weights and before the toy run exists, the notebooks train the toy model
    for minutes: that ran without a progress bar, and an interrupted training returned, so the cell
    went on to load a ``best.pth.tar`` that was never written ('checkpoint file not found'). Now a
    bar shows (outside the tests' fast mode) and the cell stops, saying the training stopped."""
    from nbclient.exceptions import CellExecutionError

    run = tmp_path / "run"
    env = {"VOXFACE_NOTEBOOK_RUN": str(run), "VOXFACE_NOTEBOOK_OUT": str(tmp_path / "out"),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    monkeypatch.delenv("VOXFACE_NOTEBOOK_FAST", raising=False)  # the notebooks as a user runs them
    first = ("import voxface, voxface.train\nfrom pathlib import Path\n"
             "voxface.DEFAULT_WEIGHTS = Path('/nonexistent/vox-cpk.pth.tar')\n_train = voxface.train.train\n"
             "def train(*a, **k):\n    assert k.get('progress', True), 'no progress bar'\n"
             "    return _train(*a, **{**k, 'progress': False, 'stop_at': 2})  # as a kernel interrupt at step 2\n"
             "voxface.train.train = train")
    with pytest.raises(CellExecutionError) as e:
        execute(REPO_ROOT / "notebooks" / "01_reconstruct_a_photo.ipynb", env, monkeypatch, first=first)
    assert "KeyboardInterrupt" in str(e.value), e.value
    assert "the toy model's training stopped at step 2: run this cell again" in str(e.value), e.value
    assert (run / "last.pth.tar").is_file() and not (run / "best.pth.tar").exists()
    # 02, 03 and 05 fall back with the same function (run here through 01)
    import nbformat

    def get_model(path):
        source = next(c.source for c in nbformat.read(path, as_version=4).cells if "def get_model" in c.source)
        return source[source.index("def get_model"):]

    assert {get_model(p) for p in NOTEBOOKS if not p.stem.startswith("04")} == {get_model(NOTEBOOKS[0])}


@pytest.mark.slow
def test_notebook_04_leaves_a_run_that_another_trainer_is_writing(monkeypatch, tmp_path):
    """04 began with ``shutil.rmtree`` of its run folder: run again (a second kernel) while the first
    kernel still trained there, it deleted that run's files and lock and trained beside it, both
    writing one folder. ``train(overwrite=True)`` replaces an earlier run's files itself and refuses a
    folder another trainer holds, so the notebook now stops there and the other run's files stay."""
    import fcntl

    from nbclient.exceptions import CellExecutionError

    run = tmp_path / "04" / "toy-run"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text('{"event": "train", "step": 1}\n', encoding="utf-8")
    env = {"VOXFACE_NOTEBOOK_FAST": "1", "VOXFACE_NOTEBOOK_OUT": str(tmp_path),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    with open(run / ".train.lock", "a+") as lock:  # what a trainer writing the folder holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CellExecutionError) as e:
            execute(REPO_ROOT / "notebooks" / "04_train_a_small_model.ipynb", env, monkeypatch)
    assert "VoxfaceError" in str(e.value) and str(run) in str(e.value), e.value
    assert (run / "log.jsonl").read_text(encoding="utf-8") == '{"event": "train", "step": 1}\n'
