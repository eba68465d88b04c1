"""Per-vertex albedo of ICT-FaceKit faces: skin tones, lips, brows, hair, eyes, mouth.

Region weights are computed once on the mean head from the 68 landmarks and the sub-mesh vertex
ranges (the topology is shared by every face), then coloured per sample.
"""

from __future__ import annotations

import numpy as np

from .ict import SUBMESHES, ICTModel

# sRGB skin tones spanning very light to very dark (Fitzpatrick I-VI and between)
SKIN_TONES = np.array(
    [
        [247, 224, 210], [241, 205, 180], [232, 190, 160], [224, 172, 138], [205, 150, 115],
        [190, 130, 95], [160, 105, 75], [130, 85, 60], [100, 65, 45], [70, 48, 36],
    ],
    np.float32,
) / 255.0

HAIR_COLOURS = np.array(
    [[20, 16, 14], [45, 32, 24], [80, 55, 35], [120, 85, 50], [170, 130, 80], [200, 170, 120],
     [110, 40, 25], [140, 140, 140]],
    np.float32,
) / 255.0

IRIS_COLOURS = np.array(
    [[70, 45, 25], [100, 70, 40], [60, 90, 120], [80, 110, 80], [40, 30, 25], [110, 100, 70]],
    np.float32,
) / 255.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _polyline_distance(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    """2D distance of points ``(N, 2)`` to a polyline ``(K, 2)``."""
    d = np.full(len(p), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-9), 0, 1)
        d = np.minimum(d, np.linalg.norm(p - (a + t[:, None] * ab), axis=1))
    return d


#: Sclera vertices within this angle (degrees) of an eye's axis form its cornea: ICT-FaceKit's
#: sclera mesh is a closed shell whose front bulge covers the iris mesh (in the Unreal Engine
#: shaders it is made for, that bulge is transparent). The iris rim lies 16 degrees off the axis.
CORNEA_DEGREES = 22.0


def cornea_vertices(neutral: np.ndarray) -> np.ndarray:
    """``(V,)`` bool: the sclera vertices in front of each iris (the cornea), from neutral vertices
    ``(V, 3)`` (any frame and unit: only angles count).

    Per eye: the eyeball centre is the least-squares sphere through the sclera vertices, the axis
    points from it to the centroid of the iris vertices, and the cornea is the sclera vertices
    less than :data:`CORNEA_DEGREES` off that axis.
    """
    v = np.asarray(neutral, np.float64)
    out = np.zeros(len(v), bool)
    for side in ("left", "right"):
        a, b = SUBMESHES[f"sclera_{side}"]
        ia, ib = SUBMESHES[f"iris_{side}"]
        sc = v[a:b]
        sol = np.linalg.lstsq(np.c_[2 * sc, np.ones(len(sc))], (sc * sc).sum(1), rcond=None)[0]
        d = sc - sol[:3]
        axis = v[ia:ib].mean(0) - sol[:3]
        cos = (d @ axis) / (np.linalg.norm(d, axis=1) * np.linalg.norm(axis)).clip(1e-12)
        out[a:b] = cos > np.cos(np.radians(CORNEA_DEGREES))
    return out


def _inside_polygon(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    return MplPath(poly).contains_points(p)


class Appearance:
    """Region weights over the ICT vertices and a per-sample albedo.

    Args:
        ict: the morphable model.
        neutral_mm: ``(V, 3)`` mean head vertices in canonical mm (for region geometry).
    """

    def __init__(self, ict: ICTModel, neutral_mm: np.ndarray):
        v = neutral_mm
        V = len(v)
        lm = v[ict.landmarks]
        xy = v[:, :2]
        front = np.zeros(V, bool)
        lo, hi = SUBMESHES["face"]
        front[lo:hi] = True
        # lips: inside the outer lip contour (landmarks 48-59), on the face
        lips = _inside_polygon(xy, lm[48:60, :2]) & front & (v[:, 2] > lm[30, 2] - 45)
        # brows: near the brow polylines (17-21, 22-26), on the upper face
        brow_d = np.minimum(_polyline_distance(xy, lm[17:22, :2]), _polyline_distance(xy, lm[22:27, :2]))
        brows = front & (brow_d < 5.5) & (v[:, 2] > lm[30, 2] - 60)
        # scalp: above the forehead and over the back of the head
        brow_y = lm[17:27, 1].max()
        scalp_h = (v[:, 1] - (brow_y + 14.0)) / 8.0 + np.clip(-v[:, 2] / 80.0, 0, None) * (v[:, 1] > lm[36, 1] - 5)
        self.scalp = np.clip(scalp_h, 0, 1).astype(np.float32)
        self.lips = lips.astype(np.float32)
        self.brows = brows.astype(np.float32)
        self.region = np.zeros(V, np.int8)  # 0 skin, 1 sclera, 2 iris, 3 teeth, 4 gums, 5 mouth, 6 lashes
        for name, code in (("sclera_left", 1), ("sclera_right", 1), ("iris_left", 2), ("iris_right", 2),
                           ("teeth", 3), ("gums_and_tongue", 4), ("mouth_socket", 5), ("eyelashes", 6)):
            a, b = SUBMESHES[name]
            self.region[a:b] = code
        #: ``(V,)`` bool: the cornea (:func:`cornea_vertices`), transparent in renders that show irises
        self.cornea = cornea_vertices(v)
        # pupil: the iris vertices nearest the front of each eye
        self.pupil = np.zeros(V, np.float32)
        for name in ("iris_left", "iris_right"):
            a, b = SUBMESHES[name]
            z = v[a:b, 2]
            self.pupil[a:b] = (z > np.quantile(z, 0.8)).astype(np.float32)
        # inside of the mouth socket is dark; its lip-side rim stays skin-coloured
        a, b = SUBMESHES["mouth_socket"]
        self.mouth_depth = np.zeros(V, np.float32)
        self.mouth_depth[a:b] = np.clip((lm[62, 2] - v[a:b, 2]) / 15.0, 0, 1)
        # constants of albedo(): vertices of each region, and the region weights of the skin blend
        self._where = {code: np.flatnonzero(self.region == code) for code in range(1, 7)}
        self._mouth_w = self.mouth_depth[self._where[5], None]
        self._pupil_w = self.pupil[self._where[2], None]

    def albedo(self, rng: np.random.Generator) -> np.ndarray:
        """Linear-RGB albedo ``(V, 3)`` float32 for one random person."""
        t = rng.uniform(0, len(SKIN_TONES) - 1)
        i = int(t)
        skin = SKIN_TONES[i] * (1 - (t - i)) + SKIN_TONES[min(i + 1, len(SKIN_TONES) - 1)] * (t - i)
        skin = np.clip(skin * rng.uniform(0.92, 1.08, 3), 0, 1)
        skin_l = srgb_to_linear(skin)
        hair = srgb_to_linear(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2))
        lip = skin_l * np.array([0.78, 0.48, 0.50]) * rng.uniform(0.8, 1.05)
        # skin, lips over it, brows over that, hair over everything: one linear mix of the three
        # colours per vertex (the same blend as three successive lerps)
        brow_strength = rng.uniform(0.5, 0.95)
        hair_amount = rng.choice([0.0, 1.0, 1.0, 1.0]) * rng.uniform(0.6, 1.0)  # some heads are bald
        w = (hair_amount * self.scalp).astype(np.float32)
        keep = (1 - brow_strength * self.brows) * (1 - w)
        col = np.outer(keep * (1 - self.lips), skin_l.astype(np.float32))
        col += np.outer(keep * self.lips, lip.astype(np.float32))
        col += np.outer(brow_strength * self.brows * (1 - w) + w, hair.astype(np.float32))
        iris = srgb_to_linear(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))])
        at = self._where
        col[at[1]] = srgb_to_linear(np.array([0.78, 0.75, 0.70]) * rng.uniform(0.85, 1.0))
        col[at[2]] = iris * (1 - self._pupil_w * 0.9)
        col[at[3]] = srgb_to_linear(np.array([0.85, 0.82, 0.72]))
        col[at[4]] = srgb_to_linear(np.array([0.62, 0.28, 0.28]))
        m = at[5]
        col[m] = col[m] * (1 - self._mouth_w) + srgb_to_linear(np.array([0.25, 0.08, 0.08])) * self._mouth_w
        col[at[6]] = hair * 0.5
        # blotchiness: an independent brightness factor per vertex (about a millimetre apart on the face)
        col *= rng.uniform(0.96, 1.04, (len(col), 1)).astype(np.float32)
        return col.astype(np.float32)
