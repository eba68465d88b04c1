"""``voxface data ...``: preview, export and cache the synthetic ICT-FaceKit data; check a real-data folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import app, input_file, output_file, output_folder

data_app = typer.Typer(help="Training data: synthetic faces from ICT-FaceKit (preview, export, cache: they need "
                       "VOXFACE_ICT_ROOT or --ict-root) and checks of a real-data folder (check-folder).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

_ICT = typer.Option(None, "--ict-root", help="ICT-FaceKit clone or FaceXModel folder (default: $VOXFACE_ICT_ROOT).")


@data_app.command("preview")
def preview(
    num: int = typer.Option(16, "-n", "--num", min=1, max=256, help="Number of samples."),
    out: Path = typer.Option(Path("preview.png"), "-o", "--out", parser=output_file, metavar="<path>",
                             help="Grid of crops with landmarks (PNG)."),
    seed: int = typer.Option(0, help="Dataset seed (0 to 2**32 - 1)."),
    start: int = typer.Option(0, help="First sample index (0 or more)."),
    ict_root: Optional[str] = _ICT,
) -> None:
    """A grid of crops with their 68 landmarks, and a second grid of the matching meshes.

    An earlier preview there is replaced; another picture (a photo named by -o) is kept: refused.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from ..data.ict import load_ict
    from ..data.synthetic import FaceSampler
    from ..data import MAX_SEED
    from ..mesh import atomic_write_files
    from ..viz import draw_points, image_grid, png_bytes, render_overlay

    from . import check_output, check_seed, fail, interrupt_status, one_line, sigterm_as_interrupt

    if start < 0:  # sample indices start at 0 (a negative one has no sample)
        raise fail(f"--start must be a sample index, 0 or more, not {start}")
    last = int(np.iinfo(np.int64).max)  # samples record their index as int64 (an OverflowError past it)
    if start > last - (num - 1):
        raise fail(f"--start must be at most {last - (num - 1)} with -n {num} (sample indices are 64-bit), not {start}")
    check_seed(seed, 0, MAX_SEED)  # named as the option typed (the sampler calls it 'data seed')
    if out.is_dir():  # not dir.png beside it
        raise fail(f"{out}: is a folder; name the preview file (e.g. {out / 'preview.png'})")
    if not out.suffix:
        out = out.with_name(out.name + ".png")  # `-o grid` writes grid.png and grid_meshes.png
    elif out.suffix.lower() != ".png":
        raise fail(f"{out}: the preview is a PNG picture; name it <name>.png")
    meshes_out = out.with_name(out.stem + "_meshes" + out.suffix)
    check_output(out)  # now, not after rendering every sample
    check_output(meshes_out)  # a folder there failed after every render, with the crops' grid written
    for path in (out, meshes_out):  # `-o photo.png` (or the default preview.png beside one) replaced the picture
        if path.is_file() and not _is_preview(path):
            raise fail(f"{path}: exists and is not a `voxface data preview` grid; it is kept: name another "
                       "file (-o), or remove this one first")
    try:  # SIGTERM (a job's time limit) killed it without a word; Ctrl-C and SIGTERM: one line, nothing written
        with sigterm_as_interrupt() as terminated:
            sampler = FaceSampler(load_ict(ict_root), seed=seed)
            crops, meshes = [], []
            white = np.full((_TILE, _TILE, 3), 255, np.uint8)
            # a bar only on a terminal: a job's log gets no bar lines (as reconstruct, sample, export-onnx)
            for i in tqdm(range(start, start + num), desc="preview", unit="sample", disable=not sys.stderr.isatty()):
                s = sampler.sample(i, None)
                img = (s["image"].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
                crops.append(draw_points(img, s["landmarks_2d"], scale=2))
                mesh = sampler.head.mesh(s["id_coeffs"], s["exp_coeffs"])
                # posed exactly as in its crop (rotation with roll, scale, position): a clay render over white
                meshes.append(render_overlay(white, mesh, s["rotation"], float(s["scale"]), s["translation"],
                                             alpha=1.0))
            ncols = int(np.ceil(np.sqrt(num)))
            # both or neither: a full disk after the first left a new crops' grid beside an earlier run's meshes
            p1, p2 = atomic_write_files([(out, png_bytes(image_grid(crops, ncols=ncols, pad=_PAD))),
                                         (meshes_out, png_bytes(image_grid(meshes, ncols=ncols, pad=_PAD)))])
    except KeyboardInterrupt:  # the grids are written together at the end: before that, nothing is
        raise fail(f"{'terminated' if terminated else 'interrupted'}; nothing written to {out}",
                   interrupt_status(terminated)) from None
    typer.echo(one_line(f"wrote {p1} and {p2}"))  # a name's newline or escape sequence: one line, inert


#: a preview grid's cells (pixels a side: the crops drawn at twice the sampler's 128) and the padding between them
_TILE, _PAD = 256, 4


def _is_preview(path: Path) -> bool:
    """Whether ``path`` may be replaced by a preview: a grid ``data preview`` wrote (RGB, ``r * 260 + 4``
    by ``c * 260 + 4`` pixels for up to 16 x 16 cells of 256, its padding white), or a file that is
    no picture at all (empty, a failed write's bytes). A photo or any other picture is not."""
    import numpy as np
    from PIL import Image

    step = _TILE + _PAD
    try:
        with Image.open(path) as im:
            if im.mode != "RGB" or any(n % step != _PAD or n > 16 * step + _PAD for n in im.size):
                return False
            a = np.asarray(im)
    except Image.UnidentifiedImageError:  # no picture: nothing the preview would destroy
        return True
    except (OSError, ValueError, Image.DecompressionBombError):  # unreadable, damaged, huge: kept
        return False
    pad = np.zeros(max(a.shape[:2]), bool)
    for k in range(0, len(pad), step):
        pad[k:k + _PAD] = True
    return bool((a[pad[:a.shape[0]]] == 255).all() and (a[:, pad[:a.shape[1]]] == 255).all())


@data_app.command("export")
def export(
    num: int = typer.Option(..., "-n", "--num", help="Number of samples (at least 1)."),
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Output folder (an earlier export's folder resumes or "
                             "grows when the settings are the same)."),
    seed: int = typer.Option(0, help="Dataset seed (0 to 2**32 - 1)."),
    resolution: int = typer.Option(64, help="Occupancy resolution (32 to 256)."),
    points: int = typer.Option(2048, help="Surface points per sample (at least 1)."),
    ict_root: Optional[str] = _ICT,
) -> None:
    """Per sample: crop PNG, closed-head PLY, occupancy NPZ and a JSON of pose/coefficients/landmarks.

    The settings are recorded in OUT/.export.json; an export into a folder made with other settings
    is refused (its samples would mix). A failed export leaves no half-written sample.
    """
    from ..data import MAX_SEED, check_resolution
    from ..data.export import export_samples

    from . import check_output, check_seed, fail, interrupt_status, one_line, sigterm_as_interrupt

    if num < 1:
        raise fail(f"-n/--num must be at least 1, not {num}")
    check_seed(seed, 0, MAX_SEED)  # named as the option typed (the sampler calls it 'data seed')
    check_resolution(resolution, "--resolution")
    if points < 1:
        raise fail(f"--points must be at least 1 (surface points per sample), not {points}")
    check_output(out, folder=True)  # a file among its parents: '<out>: Not a directory' after reading ICT
    # export_samples refuses a folder of other settings (before reading ICT-FaceKit, and with its digest under
    # the folder's lock), records them, and removes the sample it was writing when it fails or is stopped
    try:
        with sigterm_as_interrupt() as terminated:  # SIGTERM (timeout, a scheduler): cleaned up as Ctrl-C is
            n = export_samples(out, num, seed=seed, resolution=resolution, points=points, ict_root=ict_root,
                               progress=sys.stderr.isatty())  # a job's log: no bar lines
    except KeyboardInterrupt:  # stopped in its first sample, the export removes the folder it made
        kept = (f"the complete samples in {out} are kept: run the same command again to go on" if out.is_dir()
                else f"nothing written to {out}")
        raise fail(f"{'terminated' if terminated else 'interrupted'}; {kept}", interrupt_status(terminated)) from None
    typer.echo(one_line(f"wrote {n} samples to {out}"))


#: ``data cache`` renders its validation split with the seed ``--seed`` plus this.
_VAL_SEED_OFFSET = 1_000_003


@data_app.command("cache")
def cache(
    out: Path = typer.Option(..., "-o", "--out", parser=output_folder, help="Cache folder (train/ and val/ inside)."),
    num: int = typer.Option(24576, "-n", "--num", help="Training samples (a multiple of 4)."),
    num_val: int = typer.Option(512, help="Validation samples (another seed; a multiple of 4)."),
    seed: int = typer.Option(0, help="Training seed (validation uses seed + 1000003; both below 2**32)."),
    resolution: int = typer.Option(64, help="Occupancy resolution (32 to 256)."),
    image_size: int = typer.Option(128, help="Crop size in pixels (at least 1)."),
    workers: int = typer.Option(2, min=0, help="Worker processes (0: render in this process)."),
    ict_root: Optional[str] = _ICT,
) -> None:
    """Render a training set to disk once (resumable: rerun the same command to continue)."""
    from ..data import BLOCK, MAX_SEED, check_resolution
    from ..data.cache import write_cache

    from . import check_output, fail, interrupt_status, one_line, sigterm_as_interrupt

    # refused before val/ is written: a split of fewer than BLOCK samples would hold none (training on
    # it then fails only later), and write_cache would refuse a bad train/ only after val/
    for option, value in (("-n/--num", num), ("--num-val", num_val)):
        if value < BLOCK:
            raise fail(f"{option} must be at least {BLOCK} (samples are written in blocks of {BLOCK}), not {value}")
        if value % BLOCK:  # write_cache rounds down: -n 1001 wrote 1000 and said 'cache ready' without a word
            low = value - value % BLOCK
            raise fail(f"{option} must be a multiple of {BLOCK} (samples are written in blocks of {BLOCK}), not "
                       f"{value}: give {low} or {low + BLOCK}")
    check_resolution(resolution, "--resolution")
    if image_size < 1:
        raise fail(f"--image-size must be at least 1 (pixels), not {image_size}")
    # both splits' seeds are data seeds (32-bit): refused here, not after val/ is written (a bad
    # training seed failed only then), and named as the option given (not the validation seed)
    if not 0 <= seed <= MAX_SEED - _VAL_SEED_OFFSET:
        raise fail(f"--seed must be a whole number from 0 to {MAX_SEED - _VAL_SEED_OFFSET}, not {seed} (data seeds "
                   f"are 32-bit, and validation uses --seed + {_VAL_SEED_OFFSET})")
    check_output(out, folder=True)  # a file there: said so now, not as '<out>/val: Not a directory' after loading ICT
    if (out / "meta.json").is_file() and not (out / "train").is_dir():
        # -o DIR/train (the folder write_cache and CachedDataset take) rendered a new cache inside that
        # split, DIR/train/val and DIR/train/train, leaving the one meant to grow as it was
        raise fail(f"{out}: is one split of a data cache (its meta.json is here); -o is the folder holding train/ "
                   f"and val/ ({out.parent})")
    # a cache of another --seed: named in the option's terms (write_cache names val/'s own seed, --seed + offset)
    for split, offset in (("train", 0), ("val", _VAL_SEED_OFFSET)):
        try:
            old = json.loads((out / split / "meta.json").read_text()).get("seed")
        except (OSError, ValueError, AttributeError):
            continue  # none there, or unreadable: write_cache says which
        if isinstance(old, int) and old - offset != seed:
            raise fail(f"{out}: a cache of --seed {old - offset} is already there (this run: --seed {seed}); rerun with "
                       f"--seed {old - offset} to grow it, or use another folder")
    try:  # SIGTERM (a job's time limit) killed it without a word, its progress bar's line left open
        with sigterm_as_interrupt() as terminated:
            bar = sys.stderr.isatty()  # hours of rendering into a job's log: no bar lines there
            write_cache(out / "val", num_val, seed=seed + _VAL_SEED_OFFSET, resolution=resolution,
                        image_size=image_size, workers=workers, ict_root=ict_root, progress=bar)
            write_cache(out / "train", num, seed=seed, resolution=resolution, image_size=image_size,
                        workers=workers, ict_root=ict_root, progress=bar)
    except KeyboardInterrupt:  # the chunks are written whole (renamed into place): a rerun goes on
        raise fail(f"{'terminated' if terminated else 'interrupted'}; the complete chunks in {out} are kept: run the "
                   "same command again to go on", interrupt_status(terminated)) from None
    typer.echo(one_line(f"cache ready in {out}"))


@data_app.command("check-folder")
def check_folder(
    folder: Optional[Path] = typer.Argument(None, help="Folder of crops with .ply/.obj/.npz ground truth "
                                            "(docs/real_data.md); default: the config's data.root."),
    config: Optional[Path] = typer.Option(None, "-c", "--config", parser=input_file, help="Training config (kind: folder): check "
                                          "with its model's grid, crop size and frame and its data options, "
                                          "so the cache is the one training reads."),
    resolution: Optional[int] = typer.Option(None, help="Occupancy resolution of the model to train "
                                             "(default: the config's, else 64)."),
    image_size: Optional[int] = typer.Option(None, help="Crop size of the model to train (default: the config's, "
                                             "else 128)."),
    points: Optional[int] = typer.Option(None, help="Surface points per sample to sample and cache (default: the "
                                         "config's data.points, else 0)."),
    cache_dir: Optional[Path] = typer.Option(None, parser=output_folder, help="Cache of voxelised meshes (default: the config's "
                                             "data.cache_dir, else $VOXFACE_CACHE/folder)."),
) -> None:
    """Check a real-data folder: every crop, pose and mesh is read and voxelised (into the cache).

    Give the training config with -c: the grid (resolution, side, centre) decides the voxelisation and
    the cache key, so a check on other settings checks (and caches) other grids than training reads.
    The report gives each split's items per epoch and the samples and persons behind them (capped by
    the config's data.num_train / num_val as training caps them), and warns of a person in both
    train/ and val/.
    """
    from tqdm.auto import tqdm

    from ..data import BLOCK, RESOLUTIONS
    from ..data.folder import FolderDataConfig, FolderDataset
    from ..errors import InputError

    from . import fail, one_line

    if resolution is not None and resolution > RESOLUTIONS[1]:  # 2000^3 cells: a MemoryError traceback
        raise fail(f"--resolution must be at most {RESOLUTIONS[1]} (cells per side), not {resolution}")
    frame, kw, caps = None, {}, {"train": None, "val": None}
    if config is not None:
        from ..config import from_dict
        from ..train import resolve_config

        cfg = resolve_config(config)
        kind = cfg["data"].get("kind", "synthetic")  # training's default (a config without data.kind)
        if kind != "folder":
            raise fail(f"{config}: data.kind is {kind!r}, not 'folder'; check-folder checks "
                       "the real-data folder of a folder config")
        dcfg = from_dict(FolderDataConfig, cfg["data"], "data")
        m = cfg["model"]
        frame = m.frame
        resolution = m.decoder.resolution if resolution is None else resolution
        image_size = m.encoder.image_size if image_size is None else image_size
        points = dcfg.points if points is None else points
        cache_dir = cache_dir or (Path(dcfg.cache_dir) if dcfg.cache_dir else None)
        folder = folder or (Path(dcfg.root or dcfg.path) if (dcfg.root or dcfg.path) else None)
        kw = dict(val_fraction=dcfg.val_fraction, split_seed=dcfg.split_seed, fill_holes=dcfg.fill_holes)
        caps = {"train": dcfg.num_train, "val": dcfg.num_val}  # training caps the splits: so does the report
    if folder is None:
        raise fail("name the folder to check (or give a config with data.root: -c CONFIG)")
    resolution = 64 if resolution is None else resolution
    image_size = 128 if image_size is None else image_size
    points = 0 if points is None else points
    if points < 0:
        raise fail(f"--points must be 0 (none) or more, not {points}")
    for option, value, what in (("--resolution", resolution, "cells per side"), ("--image-size", image_size, "pixels")):
        if value < 1:  # 0 divided by zero deep in the voxeliser or the crop resize (a traceback)
            raise fail(f"{option} must be at least 1 ({what}), not {value}")

    kw.update(points=points, cache_dir=cache_dir)
    splits, repeats, split_persons = [], False, {}
    # every bad sample, not the first: one check, not one per bad file, on thousands (the scan's: no ground
    # truth, a bad JSON; then prepare's: unreadable crops and meshes); the splits scan the same samples again
    problems: list = []
    try:  # the splits (and the config's caps and val_fraction) before the long work
        ds = FolderDataset(folder, resolution, image_size, frame, split="all", problems=problems, **kw)
        sds = {split: FolderDataset(folder, resolution, image_size, frame, split=split, limit=caps[split],
                                    problems=[], **kw)
               for split in ("train", "val")}
    except InputError as e:  # the config's values ('num_val 2: items come in blocks of 4 ...'): name its file
        if config is None:
            raise
        raise fail(f"{config}: data.{e}") from None
    for split, sd in sds.items():
        used = sorted(set(sd.order))  # items repeat samples (pairs of a person, blocks of 4): count both
        split_persons[split] = {sd.samples[i].person for i in used}
        persons = len(split_persons[split])
        text = (f"{split} {len(sd)} items of {len(used)} sample{'s' * (len(used) != 1)} "
                f"({persons} person{'s' * (persons != 1)})")
        if len(used) < len(sd.samples):
            text += f", data.num_{split} {caps[split]} leaves out {len(sd.samples) - len(used)}"
        splits.append(text)
        repeats |= len(sd) > len(used)
    cache_problem = None
    if any(s.mesh is not None for s in ds.samples):  # the check fills the cache: say so now when it cannot
        from ..mesh import output_problem

        cache_problem = output_problem(ds.cache_dir, folder=True)
        if cache_problem is not None:
            typer.echo(one_line(f"warning: {ds.cache_dir}: {cache_problem}; the meshes not cached there before are "
                                "voxelised but not cached (training voxelises them again)"), err=True)
    bar = sys.stderr.isatty()  # a job's log: no bar lines, as preview, export and cache
    checked = len(problems) + ds.prepare(progress=bar, problems=problems)
    if len(problems) == 1:
        raise fail(str(problems[0]))
    if problems:
        for e in problems:
            typer.echo(f"error: {one_line(str(e))}", err=True)
        raise fail(f"{folder}: {len(problems)} of {checked} samples cannot be used (each listed above); "
                   "fix or remove them and check again")
    # every item as training builds it (pose silhouettes, coefficients): as long again as a warm prepare
    for i in tqdm(range(len(ds)), desc=f"check items {ds.root.name}", unit="item", disable=not bar or len(ds) < 8):
        ds[i]
    n_mesh = sum(s.mesh is not None for s in ds.samples)
    # every line naming a file or folder through one_line: a data folder's file named with a newline or an
    # escape sequence split its 'unused file:' line in two, or drove the terminal
    persons = f"{len(ds.persons)} person{'s' * (len(ds.persons) != 1)}"
    typer.echo(one_line(f"{folder}: {len(ds.samples)} samples of {persons} ({n_mesh} meshes, "
                        f"{len(ds.samples) - n_mesh} grids only), pose: {'yes' if ds.has_pose else 'no'}, "
                        f"coefficients: {'yes' if ds.coeff_dims else 'no'}; {'; '.join(splits)}"
                        + (f" (an epoch's items repeat samples to pair each person's and fill blocks of {BLOCK})"
                           if repeats else "")
                        + f"; grid {ds.grid.resolution}^3 of {ds.grid.side_mm:g} mm; cache {ds.cache_dir}"
                        + (" (not written)" if cache_problem else "")))
    for p in ds.unused:
        typer.echo(one_line(f"unused file: {p}"))
    both = sorted(split_persons["train"] & split_persons["val"])  # only train/ and val/ folders can share one
    if both:
        more = f" and {len(both) - 5} more" if len(both) > 5 else ""
        typer.echo(one_line(f"warning: {folder}: {len(both)} person{'s' * (len(both) != 1)} in both train/ and val/ "
                            f"({', '.join(map(repr, both[:5]))}{more}): validation is not on unseen persons; give "
                            "each person's samples to one split (the person id: the JSON's person, else the crop's "
                            "stem)"), err=True)
    # of the training split: a person with one crop in train/ and one in val/ has no pair in either
    pairs = sds["train"].pairing_warning
    if pairs is not None:
        typer.echo(one_line(f"warning: {folder}: {pairs}"), err=True)
