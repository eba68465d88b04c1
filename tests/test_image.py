"""voxface.image: every awkward file, array and tensor becomes uint8 (H, W, 3) or one ImageError."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .bad_images import CONTENT, EXPECT_ERROR, HUGE_SIZE, make_corpus
from voxface.errors import ImageError
from voxface.image import IMAGE_EXTENSIONS, list_images, load_image

ALL_ENTRIES = sorted(EXPECT_ERROR | set(CONTENT))
VALID = sorted(set(CONTENT) - {"huge_jpeg"})  # the huge one has its own (subprocess) test


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus(tmp_path_factory.mktemp("bad_images"))


def _assert_rgb8(a: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert a.flags.c_contiguous and a.flags.writeable
    if shape is not None:
        assert a.shape[:2] == shape


def test_corpus_is_complete(corpus: dict[str, Path]) -> None:
    assert set(corpus) == set(ALL_ENTRIES)
    assert all(p.is_file() for p in corpus.values())


# -- files that must be refused ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECT_ERROR))
def test_bad_file_raises_one_line_image_error(corpus: dict[str, Path], name: str) -> None:
    path = corpus[name]
    with pytest.raises(ImageError) as info:
        load_image(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert path.name in msg and "\n" not in msg
    assert info.value.path == str(path)


def test_bad_file_messages_say_what_is_wrong(corpus: dict[str, Path]) -> None:
    def msg(name: str) -> str:
        with pytest.raises(ImageError) as info:
            load_image(corpus[name])
        return str(info.value)

    assert "empty" in msg("zero_bytes")
    assert "not an image" in msg("text_as_png") and "not an image" in msg("text_as_jpg")
    assert "truncated" in msg("truncated_jpeg") and "truncated" in msg("truncated_png")
    assert "100000x100000" in msg("absurd_size_png") and "limit" in msg("absurd_size_png")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file") as info:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(info.value)
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


# -- files that must load ------------------------------------------------------------------------
@pytest.mark.parametrize("name", VALID)
def test_valid_file_loads(corpus: dict[str, Path], name: str) -> None:
    _assert_rgb8(load_image(corpus[name]))


def test_one_pixel(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["one_pixel"])
    _assert_rgb8(a, (1, 1))
    assert a[0, 0].tolist() == [10, 20, 30]


def test_grey_png_is_replicated(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["gray_png"])
    _assert_rgb8(a, (48, 64))
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])
    assert np.array_equal(a[0, :, 0], (np.arange(64) * 4).astype(np.uint8))


def test_la_png_over_white(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["la_png"])
    assert (a[:, :16] == 100).all() and (a[:, 16:] == 255).all()


def test_rgba_png_over_white(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["rgba_png"]).astype(int)
    assert (a[:, :10] == [255, 0, 0]).all()  # opaque red
    assert (np.abs(a[:, 10:20] - [255, 127, 127]) <= 1).all()  # half transparent: pink
    assert (a[:, 20:] == 255).all()  # transparent: white


def test_palette_png_with_transparency(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["palette_png"])
    _assert_rgb8(a, (16, 32))
    assert (a[:, :16] == 255).all()
    assert (a[:, 16:] == [0, 200, 0]).all()


def test_grey_and_rgb_pngs_with_a_transparent_colour_over_white(tmp_path: Path) -> None:
    # a tRNS chunk on a grey or RGB PNG makes one colour transparent: it is white, as any
    # other transparency, not the colour stored under it (black here)
    a = np.zeros((4, 8, 3), np.uint8)
    a[:, 4:] = (200, 30, 60)
    Image.fromarray(a).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    Image.fromarray(a[..., 0]).save(tmp_path / "grey.png", transparency=0)
    rgb, grey = load_image(tmp_path / "rgb.png"), load_image(tmp_path / "grey.png")
    assert (rgb[:, :4] == 255).all() and (rgb[:, 4:] == (200, 30, 60)).all()
    assert (grey[:, :4] == 255).all() and (grey[:, 4:] == 200).all()


def test_png16_is_scaled_not_clipped(corpus: dict[str, Path]) -> None:
    assert Image.open(corpus["png16"]).mode.startswith("I;16")
    a = load_image(corpus["png16"])
    assert a[0, :, 0].tolist() == [0, 64, 128, 255]


def test_cmyk_jpeg_to_rgb(corpus: dict[str, Path]) -> None:
    assert Image.open(corpus["cmyk_jpeg"]).mode == "CMYK"
    a = load_image(corpus["cmyk_jpeg"]).astype(int)
    assert (np.abs(a - [0, 255, 255]) <= 12).all()  # cyan


def test_exif_orientation_applied(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["exif_rotated_jpeg"]).astype(int)
    _assert_rgb8(a.astype(np.uint8), (60, 40))  # stored 60 wide x 40 high, displayed rotated
    red = np.array([255, 0, 0])
    assert np.abs(a[2:10, -10:-2] - red).max() <= 30  # stored top-left -> displayed top-right
    for corner in (a[2:10, 2:10], a[-10:-2, 2:10], a[-10:-2, -10:-2]):
        assert np.abs(corner - 128).max() <= 30


def test_animated_gif_first_frame(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["animated_gif"])
    _assert_rgb8(a, (16, 16))
    assert (a == [255, 0, 0]).all()


def test_real_photos(corpus: dict[str, Path]) -> None:
    _assert_rgb8(load_image(corpus["no_face"]), (400, 600))
    _assert_rgb8(load_image(corpus["two_faces"]), (512, 832))


def test_max_side_downscales_keeping_aspect(corpus: dict[str, Path]) -> None:
    a = load_image(corpus["two_faces"], max_side=208)
    _assert_rgb8(a, (128, 208))
    b = load_image(corpus["exif_rotated_jpeg"], max_side=30)  # applied after the rotation
    _assert_rgb8(b, (30, 20))


def test_max_side_and_max_pixels_are_whole_numbers_of_pixels() -> None:
    """load_image(a, max_side=500.0) failed in PIL's resize ('float' object cannot be interpreted as
    an integer, a traceback) and max_side="10" in a bare comparison TypeError."""
    from voxface.errors import InputError, InputTypeError

    a = np.zeros((1000, 800, 3), np.uint8)
    _assert_rgb8(load_image(a, max_side=np.int64(500)), (500, 400))
    for bad in (500.0, 500.7, "10", True):
        with pytest.raises(InputTypeError, match="max_side must be an integer"):
            load_image(a, max_side=bad)
    with pytest.raises(InputError, match="max_side must be at least 1"):
        load_image(a, max_side=0)
    with pytest.raises(InputTypeError, match="max_pixels must be an integer"):
        load_image(a, max_pixels=1e6)


HUGE_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from voxface.image import load_image
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    base = rss()
    small = load_image(sys.argv[1], max_side=1024)
    peak_small = rss()
    big = load_image(sys.argv[1])
    peak_big = rss()
    print(json.dumps({"small": small.shape, "big": big.shape, "grow_small": peak_small - base,
                      "grow_big": peak_big - base, "corner": big[0, 0].tolist()}))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ outside Linux")
def test_huge_jpeg_bounded_size_and_memory(corpus: dict[str, Path]) -> None:
    """A 10000x10000 (100 MP) JPEG: loaded with bounded size and bounded peak memory.

    What is checked: the child process's peak resident set size (``ru_maxrss``) growth over its
    state just before loading. Decoding the file at full size would need 400 MB for Pillow's
    decoded image alone (4 bytes per pixel), 1 GB with the conversions (measured: 957 MB with
    ``max_side=10000``). With ``max_side=1024`` libjpeg decodes at 1/8 scale (1250x1250): a few MB.
    With the default 4096 it decodes at 1/2 scale (5000x5000) then resizes: about 260 MB.
    """
    out = subprocess.run([sys.executable, "-c", HUGE_CHILD, str(corpus["huge_jpeg"])],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert HUGE_SIZE == (10000, 10000)
    assert r["small"] == [1024, 1024, 3]
    assert r["big"] == [4096, 4096, 3]
    assert r["grow_small"] < 64, r
    assert r["grow_big"] < 400, r
    assert max(abs(v - c) for v, c in zip(r["corner"], (0, 0, 128))) <= 12  # gradient origin


def test_pillow_bomb_guard_relaxed_up_to_our_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.png"
    Image.new("RGB", (100, 80), (1, 2, 3)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would now refuse 8000 pixels
    with pytest.raises(Image.DecompressionBombError):
        Image.open(p)
    a = load_image(p)
    _assert_rgb8(a, (80, 100))
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image(p, max_pixels=5000)


# -- PIL images and streams ----------------------------------------------------------------------
def test_pil_image_input() -> None:
    im = Image.new("RGBA", (5, 4), (0, 0, 255, 0))
    a = load_image(im)
    _assert_rgb8(a, (4, 5))
    assert (a == 255).all()
    im16 = Image.fromarray(np.full((3, 3), 65535, np.uint16))
    assert (load_image(im16) == 255).all()


def test_a_closed_pil_image_is_one_image_error_naming_the_file(corpus: dict[str, Path]) -> None:
    # used after its `with Image.open(...)` block: Pillow's bare AssertionError (not loaded) or
    # "truncated or corrupt data (Operation on closed image)" (loaded), of an intact file
    path = corpus["exif_rotated_jpeg"]
    with Image.open(path) as lazy:
        pass
    loaded = Image.open(path)
    loaded.load()
    loaded.close()
    for im in (lazy, loaded):
        with pytest.raises(ImageError, match=rf"^{re.escape(str(path))}: the PIL image is closed") as info:
            load_image(im)
        assert "\n" not in str(info.value) and "corrupt" not in str(info.value)
    with Image.open(path) as im:
        assert load_image(im).shape == (60, 40, 3)
    with Image.open(corpus["truncated_jpeg"]) as im, pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(im)


def test_running_out_of_memory_is_not_called_a_corrupt_file(corpus: dict[str, Path], monkeypatch) -> None:
    # it said "cannot decode image: truncated or corrupt data (MemoryError)" of an intact photo
    from PIL import ImageFile

    def load(self: object) -> None:
        raise MemoryError

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    path = corpus["exif_rotated_jpeg"]
    with pytest.raises(ImageError, match=rf"^{re.escape(str(path))}: not enough memory to decode this 60x40 image$"):
        load_image(path)


def test_32_bit_integer_images_of_8_bit_values_are_not_black() -> None:
    """``Image.convert("I")`` of an 8-bit picture holds 0..255 in 32 bits: it is that picture (read
    as 16 bits it was all but black, and the detector found no face); wider values stay 16-bit."""
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(load_image(Image.fromarray(grey).convert("I"))[..., 0], grey)
    wide = Image.fromarray((grey.astype(np.int32) * 257))  # 0..65535 in mode I
    assert wide.mode == "I"
    np.testing.assert_array_equal(load_image(wide)[..., 0], grey)


def test_stream_input(corpus: dict[str, Path]) -> None:
    a = load_image(io.BytesIO(corpus["one_pixel"].read_bytes()))
    assert a[0, 0].tolist() == [10, 20, 30]
    with pytest.raises(ImageError, match="<stream>"):
        load_image(io.BytesIO(corpus["truncated_png"].read_bytes()))


def test_unsupported_type_is_type_error() -> None:
    with pytest.raises(TypeError):
        load_image(12345)


# -- arrays and tensors --------------------------------------------------------------------------
RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "array, expected",
    [
        (RGB8, RGB8),
        (RGB8.transpose(2, 0, 1), RGB8),  # (3, H, W)
        (RGB8[..., 0], np.repeat(RGB8[..., :1], 3, 2)),  # (H, W)
        (RGB8[..., :1], np.repeat(RGB8[..., :1], 3, 2)),  # (H, W, 1)
        (RGB8[..., :1].transpose(2, 0, 1), np.repeat(RGB8[..., :1], 3, 2)),  # (1, H, W)
        (np.concatenate([RGB8, np.full((6, 7, 1), 255, np.uint8)], 2), RGB8),  # opaque RGBA
        (np.concatenate([RGB8, np.zeros((6, 7, 1), np.uint8)], 2), np.full_like(RGB8, 255)),
        (RGB8.astype(np.uint16) * 257, RGB8),  # uint16 full range
        (RGB8.astype(np.float32) / 255, RGB8),
        (RGB8.astype(np.float64) / 255, RGB8),
        ((RGB8.astype(np.float32) / 255).astype(np.float16), None),  # checked approximately
        (RGB8 > 127, (RGB8 > 127).astype(np.uint8) * 255),  # bool
        (RGB8.astype(np.int64), RGB8),  # other ints in 0..255
        (RGB8.astype(np.int16), RGB8),
    ],
    ids=["hwc-u8", "chw-u8", "hw-u8", "hw1-u8", "1hw-u8", "rgba-opaque", "rgba-clear", "u16",
         "f32", "f64", "f16", "bool", "i64", "i16"],
)
def test_arrays(array: np.ndarray, expected: np.ndarray | None) -> None:
    a = load_image(array)
    _assert_rgb8(a, (6, 7))
    if expected is None:
        assert np.abs(a.astype(int) - RGB8).max() <= 1
    else:
        assert np.array_equal(a, expected)


def test_array_output_is_a_copy() -> None:
    src = RGB8.copy()
    a = load_image(src)
    a[:] = 0
    assert np.array_equal(src, RGB8)


def test_uint16_scaling_and_float_rounding() -> None:
    a = load_image(np.array([[0, 257, 32896, 65535]], np.uint16))
    assert a[0, :, 0].tolist() == [0, 1, 128, 255]
    b = load_image(np.array([[0.0, 0.5, 1.0, 1.0004, -0.0004]], np.float32))  # tiny overshoot clipped
    assert b[0, :, 0].tolist() == [0, 128, 255, 255, 0]


def test_two_channel_array_is_grey_alpha() -> None:
    a = load_image(np.stack([np.full((2, 2), 50, np.uint8), np.array([[255, 0], [255, 0]], np.uint8)], -1))
    assert a[:, 0].tolist() == [[50] * 3] * 2 and a[:, 1].tolist() == [[255] * 3] * 2


def test_large_array_is_downscaled() -> None:
    a = load_image(np.zeros((5000, 100, 3), np.uint8), max_side=1000)
    _assert_rgb8(a, (1000, 20))


@pytest.mark.parametrize(
    "array, words",
    [
        (RGB8.astype(np.float32), "[0, 1]"),  # 0..255 floats
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.array([[0.5, np.inf]]), "infinite"),
        (np.array([[0, 300]], np.int32), "0..255"),
        (np.array([[-1, 3]], np.int8), "0..255"),
        (np.zeros((4, 4), np.complex64), "dtype"),
        (np.zeros((2, 3, 4, 5), np.uint8), "shape"),
        (np.zeros((6, 7, 5), np.uint8), "channel"),
        (np.zeros((0, 7, 3), np.uint8), "no pixels"),
        (np.zeros(7, np.uint8), "shape"),
        (np.array([["a"]]), "dtype"),
    ],
    ids=["float255", "nan", "inf", "i32-range", "i8-negative", "complex", "4d", "5-channels", "empty",
         "1d", "str"],
)
def test_bad_arrays(array: np.ndarray, words: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(array)
    msg = str(info.value)
    assert msg.startswith("<array>: ") and words in msg and "\n" not in msg


def test_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    chw = torch.from_numpy(RGB8.transpose(2, 0, 1).copy()).float() / 255
    assert np.array_equal(load_image(chw), RGB8)
    assert np.abs(load_image(chw.to(torch.bfloat16)).astype(int) - RGB8).max() <= 2
    assert np.array_equal(load_image(torch.from_numpy(RGB8)), RGB8)
    x = chw.clone().requires_grad_(True)
    assert np.array_equal(load_image(x), RGB8)
    with pytest.raises(ImageError, match="NaN"):
        load_image(torch.full((3, 4, 4), float("nan")))


# -- list_images ---------------------------------------------------------------------------------
def test_list_images(tmp_path: Path) -> None:
    for rel in ("b.PNG", "a.jpg", "c.txt", ".hidden.jpg", "sub/d.png", "sub/e.webp", "x.JPEG"):
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    top = [tmp_path / n for n in ("a.jpg", "b.PNG", "x.JPEG")]
    assert list_images(tmp_path) == top
    assert list_images(str(tmp_path)) == top
    deep = top + [tmp_path / "sub/d.png", tmp_path / "sub/e.webp"]
    assert list_images([tmp_path], recursive=True) == sorted(deep, key=str)
    # files named explicitly are kept whatever their extension; duplicates collapse
    explicit = list_images([tmp_path / "c.txt", tmp_path, tmp_path / "a.jpg"])
    assert explicit == sorted(top + [tmp_path / "c.txt"], key=str)
    # glob patterns, ** across directories
    assert list_images(str(tmp_path / "*.jpg")) == [tmp_path / "a.jpg"]
    assert list_images([str(tmp_path / "**" / "*.png")]) == [tmp_path / "sub/d.png"]  # glob is case-sensitive
    assert list_images([]) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list_images(empty) == []
    with pytest.raises(ImageError, match="no such file") as info:
        list_images([tmp_path / "a.jpg", tmp_path / "missing.jpg"])
    assert "missing.jpg" in str(info.value)
    with pytest.raises(ImageError, match="pattern"):
        list_images(str(tmp_path / "*.tiff"))


def test_a_broken_link_in_a_folder_is_listed_and_named_when_loaded(tmp_path: Path) -> None:
    """A symbolic link to a photo moved or unmounted since (``x.jpg -> /mnt/card/x.jpg``) was left out
    of a folder's listing without a word: ``reconstruct DIR`` reported one photo fewer, in neither
    its outputs nor its failures. It is listed (by a pattern too), and loading it says what it is."""
    from voxface.image import load_image

    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "card" / "gone.jpg")
    (tmp_path / "notes.txt").symlink_to(tmp_path / "card" / "notes.txt")  # no image name: not listed
    listed = [tmp_path / "a.png", tmp_path / "gone.jpg"]
    assert list_images(tmp_path) == listed == list_images(str(tmp_path / "*"))
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "gone.jpg")
    assert str(info.value) == (f"{tmp_path / 'gone.jpg'}: a broken symbolic link: its target "
                               f"{tmp_path / 'card' / 'gone.jpg'} does not exist")


def test_recursive_folders_leave_out_hidden_folders(tmp_path: Path) -> None:
    # a phone's DCIM/.thumbnails held a small copy of every photo: -r reconstructed each twice
    for rel in ("Camera/IMG_1.jpg", ".thumbnails/IMG_1.jpg", "Camera/.cache/x.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert list_images(tmp_path, recursive=True) == [tmp_path / "Camera/IMG_1.jpg"]
    assert list_images(str(tmp_path / "**" / "*.jpg")) == [tmp_path / "Camera/IMG_1.jpg"]  # as ** patterns
    # a hidden folder named as the item is searched
    assert list_images(tmp_path / ".thumbnails", recursive=True) == [tmp_path / ".thumbnails/IMG_1.jpg"]


def test_an_unreadable_folder_is_one_image_error_not_an_empty_one(tmp_path: Path, monkeypatch) -> None:
    # a folder without read permission was Python's PermissionError, and with recursive=True
    # an empty folder ("DIR: no images found")
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    real_stat = Path.stat

    def stat(self: Path, **kw: object) -> object:  # what stat of a path in a folder without x says
        if self.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kw)

    if os.geteuid() == 0:  # root reads a chmod 000 folder: refuse it as the system would
        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(Path, "stat", stat)
    locked.chmod(0)
    try:
        for recursive in (False, True):
            with pytest.raises(ImageError, match=r"locked: cannot read folder \(Permission denied\)$"):
                list_images(locked, recursive=recursive)
        for item in (locked / "a.jpg", str(locked / "*.jpg")):  # was PermissionError from is_file
            with pytest.raises(ImageError, match=r"cannot read \(Permission denied\)$"):
                list_images(item)
    finally:
        locked.chmod(0o755)
    monkeypatch.undo()
    assert list_images(locked, recursive=True) == [locked / "a.jpg"]


def test_folders_of_formats_pillow_reads_are_listed(tmp_path: Path) -> None:
    # a folder of AVIF photos (or APNG, JPEG 2000, MPO) was "no images found"
    from PIL import features

    for name in ("a.avif", "b.apng", "c.jp2", "d.j2k", "e.MPO"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.avif", "b.apng", "c.jp2", "d.j2k", "e.MPO"]
    if features.check("avif"):
        Image.new("RGB", (8, 6), (10, 200, 30)).save(tmp_path / "a.avif", quality=100)
        assert load_image(list_images(tmp_path)[0]).shape == (6, 8, 3)


def test_image_extensions() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


def test_an_unreadable_sub_folder_is_named_not_skipped_silently(tmp_path: Path, monkeypatch) -> None:
    # with recursive=True a sub-folder without read permission (a person's folder, a disk's
    # lost+found) was skipped without a word: its photos were missing from the batch, which reported
    # success. One warning names it; the readable folders are listed
    import os

    for person in ("ann", "bob", ".cache"):
        (tmp_path / person).mkdir()
        (tmp_path / person / "a.jpg").write_bytes(b"x")
    real_scandir = os.scandir
    refused = {tmp_path / "bob", tmp_path / ".cache"}

    def scandir(path: object = ".") -> object:
        if Path(path) in refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(UserWarning) as record:
        assert list_images(tmp_path, recursive=True) == [tmp_path / "ann" / "a.jpg"]
    # the hidden folder is not searched, so not refused
    assert [str(w.message) for w in record] == [f"{tmp_path / 'bob'}: cannot read folder (Permission denied); "
                                                "its photos are left out"]


def test_a_pipe_is_not_called_missing(tmp_path: Path) -> None:
    # `voxface reconstruct <(curl ...)` or a named pipe: the path exists, and it was
    # 'no such file or directory'
    import os

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"photo\.jpg: is not a regular file or folder \(a pipe or a device\?\)"):
        list_images([fifo])
    with pytest.raises(ImageError, match=r"gone\.jpg: no such file or directory$"):
        list_images([tmp_path / "gone.jpg"])


def test_loading_a_pipe_says_it_is_not_a_regular_file(tmp_path: Path) -> None:
    # load_image / model.reconstruct of a named pipe: its size reads as 0, so it was "file is empty (0 bytes)"
    # (opening it to read would block until a writer came)
    import os

    from voxface.image import load_image

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"photo\.png: is not a regular file \(a pipe or a device\?\): save the "
                                         r"photo to a file first$"):
        load_image(fifo)


# the start of an iPhone photo: an ISO base media 'ftyp' box with the HEIC brands (then its 'meta' box)
_HEIC_HEAD = b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf\x00\x00\x01Vmeta" + bytes(200)


def test_heic_photos_are_listed_and_name_the_package_that_reads_them(tmp_path: Path, monkeypatch) -> None:
    # a folder of iPhone photos was 'no images found' and one named HEIC photo 'not an image, or a
    # format Pillow cannot read': they are listed, and without pillow-heif each says what reads it
    import types

    (tmp_path / "IMG_0001.HEIC").write_bytes(_HEIC_HEAD)
    (tmp_path / "b.heif").write_bytes(_HEIC_HEAD)
    (tmp_path / "c.avif").write_bytes(_HEIC_HEAD.replace(b"heic", b"avif"))
    assert [p.name for p in list_images(tmp_path)] == ["IMG_0001.HEIC", "b.heif", "c.avif"]
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # not installed
    for src in (tmp_path / "IMG_0001.HEIC", io.BytesIO(b"JUNK" + _HEIC_HEAD)):
        if isinstance(src, io.BytesIO):
            src.seek(4)  # a stream whose picture starts further in
        with pytest.raises(ImageError, match=r"HEIC/HEIF photo .*pip install .voxface\[heic\]. \(or pillow-heif\)") as e:
            load_image(src)
        assert "\n" not in str(e.value)
    # an AVIF brand is Pillow's (no pillow-heif hint); its header alone is a cut-short AVIF, not 'not an image'
    with pytest.raises(ImageError, match="c.avif: cannot read image header: truncated or corrupt AVIF data$"):
        load_image(tmp_path / "c.avif")

    # with pillow-heif installed its opener is registered once and the file read again, once
    calls = []
    monkeypatch.setattr("voxface.image._HEIF_REGISTERED", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", types.SimpleNamespace(register_heif_opener=lambda: calls.append(1)))
    for _ in range(2):
        with pytest.raises(ImageError, match="truncated or corrupt HEIF data$"):  # the fake reads nothing
            load_image(tmp_path / "b.heif")
    assert calls == [1]


def test_a_long_jpeg_is_decoded_reduced_too(tmp_path: Path, monkeypatch) -> None:
    # libjpeg's reduced decode was asked for a max_side x max_side square, which Pillow grants only
    # where both sides allow it: a 4000x800 panorama was decoded at full size for a 1000-px result
    from voxface import image as image_mod

    p = tmp_path / "pano.jpg"
    ramp = np.linspace(0, 255, 4000).astype(np.uint8)
    Image.fromarray(np.repeat(np.repeat(ramp[None, :, None], 800, 0), 3, 2)).save(p, quality=90)
    decoded = []
    to_8bit = image_mod._to_8bit
    monkeypatch.setattr(image_mod, "_to_8bit", lambda im, name, **kw: decoded.append(im.size) or to_8bit(im, name, **kw))
    a = load_image(p, max_side=1000)
    assert decoded == [(1000, 200)]  # 1/4 scale: exactly the longer side asked for
    _assert_rgb8(a, (200, 1000))
    assert abs(int(a[100, 500, 0]) - 128) <= 4 and a[100, 0, 0] <= 4 and a[100, -1, 0] >= 251  # the ramp, whole
    decoded.clear()
    assert load_image(p, max_side=1001).shape == (200, 1001, 3) and decoded == [(2000, 400)]  # 1/2: at least 1001
