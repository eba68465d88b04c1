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
