"""Checkpoints: self-describing, safe-to-load files holding a :class:`~voxface.models.VoxFace`.

A voxface checkpoint is a ``torch.save``'d dict in the spirit of First Order Motion Model's
``vox-cpk.pth.tar``, with everything needed to rebuild the model from the file alone:

==================  =================================================================================
key                 value
==================  =================================================================================
``state_dict``      the model's weights (``OrderedDict[str, Tensor]``; float16 when saved ``half``)
``config``          ``to_dict(model.config)``: the architecture (:class:`voxface.config.ModelConfig`)
``prior``           ``model.prior`` (latent statistics, a dict of tensors/lists) or ``None``
``meta``            voxface/torch versions, ``format_version``, UTC creation time, the canonical
                    frame (:data:`voxface.frame.FRAME_DESCRIPTION`), resolution, weight dtype and
                    parameter counts per part
``optimizer``       resume state: optimizer ``state_dict()`` or ``None``
``scheduler``       resume state: LR scheduler ``state_dict()`` or ``None``
``epoch``/``step``  resume state: ints
``loss_history``    list of dicts (one record per logged step/epoch)
``rng``             resume state: random-number-generator states as given, or ``None``
``extra``           a plain dict (e.g. auxiliary training heads' state_dicts) or ``None``
==================  =================================================================================

Inference needs only ``state_dict``, ``config`` and ``prior``; the rest is for resuming training.

A checkpoint is data, never code: everything stored is a tensor, dict, list, tuple, set, str,
bytes, number or ``None``, and every read goes through ``torch.load(..., weights_only=True)`` (there
is no fallback to ``weights_only=False``). Writes are atomic: a crash never leaves a half-written
file where a good one was.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math
import numbers
import os
import pickle
import pickletools
import re
import struct
import sys
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._version import __version__
from .config import ModelConfig, model_config, to_dict
from .device import resolve_device
from .errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointVersionError,
    InputError,
    InputTypeError,
    UnsafeCheckpointError,
    VoxfaceError,
    printable,
)
from .frame import FRAME_DESCRIPTION

if TYPE_CHECKING:  # pragma: no cover
    from .models import VoxFace

__all__ = [
    "FORMAT_VERSION",
    "DEFAULT_WEIGHTS",
    "release_checkpoint",
    "CheckpointInfo",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_model_and_checkpoint",
    "CheckpointSource",
    "inspect_checkpoint",
]

#: Version of the checkpoint layout written by :func:`save_checkpoint`. Files with a larger
#: ``meta["format_version"]`` are refused with :class:`~voxface.errors.CheckpointVersionError`.
FORMAT_VERSION = 1

#: The bundled weights :func:`load_model` reads when given no path (may not exist yet).
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "vox-cpk.pth.tar"

_PLAIN_DATA = "tensors, dicts, lists, tuples, sets, strings, bytes, numbers and None"
# The scalar types weights_only loads: exactly these, not their subclasses (checked with ``type() in``).
_SCALARS = (bool, int, float, complex, str, bytes)
_FLOAT16_MAX = 65504.0
# State-dict entries that are buffers, not parameters (BatchNorm running statistics).
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int = 0,
    step: int = 0,
    loss_history: list[Mapping[str, Any]] | None = None,
    scheduler: Any | None = None,
    rng_state: Any | None = None,
    extra: Mapping[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model`` (and optional resume state) to ``path`` atomically; return the path.

    Args:
        path: destination file, conventionally ``*.pth.tar``; parent folders are created.
        model: a :class:`~voxface.models.VoxFace` (``DataParallel``/DDP/``torch.compile``
            wrappers are unwrapped, so the stored keys carry no ``module.``/``_orig_mod.``).
        optimizer: its ``state_dict()`` is stored under ``optimizer`` (else ``None``).
        epoch, step: training progress (ints).
        loss_history: list of dicts, one record per logged step (0-dim tensors and numpy
            scalars become Python numbers).
        scheduler: an LR scheduler; its ``state_dict()`` is stored under ``scheduler``.
        rng_state: random-generator states to resume with, stored as given under ``rng``
            (e.g. ``{"torch": torch.get_rng_state(), "python": random.getstate()}``).
        extra: a plain dict stored under ``extra`` (e.g. auxiliary heads' state_dicts).
        half: store floating-point weights as float16 (about half the size, for shipping;
            :func:`load_model` casts them back to float32). Resume state is never halved. A weight
            beyond float16's range, or holding NaN or infinite values, is an
            :class:`~voxface.errors.InputError` naming it, and nothing is written.

    ``meta["created"]`` is the current UTC time, or ``$SOURCE_DATE_EPOCH`` when set: the same model
    and state then give the same file bytes (an invalid value is an
    :class:`~voxface.errors.InputError`, before anything is written).

    A ``model.prior`` that :func:`load_model` would refuse (see its checks) is an
    :class:`~voxface.errors.InputError` naming ``path``, and nothing is written.

    The stored config is ``model.config`` with its ``refine`` section set to the refinement head
    ``model.refiner`` holds (``None`` when it is ``None``), so the file rebuilds the model as it is.

    Everything stored must be plain data: numpy arrays become tensors (arrays of text or records, lists), numpy scalars Python
    numbers, subclasses of ``int``/``float``/``str`` (``IntEnum``, string enums) their plain values
    and dataclasses dicts; anything else that is not plain data (a function, a custom object)
    raises ``TypeError`` naming where it is, as does an ``optimizer`` / ``scheduler`` without
    ``state_dict()`` or an ``epoch`` / ``step`` that is not an integer (an
    :class:`~voxface.errors.InputTypeError`). The write goes to a temporary file in the same folder,
    is flushed and fsync'd, then renamed over ``path`` (and the folder fsync'd; a file replaced keeps its
    permission bits, a new one gets ``0o666`` less the umask): on any error the
    temporary file is removed and a previous file at ``path`` is left untouched. A write the system
    refuses (a full disk included) raises :class:`~voxface.errors.CheckpointError` naming ``path``
    and the reason; Ctrl-C stays a ``KeyboardInterrupt``. A write killed outright (SIGKILL) leaves
    ``path`` as it was and its hidden temporary ``.<name>.<8 hex>.tmp`` beside it, which the next
    successful write of ``path`` removes once it has gone ten minutes unwritten.
    """
    if isinstance(model, (str, os.PathLike)) and not isinstance(path, (str, os.PathLike)):
        raise InputTypeError("save_checkpoint takes (path, model), the path first (as load_checkpoint(path)); "
                             f"got ({type(path).__name__}, {type(model).__name__})")
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    _as_path(path)
    if os.fspath(path).endswith(("/", os.sep)):  # Path() drops the slash: "runs/new/" wrote a file named new
        raise _fail("directory", "names a folder (it ends in a slash); give a file name such as model.pth.tar", path)
    path = _output_path(path)
    net = _unwrap(model)
    config = getattr(net, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise InputTypeError(
            f"save_checkpoint needs a VoxFace model (with a .config); got {type(model).__name__}"
        )
    if extra is not None and not isinstance(extra, Mapping):
        raise InputTypeError(f"extra must be a dict, got {type(extra).__name__}")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):  # 'adam' was AttributeError
        if obj is not None and not callable(getattr(obj, "state_dict", None)):
            raise InputTypeError(f"{name} must be a torch {name} (its state_dict() is stored) or None, got "
                                 f"{type(obj).__name__} {obj!r}")
    from .errors import check_integer as _integer

    epoch, step = _integer("epoch", epoch, -(2**62)), _integer("step", step, -(2**62))  # 'x': int()'s ValueError
    config = _stored_config(net, config)
    try:  # a prior load_model refuses would make the whole file unloadable: refused before writing
        _checked_prior(getattr(net, "prior", None), net, path)
    except CheckpointError as e:
        problem = e.problem.replace("its latent prior", "model.prior", 1)
        raise InputError(f"{problem}: load_model would refuse the file, so it was not written", path) from None
    state = _export_state_dict(net.state_dict(), half=half)
    ckpt: dict[str, Any] = {
        "state_dict": state,
        "optimizer": None if optimizer is None else _plain(optimizer.state_dict(), "optimizer"),
        "scheduler": None if scheduler is None else _plain(scheduler.state_dict(), "scheduler"),
        "epoch": int(epoch),
        "step": int(step),
        "loss_history": _plain_history(loss_history),
        "config": _plain(to_dict(config), "config"),
        "prior": _plain(getattr(net, "prior", None), "prior"),
        "rng": _plain(rng_state, "rng"),
        "extra": None if extra is None else _plain(dict(extra), "extra"),
        "meta": _meta(net, state, half),
    }
    _atomic_save(ckpt, path)
    return path


def _stored_config(net: nn.Module, config: Any) -> Any:
    """``config`` with its ``refine`` section saying which head ``net`` holds: none after
    ``model.refiner = None``, the head's own config for one assigned by hand. The stored config
    rebuilds the model on load, so a section that disagreed with the weights made a file that
    :func:`load_model` refused (missing or unexpected ``refiner.*`` weights)."""
    if not any(f.name == "refine" for f in dataclasses.fields(config)):
        return config
    head = getattr(net, "refiner", None)
    want = None if head is None else getattr(head, "cfg", config.refine)
    return config if want == config.refine else dataclasses.replace(config, refine=want)


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip ``DataParallel``/``DistributedDataParallel``/``torch.compile`` wrappers."""
    for _ in range(8):
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        break
    return model


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """``t`` on the CPU, copied when it is a view of a larger storage (which would all be saved)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    # (a sparse tensor, COO or CSR, has no single storage to ask: untyped_storage() raised NotImplementedError)
    if t.layout == torch.strided and t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    if type(t) is not torch.Tensor:  # nn.Parameter or another subclass: store a plain tensor
        t = t.as_subclass(torch.Tensor)
    return t


def _export_state_dict(sd: Mapping[str, torch.Tensor], half: bool) -> "OrderedDict[str, torch.Tensor]":
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in sd.items():
        t = _own_storage(v)
        if half and t.is_floating_point() and t.dtype != torch.float16:
            if t.numel() and not bool(torch.isfinite(t).all()):  # half=False would not help: say what it is
                raise InputError(f"cannot store {k}: {_non_finite(t)}")
            if t.numel() and not bool(t.abs().max() <= _FLOAT16_MAX):
                raise InputError(
                    f"cannot store {k} as float16: it holds values beyond +-{_FLOAT16_MAX:g}; save with half=False"
                )
            t = t.to(torch.float16)
        out[k] = t
    metadata = getattr(sd, "_metadata", None)
    if metadata is not None:  # per-module versions, used by load_state_dict
        out._metadata = _plain(metadata, "state_dict._metadata")  # type: ignore[attr-defined]
    return out


def _non_finite(t: torch.Tensor) -> str:
    """What is wrong with a weight tensor holding NaN or infinite values, for a message."""
    n = int((~torch.isfinite(t)).sum())
    return (f"{n} of its {t.numel()} values are NaN or infinite (did the training diverge?); a model of these "
            "weights outputs NaN whatever the precision")


def _plain(obj: Any, where: str) -> Any:
    """A ``weights_only``-loadable copy of ``obj``; raises ``TypeError`` naming ``where``."""
    if obj is None or type(obj) in _SCALARS:
        return obj
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.generic):  # before the subclasses: np.float64 is a float
        return _plain(obj.item(), where)
    for base in _SCALARS:  # an IntEnum, a str subclass...: pickled as its class, which weights_only refuses
        if isinstance(obj, base):
            return base.__str__(obj) if base is str else base(obj)
    if isinstance(obj, torch.Tensor):
        return _own_storage(obj)
    if isinstance(obj, (torch.Size, torch.dtype, torch.device)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(to_dict(obj), where)
    if np is not None and isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise InputTypeError(f"{where}: cannot store a numpy object array in a checkpoint")
        if obj.dtype.kind in "SUV":  # text, bytes, records (names of coefficients...): no tensor holds them
            return _plain(obj.tolist(), where)
        try:  # a copy in native byte order ('>f8' data was torch's ValueError about byte orders)
            return torch.from_numpy(np.array(obj, dtype=obj.dtype.newbyteorder("="), copy=True))
        except TypeError:  # datetime64, ...: it was torch's TypeError, naming neither the array nor where
            raise InputTypeError(f"{where}: cannot store a numpy {obj.dtype} array in a checkpoint; checkpoints "
                                 f"hold data only ({_PLAIN_DATA})") from None
    if isinstance(obj, Mapping):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[_plain(k, f"{where} key")] = _plain(v, f"{where}[{k!r}]")
        metadata = getattr(obj, "_metadata", None)
        if isinstance(out, OrderedDict) and metadata is not None:
            out._metadata = _plain(metadata, f"{where}._metadata")  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):  # namedtuples become plain tuples
        return tuple(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, (set, frozenset)):
        return {_plain(v, f"{where} item") for v in obj}
    raise InputTypeError(
        f"{where}: cannot store a {type(obj).__module__}.{type(obj).__qualname__} in a checkpoint; "
        f"checkpoints hold data only ({_PLAIN_DATA})"
    )


def _plain_history(history: list[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, rec in enumerate(history or []):
        if not isinstance(rec, Mapping):
            raise InputTypeError(f"loss_history[{i}] must be a dict, got {type(rec).__name__}")
        row = {}
        for k, v in rec.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.detach().cpu().item()
            row[str(k)] = _plain(v, f"loss_history[{i}][{k!r}]")
        out.append(row)
    return out


def _meta(net: nn.Module, state: Mapping[str, torch.Tensor], half: bool) -> dict[str, Any]:
    cfg = net.config  # type: ignore[attr-defined]
    params = {name: sum(p.numel() for p in child.parameters()) for name, child in net.named_children()}
    params["total"] = sum(p.numel() for p in net.parameters())
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values() if t.is_floating_point()})
    return {
        "voxface_version": __version__,
        "format_version": FORMAT_VERSION,
        "created": _created().isoformat(timespec="seconds"),
        "frame": FRAME_DESCRIPTION,
        "resolution": int(cfg.decoder.resolution),
        "image_size": int(cfg.encoder.image_size),
        "torch_version": str(torch.__version__),  # a TorchVersion object would not load safely
        "python_version": sys.version.split()[0],
        "dtype": "/".join(dtypes) if dtypes else "none",
        "half": bool(half),
        "parameters": params,
    }


def _created() -> datetime.datetime:
    """The UTC time a checkpoint records as made: now, or ``$SOURCE_DATE_EPOCH`` (seconds since 1970,
    the reproducible-builds convention) when set, so that writing the same model and state twice
    gives the same bytes (``meta["created"]`` is the only part of the file that depends on when)."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not env:
        return datetime.datetime.now(datetime.timezone.utc)
    try:
        return datetime.datetime.fromtimestamp(int(env), datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise InputError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970-01-01 UTC, got {env!r}; "
                         "unset it to record the current time") from None


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`voxface.mesh.atomic_open`: the whole file or the old one.

    A write the system refuses (no such folder, no permission, a full disk) raises
    :class:`CheckpointError` (reason ``"unwritable"``) naming ``path`` and the system's reason,
    never the temporary file, which is gone.
    """
    from .mesh import atomic_open, remove_stale_temporaries

    if path.is_dir():
        raise _fail("directory", "is a directory; give a file name such as model.pth.tar", path)
    try:
        with atomic_open(path) as f:
            out = _RecordingWriter(f)
            try:
                torch.save(obj, out)
            except Exception:
                if out.error is not None:  # the real cause (a full disk, Ctrl-C), not torch's "unexpected pos"
                    raise out.error from None
                raise
    except OSError as e:
        raise _fail("unwritable", f"cannot write file ({e.strerror or e})", path) from None
    remove_stale_temporaries(path)  # those a killed write of path left, untouched for mesh.STALE_TEMPORARY_S


class _RecordingWriter:
    """A binary file's ``write``/``flush`` that remember what ``write`` raised.

    ``torch.save``'s writer (C++) catches an exception raised while writing (``OSError`` of a full
    disk, the ``KeyboardInterrupt`` of Ctrl-C) and raises ``RuntimeError: ... unexpected pos``
    later instead; :func:`_atomic_save` raises the recorded exception in its place.
    """

    def __init__(self, f: Any):
        self._f = f
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except BaseException as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._f.flush()


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | Any = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint dict safely: ``torch.load(path, map_location=..., weights_only=True)``.

    Works for any torch checkpoint holding plain data (voxface's, or a foreign one such as
    First Order Motion Model's ``vox-cpk.pth.tar``). ``map_location`` may be ``"auto"``,
    ``"cpu"``, ``"cuda:0"``, a CUDA index, ``"meta"``, a :class:`torch.device`, or a dict or function
    as ``torch.load`` takes them; anything else is an :class:`~voxface.errors.InputTypeError`.

    Raises :class:`~voxface.errors.CheckpointError` (one line, naming the file) for a missing
    file, a directory, a pipe or device (not a regular file), an empty, truncated or corrupt file, a zip/``.npz``/``.npy``/text/other
    file that is not a torch checkpoint (a TorchScript archive included), one ``torch.save`` wrote with a
    pickle protocol other than 2 or 3 (``pickle_protocol=4``: the safe loader cannot read it), a file not
    holding a dict, CUDA tensors kept where they were saved (``map_location=None``) on a machine without CUDA;
    :class:`~voxface.errors.UnsafeCheckpointError` when unpickling would import or call anything
    outside the plain-data set (the code is never run);
    :class:`~voxface.errors.CheckpointVersionError` for a voxface checkpoint of a newer
    ``format_version``. Each error carries a short ``reason`` attribute (``"missing"``,
    ``"truncated"``, ``"unsafe"``, ...).
    """
    path = _source_path(path)
    obj = _read(path, map_location)
    _check_version(obj, path)
    return obj


def _as_path(path: Any, what: str = "path") -> Path:
    """``path`` (a ``str``, ``bytes`` or ``os.PathLike``) as a :class:`Path`; anything else, an open
    file included, is an :class:`~voxface.errors.InputTypeError` naming ``what`` (it was the bare
    ``TypeError: expected str, bytes or os.PathLike object``)."""
    if isinstance(path, (str, bytes, os.PathLike)) and not isinstance(path, bool):
        return Path(os.fsdecode(path))
    got = (f"an open file ({type(path).__name__}): pass its path" if hasattr(path, "read") or hasattr(path, "write")
           else type(path).__name__)
    raise InputTypeError(f"{what} must be the path of a checkpoint file (a str or os.PathLike), not {got}")


def _source_path(path: Any, what: str = "path") -> Path:
    """:func:`_as_path` of a checkpoint to read: a leading ``~`` is the home folder (as in
    ``init_from`` and ``inherit_from``) unless a file or folder of that literal name exists, and a URL
    (``https://...``, ``file://...``) is a :class:`~voxface.errors.CheckpointError` saying that nothing is
    downloaded (``Path`` turned ``https://host/x.pth`` into ``https:/host/x.pth``, then "not found")."""
    out = _as_path(path, what)
    text = os.fsdecode(path)
    if os.path.lexists(out):  # (False, not an OSError, for a path the system cannot look at: _sniff says why)
        return out
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", text):  # ":/": a URL a Path already collapsed (the CLI's)
        raise _fail("missing", "is a URL: voxface reads checkpoint files on this machine and downloads nothing; "
                    "download it first (e.g. torch.hub.download_url_to_file) and pass the file's path", text)
    return out.expanduser() if text.startswith("~") else out


def _output_path(path: Any, what: str = "path") -> Path:
    """:func:`_as_path` of a checkpoint to write: a leading ``~`` is the home folder unless a folder of
    that literal name exists here (``save_checkpoint('~/m.pth.tar', ...)`` made a folder named ``~``
    in the working directory, which ``rm -r ~`` would then "clean up")."""
    out = _as_path(path, what)
    return out if not out.parts or os.path.lexists(out.parts[0]) else out.expanduser()


def _fail(reason: str, message: str, path: Path, cls: type[CheckpointError] = CheckpointError) -> CheckpointError:
    return cls(message, path, reason=reason)


def _map_location(map_location: Any, path: Path) -> Any:
    """``map_location`` as ``torch.load`` takes it: a device string (``"auto"`` included) or CUDA index
    checked by :func:`~voxface.device.resolve_device`, ``"meta"`` (shapes and dtypes without the data)
    as its device; a :class:`torch.device`, mapping, callable or ``None`` as given. Anything else is an
    :class:`~voxface.errors.InputTypeError` (``0`` was torch's ``'int' object is not callable``, blamed on
    the file as "could not be read as a torch checkpoint")."""
    if isinstance(map_location, torch.device) and map_location.type in ("cuda", "mps"):
        map_location = str(map_location)  # checked as the string is: it was blamed on the file's own tensors
    if isinstance(map_location, str) and map_location.strip() == "meta":
        return torch.device("meta")
    if isinstance(map_location, (str, numbers.Integral)) and not isinstance(map_location, bool):
        try:
            return resolve_device(map_location)
        except VoxfaceError as e:  # e.g. "cuda" on a machine without CUDA: say which file was being loaded
            raise _fail("device", f"cannot be loaded there: {e}", path) from None
    if map_location is None or isinstance(map_location, (torch.device, Mapping)) or (
            callable(map_location) and not isinstance(map_location, bool)):
        return map_location
    raise InputTypeError(
        "map_location must be a device ('auto', 'cpu', 'cuda:0', a torch.device or a CUDA index), a dict "
        f"mapping saved locations to others, a function or None, not {type(map_location).__name__}"
    )


def _read(path: Path, map_location: Any, opened: list[tuple[Path, str]] | None = None, *,
          mmap: bool = False) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (the checks :func:`load_checkpoint` documents). With
    ``opened`` (a list), ``(the file opened: links resolved, the SHA-256 hex of its bytes)`` is
    appended to it: the file is opened once and sniffed, CRC-checked, hashed and unpickled from
    that one handle, so a file replaced meanwhile (a training's atomic save of ``last.pth.tar``)
    cannot give the weights of one file and the hash of another. The hash is taken as the CRC
    check reads the file in order, never held whole in memory. ``mmap`` (without ``opened``): map a
    zip archive's tensors from the file (``torch.load(mmap=True)``), reading only the pages used."""
    if opened is None:
        kind = _sniff(path)
        if mmap and kind == "zip":  # (a legacy file cannot be mapped)
            try:
                return _load(path, kind, map_location, path, mmap=True)
            except CheckpointError as e:  # a file system that cannot map files (some FUSE mounts): read it
                if e.reason not in ("corrupt", "unreadable"):
                    raise
        return _load(path, kind, map_location, path)
    _sniff(path, checks_only=True)  # a missing file, a folder, a pipe: the usual one-line errors, before opening
    real = Path(os.path.realpath(path))
    try:
        f = open(real, "rb")
    except OSError as e:
        raise _fail("unreadable", f"cannot read checkpoint ({e.strerror or e})", path) from None
    with f:
        hashed = _Sha256Reader(f)
        kind = _sniff(path, hashed)
        try:
            opened.append((real, hashed.hexdigest()))  # what the CRC check read, then the rest (the zip's directory)
        except OSError as e:
            raise _fail("unreadable", f"cannot read checkpoint ({e.strerror or e})", path) from None
        f.seek(0)
        return _load(path, kind, map_location, f)


class _Sha256Reader:
    """A binary file's ``read``/``seek``/``tell`` that hash its bytes, in order, as they are read.

    ``[0, done)`` is hashed; a read starting at most 64 kB past ``done`` (a zip record's data
    descriptor or an unchecked record left out) hashes the gap first, a read further on (the zip's
    end record, read first) is hashed later. :meth:`hexdigest` reads and hashes what is left."""

    _GAP = 1 << 16

    def __init__(self, f: Any) -> None:
        import hashlib

        self._f, self._h, self._done = f, hashlib.sha256(), 0

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._f.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int = -1) -> bytes:
        pos = self._f.tell()
        if 0 < pos - self._done <= self._GAP:
            self._f.seek(self._done)
            self._h.update(self._f.read(pos - self._done))
            self._done = self._f.tell()
        data = self._f.read(n)
        if pos <= self._done < pos + len(data):
            self._h.update(memoryview(data)[self._done - pos:])
            self._done = pos + len(data)
        return data

    def hexdigest(self) -> str:
        self._f.seek(self._done)
        for block in iter(lambda: self._f.read(1 << 20), b""):
            self._h.update(block)
            self._done += len(block)
        return self._h.hexdigest()


def _load(path: Path, kind: str, map_location: Any, src: Any, *, mmap: bool = False) -> dict[str, Any]:
    """``torch.load(src, weights_only=True, mmap=mmap)`` (``src``: ``path`` or an open handle of it), its
    failures as one-line :class:`CheckpointError` s naming ``path``; ``kind`` is :func:`_sniff`'s.
    ``mmap`` is always passed: torch's own default (``torch.utils.serialization.config.load.mmap``, which a
    program may set to True) refuses an open handle, and made every file 'could not be read'."""
    map_location = _map_location(map_location, path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses anyway
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            obj = torch.load(src, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(path, e, kind) from None
    except EOFError:
        raise _fail("truncated", "is truncated: the data ends early; save it again", path) from None
    except RuntimeError as e:
        detail = _first_line(e)
        if "unexpected eof" in detail.lower() or "truncated" in detail.lower():
            raise _fail("truncated", f"is truncated: the data ends early ({detail}); save it again",
                        path) from None
        if "deserialize object on a cuda device" in detail.lower():
            where = ("holds tensors saved on a CUDA device" if map_location is None  # keep them where saved
                     else f"cannot be loaded with map_location {map_location!r}")  # a mapping onto CUDA
            raise _fail("device", f"{where} and this machine has no CUDA; load it with "
                        "map_location='cpu' or 'auto'", path) from None
        if kind == "pickle" and "magic number" in detail.lower():
            raise _fail(
                "pickle", "is a Python pickle but not a torch checkpoint (torch.save files are zip "
                "archives holding data.pkl)", path,
            ) from None
        raise _fail("corrupt", f"is corrupt: torch could not read it ({detail})", path) from None
    except OSError as e:
        raise _fail("unreadable", f"cannot read checkpoint ({e.strerror or e})", path) from None
    except Exception as e:  # noqa: BLE001 - anything else torch.load raises is a bad file
        raise _fail(
            "corrupt", f"could not be read as a torch checkpoint ({type(e).__name__}: {_first_line(e)})",
            path,
        ) from None
    if not isinstance(obj, dict):
        raise _fail(
            "not-a-dict", f"holds a {type(obj).__name__}, not a checkpoint dict", path
        )
    return obj


def _check_version(obj: Mapping[str, Any], path: Path) -> None:
    fv = _format_version(obj)
    if fv is not None and fv > FORMAT_VERSION:
        meta = obj.get("meta") or {}
        raise _fail(
            "version",
            f"was written with checkpoint format {fv} (voxface {meta.get('voxface_version', '?')}); "
            f"this voxface {__version__} reads format {FORMAT_VERSION} or older: upgrade voxface",
            path,
            CheckpointVersionError,
        )


def _format_version(obj: Mapping[str, Any]) -> int | None:
    meta = obj.get("meta")
    if isinstance(meta, Mapping):
        fv = meta.get("format_version")
        if isinstance(fv, int) and not isinstance(fv, bool):
            return fv
    return None


def _short(text: str, n: int = 160) -> str:
    """``text`` on one line, cut at a word boundary to at most about ``n`` characters ("..." marks a cut)."""
    text = " ".join(str(text).split()).rstrip(" .;:,")
    if len(text) <= n:
        return text
    cut = text[:n].rsplit(" ", 1)[0]
    return (cut or text[:n]) + "..."


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:200]


_SIGNATURES: list[tuple[bytes, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image", "is a PNG image, not a torch checkpoint"),
    (b"\xff\xd8\xff", "image", "is a JPEG image, not a torch checkpoint"),
    (b"\x1f\x8b", "gzip", "is gzip-compressed data, not a torch checkpoint (decompress it first?)"),
    (b"\x89HDF\r\n\x1a\n", "hdf5", "is an HDF5 file (Keras/.h5 weights?), not a torch checkpoint"),
    (b"\x7fELF", "binary", "is an executable (ELF), not a torch checkpoint"),
]


def _sniff(path: Path, f: Any = None, *, checks_only: bool = False) -> str:
    """Classify ``path`` from its first bytes without unpickling anything.

    Returns ``"zip"`` (a torch zip archive) or ``"pickle"`` (a legacy torch file or raw pickle),
    the two kinds handed to the restricted unpickler; raises for everything else. ``f``: an open
    handle of ``path`` to read instead of opening it again; ``checks_only``: stop after the checks
    of the path itself (missing, a folder, not a regular file), before reading (returns ``""``).
    """
    try:  # (a folder on the way this user may not search: PermissionError from stat)
        if not path.exists():
            hint = " (a broken symbolic link)" if path.is_symlink() else ""
            raise _fail("missing", f"checkpoint file not found{hint}", path)
        if path.is_dir():
            try:
                inside = sorted(p.name for p in path.iterdir()
                                if p.name.endswith((".pth.tar", ".pth", ".pt", ".ckpt")))
            except OSError:  # a folder this user may not list is a folder all the same
                inside = []
            hint = f"; it contains {', '.join(inside[:3])}" if inside else ""
            raise _fail("directory", f"is a directory, not a checkpoint file{hint}", path)
        if not path.is_file():  # a pipe (<(...)) or a device reads as 0 bytes: it was called empty, a failed write
            raise _fail("not-a-file", "is not a regular file (a pipe or a device?): torch reads checkpoints from "
                        "files it can seek in; save it to a file first", path)
    except OSError as e:
        raise _fail("unreadable", f"cannot read checkpoint ({e.strerror or e})", path) from None
    if checks_only:
        return ""
    try:
        if f is None:
            size = path.stat().st_size
            with open(path, "rb") as g:
                head = g.read(4096)
        else:
            size = os.fstat(f.fileno()).st_size
            f.seek(0)
            head = f.read(4096)
    except OSError as e:
        raise _fail("unreadable", f"cannot read checkpoint ({e.strerror or e})", path) from None
    if size == 0:
        raise _fail("empty", "is empty (0 bytes): the write that produced it failed; save it again", path)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _sniff_zip(path, size, path if f is None else f)
    if head.startswith(b"\x93NUMPY"):
        raise _fail("npy", "is a NumPy .npy array, not a torch checkpoint", path)
    if head[:1] == b"\x80":  # pickle protocol >= 2: legacy torch.save format or a raw pickle
        return "pickle"
    if re.match(rb"c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n", head):  # protocol-0 pickle, GLOBAL first
        return "pickle"
    if head.startswith(b"L%dL\n" % _LEGACY_MAGIC):  # torch.save(..., pickle_protocol=0 or 1): not text
        return "pickle"
    for magic, reason, message in _SIGNATURES:
        if head.startswith(magic):
            raise _fail(reason, message, path)
    # an ONNX ModelProto: field 1 (ir_version, a varint) first, then usually field 2 (producer_name)
    if re.match(rb"\x08[\x01-\x7f]\x12[\x01-\x7f][ -~]", head) or (head[:1] == b"\x08" and path.suffix.lower() == ".onnx"):
        raise _fail("onnx", "is an ONNX graph (as `voxface export-onnx` writes), not a torch checkpoint: run it "
                    "with onnxruntime, or pass the checkpoint it was exported from", path)
    if len(head) > 262 and head[257:262] == b"ustar":
        raise _fail(
            "tar", "is a tar archive, not a torch checkpoint (despite the name, .pth.tar files are "
            "torch.save zip archives)", path,
        )
    if len(head) >= 10 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size:
        raise _fail("safetensors", "is a safetensors file, not a torch checkpoint", path)
    if b"\x00" not in head and _is_text(head):
        if head.startswith(b"version https://git-lfs"):
            raise _fail(
                "lfs-pointer", "is a Git LFS pointer, not the weights themselves: run `git lfs pull`", path
            )
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:40] if head.strip() else ""
        raise _fail("text", f"is a text file (starts {first!r}), not a torch checkpoint", path)
    raise _fail(
        "unknown", f"is not a torch checkpoint (unrecognised format; first bytes {head[:8].hex(' ')})", path
    )


def _is_text(head: bytes) -> bool:
    for cut in range(4):  # the 4096-byte window may split a multi-byte character
        try:
            (head[: len(head) - cut] if cut else head).decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


#: What Python's zipfile raises on an archive whose headers a changed byte garbled: besides ``BadZipFile``, a
#: compression method, zip version, encryption flag or disk count it does not support (``NotImplementedError``,
#: ``RuntimeError``; ``BadZipFile`` from ``is_zipfile`` itself), data that does not decompress (``zlib.error``).
_ZIP_DAMAGE = (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, struct.error, EOFError, OSError,
               ValueError)


def _sniff_zip(path: Path, size: int, src: Any) -> str:
    """:func:`_sniff` for a zip archive, read from ``src`` (``path`` or an open handle of it)."""
    try:
        whole = zipfile.is_zipfile(src)
    except _ZIP_DAMAGE as e:  # an end record naming other disks: a changed byte, not a multi-disk archive
        raise _fail("corrupt", f"is a corrupt zip archive ({_first_line(e)})", path) from None
    if not whole:
        raise _fail(
            "truncated",
            f"is truncated or corrupt: a zip archive ({size} bytes) without its end record, as left "
            "by an interrupted write; save it again",
            path,
        )
    try:
        with zipfile.ZipFile(src) as z:
            names = z.namelist()
    except _ZIP_DAMAGE as e:
        raise _fail("corrupt", f"is a corrupt zip archive ({_first_line(e)})", path) from None
    # before data.pkl: a TorchScript archive holds one too (torch.load hands it to torch.jit.load, which
    # weights_only refuses: it was "is corrupt: ... Cannot use weights_only=True with TorchScript archives")
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise _fail(
            "torchscript", "is a TorchScript archive (torch.jit.save), which holds code; voxface "
            "checkpoints are torch.save'd dicts", path,
        )
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        _check_crc(path, src)
        return "zip"
    if path.suffix.lower() == ".npz" or (names and all(n.endswith(".npy") for n in names)):
        arrays = ", ".join(n.removesuffix(".npy") for n in names[:4]) + (", ..." if len(names) > 4 else "")
        raise _fail("npz", f"is a NumPy .npz archive (arrays {arrays}), not a torch checkpoint", path)
    listing = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    raise _fail(
        "zip", f"is a zip archive but not a torch checkpoint (no data.pkl; it holds {listing or 'nothing'})",
        path,
    )


def _check_crc(path: Path, src: Any = None) -> None:
    """Refuse a torch zip archive whose bytes no longer match the CRC-32 torch.save recorded for them:
    torch.load does not check, so a flipped bit in a tensor's data loads as a silently wrong weight.
    Records with a CRC of 0 (written with ``torch.serialization.set_crc32_options(False)``) are not
    checked. Reads the file once (about 1 ms per MB), from ``src`` (an open handle of it) when given."""
    try:
        with zipfile.ZipFile(path if src is None else src) as z:
            for info in z.infolist():
                if info.CRC == 0 and info.file_size:
                    continue
                with z.open(info) as f:  # raises BadZipFile at the end of a record whose CRC-32 differs
                    while f.read(1 << 22):
                        pass
    except zipfile.BadZipFile as e:
        raise _fail("corrupt", f"is corrupt: {_first_line(e)} (its bytes changed since it was written); "
                    "save or copy it again", path) from None
    except _ZIP_DAMAGE as e:  # a record's header garbled: a compression method or encryption it cannot have
        raise _fail("corrupt", f"is a corrupt zip archive ({_first_line(e)})", path) from None


def _unpickling_error(path: Path, e: pickle.UnpicklingError, kind: str) -> CheckpointError:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    refused = (
        "refused: a checkpoint must be data, never code, and voxface only loads with "
        f"weights_only=True ({_PLAIN_DATA})"
    )
    m = re.search(r"GLOBAL (\S+)", msg)
    if m:
        return _fail("unsafe", f"unpickling it would import {m.group(1)}; {refused}{_own_objects_hint(m.group(1))}",
                     path, UnsafeCheckpointError)
    m = re.search(r"(Can only [^\n]*|Trying to call reduce[^\n]*|Only persistent_load[^\n]*)", msg)
    if m:
        return _fail("unsafe", f"its pickle builds disallowed objects ({m.group(1)[:160]}); {refused}",
                     path, UnsafeCheckpointError)
    # The restricted unpickler stopped for another reason (e.g. an opcode torch.save never writes):
    # name any disallowed global by reading, never running, the pickle.
    bad = _disallowed_globals(path, kind)
    if bad:
        return _fail("unsafe", f"unpickling it would import {', '.join(bad[:3])}; {refused}"
                     f"{next((h for h in map(_own_objects_hint, bad) if h), '')}", path, UnsafeCheckpointError)
    m = re.search(r"WeightsUnpickler error:\s*(.+)", msg, re.S)
    detail = _short((m.group(1) if m else msg).split("Check the documentation")[0])  # not torch's generic advice
    protocol = _unread_protocol(_pickle_bytes(path, kind), kind) if "Unsupported operand" in msg else None
    if protocol is not None:  # a whole file torch.save wrote: it was called corrupt, or not a torch checkpoint
        return _fail(
            "protocol", f"was written with pickle protocol {protocol} (torch.save(..., pickle_protocol=...)), which "
            "torch's safe loader (weights_only=True) does not read: it reads protocol 2, torch.save's default; if you "
            "trust the file, load it once with torch.load(path, weights_only=False) and save it again without "
            "pickle_protocol", path)
    if kind == "pickle":
        return _fail("pickle", f"is a Python pickle but not a torch checkpoint ({detail})", path)
    return _fail("corrupt", f"is corrupt: its pickle could not be read safely ({detail})", path)


def _own_objects_hint(name: str) -> str:
    """For a refused global of voxface's own (``torch.save(model)`` pickles the whole
    ``voxface.models.voxface.VoxFace``), how to turn the file into a checkpoint; for one of numpy's
    (a numpy scalar or array: a metric logged as ``np.mean(...)``, as Occupancy Networks'
    ``loss_val_best``), that it is numpy data torch's safe loader leaves out, and how to convert it; else ``""``."""
    if name.startswith("numpy."):
        return ("; it holds numpy values (numpy scalars or arrays, such as a metric logged with np.mean), which "
                "torch's weights_only loader does not read: if you trust the file, load it once with "
                "torch.load(path, weights_only=False) and save it again with them as Python numbers (.item()) or "
                "tensors (torch.from_numpy)")
    if not name.startswith("voxface."):
        return ""
    return ("; it pickles voxface's own objects (torch.save(model) of a whole model?): if you wrote it, load it once "
            "with torch.load(path, weights_only=False) and write the model with voxface.save_checkpoint")


def _pickle_bytes(path: Path, kind: str) -> bytes:
    """The pickle of a ``"zip"`` archive (its ``data.pkl``) or a legacy ``"pickle"`` file (its first
    64 MB), for parsing without running; ``b""`` when it cannot be read."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
                return z.read(name)
        with open(path, "rb") as f:
            return f.read(64 << 20)
    except Exception:  # noqa: BLE001
        return b""


#: The number a legacy (pre-zip) ``torch.save`` file pickles first (``torch.serialization.MAGIC_NUMBER``).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _unread_protocol(data: bytes, kind: str) -> str | None:
    """The pickle protocol of a file ``torch.save`` wrote (``data``: :func:`_pickle_bytes`) when it is
    one torch's ``weights_only`` unpickler does not read (anything but 2 and 3, e.g.
    ``pickle_protocol=4``, whose FRAME opcode it stops at), else ``None``. A legacy file counts as
    ``torch.save``'s only when its first pickle is torch's magic number, so that a plain pickle stays
    one. Parses opcodes, runs nothing."""
    torch_file = kind == "zip"  # a zip archive holding data.pkl is torch.save's
    protocol: str | None = None
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):  # the opcodes up to the first value
            if op.name == "PROTO":
                protocol = str(arg)
            elif op.name in ("FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                continue
            elif not torch_file and op.name in ("LONG", "LONG1", "LONG4") and arg == _LEGACY_MAGIC:
                torch_file = True
            else:
                break
    except Exception:  # noqa: BLE001 - a malformed pickle: not this case
        return None
    protocol = protocol or "0 or 1"  # protocols 0 and 1 have no PROTO opcode
    return protocol if torch_file and protocol not in ("2", "3") else None


def _disallowed_globals(path: Path, kind: str) -> list[str]:
    """Globals a pickle would import, found by parsing its opcodes (nothing is executed)."""
    data = _pickle_bytes(path, kind)
    if not data:
        return []
    found: list[str] = []
    strings: list[str] = []
    memo: dict[int, Any] = {}
    stream = io.BytesIO(data)
    try:
        for _ in range(16):  # a legacy torch file is several pickles in a row
            if stream.tell() >= len(data):
                break
            for op, arg, _pos in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name):
                    strings.append(arg)
                elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif op.name in ("BINGET", "LONG_BINGET", "GET") and isinstance(memo.get(int(arg)), str):
                    strings.append(memo[int(arg)])
    except Exception:  # noqa: BLE001 - garbage after the last pickle, or a malformed one
        pass
    try:
        from torch._weights_only_unpickler import _get_allowed_globals, _get_user_allowed_globals

        allowed = set(_get_allowed_globals()) | set(_get_user_allowed_globals())
    except Exception:  # noqa: BLE001 - private API; without it every global counts as disallowed
        allowed = set()
    return list(dict.fromkeys(g for g in found if g not in allowed))


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


#: Entries of a training checkpoint's ``extra`` that only resuming its run reads (written by
#: :mod:`voxface.train`): :func:`release_checkpoint` drops them with the optimizer, scheduler and RNG.
RESUME_EXTRA = ("grad_scaler", "data_position", "aux_heads", "aux_dims")


def carried_over(ck: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint made from ``ck`` without training on (a release, a refined head) keeps of
    it, as :func:`save_checkpoint`'s keywords: ``epoch``, ``step``, ``loss_history`` and ``extra``
    without the resume entries (:data:`RESUME_EXTRA`: nothing reads them but a resumed run, which
    the new file cannot be) and without ``released_from``, which marks the file ``voxface release``
    wrote and only that file (a head refined on a release is not itself a release: its release named
    the first release's source, and ``inspect`` called it released; :func:`release_checkpoint` sets it
    anew). Metadata of the wrong type (a hand-edited file) is dropped, not a traceback."""
    extra = dict(ck["extra"]) if isinstance(ck.get("extra"), Mapping) else {}
    for key in (*RESUME_EXTRA, "released_from"):
        extra.pop(key, None)
    history = ck.get("loss_history")
    return {"epoch": _int_or_none(ck.get("epoch")) or 0, "step": _int_or_none(ck.get("step")) or 0,
            "loss_history": [r for r in history if isinstance(r, Mapping)] if isinstance(history, (list, tuple)) else [],
            "extra": extra}


def release_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    half: bool = True,
    extra: Mapping[str, Any] | None = None,
    prior: Mapping[str, Any] | None = None,
    expect_sha256: str | None = None,
) -> Path:
    """Write a training checkpoint as a shippable one: weights, config, prior and history only.

    ``prior`` replaces the checkpoint's latent prior (e.g. after
    :func:`voxface.latent.annotate_directions` named its directions). A release of a release
    keeps the first one's ``released_from``.

    Keeps ``state_dict`` (float16 when ``half``), ``config``, ``prior``, ``epoch``, ``step``,
    ``loss_history`` and the source's ``extra`` (merged with ``extra``, e.g. evaluation numbers);
    drops ``optimizer``, ``scheduler`` and ``rng`` (resume state: several times the weights'
    size) and the resume state the trainer keeps in ``extra`` (:data:`RESUME_EXTRA`: the AMP grad
    scaler, the data position, the auxiliary training heads). The result loads with :func:`load_model`; training cannot resume from it. The write is
    atomic. Returns ``dst``.

    Raises :class:`~voxface.errors.CheckpointError` when ``dst`` is ``src`` itself (the same file
    under any name): releasing in place would replace the training checkpoint and lose the resume
    state it strips; when a weight holds NaN or infinite values (a diverged run: no precision ships
    it); when a weight is beyond float16's range with ``half`` (release it with ``half=False``). With ``half=False`` on a source whose weights are already float16 it warns
    (``UserWarning``): float32 storage doubles the size but cannot bring back the dropped precision.

    ``expect_sha256``: the SHA-256 of ``src``'s bytes as the caller read them before (the file an
    evaluation report in ``extra`` scored, the model ``prior`` was annotated from). The release is
    refused (``CheckpointError`` with ``reason="changed"``) when the file read here holds other bytes:
    written again in between, as a training writes ``last.pth.tar``, it would ship one file's weights
    with another's numbers or names.
    """
    src, dst = _source_path(src, "src"), _output_path(dst, "dst")
    if _same_file(src, dst):
        raise _fail(
            "in-place",
            "the output is this checkpoint itself: releasing in place would overwrite it (a training "
            "checkpoint's resume state, which release strips, would be lost); write the release to another file "
            f"(e.g. -o {Path(src).name.split('.')[0]}-release.pth.tar)",
            Path(src),
        )
    check_output_checkpoint(dst, "release")
    model, ck = load_model_and_checkpoint(src, device="cpu")  # one read: its metadata and weights are one file's
    read = model.source.sha256
    if expect_sha256 is not None and read != expect_sha256:
        raise _fail("changed", f"holds other bytes than when it was read before (SHA-256 {read[:16]}..., then "
                    f"{str(expect_sha256)[:16]}...): written again since? release it again", Path(src))
    if not half and any(
        isinstance(t, torch.Tensor) and t.dtype == torch.float16 for t in ck["state_dict"].values()
    ):
        warnings.warn(
            f"{src}: its weights are stored in float16; releasing them as float32 doubles the size but "
            "cannot bring back the precision float16 dropped",
            stacklevel=2,
        )
    kept = carried_over(ck)
    merged = kept["extra"]
    first = ck["extra"].get("released_from") if isinstance(ck.get("extra"), Mapping) else None
    again = bool(first) and not ck.get("optimizer")  # src is itself a release
    merged.update({"released_from": first if again else Path(src).name, **dict(extra or {})})
    if prior is not None:
        model.prior = dict(prior)
    for k, t in model.state_dict().items():  # NaN weights (a diverged run) are nothing to ship, float32 or not
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise _fail("non-finite", f"weight {k}: {_non_finite(t)}; release an earlier checkpoint of the run "
                        "(its best.pth.tar)", Path(src))
    try:
        return save_checkpoint(dst, model, **kept, half=half)
    except ValueError as e:  # weights float16 cannot hold: release them with --float32
        if not str(e).startswith("cannot store"):
            raise
        raise _fail("float16", f"{str(e).removesuffix('; save with half=False')}; release it with --float32",
                    Path(src)) from None


#: :class:`CheckpointError` reasons of what a failed write leaves: an output may replace such a file.
_LEFTOVERS = ("empty", "truncated", "corrupt")


def check_output_checkpoint(dst: str | os.PathLike[str], what: str) -> None:
    """Refuse, before any work, an output checkpoint path that cannot take the file or that holds
    another run's resume state.

    ``dst`` must be a file path in a folder this process can write into (probed with a real
    temporary file: permission bits do not tell root or a read-only file system), and an existing
    ``dst`` must be a voxface checkpoint without resume state (optimizer, scheduler, RNG: a ``what``
    such as ``"release"`` or ``"refined checkpoint"`` keeps none, so that run could no longer be
    resumed), or what a failed write left (an empty, truncated or corrupt file): another project's
    checkpoint of the same name (First Order Motion Model's ``vox-cpk.pth.tar``), a photo or the
    YAML config just read are refused. Raises :class:`~voxface.errors.CheckpointError` naming ``dst``.
    An existing ``dst`` is read without its tensors' data (``map_location="meta"``): memory does not grow
    with its size.
    """
    from .mesh import parent_problem, probe_write

    path = Path(dst)
    if path.is_dir():
        raise _fail("output", f"is a folder; name the {what}'s file (e.g. {path / 'model.pth.tar'})", path)
    if (blocked := parent_problem(path)) is not None:  # refine_checkpoint(out="afile/h.pth.tar") trained first
        raise _fail("output", f"cannot write file ({blocked})", path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.is_dir():
        try:
            probe_write(folder)
        except OSError as e:
            raise _fail("output", f"cannot write file ({e.strerror or e})", path) from None
    if path.is_file():
        try:
            old = load_checkpoint(path, map_location="meta")  # its keys only: no tensor's data is read into memory
        except CheckpointError as e:
            if e.reason in _LEFTOVERS:  # what a failed write left: nothing to keep
                return
            problem = e.problem
            raise _fail("output", f"exists and {problem}; the {what} would replace it: write to another file, or "
                        "remove this one first", path) from None
        if not _is_voxface(old):
            problem = "is " + _foreign_error(old, path).problem.split(";")[0]
            raise _fail("output", f"exists and {problem}; the {what} would replace it: write to another file, or "
                        "remove this one first", path)
        if any(old.get(k) is not None for k in ("optimizer", "scheduler", "rng")):
            raise _fail("output", f"is a training checkpoint with resume state (optimizer, scheduler, RNG); the "
                        f"{what} would replace it and that run could no longer be resumed: write to another file",
                        path)


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one file (the same path, a symbolic or hard link to it)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def load_model(
    path: str | os.PathLike[str] | None = None, device: str | torch.device = "auto", strict: bool = True
) -> VoxFace:
    """Rebuild a :class:`~voxface.models.VoxFace` from a checkpoint file alone, in eval mode.

    Args:
        path: a file written by :func:`save_checkpoint`; ``None`` reads :data:`DEFAULT_WEIGHTS`.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda:0"``, ...
        strict: refuse missing or unexpected weights. Shape mismatches are always refused.

    The architecture comes from the file's ``config``; ``module.`` (DataParallel/DDP) and
    ``_orig_mod.`` (``torch.compile``) key prefixes are stripped; float16 weights are cast back
    to float32; ``model.prior`` is restored (its tensors stay on the CPU). The global torch
    random state is left as it was. Raises
    :class:`~voxface.errors.CheckpointError` for a foreign checkpoint (e.g. First Order Motion
    Model's), :class:`~voxface.errors.ArchitectureMismatchError` naming the first bad key and
    both shapes, and everything :func:`load_checkpoint` raises.

    ``model.source`` records the file (a :class:`CheckpointSource`: its resolved path, the SHA-256
    of the bytes read and its epoch), which :func:`voxface.reconstruct.model_provenance` writes
    into every ``.npz`` the model makes. The file is opened once, and hashed as it is checked and
    read, so a file replaced while loading (a training saving ``last.pth.tar``) is never recorded
    in place of the one loaded. ``model.source`` is a plain attribute: ``model.to(...)`` and
    ``copy.deepcopy`` keep it; ``state_dict`` and :func:`save_checkpoint` leave it out.
    """
    return load_model_and_checkpoint(path, device, strict)[0]


def load_model_and_checkpoint(
    path: str | os.PathLike[str] | None = None, device: str | torch.device = "auto", strict: bool = True
) -> tuple[VoxFace, dict[str, Any]]:
    """:func:`load_model`'s model and the checkpoint dict it was built from (as :func:`load_checkpoint`
    returns it, tensors on the CPU), from one read of the file: for code that needs the file's
    metadata (epoch, history, ``extra``) with its weights, as :func:`release_checkpoint` does. Two
    reads (``load_checkpoint`` then ``load_model``) could pair one file's metadata with another's
    weights when the file is replaced in between (a training saving ``last.pth.tar``)."""
    from .models import create_model
    from .reconstruct import model_digest

    if path is None:
        path = DEFAULT_WEIGHTS
        if not path.exists():
            raise _fail(
                "missing",
                "no default weights are installed here; train a model (`voxface train`, see the README) or pass a "
                "checkpoint path: voxface.load_model('path/to/model.pth.tar')",
                path,
            )
    path = _source_path(path)
    dev = resolve_device(device)
    opened: list[tuple[Path, str]] = []
    ckpt = _read(path, "cpu", opened)  # load_checkpoint's read, hashing the bytes it reads
    _check_version(ckpt, path)
    if not _is_voxface(ckpt):
        raise _foreign_error(ckpt, path)
    try:
        with torch.random.fork_rng(devices=[]):  # the throwaway random init leaves the seed alone
            model = create_model(model_config(ckpt["config"]))
    except (VoxfaceError, ValueError, TypeError, KeyError) as e:
        raise _fail("config", f"its stored config cannot build a model ({_first_line(e)}){_written_by(ckpt)}",
                    path) from None
    state = _clean_state_dict(ckpt["state_dict"], path)
    try:
        _check_architecture(model, state, path, strict)
    except ArchitectureMismatchError as e:  # another version's model code: say which versions
        if not _written_by(ckpt):
            raise
        raise _fail("mismatch", e.problem + _written_by(ckpt), path,
                    ArchitectureMismatchError) from None
    model.load_state_dict(state, strict=strict)  # copy_ casts float16 -> float32
    model.prior = _checked_prior(ckpt.get("prior"), model, path)
    (real, sha256), = opened
    model.source = CheckpointSource(real, sha256, _int_or_none(ckpt.get("epoch")), model_digest(model))
    return model.to(dev).eval(), ckpt


@dataclass(frozen=True)
class CheckpointSource:
    """The file :func:`load_model` built a model from: ``model.source`` (``None`` or absent on a
    model made otherwise, e.g. :func:`voxface.models.create_model`).

    Attributes:
        path: the file, absolute, symbolic links resolved (a training's ``latest`` link: the file
            it pointed to when loaded).
        sha256: the SHA-256 of the bytes loaded (64 hex digits, as ``sha256sum`` prints it), even if
            the file has been replaced since.
        epoch: the training epoch the file records, ``None`` when it records none.
        model_sha256: :func:`voxface.reconstruct.model_digest` of the weights as loaded; a model
            whose weights changed since (fine-tuned, ``load_state_dict``) no longer claims the file.
    """

    path: Path
    sha256: str
    epoch: int | None
    model_sha256: str

    @classmethod
    def of_file(cls, path: str | os.PathLike, model_sha256: str) -> "CheckpointSource":
        """The source record of the checkpoint file ``path`` for weights whose digest is
        ``model_sha256``, read here without loading its tensors (``map_location="meta"``): the file
        is opened once and hashed as its epoch is read (:func:`load_checkpoint`'s checks, and
        everything it raises). For a model whose weights came from ``path`` without
        :func:`load_model` recording it (``model.source``)."""
        path = _source_path(path, "checkpoint")
        opened: list[tuple[Path, str]] = []
        ckpt = _read(path, "meta", opened)
        _check_version(ckpt, path)
        (real, sha256), = opened
        return cls(real, sha256, _int_or_none(ckpt.get("epoch")), model_sha256)


def _written_by(ckpt: Mapping[str, Any]) -> str:
    """``"; written by voxface X, this is voxface Y"`` when the checkpoint's ``meta`` names another
    voxface version than this one (a config key or weight that version added or dropped is why its
    file does not build here), else ``""``."""
    meta = ckpt.get("meta")
    version = meta.get("voxface_version") if isinstance(meta, Mapping) else None
    if not isinstance(version, str) or version == __version__:
        return ""
    return f"; it was written by voxface {printable(version[:40])}, this is voxface {__version__}"


def _checked_prior(prior: Any, model: "VoxFace", path: Path) -> Any:
    """The checkpoint's latent prior, refused in one line (a :class:`CheckpointError`) when sampling
    and the mean face would fail on it later: not a mapping, or a mean without its standard
    deviation, or either not the size of its code, or PCA parts of other sizes (:func:`_check_pca`).
    ``None`` (no prior) stays ``None``."""
    if prior is None:
        return None
    if not isinstance(prior, Mapping):
        raise _fail("prior", f"its latent prior must be a mapping, got {type(prior).__name__}", path)
    for name, dim in (("z_id", model.config.encoder.z_id), ("z_exp", model.config.encoder.z_exp)):
        if f"{name}_mean" not in prior and f"{name}_std" not in prior:
            continue
        for key in (f"{name}_mean", f"{name}_std"):
            try:
                size = int(torch.as_tensor(prior[key]).numel())
            except KeyError:
                raise _fail("prior", f"its latent prior has {name}_mean or {name}_std without the other", path) from None
            except (TypeError, ValueError, RuntimeError):
                raise _fail("prior", f"its latent prior's {key} is not an array of numbers", path) from None
            if size != int(dim):
                raise _fail("prior", f"its latent prior's {key} holds {size} values; the model's {name} has {dim}",
                            path)
        _check_pca(prior.get(f"{name}_pca"), f"{name}_pca", int(dim), path)
    return prior


def _check_pca(pca: Any, key: str, dim: int, path: Path) -> None:
    """Refuse a prior's PCA part that ``sample``/``walk`` would fail on later (a size mismatch
    deep in torch): ``components`` must be ``(k, dim)`` with ``explained_variance`` of ``k``
    values (and ``explained_variance_ratio``, when stored, too). ``None`` or empty passes."""
    if pca is None:
        return
    if not isinstance(pca, Mapping):
        raise _fail("prior", f"its latent prior's {key} must be a mapping, got {type(pca).__name__}", path)
    if pca.get("components") is None:
        return
    try:
        comp = torch.as_tensor(pca["components"])
        shapes = {k: tuple(torch.as_tensor(pca[k]).shape) for k in ("explained_variance", "explained_variance_ratio")
                  if pca.get(k) is not None}
    except (TypeError, ValueError, RuntimeError):
        raise _fail("prior", f"its latent prior's {key} is not arrays of numbers", path) from None
    if comp.numel() == 0:
        return
    if comp.ndim != 2 or comp.shape[1] != dim:
        raise _fail("prior", f"its latent prior's {key} components have shape {tuple(comp.shape)}; the model's codes "
                             f"need (k, {dim})", path)
    if "explained_variance" not in shapes:
        raise _fail("prior", f"its latent prior's {key} has components without explained_variance", path)
    for k, shape in shapes.items():
        if shape != (comp.shape[0],):
            raise _fail("prior", f"its latent prior's {key} {k} has shape {shape}; its {comp.shape[0]} components "
                                 f"need ({comp.shape[0]},)", path)


def _is_voxface(obj: Mapping[str, Any]) -> bool:
    """Whether a checkpoint dict is voxface's: a ``config`` and a ``state_dict`` (mappings), and a ``meta``
    naming the voxface version that wrote it (as every :func:`save_checkpoint` file has) or, in a file
    without one (made by hand, or older), weights or a config that are a voxface model's. Another
    project's ``{"state_dict": ..., "config": ...}`` (a common layout) was taken for voxface's: ``inspect``
    called it a voxface model of ``?`` parts, ``load_model`` blamed its config, and an output path holding
    it was replaced by ``release`` or ``init-checkpoint``."""
    config, state = obj.get("config"), obj.get("state_dict")
    if not (isinstance(config, Mapping) and isinstance(state, Mapping)):
        return False
    meta = obj.get("meta")
    if isinstance(meta, Mapping) and "voxface_version" in meta:
        return True
    sections = {f.name for f in dataclasses.fields(ModelConfig)}
    return _voxface_keys(state) or (bool(config) and {str(k) for k in config} <= sections)


def _voxface_keys(state: Mapping[Any, Any]) -> bool:
    """Whether ``state``'s keys (prefixes stripped) are a voxface model's: its ``encoder`` and ``decoder``,
    and at most a ``refiner`` beside them."""
    parts = {_strip_key(str(k)).split(".", 1)[0] for k in state}
    return {"encoder", "decoder"} <= parts <= {"encoder", "decoder", "refiner"}


def _foreign_error(obj: Mapping[str, Any], path: Path) -> CheckpointError:
    """The error for a readable checkpoint that is not voxface's (``reason`` ``"foreign"``)."""
    what, networks = _describe_foreign(obj, path.name)
    nets = f" with networks {', '.join(networks)}" if networks else ""
    how = _bare_voxface_weights(obj) or "voxface.load_model reads files written by voxface.save_checkpoint"
    why = ("its 'config' and 'state_dict' are another model's" if {"config", "state_dict"} <= set(obj)
           else "no 'config' and 'state_dict'")
    return _fail("foreign", f"not a voxface checkpoint ({why}): it looks like a {what}{nets}; {how}", path)


def _bare_voxface_weights(obj: Mapping[str, Any]) -> str:
    """For a bare state_dict whose keys are a voxface model's (``torch.save(model.state_dict())``), how
    to make it a checkpoint; else ``""``."""
    if not (_is_state_dict(obj) and _voxface_keys(obj)):
        return ""
    return ("its keys are a voxface model's, without the config that builds it: load them into "
            "voxface.create_model(CONFIG) with load_state_dict and write that model with voxface.save_checkpoint")


def _strip_key(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in ("module.", "_orig_mod."):
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key.replace("._orig_mod.", ".")  # a compiled submodule


def _clean_state_dict(sd: Mapping[Any, Any], path: Path) -> "OrderedDict[str, torch.Tensor]":
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in sd.items():
        if not isinstance(k, str):
            raise _fail("corrupt", f"state_dict key {k!r} is a {type(k).__name__}, not a parameter name", path)
        if not isinstance(v, torch.Tensor):
            raise _fail("corrupt", f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor", path)
        key = _strip_key(k)
        if key in out:
            raise _fail("corrupt", f"state_dict has {key} twice once prefixes are stripped", path)
        out[key] = v
    metadata = getattr(sd, "_metadata", None)
    if isinstance(metadata, Mapping):
        stripped = OrderedDict()
        for k, v in metadata.items():
            s = _strip_key(f"{k}.") if k else ""
            stripped[s[:-1] if s else ""] = v
        out._metadata = stripped  # type: ignore[attr-defined]
    return out


def _shape(t: torch.Tensor | torch.Size) -> str:
    return str(tuple(t.shape if isinstance(t, torch.Tensor) else t))


def _check_architecture(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, strict: bool,
    described_by: str = "its config",
) -> None:
    """Raise :class:`ArchitectureMismatchError` naming the first bad key (and both shapes) when
    ``state`` does not fit ``model``; ``described_by`` names where the model's config came from."""
    expected = model.state_dict()
    mismatched = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if not mismatched and not ((missing or unexpected) and strict):
        if missing or unexpected:
            warnings.warn(
                f"{path}: loaded non-strictly: {len(missing)} missing key(s) "
                f"{missing[:3]}, {len(unexpected)} unexpected key(s) {unexpected[:3]}",
                stacklevel=3,
            )
        return
    if mismatched:
        k = mismatched[0]
        first = f"{k} has shape {_shape(state[k])} in the checkpoint but {_shape(expected[k])} in the model"
    elif missing:
        k = missing[0]
        first = f"{k} (shape {_shape(expected[k])} in the model) is missing from the checkpoint"
    else:
        k = unexpected[0]
        first = f"{k} (shape {_shape(state[k])} in the checkpoint) is not in the model"
    raise _fail(
        "mismatch",
        f"weights do not fit the architecture {described_by} describes: {first} ({len(mismatched)} shape "
        f"mismatch(es), {len(missing)} missing, {len(unexpected)} unexpected key(s))",
        path,
        ArchitectureMismatchError,
    )


# --------------------------------------------------------------------------------------------
# inspection
# --------------------------------------------------------------------------------------------


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, read without running any of its code.

    Attributes:
        path: the file; ``size_bytes`` its size.
        kind: ``"voxface"`` (a ``config`` and a ``state_dict`` that are a voxface model's) or ``"foreign"``.
        keys: top-level keys, in file order.
        networks: name -> ``{"parameters": int, "tensors": int, "dtype": str}`` per state_dict
            (a voxface model's is split by top-level module: ``encoder``, ``decoder``; extra
            state_dicts appear as ``extra.<name>``). ``parameters`` counts elements of
            floating-point tensors, BatchNorm running statistics excluded.
        optimizers: keys holding optimizer state (``param_groups``).
        epoch, step: training progress, when stored.
        loss_history_length, last_loss: number of loss records and the last one.
        config, meta: the stored model config and metadata (voxface checkpoints).
        parameters: parameter counts of the voxface model by part, plus ``total``.
        flops: FLOPs per sample by part (``encoder``, ``decoder``, ``total``) at batch 1.
        resume: which resume-state entries are present (``optimizer``, ``scheduler``, ``rng``).
        prior: the latent prior's kind, sample count and code widths (``kind``, ``num_samples``,
            ``z_id``, ``z_exp``), when the checkpoint holds one (:mod:`voxface.latent` samples it).
        evaluation: the ``voxface evaluate`` report a release embeds (``num``, ``seed``,
            ``resolution``, ``summary`` of the model and the mean-head baseline), when present.
        released_from: the training checkpoint ``voxface release`` made this one from.
        note: a plain-words remark (what a foreign checkpoint looks like, a newer format, ...).
    """

    path: str
    kind: str
    size_bytes: int
    keys: list[str]
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    optimizers: list[str] = field(default_factory=list)
    epoch: int | None = None
    step: int | None = None
    loss_history_length: int = 0
    last_loss: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    parameters: dict[str, int] | None = None
    flops: dict[str, int] | None = None
    resume: dict[str, bool] = field(default_factory=dict)
    prior: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    released_from: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tensors summarised, non-finite floats as strings)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def format(self) -> str:
        """Human-readable multi-line summary (a table of networks).

        What the file holds (its keys, config, metadata, loss names) is shown with its unprintable
        characters escaped (:func:`~voxface.errors.printable`: ``\\x1b``, ``\\n``): a checkpoint from
        elsewhere cannot drive the terminal or add lines of its own to the table.
        """
        lines = [f"{'checkpoint':<13}{self.path} ({_human_bytes(self.size_bytes)})"]
        meta = self.meta or {}
        if self.kind == "voxface":
            made = ", ".join(
                f"{label} {meta[key]}"
                for label, key in (("format", "format_version"), ("voxface", "voxface_version"),
                                   ("torch", "torch_version"), ("created", "created"))
                if key in meta
            )
            lines.append(f"{'kind':<13}voxface" + (f" ({made})" if made else ""))
            enc, dec = ((self.config or {}).get(part) for part in ("encoder", "decoder"))
            enc, dec = (x if isinstance(x, Mapping) else {} for x in (enc, dec))  # a hand-edited config
            lines.append(
                f"{'model':<13}{enc.get('name', '?')} encoder ({enc.get('image_size', '?')}px, "
                f"z_id {enc.get('z_id', '?')}, z_exp {enc.get('z_exp', '?')}) -> {dec.get('name', '?')} "
                f"decoder ({dec.get('resolution', '?')}^3), weights {meta.get('dtype', '?')}"
            )
        else:
            lines.append(f"{'kind':<13}foreign")
            shown = ", ".join(self.keys[:8]) + (f", ... ({len(self.keys)} keys; --json lists them)"
                                                if len(self.keys) > 8 else "")
            lines.append(f"{'keys':<13}{shown}")  # a bare state_dict's keys are its every tensor
        if self.epoch is not None or self.step is not None:
            lines.append(f"{'progress':<13}epoch {_opt(self.epoch)}, step {_opt(self.step)}")
        if self.loss_history_length:
            last = ", ".join(f"{k}={_fmt_value(v)}" for k, v in (self.last_loss or {}).items())
            lines.append(f"{'losses':<13}{self.loss_history_length} records; last: {last}")
        if self.resume:
            lines.append(f"{'resume':<13}" + ", ".join(
                f"{k} {'yes' if v else 'no'}" for k, v in self.resume.items()))
        if self.optimizers:
            lines.append(f"{'optimizers':<13}{', '.join(self.optimizers)}")
        if self.released_from:
            lines.append(f"{'released':<13}from {self.released_from} (weights only)")
        for part, section in (self.config or {}).items():
            if isinstance(section, Mapping):
                lines.append(f"{'config':<13}{part}: " + ", ".join(f"{k} {_fmt_value(v)}" for k, v in section.items()))
        if self.prior:
            pr = self.prior
            lines.append(f"{'prior':<13}{pr.get('kind', '?')}, fitted on {_opt(pr.get('num_samples'))} training "
                         f"latents (z_id {_opt(pr.get('z_id'))}, z_exp {_opt(pr.get('z_exp'))})")
        if self.evaluation:
            lines.append(f"{'evaluation':<13}{_evaluation_line(self.evaluation)}")
        if self.networks:
            width = max(12, *(len(n) for n in self.networks))
            lines += ["", f"{'network':<{width}}  {'parameters':>12}  {'tensors':>7}  dtype"]
            for name, s in self.networks.items():
                lines.append(f"{name:<{width}}  {s['parameters']:>12,}  {s['tensors']:>7,}  {s['dtype']}")
            total_p = sum(s["parameters"] for s in self.networks.values())
            total_t = sum(s["tensors"] for s in self.networks.values())
            lines.append(f"{'total':<{width}}  {total_p:>12,}  {total_t:>7,}")
        if self.flops:
            r = (self.config or {}).get("decoder", {}).get("resolution") if isinstance(self.config, Mapping) else None
            grid = f" (decoding the model's {r}^3 grid; finer grids cost more)" if r else ""
            lines += ["", f"{'FLOPs/sample':<13}" + ", ".join(
                f"{k} {_human_count(v)}FLOP" for k, v in self.flops.items()) + grid]
        if self.note:
            lines += ["", f"{'note':<13}{self.note}"]
        return "\n".join(printable(line) for line in lines)  # a line each, whatever the file's strings hold


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Summarise a checkpoint (voxface's or foreign) without running any of its code.

    Reads with the same safe loader as :func:`load_checkpoint` (so the same errors), except that
    a newer ``format_version`` is reported in ``note`` instead of raised. The tensors of a zip archive
    (every ``torch.save`` file since torch 1.6) are mapped from the file, not read into memory: memory
    does not grow with the file's size (a 7 GB foreign checkpoint held 7 GB). For voxface checkpoints
    the model is built from the stored config (random weights, CPU) to count FLOPs per sample.
    """
    path = _source_path(path)
    obj = _read(path, "cpu", mmap=True)  # shapes and dtypes: the tensors' data is mapped, not read into memory
    info = CheckpointInfo(
        path=str(path), kind="voxface" if _is_voxface(obj) else "foreign",
        size_bytes=path.stat().st_size, keys=[str(k) for k in obj],
    )
    notes: list[str] = []
    info.epoch = _int_or_none(obj.get("epoch", obj.get("epoch_it")))
    info.step = _int_or_none(obj.get("step", obj.get("global_step", obj.get("it"))))
    history = obj.get("loss_history")
    if isinstance(history, list):
        info.loss_history_length = len(history)
        if history and isinstance(history[-1], Mapping):
            info.last_loss = dict(history[-1])
    info.optimizers = [str(k) for k, v in obj.items() if _is_optimizer_state(v)]
    if info.kind == "voxface":
        state = _clean_state_dict(obj["state_dict"], path)
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for k, v in state.items():
            groups.setdefault(k.split(".", 1)[0], {})[k] = v
        info.networks = {name: _network_stats(sd) for name, sd in groups.items()}
        extra = obj.get("extra")
        if isinstance(extra, Mapping):
            for k, v in extra.items():
                if _is_state_dict(v):
                    info.networks[f"extra.{k}"] = _network_stats(v)
        info.parameters = {name: info.networks[name]["parameters"] for name in groups}
        info.parameters["total"] = sum(info.parameters.values())
        info.config = dict(obj["config"])
        info.meta = dict(obj["meta"]) if isinstance(obj.get("meta"), Mapping) else None
        info.resume = {k: obj.get(k) is not None for k in ("optimizer", "scheduler", "rng")}
        info.prior = _prior_summary(obj.get("prior"))
        if isinstance(extra, Mapping):
            ev = extra.get("evaluation")
            info.evaluation = dict(ev) if isinstance(ev, Mapping) else None
            rf = extra.get("released_from")
            info.released_from = str(rf) if rf is not None else None
        fv = _format_version(obj)
        if fv is not None and fv > FORMAT_VERSION:
            notes.append(
                f"written with checkpoint format {fv}; this voxface {__version__} reads format "
                f"{FORMAT_VERSION} or older (upgrade voxface to load it)"
            )
        else:
            try:
                from .models import create_model, flops_per_sample

                with torch.random.fork_rng(devices=[]):
                    model = create_model(model_config(obj["config"])).eval()
                info.flops = flops_per_sample(model)
            except Exception as e:  # noqa: BLE001 - inspection reports, it does not fail
                notes.append(f"its config does not build a model ({_first_line(e)}){_written_by(obj)}")
            else:
                try:
                    _check_architecture(model, state, path, strict=True)
                except ArchitectureMismatchError as e:  # load_model would refuse it: say so
                    notes.append(f"{e.problem}{_written_by(obj)}; load_model refuses it")
    else:
        what, _ = _describe_foreign(obj, path.name)
        info.networks = _foreign_networks(obj)
        nets = f": networks {', '.join(info.networks)}" if info.networks else ""
        notes.append(f"{what}{nets}; " + (_bare_voxface_weights(obj) or "not a voxface model"))
    info.note = "; ".join(notes) or None
    return info


def _prior_summary(prior: Any) -> dict[str, Any] | None:
    """Kind, sample count and code widths of a stored latent prior (its arrays are not shown)."""
    if not isinstance(prior, Mapping):
        return None
    out: dict[str, Any] = {"kind": str(prior.get("kind", "?")), "num_samples": _int_or_none(prior.get("num_samples"))}
    for key in ("z_id", "z_exp"):
        mean = prior.get(f"{key}_mean")
        shape = getattr(mean, "shape", None)
        out[key] = int(shape[-1]) if shape else None
    return out


def _evaluation_line(ev: Mapping[str, Any]) -> str:
    """One line of an embedded evaluation: the model's headline metrics beside the mean head's."""
    summary = ev.get("summary") if isinstance(ev.get("summary"), Mapping) else {}
    model, base = (summary.get(k) if isinstance(summary.get(k), Mapping) else {} for k in ("model", "baseline"))

    def stat(part: Mapping[str, Any], key: str, how: str = "mean") -> float | None:
        v = part.get(key)
        return v.get(how) if isinstance(v, Mapping) and isinstance(v.get(how), (int, float)) else None

    parts = [f"{_opt(ev.get('num'))} unseen faces (seed {_opt(ev.get('seed'))}, {_opt(ev.get('resolution'))}^3)"]
    for label, key, how, unit in (("IoU", "iou", "mean", ""), ("face Chamfer-L1", "face_chamfer_l1", "mean", " mm"),
                                  ("pose error median", "pose_deg", "median", " deg"),
                                  ("swap IoU", "swap_iou", "mean", "")):
        m, b = stat(model, key, how), stat(base, key, how)
        if m is not None:
            parts.append(f"{label} {m:.4g}{unit}" + (f" (mean head {b:.4g})" if b is not None else ""))
    return ", ".join(parts)


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):  # a NaN or infinite epoch/step (a hand-edited file)
        return None
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _is_state_dict(v: Any) -> bool:
    return isinstance(v, Mapping) and bool(v) and all(isinstance(t, torch.Tensor) for t in v.values())


def _is_optimizer_state(v: Any) -> bool:
    return isinstance(v, Mapping) and "param_groups" in v and "state" in v


def _network_stats(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    tensors = [(k, t) for k, t in sd.items() if isinstance(t, torch.Tensor)]
    params = sum(
        t.numel() for k, t in tensors if t.is_floating_point() and not str(k).endswith(_BUFFER_SUFFIXES)
    )
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for _, t in tensors if t.is_floating_point()})
    if not dtypes:
        dtypes = sorted({str(t.dtype).removeprefix("torch.") for _, t in tensors})
    return {"parameters": int(params), "tensors": len(tensors), "dtype": "/".join(dtypes) or "none"}


def _foreign_networks(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if _is_state_dict(obj):  # a bare state_dict: split by top-level module
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for k, v in obj.items():
            groups.setdefault(str(k).split(".", 1)[0], {})[k] = v
        return {name: _network_stats(sd) for name, sd in groups.items()}
    nets: dict[str, dict[str, Any]] = {}
    for k, v in obj.items():
        if _is_state_dict(v):
            nets[str(k)] = _network_stats(v)
    return nets


def _describe_foreign(obj: Mapping[str, Any], filename: str) -> tuple[str, list[str]]:
    """(what the checkpoint looks like, its network names) for a non-voxface checkpoint dict."""
    keys = {str(k) for k in obj}
    networks = list(_foreign_networks(obj))
    if {"generator", "kp_detector"} <= keys:
        what = f"First Order Motion Model checkpoint ({filename})"
    elif "pytorch-lightning_version" in keys or {"state_dict", "optimizer_states"} <= keys:
        what = "PyTorch Lightning checkpoint"
    elif "model" in keys and keys & {"epoch_it", "loss_val_best"}:
        what = "Occupancy Networks checkpoint"
    elif _is_state_dict(obj):
        what = f"bare state_dict ({len(obj)} tensors, no config)"
    elif {"state_dict", "config"} <= keys:
        what = "checkpoint of another model (a 'state_dict' with a 'config' of its own)"
    elif "state_dict" in keys:
        what = "checkpoint with a 'state_dict' but no 'config'"
    else:
        shown = ", ".join(sorted(keys)[:6]) + (", ..." if len(keys) > 6 else "")
        what = f"foreign torch checkpoint (top-level keys {shown or 'none'})"
    return what, networks


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, torch.Tensor):
        if v.numel() == 1:
            return _jsonable(v.item())
        return f"tensor{list(v.shape)} {str(v.dtype).removeprefix('torch.')}"
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, complex):
        return str(v)
    if isinstance(v, (torch.dtype, torch.device, bytes)):
        return str(v)
    return str(v)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def _human_count(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or unit == "T":
            return f"{n:.0f} " if unit == "" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _opt(v: Any) -> str:
    return "-" if v is None else str(v)
