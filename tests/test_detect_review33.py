"""Review 33 of image loading, face detection and cropping: regression tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from voxface.errors import ImageError
from voxface.image import load_image


@pytest.mark.parametrize("fmt, keep", [("PNG", 40), ("GIF", 40), ("TIFF", 40)])
def test_a_photo_cut_short_in_its_header_is_not_called_no_image(tmp_path: Path, fmt: str, keep: int) -> None:
    """A half-downloaded PNG, GIF or TIFF cut inside its header was 'not an image, or a format Pillow
    cannot read' (no reader accepts it), as if the format were unknown; it names the format and says
    the data is truncated or corrupt."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(buf, fmt)
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[:keep])
    with pytest.raises(ImageError) as info:
        load_image(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: cannot read image header: truncated or corrupt {fmt} data"), msg
    assert "\n" not in msg


def test_text_and_unknown_formats_are_still_no_image(tmp_path: Path) -> None:
    for name, data in [("notes.png", b"this is a text file, not a picture\n"),
                       ("movie.jpg", b"\x00\x00\x00\x18ftypmp42" + bytes(64))]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=r": not an image, or a format Pillow cannot read$"):
            load_image(tmp_path / name)


def test_an_intact_tiff_pillow_cannot_read_is_not_called_no_image() -> None:
    """A 3-channel float TIFF (Pillow has no such mode) is named a TIFF Pillow cannot read."""
    tifffile = pytest.importorskip("tifffile")
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((4, 4, 3), np.float32), photometric="rgb")
    with pytest.raises(ImageError, match=r"TIFF Pillow cannot read \(unknown pixel mode\)$"):
        load_image(io.BytesIO(buf.getvalue()))


def test_a_symbolic_link_loop_in_a_folder_is_listed_not_a_traceback(tmp_path: Path) -> None:
    """A folder holding a link loop named like a photo (b.jpg -> b.jpg; c1.jpg -> c2.jpg -> c1.jpg)
    made list_images raise Python's RuntimeError ('Symlink loop from ...') from Path.resolve; the
    loops are listed, as broken links are, and loading one is one ImageError naming it."""
    from voxface.image import list_images

    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").symlink_to("b.jpg")
    (tmp_path / "c1.jpg").symlink_to("c2.jpg")
    (tmp_path / "c2.jpg").symlink_to("c1.jpg")
    names = ["a.jpg", "b.jpg", "c1.jpg", "c2.jpg"]
    assert [p.name for p in list_images(tmp_path)] == names
    assert [p.name for p in list_images(tmp_path, recursive=True)] == names
    assert [p.name for p in list_images([str(tmp_path / "*.jpg"), tmp_path / "a.jpg"])] == names
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "b.jpg")
    assert str(info.value).startswith(f"{tmp_path / 'b.jpg'}: a symbolic link that leads to no file (")
    assert "\n" not in str(info.value)


def test_a_named_dead_link_is_not_called_missing(tmp_path: Path) -> None:
    """list_images (which `voxface reconstruct x.jpg` runs first) said 'no such file or directory' of a
    link `ls` lists: a broken one (its photo moved) or a loop; it says what load_image says of it."""
    from voxface.image import list_images

    (tmp_path / "moved.jpg").symlink_to(tmp_path / "gone" / "moved.jpg")
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    for f in (list_images, load_image):
        with pytest.raises(ImageError, match=rf"^{tmp_path / 'moved.jpg'}: a broken symbolic link: its target "
                                             rf"{tmp_path / 'gone' / 'moved.jpg'} does not exist$"):
            f(tmp_path / "moved.jpg")
        with pytest.raises(ImageError, match=rf"^{tmp_path / 'loop.jpg'}: a symbolic link that leads to no file \("):
            f(tmp_path / "loop.jpg")
    with pytest.raises(ImageError, match=r"nothere.jpg: no such file or directory$"):
        list_images(tmp_path / "nothere.jpg")


def test_a_pil_image_is_detected_as_reconstruct_reads_it(tmp_path: Path) -> None:
    """detect_and_crop(Image.open(p)) read the pixels as np.asarray has them: a phone's portrait lying
    on its side (its EXIF orientation left out) and a GIF's palette indices as grey, each 'no face
    found' naming '<array>', where detect_and_crop(p) and model.reconstruct(Image.open(p)) find the
    face. A PIL image is loaded as a path is (load_image); the pixel functions refuse a PIL image
    whose mode np.asarray misreads."""
    from skimage import data

    from voxface.detect import crop_image, detect_and_crop, detect_faces
    from voxface.errors import InputTypeError, NoFaceError

    a = data.astronaut()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: shown upright
    Image.fromarray(a).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(a).quantize(256).save(tmp_path / "astronaut.gif")
    for name in ("phone.jpg", "astronaut.gif"):
        (crop, box, face), = detect_and_crop(tmp_path / name)
        with Image.open(tmp_path / name) as im:
            (crop_pil, box_pil, face_pil), = detect_and_crop(im)
        assert box_pil == pytest.approx(box) and face_pil == face and np.array_equal(crop_pil, crop)
        with open(tmp_path / name, "rb") as fh:  # an open file, as reconstruct takes it
            assert detect_and_crop(fh)[0][1] == pytest.approx(box)
        assert 150 < box[0] < 175 and 60 < box[1] < 80  # the astronaut's face, upright
    with Image.open(tmp_path / "astronaut.gif") as im:
        with pytest.raises(InputTypeError, match=r"takes RGB or grey pixels, not a PIL image of mode P"):
            detect_faces(im)
        with pytest.raises(InputTypeError, match=r"crop_image\(voxface.load_image\(image\)\)$"):
            crop_image(im, (0, 0, 10))
    Image.new("P", (64, 48)).save(tmp_path / "flat.gif")
    with Image.open(tmp_path / "flat.gif") as im, pytest.raises(NoFaceError) as info:
        detect_and_crop(im)
    assert str(info.value).startswith(f"{tmp_path / 'flat.gif'}: no face found")  # not '<array>'
    assert detect_faces(Image.fromarray(a)) == detect_faces(a)  # RGB PIL pixels are taken as they are


def test_a_file_open_in_text_mode_is_a_type_error_naming_it(tmp_path: Path) -> None:
    """load_image(open(path)) said '<path>: cannot read image header ('utf-8' codec can't decode byte
    0xff ...)', blaming the photo for the mode it was opened in."""
    from voxface.errors import InputTypeError

    path = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 6)).save(path)
    with open(path) as fh, pytest.raises(InputTypeError, match=rf"^load_image: {path} is open in text mode; "
                                                                r"open it with open\(path, 'rb'\)"):
        load_image(fh)
    with pytest.raises(InputTypeError, match=r"<stream> is open in text mode"):
        load_image(io.StringIO("not a picture"))
    with open(path, "rb") as fh:
        assert load_image(fh).shape == (6, 8, 3)


def test_a_raw_camera_file_is_not_read_as_its_preview(tmp_path: Path) -> None:
    """A DNG (TIFF-based: its first picture a reduced-resolution preview, the raw image in a SubIFD)
    loaded as its thumbnail without a word: a face of a few pixels, and crop boxes in the preview's
    pixels where the photo's are promised. It is one ImageError naming the file."""
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "IMG_0001.dng"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((48, 64, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1)
        tw.write(np.zeros((768, 1024), np.uint16), photometric="minisblack")  # the SubIFD: the photo
    with pytest.raises(ImageError, match=rf"^{path}: is a raw camera file \(a DNG, or another TIFF-based raw "
                                         r"format\): Pillow reads only its 64x48 preview"):
        load_image(path)
    # a TIFF holding only a picture marked reduced (no sub-pictures), and a multi-page TIFF, load as before
    lone = tmp_path / "lone.tif"
    tifffile.imwrite(lone, np.zeros((48, 64, 3), np.uint8), photometric="rgb", subfiletype=1)
    assert load_image(lone).shape == (48, 64, 3)
    pages = tmp_path / "pages.tif"
    Image.new("RGB", (20, 10)).save(pages, save_all=True, append_images=[Image.new("RGB", (5, 5))])
    assert load_image(pages).shape == (10, 20, 3)
