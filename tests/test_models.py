"""Models: shapes for every configured resolution, registry, determinism, pose conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxface.config import ModelConfig, from_dict, load_yaml, model_config, to_dict
from voxface.errors import ConfigError
from voxface.frame import FRONTAL_ROTATION
from voxface.models import DECODERS, ENCODERS, count_parameters, create_model, flops_per_sample
from voxface.models.decoder import pixel_shuffle_3d
from voxface.rotation import geodesic_degrees, matrix_to_rot6d, rot6d_to_matrix


@pytest.mark.parametrize("res,widths", [(32, [32, 16, 8]), (64, [32, 16, 8, 8]), (128, [16, 16, 8, 8, 4])])
def test_decoder_resolutions(tiny_config, res, widths):
    cfg = dict(tiny_config, decoder={"resolution": res, "widths": widths})
    m = create_model(cfg).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits, lat = m(x)
    assert logits.shape == (2, 1, res, res, res)
    assert lat.z_id.shape == (2, 16) and lat.z_exp.shape == (2, 8)
    assert lat.pose.rotation.shape == (2, 3, 3) and lat.pose.scale.shape == (2,)
    assert lat.pose.translation.shape == (2, 2)
    assert m.grid.resolution == res


def test_decoder_width_count_is_checked(tiny_config):
    with pytest.raises(ValueError, match="widths needs 4 entries"):
        create_model(dict(tiny_config, decoder={"resolution": 64, "widths": [8, 8]}))


def test_registry_and_unknown_names(tiny_config):
    assert "resnet" in ENCODERS and "conv3d" in DECODERS
    with pytest.raises(ValueError, match="unknown encoder"):
        create_model(dict(tiny_config, encoder={**tiny_config["encoder"], "name": "vit"}))


def test_untrained_pose_is_frontal_and_rotations_are_proper(tiny_model):
    with torch.no_grad():
        lat = tiny_model.encode(torch.rand(3, 3, 64, 64))
    R = lat.pose.rotation
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(3), atol=1e-5, rtol=0)
    # the pose head starts at "looking into the camera"
    torch.testing.assert_close(R, torch.as_tensor(FRONTAL_ROTATION, dtype=torch.float32).expand(3, 3, 3))


def test_rot6d_round_trip_and_geodesic():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(16, 4, generator=g), dim=1)
    w, x, y, z = q.unbind(1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).view(16, 3, 3)
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-5, rtol=0)
    a = torch.deg2rad(torch.tensor(30.0))
    Rz = torch.tensor([[torch.cos(a), -torch.sin(a), 0], [torch.sin(a), torch.cos(a), 0], [0, 0, 1]])
    assert geodesic_degrees(torch.eye(3), Rz).item() == pytest.approx(30.0, abs=1e-3)


def test_pixel_shuffle_3d_places_sub_voxels():
    x = torch.arange(8.0).view(1, 8, 1, 1, 1)
    y = pixel_shuffle_3d(x, 2)
    assert y.shape == (1, 1, 2, 2, 2)
    assert y.flatten().tolist() == list(range(8))  # channel k -> (d, h, w) = bits of k


def test_forward_is_deterministic_and_batch_independent(tiny_model):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, _ = tiny_model(x)
        b, _ = tiny_model(x)
        c, _ = tiny_model(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:2], c, atol=1e-5, rtol=1e-5)


def test_cpu_encode_in_chunks_gives_the_whole_batch_codes(tiny_model):
    """Inference on a CPU encodes CPU_ENCODE_CHUNK crops at a time (a batch that does not divide
    evenly included); the codes and poses are those of one pass over the batch."""
    from voxface.models.voxface import CPU_ENCODE_CHUNK

    n = 2 * CPU_ENCODE_CHUNK + 3
    x = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        chunked = tiny_model.encode(x)
        z_id, z_exp, raw = tiny_model.encoder(x)  # one pass
    whole = tiny_model.encode(x.requires_grad_(True))  # autograd on: one pass too
    for got, ref in ((chunked.z_id, z_id), (chunked.z_exp, z_exp), (chunked.z_id, whole.z_id)):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked.pose.rotation, whole.pose.rotation.detach(), atol=1e-5, rtol=1e-5)


def test_encode_and_decode_refuse_what_they_cannot_read(tiny_model):
    """The public encode/decode say what shape and type they take instead of failing deep in torch,
    and never read a crop of another size (the encoder would take it and return wrong codes)."""
    s, n_id, n_exp = tiny_model.image_size, tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    with torch.no_grad():
        for bad in (torch.rand(1, 3, s // 2, s // 2), torch.rand(1, s, s, 3), torch.rand(3, s, s)):
            with pytest.raises(ValueError, match=rf"images must be \(B, 3, {s}, {s}\)"):
                tiny_model.encode(bad)
        with pytest.raises(TypeError, match="floating point in \\[0, 1\\]"):
            tiny_model.encode(torch.zeros(1, 3, s, s, dtype=torch.uint8))
        # values: 0-255 floats, NaN and infinities would give codes of nothing (and NaN logits later)
        x = torch.rand(2, 3, s, s)
        nan = x.index_put((torch.tensor(1),), torch.tensor(float("nan")))
        for bad, hint in ((x * 255, "divide 0-255 values by 255"), (nan, "nan"), (x - 0.5, r"-0\.\d+"),
                          (x.masked_fill(x > 0.9, float("inf")), "inf")):
            with pytest.raises(ValueError, match=rf"values in \[0, 1\], got values in .*{hint}"):
                tiny_model.encode(bad)
        for name, z_id, z_exp in (("z_id", torch.full((1, n_id), float("nan")), torch.zeros(1, n_exp)),
                                  ("z_exp", torch.zeros(1, n_id), torch.full((1, n_exp), float("inf")))):
            with pytest.raises(ValueError, match=f"{name} holds NaN or infinite values"):
                tiny_model.decode(z_id, z_exp)
        for z_id, z_exp in ((torch.zeros(1, n_id + 1), torch.zeros(1, n_exp)), (torch.zeros(n_id), torch.zeros(n_exp)),
                            (torch.zeros(2, n_id), torch.zeros(3, n_exp))):
            with pytest.raises(ValueError, match=rf"z_id must be \(B, {n_id}\) and z_exp \(B, {n_exp}\)"):
                tiny_model.decode(z_id, z_exp)
        # arrays are taken as float32 tensors: the same logits
        a, e = np.random.default_rng(0).normal(size=(2, n_id)), np.zeros((2, n_exp))
        torch.testing.assert_close(tiny_model.decode(a, e), tiny_model.decode(torch.tensor(a).float(),
                                                                               torch.tensor(e).float()))
        # float64 tensors (``torch.from_numpy(img / 255)``) are cast to the model's dtype, not refused by a conv
        x = torch.rand(2, 3, s, s, dtype=torch.float64)
        l64, l32 = tiny_model.encode(x), tiny_model.encode(x.float())
        assert l64.z_id.dtype == torch.float32
        torch.testing.assert_close(l64.z_id, l32.z_id)
        torch.testing.assert_close(tiny_model.decode(torch.tensor(a), torch.tensor(e)), tiny_model.decode(a, e))


def test_parameter_and_flop_counts(tiny_model):
    n = count_parameters(tiny_model)
    assert n == count_parameters(tiny_model.encoder) + count_parameters(tiny_model.decoder)
    f = flops_per_sample(tiny_model)
    assert f["encoder"] > 0 and f["decoder"] > 0 and f["total"] == f["encoder"] + f["decoder"]


def test_shipped_config_builds_the_documented_model(repo_root):
    cfg = model_config(load_yaml(repo_root / "configs" / "voxface-64.yaml")["model"])
    # the codes are ICT-FaceKit coordinates: 100 identity modes, 53 ARKit blendshapes
    assert cfg.encoder.z_id == 100 and cfg.encoder.z_exp == 53 and cfg.decoder.resolution == 64
    assert cfg.encoder.image_size == 128 and cfg.decoder.name == "deform"
    m = create_model(cfg)
    assert 3e6 < count_parameters(m) < 8e6


# -- config ---------------------------------------------------------------------------------------

def test_config_round_trip_and_unknown_keys():
    cfg = ModelConfig()
    assert from_dict(ModelConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        model_config({"decoder": {"resolutoin": 64}})
    with pytest.raises(ConfigError, match="expected int"):
        model_config({"decoder": {"resolution": "64"}})


@pytest.mark.parametrize("section, values, words", [
    ("encoder", {"z_id": 0}, "model.encoder.z_id must be at least 1, got 0"),
    ("encoder", {"widths": [32, 0]}, "model.encoder.widths[1] must be at least 1"),
    ("encoder", {"blocks": [1, 0, 1, 1]}, "model.encoder.blocks[1] must be at least 1"),
    ("encoder", {"image_size": 16}, "model.encoder.image_size must be at least 32"),  # four stride-2 stages and a stem
    ("encoder", {"dropout": 1.0}, "dropout must lie in [0, 1)"),
    ("decoder", {"resolution": -64}, "model.decoder.resolution must be at least 1"),
    ("decoder", {"widths": []}, "model.decoder.widths must not be empty"),
    ("frame", {"side_mm": 0.0}, "side_mm must be positive"),
    ("refine", {"layers": 0}, "model.refine.layers must be at least 1"),
])
def test_config_refuses_sizes_no_model_can_have(section, values, words):
    with pytest.raises(ConfigError) as e:
        model_config({section: values})
    assert words in str(e.value)


def test_create_model_reports_inconsistent_values_as_config_errors():
    """The parts' own checks come out as ConfigError (a VoxfaceError, one line) that is still a ValueError."""
    from voxface.config import EncoderConfig

    with pytest.raises(ConfigError, match="z_id must be at least 1"):  # a dataclass is checked too
        create_model(ModelConfig(encoder=EncoderConfig(z_id=-5)))
    for bad in ({"decoder": {"widths": [8]}}, {"encoder": {"readout": "flat"}}, {"encoder": {"name": "vit"}}):
        with pytest.raises(ConfigError) as e:
            create_model(bad)
        assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_yaml_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  decoder:\n    resolution: 32\n    widths: [8, 8, 8]\ntrain:\n  lr: 0.1\n")
    (tmp_path / "child.yaml").write_text("inherit_from: base.yaml\nmodel:\n  decoder:\n    resolution: 64\n    widths: [8, 8, 8, 8]\n")
    d = load_yaml(tmp_path / "child.yaml")
    assert d["model"]["decoder"]["resolution"] == 64 and d["train"]["lr"] == 0.1
    (tmp_path / "loop.yaml").write_text("inherit_from: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_flatten_readout_keeps_where_features_lie(tiny_config):
    cfg = dict(tiny_config, encoder={**tiny_config["encoder"], "readout": "flatten", "readout_channels": 4})
    m = create_model(cfg).eval()
    enc = m.encoder
    # 64 px through a stride-2 stem and two stride-2 stages: 8 x 8 cells of 4 channels, side by side
    assert enc.trunk[0].in_features == 4 * 8 * 8
    with torch.no_grad():
        lat = m.encode(torch.rand(3, 3, 64, 64))
    assert lat.z_id.shape == (3, 16) and lat.z_exp.shape == (3, 8)
    # unlike average pooling, the readout sees a feature moved to another cell
    x = torch.zeros(1, enc.pool[0].in_channels, 8, 8)
    x[..., 1, 1] = 1.0
    with torch.no_grad():
        a, b = enc.pool(x).flatten(1), enc.pool(x.roll(3, dims=-1)).flatten(1)
        pa, pb = torch.nn.AdaptiveAvgPool2d(1)(x), torch.nn.AdaptiveAvgPool2d(1)(x.roll(3, dims=-1))
    assert torch.equal(pa, pb) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="expected 'pool' or 'flatten'"):
        create_model(dict(tiny_config, encoder={**tiny_config["encoder"], "readout": "max"}))
    with pytest.raises(ValueError, match="divisible by 8"):
        create_model(dict(tiny_config, encoder={**tiny_config["encoder"], "readout": "flatten", "image_size": 60}))
