"""Shared fixtures: a tiny model configuration (fast on a 2-core CPU) and paths."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: The tiny model of ``configs/tiny.yaml``: 64x64 crops, 32^3 logits, about 0.18M parameters.
TINY_CONFIG: dict[str, Any] = {
    "encoder": {"image_size": 64, "widths": [8, 16], "blocks": [1, 1], "z_id": 16, "z_exp": 8},
    "decoder": {"resolution": 32, "widths": [32, 16, 8]},
}

#: A small model for refinement and evaluation tests: 32 px crops, 16^3 logits, 8^3 features.
SMALL_CONFIG: dict[str, Any] = {
    "encoder": {"image_size": 32, "widths": [8, 16, 32], "blocks": [1, 1, 1], "z_id": 8, "z_exp": 4},
    "decoder": {"resolution": 16, "widths": [32, 16]},
    "frame": {"side_mm": 300.0, "center_mm": [0.0, -10.0, 20.0]},
}

#: A toy dataset section (:mod:`voxface.data.toy`) small enough for a few training steps.
TOY_DATA: dict[str, Any] = {"kind": "toy", "num_train": 16, "num_val": 8, "seed": 0}


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (small models are faster so), the count restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def repo_root() -> Path:
    """The repository root (holds ``configs/``, ``voxface/``, ``tests/``)."""
    return REPO_ROOT


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    """A fresh copy of the tiny model's config dict (the ``model:`` section of configs/tiny.yaml)."""
    return copy.deepcopy(TINY_CONFIG)


@pytest.fixture
def tiny_yaml() -> Path:
    """``configs/tiny.yaml``: a YAML file whose ``model:`` section is :data:`TINY_CONFIG`."""
    return REPO_ROOT / "configs" / "tiny.yaml"


@pytest.fixture
def tiny_model(tiny_config):
    """A seeded, randomly initialised tiny :class:`voxface.models.VoxFace` in eval mode (CPU)."""
    import torch

    from voxface.models import create_model

    torch.manual_seed(0)
    return create_model(tiny_config).eval()


@pytest.fixture
def refine_resolutions(monkeypatch) -> list[int]:
    """``voxface.refine.refine_checkpoint`` replaced by a stub that trains nothing and writes nothing: the
    returned list collects each call's ``RefineTrainConfig.resolution``, the validation grid that
    ``voxface refine-train`` chose (the CLI's defaults, without a training)."""
    import voxface.refine
    from voxface.refine import RefineTrainResult

    seen: list[int] = []

    def fake(checkpoint, out, data_cfg, cfg, **k):
        seen.append(cfg.resolution)
        return out, RefineTrainResult([], {}, 0.0)

    monkeypatch.setattr(voxface.refine, "refine_checkpoint", fake)
    return seen


def run_cli(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """``voxface ARGS`` in-process through ``voxface.cli.main``, as the console script runs it.

    Returns ``(exit code, stdout, stderr)``.
    """
    import voxface.cli

    monkeypatch.setattr(sys, "argv", ["voxface", *map(str, args)])
    code = 0
    try:
        voxface.cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- data engine (toy ICT folder, cache)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """A tiny ICT-FaceKit-shaped folder (tests/toy_ict.py), for the data engine without the real one."""
    from .toy_ict import write_toy_ict

    return write_toy_ict(tmp_path_factory.mktemp("toy_ict")).parent


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """``$VOXFACE_CACHE`` pointed at a fresh folder for the module (put back afterwards)."""
    import os

    d = tmp_path_factory.mktemp("cache")
    old = os.environ.get("VOXFACE_CACHE")
    os.environ["VOXFACE_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("VOXFACE_CACHE", None)
    else:
        os.environ["VOXFACE_CACHE"] = old
