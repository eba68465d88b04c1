"""Review 37: network and geometric conventions (models, rotation, frame, interop, occupancy)."""

from __future__ import annotations

import pytest
import torch


def test_the_model_exports_with_torch_export_and_a_dynamic_batch(tiny_model):
    """torch.export.export(model, (crops,)) failed: forward's Latents was 'not a known type' in the
    output, and the wrappers a user writes around encode / decode failed too, as the value checks read
    the data ('Could not guard on data-dependent expression') and len() of the batch (the CPU encode's
    chunking, Latents' pose check) fixed a dynamic batch at the example's ('Constraints violated (B)').
    The exported graph runs any batch, the CPU's chunked one (> CPU_ENCODE_CHUNK crops) included, as
    eager mode does; like an ONNX export it holds no value check."""
    import torch.utils._pytree as pytree

    from voxface.models import Latents
    from voxface.models.voxface import CPU_ENCODE_CHUNK

    s = tiny_model.image_size
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.manual_seed(1)
    with torch.no_grad():
        ep = torch.export.export(tiny_model, (torch.rand(2, 3, s, s),), dynamic_shapes=({0: batch},))
        crops = torch.rand(CPU_ENCODE_CHUNK + 1, 3, s, s)
        logits, lat = ep.module()(crops)
        ref, ref_lat = tiny_model(crops)
    assert isinstance(lat, Latents) and logits.shape == ref.shape
    torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)
    for got, want in zip(pytree.tree_leaves(lat), pytree.tree_leaves(ref_lat)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert len(pytree.tree_leaves(ref_lat)) == 5  # z_id, z_exp and the pose's three tensors
    # eager mode still refuses what it refused
    with pytest.raises(ValueError, match="divide 0-255 values by 255"):
        tiny_model.encode(crops * 255)


@pytest.mark.parametrize("angles", [(0.0, 0.0, 100.0), (20.0, 10.0, 135.0), (10.0, -30.0, 180.0), (30.0, 90.0, 20.0),
                                    (-40.0, -90.0, -10.0), (15.0, 20.0, -5.0)])
def test_euler_angles_of_a_head_beyond_90_degrees_of_upright_in_the_frame_it_is_named(angles):
    """euler_angles told a canonical rotation from a camera-frame pose by the sign of its [1, 1] entry
    alone, cos(pitch) cos(roll), so a head upside down or on its side (roll past 90: a canonical roll
    of 100 came back as yaw 180, roll -80, a head facing away) and one at pitch 90 with a float32 pose's
    rounding (the sign of ~1e-15) were read in the other frame, 180 degrees off, and a caller could not
    say which frame it gave. frame='canonical' / 'camera' say it; 'auto' (the default) is as before."""
    import numpy as np

    from voxface.errors import InputError
    from voxface.frame import FRONTAL_ROTATION, euler_angles, euler_matrix
    from voxface.rotation import geodesic_degrees, matrix_to_rot6d, rot6d_to_matrix

    for frame, front in (("canonical", np.eye(3)), ("camera", FRONTAL_ROTATION)):
        given = torch.from_numpy(front @ euler_matrix(*angles)).float()
        given = rot6d_to_matrix(matrix_to_rot6d(given) + torch.tensor([0, 1e-7, 0, 0, 0, -1e-7]))  # as a network's
        got = euler_angles(given, frame=frame)
        rebuilt = torch.from_numpy(front @ euler_matrix(*got))
        assert geodesic_degrees(rebuilt, given.double()).item() < 1e-3, (frame, got)
        if angles in ((0.0, 0.0, 100.0), (20.0, 10.0, 135.0)):
            assert got == pytest.approx(angles, abs=1e-3)
    upright = euler_matrix(15.0, 20.0, -5.0)
    for m in (upright, FRONTAL_ROTATION @ upright):  # a head within 90 degrees of upright: auto tells them apart
        assert euler_angles(m) == pytest.approx((15.0, 20.0, -5.0))
    with pytest.raises(InputError, match="frame must be 'auto', 'canonical' or 'camera', got 'opencv'"):
        euler_angles(upright, frame="opencv")
