"""Review 36 of the evaluation (voxface.evaluate, voxface.cli._evaluate, voxface.metrics)."""

from __future__ import annotations

import json

import pytest

from voxface.errors import VoxfaceError


def test_training_seeds_read_the_exports_of_a_folders_train_and_val_splits(tmp_path):
    """A folder dataset with train/ and val/ split folders (voxface.data.folder), each written by its own
    `voxface data export`, records its seeds in train/.export.json and val/.export.json, not at the root:
    they were not read, so a model validated on an export of seed 2000003 was scored on those faces."""
    from voxface.evaluate import check_seed_offset, training_seeds

    root = tmp_path / "faces"
    for split, seed in (("train", 5), ("val", 2_000_003)):
        (root / split).mkdir(parents=True)
        (root / split / ".export.json").write_text(json.dumps({"seed": seed, "resolution": 64, "points": 2048}))
    ck = {"extra": {"run_config": {"data": {"kind": "folder", "root": str(root)}}}}
    seeds = training_seeds(ck)
    assert set(seeds) == {5, 2_000_003}, seeds
    assert str(root / "val") in seeds[2_000_003] and "exported with seed 2000003" in seeds[2_000_003]
    with pytest.raises(VoxfaceError, match="model saw"):
        check_seed_offset(0, training=seeds)
    check_seed_offset(1, training=seeds)
    # a flat export (its .export.json at the root) is read as before, and a split folder without one adds nothing
    flat = tmp_path / "flat"
    (flat / "train").mkdir(parents=True)
    (flat / ".export.json").write_text(json.dumps({"seed": 9}))
    assert set(training_seeds({"extra": {"run_config": {"data": {"kind": "folder", "path": str(flat)}}}})) == {9}


def test_a_ground_truth_sample_with_no_point_on_the_face_names_points_not_a_mask_nobody_passed():
    """evaluate(points=10) (valid: points >= 1) failed on a face whose 10 ground-truth points all fell off the
    face region (a fifth of the head) with metrics' 'gt_face_mask selects no ground-truth points', naming an
    argument the caller never gave. surface_scores says which count is too small, and what to do."""
    import numpy as np
    import trimesh

    from voxface.errors import InputError
    from voxface.evaluate import surface_scores
    from voxface.metrics import sampled_surface

    gt = trimesh.creation.icosphere(3, radius=80.0)
    face = gt.triangles_center[:, 2] > 70.0  # a cap, a small part of the sphere
    seed = next(s for s in range(100) if not face[sampled_surface(gt, 1, seed=s).face].any())
    with pytest.raises(InputError, match=r"points=1: none of the 1 points sampled on the ground truth lies in the "
                                         r"face region .* sample more points"):
        surface_scores(trimesh.creation.icosphere(3, radius=81.0), sampled_surface(gt, 1, seed=seed), face, 1, seed=0)
    # enough points: measured as before (the sphere one mm out)
    got = surface_scores(trimesh.creation.icosphere(3, radius=81.0), sampled_surface(gt, 2000, seed=1), face, 2000, 0)
    assert np.isclose(got["face_chamfer_l1"], 1.0, atol=0.1) and got["face_fscore@2.5"] == 1.0


def test_evaluate_draws_its_progress_bars_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    """`voxface evaluate ... 2>log` wrote a carriage-return bar update into the log every 0.1 s while it
    scored and drew the plots (13 for --num 4 --plots here, a few hundred at the default --num 200), where
    reconstruct, sample and export-onnx draw bars only on a terminal. Its scoring and plot bars follow
    stderr: none into a log or a pipe, both on a terminal."""
    import sys

    import torch

    import voxface.evaluate as ev
    from voxface.checkpoint import save_checkpoint
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG, run_cli
    from .test_evaluate import fake_report

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / "m.pth.tar", create_model(SMALL_CONFIG).eval(),
                         extra={"run_config": {"data": {"kind": "synthetic", "seed": 5}}})
    bars = []

    def evaluate(model, **kw):
        bars.append(("score", kw.get("progress", True)))
        return fake_report(4), {"meshes": {}}

    def save_plots(rep, extras, out, *args, **kw):
        bars.append(("plots", kw.get("progress", True)))
        return []

    monkeypatch.setattr(ev, "evaluate", evaluate)
    monkeypatch.setattr(ev, "save_plots", save_plots)
    args = ("evaluate", "-c", ck, "-n", 4, "--report", tmp_path / "r.json", "--plots", tmp_path / "p",
            "--device", "cpu")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert bars == [("score", False), ("plots", False)]  # captured stderr, as a log: no bars
    bars.clear()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert bars == [("score", True), ("plots", True)]


def test_training_seeds_follow_the_checkpoints_a_training_started_from(tmp_path, monkeypatch):
    """A stage started with train.init_from (a new run on an earlier checkpoint's weights, e.g. the
    encoder trained on a frozen decoder, as the shipped model's last stage) records only its own data:
    the seeds the earlier stages trained and validated those weights on were not refused, so a decoder
    validated on seed 2000003 was scored on those faces. The chain of init_from files is followed, as
    far as the files are here (a path relative to the folder the training ran in, as data paths)."""
    import torch

    from voxface.checkpoint import save_checkpoint
    from voxface.evaluate import check_seed_offset, training_data, training_seeds
    from voxface.models import create_model

    from .conftest import SMALL_CONFIG

    torch.manual_seed(0)
    m = create_model(SMALL_CONFIG).eval()
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "s1.pth.tar", m,
                    extra={"run_config": {"data": {"kind": "synthetic", "seed": 1_000_000}}})
    save_checkpoint(tmp_path / "s2.pth.tar", m, extra={"run_config": {
        "train": {"init_from": "s1.pth.tar"}, "data": {"kind": "synthetic", "seed": 7}}})
    s3 = save_checkpoint(tmp_path / "s3.pth.tar", m, extra={"run_config": {
        "train": {"init_from": "s2.pth.tar", "freeze": ["decoder"]}, "data": {"kind": "synthetic", "seed": 5}}})
    seeds = training_seeds(s3)
    assert set(seeds) == {5, 1_000_008, 7, 1_000_010, 1_000_000, 2_000_003}, seeds
    assert seeds[2_000_003] == "train.init_from s1.pth.tar's training validation data (seed 2000003)"
    with pytest.raises(VoxfaceError, match="train.init_from s1.pth.tar's training validation data .* model saw"):
        check_seed_offset(0, training=seeds)
    # the stages of the file itself first, then each earlier one's; a loop or a file that is gone ends the chain
    assert [stage for stage, _ in training_data(s3)] == [
        "training", "train.init_from s2.pth.tar's training", "train.init_from s1.pth.tar's training"]
    loop = save_checkpoint(tmp_path / "loop.pth.tar", m, extra={"run_config": {
        "train": {"init_from": "loop.pth.tar"}, "data": {"kind": "synthetic", "seed": 3}}})
    assert [stage for stage, _ in training_data(loop)] == ["training", "train.init_from loop.pth.tar's training"]
    gone = {"extra": {"run_config": {"train": {"init_from": "gone.pth.tar"}, "data": {"kind": "synthetic", "seed": 3}}}}
    assert set(training_seeds(gone)) == {3, 1_000_006}
