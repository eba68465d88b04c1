"""Review 32 of the synthetic data engine: sampler and toy settings that drew no face, the ICT folder."""

from __future__ import annotations

import numpy as np
import pytest

from voxface.data.ict import load_ict
from voxface.data.synthetic import FaceSampler, SamplerConfig
from voxface.errors import ConfigError

from .toy_ict import write_toy_ict


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_ict")
    write_toy_ict(root)
    return load_ict(root, use_cache=False)


@pytest.mark.parametrize("key, value, words", [
    ("yaw", -30.0, "must be an angle in degrees from 0 to 180"),  # was numpy's 'high - low < 0' at sample 0
    ("pitch", float("nan"), "must be an angle in degrees from 0 to 180"),  # was an OverflowError
    ("roll", 270.0, "must be an angle in degrees from 0 to 180"),
    ("crop_jitter", 3.0, "must be a share of the crop side from 0 to 0.5"),  # was an empty crop, no word
    ("crop_jitter", -0.1, "must be a share of the crop side from 0 to 0.5"),
    ("crop_scale_jitter", float("inf"), "must be a finite number, 0 or more"),  # was NaN boxes, empty masks
    ("crop_scale_jitter", -0.1, "must be a finite number, 0 or more"),
    ("id_temperature", float("nan"), "must be a finite number, 0 or more"),  # was a NaN-landmark error
    ("id_temperature", -1.0, "must be a finite number, 0 or more"),
    ("yaw", True, "must be an angle"),
])
def test_sampler_ranges_that_draw_no_face_are_config_errors_when_built(toy, key, value, words):
    """A negative angle failed in numpy's 'high - low < 0' at the first sample (in a loader or
    cache worker); a NaN or infinite jitter or temperature, or a centre jitter of 3 crop sides,
    gave crops with no face in them (mask all 0, NaN scale and translation) without a word."""
    from voxface.config import model_config
    from voxface.data import build_dataset

    with pytest.raises(ConfigError, match=rf"^sampler\.{key} .*{words}"):
        FaceSampler(toy, SamplerConfig(**{"image_size": 16, key: value}), seed=0)
    if isinstance(value, float):  # the data: section of a training config, checked when the set is built
        with pytest.raises(ConfigError, match=rf"^data\.sampler\.{key} .*{words}"):
            build_dataset({"kind": "synthetic", "sampler": {key: value}}, "train", model_config("configs/tiny.yaml"))


def test_sampler_range_limits_are_accepted_and_draw_faces(toy):
    """The limits themselves are settings that work: no pose jitter at all, or the widest ranges."""
    still = FaceSampler(toy, SamplerConfig(image_size=16, yaw=0, pitch=0.0, roll=0, crop_jitter=0,
                                           crop_scale_jitter=0, id_temperature=0, photometric=False), seed=0)
    s = still.sample(1, None)
    np.testing.assert_array_equal(s["euler"], 0)
    assert not s["id_coeffs"].any() and s["mask"].mean() > 0.3
    wide = FaceSampler(toy, SamplerConfig(image_size=16, yaw=180.0, crop_jitter=0.5, crop_scale_jitter=1.0), seed=0)
    for i in range(4):
        out = wide.sample(i, None)
        assert np.isfinite(out["translation"]).all() and np.isfinite(out["scale"])
        assert np.isfinite(out["landmarks_2d"]).all()
