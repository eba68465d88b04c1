"""Exceptions voxface raises on bad input.

Every error a user can cause (a bad file, a wrong checkpoint, an image without a face, an argument
of the wrong shape, type or range) is a :class:`VoxfaceError`; the argument errors are also the
``ValueError`` / ``TypeError`` Python code expects (:class:`InputError`, :class:`InputTypeError`). Its message is one line that names the file and the problem, with
unprintable characters (a file name's escape sequence or undecodable byte) written as Python
writes them (``\\x1b``, ``\\udce9``); the CLI prints it as ``error: <message>`` and exits non-zero,
never with a traceback.
"""

from __future__ import annotations

import math
import operator
import os
from typing import Any


class VoxfaceError(Exception):
    """Base class of every error voxface reports to users.

    ``str(e)`` is one line, ``"<path>: <problem>"`` (or the problem alone), unprintable characters
    escaped (:func:`printable`). ``path`` is the file or folder the error is about, a str, not
    escaped (``None`` when it names none): code that handles a failure itself reads it there.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None):
        # os.fsdecode: a PathLike's own path (str() of one that is not a pathlib.Path is its repr)
        self.path: str | None = None
        if path is not None:
            self.path = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
        # always one line; and a file name the message quotes (load_checkpoint of a folder lists the
        # files in it) may hold an escape sequence or an undecodable byte: shown escaped, as in the path
        text = printable(" ".join(str(message).split()))
        # a file name may hold a newline (or undecodable bytes): shown escaped, as Python writes it
        shown = self.path and printable(self.path)
        #: the message without ``"<path>: "``, escaped as ``str(e)``: what code that names the file
        #: itself (or another) re-raises (``str(e).removeprefix(f"{e.path}: ")`` missed an escaped path)
        self.problem: str = text
        super().__init__(f"{shown}: {text}" if shown else text)


def printable(text: str) -> str:
    """``text`` with every character that is not printable (a newline or an escape sequence in a
    file name) written as Python writes it (``\\n``, ``\\x1b``): a message naming the file stays one
    line and cannot drive the terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class CheckpointError(VoxfaceError):
    """A checkpoint could not be read (missing, truncated, not a torch file, unsafe), written, or
    used as asked (resumed, fine-tuned from).

    ``reason`` is a short machine-readable tag (``"missing"``, ``"truncated"``, ``"unsafe"``,
    ``"not-resumable"``, ...) for code that handles some failures itself; ``None`` when the raiser
    gave none.
    """

    reason: str | None = None

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, *, reason: str | None = None):
        super().__init__(message, path)
        if reason is not None:
            self.reason = reason


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose unpickling would import or call code outside the allowed set."""


class ArchitectureMismatchError(CheckpointError):
    """A checkpoint's weights do not fit the model its config (or the caller) describes."""


class CheckpointVersionError(CheckpointError):
    """A voxface checkpoint written by an incompatible format version."""


class ImageError(VoxfaceError):
    """An image could not be read or is unusable (empty, truncated, not an image)."""


class NoFaceError(VoxfaceError):
    """The face detector found no face in an image."""


class InputError(VoxfaceError, ValueError):
    """An argument a caller passed cannot be used: a wrong shape, a value out of range, an unknown
    option (also a ``ValueError``, so ``except ValueError`` keeps working)."""


class InputTypeError(VoxfaceError, TypeError):
    """An argument of a type the function does not take (also a ``TypeError``)."""


class ConfigError(VoxfaceError, ValueError):
    """A YAML config is missing, malformed, has unknown keys, or describes a model that cannot be
    built (also a ``ValueError``: :func:`voxface.create_model` raises it for inconsistent values)."""


class DataError(VoxfaceError):
    """Training data (ICT-FaceKit folder, cached dataset, real-data folder) is missing or malformed."""


def check_integer(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int >= minimum``: ints, numpy ints and 0-d integer tensors, or the argument
    error naming ``name``.

    Raises :class:`InputTypeError` for anything else (a float, even ``3.0``, is refused rather than
    truncated; so are bools), :class:`InputError` below ``minimum``.
    """
    dtype = str(getattr(value, "dtype", ""))
    if isinstance(value, bool) or dtype in ("bool", "torch.bool"):
        raise InputTypeError(f"{name} must be an integer, not a bool ({value!r})")
    try:
        v = operator.index(value)
    except TypeError:
        raise InputTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if v < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {v}")
    return v


def check_finite(name: str, value: Any) -> float:
    """``value`` (a real number) as a finite float, or the argument error naming ``name``:
    :class:`InputTypeError` for bools, strings and non-numbers, :class:`InputError` for NaN,
    infinities and integers too large for a float."""
    dtype = str(getattr(value, "dtype", ""))
    if isinstance(value, (bool, str, bytes)) or dtype in ("bool", "torch.bool"):
        raise InputTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}") from None
    except OverflowError:  # an int past float's range (10**400): no float holds it, as no float is infinite
        raise InputError(f"{name} must be finite, got an integer beyond float's range (about 1.8e308)") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    return v
