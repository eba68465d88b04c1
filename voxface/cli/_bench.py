"""``voxface bench``: write BENCHMARKS.md (a thin wrapper over :func:`voxface.bench.run_bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("bench")
def bench(
    out: Path = typer.Option(Path("BENCHMARKS.md"), "-o", "--out", help="Markdown report (a .json twin is written too)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint (default: bundled)."),
    only: str = typer.Option("startup,data,model,pipeline,refine,onnx,memory,cuda",
                             help="Comma-separated sections: startup, data, model, pipeline, refine, onnx, memory, cuda "
                                  "(cuda runs only where CUDA is available)."),
    device: str = typer.Option("auto", help="Device of the model sections: auto, cpu, cuda, cuda:N."),
    ict_root: Optional[str] = typer.Option(None, "--ict-root", help="ICT-FaceKit folder for the data section."),
    faces: Optional[int] = typer.Option(None, "--faces", min=1, help="Crops of the batch-pipeline comparison "
                                        "(default: BenchSizes.pipeline_faces, 256)."),
    batch: int = typer.Option(16, "--batch", min=1, help="Batch size of the batch-pipeline comparison."),
    resolutions: str = typer.Option("128,256", help="Fine grids of the coarse-to-fine section."),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Repeats per timing (median reported); rounds of the "
                               "pipeline comparison (fastest reported)."),
    keep: bool = typer.Option(True, "--keep/--fresh", help="Keep the sections of the existing report that this "
                              "run does not measure, each marked with when and where it was measured (--only "
                              "cuda on a GPU adds its table to the CPU report); --fresh writes this run's alone."),
) -> None:
    """Measure start-up, data generation, per-stage time, throughput, the batch pipeline,
    coarse-to-fine refinement, ONNX and memory; write BENCHMARKS.md and BENCHMARKS.json."""
    from ..bench import BenchSizes, run_bench

    sizes = BenchSizes(repeat=repeat, pipeline_faces=faces or BenchSizes.pipeline_faces, pipeline_batch=batch,
                       refine_resolutions=tuple(int(r) for r in resolutions.split(",") if r.strip()))
    run_bench(out, checkpoint=str(checkpoint) if checkpoint else None, device=device,
              sections=tuple(s.strip() for s in only.split(",") if s.strip()), ict_root=ict_root, sizes=sizes,
              log=lambda s: typer.echo(s, err=True), keep_others=keep)
    typer.echo(Path(out).read_text())
