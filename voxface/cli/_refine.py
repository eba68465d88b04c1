"""``voxface refine-train``: train a checkpoint's refinement head (a thin wrapper over :mod:`voxface.refine`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import (DEVICE_HELP, app, check_output, check_seed, fail, input_file, interrupt_status, output_file,
               sigterm_as_interrupt)


@app.command("refine-train")
def refine_train_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", parser=input_file, help="Trained voxface checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", parser=output_file, metavar="<path>", help="Checkpoint to write (the source plus the head)."),
    config: Optional[Path] = typer.Option(
        None, "--config", parser=input_file, help="YAML whose data: section gives the training faces (default: the "
        "checkpoint's own training config)."),
    steps: int = typer.Option(2000, "--steps", help="Optimizer steps (at least 1)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Faces per step."),
    points: int = typer.Option(4096, "--points", min=8, help="Query points per face."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW; positive), reached after a linear "
                             "warm-up of 50 steps (half of --steps when that is shorter), then cosine to 0."),
    hidden: Optional[int] = typer.Option(None, "--hidden", min=1, help="Width of the head's hidden layers "
                                         "(default: an existing head's; 64 for a new one)."),
    layers: Optional[int] = typer.Option(None, "--layers", min=1, help="Hidden layers of the head (default: an "
                                         "existing head's; 2 for a new one)."),
    pe_freqs: Optional[int] = typer.Option(None, "--pe-freqs", min=0, help="Frequencies per axis of the head's "
                                           "periodic encoding of the point inside its feature cell (default: an "
                                           "existing head's; 4 for a new one)."),
    resolution: Optional[int] = typer.Option(
        None, "--resolution", help="Grid of the final validation: the model's resolution times 2, 4, 8, ..., at most 256 "
        "(default: 128, or twice the model's grid when 128 is not one of those, none when that is above 256; "
        "0: none)."),
    num_val: int = typer.Option(16, "--num-val", min=0, help="Validation faces."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: default; at most the usable cores)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed (0 to 2**64 - 1) of a new head's weights and of the training's sampling."),
    latents: str = typer.Option(
        "encoder", "--latents", help="What the frozen decoder decodes for the head: encoder (the codes read from "
        "each image) or true (the faces' own ICT coefficients, for codes that are ICT coordinates: features and "
        "labels then describe the same head) or both (half of each batch each way)."),
    smooth: float = typer.Option(0.0, "--smooth", help="Weight of the smoothness term on the head's correction "
                                 "(its mean squared change over --smooth-mm; damps the ripples of the periodic "
                                 "in-cell encoding). 0: none."),
    smooth_mm: float = typer.Option(1.5, "--smooth-mm", help="Step of that finite difference (canonical mm)."),
    shrink: float = typer.Option(0.0, "--shrink", help="Weight of the mean squared correction: keeps the head at "
                                 "trilinear upsampling where the labels do not clearly ask for more. 0: none."),
    fresh: bool = typer.Option(False, "--fresh", help="Replace the checkpoint's head with a new one of its "
                               "config and the head options given (default: an existing head goes on training)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar when stderr is a "
                                  "terminal; else (a job's log), or with --no-progress, a JSON line every 25 steps, "
                                  "and the validation's, on stderr."),
) -> None:
    """Train the refinement head of a checkpoint (encoder and decoder frozen) and write it out.

    The head predicts occupancy at any point from the decoder's features; `voxface reconstruct` and
    `voxface evaluate` use it with --resolution 128/256 --upsample head (--upsample decoder, the
    default, leaves the head out) to extract finer surfaces coarse-to-fine (voxface.refine.refine_logits).
    Targets are exact occupancies of the true heads (toy: analytic; ICT: closed mesh).
    An existing head goes on training with its own --hidden/--layers/--pe-freqs (other values need
    --fresh). OUT must be another file than a training run's checkpoint (its resume state would be lost).
    """
    import math

    # refused before anything is read: each would fail, or write an untrained head, only after training
    if steps < 1:
        raise fail(f"--steps must be at least 1, not {steps} (no training step would write an untrained head)")
    if not (math.isfinite(lr) and lr > 0):
        raise fail(f"--lr must be a positive, finite learning rate, not {lr}")
    if not (math.isfinite(smooth) and smooth >= 0):
        raise fail(f"--smooth must be a finite weight >= 0, not {smooth}")
    if not (math.isfinite(shrink) and shrink >= 0):
        raise fail(f"--shrink must be a finite weight >= 0, not {shrink}")
    if not (math.isfinite(smooth_mm) and smooth_mm > 0):
        raise fail(f"--smooth-mm must be a positive, finite distance in mm, not {smooth_mm}")
    if latents not in ("encoder", "true", "both"):
        raise fail(f"--latents must be encoder, true or both, not {latents!r}")
    if latents == "both" and batch_size < 2:  # half of one face is the true coefficients' face only
        raise fail(f"--latents both takes half of each batch each way: --batch-size must be at least 2, not {batch_size}")
    check_seed(seed, 0, 2**64 - 1)  # what both torch.manual_seed and numpy's default_rng take
    # a device or FIFO there (replaced by a file), a file among its folders or a folder that refuses files:
    # refused before the checkpoint is loaded (refine_checkpoint's check_output_checkpoint runs after loading)
    check_output(out)
    from ..device import check_threads

    check_threads(threads, "--threads")  # before anything is loaded

    from dataclasses import replace

    from ..checkpoint import _foreign_error, _is_voxface, load_checkpoint
    from ..config import RefineConfig, from_dict, load_yaml
    from ..errors import ConfigError
    from ..refine import (MAX_VALIDATION_RESOLUTION, RefineTrainConfig, check_exact_geometry, head_differences,
                          refine_checkpoint, refine_resolution_ok, refine_resolutions)

    src = load_checkpoint(checkpoint, map_location="cpu")
    if not _is_voxface(src):  # another project's file: say so, not "pass --config"
        raise _foreign_error(src, Path(checkpoint))
    stored = src.get("config")
    decoder = stored.get("decoder") if isinstance(stored, dict) else None
    model_res = decoder.get("resolution") if isinstance(decoder, dict) else None
    if not (isinstance(model_res, int) and model_res > 0):  # a broken config: load_model names it
        model_res = None
    if resolution is None:  # 128 failed a 128^3 model as "--resolution 128 does not fit", unasked
        fits = model_res is None or refine_resolution_ok(128, model_res)
        resolution = 128 if fits else 2 * model_res
        if resolution > MAX_VALIDATION_RESOLUTION:  # a 256^3 model: 512 was refused, unasked (with --num-val 0 too)
            if num_val:
                typer.echo(f"note: no validation: {checkpoint}'s {model_res}^3 grid has no finer one up to "
                           f"{MAX_VALIDATION_RESOLUTION}", err=True)
            resolution = 0
    if resolution and model_res is not None and not refine_resolution_ok(resolution, model_res):
        raise fail(f"{checkpoint}: --resolution {resolution} does not fit its {model_res}^3 model: use its "
                   f"resolution times 2, 4, 8, ... ({refine_resolutions(model_res)}), or 0 for no validation")
    # head options only as given: an existing head goes on with its own config, a new one takes the defaults
    given = {k: v for k, v in (("hidden", hidden), ("layers", layers), ("pe_freqs", pe_freqs)) if v is not None}
    stored_head = stored.get("refine") if isinstance(stored, dict) else None
    try:
        existing = from_dict(RefineConfig, stored_head, "model.refine") if isinstance(stored_head, dict) else None
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(str(e), checkpoint) from None
    head = replace(existing or RefineConfig(), **given) if given else None
    if existing is not None and head is not None and not fresh and head != existing:
        differ = ", ".join(f"--{k.replace('_', '-')} {a} (not {b})" for k, a, b in head_differences(existing, head))
        raise fail(f"{checkpoint}: its refinement head has {differ}: leave those options out to train that head "
                   "on, or pass --fresh to replace it with a new head")
    if config is not None:
        data_cfg = load_yaml(config).get("data")
        where = config
    else:
        extra = src.get("extra")
        run = extra.get("run_config") if isinstance(extra, dict) else None
        data_cfg = run.get("data") if isinstance(run, dict) else None
        where = checkpoint
    del src
    if not isinstance(data_cfg, dict):
        if config is not None:  # (it said "pass --config" to a --config)
            raise ConfigError("has no data: section to train the refinement head on (data: kind: toy, synthetic "
                              "or cache, as in configs/voxface-64.yaml)", where)
        raise ConfigError("records no training data: section to train the refinement head on; pass --config "
                          "with one", where)
    try:
        check_exact_geometry(data_cfg)
    except ConfigError as e:
        hint = "" if config is not None else "; that is the data its run trained on: pass --config with other data"
        raise ConfigError(f"{e}{hint}", where) from None
    # a run of 50 steps or fewer never left the 50-step warm-up: --lr was never reached (a third of it at 20 steps)
    warmup = min(RefineTrainConfig.warmup, steps // 2)
    cfg = RefineTrainConfig(steps=steps, batch_size=batch_size, points=points, lr=lr, warmup=warmup,
                            resolution=resolution, num_val=num_val, threads=threads, seed=seed, latents=latents,
                            smooth=smooth, smooth_mm=smooth_mm, shrink=shrink)
    earlier = out.exists()
    # a bar only on a terminal: into a job's log (2>log) it wrote a carriage-return update at every step, and
    # the log got none of the JSON lines --no-progress prints (as train, evaluate and the data commands)
    progress = progress and sys.stderr.isatty()
    try:
        with sigterm_as_interrupt() as terminated:  # kill, a scheduler's time limit: stop as Ctrl-C does
            path, res = refine_checkpoint(checkpoint, out, data_cfg, cfg, head=head,
                                          device=device, progress=progress, fresh=fresh,
                                          log=None if progress else lambda r: typer.echo(json.dumps(r), err=True))
    except ConfigError as e:  # the data: section's values, found as its datasets are built: name where it is
        if e.path is None and str(e).startswith("data"):
            raise ConfigError(str(e), where) from None
        raise
    except KeyboardInterrupt:  # the head trains in memory: say that nothing was written (as evaluate does)
        kept = " (the earlier file there is kept as it was)" if earlier else ""
        stopped = "terminated" if terminated else "interrupted"
        raise fail(f"{stopped}; no refined checkpoint written to {out}{kept}", interrupt_status(terminated)) from None
    last = res.history[-1] if res.history else {}
    typer.echo(json.dumps({"checkpoint": str(path), "seconds": round(res.seconds, 1), "last": last, "val": res.val}))
