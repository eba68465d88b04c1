"""Where a trained model's error comes from: the decoder on the *true* coefficients against the
decoder on the encoder's codes, on the validation split of a synthetic cache.

    python benchmarks/decoder_oracle.py runs/voxface-64/best.pth.tar --cache .data/cache-64 [--num 256]

For models whose codes are ICT coordinates (``z_id``: 100 identity coefficients, ``z_exp``: 53
blendshape weights; ``train.loss.latent``/``teacher``). Prints IoU at the model's grid for the
decoder fed (a) the true coefficients, (b) the encoder's codes, (c) the encoder's identity with the
true expression, and the mean squared error of each code against its truth.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from voxface.checkpoint import load_model
from voxface.data.cache import CachedDataset
from voxface.losses import batch_iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--cache", default=".data/cache-64", help="cache folder (its val/ split is used)")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    model = load_model(args.checkpoint, device="cpu").eval()
    ds = CachedDataset(f"{args.cache}/val", limit=args.num)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("true", "codes", "codes_id_true_exp", "mse_id", "mse_exp")}
    with torch.inference_mode():
        for i in range(0, len(ds), args.batch):
            items = [ds[j] for j in range(i, min(len(ds), i + args.batch))]
            get = lambda k: torch.from_numpy(np.stack([np.asarray(it[k]) for it in items])).float()  # noqa: E731
            img, a, e, occ = get("image"), get("id_coeffs"), get("exp_coeffs"), get("occ")[:, None]
            lat = model.encode(img)
            if lat.z_id.shape != a.shape or lat.z_exp.shape != e.shape:
                raise SystemExit("the model's codes are not ICT coordinates (z_id/z_exp sizes differ)")
            rows["true"].append(batch_iou(model.decode(a, e), occ))
            rows["codes"].append(batch_iou(model.decode(lat.z_id, lat.z_exp), occ))
            rows["codes_id_true_exp"].append(batch_iou(model.decode(lat.z_id, e), occ))
            rows["mse_id"].append(((lat.z_id - a) ** 2).mean(1))
            rows["mse_exp"].append(((lat.z_exp - e) ** 2).mean(1))
    m = {k: float(torch.cat(v).mean()) for k, v in rows.items()}
    print(f"{len(ds)} val faces: IoU decoder(true coefficients) {m['true']:.4f}; decoder(encoder codes) "
          f"{m['codes']:.4f}; decoder(encoder identity, true expression) {m['codes_id_true_exp']:.4f}; "
          f"MSE z_id {m['mse_id']:.3f} (coefficient variance 1); MSE z_exp {m['mse_exp']:.4f}")


if __name__ == "__main__":
    main()
