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


def test_an_ict_copy_with_its_facexmodel_still_packed_says_to_unpack_it(tmp_path, monkeypatch):
    """ICT-FaceKit copies that ship FaceXModel packed (FaceXModel.tar.xz beside README.md, as
    ../shared's copy does) were refused as 'no FaceXModel/vertex_indices.json or ...', and the
    archive itself as 'is a file': both now say to unpack it, and how."""
    from voxface.data.ict import find_root
    from voxface.errors import DataError

    copy = tmp_path / "ict-facekit"
    copy.mkdir()
    (copy / "README.md").write_text("ICT-FaceKit")
    archive = copy / "FaceXModel.tar.xz"
    archive.write_bytes(b"\xfd7zXZ\x00")
    monkeypatch.setenv("VOXFACE_ICT_ROOT", str(copy))
    with pytest.raises(DataError) as ei:
        find_root()
    assert str(ei.value) == (f"{copy}: not an ICT-FaceKit folder (from $VOXFACE_ICT_ROOT): no "
                             "FaceXModel/vertex_indices.json or FaceXModel/generic_neutral_mesh.obj (FaceXModel is "
                             "packed in FaceXModel.tar.xz there: unpack it, tar xf FaceXModel.tar.xz -C <folder>)")
    with pytest.raises(DataError) as ei:
        find_root(archive)
    assert str(ei.value) == (f"{archive}: is an archive, not an ICT-FaceKit folder: unpack it (tar xf "
                             "FaceXModel.tar.xz -C <folder>) and give the FaceXModel folder it holds (or the folder "
                             "holding that)")
    # once unpacked beside it, the copy is found as before (the archive left in place)
    write_toy_ict(copy)
    assert find_root(copy) == copy / "FaceXModel"
    # a folder without an archive keeps its message
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"generic_neutral_mesh.obj$"):
        find_root(tmp_path / "empty")


def test_expression_weights_are_as_the_sampler_config_says(toy):
    """SamplerConfig said each drawn blendshape weighs w ~ U(0.3, 1) and only a mirrored pair gets
    the U(0.85, 1.15) factor; every weight gets it (0.255 to 1, some 5 % exactly 1)."""
    s = FaceSampler(toy, SamplerConfig(image_size=16, symmetric_share=0.0), seed=0)  # no pairs at all
    w = np.concatenate([s.exp_coeffs(i) for i in range(4000)])
    w = w[w > 0]
    assert w.min() >= 0.3 * 0.85 - 1e-6 and (w < 0.3).mean() > 0.005
    assert 0.03 < (w == 1).mean() < 0.07


def test_an_unknown_synthetic_split_is_refused_not_taken_for_validation():
    """build_dataset(data, 'Train' or 'test', model) on synthetic data gave the validation split
    (seed + val_seed_offset, num_val faces) without a word; toy data refused it. Both refuse now."""
    from voxface.data import build_dataset

    for kind in ("synthetic", "toy"):
        for split in ("Train", "test", "validation"):
            with pytest.raises(ConfigError, match=rf"^unknown split '{split}'; use 'train' or 'val'$"):
                build_dataset({"kind": kind}, split, None)
    assert build_dataset({"kind": "synthetic"}, "train", None).seed == 0
    assert build_dataset({"kind": "synthetic"}, "val", None).seed == 1_000_003
