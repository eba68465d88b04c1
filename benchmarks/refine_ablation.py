"""Does the refinement head earn its keep? 128^3 surfaces with a checkpoint's head, against the
decoder's own continuous function at the same points and against the 64^3 grid itself, on the same
unseen faces.

    python benchmarks/refine_ablation.py [CKPT ...] [--num 48] [--resolution 128] [--seed-offset S]
        [--ict-root DIR]

The model card's table: ``python benchmarks/refine_ablation.py --num 200`` (the bundled weights).

Every row is :func:`voxface.evaluate.evaluate` (the metrics of ``voxface evaluate``, means over
the faces) for the codes the encoder reads from each crop and for the faces' true ICT
coefficients. The first checkpoint (default: the bundled weights) also gives the two references:
its 64^3 grid, and ``upsample="decoder"``: coarse-to-fine on the decoder's own function (the
template-deformation decoder samples its template through the warp at the finer points; a decoder
without such a function has its logits upsampled trilinearly). Later checkpoints (other heads on
the same encoder and decoder) add their head's rows. The rows of the true coefficients need codes that
are ICT coefficients (``z_id`` 100, ``z_exp`` 53 values); other models give the encoder's rows alone.
"""

from __future__ import annotations

import argparse

import numpy as np
from _cli import at_least  # beside this script

from voxface.checkpoint import load_model
from voxface.data.ict import load_ict
from voxface.errors import VoxfaceError
from voxface.refine import refine_resolution_ok, refine_resolutions, upsample_method
from voxface.evaluate import evaluate

KEYS = ("iou", "chamfer_l1", "face_chamfer_l1", "fscore@1.0", "fscore@2.5", "normal_consistency",
        "face_normal_consistency")


def _row(model, num: int, resolution: int | None, latents: str, seed_offset: int = 0,
         upsample: str = "head", ict_root: str | None = None) -> list[float] | None:
    """The means of :data:`KEYS` over ``num`` faces; ``None`` for ``latents="true"`` on a model whose
    codes are not ICT coefficients (evaluate refuses those, which lost every row scored before)."""
    if latents == "true":
        ict = load_ict(ict_root)
        enc = model.config.encoder
        if (enc.z_id, enc.z_exp) != (ict.identity.shape[0], len(ict.expression_names)):
            return None
    report, _ = evaluate(model, num=num, resolution=resolution, latents=latents, progress=False,
                         seed_offset=seed_offset, upsample=upsample, ict_root=ict_root)
    return [float(np.mean([s[k] for s in report.samples])) for k in KEYS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", help="checkpoints (default: the bundled weights)")
    ap.add_argument("--num", type=at_least(1, "faces"), default=48, help="unseen evaluation faces")
    ap.add_argument("--resolution", type=int, default=128, help="the finer grid (the model's times 2, 4, ...)")
    ap.add_argument("--seed-offset", type=int, default=0, help="another set of unseen faces (as voxface evaluate's)")
    ap.add_argument("--ict-root", default=None, help="ICT-FaceKit (default: $VOXFACE_ICT_ROOT)")
    args = ap.parse_args()
    ckpts = args.checkpoints or [None]
    models = [load_model(ck, device="cpu") for ck in ckpts]  # each once, every one checked before the work
    for ck, model in zip(ckpts, models):  # a grid none can refine to failed after the first rows (minutes)
        R = model.grid.resolution
        if not refine_resolution_ok(args.resolution, R):
            raise VoxfaceError(f"--resolution {args.resolution}: a {R}^3 model refines to {refine_resolutions(R)}",
                               ck or "bundled")
    # evaluate(upsample="head") on a model without a head evaluates the decoder's own function: a row
    # named "head of X" was the decoder's row again
    for ck, model in list(zip(ckpts, models))[1:]:
        if getattr(model, "refiner", None) is None:
            raise VoxfaceError("has no refinement head to compare (later checkpoints add their head's rows)", ck)
    rows: list[tuple[str, str, list[float] | None]] = []
    for latents in ("encoder", "true"):
        for i, (ck, model) in enumerate(zip(ckpts, models)):
            name = ck or "bundled"
            if i == 0:
                grid = _row(model, args.num, None, latents, args.seed_offset, ict_root=args.ict_root)
                rows.append((latents, f"{model.grid.resolution}^3 grid", grid))
            if getattr(model, "refiner", None) is not None:  # else only the decoder's row below (the first one)
                fine = _row(model, args.num, args.resolution, latents, args.seed_offset, ict_root=args.ict_root)
                rows.append((latents, f"{args.resolution}^3 head of {name}", fine))
            if i == 0:
                fine = _row(model, args.num, args.resolution, latents, args.seed_offset, upsample="decoder",
                           ict_root=args.ict_root)
                own = ("decoder's own function" if upsample_method(model, "decoder") == "decoder"
                       else "trilinear upsampling (no continuous decoder)")  # was named the decoder's function
                rows.append((latents, f"{args.resolution}^3 {own}", fine))
    skipped = any(vals is None for _, _, vals in rows)
    rows = [row for row in rows if row[2] is not None]
    print(f"{args.num} unseen faces (evaluation seed, offset {args.seed_offset}), means"
          + ("; no rows of the true coefficients: the model's codes are not ICT coefficients" if skipped else "")
          + "\n")
    print("| codes | surface | " + " | ".join(KEYS) + " |")
    print("|---|---|" + "---|" * len(KEYS))
    for latents, what, vals in rows:
        print(f"| {latents} | {what} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
