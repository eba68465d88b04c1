"""Review 33 (networks and maths): regression tests for the defects fixed in this round."""

from __future__ import annotations

import pytest
import torch

from voxface.frame import euler_matrix
from voxface.rotation import geodesic_degrees


def test_geodesic_degrees_of_a_float64_pose_against_float32_labels() -> None:
    """A float64 model's poses against the data's float32 labels (``voxface.evaluate``'s pose error
    of a model cast with ``.double()``) were 'RuntimeError: expected scalar type Double but found
    Float'; the two dtypes are promoted to float64."""
    r1 = torch.from_numpy(euler_matrix(20.0, -10.0, 5.0))[None]  # float64
    r2 = torch.from_numpy(euler_matrix(20.0, -10.0, 35.0))[None].float()
    for a, b in ((r1, r2), (r2, r1)):
        angle = geodesic_degrees(a, b)
        assert angle.dtype == torch.float64 and angle.shape == (1,)
        assert abs(float(angle[0]) - 30.0) < 1e-4
    assert geodesic_degrees(r2, r2).dtype == torch.float32  # one dtype: unchanged


def test_the_deform_decoder_traces_under_torch_compile_without_graph_breaks(tiny_config) -> None:
    """The CPU fast path of ``upsample2x_trilinear`` (in-place ``lerp(out=...)`` into strided views)
    was three Dynamo graph breaks in every decode of the shipped decoder kind (fields at half the
    resolution) under ``torch.compile``; it steps aside for ``F.interpolate`` there, as for ONNX export."""
    import torch._dynamo

    from voxface.models import create_model

    tiny_config["decoder"] = {"name": "deform", "resolution": 16, "widths": [8], "shuffle": 4}
    torch.manual_seed(0)
    dec = create_model(tiny_config).eval().decoder
    with torch.no_grad():
        torch.nn.init.normal_(dec.out.weight, std=0.1)  # fields that move the template
        z = torch.randn(2, 24)
        eager = dec(z)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(dec)(z)
    assert explained.graph_break_count == 0, [b.reason.splitlines()[0] for b in explained.break_reasons]
    from voxface.models.decoder import compiling

    assert not compiling()  # eager code keeps its fast path
    with torch.no_grad():
        torch.testing.assert_close(dec(z), eager, rtol=0, atol=0)


def test_a_value_the_parts_refuse_names_the_config_file_that_sets_it(tmp_path, monkeypatch, capsys):
    """A value only the model's parts check (a decoder resolution that is no power-of-two multiple),
    set in a parent config, was blamed on the child: the error named the file the user passed,
    which does not hold the key. The file of the inherit_from chain that sets it is named, through
    the API and through init-checkpoint."""
    from voxface.errors import ConfigError
    from voxface.models import create_model

    from .conftest import run_cli

    (tmp_path / "parent.yaml").write_text("model:\n  decoder:\n    resolution: 48\n")
    child = tmp_path / "child.yaml"
    child.write_text("inherit_from: parent.yaml\n")
    with pytest.raises(ConfigError) as e:
        create_model(child)
    assert str(e.value).startswith(f"{tmp_path / 'parent.yaml'}: model: decoder.resolution 48 must be")
    assert str(e.value).endswith(f"(inherited by {child})")
    code, _, err = run_cli(monkeypatch, capsys, "init-checkpoint", "-c", child, "-o", tmp_path / "x.pth.tar")
    assert code == 1 and "parent.yaml: model: decoder.resolution 48" in err and "Traceback" not in err
    assert not (tmp_path / "x.pth.tar").exists()
    # a key the child sets itself is still the child's
    child.write_text("inherit_from: parent.yaml\nmodel:\n  encoder:\n    readout: bogus\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: model: encoder\.readout 'bogus'"):
        create_model(child)
