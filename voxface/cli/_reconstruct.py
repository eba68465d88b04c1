"""``voxface reconstruct``, ``decode`` and ``demo``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from . import (DEVICE_HELP, app, check_output, fail, input_file, interrupt_status, one_line, output_file, output_folder,
               sigterm_as_interrupt)

_CKPT = typer.Option(None, "--checkpoint", "-c", parser=input_file, help="Checkpoint (default: the bundled weights).")
_DEVICE = typer.Option("auto", help=DEVICE_HELP)
#: The grids ``--resolution`` accepts (each must also be the model's grid times 1, 2, 4, ...).
RESOLUTIONS = (64, 128, 256)
#: How a grid finer than the model's is reached (`--upsample`): the decoder's own function, or the
#: refinement head (voxface.refine.UPSAMPLE; repeated here so that `--help` imports no torch).
UPSAMPLE = ("decoder", "head")
#: The detector's default scan size (voxface.reconstruct.SCAN_SIZE; repeated so that `--help` imports no torch).
SCAN_SIZE = 640
#: The most smoothing iterations (voxface.mesh.MAX_SMOOTH; repeated so that `--help` shows the range).
MAX_SMOOTH = 1000


def check_grid_options(resolution: Optional[int], upsample: str) -> None:
    """Refuse a ``--resolution`` outside :data:`RESOLUTIONS` or an unknown ``--upsample`` in one line
    (before any checkpoint is read; reconstruct, evaluate and the latent commands take both)."""
    if resolution is not None and resolution not in RESOLUTIONS:
        raise fail(f"--resolution must be one of {', '.join(map(str, RESOLUTIONS))}, not {resolution}")
    if upsample not in UPSAMPLE:
        raise fail(f"--upsample must be one of {', '.join(UPSAMPLE)}, not {upsample!r}")


@app.command("reconstruct")
def reconstruct(
    images: List[str] = typer.Argument(..., help="Photos, folders or glob patterns."),
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Output folder."),
    checkpoint: Optional[Path] = _CKPT,
    fmt: str = typer.Option("ply", "--format", help="Mesh format: obj, ply, stl, glb (glb in metres, glTF's unit; the others in mm)."),
    threshold: float = typer.Option(0.5, min=0.01, max=0.99, help="Surface occupancy probability."),
    latents: bool = typer.Option(True, "--latents/--no-latents", help="Write <stem>.npz: the identity and "
                                 "expression codes, pose, grid and crop box (a few kB; what interpolate, walk and "
                                 "transfer read), and which weights made them (the checkpoint's path, SHA-256 and "
                                 "epoch)."),
    save_volume: bool = typer.Option(False, "--save-volume", help="Add the occupancy logits to <stem>.npz (float32 on "
                                     "the mesh's grid, hardly compressible: about 1 MB a face at 64^3, 7 MB at "
                                     "--resolution 128, 58 MB at 256)."),
    preview: bool = typer.Option(True, "--preview/--no-preview", help="Write <stem>_preview.png: crop, overlay, "
                                 "front view, side view (about 0.2 s of rendering a face, several times the rest "
                                 "of a face's work: --no-preview for large folders)."),
    detect: bool = typer.Option(True, "--detect/--no-detect", help="--no-detect: images are already framed crops."),
    all_faces: bool = typer.Option(False, "--all-faces", help="Every detected face, not only the largest."),
    skin_check: bool = typer.Option(True, "--skin-check/--no-skin-check", help="The detector drops face-like "
                                    "regions without skin colour (colour photos); --no-skin-check keeps them "
                                    "(faces under strongly tinted light)."),
    scan_size: int = typer.Option(SCAN_SIZE, "--scan-size", min=24, help="Longer side (pixels) of the copy of "
                                  "each photo the detector scans: faces smaller than 24 / SCAN_SIZE of the "
                                  "photo's longer side are missed; larger finds smaller faces, slower."),
    frame: str = typer.Option("canonical", help="canonical (mm) or camera (posed in the photo's pixels)."),
    smooth: int = typer.Option(0, min=0, max=MAX_SMOOTH, help="Taubin smoothing iterations (uniform weights; each "
                               "closed part keeps its volume, and a blob or rod one cell across is left as it is)."),
    decimate: Optional[int] = typer.Option(None, min=100, help="Target face count."),
    batch_size: int = typer.Option(16, min=1, help="Faces per network batch."),
    workers: Optional[int] = typer.Option(None, min=1, help="Parallel pipelines (default: 2 on the CPU, every core but "
                                "two on a GPU, at least 2). On the CPU: processes, each loading, running the network on, meshing "
                                "and writing a batch at a time, the cores split between them; 1 = this process alone. "
                                "On a GPU: threads loading crops for the one network and, from four batches on, as "
                                "many processes meshing and writing."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip inputs whose mesh exists (resume)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also search the folders' sub-folders (a name "
                                   "found twice gets _1, _2...: summary.json lists each input's files)."),
    resolution: Optional[int] = typer.Option(
        None, "--resolution", help="Grid the mesh is extracted on: 64, 128 or 256 cells per side (default: the "
        "model's, 64). A finer grid is evaluated coarse-to-fine, with --upsample."),
    upsample: str = typer.Option(
        "decoder", "--upsample", help="How a --resolution finer than the model's grid is reached: decoder (the "
        "decoder's own continuous function at the finer points; on codes read from photos closer to the exact "
        "surface than the 64^3 grid and than the head, see the README's model card) or head (the checkpoint's "
        "refinement head, voxface refine-train: keeps thin interior structures on exact codes)."),
    device: str = _DEVICE,
) -> None:
    """Reconstruct faces from photos: DIR/<stem>.<format>, <stem>.npz (codes and pose), <stem>_preview.png.

    A file that fails (unreadable, no face) is reported on one line and the batch goes on; the
    exit code is 1 when any failed, and DIR/summary.json lists every input's outcome. Meshes are
    closed, in canonical millimetres (or the photo's pixels with --frame camera; GLB in metres, or
    pixels / 1000) at any --resolution.
    """
    from ..checkpoint import load_model
    from ..mesh import MESH_FORMATS
    from ..reconstruct import FRAMES, check_summary, list_inputs, reconstruct_files

    check_grid_options(resolution, upsample)
    if fmt not in MESH_FORMATS:  # before the checkpoint is read, as the other options typer checks
        raise fail(f"--format must be one of {', '.join(MESH_FORMATS)}, not {fmt!r}")
    if frame not in FRAMES:
        raise fail(f"--frame must be one of {', '.join(FRAMES)}, not {frame!r}")
    paths = list_inputs(images, recursive=recursive)  # not an earlier run's previews; a folder without photos said
    check_output(out, folder=True)  # before the model is read: a blocked -o failed only after loading it
    check_summary(out)  # another tool's summary.json there is kept
    model = load_model(checkpoint, device=device)
    _note_upsample_fallback(model, resolution, upsample)
    with sigterm_as_interrupt() as terminated:  # SIGTERM stops the batch as Ctrl-C does
        try:
            s = reconstruct_files(model, paths, out, fmt=fmt, detect=detect, all_faces=all_faces, threshold=threshold,
                                  smooth=smooth, decimate=decimate, frame=frame, latents=latents,
                                  save_volume=save_volume, preview=preview, batch_size=batch_size, workers=workers,
                                  skip_existing=skip_existing, resolution=resolution, upsample=upsample,
                                  skin_check=skin_check, scan_size=scan_size,  # the .npz: the file load_model read
                                  progress=sys.stderr.isatty())  # a job's log: no bar lines, as export-onnx and sample
        except KeyboardInterrupt:  # the faces being written were finished; summary.json says which are done
            typer.echo(f"{'terminated' if terminated else 'interrupted'}; what is done is listed in "
                       f"{one_line(str(out / 'summary.json'))} (resume with --skip-existing)", err=True)
            raise typer.Exit(interrupt_status(terminated)) from None
    for msg in s.failed.values():  # the batch's own lines name the file raw (f"{p}: ..."): escaped as fail() does
        typer.echo(f"error: {one_line(msg)}", err=True)
    typer.echo(f"{s.faces} face(s) from {len(s.ok)} image(s) in {s.seconds:.1f} s -> {one_line(str(out))}"
               + (f"; {len(s.skipped)} skipped" if s.skipped else "")
               + (f"; {len(s.failed)} failed (see {one_line(str(out / 'summary.json'))})" if s.failed else ""))
    if s.failed:
        raise typer.Exit(1)


def reconstruct_option(name: str) -> Any:
    """``voxface reconstruct``'s own option ``name`` (flags, default, help, range), for another
    command that takes the same option (decode's grid, the latent commands' detector options)."""
    import inspect

    return inspect.signature(reconstruct).parameters[name].default


@app.command("decode")
def decode(
    checkpoint: Optional[Path] = typer.Argument(None, parser=input_file, show_default=False,
                                                help="Checkpoint (or -c; default: the bundled weights)."),
    out: Path = typer.Option(..., "-o", "--out", help="Mesh file (.obj, .ply, .stl, .glb).", parser=output_file, metavar="<path>"),
    checkpoint_opt: Optional[Path] = _CKPT,
    seed: int = typer.Option(0, help="Seed (>= 0) of the latent drawn from the checkpoint's prior (or N(0, 1))."),
    temperature: float = typer.Option(1.0, min=0.0, help="Scale of the latent's deviation from the mean."),
    threshold: float = typer.Option(0.5, min=0.01, max=0.99, help="Surface occupancy probability."),
    resolution: Optional[int] = reconstruct_option("resolution"),
    upsample: str = reconstruct_option("upsample"),
    device: str = _DEVICE,
) -> None:
    """Decode one latent code (drawn from the prior with --seed) to a mesh."""
    import math

    if checkpoint is not None and checkpoint_opt is not None:
        raise fail(f"give the checkpoint once: {checkpoint} and -c {checkpoint_opt}")
    if seed < 0:
        raise fail(f"--seed must be >= 0, got {seed}")
    if not math.isfinite(temperature):
        raise fail(f"--temperature must be a finite number >= 0, not {temperature}")
    check_grid_options(resolution, upsample)
    from ..checkpoint import load_model
    from ..latent import sample_latents
    from ..mesh import mesh_format
    from ..reconstruct import decode_latents, output_resolution

    # the mesh's format, as Reconstruction.save reads it, before the model is loaded and a face decoded
    # (-o face.txt was refused only at the write, seconds later)
    mesh_format(out)
    check_output(out)
    model = load_model(checkpoint if checkpoint is not None else checkpoint_opt, device=device)
    output_resolution(model, resolution)  # a grid the model cannot be refined to: one line, before decoding
    _note_upsample_fallback(model, resolution, upsample)
    try:
        lat = sample_latents(model, 1, temperature=temperature, seed=seed)
    except ValueError as e:  # a temperature whose codes would leave the range any model was trained on
        raise fail(f"--{e}" if str(e).startswith("temperature") else str(e)) from None
    rec = decode_latents(model, lat, threshold=threshold, resolution=resolution, upsample=upsample)[0]
    rec.save(out)
    typer.echo(f"wrote {out} ({len(rec.mesh.vertices)} vertices, watertight={rec.mesh.is_watertight})")


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("out/demo"), "-o", "--out", parser=output_folder, help="Output folder."),
    checkpoint: Optional[Path] = _CKPT,
    device: str = _DEVICE,
) -> None:
    """Reconstruct the bundled real photo (scikit-image's astronaut, public domain).

    Writes into --out the photo (astronaut.png), the mesh in the canonical frame
    (astronaut_mesh.ply), its latents (.npz), the preview PNG and the mesh posed in the camera
    frame (astronaut_mesh_camera.obj). Nothing is written when the model cannot be loaded, a demo
    stopped part-way (a full disk, Ctrl-C) removes the files it added, and a file named
    astronaut.png there that is another picture is never replaced.
    """
    import numpy as np
    import skimage.data

    from ..checkpoint import load_model
    from ..errors import ImageError
    from ..frame import euler_angles
    from ..image import load_image
    from ..reconstruct import output_paths
    from ..mesh import _make_parent, _remove_folders
    from ..viz import save_png

    photo = skimage.data.astronaut()
    photo_path = out / "astronaut.png"
    if photo_path.exists():
        try:
            same = np.array_equal(load_image(photo_path), photo)
        except ImageError:
            same = False
        if not same:
            raise fail(f"{photo_path}: exists and is not the bundled photo; it is kept: write the demo into "
                       "another folder (-o)")
    check_output(out, folder=True)
    model = load_model(checkpoint, device=device)  # before any write: a bad -c leaves nothing behind
    rec = model.reconstruct(photo)
    rec.source = "skimage.data.astronaut()"  # rec.provenance: the file load_model read, in the .npz
    made = _make_parent(photo_path)  # the folders this run makes: removed again if a write fails (a full disk)
    canonical, camera = output_paths(out, "astronaut_mesh", "ply"), output_paths(out, "astronaut_mesh_camera", "obj")
    # every file the demo writes that was not there: removed again if a later one fails (the first
    # save's three files were left without the photo, and the folder made for them with them)
    new_files = [f for f in (photo_path, *canonical.values(), camera["mesh"]) if not f.exists()]
    try:
        save_png(photo, photo_path)
        files = rec.save(canonical["mesh"], save_volume=True, preview=True)
        files += rec.save(camera["mesh"], frame="camera")
    except BaseException:
        for f in new_files:
            f.unlink(missing_ok=True)
        _remove_folders(made)
        raise
    yaw, pitch, roll = euler_angles(rec.pose.rotation[0], frame="camera")  # the encoder's pose: camera frame
    typer.echo(f"photo:   {out / 'astronaut.png'}")
    for f in files:
        typer.echo(f"output:  {f}")
    typer.echo(f"mesh:    {len(rec.mesh.vertices)} vertices, {len(rec.mesh.faces)} faces, watertight={rec.mesh.is_watertight}")
    # "mesh" (the mesh stages' sum, often marching_cubes' alone: a second equal number) and "total" left out
    stages = {k: v for k, v in rec.seconds.items() if k not in ("mesh", "total") and v >= 0.0005}
    typer.echo(f"pose:    yaw {yaw:+.0f}, pitch {pitch:+.0f}, roll {roll:+.0f} degrees (yaw > 0: turned to the "
               "subject's left; pitch > 0: face down; roll > 0: tilted towards the right shoulder)")
    typer.echo("timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stages.items())
               + " (a first call: one-time imports and warm-up included; `voxface bench` times warm runs)")


def _note_upsample_fallback(model, resolution: Optional[int], upsample: str) -> None:
    """Say on stderr when a finer ``--resolution`` cannot be reached the way ``--upsample`` asks: a
    checkpoint without a refinement head (``head``), or a decoder without a continuous function
    (its logits are then upsampled trilinearly: a smoother mesh, no finer detail)."""
    if resolution is None or resolution <= model.grid.resolution:
        return
    from ..refine import upsample_method

    used = upsample_method(model, upsample)
    if used == upsample:
        return
    what = ("the decoder's own function" if used == "decoder"
            else f"the {model.grid.resolution}^3 logits upsampled trilinearly (a smoother mesh, no finer detail)")
    why = ("this checkpoint has no refinement head (`voxface refine-train` adds one)" if upsample == "head"
           else "this decoder has no continuous function to evaluate finer")
    typer.echo(f"note: {why}: --resolution {resolution} uses {what}", err=True)
