"""Real-data folders, review 39: sub-folders a flat folder (or one with train/ and val/) holds are
listed as unused, not left out without a word; a folder copied from a Mac (names decomposed, NFD)
has the persons, split and sample order of the same folder with composed (NFC) names.

Fixtures are tiny (16^3 grids as .npz, 8 px crops), so the module runs in a few seconds.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image
from voxface.data.folder import FolderDataset, scan_folder
from voxface.frame import Grid

def _occ() -> np.ndarray:
    from voxface.config import FrameConfig

    grid = Grid.from_config(FrameConfig(), 16)
    d = np.linalg.norm(grid.cell_centers() - np.array([5.0, -12.0, -20.0]), axis=-1)
    return (d < 70).astype(np.uint8)


def _sample(folder: Path, stem: str, person: str | None = None, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / f"{stem}.png")
    np.savez(folder / f"{stem}.npz", occupancy=_occ())
    if person is not None:
        (folder / f"{stem}.json").write_text(json.dumps({"person": person}))


def test_sub_folders_are_listed_as_unused_by_scan_and_check_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    """A folder of samples inside the data folder (a later batch) or beside train/ and val/ (a test
    set) was skipped without a word: check-folder listed unused files, never them."""
    flat = tmp_path / "flat"
    _sample(flat, "a_1", seed=1)
    _sample(flat, "a_2", seed=2)
    _sample(flat / "batch2", "b_1", seed=3)  # samples in a sub-folder: not used
    (flat / ".thumbs").mkdir()  # hidden: not listed, as hidden files
    samples, unused = scan_folder(flat)
    assert [s.stem for s in samples] == ["a_1", "a_2"]
    assert unused == [flat / "batch2"]
    ds = FolderDataset(flat, 16, 8, split="all", cache_dir=tmp_path / "cache")
    assert ds.unused == [flat / "batch2"] and len(ds.samples) == 2

    split = tmp_path / "split"
    _sample(split / "train", "a_1", seed=1)
    _sample(split / "val", "b_1", seed=2)
    _sample(split / "test", "c_1", seed=3)
    _sample(split / "train" / "more", "d_1", seed=4)
    (split / "notes.txt").write_text("hi")
    ds = FolderDataset(split, 16, 8, split="all", cache_dir=tmp_path / "cache")
    assert ds.unused == [split / "notes.txt", split / "test", split / "train" / "more"]
    assert sorted(s.stem for s in ds.samples) == ["a_1", "b_1"]

    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "cache" not in p.parts)
    from .conftest import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "data", "check-folder", split, "--resolution", 16, "--image-size", 8,
                             "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"{split}: 2 samples of 2 persons")
    assert lines[1:] == [f"unused file: {split / 'notes.txt'}", f"unused file: {split / 'test'}",
                         f"unused file: {split / 'train' / 'more'}"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "cache" not in p.parts) == before


def test_decomposed_names_split_and_order_as_composed_ones(tmp_path: Path) -> None:
    """Stems match in NFC, but the person of a sample without a JSON person and the sample order used
    the raw name: the same folder with decomposed names (copied from a Mac) put other persons in val
    and ordered its items otherwise; a JSON person 'José' and a crop José (decomposed) were two persons."""
    names = ["José", "Zoë", "Ana", "Émile", "Ñuño", "Åsa", "Björn", "Çelik"]
    got = {}
    for form in ("NFC", "NFD"):
        d = tmp_path / form
        for i, n in enumerate(names):
            _sample(d, unicodedata.normalize(form, n), seed=i)
        splits = [FolderDataset(d, 16, 8, split=k, val_fraction=0.3, cache_dir=tmp_path / "cache")
                  for k in ("train", "val")]
        got[form] = [[unicodedata.normalize("NFC", s.stem) for s in sd.samples] + sd.persons for sd in splits]
        for sd in splits:
            assert all(p == unicodedata.normalize("NFC", p) for p in sd.persons)
    assert got["NFD"] == got["NFC"]
    assert got["NFC"][1] and got["NFC"][0]  # both splits hold persons

    d = tmp_path / "mixed"  # a crop named decomposed without JSON, and one whose JSON names the person composed
    _sample(d, unicodedata.normalize("NFD", "José"), seed=1)
    _sample(d, "x_2", person=unicodedata.normalize("NFC", "José"), seed=2)
    ds = FolderDataset(d, 16, 8, split="all", cache_dir=tmp_path / "cache")
    assert ds.persons == [unicodedata.normalize("NFC", "José")]
    assert ds.pairing_warning is None and len(ds) == 4
    items = [ds[i] for i in range(len(ds))]
    assert {int(it["identity"]) for it in items} == {0}
    assert [ds.sample_of(i).stem for i in range(2)] == [unicodedata.normalize("NFD", "José"), "x_2"]


def test_scanning_with_a_problems_list_names_every_bad_sample_and_keeps_the_rest(tmp_path: Path) -> None:
    """Scanning raised at the first crop without ground truth or with a bad JSON: a check of a folder
    of thousands said one bad sample a run. With ``problems`` each is listed and the rest scanned, as
    ``prepare(problems=...)`` does for unreadable files; without it the first is still raised."""
    import pytest

    from voxface.errors import DataError

    d = tmp_path / "d"
    for i, stem in enumerate(["a_1", "b_1", "c_1", "d_1", "e_1"]):
        _sample(d, stem, seed=i)
    (d / "b_1.npz").unlink()  # no ground truth
    (d / "b_1.json").write_text("{}")  # ... and its JSON: left out with it, not listed as unused
    (d / "d_1.json").write_text("{")  # not JSON
    (d / "e_1.obj").write_text("")  # with e_1.ply: two meshes for one crop
    (d / "e_1.ply").write_text("")
    (d / "notes.txt").write_text("hi")
    with pytest.raises(DataError) as e:
        scan_folder(d)
    assert str(e.value).startswith(f"{d / 'b_1.png'}: no ground truth")
    problems: list = []
    samples, unused = scan_folder(d, problems)
    assert [s.stem for s in samples] == ["a_1", "c_1"] and unused == [d / "notes.txt"]
    assert [str(p).split(": ")[0] for p in problems] == [str(d / "b_1.png"), str(d / "d_1.json"), str(d / "e_1.png")]
    assert "not valid JSON" in str(problems[1]) and "more than one mesh" in str(problems[2])
    problems = []
    ds = FolderDataset(d, 16, 8, split="all", cache_dir=tmp_path / "cache", problems=problems)
    assert len(problems) == 3 and [s.stem for s in ds.samples] == ["a_1", "c_1"] and len(ds) == 4
    with pytest.raises(DataError, match="no ground truth"):
        FolderDataset(d, 16, 8, split="all", cache_dir=tmp_path / "cache")
    e2 = tmp_path / "allbad"  # every sample bad: the problems say it, not 'no samples'
    _sample(e2, "x", seed=1)
    (e2 / "x.npz").unlink()
    problems = []
    assert FolderDataset(e2, 16, 8, split="all", cache_dir=tmp_path / "cache", problems=problems).samples == []
    assert len(problems) == 1 and "no ground truth" in str(problems[0])
