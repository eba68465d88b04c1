"""Review 35: network and geometry conventions (models, rotation, interop, frame, device)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("pitch", [89.9, 89.99, -89.99, 89.999])
def test_euler_angles_near_gimbal_lock_read_a_float32_pitch_to_its_own_precision(pitch):
    """euler_angles took pitch as arcsin(-R[1, 2]): arcsin's slope is infinite at +-1, so near +-90 the
    float32 rounding of a pose (what the encoder predicts, and what rotation.euler_to_matrix gives) moved
    pitch by up to 0.01 degree (89.99 read 90.0, 89.9 read 89.8991), a thousand times the rotation's own
    error, and the angles no longer rebuilt it. Pitch is now atan2 of its sine and cosine."""
    import torch

    from voxface.frame import FRONTAL_ROTATION, euler_angles, euler_matrix
    from voxface.rotation import euler_to_matrix, geodesic_degrees

    for yaw, roll in ((30.0, 10.0), (-120.0, 45.0), (0.0, 0.0)):
        r32 = euler_to_matrix(yaw, pitch, roll)  # float32
        for given in (r32, torch.from_numpy(FRONTAL_ROTATION).float() @ r32):  # canonical, camera frame
            got = euler_angles(given)
            assert got == pytest.approx((yaw, pitch, roll), abs=2e-4), (given, got)
            rebuilt = torch.from_numpy(euler_matrix(*got))[None]
            assert geodesic_degrees(rebuilt, r32.double()[None]).item() < 1e-4
        # float64 exact to rounding
        assert euler_angles(euler_matrix(yaw, pitch, roll)) == pytest.approx((yaw, pitch, roll), abs=1e-9)


def test_cuda_on_a_rocm_torch_without_a_gpu_is_not_called_a_cpu_only_build(monkeypatch):
    """resolve_device('cuda') without CUDA said 'this torch is a CPU-only build: install a CUDA one'
    whenever torch.version.cuda was None, which a ROCm build's is too: an AMD user was sent to replace
    the right torch. A ROCm build (torch.version.hip set) is told only that CUDA is not available."""
    import torch

    from voxface.device import resolve_device
    from voxface.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", "6.2.41133", raising=False)
    with pytest.raises(InputError, match=r"^device 'cuda' was asked for but CUDA is not available$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.version, "hip", None)  # the CPU-only build still says so
    with pytest.raises(InputError, match="is a CPU-only build: install a CUDA one"):
        resolve_device("cuda")


def test_an_mps_index_other_than_0_is_refused_in_one_line(monkeypatch):
    """torch.device takes 'mps:1' and resolve_device handed it on as a device this machine has, where
    the CUDA indices are checked against the devices there are: MPS has one device, mps:0."""
    import torch

    from voxface.device import resolve_device
    from voxface.errors import InputError

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps") and resolve_device("mps:0") == torch.device("mps:0")
    with pytest.raises(InputError, match=r"^device 'mps:1': MPS has one device, 'mps' \(or 'mps:0'\)$"):
        resolve_device("mps:1")


@pytest.mark.parametrize("config", ["configs/tiny.yaml", "configs/voxface-64.yaml"])
def test_the_decoders_take_an_empty_batch_as_voxface_decode_does(config):
    """ConvVoxelDecoder.features viewed the first layer's output as (B, -1, b, b, b), which torch cannot
    resolve for B = 0: the decoders (public in voxface.models) failed on no faces ('cannot reshape tensor
    of 0 elements ... -1 ... is ambiguous') where VoxFace.decode gives (0, 1, R, R, R)."""
    import torch

    from voxface.models import create_model

    model = create_model(config).eval()
    dec, r = model.decoder, model.config.decoder.resolution
    z = torch.zeros(0, dec.fc.in_features)
    assert dec.features(z).shape == (0, dec.feature_channels, *dec.features(torch.zeros(1, z.shape[1])).shape[2:])
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            out = dec(z)
        assert out.shape == (0, 1, r, r, r) and out.dtype == torch.float32
    if hasattr(dec, "logits_at"):
        assert dec.logits_at(dec.features(z), torch.zeros(0, 5, 3)).shape == (0, 5)
    with torch.no_grad():  # a batch is as before
        zz = torch.randn(2, z.shape[1])
        assert torch.equal(dec(zz), torch.cat([dec(zz[:1]), dec(zz[1:])])) or torch.allclose(
            dec(zz), torch.cat([dec(zz[:1]), dec(zz[1:])]), atol=1e-5)


def test_the_deform_decoder_exports_with_a_dynamic_batch_under_torch_export():
    """DeformVoxelDecoder.logits_from_features tested ``n <= step`` (its CPU chunking, 4 faces at 64^3)
    before anything else, so under torch.export (and torch.compile) a dynamic batch was specialised:
    export(decoder, (z,), dynamic_shapes=...) failed with 'Constraints violated (b)! ... satisfy the
    generated guard 2 <= b <= 4'. It steps aside there, as upsample2x_trilinear does; the exported
    graph gives the eager logits for a batch below and above the chunk."""
    import torch
    from torch.export import Dim, export

    from voxface.models import create_model

    torch.manual_seed(0)
    dec = create_model("configs/voxface-64.yaml").decoder.eval()
    with torch.no_grad():  # fields that move the template (the output layer starts at zero)
        dec.out.weight.normal_(0, 0.02)
        dec.template.normal_()
    d = dec.fc.in_features
    ep = export(dec, (torch.randn(2, d),), dynamic_shapes={"z": {0: Dim("b", min=2, max=64)}})
    with torch.no_grad():
        for n in (3, 9):
            z = torch.randn(n, d)
            want = dec(z)
            got = ep.module()(z)
            assert got.shape == (n, 1, 64, 64, 64) and want.abs().max() > 0.1
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
