"""Face detection and cropping: scikit-image's bundled LBP frontal-face cascade, no download.

Pipeline (:func:`detect_and_crop`): :func:`detect_faces` finds face boxes, :func:`face_crop_box`
maps each box to the crop framing of :mod:`voxface.crop` (the framing the training renders use),
:func:`crop_image` cuts and resamples the crop.

Detection (:func:`detect_faces`)
    1. The image is downscaled (antialiased) so its longer side is at most ``max_side`` (640 by
       default) and turned into grey; the cascade is slow (about 1 s for 640x480 on one core).
    2. ``skimage.feature.Cascade.detect_multi_scale`` runs with its own grouping switched off, so
       it returns every raw window the cascade accepts (a real face fires 10-80 windows at
       neighbouring positions and scales; most false positives fire 1-5). The scan releases the
       GIL: on several cores its scales are split into runs scanned in threads (exactly the one
       scan's windows; :func:`_scale_ranges`), 1.9x faster on two cores.
    3. Raw windows are grouped (union of overlapping windows, IoU >= :data:`GROUP_IOU`); a group
       becomes a face only with at least :data:`MIN_NEIGHBORS` windows. The face box is the mean of
       the group's windows and its ``score`` the number of windows.
    4. Skin check (colour images only): at least :data:`MIN_SKIN_FRACTION` of the box centre must
       have skin chroma. This removes the cascade's strongest false positives, which are textures
       with a face-like light/dark layout (in ``skimage.data.astronaut()`` the highlight on the
       helmet fires as many windows as the face: 14 against 18). Grey images skip the check.
    5. Groups overlapping a higher-scoring face (more than half of the smaller box) are dropped;
       the rest are sorted largest first.
    6. A face whose crop (grown by :data:`BORDER_GROW`) reaches past the image's edges had its
       windows cut short there, and its box came out small and off-centre (in a ready crop the
       face's crop was some 20% too small). Steps 2-5 then run again on the square around it
       (:data:`BORDER_REGION` times its side, the image's edges replicated outwards), and the
       strongest face found over it replaces it. When steps 2-5 find no face at all, they run once
       more on the whole picture with its edges replicated outwards by :data:`BORDER_PAD` times its
       shorter side, windows from :data:`BORDER_MIN_WINDOW` times that side: a face larger than the
       picture (a photo cut to the face, at the brows and the chin) has no window that fits in it,
       and was "no face found" (the astronaut's face cut to x 180-270, y 80-180; of the 100 tight
       face crops of ``skimage.data.lfw_subset()`` upscaled to 100 px, upright scans without tilts
       find 94, 64 without this scan, and none of its 100 non-faces either way).
    7. The cascade finds most faces tilted in the image plane by up to about 15 degrees. When
       steps 2-6 find no face, steps 2-5 run again on the picture turned by +-12.5 degrees, then,
       when those find none either, by +-25 (:data:`TILT_SCAN_DEGREES`). A head tilted 20-40
       degrees, common in casual photos, was "no face found", and so were some at 7-13 degrees
       (the astronaut turned -13, -7 or 12 degrees; turned -36 to 40 it is now found at every
       whole degree but -32 and 37). The encoder,
       trained on tilts up to 15 degrees, reconstructs such a crop with a mesh IoU of 0.90-0.92
       against the upright face's at 20-25 degrees). A face found so gets the axis-aligned box
       whose crop (:func:`face_crop_box`) is centred where the turned crop was, and its ``tilt``.

Coordinates are image pixels with the *pixel-edge* convention: pixel ``(row i, column j)`` covers
``[j, j + 1) x [i, i + 1)``, so its centre is ``(j + 0.5, i + 0.5)``. That is also how the training
renders place their pixel centres inside a crop box (``voxface.data.render.crop_rays``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .crop import CROP_SCALE, crop_box_from_landmark_box
from .errors import InputError, InputTypeError, NoFaceError, check_finite, check_integer

__all__ = [
    "FaceBox", "detect_faces", "face_crop_box", "crop_image", "detect_and_crop",
    "DETECTOR_BOX_TO_LANDMARK_SCALE", "DETECTOR_CENTER_SHIFT",
]

#: Larger side of the 68-landmark box / side of the (square) detector box.
#: Measured on ``skimage.data.astronaut()``: the cascade box spans x 176-275, y 65-164 (99 px;
#: forehead to just below the lower lip, about cheek to cheek) while the 68 landmarks span
#: x 181-270 (jaw contour where it meets the ears) and y 90-177 (brow tops to chin): 89 px wide,
#: 87 high, so 89 / 99 = 0.9. The LBP box is about as wide as the face, hence close to 1.
DETECTOR_BOX_TO_LANDMARK_SCALE = 0.9

#: Vertical offset of the 68-landmark box centre from the detector box centre, as a fraction of
#: the detector box height (positive = down). Same measurement: the landmark box centre is at
#: y 133.5 and the detector box centre at y 114.5, (133.5 - 114.5) / 99 = 0.19. The cascade box
#: starts at the forehead and stops above the chin; the landmark box starts at the brows and ends at
#: the chin, so its centre lies lower. There is no horizontal offset for frontal faces.
DETECTOR_CENTER_SHIFT = 0.19

#: Ratio between consecutive window sizes of the cascade's scan. 1.1 gives a real face 10-80
#: windows (a stable count for :data:`MIN_NEIGHBORS`); 1.2 is 1.8x faster but counts halve.
SCALE_FACTOR = 1.1

#: Raw windows two of which must overlap (intersection over union) to join the same group.
GROUP_IOU = 0.3

#: Fewest raw windows a group needs to count as a face. Measured at SCALE_FACTOR 1.1: the
#: astronaut's face gets 12-28 windows at face sizes from 32 to 130 px; 93 of the 100 real faces
#: of ``skimage.data.lfw_subset()`` (upscaled to 100 px) get 9 or more; the strongest false positive
#: in 17 face-free scikit-image photos gets 8 (grey ``clock``); colour false positives that pass
#: the count fail the skin check.
MIN_NEIGHBORS = 9

#: Fewest share of skin-coloured pixels in the centre of a face box (colour images only).
MIN_SKIN_FRACTION = 0.3

#: A face whose crop, grown by this factor, reaches past the image's edges is scanned again (its
#: windows were cut short by the edge): the square of ``BORDER_REGION`` times its side around it,
#: edges replicated outwards, with windows from ``BORDER_MIN_WINDOW`` times its side.
BORDER_GROW = 1.25
BORDER_REGION = 2.5
BORDER_MIN_WINDOW = 0.6

#: A picture in which no face is found is scanned again with its edges replicated outwards by this
#: times its shorter side on each side (step 6 of the module docstring): a face larger than it.
BORDER_PAD = 0.5

#: The picture is scanned turned by plus and minus each of these many degrees in turn, while no face
#: is found (step 7 of the module docstring): faces tilted up to about 40 degrees either way.
TILT_SCAN_DEGREES = (12.5, 25.0)

#: Side of the cascade's detection window in pixels (the smallest face it can see).
CASCADE_WINDOW = 24

#: Most threads one cascade scan is split between (a scan has some 20-35 scales, most of its
#: windows in the smallest few).
MAX_SCAN_THREADS = 8

_CASCADE: Any = None
_CASCADE_LOCK = threading.Lock()


@dataclass(frozen=True)
class FaceBox:
    """A detected face, in pixels of the image given to :func:`detect_faces`.

    Attributes:
        x, y: top-left corner (pixel-edge convention, see the module docstring); a face at the
            image's edge may reach past it (negative, or beyond the width or height).
        w, h: width and height (the LBP cascade's boxes are square, so ``w == h``).
        score: number of raw cascade windows merged into this face (higher = surer; a face
            needs at least :data:`MIN_NEIGHBORS`).
        tilt: degrees (counter-clockwise) the picture was turned for the scan that found the face
            (step 7 of the module docstring): 0 for an upright face; plus or minus one of
            :data:`TILT_SCAN_DEGREES` for a face tilted about that much the other way, whose box is then the upright square whose
            crop is centred on it (the face inside it stays tilted).
    """

    x: float
    y: float
    w: float
    h: float
    score: float
    tilt: float = 0.0

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def area(self) -> float:
        """``w * h`` in square pixels."""
        return self.w * self.h


def _cascade() -> Any:
    """The LBP frontal-face cascade, loaded once per process (about 0.1-0.5 s)."""
    global _CASCADE
    if _CASCADE is None:
        with _CASCADE_LOCK:
            if _CASCADE is None:
                from skimage import data
                from skimage.feature import Cascade

                _CASCADE = Cascade(data.lbp_frontal_face_cascade_filename())
    return _CASCADE


def _scan_threads() -> int:
    """Threads one cascade scan may use: this process's cores, at most ``OMP_NUM_THREADS`` (which
    worker processes set to 1: they already run one scan per core)."""
    from .device import usable_cores

    n = usable_cores()
    env = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(n, int(env))) if env.isdigit() and int(env) > 0 else max(1, n)


def _scale_ranges(cascade: Any, lo: int, hi: int, height: int, width: int,
                  parts: int) -> list[tuple[float, float]] | None:
    """``(min_size, max_size)`` of up to ``parts`` cascade scans that visit, between them, exactly
    the window scales of one scan from ``lo`` to ``hi`` (with about the same number of windows
    each), or ``None`` when one scan should do.

    scikit-image's scan runs the scales ``float32(step ** float32(arange(p0, p1)))``, ``p0`` and
    ``p1`` taken from the sizes, and each scale's windows depend on nothing else: scans over
    consecutive runs of those scales return, together, the one scan's windows. A run that starts
    inside the list needs a ``min_size`` whose ``p0`` rounds to the same powers; every run is
    checked against the scale list scikit-image computes (its ``_get_valid_scale_factors``, with
    the ``float32`` step its scan uses) bit for bit, a cut whose run does not match moves to a
    neighbouring scale, and with no match (or that helper missing) the answer is ``None``.
    """
    if parts < 2:
        return None
    step = float(np.float32(SCALE_FACTOR))

    def scales(a: float, b: float) -> np.ndarray:
        return np.asarray(cascade._get_valid_scale_factors((a, a), (b, b), step), np.float32)

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))

    try:
        full = scales(lo, hi)
    except Exception:  # noqa: BLE001 - a private helper of scikit-image's: fall back to one scan
        return None
    n = len(full)
    if n < 2:
        return None

    def run_start(k: int) -> float | None:
        """A ``min_size`` whose scan runs exactly ``full[k:]``."""
        m = np.float32(CASCADE_WINDOW * float(full[k]))
        for cand in (m, np.nextafter(m, np.float32(np.inf)), np.nextafter(m, np.float32(-np.inf))):
            if same(scales(float(cand), hi), full[k:]):
                return float(cand)
        return None

    # windows per scale, as the scan steps them (truncated window side, rounded stride)
    side = (CASCADE_WINDOW * full).astype(np.int64)
    stride = np.maximum(1, np.round(full)).astype(np.int64)
    work = np.ceil(np.clip(height - side, 0, None) / stride) * np.ceil(np.clip(width - side, 0, None) / stride)
    cum = np.cumsum(work)
    starts = [(0, float(lo))]
    for j in range(1, parts):
        target = int(np.searchsorted(cum, cum[-1] * j / parts)) + 1
        for k in sorted(range(max(starts[-1][0] + 1, target - 2), min(n, target + 3)), key=lambda k: abs(k - target)):
            m = run_start(k)
            if m is not None:
                starts.append((k, m))
                break
    if len(starts) == 1:
        return None
    ranges = []
    for (k0, m0), (k1, _) in zip(starts, starts[1:] + [(n, 0.0)]):
        top = float(hi) if k1 == n else CASCADE_WINDOW * float(np.sqrt(float(full[k1 - 1]) * float(full[k1])))
        if not same(scales(m0, top), full[k0:k1]):
            return None
        ranges.append((m0, top))
    return ranges


def _raw_windows(grey: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Every window the cascade accepts in ``grey (H, W) uint8``, sizes ``lo..hi``: ``(N, 4)``
    float64 ``(x, y, w, h)`` sorted, so the result does not depend on how the scan was split.

    The scan releases the GIL, so on several cores its scales are split between threads
    (:func:`_scale_ranges`; the same windows).
    """
    from concurrent.futures import ThreadPoolExecutor

    cascade = _cascade()
    img = grey.astype(np.float32) / 255.0
    kw = dict(img=img, scale_factor=SCALE_FACTOR, step_ratio=1,
              min_neighbor_number=1, intersection_score_threshold=2.0)  # 2 > any overlap: no grouping
    ranges = _scale_ranges(cascade, lo, hi, *grey.shape, min(_scan_threads(), MAX_SCAN_THREADS))
    if ranges is None:
        det = cascade.detect_multi_scale(min_size=(lo, lo), max_size=(hi, hi), **kw)
    else:
        with ThreadPoolExecutor(len(ranges)) as ex:
            runs = ex.map(lambda r: cascade.detect_multi_scale(min_size=(r[0], r[0]), max_size=(r[1], r[1]), **kw),
                          ranges)
            det = [d for run in runs for d in run]
    raw = np.array([(d["c"], d["r"], d["width"], d["height"]) for d in det], np.float64).reshape(-1, 4)
    return raw[np.lexsort(raw.T[::-1])]


def _check_image(image: Any, what: str) -> np.ndarray:
    if isinstance(image, (str, bytes, os.PathLike)):  # was 'got <U13 ()', numpy's reading of the path
        raise InputTypeError(f"{what} takes the image's pixels, not a file name ({os.fsdecode(image)!r}): "
                             f"{what}(voxface.load_image(path))")
    if isinstance(image, Image.Image) and image.mode not in ("RGB", "L"):  # a palette read as grey
        raise InputTypeError(f"{what} takes RGB or grey pixels, not a PIL image of mode {image.mode}: "
                             f"{what}(voxface.load_image(image))")
    if isinstance(image, Image.Image):
        from .image import _orientation

        # a phone's portrait (Image.open(p).convert('RGB') keeps the tag) was scanned lying on its side:
        # 'no face', or boxes in pixels that are not the upright photo's, where detect_and_crop turns it
        turn = _orientation(image)
        if turn in range(2, 9):
            raise InputTypeError(f"{what} takes upright pixels, and this PIL image's EXIF orientation ({turn}) "
                                 f"says it is stored turned or mirrored: {what}(voxface.load_image(image)), "
                                 "which turns it upright")
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise InputError(f"{what} expects a uint8 (H, W, 3) or (H, W) image (see voxface.load_image), "
                         f"got {a.dtype} {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{what}: empty image of shape {a.shape}")
    return a


def _finite_size(name: str, value: Any) -> float:
    """``value`` as a finite number of pixels (``InputTypeError`` / ``InputError`` otherwise)."""
    if isinstance(value, (bool, str, bytes)) or not np.isscalar(value):
        raise InputTypeError(f"{name} must be a number of pixels, got {type(value).__name__} {value!r}")
    return check_finite(name, value)


def _resize_uint8(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased resize of ``uint8 (H, W[, 3])`` to ``size = (width, height)``."""
    if (a.shape[1], a.shape[0]) == size:
        return a
    im = Image.fromarray(a)
    return np.asarray(im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union ``(N, M)`` of boxes ``a (N, 4)`` and ``b (M, 4)``, ``(x, y, w, h)``."""
    iw = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2]) \
        - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3]) \
        - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    return inter / (a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter)


def _group(raw: np.ndarray, iou: float, chunk: int = 1024) -> list[np.ndarray]:
    """Connected components of the "IoU >= iou" graph over raw windows ``(N, 4)``: index arrays.

    The graph is built ``chunk`` rows at a time, so memory stays ``O(chunk * N)``.
    """
    n = len(raw)
    if n == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = [], []
    for i in range(0, n, chunk):
        r, c = np.nonzero(_iou(raw[i:i + chunk], raw) >= iou)
        rows.append(r + i)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return [np.flatnonzero(labels == k) for k in range(labels.max() + 1)]


def _skin_fraction(rgb: np.ndarray, box: np.ndarray) -> float:
    """Share of skin-chroma pixels in the centre of ``box`` (middle 50% wide, 60% high).

    Skin test: YCbCr chroma 77 <= Cb <= 127 and 133 <= Cr <= 173 (Chai and Ngan, 1999); it covers
    light to dark skin tones because it ignores luma.
    """
    x, y, w, h = box
    x0, x1 = int(round(x + 0.25 * w)), int(round(x + 0.75 * w))
    y0, y1 = int(round(y + 0.2 * h)), int(round(y + 0.8 * h))
    p = rgb[max(0, y0):max(0, y1), max(0, x0):max(0, x1)].reshape(-1, 3).astype(np.float32)
    if len(p) == 0:
        return 0.0
    r, g, b = p[:, 0], p[:, 1], p[:, 2]
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return float(np.mean((cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)))


def _has_colour(rgb: np.ndarray) -> bool:
    """False for grey pictures stored as RGB (then skin colour says nothing)."""
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return float(np.mean(spread > 12)) > 0.05


def _detection_scale(h: int, w: int, max_side: int) -> float:
    return min(1.0, max_side / max(h, w))


def _min_window(scale: float, min_size: float) -> int:
    """Smallest cascade window (detection pixels) for faces of ``min_size`` image pixels."""
    return max(CASCADE_WINDOW, int(np.ceil(min_size * scale)))


def _smallest_face(h: int, w: int, max_side: int, min_size: float) -> float:
    """Side (image pixels) of the smallest face :func:`detect_faces` can report."""
    s = _detection_scale(h, w, max_side)
    return _min_window(s, min_size) / s


def detect_faces(image: np.ndarray, *, max_side: int = 640, min_size: float = 32,
                 max_size: float | None = None, min_neighbors: int = MIN_NEIGHBORS,
                 skin_check: bool = True, tilted: bool = True) -> list[FaceBox]:
    """Find frontal faces with the LBP cascade; boxes in pixels of ``image``, largest first.

    Args:
        image: ``uint8`` ``(H, W, 3)`` RGB (or ``(H, W)`` grey), e.g. from :func:`voxface.load_image`;
            a PIL image of mode ``RGB`` or ``L`` is taken as its pixels, unless its EXIF orientation
            says it is stored turned or mirrored (an ``InputTypeError``: pass ``load_image(image)``).
        max_side: the search runs on a copy downscaled to at most this longer side; boxes are
            scaled back. Faces smaller than ``24 * max(H, W) / max_side`` pixels are then missed.
        min_size: smallest face side to look for, in pixels of ``image`` (a 32-px box gives a
            crop of about ``32 * 0.9 * CROP_SCALE``, some 42 px: smaller faces carry too little
            detail for a 128-px crop).
        max_size: largest face side to look for (default: the image's shorter side; the second scan
            of a face at the edge, step 6 of the module docstring, also looks past that side).
        min_neighbors: raw windows a face needs (:data:`MIN_NEIGHBORS`); lower finds more faces
            and more false ones.
        skin_check: drop boxes whose centre has too little skin colour (colour images only; see
            the module docstring). Turn off for pictures with strongly tinted light.
        tilted: where no upright face is found, scan the picture turned by +-12.5, then +-25
            degrees too (:data:`TILT_SCAN_DEGREES`: faces tilted up to about 40 degrees; up to four
            more scans, each of a larger picture: a picture without a face takes about 7 times as long).

    Returns:
        ``list[FaceBox]`` sorted by area, largest first; empty when no face is found.

    Raises:
        InputError / InputTypeError: ``image`` is not such an image, or an option is not a
            number of its kind (``max_side`` and ``min_neighbors`` integers >= 1, the sizes finite,
            ``min_size >= 0``), or ``max_size`` is smaller than ``min_size`` or than the smallest
            face a scan at ``max_side`` sees in ``image``.
    """
    return _detect(image, max_side=max_side, min_size=min_size, max_size=max_size,
                   min_neighbors=min_neighbors, skin_check=skin_check, tilted=tilted)[0]


def _detect(image: np.ndarray, *, max_side: int = 640, min_size: float = 32, max_size: float | None = None,
            min_neighbors: int = MIN_NEIGHBORS, skin_check: bool = True,
            tilted: bool = True) -> tuple[list[FaceBox], int]:
    """:func:`detect_faces`, and how many groups of windows (enough of them for a face) the skin check left out."""
    a = _check_image(image, "detect_faces")
    max_side = check_integer("detect_faces: max_side", max_side, 1)
    min_neighbors = check_integer("detect_faces: min_neighbors", min_neighbors, 1)
    min_size = _finite_size("detect_faces: min_size", min_size)
    if min_size < 0:
        raise InputError(f"detect_faces: min_size must be at least 0 pixels, got {min_size:g}")
    if max_size is not None:
        max_size = _finite_size("detect_faces: max_size", max_size)
        # a max_size under min_size (or under the smallest face the scan sees) found nothing, without a
        # word: detect_and_crop then said 'no face found', naming only the smallest face
        if max_size < min_size:
            raise InputError(f"detect_faces: max_size ({max_size:g} px) is smaller than min_size ({min_size:g} px)")
    H, W = a.shape[:2]
    s = _detection_scale(H, W, max_side)
    size = (max(1, round(W * s)), max(1, round(H * s)))
    lo = _min_window(s, min_size)
    if max_size is not None and int(max_size * s) < lo <= min(size):
        raise InputError(f"detect_faces: max_size ({max_size:g} px) is smaller than the smallest face a scan at "
                         f"max_side {max_side} sees in this {W}x{H} image ({lo / s:.0f} px)")
    small = _resize_uint8(a, size)
    rgb = small if small.ndim == 3 else None
    grey = small if small.ndim == 2 else np.asarray(Image.fromarray(small).convert("L"))
    gh, gw = grey.shape
    hi = min(gh, gw) if max_size is None else min(min(gh, gw), int(max_size * s))
    if hi < lo:
        return [], 0
    check_skin = skin_check and rgb is not None and _has_colour(rgb)
    kept, unskinned = _faces_in(grey, rgb if check_skin else None, lo, hi, min_neighbors)
    # a face at the border (a ready crop, a chin at the photo's edge): the cascade's windows stop at
    # the edge, so its box came out small and off-centre (the 128-px crop of the astronaut: a crop
    # of 99 px, a mesh of IoU 0.69 with the crop's own). Scan around it again with the edges
    # replicated outwards, where the windows around the face fit.
    cap = None if max_size is None else int(max_size * s)
    kept = [_rescan_at_edge(grey, rgb if check_skin else None, score, box, lo, cap, min_neighbors)
            if _near_edge(box, gw, gh) else (score, box) for score, box in kept]
    if not kept:  # a face larger than the picture: no window of the scan fits it
        kept, left_out = _faces_past_edges(grey, rgb if check_skin else None, lo, cap, min_neighbors)
        unskinned = max(unskinned, left_out)

    angles = [0.0] * len(kept)
    for turn in TILT_SCAN_DEGREES if tilted else ():  # step 7: a head tilted past what the cascade sees
        if kept:
            break
        for angle in (turn, -turn):
            found, left_out = _tilted_faces(grey, rgb if check_skin else None, angle, lo, hi, min_neighbors)
            unskinned = max(unskinned, left_out)  # one region refused in several scans counts once
            for score, box in found:
                if all(_overlap_of_smaller(box, k) <= 0.5 for _, k in kept):
                    kept.append((score, box))
                    angles.append(angle)

    faces = [FaceBox(float(b[0] / s), float(b[1] / s), float(b[2] / s), float(b[3] / s), score, tilt)
             for (score, b), tilt in zip(kept, angles)]
    return sorted(faces, key=lambda f: -f.area), unskinned


def _tilted_faces(grey: np.ndarray, rgb: np.ndarray | None, angle: float, lo: int, hi: int,
                  min_neighbors: int) -> tuple[list[tuple[float, np.ndarray]], int]:
    """Steps 2-5 of the module docstring on the picture turned ``angle`` degrees counter-clockwise
    (PIL's ``rotate(expand=True)``): ``[(score, box)]`` with each box the upright square, in
    ``grey``'s pixels, whose crop (:func:`face_crop_box`) is centred where the face's crop lies in
    the turned picture; and how many groups the skin check left out."""
    def turn(a: np.ndarray) -> np.ndarray:
        fill = 128 if a.ndim == 2 else (128, 128, 128)
        return np.asarray(Image.fromarray(a).rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=fill))

    g = turn(grey)
    found, left_out = _faces_in(np.ascontiguousarray(g), None if rgb is None else turn(rgb), lo, hi, min_neighbors)
    # PIL samples the turned picture at  p = C + R (p' - C'),  C, C' the centres of the two pictures
    t = np.radians(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c, c_turned = np.array([grey.shape[1], grey.shape[0]]) / 2, np.array([g.shape[1], g.shape[0]]) / 2
    out = []
    for score, (x, y, w, h) in found:
        crop_centre = np.array([x + w / 2, y + h / 2 + DETECTOR_CENTER_SHIFT * h])  # face_crop_box's centre
        cx, cy = c + rot @ (crop_centre - c_turned)
        out.append((score, np.array([cx - w / 2, cy - DETECTOR_CENTER_SHIFT * h - h / 2, w, h])))
    return out, left_out


def _faces_in(grey: np.ndarray, rgb: np.ndarray | None, lo: int, hi: int,
              min_neighbors: int) -> tuple[list[tuple[float, np.ndarray]], int]:
    """Steps 2-5 of the module docstring on ``grey`` (with the skin check on ``rgb`` unless
    ``None``): ``[(score, box (x, y, w, h))]`` strongest first, and how many groups the skin check
    left out."""
    raw = _raw_windows(grey, lo, hi)
    cands: list[tuple[float, np.ndarray]] = []
    unskinned = 0
    for idx in _group(raw, GROUP_IOU):
        if len(idx) < min_neighbors:
            continue
        box = raw[idx].mean(axis=0)
        if rgb is not None and _skin_fraction(rgb, box) < MIN_SKIN_FRACTION:
            unskinned += 1
            continue
        cands.append((float(len(idx)), box))

    # suppress groups overlapping a stronger face by more than half of the smaller box
    cands.sort(key=lambda t: -t[0])
    kept: list[tuple[float, np.ndarray]] = []
    for score, box in cands:
        if all(_overlap_of_smaller(box, k) <= 0.5 for _, k in kept):
            kept.append((score, box))
    return kept, unskinned


def _rescan_at_edge(grey: np.ndarray, rgb: np.ndarray | None, score: float, box: np.ndarray, lo: int,
                    cap: int | None, min_neighbors: int) -> tuple[float, np.ndarray]:
    """Step 6 of the module docstring for one face ``(score, box)``: the strongest face the scan of
    the square of :data:`BORDER_REGION` times its side around it (edges replicated where it leaves
    the image; windows from :data:`BORDER_MIN_WINDOW` of its side) finds over it, or the face as it was."""
    x, y, w, h = box
    side = int(np.ceil(BORDER_REGION * max(w, h)))
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    rows = np.clip(np.arange(y0, y0 + side), 0, grey.shape[0] - 1)
    cols = np.clip(np.arange(x0, x0 + side), 0, grey.shape[1] - 1)
    hi = side if cap is None else min(side, cap)
    lo = min(max(lo, int(BORDER_MIN_WINDOW * max(w, h))), hi)
    again, _ = _faces_in(np.ascontiguousarray(grey[rows[:, None], cols[None, :]]),
                         None if rgb is None else np.ascontiguousarray(rgb[rows[:, None], cols[None, :]]),
                         lo, hi, min_neighbors)
    for score_again, b in again:  # strongest first
        b = b + np.array([x0, y0, 0, 0])
        if _overlap_of_smaller(b, box) > 0.5:
            return score_again, b
    return score, box


def _faces_past_edges(grey: np.ndarray, rgb: np.ndarray | None, lo: int, cap: int | None,
                      min_neighbors: int) -> tuple[list[tuple[float, np.ndarray]], int]:
    """Steps 2-5 of the module docstring on ``grey`` with its edges replicated outwards by
    :data:`BORDER_PAD` times its shorter side, windows from :data:`BORDER_MIN_WINDOW` times that
    side (and at least ``lo``, at most ``cap``): ``[(score, box)]`` in ``grey``'s pixels, faces
    whose box centre lies in the picture (not the replicated edges' stripes), and how many groups
    the skin check left out. Nothing in a picture whose shorter side is under ``lo`` (too few pixels
    of the face for a crop, as :func:`detect_faces`'s ``min_size`` says)."""
    gh, gw = grey.shape
    short = min(gh, gw)
    pad = int(np.ceil(BORDER_PAD * short))
    hi = short + 2 * pad if cap is None else min(short + 2 * pad, cap)
    lo = max(lo, int(BORDER_MIN_WINDOW * short))
    if short < lo or hi < lo:
        return [], 0
    rows = np.clip(np.arange(-pad, gh + pad), 0, gh - 1)
    cols = np.clip(np.arange(-pad, gw + pad), 0, gw - 1)
    found, left_out = _faces_in(np.ascontiguousarray(grey[rows[:, None], cols[None, :]]),
                                None if rgb is None else np.ascontiguousarray(rgb[rows[:, None], cols[None, :]]),
                                lo, hi, min_neighbors)
    out = []
    for score, b in found:
        b = b - np.array([pad, pad, 0, 0])
        if 0 <= b[0] + b[2] / 2 < gw and 0 <= b[1] + b[3] / 2 < gh:
            out.append((score, b))
    return out, left_out


def _near_edge(box: np.ndarray, width: int, height: int) -> bool:
    """Whether the crop of a face box ``(x, y, w, h)``, grown by :data:`BORDER_GROW`, reaches past
    the edges of a ``width x height`` image."""
    x0, y0, side = face_crop_box(FaceBox(*map(float, box), 0.0), CROP_SCALE * BORDER_GROW)
    return x0 < 0 or y0 < 0 or x0 + side > width or y0 + side > height


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih / min(a[2] * a[3], b[2] * b[3]))


def face_crop_box(box: FaceBox, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """The crop ``(x0, y0, side)`` of a detected face, framed like :mod:`voxface.crop`.

    The detector box is mapped to an estimated 68-landmark box (side
    ``DETECTOR_BOX_TO_LANDMARK_SCALE * max(w, h)``, centre shifted down by
    ``DETECTOR_CENTER_SHIFT * h``), then :func:`voxface.crop.crop_box_from_landmark_box` applies
    ``CROP_SCALE``. Units: pixels of the detected image; the crop may extend beyond the image.
    """
    cx, cy = box.center
    landmark_side = DETECTOR_BOX_TO_LANDMARK_SCALE * max(box.w, box.h)
    return crop_box_from_landmark_box((cx, cy + DETECTOR_CENTER_SHIFT * box.h), landmark_side, scale)


def crop_image(image: np.ndarray, crop_box: Any, size: int = 128) -> np.ndarray:
    """Cut the square ``crop_box = (x0, y0, side)`` out of ``image`` and resample it to ``size``.

    Args:
        image: ``uint8`` ``(H, W, 3)`` RGB (or ``(H, W)`` grey).
        crop_box: ``(x0, y0, side)`` in pixels (pixel-edge convention; fractional values are
            honoured to sub-pixel accuracy). Parts outside the image repeat the nearest edge pixel.
        size: output side in pixels.

    Returns:
        ``float32`` ``(size, size, 3)`` RGB in ``[0, 1]``. Output pixel ``(i, j)`` is centred on
        image point ``(x0 + (j + 0.5) * side / size, y0 + (i + 0.5) * side / size)``. Downscaling
        is antialiased (Pillow's bicubic filter widened by the scale factor).

    Raises:
        InputError / InputTypeError: not such an image, a ``crop_box`` that is not three finite
            numbers with ``side > 0``, a ``size`` that is not an integer >= 1.
    """
    a = _check_image(image, "crop_image")
    size = check_integer("crop_image: size", size, 1)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    try:
        box_values = np.asarray(crop_box, np.float64).reshape(3)
    except (TypeError, ValueError):
        raise InputError(f"crop_box must be three numbers (x0, y0, side), got {crop_box!r}") from None
    x0, y0, side = (float(v) for v in box_values)
    if not (np.isfinite([x0, y0, side]).all() and side > 0):
        raise InputError(f"crop_box must be finite with side > 0, got {(x0, y0, side)}")
    H, W = a.shape[:2]
    if (x0, y0, side) == (0.0, 0.0, float(size)) and H == W == size:
        # the whole image at its own size (a ready crop): the resampling would be the identity,
        # exactly (bicubic weights at whole-pixel offsets are 1, 0, 0, ...), so skip it
        return a.astype(np.float32) / np.float32(255.0)
    # integer window covering the box plus a margin for the filter support, edge-replicated
    margin = int(np.ceil(2 * max(1.0, side / size))) + 1
    ix0, iy0 = int(np.floor(x0)) - margin, int(np.floor(y0)) - margin
    ix1, iy1 = int(np.ceil(x0 + side)) + margin, int(np.ceil(y0 + side)) + margin
    cols = np.clip(np.arange(ix0, ix1), 0, W - 1)
    rows = np.clip(np.arange(iy0, iy1), 0, H - 1)
    window = np.ascontiguousarray(a[rows[:, None], cols[None, :]])
    box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
    out = Image.fromarray(window, "RGB").resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(out, dtype=np.float32) / np.float32(255.0)


def detect_and_crop(image: Any, size: int = 128, all_faces: bool = False,
                    path_for_errors: str | Path | None = None, source_scale: float = 1.0,
                    **detect_kwargs: Any) -> list[tuple[np.ndarray, tuple[float, float, float], FaceBox]]:
    """Detect faces and return their crops, largest face first.

    Args:
        image: ``uint8`` ``(H, W, 3)`` RGB array, or a path, a ``PIL.Image.Image`` or a binary file
            object (loaded with :func:`voxface.load_image`: the EXIF orientation applied, any mode;
            boxes and faces are then in the photo's pixels, turned upright, also where loading
            downscaled it).
        size: crop side in pixels.
        all_faces: every face (largest first) instead of only the largest.
        path_for_errors: file name the ``NoFaceError`` message starts with (default: the path
            when ``image`` is one, a PIL image's or file object's file name, else ``<array>``).
        source_scale: the factor from ``image``'s pixels to those of the photo it was loaded from
            (the second value of :func:`voxface.image.load_image_scaled`): boxes, faces and the
            ``NoFaceError`` message are then in the photo's pixels. 1.0: ``image`` is the photo.
        **detect_kwargs: passed to :func:`detect_faces` (``max_side``, ``min_size``, ...).

    Returns:
        ``[(crop, crop_box, face)]``: ``crop`` ``float32 (size, size, 3)`` in ``[0, 1]``,
        ``crop_box = (x0, y0, side)`` in image pixels (:func:`face_crop_box`), ``face`` the
        :class:`FaceBox`. One element unless ``all_faces``.

    Raises:
        NoFaceError: no face found (message: ``"<file>: no face found ..."``; it says so when the
            skin check left out face-like regions).
        ImageError: ``image`` is a path, PIL image or file that cannot be loaded.
        InputError / InputTypeError: ``size`` is not an integer >= 1, ``source_scale`` not a finite
            number > 0, or an option of :func:`detect_faces` is refused.
    """
    size = check_integer("detect_and_crop: size", size, 1)  # before the scan, not after it
    # NaN, 0 or a negative factor gave NaN, empty or mirrored boxes and faces without a word
    scale = check_finite("detect_and_crop: source_scale", source_scale)
    if scale <= 0:
        raise InputError(f"detect_and_crop: source_scale must be a positive factor (the photo's pixels per image "
                         f"pixel), got {scale:g}")
    if isinstance(image, (str, os.PathLike, Image.Image)) or (hasattr(image, "read") and hasattr(image, "seek")):
        # a PIL image (or an open file) as reconstruct reads it: np.asarray gave a phone's portrait lying
        # on its side (its EXIF orientation) and a GIF's palette indices as grey, each 'no face found'
        from .image import load_image_scaled, source_name

        path_for_errors = source_name(image) if path_for_errors is None else path_for_errors
        image, loaded = load_image_scaled(image)
        scale *= loaded
    faces, unskinned = _detect(image, **detect_kwargs)
    if not faces:
        h, w = np.asarray(image).shape[:2]
        max_side, min_size = detect_kwargs.get("max_side", 640), detect_kwargs.get("min_size", 32)
        smallest = _smallest_face(h, w, max_side, min_size)
        # in the photo's pixels: the user measures faces there, not in the downscaled copy
        where = (f"the {w}x{h} image" if scale == 1.0 else
                 f"the photo ({max(h, w) * scale:.0f} px on its longer side, read downscaled to {w}x{h})")
        # the cascade's face-like regions that only the skin check refused: a face under tinted light
        why = (f"; {unskinned} face-like region{'s' if unskinned > 1 else ''} left out for lacking skin colour, "
               "as under strongly tinted light (--no-skin-check, or skin_check=False, "
               f"keeps {'them' if unskinned > 1 else 'it'})" if unskinned else "")
        # scanned downscaled so far that faces of a group photo are missed: a larger scan finds smaller
        # faces (a crowd, a face far from the camera); not said where only tiny faces are missed (a
        # tilted face was pointed at --scan-size, which cannot help it), nor where the scan already
        # saw every pixel of the image (a photo loaded downscaled to 4096 px and scanned at 4096 was
        # told that a larger scan finds smaller faces: it scans the same pixels)
        smaller = (f"; a larger scan (--scan-size, now {max_side}) finds smaller ones"
                   if _detection_scale(h, w, max_side) < 1 and smallest >= 1.25 * min_size
                   and not unskinned else "")
        # a picture narrower than the smallest face (a thumbnail-sized ready crop) was told only the sizes
        crop = ("; the image is smaller than that: a ready face crop goes in with --no-detect (detect=False)"
                if min(h, w) < smallest else "")
        kind = ("roughly frontal faces, upright or tilted up to about 40 degrees," if detect_kwargs.get("tilted", True)
                else "roughly frontal, upright faces")
        raise NoFaceError(f"no face found (looked for {kind} at least {smallest * scale:.0f} px "
                          f"wide in {where}){why}{smaller}{crop}",
                          path=path_for_errors if path_for_errors is not None else "<array>")
    if not all_faces:
        faces = faces[:1]
    out = []
    for face in faces:
        box = face_crop_box(face)
        crop = crop_image(image, box, size)
        if scale != 1.0:  # back to the file's pixels
            box = tuple(v * scale for v in box)
            face = FaceBox(face.x * scale, face.y * scale, face.w * scale, face.h * scale, face.score, face.tilt)
        out.append((crop, box, face))
    return out
