"""``voxface train``: a thin wrapper over :func:`voxface.train.train`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from . import DEVICE_HELP, app, fail, input_file, output_folder

if TYPE_CHECKING:
    from ..train import TrainResult

#: Exit status of a run stopped by SIGINT after writing its last checkpoint (128 + SIGINT); a run stopped
#: by SIGTERM exits 143 (128 + SIGTERM), as every other command does.
EXIT_INTERRUPTED = 130


def _exit_status(res: "TrainResult") -> int:
    """128 + the signal that stopped an interrupted run (130 when no signal of its own stopped it: a
    DDP rank told to stop by another), 0 for a finished one."""
    if not res.interrupted:
        return 0
    return EXIT_INTERRUPTED if res.stop_signal is None else 128 + int(res.stop_signal)


@app.command("train")
def train_cmd(
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", parser=input_file, help="YAML config with model:, data:, train: sections "
        "(optional with --resume: the checkpoint's own config is used; one given must describe that run, "
        "aside from total_steps, the log/val/ckpt intervals, workers, threads, init_from and the data "
        "locations)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", parser=output_folder, help="Run directory (default: the checkpoint's folder with --resume, "
        "else runs/<config name>)."
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", parser=input_file, help="Continue from a last.pth.tar (a released or "
                                          "best.pth.tar has no resume state: use train.init_from)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    steps: Optional[int] = typer.Option(None, "--steps", min=0, help="Override train.total_steps."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the config, the data and the run folder as the run would; print the resolved config and exit."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the steps' progress bar (and a data "
                                  "folder's voxelisation bar) when stderr is a terminal; none in logs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh in an --out that holds another run, "
                                   "removing its files (last/best.pth.tar, log.jsonl, config.yaml, loss.png) first; "
                                   "without it such a folder is refused (with it too where train.init_from is one "
                                   "of those files)."),
) -> None:
    """Train a model; writes config.yaml, log.jsonl, loss.png, last.pth.tar and best.pth.tar.

    Ctrl-C (SIGINT) or SIGTERM finishes the current step, writes last.pth.tar and exits with
    status 130 (SIGINT) or 143 (SIGTERM); `voxface train --resume DIR/last.pth.tar` then continues exactly where it stopped.
    Under torchrun (`torchrun --nproc_per_node=N -m voxface.train ...`) it trains with DDP.
    """
    from ..errors import ConfigError

    if config is None and resume is None:
        raise fail("give --config (or --resume to continue a run with its own config)")
    import sys

    progress = progress and sys.stderr.isatty()  # a job's log: no bar lines, as reconstruct, evaluate and data
    if dry_run:
        import yaml

        from ..data import build_dataset
        from ..train import (BatchPlan, _check_resumable, _check_run_folder, _check_same_run, _claim_run_folder,
                             _finished_run, _init_from_state, _load_voxface, _mirror_maps, _no_validation,
                             _own_run_config, _plain, _resolve_own, _resolve_resumed, check_data, finished_note,
                             resolve_config, warmup_warning)

        ck = _load_voxface(resume) if resume is not None else None  # another project's file: refused
        if config is not None:
            cfg = resolve_config(config) if ck is None else _resolve_resumed(config, ck)
        else:
            run_cfg = (ck.get("extra") or {}).get("run_config")
            if run_cfg is None:
                if any(ck.get(k) is None for k in ("optimizer", "scheduler", "rng")):  # as train() says
                    _check_resumable(ck, resume, 0)
                raise ConfigError("the checkpoint holds no training config", resume)
            cfg = _resolve_own(_own_run_config(run_cfg), resume)
        if steps is not None:
            cfg["train"].total_steps = steps
        from ..device import resolve_device
        from ..train import _amp_dtype

        try:  # the device the run would take, and its precision there (train.amp fp16 on the CPU)
            _amp_dtype(cfg["train"].amp, resolve_device(device))
        except ConfigError as e:
            raise ConfigError(str(e), e.path or config) from None
        finished = False
        if ck is not None:  # what the run would refuse, the dry run refuses (it printed a run that cannot start)
            _check_resumable(ck, resume, cfg["train"].total_steps)
            finished = _finished_run(ck, cfg["train"].total_steps)
            if finished:  # as the run says
                typer.echo(finished_note(resume, ck.get("step"), out), err=True)
            if config is not None:
                try:
                    changes = _check_same_run(cfg, ck, resume)
                except ConfigError as e:
                    raise ConfigError(str(e), config) from None
                if changes:  # as the run says
                    typer.echo(f"note: {changes}", err=True)
        elif cfg["train"].init_from:  # a new run starts from these weights: a file the run refuses is refused
            import torch

            from ..models import create_model

            with torch.device("meta"):  # shapes only: no memory, no weights
                meta = create_model(cfg["model"])
            try:
                _init_from_state(meta, cfg["train"], cfg["model"], f"the training config {config}")  # (and its prior)
            except ConfigError as e:
                raise ConfigError(str(e), e.path or config) from None
        # the run folder train() would use: one the run refuses (another run there, a file in its way) is refused
        run_dir = out if out is not None else resume.parent if resume is not None else Path("runs") / config.stem
        _check_run_folder(run_dir)
        _claim_run_folder(run_dir, resume, overwrite, cfg["train"].init_from, config)
        try:  # the data: section, as the run builds it (it printed a config whose data the run then refused)
            train_ds, n_id, n_exp = check_data(cfg, progress=progress)
            BatchPlan(len(train_ds), cfg["train"].batch_size, 0)  # one batch at least (on one rank)
            if cfg["train"].mirror > 0:
                _mirror_maps(cfg["data"], n_id, n_exp)
            val_ds = build_dataset(cfg["data"], "val", cfg["model"], progress=progress)
        except ConfigError as e:
            raise ConfigError(str(e), e.path or config or resume) from None
        num_val = cfg["train"].num_val
        n_val = len(val_ds) if num_val <= 0 else min(num_val, len(val_ds))
        typer.echo(yaml.safe_dump(_plain(cfg), sort_keys=False), nl=False)
        typer.echo(f"data: {len(train_ds)} training items, {n_val} validated", err=True)
        if n_val == 0:  # as the run warns
            typer.echo(f"warning: {_no_validation(cfg['data'])}", err=True)
        if not finished and (short := warmup_warning(cfg["train"])) is not None:  # as the run warns (after that)
            typer.echo(f"warning: {short}", err=True)
        raise typer.Exit(0)

    from ..train import train

    res = train(config, out, resume=resume, device=device, progress=progress, steps=steps, overwrite=overwrite)
    if res.last_checkpoint is None:  # a DDP rank other than 0
        raise typer.Exit(_exit_status(res))
    import math

    # -1 / NaN are placeholders of a run never validated (no validation split): not shown as IoUs
    parts = ["not validated" if res.best_step < 0 else
             f"best val IoU {res.best_val_iou:.4f} (step {res.best_step})"]
    if math.isfinite(res.mean_shape_iou):
        parts.append(f"mean-shape IoU {res.mean_shape_iou:.4f}")
    summary = f"step {res.steps}: {', '.join(parts)}, {res.wall_time_s:.1f} s; {res.out_dir}"
    if res.interrupted:
        typer.echo(f"interrupted at {summary}; resume with --resume {res.last_checkpoint}", err=True)
        raise typer.Exit(_exit_status(res))
    typer.echo(summary)
