"""Defects the lead found in session 39, each with the test that failed before its fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from voxface.errors import InputError, InputTypeError
from voxface.models import create_model

from .conftest import SMALL_CONFIG as SMALL


@pytest.mark.parametrize("keep, error, words", [("3", InputTypeError, "keep_meshes must be an integer"),
                                                (2.5, InputTypeError, "keep_meshes must be an integer"),
                                                (-1, InputError, "keep_meshes must be at least 0")])
def test_evaluate_refuses_a_bad_keep_meshes_before_any_work(keep, error, words, tmp_path: Path) -> None:
    """evaluate(keep_meshes="3") failed in a '>' between str and int after the baseline and the first
    block of faces were rendered and scored; -1 quietly kept none. One line naming the argument, before
    the ICT model is read (the missing folder is never reached)."""
    from voxface.evaluate import evaluate

    torch.manual_seed(0)
    model = create_model(SMALL).eval()
    with pytest.raises(error, match=f"^{words}"):
        evaluate(model, num=4, points=1000, ict_root=str(tmp_path / "missing"), progress=False, keep_meshes=keep)
