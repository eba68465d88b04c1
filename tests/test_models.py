"""Models: shapes for every configured resolution, registry, determinism, pose conventions."""

from __future__ import annotations

from pathlib import Path

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


def test_count_parameters_of_a_path_is_a_type_error(tiny_model):
    """voxface.count_parameters('model.pth.tar') was AttributeError: 'str' object has no attribute 'parameters'."""
    from voxface.errors import InputTypeError
    from voxface.models import count_parameters

    assert count_parameters(tiny_model) == sum(p.numel() for p in tiny_model.parameters()) > 0
    with pytest.raises(InputTypeError, match="count_parameters takes a torch module.*got str"):
        count_parameters("model.pth.tar")
    # flops_per_sample said "AttributeError: 'str' object has no attribute 'image_size'"
    for bad in ("model.pth.tar", tiny_model.decoder):
        with pytest.raises(InputTypeError, match=f"flops_per_sample takes a voxface model .*got {type(bad).__name__}"):
            flops_per_sample(bad)


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


@pytest.mark.parametrize("part,key,value,words,suggested", [
    ("encoder", "widths", [8, 2], "encoder.widths[1] is 2", "use e.g. 4"),  # was a ZeroDivisionError traceback
    ("encoder", "widths", [8, 100], "encoder.widths[1] is 100", "use e.g. 96 or 104"),  # torch's words, no key
    ("decoder", "widths", [32, 18, 8], "decoder.widths[1] is 18", "use e.g. 16 or 20"),
    ("decoder", "resolution", 48, "decoder.resolution 48 must be base_resolution * 2^k * shuffle", None),
    ("encoder", "readout_channels", 2, "encoder.readout_channels is 2: GroupNorm", None),  # one width: no [0]
])
def test_sizes_the_layers_cannot_take_name_the_key(tiny_config, part, key, value, words, suggested):
    """Widths GroupNorm cannot split into its min(8, c // 4) groups, and a resolution that is no
    power-of-two multiple of the base, are one-line ConfigErrors naming the key (a resolution of 48
    said 'widths needs 3 entries ... got 3'); the widths suggested build."""
    cfg = dict(tiny_config)
    cfg[part] = {**cfg[part], key: value, **({"readout": "flatten"} if key == "readout_channels" else {})}
    with pytest.raises(ConfigError) as e:
        create_model(cfg)
    assert words in str(e.value) and "\n" not in str(e.value)
    if suggested:
        assert str(e.value).endswith(suggested)
        for w in suggested.removeprefix("use e.g. ").split(" or "):
            cfg[part][key] = [int(w) if i == 1 else v for i, v in enumerate(value)]
            create_model(cfg)


def test_yaml_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  decoder:\n    resolution: 32\n    widths: [8, 8, 8]\ntrain:\n  lr: 0.1\n")
    (tmp_path / "child.yaml").write_text("inherit_from: base.yaml\nmodel:\n  decoder:\n    resolution: 64\n    widths: [8, 8, 8, 8]\n")
    d = load_yaml(tmp_path / "child.yaml")
    assert d["model"]["decoder"]["resolution"] == 64 and d["train"]["lr"] == 0.1
    (tmp_path / "sub").mkdir()  # a chain of three, each parent relative to the file naming it
    (tmp_path / "sub" / "short.yaml").write_text("inherit_from: ../child.yaml\nmodel:\n  decoder:\n"
                                                 "    widths: [4]\n  encoder:\n    z_id: 7\n")
    d = load_yaml(tmp_path / "sub" / "short.yaml")
    assert d["model"]["decoder"] == {"resolution": 64, "widths": [4]}  # a list replaced whole, not merged
    assert d["model"]["encoder"] == {"z_id": 7} and d["train"] == {"lr": 0.1}  # mappings merged key by key
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


def test_inputs_are_checked_with_autograd_on_too_but_not_in_a_training_step(tiny_model):
    """The README calls ``model.encode(batch)`` with autograd on (Python's default): 0-255 crops and
    NaN codes are refused there as under no_grad, and the errors are VoxfaceErrors as well as the
    ValueError / TypeError Python code expects. Only a training step (train mode, autograd) skips
    the value check; the gradients of a latent optimisation still flow."""
    from voxface.errors import InputError, InputTypeError, VoxfaceError

    s, n_id, n_exp = tiny_model.image_size, tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    x = torch.rand(2, 3, s, s)
    assert torch.is_grad_enabled()
    with pytest.raises(InputError, match="divide 0-255 values by 255") as e:
        tiny_model.encode(x * 255)
    assert isinstance(e.value, (ValueError, VoxfaceError))
    with pytest.raises(InputError, match="z_id holds NaN"):
        tiny_model.decode(torch.full((1, n_id), float("nan")), torch.zeros(1, n_exp))
    for bad in (np.zeros((1, n_id), complex), torch.zeros(1, n_id, dtype=torch.bool)):
        with pytest.raises(InputTypeError, match="z_id must hold real numbers"):
            tiny_model.decode(bad, torch.zeros(1, n_exp))
    z = torch.zeros(1, n_id, requires_grad=True)
    tiny_model.decode(z, torch.zeros(1, n_exp)).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    tiny_model.train()
    try:  # a training step reads the values as they are: the loop's own divergence check reports NaN
        assert tiny_model.encode(x * 255).z_id.shape == (2, tiny_model.config.encoder.z_id)
    finally:
        tiny_model.eval()


def test_empty_batches_give_empty_outputs(tiny_model):
    n_id, n_exp, r = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp, tiny_model.config.decoder.resolution
    assert tiny_model.decode(torch.zeros(0, n_id), torch.zeros(0, n_exp)).shape == (0, 1, r, r, r)
    with torch.no_grad():
        logits, lat = tiny_model(torch.zeros(0, 3, tiny_model.image_size, tiny_model.image_size))
    assert logits.shape == (0, 1, r, r, r) and len(lat) == 0
    # float32 as a batch's logits (an empty batch of a bfloat16 model gave bfloat16), float64 kept
    import copy

    z0 = (torch.zeros(0, n_id), torch.zeros(0, n_exp))
    assert copy.deepcopy(tiny_model).to(torch.bfloat16).decode(*z0).dtype == torch.float32
    assert copy.deepcopy(tiny_model).double().decode(*z0).dtype == torch.float64



def test_nonfinite_names_the_broken_faces_and_none_of_an_empty_batch(tiny_model):
    """``Latents.nonfinite()`` of an empty batch (what encoding no crop gives) was a RuntimeError
    ('cannot reshape tensor of 0 elements into shape [0, -1]'): an empty batch has no broken face."""
    with torch.no_grad():
        lat = tiny_model.encode(torch.rand(3, 3, tiny_model.image_size, tiny_model.image_size))
        empty = tiny_model.encode(torch.zeros(0, 3, tiny_model.image_size, tiny_model.image_size))
    assert lat.nonfinite() == [] and empty.nonfinite() == [] and lat[[]].nonfinite() == []
    lat.pose.scale[2] = float("inf")
    lat.z_exp[0, 1] = float("nan")
    assert lat.nonfinite() == [0, 2]

def test_latents_index_compare_and_copy_like_tensors(tiny_model):
    """Negative-step slices, index lists and masks select faces; None, strings and floats are refused
    by name; ``==`` is identity (no ambiguous tensor truth value); codes of two batch sizes are
    refused at construction; clone() gives ordinary tensors that can be edited."""
    from voxface.errors import InputError, InputTypeError

    torch.manual_seed(0)
    with torch.inference_mode():
        lat = tiny_model.encode(torch.rand(5, 3, tiny_model.image_size, tiny_model.image_size))
    rev = lat[::-1]
    assert torch.equal(rev.z_id, lat.z_id.flip(0)) and torch.equal(rev.pose.rotation, lat.pose.rotation.flip(0))
    assert torch.equal(lat[::-2].z_exp, lat.z_exp[[4, 2, 0]])
    assert torch.equal(lat[[3, 1]].z_id, lat.z_id[[3, 1]])
    assert torch.equal(lat[np.array([True, False, True, False, False])].z_id, lat.z_id[[0, 2]])
    for bad in (None, "a", 1.5, [0.5]):
        with pytest.raises(InputTypeError, match="index Latents"):
            lat[bad]
    assert lat == lat and lat != lat[:]
    assert lat not in [lat[:1]]
    with pytest.raises(InputError, match=r"same B, got \(2, \d+\) and \(3, \d+\)"):
        type(lat)(lat.z_id[:2], lat.z_exp[:3])
    copy = lat.clone()
    copy.z_id[0, 0] += 1  # an inference tensor would refuse this
    assert not torch.equal(copy.z_id, lat.z_id) and torch.equal(copy.cpu().detach().z_exp, lat.z_exp)


def test_create_model_takes_a_yaml_path_or_a_whole_config(tiny_yaml, tiny_config):
    from voxface import create_model, load_yaml
    from voxface.config import to_dict

    want = to_dict(create_model(tiny_config).config)
    assert to_dict(create_model(tiny_yaml).config) == want
    assert to_dict(create_model(str(tiny_yaml)).config) == want
    assert to_dict(create_model(load_yaml(tiny_yaml)).config) == want
    with pytest.raises(ConfigError, match="a model config is a ModelConfig, a dict .* not int"):
        create_model(3)
    with pytest.raises(ConfigError, match="config file not found"):
        create_model("no-such.yaml")
    # a YAML file without a model: section is refused, not read as the default model
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        bare = Path(d) / "bare.yaml"
        bare.write_text("encoder:\n  z_id: 16\n")
        with pytest.raises(ConfigError, match="has no model: section"):
            create_model(bare)


@pytest.mark.parametrize("kwargs, words", [({"threshold": 2}, "threshold is an occupancy probability"),
                                           ({"smooth": -1}, "smooth must be >= 0"),
                                           ({"decimate": 2}, "decimate must be a face count"),
                                           ({"threshold": None}, "threshold must be a number"),
                                           ({"smooth": 0.7}, "smooth must be a whole number"),
                                           ({"decimate": 4.9}, "decimate must be a whole number")])
def test_reconstruct_refuses_mesh_options_before_any_work(tiny_model, tmp_path, kwargs, words):
    """A bad meshing option fails before the photo is read (here: a photo that does not exist), not
    after detection, encoding and decoding; the batch API likewise before any input."""
    from voxface.errors import VoxfaceError
    from voxface.reconstruct import reconstruct_files

    with pytest.raises(VoxfaceError, match=words):
        tiny_model.reconstruct(tmp_path / "missing.png", **kwargs)
    with pytest.raises(VoxfaceError, match=words):
        reconstruct_files(tiny_model, [tmp_path / "missing.png"], tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_reconstruction_seconds_total_covers_every_stage(tiny_model):
    """``rec.seconds["total"]`` is the whole reconstruction (it was the mesh extraction's own total,
    which the merge let overwrite it)."""
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    sec = tiny_model.reconstruct(img, detect=False).seconds
    parts = sec["load_detect_crop"] + sec["encode"] + sec["decode"] + sec["mesh"]
    assert sec["total"] == pytest.approx(parts) and sec["total"] > sec["mesh"] >= sec["marching_cubes"] > 0


@pytest.mark.parametrize("decoder", ["deform", "conv3d"])
def test_a_model_cast_to_float64_decodes_in_float64_and_passes_gradcheck(tiny_config, decoder):
    """``model.double()`` (what torch.autograd.gradcheck needs) decodes: the deform decoder mixed its
    float64 cell-centre buffer with float32 fields and template ('expected scalar type Float but
    found Double'). Its logits, and logits_at, are float64 and agree with the float32 model's."""
    torch.manual_seed(0)
    m = create_model(dict(tiny_config, decoder={**tiny_config["decoder"], "name": decoder})).eval()
    if decoder == "deform":  # a non-trivial template and output layer (both start at zero)
        with torch.no_grad():
            m.decoder.template.normal_()
            m.decoder.out.weight.normal_(0, 0.05)
    z_id, z_exp = torch.randn(2, 16), torch.rand(2, 8)
    with torch.no_grad():
        ref = m.decode(z_id, z_exp)
    m = m.double()
    with torch.no_grad():
        logits = m.decode(z_id.double(), z_exp.double())
    assert logits.dtype == torch.float64 and logits.shape == ref.shape
    assert torch.allclose(logits.float(), ref, atol=1e-4)
    z = z_id[:1].double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: m.decode(z, z_exp[:1].double())[..., 14:16, 14:16, 14:16], (z,),
                                    eps=1e-6, atol=1e-5)
    if decoder == "deform":
        pts = torch.rand(1, 5, 3, dtype=torch.float64) * 2 - 1
        with torch.no_grad():
            at = m.decoder.logits_at(m.decoder.features(torch.cat([z, z_exp[:1].double()], 1)), pts)
        assert at.dtype == torch.float64 and at.shape == (1, 5)


def test_a_model_cast_to_float64_encodes_its_pose_in_float64(tiny_model):
    """``model.double()`` gave float64 codes but a float32 pose (the raw pose was cast down before
    decoding it), so gradcheck of anything through the pose failed on rounding alone. The pose now
    keeps float64, agrees with the float32 model's, and passes gradcheck through the whole encoder."""
    import copy

    torch.manual_seed(0)
    img = torch.rand(1, 3, tiny_model.image_size, tiny_model.image_size) * 0.8
    with torch.no_grad():
        ref = tiny_model.encode(img)
        m = copy.deepcopy(tiny_model).double()
        m.encoder.head_pose.weight.normal_(0, 0.05)  # a pose that depends on the crop (the head starts at zero)
        lat = m.encode(img.double())
    assert lat.z_id.dtype == lat.pose.rotation.dtype == lat.pose.scale.dtype == torch.float64
    assert lat.pose.translation.dtype == torch.float64
    assert torch.allclose(m.float().encode(img).z_id, ref.z_id, atol=1e-5)
    m.double()
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    pose = lambda a: (lambda p: (p.rotation, p.scale, p.translation))(m.encode(img.double() * a).pose)  # noqa: E731
    assert torch.autograd.gradcheck(pose, (a,), eps=1e-6, atol=1e-5)


def test_codes_that_are_no_arrays_and_an_empty_index_list(tiny_model):
    """decode(None, ...) and decode("abc", ...) are InputTypeErrors naming the code (torch's
    'Could not infer dtype of NoneType' RuntimeError and 'new(): invalid data type' before), and
    ``lat[[]]`` selects no face as ``lat[np.array([], int)]`` does (it was refused as a float index)."""
    from voxface.errors import InputTypeError

    n_id, n_exp = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    for bad in (None, "abc", object()):
        with pytest.raises(InputTypeError, match=rf"z_exp must be a tensor or an array of numbers \(B, {n_exp}\)"):
            tiny_model.decode(torch.zeros(1, n_id), bad)
    with torch.no_grad():
        lat = tiny_model.encode(torch.rand(3, 3, tiny_model.image_size, tiny_model.image_size))
    for empty in ([], (), np.array([], np.int64)):
        sel = lat[empty]
        assert len(sel) == 0 and sel.z_id.shape == (0, n_id) and sel.pose.rotation.shape == (0, 3, 3)


def test_latents_from_numpy_round_trips_and_names_a_missing_array(tiny_model):
    """``Latents.from_numpy(lat.numpy())`` gives the same codes and pose (one face's vectors too);
    a dict without ``z_exp`` or with half a pose is an InputError naming the array (was a KeyError)."""
    from voxface import Latents
    from voxface.errors import InputError

    with torch.no_grad():
        lat = tiny_model.encode(torch.rand(2, 3, tiny_model.image_size, tiny_model.image_size))
    back = Latents.from_numpy(lat.numpy())
    assert torch.equal(back.z_id, lat.z_id) and torch.equal(back.pose.rotation, lat.pose.rotation)
    one = Latents.from_numpy({k: v[0] for k, v in lat.numpy().items()})
    assert len(one) == 1 and torch.equal(one.pose.scale, lat.pose.scale[:1])
    arrays = lat.numpy()
    for drop in ("z_exp", "pose_scale"):
        with pytest.raises(InputError, match=f"no {drop} among the arrays"):
            Latents.from_numpy({k: v for k, v in arrays.items() if k != drop})



def test_codes_of_an_autocast_encode_turn_into_numpy(tiny_model):
    """Under ``torch.autocast`` (bfloat16) the encoder gives bfloat16 codes: ``Latents.numpy()`` was
    numpy's 'Got unsupported ScalarType BFloat16' TypeError; they come out as float32."""
    from voxface import Latents

    img = torch.rand(2, 3, tiny_model.image_size, tiny_model.image_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        lat = tiny_model.encode(img)
    assert lat.z_id.dtype == torch.bfloat16
    arrays = lat.numpy()
    assert arrays["z_id"].dtype == np.float32 and arrays["z_exp"].shape == (2, tiny_model.config.encoder.z_exp)
    np.testing.assert_array_equal(arrays["z_id"], lat.z_id.float().numpy())
    assert torch.equal(Latents.from_numpy(arrays).z_exp, lat.z_exp.float())

def test_logits_are_float32_under_autocast_and_in_a_bfloat16_model(tiny_model):
    """The conv3d decoder returned bfloat16 logits under ``torch.autocast`` and in a model cast to
    bfloat16, where :class:`VoxFace` promises float32 (the deform decoder already cast them)."""
    import copy

    z_id = torch.randn(2, tiny_model.config.encoder.z_id)
    z_exp = torch.randn(2, tiny_model.config.encoder.z_exp)
    with torch.no_grad():
        ref = tiny_model.decode(z_id, z_exp)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = tiny_model.decode(z_id, z_exp)
        half = copy.deepcopy(tiny_model).to(torch.bfloat16).decode(z_id, z_exp)
    assert ref.dtype == auto.dtype == half.dtype == torch.float32
    assert (auto - ref).abs().max() < 0.25 and (half - ref).abs().max() < 0.25  # bfloat16 has 8 bits
    assert copy.deepcopy(tiny_model).double().decode(z_id, z_exp).dtype == torch.float64


def test_create_model_of_a_yaml_file_names_the_file_and_key(tmp_path) -> None:
    """``create_model("my.yaml")`` said 'unknown decoder 'bar'' naming neither the key nor the file,
    and the parts' own checks (widths that do not fit) did not name the file either."""
    from voxface.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  decoder:\n    name: bar\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: model.decoder.name: unknown decoder 'bar'; known: "):
        create_model(bad)
    bad.write_text("model:\n  encoder:\n    name: vit\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: model.encoder.name: unknown encoder 'vit'; known: "):
        create_model(str(bad))
    bad.write_text("model:\n  decoder:\n    widths: [32]\n")
    with pytest.raises(ConfigError, match=rf"^{bad}: model: decoder.widths needs 4 entries"):
        create_model(bad)
    with pytest.raises(ConfigError, match=r"^model.decoder.name: unknown decoder 'bar'"):  # a dict: no file
        create_model({"decoder": {"name": "bar"}})


def test_latents_of_arrays_are_tensors_and_of_anything_else_a_type_error(tiny_model):
    """``Latents(np_z_id, np_z_exp)`` was accepted as numpy arrays, and then ``.to()``, ``.clone()`` and
    ``nonfinite()`` failed with AttributeError/TypeError tracebacks; lists and None failed with
    "'list' object has no attribute 'shape'"."""
    from voxface import Latents
    from voxface.errors import InputTypeError

    n_id, n_exp = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    z_id, z_exp = np.random.default_rng(0).normal(size=(2, n_id)), [[0.5] * n_exp] * 2
    lat = Latents(z_id, z_exp)
    assert lat.z_id.dtype == lat.z_exp.dtype == torch.float32 and len(lat.clone().to("cpu")) == 2
    assert torch.allclose(lat.z_id, torch.from_numpy(z_id).float()) and lat.nonfinite() == []
    with torch.no_grad():
        assert torch.equal(tiny_model.decode(lat.z_id, lat.z_exp), tiny_model.decode(z_id, z_exp))
    for bad, words in ((None, "Latents.z_id must be a tensor or an array of numbers (B, D), got NoneType"),
                       ("codes", "got str"), ([[1.0], [1.0, 2.0]], "got list")):
        with pytest.raises(InputTypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
            Latents(bad, z_exp)
    with pytest.raises(InputTypeError, match="Latents.pose must be a Pose or None, got tuple"):
        Latents(z_id, z_exp, pose=(1, 2, 3))


def test_codes_of_one_face_beside_a_batch_say_how_to_repeat_them(tiny_model):
    """decode(z_id (1, D), z_exp (4, D)) (one person, several expressions) said only 'with the same B',
    and one face's 1-D codes only that they must be (B, D): the message now names the fix, and the
    fix it names decodes each expression on that identity."""
    from voxface.errors import InputError

    n_id, n_exp = tiny_model.config.encoder.z_id, tiny_model.config.encoder.z_exp
    z_id, z_exp = torch.randn(1, n_id), torch.rand(4, n_exp)
    with pytest.raises(InputError, match=r"\(1, \d+\) and \(4, \d+\) \(one z_id for every face: "
                                         r"z_id.expand\(len\(z_exp\), -1\)\)$"):
        tiny_model.decode(z_id, z_exp)
    with pytest.raises(InputError, match=r"\(one z_exp for every face: z_exp.expand\(len\(z_id\), -1\)\)$"):
        tiny_model.decode(z_id.expand(3, -1), z_exp[:1])
    with pytest.raises(InputError, match=r"\(one face's codes: z_id\[None\], z_exp\[None\]\)$"):
        tiny_model.decode(z_id[0], z_exp[0])
    with pytest.raises(InputError, match=r"same B, got \(2, \d+\) and \(3, \d+\)$"):  # no hint fits
        tiny_model.decode(z_id.expand(2, -1), z_exp[:3])
    with torch.no_grad():
        out = tiny_model.decode(z_id.expand(len(z_exp), -1), z_exp)
        assert torch.allclose(out[2:3], tiny_model.decode(z_id, z_exp[2:3]), atol=1e-5)


def test_a_bicubic_resize_of_a_crop_is_encoded_and_normalised_crops_are_refused_by_name(tiny_model):
    """A crop resized with F.interpolate(mode="bicubic") overshoots [0, 1] (the bundled photo at the
    model's crop size: about -0.06..1.06), and encode refused it ('values in [0, 1], got values in
    [-0.06065, 1.063]'): the check was there for 0-255 values and NaN. Overshoot is now taken as it
    is; 0-255 values, normalised crops and NaN are still refused, each with its hint."""
    import torch.nn.functional as F
    from skimage import data

    from voxface.errors import InputError

    s = tiny_model.image_size
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    crop = F.interpolate(photo, size=(s, s), mode="bicubic", align_corners=False)
    assert crop.min() < -0.01 and crop.max() > 1.01  # the overshoot this is about
    with torch.no_grad():
        got, clamped = tiny_model.encode(crop), tiny_model.encode(crop.clamp(0, 1))
    assert torch.allclose(got.z_id, clamped.z_id, atol=0.1) and got.nonfinite() == []
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for bad, hint in (((crop.clamp(0, 1) - mean) / std, "give the crops before normalising"),
                      (crop.clamp(0, 1) * 2 - 1, "give the crops before normalising"),
                      (crop.clamp(0, 1) * 255, "divide 0-255 values by 255"), (crop + 0.25, r"1\.\d+\]$")):
        with torch.no_grad(), pytest.raises(InputError, match=hint):
            tiny_model.encode(bad)


def test_train_mode_changes_only_the_dropout(tiny_config):
    """The class docstring's promise: no BatchNorm anywhere (batch statistics would make train() and a
    batch of one give other values), so train() and eval() agree without dropout, and differ with it."""
    torch.manual_seed(0)
    m = create_model(tiny_config)
    assert not any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) for mod in m.modules())
    x = torch.rand(1, 3, m.image_size, m.image_size)
    with torch.no_grad():
        ev = m.eval()(x)[0]
        tr = m.train()(x)[0]
    assert torch.equal(ev, tr)
    torch.manual_seed(0)
    d = create_model(dict(tiny_config, encoder={**tiny_config["encoder"], "dropout": 0.5}))
    with torch.no_grad():
        assert torch.equal(d.eval().encode(x).z_id, d.eval().encode(x).z_id)
        assert not torch.equal(d.train().encode(x).z_id, d.eval().encode(x).z_id)
