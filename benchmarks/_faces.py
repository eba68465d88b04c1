"""What the test-time studies (mirror_tta.py, jitter_tta.py) share: their options, the synthetic
faces they read (the validation seed by default, so the evaluation set stays untouched by the
decision) and the IoU of decoded codes against those faces' exact occupancy at the model's grid."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _cli import at_least  # beside this script

from voxface.checkpoint import load_model
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.metrics import iou


def parse_args(doc: str, num: int = 96, seed: int = 1_000_003, seed_is: str = "the validation seed",
               min_num: int = 1) -> argparse.Namespace:
    """``--checkpoint``, ``--num`` (at least ``min_num``), ``--seed`` (defaults ``num``, ``seed``) and
    ``--ict-root`` (which the not-found error names), described by the first line of ``doc``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled weights)")
    ap.add_argument("--num", type=at_least(min_num, "faces"), default=num)
    ap.add_argument("--seed", type=int, default=seed, help=f"dataset seed (default: {seed_is})")
    ap.add_argument("--ict-root", default=None, help="ICT-FaceKit (default: $VOXFACE_ICT_ROOT)")
    return ap.parse_args()


def faces(args: argparse.Namespace) -> tuple[Any, Any, list[dict[str, Any]], torch.Tensor]:
    """``(model on the CPU, the ICT model, args.num samples of args.seed, their crops (N, 3, S, S))``."""
    model = load_model(args.checkpoint, device="cpu").eval()
    ict = load_ict(args.ict_root)
    sampler = FaceSampler(ict, SamplerConfig(image_size=model.config.encoder.image_size), args.seed)
    samples = [sampler.sample(i, model.grid.resolution, model.config.frame, swap=False) for i in range(args.num)]
    return model, ict, samples, torch.from_numpy(np.stack([s["image"] for s in samples])).float()


def iou_scorer(model: Any, samples: list[dict[str, Any]]) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """``score(z_id, z_exp)``: mean IoU of the codes decoded, 16 at a time, against the samples' exact
    occupancy on the model's grid."""
    occ = np.stack([s["occ"] for s in samples])

    def score(z_id: torch.Tensor, z_exp: torch.Tensor) -> float:
        out = []
        with torch.inference_mode():
            for i in range(0, len(occ), 16):
                logits = model.decode(z_id[i:i + 16], z_exp[i:i + 16]).float().numpy()[:, 0]
                out += [iou(lg > 0, occ[i + k]) for k, lg in enumerate(logits)]
        return float(np.mean(out))

    return score
