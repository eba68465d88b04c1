"""Generate a corpus of awkward image files (and two real photos) for the loader and detector tests.

    >>> from tests.bad_images import make_corpus, EXPECT_ERROR   # or: from .bad_images import ...
    >>> files = make_corpus(tmp_path)          # {name: Path}
    >>> files["truncated_jpeg"]                 # .../truncated.jpg

Everything is generated from scratch (Pillow, numpy, scikit-image's bundled photos): no download.
:data:`EXPECT_ERROR` names the entries :func:`voxface.load_image` must refuse with an
``ImageError``; every other entry must load. :data:`CONTENT` documents what each valid entry shows,
so other tests can check content without re-deriving it. The whole corpus takes about a second to
write; ``huge=False`` leaves out the 10000x10000 JPEG (most of that second).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

#: Entries that must raise ImageError when loaded.
EXPECT_ERROR = frozenset(
    {"zero_bytes", "text_as_png", "text_as_jpg", "truncated_jpeg", "truncated_png", "absurd_size_png"}
)

#: Size of the huge JPEG (width, height).
HUGE_SIZE = (10000, 10000)

#: What each loadable entry contains (for content checks).
CONTENT = {
    "one_pixel": "1x1 RGB pixel (10, 20, 30)",
    "huge_jpeg": "10000x10000 smooth RGB gradient, quality 50",
    "gray_png": "64x48 L; pixel value = 4 * x (x = column)",
    "la_png": "32x32 LA grey 100; left half alpha 255, right half alpha 0 (-> white)",
    "rgba_png": "32x32 red; columns 0-9 alpha 255, 10-19 alpha 128, 20-31 alpha 0",
    "png16": "4x4 16-bit grey (I;16); columns 0, 16448, 32896, 65535 (-> 0, 64, 128, 255)",
    "cmyk_jpeg": "32x32 CMYK pure cyan (255, 0, 0, 0) -> RGB about (0, 255, 255)",
    "exif_rotated_jpeg": "stored 60 wide x 40 high, grey with a red 12x12 square at the stored "
                         "top-left, EXIF orientation 6: displays 40 wide x 60 high, red at top-right",
    "animated_gif": "2 frames 16x16: red then blue; the first frame is red",
    "palette_png": "32x16 P with transparency: left half index 0 (transparent -> white), "
                   "right half index 1 (green)",
    "no_face": "skimage.data.coffee(), 600x400 JPEG, no face",
    "two_faces": "skimage.data.astronaut() at 512 and 320 px side by side (832x512 PNG, "
                 "grey background); larger face left",
}

#: Where the two astronaut copies sit in ``two_faces``: (x0, y0, side) of each pasted copy.
TWO_FACES_LAYOUT = ((0, 0, 512), (512, 96, 320))


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _noise_rgb(seed: int, size: int = 128) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size, dtype=np.float64)[None, :, None]
    a = base + rng.normal(0, 40, (size, size, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def _absurd_png(path: Path, width: int, height: int) -> Path:
    """A syntactically valid PNG header claiming ``width x height`` with a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return _write_bytes(path, png + chunk(b"IEND", b""))


def make_corpus(directory: str | Path, *, huge: bool = True) -> dict[str, Path]:
    """Write the corpus into ``directory`` (created if needed) and return ``{name: path}``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    # -- unreadable ------------------------------------------------------------------------------
    out["zero_bytes"] = _write_bytes(d / "zero_bytes.jpg", b"")
    out["text_as_png"] = _write_bytes(d / "notes.png", b"this is a text file, not a picture\n")
    out["text_as_jpg"] = _write_bytes(d / "readme.jpg", b"hello\nworld\n" * 20)
    buf = d / "_full.jpg"
    _noise_rgb(1).save(buf, quality=90)
    data = buf.read_bytes()
    buf.unlink()
    out["truncated_jpeg"] = _write_bytes(d / "truncated.jpg", data[: len(data) // 2])
    buf = d / "_full.png"
    _noise_rgb(2).save(buf)
    data = buf.read_bytes()
    buf.unlink()
    out["truncated_png"] = _write_bytes(d / "truncated.png", data[: len(data) // 2])
    out["absurd_size_png"] = _absurd_png(d / "absurd_size.png", 100_000, 100_000)

    # -- odd but valid ---------------------------------------------------------------------------
    p = d / "one_pixel.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(p)
    out["one_pixel"] = p

    if huge:
        # a smooth gradient compresses to a few hundred kB; built from 256-px gradients resized
        # with bilinear filtering, so only the 10000x10000 bands themselves are allocated
        p = d / "huge.jpg"
        g = Image.linear_gradient("L").resize(HUGE_SIZE, Image.Resampling.BILINEAR)
        rgb = Image.merge("RGB", (g, g.transpose(Image.Transpose.ROTATE_90), Image.new("L", HUGE_SIZE, 128)))
        del g
        rgb.save(p, quality=50)
        del rgb
        out["huge_jpeg"] = p

    p = d / "gray.png"
    Image.fromarray(np.tile((np.arange(64) * 4).astype(np.uint8), (48, 1)), "L").save(p)
    out["gray_png"] = p

    p = d / "la.png"
    la = np.zeros((32, 32, 2), np.uint8)
    la[..., 0] = 100
    la[:, :16, 1] = 255
    Image.fromarray(la, "LA").save(p)
    out["la_png"] = p

    p = d / "rgba.png"
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :10, 3] = 255
    rgba[:, 10:20, 3] = 128
    Image.fromarray(rgba, "RGBA").save(p)
    out["rgba_png"] = p

    p = d / "gray16.png"
    v16 = np.tile(np.array([0, 16448, 32896, 65535], np.uint16), (4, 1))
    Image.fromarray(v16).save(p)  # mode I;16
    out["png16"] = p

    p = d / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (255, 0, 0, 0)).save(p, quality=95)
    out["cmyk_jpeg"] = p

    p = d / "exif_rotated.jpg"
    stored = np.full((40, 60, 3), 128, np.uint8)
    stored[:12, :12] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored, "RGB").save(p, quality=95, exif=exif.tobytes())
    out["exif_rotated_jpeg"] = p

    p = d / "animated.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["animated_gif"] = p

    p = d / "palette.png"
    pal = Image.new("P", (32, 16), 0)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * (254 * 3))
    pal.paste(1, (16, 0, 32, 16))
    pal.save(p, transparency=0)
    out["palette_png"] = p

    # -- real photos (scikit-image's bundled, public-domain / CC0 pictures) ---------------------
    from skimage import data as skdata

    p = d / "coffee.jpg"
    Image.fromarray(skdata.coffee()).save(p, quality=92)
    out["no_face"] = p

    p = d / "two_faces.png"
    astro = Image.fromarray(skdata.astronaut())
    canvas = Image.new("RGB", (832, 512), (128, 128, 128))
    for x0, y0, side in TWO_FACES_LAYOUT:
        canvas.paste(astro.resize((side, side), Image.Resampling.LANCZOS), (x0, y0))
    canvas.save(p)
    out["two_faces"] = p
    return out
