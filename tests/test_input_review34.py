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


def test_16_bit_grey_is_converted_a_block_at_a_time_with_the_same_values(monkeypatch) -> None:
    """A 16-bit grey picture was scaled to 8 bits in one go: astype(uint32) and each arithmetic step
    held 4-byte copies of the whole picture, 12 bytes a pixel at the peak for a 16-bit grey file
    (measured on 6000x4000 PNG and TIFF; now 6). The values are unchanged: round(v * 255 / 65535),
    a 32-bit 'I' picture clipped to 0..65535 first, of either byte order and any memory layout."""
    import io

    from voxface import image

    def old(a: np.ndarray) -> np.ndarray:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)

    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (300, 200), dtype=np.uint16)
    a[0, :4] = [0, 128, 32767, 65535]
    monkeypatch.setattr(image, "_U16_BLOCK", 1000)  # several blocks of 5 rows
    widened: list[int] = []
    real_astype = np.ndarray.astype

    class Spy(np.ndarray):
        def astype(self, dtype, *args, **kwargs):  # type: ignore[override]
            if np.dtype(dtype) == np.uint32:
                widened.append(self.size)
            return real_astype(np.asarray(self), dtype, *args, **kwargs)

    got = image._u16_to_u8(a.view(Spy))
    assert widened and max(widened) <= 1000  # never the whole picture at once
    np.testing.assert_array_equal(got, old(a))
    np.testing.assert_array_equal(image._u16_to_u8(a.astype(">u2")), old(a))
    np.testing.assert_array_equal(image._u16_to_u8(a.T), old(a.T))
    every = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(image._u16_to_u8(every), old(every))
    wide = rng.integers(-70000, 140000, (50, 60)).astype(np.int32)
    np.testing.assert_array_equal(image._u16_to_u8(wide), old(np.clip(wide, 0, 65535)))

    buf = io.BytesIO()  # through a 16-bit grey PNG file: same pixels as before
    Image.fromarray(a).save(buf, "PNG")
    buf.seek(0)
    np.testing.assert_array_equal(image.load_image(buf)[..., 0], old(a))


def test_expression_mirror_is_the_bilateral_partner_and_the_augment_map_the_mirror_image() -> None:
    """expression_mirror said 'each expression's mirror', yet keeps jawLeft/mouthLeft as their own
    (right for the sampler's bilateral partner: adding jawLeft and jawRight cancels them). The
    mirror image (augment.expression_mirror_map) exchanges them; with the real ICT-FaceKit their
    displacements are each other's mirror image (x flipped)."""
    import os

    from voxface.augment import expression_mirror_map
    from voxface.data.ict import expression_mirror, load_ict

    names = ["browDown_L", "browDown_R", "jawLeft", "jawRight", "jawOpen", "mouthLeft", "mouthRight"]
    partner, image = expression_mirror(names), expression_mirror_map(names)
    assert partner.tolist() == [1, 0, 2, 3, 4, 5, 6]
    assert image.tolist() == [1, 0, 3, 2, 4, 6, 5]
    assert "bilateral partner" in (expression_mirror.__doc__ or "")

    root = os.environ.get("VOXFACE_ICT_ROOT")
    if not (root and os.path.isdir(root)):
        return
    from voxface.augment import vertex_mirror
    from voxface.data.ict import CLOSED_HEAD_VERTICES

    ict = load_ict(root)
    n, k = ict.expression_names, CLOSED_HEAD_VERTICES
    vm = vertex_mirror(ict.neutral[:k])  # vertex v's mirror-image vertex
    for left, right in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
        d_l, d_r = ict.expression[n.index(left), :k], ict.expression[n.index(right), :k]
        mirrored_l = d_l[vm] * np.array([-1.0, 1.0, 1.0], np.float32)
        err = np.linalg.norm(mirrored_l - d_r, axis=1).max()
        assert err < 0.1 * np.linalg.norm(d_r, axis=1).max(), (left, err)  # ICT is ~6% asymmetric
        assert np.linalg.norm(d_l[vm] - d_r, axis=1).max() > 0.5 * np.linalg.norm(d_r, axis=1).max()  # not its own


def test_an_odd_resolutions_packed_grid_is_read(tmp_path: Path) -> None:
    """A bit-packed occupancy of an odd resolution, as pack_occupancy writes it (R^3 bits end in a
    padded byte: ceil(R^3 / 8) bytes), was refused as 'packed occupancy of 4493 bytes is not a cube
    of bits' (R = 33): only R^3 / 8 bytes exactly were taken."""
    from voxface.data.folder import read_npz
    from voxface.frame import Grid
    from voxface.occupancy import pack_occupancy

    grid = Grid.from_config(FRAME, 33)
    occ = np.zeros((33,) * 3, np.uint8)
    occ[10:20, 8:20, 12:22] = 1
    packed = pack_occupancy(occ)
    assert packed.size == 4493
    np.savez(tmp_path / "a.npz", occupancy=packed)
    got = read_npz(tmp_path / "a.npz", grid)
    assert got is not None
    np.testing.assert_array_equal(got["occ"], occ)
    assert read_npz(tmp_path / "a.npz", Grid.from_config(FRAME, 32)) is None  # another grid: not this one


def test_temporaries_a_killed_ict_cache_writer_left_are_removed(tmp_path: Path, toy_root, monkeypatch) -> None:
    """A process killed while it wrote the parsed ICT arrays (SIGKILL, the out-of-memory killer, a job's
    time limit: no finally runs) left its ``.ict-v1-<key>.<pid>.tmp.npz`` (50 MB for the real model) in
    the cache folder for good: the next writer's temporary had another pid in its name, and a load
    that found the finished cache never looked. Writes go through mesh.atomic_open now, and a write
    or a load from the cache removes temporaries of either kind untouched for STALE_TEMPORARY_S; a
    fresh one (a writer still at work) is kept."""
    import os
    import time

    from voxface.data import ict
    from voxface.mesh import STALE_TEMPORARY_S

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("VOXFACE_CACHE", str(cache))
    old = time.time() - STALE_TEMPORARY_S - 60

    def leftover(name: str, stale: bool = True) -> Path:
        p = cache / name
        p.write_bytes(b"PK\x03\x04 half a zip")
        if stale:
            os.utime(p, (old, old))
        return p

    killed = [leftover(".ict-v1-0123456789abcdef0123.4242.tmp.npz"), leftover("ict-index.4242.tmp")]
    working = leftover(".ict-v1-0123456789abcdef0123.4343.tmp.npz", stale=False)
    model = ict.load_ict(toy_root)  # parses and writes the cache
    assert not any(p.exists() for p in killed) and working.exists()

    later = leftover(f".{ict._parsed_name(model.key)}.0badc0de.tmp")  # atomic_open's kind
    assert ict.load_ict(toy_root).key == model.key  # from the cache
    assert not later.exists() and working.exists()
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [
        "ict-index.json", ict._parsed_name(model.key)]
