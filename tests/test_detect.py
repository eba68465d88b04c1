"""voxface.detect: the LBP cascade on real photos, crop framing as in voxface.crop, padding."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from voxface import detect
from voxface.crop import CROP_SCALE, crop_box_from_landmarks
from voxface.detect import (
    DETECTOR_BOX_TO_LANDMARK_SCALE,
    DETECTOR_CENTER_SHIFT,
    FaceBox,
    crop_image,
    detect_and_crop,
    detect_faces,
    face_crop_box,
)
from voxface.errors import NoFaceError
from voxface.image import load_image

from .bad_images import TWO_FACES_LAYOUT, make_corpus

# The astronaut's face in skimage.data.astronaut() (512x512), read off the picture:
# forehead/hairline to chin and cheek to cheek ...
ASTRONAUT_FACE = (178.0, 62.0, 96.0, 118.0)  # x, y, w, h
# ... and where the 68 landmarks would lie: jaw contour at the ears x 181-270, brow tops y 90 to
# chin y 177.
ASTRONAUT_LANDMARK_BOX = (181.0, 90.0, 270.0, 177.0)  # x0, y0, x1, y1


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _xywh(f: FaceBox) -> tuple[float, float, float, float]:
    return (f.x, f.y, f.w, f.h)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_faces(astronaut: np.ndarray) -> list[FaceBox]:
    return detect_faces(astronaut)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus(tmp_path_factory.mktemp("photos"), huge=False)


# -- detection -----------------------------------------------------------------------------------
def test_astronaut_has_exactly_one_face(astronaut_faces: list[FaceBox]) -> None:
    assert len(astronaut_faces) == 1
    f = astronaut_faces[0]
    assert _iou(_xywh(f), ASTRONAUT_FACE) > 0.6
    assert f.w == pytest.approx(f.h)
    assert f.score >= detect.MIN_NEIGHBORS


def test_astronaut_helmet_false_positive_needs_the_skin_check(astronaut: np.ndarray) -> None:
    # the highlight on the helmet (bottom right) fires about as many windows as the face
    faces = detect_faces(astronaut, min_size=24, skin_check=False)
    assert any(f.x > 380 and f.y > 380 for f in faces)
    faces = detect_faces(astronaut, min_size=24)
    assert len(faces) == 1 and _iou(_xywh(faces[0]), ASTRONAUT_FACE) > 0.6


def test_boxes_are_scaled_back_to_the_original_image(astronaut: np.ndarray,
                                                      astronaut_faces: list[FaceBox]) -> None:
    big = np.repeat(np.repeat(astronaut, 2, axis=0), 2, axis=1)  # 1024x1024, searched at 640
    faces = detect_faces(big)
    assert len(faces) == 1
    ref = astronaut_faces[0]
    assert _iou(_xywh(faces[0]), (2 * ref.x, 2 * ref.y, 2 * ref.w, 2 * ref.h)) > 0.7


def test_grey_image(astronaut: np.ndarray) -> None:
    grey = np.asarray(load_image(astronaut)[..., 1])  # (H, W) uint8
    faces = detect_faces(grey)
    assert len(faces) == 1 and _iou(_xywh(faces[0]), ASTRONAUT_FACE) > 0.6


def test_min_size_larger_than_the_face(astronaut: np.ndarray) -> None:
    assert detect_faces(astronaut, min_size=200) == []


def test_no_face_in_coffee(corpus: dict[str, Path]) -> None:
    path = corpus["no_face"]
    with pytest.raises(NoFaceError) as info:
        detect_and_crop(path)  # a path: loaded, and named in the message
    msg = str(info.value)
    assert msg.startswith(f"{path}: no face found") and "\n" not in msg


def test_no_face_in_flat_image() -> None:
    flat = np.full((300, 400, 3), 127, np.uint8)
    assert detect_faces(flat) == []
    with pytest.raises(NoFaceError, match=r"^<array>: no face found"):
        detect_and_crop(flat)
    with pytest.raises(NoFaceError, match=r"^photo\.jpg: no face found .* 400x300 image"):
        detect_and_crop(flat, path_for_errors="photo.jpg")



def test_no_face_message_is_in_the_photos_pixels_when_loading_downscaled_it(tmp_path: Path) -> None:
    """A photo longer than DEFAULT_MAX_SIDE is searched downscaled; the message's smallest face
    and size are the photo's own (they said "154 px wide in the 4096x1638 image" of a 5120-px photo,
    whose faces below 192 px are missed)."""
    from PIL import Image

    from voxface.image import DEFAULT_MAX_SIDE
    from voxface.reconstruct import prepare_crops

    flat = np.full((2048, 5120, 3), 127, np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(flat).save(path)
    k = 5120 / DEFAULT_MAX_SIDE  # 1.25
    smallest = round(detect._smallest_face(1638, 4096, 640, 32) * k)
    assert smallest == 192
    want = (r"^{}: no face found \(looked for roughly frontal faces, upright or tilted up to about 40 degrees, "
            rf"at least {smallest} px wide in the photo "
            r"\(5120 px on its longer side, read downscaled to 4096x1638\)\); a larger scan \(--scan-size, now 640\) "
            r"finds smaller ones$")  # scanned at 640 px: a larger scan finds smaller faces
    for src, name in ((path, str(path)), (flat, "<array>")):
        with pytest.raises(NoFaceError, match=want.format(re.escape(name))):
            prepare_crops(src, 128, source=name)
    with pytest.raises(NoFaceError, match=want.format(re.escape(str(path)))):
        detect_and_crop(path)
    with pytest.raises(NoFaceError, match=r"at least 32 px wide in the 400x300 image\)$"):  # not downscaled
        prepare_crops(flat[:300, :400], 128)


def test_no_face_message_says_when_the_skin_check_left_a_face_out(astronaut: np.ndarray) -> None:
    # under a warm cast (tungsten light) the cascade finds the face and the skin check refuses it;
    # the message said only "no face found", as for a photo with none
    warm = np.clip(astronaut * np.array([1.3, 1.0, 0.6]), 0, 255).astype(np.uint8)
    with pytest.raises(NoFaceError, match=r"px wide in the 512x512 image\); 1 face-like region left out for "
                                          r"lacking skin colour, .*\(--no-skin-check, or "
                                          r"skin_check=False, keeps it\)$"):
        detect_and_crop(warm)
    (_, _, face), = detect_and_crop(warm, skin_check=False)
    assert _iou(_xywh(face), ASTRONAUT_FACE) > 0.6
    with pytest.raises(NoFaceError, match=r"image\)$"):  # a picture with no face-like region: no such words
        detect_and_crop(np.full((200, 300, 3), (200, 40, 40), np.uint8))


def test_detect_and_crop_reads_any_path_like(astronaut: np.ndarray, tmp_path: Path) -> None:
    # a PurePath (any os.PathLike, as load_image takes) was taken for an array: "got object ()"
    from pathlib import PurePosixPath

    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    (crop, box, face), = detect_and_crop(PurePosixPath(path))
    (crop2, box2, face2), = detect_and_crop(str(path))
    assert box == box2 and face == face2 and np.array_equal(crop, crop2)


def test_no_face_in_a_pil_image_or_stream_names_its_file(tiny_model, tmp_path: Path) -> None:
    """model.reconstruct / encode_photo of a PIL image opened from a file (or an open file) name
    that file when no face is found, as a load error does (it said "<array>: no face found")."""
    from PIL import Image

    from voxface.image import source_name
    from voxface.latent import encode_photo

    path = tmp_path / "flat.png"
    Image.fromarray(np.full((300, 400, 3), 127, np.uint8)).save(path)
    with Image.open(path) as im:
        assert source_name(im) == str(path)
        with pytest.raises(NoFaceError, match=rf"^{re.escape(str(path))}: no face found"):
            tiny_model.reconstruct(im)
        with pytest.raises(NoFaceError, match=rf"^{re.escape(str(path))}: no face found"):
            encode_photo(tiny_model, im)
    with open(path, "rb") as fh, pytest.raises(NoFaceError, match=rf"^{re.escape(str(path))}: no face found"):
        tiny_model.reconstruct(fh)
    assert source_name(Image.new("RGB", (4, 4))) == "<PIL image>"
    assert source_name(np.zeros((4, 4, 3), np.uint8)) == "<array>" and source_name(path) == str(path)
    with pytest.raises(NoFaceError, match=r"^<array>: no face found"):
        tiny_model.reconstruct(np.full((300, 400, 3), 127, np.uint8))

def test_two_faces_largest_first(corpus: dict[str, Path]) -> None:
    img = load_image(corpus["two_faces"])
    both = detect_and_crop(img, all_faces=True)
    faces = [b[2] for b in both]
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    # each box matches the astronaut face of its pasted copy
    for f, (x0, y0, side) in zip(faces, TWO_FACES_LAYOUT):
        k = side / 512
        fx, fy, fw, fh = ASTRONAUT_FACE
        expected = (x0 + k * fx, y0 + k * fy, k * fw, k * fh)
        assert _iou(_xywh(f), expected) > 0.5
    for crop, box, face in both:
        assert crop.shape == (128, 128, 3) and box == pytest.approx(face_crop_box(face))

    one = detect_and_crop(img)  # default: the largest face only
    assert len(one) == 1 and one[0][2] == faces[0]
    assert np.array_equal(one[0][0], both[0][0])


def test_bad_input_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((10, 10, 4), np.uint8))
    # a path (as reconstruct takes) said 'got <U13 ()', numpy's reading of the string
    from voxface.errors import InputTypeError

    for path in ("photo.jpg", Path("photo.jpg")):
        with pytest.raises(InputTypeError, match=r"not a file name \('photo.jpg'\).*load_image"):
            detect_faces(path)


@pytest.mark.parametrize("call, words", [
    (lambda a: detect_and_crop(a, max_side=0), "max_side must be at least 1"),  # was ZeroDivisionError
    (lambda a: detect_faces(a, max_side=2.5), "max_side must be an integer"),  # was [] silently
    (lambda a: detect_faces(a, min_neighbors=0), "min_neighbors must be at least 1"),
    (lambda a: detect_faces(a, min_size=float("nan")), "min_size must be finite"),
    (lambda a: detect_faces(a, max_size=float("inf")), "max_size must be finite"),  # was OverflowError
    (lambda a: detect_and_crop(a, size=0), "size must be at least 1"),  # was ZeroDivisionError
    (lambda a: crop_image(a, (0, 0, 10), 0), "size must be at least 1"),
    (lambda a: crop_image(a, (0, 0, 10), True), "size must be an integer"),  # was a 1x1 crop
    (lambda a: crop_image(a, (0, 0), 16), "crop_box must be three numbers"),
])
def test_bad_options_are_input_errors_naming_the_option(call, words: str) -> None:
    from voxface.errors import VoxfaceError

    with pytest.raises(VoxfaceError, match=words):
        call(np.zeros((40, 40, 3), np.uint8))


def test_cascade_is_loaded_once() -> None:
    assert detect._cascade() is detect._cascade()


@pytest.mark.parametrize("lo, height, width", [(32, 512, 512), (24, 480, 640), (33, 333, 500), (40, 200, 150),
                                               (24, 100, 100)])
@pytest.mark.parametrize("parts", [2, 3, 4])
def test_split_scans_visit_exactly_the_scales_of_one_scan(lo: int, height: int, width: int, parts: int) -> None:
    """The runs a scan is split into are consecutive pieces of the one scan's scale list, bit for
    bit (or there is no split); none is empty."""
    cascade = detect._cascade()
    step = float(np.float32(detect.SCALE_FACTOR))
    hi = min(height, width)
    scales = lambda a, b: np.asarray(cascade._get_valid_scale_factors((a, a), (b, b), step), np.float32)  # noqa: E731
    ranges = detect._scale_ranges(cascade, lo, hi, height, width, parts)
    if ranges is None:
        return
    assert 2 <= len(ranges) <= parts
    runs = [scales(a, b) for a, b in ranges]
    assert all(len(r) for r in runs)
    assert np.concatenate(runs).view(np.uint32).tolist() == scales(lo, hi).view(np.uint32).tolist()


def test_scans_split_between_threads_find_the_same_windows_and_faces(monkeypatch, astronaut: np.ndarray,
                                                                      corpus: dict[str, Path]) -> None:
    """One scan or its scales split between 2-4 threads: the same raw windows (sorted, so the
    order of the threads' results does not matter) and the same faces, on the astronaut (colour
    and grey) and on two pasted faces."""
    from PIL import Image

    two = load_image(corpus["two_faces"])
    images = [astronaut, np.asarray(Image.fromarray(astronaut).convert("L")), two]
    found = {}
    for threads in (1, 2, 3, 4):
        monkeypatch.setattr(detect, "_scan_threads", lambda n=threads: n)
        grey = np.asarray(Image.fromarray(astronaut).convert("L"))
        found[threads] = (detect._raw_windows(grey, 32, 512), [detect_faces(im) for im in images],
                          detect_faces(two, min_size=24))
    assert len(found[1][0]) > 20
    assert detect._scale_ranges(detect._cascade(), 32, 512, 512, 512, 2) is not None  # the astronaut does split
    for threads in (2, 3, 4):
        assert np.array_equal(found[threads][0], found[1][0])
        assert found[threads][1:] == found[1][1:]
    assert len(found[1][1][2]) == 2


def test_scan_threads_follow_the_cores_and_omp_num_threads(monkeypatch) -> None:
    """Worker processes set OMP_NUM_THREADS=1 (voxface.data.workers.limit_threads): one thread there."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert detect._scan_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert detect._scan_threads() >= 1


# -- framing -------------------------------------------------------------------------------------
def test_face_crop_box_follows_crop_rule() -> None:
    box = FaceBox(x=100.0, y=50.0, w=80.0, h=80.0, score=20.0)
    x0, y0, side = face_crop_box(box)
    lm_side = DETECTOR_BOX_TO_LANDMARK_SCALE * 80.0
    assert side == pytest.approx(CROP_SCALE * lm_side)
    assert x0 + side / 2 == pytest.approx(140.0)  # same centre x
    assert y0 + side / 2 == pytest.approx(90.0 + DETECTOR_CENTER_SHIFT * 80.0)  # shifted down
    # identical to crop.py's rule applied to the estimated landmark box
    cx, cy = 140.0, 90.0 + DETECTOR_CENTER_SHIFT * 80.0
    corners = np.array([[cx - lm_side / 2, cy - lm_side / 2], [cx + lm_side / 2, cy + lm_side / 2]])
    landmarks = np.concatenate([corners, np.tile([[cx, cy]], (66, 1))])  # (68, 2)
    assert np.allclose(crop_box_from_landmarks(landmarks), (x0, y0, side))
    # the scale argument overrides CROP_SCALE
    assert face_crop_box(box, scale=2.0)[2] == pytest.approx(2.0 * lm_side)


def test_astronaut_crop_frames_the_landmark_box(astronaut_faces: list[FaceBox]) -> None:
    """The estimated landmark box is the measured one within 10% of its size."""
    f = astronaut_faces[0]
    x0, y0, side = face_crop_box(f)
    lx0, ly0, lx1, ly1 = ASTRONAUT_LANDMARK_BOX
    lm_side = max(lx1 - lx0, ly1 - ly0)
    assert side / CROP_SCALE == pytest.approx(lm_side, rel=0.1)
    assert x0 + side / 2 == pytest.approx((lx0 + lx1) / 2, abs=0.1 * lm_side)
    assert y0 + side / 2 == pytest.approx((ly0 + ly1) / 2, abs=0.1 * lm_side)
    assert x0 < lx0 and y0 < ly0 and x0 + side > lx1 and y0 + side > ly1  # the whole face is inside


@pytest.fixture(scope="module")
def astronaut_crop(astronaut: np.ndarray) -> list:
    return detect_and_crop(astronaut)


def test_detect_and_crop_astronaut(astronaut: np.ndarray, astronaut_faces: list[FaceBox],
                                   astronaut_crop: list) -> None:
    (crop, box, face), = astronaut_crop
    assert face == astronaut_faces[0]
    assert box == pytest.approx(face_crop_box(face))
    assert crop.shape == (128, 128, 3) and crop.dtype == np.float32
    assert 0.0 <= crop.min() and crop.max() <= 1.0 and crop.std() > 0.1
    assert np.array_equal(crop, crop_image(astronaut, box, size=128))
    assert crop_image(astronaut, box, size=96).shape == (96, 96, 3)


def test_boxes_of_a_photo_longer_than_max_side_are_in_its_own_pixels(astronaut: np.ndarray,
                                                                     astronaut_crop: list, tmp_path: Path) -> None:
    """A 4608-pixel photo loads downscaled to 4096; its boxes (detect_and_crop, prepare_crops,
    hence Reconstruction.crop_box and the camera-frame mesh) are still in the file's pixels."""
    from PIL import Image

    from voxface.image import DEFAULT_MAX_SIDE, load_image_scaled
    from voxface.reconstruct import prepare_crops

    k = 9  # 512 -> 4608 pixels
    big = tmp_path / "big.jpg"
    Image.fromarray(astronaut).resize((512 * k,) * 2, Image.Resampling.BICUBIC).save(big, quality=95)
    img, scale = load_image_scaled(big)
    assert img.shape == (DEFAULT_MAX_SIDE,) * 2 + (3,) and scale == pytest.approx(512 * k / DEFAULT_MAX_SIDE)
    (crop, box, face), = detect_and_crop(big)
    (crop_s, box_s, face_s), = detect_and_crop(img)  # what was found, in the loaded image's pixels
    assert np.array_equal(crop, crop_s) and box == pytest.approx(tuple(scale * np.array(box_s)))
    assert (face.x, face.y, face.w) == pytest.approx((scale * face_s.x, scale * face_s.y, scale * face_s.w))
    # the same face as in the 512-pixel photo, k times as far from the corner (the detector's boxes
    # vary by a few percent between sizes; loaded-image pixels would be 11% short)
    (_, box0, _), = astronaut_crop
    centre, centre0 = np.array(box[:2]) + box[2] / 2, np.array(box0[:2]) + box0[2] / 2
    assert centre == pytest.approx(k * centre0, abs=0.02 * 512 * k)
    (_, pbox), = prepare_crops(big, 128)
    assert pbox == pytest.approx(np.array(box))
    (_, whole), = prepare_crops(big, 128, detect=False)
    assert whole == pytest.approx([0.0, 0.0, 512.0 * k])
    assert load_image_scaled(astronaut)[1] == 1.0


def test_write_astronaut_crop(astronaut_crop: list, tmp_path: Path) -> None:
    """The crop saved as a PNG loads back with the same pixels."""
    from PIL import Image

    (crop, _, _), = astronaut_crop
    png = tmp_path / "astronaut_crop.png"
    Image.fromarray(np.round(crop * 255).astype(np.uint8)).save(png)
    back = load_image(png)
    assert back.shape == (128, 128, 3)
    assert np.abs(back / 255 - crop).max() <= 0.5 / 255 + 1e-6


# -- crop_image ----------------------------------------------------------------------------------
def test_crop_image_pixel_centres() -> None:
    """Output pixel j samples x0 + (j + 0.5) * side / size (pixel-edge coordinates)."""
    ramp = np.tile((np.arange(128) * 2).astype(np.uint8), (128, 1))  # value = 2 * column
    img = np.repeat(ramp[..., None], 3, axis=2)
    out = crop_image(img, (10.5, 20.0, 64.0), size=64)
    # centre of output pixel j is x = 11 + j, the border between columns 10 + j and 11 + j
    expected = (2 * (10.5 + np.arange(64))) / 255
    assert np.abs(out[32, 2:-2, 0] - expected[2:-2]).max() < 0.6 / 255
    assert np.allclose(out[..., 0], out[..., 1]) and np.allclose(out[:, 5, 0], out[0, 5, 0])


def test_crop_image_of_a_ready_crop_is_the_resampling_it_skips() -> None:
    """A whole image at its own size comes back as it is (scaled to [0, 1]), exactly what Pillow's
    bicubic resampling of it gives, grey images as three equal channels."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for s in (128, 37):
        img = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        resampled = np.asarray(Image.fromarray(img).resize((s, s), Image.Resampling.BICUBIC, box=(0, 0, s, s)))
        out = crop_image(img, (0, 0, s), size=s)
        assert out.dtype == np.float32 and np.array_equal(out, resampled.astype(np.float32) / np.float32(255))
    grey = crop_image(img[..., 0], (0, 0, 37), size=37)
    assert np.array_equal(grey, np.repeat(img[..., :1], 3, axis=2) / np.float32(255))


def test_crop_image_pads_by_replicating_edges() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :, 0] = np.linspace(50, 250, 100).astype(np.uint8)[None, :]  # red ramps in x
    img[:, :, 1] = np.linspace(0, 200, 100).astype(np.uint8)[:, None]  # green ramps in y
    out = crop_image(img, (-50.0, 60.0, 100.0), size=50)  # left half and bottom part outside
    assert out.shape == (50, 50, 3) and out.dtype == np.float32
    left = out[:, :23, 0]  # output columns centred left of x = -4: all column 0 of the image
    assert np.allclose(left, img[0, 0, 0] / 255, atol=1e-6)
    bottom = out[-28:, :, 1]  # rows centred below y = 104: all the image's last row
    assert np.allclose(bottom, img[-1, 0, 1] / 255, atol=1e-6)
    assert out[:, 30:, 0].std() > 0  # inside the image the ramp is there


def test_crop_image_downscales_with_antialiasing() -> None:
    checker = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)  # 1-px checkerboard
    out = crop_image(checker, (0, 0, 256), size=32)
    assert out.shape == (32, 32, 3)
    assert np.abs(out - 0.5).max() < 0.05  # averaged to grey, no aliasing pattern


def test_crop_at_image_border_is_padded(astronaut: np.ndarray) -> None:
    img = np.ascontiguousarray(astronaut[:185])  # cut just below the chin: the crop leaves the image
    (crop, (x0, y0, side), _), = detect_and_crop(img, size=128)
    assert y0 + side > 185 + 8
    rows_outside = int((y0 + side - 185) / side * 128)
    assert rows_outside >= 4
    tail = crop[-(rows_outside - 2):]  # rows centred beyond the last image row (minus filter support)
    assert np.allclose(tail, tail[:1], atol=1.5 / 255)  # replicated: constant down the columns


def test_a_ready_crop_is_framed_as_itself_not_smaller(astronaut: np.ndarray) -> None:
    # the face of a ready crop fills it: the cascade's windows stopped at its edges and the crop found in it
    # was (11.6, 18.3, 99.2), some 20% too small and low (a mesh of IoU 0.69 with the ready crop's own);
    # the square around the face is scanned again with the edges replicated outwards: (-0.6, 3.5, 128.1)
    (crop, _, _), = detect_and_crop(astronaut)
    ready = np.ascontiguousarray(np.round(crop * 255).astype(np.uint8))
    (_, box, face), = detect_and_crop(ready)
    assert box[2] == pytest.approx(128, rel=0.05)
    assert _iou((box[0], box[1], box[2], box[2]), (0.0, 0.0, 128.0, 128.0)) > 0.9
    assert face.score >= detect.MIN_NEIGHBORS
    assert detect_faces(ready, max_size=1000) == [face]  # a max_size past the picture's side is no max_size
    # a face well inside a photo is scanned once, as before: the astronaut's box is unchanged
    assert not detect._near_edge(np.array(_xywh(detect_faces(astronaut)[0])), 512, 512)


def test_the_scan_size_hint_is_given_only_where_a_larger_scan_can_help() -> None:
    """A 658-px photo of a tilted face (scanned at 640: faces from 33 px are found) was told 'a larger
    scan finds smaller ones', which cannot help it; the hint stays for photos whose scan misses faces
    a quarter larger than the smallest asked for and more (a group photo, a face far from the camera)."""
    flat = np.full((658, 600, 3), 127, np.uint8)
    with pytest.raises(NoFaceError) as e:
        detect_and_crop(flat)
    assert "tilted up to about 40 degrees, at least 33 px" in str(e.value) and "--scan-size" not in str(e.value)
    with pytest.raises(NoFaceError, match=r"at least 48 px wide in the 1280x960 image\); a larger scan "
                                          r"\(--scan-size, now 640\) finds smaller ones$"):
        detect_and_crop(np.full((960, 1280, 3), 127, np.uint8))
