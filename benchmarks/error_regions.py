"""Where on the head the occupancy error lies: in front of the head's centre (the face a photo shows)
or behind it (back of the skull, neck: what a photo barely shows), for the encoder's codes against
the mean head and the decoder fed the true coefficients.

    python benchmarks/error_regions.py [--checkpoint CKPT] [--num 96] [--seed-offset 777]

Renders ``--num`` unseen synthetic faces (seeds ``2000003 + seed_offset``, as ``voxface evaluate``;
the default offset keeps them apart from the evaluation set) and counts, at the model's grid, the
cells whose occupancy is wrong (predicted XOR exact), split at canonical ``z = 0`` (the neutral
head's centroid; ``z`` points out of the face). Rows: the mean head (the evaluation's baseline),
the decoder on the encoder's codes, the same codes with the mean identity (``z_id = 0``: what the
read expression alone gives), and the decoder on the true ICT coefficients (models whose codes are
ICT coordinates only). Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _cli import at_least  # beside this script

from voxface.checkpoint import load_model
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.evaluate import EVAL_SEED


def _decode(model, z_id: torch.Tensor, z_exp: torch.Tensor, batch: int = 16) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model.decode(z_id[i : i + batch], z_exp[i : i + batch])[:, 0].float()
                          for i in range(0, len(z_id), batch)]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled weights)")
    ap.add_argument("--num", type=at_least(1, "faces"), default=96)
    ap.add_argument("--seed-offset", type=int, default=777)
    ap.add_argument("--ict-root", default=None)
    args = ap.parse_args()
    model = load_model(args.checkpoint, device="cpu").eval()
    cfg, grid = model.config, model.grid
    sampler = FaceSampler(load_ict(args.ict_root), SamplerConfig(image_size=cfg.encoder.image_size),
                          EVAL_SEED + args.seed_offset)
    samples = [sampler.sample(i, grid.resolution, cfg.frame, swap=False) for i in range(args.num)]
    stack = lambda k: torch.from_numpy(np.stack([s[k] for s in samples]))  # noqa: E731
    with torch.inference_mode():
        lat = model.encode(stack("image"))
    preds: dict[str, np.ndarray] = {
        "mean head": np.broadcast_to(sampler.occupancy(sampler.head.closed_head(None, None), grid).astype(bool),
                                     (args.num,) + (grid.resolution,) * 3),
        "encoder's codes": _decode(model, lat.z_id, lat.z_exp) > 0,
        "encoder's expression, mean identity (z_id = 0)": _decode(model, torch.zeros_like(lat.z_id), lat.z_exp) > 0,
    }
    a, e = stack("id_coeffs").float(), stack("exp_coeffs").float()
    if a.shape == lat.z_id.shape and e.shape == lat.z_exp.shape:
        preds["true coefficients (decoder alone)"] = _decode(model, a, e) > 0
    # cell centres' canonical z; volumes are (D, H, W) = (z, y, x)
    z = grid.center_mm[2] - grid.side_mm / 2 + (np.arange(grid.resolution) + 0.5) * grid.side_mm / grid.resolution
    front = z > 0
    occ = stack("occ").numpy().astype(bool)
    wrong = {name: np.logical_xor(p, occ) for name, p in preds.items()}
    counts = {name: (w[:, front].sum() / args.num, w[:, ~front].sum() / args.num) for name, w in wrong.items()}
    base_f, base_b = counts["mean head"]
    print(f"{args.num} unseen faces (seed {EVAL_SEED + args.seed_offset}), {grid.resolution}^3 cells of "
          f"{grid.side_mm / grid.resolution:.2f} mm; wrong cells per face, and the share of the mean head's "
          f"wrong cells each removes\n")
    print("| decoded from | front (z > 0) | back (z < 0) | front removed | back removed |")
    print("|---|---|---|---|---|")
    for name, (f, b) in counts.items():
        print(f"| {name} | {f:.0f} | {b:.0f} | {100 * (1 - f / base_f):.1f}% | {100 * (1 - b / base_b):.1f}% |")
    print(f"\nThe mean head's wrong cells: {100 * base_b / (base_f + base_b):.0f}% behind the centre.")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
