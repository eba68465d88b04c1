"""How literally the decoder reads identity codes shorter than the ones it was trained on.

    python benchmarks/code_length.py [CKPT] [--num 24] [--seed-offset 0]

The decoder learned on true ICT coefficients: 100 identity modes of unit variance, codes of
length about 10. Codes made by hand are often shorter: a linear morph between two persons (about
7 at the midpoint), an identity scaled towards the mean, a shrunk estimate. For ``--num`` pairs
of persons of the evaluation seed (neutral expression) this prints IoU at the model's grid between
the decoded code and the exact ICT head *at that code*, along linear (``lerp``) and spherical
morphs (``slerp``: :func:`voxface.latent.interpolate`'s default, about the checkpoint prior's mean
identity, which keeps the distance from it), and for each person's code
scaled by 0.25 / 0.5 / 0.75, also against the head at the full code (where the decoder puts it).
Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _cli import at_least  # beside this script

import voxface
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.evaluate import EVAL_SEED
from voxface.latent import interpolate
from voxface.metrics import iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped weights")
    ap.add_argument("--num", type=at_least(1, "pairs"), default=24, help="pairs of persons")
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--ict-root", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    model = voxface.load_model(args.checkpoint, device="cpu")
    sampler = FaceSampler(load_ict(args.ict_root), SamplerConfig(image_size=model.image_size),
                          EVAL_SEED + args.seed_offset)
    n = args.num
    a = np.stack([sampler.id_coeffs(4 * i) for i in range(n)]).astype(np.float32)  # one sample per person
    b = np.stack([sampler.id_coeffs(4 * i + 2) for i in range(n)]).astype(np.float32)
    if model.config.encoder.z_id != a.shape[1]:  # the codes decoded are ICT coefficients
        raise SystemExit(f"error: {args.checkpoint}: the model's identity codes are not ICT coordinates "
                         f"(z_id {model.config.encoder.z_id}; ICT-FaceKit's: {a.shape[1]})")

    def exact(codes: np.ndarray) -> np.ndarray:
        return np.stack([sampler.occupancy(sampler.head.person(c).closed_head(None), model.grid) > 0.5
                         for c in codes])

    def decoded(codes: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            z_exp = torch.zeros(len(codes), model.config.encoder.z_exp)
            return model.decode(torch.from_numpy(codes), z_exp)[:, 0].numpy() > 0

    def score(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(iou(x, y, batched=True)))

    def slerp(t: float) -> np.ndarray:  # the library's morph, t in steps of 0.25
        z_exp = torch.zeros(1, model.config.encoder.z_exp)
        k = round(t * 4)
        return np.stack([interpolate(model, {"z_id": torch.from_numpy(a[i : i + 1]), "z_exp": z_exp},
                                     {"z_id": torch.from_numpy(b[i : i + 1]), "z_exp": z_exp}, 5).z_id[k].numpy()
                         for i in range(n)])

    rows = []
    for t in (0.0, 0.25, 0.5):
        for mode in ("lerp", "slerp") if t else ("lerp",):
            codes = (1 - t) * a + t * b if mode == "lerp" else slerp(t)
            name = "a person's code" if t == 0 else f"{mode} towards another person, t = {t:g}"
            rows.append((name, float(np.linalg.norm(codes, axis=1).mean()), score(decoded(codes), exact(codes)), None))
    full = exact(a)
    for k in (0.25, 0.5, 0.75):
        codes = k * a
        dec = decoded(codes)
        rows.append((f"a person's code x {k:g}", float(np.linalg.norm(codes, axis=1).mean()),
                     score(dec, exact(codes)), score(dec, full)))
    print(f"{n} pairs of persons (seed {EVAL_SEED + args.seed_offset}), neutral expression, "
          f"{model.grid.resolution}^3; {time.perf_counter() - t0:.0f} s.\n")
    print("| code | length | IoU, decoded against the exact head at the code | against the head at the full code |")
    print("|---|---|---|---|")
    for name, length, at_code, at_full in rows:
        print(f"| {name} | {length:.1f} | {at_code:.4f} | {'-' if at_full is None else f'{at_full:.4f}'} |")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
