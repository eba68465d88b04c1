"""``voxface bench``: write BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("bench")
def bench(
    out: Path = typer.Option(Path("BENCHMARKS.md"), "-o", "--out", help="Markdown report (a .json twin is written too)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint (default: bundled)."),
    only: str = typer.Option("data,model", help="Comma-separated sections: data, model."),
    device: str = typer.Option("auto"),
    ict_root: Optional[str] = typer.Option(None, "--ict-root"),
) -> None:
    """Measure data generation, per-stage reconstruction time and throughput; write BENCHMARKS.md."""
    from ..bench import run_bench

    run_bench(out, checkpoint=str(checkpoint) if checkpoint else None, device=device,
              sections=tuple(s.strip() for s in only.split(",") if s.strip()), ict_root=ict_root)
    typer.echo(Path(out).read_text())
