"""How much of a head a perfect reader of the visible face's geometry could recover.

    python benchmarks/identity_oracle.py [--num 48] [--seed-offset 555] [--step 4]

For ``--num`` unseen synthetic faces (seeds ``2000003 + seed_offset``, as ``voxface evaluate``), the
exact camera, crop and head of each sample (:meth:`voxface.data.synthetic.FaceSampler.camera`) give
the crop-pixel positions of the narrow-face vertices turned towards the camera (every ``--step``-th
vertex; 68 landmarks in the landmark rows). Gaussian noise of ``sigma`` pixels is added, and the
ICT-FaceKit identity and expression coefficients are fitted to those positions: the posterior mean
under the model's own prior (identity ``N(0, 1)`` per mode, expression ``N(0, 0.1)``), for a known
rotation (exact, or off by ``--pose-error`` degrees RMS about each axis, then
also refined in the fit) and the perspective depth of
the mean face, with the head's scale and image position left free. The fitted coefficients' closed
head, placed in the canonical frame, is scored by IoU against the exact one at 64^3, as ``voxface
evaluate`` scores a model against the mean head (its baseline; "gap closed" is the share of
``1 - IoU(mean head)`` removed).

No network is involved: this bounds what any encoder can read from 2D geometry of the face (a
photo also has shading and the silhouette of the skull, which this leaves out), and how accurate
that reading must be for a given IoU. Needs ICT-FaceKit (``VOXFACE_ICT_ROOT``). Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _cli import at_least  # beside this script

from voxface.config import FrameConfig
from voxface.data.ict import SUBMESHES, load_ict
from voxface.data.render import vertex_normals
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.frame import euler_matrix
from voxface.evaluate import EVAL_SEED
from voxface.frame import Grid

#: Prior variance of each expression weight in the fit (the data's are sparse, in [0, 1]).
EXPRESSION_PRIOR_VAR = 0.1


def _rodrigues(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    if th < 1e-12:
        return np.eye(3)
    k = w / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def fit_coefficients(ict, idx: np.ndarray, px: np.ndarray, rotation: np.ndarray, depth: np.ndarray,
                     box: np.ndarray, image_size: int, sigma: float,
                     mean_points: np.ndarray | None = None, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Identity ``(N_id,)`` and expression ``(N_exp,)`` coefficients fitted to crop pixels.

    Args:
        idx: ``(K,)`` vertex indices observed; ``px (K, 2)`` their crop pixels.
        rotation: ``(3, 3)`` canonical to camera; ``depth (K,)`` camera z (mm) of each vertex used
            to linearise the perspective division.
        box: the crop ``(x0, y0, side)`` on the image plane; ``sigma``: pixel noise (> 0).

    The model ``px_k = S / side * ((s R (N_k + B_k a + E_k e) + t)_xy / depth_k - box_xy)`` is
    linear in ``(s a, s e, s, t)``; ``s`` (mm per ICT cm, with the canonical scale) and ``t`` are
    free, ``a`` and ``e`` carry the model's prior (scaled by the mean-head scale ``s0``).
    With ``mean_points (K, 3)`` (the observed vertices of the mean head, canonical mm) the rotation
    is refined too: a small rotation ``w`` about the current one enters linearly through
    ``R (w x X)`` of the mean head's points, and the fit is repeated ``iterations`` times.
    """
    if mean_points is not None:
        R = rotation
        for _ in range(iterations):
            a, e, w = _fit(ict, idx, px, R, depth, box, image_size, sigma, mean_points)
            R = R @ _rodrigues(w)
        return a, e
    a, e, _ = _fit(ict, idx, px, rotation, depth, box, image_size, sigma, None)
    return a, e


def _fit(ict, idx, px, rotation, depth, box, image_size, sigma, mean_points):
    n_id, n_exp = ict.identity.shape[0], ict.expression.shape[0]
    P = rotation[:2]
    k = len(idx)
    gain = image_size / box[2] / depth  # (K,) crop pixels per mm, per vertex
    cols = [np.einsum("dc,mkc->kdm", P, ict.identity[:, idx].astype(np.float64)),
            np.einsum("dc,mkc->kdm", P, ict.expression[:, idx].astype(np.float64)),
            (ict.neutral[idx].astype(np.float64) @ P.T)[:, :, None]]
    t = np.zeros((k, 2, 2))
    t[:, 0, 0] = t[:, 1, 1] = 1.0
    cols.append(t)
    if mean_points is not None:  # d/dw R (w x X) = -R [X]x
        X = mean_points.astype(np.float64)
        cross = np.zeros((k, 3, 3))
        cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -X[:, 2], X[:, 1], -X[:, 0]
        cross[:, 1, 0], cross[:, 2, 0], cross[:, 2, 1] = X[:, 2], -X[:, 1], X[:, 0]
        cols.append(-np.einsum("dc,kcj->kdj", P, cross))
    A = np.concatenate(cols, axis=2) * gain[:, None, None]  # (K, 2, n)
    A = A.reshape(2 * k, -1)
    y = (px + box[:2] / box[2] * image_size).reshape(-1)
    s0 = 10.0 * 88.0 / 89.0  # mm per cm of a mean-size head in the canonical frame (approximately)
    prec = np.concatenate([np.full(n_id, 1.0 / s0**2), np.full(n_exp, 1.0 / (s0**2 * EXPRESSION_PRIOR_VAR)),
                           np.full(A.shape[1] - n_id - n_exp, 1e-12)]) * sigma**2
    theta = np.linalg.solve(A.T @ A + np.diag(prec), A.T @ y)
    s = theta[n_id + n_exp]
    w = theta[n_id + n_exp + 3:] if mean_points is not None else np.zeros(3)
    return theta[:n_id] / s, theta[n_id:n_id + n_exp] / s, w


def _identity_signal(camera, cam_points: np.ndarray, mean_points: np.ndarray, image_size: int) -> float:
    """RMS distance (crop pixels) between where the face's vertices are and where the mean face's
    would be in the same pose, after the best scale, shift and perspective strength: what identity
    and expression move in the picture."""
    px = camera.to_crop(cam_points, image_size)
    rn = mean_points.astype(np.float64) @ camera.rotation.T
    k = len(px)
    M = np.concatenate([rn[:, :2].reshape(-1, 1), (rn[:, :2] * rn[:, 2:3]).reshape(-1, 1),
                        np.tile(np.eye(2), (k, 1))], axis=1)
    res = M @ np.linalg.lstsq(M, px.reshape(-1), rcond=None)[0] - px.reshape(-1)
    return float(np.sqrt((res**2).reshape(k, 2).sum(1).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=at_least(1, "faces"), default=48)
    ap.add_argument("--seed-offset", type=int, default=555)
    ap.add_argument("--step", type=at_least(1), default=4, help="every step-th narrow-face vertex is observed")
    ap.add_argument("--pose-error", type=float, default=3.0, help="RMS rotation error (degrees) of the last rows")
    ap.add_argument("--ict-root", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ict = load_ict(args.ict_root)
    size = SamplerConfig().image_size
    sampler = FaceSampler(ict, SamplerConfig(image_size=size), EVAL_SEED + args.seed_offset)
    head, grid = sampler.head, Grid.from_config(FrameConfig(), 64)
    face = np.arange(*SUBMESHES["narrow_face"])[:: args.step]
    rows = [("mean head (baseline)", None, 0.0, 0.0)]
    rows += [(f"68 landmarks, {s:g} px", "lm", s, 0.0) for s in (0.5, 1.0)]
    rows += [(f"{len(face)} face vertices, {s:g} px", "face", s, 0.0) for s in (0.0, 0.5, 1.0, 2.0, 4.0)]
    rows += [(f"{len(face)} face vertices, {s:g} px, rotation off by {args.pose_error:g} deg", "face", s,
              args.pose_error) for s in (0.5, 1.0)]
    rows += [(f"{len(face)} face vertices, {s:g} px, rotation off by {args.pose_error:g} deg, refined in the fit",
              "face+R", s, args.pose_error) for s in (0.5, 1.0, 2.0)]
    ious: dict[str, list[float]] = {r[0]: [] for r in rows}
    mean_occ = sampler.occupancy(head.closed_head(None, None), grid).astype(bool)
    mean_cam_vertices = head.full_vertices(None, None)
    rng = np.random.default_rng(args.seed_offset)
    visible_counts, signal = [], []
    for i in range(args.num):
        a, e = sampler.id_coeffs(i), sampler.exp_coeffs(i)
        person = sampler._person(a)
        verts = person.full_vertices(e)
        truth = sampler.occupancy(person.closed_head(e), grid).astype(bool)
        camera, cam = sampler.camera(i, verts)
        normals = vertex_normals(cam, ict.faces)
        for name, kind, sigma, pose_err in rows:
            if kind is None:
                pred = mean_occ
            else:
                idx = ict.landmarks if kind == "lm" else face
                if kind != "lm":  # turned towards the camera (and not grazing)
                    view = cam[idx] / np.linalg.norm(cam[idx], axis=1, keepdims=True)
                    idx = idx[(normals[idx] * view).sum(1) < -0.1]
                    if sigma == 0.0 and pose_err == 0.0:
                        visible_counts.append(len(idx))
                        signal.append(_identity_signal(camera, cam[idx], mean_cam_vertices[idx], size))
                px = camera.to_crop(cam[idx], size) + rng.normal(0.0, sigma, (len(idx), 2))
                R = camera.rotation
                if pose_err:
                    R = R @ euler_matrix(*rng.normal(0.0, pose_err, 3))
                # depth of each observed vertex as the mean face would have it under the rotation
                depth = (mean_cam_vertices[idx] @ R.T)[:, 2] + camera.translation[2]
                ah, eh = fit_coefficients(ict, idx, px, R, depth, camera.box, size, max(sigma, 0.1),
                                          mean_cam_vertices[idx] if kind == "face+R" else None)
                ph = head.person(ah.astype(np.float32))
                pred = sampler.occupancy(ph.closed_head(np.clip(eh, 0, 1).astype(np.float32)), grid).astype(bool)
            ious[name].append(float((pred & truth).sum() / (pred | truth).sum()))
    base = float(np.mean(ious[rows[0][0]]))
    print(f"{args.num} unseen faces (seed {EVAL_SEED + args.seed_offset}), 64^3, exact closed heads "
          f"(no decoder); {np.mean(visible_counts):.0f} face vertices visible on average; "
          f"{time.perf_counter() - t0:.0f} s. Identity and expression move the visible face vertices by "
          f"{np.mean(signal):.2f} px RMS from the mean face in the same pose (best scale, shift and "
          f"perspective).\n")
    print("| observed (crop pixels of a 128 px crop) | IoU | gap to 1 closed |")
    print("|---|---|---|")
    for name, *_ in rows:
        m = float(np.mean(ious[name]))
        print(f"| {name} | {m:.4f} | {(m - base) / (1 - base):.0%} |")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    run_main(main)
