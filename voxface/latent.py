"""Latent research toolkit: interpolate, transfer expressions, sample, principal directions, walks.

Codes are :class:`voxface.Latents`: ``z_id (B, D_id)`` and ``z_exp (B, D_exp)`` float32 CPU tensors
(``D_id = config.encoder.z_id``, ``D_exp = config.encoder.z_exp``: 100 and 53 for the shipped
model). Every function that takes "a face" accepts (see :func:`as_latents`):

* :class:`voxface.Latents` (or a :class:`voxface.Reconstruction`, whose latents are used);
* a ``.npz`` file written by ``voxface reconstruct`` (or :func:`save_latents`), or
  a dict with ``z_id`` and ``z_exp`` arrays (``(D,)`` for one face or ``(B, D)``, the same ``B``
  in both) and optionally ``pose_rotation``, ``pose_scale``, ``pose_translation``;
* a photo (path, PIL image, ``(H, W, 3)`` uint8 array, or an image tensor: ``(H, W, 3)`` or
  ``(3, H, W)``, as :func:`voxface.image.load_image` reads it): it is detected, cropped and *encoded*
  (no decoding, no mesh); pass ``detect=False`` for images that are already framed crops, and
  ``skin_check=False`` / ``scan_size=`` as to :func:`voxface.reconstruct.reconstruct_image` (a face
  under strongly tinted light; small faces in a large photo);
* one face's two codes side by side, ``(z_id, z_exp)`` or ``[z_id, z_exp]`` (tensors, arrays or
  lists of numbers, ``(D_id,)`` and ``(D_exp,)`` or ``(B, D_id)`` and ``(B, D_exp)``), as a dict of
  them;
* a list or tuple of faces (holding at least one of the forms above, e.g. the ``.npz`` files of
  several reconstructions, photos, or arrays of two or more dimensions): each is read as such and
  the batches are stacked in order
  (:func:`stack_latents`: poses only when every face has one);
* a raw code: a torch tensor, numpy array or nested list of numbers (floats or ints)
  ``(D_id + D_exp,)`` / ``(B, D_id + D_exp)`` holding ``[z_id, z_exp]``, or only one part
  ``(D_id,)`` / ``(B, D_id)`` / ``(D_exp,)`` / ``(B, D_exp)`` (the other part is then the prior
  mean). A 2-D numpy array is a code when its rows have one of these lengths and its dtype is not
  ``uint8``, ``uint16`` or ``bool`` (those are grayscale photos), whatever ``B``.

Every code is checked where it comes in: finite real numbers within :data:`MAX_ABS_CODE`, of
this model's lengths, at least one face, as many ``z_id`` rows as ``z_exp`` rows; anything else is
a one-line :class:`voxface.VoxfaceError` naming the file (or ``<dict>``, ``<latents>``) and the
array.

All functions return Latents (pose ``None`` unless said otherwise); :func:`decode` turns them into
:class:`voxface.Reconstruction` s (meshes), decoding in batches.

**The prior** lives in the checkpoint (``model.prior``, fitted by the trainer on the latents of
training images, :func:`voxface.train.compute_latent_prior`), per latent ``name`` in
``z_id``/``z_exp``:

* **Gaussian**: ``{name}_mean``, ``{name}_std`` ``(D,)``, a diagonal normal per dimension;
* **PCA**: ``{name}_pca = {"components": (k, D) unit rows, "explained_variance": (k,),
  "explained_variance_ratio": (k,)}``, the top principal directions of the training codes;
  optionally ``"coeff_correlation": (k, C)``, the correlation of each direction's projections with
  the ``C`` ground-truth identity / expression coefficients of the training data (written by
  :func:`annotate_directions`), with the coefficient names in ``prior["id_names"]`` /
  ``prior["exp_names"]``.

:func:`sample` draws from the PCA part by default (``kind="pca"``: correlated codes
``mean + sum_j c_j sqrt(var_j) v_j`` plus the remaining per-dimension variance, ``c_j ~ N(0, 1)``);
``kind="gaussian"`` draws from the diagonal normal. A checkpoint without a prior falls back to
``N(0, I)`` with a warning.

Randomness: sample ``i`` of :func:`sample` is a pure function of ``(seed, latent, i)`` (numpy's
``default_rng([seed, stream, i])``, one stream for ``z_id`` and one for ``z_exp``: ``space="both"``
draws the identities ``space="identity"`` draws), identical on every machine and independent of ``n``.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError, InputTypeError, VoxfaceError, check_finite, check_integer
from .reconstruct import SCAN_SIZE

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .models import Latents, VoxFace
    from .reconstruct import Reconstruction

__all__ = [
    "SPACES",
    "MODES",
    "Direction",
    "as_latents",
    "interpolate",
    "transfer_expression",
    "sample",
    "sample_latents",
    "mean_latents",
    "expression_names",
    "set_expression",
    "trains_coefficient_coordinates",
    "principal_directions",
    "annotate_directions",
    "record_correlations",
    "walk",
    "decode",
    "save_latents",
    "stack_latents",
]

#: ``space=`` values: which latent(s) an operation changes.
SPACES = ("identity", "expression", "both")
#: ``mode=`` values of :func:`interpolate`.
MODES = ("slerp", "lerp")
#: A principal direction whose projections correlate at least this much (absolute Pearson r)
#: with a ground-truth coefficient is named after it (:attr:`Direction.match`).
MATCH_MIN_CORRELATION = 0.3


def match_threshold(num_faces: int | None, num_coeffs: int = 100) -> float:
    """The |r| a direction needs to be named, correlated over ``num_faces`` faces with
    ``num_coeffs`` coefficients: at least :data:`MATCH_MIN_CORRELATION`, and above chance. With no
    relation each r is about ``N(0, 1 / n)``; the threshold is the largest of the ``num_coeffs``
    |r| at a 5% chance (Bonferroni), ``z / sqrt(n)`` with ``z`` 3.5 for 100 coefficients, 2.5
    for 4 (``--annotate 8`` named every direction at |r| 0.6-0.8). ``None`` (not recorded): the
    fixed minimum."""
    from statistics import NormalDist

    if not num_faces:
        return MATCH_MIN_CORRELATION
    z = NormalDist().inv_cdf(1.0 - 0.05 / (2.0 * max(1, int(num_coeffs))))
    return max(MATCH_MIN_CORRELATION, z / float(num_faces) ** 0.5)


_NAMES = {"identity": "z_id", "expression": "z_exp"}
_STREAMS = {"z_id": 0, "z_exp": 1}
# names of the toy data's coefficients (voxface.data.toy module docstring)
_TOY_ID_NAMES = ["toy_width", "toy_depth", "toy_nose", "toy_chin"]
_TOY_EXP_NAMES = ["toy_jaw_open", "toy_smile", "toy_brow_raise"]


def _torch() -> Any:
    import torch

    return torch


def _dims(model: "VoxFace") -> tuple[int, int]:
    cfg = model.config.encoder
    return int(cfg.z_id), int(cfg.z_exp)


def _prior_mean(model: "VoxFace", name: str, dim: int) -> "torch.Tensor":
    torch = _torch()
    p = model.prior
    if p and f"{name}_mean" in p:  # a copy: editing a returned mean face must not edit the prior
        return torch.as_tensor(p[f"{name}_mean"]).float().cpu().reshape(dim).clone()
    return torch.zeros(dim)


# ------------------------------------------------------------------------------------ inputs

#: The code arrays of a latent ``.npz`` / dict, and its optional pose arrays with the shape of
#: one face's entry. :func:`as_latents` reads only these (the ``logits`` of a ``reconstruct
#: --save-volume`` file are not even loaded).
_CODE_KEYS = ("z_id", "z_exp")
_POSE_SHAPES = {"pose_rotation": (3, 3), "pose_scale": (), "pose_translation": (2,)}
#: dtypes only photos have: a 2-D array of one is a grayscale photo, never codes.
_IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.bool_))
#: Largest magnitude of a code value accepted. Codes are O(1) (the prior's spread; 3 standard
#: deviations span typical faces); far beyond, float32 arithmetic overflows (the decoder's logits
#: turn NaN near 1e30, a slerp's norms near 1e19), so larger values are refused where they enter.
MAX_ABS_CODE = 1e6
#: What the dtypes that are no numbers hold, by ``dtype.kind``.
_NOT_NUMBERS = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects",
                "M": "dates", "m": "time spans", "V": "raw records"}


_integer = check_integer  # (the names this module's functions use)
_finite = check_finite


def _as_numbers(value: Any, what: str, where: str | None = None) -> np.ndarray:
    """``value`` (numpy array, torch tensor or nested list of numbers) as a float32 numpy array.

    Integers are numbers; booleans, complex numbers, strings and objects are refused, and so are
    NaN and infinities and values beyond :data:`MAX_ABS_CODE` (judged before the cast to float32:
    a float64 1e39 is a value beyond the bound, not an infinity).

    Raises:
        VoxfaceError: naming ``what`` (e.g. ``'z_id'``) and the file ``where`` (if any).
    """
    if hasattr(value, "detach") and hasattr(value, "dtype"):  # a torch tensor
        t = value.detach().cpu()
        if t.dtype.is_complex or str(t.dtype) == "torch.bool":
            raise InputError(f"{what} must hold real numbers, not {str(t.dtype).replace('torch.', '')}", where)
        a = t.double().numpy()  # (checked before the cast to float32, which makes 1e39 infinite)
    else:
        try:
            a = np.asarray(value)
        except (ValueError, TypeError) as e:  # ragged nested lists
            reason = " ".join(str(e).split())
            raise InputError(f"{what} is not a rectangular array of numbers ({reason})", where) from None
        if a.dtype.kind not in "iuf":
            raise InputError(
                f"{what} must hold real numbers, not {_NOT_NUMBERS.get(a.dtype.kind, 'other data')} ({a.dtype})",
                where)
        with np.errstate(over="ignore"):  # (a long double beyond float64: infinite)
            a = a.astype(np.float64)
    bad = int(a.size - np.isfinite(a).sum())
    if bad:
        raise InputError(f"{what} holds {bad} NaN or infinite value(s) of {a.size} "
                           "(codes must be finite float32 numbers)", where)
    if a.size and float(np.abs(a).max()) > MAX_ABS_CODE:
        raise InputError(f"{what} holds values beyond +-{MAX_ABS_CODE:g} (largest magnitude "
                           f"{float(np.abs(a).max()):.3g}; codes are of order 1)", where)
    return a.astype(np.float32)  # (within MAX_ABS_CODE: no overflow)


def _check_output(z: "torch.Tensor", cause: str) -> "torch.Tensor":
    """``z`` when every value is finite and within :data:`MAX_ABS_CODE`; else a ValueError
    blaming ``cause`` (e.g. ``"temperature 1e+30"``)."""
    if not bool(z.isfinite().all()) or (z.numel() and float(z.abs().max()) > MAX_ABS_CODE):
        raise InputError(f"{cause}: the codes would exceed +-{MAX_ABS_CODE:g} (codes are of order 1)")
    return z


def _code_rows(a: np.ndarray, width: int, key: str, where: str) -> np.ndarray:
    """The array ``key`` of a latent file, a code ``(D,)`` (one face) or ``(B, D)``, as ``(B, D)``
    with ``B >= 1`` and ``D = width``; else a VoxfaceError naming ``where`` and ``key``."""
    what = f"'{key}'"
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise InputError(f"{what} must be one code ({width},) or a batch (B, {width}), got shape {a.shape}", where)
    if a.shape[0] == 0:
        raise InputError(f"{what} holds no codes (shape {a.shape})", where)
    if a.shape[1] != width:
        hint = ("a (D, B) array with one code per column? codes are rows: save its transpose" if a.shape[0] == width
                else "latents of another model?")
        raise InputError(f"{what} has codes of length {a.shape[1]}, this model's {key} has {width} ({hint})", where)
    return a


def _read(arrays: Mapping[str, Any], key: str, where: str) -> Any:
    """``arrays[key]``; an ``np.load`` archive reads the array here, and may fail."""
    try:
        return arrays[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = " ".join(str(e).split())
        raise InputError(f"'{key}' cannot be read ({type(e).__name__}: {reason})", where) from None


def _arrays_to_latents(arrays: Mapping[str, Any], d_id: int, d_exp: int, where: str) -> "Latents":
    """The Latents of a latent file's / dict's arrays, each checked (the caller checked the keys).

    Args:
        arrays: ``z_id (D_id,)`` or ``(B, D_id)`` and ``z_exp (D_exp,)`` or ``(B, D_exp)``, one row
            per face (``B >= 1``, the same in both), finite real numbers (ints too); optionally
            ``pose_rotation (B, 3, 3)``, ``pose_scale (B,)``, ``pose_translation (B, 2)`` (or one
            face's ``(3, 3)``, ``()``, ``(2,)``), all three or none. Other keys are ignored.
        d_id, d_exp: the model's code lengths.
        where: the file (or ``<dict>``) that error messages name.

    Returns:
        CPU float32 Latents ``z_id (B, D_id)``, ``z_exp (B, D_exp)`` (new tensors), with the pose.

    Raises:
        VoxfaceError: ``<where>: '<key>' <problem>``.
    """
    torch = _torch()
    from .models import Latents, Pose

    z_id, z_exp = (_code_rows(_as_numbers(_read(arrays, key, where), f"'{key}'", where), width, key, where)
                   for key, width in (("z_id", d_id), ("z_exp", d_exp)))
    n = len(z_id)
    if len(z_exp) != n:
        raise InputError(f"'z_id' holds {n} code(s) but 'z_exp' {len(z_exp)} (one row per face in each)", where)
    present = [k for k in _POSE_SHAPES if k in arrays]
    if not present:
        return Latents(torch.from_numpy(z_id), torch.from_numpy(z_exp))
    if len(present) < len(_POSE_SHAPES):
        missing = [k for k in _POSE_SHAPES if k not in arrays]
        raise InputError(f"has {', '.join(present)} but no {', '.join(missing)} (a pose needs all three)", where)
    parts = []
    for key, one in _POSE_SHAPES.items():
        a = _as_numbers(_read(arrays, key, where), f"'{key}'", where)
        if a.shape == one:
            a = a[None]
        if a.shape != (n, *one):
            raise InputError(f"'{key}' must have shape {(n, *one)} for {n} face(s), got {a.shape}", where)
        parts.append(torch.from_numpy(a))
    return Latents(torch.from_numpy(z_id), torch.from_numpy(z_exp), Pose(*parts))


def _load_npz(model: "VoxFace", path: str | os.PathLike) -> "Latents":
    """The Latents of a ``.npz`` file (:func:`_arrays_to_latents`); only the arrays it needs are
    read. Raises VoxfaceError naming the file (and the key) for anything else. Warns
    (``UserWarning``, naming the file) when the file records a ``model_sha256``
    (:func:`voxface.reconstruct.model_provenance`) other than ``model``'s: codes of other weights
    have the right shapes but decode to another face."""
    if not Path(path).is_file():  # a folder named x.npz was 'no such latent file', beside it in `ls`
        raise InputError("is a folder, not a latent file" if Path(path).is_dir() else "no such latent file", path)
    try:
        archive = np.load(path)
    except OSError as e:  # open() failed (no permission, a disk error): nothing was read to judge the format
        raise InputError(f"cannot read file ({e.strerror or e})", path) from None
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = " ".join(str(e).split())
        if "allow_pickle" in reason:  # numpy's answer for a file that is neither .npz nor .npy, and for pickles
            with open(path, "rb") as f:
                npy = f.read(6) == b"\x93NUMPY"
            reason = ("a .npy array of Python objects (pickled), which voxface never loads" if npy
                      else "neither a .npz archive nor a .npy array")
        else:
            reason = f"{type(e).__name__}: {reason}"
        raise InputError(f"not a voxface latent file ({reason})", path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array named .npz
        raise InputError("not a voxface latent file (a single .npy array, not a .npz archive of "
                           "'z_id' and 'z_exp')", path)
    with archive:
        missing = [k for k in _CODE_KEYS if k not in archive.files]
        if missing:
            raise InputError(f"not a voxface latent file: no {' or '.join(repr(k) for k in missing)} array "
                               f"(it holds: {', '.join(archive.files) or 'nothing'})", path)
        latents = _arrays_to_latents(archive, *_dims(model), str(path))
        try:
            made_by = str(archive["model_sha256"]) if "model_sha256" in archive.files else None
        except ValueError:  # a pickled record: not voxface's, and nothing to compare
            made_by = None
    if made_by is not None:  # codes of other weights decode to another face (same shapes: nothing else tells)
        from .reconstruct import model_digest

        if made_by != (ours := model_digest(model)):
            warnings.warn(f"{os.fsdecode(path)}: its codes were made by other weights (model_sha256 {made_by}; "
                          f"this model's is {ours}): they decode to another face here", UserWarning, stacklevel=3)
    return latents


def _code_to_latents(model: "VoxFace", code: Any) -> "Latents":
    """A raw code (tensor, array or nested list; ``(D,)`` or ``(B, D)``) to Latents: ``D`` is
    ``D_id + D_exp`` (``[z_id, z_exp]``), or ``D_id`` / ``D_exp`` alone (the other part is the
    prior mean). Raises VoxfaceError for anything else."""
    torch = _torch()
    from .models import Latents

    z = _as_numbers(code, "a raw latent code")
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2:
        raise InputError(f"a raw latent code must be (D,) or (B, D), got shape {z.shape}")
    if not len(z):
        raise InputError(f"a raw latent code must hold at least one code, got shape {z.shape}")
    z = torch.from_numpy(z)
    d_id, d_exp = _dims(model)
    n, d = z.shape
    if d == d_id + d_exp:
        return Latents(z[:, :d_id].clone(), z[:, d_id:].clone())
    if d == d_id == d_exp:  # the error below would say the code does not fit, when it fits either part
        raise InputError(
            f"a raw latent code of length {d} could be a z_id or a z_exp (this model has {d} of each): give "
            f"[z_id, z_exp] (length {d_id + d_exp}) or a dict {{'z_id': ..., 'z_exp': ...}}")
    if d == d_id and d != d_exp:
        return Latents(z, _prior_mean(model, "z_exp", d_exp).expand(n, -1).clone())
    if d == d_exp and d != d_id:
        return Latents(_prior_mean(model, "z_id", d_id).expand(n, -1).clone(), z)
    raise InputError(
        f"a raw latent code of length {d} does not fit this model: expected D_id + D_exp = {d_id + d_exp}, "
        f"D_id = {d_id} or D_exp = {d_exp}"
    )


def _is_raw_code(face: Any, d_id: int, d_exp: int) -> bool:
    """Whether ``face`` is a raw code rather than a photo: by its type, shape and dtype, never by
    its batch size (a ``(200, D)`` batch of codes is codes).

    * a list or tuple: a code (photos come as paths, PIL images or arrays);
    * a torch tensor: a code, unless it has three or more dimensions or is a 2-D ``uint8``,
      ``uint16`` or ``bool`` one: an image tensor (``(H, W, 3)``, ``(3, H, W)``, grayscale), a
      photo as :meth:`voxface.VoxFace.reconstruct` takes it;
    * a numpy array of at most one dimension: a code;
    * a 2-D numpy array: a code when its rows have a code's length (``D_id + D_exp``, ``D_id`` or
      ``D_exp``) and its dtype is none of the image-only ``uint8``, ``uint16``, ``bool``; otherwise
      a grayscale photo;
    * anything else (a path, a PIL image, an ``(H, W, C)`` array): a photo.
    """
    if isinstance(face, (list, tuple)):
        return True
    if hasattr(face, "detach") and hasattr(face, "shape"):  # a torch tensor
        image_dtype = str(face.dtype) in ("torch.uint8", "torch.uint16", "torch.bool")
        return face.ndim <= 1 or (face.ndim == 2 and not image_dtype)
    if isinstance(face, np.ndarray):
        if face.ndim <= 1:
            return True
        return face.ndim == 2 and face.shape[1] in (d_id, d_exp, d_id + d_exp) and face.dtype not in _IMAGE_DTYPES
    return False


def _is_code_pair(face: Any, d_id: int, d_exp: int) -> bool:
    """Whether ``face`` is one face's two codes side by side, ``(z_id, z_exp)`` or
    ``[z_id, z_exp]``: a list or tuple of exactly two codes (tensors, numpy arrays or lists of
    numbers) of one or two dimensions, the first with rows of ``D_id`` values and the second of
    ``D_exp`` (``(rec.latents.z_id, rec.latents.z_exp)`` was read as a list of two faces, the
    identity with the mean expression and the mean identity with the expression)."""
    if not isinstance(face, (list, tuple)) or len(face) != 2:
        return False
    widths = []
    for f in face:
        if isinstance(f, (list, tuple)):
            try:
                f = np.asarray(f)
            except (ValueError, TypeError):
                return False
        if not (isinstance(f, np.ndarray) or hasattr(f, "detach")) or getattr(f, "ndim", 0) not in (1, 2):
            return False
        if str(f.dtype) in ("uint8", "uint16", "bool", "torch.uint8", "torch.uint16", "torch.bool", "object"):
            return False
        widths.append(int(f.shape[-1]))
    return widths == [d_id, d_exp]


def _is_face_list(face: Any) -> bool:
    """Whether ``face`` is a list or tuple of faces (to read one by one and stack) rather than a raw
    code: it holds at least one Latents, Reconstruction, dict, path, PIL image or array of two or
    more dimensions (a photo, a batch of codes), which no code holds (``[a.npz, b.npz]`` was
    refused as 'a raw latent code must hold real numbers', a list of Latents as an array of over
    64 dimensions, a list of photo arrays as a code of the wrong shape). A list of numbers or of
    1-D codes stays a raw code."""
    from PIL import Image

    from .models import Latents
    from .reconstruct import Reconstruction

    kinds = (Latents, Reconstruction, Mapping, str, os.PathLike, Image.Image)
    return isinstance(face, (list, tuple)) and any(
        isinstance(f, kinds) or getattr(f, "ndim", 0) >= 2 for f in face)


def _detect_options(skin_check: Any, scan_size: Any) -> dict[str, Any]:
    """``prepare_crops``' ``skin_check`` and ``scan_size``, checked as ``reconstruct`` checks them
    (``scan_size`` an int >= 24: :class:`~voxface.errors.InputTypeError` / ``InputError``)."""
    from .reconstruct import check_scan_size

    return {"skin_check": bool(skin_check), "scan_size": check_scan_size(scan_size)}


def encode_photo(model: "VoxFace", image: Any, *, detect: bool = True, skin_check: bool = True,
                 scan_size: int = SCAN_SIZE) -> "Latents":
    """Encode the largest face of a photo (path, PIL image or ``(H, W, 3)`` array) without decoding.

    Returns Latents of batch 1 with the predicted pose; ``detect=False`` takes the whole image as
    an already framed crop. ``skin_check``, ``scan_size``: the detector's, as in
    :func:`voxface.reconstruct.reconstruct_image` (``skin_check=False`` keeps a face under strongly
    tinted light; ``scan_size`` >= 24). Raises :class:`voxface.ImageError` / :class:`voxface.NoFaceError`.
    """
    torch = _torch()
    from .reconstruct import crop_batch, prepare_crops

    from .image import source_name

    options = _detect_options(skin_check, scan_size)  # before the photo is read
    source = source_name(image)  # the name load errors give it: no face found in the same file
    crop, _ = prepare_crops(image, model.image_size, detect=detect, source=source, **options)[0]
    batch = crop_batch([crop], model.device)  # laid out as reconstruct's: its codes, bit for bit
    with torch.no_grad():  # not inference_mode: the codes handed back stay ordinary, editable tensors
        lat = model.encode(batch)
    return lat.to("cpu")


def as_latents(model: "VoxFace", face: Any, *, detect: bool = True, skin_check: bool = True,
               scan_size: int = SCAN_SIZE) -> "Latents":
    """A face in any accepted form (module docstring) as CPU float32 :class:`~voxface.Latents`.

    Args:
        model: the model (its dimensions check raw codes; photos are encoded with it).
        face: Latents, Reconstruction, ``.npz`` path, dict, raw code or photo; a pair
            ``(z_id, z_exp)`` of one face's (or batch's) two codes; or a list or tuple of faces
            (read one by one, stacked in order).
        detect: for photos: find the face (False: the photo is already a framed crop).
        skin_check, scan_size: for photos: the detector's skin-colour check (False keeps faces
            under strongly tinted light) and scan size (>= 24), as in
            :func:`voxface.reconstruct.reconstruct_image`.

    Returns:
        Latents ``z_id (B, D_id)``, ``z_exp (B, D_exp)`` (``B = 1`` for a photo; the sum of the
        items' batches for a list), with the pose where the input had one (every item, for a list).

    Raises:
        VoxfaceError: codes that are not finite real numbers, of the wrong length, of no face, or
            with row counts that disagree; a ``.npz`` that is missing or no latent file (the
            message names the file and the array); :class:`voxface.ImageError`,
            :class:`voxface.NoFaceError` for photos.
    """
    from .models import Latents
    from .reconstruct import Reconstruction

    options = _detect_options(skin_check, scan_size)  # checked whatever the face (a bad value never passes)
    if isinstance(face, Reconstruction):
        face = face.latents
    if isinstance(face, Latents):
        arrays = {"z_id": face.z_id, "z_exp": face.z_exp}
        if face.pose is not None:
            p = face.pose
            arrays.update(pose_rotation=p.rotation, pose_scale=p.scale, pose_translation=p.translation)
        return _arrays_to_latents(arrays, *_dims(model), "<latents>")
    if isinstance(face, Mapping):
        missing = [k for k in _CODE_KEYS if k not in face]
        if missing:
            raise InputError(f"a latent dict needs 'z_id' and 'z_exp' (missing {', '.join(map(repr, missing))})")
        return _arrays_to_latents(face, *_dims(model), "<dict>")
    if isinstance(face, (str, os.PathLike)) and Path(face).suffix.lower() == ".npz":
        return _load_npz(model, face)
    if _is_code_pair(face, *_dims(model)):
        return _arrays_to_latents({"z_id": face[0], "z_exp": face[1]}, *_dims(model), "<(z_id, z_exp)>")
    if _is_face_list(face):
        return stack_latents([as_latents(model, f, detect=detect, **options) for f in face])
    if _is_raw_code(face, *_dims(model)):
        return _code_to_latents(model, face)
    return encode_photo(model, face, detect=detect, **options)


def stack_latents(items: Iterable["Latents | Reconstruction"]) -> "Latents":
    """Concatenate Latents along the batch.

    Args:
        items: Latents (or Reconstructions, whose latents are used) ``z_id (B_i, D_id)``,
            ``z_exp (B_i, D_exp)``, at least one, with the same ``D_id`` and ``D_exp`` in all.

    Returns:
        Latents ``z_id (sum B_i, D_id)``, ``z_exp (sum B_i, D_exp)`` on the *first* item's device
        (items on other devices, e.g. CPU codes beside CUDA ones, are moved there), in the dtype
        ``torch.cat`` promotes them to; with a pose only when every item has one (else ``None``).

    Raises:
        InputTypeError: an item that is neither Latents nor a Reconstruction.
        InputError: no items, or codes of another length than the first item's (latents of
            another model).
    """
    torch = _torch()
    from .models import Latents, Pose
    from .reconstruct import Reconstruction

    items = [it.latents if isinstance(it, Reconstruction) else it for it in items]
    if not items:
        raise InputError("stack_latents needs at least one item")
    for i, it in enumerate(items):
        if not isinstance(it, Latents):
            raise InputTypeError(f"stack_latents: item {i} is a {type(it).__name__}, not Latents "
                                 "(latent.as_latents reads files, photos and raw codes)")
        if it.z_id.shape[1:] != items[0].z_id.shape[1:] or it.z_exp.shape[1:] != items[0].z_exp.shape[1:]:
            raise InputError(f"stack_latents: item {i} has codes z_id {tuple(it.z_id.shape)}, z_exp "
                             f"{tuple(it.z_exp.shape)}, item 0 z_id {tuple(items[0].z_id.shape)}, z_exp "
                             f"{tuple(items[0].z_exp.shape)} (latents of another model?)")
    device = items[0].z_id.device
    items = [it.to(device) for it in items]
    pose = None
    if all(it.pose is not None for it in items):
        pose = Pose(*(torch.cat([getattr(it.pose, f) for it in items]) for f in ("rotation", "scale", "translation")))
    return Latents(torch.cat([it.z_id for it in items]), torch.cat([it.z_exp for it in items]), pose)


def _first_face(lat: "Latents", face: Any, what: str) -> "Latents":
    """Face 0 of ``lat``, the faces read from ``face`` (the argument ``what`` of a function that
    takes one face: ``"interpolate: a"``), with a ``UserWarning`` when it holds several: the others
    are not used. A file is named as given (another latent command's ``latents.npz``: a sample's 16
    faces, a morph's steps), anything else by ``what``."""
    if len(lat) > 1:
        name = os.fsdecode(face) if isinstance(face, (str, os.PathLike)) else f"{what} (a batch)"
        warnings.warn(f"{name} holds {len(lat)} faces; the first one is used", UserWarning, stacklevel=3)
    return lat[0]


def save_latents(latents: "Latents | Reconstruction", path: str | os.PathLike, **extra: Any) -> Path:
    """Write Latents (or a Reconstruction's) to a ``.npz`` (keys as ``reconstruct``'s: ``z_id``,
    ``z_exp``, ``pose_*``), atomically; ``extra`` arrays (e.g. ``t=...``) are stored beside them. A ``path``
    without the ``.npz`` suffix gets it (as ``numpy.savez`` does; :func:`as_latents` reads a path
    as a latent file by that suffix), except one naming a folder, which is refused where
    ``numpy.savez`` wrote ``<folder>.npz`` beside it. Returns the path written.

    Raises:
        InputTypeError: ``latents`` neither Latents nor a Reconstruction (a dict, a path: read
            them with :func:`as_latents` first).
        InputError: an ``extra`` named like a code or pose array (``z_id=...`` would replace the
            codes in the file; ``pose_rotation=...`` of codes without a pose would make half a pose,
            which :func:`as_latents` refuses), or one numpy makes an array of Python objects (an
            integer beyond 64 bits, ``None`` among numbers): ``numpy.savez`` pickled it, and ``np.load``
            refuses to read that array back. A ``path`` that names a folder: ending in a slash
            (``out/`` wrote ``out.npz`` beside the folder), or an existing folder (``out``, which
            would have been written as ``out.npz`` beside it too).
        VoxfaceError: the file cannot be written (a file where a folder of ``path`` is needed, no
            permission), naming ``path``; missing folders are created.
    """
    from .mesh import check_file_name
    from .models import Latents
    from .reconstruct import Reconstruction, _save_npz

    check_file_name(path)  # Path() drops the slash: "out/" wrote out.npz beside the folder

    if isinstance(latents, Reconstruction):
        latents = latents.latents
    if not isinstance(latents, Latents):  # was AttributeError: 'dict' object has no attribute 'numpy'
        raise InputTypeError(f"save_latents writes Latents or a Reconstruction, not {type(latents).__name__} "
                             "(latent.as_latents(model, ...) reads the other forms)")

    clash = [k for k in extra if k in _CODE_KEYS or k in _POSE_SHAPES]
    if clash:
        raise InputError(f"save_latents: {', '.join(clash)} would replace the codes' own array(s) in the file; "
                         "give the extra arrays other names")
    arrays = dict(latents.numpy())
    for k, v in extra.items():
        a = np.asarray(v)
        if a.dtype.hasobject:  # savez pickles it, and np.load refuses the file's array (allow_pickle)
            raise InputError(f"save_latents: {k} holds Python objects ({type(v).__name__} {v!r:.60}; an integer "
                             "beyond 64 bits?), which a .npz holds only pickled; give numbers or strings")
        arrays[k] = a
    path = Path(path)
    if path.is_dir():  # a .npz one is refused on writing; "out" was written as out.npz beside it
        raise InputError("is a folder; give a file name (save_latents writes a .npz: name it, e.g. "
                         f"{path / 'latents.npz'})", path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    return _save_npz(path, arrays)  # (atomic_write_bytes makes the folders: a file in the way is one line)


# ------------------------------------------------------------------------------ interpolation


def _slerp(a: "torch.Tensor", b: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
    """Spherical interpolation of the directions of ``a, b (T, D)`` with linearly interpolated
    norms, at ``t (T,)``; falls back to a normalised lerp where the directions (nearly) agree.
    Where they are (nearly) opposite no great circle is singled out, and a lerp would pass through
    the origin: the direction then turns through a fixed one perpendicular to ``a``'s (the
    coordinate axis least along it, made perpendicular), so the norm still changes linearly."""
    torch = _torch()
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    t = t[:, None]
    lin = (1 - t) * ua + t * ub
    lin = lin / lin.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sph = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so.clamp_min(1e-12)
    e = torch.zeros_like(ua).scatter_(-1, ua.abs().argmin(-1, keepdim=True), 1.0)
    perp = e - (e * ua).sum(-1, keepdim=True) * ua
    perp = perp / perp.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # half a turn from ua through perp to -ua, plus t (ua + ub) (tiny here) to end exactly on ub
    opp = torch.cos(math.pi * t) * ua + torch.sin(math.pi * t) * perp + t * (ua + ub)
    opp = opp / opp.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # within ~0.8 degrees of agreeing or of opposite: sin(omega) is ~1e-2 or less, and its float32
    # quotients lose what the two fall-backs keep
    u = torch.where(cos > 1 - 1e-4, lin, torch.where(cos < -1 + 1e-4, opp, sph))
    # a zero vector has no direction: the other end's direction is used throughout
    u = torch.where(na < 1e-12, ub.expand_as(u), u)
    u = torch.where(nb < 1e-12, ua.expand_as(u), u)
    sph = u * ((1 - t) * na + t * nb)
    # An end much nearer the centre than the other has a direction that means little: turning
    # away from it would send the path on a detour of about the far end's distance (an end 1e-3
    # from the mean, the other 3.7: 1.4 off the straight line at the middle). Below a ratio of
    # SLERP_NEAR_RATIO the path blends into the straight line, in proportion, so it stays
    # continuous in the ends and is the straight line when one end is the centre.
    w = (torch.minimum(na, nb) / torch.maximum(na, nb).clamp_min(1e-30) / SLERP_NEAR_RATIO).clamp(0, 1)
    return w * sph + (1 - w) * (a + t * (b - a))


#: The ratio of the two ends' distances from the centre below which :func:`_slerp` blends into the
#: straight line (linearly in the ratio; the straight line at 0).
SLERP_NEAR_RATIO = 0.25


def interpolate(
    model: "VoxFace",
    a: Any,
    b: Any,
    steps: int = 8,
    *,
    mode: str = "slerp",
    space: str = "both",
    detect: bool = True,
    skin_check: bool = True,
    scan_size: int = SCAN_SIZE,
) -> "Latents":
    """``steps`` codes going from face ``a`` to face ``b``, both ends included.

    Args:
        model: the model (photos are encoded with it; its prior mean is the slerp centre).
        a, b: faces in any accepted form (module docstring); of a batch the first face is used, with
            a ``UserWarning`` (naming the file, for a ``.npz`` of several faces).
        steps: number of codes, at ``t = linspace(0, 1, steps)``: an int >= 2 (a float, even
            ``8.0``, is a TypeError, not truncated).
        mode: how the *identity* code moves. ``"slerp"``: around the prior mean (``z_id_mean``,
            0 without a prior), the direction of ``z - mean`` turns along the great circle while
            its norm changes linearly, so intermediate codes keep a typical distance from the
            mean (a straight line between two typical codes passes closer to the mean, towards
            an "average" face; for opposite ends, ``b - mean = -(a - mean)``, the direction
            turns through a fixed perpendicular one; an end within :data:`SLERP_NEAR_RATIO` of
            the other's distance from the mean blends the path into the straight line, since its
            direction means little); ``"lerp"``: the straight line ``(1 - t) a + t b``. The
            expression code moves on the straight line in both modes: its entries are blendshape
            weights (ARKit's, in ``[0, 1]``), which combine linearly, so ``t`` is the share of the
            way from ``a``'s expression to ``b``'s and no weight leaves the range its ends span
            (a turn around the mean would move weights that are 0 at both ends).
        space: ``"identity"`` walks the identity and keeps ``a``'s expression; ``"expression"``
            walks the expression and keeps ``a``'s identity; ``"both"`` walks both.
        detect: for photos: find the face (False: already framed crops).
        skin_check, scan_size: for photos: the detector's, as in :func:`as_latents`.

    Returns:
        Latents with ``z_id (steps, D_id)``, ``z_exp (steps, D_exp)``, pose ``None``; row 0 is
        ``a`` and row ``steps - 1`` is ``b`` in the walked space(s), exactly (the same float32 values);
        a code ``a`` and ``b`` share (the identity of two expressions of one face) is that code in
        every row, exactly.
    """
    torch = _torch()
    from .models import Latents

    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, not {mode!r}")
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, not {space!r}")
    steps = _integer("steps", steps, 2)  # both ends
    options = _detect_options(skin_check, scan_size)
    la, lb = as_latents(model, a, detect=detect, **options), as_latents(model, b, detect=detect, **options)
    la, lb = _first_face(la, a, "interpolate: a"), _first_face(lb, b, "interpolate: b")  # once both were read
    t = torch.linspace(0, 1, steps)

    def path(name: str, za: "torch.Tensor", zb: "torch.Tensor") -> "torch.Tensor":
        za, zb = za.expand(steps, -1), zb.expand(steps, -1)
        if torch.equal(za[0], zb[0]):  # a code to itself is that code at every t (slerp's norms rounded it)
            return za.clone()
        if mode == "lerp" or name == "z_exp":  # blendshape weights: linear (see mode)
            out = za + t[:, None] * (zb - za)
        else:
            c = _prior_mean(model, name, za.shape[-1])
            out = c + _slerp(za - c, zb - c, t)
        out[0], out[-1] = za[0], zb[0]  # the ends exactly
        return out

    def keep(z: "torch.Tensor") -> "torch.Tensor":
        return z.expand(steps, -1).clone()

    z_id = path("z_id", la.z_id, lb.z_id) if space in ("identity", "both") else keep(la.z_id)
    z_exp = path("z_exp", la.z_exp, lb.z_exp) if space in ("expression", "both") else keep(la.z_exp)
    return Latents(z_id.contiguous(), z_exp.contiguous())


def transfer_expression(model: "VoxFace", source: Any, target: Any, *, detect: bool = True,
                        skin_check: bool = True, scan_size: int = SCAN_SIZE) -> "Latents":
    """The identity of ``target`` wearing the expression of ``source``.

    Args:
        source: face(s) whose expression is taken (any accepted form); ``(B_s,)`` faces.
        target: face(s) whose identity (and pose, if any) is kept; ``(B_t,)`` faces.
        detect: for photos: find the face (False: already framed crops).
        skin_check, scan_size: for photos: the detector's, as in :func:`as_latents`.

    Returns:
        Latents ``z_id = target.z_id``, ``z_exp = source.z_exp`` exactly (no re-encoding), batch
        ``max(B_s, B_t)`` (a batch of 1 is broadcast; otherwise the sizes must agree), with the
        target's pose when it has one.
    """
    from .models import Latents, Pose

    options = _detect_options(skin_check, scan_size)
    ls, lt = as_latents(model, source, detect=detect, **options), as_latents(model, target, detect=detect, **options)
    ns, nt = len(ls), len(lt)
    if ns != nt and 1 not in (ns, nt):
        raise InputError(f"transfer_expression: {ns} sources for {nt} targets (give equal counts or one)")
    n = max(ns, nt)
    pose = None
    if lt.pose is not None:
        p = lt.pose
        pose = Pose(p.rotation.expand(n, -1, -1).clone(), p.scale.expand(n).clone(),
                    p.translation.expand(n, -1).clone())
    return Latents(lt.z_id.expand(n, -1).clone(), ls.z_exp.expand(n, -1).clone(), pose)


# ----------------------------------------------------------------------------------- sampling


def _normals(seed: int, stream: int, index: int, size: int) -> np.ndarray:
    return np.random.default_rng([int(seed), int(stream), int(index)]).standard_normal(size)


def sample(
    model: "VoxFace",
    n: int,
    temperature: float = 1.0,
    *,
    space: str = "both",
    seed: int = 0,
    kind: str = "pca",
    base: Any = None,
    detect: bool = True,
    skin_check: bool = True,
    scan_size: int = SCAN_SIZE,
) -> "Latents":
    """``n`` codes drawn from the checkpoint's prior (module docstring), deterministic in ``seed``.

    Args:
        model: the model whose ``prior`` is sampled.
        n: number of codes, an int >= 1 (a float or bool is a TypeError, never truncated).
        temperature: scales every deviation from the prior mean, finite and >= 0 (ValueError
            otherwise); 0 gives the mean exactly, 1 the training distribution, below 1 more
            typical faces.
        space: ``"both"`` samples both latents; ``"identity"`` samples identities and keeps
            ``base``'s expression; ``"expression"`` samples expressions and keeps ``base``'s
            identity. Without ``base`` the kept latent is the prior mean.
        seed: an int >= 0; code ``i`` is a pure function of ``(seed, latent, i)``, so the
            first ``m`` codes of ``sample(n)`` equal ``sample(m)`` and a latent's draws do not
            depend on whether the other one is sampled.
        kind: ``"pca"`` (default): correlated codes along the stored principal directions plus
            the per-dimension variance they leave out; ``"gaussian"``: the diagonal normal
            ``N(mean, std^2)``. ``"pca"`` without stored components falls back to ``"gaussian"``.
        base: a face (any accepted form) whose kept latent is used with ``space != "both"`` (the
            first face of a batch, with a ``UserWarning``); with ``space="both"`` nothing is kept,
            and a ``base`` is a ValueError.
        detect: for a photo as ``base``: find the face (False: an already framed crop).
        skin_check, scan_size: for a photo as ``base``: the detector's, as in :func:`as_latents`.

    Returns:
        Latents ``z_id (n, D_id)``, ``z_exp (n, D_exp)``, pose ``None``. The expression codes are
        drawn from the normal the prior fits to the encoder's codes, whose linear head is not
        bounded either: they are not clipped to the ``[0, 1]`` of ARKit blendshape weights (with
        the bundled prior about 11% of the sampled weights are negative, down to -0.3; its mean
        has 3 slightly negative ones). Clipping would move the samples' mean and correlations off
        the prior's (and ``temperature=0`` off its mean); ``z_exp.clamp(0, 1)`` them to drive a rig.
    """
    torch = _torch()
    from .models import Latents

    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, not {space!r}")
    if kind not in ("pca", "gaussian"):
        raise InputError(f"kind must be 'pca' or 'gaussian', not {kind!r}")
    if base is not None and space == "both":
        raise InputError("base gives the latent that is kept, and space='both' samples both: "
                         "use space='identity' or 'expression' with a base")
    n, seed = _integer("n", n, 1), _integer("seed", seed, 0)
    options = _detect_options(skin_check, scan_size)
    temperature = _finite("temperature", temperature)
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    d_id, d_exp = _dims(model)
    prior = model.prior
    if not prior:  # None, or an empty one ({}: model.prior set by hand) that sampled N(0, I) without a word
        warnings.warn("this checkpoint has no latent prior: sampling N(0, I)", stacklevel=2)
    else:  # a prior of one latent only (the checkpoint check takes it): the other drawn from N(0, I)
        drawn = [name for name, sp in (("z_id", "identity"), ("z_exp", "expression"))
                 if space in (sp, "both") and f"{name}_mean" not in prior]
        if drawn:
            warnings.warn(f"this checkpoint's latent prior has no {' or '.join(drawn)} statistics: sampling "
                          f"{' and '.join(drawn)} from N(0, I)", stacklevel=2)

    def draw(name: str, dim: int) -> "torch.Tensor":
        stream = _STREAMS[name]
        if not prior or f"{name}_mean" not in prior:
            z = np.stack([_normals(seed, stream, i, dim) for i in range(n)])
            return torch.from_numpy(z * temperature).float()
        mean = torch.as_tensor(prior[f"{name}_mean"]).double().cpu()
        std = torch.as_tensor(prior[f"{name}_std"]).double().cpu()
        pca = prior.get(f"{name}_pca") or {}
        comp = pca.get("components")
        if kind == "pca" and comp is not None and len(comp):
            comp = torch.as_tensor(comp).double().cpu()
            sd = torch.as_tensor(pca["explained_variance"]).double().cpu().clamp_min(0).sqrt()
            k = len(sd)
            # the variance the top-k directions leave out, per dimension (diagonal approximation)
            resid = (std**2 - (comp**2 * sd[:, None] ** 2).sum(0)).clamp_min(0).sqrt()
            g = torch.from_numpy(np.stack([_normals(seed, stream, i, k + dim) for i in range(n)]))
            dev = (g[:, :k] * sd) @ comp + g[:, k:] * resid
        else:
            g = torch.from_numpy(np.stack([_normals(seed, stream, i, dim) for i in range(n)]))
            dev = g * std
        return (mean + dev * temperature).float()

    kept = None if base is None else _first_face(as_latents(model, base, detect=detect, **options), base,
                                                 "sample: base")

    def keep(name: str, dim: int) -> "torch.Tensor":
        z = getattr(kept, name) if kept is not None else _prior_mean(model, name, dim)[None]
        return z.reshape(1, dim).expand(n, -1).clone()

    z_id = draw("z_id", d_id) if space in ("identity", "both") else keep("z_id", d_id)
    z_exp = draw("z_exp", d_exp) if space in ("expression", "both") else keep("z_exp", d_exp)
    return Latents(_check_output(z_id, f"temperature {temperature:g}"),
                   _check_output(z_exp, f"temperature {temperature:g}"))


def mean_latents(model: "VoxFace") -> "Latents":
    """The prior's mean face: Latents ``z_id (1, D_id)``, ``z_exp (1, D_exp)``, pose ``None``.

    The mean of the training codes the checkpoint's prior stores (zeros without a prior): where
    :func:`sample` at temperature 0 lands, and the usual start of a :func:`walk`.
    """
    from .models import Latents

    d_id, d_exp = _dims(model)
    return Latents(_prior_mean(model, "z_id", d_id)[None], _prior_mean(model, "z_exp", d_exp)[None])


def expression_names(model: "VoxFace") -> list[str] | None:
    """Names of the expression code's coordinates, where each coordinate *is* a known coefficient:
    the ARKit blendshapes of ICT-FaceKit (``jawOpen``, ``eyeBlink_L``...) for the shipped model,
    whose ``z_exp[j]`` is blendshape ``j``'s weight. Known from the checkpoint's prior: its
    ``exp_names`` (the trainer and :func:`annotate_directions` record the data's coefficient
    names) *and* its ``coefficient_coordinates`` mark (the trainer sets it when the run trained the
    codes to be the coefficients: ``latent`` or ``teacher`` loss; ``voxface release --annotate``
    from the run's config). ``None`` otherwise: a model's own codes are not named by their size."""
    _, d_exp = _dims(model)
    prior = model.prior or {}
    names = prior.get("exp_names")
    if not prior.get("coefficient_coordinates") or names is None or len(names) != d_exp:
        return None
    return [str(x) for x in names]


def trains_coefficient_coordinates(loss: Any) -> bool:
    """Whether a run's loss settings (a ``LossConfig`` or the ``train.loss`` dict of a run config)
    make the codes the true coefficients: ``latent`` targets on the encoder, or ``teacher``
    forcing the decoder on them. The prior's ``coefficient_coordinates`` mark
    (:func:`expression_names`) records it."""
    get = loss.get if isinstance(loss, Mapping) else (lambda k, d=0: getattr(loss, k, d))
    return bool((get("latent", 0) or 0) > 0 or (get("teacher", 0) or 0) > 0)


def set_expression(model: "VoxFace", face: Any, weights: Mapping[str, float], *, reset: bool = False,
                   detect: bool = True, skin_check: bool = True, scan_size: int = SCAN_SIZE) -> "Latents":
    """``face``'s codes with the named expression coefficients set: ``{"jawOpen": 1.0}`` opens the
    mouth (weights of ARKit blendshapes, 0 to 1; see :func:`expression_names`).

    Args:
        model: a model whose expression coordinates are named (:func:`expression_names`).
        face: any face :func:`as_latents` takes (codes, a photo, an ``.npz``...), a batch too.
        weights: coefficient name -> value (a mapping, or (name, value) pairs; anything else is a
            TypeError), set on every face of the batch.
        reset: set every other expression coefficient to 0 first (the neutral face), instead of
            keeping the face's own expression.
        detect, skin_check, scan_size: for a photo: as in :func:`as_latents`.

    Returns:
        :class:`~voxface.Latents` (CPU float32): the identity and pose of ``face``.

    Raises:
        VoxfaceError: unnamed expression coordinates, or a name they do not have (the message lists
            close ones).
    """
    import difflib

    try:  # a mapping (or (name, value) pairs); before a photo is encoded
        weights = dict(weights)
    except (TypeError, ValueError):  # a name alone, a list of names, a number: Python's 'dictionary update ...'
        raise InputTypeError(f"weights must map expression names to values, e.g. {{'jawOpen': 1.0}}, not "
                             f"{type(weights).__name__} {weights!r:.60}") from None
    names = expression_names(model)
    if names is None:
        raise VoxfaceError("this model's expression coordinates are not named coefficients (set_expression needs "
                           "the shipped model's ARKit blendshapes, or a prior annotated with them)")
    settings = []  # (coordinate, value): names and values checked before a photo is detected and encoded
    for name, value in weights.items():
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=3)
            raise InputError(f"no expression coefficient {name!r}" + (f"; did you mean {', '.join(close)}?" if close
                                                                       else f"; known: {', '.join(names)}"))
        v = _finite(name, value)
        if abs(v) > MAX_ABS_CODE:
            raise InputError(f"{name} = {v:g} is beyond +-{MAX_ABS_CODE:g} (blendshape weights are 0 to 1)")
        settings.append((names.index(name), v))
    lat = as_latents(model, face, detect=detect, skin_check=skin_check, scan_size=scan_size).clone()
    if reset:
        lat.z_exp.zero_()
    for j, v in settings:
        lat.z_exp[:, j] = v
    return lat


def sample_latents(model: "VoxFace", n: int, *, temperature: float = 1.0, seed: int = 0) -> "Latents":
    """Shorthand for :func:`sample` over both spaces (the PCA prior): ``(n, D_id)``, ``(n, D_exp)``."""
    return sample(model, n, temperature=temperature, seed=seed)


# ------------------------------------------------------------------------- principal directions


@dataclass(eq=False)
class Direction:
    """A principal direction of one latent space.

    Attributes:
        space: ``"identity"`` or ``"expression"``.
        index: rank (0 = most variance).
        vector: ``(D,)`` float32 unit direction in that space (``D = D_id`` or ``D_exp``).
        std: standard deviation of the training codes along it (latent units); :func:`walk`
            measures steps in these.
        explained_variance_ratio: its share of the space's total variance.
        match: the ground-truth coefficient it follows best (an ICT expression name such as
            ``"jawOpen"``, an identity mode ``"identity017"``, a toy name ``"toy_jaw_open"``), or
            ``None`` when the prior has no ``coeff_correlation`` (see :func:`annotate_directions`)
            or no coefficient reaches :func:`match_threshold` of the faces correlated.
        correlation: Pearson correlation of the projections with that coefficient (signed: a
            negative value means walking the direction lowers the coefficient); 0 when unknown.

    ``==`` is identity, as for :class:`~voxface.models.Latents` (the generated ``==`` compared the
    ``vector`` tensors and raised "Boolean value of Tensor ... is ambiguous"); compare ``vector``
    with ``torch.equal``.
    """

    space: str
    index: int
    vector: "torch.Tensor"
    std: float
    explained_variance_ratio: float
    match: str | None = None
    correlation: float = 0.0

    def __repr__(self) -> str:
        m = f", match={self.match!r} (r={self.correlation:+.2f})" if self.match else ""
        return (f"Direction({self.space} #{self.index}, std={self.std:.3g}, "
                f"explained={self.explained_variance_ratio:.1%}{m})")


def _coeff_name(prior: Mapping[str, Any], space: str, m: int) -> str:
    names = prior.get("id_names" if space == "identity" else "exp_names")
    if names is not None and m < len(names):
        return str(names[m])
    return f"identity{m:03d}" if space == "identity" else f"expression{m:02d}"


def principal_directions(model: "VoxFace", space: str = "expression", k: int = 8) -> list[Direction]:
    """The top ``k`` principal directions of a latent space, most variance first.

    Args:
        model: a model whose checkpoint holds a prior.
        space: ``"identity"`` or ``"expression"``.
        k: how many (fewer when the prior stores fewer).

    Returns:
        ``[Direction]``. Each carries its best-matching ground-truth coefficient (ICT expression
        name or identity mode) *only* where the prior records ``coeff_correlation`` for the space
        (the trainer records it when its data knows the coefficients; :func:`annotate_directions`
        adds it to any prior); otherwise ``match`` is ``None`` and ``correlation`` 0. A prior without PCA components gives the coordinate
        axes, ordered by their standard deviation.

    Raises:
        VoxfaceError: the model has no prior, or none for ``space`` (a prior of the identity's
            statistics alone, which :func:`voxface.load_model` takes and :func:`sample` draws
            around).
    """
    torch = _torch()
    if space not in _NAMES:
        raise InputError(f"space must be 'identity' or 'expression', not {space!r}")
    k = _integer("k", k, 0)
    prior = model.prior
    if not prior:
        raise VoxfaceError("this checkpoint has no latent prior (a trained checkpoint has one: voxface train)")
    name = _NAMES[space]
    pca = prior.get(f"{name}_pca") or {}
    has_pca = pca.get("components") is not None and len(pca["components"])
    if not has_pca and f"{name}_std" not in prior:  # was a bare KeyError: '{name}_std'
        raise VoxfaceError(f"this checkpoint's latent prior holds no {name} statistics ({name}_mean and _std, or "
                           f"{name}_pca): it has no {space} directions")
    if has_pca:
        comp = torch.as_tensor(pca["components"]).float().cpu()
        var = torch.as_tensor(pca["explained_variance"]).float().cpu()
        ratio = pca.get("explained_variance_ratio")
        if ratio is None:  # of every dimension's variance (the stored directions' sum overstated each share)
            std = prior.get(f"{name}_std")
            total = (torch.as_tensor(std).float().cpu() ** 2).sum() if std is not None else var.sum()
            ratio = var / torch.maximum(total, var.sum()).clamp_min(1e-30)
        ratio = torch.as_tensor(ratio).float()
    else:  # diagonal prior only: the axes by decreasing spread
        std = torch.as_tensor(prior[f"{name}_std"]).float().cpu()
        order = torch.argsort(std, descending=True)
        comp = torch.eye(len(std))[order]
        var = std[order] ** 2
        ratio = var / var.sum().clamp_min(1e-30)
    corr = pca.get("coeff_correlation")
    out = []
    for j in range(min(k, len(var))):
        match, c = None, 0.0
        if corr is not None and len(corr) > j:
            row = torch.as_tensor(corr[j]).float()
            if len(row):
                m = int(row.abs().argmax())
                c = float(row[m])
                if abs(c) >= match_threshold(pca.get("coeff_correlation_n"), len(row)):
                    match = _coeff_name(prior, space, m)
        out.append(Direction(space, j, comp[j].clone(), float(var[j].clamp_min(0).sqrt()), float(ratio[j]), match, c))
    return out


def _ict_expression_names() -> list[str] | None:
    """The 53 ICT-FaceKit expression names from ``$VOXFACE_ICT_ROOT``, if that data is here."""
    import json

    try:
        from .data.ict import find_root

        meta = json.loads((find_root() / "vertex_indices.json").read_text())
        return [str(s) for s in meta["expressions"]]
    except (VoxfaceError, OSError, ValueError, KeyError, TypeError):
        return None


def _dataset_names(dataset: Any, n_exp: int) -> tuple[list[str] | None, list[str] | None]:
    """Coefficient names of a dataset: the toy data's, or ICT-FaceKit's expression names."""
    if type(dataset).__name__ == "ToyDataset":
        return list(_TOY_ID_NAMES), list(_TOY_EXP_NAMES)
    for path in ("expression_names", "ict.expression_names", "sampler.ict.expression_names"):
        obj = dataset
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return None, [str(s) for s in obj]
    meta = getattr(dataset, "meta", None)
    if isinstance(meta, Mapping) and meta.get("expression_names"):
        return None, [str(s) for s in meta["expression_names"]]
    names = _ict_expression_names()  # e.g. a data cache of ICT renders
    return None, names if names is not None and len(names) == n_exp else None


def annotate_directions(
    model: "VoxFace",
    dataset: Any,
    indices: Sequence[int] | None = None,
    *,
    batch_size: int = 64,
    id_names: Sequence[str] | None = None,
    exp_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Correlate the prior's principal directions with ground-truth coefficients; store the result.

    For each space, the codes of ``dataset[i]["image"]`` are projected on the prior's PCA
    components and correlated (Pearson) with ``dataset[i]["id_coeffs"]`` / ``["exp_coeffs"]``:
    ``model.prior["{name}_pca"]["coeff_correlation"]`` becomes a ``(k, C)`` float32 tensor, and
    ``prior["id_names"]`` / ``prior["exp_names"]`` the coefficient names (known for the toy data
    and for ICT-FaceKit data when its folder is found, see :mod:`voxface.data.ict`; or given). Afterwards :func:`principal_directions` reports matches, and
    :func:`voxface.save_checkpoint` stores them with the model.

    Args:
        model: a model with a prior holding PCA components.
        dataset: items with ``image (3, S, S)``, ``id_coeffs (C_id,)``, ``exp_coeffs (C_exp,)``
            (a :mod:`voxface.data` dataset, e.g. ``build_dataset(cfg["data"], "val", cfg["model"])``).
        indices: which items (default: the first 256).
        batch_size: images per forward pass.
        id_names, exp_names: coefficient names (default: from the dataset where known).

    Returns:
        ``model.prior`` (modified in place).
    """
    torch = _torch()
    from torch.utils.data import default_collate

    batch_size = _integer("batch_size", batch_size, 1)
    prior = model.prior
    if not prior:
        raise VoxfaceError("this checkpoint has no latent prior to annotate")
    # item indices: whole numbers inside the dataset (1.7 was read as item 1, 10**6 an IndexError deep in it)
    idx = (list(range(min(256, len(dataset)))) if indices is None
           else [_integer(f"indices[{k}]", i, 0) for k, i in enumerate(indices)])
    if idx and hasattr(dataset, "__len__") and max(idx) >= len(dataset):
        raise InputError(f"indices[{idx.index(max(idx))}] = {max(idx)} is past the dataset's {len(dataset)} items")
    if len(idx) < 3:
        raise InputError("annotate_directions needs at least 3 items")
    zs: dict[str, list] = {"z_id": [], "z_exp": []}
    cs: dict[str, list] = {"z_id": [], "z_exp": []}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for s in range(0, len(idx), batch_size):
                items = [dataset[i] for i in idx[s : s + batch_size]]
                img = default_collate([np.asarray(it["image"], np.float32) for it in items]).to(model.device)
                lat = model.encode(img)
                zs["z_id"].append(lat.z_id.float().cpu().double())
                zs["z_exp"].append(lat.z_exp.float().cpu().double())
                cs["z_id"].append(torch.as_tensor(np.stack([it["id_coeffs"] for it in items])).double())
                cs["z_exp"].append(torch.as_tensor(np.stack([it["exp_coeffs"] for it in items])).double())
    finally:
        model.train(was_training)
    d_id, d_exp = _dataset_names(dataset, int(torch.cat(cs["z_exp"]).shape[1]))
    return record_correlations(prior, {k: torch.cat(v) for k, v in zs.items()}, {k: torch.cat(v) for k, v in cs.items()},
                               id_names=id_names if id_names is not None else d_id,
                               exp_names=exp_names if exp_names is not None else d_exp)


def record_correlations(prior: dict[str, Any], codes: Mapping[str, Any], coeffs: Mapping[str, Any], *,
                        id_names: Sequence[str] | None = None, exp_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The core of :func:`annotate_directions`, for codes already at hand (the trainer's prior fit).

    ``codes["z_id"] (n, D_id)``, ``codes["z_exp"] (n, D_exp)``: the faces' codes; ``coeffs`` the
    same keys, ``(n, C)``: their ground-truth coefficients. Each space's PCA projections are
    correlated (Pearson) with the coefficients into ``prior["{name}_pca"]["coeff_correlation"]``
    ``(k, C)``; the names, when given, go to ``prior["id_names"]`` / ``["exp_names"]``. Returns
    ``prior`` (modified in place).
    """
    torch = _torch()
    for name in ("z_id", "z_exp"):
        pca = prior.get(f"{name}_pca")
        if not pca or pca.get("components") is None or not len(pca["components"]):
            continue
        z = torch.as_tensor(codes[name]).double().cpu()
        c = torch.as_tensor(coeffs[name]).double().cpu()
        comp = torch.as_tensor(pca["components"]).double()
        proj = (z - torch.as_tensor(prior[f"{name}_mean"]).double()) @ comp.T  # (n, k)
        p = proj - proj.mean(0)
        q = c - c.mean(0)
        denom = p.norm(dim=0)[:, None] * q.norm(dim=0)[None, :]
        corr = torch.where(denom > 1e-12, (p.T @ q) / denom.clamp_min(1e-30), torch.zeros_like(denom))
        pca["coeff_correlation"] = corr.float()
        pca["coeff_correlation_n"] = int(len(z))  # how many faces: the naming threshold (match_threshold)
    if id_names is not None:
        prior["id_names"] = [str(s) for s in id_names]
    if exp_names is not None:
        prior["exp_names"] = [str(s) for s in exp_names]
    return prior


def walk(
    model: "VoxFace",
    code: Any,
    direction: "Direction | torch.Tensor | np.ndarray",
    values: Sequence[float],
    *,
    space: str | None = None,
    detect: bool = True,
    skin_check: bool = True,
    scan_size: int = SCAN_SIZE,
) -> "Latents":
    """Codes ``code + v * direction`` for each ``v`` in ``values``.

    Args:
        model: the model.
        code: the start (any accepted face form; the first face of a batch is used, with a
            ``UserWarning``).
        direction: a :class:`Direction` (scaled by its ``std``, so ``values`` are in standard
            deviations of the training codes, and it knows its space) or a raw ``(D,)`` vector
            of real numbers used as given (then ``space`` says which latent it moves; complex or
            bool vectors are a TypeError).
        values: the offsets, e.g. ``[-3, -2, -1, 0, 1, 2, 3]``: finite real numbers (ValueError
            for NaN or infinities, which would give non-finite codes).
        space: ``"identity"`` or ``"expression"`` for a raw vector (ignored for a Direction).
        detect, skin_check, scan_size: for a photo as ``code``: as in :func:`as_latents`.

    Returns:
        Latents ``z_id (len(values), D_id)``, ``z_exp (len(values), D_exp)``, pose ``None``;
        the latent not walked is the start's, repeated.
    """
    torch = _torch()
    from .models import Latents

    if isinstance(direction, Direction):
        vec, sp = direction.vector.float() * direction.std, direction.space
    else:
        try:
            vec = torch.as_tensor(np.asarray(direction) if isinstance(direction, np.ndarray) else direction)
        except (TypeError, ValueError, RuntimeError):  # text, objects, ragged lists: torch's traceback before
            raise InputTypeError("direction must be a Direction or a vector of numbers, got "
                                 f"{type(direction).__name__} {direction!r:.60}") from None
        if vec.dtype.is_complex or vec.dtype == torch.bool:  # np.linalg.eig's vectors: the cast dropped .imag
            raise InputTypeError(f"direction must hold real numbers, not {str(vec.dtype).replace('torch.', '')} "
                                 "(an eigenvector of a non-symmetric matrix? take a real basis)")
        vec = vec.float()
        sp = space
    if sp not in _NAMES:
        raise InputError("space must be 'identity' or 'expression' (a raw direction needs space=)")
    if not bool(torch.isfinite(vec).all()):
        raise InputError("the direction holds NaN or infinite values")
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputTypeError(f"values must be a sequence of numbers, got {type(values).__name__}")
    offsets = [_finite(f"values[{i}]", x) for i, x in enumerate(values)]
    v = torch.as_tensor(offsets, dtype=torch.float32)[:, None]
    if not len(v):
        raise InputError("walk needs at least one value")
    c = _first_face(as_latents(model, code, detect=detect, skin_check=skin_check, scan_size=scan_size), code,
                    "walk: code")
    z_id = c.z_id.expand(len(v), -1).clone()
    z_exp = c.z_exp.expand(len(v), -1).clone()
    target = z_id if sp == "identity" else z_exp
    if vec.shape != target.shape[1:]:
        raise InputError(f"an {sp} direction must have shape ({target.shape[1]},), got {tuple(vec.shape)}")
    target += v * vec.cpu()
    # the offsets as given: float32 made 1e300 'values up to inf'
    _check_output(target, f"values up to {max(abs(x) for x in offsets):g} along this direction")
    return Latents(z_id, z_exp)


def decode(model: "VoxFace", latents: "Latents", *, detect: bool = True, skin_check: bool = True,
           scan_size: int = SCAN_SIZE, **kwargs: Any) -> "list[Reconstruction]":
    """Decode codes to :class:`voxface.Reconstruction` s (closed meshes), in batches.

    ``latents``: Latents ``(B, ...)`` (or any face form :func:`as_latents` takes; ``detect``,
    ``skin_check`` and ``scan_size`` for photos, as there). Other keyword arguments go to
    :func:`voxface.reconstruct.decode_latents` (``threshold``, ``smooth``, ``decimate``,
    ``batch_size``, ``resolution``, ``upsample``). Returns ``B`` reconstructions, each with
    ``logits (R, R, R)`` and a mesh in canonical mm.

    One face read back with its pose, from a ``reconstruct`` ``.npz`` or a
    :class:`~voxface.Reconstruction`, also gets its crop box (``crop_box``), so that
    :meth:`~voxface.Reconstruction.mesh_in_camera` lands on the photo again.
    """
    from .reconstruct import decode_latents

    codes = as_latents(model, latents, detect=detect, skin_check=skin_check, scan_size=scan_size)
    recs = decode_latents(model, codes, **kwargs)
    if len(recs) == 1 and recs[0].pose is not None:
        recs[0].crop_box = _crop_box(latents)
    return recs


def _crop_box(face: Any) -> "np.ndarray | None":
    """The crop box ``(3,)`` float64 ``(x0, y0, side)`` of one face read back: a Reconstruction's, or
    the ``crop_box`` array of a ``reconstruct`` ``.npz`` (float32 there: within a thousandth of a
    pixel); ``None`` for anything else, and for a box that is not three finite numbers with a
    positive side (a file edited by hand: the face is posed without a place in a photo, as codes)."""
    from .reconstruct import Reconstruction

    if isinstance(face, Reconstruction):
        box = face.crop_box
    elif isinstance(face, (str, os.PathLike)) and Path(face).suffix.lower() == ".npz":
        try:
            with np.load(face) as archive:  # (read and checked by as_latents just before)
                box = archive["crop_box"] if "crop_box" in archive.files else None
        except (OSError, ValueError):
            return None
    else:
        return None
    if box is None:
        return None
    box = np.asarray(box)
    if box.dtype.kind not in "iuf" or box.size != 3:
        return None
    box = box.astype(np.float64).reshape(3)
    return box if bool(np.isfinite(box).all()) and box[2] > 0 else None
