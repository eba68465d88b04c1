"""``voxface interpolate``, ``transfer``, ``walk`` and ``sample``: the latent toolkit on the command line.

Each command writes into its output folder: the meshes (``step_00.ply``... or ``sample_00.ply``...),
a PNG strip or grid of clay renders, an animated GIF, a self-contained interactive HTML page
(``index.html``: a slider over the meshes, each rotatable in 3D; it works offline), the codes
(``latents.npz``) and ``manifest.json`` listing every file written. On a terminal, progress bars
count the faces decoded and rendered.

A rerun into the same folder replaces the earlier run's outputs: the files the earlier run's
manifest lists that this run does not write (``step_07.ply`` of an 8-step run redone in 4 steps,
another command's or format's files) are removed, so the folder and its manifest agree. Nothing
else in the folder is touched (see :func:`_remove_stale`). A run writes its files into a hidden
folder inside the output folder and moves them in at the end, so a run stopped part-way leaves the
earlier run's files as they were (:func:`_staged`). A run whose outputs would replace one of
its inputs (a photo named ``strip.png`` in the output folder, the checkpoint named ``index.html``),
or a file of an output's name that no earlier run of these commands wrote (a folder's own
``index.html``, ``reconstruct``'s ``source.ply``) or another tool's ``manifest.json``, is refused
before anything is written (see :func:`_refuse_overwriting`).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer

from . import DEVICE_HELP, app, check_output, fail, input_file, interrupt_status, output_folder, sigterm_as_interrupt
from ._reconstruct import reconstruct_option

_CKPT = typer.Option(None, "--checkpoint", "-c", parser=input_file, help="Checkpoint (default: the bundled weights).")
_DEVICE = typer.Option("auto", help=DEVICE_HELP)
_DETECT = typer.Option(True, "--detect/--no-detect", help="--no-detect: photos are already framed crops.")


# reconstruct's own options (the same flags, default, help and range: the commands that read photos
# detect faces as it does, and a NoFaceError's hint names the flag)
_SKIN_CHECK = reconstruct_option("skin_check")  # --skin-check/--no-skin-check
_SCAN_SIZE = reconstruct_option("scan_size")  # --scan-size, at least 24
_THRESHOLD = typer.Option(0.5, min=0.01, max=0.99, help="Surface occupancy probability.")
_SIZE = typer.Option(192, min=32, max=1024, help="Side of each rendered image (pixels).")
_FMT = typer.Option("ply", "--format", help="Mesh format: obj, ply, stl, glb.")
_RESOLUTION = typer.Option(None, "--resolution", help="Grid the meshes are extracted on: 64, 128 or 256 cells per side "
                           "(default: the model's, 64). A finer grid is evaluated coarse-to-fine, with --upsample.")
_UPSAMPLE = typer.Option("decoder", "--upsample", help="How a --resolution finer than the model's grid is reached: "
                         "decoder (the decoder's own continuous function) or head (the refinement head).")

#: Steps a row of ``strip.png`` shows at most (front views above their 3/4 views).
STRIP_COLUMNS = 10
# the 3/4 view used for strips and animations: shows the face's relief better than a frontal view
_VIEW = (30.0, 10.0)

#: The commands whose manifest.json a rerun reads, and the names of the files they write besides
#: it: only such names, listed in such a manifest, are ever removed from an output folder.
_COMMANDS = ("interpolate", "transfer", "walk", "sample")
_OUTPUT_NAME = re.compile(
    r"(?:(?:step|sample)_\d+|source|target|transfer)\.(?:obj|ply|stl|glb)"
    r"|(?:strip|grid|triptych)\.png|(?:interpolation|transfer|walk|samples)\.gif|index\.html|latents\.npz"
)


def _check(fmt: str, space: str | None = None, mode: str | None = None, resolution: int | None = None,
           upsample: str = "decoder") -> None:
    from ..latent import MODES, SPACES
    from ..mesh import MESH_FORMATS
    from ._reconstruct import check_grid_options

    if fmt not in MESH_FORMATS:
        raise fail(f"--format must be one of {', '.join(MESH_FORMATS)}, not {fmt!r}")
    check_grid_options(resolution, upsample)
    if space is not None and space not in SPACES:
        raise fail(f"--space must be one of {', '.join(SPACES)}, not {space!r}")
    if mode is not None and mode not in MODES:
        raise fail(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")


def _grid(model: Any, resolution: int | None, upsample: str) -> dict[str, Any]:
    """``decode_latents``' ``resolution`` and ``upsample``, checked against the loaded model before
    any face is decoded (a grid that is not the model's times 1, 2, 4...: one line), with the note
    ``reconstruct`` prints when ``upsample`` cannot be had (no refinement head)."""
    from ..reconstruct import output_resolution
    from ._reconstruct import _note_upsample_fallback

    output_resolution(model, resolution)
    _note_upsample_fallback(model, resolution, upsample)
    return {"resolution": resolution, "upsample": upsample}


def _decode(model: Any, codes: Any, threshold: float, grid: dict[str, Any], progress: bool = False,
            alone: Iterable[int] = ()) -> list[Any]:
    """``decode_latents`` of ``codes``, a batch at a time, each face keeping its mesh but not its
    occupancy logits (``logits`` is ``None``): these commands write and show meshes only, and every
    face held its ``(R, R, R)`` float32 volume to the end, 67 MB at ``--resolution 256``
    (``interpolate --steps 200 --resolution 256`` about 30 GB, ``sample -n 1024`` far more; half of
    that the volumes). ``progress``: one bar counting the faces decoded (a batch of 8 on the model's
    own grid; one face at a time on a finer one, where each takes seconds).

    The decoder's float kernels give a face slightly different logits (about 2e-5, a fraction of a
    micrometre on the mesh) depending on the other faces of its batch, so two equal codes decoded in
    different batches made two different files (``transfer``'s ``transfer.ply`` and its last
    ``step_NN.ply``). Each distinct code (equal ``z_id`` and ``z_exp`` bits: the decoder reads
    nothing else) is decoded once; a row repeating an earlier row's code gets a record of its own
    (its own codes and pose, ``None`` for a morph's canonical step) with a copy of that decode's mesh
    (records of their own: changing one face's mesh leaves the other's alone).
    ``alone``: rows decoded in a batch of their own, as ``voxface reconstruct`` decodes a single
    photo (the faces the user gave).
    """
    import dataclasses

    import numpy as np
    from tqdm.auto import tqdm

    from ..reconstruct import decode_latents, output_resolution

    fine = output_resolution(model, grid.get("resolution")) != int(model.config.decoder.resolution)
    step = 1 if fine else 8
    z_id, z_exp = codes.z_id.detach().cpu().numpy(), codes.z_exp.detach().cpu().numpy()
    first: dict[bytes, int] = {}
    row = [first.setdefault(z_id[i].tobytes() + z_exp[i].tobytes(), i) for i in range(len(codes))]
    solo = {row[i] for i in alone}
    rest = [i for i in first.values() if i not in solo]
    batches = [[i] for i in sorted(solo)] + [rest[i : i + step] for i in range(0, len(rest), step)]
    decoded: dict[int, Any] = {}
    with tqdm(total=len(first), desc="decode", unit="face", disable=not progress) as bar:
        for batch in sorted(batches):
            recs = decode_latents(model, codes[np.asarray(batch)], threshold=threshold, batch_size=len(batch), **grid)
            for i, rec in zip(batch, recs):
                rec.logits = None  # (a view of the batch's array: all of a batch's go together)
                decoded[i] = rec
            bar.update(len(batch))
    recs = []
    for i, j in enumerate(row):
        if i == j:
            recs.append(decoded[i])
        else:  # a repeated code: the first decode's mesh, copied, with this row's codes
            one = codes[i].to("cpu")
            recs.append(dataclasses.replace(decoded[j], mesh=decoded[j].mesh.copy(), latents=one, pose=one.pose))
    return recs


def _provenance(model: Any) -> dict[str, Any]:
    """Which weights made the codes, for ``latents.npz``: the keys ``voxface reconstruct`` records in
    every face's ``.npz`` (:func:`voxface.reconstruct.model_provenance`: ``voxface_version``,
    ``model_sha256`` and the checkpoint load_model read, its path, SHA-256 and epoch). Codes drawn
    from a checkpoint's prior, or read by its encoder, mean something only to its decoder; the
    manifest names the checkpoint by path alone (a ``last.pth.tar`` a training replaces)."""
    from ..reconstruct import model_provenance

    return model_provenance(model)


def _mesh_name(stem: str, i: int, count: int, fmt: str) -> str:
    """The name of mesh ``i`` of ``count``: ``step_00.ply``... (wider numbers past 100 meshes)."""
    width = max(2, len(str(count - 1)))
    return f"{stem}_{i:0{width}d}.{fmt}"


def _progress() -> bool:
    """Whether to show progress bars: when stderr is a terminal (a 1,024-face sample is minutes of
    decoding and rendering; logs and captured output get no bar lines)."""
    return sys.stderr.isatty()


def _shares(steps: int, digits: int, kind: str = "f") -> list[str]:
    """``i / (steps - 1)`` of each step formatted ``{:.<digits><kind>}`` (``"f"``: 0.25, ``"%"``:
    25%), with more decimals where ``digits`` would give two steps one label (past 101 steps
    ``t = 0.01`` labelled two steps)."""
    while True:
        labels = [f"{i / (steps - 1):.{digits}{kind}}" for i in range(steps)]
        if len(set(labels)) == steps:
            return labels
        digits += 1


def _named(recs: list[Any], stem: str, fmt: str) -> list[tuple[str, Any]]:
    """``[(mesh file name, reconstruction)]`` of a sequence written by :func:`_write_outputs`."""
    return [(_mesh_name(stem, i, len(recs), fmt), r) for i, r in enumerate(recs)]


def _output_names(stem: str, count: int, fmt: str, gif: str) -> list[str]:
    """The names :func:`_write_outputs` and :func:`_finish` write for ``count`` reconstructions
    (with ``latents.npz``, which every command writes)."""
    picture = "grid.png" if stem == "sample" else "strip.png"
    meshes = [_mesh_name(stem, i, count, fmt) for i in range(count)]
    return meshes + [picture, gif, "index.html", "latents.npz", "manifest.json"]


def _refuse_overwriting(out: Path, names: Iterable[str], faces: Iterable[str | None],
                        checkpoint: Path | None) -> None:
    """Refuse a run whose outputs (``out/<name>`` for each of ``names``) would replace one of its
    inputs: the faces (photos or latent files) or the checkpoint. Paths are compared resolved, so
    ``./`` prefixes, ``..`` and symbolic links (an input linked into ``out``, ``out`` itself a link)
    do not hide a clash. Runs before anything is written; raises :class:`VoxfaceError` naming the
    input and the output: also ``out/latents.npz`` read as a face (the run would replace the codes
    it reads, of which it uses only the first, and remove the meshes made from the others). A
    folder where an output file goes is refused too (naming it), and so are a ``manifest.json``
    that is not one of these commands' (another tool's) and any other file of an output's name
    that no such manifest lists, which the run would replace: an ``index.html`` (a site's page:
    ``-o docs/``), ``reconstruct``'s ``source.ply`` of a photo ``source.jpg``, the user's own
    ``strip.png``.
    """
    from ..errors import VoxfaceError
    from ..reconstruct import _resolved

    outputs = {_resolved(out / name): out / name for name in names}
    inputs = [f for f in faces if f is not None] + ([checkpoint] if checkpoint is not None else [])
    for path in inputs:
        hit = outputs.get(_resolved(path))
        if hit is not None:
            raise VoxfaceError(f"the output {hit} would overwrite this input; write into another folder (-o)", path)
    for path in outputs.values():  # else the run fails there after decoding, half its files written
        if path.is_dir():
            raise VoxfaceError("is a folder, where this run writes a file; move it or write into another folder (-o)",
                               path)
    # a site's index.html (-o docs/) or another tool's manifest.json was replaced without a word
    manifest = out / "manifest.json"
    if manifest.is_file() and _latent_manifest(out) is None:
        raise VoxfaceError("is not the manifest of a voxface latent command, and this run writes its own there (with "
                           "index.html, strip.png...); write into another folder (-o)", manifest)
    earlier = _earlier_outputs(out)
    page = out / "index.html"
    if page.is_file() and "index.html" not in earlier:
        raise VoxfaceError("was not written by a voxface latent command (no manifest.json beside it lists it), and "
                           "this run writes its page there; write into another folder (-o) or remove it", page)
    # any other file of an output's name that no earlier run of these commands wrote: reconstruct's
    # source.ply and target.ply of photos named source.jpg and target.jpg (`voxface transfer
    # rec/source.npz rec/target.npz -o rec`) were replaced by canonical decodes, then removed by a
    # rerun in another --format, as files the transfer's manifest listed
    for path in outputs.values():
        if path.name not in earlier and path.name != "manifest.json" and path.is_file():
            raise VoxfaceError(f"was not written by a voxface latent command (no manifest.json beside it lists "
                               f"it), and this run writes its {path.name} there; write into another folder (-o) "
                               "or move it", path)


def _face_arg(value: str) -> str:
    if not value.strip():  # Path("") is "." (the current folder): it was called a directory
        raise fail("a face argument is empty (give a photo or a .npz from `voxface reconstruct`)")
    p = Path(value)
    if not p.exists():
        raise fail(f"{value}: no such file (give a photo or a .npz from `voxface reconstruct`)")
    return value


def _recorded(face: str | None) -> str | None:
    """A face argument as the manifest records it: absolute, links resolved (as the checkpoint),
    so that the run can be redone from another folder (``a.npz`` named a file of the folder the
    command ran in, which the manifest does not say); ``None`` stays ``None`` (the mean face)."""
    from ..reconstruct import _resolved

    return None if face is None else str(_resolved(face))


def _write_outputs(
    out: Path,
    recs: list[Any],
    labels: list[str],
    *,
    stem: str,
    fmt: str,
    title: str,
    description: str,
    size: int,
    gif: str,
    pingpong: bool,
    caption: str,
    extra_files: list[Path] | None = None,
) -> list[Path]:
    """Meshes, strip/grid PNG, GIF and HTML page of a sequence of reconstructions. ``labels`` name
    each step (in the pictures, on every GIF frame and on the page); ``caption`` is the line above
    the strip or grid saying what the pictures show."""
    from ..html import save_mesh_page

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = list(extra_files or [])
    for i, rec in enumerate(recs):
        files += rec.save(out / _mesh_name(stem, i, len(recs), fmt))
    # the pictures in a function of their own: its renders and frames are freed before the page
    # (the 12 views of 1,024 samples at --size 160, 0.2 GB compressed, and the grid being drawn)
    write_pictures = _write_grid if stem == "sample" else _write_strip
    files += write_pictures(out, recs, labels, size=size, gif=gif, pingpong=pingpong, caption=caption)
    files.append(save_mesh_page(out / "index.html", recs, labels, title=title, description=description,
                                max_faces=page_faces(len(recs)), yaw=_VIEW[0], pitch=_VIEW[1], progress=_progress()))
    return files


#: Faces ``index.html`` shows in all (about 12 bytes each on the page): a budget shared by its meshes.
PAGE_FACES = 2_000_000


def page_faces(count: int) -> int:
    """Faces each of ``count`` meshes keeps on ``index.html``: 20,000 (the page default) up to 100
    meshes, then :data:`PAGE_FACES` shared, at least 2,000 (a face still reads as one). ``sample -n
    1024`` made a page of 195 MB at 64^3 (15,800 faces a face), more than a browser opens; now 25 MB.
    The mesh files keep every face; each step's caption says how many are shown."""
    return max(2000, min(20000, PAGE_FACES // max(1, count)))


def _render(recs: list[Any], views: list[tuple[float, float]], size: int,
            keep: Callable[[Any], Any] = lambda image: image) -> list[list[Any]]:
    """``render_sequence(recs, views, size)`` under one framing for all faces, with a progress bar
    on a terminal. ``render_sequence`` reads each mesh as arrays and caches nothing on it, so what
    rendering holds beyond the pictures is one mesh's normals and ray-casting scene, whatever the
    number of faces (it cached 3 MB a face on the meshes, held to the end of the run: ``sample -n
    1024`` near 8 GB). ``keep``: what is held of each picture, taken as each face is rendered (the
    picture itself by default; ``sample``'s grid keeps it compressed, :func:`_packed`).

    Returns ``images[i][j]``: ``keep`` of face ``i`` seen from view ``j`` (``(yaw, pitch)`` in
    degrees), a ``(size, size, 3)`` uint8 image."""
    from ..viz import _renders

    return [[keep(image) for image in row] for row in _renders(recs, views, size, progress=_progress())]


def _packed(image: Any) -> tuple[bytes, tuple[int, ...], str]:
    """``image`` (a numpy array) compressed without loss (zlib level 1, about 2 ms a 160-pixel view):
    clay on white takes a fifth of the bytes. ``sample``'s grid holds 12 views of every face until
    its turntable is written: 0.9 GB for ``-n 1024`` at the default ``--size 160``, 0.2 GB packed."""
    import zlib

    return zlib.compress(image.tobytes(), 1), image.shape, image.dtype.str


def _unpacked(packed: tuple[bytes, tuple[int, ...], str]) -> Any:
    """The image :func:`_packed` packed, as it was (read-only)."""
    import zlib

    import numpy as np

    data, shape, dtype = packed
    return np.frombuffer(zlib.decompress(data), dtype).reshape(shape)


def _write_grid(out: Path, recs: list[Any], labels: list[str], *, size: int, gif: str, pingpong: bool,
                caption: str) -> list[Path]:
    """``grid.png`` (3/4 views of every sample) and ``gif``: the whole grid turning around."""
    import math

    from ..viz import image_grid, save_gif, save_png

    ncols = math.ceil(math.sqrt(len(recs)))
    turn = [(float(yaw), _VIEW[1]) for yaw in range(0, 360, 30)]
    views = _render(recs, turn, size, keep=_packed)  # each face's twelve views compressed as rendered
    written: list[Path] = []

    def frames() -> Iterator[Any]:
        # one grid at a time into the GIF (save_gif palettises each as it comes and lets it go): the
        # twelve grids of `sample -n 1024 --size 160` were held together, 78 MB each
        for j in range(len(turn)):
            grid = image_grid([_unpacked(v[j]) for v in views], ncols=ncols, labels=labels, title=caption)
            for v in views:  # each view once in a grid: let it go (a grid's worth of memory, not two)
                v[j] = None
            if j == 1:  # yaw 30: the 3/4 view
                written.append(save_png(grid, out / "grid.png"))
            yield grid

    animation = save_gif(frames(), out / gif, fps=6.0)
    return [*written, animation]


def _write_strip(out: Path, recs: list[Any], labels: list[str], *, size: int, gif: str, pingpong: bool,
                 caption: str) -> list[Path]:
    """``strip.png`` (front views above 3/4 views, one column per step) and ``gif``: the morph
    (there and back with ``pingpong``), each frame labelled."""
    import numpy as np

    from ..viz import image_grid, save_gif, save_png

    views = _render(recs, [(0.0, 0.0), _VIEW], size)
    front, three_q = [v[0] for v in views], [v[1] for v in views]
    # at most STRIP_COLUMNS steps a row (40 steps made one 7,800-pixel-wide row): blocks of
    # front views above their 3/4 views, the last block's row filled with blank cells
    cols = min(len(recs), STRIP_COLUMNS)
    blank = np.full_like(front[0], 255)
    cells: list = []
    cell_labels: list[str] = []
    for b in range(0, len(recs), cols):
        k = min(cols, len(recs) - b)
        cells += front[b : b + k] + [blank] * (cols - k) + three_q[b : b + k] + [blank] * (cols - k)
        cell_labels += list(labels[b : b + k]) + [""] * (2 * cols - k)
    files = [save_png(image_grid(cells, ncols=cols, labels=cell_labels, title=caption), out / "strip.png")]
    # every frame says which step it is (a morph there and back shows each step twice)
    labelled = [image_grid([v], ncols=1, pad=2, labels=[lab]) for v, lab in zip(three_q, labels)]
    # a label that wraps makes a taller frame: blank rows above the shorter ones keep the head still
    tall = max(f.shape[0] for f in labelled)
    labelled = [np.pad(f, ((tall - f.shape[0], 0), (0, 0), (0, 0)), constant_values=255) for f in labelled]
    frames = labelled + (labelled[-2:0:-1] if pingpong and len(labelled) > 2 else [])
    files.append(save_gif(frames, out / gif, fps=8.0))
    return files


def _earlier_outputs(out: Path) -> set[str]:
    """The files an earlier ``interpolate``/``transfer``/``walk``/``sample`` run wrote into ``out``.

    Read from ``out/manifest.json``: its ``files`` that are plain names of those commands' outputs
    (:data:`_OUTPUT_NAME`: no folder part, no ``..``). Empty when there is no manifest, or it is
    unreadable or not one of theirs (another tool's ``manifest.json`` removes nothing).
    """
    manifest = _latent_manifest(out)
    if manifest is None:
        return set()
    return {f for f in manifest["files"] if isinstance(f, str) and _OUTPUT_NAME.fullmatch(f)}


def _latent_manifest(out: Path) -> dict[str, Any] | None:
    """``out/manifest.json`` when one of :data:`_COMMANDS` wrote it (a ``command`` naming one of them
    and a ``files`` list); ``None`` when there is none, or it is unreadable or another tool's."""
    import json

    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = manifest.get("command") if isinstance(manifest, dict) else None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(command, dict) or command.get("name") not in _COMMANDS or not isinstance(listed, list):
        return None
    return manifest


def _remove_stale(out: Path, earlier: set[str], written: Iterable[Path], inputs: Iterable[str]) -> list[str]:
    """Remove the files of an earlier run (``earlier``, from :func:`_earlier_outputs`) that this
    run did not rewrite; return their names, sorted.

    Why this design (and not writing into a temporary folder and swapping it in): ``-o`` may be a
    folder that holds other files, the inputs among them, which a swap would throw away. Here a
    file is removed only when all of these hold: the earlier run's manifest lists it (voxface
    wrote it), its name is one these commands write, it is a regular file (not a link or folder),
    this run did not write it, and it is none of this run's inputs (an earlier run's
    ``step_03.ply`` given as a face is kept). Files the
    earlier run did not list, such as the user's own, are never touched.

    It runs after every new file is written (into a hidden folder, then moved in: :func:`_staged`)
    and before the new manifest, so a run that fails or is stopped before the end (its inputs
    refused, a write failing, Ctrl-C) removes and replaces nothing: the earlier run's files and
    manifest stay as they were.
    """
    keep = {Path(f).resolve() for f in written} | {Path(p).resolve() for p in inputs}
    removed = []
    for name in sorted(earlier):
        path = out / name
        if path.is_symlink() or not path.is_file() or path.resolve() in keep:
            continue
        path.unlink(missing_ok=True)
        removed.append(name)
    return removed


def _settings(checkpoint: Path | None, threshold: float, fmt: str, size: int, detect: bool | None = None,
              skin_check: bool = True, scan_size: int | None = None) -> dict:
    """The options every latent command shares, for its manifest: which model made the meshes
    (the checkpoint's absolute path, or ``"bundled"``), the surface threshold, the format, the
    render size and, for commands that read photos, whether faces were detected, with the
    detector's skin check and scan size."""
    from ..reconstruct import _resolved

    settings = {"checkpoint": str(_resolved(checkpoint)) if checkpoint is not None else "bundled",
                "threshold": threshold, "format": fmt, "size": size}
    if detect is not None:
        settings["detect"] = detect
        if scan_size is not None:
            settings.update(skin_check=skin_check, scan_size=scan_size)
    return settings


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` (a decimal string) may still be running: ``True`` unless it
    is a number no running process has (a name of another form, or a process of another user,
    counts as alive: its folder is left alone)."""
    import os

    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A hidden folder in ``out`` (``.voxface-partial-*``) that a run writes its files into;
    :func:`_finish` moves them into ``out``. Removed with whatever is left in it however the run
    ends, so a run stopped part-way (Ctrl-C while rendering, a full disk) leaves the earlier run's
    files, page and manifest as they were (it replaced the earlier meshes, strip and codes one by
    one, beside the earlier page and manifest). Its name holds the run's process id: the folders
    of runs no longer alive (killed, so that nothing removed theirs) are removed first, those of
    a run still writing to ``out`` are left to it.

    A write that fails in it (a full disk) is reported naming the output file it stood for
    (``out/sample_01.ply``), not the hidden folder, which is gone by then; ``out`` and the folders
    above it that the run made are removed again when still empty."""
    import os
    import shutil
    import tempfile

    from ..mesh import _make_parent, _remove_folders

    made = _make_parent(out / "manifest.json")  # (a folder there was refused: _refuse_overwriting)
    for old in out.glob(".voxface-partial-*"):
        if old.is_dir() and not old.is_symlink() and not _alive(old.name.split("-")[2]):
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".voxface-partial-{os.getpid()}-", dir=out))
    try:
        yield stage
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        _remove_folders(made)
        named = _named_in_out(e, stage, out)
        if named is e:
            raise
        raise named from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _named_in_out(e: BaseException, stage: Path, out: Path) -> BaseException:
    """``e`` naming, for each file of ``stage`` (:func:`_staged`) it names, the file of ``out`` it was
    written for: a :class:`VoxfaceError` (its one line) or an :class:`OSError` (its file names);
    ``e`` itself when it names none."""
    import os

    from ..errors import VoxfaceError, printable

    def moved(name: object) -> object:
        if isinstance(name, str) and (name == str(stage) or name.startswith(str(stage) + os.sep)):
            return str(out / Path(name).relative_to(stage))
        return name

    if isinstance(e, VoxfaceError) and printable(str(stage)) in str(e):
        return VoxfaceError(str(e).replace(printable(str(stage)), printable(str(out))))
    if isinstance(e, OSError) and (moved(e.filename), moved(e.filename2)) != (e.filename, e.filename2):
        first, second = moved(e.filename), moved(e.filename2)  # a move into out: the one file, once
        return OSError(e.errno, e.strerror, first, None, None if second == first else second)
    return e


def _finish(out: Path, files: list[Path], command: dict[str, Any], meshes: list[tuple[str, Any]],
            inputs: Iterable[str] = (), *, stage: Path) -> None:
    """Move the files written into ``stage`` (:func:`_staged`) into ``out``, remove an earlier
    run's outputs this run did not rewrite (:func:`_remove_stale`), then write ``manifest.json``:
    the command and its settings, every file written, and each mesh (``meshes``: ``[(file name,
    Reconstruction)]``) with its size and closedness. Before the first move the earlier run's
    manifest (or a new one) lists this run's files too, so a run stopped part-way through the moves
    leaves every file it moved in listed (a rerun replaces them)."""
    import json
    import os

    from ..mesh import atomic_write_bytes

    earlier = _earlier_outputs(out)
    # first the earlier run's manifest with this run's files added to its list: a run stopped while
    # moving its files in (Ctrl-C) leaves no file of ours that no manifest lists, which a rerun
    # would refuse to replace (_refuse_overwriting) and never remove
    interim = dict(_latent_manifest(out) or {"command": command, "meshes": []})
    interim["files"] = sorted(earlier | {str(Path(f).relative_to(stage)) for f in files})
    atomic_write_bytes(out / "manifest.json", (json.dumps(interim, indent=2) + "\n").encode())
    moved = []
    for f in files:
        target = out / Path(f).relative_to(stage)
        os.replace(f, target)
        moved.append(target)
    files = moved
    removed = _remove_stale(out, earlier, files, inputs)
    manifest = {
        "command": command,
        "files": sorted(str(f.relative_to(out)) for f in files),
        "meshes": [_mesh_entry(name, r) for name, r in meshes],
    }
    files.append(atomic_write_bytes(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode()))
    note = f"; removed {len(removed)} file(s) of an earlier run there" if removed else ""
    typer.echo(f"wrote {len(files)} files to {out}{note} (open {out / 'index.html'} in a browser)")


def _mesh_entry(name: str, rec: Any) -> dict[str, Any]:
    """The manifest's line for a mesh: its file, vertex and face counts and closedness (trimesh's
    ``is_watertight``: every edge shared by exactly two faces), the last found from the face array
    (:func:`voxface.mesh._edge_topology`), not by asking the mesh: trimesh caches the edges it
    derives on the mesh it asks, 2 MB a face of the model's grid, which 1,024 samples held to the end."""
    import numpy as np

    from ..mesh import _edge_topology

    v, f = np.asarray(rec.mesh.vertices), np.asarray(rec.mesh.faces)
    return {"file": name, "vertices": len(v), "faces": len(f), "watertight": _edge_topology(f, len(v)).closed}


def _stops_on_sigterm(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` stopped by SIGTERM (kill, ``timeout``, a scheduler's time limit) as by Ctrl-C: its
    staging folder removed, the earlier run's files left to the manifest (see :func:`_finish`), one
    line ``terminated``, exit 143 (it died of the signal without a word); Ctrl-C is the root's
    ``interrupted``, exit 130."""
    @functools.wraps(command)  # typer reads the options from the wrapped signature
    def run(*args: Any, **kwargs: Any) -> None:
        with sigterm_as_interrupt() as terminated:
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                if not terminated:
                    raise
                typer.echo("terminated", err=True)
                raise typer.Exit(interrupt_status(terminated)) from None

    return run


@app.command("interpolate")
@_stops_on_sigterm
def interpolate(
    a: str = typer.Argument(..., help="First face: a photo or a .npz from `reconstruct`."),
    b: str = typer.Argument(..., help="Second face: a photo or a .npz."),
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Output folder."),
    steps: int = typer.Option(8, min=2, max=200, help="Codes from A to B, both ends included."),
    space: str = typer.Option("both", help="identity, expression or both: which latent moves (the other stays A's)."),
    mode: str = typer.Option("slerp", help="How the identity moves: slerp (around the prior mean) or lerp (straight line); the expression (blendshape weights) moves linearly in both."),
    checkpoint: Optional[Path] = _CKPT,
    detect: bool = _DETECT,
    skin_check: bool = _SKIN_CHECK,
    scan_size: int = _SCAN_SIZE,
    threshold: float = _THRESHOLD,
    fmt: str = _FMT,
    size: int = _SIZE,
    resolution: Optional[int] = _RESOLUTION,
    upsample: str = _UPSAMPLE,
    device: str = _DEVICE,
) -> None:
    """Morph face A into face B: meshes, strip.png, interpolation.gif, index.html.

    Writes DIR/step_00.ply... (one mesh per step), strip.png (front and 3/4 views of every step),
    interpolation.gif (the morph there and back), latents.npz (the codes and t) and index.html:
    a self-contained page with a slider over the steps and a 3D view (drag to rotate, wheel to
    zoom) that works offline.
    """
    _check(fmt, space, mode, resolution, upsample)
    a, b = _face_arg(a), _face_arg(b)
    _refuse_overwriting(out, _output_names("step", steps, fmt, "interpolation.gif"), [a, b], checkpoint)
    check_output(out, folder=True)  # now, not after the decoding
    from ..checkpoint import load_model
    from ..latent import interpolate as interp
    from ..latent import save_latents

    model = load_model(checkpoint, device=device)
    grid = _grid(model, resolution, upsample)
    # (a .npz of several faces, another latent command's latents.npz: a warning line, the first one used)
    codes = interp(model, a, b, steps, mode=mode, space=space, detect=detect, skin_check=skin_check,
                   scan_size=scan_size)
    # the ends alone, as `voxface reconstruct` decodes one photo: step_00 (and with --space both the
    # last step) is the mesh of A's code decoded by itself, whatever the other steps (_decode)
    recs = _decode(model, codes, threshold, grid, _progress(), alone=(0, steps - 1))
    t = [i / (steps - 1) for i in range(steps)]
    labels = [f"t = {x}" for x in _shares(steps, 2)]
    # with one space walked, B's other code is not reached: t = 1 is A's expression (or identity) still
    moves = {"both": f"the identity by {mode}, the expression linearly",
             "identity": f"the identity by {mode}, the expression stays {Path(a).name}'s",
             "expression": f"the expression linearly, the identity stays {Path(a).name}'s"}[space]
    with _staged(out) as stage:  # the earlier run stays whole until every new file is there
        lat = save_latents(codes, stage / "latents.npz", t=t, **_provenance(model))
        files = _write_outputs(
            stage, recs, labels, stem="step", fmt=fmt, size=size, gif="interpolation.gif", pingpong=True,
            title=f"voxface: {Path(a).name} to {Path(b).name}",
            description=f"{steps} steps: {moves}",
            caption=f"{Path(a).name} (t = 0) to {Path(b).name} (t = 1): {moves}",
            extra_files=[lat],
        )  # fmt: skip
        _finish(out, files, {"name": "interpolate", "a": _recorded(a), "b": _recorded(b), "steps": steps,
                             "space": space, "mode": mode, **grid,
                             **_settings(checkpoint, threshold, fmt, size, detect, skin_check, scan_size)},
                _named(recs, "step", fmt), inputs=[a, b], stage=stage)


@app.command("transfer")
@_stops_on_sigterm
def transfer(
    source: str = typer.Argument(..., help="Face whose expression is taken: a photo or a .npz."),
    target: str = typer.Argument(..., help="Face whose identity is kept: a photo or a .npz."),
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Output folder."),
    steps: int = typer.Option(8, min=2, max=200, help="Steps of the morph from the target's expression to the source's."),
    checkpoint: Optional[Path] = _CKPT,
    detect: bool = _DETECT,
    skin_check: bool = _SKIN_CHECK,
    scan_size: int = _SCAN_SIZE,
    threshold: float = _THRESHOLD,
    fmt: str = _FMT,
    size: int = _SIZE,
    resolution: Optional[int] = _RESOLUTION,
    upsample: str = _UPSAMPLE,
    device: str = _DEVICE,
) -> None:
    """Give TARGET the expression of SOURCE: transfer.ply, triptych.png, transfer.gif, index.html.

    Writes DIR/transfer.ply (TARGET's identity, SOURCE's expression) with source.ply and
    target.ply, triptych.png (the three side by side), step_00.ply... (TARGET's expression
    morphing into SOURCE's; the last step is the transfer), strip.png, transfer.gif, latents.npz
    and index.html (a slider over the morph, viewable in 3D, works offline).
    """
    _check(fmt, resolution=resolution, upsample=upsample)
    source, target = _face_arg(source), _face_arg(target)
    names = [f"source.{fmt}", f"target.{fmt}", f"transfer.{fmt}", "triptych.png"]
    _refuse_overwriting(out, names + _output_names("step", steps, fmt, "transfer.gif"), [source, target], checkpoint)
    check_output(out, folder=True)
    from ..checkpoint import load_model
    from ..latent import _first_face, as_latents, interpolate, save_latents, stack_latents, transfer_expression
    from ..viz import image_grid, render_sequence, save_png

    model = load_model(checkpoint, device=device)
    grid = _grid(model, resolution, upsample)
    found = {"detect": detect, "skin_check": skin_check, "scan_size": scan_size}
    ls, lt = as_latents(model, source, **found), as_latents(model, target, **found)
    # once both were read (a file refused for its arrays gives its one error line alone)
    ls, lt = _first_face(ls, source, "source"), _first_face(lt, target, "target")
    result = transfer_expression(model, ls, lt)
    morph = interpolate(model, lt, result, steps, space="expression")  # linear: the labels' "% of the way"
    # one bar over the three faces and the morph (at --resolution 256 the three took a minute unseen);
    # the three decoded alone (as `reconstruct` decodes one photo), the morph's ends, the codes of the
    # target and of the transfer exactly, are their records: step_00 is target.ply, the last step
    # transfer.ply, byte for byte (decoded again in other batches they differed: _decode)
    decoded = _decode(model, stack_latents([ls, lt, result, morph]), threshold, grid, _progress(), alone=(0, 1, 2))
    pair, recs = decoded[:3], decoded[3:]
    with _staged(out) as stage:  # the earlier run stays whole until every new file is there
        roles = ("source", "target", "transfer")  # the rows of `pair`, and their mesh files
        files = [r.save(stage / f"{role}.{fmt}")[0] for role, r in zip(roles, pair)]
        views = render_sequence(pair, [(0.0, 0.0), _VIEW], size)
        names = ["source (expression)", "target (identity)", "transfer"]
        files.append(save_png(image_grid([v[0] for v in views] + [v[1] for v in views], ncols=3,
                                         labels=names + ["", "", ""],
                                         title=f"{Path(target).name}'s identity with {Path(source).name}'s expression"),
                              stage / "triptych.png"))
        # rows: the source, the target and the transfer (with their poses, when read from photos); the
        # morph's codes (step_00... in order, canonical: no pose) beside them
        files.append(save_latents(stack_latents([ls, lt, result]), stage / "latents.npz",
                                  role=list(roles), step_z_id=morph.z_id.numpy(),
                                  step_z_exp=morph.z_exp.numpy(), **_provenance(model)))
        labels = (["target expression"] + [f"{x} of the way" for x in _shares(steps, 0, "%")[1:-1]]
                  + ["source expression"])
        files += _write_outputs(
            stage, recs, labels, stem="step", fmt=fmt, size=size, gif="transfer.gif", pingpong=True,
            title=f"voxface: the expression of {Path(source).name} on {Path(target).name}",
            description="the target's identity; its expression morphs into the source's (last step = transfer)",
            caption=f"{Path(target).name}'s identity, its expression morphing into {Path(source).name}'s",
        )  # fmt: skip
        _finish(out, files, {"name": "transfer", "source": _recorded(source), "target": _recorded(target),
                             "steps": steps, **grid,
                             **_settings(checkpoint, threshold, fmt, size, detect, skin_check, scan_size)},
                [(f"{role}.{fmt}", r) for role, r in zip(roles, pair)]
                + _named(recs, "step", fmt), inputs=[source, target], stage=stage)


#: Default offsets of ``voxface walk``, in standard deviations of the training codes.
WALK_VALUES = "-3,-2,-1,0,1,2,3"
#: Most offsets one walk takes (one mesh and two renders each).
MAX_WALK_STEPS = 200


def parse_values(text: str) -> list[float]:
    """``--values`` as numbers: comma-separated, finite, at most :data:`MAX_WALK_STEPS` of them."""
    import math

    parts = [s.strip() for s in str(text).split(",")]
    try:
        values = [float(s) for s in parts]
    except ValueError:
        raise fail(f"--values must be comma-separated numbers (standard deviations), e.g. {WALK_VALUES}; "
                   f"got {text!r}") from None
    bad = [s for s, v in zip(parts, values) if not math.isfinite(v)]
    if bad:
        raise fail(f"--values must be finite numbers, not {bad[0]}")
    if not 1 <= len(values) <= MAX_WALK_STEPS:
        raise fail(f"--values takes 1 to {MAX_WALK_STEPS} numbers, got {len(values)}")
    return values


@app.command("walk")
@_stops_on_sigterm
def walk(
    face: Optional[str] = typer.Argument(None, help="Start: a photo or a .npz (default: the prior's mean face)."),
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Output folder."),
    space: str = typer.Option("expression", help="identity or expression: which latent space to walk."),
    direction: int = typer.Option(0, min=0, help="Principal direction of that space (0 = most variance)."),
    values: str = typer.Option(WALK_VALUES, help="Offsets along it, in standard deviations of the training codes."),
    checkpoint: Optional[Path] = _CKPT,
    detect: bool = _DETECT,
    skin_check: bool = _SKIN_CHECK,
    scan_size: int = _SCAN_SIZE,
    threshold: float = _THRESHOLD,
    fmt: str = _FMT,
    size: int = _SIZE,
    resolution: Optional[int] = _RESOLUTION,
    upsample: str = _UPSAMPLE,
    device: str = _DEVICE,
) -> None:
    """Walk a principal direction of the latent prior from a face: meshes, strip.png, walk.gif, index.html.

    Writes DIR/step_00.ply... (one mesh per offset), strip.png (front and 3/4 views), walk.gif
    (there and back), latents.npz (the codes, the offsets and the direction) and index.html (a
    slider over the steps, viewable in 3D, works offline). The direction's standard deviation,
    share of the variance and, where the prior records it, the ICT coefficient it follows are
    printed and shown on the page.
    """
    _check(fmt, resolution=resolution, upsample=upsample)
    if space not in ("identity", "expression"):
        raise fail(f"--space must be identity or expression, not {space!r}")
    offsets = parse_values(values)
    start = _face_arg(face) if face is not None else None
    _refuse_overwriting(out, _output_names("step", len(offsets), fmt, "walk.gif"), [start], checkpoint)
    check_output(out, folder=True)
    from ..checkpoint import load_model
    from ..errors import VoxfaceError
    from ..latent import mean_latents, principal_directions, save_latents
    from ..latent import walk as walk_codes

    model = load_model(checkpoint, device=device)
    grid = _grid(model, resolution, upsample)
    if not model.prior:  # principal_directions says so without naming the file
        raise VoxfaceError("this checkpoint has no latent prior to walk (a trained checkpoint has one: voxface "
                           "train; `voxface sample` draws N(0, I) without one)", checkpoint or "the bundled weights")
    try:
        dirs = principal_directions(model, space, k=direction + 1)
    except VoxfaceError as e:  # a prior of the other space's statistics only: name the checkpoint
        raise VoxfaceError(str(e), checkpoint or "the bundled weights") from None
    if direction >= len(dirs):
        raise fail(f"{checkpoint or 'the bundled weights'}: --direction {direction} does not exist; its {space} "
                   f"prior has {len(dirs)} direction(s): use 0..{len(dirs) - 1}")
    d = dirs[direction]
    origin = mean_latents(model) if start is None else start
    try:
        codes = walk_codes(model, origin, d, offsets, detect=detect, skin_check=skin_check, scan_size=scan_size)
    except ValueError as e:  # offsets so large the codes would leave the accepted range
        if not str(e).startswith("values"):  # (not the others: a prior's direction of the wrong length)
            raise
        raise VoxfaceError(f"--values: {e}") from None
    # offset 0 (the start's code exactly) alone, as `voxface reconstruct` decodes one photo (_decode)
    recs = _decode(model, codes, threshold, grid, _progress(), alone=[i for i, v in enumerate(offsets) if v == 0])
    follows = f", follows {d.match} (r = {d.correlation:+.2f})" if d.match else ""
    about = f"{space} direction #{direction}: std {d.std:.3g}, {d.explained_variance_ratio:.1%} of the variance{follows}"
    typer.echo(about)
    with _staged(out) as stage:  # the earlier run stays whole until every new file is there
        lat = save_latents(codes, stage / "latents.npz", values=offsets, direction=d.vector.numpy(), std=d.std,
                           **_provenance(model))
        files = _write_outputs(
            stage, recs, [f"#{direction} {v:+g} sd" for v in offsets], stem="step", fmt=fmt, size=size, gif="walk.gif",
            pingpong=True,
            title=f"voxface: walking {space} direction #{direction} from "
                  f"{Path(start).name if start else 'the mean face'}",
            description=about, caption=f"from {Path(start).name if start else 'the mean face'} along the {about}",
            extra_files=[lat],
        )  # fmt: skip
        _finish(out, files, {"name": "walk", "face": _recorded(start), "space": space, "direction": direction,
                             "values": offsets, **grid,
                             **_settings(checkpoint, threshold, fmt, size, detect if start else None, skin_check,
                                         scan_size)},
                _named(recs, "step", fmt), inputs=[start] if start else [], stage=stage)


@app.command("sample")
@_stops_on_sigterm
def sample(
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Output folder."),
    n: int = typer.Option(16, "-n", "--num", min=1, max=1024, help="How many faces."),
    temperature: float = typer.Option(1.0, min=0.0, help="Scale of the deviation from the prior mean (0 = the mean face)."),
    space: str = typer.Option("both", help="identity, expression or both: which latent is sampled (the other is the mean)."),
    seed: int = typer.Option(0, min=0, help="Sample i is a pure function of (seed, i)."),
    kind: str = typer.Option("pca", help="pca (correlated, along the principal directions) or gaussian (diagonal)."),
    checkpoint: Optional[Path] = _CKPT,
    threshold: float = _THRESHOLD,
    fmt: str = _FMT,
    size: int = typer.Option(160, min=32, max=1024, help="Side of each rendered image (pixels)."),
    resolution: Optional[int] = _RESOLUTION,
    upsample: str = _UPSAMPLE,
    device: str = _DEVICE,
) -> None:
    """Draw N faces from the checkpoint's latent prior: meshes, grid.png, samples.gif, index.html.

    Writes DIR/sample_00.ply..., grid.png (3/4 views), samples.gif (the grid turning around),
    latents.npz and index.html (a slider over the samples, viewable in 3D, works offline).
    Sample i is a pure function of (seed, i). Expression codes follow the prior (a normal fitted to
    the encoder's codes): some blendshape weights fall below 0, ARKit's range is not enforced.
    """
    _check(fmt, space, resolution=resolution, upsample=upsample)
    if kind not in ("pca", "gaussian"):
        raise fail(f"--kind must be pca or gaussian, not {kind!r}")
    import math

    if not math.isfinite(temperature):
        raise fail(f"--temperature must be a finite number >= 0, not {temperature}")
    _refuse_overwriting(out, _output_names("sample", n, fmt, "samples.gif"), [], checkpoint)
    check_output(out, folder=True)

    from ..checkpoint import load_model
    from ..latent import sample as draw
    from ..latent import save_latents

    model = load_model(checkpoint, device=device)
    grid = _grid(model, resolution, upsample)
    try:  # a checkpoint without a prior warns (a `warning:` line: voxface.cli.main)
        codes = draw(model, n, temperature=temperature, space=space, seed=seed, kind=kind)
    except ValueError as e:  # the other options are checked: a --temperature too large is left
        raise fail(f"--{e}" if str(e).startswith("temperature") else str(e)) from None
    recs = _decode(model, codes, threshold, grid, _progress())
    with _staged(out) as stage:  # the earlier run stays whole until every new file is there
        # a seed beyond 64 bits (numpy draws from any) as its digits: an object array is pickled
        lat = save_latents(codes, stage / "latents.npz", seed=seed if seed < 2**64 else str(seed),
                           temperature=temperature, **_provenance(model))
        labels = [f"seed {seed} #{i}" for i in range(n)]
        prior = "identity and expression" if space == "both" else space  # not "the both prior"
        # what was drawn (a checkpoint without a prior: N(0, I), whatever --kind asked)
        drawn = f"{kind} prior" if model.prior else "no prior in the checkpoint: N(0, I)"
        files = _write_outputs(
            stage, recs, labels, stem="sample", fmt=fmt, size=size, gif="samples.gif", pingpong=False,
            title=f"voxface: {n} samples of the {prior} prior", extra_files=[lat],
            description=f"{drawn}, temperature {temperature:g}, seed {seed}",
            caption=f"{n} samples of the {prior} prior ({drawn}, temperature {temperature:g}, seed {seed})",
        )  # fmt: skip
        _finish(out, files, {"name": "sample", "n": n, "temperature": temperature, "space": space, "seed": seed,
                             "kind": kind, **grid, **_settings(checkpoint, threshold, fmt, size)},
                _named(recs, "sample", fmt), stage=stage)
