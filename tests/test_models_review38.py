"""Session 38 review of the network and its losses (voxface/models, losses, augment)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from voxface.models import create_model
from voxface.models.decoder import upsample2x_trilinear


def test_the_cpu_upsampling_runs_under_vmap_and_forward_mode_ad():
    # the CPU fast path writes with lerp(out=...), which has no vmap batching rule and no forward-AD
    # formula: torch.func.vmap of the shipped (shuffle 4) deform decoder raised 'Batching rule not
    # implemented for aten::lerp.Scalar_out', jacfwd 'forward AD with lerp_out'
    torch.manual_seed(0)
    x = torch.randn(3, 2, 2, 4, 4, 4)
    ref = F.interpolate(x.flatten(0, 1), scale_factor=2, mode="trilinear", align_corners=False)
    with torch.no_grad():
        y = torch.func.vmap(upsample2x_trilinear)(x)
    torch.testing.assert_close(y.flatten(0, 1), ref)
    jac = torch.func.jacfwd(upsample2x_trilinear)(x[0, :1])
    torch.testing.assert_close(jac.sum((-1, -2, -3, -4, -5)), torch.ones(1, 2, 8, 8, 8), atol=1e-5, rtol=0)
    # the plain call keeps its fast path's values
    torch.testing.assert_close(upsample2x_trilinear(x[0]), ref[:2])


def test_vmap_of_a_deform_decoder_that_upsamples_its_fields_gives_its_batch(tiny_config):
    cfg = copy.deepcopy(tiny_config)
    cfg["decoder"] = {"name": "deform", "resolution": 32, "shuffle": 4, "base_resolution": 4, "widths": [16, 8]}
    torch.manual_seed(0)
    dec = create_model(cfg).eval().decoder
    torch.nn.init.normal_(dec.out.weight, std=0.05)
    torch.nn.init.normal_(dec.template)
    z = torch.randn(3, 1, 24)
    with torch.no_grad():
        y = torch.func.vmap(dec)(z)
        ref = dec(z[:, 0])
    torch.testing.assert_close(y[:, 0], ref, atol=1e-5, rtol=1e-5)
