"""Test-time jitter: does averaging the codes of a crop and of slightly shifted and scaled copies
of it (the training crops' own jitter is +-5% of the side in position, +-8% in size) read identity
better than the crop alone?

    python benchmarks/jitter_tta.py [--checkpoint CKPT] [--num 96] [--seed 1000003] [--ict-root DIR]

On ``--num`` synthetic faces of ``--seed`` (default: the validation seed, so the evaluation set stays
untouched by the decision), each crop is resampled (bilinear, edges replicated) on a 3x3 grid of
shifts of ``d`` times the crop side, at scales ``1 +- s`` when ``s > 0``; the codes of all copies are
averaged and decoded. Prints the IoU at the model's grid against exact occupancy, how many encodes
each row costs, and the mean identity-code length (averaging pulls codes towards the prior mean,
which this decoder reads literally: README, "Known limits"). Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from _faces import faces, iou_scorer, parse_args  # beside this script

#: (shift d, scale s) of each row, fractions of the crop side
SETTINGS = ((0.03, 0.0), (0.05, 0.0), (0.03, 0.04), (0.05, 0.06))


def resampled(images: torch.Tensor, dx: float, dy: float, scale: float) -> torch.Tensor:
    """``images (B, 3, S, S)`` seen through a crop moved by ``(dx, dy)`` (fractions of the side) and
    ``scale`` times as large, bilinear, edges replicated."""
    theta = torch.tensor([[scale, 0.0, 2 * dx], [0.0, scale, 2 * dy]])[None].expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def main() -> None:
    args = parse_args(__doc__)
    model, _, samples, img = faces(args)
    score = iou_scorer(model, samples)

    with torch.inference_mode():
        base = model.encode(img)
    rows = [("the crop alone", 1, base.z_id, base.z_exp)]
    for d, s in SETTINGS:
        copies = [(dx, dy, sc) for dx, dy in itertools.product((-d, 0.0, d), repeat=2)
                  for sc in ((1 - s, 1 + s) if s else (1.0,)) if (dx, dy, sc) != (0.0, 0.0, 1.0)]
        with torch.inference_mode():
            lats = [base] + [model.encode(resampled(img, dx, dy, sc)) for dx, dy, sc in copies]
        rows.append((f"average, shifts +-{d:g}" + (f", scales 1 +- {s:g}" if s else ""), len(lats),
                     torch.stack([la.z_id for la in lats]).mean(0), torch.stack([la.z_exp for la in lats]).mean(0)))
    print(f"{args.num} faces of seed {args.seed}\n")
    print("| codes | encodes | IoU | mean z_id length |")
    print("|---|---|---|---|")
    for name, n, zi, ze in rows:
        print(f"| {name} | {n} | {score(zi, ze):.4f} | {float(zi.norm(dim=1).mean()):.2f} |")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
