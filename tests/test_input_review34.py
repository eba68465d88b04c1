"""Review 34 of data input: ICT-FaceKit loader, toy data, real-data folders, image loading, crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from voxface.config import FrameConfig
from voxface.data.folder import FolderDataset, pairing_problem

FRAME = FrameConfig()


def _folder_sample(folder: Path, stem: str, meta: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(folder / f"{stem}.png")
    m = trimesh.creation.icosphere(subdivisions=2, radius=80.0)
    m.apply_translation([0.0, -20.0, -30.0])
    m.export(folder / f"{stem}.ply")
    if meta is not None:
        (folder / f"{stem}.json").write_text(json.dumps(meta))


def test_a_folder_without_identity_pairs_is_named(tmp_path: Path) -> None:
    """A folder where no sample names its person (no JSON "person") made every crop its own person:
    each identity pair (index ^ 1) is a crop with itself, so the identity-consistency term gets no
    pair of two crops of one person, and nothing said so (`voxface data check-folder` reported
    'N samples of N persons'). pairing_problem / FolderDataset.pairing_warning name it."""
    plain = tmp_path / "plain"
    for stem in ("a", "b", "c"):
        _folder_sample(plain, stem)
    ds = FolderDataset(plain, 8, 16, FRAME, split="all", cache_dir=tmp_path / "cache")
    assert all(ds.order[i] == ds.order[i ^ 1] for i in range(len(ds)))  # the defect: self-pairs only
    w = ds.pairing_warning
    assert w is not None and "no sample names its person" in w and '"person"' in w

    single = tmp_path / "single"  # ids given, but one sample each: the same, said differently
    for k, stem in enumerate(("a", "b", "c")):
        _folder_sample(single, stem, {"person": f"p{k}"} if k < 2 else None)
    w = FolderDataset(single, 8, 16, FRAME, split="all", cache_dir=tmp_path / "cache").pairing_warning
    assert w is not None and "every person has a single sample (2 of the 3 samples name their person)" in w

    paired = tmp_path / "paired"  # one person with two crops: real pairs, no warning
    for stem, person in (("a", "anna"), ("b", "anna"), ("c", None)):
        _folder_sample(paired, stem, {"person": person} if person else None)
    ds = FolderDataset(paired, 8, 16, FRAME, split="all", cache_dir=tmp_path / "cache")
    assert ds.pairing_warning is None
    assert any(ds.order[i] != ds.order[i ^ 1] for i in range(len(ds)))
    assert pairing_problem(ds.samples[:1]) is None  # one sample: nothing to pair
