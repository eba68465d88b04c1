"""Review 39, configs and conventions: an empty batch's losses, typos and out-of-range values in a
YAML config, a config that is no mapping, Euler angles of a non-number or a mirrored pose, integer
rotation matrices, and a generator of meshes given to PyTorch3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from voxface.config import model_config
from voxface.errors import ConfigError, InputError, InputTypeError
from voxface.frame import FRONTAL_ROTATION, euler_angles, euler_matrix
from voxface.interop import to_pytorch3d
from voxface.losses import LossConfig, compute_losses
from voxface.rotation import geodesic_degrees

from .conftest import run_cli
from .test_interop import fake_pytorch3d  # noqa: F401 - the stand-in pytorch3d.structures.Meshes


def _outputs_and_batch(b: int, r: int = 8) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    eye = torch.eye(3).expand(b, 3, 3)
    out = {"logits": torch.randn(b, 1, r, r, r, generator=g, requires_grad=True),
           "z_id": torch.randn(b, 4, generator=g, requires_grad=True), "z_exp": torch.randn(b, 3, generator=g),
           "rotation": eye, "scale": torch.ones(b), "translation": torch.zeros(b, 2)}
    batch = {"occ": (torch.rand(b, r, r, r, generator=g) > 0.5).to(torch.uint8), "rotation": eye,
             "scale": torch.ones(b), "translation": torch.zeros(b, 2)}
    return out, batch


def test_compute_losses_refuses_an_empty_batch_it_turned_into_nan():
    """B = 0 gave NaN in occupancy, pose, prior, id_consistency, iou and total (each a mean over no
    sample), and a NaN gradient; it is one line now. A batch of 4 is as before: finite, with grad."""
    out, batch = _outputs_and_batch(0)
    with pytest.raises(InputError) as e:
        compute_losses(out, batch, LossConfig())
    assert str(e.value) == ("compute_losses: the batch is empty (B = 0); every loss term is a mean over the "
                            "batch's samples, undefined (NaN) without one")
    total, terms = compute_losses(*_outputs_and_batch(4), LossConfig())
    assert total.requires_grad and math.isfinite(total.item())
    assert all(math.isfinite(v) for v in terms.values()) and {"occupancy", "pose", "prior", "iou"} <= set(terms)


@pytest.mark.parametrize("text, message", [
    # a typo names the key it likely means, after the known ones (a number key is not guessed at)
    ("model:\n  encoder:\n    z_idd: 8\n    7: 1\n",
     "model.encoder: unknown key(s) [7, 'z_idd']; known: ['blocks', 'dropout', 'image_size', 'name', 'readout', "
     "'readout_channels', 'widths', 'z_exp', 'z_id']; did you mean 'z_id' for 'z_idd'?"),
    ("model:\n  decoder:\n    nmae: deform\n", "model.decoder: unknown key(s) ['nmae']; known: ['base_resolution', "
     "'name', 'res_blocks', 'resolution', 'shuffle', 'template_resolution', 'widths']; did you mean 'name' for "
     "'nmae'?"),
    ("model:\n  frame:\n    zoom: 2\n", "model.frame: unknown key(s) ['zoom']; known: ['center_mm', 'side_mm']"),
    # an integer past float's range was an OverflowError traceback
    ("model:\n  frame:\n    side_mm: " + "9" * 400 + "\n",
     "model.frame.side_mm: expected a number, got an integer of 400 digits, beyond a float's range (about 1.8e308)"),
    # not a mapping: said so, without saying what it was
    ("- model\n- train\n", "a config must be a mapping at the top level (model:, data:, train:), not a list"),
    ("configs/voxface-64.yaml\n",
     "a config must be a mapping at the top level (model:, data:, train:), not a str"),
])
def test_config_typos_are_suggested_and_bad_values_are_one_line(tmp_path, monkeypatch, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        model_config(path)
    assert str(e.value) == f"{path}: {message}" and e.value.path == str(path)
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", path, "-o", tmp_path / "run", "--dry-run")
    assert code != 0 and err == f"error: {path}: {message}\n" and "Traceback" not in out + err
    assert path.read_text(encoding="utf-8") == text and not (tmp_path / "run").exists()


def test_a_typo_in_the_train_section_names_the_key_it_likely_means(tmp_path):
    from voxface.train import resolve_config

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  total_step: 5\n  lrr: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        resolve_config(path)
    assert str(e.value).startswith(f"{path}: train: unknown key(s) ['lrr', 'total_step']; known: ['amp',")
    assert str(e.value).endswith("; did you mean 'lr' for 'lrr', 'total_steps' for 'total_step'?")


@pytest.mark.parametrize("angles, error, message", [
    (("30", 0, 0), InputTypeError, "euler_matrix: yaw (degrees) must be a real number, got str '30'"),
    ((0, None, 0), InputTypeError, "euler_matrix: pitch (degrees) must be a real number, got NoneType None"),
    ((0, 0, float("nan")), InputError, "euler_matrix: roll (degrees) must be finite, got nan"),
])
def test_euler_matrix_refuses_what_is_no_angle(angles, error, message):
    """A string was NumPy's "ufunc 'radians' not supported" and NaN a matrix of NaN, silently."""
    with pytest.raises(error) as e:
        euler_matrix(*angles)
    assert str(e.value) == message


def test_euler_matrix_takes_numbers_of_any_kind_as_before():
    want = euler_matrix(30.0, -10.0, 5.0)
    assert want.dtype == np.float64 and want.shape == (3, 3)
    for angles in ((30, -10, 5), (np.float32(30), np.int64(-10), 5.0), (torch.tensor(30.0), -10.0, torch.tensor(5))):
        np.testing.assert_allclose(euler_matrix(*angles), want, atol=1e-6)
    assert euler_angles(want) == pytest.approx((30.0, -10.0, 5.0), abs=1e-9)


def test_euler_angles_refuses_a_mirrored_pose_it_read_as_another_head_pose():
    """A rotation mirrored along one axis (determinant -1) read as a plausible pose: x mirrored,
    yaw 30, pitch 10, roll 5 came back as (-30, 10, 5), the mirror of neither the yaw nor the roll."""
    mirrored = np.diag([-1.0, 1.0, 1.0]) @ FRONTAL_ROTATION @ euler_matrix(30, 10, 5)
    for frame in ("auto", "camera", "canonical"):
        with pytest.raises(InputError) as e:
            euler_angles(mirrored, frame=frame)
        assert str(e.value) == ("euler_angles: the matrix is a reflection, not a rotation (determinant -1; a "
                                "rotation's is +1): one of its axes is mirrored")
    with pytest.raises(InputError, match="reflection"):
        euler_angles(torch.tensor(mirrored, dtype=torch.float32))
    # a proper rotation in either frame, a NaN pose (a diverged encoder's: Reconstruction's repr shows it) as before
    assert euler_angles(FRONTAL_ROTATION @ euler_matrix(30, 10, 5)) == pytest.approx((30, 10, 5), abs=1e-9)
    assert all(math.isnan(a) for a in euler_angles(np.full((3, 3), np.nan)))


def test_geodesic_degrees_of_integer_matrices():
    """``torch.tensor(np.diag([1, -1, -1]))`` is int64: two of them were vector_norm's RuntimeError."""
    frontal = torch.tensor(np.diag([1, -1, -1]))
    assert frontal.dtype == torch.int64
    got = geodesic_degrees(frontal, torch.eye(3, dtype=torch.int64))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(180.0)
    assert geodesic_degrees(frontal, frontal).item() == 0.0
    mixed = geodesic_degrees(frontal, torch.tensor(FRONTAL_ROTATION @ euler_matrix(0, 0, 30)))
    assert mixed.dtype == torch.float64 and mixed.item() == pytest.approx(30.0)


def test_to_pytorch3d_takes_a_generator_of_meshes(fake_pytorch3d):  # noqa: F811
    """``to_pytorch3d(m for m in meshes)`` was "expected a mesh ..., got generator": only a list or a
    tuple was read as several meshes. Winding and dtypes are kept as for a list."""
    small, big = trimesh.creation.box((10.0, 20.0, 30.0)), trimesh.creation.icosphere(1, 50.0)
    got = to_pytorch3d(m for m in (small, big))
    assert [len(v) for v in got.verts_list()] == [8, len(big.vertices)]
    assert [v.dtype for v in got.verts_list()] == [torch.float32] * 2
    for mesh, faces in zip((small, big), got.faces_list()):
        assert faces.dtype == torch.int64 and torch.equal(faces, torch.as_tensor(mesh.faces))
    one = to_pytorch3d(iter([small]))
    assert len(one.verts_list()) == 1 and len(to_pytorch3d((small.vertices, small.faces)).verts_list()) == 1


def test_a_model_key_left_out_of_its_section_by_its_indent_is_refused_not_dropped(tmp_path):
    """``encoder:`` at the top of a file beside ``model:`` (its indent lost) was dropped without a word by
    model_config / create_model, which read model: alone: the model was built with the default encoder
    (z_id 128, not 8), while ``voxface train`` refused the same file. Refused now, naming the file that
    holds it."""
    from voxface.models import create_model

    bad = tmp_path / "indent.yaml"
    bad.write_text("model:\n  decoder:\n    name: deform\nencoder:\n  z_id: 8\n", encoding="utf-8")
    said = "encoder: is a key of the model: section, found at the top level of the config: indent it under model:"
    for call in (model_config, create_model):
        with pytest.raises(ConfigError) as e:
            call(bad)
        assert str(e.value) == f"{bad}: {said}" and e.value.path == str(bad)
    (tmp_path / "child.yaml").write_text("inherit_from: indent.yaml\ntrain:\n  lr: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        model_config(tmp_path / "child.yaml")
    assert str(e.value) == f"{bad}: {said} (inherited by {tmp_path / 'child.yaml'})" and e.value.path == str(bad)
    with pytest.raises(ConfigError) as e:  # a dict: its own keys name no file
        model_config({"model": {"decoder": {"name": "deform"}}, "frame": {"side_mm": 300.0}, "decoder": {}})
    assert str(e.value) == ("decoder:, frame: are keys of the model: section, found at the top level of the config: "
                            "indent them under model:") and e.value.path is None
    # whole configs with model:, data: and train: as before (other top-level keys too: YAML anchors' holders)
    good = tmp_path / "good.yaml"
    good.write_text("sizes: &s {z_id: 8}\nmodel:\n  encoder: *s\ndata:\n  kind: toy\ntrain:\n  lr: 0.1\n",
                    encoding="utf-8")
    assert model_config(good).encoder.z_id == 8
    assert model_config({"inherit_from": str(good), "train": {"lr": 0.2}}).encoder.z_id == 8


def test_geodesic_degrees_takes_the_numpy_rotations_voxface_hands_out():
    """``geodesic_degrees(euler_matrix(...), FRONTAL_ROTATION @ ...)``: voxface's own rotations are NumPy
    arrays, and ``promote_types`` refused their dtype (a TypeError traceback)."""
    got = geodesic_degrees(euler_matrix(0, 0, 0), euler_matrix(30, 0, 0))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and got.item() == pytest.approx(30.0)
    mixed = geodesic_degrees(FRONTAL_ROTATION, torch.eye(3))
    assert mixed.dtype == torch.float64 and mixed.item() == pytest.approx(180.0)
    pose = torch.eye(3, requires_grad=True)  # a tensor stays itself: its gradient flows
    assert geodesic_degrees(pose, torch.eye(3)).requires_grad
