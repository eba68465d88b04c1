"""Review 37 of datasets on disk (voxface.data.folder, cache, export): defects found training on a
folder of scans and writing synthetic datasets to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from voxface.data.folder import FolderDataset


def _sphere(r: float = 80.0) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=3, radius=r)
    m.apply_translation([5.0, -12.0, -20.0])
    return m


def _write(folder: Path, stem: str, mesh: trimesh.Trimesh, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / f"{stem}.png")
    mesh.export(folder / f"{stem}.ply")


def _points(folder: Path, cache: Path, stem: str) -> np.ndarray:
    ds = FolderDataset(folder, 16, 32, split="all", points=16, cache_dir=cache, prepare=True)
    return next(ds[i]["points"] for i in range(len(ds)) if ds.sample_of(i).stem == stem)


def test_a_meshs_surface_points_do_not_depend_on_what_the_cache_held(tmp_path: Path) -> None:
    """The cache is keyed by the mesh's content, not its name, but its surface points were drawn
    with a seed of the stem of the sample that voxelised it first: one scan beside two crops (or a
    renamed mesh) gave the second sample the first one's points, so a sample's points depended on
    the cache's history (a fresh cache gave others, 137 mm apart here)."""
    mesh = _sphere()
    _write(tmp_path / "alone", "b", mesh)
    alone = _points(tmp_path / "alone", tmp_path / "c1", "b")
    for stem in ("a", "b"):  # a sorts first: it voxelised the shared scan first
        _write(tmp_path / "both", stem, mesh)
    beside = _points(tmp_path / "both", tmp_path / "c2", "b")
    assert np.array_equal(beside, alone)
    # a warm cache gives what a cold one gives, and the points lie on the sphere (a radius of 80 mm)
    again = _points(tmp_path / "both", tmp_path / "c2", "b")
    assert np.array_equal(again, alone)
    radius = np.linalg.norm(alone - np.array([5.0, -12.0, -20.0]), axis=1)
    assert np.all(np.abs(radius - 80.0) < 1.0)


def test_write_cache_refuses_counts_and_sizes_that_are_not_whole_numbers_before_writing(tmp_path: Path,
                                                                                      toy_root) -> None:
    """write_cache(resolution=32.5) wrote meta.json's resolution 32, then failed in the sampler's
    Grid (an InputTypeError naming no folder), the meta.json left behind; seed 2.5 rendered seed 2
    and n 10.7 eight samples without a word, where export_samples refuses such values (f7c560e)."""
    import pytest

    from voxface.data.cache import write_cache
    from voxface.errors import DataError

    kw = dict(n=4, seed=1, resolution=32, image_size=16, chunk=4, workers=0, ict_root=str(toy_root), progress=False)
    out = tmp_path / "split"
    for key, value in (("resolution", 32.5), ("seed", 2.5), ("n", 10.7), ("image_size", 16.0), ("chunk", "4"),
                       ("workers", 1.0), ("n", True)):
        with pytest.raises(DataError) as ei:
            write_cache(out, **{**kw, key: value})
        assert str(ei.value) == f"{out}: {key} must be a whole number, not {value!r}"
        assert not out.exists()
    write_cache(out, **{**kw, "n": np.int64(4), "resolution": np.int32(32)})  # numpy integers are whole numbers
    assert (out / "chunk_000000").is_dir()


def test_export_and_cache_into_a_file_are_one_line_naming_the_folder_before_the_ict_model_is_read(
        tmp_path: Path, monkeypatch) -> None:
    """export_samples and write_cache made their folder with pathlib's mkdir after reading the ICT
    model: a file there was a bare FileExistsError, a file among its parents a NotADirectoryError
    (no VoxfaceError, so not the one-line error the data commands print; the CLI checks first)."""
    import pytest

    import voxface.data.ict as ict
    from voxface.data.cache import write_cache
    from voxface.data.export import export_samples
    from voxface.errors import DataError

    def unread(*a, **k):
        raise AssertionError("the ICT model was read")

    monkeypatch.setattr(ict, "load_ict", unread)
    blocker = tmp_path / "taken"
    blocker.write_text("notes")
    for out, words in ((blocker, "is a file, where a folder is needed"),
                       (blocker / "sub", f"{blocker} is a file, where a folder is needed")):
        for write in (lambda: export_samples(out, 1, resolution=32, points=0, progress=False),
                      lambda: write_cache(out, 4, resolution=32, image_size=16, workers=0, progress=False)):
            with pytest.raises(DataError) as ei:
                write()
            assert str(ei.value) == f"{out}: {words}"
    assert blocker.read_text() == "notes" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_person_id_written_decomposed_is_the_same_person_as_written_composed(tmp_path: Path) -> None:
    """Stems are matched in NFC (db319f1), person ids were not: 'José' in one JSON written
    decomposed (an id made from a file name a Mac listed, NFD) and composed in another were two
    persons, so each crop was paired with itself (no identity pair of the two) and the person split
    could put them on both sides."""
    import json
    import unicodedata

    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    for stem, person in (("a1", nfc), ("a2", nfd), ("b1", "ben"), ("b2", "ben")):
        _write(tmp_path / "d", stem, _sphere())
        (tmp_path / "d" / f"{stem}.json").write_text(json.dumps({"person": person}))
    ds = FolderDataset(tmp_path / "d", 16, 32, split="all", cache_dir=tmp_path / "c")
    assert ds.persons == [nfc, "ben"] and ds.pairing_warning is None
    stems = [ds.sample_of(i).stem for i in range(len(ds))]
    assert stems == ["a1", "a2", "b1", "b2"]  # a1 ^ 1 is a2: a pair of two crops of one person
    assert [int(ds[i]["identity"]) for i in range(len(ds))] == [0, 0, 1, 1]
    # the person split keeps them together: a split that holds one holds both
    for seed in range(8):
        train = FolderDataset(tmp_path / "d", 16, 32, split="train", val_fraction=0.5, split_seed=seed,
                              cache_dir=tmp_path / "c")
        assert len({"a1", "a2"} & {s.stem for s in train.samples}) in (0, 2)


def test_a_flattened_occupancy_grid_is_named_as_such_not_read_as_a_packed_one(tmp_path: Path) -> None:
    """docs/real_data.md describes the packed form as np.packbits of the flattened grid; an npz of
    the grid flattened (R^3 values of 0/1, not packed) was read as a packed grid of twice the side:
    'for another grid than the model's (32^3 ...)' of a 32^3 grid, and at a model of 64^3 'the head
    reaches the grid's subject's left (+x) face' (every eighth cell of a 64^3 grid set)."""
    import pytest

    from voxface.config import FrameConfig
    from voxface.errors import DataError
    from voxface.frame import Grid
    from voxface.occupancy import occupancy_grid, pack_occupancy

    mesh = _sphere()
    occ = occupancy_grid(mesh.vertices, mesh.faces, Grid.from_config(FrameConfig(), 32))
    d = tmp_path / "d"
    _write(d, "a", mesh)
    (d / "a.ply").unlink()
    for R in (32, 64):
        np.savez(d / "a.npz", occupancy=occ.reshape(-1))
        with pytest.raises(DataError) as ei:
            FolderDataset(d, R, 32, split="all", cache_dir=tmp_path / "c", prepare=True)
        assert str(ei.value) == (f"{d / 'a.npz'}: occupancy is a flat array of 32768 0/1 values, a 32^3 grid "
                                 "flattened rather than bit-packed: save it as (32, 32, 32) uint8 or bool, or pack "
                                 "it with voxface.occupancy.pack_occupancy")
    np.savez(d / "a.npz", occupancy=pack_occupancy(occ))  # packed (32768 / 8 = 16^3 bytes, a cube too): read
    ds = FolderDataset(d, 32, 32, split="all", cache_dir=tmp_path / "c", prepare=True)
    assert np.array_equal(ds[0]["occ"], occ)
    np.savez(d / "a.npz", occupancy=np.zeros(32 ** 3 // 8, np.uint8))  # all zeros: no head, as before
    with pytest.raises(DataError, match="no occupied cell"):
        FolderDataset(d, 32, 32, split="all", cache_dir=tmp_path / "c", prepare=True)
