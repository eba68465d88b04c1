"""``voxface bench``: write BENCHMARKS.md (a thin wrapper over :func:`voxface.bench.run_bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..bench import BenchSizes  # the defaults the help names (a light import: no numpy, no torch)
from . import DEVICE_HELP, app, check_not_special, fail, input_file, interrupt_status, output_file, sigterm_as_interrupt

_SIZES = BenchSizes()


@app.command("bench")
def bench(
    out: Path = typer.Option(Path("BENCHMARKS.md"), "-o", "--out", parser=output_file, metavar="<path>", help="Markdown report (a .json twin is written too)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", parser=input_file, metavar="<path>",
                                              help="Checkpoint (default: bundled)."),
    only: str = typer.Option("startup,data,model,pipeline,refine,onnx,memory,cuda",
                             help="Comma-separated sections: startup, data, model, pipeline, refine, onnx, memory, cuda "
                                  "(cuda runs only where CUDA is available)."),
    device: str = typer.Option("auto", help=f"Device of the model sections: {DEVICE_HELP}"),
    ict_root: Optional[str] = typer.Option(None, "--ict-root", help="ICT-FaceKit folder for the data section."),
    faces: Optional[int] = typer.Option(None, "--faces", min=1, help="Crops of the batch-pipeline comparisons, the "
                                        "cuda section's too (default: BenchSizes.pipeline_faces, "
                                        f"{_SIZES.pipeline_faces}; on CUDA cuda_pipeline_faces, "
                                        f"{_SIZES.cuda_pipeline_faces})."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1,
                                        help="Batch size of the batch-pipeline comparisons, the cuda section's too "
                                             f"(default: {_SIZES.pipeline_batch}; on CUDA {_SIZES.cuda_pipeline_batch})."),
    resolutions: str = typer.Option(",".join(map(str, _SIZES.refine_resolutions)),
                                    help="Fine grids of the coarse-to-fine section."),
    repeat: int = typer.Option(_SIZES.repeat, "--repeat", min=1, help="Repeats per timing (median reported); "
                               "interleaved rounds of the comparisons: data, throughput, pipeline, photos, coarse-to-fine (each side's "
                               "fastest reported)."),
    keep: bool = typer.Option(True, "--keep/--fresh", help="Keep the sections of the existing report that this "
                              "run does not measure, each marked with when and where it was measured (--only "
                              "cuda on a GPU adds its table to the CPU report); --fresh writes this run's alone."),
) -> None:
    """Measure start-up, data generation, per-stage time, throughput, the batch pipeline,
    coarse-to-fine refinement, ONNX and memory; write BENCHMARKS.md and BENCHMARKS.json."""
    from ..bench import SECTIONS, BenchSizes, run_bench

    # every option is checked before the first section runs (a full run takes minutes)
    sections = tuple(s.strip() for s in only.split(",") if s.strip())
    if not sections:
        raise fail(f"--only names no section; choose from {', '.join(SECTIONS)}")
    try:
        fine = tuple(int(r) for r in resolutions.split(",") if r.strip())
    except ValueError:
        raise fail(f"--resolutions must be comma-separated whole numbers (e.g. 128,256), not {resolutions!r}") from None
    if {"refine", "cuda"} & set(sections) and (not fine or min(fine) < 1):  # the cuda section refines too
        raise fail(f"--resolutions must list fine grids of at least 1 cell (e.g. 128,256), not {resolutions!r}")
    _check_report_path(out)
    if checkpoint is not None and not checkpoint.is_file():
        raise fail(f"{checkpoint}: checkpoint file not found" if not checkpoint.exists()
                   else f"{checkpoint}: is a folder, not a checkpoint file")
    # --faces and --batch size the cuda section's pipeline too: it ran 4096 faces at batch 64 whatever they said
    sizes = BenchSizes(repeat=repeat, pipeline_faces=faces or _SIZES.pipeline_faces,
                       pipeline_batch=batch or _SIZES.pipeline_batch, refine_resolutions=fine,
                       cuda_pipeline_faces=faces or _SIZES.cuda_pipeline_faces,
                       cuda_pipeline_batch=batch or _SIZES.cuda_pipeline_batch)
    with sigterm_as_interrupt() as terminated:  # a time limit's SIGTERM: the report's fate said, as Ctrl-C's
        try:
            run_bench(out, checkpoint=str(checkpoint) if checkpoint else None, device=device,
                      sections=sections, ict_root=ict_root, sizes=sizes,
                      log=lambda s: typer.echo(s, err=True), keep_others=keep)
        except KeyboardInterrupt:  # the sections' temporary folders and processes are gone; the report is
            # written all at once at the end, so an earlier one stays whole (this run's numbers are lost)
            raise fail(f"{'terminated' if terminated else 'interrupted'}; {out} not written"
                       + (" (the earlier report there is left as it was)" if out.exists() else ""),
                       interrupt_status(terminated)) from None
    typer.echo(Path(out).read_text())


def _check_report_path(out: Path) -> None:
    """-o must be a markdown file that can be written (in a folder that can be written into), named so
    that its .json twin is another file, and not replace a file that is no bench report (run_bench
    checks the same, :func:`voxface.bench.check_report_path`; here before the checkpoint is looked at)."""
    from ..bench import check_report_path
    from ..errors import VoxfaceError

    if out.is_dir():
        raise fail(f"{out}: is a folder; name the report file (e.g. {out / 'BENCHMARKS.md'})")
    if out.suffix.lower() != ".md":
        raise fail(f"{out}: the report is markdown and needs a .md name (its numbers go to the .json twin "
                   f"{out.with_suffix('.json').name} beside it)")
    check_not_special(out)  # a device or FIFO there: replaced by a file (its .json twin too; read first: a hang)
    check_not_special(out.with_suffix(".json"))
    try:
        check_report_path(out, "-o")
    except VoxfaceError as e:
        raise fail(str(e)) from None
