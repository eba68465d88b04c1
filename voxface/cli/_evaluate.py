"""``voxface evaluate``: metrics on unseen synthetic faces against the mean-head baseline."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from . import (DEVICE_HELP, app, check_not_special, check_output, input_file, interrupt_status, output_file, output_folder,
               sigterm_as_interrupt)


#: The files ``--plots`` writes into its folder (:func:`voxface.evaluate.save_plots`).
_PLOT_FILES = ("histograms.png", "worst_cases.png")


@app.command("evaluate")
def evaluate(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", parser=input_file, metavar="<path>",
                                              help="Checkpoint (default: bundled)."),
    num: int = typer.Option(200, "-n", "--num", min=4, help="Faces (rounded down to a multiple of 4: the swap metric pairs faces in blocks of four)."),
    seed_offset: int = typer.Option(0, help="Added to the evaluation seed (2000003), for other unseen sets."),
    points: int = typer.Option(100_000, min=1000, max=10_000_000,
                               help="Surface points sampled per mesh for Chamfer/F-score/normals (each matched to the "
                               "other mesh's surface exactly: the count sets only the noise; at most 10,000,000)."),
    report: Path = typer.Option(Path("report.json"), "--report", parser=output_file, metavar="<path>",
                                help="JSON report (per sample + aggregates)."),
    plots: Optional[Path] = typer.Option(None, "--plots", parser=output_folder, metavar="<path>",
                                         help="Folder for histograms and worst cases."),
    ict_root: Optional[str] = typer.Option(None, "--ict-root", help="ICT-FaceKit (default: $VOXFACE_ICT_ROOT)."),
    resolution: Optional[int] = typer.Option(
        None, "--resolution", help="Evaluate the mesh extracted at 64, 128 or 256 (finer than the model's grid: coarse-to-fine, with --upsample) "
        "against the exact surface, and IoU against exact occupancy at that resolution (default: the model's grid)."),
    latents: str = typer.Option(
        "encoder", "--latents", help="encoder: decode the codes read from each crop; true: decode the samples' "
        "true ICT coefficients (the decoder and refinement head without the encoder; pose still scores the encoder)."),
    upsample: str = typer.Option("decoder", "--upsample", help="With --resolution finer than the model's grid: "
                                 "decoder (the decoder's own continuous function) or head (its refinement head)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Evaluate on synthetic faces the training never saw; prints a Markdown table."""
    from ..checkpoint import DEFAULT_WEIGHTS, _same_file, load_model_and_checkpoint
    from ..errors import VoxfaceError
    from ..evaluate import (EVAL_SEED, WORST_CASES, check_seed_offset, decoded_from, evaluate as run, evaluated_count,
                            save_plots, training_data, training_seeds)

    from ._reconstruct import _note_upsample_fallback, check_grid_options
    from . import fail

    check_grid_options(resolution, upsample)
    if latents not in ("encoder", "true"):
        raise fail(f"--latents must be encoder or true, not {latents}")
    # the report must name a file: "", "." or a folder would fail only after the whole evaluation
    if not str(report).strip() or report.name in ("", ".", "..") or report.is_dir():
        raise fail(f"--report {str(report)!r} is a folder, not a file path: name the JSON file, e.g. "
                   f"--report {Path(str(report) or '.') / 'report.json'}")
    if plots is not None and os.path.abspath(plots) == os.path.abspath(report):  # the folder made, then no report
        raise fail(f"--plots {plots} is the --report file's path: name another folder for the plots")
    for name in _PLOT_FILES if plots is not None else ():  # the report written, then a plot over it
        if os.path.realpath(plots / name) == os.path.realpath(report):
            raise fail(f"--report {report} is the file --plots writes its {name} to: the plot would replace the "
                       "report; name another file")
    if report.exists() and _same_file(report, checkpoint or Path(DEFAULT_WEIGHTS)):
        raise fail(f"--report {report} is the checkpoint being evaluated: the report would replace it; "
                   "name another file")
    check_not_special(report)  # a device or FIFO there (--report /dev/null: replaced by a file), before the evaluation
    if report.is_file() and not _is_report(report):  # a typo onto a run's last.pth.tar, a config, a photo
        raise fail(f"--report {report} exists and is not a `voxface evaluate` report (a JSON object with num and "
                   "summary): the report would replace it; name another file, or remove this one first")
    try:
        check_seed_offset(seed_offset)
    except VoxfaceError as e:
        raise fail(str(e)) from None
    # the output folders first, so that a path that cannot be written fails now, not after the evaluation;
    # the ones made here are removed again (when still empty) if the evaluation fails
    made = _mkdirs(report.parent)
    saved = False  # the report: written, the plots perhaps not
    with sigterm_as_interrupt() as terminated:  # SIGTERM (timeout, a scheduler): stopped as Ctrl-C is
        try:
            if plots:
                made += _mkdirs(plots)
                for name in _PLOT_FILES:  # what save_plots writes: a folder of that name
                    check_output(plots / name)  # failed after the evaluation, the report written but never named
            if evaluated_count(num) != num:
                typer.echo(f"note: --num {num} rounded down to {evaluated_count(num)} (the swap metric pairs faces "
                           "in blocks of four)", err=True)
            # one read: the training stages (and so the seeds refused below) are the evaluated weights' own
            model, ck = load_model_and_checkpoint(checkpoint, device=device)
            _note_upsample_fallback(model, resolution, upsample)
            trained_on = training_data(ck)
            del ck  # (its tensors: a copy of the weights, on the CPU)
            try:
                check_seed_offset(seed_offset, training=training_seeds(checkpoint, trained_on))
            except VoxfaceError as e:
                raise fail(str(e)) from None
            if {d.get("kind", "synthetic") for _, d in trained_on if isinstance(d, dict)} == {"toy"}:
                typer.echo(f"note: {checkpoint} was trained on toy heads (data kind toy), and these are ICT-FaceKit "
                           "faces it never learnt: expect scores far below the mean head's", err=True)
            bar = sys.stderr.isatty()  # a job's log: no bar lines, as reconstruct, sample and export-onnx
            rep, extras = run(model, num=num, seed=EVAL_SEED, seed_offset=seed_offset, points=points,
                              ict_root=ict_root, checkpoint=str(checkpoint) if checkpoint else "bundled",
                              keep_meshes=WORST_CASES if plots else 0, resolution=resolution, latents=latents,
                              upsample=upsample, progress=bar)
            rep.save(report)
            saved = True
            typer.echo(f"voxface from {decoded_from(rep)}, against the mean head, on {rep.num} unseen faces")
            typer.echo(rep.table())
            s = rep.summary()
            typer.echo(f"\nIoU gap to 1.0 closed vs the mean head: {100 * s['iou_gap_closed']:.1f}%; face Chamfer "
                       f"ratio {s['face_chamfer_ratio']:.3f}; swap - direct IoU {s['swap_minus_direct_iou']:+.4f}")
            if plots:
                for p in save_plots(rep, extras, plots, progress=bar):
                    typer.echo(f"plot: {p}")
        except BaseException as e:
            for d in reversed(made):  # deepest first; only empty folders this run made
                try:
                    d.rmdir()
                except OSError:
                    pass
            if isinstance(e, KeyboardInterrupt):  # stopped between samples (voxface.evaluate._DeferSigint)
                stopped = "terminated" if terminated else "interrupted"
                done = (f"the report is written to {report}, not all the plots in {plots}" if saved else
                        f"no report written to {report}")
                raise fail(f"{stopped}; {done}", interrupt_status(terminated)) from None
            raise
    typer.echo(f"report: {report}")


def _mkdirs(folder: Path) -> list[Path]:
    """``folder.mkdir(parents=True, exist_ok=True)``; return the folders it made, outermost first.
    A folder that exists but cannot be written into is refused now (one line naming it), not after
    the whole evaluation."""
    from ..errors import VoxfaceError
    from ..mesh import probe_write

    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        probe_write(folder)
    except OSError as e:
        raise VoxfaceError(f"cannot write into this folder ({e.strerror or e})", folder) from None
    return list(reversed(missing))


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds what ``evaluate --report`` writes (a JSON object with ``num`` and
    ``summary``), or nothing (a failed write's empty file): a file the report may replace."""
    import json

    try:
        if path.stat().st_size == 0:
            return True
        with open(path, "rb") as fh:
            if fh.read(1).lstrip() not in (b"{", b""):  # not JSON text: no need to read a big binary file
                return False
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"num", "summary"} <= data.keys()
