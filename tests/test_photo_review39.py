"""Review 39 of photo input: files and arrays as users give them to load_image / reconstruct."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from voxface.errors import ImageError
from voxface.image import load_image

tifffile = pytest.importorskip("tifffile")  # a dependency of scikit-image's


def _planes16() -> tuple[np.ndarray, np.ndarray]:
    """16-bit RGB planes ``(3, 37, 53)`` and the 8-bit RGB ``(37, 53, 3)`` Pillow reads from the
    same samples stored interleaved (each sample's high byte)."""
    planes = np.random.default_rng(0).integers(0, 65536, (3, 37, 53), dtype=np.uint16)
    return planes, (np.moveaxis(planes, 0, -1) >> 8).astype(np.uint8)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("rowsperstrip", [None, 5])
def test_a_16_bit_tiff_of_separate_colour_planes_loads_its_colours(tmp_path, byteorder, rowsperstrip):
    # Pillow's raw reader unpacked each plane's 16-bit samples as 8-bit ones: other colours, no error
    planes, expected = _planes16()
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate", byteorder=byteorder,
                     rowsperstrip=rowsperstrip)
    interleaved = tmp_path / "interleaved.tif"
    tifffile.imwrite(interleaved, np.moveaxis(planes, 0, -1), photometric="rgb")
    np.testing.assert_array_equal(load_image(interleaved), expected)  # the reference: the same samples
    np.testing.assert_array_equal(load_image(path), expected)
    np.testing.assert_array_equal(load_image(io.BytesIO(path.read_bytes())), expected)
    with Image.open(path) as im:
        np.testing.assert_array_equal(load_image(im), expected)


def test_a_16_bit_tiff_of_separate_planes_with_alpha_is_composited(tmp_path):
    planes, rgb = _planes16()
    alpha = np.zeros(planes.shape[1:], np.uint16)
    alpha[:, :20] = 65535  # opaque on the left, transparent (white) on the right
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, np.concatenate([planes, alpha[None]]), photometric="rgb", planarconfig="separate",
                     extrasamples=[2])
    out = load_image(path)
    np.testing.assert_array_equal(out[:, :20], rgb[:, :20])
    assert (out[:, 20:] == 255).all()


def test_a_16_bit_tiff_of_separate_planes_pillow_cannot_read_is_one_line_naming_it(tmp_path):
    # RGB plus an unspecified extra plane: no libtiff rawmode for it; an error, never other colours
    planes = np.random.default_rng(1).integers(0, 65536, (4, 9, 11), dtype=np.uint16)
    path = tmp_path / "extra.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate", extrasamples=[0])
    with pytest.raises(ImageError) as e:
        load_image(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and "PlanarConfiguration 2" in msg


def test_an_8_bit_tiff_of_separate_planes_is_read_as_before(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = tmp_path / "p8.tif"
    tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(load_image(path), rgb)


# -- detection: a face larger than the picture --------------------------------------------------
def test_a_photo_cut_to_the_face_finds_the_face_it_is_cut_from():
    # the astronaut's face cut at the brows and the chin, cheek to cheek: no cascade window fits in
    # the 90x100 picture, and it was 'no face found'
    from skimage import data

    from voxface.detect import detect_and_crop, detect_faces, face_crop_box

    astronaut = data.astronaut()
    whole = detect_faces(astronaut)[0]
    x0, y0 = 180, 80
    cut = np.ascontiguousarray(astronaut[y0:180, x0:270])
    faces = detect_faces(cut)
    assert len(faces) == 1
    face = faces[0]
    assert face.tilt == 0.0 and face.w == face.h
    # the same face as in the whole photo, in the cut's pixels (a few px of the cascade's jitter)
    assert abs(face.x - (whole.x - x0)) < 6 and abs(face.y - (whole.y - y0)) < 6 and abs(face.w - whole.w) < 6
    (crop, box, found), = detect_and_crop(cut)
    assert found == face and np.allclose(box, face_crop_box(face))
    assert crop.shape == (128, 128, 3) and crop.dtype == np.float32
    # the crop reaches past the picture on every side (its edges repeated there)
    assert box[0] < 0 and box[1] < 0 and box[0] + box[2] > 90 and box[1] + box[2] > 100


def test_a_picture_smaller_than_the_smallest_face_still_has_no_face():
    from skimage import data

    from voxface.detect import detect_faces

    # 30 px: under min_size (32): too few pixels of a face for a crop, with or without its edges repeated
    tiny = np.asarray(Image.fromarray(np.ascontiguousarray(data.astronaut()[80:180, 180:270])).resize((27, 30)))
    assert detect_faces(tiny) == []
    assert detect_faces(np.full((200, 160, 3), 128, np.uint8)) == []


# -- arrays: a batch of one ---------------------------------------------------------------------
def test_a_batch_of_one_image_is_that_image_and_a_larger_batch_says_what_it_is():
    import torch

    rgb = np.random.default_rng(3).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    chw = torch.from_numpy(np.moveaxis(rgb, -1, 0).copy()).float() / 255  # a torchvision ToTensor's image
    np.testing.assert_array_equal(load_image(chw[None]), rgb)  # (1, 3, H, W): was 'not one image'
    np.testing.assert_array_equal(load_image(rgb[None]), rgb)  # (1, H, W, 3)
    with pytest.raises(ImageError) as e:
        load_image(torch.stack([chw, chw]))
    msg = str(e.value)
    assert msg.startswith("<array>: array of shape (2, 3, 9, 11) is not one image") and "\n" not in msg
    assert "a batch of 2 images: pass them one at a time" in msg


def test_an_image_files_bytes_are_refused_saying_how_to_pass_them(tmp_path):
    from voxface.errors import InputTypeError

    rgb = np.random.default_rng(4).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    data = buf.getvalue()
    for src in (data, bytearray(data), memoryview(data)):
        with pytest.raises(InputTypeError) as e:
            load_image(src)
        msg = str(e.value)
        assert msg.startswith(f"load_image: unsupported input type {type(src).__name__}; ") and "\n" not in msg
        assert msg.endswith("for an image file's bytes pass io.BytesIO(data)")
    np.testing.assert_array_equal(load_image(io.BytesIO(data)), rgb)  # what it says works
    with pytest.raises(InputTypeError) as e:
        load_image(3.5)
    assert "BytesIO" not in str(e.value)  # not said of what is no file's bytes


@pytest.mark.parametrize("frames", [1, 2])
def test_a_half_downloaded_webp_is_named_as_such(tmp_path, frames):
    from PIL import features

    if not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    rng = np.random.default_rng(5)
    ims = [Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, "WEBP", save_all=frames > 1, append_images=ims[1:])
    path = tmp_path / "photo.webp"
    path.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    with pytest.raises(ImageError) as e:  # was '...: cannot read image header (could not create decoder object)'
        load_image(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: cannot read image header: truncated or corrupt WEBP data") and "\n" not in msg


def test_no_face_in_a_picture_smaller_than_the_smallest_face_points_at_no_detect():
    from voxface.detect import detect_and_crop
    from voxface.errors import NoFaceError

    with pytest.raises(NoFaceError) as e:
        detect_and_crop(np.full((20, 24, 3), 128, np.uint8))
    msg = str(e.value)
    assert msg.startswith("<array>: no face found (") and "at least 32 px wide in the 24x20 image)" in msg
    assert msg.endswith("; the image is smaller than that: a ready face crop goes in with --no-detect (detect=False)")
    assert "\n" not in msg
    with pytest.raises(NoFaceError) as e:  # one as large as the smallest face: not said
        detect_and_crop(np.full((40, 48, 3), 128, np.uint8))
    assert "--no-detect" not in str(e.value) and str(e.value).endswith("in the 48x40 image)")
