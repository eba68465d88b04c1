"""High-resolution occupancy at surface cost: a refinement head and coarse-to-fine extraction.

The decoder predicts logits on an ``R^3`` grid (64^3 for the shipped model). Refining them to
128^3 or 256^3 densely would cost ``R^3`` evaluations; the surface only needs ``~R^2``.

**Refinement head** (:class:`RefineHead`): a small MLP that predicts the occupancy logit at any
canonical point ``p`` from

* the decoder's last feature volume ``(B, C, R/s, R/s, R/s)`` (:meth:`ConvVoxelDecoder.features
  <voxface.models.decoder.ConvVoxelDecoder.features>`), trilinearly sampled at ``p``
  (``grid_sample``, ``align_corners=False``: the convention of :meth:`voxface.frame.Grid.mm_to_unit`);
* a periodic encoding of where ``p`` lies inside its feature cell (``sin``/``cos`` of
  ``2 pi k t`` with ``t`` the continuous cell index, ``k = 1..pe_freqs``; periodic, so continuous
  across cell boundaries);
* the coarse logit at ``p`` (trilinear interpolation of the decoder's ``R^3`` logits).

It predicts a *correction* added to the coarse logit, and its last layer starts at zero, so an
untrained head is exactly trilinear upsampling. It is trained as a second stage with the encoder
and decoder frozen (:func:`train_refiner`, ``voxface refine-train``) on exact occupancy at points
near the true and the predicted surfaces, stored in the checkpoint as ``model.refiner`` with its
config (``model.config.refine``), so :func:`voxface.load_model` rebuilds it.

**Coarse-to-fine extraction** (:func:`mise`, after Occupancy Networks' MISE,
``onet/generation.py``): take the coarse grid (all of it is known: the decoder computes it
densely), mark the cubes between neighbouring samples whose corners straddle the threshold (in
logit space), grow that set by ``dilate`` cubes, double the resolution and evaluate the head only
at the new cell centres that fall in marked cubes; every other new point is filled by trilinear
upsampling of the previous level (a cube whose corners agree gives their sign to all of it). Repeat
(1-3 levels, x2 each) up to 128^3 / 256^3, then run marching cubes on the result
(:func:`voxface.mesh.extract_mesh` with :attr:`RefineResult.grid`). Grids use cell centres
(:mod:`voxface.frame`), so levels do not share points: each point is evaluated at most once, and
each level's values steer the next. A coarser sample then lies *inside* a finer cube, not at its
corner; where that cube's corners all lie on the other side (a part thinner than the finer spacing,
seen at the coarser level), it is refined too, as Occupancy Networks' shared corner would make it
(:func:`_hidden_points`), and about it at every later level until a finer level's samples show it:
a part the 64^3 and 256^3 (or 512^3) grids show but the 128^3 (and 256^3) ones fall between is
not lost. Like every MISE, it cannot see a part that falls between the samples of the decoder's
own grid. :func:`dense` evaluates the same head at every point: the reference MISE is tested against.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import RefineConfig
from .errors import CheckpointError, ConfigError, InputError, InputTypeError, VoxfaceError
from .frame import Grid

if TYPE_CHECKING:  # pragma: no cover
    from .models import VoxFace

__all__ = [
    "RefineConfig", "RefineHead", "RefineResult", "RefineTrainConfig", "RefineTrainResult",
    "add_refine_head", "mise", "dense", "refine_logits", "grid_points_unit", "logit_iou",
    "occupancy_oracle", "train_refiner", "refine_checkpoint", "check_refine_train_config",
]

#: Points per head evaluation chunk on an accelerator (bounds the memory of one call: ~C + 3 x
#: hidden floats each).
DEFAULT_CHUNK = 1 << 16

#: Points per head evaluation chunk on a CPU: a chunk's activations (~0.4 KB a point) then stay in
#: the cache; chunks of 65,536 refined the bundled face to 128^3 20-25% slower on 2 cores.
CPU_CHUNK = 1 << 13


def _chunk_for(device: torch.device | str, chunk: int | None) -> int:
    if chunk is not None:  # 0 or less was one point a call (hundreds of thousands of calls), silently
        from .errors import check_integer as _integer

        return _integer("chunk", chunk, 1)
    return CPU_CHUNK if torch.device(device).type == "cpu" else DEFAULT_CHUNK

Evaluator = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------ the head


class RefineHead(nn.Module):
    """Occupancy logits at arbitrary canonical points from decoder features (see module doc).

    Args:
        cfg: :class:`voxface.config.RefineConfig` (hidden width, depth, encoding frequencies).
        feature_channels: ``C`` of the decoder's feature volume.
        feature_resolution: its side ``R / shuffle`` (cells), for the in-cell encoding.
    """

    def __init__(self, cfg: RefineConfig, feature_channels: int, feature_resolution: int):
        super().__init__()
        for key, low in (("hidden", 1), ("layers", 1), ("pe_freqs", 0)):  # as the config's own check names them
            v = getattr(cfg, key)  # 8.5 was torch's TypeError in nn.Linear, True one layer, '8' a str < int error
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"model.refine.{key} must be a whole number, got {v!r}")
            if v < low:
                raise ConfigError(f"model.refine.{key} must be at least {low}, got {v}")
        self.cfg = cfg
        self.feature_channels = int(feature_channels)
        self.feature_resolution = int(feature_resolution)
        k = torch.arange(1, cfg.pe_freqs + 1, dtype=torch.float32) * (2 * math.pi)
        self.register_buffer("freqs", k, persistent=False)  # derived from the config, not stored
        dims = [self.feature_channels + 1 + 6 * cfg.pe_freqs] + [cfg.hidden] * cfg.layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.SiLU()]
        last = nn.Linear(dims[-1], 1)
        nn.init.zeros_(last.weight)  # start as the identity on the coarse logit (trilinear upsampling)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(*mods, last)

    def encode_points(self, points: torch.Tensor) -> torch.Tensor:
        """``points (..., 3)`` in ``[-1, 1]`` (x, y, z) to their in-cell encoding ``(..., 6 * pe_freqs)``."""
        t = (points + 1.0) * (0.5 * self.feature_resolution) - 0.5  # continuous feature-cell index
        ang = t[..., None] * self.freqs  # (..., 3, k): periodic in t with period 1 (one cell)
        return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)

    def forward(self, features: torch.Tensor, coarse: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Logits at points.

        Args:
            features: ``(B, C, r, r, r)`` decoder features (``r = R / shuffle``).
            coarse: ``(B, 1, R, R, R)`` decoder logits.
            points: ``(B, N, 3)`` in ``[-1, 1]`` cube coordinates, ``(x, y, z)`` order
                (:meth:`voxface.frame.Grid.mm_to_unit`).

        Returns:
            ``(B, N)`` float32 occupancy logits at the points.
        """
        c, d = self.correction(features, coarse, points)
        return (c + d).float()

    def correction(self, features: torch.Tensor, coarse: torch.Tensor,
                   points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of :meth:`forward`'s logits: ``(coarse, delta)``, each ``(B, N)``.

        ``coarse`` is the trilinear interpolation of the decoder's logits at the points, ``delta``
        the head's correction added to it (zero for an untrained head).
        """
        g = points[:, :, None, None, :].to(features.dtype)  # (B, N, 1, 1, 3)
        f = F.grid_sample(features, g, mode="bilinear", padding_mode="border", align_corners=False)
        c = F.grid_sample(coarse.to(features.dtype), g, mode="bilinear", padding_mode="border",
                          align_corners=False)[:, 0, :, 0, 0]  # (B, N)
        x = torch.cat([f[..., 0, 0].transpose(1, 2), torch.tanh(c * 0.25)[..., None],
                       self.encode_points(points.to(features.dtype))], dim=-1)
        return c, self.mlp(x)[..., 0]


def add_refine_head(model: "VoxFace", cfg: RefineConfig | None = None) -> RefineHead:
    """Attach a fresh :class:`RefineHead` to ``model`` (as ``model.refiner``) and record its config.

    ``model.config.refine`` is set to ``cfg`` (default :class:`RefineConfig`), so a checkpoint
    saved afterwards rebuilds the head on load. The head is created on ``model``'s device, in its
    decoder's dtype (float64 for a model cast with ``.double()``). A ``cfg``
    no head can have (``hidden`` or ``layers`` below 1, ``pe_freqs`` below 0) is a
    :class:`~voxface.errors.ConfigError`, and ``model`` (its head and config) is left as it was.
    """
    cfg = cfg or RefineConfig()
    dec = model.decoder
    if not hasattr(dec, "features") or not hasattr(dec, "feature_channels"):
        raise VoxfaceError(f"decoder {type(dec).__name__} exposes no feature volume to refine from")
    shuffle = int(getattr(dec.cfg, "shuffle", 1))
    head = RefineHead(cfg, dec.feature_channels, model.config.decoder.resolution // shuffle)
    # in the decoder's dtype too: float32 weights on a model cast with .double() met float64 features
    # ('mat1 and mat2 must have the same dtype') in refine_logits and train_refiner
    head = head.to(device=model.device, dtype=next(dec.parameters()).dtype)
    model.config = replace(model.config, refine=cfg)  # once the head exists: a saved model rebuilds it
    model.refiner = head
    return model.refiner


# -------------------------------------------------------------------------------- extraction


def grid_points_unit(index: torch.Tensor, resolution: int) -> torch.Tensor:
    """Integer cell indices ``(N, 3)`` in ``(d, h, w)`` order to cell centres ``(N, 3)`` in
    ``[-1, 1]`` cube coordinates, ``(x, y, z)`` order (the :mod:`voxface.frame` convention)."""
    return (index.flip(-1).to(torch.float32) + 0.5) * (2.0 / resolution) - 1.0


def _evaluate_cells(evaluate: Evaluator, flat: torch.Tensor, resolution: int, chunk: int) -> torch.Tensor:
    """``evaluate`` at the cell centres of a row-major ``resolution^3`` grid ``(D, H, W)`` whose flat
    indices are ``flat (N,)``, ``chunk`` points a call: ``(N,)`` float32 on ``flat``'s device. The
    points of one chunk at a time are made: all N points' indices and coordinates at once took a
    sphere's MISE from 64^3 to 512^3 (3.5 million points) from 0.83 to 0.97 GB at its peak."""
    R = int(resolution)
    out = torch.empty(len(flat), dtype=torch.float32, device=flat.device)
    for i in range(0, len(flat), chunk):
        j = flat[i : i + chunk]
        out[i : i + len(j)] = evaluate(grid_points_unit(torch.stack([j // (R * R), j // R % R, j % R], 1), R)
                                       ).reshape(-1).float()
    return out


def _active_cubes(values: torch.Tensor, level: float, dilate: int,
                  hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Cubes between neighbouring samples of ``values (R, R, R)`` whose corners straddle ``level``.

    Returns bool ``(R + 1, R + 1, R + 1)``: cube ``c`` (per axis) spans samples ``c - 1`` and ``c``,
    the outermost cubes reaching past the grid, whose samples there count as outside (below the
    level), as :func:`voxface.mesh.extract_mesh` pads the grid: where the cube cuts the shape, the
    cap that closes the mesh is surface and is refined too (a replicated border left the outermost
    fine layer to interpolation, inside whatever the field). ``hidden (R + 1, R + 1, R + 1)`` bool:
    cubes whose corners agree but that hold a sample of a coarser level on the other side (see
    :func:`mise`); they are active too. Grown by ``dilate`` cubes (Chebyshev).
    """
    from .losses import _dilate

    up = F.pad((values > level)[None, None].float(), (1,) * 6, value=0.0)[0, 0] > 0.5
    act = _box_any(up, 2) & _box_any(~up, 2)  # a corner above the level and one at or below it
    if hidden is not None:
        act |= hidden
    return _dilate(act[None, None], int(dilate))[0, 0] if dilate > 0 else act


def _hidden_cubes(coarse_up: torch.Tensor, fine_up: torch.Tensor) -> torch.Tensor:
    """Cubes of the fine grid ``(2r + 1)^3`` (as :func:`_active_cubes` numbers them) about a coarse
    sample that lies on the other side of the level than the eight fine samples around it
    (:func:`_hidden_points`, :func:`_hidden_point_cubes`). ``coarse_up (r, r, r)`` and
    ``fine_up (2r, 2r, 2r)``: bool, above the level."""
    return _hidden_point_cubes(_hidden_points(coarse_up, fine_up), fine_up.shape[0])


#: Points of coarser levels a fine level has not confirmed (:func:`_hidden_points`): ``lower (M, 3)``
#: long, ``up (M,)`` bool, ``age (M,)`` long.
HiddenPoints = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _hidden_points(coarse_up: torch.Tensor, fine_up: torch.Tensor, carried: HiddenPoints | None = None) -> HiddenPoints:
    """Samples of coarser levels that lie on the other side of the level than the eight samples of
    the fine grid around them: ``(lower (M, 3) long, up (M,) bool, age (M,) long)``: each point's
    lower fine sample per axis ``(d, h, w)`` (the point lies half a fine cell above it, at the
    centre of fine cube ``lower + 1``), whether the point is above the level, and how many levels
    finer than the point's own grid the fine grid is (1 for the coarse grid's samples).

    Grids use cell centres, so levels share no point: coarse sample ``c`` (per axis) lies at the
    centre of fine cube ``2 c + 1``, between fine samples ``2 c`` and ``2 c + 1``. Where all eight
    are outside and the coarse sample inside (a part thinner than the fine spacing, seen at the
    coarse level, or the reverse), the surface crosses that cube twice and no corner shows it.
    Occupancy Networks' MISE, whose levels share their points, keeps refining about such a point
    at every later level, until a finer level's samples about it show the surface; so does this:
    ``carried`` holds the points this function returned for the coarse grid (``lower`` in its
    samples), and those whose eight fine samples are still all on the other side are kept, one
    level older (a plate that the 64^3 and 512^3 grids show and both the 128^3 and 256^3 ones
    fall between was lost when only the coarse grid's own samples were checked). ``coarse_up
    (r, r, r)`` and ``fine_up (2r, 2r, 2r)``: bool, above the level."""
    corners = [fine_up[i::2, j::2, k::2] for i in (0, 1) for j in (0, 1) for k in (0, 1)]  # 8 x (r, r, r)
    any_up, all_up = corners[0].clone(), corners[0].clone()
    for c in corners[1:]:
        any_up |= c
        all_up &= c
    odd = (coarse_up & ~any_up) | (~coarse_up & all_up)
    lower, up = odd.nonzero() * 2, coarse_up[odd]  # the usual case: none
    age = torch.ones(len(lower), dtype=torch.long, device=lower.device)
    if carried is not None and len(carried[0]):
        # a point at x = a + 1/2 in the coarse grid's samples is at 2 x + 1/2 = (2 a + 1) + 1/2 in the fine one's
        a, s = carried[0] * 2 + 1, carried[1]
        around = torch.stack([fine_up[a[:, 0] + i, a[:, 1] + j, a[:, 2] + k]
                              for i in (0, 1) for j in (0, 1) for k in (0, 1)], dim=1)  # (M, 8)
        still = (around != s[:, None]).all(dim=1)
        lower, up = torch.cat([lower, a[still]]), torch.cat([up, s[still]])
        age = torch.cat([age, carried[2][still] + 1])  # one level older
    return lower, up, age


def _hidden_point_cubes(points: HiddenPoints, resolution: int) -> torch.Tensor:
    """The cubes ``(R + 1)^3`` (as :func:`_active_cubes` numbers them, ``R = resolution``) that the
    cells of the hidden points (:func:`_hidden_points`) overlap: a point ``age`` levels coarser than
    this grid has a cell ``2^age`` fine cells wide about cube ``lower + 1``, so the cubes
    ``lower + 1 - 2^(age - 1)`` to ``lower + 1 + 2^(age - 1)`` per axis (for the coarse grid's own
    samples, the cube a point lies in and the cubes next to it: a thin sheet through several coarse
    samples runs on between them)."""
    lower, _, age = points
    hidden = torch.zeros((resolution + 1,) * 3, dtype=torch.bool, device=lower.device)
    for g in torch.unique(age).tolist():
        h = 2 ** (int(g) - 1)
        at = lower[age == g] + 1 + h  # cube lower + 1, h cells of padding each side
        out = torch.zeros((resolution + 1 + 2 * h,) * 3, dtype=torch.bool, device=lower.device)
        out[at[:, 0], at[:, 1], at[:, 2]] = True
        hidden |= _box_any(out, 2 * h + 1)
    return hidden


def _box_any(b: torch.Tensor, k: int) -> torch.Tensor:
    """Whether any value of each ``k x k x k`` window of the bool volume ``b (D, H, W)`` is True
    (valid windows, stride 1: ``(D - k + 1, H - k + 1, W - k + 1)``), one axis at a time: a box is
    the product of three segments, so this is ``max_pool3d(b, k, stride=1)`` with ``3 (k - 1)`` ORs a
    voxel, ~40x faster on a CPU at 128^3."""
    for axis in range(3):
        n = b.shape[axis] - k + 1
        out = b.narrow(axis, 0, n)
        for j in range(1, k):
            out = out | b.narrow(axis, j, n)
        b = out
    return b


def _fine_samples(act: torch.Tensor) -> torch.Tensor:
    """The samples of the grid ``(2r)^3`` twice as fine as ``r^3`` that lie in the cubes ``act``
    (bool ``(r + 1)^3``, as :func:`_active_cubes` numbers them): ``(N,)`` long, their indices into
    the flattened (row-major) fine grid, ascending (a mask's ``nonzero()`` order). Fine sample ``i``
    (per axis) lies at coarse index ``i / 2 - 1/4``, inside cube ``floor(i / 2 - 1/4) + 1 =
    (i + 1) // 2``: cube ``c`` holds fine samples ``2 c - 1`` and ``2 c`` (those inside the grid).
    Built from the active cubes alone, not as a ``(2r)^3`` mask picked from ``act`` by
    ``index_select`` (slow on bool grids: it made a sphere's MISE take about twice as long, from 64^3
    to 512^3 on one shared CPU core 10-21 s against 5-10 s, to 256^3 from 128^3 1.6-1.8 s against
    0.9-1.0 s; the same points and values)."""
    n = 2 * (act.shape[0] - 1)
    two = [torch.stack([2 * c - 1, 2 * c]) for c in act.nonzero().unbind(1)]  # per axis (2, M): the two samples
    inside = [(t >= 0) & (t < n) for t in two]
    flat = ((two[0][:, None, None] * n + two[1][None, :, None]) * n + two[2][None, None]).reshape(-1)
    keep = (inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None]).reshape(-1)
    return torch.sort(flat[keep]).values  # each fine sample lies in one cube: no repeats


@torch.no_grad()  # an extraction: with gradients on, the head's graph at every point was kept (+1.2 GB at 256^3)
def mise(coarse: torch.Tensor, evaluate: Evaluator, levels: int, *, level: float = 0.0, dilate: int = 1,
         chunk: int | None = None) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Coarse-to-fine evaluation of an occupancy field (MISE) from a known coarse grid.

    Runs without gradients (``evaluate`` is called under :func:`torch.no_grad`; the result
    records no graph), as :func:`dense` does.

    Args:
        coarse: ``(R, R, R)`` float logits on the cell centres of an ``R^3`` grid (``(D, H, W)``): a
            tensor (the result is on its device) or a numpy array.
        evaluate: the fine field: ``points (N, 3)`` in ``[-1, 1]`` (x, y, z) to logits ``(N,)``.
        levels: number of doublings; the result is ``(R * 2^levels)^3``.
        level: the threshold in logit space (``log t - log(1 - t)``; 0 for probability 0.5).
        dilate: cubes around the straddling ones that are refined too (0 = exactly MISE's rule:
            cubes whose corners straddle ``level``, and from the second level on those whose corners
            agree while a coarser sample inside them does not, :func:`_hidden_points`; 1 also
            catches surface the fine field moves by up to a cell).
        chunk: points per ``evaluate`` call (default: :data:`CPU_CHUNK` on a CPU, else
            :data:`DEFAULT_CHUNK`).

    Returns:
        ``(logits (R * 2^levels,)^3 float32 on coarse's device, stats)`` where ``stats`` has one
        dict per level: ``resolution``, ``points`` (evaluated), ``active_cubes``, ``seconds``.

    Raises:
        voxface.InputError: ``coarse`` not ``(R, R, R)`` with ``R >= 1``; ``levels`` or ``dilate`` below 0,
            ``chunk`` below 1 (an :class:`~voxface.errors.InputTypeError` when not integers, or when
            ``coarse`` is no array of numbers); a ``level`` that is not finite (NaN refined nothing and
            gave the coarse grid upsampled; a :class:`~voxface.errors.InputTypeError` for a string).
    """
    from .errors import check_finite as _finite, check_integer as _integer

    if not isinstance(coarse, torch.Tensor):  # a numpy grid (RefineResult.logits) was AttributeError: no 'dim'
        try:
            coarse = torch.from_numpy(np.asarray(coarse, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise InputTypeError(f"mise needs a grid of logits (a tensor or an array of numbers): {e}") from None
    if coarse.dim() != 3 or len(set(coarse.shape)) != 1 or coarse.shape[0] < 1:
        raise InputError(f"mise needs a cubic (R, R, R) grid, got {tuple(coarse.shape)}")
    levels, dilate = _integer("levels", levels, 0), _integer("dilate", dilate, 0)  # not truncated, nor -1 as 0
    level = _finite("level", level)  # NaN: no sample above it, no cube straddling it, nothing refined
    values = coarse.float()
    chunk = _chunk_for(values.device, chunk)
    stats: list[dict[str, Any]] = []
    hidden, points = None, None  # cubes to refine about coarser samples the last level did not confirm
    for k in range(levels):
        t0 = time.perf_counter()
        r = values.shape[0]
        act = _active_cubes(values, level, dilate, hidden)
        fine = F.interpolate(values[None, None], scale_factor=2, mode="trilinear", align_corners=False)[0, 0]
        at = _fine_samples(act)
        fine.view(-1)[at] = _evaluate_cells(evaluate, at, 2 * r, chunk).to(fine.dtype)
        if k + 1 < levels:  # surface between a cube's corners, seen coarser: refined at the next level
            points = _hidden_points(values > level, fine > level, points)
            hidden = _hidden_point_cubes(points, 2 * r)
        values = fine
        stats.append({"resolution": 2 * r, "points": int(len(at)), "active_cubes": int(act.sum()),
                      "seconds": time.perf_counter() - t0})
    return values, stats


@torch.no_grad()
def dense(evaluate: Evaluator, resolution: int, *, chunk: int | None = None,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Evaluate a field at every cell centre of a ``resolution^3`` grid (the reference for :func:`mise`),
    without gradients.

    ``evaluate`` maps ``(N, 3)`` points in ``[-1, 1]`` (x, y, z) to ``(N,)`` logits. Returns
    ``(R, R, R)`` float32 logits, ``(D, H, W)``, on ``device`` (where the points are made:
    ``"auto"``, ``"cpu"``, ``"cuda:N"``, ... as :func:`voxface.device.resolve_device` takes them).
    Points are generated one chunk at a time, so memory is ``R^3`` floats plus one chunk. A
    ``resolution`` below 1 is an :class:`~voxface.errors.InputError`, one that is not an integer an
    :class:`~voxface.errors.InputTypeError` (``128.5`` was truncated to a 128^3 grid); a device this
    machine does not know or have is an :class:`~voxface.errors.InputError`.
    """
    from .device import resolve_device
    from .errors import check_integer as _integer

    R = _integer("resolution", resolution, 1)
    device = resolve_device(device)  # "auto" was torch's RuntimeError 'Expected one of cpu, cuda, ...'
    chunk = _chunk_for(device, chunk)
    out = torch.empty(R ** 3, dtype=torch.float32, device=device)
    for i in range(0, R ** 3, chunk):  # not all R^3 indices at once (2 GB at 512^3)
        out[i : i + chunk] = _evaluate_cells(evaluate, torch.arange(i, min(i + chunk, R ** 3), device=device),
                                             R, chunk)
    return out.view(R, R, R)


def logit_iou(a: Any, b: Any, level: float = 0.0) -> float:
    """IoU of ``a > level`` and ``b > level`` (same-shape numpy arrays or tensors); 1.0 when both are empty.
    Grids of different shapes (a 128^3 result against the 64^3 logits) are an
    :class:`~voxface.errors.InputError`: numpy broadcast ``(R, R, 1)`` against ``(R, R, R)`` silently;
    so is a ``level`` that is not finite (NaN left both grids empty: an IoU of 1.0 for any two)."""
    from .errors import check_finite

    level = check_finite("level", level)
    a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().cpu().numpy() if hasattr(b, "detach") else np.asarray(b)
    if a.shape != b.shape:
        raise InputError(f"logit_iou needs two grids of the same shape, got {a.shape} and {b.shape}")
    pa, pb = a > level, b > level
    union = np.count_nonzero(pa | pb)
    return 1.0 if union == 0 else np.count_nonzero(pa & pb) / union


@dataclass
class RefineResult:
    """Logits of one face on a fine grid.

    Attributes:
        logits: ``(R_f, R_f, R_f)`` float32 numpy, ``(D, H, W)``, on :attr:`grid`; feed both to
            :func:`voxface.mesh.extract_mesh`.
        grid: the fine grid (same canonical cube as the model's, ``R_f`` cells per side).
        method: ``"mise"`` or ``"dense"``.
        head: whether the refinement head was evaluated (else the decoder's own function, or the
            coarse logits upsampled trilinearly for a decoder without one: :func:`upsample_method`).
        stats: ``points`` (evaluations of the fine field, all levels: the head's, or else the
            decoder's function's), ``dense_points`` (``R_f^3``), ``levels`` (per level:
            ``resolution``, ``points``, and for ``"mise"`` ``active_cubes`` and ``seconds``;
            ``"dense"`` has one entry, ``resolution`` and ``points``),
            ``seconds`` (refinement only) and ``decode_seconds`` (the decoder, shared by a batch).
    """

    logits: np.ndarray
    grid: Grid
    method: str
    head: bool
    stats: dict[str, Any] = field(default_factory=dict)


#: How :func:`refine_logits` reaches a grid finer than the decoder's (``upsample``): ``"decoder"``,
#: the decoder's own function at the finer points (the template-deformation decoder's continuous
#: field, :meth:`~voxface.models.decoder.DeformVoxelDecoder.logits_at`; trilinear upsampling of the
#: logits for a decoder without one), or ``"head"``, the checkpoint's refinement head.
UPSAMPLE = ("decoder", "head")


def upsample_method(model: "VoxFace", upsample: str = "decoder") -> str:
    """What ``upsample`` evaluates on ``model``: ``"head"`` (asked for, and the model has one),
    ``"decoder"`` (the decoder's continuous function) or ``"trilinear"`` (a decoder without one).
    Raises :class:`~voxface.errors.InputError` for an ``upsample`` not in :data:`UPSAMPLE`."""
    if upsample not in UPSAMPLE:
        raise InputError(f"upsample must be one of {', '.join(UPSAMPLE)}, not {upsample!r}")
    if upsample == "head" and getattr(model, "refiner", None) is not None:
        return "head"
    return "decoder" if hasattr(model.decoder, "logits_at") else "trilinear"


def _evaluator(refiner: RefineHead | None, feats: torch.Tensor, coarse: torch.Tensor,
               decoder: Any = None) -> Evaluator:
    if refiner is None and hasattr(decoder, "logits_at"):  # a continuous decoder: its own function
        return lambda p: decoder.logits_at(feats, p[None].to(feats.device))[0]
    if refiner is None:  # no head: trilinear interpolation of the coarse logits

        def trilinear(p: torch.Tensor) -> torch.Tensor:
            g = p[None, :, None, None, :].to(coarse.dtype)
            return F.grid_sample(coarse, g, mode="bilinear", padding_mode="border", align_corners=False).reshape(-1)

        return trilinear
    return lambda p: refiner(feats, coarse, p[None])[0]


@torch.inference_mode()
def refine_logits(model: "VoxFace", z_id: torch.Tensor, z_exp: torch.Tensor, *, resolution: int | None = None,
                  method: str = "mise", threshold: float = 0.5, dilate: int = 1,
                  chunk: int | None = None, upsample: str = "head") -> list[RefineResult]:
    """Occupancy logits of a batch of latents on a finer grid than the decoder's.

    Args:
        model: a :class:`voxface.VoxFace`; with ``upsample="head"`` (the default here, unlike
            :meth:`VoxFace.reconstruct <voxface.VoxFace.reconstruct>`,
            :func:`voxface.reconstruct.decode_at` and ``voxface reconstruct --resolution``, whose
            default is ``"decoder"``: pass ``upsample="decoder"`` for their surface; the two differ
            on a model with a head, README's model card says where each is better)
            ``model.refiner`` is used when present, otherwise (and with ``"decoder"``) a continuous
            decoder's own function (:meth:`DeformVoxelDecoder.logits_at
            <voxface.models.decoder.DeformVoxelDecoder.logits_at>`: the template sampled through the
            warp at the finer points, which is not the coarse logits upsampled) or else the coarse
            logits upsampled trilinearly (same extraction, no new detail).
        z_id: ``(B, D_id)``; z_exp: ``(B, D_exp)``: checked and cast as :meth:`VoxFace.decode
            <voxface.VoxFace.decode>` does (any device, any float dtype, numpy arrays; a wrong shape
            or NaN codes are an :class:`~voxface.errors.InputError`).
        resolution: cells per side of the result, ``R * 2^k`` with ``k >= 1``
            (``None``: ``2 R``, 128 for a 64^3 model).
        method: ``"mise"`` (coarse-to-fine, evaluates ``~R_f^2`` points) or ``"dense"`` (every
            one of the ``R_f^3`` points, chunked).
        threshold: occupancy probability of the surface (MISE refines around it).
        dilate: extra cubes refined around the straddling ones (see :func:`mise`).
        chunk: points per head call (default: :data:`CPU_CHUNK` on a CPU, else :data:`DEFAULT_CHUNK`).
        upsample: ``"head"`` or ``"decoder"`` (:data:`UPSAMPLE`, :func:`upsample_method`).

    Returns:
        one :class:`RefineResult` per face (an empty list for an empty batch).

    Raises:
        voxface.InputError: a bad ``method``, ``threshold``, ``resolution``, ``upsample``, ``dilate``
            (below 0) or ``chunk`` (below 1), or bad codes (an :class:`~voxface.errors.InputTypeError`
            for values of the wrong type), before the decoder runs.
    """
    from .device import synchronize
    from .errors import check_finite as _finite, check_integer as _integer

    if method not in ("mise", "dense"):
        raise InputError(f"method must be 'mise' or 'dense', not {method!r}")
    if not 0.0 < _finite("threshold", threshold) < 1.0:  # NaN: "must be finite"; "0.5": not a number
        raise InputError(f"threshold must lie in (0, 1), got {threshold}")
    threshold = float(threshold)
    _integer("dilate", dilate, 0)  # these three before the decoder runs
    _chunk_for(model.device, chunk)
    upsample_method(model, upsample)
    R = model.config.decoder.resolution
    Rf = 2 * R if resolution is None else _integer("resolution", resolution, -(2**62))  # 128.5 is no grid
    levels = math.log2(Rf / R) if Rf >= R else -1.0
    if levels < 1 or not levels.is_integer():
        raise InputError(f"resolution {Rf} must be the model's {R} times 2, 4, 8, ...")
    dec = model.decoder
    if not hasattr(dec, "features"):
        raise VoxfaceError(f"decoder {type(dec).__name__} exposes no feature volume to refine from")
    z_id, z_exp = model._check_codes(z_id, z_exp)  # what model.decode refuses, refused here too
    if len(z_id) == 0:
        return []
    level = math.log(threshold) - math.log1p(-threshold)
    t0 = time.perf_counter()
    dev = model.device
    z = torch.cat([z_id, z_exp], dim=1)
    feats = dec.features(z)
    coarse = dec.logits_from_features(feats).float()
    synchronize(coarse.device)  # CUDA / MPS run kernels asynchronously: the decoder's time, not the first face's
    decode_s = time.perf_counter() - t0
    refiner = getattr(model, "refiner", None) if upsample_method(model, upsample) == "head" else None
    grid = Grid(Rf, model.grid.side_mm, model.grid.center_mm)
    out = []
    for b in range(z.shape[0]):
        t1 = time.perf_counter()
        ev = _evaluator(refiner, feats[b : b + 1], coarse[b : b + 1], dec)
        if method == "mise":
            fine, lv = mise(coarse[b, 0], ev, int(levels), level=level, dilate=dilate, chunk=chunk)
        else:
            fine, lv = dense(ev, Rf, chunk=chunk, device=dev), [{"resolution": Rf, "points": Rf ** 3}]
        synchronize(fine.device)  # the time is the face's work, not its launch (on MPS too: it timed launches)
        secs = time.perf_counter() - t1
        pts = sum(s["points"] for s in lv)
        out.append(RefineResult(fine.cpu().numpy(), grid, method, refiner is not None,
                                {"points": pts, "dense_points": Rf ** 3, "levels": lv, "seconds": secs,
                                 "decode_seconds": decode_s}))
    return out


# ------------------------------------------------------------------------------------ training


@dataclass
class RefineTrainConfig:
    """Second-stage training of the refinement head (encoder and decoder frozen).

    Attributes:
        steps: optimizer steps; ``batch_size`` faces per step, ``points`` query points per face.
        lr: peak AdamW learning rate (linear warm-up over ``warmup`` steps, cosine to 0).
        surface_share / predicted_share: fractions of the points drawn uniformly in the cells
            within one cell of the true surface (the item's ``occ``) / of the model's predicted
            surface (the coarse logits); the rest are uniform in the cube.
        resolution: the fine grid of the final validation (head vs trilinear IoU against exact
            occupancy on ``num_val`` validation faces; 0 skips it).
        threads: torch intra-op threads while training and validating (0: unchanged).
        log_every: steps between log records.
        latents: what the frozen decoder decodes for the head to refine: ``"encoder"`` (the codes
            read from each training image) or ``"true"`` (the item's own ``id_coeffs`` /
            ``exp_coeffs``, for models whose codes are ICT coordinates). With the encoder's codes
            the features describe the *predicted* head while the labels are the true one's, so
            wherever the encoder errs the head learns to hedge (measured on the shipped model:
            the head so trained scored *below* the 64^3 grid at 128^3 on true coefficients); with
            the true ones features and labels describe the same head, and the head learns detail,
            for codes like the coefficients: on the shipped encoder's codes (calibrated by stage 3,
            not coefficient estimates) such a head roughened the 128^3 surface (normal consistency
            0.88 against 0.93 at 64^3). ``"both"``: half of each batch on the true coefficients,
            half on the encoder's codes (validation alternates).
        smooth: weight of a smoothness term on the head's correction: the mean squared change of
            the correction (logits) between each of the step's points and a point ``smooth_mm``
            away in a random direction *along the surface* (perpendicular to the gradient of the
            coarse logits). The head encodes where a point lies inside its feature cell with
            periodic functions, and without this term its correction ripples with the period of
            the highest frequency (a feature cell / ``pe_freqs``: 6 mm on the shipped model) on
            smooth parts of the head. Across the surface the correction stays free: changing
            there is how the head moves and sharpens the surface (a term in every direction,
            tried first, smoothed the ripples but blunted the detail, and the 128^3 Chamfer
            distance grew). 0 disables it (and draws nothing extra).
        smooth_mm: the step of that finite difference, canonical mm (below half the ripple's
            period).
        shrink: weight of the mean squared correction (logits) at the step's points: keeps the
            head at trilinear upsampling of the coarse logits wherever the labels do not clearly
            ask for more. 0 disables it.
    """

    steps: int = 2000
    batch_size: int = 16
    points: int = 4096
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 50
    surface_share: float = 0.45
    predicted_share: float = 0.45
    resolution: int = 128
    num_val: int = 16
    seed: int = 0
    threads: int = 0
    log_every: int = 25
    latents: str = "encoder"
    smooth: float = 0.0
    smooth_mm: float = 1.5
    shrink: float = 0.0


def refine_resolution_ok(resolution: int, model_resolution: int) -> bool:
    """Whether a head can extract at ``resolution`` from a ``model_resolution``^3 decoder: the
    model's resolution times 2, 4, 8, ... (:func:`mise` doubles the grid per level)."""
    r, R = int(resolution), int(model_resolution)
    return r >= 2 * R and r % R == 0 and (r // R) & (r // R - 1) == 0


def refine_resolutions(model_resolution: int) -> str:
    """``"128, 256, 512, ..."``: the resolutions :func:`refine_resolution_ok` accepts, for messages."""
    R = int(model_resolution)
    return f"{2 * R}, {4 * R}, {8 * R}, ..."


#: Finest grid :func:`train_refiner` validates at: that of ``voxface reconstruct`` / ``evaluate``
#: (a 512^3 validation held 0.5 GB grids, and was found out of memory only after the training).
MAX_VALIDATION_RESOLUTION = 256


def check_refine_train_config(cfg: RefineTrainConfig, model_resolution: int) -> None:
    """Refuse, before any training, settings that would fail or do nothing only after it: fewer than
    one step (an untrained head), fewer than one face a step, point a face (a NaN loss) or step
    between log records, a negative ``num_val`` or ``warmup``, ``latents="both"`` with one face a step (never the
    encoder's codes), point shares outside [0, 1] or adding up to more than 1, a learning rate that
    is not positive and finite, a validation ``resolution`` other than 0 or the model's times 2, 4,
    8, ..., a ``seed`` that torch's and numpy's generators refuse (below 0 or from 2**64),
    ``threads`` below 0 or above the cores this process may use
    (:func:`voxface.device.check_threads`: torch crashes, without a message, on a count it cannot
    start), a count or seed that is not a whole number (``steps=2.5`` failed in ``range`` after the
    head was added), a ``weight_decay`` below 0 or not finite (AdamW's ``ValueError``, as late).
    Raises :class:`ConfigError`."""
    from .device import check_threads

    for key in ("steps", "batch_size", "points", "log_every", "num_val", "resolution", "seed", "threads", "warmup"):
        v = getattr(cfg, key)  # 2.5 steps failed in range() after the head was added; True was 1 step
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ConfigError(f"refine: {key} {v!r} must be a whole number")
    if not (math.isfinite(float(cfg.weight_decay)) and float(cfg.weight_decay) >= 0):  # AdamW's ValueError, late
        raise ConfigError(f"refine: weight_decay {cfg.weight_decay} must be a finite number >= 0")
    if int(cfg.steps) < 1:
        raise ConfigError(f"refine: steps {cfg.steps} must be at least 1 "
                          "(no training step would write an untrained head)")
    for key, low in (("batch_size", 1), ("points", 1), ("log_every", 1), ("num_val", 0), ("warmup", 0)):
        if int(getattr(cfg, key)) < low:  # failed in the first step (or at the first log), or trained on NaN
            # (a negative warmup started the cosine part-way: lr never reached its peak)
            raise ConfigError(f"refine: {key} {getattr(cfg, key)} must be at least {low}")
    if cfg.latents == "both" and int(cfg.batch_size) < 2:
        raise ConfigError(f"refine: latents 'both' takes half of each batch each way: batch_size {cfg.batch_size} "
                          "must be at least 2 (one face a step is only ever the true coefficients)")
    shares = (float(cfg.surface_share), float(cfg.predicted_share))
    if not (all(0.0 <= v <= 1.0 for v in shares) and sum(shares) <= 1.0):
        raise ConfigError(f"refine: surface_share {shares[0]} and predicted_share {shares[1]} must each lie in "
                          "[0, 1] and add up to at most 1 (the rest of the points are uniform in the cube)")
    if not (math.isfinite(float(cfg.lr)) and float(cfg.lr) > 0):
        raise ConfigError(f"refine: lr {cfg.lr} must be a positive, finite learning rate")
    if not (math.isfinite(float(cfg.smooth)) and float(cfg.smooth) >= 0):
        raise ConfigError(f"refine: smooth {cfg.smooth} must be a finite weight >= 0")
    if not (math.isfinite(float(cfg.shrink)) and float(cfg.shrink) >= 0):
        raise ConfigError(f"refine: shrink {cfg.shrink} must be a finite weight >= 0")
    if not (math.isfinite(float(cfg.smooth_mm)) and float(cfg.smooth_mm) > 0):
        raise ConfigError(f"refine: smooth_mm {cfg.smooth_mm} must be a positive, finite distance (mm)")
    if not 0 <= int(cfg.seed) < 2**64:
        raise ConfigError(f"refine: seed {cfg.seed} must be a whole number from 0 to {2**64 - 1}")
    check_threads(cfg.threads, "refine: threads")
    if cfg.resolution and not refine_resolution_ok(cfg.resolution, model_resolution):
        raise ConfigError(
            f"refine: the validation resolution {cfg.resolution} must be the model's {model_resolution} times "
            f"2, 4, 8, ... ({refine_resolutions(model_resolution)}), or 0 for no validation"
        )
    if cfg.resolution > MAX_VALIDATION_RESOLUTION:  # found only after the training: out of memory, or hours
        gb = 4 * int(cfg.resolution) ** 3 / 2**30  # 0.5 at 512^3, which :.0f printed as '0 GB'
        raise ConfigError(f"refine: the validation resolution {cfg.resolution} must be at most "
                          f"{MAX_VALIDATION_RESOLUTION}, the finest grid voxface reconstructs and evaluates at "
                          f"(each of its grids would be {gb:g} GB of float32), or 0 for no validation")


@dataclass
class RefineTrainResult:
    """What :func:`train_refiner` did: ``history`` (log records), ``val`` (IoUs), wall time."""

    history: list[dict[str, Any]]
    val: dict[str, float]
    seconds: float


class _ToyOracle:
    """Exact occupancy of analytic toy heads (:mod:`voxface.data.toy`)."""

    def points(self, item: dict[str, Any], xyz_mm: np.ndarray) -> np.ndarray:
        from .data.toy import toy_field

        return toy_field(xyz_mm, item["id_coeffs"], item["exp_coeffs"]) < 0

    def grid(self, item: dict[str, Any], grid: Grid) -> np.ndarray:
        from .data.toy import toy_occupancy

        return toy_occupancy(grid, item["id_coeffs"], item["exp_coeffs"])


class _IctOracle:
    """Exact occupancy of ICT-FaceKit closed heads rebuilt from an item's coefficients."""

    def __init__(self, ict_root: str | None):
        from .data.head import HeadModel
        from .data.ict import load_ict

        self.head = HeadModel(load_ict(ict_root))

    def _vertices(self, item: dict[str, Any]) -> np.ndarray:
        return self.head.person(np.asarray(item["id_coeffs"])).closed_head(np.asarray(item["exp_coeffs"]))

    def points(self, item: dict[str, Any], xyz_mm: np.ndarray) -> np.ndarray:
        # the grids' rule: open3d's compute_occupancy (even-odd) put points inside closed lips, where the
        # head passes through itself (winding number 2), outside while their grid cells were solid
        from .occupancy import occupancy_points

        return occupancy_points(self._vertices(item), self.head.faces, xyz_mm, rule=self.head.occupancy_rule)

    def grid(self, item: dict[str, Any], grid: Grid) -> np.ndarray:
        from .occupancy import occupancy_grid

        return occupancy_grid(self._vertices(item), self.head.faces, grid, rule=self.head.occupancy_rule)


def occupancy_oracle(data_cfg: dict[str, Any]) -> Any:
    """Exact occupancy of a dataset's true heads, from an item's ``id_coeffs``/``exp_coeffs``.

    Returns an object with ``points(item, xyz_mm (N, 3)) -> bool (N,)`` and
    ``grid(item, grid) -> uint8 (R, R, R)``. ``data.kind`` ``toy`` is analytic; ``synthetic`` and
    ``cache`` rebuild the ICT-FaceKit closed head (``data.ict_root`` or ``$VOXFACE_ICT_ROOT``) and
    label points (:func:`voxface.occupancy.occupancy_points`) and grids (the exact scanline method of
    :func:`voxface.occupancy.occupancy_grid`) by the same rule, the head's ``occupancy_rule`` (the
    nonzero winding number: closed lips, where the head passes through itself, are solid).
    """
    kind = check_exact_geometry(data_cfg)
    if kind == "toy":
        return _ToyOracle()
    return _IctOracle(data_cfg.get("ict_root"))


#: The ``data.kind`` values whose true heads :func:`occupancy_oracle` can label exactly.
EXACT_KINDS = ("toy", "synthetic", "cache")


def check_exact_geometry(data_cfg: dict[str, Any]) -> str:
    """``data_cfg``'s ``kind`` when :func:`occupancy_oracle` can label its heads exactly; else a
    :class:`ConfigError` (``voxface refine-train`` names the file the section came from)."""
    kind = data_cfg.get("kind", "synthetic")
    if kind not in EXACT_KINDS:
        raise ConfigError(f"refinement training needs exact geometry; data.kind {kind!r} has none "
                          f"(use {', '.join(EXACT_KINDS[:-1])} or {EXACT_KINDS[-1]})")
    return kind


def head_differences(have: RefineConfig, want: RefineConfig) -> list[tuple[str, Any, Any]]:
    """``(field, have's value, want's value)`` for each :class:`RefineConfig` field in which the two
    heads' configs differ (for messages: why a head cannot go on training under ``want``)."""
    from dataclasses import fields

    return [(f.name, getattr(have, f.name), getattr(want, f.name)) for f in fields(RefineConfig)
            if getattr(have, f.name) != getattr(want, f.name)]


def _head_conflict(have: RefineConfig, want: RefineConfig) -> str:
    differ = ", ".join(f"{k} {a} (not {b})" for k, a, b in head_differences(have, want))
    return (f"already has a refinement head with {differ}: leave the head config out (head=None) to train that "
            "head on, or replace it with a new head (fresh=True)")


def _band_points(mask: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points uniform in the cells of ``mask (R, R, R)`` (all cells when empty), ``(n, 3)`` in [-1, 1]."""
    R = mask.shape[0]
    idx = mask.nonzero()
    if len(idx) == 0:
        return torch.rand(n, 3, generator=gen) * 2 - 1
    pick = idx[torch.randint(len(idx), (n,), generator=gen)]
    return (pick.flip(1).float() + torch.rand(n, 3, generator=gen)) * (2.0 / R) - 1.0


def _decoder_input(model: "VoxFace", items: list[dict[str, Any]], latents: str) -> torch.Tensor:
    """``(B, D_id + D_exp)``: the codes the frozen decoder decodes for ``items`` (see
    :attr:`RefineTrainConfig.latents`)."""
    if latents == "both":  # the first half on the true coefficients, the rest on the encoder's codes
        half = (len(items) + 1) // 2
        parts = [_decoder_input(model, items[:half], "true")]
        if len(items) > half:
            parts.append(_decoder_input(model, items[half:], "encoder"))
        return torch.cat(parts, 0)
    if latents == "true":
        z = torch.cat([_collate(items, "id_coeffs"), _collate(items, "exp_coeffs")], 1).float()
        _check_true_codes(model, z.shape[1], latents)
        return z.to(model.device)
    lat = model.encode(_collate(items, "image").float().to(model.device))
    return torch.cat([lat.z_id, lat.z_exp], 1)


def _check_true_codes(model: "VoxFace", n: int, latents: str) -> None:
    """Refuse ``latents`` ``"true"``/``"both"`` for a model whose codes do not hold the data's ``n``
    coefficients (:class:`ConfigError`: :func:`refine_checkpoint` names the checkpoint)."""
    have = model.config.encoder.z_id + model.config.encoder.z_exp
    if n != have:
        raise ConfigError(f"refine: latents {latents!r} needs codes that are the data's coefficients: the model's "
                          f"z_id + z_exp have {have} values, the coefficients {n}")


def _tangent_steps(coarse: torch.Tensor, points: torch.Tensor, u: torch.Tensor, length: float) -> torch.Tensor:
    """Steps of ``length`` (cube units) from ``points (B, N, 3)``: the directions ``u (B, N, 3)`` with
    their component along the gradient of the trilinear ``coarse (B, 1, R, R, R)`` logits removed,
    i.e. parallel to the level set through each point (where the gradient vanishes, ``u`` as given)."""
    with torch.enable_grad():
        p = points.detach().float().requires_grad_(True)
        c = F.grid_sample(coarse.float(), p[:, :, None, None, :], mode="bilinear", padding_mode="border",
                          align_corners=False)
        (g,) = torch.autograd.grad(c.sum(), p)
    n = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    u = u - (u * n).sum(-1, keepdim=True) * n
    return u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12) * length


def _diverged(what: str, cfg: RefineTrainConfig) -> str:
    return (f"refine: training diverged: {what} (lr {cfg.lr:g}: lower it, --lr for voxface refine-train); "
            "nothing is written")


def _collate(items: list[dict[str, Any]], key: str) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(it[key]) for it in items]))


def train_refiner(model: "VoxFace", data_cfg: dict[str, Any], config: RefineTrainConfig | None = None, *,
                  head: RefineConfig | None = None, dataset: Any = None, val_dataset: Any = None,
                  progress: bool = False, log: Callable[[dict[str, Any]], None] | None = None,
                  fresh: bool = False) -> RefineTrainResult:
    """Train ``model.refiner`` (added with ``head`` when missing) with the rest of ``model`` frozen.

    An existing head goes on training with its own config (``head`` ``None``, or equal to it: another
    ``head`` is refused), unless ``fresh``: then a new head (``head``, or the old one's config)
    replaces it. A model without a head gets one of ``head`` (default: :class:`RefineConfig`).

    Each step draws ``batch_size`` training faces, encodes (or, with ``latents="true"``, takes their
    coefficients) and decodes them (no gradients), draws
    ``points`` query points per face near the true surface, near the predicted one and in the
    cube (:class:`RefineTrainConfig`), labels them with exact occupancy
    (:func:`occupancy_oracle`) and takes an AdamW step on the binary cross-entropy of the head's
    logits (plus ``smooth`` times the smoothness term and ``shrink`` times the mean squared
    correction, :class:`RefineTrainConfig`). Log records:
    ``step``, ``loss`` (the cross-entropy), ``smooth`` (the smoothness term, when weighted),
    ``acc_head`` and ``acc_trilinear`` (accuracy at the step's points of the head and of trilinear
    upsampling of the coarse logits), ``lr``, ``time``.

    Args:
        model: a :class:`voxface.VoxFace`; its encoder and decoder weights are not changed.
        data_cfg: the ``data:`` section of a training config (``kind`` toy, synthetic or cache).
        dataset / val_dataset: override the datasets built from ``data_cfg``.
        log: called with every log record.

    Returns:
        :class:`RefineTrainResult`; ``val`` holds ``iou_head`` / ``iou_trilinear`` (mean IoU at
        ``config.resolution`` against exact occupancy, head through :func:`mise`) and
        ``iou_coarse`` (decoder grid against exact occupancy at its own resolution).

    Raises:
        voxface.ConfigError: settings :func:`check_refine_train_config` refuses, data without exact
            geometry (:func:`check_exact_geometry`), ``latents`` ``"true"``/``"both"`` for codes that
            are not the data's coefficients, a ``head`` no head can have or that differs from an
            existing head's without ``fresh``: each before ``model``'s head or config changes. The
            validation faces are built before the training too (a ``data:`` section whose
            validation split cannot be built fails then); data without validation items is a
            ``warning:`` line on stderr, and ``val`` is empty.
        voxface.VoxfaceError: the training diverged (a loss that is not finite, before its step is
            taken, or head weights that are not finite after the last step: ``lr`` too high), where
            :func:`refine_checkpoint` writes nothing.
    """
    from .data import build_dataset
    from .losses import near_surface_mask

    cfg = config or RefineTrainConfig()
    if cfg.latents not in ("encoder", "true", "both"):
        raise VoxfaceError(f"refine: latents must be 'encoder', 'true' or 'both', not {cfg.latents!r}")
    check_refine_train_config(cfg, model.config.decoder.resolution)  # before the head or data exist
    check_exact_geometry(data_cfg)
    # the data, its labels and the codes the decoder is to decode, before a head is added or replaced
    ds = dataset if dataset is not None else build_dataset(data_cfg, "train", model.config)
    vds = None  # the validation faces too: a val split the data cannot give failed only after the training
    if cfg.num_val and cfg.resolution:
        vds = val_dataset if val_dataset is not None else build_dataset(data_cfg, "val", model.config)
        if len(vds) == 0:  # its IoUs were NaN, printed as JSON's invalid NaN and stored in the checkpoint
            print(f"warning: refine: the data has no validation items (data.num_val {data_cfg.get('num_val')}), "
                  "so the head is not validated", file=sys.stderr, flush=True)
            vds = None
    oracle = occupancy_oracle(data_cfg)
    if cfg.latents != "encoder" and len(ds):
        _check_true_codes(model, _collate([ds[0]], "id_coeffs").shape[1] + _collate([ds[0]], "exp_coeffs").shape[1],
                          cfg.latents)
    if fresh and getattr(model, "refiner", None) is not None:
        head = head or model.config.refine  # replaces the old head once built (trilinear until it learns)
    if fresh or getattr(model, "refiner", None) is None:
        with torch.random.fork_rng(devices=[]):  # a new head's initial weights follow cfg.seed
            torch.manual_seed(int(cfg.seed))
            add_refine_head(model, head)
    elif head is not None and head != model.config.refine:
        raise ConfigError(f"the model {_head_conflict(model.config.refine, head)}")
    dev = model.device
    grid = model.grid
    center = torch.tensor(grid.center_mm, dtype=torch.float64)
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    was_training = model.training
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]  # restored on return
    for p in model.parameters():
        p.requires_grad_(False)
    refiner = model.refiner
    for p in refiner.parameters():
        p.requires_grad_(True)
    model.eval()
    refiner.train()
    opt = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / (cfg.warmup + 1)
        p = (s - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    gen = torch.Generator().manual_seed(int(cfg.seed))
    rng = np.random.default_rng(int(cfg.seed))
    from tqdm.auto import tqdm

    n_s = int(cfg.points * cfg.surface_share)
    n_p = int(cfg.points * cfg.predicted_share)
    n_u = cfg.points - n_s - n_p
    history: list[dict[str, Any]] = []
    window: list[tuple[float, float, float, float]] = []  # loss, acc_head, acc_trilinear, smooth
    t_start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="refine-train", disable=not progress)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)))
    try:
        for step in bar:
            items = [ds[int(i)] for i in rng.integers(0, len(ds), cfg.batch_size)]
            occ = _collate(items, "occ").to(dev).bool()
            with torch.no_grad():
                feats = model.decoder.features(_decoder_input(model, items, cfg.latents))
                coarse = model.decoder.logits_from_features(feats).float()
            pred_occ = coarse[:, 0] > 0
            true_band = near_surface_mask(occ[:, None], 1)[:, 0].cpu()
            pred_band = near_surface_mask(pred_occ[:, None], 1)[:, 0].cpu()
            pts = [torch.cat([_band_points(true_band[b], n_s, gen), _band_points(pred_band[b], n_p, gen),
                              torch.rand(n_u, 3, generator=gen) * 2 - 1]) for b in range(len(items))]
            xyz = [(center + p.double() * (grid.side_mm / 2)).numpy() for p in pts]
            labels = pool.map(oracle.points, items, xyz)  # open3d and numpy release the GIL
            target = torch.from_numpy(np.stack([np.asarray(t, np.float32) for t in labels])).to(dev)
            points = torch.stack(pts).to(dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            c_at, delta = refiner.correction(feats, coarse, points)
            logits = (c_at + delta).float()
            loss = bce = F.binary_cross_entropy_with_logits(logits, target)
            smooth = None
            if cfg.smooth > 0:  # the correction's change over smooth_mm in a random direction along the surface
                u = _tangent_steps(coarse, points, torch.randn(points.shape, generator=gen).to(dev),
                                   cfg.smooth_mm * 2 / grid.side_mm)
                _, delta_near = refiner.correction(feats, coarse, (points + u).clamp(-1.0, 1.0))
                smooth = ((delta_near - delta).float() ** 2).mean()
                loss = bce + cfg.smooth * smooth
            if cfg.shrink > 0:
                loss = loss + cfg.shrink * (delta.float() ** 2).mean()
            value = float(loss.detach())
            if not math.isfinite(value):  # before the step: a NaN head was trained on and written, exit 0
                raise VoxfaceError(_diverged(f"the loss is {value} at step {step + 1}", cfg))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                tri = c_at.float()  # the head's own trilinear sample of the coarse logits at the points
                acc_h = ((logits > 0).float() == target).float().mean().item()
                acc_t = ((tri > 0).float() == target).float().mean().item()
            window.append((bce.item(), acc_h, acc_t, 0.0 if smooth is None else smooth.item()))
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                w = np.mean(window, axis=0)
                rec = {"step": step + 1, "loss": float(w[0]), "acc_head": float(w[1]), "acc_trilinear": float(w[2]),
                       "lr": lr_at(step), "time": time.perf_counter() - t_start}
                if cfg.smooth > 0:
                    rec["smooth"] = float(w[3])
                history.append(rec)
                window.clear()
                bar.set_postfix(loss=f"{w[0]:.4f}", acc=f"{w[1]:.4f}/{w[2]:.4f}")
                if log is not None:
                    log(rec)
    finally:
        pool.shutdown()
        bar.close()
        for p, flag in requires_grad:
            p.requires_grad_(flag)
        model.train(was_training)
        torch.set_num_threads(old_threads)
    if not all(bool(torch.isfinite(p).all()) for p in refiner.parameters()):  # the last step's update overflowed
        raise VoxfaceError(_diverged(f"the head's weights are not finite after step {cfg.steps}", cfg))
    val: dict[str, float] = {}
    if vds is not None:
        model.eval()
        if cfg.threads:  # the validation too (seconds a face at 256^3) runs on the threads asked for
            torch.set_num_threads(int(cfg.threads))
        try:
            val = evaluate_refiner(model, vds, oracle, range(min(cfg.num_val, len(vds))), cfg.resolution,
                                   latents=cfg.latents, progress=progress)
        finally:
            model.train(was_training)
            torch.set_num_threads(old_threads)
        if log is not None:
            log({"event": "val", **val})
    return RefineTrainResult(history, val, time.perf_counter() - t_start)


@torch.inference_mode()
def evaluate_refiner(model: "VoxFace", dataset: Any, oracle: Any, indices: Any, resolution: int, *,
                     latents: str = "encoder", progress: bool = False) -> dict[str, float]:
    """Mean IoU against exact occupancy at ``resolution`` of the head (through :func:`mise`) and of
    trilinear upsampling of the coarse logits, and of the coarse grid at its own resolution; the
    decoder decodes ``latents`` (see :attr:`RefineTrainConfig.latents`). ``progress``: a bar over the
    faces (each takes seconds at 256^3: the exact occupancy and the extraction)."""
    from tqdm.auto import tqdm

    R = model.config.decoder.resolution
    fine_grid = Grid(int(resolution), model.grid.side_mm, model.grid.center_mm)
    ious: dict[str, list[float]] = {"iou_head": [], "iou_trilinear": [], "iou_coarse": []}
    levels = int(round(math.log2(resolution / R)))
    for i in tqdm(indices, desc=f"refine-train validation ({resolution}^3)", unit="face", disable=not progress):
        it = dataset[int(i)]
        which = ("true" if int(i) % 2 == 0 else "encoder") if latents == "both" else latents
        feats = model.decoder.features(_decoder_input(model, [it], which))
        coarse = model.decoder.logits_from_features(feats).float()
        exact = oracle.grid(it, fine_grid).astype(bool)
        head, _ = mise(coarse[0, 0], _evaluator(model.refiner, feats, coarse), levels)
        tri = F.interpolate(coarse, size=(resolution,) * 3, mode="trilinear", align_corners=False)[0, 0]
        ious["iou_head"].append(_iou(head > 0, exact))
        ious["iou_trilinear"].append(_iou(tri > 0, exact))
        ious["iou_coarse"].append(_iou(coarse[0, 0] > 0, np.asarray(it["occ"]).astype(bool)))
    out: dict[str, float] = {k: float(np.mean(v)) if v else float("nan") for k, v in ious.items()}
    out.update(num_val=len(ious["iou_head"]), resolution=int(resolution))
    return out


def _iou(a: Any, b: np.ndarray) -> float:
    a = a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def refine_checkpoint(checkpoint: str | Path, out: str | Path, data_cfg: dict[str, Any],
                      config: RefineTrainConfig | None = None, *, head: RefineConfig | None = None,
                      device: str = "auto", progress: bool = False,
                      log: Callable[[dict[str, Any]], None] | None = None,
                      fresh: bool = False) -> tuple[Path, RefineTrainResult]:
    """Load ``checkpoint``, train its refinement head (:func:`train_refiner`), write ``out``.

    ``out`` keeps the source's weights, latent prior, step, epoch and loss history (no optimizer
    state, nor the trainer's resume entries in ``extra``, :data:`~voxface.checkpoint.RESUME_EXTRA`:
    it is an inference checkpoint), adds ``refiner.*`` weights and ``config.refine``, and
    records the head's training under ``extra["refine_train"]`` (a head that goes on training
    keeps the record it came with under its ``"previous"``). An evaluation embedded by ``voxface
    release --report`` that scored the source's head (``upsample`` ``"head"``) no longer describes
    ``out`` (``voxface inspect`` would show it): it moves to the record's ``"evaluation_before"``;
    one on the decoder's grid or function, which the head leaves alone, stays. A source stored in float16 is
    written in float16 too. :func:`voxface.load_model` on ``out`` rebuilds the head.

    ``head`` ``None`` trains an existing head on with its own config (a new head gets
    :class:`RefineConfig`'s defaults, a ``fresh`` one the old head's config); a ``head`` that differs
    from an existing head's config without ``fresh`` raises :class:`ConfigError` naming
    ``checkpoint`` and the fields that differ. ``out`` naming ``checkpoint`` itself (the same file
    under any name) while it holds resume state (optimizer, scheduler, RNG: a training run's
    ``last.pth.tar``) raises :class:`~voxface.errors.CheckpointError`, as
    :func:`voxface.checkpoint.release_checkpoint` does: the refined checkpoint keeps no resume state,
    so the run could no longer be resumed; so is an ``out`` that cannot be written or that holds
    another run's resume state (:func:`voxface.checkpoint.check_output_checkpoint`). All of these
    are refused before any training. The checkpoint is read once
    (:func:`voxface.checkpoint.load_model_and_checkpoint`), so its metadata and its weights are always
    one file's, even while a training writes it again.
    """
    from .checkpoint import (
        _same_file,
        carried_over,
        check_output_checkpoint,
        load_model_and_checkpoint,
        save_checkpoint,
    )

    # one read for its metadata and its model: two (a training saving last.pth.tar in between) gave out one
    # file's weights and prior and the other's epoch, step, loss history and extra
    model, src = load_model_and_checkpoint(checkpoint, device=device)
    if _same_file(checkpoint, out) and any(src.get(k) is not None for k in ("optimizer", "scheduler", "rng")):
        raise CheckpointError(
            "the output is this checkpoint itself: writing the refined checkpoint over it would replace the "
            "training checkpoint and lose its resume state (optimizer, scheduler, RNG); write it to another file "
            f"(e.g. -o {Path(checkpoint).name.split('.')[0]}-refined.pth.tar)",
            Path(checkpoint),
            reason="in-place",
        )
    check_output_checkpoint(out, "refined checkpoint")  # a folder, an unwritable place, another run's resume state
    cfg = config or RefineTrainConfig()
    try:  # the validation resolution depends on this checkpoint's model: name it
        check_refine_train_config(cfg, model.config.decoder.resolution)
    except ConfigError as e:
        raise ConfigError(str(e), checkpoint) from None
    if not fresh and head is not None and model.refiner is not None and head != model.config.refine:
        raise ConfigError(_head_conflict(model.config.refine, head), checkpoint)
    try:
        res = train_refiner(model, data_cfg, cfg, head=head, progress=progress, log=log, fresh=fresh)
    except ConfigError as e:  # a setting this checkpoint's model cannot train with (latents "true"): name it
        if e.path is None and str(e).startswith("refine:"):
            raise ConfigError(str(e), checkpoint) from None
        raise
    kept = carried_over(src)  # without a resumed run's state: no run resumes from out
    extra = kept["extra"]
    record = {"source": str(checkpoint), "config": cfg, "data": data_cfg, "fresh": bool(fresh),
              "history": res.history, "val": res.val, "seconds": res.seconds}
    if not fresh and extra.get("refine_train") is not None:
        record["previous"] = extra["refine_train"]  # the training this head went on from
    ev = extra.get("evaluation")
    if isinstance(ev, dict) and ev.get("upsample") == "head":  # its numbers are the old head's, not out's
        record["evaluation_before"] = extra.pop("evaluation")
    extra["refine_train"] = record
    # metadata of the wrong type (a hand-edited file) is read past (carried_over): a traceback here
    # came after the training, which was lost
    meta = src.get("meta") if isinstance(src.get("meta"), Mapping) else {}
    path = save_checkpoint(out, model, **kept, half=bool(meta.get("half")))
    return path, res
