"""Review 38: the synthetic renderer's anti-aliasing and compositing are done in linear light."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

from voxface.data import render, synthetic
from voxface.data.appearance import srgb_to_linear
from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig

from .toy_ict import write_toy_ict

REAL_ICT = os.environ.get("VOXFACE_ICT_ROOT")


def _ict(kind: str, tmp_path_factory):
    if kind == "toy":
        return load_ict(write_toy_ict(tmp_path_factory.mktemp("toy_ict")).parent)
    if not (REAL_ICT and Path(REAL_ICT).exists()):
        pytest.skip("ICT-FaceKit not available: set VOXFACE_ICT_ROOT")
    return load_ict(REAL_ICT)


@pytest.mark.parametrize("kind", ["toy", "real"])
def test_supersampled_pixels_average_the_rays_in_linear_light(kind, tmp_path_factory, monkeypatch):
    # an S-pixel crop supersampled 4 x 4 casts exactly the rays of the 4S-pixel crop with one ray a
    # pixel (the crop box does not depend on the size), so each of its pixels must be the 4 x 4
    # block of the big crop averaged as light adds up: in linear RGB. Averaging sRGB values (as
    # before) darkened every high-contrast edge, the silhouette over a dark background most
    ict = _ict(kind, tmp_path_factory)
    monkeypatch.setattr(synthetic, "background", lambda rng, S: np.full((S, S, 3), 0.03, np.float32))
    monkeypatch.setattr(synthetic, "render_crop", functools.partial(render.render_crop, adaptive=False))
    S = 24
    for index in (0, 3):
        small = FaceSampler(ict, SamplerConfig(image_size=S, supersample=4, photometric=False), seed=5)
        big = FaceSampler(ict, SamplerConfig(image_size=4 * S, supersample=1, photometric=False), seed=5)
        a = small.sample(index, None)
        b = big.sample(index, None)["image"]
        assert a["image"].dtype == np.float32 and 0 <= a["image"].min() and a["image"].max() <= 1
        lin = srgb_to_linear(b).reshape(3, S, 4, S, 4).mean((2, 4))
        want = render.linear_to_srgb(lin)
        # a saturated ray (a highlight over 1) is clipped in the big crop's pixel but counts in full
        # in the small one's mean, as a sensor pixel saturates on the light it integrates
        ok = ~(b >= 1 - 1e-6).reshape(3, S, 4, S, 4).any((0, 2, 4))
        assert ok.mean() > 0.8
        np.testing.assert_allclose(a["image"][:, ok], want[:, ok], atol=2e-5)
        # the check has teeth: the sRGB mean (what the renderer took) is far from it at the silhouette
        srgb_mean = b.reshape(3, S, 4, S, 4).mean((2, 4))
        assert np.abs(srgb_mean - want)[:, ok].max() > 0.05, index
