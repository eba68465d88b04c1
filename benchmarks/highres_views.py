"""The picture of the refinement head at work: one face decoded at 64^3, 128^3 and 256^3.

    python benchmarks/highres_views.py [--checkpoint CKPT] [-o docs/highres.png] [--size 300]
        [--upsample head]

``docs/highres.png`` is the default command's; ``docs/highres_decoder.png`` is ``--upsample decoder
-o docs/highres_decoder.png --size 200``.

Two rows, each the same codes extracted on the three grids (coarse-to-fine above 64^3, with the
checkpoint's refinement head, or ``--upsample decoder``: the decoder's own function), under one framing, frontal and from the side: the mean head (the
zero codes: the ICT-FaceKit mean identity and neutral expression, codes like those the head was
trained on) and the codes read from the bundled photo (``skimage.data.astronaut()``). Triangle
counts are in the captions. A checkpoint without what ``--upsample`` names (no refinement head, or a
decoder without a continuous function) is refused before the work: its grids would be another's. Uses the public API only (and the PNG writer's name checks, run before the work).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from _cli import at_least  # beside this script

import voxface
from voxface import latent, viz
from voxface.errors import VoxfaceError
from voxface.mesh import check_file_name, output_problem
from voxface.refine import upsample_method

RESOLUTIONS = (64, 128, 256)
VIEWS = ((0.0, 0.0), (70.0, 5.0))  # (yaw, pitch) in degrees


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled weights)")
    ap.add_argument("-o", "--out", default="docs/highres.png")
    ap.add_argument("--size", type=at_least(1, "pixels"), default=300, help="side of each render in pixels")
    ap.add_argument("--upsample", default="head", choices=("head", "decoder"),
                    help="what fills the finer grids (voxface.reconstruct.decode_at)")
    args = ap.parse_args()
    # the picture's name and folder, checked before the minutes of decoding and rendering, not after them
    check_file_name(args.out)
    viz._check_suffix(args.out, ".png", "PNG")  # what save_png refuses: a.jpg would get PNG bytes
    problem = output_problem(Path(args.out))
    if problem:
        raise VoxfaceError(f"cannot write file ({problem})", args.out)

    import skimage.data

    model = voxface.load_model(args.checkpoint, device="cpu")
    used = upsample_method(model, args.upsample)  # without what was asked for, the grids were silently another's
    if used != args.upsample:
        lacks = "no refinement head" if args.upsample == "head" else "a decoder without a continuous function"
        other = "the decoder's own function" if used == "decoder" else "trilinear upsampling"
        alt = "decoder" if args.upsample == "head" else "head"
        hint = (f"draw --upsample {alt}" if upsample_method(model, alt) == alt
                else "it has neither a refinement head nor a continuous decoder to draw")
        raise VoxfaceError(f"has {lacks}: the finer grids of --upsample {args.upsample} would be {other}; {hint}",
                           args.checkpoint or "bundled")
    photo = model.reconstruct(skimage.data.astronaut()).latents
    mean = dataclasses.replace(photo, z_id=torch.zeros_like(photo.z_id), z_exp=torch.zeros_like(photo.z_exp))
    images, labels = [], []
    for name, codes in (("mean head (zero codes)", mean), ("codes read from the photo", photo)):
        recs = [latent.decode(model, codes, resolution=r, upsample=args.upsample)[0] for r in RESOLUTIONS]
        framing = viz.shared_framing([rec.mesh for rec in recs])
        renders = viz.render_sequence(recs, VIEWS, size=args.size, framing=framing)
        for r, rec, views in zip(RESOLUTIONS, recs, renders):
            for k, im in enumerate(views):
                images.append(im)
                labels.append(f"{name}, {r}^3, {len(rec.mesh.faces):,} triangles" if k == 0 else "")
    grid = viz.image_grid(images, ncols=len(RESOLUTIONS) * len(VIEWS), labels=labels)
    print(viz.save_png(grid, args.out))


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
