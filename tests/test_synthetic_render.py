"""The synthetic renders of ICT-FaceKit faces: what the picture shows, and the sampler's edges.

The checks that need the real morphable model (its eyes, its landmarks) run when
``VOXFACE_ICT_ROOT`` points at ICT-FaceKit; the others use the toy model of ``tests/toy_ict.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from voxface.data.ict import load_ict
from voxface.data.render import Rasterizer
from voxface.data.synthetic import FaceSampler, SamplerConfig

from .toy_ict import write_toy_ict

REAL_ICT = os.environ.get("VOXFACE_ICT_ROOT")
needs_ict = pytest.mark.skipif(not (REAL_ICT and Path(REAL_ICT).exists()),
                               reason="ICT-FaceKit not available: set VOXFACE_ICT_ROOT")

FRONTAL = dict(yaw=1e-3, pitch=1e-3, roll=1e-3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return load_ict(write_toy_ict(tmp_path_factory.mktemp("toy_ict")).parent)


@pytest.fixture(scope="module")
def real():
    return load_ict(REAL_ICT)


def _hit_regions(s: FaceSampler, index: int, G: int) -> np.ndarray:
    """Appearance region (0 skin, 1 sclera, 2 iris, ...) of the first hit of every sample hit."""
    v = s._person(s.id_coeffs(index)).full_vertices(s.exp_coeffs(index))
    camera, cam = s.camera(index, v)
    h = Rasterizer(cam, s.render_faces, camera.box, two_sided=s._open_faces).hits(G)
    return s.appearance.region[s.render_faces[h.prim]].max(1)


@needs_ict
def test_irises_show_through_a_transparent_cornea(real):
    # ICT-FaceKit's sclera is a closed shell over the iris: drawn opaque, no ray ever reaches an iris
    opaque = FaceSampler(real, SamplerConfig(**FRONTAL), seed=0)
    clear = FaceSampler(real, SamplerConfig(**FRONTAL), seed=0, transparent_cornea=True)
    cornea = clear.appearance.cornea
    assert 200 < cornea.sum() < 800 and (clear.appearance.region[cornea] == 1).all()  # sclera vertices only
    for i in (0, 6):  # eyes open
        assert (_hit_regions(opaque, i, 256) == 2).sum() == 0
        iris = (_hit_regions(clear, i, 256) == 2).sum()
        sclera = (_hit_regions(clear, i, 256) == 1).sum()
        assert iris > 40 and sclera > 40, (i, iris, sclera)  # both irises and the whites around them
    # the rest of the picture is the same: only the eyes change (before the photometric corruption,
    # whose contrast and JPEG blocks spread any change)
    opaque.cfg.photometric = clear.cfg.photometric = False
    a, b = opaque.sample(6, None), clear.sample(6, None)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    lm = b["landmarks_2d"]
    eyes = np.zeros(a["mask"].shape, bool)
    for k in (slice(36, 42), slice(42, 48)):
        (x0, y0), (x1, y1) = lm[k].min(0), lm[k].max(0)
        eyes[int(y0) - 4:int(y1) + 5, int(x0) - 4:int(x1) + 5] = True
    diff = np.abs(a["image"] - b["image"]).max(0) > 0
    assert diff.any() and not (diff & ~eyes).any()


def test_bad_sample_indices_and_image_sizes_are_one_line_errors(toy):
    from voxface.data.synthetic import SyntheticDataset
    from voxface.errors import ConfigError

    s = FaceSampler(toy, SamplerConfig(image_size=16), seed=0)
    for bad in (-1, -(2**40), 2.0, "3", True):
        with pytest.raises(IndexError, match="sample index .* whole number, 0 or more"):
            s.sample(bad, None)
    a, b = s.sample(np.int64(5), None), s.sample(5, None)  # NumPy integers are indices
    np.testing.assert_array_equal(a["image"], b["image"])
    for size in (0, -3, 2.5):
        with pytest.raises(ConfigError, match="image_size"):
            FaceSampler(toy, SamplerConfig(image_size=size), seed=0)
    ds = SyntheticDataset(8, 0, 32)
    with pytest.raises(IndexError, match="index 8 out of range for a synthetic dataset of 8"):
        ds[8]


@needs_ict
def test_coefficient_distributions_are_as_documented(real):
    s = FaceSampler(real, seed=0)
    E = np.stack([s.exp_coeffs(i) for i in range(3000)])
    nz = (E > 0).sum(1)
    assert abs((nz == 0).mean() - s.cfg.neutral_share) < 0.025
    assert nz.max() == s.cfg.max_expressions + 1 and 0.02 < (nz == 5).mean() < 0.1  # a mirrored pair adds one
    assert E.max() <= 1 and E[E > 0].min() >= 0.3 * 0.85 - 1e-6
    A = np.stack([s.id_coeffs(2 * i) for i in range(1500)])
    np.testing.assert_array_equal(A[0], s.id_coeffs(1))  # samples 2k and 2k + 1 are one person
    assert abs(A.mean()) < 0.02 and abs(A.std() - s.cfg.id_temperature) < 0.02


def _winding_number(points: np.ndarray, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Generalised winding number of ``points (P, 3)`` (solid angles, Van Oosterom-Strackee)."""
    a, b, c = (v[f[:, k]][None] - points[:, None] for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("ijk,ijk->ij", a, np.cross(b, c))

    def dot(x, y):
        return np.einsum("ijk,ijk->ij", x, y)

    angle = 2 * np.arctan2(det, la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb)
    return angle.sum(1) / (4 * np.pi)


@needs_ict
def test_closed_lips_are_solid_where_the_head_surface_overlaps_itself(real):
    """The closed ICT head's lips pass through each other (pressed or closed lips, and some
    identities at rest): the even-odd rule carved a slit through them (winding number 2 read as
    outside), 25 mm wide in sample 59 of seed 0 at 64^3. The nonzero rule keeps them solid."""
    from voxface.config import FrameConfig
    from voxface.frame import Grid
    from voxface.occupancy import occupancy_grid

    s = FaceSampler(real, seed=0)
    assert s.head.occupancy_rule == "nonzero"
    v = s._person(s.id_coeffs(59)).closed_head(s.exp_coeffs(59)).astype(np.float64)
    grid = Grid.from_config(FrameConfig(), 64)
    occ = s.occupancy(v, grid)
    evenodd = occupancy_grid(v, s.head.faces, grid, rule="evenodd")
    assert (occ >= evenodd).all()  # only cells the surface covers twice differ
    slit = np.argwhere(occ != evenodd)
    assert len(slit) >= 2
    points = grid.cell_centers()[tuple(slit.T)]  # (z, y, x) indices -> canonical mm
    assert np.allclose(_winding_number(points, v, s.head.faces.astype(np.int64)), 2.0, atol=0.05)
