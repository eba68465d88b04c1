"""The notebooks in notebooks/ run top to bottom (nbclient, a python3 kernel of this interpreter).

Run with ``VOXFACE_NOTEBOOK_FAST=1`` (shorter training, fewer frames). Without the bundled weights
the notebooks fall back to a toy model in ``VOXFACE_NOTEBOOK_RUN``; the tests put there the toy
checkpoint the other tests train (same settings as the notebooks' fast fallback), so it is trained
once per session. With the bundled weights installed the notebooks use those.
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
                # the public API only (no private names from voxface modules)
                assert not re.search(r"voxface(\.\w+)*\._[a-z]", cell.source), f"{path.name}: a private name"
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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, notebook_env, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    for k, v in notebook_env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError with the traceback on the first failing cell
    kinds = set()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            kinds.update(out.get("data", {}))
    assert "image/png" in kinds, f"{path.name} shows no picture"
    if path.stem in ("01_reconstruct_a_photo", "02_latent_interpolation"):
        assert "application/vnd.plotly.v1+json" in kinds or "text/html" in kinds, "no interactive 3D view"
    out = Path(notebook_env["VOXFACE_NOTEBOOK_OUT"]) / path.stem[:2]
    assert out.is_dir() and any(out.iterdir()), f"{path.name} wrote no files into {out}"
