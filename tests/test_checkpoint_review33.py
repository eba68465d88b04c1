"""Checkpoints from other sources and other ways of saving: what reading them says, and what writing
over them keeps."""

from __future__ import annotations

import warnings

import pytest
import torch

from voxface.checkpoint import check_output_checkpoint, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint
from voxface.errors import CheckpointError, UnsafeCheckpointError
from voxface.models import create_model

from .conftest import SMALL_CONFIG


def _small():
    torch.manual_seed(0)
    return create_model(SMALL_CONFIG).eval()


class _Doubler(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("make", [lambda: torch.jit.script(torch.nn.Linear(2, 3)),
                                  lambda: torch.jit.trace(_Doubler(), torch.zeros(2))],
                         ids=["scripted", "traced"])
def test_a_torchscript_archive_is_named_as_one_not_called_corrupt(tmp_path, make):
    """A TorchScript archive (torch.jit.save: the usual way to ship a model as ``model.pt``) holds a
    ``data.pkl`` as torch.save's archives do, so the TorchScript check after it never ran: torch.load
    handed the file to torch.jit.load (a ``warning:`` line), which weights_only refuses, and the file was
    "corrupt: torch could not read it (Cannot use weights_only=True ...)". As a "corrupt" file, what a
    failed write leaves, an output path holding it was overwritten without a word."""
    path = tmp_path / "model.pt"
    torch.jit.save(make(), str(path))
    for read in (load_checkpoint, load_model, inspect_checkpoint):
        with pytest.raises(CheckpointError) as e, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read(path)
        assert not [w for w in caught if "TorchScript" in str(w.message)]  # torch.load never reached it
        assert e.value.reason == "torchscript" and "TorchScript archive (torch.jit.save)" in str(e.value)
        assert "corrupt" not in str(e.value)
    with pytest.raises(CheckpointError, match="TorchScript archive.*would replace it") as e:
        check_output_checkpoint(path, "release")
    assert e.value.reason == "output"
