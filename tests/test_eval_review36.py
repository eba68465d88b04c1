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
