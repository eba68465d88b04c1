"""Reading images robustly: files, PIL images, numpy arrays and torch tensors to ``uint8 (H, W, 3)``.

:func:`load_image` is the one door. Whatever comes in, what comes out is a C-contiguous
``uint8`` RGB array ``(H, W, 3)`` whose longer side is at most ``max_side`` pixels, or an
:class:`~voxface.errors.ImageError` whose one-line message names the file (``<array>`` for
in-memory input) and the problem. Garbage is never returned: a truncated file is an error, not a
half-grey picture (Pillow's ``LOAD_TRUNCATED_IMAGES`` is left off and every file is fully decoded
inside the ``try``).

Files
    * Any format Pillow reads, and HEIC/HEIF (an iPhone's photos) when ``pillow-heif`` is
      installed (without it such a file is an ``ImageError`` that says so); the EXIF orientation
      is applied (the transposes of ``ImageOps.exif_transpose``); animated files (GIF, APNG,
      WebP) give their first frame. A raw camera file (DNG; a TIFF whose first picture is marked as
      a reduced-resolution preview of its sub-pictures) is an ``ImageError``: Pillow reads only the
      preview, whose pixels are not the photo's.
    * Modes: ``1``/``L`` (grey, replicated to 3 channels), ``LA``/``PA``/``RGBA``, palette
      images with transparency and grey or RGB PNGs with a transparent colour (``tRNS``)
      (composited over **white**), ``CMYK``/``YCbCr``/``LAB``/``HSV``
      (converted to RGB), 16-bit ``I;16*`` (scaled to 8 bits, ``round(v * 255 / 65535)``, never
      clipped), 32-bit ``I`` (values all in 0..255 are 8-bit grey, as ``convert("I")`` makes them;
      otherwise read as 16-bit: clipped to 0..65535, then scaled), ``F`` (the float
      rule below). An uncompressed 16-bit RGB(A) TIFF of colour planes stored one after another,
      which Pillow's own reader misreads, is decoded by libtiff (or is an ``ImageError``).
    * Colours are sRGB, what the training renders are and what the skin check assumes: an embedded
      ICC colour profile of the pixels' colour space (a phone's Display P3, a camera's Adobe RGB, a
      print CMYK JPEG's press profile) is applied, converting them to sRGB with littleCMS (perceptual
      intent, as photo viewers and browsers show them), after the downscale (the conversion costs about
      as much as the resize, per pixel). Without one, or with one that says it is sRGB, the pixels are
      taken as sRGB, as they are (CMYK with Pillow's naive formula); a grey picture's profile and a
      profile that cannot be read are left out. Arrays are taken as sRGB.
    * Large files are reduced *early*: JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg
      (``Image.draft``) when that still leaves at least ``max_side`` pixels, then everything is
      resized with a box pre-reduction and a Lanczos filter (``Image.resize(reducing_gap=2)``).
      Other formats are decoded once at full size; the peak memory, measured on 8000x6000 PNGs, is
      about 2 bytes a pixel for grey, 3 for RGB, 7 for grey or RGB with alpha and for palette
      pictures (Pillow holds them as 4-byte pixels and converts them before resizing: a second
      full-size copy), 6 for 16-bit grey (converted to 8 bits a block of rows at a time; a
      250-megapixel RGBA picture: some 1.9 GB).
    * Pictures up to :data:`MAX_PIXELS` (250 megapixels) are accepted even where Pillow's own
      decompression-bomb guard (179 MP) would refuse them; larger ones are an ``ImageError`` raised
      from the header, before any pixel is decoded.

Arrays (numpy, or anything with ``__array__``; torch tensors are detached and moved to the CPU)
    * Shapes: ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1 (grey), 2 (grey + alpha),
      3 (RGB), 4 (RGBA), each also as a batch of one (``(1, C, H, W)``, as a torch pipeline gives
      one image). Channels-last wins when both readings fit (``(3, H, 3)`` is HWC).
    * dtypes: ``uint8`` as is; ``uint16`` scaled ``round(v * 255 / 65535)``; ``bool`` to 0/255;
      floating point must be finite and in ``[0, 1]`` (a tolerance of 1e-3 is clipped), scaled
      ``round(v * 255)``; other integer dtypes are accepted when every value is already in
      ``0..255``. Anything else is an ``ImageError``.
"""

from __future__ import annotations

import glob as _glob
import io
import os
import stat
import struct
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import ImageError, InputTypeError

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "DEFAULT_MAX_SIDE", "load_image", "load_image_scaled", "list_images", "source_name"]

#: File name extensions (lower case, with the dot) that :func:`list_images` picks up.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
     ".pbm", ".pnm", ".tga", ".avif", ".apng", ".jp2", ".j2k", ".mpo", ".heic", ".heif"}
)

#: Largest picture (width * height, before any downscaling) :func:`load_image` accepts.
MAX_PIXELS = 250_000_000

#: Default bound on the longer side of a loaded image, in pixels.
DEFAULT_MAX_SIDE = 4096

ARRAY_NAME = "<array>"

# Pillow raises these (or subclasses: UnidentifiedImageError is an OSError) on unreadable data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
                  MemoryError, struct.error, Image.DecompressionBombError)

_PIL_LIMIT_LOCK = threading.Lock()
_FLOAT_TOLERANCE = 1e-3


# -- public API ----------------------------------------------------------------------------------
def load_image(src: Any, *, max_side: int = DEFAULT_MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image as RGB ``uint8`` ``(H, W, 3)``, longer side at most ``max_side`` pixels.

    Args:
        src: a path (``str`` or :class:`os.PathLike`), a binary file object, a ``PIL.Image.Image``,
            or an array (numpy array, torch tensor, anything with ``__array__``); see the module
            docstring for the accepted modes, shapes and dtypes.
        max_side: images whose longer side exceeds this are downscaled (aspect ratio kept,
            antialiased) to exactly this longer side; smaller images are returned at their size.
        max_pixels: larger pictures (width * height of the file) are refused.

    Returns:
        A new C-contiguous ``np.ndarray`` of dtype ``uint8``, shape ``(H, W, 3)``, sRGB (an embedded
        colour profile applied), transparency composited over white.

    Raises:
        ImageError: missing, empty, truncated, corrupt or unsupported input, absurd size, or array
            values outside the documented range. The message is one line, prefixed by the file
            name (``<array>`` for arrays).
        TypeError: ``src`` is none of the accepted types or a file open in text mode (a programming
            error, not a user error), or ``max_side`` / ``max_pixels`` is not an integer (an
            ``InputTypeError``; below 1: an ``InputError``).
    """
    return load_image_scaled(src, max_side=max_side, max_pixels=max_pixels)[0]


def load_image_scaled(src: Any, *, max_side: int = DEFAULT_MAX_SIDE,
                      max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float]:
    """:func:`load_image`, and the factor from its pixels to the source's: ``source longer side /
    loaded longer side`` (1.0 unless ``max_side`` downscaled it). Multiply a position found in the
    loaded image by it to place it in the source photo (e.g. a crop box: ``crop_box`` of a
    :class:`voxface.reconstruct.Reconstruction` is in the source photo's pixels)."""
    from .errors import check_integer as _integer

    # a float (512.0 from a config) failed in PIL's resize ('float' object cannot be interpreted as an
    # integer), a string in a bare comparison TypeError
    max_side = _integer("max_side", max_side, 1)
    max_pixels = _integer("max_pixels", max_pixels, 1)
    if isinstance(src, (str, os.PathLike)):
        img, side = _load_path(Path(src), max_side, max_pixels)
    elif isinstance(src, Image.Image):
        img, side = _from_pil(src, source_name(src), max_side, max_pixels)
    elif hasattr(src, "read") and hasattr(src, "seek"):
        if isinstance(src, io.TextIOBase):  # open(path): was 'cannot read image header ('utf-8' codec ...)'
            raise InputTypeError(f"load_image: {source_name(src)} is open in text mode; open it with "
                                 "open(path, 'rb') or pass the path")
        img, side = _load_stream(src, source_name(src), max_side, max_pixels)
    elif isinstance(src, np.ndarray) or hasattr(src, "__array__"):
        img, side = _from_array(src, max_side)
    else:
        # a download's bytes (requests.get(url).content) were told only what else is taken
        hint = (": for an image file's bytes pass io.BytesIO(data)"
                if isinstance(src, (bytes, bytearray, memoryview)) else "")
        raise InputTypeError(f"load_image: unsupported input type {type(src).__name__}; "
                    f"expected a path, a PIL image, a file object or an array{hint}")
    return img, side / max(img.shape[:2])


def source_name(src: Any) -> str:
    """The name :func:`load_image`'s errors give ``src``: a path as written, a PIL image's or a file
    object's file name (``<PIL image>`` / ``<stream>`` without one), ``<array>`` for arrays."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, Image.Image):
        return str(getattr(src, "filename", "") or "<PIL image>")
    if hasattr(src, "read") and hasattr(src, "seek"):
        name = getattr(src, "name", None)
        return str(name) if isinstance(name, (str, os.PathLike)) else "<stream>"
    return ARRAY_NAME


def list_images(paths: str | os.PathLike | Iterable[str | os.PathLike], *,
                recursive: bool = False, exclude: Callable[[Path], bool] | None = None) -> list[Path]:
    """Expand files, directories and glob patterns to a sorted, de-duplicated list of image paths.

    Args:
        paths: one item or an iterable of items. Each is
            * an existing **file**: kept whatever its extension (loading it says if it is no image);
            * an existing **directory**: its files with an extension in :data:`IMAGE_EXTENSIONS`
              (case-insensitive; hidden files such as macOS ``._x.jpg`` are skipped; a broken
              symbolic link of such a name is listed: loading it names the missing target), searched
              recursively when ``recursive`` (not into hidden folders, such as a phone's
              ``DCIM/.thumbnails``, as ``**`` patterns do not; a sub-folder that cannot be read
              is a ``UserWarning`` naming it, and the others are listed);
            * a **glob pattern** (``*``, ``?``, ``[``; ``**`` crosses directories): the matching
              files with an image extension.
        recursive: also search sub-directories of directory items.
        exclude: files found in a directory or by a pattern (never a file named as it is) for
            which this returns True are left out, e.g. :func:`voxface.reconstruct.is_preview_output`:
            the previews an earlier reconstruction wrote into the folder.

    Returns:
        ``list[Path]`` sorted by path string, each file once (de-duplicated on the resolved path;
        the first spelling is kept). May be empty when directories hold no image.

    Raises:
        ImageError: an item that is neither an existing path nor a pattern matching any file, one
            that is no regular file or folder (a pipe, a device), or a folder that cannot be read or
            a path in one (no permission).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found: dict[Path, Path] = {}

    from .reconstruct import _resolved  # a link loop (x.jpg -> y.jpg -> x.jpg): p.resolve() raised RuntimeError

    def add(p: Path) -> None:
        found.setdefault(_resolved(p), p)  # a loop is listed: loading it is the one line naming it

    for item in items:
        p = Path(item)
        try:  # a path inside a folder without search permission: PermissionError
            is_file, is_dir = p.is_file(), p.is_dir()
        except OSError as e:
            raise ImageError(f"cannot read ({e.strerror or e})", path=str(item)) from None
        if is_file:
            add(p)
        elif is_dir:
            try:  # rglob would take an unreadable folder for an empty one
                os.scandir(p).close()
            except OSError as e:
                raise ImageError(f"cannot read folder ({e.strerror or e})", path=str(item)) from None
            for f in _walk(p) if recursive else p.iterdir():
                if _is_image_name(f) and _is_listed(f) and not (exclude is not None and exclude(f)):
                    add(f)
        elif any(ch in str(item) for ch in "*?["):
            matches = [Path(m) for m in _glob.glob(str(item), recursive=True)]
            images = [m for m in matches if _is_listed(m) and _is_image_name(m)
                      and not (exclude is not None and exclude(m))]
            if not matches:
                raise ImageError("no file matches this pattern", path=str(item))
            for m in images:
                add(m)
        elif os.path.exists(p):  # a pipe (`<(curl ...)`), a device: it was 'no such file or directory'
            raise ImageError("is not a regular file or folder (a pipe or a device?): save the photo to a file "
                             "first", path=str(item))
        else:  # a link `ls` lists was 'no such file or directory' here, before loading could name it
            raise ImageError(_dead_link(p) or "no such file or directory", path=str(item))
    return sorted(found.values(), key=str)


def _walk(folder: Path) -> list[Path]:
    """The files under ``folder``, not in hidden sub-folders, not through linked folders. A
    sub-folder that cannot be read is one ``UserWarning`` naming it (it was skipped without a word,
    its photos missing from the batch), and the others are listed."""
    def refused(e: OSError) -> None:
        warnings.warn(str(ImageError(f"cannot read folder ({e.strerror or e}); its photos are left out",
                                     path=e.filename)), UserWarning, stacklevel=4)

    files: list[Path] = []
    for top, dirs, names in os.walk(folder, onerror=refused):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # as ** patterns: a phone's DCIM/.thumbnails
        files += [Path(top) / n for n in names]
    return files


# -- files ---------------------------------------------------------------------------------------
def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _is_listed(p: Path) -> bool:
    """A file, or a broken symbolic link (a photo moved or unmounted since the link was made): it is
    listed, and loading it is the error that names it (it was left out of a batch without a word)."""
    return p.is_file() or (p.is_symlink() and not p.exists())


def _dead_link(p: Path) -> str | None:
    """What is wrong with ``p`` where it is a symbolic link that leads to no file (its target is
    missing, or the links loop), else ``None``."""
    try:
        if not p.is_symlink():
            return None
        os.stat(p)
    except FileNotFoundError:
        return f"a broken symbolic link: its target {os.readlink(p)} does not exist"
    except OSError as e:  # a loop (x.jpg -> y.jpg -> x.jpg): ELOOP
        return f"a symbolic link that leads to no file ({e.strerror or e})"
    return None


def _load_path(path: Path, max_side: int, max_pixels: int) -> tuple[np.ndarray, int]:
    """The image and its source's longer side (pixels), as every loader below returns them."""
    try:
        if path.is_dir():
            raise ImageError("is a directory, not an image file", path=path)
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a pipe (`<(curl ...)`) reads as 0 bytes: it was "file is empty"
            raise ImageError("is not a regular file (a pipe or a device?): save the photo to a file first", path=path)
        size = info.st_size
    except FileNotFoundError:
        raise ImageError(_dead_link(path) or "no such file", path=path) from None  # a link: not 'no such file'
    except OSError as e:
        raise ImageError(_dead_link(path) or f"cannot read file ({e.strerror or e})", path=path) from None
    if size == 0:
        raise ImageError("file is empty (0 bytes)", path=path)
    try:
        with open(path, "rb") as fh:
            return _load_stream(fh, str(path), max_side, max_pixels)
    except PermissionError:
        raise ImageError("cannot read file (permission denied)", path=path) from None


def _load_stream(fh: Any, name: str, max_side: int, max_pixels: int, *,
                 heif_retry: bool = True) -> tuple[np.ndarray, int]:
    try:
        start = fh.tell()
    except (OSError, ValueError, AttributeError):
        start = 0
    try:
        im = _open(fh, name, max_pixels)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        kind = _bmff_kind(fh, start)
        if not (heif_retry and kind == "HEIF"):
            if kind is not None and (kind == "HEIF" or _pillow_reads_avif()):
                # a half-downloaded .avif (or .heic, its reader installed) was "not an image"
                raise ImageError(f"cannot read image header: truncated or corrupt {kind} data", path=name) from None
            if kind is not None:
                raise ImageError("is an AVIF picture, which this Pillow build cannot read "
                                 "(PIL.features.check('avif') is False): save it as JPEG or PNG", path=name) from None
            fmt, why = _cut_short_kind(fh, start)
            if fmt is not None:  # a half-downloaded PNG, GIF, TIFF...: its header is cut short
                raise ImageError(f"cannot read image header: truncated or corrupt {fmt} data, or a kind of "
                                 f"{fmt} Pillow cannot read ({why})", path=name) from None
            raise ImageError("not an image, or a format Pillow cannot read", path=name) from None
        if not _register_heif():
            raise ImageError("is a HEIC/HEIF photo (an iPhone's format), which Pillow reads only with the "
                             "pillow-heif package: pip install 'voxface[heic]' (or pillow-heif), or save the photo as JPEG",
                             path=name) from None
        fh.seek(start)  # once more, with pillow-heif's opener
        return _load_stream(fh, name, max_side, max_pixels, heif_retry=False)
    except _DECODE_ERRORS as e:
        # a half-downloaded WebP: its reader's 'could not create decoder object' named no cause
        fmt = _signed_format(fh, start)
        what = f": truncated or corrupt {fmt} data, or a kind of {fmt} Pillow cannot read" if fmt else ""
        raise ImageError(f"cannot read image header{what} ({_short(e)})", path=name) from None
    with im:
        return _from_pil(im, name, max_side, max_pixels, from_file=True)


# ISO base media file brands of HEIF pictures (ISO/IEC 23008-12; AVIF's are Pillow's own)
_HEIF_REGISTERED = False
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})


def _bmff_kind(fh: Any, start: int = 0) -> str | None:
    """``"AVIF"`` or ``"HEIF"`` where the file starts (at ``start``) like such a picture (an ``ftyp``
    box naming one of its brands), else ``None``."""
    try:
        fh.seek(start)
        head = fh.read(64)
    except (OSError, ValueError):
        return None
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    n = min(len(head), max(16, struct.unpack(">I", head[:4])[0]))
    brands = [head[8:12]] + [head[i:i + 4] for i in range(16, n - 3, 4)]
    if any(b in (b"avif", b"avis") for b in brands):
        return "AVIF"
    return "HEIF" if any(b in _HEIF_BRANDS for b in brands) else None


#: Formats whose files start with a signature no other file has (Pillow's own check of it): one that
#: no reader accepts is named as such, not called 'not an image'. BMP (its 'BM' is two letters a text
#: file may start with) and Pillow's formats without a signature are left out.
_SIGNED_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "JPEG2000")


def _signed_format(fh: Any, start: int = 0) -> str | None:
    """The format (``"PNG"``, ...) of :data:`_SIGNED_FORMATS` whose signature the file starts with
    (at ``start``), or ``None``."""
    try:
        fh.seek(start)
        head = fh.read(16)
    except (OSError, ValueError):
        return None
    Image.init()
    for fmt in _SIGNED_FORMATS:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if factory is not None and accept is not None and accept(head) is True:
            return fmt
    return None


def _cut_short_kind(fh: Any, start: int = 0) -> tuple[str | None, str]:
    """The format :func:`_signed_format` names, and the error of that format's reader on the file;
    ``(None, "")`` for none."""
    fmt = _signed_format(fh, start)
    if fmt is None:
        return None, ""
    try:
        fh.seek(start)
        with warnings.catch_warnings():  # Pillow's 'Corrupt EXIF data' of a cut-short TIFF
            warnings.simplefilter("ignore")
            Image.OPEN[fmt][0](fh).close()
    except Exception as e:  # noqa: BLE001 - whatever the reader said is the reason
        return fmt, _short(e)
    return None, ""  # its reader alone takes it: Image.open's refusal is not explained


def _pillow_reads_avif() -> bool:
    from PIL import features

    return bool(features.check("avif"))


def _register_heif() -> bool:
    """Register pillow-heif's Pillow opener when that package is installed (once); whether it is."""
    global _HEIF_REGISTERED
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    with _PIL_LIMIT_LOCK:
        if not _HEIF_REGISTERED:
            register_heif_opener()
            _HEIF_REGISTERED = True
    return True


def _open(fh: Any, name: str, max_pixels: int) -> Image.Image:
    """``Image.open`` with Pillow's bomb guard raised to ``max_pixels`` (only when needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # a JPEG's EXIF block cut short: Pillow's warning named no file, and the pixels are intact
        warnings.filterwarnings("ignore", r"(Possibly )?[Cc]orrupt EXIF", UserWarning)
        try:
            im = Image.open(fh)
        except Image.DecompressionBombError:
            fh.seek(0)
            with _pil_pixel_limit(None):
                im = Image.open(fh)  # reads the header only
    _check_pixels(im.size, name, max_pixels)
    return im


class _pil_pixel_limit:
    """Temporarily set ``Image.MAX_IMAGE_PIXELS`` (process-global, so under a lock)."""

    def __init__(self, value: int | None):
        self.value = value

    def __enter__(self) -> None:
        _PIL_LIMIT_LOCK.acquire()
        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = self.value

    def __exit__(self, *exc: object) -> None:
        Image.MAX_IMAGE_PIXELS = self.saved
        _PIL_LIMIT_LOCK.release()


def _check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"image has no pixels ({w}x{h})", path=name)
    if w * h > max_pixels:
        raise ImageError(f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels, more than the "
                         f"{max_pixels / 1e6:.0f}-megapixel limit", path=name)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _from_pil(im: Image.Image, name: str, max_side: int, max_pixels: int, *,
              from_file: bool = False) -> tuple[np.ndarray, int]:
    if not from_file:
        _check_pixels(im.size, name, max_pixels)
    w, h = im.size  # the file's (a JPEG draft shrinks im.size)
    limit = Image.MAX_IMAGE_PIXELS
    big = limit is not None and w * h > 2 * limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if big:
                with _pil_pixel_limit(None):
                    return _decode(im, name, max_side, draft=from_file)
            return _decode(im, name, max_side, draft=from_file)
    except ImageError:
        raise
    except MemoryError:  # an intact file too large for this machine's free memory: not corrupt
        raise ImageError(f"not enough memory to decode this {w}x{h} image",
                         path=name) from None
    except (*_DECODE_ERRORS, AssertionError) as e:  # Pillow asserts it has a file to read
        if not from_file and ("closed image" in str(e) or getattr(im, "fp", 1) is None):
            # a PIL image used after its ``with Image.open(...)`` block: it has no pixels or file
            raise ImageError("the PIL image is closed (its 'with Image.open(...)' block has ended, or "
                             ".close() was called): pass it while open, or pass the path", path=name) from None
        raise ImageError(f"cannot decode image: truncated or corrupt data ({_short(e)})",
                         path=name) from None


# EXIF orientation tag value -> the transpose that undoes it (as ImageOps.exif_transpose does)
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1 where there is none, or the EXIF block is corrupt)."""
    try:
        with warnings.catch_warnings():  # Pillow's 'Corrupt EXIF data' UserWarning named no file
            warnings.filterwarnings("ignore", r"(Possibly )?[Cc]orrupt EXIF", UserWarning)
            return int(im.getexif().get(0x0112, 1))  # 0x0112: Orientation
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not reject intact pixels
        return 1


def _is_preview(im: Image.Image) -> bool:
    """Whether ``im`` is a TIFF picture marked as a reduced-resolution copy of another (bit 0 of its
    NewSubFileType tag, 254) that has sub-pictures (SubIFDs, 330): a raw camera file (DNG, and the
    TIFF-based raw formats) whose full picture is a sensor image Pillow cannot read."""
    tags = getattr(im, "tag_v2", None) if im.format == "TIFF" else None
    try:
        return tags is not None and bool(int(tags.get(254, 0)) & 1) and 330 in tags
    except (TypeError, ValueError):
        return False


def _decode(im: Image.Image, name: str, max_side: int, draft: bool) -> tuple[np.ndarray, int]:
    """Fully decode frame 0 of ``im`` and turn it into ``uint8 (H, W, 3)``; also its longer side
    in the file (before any draft or downscale).

    The EXIF orientation is read from the decoded file but applied last, to the downscaled
    picture (the bound ``max_side`` is the same for both orientations); this is what
    ``ImageOps.exif_transpose`` does, without its full-size copy.
    """
    if _is_preview(im):  # a DNG: its first picture is a thumbnail, read as if it were the photo
        raise ImageError(f"is a raw camera file (a DNG, or another TIFF-based raw format): Pillow reads only "
                         f"its {im.size[0]}x{im.size[1]} preview, not the photo; export the photo as JPEG, PNG or "
                         "TIFF", path=name)
    side = max(im.size)
    if draft and im.format in ("JPEG", "MPO") and side > max_side:
        # libjpeg DCT scaling; keeps >= max_side pixels on the longer side. Pillow scales by what
        # both requested sides allow: a square request left a panorama (or any photo shorter than
        # max_side on one side) at full size
        r = max_side / side
        im.draft(None, (max(1, int(np.ceil(im.size[0] * r))), max(1, int(np.ceil(im.size[1] * r)))))
    _scale_grey_key(im)
    if _planes_misread(im) and not _read_planes_with_libtiff(im):
        raise ImageError("is an uncompressed TIFF of 16-bit colour planes stored one after another (PlanarConfiguration "
                         "2), which this Pillow build misreads: save it with interleaved samples, or as PNG", path=name)
    im.load()  # the full decode: truncation and corruption surface here
    method = _ORIENTATION.get(_orientation(im))
    profile = _colour_profile(im)
    out = _downscale(_to_8bit(im, name, from_file=draft, keep_cmyk=profile is not None), max_side)
    if profile is not None:  # after the downscale: the conversion costs as much as a resize per pixel
        out = _to_srgb(out, profile)
    if method is not None:
        out = out.transpose(method)
    return _to_rgb_array(out), side


def _planes_misread(im: Image.Image) -> bool:
    """Whether ``im`` is an uncompressed TIFF of more than 8 bits a sample whose colour planes are
    stored one after another (PlanarConfiguration 2): Pillow's own reader unpacks each plane's
    16-bit samples as 8-bit ones (the astronaut so stored loaded as other colours, [155 139 132] on
    average instead of [142 106 96], without an error). Compressed such files go to libtiff, which
    reads them right."""
    if im.format != "TIFF" or not im.tile:
        return False
    try:
        bits = im.tag_v2.get(258, (1,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return (int(im.tag_v2.get(284, 1)) == 2 and len(bits) > 1 and max(bits) > 8
                and all(t[0] == "raw" for t in im.tile))
    except (TypeError, ValueError):
        return False


def _read_planes_with_libtiff(im: Image.Image) -> bool:
    """Have libtiff decode ``im`` (a TIFF :func:`_planes_misread` is true of) as Pillow has it decode
    compressed TIFFs: one tile of the planes' rawmode (``RGB;16N``: libtiff returns native byte
    order). False where this Pillow has no libtiff, or its reader no longer works so."""
    from PIL import ImageFile, features

    tile = getattr(ImageFile, "_Tile", None)
    if not features.check("libtiff") or tile is None or not hasattr(im, "use_load_libtiff"):
        return False
    planes = "".join(dict.fromkeys(str(t[3][0]) for t in im.tile))  # 'R', 'G', 'B' (, 'A'): layer order
    rawmode = f"{planes};16N"
    try:
        Image._getdecoder(im.mode, "raw", (rawmode, 0, 1))  # Pillow unpacks such samples
    except (OSError, ValueError):
        return False
    im.tile = [tile("libtiff", (0, 0, *im.size), 0, (rawmode, False, im.tag_v2.offset))]
    im.use_load_libtiff = True
    return True


def _scale_grey_key(im: Image.Image) -> None:
    """A 2- or 4-bit grey PNG's transparent value (tRNS) on the 8-bit scale Pillow reads its pixels
    to (value 1 of 0..3 is 85): Pillow keeps the file's value, which then made no pixel or the wrong
    ones transparent. Read from the file's tile, so before ``im.load()``."""
    key = im.info.get("transparency")
    if im.format != "PNG" or im.mode != "L" or not isinstance(key, int) or not im.tile:
        return
    args = im.tile[0].args
    bits = {"L;2": 2, "L;4": 4}.get(args[0] if isinstance(args, tuple) and args else args)
    if bits is not None:
        im.info["transparency"] = key * 255 // ((1 << bits) - 1)


#: The modes whose pixels an embedded RGB colour profile describes (a palette's entries are RGB).
_RGB_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA")


def _colour_profile(im: Image.Image) -> Any:
    """The embedded ICC profile (a ``PIL.ImageCms.ImageCmsProfile``) to convert ``im``'s colours to
    sRGB from, or ``None``: none embedded, one that describes sRGB already (its description starts
    with ``sRGB``), one of another colour space than the pixels' (an RGB profile on a grey picture),
    one that cannot be read (a corrupt block must not reject intact pixels, as a corrupt EXIF block
    does not), or a Pillow built without littleCMS."""
    icc = im.info.get("icc_profile")
    if not icc or not isinstance(icc, bytes):
        return None
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = (profile.profile.xcolor_space or "").strip()
        description = (profile.profile.profile_description or "").strip()
    except Exception:  # noqa: BLE001 - ImportError, PyCMSError, OSError...: the pixels as they are
        return None
    if space == "CMYK" and im.mode == "CMYK":
        return profile
    if space == "RGB" and im.mode in _RGB_MODES and not description.lower().startswith("srgb"):
        return profile
    return None


def _to_srgb(im: Image.Image, profile: Any) -> Image.Image:
    """``im`` (``RGB``, ``RGBA`` or ``CMYK``, its colours in ``profile``'s space) in sRGB: ``RGB``, or
    ``RGBA`` with the alpha kept; perceptual intent, as browsers and photo viewers show such photos.
    A profile littleCMS refuses to convert with leaves the pixels as they are (``CMYK`` converted as
    without a profile)."""
    from PIL import ImageCms

    global _SRGB_PROFILE
    if _SRGB_PROFILE is None:
        _SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    try:
        return ImageCms.profileToProfile(im, profile, _SRGB_PROFILE, outputMode="RGBA" if im.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im.convert("RGB") if im.mode == "CMYK" else im


_SRGB_PROFILE: Any = None


def _to_8bit(im: Image.Image, name: str, *, from_file: bool = False, keep_cmyk: bool = False) -> Image.Image:
    """Convert to one of ``L``, ``LA``, ``RGB``, ``RGBA`` (8 bits per channel); ``CMYK`` is kept as it
    is with ``keep_cmyk`` (its colour profile converts it, :func:`_to_srgb`)."""
    out = _to_8bit_values(im, name, from_file=from_file, keep_cmyk=keep_cmyk)
    key = im.info.get("transparency")
    if out.mode == "L" and (im.mode == "1" or im.mode.startswith("I")) and isinstance(key, int):
        # a 1- or 16-bit grey PNG's transparent value (tRNS): Pillow's conversions drop it, and it showed
        # the value stored under it (black) where a 2- to 8-bit grey PNG's is white. Matched on the
        # file's own values (16 bits: not on the 8 bits they round to)
        alpha = np.where(np.asarray(im) == key, np.uint8(0), np.uint8(255))
        out = Image.merge("LA", (out, Image.fromarray(alpha, "L")))
    return out


def _to_8bit_values(im: Image.Image, name: str, *, from_file: bool, keep_cmyk: bool) -> Image.Image:
    """:func:`_to_8bit` but for a 1- or 16-bit grey picture's transparent value."""
    mode = im.mode
    if mode == "CMYK" and keep_cmyk:
        return im
    if mode in ("L", "RGB") and im.info.get("transparency") is not None:
        return im.convert(mode + "A" if mode == "L" else "RGBA")  # a PNG's transparent colour (tRNS)
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "La":
        return im.convert("LA")
    if mode in ("RGBa", "PA"):
        return im.convert("RGBA")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if mode == "I" and int(a.max(initial=0)) <= 255 and int(a.min(initial=0)) >= 0:
            # 8-bit values widened to 32 bits (``Image.convert("I")``): read as 16 bits they would
            # all be darker than 1/257, a black picture; they are what they say
            return Image.fromarray(a.astype(np.uint8), "L")
        return Image.fromarray(_u16_to_u8(a), "L")  # mode I: clipped to 0..65535 a block at a time
    if mode == "F":
        a = np.asarray(im)
        # a 32-bit float file of 0-255 values was told to 'pass uint8', which a file cannot
        return Image.fromarray(_float_to_u8(a, name, "save it as an 8- or 16-bit image" if from_file
                                            else "for 0-255 data pass im.convert('L')"), "L")
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def _downscale(im: Image.Image, max_side: int) -> Image.Image:
    w, h = im.size
    if max(w, h) <= max_side:
        return im
    s = max_side / max(w, h)
    size = (max(1, min(max_side, round(w * s))), max(1, min(max_side, round(h * s))))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    a = np.asarray(im)
    if a.ndim == 2:
        a = a[..., None]
    return _channels_to_rgb(a)


def _channels_to_rgb(a: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, C)`` with C in 1..4 to a new, writable ``uint8 (H, W, 3)``; alpha over white."""
    c = a.shape[2]
    if c in (2, 4):
        color, alpha = a[..., :-1].astype(np.uint16), a[..., -1:].astype(np.uint16)
        # over white: v*a/255 + 255*(1 - a/255), rounded, in integers
        a = ((color * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
        c -= 1
    if c == 1:
        return np.repeat(a, 3, axis=2)  # a new array
    return np.array(a, dtype=np.uint8, order="C", copy=True)  # never a view of the input


# -- arrays --------------------------------------------------------------------------------------
#: Values converted at a time by :func:`_u16_to_u8` (its 4-byte intermediates: 4 MB each).
_U16_BLOCK = 1 << 20


def _u16_to_u8(a: np.ndarray) -> np.ndarray:
    """``round(v * 255 / 65535)`` of integer values ``a`` (any shape; values outside 0..65535, of a
    32-bit ``I`` picture, clipped first) as ``uint8`` of ``a``'s shape.

    Worked a block of rows at a time: converting the whole array at once held two 4-byte copies of
    it (``astype(uint32)``, then each arithmetic step's result), 8 bytes a pixel on top of the
    decoded picture and its array (12 in all for a 16-bit grey file; now about 6).
    """
    out = np.empty(a.shape, np.uint8)
    if a.ndim == 0 or a.size == 0:
        if a.size:
            out[...] = (np.clip(a.astype(np.int64), 0, 65535) * 255 + 32767) // 65535
        return out
    step = max(1, _U16_BLOCK // max(1, a[0].size))
    clip = a.dtype.itemsize > 2 or a.dtype.kind == "i"
    for i in range(0, a.shape[0], step):
        block = a[i:i + step]
        if clip:
            block = np.clip(block, 0, 65535)
        wide = block.astype(np.uint32)
        wide *= 255
        wide += 32767
        wide //= 65535
        out[i:i + step] = wide
    return out


def _float_to_u8(a: np.ndarray, name: str, hint: str = "pass uint8 for 0-255 data") -> np.ndarray:
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ImageError("float image has NaN or infinite values", path=name)
    lo, hi = float(a.min()), float(a.max())
    if lo < -_FLOAT_TOLERANCE or hi > 1 + _FLOAT_TOLERANCE:
        raise ImageError(f"float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}] "
                         f"({hint})", path=name)
    return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_numpy(src: Any) -> np.ndarray:
    mod = type(src).__module__ or ""
    if mod.startswith("torch") and hasattr(src, "detach"):
        t = src.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(src)


def _from_array(src: Any, max_side: int) -> tuple[np.ndarray, int]:
    name = ARRAY_NAME
    try:
        a = _to_numpy(src)
    except Exception as e:  # noqa: BLE001 - whatever __array__ raised
        raise ImageError(f"cannot convert to an array ({_short(e)})", path=name) from None
    if a.ndim == 4 and a.shape[0] == 1:  # a batch of one, as torch pipelines give an image: (1, C, H, W)
        a = a[0]
    if a.ndim == 2:
        a = a[..., None]
    elif a.ndim == 3:
        if a.shape[2] not in (1, 2, 3, 4):
            if a.shape[0] in (1, 2, 3, 4):
                a = np.moveaxis(a, 0, -1)  # (C, H, W) -> (H, W, C)
            else:
                raise ImageError(f"array of shape {a.shape} has no channel axis of size 1-4 "
                                 "(expected (H, W), (H, W, C) or (C, H, W))", path=name)
    else:
        batch = (f"; it holds a batch of {a.shape[0]} images: pass them one at a time"
                 if a.ndim == 4 and a.shape[0] > 1 else "")
        raise ImageError(f"array of shape {a.shape} is not one image "
                         f"(expected (H, W), (H, W, C) or (C, H, W)){batch}", path=name)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"array of shape {a.shape} has no pixels", path=name)

    kind = a.dtype.kind
    if a.dtype == np.uint8:
        pass
    elif kind == "u" and a.dtype.itemsize == 2:  # uint16 of either byte order ('>u2' too)
        a = _u16_to_u8(a)
    elif kind == "b":
        a = a.astype(np.uint8) * np.uint8(255)
    elif kind == "f":
        a = _float_to_u8(a, name)
    elif kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise ImageError(f"{a.dtype} image values must lie in 0..255, got {lo}..{hi} "
                             "(pass uint8, uint16, or float in [0, 1])", path=name)
        a = a.astype(np.uint8)
    else:
        raise ImageError(f"unsupported array dtype {a.dtype} "
                         "(use uint8, uint16, bool or float in [0, 1])", path=name)

    h, w = a.shape[:2]
    if max(h, w) > max_side:
        # resize in PIL (antialiased) per the same rule as files; composite alpha first
        rgb = _channels_to_rgb(a)
        return _to_rgb_array(_downscale(Image.fromarray(rgb, "RGB"), max_side)), max(h, w)
    return _channels_to_rgb(a), max(h, w)
