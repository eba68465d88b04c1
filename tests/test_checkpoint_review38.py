"""Checkpoints, review 38: reads under torch's own load settings, and what `inspect` holds in memory."""

from __future__ import annotations

import pytest
import torch

from voxface.checkpoint import CheckpointSource, inspect_checkpoint, load_checkpoint, load_model, save_checkpoint


def test_a_program_that_sets_torchs_mmap_default_still_loads_checkpoints(tmp_path, tiny_model, monkeypatch):
    """torch.utils.serialization.config.load.mmap = True (a documented torch setting a program may make
    to map big files) made load_model read every good file as 'could not be read as a torch checkpoint
    (ValueError: f must be a file path in order to use the mmap argument)': the file is unpickled from
    the handle it was hashed through, and torch maps only paths."""
    serialization_config = pytest.importorskip("torch.utils.serialization").config
    path = save_checkpoint(tmp_path / "m.pth.tar", tiny_model, epoch=3)
    monkeypatch.setattr(serialization_config.load, "mmap", True)
    model = load_model(path, device="cpu")
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.source.epoch == 3
    assert CheckpointSource.of_file(path, "x").epoch == 3
    assert load_checkpoint(path)["epoch"] == 3
    assert inspect_checkpoint(path).epoch == 3
