"""Voxel decoders: ``(z_id, z_exp)`` to occupancy logits on the canonical grid."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import DecoderConfig


def _norm3(c: int) -> nn.Module:
    return nn.GroupNorm(min(8, c // 4), c)


class ResBlock3d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(c, c, 3, 1, 1, bias=False), _norm3(c), nn.SiLU(inplace=True),
            nn.Conv3d(c, c, 3, 1, 1, bias=False), _norm3(c),
        )
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


def pixel_shuffle_3d(x: torch.Tensor, r: int) -> torch.Tensor:
    """``(B, C*r^3, D, H, W)`` to ``(B, C, D*r, H*r, W*r)`` (the 3D analogue of PixelShuffle)."""
    b, c, d, h, w = x.shape
    c_out = c // (r**3)
    x = x.view(b, c_out, r, r, r, d, h, w)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).contiguous()
    return x.view(b, c_out, d * r, h * r, w * r)


class ConvVoxelDecoder(nn.Module):
    """Transposed-convolution decoder with a sub-voxel (pixel-shuffle) output layer.

    ``forward(z)`` maps ``z (B, z_id + z_exp)`` to logits ``(B, 1, R, R, R)`` laid out
    ``(D, H, W) = (z, y, x)`` over the canonical volume (:mod:`voxface.frame`).
    ``features(z)`` returns the last feature volume ``(B, C, R/s, R/s, R/s)`` for refinement heads.
    """

    def __init__(self, cfg: DecoderConfig, z_dim: int):
        super().__init__()
        feat_res = cfg.resolution // cfg.shuffle
        if cfg.resolution % cfg.shuffle or feat_res % cfg.base_resolution:
            raise ValueError(
                f"decoder.resolution {cfg.resolution} must be base_resolution * 2^k * shuffle"
            )
        n_up = math.log2(feat_res // cfg.base_resolution)
        if not n_up.is_integer() or len(cfg.widths) != int(n_up) + 1:
            raise ValueError(
                f"decoder.widths needs {int(n_up) + 1} entries for resolution {cfg.resolution} "
                f"(base {cfg.base_resolution}, shuffle {cfg.shuffle}); got {len(cfg.widths)}"
            )
        self.cfg = cfg
        w = cfg.widths
        self.base = cfg.base_resolution
        self.fc = nn.Linear(z_dim, w[0] * self.base**3)
        stages: list[nn.Module] = [nn.Sequential(_norm3(w[0]), nn.SiLU(inplace=True))]
        res = self.base
        for i in range(int(n_up)):
            mods: list[nn.Module] = []
            if res <= 16:
                mods += [ResBlock3d(w[i]) for _ in range(cfg.res_blocks)]
            mods += [
                nn.ConvTranspose3d(w[i], w[i + 1], 4, 2, 1, bias=False),
                _norm3(w[i + 1]),
                nn.SiLU(inplace=True),
            ]
            stages.append(nn.Sequential(*mods))
            res *= 2
        self.stages = nn.Sequential(*stages)
        self.out = nn.Conv3d(w[-1], cfg.shuffle**3, 3, 1, 1)
        self.feature_channels = w[-1]

    def features(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], -1, self.base, self.base, self.base)
        return self.stages(x)

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.out(f), self.cfg.shuffle)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(z))
