"""Where a trained model's error comes from: the decoder on the *true* coefficients against the
decoder on the encoder's codes, on the validation split of a synthetic cache.

    python benchmarks/decoder_oracle.py CKPT [--cache .data/cache-64] [--num 256] [--batch 32]
        [--scales 0,0.5]

The model card's numbers: ``python benchmarks/decoder_oracle.py runs/voxface-64-encoder/last.pth.tar
--num 128 --scales 0,0.25,0.5,0.75,1`` (stage 2) and ``... CKPT --num 128``, on the cache that
``make weights`` writes first (``voxface data cache -o .data/cache-64 -n 81920 --num-val 512``;
only its ``val/`` split is read).

For models whose codes are ICT coordinates (``z_id``: 100 identity coefficients, ``z_exp``: 53
blendshape weights; ``train.loss.latent``/``teacher``). Prints IoU at the model's grid for the
decoder fed (a) the true coefficients, (b) the encoder's codes, (c) the encoder's identity with the
true expression, (d) the encoder's identity scaled by each of ``--scales`` (0: the mean identity;
how sure the codes may be), and the mean squared error of each code against its truth (for
``z_id`` also weighted per mode as the ``latent`` loss weighs it, where ICT-FaceKit is found).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _cli import at_least, number_list  # beside this script

from voxface.checkpoint import load_model
from voxface.data import BLOCK
from voxface.data.cache import CachedDataset
from voxface.losses import batch_iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--cache", default=".data/cache-64", help="cache folder (its val/ split is used)")
    ap.add_argument("--num", type=at_least(BLOCK, f"the cache's items come in blocks of {BLOCK}"), default=256,
                    help=f"validation faces (rounded down to a multiple of {BLOCK})")
    ap.add_argument("--batch", type=at_least(1), default=32)
    ap.add_argument("--scales", type=number_list(float), default=[0.0, 0.5],
                    help="comma-separated factors for the encoder's z_id (default: 0,0.5)")
    args = ap.parse_args()
    scales = list(dict.fromkeys(args.scales))  # a factor named twice is one column
    model = load_model(args.checkpoint, device="cpu").eval()
    ds = CachedDataset(f"{args.cache}/val", limit=args.num)
    if not len(ds):
        raise SystemExit(f"error: {args.cache}/val holds no faces")
    first = ds[0]  # checked before the run: a traceback (or a bare line) after the first batch was read
    n_id, n_exp = (np.asarray(first[k]).shape[-1] for k in ("id_coeffs", "exp_coeffs"))
    codes = (model.config.encoder.z_id, model.config.encoder.z_exp)
    if codes != (n_id, n_exp):
        raise SystemExit(f"error: {args.checkpoint}: the model's codes are not ICT coordinates (z_id {codes[0]}, "
                         f"z_exp {codes[1]}; the cache's coefficients: {n_id}, {n_exp})")
    if np.asarray(first["occ"]).shape[-1] != model.grid.resolution:
        raise SystemExit(f"error: {args.checkpoint}: the model's grid is {model.grid.resolution}^3, the cache's "
                         f"{np.asarray(first['occ']).shape[-1]}^3: give a cache of its resolution (--cache)")
    w = _mode_weights()
    rows: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("true", "codes", "codes_id_true_exp", "mse_id", "wmse_id", "mse_exp", *map(str, scales))}
    with torch.inference_mode():
        for i in range(0, len(ds), args.batch):
            items = [ds[j] for j in range(i, min(len(ds), i + args.batch))]
            get = lambda k: torch.from_numpy(np.stack([np.asarray(it[k]) for it in items])).float()  # noqa: E731
            img, a, e, occ = get("image"), get("id_coeffs"), get("exp_coeffs"), get("occ")[:, None]
            lat = model.encode(img)
            rows["true"].append(batch_iou(model.decode(a, e), occ))
            rows["codes"].append(batch_iou(model.decode(lat.z_id, lat.z_exp), occ))
            rows["codes_id_true_exp"].append(batch_iou(model.decode(lat.z_id, e), occ))
            for f in scales:
                rows[str(f)].append(batch_iou(model.decode(f * lat.z_id, lat.z_exp), occ))
            rows["mse_id"].append(((lat.z_id - a) ** 2).mean(1))
            if w is not None:
                rows["wmse_id"].append(((lat.z_id - a) ** 2 * w).mean(1))
            rows["mse_exp"].append(((lat.z_exp - e) ** 2).mean(1))
    m = {k: float(torch.cat(v).mean()) for k, v in rows.items() if v}
    scaled = ", ".join(f"x{k} {m[str(k)]:.4f}" for k in scales)
    weighted = f", mode-weighted {m['wmse_id']:.3f}" if "wmse_id" in m else ""
    print(f"{len(ds)} val faces: IoU decoder(true coefficients) {m['true']:.4f}; decoder(encoder codes) "
          f"{m['codes']:.4f}; decoder(encoder identity, true expression) {m['codes_id_true_exp']:.4f}; "
          f"decoder(encoder identity scaled: {scaled}); MSE z_id {m['mse_id']:.3f}{weighted} "
          f"(coefficient variance 1); MSE z_exp {m['mse_exp']:.4f}")


def _mode_weights() -> torch.Tensor | None:
    """The ``latent`` loss's per-mode identity weights, or ``None`` without ICT-FaceKit."""
    from voxface.data.head import HeadModel, identity_mode_weights
    from voxface.data.ict import load_ict
    from voxface.errors import VoxfaceError

    try:
        return torch.from_numpy(identity_mode_weights(HeadModel(load_ict())))
    except VoxfaceError:
        return None


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
