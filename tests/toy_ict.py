"""A toy morphable model written in ICT-FaceKit's folder format (same file names, vertex ranges,
JSON keys), so the loader, closed head, sampler and cache are tested without the real data.

The closed part (vertices 0..14061) is a lat-long ellipsoid open at the bottom (one boundary loop,
like ICT's neck), written as quads; the remaining vertices sit inside it, unreferenced.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N_VERTS = 26719
N_CLOSED = 14062
N_LON, N_RINGS = 109, 129  # 1 + 129 * 109 = 14062
EXPRESSIONS = [f"shape{k:02d}_{s}" for k in range(26) for s in ("L", "R")] + ["jawOpen"]  # 53


def _neutral() -> tuple[np.ndarray, list[list[int]]]:
    v = [np.array([0.0, 1.0, 0.0])]
    for r in range(N_RINGS):
        theta = (r + 1) / (N_RINGS + 4) * np.pi  # stops short of the south pole: an open bottom
        for k in range(N_LON):
            phi = 2 * np.pi * k / N_LON
            v.append(np.array([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)]))
    v = np.array(v) * np.array([8.0, 11.0, 9.5])  # cm, like a head
    polys: list[list[int]] = []
    for k in range(N_LON):  # fan around the top pole as triangles
        polys.append([0, 1 + k, 1 + (k + 1) % N_LON])
    for r in range(N_RINGS - 1):
        a, b = 1 + r * N_LON, 1 + (r + 1) * N_LON
        for k in range(N_LON):
            k1 = (k + 1) % N_LON
            polys.append([a + k, b + k, b + k1, a + k1])
    inner = np.random.default_rng(0).normal(0, 1.0, (N_VERTS - N_CLOSED, 3))  # unreferenced, inside
    return np.concatenate([v, inner]), polys


def _write_obj(path: Path, v: np.ndarray, polys: list[list[int]] | None) -> None:
    lines = ["# toy ICT-FaceKit mesh"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    if polys:
        lines += ["f " + " ".join(str(i + 1) for i in p) for p in polys]
    path.write_text("\n".join(lines) + "\n")


def write_toy_ict(root: Path) -> Path:
    """Write ``root/FaceXModel/`` and return it."""
    d = root / "FaceXModel"
    d.mkdir(parents=True, exist_ok=True)
    v, polys = _neutral()
    _write_obj(d / "generic_neutral_mesh.obj", v, polys)
    rng = np.random.default_rng(1)
    unit = v[:N_CLOSED] / np.array([8.0, 11.0, 9.5])
    for i in range(100):
        c = rng.normal(0, 1, 3) * 0.04 / (1 + i / 10)
        bump = rng.normal(0, 1, 3) * 0.15 / (1 + i / 10)
        delta = np.zeros_like(v)
        delta[:N_CLOSED] = v[:N_CLOSED] * c + bump * np.clip(unit[:, 2:3], 0, None) ** 3
        _write_obj(d / f"identity{i:03d}.obj", v + delta, None)
    for j, name in enumerate(EXPRESSIONS):
        delta = np.zeros_like(v)
        side = -1 if name.endswith("_L") else 1
        w = np.exp(-((unit[:, 0] - 0.3 * side * (name != "jawOpen")) ** 2 + (unit[:, 1] + 0.3) ** 2) / 0.1)
        delta[:N_CLOSED, 2] = 0.6 * w * np.clip(unit[:, 2], 0, None)
        delta[:N_CLOSED, 1] = -0.3 * w * (j % 3) / 2
        _write_obj(d / f"{name}.obj", v + delta, None)
    front = np.flatnonzero((unit[:, 2] > 0.5) & (np.arange(N_CLOSED) < 6706))
    lm = np.random.default_rng(2).choice(front, 68, replace=False)
    meta = {"expressions": EXPRESSIONS, "fitting_expressions": EXPRESSIONS,
            "incompatibilities": [["shape00_L", "shape01_L"]], "idx_to_landmark_verts": lm.tolist()}
    (d / "vertex_indices.json").write_text(json.dumps(meta))
    return d
