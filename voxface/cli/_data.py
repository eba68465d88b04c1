"""``voxface data ...``: preview, export and cache the synthetic ICT-FaceKit data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app

data_app = typer.Typer(help="Synthetic training data from ICT-FaceKit (needs VOXFACE_ICT_ROOT or --ict-root).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

_ICT = typer.Option(None, "--ict-root", help="ICT-FaceKit clone or FaceXModel folder (default: $VOXFACE_ICT_ROOT).")


@data_app.command("preview")
def preview(
    num: int = typer.Option(16, "-n", "--num", min=1, max=256, help="Number of samples."),
    out: Path = typer.Option(Path("preview.png"), "-o", "--out", help="Grid of crops with landmarks (PNG)."),
    seed: int = typer.Option(0, help="Dataset seed."),
    start: int = typer.Option(0, help="First sample index."),
    ict_root: Optional[str] = _ICT,
) -> None:
    """A grid of crops with their 68 landmarks, and a second grid of the matching meshes."""
    import numpy as np
    from tqdm.auto import tqdm

    from ..data.ict import load_ict
    from ..data.synthetic import FaceSampler
    from ..viz import draw_points, image_grid, render_mesh, save_png

    from . import fail

    if not out.suffix:
        out = out.with_name(out.name + ".png")  # `-o grid` writes grid.png and grid_meshes.png
    elif out.suffix.lower() != ".png":
        raise fail(f"{out}: the preview is a PNG picture; name it <name>.png")
    sampler = FaceSampler(load_ict(ict_root), seed=seed)
    crops, meshes = [], []
    for i in tqdm(range(start, start + num), desc="preview", unit="sample"):
        s = sampler.sample(i, None)
        img = (s["image"].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
        crops.append(draw_points(img, s["landmarks_2d"], scale=2))
        e = s["euler"]
        mesh = sampler.head.mesh(s["id_coeffs"], s["exp_coeffs"])
        meshes.append(render_mesh(mesh, yaw=float(e[0]), pitch=float(e[1]), size=256))
    ncols = int(np.ceil(np.sqrt(num)))
    p1 = save_png(image_grid(crops, ncols=ncols), out)
    p2 = save_png(image_grid(meshes, ncols=ncols), out.with_name(out.stem + "_meshes" + out.suffix))
    typer.echo(f"wrote {p1} and {p2}")


@data_app.command("export")
def export(
    num: int = typer.Option(..., "-n", "--num", min=1, help="Number of samples."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Dataset seed."),
    resolution: int = typer.Option(64, help="Occupancy resolution (32 to 256)."),
    points: int = typer.Option(2048, help="Surface points per sample."),
    ict_root: Optional[str] = _ICT,
) -> None:
    """Per sample: crop PNG, closed-head PLY, occupancy NPZ and a JSON of pose/coefficients/landmarks."""
    from ..data.export import export_samples

    n = export_samples(out, num, seed=seed, resolution=resolution, points=points, ict_root=ict_root)
    typer.echo(f"wrote {n} samples to {out}")


@data_app.command("cache")
def cache(
    out: Path = typer.Option(..., "-o", "--out", help="Cache folder (train/ and val/ inside)."),
    num: int = typer.Option(24576, "-n", "--num", min=4, help="Training samples."),
    num_val: int = typer.Option(512, help="Validation samples (another seed)."),
    seed: int = typer.Option(0, help="Training seed (validation uses seed + 1000003)."),
    resolution: int = typer.Option(64, help="Occupancy resolution."),
    image_size: int = typer.Option(128, help="Crop size in pixels."),
    workers: int = typer.Option(2, help="Worker processes."),
    ict_root: Optional[str] = _ICT,
) -> None:
    """Render a training set to disk once (resumable: rerun the same command to continue)."""
    from ..data.cache import write_cache

    write_cache(out / "val", num_val, seed=seed + 1_000_003, resolution=resolution, image_size=image_size,
                workers=workers, ict_root=ict_root)
    write_cache(out / "train", num, seed=seed, resolution=resolution, image_size=image_size,
                workers=workers, ict_root=ict_root)
    typer.echo(f"cache ready in {out}")


@data_app.command("check-folder")
def check_folder(
    folder: Path = typer.Argument(..., help="Folder of crops with .ply/.obj/.npz ground truth (docs/real_data.md)."),
    resolution: int = typer.Option(64, help="Occupancy resolution of the model to train."),
    image_size: int = typer.Option(128, help="Crop size of the model to train."),
    points: int = typer.Option(0, help="Surface points per sample to sample (and cache)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache of voxelised meshes (default: $VOXFACE_CACHE/folder)."),
) -> None:
    """Check a real-data folder: every crop, pose and mesh is read and voxelised (into the cache)."""
    from ..data.folder import FolderDataset

    kw = dict(points=points, cache_dir=cache_dir)
    ds = FolderDataset(folder, resolution, image_size, split="all", **kw)
    ds.prepare(progress=True)
    for i in range(len(ds)):  # crops and masks too
        ds[i]
    n_mesh = sum(s.mesh is not None for s in ds.samples)
    train = FolderDataset(folder, resolution, image_size, split="train", **kw)
    val = FolderDataset(folder, resolution, image_size, split="val", **kw)
    typer.echo(f"{folder}: {len(ds.samples)} samples of {len(ds.persons)} persons ({n_mesh} meshes, "
               f"{len(ds.samples) - n_mesh} grids only), pose: {'yes' if ds.has_pose else 'no'}, "
               f"coefficients: {'yes' if ds.coeff_dims else 'no'}; items: train {len(train)}, val {len(val)}; "
               f"cache {ds.cache_dir}")
    for p in ds.unused:
        typer.echo(f"unused file: {p}")
