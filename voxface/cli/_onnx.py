"""``voxface export-onnx``: the encoder and decoder as ONNX graphs (a thin wrapper over :mod:`voxface.onnx`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import app, fail, input_file, interrupt_status, output_folder, sigterm_as_interrupt


@app.command("export-onnx")
def export_onnx_cmd(
    ckpt: Path = typer.Argument(..., parser=input_file, help="voxface checkpoint (vox-cpk.pth.tar)."),
    out: Path = typer.Option(..., "--out", "-o", parser=output_folder, help="Folder for encoder.onnx, decoder.onnx, onnx.json, onnx.md."),
    opset: int = typer.Option(20, "--opset", help="ONNX opset: 20 (GridSample on volumes) up to the highest the "
                              "installed torch.onnx exporter writes."),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare onnxruntime with PyTorch (fails above 1e-4)."),
    speed: bool = typer.Option(True, "--speed/--no-speed", help="Time onnxruntime against PyTorch (CPU)."),
    batch: int = typer.Option(4, "--batch", help="Batch size of the speed comparison (1..256; onnxruntime holds the whole batch: ~4 MB of buffers a face)."),
) -> None:
    """Export the encoder (image -> z_id, z_exp, raw pose) and decoder (z_id, z_exp -> logits) to ONNX.

    Both graphs have a dynamic batch axis; onnx.json / onnx.md record their signatures, the
    largest difference to PyTorch and the speed of onnxruntime against PyTorch in the same run.
    The four files replace earlier ones only all together, once every one is written (and checked);
    Ctrl-C or SIGTERM leaves the folder as it was (exit 130 / 143).
    The decoder graph gives the decoder's own grid (64^3 for the shipped model): a refinement head
    (reconstruct --resolution 128 --upsample head) is not exported.
    """
    from ..checkpoint import load_model
    from ..errors import VoxfaceError
    from ..onnx import check_batch, check_opset, export_onnx, need_packages

    try:  # refuse before loading anything or touching the output folder
        check_opset(opset)
        check_batch(batch)
    except VoxfaceError as e:
        raise fail(f"--{e}") from None
    need_packages(check, speed)
    with sigterm_as_interrupt() as terminated:  # SIGTERM as Ctrl-C: it left the temporaries
        try:
            res = export_onnx(load_model(ckpt, device="cpu"), out, opset=opset, check=check, speed=speed, batch=batch,
                              checkpoint=ckpt, progress=sys.stderr.isatty())  # logs and captured output: no bar lines
        except KeyboardInterrupt:  # the temporaries are gone; typer would exit 130 without a word
            raise fail(f"{'terminated' if terminated else 'interrupted'}; nothing written to {out}",
                       interrupt_status(terminated)) from None
    typer.echo((out / "onnx.md").read_text(), nl=False)
    typer.echo(f"wrote {res.encoder} and {res.decoder}")
