"""Test-time mirroring: does reading a crop and its left-right mirror image, and averaging the two
codes, read identity better than the crop alone?

    python benchmarks/mirror_tta.py [--checkpoint CKPT] [--num 96] [--seed 1000003] [--ict-root DIR]

On ``--num`` synthetic faces of ``--seed`` (default: the validation seed, so the evaluation set stays
untouched by the decision), the mirrored crop's codes are mapped back to the original face
(:func:`voxface.augment.mirror_maps`: identity through the least-squares mirror of the ICT modes,
``_L``/``_R``, ``jawLeft``/``jawRight`` and ``mouthLeft``/``mouthRight`` expressions exchanged) and
decoded; prints the IoU at the model's grid against exact
occupancy of: the mean identity with the read expression, the crop's codes, the mirrored crop's
codes, their average, and the average identity with the crop's expression, with each identity
code's mean squared error against the true coefficients. Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``).
"""

from __future__ import annotations

import numpy as np
import torch
from _faces import faces, iou_scorer, parse_args  # beside this script

from voxface.augment import mirror_maps


def main() -> None:
    args = parse_args(__doc__)
    model, ict, samples, img = faces(args)
    maps = mirror_maps(ict)
    codes = (model.config.encoder.z_id, model.config.encoder.z_exp)
    ict_codes = (len(maps.identity), len(maps.expression))
    if codes != ict_codes:  # the maps are the ICT modes' mirror: was a RuntimeError (mat1 and mat2 shapes)
        raise SystemExit(f"error: {args.checkpoint}: the model's codes are not ICT coordinates (z_id {codes[0]}, "
                         f"z_exp {codes[1]}; ICT-FaceKit's: {ict_codes[0]}, {ict_codes[1]}); mirroring maps ICT codes")
    true_id = torch.from_numpy(np.stack([s["id_coeffs"] for s in samples])).float()
    with torch.inference_mode():
        a, b = model.encode(img), model.encode(img.flip(-1))
    b_id = b.z_id.float() @ torch.as_tensor(maps.identity).T  # the mirrored face's codes, mapped back
    b_exp = b.z_exp[:, torch.as_tensor(maps.expression)]
    score = iou_scorer(model, samples)

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
    from _cli import run_main  # beside this script

    run_main(main)
