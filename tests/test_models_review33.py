"""Review 33 (networks and maths): regression tests for the defects fixed in this round."""

from __future__ import annotations

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
