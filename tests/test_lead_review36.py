"""Regression tests for the lead's review of session 36."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def toy(toy_root, cache_env):
    from voxface.data.ict import load_ict

    return load_ict(toy_root)


@pytest.mark.parametrize("fov", [(90.0, 90.0), (30.0, 150.0)])
def test_a_field_of_view_that_stands_the_camera_inside_the_head_is_refused(toy, fov):
    """Any field of view below 180 degrees was taken, but the camera stands 170 / tan(fov / 2) mm
    from the head's centre: at 150 degrees 46 mm, inside the head (the real ICT head gave a crop of
    the inside of the nose, scale 0.004, a mask on 3% of it, without a word). From 90 degrees on
    (170 mm) the config is refused, naming the key and why; below it every vertex of the head lies
    in front of the camera."""
    from voxface.data.synthetic import MAX_FOV, FaceSampler, SamplerConfig
    from voxface.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^sampler\.fov .* 0 < low <= high < 90 \(the camera stands 170 / tan"
                                          r"\(fov / 2\) mm from the head's centre: from 90 degrees on, inside"):
        FaceSampler(toy, SamplerConfig(image_size=16, fov=fov), seed=3)
    wide = FaceSampler(toy, SamplerConfig(image_size=16, fov=(MAX_FOV - 1, MAX_FOV - 1)), seed=3)
    for i in range(8):
        _, cam = wide.camera(i, wide.head.full_vertices(None, None))
        assert cam[:, 2].min() > 0  # the whole head in front of the camera
    inside = FaceSampler.__new__(FaceSampler)  # what 150 degrees drew (the check skipped): behind the camera
    inside.__dict__.update(wide.__dict__, cfg=SamplerConfig(image_size=16, fov=(150.0, 150.0)))
    assert min(inside.camera(i, wide.head.full_vertices(None, None))[1][:, 2].min() for i in range(8)) < 0
