"""Review 37 of image loading, detection and cropping: what earlier reviews left."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from voxface.image import load_image


# -- hand-made ICC profiles (no profile file ships with the system) -------------------------------
def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def _xyz(*v: float) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15(x) for x in v)


def _desc(text: str) -> bytes:
    t = text.encode() + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(t)) + t + bytes(8) + bytes(3) + bytes(67)


def _icc(device_class: bytes, space: bytes, pcs: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2.1 profile of ``tags`` (signature, data)."""
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    head = (struct.pack(">I", offset + len(body)) + bytes(4) + struct.pack(">I", 0x02100000) + device_class + space
            + pcs + bytes(12) + b"acsp" + bytes(28) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48))
    return head + struct.pack(">I", len(tags)) + table + body


def _gamma(g: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, int(round(g * 256)))


#: Display P3 (Apple's D50-adapted colorants; a 2.2 gamma for its sRGB-like curve): every iPhone photo's space
P3 = _icc(b"mntr", b"RGB ", b"XYZ ", [
    (b"desc", _desc("Display P3 (test)")), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
    (b"rXYZ", _xyz(0.5151, 0.2412, -0.0011)), (b"gXYZ", _xyz(0.2920, 0.6922, 0.0419)),
    (b"bXYZ", _xyz(0.1571, 0.0666, 0.7841)), (b"rTRC", _gamma(2.2)), (b"gTRC", _gamma(2.2)), (b"bTRC", _gamma(2.2))])

#: A press profile (lut8 A2B0) printing every ink mix as one and the same grey
_LINEAR = bytes(range(256))
GREY_PRESS = _icc(b"prtr", b"CMYK", b"Lab ", [
    (b"desc", _desc("grey press (test)")), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
    (b"A2B0", b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
     + _LINEAR * 4 + bytes([128, 128, 128]) * 16 + _LINEAR * 3)])


def _file(im: Image.Image, fmt: str, **kw) -> io.BytesIO:
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    b.seek(0)
    return b


def _photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_a_photo_with_a_colour_profile_is_converted_to_srgb(fmt: str) -> None:
    """A Display P3 photo (an iPhone's) was read as if its numbers were sRGB: the skin duller and
    greener than the photo (the astronaut's face 7 levels less red), the colours the encoder and the
    skin check were never meant to see. Its profile is applied as a photo viewer applies it."""
    a = _photo()
    kw = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    plain = load_image(_file(Image.fromarray(a), fmt, **kw))
    tagged = load_image(_file(Image.fromarray(a), fmt, icc_profile=P3, **kw))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    want = np.asarray(ImageCms.profileToProfile(Image.fromarray(plain), ImageCms.ImageCmsProfile(io.BytesIO(P3)),
                                                srgb, outputMode="RGB"))
    assert np.array_equal(tagged, want)
    face = tagged[90:170, 190:260].reshape(-1, 3).mean(0) - plain[90:170, 190:260].reshape(-1, 3).mean(0)
    assert face[0] > 5 and face[2] < -2  # P3's skin in sRGB numbers: redder, less blue


def test_a_profile_is_applied_to_the_downscaled_picture_and_keeps_alpha_for_compositing() -> None:
    a = _photo()
    rgba = np.dstack([a, np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))])
    out = load_image(_file(Image.fromarray(rgba), "PNG", icc_profile=P3), max_side=256)
    assert out.shape == (256, 256, 3)
    half = load_image(Image.fromarray(rgba).resize((256, 256), Image.Resampling.LANCZOS, reducing_gap=2.0))
    assert (out[:, :4] >= 250).all() and (half[:, :4] >= 250).all()  # transparent: white either way
    assert np.abs(out[:, -64:].astype(int) - half[:, -64:]).max() > 5  # opaque: the profile's colours


def test_a_cmyk_jpeg_is_read_through_its_press_profile() -> None:
    """A print workflow's CMYK JPEG was converted with Pillow's naive formula whatever its profile."""
    c = Image.fromarray(_photo()).convert("CMYK")
    naive = load_image(_file(c, "JPEG", quality=95))
    assert naive.reshape(-1, 3).std(0).min() > 30  # the photo, converted naively
    out = load_image(_file(c, "JPEG", quality=95, icc_profile=GREY_PRESS))
    assert (out == out[0, 0]).all() and out[0, 0, 0] == out[0, 0, 1] == out[0, 0, 2]  # every mix the same grey


def test_srgb_grey_and_unreadable_profiles_leave_the_pixels_as_they_are() -> None:
    a = _photo()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert np.array_equal(load_image(_file(Image.fromarray(a), "PNG", icc_profile=srgb)), a)
    assert np.array_equal(load_image(_file(Image.fromarray(a), "PNG", icc_profile=b"not a profile" * 16)), a)
    grey = a[..., 0]  # an RGB profile on a grey picture (some tools tag every file)
    assert np.array_equal(load_image(_file(Image.fromarray(grey), "PNG", icc_profile=P3))[..., 1], grey)


def _png(values: np.ndarray, bit_depth: int, transparent: int) -> io.BytesIO:
    """A grey PNG (colour type 0) of ``values (H, W)`` at ``bit_depth`` with a tRNS transparent value."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w = values.shape
    if bit_depth == 16:
        rows = [r.astype(">u2").tobytes() for r in values]
    else:
        rows = [np.packbits(np.unpackbits(r.astype(np.uint8)[:, None], axis=1)[:, 8 - bit_depth:]).tobytes()
                for r in values]
    return io.BytesIO(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, 0, 0, 0, 0))
                      + chunk(b"tRNS", struct.pack(">H", transparent))
                      + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bit_depth", [1, 2, 4, 8, 16])
def test_a_grey_pngs_transparent_value_is_white_at_every_bit_depth(bit_depth: int) -> None:
    """The module docstring: a grey PNG's transparent colour (tRNS) is composited over white. At 8 bits
    it was; a 1- or 16-bit one showed the value under it (black: Pillow's conversions drop it), and at
    2 or 4 bits Pillow compared the file's value with pixels it had scaled to 8 bits (1 with 85)."""
    top = (1 << bit_depth) - 1
    values = np.array([[0, 0, 0, 0], [top, top, top, top]])  # 0 (black) transparent, white opaque
    out = load_image(_png(values, bit_depth, transparent=0))
    assert (out == 255).all()
    if bit_depth > 1:  # a grey between: transparent, and black opaque
        values = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
        if bit_depth == 16:  # 0 and 1 round to one 8-bit value: the file's own values decide
            values = np.array([[1, 1, 1, 1], [0, 0, 2, 2]])
        out = load_image(_png(values, bit_depth, transparent=1))
        assert (out[0] == 255).all() and (out[1] == 0).all()


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -2.0, float("inf")])
def test_detect_and_crop_refuses_a_source_scale_that_is_no_positive_factor(bad: float) -> None:
    """NaN, 0 or a negative source_scale gave NaN, zero-sized or mirrored boxes (crop_box, FaceBox)
    without a word; they are refused before the scan."""
    from voxface.detect import detect_and_crop
    from voxface.errors import InputError

    with pytest.raises(InputError, match="source_scale"):
        detect_and_crop(np.zeros((8, 8, 3), np.uint8), source_scale=bad)
    with pytest.raises(TypeError, match="source_scale"):
        detect_and_crop(np.zeros((8, 8, 3), np.uint8), source_scale="2")


def test_detect_faces_refuses_a_pil_image_its_exif_orientation_says_is_stored_turned() -> None:
    """A phone's portrait, stored on its side with an EXIF orientation, passed to detect_faces or
    crop_image as a PIL image (Image.open(p).convert('RGB') keeps the tag) was scanned lying down:
    no face, or boxes in pixels that are not the upright photo's (detect_and_crop and load_image
    turn it). It is the InputTypeError pointing at load_image, as a palette image is."""
    from voxface.detect import crop_image, detect_faces

    a = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown turned 90 degrees clockwise
    stored = _file(Image.fromarray(np.ascontiguousarray(np.rot90(a, 1))), "JPEG", quality=95, exif=exif.tobytes())
    im = Image.open(stored).convert("RGB")
    with pytest.raises(TypeError, match=r"EXIF orientation \(6\).*load_image"):
        detect_faces(im)
    with pytest.raises(TypeError, match=r"EXIF orientation \(6\)"):
        crop_image(im, (0, 0, 100))
    assert detect_faces(load_image(im))  # upright, the face is found
    exif[0x0112] = 1
    upright = Image.open(_file(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes()))
    assert crop_image(upright, (0, 0, 512), 64).shape == (64, 64, 3)  # orientation 1: taken as it is
