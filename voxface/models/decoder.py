"""Voxel decoders: ``(z_id, z_exp)`` to occupancy logits on the canonical grid."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DecoderConfig
from .encoder import check_norm_widths


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
        n_up = math.log2(max(feat_res // cfg.base_resolution, 1))
        if cfg.resolution % cfg.shuffle or feat_res % cfg.base_resolution or not n_up.is_integer():
            raise ValueError(
                f"decoder.resolution {cfg.resolution} must be base_resolution * 2^k * shuffle "
                f"({cfg.base_resolution} * 2^k * {cfg.shuffle})"
            )
        if len(cfg.widths) != int(n_up) + 1:
            raise ValueError(
                f"decoder.widths needs {int(n_up) + 1} entries for resolution {cfg.resolution} "
                f"(base {cfg.base_resolution}, shuffle {cfg.shuffle}); got {len(cfg.widths)}"
            )
        check_norm_widths("decoder.widths", cfg.widths)
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
        x = self.fc(z).view(z.shape[0], self.cfg.widths[0], self.base, self.base, self.base)  # -1 failed on 0 faces
        return self.stages(x)

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, R, R, R)`` float32 (float64 in a model cast with ``.double()``), also under
        autocast or in a half-precision model, as :class:`DeformVoxelDecoder` gives them."""
        x = self.out(f)
        return pixel_shuffle_3d(x if x.dtype == torch.float64 else x.float(), self.cfg.shuffle)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.features(z))


#: Output voxels :meth:`DeformVoxelDecoder.logits_from_features` samples in one pass on a CPU
#: (four faces at 64^3).
CPU_SAMPLING_VOXELS = 4 * 64 ** 3


def exporting() -> bool:
    """Whether the model is being traced or exported (ONNX, ``torch.jit.trace``, ``torch.export``): the
    CPU fast paths, which loop over chunks or write in place, then step aside for the plain operators,
    and :class:`~voxface.models.VoxFace` skips its input value checks (a check that reads the values
    is a branch on the data, which ``torch.export`` cannot trace)."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # newer torch; strict and non-strict export
    return (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
            or (is_exporting is not None and bool(is_exporting())))


def compiling() -> bool:
    """Whether ``torch.compile`` or ``torch.export`` (Dynamo) is tracing the code: the in-place fast
    paths (``out=`` into strided views) are graph breaks there, a branch on the batch size specialises
    a dynamic batch, and the compiler fuses the plain operators itself."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    if is_compiling is None:  # pragma: no cover - torch 2.1, 2.2
        is_compiling = torch._dynamo.is_compiling
    return bool(is_compiling())


def _transformed(x: torch.Tensor) -> bool:
    """Whether ``x`` is seen through a ``torch.func`` transform (``vmap``, ``jvp``, ``grad``) or carries
    a forward-mode AD tangent: ``out=`` writes have no batching or forward-AD rule there."""
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    if wrapped is not None and wrapped(x):
        return True
    from torch.autograd import forward_ad

    return forward_ad.unpack_dual(x).tangent is not None


def upsample2x_trilinear(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)`` for ``(B, C, D, H, W)``.

    The same values up to float rounding (a few 1e-7 relative), computed as three separable passes:
    along each axis ``out[2k] = 3/4 x[k] + 1/4 x[k - 1]`` and ``out[2k + 1] = 3/4 x[k] + 1/4 x[k + 1]``,
    the end samples repeated. On a CPU, without autograd, each pass writes its even and odd planes in
    place with one ``lerp`` each: ~7x faster than PyTorch's general trilinear kernel (a quarter of
    the decoder's time on a 64^3 face went to it). Elsewhere (autograd, forward-mode AD, a
    ``torch.func`` transform such as ``vmap``, which have no rule for ``out=`` writes, an
    accelerator, ONNX export, ``torch.compile``, where the ``out=`` writes were three graph breaks)
    it is ``F.interpolate``.
    """
    if (x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad) or exporting() or compiling()
            or x.dim() != 5 or min(x.shape[2:]) < 2 or _transformed(x)):  # the compiler never sees _transformed
        return F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
    x = x.contiguous()
    for d in (4, 3, 2):
        n = x.shape[d]
        out = x.new_empty(x.shape[:d] + (n, 2) + x.shape[d + 1:])
        even, odd = out.select(d + 1, 0), out.select(d + 1, 1)
        head, tail = x.narrow(d, 0, n - 1), x.narrow(d, 1, n - 1)  # x[k], x[k + 1] for k < n - 1
        torch.lerp(tail, head, 0.25, out=even.narrow(d, 1, n - 1))  # x[k] + (x[k - 1] - x[k]) / 4
        even.narrow(d, 0, 1).copy_(x.narrow(d, 0, 1))
        torch.lerp(head, tail, 0.25, out=odd.narrow(d, 0, n - 1))
        odd.narrow(d, n - 1, 1).copy_(x.narrow(d, n - 1, 1))
        x = out.flatten(d, d + 1)
    return x


def unit_cell_centers(resolution: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Cell centres of an ``R^3`` grid in ``[-1, 1]`` cube units, ``(1, R, R, R, 3)`` float32.

    Indexed ``[0, d, h, w]`` -> ``(x, y, z)``: the ``grid`` layout of
    :func:`torch.nn.functional.grid_sample` (``align_corners=False``) on ``(D, H, W)`` volumes,
    the same convention as :meth:`voxface.frame.Grid.mm_to_unit`.
    """
    from ..refine import grid_points_unit

    i = torch.arange(resolution, device=device)
    dhw = torch.stack(torch.meshgrid(i, i, i, indexing="ij"), dim=-1)
    return grid_points_unit(dhw, resolution)[None]


class DeformVoxelDecoder(ConvVoxelDecoder):
    """Template-deformation decoder: the conv stack of :class:`ConvVoxelDecoder` predicts, at
    ``2 R / shuffle``, a displacement field (3 channels, ``[-1, 1]`` cube units, ``(x, y, z)``) and a
    logit residual (1 channel); the logits at a point ``p`` are

        ``template(p + displacement(p)) + residual(p)``

    with both fields trilinearly interpolated and ``template`` a learned logit volume
    ``(1, 1, T, T, T)`` over the canonical cube (:attr:`template`, ``T = template_resolution``).

    Faces of one morphable family are smooth deformations of one another, so this spends the
    network on a few smooth fields instead of ``R^3`` independent logits: it is cheap to train on a
    CPU, keeps the template's detail at any output resolution, and with the output layer
    initialised to zero it starts as the mean head (:meth:`init_template`). Because the fields are
    continuous, :meth:`logits_at` evaluates the occupancy at arbitrary points.
    """

    def __init__(self, cfg: DecoderConfig, z_dim: int):
        super().__init__(cfg, z_dim)
        # a 1x1x1 layer predicting the fields at twice the feature resolution (a 3D pixel shuffle
        # of 2^3 sub-cells): 3D convolutions over many small-channel cells are slow on CPUs
        self.out = nn.Conv3d(cfg.widths[-1], 4 * 8, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        t = int(cfg.template_resolution) or int(cfg.resolution)
        self.template = nn.Parameter(torch.zeros(1, 1, t, t, t))
        self.register_buffer("_centers", unit_cell_centers(cfg.resolution), persistent=False)

    @torch.no_grad()
    def init_template(self, mean_occupancy: torch.Tensor, eps: float = 0.02) -> None:
        """Set the template to ``logit(clamp(mean_occupancy, eps, 1 - eps))``.

        ``mean_occupancy``: ``(R', R', R')`` or ``(1, 1, R', R', R')`` fraction of training heads
        occupying each cell (any ``R'``; resampled trilinearly to the template's size).
        """
        m = mean_occupancy.float().reshape(1, 1, *mean_occupancy.shape[-3:]).to(self.template.device)
        if m.shape[-3:] != self.template.shape[-3:]:
            m = F.interpolate(m, size=self.template.shape[-3:], mode="trilinear", align_corners=False)
        self.template.copy_(torch.logit(m.clamp(eps, 1 - eps)))

    def fields(self, f: torch.Tensor) -> torch.Tensor:
        """Feature volume ``(B, C, r, r, r)`` to the fields ``(B, 4, 2r, 2r, 2r)`` float32 (float64 in
        a model cast with ``.double()``): displacement ``(dx, dy, dz)`` in ``[-1, 1]`` cube units and
        the logit residual."""
        x = self.out(f)
        return pixel_shuffle_3d(x if x.dtype == torch.float64 else x.float(), 2)

    def _template(self, fl: torch.Tensor) -> torch.Tensor:
        """The template in the fields' dtype, one per face of ``fl``."""
        return self.template.to(fl.dtype).expand(fl.shape[0], -1, -1, -1, -1)

    def logits_from_features(self, f: torch.Tensor) -> torch.Tensor:
        fl = self.fields(f)
        n = fl.shape[0]
        step = n if fl.device.type != "cpu" else max(1, CPU_SAMPLING_VOXELS // self.cfg.resolution ** 3)
        # a traced loop would fix the graph's batch at the example's (ONNX); under torch.compile and
        # torch.export the test on n alone specialised a dynamic batch (export's 'Constraints violated')
        if exporting() or compiling() or n <= step:
            return self._logits_from_fields(fl)
        # On a CPU, a few faces at a time: the upsampled fields, the sampling grid and the logits
        # of a whole batch (~8 MB a face at 64^3) overflow the cache, and these memory-bound steps
        # then run at a fraction of their speed (a batch of 16 at 64^3: 27% faster on one thread,
        # 19% on two). Each face is sampled on its own either way: the values are the same.
        return torch.cat([self._logits_from_fields(fl[i:i + step]) for i in range(0, n, step)])

    def _logits_from_fields(self, fl: torch.Tensor) -> torch.Tensor:
        """Fields ``(B, 4, 2r, 2r, 2r)`` (:meth:`fields`) to logits ``(B, 1, R, R, R)``."""
        R = self.cfg.resolution
        if fl.shape[-1] * 2 == R:
            fl = upsample2x_trilinear(fl)
        elif fl.shape[-1] != R:
            fl = F.interpolate(fl, size=(R, R, R), mode="trilinear", align_corners=False)
        grid = self._centers.to(fl.device, fl.dtype) + fl[:, :3].permute(0, 2, 3, 4, 1)
        tpl = self._template(fl)
        logits = F.grid_sample(tpl, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return logits + fl[:, 3:4]

    def logits_at(self, f: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Logits at arbitrary points: ``f (B, C, r, r, r)``, ``points (B, N, 3)`` in ``[-1, 1]``
        cube units ``(x, y, z)`` -> ``(B, N)`` in the fields' dtype (:meth:`fields`; the same function
        :meth:`forward` samples at the cell centres)."""
        fl = self.fields(f)
        g = points.to(fl.dtype)[:, :, None, None, :]  # (B, N, 1, 1, 3)
        v = F.grid_sample(fl, g, mode="bilinear", padding_mode="border", align_corners=False)[..., 0, 0]
        tpl = self._template(fl)
        q = (g + v[:, :3].transpose(1, 2)[:, :, None, None, :])
        t = F.grid_sample(tpl, q, mode="bilinear", padding_mode="border", align_corners=False)[:, 0, :, 0, 0]
        return t + v[:, 3]
