"""Training: one function, :func:`train`, driven by a YAML config with three sections.

.. code-block:: yaml

    model: {...}   # voxface.config.ModelConfig (encoder, decoder, frame)
    data:  {...}   # the dataset's own section, ``kind:`` picks it (voxface.data.build_dataset)
    train: {...}   # TrainConfig below, with the loss weights under ``train.loss`` (LossConfig)

What a run writes into ``out_dir`` (only rank 0 writes under DDP):

* ``config.yaml``: the resolved config (inheritance applied; the model: and train: defaults filled in, the
  data: section as given, its kind's defaults applied by the dataset);
* ``log.jsonl``: one JSON object per line: ``{"event": "train", "step", "epoch", "lr", "time",
  "loss": {term: value}, "grad_norm", "samples_per_s"}`` every ``log_every`` steps and at the run's
  last step (loss terms averaged over the window, ``grad_norm`` its last step's global gradient norm,
  before any clipping, ``samples_per_s``
  the training steps' throughput, validations and checkpoints left out; a resumed run's records are
  the uninterrupted run's), ``{"event": "val", "step", "val_iou", "val_bce", "best_val_iou",
  "mean_shape_iou", "time"}`` at every validation (with ``val_id_mse`` / ``val_exp_mse``, the codes against
  the true coefficients, where the codes have their sizes), and ``start`` / ``end`` records (a metric that does not
  exist, such as the best val IoU of a run without a validation split, is ``null``);
* ``loss.png``: loss and validation IoU curves (rewritten at every validation and at the end);
* ``last.pth.tar``: the full resume state every ``ckpt_every`` steps and at the end;
* ``best.pth.tar``: the weights (and latent prior) with the best validation IoU (none when the
  data has no validation split: a ``warning:`` line on stderr says so when the run starts);
* ``.train.lock``: held (``flock``) while a trainer writes the folder; a second trainer there is
  refused in one line (it is kept, as a data cache keeps its ``.lock``).

``resume`` needs a checkpoint with its resume state, past no more than ``total_steps`` (the resume of a
finished run trains nothing and leaves its files as they are, saying so in a ``note:`` line): a released
or ``best.pth.tar`` checkpoint (weights only) is refused (``train.init_from`` starts a new run from
its weights), and so is ``--steps`` below the step the checkpoint reached. A config given with
``resume`` must describe the run resumed: keys outside :data:`RESUME_MAY_CHANGE` (steps, intervals,
workers, threads, data locations) that differ from the checkpoint's run config are a ``ConfigError``.

Reproducibility: Python, numpy and torch are seeded from ``train.seed``; the batch of step ``s`` is
a pure function of ``(data seed, train.seed, s, rank, world size)`` (:class:`BatchPlan`, built on
:class:`voxface.data.BlockSampler`); items are pure functions of ``(seed, index)``. A checkpoint
holds weights, optimizer, scheduler, AMP scaler, step, epoch, loss history and all RNG states, so
on the CPU ``train(cfg, out, resume="out/last.pth.tar")`` continues *exactly*: the loss history and
final weights equal those of an uninterrupted run, bit for bit (on CUDA up to the nondeterminism
of its kernels).

Interruption: SIGINT or SIGTERM finishes the current step, writes ``last.pth.tar`` (with a latent
prior) and returns with ``TrainResult.interrupted = True`` (the CLI then exits with status 130 for SIGINT, 143 for SIGTERM; a stop
asked for in the run's last step lets it finish, and it is not interrupted); a second SIGINT aborts at once. Checkpoints are written atomically, so SIGKILL at any moment leaves
the previous ``last.pth.tar`` intact (or none, before the first save).

Distributed: under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set) the model is wrapped
in :class:`torch.nn.parallel.DistributedDataParallel` (gloo on the CPU, nccl on CUDA) and every
rank reads its own share of each step's blocks; ``train.batch_size`` is the global batch.

    torchrun --standalone --nproc_per_node=2 -m voxface.train --config configs/toy.yaml --out runs/toy
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, default_collate

from .checkpoint import (
    _check_architecture,
    _clean_state_dict,
    _first_line,
    _foreign_error,
    _is_voxface,
    load_checkpoint,
    save_checkpoint,
)
from .config import (error_in_config, expand_inherit, from_dict, keyed_error, load_yaml, model_config,
                     to_dict)
from .data import BlockSampler, build_dataset
from .device import resolve_device
from .errors import CheckpointError, ConfigError, VoxfaceError
from .losses import (AuxHeads, LossConfig, batch_iou, compute_losses, forward_outputs, needs_decoder,
                     occupancy_terms)
from .mesh import atomic_open, atomic_write_bytes
from .models import create_model

if TYPE_CHECKING:  # pragma: no cover
    from .models import VoxFace

__all__ = [
    "TrainConfig", "TrainResult", "BatchPlan", "WarmupCosine", "warmup_warning", "train", "resolve_config",
    "compute_latent_prior", "state_digest", "main",
]

LAST = "last.pth.tar"
BEST = "best.pth.tar"


@dataclass
class TrainConfig:
    """The ``train:`` section.

    Attributes:
        batch_size: global batch (all DDP ranks together); per rank it must be a multiple of 4
            (whole blocks, see :mod:`voxface.data`).
        lr: peak learning rate of AdamW; ``weight_decay`` applies to every trainable tensor of 2 or
            more dimensions (weight matrices and kernels, and also a deform decoder's ``template``, a
            (1, 1, t, t, t) logit grid pulled towards logit 0), not to biases and norm parameters.
        warmup_steps: linear warm-up to ``lr``: update ``k`` (from 1) at ``lr * k / (warmup_steps + 1)``,
            never 0, the ``warmup_steps + 1``-th at ``lr``; then a cosine decay towards 0 at
            ``total_steps`` (the last update's rate is small but not 0; :class:`WarmupCosine`).
        grad_clip: maximum global gradient norm (0 disables clipping).
        log_every / val_every / ckpt_every: in optimizer steps (0 disables them: ``log_every: 0``
            writes no ``train`` records at all; validation and ``last.pth.tar`` still happen at the
            end).
        num_val: how many items of the val split are evaluated (the first ones; 0 = all).
        seed: seeds Python, numpy, torch and the batch order (0 to 2**32 - 1: numpy's range).
        amp: ``"auto"`` (on the CPU bf16 autocast where the CPU has native bf16, see
            :func:`cpu_has_fast_bf16`, else float32; bf16 on CUDA where supported, else fp16 with
            a gradient scaler), ``"bf16"``, ``"fp16"`` (CUDA only) or ``"off"`` (float32).
        workers: DataLoader worker processes (items are pure functions of their index, so the
            result does not depend on it).
        threads: intra-op CPU threads for this run (``torch.set_num_threads``, restored after);
            0 keeps torch's default. 1 is much faster on a machine whose cores are busy.
        prior_samples: training images whose latents define the latent prior.
        init_from: a voxface checkpoint whose weights start the model (a stage of training that
            builds on another: new optimizer, schedule and step count; a resume ignores it). With
            no ``model:`` section in the config, the checkpoint's model config is used; with one,
            it must describe the same architecture. As the data paths: ``~`` expanded, relative
            to the working folder.
        init_parts: the parts of the model ``init_from`` fills (``encoder``, ``decoder``,
            ``refiner``; empty: all of it, which must then be the same architecture). With a subset,
            only those parts must match; the others start fresh (e.g. a new encoder against a
            trained decoder).
        mirror: probability of mirroring a block of training samples left to right, labels
            mirrored too (:mod:`voxface.augment`; needs ICT-FaceKit coefficients); 0 disables it.
        freeze: parts of the model that do not train (``encoder``, ``decoder``, ``refiner``): no
            gradients, not in the optimizer, kept in eval mode. ``[decoder, refiner]`` with only
            ``latent`` and ``pose`` weighted is an encoder stage (no decode in the step at all,
            :func:`voxface.losses.needs_decoder`). No loss term here reads the refinement head
            (``voxface refine-train`` trains it): it keeps its weights, frozen or not.
        loss: loss weights (:class:`voxface.losses.LossConfig`).
    """

    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    total_steps: int = 2000
    grad_clip: float = 1.0
    log_every: int = 10
    val_every: int = 200
    ckpt_every: int = 200
    num_val: int = 128
    seed: int = 0
    amp: str = "auto"
    workers: int = 0
    threads: int = 0
    prior_samples: int = 256
    init_from: str = ""
    init_parts: tuple[str, ...] = ()
    mirror: float = 0.0
    freeze: tuple[str, ...] = ()
    loss: LossConfig = field(default_factory=LossConfig)


@dataclass
class TrainResult:
    """What :func:`train` returns. Paths are inside ``out_dir``; IoUs at threshold 0.5. Without any
    validation ``best_val_iou`` and ``best_step`` are -1 and ``final_val_iou`` NaN (and, without a
    validation split, ``mean_shape_iou`` too)."""

    out_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    config_path: Path | None
    log_path: Path | None
    plot_path: Path | None
    best_val_iou: float
    best_step: int
    final_val_iou: float
    mean_shape_iou: float
    steps: int  # global step reached
    steps_run: int  # steps run by this call (fewer than ``steps`` after a resume)
    wall_time_s: float  # this call
    interrupted: bool = False
    world_size: int = 1
    final_loss: float = float("nan")
    #: The signal that stopped an interrupted run (``signal.SIGINT`` or ``signal.SIGTERM``; ``None`` when
    #: it finished, or, under DDP, when another rank asked to stop): the CLI exits ``128 + stop_signal``.
    stop_signal: int | None = None


# ----------------------------------------------------------------------------------- config


_SECTIONS = ("model", "data", "train")


def resolve_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A YAML path or a dict to ``{"model": ModelConfig, "data": dict, "train": TrainConfig}``.

    YAML files and dicts may use ``inherit_from`` (in a dict, a path relative to the current
    folder). Unknown sections or keys, bad values, and a model that
    cannot be built (checked on the meta device: no memory, no weights) raise
    :class:`ConfigError`, naming the file when ``config`` is one.
    """
    try:
        return _resolve_config(config)
    except ConfigError as e:  # the file of config's inherit_from chain its key is in
        raise error_in_config(e, config) from None


def _resolve_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    raw = load_yaml(config) if isinstance(config, (str, Path)) else expand_inherit(config)
    unknown = sorted(set(raw) - set(_SECTIONS), key=str)  # keys of any YAML type (1:, null:)
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; known: {list(_SECTIONS)}")
    for name in _SECTIONS:
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise ConfigError(f"{name}: expected a mapping (the {name}: section), got {type(raw[name]).__name__}")
    data = dict(raw.get("data") or {})
    tcfg = from_dict(TrainConfig, raw.get("train") or {}, "train")
    _check_train_values(tcfg)
    if tcfg.batch_size <= 0 or tcfg.batch_size % 4:
        raise keyed_error(ConfigError(f"train.batch_size {tcfg.batch_size} must be a positive multiple of 4"),
                          "train.batch_size")
    if tcfg.amp not in ("auto", "bf16", "fp16", "off"):
        raise keyed_error(ConfigError(f"train.amp {tcfg.amp!r} must be auto, bf16, fp16 or off"), "train.amp")
    for key in ("total_steps", "warmup_steps"):
        if getattr(tcfg, key) < 0:
            raise keyed_error(ConfigError(f"train.{key} {getattr(tcfg, key)} must be >= 0"), f"train.{key}")
    for key in ("freeze", "init_parts"):
        unknown = sorted(set(getattr(tcfg, key)) - set(FREEZABLE))
        if unknown:
            raise keyed_error(ConfigError(f"train.{key}: unknown part(s) {unknown}; known: {list(FREEZABLE)}"),
                              f"train.{key}")
    if {"encoder", "decoder"} <= set(tcfg.freeze):  # nothing would train (the step failed in backward())
        raise ConfigError(f"train.freeze {list(tcfg.freeze)} leaves nothing to train: the encoder and the decoder are "
                          "what a run trains (the refinement head trains in voxface refine-train)")
    if not 0.0 <= tcfg.mirror <= 1.0:
        raise keyed_error(ConfigError(f"train.mirror {tcfg.mirror} must be a probability in [0, 1]"), "train.mirror")
    if not 0 <= tcfg.seed < 2**32:  # numpy's global generator (np.random.seed) takes no other seed
        raise keyed_error(ConfigError(f"train.seed {tcfg.seed} must be a whole number from 0 to {2**32 - 1}"),
                          "train.seed")
    if (tcfg.loss.swap > 0 or tcfg.loss.teacher > 0) and tcfg.loss.occupancy == 0 and tcfg.loss.near_surface == 0:
        raise ConfigError("train.loss.swap and train.loss.teacher weigh reconstructions built from the occupancy "
                          "and near_surface weights (voxface.losses), which are both 0 here: those terms would be "
                          "0; set swap and teacher to 0 (an encoder-only stage) or give occupancy or near_surface "
                          "a weight")
    if not needs_decoder(tcfg.loss) and "decoder" not in tcfg.freeze:
        raise ConfigError("no loss term decodes a shape (occupancy, near_surface, swap and teacher are 0), "
                          "so the decoder would not train: add it to train.freeze")
    model = raw.get("model")
    if model is None and tcfg.init_from:  # a stage on top of a checkpoint: its architecture
        model = _checkpoint_config(Path(tcfg.init_from).expanduser())
    mcfg = model_config(model or {})
    with torch.device("meta"):  # the parts check their values as they are built
        meta = create_model(mcfg)
    _check_model_fits(meta)
    decoder = meta.decoder
    if tcfg.loss.points > 0 and needs_decoder(tcfg.loss) and not hasattr(decoder, "logits_at"):
        raise ConfigError(f"train.loss.points needs a decoder with logits_at (deform); this one is "
                          f"{type(decoder).__name__}: set train.loss.points: 0")  # as at the first step
    cells = mcfg.decoder.resolution ** 3
    if tcfg.loss.points > cells and needs_decoder(tcfg.loss):  # a typo's extra zeros: the first step ran out
        # of memory drawing them ('use smaller batches'), after the data was built; below, it costs more than
        # the whole grid it estimates
        raise keyed_error(ConfigError(
            f"train.loss.points {tcfg.loss.points} is more than the {cells:,} cells of the model's "
            f"{mcfg.decoder.resolution}^3 grid (point mode estimates the grid's BCE from fewer cells than it has): "
            "lower it, or set it to 0 to score every cell"), "train.loss.points")
    if tcfg.mirror > 0 and abs(float(mcfg.frame.center_mm[0])) > 1e-6:  # the first step's error, after the run began
        raise ConfigError(f"train.mirror {tcfg.mirror} needs an occupancy grid centred on x = 0 (model.frame.center_mm "
                          f"x is {mcfg.frame.center_mm[0]}): set train.mirror 0 or centre the grid")
    return {"model": mcfg, "data": data, "train": tcfg}


def _check_model_fits(model: nn.Module) -> None:
    """Refuse (:class:`ConfigError`) a model whose training state (float32 weights, gradients and
    AdamW's two moments: 16 bytes a parameter) exceeds this machine's memory, naming its largest
    tensor: a typo such as ``z_id: 10000000000`` ended in the allocator's traceback."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: nothing to compare with
        return
    params = dict(model.named_parameters())
    need = 16 * sum(p.numel() for p in params.values())
    if need > memory:
        name, big = max(params.items(), key=lambda kv: kv[1].numel())
        raise ConfigError(f"the model has {need / 16:.3g} parameters, about {need / 2**30:,.0f} GiB to train, more than "
                          f"this machine's {memory / 2**30:,.0f} GiB; its largest tensor {name} {tuple(big.shape)}: "
                          "check the model: sizes")


def _resolve_resumed(config: str | Path | dict[str, Any], ck: dict[str, Any]) -> dict[str, Any]:
    """:func:`resolve_config` of a config given with a resume of ``ck``. A config whose model comes
    from ``train.init_from`` (no ``model:`` section) takes the model of the checkpoint resumed: a
    resume ignores ``init_from``, whose file may be gone since the run started (the resume failed
    with its ``checkpoint file not found``)."""
    try:
        raw = load_yaml(config) if isinstance(config, (str, Path)) else expand_inherit(config)
        t = raw.get("train")
        if (raw.get("model") is None and isinstance(t, dict) and t.get("init_from")
                and isinstance(ck.get("config"), dict)):
            raw = {**raw, "model": ck["config"]}
        return _resolve_config(raw)
    except ConfigError as e:  # the file of config's inherit_from chain its key is in
        raise error_in_config(e, config) from None


def check_data(cfg: dict[str, Any], progress: bool = True) -> tuple[Any, int, int]:
    """Build the training set of a resolved config (:func:`resolve_config`) and refuse, with a
    :class:`ConfigError`, loss terms its samples cannot feed (true coefficients, ``occ_swap``
    targets). Returns ``(dataset, n_id, n_exp)``: the coefficient counts of its first sample (0
    where the data has none). ``voxface train --dry-run`` calls it too, so a dry run refuses what
    the run would. ``progress``: a bar while a data folder's meshes are voxelised."""
    m, lcfg = cfg["model"], cfg["train"].loss
    train_ds = build_dataset(cfg["data"], "train", m, progress=progress)
    first = train_ds[0]
    n_id, n_exp = len(first.get("id_coeffs", ())), len(first.get("exp_coeffs", ()))
    if (lcfg.latent > 0 or lcfg.teacher > 0) and not np.any(first.get("id_coeffs", 0)):
        raise ConfigError("train.loss.latent and train.loss.teacher need the true coefficients, which "
                          "this data does not have (e.g. data.kind folder); set them to 0")
    for term in ("latent", "teacher"):  # before the run folder is started (it failed at the first step)
        if getattr(lcfg, term) > 0 and (n_id, n_exp) != (m.encoder.z_id, m.encoder.z_exp):
            raise ConfigError(f"train.loss.{term} needs model.encoder.z_id/z_exp equal to the data's coefficient "
                              f"counts ({n_id}/{n_exp}); the model has {m.encoder.z_id}/{m.encoder.z_exp}")
    if (lcfg.swap > 0 or lcfg.teacher > 0) and "occ_swap" not in first:  # before any step, any mode
        raise ConfigError("train.loss.swap/teacher > 0 need 'occ_swap' targets, which this data does not have "
                          "(data.kind folder cannot); set them to 0")
    return train_ds, n_id, n_exp


def _mirror_maps(data: dict[str, Any], n_id: int, n_exp: int) -> Any:
    """:func:`voxface.augment.mirror_maps` of the data's ICT-FaceKit model (``train.mirror``), for data of
    ``n_id``/``n_exp`` coefficients; :class:`ConfigError` where they cannot be mirrored."""
    from .augment import mirror_maps
    from .data.ict import load_ict

    if n_id == 0:
        raise ConfigError("train.mirror needs the true coefficients, which this data does not have; set it to 0")
    try:
        maps = mirror_maps(load_ict(data.get("ict_root")))
    except VoxfaceError as e:
        raise ConfigError(f"train.mirror needs ICT-FaceKit to mirror the labels: {_first_line(e)}") from None
    if maps.identity.shape[0] != n_id or len(maps.expression) != n_exp:
        raise ConfigError(f"train.mirror: the data has {n_id}/{n_exp} coefficients, ICT-FaceKit "
                          f"{maps.identity.shape[0]}/{len(maps.expression)} (it mirrors ICT-FaceKit's: synthetic "
                          "or cached data); set it to 0")
    return maps


def _check_train_values(t: TrainConfig) -> None:
    """Refuse values no run can use (each went through and failed later in a traceback, or was
    silently read as something else: a negative ``lr`` in AdamW, ``workers: -1`` in the DataLoader,
    ``prior_samples: 0`` when the prior is fitted, a negative loss weight maximising its term), and
    ``threads`` above the cores this process may use (:func:`voxface.device.usable_cores`)."""
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise keyed_error(ConfigError(f"train.lr {t.lr} must be a positive number"), "train.lr")
    for key in ("weight_decay", "grad_clip"):
        if not (math.isfinite(getattr(t, key)) and getattr(t, key) >= 0):
            raise keyed_error(ConfigError(f"train.{key} {getattr(t, key)} must be a number >= 0 (0 disables it)"),
                              f"train.{key}")
    for key in ("log_every", "val_every", "ckpt_every", "num_val", "workers", "threads"):
        if getattr(t, key) < 0:
            raise keyed_error(ConfigError(f"train.{key} {getattr(t, key)} must be >= 0"), f"train.{key}")
    from .device import check_threads

    try:
        check_threads(t.threads, "train.threads")
    except ConfigError as e:
        raise keyed_error(e, "train.threads") from None
    if t.prior_samples < 1:
        raise keyed_error(ConfigError(f"train.prior_samples {t.prior_samples} must be >= 1 (the latent prior and "
                                      "the mean-shape baseline are fitted on that many training items)"),
                          "train.prior_samples")
    if t.init_parts and not t.init_from:
        raise keyed_error(ConfigError(f"train.init_parts {list(t.init_parts)} names parts of train.init_from, which "
                                      "is not set"), "train.init_parts")
    for f in dataclasses.fields(LossConfig):
        v = getattr(t.loss, f.name)
        if isinstance(v, bool):
            continue
        if not (math.isfinite(v) and v >= 0):
            raise keyed_error(ConfigError(f"train.loss.{f.name} {v} must be a number >= 0 (0 disables the term)"),
                              f"train.loss.{f.name}")
    weights = [f.name for f in dataclasses.fields(LossConfig) if f.name not in ("near_surface_cells", "points", "cross")]
    if not any(getattr(t.loss, name) for name in weights):  # backward() of a 0 loss: only weight decay moved
        raise ConfigError(f"every train.loss weight is 0 ({', '.join(weights)}): nothing would train (AdamW's weight "
                          "decay alone would shrink the weights); give a term a weight")
    if t.loss.near_surface > 0 and t.loss.near_surface_cells == 0:  # an empty band: the term was 0 (grids) or
        # a second uniform sample (point mode), silently
        raise ConfigError(f"train.loss.near_surface {t.loss.near_surface} weighs a band of near_surface_cells 0 cells "
                          "around the surface, which is empty; set near_surface_cells to 1 or more, or near_surface 0")
    if t.loss.points == 1:  # its uniform half is empty: the occupancy term was a NaN mean
        raise keyed_error(ConfigError(f"train.loss.points {t.loss.points} must be 0 (whole grids) or >= 2 "
                                      "(half the points are uniform over the grid, half near the surface)"),
                          "train.loss.points")


#: What a step of an encoder stage reads from a training item (no occupancy).
ENCODER_STAGE_FIELDS = frozenset({"image", "id_coeffs", "exp_coeffs", "rotation", "scale", "translation",
                                  "identity", "index"})

#: Parts of a :class:`voxface.models.VoxFace` that ``train.freeze`` may name.
FREEZABLE = ("encoder", "decoder", "refiner")


def _load_voxface(path: str | Path) -> dict[str, Any]:
    """A voxface checkpoint (safe load); another project's file is refused in one line."""
    ck = load_checkpoint(path, map_location="cpu")
    if not _is_voxface(ck):
        raise _foreign_error(ck, Path(path))
    return ck


def _check_resumable(ck: dict[str, Any], path: Path, total_steps: int) -> None:
    """Refuse (:class:`CheckpointError` naming ``path``) a resume that would silently not continue the
    run: a checkpoint without resume state (a release, ``best.pth.tar``, an ``init-checkpoint``
    file: the optimizer and schedule would restart), or one past ``total_steps`` (nothing would
    train, yet its run's config and ``last.pth.tar`` would be rewritten)."""
    missing = [k for k in ("optimizer", "scheduler", "rng") if ck.get(k) is None]
    if missing:
        extra = ck.get("extra") if isinstance(ck.get("extra"), dict) else {}
        what = ("is a released checkpoint (`voxface release` stripped its optimizer, scheduler and RNG state)"
                if "released_from" in extra else
                f"holds weights only (no {', '.join(missing)} state, like best.pth.tar)")
        raise CheckpointError(
            f"{what}, so training cannot resume from it: resume from the run's {LAST}, or fine-tune from "
            f"these weights with `train: {{init_from: {path}}}` in a config and `voxface train --config` "
            "(a new optimizer, schedule and step count)", path, reason="not-resumable")
    step = int(ck.get("step") or 0)
    if step > total_steps:
        raise CheckpointError(
            f"reached step {step}, past the end of the run asked for (step {total_steps}, --steps or "
            f"train.total_steps): resuming would train nothing and rewrite its run; pass --steps above {step} "
            "to train further", path, reason="past-end")


#: Keys a config given with ``--resume`` may change: how the run goes on and where its files are, not what
#: it trains (``total_steps`` is ``--steps``; a resume ignores ``init_from``).
RESUME_MAY_CHANGE = frozenset({"train.total_steps", "train.log_every", "train.val_every", "train.ckpt_every",
                               "train.workers", "train.threads", "train.init_from", "data.path", "data.root",
                               "data.ict_root"})


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _check_same_run(cfg: dict[str, Any], ck: dict[str, Any], path: Path) -> str | None:
    """Refuse (:class:`ConfigError`; :func:`train` names the config file) a config given with a resume
    that differs from the run's own (``extra.run_config``) outside :data:`RESUME_MAY_CHANGE`: the
    optimizer and scheduler state carry the run's ``lr``, ``warmup_steps`` and ``weight_decay`` (a new
    value was silently ignored while config.yaml recorded it), and other keys would change the batches,
    the loss or the model of a run that ``--resume`` continues exactly. Returns the keys of
    :data:`RESUME_MAY_CHANGE` it changes, as one line to show (``None``: none)."""
    stored = (ck.get("extra") or {}).get("run_config")
    if not isinstance(stored, dict):
        return None
    try:
        old = _plain(resolve_config(_own_run_config(stored)))  # its threads may exceed the cores here
    except VoxfaceError:  # a config of an older version that no longer resolves: nothing to compare with
        return None
    new = _plain(cfg)
    # a data: key given its default value on one side and left out on the other is the same run
    old, new = (_flat({**c, "data": _data_with_defaults(c["data"])}) for c in (old, new))
    changed = sorted(k for k in old.keys() | new.keys() if k not in RESUME_MAY_CHANGE and old.get(k) != new.get(k))
    if changed:
        def value(d: dict[str, Any], k: str) -> str:  # a key the config leaves out takes its default
            return repr(d[k]) if k in d else "not set (the default)"

        shown = "; ".join(f"{k} {value(new, k)} (the run: {value(old, k)})" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(
            f"differs from the run {path} continues: {shown}{more}; a resume continues its run as configured "
            "(resume without --config to use the run's own, or start a new stage from its weights with "
            "train.init_from)")
    allowed = sorted(k for k in old.keys() | new.keys() if k in RESUME_MAY_CHANGE and k != "train.init_from"
                     and old.get(k) != new.get(k))  # (a resume ignores init_from)
    if not allowed:
        return None
    return "the run goes on with " + "; ".join(f"{k} {new.get(k)!r} (it had {old.get(k)!r})" for k in allowed)


def _data_with_defaults(data: Any) -> Any:
    """A ``data:`` section with the defaults of its kind filled in (toy, synthetic and folder sections: their
    config dataclasses), so that ``kind: synthetic`` and a section leaving ``kind`` out compare equal; a
    section that does not resolve, or of another kind (a cache's), comes back as it is."""
    from .data.folder import FolderDataConfig
    from .data.synthetic import SyntheticDataConfig
    from .data.toy import ToyDataConfig

    if not isinstance(data, dict):
        return data
    cls = {"toy": ToyDataConfig, "synthetic": SyntheticDataConfig, "folder": FolderDataConfig}.get(
        data.get("kind", "synthetic"))
    try:
        return data if cls is None else to_dict(from_dict(cls, data, "data"))
    except (ConfigError, TypeError):
        return data


def _own_run_config(run_config: Any) -> Any:
    """A checkpoint's ``extra.run_config`` to resume its run on this machine: ``train.threads`` above
    the cores this process may use (the run started on a larger machine) is lowered to them, as a
    config given with the resume may do (:data:`RESUME_MAY_CHANGE`); :func:`resolve_config` would
    refuse the run's own config. Anything else is returned as it is."""
    from .device import usable_cores

    t = run_config.get("train") if isinstance(run_config, dict) else None
    threads = t.get("threads") if isinstance(t, dict) else None
    if isinstance(threads, int) and not isinstance(threads, bool) and threads > usable_cores():
        return {**run_config, "train": {**t, "threads": usable_cores()}}
    return run_config


def _resolve_own(run_config: Any, path: str | Path) -> dict[str, Any]:
    """:func:`resolve_config` of the run config stored in the checkpoint ``path`` (a resume without a
    config). One that no longer resolves (keys of another voxface version) is a :class:`ConfigError`
    naming the checkpoint and how to go on; it named nothing (``train: unknown key(s) ...``)."""
    try:
        return resolve_config(run_config)
    except ConfigError as e:
        if e.path is not None:
            raise
        raise ConfigError(f"its training config does not resolve here ({e}); pass a config that describes "
                          "its run (--config)", path) from None


def _checkpoint_config(path: str | Path) -> dict[str, Any]:
    ck = _load_init_from(Path(path))
    if not isinstance(ck.get("config"), dict):
        raise CheckpointError("it holds no model config (train.init_from needs one)", path, reason="no-config")
    return ck["config"]


def _check_init_settings(theirs: Any, mcfg: Any, parts: tuple[str, ...], where: Path) -> None:
    """Refuse (:class:`ConfigError`) a decoder or refinement head from ``train.init_from`` trained on
    another canonical grid (``model.frame``) than the config's ``model:`` section says: the weights
    fit by shape, so they loaded silently and the run started far from the checkpoint (validation
    IoU 0.77 read as 0.30). (A new crop size for a trained encoder is a choice, not refused.)"""
    if not isinstance(theirs, dict) or not set(parts or FREEZABLE) & {"decoder", "refiner"}:
        return
    a, b = theirs.get("frame"), to_dict(mcfg).get("frame")
    if a is not None and a != b:
        raise ConfigError(f"train.init_from {where} was trained on another canonical grid (model.frame {a}) than the "
                          f"config's model.frame ({b}): its decoder's weights fit by shape but would be read on the "
                          "wrong grid; give the config its model.frame, or leave out the model: section to use the "
                          "checkpoint's")


def _load_init_from(path: Path) -> dict[str, Any]:
    """:func:`_load_voxface` of ``train.init_from``; a file that is not there says which key named it and
    that the path is relative to the current folder (not to the config, as ``inherit_from`` is)."""
    if not path.exists() and not path.is_symlink():  # (a broken link gets load_checkpoint's own message)
        raise CheckpointError(f"checkpoint file not found (train.init_from: a path relative to the current folder, "
                              f"{Path.cwd()}, not to the config)", path, reason="missing")
    return _load_voxface(path)


def _init_from_state(model: nn.Module, t: TrainConfig, mcfg: Any,
                     described_by: str) -> tuple[dict[str, dict[str, Any]], Any]:
    """The weights ``train.init_from`` gives ``model``, checked against it: ``{part: state dict}`` for
    each of ``train.init_parts`` (``{"": state dict}`` for the whole model), and the checkpoint's latent
    prior (``None`` without one). Raises what the run would (a checkpoint that is missing or does not
    fit, a part the model lacks, another canonical grid), so ``voxface train --dry-run`` (on a model on
    the meta device) refuses what the run refuses."""
    where = Path(t.init_from).expanduser()  # as data.path and data.root
    init_ck = _load_init_from(where)
    _check_init_settings(init_ck.get("config"), mcfg, t.init_parts, where)
    init = _clean_state_dict(init_ck["state_dict"], where)
    prior = init_ck.get("prior")
    del init_ck
    if not t.init_parts:
        _check_architecture(model, init, where, strict=True, described_by=described_by)
        return {"": init}, prior
    out = {}
    for part in t.init_parts:  # only these parts; each must fit, the rest keeps its fresh weights
        module = getattr(model, part)
        if module is None:
            raise ConfigError(f"train.init_parts names {part!r}, which this model does not have")
        out[part] = {k[len(part) + 1:]: v for k, v in init.items() if k.startswith(part + ".")}
        _check_architecture(module, out[part], where, strict=True, described_by=described_by)
    return out, prior


def _coefficient_names(prior: Any) -> dict[str, list[str]] | None:
    """``id_names`` / ``exp_names`` of a latent prior marked ``coefficient_coordinates`` (a decoder that reads
    its codes as the named coefficients: :func:`voxface.latent.expression_names`); ``None`` otherwise."""
    if not isinstance(prior, dict) or not prior.get("coefficient_coordinates") or prior.get("exp_names") is None:
        return None
    return {k: [str(x) for x in prior[k]] for k in ("id_names", "exp_names") if prior.get(k) is not None}


def _plain(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"model": to_dict(cfg["model"]), "data": to_dict(cfg["data"]), "train": to_dict(cfg["train"])}


# ------------------------------------------------------------------------------ schedules


class WarmupCosine:
    """LR factor for ``torch.optim.lr_scheduler.LambdaLR``: ``(step + 1) / (warmup + 1)`` during the
    warm-up (``step`` counts updates from 0: the first takes ``1 / (warmup + 1)``, never 0), then
    ``0.5 * (1 + cos(pi * progress))`` down to 0 at ``total`` steps (closed form, so a
    resumed schedule is exact). Plain attributes only: its state is ``weights_only``-safe."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = int(warmup), int(total)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        p = min(1.0, (step - self.warmup) / span)
        return 0.5 * (1.0 + math.cos(math.pi * p))


def warmup_warning(t: TrainConfig) -> str | None:
    """The warning (a ``UserWarning`` of :func:`train`, a ``warning:`` line of the command line) of a run
    whose warm-up does not end before its last update (``warmup_steps >= total_steps``, e.g. ``--steps``
    below the config's ``warmup_steps``): the rate only climbs, its peak ``lr * total_steps /
    (warmup_steps + 1)`` short of ``train.lr``, and no cosine decay follows (the run went on without a
    word). ``None`` for a run that reaches ``train.lr`` or trains no step. Not refused: a short smoke run
    of a long config (``--steps 2``) is such a run."""
    if t.total_steps <= 0 or t.warmup_steps < t.total_steps:
        return None
    peak = t.lr * WarmupCosine(t.warmup_steps, t.total_steps)(t.total_steps - 1)
    return (f"train.warmup_steps {t.warmup_steps} is not below train.total_steps {t.total_steps}: the learning "
            f"rate only warms up, to {peak:.3g} at the last step, never train.lr {t.lr:g}, and does not decay; "
            f"set train.warmup_steps below {t.total_steps}, or train.total_steps (--steps) above {t.warmup_steps}, "
            "for the full schedule")


class BatchPlan:
    """The batch of every step, as a pure function of the step (so resuming is exact).

    Step ``s`` of a rank is batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch`` of
    :class:`voxface.data.BlockSampler` ``(n, seed, rank, world)`` with that epoch set; an epoch
    has ``len(sampler) // batch`` steps (the tail is dropped).
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1):
        self.sampler = BlockSampler(n, seed=seed, shuffle=True, rank=rank, num_replicas=world)
        self.batch = int(batch)
        self.steps_per_epoch = len(self.sampler) // self.batch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the training set has {len(self.sampler)} items per rank, fewer than one batch "
                f"of {self.batch}; make data.num_train larger or train.batch_size smaller"
            )
        self._epoch: int | None = None
        self._order: list[int] = []

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def indices(self, step: int) -> list[int]:
        """Dataset indices of ``step`` (this rank), a list of ``batch`` ints."""
        e, k = divmod(step, self.steps_per_epoch)
        if e != self._epoch:
            self.sampler.set_epoch(e)
            self._order, self._epoch = list(self.sampler), e
        return self._order[k * self.batch : (k + 1) * self.batch]


class _StepBatches:
    """A DataLoader ``batch_sampler`` yielding the batches of steps ``start .. stop - 1``."""

    def __init__(self, plan: BatchPlan, start: int, stop: int):
        self.plan, self.start, self.stop = plan, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.start, self.stop):
            yield self.plan.indices(s)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


# ---------------------------------------------------------------------------------- prior


def compute_latent_prior(
    model: "VoxFace", dataset: Any, indices: list[int], batch_size: int = 64, top_k: int = 16
) -> dict[str, Any]:
    """The latent prior of a trained model, from the latents of ``dataset[i]["image"]``.

    Two parts, per latent (``z_id``, ``z_exp``):

    * **Gaussian**: ``*_mean``, ``*_std`` ``(D,)``: an independent (diagonal) normal per
      dimension, ``N(mean, std^2)``; sample or standardise codes with it.
    * **PCA**: ``*_pca = {"components": (k, D), "explained_variance": (k,),
      "explained_variance_ratio": (k,)}``: the top ``k = min(top_k, D, n - 1)`` principal
      directions (unit rows) of the centred codes and the variance along each, for sliders along
      the main modes of variation and for correlated sampling ``mean + sum_j c_j sqrt(var_j) v_j``.
      Each direction's sign is fixed (its largest loading positive, as scikit-learn's ``svd_flip``),
      not left to the SVD: a refit on another LAPACK walks "+3 sd" the same way.

    Where the items hold their ground-truth coefficients (``id_coeffs``, ``exp_coeffs``: the toy,
    synthetic and cached data), the principal directions are correlated with them too
    (:func:`voxface.latent.record_correlations`), so that they carry names.

    Returns the ``model.prior`` dict (float32 CPU tensors, ``kind = "gaussian+pca"``,
    ``num_samples``); ``weights_only``-safe. Runs in eval mode, float32, without gradients.

    Raises :class:`~voxface.errors.InputError` for no ``indices`` or a ``batch_size`` below 1 (they
    failed in ``torch.cat`` and ``range``).
    """
    from .errors import InputError

    if len(indices) == 0:
        raise InputError("compute_latent_prior: indices is empty (the prior is fitted on one or more items)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"compute_latent_prior: batch_size must be a whole number >= 1, got {batch_size!r}")
    modes = {m: m.training for m in model.modules()}  # each module's own: frozen parts stay in eval mode
    model.eval()
    dev = model.device
    zs_id, zs_exp = [], []
    cs: dict[str, list] = {"z_id": [], "z_exp": []}  # ground-truth coefficients, where the items have them
    try:
        with torch.no_grad():
            for i in range(0, len(indices), batch_size):
                items = [dataset[j] for j in indices[i : i + batch_size]]
                img = default_collate([it["image"] for it in items]).to(dev).float()
                lat = model.encode(img)
                zs_id.append(lat.z_id.float().cpu())
                zs_exp.append(lat.z_exp.float().cpu())
                if all("id_coeffs" in it and "exp_coeffs" in it for it in items):
                    cs["z_id"].append(torch.as_tensor(np.stack([it["id_coeffs"] for it in items])))
                    cs["z_exp"].append(torch.as_tensor(np.stack([it["exp_coeffs"] for it in items])))
    finally:
        for m, training in modes.items():
            m.training = training
    prior: dict[str, Any] = {"kind": "gaussian+pca", "num_samples": len(indices)}
    for name, zs in (("z_id", zs_id), ("z_exp", zs_exp)):
        z = torch.cat(zs).double()
        mean = z.mean(0)
        std = z.std(0, unbiased=True) if len(z) > 1 else torch.zeros_like(mean)
        zc = z - mean
        _, s, vh = torch.linalg.svd(zc, full_matrices=False)
        k = max(0, min(top_k, z.shape[1], len(z) - 1))
        vh = _sign_fixed(vh[:k])
        var = s[:k] ** 2 / max(1, len(z) - 1)
        total = zc.pow(2).sum() / max(1, len(z) - 1)
        prior[f"{name}_mean"] = mean.float()
        prior[f"{name}_std"] = std.float()
        prior[f"{name}_pca"] = {
            "components": vh.float().contiguous(),
            "explained_variance": var.float(),
            "explained_variance_ratio": (var / total.clamp_min(1e-30)).float(),
        }
    if len(cs["z_exp"]) == len(zs_exp) and len(indices) >= 3:  # every item knew its coefficients: name the directions
        from .latent import _dataset_names, record_correlations

        coeffs = {k: torch.cat(v) for k, v in cs.items()}
        id_names, exp_names = _dataset_names(dataset, int(coeffs["z_exp"].shape[1]))
        record_correlations(prior, {"z_id": torch.cat(zs_id), "z_exp": torch.cat(zs_exp)}, coeffs,
                            id_names=id_names, exp_names=exp_names)
    return prior


# ---------------------------------------------------------------------------- small helpers


def _sign_fixed(rows: torch.Tensor) -> torch.Tensor:
    """``rows (k, D)`` (principal directions) each turned so that its largest-magnitude entry is
    positive (the first of equal ones): an SVD's signs are arbitrary, and may differ between LAPACK
    builds and runs."""
    if rows.numel() == 0:
        return rows
    top = rows.gather(1, rows.abs().argmax(dim=1, keepdim=True))  # (k, 1)
    return rows * torch.where(top < 0, -1.0, 1.0).to(rows.dtype)


def _rng_state() -> dict[str, Any]:

    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any] | None) -> None:

    if not state:
        return
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    n = state.get("numpy")
    if n:
        np.random.set_state({
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        })
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX, through oneDNN).

    Without it, bf16 autocast falls back to emulated kernels: measured here (AVX2 only), a
    3D-convolution decoder's training step ran about 50x *slower* than in float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


def _amp_dtype(amp: str, device: "torch.device") -> "torch.dtype | None":
    """The autocast dtype of ``train.amp`` on ``device`` (``None``: float32)."""
    if amp == "off":
        return None
    if device.type == "cpu":
        if amp == "fp16":
            raise ConfigError("train.amp 'fp16' needs CUDA; use 'auto' or 'bf16' on the CPU")
        if amp == "auto" and not cpu_has_fast_bf16():
            return None
        return torch.bfloat16
    if device.type == "cuda":
        if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    return None


def state_digest(module: "nn.Module") -> str:
    """SHA-256 (hex) of a module's state dict: names, dtypes, shapes and raw bytes."""
    import hashlib


    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _StopFlag:
    """SIGINT/SIGTERM: ask the loop to stop after the current step; a second SIGINT aborts. ``announce``:
    print the one line saying so (rank 0 only: under torchrun every rank gets the signal)."""

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce
        self.requested = False
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            self.restore()
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum
        if not self.announce:
            return
        print(
            f"\n{signal.Signals(signum).name}: finishing the current step and writing "
            f"{LAST} (press Ctrl-C again to abort)",
            file=sys.stderr, flush=True,
        )

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def restore(self) -> None:
        for s, h in self._old.items():
            try:
                signal.signal(s, h)
            except ValueError:
                pass
        self._old.clear()


def _read_log(path: Path, max_step: int) -> list[str]:
    """Lines of an existing log whose step is at most ``max_step`` (broken lines dropped)."""
    keep: list[str] = []
    if not path.exists():
        return keep
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= max_step:
            keep.append(line)
    return keep


def _plot(path: Path, loss_history: list[dict[str, float]], val_history: list[list[float]], mean_iou: float) -> None:
    """Loss (log scale, raw and smoothed) and validation IoU against step; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.asarray([r["step"] for r in loss_history], dtype=np.float64)
    if len(loss_history):
        y = np.asarray([r["total"] for r in loss_history], dtype=np.float64)
        w = max(1, len(y) // 50)  # under 100 steps no mean is drawn: the steps' own line then at full strength
        ax.plot(steps, y, color="tab:blue", alpha=0.25 if w > 1 else 1.0, lw=0.8 if w > 1 else 1.6, label="loss (step)")
        if w > 1:
            sm = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1 :], sm, color="tab:blue", lw=1.6, label=f"loss ({w}-step mean)")
        if np.all(y > 0):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    if val_history:
        v = np.asarray(val_history, dtype=np.float64)
        ax2.plot(v[:, 0], v[:, 1], "o-", color="tab:orange", label="val IoU")
    if np.isfinite(mean_iou):
        ax2.axhline(mean_iou, color="tab:gray", ls="--", lw=1, label="mean-shape IoU")
    ax2.set_ylabel("validation IoU (threshold 0.5)")
    shown = [v[1] for v in val_history] + ([mean_iou] if np.isfinite(mean_iou) else [])
    ax2.set_ylim(max(0.0, min(shown, default=0.0) - 0.05), 1.0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())  # errors name `path`; no temporary file is left


# ------------------------------------------------------------------------------ main entry


def train(
    config: str | Path | dict[str, Any] | None,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    *,
    steps: int | None = None,
    stop_at: int | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a :class:`voxface.models.VoxFace` (see the module docstring for what is written).

    Args:
        config: a YAML path or dict with ``model``, ``data``, ``train`` sections; ``None`` with
            ``resume`` reuses the config stored in the checkpoint.
        out_dir: run directory (created); default: the checkpoint's folder when resuming, else
            ``runs/<config file stem>`` (``runs/train`` for dicts).
        resume: a ``last.pth.tar`` to continue from (weights, optimizer, scheduler, step, RNG). One
            of a run that finished (it reached its own ``total_steps`` and ``steps`` asks for no more)
            trains nothing and writes nothing: a ``note:`` line on stderr says so, and the result is
            the run's, from its checkpoint (``steps_run`` 0, ``out_dir`` the checkpoint's folder).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``; under DDP
            on CUDA each rank uses ``cuda:LOCAL_RANK``.
        progress: show a tqdm bar (rank 0) with the live loss and batch IoU.
        steps: overrides ``train.total_steps`` (the cosine schedule follows it); an int >= 0.
        stop_at: pause once this global step is reached, writing ``last.pth.tar`` as an
            interruption would (for tests and time-sliced jobs); the schedule is unchanged.
        overwrite: start afresh in an ``out_dir`` that holds another run (its ``last.pth.tar``,
            ``best.pth.tar`` or ``log.jsonl``), removing that run's files (:data:`RUN_FILES`, and
            nothing else) once this run is set up (a run that fails to start leaves them).
            Without it such a folder is refused before anything runs, unless this call resumes
            the run that is there: a new run must neither truncate the earlier log nor leave its
            ``best.pth.tar`` looking like its own.

    Raises:
        VoxfaceError: ``out_dir`` holds another run and ``overwrite`` is False (one line naming
            the folder and how to go on), or cannot be written into (a file there or among its
            parents; checked before the data is built); ``ConfigError`` and ``CheckpointError`` for
            bad inputs; ``InputError`` / ``InputTypeError`` for ``steps`` or ``stop_at`` that are
            not whole numbers >= 0.

    Returns:
        :class:`TrainResult` (on DDP ranks other than 0 its paths are ``None``).
    """

    steps, stop_at = _step_count("steps", steps), _step_count("stop_at", stop_at)
    ck: dict[str, Any] | None = None
    described_by = "its training config"  # a resume: the checkpoint's own run config
    if resume is None:  # train.init_from: the model is this run's config's, not the init_from file's own
        described_by = f"the training config {config}" if isinstance(config, (str, Path)) else "the training config"
    own_config = config is None  # a resume with the checkpoint's own config: nothing to compare
    if resume is not None:
        ck = _load_voxface(resume)  # another project's checkpoint is refused before anything runs
        if config is not None:
            described_by = f"the training config {config}" if isinstance(config, (str, Path)) else "the training config"
        else:
            config = (ck.get("extra") or {}).get("run_config")
            if config is None:
                if any(ck.get(k) is None for k in ("optimizer", "scheduler", "rng")):  # no config would help
                    _check_resumable(ck, Path(resume), 0)
                raise ConfigError("the checkpoint holds no training config; pass one", resume)
            config = _own_run_config(config)
    if config is None:
        raise ConfigError("train() needs a config (or a checkpoint to resume)")
    if own_config:
        cfg = _resolve_own(config, resume)
    else:
        cfg = resolve_config(config) if ck is None else _resolve_resumed(config, ck)
    if steps is not None:
        cfg["train"].total_steps = steps
    if out_dir is None:
        if resume is not None:
            out_dir = Path(resume).parent
        else:
            out_dir = Path("runs") / (Path(config).stem if isinstance(config, (str, Path)) else "train")
    if int(os.environ.get("RANK", "0")) == 0:  # only rank 0 writes
        _check_run_folder(Path(out_dir))  # now, not after the data is built (minutes on synthetic data)
    replace = _claim_run_folder(Path(out_dir), None if resume is None else Path(resume), overwrite,
                                cfg["train"].init_from, config)

    finished = ck is not None and _finished_run(ck, cfg["train"].total_steps)
    threads_before = torch.get_num_threads()
    run = _Run(cfg, Path(out_dir), device, progress)  # no side effects until setup()
    try:
        try:
            run.setup(ck, None if resume is None else Path(resume), described_by, compare_config=not own_config,
                      finished=finished)
        except ConfigError as e:  # a data: section the dataset refuses: name the config file as resolve_config does
            if e.path is None and isinstance(config, (str, Path)):
                raise ConfigError(str(e), config) from None
            raise
        del ck
        if finished:  # checked as a resume is (above), but nothing to train: the run's files are left as they
            # are (nothing is written: a resume used to rewrite its last.pth.tar and log a second start and end)
            return run.finished_result(Path(resume))
        if run.is_main:  # before anything there is removed or written: one trainer per folder
            run.lock()
            if (short := warmup_warning(cfg["train"])) is not None:  # (a run refused above: no word of it)
                warnings.warn(short, UserWarning, stacklevel=2)  # the command line: one `warning:` line
        if replace and run.is_main:  # only now that this run is set up: a failed start leaves the earlier run
            for name in RUN_FILES:
                (Path(out_dir) / name).unlink(missing_ok=True)
        return run.loop(stop_at, resumed=resume is not None, source=None if resume is None else Path(resume).parent)
    finally:
        run.close()
        torch.set_num_threads(threads_before)


def _finished_run(ck: dict[str, Any], total_steps: int) -> bool:
    """Whether the resume checkpoint ``ck`` is its run's end: it reached the ``total_steps`` its own run
    was configured for, and the resume asks for no more. (A run stopped at step 30 of 40 and resumed
    with ``--steps 30`` is not: that resume finishes it there, validating and fitting its prior.)"""
    run = (ck.get("extra") or {}).get("run_config") if isinstance(ck.get("extra"), dict) else None
    t = run.get("train") if isinstance(run, dict) else None
    own_total = t.get("total_steps") if isinstance(t, dict) else None
    step = int(ck.get("step") or 0)
    return isinstance(own_total, int) and not isinstance(own_total, bool) and step == own_total == total_steps


def finished_note(path: Path, step: int, out_dir: Path | None = None) -> str:
    """The ``note:`` line of a resume of a finished run (:func:`_finished_run`), the run's and the dry
    run's: nothing to train, its files left, how to train further, and an ``out_dir`` other than the
    checkpoint's folder said to be unused (the run's files are not carried there)."""
    unused = ""
    if out_dir is not None and Path(out_dir).resolve() != Path(path).parent.resolve():
        unused = f" ({out_dir} is not used)"
    return (f"note: {path}: its run finished at step {step}: nothing to train, and its files are left as they "
            f"are{unused}; pass --steps above {step} to train further")


def _step_count(name: str, value: Any) -> int | None:
    """``train(steps=..., stop_at=...)``: ``None``, or a whole number >= 0 (a negative ``steps`` trained
    nothing and reported the run finished, recording ``total_steps: -5``; ``"abc"`` was a ValueError
    of ``int()``). Raises :class:`InputTypeError` / :class:`InputError` (:func:`voxface.errors.check_integer`)."""
    from .errors import check_integer as _integer

    return None if value is None else _integer(name, value, 0)


#: Held (``flock``) by the trainer writing a run folder: one at a time (kept there, as data caches keep theirs).
LOCK = ".train.lock"

#: What a run writes into its folder: what ``train(overwrite=True)`` removes before a new run.
RUN_FILES = (LAST, BEST, "config.yaml", "log.jsonl", "loss.png")


def _check_run_folder(out: Path) -> None:
    """Refuse (:class:`VoxfaceError` naming ``out``) a run folder that cannot be written into
    (:func:`voxface.mesh.output_problem`). Creates nothing."""
    from .mesh import output_problem

    problem = output_problem(out, folder=True)
    if problem is not None:
        raise VoxfaceError(problem, out)


def _claim_run_folder(out: Path, resume: Path | None, overwrite: bool, init_from: str = "",
                      config: Any = None) -> bool:
    """Whether ``out`` holds another run's files that this run replaces (``overwrite``; :func:`train`
    removes them once the run is set up, so a run that fails to start leaves them); refuses such a
    folder without ``overwrite`` unless the run there is the one resumed. See :func:`train`.
    ``init_from`` (``train.init_from`` of a new run): one of the files ``overwrite`` would remove is
    refused, as the weights the run starts from (the earlier stage was removed without a word).
    ``config`` (the config file given): refused where it, or a file of its ``inherit_from`` chain, is the
    ``config.yaml`` of an ``out`` that holds no run (``-c config.yaml -o .``: the user's own file), which the
    run replaces with its resolved copy."""
    earlier = [n for n in (LAST, BEST, "log.jsonl") if (out / n).exists()]
    if not earlier:
        if isinstance(config, (str, Path)) and (out / "config.yaml").is_file():
            from .config import _load_layers

            try:
                chain = [path for path, _ in _load_layers(config)]
            except VoxfaceError:  # (resolved before this: the file alone, should it have changed since)
                chain = [Path(config)]
            for path in chain:
                try:
                    same = os.path.samefile(out / "config.yaml", path)
                except OSError:
                    same = False
                if same:  # its comments and inherit_from were replaced without a word
                    read = str(config) if path == chain[0] else f"{path}, inherited by {config}"
                    raise VoxfaceError(f"its config.yaml is the config this run reads ({read}), which the run "
                                       "would replace with its resolved copy: write into another --out, or move "
                                       "the config out of the folder", out)
        return False
    if resume is not None and resume.resolve().parent == out.resolve():
        return False  # the run there goes on
    if not overwrite:
        go_on = (f"continue it with --resume {out / LAST}" if LAST in earlier
                 else "it left no checkpoint to continue from (it stopped before its first)")
        raise VoxfaceError(f"holds an earlier run ({', '.join(earlier)}): {go_on}, write into another --out, or "
                           "pass --overwrite to replace it", out)
    if resume is None and init_from:
        source = Path(init_from).expanduser().resolve()
        for name in RUN_FILES:
            if (out / name).resolve() == source:
                raise VoxfaceError(f"holds {name}, the checkpoint train.init_from starts this run from, which "
                                   f"--overwrite would remove: copy it out of the folder and point train.init_from "
                                   "there, or write into another --out", out)
    return True


class _Run:
    """The state of one :func:`train` call; methods in the order they run."""

    def __init__(self, cfg: dict[str, Any], out: Path, device: str, progress: bool):
        self.t_start = time.perf_counter()
        self.cfg, self.tcfg, self.mcfg = cfg, cfg["train"], cfg["model"]
        self.lcfg: LossConfig = self.tcfg.loss
        self.out, self.progress = out, progress
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        self.device_arg = device
        self.own_pg = False
        self.log_f: Any = None
        self.lock_f: Any = None
        self.bar: Any = None
        self.stop = _StopFlag(announce=self.is_main)
        self.per_rank = self.tcfg.batch_size // self.world
        self.paths = {k: out / v for k, v in dict(
            last=LAST, best=BEST, config="config.yaml", log="log.jsonl", plot="loss.png").items()}
        # progress and history (restored on resume)
        self.step = 0
        #: one record per step: {"step", "lr", every loss term, "iou"} (deterministic values only)
        self.loss_history: list[dict[str, float]] = []
        self.val_history: list[list[float]] = []
        self.best_iou, self.best_step = -1.0, -1
        self.final_iou = float("nan")
        self.elapsed_before = 0.0
        self.mean_shape_iou = float("nan")
        #: the names of a frozen init_from decoder's coefficient coordinates (kept by the codes it reads)
        self.coefficient_names: dict[str, list[str]] | None = None

    # ---- setup
    def setup(self, ck: dict[str, Any] | None, ck_path: Path | None = None,
              described_by: str = "its training config", compare_config: bool = False,
              finished: bool = False) -> None:
        """Threads, process group, seeds, model, data, optimizer; then the resume state.

        A resume checkpoint whose weights do not fit the model (``ck_path`` for the message) raises
        :class:`~voxface.errors.ArchitectureMismatchError` before the data is built or anything is
        written; resume state that cannot be restored otherwise raises a ``CheckpointError``.
        ``finished``: ``ck`` is its run's end (:func:`_finished_run`): checked as any resume, but the
        validation set, rendered up front (minutes of synthetic faces), is not built: nothing is run."""
        t, m = self.tcfg, self.mcfg
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        if t.batch_size % (4 * self.world):
            raise ConfigError(
                f"train.batch_size {t.batch_size} must split into whole blocks of 4 on each of "
                f"{self.world} ranks"
            )
        self.dev = resolve_device(self.device_arg)
        if self.world > 1:
            if self.dev.type == "cuda":
                self.dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.dev)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.dev.type == "cuda" else "gloo")
                self.own_pg = True
        self.amp_dtype = _amp_dtype(t.amp, self.dev)
        random.seed(t.seed)
        np.random.seed(t.seed)
        torch.manual_seed(t.seed)
        self.model = create_model(m).to(self.dev)
        state = None
        if ck is not None:
            where = ck_path if ck_path is not None else Path("<checkpoint>")
            state = _clean_state_dict(ck["state_dict"], where)
            _check_architecture(self.model, state, where, strict=True, described_by=described_by)
            _check_resumable(ck, where, t.total_steps)
            if compare_config:
                changes = _check_same_run(self.cfg, ck, where)
                if changes and self.is_main:  # what the config changes, said (it went on without a word)
                    print(f"note: {changes}", file=sys.stderr, flush=True)
        elif t.init_from:  # start from another run's weights (float16 releases are cast up)
            states, init_prior = _init_from_state(self.model, t, m, described_by)
            for part, sub in states.items():
                (getattr(self.model, part) if part else self.model).load_state_dict(sub)
            if "decoder" in t.freeze and "decoder" in (t.init_parts or FREEZABLE):
                self.coefficient_names = _coefficient_names(init_prior)
        self.frozen = self._freeze(t.freeze)
        if self.is_main and self.model.refiner is not None and "decoder" not in t.freeze:
            print("warning: this run trains the decoder, not the refinement head that reads its features (no loss "
                  "term here does): the head of the checkpoints it writes will not match their decoder; train it "
                  "afterwards with voxface refine-train", file=sys.stderr, flush=True)
        self.train_ds, n_id, n_exp = check_data(self.cfg, progress=self.progress and self.is_main)
        self.prior_idx = list(range(min(t.prior_samples, len(self.train_ds))))
        self._mean_occ: np.ndarray | None = None
        fresh_decoder = ck is None and (not t.init_from or bool(t.init_parts) and "decoder" not in t.init_parts)
        if fresh_decoder and hasattr(self.model.decoder, "init_template"):
            # the template starts as the training set's mean occupancy (identical on every rank), also for a
            # decoder that init_parts leaves fresh (it started at logits 0 everywhere, not at the mean head)
            self.model.decoder.init_template(torch.from_numpy(self.mean_occupancy()))
        self.id_weights = self._id_weights(n_id) if self.lcfg.latent > 0 else None
        self.mirror_maps = _mirror_maps(self.cfg["data"], n_id, n_exp) if t.mirror > 0 else None
        self.aux = (
            AuxHeads(m.encoder.z_id, m.encoder.z_exp, n_id, n_exp).to(self.dev)
            if self.lcfg.coeff > 0 and n_id > 0 and n_exp > 0 else None
        )
        # a per-rank stream for dropout and the like; the model init above is the same everywhere
        torch.manual_seed(t.seed + 1_000_003 * self.rank)
        self.net = _TrainNet(self.model, self.aux, self.lcfg)
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.ndim >= 2]
        no_decay = [p for p in trainable if p.ndim < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=t.lr,
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, WarmupCosine(t.warmup_steps, t.total_steps))
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.dev.type == "cuda"
        )
        if ck is not None:
            try:
                self._restore(ck, state)
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
                # e.g. optimizer or auxiliary-head state of another loss setup than the config's
                raise CheckpointError(f"cannot resume from it: {_first_line(e)}", ck_path,
                                      reason="resume-state") from None
        self.plan = BatchPlan(len(self.train_ds), self.per_rank, t.seed * 7919 + 17, self.rank, self.world)
        self.val_batches: list[dict[str, Any]] = []
        if self.is_main and not finished:
            val_ds = build_dataset(self.cfg["data"], "val", m, progress=self.progress)
            nv = len(val_ds) if t.num_val <= 0 else min(t.num_val, len(val_ds))
            self.val_batches = _collate_val(val_ds, nv, max(4, self.per_rank))
            if not self.val_batches:
                print(f"warning: {_no_validation(self.cfg['data'])}", file=sys.stderr, flush=True)
            if not math.isfinite(self.mean_shape_iou):
                self.mean_shape_iou = _mean_shape_iou(
                    self.mean_occupancy() if self.prior_idx else None, self.val_batches)

    def _freeze(self, names: tuple[str, ...]) -> list[nn.Module]:
        """``requires_grad_(False)`` on the named parts; returns them (kept in eval mode)."""
        frozen = []
        for name in names:
            part = getattr(self.model, name)
            if part is None:  # e.g. no refinement head: nothing to freeze
                continue
            part.requires_grad_(False)
            frozen.append(part)
        return frozen

    def train_mode(self) -> None:
        """``model.train()`` with the frozen parts in eval mode."""
        self.model.train()
        for part in self.frozen:
            part.eval()

    def mean_occupancy(self) -> np.ndarray:
        """Fraction ``(R, R, R)`` float32 of the ``prior_idx`` training items occupying each cell
        (read once: the template's start and the mean-shape baseline). The items are counted one at a
        time into one float32 grid (exact: 0/1 counts below 2**24), never stacked: the stack and its
        float32 copy took ``5 * n * R^3`` bytes (320 MB for 256 items of 64^3, 20 GB at 256^3)."""
        if self._mean_occ is None:
            total: np.ndarray | None = None
            for j in self.prior_idx:
                occ = np.asarray(self.train_ds[j]["occ"])
                if total is None:
                    total = occ.astype(np.float32)  # a copy: the item's own array is left as it is
                else:
                    total += occ
            assert total is not None  # prior_samples >= 1 (_check_train_values) and the data is not empty
            self._mean_occ = total / np.float32(len(self.prior_idx))
        return self._mean_occ

    def _id_weights(self, n_id: int) -> torch.Tensor:
        """Per-mode weights of the ``latent`` term: each identity mode's effect on the canonical
        head (:func:`voxface.data.head.identity_mode_weights`) when the ICT model can be loaded
        and has ``n_id`` modes, else ones."""
        from .data.head import HeadModel, identity_mode_weights
        from .data.ict import load_ict

        try:
            w = identity_mode_weights(HeadModel(load_ict(self.cfg["data"].get("ict_root"))))
        except VoxfaceError as e:
            if self.is_main:
                print(f"warning: latent loss without per-mode weights ({_first_line(e)})", file=sys.stderr)
            w = np.ones(n_id, np.float32)
        if len(w) != n_id:
            w = np.ones(n_id, np.float32)
        return torch.from_numpy(w).to(self.dev)

    def _mirrored(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's batch with whole blocks mirrored (``train.mirror``; a pure function of seed,
        step and rank, so a resumed run mirrors the same samples)."""
        from .augment import block_flips, mirror_batch

        key = np.random.SeedSequence([int(self.tcfg.seed), self.step, self.rank, 0x6D6972]).generate_state(1)[0]
        flips = block_flips(len(batch["image"]), self.tcfg.mirror, torch.Generator().manual_seed(int(key)))
        return mirror_batch(batch, flips, self.mirror_maps, float(self.mcfg.frame.center_mm[0]))

    def _points(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Point mode: the step's sampled cells (a pure function of seed, step and rank), their
        centres and targets for ``occ`` and ``occ_swap``."""
        from .losses import point_targets, sample_cells

        n, cells = self.lcfg.points, self.lcfg.near_surface_cells
        g = torch.Generator().manual_seed(int(self.tcfg.seed) * 1_000_003 + self.step * 1009 + self.rank)
        out = {}
        for key, pts, tgt in (("occ", "points", "pts_occ"), ("occ_swap", "swap_points", "pts_swap")):
            if key in batch:
                idx = sample_cells(batch[key], n, cells, g)
                out[pts], out[tgt] = point_targets(batch[key], idx)
        return out

    def _restore(self, ck: dict[str, Any], state: Any = None) -> None:
        self.model.load_state_dict(ck["state_dict"] if state is None else state)
        extra = ck.get("extra") or {}
        if self.aux is not None and extra.get("aux_heads") is not None:
            self.aux.load_state_dict(extra["aux_heads"])
        if ck.get("optimizer") is not None:
            self.opt.load_state_dict(ck["optimizer"])
        if ck.get("scheduler") is not None:
            self.sched.load_state_dict(ck["scheduler"])
            if self.sched.lr_lambdas[0].total != self.tcfg.total_steps:  # --steps extends (or shortens) the run
                for lam in self.sched.lr_lambdas:
                    lam.total = self.tcfg.total_steps
                # the optimizer came back with the old schedule's rate for the next step (0 past its end):
                # the next update takes the new schedule's
                rates = [base * lam(self.sched.last_epoch)
                         for base, lam in zip(self.sched.base_lrs, self.sched.lr_lambdas)]
                for group, rate in zip(self.opt.param_groups, rates):
                    group["lr"] = rate
                self.sched._last_lr = rates
        if self.scaler.is_enabled() and extra.get("grad_scaler"):
            self.scaler.load_state_dict(extra["grad_scaler"])
        self.step = int(ck.get("step") or 0)
        self.loss_history = [dict(r) for r in (ck.get("loss_history") or [])]
        self.val_history = [[float(x) for x in v] for v in extra.get("val_history", [])]
        self.best_iou = float(extra.get("best_val_iou", -1.0))
        self.best_step = int(extra.get("best_step", -1))
        if self.val_history:
            self.final_iou = self.val_history[-1][1]
        self.elapsed_before = float(extra.get("elapsed_s", 0.0))
        self.coefficient_names = extra.get("coefficient_names")
        self.mean_shape_iou = float(extra.get("mean_shape_iou", float("nan")))
        saved_world = int((extra.get("data_position") or {}).get("world_size", self.world))
        if saved_world != self.world and self.is_main:
            print(f"warning: resuming a {saved_world}-rank run on {self.world} ranks: the batch "
                  "order differs from the original run's", file=sys.stderr)
        rng = ck.get("rng") or {}
        _set_rng_state(rng.get(f"rank{self.rank}") or rng)

    # ---- helpers
    def elapsed(self) -> float:
        return round(self.elapsed_before + time.perf_counter() - self.t_start, 3)

    def autocast(self) -> Any:

        return torch.autocast(self.dev.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def log(self, rec: dict[str, Any]) -> None:
        if self.log_f is not None:
            self.log_f.write(json.dumps(_json_safe(rec), allow_nan=False) + "\n")
            self.log_f.flush()

    def validate(self) -> None:
        """Mean IoU (threshold 0.5) and BCE on the cached val batches; updates best (rank 0)."""

        model = self.model
        model.eval()
        ious, bce_sum = [], 0.0
        id_se = exp_se = 0.0  # latent vs true coefficients (unweighted MSE), where they compare
        n_coef = 0
        with torch.no_grad():
            for b in self.val_batches:
                img = b["image"].to(self.dev, non_blocking=True)
                occ = b["occ"].to(self.dev, non_blocking=True).unsqueeze(1)
                with self.autocast():
                    lat = model.encode(img)
                    logits = model.decode(lat.z_id, lat.z_exp)
                ious.append(batch_iou(logits, occ).cpu())
                bce_sum += float(occupancy_terms(logits, occ, 0)[0]) * len(img)
                if "id_coeffs" in b and b["id_coeffs"].shape[1:] == lat.z_id.shape[1:]:
                    id_se += float((lat.z_id.float().cpu() - b["id_coeffs"]).pow(2).mean(1).sum())
                    exp_se += float((lat.z_exp.float().cpu() - b["exp_coeffs"]).pow(2).mean(1).sum())
                    n_coef += len(img)
        self.train_mode()
        n = sum(len(b["image"]) for b in self.val_batches)
        self.final_iou = float(torch.cat(ious).mean())
        self.val_history.append([float(self.step), self.final_iou])
        if self.final_iou > self.best_iou:
            self.best_iou, self.best_step = self.final_iou, self.step
            self.save_best()
        rec = {"event": "val", "step": self.step, "val_iou": self.final_iou,
               "val_bce": bce_sum / max(1, n), "best_val_iou": self.best_iou,
               "mean_shape_iou": self.mean_shape_iou, "time": self.elapsed()}
        if n_coef:
            rec.update(val_id_mse=id_se / n_coef, val_exp_mse=exp_se / n_coef)
        self.log(rec)
        self.plot()

    def plot(self) -> None:
        """Redraw loss.png. A picture that cannot be written warns (one line) and training goes on:
        the checkpoints and the log are what a run must not lose."""
        try:
            _plot(self.paths["plot"], self.loss_history, self.val_history, self.mean_shape_iou)
        except VoxfaceError as e:
            warnings.warn(f"{e} (training goes on)", RuntimeWarning, stacklevel=2)

    def _extra(self) -> dict[str, Any]:
        aux = self.aux
        return {
            "aux_heads": None if aux is None else {k: v.detach().cpu() for k, v in aux.state_dict().items()},
            "aux_dims": None if aux is None else list(aux.dims),
            "grad_scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "run_config": _plain(self.cfg),
            "data_position": {
                "step": self.step, "epoch": self.plan.epoch_of(self.step),
                "batch_in_epoch": self.step % self.plan.steps_per_epoch,
                "steps_per_epoch": self.plan.steps_per_epoch, "world_size": self.world,
                "per_rank_batch": self.per_rank,
            },
            "val_history": [list(v) for v in self.val_history],
            "best_val_iou": self.best_iou, "best_step": self.best_step,
            "mean_shape_iou": self.mean_shape_iou,
            "elapsed_s": self.elapsed(),
            "coefficient_names": self.coefficient_names,
        }

    def _rng_all(self) -> dict[str, Any]:
        """This rank's RNG states, plus every rank's under ``rank<r>`` keys (a collective)."""
        mine = _rng_state()
        if self.world == 1:
            return mine
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, mine)
        return {**mine, **{f"rank{r}": s for r, s in enumerate(gathered)}}

    def _fit_prior(self) -> dict[str, Any]:
        """:func:`compute_latent_prior`, marked ``coefficient_coordinates`` when this run trained the
        codes to be the true coefficients (``latent`` targets) or the decoder on them (``teacher``):
        then ``z_exp[j]`` *is* coefficient ``j`` (:func:`voxface.latent.expression_names`)."""
        from .latent import trains_coefficient_coordinates

        prior = compute_latent_prior(self.model, self.train_ds, self.prior_idx)
        prior["coefficient_coordinates"] = trains_coefficient_coordinates(self.lcfg)
        if self.coefficient_names and not prior["coefficient_coordinates"]:
            # a frozen decoder from init_from that reads its codes as the coefficients: they stay them (an
            # encoder fine-tuned on occupancy alone, real data without coefficients), named as they were
            prior["coefficient_coordinates"] = True
            prior.update(self.coefficient_names)
        return prior

    def save_last(self, with_prior: bool) -> None:
        """Write the resume state (every rank must call it: the RNG states are gathered)."""
        rng = self._rng_all()
        if not self.is_main:
            return
        self.model.prior = self._fit_prior() if with_prior else None
        save_checkpoint(
            self.paths["last"], self.model, self.opt, epoch=self.plan.epoch_of(self.step),
            step=self.step, loss_history=self.loss_history, scheduler=self.sched, rng_state=rng,
            extra=self._extra(),
        )

    def save_best(self) -> None:
        """The inference snapshot: weights, config and latent prior (no optimizer)."""
        self.model.prior = self._fit_prior()
        save_checkpoint(
            self.paths["best"], self.model, None, epoch=self.plan.epoch_of(self.step),
            step=self.step, loss_history=self.loss_history,
            extra={"val_iou": self.best_iou, "mean_shape_iou": self.mean_shape_iou,
                   "run_config": _plain(self.cfg)},
        )

    def _carry_best(self, best: Path) -> None:
        """Copy an earlier folder's ``best.pth.tar`` here when it is the checkpoint the resumed run
        records as best (same step): the run's best stays with the run when it moves folders."""
        if self.best_step < 0 or not best.is_file() or self.paths["best"].exists():
            return
        try:  # its step only: no tensor's data is read into memory (meta tensors)
            same = int(load_checkpoint(best, map_location="meta").get("step") or -1) == self.best_step
        except CheckpointError:
            return
        if not same:
            return
        dst = self.paths["best"]
        try:  # copied a MiB at a time, not held whole in memory
            with open(best, "rb") as src, atomic_open(dst) as f:
                shutil.copyfileobj(src, f, 1 << 20)
        except OSError as e:
            raise VoxfaceError(f"cannot copy {best} here ({e.strerror or e})", dst) from None

    # ---- the loop
    def loop(self, stop_at: int | None, resumed: bool, source: Path | None = None) -> TrainResult:
        """Train to ``stop_at`` (or the end). ``source``: the folder of the checkpoint resumed; a
        run resumed into another folder starts it with the source's log (to the resumed step) and
        its best checkpoint, when that is the one the resumed checkpoint records as best."""
        from tqdm.auto import tqdm

        t, dev = self.tcfg, self.dev
        end_step = t.total_steps if stop_at is None else min(t.total_steps, int(stop_at))
        moved = resumed and source is not None and source.resolve() != self.out.resolve()
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.paths["config"], _yaml(_plain(self.cfg)).encode())
            kept = _read_log((source if moved else self.out) / "log.jsonl", self.step) if resumed else []
            atomic_write_bytes(self.paths["log"], "".join(line + "\n" for line in kept).encode())
            if moved:
                self._carry_best(source / BEST)
            self.log_f = open(self.paths["log"], "a")
        self.log({"event": "start", "step": self.step, "resumed": resumed, "world_size": self.world,
                  "device": str(dev), "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                  "total_steps": t.total_steps, "time": self.elapsed(), "mean_shape_iou": self.mean_shape_iou})
        if not needs_decoder(self.lcfg) and hasattr(self.train_ds, "fields"):
            # an encoder stage reads no occupancy: the cache skips unpacking two grids an item
            self.train_ds.fields = ENCODER_STAGE_FIELDS
        net: torch.nn.Module = self.net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # no loss term of this trainer reads the refinement head (refine-train trains it), nor the pose
            # head where the data has no poses (a folder without them): parameters that are not frozen and get
            # no gradients, which DDP refuses at the second step unless told to look for them
            unused = ((self.model.refiner is not None and "refiner" not in t.freeze)
                      or "rotation" not in self.train_ds[0])
            net = DDP(self.net, device_ids=[dev.index] if dev.type == "cuda" else None,
                      find_unused_parameters=unused)
        loader = DataLoader(
            self.train_ds, batch_sampler=_StepBatches(self.plan, self.step, end_step),
            num_workers=t.workers, collate_fn=default_collate, pin_memory=dev.type == "cuda",
            generator=torch.Generator().manual_seed(t.seed),  # leaves the global RNG untouched
            worker_init_fn=_loader_worker_init if t.workers > 0 else None,
        )
        self.bar = tqdm(total=t.total_steps, initial=self.step, desc="train", dynamic_ncols=True,
                        disable=not (self.progress and self.is_main))
        self.stop.install()
        start_step, interrupted = self.step, False
        window: dict[str, float] = {}
        window_n, window_t = 0, time.perf_counter()
        if t.log_every > 0 and self.step % t.log_every:  # resumed inside a logging window: its earlier steps
            for rec in self.loss_history[-(self.step % t.log_every):]:  # count, as in an uninterrupted run
                for k, v in rec.items():
                    if k not in ("step", "lr"):
                        window[k] = window.get(k, 0.0) + v
                window_n += 1
        timed_n = 0  # steps of the window run (and timed) by this call
        ema: dict[str, float] = {}
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.train_mode()
        for batch in _batches(loader):
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
            if self.mirror_maps is not None:
                batch = self._mirrored(batch)
            # the step's sampled cells: a data folder's items hold surface samples under "points" too
            # (canonical mm, data.points), which are no cells to decode (a KeyError 'pts_occ' without point mode)
            pts = {k: v.to(dev) for k, v in (self._points(batch) if self.lcfg.points > 0 else {}).items()}
            batch.update(pts)
            with self.autocast():
                outs = net(batch["image"].float(), batch.get("id_coeffs"), batch.get("exp_coeffs"),
                           pts.get("points"), pts.get("swap_points"))
            total, terms = compute_losses(outs, batch, self.lcfg, self.id_weights)
            if self.world > 1:  # the logged terms, averaged over ranks before the update: a loss one rank cannot
                # compute stops every rank here (that rank alone raised, the others died in backward's all-reduce)
                names = sorted(terms)
                vec = torch.tensor([terms[k] for k in names], dtype=torch.float64)
                vec = vec.to(dev) if dev.type == "cuda" else vec
                dist.all_reduce(vec)
                vals = vec.cpu().tolist()
                terms = {k: vals[i] / self.world for i, k in enumerate(names)}
            if not math.isfinite(terms["total"]):
                raise VoxfaceError(f"training diverged: the loss is {terms['total']} at step {self.step + 1} "
                                   f"({self._diverged_advice()})")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            gnorm = float("nan")
            if t.grad_clip > 0:
                self.scaler.unscale_(self.opt)
                gnorm = float(torch.nn.utils.clip_grad_norm_(params, t.grad_clip))
            elif t.log_every > 0 and ((self.step + 1) % t.log_every == 0 or self.step + 1 == t.total_steps):
                # no clipping: the logged step's norm all the same (it was null), the gradients left as they are
                grads = [p.grad.detach().float() for p in params if p.grad is not None]
                if grads:
                    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                    gnorm = float(norm) / self.scaler.get_scale()  # (1.0 without fp16's scaler)
            lr = self.opt.param_groups[0]["lr"]  # the rate this update used (the schedule steps next)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            self.step += 1
            want_stop = self.stop.requested
            if self.world > 1:  # agree on stopping
                flag = torch.tensor([float(want_stop)], dtype=torch.float64)
                flag = flag.to(dev) if dev.type == "cuda" else flag
                dist.all_reduce(flag)
                want_stop = float(flag) > 0
            self.loss_history.append({"step": self.step, "lr": lr, **terms})
            for k, v in terms.items():
                window[k] = window.get(k, 0.0) + v
                ema[k] = v if k not in ema else 0.9 * ema[k] + 0.1 * v
            window_n += 1
            timed_n += 1
            post = {"loss": f"{ema['total']:.4f}", "lr": f"{lr:.2e}"}
            if "iou" in ema:
                post["iou"] = f"{ema['iou']:.3f}"
            if self.best_iou >= 0:
                post["val"] = f"{self.best_iou:.3f}"
            self.bar.set_postfix(post, refresh=False)
            self.bar.update(1)
            # a window cut short is logged at the run's end, not at a pause (the resumed run logs it whole)
            if t.log_every > 0 and (self.step % t.log_every == 0 or self.step == t.total_steps):
                now = time.perf_counter()
                self.log({"event": "train", "step": self.step, "epoch": self.plan.epoch_of(self.step - 1),
                          "lr": lr, "time": self.elapsed(),
                          "loss": {k: v / window_n for k, v in window.items()}, "grad_norm": gnorm,
                          "samples_per_s": round(timed_n * t.batch_size / max(1e-9, now - window_t), 2)})
                window, window_n, timed_n, window_t = {}, 0, 0, now
            if want_stop or self.step >= end_step or any(
                    every > 0 and self.step % every == 0 for every in (t.val_every, t.ckpt_every)):
                self._check_weights(params)  # before they are validated or written (every rank: the same weights)
            paused = time.perf_counter()
            if (self.is_main and self.val_batches and t.val_every > 0 and self.step % t.val_every == 0
                    and self.step < t.total_steps):  # no validation split: nothing to validate (warned at start)
                self.validate()
            if want_stop:
                interrupted = True
                break
            if t.ckpt_every > 0 and self.step % t.ckpt_every == 0 and self.step < end_step:
                self.save_last(with_prior=False)
            window_t += time.perf_counter() - paused  # validating and saving are not training throughput
        self.bar.close()
        # the handlers stay until close(): a stop asked for while finish() validates, fits the prior and
        # writes last.pth.tar must not abort it (it raised KeyboardInterrupt there; SIGTERM killed the run)
        return self.finish(start_step, interrupted)

    def _check_weights(self, params: list[torch.nn.Parameter]) -> None:
        """Refuse (:class:`VoxfaceError`) trained weights that are not finite before anything validates or
        writes them: a step whose loss was finite but whose gradients were not (no fp16 scaler skips it)
        made them NaN, and last.pth.tar, which the divergence message tells to resume from, was written
        with them over the run's last good one."""
        if all(bool(torch.isfinite(p).all()) for p in params):
            return
        name = next(n for n, p in self.net.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all()))
        raise VoxfaceError(
            f"training diverged: the weights are not finite after step {self.step} ({name}: the step's update "
            f"was not, though its loss was; {self.paths['last']} was written before this step and is left as it "
            f"was); {self._diverged_advice()}"
        )

    def _diverged_advice(self) -> str:
        """What to do after a divergence. Not 'resume from last.pth.tar' (the advice was that): a
        resume repeats the run's steps exactly, so it diverges again at the same step, and a resume
        with a lower ``train.lr`` is refused as another run."""
        return (f"a resume repeats the same steps and diverges again: lower train.lr and start again "
                f"(--overwrite), or start a new run from {self.paths['last']} (train.init_from) with a lower "
                "train.lr")

    def finish(self, start_step: int, interrupted: bool) -> TrainResult:
        """Final validation, latent prior, checkpoints, plot and the ``end`` record."""

        finished = self.step >= self.tcfg.total_steps
        if self.is_main and finished and self.val_batches:
            if not self.val_history or self.val_history[-1][0] != self.step:
                self.validate()
        self.save_last(with_prior=True)
        identical = None
        if self.world > 1:  # every rank's weights must be the same bytes
            mine = torch.frombuffer(bytearray.fromhex(state_digest(self.model)), dtype=torch.uint8)
            mine = mine.to(self.dev) if self.dev.type == "cuda" else mine
            digests = [torch.zeros_like(mine) for _ in range(self.world)]
            dist.all_gather(digests, mine)
            identical = all(torch.equal(digests[0], d) for d in digests)
            if self.is_main and not identical:
                print("warning: DDP ranks ended with different weights", file=sys.stderr)
        if self.is_main:
            self.plot()
            validated = self.best_step >= 0  # else -1 placeholders: null in the log, not metrics
            rec = {"event": "end", "step": self.step, "interrupted": not finished,
                   "best_val_iou": self.best_iou if validated else None,
                   "best_step": self.best_step if validated else None,
                   "final_val_iou": self.final_iou, "mean_shape_iou": self.mean_shape_iou,
                   "world_size": self.world, "time": self.elapsed()}
            if identical is not None:
                rec["ddp_weights_identical"] = identical
            self.log(rec)
        if self.world > 1:
            dist.barrier()
        main_only = (lambda p: p) if self.is_main else (lambda p: None)
        return TrainResult(
            out_dir=self.out,
            last_checkpoint=main_only(self.paths["last"]),
            best_checkpoint=main_only(self.paths["best"]) if self.paths["best"].exists() else None,
            config_path=main_only(self.paths["config"]),
            log_path=main_only(self.paths["log"]),
            plot_path=main_only(self.paths["plot"]),
            best_val_iou=self.best_iou,
            best_step=self.best_step,
            final_val_iou=self.final_iou,
            mean_shape_iou=self.mean_shape_iou,
            steps=self.step,
            steps_run=self.step - start_step,
            wall_time_s=time.perf_counter() - self.t_start,
            interrupted=not finished,  # a stop asked for in the last step: the run finished (as its end record says)
            world_size=self.world,
            final_loss=self.loss_history[-1]["total"] if self.loss_history else float("nan"),
            stop_signal=None if finished else self.stop.signal,
        )

    def finished_result(self, path: Path) -> TrainResult:
        """What :func:`train` returns for a resume of a finished run (:func:`_finished_run`), set up but
        not started: the run as its checkpoint ``path`` records it, ``steps_run`` 0, nothing written
        (rank 0 says so in one ``note:`` line)."""
        folder = path.parent
        if self.is_main:
            print(finished_note(path, self.step, self.out), file=sys.stderr, flush=True)

        def there(name: str) -> Path | None:
            return folder / name if self.is_main and (folder / name).exists() else None

        return TrainResult(
            out_dir=folder, last_checkpoint=path if self.is_main else None, best_checkpoint=there(BEST),
            config_path=there("config.yaml"), log_path=there("log.jsonl"), plot_path=there("loss.png"),
            best_val_iou=self.best_iou, best_step=self.best_step, final_val_iou=self.final_iou,
            mean_shape_iou=self.mean_shape_iou, steps=self.step, steps_run=0,
            wall_time_s=time.perf_counter() - self.t_start, interrupted=False, world_size=self.world,
            final_loss=self.loss_history[-1]["total"] if self.loss_history else float("nan"),
        )

    def close(self) -> None:
        self.stop.restore()
        if self.bar is not None:
            self.bar.close()
        if self.log_f is not None:
            self.log_f.close()
            self.log_f = None
        if self.own_pg and dist.is_initialized():
            dist.destroy_process_group()
            self.own_pg = False
        if self.lock_f is not None:
            self.lock_f.close()  # releases the flock
            self.lock_f = None

    def lock(self) -> None:
        """Make the run folder and hold ``.train.lock`` in it (``flock``) until :meth:`close`: a second
        trainer on the folder (the same command started twice, another run with ``--overwrite``) is
        refused in one line; it replaced the log (the first run's records went to the unlinked file)
        and the two runs' checkpoints overwrote each other."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        path = self.out / LOCK
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")
        except OSError as e:
            raise VoxfaceError(f"cannot create the run's lock file ({e.strerror or e})", path) from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise VoxfaceError("another voxface train is writing into this folder now; wait for it to finish, "
                               "or write into another --out", self.out) from None
        self.lock_f = fh


class _TrainNet(nn.Module):
    """Model + auxiliary heads behind one ``forward``: what DistributedDataParallel wraps."""

    def __init__(self, model: "VoxFace", aux: AuxHeads | None, lcfg: LossConfig):
        super().__init__()
        self.model, self.aux, self.lcfg = model, aux, lcfg

    def forward(self, images: torch.Tensor, id_coeffs: torch.Tensor | None = None,
                exp_coeffs: torch.Tensor | None = None, points: torch.Tensor | None = None,
                swap_points: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return forward_outputs(self.model, images, self.lcfg, self.aux, id_coeffs=id_coeffs,
                               exp_coeffs=exp_coeffs, points=points, swap_points=swap_points)


def _loader_worker_init(worker_id: int) -> None:
    """DataLoader workers ignore SIGINT and SIGTERM: stopping is the training process's (it finishes
    the step, writes last.pth.tar and shuts its loader down). A Ctrl-C or SIGTERM sent to the whole
    process group (a terminal, a job scheduler) killed the workers (torch's worker SIGTERM handler
    re-raises it), and the trainer died on its next batch with no checkpoint; each worker also
    printed the trainer's stop message, inherited with its SIGINT handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _batches(loader: DataLoader) -> Iterator[Any]:
    """``loader``'s batches; a :class:`VoxfaceError` a worker raised (a cache chunk damaged after it
    was opened, an unreadable real-data file) comes out as its own one-line message, not torch's
    re-raise of it, whose message is the worker's whole traceback. The workers are shut down when
    the batches end, stop or fail: they ignore SIGTERM (:func:`_loader_worker_init`), so workers of
    an iterator an error's traceback kept alive would hang the interpreter's exit, which joins them
    after a SIGTERM."""
    it = iter(loader)
    try:
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except VoxfaceError as e:
                err = _worker_error(e)
            else:
                yield batch
                continue
            raise err  # outside the except: no context chain holding the failed worker's frames
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)  # multi-process iterators only
        if shutdown is not None:
            shutdown()


def _worker_error(e: VoxfaceError) -> VoxfaceError:
    """The error a DataLoader worker raised, from torch's re-raise of it (``Caught DataError in
    DataLoader worker process 0. Original Traceback ... voxface.errors.DataError: <message>``, made
    one line by :class:`VoxfaceError`); ``e`` itself when it is not such a re-raise."""
    text, cls = str(e), type(e)
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    at = text.rfind(marker)
    if not text.startswith(f"Caught {cls.__name__} in DataLoader worker") or at < 0:
        return e
    try:
        return cls(text[at + len(marker):])
    except TypeError:  # a subclass with another constructor: keep torch's text
        return e


def _collate_val(ds: Any, n: int, batch: int) -> list[dict[str, Any]]:
    """The first ``n`` items of ``ds`` (``image`` and ``occ`` only), collated in CPU batches."""
    out = []
    for i in range(0, n, batch):
        items = [ds[j] for j in range(i, min(n, i + batch))]
        keys = ("image", "occ") + tuple(k for k in ("id_coeffs", "exp_coeffs") if k in items[0])
        out.append(default_collate([{k: it[k] for k in keys} for it in items]))
    return out


def _mean_shape_iou(mean_occupancy: np.ndarray | None, val_batches: list[dict[str, Any]]) -> float:
    """Mean val IoU of the "mean shape" (voxels occupied in most training items, from their mean
    occupancy ``(R, R, R)``): the baseline a model must beat before it learns anything from the image."""

    if not val_batches or mean_occupancy is None:
        return float("nan")
    mean_shape = torch.from_numpy(mean_occupancy > 0.5).float() * 2 - 1  # as logits
    ious = [batch_iou(mean_shape.expand_as(b["occ"]), b["occ"]) for b in val_batches]
    return float(torch.cat(ious).mean())


def _no_validation(data: dict[str, Any]) -> str:
    """The warning of a run whose data has no validation split (what is lost, how to get one)."""
    lost = f"nothing is validated and no {BEST} is written"
    if data.get("kind", "synthetic") == "folder":
        root = data.get("root") or data.get("path")
        n = data.get("num_val")
        if isinstance(n, int) and n < 4:
            how = f"raise data.num_val ({n}) to 4 or more (whole blocks of 4)"
        elif (Path(str(root)).expanduser() / "train").is_dir():
            how = "add a val/ folder beside its train/"
        else:
            how = (f"set data.val_fraction above 0 (now {data.get('val_fraction', 0.1)}); the split needs two "
                   "or more persons")
        return f"{root}: the folder has no validation split, so {lost}: {how}"
    return f"the data has no validation items (data.num_val {data.get('num_val')}), so {lost}"


def _json_safe(v: Any) -> Any:
    """Non-finite floats become ``None`` (strict JSON has no NaN)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _yaml(d: dict[str, Any]) -> str:
    import yaml

    return "# resolved voxface training config\n" + yaml.safe_dump(d, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    """``python -m voxface.train ...`` = ``voxface train ...`` (the form ``torchrun -m`` needs). Its
    usage line and hints name ``voxface train``, a command that runs (``python -m voxface.train
    train`` did not: the ``train`` is implied)."""
    from .cli import main as cli_main

    sys.argv = [sys.argv[0], "train", *(sys.argv[1:] if argv is None else argv)]
    cli_main(prog_name="voxface")


if __name__ == "__main__":
    main()
