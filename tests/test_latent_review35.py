"""Review 35 of the latent toolkit (voxface.latent, voxface.cli._latent, voxface.html): regressions."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bundled():
    from voxface import load_model

    return load_model(None, device="cpu")


def test_a_photos_codes_are_reconstructs_codes_bit_for_bit(bundled):
    """``encode_photo`` (every latent tool reading a photo) laid the crop out as a ``(3, S, S)`` view
    with a batch axis added, ``reconstruct`` as a stacked ``(1, S, S, 3)`` permuted: the encoder's
    float kernels follow the strides, and the codes differed by ~5e-7, so the mesh of
    ``as_latents(photo)`` (``voxface interpolate photo ...``'s step_00, ``transfer``'s target.ply)
    was 0.3 um off ``reconstruct``'s of the same photo. The batch is laid out as reconstruct's."""
    import torch
    from skimage import data

    from voxface.latent import as_latents, decode, interpolate

    img = data.astronaut()
    rec = bundled.reconstruct(img)
    lat = as_latents(bundled, img)
    assert torch.equal(lat.z_id, rec.latents.z_id) and torch.equal(lat.z_exp, rec.latents.z_exp)
    for f in ("rotation", "scale", "translation"):
        assert torch.equal(getattr(lat.pose, f), getattr(rec.latents.pose, f))
    assert torch.equal(interpolate(bundled, img, img, 2).z_id[0], rec.latents.z_id[0])
    assert np.array_equal(decode(bundled, lat)[0].mesh.vertices, rec.mesh.vertices)
