"""Image encoders: an RGB face crop to identity and expression latents and a head pose."""

from __future__ import annotations

import torch
from torch import nn

from ..config import EncoderConfig

#: Pose vector layout predicted by encoders: 6D rotation, log-scale, translation (tx, ty).
POSE_DIM = 9

# ImageNet-free normalisation: crops are float in [0, 1]; we centre them on mid-grey.
_MEAN = 0.5
_STD = 0.25


def _norm(c: int) -> nn.Module:
    return nn.GroupNorm(min(8, c // 4), c)


def _norm_fits(c: int) -> bool:
    g = min(8, c // 4)
    return g >= 1 and c % g == 0


def check_norm_widths(key: str, widths: "int | list[int] | tuple[int, ...]") -> None:
    """Raise ``ValueError`` naming ``key[i]`` (``key`` for one width) for a width the GroupNorm
    layers cannot normalise: a width ``c`` is split into ``min(8, c // 4)`` groups, which must
    divide it (so ``c >= 4``)."""
    one = isinstance(widths, int)
    for i, c in enumerate(int(w) for w in ([widths] if one else widths)):
        if not _norm_fits(c):
            below = next((w for w in range(c - 1, 3, -1) if _norm_fits(w)), None)
            above = next((w for w in range(max(c + 1, 4), max(c, 4) + 9) if _norm_fits(w)), 4)
            near = f"{below} or {above}" if below else str(above)
            raise ValueError(f"{key if one else f'{key}[{i}]'} is {c}: GroupNorm splits a width c into min(8, c // 4) "
                             f"groups, which must divide it; use e.g. {near}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet v1.5 style, GroupNorm)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = _norm(cout)
        self.act = nn.SiLU(inplace=True)
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.n1(self.conv1(x)))
        y = self.n2(self.conv2(y))
        return self.act(y + self.skip(x))


class ResNetEncoder(nn.Module):
    """A small ResNet: ``(B, 3, S, S)`` crop in [0, 1] to features, then three linear heads.

    Outputs ``z_id (B, z_id)``, ``z_exp (B, z_exp)`` and a raw pose vector ``(B, 9)``
    (see :func:`voxface.models.voxface.decode_pose`). No pretrained weights are used or downloaded.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if len(cfg.widths) != len(cfg.blocks):
            raise ValueError("encoder.widths and encoder.blocks must have the same length")
        check_norm_widths("encoder.widths", cfg.widths)
        if cfg.readout == "flatten":
            check_norm_widths("encoder.readout_channels", int(cfg.readout_channels))
        w0 = cfg.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 5, 2, 2, bias=False), _norm(w0), nn.SiLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = w0
        for i, (w, n) in enumerate(zip(cfg.widths, cfg.blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if j == 0 else 1))
                cin = w
        self.stages = nn.Sequential(*layers)
        if cfg.readout == "pool":
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
            feat = cin
        elif cfg.readout == "flatten":
            cells = cfg.image_size // 2 ** (1 + len(cfg.widths))
            if cells < 1 or cells * 2 ** (1 + len(cfg.widths)) != cfg.image_size:
                raise ValueError(f"encoder.readout flatten needs image_size {cfg.image_size} divisible by "
                                 f"{2 ** (1 + len(cfg.widths))}")
            c = int(cfg.readout_channels)
            self.pool = nn.Sequential(nn.Conv2d(cin, c, 1, bias=False), _norm(c), nn.SiLU(inplace=True))
            feat = c * cells * cells
        else:
            raise ValueError(f"encoder.readout {cfg.readout!r}: expected 'pool' or 'flatten'")
        self.drop = nn.Dropout(cfg.dropout)
        hidden = max(256, feat)
        self.trunk = nn.Sequential(nn.Linear(feat, hidden), nn.SiLU(inplace=True))
        self.head_id = nn.Linear(hidden, cfg.z_id)
        self.head_exp = nn.Linear(hidden, cfg.z_exp)
        self.head_pose = nn.Linear(hidden, POSE_DIM)
        # start the pose head at "frontal, unit scale, centred"
        nn.init.zeros_(self.head_pose.weight)
        with torch.no_grad():
            self.head_pose.bias.copy_(torch.tensor([1.0, 0, 0, 0, -1.0, 0, 0, 0, 0]))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (images - _MEAN) / _STD
        x = self.stages(self.stem(x))
        h = self.trunk(self.drop(self.pool(x).flatten(1)))  # (B, C) pooled or (B, c * cells^2)
        return self.head_id(h), self.head_exp(h), self.head_pose(h)
