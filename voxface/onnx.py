"""ONNX export: the encoder and decoder as two graphs, checked against PyTorch in onnxruntime.

Two files, both with a dynamic batch axis ``B`` of at least 1 (onnxruntime fails on an empty batch, in
a Reshape: skip the call when no face was found, though PyTorch's ``encode``/``decode`` accept one):

============  ==================================================  ===========================================
graph         inputs                                              outputs
============  ==================================================  ===========================================
encoder.onnx  ``image (B, 3, S, S)`` float32 RGB in [0, 1]         ``z_id (B, D_id)``, ``z_exp (B, D_exp)``,
                                                                  ``pose (B, 9)`` raw (6D rotation, log
                                                                  scale, tx, ty; see
                                                                  :func:`voxface.models.decode_pose`)
decoder.onnx  ``z_id (B, D_id)``, ``z_exp (B, D_exp)`` float32     ``logits (B, 1, R, R, R)`` float32,
                                                                  ``(D, H, W) = (z, y, x)`` on the canonical
                                                                  grid (:mod:`voxface.frame`)
============  ==================================================  ===========================================

Mesh extraction stays outside the graphs: feed ``logits[b, 0]`` and the grid to
:func:`voxface.mesh.extract_mesh` (or any marching cubes at level 0 with the grid mapping of
:mod:`voxface.frame`). The graphs give the decoder's own ``R^3`` grid: a checkpoint's refinement
head and the finer grids of ``reconstruct --resolution`` are not part of them. :func:`export_onnx`
also writes ``onnx.json`` and ``onnx.md``: the graphs' signatures, the largest absolute difference
to PyTorch at two batch sizes, and the speed of onnxruntime against PyTorch measured in the same
run (CPU, same thread count). ``onnx.json`` (``signature``) and each graph's metadata
(``metadata_props``) say what a consumer without voxface needs: the input's range and framing
(``image``), how to turn the raw pose into a rotation, scale and crop position (``pose``), the
grid's cell centres in canonical mm (``logits``, ``grid``), and where the checkpoint knows them
the blendshape name of each ``z_exp`` coordinate (``expression_names``, a JSON list); both also record
which weights the graphs hold (``provenance``: as a reconstruction's ``.npz``, the checkpoint's SHA-256
and epoch where known; its path in ``onnx.json`` only, not in graphs that are handed on).

Needs the ``onnx`` extra (``pip install 'voxface[onnx]'``: onnx and onnxruntime). The export uses
torch's TorchScript-based exporter (``dynamo=False``), which needs no further package.
"""

from __future__ import annotations

import contextlib
import copy
import json
import numbers
import os
import secrets
import stat
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from ._version import __version__
from .errors import InputError, VoxfaceError
from .frame import HEAD_RMS_RADIUS_MM
from .mesh import _fsync_folder, _keep_mode, _make_parent, _remove_folders, probe_write, remove_stale_temporaries

if TYPE_CHECKING:  # pragma: no cover
    from .models import VoxFace

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "MAX_BATCH", "OnnxExport", "export_onnx", "check_onnx", "onnx_speed",
           "ort_session", "max_opset", "check_opset", "check_batch", "need_packages"]

#: ONNX opset of the exported graphs: 20, the first whose GridSample takes volumes (the ``deform``
#: decoder samples its template with it); onnxruntime runs it from 1.17 on (the onnx extra's pin).
DEFAULT_OPSET = 20
#: Lowest opset accepted: GridSample on 5-D (volume) inputs needs opset 20.
MIN_OPSET = 20
#: Highest opset assumed when the installed torch does not say what its TorchScript exporter writes.
FALLBACK_MAX_OPSET = 20
#: Largest batch of the speed comparison.
MAX_BATCH = 256
#: Files :func:`export_onnx` writes into its folder (all of them, or none).
FILES = ("encoder.onnx", "decoder.onnx", "onnx.json", "onnx.md")
#: Largest float32 weights (bytes) one graph may hold: an ONNX file is one protobuf message, at most
#: 2 GiB; 16 MiB are left for the graph's nodes and folded constants. Above it torch's exporter spills
#: the weights into loose external-data files beside the graph and the export failed in protobuf.
MAX_GRAPH_WEIGHT_BYTES = 2**31 - 2**24


def max_opset() -> int:
    """Highest opset the installed ``torch.onnx`` TorchScript exporter (``dynamo=False``) writes."""
    try:
        from torch.onnx import _constants as c
    except ImportError:  # pragma: no cover - depends on the torch version
        return FALLBACK_MAX_OPSET
    v = getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None) or getattr(c, "ONNX_MAX_OPSET", None)
    return int(v) if isinstance(v, int) else FALLBACK_MAX_OPSET


def check_opset(opset: int) -> int:
    """``opset`` if this torch can export it and the graphs need no newer one, else :class:`VoxfaceError`."""
    import torch

    hi = max_opset()
    if not _whole(opset) or not MIN_OPSET <= opset <= hi:
        need = f"{MIN_OPSET}" if hi == MIN_OPSET else f"{MIN_OPSET}..{hi}"
        raise InputError(f"opset {opset} is not supported; use {need} (GridSample on volumes needs opset "
                           f"{MIN_OPSET}; the torch {torch.__version__.split('+')[0]} exporter writes at most {hi})")
    return int(opset)


def check_batch(batch: int) -> int:
    """``batch`` if it is in ``1..MAX_BATCH``, else :class:`VoxfaceError`."""
    if not _whole(batch) or not 1 <= batch <= MAX_BATCH:
        raise InputError(f"batch {batch} is out of range; use 1..{MAX_BATCH}")
    return int(batch)


def _whole(v: Any) -> bool:
    """Whether ``v`` is a whole number (``int``, NumPy integers), not a ``bool``."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        encoder, decoder: paths of the two graphs.
        opset: their ONNX opset.
        max_abs_diff: largest absolute difference between onnxruntime and PyTorch per output
            (``z_id``, ``z_exp``, ``pose``, ``logits``) over the checked batch sizes (empty if
            not checked).
        speed: ``onnx_speed`` result (empty if not measured).
        signature: inputs and outputs of the two graphs, what ``image``, ``pose`` and ``logits``
            hold, the grid of ``logits``, ``refinement_head`` (that it is not exported) for a model
            that has one, and ``expression_names`` (the blendshape of each
            ``z_exp`` coordinate) where the checkpoint knows them (:func:`voxface.latent.expression_names`).
        checkpoint: absolute path of the exported checkpoint: the one given, else the file
            :func:`voxface.load_model` read (``model.source``); ``None`` for a model made in code or
            whose weights changed since it was loaded.
        provenance: which weights the graphs hold, as every ``.npz`` of ``voxface reconstruct``
            records it (:func:`voxface.reconstruct.model_provenance`): ``voxface_version``,
            ``model_sha256`` and, where the file is known, ``checkpoint``, ``checkpoint_sha256``
            and ``checkpoint_epoch`` (-1: none recorded). Also in each graph's metadata, less the
            ``checkpoint`` path (graphs are handed on; a local path is not theirs to tell).

    In ``onnx.json`` (:meth:`to_dict`) ``encoder`` and ``decoder`` are file names relative to the
    folder of ``onnx.json``: resolve them with ``Path(json_file).parent / d["encoder"]``.
    """

    encoder: Path
    decoder: Path
    opset: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)

    checkpoint: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the graphs as file names relative to the folder of ``onnx.json`` (they lie beside it)."""
        d = asdict(self)
        d["encoder"], d["decoder"] = Path(self.encoder).name, Path(self.decoder).name
        return d


def _need_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - depends on the install
        raise VoxfaceError("onnxruntime is not installed; pip install 'voxface[onnx]'") from None
    return ort


def need_packages(check: bool = True, speed: bool = True) -> None:
    """:class:`VoxfaceError` unless ``onnx`` (the export needs it) and, when the graphs are to be
    checked or timed, ``onnxruntime`` are installed: one line naming the extra, before any work."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise VoxfaceError("onnx is not installed; pip install 'voxface[onnx]'") from None
    if check or speed:
        _need_ort()


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for ``path`` (``threads`` intra-op threads; default: torch's).

    onnxruntime logs only fatal errors: a failing run raises its error anyway, which the export
    turns into one line (its log printed the same error again, in colour, on stderr)."""
    import torch

    ort = _need_ort()
    so = ort.SessionOptions()
    so.log_severity_level = 4  # fatal only
    so.intra_op_num_threads = int(threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _graphs(model: "VoxFace") -> tuple[Any, Any]:
    import torch
    from torch import nn

    class EncoderGraph(nn.Module):
        def __init__(self, enc: nn.Module):
            super().__init__()
            self.encoder = enc

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return self.encoder(image)

    class DecoderGraph(nn.Module):
        def __init__(self, m: "VoxFace"):
            super().__init__()
            self.m = m

        def forward(self, z_id: torch.Tensor, z_exp: torch.Tensor) -> torch.Tensor:
            return self.m.decode(z_id, z_exp)

    return EncoderGraph(model.encoder).eval(), DecoderGraph(model).eval()


def export_onnx(model: "VoxFace", out_dir: str | Path, *, opset: int = DEFAULT_OPSET, check: bool = True,
                speed: bool = True, batch: int = 4, repeat: int = 5,
                checkpoint: str | Path | None = None, progress: bool = False) -> OnnxExport:
    """Write ``out_dir/encoder.onnx`` and ``out_dir/decoder.onnx`` (dynamic batch), check and time them.

    Args:
        model: a :class:`voxface.VoxFace` (any device; a float32 CPU copy is exported).
        out_dir: folder to write (created); also gets ``onnx.json`` and ``onnx.md``.
        opset: ONNX opset.
        check: compare onnxruntime with PyTorch at batch sizes 1 and 3 (:func:`check_onnx`)
            and raise :class:`VoxfaceError` if any output differs by more than ``1e-4``.
        speed: time both runtimes at ``batch`` (:func:`onnx_speed`, median of ``repeat``).
        checkpoint: the checkpoint ``model`` came from, recorded (absolute, with its SHA-256 and
            epoch: read once here) in ``onnx.json``; by default the file :func:`voxface.load_model`
            read, recorded as it read it (``model.source``: a file replaced since is not mistaken for it).
        progress: a progress bar on stderr, a step per graph exported, one for the parity check and
            one per timed round of each graph (at a large ``batch`` the timing is minutes).

    All four files are written to hidden temporaries in ``out_dir`` first (fsynced) and renamed
    into place only once every one of them is complete (and checked); on any failure the
    temporaries and the folders this call created are removed and the files already in
    ``out_dir`` are left as they were. A file replaced keeps its permission bits (a graph made
    private with ``chmod 600`` stays so). The hidden temporaries an export killed outright left
    there (untouched for :data:`voxface.mesh.STALE_TEMPORARY_S` seconds) go with the next export's success. In ``onnx.json`` the graphs are file names relative to
    its own folder.

    Returns:
        :class:`OnnxExport`.

    Raises:
        InputTypeError: ``model`` is not a :class:`voxface.VoxFace` (a ``TypeError``; one wrapped by
            ``torch.compile`` or ``DataParallel`` is exported as the model inside).
        VoxfaceError: an opset outside ``MIN_OPSET..max_opset()``, a batch outside
            ``1..MAX_BATCH``, onnx (or, to check or time, onnxruntime) not installed, an encoder
            or decoder whose float32 weights exceed :data:`MAX_GRAPH_WEIGHT_BYTES` (2 GiB less
            16 MiB: one ONNX file cannot hold them), a folder
            that cannot be written into (or a folder in the place of one of the four files), an
            export torch refuses, or a failed parity check. Checked before the export where they can be.
    """
    model = _voxface(model)  # a checkpoint's path, say: refused before any folder is made
    opset = check_opset(opset)
    if speed:
        batch = check_batch(batch)
    need_packages(check, speed)
    _check_graph_sizes(model, checkpoint)  # before the checkpoint is hashed or anything is made
    out = Path(out_dir)
    if checkpoint is not None:
        src = Path(checkpoint).expanduser().resolve()
        if any(src == (out / name).resolve() for name in FILES):
            raise VoxfaceError(f"is the checkpoint being exported: {out / src.name} would replace it; write the "
                               "graphs into another folder (-o)", checkpoint)
    provenance = _provenance(model, checkpoint)  # an unreadable checkpoint: refused before anything is made
    for name in FILES:  # a rename onto it would fail after the others: a mix of new and earlier files
        if (out / name).is_dir():
            raise VoxfaceError("is a folder, where the export writes a file; write the graphs into another "
                               "folder (-o)", out / name)
    try:
        made = _make_parent(out / FILES[0])  # the folders this call creates, innermost first
    except OSError as e:  # a file where a folder is needed: one line, as the other commands' outputs
        why = str(e.strerror or e)
        raise VoxfaceError(why[len(f"{out} "):] if why.startswith(f"{out} ") else why, out) from None
    tmp = {name: out / f".{name}.{secrets.token_hex(4)}.tmp" for name in FILES}
    res, done = None, False
    try:
        try:  # an unwritable folder fails now, not after the model is copied and traced
            probe_write(out)
        except OSError as e:
            raise VoxfaceError(f"cannot write into this folder ({e.strerror or e})", out) from None
        from tqdm.auto import tqdm

        steps = 2 + int(check) + (2 * SPEED_ROUNDS if speed else 0)
        try:
            with tqdm(total=steps, desc="export-onnx", unit="step", disable=not progress) as bar:
                def step() -> None:
                    bar.update()
                    for t in tmp.values():  # touched: a live export's temporaries never look left by a killed one
                        with contextlib.suppress(OSError):
                            os.utime(t)

                res = _export(model, out, tmp, opset=opset, check=check, speed=speed, batch=batch, repeat=repeat,
                              provenance=provenance, step=step)
        except OSError as e:  # a full disk: name the file, never the hidden temporary one
            name = next((n for n, t in tmp.items() if e.filename is not None and str(t) == str(e.filename)), None)
            if name is None:  # torch.onnx's writer names no file: the folder, never a bare 'No space left'
                raise VoxfaceError(f"cannot write into this folder ({e.strerror or e})", out) from None
            raise VoxfaceError(f"cannot write file ({e.strerror or e})", out / name) from None
        for name in FILES:  # on the disk before any rename: a power loss cannot leave a renamed empty file
            _finish_file(tmp[name], out / name)
        for name in FILES:
            os.replace(tmp[name], out / name)
        done = True
        _fsync_folder(out)
        for name in FILES:  # what an export killed mid-way (SIGKILL: the OOM killer at a large --batch) left
            remove_stale_temporaries(out / name)
    finally:
        for t in tmp.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(t)
        if not done:  # folders this call made for a failed export go too (rmdir: only if empty)
            _remove_folders(made)
    return res


def _check_graph_sizes(model: "VoxFace", checkpoint: str | Path | None) -> None:
    """:class:`VoxfaceError` when the encoder's or the decoder's weights (parameters and buffers, as
    the float32 copy that is exported holds them) exceed :data:`MAX_GRAPH_WEIGHT_BYTES`: such a graph
    cannot be one ONNX file. torch's exporter then wrote every weight as a loose file named after it
    into the output folder (``encoder.trunk.0.weight``, 2 GB of them, left there) and the export
    failed minutes later in protobuf's ``EncodeError: Failed to serialize proto``."""
    for name in ("encoder", "decoder"):
        part = getattr(model, name)
        size = sum(t.numel() for t in (*part.parameters(), *part.buffers())) * 4
        if size > MAX_GRAPH_WEIGHT_BYTES:
            raise VoxfaceError(f"the {name}'s weights take {size / 1e9:.2f} GB as float32: one ONNX graph holds at "
                               f"most {MAX_GRAPH_WEIGHT_BYTES / 1e9:.2f} GB (a protobuf message is at most 2 GiB) and "
                               "voxface writes no external-data graphs; export a smaller model", checkpoint)


def _provenance(model: "VoxFace", checkpoint: str | Path | None) -> dict[str, Any]:
    """:func:`voxface.reconstruct.model_provenance` as JSON values: the file ``model`` was loaded from
    (``model.source``, nothing read), or ``checkpoint`` (read and hashed here) when that is another
    file or the weights changed since loading. An unreadable ``checkpoint`` is a ``CheckpointError``."""
    from .reconstruct import model_provenance

    prov = model_provenance(model)
    if checkpoint is not None and prov.get("checkpoint") != str(Path(checkpoint).expanduser().resolve()):
        prov = model_provenance(model, checkpoint, digest=str(prov["model_sha256"]))
    return {k: v.item() for k, v in prov.items()}


def _new_temporary(tmp: Path, final: Path) -> None:
    """Create ``tmp`` empty with the permission bits of ``final``, the file it is to replace
    (:func:`voxface.mesh._keep_mode`, as every atomic write: a graph made private with ``chmod 600``
    became ``644`` at the next export); the writers (``torch.onnx.export``, ``onnx.save``,
    ``write_text``) then truncate it and keep them, so the weights are never readable while written.
    The owner may write it meanwhile: the writers reopen it by name, and an earlier graph made read-only
    (``chmod 444``) failed the export with 'Permission denied'; :func:`_finish_file` gives it
    ``final``'s bits exactly before the rename."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        _keep_mode(fd, final)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if not mode & stat.S_IWUSR:
            os.chmod(fd, mode | stat.S_IWUSR)
    finally:
        os.close(fd)


def _finish_file(path: Path, final: Path) -> None:
    """Give ``path`` the permission bits of ``final`` (the file it is renamed over, if any: a read-only
    graph stays read-only) and flush its data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _keep_mode(fd, final)
        os.fsync(fd)
    finally:
        os.close(fd)


def _export(model: "VoxFace", out: Path, tmp: dict[str, Path], *, opset: int, check: bool, speed: bool,
            batch: int, repeat: int, provenance: dict[str, Any],
            step: Callable[[], Any] = lambda: None) -> OnnxExport:
    """:func:`export_onnx` into the temporaries ``tmp`` (file name -> path); the result names the final paths.
    ``step`` is called after each graph, the parity check and each timed round."""
    import torch

    from .latent import expression_names

    m = copy.deepcopy(model).float().cpu().eval()
    m.refiner = None  # not part of the two graphs
    enc, dec = _graphs(m)
    s = m.image_size
    cfg = m.config.encoder
    gen = torch.Generator().manual_seed(0)  # the example inputs leave the caller's random stream alone
    img = torch.rand(2, 3, s, s, generator=gen)
    z_id, z_exp = torch.randn(2, cfg.z_id, generator=gen), torch.randn(2, cfg.z_exp, generator=gen)
    paths = tmp["encoder.onnx"], tmp["decoder.onnx"]
    for name in ("encoder.onnx", "decoder.onnx"):
        _new_temporary(tmp[name], out / name)
    with warnings.catch_warnings(), torch.no_grad(), _export_errors(opset):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer chatter
        torch.onnx.export(enc, (img,), str(paths[0]), input_names=["image"], output_names=["z_id", "z_exp", "pose"],
                          dynamic_axes={k: {0: "batch"} for k in ("image", "z_id", "z_exp", "pose")},
                          opset_version=int(opset), dynamo=False)
        step()
        torch.onnx.export(dec, (z_id, z_exp), str(paths[1]), input_names=["z_id", "z_exp"], output_names=["logits"],
                          dynamic_axes={k: {0: "batch"} for k in ("z_id", "z_exp", "logits")},
                          opset_version=int(opset), dynamo=False)
        step()
    R = m.config.decoder.resolution
    sig = {"encoder": {"inputs": {"image": ["B", 3, s, s]},
                       "outputs": {"z_id": ["B", cfg.z_id], "z_exp": ["B", cfg.z_exp], "pose": ["B", 9]}},
           "decoder": {"inputs": {"z_id": ["B", cfg.z_id], "z_exp": ["B", cfg.z_exp]},
                       "outputs": {"logits": ["B", 1, R, R, R]}},
           "image": IMAGE_DOC, "pose": POSE_DOC, "logits": LOGITS_DOC,
           "grid": {"resolution": R, "side_mm": m.grid.side_mm, "center_mm": list(m.grid.center_mm)}}
    meta = {"voxface_version": __version__, "image": IMAGE_DOC, "pose": POSE_DOC, "logits": LOGITS_DOC,
            "grid": json.dumps(sig["grid"]),  # the weights, not where they lay: the graphs are handed on
            "provenance": json.dumps({k: v for k, v in provenance.items() if k != "checkpoint"})}
    if getattr(model, "refiner", None) is not None:
        sig["refinement_head"] = (f"not exported: the decoder graph gives the {R}^3 logits, not the finer grids the "
                                  "head fills (reconstruct --resolution 128 --upsample head)")
    names = expression_names(m)  # z_exp[j] is blendshape j's weight (the shipped model: ICT-FaceKit's ARKit names)
    if names is not None:
        sig["expression_names"] = names
        meta["expression_names"] = json.dumps(names)
    for path, g in zip(paths, ("encoder", "decoder")):
        _declare(path, sig[g]["outputs"], {**meta, "graph": g})
    res = OnnxExport(out / "encoder.onnx", out / "decoder.onnx", int(opset), signature=sig,
                     checkpoint=provenance.get("checkpoint"), provenance=provenance)
    if check:
        res.max_abs_diff = check_onnx(m, out, files=paths)
        step()
        bad = {k: v for k, v in res.max_abs_diff.items() if not v <= 1e-4}
        if bad:
            nan = " (nan: a value that is not a number on one side)" if any(v != v for v in bad.values()) else ""
            raise VoxfaceError(f"onnxruntime differs from PyTorch by more than 1e-4: {bad}{nan}", out)
    if speed:
        res.speed = onnx_speed(m, out, batch=batch, repeat=repeat, files=paths, on_round=step)
    for name in ("onnx.json", "onnx.md"):
        _new_temporary(tmp[name], out / name)
    tmp["onnx.json"].write_text(json.dumps(res.to_dict(), indent=1))
    tmp["onnx.md"].write_text(_markdown(res))
    return res


#: What the graphs take and give, recorded in onnx.json and in each graph's metadata.
IMAGE_DOC = ("float32 RGB in [0, 1], (B, 3, S, S), channels first, no normalisation (the graph does it): the "
             "face framed as voxface's detector crops it (voxface.detect.detect_and_crop), resized to S")
POSE_DOC = ("raw (B, 9) = (a1, a2, log_s, tx, ty), a 6D rotation, the log scale and the translation of a weak "
            "perspective: the rotation R (canonical frame to OpenCV camera axes: x right, y down, z forward) has the "
            "columns b1 = a1 / |a1|, b2 = a2 - (b1 . a2) b1 normalised, b3 = b1 x b2 (a1 = pose[0:3], a2 = "
            "pose[3:6]); s = exp(pose[6]); a canonical point X (mm) lands at crop coordinates s * (R X)[:2] / "
            f"{HEAD_RMS_RADIUS_MM:g} + (tx, ty), where -1 and 1 are the crop's edges (x right, y down, 0 the centre; "
            "pixel = crop origin + (c + 1) * side / 2) (voxface.models.decode_pose turns it into a Pose)")
LOGITS_DOC = ("occupancy logits (B, 1, R, R, R) laid out (D, H, W) = (z, y, x) on the canonical grid: cell "
              "(d, h, w) has its centre at center_mm - side_mm / 2 + (index + 0.5) * side_mm / R along (z, y, x) "
              "(grid: R, side_mm, center_mm (x, y, z)); canonical mm, x to the subject's left, y up, z out of the "
              "face; level 0 = probability 0.5 (voxface.extract_mesh meshes it)")


def _declare(path: str | Path, outputs: dict[str, list], metadata: dict[str, str]) -> None:
    """Write the outputs' full shapes (the exporter leaves the dimensions after its reshapes
    unnamed; ``B`` stays the dynamic batch axis) and ``metadata`` into the graph at ``path``."""
    import onnx

    g = onnx.load(str(path))
    for out in g.graph.output:
        dims = out.type.tensor_type.shape.dim
        for d, want in zip(dims, outputs.get(out.name, [])):
            if want == "B":
                d.dim_param = "batch"
            else:
                d.dim_value = int(want)
    for k, v in metadata.items():
        g.metadata_props.add(key=k, value=str(v))
    onnx.save(g, str(path))


@contextlib.contextmanager
def _export_errors(opset: int) -> Iterator[None]:
    """Turn an error of ``torch.onnx.export`` into a one-line :class:`VoxfaceError`."""
    try:
        yield
    except (VoxfaceError, OSError, KeyboardInterrupt):
        raise
    except Exception as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        raise VoxfaceError(f"torch.onnx.export failed at opset {opset}: {type(e).__name__}: {first}") from e


def check_onnx(model: "VoxFace", out_dir: str | Path, batch_sizes: tuple[int, ...] = (1, 3), seed: int = 0, *,
               files: tuple[str | Path, str | Path] | None = None) -> dict[str, float]:
    """Largest absolute difference per output between onnxruntime and PyTorch (CPU, float32).

    Random crops ``(B, 3, S, S)`` in [0, 1] go through ``encoder.onnx``; the PyTorch latents of
    the same crops go through ``decoder.onnx``. Returns ``{"z_id", "z_exp", "pose", "logits"}``:
    ``nan`` where a value is not a number on either side (or an infinity on both).
    ``files``: the (encoder, decoder) graphs to run instead of those in ``out_dir``. An output of
    another shape than PyTorch's (a graph that does not follow the batch), a missing or unreadable
    graph, graphs exported from another model (other image size or code lengths), of inputs other
    than float32 or of a fixed batch (no dynamic batch axis), and ``batch_sizes``
    that are no whole numbers of at least 1, or none, are a one-line :class:`VoxfaceError`; a
    ``model`` that is not a :class:`voxface.VoxFace` an ``InputTypeError``.
    """
    import torch

    m = _cpu_eval(_voxface(model))
    sizes = tuple(batch_sizes)  # (0,) was onnxruntime's multi-line Reshape failure, () parity 0 of nothing checked
    if not sizes or not all(_whole(b) and b >= 1 for b in sizes):
        raise InputError(f"batch_sizes {batch_sizes!r}: the parity check needs one or more whole numbers of at "
                           "least 1 (onnxruntime fails on an empty batch)")
    enc_s, dec_s = _sessions(m, out_dir, files)
    gen = torch.Generator().manual_seed(seed)
    diff = dict.fromkeys(("z_id", "z_exp", "pose", "logits"), 0.0)
    s = m.image_size
    for b in map(int, sizes):
        img = torch.rand(b, 3, s, s, generator=gen)
        with torch.inference_mode():
            ref = m.encoder(img)
            logits = m.decode(ref[0], ref[1])
        got = enc_s.run(None, {"image": img.numpy()})
        lg = dec_s.run(None, {"z_id": ref[0].numpy(), "z_exp": ref[1].numpy()})[0]
        for k, r, g in zip(("z_id", "z_exp", "pose", "logits"), (*ref, logits), (*got, lg)):
            if tuple(g.shape) != tuple(r.shape):  # a graph whose batch axis is not dynamic (a broadcast error)
                raise VoxfaceError(f"onnxruntime gives {k} of shape {tuple(g.shape)} for a batch of {b}; PyTorch "
                                   f"{tuple(r.shape)}", out_dir)
            # np.maximum, not max(): max(0.0, nan) is 0.0, so a graph giving NaN passed as parity 0
            diff[k] = float(np.maximum(diff[k], np.abs(r.numpy() - g).max()))
    return diff


def _voxface(model: Any) -> "VoxFace":
    """``model`` as a :class:`voxface.VoxFace` (the one inside a ``torch.compile`` or ``DataParallel``
    wrapper), else an :class:`~voxface.errors.InputTypeError` (a checkpoint's path, say)."""
    from torch import nn

    from .checkpoint import _unwrap
    from .errors import InputTypeError
    from .models import VoxFace

    if isinstance(model, nn.Module):
        model = _unwrap(model)
    if not isinstance(model, VoxFace):
        raise InputTypeError(f"model must be a voxface.VoxFace (voxface.load_model(path) loads a checkpoint), got "
                             f"{type(model).__name__}")
    return model


def _sessions(m: "VoxFace", out_dir: str | Path, files: tuple[str | Path, str | Path] | None) -> tuple[Any, Any]:
    """onnxruntime sessions of the encoder and decoder graphs, checked against ``m``: a missing or
    unreadable graph, graphs exported from another model (their inputs' names or sizes), inputs of
    another type than float32, or a fixed batch (no dynamic batch axis), is one :class:`VoxfaceError`
    line (onnxruntime's own error was several, and its 'invalid dimensions' at run time read as an
    out-of-memory hint in :func:`onnx_speed`)."""
    s, cfg = m.image_size, m.config.encoder
    want = ({"image": [3, s, s]}, {"z_id": [cfg.z_id], "z_exp": [cfg.z_exp]})
    sessions = []
    for path, inputs in zip(_graph_files(out_dir, files), want):
        if not path.is_file():
            raise VoxfaceError("no such ONNX graph" + (" (a folder)" if path.is_dir() else "")
                               + "; export it first: voxface export-onnx CKPT -o DIR", path)
        try:
            sess = ort_session(path)
        except VoxfaceError:
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime's own (InvalidProtobuf, Fail...)
            first = " ".join(str(e).split())[:300]
            raise VoxfaceError(f"onnxruntime cannot load this graph ({type(e).__name__}: {first})", path) from None
        got = {i.name: list(i.shape[1:]) for i in sess.get_inputs()}
        if got != inputs:
            fmt = lambda d: ", ".join(f"{k} (B, {', '.join(map(str, v))})" for k, v in d.items())  # noqa: E731
            raise VoxfaceError(f"is a graph of another model: it takes {fmt(got)}; this model takes {fmt(inputs)}", path)
        types = {i.name: i.type for i in sess.get_inputs() if i.type != "tensor(float)"}
        if types:  # a float16 graph: onnxruntime's 'Unexpected input data type' at run time
            raise VoxfaceError("takes " + ", ".join(f"{k} as {v}" for k, v in types.items()) + "; voxface's "
                               "graphs take float32 (tensor(float)): export them with voxface export-onnx", path)
        fixed = sorted({i.shape[0] for i in sess.get_inputs() if isinstance(i.shape[0], int)})
        if fixed:  # exported without a dynamic batch axis: onnxruntime's 'invalid dimensions' at run time
            raise VoxfaceError(f"takes a fixed batch of {', '.join(map(str, fixed))}, no dynamic batch axis as "
                               "voxface's graphs have: export them with voxface export-onnx", path)
        sessions.append(sess)
    return sessions[0], sessions[1]


def _cpu_eval(model: "VoxFace") -> "VoxFace":
    """``model`` itself when it is a float32 CPU model in eval mode, else such a copy."""
    p = next(model.parameters())
    if p.device.type == "cpu" and p.dtype.is_floating_point and p.dtype.itemsize == 4 and not model.training:
        return model
    return copy.deepcopy(model).float().cpu().eval()


def _median(fn: Any, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _graph_files(out_dir: str | Path, files: tuple[str | Path, str | Path] | None) -> tuple[Path, Path]:
    if files is not None:
        return Path(files[0]), Path(files[1])
    return Path(out_dir) / "encoder.onnx", Path(out_dir) / "decoder.onnx"


def onnx_speed(model: "VoxFace", out_dir: str | Path, *, batch: int = 4, repeat: int = 5,
               files: tuple[str | Path, str | Path] | None = None,
               on_round: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Seconds per batch of PyTorch and onnxruntime (CPU, same thread count), measured in
    :data:`SPEED_ROUNDS` interleaved rounds, each the median of ``ceil(repeat / SPEED_ROUNDS)``
    calls after a warm-up call; each runtime's fastest round is reported.

    Returns ``{"batch", "threads", "rounds", "torch_s": {encoder, decoder}, "onnxruntime_s": {...},
    "speedup": {...}, "speedup_range": {...}}`` where ``speedup = torch / onnxruntime`` (> 1:
    onnxruntime is faster) of the fastest rounds and ``speedup_range`` the ``[min, max]`` of the
    rounds' own ratios.
    ``files``: the (encoder, decoder) graphs to run instead of those in ``out_dir``; ``on_round``:
    called after each round of each graph (a progress bar's update).
    """
    batch = check_batch(batch)
    m = _cpu_eval(_voxface(model))
    enc_s, dec_s = _sessions(m, out_dir, files)  # graphs of another model: said so, not "out of memory"
    with _run_errors(batch):
        return _speed(m, enc_s, dec_s, batch, repeat, on_round or (lambda: None))


def _speed(m: "VoxFace", enc_s: Any, dec_s: Any, batch: int, repeat: int,
           on_round: Callable[[], Any]) -> dict[str, Any]:
    import torch

    s = m.image_size
    img = torch.rand(batch, 3, s, s, generator=torch.Generator().manual_seed(0))  # not the caller's random stream
    with torch.inference_mode():
        z = m.encoder(img)
    zi, ze = z[0].numpy(), z[1].numpy()

    def t_enc():
        with torch.inference_mode():
            m.encoder(img)

    def t_dec():
        with torch.inference_mode():
            m.decode(z[0], z[1])

    res: dict[str, Any] = {"batch": int(batch), "threads": torch.get_num_threads(), "rounds": SPEED_ROUNDS,
                           "torch_s": {}, "onnxruntime_s": {}, "speedup_range": {}}
    for name, ft, fo in (("encoder", t_enc, lambda: enc_s.run(None, {"image": img.numpy()})),
                         ("decoder", t_dec, lambda: dec_s.run(None, {"z_id": zi, "z_exp": ze}))):
        tt, to = [], []
        calls = max(1, -(-int(repeat) // SPEED_ROUNDS))  # ``repeat`` calls in all, split between the rounds
        for _ in range(SPEED_ROUNDS):  # interleaved, so that drifting load affects both runtimes alike
            tt.append(_median(ft, calls))
            to.append(_median(fo, calls))
            on_round()
        res["torch_s"][name], res["onnxruntime_s"][name] = min(tt), min(to)
        ratios = [a / b for a, b in zip(tt, to)]  # each round's own ratio: how far the machine's noise moves it
        res["speedup_range"][name] = [min(ratios), max(ratios)]
    res["speedup"] = {k: res["torch_s"][k] / res["onnxruntime_s"][k] for k in res["torch_s"]}
    return res


#: Interleaved rounds of :func:`onnx_speed` (each the median of ``ceil(repeat / SPEED_ROUNDS)`` calls per runtime).
SPEED_ROUNDS = 3


def _run_errors(batch: int) -> Any:
    """Failures of the timed runs (out of memory at a large batch) as one line naming the runtime
    that failed: PyTorch's (its allocator's RuntimeError) was called onnxruntime's."""
    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except VoxfaceError:
            raise
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own (Fail, RuntimeException...)
            who = "onnxruntime" if type(e).__module__.startswith("onnxruntime") else "PyTorch"
            first = " ".join(str(e).split())[:300]
            raise VoxfaceError(f"{who} failed at batch {batch} ({type(e).__name__}: {first}); a smaller "
                               "--batch needs less memory") from None
    return guard()


def _markdown(res: OnnxExport) -> str:
    lines = ["# voxface ONNX export", "",
             f"`{res.encoder.name}` and `{res.decoder.name}`, opset {res.opset}, dynamic batch axis "
             "(a batch of at least 1: onnxruntime fails on an empty batch).", "",
             "| graph | inputs | outputs |", "|---|---|---|"]
    for g in ("encoder", "decoder"):
        sg = res.signature[g]
        fmt = lambda d: ", ".join(f"`{k}` {tuple(v)}".replace("'", "") for k, v in d.items())  # noqa: E731
        lines.append(f"| {g} | {fmt(sg['inputs'])} | {fmt(sg['outputs'])} |")
    if res.signature.get("refinement_head"):
        lines += ["", f"The refinement head is {res.signature['refinement_head']}."]
    if res.max_abs_diff:
        lines += ["", "Parity with PyTorch (largest absolute difference, batch 1 and 3): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in res.max_abs_diff.items()) + "."]
    if res.speed:
        sp = res.speed
        rng = sp.get("speedup_range", {})
        lines += ["", f"Speed on the CPU, batch {sp['batch']}, {sp['threads']} threads, both measured in the same run "
                  f"({sp.get('rounds', 2)} interleaved rounds; each runtime's fastest round; the range is the "
                  "rounds' own ratios: a wide one means a busy machine, measure again):", "",
                  f"| graph | PyTorch ms a batch of {sp['batch']} | onnxruntime ms a batch of {sp['batch']} | speed-up | "
                  "rounds' range |", "|---|---|---|---|---|"]
        for k in sp["torch_s"]:
            r = rng.get(k)
            lines.append(f"| {k} | {sp['torch_s'][k] * 1e3:.1f} | {sp['onnxruntime_s'][k] * 1e3:.1f} | "
                         f"{sp['speedup'][k]:.2f}x | " + (f"{r[0]:.2f}-{r[1]:.2f}x |" if r else "- |"))
    return "\n".join(lines) + "\n"
