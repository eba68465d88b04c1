"""How much identity the encoder's frozen features hold, pooled or laid out in space.

    python benchmarks/readout_probe.py [CKPT] [--num-train 16384] [--num 200] [--seed-offset 0]

The shipped encoder averages its last 4x4 feature map into one vector before its linear heads
(``encoder.readout: pool``). Reading a face's geometry to a pixel might need *where* the features
are, which the average throws away (``readout: flatten`` keeps the cells side by side). This
probe asks the frozen features directly: ridge regressions from each of

* the crop's pixels (32x32 RGB, a floor),
* the pooled last feature map (what the encoder's heads read),
* the last 4x4 map flattened,
* the 8x8 map before it, averaged to 4x4 and flattened,

to the ICT identity coefficients, fitted on ``--num-train`` renders of persons no training stage
saw (seed 0 from index 100,000; the shipped data stop at 81,920), the ridge strength chosen per
coefficient on the last eighth of those persons. On the ``--num`` evaluation faces of ``voxface
evaluate`` (seed 2000003 + offset) it reports, for each identity estimate, the mode-weighted
squared error (:func:`voxface.data.head.identity_mode_weights`: about the mean squared vertex
error, 1 for the mean identity), the share of the variance explained, and IoU at 64^3 against the
exact heads twice: of the ICT head at the estimate (*exact*: what the estimate is worth to a
perfect decoder) and of the model's decoder fed the estimate. Both take each face's true
expression, so that they score identity alone (the encoder's stage-3 codes are tuned together, so
its ``z_id`` is also decoded with its own ``z_exp``). The last rows feed the true coefficients
scaled by :data:`SCALES`: how literally the decoder reads a code shorter than the codes it was
trained on.

Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _cli import at_least  # beside this script

import voxface
from voxface.data.head import identity_mode_weights
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.errors import VoxfaceError
from voxface.evaluate import EVAL_SEED
from voxface.metrics import iou

#: The probe's training persons: seed 0 from this index on (the shipped cache holds 0..81,919).
TRAIN_SEED, TRAIN_START = 0, 100_000

#: Factors of the true identity coefficients in the last rows: how literally the decoder reads a
#: code shorter than the training codes (whose length is about 10: 100 modes of unit variance).
SCALES = (0.25, 0.5, 0.75, 1.0)

#: Ridge strengths tried (on standardised features), per identity coefficient.
ALPHAS = (1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6)

_worker: dict[str, FaceSampler] = {}


def _init(ict_root: str | None, image_size: int) -> None:
    torch.set_num_threads(1)
    _worker["s"] = FaceSampler(load_ict(ict_root), SamplerConfig(image_size=image_size), TRAIN_SEED)


def _render(index: int) -> tuple[np.ndarray, np.ndarray]:
    s = _worker["s"].sample(index, None, swap=False)
    return s["image"], s["id_coeffs"]


def render_training_set(n: int, image_size: int, ict_root: str | None,
                        workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(images (n, 3, S, S) float32, id_coeffs (n, N_id))`` of the probe's training persons."""
    with ProcessPoolExecutor(workers, initargs=(ict_root, image_size), initializer=_init) as ex:
        out = list(ex.map(_render, range(TRAIN_START, TRAIN_START + n), chunksize=32))
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def encoder_features(model, images: np.ndarray, batch: int = 64) -> tuple[dict[str, np.ndarray], torch.Tensor,
                                                                           torch.Tensor]:
    """The probe's feature sets of ``images (N, 3, S, S)``, and the encoder's ``z_id``, ``z_exp``."""
    enc = model.encoder
    taken: dict[str, list[torch.Tensor]] = {"last": [], "mid": []}
    strided = [i for i, b in enumerate(enc.stages) if b.conv1.stride == (2, 2)]
    hooks = [enc.stages[len(enc.stages) - 1].register_forward_hook(lambda m, i, o: taken["last"].append(o)),
             enc.stages[strided[-1] - 1].register_forward_hook(lambda m, i, o: taken["mid"].append(o))]
    z_id, z_exp = [], []
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                lat = model.encode(torch.from_numpy(images[i : i + batch]).to(model.device))
                z_id.append(lat.z_id.cpu())
                z_exp.append(lat.z_exp.cpu())
    finally:
        for h in hooks:
            h.remove()
    last, mid = torch.cat(taken["last"]).float().cpu(), torch.cat(taken["mid"]).float().cpu()
    pixels = F.adaptive_avg_pool2d(torch.from_numpy(images), 32).flatten(1)
    feats = {
        "pixels, 32x32 RGB": pixels,
        "last map, pooled (the encoder's readout)": last.mean((2, 3)),
        "last map, 4x4 flattened": last.flatten(1),
        "8x8 map, averaged to 4x4, flattened": F.avg_pool2d(mid, mid.shape[-1] // 4).flatten(1),
    }
    return {k: v.numpy().astype(np.float64) for k, v in feats.items()}, torch.cat(z_id), torch.cat(z_exp)


def ridge(x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, held_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Ridge predictions of ``y (N, K)`` at ``x_eval``, the strength (:data:`ALPHAS`) chosen per
    output on the last ``held_out`` rows, then refitted on all rows. Returns the predictions and
    the chosen strengths ``(K,)``."""
    mu, sd = x.mean(0), x.std(0) + 1e-8
    x, x_eval = (x - mu) / sd, (x_eval - mu) / sd
    y_mean = y.mean(0)

    def fit(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(s (r,), v (D, r), c (r, K))``: the eigenvalues and -vectors of ``xs^T xs`` that carry
        data and ``v^T xs^T (ys - mean)``; one factorisation serves every strength. With fewer rows
        than features it is that of the smaller ``xs xs^T`` (N x N; the D x D one took minutes for
        D = 4096 whatever the rows, the eigenvectors it adds carry no data: their ``c`` is 0)."""
        if len(xs) < xs.shape[1]:
            s, u = np.linalg.eigh(xs @ xs.T)
            keep = s > max(float(s.max()), 0.0) * 1e-12
            s, u = s[keep], u[:, keep]
            v = (xs.T @ u) / np.sqrt(s)  # xs^T xs's eigenvectors of the same eigenvalues, unit length
        else:
            s, v = np.linalg.eigh(xs.T @ xs)
        return s, v, v.T @ (xs.T @ (ys - y_mean))  # (r,), (D, r), (r, K)

    cut = len(x) - held_out
    s, v, c = fit(x[:cut], y[:cut])
    proj = x[cut:] @ v
    errors = np.stack([((proj @ (c / (s + a)[:, None]) + y_mean - y[cut:]) ** 2).mean(0) for a in ALPHAS])
    best = np.asarray(ALPHAS)[errors.argmin(0)]  # (K,)
    s, v, c = fit(x, y)
    pred = (x_eval @ v) @ (c / (s[:, None] + best[None, :])) + y_mean
    return pred, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped weights")
    ap.add_argument("--num-train", type=at_least(4, "two persons to fit, two to choose the ridge strength on"), default=16384)
    ap.add_argument("--num", type=at_least(1, "faces"), default=200)
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--ict-root", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = voxface.load_model(args.checkpoint, device="cpu")
    size = model.image_size
    ict = load_ict(args.ict_root)  # before the render processes: without ICT-FaceKit each failed in a traceback
    enc = model.config.encoder
    codes, ict_codes = (enc.z_id, enc.z_exp), (ict.identity.shape[0], len(ict.expression_names))
    if codes != ict_codes:  # the identity estimates are decoded: refused after the renders, as a shape error
        raise VoxfaceError(f"the model's codes are not ICT coefficients (z_id/z_exp of {codes[0]}/{codes[1]} values; "
                           f"ICT-FaceKit's: {ict_codes[0]}/{ict_codes[1]}): the probe decodes ICT identity estimates",
                           args.checkpoint or "bundled")
    images, coeffs = render_training_set(args.num_train, size, args.ict_root)
    sampler = FaceSampler(ict, SamplerConfig(image_size=size), EVAL_SEED + args.seed_offset)
    weights = identity_mode_weights(sampler.head).astype(np.float64)
    samples = [sampler.sample(i, model.grid.resolution, model.config.frame, swap=False) for i in range(args.num)]
    truth = np.stack([s["occ"] for s in samples]) > 0.5
    true_id = np.stack([s["id_coeffs"] for s in samples]).astype(np.float64)
    feats, _, _ = encoder_features(model, images)
    feats_eval, z_id, z_exp = encoder_features(model, np.stack([s["image"] for s in samples]))

    true_exp = np.stack([s["exp_coeffs"] for s in samples]).astype(np.float32)

    def decoded_iou(zid: np.ndarray, zexp: Any = true_exp) -> float:
        hits = []
        with torch.inference_mode():
            for i in range(0, args.num, 25):
                logits = model.decode(torch.as_tensor(zid[i : i + 25], dtype=torch.float32),
                                      torch.as_tensor(zexp[i : i + 25], dtype=torch.float32))
                hits.append(logits[:, 0].numpy() > 0)
        return float(np.mean(iou(np.concatenate(hits), truth, batched=True)))

    def exact_iou(zid: np.ndarray) -> float:
        """The ICT head itself at these identity coefficients (true expression): no decoder."""
        occ = [sampler.occupancy(sampler.head.person(a.astype(np.float32)).closed_head(e), model.grid) > 0.5
               for a, e in zip(zid, true_exp)]
        return float(np.mean(iou(np.stack(occ), truth, batched=True)))

    def weighted_error(pred: np.ndarray) -> float:
        return float((((pred - true_id) ** 2) * weights).mean())

    def row(name: str, dims: str, zid: np.ndarray) -> tuple[str, str, float, float, float]:
        return name, dims, weighted_error(zid), exact_iou(zid), decoded_iou(zid)

    own = z_id.double().numpy()
    rows = [row("mean identity", "-", np.zeros_like(true_id)), row("the encoder's z_id", "-", own)]
    rows.append(rows[-1][:4] + (decoded_iou(own, z_exp),))
    rows[-1] = ("the encoder's z_id, decoded with its z_exp (what `voxface evaluate` scores)",) + rows[-1][1:]
    # whole persons (samples 2k, 2k + 1 share one); at least one (none chose every strength on nan)
    held = max(2, (args.num_train // 8) & ~1)
    for name, x in feats.items():
        pred, _ = ridge(x, coeffs.astype(np.float64), feats_eval[name], held)
        rows.append(row(f"ridge on {name}", str(x.shape[1]), pred))
    rows += [row(f"true coefficients x {k:g}", "-", k * true_id) for k in SCALES]
    base_err, base_exact, base_dec = rows[0][2:]
    print(f"{args.num} evaluation faces (seed {EVAL_SEED + args.seed_offset}), ridge fitted on {args.num_train} "
          f"renders of unseen persons; IoU at {model.grid.resolution}^3 against the exact heads, of the ICT head "
          f"at each estimate (exact) and of the decoded estimate (decoder), each face's true expression unless "
          f"said; gap closed against the mean identity's row; {time.perf_counter() - t0:.0f} s.\n")
    print("| identity from | features | mode-weighted error | variance explained | exact IoU | gap closed "
          "| decoder IoU | gap closed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, dims, err, exact, dec in rows:
        print(f"| {name} | {dims} | {err:.3f} | {1 - err / base_err:.0%} | {exact:.4f} "
              f"| {(exact - base_exact) / (1 - base_exact):.0%} | {dec:.4f} | {(dec - base_dec) / (1 - base_dec):.0%} |")

if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
