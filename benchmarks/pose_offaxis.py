"""How much of the pose error no crop can show: the head's angle off the camera's optical axis.

    python benchmarks/pose_offaxis.py [--checkpoint CKPT] [--num 32] [--seed 2000003] [--ict-root DIR]

The synthetic camera places the head off its optical axis; the pose labels (and ``voxface
evaluate``'s ``pose_deg``) are the rotation in the camera frame, while a crop keeps nothing of where
in the photo it lay. On ``--num`` faces of ``--seed`` (default: the evaluation seed, whose first
faces ``voxface evaluate`` scores) this prints the encoder's rotation error against the camera-frame
rotation and against the rotation seen along the ray to the head (the camera turned to look at it),
the off-axis angle, and their correlation. Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``).
"""

from __future__ import annotations

import numpy as np
import torch
from _faces import parse_args  # beside this script
from scipy.spatial.transform import Rotation

from voxface.checkpoint import load_model
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.evaluate import EVAL_SEED


def look_at(direction: np.ndarray) -> np.ndarray:
    """The rotation turning the camera's +z (OpenCV: forward) onto ``direction (3,)``."""
    d = direction / np.linalg.norm(direction)
    axis = np.cross([0.0, 0.0, 1.0], d)
    s = float(np.linalg.norm(axis))
    if s < 1e-12:
        return np.eye(3)
    return Rotation.from_rotvec(axis / s * np.arctan2(s, d[2])).as_matrix()


def degrees_between(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(a.T @ b).magnitude()))


def main() -> None:
    args = parse_args(__doc__, num=32, seed=EVAL_SEED, seed_is="the evaluation seed", min_num=2)  # a correlation
    model = load_model(args.checkpoint, device="cpu").eval()
    sampler = FaceSampler(load_ict(args.ict_root), SamplerConfig(image_size=model.config.encoder.image_size), args.seed)
    err_cam, err_ray, off = [], [], []
    for i in range(args.num):
        s = sampler.sample(i, None, swap=False)
        cam, _ = sampler.camera(i, sampler.head.person(s["id_coeffs"]).full_vertices(s["exp_coeffs"]))
        with torch.inference_mode():
            pred = model.encode(torch.from_numpy(s["image"])[None].float()).pose.rotation[0].double().numpy()
        t = np.asarray(cam.translation, float)
        err_cam.append(degrees_between(pred, cam.rotation))
        err_ray.append(degrees_between(pred, look_at(t).T @ cam.rotation))
        off.append(float(np.degrees(np.arctan2(np.linalg.norm(t[:2]), t[2]))))
    err_cam, err_ray, off = map(np.asarray, (err_cam, err_ray, off))
    print(f"{args.num} faces of seed {args.seed}")
    print(f"error against the camera-frame rotation: median {np.median(err_cam):.2f}, mean {err_cam.mean():.2f} deg")
    print(f"error against the rotation along the ray: median {np.median(err_ray):.2f}, mean {err_ray.mean():.2f} deg")
    print(f"off-axis angle: median {np.median(off):.2f}, mean {off.mean():.2f} deg; "
          f"correlation with the camera-frame error {np.corrcoef(err_cam, off)[0, 1]:.2f}")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
