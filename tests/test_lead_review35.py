"""Regression tests for the lead's review of session 35."""

from __future__ import annotations

import pytest


def test_evaluate_reads_the_checkpoint_once_and_refuses_the_seeds_of_that_read(tmp_path, monkeypatch, capsys):
    """`voxface evaluate -c ck` read ck twice: load_model for the weights, then load_checkpoint again for the
    training stages whose seeds it refuses to score on. A training saving ck in between (a run's
    last.pth.tar) paired one file's weights with another's training record, and the file was read and
    hashed twice. The stages now come from the dict load_model_and_checkpoint built the model from."""
    import torch

    import voxface.checkpoint
    import voxface.evaluate
    from voxface.checkpoint import save_checkpoint
    from voxface.errors import VoxfaceError
    from voxface.evaluate import training_data, training_seeds
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG, run_cli

    torch.manual_seed(0)
    data = {"kind": "synthetic", "seed": 2_000_003}  # the default evaluation faces' seed: refused
    ck = save_checkpoint(tmp_path / "m.pth.tar", create_model(SMALL_CONFIG).eval(),
                         extra={"run_config": {"data": data}})
    read = voxface.checkpoint.load_checkpoint(ck)
    assert training_data(read) == training_data(ck) == [("training", data)]
    assert training_seeds(read) == training_seeds(ck) and 2_000_003 in training_seeds(read)

    monkeypatch.setattr(voxface.checkpoint, "load_checkpoint", lambda *a, **k: pytest.fail("read a second time"))
    monkeypatch.setattr(voxface.evaluate, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "--num", 4, "-c", ck, "--report", tmp_path / "r.json")
    assert code == 1 and "model saw" in err and "2000003" in err, err
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(VoxfaceError):  # the refusal itself is check_seed_offset's (test_evaluate.py)
        voxface.evaluate.check_seed_offset(0, training=training_seeds(read))
