"""Test-time mirroring: does reading a crop and its left-right mirror image, and averaging the two
codes, read identity better than the crop alone?

    python benchmarks/mirror_tta.py [--checkpoint CKPT] [--num 96] [--seed 1000003]

On ``--num`` synthetic faces of ``--seed`` (default: the validation seed, so the evaluation set stays
untouched by the decision), the mirrored crop's codes are mapped back to the original face
(:func:`voxface.augment.mirror_maps`: identity through the least-squares mirror of the ICT modes,
``_L``/``_R`` expressions exchanged) and decoded; prints the IoU at the model's grid against exact
occupancy of: the mean identity with the read expression, the crop's codes, the mirrored crop's
codes, their average, and the average identity with the crop's expression, with each identity
code's mean squared error against the true coefficients. Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from voxface.augment import mirror_maps
from voxface.checkpoint import load_model
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.metrics import iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled weights)")
    ap.add_argument("--num", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1_000_003, help="dataset seed (default: the validation seed)")
    args = ap.parse_args()
    model = load_model(args.checkpoint, device="cpu").eval()
    ict = load_ict()
    maps = mirror_maps(ict)
    sampler = FaceSampler(ict, SamplerConfig(image_size=model.config.encoder.image_size), args.seed)
    samples = [sampler.sample(i, model.grid.resolution, model.config.frame, swap=False) for i in range(args.num)]
    img = torch.from_numpy(np.stack([s["image"] for s in samples]))
    occ = np.stack([s["occ"] for s in samples])
    true_id = torch.from_numpy(np.stack([s["id_coeffs"] for s in samples])).float()
    with torch.inference_mode():
        a, b = model.encode(img), model.encode(img.flip(-1))
    b_id = b.z_id.float() @ torch.as_tensor(maps.identity).T  # the mirrored face's codes, mapped back
    b_exp = b.z_exp[:, torch.as_tensor(maps.expression)]

    def score(z_id: torch.Tensor, z_exp: torch.Tensor) -> float:
        out = []
        with torch.inference_mode():
            for i in range(0, args.num, 16):
                logits = model.decode(z_id[i:i + 16], z_exp[i:i + 16]).float().numpy()[:, 0]
                out += [iou(lg > 0, occ[i + k]) for k, lg in enumerate(logits)]
        return float(np.mean(out))

    rows = [("mean identity, read expression", torch.zeros_like(a.z_id), a.z_exp),
            ("the crop's codes", a.z_id, a.z_exp),
            ("the mirrored crop's codes, mapped back", b_id, b_exp),
            ("average of the two", (a.z_id + b_id) / 2, (a.z_exp + b_exp) / 2),
            ("average identity, the crop's expression", (a.z_id + b_id) / 2, a.z_exp)]
    print(f"{args.num} faces of seed {args.seed}\n")
    print("| codes | IoU | z_id MSE |")
    print("|---|---|---|")
    for name, zi, ze in rows:
        print(f"| {name} | {score(zi, ze):.4f} | {float(((zi.float() - true_id) ** 2).mean()):.3f} |")


if __name__ == "__main__":
    main()
