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


def test_release_checks_the_reports_bytes_against_its_own_read_of_the_file(tmp_path, monkeypatch, capsys):
    """`release --report` hashed the checkpoint itself, then release_checkpoint read the file again: a
    training writing it in between shipped new weights with the old file's report (and --annotate read
    it twice more, for its model and its run config, over minutes of rendering). release_checkpoint now
    takes ``expect_sha256`` and compares it with its own (one) read; the CLI passes the report's."""
    import hashlib
    import json

    import torch

    import voxface.checkpoint
    from voxface.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint
    from voxface.errors import CheckpointError
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG, run_cli

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "last.pth.tar", create_model(SMALL_CONFIG).eval(), epoch=3)
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    release_checkpoint(ck, tmp_path / "a.pth.tar", expect_sha256=sha)
    with pytest.raises(CheckpointError, match="holds other bytes than when it was read before") as ei:
        release_checkpoint(ck, tmp_path / "b.pth.tar", expect_sha256="0" * 64)
    assert ei.value.reason == "changed" and not (tmp_path / "b.pth.tar").exists()

    report = tmp_path / "r.json"
    report.write_text(json.dumps({"num": 4, "seed": 7, "resolution": 16, "summary": {"model": {}},
                                  "checkpoint": str(ck), "provenance": {"checkpoint_sha256": sha}}))
    real = voxface.checkpoint.load_model_and_checkpoint

    def written_again_first(path, *a, **k):  # the training saves the file just before the release reads it
        torch.manual_seed(1)
        save_checkpoint(ck, create_model(SMALL_CONFIG).eval(), epoch=4)
        return real(path, *a, **k)

    monkeypatch.setattr(voxface.checkpoint, "load_model_and_checkpoint", written_again_first)
    dst = tmp_path / "rel.pth.tar"
    code, _, err = run_cli(monkeypatch, capsys, "release", ck, "-o", dst, "--report", report)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {report}: scored a file of SHA-256 "), err
    assert f"but {ck} is {hashlib.sha256(ck.read_bytes()).hexdigest()[:16]}" in lines[0] and not dst.exists()
    monkeypatch.setattr(voxface.checkpoint, "load_model_and_checkpoint", real)
    code, _, err = run_cli(monkeypatch, capsys, "release", ck, "-o", dst, "--report", report)
    assert code == 1 and "scored a file of SHA-256" in err and not dst.exists()  # still the old report
    assert load_checkpoint(tmp_path / "a.pth.tar")["epoch"] == 3
