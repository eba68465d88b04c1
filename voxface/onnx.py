"""ONNX export: the encoder and decoder as two graphs, checked against PyTorch in onnxruntime.

Two files, both with a dynamic batch axis:

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
:mod:`voxface.frame`). :func:`export_onnx` also writes ``onnx.json`` and ``onnx.md``: the graphs'
signatures, the largest absolute difference to PyTorch at two batch sizes, and the speed of
onnxruntime against PyTorch measured in the same run (CPU, same thread count).

Needs the ``onnx`` extra (``pip install 'voxface[onnx]'``: onnx and onnxruntime). The export uses
torch's TorchScript-based exporter (``dynamo=False``), which needs no further package.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VoxfaceError

if TYPE_CHECKING:  # pragma: no cover
    from .models import VoxFace

__all__ = ["DEFAULT_OPSET", "OnnxExport", "export_onnx", "check_onnx", "onnx_speed", "ort_session"]

#: ONNX opset of the exported graphs: 20, the first whose GridSample takes volumes (the ``deform``
#: decoder samples its template with it); onnxruntime runs it from 1.16 on.
DEFAULT_OPSET = 20


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
    """

    encoder: Path
    decoder: Path
    opset: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    speed: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"], d["decoder"] = str(self.encoder), str(self.decoder)
        return d


def _need_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - depends on the install
        raise VoxfaceError("onnxruntime is not installed; pip install 'voxface[onnx]'") from None
    return ort


def ort_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for ``path`` (``threads`` intra-op threads; default: torch's)."""
    import torch

    ort = _need_ort()
    so = ort.SessionOptions()
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
                speed: bool = True, batch: int = 4, repeat: int = 5) -> OnnxExport:
    """Write ``out_dir/encoder.onnx`` and ``out_dir/decoder.onnx`` (dynamic batch), check and time them.

    Args:
        model: a :class:`voxface.VoxFace` (any device; a float32 CPU copy is exported).
        out_dir: folder to write (created); also gets ``onnx.json`` and ``onnx.md``.
        opset: ONNX opset.
        check: compare onnxruntime with PyTorch at batch sizes 1 and 3 (:func:`check_onnx`)
            and raise :class:`VoxfaceError` if any output differs by more than ``1e-4``.
        speed: time both runtimes at ``batch`` (:func:`onnx_speed`, median of ``repeat``).

    Returns:
        :class:`OnnxExport`.
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).float().cpu().eval()
    m.refiner = None  # not part of the two graphs
    enc, dec = _graphs(m)
    s = m.image_size
    cfg = m.config.encoder
    img = torch.rand(2, 3, s, s)
    z_id, z_exp = torch.randn(2, cfg.z_id), torch.randn(2, cfg.z_exp)
    paths = out / "encoder.onnx", out / "decoder.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer chatter
        torch.onnx.export(enc, (img,), str(paths[0]), input_names=["image"], output_names=["z_id", "z_exp", "pose"],
                          dynamic_axes={k: {0: "batch"} for k in ("image", "z_id", "z_exp", "pose")},
                          opset_version=int(opset), dynamo=False)
        torch.onnx.export(dec, (z_id, z_exp), str(paths[1]), input_names=["z_id", "z_exp"], output_names=["logits"],
                          dynamic_axes={k: {0: "batch"} for k in ("z_id", "z_exp", "logits")},
                          opset_version=int(opset), dynamo=False)
    R = m.config.decoder.resolution
    sig = {"encoder": {"inputs": {"image": ["B", 3, s, s]},
                       "outputs": {"z_id": ["B", cfg.z_id], "z_exp": ["B", cfg.z_exp], "pose": ["B", 9]}},
           "decoder": {"inputs": {"z_id": ["B", cfg.z_id], "z_exp": ["B", cfg.z_exp]},
                       "outputs": {"logits": ["B", 1, R, R, R]}},
           "image": "float32 RGB in [0, 1], (B, 3, S, S)", "logits": "(D, H, W) = (z, y, x), level 0 = probability 0.5",
           "grid": {"resolution": R, "side_mm": m.grid.side_mm, "center_mm": list(m.grid.center_mm)}}
    res = OnnxExport(paths[0], paths[1], int(opset), signature=sig)
    if check:
        res.max_abs_diff = check_onnx(m, out)
        bad = {k: v for k, v in res.max_abs_diff.items() if not v <= 1e-4}
        if bad:
            raise VoxfaceError(f"onnxruntime differs from PyTorch by more than 1e-4: {bad}", out)
    if speed:
        res.speed = onnx_speed(m, out, batch=batch, repeat=repeat)
    from .mesh import atomic_write_bytes

    atomic_write_bytes(out / "onnx.json", json.dumps(res.to_dict(), indent=1).encode())
    atomic_write_bytes(out / "onnx.md", _markdown(res).encode())
    return res


def check_onnx(model: "VoxFace", out_dir: str | Path, batch_sizes: tuple[int, ...] = (1, 3), seed: int = 0) -> dict[str, float]:
    """Largest absolute difference per output between onnxruntime and PyTorch (CPU, float32).

    Random crops ``(B, 3, S, S)`` in [0, 1] go through ``encoder.onnx``; the PyTorch latents of
    the same crops go through ``decoder.onnx``. Returns ``{"z_id", "z_exp", "pose", "logits"}``.
    """
    import torch

    out = Path(out_dir)
    m = _cpu_eval(model)
    enc_s, dec_s = ort_session(out / "encoder.onnx"), ort_session(out / "decoder.onnx")
    gen = torch.Generator().manual_seed(seed)
    diff = dict.fromkeys(("z_id", "z_exp", "pose", "logits"), 0.0)
    s = m.image_size
    for b in batch_sizes:
        img = torch.rand(b, 3, s, s, generator=gen)
        with torch.inference_mode():
            ref = m.encoder(img)
            logits = m.decode(ref[0], ref[1])
        got = enc_s.run(None, {"image": img.numpy()})
        for k, r, g in zip(("z_id", "z_exp", "pose"), ref, got):
            diff[k] = max(diff[k], float(np.abs(r.numpy() - g).max()))
        lg = dec_s.run(None, {"z_id": ref[0].numpy(), "z_exp": ref[1].numpy()})[0]
        diff["logits"] = max(diff["logits"], float(np.abs(logits.numpy() - lg).max()))
    return diff


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


def onnx_speed(model: "VoxFace", out_dir: str | Path, *, batch: int = 4, repeat: int = 5) -> dict[str, Any]:
    """Median seconds per batch of PyTorch and onnxruntime (CPU, same thread count), measured interleaved.

    Returns ``{"batch", "threads", "torch_s": {encoder, decoder}, "onnxruntime_s": {...},
    "speedup": {...}}`` where ``speedup = torch / onnxruntime`` (> 1: onnxruntime is faster).
    """
    import torch

    out = Path(out_dir)
    m = _cpu_eval(model)
    enc_s, dec_s = ort_session(out / "encoder.onnx"), ort_session(out / "decoder.onnx")
    s = m.image_size
    img = torch.rand(batch, 3, s, s)
    with torch.inference_mode():
        z = m.encoder(img)
    zi, ze = z[0].numpy(), z[1].numpy()

    def t_enc():
        with torch.inference_mode():
            m.encoder(img)

    def t_dec():
        with torch.inference_mode():
            m.decode(z[0], z[1])

    res: dict[str, Any] = {"batch": int(batch), "threads": torch.get_num_threads(), "torch_s": {}, "onnxruntime_s": {}}
    for name, ft, fo in (("encoder", t_enc, lambda: enc_s.run(None, {"image": img.numpy()})),
                         ("decoder", t_dec, lambda: dec_s.run(None, {"z_id": zi, "z_exp": ze}))):
        tt, to = [], []
        for _ in range(2):  # interleave the two runtimes so drifting load affects both alike
            tt.append(_median(ft, max(1, repeat // 2)))
            to.append(_median(fo, max(1, repeat // 2)))
        res["torch_s"][name], res["onnxruntime_s"][name] = min(tt), min(to)
    res["speedup"] = {k: res["torch_s"][k] / res["onnxruntime_s"][k] for k in res["torch_s"]}
    return res


def _markdown(res: OnnxExport) -> str:
    lines = ["# voxface ONNX export", "",
             f"`{res.encoder.name}` and `{res.decoder.name}`, opset {res.opset}, dynamic batch axis.", "",
             "| graph | inputs | outputs |", "|---|---|---|"]
    for g in ("encoder", "decoder"):
        sg = res.signature[g]
        fmt = lambda d: ", ".join(f"`{k}` {tuple(v)}".replace("'", "") for k, v in d.items())  # noqa: E731
        lines.append(f"| {g} | {fmt(sg['inputs'])} | {fmt(sg['outputs'])} |")
    if res.max_abs_diff:
        lines += ["", "Parity with PyTorch (largest absolute difference, batch 1 and 3): "
                  + ", ".join(f"{k} {v:.2e}" for k, v in res.max_abs_diff.items()) + "."]
    if res.speed:
        sp = res.speed
        lines += ["", f"Speed on the CPU, batch {sp['batch']}, {sp['threads']} threads, both measured in the same run:", "",
                  "| graph | PyTorch ms | onnxruntime ms | speed-up |", "|---|---|---|---|"]
        for k in sp["torch_s"]:
            lines.append(f"| {k} | {sp['torch_s'][k] * 1e3:.1f} | {sp['onnxruntime_s'][k] * 1e3:.1f} | {sp['speedup'][k]:.2f}x |")
    return "\n".join(lines) + "\n"
